/* SPDX-License-Identifier: Apache-2.0 */
/* admin_shovel.c -- the admin API's shovel resource (architecture §15):
 * GET /api/kbridge/shovels lists every configured shovel of this node with
 * its state (running, connecting, blocked), ends, counts and last error,
 * from the status table (shovel.h). Read-only: monitoring, management and
 * administrator users may read it. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin_internal.h"
#include "server.h"
#include "shovel.h"

/* "2026-12-07T11:00:00.123Z" for wall-clock ms (0: null). */
static json_t *admin_shovel_time(uint64_t ms)
{
    if (ms == 0)
        return json_null();
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    char text[40];
    gmtime_r(&seconds, &tm);
    size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + n, sizeof(text) - n, ".%03uZ", (unsigned)(ms % 1000));
    return json_string(text);
}

static json_t *admin_shovel_json(const struct shovel_status *status)
{
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s?,s:o,s:o}", "name", status->name, "state",
        shovel_state_name(status->state), "source", status->source, "destination",
        status->destination, "messages_moved", (json_int_t)(status->moved ? *status->moved : 0),
        "duplicates", (json_int_t)(status->duplicates ? *status->duplicates : 0), "reconnects",
        (json_int_t)(status->reconnects ? *status->reconnects : 0), "last_error",
        status->last_error[0] ? status->last_error : NULL, "last_error_at",
        admin_shovel_time(status->last_error_ms), "since", admin_shovel_time(status->since_ms));
}

void admin_shovel_route(struct admin_request *req)
{
    bool get = req->method == EVHTTP_REQ_GET || req->method == EVHTTP_REQ_HEAD;
    if (!get) {
        admin_error(req, 405, "Method Not Allowed", "shovels are read-only: GET");
        return;
    }
    if (req->segment_count == 4) {
        const struct shovel_table *table = server_shovels(req->api->server);
        for (size_t i = 0; i < shovel_table_count(table); i++) {
            const struct shovel_status *status = shovel_table_at(table, i);
            if (strcmp(status->name, req->segments[3]) == 0) {
                admin_reply_new(req, admin_shovel_json(status));
                return;
            }
        }
        admin_error(req, 404, "Object Not Found", "no such shovel");
        return;
    }
    if (req->segment_count != 3) {
        admin_error(req, 404, "Object Not Found", "Not Found");
        return;
    }
    const struct shovel_table *table = server_shovels(req->api->server);
    json_t *list = json_array();
    for (size_t i = 0; list && i < shovel_table_count(table); i++)
        if (json_array_append_new(list, admin_shovel_json(shovel_table_at(table, i))) < 0) {
            json_decref(list);
            list = NULL;
        }
    admin_reply_new(req, list);
}
