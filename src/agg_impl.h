/* agg_impl: the aggregate's representation, shared by agg.c (filling a batch: interning, event
 * records, hours, topics, offsets, dead letters, held events) and agg_read.c (reading it: the
 * events' tuples sorted in chunks into uses and pair sides). Private to those two files. */
#ifndef PT_AGG_IMPL_H
#define PT_AGG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "agg.h"

/* Interned strings live in an arena of chunks that agg_reset keeps for reuse. */
typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
} chunk_t;

typedef struct {
    uint64_t hash;
    const char *s;
    uint32_t len;
    uint32_t idx; /* order of interning: byidx[idx] is this string */
} istr_t;

typedef struct {
    istr_t *slots;
    size_t cap, n;
    istr_t *byidx; /* the n strings by idx (slots move when the table grows; these do not) */
    size_t vcap;
} itab_t;

/* An event that named patterns: its agent, time and distinct patterns (refs[ref .. ref + n),
 * pattern idx). The (pattern, agent) uses and the pairs are not aggregated as events come: the
 * iterators below sort the events' tuples when the batch is read, in chunks of bounded size.
 * An event takes 24 bytes and 4 a pattern, against about 200 for its share of the hash tables
 * this replaced (BENCHMARKS.md): a batch holds five times the events in the same memory, and a
 * flush's cost is mostly per row it writes (a pattern, an hour, a list), not per event. */
typedef struct {
    int64_t time_us;
    uint32_t agent; /* idx in strings (NO_AGENT: an event of pairs only, agg_add_pair) */
    uint32_t ref;
    uint32_t n;
    uint32_t flags; /* EV_USES: its uses count; EV_PAIRS: its pairs do */
} ev_t;

#define EV_USES 1u
#define EV_PAIRS 2u
#define NO_AGENT UINT32_MAX

typedef struct {
    int64_t hour;
    uint32_t pat;
    uint32_t count;
} hour_slot_t;

/* A held event: its record (ev[ev], flags 0 until it wins, so that no reader counts it) and
 * what it would add. */
typedef struct {
    agg_hold_t h;
    uint32_t ev;
    uint8_t flags;       /* the record's flags once it counts */
    uint8_t topic_flags; /* AGG_T_* */
} held_t;

struct agg {
    chunk_t *chunks;
    size_t arena_bytes;
    itab_t patterns; /* pattern IDs */
    itab_t strings;  /* agents and topics */
    ev_t *ev;
    size_t ev_n, ev_cap;
    uint32_t *refs;
    size_t refs_n, refs_cap;
    size_t sides_n; /* co-occurrence pair sides: n (n - 1) for each event with pairs */
    hour_slot_t *hours;
    size_t hours_cap, hours_n;
    agg_topic_t *topics;
    size_t topics_n, topics_cap;
    agg_offset_t *offsets;
    size_t offsets_n, offsets_cap;
    agg_dead_t *dead;
    size_t dead_n, dead_cap;
    size_t dead_bytes;
    held_t *held;
    size_t held_n, held_cap;
    size_t held_sides_n; /* the pair sides the held events will add if they count */
    size_t events;
};

/* Allocation that cannot fail: the aggregate is bounded by back-pressure, so running out of
 * memory here is fatal (abort). */
void *agg_xrealloc(void *p, size_t n);
void *agg_xcalloc(size_t n, size_t sz);

#endif
