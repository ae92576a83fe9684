/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_frame.c -- the STOMP 1.0/1.1/1.2 frame codec. Owns the incremental
 * parser (struct stomp_parser remembers where the line scan and the NUL
 * search got to, so a frame arriving one byte at a time is still scanned
 * once), the one-allocation frame layout, the per-version header escaping of
 * the serializer, and the small helpers: command names, accept-version
 * negotiation and the heart-beat header.
 *
 * Frame size, as limited by max_frame_size, is the number of bytes before the
 * terminating NUL: command line, header lines, blank line (EOLs included) and
 * body. A frame is rejected as soon as more bytes than that have been seen
 * without its end, so the caller never buffers more than max_frame_size + 1
 * bytes of one frame. */
#include "stomp_frame.h"

#include <assert.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum parse_phase {
    PHASE_START,   /* between frames: heart-beat EOLs or the first command byte */
    PHASE_COMMAND, /* inside the command line */
    PHASE_HEADERS, /* inside the header lines, up to the blank line */
    PHASE_BODY,    /* looking for the NUL, or waiting for content-length bytes */
    PHASE_FAILED,  /* an error was returned; later calls repeat it */
};

struct stomp_parser {
    struct stomp_limits next_limits; /* from stomp_parser_set_limits; used from the next frame */
    enum stomp_version next_version; /* from stomp_parser_set_version; used from the next frame */

    /* The frame being scanned. Offsets count from its first byte, which is
     * always data[0] because nothing is consumed until the frame is whole. */
    struct stomp_limits limits;
    enum stomp_version version;
    enum parse_phase phase;
    size_t scan_pos;      /* bytes already looked at */
    size_t line_start;    /* first byte of the line being scanned */
    size_t command_len;   /* command line length without its EOL */
    size_t headers_start; /* first byte of the first header line */
    size_t header_count;  /* header lines completed */
    size_t body_start;    /* first body byte (PHASE_BODY) */
    bool escaped;         /* this frame's headers use escapes (1.1+, not CONNECT/CONNECTED) */
    bool has_content_length;
    size_t content_length; /* the first content-length header's value */

    char failure[192]; /* the error returned, repeated by later calls */
};

static const char *const command_names[] = {
    [STOMP_COMMAND_UNKNOWN] = "UNKNOWN",
    [STOMP_COMMAND_CONNECT] = "CONNECT",
    [STOMP_COMMAND_STOMP] = "STOMP",
    [STOMP_COMMAND_SEND] = "SEND",
    [STOMP_COMMAND_SUBSCRIBE] = "SUBSCRIBE",
    [STOMP_COMMAND_UNSUBSCRIBE] = "UNSUBSCRIBE",
    [STOMP_COMMAND_ACK] = "ACK",
    [STOMP_COMMAND_NACK] = "NACK",
    [STOMP_COMMAND_BEGIN] = "BEGIN",
    [STOMP_COMMAND_COMMIT] = "COMMIT",
    [STOMP_COMMAND_ABORT] = "ABORT",
    [STOMP_COMMAND_DISCONNECT] = "DISCONNECT",
    [STOMP_COMMAND_CONNECTED] = "CONNECTED",
    [STOMP_COMMAND_MESSAGE] = "MESSAGE",
    [STOMP_COMMAND_RECEIPT] = "RECEIPT",
    [STOMP_COMMAND_ERROR] = "ERROR",
};

#define COMMAND_COUNT (sizeof(command_names) / sizeof(command_names[0]))

static const char content_length_name[] = "content-length";

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

enum stomp_command stomp_command_parse(const char *text, size_t len)
{
    for (size_t i = 1; i < COMMAND_COUNT; i++) {
        if (strlen(command_names[i]) == len && memcmp(command_names[i], text, len) == 0)
            return (enum stomp_command)i;
    }
    return STOMP_COMMAND_UNKNOWN;
}

const char *stomp_command_name(enum stomp_command command)
{
    if ((size_t)command >= COMMAND_COUNT)
        return command_names[STOMP_COMMAND_UNKNOWN];
    return command_names[command];
}

