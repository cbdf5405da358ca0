#include "flush.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "claims.h"
#include "known.h"
#include "log.h"
#include "pg.h"
#include "pg_buf.h"

static const char flush_sql[] =
    "SELECT pt_flush($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
    "$17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, "
    "$35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49, $50, $51, $52)";

static const char types_sql[] =
    "SELECT pattern_id, coalesce(pattern_type, 'unknown') FROM pattern_lineage_nodes "
    "WHERE pattern_id = ANY($1::text[])";

/* Keys known committed that the engine keeps (known.h): about 24 bytes each at most. */
#define KNOWN_MAX_KEYS ((size_t)1 << 20)

/* The parameters of a large flush are megabytes: building them on the event loop was tens of
 * milliseconds without HTTP answers or Kafka reads at every flush. A builder thread makes them
 * while the loop goes on; the aggregate is the in-flight batch, which nothing changes until this
 * flush has ended. known (the keys and types the engine knows the database holds) is used by
 * the builder while it builds and by the loop before (types read) and after (keys committed). */
typedef enum {
    B_TYPES, /* list the batch's patterns whose type is not known */
    B_PARAMS /* build pt_flush's parameters */
} bjob_t;

struct flush {
    pg_conn_t *conn;
    char *group;
    const config_t *cfg;
    known_t *known;
    flush_cb cb;
    void *ud;
    const agg_t *agg; /* the batch in flight */
    agg_t *held;      /* the same, while its held events' claims are decided (claims.h) */
    claims_t claims;
    bool durable;
    /* After a PT410 the flush runs in a transaction of its own that first locks agent_type_usage
     * (ROW EXCLUSIVE, as pt_flush does): registrations wait until it ends, so the types it reads
     * are the ones its pt_flush sees. */
    bool locked;
    bool in_tx;
    flush_status_t tx_status; /* what a transaction being ended reports */
    char *tx_err;
    struct timespec started;
    int64_t timeout_ms; /* this attempt's */
    int timeouts;       /* attempts in a row that ran out of time */
    /* builder thread; the fields below the mutex are shared with it */
    pthread_t thread;
    bool thread_up;
    int pipe[2]; /* the builder writes a byte when a job is done */
    struct event *ev_built;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool job;    /* a job for the builder */
    bjob_t kind; /* which */
    bool built;  /* done, for the loop */
    bool stop;
    char *values[FLUSH_NPARAMS];
    int lengths[FLUSH_NPARAMS];
    int n;
    pg_buf_t missing;       /* B_TYPES: a text[] literal of the patterns, */
    const char **missing_v; /* and the patterns themselves (interned by the batch) */
    uint32_t *missing_len;
    size_t missing_n, missing_cap;
};

typedef struct {
    flush_t *f;
    bool any;
} missing_ctx_t;

static void missing_cb(const char *pattern, uint32_t len, void *ud)
{
    missing_ctx_t *x = ud;
    flush_t *f = x->f;
    size_t tl;
    if (known_type(f->known, pattern, len, &tl) != NULL) {
        return;
    }
    if (f->missing_n == f->missing_cap) {
        f->missing_cap = f->missing_cap ? f->missing_cap * 2 : 1024;
        f->missing_v = realloc(f->missing_v, f->missing_cap * sizeof *f->missing_v);
        f->missing_len = realloc(f->missing_len, f->missing_cap * sizeof *f->missing_len);
        if (f->missing_v == NULL || f->missing_len == NULL) {
            abort();
        }
    }
    f->missing_v[f->missing_n] = pattern;
    f->missing_len[f->missing_n++] = len;
    if (x->any) {
        pg_array_next(&f->missing);
    }
    pg_array_text(&f->missing, pattern, len);
    x->any = true;
}

