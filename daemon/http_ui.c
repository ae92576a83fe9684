/* SPDX-License-Identifier: Apache-2.0 */
/* http_ui.c -- the dashboard's static files under /ui/ (http_ui.h).
 *
 * A request waits in a struct ui_request for its password check
 * (core_authenticate_start_from, on the worker pool, as for the admin API
 * and logins: failures are counted per address), then the user's tags
 * decide (admin_auth.h: any role but none may load the pages; what the
 * pages then show is what the admin API lets that user read). Files come
 * from `http.ui_dir` through ui_open (ui_files.h: names checked, resolved
 * inside the directory, regular files only) and read into the reply
 * through an evbuffer file segment. A missing directory answers 404 and is logged once
 * until it appears again. */
#include "http_ui.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin_auth.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "server.h"
#include "ui_files.h"

#ifndef KBRIDGE_UI_DIR
#define KBRIDGE_UI_DIR "/usr/share/kbridge/ui"
#endif

/* Read the file into memory when it is added: no sendfile or mmap, which a
 * TLS listener's bufferevent cannot send from and a file truncated
 * meanwhile would turn into SIGBUS. The dashboard's files are small. */
#define UI_SEGMENT_FLAGS                                                                           \
    (EVBUF_FS_CLOSE_ON_FREE | EVBUF_FS_DISABLE_MMAP | EVBUF_FS_DISABLE_SENDFILE)

struct ops_ui {
    struct server *server;
    struct ui_request *pending; /* doubly linked: password checks running */
    char missing_logged[4096];  /* the directory last logged as missing, "" none */
};

struct ui_request {
    struct ui_request *next, *prev;
    struct ops_ui *ui;
    struct evhttp_request *request;
    struct core_auth *auth;
    char user[256];
};

static void ui_send_text(struct evhttp_request *request, int code, const char *reason,
                         const char *text)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_error(request, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(body, "%s\n", text);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(request);
    evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    if (code == 401)
        evhttp_add_header(headers, "WWW-Authenticate", "Basic realm=\"kbridge\"");
    evhttp_send_reply(request, code, reason, body);
    evbuffer_free(body);
}

static const char *ui_dir(const struct ops_ui *ui)
{
    const struct config *config = server_config(ui->server);
    return config->http.ui_dir ? config->http.ui_dir : KBRIDGE_UI_DIR;
}

/* The user may load the dashboard: send the file the path names. */
static void ui_serve(struct ops_ui *ui, struct evhttp_request *request)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(request));
    char relative[1024], err[1200];
    if (!path || strncmp(path, UI_URL_PREFIX, strlen(UI_URL_PREFIX)) != 0 ||
        ui_relative_path(path + strlen(UI_URL_PREFIX), relative, sizeof(relative), err,
                         sizeof(err)) < 0) {
        char text[1300];
        snprintf(text, sizeof(text), "no such dashboard file (%s)",
                 path && strncmp(path, UI_URL_PREFIX, strlen(UI_URL_PREFIX)) == 0
                     ? err
                     : "not under /ui/");
        ui_send_text(request, 404, "Not Found", text);
        return;
    }
    const char *dir = ui_dir(ui);
    int fd = -1;
    uint64_t size = 0;
    enum ui_open_result result = ui_open(dir, relative, &fd, &size, err, sizeof(err));
    if (result == UI_OPEN_NO_DIR) {
        if (strcmp(ui->missing_logged, dir) != 0) {
            log_warn("http", "dashboard not served: %s (set http.ui_dir)", err);
            snprintf(ui->missing_logged, sizeof(ui->missing_logged), "%s", dir);
        }
        char text[1400];
        snprintf(text, sizeof(text),
                 "the dashboard is not installed here: %s (http.ui_dir, docs/operations.md "
                 "\"Dashboard\")",
                 err);
        ui_send_text(request, 404, "Not Found", text);
        return;
    }
    ui->missing_logged[0] = '\0';
    if (result != UI_OPEN_OK) {
        char text[1300];
        snprintf(text, sizeof(text), "no such dashboard file: %s", err);
        ui_send_text(request, 404, "Not Found", text);
        return;
    }
    /* the segment owns fd from here (closed when the last reference goes) */
    struct evbuffer_file_segment *segment =
        size > 0 ? evbuffer_file_segment_new(fd, 0, (ev_off_t)size, UI_SEGMENT_FLAGS) : NULL;
    if (!segment)
        close(fd);
    struct evbuffer *body = evbuffer_new();
    int rc = body && segment ? evbuffer_add_file_segment(body, segment, 0, (ev_off_t)size) : 0;
    if (segment)
        evbuffer_file_segment_free(segment); /* body keeps its own reference */
    if (!body || rc < 0 || (size > 0 && !segment)) {
        if (body)
            evbuffer_free(body);
        evhttp_send_error(request, 500, "cannot read the dashboard file");
        return;
    }
    struct evkeyvalq *headers = evhttp_request_get_output_headers(request);
    evhttp_add_header(headers, "Content-Type", ui_content_type(relative));
    evhttp_add_header(headers, "Cache-Control", "no-cache");
    evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(headers, "Content-Security-Policy",
                      "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    evhttp_send_reply(request, 200, "OK", body);
    evbuffer_free(body);
}

