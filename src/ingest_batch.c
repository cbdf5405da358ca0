#include "ingest_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flush.h"
#include "log.h"
#include "metrics.h"
#include "rules.h"

/* Catching up (a backlog of at least a batch waits in Kafka, and nobody waits for this batch's
 * commit): freshness is already the backlog's, and a flush costs PostgreSQL per row it writes
 * (a pattern, an hour, a list) more than per event, so batches grow to their size limits, with
 * at most CATCHUP_FACTOR times batch_timeout_ms between flushes. */
#define CATCHUP_FACTOR 8

static void start_flush(ingest_t *g);

static int64_t mono_ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

void ingest_notify(ingest_waiter_t **list, bool ok, const char *why)
{
    ingest_waiter_t *w = *list;
    *list = NULL;
    while (w) {
        ingest_waiter_t *n = w->next;
        w->cb(ok, why, w->ud);
        free(w);
        w = n;
    }
}

ingest_waiter_t *ingest_wait(ingest_t *g, void (*cb)(bool ok, const char *why, void *ud), void *ud)
{
    ingest_waiter_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return NULL;
    }
    w->cb = cb;
    w->ud = ud;
    w->next = g->cur_waiters;
    g->cur_waiters = w;
    return w;
}

void ingest_unwait(ingest_t *g, ingest_waiter_t *w)
{
    ingest_waiter_t **lists[2] = {&g->cur_waiters, &g->inflight_waiters};
    for (int i = 0; i < 2; i++) {
        for (ingest_waiter_t **pp = lists[i]; *pp; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                free(w);
                return;
            }
        }
    }
}

static bool catching_up(const ingest_t *g)
{
    return g->backlog >= g->cfg->batch_max_events && g->cur_waiters == NULL;
}

static int64_t timeout_ms(const ingest_t *g)
{
    return g->cfg->batch_timeout_ms * (catching_up(g) ? CATCHUP_FACTOR : 1);
}

static bool due(ingest_t *g)
{
    if (agg_events(g->cur) == 0) {
        return false;
    }
    /* half of max_buffer_mb for the filling batch: the other half is the in-flight one's */
    size_t half = (size_t)g->cfg->max_buffer_mb << 19;
    return g->force || g->timer_done || agg_events(g->cur) >= (size_t)g->cfg->batch_max_events ||
           agg_patterns(g->cur) >= (size_t)g->cfg->batch_max_patterns ||
           agg_bytes(g->cur) >= half || mono_ms_since(&g->cur_started) >= timeout_ms(g);
}

void ingest_set_backlog(ingest_t *g, int64_t messages)
{
    bool was = catching_up(g);
    g->backlog = messages;
    if (was != catching_up(g) && evtimer_pending(g->batch_timer, NULL)) {
        evtimer_del(g->batch_timer); /* armed for the other timeout: ingest_poke re-arms it */
    }
}

void ingest_poke(ingest_t *g)
{
    if (!flush_busy(g->flush) && !g->retry_wait && due(g)) {
        start_flush(g);
        return;
    }
    /* A filling batch always has its timer running, whatever happened to earlier batches. */
    if (agg_events(g->cur) > 0 && !g->timer_done && !evtimer_pending(g->batch_timer, NULL)) {
        int64_t left = timeout_ms(g) - mono_ms_since(&g->cur_started);
        if (left < 0) {
            left = 0;
        }
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
        evtimer_add(g->batch_timer, &tv);
    }
}

bool ingest_accepting(const ingest_t *g)
{
    size_t limit = (size_t)g->cfg->max_buffer_mb << 20;
    return agg_bytes(g->cur) + agg_bytes(g->inflight) < limit &&
           agg_events(g->cur) + agg_events(g->inflight) < AGG_MAX_EVENTS;
}

bool ingest_idle(const ingest_t *g)
{
    return agg_events(g->cur) == 0 && agg_empty(g->inflight) && !flush_busy(g->flush);
}

bool ingest_pg_down(const ingest_t *g)
{
    return flush_pg_down(g->flush);
}

