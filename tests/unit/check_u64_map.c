/* SPDX-License-Identifier: Apache-2.0 */
/* check_u64_map.c -- the shared hash table (daemon/u64_map.c): insertion,
 * lookup, removal keeping every other key findable (backward-shift
 * deletion across wrap-around), growth, and string keys. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "u64_map.h"
#include "unit_main.h"

#define KEYS 5000

/* Values are the key's own address in this array, so a lookup proves which key it found. */
static uint64_t keys[KEYS];

static uint64_t key_at(size_t i)
{
    /* spread and clustered keys: counters, pointer-like strides, large values */
    return i % 3 == 0 ? i + 1 : i % 3 == 1 ? (uint64_t)(i + 1) * 4096 : UINT64_MAX - i;
}

START_TEST(every_key_put_is_found_and_absent_keys_are_not)
{
    struct u64_map map = {0};
    ck_assert_ptr_null(u64_map_get(&map, 1)); /* empty, never allocated */
    for (size_t i = 0; i < KEYS; i++) {
        keys[i] = key_at(i);
        ck_assert_int_eq(u64_map_reserve(&map), 0);
        u64_map_put(&map, keys[i], &keys[i]);
    }
    ck_assert_uint_eq(map.count, KEYS);
    ck_assert_uint_le(map.count * 2, map.mask + 1); /* at most half full */
    for (size_t i = 0; i < KEYS; i++)
        ck_assert_ptr_eq(u64_map_get(&map, keys[i]), &keys[i]);
    ck_assert_ptr_null(u64_map_get(&map, 0)); /* 0 is never a key */
    ck_assert_ptr_null(u64_map_get(&map, 2 * 4096 + 7));
    u64_map_free(&map);
    ck_assert_ptr_null(u64_map_get(&map, keys[0]));
}
END_TEST

START_TEST(removing_keeps_every_other_key_findable)
{
    struct u64_map map = {0};
    for (size_t i = 0; i < KEYS; i++) {
        keys[i] = key_at(i);
        ck_assert_int_eq(u64_map_reserve(&map), 0);
        u64_map_put(&map, keys[i], &keys[i]);
    }
    /* remove every other key, then check all of them */
    for (size_t i = 0; i < KEYS; i += 2)
        u64_map_remove(&map, keys[i]);
    u64_map_remove(&map, 12345678); /* absent: nothing happens */
    ck_assert_uint_eq(map.count, KEYS / 2);
    for (size_t i = 0; i < KEYS; i++) {
        if (i % 2 == 0)
            ck_assert_ptr_null(u64_map_get(&map, keys[i]));
        else
            ck_assert_ptr_eq(u64_map_get(&map, keys[i]), &keys[i]);
    }
    /* put them back: the holes are reused and everything is found again */
    for (size_t i = 0; i < KEYS; i += 2) {
        ck_assert_int_eq(u64_map_reserve(&map), 0);
        u64_map_put(&map, keys[i], &keys[i]);
    }
    for (size_t i = 0; i < KEYS; i++)
        ck_assert_ptr_eq(u64_map_get(&map, keys[i]), &keys[i]);
    u64_map_free(&map);
}
END_TEST

/* Small half-full tables over many seeds: removal must shift probe runs,
 * including runs that wrap from the last slot to the first. */
START_TEST(removal_in_a_half_full_small_table_keeps_the_rest_findable)
{
    for (uint64_t seed = 1; seed < 200; seed++) {
        struct u64_map map = {0};
        uint64_t local[8];
        for (size_t i = 0; i < 8; i++) {
            local[i] = seed * 7919 + i * 16; /* 8 keys in a 16-slot table */
            ck_assert_int_eq(u64_map_reserve(&map), 0);
            u64_map_put(&map, local[i], &local[i]);
        }
        ck_assert_uint_eq(map.mask + 1, 16);
        for (size_t gone = 0; gone < 8; gone++) {
            u64_map_remove(&map, local[gone]);
            for (size_t i = 0; i < 8; i++)
                ck_assert_ptr_eq(u64_map_get(&map, local[i]), i <= gone ? NULL : &local[i]);
        }
        ck_assert_uint_eq(map.count, 0);
        u64_map_free(&map);
    }
}
END_TEST

START_TEST(string_keys_are_nonzero_and_stable)
{
    ck_assert_uint_eq(u64_map_string_key("abc", 3), u64_map_string_key("abcdef", 3));
    ck_assert_uint_ne(u64_map_string_key("abc", 3), u64_map_string_key("abd", 3));
    ck_assert_uint_ne(u64_map_string_key("", 0), 0);
    ck_assert_uint_ne(u64_map_string_key("node.0123456789abcdef", 21), 0);
}
END_TEST

static Suite *u64_map_suite(void)
{
    Suite *suite = suite_create("u64_map");
    TCase *tcase = tcase_create("map");
    tcase_add_test(tcase, every_key_put_is_found_and_absent_keys_are_not);
    tcase_add_test(tcase, removing_keeps_every_other_key_findable);
    tcase_add_test(tcase, removal_in_a_half_full_small_table_keeps_the_rest_findable);
    tcase_add_test(tcase, string_keys_are_nonzero_and_stable);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(u64_map_suite)
