/* fold: merges the partner lists flushes leave pending into each owner's folded list, one
 * transaction at a time on a connection of its own: a pattern's (pattern_lists_pending into
 * pattern_lists: its agents and its co-occurring patterns) and an agent's (agent_lists_pending
 * into agent_lists: its patterns). Keeps pattern_cooccurrence_top current in the same
 * transaction. The lists are merged on a worker thread (fold_job.c, with cooc.c's merge);
 * PostgreSQL only stores them.
 * Owns its connection, timer and thread; knows nothing of flushes (they only add pending rows)
 * or of answers (they read folded and pending rows alike, so a fold changes no answer).
 *
 * Which owners a fold takes: those with many pending rows (each costs every answer about the
 * owner a row to read), those whose pending lists reach half their folded lists (a fold
 * rewrites the whole list, so rewriting it for a few new entries would cost more than the
 * entries), and all of them once no flush has added any since the previous fold. */
#ifndef PT_FOLD_H
#define PT_FOLD_H

#include <event2/event.h>
#include <stdint.h>

#include "config.h"

typedef struct fold fold_t;

typedef struct {
    int64_t transactions;    /* folds committed */
    int64_t owners;          /* patterns and agents whose rows were folded */
    int64_t entries_in;      /* pending entries taken */
    int64_t pending_entries; /* left pending, as of the last plan */
} fold_stats_t;

/* The engine's fold: every fold_interval_ms (0: none, the setting is looked at every second),
 * back to back while behind. */
fold_t *fold_new(struct event_base *base, const config_t *c);
/* Folds everything pending (transactions of at most the size budget each), or with
 * max_owners > 0 the pending rows of at most that many owners in one transaction, then calls
 * done (rc 0, or -1 with err) once. For `patterntrack fold`. */
typedef void (*fold_done_fn)(int rc, const char *err, const fold_stats_t *st, void *ud);
fold_t *fold_drain_new(struct event_base *base, const config_t *c, int64_t max_owners,
                       fold_done_fn done, void *ud);
void fold_free(fold_t *m);
const fold_stats_t *fold_stats(const fold_t *m);

#endif