/* Moves the per-topic counters of the filling batch into its aggregate. */
void ingest_settle_topics(ingest_t *g)
{
    for (size_t i = 0; i < g->n_topics; i++) {
        batch_topic_t *bt = &g->batch_topics[i];
        if (bt->events || bt->dead || bt->without || bt->flagged) {
            agg_topic_t d = {.topic = rules_topic(g->rules, i),
                             .events = bt->events,
                             .without_patterns = bt->without,
                             .dead_letters = bt->dead,
                             .flagged = bt->flagged,
                             .with_patterns = bt->with,
                             .over_pair_limit = bt->over};
            agg_add_topic(g->cur, &d);
            memset(bt, 0, sizeof *bt);
        }
    }
}

static void finish_drain(ingest_t *g)
{
    if (g->drain_cb) {
        void (*cb)(void *) = g->drain_cb;
        void *ud = g->drain_ud;
        g->drain_cb = NULL;
        g->drain_ud = NULL;
        g->force = false;
        cb(ud);
    }
}

/* A committed batch's duplicates, into the per-topic counters and the metric. */
static void count_duplicates(ingest_t *g, const agg_t *a)
{
    for (size_t i = 0; i < agg_n_topics(a); i++) {
        const agg_topic_t *t = agg_topic_at(a, i);
        int idx = t->duplicates > 0 ? rules_find(g->rules, t->topic) : -1;
        if (idx >= 0) {
            g->stats[idx].duplicates += (uint64_t)t->duplicates;
            metric_add(g->tm[idx].duplicates, (double)t->duplicates);
        }
    }
}

static void flush_done_cb(flush_status_t fs, const char *err, double secs, void *ud)
{
    ingest_t *g = ud;
    switch (fs) {
    case FLUSH_OK:
        metric_add(g->m_flush_ok, 1);
        metric_observe(g->m_flush_seconds, secs);
        g->flushes_ok++;
        g->flushes_waited += g->inflight_waiters != NULL;
        g->last_flush_us = now_us();
        g->backoff_ms = 0;
        if (log_get_level() <= LOG_DEBUG) {
            const agg_t *a = g->inflight;
            log_fields(LOG_DEBUG,
                       LOG_F(LF_UINT("events", agg_events(a)), LF_UINT("references", agg_refs(a)),
                             LF_UINT("patterns", agg_patterns(a)), LF_UINT("hours", agg_n_hours(a)),
                             LF_UINT("bytes", agg_bytes(a)), LF_DBL("duration_ms", secs * 1000)),
                       "flush committed");
        }
        if (g->hooks.committed) {
            g->hooks.committed(g->inflight, g->hooks.ud);
        }
        count_duplicates(g, g->inflight);
        agg_reset(g->inflight);
        ingest_notify(&g->inflight_waiters, true, NULL);
        break;
    case FLUSH_CONFLICT:
        metric_add(g->m_flush_conflict, 1);
        metric_add(g->m_err_conflict, 1);
        g->flushes_failed++;
        log_fields(LOG_WARN,
                   LOG_F(LF_STR("reason", err), LF_UINT("events", agg_events(g->inflight)),
                         LF_UINT("unflushed_events", agg_events(g->cur)),
                         LF_DBL("duration_ms", secs * 1000)),
                   "flush refused; dropping unflushed batches and re-reading offsets");
        agg_reset(g->inflight);
        agg_reset(g->cur);
        memset(g->batch_topics, 0, g->n_topics * sizeof(batch_topic_t));
        ingest_notify(&g->inflight_waiters, false,
                      "dropped after an offset conflict; send them again");
        ingest_notify(&g->cur_waiters, false, "dropped after an offset conflict; send them again");
        if (g->hooks.conflict) {
            g->hooks.conflict(g->hooks.ud);
        }
        break;
    case FLUSH_RETRY:
        metric_add(g->m_flush_retry, 1);
        metric_add(g->m_err_flush, 1);
        g->flushes_failed++;
        /* Keep everything: the failed batch absorbs the newer one (older offsets expected,
         * newer reached) and becomes the filling batch again. */
        agg_merge(g->inflight, g->cur);
        agg_t *tmp = g->cur;
        g->cur = g->inflight;
        g->inflight = tmp;
        /* The merged batch carries both groups of waiters. */
        if (g->inflight_waiters) {
            ingest_waiter_t *last = g->inflight_waiters;
            while (last->next) {
                last = last->next;
            }
            last->next = g->cur_waiters;
            g->cur_waiters = g->inflight_waiters;
            g->inflight_waiters = NULL;
        }
        g->backoff_ms = g->backoff_ms ? g->backoff_ms * 2 : 100;
        if (g->backoff_ms > g->cfg->flush_retry_max_ms) {
            g->backoff_ms = g->cfg->flush_retry_max_ms;
        }
        log_fields(LOG_WARN,
                   LOG_F(LF_STR("reason", err ? err : "?"), LF_UINT("events", agg_events(g->cur)),
                         LF_INT("retry_ms", (long long)g->backoff_ms),
                         LF_DBL("duration_ms", secs * 1000)),
                   "flush failed; its events are kept and it is retried");
        g->retry_wait = true;
        /* A drain (shutdown, revoke) keeps retrying quickly; its caller bounds the time. */
        int64_t wait_ms = g->drain_cb && g->backoff_ms > 500 ? 500 : g->backoff_ms;
        struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)((wait_ms % 1000) * 1000)};
        evtimer_add(g->retry_timer, &tv);
        return;
    }
    if (g->drain_cb && agg_events(g->cur) == 0) {
        finish_drain(g);
        return;
    }
    ingest_poke(g);
}

