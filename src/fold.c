#include "fold.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cooc.h"
#include "fold_job.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "pg_buf.h"

/* One fold at a time over every engine (the migrations take it too). */
#define FOLD_LOCK_SQL "SELECT pg_try_advisory_xact_lock(7412503912)"
/* Pending rows of one owner that make it due: every answer about it reads them all. */
#define FOLD_MAX_ROWS 8
/* List bytes (pending and folded) one fold transaction reads at most: a bound on the memory it
 * holds (the rows, their merged lists and libpq's copies, about three times the budget). 4 MB
 * held 11 MB more at peak than 1 MB for no PostgreSQL CPU per event we could measure
 * (BENCHMARKS.md). */
#define FOLD_BUDGET ((int64_t)1 << 20)
#define FOLD_TIMEOUT_MS 600000

/* Per owner (kind p: a pattern, a: an agent): pending rows, their bytes and entries, the
 * newest flush, and the folded list's bytes. */
static const char plan_sql[] =
    "SELECT 'p', p.pattern_id, count(*), "
    "sum(coalesce(octet_length(p.agents), 0) + coalesce(octet_length(p.partners), 0)), "
    "sum(p.n_agents + p.n_partners), max(p.flush_id), "
    "coalesce(max(coalesce(octet_length(m.agents), 0) + coalesce(octet_length(m.partners), 0)), 0) "
    "FROM pattern_lists_pending p LEFT JOIN pattern_lists m ON m.pattern_id = p.pattern_id "
    "GROUP BY p.pattern_id "
    "UNION ALL "
    "SELECT 'a', p.agent_name, count(*), sum(octet_length(p.patterns)), sum(p.n_patterns), "
    "max(p.flush_id), coalesce(max(octet_length(m.patterns)), 0) "
    "FROM agent_lists_pending p LEFT JOIN agent_lists m ON m.agent_name = p.agent_name "
    "GROUP BY p.agent_name";
static const char top_sql[] =
    "SELECT k.keep, t.pattern_id_1, t.pattern_id_2, t.cooccurrence_count, t.last_us "
    "FROM (SELECT pt_cooccurrence_top_keep() AS keep) k "
    "LEFT JOIN pattern_cooccurrence_top t ON true";
/* Binary results: the lists as they are stored. $1 the patterns, $2 the agents taken. */
static const char fetch_sql[] =
    "WITH gp AS (DELETE FROM pattern_lists_pending WHERE pattern_id = ANY($1::text[]) "
    "RETURNING pattern_id, agents, partners), "
    "ga AS (DELETE FROM agent_lists_pending WHERE agent_name = ANY($2::text[]) "
    "RETURNING agent_name, patterns) "
    "SELECT 'p'::text AS kind, pattern_id::text AS id, false AS folded, agents AS l1, "
    "partners AS l2 FROM gp "
    "UNION ALL SELECT 'p', pattern_id, true, agents, partners FROM pattern_lists "
    "WHERE pattern_id = ANY($1::text[]) "
    "UNION ALL SELECT 'a', agent_name, false, patterns, NULL FROM ga "
    "UNION ALL SELECT 'a', agent_name, true, patterns, NULL FROM agent_lists "
    "WHERE agent_name = ANY($2::text[])";
/* $7 and $8 (binary) hold the agents and the partner lists one after the other, $3 and $6
 * their lengths (0: none). */
static const char write_p_sql[] =
    "INSERT INTO pattern_lists AS m (pattern_id, n_agents, agents, n_partners, n_low, partners) "
    "SELECT x.pat, x.na, "
    "CASE WHEN x.al > 0 THEN substring($7::bytea FROM (x.aoff - x.al + 1)::int FOR x.al) END, "
    "x.np, x.low, "
    "CASE WHEN x.pl > 0 THEN substring($8::bytea FROM (x.poff - x.pl + 1)::int FOR x.pl) END "
    "FROM (SELECT u.*, sum(u.al) OVER (ORDER BY u.ord) AS aoff, "
    "sum(u.pl) OVER (ORDER BY u.ord) AS poff "
    "FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[]) "
    "WITH ORDINALITY AS u(pat, na, al, np, low, pl, ord)) x "
    "ON CONFLICT (pattern_id) DO UPDATE SET n_agents = EXCLUDED.n_agents, "
    "agents = EXCLUDED.agents, n_partners = EXCLUDED.n_partners, n_low = EXCLUDED.n_low, "
    "partners = EXCLUDED.partners, folded_at = now()";
