/* SPDX-License-Identifier: Apache-2.0 */
/* check_queue_state.c -- unit tests of the queue engine's bookkeeping
 * (daemon/queue_state.c) through a fake set of callbacks that records every
 * call: commit positions with out-of-order settles and offset gaps,
 * round-robin and credit, release / reject / max_deliveries and the
 * dead-letter round trip, consumer removal and blocking, ack-timeout expiry
 * on a fake clock, revocation and late settles, flow control, auto-accept,
 * re-entrant calls from inside callbacks, and a 200k-record stress test
 * that checks invariants and time.
 *
 * Records are heap blocks freed by release_record, so running under
 * valgrind (CK_FORK=no) or ASan catches a record used after release, a
 * double release or one never released. */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue_state.h"
#include "unit_main.h"

/* Check's ck_assert_* write a mark point to the runner on every *passing*
 * check, which dominates a loop of 200k records; hot paths use REQUIRE,
 * which only reports failures. */
#define REQUIRE(expr)                                                                              \
    do {                                                                                           \
        if (!(expr))                                                                               \
            ck_abort_msg("%s:%d: requirement failed: %s", __FILE__, __LINE__, #expr);              \
    } while (0)

/* ---- the fake --------------------------------------------------------------- */

struct test_record {
    int32_t partition;
    int64_t offset;
    uint32_t magic;
};

#define RECORD_MAGIC 0x7e57u

struct delivery {
    void *consumer;
    queue_delivery_id id;
    int32_t partition;
    int64_t offset;
    uint32_t delivery_count;
};

struct dead_letter {
    queue_delivery_id id;
    int32_t partition;
    int64_t offset;
    uint32_t delivery_count;
    char reason[96];
};

struct commit {
    int32_t partition;
    int64_t offset;
};

struct fake;
typedef void (*deliver_hook)(struct fake *fake, const struct delivery *delivery);
typedef void (*dead_letter_hook)(struct fake *fake, const struct dead_letter *dead_letter);

struct fake {
    struct queue_state *state;
    uint64_t now;
    size_t added;
    size_t released;

    struct delivery *deliveries;
    size_t delivery_count, delivery_cap;
    struct dead_letter *dead_letters;
    size_t dead_letter_count, dead_letter_cap;
    struct dead_letter *retries; /* retry callbacks (delayed releases) */
    size_t retry_count, retry_cap;
    struct commit *commits;
    size_t commit_count, commit_cap;
    bool flows[64];
    size_t flow_count;

    deliver_hook on_deliver;
    dead_letter_hook on_dead_letter;
    void *hook_arg;

    /* selective consumers: consumer selects offsets with offset % mod == rem */
    struct {
        const void *consumer;
        int64_t mod, rem;
    } selectors[8];
    size_t selector_count;
};

#define GROW(array, count, cap)                                                                    \
    do {                                                                                           \
        if ((count) == (cap)) {                                                                    \
            (cap) = (cap) ? (cap)*2 : 64;                                                          \
            (array) = realloc((array), (cap) * sizeof(*(array)));                                  \
            REQUIRE(array != NULL);                                                                \
        }                                                                                          \
    } while (0)

static void fake_deliver(void *opaque, void *consumer, queue_delivery_id id, void *record,
                         uint32_t delivery_count)
{
    struct fake *fake = opaque;
    struct test_record *r = record;
    REQUIRE(r->magic == RECORD_MAGIC);
    REQUIRE(id != 0);
    GROW(fake->deliveries, fake->delivery_count, fake->delivery_cap);
    struct delivery *d = &fake->deliveries[fake->delivery_count++];
    *d = (struct delivery){consumer, id, r->partition, r->offset, delivery_count};
    if (fake->on_deliver) {
        struct delivery copy = *d; /* the array may move under the hook */
        fake->on_deliver(fake, &copy);
    }
}

static void fake_dead_letter(void *opaque, queue_delivery_id id, void *record,
                             uint32_t delivery_count, const char *reason)
{
    struct fake *fake = opaque;
    struct test_record *r = record;
    REQUIRE(r->magic == RECORD_MAGIC);
    GROW(fake->dead_letters, fake->dead_letter_count, fake->dead_letter_cap);
    struct dead_letter *d = &fake->dead_letters[fake->dead_letter_count++];
    *d = (struct dead_letter){
        .id = id, .partition = r->partition, .offset = r->offset, .delivery_count = delivery_count};
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    if (fake->on_dead_letter) {
        struct dead_letter copy = *d;
        fake->on_dead_letter(fake, &copy);
    }
}

static void fake_retry(void *opaque, queue_delivery_id id, void *record, uint32_t delivery_count)
{
    struct fake *fake = opaque;
    struct test_record *r = record;
    REQUIRE(r->magic == RECORD_MAGIC);
    GROW(fake->retries, fake->retry_count, fake->retry_cap);
    fake->retries[fake->retry_count++] = (struct dead_letter){
        .id = id, .partition = r->partition, .offset = r->offset, .delivery_count = delivery_count};
}

static void fake_commit(void *opaque, int32_t partition, int64_t next_offset)
{
    struct fake *fake = opaque;
    GROW(fake->commits, fake->commit_count, fake->commit_cap);
    fake->commits[fake->commit_count++] = (struct commit){partition, next_offset};
}

static void fake_release_record(void *opaque, void *record)
{
    struct fake *fake = opaque;
    struct test_record *r = record;
    REQUIRE(r->magic == RECORD_MAGIC);
    r->magic = 0;
    free(r);
    fake->released++;
}

static void fake_flow(void *opaque, bool pause)
{
    struct fake *fake = opaque;
    REQUIRE(fake->flow_count < 64);
    if (fake->flow_count > 0)
        REQUIRE(fake->flows[fake->flow_count - 1] != pause); /* never two equal calls */
    fake->flows[fake->flow_count++] = pause;
}

static uint64_t fake_now_ms(void *opaque)
{
    struct fake *fake = opaque;
    return fake->now;
}

static bool fake_selects(void *opaque, void *consumer, const void *record)
{
    struct fake *fake = opaque;
    const struct test_record *r = record;
    REQUIRE(r->magic == RECORD_MAGIC);
    for (size_t i = 0; i < fake->selector_count; i++)
        if (fake->selectors[i].consumer == consumer)
            return r->offset % fake->selectors[i].mod == fake->selectors[i].rem;
    return true;
}

static const struct queue_state_callbacks fake_callbacks = {
    .selects = fake_selects,
    .deliver = fake_deliver,
    .dead_letter = fake_dead_letter,
    .retry = fake_retry,
    .commit = fake_commit,
    .release_record = fake_release_record,
    .flow = fake_flow,
    .now_ms = fake_now_ms,
};

static struct fake *fake_new(uint32_t max_deliveries, uint32_t max_in_flight)
{
    struct fake *fake = calloc(1, sizeof(*fake));
    REQUIRE(fake != NULL);
    fake->now = 1000;
    fake->state = queue_state_new(&fake_callbacks, fake, max_deliveries, max_in_flight);
    REQUIRE(fake->state != NULL);
    return fake;
}

/* Free the state (every record must come back) and the fake. */
static void fake_free(struct fake *fake)
{
    queue_state_free(fake->state);
    ck_assert_uint_eq(fake->released, fake->added);
    free(fake->deliveries);
    free(fake->dead_letters);
    free(fake->retries);
    free(fake->commits);
    free(fake);
}

static int try_add(struct fake *fake, int32_t partition, int64_t offset)
{
    struct test_record *r = malloc(sizeof(*r));
    REQUIRE(r != NULL);
    *r = (struct test_record){partition, offset, RECORD_MAGIC};
    int rc = queue_state_add(fake->state, partition, offset, r);
    if (rc == 0)
        fake->added++;
    else
        free(r);
    return rc;
}

static void add(struct fake *fake, int32_t partition, int64_t offset)
{
    REQUIRE(try_add(fake, partition, offset) == 0);
}

static const struct delivery *last_delivery(const struct fake *fake)
{
    ck_assert_uint_gt(fake->delivery_count, 0);
    return &fake->deliveries[fake->delivery_count - 1];
}

/* The delivery id of the latest delivery of (partition, offset). */
static queue_delivery_id delivery_of(const struct fake *fake, int32_t partition, int64_t offset)
{
    for (size_t i = fake->delivery_count; i-- > 0;)
        if (fake->deliveries[i].partition == partition && fake->deliveries[i].offset == offset)
            return fake->deliveries[i].id;
    ck_abort_msg("no delivery of %d:%lld", partition, (long long)offset);
    return 0;
}

static void accept_delivery(struct fake *fake, int32_t partition, int64_t offset)
{
    ck_assert_int_eq(
        queue_state_settle(fake->state, delivery_of(fake, partition, offset), QUEUE_ACCEPT, NULL),
        0);
}

static void check_commits(const struct fake *fake, const struct commit *expect, size_t count)
{
    ck_assert_uint_eq(fake->commit_count, count);
    for (size_t i = 0; i < count; i++) {
        ck_assert_int_eq(fake->commits[i].partition, expect[i].partition);
        ck_assert_int_eq(fake->commits[i].offset, expect[i].offset);
    }
}

static struct queue_state_stats stats_of(const struct fake *fake)
{
    struct queue_state_stats stats;
    queue_state_stats(fake->state, &stats);
    return stats;
}

/* Consumers are just distinct addresses. */
static char consumer_a, consumer_b, consumer_c;
#define A ((void *)&consumer_a)
#define B ((void *)&consumer_b)
#define C ((void *)&consumer_c)

/* ---- purge ----------------------------------------------------------------------- */

START_TEST(purge_drops_available_keeps_acquired_and_skips_later_records)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    for (int64_t offset = 0; offset < 5; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->delivery_count, 1); /* credit 1: offset 0 acquired */
    /* purged up to 8: 1..4 dropped now, 5..7 when they arrive; 0 stays acquired */
    ck_assert_uint_eq(queue_state_purge(fake->state, 0, 8), 4);
    ck_assert_uint_eq(fake->released, 4);
    ck_assert_uint_eq(stats_of(fake).available, 0);
    ck_assert_uint_eq(fake->commit_count, 0);
    for (int64_t offset = 5; offset < 8; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->delivery_count, 1);
    accept_delivery(fake, 0, 0);
    const struct commit after_ack[] = {{0, 8}};
    check_commits(fake, after_ack, 1);
    add(fake, 0, 8); /* beyond the purge: delivered */
    ck_assert_uint_eq(fake->delivery_count, 2);
    ck_assert_int_eq(last_delivery(fake)->offset, 8);
    ck_assert_uint_eq(stats_of(fake).purged, 7);
    /* a partition not assigned here: nothing */
    ck_assert_uint_eq(queue_state_purge(fake->state, 3, 10), 0);
    accept_delivery(fake, 0, 8);
    fake_free(fake);
}
END_TEST