const char *stomp_version_name(enum stomp_version version)
{
    switch (version) {
    case STOMP_VERSION_1_0: return "1.0";
    case STOMP_VERSION_1_1: return "1.1";
    case STOMP_VERSION_1_2: return "1.2";
    }
    return "unknown";
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

int stomp_version_negotiate(const char *accept_version, enum stomp_version *out)
{
    if (accept_version == NULL) {
        *out = STOMP_VERSION_1_0;
        return 0;
    }
    bool any_token = false;
    int best = -1;
    const char *p = accept_version;
    while (*p) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *first = p, *last = end;
        while (first < last && is_blank(*first))
            first++;
        while (last > first && is_blank(last[-1]))
            last--;
        size_t len = (size_t)(last - first);
        if (len > 0) {
            any_token = true;
            for (int v = STOMP_VERSION_1_0; v <= STOMP_VERSION_1_2; v++) {
                const char *name = stomp_version_name((enum stomp_version)v);
                if (len == 3 && memcmp(first, name, 3) == 0 && v > best)
                    best = v;
            }
        }
        p = *end ? end + 1 : end;
    }
    if (!any_token) {
        *out = STOMP_VERSION_1_0;
        return 0;
    }
    if (best < 0)
        return -1;
    *out = (enum stomp_version)best;
    return 0;
}

/* One number of a heart-beat header: optional blanks, 1-10 digits fitting
 * uint32_t, optional blanks, then `stop`. Returns the byte after `stop`'s
 * position (pointing at it), or NULL. */
static const char *parse_heartbeat_number(const char *p, char stop, uint32_t *out)
{
    while (is_blank(*p))
        p++;
    uint64_t value = 0;
    const char *digits = p;
    while (*p >= '0' && *p <= '9') {
        value = value * 10 + (uint64_t)(*p - '0');
        if (value > UINT32_MAX)
            return NULL;
        p++;
    }
    if (p == digits)
        return NULL;
    while (is_blank(*p))
        p++;
    if (*p != stop)
        return NULL;
    *out = (uint32_t)value;
    return p;
}

int stomp_bool_parse(const char *value, bool *out)
{
    if (value && strcasecmp(value, "true") == 0)
        *out = true;
    else if (value && strcasecmp(value, "false") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

int stomp_heartbeat_parse(const char *value, uint32_t *cx, uint32_t *cy)
{
    if (value == NULL)
        return -1;
    uint32_t x, y;
    const char *p = parse_heartbeat_number(value, ',', &x);
    if (p == NULL || parse_heartbeat_number(p + 1, '\0', &y) == NULL)
        return -1;
    *cx = x;
    *cy = y;
    return 0;
}

/* ------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------ */

void stomp_frame_free(struct stomp_frame *frame) { free(frame); }

const struct stomp_header *stomp_frame_header(const struct stomp_frame *frame, const char *name)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < frame->header_count; i++) {
        const struct stomp_header *header = &frame->headers[i];
        if (header->name_len == name_len && memcmp(header->name, name, name_len) == 0)
            return header;
    }
    return NULL;
}

const char *stomp_frame_header_value(const struct stomp_frame *frame, const char *name)
{
    const struct stomp_header *header = stomp_frame_header(frame, name);
    return header ? header->value : NULL;
}

/* CONNECT, STOMP and CONNECTED frames never carry escapes (1.2 "Value Encoding"). */
static bool command_uses_escapes(enum stomp_command command, enum stomp_version version)
{
    if (version == STOMP_VERSION_1_0)
        return false;
    return command != STOMP_COMMAND_CONNECT && command != STOMP_COMMAND_STOMP &&
           command != STOMP_COMMAND_CONNECTED;
}

/* Decode the escapes of [src, src+len) into dst (NULL: only validate).
 * Returns the decoded length, or SIZE_MAX with *bad_at set to the offset of
 * the offending backslash. */
