/* SPDX-License-Identifier: Apache-2.0 */
/* check_protocol_detect.c -- the first-bytes detectors of the built-in
 * adapters and protocol_detect_pick, which chooses among them (pure). */
#include <check.h>
#include <string.h>

#include "adapter.h"
#include "amqp091_adapter.h"
#include "amqp_detect.h"
#include "protocol_detect.h"
#include "stomp_detect.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static enum adapter_detect detect_text(enum adapter_detect (*detect)(const unsigned char *, size_t),
                                       const char *bytes, size_t len)
{
    return detect((const unsigned char *)bytes, len);
}

START_TEST(stomp_detector)
{
    static const struct {
        const char *bytes;
        enum adapter_detect answer;
    } cases[] = {
        {"CONNECT\n", ADAPTER_DETECT_YES},
        {"CONNECT\r\naccept-version:1.2\n", ADAPTER_DETECT_YES},
        {"STOMP\n", ADAPTER_DETECT_YES},
        {"\n\r\n\nCONNECT\n", ADAPTER_DETECT_YES}, /* heart-beats before the frame */
        {"C", ADAPTER_DETECT_MORE},
        {"CONNEC", ADAPTER_DETECT_MORE},
        {"CONNECT", ADAPTER_DETECT_MORE},
        {"CONNECT\r", ADAPTER_DETECT_MORE},
        {"\n\n", ADAPTER_DETECT_MORE},
        {"STO", ADAPTER_DETECT_MORE},
        {"CONNECTED\n", ADAPTER_DETECT_NO},
        {"CONNECT \n", ADAPTER_DETECT_NO},
        {"CONNECT\rx", ADAPTER_DETECT_NO},
        {"SEND\n", ADAPTER_DETECT_NO},
        {"connect\n", ADAPTER_DETECT_NO},
        {"AMQP\0\1\0\0", ADAPTER_DETECT_NO},
        {"GET / HTTP/1.1\r\n", ADAPTER_DETECT_NO},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t len = cases[i].bytes[0] == 'A' ? 8 : strlen(cases[i].bytes);
        ck_assert_msg(detect_text(stomp_detect, cases[i].bytes, len) == cases[i].answer, "case %zu",
                      i);
    }
}
END_TEST