/* ---- offsets ------------------------------------------------------------------- */

START_TEST(out_of_order_accepts_commit_only_the_lowest_unsettled)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    for (int64_t offset = 0; offset < 5; offset++)
        add(fake, 0, offset);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    ck_assert_uint_eq(fake->delivery_count, 5);
    ck_assert_uint_eq(fake->commit_count, 0);

    accept_delivery(fake, 0, 2);
    ck_assert_uint_eq(fake->commit_count, 0);
    accept_delivery(fake, 0, 0);
    accept_delivery(fake, 0, 1);
    accept_delivery(fake, 0, 4);
    accept_delivery(fake, 0, 3);
    static const struct commit expect[] = {{0, 1}, {0, 3}, {0, 5}};
    check_commits(fake, expect, 3);
    ck_assert_uint_eq(fake->released, 5);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.accepted, 5);
    ck_assert_uint_eq(stats.delivered, 5);
    ck_assert_uint_eq(stats.acquired, 0);
    fake_free(fake);
}
END_TEST

/* A consumer registered blocked gets nothing until it is unblocked (the core
 * adds subscribers blocked until their adapter has seen `ready`). */
START_TEST(a_consumer_added_blocked_gets_nothing_until_unblocked)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    for (int64_t offset = 0; offset < 3; offset++)
        add(fake, 0, offset);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, true), 0);
    ck_assert_uint_eq(fake->delivery_count, 0);
    ck_assert_uint_eq(stats_of(fake).available, 3);
    queue_state_consumer_block(fake->state, A, false);
    ck_assert_uint_eq(fake->delivery_count, 3);
    ck_assert_uint_eq(stats_of(fake).acquired, 3);
    fake_free(fake);
}
END_TEST

START_TEST(offset_gaps_and_partitions_are_independent)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    queue_state_assign(fake->state, 3);
    add(fake, 0, 10);
    add(fake, 3, 7);
    add(fake, 0, 12);
    add(fake, 0, 15);
    add(fake, 0, 20);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 100, false, false), 0);
    ck_assert_uint_eq(fake->delivery_count, 5);
    accept_delivery(fake, 0, 12);
    ck_assert_uint_eq(fake->commit_count, 0);
    accept_delivery(fake, 0, 10); /* 12 settled too: lowest unsettled is 15 */
    accept_delivery(fake, 0, 20);
    accept_delivery(fake, 3, 7);
    accept_delivery(fake, 0, 15); /* all settled: highest + 1 */
    static const struct commit expect[] = {{0, 15}, {3, 8}, {0, 21}};
    check_commits(fake, expect, 3);
    /* The next record after a gap, settled, commits past it. */
    add(fake, 0, 30);
    accept_delivery(fake, 0, 30);
    ck_assert_int_eq(fake->commits[3].partition, 0);
    ck_assert_int_eq(fake->commits[3].offset, 31);
    fake_free(fake);
}
END_TEST

struct positions {
    struct commit seen[8];
    size_t count;
};

static void collect_position(void *opaque, int32_t partition, int64_t position)
{
    struct positions *p = opaque;
    REQUIRE(p->count < 8);
    p->seen[p->count++] = (struct commit){partition, position};
}

static int64_t position_of(const struct positions *p, int32_t partition)
{
    int64_t best = -1;
    for (size_t i = 0; i < p->count; i++)
        if (p->seen[i].partition == partition && p->seen[i].offset > best)
            best = p->seen[i].offset;
    return best;
}

/* transactions.exactly_once: where each partition's commit would go if a
 * committing transaction's deliveries were accepted, without changing
 * anything; a delivery outside the transaction stops it, as it stops the
 * real commit. */
START_TEST(positions_if_accepted_stop_at_the_first_delivery_outside_the_set)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    queue_state_assign(fake->state, 1);
    for (int64_t offset = 0; offset < 6; offset++)
        add(fake, 0, offset);
    add(fake, 1, 40);
    add(fake, 1, 41);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 100, false, false), 0);
    accept_delivery(fake, 0, 0); /* commits 1 */
    accept_delivery(fake, 0, 3); /* settled beyond the transaction's */
    queue_delivery_id in_tx[] = {
        delivery_of(fake, 0, 2),
        delivery_of(fake, 0, 1),  /* out of order */
        delivery_of(fake, 0, 5),  /* beyond 4, which is outside */
        delivery_of(fake, 1, 41), /* 40 outside: no move */
        12345,                    /* unknown: ignored */
    };
    struct positions seen = {0};
    queue_state_positions_if_accepted(fake->state, in_tx, 5, collect_position, &seen);
    ck_assert_int_eq(position_of(&seen, 0), 4); /* 1, 2 in it, 3 settled, 4 not */
    ck_assert_int_eq(position_of(&seen, 1), -1);
    ck_assert_uint_eq(seen.count, 1); /* once per partition */
    /* nothing changed: no commit, the deliveries are still acquired */
    ck_assert_uint_eq(fake->commit_count, 1);
    ck_assert_uint_eq(stats_of(fake).acquired, 6); /* 1, 2, 4, 5 and 40, 41 */
    /* once 4 is accepted, the same set reaches the end of partition 0 */
    accept_delivery(fake, 0, 4);
    seen.count = 0;
    queue_state_positions_if_accepted(fake->state, in_tx, 5, collect_position, &seen);
    ck_assert_int_eq(position_of(&seen, 0), 6);
    /* and the real accepts commit exactly there */
    accept_delivery(fake, 0, 1);
    accept_delivery(fake, 0, 2);
    accept_delivery(fake, 0, 5);
    ck_assert_int_eq(fake->commits[fake->commit_count - 1].offset, 6);
    fake_free(fake);
}
END_TEST

/* Register `consumer` selecting offset % mod == rem, with `credit`. */
static void add_selective(struct fake *fake, void *consumer, uint32_t credit, int64_t mod,
                          int64_t rem)
{
    REQUIRE(fake->selector_count < 8);
    fake->selectors[fake->selector_count].consumer = consumer;
    fake->selectors[fake->selector_count].mod = mod;
    fake->selectors[fake->selector_count].rem = rem;
    fake->selector_count++;
    ck_assert_int_eq(queue_state_consumer_add(fake->state, consumer, credit, false, true), 0);
    queue_state_consumer_select(fake->state, consumer);
    queue_state_consumer_block(fake->state, consumer, false);
}

static size_t deliveries_to(const struct fake *fake, const void *consumer, int64_t *offsets,
                            size_t most)
{
    size_t n = 0;
    for (size_t i = 0; i < fake->delivery_count && n < most; i++)
        if (fake->deliveries[i].consumer == consumer)
            offsets[n++] = fake->deliveries[i].offset;
    return n;
}

/* ActiveMQ's queue selectors: each selective consumer gets what it
 * selects, in order; what one does not select stays for the others. */
START_TEST(selective_consumers_get_what_they_select_in_order)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    for (int64_t offset = 0; offset < 12; offset++)
        add(fake, 0, offset);
    add_selective(fake, A, 100, 3, 0); /* 0 3 6 9 */
    add_selective(fake, B, 2, 3, 1);   /* 1 4, then no credit: 7 10 wait */
    int64_t got[16];
    static const int64_t want_a[] = {0, 3, 6, 9}, want_b[] = {1, 4};
    ck_assert_uint_eq(deliveries_to(fake, A, got, 16), 4);
    ck_assert_mem_eq(got, want_a, sizeof(want_a));
    ck_assert_uint_eq(deliveries_to(fake, B, got, 16), 2);
    ck_assert_mem_eq(got, want_b, sizeof(want_b));
    ck_assert_uint_eq(stats_of(fake).available, 6); /* 2 5 7 8 10 11 */
    /* B's credit frees: it gets its next ones, still in order */
    accept_delivery(fake, 0, 1);
    accept_delivery(fake, 0, 4);
    ck_assert_uint_eq(deliveries_to(fake, B, got, 16), 4);
    ck_assert_int_eq(got[2], 7);
    ck_assert_int_eq(got[3], 10);
    /* a consumer without a selector takes what nobody selected, in order */
    ck_assert_int_eq(queue_state_consumer_add(fake->state, C, 100, false, false), 0);
    static const int64_t want_c[] = {2, 5, 8, 11};
    ck_assert_uint_eq(deliveries_to(fake, C, got, 16), 4);
    ck_assert_mem_eq(got, want_c, sizeof(want_c));
    ck_assert_uint_eq(stats_of(fake).available, 0);
    fake_free(fake);
}
END_TEST

