/* SPDX-License-Identifier: Apache-2.0 */
/* check_stomp_frame.c -- unit tests of the STOMP frame codec (stomp_frame.c):
 * one test per parser, serializer and helper rule, plus every case of
 * tests/stomp/frames.json (frames as data), read with the small JSON reader
 * at the end of this file. */
#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stomp_frame.h"

#define FRAMES_JSON TEST_DATA_DIR "/../../stomp/frames.json"

static const struct stomp_limits default_limits = {
    .max_frame_size = 1048576,
    .max_headers = 64,
    .max_header_length = 4096,
};

static const enum stomp_version all_versions[] = {STOMP_VERSION_1_0, STOMP_VERSION_1_1,
                                                  STOMP_VERSION_1_2};

/* ------------------------------------------------------------------------
 * Driving the parser the way the adapter does
 * ------------------------------------------------------------------------ */

struct parse_result {
    enum stomp_parse_status status; /* FRAME, NEED_MORE or ERROR */
    struct stomp_frame *frame;
    char err[256];
    size_t used;       /* bytes consumed in all: heart-beats and the frame */
    size_t heartbeats; /* heart-beats skipped before the frame */
    size_t offered;    /* bytes made available when the result came */
};

/* Feed input[0..len) `chunk` bytes at a time (0: all at once) until the
 * first frame or error, skipping heart-beats, like a socket read loop. Small
 * inputs are copied to an exact-size buffer at every call so that valgrind
 * and ASan see any read past what was offered. (The contract checks inside
 * the loop are plain ifs: ck_assert in a loop of a million calls is slow.) */
static struct parse_result feed(struct stomp_parser *parser, const char *input, size_t len,
                                size_t chunk)
{
    struct parse_result result = {0};
    size_t offered = chunk == 0 || chunk > len ? len : chunk;
    const char *broken = NULL;
    for (;;) {
        size_t consumed = 0;
        size_t avail = offered - result.used;
        char *copy = NULL;
        const char *data = input + result.used;
        if (len <= 4096) {
            copy = malloc(avail ? avail : 1);
            memcpy(copy, data, avail);
            data = copy;
        }
        result.status = stomp_parse(parser, data, avail, &consumed, &result.frame, result.err,
                                    sizeof(result.err));
        free(copy);
        if (consumed > avail)
            broken = "consumed more than offered";
        result.used += consumed;
        result.offered = offered;
        if (result.status == STOMP_PARSE_HEARTBEAT) {
            if (result.frame != NULL || consumed == 0 || consumed > 2)
                broken = "heart-beat with a frame or a bad length";
            result.heartbeats++;
        } else if (result.status == STOMP_PARSE_NEED_MORE) {
            if (consumed != 0 || result.frame != NULL)
                broken = "need-more consumed bytes";
            if (offered == len)
                break;
            offered = chunk == 0 || len - offered < chunk ? len : offered + chunk;
        } else if (result.status == STOMP_PARSE_ERROR) {
            if (consumed != 0 || result.frame != NULL || result.err[0] == '\0')
                broken = "error consumed bytes, returned a frame or gave no reason";
            break;
        } else {
            if (result.frame == NULL || consumed == 0)
                broken = "frame status without a frame";
            break;
        }
        if (broken)
            break;
    }
    ck_assert_msg(broken == NULL, "parser contract: %s", broken);
    return result;
}

/* Parse one frame from `input` (NUL-terminated C string unless len given). */
static struct parse_result parse_with(enum stomp_version version, const struct stomp_limits *limits,
                                      const char *input, size_t len, size_t chunk)
{
    struct stomp_parser *parser = stomp_parser_new(limits);
    ck_assert_ptr_nonnull(parser);
    stomp_parser_set_version(parser, version);
    struct parse_result result = feed(parser, input, len, chunk);
    stomp_parser_free(parser);
    return result;
}

static struct parse_result parse_text(enum stomp_version version, const char *input)
{
    /* every frame in these tests ends with an explicit NUL: length + 1 */
    return parse_with(version, &default_limits, input, strlen(input) + 1, 0);
}

static struct stomp_frame *parse_ok(enum stomp_version version, const char *input)
{
    struct parse_result result = parse_text(version, input);
    ck_assert_msg(result.status == STOMP_PARSE_FRAME, "status %d, error '%s'", result.status,
                  result.err);
    ck_assert_uint_eq(result.used, strlen(input) + 1);
    return result.frame;
}

static void expect_error(enum stomp_version version, const struct stomp_limits *limits,
                         const char *input, size_t len, const char *message)
{
    for (size_t chunk = 0; chunk <= 1; chunk++) {
        struct parse_result result = parse_with(version, limits, input, len, chunk);
        ck_assert_msg(result.status == STOMP_PARSE_ERROR, "expected error '%s', got status %d",
                      message, result.status);
        ck_assert_msg(strstr(result.err, message) != NULL, "error '%s' lacks '%s'", result.err,
                      message);
    }
}

static void expect_header(const struct stomp_frame *frame, size_t index, const char *name,
                          const char *value)
{
    ck_assert_uint_lt(index, frame->header_count);
    const struct stomp_header *header = &frame->headers[index];
    ck_assert_uint_eq(header->name_len, strlen(name));
    ck_assert_uint_eq(header->value_len, strlen(value));
    ck_assert_str_eq(header->name, name);
    ck_assert_str_eq(header->value, value);
}

/* Two frames are the same: command, headers in order, body. */
static void expect_same_frame(const struct stomp_frame *a, const struct stomp_frame *b)
{
    ck_assert_int_eq(a->command, b->command);
    ck_assert_str_eq(a->command_text, b->command_text);
    ck_assert_uint_eq(a->header_count, b->header_count);
    for (size_t i = 0; i < a->header_count; i++) {
        ck_assert_uint_eq(a->headers[i].name_len, b->headers[i].name_len);
        ck_assert_uint_eq(a->headers[i].value_len, b->headers[i].value_len);
        ck_assert(memcmp(a->headers[i].name, b->headers[i].name, a->headers[i].name_len) == 0);
        ck_assert(memcmp(a->headers[i].value, b->headers[i].value, a->headers[i].value_len) == 0);
    }
    ck_assert_uint_eq(a->body_len, b->body_len);
    ck_assert(memcmp(a->body, b->body, a->body_len) == 0);
}

static char *drain(struct evbuffer *buffer, size_t *len)
{
    *len = evbuffer_get_length(buffer);
    char *text = malloc(*len + 1);
    evbuffer_remove(buffer, text, *len);
    text[*len] = '\0';
    return text;
}

/* ------------------------------------------------------------------------
 * Commands and line endings
 * ------------------------------------------------------------------------ */

START_TEST(each_command_parses)
{
    for (int command = STOMP_COMMAND_CONNECT; command <= STOMP_COMMAND_ERROR; command++) {
        char input[128];
        snprintf(input, sizeof(input), "%s\nk:v\n\nbody", stomp_command_name(command));
        struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_2, input);
        ck_assert_int_eq(frame->command, command);
        ck_assert_str_eq(frame->command_text, stomp_command_name(command));
        ck_assert_uint_eq(frame->header_count, 1);
        expect_header(frame, 0, "k", "v");
        ck_assert_str_eq(frame->body, "body");
        ck_assert_uint_eq(frame->body_len, 4);
        stomp_frame_free(frame);
    }
}
END_TEST

