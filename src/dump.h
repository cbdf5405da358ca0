/* dump: every partner list in the database (pattern_lists, pattern_lists_pending, agent_lists,
 * agent_lists_pending: a pattern's agents and co-occurring patterns, an agent's patterns),
 * decoded by the engine's own reader (cooc.h) into rows of text that PostgreSQL's COPY reads:
 * for checks and exports that SQL's decoder (pt_list_entries) would take microseconds an
 * entry for. One entry per line, tab-separated, COPY-escaped:
 *
 *   kind (agents | partners | patterns)  src (folded | pending)  rid (the row: the owner, or
 *   the pending row's ctid)  owner  n  n_low  ord (1-based)  partner  count  first_us  last_us
 *
 * A blocking libpq connection of its own, for `patterntrack dump-lists` (not the engine's loop).
 * Owns nothing after it returns. */
#ifndef PT_DUMP_H
#define PT_DUMP_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* snapshot: a snapshot exported by another transaction (pg_export_snapshot()) to read, so that
 * the rows are that transaction's; NULL for a snapshot of its own. 0, or -1 with err. */
int dump_lists(const config_t *c, const char *snapshot, FILE *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
