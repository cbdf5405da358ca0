/* merge: folds the co-occurrence rows flushes leave pending (pattern_cooccurrence_pending) into
 * each pattern's merged partner list (pattern_cooccurrence_merged, sql/012) and keeps
 * pattern_cooccurrence_top current, one transaction at a time on a connection of its own. The
 * lists are merged on a worker thread (cooc.c); PostgreSQL only stores them. Owns its
 * connection, timer and thread; knows nothing of flushes (they only add pending rows) or of
 * answers (they read merged and pending rows alike).
 *
 * Which patterns a merge takes: those with many pending rows (each costs every answer about the
 * pattern a row to read), those whose pending lists reach half their merged list (a merge
 * rewrites the whole list, so rewriting it for a few new partners would cost more than the
 * partners), and all of them once no flush has added any since the previous merge. */
#ifndef PT_MERGE_H
#define PT_MERGE_H

#include <event2/event.h>
#include <stdint.h>

#include "config.h"

typedef struct merge merge_t;

typedef struct {
    int64_t transactions;    /* merges committed */
    int64_t patterns;        /* patterns whose rows were merged */
    int64_t entries_in;      /* pending entries taken */
    int64_t pending_entries; /* left pending, as of the last plan */
} merge_stats_t;

/* The engine's merge: every cooccurrence_merge_ms (0: none, the setting is looked at every
 * second), back to back while behind. */
merge_t *merge_new(struct event_base *base, const config_t *c);
/* Merges everything pending (transactions of at most the size budget each), or with
 * max_patterns > 0 the pending rows of at most that many patterns in one transaction, then
 * calls done (rc 0, or -1 with err) once. For `patterntrack
 * merge-cooccurrence`. */
typedef void (*merge_done_fn)(int rc, const char *err, const merge_stats_t *st, void *ud);
merge_t *merge_drain_new(struct event_base *base, const config_t *c, int64_t max_patterns,
                         merge_done_fn done, void *ud);
void merge_free(merge_t *m);
const merge_stats_t *merge_stats(const merge_t *m);

#endif
