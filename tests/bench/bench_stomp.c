/* SPDX-License-Identifier: Apache-2.0 */
/* bench_stomp.c -- kbridge-bench's STOMP 1.2 client: one non-blocking socket
 * per session, frames batched into an output buffer and parsed in place from
 * an input buffer. Works against kbridged, RabbitMQ and ActiveMQ (RabbitMQ's
 * prefetch-count and ActiveMQ's activemq.prefetchSize are both sent). */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STOMP_MAX_HEADERS 32
#define STOMP_OUT_HIGH (256 * 1024)
#define STOMP_CONNECT_TIMEOUT_MS 30000

struct stomp_client {
    int fd;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_cap;
};

struct stomp_frame {
    const char *command;
    const char *names[STOMP_MAX_HEADERS];
    const char *values[STOMP_MAX_HEADERS];
    int header_count;
    const char *body;
    size_t body_len;
};

typedef int (*stomp_frame_handler)(struct stomp_client *client, struct stomp_frame *frame,
                                   void *context);

static const char *frame_header(const struct stomp_frame *frame, const char *name)
{
    for (int i = 0; i < frame->header_count; i++)
        if (strcmp(frame->names[i], name) == 0)
            return frame->values[i];
    return NULL;
}

static int buffer_reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t grown = *cap ? *cap : 65536;
    while (grown < need)
        grown *= 2;
    char *p = realloc(*buf, grown);
    if (!p)
        return -1;
    *buf = p;
    *cap = grown;
    return 0;
}

static int append(struct stomp_client *client, const char *data, size_t len)
{
    if (buffer_reserve(&client->out, &client->out_cap, client->out_len + len) != 0)
        return -1;
    memcpy(client->out + client->out_len, data, len);
    client->out_len += len;
    return 0;
}

/* Append a frame: headers as a NULL-terminated name, value, name, value list. */
static int append_frame(struct stomp_client *client, const char *command,
                        const char *const *headers, const char *body, size_t body_len)
{
    char line[1024];
    if (append(client, command, strlen(command)) != 0 || append(client, "\n", 1) != 0)
        return -1;
    for (int i = 0; headers && headers[i]; i += 2) {
        int n = snprintf(line, sizeof(line), "%s:%s\n", headers[i], headers[i + 1]);
        if (n < 0 || (size_t)n >= sizeof(line) || append(client, line, (size_t)n) != 0)
            return -1;
    }
    if (body) {
        int n = snprintf(line, sizeof(line), "content-length:%zu\n", body_len);
        if (append(client, line, (size_t)n) != 0)
            return -1;
    }
    if (append(client, "\n", 1) != 0 || (body_len && append(client, body, body_len) != 0) ||
        append(client, "\0", 1) != 0)
        return -1;
    return 0;
}

/* Parse one frame at the start of the input buffer, in place. Returns its
 * length, 0 when incomplete, -1 when malformed. */