/* Selector answers are remembered per entry; a consumer that takes over a
 * removed one's memo bit must not inherit its answers. */
START_TEST(a_new_selective_consumer_does_not_inherit_a_removed_ones_answers)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    for (int64_t offset = 0; offset < 6; offset++)
        add(fake, 0, offset);
    add_selective(fake, A, 1, 2, 0); /* takes 0, then its credit is full */
    ck_assert_uint_eq(fake->delivery_count, 1);
    queue_state_consumer_remove(fake->state, A); /* 0 back; its bit is free */
    fake->selector_count = 0;
    add_selective(fake, B, 100, 2, 1); /* the odd ones, whatever A's bit said */
    int64_t got[8];
    static const int64_t want[] = {1, 3, 5};
    ck_assert_uint_eq(deliveries_to(fake, B, got, 8), 3);
    ck_assert_mem_eq(got, want, sizeof(want));
    ck_assert_uint_eq(stats_of(fake).available, 3);
    fake_free(fake);
}
END_TEST

static void add_group(struct fake *fake, int32_t partition, int64_t offset, uint64_t group,
                      bool closes)
{
    struct test_record *r = malloc(sizeof(*r));
    REQUIRE(r != NULL);
    *r = (struct test_record){partition, offset, RECORD_MAGIC};
    REQUIRE(queue_state_add_grouped(fake->state, partition, offset, r, group, closes) == 0);
    fake->added++;
}

/* The consumer each delivery of (partition, offset) went to, latest first. */
static const void *consumer_of(const struct fake *fake, int32_t partition, int64_t offset)
{
    for (size_t i = fake->delivery_count; i-- > 0;)
        if (fake->deliveries[i].partition == partition && fake->deliveries[i].offset == offset)
            return fake->deliveries[i].consumer;
    return NULL;
}

/* Message groups: a group's messages go to one consumer, in order, other
 * groups spread over the others; when that consumer goes, its unsettled
 * ones and the rest of its groups go to another, in order. */
START_TEST(a_group_sticks_to_one_consumer_until_it_goes)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    /* groups 1 2 3 1 2 3 1 2 3 at offsets 0..8 */
    for (int64_t offset = 0; offset < 9; offset++)
        add_group(fake, 0, offset, (uint64_t)(offset % 3) + 1, false);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 100, false, false), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 100, false, false), 0);
    /* A joined alone: it took everything, so every group is A's */
    ck_assert_uint_eq(fake->delivery_count, 9);
    for (int64_t offset = 0; offset < 9; offset++)
        ck_assert_ptr_eq(consumer_of(fake, 0, offset), A);
    /* new messages of those groups go to A too, none to B */
    add_group(fake, 0, 9, 1, false);
    add_group(fake, 0, 10, 2, false);
    ck_assert_ptr_eq(consumer_of(fake, 0, 9), A);
    ck_assert_ptr_eq(consumer_of(fake, 0, 10), A);
    /* a new group goes round robin: to B, the next in turn */
    add_group(fake, 0, 11, 7, false);
    const void *g7 = consumer_of(fake, 0, 11);
    add_group(fake, 0, 12, 7, false);
    ck_assert_ptr_eq(consumer_of(fake, 0, 12), g7);
    /* A goes: its unsettled ones come back to B in order, then its groups are B's */
    accept_delivery(fake, 0, 0);
    queue_state_consumer_remove(fake->state, A);
    int64_t got[32];
    size_t n = deliveries_to(fake, B, got, 32);
    size_t first_b = 0;
    while (first_b < n && (got[first_b] == 11 || got[first_b] == 12))
        first_b++; /* group 7's, if B had it */
    static const int64_t again[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    ck_assert_uint_ge(n - first_b, 10);
    ck_assert_mem_eq(got + first_b, again, sizeof(again));
    add_group(fake, 0, 13, 1, false);
    ck_assert_ptr_eq(consumer_of(fake, 0, 13), B);
    fake_free(fake);
}
END_TEST

/* JMSXGroupSeq -1 closes a group: its next message may go to anyone. */
START_TEST(a_closed_group_moves_with_its_next_message)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 100, false, false), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 100, false, false), 0);
    add_group(fake, 0, 0, 5, false);
    const void *first = consumer_of(fake, 0, 0);
    add_group(fake, 0, 1, 5, true); /* the last of group 5 */
    ck_assert_ptr_eq(consumer_of(fake, 0, 1), first);
    add_group(fake, 0, 2, 9, false); /* another group: the other consumer (round robin) */
    const void *other = consumer_of(fake, 0, 2);
    ck_assert_ptr_ne(other, first);
    add_group(fake, 0, 3, 5, false); /* group 5 anew: whoever is next, here `first` */
    ck_assert_ptr_eq(consumer_of(fake, 0, 3), first);
    add_group(fake, 0, 4, 5, false);
    ck_assert_ptr_eq(consumer_of(fake, 0, 4), first);
    fake_free(fake);
}
END_TEST

/* Consumer priorities (RabbitMQ's x-priority): the highest-priority ready
 * consumer gets the messages; a lower one only while the higher ones have
 * no credit; equals share round robin. */
START_TEST(higher_priority_consumers_get_messages_first)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 3, false, true), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 100, false, true), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, C, 100, false, true), 0);
    queue_state_consumer_priority(fake->state, A, 10);
    queue_state_consumer_priority(fake->state, B, 5);
    queue_state_consumer_priority(fake->state, C, 5);
    queue_state_consumer_block(fake->state, A, false);
    queue_state_consumer_block(fake->state, B, false);
    queue_state_consumer_block(fake->state, C, false);
    for (int64_t offset = 0; offset < 7; offset++)
        add(fake, 0, offset);
    int64_t got[16];
    static const int64_t want_a[] = {0, 1, 2};
    ck_assert_uint_eq(deliveries_to(fake, A, got, 16), 3); /* its credit: 3 */
    ck_assert_mem_eq(got, want_a, sizeof(want_a));
    /* the rest alternate between the two of priority 5 */
    size_t b = deliveries_to(fake, B, got, 16), c = deliveries_to(fake, C, got, 16);
    ck_assert_uint_eq(b + c, 4);
    ck_assert_uint_eq(b, 2);
    /* A has credit again: the next one is A's */
    accept_delivery(fake, 0, 0);
    add(fake, 0, 7);
    ck_assert_ptr_eq(consumer_of(fake, 0, 7), A);
    /* A leaves: priority 5 consumers take over */
    queue_state_consumer_remove(fake->state, A);
    add(fake, 0, 8);
    ck_assert_ptr_ne(consumer_of(fake, 0, 8), A);
    fake_free(fake);
}
END_TEST

/* What no selective consumer selects waits queues.selector_hold, then is
 * settled so the commit position moves; never while a consumer without a
 * selector is there, or while nobody is. */
START_TEST(unselected_records_are_settled_after_the_hold)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    for (int64_t offset = 0; offset < 6; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(queue_state_drop_unselected(fake->state, 0), 0); /* no consumer */
    add_selective(fake, A, 100, 2, 0);                                 /* 0 2 4 */
    ck_assert_uint_eq(fake->delivery_count, 3);
    for (int64_t offset = 0; offset < 6; offset += 2)
        accept_delivery(fake, 0, offset);
    ck_assert_uint_eq(fake->commit_count, 1); /* up to 1, which waits */
    ck_assert_int_eq(fake->commits[0].offset, 1);
    fake->now += 59999;
    ck_assert_uint_eq(queue_state_drop_unselected(fake->state, 60000), 0);
    /* a consumer without a selector, blocked: it would take them, so none is dropped */
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 100, false, true), 0);
    fake->now += 1;
    ck_assert_uint_eq(queue_state_drop_unselected(fake->state, 60000), 0);
    queue_state_consumer_remove(fake->state, B);
    ck_assert_uint_eq(queue_state_drop_unselected(fake->state, 60000), 3);
    ck_assert_uint_eq(stats_of(fake).unselected, 3);
    ck_assert_uint_eq(stats_of(fake).available, 0);
    ck_assert_int_eq(fake->commits[fake->commit_count - 1].offset, 6);
    ck_assert_uint_eq(fake->delivery_count, 3); /* none was delivered */
    fake_free(fake);
}
END_TEST

START_TEST(adds_are_refused_for_unassigned_partitions_and_old_offsets)
{
    struct fake *fake = fake_new(5, 1000);
    ck_assert_int_eq(try_add(fake, 0, 1), -1);
    queue_state_assign(fake->state, 0);
    queue_state_assign(fake->state, 0); /* twice is harmless */
    add(fake, 0, 5);
    ck_assert_int_eq(try_add(fake, 0, 5), -1);
    ck_assert_int_eq(try_add(fake, 0, 4), -1);
    ck_assert_int_eq(try_add(fake, 1, 6), -1);
    add(fake, 0, 6);
    queue_state_assign(fake->state, -1); /* odd numbers are still distinct keys */
    add(fake, -1, 0);
    ck_assert_uint_eq(stats_of(fake).available, 3);
    fake_free(fake);
}
END_TEST

/* ---- dispatch ------------------------------------------------------------------- */

