#include "pg_pool.h"

#include <stdlib.h>
#include <string.h>

struct pg_job {
    pg_pool_t *pool;
    bool retried;
    char *sql;
    int nparams;
    char **values;
    int64_t timeout_ms;
    pg_result_cb cb;
    void *ud;
    int conn_idx; /* -1 while queued */
    bool cancelled;
    bool heavy; /* may only take one of heavy_max connections */
    struct pg_job *next;
};

struct pg_pool {
    struct event_base *base;
    int size;
    int max_queue;
    int queued;
    pg_conn_t **conns;
    pg_job_t **running; /* per connection */
    pg_job_t *head, *tail;
    int heavy_max; /* heavy jobs running at once, at most */
    int heavy_running;
    struct event *kick;
};

static void job_free(pg_job_t *j)
{
    if (j == NULL) {
        return;
    }
    free(j->sql);
    for (int i = 0; i < j->nparams; i++) {
        free(j->values[i]);
    }
    free(j->values);
    free(j);
}

static void pool_dispatch(pg_pool_t *p);

static void pool_result_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    pg_job_t *j = ud;
    pg_pool_t *p = j->pool;
    p->running[j->conn_idx] = NULL;
    if (j->heavy) {
        p->heavy_running--;
    }
    /* A connection that sat idle may have died with the server (a restart): the first query
     * on it fails without reaching PostgreSQL. Try once more on a new connection before
     * answering 503. */
    if (res == NULL && !j->cancelled && !j->retried && pg_conn_reused(c)) {
        j->retried = true;
        j->conn_idx = -1;
        j->next = p->head;
        p->head = j;
        if (p->tail == NULL) {
            p->tail = j;
        }
        p->queued++;
        struct timeval zero = {0, 0};
        evtimer_add(p->kick, &zero);
        return;
    }
    if (!j->cancelled) {
        j->cb(c, res, err, j->ud);
    }
    job_free(j);
    /* Not now: the connection is still inside its own callback. */
    struct timeval zero = {0, 0};
    evtimer_add(p->kick, &zero);
}

static void pool_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pool_dispatch(arg);
}

/* The first queued job that may run now: any light one, a heavy one only while fewer than
 * heavy_max run. Unlinks and returns it, or NULL. */
static pg_job_t *take_job(pg_pool_t *p)
{
    pg_job_t *prev = NULL;
    for (pg_job_t *j = p->head; j != NULL; prev = j, j = j->next) {
        if (j->heavy && p->heavy_running >= p->heavy_max) {
            continue;
        }
        if (prev) {
            prev->next = j->next;
        } else {
            p->head = j->next;
        }
        if (p->tail == j) {
            p->tail = prev;
        }
        p->queued--;
        j->next = NULL;
        return j;
    }
    return NULL;
}

static void pool_dispatch(pg_pool_t *p)
{
    for (int i = 0; i < p->size && p->head; i++) {
        if (p->running[i] != NULL || pg_conn_busy(p->conns[i])) {
            continue;
        }
        pg_job_t *j = take_job(p);
        if (j == NULL) {
            return; /* only heavy jobs wait, and their lane is full */
        }
        j->conn_idx = i;
        p->running[i] = j;
        if (j->heavy) {
            p->heavy_running++;
        }
        if (pg_conn_query(p->conns[i], j->sql, j->nparams, (const char *const *)j->values, NULL,
                          j->timeout_ms, pool_result_cb, j) != 0) {
            p->running[i] = NULL;
            if (j->heavy) {
                p->heavy_running--;
            }
            if (!j->cancelled) {
                j->cb(p->conns[i], NULL, "cannot send the query", j->ud);
            }
            job_free(j);
        }
    }
}

pg_pool_t *pg_pool_new(struct event_base *base, const char *conninfo, const char *options, int size,
                       int max_queue, int prepare)
{
    pg_pool_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return NULL;
    }
    p->base = base;
    p->size = size;
    p->max_queue = max_queue;
    /* Half the connections (at least one) for heavy queries: the rest stay free for light ones. */
    p->heavy_max = size > 1 ? size / 2 : 1;
    p->conns = calloc((size_t)size, sizeof(pg_conn_t *));
    p->running = calloc((size_t)size, sizeof(pg_job_t *));
    p->kick = evtimer_new(base, pool_kick_cb, p);
    if (p->conns == NULL || p->running == NULL || p->kick == NULL) {
        pg_pool_free(p);
        return NULL;
    }
    for (int i = 0; i < size; i++) {
        char name[32];
        snprintf(name, sizeof name, "http-%d", i);
        p->conns[i] = pg_conn_new_opts(base, conninfo, options, name);
        if (p->conns[i] == NULL || pg_conn_set_prepare(p->conns[i], prepare) != 0) {
            pg_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void pg_pool_free(pg_pool_t *p)
{
    if (p == NULL) {
        return;
    }
    for (int i = 0; i < p->size && p->conns; i++) {
        if (p->running && p->running[i]) {
            p->running[i]->cancelled = true;
        }
        pg_conn_free(p->conns[i]); /* frees without calling back */
        if (p->running && p->running[i]) {
            job_free(p->running[i]);
        }
    }
    pg_job_t *j = p->head;
    while (j) {
        pg_job_t *n = j->next;
        job_free(j);
        j = n;
    }
    if (p->kick) {
        event_free(p->kick);
    }
    free(p->conns);
    free(p->running);
    free(p);
}

pg_job_t *pg_pool_query(pg_pool_t *p, const char *sql, int nparams, const char *const *values,
                        int64_t timeout_ms, bool heavy, pg_result_cb cb, void *ud)
{
    if (p->queued >= p->max_queue) {
        return NULL;
    }
    pg_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        return NULL;
    }
    j->pool = p;
    j->sql = strdup(sql);
    j->nparams = nparams;
    j->values = calloc(nparams ? (size_t)nparams : 1, sizeof(char *));
    j->timeout_ms = timeout_ms;
    j->heavy = heavy;
    j->cb = cb;
    j->ud = ud;
    j->conn_idx = -1;
    if (j->sql == NULL || j->values == NULL) {
        job_free(j);
        return NULL;
    }
    for (int i = 0; i < nparams; i++) {
        if (values[i] && (j->values[i] = strdup(values[i])) == NULL) {
            job_free(j);
            return NULL;
        }
    }
    if (p->tail) {
        p->tail->next = j;
    } else {
        p->head = j;
    }
    p->tail = j;
    p->queued++;
    struct timeval zero = {0, 0};
    evtimer_add(p->kick, &zero);
    return j;
}

void pg_pool_cancel(pg_pool_t *p, pg_job_t *job)
{
    if (job->conn_idx < 0) {
        pg_job_t **pp = &p->head;
        pg_job_t *prev = NULL;
        while (*pp && *pp != job) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp == job) {
            *pp = job->next;
            if (p->tail == job) {
                p->tail = prev;
            }
            p->queued--;
            job_free(job);
        }
        return;
    }
    job->cancelled = true;
    /* Drop the connection: its callback runs now (and frees the job without calling back). */
    pg_conn_reset(p->conns[job->conn_idx], "query cancelled: the client went away");
}

int pg_pool_waiting(const pg_pool_t *p)
{
    return p->queued;
}