static void start_flush(ingest_t *g)
{
    ingest_settle_topics(g);
    if (g->hooks.snapshot) {
        g->hooks.snapshot(g->cur, g->hooks.ud);
    }
    agg_t *tmp = g->inflight;
    g->inflight = g->cur;
    g->cur = tmp;
    g->timer_done = false;
    g->inflight_waiters = g->cur_waiters;
    g->cur_waiters = NULL;
    evtimer_del(g->batch_timer);
    if (flush_send(g->flush, g->inflight, g->inflight_waiters != NULL, flush_done_cb, g) != 0) {
        /* Only when a flush is already in flight, which start_flush's callers exclude. */
        log_error("flush could not be started");
        abort();
    }
}

/* libevent's timers run on a cached clock and may fire a little before batch_timeout_ms by
 * CLOCK_MONOTONIC, so the timer itself marks the batch due rather than the clock. */
void ingest_batch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest_t *g = arg;
    g->timer_done = true;
    ingest_poke(g);
}

void ingest_retry_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest_t *g = arg;
    g->retry_wait = false;
    if (!flush_busy(g->flush) && agg_events(g->cur) > 0) {
        start_flush(g);
    }
}

void ingest_drain(ingest_t *g, void (*done)(void *ud), void *ud)
{
    g->drain_cb = done;
    g->drain_ud = ud;
    if (agg_events(g->cur) == 0 && !flush_busy(g->flush)) {
        /* Offsets may still have moved (messages skipped as duplicates move nothing, so an
         * empty batch has nothing to store). */
        finish_drain(g);
        return;
    }
    g->force = true;
    if (g->retry_wait) {
        evtimer_del(g->retry_timer);
        g->retry_wait = false;
    }
    ingest_poke(g);
}

void ingest_note_offsets(ingest_t *g)
{
    if (g->hooks.snapshot) {
        g->hooks.snapshot(g->cur, g->hooks.ud);
    }
}

uint64_t ingest_flushes_ok(const ingest_t *g)
{
    return g->flushes_ok;
}

uint64_t ingest_flushes_waited(const ingest_t *g)
{
    return g->flushes_waited;
}

uint64_t ingest_flushes_failed(const ingest_t *g)
{
    return g->flushes_failed;
}

int64_t ingest_last_flush_us(const ingest_t *g)
{
    return g->last_flush_us;
}

size_t ingest_buffer_bytes(const ingest_t *g)
{
    return agg_bytes(g->cur) + agg_bytes(g->inflight);
}
