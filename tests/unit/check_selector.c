/* SPDX-License-Identifier: Apache-2.0 */
/* check_selector.c -- JMS selectors (daemon/selector.c): parsing with
 * errors naming the position, precedence, comparison of STOMP-style string
 * values as numbers and booleans, arithmetic, BETWEEN, IN, LIKE with ESCAPE,
 * IS [NOT] NULL, and SQL's three-valued logic with NULLs. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selector.h"
#include "unit_main.h"

/* A message: name=value pairs, all values strings as STOMP headers are,
 * except names starting with "n_" (numbers) and "b_" (booleans), as typed
 * AMQP properties would be. */
struct message {
    const char *const *pairs; /* name, value, name, value, ..., NULL */
};

static bool lookup(void *opaque, const char *name, struct selector_value *out)
{
    const struct message *m = opaque;
    for (const char *const *p = m->pairs; *p; p += 2) {
        if (strcmp(p[0], name) != 0)
            continue;
        if (strncmp(name, "n_", 2) == 0)
            *out = (struct selector_value){.type = SELECTOR_NUMBER, .number = atof(p[1])};
        else if (strncmp(name, "b_", 2) == 0)
            *out = (struct selector_value){.type = SELECTOR_BOOLEAN,
                                           .boolean = strcmp(p[1], "true") == 0};
        else
            *out = (struct selector_value){
                .type = SELECTOR_STRING, .string = p[1], .string_len = strlen(p[1])};
        return true;
    }
    return false;
}

static const char *const red_five[] = {"color",   "red",  "weight", "5",    "name", "a_b%c",
                                       "n_price", "9.5",  "b_vip",  "true", "flag", "TRUE",
                                       "region",  "EMEA", "empty",  "",     NULL};

