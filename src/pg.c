#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef enum { PG_IDLE_DOWN, PG_CONNECTING, PG_READY, PG_BUSY } pg_state_t;

struct pg_conn {
    struct event_base *base;
    char *conninfo;
    char *options;
    char *name;
    PGconn *conn;
    pg_state_t state;
    struct event *ev;    /* socket readiness */
    struct event *timer; /* query timeout */
    struct event *defer; /* reports a failure to connect after pg_conn_query returns */
    bool broken;
    char last_error[512];
    /* the pending query; params are copied so the query can wait for the connection */
    char *sql;
    int nparams;
    char **values;
    int *lengths;
    int *formats;      /* per parameter: 1 binary, 0 text; NULL: all text */
    int result_format; /* 1: binary results */
    pg_result_cb cb;
    void *ud;
    PGresult *result; /* last result of the query in flight */
    PGresult *error;  /* first error result of the query in flight */
    PGresult *given;  /* the result the callback got, while it runs */
    bool taken;       /* the callback took it (pg_conn_take_result) */
    bool flushing;    /* output not fully sent yet */
    bool reused;      /* the query in flight went out on a connection made before it */
    bool timed_out;   /* the last query ran out of time */
    /* Prepared statements of this session, by SQL text (see send_query). */
    int stmt_max; /* 0: never prepare */
    int n_stmts;
    struct stmt {
        uint64_t hash;
        char *sql;
    } * stmts;
    int preparing; /* the index the statement in flight is being prepared as, or -1 */
};

static void socket_cb(evutil_socket_t fd, short what, void *arg);
static void fail(pg_conn_t *c, const char *what);

static void send_query(pg_conn_t *c);
static void send_unprepared(pg_conn_t *c);
static int start_connect(pg_conn_t *c);

/* Starts the query queued by pg_conn_query on the next loop turn, so that its callback never
 * runs inside pg_conn_query. */
static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pg_conn_t *c = arg;
    if (c->cb == NULL) {
        return;
    }
    if (c->state == PG_READY) {
        send_query(c);
    } else if (c->state == PG_IDLE_DOWN) {
        if (start_connect(c) != 0) {
            fail(c, "cannot connect");
        }
    }
}

static void free_query(pg_conn_t *c)
{
    free(c->sql);
    c->sql = NULL;
    for (int i = 0; i < c->nparams; i++) {
        free(c->values[i]);
    }
    free(c->values);
    free(c->lengths);
    free(c->formats);
    c->values = NULL;
    c->lengths = NULL;
    c->formats = NULL;
    c->result_format = 0;
    c->nparams = 0;
    if (c->result) {
        PQclear(c->result);
        c->result = NULL;
    }
    if (c->error) {
        PQclear(c->error);
        c->error = NULL;
    }
}

pg_conn_t *pg_conn_new(struct event_base *base, const char *conninfo, const char *name)
{
    return pg_conn_new_opts(base, conninfo, NULL, name);
}

pg_conn_t *pg_conn_new_opts(struct event_base *base, const char *conninfo, const char *options,
                            const char *name)
{
    pg_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->base = base;
    c->options = options ? strdup(options) : NULL;
    c->conninfo = strdup(conninfo);
    c->name = strdup(name);
    c->preparing = -1;
    c->timer = evtimer_new(base, socket_cb, c);
    c->defer = evtimer_new(base, defer_cb, c);
    if (c->conninfo == NULL || c->name == NULL || c->timer == NULL || c->defer == NULL) {
        pg_conn_free(c);
        return NULL;
    }
    return c;
}

static void drop(pg_conn_t *c)
{
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->state = PG_IDLE_DOWN;
    c->flushing = false;
    /* prepared statements die with the session */
    for (int i = 0; i < c->n_stmts; i++) {
        free(c->stmts[i].sql);
    }
    c->n_stmts = 0;
    c->preparing = -1;
}