static size_t unescape(const char *src, size_t len, enum stomp_version version, char *dst,
                       size_t *bad_at)
{
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '\\') {
            if (i + 1 >= len) {
                *bad_at = i;
                return SIZE_MAX;
            }
            switch (src[i + 1]) {
            case 'n': c = '\n'; break;
            case 'c': c = ':'; break;
            case '\\': c = '\\'; break;
            case 'r':
                if (version < STOMP_VERSION_1_2) { /* \r is not defined in 1.1 */
                    *bad_at = i;
                    return SIZE_MAX;
                }
                c = '\r';
                break;
            default: *bad_at = i; return SIZE_MAX;
            }
            i++;
        }
        if (dst)
            dst[out] = c;
        out++;
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------ */

struct stomp_parser *stomp_parser_new(const struct stomp_limits *limits)
{
    struct stomp_parser *parser = calloc(1, sizeof(*parser));
    if (parser == NULL)
        return NULL;
    parser->next_limits = *limits;
    parser->limits = *limits;
    parser->next_version = STOMP_VERSION_1_0;
    parser->version = STOMP_VERSION_1_0;
    parser->phase = PHASE_START;
    return parser;
}

void stomp_parser_free(struct stomp_parser *parser) { free(parser); }

void stomp_parser_set_version(struct stomp_parser *parser, enum stomp_version version)
{
    parser->next_version = version;
    if (parser->phase == PHASE_START)
        parser->version = version;
}

void stomp_parser_set_limits(struct stomp_parser *parser, const struct stomp_limits *limits)
{
    parser->next_limits = *limits;
}

/* Record an error in the parser (sticky) and copy it to the caller's buffer. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static enum stomp_parse_status
parse_fail(struct stomp_parser *parser, char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(parser->failure, sizeof(parser->failure), fmt, ap);
    va_end(ap);
    parser->phase = PHASE_FAILED;
    if (err != NULL && err_size > 0)
        snprintf(err, err_size, "%s", parser->failure);
    return STOMP_PARSE_ERROR;
}

/* A header name made printable and short enough for an error message. */
static void printable_name(char *out, size_t out_size, const char *name, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < out_size; i++)
        out[n++] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
    if (len > 0 && n < len && n + 3 < out_size) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static enum stomp_parse_status escape_error(struct stomp_parser *parser, char *err, size_t err_size,
                                            const char *line, size_t name_len, const char *at,
                                            const char *end)
{
    char name[48];
    printable_name(name, sizeof(name), line, name_len);
    if (at + 1 >= end)
        return parse_fail(parser, err, err_size, "invalid escape: '\\' at the end of header '%s'",
                          name);
    unsigned char c = (unsigned char)at[1];
    if (c >= 0x20 && c < 0x7f)
        return parse_fail(parser, err, err_size, "invalid escape \\%c in header '%s'", c, name);
    return parse_fail(parser, err, err_size, "invalid escape \\x%02x in header '%s'", c, name);
}

/* Check one complete header line [line, line+len) (EOL removed) and note a
 * first content-length. Returns STOMP_PARSE_NEED_MORE to mean "fine, go on". */
static enum stomp_parse_status check_header_line(struct stomp_parser *parser, const char *line,
                                                 size_t len, char *err, size_t err_size)
{
    const struct stomp_limits *limits = &parser->limits;
    size_t number = ++parser->header_count;
    if (number > limits->max_headers)
        return parse_fail(parser, err, err_size, "too many headers (more than %zu)",
                          limits->max_headers);
    if (len > limits->max_header_length)
        return parse_fail(parser, err, err_size,
                          "header line %zu longer than max_header_length (%zu bytes)", number,
                          limits->max_header_length);
    const char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return parse_fail(parser, err, err_size, "header line %zu has no ':'", number);
    size_t name_len = (size_t)(colon - line);
    if (name_len == 0)
        return parse_fail(parser, err, err_size, "header line %zu has an empty name", number);
    const char *value = colon + 1;
    size_t value_len = len - name_len - 1;

    if (parser->escaped) {
        size_t bad_at;
        if (unescape(line, name_len, parser->version, NULL, &bad_at) == SIZE_MAX)
            return escape_error(parser, err, err_size, line, name_len, line + bad_at, colon);
        if (unescape(value, value_len, parser->version, NULL, &bad_at) == SIZE_MAX)
            return escape_error(parser, err, err_size, line, name_len, value + bad_at,
                                value + value_len);
    }

    /* Escapes cannot produce "content-length", so the raw name is compared;
     * only the first occurrence counts (repeated headers: first wins). */
    if (!parser->has_content_length && name_len == sizeof(content_length_name) - 1 &&
        memcmp(line, content_length_name, name_len) == 0) {
        if (value_len == 0)
            return parse_fail(parser, err, err_size, "content-length is not a number");
        size_t length = 0;
        bool too_large = false;
        for (size_t i = 0; i < value_len; i++) {
            if (value[i] < '0' || value[i] > '9')
                return parse_fail(parser, err, err_size, "content-length is not a number");
            unsigned digit = (unsigned)(value[i] - '0');
            if (length > (SIZE_MAX - digit) / 10 || length * 10 + digit > limits->max_frame_size)
                too_large = true;
            else
                length = length * 10 + digit;
        }
        if (too_large)
            return parse_fail(parser, err, err_size,
                              "content-length %.*s%s is larger than max_frame_size (%zu bytes)",
                              (int)(value_len > 24 ? 24 : value_len), value,
                              value_len > 24 ? "..." : "", limits->max_frame_size);
        parser->has_content_length = true;
        parser->content_length = length;
    }
    return STOMP_PARSE_NEED_MORE;
}

