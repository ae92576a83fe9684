/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_stomp_frame.c -- libFuzzer target for the STOMP frame codec
 * (adapters/stomp/stomp_frame.c), no sockets. The first input byte is the
 * "connection state":
 *   bits 0-1  version (0: 1.0, 1: 1.1, 2 and 3: 1.2)
 *   bits 2-4  chunking: 0 all at once, else 1, 2, 3, 7, 16, 64 or 251 bytes per read
 *   bit 5     tight limits (64-byte frames, 4 headers, 16-byte header lines)
 *   bit 6     negotiate: parse as 1.0 until the first frame, then switch to the
 *             version its accept-version negotiates (bits 0-1 when none does)
 *   bit 7     config reload: after the first frame swap to the other limits
 * The rest is fed through the parser twice, all at once and in chunks, and
 * the two runs must give the same frames, heart-beats and error. Each
 * frame's bytes, and the rest after the last one, must also parse the same
 * with a fresh parser (no state leaks between frames). Every frame is then
 * written with stomp_frame_write for the same version, parsed again
 * and compared, and written once more (the two writes must be identical).
 * Any mismatch aborts. Also built by `make check` with replay_main.c, which
 * runs this over tests/fuzz/corpus/stomp_frame without clang. */
#include "stomp_frame.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

static const struct stomp_limits normal_limits = {
    .max_frame_size = 65536,
    .max_headers = 64,
    .max_header_length = 1024,
};
static const struct stomp_limits tight_limits = {
    .max_frame_size = 64,
    .max_headers = 4,
    .max_header_length = 16,
};
/* The re-parse of a written frame: escaping may double it, so no limits. */
static const struct stomp_limits no_limits = {
    .max_frame_size = SIZE_MAX / 2,
    .max_headers = SIZE_MAX,
    .max_header_length = SIZE_MAX,
};

static const size_t chunk_sizes[8] = {0, 1, 2, 3, 7, 16, 64, 251};

/* What the parser was set to for one frame, and where the frame was. */
struct frame_info {
    enum stomp_version version;
    const struct stomp_limits *limits;
    size_t start, len; /* input bytes of the frame, heart-beats before it excluded */
};

/* What one run over the input produced. */
struct run {
    struct stomp_frame **frames;
    struct frame_info *info;
    size_t *heartbeats_before; /* heart-beats before frame i; [frame_count] = after the last */
    size_t frame_count;
    size_t capacity;
    enum stomp_parse_status final; /* NEED_MORE or ERROR */
    char err[256];
    size_t used;
    struct frame_info tail; /* settings for what follows the last frame */
};

struct setup {
    enum stomp_version version;
    size_t chunk;
    const struct stomp_limits *limits;
    const struct stomp_limits *reload_limits; /* NULL: none */
    bool negotiate;
};

static void run_free(struct run *run)
{
    for (size_t i = 0; i < run->frame_count; i++)
        stomp_frame_free(run->frames[i]);
    free(run->frames);
    free(run->info);
    free(run->heartbeats_before);
}

static void run_add_frame(struct run *run, struct stomp_frame *frame, struct frame_info info)
{
    if (run->frame_count + 1 >= run->capacity) {
        run->capacity *= 2;
        run->frames = realloc(run->frames, run->capacity * sizeof(*run->frames));
        run->info = realloc(run->info, run->capacity * sizeof(*run->info));
        run->heartbeats_before =
            realloc(run->heartbeats_before, run->capacity * sizeof(*run->heartbeats_before));
        FUZZ_CHECK(run->frames && run->info && run->heartbeats_before, "out of memory");
    }
    run->info[run->frame_count] = info;
    run->frames[run->frame_count++] = frame;
    run->heartbeats_before[run->frame_count] = 0;
}

/* The helpers the adapter applies to CONNECT headers must not crash and
 * must agree with themselves. */
