/* SPDX-License-Identifier: Apache-2.0 */
/* config_table.c -- the configuration keys of kbridged: one row per key
 * (name, type, bounds, default, description; see struct config_key), the
 * value syntax the rows rely on (sizes, durations, host:port, names, crypt
 * hashes) and config_write_reference, which prints docs/configuration.md's
 * key reference from the rows. A new key is one new row here. */
#include "config_table.h"
#include "config.h"
#include "password.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_ARRAY_LEN(array) (sizeof(array) / sizeof((array)[0]))

#define CONFIG_KIB UINT64_C(1024)
#define CONFIG_MIB (CONFIG_KIB * 1024)
#define CONFIG_GIB (CONFIG_MIB * 1024)
#define CONFIG_SECOND_MS UINT64_C(1000)
#define CONFIG_MINUTE_MS (CONFIG_SECOND_MS * 60)
#define CONFIG_HOUR_MS (CONFIG_MINUTE_MS * 60)

#define CONFIG_BOOTSTRAP_MAX 4096 /* longest kafka.bootstrap */
#define CONFIG_PATTERN_MAX 1024   /* longest ACL pattern */

struct config_unit {
    const char *name;
    uint64_t factor;
};

/* Largest first: config_format_units picks the first that divides. */
static const struct config_unit config_size_units[] = {
    {"GiB", CONFIG_GIB},
    {"MiB", CONFIG_MIB},
    {"KiB", CONFIG_KIB},
    {"B", 1},
};

static const struct config_unit config_duration_units[] = {
    {"h", CONFIG_HOUR_MS},
    {"m", CONFIG_MINUTE_MS},
    {"s", CONFIG_SECOND_MS},
    {"ms", 1},
};

/* ------------------------------------------------------------------------ */
/* Messages and value syntax                                                */
/* ------------------------------------------------------------------------ */

struct config_text config_quote(const char *value)
{
    struct config_text out;
    size_t len = 0;
    out.text[len++] = '"';
    const unsigned char *p = (const unsigned char *)value;
    for (size_t used = 0; *p; p++, used++) {
        if (used >= CONFIG_QUOTE_MAX && (*p & 0xc0) != 0x80) {
            memcpy(out.text + len, "...", 3);
            len += 3;
            break;
        }
        if (*p == '"' || *p == '\\') {
            out.text[len++] = '\\';
            out.text[len++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            len += (size_t)snprintf(out.text + len, sizeof(out.text) - len, "\\x%02x", *p);
        } else {
            out.text[len++] = (char)*p;
        }
    }
    out.text[len++] = '"';
    out.text[len] = '\0';
    return out;
}

/* Read the decimal digits at *text into *out and move *text past them.
 * 0 ok, -1 no digit, -2 too large for 64 bits (all digits still consumed). */
static int config_parse_digits(const char **text, uint64_t *out)
{
    const char *p = *text;
    uint64_t value = 0;
    bool overflow = false;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            overflow = true;
        else
            value = value * 10 + digit;
    }
    *text = p;
    *out = value;
    return overflow ? -2 : 0;
}

/* "NUMBER[blanks]UNIT" with UNIT one of `units` (exact case) or absent, which
 * means bare_factor. 0 ok, -1 not of that form, -2 too large for 64 bits. */
static int config_parse_with_units(const char *text, const struct config_unit *units,
                                   size_t unit_count, uint64_t bare_factor, uint64_t *out)
{
    uint64_t number;
    int rc = config_parse_digits(&text, &number);
    if (rc == -1)
        return -1;
    const char *blanks = text;
    while (*text == ' ' || *text == '\t')
        text++;
    if (text > blanks && *text == '\0')
        return -1; /* "1 " : a blank must lead to a unit */
    uint64_t factor = bare_factor;
    if (*text != '\0') {
        factor = 0;
        for (size_t i = 0; i < unit_count; i++)
            if (strcmp(text, units[i].name) == 0)
                factor = units[i].factor;
        if (factor == 0)
            return -1;
    }
    if (rc == -2 || (number != 0 && number > UINT64_MAX / factor))
        return -2;
    *out = number * factor;
    return 0;
}

int config_read_number(const char *text, uint64_t *out)
{
    int rc = config_parse_digits(&text, out);
    return rc == 0 && *text != '\0' ? -1 : rc;
}

int config_read_size(const char *text, uint64_t *out)
{
    return config_parse_with_units(text, config_size_units, CONFIG_ARRAY_LEN(config_size_units), 1,
                                   out);
}

int config_read_duration(const char *text, uint64_t *out_ms)
{
    return config_parse_with_units(text, config_duration_units,
                                   CONFIG_ARRAY_LEN(config_duration_units), CONFIG_SECOND_MS,
                                   out_ms);
}

int config_parse_size(const char *text, uint64_t *out)
{
    return config_read_size(text, out) == 0 ? 0 : -1;
}

int config_parse_duration(const char *text, uint64_t *out_ms)
{
    return config_read_duration(text, out_ms) == 0 ? 0 : -1;
}

/* Print `value` with the largest unit that divides it exactly ("1MiB", "30m");
 * 0 prints as "0". */
static void config_format_units(uint64_t value, const struct config_unit *units, size_t unit_count,
                                char *out, size_t out_size)
{
    if (value == 0) {
        snprintf(out, out_size, "0");
        return;
    }
    for (size_t i = 0; i < unit_count; i++) {
        if (value % units[i].factor == 0) {
            snprintf(out, out_size, "%" PRIu64 "%s", value / units[i].factor, units[i].name);
            return;
        }
    }
    snprintf(out, out_size, "%" PRIu64, value);
}

void config_format_size(uint64_t bytes, char *out, size_t out_size)
{
    config_format_units(bytes, config_size_units, CONFIG_ARRAY_LEN(config_size_units), out,
                        out_size);
}

void config_format_duration(uint64_t ms, char *out, size_t out_size)
{
    config_format_units(ms, config_duration_units, CONFIG_ARRAY_LEN(config_duration_units), out,
                        out_size);
}

static bool config_is_ascii_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Characters of a legal Kafka topic name. */
static bool config_is_topic_char(char c)
{
    return config_is_ascii_alnum(c) || c == '.' || c == '_' || c == '-';
}

int config_check_address(const char *value, unsigned min_port, char *reason, size_t reason_size)
{
    const char *port;
    if (value[0] == '[') {
        const char *close = strchr(value, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(reason, reason_size, "%s is not [IPv6]:port (e.g. [::1]:5672)",
                     config_quote(value).text);
            return -1;
        }
        char host[INET6_ADDRSTRLEN + 64];
        size_t host_len = (size_t)(close - value - 1);
        struct in6_addr address;
        if (host_len >= sizeof(host)) {
            snprintf(reason, reason_size, "%s does not hold an IPv6 address in brackets",
                     config_quote(value).text);
            return -1;
        }
        memcpy(host, value + 1, host_len);
        host[host_len] = '\0';
        char *scope = strchr(host, '%'); /* fe80::1%eth0 */
        if (scope != NULL)
            *scope++ = '\0';
        bool scope_ok = scope == NULL || scope[0] != '\0';
        for (const char *p = scope; scope_ok && p != NULL && *p; p++)
            scope_ok = config_is_topic_char(*p);
        if (!scope_ok || inet_pton(AF_INET6, host, &address) != 1) {
            snprintf(reason, reason_size, "%s does not hold an IPv6 address in brackets",
                     config_quote(value).text);
            return -1;
        }
        port = close + 2;
    } else {
        const char *colon = strrchr(value, ':');
        if (colon == NULL) {
            snprintf(reason, reason_size, "%s is not host:port (e.g. 127.0.0.1:5672 or [::1]:5672)",
                     config_quote(value).text);
            return -1;
        }
        if (memchr(value, ':', (size_t)(colon - value)) != NULL) {
            snprintf(reason, reason_size, "%s: write IPv6 addresses in brackets, e.g. [::1]:5672",
                     config_quote(value).text);
            return -1;
        }
        if (colon == value) {
            snprintf(reason, reason_size, "%s has no host (use 0.0.0.0 or [::] for all addresses)",
                     config_quote(value).text);
            return -1;
        }
        if (colon - value > 253) {
            snprintf(reason, reason_size, "%s has a host longer than 253 characters",
                     config_quote(value).text);
            return -1;
        }
        for (const char *p = value; p < colon; p++) {
            if (!config_is_topic_char(*p)) {
                snprintf(reason, reason_size,
                         "%s: the host may only contain letters, digits, '.', '-' and '_'",
                         config_quote(value).text);
                return -1;
            }
        }
        port = colon + 1;
    }
    uint64_t number;
    const char *end = port;
    if (config_parse_digits(&end, &number) != 0 || *end != '\0' || end - port > 5 ||
        number < min_port || number > 65535) {
        snprintf(reason, reason_size, "%s: the port must be a number from %u to 65535",
                 config_quote(value).text, min_port);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* String checks named by the table                                         */
/* ------------------------------------------------------------------------ */

/* node_id and kafka.topic_prefix: Kafka topic name characters. */
int config_check_topic_chars(const char *value, char *reason, size_t reason_size)
{
    for (const char *p = value; *p; p++) {
        if (!config_is_topic_char(*p)) {
            snprintf(reason, reason_size, "%s may only contain A-Z, a-z, 0-9, '.', '_' and '-'",
                     config_quote(value).text);
            return -1;
        }
    }
    return 0;
}

static int config_check_bootstrap(const char *value, char *reason, size_t reason_size)
{
    if (strcmp(value, "embedded") == 0)
        return 0;
    if (strchr(value, ':') == NULL) {
        snprintf(reason, reason_size,
                 "%s is neither embedded nor a list of host:port (e.g. kafka1:9092,kafka2:9092)",
                 config_quote(value).text);
        return -1;
    }
    for (const char *entry = value;;) {
        size_t len = strcspn(entry, ",");
        char address[CONFIG_BOOTSTRAP_MAX + 1];
        if (len == 0) {
            snprintf(reason, reason_size, "%s has an empty entry (write host:port,host:port)",
                     config_quote(value).text);
            return -1;
        }
        if (len >= sizeof(address)) {
            snprintf(reason, reason_size, "%s has an entry longer than %d characters",
                     config_quote(value).text, CONFIG_BOOTSTRAP_MAX);
            return -1;
        }
        memcpy(address, entry, len);
        address[len] = '\0';
        /* librdkafka also takes "PLAINTEXT://host:port" */
        const char *host_port = address;
        const char *scheme_end = strstr(address, "://");
        if (scheme_end != NULL) {
            bool scheme_ok = scheme_end > address;
            for (const char *p = address; p < scheme_end; p++)
                scheme_ok = scheme_ok && (config_is_ascii_alnum(*p) || *p == '_');
            if (!scheme_ok) {
                snprintf(reason, reason_size, "%s has a bad protocol prefix",
                         config_quote(address).text);
                return -1;
            }
            host_port = scheme_end + 3;
        }
        if (config_check_address(host_port, 1, reason, reason_size) < 0)
            return -1;
        if (entry[len] == '\0')
            return 0;
        entry += len + 1;
    }
}

static int config_check_slow_subscriber(const char *value, char *reason, size_t reason_size)
{
    if (strcmp(value, "drop-oldest") == 0 || strcmp(value, "disconnect") == 0)
        return 0;
    snprintf(reason, reason_size, "%s is not a policy (use drop-oldest or disconnect)",
             config_quote(value).text);
    return -1;
}

static int config_check_dead_letter_topic(const char *value, char *reason, size_t reason_size)
{
    static const char placeholder[] = "{name}";
    if (strstr(value, placeholder) == NULL) {
        snprintf(reason, reason_size,
                 "%s must contain {name} (the queue name), e.g. \"{name}.DLQ\"",
                 config_quote(value).text);
        return -1;
    }
    for (const char *p = value; *p;) {
        if (strncmp(p, placeholder, sizeof(placeholder) - 1) == 0) {
            p += sizeof(placeholder) - 1;
            continue;
        }
        if (!config_is_topic_char(*p)) {
            snprintf(reason, reason_size,
                     "%s may only contain {name}, A-Z, a-z, 0-9, '.', '_' and '-'",
                     config_quote(value).text);
            return -1;
        }
        p++;
    }
    return 0;
}

/* queues.redelivery_delay.multiplier: a decimal number from 1 to 100. */
static int config_check_multiplier(const char *value, char *reason, size_t reason_size)
{
    char *end = NULL;
    double multiplier = strtod(value, &end);
    if (end == value || *end != '\0' || !(multiplier >= 1.0 && multiplier <= 100.0)) {
        snprintf(reason, reason_size, "%s is not a number from 1 to 100 (e.g. 2 or 1.5)",
                 config_quote(value).text);
        return -1;
    }
    return 0;
}

/* queues.retry_topic: {name} and one of {n}, {index}, {delay}, else topic characters. */
static int config_check_retry_topic(const char *value, char *reason, size_t reason_size)
{
    static const char *const placeholders[] = {"{name}", "{n}", "{index}", "{delay}"};
    bool name = false, level = false;
    for (const char *p = value; *p;) {
        size_t i;
        for (i = 0; i < 4; i++)
            if (strncmp(p, placeholders[i], strlen(placeholders[i])) == 0)
                break;
        if (i < 4) {
            name = name || i == 0;
            level = level || i > 0;
            p += strlen(placeholders[i]);
            continue;
        }
        if (!config_is_topic_char(*p)) {
            snprintf(reason, reason_size,
                     "%s may only contain {name}, {n}, {index}, {delay}, A-Z, a-z, 0-9, '.', "
                     "'_' and '-'",
                     config_quote(value).text);
            return -1;
        }
        p++;
    }
    if (!name || !level) {
        snprintf(reason, reason_size,
                 "%s must contain {name} (the queue name) and one of {n} (the retry, from 1), "
                 "{index} (from 0) or {delay} (its delay in ms), e.g. \"{name}.retry.{n}\"",
                 config_quote(value).text);
        return -1;
    }
    return 0;
}

/* Login names travel in STOMP headers, SASL PLAIN and HTTP basic auth. */
int config_check_user_name(const char *value, char *reason, size_t reason_size)
{
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == ':') {
            snprintf(reason, reason_size, "%s must not contain spaces, ':' or control characters",
                     config_quote(value).text);
            return -1;
        }
    }
    return 0;
}