static long parse_frame(char *buf, size_t len, struct stomp_frame *frame)
{
    size_t pos = 0;
    frame->command = NULL; /* stays NULL for heart-beat EOLs */
    while (pos < len && (buf[pos] == '\n' || buf[pos] == '\r'))
        pos++; /* heart-beats */
    if (pos == len)
        return pos ? (long)pos : 0;
    char *headers_end = NULL;
    for (size_t i = pos; i + 1 < len; i++) {
        if (buf[i] == '\n' &&
            (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n'))) {
            headers_end = buf + i;
            break;
        }
    }
    if (!headers_end)
        return 0;
    size_t body_start = (size_t)(headers_end - buf) + (headers_end[1] == '\r' ? 3 : 2);
    /* content-length first: the body may contain NULs */
    long content_length = -1;
    const char *cl = NULL;
    for (char *p = buf + pos; p < headers_end; p++) {
        if ((p == buf + pos || p[-1] == '\n') && strncmp(p, "content-length:", 15) == 0) {
            cl = p + 15;
            break;
        }
    }
    if (cl)
        content_length = strtol(cl, NULL, 10);
    size_t body_len;
    if (content_length >= 0) {
        if (len < body_start + (size_t)content_length + 1)
            return 0;
        body_len = (size_t)content_length;
    } else {
        char *nul = memchr(buf + body_start, '\0', len - body_start);
        if (!nul)
            return 0;
        body_len = (size_t)(nul - (buf + body_start));
    }
    /* split the header lines in place */
    *headers_end = '\0';
    frame->header_count = 0;
    frame->command = buf + pos;
    char *line = buf + pos;
    char *next = strchr(line, '\n');
    if (next)
        *next = '\0';
    if (next && next > line && next[-1] == '\r')
        next[-1] = '\0';
    line = next ? next + 1 : NULL;
    while (line && *line) {
        next = strchr(line, '\n');
        if (next) {
            *next = '\0';
            if (next > line && next[-1] == '\r')
                next[-1] = '\0';
        }
        char *colon = strchr(line, ':');
        if (colon && frame->header_count < STOMP_MAX_HEADERS) {
            *colon = '\0';
            frame->names[frame->header_count] = line;
            frame->values[frame->header_count] = colon + 1;
            frame->header_count++;
        }
        line = next ? next + 1 : NULL;
    }
    frame->body = buf + body_start;
    frame->body_len = body_len;
    return (long)(body_start + body_len + 1);
}

/* Write what is buffered and read what has arrived, waiting up to timeout_ms
 * for either; every complete frame goes to handler. Returns 0, or -1 with
 * error set (connection closed, ERROR frame turned down by the handler). */
static int pump(struct stomp_client *client, int timeout_ms, stomp_frame_handler handler,
                void *context, char *error, size_t error_size)
{
    struct pollfd pfd = {.fd = client->fd, .events = POLLIN | (client->out_len ? POLLOUT : 0)};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready < 0 && errno != EINTR) {
        snprintf(error, error_size, "poll: %s", strerror(errno));
        return -1;
    }
    if (ready <= 0)
        return 0;
    if ((pfd.revents & POLLOUT) && client->out_len) {
        ssize_t n = write(client->fd, client->out, client->out_len);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(error, error_size, "write: %s", strerror(errno));
            return -1;
        }
        if (n > 0) {
            memmove(client->out, client->out + n, client->out_len - (size_t)n);
            client->out_len -= (size_t)n;
        }
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
        if (buffer_reserve(&client->in, &client->in_cap, client->in_len + 65536) != 0) {
            snprintf(error, error_size, "out of memory");
            return -1;
        }
        ssize_t n = read(client->fd, client->in + client->in_len, client->in_cap - client->in_len);
        if (n == 0) {
            snprintf(error, error_size, "the server closed the connection");
            return -1;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(error, error_size, "read: %s", strerror(errno));
            return -1;
        }
        if (n > 0)
            client->in_len += (size_t)n;
        size_t consumed = 0;
        for (;;) {
            struct stomp_frame frame;
            long used = parse_frame(client->in + consumed, client->in_len - consumed, &frame);
            if (used < 0) {
                snprintf(error, error_size, "malformed frame from the server");
                return -1;
            }
            if (used == 0)
                break;
            consumed += (size_t)used;
            if (frame.command && frame.command[0] && handler &&
                handler(client, &frame, context) != 0) {
                const char *message = frame_header(&frame, "message");
                snprintf(error, error_size, "%s: %s%s%.*s", frame.command,
                         message ? message : "(no message)", frame.body_len ? " -- " : "",
                         (int)(frame.body_len > 200 ? 200 : frame.body_len), frame.body);
                return -1;
            }
        }
        memmove(client->in, client->in + consumed, client->in_len - consumed);
        client->in_len -= consumed;
    }
    return 0;
}

static int connected_handler(struct stomp_client *client, struct stomp_frame *frame, void *context)
{
    (void)client;
    if (strcmp(frame->command, "CONNECTED") == 0) {
        *(int *)context = 1;
        return 0;
    }
    return -1;
}

static void client_close(struct stomp_client *client)
{
    if (client->fd >= 0)
        close(client->fd);
    client->fd = -1;
    free(client->in);
    free(client->out);
    client->in = client->out = NULL;
    client->in_len = client->out_len = client->in_cap = client->out_cap = 0;
}

/* Connect and log in; returns 0 or -1 with error set. */
static int client_open(struct stomp_client *client, const struct bench_options *options,
                       char *error, size_t error_size)
{
    memset(client, 0, sizeof(*client));
    client->fd = bench_tcp_connect(options->host, options->port, error, error_size);
    if (client->fd < 0)
        return -1;
    fcntl(client->fd, F_SETFL, fcntl(client->fd, F_GETFL) | O_NONBLOCK);
    const char *headers[] = {"accept-version",
                             "1.2",
                             "host",
                             "/",
                             "heart-beat",
                             "0,0",
                             options->user ? "login" : NULL,
                             options->user,
                             "passcode",
                             options->password ? options->password : "",
                             NULL};
    if (append_frame(client, "CONNECT", headers, NULL, 0) != 0) {
        snprintf(error, error_size, "out of memory");
        client_close(client);
        return -1;
    }
    int connected = 0;
    int64_t deadline = bench_now_ns() + (int64_t)STOMP_CONNECT_TIMEOUT_MS * 1000000;
    while (!connected) {
        if (pump(client, 100, connected_handler, &connected, error, error_size) != 0) {
            client_close(client);
            return -1;
        }
        if (!connected && bench_now_ns() > deadline) {
            snprintf(error, error_size, "no CONNECTED within %d ms", STOMP_CONNECT_TIMEOUT_MS);
            client_close(client);
            return -1;
        }
    }
    return 0;
}

