#include "upkeep.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "pg.h"

struct upkeep {
    const config_t *cfg;
    pg_conn_t *conn;
    struct event *timer;
    struct event *prune_timer;
    uint64_t rollups; /* rollups that moved buckets */
    uint64_t pruned;  /* expired event-ID claims deleted */
};

/* Expired claims of event-ID deduplication (pt_prune_claims) go in batches of PRUNE_BATCH,
 * one every PRUNE_BUSY_MS while whole batches come back, else every PRUNE_IDLE_S. */
#define PRUNE_BATCH 10000
#define PRUNE_BUSY_MS 100
#define PRUNE_IDLE_S 10

static void prune_after_ms(upkeep_t *m, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->prune_timer, &tv);
}

static void pruned_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    upkeep_t *m = ud;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn("deleting expired event-ID claims failed (retrying in %d s): %s", PRUNE_IDLE_S,
                 res ? PQresultErrorMessage(res) : err);
        prune_after_ms(m, PRUNE_IDLE_S * 1000);
        return;
    }
    long long n = atoll(PQgetvalue(res, 0, 0));
    m->pruned += (uint64_t)n;
    prune_after_ms(m, n >= PRUNE_BATCH ? PRUNE_BUSY_MS : PRUNE_IDLE_S * 1000);
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
    char lim[16];
    snprintf(lim, sizeof lim, "%d", PRUNE_BATCH);
    const char *vals[1] = {lim};
    if (pg_conn_query(m->conn, "SELECT pt_prune_claims($1::int)", 1, vals, NULL, 600000, pruned_cb,
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