START_TEST(round_robin_across_three_consumers_with_credit_10)
{
    struct fake *fake = fake_new(5, 100000);
    queue_state_assign(fake->state, 0);
    void *consumers[] = {A, B, C};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(queue_state_consumer_add(fake->state, consumers[i], 10, false, false), 0);
    ck_assert_uint_eq(queue_state_consumer_count(fake->state), 3);
    for (int64_t offset = 0; offset < 45; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->delivery_count, 30);
    ck_assert_uint_eq(stats_of(fake).available, 15);

    bool seen[45] = {false};
    size_t per_consumer[3] = {0, 0, 0};
    for (size_t i = 0; i < fake->delivery_count; i++) {
        const struct delivery *d = &fake->deliveries[i];
        ck_assert(!seen[d->offset]);
        seen[d->offset] = true;
        ck_assert_int_eq(d->offset, (int64_t)i);         /* fetch order */
        ck_assert_ptr_eq(d->consumer, consumers[i % 3]); /* strict rotation */
        for (int c = 0; c < 3; c++)
            if (d->consumer == consumers[c])
                per_consumer[c]++;
    }
    for (int c = 0; c < 3; c++) {
        ck_assert_uint_eq(per_consumer[c], 10);
        ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, consumers[c]), 10);
    }
    /* Accept everything as it comes: the remaining 15 are split too. */
    for (size_t i = 0; i < fake->delivery_count; i++)
        ck_assert_int_eq(
            queue_state_settle(fake->state, fake->deliveries[i].id, QUEUE_ACCEPT, NULL), 0);
    ck_assert_uint_eq(fake->delivery_count, 45);
    size_t late[3] = {0, 0, 0};
    for (size_t i = 30; i < 45; i++)
        for (int c = 0; c < 3; c++)
            if (fake->deliveries[i].consumer == consumers[c])
                late[c]++;
    for (int c = 0; c < 3; c++)
        ck_assert_uint_eq(late[c], 5);
    ck_assert_int_eq(fake->commits[fake->commit_count - 1].offset, 45);
    fake_free(fake);
}
END_TEST

START_TEST(exhausted_credit_waits_until_an_accept_frees_it)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 2, false, false), 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    add(fake, 0, 2);
    ck_assert_uint_eq(fake->delivery_count, 2);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, A), 2);
    ck_assert_uint_eq(stats_of(fake).available, 1);
    accept_delivery(fake, 0, 1);
    ck_assert_uint_eq(fake->delivery_count, 3);
    ck_assert_int_eq(last_delivery(fake)->offset, 2);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, A), 2);

    /* More credit dispatches at once; less credit only stops new deliveries. */
    add(fake, 0, 3);
    add(fake, 0, 4);
    ck_assert_uint_eq(fake->delivery_count, 3);
    queue_state_consumer_credit(fake->state, A, 3);
    ck_assert_uint_eq(fake->delivery_count, 4);
    queue_state_consumer_credit(fake->state, A, 1);
    accept_delivery(fake, 0, 0);
    ck_assert_uint_eq(fake->delivery_count, 4);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, A), 2);
    queue_state_consumer_credit(fake->state, A, UINT32_MAX);
    ck_assert_uint_eq(fake->delivery_count, 5);
    /* Unknown consumers are ignored. */
    queue_state_consumer_credit(fake->state, B, 5);
    queue_state_consumer_block(fake->state, B, true);
    queue_state_consumer_remove(fake->state, B);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, B), 0);
    fake_free(fake);
}
END_TEST

START_TEST(blocked_consumer_gets_nothing_until_unblocked)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 3, false, false), 0);
    queue_state_consumer_block(fake->state, A, true);
    for (int64_t offset = 0; offset < 6; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->delivery_count, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_ptr_eq(fake->deliveries[i].consumer, B);
    queue_state_consumer_block(fake->state, A, false);
    ck_assert_uint_eq(fake->delivery_count, 6);
    for (size_t i = 3; i < 6; i++) {
        ck_assert_ptr_eq(fake->deliveries[i].consumer, A);
        ck_assert_int_eq(fake->deliveries[i].offset, (int64_t)i);
    }
    fake_free(fake);
}
END_TEST

/* ---- release, reject, dead letters --------------------------------------------- */

START_TEST(release_is_redelivered_first_with_count_2)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    add(fake, 0, 2);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    ck_assert_int_eq(last_delivery(fake)->offset, 0);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 1);
    queue_delivery_id first = last_delivery(fake)->id;
    ck_assert_int_eq(queue_state_settle(fake->state, first, QUEUE_RELEASE, NULL), 0);
    ck_assert_uint_eq(fake->delivery_count, 2);
    ck_assert_int_eq(last_delivery(fake)->offset, 0);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 2);
    ck_assert_uint_ne(last_delivery(fake)->id, first); /* a new delivery id */
    /* The old id is gone. */
    ck_assert_int_eq(queue_state_settle(fake->state, first, QUEUE_ACCEPT, NULL), -1);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.released, 1);
    ck_assert_uint_eq(stats.redelivered, 1);
    ck_assert_uint_eq(stats.delivered, 2);
    ck_assert_uint_eq(stats.late_settles, 1);
    accept_delivery(fake, 0, 0);
    ck_assert_int_eq(last_delivery(fake)->offset, 1);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 1);
    fake_free(fake);
}
END_TEST

START_TEST(third_release_dead_letters_at_max_deliveries_3)
{
    struct fake *fake = fake_new(3, 1000);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    for (uint32_t round = 1; round <= 3; round++) {
        ck_assert_int_eq(last_delivery(fake)->offset, 0);
        ck_assert_uint_eq(last_delivery(fake)->delivery_count, round);
        ck_assert_uint_eq(fake->dead_letter_count, 0);
        ck_assert_int_eq(
            queue_state_settle(fake->state, last_delivery(fake)->id, QUEUE_RELEASE, NULL), 0);
    }
    ck_assert_uint_eq(fake->dead_letter_count, 1);
    ck_assert_int_eq(fake->dead_letters[0].offset, 0);
    ck_assert_uint_eq(fake->dead_letters[0].delivery_count, 3);
    ck_assert_str_eq(fake->dead_letters[0].reason, "delivered 3 times (max_deliveries)");
    ck_assert_uint_eq(fake->dead_letters[0].id, delivery_of(fake, 0, 0));
    /* The consumer moved on to the next record. */
    ck_assert_int_eq(last_delivery(fake)->offset, 1);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.dead_lettering, 1);
    ck_assert_uint_eq(stats.released, 3);
    /* A settle of the dead-lettering delivery is late. */
    ck_assert_int_eq(queue_state_settle(fake->state, fake->dead_letters[0].id, QUEUE_ACCEPT, NULL),
                     -1);
    ck_assert_uint_eq(stats_of(fake).late_settles, 1);
    fake_free(fake);
}
END_TEST

/* queue_state_delay_releases (architecture §13 "Delayed redelivery"): a
 * consumer's release leaves through retry and is settled when the produce
 * is confirmed; the copy fetched back from the retry topic keeps counting;
 * the last allowed delivery is dead-lettered as without delays; a failed
 * retry produce makes the record available again at once. */
START_TEST(delayed_releases_go_through_retry_and_keep_counting)
{
    struct fake *fake = fake_new(3, 1000);
    queue_state_delay_releases(fake->state, true);
    queue_state_assign(fake->state, 0);
    queue_state_assign(fake->state, 7); /* the retry topic's partition */
    add(fake, 0, 0);
    add(fake, 0, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    ck_assert_uint_eq(fake->delivery_count, 2);
    /* release of offset 0: not redelivered, handed to retry */
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 0), QUEUE_RELEASE, NULL),
                     0);
    ck_assert_uint_eq(fake->delivery_count, 2);
    ck_assert_uint_eq(fake->retry_count, 1);
    ck_assert_int_eq(fake->retries[0].offset, 0);
    ck_assert_uint_eq(fake->retries[0].delivery_count, 1);
    ck_assert_uint_eq(stats_of(fake).dead_lettering, 1);
    /* nothing committed until the retry produce is confirmed */
    accept_delivery(fake, 0, 1);
    ck_assert_uint_eq(fake->commit_count, 0);
    queue_state_dead_lettered(fake->state, fake->retries[0].id, true);
    struct commit expect[] = {{0, 2}};
    check_commits(fake, expect, 1);
    ck_assert_uint_eq(stats_of(fake).retried, 1);
    ck_assert_uint_eq(stats_of(fake).dead_lettered, 0);
    ck_assert_uint_eq(fake->dead_letter_count, 0);

    /* fetched back from the retry topic: delivered once before */
    struct test_record *r = malloc(sizeof(*r));
    REQUIRE(r != NULL);
    *r = (struct test_record){7, 40, RECORD_MAGIC};
    ck_assert_int_eq(queue_state_add_delivered(fake->state, 7, 40, r, 1), 0);
    fake->added++;
    ck_assert_int_eq(last_delivery(fake)->offset, 40);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 2);
    ck_assert_uint_eq(stats_of(fake).redelivered, 1);
    /* a failed retry produce: available again at once, same count */
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 7, 40), QUEUE_RELEASE, NULL),
                     0);
    ck_assert_uint_eq(fake->retry_count, 2);
    ck_assert_uint_eq(fake->retries[1].delivery_count, 2);
    queue_state_dead_lettered(fake->state, fake->retries[1].id, false);
    ck_assert_int_eq(last_delivery(fake)->offset, 40);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 3);
    /* the third delivery was the last: its release dead-letters */
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 7, 40), QUEUE_RELEASE, NULL),
                     0);
    ck_assert_uint_eq(fake->retry_count, 2);
    ck_assert_uint_eq(fake->dead_letter_count, 1);
    ck_assert_str_eq(fake->dead_letters[0].reason, "delivered 3 times (max_deliveries)");
    queue_state_dead_lettered(fake->state, fake->dead_letters[0].id, true);
    ck_assert_uint_eq(stats_of(fake).dead_lettered, 1);
    ck_assert_uint_eq(stats_of(fake).retried, 1);
    struct commit expect2[] = {{0, 2}, {7, 41}};
    check_commits(fake, expect2, 2);
    fake_free(fake);
}
END_TEST