START_TEST(command_names_round_trip_and_are_case_sensitive)
{
    for (int command = STOMP_COMMAND_CONNECT; command <= STOMP_COMMAND_ERROR; command++) {
        const char *name = stomp_command_name(command);
        ck_assert_int_eq(stomp_command_parse(name, strlen(name)), command);
    }
    ck_assert_int_eq(stomp_command_parse("send", 4), STOMP_COMMAND_UNKNOWN);
    ck_assert_int_eq(stomp_command_parse("SENDX", 5), STOMP_COMMAND_UNKNOWN);
    ck_assert_int_eq(stomp_command_parse("SEN", 3), STOMP_COMMAND_UNKNOWN);
    ck_assert_int_eq(stomp_command_parse("", 0), STOMP_COMMAND_UNKNOWN);
    ck_assert_str_eq(stomp_command_name(STOMP_COMMAND_UNKNOWN), "UNKNOWN");
    ck_assert_str_eq(stomp_command_name((enum stomp_command)99), "UNKNOWN");
}
END_TEST

START_TEST(unknown_command_keeps_its_text)
{
    struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_2, "subscribe\nid:1\n\n");
    ck_assert_int_eq(frame->command, STOMP_COMMAND_UNKNOWN);
    ck_assert_str_eq(frame->command_text, "subscribe");
    expect_header(frame, 0, "id", "1");
    stomp_frame_free(frame);
}
END_TEST

START_TEST(lf_and_crlf_line_endings_in_every_version)
{
    for (size_t v = 0; v < 3; v++) {
        struct stomp_frame *lf = parse_ok(all_versions[v], "SEND\ndestination:/q\nx:y\n\nhi");
        struct stomp_frame *crlf =
            parse_ok(all_versions[v], "SEND\r\ndestination:/q\r\nx:y\r\n\r\nhi");
        expect_same_frame(lf, crlf);
        ck_assert_int_eq(crlf->command, STOMP_COMMAND_SEND);
        expect_header(crlf, 0, "destination", "/q");
        expect_header(crlf, 1, "x", "y");
        ck_assert_str_eq(crlf->body, "hi");
        stomp_frame_free(lf);
        stomp_frame_free(crlf);
    }
}
END_TEST

START_TEST(only_one_cr_is_stripped)
{
    struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_0, "SEND\nx:a\r\r\n\n");
    expect_header(frame, 0, "x", "a\r");
    stomp_frame_free(frame);
}
END_TEST

/* ------------------------------------------------------------------------
 * Headers and escapes
 * ------------------------------------------------------------------------ */

START_TEST(repeated_headers_are_all_kept_and_first_wins)
{
    struct stomp_frame *frame =
        parse_ok(STOMP_VERSION_1_2, "MESSAGE\nfoo:World\nbar:1\nfoo:Hello\n\n");
    ck_assert_uint_eq(frame->header_count, 3);
    expect_header(frame, 0, "foo", "World");
    expect_header(frame, 2, "foo", "Hello");
    const struct stomp_header *foo = stomp_frame_header(frame, "foo");
    ck_assert_ptr_eq(foo, &frame->headers[0]);
    ck_assert_str_eq(stomp_frame_header_value(frame, "foo"), "World");
    ck_assert_str_eq(stomp_frame_header_value(frame, "bar"), "1");
    ck_assert_ptr_null(stomp_frame_header(frame, "Foo"));
    ck_assert_ptr_null(stomp_frame_header_value(frame, "fo"));
    stomp_frame_free(frame);
}
END_TEST

START_TEST(empty_value_is_allowed)
{
    struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_2, "SEND\nname:\n\n");
    expect_header(frame, 0, "name", "");
    stomp_frame_free(frame);
}
END_TEST

START_TEST(escapes_are_left_alone_in_1_0)
{
    struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_0, "SEND\na\\cb:c\\n\\t\\r\\\n\n");
    expect_header(frame, 0, "a\\cb", "c\\n\\t\\r\\");
    stomp_frame_free(frame);
}
END_TEST

START_TEST(escapes_are_decoded_in_1_1)
{
    struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_1, "SEND\na\\cb\\\\:x\\ny\\cz\\\\\n\n");
    expect_header(frame, 0, "a:b\\", "x\ny:z\\");
    stomp_frame_free(frame);
}
END_TEST

START_TEST(escape_r_is_rejected_in_1_1)
{
    const char *input = "SEND\ndestination:a\\rb\n\n";
    expect_error(STOMP_VERSION_1_1, &default_limits, input, strlen(input) + 1,
                 "invalid escape \\r in header 'destination'");
}
END_TEST

START_TEST(escape_r_is_decoded_in_1_2)
{
    struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_2, "SEND\nk\\r:a\\rb\\n\\c\\\\\n\n");
    expect_header(frame, 0, "k\r", "a\rb\n:\\");
    stomp_frame_free(frame);
}
END_TEST

START_TEST(undefined_escapes_are_errors)
{
    const char *tab = "SEND\ndestination:a\\tb\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, tab, strlen(tab) + 1,
                 "invalid escape \\t in header 'destination'");
    expect_error(STOMP_VERSION_1_1, &default_limits, tab, strlen(tab) + 1,
                 "invalid escape \\t in header 'destination'");
    const char *trailing = "SEND\ndestination:a\\\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, trailing, strlen(trailing) + 1,
                 "invalid escape: '\\' at the end of header 'destination'");
    const char *in_name = "SEND\nde\\st:a\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, in_name, strlen(in_name) + 1,
                 "invalid escape \\s in header 'de\\st'");
    const char *name_end = "SEND\ndest\\:a\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, name_end, strlen(name_end) + 1,
                 "at the end of header 'dest\\'");
    const char control[] = "SEND\nx:\\\x01\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, control, sizeof(control),
                 "invalid escape \\x01 in header 'x'");
}
END_TEST

START_TEST(connect_frames_are_never_unescaped)
{
    static const char *const commands[] = {"CONNECT", "STOMP", "CONNECTED"};
    for (size_t v = 0; v < 3; v++) {
        for (size_t c = 0; c < 3; c++) {
            char input[128];
            snprintf(input, sizeof(input), "%s\nlogin:a\\cb\\t\\\npasscode:p:q\n\n", commands[c]);
            struct stomp_frame *frame = parse_ok(all_versions[v], input);
            expect_header(frame, 0, "login", "a\\cb\\t\\");
            expect_header(frame, 1, "passcode", "p:q");
            stomp_frame_free(frame);
        }
    }
}
END_TEST

START_TEST(version_change_applies_to_the_next_frame)
{
    struct stomp_parser *parser = stomp_parser_new(&default_limits);
    const char *input = "SEND\nk:a\\tb\n\n";
    struct parse_result result = feed(parser, input, strlen(input) + 1, 0);
    ck_assert_int_eq(result.status, STOMP_PARSE_FRAME); /* 1.0 until negotiated */
    expect_header(result.frame, 0, "k", "a\\tb");
    stomp_frame_free(result.frame);
    stomp_parser_set_version(parser, STOMP_VERSION_1_2);
    result = feed(parser, input, strlen(input) + 1, 0);
    ck_assert_int_eq(result.status, STOMP_PARSE_ERROR);
    stomp_parser_free(parser);
}
END_TEST

/* ------------------------------------------------------------------------
 * Body
 * ------------------------------------------------------------------------ */

START_TEST(content_length_body_may_contain_nuls)
{
    static const char input[] = "SEND\ncontent-length:5\ndestination:/q\n\na\0b\0c\0";
    struct parse_result result =
        parse_with(STOMP_VERSION_1_2, &default_limits, input, sizeof(input) - 1, 0);
    ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
    ck_assert_uint_eq(result.used, sizeof(input) - 1);
    ck_assert_uint_eq(result.frame->body_len, 5);
    ck_assert(memcmp(result.frame->body, "a\0b\0c", 6) == 0); /* NUL-terminated too */
    expect_header(result.frame, 0, "content-length", "5");
    stomp_frame_free(result.frame);
}
END_TEST

