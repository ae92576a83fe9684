/* SPDX-License-Identifier: Apache-2.0 */
/* check_binding.c -- RabbitMQ's exchange-type matchers (daemon/binding.c):
 * topic patterns (RabbitMQ's word splitting incl. empty words, `#` at both
 * ends and in the middle, checked against a brute-force reference over every
 * short pattern and key), headers bindings under each x-match mode, and the
 * type and mode names. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "unit_main.h"

static bool topic(const char *pattern, const char *key)
{
    return binding_topic_match(pattern, strlen(pattern), key, strlen(key));
}

START_TEST(topic_patterns_match_as_in_rabbitmq)
{
    static const struct {
        const char *pattern, *key;
        bool match;
    } cases[] = {
        {"a.b", "a.b", true},
        {"a.b", "a.c", false},
        {"a.*", "a.b", true},
        {"a.*", "a", false},
        {"a.*", "a.b.c", false},
        {"a.#", "a", true}, /* # is zero or more words */
        {"a.#", "a.b.c", true},
        {"a.#", "b.a", false},
        {"#", "", true},
        {"#", "a.b.c", true},
        {"#.c", "c", true},
        {"#.c", "a.b.c", true},
        {"#.c", "a.b.c.d", false},
        {"#.b.#", "b", true},
        {"#.b.#", "a.b.c", true},
        {"#.b.#", "a.c", false},
        {"a.#.c", "a.c", true},
        {"a.#.c", "a.x.y.c", true},
        {"a.#.c", "a.x.y.c.d", false},
        {"*.#.*", "a", false},
        {"*.#.*", "a.b", true},
        {"#.#", "", true},
        {"*", "", false}, /* the empty key has no words */
        {"", "", true},
        {"", "a", false},
        {"a.*", "a.", true}, /* "a." is "a" and an empty word */
        {"a.", "a.", true},
        {"a.", "a", false},
        {"*.a", ".a", true},
        {"a..b", "a..b", true},
        {"a.*.b", "a..b", true},
        {"a.#.b", "a..b", true},
        {"a#", "a#", true}, /* # and * are special only as whole words */
        {"a#", "ab", false},
        {"a*", "ab", false},
        {"stock.usd.*", "stock.usd.nyse", true},
        {"stock.*.nyse", "stock.eur.nyse", true},
        {"*.orange.*", "quick.orange.rabbit", true},
        {"*.*.rabbit", "lazy.orange.elephant", false},
        {"lazy.#", "lazy.orange.male.rabbit", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(topic(cases[i].pattern, cases[i].key) == cases[i].match,
                      "pattern '%s' key '%s': expected %s", cases[i].pattern, cases[i].key,
                      cases[i].match ? "a match" : "no match");
}
END_TEST

/* ---- a brute-force reference: split like RabbitMQ, match recursively -------- */

#define MAX_WORDS 8

static int split(const char *text, char words[][8])
{
    if (!*text)
        return 0; /* RabbitMQ: the empty string has no words */
    int n = 0;
    const char *start = text;
    for (const char *c = text;; c++) {
        if (*c == '.' || !*c) {
            snprintf(words[n], 8, "%.*s", (int)(c - start), start);
            n++;
            if (!*c)
                break;
            start = c + 1;
        }
    }
    return n;
}

static bool reference(char p[][8], int np, char k[][8], int nk)
{
    if (np == 0)
        return nk == 0;
    if (strcmp(p[0], "#") == 0) {
        for (int eat = 0; eat <= nk; eat++)
            if (reference(p + 1, np - 1, k + eat, nk - eat))
                return true;
        return false;
    }
    if (nk == 0)
        return false;
    if (strcmp(p[0], "*") == 0 || strcmp(p[0], k[0]) == 0)
        return reference(p + 1, np - 1, k + 1, nk - 1);
    return false;
}