/* Only a consumer's own release is delayed: a consumer that goes releases
 * what it held for immediate redelivery, as without delays. */
START_TEST(a_removed_consumers_records_are_redelivered_at_once_with_delays)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_delay_releases(fake->state, true);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 10, false, false), 0);
    const void *holder = last_delivery(fake)->consumer;
    queue_state_consumer_remove(fake->state, (void *)holder);
    ck_assert_uint_eq(fake->retry_count, 0);
    ck_assert_uint_eq(fake->delivery_count, 2);
    ck_assert_ptr_ne(last_delivery(fake)->consumer, holder);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 2);
    fake_free(fake);
}
END_TEST

START_TEST(release_undelivered_does_not_count_towards_max_deliveries)
{
    struct fake *fake = fake_new(3, 1000);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    for (int round = 0; round < 5; round++) {
        ck_assert_int_eq(last_delivery(fake)->offset, 0);
        ck_assert_uint_eq(last_delivery(fake)->delivery_count, 1);
        ck_assert_int_eq(queue_state_settle(fake->state, last_delivery(fake)->id,
                                            QUEUE_RELEASE_UNDELIVERED, NULL),
                         0);
    }
    ck_assert_uint_eq(fake->dead_letter_count, 0);
    /* A counted release after them still starts from 1. */
    ck_assert_int_eq(queue_state_settle(fake->state, last_delivery(fake)->id, QUEUE_RELEASE, NULL),
                     0);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 2);
    ck_assert_uint_eq(stats_of(fake).released, 6);
    fake_free(fake);
}
END_TEST

START_TEST(reject_dead_letters_at_once)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 0), QUEUE_REJECT, NULL),
                     0);
    ck_assert_uint_eq(fake->dead_letter_count, 1);
    ck_assert_str_eq(fake->dead_letters[0].reason, "rejected by the consumer");
    ck_assert_uint_eq(fake->dead_letters[0].delivery_count, 1);
    char reason[32];
    strcpy(reason, "bad payload");
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 1), QUEUE_REJECT, reason),
                     0);
    memset(reason, 'x', sizeof(reason) - 1); /* the reason was only borrowed */
    ck_assert_uint_eq(fake->dead_letter_count, 2);
    ck_assert_str_eq(fake->dead_letters[1].reason, "bad payload");
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.rejected, 2);
    ck_assert_uint_eq(stats.dead_lettering, 2);
    ck_assert_uint_eq(stats.acquired, 0);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, A), 0);
    ck_assert_uint_eq(fake->commit_count, 0);
    fake_free(fake);
}
END_TEST

START_TEST(confirmed_dead_letter_settles_and_commits)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    accept_delivery(fake, 0, 1);
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 0), QUEUE_REJECT, NULL),
                     0);
    ck_assert_uint_eq(fake->commit_count, 0); /* not settled before the produce confirms */
    ck_assert_uint_eq(fake->released, 1);
    queue_state_dead_lettered(fake->state, fake->dead_letters[0].id, true);
    static const struct commit expect[] = {{0, 2}};
    check_commits(fake, expect, 1);
    ck_assert_uint_eq(fake->released, 2);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.dead_lettered, 1);
    ck_assert_uint_eq(stats.dead_lettering, 0);
    /* A second report, or one for an unknown id, is ignored. */
    queue_state_dead_lettered(fake->state, fake->dead_letters[0].id, true);
    queue_state_dead_lettered(fake->state, 424242, false);
    ck_assert_uint_eq(stats_of(fake).dead_lettered, 1);
    fake_free(fake);
}
END_TEST

START_TEST(failed_dead_letter_makes_the_record_available_with_the_same_count)
{
    struct fake *fake = fake_new(2, 1000);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    add(fake, 0, 2);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    ck_assert_int_eq(queue_state_settle(fake->state, last_delivery(fake)->id, QUEUE_RELEASE, NULL),
                     0);
    ck_assert_int_eq(queue_state_settle(fake->state, last_delivery(fake)->id, QUEUE_RELEASE, NULL),
                     0);
    ck_assert_uint_eq(fake->dead_letter_count, 1);
    ck_assert_uint_eq(fake->dead_letters[0].delivery_count, 2);
    ck_assert_int_eq(last_delivery(fake)->offset, 1);
    queue_state_dead_lettered(fake->state, fake->dead_letters[0].id, false);
    ck_assert_uint_eq(stats_of(fake).dead_lettering, 0);
    ck_assert_uint_eq(stats_of(fake).available, 2);
    /* Back at the front: next delivery is offset 0, count 2 + 1. */
    accept_delivery(fake, 0, 1);
    ck_assert_int_eq(last_delivery(fake)->offset, 0);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 3);
    /* Still at max: a release dead-letters again. */
    ck_assert_int_eq(queue_state_settle(fake->state, last_delivery(fake)->id, QUEUE_RELEASE, NULL),
                     0);
    ck_assert_uint_eq(fake->dead_letter_count, 2);
    ck_assert_str_eq(fake->dead_letters[1].reason, "delivered 3 times (max_deliveries)");
    ck_assert_uint_eq(fake->commit_count, 0);
    fake_free(fake);
}
END_TEST

/* ---- consumers -------------------------------------------------------------------- */

START_TEST(removing_a_consumer_releases_its_deliveries_to_the_others)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    for (int64_t offset = 0; offset < 4; offset++)
        add(fake, 0, offset);
    add(fake, 0, 9);
    ck_assert_uint_eq(fake->delivery_count, 5);
    accept_delivery(fake, 0, 9);
    queue_delivery_id a_first = delivery_of(fake, 0, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 10, false, false), 0);
    ck_assert_uint_eq(fake->delivery_count, 5);
    queue_state_consumer_remove(fake->state, A);
    ck_assert_uint_eq(queue_state_consumer_count(fake->state), 1);
    ck_assert_uint_eq(fake->delivery_count, 9);
    for (size_t i = 5; i < 9; i++) { /* in their original order, count 2 */
        ck_assert_ptr_eq(fake->deliveries[i].consumer, B);
        ck_assert_int_eq(fake->deliveries[i].offset, (int64_t)(i - 5));
        ck_assert_uint_eq(fake->deliveries[i].delivery_count, 2);
    }
    ck_assert_int_eq(queue_state_settle(fake->state, a_first, QUEUE_ACCEPT, NULL), -1);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, B), 4);
    ck_assert_uint_eq(stats_of(fake).released, 4);
    /* Removing the last consumer leaves the records available. */
    queue_state_consumer_remove(fake->state, B);
    ck_assert_uint_eq(stats_of(fake).available, 4);
    ck_assert_uint_eq(queue_state_consumer_count(fake->state), 0);
    fake_free(fake);
}
END_TEST

START_TEST(removal_at_max_deliveries_dead_letters)
{
    struct fake *fake = fake_new(1, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    queue_state_consumer_remove(fake->state, A);
    ck_assert_uint_eq(fake->dead_letter_count, 2);
    ck_assert_str_eq(fake->dead_letters[0].reason, "delivered 1 times (max_deliveries)");
    ck_assert_int_eq(fake->dead_letters[0].offset, 0);
    ck_assert_int_eq(fake->dead_letters[1].offset, 1);
    queue_state_dead_lettered(fake->state, fake->dead_letters[1].id, true);
    ck_assert_uint_eq(fake->commit_count, 0);
    queue_state_dead_lettered(fake->state, fake->dead_letters[0].id, true);
    static const struct commit expect[] = {{0, 2}};
    check_commits(fake, expect, 1);
    fake_free(fake);
}
END_TEST

START_TEST(consumer_add_twice_updates_settings)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    ck_assert_uint_eq(fake->delivery_count, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 2, false, false), 0);
    ck_assert_uint_eq(queue_state_consumer_count(fake->state), 1);
    ck_assert_uint_eq(fake->delivery_count, 2);
    fake_free(fake);
}
END_TEST

/* ---- ack timeout ------------------------------------------------------------------- */

START_TEST(ack_timeout_releases_by_acquisition_time)
{
    struct fake *fake = fake_new(2, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    fake->now = 1000;
    add(fake, 0, 0);
    fake->now = 1500;
    add(fake, 0, 1);
    queue_delivery_id first = delivery_of(fake, 0, 0);
    queue_delivery_id second = delivery_of(fake, 0, 1);

    fake->now = 1999;
    ck_assert_uint_eq(queue_state_expire(fake->state, 1000), 0);
    fake->now = 2000; /* acquired at or before now - timeout */
    ck_assert_uint_eq(queue_state_expire(fake->state, 1000), 1);
    /* Redelivered at once (count 2) at 2000; the old id is late. */
    ck_assert_uint_eq(fake->delivery_count, 3);
    ck_assert_int_eq(last_delivery(fake)->offset, 0);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 2);
    ck_assert_int_eq(queue_state_settle(fake->state, first, QUEUE_ACCEPT, NULL), -1);

    fake->now = 2500;
    ck_assert_uint_eq(queue_state_expire(fake->state, 1000), 1);
    ck_assert_int_eq(last_delivery(fake)->offset, 1);
    ck_assert_int_eq(queue_state_settle(fake->state, second, QUEUE_ACCEPT, NULL), -1);

    /* Offset 0 expires again at count 2 = max: dead-lettered. */
    fake->now = 3000;
    ck_assert_uint_eq(queue_state_expire(fake->state, 1000), 1);
    ck_assert_uint_eq(fake->dead_letter_count, 1);
    ck_assert_int_eq(fake->dead_letters[0].offset, 0);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.expired, 3);
    ck_assert_uint_eq(stats.late_settles, 2);
    ck_assert_uint_eq(stats.acquired, 1);
    /* A clock below the timeout expires nothing. */
    fake->now = 10;
    ck_assert_uint_eq(queue_state_expire(fake->state, 1000), 0);
    fake_free(fake);
}
END_TEST

