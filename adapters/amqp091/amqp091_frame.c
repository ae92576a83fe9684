/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_frame.c -- AMQP 0-9-1 frames (amqp091_frame.h): the protocol
 * header, incremental bounded frame parsing, and the method/content-header
 * codec through librabbitmq's generated amqp_framing functions. */
#include "amqp091_frame.h"

#include <stdio.h>
#include <string.h>

const uint8_t amqp091_protocol_header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};

enum amqp091_header_status amqp091_header_check(const uint8_t *data, size_t len)
{
    size_t n = len < sizeof(amqp091_protocol_header) ? len : sizeof(amqp091_protocol_header);
    if (memcmp(data, amqp091_protocol_header, n) != 0)
        return AMQP091_HEADER_MISMATCH;
    return n == sizeof(amqp091_protocol_header) ? AMQP091_HEADER_OK : AMQP091_HEADER_NEED_MORE;
}

static uint16_t read_u16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static uint32_t read_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t read_u64(const uint8_t *p)
{
    return ((uint64_t)read_u32(p) << 32) | read_u32(p + 4);
}

static void write_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void write_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void write_u64(uint8_t *p, uint64_t v)
{
    write_u32(p, (uint32_t)(v >> 32));
    write_u32(p + 4, (uint32_t)v);
}

static enum amqp091_parse_status fail(struct amqp091_error *error, uint16_t code, const char *text)
{
    error->code = code;
    snprintf(error->text, sizeof(error->text), "%s", text);
    return AMQP091_PARSE_ERROR;
}

enum amqp091_parse_status amqp091_frame_parse(const uint8_t *data, size_t len, uint32_t frame_max,
                                              struct amqp091_frame *frame, size_t *consumed,
                                              struct amqp091_error *error)
{
    *consumed = 0;
    if (len < AMQP091_FRAME_HEADER_SIZE)
        return AMQP091_PARSE_NEED_MORE;
    uint8_t type = data[0];
    uint16_t channel = read_u16(data + 1);
    uint32_t size = read_u32(data + 3);
    char text[sizeof(error->text)];
    if (type != AMQP091_FRAME_METHOD && type != AMQP091_FRAME_HEADER &&
        type != AMQP091_FRAME_BODY && type != AMQP091_FRAME_HEARTBEAT) {
        snprintf(text, sizeof(text), "FRAME_ERROR - unknown frame type %u", type);
        return fail(error, AMQP_FRAME_ERROR, text);
    }
    /* Until Tune-Ok, and never below it: the spec's frame-min-size. */
    if (frame_max < AMQP091_FRAME_MIN_SIZE)
        frame_max = AMQP091_FRAME_MIN_SIZE;
    if ((uint64_t)size + AMQP091_FRAME_OVERHEAD > frame_max) {
        snprintf(text, sizeof(text),
                 "FRAME_ERROR - frame size %llu larger than negotiated maximum %u",
                 (unsigned long long)size + AMQP091_FRAME_OVERHEAD, frame_max);
        return fail(error, AMQP_FRAME_ERROR, text);
    }
    if (type == AMQP091_FRAME_HEARTBEAT && channel != 0) {
        snprintf(text, sizeof(text), "FRAME_ERROR - heartbeat frame on channel %u", channel);
        return fail(error, AMQP_FRAME_ERROR, text);
    }
    if (len < (size_t)size + AMQP091_FRAME_OVERHEAD)
        return AMQP091_PARSE_NEED_MORE;
    if (data[AMQP091_FRAME_HEADER_SIZE + size] != AMQP091_FRAME_END) {
        snprintf(text, sizeof(text), "FRAME_ERROR - frame end octet 0x%02x, expected 0xce",
                 data[AMQP091_FRAME_HEADER_SIZE + size]);
        return fail(error, AMQP_FRAME_ERROR, text);
    }
    frame->type = type;
    frame->channel = channel;
    frame->size = size;
    frame->payload = data + AMQP091_FRAME_HEADER_SIZE;
    *consumed = (size_t)size + AMQP091_FRAME_OVERHEAD;
    return AMQP091_PARSE_FRAME;
}

/* Where the field table of a method's arguments starts, for the methods
 * that carry one: the fields before it, one letter each (o octet, s short,
 * S shortstr, b an octet of bits). NULL for a method without a table. */
static const char *method_fields_before_table(amqp_method_number_t id)
{
    switch (id) {
    case AMQP_CONNECTION_START_METHOD: return "oo";  /* server-properties */
    case AMQP_CONNECTION_START_OK_METHOD: return ""; /* client-properties */
    case AMQP_EXCHANGE_DECLARE_METHOD: return "sSSb";
    case AMQP_EXCHANGE_BIND_METHOD:
    case AMQP_EXCHANGE_UNBIND_METHOD: return "sSSSb";
    case AMQP_QUEUE_DECLARE_METHOD: return "sSb";
    case AMQP_QUEUE_BIND_METHOD: return "sSSSb";
    case AMQP_QUEUE_UNBIND_METHOD: return "sSSS";
    case AMQP_BASIC_CONSUME_METHOD: return "sSSb";
    default: return NULL;
    }
}

