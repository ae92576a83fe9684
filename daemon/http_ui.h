/* SPDX-License-Identifier: Apache-2.0 */
/* http_ui.h -- the web dashboard on the ops HTTP listener (architecture §9,
 * docs/operations.md "Dashboard"): GET /ui/ and the files below it from the
 * directory `http.ui_dir`, behind the admin API's HTTP basic
 * authentication (any user with an admin tag). The pages are static; they
 * read the admin API from the browser. Owned by the ops listener (http.c). */
#ifndef KBRIDGE_HTTP_UI_H
#define KBRIDGE_HTTP_UI_H

#include <stdbool.h>

struct evhttp_request;
struct server;
struct ops_ui;

/* A dashboard server for `server` (borrowed; outlives the result). NULL out
 * of memory. */
struct ops_ui *ops_ui_new(struct server *server);
/* Is `path` the dashboard's ("/ui" or below "/ui/")? */
bool ops_ui_serves(const char *path);
/* Answer `request` (now or, after the password check, later on the loop). */
void ops_ui_handle(struct ops_ui *ui, struct evhttp_request *request);
/* Cancel the password checks still running (their evhttp requests are freed
 * by evhttp_free, which must follow) and free. NULL is fine. */
void ops_ui_free(struct ops_ui *ui);

#endif
