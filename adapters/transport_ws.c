/* SPDX-License-Identifier: Apache-2.0 */
/* transport_ws.c -- the WebSocket transport (transport_ws.h): the layer
 * that stacks a filter bufferevent on a TCP or TLS transport's bufferevent
 * (ws, wss), answers the upgrade (transport_ws_handshake.c) and lets wslay
 * do every frame (no framing of our own). */
#include "transport_ws.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "config.h"
#include "log.h"

#define WS_DEFAULT_PATH "/ws"
#define WS_LISTENER_NAME_MAX 64         /* CONFIG_NAME_MAX */
#define WS_MESSAGE_MAX (1024 * 1024)    /* most adapter output sent as one message */
#define WS_LOWER_HIGH (4 * 1024 * 1024) /* stop framing while this much waits for the socket */

static const char *const ws_subprotocols[] = {"v10.stomp", "v11.stomp", "v12.stomp"};

/* ---- the layer ------------------------------------------------------------------------ */

enum ws_state {
    WS_HANDSHAKE, /* waiting for the upgrade request */
    WS_OPEN,      /* upgraded: wslay frames both directions */
    WS_ENDED,     /* refused, timed out, closed or failed: nothing more passes */
};

struct transport_ws {
    struct transport *transport; /* embedded in its connection: a stable address */
    struct transport under;      /* the transport stacked on (TCP, TLS) as it was opened:
                                    its stream is the bufferevent under the filter */
    const char *protocol;        /* the adapter's name, for logs */
    struct config *const *config;
    char listener[WS_LISTENER_NAME_MAX + 1];
    enum ws_state state;
    wslay_event_context_ptr wslay;           /* from the 101 on */
    struct event *deadline;                  /* the upgrade's, limits.handshake_timeout */
    struct event *flush;                     /* zero-timeout: the adapter's output as one message */
    struct evbuffer_cb_entry *lower_drained; /* on the lower output */
    struct evbuffer *recv_src;               /* during wslay_event_recv */
    struct evbuffer *recv_dst;
    short end_events;      /* BEV_EVENT_* to give the adapter once the lower output is sent */
    bool shutdown_pending; /* shutdown(SHUT_WR) once the lower output is sent */
    bool reported;         /* the end of reading is logged */
};

static struct evbuffer *ws_lower_output(struct transport_ws *ws)
{
    return bufferevent_get_output(ws->under.stream);
}

/* The stream ends for the adapter (EOF, TIMEOUT or ERROR), after what the
 * lower output holds (an HTTP refusal, a close frame) is sent. Deferred:
 * never inside the filter's own processing. */
static void ws_end(struct transport_ws *ws, short events)
{
    ws->state = WS_ENDED;
    if (evbuffer_get_length(ws_lower_output(ws)) > 0) {
        ws->end_events = events;
        return;
    }
    bufferevent_trigger_event(ws->transport->stream, events, BEV_TRIG_DEFER_CALLBACKS);
}

