/* metrics: the process's Prometheus metrics. Owns every series (counters, gauges,
 * histograms), identified by family name plus a rendered label set; renders the text
 * exposition format. Modules look a series up once and keep the pointer, so the hot path is one
 * addition. Collectors (e.g. consumer lag) refresh gauges just before rendering. Single-threaded:
 * only the event loop touches it. */
#ifndef PT_METRICS_H
#define PT_METRICS_H

#include <stddef.h>

#include "pg_buf.h"

typedef struct metric metric_t;

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type_t;

/* Finds or creates a series. labels is the rendered label set without braces, e.g.
 * "topic=\"a\",status=\"ok\"", or "" for none; label values are escaped by metrics_label. */
metric_t *metrics_series(const char *family, metric_type_t type, const char *help,
                         const char *labels);
void metric_add(metric_t *m, double v);
void metric_set(metric_t *m, double v);
/* Histograms use one fixed bucket layout for seconds: 1 ms .. 30 s. */
void metric_observe(metric_t *m, double v);

/* Writes `name="value"` with the value escaped into buf. */
void metrics_label(char *buf, size_t cap, const char *name, const char *value);

typedef void (*metrics_collector_fn)(void *ud);
void metrics_add_collector(metrics_collector_fn fn, void *ud);
void metrics_remove_collector(metrics_collector_fn fn, void *ud);

void metrics_render(pg_buf_t *out);
/* Frees every series (at exit, so valgrind sees no leak). */
void metrics_free_all(void);

#endif