int config_check_name(const char *value, char *reason, size_t reason_size)
{
    for (const char *p = value; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-')) {
            snprintf(reason, reason_size, "%s is not a name (letters, digits, '_' and '-' only)",
                     config_quote(value).text);
            return -1;
        }
    }
    return 0;
}

/* A listener's transport: "tcp" or "websocket". */
static int config_check_transport(const char *value, char *reason, size_t reason_size)
{
    if (strcmp(value, "tcp") == 0 || strcmp(value, "websocket") == 0)
        return 0;
    snprintf(reason, reason_size, "%s is not a transport (tcp or websocket)",
             config_quote(value).text);
    return -1;
}

/* An HTTP request path: '/' then printable ASCII without spaces, '?' or '#'. */
static int config_check_http_path(const char *value, char *reason, size_t reason_size)
{
    bool ok = value[0] == '/';
    for (const char *p = value; ok && *p; p++)
        ok = *p > ' ' && *p < 0x7f && *p != '?' && *p != '#';
    if (ok)
        return 0;
    snprintf(reason, reason_size,
             "%s is not a request path ('/' then printable characters, no spaces, '?' or '#')",
             config_quote(value).text);
    return -1;
}

/* A browser Origin: "http://host[:port]" or "https://host[:port]", no path. */
static int config_check_origin(const char *value, char *reason, size_t reason_size)
{
    const char *host = NULL;
    if (strncmp(value, "http://", 7) == 0)
        host = value + 7;
    else if (strncmp(value, "https://", 8) == 0)
        host = value + 8;
    bool ok = host != NULL && *host != '\0';
    for (const char *p = host; ok && *p; p++)
        ok = *p > ' ' && *p < 0x7f && *p != '/' && *p != '?' && *p != '#';
    if (ok)
        return 0;
    snprintf(reason, reason_size,
             "%s is not an origin (http://HOST[:PORT] or https://HOST[:PORT], no path)",
             config_quote(value).text);
    return -1;
}

/* A crypt(3) string or a RabbitMQ base64 salted SHA-256/512 hash
 * (password.h). The value is never echoed: it is a secret's hash. */
static int config_check_password_hash(const char *value, char *reason, size_t reason_size)
{
    if (password_hash_kind(value) == PASSWORD_HASH_UNKNOWN) {
        snprintf(reason, reason_size,
                 "is neither a crypt(3) hash (\"$id$salt$hash\", as printed by `kbridged "
                 "--hash-password` or `openssl passwd -6`) nor a RabbitMQ "
                 "rabbit_password_hashing_sha256/sha512 hash (base64)");
        return -1;
    }
    return 0;
}

static int config_check_one_of(const char *value, const char *const *allowed, size_t count,
                               char *reason, size_t reason_size)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(value, allowed[i]) == 0)
            return 0;
    size_t used =
        (size_t)snprintf(reason, reason_size, "%s is not one of ", config_quote(value).text);
    for (size_t i = 0; i < count && used < reason_size; i++)
        used +=
            (size_t)snprintf(reason + used, reason_size - used, "%s%s", i ? ", " : "", allowed[i]);
    return -1;
}

static int config_check_tls_verify(const char *value, char *reason, size_t reason_size)
{
    static const char *const allowed[] = {"none", "optional", "required"};
    return config_check_one_of(value, allowed, 3, reason, reason_size);
}

static int config_check_tls_version(const char *value, char *reason, size_t reason_size)
{
    static const char *const allowed[] = {"1.2", "1.3"};
    return config_check_one_of(value, allowed, 2, reason, reason_size);
}

static int config_check_tls_identity(const char *value, char *reason, size_t reason_size)
{
    static const char *const allowed[] = {"cn", "san_email", "san_dns"};
    return config_check_one_of(value, allowed, 3, reason, reason_size);
}

/* ------------------------------------------------------------------------ */
/* The key table                                                            */
/* ------------------------------------------------------------------------ */

static const struct config_key listener_keys[] = {
    {
        .name = "bind",
        .type = CONFIG_TYPE_ADDRESS,
        .offset = offsetof(struct config_listener, bind),
        .flags = CONFIG_KEY_REQUIRED,
        .description = "Address to listen on: `host:port` or `[v6]:port` (61613 is the usual "
                       "STOMP port, 5672 AMQP's, 15672 the operations endpoint's). Port 0 "
                       "picks a free port.",
    },
    {
        .name = "protocols",
        .type = CONFIG_TYPE_NAMES,
        .offset = offsetof(struct config_listener, protocols),
        .count_offset = offsetof(struct config_listener, protocol_count),
        .min = 1,
        .max = CONFIG_NAME_MAX,
        .default_doc = "`[NAME]`: the protocol named like the listener",
        .check = config_check_name,
        .description =
            "Protocols served on this socket, e.g. `[stomp, amqp]`. With more than one, "
            "kbridged reads each connection's first bytes (without consuming them, at most "
            "`limits.protocol_detect_bytes`, for at most `limits.protocol_detect_timeout`) and "
            "hands it to the protocol they belong to; a connection that matches none is "
            "closed and counted in `kbridge_protocol_detect_failures_total`. `http` (the "
            "operations endpoint) cannot share a listener.",
    },
    {
        .name = "transport",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, transport),
        .min = 1,
        .max = 16,
        .default_doc = "`tcp`",
        .check = config_check_transport,
        .description =
            "What carries the protocol: `tcp` (plain TCP) or `websocket` (STOMP over "
            "WebSocket, as RabbitMQ's Web-STOMP: the client upgrades an HTTP request for "
            "`websocket.path` with one of the subprotocols `v10.stomp`, `v11.stomp`, "
            "`v12.stomp`; every WebSocket message carries STOMP bytes). A WebSocket listener "
            "serves exactly one protocol; the upgrade must complete within "
            "`limits.handshake_timeout`. With `tls.cert` as well the WebSocket runs over "
            "TLS (wss://; the TLS handshake first, within `limits.tls_handshake_timeout`). "
            "See docs/stomp.md, \"STOMP over WebSocket\".",
    },
    {
        .name = "websocket.path",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, websocket.path),
        .min = 1,
        .max = 255,
        .default_doc = "`/ws`",
        .check = config_check_http_path,
        .description = "`transport: websocket`: the path the upgrade request must ask for "
                       "(`ws://host:15674/ws`); another path gets HTTP 404.",
    },
    {
        .name = "websocket.origins",
        .type = CONFIG_TYPE_NAMES,
        .offset = offsetof(struct config_listener, websocket.origins),
        .count_offset = offsetof(struct config_listener, websocket.origin_count),
        .min = 1,
        .max = 255,
        .default_doc = "none: any origin",
        .check = config_check_origin,
        .description =
            "`transport: websocket`: the browser origins allowed to connect, e.g. "
            "`[\"https://app.example.com\"]` (compared without regard to case). An upgrade "
            "whose `Origin` header is not listed gets HTTP 403; one without an `Origin` header "
            "(not a browser) is allowed. Without the key every origin is allowed, as "
            "RabbitMQ's Web-STOMP does: list yours, or any page a user opens may reach the "
            "broker with the user's network position.",
    },
    {
        .name = "websocket.max_message_size",
        .type = CONFIG_TYPE_SIZE,
        .offset = offsetof(struct config_listener, websocket.max_message_size),
        .min = CONFIG_KIB,
        .max = CONFIG_GIB,
        .default_doc = "`limits.max_frame_size`",
        .description = "`transport: websocket`: the largest WebSocket message accepted from a "
                       "client (all fragments together); a larger one gets a close frame with "
                       "status 1009 (message too big) and the connection ends.",
    },
    {
        .name = "tls.cert",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.cert),
        .min = 1,
        .max = 4096,
        .default_doc = "none: plain TCP",
        .description = "PEM file of the server certificate (then any intermediates): setting it "
                       "turns TLS on for this listener (TLS 1.2 and 1.3 only; every protocol, "
                       "shared listeners and `http` alike). Re-read with `tls.key` on SIGHUP: "
                       "new connections get the new certificate, open ones keep theirs. See "
                       "docs/security.md.",
    },
    {
        .name = "tls.key",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.key),
        .min = 1,
        .max = 4096,
        .default_doc = "required with `tls.cert`",
        .description = "PEM file of the certificate's private key (readable by kbridged only).",
    },
    {
        .name = "tls.key_password_file",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.key_password_file),
        .min = 1,
        .max = 4096,
        .default_doc = "none: the key is not encrypted",
        .description = "File whose first line is the passphrase of an encrypted `tls.key` (the "
                       "passphrase itself is never written in the config).",
    },
    {
        .name = "tls.ca",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.ca),
        .min = 1,
        .max = 4096,
        .default_doc = "none",
        .description = "PEM file of the CA certificates that client certificates must chain to; "
                       "required when `tls.verify` is `optional` or `required`.",
    },
    {
        .name = "tls.verify",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.verify),
        .min = 1,
        .max = 16,
        .default_doc = "`none`",
        .check = config_check_tls_verify,
        .description = "Client certificates: `none` (not asked for), `optional` (asked for; one "
                       "that does not verify fails the handshake) or `required` (a connection "
                       "without a valid one fails the handshake). With a verified certificate "
                       "the client may log in as the user `tls.identity` names (mTLS: STOMP "
                       "CONNECT without `login`, AMQP SASL EXTERNAL).",
    },
    {
        .name = "tls.min_version",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.min_version),
        .min = 1,
        .max = 8,
        .default_doc = "`1.2`",
        .check = config_check_tls_version,
        .description = "Oldest TLS version accepted: `1.2` or `1.3` (1.1 and older are never "
                       "accepted).",
    },
    {
        .name = "tls.ciphers",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.ciphers),
        .min = 1,
        .max = 4096,
        .default_doc = "OpenSSL's default list",
        .description = "OpenSSL cipher list for TLS 1.2 (`openssl ciphers` syntax, e.g. "
                       "`ECDHE+AESGCM:ECDHE+CHACHA20`); TLS 1.3 suites are OpenSSL's defaults.",
    },
    {
        .name = "tls.identity",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_listener, tls.identity),
        .min = 1,
        .max = 16,
        .default_doc = "`cn`",
        .check = config_check_tls_identity,
        .description = "Which field of a verified client certificate is the user name: `cn` "
                       "(subject common name), `san_email` or `san_dns` (the first such subject "
                       "alternative name). The user must be in `auth.users`; its ACLs apply.",
    },
};