static void *builder_main(void *arg)
{
    flush_t *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->job && !f->stop) {
            pthread_cond_wait(&f->cv, &f->mu);
        }
        if (f->stop) {
            break;
        }
        bjob_t kind = f->kind;
        pthread_mutex_unlock(&f->mu);
        char *values[FLUSH_NPARAMS];
        int lengths[FLUSH_NPARAMS];
        int n = 0;
        if (kind == B_TYPES) {
            pg_buf_reset(&f->missing);
            pg_buf_putc(&f->missing, '{');
            f->missing_n = 0;
            missing_ctx_t x = {f, false};
            agg_each_pattern(f->agg, missing_cb, &x);
            pg_array_end(&f->missing);
        } else {
            n = flush_build(f->agg, f->group, f->durable, f->known, values, lengths);
            size_t bytes = 0;
            for (int i = 0; i < n; i++) {
                bytes += (size_t)lengths[i];
            }
            if (log_get_level() <= LOG_DEBUG) {
                log_fields(LOG_DEBUG,
                           LOG_F(LF_UINT("events", agg_events(f->agg)),
                                 LF_UINT("references", agg_refs(f->agg)),
                                 LF_UINT("pair_sides", agg_sides(f->agg)), LF_UINT("bytes", bytes)),
                           "flush parameters built");
            }
        }
        pthread_mutex_lock(&f->mu);
        if (kind == B_PARAMS) {
            memcpy(f->values, values, sizeof values);
            memcpy(f->lengths, lengths, sizeof lengths);
            f->n = n;
        }
        f->job = false;
        f->built = true;
        ssize_t w;
        do {
            w = write(f->pipe[1], "b", 1);
        } while (w < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void built_cb(evutil_socket_t fd, short what, void *arg);

flush_t *flush_new(struct event_base *base, const config_t *c)
{
    flush_t *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return NULL;
    }
    f->pipe[0] = f->pipe[1] = -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    pg_buf_init(&f->missing);
    claims_init(&f->claims);
    f->conn = pg_conn_new(base, c->database_url, "flush");
    f->group = strdup(c->kafka_group_id);
    f->known = known_new(KNOWN_MAX_KEYS);
    f->cfg = c;
    if (f->conn == NULL || f->group == NULL || f->known == NULL || pipe(f->pipe) != 0 ||
        fcntl(f->pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
        (f->ev_built = event_new(base, f->pipe[0], EV_READ | EV_PERSIST, built_cb, f)) == NULL ||
        event_add(f->ev_built, NULL) != 0) {
        flush_free(f);
        return NULL;
    }
    if (pthread_create(&f->thread, NULL, builder_main, f) != 0) {
        flush_free(f);
        return NULL;
    }
    f->thread_up = true;
    return f;
}

void flush_free(flush_t *f)
{
    if (f == NULL) {
        return;
    }
    if (f->thread_up) {
        pthread_mutex_lock(&f->mu);
        f->stop = true;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    if (f->built && f->kind == B_PARAMS) {
        flush_build_free(f->values, f->n);
    }
    if (f->ev_built) {
        event_free(f->ev_built);
    }
    for (int i = 0; i < 2; i++) {
        if (f->pipe[i] >= 0) {
            close(f->pipe[i]);
        }
    }
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    pg_conn_free(f->conn);
    known_free(f->known);
    pg_buf_free(&f->missing);
    claims_free(&f->claims);
    free(f->tx_err);
    free(f->missing_v);
    free(f->missing_len);
    free(f->group);
    free(f);
}

bool flush_busy(const flush_t *f)
{
    return f->cb != NULL;
}

bool flush_pg_down(const flush_t *f)
{
    return pg_conn_broken(f->conn);
}

size_t flush_known_keys(const flush_t *f)
{
    return known_n_keys(f->known);
}

/* SQLSTATEs after which the same flush may succeed: connection trouble, deadlock,
 * serialization failure, shutdown, resource shortage. */
static bool transient(const char *st)
{
    return strncmp(st, "08", 2) == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0 ||
           strncmp(st, "57P", 3) == 0 || strncmp(st, "53", 2) == 0 || st[0] == '\0';
}

static int64_t attempt_timeout(const flush_t *f)
{
    return f->cfg->flush_timeout_ms << (f->timeouts < 3 ? f->timeouts : 3);
}

static void start_job(flush_t *f, bjob_t kind)
{
    pthread_mutex_lock(&f->mu);
    f->kind = kind;
    f->job = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* The flush ends: cb once, and the staged keys become known only if it committed. */
static void finish(flush_t *f, flush_status_t st, const char *err)
{
    flush_cb cb = f->cb;
    void *cud = f->ud;
    f->cb = NULL;
    f->ud = NULL;
    f->agg = NULL;
    f->held = NULL;
    f->locked = false;
    f->in_tx = false;
    if (st == FLUSH_OK) {
        known_commit(f->known);
    } else {
        known_drop(f->known);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs =
        (double)(now.tv_sec - f->started.tv_sec) + (double)(now.tv_nsec - f->started.tv_nsec) / 1e9;
    cb(st, err, secs, cud);
    free(f->tx_err);
    f->tx_err = NULL;
}

static void end_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    flush_t *f = ud;
    bool ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (f->tx_status == FLUSH_OK && !ok) {
        /* the COMMIT failed or its answer was lost: not known to be written */
        finish(f, FLUSH_RETRY, res ? PQresultErrorMessage(res) : err);
        return;
    }
    finish(f, f->tx_status, f->tx_err);
}

/* Ends the flush: directly, or by ending its transaction first (COMMIT when it is written,
 * ROLLBACK otherwise; a lost connection has ended it already). */
static void end(flush_t *f, flush_status_t st, const char *err, bool conn_lost)
{
    if (!f->in_tx || conn_lost) {
        finish(f, st, err);
        return;
    }
    f->tx_status = st;
    free(f->tx_err);
    f->tx_err = err ? strdup(err) : NULL;
    f->in_tx = false;
    if (pg_conn_query(f->conn, st == FLUSH_OK ? "COMMIT" : "ROLLBACK", 0, NULL, NULL, f->timeout_ms,
                      end_cb, f) != 0) {
        pg_conn_reset(f->conn, "out of memory");
        finish(f, FLUSH_RETRY, "cannot end the flush's transaction (out of memory)");
    }
}

static void locked_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    flush_t *f = ud;
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        end(f, FLUSH_RETRY, res ? PQresultErrorMessage(res) : err, res == NULL);
        return;
    }
    if (!f->in_tx) {
        f->in_tx = true; /* BEGIN done: now the lock */
        if (pg_conn_query(f->conn, "LOCK TABLE agent_type_usage IN ROW EXCLUSIVE MODE", 0, NULL,
                          NULL, f->timeout_ms, locked_cb, f) != 0) {
            end(f, FLUSH_RETRY, "out of memory", false);
        }
        return;
    }
    start_job(f, B_TYPES);
}

static void result_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    flush_t *f = ud;
    if (res == NULL) {
        if (pg_conn_timed_out(c)) {
            /* A flush that needs longer than flush_timeout_ms (a large batch against a large
             * database) would otherwise be abandoned at every attempt and never commit: each
             * timeout in a row doubles the next attempt's time, up to 8 times the setting. */
            f->timeouts++;
            log_fields(LOG_WARN,
                       LOG_F(LF_UINT("events", agg_events(f->agg)),
                             LF_INT("next_timeout_ms", (long long)attempt_timeout(f))),
                       "flush ran out of time (flush_timeout_ms); the next attempt may take up to "
                       "%lld ms",
                       (long long)attempt_timeout(f));
        }
        end(f, FLUSH_RETRY, err, true);
        return;
    }
    f->timeouts = 0;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        end(f, FLUSH_OK, NULL, false);
        return;
    }
    const char *state = pg_sqlstate(res);
    const char *msg = PQresultErrorMessage(res);
    if (strcmp(state, "PT409") == 0) {
        end(f, FLUSH_CONFLICT, msg, false);
        return;
    }
    if (strcmp(state, "PT410") == 0 && !f->locked) {
        /* A registration changed a pattern's type since it was read: read the batch's types
         * again, under the lock that keeps them, and build the flush anew (its staged keys are
         * staged again). */
        log_info("flush: a registration changed pattern types; reading the batch's types again");
        known_drop(f->known);
        known_forget_types(f->known);
        f->locked = true;
        if (pg_conn_query(f->conn, "BEGIN", 0, NULL, NULL, f->timeout_ms, locked_cb, f) != 0) {
            finish(f, FLUSH_RETRY, "out of memory");
        }
        return;
    }
    if (!transient(state)) {
        /* Not a passing condition: a schema change, a constraint from another system, a bug.
         * The batch is kept and retried, so nothing is lost, but someone must look. */
        log_fields(LOG_ERROR,
                   LOG_F(LF_STR("sqlstate", state), LF_STR("reason", msg),
                         LF_UINT("events", agg_events(f->agg))),
                   "flush failed with SQLSTATE %s (retrying; this needs attention)", state);
    }
    end(f, FLUSH_RETRY, msg, false);
}

