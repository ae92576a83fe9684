/* SPDX-License-Identifier: Apache-2.0 */
/* check_tls.c -- a TLS listener's context (daemon/tls.c): loading the
 * certificate, key (also an encrypted one with its passphrase file) and CA
 * named by a listener's tls keys, the errors that name the key and the
 * file, the expiry the gauge reports, and a reload that keeps the running
 * context when the new files do not load. Handshakes, identities and the
 * accept path are covered end to end by tests/integration/test_tls.py. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config.h"
#include "tls.h"
#include "unit_main.h"

#define TLS_DATA TEST_DATA_DIR "/tls/"

static struct config_listener listener_with(const char *cert, const char *key)
{
    struct config_listener listener = {.name = "stomp", .bind = "127.0.0.1:0"};
    listener.tls.cert = (char *)cert;
    listener.tls.key = (char *)key;
    return listener;
}

static void expect_error(const struct config_listener *listener, const char *start)
{
    char err[1024] = "";
    struct tls_context *tls = tls_context_new(listener, NULL, err, sizeof(err));
    ck_assert_ptr_null(tls);
    ck_assert_msg(strncmp(err, start, strlen(start)) == 0, "error '%s' does not start with '%s'",
                  err, start);
}

START_TEST(a_listener_context_loads_and_reports_its_expiry)
{
    struct config_listener listener = listener_with(TLS_DATA "server.pem", TLS_DATA "server.key");
    ck_assert(tls_configured(&listener));
    listener.tls.ca = TLS_DATA "ca.pem";
    listener.tls.verify = "required";
    listener.tls.min_version = "1.3";
    listener.tls.ciphers = "ECDHE+AESGCM";
    listener.tls.identity = "san_dns";
    char err[1024] = "";
    struct tls_context *tls = tls_context_new(&listener, NULL, err, sizeof(err));
    ck_assert_msg(tls != NULL, "%s", err);
    ck_assert_str_eq(tls_context_name(tls), "stomp");
    /* the test certificate is valid until 2126 */
    ck_assert(tls_context_expiry_seconds(tls) > 90.0 * 365 * 86400);
    ck_assert(tls_context_expiry_seconds(tls) < 101.0 * 365 * 86400);
    SSL *ssl = tls_context_ssl_new(tls);
    ck_assert_ptr_nonnull(ssl);
    tls_context_free(tls); /* the SSL keeps its context alive */
    char identity[64];
    ck_assert_int_eq(tls_peer_identity(ssl, identity, sizeof(identity)), 0); /* no peer yet */
    SSL_free(ssl);

    struct config_listener plain = {.name = "amqp", .bind = "127.0.0.1:0"};
    ck_assert(!tls_configured(&plain));
}
END_TEST

START_TEST(an_encrypted_key_loads_with_its_passphrase_file)
{
    struct config_listener listener =
        listener_with(TLS_DATA "server.pem", TLS_DATA "server-encrypted.key");
    listener.tls.key_password_file = TLS_DATA "server-key.pass";
    char err[1024] = "";
    struct tls_context *tls = tls_context_new(&listener, NULL, err, sizeof(err));
    ck_assert_msg(tls != NULL, "%s", err);
    tls_context_free(tls);
    listener.tls.key_password_file = TLS_DATA "ca.pem"; /* a wrong passphrase */
    expect_error(&listener,
                 "listeners.stomp.tls.key: cannot load " TLS_DATA "server-encrypted.key: ");
    listener.tls.key_password_file = TLS_DATA "missing.pass";
    expect_error(&listener,
                 "listeners.stomp.tls.key_password_file: cannot read " TLS_DATA "missing.pass: ");
}
END_TEST

START_TEST(errors_name_the_key_and_the_file)
{
    struct config_listener listener = listener_with(TLS_DATA "missing.pem", TLS_DATA "server.key");
    expect_error(&listener, "listeners.stomp.tls.cert: cannot load " TLS_DATA "missing.pem: ");
    listener = listener_with(TLS_DATA "server.pem", TLS_DATA "other.key");
    expect_error(&listener, "listeners.stomp.tls.key: cannot load " TLS_DATA "other.key: ");
    char err[1024] = "";
    ck_assert_ptr_null(tls_context_new(&listener, NULL, err, sizeof(err)));
    ck_assert_msg(strstr(err, "key values mismatch"), "%s", err); /* OpenSSL's words */
    listener = listener_with(TLS_DATA "server.pem", NULL);
    expect_error(&listener, "listeners.stomp.tls.key: required with tls.cert");
    listener = listener_with(TLS_DATA "server.pem", TLS_DATA "server.key");
    listener.tls.verify = "optional";
    expect_error(&listener, "listeners.stomp.tls.ca: required with tls.verify: optional");
    listener.tls.ca = TLS_DATA "missing-ca.pem";
    expect_error(&listener, "listeners.stomp.tls.ca: cannot load " TLS_DATA "missing-ca.pem: ");
    listener = listener_with(TLS_DATA "server.pem", TLS_DATA "server.key");
    listener.tls.ciphers = "NO-SUCH-CIPHER";
    expect_error(&listener, "listeners.stomp.tls.ciphers: no usable cipher in \"NO-SUCH-CIPHER\"");
}
END_TEST

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), in)) > 0)
        ck_assert_uint_eq(fwrite(buffer, 1, n, out), n);
    fclose(in);
    fclose(out);
}

START_TEST(a_reload_rereads_the_files_and_keeps_the_old_context_on_failure)
{
    char dir[] = "/tmp/check_tls.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    copy_file(TLS_DATA "server.pem", cert);
    copy_file(TLS_DATA "server.key", key);
    struct config_listener listener = listener_with(cert, key);
    char err[1024] = "";
    struct tls_context *tls = tls_context_new(&listener, NULL, err, sizeof(err));
    ck_assert_msg(tls != NULL, "%s", err);
    double expiry = tls_context_expiry_seconds(tls);

    FILE *broken = fopen(cert, "w");
    fputs("not a certificate\n", broken);
    fclose(broken);
    ck_assert_int_eq(tls_context_reload(tls, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "listeners.stomp.tls.cert: cannot load"));
    ck_assert(tls_context_expiry_seconds(tls) > expiry - 60); /* still the running one */
    SSL *ssl = tls_context_ssl_new(tls);
    ck_assert_ptr_nonnull(ssl);
    SSL_free(ssl);

    copy_file(TLS_DATA "server.pem", cert);
    ck_assert_int_eq(tls_context_reload(tls, err, sizeof(err)), 0);
    tls_context_free(tls);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *suite = suite_create("tls");
    TCase *tcase = tcase_create("context");
    tcase_add_test(tcase, a_listener_context_loads_and_reports_its_expiry);
    tcase_add_test(tcase, an_encrypted_key_loads_with_its_passphrase_file);
    tcase_add_test(tcase, errors_name_the_key_and_the_file);
    tcase_add_test(tcase, a_reload_rereads_the_files_and_keeps_the_old_context_on_failure);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(tls_suite)