static const char write_a_sql[] =
    "INSERT INTO agent_lists AS m (agent_name, n_patterns, patterns) "
    "SELECT x.agent, x.n, substring($4::bytea FROM (x.off - x.len + 1)::int FOR x.len) "
    "FROM (SELECT u.*, sum(u.len) OVER (ORDER BY u.ord) AS off "
    "FROM unnest($1::text[], $2::int[], $3::int[]) WITH ORDINALITY AS u(agent, n, len, ord)) x "
    "ON CONFLICT (agent_name) DO UPDATE SET n_patterns = EXCLUDED.n_patterns, "
    "patterns = EXCLUDED.patterns, folded_at = now()";
/* The delete is read by the insert, so it runs first (an unread one would run after it). */
static const char topw_sql[] =
    "WITH d AS (DELETE FROM pattern_cooccurrence_top RETURNING 1) "
    "INSERT INTO pattern_cooccurrence_top (pattern_id_1, pattern_id_2, cooccurrence_count, "
    "last_us) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) "
    "WHERE (SELECT count(*) FROM d) >= 0";

typedef enum {
    M_IDLE,
    M_BEGIN,
    M_LOCK,
    M_PLAN,
    M_TOP,
    M_FETCH,
    M_WORK,
    M_WRITE_P,
    M_WRITE_A,
    M_TOPW,
    M_COMMIT,
    M_ROLLBACK,
} mstate_t;

typedef struct {
    int64_t rows, bytes, entries, newest, folded_bytes;
    size_t id_off; /* in plan_ids */
    int len;
    char kind;
} plan_t;

struct fold {
    const config_t *cfg;
    pg_conn_t *conn;
    struct event *timer;
    mstate_t state;
    bool drain;
    int64_t max_owners;
    fold_done_fn done;
    void *done_ud;
    bool failing;
    int64_t last_newest;         /* newest flush_id the previous plan saw */
    struct timeval newest_since; /* when a plan first saw it */
    bool locked_out;             /* another engine held the fold lock */
    bool behind;                 /* the plan left due owners for the next fold */
    int64_t plan_entries;
    int64_t chosen_entries;
    pg_buf_t chosen_p, chosen_a; /* text[] literals of the patterns and agents this fold takes */
    plan_t *plan;                /* the owners due at the last plan, in the order taken */
    size_t plan_n, plan_next;
    pg_buf_t plan_ids; /* their ids */
    int64_t n_chosen;
    fold_job_t job;
    fold_stats_t st;
    struct timespec started; /* of the transaction, for its log line */
    char err[512];
    /* worker */
    pthread_t thread;
    bool thread_up;
    int pipe[2];
    struct event *ev_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool work, worked, stop;
    metric_t *m_folded, *m_pending, *m_failed;
};

static void *worker_main(void *arg)
{
    fold_t *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (!m->work && !m->stop) {
            pthread_cond_wait(&m->cv, &m->mu);
        }
        if (m->stop) {
            break;
        }
        pthread_mutex_unlock(&m->mu);
        fold_job_run(&m->job);
        pthread_mutex_lock(&m->mu);
        m->work = false;
        m->worked = true;
        ssize_t w;
        do {
            w = write(m->pipe[1], "w", 1);
        } while (w < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ---- the transaction, on the loop ---- */

static void step(fold_t *m, mstate_t next, const char *sql, int n, const char *const *vals,
                 const int *lens, const int *fmts, bool binary);

static void schedule(fold_t *m, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->timer, &tv);
}

/* Milliseconds since the transaction began. */
static double ms_since(const fold_t *m)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - m->started.tv_sec) * 1e3 +
           (double)(now.tv_nsec - m->started.tv_nsec) / 1e6;
}