/* The held events' claims are decided: they count or are duplicates, and the flush goes on. */
static void claimed_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    flush_t *f = ud;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *st = res ? pg_sqlstate(res) : "";
        const char *msg = res ? PQresultErrorMessage(res) : err;
        if (!transient(st)) {
            log_fields(LOG_ERROR,
                       LOG_F(LF_STR("sqlstate", st), LF_STR("reason", msg),
                             LF_UINT("held_events", agg_n_held(f->held))),
                       "claiming event IDs failed with SQLSTATE %s (retrying; this needs "
                       "attention)",
                       st);
        }
        finish(f, FLUSH_RETRY, msg);
        return;
    }
    size_t n = agg_n_held(f->held);
    bool *won = calloc(n, sizeof(bool));
    char why[200];
    if (won == NULL) {
        abort();
    }
    if (claims_read(&f->claims, res, won, why, sizeof why) != 0) {
        /* the claims committed, but which are ours is unknown: asking again tells */
        log_fields(LOG_ERROR, LOG_F(LF_STR("reason", why)), "claiming event IDs failed (retrying)");
        free(won);
        finish(f, FLUSH_RETRY, why);
        return;
    }
    agg_release_held(f->held, won);
    free(won);
    f->held = NULL;
    start_job(f, B_TYPES);
}