START_TEST(expired_batch_keeps_its_order_at_the_front)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 3, false, false), 0);
    for (int64_t offset = 0; offset < 5; offset++)
        add(fake, 0, offset);
    queue_state_consumer_block(fake->state, A, true);
    fake->now += 60000;
    ck_assert_uint_eq(queue_state_expire(fake->state, 30000), 3);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 10, false, false), 0);
    ck_assert_uint_eq(fake->delivery_count, 3 + 5);
    for (size_t i = 3; i < 8; i++)
        ck_assert_int_eq(fake->deliveries[i].offset, (int64_t)(i - 3));
    fake_free(fake);
}
END_TEST

/* ---- revoke -------------------------------------------------------------------------- */

START_TEST(revoke_drops_records_and_later_settles_are_late)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    queue_state_assign(fake->state, 1);
    add(fake, 0, 0);
    add(fake, 0, 1);
    add(fake, 1, 0);
    add(fake, 0, 2);
    add(fake, 1, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 2, false, false), 0);
    accept_delivery(fake, 0, 0); /* commit (0, 1); A now holds 0:1 and 1:0 */
    ck_assert_uint_eq(fake->delivery_count, 3);
    ck_assert_int_eq(last_delivery(fake)->partition, 1);
    size_t released_before = fake->released;
    queue_delivery_id revoked = delivery_of(fake, 0, 1);

    queue_state_revoke(fake->state, 0);
    ck_assert_uint_eq(fake->released, released_before + 2); /* 0:1 acquired, 0:2 available */
    ck_assert_int_eq(queue_state_settle(fake->state, revoked, QUEUE_ACCEPT, NULL), -1);
    ck_assert_uint_eq(stats_of(fake).late_settles, 1);
    /* A's credit came back: it got 1:1. */
    ck_assert_int_eq(last_delivery(fake)->partition, 1);
    ck_assert_int_eq(last_delivery(fake)->offset, 1);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, A), 2);
    ck_assert_int_eq(try_add(fake, 0, 3), -1);
    accept_delivery(fake, 1, 0);
    accept_delivery(fake, 1, 1);
    static const struct commit expect[] = {{0, 1}, {1, 1}, {1, 2}};
    check_commits(fake, expect, 3);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.available + stats.acquired + stats.dead_lettering, 0);

    /* Assigned again later (the group gave it back): a fresh start. */
    queue_state_assign(fake->state, 0);
    add(fake, 0, 1);
    accept_delivery(fake, 0, 1);
    ck_assert_int_eq(fake->commits[3].partition, 0);
    ck_assert_int_eq(fake->commits[3].offset, 2);
    queue_state_revoke(fake->state, 7); /* unknown: ignored */
    fake_free(fake);
}
END_TEST

START_TEST(revoke_keeps_dead_lettering_records_until_reported)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    add(fake, 0, 2);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, false, false), 0);
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 0), QUEUE_REJECT, NULL),
                     0);
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 1), QUEUE_REJECT, NULL),
                     0);
    queue_state_revoke(fake->state, 0);
    ck_assert_uint_eq(fake->released, 1);
    ck_assert_uint_eq(stats_of(fake).dead_lettering, 2);
    queue_state_dead_lettered(fake->state, fake->dead_letters[0].id, true);
    queue_state_dead_lettered(fake->state, fake->dead_letters[1].id, false);
    ck_assert_uint_eq(fake->released, 3);
    ck_assert_uint_eq(fake->commit_count, 0);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(stats.dead_lettering, 0);
    ck_assert_uint_eq(stats.available, 0);
    ck_assert_uint_eq(fake->delivery_count, 3);
    fake_free(fake);
}
END_TEST

/* ---- flow ------------------------------------------------------------------------------ */

START_TEST(pause_above_max_in_flight_and_resume_at_half)
{
    struct fake *fake = fake_new(5, 4);
    queue_state_assign(fake->state, 0);
    for (int64_t offset = 0; offset < 4; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->flow_count, 0);
    add(fake, 0, 4);
    ck_assert_uint_eq(fake->flow_count, 1);
    ck_assert(fake->flows[0]);
    ck_assert(stats_of(fake).paused);
    add(fake, 0, 5); /* still paused: no second call */
    ck_assert_uint_eq(fake->flow_count, 1);

    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 100, false, false), 0);
    ck_assert_uint_eq(fake->flow_count, 1); /* acquired records still count */
    for (int64_t offset = 0; offset < 3; offset++)
        accept_delivery(fake, 0, offset);
    ck_assert_uint_eq(fake->flow_count, 1); /* 3 left > 4 / 2 */
    accept_delivery(fake, 0, 3);
    ck_assert_uint_eq(fake->flow_count, 2); /* 2 left */
    ck_assert(!fake->flows[1]);
    ck_assert(!stats_of(fake).paused);
    accept_delivery(fake, 0, 4);
    ck_assert_uint_eq(fake->flow_count, 2);

    /* Dead-lettering records count too. */
    for (int64_t offset = 6; offset < 10; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->flow_count, 3);
    ck_assert(fake->flows[2]);
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 6), QUEUE_REJECT, NULL),
                     0);
    accept_delivery(fake, 0, 5);
    accept_delivery(fake, 0, 7);
    ck_assert_uint_eq(fake->flow_count, 3); /* 6 (dead-lettering), 8, 9 */
    accept_delivery(fake, 0, 8);
    ck_assert_uint_eq(fake->flow_count, 4);

    /* A limit change takes effect at once. */
    queue_state_set_limits(fake->state, 5, 1);
    ck_assert_uint_eq(fake->flow_count, 5);
    ck_assert(fake->flows[4]);
    queue_state_set_limits(fake->state, 5, 100);
    ck_assert_uint_eq(fake->flow_count, 6);
    fake_free(fake);
}
END_TEST

/* ---- auto-accept and re-entrancy --------------------------------------------------------- */

START_TEST(auto_accept_settles_right_after_deliver)
{
    struct fake *fake = fake_new(5, 1000);
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, true, false), 0);
    for (int64_t offset = 0; offset < 5; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->delivery_count, 5);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, A), 0);
    ck_assert_uint_eq(fake->released, 5);
    ck_assert_int_eq(fake->commits[fake->commit_count - 1].offset, 5);
    ck_assert_uint_eq(stats_of(fake).accepted, 5);
    /* Its ids are settled already. */
    ck_assert_int_eq(queue_state_settle(fake->state, fake->deliveries[0].id, QUEUE_ACCEPT, NULL),
                     -1);
    fake_free(fake);
}
END_TEST

static void settle_in_deliver(struct fake *fake, const struct delivery *d)
{
    enum queue_outcome *outcome = fake->hook_arg;
    ck_assert_int_eq(queue_state_settle(fake->state, d->id, *outcome, NULL), 0);
    /* Settled twice inside the callback: late. */
    ck_assert_int_eq(queue_state_settle(fake->state, d->id, QUEUE_ACCEPT, NULL), -1);
}

START_TEST(reentrant_settle_from_inside_deliver)
{
    struct fake *fake = fake_new(3, 1000);
    enum queue_outcome outcome = QUEUE_ACCEPT;
    fake->on_deliver = settle_in_deliver;
    fake->hook_arg = &outcome;
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 1, true, false), 0);
    for (int64_t offset = 0; offset < 100; offset++)
        add(fake, 0, offset);
    ck_assert_uint_eq(fake->delivery_count, 100);
    ck_assert_uint_eq(fake->released, 100);
    ck_assert_int_eq(fake->commits[fake->commit_count - 1].offset, 100);

    /* Release inside deliver: redelivered until max_deliveries, then dead-lettered. */
    outcome = QUEUE_RELEASE;
    add(fake, 0, 100);
    ck_assert_uint_eq(fake->delivery_count, 103);
    ck_assert_uint_eq(fake->dead_letter_count, 1);
    ck_assert_uint_eq(fake->dead_letters[0].delivery_count, 3);
    fake_free(fake);
}
END_TEST

static void remove_and_add_in_deliver(struct fake *fake, const struct delivery *d)
{
    if (d->offset == 1 && d->consumer == B) {
        queue_state_consumer_remove(fake->state, d->consumer); /* releases 0 and 1 */
        ck_assert_int_eq(queue_state_consumer_add(fake->state, C, 10, false, false), 0);
        add(fake, 0, 50); /* dispatched after this callback returns */
        queue_state_consumer_block(fake->state, B, true);
    }
}

START_TEST(reentrant_consumer_changes_from_inside_deliver)
{
    struct fake *fake = fake_new(5, 1000);
    fake->on_deliver = remove_and_add_in_deliver;
    queue_state_assign(fake->state, 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, true, false), 0);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 10, false, false), 0);
    queue_state_consumer_block(fake->state, B, true);
    add(fake, 0, 0); /* auto-accepted by A */
    queue_state_consumer_block(fake->state, A, true);
    queue_state_consumer_block(fake->state, B, false);
    add(fake, 0, 1); /* to B, which removes itself inside deliver */
    ck_assert_uint_eq(queue_state_consumer_count(fake->state), 2);
    ck_assert_ptr_eq(last_delivery(fake)->consumer, C);
    ck_assert_uint_eq(fake->delivery_count, 4); /* 0 to A, 1 to B, 1 and 50 to C */
    ck_assert_int_eq(fake->deliveries[2].offset, 1);
    ck_assert_uint_eq(fake->deliveries[2].delivery_count, 2);
    ck_assert_int_eq(fake->deliveries[3].offset, 50);
    ck_assert_uint_eq(queue_state_consumer_unsettled(fake->state, C), 2);
    fake_free(fake);
}
END_TEST

