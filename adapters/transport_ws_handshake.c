/* SPDX-License-Identifier: Apache-2.0 */
/* transport_ws_handshake.c -- the WebSocket upgrade request (RFC 6455
 * section 4.2), pure: parse the request head, check it against the
 * listener's policy, write the HTTP response (transport_ws.h). Fuzzed by
 * tests/fuzz/fuzz_ws_handshake.c. */
#include "transport_ws.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 section 1.3 */

/* A header value or token: `len` bytes at `text`, not NUL-terminated. */
struct ws_span {
    const char *text;
    size_t len;
};

static bool ws_span_equals(struct ws_span span, const char *word)
{
    return span.len == strlen(word) && strncasecmp(span.text, word, span.len) == 0;
}

/* Is `token` one of the comma-separated tokens of `list` (case-insensitive)? */
static bool ws_list_has(struct ws_span list, const char *token)
{
    const char *p = list.text, *end = list.text + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *start = p;
        while (p < end && *p != ',')
            p++;
        const char *stop = p;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if (ws_span_equals((struct ws_span){start, (size_t)(stop - start)}, token))
            return true;
    }
    return false;
}

/* Printable ASCII of `span` (at most 64 bytes, others as '?') into out, for messages. */
static void ws_printable(struct ws_span span, char *out, size_t out_size)
{
    size_t n = 0;
    for (size_t i = 0; i < span.len && n + 4 < out_size && i < 64; i++) {
        unsigned char c = (unsigned char)span.text[i];
        out[n++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (span.len > 64 && n + 4 < out_size) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

int transport_ws_refuse(char *response, size_t response_size, int status, const char *reason,
                        const char *extra_headers, const char *why)
{
    snprintf(response, response_size,
             "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s\n",
             status, reason, strlen(why) + 1, extra_headers, why);
    return status;
}

/* The 22 base64 characters and "==" of a 16-byte nonce? */
static bool ws_key_valid(struct ws_span key)
{
    if (key.len != 24 || key.text[22] != '=' || key.text[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!isalnum((unsigned char)key.text[i]) && key.text[i] != '+' && key.text[i] != '/')
            return false;
    return true;
}

int transport_ws_handshake(const char *head, size_t len, const struct transport_ws_policy *policy,
                           char *response, size_t response_size, char *why, size_t why_size)
{
    const char *end = head + len;
    char shown[80];
    /* The request line: METHOD SP TARGET SP HTTP/1.x */
    const char *line_end = memchr(head, '\n', len);
    const char *sp1 = line_end ? memchr(head, ' ', (size_t)(line_end - head)) : NULL;
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
    if (!sp2) {
        snprintf(why, why_size, "not an HTTP request line");
        return transport_ws_refuse(response, response_size, 400, "Bad Request", "", why);
    }
    struct ws_span method = {head, (size_t)(sp1 - head)};
    struct ws_span target = {sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    struct ws_span version = {sp2 + 1, (size_t)(line_end - sp2 - 1)};
    if (version.len > 0 && version.text[version.len - 1] == '\r')
        version.len--;
    if (!ws_span_equals(version, "HTTP/1.1")) {
        ws_printable(version, shown, sizeof(shown));
        snprintf(why, why_size, "\"%s\" is not HTTP/1.1", shown);
        return transport_ws_refuse(response, response_size, 400, "Bad Request", "", why);
    }
    if (!(method.len == 3 && memcmp(method.text, "GET", 3) == 0)) {
        ws_printable(method, shown, sizeof(shown));
        snprintf(why, why_size, "method %s: a WebSocket upgrade is a GET", shown);
        return transport_ws_refuse(response, response_size, 405, "Method Not Allowed",
                                   "Allow: GET\r\n", why);
    }
    struct ws_span path = target;
    const char *query = memchr(target.text, '?', target.len);
    if (query)
        path.len = (size_t)(query - target.text);
    if (path.len != strlen(policy->path) || memcmp(path.text, policy->path, path.len) != 0) {
        ws_printable(path, shown, sizeof(shown));
        snprintf(why, why_size, "no WebSocket endpoint at \"%s\" (it is %s)", shown, policy->path);
        return transport_ws_refuse(response, response_size, 404, "Not Found", "", why);
    }

    /* The headers, one per line, up to the blank line. */
    struct ws_span upgrade = {"", 0}, connection = {"", 0}, key = {"", 0}, ws_version = {"", 0},
                   origin = {"", 0};
    struct ws_span offered[16];
    size_t offered_count = 0;
    bool has_origin = false;
    for (const char *line = line_end + 1; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        const char *stop = eol;
        if (stop > line && stop[-1] == '\r')
            stop--;
        if (stop == line)
            break; /* the blank line */
        const char *colon = memchr(line, ':', (size_t)(stop - line));
        if (!colon || colon == line) {
            snprintf(why, why_size, "a header line without a name and ':'");
            return transport_ws_refuse(response, response_size, 400, "Bad Request", "", why);
        }
        struct ws_span name = {line, (size_t)(colon - line)};
        const char *v = colon + 1;
        while (v < stop && (*v == ' ' || *v == '\t'))
            v++;
        const char *v_end = stop;
        while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
            v_end--;
        struct ws_span value = {v, (size_t)(v_end - v)};
        if (ws_span_equals(name, "Upgrade"))
            upgrade = value;
        else if (ws_span_equals(name, "Connection"))
            connection = value;
        else if (ws_span_equals(name, "Sec-WebSocket-Key"))
            key = value;
        else if (ws_span_equals(name, "Sec-WebSocket-Version"))
            ws_version = value;
        else if (ws_span_equals(name, "Origin")) {
            origin = value;
            has_origin = true;
        } else if (ws_span_equals(name, "Sec-WebSocket-Protocol")) {
            if (offered_count == sizeof(offered) / sizeof(offered[0])) {
                snprintf(why, why_size, "too many Sec-WebSocket-Protocol headers");
                return transport_ws_refuse(response, response_size, 400, "Bad Request", "", why);
            }
            offered[offered_count++] = value;
        }
        line = eol < end ? eol + 1 : end;
    }
    if (!ws_list_has(upgrade, "websocket") || !ws_list_has(connection, "upgrade")) {
        snprintf(why, why_size,
                 "not a WebSocket upgrade (Upgrade: websocket and Connection: "
                 "Upgrade are required)");
        return transport_ws_refuse(response, response_size, 426, "Upgrade Required",
                                   "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n", why);
    }
    if (!ws_span_equals(ws_version, "13")) {
        ws_printable(ws_version, shown, sizeof(shown));
        snprintf(why, why_size, "Sec-WebSocket-Version \"%s\" is not 13", shown);
        return transport_ws_refuse(response, response_size, 426, "Upgrade Required",
                                   "Sec-WebSocket-Version: 13\r\n", why);
    }
    if (!ws_key_valid(key)) {
        snprintf(why, why_size, "Sec-WebSocket-Key is not a base64 16-byte nonce");
        return transport_ws_refuse(response, response_size, 400, "Bad Request", "", why);
    }
    if (has_origin && policy->origin_count > 0) {
        bool allowed = false;
        for (size_t i = 0; i < policy->origin_count && !allowed; i++)
            allowed = ws_span_equals(origin, policy->origins[i]);
        if (!allowed) {
            ws_printable(origin, shown, sizeof(shown));
            snprintf(why, why_size, "origin \"%s\" is not in websocket.origins", shown);
            return transport_ws_refuse(response, response_size, 403, "Forbidden", "", why);
        }
    }
    /* The client's first offered subprotocol that is ours. */
    const char *chosen = NULL;
    for (size_t h = 0; h < offered_count && !chosen; h++) {
        const char *p = offered[h].text, *stop = offered[h].text + offered[h].len;
        while (p < stop && !chosen) {
            while (p < stop && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *start = p;
            while (p < stop && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            struct ws_span token = {start, (size_t)(p - start)};
            for (size_t s = 0; s < policy->subprotocol_count && !chosen; s++)
                if (token.len > 0 && ws_span_equals(token, policy->subprotocols[s]))
                    chosen = policy->subprotocols[s];
        }
    }
    if (offered_count > 0 && !chosen) {
        ws_printable(offered[0], shown, sizeof(shown));
        char supported[128] = "";
        for (size_t s = 0; s < policy->subprotocol_count; s++) {
            size_t used = strlen(supported);
            snprintf(supported + used, sizeof(supported) - used, "%s%s", s ? ", " : "",
                     policy->subprotocols[s]);
        }
        snprintf(why, why_size, "no supported subprotocol offered (got \"%s\"; supported: %s)",
                 shown, supported);
        return transport_ws_refuse(response, response_size, 400, "Bad Request", "", why);
    }

    char input[24 + sizeof(WS_GUID)];
    memcpy(input, key.text, 24);
    memcpy(input + 24, WS_GUID, sizeof(WS_GUID) - 1);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)input, 24 + sizeof(WS_GUID) - 1, digest);
    unsigned char accept[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
    EVP_EncodeBlock(accept, digest, SHA_DIGEST_LENGTH);
    snprintf(response, response_size,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
             (const char *)accept, chosen ? "Sec-WebSocket-Protocol: " : "", chosen ? chosen : "",
             chosen ? "\r\n" : "");
    snprintf(why, why_size, "subprotocol %s", chosen ? chosen : "none");
    return 101;
}