static long interval(const fold_t *m)
{
    return m->cfg->fold_interval_ms > 0 ? (long)m->cfg->fold_interval_ms : 1000;
}

/* The merge ended (committed, nothing to do, or failed): report and plan the next. */
static void drop_plan(fold_t *m)
{
    free(m->plan);
    m->plan = NULL;
    m->plan_n = m->plan_next = 0;
    pg_buf_reset(&m->plan_ids);
}

static void finish(fold_t *m, bool ok, bool more)
{
    m->state = M_IDLE;
    fold_job_free(&m->job);
    pg_buf_reset(&m->chosen_p);
    pg_buf_reset(&m->chosen_a);
    if (!ok) {
        drop_plan(m);
        metric_add(m->m_failed, 1);
        if (m->drain) {
            m->done(-1, m->err, &m->st, m->done_ud);
            return;
        }
        if (!m->failing) {
            log_fields(LOG_WARN,
                       LOG_F(LF_STR("reason", m->err), LF_DBL("duration_ms", ms_since(m))),
                       "fold failed (the lists stay pending and count in every answer; retrying "
                       "every 5 s)");
        }
        m->failing = true;
        schedule(m, 5000);
        return;
    }
    if (m->failing) {
        log_info("fold works again");
        m->failing = false;
    }
    metric_set(m->m_pending, (double)m->st.pending_entries);
    if (m->drain && m->locked_out) {
        m->locked_out = false;
        schedule(m, 200);
        return;
    }
    m->locked_out = false;
    if (m->drain && (!more || m->max_owners > 0)) {
        m->done(0, NULL, &m->st, m->done_ud);
        return;
    }
    schedule(m, more ? 0 : interval(m));
}

/* res NULL and err set: the connection is gone, and the transaction with it. Otherwise the
 * transaction may be open: it is rolled back first. */
static void fail(fold_t *m, const char *what, PGresult *res, const char *err)
{
    snprintf(m->err, sizeof m->err, "%s: %s", what,
             res ? PQresultErrorMessage(res) : (err ? err : "?"));
    bool lost = res == NULL && err != NULL;
    if (!lost && m->state != M_BEGIN && m->state != M_ROLLBACK) {
        step(m, M_ROLLBACK, "ROLLBACK", 0, NULL, NULL, NULL, false);
        return;
    }
    finish(m, false, false);
}

static int plan_cmp(const void *x, const void *y)
{
    const plan_t *a = x, *b = y;
    if (a->rows != b->rows) {
        return a->rows > b->rows ? -1 : 1;
    }
    return a->bytes > b->bytes ? -1 : a->bytes < b->bytes ? 1 : 0;
}

/* Picks the next owners of the plan that fit one transaction (into m->chosen_p and chosen_a);
 * false when the plan is used up. A plan reads every pending row, so one plan serves the
 * transactions of a fold that is behind; rows flushed meanwhile go with their owners. */
static bool take(fold_t *m)
{
    int64_t budget = 0;
    m->n_chosen = 0;
    m->chosen_entries = 0;
    pg_buf_t *lits[2] = {&m->chosen_p, &m->chosen_a};
    size_t counts[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        pg_buf_reset(lits[k]);
        pg_buf_putc(lits[k], '{');
    }
    while (m->plan_next < m->plan_n) {
        const plan_t *p = &m->plan[m->plan_next];
        int64_t cost = p->bytes + p->folded_bytes;
        if ((m->n_chosen > 0 && budget + cost > FOLD_BUDGET) ||
            (m->max_owners > 0 && m->n_chosen >= m->max_owners)) {
            break;
        }
        budget += cost;
        int k = p->kind == 'p' ? 0 : 1;
        if (counts[k]++ > 0) {
            pg_array_next(lits[k]);
        }
        pg_array_text(lits[k], m->plan_ids.data + p->id_off, (size_t)p->len);
        m->n_chosen++;
        m->chosen_entries += p->entries;
        m->plan_next++;
    }
    for (int k = 0; k < 2; k++) {
        pg_array_end(lits[k]);
    }
    /* with max_owners (patterntrack fold --owners), one transaction and no more */
    m->behind = m->plan_next < m->plan_n && m->max_owners == 0;
    return m->n_chosen > 0;
}