static void confirm_in_dead_letter(struct fake *fake, const struct dead_letter *d)
{
    bool *ok = fake->hook_arg;
    queue_state_dead_lettered(fake->state, d->id, *ok);
}

START_TEST(reentrant_dead_letter_report_from_inside_the_callback)
{
    struct fake *fake = fake_new(5, 1000);
    bool ok = true;
    fake->on_dead_letter = confirm_in_dead_letter;
    fake->hook_arg = &ok;
    queue_state_assign(fake->state, 0);
    add(fake, 0, 0);
    add(fake, 0, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 1, false, false), 0);
    ck_assert_int_eq(queue_state_settle(fake->state, last_delivery(fake)->id, QUEUE_REJECT, NULL),
                     0);
    static const struct commit expect[] = {{0, 1}};
    check_commits(fake, expect, 1);
    ok = false; /* fails at once: back to available, redelivered */
    ck_assert_int_eq(queue_state_settle(fake->state, last_delivery(fake)->id, QUEUE_REJECT, NULL),
                     0);
    ck_assert_int_eq(last_delivery(fake)->offset, 1);
    ck_assert_uint_eq(last_delivery(fake)->delivery_count, 2);
    ck_assert_uint_eq(stats_of(fake).dead_lettering, 0);
    fake_free(fake);
}
END_TEST

static void revoke_in_deliver(struct fake *fake, const struct delivery *d)
{
    if (d->offset == 2)
        queue_state_revoke(fake->state, 0);
}

START_TEST(reentrant_revoke_from_inside_deliver)
{
    struct fake *fake = fake_new(5, 1000);
    fake->on_deliver = revoke_in_deliver;
    queue_state_assign(fake->state, 0);
    for (int64_t offset = 0; offset < 5; offset++)
        add(fake, 0, offset);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 10, true, false), 0);
    /* 0, 1 accepted; 2 revoked while being delivered; 3 and 4 dropped. */
    ck_assert_uint_eq(fake->delivery_count, 3);
    ck_assert_uint_eq(fake->released, 5);
    static const struct commit expect[] = {{0, 1}, {0, 2}};
    check_commits(fake, expect, 2);
    fake_free(fake);
}
END_TEST

/* ---- free ----------------------------------------------------------------------------------- */

START_TEST(free_releases_every_record)
{
    struct fake *fake = fake_new(5, 3);
    queue_state_assign(fake->state, 0);
    queue_state_assign(fake->state, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, A, 3, false, false), 0);
    for (int64_t offset = 0; offset < 10; offset++) {
        add(fake, 0, offset);
        add(fake, 1, offset);
    }
    ck_assert_int_eq(queue_state_settle(fake->state, delivery_of(fake, 0, 0), QUEUE_REJECT, NULL),
                     0);
    accept_delivery(fake, 0, 1);
    ck_assert_int_eq(queue_state_consumer_add(fake->state, B, 2, false, false), 0);
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_gt(stats.available, 0);
    ck_assert_uint_gt(stats.acquired, 0);
    ck_assert_uint_eq(stats.dead_lettering, 1);
    ck_assert_uint_eq(fake->added, 20);
    fake_free(fake); /* checks released == added */
    queue_state_free(NULL);
}
END_TEST

/* ---- stress -----------------------------------------------------------------------------------
 */

struct stress {
    queue_delivery_id *held; /* outstanding delivery ids */
    size_t held_count, held_cap;
    queue_delivery_id *dead; /* dead letters awaiting a report */
    size_t dead_count, dead_cap;
    int64_t *last_commit; /* per partition */
    uint64_t rng;
};

static uint64_t next_random(uint64_t *state)
{
    /* xorshift64*: fixed seed, same run every time. */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * UINT64_C(2685821657736338717);
}

static void stress_deliver(struct fake *fake, const struct delivery *d)
{
    struct stress *s = fake->hook_arg;
    /* a selective consumer gets only what its selector selects */
    for (size_t i = 0; i < fake->selector_count; i++)
        if (fake->selectors[i].consumer == d->consumer)
            REQUIRE(d->offset % fake->selectors[i].mod == fake->selectors[i].rem);
    GROW(s->held, s->held_count, s->held_cap);
    s->held[s->held_count++] = d->id;
}

static void stress_dead_letter(struct fake *fake, const struct dead_letter *d)
{
    struct stress *s = fake->hook_arg;
    GROW(s->dead, s->dead_count, s->dead_cap);
    s->dead[s->dead_count++] = d->id;
}

#define STRESS_RECORDS 200000
#define STRESS_PARTITIONS 8
#define STRESS_CONSUMERS 5

