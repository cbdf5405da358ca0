/* known: what the engine knows the database holds, so that a flush need not ask it again:
 *   - the (pattern, agent) keys committed to pattern_agents (a key once there stays there), so
 *     a flush sends only the keys it has not seen committed (pt_flush inserts those and learns
 *     which are new);
 *   - each pattern's pattern_type as last read, which the flush needs to add an agent's uses to
 *     agent_type_usage (a registration may change a type: pt_flush then fails with PT410 and
 *     the types are read again).
 * Bounded: past max_keys keys (or as many patterns) it forgets everything and learns again,
 * which costs only lookups. Owns copies of its strings. Not thread-safe: the flush's builder
 * thread and its loop side take turns (flush.c). Knows nothing of SQL. */
#ifndef PT_KNOWN_H
#define PT_KNOWN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct known known_t;

known_t *known_new(size_t max_keys);
void known_free(known_t *k);

/* True when the key is known to be committed. */
bool known_key(known_t *k, const char *pattern, size_t plen, const char *agent, size_t alen);
/* Notes a key the flush being built sends; known_commit makes the noted keys known (the flush
 * committed), known_drop forgets them (it did not). */
void known_stage(known_t *k, const char *pattern, size_t plen, const char *agent, size_t alen);
void known_commit(known_t *k);
void known_drop(known_t *k);

/* The pattern's type as last read ("unknown" for a pattern without one or not in the catalog),
 * or NULL when it was not read. The string lasts until the next known_* call that adds. */
const char *known_type(known_t *k, const char *pattern, size_t plen, size_t *tlen);
void known_set_type(known_t *k, const char *pattern, size_t plen, const char *type, size_t tlen);
/* Forgets every type (after a PT410). */
void known_forget_types(known_t *k);

size_t known_n_keys(const known_t *k);
/* Bytes it holds. */
size_t known_bytes(const known_t *k);

#endif
