/* flush: the SQL of one flush. Turns an aggregate into the bound parameters of one call of
 * pt_flush (sql/002_flush.sql), sends it on the flush connection and classifies the outcome.
 * Owns that connection; does not decide when to flush or what to do after (ingest does). */
#ifndef PT_FLUSH_H
#define PT_FLUSH_H

#include <event2/event.h>

#include "agg.h"
#include "config.h"

typedef struct flush flush_t;

typedef enum {
    FLUSH_OK,       /* committed */
    FLUSH_CONFLICT, /* another consumer advanced a partition: nothing was written */
    FLUSH_RETRY,    /* not written (or unknown): PostgreSQL unreachable, deadlock, ... */
} flush_status_t;

typedef void (*flush_cb)(flush_status_t st, const char *err, double seconds, void *ud);

flush_t *flush_new(struct event_base *base, const config_t *c);
void flush_free(flush_t *f);
/* Sends the aggregate. Its parameters are built on a builder thread, so the aggregate must not
 * change until cb has been called. cb is called exactly once (not from inside this call). -1 if
 * a flush is already in flight. durable: the commit waits for the WAL flush (needed when
 * someone is told "stored"); otherwise a commit lost in a PostgreSQL crash is consumed again
 * from Kafka, since the offsets are lost with it. */
int flush_send(flush_t *f, const agg_t *a, bool durable, flush_cb cb, void *ud)
    __attribute__((warn_unused_result));
bool flush_busy(const flush_t *f);
/* True when the last flush could not reach PostgreSQL. */
bool flush_pg_down(const flush_t *f);
/* pt_flush's parameters: text, but for values[FLUSH_DATA_PARAM] (c_data, the partner lists
 * one after the other), which is bytea in binary form. */
#define FLUSH_NPARAMS 33
#define FLUSH_DATA_PARAM 31
/* Builds the parameters of pt_flush (exposed for tests). Returns FLUSH_NPARAMS. */
int flush_build(const agg_t *a, const char *group, bool durable, char **values, int *lengths);
void flush_build_free(char **values, int n);

#endif
