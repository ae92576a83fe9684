/* SPDX-License-Identifier: Apache-2.0 */
/* kbridgectl.c -- the admin API's command-line client (issue 18 item 2,
 * docs/operations.md "kbridgectl"): status, lists as tables or JSON, purge,
 * dead letters (dlq show|peek|redrive|discard), close, definitions
 * export/import, hash-password.
 *
 * HTTP: one blocking request per run over an OpenSSL BIO (BIO_new_connect,
 * with an SSL BIO on top for https), HTTP/1.1 with `Connection: close`,
 * read to EOF. A one-shot CLI needs no event loop, so libevent's evhttp
 * client (callbacks, a base to run) would only add code; OpenSSL's BIO
 * gives plain and TLS connections through one path, with certificate and
 * host name verification.
 *
 * Exit codes (scripts rely on them): 0 done; 1 usage; 2 cannot reach the
 * node (connect, TLS, malformed answer); 3 refused (401, 403); 4 not found
 * (404); 5 any other HTTP error (its reason printed). */
#include <ctype.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "password.h"
#include "version.h"

enum {
    EXIT_OK = 0,
    EXIT_USAGE = 1,
    EXIT_UNREACHABLE = 2,
    EXIT_REFUSED = 3,
    EXIT_NOT_FOUND = 4,
    EXIT_HTTP = 5,
};

struct options {
    const char *url;
    const char *user;
    const char *password;
    const char *vhost;
    const char *cacert;
    bool json;
};

struct response {
    int status;
    char *body; /* NUL-terminated */
    size_t body_len;
};

static const char usage_text[] =
    "usage: kbridgectl [--url URL] [--user USER] [--password PASSWORD] [--vhost VHOST]\n"
    "                  [--cacert FILE] [--json] COMMAND [ARGS]\n"
    "commands:\n"
    "  status                                   the node: version, uptime, Kafka, totals\n"
    "  list connections|queues|exchanges|bindings\n"
    "  purge QUEUE                              drop the queue's ready messages\n"
    "  dlq show QUEUE                           its dead-letter topic and depth\n"
    "  dlq peek QUEUE [--count N]               the first N dead letters (default 10)\n"
    "  dlq redrive QUEUE [--count N] [--to DEST]  re-publish them (default: all, to\n"
    "                                           their original topics)\n"
    "  dlq discard QUEUE [--count N]            drop them (default: all)\n"
    "  close CONNECTION                         close a client connection (its name)\n"
    "  export-definitions                       RabbitMQ definitions JSON on stdout\n"
    "  import-definitions FILE                  load a RabbitMQ definitions export\n"
    "  hash-password                            read a password, print its hash\n"
    "--url defaults to http://127.0.0.1:15672; --user/--password default to\n"
    "KBRIDGE_USER/KBRIDGE_PASSWORD. Exit codes: 0 done, 1 usage, 2 node unreachable,\n"
    "3 refused (401/403), 4 not found, 5 other HTTP errors.\n";

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "kbridgectl: %s\n", why);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* ---- HTTP over a BIO ------------------------------------------------------------ */

static const char base64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)in[i + 2];
        out[o++] = base64_chars[(v >> 18) & 63];
        out[o++] = base64_chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? base64_chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? base64_chars[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Percent-encode one path segment ("/" -> "%2F"). */
static void url_segment(const char *in, char *out, size_t out_size)
{
    size_t o = 0;
    for (; *in && o + 4 < out_size; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, out_size - o, "%%%02X", c);
    }
    out[o] = '\0';
}