/* Send DISCONNECT with a receipt and wait for it (every earlier frame is then
 * processed; kbridged also waits for Kafka to confirm every SEND). */
struct disconnect_wait {
    int done;
};

static int disconnect_handler(struct stomp_client *client, struct stomp_frame *frame, void *context)
{
    (void)client;
    if (strcmp(frame->command, "RECEIPT") == 0) {
        const char *id = frame_header(frame, "receipt-id");
        if (id && strcmp(id, "bye") == 0)
            ((struct disconnect_wait *)context)->done = 1;
        return 0;
    }
    return strcmp(frame->command, "ERROR") == 0 ? -1 : 0;
}

static int client_disconnect(struct stomp_client *client, char *error, size_t error_size)
{
    const char *headers[] = {"receipt", "bye", NULL};
    struct disconnect_wait wait = {0};
    if (append_frame(client, "DISCONNECT", headers, NULL, 0) != 0)
        return -1;
    int64_t deadline = bench_now_ns() + 60 * (int64_t)1000000000;
    while (!wait.done) {
        if (pump(client, 100, disconnect_handler, &wait, error, error_size) != 0)
            return -1;
        if (bench_now_ns() > deadline) {
            snprintf(error, error_size, "no RECEIPT for DISCONNECT within 60 s");
            return -1;
        }
    }
    return 0;
}

static void stomp_queue_address(char *buf, size_t buf_size, const char *queue)
{
    snprintf(buf, buf_size, "/queue/%s", queue);
}

/* ---- publish ------------------------------------------------------------------------------ */

struct publish_state {
    struct bench_session *session;
    uint64_t every; /* receipt on every Nth SEND; 0 = none */
};

static uint64_t receipt_block(const struct publish_state *state, uint64_t seq)
{
    uint64_t count = state->session->count;
    if ((seq + 1) % state->every == 0)
        return state->every;
    return count % state->every; /* the last, shorter block */
}

static int publish_handler(struct stomp_client *client, struct stomp_frame *frame, void *context)
{
    (void)client;
    struct publish_state *state = context;
    if (strcmp(frame->command, "RECEIPT") == 0) {
        const char *id = frame_header(frame, "receipt-id");
        if (id && id[0] == 'r')
            state->session->confirmed += receipt_block(state, strtoull(id + 1, NULL, 10));
        return 0;
    }
    if (strcmp(frame->command, "ERROR") == 0) {
        state->session->refused++;
        return -1;
    }
    return 0;
}

static int parse_confirm(const char *confirm, uint64_t *every)
{
    if (!confirm || strcmp(confirm, "each") == 0)
        *every = 1;
    else if (strcmp(confirm, "none") == 0)
        *every = 0;
    else if (strncmp(confirm, "every:", 6) == 0 && strtoull(confirm + 6, NULL, 10) > 0)
        *every = strtoull(confirm + 6, NULL, 10);
    else
        return -1;
    return 0;
}

/* Append one SEND of message seq; to is the destination, extra headers may be NULL. */
static int append_message(struct stomp_client *client, struct bench_session *session,
                          const char *to, uint64_t seq, const char *receipt,
                          const char *const *extra, char *body)
{
    const struct bench_options *options = session->options;
    char key[32];
    bench_message_format(options, session->tag, seq, body, key, sizeof(key));
    const char *headers[16] = {"destination", to, "persistent", "true", "kafka-key", key};
    int n = 6;
    for (int i = 0; extra && extra[i] && n < 12; i++)
        headers[n++] = extra[i];
    if (receipt) {
        headers[n++] = "receipt";
        headers[n++] = receipt;
    }
    headers[n] = NULL;
    return append_frame(client, "SEND", headers, body, options->size);
}

/* Open a connection for a session that sends bodies of options->size bytes:
 * *body is the caller's to free (client_close does not). */
static int client_open_sender(struct bench_session *session, struct stomp_client *client,
                              char **body)
{
    if (client_open(client, session->options, session->error, sizeof(session->error)) != 0)
        return -1;
    *body = malloc(session->options->size);
    if (!*body) {
        client_close(client);
        return bench_fail(session, "out of memory");
    }
    return 0;
}