START_TEST(amqp_detector)
{
    static const struct {
        const char bytes[9];
        size_t len;
        enum adapter_detect answer;
    } cases[] = {
        {"AMQP\0\1\0\0", 8, ADAPTER_DETECT_YES},
        {"AMQP\3\1\0\0", 8, ADAPTER_DETECT_YES},    /* SASL layer first */
        {"AMQP\0\1\0\0", 9, ADAPTER_DETECT_YES},    /* and the open frame behind it */
        {"AMQP\0\0\x09\x01", 8, ADAPTER_DETECT_NO}, /* AMQP 0-9-1: amqp091_detect's */
        {"AMQP\0\0\x09", 7, ADAPTER_DETECT_NO},
        {"AMQP\1\1\0\x0a", 8, ADAPTER_DETECT_NO}, /* AMQP 0-10 */
        {"AMQP\2\1\0\0", 8, ADAPTER_DETECT_YES},  /* TLS: the adapter refuses it */
        {"AMQP\0\1\0\1", 8, ADAPTER_DETECT_NO},
        {"AMQP\0\2\0\0", 8, ADAPTER_DETECT_NO},
        {"A", 1, ADAPTER_DETECT_MORE},
        {"AMQP", 4, ADAPTER_DETECT_MORE},
        {"AMQP\3\1\0", 7, ADAPTER_DETECT_MORE},
        {"CONNECT\n", 8, ADAPTER_DETECT_NO},
        {"amqp\0\1\0\0", 8, ADAPTER_DETECT_NO},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        ck_assert_msg(detect_text(amqp_detect, cases[i].bytes, cases[i].len) == cases[i].answer,
                      "case %zu", i);
}
END_TEST

START_TEST(amqp091_detector)
{
    static const struct {
        const char bytes[9];
        size_t len;
        enum adapter_detect answer;
    } cases[] = {
        {"AMQP\0\0\x09\x01", 8, ADAPTER_DETECT_YES},
        {"AMQP\0\0\x09\x01", 9, ADAPTER_DETECT_YES}, /* and the first frame behind it */
        {"A", 1, ADAPTER_DETECT_MORE},
        {"AMQP\0\0\x09", 7, ADAPTER_DETECT_MORE},
        {"AMQP\0\1\0\0", 8, ADAPTER_DETECT_NO}, /* AMQP 1.0: amqp_detect's */
        {"AMQP\3\1\0\0", 8, ADAPTER_DETECT_NO},
        {"AMQP\0\0\x09\x00", 8, ADAPTER_DETECT_NO}, /* 0-9-0 */
        {"AMQP\1\1\0\x09", 8, ADAPTER_DETECT_NO},   /* 0-9 (0-8 style header) */
        {"CONNECT\n", 8, ADAPTER_DETECT_NO},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        ck_assert_msg(detect_text(amqp091_detect, cases[i].bytes, cases[i].len) == cases[i].answer,
                      "case %zu", i);
}
END_TEST

static enum adapter_detect detect_always_more(const unsigned char *bytes, size_t len)
{
    (void)bytes;
    (void)len;
    return ADAPTER_DETECT_MORE;
}

START_TEST(pick_among_candidates)
{
    static const struct adapter_ops stomp = {.name = "stomp", .detect = stomp_detect};
    static const struct adapter_ops amqp = {.name = "amqp", .detect = amqp_detect};
    static const struct adapter_ops greedy = {.name = "greedy", .detect = detect_always_more};
    const struct adapter_ops *const both[] = {&stomp, &amqp};
    const unsigned char amqp10[] = "AMQP\3\1\0\0";
    const unsigned char amqp091[] = "AMQP\0\0\x09\x01";
    const unsigned char *connect = (const unsigned char *)"CONNECT\n";
    ck_assert_int_eq(protocol_detect_pick(both, 2, amqp10, 8, 256), 1);
    ck_assert_int_eq(protocol_detect_pick(both, 2, connect, 8, 256), 0);
    ck_assert_int_eq(protocol_detect_pick(both, 2, amqp10, 3, 256), PROTOCOL_DETECT_MORE);
    ck_assert_int_eq(protocol_detect_pick(both, 2, amqp091, 8, 256), PROTOCOL_DETECT_NONE);
    /* one AMQP port for both versions (architecture §12) */
    static const struct adapter_ops v091 = {.name = "amqp091", .detect = amqp091_detect};
    const struct adapter_ops *const amqps[] = {&amqp, &v091};
    ck_assert_int_eq(protocol_detect_pick(amqps, 2, amqp091, 8, 256), 1);
    ck_assert_int_eq(protocol_detect_pick(amqps, 2, amqp10, 8, 256), 0);
    ck_assert_int_eq(protocol_detect_pick(amqps, 2, amqp091, 5, 256), PROTOCOL_DETECT_MORE);
    ck_assert_int_eq(protocol_detect_pick(both, 2, (const unsigned char *)"xyz", 3, 256),
                     PROTOCOL_DETECT_NONE);
    /* a candidate that never decides cannot hold a connection past max_len */
    const struct adapter_ops *const with_greedy[] = {&stomp, &greedy};
    ck_assert_int_eq(protocol_detect_pick(with_greedy, 2, amqp10, 8, 256), PROTOCOL_DETECT_MORE);
    ck_assert_int_eq(protocol_detect_pick(with_greedy, 2, amqp10, 8, 8), PROTOCOL_DETECT_NONE);
    ck_assert_int_eq(protocol_detect_pick(with_greedy, 2, connect, 8, 8), 0);
    /* blank lines alone, up to the bound */
    ck_assert_int_eq(protocol_detect_pick(both, 2, (const unsigned char *)"\n\n\n\n", 4, 8),
                     PROTOCOL_DETECT_MORE);
    ck_assert_int_eq(protocol_detect_pick(both, 2, (const unsigned char *)"\n\n\n\n\n\n\n\n", 8, 8),
                     PROTOCOL_DETECT_NONE);
}
END_TEST

START_TEST(built_in_registry)
{
    const struct adapter_registry *registry = adapter_registry_builtin();
    ck_assert_uint_eq(registry->count, 3);
    ck_assert_str_eq(adapter_registry_find(registry, "stomp")->name, "stomp");
    ck_assert_ptr_nonnull(adapter_registry_find(registry, "amqp")->detect);
    ck_assert_ptr_nonnull(adapter_registry_find(registry, "amqp")->addresses);
    ck_assert_ptr_nonnull(adapter_registry_find(registry, "amqp091")->detect);
    ck_assert_ptr_null(adapter_registry_find(registry, "http"));
    char names[64];
    adapter_registry_names(registry, names, sizeof(names));
    ck_assert_str_eq(names, "stomp, amqp, amqp091");
    adapter_registry_names(registry, names, 6);
    ck_assert_str_eq(names, "stomp");
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("protocol_detect");
    TCase *detect = tcase_create("detect");
    tcase_add_test(detect, stomp_detector);
    tcase_add_test(detect, amqp_detector);
    tcase_add_test(detect, amqp091_detector);
    tcase_add_test(detect, pick_among_candidates);
    tcase_add_test(detect, built_in_registry);
    suite_add_tcase(suite, detect);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? 0 : 1;
}
