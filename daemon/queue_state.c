/* SPDX-License-Identifier: Apache-2.0 */
/* queue_state.c -- the queue engine's bookkeeping (architecture §5), without I/O:
 * available and acquired records, delivery ids and counts, round-robin
 * dispatch to consumers with credit, release / reject / dead-letter
 * decisions, per-partition commit positions, flow control and ack-timeout
 * expiry. queue.c wires the callbacks to Kafka and to the protocol adapters.
 *
 * DESIGN: data structures, all O(1) amortised on the hot path.
 *  - struct queue_entry: one buffered record. It sits in exactly one of
 *    five intrusive doubly-linked lists, named by entry->where:
 *      available      fetch order; a released record is pushed to the front
 *                     so it is redelivered first;
 *      acquired       acquisition order, so ack-timeout expiry walks only
 *                     the expired prefix (O(expired)); an acquired entry is
 *                     also on its consumer's own list (cprev/cnext), so
 *                     removing a consumer costs O(its deliveries);
 *      dead_letter_outbox  decided to dead-letter, callback not fired yet;
 *      dead_lettering the dead_letter callback fired, waiting for
 *                     queue_state_dead_lettered();
 *      graveyard      settled or dropped, release_record not called yet.
 *  - delivery id -> entry: an open-addressing hash table (linear probing,
 *    backward-shift deletion, load <= 1/2). Ids are never reused, so a
 *    settle for an old delivery simply misses. The same table type maps
 *    consumer pointers and partition numbers to their structs.
 *  - per partition, a ring of (offset, entry) slots in offset order; each
 *    entry knows its slot by a sequence number. A settled slot's entry
 *    becomes NULL and the ring head skips settled slots, so the commit
 *    position (offset at the head, or highest + 1 when empty) advances in
 *    amortised O(1). Cost: a slot (16 bytes) per record between the oldest
 *    unsettled one and the newest, so one record held for a long time keeps
 *    the ring growing; the ack timeout bounds that.
 *  - consumers that may receive now (not blocked, unsettled < credit) form a
 *    circular "ready" list with a cursor; dispatch gives the next available
 *    record to the cursor's consumer and moves the cursor on. A consumer
 *    that becomes ready again is inserted just before the cursor: the end of
 *    the current round.
 *
 * DESIGN: re-entrancy. Every public call increments `depth`. Callbacks may
 * call back in; nested calls change the state but leave the follow-up work
 * to the outermost call, which loops until none remains: dispatch (guarded
 * by `dispatching`), flow, and release_record for the graveyard. So an entry
 * or record is freed only when the outermost call finishes, after every
 * callback that could be looking at it has returned, and removed consumers
 * are freed then too. The one exception is the dead-letter outbox, flushed
 * by every call before it returns, because a REJECT's reason string is only
 * borrowed from the caller. */
#include "queue_state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "u64_map.h"

#define REJECT_REASON "rejected by the consumer"

/* ---- entries and lists ---------------------------------------------------- */

enum entry_where {
    ENTRY_AVAILABLE,
    ENTRY_ACQUIRED,
    ENTRY_DEAD_LETTER_OUTBOX,
    ENTRY_DEAD_LETTERING,
    ENTRY_GRAVEYARD,
};

struct queue_partition;
struct queue_consumer;

struct queue_entry {
    struct queue_entry *prev, *next;   /* in the list named by `where` */
    struct queue_entry *cprev, *cnext; /* in consumer->acquired while acquired */
    void *record;
    struct queue_partition *partition; /* NULL once its partition was revoked */
    struct queue_consumer *consumer;   /* while acquired */
    const char *dead_letter_reason;    /* in the outbox; NULL: max_deliveries */
    bool retry;                        /* in the outbox or dead-lettering: a delayed release */
    int64_t offset;
    uint64_t slot_seq;    /* position in partition->slots */
    queue_delivery_id id; /* current or last delivery; 0 before the first */
    uint64_t acquired_at_ms;
    uint32_t delivery_count;
    enum entry_where where;
    uint64_t available_at_ms; /* when it last became available */
    /* selector results of the selective consumers with a memo slot (bit =
     * slot), valid while memo_generation matches the state's */
    uint64_t memo_evaluated, memo_selected;
    uint32_t memo_generation;
    uint64_t group;        /* message group (JMSXGroupID) key, 0: none */
    bool closes_group;     /* JMSXGroupSeq -1: the group ends with it */
    bool counted_accepted; /* queue_state_positions_if_accepted, during the call only */
};

struct entry_list {
    struct queue_entry *head, *tail;
    size_t count;
};

static void list_unlink(struct entry_list *list, struct queue_entry *entry)
{
    if (entry->prev)
        entry->prev->next = entry->next;
    else
        list->head = entry->next;
    if (entry->next)
        entry->next->prev = entry->prev;
    else
        list->tail = entry->prev;
    entry->prev = entry->next = NULL;
    list->count--;
}

static void list_push_back(struct entry_list *list, struct queue_entry *entry)
{
    entry->next = NULL;
    entry->prev = list->tail;
    if (list->tail)
        list->tail->next = entry;
    else
        list->head = entry;
    list->tail = entry;
    list->count++;
}