START_TEST(body_without_content_length_ends_at_first_nul)
{
    static const char input[] = "SEND\n\nabc\0def\0";
    struct parse_result result =
        parse_with(STOMP_VERSION_1_2, &default_limits, input, sizeof(input) - 1, 0);
    ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
    ck_assert_uint_eq(result.used, 10);
    ck_assert_str_eq(result.frame->body, "abc");
    ck_assert_uint_eq(result.frame->body_len, 3);
    stomp_frame_free(result.frame);
}
END_TEST

START_TEST(empty_body_and_content_length_zero)
{
    struct stomp_frame *frame = parse_ok(STOMP_VERSION_1_2, "SEND\n\n");
    ck_assert_uint_eq(frame->body_len, 0);
    ck_assert_str_eq(frame->body, "");
    ck_assert_uint_eq(frame->header_count, 0);
    stomp_frame_free(frame);
    frame = parse_ok(STOMP_VERSION_1_2, "SEND\ncontent-length:0\n\n");
    ck_assert_uint_eq(frame->body_len, 0);
    stomp_frame_free(frame);
}
END_TEST

/* ------------------------------------------------------------------------
 * Streaming
 * ------------------------------------------------------------------------ */

static const char *const streaming_samples[] = {
    "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello",
    "SEND\r\ndestination:/q\r\n\r\nhello\r\n",
    "MESSAGE\nk\\c:v\\n\\\\\ncontent-length:3\n\nx\ry",
    "\n\r\n\nCONNECT\naccept-version:1.2\n\n",
    "\r\n\r\nSUBSCRIBE\nid:1\n\n",
};

START_TEST(split_at_every_byte_boundary_gives_the_same_frame)
{
    for (size_t s = 0; s < sizeof(streaming_samples) / sizeof(streaming_samples[0]); s++) {
        const char *input = streaming_samples[s];
        size_t len = strlen(input) + 1;
        struct parse_result whole = parse_with(STOMP_VERSION_1_2, &default_limits, input, len, 0);
        ck_assert_int_eq(whole.status, STOMP_PARSE_FRAME);
        ck_assert_uint_eq(whole.used, len);
        for (size_t chunk = 1; chunk <= len; chunk++) {
            struct parse_result split =
                parse_with(STOMP_VERSION_1_2, &default_limits, input, len, chunk);
            ck_assert_int_eq(split.status, STOMP_PARSE_FRAME);
            ck_assert_uint_eq(split.used, len);
            ck_assert_uint_eq(split.heartbeats, whole.heartbeats);
            expect_same_frame(whole.frame, split.frame);
            stomp_frame_free(split.frame);
        }
        /* two pieces, split at every point */
        for (size_t cut = 0; cut <= len; cut++) {
            struct stomp_parser *parser = stomp_parser_new(&default_limits);
            stomp_parser_set_version(parser, STOMP_VERSION_1_2);
            size_t used = 0, consumed;
            struct stomp_frame *frame = NULL;
            char err[128];
            enum stomp_parse_status status;
            size_t offered = cut;
            for (;;) {
                status = stomp_parse(parser, input + used, offered - used, &consumed, &frame, err,
                                     sizeof(err));
                used += consumed;
                if (status == STOMP_PARSE_HEARTBEAT)
                    continue;
                if (status == STOMP_PARSE_NEED_MORE && offered < len) {
                    offered = len;
                    continue;
                }
                break;
            }
            ck_assert_int_eq(status, STOMP_PARSE_FRAME);
            ck_assert_uint_eq(used, len);
            expect_same_frame(whole.frame, frame);
            stomp_frame_free(frame);
            stomp_parser_free(parser);
        }
        stomp_frame_free(whole.frame);
    }
}
END_TEST