static bool selects(const char *text, const char *const *pairs)
{
    char err[256];
    struct selector *s = selector_parse(text, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s: %s", text, err);
    struct message m = {pairs};
    bool result = selector_matches(s, lookup, &m);
    selector_free(s);
    return result;
}

static void refused(const char *text, const char *expected_error)
{
    char err[256] = "";
    struct selector *s = selector_parse(text, err, sizeof(err));
    ck_assert_msg(s == NULL, "%s should be refused", text);
    ck_assert_str_eq(err, expected_error);
}

START_TEST(comparisons_of_strings_numbers_and_booleans)
{
    ck_assert(selects("color = 'red'", red_five));
    ck_assert(!selects("color = 'blue'", red_five));
    ck_assert(selects("color <> 'blue'", red_five));
    ck_assert(selects("weight = 5", red_five)); /* "5" is a number to a number */
    ck_assert(selects("weight > 4.5 AND weight <= 5", red_five));
    ck_assert(selects("weight = 5.0", red_five));
    ck_assert(!selects("weight = '5.0'", red_five)); /* string to string: text */
    ck_assert(selects("n_price > 9 AND n_price < 10", red_five));
    ck_assert(selects("b_vip = TRUE", red_five));
    ck_assert(selects("b_vip", red_five));
    ck_assert(selects("flag = true", red_five));  /* "TRUE" is a boolean to a boolean */
    ck_assert(!selects("color > 'a'", red_five)); /* strings do not order: UNKNOWN */
    ck_assert(!selects("NOT (color > 'a')", red_five));
    ck_assert(selects("JMSType IS NULL", red_five));
    ck_assert(selects("color IS NOT NULL", red_five));
    ck_assert(selects("empty = ''", red_five));
    ck_assert(selects("'it''s' = 'it''s'", red_five));
}
END_TEST

START_TEST(arithmetic_and_precedence)
{
    ck_assert(selects("weight * 2 + 1 = 11", red_five));
    ck_assert(selects("weight * (2 + 1) = 15", red_five));
    ck_assert(selects("-weight = -5", red_five));
    ck_assert(selects("weight - 2 - 1 = 2", red_five)); /* left to right */
    ck_assert(selects("weight / 2 = 2.5", red_five));
    ck_assert(!selects("weight / 0 = 1", red_five)); /* division by zero: UNKNOWN */
    ck_assert(!selects("weight / 0 <> 1", red_five));
    ck_assert(selects("1e1 = 10 AND 0x10 = 16 AND .5 = 0.5 AND 10L = 10", red_five));
    /* AND binds tighter than OR; NOT tighter than AND */
    ck_assert(selects("color = 'blue' AND weight = 1 OR weight = 5", red_five));
    ck_assert(!selects("color = 'blue' AND (weight = 1 OR weight = 5)", red_five));
    ck_assert(selects("NOT color = 'blue' AND weight = 5", red_five));
    ck_assert(!selects("color + 1 = 2", red_five)); /* arithmetic on text: UNKNOWN */
}
END_TEST

START_TEST(between_in_like)
{
    ck_assert(selects("weight BETWEEN 1 AND 5", red_five));
    ck_assert(!selects("weight BETWEEN 6 AND 9", red_five));
    ck_assert(selects("weight NOT BETWEEN 6 AND 9", red_five));
    ck_assert(selects("region IN ('EMEA', 'APAC')", red_five));
    ck_assert(!selects("region NOT IN ('EMEA', 'APAC')", red_five));
    ck_assert(selects("weight IN (4, 5)", red_five));
    ck_assert(selects("color LIKE 'r%'", red_five));
    ck_assert(selects("color LIKE '_e_'", red_five));
    ck_assert(!selects("color LIKE 'r_'", red_five));
    ck_assert(selects("color NOT LIKE 'b%'", red_five));
    ck_assert(selects("name LIKE 'a\\_b\\%c' ESCAPE '\\'", red_five));
    ck_assert(!selects("name LIKE 'a\\_bX%' ESCAPE '\\'", red_five));
    ck_assert(selects("name LIKE 'a!_%' ESCAPE '!'", red_five));
    ck_assert(selects("name LIKE '%%c'", red_five));
    ck_assert(selects("color like 'RED' or color LIKE 'red'", red_five)); /* keywords any case */
}
END_TEST

START_TEST(three_valued_logic_with_nulls)
{
    /* missing is NULL: a comparison with it is UNKNOWN, which does not select */
    ck_assert(!selects("missing = 1", red_five));
    ck_assert(!selects("missing <> 1", red_five));
    ck_assert(!selects("NOT (missing = 1)", red_five));
    ck_assert(!selects("missing = 1 AND color = 'red'", red_five));       /* UNKNOWN AND TRUE */
    ck_assert(selects("missing = 1 OR color = 'red'", red_five));         /* UNKNOWN OR TRUE */
    ck_assert(!selects("missing = 1 OR color = 'blue'", red_five));       /* UNKNOWN OR FALSE */
    ck_assert(selects("NOT (missing = 1 AND color = 'blue')", red_five)); /* NOT FALSE */
    ck_assert(!selects("missing IN ('a')", red_five));
    ck_assert(!selects("missing NOT IN ('a')", red_five));
    ck_assert(!selects("missing LIKE '%'", red_five));
    ck_assert(!selects("missing BETWEEN 1 AND 2", red_five));
    ck_assert(!selects("missing NOT BETWEEN 1 AND 2", red_five));
    ck_assert(!selects("color", red_five)); /* a non-boolean value selects nothing */
}
END_TEST

START_TEST(bad_selectors_name_the_position)
{
    refused("", "position 1: the selector is empty");
    refused("color =", "position 8: expected a value, a name or '(', got the end");
    refused("color = 'red", "position 9: a string that is never closed with '");
    refused("(color = 'red'",
            "position 15: expected ')' to close the '(' at position 1, got the end");
    refused("color == 'red'", "position 8: expected a value, a name or '(', got '='");
    refused("color = 'red' blue", "position 15: unexpected 'blue' after a complete selector");
    refused("weight BETWEEN 1 OR 5", "position 18: expected AND in BETWEEN, got OR");
    refused("region IN 'EMEA'", "position 11: expected '(' after IN, got a string");
    refused("region IN ()", "position 12: expected a value in the IN list, got ')'");
    refused("color LIKE 5", "position 12: expected a string pattern after LIKE, got a number");
    refused("color LIKE 'a' ESCAPE 'ab'",
            "position 23: expected a one-character string after ESCAPE");
    refused("color IS 5", "position 10: expected NULL after IS, got a number");
    refused("color NOT = 1", "position 11: expected BETWEEN, IN or LIKE after NOT, got '='");
    refused("color # 1", "position 7: unexpected character '#'");
    refused("color = \x01", "position 9: unexpected byte 0x01");
    refused("12abc = 1", "position 1: a number runs into a name");
    char deep[400] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "(");
    refused(deep, "position 22: nested deeper than 64");
    char *huge = malloc(SELECTOR_MAX_LENGTH + 2);
    memset(huge, 'a', SELECTOR_MAX_LENGTH + 1);
    huge[SELECTOR_MAX_LENGTH + 1] = '\0';
    refused(huge, "longer than 4096 bytes");
    free(huge);
}
END_TEST

static Suite *selector_suite(void)
{
    Suite *s = suite_create("selector");
    TCase *tc = tcase_create("selector");
    tcase_add_test(tc, comparisons_of_strings_numbers_and_booleans);
    tcase_add_test(tc, arithmetic_and_precedence);
    tcase_add_test(tc, between_in_like);
    tcase_add_test(tc, three_valued_logic_with_nulls);
    tcase_add_test(tc, bad_selectors_name_the_position);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(selector_suite)