/* Insert after `after`, or at the front when after is NULL. */
static void list_insert_after(struct entry_list *list, struct queue_entry *after,
                              struct queue_entry *entry)
{
    entry->prev = after;
    entry->next = after ? after->next : list->head;
    if (entry->next)
        entry->next->prev = entry;
    else
        list->tail = entry;
    if (after)
        after->next = entry;
    else
        list->head = entry;
    list->count++;
}

/* ---- partitions and consumers --------------------------------------------- */

struct offset_slot {
    int64_t offset;
    struct queue_entry *entry; /* NULL once settled */
};

struct queue_partition {
    int32_t partition;
    struct offset_slot *slots; /* ring indexed by seq & mask */
    size_t mask;
    uint64_t head_seq, tail_seq; /* unsettled-or-not slots in [head, tail) */
    int64_t highest;             /* highest offset added; -1 before the first */
    int64_t committed;           /* last commit position reported (or the start) */
    int64_t purge_floor;         /* records below it are settled when added (purge) */
};

struct queue_consumer {
    void *consumer; /* the caller's pointer */
    struct queue_consumer *ready_prev, *ready_next;
    struct queue_consumer *next_removed; /* waiting to be freed */
    struct queue_entry *acquired_head, *acquired_tail;
    uint32_t credit;
    uint32_t unsettled;
    bool auto_accept;
    bool blocked;
    bool removed;
    bool in_ready;
    bool selective;   /* asks cb.selects (queue_state_consumer_select) */
    int32_t priority; /* queue_state_consumer_priority; 0 by default */
    int memo_slot;    /* selective: its bit in the entries' memo, or -1 (more than 64) */
    uint64_t *groups; /* the message groups it owns (keys of state->group_owners) */
    size_t group_count, group_cap;
    struct queue_consumer *selective_prev, *selective_next; /* state->selective list */
};

struct queue_state {
    struct queue_state_callbacks cb;
    void *opaque;
    uint32_t max_deliveries;
    uint32_t max_in_flight;
    bool delay_releases; /* queue_state_delay_releases: releases go to cb.retry */

    struct entry_list available;
    struct entry_list acquired;
    struct entry_list dead_letter_outbox;
    struct entry_list dead_lettering;
    struct entry_list graveyard;

    struct u64_map deliveries; /* delivery id -> entry (acquired or dead-lettering) */
    struct u64_map consumers;  /* consumer pointer -> struct queue_consumer */
    struct u64_map partitions; /* partition + 1 -> struct queue_partition */

    struct queue_consumer *ready_cursor; /* next to serve; NULL: nobody ready */
    struct queue_consumer *removed_consumers;
    struct queue_consumer *selective; /* registered selective consumers (doubly linked) */
    size_t selective_count;
    uint64_t memo_slots_used;    /* the selective consumers' memo bits */
    struct u64_map group_owners; /* message group key -> its struct queue_consumer */
    size_t prioritised;          /* registered consumers with a priority other than 0 */
    bool grouping;               /* a grouped record was added: dispatch checks owners */
    uint32_t memo_generation;    /* bumped when a slot is freed: every memo is stale then */

    queue_delivery_id last_id;
    unsigned depth;
    bool dispatching;
    bool paused;
    struct queue_state_stats stats;
};

static uint64_t partition_key(int32_t partition) { return (uint64_t)(uint32_t)partition + 1; }

static uint64_t consumer_key(const void *consumer) { return (uint64_t)(uintptr_t)consumer; }

static struct queue_partition *partition_get(const struct queue_state *state, int32_t partition)
{
    return u64_map_get(&state->partitions, partition_key(partition));
}

static struct queue_consumer *consumer_get(const struct queue_state *state, const void *consumer)
{
    return u64_map_get(&state->consumers, consumer_key(consumer));
}

static bool consumer_can_receive(const struct queue_consumer *c)
{
    return !c->removed && !c->blocked && c->unsettled < c->credit;
}

/* Put the consumer in or take it out of the ready ring to match its state. */
static void consumer_update_ready(struct queue_state *state, struct queue_consumer *c)
{
    bool ready = consumer_can_receive(c);
    if (ready && !c->in_ready) {
        struct queue_consumer *cursor = state->ready_cursor;
        if (!cursor) {
            c->ready_prev = c->ready_next = c;
            state->ready_cursor = c;
        } else { /* just before the cursor: last in the current round */
            c->ready_next = cursor;
            c->ready_prev = cursor->ready_prev;
            cursor->ready_prev->ready_next = c;
            cursor->ready_prev = c;
        }
        c->in_ready = true;
    } else if (!ready && c->in_ready) {
        if (c->ready_next == c) {
            state->ready_cursor = NULL;
        } else {
            c->ready_prev->ready_next = c->ready_next;
            c->ready_next->ready_prev = c->ready_prev;
            if (state->ready_cursor == c)
                state->ready_cursor = c->ready_next;
        }
        c->ready_prev = c->ready_next = NULL;
        c->in_ready = false;
    }
}