/* A command line of nothing but blanks and CRs. (A bare EOL before a
 * command is a heart-beat and never reaches the line scan.) */
static bool is_empty_line(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_blank(line[i]) && line[i] != '\r')
            return false;
    }
    return true;
}

/* Scan the command line and header lines from scan_pos. Returns
 * STOMP_PARSE_FRAME when the blank line was found (phase is now BODY),
 * STOMP_PARSE_NEED_MORE when data ran out, or STOMP_PARSE_ERROR. */
static enum stomp_parse_status scan_lines(struct stomp_parser *parser, const char *data, size_t len,
                                          char *err, size_t err_size)
{
    const struct stomp_limits *limits = &parser->limits;
    for (size_t pos = parser->scan_pos; pos < len; pos++) {
        /* every byte here comes before the terminating NUL */
        if (pos >= limits->max_frame_size)
            return parse_fail(parser, err, err_size, "frame larger than max_frame_size (%zu bytes)",
                              limits->max_frame_size);
        char c = data[pos];
        if (c == '\0') {
            if (parser->phase == PHASE_COMMAND)
                return parse_fail(parser, err, err_size,
                                  pos == 0 ? "missing command line: frame starts with NUL"
                                           : "NUL byte in the command line");
            return parse_fail(parser, err, err_size,
                              "NUL byte in header line %zu (no blank line before the body?)",
                              parser->header_count + 1);
        }
        if (c != '\n') {
            /* a line longer than the limit plus a CR can fail before its EOL */
            if (parser->phase == PHASE_HEADERS &&
                pos - parser->line_start > limits->max_header_length)
                return parse_fail(parser, err, err_size,
                                  "header line %zu longer than max_header_length (%zu bytes)",
                                  parser->header_count + 1, limits->max_header_length);
            continue;
        }
        size_t end = pos;
        if (end > parser->line_start && data[end - 1] == '\r')
            end--;
        const char *line = data + parser->line_start;
        size_t line_len = end - parser->line_start;
        if (parser->phase == PHASE_COMMAND) {
            if (is_empty_line(line, line_len))
                return parse_fail(parser, err, err_size, "empty command line");
            parser->command_len = line_len;
            parser->escaped =
                command_uses_escapes(stomp_command_parse(line, line_len), parser->version);
            parser->headers_start = pos + 1;
            parser->phase = PHASE_HEADERS;
        } else if (line_len == 0) {
            parser->body_start = pos + 1;
            parser->scan_pos = pos + 1;
            parser->phase = PHASE_BODY;
            if (parser->has_content_length &&
                parser->content_length > limits->max_frame_size - parser->body_start)
                return parse_fail(parser, err, err_size,
                                  "frame larger than max_frame_size (%zu bytes): "
                                  "content-length %zu after %zu bytes of headers",
                                  limits->max_frame_size, parser->content_length,
                                  parser->body_start);
            return STOMP_PARSE_FRAME;
        } else {
            enum stomp_parse_status status =
                check_header_line(parser, line, line_len, err, err_size);
            if (status != STOMP_PARSE_NEED_MORE)
                return status;
        }
        parser->line_start = pos + 1;
    }
    parser->scan_pos = len;
    return STOMP_PARSE_NEED_MORE;
}