static int stomp_publish(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    struct publish_state state = {.session = session};
    if (parse_confirm(options->confirm, &state.every) != 0)
        return bench_fail(session, "confirm '%s' is not each, every:N or none", options->confirm);
    struct stomp_client client;
    char *body;
    if (client_open_sender(session, &client, &body) != 0)
        return -1;
    int rc = 0;
    session->start_ns = bench_now_ns();
    uint64_t window = options->window > 0 ? (uint64_t)options->window : UINT64_MAX;
    while (state.every ? session->confirmed < session->count
                       : (session->sent < session->count || client.out_len)) {
        while (session->sent < session->count && client.out_len < STOMP_OUT_HIGH &&
               (state.every == 0 || session->sent - session->confirmed < window)) {
            if (session->rate > 0 &&
                bench_now_ns() <
                    session->start_ns + (int64_t)((double)session->sent * 1e9 / session->rate))
                break;
            char receipt[32];
            uint64_t index = session->sent;
            int wants =
                state.every && ((index + 1) % state.every == 0 || index + 1 == session->count);
            snprintf(receipt, sizeof(receipt), "r%" PRIu64, index);
            if (append_message(&client, session, session->destination, session->first_seq + index,
                               wants ? receipt : NULL, NULL, body) != 0) {
                rc = bench_fail(session, "out of memory");
                break;
            }
            session->sent++;
        }
        if (rc != 0)
            break;
        int timeout = client.out_len ? 100 : (session->rate > 0 ? 1 : 100);
        if (pump(&client, timeout, publish_handler, &state, session->error,
                 sizeof(session->error)) != 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && state.every == 0) {
        /* no receipts: kbridged answers DISCONNECT's receipt only once Kafka
         * confirmed every SEND of the connection */
        if (client_disconnect(&client, session->error, sizeof(session->error)) != 0)
            rc = -1;
        else
            session->confirmed = session->sent;
    }
    session->end_ns = bench_now_ns();
    free(body);
    client_close(&client);
    return rc;
}

/* ---- consume ------------------------------------------------------------------------------ */

struct consume_state {
    struct bench_session *session;
    int ack;
    int64_t last_ns;
};

static int consume_handler(struct stomp_client *client, struct stomp_frame *frame, void *context)
{
    struct consume_state *state = context;
    if (strcmp(frame->command, "MESSAGE") == 0) {
        const char *redelivered = frame_header(frame, "redelivered");
        state->last_ns = bench_now_ns();
        bench_tracker_record(state->session->tracker, frame->body, frame->body_len,
                             redelivered && strcmp(redelivered, "true") == 0, state->last_ns);
        const char *ack = frame_header(frame, "ack");
        if (state->ack && ack) {
            const char *headers[] = {"id", ack, NULL};
            if (append_frame(client, "ACK", headers, NULL, 0) != 0)
                return -1;
        }
        return 0;
    }
    return strcmp(frame->command, "ERROR") == 0 ? -1 : 0;
}

/* Wait for messages until the tracker has them all, the stop flag is set or
 * nothing came for the idle timeout. */
static int receive_loop(struct stomp_client *client, struct bench_session *session,
                        stomp_frame_handler handler, void *context, int64_t *last_ns)
{
    const struct bench_options *options = session->options;
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    for (;;) {
        if (session->tracker && session->tracker->unique >= session->tracker->expected)
            return 0;
        if (session->stop && *session->stop)
            return 0;
        if (pump(client, 50, handler, context, session->error, sizeof(session->error)) != 0)
            return -1;
        if (bench_now_ns() - *last_ns > idle_ns) {
            if (session->stop)
                continue; /* a responder waits for its stop flag */
            return 0;     /* quiet: the tracker reports what is missing */
        }
    }
}

static int stomp_consume(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    struct stomp_client client;
    if (client_open(&client, options, session->error, sizeof(session->error)) != 0)
        return -1;
    char prefetch[32];
    snprintf(prefetch, sizeof(prefetch), "%d", options->prefetch);
    const char *headers[] = {"id",
                             "1",
                             "destination",
                             session->destination,
                             "ack",
                             "client-individual",
                             "prefetch-count",
                             prefetch,
                             "activemq.prefetchSize",
                             prefetch,
                             NULL};
    struct consume_state state = {.session = session, .ack = 1, .last_ns = bench_now_ns()};
    int rc = append_frame(&client, "SUBSCRIBE", headers, NULL, 0);
    session->start_ns = bench_now_ns();
    if (rc == 0)
        rc = receive_loop(&client, session, consume_handler, &state, &state.last_ns);
    session->end_ns = state.last_ns;
    /* the DISCONNECT receipt proves every ACK was processed */
    if (rc == 0 && client_disconnect(&client, session->error, sizeof(session->error)) != 0)
        rc = -1;
    client_close(&client);
    return rc;
}

/* ---- request-reply ------------------------------------------------------------------------ */

/* The responder's and the requester's state: whose session, last traffic. */
struct rpc_state {
    struct bench_session *session;
    int64_t last_ns;
};

static int respond_handler(struct stomp_client *client, struct stomp_frame *frame, void *context)
{
    struct rpc_state *state = context;
    if (strcmp(frame->command, "MESSAGE") == 0) {
        state->last_ns = bench_now_ns();
        const char *reply_to = frame_header(frame, "reply-to");
        const char *correlation = frame_header(frame, "correlation-id");
        if (!reply_to)
            return 0;
        const char *headers[] = {"destination", reply_to, "correlation-id",
                                 correlation ? correlation : "", NULL};
        state->session->sent++;
        return append_frame(client, "SEND", headers, frame->body, frame->body_len);
    }
    return strcmp(frame->command, "ERROR") == 0 ? -1 : 0;
}

static int stomp_respond(struct bench_session *session)
{
    struct stomp_client client;
    if (client_open(&client, session->options, session->error, sizeof(session->error)) != 0)
        return -1;
    const char *headers[] = {"id", "1", "destination", session->destination, "ack", "auto", NULL};
    struct rpc_state state = {.session = session, .last_ns = bench_now_ns()};
    int rc = append_frame(&client, "SUBSCRIBE", headers, NULL, 0);
    if (rc == 0)
        rc = receive_loop(&client, session, respond_handler, &state, &state.last_ns);
    client_close(&client);
    return rc;
}

static int request_handler(struct stomp_client *client, struct stomp_frame *frame, void *context)
{
    (void)client;
    struct rpc_state *state = context;
    if (strcmp(frame->command, "MESSAGE") == 0) {
        state->last_ns = bench_now_ns();
        bench_tracker_record(state->session->tracker, frame->body, frame->body_len, 0,
                             state->last_ns);
        return 0;
    }
    return strcmp(frame->command, "ERROR") == 0 ? -1 : 0;
}

static int stomp_request(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    struct stomp_client client;
    char *body;
    if (client_open_sender(session, &client, &body) != 0)
        return -1;
    struct rpc_state state = {.session = session, .last_ns = bench_now_ns()};
    struct bench_tracker *tracker = session->tracker;
    uint64_t window = options->window > 0 ? (uint64_t)options->window : 1;
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    int rc = 0;
    session->start_ns = bench_now_ns();
    while (tracker->unique < session->count) {
        while (session->sent < session->count && session->sent - tracker->unique < window) {
            char correlation[32];
            snprintf(correlation, sizeof(correlation), "c%" PRIu64, session->sent);
            const char *extra[] = {"reply-to", "/temp-queue/bench", "correlation-id", correlation,
                                   NULL};
            if (append_message(&client, session, session->destination, session->sent, NULL, extra,
                               body) != 0) {
                rc = bench_fail(session, "out of memory");
                break;
            }
            session->sent++;
        }
        if (rc != 0)
            break;
        if (pump(&client, 50, request_handler, &state, session->error, sizeof(session->error)) !=
            0) {
            rc = -1;
            break;
        }
        if (bench_now_ns() - state.last_ns > idle_ns)
            break; /* replies stopped: the tracker reports what is missing */
    }
    session->end_ns = state.last_ns;
    session->confirmed = tracker->unique;
    free(body);
    client_close(&client);
    return rc;
}

/* ---- idle connections --------------------------------------------------------------------- */

static int stomp_open_idle(const struct bench_options *options, int count, int **fds, char *error,
                           size_t error_size)
{
    *fds = calloc((size_t)count, sizeof(int));
    if (!*fds) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < count; i++) {
        struct stomp_client client;
        if (client_open(&client, options, error, error_size) != 0) {
            for (int j = 0; j < i; j++)
                close((*fds)[j]);
            free(*fds);
            *fds = NULL;
            size_t used = strlen(error);
            snprintf(error + used, error_size - used, " (connection %d)", i + 1);
            return -1;
        }
        (*fds)[i] = client.fd;
        client.fd = -1;
        client_close(&client);
    }
    return 0;
}

const struct bench_protocol bench_stomp = {
    .name = "stomp",
    .queue_address = stomp_queue_address,
    .publish = stomp_publish,
    .consume = stomp_consume,
    .respond = stomp_respond,
    .request = stomp_request,
    .open_idle = stomp_open_idle,
};
