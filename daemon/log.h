/* SPDX-License-Identifier: Apache-2.0 */
/* log.h -- one-line-per-event logging to stderr, as text or JSON.
 *
 * Every module logs through these calls; librdkafka and libevent logs are
 * routed here too. Thread-safe: librdkafka threads may log (one write(2)
 * per line). Payloads are never logged unless the level is debug. */
#ifndef KBRIDGE_LOG_H
#define KBRIDGE_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1,
};

/* Set the threshold; lines above it are dropped. */
void log_set_level(enum log_level level);
/* Current threshold. */
enum log_level log_get_level(void);
/* Choose text or JSON lines. */
void log_set_format(enum log_format format);

/* Put `node` on every line (text: after the level; JSON: "node"); NULL or
 * "" for none (the default). Call before any thread starts. */
void log_set_node(const char *node);

/* Parse "error|warn|info|debug"; 0 on success, -1 if unknown. */
int log_level_parse(const char *text, enum log_level *out);
/* Parse "text|json"; 0 on success, -1 if unknown. */
int log_format_parse(const char *text, enum log_format *out);
/* Static name of a level ("info"). */
const char *log_level_name(enum log_level level);

/* Write one line: timestamp, level, component, message. `component` names the
 * module ("kafka", "http", "config"). */
void log_write(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* va_list form of log_write. */
void log_writev(enum log_level level, const char *component, const char *fmt, va_list ap);

#define log_error(component, ...) log_write(LOG_LEVEL_ERROR, component, __VA_ARGS__)
#define log_warn(component, ...) log_write(LOG_LEVEL_WARN, component, __VA_ARGS__)
#define log_info(component, ...) log_write(LOG_LEVEL_INFO, component, __VA_ARGS__)
#define log_debug(component, ...) log_write(LOG_LEVEL_DEBUG, component, __VA_ARGS__)

#endif