/* Makes the plan: the owners due, the most pending rows first (then the most bytes). */
static void plan(fold_t *m, PGresult *res)
{
    drop_plan(m);
    int n = PQntuples(res);
    plan_t *v = calloc(n ? (size_t)n : 1, sizeof *v);
    if (v == NULL) {
        abort();
    }
    int64_t newest = -1;
    m->st.pending_entries = 0;
    for (int i = 0; i < n; i++) {
        v[i] = (plan_t){atoll(PQgetvalue(res, i, 2)), atoll(PQgetvalue(res, i, 3)),
                        atoll(PQgetvalue(res, i, 4)), atoll(PQgetvalue(res, i, 5)),
                        atoll(PQgetvalue(res, i, 6)), m->plan_ids.len,
                        PQgetlength(res, i, 1),       PQgetvalue(res, i, 0)[0]};
        pg_buf_put(&m->plan_ids, PQgetvalue(res, i, 1), (size_t)v[i].len);
        newest = v[i].newest > newest ? v[i].newest : newest;
        m->st.pending_entries += v[i].entries;
    }
    /* Nothing flushed for three intervals: ingest is quiet, fold it all. */
    struct timeval now;
    gettimeofday(&now, NULL);
    if (newest != m->last_newest) {
        m->last_newest = newest;
        m->newest_since = now;
    }
    long quiet_ms = (now.tv_sec - m->newest_since.tv_sec) * 1000 +
                    (now.tv_usec - m->newest_since.tv_usec) / 1000;
    bool quiet = m->drain || quiet_ms >= 3 * interval(m);
    size_t due = 0;
    for (int i = 0; i < n; i++) {
        if (quiet || v[i].rows >= FOLD_MAX_ROWS || v[i].bytes * 2 >= v[i].folded_bytes) {
            v[due++] = v[i];
        }
    }
    qsort(v, due, sizeof *v, plan_cmp);
    m->plan = v;
    m->plan_n = due;
    m->plan_next = 0;
}

static void keep_top(fold_t *m, PGresult *res)
{
    fold_job_t *j = &m->job;
    int n = PQntuples(res);
    j->keep = n > 0 ? (size_t)atoll(PQgetvalue(res, 0, 0)) : 0;
    j->top = calloc(n ? (size_t)n : 1, sizeof *j->top);
    if (j->top == NULL) {
        abort();
    }
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(res, i, 1)) {
            continue;
        }
        fold_pair_t *p = &j->top[j->n_top++];
        /* offsets now, pointers once the buffer stops moving (update_top) */
        p->l1 = (uint32_t)PQgetlength(res, i, 1);
        p->p1 = (const char *)(uintptr_t)j->topraw.len;
        pg_buf_put(&j->topraw, PQgetvalue(res, i, 1), p->l1);
        p->l2 = (uint32_t)PQgetlength(res, i, 2);
        p->p2 = (const char *)(uintptr_t)j->topraw.len;
        pg_buf_put(&j->topraw, PQgetvalue(res, i, 2), p->l2);
        p->count = atoll(PQgetvalue(res, i, 3));
        p->last_us = atoll(PQgetvalue(res, i, 4));
    }
}

static fold_ref_t keep(PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        return (fold_ref_t){NULL, 0};
    }
    return (fold_ref_t){PQgetvalue(res, row, col), (uint32_t)PQgetlength(res, row, col)};
}

