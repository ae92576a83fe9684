/* SPDX-License-Identifier: Apache-2.0 */
/* check_password.c -- password hashes (daemon/password.c): kinds told
 * apart by shape, RabbitMQ's salted SHA-256/512 hashes checked against
 * RabbitMQ's documented example (salt 908DC60A, password "test12"),
 * crypt(3) checks, and new yescrypt hashes. */
#include <check.h>
#include <string.h>

#include "password.h"
#include "unit_main.h"

/* From RabbitMQ's "Credentials and Passwords" guide (computing a hash). */
#define RABBIT_SHA256_TEST12 "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
/* The same salt and password through SHA-512 (Python's hashlib). */
#define RABBIT_SHA512_TEST12                                                                       \
    "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc="

START_TEST(kinds_are_told_by_shape)
{
    ck_assert_int_eq(password_hash_kind("$6$salt$hash"), PASSWORD_HASH_CRYPT);
    ck_assert_int_eq(password_hash_kind("$y$j9T$salt$hash"), PASSWORD_HASH_CRYPT);
    ck_assert_int_eq(password_hash_kind("$6$rounds=5000$salt$hash"), PASSWORD_HASH_CRYPT);
    ck_assert_int_eq(password_hash_kind(RABBIT_SHA256_TEST12), PASSWORD_HASH_RABBIT_SHA256);
    ck_assert_int_eq(password_hash_kind(RABBIT_SHA512_TEST12), PASSWORD_HASH_RABBIT_SHA512);
    /* plaintext, half a crypt string, bad base64, wrong decoded lengths */
    const char *unknown[] = {
        "hunter2",
        "$6$onlysalt",
        "$6$$hash",
        "$6$salt$hash$",
        "",
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2PO",  /* 47 characters */
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2P=R", /* '=' inside */
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2PO!", /* not base64 */
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV",     /* 33 bytes */
        "c2VjcmV0",                                         /* "secret" */
        NULL,
    };
    for (size_t i = 0; unknown[i]; i++)
        ck_assert_msg(password_hash_kind(unknown[i]) == PASSWORD_HASH_UNKNOWN,
                      "'%s' taken for a hash", unknown[i]);
    ck_assert_int_eq(password_hash_kind(NULL), PASSWORD_HASH_UNKNOWN);
    ck_assert_str_eq(password_hash_kind_name(PASSWORD_HASH_RABBIT_SHA512), "rabbit_sha512");
}
END_TEST

START_TEST(rabbitmq_hashes_verify)
{
    ck_assert(password_verify("test12", RABBIT_SHA256_TEST12));
    ck_assert(password_verify("test12", RABBIT_SHA512_TEST12));
    ck_assert(!password_verify("test13", RABBIT_SHA256_TEST12));
    ck_assert(!password_verify("test1", RABBIT_SHA512_TEST12));
    ck_assert(!password_verify("", RABBIT_SHA256_TEST12));
    /* the salt matters: same digest under another salt does not verify */
    ck_assert(!password_verify("test12", "AI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"));
}
END_TEST

START_TEST(rabbitmq_hashes_are_made_as_rabbitmq_does)
{
    const unsigned char salt[PASSWORD_RABBIT_SALT_LEN] = {0x90, 0x8d, 0xc6, 0x0a};
    char out[96];
    ck_assert_int_eq(password_rabbit_hash("test12", salt, false, out, sizeof(out)), 0);
    ck_assert_str_eq(out, RABBIT_SHA256_TEST12);
    ck_assert_int_eq(password_rabbit_hash("test12", salt, true, out, sizeof(out)), 0);
    ck_assert_str_eq(out, RABBIT_SHA512_TEST12);
    ck_assert_int_eq(password_rabbit_hash("test12", salt, true, out, 64), -1);
}
END_TEST

START_TEST(crypt_hashes_verify)
{
    /* openssl passwd -6 -salt kbridge secret */
    const char *sha512 = "$6$kbridge$xxCjx2JhfuecencHyadJ2R2VS6hvnPYJHqtcLoS6h5/WXDm.pZuMnuh15QdM"
                         "EowawuctiQffep.BW0gQvhys4.";
    ck_assert(password_verify("secret", sha512));
    ck_assert(!password_verify("Secret", sha512));
    ck_assert(!password_verify("secret", "$6$kbridge$"));
    ck_assert(!password_verify("secret", "hunter2"));
}
END_TEST

START_TEST(new_hashes_are_yescrypt_and_verify)
{
    char hash[256], other[256], err[128];
    ck_assert_int_eq(password_hash_new("p@ss word", hash, sizeof(hash), err, sizeof(err)), 0);
    ck_assert_int_eq(strncmp(hash, "$y$", 3), 0);
    ck_assert_int_eq(password_hash_kind(hash), PASSWORD_HASH_CRYPT);
    ck_assert(password_verify("p@ss word", hash));
    ck_assert(!password_verify("p@ss word ", hash));
    ck_assert_int_eq(password_hash_new("p@ss word", other, sizeof(other), err, sizeof(err)), 0);
    ck_assert_str_ne(hash, other); /* a fresh salt each time */
    ck_assert_int_eq(password_hash_new("x", hash, 8, err, sizeof(err)), -1);
}
END_TEST

static Suite *password_suite(void)
{
    Suite *suite = suite_create("password");
    TCase *tcase = tcase_create("hashes");
    tcase_add_test(tcase, kinds_are_told_by_shape);
    tcase_add_test(tcase, rabbitmq_hashes_verify);
    tcase_add_test(tcase, rabbitmq_hashes_are_made_as_rabbitmq_does);
    tcase_add_test(tcase, crypt_hashes_verify);
    tcase_add_test(tcase, new_hashes_are_yescrypt_and_verify);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(password_suite)