static void consumer_unlink_entry(struct queue_consumer *c, struct queue_entry *entry)
{
    if (entry->cprev)
        entry->cprev->cnext = entry->cnext;
    else
        c->acquired_head = entry->cnext;
    if (entry->cnext)
        entry->cnext->cprev = entry->cprev;
    else
        c->acquired_tail = entry->cprev;
    entry->cprev = entry->cnext = NULL;
}

/* ---- offsets -------------------------------------------------------------- */

static int partition_ring_push(struct queue_partition *p, int64_t offset, struct queue_entry *entry)
{
    size_t capacity = p->slots ? p->mask + 1 : 0;
    if (p->tail_seq - p->head_seq == capacity) {
        size_t new_capacity = capacity ? capacity * 2 : 64;
        struct offset_slot *slots = malloc(new_capacity * sizeof(*slots));
        if (!slots)
            return -1;
        for (uint64_t seq = p->head_seq; seq < p->tail_seq; seq++)
            slots[seq & (new_capacity - 1)] = p->slots[seq & p->mask];
        free(p->slots);
        p->slots = slots;
        p->mask = new_capacity - 1;
    }
    entry->slot_seq = p->tail_seq;
    p->slots[p->tail_seq & p->mask] = (struct offset_slot){.offset = offset, .entry = entry};
    p->tail_seq++;
    return 0;
}

/* Mark the entry's slot settled; fire commit when the position advances.
 * The commit callback is the last thing done: it may revoke `p`. */
static void partition_advance(struct queue_state *state, struct queue_partition *p);

static void partition_settle(struct queue_state *state, struct queue_partition *p,
                             struct queue_entry *entry)
{
    p->slots[entry->slot_seq & p->mask].entry = NULL;
    if (entry->slot_seq != p->head_seq)
        return;
    partition_advance(state, p);
}

/* Move the head past settled slots; fire commit when the position advances. */
static void partition_advance(struct queue_state *state, struct queue_partition *p)
{
    while (p->head_seq < p->tail_seq && !p->slots[p->head_seq & p->mask].entry)
        p->head_seq++;
    int64_t position =
        p->head_seq < p->tail_seq ? p->slots[p->head_seq & p->mask].offset : p->highest + 1;
    if (position <= p->committed)
        return;
    p->committed = position;
    state->cb.commit(state->opaque, p->partition, position);
}

/* ---- entry transitions (no callbacks unless said) ------------------------- */

static void entry_to_graveyard(struct queue_state *state, struct queue_entry *entry)
{
    entry->where = ENTRY_GRAVEYARD;
    entry->partition = NULL;
    entry->consumer = NULL;
    list_push_back(&state->graveyard, entry);
}

/* Take an acquired entry off the acquired lists and its consumer. */
static void entry_unacquire(struct queue_state *state, struct queue_entry *entry)
{
    struct queue_consumer *c = entry->consumer;
    list_unlink(&state->acquired, entry);
    consumer_unlink_entry(c, entry);
    c->unsettled--;
    entry->consumer = NULL;
    consumer_update_ready(state, c);
}

/* Done with a record: forget its delivery id, report the slot settled (may
 * fire commit) and queue the record for release_record. */
static void entry_settle(struct queue_state *state, struct queue_entry *entry)
{
    struct queue_partition *p = entry->partition;
    u64_map_remove(&state->deliveries, entry->id);
    entry_to_graveyard(state, entry);
    if (p)
        partition_settle(state, p, entry);
}

/* Decide to dead-letter: the callback fires from the outbox. The delivery
 * id stays known until queue_state_dead_lettered. */
static void entry_dead_letter(struct queue_state *state, struct queue_entry *entry,
                              const char *reason)
{
    entry->where = ENTRY_DEAD_LETTER_OUTBOX;
    entry->dead_letter_reason = reason;
    list_push_back(&state->dead_letter_outbox, entry);
}

/* Released from an acquisition (already unacquired): back to the available
 * list after `*insert_after` (NULL: the front), or dead-lettered when it
 * reached max_deliveries. *insert_after is updated so a batch of releases
 * keeps its order at the front of the list. */
static void entry_release(struct queue_state *state, struct queue_entry *entry,
                          struct queue_entry **insert_after)
{
    state->stats.released++;
    if (entry->delivery_count >= state->max_deliveries) {
        entry_dead_letter(state, entry, NULL);
        return;
    }
    u64_map_remove(&state->deliveries, entry->id);
    entry->where = ENTRY_AVAILABLE;
    entry->available_at_ms = state->cb.now_ms(state->opaque);
    list_insert_after(&state->available, *insert_after, entry);
    *insert_after = entry;
}

/* A client's release with a redelivery delay (queue_state_delay_releases):
 * the record leaves through cb.retry, as a dead letter leaves through
 * cb.dead_letter, unless it reached max_deliveries (then it is dead-lettered). */
static void entry_release_delayed(struct queue_state *state, struct queue_entry *entry)
{
    if (entry->delivery_count >= state->max_deliveries) {
        struct queue_entry *front = NULL;
        entry_release(state, entry, &front);
        return;
    }
    state->stats.released++;
    entry->retry = true;
    entry_dead_letter(state, entry, NULL);
}

/* ---- the follow-up loop ---------------------------------------------------- */