static bool keep_rows(fold_t *m, PGresult *res)
{
    fold_job_t *j = &m->job;
    int n = PQntuples(res);
    j->rows = calloc(n ? (size_t)n : 1, sizeof *j->rows);
    if (j->rows == NULL) {
        abort();
    }
    for (int i = 0; i < n; i++) {
        if (PQgetlength(res, i, 0) != 1 || PQgetlength(res, i, 2) != 1) {
            return false;
        }
        fold_row_t *r = &j->rows[j->n_rows++];
        r->kind = PQgetvalue(res, i, 0)[0];
        r->id = keep(res, i, 1);
        r->folded = PQgetvalue(res, i, 2)[0] != 0;
        r->l1 = keep(res, i, 3);
        r->l2 = keep(res, i, 4);
    }
    return true;
}

/* The last writes: the top when it changed, then the commit. */
static void write_top(fold_t *m)
{
    if (m->job.top_changed) {
        const char *vals[4] = {m->job.tp1.data, m->job.tp2.data, m->job.tcnt.data,
                               m->job.tlast.data};
        step(m, M_TOPW, topw_sql, 4, vals, NULL, NULL, false);
        return;
    }
    step(m, M_COMMIT, "COMMIT", 0, NULL, NULL, NULL, false);
}

/* After the pattern lists, the agents' (or what comes after, when there are none). */
static void write_agents(fold_t *m)
{
    fold_job_t *j = &m->job;
    if (j->agents == 0) {
        write_top(m);
        return;
    }
    const char *vals[4] = {j->agent.data, j->an.data, j->alen.data,
                           j->gdata.data ? j->gdata.data : ""};
    int lens[4] = {(int)j->agent.len, (int)j->an.len, (int)j->alen.len, (int)j->gdata.len};
    int fmts[4] = {0, 0, 0, 1};
    step(m, M_WRITE_A, write_a_sql, 4, vals, lens, fmts, false);
}

