#include "upkeep.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "pg.h"

struct upkeep {
    const config_t *cfg;
    pg_conn_t *conn;
    struct event *timer;
    struct event *prune_timer;
    uint64_t rollups; /* rollups that moved buckets */
    uint64_t pruned;  /* expired event-ID claims deleted */
    int step;         /* of the prune cycle: P_CLAIMS, P_DEAD, P_STATS */
    upkeep_dead_t dead;
    metric_t *m_dead_rows, *m_dead_age, *m_dead_pruned;
};

/* The prune cycle, one query at a time on the upkeep connection: expired claims of event-ID
 * deduplication (pt_prune_claims), then dead letters older than dead_letter_retention_days
 * (pt_prune_dead_letters), each in batches of PRUNE_BATCH, one every PRUNE_BUSY_MS while whole
 * batches come back; then how many dead letters are kept and the oldest one's time (metrics,
 * /health); then PRUNE_IDLE_S of rest. */
#define PRUNE_BATCH 10000
#define PRUNE_BUSY_MS 100
#define PRUNE_IDLE_S 10
enum { P_CLAIMS, P_DEAD, P_STATS };

static const char *const step_sql[] = {
    [P_CLAIMS] = "SELECT pt_prune_claims($1::int)",
    [P_DEAD] = "SELECT pt_prune_dead_letters($2::int, $1::int)",
    [P_STATS] = ("SELECT count(*), extract(epoch FROM min(created_at))::float8 "
                 "FROM usage_dead_letters"),
};
static const char *const step_what[] = {
    [P_CLAIMS] = "deleting expired event-ID claims",
    [P_DEAD] = "deleting dead letters past dead_letter_retention_days",
    [P_STATS] = "counting dead letters",
};

static void prune_after_ms(upkeep_t *m, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->prune_timer, &tv);
}

/* The step after m->step, and when: the same step again soon after a whole batch. */
static void next_step(upkeep_t *m, bool whole_batch)
{
    if (whole_batch) {
        prune_after_ms(m, PRUNE_BUSY_MS);
        return;
    }
    m->step++;
    if (m->step == P_DEAD && m->cfg->dead_letter_retention_days <= 0) {
        m->step++;
    }
    if (m->step > P_STATS) {
        m->step = P_CLAIMS;
        prune_after_ms(m, PRUNE_IDLE_S * 1000);
        return;
    }
    prune_after_ms(m, 0);
}

static void pruned_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    upkeep_t *m = ud;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn("%s failed (retrying in %d s): %s", step_what[m->step], PRUNE_IDLE_S,
                 res ? PQresultErrorMessage(res) : err);
        m->step = P_CLAIMS;
        prune_after_ms(m, PRUNE_IDLE_S * 1000);
        return;
    }
    long long n = atoll(PQgetvalue(res, 0, 0));
    if (m->step == P_STATS) {
        m->dead.rows = n;
        m->dead.oldest = PQgetisnull(res, 0, 1) ? -1 : strtod(PQgetvalue(res, 0, 1), NULL);
        m->dead.counted = true;
        metric_set(m->m_dead_rows, (double)n);
        metric_set(m->m_dead_age, m->dead.oldest < 0 ? 0 : (double)time(NULL) - m->dead.oldest);
        next_step(m, false);
        return;
    }
    if (m->step == P_CLAIMS) {
        m->pruned += (uint64_t)n;
    } else {
        m->dead.pruned += (uint64_t)n;
        metric_add(m->m_dead_pruned, (double)n);
    }
    next_step(m, n >= PRUNE_BATCH);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upkeep_t *m = arg;
    if (pg_conn_busy(m->conn)) {
        prune_after_ms(m, 1000); /* the rollup has the connection */
        return;
    }
    char lim[16], days[24];
    snprintf(lim, sizeof lim, "%d", PRUNE_BATCH);
    snprintf(days, sizeof days, "%lld", (long long)m->cfg->dead_letter_retention_days);
    const char *vals[2] = {lim, days}; /* $1 the batch, $2 the days */
    int np = m->step == P_CLAIMS ? 1 : m->step == P_DEAD ? 2 : 0;
    if (pg_conn_query(m->conn, step_sql[m->step], np, np ? vals : NULL, NULL, 600000, pruned_cb,
                      m) != 0) {
        prune_after_ms(m, 1000);
    }
}

static void schedule(upkeep_t *m, int seconds)
{
    struct timeval tv = {seconds, 0};
    evtimer_add(m->timer, &tv);
}

static void done_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    upkeep_t *m = ud;
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
    upkeep_t *m = arg;
    if (pg_conn_busy(m->conn)) {
        schedule(m, 1); /* a prune has the connection */
        return;
    }
    char days[32];
    snprintf(days, sizeof days, "%lld", (long long)m->cfg->retention_hourly_days);
    const char *vals[1] = {days};
    if (pg_conn_query(m->conn, "SELECT pt_rollup(now() - make_interval(days => $1::int))", 1, vals,
                      NULL, 600000, done_cb, m) != 0) {
        schedule(m, 300);
    }
}

upkeep_t *upkeep_new(struct event_base *base, const config_t *c)
{
    upkeep_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    m->cfg = c;
    m->conn = pg_conn_new(base, c->database_url, "maintenance");
    m->timer = evtimer_new(base, tick_cb, m);
    m->prune_timer = evtimer_new(base, prune_cb, m);
    if (m->conn == NULL || m->timer == NULL || m->prune_timer == NULL) {
        upkeep_free(m);
        return NULL;
    }
    m->dead.oldest = -1;
    m->m_dead_rows = metrics_series("patterntrack_dead_letters_stored", METRIC_GAUGE,
                                    "Dead letters kept in usage_dead_letters.", "");
    m->m_dead_age = metrics_series("patterntrack_dead_letters_oldest_age_seconds", METRIC_GAUGE,
                                   "Age of the oldest dead letter kept (0: none).", "");
    m->m_dead_pruned = metrics_series("patterntrack_dead_letters_pruned_total", METRIC_COUNTER,
                                      "Dead letters deleted after dead_letter_retention_days.", "");
    schedule(m, 60);
    prune_after_ms(m, PRUNE_IDLE_S * 1000);
    return m;
}

void upkeep_free(upkeep_t *m)
{
    if (m == NULL) {
        return;
    }
    if (m->timer) {
        event_free(m->timer);
    }
    if (m->prune_timer) {
        event_free(m->prune_timer);
    }
    pg_conn_free(m->conn);
    free(m);
}

uint64_t upkeep_rollups(const upkeep_t *m)
{
    return m ? m->rollups : 0;
}

uint64_t upkeep_pruned_claims(const upkeep_t *m)
{
    return m ? m->pruned : 0;
}

const upkeep_dead_t *upkeep_dead_letters(const upkeep_t *m)
{
    return m ? &m->dead : NULL;
}