static void check_helpers(const struct stomp_frame *frame)
{
    for (size_t i = 0; i < frame->header_count; i++) {
        const struct stomp_header *first = stomp_frame_header(frame, frame->headers[i].name);
        FUZZ_CHECK(first != NULL && first <= &frame->headers[i] &&
                       strcmp(first->name, frame->headers[i].name) == 0,
                   "stomp_frame_header did not find the first '%s'", frame->headers[i].name);
    }
    const char *accept = stomp_frame_header_value(frame, "accept-version");
    enum stomp_version version = STOMP_VERSION_1_0;
    if (stomp_version_negotiate(accept, &version) == 0)
        FUZZ_CHECK(version >= STOMP_VERSION_1_0 && version <= STOMP_VERSION_1_2 &&
                       (accept == NULL || version == STOMP_VERSION_1_0 ||
                        strstr(accept, stomp_version_name(version)) != NULL),
                   "negotiated %d from '%s'", (int)version, accept);
    const char *heartbeat = stomp_frame_header_value(frame, "heart-beat");
    uint32_t cx, cy;
    if (stomp_heartbeat_parse(heartbeat, &cx, &cy) == 0) {
        char text[32];
        uint32_t cx2, cy2;
        snprintf(text, sizeof(text), "%u,%u", (unsigned)cx, (unsigned)cy);
        FUZZ_CHECK(stomp_heartbeat_parse(text, &cx2, &cy2) == 0 && cx2 == cx && cy2 == cy,
                   "heart-beat '%s' read as %s", heartbeat, text);
    }
    (void)stomp_command_name(frame->command);
}

/* Feed input[0..len) through a new parser `chunk` bytes per read (0: all),
 * as the adapter does: unconsumed bytes are offered again with more appended.
 * Windows up to 512 bytes are copied to an exact-size buffer so that ASan
 * catches reads past what was offered. */
static void run_parser(const struct setup *setup, const char *input, size_t len, struct run *run)
{
    memset(run, 0, sizeof(*run));
    run->capacity = 8;
    run->frames = malloc(run->capacity * sizeof(*run->frames));
    run->info = malloc(run->capacity * sizeof(*run->info));
    run->heartbeats_before = calloc(run->capacity, sizeof(*run->heartbeats_before));
    FUZZ_CHECK(run->frames && run->info && run->heartbeats_before, "out of memory");

    struct stomp_parser *parser = stomp_parser_new(setup->limits);
    FUZZ_CHECK(parser != NULL, "out of memory");
    enum stomp_version version = setup->negotiate ? STOMP_VERSION_1_0 : setup->version;
    stomp_parser_set_version(parser, version);
    const struct stomp_limits *limits = setup->limits;
    size_t offered = setup->chunk == 0 || setup->chunk > len ? len : setup->chunk;
    for (;;) {
        size_t avail = offered - run->used;
        const char *window = input + run->used;
        char *copy = NULL;
        if (avail <= 512) {
            copy = malloc(avail ? avail : 1);
            FUZZ_CHECK(copy != NULL, "out of memory");
            memcpy(copy, window, avail);
            window = copy;
        }
        size_t consumed = 99;
        struct stomp_frame *frame = (struct stomp_frame *)1;
        enum stomp_parse_status status =
            stomp_parse(parser, window, avail, &consumed, &frame, run->err, sizeof(run->err));
        free(copy);
        FUZZ_CHECK(consumed <= avail, "consumed %zu of %zu", consumed, avail);
        run->used += consumed;
        if (status == STOMP_PARSE_HEARTBEAT) {
            FUZZ_CHECK(frame == NULL && (consumed == 1 || consumed == 2), "heart-beat of %zu",
                       consumed);
            run->heartbeats_before[run->frame_count]++;
        } else if (status == STOMP_PARSE_FRAME) {
            FUZZ_CHECK(frame != NULL && consumed > 0, "frame without bytes");
            FUZZ_CHECK(frame->body[frame->body_len] == '\0', "body not NUL-terminated");
            FUZZ_CHECK(strlen(frame->command_text) > 0, "empty command text");
            for (size_t i = 0; i < frame->header_count; i++) {
                const struct stomp_header *header = &frame->headers[i];
                FUZZ_CHECK(header->name[header->name_len] == '\0' &&
                               header->value[header->value_len] == '\0' && header->name_len > 0,
                           "header %zu malformed", i);
                FUZZ_CHECK(memchr(header->value, '\0', header->value_len) == NULL,
                           "NUL inside header value");
            }
            check_helpers(frame);
            struct frame_info info = {version, limits, run->used - consumed, consumed};
            run_add_frame(run, frame, info);
            if (run->frame_count == 1) {
                if (setup->negotiate) {
                    /* as the adapter does after CONNECT */
                    const char *accept = stomp_frame_header_value(frame, "accept-version");
                    if (accept == NULL || stomp_version_negotiate(accept, &version) != 0)
                        version = setup->version;
                    stomp_parser_set_version(parser, version);
                }
                if (setup->reload_limits) {
                    limits = setup->reload_limits;
                    stomp_parser_set_limits(parser, limits);
                }
            }
        } else if (status == STOMP_PARSE_NEED_MORE) {
            FUZZ_CHECK(consumed == 0 && frame == NULL, "need-more consumed %zu", consumed);
            if (offered == len) {
                run->final = status;
                break;
            }
            offered =
                setup->chunk == 0 || len - offered < setup->chunk ? len : offered + setup->chunk;
        } else {
            FUZZ_CHECK(status == STOMP_PARSE_ERROR, "status %d", (int)status);
            FUZZ_CHECK(consumed == 0 && frame == NULL && run->err[0] != '\0',
                       "error consumed %zu or has no reason", consumed);
            FUZZ_CHECK(strchr(run->err, '\n') == NULL, "error message spans lines: %s", run->err);
            /* the error is sticky */
            char again[256];
            FUZZ_CHECK(stomp_parse(parser, input, 0, &consumed, &frame, again, sizeof(again)) ==
                               STOMP_PARSE_ERROR &&
                           strcmp(again, run->err) == 0,
                       "error not sticky");
            run->final = status;
            break;
        }
    }
    run->tail = (struct frame_info){version, limits, run->used, len - run->used};
    stomp_parser_free(parser);
}