static const struct config_key vhost_keys[] = {
    {
        .name = "topic_prefix",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_vhost, topic_prefix),
        .min = 0,
        .max = 200,
        .default_doc = "`kafka.topic_prefix` + NAME + `.` (`/`: `kafka.topic_prefix`, always)",
        .check = config_check_topic_chars,
        .description = "Put in front of the names of this vhost's exchanges and queues to form "
                       "their Kafka topics (architecture §11): with `shop.`, queue `orders` of "
                       "vhost `shop` reads topic `shop.orders`. Kafka topic characters only. "
                       "The vhost `/` always uses `kafka.topic_prefix` (so `/queue/x` and the "
                       "default exchange stay what they were) and may not set its own.",
    },
};

/* What each end of a shovel (`source.`, `destination.`) says, the same for
 * both ends. */
static const char shovel_doc_protocol[] =
    "`kbridge` (this kbridged: `destination` only), `stomp` (a legacy broker kbridged "
    "connects to as a STOMP 1.2 client) or `amqp` (a legacy broker kbridged connects "
    "to as an AMQP 1.0 client). Exactly one end of a shovel is `kbridge`.";
static const char shovel_doc_address[] =
    "The legacy broker's `host:port`: its STOMP port (RabbitMQ's 61613) or AMQP 1.0 port "
    "(5672): a host name or an IP address (`[::1]:5672`). A name is looked up before every "
    "connect, on the worker pool.";
static const char shovel_doc_host[] =
    "STOMP: the CONNECT `host` header (the vhost on RabbitMQ). AMQP 1.0: the open frame's "
    "`hostname` (RabbitMQ 3.x: `vhost:NAME`; default the address's host).";
static const char shovel_doc_login[] =
    "The `login` kbridged gives the legacy broker (STOMP CONNECT; AMQP 1.0: SASL PLAIN, none: "
    "ANONYMOUS).";
static const char shovel_doc_passcode[] =
    "The `passcode` (STOMP CONNECT, AMQP SASL PLAIN's password), or `passcode_file`; not "
    "both. Never logged.";
static const char shovel_doc_passcode_file[] =
    "A file whose first line is the passcode, read before every connect on the worker pool "
    "(keeps the secret out of the configuration file; a rotated secret is picked up at the "
    "next reconnect).";
static const char shovel_doc_destination[] =
    "On the kbridge end `/queue/NAME` or `/topic/NAME`; on a legacy broker its STOMP "
    "destination (`/queue/NAME`, RabbitMQ's `/amq/queue/NAME`, ...) or AMQP 1.0 address "
    "(RabbitMQ 3.x `/queue/NAME`, `/amq/queue/NAME`, `/exchange/NAME/KEY`; ActiveMQ `NAME` "
    "or `queue://NAME`).";

/* The rows of one end, END being `source` or `destination` (a member of
 * struct config_shovel and the keys' prefix). */
#define SHOVEL_END_KEY(END, MEMBER, MIN, MAX, DEFAULT_DOC, FLAGS)                                  \
    {                                                                                              \
        .name = #END "." #MEMBER, .type = CONFIG_TYPE_STRING,                                      \
        .offset = offsetof(struct config_shovel, END.MEMBER), .min = (MIN), .max = (MAX),          \
        .default_doc = (DEFAULT_DOC), .flags = (FLAGS), .description = shovel_doc_##MEMBER,        \
    }
#define SHOVEL_END_KEYS(END)                                                                       \
    SHOVEL_END_KEY(END, protocol, 1, 16, "none: required", 0),                                     \
        SHOVEL_END_KEY(END, address, 1, 300, "none: required for a legacy broker", 0),             \
        SHOVEL_END_KEY(END, host, 1, 255, "`/`", 0),                                               \
        SHOVEL_END_KEY(END, login, 1, 255, "none", 0),                                             \
        SHOVEL_END_KEY(END, passcode, 0, 1024, "none", CONFIG_KEY_SECRET),                         \
        SHOVEL_END_KEY(END, passcode_file, 1, 4096, "none", 0),                                    \
        SHOVEL_END_KEY(END, destination, 1, 512, "none: required", 0)

static const struct config_key shovel_keys[] = {
    {
        .name = "name",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_shovel, name),
        .min = 1,
        .max = 64,
        .flags = CONFIG_KEY_REQUIRED,
        .check = config_check_user_name,
        .description = "The shovel's name: unique; in logs, the admin API "
                       "(`/api/kbridge/shovels`) and the metrics' `shovel` label.",
    },
    SHOVEL_END_KEYS(source),
    SHOVEL_END_KEYS(destination),
    {
        .name = "user",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_shovel, user),
        .min = 1,
        .max = 255,
        .default_doc = "`anonymous` (needs `auth.anonymous`)",
        .check = config_check_user_name,
        .description = "The `auth.users` user the shovel acts as on the kbridge end: its "
                       "publish or consume ACLs apply to the kbridge destination.",
    },
    {
        .name = "prefetch",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config_shovel, prefetch),
        .min = 1,
        .max = 65535,
        .default_value = "100",
        .description = "Messages in flight at once: from a legacy source, the SUBSCRIBE's "
                       "`prefetch-count` / `activemq.prefetchSize` or the AMQP link credit "
                       "(unacknowledged messages the broker sends ahead); from kbridge, the "
                       "subscription's credit (SENDs waiting for the broker's RECEIPT, "
                       "transfers waiting for its disposition; also bounded by the broker's "
                       "link credit).",
    },
    {
        .name = "reconnect_delay_initial",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config_shovel, reconnect_delay_initial),
        .min = 10,
        .max = 3600000,
        .default_value = "1s",
        .description = "Wait before reconnecting to the legacy broker after the connection "
                       "failed or closed; doubled after each failed attempt up to "
                       "`reconnect_delay_max`, back to this once connected.",
    },
    {
        .name = "reconnect_delay_max",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config_shovel, reconnect_delay_max),
        .min = 10,
        .max = 3600000,
        .default_value = "30s",
        .description = "The longest wait between reconnect attempts.",
    },
    {
        .name = "heartbeat",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config_shovel, heartbeat),
        .min = 0,
        .max = 3600000,
        .default_value = "10s",
        .description = "The heart-beat interval asked of the legacy broker (STOMP CONNECT "
                       "`heart-beat:0,N`); the broker sends at the larger of this and its own "
                       "interval, and three intervals without a byte drop the connection (a "
                       "peer gone without closing it). AMQP 1.0: the open frame's "
                       "idle-time-out (the broker sends at least every half of it; silence "
                       "for this long drops the connection). `0`: none asked, none checked.",
    },
    {
        .name = "connect_timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config_shovel, connect_timeout),
        .min = 10,
        .max = 3600000,
        .default_value = "30s",
        .description = "How long connecting to the legacy broker, its answer to CONNECT "
                       "(AMQP: SASL and its open), or a write the broker does not read may "
                       "take before the connection is dropped and retried.",
    },
};

/* RabbitMQ's user tags the admin API knows (admin_auth.h). */
int config_check_user_tag(const char *value, char *reason, size_t reason_size)
{
    static const char *const tags[] = {"administrator", "monitoring", "management", "policymaker"};
    for (size_t i = 0; i < CONFIG_ARRAY_LEN(tags); i++)
        if (strcmp(value, tags[i]) == 0)
            return 0;
    snprintf(reason, reason_size,
             "%s is not a user tag kbridge knows (administrator, monitoring, management, "
             "policymaker)",
             config_quote(value).text);
    return -1;
}

static const struct config_key permission_keys[] = {
    {
        .name = "configure",
        .type = CONFIG_TYPE_PATTERNS,
        .offset = offsetof(struct config_permission, configure),
        .count_offset = offsetof(struct config_permission, configure_count),
        .min = 0,
        .max = CONFIG_PATTERN_MAX,
        .default_doc = "`\"\"` (nothing)",
        .description = "Exchanges and queues the user may declare and delete in this vhost: one "
                       "regular expression as RabbitMQ's configure permission (`\".*\"`: all, "
                       "`\"\"`: none), matched as `publish` patterns are. Exchange-to-exchange "
                       "and queue bindings need `read` on the source and `write` on the "
                       "destination, as in RabbitMQ.",
    },
    {
        .name = "write",
        .type = CONFIG_TYPE_PATTERNS,
        .offset = offsetof(struct config_permission, write),
        .count_offset = offsetof(struct config_permission, write_count),
        .min = 0,
        .max = CONFIG_PATTERN_MAX,
        .default_doc = "`\"\"` (nothing)",
        .description = "Where the user may publish in this vhost, as `publish` (RabbitMQ's "
                       "write permission). kbridge checks the destination name: an exchange, "
                       "a queue, or for the default exchange and `amq.topic` the routing key's "
                       "queue or topic (RabbitMQ checks the exchange there).",
    },
    {
        .name = "read",
        .type = CONFIG_TYPE_PATTERNS,
        .offset = offsetof(struct config_permission, read),
        .count_offset = offsetof(struct config_permission, read_count),
        .min = 0,
        .max = CONFIG_PATTERN_MAX,
        .default_doc = "`\"\"` (nothing)",
        .description = "What the user may consume from, get, purge and bind from in this vhost, "
                       "as `consume` (RabbitMQ's read permission).",
    },
};