static void state_enter(struct queue_state *state) { state->depth++; }

/* Fire dead_letter for every entry in the outbox. */
static void flush_dead_letter_outbox(struct queue_state *state)
{
    while (state->dead_letter_outbox.head) {
        struct queue_entry *entry = state->dead_letter_outbox.head;
        list_unlink(&state->dead_letter_outbox, entry);
        entry->where = ENTRY_DEAD_LETTERING;
        list_push_back(&state->dead_lettering, entry);
        char reason_buf[64];
        const char *reason = entry->dead_letter_reason;
        if (!reason) {
            snprintf(reason_buf, sizeof(reason_buf), "delivered %" PRIu32 " times (max_deliveries)",
                     entry->delivery_count);
            reason = reason_buf;
        }
        entry->dead_letter_reason = NULL;
        /* The callback may report the outcome at once; entry is not used after. */
        if (entry->retry)
            state->cb.retry(state->opaque, entry->id, entry->record, entry->delivery_count);
        else
            state->cb.dead_letter(state->opaque, entry->id, entry->record, entry->delivery_count,
                                  reason);
    }
}

/* Settle an acquired entry as accepted (auto-accept and settle). */
static void entry_accept(struct queue_state *state, struct queue_entry *entry)
{
    entry_unacquire(state, entry);
    state->stats.accepted++;
    entry_settle(state, entry);
}

/* Give available records to ready consumers, round-robin. Runs only from the
 * outermost call; callbacks it makes may change anything, so every step
 * starts again from the lists. */
/* Does consumer c take the record (a consumer without a selector takes
 * all)? A selector's answer for an entry is remembered in the entry (one bit
 * per selective consumer, up to 64), so a dispatch that looks past the same
 * waiting entries again does not evaluate them again. */
static bool consumer_selects(const struct queue_state *state, const struct queue_consumer *c,
                             struct queue_entry *entry)
{
    if (!c->selective || !state->cb.selects)
        return true;
    if (c->memo_slot < 0)
        return state->cb.selects(state->opaque, c->consumer, entry->record);
    if (entry->memo_generation != state->memo_generation) {
        entry->memo_generation = state->memo_generation;
        entry->memo_evaluated = entry->memo_selected = 0;
    }
    uint64_t bit = UINT64_C(1) << c->memo_slot;
    if (!(entry->memo_evaluated & bit)) {
        entry->memo_evaluated |= bit;
        if (state->cb.selects(state->opaque, c->consumer, entry->record))
            entry->memo_selected |= bit;
    }
    return (entry->memo_selected & bit) != 0;
}

/* The first ready consumer from the cursor on that may take entry, or
 * NULL: its selector selects it, and its message group (architecture §13
 * "Message groups") is this consumer's or nobody's yet. */
static struct queue_consumer *ready_consumer_selecting(const struct queue_state *state,
                                                       struct queue_entry *entry)
{
    struct queue_consumer *c = state->ready_cursor;
    if (!c)
        return NULL;
    if (entry->group) {
        struct queue_consumer *owner = u64_map_get(&state->group_owners, entry->group);
        if (owner) /* pinned: its owner or nobody */
            return owner->in_ready && consumer_selects(state, owner, entry) ? owner : NULL;
    }
    if (state->prioritised == 0) {
        do {
            if (consumer_selects(state, c, entry))
                return c;
            c = c->ready_next;
        } while (c != state->ready_cursor);
        return NULL;
    }
    /* consumer priorities: the first from the cursor among the highest */
    struct queue_consumer *best = NULL;
    do {
        if ((!best || c->priority > best->priority) && consumer_selects(state, c, entry))
            best = c;
        c = c->ready_next;
    } while (c != state->ready_cursor);
    return best;
}

/* Entry goes to c: its group is c's from now on (until c goes, or the
 * entry closes it). Out of memory: delivered unpinned. */
static void group_assign(struct queue_state *state, struct queue_consumer *c,
                         const struct queue_entry *entry)
{
    if (!entry->group)
        return;
    struct queue_consumer *owner = u64_map_get(&state->group_owners, entry->group);
    if (entry->closes_group) {
        if (owner) {
            u64_map_remove(&state->group_owners, entry->group);
            for (size_t i = 0; i < owner->group_count; i++)
                if (owner->groups[i] == entry->group) {
                    owner->groups[i] = owner->groups[--owner->group_count];
                    break;
                }
        }
        return;
    }
    if (owner)
        return;
    if (c->group_count == c->group_cap) {
        size_t cap = c->group_cap ? c->group_cap * 2 : 8;
        uint64_t *grown = realloc(c->groups, cap * sizeof(*grown));
        if (!grown)
            return;
        c->groups = grown;
        c->group_cap = cap;
    }
    if (u64_map_reserve(&state->group_owners) != 0)
        return;
    u64_map_put(&state->group_owners, entry->group, c);
    c->groups[c->group_count++] = entry->group;
}

