/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.c -- a small Prometheus registry: families in registration order,
 * each with a list of series. Registration is rare (at start or when a
 * destination appears) so lookups are linear; updates go through the stable
 * value pointer handed out at registration. */
#include "metrics.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric_series {
    struct metric_series *next;
    char *labels;
    union {
        uint64_t counter;
        double gauge;
        struct metrics_histogram histogram;
    } value;
    metrics_gauge_fn fn; /* for callback gauges */
    void *fn_arg;
};

struct metric_family {
    struct metric_family *next;
    char *name;
    char *help;
    enum metric_type type;
    struct metric_series *series;
};

struct metrics {
    struct metric_family *families;
    struct metric_family *last;
};

struct metrics *metrics_new(void) { return calloc(1, sizeof(struct metrics)); }

static void metric_series_free(struct metric_series *series)
{
    free(series->labels);
    free(series);
}

void metrics_free(struct metrics *metrics)
{
    if (!metrics)
        return;
    struct metric_family *family = metrics->families;
    while (family) {
        struct metric_family *next_family = family->next;
        struct metric_series *series = family->series;
        while (series) {
            struct metric_series *next = series->next;
            metric_series_free(series);
            series = next;
        }
        free(family->name);
        free(family->help);
        free(family);
        family = next_family;
    }
    free(metrics);
}

static struct metric_family *metric_family_get(struct metrics *metrics, const char *name,
                                               const char *help, enum metric_type type)
{
    for (struct metric_family *f = metrics->families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f->type == type ? f : NULL;
    struct metric_family *family = calloc(1, sizeof(*family));
    if (!family)
        return NULL;
    family->name = strdup(name);
    family->help = strdup(help ? help : "");
    family->type = type;
    if (!family->name || !family->help) {
        free(family->name);
        free(family->help);
        free(family);
        return NULL;
    }
    if (metrics->last)
        metrics->last->next = family;
    else
        metrics->families = family;
    metrics->last = family;
    return family;
}

static struct metric_series *metric_series_get(struct metrics *metrics, const char *name,
                                               const char *help, enum metric_type type,
                                               const char *labels)
{
    struct metric_family *family = metric_family_get(metrics, name, help, type);
    if (!family)
        return NULL;
    if (!labels)
        labels = "";
    struct metric_series **tail = &family->series;
    for (struct metric_series *s = family->series; s; s = s->next) {
        if (strcmp(s->labels, labels) == 0)
            return s;
        tail = &s->next;
    }
    struct metric_series *series = calloc(1, sizeof(*series));
    if (!series)
        return NULL;
    series->labels = strdup(labels);
    if (!series->labels) {
        free(series);
        return NULL;
    }
    *tail = series;
    return series;
}

uint64_t *metrics_counter(struct metrics *metrics, const char *name, const char *help,
                          const char *labels)
{
    struct metric_series *s = metric_series_get(metrics, name, help, METRIC_COUNTER, labels);
    return s ? &s->value.counter : NULL;
}

double *metrics_gauge(struct metrics *metrics, const char *name, const char *help,
                      const char *labels)
{
    struct metric_series *s = metric_series_get(metrics, name, help, METRIC_GAUGE, labels);
    return s ? &s->value.gauge : NULL;
}

int metrics_gauge_callback(struct metrics *metrics, const char *name, const char *help,
                           const char *labels, metrics_gauge_fn fn, void *arg)
{
    struct metric_series *s = metric_series_get(metrics, name, help, METRIC_GAUGE, labels);
    if (!s)
        return -1;
    s->fn = fn;
    s->fn_arg = arg;
    return 0;
}

struct metrics_histogram *metrics_histogram(struct metrics *metrics, const char *name,
                                            const char *help, const char *labels,
                                            const double *bounds, size_t bucket_count)
{
    if (bucket_count > METRICS_HISTOGRAM_MAX_BUCKETS)
        return NULL;
    struct metric_series *s = metric_series_get(metrics, name, help, METRIC_HISTOGRAM, labels);
    if (!s)
        return NULL;
    struct metrics_histogram *histogram = &s->value.histogram;
    if (histogram->bucket_count == 0) {
        histogram->bucket_count = bucket_count;
        memcpy(histogram->bounds, bounds, bucket_count * sizeof(*bounds));
    }
    return histogram;
}

void metrics_histogram_observe(struct metrics_histogram *histogram, double value)
{
    size_t i = 0;
    while (i < histogram->bucket_count && value > histogram->bounds[i])
        i++;
    histogram->counts[i]++;
    histogram->sum += value;
    histogram->count++;
}

/* The shortest decimal that reads back as `value` (0.0025, not
 * 0.0025000000000000001), as Prometheus's own clients write floats. */
static void metrics_format_double(char *out, size_t size, double value)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(out, size, "%.*g", digits, value);
        if (strtod(out, NULL) == value)
            return;
    }
}