/* Split "http[s]://HOST[:PORT][/PREFIX]" into tls, "host:port" and prefix. */
static int parse_url(const char *url, bool *tls, char *hostport, size_t hostport_size, char *host,
                     size_t host_size, char *prefix, size_t prefix_size)
{
    const char *rest;
    if (strncmp(url, "http://", 7) == 0) {
        *tls = false;
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        *tls = true;
        rest = url + 8;
    } else {
        return -1;
    }
    size_t len = strcspn(rest, "/");
    if (len == 0 || len >= hostport_size)
        return -1;
    const char *bracket = rest[0] == '[' ? memchr(rest, ']', len) : NULL;
    const char *colon =
        memchr(bracket ? bracket : rest, ':', len - (size_t)((bracket ? bracket : rest) - rest));
    size_t host_len = colon ? (size_t)(colon - rest) : len;
    if (host_len >= host_size)
        return -1;
    memcpy(host, rest, host_len);
    host[host_len] = '\0';
    if (colon)
        snprintf(hostport, hostport_size, "%.*s", (int)len, rest);
    else
        snprintf(hostport, hostport_size, "%s:%s", host, *tls ? "443" : "80");
    snprintf(prefix, prefix_size, "%s", rest + len);
    size_t plen = strlen(prefix);
    while (plen > 0 && prefix[plen - 1] == '/')
        prefix[--plen] = '\0';
    return 0;
}

static void print_ssl_errors(const char *what)
{
    unsigned long code = ERR_get_error();
    char text[256] = "";
    if (code)
        ERR_error_string_n(code, text, sizeof(text));
    fprintf(stderr, "kbridgectl: %s%s%s\n", what, code ? ": " : "", text);
}