void pg_conn_free(pg_conn_t *c)
{
    if (c == NULL) {
        return;
    }
    drop(c);
    if (c->timer) {
        event_free(c->timer);
    }
    if (c->defer) {
        event_free(c->defer);
    }
    free_query(c);
    free(c->stmts);
    free(c->conninfo);
    free(c->options);
    free(c->name);
    free(c);
}

PGresult *pg_conn_take_result(pg_conn_t *c)
{
    c->taken = c->given != NULL;
    return c->given;
}

bool pg_conn_busy(const pg_conn_t *c)
{
    return c->cb != NULL;
}

bool pg_conn_reused(const pg_conn_t *c)
{
    return c->reused;
}

bool pg_conn_timed_out(const pg_conn_t *c)
{
    return c->timed_out;
}

bool pg_conn_broken(const pg_conn_t *c)
{
    return c->broken;
}

const char *pg_conn_last_error(const pg_conn_t *c)
{
    return c->last_error;
}

const char *pg_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

/* Ends the query in flight: clears the callback first so the callee may send the next one. */
static void finish(pg_conn_t *c, PGresult *res, const char *err)
{
    evtimer_del(c->defer);
    pg_result_cb cb = c->cb;
    void *ud = c->ud;
    c->cb = NULL;
    c->ud = NULL;
    evtimer_del(c->timer);
    PGresult *keep_result = c->result, *keep_error = c->error;
    c->result = NULL;
    c->error = NULL;
    free_query(c);
    c->given = res;
    c->taken = false;
    if (cb) {
        cb(c, res, err, ud);
    }
    if (c->taken && keep_result == res) {
        keep_result = NULL;
    }
    c->given = NULL;
    c->taken = false;
    if (keep_result) {
        PQclear(keep_result);
    }
    if (keep_error) {
        PQclear(keep_error);
    }
}

static void fail(pg_conn_t *c, const char *what)
{
    const char *msg = c->conn ? PQerrorMessage(c->conn) : "";
    snprintf(c->last_error, sizeof c->last_error, "%s%s%s", what, *msg ? ": " : "", msg);
    /* libpq messages end in a newline */
    size_t n = strlen(c->last_error);
    while (n > 0 && (c->last_error[n - 1] == '\n' || c->last_error[n - 1] == ' ')) {
        c->last_error[--n] = '\0';
    }
    c->broken = true;
    drop(c);
    finish(c, NULL, c->last_error);
}

static int watch(pg_conn_t *c, short what)
{
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    int fd = PQsocket(c->conn);
    if (fd < 0) {
        return -1;
    }
    c->ev = event_new(c->base, fd, what, socket_cb, c);
    if (c->ev == NULL || event_add(c->ev, NULL) != 0) {
        return -1;
    }
    return 0;
}

static uint64_t sql_hash(const char *sql)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }
    return h;
}

static void stmt_name(char *buf, size_t n, int i)
{
    snprintf(buf, n, "pt_s%d", i);
}

/* The index of c->sql among the session's prepared statements, or -1. */
static int find_stmt(const pg_conn_t *c, uint64_t h)
{
    for (int i = 0; i < c->n_stmts; i++) {
        if (c->stmts[i].hash == h && strcmp(c->stmts[i].sql, c->sql) == 0) {
            return i;
        }
    }
    return -1;
}

static void sent(pg_conn_t *c, bool keep_values)
{
    c->state = PG_BUSY;
    if (!keep_values) {
        /* libpq holds its own copy now; ours may go (flush parameters are megabytes). */
        for (int i = 0; i < c->nparams; i++) {
            free(c->values[i]);
            c->values[i] = NULL;
        }
    }
    int f = PQflush(c->conn);
    if (f < 0) {
        fail(c, "cannot send query");
        return;
    }
    c->flushing = f == 1;
    if (watch(c, EV_READ | (c->flushing ? EV_WRITE : 0) | EV_PERSIST) != 0) {
        fail(c, "cannot watch the socket");
    }
}

static void send_prepared(pg_conn_t *c, int i)
{
    char name[32];
    stmt_name(name, sizeof name, i);
    if (!PQsendQueryPrepared(c->conn, name, c->nparams, (const char *const *)c->values, c->lengths,
                             c->formats, c->result_format)) {
        fail(c, "cannot send query");
        return;
    }
    sent(c, false);
}