static const struct config_key user_keys[] = {
    {
        .name = "name",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_user, name),
        .min = 1,
        .max = 255,
        .flags = CONFIG_KEY_REQUIRED,
        .check = config_check_user_name,
        .description = "Login name (STOMP `login`, AMQP SASL PLAIN user). Unique; no spaces, "
                       "`:` or control characters.",
    },
    {
        .name = "password_hash",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_user, password_hash),
        .min = 1,
        .max = 1024,
        .flags = CONFIG_KEY_SECRET,
        .default_doc = "required, unless `password` is set",
        .check = config_check_password_hash,
        .description = "Hash of the password, never the password itself: a crypt(3) string "
                       "`$id$salt$hash` as printed by `kbridged --hash-password` (yescrypt) or "
                       "`openssl passwd -6` (SHA-512; the system's other crypt(3) schemes work "
                       "too: `$5$`, `$2b$`), or a RabbitMQ `password_hash` copied verbatim from "
                       "a definitions export (`rabbit_password_hashing_sha256` or `_sha512`: "
                       "base64 of a 4-byte salt and SHA-256/512 of salt + password, told apart "
                       "by length).",
    },
    {
        .name = "password",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config_user, password),
        .min = 1,
        .max = 1024,
        .flags = CONFIG_KEY_SECRET,
        .default_doc = "none",
        .description = "The password in plain text: refused unless `auth.insecure_plaintext` is "
                       "true (tests and demos only; kbridged then warns at every start and "
                       "reload). Set `password_hash` instead (`kbridged --hash-password`).",
    },
    {
        .name = "publish",
        .type = CONFIG_TYPE_PATTERNS,
        .offset = offsetof(struct config_user, publish),
        .count_offset = offsetof(struct config_user, publish_count),
        .min = 1,
        .max = CONFIG_PATTERN_MAX,
        .default_doc = "none (may publish nowhere)",
        .description = "Destinations the user may publish to: POSIX extended regular "
                       "expressions matched against the destination name (`orders.eu` for "
                       "`/queue/orders.eu`). A pattern matches anywhere in the name unless "
                       "anchored with `^` and `$`. In YAML double quotes a regex `\\.` is "
                       "written `\"\\\\.\"`. Refused, because glibc's regcomp would take "
                       "minutes or gigabytes on them: a pattern whose repetitions would compile "
                       "to more than 1000 nodes (stacked like `a++`, or deeply nested counts), "
                       "one that repeats something that can match the empty string (`(a*)*`, "
                       "`a?+`, `.*+`, `(|a)*`; `.*?` is fine), and one with more than 4 anchors "
                       "(`^`, `$`, `\\b`, ...) with no character between them.",
    },
    {
        .name = "consume",
        .type = CONFIG_TYPE_PATTERNS,
        .offset = offsetof(struct config_user, consume),
        .count_offset = offsetof(struct config_user, consume_count),
        .min = 1,
        .max = CONFIG_PATTERN_MAX,
        .default_doc = "none (may consume nothing)",
        .description = "Destinations the user may subscribe to, as for `publish`.",
    },
    {
        .name = "tags",
        .type = CONFIG_TYPE_NAMES,
        .offset = offsetof(struct config_user, tags),
        .count_offset = offsetof(struct config_user, tag_count),
        .min = 1,
        .max = 64,
        .default_doc = "none (no access to the admin API)",
        .check = config_check_user_tag,
        .description =
            "RabbitMQ's user tags, for the admin API on the ops listener (docs/operations.md): "
            "`administrator` may read and change everything; `monitoring` may read everything; "
            "`management` (and `policymaker`, read as `management`) may read the queues, "
            "exchanges and bindings its `consume` patterns allow and its own connections. A "
            "user without tags may log in over the protocols but not to the admin API.",
    },
    {
        .name = "vhosts",
        .type = CONFIG_TYPE_NAMES,
        .offset = offsetof(struct config_user, vhosts),
        .count_offset = offsetof(struct config_user, vhost_count),
        .min = 1,
        .max = 255,
        .default_doc = "absent: every vhost",
        .flags = CONFIG_KEY_EMPTY_LIST,
        .description =
            "The vhosts (`vhosts`) the user may connect to, as RabbitMQ's per-vhost "
            "permissions (`rabbitmqctl set_permissions -p VHOST`): `[sales]`, `[\"/\", sales]`; "
            "`[]` allows none. Each must be a configured vhost. Any other is refused when the "
            "client opens it: AMQP 0-9-1 `530 NOT_ALLOWED - access to vhost 'x' refused for "
            "user 'u'`, a STOMP ERROR, AMQP 1.0 `amqp:unauthorized-access`; a client that "
            "chooses no vhost is in `/`, so a list without `/` refuses it too. A reload that "
            "takes a vhost from the list closes the user's open connections in it, as it closes "
            "a removed user's. The `publish` and `consume` patterns still apply in every "
            "vhost; for patterns per vhost use `permissions`.",
    },
    {
        .name = "permissions",
        .type = CONFIG_TYPE_PERMISSIONS,
        .offset = offsetof(struct config_user, permissions),
        .count_offset = offsetof(struct config_user, permission_count),
        .keys = permission_keys,
        .key_count = CONFIG_ARRAY_LEN(permission_keys),
        .default_doc = "absent: `publish`, `consume` and `vhosts` apply",
        .description =
            "RabbitMQ's permissions, per vhost: a mapping of vhost names to `{configure, "
            "write, read}`, each one regular expression, e.g. `{\"/\": {configure: \"\", "
            "write: \"^orders\", read: \".*\"}}`. The user may use only the vhosts named (`{}`: "
            "none). A user with `permissions` may not also have `publish`, `consume` or "
            "`vhosts`. `GET /api/permissions` shows them. `definitions.import_users` fills "
            "this key from a RabbitMQ export.",
    },
};

