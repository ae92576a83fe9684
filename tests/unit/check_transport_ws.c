/* SPDX-License-Identifier: Apache-2.0 */
/* check_transport_ws.c -- the WebSocket upgrade request
 * (transport_ws_handshake, adapters/transport_ws_handshake.c): RFC 6455's
 * example accept value, subprotocol choice, the Origin allow-list, and each
 * refusal's status and one-line body. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "transport_ws.h"
#include "unit_main.h"

static const char *const subprotocols[] = {"v10.stomp", "v11.stomp", "v12.stomp"};
static const char *const origins[] = {"https://app.example.com"};

static int answer(const char *head, bool with_origins, char *response, char *why)
{
    struct transport_ws_policy policy = {"/ws", with_origins ? origins : NULL, with_origins ? 1 : 0,
                                         subprotocols, 3};
    return transport_ws_handshake(head, strlen(head), &policy, response, 1024, why, 256);
}

#define UPGRADE                                                                                    \
    "GET /ws HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"                       \
    "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"           \
    "Sec-WebSocket-Version: 13\r\n"

START_TEST(upgrade_answers_with_rfc_accept_and_the_first_offered_subprotocol)
{
    char response[1024], why[256];
    int status = answer(UPGRADE "Sec-WebSocket-Protocol: mqtt, v11.stomp, v12.stomp\r\n\r\n", false,
                        response, why);
    ck_assert_int_eq(status, 101);
    ck_assert_str_eq(response, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Protocol: v11.stomp\r\n\r\n");
    ck_assert_str_eq(why, "subprotocol v11.stomp");
    /* none offered: accepted without the header */
    ck_assert_int_eq(answer(UPGRADE "\r\n", false, response, why), 101);
    ck_assert_ptr_null(strstr(response, "Sec-WebSocket-Protocol"));
    /* a query string is not part of the path; header names ignore case */
    ck_assert_int_eq(answer("GET /ws?a=b HTTP/1.1\nupgrade: WebSocket\nconnection: upgrade\n"
                            "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\n"
                            "sec-websocket-version: 13\norigin: HTTPS://APP.EXAMPLE.COM\n\n",
                            true, response, why),
                     101);
}
END_TEST

START_TEST(refusals_have_their_status_and_reason)
{
    static const struct {
        const char *head;
        bool origins;
        int status;
        const char *why;
    } cases[] = {
        {UPGRADE "Sec-WebSocket-Protocol: mqtt\r\n\r\n", false, 400,
         "no supported subprotocol offered (got \"mqtt\"; supported: v10.stomp, v11.stomp, "
         "v12.stomp)"},
        {UPGRADE "Origin: https://evil.example.com\r\n\r\n", true, 403,
         "origin \"https://evil.example.com\" is not in websocket.origins"},
        {"GET /other HTTP/1.1\r\n\r\n", false, 404,
         "no WebSocket endpoint at \"/other\" (it is /ws)"},
        {"POST /ws HTTP/1.1\r\n\r\n", false, 405, "method POST: a WebSocket upgrade is a GET"},
        {"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", false, 426,
         "not a WebSocket upgrade (Upgrade: websocket and Connection: Upgrade are required)"},
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 8\r\n\r\n",
         false, 426, "Sec-WebSocket-Version \"8\" is not 13"},
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
         false, 400, "Sec-WebSocket-Key is not a base64 16-byte nonce"},
        {"GET /ws HTTP/1.0\r\n\r\n", false, 400, "\"HTTP/1.0\" is not HTTP/1.1"},
        {"garbage", false, 400, "not an HTTP request line"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char response[1024], why[256], expected[512];
        int status = answer(cases[i].head, cases[i].origins, response, why);
        ck_assert_msg(status == cases[i].status, "case %zu: %d", i, status);
        ck_assert_str_eq(why, cases[i].why);
        snprintf(expected, sizeof(expected), "\r\nContent-Length: %zu\r\nConnection: close\r\n",
                 strlen(cases[i].why) + 1);
        ck_assert_msg(strstr(response, expected) != NULL, "case %zu: %s", i, response);
        const char *body = strstr(response, "\r\n\r\n") + 4;
        ck_assert_int_eq(strncmp(body, cases[i].why, strlen(cases[i].why)), 0);
        ck_assert_str_eq(body + strlen(cases[i].why), "\n");
    }
}
END_TEST

static Suite *transport_ws_suite(void)
{
    Suite *suite = suite_create("transport_ws");
    TCase *tc = tcase_create("handshake");
    tcase_add_test(tc, upgrade_answers_with_rfc_accept_and_the_first_offered_subprotocol);
    tcase_add_test(tc, refusals_have_their_status_and_reason);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(transport_ws_suite)
