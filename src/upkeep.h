/* upkeep: periodic database maintenance on its own connection: rolls hourly buckets older than
 * retention_hourly_days up into daily buckets (pt_rollup, one transaction, totals unchanged),
 * a minute after start, then hourly; deletes expired event-ID claims (pt_prune_claims) in
 * bounded batches every few seconds (the folds are fold.c's). Owns its connection and timers. */
#ifndef PT_UPKEEP_H
#define PT_UPKEEP_H

#include <event2/event.h>
#include <stdint.h>

#include "config.h"

typedef struct upkeep upkeep_t;

upkeep_t *upkeep_new(struct event_base *base, const config_t *c);
void upkeep_free(upkeep_t *m);
/* How many rollups have moved buckets so far (cached answers about hours are stale after one). */
uint64_t upkeep_rollups(const upkeep_t *m);
/* Expired event-ID claims deleted so far. */
uint64_t upkeep_pruned_claims(const upkeep_t *m);

#endif
