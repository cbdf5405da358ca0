/* claims: event-ID deduplication's side of a flush. A batch's held events (agg.h) claim their
 * keys in PostgreSQL (pt_claim_events, sql/functions/pt_claim_events.sql) before the batch's
 * counts are built: an event counts when its Kafka position holds the claim on its key, and is a
 * duplicate when another position holds it, unexpired. A claim is committed on its own, before
 * the counts: it names the position, so a batch consumed again (after a crash, a failed flush
 * or a rebalance) finds its own claims and counts the same events. Builds the call's parameters
 * and reads its answer; does not send anything (flush.c does). */
#ifndef PT_CLAIMS_H
#define PT_CLAIMS_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "agg.h"
#include "pg.h"
#include "pg_buf.h"

#define CLAIMS_SQL "SELECT pt_claim_events($1, $2, $3, $4, $5, $6, $7, $8)"
#define CLAIMS_NPARAMS 8

typedef struct {
    pg_buf_t p[CLAIMS_NPARAMS];
    size_t *order; /* held index of each claim sent, singles then repeats */
    size_t n_single, n;
} claims_t;

void claims_init(claims_t *c);
void claims_free(claims_t *c);
/* Builds the parameters for the held events of a: keys that one event of the batch holds go in
 * the first four arrays; keys that several hold (copies within the batch) in the last four,
 * where PostgreSQL picks the one position that may count. */
void claims_build(claims_t *c, const agg_t *a, const char *values[CLAIMS_NPARAMS]);
/* Frees the parameters' text once the query holds its own copy (they are about 60 bytes a held
 * event, and a flush's own parameters are built next). */
void claims_drop_params(claims_t *c);
/* Reads pt_claim_events' answer (the ordinals of the claims held) into won (one per held event
 * of a). -1 with a message when the answer is not one. */
int claims_read(const claims_t *c, const PGresult *res, bool *won, char *err, size_t errlen);

#endif
