#include "maint.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "pg.h"

/* Pairs one merge takes at most: a transaction of a few seconds, not minutes, after a backlog. */
#define MERGE_MAX_PAIRS "200000"

struct maint {
    const config_t *cfg;
    pg_conn_t *conn;
    struct event *timer;
    uint64_t rollups; /* rollups that moved buckets */
    /* The co-occurrence merge has its own connection: an hour's rollup must not hold it up. */
    pg_conn_t *merge_conn;
    struct event *merge_timer;
    bool merge_failing; /* the last merge failed (log the recovery) */
    metric_t *m_merged, *m_pending, *m_merge_failed;
};

static void schedule(maint_t *m, int seconds)
{
    struct timeval tv = {seconds, 0};
    evtimer_add(m->timer, &tv);
}

static void done_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    maint_t *m = ud;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn("rollup of old hourly buckets failed (retrying in 5 min): %s",
                 res ? PQresultErrorMessage(res) : err);
        schedule(m, 300);
        return;
    }
    long long n = atoll(PQgetvalue(res, 0, 0));
    if (n > 0) {
        m->rollups++;
        log_info("rolled hourly buckets older than %lld days up into %lld daily buckets",
                 (long long)m->cfg->retention_hourly_days, n);
    }
    schedule(m, 3600);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maint_t *m = arg;
    char days[32];
    snprintf(days, sizeof days, "%lld", (long long)m->cfg->retention_hourly_days);
    const char *vals[1] = {days};
    if (pg_conn_query(m->conn, "SELECT pt_rollup(now() - make_interval(days => $1::int))", 1, vals,
                      NULL, 600000, done_cb, m) != 0) {
        schedule(m, 300);
    }
}

static void merge_schedule(maint_t *m, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->merge_timer, &tv);
}

/* The merge interval in force (reloadable); a disabled merge still looks every second whether
 * it was turned back on. */
static long merge_interval(const maint_t *m)
{
    return m->cfg->cooccurrence_merge_ms > 0 ? (long)m->cfg->cooccurrence_merge_ms : 1000;
}

static void merge_done_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    maint_t *m = ud;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        metric_add(m->m_merge_failed, 1);
        if (!m->merge_failing) {
            log_warn("co-occurrence merge failed (the pairs stay pending and count in every "
                     "answer; retrying every 5 s): %s",
                     res ? PQresultErrorMessage(res) : err);
        }
        m->merge_failing = true;
        merge_schedule(m, 5000);
        return;
    }
    if (m->merge_failing) {
        log_info("co-occurrence merge works again");
        m->merge_failing = false;
    }
    long long taken = atoll(PQgetvalue(res, 0, 0));
    long long pending = atoll(PQgetvalue(res, 0, 1));
    metric_set(m->m_pending, (double)pending);
    if (taken > 0) {
        metric_add(m->m_merged, (double)taken);
    }
    /* Behind (it took a full merge and more waits): go on at once. */
    merge_schedule(m, taken > 0 && pending > 0 ? 0 : merge_interval(m));
}

static void merge_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maint_t *m = arg;
    if (m->cfg->cooccurrence_merge_ms <= 0) {
        merge_schedule(m, merge_interval(m));
        return;
    }
    const char *vals[1] = {MERGE_MAX_PAIRS};
    if (pg_conn_query(m->merge_conn, "SELECT taken, pending FROM pt_merge_cooccurrence($1::int)", 1,
                      vals, NULL, 600000, merge_done_cb, m) != 0) {
        merge_schedule(m, 5000);
    }
}

maint_t *maint_new(struct event_base *base, const config_t *c)
{
    maint_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    m->cfg = c;
    m->conn = pg_conn_new(base, c->database_url, "maintenance");
    m->timer = evtimer_new(base, tick_cb, m);
    m->merge_conn = pg_conn_new(base, c->database_url, "co-occurrence merge");
    m->merge_timer = evtimer_new(base, merge_cb, m);
    if (m->conn == NULL || m->timer == NULL || m->merge_conn == NULL || m->merge_timer == NULL) {
        maint_free(m);
        return NULL;
    }
    m->m_merged = metrics_series(
        "patterntrack_cooccurrence_merged_pairs_total", METRIC_COUNTER,
        "Pending co-occurrence pairs (one per pair and flush) merged into pattern_cooccurrence.",
        "");
    m->m_pending =
        metrics_series("patterntrack_cooccurrence_pending_pairs", METRIC_GAUGE,
                       "Co-occurrence pairs flushed but not merged yet, as of the last merge "
                       "(they count in every answer; a growing figure means merges fall behind).",
                       "");
    m->m_merge_failed = metrics_series("patterntrack_cooccurrence_merge_failures_total",
                                       METRIC_COUNTER, "Co-occurrence merges that failed.", "");
    schedule(m, 60);
    merge_schedule(m, merge_interval(m));
    return m;
}

void maint_free(maint_t *m)
{
    if (m == NULL) {
        return;
    }
    if (m->timer) {
        event_free(m->timer);
    }
    if (m->merge_timer) {
        event_free(m->merge_timer);
    }
    pg_conn_free(m->conn);
    pg_conn_free(m->merge_conn);
    free(m);
}

uint64_t maint_rollups(const maint_t *m)
{
    return m ? m->rollups : 0;
}
