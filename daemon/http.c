/* SPDX-License-Identifier: Apache-2.0 */
/* http.c -- the ops HTTP endpoints on libevent's evhttp. Handlers render
 * from the server's read accessors; the socket is bound by listener.c so
 * errors and ephemeral ports are reported the same way as client listeners. */
#include "http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin_api.h"
#include "config.h"
#include "core.h"
#include "http_ui.h"
#include "kafka.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "tls.h"
#include "version.h"

struct ops_http {
    struct evhttp *evhttp;
    struct server *server;
    struct admin_api *admin; /* everything under /api/ but /api/status */
    struct ops_ui *ui;       /* the dashboard under /ui/ */
    char address[80];
};

/* Append `text` as a JSON string literal. */
static void json_string(struct evbuffer *out, const char *text)
{
    evbuffer_add(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        switch (*p) {
        case '"': evbuffer_add(out, "\\\"", 2); break;
        case '\\': evbuffer_add(out, "\\\\", 2); break;
        case '\n': evbuffer_add(out, "\\n", 2); break;
        case '\r': evbuffer_add(out, "\\r", 2); break;
        case '\t': evbuffer_add(out, "\\t", 2); break;
        default:
            if (*p < 0x20)
                evbuffer_add_printf(out, "\\u%04x", *p);
            else
                evbuffer_add(out, p, 1);
        }
    }
    evbuffer_add(out, "\"", 1);
}

static void ops_reply(struct evhttp_request *request, int code, const char *reason,
                      const char *content_type, struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type", content_type);
    evhttp_add_header(evhttp_request_get_output_headers(request), "Cache-Control", "no-store");
    evhttp_send_reply(request, code, reason, body);
}

static void ops_reply_text(struct evhttp_request *request, int code, const char *reason,
                           const char *text)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_error(request, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(body, "%s\n", text);
    ops_reply(request, code, reason, "text/plain; charset=utf-8", body);
    evbuffer_free(body);
}

static void ops_healthz(struct ops_http *http, struct evhttp_request *request)
{
    ops_reply_text(request, 200, "OK", "ok");
}

static void ops_readyz(struct ops_http *http, struct evhttp_request *request)
{
    struct kafka *kafka = server_kafka(http->server);
    if (server_is_draining(http->server)) {
        ops_reply_text(request, 503, "Service Unavailable", "not ready: draining for shutdown");
    } else if (!kafka_is_ready(kafka)) {
        char text[700];
        snprintf(text, sizeof(text), "not ready: %s", kafka_not_ready_reason(kafka));
        ops_reply_text(request, 503, "Service Unavailable", text);
    } else if (!core_definitions_ready(server_core(http->server))) {
        char text[700];
        snprintf(text, sizeof(text), "not ready: %s",
                 core_definitions_not_ready_reason(server_core(http->server)));
        ops_reply_text(request, 503, "Service Unavailable", text);
    } else {
        ops_reply_text(request, 200, "OK", "ready");
    }
}