static void dispatch(struct queue_state *state)
{
    if (state->dispatching)
        return;
    state->dispatching = true;
    while (state->available.head && state->ready_cursor) {
        if (u64_map_reserve(&state->deliveries) != 0)
            break; /* out of memory: records stay available for the next call */
        uint64_t now = state->cb.now_ms(state->opaque);
        if (!state->available.head || !state->ready_cursor)
            break; /* now_ms is a callback too */
        struct queue_consumer *c = state->ready_cursor;
        struct queue_entry *entry = state->available.head;
        if (state->selective_count > 0 || state->grouping || state->prioritised > 0) {
            /* the oldest record some ready consumer may take, and that
             * consumer (from the cursor on: round robin; its group's owner
             * for a grouped one); the records before it stay, in order,
             * for the others */
            for (c = NULL; entry && !(c = ready_consumer_selecting(state, entry));)
                entry = entry->next;
            if (!entry)
                break;
        }
        list_unlink(&state->available, entry);
        group_assign(state, c, entry);

        entry->where = ENTRY_ACQUIRED;
        entry->id = ++state->last_id;
        entry->delivery_count++;
        entry->consumer = c;
        entry->acquired_at_ms = now;
        u64_map_put(&state->deliveries, entry->id, entry);
        list_push_back(&state->acquired, entry);
        entry->cnext = NULL;
        entry->cprev = c->acquired_tail;
        if (c->acquired_tail)
            c->acquired_tail->cnext = entry;
        else
            c->acquired_head = entry;
        c->acquired_tail = entry;
        c->unsettled++;
        state->stats.delivered++;
        if (entry->delivery_count > 1)
            state->stats.redelivered++;

        state->ready_cursor = c->ready_next;
        consumer_update_ready(state, c);

        queue_delivery_id id = entry->id;
        bool auto_accept = c->auto_accept;
        state->cb.deliver(state->opaque, c->consumer, id, entry->record, entry->delivery_count);
        /* The callback may have settled, released or revoked it: look it up. */
        if (auto_accept) {
            struct queue_entry *still = u64_map_get(&state->deliveries, id);
            if (still && still->where == ENTRY_ACQUIRED)
                entry_accept(state, still);
        }
        flush_dead_letter_outbox(state);
    }
    state->dispatching = false;
}

static size_t buffered(const struct queue_state *state)
{
    return state->available.count + state->acquired.count + state->dead_letter_outbox.count +
           state->dead_lettering.count;
}

/* Fire flow when a threshold is crossed; true when it fired. */
static bool update_flow(struct queue_state *state)
{
    size_t count = buffered(state);
    if (!state->paused && count > state->max_in_flight) {
        state->paused = true;
        state->cb.flow(state->opaque, true);
        return true;
    }
    if (state->paused && count <= state->max_in_flight / 2) {
        state->paused = false;
        state->cb.flow(state->opaque, false);
        return true;
    }
    return false;
}

static void free_removed_consumers(struct queue_state *state)
{
    while (state->removed_consumers) {
        struct queue_consumer *c = state->removed_consumers;
        state->removed_consumers = c->next_removed;
        free(c->groups);
        free(c);
    }
}

static void state_leave(struct queue_state *state)
{
    flush_dead_letter_outbox(state);
    if (state->depth == 1) {
        for (;;) {
            flush_dead_letter_outbox(state);
            if (state->available.head && state->ready_cursor && !state->dispatching) {
                size_t before = state->available.count;
                dispatch(state);
                if (state->available.count != before || !state->available.head ||
                    !state->ready_cursor)
                    continue;
                /* Nothing moved (out of memory): do not spin. */
            }
            if (update_flow(state))
                continue;
            if (state->graveyard.head) {
                struct queue_entry *entry = state->graveyard.head;
                list_unlink(&state->graveyard, entry);
                void *record = entry->record;
                free(entry);
                state->cb.release_record(state->opaque, record);
                continue;
            }
            break;
        }
        free_removed_consumers(state);
    }
    state->depth--;
}

/* ---- public API ------------------------------------------------------------ */

struct queue_state *queue_state_new(const struct queue_state_callbacks *callbacks, void *opaque,
                                    uint32_t max_deliveries, uint32_t max_in_flight)
{
    struct queue_state *state = calloc(1, sizeof(*state));
    if (!state)
        return NULL;
    state->cb = *callbacks;
    state->opaque = opaque;
    state->max_deliveries = max_deliveries ? max_deliveries : 1;
    state->max_in_flight = max_in_flight ? max_in_flight : 1;
    return state;
}

static void release_list(struct queue_state *state, struct entry_list *list)
{
    while (list->head) {
        struct queue_entry *entry = list->head;
        list_unlink(list, entry);
        void *record = entry->record;
        free(entry);
        state->cb.release_record(state->opaque, record);
    }
}

void queue_state_free(struct queue_state *state)
{
    if (!state)
        return;
    release_list(state, &state->graveyard);
    release_list(state, &state->available);
    release_list(state, &state->acquired);
    release_list(state, &state->dead_letter_outbox);
    release_list(state, &state->dead_lettering);
    if (state->consumers.slots) {
        for (size_t i = 0; i <= state->consumers.mask; i++)
            if (state->consumers.slots[i].key) {
                free(((struct queue_consumer *)state->consumers.slots[i].value)->groups);
                free(state->consumers.slots[i].value);
            }
    }
    if (state->partitions.slots) {
        for (size_t i = 0; i <= state->partitions.mask; i++) {
            struct queue_partition *p = state->partitions.slots[i].value;
            if (state->partitions.slots[i].key) {
                free(p->slots);
                free(p);
            }
        }
    }
    free_removed_consumers(state);
    u64_map_free(&state->deliveries);
    u64_map_free(&state->group_owners);
    u64_map_free(&state->consumers);
    u64_map_free(&state->partitions);
    free(state);
}

