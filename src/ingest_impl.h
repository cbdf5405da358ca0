/* ingest_impl: the ingest's state, shared by ingest.c (messages and HTTP bodies through the rules
 * into the filling batch: checks, references, dead letters, held events, per-topic counters)
 * and ingest_batch.c (when a batch is flushed, what its commit or failure does: timers,
 * back-pressure, retries, drains, the waiters of HTTP requests). Private to those two files. */
#ifndef PT_INGEST_IMPL_H
#define PT_INGEST_IMPL_H

#include <stdint.h>
#include <sys/time.h>

#include "flush.h"
#include "ingest.h"
#include "metrics.h"

typedef agg_ref_t ref_t; /* a pattern ID the rule returned */

typedef struct {
    int64_t without, dead, flagged, events, with, over;
} batch_topic_t;

/* Per topic series, looked up once. */
typedef struct {
    metric_t *ok, *dead, *tracked, *without, *flagged, *duplicates;
} topic_metrics_t;

struct ingest_waiter {
    void (*cb)(bool ok, const char *why, void *ud);
    void *ud;
    struct ingest_waiter *next;
};

struct ingest {
    ingest_waiter_t *cur_waiters;      /* wait for the filling batch */
    ingest_waiter_t *inflight_waiters; /* wait for the batch being flushed */
    struct event_base *base;
    const config_t *cfg;
    rules_t *rules;
    ingest_hooks_t hooks;
    flush_t *flush;
    agg_t *cur;                  /* filling */
    agg_t *inflight;             /* being flushed (empty otherwise) */
    batch_topic_t *batch_topics; /* per topic counters of cur, moved into it at flush time */
    size_t n_topics;
    ingest_topic_stats_t *stats;
    topic_metrics_t *tm;
    metric_t *m_flush_seconds, *m_flush_ok, *m_flush_retry, *m_flush_conflict;
    metric_t *m_err_flush, *m_err_conflict, *m_err_dead;
    struct event *batch_timer;
    struct event *retry_timer;
    bool retry_wait;
    int64_t backoff_ms;
    struct timespec cur_started;
    bool force;      /* flush even if not due */
    bool timer_done; /* the batch timer fired: the filling batch is old enough */
    int64_t backlog; /* messages waiting in Kafka for this consumer, as last told */
    void (*drain_cb)(void *ud);
    void *drain_ud;
    ref_t *refs;
    size_t refs_cap;
    uint64_t flushes_ok, flushes_failed;
    uint64_t flushes_waited; /* committed batches that HTTP requests waited for */
    int64_t last_flush_us;
    time_t dl_log_second;
    uint64_t dl_suppressed;
};

static inline int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* Calls and frees every waiter of *list (ok: its events are stored). */
void ingest_notify(ingest_waiter_t **list, bool ok, const char *why);
/* Moves the per-topic counters of the filling batch into its aggregate. */
void ingest_settle_topics(ingest_t *g);
void ingest_batch_timer_cb(evutil_socket_t fd, short what, void *arg);
void ingest_retry_timer_cb(evutil_socket_t fd, short what, void *arg);

#endif
