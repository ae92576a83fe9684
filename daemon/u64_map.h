/* SPDX-License-Identifier: Apache-2.0 */
/* u64_map.h -- an open-addressing hash table from a nonzero uint64 key to a
 * pointer: linear probing, power-of-two capacity kept at most half full,
 * backward-shift deletion (no tombstones). Used where the hot path would
 * otherwise scan a list: queue_state's deliveries, consumers and partitions,
 * the reply reader's temporary queues by token.
 *
 * Ownership: the map owns its slot array only; values are borrowed. Embed
 * the struct by value, zero-initialised ({0} is an empty map). */
#ifndef KBRIDGE_U64_MAP_H
#define KBRIDGE_U64_MAP_H

#include <stddef.h>
#include <stdint.h>

struct u64_slot {
    uint64_t key; /* 0: empty */
    void *value;
};

struct u64_map {
    struct u64_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t count;
};

/* The slot a key starts probing from (a 64-bit finaliser: keys that are
 * counters or pointers spread over the table). */
static inline size_t u64_map_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= UINT64_C(0xff51afd7ed558ccd);
    key ^= key >> 33;
    return (size_t)key;
}

/* Make room for one more key: 0 ok, -1 on allocation failure (the map is unchanged). */
int u64_map_reserve(struct u64_map *map);

/* The value stored under `key`, or NULL (also for key 0). */
static inline void *u64_map_get(const struct u64_map *map, uint64_t key)
{
    if (!map->slots || !key)
        return NULL;
    for (size_t at = u64_map_hash(key) & map->mask;; at = (at + 1) & map->mask) {
        if (map->slots[at].key == key)
            return map->slots[at].value;
        if (!map->slots[at].key)
            return NULL;
    }
}

/* Insert a nonzero key known to be absent; u64_map_reserve must have succeeded. */
void u64_map_put(struct u64_map *map, uint64_t key, void *value);

/* Remove `key` if present. */
void u64_map_remove(struct u64_map *map, uint64_t key);

/* Free the slots; the map is empty (and usable) again. Values are not touched. */
void u64_map_free(struct u64_map *map);

/* A nonzero 64-bit key for a string (FNV-1a; distinct strings may share a
 * key, so a map keyed by it must compare the strings of what it finds). */
uint64_t u64_map_string_key(const char *text, size_t length);

#endif