static bool same_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
    return a_len == b_len && memcmp(a, b, a_len) == 0;
}

static void check_same_frame(const struct stomp_frame *a, const struct stomp_frame *b)
{
    FUZZ_CHECK(a->command == b->command && strcmp(a->command_text, b->command_text) == 0,
               "command %s vs %s", a->command_text, b->command_text);
    FUZZ_CHECK(a->header_count == b->header_count, "%zu vs %zu headers", a->header_count,
               b->header_count);
    for (size_t i = 0; i < a->header_count; i++) {
        FUZZ_CHECK(same_bytes(a->headers[i].name, a->headers[i].name_len, b->headers[i].name,
                              b->headers[i].name_len) &&
                       same_bytes(a->headers[i].value, a->headers[i].value_len, b->headers[i].value,
                                  b->headers[i].value_len),
                   "header %zu differs", i);
    }
    FUZZ_CHECK(same_bytes(a->body, a->body_len, b->body, b->body_len), "body differs");
}

/* Parsing one frame's bytes with a fresh parser gives the same frame (no
 * state leaks from one frame into the next), and so does the rest after the
 * last frame give the same end. */
static void check_fresh_parser(const struct run *run, const char *input)
{
    char err[256];
    size_t consumed;
    struct stomp_frame *frame;
    for (size_t i = 0; i < run->frame_count; i++) {
        const struct frame_info *info = &run->info[i];
        struct stomp_parser *parser = stomp_parser_new(info->limits);
        FUZZ_CHECK(parser != NULL, "out of memory");
        stomp_parser_set_version(parser, info->version);
        enum stomp_parse_status status = stomp_parse(parser, input + info->start, info->len,
                                                     &consumed, &frame, err, sizeof(err));
        FUZZ_CHECK(status == STOMP_PARSE_FRAME && consumed == info->len,
                   "frame %zu alone: status %d, %zu of %zu bytes, '%s'", i, (int)status, consumed,
                   info->len, err);
        check_same_frame(run->frames[i], frame);
        stomp_frame_free(frame);
        stomp_parser_free(parser);
    }
    struct stomp_parser *parser = stomp_parser_new(run->tail.limits);
    FUZZ_CHECK(parser != NULL, "out of memory");
    stomp_parser_set_version(parser, run->tail.version);
    size_t used = run->tail.start;
    enum stomp_parse_status status;
    while ((status = stomp_parse(parser, input + used, run->tail.start + run->tail.len - used,
                                 &consumed, &frame, err, sizeof(err))) == STOMP_PARSE_HEARTBEAT)
        used += consumed;
    FUZZ_CHECK(status == run->final && strcmp(err, run->err) == 0,
               "tail alone: status %d '%s', in the stream %d '%s'", (int)status, err,
               (int)run->final, run->err);
    stomp_parser_free(parser);
}