START_TEST(stress_200k_records_in_random_order)
{
    struct fake *fake = fake_new(3, 5000);
    struct stress s = {.rng = UINT64_C(0x9e3779b97f4a7c15)};
    s.last_commit = calloc(STRESS_PARTITIONS, sizeof(*s.last_commit));
    fake->on_deliver = stress_deliver;
    fake->on_dead_letter = stress_dead_letter;
    fake->hook_arg = &s;
    static char consumers[STRESS_CONSUMERS];
    for (int p = 0; p < STRESS_PARTITIONS; p++)
        queue_state_assign(fake->state, p);
    for (int c = 0; c < STRESS_CONSUMERS; c++)
        ck_assert_int_eq(queue_state_consumer_add(fake->state, &consumers[c], 200, false, false),
                         0);

    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int64_t next_offset[STRESS_PARTITIONS] = {0};
    size_t added = 0;
    size_t commits_checked = 0;
    while (added < STRESS_RECORDS || s.held_count || s.dead_count) {
        /* Fetch a batch unless paused. */
        if (added < STRESS_RECORDS && !stats_of(fake).paused) {
            for (int i = 0; i < 500 && added < STRESS_RECORDS; i++) {
                int p = (int)(next_random(&s.rng) % STRESS_PARTITIONS);
                next_offset[p] += 1 + (int64_t)(next_random(&s.rng) % 3); /* gaps */
                add(fake, p, next_offset[p]);
                added++;
            }
        }
        /* Settle a random half of what is held, in random order. */
        size_t to_settle = s.held_count / 2 + 1;
        for (size_t i = 0; i < to_settle && s.held_count; i++) {
            size_t pick = (size_t)(next_random(&s.rng) % s.held_count);
            queue_delivery_id id = s.held[pick];
            s.held[pick] = s.held[--s.held_count];
            uint64_t dice = next_random(&s.rng) % 100;
            enum queue_outcome outcome = dice < 90   ? QUEUE_ACCEPT
                                         : dice < 98 ? QUEUE_RELEASE
                                                     : QUEUE_REJECT;
            REQUIRE(queue_state_settle(fake->state, id, outcome, NULL) == 0);
        }
        /* Report dead letters; 1 in 10 fails and comes back. */
        while (s.dead_count) {
            queue_delivery_id id = s.dead[--s.dead_count];
            queue_state_dead_lettered(fake->state, id, next_random(&s.rng) % 10 != 0);
        }
        /* Invariants. */
        struct queue_state_stats stats = stats_of(fake);
        REQUIRE(stats.available + stats.acquired + stats.dead_lettering ==
                fake->added - fake->released);
        REQUIRE(stats.acquired == s.held_count);
        REQUIRE(stats.available + stats.acquired + stats.dead_lettering <= 5000 + 500);
        uint32_t unsettled = 0;
        for (int c = 0; c < STRESS_CONSUMERS; c++) {
            uint32_t n = queue_state_consumer_unsettled(fake->state, &consumers[c]);
            REQUIRE(n <= 200);
            unsettled += n;
        }
        REQUIRE(unsettled == stats.acquired);
        for (; commits_checked < fake->commit_count; commits_checked++) {
            const struct commit *commit = &fake->commits[commits_checked];
            REQUIRE(commit->offset > s.last_commit[commit->partition]);
            REQUIRE(commit->offset <= next_offset[commit->partition] + 1);
            s.last_commit[commit->partition] = commit->offset;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds =
        (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;

    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_eq(fake->released, STRESS_RECORDS);
    ck_assert_uint_eq(stats.available + stats.acquired + stats.dead_lettering, 0);
    ck_assert_uint_eq(stats.accepted + stats.dead_lettered, STRESS_RECORDS);
    ck_assert_uint_gt(stats.dead_lettered, 0);
    ck_assert_uint_gt(stats.redelivered, 0);
    ck_assert(!stats.paused);
    for (int p = 0; p < STRESS_PARTITIONS; p++)
        ck_assert_int_eq(s.last_commit[p], next_offset[p] + 1);
    fprintf(stderr, "stress: %d records, %" PRIu64 " deliveries, %zu commits in %.3f s\n",
            STRESS_RECORDS, stats.delivered, fake->commit_count, seconds);

    free(s.held);
    free(s.dead);
    free(s.last_commit);
    fake_free(fake);
}
END_TEST

/* Every operation at random, including the rare ones (revoke, expiry,
 * consumer churn, blocking, credit changes, failed dead letters), checking
 * after each step that the counts add up and commits only move forward on
 * assigned partitions. */
#define CHAOS_STEPS 60000
#define CHAOS_PARTITIONS 4
#define CHAOS_CONSUMERS 6

START_TEST(random_operations_keep_the_books_consistent)
{
    struct fake *fake = fake_new(3, 300);
    struct stress s = {.rng = UINT64_C(0x2545f4914f6cdd1d)};
    s.last_commit = calloc(CHAOS_PARTITIONS, sizeof(*s.last_commit));
    fake->on_deliver = stress_deliver;
    fake->on_dead_letter = stress_dead_letter;
    fake->hook_arg = &s;
    static char consumers[CHAOS_CONSUMERS];
    bool present[CHAOS_CONSUMERS] = {false};
    bool assigned[CHAOS_PARTITIONS] = {false};
    int64_t next_offset[CHAOS_PARTITIONS] = {0};
    uint64_t late = 0;
    size_t commits_checked = 0;

    for (int step = 0; step < CHAOS_STEPS; step++) {
        uint64_t op = next_random(&s.rng) % 100;
        int p = (int)(next_random(&s.rng) % CHAOS_PARTITIONS);
        int c = (int)(next_random(&s.rng) % CHAOS_CONSUMERS);
        if (op < 30) {
            if (!stats_of(fake).paused) {
                next_offset[p] += 1 + (int64_t)(next_random(&s.rng) % 2);
                int rc = try_add(fake, p, next_offset[p]);
                REQUIRE(rc == (assigned[p] ? 0 : -1));
            }
        } else if (op < 65) {
            if (s.held_count) {
                size_t pick = (size_t)(next_random(&s.rng) % s.held_count);
                queue_delivery_id id = s.held[pick];
                s.held[pick] = s.held[--s.held_count];
                uint64_t dice = next_random(&s.rng) % 10;
                enum queue_outcome outcome = dice < 7   ? QUEUE_ACCEPT
                                             : dice < 9 ? QUEUE_RELEASE
                                                        : QUEUE_REJECT;
                if (queue_state_settle(fake->state, id, outcome, "chaos") != 0)
                    late++;
            }
        } else if (op < 75) {
            if (s.dead_count) {
                size_t pick = (size_t)(next_random(&s.rng) % s.dead_count);
                queue_delivery_id id = s.dead[pick];
                s.dead[pick] = s.dead[--s.dead_count];
                queue_state_dead_lettered(fake->state, id, next_random(&s.rng) % 4 != 0);
            }
        } else if (op < 80) {
            fake->now += next_random(&s.rng) % 2000;
            queue_state_expire(fake->state, 1500);
            queue_state_drop_unselected(fake->state, 3000);
        } else if (op < 86) {
            if (present[c]) {
                queue_state_consumer_remove(fake->state, &consumers[c]);
                present[c] = false;
                for (size_t i = 0; i < fake->selector_count; i++)
                    if (fake->selectors[i].consumer == &consumers[c])
                        fake->selectors[i] = fake->selectors[--fake->selector_count];
            } else {
                uint32_t credit = (uint32_t)(next_random(&s.rng) % 20);
                bool auto_accept = next_random(&s.rng) % 4 == 0;
                bool selective = next_random(&s.rng) % 3 == 0; /* offset % 3 == c % 3 */
                REQUIRE(queue_state_consumer_add(fake->state, &consumers[c], credit, auto_accept,
                                                 selective) == 0);
                if (next_random(&s.rng) % 4 == 0) /* consumer priorities 1..3 */
                    queue_state_consumer_priority(fake->state, &consumers[c],
                                                  1 + (int32_t)(next_random(&s.rng) % 3));
                if (selective) {
                    fake->selectors[fake->selector_count].consumer = &consumers[c];
                    fake->selectors[fake->selector_count].mod = 3;
                    fake->selectors[fake->selector_count].rem = c % 3;
                    fake->selector_count++;
                    queue_state_consumer_select(fake->state, &consumers[c]);
                    queue_state_consumer_block(fake->state, &consumers[c], false);
                }
                present[c] = true;
            }
        } else if (op < 91) {
            queue_state_consumer_block(fake->state, &consumers[c], next_random(&s.rng) % 3 == 0);
        } else if (op < 96) {
            queue_state_consumer_credit(fake->state, &consumers[c],
                                        (uint32_t)(next_random(&s.rng) % 20));
        } else if (op < 98) {
            if (assigned[p])
                queue_state_revoke(fake->state, p);
            assigned[p] = false;
        } else {
            queue_state_assign(fake->state, p);
            assigned[p] = true;
        }

        struct queue_state_stats stats = stats_of(fake);
        REQUIRE(stats.available + stats.acquired + stats.dead_lettering ==
                fake->added - fake->released);
        REQUIRE(stats.late_settles == late);
        REQUIRE(stats.delivered == fake->delivery_count);
        REQUIRE(stats.dead_lettering <= s.dead_count);
        uint32_t unsettled = 0;
        size_t count = 0;
        for (int i = 0; i < CHAOS_CONSUMERS; i++) {
            unsettled += queue_state_consumer_unsettled(fake->state, &consumers[i]);
            count += present[i];
        }
        REQUIRE(unsettled == stats.acquired);
        REQUIRE(count == queue_state_consumer_count(fake->state));
        for (; commits_checked < fake->commit_count; commits_checked++) {
            const struct commit *commit = &fake->commits[commits_checked];
            REQUIRE(assigned[commit->partition]);
            REQUIRE(commit->offset > s.last_commit[commit->partition]);
            REQUIRE(commit->offset <= next_offset[commit->partition] + 1);
            s.last_commit[commit->partition] = commit->offset;
        }
    }
    struct queue_state_stats stats = stats_of(fake);
    ck_assert_uint_gt(stats.expired, 0);
    ck_assert_uint_gt(stats.dead_lettered, 0);
    ck_assert_uint_gt(stats.accepted, 1000);
    ck_assert_uint_gt(late, 0);
    free(s.held);
    free(s.dead);
    free(s.last_commit);
    fake_free(fake);
}
END_TEST

static Suite *queue_state_suite(void)
{
    Suite *suite = suite_create("queue_state");
    TCase *offsets = tcase_create("offsets");
    tcase_add_test(offsets, out_of_order_accepts_commit_only_the_lowest_unsettled);
    tcase_add_test(offsets, purge_drops_available_keeps_acquired_and_skips_later_records);
    tcase_add_test(offsets, offset_gaps_and_partitions_are_independent);
    tcase_add_test(offsets, adds_are_refused_for_unassigned_partitions_and_old_offsets);
    tcase_add_test(offsets, positions_if_accepted_stop_at_the_first_delivery_outside_the_set);
    tcase_add_test(offsets, unselected_records_are_settled_after_the_hold);
    suite_add_tcase(suite, offsets);

    TCase *dispatch = tcase_create("dispatch");
    tcase_add_test(dispatch, round_robin_across_three_consumers_with_credit_10);
    tcase_add_test(dispatch, selective_consumers_get_what_they_select_in_order);
    tcase_add_test(dispatch, a_new_selective_consumer_does_not_inherit_a_removed_ones_answers);
    tcase_add_test(dispatch, a_group_sticks_to_one_consumer_until_it_goes);
    tcase_add_test(dispatch, a_closed_group_moves_with_its_next_message);
    tcase_add_test(dispatch, higher_priority_consumers_get_messages_first);
    tcase_add_test(dispatch, a_consumer_added_blocked_gets_nothing_until_unblocked);
    tcase_add_test(dispatch, release_undelivered_does_not_count_towards_max_deliveries);
    tcase_add_test(dispatch, exhausted_credit_waits_until_an_accept_frees_it);
    tcase_add_test(dispatch, blocked_consumer_gets_nothing_until_unblocked);
    tcase_add_test(dispatch, consumer_add_twice_updates_settings);
    suite_add_tcase(suite, dispatch);

    TCase *outcomes = tcase_create("outcomes");
    tcase_add_test(outcomes, release_is_redelivered_first_with_count_2);
    tcase_add_test(outcomes, third_release_dead_letters_at_max_deliveries_3);
    tcase_add_test(outcomes, delayed_releases_go_through_retry_and_keep_counting);
    tcase_add_test(outcomes, a_removed_consumers_records_are_redelivered_at_once_with_delays);
    tcase_add_test(outcomes, reject_dead_letters_at_once);
    tcase_add_test(outcomes, confirmed_dead_letter_settles_and_commits);
    tcase_add_test(outcomes, failed_dead_letter_makes_the_record_available_with_the_same_count);
    tcase_add_test(outcomes, removing_a_consumer_releases_its_deliveries_to_the_others);
    tcase_add_test(outcomes, removal_at_max_deliveries_dead_letters);
    tcase_add_test(outcomes, ack_timeout_releases_by_acquisition_time);
    tcase_add_test(outcomes, expired_batch_keeps_its_order_at_the_front);
    suite_add_tcase(suite, outcomes);

    TCase *partitions = tcase_create("partitions_and_flow");
    tcase_add_test(partitions, revoke_drops_records_and_later_settles_are_late);
    tcase_add_test(partitions, revoke_keeps_dead_lettering_records_until_reported);
    tcase_add_test(partitions, pause_above_max_in_flight_and_resume_at_half);
    tcase_add_test(partitions, free_releases_every_record);
    suite_add_tcase(suite, partitions);

    TCase *reentrancy = tcase_create("reentrancy");
    tcase_add_test(reentrancy, auto_accept_settles_right_after_deliver);
    tcase_add_test(reentrancy, reentrant_settle_from_inside_deliver);
    tcase_add_test(reentrancy, reentrant_consumer_changes_from_inside_deliver);
    tcase_add_test(reentrancy, reentrant_dead_letter_report_from_inside_the_callback);
    tcase_add_test(reentrancy, reentrant_revoke_from_inside_deliver);
    suite_add_tcase(suite, reentrancy);

    TCase *stress = tcase_create("stress");
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress, stress_200k_records_in_random_order);
    tcase_add_test(stress, random_operations_keep_the_books_consistent);
    suite_add_tcase(suite, stress);
    return suite;
}

CHECK_MAIN(queue_state_suite)