static void ws_on_lower_drained(struct evbuffer *buffer, const struct evbuffer_cb_info *info,
                                void *arg)
{
    struct transport_ws *ws = arg;
    if (info->n_deleted == 0 || evbuffer_get_length(buffer) > 0)
        return;
    if (ws->shutdown_pending) {
        ws->shutdown_pending = false;
        transport_shutdown_write(&ws->under);
    }
    if (ws->end_events) {
        short events = ws->end_events;
        ws->end_events = 0;
        bufferevent_trigger_event(ws->transport->stream, events, BEV_TRIG_DEFER_CALLBACKS);
    }
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user_data)
{
    (void)flags;
    struct transport_ws *ws = user_data;
    if (evbuffer_add(ws_lower_output(ws), data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *user_data)
{
    (void)flags;
    struct transport_ws *ws = user_data;
    if (!ws->recv_src || evbuffer_get_length(ws->recv_src) == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return evbuffer_remove(ws->recv_src, buf, len);
}

/* A whole message: its payload is the adapter's input. Pings, pongs and
 * close frames are wslay's (it answers them). */
static void ws_on_message(wslay_event_context_ptr ctx,
                          const struct wslay_event_on_msg_recv_arg *arg, void *user_data)
{
    struct transport_ws *ws = user_data;
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return;
    if (ws->recv_dst && evbuffer_add(ws->recv_dst, arg->msg, arg->msg_length) < 0) {
        log_error(ws->protocol, "%s: out of memory reading a WebSocket message",
                  ws->transport->peer);
        wslay_event_queue_close(ctx, WSLAY_CODE_INTERNAL_SERVER_ERROR, NULL, 0);
        wslay_event_shutdown_read(ctx);
    }
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv_cb,
    .send_callback = ws_send_cb,
    .on_msg_recv_callback = ws_on_message,
};

/* Send what wslay has queued (pongs, close frames, messages) into the
 * lower output; when both directions are over, end the adapter's stream. */
static void ws_send_queued(struct transport_ws *ws)
{
    if (ws->state != WS_OPEN)
        return;
    if (wslay_event_want_write(ws->wslay) && wslay_event_send(ws->wslay) != 0) {
        log_info(ws->protocol, "%s: WebSocket send failed", ws->transport->peer);
        ws_end(ws, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
        return;
    }
    if (!wslay_event_want_read(ws->wslay) && !wslay_event_want_write(ws->wslay)) {
        if (wslay_event_get_close_received(ws->wslay))
            log_debug(ws->protocol, "%s: WebSocket closed by the client", ws->transport->peer);
        ws_end(ws, BEV_EVENT_EOF | BEV_EVENT_READING);
    }
}

/* The upgrade request, once its head is complete: answer it. */
static void ws_upgrade(struct transport_ws *ws, struct evbuffer *src)
{
    struct evbuffer_ptr found = evbuffer_search(src, "\r\n\r\n", 4, NULL);
    size_t head_len = found.pos >= 0 ? (size_t)found.pos + 4 : 0;
    if (head_len == 0 && evbuffer_get_length(src) <= TRANSPORT_WS_HEAD_MAX)
        return; /* wait for the rest */
    char response[1024], why[256];
    int status;
    if (head_len == 0 || head_len > TRANSPORT_WS_HEAD_MAX) {
        snprintf(why, sizeof(why), "request head over %d bytes", TRANSPORT_WS_HEAD_MAX);
        status = transport_ws_refuse(response, sizeof(response), 431,
                                     "Request Header Fields Too Large", "", why);
    } else {
        const struct config_listener *listener = config_listener_find(*ws->config, ws->listener);
        struct transport_ws_policy policy = {
            .path =
                listener && listener->websocket.path ? listener->websocket.path : WS_DEFAULT_PATH,
            .origins = listener ? (const char *const *)listener->websocket.origins : NULL,
            .origin_count = listener ? listener->websocket.origin_count : 0,
            .subprotocols = ws_subprotocols,
            .subprotocol_count = sizeof(ws_subprotocols) / sizeof(ws_subprotocols[0]),
        };
        const char *head = (const char *)evbuffer_pullup(src, (ev_ssize_t)head_len);
        status = head ? transport_ws_handshake(head, head_len, &policy, response, sizeof(response),
                                               why, sizeof(why))
                      : transport_ws_refuse(response, sizeof(response), 500,
                                            "Internal Server Error", "", "out of memory");
        if (status == 101) {
            uint64_t max = listener && listener->websocket.max_message_size
                               ? listener->websocket.max_message_size
                               : (*ws->config)->limits.max_frame_size;
            if (wslay_event_context_server_init(&ws->wslay, &ws_callbacks, ws) != 0) {
                ws->wslay = NULL;
                status = transport_ws_refuse(response, sizeof(response), 500,
                                             "Internal Server Error", "", "out of memory");
            } else {
                wslay_event_config_set_max_recv_msg_length(ws->wslay, max);
            }
        }
        evbuffer_drain(src, head_len);
    }
    evbuffer_add(ws_lower_output(ws), response, strlen(response));
    event_del(ws->deadline);
    if (status != 101) {
        log_info(ws->protocol, "%s: WebSocket upgrade refused with HTTP %d: %s",
                 ws->transport->peer, status, why);
        evbuffer_drain(src, evbuffer_get_length(src));
        ws_end(ws, BEV_EVENT_EOF | BEV_EVENT_READING);
        return;
    }
    log_debug(ws->protocol, "%s: WebSocket upgrade accepted (%s)", ws->transport->peer, why);
    ws->state = WS_OPEN;
    event_active(ws->flush, EV_TIMEOUT, 0); /* anything the adapter wrote meanwhile */
}

static enum bufferevent_filter_result ws_filter_in(struct evbuffer *src, struct evbuffer *dst,
                                                   ev_ssize_t limit,
                                                   enum bufferevent_flush_mode mode, void *arg)
{
    (void)limit; /* the socket reads at most a few KiB at a time: take them all */
    (void)mode;
    struct transport_ws *ws = arg;
    if (ws->state == WS_HANDSHAKE)
        ws_upgrade(ws, src);
    if (ws->state != WS_OPEN) {
        if (ws->state == WS_ENDED)
            evbuffer_drain(src, evbuffer_get_length(src));
        return BEV_NEED_MORE;
    }
    size_t before = evbuffer_get_length(dst);
    ws->recv_src = src;
    ws->recv_dst = dst;
    int rv = wslay_event_recv(ws->wslay);
    ws->recv_src = NULL;
    ws->recv_dst = NULL;
    if (rv != 0) {
        log_info(ws->protocol, "%s: WebSocket receive failed (wslay error %d)", ws->transport->peer,
                 rv);
        evbuffer_drain(src, evbuffer_get_length(src));
        ws_end(ws, BEV_EVENT_ERROR | BEV_EVENT_READING);
        return BEV_NEED_MORE;
    }
    if (!wslay_event_get_read_enabled(ws->wslay)) { /* after a close, or a message too big */
        if (!wslay_event_get_close_received(ws->wslay) && !ws->reported)
            log_info(ws->protocol,
                     "%s: WebSocket message over websocket.max_message_size (close 1009) or "
                     "a framing error (close 1002): closing",
                     ws->transport->peer);
        ws->reported = true;
        evbuffer_drain(src, evbuffer_get_length(src));
    }
    ws_send_queued(ws);
    return evbuffer_get_length(dst) > before ? BEV_OK : BEV_NEED_MORE;
}

/* Is `bytes` valid UTF-8 (a text message must be)? */
static bool ws_utf8_valid(const unsigned char *bytes, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = bytes[i];
        size_t extra;
        uint32_t min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
            min = 0x10000;
        } else {
            return false;
        }
        if (i + extra >= len)
            return false;
        uint32_t cp = c & (0x3f >> extra);
        for (size_t k = 1; k <= extra; k++) {
            if ((bytes[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (bytes[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

/* At most `n` of `len` bytes, cut back so that a UTF-8 sequence is not split. */
static size_t ws_utf8_cut(const unsigned char *bytes, size_t n, size_t len)
{
    if (n >= len)
        return len;
    size_t cut = n;
    for (size_t back = 0; back < 4 && cut > 0 && (bytes[cut] & 0xc0) == 0x80; back++)
        cut--;
    return cut > 0 ? cut : n;
}

static enum bufferevent_filter_result ws_filter_out(struct evbuffer *src, struct evbuffer *dst,
                                                    ev_ssize_t limit,
                                                    enum bufferevent_flush_mode mode, void *arg)
{
    (void)dst; /* the lower output: ws_send_cb writes there */
    (void)limit;
    struct transport_ws *ws = arg;
    size_t len = evbuffer_get_length(src);
    if (ws->state == WS_ENDED) {
        evbuffer_drain(src, len);
        return BEV_NEED_MORE;
    }
    if (ws->state != WS_OPEN || len == 0 || !wslay_event_get_write_enabled(ws->wslay))
        return BEV_NEED_MORE;
    if (mode == BEV_NORMAL) { /* gather this loop iteration's writes into one message */
        event_active(ws->flush, EV_TIMEOUT, 0);
        return BEV_NEED_MORE;
    }
    size_t n = len < WS_MESSAGE_MAX ? len : WS_MESSAGE_MAX;
    size_t peek = n < len ? n + 1 : n;
    const unsigned char *bytes = evbuffer_pullup(src, (ev_ssize_t)peek);
    if (!bytes)
        return BEV_ERROR;
    n = ws_utf8_cut(bytes, n, len);
    struct wslay_event_msg message = {
        .opcode = ws_utf8_valid(bytes, n) ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
        .msg = bytes,
        .msg_length = n,
    };
    if (wslay_event_queue_msg(ws->wslay, &message) != 0) /* copies the bytes */
        return BEV_ERROR;
    evbuffer_drain(src, n);
    ws_send_queued(ws);
    return BEV_OK;
}

/* The adapter's writes of one loop iteration go out as one message, unless
 * the socket is still sending earlier ones (then when it has: the lower
 * bufferevent's write callback runs the filter again). */
static void ws_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct transport_ws *ws = arg;
    if (ws->state != WS_OPEN || evbuffer_get_length(ws_lower_output(ws)) >= WS_LOWER_HIGH)
        return;
    bufferevent_flush(ws->transport->stream, EV_WRITE, BEV_FLUSH);
}

static void ws_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct transport_ws *ws = arg;
    if (ws->state != WS_HANDSHAKE)
        return;
    log_info(ws->protocol, "%s: no WebSocket upgrade within limits.handshake_timeout",
             ws->transport->peer);
    ws->state = WS_ENDED;
    bufferevent_trigger_event(ws->transport->stream, BEV_EVENT_TIMEOUT | BEV_EVENT_READING,
                              BEV_TRIG_DEFER_CALLBACKS);
}

/* transport_ops.shutdown_write: a close frame (1000), then, once it is sent,
 * the shutdown_write of the transport under (TCP: the half-close). */
static int ws_shutdown_write(struct transport *transport)
{
    struct transport_ws *ws = transport->ws;
    if (ws->state == WS_OPEN && !wslay_event_get_close_sent(ws->wslay)) {
        wslay_event_queue_close(ws->wslay, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
        ws_send_queued(ws);
    }
    if (evbuffer_get_length(ws_lower_output(ws)) == 0)
        return transport_shutdown_write(&ws->under);
    ws->shutdown_pending = true;
    return 0;
}

/* transport_ops.flush_now: frame what the adapter queued, then the flush of
 * the transport under. */
static void ws_flush_now(struct transport *transport)
{
    struct transport_ws *ws = transport->ws;
    if (ws->state == WS_OPEN)
        bufferevent_flush(transport->stream, EV_WRITE, BEV_FLUSH);
    transport_flush_now(&ws->under);
}

/* transport_ops.peer_identity: the transport under's (TLS: the client
 * certificate's user on wss; TCP: none). */
static int ws_peer_identity(struct transport *transport, char *out, size_t out_size)
{
    return transport_peer_identity(&transport->ws->under, out, out_size);
}

/* The same layer, named for what it sits on in logs: "websocket" over TCP,
 * "wss" over TLS. */
static const struct transport_ops transport_ws_ops = {
    .name = "websocket",
    .shutdown_write = ws_shutdown_write,
    .flush_now = ws_flush_now,
    .peer_identity = ws_peer_identity,
};

static const struct transport_ops transport_wss_ops = {
    .name = "wss",
    .shutdown_write = ws_shutdown_write,
    .flush_now = ws_flush_now,
    .peer_identity = ws_peer_identity,
};

int transport_ws_stack(struct transport *transport, struct event_base *base, const char *protocol,
                       struct config *const *config, const char *listener_name,
                       uint64_t handshake_timeout_ms)
{
    struct transport_ws *ws = calloc(1, sizeof(*ws));
    if (!ws)
        goto fail;
    ws->transport = transport;
    ws->under = *transport;
    ws->protocol = protocol;
    ws->config = config;
    snprintf(ws->listener, sizeof(ws->listener), "%s", listener_name);
    ws->state = WS_HANDSHAKE;
    ws->deadline = evtimer_new(base, ws_on_deadline, ws);
    ws->flush = event_new(base, -1, 0, ws_on_flush, ws);
    ws->lower_drained = evbuffer_add_cb(ws_lower_output(ws), ws_on_lower_drained, ws);
    struct timeval timeout = {(time_t)(handshake_timeout_ms / 1000),
                              (suseconds_t)(handshake_timeout_ms % 1000) * 1000};
    if (!ws->deadline || !ws->flush || !ws->lower_drained ||
        evtimer_add(ws->deadline, &timeout) < 0)
        goto fail;
    /* Not BEV_OPT_CLOSE_ON_FREE: transport_ws_close closes the transport under. */
    struct bufferevent *filter =
        bufferevent_filter_new(ws->under.stream, ws_filter_in, ws_filter_out, 0, NULL, ws);
    if (!filter)
        goto fail;
    transport->stream = filter;
    transport->ws = ws;
    bool over_tls = ws->under.ops && strcmp(ws->under.ops->name, "tls") == 0;
    transport->ops = over_tls ? &transport_wss_ops : &transport_ws_ops;
    return 0;
fail:
    log_error(protocol, "%s: out of memory opening a WebSocket connection", transport->peer);
    if (ws) {
        if (ws->lower_drained)
            evbuffer_remove_cb_entry(ws_lower_output(ws), ws->lower_drained);
        if (ws->deadline)
            event_free(ws->deadline);
        if (ws->flush)
            event_free(ws->flush);
        free(ws);
    }
    transport_close(transport);
    return -1;
}

void transport_ws_close(struct transport *transport)
{
    struct transport_ws *ws = transport->ws;
    transport->ws = NULL;
    evbuffer_remove_cb_entry(ws_lower_output(ws), ws->lower_drained);
    event_free(ws->deadline);
    event_free(ws->flush);
    if (ws->wslay)
        wslay_event_context_free(ws->wslay);
    bufferevent_free(transport->stream); /* the filter */
    struct transport under = ws->under;
    free(ws);
    transport->stream = NULL;
    transport->ops = NULL;
    transport->fd = -1;
    transport_close(&under); /* the transport under: its bufferevent, the socket */
}