void queue_state_set_limits(struct queue_state *state, uint32_t max_deliveries,
                            uint32_t max_in_flight)
{
    state_enter(state);
    state->max_deliveries = max_deliveries ? max_deliveries : 1;
    state->max_in_flight = max_in_flight ? max_in_flight : 1;
    state_leave(state);
}

void queue_state_assign(struct queue_state *state, int32_t partition)
{
    if (partition_get(state, partition))
        return;
    if (u64_map_reserve(&state->partitions) != 0)
        return; /* queue_state_add will refuse its records */
    struct queue_partition *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->partition = partition;
    p->highest = -1;
    p->committed = -1;
    u64_map_put(&state->partitions, partition_key(partition), p);
}

void queue_state_revoke(struct queue_state *state, int32_t partition)
{
    struct queue_partition *p = partition_get(state, partition);
    if (!p)
        return;
    state_enter(state);
    u64_map_remove(&state->partitions, partition_key(partition));
    for (uint64_t seq = p->head_seq; seq < p->tail_seq; seq++) {
        struct queue_entry *entry = p->slots[seq & p->mask].entry;
        if (!entry)
            continue;
        switch (entry->where) {
        case ENTRY_AVAILABLE:
            list_unlink(&state->available, entry);
            entry_to_graveyard(state, entry);
            break;
        case ENTRY_ACQUIRED:
            entry_unacquire(state, entry);
            u64_map_remove(&state->deliveries, entry->id);
            entry_to_graveyard(state, entry);
            break;
        case ENTRY_DEAD_LETTER_OUTBOX:
        case ENTRY_DEAD_LETTERING:
            entry->partition = NULL; /* released when the produce reports */
            break;
        case ENTRY_GRAVEYARD: break;
        }
    }
    free(p->slots);
    free(p);
    state_leave(state);
}

static int state_add(struct queue_state *state, int32_t partition, int64_t offset, void *record,
                     uint64_t group, bool closes_group, uint32_t delivered)
{
    struct queue_partition *p = partition_get(state, partition);
    if (!p || offset <= p->highest)
        return -1;
    struct queue_entry *entry = calloc(1, sizeof(*entry));
    if (!entry)
        return -1;
    if (partition_ring_push(p, offset, entry) != 0) {
        free(entry);
        return -1;
    }
    if (p->highest < 0 && p->committed < 0)
        p->committed = offset; /* where fetching started: commit only beyond it */
    p->highest = offset;
    entry->record = record;
    entry->partition = p;
    entry->offset = offset;
    entry->where = ENTRY_AVAILABLE;
    entry->available_at_ms = state->cb.now_ms(state->opaque);
    entry->group = group;
    entry->closes_group = group && closes_group;
    entry->delivery_count = delivered;
    if (group)
        state->grouping = true;
    state_enter(state);
    if (offset < p->purge_floor) {
        state->stats.purged++; /* purged before it was fetched: settled unseen */
        entry_settle(state, entry);
    } else {
        list_push_back(&state->available, entry);
    }
    state_leave(state);
    return 0;
}

int queue_state_add(struct queue_state *state, int32_t partition, int64_t offset, void *record)
{
    return state_add(state, partition, offset, record, 0, false, 0);
}

int queue_state_add_grouped(struct queue_state *state, int32_t partition, int64_t offset,
                            void *record, uint64_t group, bool closes_group)
{
    return state_add(state, partition, offset, record, group, closes_group, 0);
}

int queue_state_add_delivered(struct queue_state *state, int32_t partition, int64_t offset,
                              void *record, uint32_t delivered)
{
    return state_add(state, partition, offset, record, 0, false, delivered);
}

void queue_state_delay_releases(struct queue_state *state, bool delay)
{
    state->delay_releases = delay && state->cb.retry != NULL;
}

size_t queue_state_purge(struct queue_state *state, int32_t partition, int64_t end_offset)
{
    struct queue_partition *p = partition_get(state, partition);
    if (!p)
        return 0;
    if (end_offset > p->purge_floor)
        p->purge_floor = end_offset;
    size_t purged = 0;
    state_enter(state);
    for (uint64_t seq = p->head_seq; seq < p->tail_seq; seq++) {
        struct queue_entry *entry = p->slots[seq & p->mask].entry;
        if (!entry || entry->where != ENTRY_AVAILABLE || entry->offset >= end_offset)
            continue;
        list_unlink(&state->available, entry);
        u64_map_remove(&state->deliveries, entry->id);
        p->slots[seq & p->mask].entry = NULL;
        entry_to_graveyard(state, entry);
        purged++;
    }
    state->stats.purged += purged;
    partition_advance(state, p); /* last: its commit callback may revoke p */
    state_leave(state);
    return purged;
}