/* Every string of up to `length` characters over `alphabet`, into out. */
static size_t all_strings(const char *alphabet, int length, char out[][MAX_WORDS * 2])
{
    size_t count = 1;
    out[0][0] = '\0';
    size_t level_start = 0;
    size_t alphabet_len = strlen(alphabet);
    for (int len = 1; len <= length; len++) {
        size_t level_end = count;
        for (size_t i = level_start; i < level_end; i++) {
            for (size_t a = 0; a < alphabet_len; a++) {
                snprintf(out[count], MAX_WORDS * 2, "%s%c", out[i], alphabet[a]);
                count++;
            }
        }
        level_start = level_end;
    }
    return count;
}

START_TEST(topic_matcher_agrees_with_a_brute_force_reference)
{
    /* patterns over {a, b, *, #, .} and keys over {a, b, .}, up to 5 characters:
     * empty words, leading/trailing dots, adjacent wildcards */
    static char patterns[1 + 5 + 25 + 125 + 625 + 3125][MAX_WORDS * 2];
    static char keys[1 + 3 + 9 + 27 + 81 + 243][MAX_WORDS * 2];
    size_t np = all_strings("ab*#.", 5, patterns);
    size_t nk = all_strings("ab.", 5, keys);
    size_t matches = 0;
    for (size_t i = 0; i < np; i++) {
        char pw[MAX_WORDS][8];
        int pn = split(patterns[i], pw);
        for (size_t j = 0; j < nk; j++) {
            char kw[MAX_WORDS][8];
            int kn = split(keys[j], kw);
            bool want = reference(pw, pn, kw, kn);
            bool got = topic(patterns[i], keys[j]);
            if (got != want)
                ck_abort_msg("pattern '%s' key '%s': matcher says %d, reference %d", patterns[i],
                             keys[j], got, want);
            matches += want;
        }
    }
    ck_assert_uint_gt(matches, 1000); /* the space is not trivially all-false */
}
END_TEST

/* ---- headers ------------------------------------------------------------------ */

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, v, sizeof(v) - 1                                                                        \
    }
#define P(n)                                                                                       \
    {                                                                                              \
        n, NULL, 0                                                                                 \
    } /* a value-less argument or header */

static const struct binding_header message[] = {
    H("format", "pdf"),
    H("type", "report"),
    H("x-source", "billing"),
    H("empty", ""),
};
#define MESSAGE_COUNT (sizeof(message) / sizeof(message[0]))

static bool headers(enum headers_match mode, const struct binding_header *arguments, size_t count)
{
    return binding_headers_match(mode, arguments, count, message, MESSAGE_COUNT);
}

START_TEST(headers_all_needs_every_argument)
{
    struct binding_header both[] = {H("x-match", "all"), H("format", "pdf"), H("type", "report")};
    ck_assert(headers(HEADERS_MATCH_ALL, both, 3));
    struct binding_header one_wrong[] = {H("format", "pdf"), H("type", "log")};
    ck_assert(!headers(HEADERS_MATCH_ALL, one_wrong, 2));
    struct binding_header missing[] = {H("format", "pdf"), H("size", "big")};
    ck_assert(!headers(HEADERS_MATCH_ALL, missing, 2));
    /* values compare as bytes: a prefix is not equal */
    struct binding_header prefix[] = {H("format", "pd")};
    ck_assert(!headers(HEADERS_MATCH_ALL, prefix, 1));
    struct binding_header empty_value[] = {H("empty", "")};
    ck_assert(headers(HEADERS_MATCH_ALL, empty_value, 1));
    /* no arguments: all matches everything */
    ck_assert(headers(HEADERS_MATCH_ALL, NULL, 0));
}
END_TEST

START_TEST(headers_any_needs_one_argument)
{
    struct binding_header one[] = {H("x-match", "any"), H("format", "zip"), H("type", "report")};
    ck_assert(headers(HEADERS_MATCH_ANY, one, 3));
    struct binding_header none[] = {H("format", "zip"), H("type", "log")};
    ck_assert(!headers(HEADERS_MATCH_ANY, none, 2));
    /* no arguments: any matches nothing */
    ck_assert(!headers(HEADERS_MATCH_ANY, NULL, 0));
}
END_TEST