const struct config_key config_keys[] = {
    {
        .name = "node_id",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, node_id),
        .min = 1,
        .max = 255,
        .default_doc = "the host name",
        .flags = CONFIG_KEY_RESTART,
        .check = config_check_topic_chars,
        .description = "Name of this kbridged instance; tells nodes that share a Kafka "
                       "cluster apart in logs and metrics. Letters, digits, `.`, `_` and `-`.",
    },
    {
        .name = "processes",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, processes),
        .min = 0,
        .max = 64,
        .default_value = "1",
        .flags = CONFIG_KEY_RESTART,
        .description =
            "Worker processes on this host. 1 runs one process, as ever. N > 1 makes kbridged a "
            "supervisor that forks N workers before any Kafka handle or thread exists; worker "
            "i is node `{node_id}-{i}`, binds every client listener with `SO_REUSEPORT` (the "
            "kernel spreads connections over them) and the ops listener at its port + i. The "
            "workers meet only through Kafka, as separate nodes do. 0: one per online CPU. "
            "Needs a shared Kafka (not `kafka.bootstrap: embedded`). See docs/operations.md.",
    },
    {
        .name = "kafka.bootstrap",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, kafka.bootstrap),
        .min = 1,
        .max = CONFIG_BOOTSTRAP_MAX,
        .default_value = "embedded",
        .flags = CONFIG_KEY_RESTART,
        .check = config_check_bootstrap,
        .description = "Kafka brokers as `host:port,host:port` (`[v6]:port` for IPv6), or "
                       "`embedded`: an in-process, in-memory Kafka (librdkafka's mock "
                       "cluster) for development and tests. Nothing stored in the embedded "
                       "Kafka survives a restart.",
    },
    {
        .name = "kafka.topic_prefix",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, kafka.topic_prefix),
        .min = 0,
        .max = 200,
        .default_value = "",
        .flags = CONFIG_KEY_RESTART,
        .check = config_check_topic_chars,
        .description = "Put in front of every queue and topic name to form the Kafka topic: "
                       "with `kb.`, `/queue/orders` uses topic `kb.orders`. Kafka topic "
                       "characters only (`A-Z a-z 0-9 . _ -`).",
    },
    {
        .name = "kafka.properties",
        .type = CONFIG_TYPE_PROPERTIES,
        .offset = offsetof(struct config, kafka.properties),
        .default_doc = "`{}`",
        .flags = CONFIG_KEY_RESTART,
        .description = "librdkafka properties set on every Kafka handle, e.g. "
                       "`security.protocol: SASL_SSL`. Values are passed as written; "
                       "librdkafka checks them when kbridged starts. `bootstrap.servers` is "
                       "refused here: set `kafka.bootstrap`. A name ending in `_file` "
                       "(`sasl.password_file: /etc/kbridge/kafka-password`) sets the property "
                       "without the suffix to the first line of that file, here and in "
                       "`kafka.producer` and `kafka.consumer`, so secrets stay out of this "
                       "file (docs/security.md).",
    },
    {
        .name = "kafka.producer",
        .type = CONFIG_TYPE_PROPERTIES,
        .offset = offsetof(struct config, kafka.producer),
        .default_doc = "`{}`",
        .flags = CONFIG_KEY_RESTART,
        .description = "librdkafka properties for the producer only, set after "
                       "`kafka.properties`. `acks` and `enable.idempotence` are kbridge's "
                       "(`all`, `true`: nothing is confirmed to a client before Kafka has "
                       "it); other values are refused at start. kbridge sets `linger.ms` to 1 "
                       "(librdkafka's default is 5) unless it is set here or in "
                       "`kafka.properties`: each request, reply and confirmed publish would "
                       "wait 5 ms for a batch, while under load records batch anyway; set "
                       "`linger.ms: 5` or more for the most unconfirmed (fire-and-forget) "
                       "throughput (docs/benchmarks.md).",
    },
    {
        .name = "kafka.consumer",
        .type = CONFIG_TYPE_PROPERTIES,
        .offset = offsetof(struct config, kafka.consumer),
        .default_doc = "`{}`",
        .flags = CONFIG_KEY_RESTART,
        .description = "librdkafka properties for consumers only, set after "
                       "`kafka.properties`. `enable.auto.offset.store` is kbridge's "
                       "(`false`: an offset is stored only once the client settled every "
                       "message before it); other values are refused at start.",
    },
    {
        .name = "kafka.drain_budget",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, kafka.drain_budget),
        .min = 1,
        .max = 1000000,
        .default_value = "256",
        .flags = CONFIG_KEY_RESTART,
        .description = "Kafka events (delivery reports, fetched records, rebalance and close "
                       "events) one queue hands to the event loop per wake-up; the rest are "
                       "served on the next loop iteration, after the clients that are ready, "
                       "so a burst from Kafka does not hold every connection up.",
    },
    {
        .name = "listeners",
        .type = CONFIG_TYPE_LISTENERS,
        .offset = offsetof(struct config, listeners),
        .count_offset = offsetof(struct config, listener_count),
        .default_doc = "none: no listener is started",
        .flags = CONFIG_KEY_RESTART,
        .keys = listener_keys,
        .key_count = CONFIG_ARRAY_LEN(listener_keys),
        .description =
            "Client and operations listeners, keyed by a name of your choice, each a mapping "
            "with the keys below: `listeners: { stomp: { bind: \"0.0.0.0:61613\" }, amqp: "
            "{ bind: \"0.0.0.0:5672\" }, http: { bind: \"127.0.0.1:15672\" } }`. A listener "
            "serves the protocols in its `protocols` list, by default the one named like the "
            "listener, so `listeners.stomp` serves STOMP, `listeners.amqp` AMQP 1.0 and "
            "`listeners.http` the operations endpoints (`/healthz`, `/readyz`, `/metrics`, "
            "`/api/status`). `kbridged --help` lists the protocols built in; any other name is "
            "refused at start with that list. There is no limit on how many listeners there "
            "are; at most one serves `http`.",
    },
    {
        .name = "http.ui_dir",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, http.ui_dir),
        .min = 1,
        .max = 4096,
        .default_doc = "the installed `DATADIR/kbridge/ui` (`/usr/share/kbridge/ui` in the "
                       "packages)",
        .description =
            "The folder the web dashboard's files are served from, under `/ui/` on the ops "
            "listener (`listeners.http`), to users with an admin tag (HTTP basic, as the "
            "admin API; [operations.md](operations.md#dashboard)). Only regular files below "
            "it are served: a symbolic link leading out of it, hidden names and `..` answer "
            "404. A folder that does not exist answers 404 and is logged once. A relative "
            "path is read from kbridged's working directory; read on every request, so a "
            "SIGHUP applies a new value at once.",
    },
    {
        .name = "http.max_body_size",
        .type = CONFIG_TYPE_SIZE,
        .offset = offsetof(struct config, http.max_body_size),
        .min = 4096,
        .max = CONFIG_GIB,
        .default_value = "16MiB",
        .flags = CONFIG_KEY_RESTART,
        .description = "Largest request body the ops listener (`listeners.http`) reads, whole, "
                       "before answering: a larger one is answered 413 and the connection "
                       "closed. Bounds `POST /api/definitions` (a RabbitMQ definitions export "
                       "of a few hundred queues is well over 64 KiB; RabbitMQ's management "
                       "API takes 20 MB by default) and every other admin API body.",
    },
    {
        .name = "http.max_headers_size",
        .type = CONFIG_TYPE_SIZE,
        .offset = offsetof(struct config, http.max_headers_size),
        .min = 1024,
        .max = 1024 * 1024,
        .default_value = "16KiB",
        .flags = CONFIG_KEY_RESTART,
        .description = "Largest request line and headers, together, the ops listener reads: "
                       "a larger request is answered 400 and the connection closed.",
    },
    {
        .name = "http.timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, http.timeout_ms),
        .min = 1000,
        .max = 10 * CONFIG_MINUTE_MS,
        .default_value = "30s",
        .flags = CONFIG_KEY_RESTART,
        .description = "How long a connection to the ops listener may wait for the client's "
                       "next bytes (or to take ours) before it is closed; whole seconds (the "
                       "HTTP server counts in seconds, rounded up). It also bounds an HTTPS "
                       "handshake that never finishes (the other listeners use "
                       "`limits.tls_handshake_timeout`).",
    },
    {
        .name = "shovels",
        .type = CONFIG_TYPE_SHOVELS,
        .offset = offsetof(struct config, shovels),
        .count_offset = offsetof(struct config, shovel_count),
        .default_doc = "none",
        .flags = CONFIG_KEY_RESTART,
        .keys = shovel_keys,
        .key_count = CONFIG_ARRAY_LEN(shovel_keys),
        .description =
            "Shovels (architecture §15, [operations.md](operations.md#shovels)): each moves "
            "messages between a queue of a legacy broker and a kbridge destination, in one "
            "direction, with kbridged as the broker's STOMP or AMQP 1.0 client: `{name, source: "
            "{protocol: stomp, address: HOST:PORT, login, passcode, destination: /queue/x}, "
            "destination: {protocol: kbridge, destination: /queue/x}}` or the mirror image. A "
            "message is acknowledged at its source only after the destination confirmed it "
            "(Kafka's acknowledgement, the broker's RECEIPT or `accepted` disposition): "
            "at-least-once. Read at start: a reload that changes them is logged and applied at "
            "the next restart.",
    },
    {
        .name = "vhosts",
        .type = CONFIG_TYPE_VHOSTS,
        .offset = offsetof(struct config, vhosts),
        .count_offset = offsetof(struct config, vhost_count),
        .default_doc = "`{\"/\": {}}`: only the vhost `/`",
        .flags = CONFIG_KEY_RESTART,
        .keys = vhost_keys,
        .key_count = CONFIG_ARRAY_LEN(vhost_keys),
        .description =
            "RabbitMQ virtual hosts (architecture §11), keyed by name, each a mapping with the "
            "keys below: `vhosts: { \"/\": {}, shop: { topic_prefix: \"shop.\" } }`. `/` "
            "always exists, whether listed or not, and maps to `kafka.topic_prefix`. Exchanges, "
            "queues and bindings are declared per vhost; a declare in a vhost not listed here "
            "is refused as not found. Definitions read from the definitions topic in an "
            "unlisted vhost are kept (another node may list it) but not served here. Clients "
            "choose theirs: AMQP 0-9-1's connection.open (an unknown one is 530), STOMP's "
            "CONNECT `host` when it names one (else `/`), AMQP 1.0's open hostname "
            "`vhost:NAME` (else `/`). A vhost's queues have their own consumer groups "
            "(`kbridge.v.NAME/q.QUEUE`; `/` keeps `kbridge.q.QUEUE`).",
    },
    {
        .name = "definitions.topic",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, definitions.topic),
        .min = 1,
        .max = 249,
        .default_value = "kbridge.definitions",
        .flags = CONFIG_KEY_RESTART,
        .check = config_check_topic_chars,
        .description =
            "The Kafka topic that holds every exchange, queue and binding (architecture §11, "
            "[routing.md](routing.md#where-definitions-live)); used as written "
            "(`kafka.topic_prefix` is not added). Every node of a cluster must name the same "
            "topic. kbridged creates it, with one partition and `cleanup.policy=compact`, when "
            "it is missing and the broker allows CreateTopics; otherwise create it yourself "
            "the same way (`kafka-topics.sh --create --topic kbridge.definitions "
            "--partitions 1 --config cleanup.policy=compact`), so that deletes (tombstones) "
            "and redeclares keep it small (a broker that auto-creates it on first use gives "
            "it its defaults: not compacted). When the topic exists already kbridged asks "
            "Kafka for its `cleanup.policy` (DescribeConfigs) and logs a warning when it does "
            "not compact (not asked of librdkafka's mock cluster, which cannot answer). A node "
            "is not ready (`/readyz`) until it has read the topic up to the end it saw at start.",
    },
    {
        .name = "status.topic",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, status.topic),
        .min = 1,
        .max = 249,
        .default_value = "kbridge.status",
        .flags = CONFIG_KEY_RESTART,
        .check = config_check_topic_chars,
        .description =
            "The Kafka topic of the cluster view (architecture §9, "
            "[operations.md](operations.md#the-status-topic)): every node writes one record "
            "keyed by its `node_id` (its connections, consumers and in-flight messages per "
            "queue, message rates) every `status.interval` and a tombstone when it stops, and "
            "reads every node's; the admin API's `/api/overview`, `/api/nodes`, "
            "`/api/connections` and `/api/queues` show the cluster from it. Used as written "
            "(`kafka.topic_prefix` is not added); every node of a cluster must name the same "
            "topic. kbridged creates it (one partition, `cleanup.policy=compact`) when it is "
            "missing and the broker allows CreateTopics; otherwise create it the same way. "
            "Readiness does not depend on it.",
    },
    {
        .name = "status.interval",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, status.interval_ms),
        .min = 100,
        .max = 10 * CONFIG_MINUTE_MS,
        .default_value = "5s",
        .description = "How often a node writes its record to `status.topic`.",
    },
    {
        .name = "status.expiry",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, status.expiry_ms),
        .min = 0,
        .max = 60 * CONFIG_MINUTE_MS,
        .default_doc = "3 × `status.interval`",
        .description =
            "A node whose last record is older than this is shown as not running (`/api/nodes` "
            "`running: false`, `kbridge.stale: true`) and its connections and consumers leave "
            "the cluster totals; after twice this it is dropped from the view. A node stopped "
            "with SIGTERM leaves at once (it writes a tombstone); one killed leaves this way.",
    },
    {
        .name = "status.max_connections_listed",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, status.max_connections_listed),
        .min = 0,
        .max = 100000,
        .default_value = "1000",
        .description =
            "Most connections one node's status record lists (about 250 bytes each); more are "
            "counted (`connections_total`) but not listed, and the record says so "
            "(`connections_truncated`). Other nodes' `/api/connections` show the listed ones; "
            "a node's own list is always complete.",
    },
    {
        .name = "status.min_write_gap",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, status.min_write_gap_ms),
        .min = 0,
        .max = 10 * CONFIG_MINUTE_MS,
        .default_value = "100ms",
        .description =
            "When an exclusive consumer (AMQP 0-9-1 `basic.consume` with `exclusive`) comes "
            "or goes, a node writes its status record at once rather than at the next "
            "`status.interval`, so that the other nodes refuse or admit consumers of that queue "
            "sooner (architecture §12); but never sooner than this after its previous record, "
            "and one write at a time.",
    },
    {
        .name = "definitions.file",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, definitions.file),
        .min = 1,
        .max = 4096,
        .default_doc = "none",
        .flags = CONFIG_KEY_RESTART,
        .description =
            "A RabbitMQ definitions export (JSON: `rabbitmqctl export_definitions`, the "
            "management API's `GET /api/definitions`) loaded at start, once the node has read "
            "the definitions topic: its vhosts, exchanges, queues and bindings are declared "
            "as a client would. Idempotent: what exists with the same properties is left "
            "alone; what exists with other properties is left as it is and logged as an "
            "error naming it (the node still starts); vhosts not in `vhosts` are skipped with "
            "a warning. Users and permissions are imported only with "
            "`definitions.import_users`; otherwise one log line says how many were skipped. A "
            "relative path is read from kbridged's working directory. `kbridged "
            "--check-config` reads and checks the file.",
    },
    {
        .name = "definitions.import_users",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct config, definitions.import_users),
        .default_value = "false",
        .description =
            "Also take `definitions.file`'s `users` and `permissions` into `auth.users`, as "
            "RabbitMQ's definitions import does: each user with its `password_hash` verbatim "
            "(`rabbit_password_hashing_sha256` or `_sha512`; an export with "
            "`rabbit_password_hashing_md5` users is refused, naming them; an empty hash means "
            "no password login, as in RabbitMQ) and its `tags`, and each permission as that "
            "user's `permissions` entry for the vhost. A user also listed in `auth.users` keeps "
            "the config's entry and the file's permissions for it are skipped; permissions in "
            "vhosts not in `vhosts` are skipped too; one log line at start says how many were "
            "imported and skipped. `topic_permissions` are not imported. The file is read "
            "again by every reload (SIGHUP), so users added to or removed from it follow; "
            "its exchanges and queues are loaded at start only.",
    },
    {
        .name = "auth.anonymous",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct config, auth.anonymous),
        .default_value = "false",
        .description = "Accept clients that do not log in (STOMP CONNECT without `login`, "
                       "AMQP SASL ANONYMOUS). Keep it off in production.",
    },
    {
        .name = "auth.insecure_plaintext",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct config, auth.insecure_plaintext),
        .default_value = "false",
        .description = "Accept `auth.users[].password` in plain text (anyone who can read the "
                       "file has the passwords). For tests and demos only: kbridged logs a "
                       "warning at every start and reload while a user has one.",
    },
    {
        .name = "auth.users",
        .type = CONFIG_TYPE_USERS,
        .offset = offsetof(struct config, auth.users),
        .count_offset = offsetof(struct config, auth.user_count),
        .default_doc = "none",
        .keys = user_keys,
        .key_count = CONFIG_ARRAY_LEN(user_keys),
        .description = "Users who may log in, each a mapping with the keys below, e.g. "
                       "`- { name: app, password_hash: \"$6$...\", publish: [\"^orders\\\\..*\"], "
                       "consume: [\".*\"] }`.",
    },
    {
        .name = "queues.max_deliveries",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, queues.max_deliveries),
        .min = 1,
        .max = 1000000,
        .default_value = "5",
        .description = "When a queue message's delivery count reaches this value it is "
                       "dead-lettered instead of delivered again.",
    },
    {
        .name = "queues.dead_letter_expired",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct config, queues.dead_letter_expired),
        .default_value = "false",
        .description = "What happens to a queue message whose `expires` time (STOMP `expires`, "
                       "AMQP `absolute-expiry-time` or `ttl`) passed before it was delivered: "
                       "`false` drops it (it counts as settled), `true` dead-letters it with "
                       "the reason `expired`. Either way it is not delivered and "
                       "`kbridge_expired_total` counts it.",
    },
    {
        .name = "queues.dead_letter_topic",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, queues.dead_letter_topic),
        .min = 1,
        .max = 249,
        .default_value = "{name}.DLQ",
        .check = config_check_dead_letter_topic,
        .description = "Name of a queue's dead-letter topic; `{name}` stands for the queue "
                       "name and must appear. `{name}-dlt` matches Spring Kafka, "
                       "`dlq.{name}` KIP-1191.",
    },
    {
        .name = "queues.redelivery_delay.initial",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, queues.redelivery_delay.initial_ms),
        .min = 0,
        .max = 7 * 24 * CONFIG_HOUR_MS,
        .default_value = "0s",
        .description = "Delayed redelivery (ActiveMQ's `RedeliveryPolicy`, docs/redelivery.md): "
                       "a queue message a subscriber NACKs (STOMP NACK, AMQP `modified` with "
                       "`delivery-failed`, 0-9-1 `basic.nack`/`basic.reject` with requeue) "
                       "comes back after this delay instead of at once. It leaves its "
                       "partition at once, through a retry topic (`queues.retry_topic`), so "
                       "the messages behind it are not held up; it keeps its delivery count "
                       "and is dead-lettered at `queues.max_deliveries` as without a delay. "
                       "`0s` (the default) redelivers at once, in place, as RabbitMQ does. "
                       "Applies to queues, not to durable topic subscriptions. A queue's "
                       "retry topics are fixed when its consumer group joins on a node.",
    },
    {
        .name = "queues.redelivery_delay.multiplier",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, queues.redelivery_delay.multiplier),
        .min = 1,
        .max = 16,
        .default_value = "2",
        .check = config_check_multiplier,
        .description = "Each further redelivery of the same message waits this many times "
                       "longer than the one before (ActiveMQ's `backOffMultiplier` with "
                       "`useExponentialBackOff`); `1` keeps the delay constant.",
    },
    {
        .name = "queues.redelivery_delay.max",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, queues.redelivery_delay.max_ms),
        .min = 1,
        .max = 7 * 24 * CONFIG_HOUR_MS,
        .default_value = "1h",
        .description = "No redelivery delay grows beyond this (ActiveMQ's "
                       "`maximumRedeliveryDelay`).",
    },
    {
        .name = "queues.retry_topic",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, queues.retry_topic),
        .min = 1,
        .max = 249,
        .default_value = "{name}.retry.{n}",
        .check = config_check_retry_topic,
        .description = "Name of a queue's retry topics for delayed redelivery: one per "
                       "distinct delay, `{name}` the queue name, `{n}` the retry (1, 2, ...), "
                       "`{index}` the same from 0, `{delay}` its delay in milliseconds. "
                       "`{name}-retry-{index}` matches Spring Kafka's `@RetryableTopic` "
                       "(suffixing with the index), `{name}-retry-{delay}` its older "
                       "delay-value suffixes. Kafka must have them (auto-created or created "
                       "upfront): see docs/redelivery.md.",
    },
    {
        .name = "queues.ack_timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, queues.ack_timeout_ms),
        .min = CONFIG_SECOND_MS,
        .max = 24 * CONFIG_HOUR_MS,
        .default_value = "30m",
        .description = "A subscriber that holds a queue message this long without settling "
                       "it releases it for redelivery.",
    },
    {
        .name = "queues.selector_hold",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, queues.selector_hold_ms),
        .min = CONFIG_SECOND_MS,
        .max = 7 * 24 * CONFIG_HOUR_MS,
        .default_value = "5m",
        .description = "A queue message that no subscriber's message selector selects, while "
                       "every subscriber of the queue on this node has a selector, is settled "
                       "without delivery after waiting this long (counted in "
                       "kbridge_selector_unselected_total), so that it does not hold the "
                       "group's committed offset for ever. ActiveMQ keeps such a message until "
                       "a subscriber selects it; a subscriber without a selector takes it at "
                       "once.",
    },
    {
        .name = "queues.max_in_flight",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, queues.max_in_flight),
        .min = 1,
        .max = 1000000,
        .default_value = "10000",
        .description = "Records a queue may buffer on this node; above it the queue's "
                       "partitions are paused until the buffer is half empty.",
    },
    {
        .name = "queues.linger",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, queues.linger_ms),
        .min = 0,
        .max = CONFIG_HOUR_MS,
        .default_value = "30s",
        .description = "How long a node stays in a queue's (or durable subscription's) "
                       "consumer group after its last local subscriber went. A subscriber "
                       "that comes back within it finds the partitions assigned and the "
                       "waiting messages fetched: no rebalance, no wait. When it ends the "
                       "node commits what was settled and leaves the group; joining again "
                       "costs a rebalance (on Kafka at least "
                       "`group.initial.rebalance.delay.ms`, 3 s by default). A lingering "
                       "node leaves at once when the group rebalances (another node joined "
                       "or left) and on shutdown; until then it keeps its partitions, so "
                       "with several nodes already in the group their messages wait for "
                       "the linger. `0s` leaves as soon as the last subscriber goes.",
    },
    {
        .name = "queues.overflow_refresh",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, queues.overflow_refresh_ms),
        .min = 100,
        .max = CONFIG_MINUTE_MS,
        .default_value = "1s",
        .description = "A queue with `x-overflow: reject-publish` and `x-max-length`: how "
                       "often at most a node that publishes to it looks up its depth in "
                       "Kafka (its group's lag, one lookup on the worker pool, started by a "
                       "publish that finds the last figure older than this; none for queues "
                       "nobody publishes to). Between lookups the node adds the publishes it "
                       "let through to the last figure; other nodes' publishes show at the "
                       "next lookup.",
    },
    {
        .name = "scheduler.enabled",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct config, scheduler.enabled),
        .default_value = "true",
        .flags = CONFIG_KEY_RESTART,
        .description =
            "Run this node's scheduler (architecture §13, [redelivery.md](redelivery.md#"
            "scheduled-delivery)): a member of `scheduler.group` that reads the delay topic and "
            "forwards each scheduled message to its destination when it is due. Delayed "
            "publishes go to the delay topic whatever this says; with `false` on every node "
            "nothing forwards them (they wait in the topic until a node runs a scheduler).",
    },
    {
        .name = "scheduler.topic",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, scheduler.topic),
        .min = 1,
        .max = 200,
        .default_value = "kbridge.scheduled",
        .flags = CONFIG_KEY_RESTART,
        .check = config_check_topic_chars,
        .description =
            "The delay topic (under `kafka.topic_prefix`): a message published with a delay "
            "(STOMP `AMQ_SCHEDULED_DELAY`, AMQP 1.0 `x-opt-delivery-time` / "
            "`x-opt-delivery-delay`, AMQP 0-9-1 `x-delay`) is written here at once, with its "
            "due time and destination in private headers, and confirmed to its publisher "
            "once Kafka has it. Every node of a cluster must name the same topic. kbridged "
            "creates it with `scheduler.partitions` partitions when it is missing and the "
            "broker allows CreateTopics; otherwise create it before the first delayed "
            "publish.",
    },
    {
        .name = "scheduler.group",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, scheduler.group),
        .min = 1,
        .max = 249,
        .default_value = "kbridge.scheduler",
        .flags = CONFIG_KEY_RESTART,
        .description =
            "The consumer group of the schedulers (used as written): the nodes share the "
            "delay topic's partitions, and a restarted node's partitions go on from their "
            "committed offsets (the lowest offset not yet forwarded and confirmed).",
    },
    {
        .name = "scheduler.max_held",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, scheduler.max_held),
        .min = 1,
        .max = 10000000,
        .default_value = "100000",
        .flags = CONFIG_KEY_RESTART,
        .description =
            "Scheduled records a node's scheduler holds in memory waiting for their time; "
            "at this many it pauses its partitions of the delay topic and resumes at half. "
            "Records beyond it wait in Kafka (a paused partition whose held records are "
            "all later than a record behind them delays that record until they are "
            "forwarded: size it above the number of messages scheduled ahead at once).",
    },
    {
        .name = "scheduler.partitions",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, scheduler.partitions),
        .min = 1,
        .max = 10000,
        .default_value = "4",
        .flags = CONFIG_KEY_RESTART,
        .description = "Partitions of the delay topic when kbridged creates it (a broker that "
                       "auto-creates topics gives it its own default). More partitions spread the "
                       "scheduling over more nodes.",
    },
    {
        .name = "replies.max_outstanding",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, replies.max_outstanding),
        .min = 1,
        .max = 10000000,
        .default_value = "100000",
        .description = "Requests (messages with a temporary queue as reply-to) a node "
                       "remembers, to give a native reply that carries only "
                       "`kafka_correlationId` the requester's `correlation-id` and to time "
                       "replies; above it the oldest is forgotten first.",
    },
    {
        .name = "replies.remember",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, replies.remember_ms),
        .min = CONFIG_SECOND_MS,
        .max = 24 * CONFIG_HOUR_MS,
        .default_value = "10m",
        .description = "How long a node remembers a request (see `replies.max_outstanding`); "
                       "a native reply that comes later still arrives, without the "
                       "requester's `correlation-id` unless it carries one.",
    },
    {
        .name = "replies.local",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct config, replies.local),
        .default_value = "true",
        .description = "Deliver a reply whose temporary queue lives on this node in memory, "
                       "without writing it to Kafka, as RabbitMQ's direct reply-to does (its "
                       "replies are not persisted either: a temporary queue dies with its "
                       "connection). The responder's receipt or disposition comes at once. "
                       "Replies for other nodes' temporary queues and requests always go "
                       "through Kafka. `false`: every reply is written to the owning node's "
                       "reply topic first (a native Kafka reader of `kbridge.reply.*` then "
                       "sees them all).",
    },
    {
        .name = "transactions.producers",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, transactions.producers),
        .min = 1,
        .max = 256,
        .default_value = "4",
        .flags = CONFIG_KEY_RESTART,
        .description = "Transactional Kafka producers per node (architecture §8), made on "
                       "first use with `transactional.id` `kbridge.NODE.N` (N from 0), so a "
                       "restarted node fences its own unfinished transactions. Each commits "
                       "one client transaction at a time; commits beyond this many at once "
                       "wait their turn. Give every node its own `node_id`.",
    },
    {
        .name = "transactions.max_messages",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, transactions.max_messages),
        .min = 1,
        .max = 1000000,
        .default_value = "10000",
        .description = "Sends one client transaction may hold until its commit (STOMP SEND "
                       "with `transaction`, AMQP 0-9-1 publishes in tx mode, AMQP 1.0 "
                       "transactional transfers); the next one is refused with an error.",
    },
    {
        .name = "transactions.max_bytes",
        .type = CONFIG_TYPE_SIZE,
        .offset = offsetof(struct config, transactions.max_bytes),
        .min = 1024,
        .max = 1024 * CONFIG_MIB,
        .default_value = "16MiB",
        .description = "Bytes (bodies and properties) one client transaction may hold until "
                       "its commit; the send that would go over is refused with an error. "
                       "kbridge holds a transaction's sends in memory and writes them at "
                       "commit, so this bounds its memory per transaction.",
    },
    {
        .name = "transactions.timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, transactions.timeout_ms),
        .min = CONFIG_SECOND_MS,
        .max = 24 * CONFIG_HOUR_MS,
        .default_value = "60s",
        .description = "How long a client transaction may stay open (from BEGIN, tx.select "
                       "or the first use after a commit, or declare). Then kbridge aborts it "
                       "(its sends are dropped, its acknowledgements undone) and tells the "
                       "client with an error.",
    },
    {
        .name = "transactions.call_timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, transactions.call_timeout_ms),
        .min = CONFIG_SECOND_MS,
        .max = 10 * CONFIG_MINUTE_MS,
        .default_value = "30s",
        .description = "Bound of each blocking Kafka transaction call (init_transactions, "
                       "commit_transaction, abort_transaction) on the worker pool. A commit "
                       "that does not finish in it is aborted and the client gets an error.",
    },
    {
        .name = "transactions.exactly_once",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct config, transactions.exactly_once),
        .default_value = "false",
        .description = "Commit the consumer-group offsets a transaction's acknowledgements "
                       "(ACK, basic.ack, accepted) advance inside the same Kafka transaction "
                       "as its sends (send_offsets_to_transaction), so a consume-transform-"
                       "produce transaction's inputs are never redelivered once its outputs "
                       "are committed, also after a crash. Off: the acknowledgements reach "
                       "the group through the ordinary commit after the Kafka commit "
                       "(at-least-once). Needs a real Kafka: librdkafka's mock cluster "
                       "accepts and drops transactional offset commits.",
    },
    {
        .name = "workers.threads",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, workers.threads),
        .min = 1,
        .max = 64,
        .default_value = "2",
        .flags = CONFIG_KEY_RESTART,
        .description = "Threads of the worker pool, which runs what must not block the event "
                       "loop: password hash checks of STOMP CONNECT and AMQP SASL PLAIN "
                       "(a yescrypt check takes tens of milliseconds of CPU) and Kafka's "
                       "blocking calls (topic lookups, topic creation, group anchoring, a "
                       "closed consumer's final teardown, the readiness probe). Work beyond "
                       "this many at once waits its turn; other clients are not held up.",
    },
    {
        .name = "dlq.peek_max",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, dlq.peek_max),
        .min = 1,
        .max = 10000,
        .default_value = "100",
        .description = "Most dead letters one peek of the admin API (`GET "
                       "/api/kbridge/dlq/VHOST/QUEUE/messages?count=N`, `kbridgectl dlq peek`) "
                       "returns; a larger count is refused. The records are held in memory "
                       "until the answer is sent.",
    },
    {
        .name = "dlq.redrive_batch",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, dlq.redrive_batch),
        .min = 1,
        .max = 100000,
        .default_value = "500",
        .description = "Dead letters one redrive job re-publishes before it waits for Kafka to "
                       "confirm them and commits the dead-letter group past them. A crash "
                       "mid-redrive re-publishes at most this many again (never loses any); "
                       "each job holds a worker thread while it runs.",
    },
    {
        .name = "dlq.redrive_debug_batch_delay_ms",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, dlq.redrive_debug_batch_delay_ms),
        .min = 0,
        .max = 60000,
        .default_value = "0",
        .description = "Debugging and tests only: a pause on the event loop's timer between "
                       "two redrive batches, so that a test can kill kbridged in the middle of "
                       "a redrive. Leave it 0.",
    },
    {
        .name = "topics.max_backlog",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, topics.max_backlog),
        .min = 1,
        .max = 10000000,
        .default_value = "10000",
        .description = "Messages a non-durable topic subscriber may have waiting on this node "
                       "(its connection is backed up); past it `topics.slow_subscriber` applies.",
    },
    {
        .name = "topics.slow_subscriber",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct config, topics.slow_subscriber),
        .min = 1,
        .max = 32,
        .default_value = "drop-oldest",
        .check = config_check_slow_subscriber,
        .description = "What happens to a non-durable topic subscriber whose backlog is full: "
                       "`drop-oldest` drops its oldest waiting message (counted in "
                       "`kbridge_topic_dropped_total`), `disconnect` ends the subscription "
                       "with an error (STOMP ERROR, then the connection closes).",
    },
    {
        .name = "limits.max_frame_size",
        .type = CONFIG_TYPE_SIZE,
        .offset = offsetof(struct config, limits.max_frame_size),
        .min = CONFIG_KIB,
        .max = CONFIG_GIB,
        .default_value = "17MiB",
        .description = "Largest STOMP frame or AMQP frame accepted from a client. The default "
                       "takes a body of the default `limits.max_message_size` plus 1 MiB of "
                       "command and headers. A connection buffers at most about two frames "
                       "of input, whatever this is.",
    },
    {
        .name = "limits.max_message_size",
        .type = CONFIG_TYPE_SIZE,
        .offset = offsetof(struct config, limits.max_message_size),
        .min = 1,
        .max = CONFIG_GIB,
        .default_value = "16MiB",
        .description = "Largest message body a client may publish; a larger one is refused "
                       "with an error. The default matches what RabbitMQ takes by default in "
                       "a STOMP body. Kafka brokers refuse records over their "
                       "`message.max.bytes` / the topic's `max.message.bytes` (1 MB by "
                       "default): raise those for large messages, or lower this to them so "
                       "clients get kbridge's error before Kafka's.",
    },
    {
        .name = "limits.max_headers",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_headers),
        .min = 1,
        .max = 10000,
        .default_value = "64",
        .description = "Most headers (STOMP) or application properties (AMQP) in one message.",
    },
    {
        .name = "limits.max_connections",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_connections),
        .min = 1,
        .max = 1000000,
        .default_value = "10000",
        .description = "Most client connections open at once, every protocol and listener "
                       "together; further ones get their protocol's error naming the limit and "
                       "are counted in "
                       "`kbridge_limit_refusals_total{limit=\"max_connections\"}`.",
    },
    {
        .name = "limits.max_subscriptions",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_subscriptions),
        .min = 1,
        .max = 100000,
        .default_value = "1024",
        .description = "Most subscriptions one STOMP connection holds (temporary queues "
                       "count), most links (both directions) on one AMQP connection, and most "
                       "consumers on one AMQP 0-9-1 connection (every channel together); one "
                       "more gets an error naming the limit (STOMP ERROR \"too many "
                       "subscriptions\", AMQP attach refused with "
                       "amqp:resource-limit-exceeded, 0-9-1 channel.close 506 RESOURCE_ERROR) "
                       "and is counted in "
                       "`kbridge_limit_refusals_total{limit=\"max_subscriptions\"}`. Unacked "
                       "deliveries per subscription are bounded by its prefetch (STOMP), link "
                       "credit (AMQP) or basic.qos (0-9-1), and per connection by "
                       "`limits.max_unacked`.",
    },
    {
        .name = "limits.max_connections_per_address",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_connections_per_address),
        .max = 1000000,
        .default_value = "0",
        .description = "Most client connections open at once from one source address (its IP, "
                       "every protocol and listener together); 0: no limit. A connection over "
                       "it gets its protocol's error naming the limit (STOMP ERROR, AMQP "
                       "amqp:resource-limit-exceeded) and is counted in "
                       "`kbridge_limit_refusals_total{limit=\"max_connections_per_address\"}`. "
                       "Mind clients behind one NAT address.",
    },
    {
        .name = "limits.max_connections_per_user",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_connections_per_user),
        .max = 1000000,
        .default_value = "0",
        .description = "Most logged-in connections of one user (anonymous ones count as the "
                       "user `anonymous`), every protocol together; 0: no limit. One more login "
                       "gets its protocol's error naming the limit and is counted in "
                       "`kbridge_limit_refusals_total{limit=\"max_connections_per_user\"}`.",
    },
    {
        .name = "limits.max_auth_failures_per_minute",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_auth_failures_per_minute),
        .max = 1000000,
        .default_value = "10",
        .description = "Failed logins from one source address in a minute after which its "
                       "next logins are not checked at all: each is refused, after "
                       "`limits.auth_failure_delay`, with an error naming this limit, until a "
                       "minute has passed since the first failure (counted in "
                       "`kbridge_limit_refusals_total{limit=\"max_auth_failures_per_minute\"}`). "
                       "0: off. STOMP logins and AMQP SASL logins count alike (AMQP's SASL "
                       "outcome carries no text: the refusal's reason is in kbridged's log).",
    },
    {
        .name = "limits.auth_failure_delay",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, limits.auth_failure_delay_ms),
        .max = 60 * CONFIG_SECOND_MS,
        .default_value = "1s",
        .description = "How long a login refused by `limits.max_auth_failures_per_minute` "
                       "waits before its refusal is sent (slows a password-guessing client "
                       "without holding a worker thread).",
    },
    {
        .name = "limits.max_unconfirmed",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_unconfirmed),
        .min = 1,
        .max = 1000000,
        .default_value = "10000",
        .description = "Publishes of one connection waiting for Kafka's confirmation; at it "
                       "kbridged takes no more from that connection until Kafka confirms one. "
                       "Records in flight are held by librdkafka, whose "
                       "queue.buffering.max.kbytes bounds them for all connections together. "
                       "Below ~5000 a single fast publisher is limited by Kafka's round trip "
                       "(docs/benchmarks.md).",
    },
    {
        .name = "limits.max_unacked",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.max_unacked),
        .min = 1,
        .max = 10000000,
        .default_value = "100000",
        .description = "Deliveries of one connection (every subscription, consumer or link "
                       "of it together) that wait for the client's ack or settlement; at it "
                       "kbridged sends that connection no more until the client settles one "
                       "(not an error: as a prefetch does; counted in "
                       "`kbridge_limit_refusals_total{limit=\"max_unacked\"}` each time "
                       "deliveries stop). Auto-acked deliveries (STOMP `ack:auto`, AMQP "
                       "pre-settled, 0-9-1 `no_ack`) and non-durable topic messages do not "
                       "count. Each subscription is bounded by its own prefetch or credit too.",
    },
    {
        .name = "limits.heartbeat",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, limits.heartbeat_ms),
        .min = CONFIG_SECOND_MS,
        .max = CONFIG_HOUR_MS,
        .default_value = "10s",
        .description = "Heart-beat interval offered to STOMP clients and idle timeout "
                       "announced to AMQP clients; a client silent for longer is "
                       "disconnected. A STOMP client that asks for a shorter heart-beat gets "
                       "it, down to `stomp.heartbeat_min`; one that asks for none (no "
                       "heart-beat header, or 0,0) gets none.",
    },
    {
        .name = "limits.protocol_detect_timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, limits.protocol_detect_timeout_ms),
        .min = 100,
        .max = 10 * CONFIG_MINUTE_MS,
        .default_value = "10s",
        .description = "On a listener with several `protocols`: how long a new connection may "
                       "take to send the first bytes that tell its protocol; it is closed after.",
    },
    {
        .name = "limits.tls_handshake_timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, limits.tls_handshake_timeout_ms),
        .min = 100,
        .max = 10 * CONFIG_MINUTE_MS,
        .default_value = "10s",
        .description = "On a TLS listener: how long a new connection may take to finish the TLS "
                       "handshake (and, on a listener of several `protocols`, to send its first "
                       "bytes); it is closed after and counted in "
                       "`kbridge_tls_handshake_failures_total`.",
    },
    {
        .name = "limits.protocol_detect_bytes",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct config, limits.protocol_detect_bytes),
        .min = 8,
        .max = 4096,
        .default_value = "256",
        .description = "On a listener with several `protocols`: the most bytes of a new "
                       "connection read (and left unconsumed) to tell its protocol; a connection "
                       "whose first bytes still match none is closed. AMQP needs 8; STOMP "
                       "needs `CONNECT` or `STOMP` and an end of line after any leading blank "
                       "lines.",
    },
    {
        .name = "limits.handshake_timeout",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, limits.handshake_timeout_ms),
        .min = 100,
        .max = 30 * CONFIG_SECOND_MS,
        .default_value = "10s",
        .description = "How long a new connection may take to finish its handshakes: the "
                       "WebSocket upgrade request, then STOMP's CONNECT (the whole login) or "
                       "AMQP's protocol headers, SASL and open. It is closed after.",
    },
    {
        .name = "log.level",
        .type = CONFIG_TYPE_LOG_LEVEL,
        .offset = offsetof(struct config, log.level),
        .default_value = "info",
        .description = "Least severe level written. Message payloads are logged only at "
                       "`debug`.",
    },
    {
        .name = "log.format",
        .type = CONFIG_TYPE_LOG_FORMAT,
        .offset = offsetof(struct config, log.format),
        .default_value = "text",
        .description = "`text` lines, or `json`: one JSON object per line.",
    },
    {
        .name = "shutdown_grace",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct config, shutdown_grace_ms),
        .min = 0,
        .max = 10 * CONFIG_MINUTE_MS,
        .default_value = "10s",
        .description = "On SIGTERM, how long kbridged waits for in-flight publishes to be "
                       "confirmed and offsets to be committed before it exits.",
    },
};

