/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_frame.h -- the STOMP 1.0/1.1/1.2 frame codec: an incremental parser
 * over a byte buffer and a serializer into a libevent evbuffer. No sockets,
 * no core types: the adapter feeds bytes in and acts on whole frames.
 *
 * Rules implemented (STOMP 1.2 spec, "Frames" and "Value Encoding"):
 *  - a frame is COMMAND EOL (header EOL)* EOL body NUL; EOL is LF or CR LF;
 *  - EOLs between frames are heart-beats;
 *  - content-length, when present, gives the body length (the body may hold
 *    NULs) and must be followed by NUL; otherwise the body runs to the first NUL;
 *  - header escapes: none in 1.0; \n \c \\ in 1.1; \r \n \c \\ in 1.2; any
 *    other backslash sequence is an error; CONNECT and CONNECTED frames are
 *    never unescaped/escaped;
 *  - repeated headers are all kept in order; stomp_frame_header returns the first;
 *  - limits: frame size (command + headers + body), header count, header line length. */
#ifndef KBRIDGE_STOMP_FRAME_H
#define KBRIDGE_STOMP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum stomp_version {
    STOMP_VERSION_1_0 = 0,
    STOMP_VERSION_1_1 = 1,
    STOMP_VERSION_1_2 = 2,
};

enum stomp_command {
    STOMP_COMMAND_UNKNOWN = 0,
    /* client frames */
    STOMP_COMMAND_CONNECT,
    STOMP_COMMAND_STOMP,
    STOMP_COMMAND_SEND,
    STOMP_COMMAND_SUBSCRIBE,
    STOMP_COMMAND_UNSUBSCRIBE,
    STOMP_COMMAND_ACK,
    STOMP_COMMAND_NACK,
    STOMP_COMMAND_BEGIN,
    STOMP_COMMAND_COMMIT,
    STOMP_COMMAND_ABORT,
    STOMP_COMMAND_DISCONNECT,
    /* server frames */
    STOMP_COMMAND_CONNECTED,
    STOMP_COMMAND_MESSAGE,
    STOMP_COMMAND_RECEIPT,
    STOMP_COMMAND_ERROR,
};

/* One decoded header. name and value are NUL-terminated (value may also
 * contain NUL bytes only if it was escaped that way, which STOMP cannot
 * express, so in practice it never does). */
struct stomp_header {
    const char *name;
    const char *value;
    size_t name_len;
    size_t value_len;
};

/* A parsed frame: one allocation owning all its strings (stomp_frame_free). */
struct stomp_frame {
    enum stomp_command command;
    const char *command_text; /* as received, for ERROR messages about unknown commands */
    struct stomp_header *headers;
    size_t header_count;
    const char *body; /* NUL-terminated for convenience; body_len excludes it */
    size_t body_len;
};

struct stomp_limits {
    size_t max_frame_size;    /* bytes of command + headers + body */
    size_t max_headers;       /* header lines per frame */
    size_t max_header_length; /* bytes of one header line (name:value) */
};

enum stomp_parse_status {
    STOMP_PARSE_FRAME,     /* *frame is set; `consumed` bytes were used */
    STOMP_PARSE_HEARTBEAT, /* one EOL between frames was consumed */
    STOMP_PARSE_NEED_MORE, /* nothing complete yet; call again with more bytes */
    STOMP_PARSE_ERROR,     /* the stream is broken: err says why; close after ERROR */
};

/* Parser state kept between calls so that a frame arriving in many small
 * pieces is scanned once (linear time in the bytes received). */
struct stomp_parser;

/* New parser with these limits; NULL on allocation failure. */
struct stomp_parser *stomp_parser_new(const struct stomp_limits *limits);
/* Free a parser; NULL is fine. */
void stomp_parser_free(struct stomp_parser *parser);
/* Set the negotiated version (governs header unescaping). Default 1.0 until
 * CONNECT has been answered; CONNECT/STOMP frames are never unescaped. */
void stomp_parser_set_version(struct stomp_parser *parser, enum stomp_version version);
/* Change limits (config reload); applies from the next frame. */
void stomp_parser_set_limits(struct stomp_parser *parser, const struct stomp_limits *limits);

/* Parse from data[0..len). data must start where the previous call's
 * `consumed` left off; bytes not consumed must be passed again (with more
 * appended) on the next call. On STOMP_PARSE_FRAME the caller owns *frame.
 * On STOMP_PARSE_ERROR writes a one-line reason into err ("frame larger than
 * max_frame_size (1048576 bytes)", "header line 3 has no ':'", "invalid
 * escape \\t in header 'destination'", "content-length is not a number",
 * "body longer than content-length: no NUL at byte N", "too many headers
 * (more than 64)"). */
enum stomp_parse_status stomp_parse(struct stomp_parser *parser, const char *data, size_t len,
                                    size_t *consumed, struct stomp_frame **frame, char *err,
                                    size_t err_size);

/* Free a frame; NULL is fine. */
void stomp_frame_free(struct stomp_frame *frame);

/* First header called `name` (exact, case-sensitive), or NULL. */
const struct stomp_header *stomp_frame_header(const struct stomp_frame *frame, const char *name);
/* Its value, or NULL when absent. */
const char *stomp_frame_header_value(const struct stomp_frame *frame, const char *name);

/* Command from/to text ("SEND"); unknown text gives STOMP_COMMAND_UNKNOWN. */
enum stomp_command stomp_command_parse(const char *text, size_t len);
const char *stomp_command_name(enum stomp_command command);

/* Append one frame to `out`, escaping header names and values for `version`
 * (not for CONNECTED). When body_len > 0 or `content_length` is true, a
 * content-length header is added (callers must not pass their own).
 * Returns 0, or -1 on allocation failure. */
int stomp_frame_write(struct evbuffer *out, enum stomp_version version, enum stomp_command command,
                      const struct stomp_header *headers, size_t header_count, const void *body,
                      size_t body_len, bool content_length);

/* Can a header with this name and value be written in a frame of `version`:
 * a name, no NUL anywhere; 1.0 escapes nothing (no CR, LF, or colon in the
 * name); 1.1 escapes all but CR. */
bool stomp_header_fits(enum stomp_version version, const char *name, size_t name_len,
                       const char *value, size_t value_len);

/* Write `value` in decimal at `out` (room for STOMP_DECIMAL_MAX bytes), NUL
 * terminated; returns its length. snprintf's work without its cost, for the
 * numbers of every MESSAGE frame. */
#define STOMP_DECIMAL_MAX 21
size_t stomp_decimal(char *out, uint64_t value);

/* Pick the highest version both sides speak from an accept-version value
 * ("1.0,1.1,1.2"); NULL or empty means 1.0. Returns 0, or -1 when none is
 * supported (the caller answers ERROR with "supported versions: 1.0,1.1,1.2"). */
int stomp_version_negotiate(const char *accept_version, enum stomp_version *out);
/* "1.2" */
const char *stomp_version_name(enum stomp_version version);

/* Parse a heart-beat header "cx,cy" (both >= 0). 0 ok, -1 malformed. */
int stomp_heartbeat_parse(const char *value, uint32_t *cx, uint32_t *cy);

/* Parse a boolean header value: "true" or "false" in any case ("True" is
 * what stomp.py sends for a Python bool; RabbitMQ accepts both spellings).
 * 0 ok, -1 anything else. */
int stomp_bool_parse(const char *value, bool *out);

#endif