/* Copy the header [line, line+len) into `out`, unescaping when the frame
 * uses escapes. The line was validated by check_header_line. */
static char *copy_header(const struct stomp_parser *parser, const char *line, size_t len,
                         struct stomp_header *header, char *out)
{
    const char *colon = memchr(line, ':', len);
    size_t name_len = (size_t)(colon - line);
    size_t value_len = len - name_len - 1;
    size_t bad_at;
    header->name = out;
    if (parser->escaped)
        header->name_len = unescape(line, name_len, parser->version, out, &bad_at);
    else
        memcpy(out, line, header->name_len = name_len);
    out += header->name_len;
    *out++ = '\0';
    header->value = out;
    if (parser->escaped)
        header->value_len = unescape(colon + 1, value_len, parser->version, out, &bad_at);
    else
        memcpy(out, colon + 1, header->value_len = value_len);
    out += header->value_len;
    *out++ = '\0';
    return out;
}

/* Build the frame whose terminating NUL is data[nul] in one allocation:
 * struct, header array, then command, header strings and body, each
 * NUL-terminated. Raw lines are never shorter than their decoded strings
 * plus terminators (each line has an EOL, each header a ':'), so body_start
 * bytes bound the strings. */
static struct stomp_frame *build_frame(const struct stomp_parser *parser, const char *data,
                                       size_t nul)
{
    size_t header_count = parser->header_count;
    size_t body_len = nul - parser->body_start;
    size_t size = sizeof(struct stomp_frame) + header_count * sizeof(struct stomp_header) +
                  parser->body_start + body_len + 1;
    struct stomp_frame *frame = malloc(size);
    if (frame == NULL)
        return NULL;
    struct stomp_header *headers = (struct stomp_header *)(frame + 1);
    char *out = (char *)(headers + header_count);

    frame->command = stomp_command_parse(data, parser->command_len);
    frame->command_text = out;
    memcpy(out, data, parser->command_len);
    out += parser->command_len;
    *out++ = '\0';

    frame->headers = header_count ? headers : NULL;
    frame->header_count = header_count;
    size_t line_start = parser->headers_start;
    for (size_t i = 0; i < header_count; i++) {
        const char *lf = memchr(data + line_start, '\n', parser->body_start - line_start);
        size_t end = (size_t)(lf - data);
        size_t next = end + 1;
        if (end > line_start && data[end - 1] == '\r')
            end--;
        out = copy_header(parser, data + line_start, end - line_start, &headers[i], out);
        line_start = next;
    }

    frame->body = out;
    frame->body_len = body_len;
    memcpy(out, data + parser->body_start, body_len);
    out[body_len] = '\0';
    return frame;
}

/* Start scanning a new frame: limits and version changes apply from here. */
static void begin_frame(struct stomp_parser *parser)
{
    parser->limits = parser->next_limits;
    parser->version = parser->next_version;
    parser->phase = PHASE_COMMAND;
    parser->scan_pos = 0;
    parser->line_start = 0;
    parser->command_len = 0;
    parser->headers_start = 0;
    parser->header_count = 0;
    parser->body_start = 0;
    parser->escaped = false;
    parser->has_content_length = false;
    parser->content_length = 0;
}

/* Look for the end of the body. Returns STOMP_PARSE_FRAME with *nul set,
 * STOMP_PARSE_NEED_MORE or STOMP_PARSE_ERROR. */