const size_t config_key_count = CONFIG_ARRAY_LEN(config_keys);

/* ------------------------------------------------------------------------ */
/* The Markdown reference                                                   */
/* ------------------------------------------------------------------------ */

static const char *config_type_doc(enum config_type type)
{
    switch (type) {
    case CONFIG_TYPE_STRING: return "string";
    case CONFIG_TYPE_BOOL: return "boolean (`true` or `false`)";
    case CONFIG_TYPE_UINT32: return "integer";
    case CONFIG_TYPE_SIZE: return "size (`B`, `KiB`, `MiB`, `GiB`; a bare number is bytes)";
    case CONFIG_TYPE_DURATION: return "duration (`ms`, `s`, `m`, `h`; a bare number is seconds)";
    case CONFIG_TYPE_LOG_LEVEL: return "`error`, `warn`, `info` or `debug`";
    case CONFIG_TYPE_LOG_FORMAT: return "`text` or `json`";
    case CONFIG_TYPE_PROPERTIES: return "mapping of librdkafka property names to values";
    case CONFIG_TYPE_ADDRESS: return "address: `host:port` or `[IPv6]:port`";
    case CONFIG_TYPE_NAMES: return "list of names";
    case CONFIG_TYPE_LISTENERS: return "mapping of listener names to listeners";
    case CONFIG_TYPE_PATTERNS: return "list of POSIX extended regular expressions";
    case CONFIG_TYPE_USERS: return "list of users";
    case CONFIG_TYPE_VHOSTS: return "mapping of vhost names to vhosts";
    case CONFIG_TYPE_SHOVELS: return "list of shovels";
    case CONFIG_TYPE_PERMISSIONS: return "mapping of vhost names to permissions";
    }
    return "?";
}

