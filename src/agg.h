/* agg: one batch in memory: each event that named patterns (its agent, time and distinct
 * patterns), counts per (pattern, hour), per-topic counters, the offset range each partition
 * advanced by, and dead letters. The (pattern, agent) uses and the co-occurring pairs are
 * aggregated when the batch is read (the iterators below sort the events' tuples in chunks of
 * bounded memory), not as events come. Owns copies of every string it holds. Does not know
 * about SQL, Kafka or Lua: the flush reads it through the iterators. Filling is agg.c's, reading
 * (the sorted iterators) agg_read.c's; agg_impl.h is the representation they share. */
#ifndef PT_AGG_H
#define PT_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agg agg_t;

/* Events a batch (or two merged after a failed flush) may hold: its counts are 32-bit, and
 * each event adds at most 1 to each (ingest_accepting stops consuming before this). */
#define AGG_MAX_EVENTS ((size_t)1 << 31)

/* Strings held by an aggregate are interned: equal strings share one pointer. */
typedef struct {
    const char *pattern;
    uint32_t pattern_len;
    const char *agent;
    uint32_t agent_len;
    int64_t count;
    int64_t first_us;
    int64_t last_us;
} agg_use_t;

typedef struct {
    const char *pattern;
    uint32_t pattern_len;
    int64_t hour; /* hours since the epoch, UTC */
    int64_t count;
} agg_hour_t;

typedef struct {
    const char *pattern_1; /* pattern_1 < pattern_2 in byte order */
    uint32_t len_1;
    const char *pattern_2;
    uint32_t len_2;
    int64_t count;
    int64_t last_us;
} agg_pair_t;

typedef struct {
    const char *topic;
    int64_t events;
    int64_t without_patterns;
    int64_t dead_letters;
    int64_t flagged;
    int64_t with_patterns;
    int64_t over_pair_limit;
    int64_t duplicates; /* copies of events counted before (event-ID deduplication) */
} agg_topic_t;

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t expected; /* next_offset stored in PostgreSQL before this batch; -1 = no row */
    int64_t next;     /* next_offset after this batch */
} agg_offset_t;

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *reason;  /* static string */
    char *detail;        /* owned, may be NULL */
    char *payload;       /* owned, truncated copy; NULL when none is kept (max_payload 0) */
    size_t payload_len;  /* bytes kept */
    size_t payload_size; /* original size */
    uint8_t hash[16];    /* XXH3-128 of the whole payload (canonical, big-endian) */
} agg_dead_t;

agg_t *agg_new(void);
void agg_free(agg_t *a);
/* Empties the aggregate, keeping its allocations for reuse. */
void agg_reset(agg_t *a);

typedef struct {
    const char *s;
    size_t len;
} agg_ref_t;
/* One event: its agent used each of the n patterns (distinct) at time_us; with pairs, every
 * pair of them co-occurred. Copies the strings. */
void agg_add_event(agg_t *a, const char *agent, size_t alen, int64_t time_us,
                   const agg_ref_t *patterns, size_t n, bool pairs);
/* One use of a pattern by an agent at an event time (an event of one pattern). */
void agg_add_use(agg_t *a, const char *pattern, size_t plen, const char *agent, size_t alen,
                 int64_t time_us);
/* One event referenced both patterns (given in either order), counted as a pair only: for
 * tests that build pairs without uses. */
void agg_add_pair(agg_t *a, const char *p1, size_t l1, const char *p2, size_t l2, int64_t time_us);
/* Adds to a topic's counters. */
void agg_add_topic(agg_t *a, const agg_topic_t *delta);
/* Records that a partition advanced to `next`. `expected` is used only when the partition is
 * not yet in this batch: it is the offset the batch expects to find in PostgreSQL. */
void agg_note_offset(agg_t *a, const char *topic, int32_t partition, int64_t expected,
                     int64_t next);
/* Records a dead letter; keeps at most max_payload bytes of the payload. */
void agg_add_dead(agg_t *a, const char *topic, int32_t partition, int64_t offset,
                  const char *reason, const char *detail, const char *payload, size_t len,
                  size_t max_payload);
/* Event-ID deduplication. An event of a deduplicated topic that has an ID is held: recorded but
 * not counted until its claim is decided (src/flush.c claims a batch's held events in
 * PostgreSQL before it builds the counts). */
