/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_amqp091_frame.c -- libFuzzer target for AMQP 0-9-1's frame layer and
 * method/content-header decoding (adapters/amqp091/amqp091_frame.c over
 * librabbitmq's codec): what a client sends after the protocol header.
 *
 * The input's first byte picks frame_max (4096 or 131072) and how the rest
 * arrives (whole, or split at one point, as two reads would deliver it);
 * the rest is frames. Every frame parsed must lie within the input and
 * within frame_max; a split delivery must yield the same frames as a whole
 * one; a method that decodes must encode again, decode to the same method
 * id and encode to the same bytes (the codec is a fixed point after one
 * trip); a content header likewise for its properties. A refusal must carry
 * a 0-9-1 reply code (501, 502, 540 or 541) and a printable one-line text.
 * Any violation aborts. Also built by `make check` with replay_main.c,
 * which replays tests/fuzz/corpus/amqp091_frame without clang. */
#include "amqp091_frame.h"

#include <stdbool.h>
#include <string.h>

#include "fuzz_check.h"

#define ENCODE_ROOM (262144 + 64)

static uint8_t first[ENCODE_ROOM], second[ENCODE_ROOM];

static void check_error(const struct amqp091_error *error)
{
    FUZZ_CHECK(error->code == 501 || error->code == 502 || error->code == 540 || error->code == 541,
               "reply code %u", error->code);
    FUZZ_CHECK(error->text[0] != '\0', "empty error text");
    for (const char *c = error->text; *c; c++)
        FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "unprintable byte 0x%02x in '%s'", (unsigned char)*c,
                   error->text);
}

static void check_method(const struct amqp091_frame *frame)
{
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    struct amqp091_method method;
    struct amqp091_error error;
    if (amqp091_method_decode(frame, &pool, &method, &error) < 0) {
        check_error(&error);
        empty_amqp_pool(&pool);
        return;
    }
    int len1 =
        amqp091_method_encode(frame->channel, method.id, method.decoded, first, sizeof(first));
    FUZZ_CHECK(len1 > 0, "a decoded %s did not encode", amqp_method_name(method.id));
    struct amqp091_frame again;
    size_t consumed;
    FUZZ_CHECK(amqp091_frame_parse(first, (size_t)len1, ENCODE_ROOM, &again, &consumed, &error) ==
                   AMQP091_PARSE_FRAME,
               "our own encoding did not parse: %s", error.text);
    struct amqp091_method method2;
    FUZZ_CHECK(amqp091_method_decode(&again, &pool, &method2, &error) == 0,
               "our own encoding did not decode: %s", error.text);
    FUZZ_CHECK(method2.id == method.id, "id %08x became %08x", method.id, method2.id);
    int len2 =
        amqp091_method_encode(frame->channel, method2.id, method2.decoded, second, sizeof(second));
    FUZZ_CHECK(len2 == len1 && memcmp(first, second, (size_t)len1) == 0,
               "%s is not a fixed point of encode/decode", amqp_method_name(method.id));
    empty_amqp_pool(&pool);
}

static void check_content_header(const struct amqp091_frame *frame)
{
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    struct amqp091_content_header header;
    struct amqp091_error error;
    if (amqp091_content_header_decode(frame, &pool, &header, &error) < 0) {
        check_error(&error);
        empty_amqp_pool(&pool);
        return;
    }
    int len1 = amqp091_content_header_encode(frame->channel, header.class_id, header.body_size,
                                             header.properties, first, sizeof(first));
    FUZZ_CHECK(len1 > 0, "decoded properties of class %u did not encode", header.class_id);
    struct amqp091_frame again;
    size_t consumed;
    FUZZ_CHECK(amqp091_frame_parse(first, (size_t)len1, ENCODE_ROOM, &again, &consumed, &error) ==
                   AMQP091_PARSE_FRAME,
               "our own content header did not parse");
    struct amqp091_content_header header2;
    FUZZ_CHECK(amqp091_content_header_decode(&again, &pool, &header2, &error) == 0,
               "our own content header did not decode: %s", error.text);
    FUZZ_CHECK(header2.class_id == header.class_id && header2.body_size == header.body_size,
               "class or body size changed");
    int len2 = amqp091_content_header_encode(frame->channel, header2.class_id, header2.body_size,
                                             header2.properties, second, sizeof(second));
    FUZZ_CHECK(len2 == len1 && memcmp(first, second, (size_t)len1) == 0,
               "content header is not a fixed point of encode/decode");
    empty_amqp_pool(&pool);
}

/* Parse every frame of data[0..size) as a connection would, reading from a
 * buffer that holds what has arrived. Returns the number of frames; stops at
 * the first error (the connection would close) or when more bytes are needed. */
static size_t parse_all(const uint8_t *data, size_t size, size_t arrived_first, uint32_t frame_max,
                        uint32_t *frame_sizes, size_t max_frames, bool check_contents)
{
    size_t at = 0, frames = 0, arrived = arrived_first;
    for (;;) {
        struct amqp091_frame frame;
        struct amqp091_error error;
        size_t consumed;
        enum amqp091_parse_status status =
            amqp091_frame_parse(data + at, arrived - at, frame_max, &frame, &consumed, &error);
        if (status == AMQP091_PARSE_NEED_MORE) {
            if (arrived == size)
                return frames;
            arrived = size; /* the second read */
            continue;
        }
        if (status == AMQP091_PARSE_ERROR) {
            check_error(&error);
            return frames;
        }
        FUZZ_CHECK(consumed == (size_t)frame.size + AMQP091_FRAME_OVERHEAD &&
                       at + consumed <= arrived,
                   "frame of %zu bytes past what arrived", consumed);
        FUZZ_CHECK(consumed <=
                       (frame_max < AMQP091_FRAME_MIN_SIZE ? AMQP091_FRAME_MIN_SIZE : frame_max),
                   "frame of %zu bytes above frame_max %u", consumed, frame_max);
        if (frames < max_frames)
            frame_sizes[frames] = frame.size;
        frames++;
        if (check_contents) {
            if (frame.type == AMQP091_FRAME_METHOD)
                check_method(&frame);
            else if (frame.type == AMQP091_FRAME_HEADER)
                check_content_header(&frame);
        }
        at += consumed;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    data++;
    size--;
    uint32_t frame_max = (flags & 1) ? 131072 : 4096;
    size_t split = size ? (size_t)(flags >> 1) * size / 127 : 0;
    if (split > size)
        split = size;
    uint32_t whole[64], parts[64];
    size_t n_whole = parse_all(data, size, size, frame_max, whole, 64, true);
    size_t n_parts = parse_all(data, size, split, frame_max, parts, 64, false);
    FUZZ_CHECK(n_whole == n_parts, "%zu frames whole, %zu when split at %zu", n_whole, n_parts,
               split);
    for (size_t i = 0; i < n_whole && i < 64; i++)
        FUZZ_CHECK(whole[i] == parts[i], "frame %zu: %u bytes whole, %u split", i, whole[i],
                   parts[i]);
    return 0;
}
