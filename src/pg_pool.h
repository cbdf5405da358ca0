/* pg_pool: a pool of pg.h connections for the HTTP routes' queries: jobs wait in a bounded FIFO
 * for a free connection; heavy queries may take at most half of them. Owns its connections and
 * the jobs' copies of their parameters. */
#ifndef PT_PG_POOL_H
#define PT_PG_POOL_H

#include "pg.h"

typedef struct pg_pool pg_pool_t;
typedef struct pg_job pg_job_t;

/* prepare: pg_conn_set_prepare's max for each connection (0: none). */
pg_pool_t *pg_pool_new(struct event_base *base, const char *conninfo, const char *options, int size,
                       int max_queue, int prepare);
void pg_pool_free(pg_pool_t *p);
/* Queues a query; cb is called once (never inside this call), unless the job is cancelled.
 * NULL when the queue is full. A heavy query (a whole-table aggregate) runs on at most half of
 * the connections, so light ones (one pattern's answer) never wait behind a burst of them. */
pg_job_t *pg_pool_query(pg_pool_t *p, const char *sql, int nparams, const char *const *values,
                        int64_t timeout_ms, bool heavy, pg_result_cb cb, void *ud);
/* The job's callback will not be called; a query in flight is abandoned with its connection
 * (PostgreSQL stops it when it notices the client is gone). */
void pg_pool_cancel(pg_pool_t *p, pg_job_t *job);
int pg_pool_waiting(const pg_pool_t *p);

#endif