static bool is_content_length(const struct stomp_header *header)
{
    return same_bytes(header->name, header->name_len, "content-length", 14);
}

static bool uses_escapes(enum stomp_command command, enum stomp_version version)
{
    return version != STOMP_VERSION_1_0 && command != STOMP_COMMAND_CONNECT &&
           command != STOMP_COMMAND_STOMP && command != STOMP_COMMAND_CONNECTED;
}

static char *write_frame(enum stomp_version version, enum stomp_command command,
                         const struct stomp_header *headers, size_t count,
                         const struct stomp_frame *frame, bool content_length, size_t *len)
{
    struct evbuffer *out = evbuffer_new();
    FUZZ_CHECK(out != NULL, "out of memory");
    FUZZ_CHECK(stomp_frame_write(out, version, command, headers, count, frame->body,
                                 frame->body_len, content_length) == 0,
               "write failed");
    *len = evbuffer_get_length(out);
    char *text = malloc(*len ? *len : 1);
    FUZZ_CHECK(text != NULL, "out of memory");
    evbuffer_remove(out, text, *len);
    evbuffer_free(out);
    return text;
}

/* Write `frame` for `version`, parse it back and compare. Unknown commands
 * are written as SEND (same escaping). content-length headers are the
 * writer's job, so they are dropped from the input and checked separately.
 * The one loss STOMP forces: without a \r escape, a value ending in CR is
 * read back with that CR taken as part of the CR LF line end. */