/* Is the method's arguments table (if it has one and the arguments reach
 * it) nested at most AMQP091_TABLE_MAX_DEPTH deep and well formed? A
 * truncation before the table is left to librabbitmq's decoder (502). */
static bool method_table_check(amqp_method_number_t id, const uint8_t *p, size_t len)
{
    const char *fields = method_fields_before_table(id);
    if (!fields)
        return true;
    size_t at = 0;
    for (; *fields; fields++) {
        if (*fields == 'S')
            at += at < len ? 1 + (size_t)p[at] : 1;
        else
            at += *fields == 's' ? 2 : 1;
        if (at > len)
            return true;
    }
    return at >= len || amqp091_table_check(p + at, len - at, AMQP091_TABLE_MAX_DEPTH);
}

int amqp091_method_decode(const struct amqp091_frame *frame, amqp_pool_t *pool,
                          struct amqp091_method *method, struct amqp091_error *error)
{
    if (frame->size < 4) {
        fail(error, AMQP_SYNTAX_ERROR, "SYNTAX_ERROR - method frame shorter than its ids");
        return -1;
    }
    method->id = read_u32(frame->payload);
    amqp_bytes_t arguments = {frame->size - 4, (void *)(frame->payload + 4)};
    /* librabbitmq's table decoder recurses without a limit */
    if (!method_table_check(method->id, frame->payload + 4, frame->size - 4)) {
        char text[sizeof(error->text)];
        snprintf(text, sizeof(text),
                 "SYNTAX_ERROR - malformed arguments table of %s (or nested deeper than %d)",
                 amqp_method_name(method->id), AMQP091_TABLE_MAX_DEPTH);
        fail(error, AMQP_SYNTAX_ERROR, text);
        return -1;
    }
    int rc = amqp_decode_method(method->id, pool, arguments, &method->decoded);
    if (rc == AMQP_STATUS_OK)
        return 0;
    char text[sizeof(error->text)];
    if (rc == AMQP_STATUS_UNKNOWN_METHOD) {
        snprintf(text, sizeof(text), "NOT_IMPLEMENTED - unknown method class %u method %u",
                 method->id >> 16, method->id & 0xffff);
        fail(error, AMQP_NOT_IMPLEMENTED, text);
    } else if (rc == AMQP_STATUS_NO_MEMORY) {
        fail(error, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory decoding a method");
    } else {
        snprintf(text, sizeof(text), "SYNTAX_ERROR - malformed arguments of %s",
                 amqp_method_name(method->id));
        fail(error, AMQP_SYNTAX_ERROR, text);
    }
    return -1;
}

/* One field value of kind `kind` at p (len bytes available): its size in
 * *used, nested tables and arrays checked down to depth_left. */
static bool field_check(uint8_t kind, const uint8_t *p, size_t len, int depth_left, size_t *used)
{
    size_t fixed = 0;
    switch (kind) {
    case 't':
    case 'b':
    case 'B': fixed = 1; break;
    case 's':
    case 'u': fixed = 2; break;
    case 'I':
    case 'i':
    case 'f': fixed = 4; break;
    case 'l':
    case 'L':
    case 'd':
    case 'T': fixed = 8; break;
    case 'D': fixed = 5; break;
    case 'V': fixed = 0; break;
    case 'S':
    case 'x':
        if (len < 4 || read_u32(p) > len - 4)
            return false;
        *used = 4 + (size_t)read_u32(p);
        return true;
    case 'F':
        if (depth_left <= 0 || !amqp091_table_check(p, len, depth_left - 1))
            return false;
        *used = 4 + (size_t)read_u32(p);
        return true;
    case 'A': {
        if (depth_left <= 0 || len < 4 || read_u32(p) > len - 4)
            return false;
        size_t size = read_u32(p), at = 0;
        while (at < size) {
            size_t one;
            if (!field_check(p[4 + at], p + 5 + at, size - at - 1, depth_left - 1, &one))
                return false;
            at += 1 + one;
        }
        *used = 4 + size;
        return true;
    }
    default: return false;
    }
    if (len < fixed)
        return false;
    *used = fixed;
    return true;
}

bool amqp091_table_check(const uint8_t *p, size_t len, int max_depth)
{
    if (len < 4 || read_u32(p) > len - 4)
        return false;
    size_t size = read_u32(p), at = 0;
    const uint8_t *entries = p + 4;
    while (at < size) {
        size_t key = entries[at]; /* shortstr key, then the value's kind */
        if (key + 2 > size - at)
            return false;
        size_t one;
        if (!field_check(entries[at + 1 + key], entries + at + 2 + key, size - at - 2 - key,
                         max_depth, &one))
            return false;
        at += 2 + key + one;
    }
    return true;
}

int amqp091_content_header_decode(const struct amqp091_frame *frame, amqp_pool_t *pool,
                                  struct amqp091_content_header *header,
                                  struct amqp091_error *error)
{
    if (frame->size < 14) { /* class, weight, body size, property flags */
        fail(error, AMQP_SYNTAX_ERROR, "SYNTAX_ERROR - content header frame too short");
        return -1;
    }
    header->class_id = read_u16(frame->payload);
    header->body_size = read_u64(frame->payload + 4);
    /* Basic, the only class with content, has 14 properties: bits 15..2 of
     * one flags word. Bit 1 names no property and bit 0 (another flags word
     * follows) is never needed; librabbitmq would read such words into
     * flags no encoder writes back the same, so they are refused. */
    uint16_t flags = read_u16(frame->payload + 12);
    if (flags & 0x0003) {
        char text[sizeof(error->text)];
        snprintf(text, sizeof(text),
                 "SYNTAX_ERROR - content header property flags 0x%04x name no property", flags);
        fail(error, AMQP_SYNTAX_ERROR, text);
        return -1;
    }
    if (header->class_id == AMQP_BASIC_CLASS && (flags & AMQP_BASIC_HEADERS_FLAG)) {
        /* the headers table follows content-type and content-encoding */
        size_t at = 14;
        for (uint16_t bit = AMQP_BASIC_CONTENT_TYPE_FLAG; bit > AMQP_BASIC_HEADERS_FLAG; bit >>= 1)
            if ((flags & bit) && at < frame->size)
                at += 1 + frame->payload[at];
        if (at >= frame->size ||
            !amqp091_table_check(frame->payload + at, frame->size - at, AMQP091_TABLE_MAX_DEPTH)) {
            fail(error, AMQP_SYNTAX_ERROR,
                 "SYNTAX_ERROR - malformed headers table (or nested deeper than 64)");
            return -1;
        }
    }
    amqp_bytes_t encoded = {frame->size - 12, (void *)(frame->payload + 12)};
    int rc = amqp_decode_properties(header->class_id, pool, encoded, &header->properties);
    if (rc == AMQP_STATUS_OK)
        return 0;
    char text[sizeof(error->text)];
    if (rc == AMQP_STATUS_UNKNOWN_CLASS)
        snprintf(text, sizeof(text), "SYNTAX_ERROR - content header of unknown class %u",
                 header->class_id);
    else
        snprintf(text, sizeof(text), "SYNTAX_ERROR - malformed content header properties");
    fail(error, rc == AMQP_STATUS_NO_MEMORY ? AMQP_INTERNAL_ERROR : AMQP_SYNTAX_ERROR, text);
    return -1;
}

void amqp091_frame_header_write(uint8_t out[AMQP091_FRAME_HEADER_SIZE], uint8_t type,
                                uint16_t channel, uint32_t size)
{
    out[0] = type;
    write_u16(out + 1, channel);
    write_u32(out + 3, size);
}

/* Write the header and frame-end of a frame whose payload of `size` bytes is
 * already at out + 7; returns the frame's whole length. */
static int frame_finish(uint8_t *out, uint8_t type, uint16_t channel, uint32_t size)
{
    amqp091_frame_header_write(out, type, channel, size);
    out[AMQP091_FRAME_HEADER_SIZE + size] = AMQP091_FRAME_END;
    return (int)(size + AMQP091_FRAME_OVERHEAD);
}

int amqp091_method_encode(uint16_t channel, amqp_method_number_t id, void *decoded, uint8_t *out,
                          size_t out_size)
{
    if (out_size < AMQP091_FRAME_OVERHEAD + 4)
        return -1;
    write_u32(out + AMQP091_FRAME_HEADER_SIZE, id);
    amqp_bytes_t room = {out_size - AMQP091_FRAME_OVERHEAD - 4,
                         out + AMQP091_FRAME_HEADER_SIZE + 4};
    int n = amqp_encode_method(id, decoded, room);
    if (n < 0)
        return -1;
    return frame_finish(out, AMQP091_FRAME_METHOD, channel, (uint32_t)n + 4);
}

int amqp091_content_header_encode(uint16_t channel, uint16_t class_id, uint64_t body_size,
                                  void *properties, uint8_t *out, size_t out_size)
{
    if (out_size < AMQP091_FRAME_OVERHEAD + 12)
        return -1;
    uint8_t *payload = out + AMQP091_FRAME_HEADER_SIZE;
    write_u16(payload, class_id);
    write_u16(payload + 2, 0); /* weight: unused, must be zero */
    write_u64(payload + 4, body_size);
    amqp_bytes_t room = {out_size - AMQP091_FRAME_OVERHEAD - 12, payload + 12};
    int n = amqp_encode_properties(class_id, properties, room);
    if (n < 0)
        return -1;
    return frame_finish(out, AMQP091_FRAME_HEADER, channel, (uint32_t)n + 12);
}
