/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_ws_handshake.c -- libFuzzer target for the WebSocket upgrade request
 * parser (adapters/transport_ws.c, transport_ws_handshake): the first bytes
 * any client sends to a `transport: websocket` listener.
 *
 * The input is the request head as the layer hands it over (anything up to
 * TRANSPORT_WS_HEAD_MAX bytes; the blank line is not required, the parser
 * must cope without it). It is answered under two policies: any origin, and
 * an allow-list of two. The answer must be one of the documented statuses;
 * the response must start with "HTTP/1.1 STATUS " and end its head with a
 * blank line; a 101 must carry a 28-character Sec-WebSocket-Accept and, when
 * a subprotocol was chosen, one of ours; an error's body must be the one-line
 * reason and its Content-Length exact. Also built by `make check` with
 * replay_main.c, which runs this over tests/fuzz/corpus/ws_handshake without
 * clang. */
#include "transport_ws.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

static const char *const subprotocols[] = {"v10.stomp", "v11.stomp", "v12.stomp"};
static const char *const origins[] = {"https://app.example.com", "http://127.0.0.1:8080"};

static void check_response(int status, const char *response, const char *why)
{
    FUZZ_CHECK(status == 101 || status == 400 || status == 403 || status == 404 || status == 405 ||
                   status == 426,
               "status %d", status);
    char start[32];
    snprintf(start, sizeof(start), "HTTP/1.1 %d ", status);
    FUZZ_CHECK(strncmp(response, start, strlen(start)) == 0, "response starts %.40s", response);
    const char *blank = strstr(response, "\r\n\r\n");
    FUZZ_CHECK(blank != NULL, "no end of the head in %s", response);
    FUZZ_CHECK(strchr(why, '\n') == NULL && why[0] != '\0', "reason %s", why);
    if (status == 101) {
        const char *accept = strstr(response, "\r\nSec-WebSocket-Accept: ");
        FUZZ_CHECK(accept != NULL, "a 101 without Sec-WebSocket-Accept");
        accept += strlen("\r\nSec-WebSocket-Accept: ");
        FUZZ_CHECK(strcspn(accept, "\r") == 28, "accept %.40s", accept);
        FUZZ_CHECK(blank[4] == '\0', "a 101 with a body");
        const char *chosen = strstr(response, "\r\nSec-WebSocket-Protocol: ");
        if (chosen) {
            chosen += strlen("\r\nSec-WebSocket-Protocol: ");
            size_t len = strcspn(chosen, "\r");
            bool ours = false;
            for (size_t i = 0; i < 3; i++)
                ours = ours || (len == strlen(subprotocols[i]) &&
                                strncmp(chosen, subprotocols[i], len) == 0);
            FUZZ_CHECK(ours, "chose %.*s", (int)len, chosen);
        }
        return;
    }
    const char *body = blank + 4;
    char length[64];
    snprintf(length, sizeof(length), "\r\nContent-Length: %zu\r\n", strlen(body));
    FUZZ_CHECK(strstr(response, length) != NULL, "Content-Length is not %zu", strlen(body));
    FUZZ_CHECK(strlen(body) == strlen(why) + 1 && strncmp(body, why, strlen(why)) == 0,
               "body %s is not the reason %s", body, why);
    for (const char *p = body; *p; p++)
        FUZZ_CHECK(*p == '\n' ? p[1] == '\0' : (*p >= 0x20 && *p < 0x7f), "body byte 0x%02x",
                   (unsigned char)*p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TRANSPORT_WS_HEAD_MAX)
        return 0;
    char *head = malloc(size ? size : 1); /* exact size: ASan sees a read past it */
    if (!head)
        return 0;
    memcpy(head, data, size);
    struct transport_ws_policy policies[2] = {
        {"/ws", NULL, 0, subprotocols, 3},
        {"/ws", origins, 2, subprotocols, 3},
    };
    for (size_t i = 0; i < 2; i++) {
        char response[1024], why[256];
        int status = transport_ws_handshake(head, size, &policies[i], response, sizeof(response),
                                            why, sizeof(why));
        check_response(status, response, why);
    }
    free(head);
    return 0;
}