static void config_write_key(FILE *stream, const char *prefix, const struct config_key *key,
                             unsigned inherited_flags, const char *former)
{
    char low[32], high[32];
    unsigned flags = key->flags | inherited_flags;

    fprintf(stream, "### `%s%s`\n\n", prefix, key->name);
    fprintf(stream, "- Type: %s\n", config_type_doc(key->type));
    if (key->default_value != NULL && key->default_value[0] != '\0')
        fprintf(stream, "- Default: `%s`\n", key->default_value);
    else if (key->default_value != NULL)
        fprintf(stream, "- Default: empty\n");
    else if (key->default_doc != NULL)
        fprintf(stream, "- Default: %s\n", key->default_doc);

    switch (key->type) {
    case CONFIG_TYPE_STRING:
        if (key->min == 0)
            fprintf(stream, "- Length: at most %" PRIu64 " characters\n", key->max);
        else
            fprintf(stream, "- Length: %" PRIu64 " to %" PRIu64 " characters\n", key->min,
                    key->max);
        break;
    case CONFIG_TYPE_PATTERNS:
        if (key->min == 0)
            fprintf(stream,
                    "- Length: at most %" PRIu64 " characters; one pattern, also written as a "
                    "string, or `\"\"` for none\n",
                    key->max);
        else
            fprintf(stream, "- Length: %" PRIu64 " to %" PRIu64 " characters per pattern\n",
                    key->min, key->max);
        break;
    case CONFIG_TYPE_NAMES:
        fprintf(stream, "- Length: %" PRIu64 " to %" PRIu64 " characters per name\n", key->min,
                key->max);
        break;
    case CONFIG_TYPE_UINT32:
        fprintf(stream, "- Range: %" PRIu64 " to %" PRIu64 "\n", key->min, key->max);
        break;
    case CONFIG_TYPE_SIZE:
        config_format_size(key->min, low, sizeof(low));
        config_format_size(key->max, high, sizeof(high));
        fprintf(stream, "- Range: %s to %s\n", low, high);
        break;
    case CONFIG_TYPE_DURATION:
        config_format_duration(key->min, low, sizeof(low));
        config_format_duration(key->max, high, sizeof(high));
        fprintf(stream, "- Range: %s to %s\n", low, high);
        break;
    default: break;
    }
    if (flags & CONFIG_KEY_REQUIRED)
        fprintf(stream, "- Required: yes\n");
    if (former != NULL)
        fprintf(stream, "- Former spelling: `%s` (still accepted; logs a deprecation warning)\n",
                former);
    if (flags & CONFIG_KEY_RESTART)
        fprintf(stream, "- Reload: needs a restart (SIGHUP keeps the running value and logs a "
                        "warning)\n");
    else
        fprintf(stream, "- Reload: applied by SIGHUP\n");
    fprintf(stream, "\n%s\n\n", key->description);
}