int queue_state_consumer_add(struct queue_state *state, void *consumer, uint32_t credit,
                             bool auto_accept, bool blocked)
{
    struct queue_consumer *c = consumer_get(state, consumer);
    state_enter(state);
    if (c) { /* already registered: new settings */
        c->credit = credit;
        c->auto_accept = auto_accept;
        c->blocked = blocked;
    } else {
        c = calloc(1, sizeof(*c));
        if (!c || u64_map_reserve(&state->consumers) != 0) {
            free(c);
            state_leave(state);
            return -1;
        }
        c->consumer = consumer;
        c->credit = credit;
        c->auto_accept = auto_accept;
        c->blocked = blocked;
        u64_map_put(&state->consumers, consumer_key(consumer), c);
    }
    consumer_update_ready(state, c);
    state_leave(state);
    return 0;
}

void queue_state_consumer_credit(struct queue_state *state, void *consumer, uint32_t credit)
{
    struct queue_consumer *c = consumer_get(state, consumer);
    if (!c)
        return;
    state_enter(state);
    c->credit = credit;
    consumer_update_ready(state, c);
    state_leave(state);
}

void queue_state_consumer_block(struct queue_state *state, void *consumer, bool blocked)
{
    struct queue_consumer *c = consumer_get(state, consumer);
    if (!c)
        return;
    state_enter(state);
    c->blocked = blocked;
    consumer_update_ready(state, c);
    state_leave(state);
}

void queue_state_consumer_remove(struct queue_state *state, void *consumer)
{
    struct queue_consumer *c = consumer_get(state, consumer);
    if (!c)
        return;
    state_enter(state);
    u64_map_remove(&state->consumers, consumer_key(consumer));
    c->removed = true;
    if (c->priority != 0)
        state->prioritised--;
    for (size_t i = 0; i < c->group_count; i++) /* its groups move on */
        if (u64_map_get(&state->group_owners, c->groups[i]) == c)
            u64_map_remove(&state->group_owners, c->groups[i]);
    c->group_count = 0;
    if (c->selective) {
        if (c->selective_prev)
            c->selective_prev->selective_next = c->selective_next;
        else
            state->selective = c->selective_next;
        if (c->selective_next)
            c->selective_next->selective_prev = c->selective_prev;
        c->selective_prev = c->selective_next = NULL;
        c->selective = false;
        state->selective_count--;
        if (c->memo_slot >= 0) { /* its bit may go to another consumer: forget every memo */
            state->memo_slots_used &= ~(UINT64_C(1) << c->memo_slot);
            state->memo_generation++;
        }
    }
    consumer_update_ready(state, c);
    struct queue_entry *insert_after = NULL;
    while (c->acquired_head) {
        struct queue_entry *entry = c->acquired_head;
        entry_unacquire(state, entry);
        entry_release(state, entry, &insert_after);
    }
    c->next_removed = state->removed_consumers;
    state->removed_consumers = c;
    state_leave(state);
}

void queue_state_consumer_priority(struct queue_state *state, void *consumer, int32_t priority)
{
    struct queue_consumer *c = consumer_get(state, consumer);
    if (!c || c->priority == priority)
        return;
    state_enter(state);
    state->prioritised += (priority != 0) - (c->priority != 0);
    c->priority = priority;
    state_leave(state);
}

void queue_state_consumer_select(struct queue_state *state, void *consumer)
{
    struct queue_consumer *c = consumer_get(state, consumer);
    if (!c || c->selective)
        return;
    state_enter(state);
    c->selective = true;
    c->memo_slot = -1;
    for (int slot = 0; slot < 64 && c->memo_slot < 0; slot++)
        if (!(state->memo_slots_used & (UINT64_C(1) << slot))) {
            c->memo_slot = slot;
            state->memo_slots_used |= UINT64_C(1) << slot;
        }
    c->selective_prev = NULL;
    c->selective_next = state->selective;
    if (state->selective)
        state->selective->selective_prev = c;
    state->selective = c;
    state->selective_count++;
    state_leave(state);
}

size_t queue_state_drop_unselected(struct queue_state *state, uint64_t hold_ms)
{
    /* a consumer without a selector takes everything: nothing is unselected */
    if (!state->available.head || state->selective_count == 0 ||
        state->selective_count < state->consumers.count)
        return 0;
    uint64_t now = state->cb.now_ms(state->opaque);
    size_t dropped = 0;
    state_enter(state);
    for (struct queue_entry *entry = state->available.head, *next; entry; entry = next) {
        next = entry->next;
        if (now - entry->available_at_ms < hold_ms || now < entry->available_at_ms)
            continue;
        bool selected = false;
        for (struct queue_consumer *c = state->selective; c && !selected; c = c->selective_next)
            selected = consumer_selects(state, c, entry);
        if (selected)
            continue;
        list_unlink(&state->available, entry);
        entry_settle(state, entry);
        dropped++;
    }
    state->stats.unselected += dropped;
    state_leave(state);
    return dropped;
}

uint32_t queue_state_consumer_unsettled(const struct queue_state *state, const void *consumer)
{
    const struct queue_consumer *c = consumer_get(state, consumer);
    return c ? c->unsettled : 0;
}