static void send_unprepared(pg_conn_t *c)
{
    if (!PQsendQueryParams(c->conn, c->sql, c->nparams, NULL, (const char *const *)c->values,
                           c->lengths, c->formats, c->result_format)) {
        fail(c, "cannot send query");
        return;
    }
    sent(c, false);
}

/* On connections that prepare (pg_conn_set_prepare), a query text is prepared once per session
 * and then only executed: the HTTP routes send the same few dozen texts thousands of times a
 * second, and planning them cost PostgreSQL 3-4 times what running them did (0.4-0.5 ms vs
 * 0.13-0.18 ms for one pattern's answer at 100,000 patterns). PostgreSQL still plans custom
 * plans for the first five executions and keeps a generic plan only when it is as good. Texts
 * beyond stmt_max are sent unprepared; the first stmt_max stay. */
static void send_query(pg_conn_t *c)
{
    if (c->stmt_max > 0) {
        uint64_t h = sql_hash(c->sql);
        int i = find_stmt(c, h);
        if (i >= 0) {
            send_prepared(c, i);
            return;
        }
        if (c->n_stmts < c->stmt_max) {
            i = c->n_stmts;
            char name[32];
            stmt_name(name, sizeof name, i);
            if (!PQsendPrepare(c->conn, name, c->sql, c->nparams, NULL)) {
                fail(c, "cannot send query");
                return;
            }
            c->stmts[i].hash = h;
            c->preparing = i;
            sent(c, true);
            return;
        }
    }
    send_unprepared(c);
}

int pg_conn_set_prepare(pg_conn_t *c, int max)
{
    struct stmt *st = max > 0 ? calloc((size_t)max, sizeof *st) : NULL;
    if (max > 0 && st == NULL) {
        return -1;
    }
    /* a new session, so no statement of the old table is left in PostgreSQL either */
    drop(c);
    free(c->stmts);
    c->stmts = st;
    c->stmt_max = max > 0 ? max : 0;
    return 0;
}

static void on_connect_step(pg_conn_t *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->conn);
    switch (st) {
    case PGRES_POLLING_READING:
        if (watch(c, EV_READ) != 0) {
            fail(c, "cannot watch the socket");
        }
        return;
    case PGRES_POLLING_WRITING:
        if (watch(c, EV_WRITE) != 0) {
            fail(c, "cannot watch the socket");
        }
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->conn, 1) != 0) {
            fail(c, "cannot set non-blocking mode");
            return;
        }
        if (c->broken) {
            log_info("postgresql (%s): connected again", c->name);
        }
        c->broken = false;
        c->state = PG_READY;
        if (c->ev) {
            event_free(c->ev);
            c->ev = NULL;
        }
        if (c->cb) {
            send_query(c);
        }
        return;
    default:
        fail(c, "cannot connect");
        return;
    }
}

static void on_readable(pg_conn_t *c)
{
    if (!PQconsumeInput(c->conn)) {
        fail(c, "connection lost");
        return;
    }
    while (!PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (r == NULL) {
            if (c->preparing >= 0) {
                int i = c->preparing;
                c->preparing = -1;
                if (c->error == NULL) {
                    /* Prepared: remember it and run it (the connection stays busy; the
                     * execution's result replaces the prepare's in c->result). */
                    c->stmts[i].sql = strdup(c->sql);
                    if (c->stmts[i].sql != NULL) {
                        c->n_stmts = i + 1;
                        send_prepared(c, i);
                    } else {
                        send_unprepared(c); /* out of memory */
                    }
                    return;
                }
                /* A text PostgreSQL refuses to prepare is an error of the query itself. */
            }
            /* The query is complete. */
            c->state = PG_READY;
            if (c->ev) {
                event_free(c->ev);
                c->ev = NULL;
            }
            PGresult *res = c->error ? c->error : c->result;
            finish(c, res, NULL);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
            if (c->error == NULL) {
                c->error = r;
            } else {
                PQclear(r);
            }
        } else {
            if (c->result) {
                PQclear(c->result);
            }
            c->result = r;
        }
    }
}