START_TEST(headers_x_arguments_count_only_with_x)
{
    struct binding_header x_only[] = {H("x-match", "any-with-x"), H("x-source", "billing")};
    ck_assert(!headers(HEADERS_MATCH_ANY, x_only, 2)); /* x-* ignored: nothing to match */
    ck_assert(headers(HEADERS_MATCH_ANY_WITH_X, x_only, 2));
    struct binding_header x_wrong[] = {H("format", "pdf"), H("x-source", "sales")};
    ck_assert(headers(HEADERS_MATCH_ALL, x_wrong, 2)); /* x-source ignored */
    ck_assert(!headers(HEADERS_MATCH_ALL_WITH_X, x_wrong, 2));
    /* x-match itself never takes part, even with-x */
    struct binding_header x_match_only[] = {H("x-match", "all-with-x")};
    ck_assert(headers(HEADERS_MATCH_ALL_WITH_X, x_match_only, 1));
    ck_assert(!headers(HEADERS_MATCH_ANY_WITH_X, x_match_only, 1));
}
END_TEST

START_TEST(headers_argument_without_value_matches_presence)
{
    struct binding_header present[] = {P("type")};
    ck_assert(headers(HEADERS_MATCH_ALL, present, 1));
    struct binding_header absent[] = {P("size")};
    ck_assert(!headers(HEADERS_MATCH_ALL, absent, 1));
    ck_assert(!headers(HEADERS_MATCH_ANY, absent, 1));
    /* a message header without a value only satisfies a value-less argument */
    struct binding_header void_header[] = {P("flag")};
    struct binding_header wants_value[] = {H("flag", "1")};
    struct binding_header wants_presence[] = {P("flag")};
    ck_assert(!binding_headers_match(HEADERS_MATCH_ALL, wants_value, 1, void_header, 1));
    ck_assert(binding_headers_match(HEADERS_MATCH_ALL, wants_presence, 1, void_header, 1));
}
END_TEST

START_TEST(headers_first_occurrence_of_a_name_counts)
{
    struct binding_header twice[] = {H("k", "1"), H("k", "2")};
    struct binding_header wants_1[] = {H("k", "1")};
    struct binding_header wants_2[] = {H("k", "2")};
    ck_assert(binding_headers_match(HEADERS_MATCH_ALL, wants_1, 1, twice, 2));
    ck_assert(!binding_headers_match(HEADERS_MATCH_ALL, wants_2, 1, twice, 2));
}
END_TEST

START_TEST(names_parse_and_print)
{
    enum exchange_type type;
    static const char *const types[] = {"direct", "fanout", "topic", "headers"};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(exchange_type_parse(types[i], &type), 0);
        ck_assert_str_eq(exchange_type_name(type), types[i]);
    }
    ck_assert_int_eq(exchange_type_parse("x-delayed-message", &type), -1);
    ck_assert_int_eq(exchange_type_parse("Direct", &type), -1);
    enum headers_match mode;
    ck_assert_int_eq(headers_match_parse("any-with-x", &mode), 0);
    ck_assert_int_eq(mode, HEADERS_MATCH_ANY_WITH_X);
    ck_assert_int_eq(headers_match_parse("all", &mode), 0);
    ck_assert_int_eq(mode, HEADERS_MATCH_ALL);
    ck_assert_int_eq(headers_match_parse("some", &mode), -1);
}
END_TEST

static Suite *binding_suite(void)
{
    Suite *suite = suite_create("binding");
    TCase *topic_case = tcase_create("topic");
    tcase_add_test(topic_case, topic_patterns_match_as_in_rabbitmq);
    tcase_add_test(topic_case, topic_matcher_agrees_with_a_brute_force_reference);
    tcase_set_timeout(topic_case, 60);
    suite_add_tcase(suite, topic_case);
    TCase *headers_case = tcase_create("headers");
    tcase_add_test(headers_case, headers_all_needs_every_argument);
    tcase_add_test(headers_case, headers_any_needs_one_argument);
    tcase_add_test(headers_case, headers_x_arguments_count_only_with_x);
    tcase_add_test(headers_case, headers_argument_without_value_matches_presence);
    tcase_add_test(headers_case, headers_first_occurrence_of_a_name_counts);
    tcase_add_test(headers_case, names_parse_and_print);
    suite_add_tcase(suite, headers_case);
    return suite;
}

CHECK_MAIN(binding_suite)
