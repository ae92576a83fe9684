/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_frame.h -- AMQP 0-9-1's frame layer and its method/content-header
 * codec (issue 14, architecture §12).
 *
 * The frame layer is our own: the 8-byte protocol header, then frames of
 * type (1 octet), channel (2), size (4), payload (size octets) and the
 * frame-end octet 0xCE, parsed incrementally from whatever bytes have
 * arrived and bounded by the negotiated frame_max. What a method or a
 * content header says is decoded and encoded by librabbitmq's generated
 * codec (amqp_framing.h: amqp_decode_method, amqp_encode_method,
 * amqp_decode_properties, amqp_encode_properties); decoded structs live in
 * the caller's amqp_pool_t.
 *
 * Errors carry the 0-9-1 reply code the connection must be closed with
 * (501 FRAME_ERROR, 502 SYNTAX_ERROR, 540 NOT_IMPLEMENTED) and a text in
 * RabbitMQ's shape. No I/O, no allocation outside the pool. */
#ifndef KBRIDGE_AMQP091_FRAME_H
#define KBRIDGE_AMQP091_FRAME_H

#include <amqp.h>
#include <amqp_framing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AMQP091_FRAME_HEADER_SIZE 7 /* type, channel, size */
#define AMQP091_FRAME_END 0xCE
#define AMQP091_FRAME_OVERHEAD (AMQP091_FRAME_HEADER_SIZE + 1)
/* The smallest frame_max a peer may ask for (the spec's frame-min-size). */
#define AMQP091_FRAME_MIN_SIZE 4096

/* The protocol header a 0-9-1 client opens with, and the one the server
 * answers a wrong header with before closing. */
extern const uint8_t amqp091_protocol_header[8];

enum amqp091_header_status {
    AMQP091_HEADER_OK,        /* the 8 bytes are AMQP 0-9-1's */
    AMQP091_HEADER_NEED_MORE, /* fewer than 8 bytes, all agreeing so far */
    AMQP091_HEADER_MISMATCH,  /* another protocol or version */
};

/* Check the first `len` bytes a client sent against the 0-9-1 header. */
enum amqp091_header_status amqp091_header_check(const uint8_t *data, size_t len);

enum amqp091_frame_type {
    AMQP091_FRAME_METHOD = 1,
    AMQP091_FRAME_HEADER = 2,
    AMQP091_FRAME_BODY = 3,
    AMQP091_FRAME_HEARTBEAT = 8,
};

/* One frame; `payload` points into the parsed buffer. */
struct amqp091_frame {
    uint8_t type;
    uint16_t channel;
    uint32_t size;
    const uint8_t *payload;
};

/* A protocol error: the reply code to close the connection with and its text. */
struct amqp091_error {
    uint16_t code;
    char text[192];
};

enum amqp091_parse_status {
    AMQP091_PARSE_FRAME,     /* *frame is one frame; *consumed bytes used */
    AMQP091_PARSE_NEED_MORE, /* no whole frame yet (nothing consumed) */
    AMQP091_PARSE_ERROR,     /* *error says why; the connection must close */
};

/* Parse one frame from `data`. A frame larger than `frame_max` (its whole
 * size, header and frame-end included, as the spec counts it) is refused as
 * soon as its header arrives, so a client cannot make us buffer more. */
enum amqp091_parse_status amqp091_frame_parse(const uint8_t *data, size_t len, uint32_t frame_max,
                                              struct amqp091_frame *frame, size_t *consumed,
                                              struct amqp091_error *error);

/* A decoded method: its id ((class << 16) | method) and librabbitmq's
 * struct for it (e.g. amqp_basic_publish_t), allocated in the pool. */
struct amqp091_method {
    amqp_method_number_t id;
    void *decoded;
};

/* Decode a method frame's payload. 0, or -1 with error: 502 when the
 * arguments are truncated or malformed, 540 for a class/method id this
 * codec does not know. */
int amqp091_method_decode(const struct amqp091_frame *frame, amqp_pool_t *pool,
                          struct amqp091_method *method, struct amqp091_error *error);

/* A decoded content header: the class, the body size that follows in body
 * frames, and the properties (amqp_basic_properties_t for class 60). */
struct amqp091_content_header {
    uint16_t class_id;
    uint64_t body_size;
    void *properties;
};

/* How deep field tables and arrays may nest in what kbridged decodes
 * (librabbitmq's decoder recurses without a limit: a deep enough table
 * would exhaust the stack). */
#define AMQP091_TABLE_MAX_DEPTH 64

/* Is the encoded field table at `p` (its long-uint length first, `len`
 * bytes available) well formed as far as lengths and types go, with tables
 * and arrays nested at most `max_depth` deep? Checked before
 * amqp_decode_table / amqp_decode_properties. */
bool amqp091_table_check(const uint8_t *p, size_t len, int max_depth);

/* Decode a content-header frame's payload (its headers table passed
 * through amqp091_table_check); 0, or -1 with error 502. */
int amqp091_content_header_decode(const struct amqp091_frame *frame, amqp_pool_t *pool,
                                  struct amqp091_content_header *header,
                                  struct amqp091_error *error);

/* Write a whole method frame (header, class/method id, arguments, frame-end)
 * for `channel` into out[0..out_size). Returns its length, or -1 when it
 * does not fit or cannot be encoded. */
int amqp091_method_encode(uint16_t channel, amqp_method_number_t id, void *decoded, uint8_t *out,
                          size_t out_size);

/* Write a whole content-header frame (class, weight 0, body size,
 * properties). Returns its length or -1. */
int amqp091_content_header_encode(uint16_t channel, uint16_t class_id, uint64_t body_size,
                                  void *properties, uint8_t *out, size_t out_size);

/* Write a frame's 7-byte header for `type`, `channel` and `size`; the caller
 * adds the payload and the frame-end octet (body frames, heartbeats). */
void amqp091_frame_header_write(uint8_t out[AMQP091_FRAME_HEADER_SIZE], uint8_t type,
                                uint16_t channel, uint32_t size);

#endif