/* name_bucket{labels,le="..."} lines, cumulative, then _sum and _count. */
static int metrics_render_histogram(const struct metric_family *f, const struct metric_series *s,
                                    struct evbuffer *out)
{
    const struct metrics_histogram *h = &s->value.histogram;
    const char *comma = s->labels[0] ? "," : "";
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h->bucket_count; i++) {
        cumulative += h->counts[i];
        char le[32];
        if (i < h->bucket_count)
            metrics_format_double(le, sizeof(le), h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        if (evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels, comma,
                                le, (unsigned long long)cumulative) < 0)
            return -1;
    }
    const char *open = s->labels[0] ? "{" : "";
    const char *close = s->labels[0] ? "}" : "";
    char sum[32];
    metrics_format_double(sum, sizeof(sum), h->sum);
    if (evbuffer_add_printf(out, "%s_sum%s%s%s %s\n%s_count%s%s%s %llu\n", f->name, open, s->labels,
                            close, sum, f->name, open, s->labels, close,
                            (unsigned long long)h->count) < 0)
        return -1;
    return 0;
}

void metrics_remove(struct metrics *metrics, const void *value)
{
    for (struct metric_family *f = metrics->families; f; f = f->next) {
        for (struct metric_series **link = &f->series; *link; link = &(*link)->next) {
            struct metric_series *s = *link;
            if ((const void *)&s->value == value) {
                *link = s->next;
                metric_series_free(s);
                return;
            }
        }
    }
}

int metrics_render(const struct metrics *metrics, struct evbuffer *out)
{
    for (const struct metric_family *f = metrics->families; f; f = f->next) {
        if (!f->series)
            continue;
        const char *type = f->type == METRIC_COUNTER     ? "counter"
                           : f->type == METRIC_HISTOGRAM ? "histogram"
                                                         : "gauge";
        if (evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                                type) < 0)
            return -1;
        for (const struct metric_series *s = f->series; s; s = s->next) {
            if (f->type == METRIC_HISTOGRAM) {
                if (metrics_render_histogram(f, s, out) < 0)
                    return -1;
                continue;
            }
            const char *open = s->labels[0] ? "{" : "";
            const char *close = s->labels[0] ? "}" : "";
            int rc;
            if (f->type == METRIC_COUNTER)
                rc = evbuffer_add_printf(out, "%s%s%s%s %llu\n", f->name, open, s->labels, close,
                                         (unsigned long long)s->value.counter);
            else {
                char value[32];
                metrics_format_double(value, sizeof(value),
                                      s->fn ? s->fn(s->fn_arg) : s->value.gauge);
                rc = evbuffer_add_printf(out, "%s%s%s%s %s\n", f->name, open, s->labels, close,
                                         value);
            }
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

int metrics_label(char *buf, size_t size, const char *name, const char *value)
{
    size_t len = 0;
    int n = snprintf(buf, size, "%s=\"", name);
    if (n < 0 || (size_t)n >= size)
        return -1;
    len = (size_t)n;
    for (const char *p = value; *p; p++) {
        const char *escaped = NULL;
        if (*p == '\\')
            escaped = "\\\\";
        else if (*p == '"')
            escaped = "\\\"";
        else if (*p == '\n')
            escaped = "\\n";
        size_t need = escaped ? strlen(escaped) : 1;
        if (len + need + 2 > size)
            return -1;
        if (escaped) {
            memcpy(buf + len, escaped, need);
        } else {
            buf[len] = *p;
        }
        len += need;
    }
    buf[len++] = '"';
    buf[len] = '\0';
    return 0;
}