/* One request; 0 with *out filled, or an exit code with the reason printed. */
static int http_request(const struct options *opt, const char *method, const char *path,
                        const char *body, struct response *out)
{
    bool tls = false;
    char hostport[300], host[256], prefix[256];
    if (parse_url(opt->url, &tls, hostport, sizeof(hostport), host, sizeof(host), prefix,
                  sizeof(prefix)) < 0) {
        fprintf(stderr, "kbridgectl: --url %s is not http://HOST[:PORT] or https://...\n",
                opt->url);
        return EXIT_USAGE;
    }
    SSL_CTX *ctx = NULL;
    BIO *bio = BIO_new_connect(hostport);
    if (!bio) {
        print_ssl_errors("out of memory");
        return EXIT_UNREACHABLE;
    }
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx || (opt->cacert ? SSL_CTX_load_verify_locations(ctx, opt->cacert, NULL)
                                 : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
            print_ssl_errors("cannot set up TLS");
            SSL_CTX_free(ctx);
            BIO_free_all(bio);
            return EXIT_UNREACHABLE;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        BIO *ssl_bio = BIO_new_ssl(ctx, 1);
        SSL *ssl = NULL;
        BIO_get_ssl(ssl_bio, &ssl);
        SSL_set_tlsext_host_name(ssl, host);
        SSL_set1_host(ssl, host);
        bio = BIO_push(ssl_bio, bio);
    }
    if (BIO_do_connect(bio) != 1 || (tls && BIO_do_handshake(bio) != 1)) {
        char what[400];
        snprintf(what, sizeof(what), "cannot reach %s", opt->url);
        print_ssl_errors(what);
        BIO_free_all(bio);
        SSL_CTX_free(ctx);
        return EXIT_UNREACHABLE;
    }
    char credentials[1024], auth[1500] = "";
    if (opt->user) {
        int n = snprintf(credentials, sizeof(credentials), "%s:%s", opt->user,
                         opt->password ? opt->password : "");
        if (n > 0 && (size_t)n < sizeof(credentials)) {
            char encoded[1400];
            base64(credentials, (size_t)n, encoded);
            snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", encoded);
        }
        memset(credentials, 0, sizeof(credentials));
    }
    size_t body_len = body ? strlen(body) : 0;
    BIO_printf(bio,
               "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kbridgectl/%s\r\n"
               "Accept: application/json\r\nConnection: close\r\n%s"
               "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
               method, prefix, path, hostport, KBRIDGE_VERSION, auth, body_len);
    if (body_len)
        BIO_write(bio, body, (int)body_len);
    BIO_flush(bio);
    memset(auth, 0, sizeof(auth));
    size_t len = 0, capacity = 8192;
    char *text = malloc(capacity);
    for (int n; text;) {
        if (len + 4096 + 1 > capacity) {
            char *grown = realloc(text, capacity *= 2);
            if (!grown) {
                free(text);
                text = NULL;
                break;
            }
            text = grown;
        }
        n = BIO_read(bio, text + len, 4096);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    BIO_free_all(bio);
    SSL_CTX_free(ctx);
    if (!text)
        return EXIT_UNREACHABLE;
    text[len] = '\0';
    int status = 0;
    char *header_end = strstr(text, "\r\n\r\n");
    if (sscanf(text, "HTTP/1.%*d %d", &status) != 1 || !header_end) {
        fprintf(stderr, "kbridgectl: %s did not answer HTTP\n", opt->url);
        free(text);
        return EXIT_UNREACHABLE;
    }
    *header_end = '\0';
    bool chunked = strcasestr(text, "\r\nTransfer-Encoding: chunked") != NULL;
    char *payload = header_end + 4;
    size_t payload_len = len - (size_t)(payload - text);
    if (chunked) { /* de-chunk in place */
        char *in = payload, *end = payload + payload_len, *o = payload;
        while (in < end) {
            char *stop = NULL;
            unsigned long size = strtoul(in, &stop, 16);
            char *line_end = strstr(in, "\r\n");
            if (!line_end || size == 0 || line_end + 2 + size > end)
                break;
            memmove(o, line_end + 2, size);
            o += size;
            in = line_end + 2 + size + 2;
        }
        payload_len = (size_t)(o - payload);
    }
    out->status = status;
    out->body = malloc(payload_len + 1);
    if (!out->body) {
        free(text);
        return EXIT_UNREACHABLE;
    }
    memcpy(out->body, payload, payload_len);
    out->body[payload_len] = '\0';
    out->body_len = payload_len;
    free(text);
    return EXIT_OK;
}

/* The exit code of an HTTP status, with the API's reason printed. */
static int http_outcome(const struct response *response, const char *what)
{
    if (response->status >= 200 && response->status < 300)
        return EXIT_OK;
    json_t *error = json_loads(response->body, 0, NULL);
    const char *reason = json_string_value(json_object_get(error, "reason"));
    fprintf(stderr, "kbridgectl: %s: HTTP %d: %s\n", what, response->status,
            reason ? reason : response->body);
    json_decref(error);
    if (response->status == 401 || response->status == 403)
        return EXIT_REFUSED;
    return response->status == 404 ? EXIT_NOT_FOUND : EXIT_HTTP;
}

/* GET path as JSON; an exit code, *out set on success. */
static int get_json(const struct options *opt, const char *path, json_t **out)
{
    struct response response = {0};
    int rc = http_request(opt, "GET", path, NULL, &response);
    if (rc == EXIT_OK)
        rc = http_outcome(&response, path);
    if (rc == EXIT_OK) {
        json_error_t error;
        *out = json_loads(response.body, 0, &error);
        if (!*out) {
            fprintf(stderr, "kbridgectl: %s: the answer is not JSON: %s\n", path, error.text);
            rc = EXIT_UNREACHABLE;
        }
    }
    free(response.body);
    return rc;
}

/* ---- tables ------------------------------------------------------------------------ */

/* A field of `row` as text (nested with dots: "kbridge.subscriptions"). */
static void field_text(const json_t *row, const char *field, char *out, size_t out_size)
{
    char path[128];
    snprintf(path, sizeof(path), "%s", field);
    const json_t *value = row;
    for (char *part = strtok(path, "."); part && value; part = strtok(NULL, "."))
        value = json_object_get(value, part);
    if (!value || json_is_null(value))
        snprintf(out, out_size, "-");
    else if (json_is_string(value))
        snprintf(out, out_size, "%s", json_string_value(value));
    else if (json_is_integer(value))
        snprintf(out, out_size, "%lld", (long long)json_integer_value(value));
    else if (json_is_true(value) || json_is_false(value))
        snprintf(out, out_size, "%s", json_is_true(value) ? "true" : "false");
    else {
        char *dump = json_dumps(value, JSON_COMPACT);
        snprintf(out, out_size, "%s", dump ? dump : "?");
        free(dump);
    }
}

static void print_table(const json_t *rows, const char *const *fields, size_t count)
{
    size_t width[16] = {0};
    char cell[512];
    for (size_t f = 0; f < count; f++)
        width[f] = strlen(fields[f]);
    for (size_t r = 0; r < json_array_size(rows); r++)
        for (size_t f = 0; f < count; f++) {
            field_text(json_array_get(rows, r), fields[f], cell, sizeof(cell));
            if (strlen(cell) > width[f])
                width[f] = strlen(cell);
        }
    for (size_t f = 0; f < count; f++)
        printf("%-*s%s", (int)width[f], fields[f], f + 1 < count ? "  " : "\n");
    for (size_t r = 0; r < json_array_size(rows); r++)
        for (size_t f = 0; f < count; f++) {
            field_text(json_array_get(rows, r), fields[f], cell, sizeof(cell));
            printf("%-*s%s", (int)width[f], f + 1 < count ? cell : cell,
                   f + 1 < count ? "  " : "\n");
        }
}

static void print_json(const json_t *value)
{
    char *text = json_dumps(value, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text)
        printf("%s\n", text);
    free(text);
}

/* ---- commands ---------------------------------------------------------------------- */

static int cmd_status(const struct options *opt)
{
    json_t *overview = NULL;
    int rc = get_json(opt, "/api/overview", &overview);
    if (rc != EXIT_OK)
        return rc;
    if (opt->json) {
        print_json(overview);
    } else {
        char node[256], version[64], uptime[64], ready[16], reason[512], c[32], q[32], e[32],
            consumers[32];
        field_text(overview, "node", node, sizeof(node));
        field_text(overview, "product_version", version, sizeof(version));
        field_text(overview, "kbridge.uptime_seconds", uptime, sizeof(uptime));
        field_text(overview, "kbridge.kafka.ready", ready, sizeof(ready));
        field_text(overview, "kbridge.kafka.reason", reason, sizeof(reason));
        field_text(overview, "object_totals.connections", c, sizeof(c));
        field_text(overview, "object_totals.consumers", consumers, sizeof(consumers));
        field_text(overview, "object_totals.queues", q, sizeof(q));
        field_text(overview, "object_totals.exchanges", e, sizeof(e));
        double seconds = json_real_value(
            json_object_get(json_object_get(overview, "kbridge"), "uptime_seconds"));
        printf("node:         %s\nversion:      kbridge %s\nuptime:       %.0f s\n"
               "kafka ready:  %s%s%s\nconnections:  %s\nconsumers:    %s\nqueues:       %s\n"
               "exchanges:    %s\n",
               node, version, seconds, ready, *reason && strcmp(reason, "-") ? " (" : "",
               *reason && strcmp(reason, "-") ? reason : "", c, consumers, q, e);
        if (*reason && strcmp(reason, "-"))
            printf(")\n");
        (void)uptime;
    }
    json_decref(overview);
    return EXIT_OK;
}

static int cmd_list(const struct options *opt, const char *what)
{
    static const char *const connection_fields[] = {
        "name", "user", "protocol", "peer_host", "peer_port", "kbridge.subscriptions"};
    static const char *const queue_fields[] = {"vhost",     "name",    "messages",
                                               "consumers", "durable", "kbridge_group"};
    static const char *const exchange_fields[] = {"vhost", "name", "type", "durable", "internal"};
    static const char *const binding_fields[] = {"vhost", "source", "destination",
                                                 "destination_type", "routing_key"};
    const char *const *fields;
    size_t count;
    char path[600];
    char vhost[300] = "";
    if (opt->vhost) {
        char encoded[290];
        url_segment(opt->vhost, encoded, sizeof(encoded));
        snprintf(vhost, sizeof(vhost), "/%s", encoded);
    }
    if (strcmp(what, "connections") == 0) {
        fields = connection_fields;
        count = sizeof(connection_fields) / sizeof(*connection_fields);
        vhost[0] = '\0';
    } else if (strcmp(what, "queues") == 0) {
        fields = queue_fields;
        count = sizeof(queue_fields) / sizeof(*queue_fields);
    } else if (strcmp(what, "exchanges") == 0) {
        fields = exchange_fields;
        count = sizeof(exchange_fields) / sizeof(*exchange_fields);
    } else if (strcmp(what, "bindings") == 0) {
        fields = binding_fields;
        count = sizeof(binding_fields) / sizeof(*binding_fields);
    } else {
        return usage("list what? connections, queues, exchanges or bindings");
    }
    snprintf(path, sizeof(path), "/api/%s%s", what, vhost);
    json_t *rows = NULL;
    int rc = get_json(opt, path, &rows);
    if (rc != EXIT_OK)
        return rc;
    if (opt->json)
        print_json(rows);
    else
        print_table(rows, fields, count);
    json_decref(rows);
    return EXIT_OK;
}

/* A request whose answer is a status (and maybe a JSON body). */
static int cmd_change(const struct options *opt, const char *method, const char *path,
                      const char *body, const char *done)
{
    struct response response = {0};
    int rc = http_request(opt, method, path, body, &response);
    if (rc == EXIT_OK)
        rc = http_outcome(&response, path);
    if (rc == EXIT_OK) {
        json_t *answer = response.body_len ? json_loads(response.body, 0, NULL) : NULL;
        if (opt->json && answer)
            print_json(answer);
        else if (answer && json_object_get(answer, "message_count"))
            printf("%s (%lld message(s))\n", done,
                   (long long)json_integer_value(json_object_get(answer, "message_count")));
        else
            printf("%s\n", done);
        json_decref(answer);
    }
    free(response.body);
    return rc;
}

static int cmd_purge(const struct options *opt, const char *queue)
{
    char vhost[300], name[800], path[1200], done[900];
    url_segment(opt->vhost ? opt->vhost : "/", vhost, sizeof(vhost));
    url_segment(queue, name, sizeof(name));
    snprintf(path, sizeof(path), "/api/queues/%s/%s/contents", vhost, name);
    snprintf(done, sizeof(done), "purged %s", queue);
    return cmd_change(opt, "DELETE", path, NULL, done);
}

/* ---- dead letters -------------------------------------------------------------------- */

/* One line of a peek's table: where, how big, why, and the body (shortened,
 * control characters as '.'). */
static json_t *dlq_row(const json_t *record)
{
    const json_t *headers = json_object_get(json_object_get(record, "properties"), "headers");
    const char *payload = json_string_value(json_object_get(record, "payload"));
    const char *encoding = json_string_value(json_object_get(record, "payload_encoding"));
    char shown[64];
    size_t n = 0;
    for (const char *p = payload ? payload : ""; *p && n + 4 < sizeof(shown); p++)
        shown[n++] = (unsigned char)*p < 0x20 ? '.' : *p;
    shown[n] = '\0';
    if (payload && strlen(payload) > n)
        snprintf(shown + n, sizeof(shown) - n, "...");
    return json_pack("{s:O*,s:O*,s:O*,s:O*,s:O*,s:s,s:s}", "partition",
                     json_object_get(record, "partition"), "offset",
                     json_object_get(record, "offset"), "bytes",
                     json_object_get(record, "payload_bytes"), "reason",
                     json_object_get(headers, "kbridge-dlq-reason"), "original_topic",
                     json_object_get(headers, "kbridge-dlq-original-topic"), "encoding",
                     encoding ? encoding : "-", "payload", shown);
}

/* dlq show|peek|redrive|discard QUEUE [--count N] [--to DEST] */
static int cmd_dlq(const struct options *opt, int argc, char **argv)
{
    if (argc < 2)
        return usage("dlq show|peek|redrive|discard QUEUE [--count N] [--to DEST]");
    const char *action = argv[0], *queue = argv[1], *count = NULL, *to = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else
            return usage("dlq: --count N and --to DEST are its options (each with a value)");
    }
    if (count) {
        char *end = NULL;
        long long n = strtoll(count, &end, 10);
        if (!*count || *end || n < 0)
            return usage("dlq: --count takes a non-negative number");
    }
    bool show = strcmp(action, "show") == 0, peek = strcmp(action, "peek") == 0;
    bool redrive = strcmp(action, "redrive") == 0, discard = strcmp(action, "discard") == 0;
    if (!show && !peek && !redrive && !discard)
        return usage("dlq show, peek, redrive or discard?");
    if (to && !redrive)
        return usage("dlq: --to is for redrive");
    if (count && show)
        return usage("dlq show takes no --count");
    char vhost[300], name[800], path[1300];
    url_segment(opt->vhost ? opt->vhost : "/", vhost, sizeof(vhost));
    url_segment(queue, name, sizeof(name));
    snprintf(path, sizeof(path), "/api/kbridge/dlq/%s/%s%s%s%s", vhost, name,
             peek || discard ? "/messages" : (redrive ? "/redrive" : ""),
             count && !redrive ? "?count=" : "", count && !redrive ? count : "");
    if (show || peek) {
        json_t *answer = NULL;
        int rc = get_json(opt, path, &answer);
        if (rc != EXIT_OK)
            return rc;
        if (opt->json) {
            print_json(answer);
        } else if (show) {
            char topic[300], group[300], messages[32];
            field_text(answer, "topic", topic, sizeof(topic));
            field_text(answer, "group", group, sizeof(group));
            field_text(answer, "messages", messages, sizeof(messages));
            printf("queue:     %s\ntopic:     %s\ngroup:     %s\nmessages:  %s\n", queue, topic,
                   group, messages);
            const json_t *running = json_object_get(answer, "running");
            if (json_is_object(running)) {
                char what[32], user[300], records[32];
                field_text(running, "action", what, sizeof(what));
                field_text(running, "user", user, sizeof(user));
                field_text(running, "records", records, sizeof(records));
                printf("running:   %s by %s, %s record(s) so far\n", what, user, records);
            }
        } else {
            static const char *const fields[] = {"partition",      "offset",   "bytes",  "reason",
                                                 "original_topic", "encoding", "payload"};
            json_t *rows = json_array();
            for (size_t i = 0; rows && i < json_array_size(answer); i++)
                json_array_append_new(rows, dlq_row(json_array_get(answer, i)));
            print_table(rows, fields, sizeof(fields) / sizeof(*fields));
            json_decref(rows);
        }
        json_decref(answer);
        return EXIT_OK;
    }
    json_t *request = json_object();
    if (request && count && redrive)
        json_object_set_new(request, "count", json_integer(strtoll(count, NULL, 10)));
    if (request && to)
        json_object_set_new(request, "destination", json_string(to));
    char *body = request && redrive ? json_dumps(request, JSON_COMPACT) : NULL;
    json_decref(request);
    struct response response = {0};
    int rc = http_request(opt, redrive ? "POST" : "DELETE", path,
                          redrive ? (body ? body : "{}") : NULL, &response);
    free(body);
    if (rc == EXIT_OK)
        rc = http_outcome(&response, path);
    if (rc == EXIT_OK) {
        json_t *answer = json_loads(response.body, 0, NULL);
        if (!answer) {
            fprintf(stderr, "kbridgectl: %s: the answer is not JSON\n", path);
            rc = EXIT_UNREACHABLE;
        } else if (opt->json) {
            print_json(answer);
        } else {
            char done[32], topic[300], where[600];
            field_text(answer, redrive ? "redriven" : "discarded", done, sizeof(done));
            field_text(answer, "topic", topic, sizeof(topic));
            field_text(answer, "destination", where, sizeof(where));
            if (redrive)
                printf("redrove %s dead letter(s) of %s from %s to %s\n", done, queue, topic,
                       where);
            else
                printf("discarded %s dead letter(s) of %s from %s\n", done, queue, topic);
        }
        json_decref(answer);
    }
    free(response.body);
    return rc;
}