size_t queue_state_consumer_count(const struct queue_state *state)
{
    return state->consumers.count;
}

void queue_state_positions_if_accepted(
    struct queue_state *state, const queue_delivery_id *ids, size_t count,
    void (*out)(void *opaque, int32_t partition, int64_t position), void *opaque)
{
    /* mark the entries, then walk each of their partitions from its head
     * past settled and marked slots, as partition_advance would */
    for (size_t i = 0; i < count; i++) {
        struct queue_entry *entry = u64_map_get(&state->deliveries, ids[i]);
        if (entry && entry->where == ENTRY_ACQUIRED && entry->partition)
            entry->counted_accepted = true;
    }
    for (size_t i = 0; i < count; i++) {
        struct queue_entry *entry = u64_map_get(&state->deliveries, ids[i]);
        if (!entry || !entry->counted_accepted)
            continue;
        struct queue_partition *p = entry->partition;
        uint64_t seq = p->head_seq;
        while (seq < p->tail_seq &&
               (!p->slots[seq & p->mask].entry || p->slots[seq & p->mask].entry->counted_accepted))
            seq++;
        int64_t position = seq < p->tail_seq ? p->slots[seq & p->mask].offset : p->highest + 1;
        /* once per partition: unmark all of its entries, so the next ids
         * of this partition are skipped */
        for (uint64_t at = p->head_seq; at < p->tail_seq; at++)
            if (p->slots[at & p->mask].entry)
                p->slots[at & p->mask].entry->counted_accepted = false;
        if (position > p->committed)
            out(opaque, p->partition, position);
    }
}

int queue_state_settle(struct queue_state *state, queue_delivery_id id, enum queue_outcome outcome,
                       const char *reason)
{
    struct queue_entry *entry = u64_map_get(&state->deliveries, id);
    if (!entry || entry->where != ENTRY_ACQUIRED) {
        state->stats.late_settles++;
        return -1;
    }
    state_enter(state);
    struct queue_entry *front = NULL;
    switch (outcome) {
    case QUEUE_ACCEPT: entry_accept(state, entry); break;
    case QUEUE_RELEASE:
        entry_unacquire(state, entry);
        if (state->delay_releases)
            entry_release_delayed(state, entry);
        else
            entry_release(state, entry, &front);
        break;
    case QUEUE_RELEASE_UNDELIVERED:
        entry_unacquire(state, entry);
        if (entry->delivery_count > 0)
            entry->delivery_count--; /* the next dispatch counts it again */
        entry_release(state, entry, &front);
        break;
    case QUEUE_REJECT:
    default:
        entry_unacquire(state, entry);
        state->stats.rejected++;
        entry_dead_letter(state, entry, reason ? reason : REJECT_REASON);
        break;
    }
    state_leave(state);
    return 0;
}

void queue_state_dead_lettered(struct queue_state *state, queue_delivery_id id, bool ok)
{
    struct queue_entry *entry = u64_map_get(&state->deliveries, id);
    if (!entry)
        return;
    struct entry_list *list;
    if (entry->where == ENTRY_DEAD_LETTERING)
        list = &state->dead_lettering;
    else if (entry->where == ENTRY_DEAD_LETTER_OUTBOX)
        list = &state->dead_letter_outbox;
    else
        return;
    state_enter(state);
    list_unlink(list, entry);
    entry->dead_letter_reason = NULL;
    bool retry = entry->retry;
    entry->retry = false;
    if (ok) {
        if (retry)
            state->stats.retried++;
        else
            state->stats.dead_lettered++;
        entry_settle(state, entry);
    } else if (!entry->partition) {
        /* Its partition was revoked meanwhile: the new owner has it. */
        u64_map_remove(&state->deliveries, entry->id);
        entry_to_graveyard(state, entry);
    } else {
        u64_map_remove(&state->deliveries, entry->id);
        entry->where = ENTRY_AVAILABLE;
        entry->available_at_ms = state->cb.now_ms(state->opaque);
        list_insert_after(&state->available, NULL, entry);
    }
    state_leave(state);
}

size_t queue_state_expire(struct queue_state *state, uint64_t ack_timeout_ms)
{
    if (!state->acquired.head)
        return 0;
    uint64_t now = state->cb.now_ms(state->opaque);
    if (now < ack_timeout_ms)
        return 0;
    uint64_t cutoff = now - ack_timeout_ms;
    size_t expired = 0;
    state_enter(state);
    struct queue_entry *insert_after = NULL;
    while (state->acquired.head && state->acquired.head->acquired_at_ms <= cutoff) {
        struct queue_entry *entry = state->acquired.head;
        entry_unacquire(state, entry);
        entry_release(state, entry, &insert_after);
        expired++;
    }
    state->stats.expired += expired;
    state_leave(state);
    return expired;
}

void queue_state_stats(const struct queue_state *state, struct queue_state_stats *out)
{
    *out = state->stats;
    out->available = state->available.count;
    out->acquired = state->acquired.count;
    out->dead_lettering = state->dead_letter_outbox.count + state->dead_lettering.count;
    out->paused = state->paused;
}