int flush_send(flush_t *f, agg_t *a, bool durable, flush_cb cb, void *ud)
{
    if (f->cb != NULL) {
        return -1;
    }
    f->cb = cb;
    f->ud = ud;
    f->agg = a;
    f->durable = durable;
    clock_gettime(CLOCK_MONOTONIC, &f->started);
    if (agg_n_held(a) > 0) {
        f->held = a;
        const char *values[CLAIMS_NPARAMS];
        claims_build(&f->claims, a, values);
        f->timeout_ms = attempt_timeout(f);
        if (pg_conn_query(f->conn, CLAIMS_SQL, CLAIMS_NPARAMS, values, NULL, f->timeout_ms,
                          claimed_cb, f) != 0) {
            /* cb must not run inside this call */
            f->held = NULL;
            f->cb = NULL;
            f->ud = NULL;
            f->agg = NULL;
            return -1;
        }
        claims_drop_params(&f->claims);
        return 0;
    }
    start_job(f, B_TYPES);
    return 0;
}

static void types_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    flush_t *f = ud;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        end(f, FLUSH_RETRY, res ? PQresultErrorMessage(res) : err, res == NULL);
        return;
    }
    /* absent from the catalog: the flush creates the pattern without a type */
    for (size_t i = 0; i < f->missing_n; i++) {
        known_set_type(f->known, f->missing_v[i], f->missing_len[i], "unknown", 7);
    }
    for (int i = 0; i < PQntuples(res); i++) {
        known_set_type(f->known, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0),
                       PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
    }
    start_job(f, B_PARAMS);
}

/* The builder is done: look the types up, or send the flush. */
static void built_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    flush_t *f = arg;
    char drain[16];
    while (read(fd, drain, sizeof drain) > 0) {
    }
    pthread_mutex_lock(&f->mu);
    bool built = f->built;
    bjob_t kind = f->kind;
    char *values[FLUSH_NPARAMS];
    int lengths[FLUSH_NPARAMS];
    int n = f->n;
    memcpy(values, f->values, sizeof values);
    memcpy(lengths, f->lengths, sizeof lengths);
    f->built = false;
    pthread_mutex_unlock(&f->mu);
    if (!built || f->cb == NULL) {
        return;
    }
    f->timeout_ms = attempt_timeout(f);
    if (kind == B_TYPES) {
        if (f->missing_n == 0) {
            start_job(f, B_PARAMS);
            return;
        }
        const char *vals[1] = {f->missing.data};
        if (pg_conn_query(f->conn, types_sql, 1, vals, NULL, f->timeout_ms, types_cb, f) != 0) {
            end(f, FLUSH_RETRY, "cannot start the type lookup (out of memory)", false);
        }
        return;
    }
    /* x_data in binary: the lists as they are, not twice their size in hex */
    int formats[FLUSH_NPARAMS] = {0};
    formats[FLUSH_DATA_PARAM] = 1;
    int rc = pg_conn_query_fmt(f->conn, flush_sql, n, (const char *const *)values, lengths, formats,
                               false, f->timeout_ms, result_cb, f);
    flush_build_free(values, n);
    if (rc != 0) {
        end(f, FLUSH_RETRY, "cannot start the flush query (out of memory)", false);
    }
}