static void ui_request_free(struct ui_request *req)
{
    if (req->ui) {
        if (req->prev)
            req->prev->next = req->next;
        else
            req->ui->pending = req->next;
        if (req->next)
            req->next->prev = req->prev;
    }
    core_authenticate_cancel(req->auth);
    free(req);
}

static enum admin_role ui_role(const struct ops_ui *ui, const char *user)
{
    const struct config *config = core_config(server_core(ui->server));
    for (size_t i = 0; i < config->auth.user_count; i++)
        if (strcmp(config->auth.users[i].name, user) == 0)
            return admin_role_of(&config->auth.users[i]);
    return ADMIN_ROLE_NONE;
}

static void ui_authenticated(void *opaque, int result, const char *user, const char *reason)
{
    struct ui_request *req = opaque;
    req->auth = NULL;
    if (result != CORE_OK || !user) {
        ui_send_text(req->request, 401, "Unauthorized", reason ? reason : "Login failed");
    } else if (!admin_role_allows(ui_role(req->ui, req->user), false)) {
        char text[400];
        snprintf(text, sizeof(text),
                 "user %s may not load the dashboard: that takes the administrator, "
                 "monitoring or management tag",
                 req->user);
        ui_send_text(req->request, 403, "Forbidden", text);
    } else {
        ui_serve(req->ui, req->request);
    }
    ui_request_free(req);
}

bool ops_ui_serves(const char *path)
{
    return strcmp(path, "/ui") == 0 || strncmp(path, UI_URL_PREFIX, strlen(UI_URL_PREFIX)) == 0;
}

void ops_ui_handle(struct ops_ui *ui, struct evhttp_request *request)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(request);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        ui_send_text(request, 405, "Method Not Allowed", "the dashboard is read with GET");
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(request));
    if (path && strcmp(path, "/ui") == 0) { /* relative links need the slash */
        evhttp_add_header(evhttp_request_get_output_headers(request), "Location", UI_URL_PREFIX);
        ui_send_text(request, 301, "Moved Permanently", "see /ui/");
        return;
    }
    const char *header =
        evhttp_find_header(evhttp_request_get_input_headers(request), "Authorization");
    if (!header) {
        ui_send_text(request, 401, "Unauthorized", "the dashboard needs HTTP basic credentials");
        return;
    }
    struct ui_request *req = calloc(1, sizeof(*req));
    char password[1024];
    if (!req) {
        evhttp_send_error(request, 500, "out of memory");
        return;
    }
    if (admin_basic_credentials(header, req->user, sizeof(req->user), password, sizeof(password)) <
        0) {
        free(req);
        ui_send_text(request, 401, "Unauthorized", "the Authorization header is not HTTP basic");
        return;
    }
    struct evhttp_connection *connection = evhttp_request_get_connection(request);
    char *host = NULL, peer[80];
    ev_uint16_t port = 0;
    if (connection)
        evhttp_connection_get_peer(connection, &host, &port);
    snprintf(peer, sizeof(peer), "%s:%u", host ? host : "-", (unsigned)port);
    req->ui = ui;
    req->request = request;
    req->next = ui->pending;
    if (ui->pending)
        ui->pending->prev = req;
    ui->pending = req;
    req->auth = core_authenticate_start_from(server_core(ui->server), peer, req->user, password,
                                             ui_authenticated, req);
    OPENSSL_cleanse(password, sizeof(password));
    if (!req->auth) {
        ui_request_free(req);
        evhttp_send_error(request, 500, "cannot check the credentials now");
    }
}

struct ops_ui *ops_ui_new(struct server *server)
{
    struct ops_ui *ui = calloc(1, sizeof(*ui));
    if (ui)
        ui->server = server;
    return ui;
}

void ops_ui_free(struct ops_ui *ui)
{
    if (!ui)
        return;
    while (ui->pending) {
        struct ui_request *req = ui->pending;
        ui->pending = req->next;
        req->ui = NULL;
        ui_request_free(req); /* cancels the check: its callback never runs */
    }
    free(ui);
}
