/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_convert.c -- basic properties and the headers table to and from
 * record headers, argument tables to JSON (amqp091_convert.h). */
#include "amqp091_convert.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp091_frame.h"
#include "record.h"

/* Room for one number written as text (and its NUL). */
#define AMQP091_NUMBER_TEXT 48

/* Writing names and values into one text buffer sized up front. */
struct text_out {
    char *text;
    size_t used;
    size_t size;
};

static const char *text_put(struct text_out *out, const void *bytes, size_t len)
{
    if (out->used + len + 1 > out->size)
        return NULL; /* sized up front: cannot happen */
    char *at = out->text + out->used;
    memcpy(at, bytes, len);
    at[len] = '\0';
    out->used += len + 1;
    return at;
}

static const char *text_printf(struct text_out *out, size_t *len, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static const char *text_printf(struct text_out *out, size_t *len, const char *format, ...)
{
    if (out->used + AMQP091_NUMBER_TEXT > out->size)
        return NULL;
    char *at = out->text + out->used;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(at, AMQP091_NUMBER_TEXT, format, args);
    va_end(args);
    if (n < 0 || n >= AMQP091_NUMBER_TEXT)
        return NULL;
    out->used += (size_t)n + 1;
    *len = (size_t)n;
    return at;
}

static void add(struct amqp091_record_headers *out, const char *name, const void *value, size_t len)
{
    out->properties[out->count++] = (struct core_property){name, value, len};
}

static void add_bytes(struct amqp091_record_headers *out, uint16_t flags, uint16_t flag,
                      const char *name, amqp_bytes_t bytes)
{
    if (flags & flag)
        add(out, name, bytes.bytes ? bytes.bytes : "", bytes.len);
}

/* A decimal (value * 10^-decimals) written exactly into out[AMQP091_NUMBER_TEXT]:
 * "12.34"; false for more than 10 decimals (RabbitMQ's clients send fewer). */
static bool decimal_text(const amqp_decimal_t *decimal, char *out)
{
    uint32_t v = decimal->value;
    uint8_t d = decimal->decimals;
    char digits[16];
    int n = snprintf(digits, sizeof(digits), "%" PRIu32, v);
    if (n <= 0 || d > 10)
        return false;
    if (d == 0)
        snprintf(out, AMQP091_NUMBER_TEXT, "%s", digits);
    else if ((int)d >= n)
        snprintf(out, AMQP091_NUMBER_TEXT, "0.%0*d%s", (int)d - n, 0, digits);
    else
        snprintf(out, AMQP091_NUMBER_TEXT, "%.*s.%s", n - (int)d, digits, digits + n - d);
    return true;
}

static json_t *value_to_json(const amqp_field_value_t *value, bool natural, char *err,
                             size_t err_size);

/* A headers-table value as the text other protocols read (docs/amqp091.md
 * "Properties"); `json` is the value's JSON text when it is a table or an
 * array (made by the caller). NULL when it cannot be written. */
static const char *value_text(const amqp_field_value_t *value, const char *json,
                              struct text_out *text, size_t *len)
{
    switch (value->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        *len = value->value.bytes.len;
        return value->value.bytes.bytes ? value->value.bytes.bytes : "";
    case AMQP_FIELD_KIND_BOOLEAN:
        *len = value->value.boolean ? 4 : 5;
        return value->value.boolean ? "true" : "false";
    case AMQP_FIELD_KIND_I8: return text_printf(text, len, "%d", value->value.i8);
    case AMQP_FIELD_KIND_U8: return text_printf(text, len, "%u", value->value.u8);
    case AMQP_FIELD_KIND_I16: return text_printf(text, len, "%d", value->value.i16);
    case AMQP_FIELD_KIND_U16: return text_printf(text, len, "%u", value->value.u16);
    case AMQP_FIELD_KIND_I32: return text_printf(text, len, "%" PRId32, value->value.i32);
    case AMQP_FIELD_KIND_U32: return text_printf(text, len, "%" PRIu32, value->value.u32);
    case AMQP_FIELD_KIND_I64: return text_printf(text, len, "%" PRId64, value->value.i64);
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP: return text_printf(text, len, "%" PRIu64, value->value.u64);
    case AMQP_FIELD_KIND_F32: return text_printf(text, len, "%.9g", (double)value->value.f32);
    case AMQP_FIELD_KIND_F64: return text_printf(text, len, "%.17g", value->value.f64);
    case AMQP_FIELD_KIND_DECIMAL: {
        char decimal[AMQP091_NUMBER_TEXT];
        if (!decimal_text(&value->value.decimal, decimal))
            return NULL;
        return text_printf(text, len, "%s", decimal);
    }
    case AMQP_FIELD_KIND_VOID: *len = 0; return "";
    case AMQP_FIELD_KIND_TABLE:
    case AMQP_FIELD_KIND_ARRAY:
        if (!json)
            return NULL;
        *len = strlen(json);
        return text_put(text, json, *len);
    default: return NULL;
    }
}

static bool is_private_name(amqp_bytes_t key)
{
    size_t len = strlen(RECORD_AMQP091_PREFIX);
    return key.len >= len && memcmp(key.bytes, RECORD_AMQP091_PREFIX, len) == 0;
}

/* The headers table in 0-9-1's own encoding (a long-uint length, then the
 * entries), for kbridge-amqp091-headers: malloc'ed into *out. 0 or -1. */
static int encode_table(amqp_table_t *table, uint8_t **out, size_t *out_len)
{
    for (size_t size = 4096; size <= ((size_t)64 << 20); size *= 2) {
        uint8_t *buffer = malloc(size);
        if (!buffer)
            return -1;
        size_t offset = 0;
        int rc = amqp_encode_table((amqp_bytes_t){size, buffer}, table, &offset);
        if (rc == AMQP_STATUS_OK) {
            *out = buffer;
            *out_len = offset;
            return 0;
        }
        free(buffer);
        /* librabbitmq says BAD_AMQP_DATA, not TABLE_TOO_BIG, when the
         * buffer ends exactly at a value's type octet (found by
         * fuzz_amqp091_convert): too small all the same */
        bool full =
            rc == AMQP_STATUS_TABLE_TOO_BIG || (rc == AMQP_STATUS_BAD_AMQP_DATA && offset >= size);
        if (!full)
            return -1;
    }
    return -1;
}

int amqp091_record_headers_from_properties(const amqp_basic_properties_t *p, uint64_t now_ms,
                                           struct amqp091_record_headers *out, uint16_t *code,
                                           char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    uint16_t flags = p->_flags;
    size_t entries = (flags & AMQP_BASIC_HEADERS_FLAG) ? (size_t)p->headers.num_entries : 0;
    size_t text_size = 8 * AMQP091_NUMBER_TEXT;
    char **json = calloc(entries ? entries : 1, sizeof(*json));
    bool typed = false; /* a value text cannot carry exactly: keep the table */
    for (size_t i = 0; json && i < entries; i++) {
        const amqp_field_value_t *value = &p->headers.entries[i].value;
        text_size += p->headers.entries[i].key.len + 1 + AMQP091_NUMBER_TEXT;
        typed |= value->kind != AMQP_FIELD_KIND_UTF8 || is_private_name(p->headers.entries[i].key);
        if (value->kind == AMQP_FIELD_KIND_TABLE || value->kind == AMQP_FIELD_KIND_ARRAY) {
            char ignored[64];
            json_t *tree = value_to_json(value, true, ignored, sizeof(ignored));
            json[i] = tree ? json_dumps(tree, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            json_decref(tree);
            text_size += json[i] ? strlen(json[i]) + 1 : 0;
        }
    }
    out->properties = calloc(entries + 20, sizeof(*out->properties));
    out->text = malloc(text_size);
    if (!json || !out->properties || !out->text ||
        (typed && encode_table((amqp_table_t *)&p->headers, &out->typed, &out->typed_len) < 0)) {
        for (size_t i = 0; json && i < entries; i++)
            free(json[i]);
        free(json);
        amqp091_record_headers_free(out);
        *code = AMQP_INTERNAL_ERROR;
        snprintf(err, err_size, "INTERNAL_ERROR - out of memory");
        return -1;
    }
    struct text_out text = {out->text, 0, text_size};
    size_t len;
    const char *value;

    add_bytes(out, flags, AMQP_BASIC_CONTENT_TYPE_FLAG, "content-type", p->content_type);
    add_bytes(out, flags, AMQP_BASIC_CONTENT_ENCODING_FLAG, "content-encoding",
              p->content_encoding);
    if ((flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && p->delivery_mode == 2)
        add(out, "persistent", "true", 4);
    else if ((flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
             (value = text_printf(&text, &len, "%u", p->delivery_mode)))
        add(out, AMQP091_HEADER_DELIVERY_MODE, value, len);
    if ((flags & AMQP_BASIC_PRIORITY_FLAG) && (value = text_printf(&text, &len, "%u", p->priority)))
        add(out, "priority", value, len);
    add_bytes(out, flags, AMQP_BASIC_CORRELATION_ID_FLAG, "correlation-id", p->correlation_id);
    add_bytes(out, flags, AMQP_BASIC_REPLY_TO_FLAG, "reply-to", p->reply_to);
    if (flags & AMQP_BASIC_EXPIRATION_FLAG) {
        /* RabbitMQ: a non-negative integer of milliseconds, as a string */
        uint64_t ms = 0;
        bool ok = p->expiration.len > 0 && p->expiration.len <= 19;
        for (size_t i = 0; ok && i < p->expiration.len; i++) {
            char c = ((const char *)p->expiration.bytes)[i];
            ok = c >= '0' && c <= '9';
            ms = ms * 10 + (uint64_t)(c - '0');
        }
        if (!ok) {
            for (size_t i = 0; i < entries; i++)
                free(json[i]);
            free(json);
            amqp091_record_headers_free(out);
            *code = AMQP_PRECONDITION_FAILED;
            snprintf(err, err_size, "PRECONDITION_FAILED - invalid expiration '%.*s'",
                     (int)(p->expiration.len > 64 ? 64 : p->expiration.len),
                     (const char *)p->expiration.bytes);
            return -1;
        }
        /* an absolute time; 0 would mean "never", so an immediate expiry is now_ms */
        uint64_t expires = now_ms + ms;
        if ((value = text_printf(&text, &len, "%" PRIu64, expires ? expires : 1)))
            add(out, RECORD_HEADER_EXPIRES, value, len);
        /* and the relative value as sent, which 0-9-1 gets back (DESIGN §11) */
        add(out, AMQP091_HEADER_EXPIRATION, p->expiration.bytes, p->expiration.len);
    }
    add_bytes(out, flags, AMQP_BASIC_MESSAGE_ID_FLAG, "message-id", p->message_id);
    if (!(flags & AMQP_BASIC_MESSAGE_ID_FLAG))
        add(out, AMQP091_HEADER_NO_MESSAGE_ID, "true", 4);
    if ((flags & AMQP_BASIC_TIMESTAMP_FLAG) &&
        (value = text_printf(&text, &len, "%" PRIu64, p->timestamp * 1000)))
        add(out, "timestamp", value, len);
    add_bytes(out, flags, AMQP_BASIC_TYPE_FLAG, "type", p->type);
    add_bytes(out, flags, AMQP_BASIC_USER_ID_FLAG, "user-id", p->user_id);
    add_bytes(out, flags, AMQP_BASIC_APP_ID_FLAG, "app-id", p->app_id);
    add_bytes(out, flags, AMQP_BASIC_CLUSTER_ID_FLAG, "cluster-id", p->cluster_id);
    if (out->typed)
        add(out, AMQP091_HEADER_TABLE, out->typed, out->typed_len);

    int rc = 0;
    for (size_t i = 0; i < entries; i++) {
        const amqp_table_entry_t *entry = &p->headers.entries[i];
        if (is_private_name(entry->key))
            continue; /* kept in the typed table only */
        const char *name = text_put(&text, entry->key.bytes, entry->key.len);
        value = name ? value_text(&entry->value, json[i], &text, &len) : NULL;
        if (!value) {
            *code = name ? AMQP_PRECONDITION_FAILED : AMQP_INTERNAL_ERROR;
            snprintf(err, err_size,
                     "PRECONDITION_FAILED - header '%.*s' has a value kbridge cannot write as "
                     "a Kafka header (type '%c')",
                     (int)(entry->key.len > 64 ? 64 : entry->key.len),
                     (const char *)entry->key.bytes, entry->value.kind);
            rc = -1;
            break;
        }
        add(out, name, value, len);
    }
    for (size_t i = 0; i < entries; i++)
        free(json[i]);
    free(json);
    if (rc < 0)
        amqp091_record_headers_free(out);
    return rc;
}

void amqp091_record_headers_free(struct amqp091_record_headers *headers)
{
    free(headers->properties);
    free(headers->text);
    free(headers->typed);
    headers->properties = NULL;
    headers->text = NULL;
    headers->typed = NULL;
    headers->count = 0;
}

/* ---- record headers to properties ------------------------------------------------ */

static bool name_is(const struct amqp091_header_in *h, const char *name)
{
    size_t len = strlen(name);
    return h->name_len == len && memcmp(h->name, name, len) == 0;
}

static amqp_bytes_t bytes_of(const struct amqp091_header_in *h)
{
    return (amqp_bytes_t){h->value_len, (void *)h->value};
}

/* A decimal header value as an integer; false when it is not one. */
static bool parse_u64(const struct amqp091_header_in *h, uint64_t *out)
{
    uint64_t v = 0;
    if (h->value_len == 0 || h->value_len > 19)
        return false;
    for (size_t i = 0; i < h->value_len; i++) {
        char c = ((const char *)h->value)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (uint64_t)(c - '0');
    }
    *out = v;
    return true;
}

/* Is `h`'s name a key of `table`? */
static bool table_has(const amqp_table_t *table, const struct amqp091_header_in *h)
{
    for (int i = 0; i < table->num_entries; i++)
        if (table->entries[i].key.len == h->name_len &&
            memcmp(table->entries[i].key.bytes, h->name, h->name_len) == 0)
            return true;
    return false;
}

int amqp091_properties_from_record_headers(const struct amqp091_header_in *headers, size_t count,
                                           uint32_t delivery_count, uint64_t now_ms,
                                           amqp_pool_t *pool, amqp_basic_properties_t *out)
{
    memset(out, 0, sizeof(*out));
    /* 0-9-1's own data first: the typed table, the expiration as sent, the
     * delivery mode */
    amqp_table_t typed = {0, NULL};
    const struct amqp091_header_in *expiration = NULL;
    const struct amqp091_header_in *delivery_mode = NULL;
    bool no_message_id = false;
    for (size_t i = 0; i < count; i++) {
        const struct amqp091_header_in *h = &headers[i];
        if (name_is(h, AMQP091_HEADER_TABLE) && typed.num_entries == 0) {
            size_t offset = 0;
            amqp_table_t decoded;
            if (amqp091_table_check(h->value, h->value_len, AMQP091_TABLE_MAX_DEPTH) &&
                amqp_decode_table((amqp_bytes_t){h->value_len, (void *)h->value}, pool, &decoded,
                                  &offset) == AMQP_STATUS_OK &&
                offset == h->value_len)
                typed = decoded;
        } else if (name_is(h, AMQP091_HEADER_EXPIRATION) && !expiration) {
            expiration = h;
        } else if (name_is(h, AMQP091_HEADER_DELIVERY_MODE) && !delivery_mode) {
            delivery_mode = h;
        } else if (name_is(h, AMQP091_HEADER_NO_MESSAGE_ID)) {
            no_message_id = true;
        }
    }
    amqp_table_entry_t *entries =
        amqp_pool_alloc(pool, (count + (size_t)typed.num_entries + 1) * sizeof(amqp_table_entry_t));
    if (!entries)
        return -1;
    size_t entry_count = 0;
    for (int i = 0; i < typed.num_entries; i++) {
        if (delivery_count > 1 && typed.entries[i].key.len == 16 &&
            memcmp(typed.entries[i].key.bytes, "x-delivery-count", 16) == 0)
            continue; /* ours replaces it */
        entries[entry_count++] = typed.entries[i];
    }
    uint64_t number;
    if (expiration && expiration->value_len <= 255) {
        out->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
        out->expiration = bytes_of(expiration);
    }
    if (delivery_mode && parse_u64(delivery_mode, &number) && number <= 255) {
        out->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        out->delivery_mode = (uint8_t)number;
    }
    for (size_t i = 0; i < count; i++) {
        const struct amqp091_header_in *h = &headers[i];
        if (h->name_len >= strlen(RECORD_AMQP091_PREFIX) &&
            memcmp(h->name, RECORD_AMQP091_PREFIX, strlen(RECORD_AMQP091_PREFIX)) == 0)
            continue; /* read above */
        amqp_flags_t flag = 0;
        amqp_bytes_t *field = NULL;
        if (name_is(h, "content-type"))
            flag = AMQP_BASIC_CONTENT_TYPE_FLAG, field = &out->content_type;
        else if (name_is(h, "content-encoding"))
            flag = AMQP_BASIC_CONTENT_ENCODING_FLAG, field = &out->content_encoding;
        else if (name_is(h, "correlation-id"))
            flag = AMQP_BASIC_CORRELATION_ID_FLAG, field = &out->correlation_id;
        else if (name_is(h, "reply-to"))
            flag = AMQP_BASIC_REPLY_TO_FLAG, field = &out->reply_to;
        else if (name_is(h, "message-id") && no_message_id)
            continue; /* the core's, not the publisher's */
        else if (name_is(h, "message-id"))
            flag = AMQP_BASIC_MESSAGE_ID_FLAG, field = &out->message_id;
        else if (name_is(h, "type"))
            flag = AMQP_BASIC_TYPE_FLAG, field = &out->type;
        else if (name_is(h, "user-id"))
            flag = AMQP_BASIC_USER_ID_FLAG, field = &out->user_id;
        else if (name_is(h, "app-id"))
            flag = AMQP_BASIC_APP_ID_FLAG, field = &out->app_id;
        else if (name_is(h, "cluster-id"))
            flag = AMQP_BASIC_CLUSTER_ID_FLAG, field = &out->cluster_id;
        if (field && h->value_len <= 255) { /* shortstr */
            if (!(out->_flags & flag)) {    /* the first of a name wins */
                out->_flags |= flag;
                *field = bytes_of(h);
            }
            continue;
        }
        if (name_is(h, RECORD_ROUTING_KEY))
            continue;
        if (name_is(h, "persistent") && !(out->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)) {
            out->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
            out->delivery_mode = h->value_len == 4 && memcmp(h->value, "true", 4) == 0 ? 2 : 1;
            continue;
        }
        if (name_is(h, "priority") && !(out->_flags & AMQP_BASIC_PRIORITY_FLAG) &&
            parse_u64(h, &number) && number <= 255) {
            out->_flags |= AMQP_BASIC_PRIORITY_FLAG;
            out->priority = (uint8_t)number;
            continue;
        }
        if (name_is(h, "timestamp") && !(out->_flags & AMQP_BASIC_TIMESTAMP_FLAG) &&
            parse_u64(h, &number)) {
            out->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
            out->timestamp = number / 1000;
            continue;
        }
        if (name_is(h, RECORD_HEADER_EXPIRES) && parse_u64(h, &number)) {
            if (number == 0 || (out->_flags & AMQP_BASIC_EXPIRATION_FLAG))
                continue; /* never expires; or the expiration as sent is there */
            char *text = amqp_pool_alloc(pool, 24);
            if (!text)
                return -1;
            int n = snprintf(text, 24, "%" PRIu64, number > now_ms ? number - now_ms : 0);
            out->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
            out->expiration = (amqp_bytes_t){(size_t)n, text};
            continue;
        }
        if (h->name_len > 255 || table_has(&typed, h))
            continue; /* a table key is a shortstr; the typed table has this one */
        entries[entry_count].key = (amqp_bytes_t){h->name_len, (void *)h->name};
        entries[entry_count].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[entry_count].value.value.bytes = bytes_of(h);
        entry_count++;
    }
    if (delivery_count > 1) {
        entries[entry_count].key = amqp_cstring_bytes("x-delivery-count");
        entries[entry_count].value.kind = AMQP_FIELD_KIND_I64;
        entries[entry_count].value.value.i64 = (int64_t)delivery_count - 1;
        entry_count++;
    }
    if (entry_count) {
        out->_flags |= AMQP_BASIC_HEADERS_FLAG;
        out->headers.num_entries = (int)entry_count;
        out->headers.entries = entries;
    }
    return 0;
}

/* ---- argument tables ------------------------------------------------------------- */

/* Tables as JSON. `natural`: for header values other protocols read
 * (every type has a form: byte arrays and decimals as strings, a u64 above
 * INT64_MAX as a string, NaN and infinities as null); else for arguments
 * (what the definitions hold: those types are refused). */
static json_t *table_json(const amqp_table_t *table, bool natural, char *err, size_t err_size)
{
    json_t *object = json_object();
    for (int i = 0; object && i < table->num_entries; i++) {
        const amqp_table_entry_t *entry = &table->entries[i];
        char key[256];
        snprintf(key, sizeof(key), "%.*s", (int)entry->key.len, (const char *)entry->key.bytes);
        json_t *v = value_to_json(&entry->value, natural, err, err_size);
        if (!v || json_object_set_new(object, key, v) < 0) {
            json_decref(object);
            return NULL;
        }
    }
    return object;
}

/* Bytes as a JSON string; not UTF-8: each byte as its code point (Latin-1). */
static json_t *bytes_json(amqp_bytes_t bytes)
{
    json_t *string = json_stringn(bytes.bytes ? bytes.bytes : "", bytes.len);
    if (string)
        return string;
    char *utf8 = malloc(bytes.len * 2 + 1);
    if (!utf8)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < bytes.len; i++) {
        uint8_t c = ((const uint8_t *)bytes.bytes)[i];
        if (c < 0x80) {
            utf8[n++] = (char)c;
        } else {
            utf8[n++] = (char)(0xc0 | (c >> 6));
            utf8[n++] = (char)(0x80 | (c & 0x3f));
        }
    }
    string = json_stringn(utf8, n);
    free(utf8);
    return string;
}

static json_t *value_to_json(const amqp_field_value_t *value, bool natural, char *err,
                             size_t err_size)
{
    switch (value->kind) {
    case AMQP_FIELD_KIND_UTF8:
        if (natural)
            return bytes_json(value->value.bytes);
        return json_stringn(value->value.bytes.bytes ? value->value.bytes.bytes : "",
                            value->value.bytes.len);
    case AMQP_FIELD_KIND_BOOLEAN: return json_boolean(value->value.boolean);
    case AMQP_FIELD_KIND_I8: return json_integer(value->value.i8);
    case AMQP_FIELD_KIND_U8: return json_integer(value->value.u8);
    case AMQP_FIELD_KIND_I16: return json_integer(value->value.i16);
    case AMQP_FIELD_KIND_U16: return json_integer(value->value.u16);
    case AMQP_FIELD_KIND_I32: return json_integer(value->value.i32);
    case AMQP_FIELD_KIND_U32: return json_integer(value->value.u32);
    case AMQP_FIELD_KIND_I64: return json_integer(value->value.i64);
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        if (value->value.u64 <= INT64_MAX)
            return json_integer((json_int_t)value->value.u64);
        if (natural) {
            char text[AMQP091_NUMBER_TEXT];
            snprintf(text, sizeof(text), "%" PRIu64, value->value.u64);
            return json_string(text);
        }
        break;
    case AMQP_FIELD_KIND_F32:
    case AMQP_FIELD_KIND_F64: {
        double d = value->kind == AMQP_FIELD_KIND_F32 ? (double)value->value.f32 : value->value.f64;
        json_t *real = json_real(d);
        if (!real && natural)
            return json_null(); /* NaN, infinities */
        return real;
    }
    case AMQP_FIELD_KIND_VOID: return json_null();
    case AMQP_FIELD_KIND_TABLE: return table_json(&value->value.table, natural, err, err_size);
    case AMQP_FIELD_KIND_ARRAY: {
        json_t *array = json_array();
        for (int i = 0; array && i < value->value.array.num_entries; i++) {
            json_t *v = value_to_json(&value->value.array.entries[i], natural, err, err_size);
            if (!v || json_array_append_new(array, v) < 0) {
                json_decref(array);
                return NULL;
            }
        }
        return array;
    }
    case AMQP_FIELD_KIND_BYTES:
        if (natural)
            return bytes_json(value->value.bytes);
        break;
    case AMQP_FIELD_KIND_DECIMAL:
        if (natural) {
            char text[AMQP091_NUMBER_TEXT];
            return decimal_text(&value->value.decimal, text) ? json_string(text) : NULL;
        }
        break;
    default: break;
    }
    snprintf(err, err_size, "an argument value of type '%c' is not supported", value->kind);
    return NULL;
}

int amqp091_table_to_json(const amqp_table_t *table, json_t **out, char *err, size_t err_size)
{
    *out = NULL;
    if (table->num_entries == 0)
        return 0;
    err[0] = '\0';
    *out = table_json(table, false, err, err_size);
    if (!*out) {
        if (!err[0])
            snprintf(err, err_size, "out of memory");
        return -1;
    }
    return 0;
}