START_TEST(two_frames_in_one_buffer)
{
    static const char input[] = "SEND\ndestination:/a\n\none\0SEND\ncontent-length:3\n\ntwo\0";
    struct stomp_parser *parser = stomp_parser_new(&default_limits);
    size_t consumed;
    struct stomp_frame *frame;
    char err[128];
    size_t len = sizeof(input) - 1;
    ck_assert_int_eq(stomp_parse(parser, input, len, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_FRAME);
    ck_assert_str_eq(frame->body, "one");
    ck_assert_uint_eq(consumed, strlen("SEND\ndestination:/a\n\none") + 1);
    stomp_frame_free(frame);
    size_t first = consumed;
    ck_assert_int_eq(
        stomp_parse(parser, input + first, len - first, &consumed, &frame, err, sizeof(err)),
        STOMP_PARSE_FRAME);
    ck_assert_str_eq(frame->body, "two");
    ck_assert_uint_eq(first + consumed, len);
    stomp_frame_free(frame);
    ck_assert_int_eq(stomp_parse(parser, input + len, 0, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_NEED_MORE);
    stomp_parser_free(parser);
}
END_TEST

START_TEST(heartbeats_between_frames)
{
    static const char input[] = "\nSEND\n\na\0\n\r\n\nSEND\n\nb\0\r\n";
    struct stomp_parser *parser = stomp_parser_new(&default_limits);
    size_t used = 0, consumed, heartbeats = 0, frames = 0;
    struct stomp_frame *frame;
    char err[128];
    size_t len = sizeof(input) - 1;
    for (;;) {
        enum stomp_parse_status status =
            stomp_parse(parser, input + used, len - used, &consumed, &frame, err, sizeof(err));
        used += consumed;
        if (status == STOMP_PARSE_HEARTBEAT) {
            ck_assert(consumed == 1 || consumed == 2);
            heartbeats++;
        } else if (status == STOMP_PARSE_FRAME) {
            ck_assert_uint_eq(frame->body_len, 1);
            ck_assert_int_eq(frame->body[0], frames == 0 ? 'a' : 'b');
            stomp_frame_free(frame);
            frames++;
        } else {
            ck_assert_int_eq(status, STOMP_PARSE_NEED_MORE);
            break;
        }
    }
    ck_assert_uint_eq(used, len);
    ck_assert_uint_eq(frames, 2);
    ck_assert_uint_eq(heartbeats, 5);
    /* a lone CR waits for its LF */
    ck_assert_int_eq(stomp_parse(parser, "\r", 1, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_NEED_MORE);
    ck_assert_uint_eq(consumed, 0);
    ck_assert_int_eq(stomp_parse(parser, "\r\n", 2, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_HEARTBEAT);
    ck_assert_uint_eq(consumed, 2);
    stomp_parser_free(parser);
}
END_TEST

/* A 4 MiB frame delivered one byte per call is scanned in linear time
 * (~20 ms). Rescanning from the frame start at each call would take about a
 * minute even with memchr, and the "linear" test case times out at 20 s
 * (scaled by CK_TIMEOUT_MULTIPLIER under valgrind). Covers the NUL search,
 * the content-length wait and the header line scan. */
START_TEST(four_mib_frame_one_byte_at_a_time_is_linear)
{
    const size_t big = 4 * 1024 * 1024;
    for (int shape = 0; shape < 3; shape++) {
        char head[64];
        int head_len = shape == 0 ? snprintf(head, sizeof(head), "SEND\n\n")
                       : shape == 1
                           ? snprintf(head, sizeof(head), "SEND\ncontent-length:%zu\n\n", big)
                           : snprintf(head, sizeof(head), "SEND\nk:");
        const char *tail = shape == 2 ? "\n\n" : "";
        size_t len = (size_t)head_len + big + strlen(tail) + 1;
        char *input = malloc(len);
        memcpy(input, head, (size_t)head_len);
        memset(input + head_len, 'x', big);
        memcpy(input + head_len + big, tail, strlen(tail));
        input[len - 1] = '\0';
        struct stomp_limits limits = default_limits;
        limits.max_frame_size = 2 * big;
        limits.max_header_length = 2 * big;
        struct parse_result result = parse_with(STOMP_VERSION_1_2, &limits, input, len, 1);
        ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
        ck_assert_uint_eq(result.used, len);
        if (shape == 2)
            ck_assert_uint_eq(result.frame->headers[0].value_len, big);
        else
            ck_assert_uint_eq(result.frame->body_len, big);
        stomp_frame_free(result.frame);
        free(input);
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

START_TEST(command_line_errors)
{
    expect_error(STOMP_VERSION_1_2, &default_limits, "\0", 1,
                 "missing command line: frame starts with NUL");
    expect_error(STOMP_VERSION_1_2, &default_limits, " \t\r\n\n\0", 6, "empty command line");
    expect_error(STOMP_VERSION_1_2, &default_limits, "SE\0ND\n\n\0", 8,
                 "NUL byte in the command line");
}
END_TEST

START_TEST(header_line_without_colon)
{
    const char *input = "SEND\na:1\nb:2\nnocolon\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, input, strlen(input) + 1,
                 "header line 3 has no ':'");
    expect_error(STOMP_VERSION_1_0, &default_limits, input, strlen(input) + 1,
                 "header line 3 has no ':'");
}
END_TEST

START_TEST(header_line_with_empty_name)
{
    const char *input = "SEND\n:v\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, input, strlen(input) + 1,
                 "header line 1 has an empty name");
}
END_TEST

START_TEST(nul_inside_headers)
{
    static const char input[] = "SEND\ndestination:/q\n\0";
    expect_error(STOMP_VERSION_1_2, &default_limits, input, sizeof(input) - 1,
                 "NUL byte in header line 2 (no blank line before the body?)");
}
END_TEST

START_TEST(content_length_errors)
{
    static const char *const not_numbers[] = {"abc", "-1", "", " 5", "5 ", "+5", "0x10", "1\\n"};
    for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++) {
        char input[64];
        snprintf(input, sizeof(input), "SEND\ncontent-length:%s\n\nhello", not_numbers[i]);
        expect_error(STOMP_VERSION_1_2, &default_limits, input, strlen(input) + 1,
                     "content-length is not a number");
    }
    const char *huge = "SEND\ncontent-length:184467440737095516160\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, huge, strlen(huge) + 1,
                 "content-length 184467440737095516160 is larger than max_frame_size (1048576 "
                 "bytes)");
    const char *over = "SEND\ncontent-length:1048577\n\n";
    expect_error(STOMP_VERSION_1_2, &default_limits, over, strlen(over) + 1,
                 "content-length 1048577 is larger than max_frame_size");
    const char *no_nul = "SEND\ncontent-length:2\n\nabc";
    expect_error(STOMP_VERSION_1_2, &default_limits, no_nul, strlen(no_nul) + 1,
                 "body longer than content-length: no NUL at byte 2");
}
END_TEST

START_TEST(errors_are_sticky)
{
    struct stomp_parser *parser = stomp_parser_new(&default_limits);
    size_t consumed;
    struct stomp_frame *frame;
    char err[128];
    ck_assert_int_eq(stomp_parse(parser, "SEND\nbad\n\n", 11, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_ERROR);
    ck_assert_str_eq(err, "header line 1 has no ':'");
    ck_assert_int_eq(stomp_parse(parser, "SEND\n\n", 7, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_ERROR);
    ck_assert_str_eq(err, "header line 1 has no ':'");
    ck_assert_uint_eq(consumed, 0);
    /* a short error buffer is truncated, not overrun */
    char small[8];
    ck_assert_int_eq(stomp_parse(parser, "", 0, &consumed, &frame, small, sizeof(small)),
                     STOMP_PARSE_ERROR);
    ck_assert_str_eq(small, "header ");
    stomp_parser_free(parser);
}
END_TEST

/* ------------------------------------------------------------------------
 * Limits: exactly at the limit passes, one over fails
 * ------------------------------------------------------------------------ */

START_TEST(max_frame_size_at_and_over)
{
    /* "SEND\n\n" + body: frame size = 6 + body length (bytes before the NUL) */
    struct stomp_limits limits = default_limits;
    limits.max_frame_size = 16;
    const char *at = "SEND\n\n0123456789";
    struct parse_result result = parse_with(STOMP_VERSION_1_2, &limits, at, strlen(at) + 1, 0);
    ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
    stomp_frame_free(result.frame);
    const char *over = "SEND\n\n0123456789A";
    expect_error(STOMP_VERSION_1_2, &limits, over, strlen(over) + 1,
                 "frame larger than max_frame_size (16 bytes)");
    /* the limit counts header bytes too */
    const char *headers_over = "SEND\nk:0123456789\n\n";
    expect_error(STOMP_VERSION_1_2, &limits, headers_over, strlen(headers_over) + 1,
                 "frame larger than max_frame_size (16 bytes)");
    /* with content-length: "SEND\ncontent-length:N\n\n" is 23 bytes */
    limits.max_frame_size = 26;
    const char *cl_at = "SEND\ncontent-length:3\n\nabc";
    result = parse_with(STOMP_VERSION_1_2, &limits, cl_at, strlen(cl_at) + 1, 0);
    ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
    stomp_frame_free(result.frame);
    const char *cl_over = "SEND\ncontent-length:4\n\nabcd";
    expect_error(STOMP_VERSION_1_2, &limits, cl_over, strlen(cl_over) + 1,
                 "frame larger than max_frame_size (26 bytes): content-length 4");
}
END_TEST

START_TEST(oversized_frame_fails_before_more_than_the_limit_is_buffered)
{
    struct stomp_limits limits = default_limits;
    limits.max_frame_size = 1000;
    size_t len = 5000;
    char *input = malloc(len);
    memcpy(input, "SEND\n\n", 6);
    memset(input + 6, 'x', len - 6);
    struct parse_result result = parse_with(STOMP_VERSION_1_2, &limits, input, len, 1);
    ck_assert_int_eq(result.status, STOMP_PARSE_ERROR);
    ck_assert_uint_eq(result.offered, limits.max_frame_size + 1);
    /* same inside headers */
    memset(input + 5, 'h', len - 5);
    input[6] = ':';
    result = parse_with(STOMP_VERSION_1_2, &limits, input, len, 1);
    ck_assert_int_eq(result.status, STOMP_PARSE_ERROR);
    ck_assert_uint_le(result.offered, limits.max_frame_size + 1);
    /* and as soon as a content-length says it will be too large */
    const char *cl = "SEND\ncontent-length:100000\n\n";
    result = parse_with(STOMP_VERSION_1_2, &limits, cl, strlen(cl), 1);
    ck_assert_int_eq(result.status, STOMP_PARSE_ERROR);
    ck_assert_str_eq(result.err,
                     "content-length 100000 is larger than max_frame_size (1000 bytes)");
    free(input);
}
END_TEST

START_TEST(max_headers_at_and_over)
{
    struct stomp_limits limits = default_limits;
    limits.max_headers = 3;
    const char *at = "SEND\na:1\nb:2\nc:3\n\n";
    struct parse_result result = parse_with(STOMP_VERSION_1_2, &limits, at, strlen(at) + 1, 0);
    ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
    ck_assert_uint_eq(result.frame->header_count, 3);
    stomp_frame_free(result.frame);
    const char *over = "SEND\na:1\nb:2\nc:3\nd:4\n\n";
    expect_error(STOMP_VERSION_1_2, &limits, over, strlen(over) + 1,
                 "too many headers (more than 3)");
}
END_TEST

START_TEST(max_header_length_at_and_over)
{
    struct stomp_limits limits = default_limits;
    limits.max_header_length = 10; /* "name:value" */
    static const char *const at[] = {"SEND\nkey:567890\n\n", "SEND\r\nkey:567890\r\n\r\n"};
    for (size_t i = 0; i < 2; i++) {
        struct parse_result result =
            parse_with(STOMP_VERSION_1_2, &limits, at[i], strlen(at[i]) + 1, 1);
        ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
        expect_header(result.frame, 0, "key", "567890");
        stomp_frame_free(result.frame);
    }
    static const char *const over[] = {"SEND\nkey:5678901\n\n", "SEND\r\nkey:5678901\r\n\r\n",
                                       "SEND\na:1\nkey:5678901234567890\n\n"};
    for (size_t i = 0; i < 3; i++)
        expect_error(STOMP_VERSION_1_2, &limits, over[i], strlen(over[i]) + 1,
                     i < 2 ? "header line 1 longer than max_header_length (10 bytes)"
                           : "header line 2 longer than max_header_length (10 bytes)");
}
END_TEST

START_TEST(new_limits_apply_from_the_next_frame)
{
    struct stomp_parser *parser = stomp_parser_new(&default_limits);
    const char *input = "SEND\na:1\nb:2\n\n";
    size_t len = strlen(input) + 1;
    size_t consumed;
    struct stomp_frame *frame;
    char err[128];
    /* first half of a frame, then the limits change */
    ck_assert_int_eq(stomp_parse(parser, input, 8, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_NEED_MORE);
    struct stomp_limits tight = default_limits;
    tight.max_headers = 1;
    stomp_parser_set_limits(parser, &tight);
    ck_assert_int_eq(stomp_parse(parser, input, len, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_FRAME);
    stomp_frame_free(frame);
    ck_assert_int_eq(stomp_parse(parser, input, len, &consumed, &frame, err, sizeof(err)),
                     STOMP_PARSE_ERROR);
    ck_assert_str_eq(err, "too many headers (more than 1)");
    stomp_parser_free(parser);
}
END_TEST

/* ------------------------------------------------------------------------
 * Serializer
 * ------------------------------------------------------------------------ */

static char *write_frame(enum stomp_version version, enum stomp_command command,
                         const struct stomp_header *headers, size_t count, const char *body,
                         size_t body_len, bool content_length, size_t *len)
{
    struct evbuffer *out = evbuffer_new();
    ck_assert_int_eq(
        stomp_frame_write(out, version, command, headers, count, body, body_len, content_length),
        0);
    char *text = drain(out, len);
    evbuffer_free(out);
    return text;
}

#define HEADER(n, v)                                                                               \
    {                                                                                              \
        .name = (n), .value = (v), .name_len = sizeof(n) - 1, .value_len = sizeof(v) - 1           \
    }

static const struct stomp_header tricky_headers[] = {
    HEADER("destination", "/queue/a"),
    HEADER("key:colon", "line1\nline2:x\\y"),
    HEADER("cr", "a\rb"),
    HEADER("empty", ""),
    HEADER("destination", "second"),
};

START_TEST(write_escapes_per_version)
{
    size_t len;
    char *text = write_frame(STOMP_VERSION_1_2, STOMP_COMMAND_MESSAGE, tricky_headers, 5, "hi", 2,
                             false, &len);
    ck_assert_uint_eq(len, strlen(text) + 1);
    ck_assert_str_eq(text, "MESSAGE\ndestination:/queue/a\nkey\\ccolon:line1\\nline2\\cx\\\\y\n"
                           "cr:a\\rb\nempty:\ndestination:second\ncontent-length:2\n\nhi");
    free(text);
    text = write_frame(STOMP_VERSION_1_1, STOMP_COMMAND_MESSAGE, tricky_headers + 1, 2, NULL, 0,
                       false, &len);
    ck_assert_str_eq(text, "MESSAGE\nkey\\ccolon:line1\\nline2\\cx\\\\y\ncr:a\rb\n\n");
    free(text);
    /* 1.0 has no escapes: an LF would start a new header, so it becomes a space */
    text = write_frame(STOMP_VERSION_1_0, STOMP_COMMAND_MESSAGE, tricky_headers + 1, 2, NULL, 0,
                       false, &len);
    ck_assert_str_eq(text, "MESSAGE\nkey:colon:line1 line2:x\\y\ncr:a\rb\n\n");
    free(text);
}
END_TEST

START_TEST(write_never_escapes_connected)
{
    static const struct stomp_header headers[] = {HEADER("version", "1.2"),
                                                  HEADER("server", "kbridge/0.1:x\\y")};
    size_t len;
    char *text =
        write_frame(STOMP_VERSION_1_2, STOMP_COMMAND_CONNECTED, headers, 2, NULL, 0, false, &len);
    ck_assert_str_eq(text, "CONNECTED\nversion:1.2\nserver:kbridge/0.1:x\\y\n\n");
    ck_assert_uint_eq(len, strlen(text) + 1);
    free(text);
}
END_TEST

START_TEST(write_content_length_when_asked_or_body)
{
    size_t len;
    char *text =
        write_frame(STOMP_VERSION_1_2, STOMP_COMMAND_RECEIPT, NULL, 0, NULL, 0, true, &len);
    ck_assert_str_eq(text, "RECEIPT\ncontent-length:0\n\n");
    free(text);
    text = write_frame(STOMP_VERSION_1_2, STOMP_COMMAND_RECEIPT, NULL, 0, NULL, 0, false, &len);
    ck_assert_str_eq(text, "RECEIPT\n\n");
    ck_assert_uint_eq(len, 10);
    free(text);
    text = write_frame(STOMP_VERSION_1_0, STOMP_COMMAND_MESSAGE, NULL, 0, "a\0b", 3, false, &len);
    ck_assert_uint_eq(len, strlen("MESSAGE\ncontent-length:3\n\na") + 3);
    ck_assert(memcmp(text, "MESSAGE\ncontent-length:3\n\na\0b\0", len) == 0);
    free(text);
}
END_TEST

START_TEST(write_replaces_nul_in_headers)
{
    static const struct stomp_header headers[] = {HEADER("k\0x", "a\0b")};
    size_t len;
    char *text =
        write_frame(STOMP_VERSION_1_2, STOMP_COMMAND_MESSAGE, headers, 1, NULL, 0, false, &len);
    ck_assert_str_eq(text, "MESSAGE\nk x:a b\n\n");
    ck_assert_uint_eq(len, strlen(text) + 1);
    free(text);
}
END_TEST

START_TEST(write_escapes_between_plain_runs)
{
    static const struct stomp_header headers[] = {HEADER("long:name", "plain\\run:\n\rend::")};
    size_t len;
    char *text =
        write_frame(STOMP_VERSION_1_2, STOMP_COMMAND_MESSAGE, headers, 1, NULL, 0, false, &len);
    ck_assert_str_eq(text, "MESSAGE\nlong\\cname:plain\\\\run\\c\\n\\rend\\c\\c\n\n");
    free(text);
    text = write_frame(STOMP_VERSION_1_0, STOMP_COMMAND_MESSAGE, headers, 1, NULL, 0, false, &len);
    ck_assert_str_eq(text, "MESSAGE\nlong:name:plain\\run: \rend::\n\n");
    free(text);
}
END_TEST

START_TEST(decimal_writes_every_width)
{
    char out[STOMP_DECIMAL_MAX];
    ck_assert_uint_eq(stomp_decimal(out, 0), 1);
    ck_assert_str_eq(out, "0");
    ck_assert_uint_eq(stomp_decimal(out, 1000), 4);
    ck_assert_str_eq(out, "1000");
    ck_assert_uint_eq(stomp_decimal(out, UINT64_MAX), 20);
    ck_assert_str_eq(out, "18446744073709551615");
}
END_TEST

START_TEST(write_rejects_unknown_command)
{
    struct evbuffer *out = evbuffer_new();
    ck_assert_int_eq(
        stomp_frame_write(out, STOMP_VERSION_1_2, STOMP_COMMAND_UNKNOWN, NULL, 0, NULL, 0, false),
        -1);
    ck_assert_uint_eq(evbuffer_get_length(out), 0);
    evbuffer_free(out);
}
END_TEST

START_TEST(write_then_parse_round_trips_in_every_version)
{
    static const char body[] = "body\0with\nNUL";
    for (size_t v = 0; v < 3; v++) {
        enum stomp_version version = all_versions[v];
        /* 1.0 cannot express LF in headers, 1.1 cannot express a CR */
        size_t first = version == STOMP_VERSION_1_0 ? 2 : 0;
        size_t count = version == STOMP_VERSION_1_2 ? 5 : 5 - first;
        const struct stomp_header *headers =
            version == STOMP_VERSION_1_0 ? tricky_headers + first : tricky_headers;
        for (int command = STOMP_COMMAND_CONNECT; command <= STOMP_COMMAND_ERROR; command++) {
            size_t len;
            char *text =
                write_frame(version, command, headers, count, body, sizeof(body) - 1, false, &len);
            struct parse_result result = parse_with(version, &default_limits, text, len, 0);
            ck_assert_int_eq(result.status, STOMP_PARSE_FRAME);
            ck_assert_uint_eq(result.used, len);
            struct stomp_frame *frame = result.frame;
            ck_assert_int_eq(frame->command, command);
            ck_assert_uint_eq(frame->header_count, count + 1);
            bool escaped = version != STOMP_VERSION_1_0 && command != STOMP_COMMAND_CONNECT &&
                           command != STOMP_COMMAND_STOMP && command != STOMP_COMMAND_CONNECTED;
            for (size_t i = 0; i < count; i++) {
                if (!escaped && memchr(headers[i].name, ':', headers[i].name_len))
                    continue; /* not expressible without escapes */
                if (!escaped && memchr(headers[i].value, '\n', headers[i].value_len))
                    continue;
                ck_assert_uint_eq(frame->headers[i].name_len, headers[i].name_len);
                ck_assert_str_eq(frame->headers[i].name, headers[i].name);
                ck_assert_str_eq(frame->headers[i].value, headers[i].value);
            }
            expect_header(frame, count, "content-length", "13");
            ck_assert_uint_eq(frame->body_len, sizeof(body) - 1);
            ck_assert(memcmp(frame->body, body, sizeof(body)) == 0);
            stomp_frame_free(frame);
            free(text);
        }
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * Version negotiation and heart-beat header
 * ------------------------------------------------------------------------ */

/* What each version can carry in a header (a delivery drops the rest). */
START_TEST(header_fits_version)
{
    ck_assert(stomp_header_fits(STOMP_VERSION_1_2, "a:b", 3, "x\r\ny", 4));
    ck_assert(!stomp_header_fits(STOMP_VERSION_1_2, "", 0, "x", 1));
    ck_assert(!stomp_header_fits(STOMP_VERSION_1_2, "a", 1, "x\0y", 3));
    ck_assert(!stomp_header_fits(STOMP_VERSION_1_2, "a\0b", 3, "x", 1));
    ck_assert(stomp_header_fits(STOMP_VERSION_1_1, "a:b", 3, "x\ny", 3));
    ck_assert(!stomp_header_fits(STOMP_VERSION_1_1, "a", 1, "x\ry", 3));
    ck_assert(stomp_header_fits(STOMP_VERSION_1_0, "ab", 2, "x y", 3));
    ck_assert(!stomp_header_fits(STOMP_VERSION_1_0, "a:b", 3, "x", 1));
    ck_assert(!stomp_header_fits(STOMP_VERSION_1_0, "a", 1, "x\ny", 3));
    ck_assert(!stomp_header_fits(STOMP_VERSION_1_0, "a\rb", 3, "x", 1));
}
END_TEST

START_TEST(version_negotiation)
{
    static const struct {
        const char *accept;
        int result;
        enum stomp_version version;
    } cases[] = {
        {NULL, 0, STOMP_VERSION_1_0},
        {"", 0, STOMP_VERSION_1_0},
        {"  ", 0, STOMP_VERSION_1_0},
        {"1.0", 0, STOMP_VERSION_1_0},
        {"1.1", 0, STOMP_VERSION_1_1},
        {"1.2", 0, STOMP_VERSION_1_2},
        {"1.0,1.1,1.2", 0, STOMP_VERSION_1_2},
        {"1.2,1.0", 0, STOMP_VERSION_1_2},
        {"1.0,1.1", 0, STOMP_VERSION_1_1},
        {" 1.0 , 1.1 ,\t1.2 ", 0, STOMP_VERSION_1_2},
        {"1.1,2.0", 0, STOMP_VERSION_1_1},
        {",,1.1,", 0, STOMP_VERSION_1_1},
        {"2.0", -1, 0},
        {"1.3,2.0", -1, 0},
        {"1", -1, 0},
        {"1.10", -1, 0},
        {"1.2x", -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum stomp_version version = (enum stomp_version)42;
        int result = stomp_version_negotiate(cases[i].accept, &version);
        ck_assert_msg(result == cases[i].result, "'%s' gave %d", cases[i].accept, result);
        if (result == 0)
            ck_assert_msg(version == cases[i].version, "'%s' gave %s", cases[i].accept,
                          stomp_version_name(version));
    }
    ck_assert_str_eq(stomp_version_name(STOMP_VERSION_1_0), "1.0");
    ck_assert_str_eq(stomp_version_name(STOMP_VERSION_1_1), "1.1");
    ck_assert_str_eq(stomp_version_name(STOMP_VERSION_1_2), "1.2");
}
END_TEST

START_TEST(heartbeat_header_parse)
{
    uint32_t cx = 1, cy = 1;
    ck_assert_int_eq(stomp_heartbeat_parse("0,0", &cx, &cy), 0);
    ck_assert_uint_eq(cx, 0);
    ck_assert_uint_eq(cy, 0);
    ck_assert_int_eq(stomp_heartbeat_parse("10000,5000", &cx, &cy), 0);
    ck_assert_uint_eq(cx, 10000);
    ck_assert_uint_eq(cy, 5000);
    ck_assert_int_eq(stomp_heartbeat_parse(" 4294967295 , 7", &cx, &cy), 0);
    ck_assert_uint_eq(cx, 4294967295u);
    ck_assert_uint_eq(cy, 7);
    static const char *const bad[] = {"",    "0",     "0,",  ",0",    "-1,0",         "1,-1",
                                      "a,b", "1,2,3", "1;2", "1 2,3", "4294967296,0", "1,0x",
                                      "+1,2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cx = cy = 99;
        ck_assert_msg(stomp_heartbeat_parse(bad[i], &cx, &cy) == -1, "'%s' accepted", bad[i]);
        ck_assert_uint_eq(cx, 99);
    }
    ck_assert_int_eq(stomp_heartbeat_parse(NULL, &cx, &cy), -1);
}
END_TEST

/* ------------------------------------------------------------------------
 * tests/stomp/frames.json: a tiny reader for exactly its shape (a list of
 * objects whose values are strings or lists of [name, value] string pairs)
 * ------------------------------------------------------------------------ */

struct json_string {
    char *data; /* NUL-terminated; may hold NULs (\u0000) */
    size_t len;
};

struct frame_case {
    struct json_string name, version, input, expect, command, body, error;
    struct json_string (*headers)[2];
    size_t header_count;
    bool has_headers;
};

static struct frame_case *frame_cases;
static size_t frame_case_count;

struct json_reader {
    const char *p, *end;
    const char *error;
};

static void json_skip_space(struct json_reader *reader)
{
    while (reader->p < reader->end &&
           (*reader->p == ' ' || *reader->p == '\n' || *reader->p == '\r' || *reader->p == '\t'))
        reader->p++;
}

static bool json_expect(struct json_reader *reader, char c)
{
    json_skip_space(reader);
    if (reader->p < reader->end && *reader->p == c) {
        reader->p++;
        return true;
    }
    reader->error = "unexpected character";
    return false;
}

static bool json_peek(struct json_reader *reader, char c)
{
    json_skip_space(reader);
    return reader->p < reader->end && *reader->p == c;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool json_read_string(struct json_reader *reader, struct json_string *out)
{
    if (!json_expect(reader, '"'))
        return false;
    char *buf = malloc((size_t)(reader->end - reader->p) + 1);
    size_t len = 0;
    while (reader->p < reader->end && *reader->p != '"') {
        char c = *reader->p++;
        if (c != '\\') {
            buf[len++] = c;
            continue;
        }
        if (reader->p >= reader->end)
            break;
        char e = *reader->p++;
        switch (e) {
        case 'n': buf[len++] = '\n'; break;
        case 'r': buf[len++] = '\r'; break;
        case 't': buf[len++] = '\t'; break;
        case 'b': buf[len++] = '\b'; break;
        case 'f': buf[len++] = '\f'; break;
        case '"':
        case '\\':
        case '/': buf[len++] = e; break;
        case 'u': {
            unsigned code = 0;
            for (int i = 0; i < 4; i++) {
                int h = reader->p < reader->end ? hex_value(*reader->p++) : -1;
                if (h < 0) {
                    free(buf);
                    reader->error = "bad \\u escape";
                    return false;
                }
                code = code * 16 + (unsigned)h;
            }
            if (code < 0x80) {
                buf[len++] = (char)code;
            } else if (code < 0x800) {
                buf[len++] = (char)(0xc0 | (code >> 6));
                buf[len++] = (char)(0x80 | (code & 0x3f));
            } else {
                buf[len++] = (char)(0xe0 | (code >> 12));
                buf[len++] = (char)(0x80 | ((code >> 6) & 0x3f));
                buf[len++] = (char)(0x80 | (code & 0x3f));
            }
            break;
        }
        default:
            free(buf);
            reader->error = "bad escape";
            return false;
        }
    }
    if (reader->p >= reader->end) {
        free(buf);
        reader->error = "unterminated string";
        return false;
    }
    reader->p++;
    buf[len] = '\0';
    out->data = buf;
    out->len = len;
    return true;
}

static bool json_read_headers(struct json_reader *reader, struct frame_case *c)
{
    if (!json_expect(reader, '['))
        return false;
    c->has_headers = true;
    size_t capacity = 0;
    if (json_peek(reader, ']'))
        return json_expect(reader, ']');
    do {
        if (c->header_count == capacity) {
            capacity = capacity ? capacity * 2 : 4;
            c->headers = realloc(c->headers, capacity * sizeof(*c->headers));
        }
        struct json_string *pair = c->headers[c->header_count];
        if (!json_expect(reader, '[') || !json_read_string(reader, &pair[0]))
            return false;
        if (!json_expect(reader, ',') || !json_read_string(reader, &pair[1])) {
            free(pair[0].data);
            return false;
        }
        c->header_count++;
        if (!json_expect(reader, ']'))
            return false;
    } while (json_peek(reader, ',') && json_expect(reader, ','));
    return json_expect(reader, ']');
}

static bool json_read_case(struct json_reader *reader, struct frame_case *c)
{
    if (!json_expect(reader, '{'))
        return false;
    do {
        struct json_string key;
        if (!json_read_string(reader, &key))
            return false;
        bool ok = json_expect(reader, ':');
        struct json_string *field = NULL;
        if (strcmp(key.data, "name") == 0)
            field = &c->name;
        else if (strcmp(key.data, "version") == 0)
            field = &c->version;
        else if (strcmp(key.data, "input") == 0)
            field = &c->input;
        else if (strcmp(key.data, "expect") == 0)
            field = &c->expect;
        else if (strcmp(key.data, "command") == 0)
            field = &c->command;
        else if (strcmp(key.data, "body") == 0)
            field = &c->body;
        else if (strcmp(key.data, "error") == 0)
            field = &c->error;
        bool is_headers = strcmp(key.data, "headers") == 0;
        free(key.data);
        if (!ok)
            return false;
        if (is_headers) {
            if (!json_read_headers(reader, c))
                return false;
        } else if (field == NULL || field->data != NULL) {
            reader->error = "unknown or repeated key";
            return false;
        } else if (!json_read_string(reader, field)) {
            return false;
        }
    } while (json_peek(reader, ',') && json_expect(reader, ','));
    return json_expect(reader, '}');
}

static void free_case(struct frame_case *c)
{
    struct json_string *fields[] = {&c->name,    &c->version, &c->input, &c->expect,
                                    &c->command, &c->body,    &c->error};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        free(fields[i]->data);
    for (size_t i = 0; i < c->header_count; i++) {
        free(c->headers[i][0].data);
        free(c->headers[i][1].data);
    }
    free(c->headers);
}

static void free_frame_cases(void)
{
    for (size_t i = 0; i < frame_case_count; i++)
        free_case(&frame_cases[i]);
    free(frame_cases);
    frame_cases = NULL;
    frame_case_count = 0;
}

/* Load FRAMES_JSON into frame_cases; on failure print why and return -1. */
static int load_frame_cases(void)
{
    FILE *file = fopen(FRAMES_JSON, "rb");
    if (file == NULL) {
        perror(FRAMES_JSON);
        return -1;
    }
    struct evbuffer *buffer = evbuffer_new();
    while (evbuffer_read(buffer, fileno(file), 65536) > 0)
        ;
    fclose(file);
    size_t len;
    char *text = drain(buffer, &len);
    evbuffer_free(buffer);

    struct json_reader reader = {.p = text, .end = text + len};
    size_t capacity = 0;
    bool ok = json_expect(&reader, '[');
    while (ok && !json_peek(&reader, ']')) {
        if (frame_case_count > 0)
            ok = json_expect(&reader, ',');
        if (!ok)
            break;
        if (frame_case_count == capacity) {
            capacity = capacity ? capacity * 2 : 32;
            frame_cases = realloc(frame_cases, capacity * sizeof(*frame_cases));
        }
        struct frame_case *c = &frame_cases[frame_case_count];
        memset(c, 0, sizeof(*c));
        ok = json_read_case(&reader, c);
        if (ok && (!c->name.data || !c->version.data || !c->input.data || !c->expect.data)) {
            reader.error = "case lacks name, version, input or expect";
            ok = false;
        }
        if (!ok)
            free_case(c);
        else
            frame_case_count++;
    }
    if (ok)
        ok = json_expect(&reader, ']');
    if (!ok)
        fprintf(stderr, "%s: %s at byte %zu\n", FRAMES_JSON, reader.error,
                (size_t)(reader.p - text));
    free(text);
    return ok ? 0 : -1;
}

static void check_case_result(const struct frame_case *c, const struct parse_result *result,
                              size_t chunk)
{
    const char *name = c->name.data;
    if (strcmp(c->expect.data, "need_more") == 0) {
        ck_assert_msg(result->status == STOMP_PARSE_NEED_MORE, "%s (chunk %zu): status %d '%s'",
                      name, chunk, result->status, result->err);
    } else if (strcmp(c->expect.data, "error") == 0) {
        ck_assert_msg(result->status == STOMP_PARSE_ERROR, "%s (chunk %zu): status %d", name, chunk,
                      result->status);
        ck_assert_msg(c->error.data && strstr(result->err, c->error.data) != NULL,
                      "%s (chunk %zu): error '%s' lacks '%s'", name, chunk, result->err,
                      c->error.data ? c->error.data : "(no \"error\" in the case)");
    } else {
        ck_assert_msg(strcmp(c->expect.data, "frame") == 0,
                      "%s: expect '%s' is not one of frame, "
                      "error, need_more",
                      name, c->expect.data);
        ck_assert_msg(result->status == STOMP_PARSE_FRAME, "%s (chunk %zu): status %d '%s'", name,
                      chunk, result->status, result->err);
        const struct stomp_frame *frame = result->frame;
        if (c->command.data) {
            ck_assert_msg(strcmp(frame->command_text, c->command.data) == 0, "%s: command '%s'",
                          name, frame->command_text);
            ck_assert_int_eq(frame->command, stomp_command_parse(c->command.data, c->command.len));
        }
        if (c->has_headers) {
            ck_assert_msg(frame->header_count == c->header_count, "%s: %zu headers, want %zu", name,
                          frame->header_count, c->header_count);
            for (size_t i = 0; i < c->header_count; i++) {
                const struct stomp_header *h = &frame->headers[i];
                ck_assert_msg(h->name_len == c->headers[i][0].len &&
                                  memcmp(h->name, c->headers[i][0].data, h->name_len) == 0,
                              "%s: header %zu name '%s', want '%s'", name, i, h->name,
                              c->headers[i][0].data);
                ck_assert_msg(h->value_len == c->headers[i][1].len &&
                                  memcmp(h->value, c->headers[i][1].data, h->value_len) == 0,
                              "%s: header %zu value '%s', want '%s'", name, i, h->value,
                              c->headers[i][1].data);
            }
        }
        if (c->body.data) {
            ck_assert_msg(frame->body_len == c->body.len &&
                              memcmp(frame->body, c->body.data, c->body.len) == 0,
                          "%s: body '%s' (%zu bytes), want '%s'", name, frame->body,
                          frame->body_len, c->body.data);
            ck_assert_int_eq(frame->body[frame->body_len], '\0');
        }
    }
}

START_TEST(frames_json_case)
{
    const struct frame_case *c = &frame_cases[_i];
    enum stomp_version version = STOMP_VERSION_1_0;
    ck_assert_msg(stomp_version_negotiate(c->version.data, &version) == 0, "%s: version '%s'",
                  c->name.data, c->version.data);
    /* all at once, then one byte per call: same outcome */
    for (size_t chunk = 0; chunk <= 1; chunk++) {
        struct parse_result result =
            parse_with(version, &default_limits, c->input.data, c->input.len, chunk);
        check_case_result(c, &result, chunk);
        stomp_frame_free(result.frame);
    }
}
END_TEST

START_TEST(frames_json_is_not_empty) { ck_assert_uint_ge(frame_case_count, 50); }
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *stomp_frame_suite(void)
{
    Suite *suite = suite_create("stomp_frame");

    TCase *commands = tcase_create("commands");
    tcase_add_test(commands, each_command_parses);
    tcase_add_test(commands, command_names_round_trip_and_are_case_sensitive);
    tcase_add_test(commands, unknown_command_keeps_its_text);
    tcase_add_test(commands, lf_and_crlf_line_endings_in_every_version);
    tcase_add_test(commands, only_one_cr_is_stripped);
    suite_add_tcase(suite, commands);

    TCase *headers = tcase_create("headers");
    tcase_add_test(headers, repeated_headers_are_all_kept_and_first_wins);
    tcase_add_test(headers, empty_value_is_allowed);
    tcase_add_test(headers, escapes_are_left_alone_in_1_0);
    tcase_add_test(headers, escapes_are_decoded_in_1_1);
    tcase_add_test(headers, escape_r_is_rejected_in_1_1);
    tcase_add_test(headers, escape_r_is_decoded_in_1_2);
    tcase_add_test(headers, undefined_escapes_are_errors);
    tcase_add_test(headers, connect_frames_are_never_unescaped);
    tcase_add_test(headers, version_change_applies_to_the_next_frame);
    suite_add_tcase(suite, headers);

    TCase *body = tcase_create("body");
    tcase_add_test(body, content_length_body_may_contain_nuls);
    tcase_add_test(body, body_without_content_length_ends_at_first_nul);
    tcase_add_test(body, empty_body_and_content_length_zero);
    suite_add_tcase(suite, body);

    TCase *streaming = tcase_create("streaming");
    tcase_add_test(streaming, split_at_every_byte_boundary_gives_the_same_frame);
    tcase_add_test(streaming, two_frames_in_one_buffer);
    tcase_add_test(streaming, heartbeats_between_frames);
    suite_add_tcase(suite, streaming);

    TCase *linear = tcase_create("linear");
    tcase_set_timeout(linear, 20);
    tcase_add_test(linear, four_mib_frame_one_byte_at_a_time_is_linear);
    suite_add_tcase(suite, linear);

    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, command_line_errors);
    tcase_add_test(errors, header_line_without_colon);
    tcase_add_test(errors, header_line_with_empty_name);
    tcase_add_test(errors, nul_inside_headers);
    tcase_add_test(errors, content_length_errors);
    tcase_add_test(errors, errors_are_sticky);
    suite_add_tcase(suite, errors);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, max_frame_size_at_and_over);
    tcase_add_test(limits, oversized_frame_fails_before_more_than_the_limit_is_buffered);
    tcase_add_test(limits, max_headers_at_and_over);
    tcase_add_test(limits, max_header_length_at_and_over);
    tcase_add_test(limits, new_limits_apply_from_the_next_frame);
    suite_add_tcase(suite, limits);

    TCase *writer = tcase_create("serializer");
    tcase_add_test(writer, write_escapes_per_version);
    tcase_add_test(writer, write_never_escapes_connected);
    tcase_add_test(writer, write_content_length_when_asked_or_body);
    tcase_add_test(writer, write_replaces_nul_in_headers);
    tcase_add_test(writer, write_escapes_between_plain_runs);
    tcase_add_test(writer, decimal_writes_every_width);
    tcase_add_test(writer, write_rejects_unknown_command);
    tcase_add_test(writer, write_then_parse_round_trips_in_every_version);
    suite_add_tcase(suite, writer);

    TCase *helpers = tcase_create("helpers");
    tcase_add_test(helpers, header_fits_version);
    tcase_add_test(helpers, version_negotiation);
    tcase_add_test(helpers, heartbeat_header_parse);
    suite_add_tcase(suite, helpers);

    TCase *data = tcase_create("frames.json");
    tcase_add_test(data, frames_json_is_not_empty);
    tcase_add_loop_test(data, frames_json_case, 0, (int)frame_case_count);
    suite_add_tcase(suite, data);
    return suite;
}

int main(void)
{
    if (load_frame_cases() != 0)
        return EXIT_FAILURE;
    SRunner *runner = srunner_create(stomp_frame_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    free_frame_cases();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