static int cmd_close(const struct options *opt, const char *connection)
{
    char name[800], path[900], done[900];
    url_segment(connection, name, sizeof(name));
    snprintf(path, sizeof(path), "/api/connections/%s", name);
    snprintf(done, sizeof(done), "closed %s", connection);
    return cmd_change(opt, "DELETE", path, NULL, done);
}

static int cmd_export(const struct options *opt)
{
    json_t *definitions = NULL;
    int rc = get_json(opt, "/api/definitions", &definitions);
    if (rc == EXIT_OK)
        print_json(definitions);
    json_decref(definitions);
    return rc;
}

static int cmd_import(const struct options *opt, const char *file)
{
    json_error_t error;
    json_t *definitions = json_load_file(file, 0, &error);
    if (!definitions) {
        fprintf(stderr, "kbridgectl: %s: line %d: %s\n", file, error.line, error.text);
        return EXIT_USAGE;
    }
    char *body = json_dumps(definitions, JSON_COMPACT);
    json_decref(definitions);
    if (!body)
        return EXIT_UNREACHABLE;
    char done[600];
    snprintf(done, sizeof(done), "imported %s", file);
    int rc = cmd_change(opt, "POST", "/api/definitions", body, done);
    free(body);
    return rc;
}

/* Read one line from stdin, without echo on a terminal. */
static int read_password(char *out, size_t out_size)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    bool ok = fgets(out, (int)out_size, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!ok)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static int cmd_hash_password(void)
{
    char password[1024], hash[256], err[256];
    if (read_password(password, sizeof(password)) < 0 || !password[0]) {
        fprintf(stderr, "kbridgectl: no password on stdin\n");
        return EXIT_USAGE;
    }
    int rc = password_hash_new(password, hash, sizeof(hash), err, sizeof(err));
    memset(password, 0, sizeof(password));
    if (rc < 0) {
        fprintf(stderr, "kbridgectl: cannot hash: %s\n", err);
        return EXIT_USAGE;
    }
    printf("%s\n", hash);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    struct options opt = {
        .url = "http://127.0.0.1:15672",
        .user = getenv("KBRIDGE_USER"),
        .password = getenv("KBRIDGE_PASSWORD"),
    };
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *arg = argv[i];
        const char **target = NULL;
        if (strcmp(arg, "--json") == 0) {
            opt.json = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("kbridgectl %s\n", KBRIDGE_VERSION);
            return EXIT_OK;
        }
        if (strcmp(arg, "--url") == 0)
            target = &opt.url;
        else if (strcmp(arg, "--user") == 0)
            target = &opt.user;
        else if (strcmp(arg, "--password") == 0)
            target = &opt.password;
        else if (strcmp(arg, "--vhost") == 0)
            target = &opt.vhost;
        else if (strcmp(arg, "--cacert") == 0)
            target = &opt.cacert;
        if (!target) {
            char why[300];
            snprintf(why, sizeof(why), "unknown option %s", arg);
            return usage(why);
        }
        if (i + 1 >= argc) {
            char why[300];
            snprintf(why, sizeof(why), "%s needs a value", arg);
            return usage(why);
        }
        *target = argv[++i];
    }
    if (i >= argc)
        return usage("no command");
    const char *command = argv[i];
    int rest = argc - i - 1;
    char **args = argv + i + 1;
    if (strcmp(command, "status") == 0 && rest == 0)
        return cmd_status(&opt);
    if (strcmp(command, "list") == 0 && rest == 1)
        return cmd_list(&opt, args[0]);
    if (strcmp(command, "purge") == 0 && rest == 1)
        return cmd_purge(&opt, args[0]);
    if (strcmp(command, "dlq") == 0 && rest >= 2)
        return cmd_dlq(&opt, rest, args);
    if (strcmp(command, "close") == 0 && rest == 1)
        return cmd_close(&opt, args[0]);
    if (strcmp(command, "export-definitions") == 0 && rest == 0)
        return cmd_export(&opt);
    if (strcmp(command, "import-definitions") == 0 && rest == 1)
        return cmd_import(&opt, args[0]);
    if (strcmp(command, "hash-password") == 0 && rest == 0)
        return cmd_hash_password();
    char why[300];
    snprintf(why, sizeof(why), "unknown command or wrong arguments: %s", command);
    return usage(why);
}