static enum stomp_parse_status scan_body(struct stomp_parser *parser, const char *data, size_t len,
                                         size_t *nul, char *err, size_t err_size)
{
    const struct stomp_limits *limits = &parser->limits;
    if (parser->has_content_length) {
        /* body_start + content_length <= max_frame_size was checked */
        size_t end = parser->body_start + parser->content_length;
        if (len <= end)
            return STOMP_PARSE_NEED_MORE;
        if (data[end] != '\0')
            return parse_fail(parser, err, err_size,
                              "body longer than content-length: no NUL at byte %zu",
                              parser->content_length);
        *nul = end;
        return STOMP_PARSE_FRAME;
    }
    /* The NUL may sit at offset max_frame_size at the latest. */
    size_t last = limits->max_frame_size;
    size_t stop = len <= last ? len : last + 1;
    if (parser->scan_pos < stop) {
        const char *found = memchr(data + parser->scan_pos, '\0', stop - parser->scan_pos);
        if (found != NULL) {
            *nul = (size_t)(found - data);
            return STOMP_PARSE_FRAME;
        }
        parser->scan_pos = stop;
    }
    if (len > last)
        return parse_fail(parser, err, err_size, "frame larger than max_frame_size (%zu bytes)",
                          limits->max_frame_size);
    return STOMP_PARSE_NEED_MORE;
}

enum stomp_parse_status stomp_parse(struct stomp_parser *parser, const char *data, size_t len,
                                    size_t *consumed, struct stomp_frame **frame, char *err,
                                    size_t err_size)
{
    *consumed = 0;
    *frame = NULL;
    if (err != NULL && err_size > 0)
        err[0] = '\0';
    if (parser->phase == PHASE_FAILED) {
        if (err != NULL && err_size > 0)
            snprintf(err, err_size, "%s", parser->failure);
        return STOMP_PARSE_ERROR;
    }
    if (parser->phase == PHASE_START) {
        if (len == 0)
            return STOMP_PARSE_NEED_MORE;
        if (data[0] == '\n') {
            *consumed = 1;
            return STOMP_PARSE_HEARTBEAT;
        }
        if (data[0] == '\r') {
            if (len < 2)
                return STOMP_PARSE_NEED_MORE;
            if (data[1] == '\n') {
                *consumed = 2;
                return STOMP_PARSE_HEARTBEAT;
            }
        }
        begin_frame(parser);
    }
    if (parser->phase == PHASE_COMMAND || parser->phase == PHASE_HEADERS) {
        enum stomp_parse_status status = scan_lines(parser, data, len, err, err_size);
        if (status != STOMP_PARSE_FRAME)
            return status;
    }
    size_t nul = 0;
    enum stomp_parse_status status = scan_body(parser, data, len, &nul, err, err_size);
    if (status != STOMP_PARSE_FRAME)
        return status;
    *frame = build_frame(parser, data, nul);
    if (*frame == NULL)
        return parse_fail(parser, err, err_size, "out of memory for a %zu-byte frame", nul);
    *consumed = nul + 1;
    parser->phase = PHASE_START;
    parser->version = parser->next_version;
    return STOMP_PARSE_FRAME;
}

/* ------------------------------------------------------------------------
 * Serializer
 * ------------------------------------------------------------------------ */

enum escape_mode {
    ESCAPE_NONE, /* 1.0, CONNECT, STOMP, CONNECTED */
    ESCAPE_1_1,  /* \n \c \\ */
    ESCAPE_1_2,  /* \r \n \c \\ */
};

/* Per escape mode, the bytes that are not copied as they are: 1 for those
 * written as two (an escape), 2 for those replaced by one other (NUL, and LF
 * without escapes). Tables so that the common case, a header with nothing to
 * escape, is one scan and one memcpy (architecture "Data path of a
 * delivery"). */
static const unsigned char escape_table[3][256] = {
    [ESCAPE_NONE] = {['\0'] = 2, ['\n'] = 2},
    [ESCAPE_1_1] = {['\0'] = 2, ['\n'] = 1, [':'] = 1, ['\\'] = 1},
    [ESCAPE_1_2] = {['\0'] = 2, ['\n'] = 1, [':'] = 1, ['\\'] = 1, ['\r'] = 1},
};

/* Bytes `text` takes once escaped. STOMP cannot express NUL in a header
 * (and LF without escapes): those are written as a space so a value can
 * never end the frame or start a new header. */
static size_t escaped_length(const char *text, size_t len, enum escape_mode mode)
{
    const unsigned char *table = escape_table[mode];
    size_t out = len;
    for (size_t i = 0; i < len; i++)
        out += table[(unsigned char)text[i]] == 1;
    return out;
}

