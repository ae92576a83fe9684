/* SPDX-License-Identifier: Apache-2.0 */
/* u64_map.c -- the hash table of u64_map.h: growth, insertion and
 * backward-shift deletion. Lookups are inline in the header. */
#include "u64_map.h"

#include <stdbool.h>
#include <stdlib.h>

static int u64_map_resize(struct u64_map *map, size_t capacity)
{
    struct u64_slot *slots = calloc(capacity, sizeof(*slots));
    if (!slots)
        return -1;
    size_t mask = capacity - 1;
    if (map->slots) {
        for (size_t i = 0; i <= map->mask; i++) {
            if (!map->slots[i].key)
                continue;
            size_t at = u64_map_hash(map->slots[i].key) & mask;
            while (slots[at].key)
                at = (at + 1) & mask;
            slots[at] = map->slots[i];
        }
    }
    free(map->slots);
    map->slots = slots;
    map->mask = mask;
    return 0;
}

int u64_map_reserve(struct u64_map *map)
{
    if (!map->slots)
        return u64_map_resize(map, 16);
    if ((map->count + 1) * 2 > map->mask + 1)
        return u64_map_resize(map, (map->mask + 1) * 2);
    return 0;
}

void u64_map_put(struct u64_map *map, uint64_t key, void *value)
{
    size_t at = u64_map_hash(key) & map->mask;
    while (map->slots[at].key)
        at = (at + 1) & map->mask;
    map->slots[at].key = key;
    map->slots[at].value = value;
    map->count++;
}

void u64_map_remove(struct u64_map *map, uint64_t key)
{
    if (!map->slots || !key)
        return;
    size_t at = u64_map_hash(key) & map->mask;
    while (map->slots[at].key != key) {
        if (!map->slots[at].key)
            return;
        at = (at + 1) & map->mask;
    }
    /* Backward-shift deletion: pull later members of the probe run into
     * the hole so lookups never need tombstones. */
    size_t hole = at;
    for (size_t next = (hole + 1) & map->mask; map->slots[next].key;
         next = (next + 1) & map->mask) {
        size_t home = u64_map_hash(map->slots[next].key) & map->mask;
        /* Move it if its home is not in the cyclic range (hole, next]. */
        bool home_after_hole =
            hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (!home_after_hole) {
            map->slots[hole] = map->slots[next];
            hole = next;
        }
    }
    map->slots[hole].key = 0;
    map->slots[hole].value = NULL;
    map->count--;
}

void u64_map_free(struct u64_map *map)
{
    free(map->slots);
    map->slots = NULL;
    map->mask = 0;
    map->count = 0;
}

uint64_t u64_map_string_key(const char *text, size_t length)
{
    uint64_t hash = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < length; i++) {
        hash ^= (unsigned char)text[i];
        hash *= UINT64_C(0x100000001b3);
    }
    return hash ? hash : 1;
}