static void socket_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    pg_conn_t *c = arg;
    if (what & EV_TIMEOUT) {
        char msg[128];
        snprintf(msg, sizeof msg, "no answer from PostgreSQL in time; connection dropped");
        snprintf(c->last_error, sizeof c->last_error, "%s", msg);
        c->broken = true;
        /* The caller's time is spent: the pool must not try the query again elsewhere. */
        c->reused = false;
        c->timed_out = true;
        drop(c);
        finish(c, NULL, c->last_error);
        return;
    }
    if (c->state == PG_CONNECTING) {
        on_connect_step(c);
        return;
    }
    if (c->state != PG_BUSY) {
        return;
    }
    if (c->flushing && (what & EV_WRITE)) {
        int f = PQflush(c->conn);
        if (f < 0) {
            fail(c, "cannot send query");
            return;
        }
        if (f == 0) {
            c->flushing = false;
            if (watch(c, EV_READ | EV_PERSIST) != 0) {
                fail(c, "cannot watch the socket");
                return;
            }
        }
    }
    if (what & EV_READ) {
        on_readable(c);
    }
}

static int start_connect(pg_conn_t *c)
{
    /* dbname carries the whole conninfo or URL (expand_dbname); settings ride along. */
    const char *keys[] = {"dbname", "application_name", c->options ? "options" : NULL, NULL};
    const char *vals[] = {c->conninfo, "patterntrack", c->options, NULL};
    c->conn = PQconnectStartParams(keys, vals, 1);
    if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD) {
        return -1;
    }
    c->state = PG_CONNECTING;
    /* PQconnectStart wants the first wait to be for writing. */
    return watch(c, EV_WRITE);
}

int pg_conn_query(pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                  const int *lengths, int64_t timeout_ms, pg_result_cb cb, void *ud)
{
    return pg_conn_query_fmt(c, sql, nparams, values, lengths, NULL, false, timeout_ms, cb, ud);
}

int pg_conn_query_fmt(pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                      const int *lengths, const int *formats, bool binary_results,
                      int64_t timeout_ms, pg_result_cb cb, void *ud)
{
    if (c->cb != NULL) {
        return -1;
    }
    c->sql = strdup(sql);
    c->nparams = nparams;
    c->values = calloc(nparams ? (size_t)nparams : 1, sizeof(char *));
    c->lengths = calloc(nparams ? (size_t)nparams : 1, sizeof(int));
    if (formats != NULL && (c->formats = calloc(nparams ? (size_t)nparams : 1, sizeof(int)))) {
        memcpy(c->formats, formats, (size_t)nparams * sizeof(int));
    }
    c->result_format = binary_results ? 1 : 0;
    if (c->sql == NULL || c->values == NULL || c->lengths == NULL ||
        (formats != NULL && c->formats == NULL)) {
        free_query(c);
        return -1;
    }
    for (int i = 0; i < nparams; i++) {
        if (values[i] != NULL) {
            size_t n = lengths ? (size_t)lengths[i] : strlen(values[i]);
            c->values[i] = malloc(n + 1);
            if (c->values[i] == NULL) {
                free_query(c);
                return -1;
            }
            memcpy(c->values[i], values[i], n);
            c->values[i][n] = '\0';
            c->lengths[i] = (int)n;
        }
    }
    c->cb = cb;
    c->ud = ud;
    c->reused = c->state == PG_READY;
    c->timed_out = false;
    if (timeout_ms > 0) {
        struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
        evtimer_add(c->timer, &tv);
    }
    struct timeval zero = {0, 0};
    evtimer_add(c->defer, &zero);
    return 0;
}

void pg_conn_reset(pg_conn_t *c, const char *reason)
{
    drop(c);
    if (c->cb) {
        snprintf(c->last_error, sizeof c->last_error, "%s", reason);
        finish(c, NULL, c->last_error);
    }
}