static void check_round_trip(const struct stomp_frame *frame, enum stomp_version version)
{
    enum stomp_command command =
        frame->command == STOMP_COMMAND_UNKNOWN ? STOMP_COMMAND_SEND : frame->command;
    bool escaped = uses_escapes(command, version);
    bool cr_escaped = escaped && version == STOMP_VERSION_1_2;

    struct stomp_header *headers = malloc((frame->header_count + 1) * sizeof(*headers));
    FUZZ_CHECK(headers != NULL, "out of memory");
    size_t count = 0;
    bool had_length = false;
    for (size_t i = 0; i < frame->header_count; i++) {
        if (is_content_length(&frame->headers[i]))
            had_length = true;
        else
            headers[count++] = frame->headers[i];
    }

    size_t len;
    char *text = write_frame(version, command, headers, count, frame, had_length, &len);

    struct stomp_parser *parser = stomp_parser_new(&no_limits);
    FUZZ_CHECK(parser != NULL, "out of memory");
    stomp_parser_set_version(parser, version);
    size_t consumed;
    struct stomp_frame *again = NULL;
    char err[256];
    enum stomp_parse_status status =
        stomp_parse(parser, text, len, &consumed, &again, err, sizeof(err));
    FUZZ_CHECK(status == STOMP_PARSE_FRAME, "written frame does not parse (status %d): %s",
               (int)status, err);
    FUZZ_CHECK(consumed == len, "written frame parsed as %zu of %zu bytes", consumed, len);
    stomp_parser_free(parser);

    bool lossy = false;
    FUZZ_CHECK(again->command == command, "command %d became %d", (int)command,
               (int)again->command);
    bool writes_length = frame->body_len > 0 || had_length;
    FUZZ_CHECK(again->header_count == count + (writes_length ? 1 : 0), "%zu headers became %zu",
               count, again->header_count);
    for (size_t i = 0; i < count; i++) {
        const struct stomp_header *want = &headers[i], *got = &again->headers[i];
        FUZZ_CHECK(same_bytes(want->name, want->name_len, got->name, got->name_len),
                   "header %zu name '%s' became '%s'", i, want->name, got->name);
        size_t want_len = want->value_len;
        if (!cr_escaped && want_len > 0 && want->value[want_len - 1] == '\r') {
            want_len--;
            lossy = true;
        }
        FUZZ_CHECK(same_bytes(want->value, want_len, got->value, got->value_len),
                   "header %zu ('%s') value '%s' became '%s'", i, want->name, want->value,
                   got->value);
    }
    if (writes_length) {
        char expected[32];
        snprintf(expected, sizeof(expected), "%zu", frame->body_len);
        const struct stomp_header *length = &again->headers[count];
        FUZZ_CHECK(is_content_length(length) && strcmp(length->value, expected) == 0,
                   "content-length header '%s:%s', body %zu", length->name, length->value,
                   frame->body_len);
    }
    FUZZ_CHECK(same_bytes(frame->body, frame->body_len, again->body, again->body_len),
               "body of %zu bytes became %zu bytes", frame->body_len, again->body_len);

    /* writing what was read back gives the same bytes (unless a CR was lost) */
    if (!lossy) {
        size_t len2;
        char *text2 =
            write_frame(version, command, again->headers, count, again, had_length, &len2);
        FUZZ_CHECK(same_bytes(text, len, text2, len2), "second write differs");
        free(text2);
    }

    stomp_frame_free(again);
    free(text);
    free(headers);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t state = data[0];
    struct setup setup = {
        .version = (state & 3) == 0   ? STOMP_VERSION_1_0
                   : (state & 3) == 1 ? STOMP_VERSION_1_1
                                      : STOMP_VERSION_1_2,
        .chunk = chunk_sizes[(state >> 2) & 7],
        .limits = (state & 0x20) ? &tight_limits : &normal_limits,
        .negotiate = (state & 0x40) != 0,
    };
    if (state & 0x80)
        setup.reload_limits = (state & 0x20) ? &normal_limits : &tight_limits;
    const char *input = (const char *)data + 1;
    size_t len = size - 1;

    struct run whole, chunked;
    struct setup whole_setup = setup;
    whole_setup.chunk = 0;
    run_parser(&whole_setup, input, len, &whole);
    run_parser(&setup, input, len, &chunked);

    FUZZ_CHECK(whole.frame_count == chunked.frame_count, "%zu frames at once, %zu in chunks of %zu",
               whole.frame_count, chunked.frame_count, setup.chunk);
    for (size_t i = 0; i <= whole.frame_count; i++)
        FUZZ_CHECK(whole.heartbeats_before[i] == chunked.heartbeats_before[i],
                   "heart-beats before frame %zu: %zu vs %zu", i, whole.heartbeats_before[i],
                   chunked.heartbeats_before[i]);
    for (size_t i = 0; i < whole.frame_count; i++)
        check_same_frame(whole.frames[i], chunked.frames[i]);
    FUZZ_CHECK(whole.final == chunked.final && strcmp(whole.err, chunked.err) == 0 &&
                   whole.used == chunked.used,
               "ends differ: %d '%s' vs %d '%s'", (int)whole.final, whole.err, (int)chunked.final,
               chunked.err);

    check_fresh_parser(&whole, input);
    for (size_t i = 0; i < whole.frame_count; i++) {
        FUZZ_CHECK(whole.info[i].version == chunked.info[i].version &&
                       whole.info[i].start == chunked.info[i].start,
                   "frame %zu parsed differently", i);
        check_round_trip(whole.frames[i], whole.info[i].version);
    }

    run_free(&whole);
    run_free(&chunked);
    return 0;
}