static void result_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    fold_t *m = ud;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    switch (m->state) {
    case M_BEGIN:
        if (!ok) {
            fail(m, "BEGIN", res, err);
            return;
        }
        step(m, M_LOCK, FOLD_LOCK_SQL, 0, NULL, NULL, NULL, false);
        return;
    case M_LOCK:
        if (!ok) {
            fail(m, "taking the fold lock", res, err);
            return;
        }
        if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
            /* another engine is folding: it takes what is due (a drain waits for it) */
            m->behind = false;
            m->locked_out = true;
            drop_plan(m); /* another engine folds: its folds make this plan stale */
            step(m, M_COMMIT, "COMMIT", 0, NULL, NULL, NULL, false);
            return;
        }
        if (take(m)) {
            step(m, M_TOP, top_sql, 0, NULL, NULL, NULL, false);
            return;
        }
        step(m, M_PLAN, plan_sql, 0, NULL, NULL, NULL, false);
        return;
    case M_PLAN:
        if (!ok) {
            fail(m, "planning the fold", res, err);
            return;
        }
        plan(m, res);
        if (!take(m)) {
            step(m, M_COMMIT, "COMMIT", 0, NULL, NULL, NULL, false);
            return;
        }
        step(m, M_TOP, top_sql, 0, NULL, NULL, NULL, false);
        return;
    case M_TOP: {
        if (!ok) {
            fail(m, "reading pattern_cooccurrence_top", res, err);
            return;
        }
        keep_top(m, res);
        const char *vals[2] = {m->chosen_p.data, m->chosen_a.data};
        step(m, M_FETCH, fetch_sql, 2, vals, NULL, NULL, true);
        return;
    }
    case M_FETCH:
        if (!ok) {
            fail(m, "reading the lists", res, err);
            return;
        }
        m->job.fetched = pg_conn_take_result(c); /* kept until the job ends: rows point into it */
        if (!keep_rows(m, res)) {
            snprintf(m->err, sizeof m->err, "reading the lists: unexpected result format");
            step(m, M_ROLLBACK, "ROLLBACK", 0, NULL, NULL, NULL, false);
            return;
        }
        m->state = M_WORK;
        pthread_mutex_lock(&m->mu);
        m->work = true;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        return;
    case M_WRITE_P:
        if (!ok) {
            fail(m, "writing the folded pattern lists", res, err);
            return;
        }
        write_agents(m);
        return;
    case M_WRITE_A:
        if (!ok) {
            fail(m, "writing the folded agent lists", res, err);
            return;
        }
        write_top(m);
        return;
    case M_TOPW:
        if (!ok) {
            fail(m, "writing pattern_cooccurrence_top", res, err);
            return;
        }
        step(m, M_COMMIT, "COMMIT", 0, NULL, NULL, NULL, false);
        return;
    case M_COMMIT:
        if (!ok) {
            fail(m, "COMMIT", res, err);
            return;
        }
        if (m->job.patterns + m->job.agents > 0) {
            m->st.transactions++;
            m->st.owners += m->job.patterns + m->job.agents;
            m->st.entries_in += m->chosen_entries;
            m->st.pending_entries -= m->chosen_entries;
            metric_add(m->m_folded, (double)m->chosen_entries);
            if (log_get_level() <= LOG_DEBUG) {
                log_fields(LOG_DEBUG,
                           LOG_F(LF_INT("owners", (long long)(m->job.patterns + m->job.agents)),
                                 LF_INT("patterns", (long long)m->job.patterns),
                                 LF_INT("agents", (long long)m->job.agents),
                                 LF_INT("entries", (long long)m->chosen_entries),
                                 LF_INT("pending_entries", (long long)m->st.pending_entries),
                                 LF_DBL("duration_ms", ms_since(m))),
                           "fold committed");
            }
        }
        finish(m, true, m->behind);
        return;
    case M_ROLLBACK:
        finish(m, false, false);
        return;
    case M_IDLE:
    case M_WORK:
        break;
    }
}

static void step(fold_t *m, mstate_t next, const char *sql, int n, const char *const *vals,
                 const int *lens, const int *fmts, bool binary)
{
    m->state = next;
    if (pg_conn_query_fmt(m->conn, sql, n, vals, lens, fmts, binary, FOLD_TIMEOUT_MS, result_cb,
                          m) != 0) {
        /* out of memory: the connection holds no query; drop it, which ends the transaction */
        pg_conn_reset(m->conn, "out of memory");
        snprintf(m->err, sizeof m->err, "cannot send a query (out of memory)");
        finish(m, false, false);
    }
}

static void worked_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    fold_t *m = arg;
    char drain[16];
    while (read(fd, drain, sizeof drain) > 0) {
    }
    pthread_mutex_lock(&m->mu);
    bool worked = m->worked;
    m->worked = false;
    pthread_mutex_unlock(&m->mu);
    if (!worked || m->state != M_WORK) {
        return;
    }
    fold_job_t *j = &m->job;
    if (j->rc != 0) {
        snprintf(m->err, sizeof m->err, "%s", j->err);
        step(m, M_ROLLBACK, "ROLLBACK", 0, NULL, NULL, NULL, false);
        return;
    }
    if (j->adata.len + j->pdata.len + j->gdata.len > (size_t)INT32_MAX) {
        snprintf(m->err, sizeof m->err, "folded lists over 2 GB in one fold");
        step(m, M_ROLLBACK, "ROLLBACK", 0, NULL, NULL, NULL, false);
        return;
    }
    if (j->patterns == 0) {
        write_agents(m);
        return;
    }
    const char *vals[8] = {j->pat.data,
                           j->na.data,
                           j->al.data,
                           j->np.data,
                           j->low.data,
                           j->pl.data,
                           j->adata.data ? j->adata.data : "",
                           j->pdata.data ? j->pdata.data : ""};
    int lens[8] = {(int)j->pat.len, (int)j->na.len, (int)j->al.len,    (int)j->np.len,
                   (int)j->low.len, (int)j->pl.len, (int)j->adata.len, (int)j->pdata.len};
    int fmts[8] = {0, 0, 0, 0, 0, 0, 1, 1};
    step(m, M_WRITE_P, write_p_sql, 8, vals, lens, fmts, false);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fold_t *m = arg;
    if (m->state != M_IDLE) {
        return;
    }
    if (!m->drain && m->cfg->fold_interval_ms <= 0) {
        schedule(m, interval(m));
        return;
    }
    fold_job_init(&m->job);
    m->err[0] = '\0';
    clock_gettime(CLOCK_MONOTONIC, &m->started);
    step(m, M_BEGIN, "BEGIN", 0, NULL, NULL, NULL, false);
}

