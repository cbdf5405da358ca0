/* flush: the SQL of one flush. Turns an aggregate into the bound parameters of one call of
 * pt_flush (sql/functions/pt_flush.sql; built by flush_params.c on the builder thread), sends it
 * on the flush connection and classifies the outcome. Owns that connection and what the engine knows the database holds (known.h: the
 * (pattern, agent) keys committed, the patterns' types), which it reads before a flush (types)
 * and learns from each commit (keys). Does not decide when to flush or what to do after
 * (ingest does). */
#ifndef PT_FLUSH_H
#define PT_FLUSH_H

#include <event2/event.h>

#include "agg.h"
#include "config.h"
#include "known.h"

typedef struct flush flush_t;

typedef enum {
    FLUSH_OK,       /* committed */
    FLUSH_CONFLICT, /* another consumer advanced a partition: nothing was written */
    FLUSH_RETRY,    /* not written (or unknown): PostgreSQL unreachable, deadlock, ... */
} flush_status_t;

typedef void (*flush_cb)(flush_status_t st, const char *err, double seconds, void *ud);

flush_t *flush_new(struct event_base *base, const config_t *c);
void flush_free(flush_t *f);
/* Sends the aggregate: first the claims of its held events (claims.h), which decides them in the
 * aggregate (agg_release_held), then its counts. Its parameters are built on a builder thread,
 * so the aggregate must not change otherwise until cb has been called. cb is called exactly once (not from inside this call). -1 if
 * a flush is already in flight. durable: the commit waits for the WAL flush (needed when
 * someone is told "stored"); otherwise a commit lost in a PostgreSQL crash is consumed again
 * from Kafka, since the offsets are lost with it. */
int flush_send(flush_t *f, agg_t *a, bool durable, flush_cb cb, void *ud)
    __attribute__((warn_unused_result));
bool flush_busy(const flush_t *f);
/* True when the last flush could not reach PostgreSQL. */
bool flush_pg_down(const flush_t *f);
/* Keys the engine knows committed (for metrics). */
size_t flush_known_keys(const flush_t *f);
/* pt_flush's parameters, in its order (sql/functions/pt_flush.sql): text, but for x_data (the
 * partner lists one after the other), which is bytea in binary form. */
enum {
    FLUSH_P_GROUP,
    FLUSH_P_O_TOPIC,
    FLUSH_P_O_PART,
    FLUSH_P_O_EXPECTED,
    FLUSH_P_O_NEXT,
    FLUSH_P_P_ID,
    FLUSH_P_P_TYPE,
    FLUSH_P_P_COUNT,
    FLUSH_P_P_FIRST,
    FLUSH_P_P_LAST,
    FLUSH_P_H_PATTERN,
    FLUSH_P_H_HOUR,
    FLUSH_P_H_COUNT,
    FLUSH_P_A_AGENT,
    FLUSH_P_A_COUNT,
    FLUSH_P_A_FIRST,
    FLUSH_P_A_LAST,
    FLUSH_P_Y_AGENT,
    FLUSH_P_Y_TYPE,
    FLUSH_P_Y_COUNT,
    FLUSH_P_Y_FIRST,
    FLUSH_P_Y_LAST,
    FLUSH_P_K_PATTERN,
    FLUSH_P_K_AGENT,
    FLUSH_P_T_TOPIC,
    FLUSH_P_T_EVENTS,
    FLUSH_P_T_WITHOUT,
    FLUSH_P_T_DEAD,
    FLUSH_P_T_FLAGGED,
    FLUSH_P_T_WITH,
    FLUSH_P_T_OVER,
    FLUSH_P_T_DUPS,
    FLUSH_P_D_TOPIC,
    FLUSH_P_D_PART,
    FLUSH_P_D_OFFSET,
    FLUSH_P_D_REASON,
    FLUSH_P_D_DETAIL,
    FLUSH_P_D_PAYLOAD,
    FLUSH_P_D_SIZE,
    FLUSH_P_D_HASH,
    FLUSH_P_L_PATTERN,
    FLUSH_P_L_N_AGENTS,
    FLUSH_P_L_AGENTS_LEN,
    FLUSH_P_L_N_PARTNERS,
    FLUSH_P_L_N_LOW,
    FLUSH_P_L_PARTNERS_LEN,
    FLUSH_P_L_PARTNERS_MAX,
    FLUSH_P_M_AGENT,
    FLUSH_P_M_N,
    FLUSH_P_M_LEN,
    FLUSH_P_X_DATA,
    FLUSH_P_DURABLE,
    FLUSH_NPARAMS
};
#define FLUSH_DATA_PARAM FLUSH_P_X_DATA
/* Builds the parameters of pt_flush (exposed for tests): the keys known does not know are sent
 * and staged in it; the patterns' types are known's ("unknown" where it has none). Returns
 * FLUSH_NPARAMS. */
int flush_build(const agg_t *a, const char *group, bool durable, known_t *known, char **values,
                int *lengths);
void flush_build_free(char **values, int n);

#endif