void config_write_reference(FILE *stream, const struct config_section *const *sections,
                            size_t count)
{
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *key = &config_keys[i];
        config_write_key(stream, "", key, 0, NULL);
        if (key->type != CONFIG_TYPE_USERS && key->type != CONFIG_TYPE_LISTENERS &&
            key->type != CONFIG_TYPE_VHOSTS && key->type != CONFIG_TYPE_SHOVELS)
            continue;
        char prefix[64];
        bool list = key->type == CONFIG_TYPE_USERS || key->type == CONFIG_TYPE_SHOVELS;
        snprintf(prefix, sizeof(prefix), list ? "%s[]." : "%s.NAME.", key->name);
        for (size_t j = 0; j < key->key_count; j++) {
            const struct config_key *row = &key->keys[j];
            config_write_key(stream, prefix, row, key->flags & CONFIG_KEY_RESTART, NULL);
            if (row->type != CONFIG_TYPE_PERMISSIONS)
                continue;
            char nested[128];
            snprintf(nested, sizeof(nested), "%s%s.VHOST.", prefix, row->name);
            for (size_t n = 0; n < row->key_count; n++)
                config_write_key(stream, nested, &row->keys[n], key->flags & CONFIG_KEY_RESTART,
                                 NULL);
        }
    }
    /* each adapter's section: its keys under its name */
    for (size_t s = 0; s < count; s++) {
        const struct config_section *section = sections[s];
        char prefix[CONFIG_NAME_MAX + 2];
        snprintf(prefix, sizeof(prefix), "%s.", section->name);
        for (size_t j = 0; j < section->key_count; j++) {
            const char *former = NULL;
            for (size_t a = 0; a < section->alias_count; a++)
                if (strcmp(section->aliases[a].key, section->keys[j].name) == 0)
                    former = section->aliases[a].old_name;
            config_write_key(stream, prefix, &section->keys[j], 0, former);
        }
    }
}