typedef struct {
    uint8_t key[16];   /* 128-bit hash of the topic and the event ID */
    const char *topic; /* interned */
    int32_t partition;
    int64_t offset;
    int64_t window_s;
} agg_hold_t;
/* What a held event adds to its topic's counters when it counts. */
#define AGG_T_WITH 1u
#define AGG_T_WITHOUT 2u
#define AGG_T_FLAGGED 4u
#define AGG_T_OVER 8u
void agg_hold_event(agg_t *a, const agg_hold_t *h, const char *agent, size_t alen, int64_t time_us,
                    const agg_ref_t *patterns, size_t n, bool pairs, unsigned topic_flags);
size_t agg_n_held(const agg_t *a);
const agg_hold_t *agg_held_at(const agg_t *a, size_t i);
/* Decides every held event: those with won[i] count as if just added, the others are counted
 * only as their topic's duplicates. Empties the held list. */
void agg_release_held(agg_t *a, const bool *won);
/* Folds `src` (the newer batch) into `dst` (the older one) and empties src: counts add up,
 * first/last times widen, offsets keep dst's expected and take src's next. */
void agg_merge(agg_t *dst, agg_t *src);

size_t agg_events(const agg_t *a);
size_t agg_patterns(const agg_t *a);
/* Bytes of data the batch holds (for max_buffer_mb): 0 after agg_reset, whatever capacity the
 * reset kept. */
size_t agg_bytes(const agg_t *a);
/* Pattern references of the events held (before aggregation). */
size_t agg_refs(const agg_t *a);
/* Co-occurrence pair sides added (each pair of an event twice, before aggregation). */
size_t agg_sides(const agg_t *a);
bool agg_empty(const agg_t *a);
/* Adds one to the aggregate's event counter (events are counted by the caller: an event may
 * produce several uses or none). */
void agg_count_event(agg_t *a);

/* Iterators: call fn for each element; order is unspecified unless said. The element lasts for
 * the call: copy it to keep it. Those of uses, pairs and sides aggregate the events as they go
 * (sorting them in chunks of at most 8 MB on the calling thread). */
void agg_each_use(const agg_t *a, void (*fn)(const agg_use_t *, void *), void *ud);
/* The uses ordered by pattern then agent (by_agent: agent then pattern), in byte order: a
 * flush's partner lists of patterns and of agents. */
void agg_each_use_sorted(const agg_t *a, bool by_agent, void (*fn)(const agg_use_t *, void *),
                         void *ud);
/* Each distinct pattern (interned: one pointer per pattern for the aggregate's life). */
void agg_each_pattern(const agg_t *a, void (*fn)(const char *, uint32_t, void *), void *ud);
void agg_each_hour(const agg_t *a, void (*fn)(const agg_hour_t *, void *), void *ud);
/* Byte order, as PostgreSQL's "C" collation compares. */
int agg_bytes_cmp(const char *x, size_t lx, const char *y, size_t ly);
void agg_each_pair(const agg_t *a, void (*fn)(const agg_pair_t *, void *), void *ud);
/* A pair as one of its patterns sees it. */
typedef struct {
    const char *pattern, *partner;
    uint32_t pattern_len, partner_len;
    int64_t count, last_us;
} agg_side_t;
/* Each pair twice, once under each of its patterns, ordered by pattern then partner in byte
 * order: the partner lists of a flush (cooc.h). */
void agg_each_side(const agg_t *a, void (*fn)(const agg_side_t *, void *), void *ud);
/* Distinct pairs and (pattern, agent) uses: an aggregation each (tests, checks). */
size_t agg_n_pairs(const agg_t *a);
size_t agg_n_uses(const agg_t *a);
size_t agg_n_hours(const agg_t *a);
size_t agg_n_topics(const agg_t *a);
const agg_topic_t *agg_topic_at(const agg_t *a, size_t i);
size_t agg_n_offsets(const agg_t *a);
const agg_offset_t *agg_offset_at(const agg_t *a, size_t i);
size_t agg_n_dead(const agg_t *a);
const agg_dead_t *agg_dead_at(const agg_t *a, size_t i);

#endif