static void ops_metrics(struct ops_http *http, struct evhttp_request *request)
{
    struct evbuffer *body = evbuffer_new();
    if (!body || metrics_render(server_metrics(http->server), body) < 0) {
        if (body)
            evbuffer_free(body);
        evhttp_send_error(request, 500, "cannot render metrics");
        return;
    }
    ops_reply(request, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
    evbuffer_free(body);
}

static void ops_status(struct ops_http *http, struct evhttp_request *request)
{
    const struct config *config = server_config(http->server);
    struct kafka *kafka = server_kafka(http->server);
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(request, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(out, "{\"version\":");
    json_string(out, KBRIDGE_VERSION);
    evbuffer_add_printf(out, ",\"node_id\":");
    json_string(out, config->node_id);
    evbuffer_add_printf(out, ",\"uptime_seconds\":%.3f,\"draining\":%s",
                        server_uptime_seconds(http->server),
                        server_is_draining(http->server) ? "true" : "false");
    evbuffer_add_printf(out, ",\"kafka\":{\"bootstrap\":");
    json_string(out, kafka_bootstrap(kafka));
    evbuffer_add_printf(out, ",\"embedded\":%s,\"ready\":%s,\"reason\":",
                        kafka_is_embedded(kafka) ? "true" : "false",
                        kafka_is_ready(kafka) ? "true" : "false");
    json_string(out, kafka_not_ready_reason(kafka));
    evbuffer_add_printf(out, ",\"topic_prefix\":");
    json_string(out, config->kafka.topic_prefix);
    struct core *core = server_core(http->server);
    evbuffer_add_printf(out, "},\"definitions\":{\"topic\":");
    json_string(out, config->definitions.topic);
    evbuffer_add_printf(
        out, ",\"ready\":%s,\"reason\":", core_definitions_ready(core) ? "true" : "false");
    json_string(out, core_definitions_not_ready_reason(core));
    evbuffer_add_printf(out, "},\"listeners\":[");
    size_t count = server_listener_count(http->server);
    for (size_t i = 0; i < count; i++) {
        const struct listener *listener = server_listener(http->server, i);
        evbuffer_add_printf(out, "%s{\"protocol\":", i ? "," : "");
        json_string(out, listener_name(listener));
        evbuffer_add_printf(out, ",\"bind\":");
        json_string(out, listener_bind(listener));
        evbuffer_add_printf(out, ",\"address\":");
        json_string(out, listener_address(listener));
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "%s{\"protocol\":\"http\",\"bind\":", count ? "," : "");
    json_string(out, server_http_bind(http->server));
    evbuffer_add_printf(out, ",\"address\":");
    json_string(out, http->address);
    evbuffer_add_printf(out, "}]}\n");
    ops_reply(request, 200, "OK", "application/json", out);
    evbuffer_free(out);
}

static void ops_dispatch(struct evhttp_request *request, void *arg)
{
    struct ops_http *http = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(request);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(request));
    if (!path)
        path = "/";
    if (admin_api_serves(path)) {
        admin_api_handle(http->admin, request); /* authenticated, every method */
        return;
    }
    if (ops_ui_serves(path)) {
        ops_ui_handle(http->ui, request); /* authenticated as the API, GET and HEAD */
        return;
    }
    /* The probes: unauthenticated, read-only (docs/operations.md). */
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        ops_reply_text(request, 405, "Method Not Allowed", "only GET and HEAD are served here");
        return;
    }
    if (strcmp(path, "/healthz") == 0)
        ops_healthz(http, request);
    else if (strcmp(path, "/readyz") == 0)
        ops_readyz(http, request);
    else if (strcmp(path, "/metrics") == 0)
        ops_metrics(http, request);
    else if (strcmp(path, "/api/status") == 0)
        ops_status(http, request);
    else
        ops_reply_text(request, 404, "Not Found",
                       "no such endpoint; try /healthz, /readyz, /metrics, /api/status, the "
                       "admin API under /api/ or the dashboard under /ui/ (docs/operations.md)");
}

struct ops_http *ops_http_new(struct event_base *base, struct server *server, const char *bind,
                              struct tls_context *tls, char *err, size_t err_size)
{
    struct ops_http *http = calloc(1, sizeof(*http));
    if (!http) {
        snprintf(err, err_size, "listeners.http: out of memory");
        return NULL;
    }
    http->server = server;
    http->admin = admin_api_new(server);
    http->ui = ops_ui_new(server);
    if (!http->admin || !http->ui) {
        snprintf(err, err_size, "listeners.http: out of memory");
        admin_api_free(http->admin);
        ops_ui_free(http->ui);
        free(http);
        return NULL;
    }
    evutil_socket_t fd;
    char why[300];
    if (listener_socket_open(bind, &fd, http->address, sizeof(http->address), why, sizeof(why)) <
        0) {
        snprintf(err, err_size, "listeners.http: %s", why);
        admin_api_free(http->admin);
        ops_ui_free(http->ui);
        free(http);
        return NULL;
    }
    http->evhttp = evhttp_new(base);
    if (!http->evhttp || !evhttp_accept_socket_with_handle(http->evhttp, fd)) {
        snprintf(err, err_size, "listeners.http: cannot serve HTTP on %s", http->address);
        close(fd);
        ops_http_free(http);
        return NULL;
    }
    evhttp_set_allowed_methods(http->evhttp, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                                 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    const struct config *config = server_config(server);
    evhttp_set_max_headers_size(http->evhttp, (ev_ssize_t)config->http.max_headers_size);
    evhttp_set_max_body_size(http->evhttp, (ev_ssize_t)config->http.max_body_size);
    evhttp_set_timeout(http->evhttp, (int)((config->http.timeout_ms + 999) / 1000));
    evhttp_set_gencb(http->evhttp, ops_dispatch, http);
    if (tls) /* evhttp's timeout above also bounds a handshake that never finishes */
        evhttp_set_bevcb(http->evhttp, tls_http_bevcb, tls);
    return http;
}

const char *ops_http_address(const struct ops_http *http) { return http->address; }

void ops_http_free(struct ops_http *http)
{
    if (!http)
        return;
    admin_api_free(http->admin); /* before evhttp_free frees the requests it waits on */
    ops_ui_free(http->ui);
    if (http->evhttp)
        evhttp_free(http->evhttp);
    free(http);
}
