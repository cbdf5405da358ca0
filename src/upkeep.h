/* upkeep: periodic database maintenance on its own connection: rolls hourly buckets older than
 * retention_hourly_days up into daily buckets (pt_rollup, one transaction, totals unchanged),
 * a minute after start, then hourly; deletes expired event-ID claims (pt_prune_claims) and dead
 * letters past dead_letter_retention_days (pt_prune_dead_letters) in bounded batches every few
 * seconds, and counts the dead letters kept (the folds are fold.c's). Owns its connection and
 * timers. */
#ifndef PT_UPKEEP_H
#define PT_UPKEEP_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

typedef struct upkeep upkeep_t;

/* The dead letters kept, as last counted. */
typedef struct {
    bool counted;    /* false until the first count */
    long long rows;  /* in usage_dead_letters */
    double oldest;   /* created_at of the oldest, epoch seconds; -1: none */
    uint64_t pruned; /* deleted after dead_letter_retention_days by this engine */
} upkeep_dead_t;

upkeep_t *upkeep_new(struct event_base *base, const config_t *c);
void upkeep_free(upkeep_t *m);
/* How many rollups have moved buckets so far (cached answers about hours are stale after one). */
uint64_t upkeep_rollups(const upkeep_t *m);
/* Expired event-ID claims deleted so far. */
uint64_t upkeep_pruned_claims(const upkeep_t *m);
/* The dead letters kept (NULL without upkeep). */
const upkeep_dead_t *upkeep_dead_letters(const upkeep_t *m);

#endif