static char *escape_into(char *out, const char *text, size_t len, enum escape_mode mode)
{
    const unsigned char *table = escape_table[mode];
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && !table[(unsigned char)text[run]])
            run++;
        memcpy(out, text + i, run - i); /* the plain run, as it is */
        out += run - i;
        if (run == len)
            break;
        char c = text[run];
        i = run + 1;
        if (table[(unsigned char)c] == 2) {
            *out++ = ' ';
        } else {
            *out++ = '\\';
            *out++ = c == '\n' ? 'n' : c == ':' ? 'c' : c == '\r' ? 'r' : '\\';
        }
    }
    return out;
}

bool stomp_header_fits(enum stomp_version version, const char *name, size_t name_len,
                       const char *value, size_t value_len)
{
    if (name_len == 0 || memchr(name, '\0', name_len) || memchr(value, '\0', value_len))
        return false;
    if (version == STOMP_VERSION_1_0)
        return !memchr(name, '\n', name_len) && !memchr(name, '\r', name_len) &&
               !memchr(name, ':', name_len) && !memchr(value, '\n', value_len) &&
               !memchr(value, '\r', value_len);
    if (version == STOMP_VERSION_1_1)
        return !memchr(name, '\r', name_len) && !memchr(value, '\r', value_len);
    return true;
}

size_t stomp_decimal(char *out, uint64_t value)
{
    char digits[STOMP_DECIMAL_MAX];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    out[n] = '\0';
    return n;
}

int stomp_frame_write(struct evbuffer *out, enum stomp_version version, enum stomp_command command,
                      const struct stomp_header *headers, size_t header_count, const void *body,
                      size_t body_len, bool content_length)
{
    if (command == STOMP_COMMAND_UNKNOWN || (size_t)command >= COMMAND_COUNT)
        return -1;
    const char *name = command_names[command];
    enum escape_mode mode = ESCAPE_NONE;
    if (command_uses_escapes(command, version))
        mode = version == STOMP_VERSION_1_1 ? ESCAPE_1_1 : ESCAPE_1_2;

    char length_line[sizeof(content_length_name) + STOMP_DECIMAL_MAX + 1];
    size_t length_line_len = 0;
    if (body_len > 0 || content_length) {
        memcpy(length_line, content_length_name, sizeof(content_length_name) - 1);
        length_line_len = sizeof(content_length_name) - 1;
        length_line[length_line_len++] = ':';
        length_line_len += stomp_decimal(length_line + length_line_len, body_len);
        length_line[length_line_len++] = '\n';
    }

    size_t total = strlen(name) + 1;
    for (size_t i = 0; i < header_count; i++) {
        const struct stomp_header *header = &headers[i];
        total += escaped_length(header->name, header->name_len, mode) + 1 +
                 escaped_length(header->value ? header->value : "", header->value_len, mode) + 1;
    }
    total += length_line_len + 1;
    if (total >= (size_t)EV_SSIZE_MAX || body_len > (size_t)EV_SSIZE_MAX - total - 1)
        return -1;
    total += body_len + 1;

    struct evbuffer_iovec vec;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &vec, 1) != 1 || vec.iov_len < total)
        return -1;
    char *p = vec.iov_base;
    size_t name_len = strlen(name);
    memcpy(p, name, name_len);
    p += name_len;
    *p++ = '\n';
    for (size_t i = 0; i < header_count; i++) {
        const struct stomp_header *header = &headers[i];
        p = escape_into(p, header->name, header->name_len, mode);
        *p++ = ':';
        p = escape_into(p, header->value ? header->value : "", header->value_len, mode);
        *p++ = '\n';
    }
    memcpy(p, length_line, length_line_len);
    p += length_line_len;
    *p++ = '\n';
    if (body_len > 0)
        memcpy(p, body, body_len);
    p += body_len;
    *p++ = '\0';
    assert((size_t)(p - (char *)vec.iov_base) ==
           total); /* escaped_length agrees with escape_into */
    vec.iov_len = total;
    return evbuffer_commit_space(out, &vec, 1) == 0 ? 0 : -1;
}
