/* SPDX-License-Identifier: Apache-2.0 */
/* log.c -- formats log lines (text or JSON) and writes each with a single
 * write(2) to stderr so lines from librdkafka threads never interleave. */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int current_level = LOG_LEVEL_INFO;
static atomic_int current_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The process's node id on every line, when several processes share one
 * stderr (processes > 1); "" leaves lines as a single process writes them.
 * Set once, before any thread starts. */
static char log_node[256];

void log_set_node(const char *node)
{
    snprintf(log_node, sizeof(log_node), "%s", node ? node : "");
}

void log_set_level(enum log_level level) { atomic_store(&current_level, (int)level); }

enum log_level log_get_level(void) { return (enum log_level)atomic_load(&current_level); }

void log_set_format(enum log_format format) { atomic_store(&current_format, (int)format); }

const char *log_level_name(enum log_level level)
{
    if ((int)level < 0 || level > LOG_LEVEL_DEBUG)
        return "unknown";
    return level_names[level];
}

int log_level_parse(const char *text, enum log_level *out)
{
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(text, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

int log_format_parse(const char *text, enum log_format *out)
{
    if (strcmp(text, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcmp(text, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

/* Append `src` to buf as JSON string content; returns the new length. */
static size_t json_escape_into(char *buf, size_t len, size_t cap, const char *src)
{
    for (const unsigned char *p = (const unsigned char *)src; *p && len + 7 < cap; p++) {
        switch (*p) {
        case '"': len += (size_t)snprintf(buf + len, cap - len, "\\\""); break;
        case '\\': len += (size_t)snprintf(buf + len, cap - len, "\\\\"); break;
        case '\n': len += (size_t)snprintf(buf + len, cap - len, "\\n"); break;
        case '\r': len += (size_t)snprintf(buf + len, cap - len, "\\r"); break;
        case '\t': len += (size_t)snprintf(buf + len, cap - len, "\\t"); break;
        default:
            if (*p < 0x20)
                len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", *p);
            else
                buf[len++] = (char)*p;
        }
    }
    return len;
}

void log_writev(enum log_level level, const char *component, const char *fmt, va_list ap)
{
    if ((int)level > atomic_load(&current_level))
        return;

    char message[2048];
    int n = vsnprintf(message, sizeof(message), fmt, ap);
    if (n >= (int)sizeof(message)) /* say so rather than cut silently */
        memcpy(message + sizeof(message) - 15, " [truncated]", 13);
    /* one event, one line */
    for (char *p = message; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char stamp[96];
    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(now.tv_nsec / 1000000) % 1000);

    char line[4096];
    size_t len;
    if (atomic_load(&current_format) == LOG_FORMAT_JSON) {
        len = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",", stamp,
                               log_level_name(level));
        if (log_node[0]) {
            len += (size_t)snprintf(line + len, sizeof(line) - len, "\"node\":\"");
            len = json_escape_into(line, len, sizeof(line) - 4, log_node);
            len += (size_t)snprintf(line + len, sizeof(line) - len, "\",");
        }
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\"component\":\"");
        len = json_escape_into(line, len, sizeof(line) - 4, component);
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\",\"msg\":\"");
        len = json_escape_into(line, len, sizeof(line) - 4, message);
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\"}\n");
    } else {
        int m = snprintf(line, sizeof(line), "%s %-5s %s%s[%s] %s\n", stamp, log_level_name(level),
                         log_node, log_node[0] ? " " : "", component, message);
        len = m >= (int)sizeof(line) ? sizeof(line) - 1 : (size_t)m;
        line[len - 1] = '\n';
    }
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}

void log_write(enum log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_writev(level, component, fmt, ap);
    va_end(ap);
}
