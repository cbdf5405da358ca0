/* pg: non-blocking PostgreSQL connections driven by libevent. One pg_conn_t runs one query at
 * a time: it connects when needed (PQconnectStart), sends with bound parameters
 * (PQsendQueryParams), and calls back once per query with the final result or an error. Owns
 * the PGconn and its events; does not retry (callers decide policy) and knows no SQL. */
#ifndef PT_PG_H
#define PT_PG_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct pg_conn pg_conn_t;

/* Called exactly once per query. res is the last result (NULL when the connection failed or
 * timed out; then err says why). The callee must not free res; the connection clears it after
 * the callback returns. The callback may send the next query on the same connection. */
typedef void (*pg_result_cb)(pg_conn_t *c, PGresult *res, const char *err, void *ud);

/* options: PostgreSQL session settings sent at connect (libpq "options", e.g.
 * "-c TimeZone=UTC"), or NULL. */
pg_conn_t *pg_conn_new(struct event_base *base, const char *conninfo, const char *name);
pg_conn_t *pg_conn_new_opts(struct event_base *base, const char *conninfo, const char *options,
                            const char *name);
/* Frees the connection; a query in flight is abandoned without its callback. */
void pg_conn_free(pg_conn_t *c);
/* Sends a query, connecting first if needed. values are copied; NULL entries are SQL NULL.
 * timeout_ms > 0 abandons the query (and the connection) after that long. -1 when a query is
 * already in flight. */
int pg_conn_query(pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                  const int *lengths, int64_t timeout_ms, pg_result_cb cb, void *ud)
    __attribute__((warn_unused_result));
/* pg_conn_query with parameter formats (formats[i] 1: values[i] is binary, lengths[i] long;
 * NULL: all text) and, when binary_results, results in binary format. */
int pg_conn_query_fmt(pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                      const int *lengths, const int *formats, bool binary_results,
                      int64_t timeout_ms, pg_result_cb cb, void *ud)
    __attribute__((warn_unused_result));
/* Prepares each distinct query text once per session, up to max texts (0: never), and
 * executes the prepared statement after that. Drops the session. -1 when out of memory. */
int pg_conn_set_prepare(pg_conn_t *c, int max) __attribute__((warn_unused_result));
/* Called from a query's callback: the callee takes its result (the connection does not clear
 * it; PQclear is the callee's), e.g. to keep large binary rows without copying them. */
PGresult *pg_conn_take_result(pg_conn_t *c);
bool pg_conn_busy(const pg_conn_t *c);
/* True when the query in flight was sent on a connection opened before it (not a fresh one)
 * and did not fail by running out of time. */
bool pg_conn_reused(const pg_conn_t *c);
/* True when the last query was abandoned because its timeout_ms passed. */
bool pg_conn_timed_out(const pg_conn_t *c);
/* True while the last attempt to connect or query failed at the connection level. */
bool pg_conn_broken(const pg_conn_t *c);
/* Drops the connection (the next query reconnects). A query in flight gets its callback with
 * err = reason. */
void pg_conn_reset(pg_conn_t *c, const char *reason);
const char *pg_conn_last_error(const pg_conn_t *c);

/* SQLSTATE of a result, or "" */
const char *pg_sqlstate(const PGresult *res);

#endif
