#include "metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,     10,   30};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

struct metric {
    char *family;
    char *help;
    char *labels;
    metric_type_t type;
    double value;
    double sum;
    unsigned long long count;
    unsigned long long bucket_counts[NBUCKETS];
    struct metric *next;
};

typedef struct collector {
    metrics_collector_fn fn;
    void *ud;
    struct collector *next;
} collector_t;

static metric_t *series_head;
static metric_t *series_tail;
static collector_t *collectors;

metric_t *metrics_series(const char *family, metric_type_t type, const char *help,
                         const char *labels)
{
    for (metric_t *m = series_head; m; m = m->next) {
        if (strcmp(m->family, family) == 0 && strcmp(m->labels, labels) == 0) {
            return m;
        }
    }
    metric_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
        abort();
    }
    m->family = strdup(family);
    m->help = strdup(help);
    m->labels = strdup(labels);
    m->type = type;
    /* Keep a family's series together so the family is rendered once. */
    metric_t *after = NULL;
    for (metric_t *x = series_head; x; x = x->next) {
        if (strcmp(x->family, family) == 0) {
            after = x;
        }
    }
    if (after) {
        m->next = after->next;
        after->next = m;
        if (series_tail == after) {
            series_tail = m;
        }
    } else if (series_tail) {
        series_tail->next = m;
        series_tail = m;
    } else {
        series_head = series_tail = m;
    }
    return m;
}

void metric_add(metric_t *m, double v)
{
    m->value += v;
}

void metric_set(metric_t *m, double v)
{
    m->value = v;
}

void metric_observe(metric_t *m, double v)
{
    m->sum += v;
    m->count++;
    for (size_t i = 0; i < NBUCKETS; i++) {
        if (v <= buckets[i]) {
            m->bucket_counts[i]++;
        }
    }
}

void metrics_label(char *buf, size_t cap, const char *name, const char *value)
{
    size_t n = (size_t)snprintf(buf, cap, "%s=\"", name);
    for (const char *p = value; *p && n + 3 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            buf[n++] = '\\';
            buf[n++] = *p;
        } else if (*p == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *p;
        }
    }
    if (n + 2 <= cap) {
        buf[n++] = '"';
    }
    buf[n < cap ? n : cap - 1] = '\0';
}

void metrics_add_collector(metrics_collector_fn fn, void *ud)
{
    collector_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        abort();
    }
    c->fn = fn;
    c->ud = ud;
    c->next = collectors;
    collectors = c;
}

void metrics_remove_collector(metrics_collector_fn fn, void *ud)
{
    for (collector_t **pp = &collectors; *pp; pp = &(*pp)->next) {
        if ((*pp)->fn == fn && (*pp)->ud == ud) {
            collector_t *c = *pp;
            *pp = c->next;
            free(c);
            return;
        }
    }
}

static void put_value(pg_buf_t *out, double v)
{
    if (v == (double)(long long)v && v < 9e15 && v > -9e15) {
        pg_buf_printf(out, "%lld", (long long)v);
    } else {
        pg_buf_printf(out, "%.9g", v);
    }
}

static void put_labels(pg_buf_t *out, const char *labels, const char *extra)
{
    bool any = labels[0] || (extra && extra[0]);
    if (!any) {
        return;
    }
    pg_buf_putc(out, '{');
    pg_buf_put(out, labels, strlen(labels));
    if (extra && extra[0]) {
        if (labels[0]) {
            pg_buf_putc(out, ',');
        }
        pg_buf_put(out, extra, strlen(extra));
    }
    pg_buf_putc(out, '}');
}

void metrics_render(pg_buf_t *out)
{
    for (collector_t *c = collectors; c; c = c->next) {
        c->fn(c->ud);
    }
    const char *last_family = NULL;
    for (metric_t *m = series_head; m; m = m->next) {
        if (last_family == NULL || strcmp(last_family, m->family) != 0) {
            static const char *const types[] = {"counter", "gauge", "histogram"};
            pg_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->family, m->help, m->family,
                          types[m->type]);
            last_family = m->family;
        }
        if (m->type != METRIC_HISTOGRAM) {
            pg_buf_put(out, m->family, strlen(m->family));
            put_labels(out, m->labels, NULL);
            pg_buf_putc(out, ' ');
            put_value(out, m->value);
            pg_buf_putc(out, '\n');
            continue;
        }
        char le[48];
        for (size_t i = 0; i < NBUCKETS; i++) {
            snprintf(le, sizeof le, "le=\"%g\"", buckets[i]);
            pg_buf_printf(out, "%s_bucket", m->family);
            put_labels(out, m->labels, le);
            pg_buf_printf(out, " %llu\n", m->bucket_counts[i]);
        }
        pg_buf_printf(out, "%s_bucket", m->family);
        put_labels(out, m->labels, "le=\"+Inf\"");
        pg_buf_printf(out, " %llu\n%s_sum", m->count, m->family);
        put_labels(out, m->labels, NULL);
        pg_buf_putc(out, ' ');
        put_value(out, m->sum);
        pg_buf_printf(out, "\n%s_count", m->family);
        put_labels(out, m->labels, NULL);
        pg_buf_printf(out, " %llu\n", m->count);
    }
}

void metrics_free_all(void)
{
    metric_t *m = series_head;
    while (m) {
        metric_t *n = m->next;
        free(m->family);
        free(m->help);
        free(m->labels);
        free(m);
        m = n;
    }
    series_head = series_tail = NULL;
    collector_t *c = collectors;
    while (c) {
        collector_t *n = c->next;
        free(c);
        c = n;
    }
    collectors = NULL;
}