static fold_t *create(struct event_base *base, const config_t *c)
{
    fold_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    m->cfg = c;
    m->pipe[0] = m->pipe[1] = -1;
    m->last_newest = -2;
    pg_buf_init(&m->chosen_p);
    pg_buf_init(&m->chosen_a);
    pg_buf_init(&m->plan_ids);
    fold_job_init(&m->job);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->conn = pg_conn_new(base, c->database_url, "fold");
    m->timer = evtimer_new(base, tick_cb, m);
    if (m->conn == NULL || m->timer == NULL || pipe(m->pipe) != 0 ||
        fcntl(m->pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
        (m->ev_done = event_new(base, m->pipe[0], EV_READ | EV_PERSIST, worked_cb, m)) == NULL ||
        event_add(m->ev_done, NULL) != 0 || pthread_create(&m->thread, NULL, worker_main, m) != 0) {
        fold_free(m);
        return NULL;
    }
    m->thread_up = true;
    m->m_folded = metrics_series(
        "patterntrack_fold_entries_total", METRIC_COUNTER,
        "Pending list entries (a pattern's agents and co-occurring patterns, an agent's patterns) "
        "folded into pattern_lists and agent_lists.",
        "");
    m->m_pending = metrics_series(
        "patterntrack_fold_pending_entries", METRIC_GAUGE,
        "List entries flushed but not folded yet, as of the last fold (they count in every "
        "answer; a figure that keeps growing means folds fall behind).",
        "");
    m->m_failed = metrics_series("patterntrack_fold_failures_total", METRIC_COUNTER,
                                 "Folds that failed.", "");
    return m;
}

fold_t *fold_new(struct event_base *base, const config_t *c)
{
    fold_t *m = create(base, c);
    if (m != NULL) {
        schedule(m, interval(m));
    }
    return m;
}

fold_t *fold_drain_new(struct event_base *base, const config_t *c, int64_t max_owners,
                       fold_done_fn done, void *ud)
{
    fold_t *m = create(base, c);
    if (m != NULL) {
        m->drain = true;
        m->max_owners = max_owners;
        m->done = done;
        m->done_ud = ud;
        schedule(m, 0);
    }
    return m;
}

void fold_free(fold_t *m)
{
    if (m == NULL) {
        return;
    }
    if (m->thread_up) {
        pthread_mutex_lock(&m->mu);
        m->stop = true;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        /* a job in progress finishes first: folding is bounded by FOLD_BUDGET */
        pthread_join(m->thread, NULL);
    }
    if (m->ev_done) {
        event_free(m->ev_done);
    }
    if (m->timer) {
        event_free(m->timer);
    }
    for (int i = 0; i < 2; i++) {
        if (m->pipe[i] >= 0) {
            close(m->pipe[i]);
        }
    }
    pg_conn_free(m->conn);
    fold_job_free(&m->job);
    pg_buf_free(&m->chosen_p);
    pg_buf_free(&m->chosen_a);
    free(m->plan);
    pg_buf_free(&m->plan_ids);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const fold_stats_t *fold_stats(const fold_t *m)
{
    return &m->st;
}
