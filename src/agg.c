#include "agg.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

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

/* The tables hold strings by their idx and times by their place in the batch's time table
 * (a tref), not as pointers, lengths, hashes and int64s: a slot is a quarter to two thirds of
 * that size, and a batch flushes more events in the same max_buffer_mb, which is what makes a
 * flush cheaper per event (fewer (pattern, agent) rows and pattern rows per event). Counts are
 * 32-bit: each event adds at most 1 to each slot (the ingest dedups an event's patterns) and
 * a batch holds fewer than AGG_MAX_EVENTS. count 0: an empty slot. */
typedef struct {
    uint32_t pat, agent; /* idx in patterns, strings */
    uint32_t count;
    uint32_t first, last; /* trefs */
} use_slot_t;

typedef struct {
    int64_t hour;
    uint32_t pat;
    uint32_t count;
} hour_slot_t;

/* i1's string below i2's */
typedef struct {
    uint32_t i1, i2;
    uint32_t count;
    uint32_t last; /* tref */
} pair_slot_t;

struct agg {
    chunk_t *chunks;
    size_t arena_bytes;
    itab_t patterns; /* pattern IDs */
    itab_t strings;  /* agents and topics */
    use_slot_t *uses;
    size_t uses_cap, uses_n;
    hour_slot_t *hours;
    size_t hours_cap, hours_n;
    pair_slot_t *pairs;
    size_t pairs_cap, pairs_n;
    /* The event times the slots refer to, in the order added; an event's uses and pairs share
     * one entry (consecutive equal times do). */
    int64_t *times;
    size_t times_n, times_cap;
    agg_topic_t *topics;
    size_t topics_n, topics_cap;
    agg_offset_t *offsets;
    size_t offsets_n, offsets_cap;
    agg_dead_t *dead;
    size_t dead_n, dead_cap;
    size_t dead_bytes;
    size_t events;
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        abort(); /* the aggregate is bounded by back-pressure; running out here is fatal */
    }
    return q;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *q = calloc(n, sz);
    if (q == NULL) {
        abort();
    }
    return q;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return h;
}

static char *arena_copy(agg_t *a, const char *s, size_t len)
{
    chunk_t *c = a->chunks;
    if (c == NULL || c->cap - c->used < len + 1) {
        size_t cap = len + 1 > 65536 ? len + 1 : 65536;
        /* Reuse a later kept chunk when it fits (chunks after the head are spare after reset). */
        chunk_t *nc = xcalloc(1, sizeof(chunk_t) + cap);
        nc->cap = cap;
        nc->next = a->chunks;
        a->chunks = nc;
        a->arena_bytes += cap;
        c = nc;
    }
    char *p = c->data + c->used;
    memcpy(p, s, len);
    p[len] = '\0';
    c->used += len + 1;
    return p;
}

static void itab_grow(itab_t *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 1024;
    istr_t *ns = xcalloc(ncap, sizeof(istr_t));
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].s != NULL) {
            size_t j = t->slots[i].hash & (ncap - 1);
            while (ns[j].s != NULL) {
                j = (j + 1) & (ncap - 1);
            }
            ns[j] = t->slots[i];
        }
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
}

static const istr_t *intern(agg_t *a, itab_t *t, const char *s, size_t len)
{
    if ((t->n + 1) * 10 >= t->cap * 7) {
        itab_grow(t);
    }
    uint64_t h = text_hash(s, len, 0);
    size_t j = h & (t->cap - 1);
    while (t->slots[j].s != NULL) {
        istr_t *e = &t->slots[j];
        if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0) {
            return e;
        }
        j = (j + 1) & (t->cap - 1);
    }
    if (t->n == t->vcap) {
        t->vcap = t->vcap ? t->vcap * 2 : 1024;
        t->byidx = xrealloc(t->byidx, t->vcap * sizeof(istr_t));
    }
    t->slots[j] = (istr_t){h, arena_copy(a, s, len), (uint32_t)len, (uint32_t)t->n};
    t->byidx[t->n++] = t->slots[j];
    return &t->slots[j];
}

agg_t *agg_new(void)
{
    return xcalloc(1, sizeof(agg_t));
}

static void free_dead(agg_t *a)
{
    for (size_t i = 0; i < a->dead_n; i++) {
        free(a->dead[i].detail);
        free(a->dead[i].payload);
    }
    a->dead_n = 0;
    a->dead_bytes = 0;
}

void agg_free(agg_t *a)
{
    if (a == NULL) {
        return;
    }
    free_dead(a);
    chunk_t *c = a->chunks;
    while (c != NULL) {
        chunk_t *n = c->next;
        free(c);
        c = n;
    }
    free(a->patterns.slots);
    free(a->patterns.byidx);
    free(a->strings.slots);
    free(a->strings.byidx);
    free(a->uses);
    free(a->hours);
    free(a->pairs);
    free(a->times);
    free(a->topics);
    free(a->offsets);
    free(a->dead);
    free(a);
}

void agg_reset(agg_t *a)
{
    free_dead(a);
    /* Keep one chunk; a batch that needed more will likely need it again, but an outlier batch
     * (e.g. after a long outage) should not pin its memory forever. */
    chunk_t *c = a->chunks;
    if (c != NULL) {
        chunk_t *rest = c->next;
        while (rest != NULL) {
            chunk_t *n = rest->next;
            a->arena_bytes -= rest->cap;
            free(rest);
            rest = n;
        }
        c->next = NULL;
        c->used = 0;
    }
    /* Tables shrink back to nothing when they grew large, otherwise they are cleared. */
    if (a->patterns.cap > 65536) {
        free(a->patterns.slots);
        a->patterns.slots = NULL;
        a->patterns.cap = 0;
        free(a->patterns.byidx);
        a->patterns.byidx = NULL;
        a->patterns.vcap = 0;
    } else if (a->patterns.slots) {
        memset(a->patterns.slots, 0, a->patterns.cap * sizeof(istr_t));
    }
    a->patterns.n = 0;
    if (a->strings.cap > 65536) {
        free(a->strings.slots);
        a->strings.slots = NULL;
        a->strings.cap = 0;
        free(a->strings.byidx);
        a->strings.byidx = NULL;
        a->strings.vcap = 0;
    } else if (a->strings.slots) {
        memset(a->strings.slots, 0, a->strings.cap * sizeof(istr_t));
    }
    a->strings.n = 0;
    if (a->uses_cap > 131072) {
        free(a->uses);
        a->uses = NULL;
        a->uses_cap = 0;
    } else if (a->uses) {
        memset(a->uses, 0, a->uses_cap * sizeof(use_slot_t));
    }
    a->uses_n = 0;
    if (a->hours_cap > 131072) {
        free(a->hours);
        a->hours = NULL;
        a->hours_cap = 0;
    } else if (a->hours) {
        memset(a->hours, 0, a->hours_cap * sizeof(hour_slot_t));
    }
    a->hours_n = 0;
    if (a->pairs_cap > 131072) {
        free(a->pairs);
        a->pairs = NULL;
        a->pairs_cap = 0;
    } else if (a->pairs) {
        memset(a->pairs, 0, a->pairs_cap * sizeof(pair_slot_t));
    }
    a->pairs_n = 0;
    if (a->times_cap > 1048576) {
        free(a->times);
        a->times = NULL;
        a->times_cap = 0;
    }
    a->times_n = 0;
    a->topics_n = 0;
    a->offsets_n = 0;
    a->events = 0;
}

static uint64_t use_hash(const agg_t *a, uint32_t pat, uint32_t agent)
{
    return mix(a->patterns.byidx[pat].hash, a->strings.byidx[agent].hash);
}

static uint64_t hour_hash(const agg_t *a, uint32_t pat, int64_t hour)
{
    return mix(a->patterns.byidx[pat].hash, (uint64_t)hour);
}

static void uses_grow(agg_t *a)
{
    size_t ncap = a->uses_cap ? a->uses_cap * 2 : 1024;
    use_slot_t *ns = xcalloc(ncap, sizeof(use_slot_t));
    for (size_t i = 0; i < a->uses_cap; i++) {
        if (a->uses[i].count != 0) {
            size_t j = use_hash(a, a->uses[i].pat, a->uses[i].agent) & (ncap - 1);
            while (ns[j].count != 0) {
                j = (j + 1) & (ncap - 1);
            }
            ns[j] = a->uses[i];
        }
    }
    free(a->uses);
    a->uses = ns;
    a->uses_cap = ncap;
}

static void hours_grow(agg_t *a)
{
    size_t ncap = a->hours_cap ? a->hours_cap * 2 : 1024;
    hour_slot_t *ns = xcalloc(ncap, sizeof(hour_slot_t));
    for (size_t i = 0; i < a->hours_cap; i++) {
        if (a->hours[i].count != 0) {
            size_t j = hour_hash(a, a->hours[i].pat, a->hours[i].hour) & (ncap - 1);
            while (ns[j].count != 0) {
                j = (j + 1) & (ncap - 1);
            }
            ns[j] = a->hours[i];
        }
    }
    free(a->hours);
    a->hours = ns;
    a->hours_cap = ncap;
}

static uint64_t pair_hash(const agg_t *a, uint32_t i1, uint32_t i2)
{
    return mix(a->patterns.byidx[i1].hash, a->patterns.byidx[i2].hash ^ 0x5bd1e995);
}

static void pairs_grow(agg_t *a)
{
    size_t ncap = a->pairs_cap ? a->pairs_cap * 2 : 1024;
    pair_slot_t *ns = xcalloc(ncap, sizeof(pair_slot_t));
    for (size_t i = 0; i < a->pairs_cap; i++) {
        if (a->pairs[i].count != 0) {
            size_t j = pair_hash(a, a->pairs[i].i1, a->pairs[i].i2) & (ncap - 1);
            while (ns[j].count != 0) {
                j = (j + 1) & (ncap - 1);
            }
            ns[j] = a->pairs[i];
        }
    }
    free(a->pairs);
    a->pairs = ns;
    a->pairs_cap = ncap;
}

int agg_bytes_cmp(const char *x, size_t lx, const char *y, size_t ly)
{
    int c = memcmp(x, y, lx < ly ? lx : ly);
    if (c != 0) {
        return c;
    }
    return lx < ly ? -1 : lx > ly ? 1 : 0;
}

/* The tref of time t: the last entry when it is t (an event's uses and pairs come one after
 * the other), else a new one. */
static uint32_t tref(agg_t *a, int64_t t)
{
    if (a->times_n > 0 && a->times[a->times_n - 1] == t) {
        return (uint32_t)(a->times_n - 1);
    }
    if (a->times_n == a->times_cap) {
        a->times_cap = a->times_cap ? a->times_cap * 2 : 1024;
        a->times = xrealloc(a->times, a->times_cap * sizeof(int64_t));
    }
    if (a->times_n >= UINT32_MAX) {
        abort(); /* 32 GB of times: far beyond any max_buffer_mb */
    }
    a->times[a->times_n] = t;
    return (uint32_t)a->times_n++;
}

/* Adds n to a 32-bit count. Below AGG_MAX_EVENTS events (ingest_accepting) a count cannot
 * get near UINT32_MAX; past it, stopping beats counting wrong. */
static void count_add(uint32_t *c, int64_t n)
{
    if (n < 0 || (uint64_t)n > UINT32_MAX - *c) {
        abort();
    }
    *c += (uint32_t)n;
}

static void add_pair_n(agg_t *a, const char *p1, size_t l1, const char *p2, size_t l2,
                       int64_t count, int64_t last_us)
{
    if (agg_bytes_cmp(p1, l1, p2, l2) > 0) {
        const char *t = p1;
        p1 = p2;
        p2 = t;
        size_t tl = l1;
        l1 = l2;
        l2 = tl;
    }
    uint32_t x = intern(a, &a->patterns, p1, l1)->idx;
    uint32_t y = intern(a, &a->patterns, p2, l2)->idx;
    if ((a->pairs_n + 1) * 10 >= a->pairs_cap * 7) {
        pairs_grow(a);
    }
    size_t j = pair_hash(a, x, y) & (a->pairs_cap - 1);
    while (a->pairs[j].count != 0) {
        pair_slot_t *e = &a->pairs[j];
        if (e->i1 == x && e->i2 == y) {
            count_add(&e->count, count);
            if (last_us > a->times[e->last]) {
                e->last = tref(a, last_us);
            }
            return;
        }
        j = (j + 1) & (a->pairs_cap - 1);
    }
    pair_slot_t *e = &a->pairs[j];
    *e = (pair_slot_t){x, y, 0, tref(a, last_us)};
    count_add(&e->count, count);
    a->pairs_n++;
}

void agg_add_pair(agg_t *a, const char *p1, size_t l1, const char *p2, size_t l2, int64_t time_us)
{
    add_pair_n(a, p1, l1, p2, l2, 1, time_us);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Adds `count` uses with the given time range; the shared body of agg_add_use and merge. */
static void add_use_range(agg_t *a, const char *pattern, size_t plen, const char *agent,
                          size_t alen, int64_t count, int64_t first_us, int64_t last_us)
{
    const istr_t *p = intern(a, &a->patterns, pattern, plen);
    const istr_t *g = intern(a, &a->strings, agent, alen);
    if ((a->uses_n + 1) * 10 >= a->uses_cap * 7) {
        uses_grow(a);
    }
    size_t j = use_hash(a, p->idx, g->idx) & (a->uses_cap - 1);
    while (a->uses[j].count != 0) {
        use_slot_t *u = &a->uses[j];
        if (u->pat == p->idx && u->agent == g->idx) {
            count_add(&u->count, count);
            if (first_us < a->times[u->first]) {
                u->first = tref(a, first_us);
            }
            if (last_us > a->times[u->last]) {
                u->last = tref(a, last_us);
            }
            return;
        }
        j = (j + 1) & (a->uses_cap - 1);
    }
    use_slot_t *u = &a->uses[j];
    *u = (use_slot_t){p->idx, g->idx, 0, tref(a, first_us), 0};
    u->last = tref(a, last_us);
    count_add(&u->count, count);
    a->uses_n++;
}

static void add_hour(agg_t *a, const char *pattern, size_t plen, int64_t hour, int64_t count)
{
    const istr_t *p = intern(a, &a->patterns, pattern, plen);
    if ((a->hours_n + 1) * 10 >= a->hours_cap * 7) {
        hours_grow(a);
    }
    size_t j = hour_hash(a, p->idx, hour) & (a->hours_cap - 1);
    while (a->hours[j].count != 0) {
        hour_slot_t *e = &a->hours[j];
        if (e->pat == p->idx && e->hour == hour) {
            count_add(&e->count, count);
            return;
        }
        j = (j + 1) & (a->hours_cap - 1);
    }
    hour_slot_t *e = &a->hours[j];
    *e = (hour_slot_t){hour, p->idx, 0};
    count_add(&e->count, count);
    a->hours_n++;
}

void agg_add_use(agg_t *a, const char *pattern, size_t plen, const char *agent, size_t alen,
                 int64_t time_us)
{
    add_use_range(a, pattern, plen, agent, alen, 1, time_us, time_us);
    add_hour(a, pattern, plen, floor_div(time_us, 3600LL * 1000000LL), 1);
}

static agg_topic_t *topic_slot(agg_t *a, const char *topic)
{
    const istr_t *t = intern(a, &a->strings, topic, strlen(topic));
    for (size_t i = 0; i < a->topics_n; i++) {
        if (a->topics[i].topic == t->s) {
            return &a->topics[i];
        }
    }
    if (a->topics_n == a->topics_cap) {
        a->topics_cap = a->topics_cap ? a->topics_cap * 2 : 8;
        a->topics = xrealloc(a->topics, a->topics_cap * sizeof(agg_topic_t));
    }
    agg_topic_t *e = &a->topics[a->topics_n++];
    *e = (agg_topic_t){.topic = t->s};
    return e;
}

void agg_add_topic(agg_t *a, const agg_topic_t *d)
{
    agg_topic_t *e = topic_slot(a, d->topic);
    e->events += d->events;
    e->without_patterns += d->without_patterns;
    e->dead_letters += d->dead_letters;
    e->flagged += d->flagged;
    e->with_patterns += d->with_patterns;
    e->over_pair_limit += d->over_pair_limit;
}

void agg_note_offset(agg_t *a, const char *topic, int32_t partition, int64_t expected, int64_t next)
{
    const istr_t *t = intern(a, &a->strings, topic, strlen(topic));
    for (size_t i = 0; i < a->offsets_n; i++) {
        agg_offset_t *o = &a->offsets[i];
        if (o->topic == t->s && o->partition == partition) {
            o->next = next;
            return;
        }
    }
    if (a->offsets_n == a->offsets_cap) {
        a->offsets_cap = a->offsets_cap ? a->offsets_cap * 2 : 16;
        a->offsets = xrealloc(a->offsets, a->offsets_cap * sizeof(agg_offset_t));
    }
    a->offsets[a->offsets_n++] = (agg_offset_t){t->s, partition, expected, next};
}

void agg_add_dead(agg_t *a, const char *topic, int32_t partition, int64_t offset,
                  const char *reason, const char *detail, const char *payload, size_t len,
                  size_t max_payload)
{
    const istr_t *t = intern(a, &a->strings, topic, strlen(topic));
    if (a->dead_n == a->dead_cap) {
        a->dead_cap = a->dead_cap ? a->dead_cap * 2 : 16;
        a->dead = xrealloc(a->dead, a->dead_cap * sizeof(agg_dead_t));
    }
    size_t keep = len < max_payload ? len : max_payload;
    agg_dead_t *d = &a->dead[a->dead_n++];
    d->topic = t->s;
    d->partition = partition;
    d->offset = offset;
    d->reason = reason;
    d->detail = NULL;
    if (detail != NULL) {
        size_t dl = strlen(detail);
        if (dl > 1024) {
            dl = 1024; /* details are messages, not payloads */
        }
        d->detail = xcalloc(1, dl + 1);
        memcpy(d->detail, detail, dl);
    }
    d->payload = xcalloc(1, keep + 1);
    if (keep > 0) {
        memcpy(d->payload, payload, keep);
    }
    d->payload_len = keep;
    d->payload_size = len;
    a->dead_bytes += keep + (d->detail ? strlen(d->detail) : 0) + sizeof(agg_dead_t);
}

void agg_merge(agg_t *dst, agg_t *src)
{
    for (size_t i = 0; i < src->uses_cap; i++) {
        const use_slot_t *u = &src->uses[i];
        if (u->count != 0) {
            const istr_t *p = &src->patterns.byidx[u->pat], *g = &src->strings.byidx[u->agent];
            add_use_range(dst, p->s, p->len, g->s, g->len, u->count, src->times[u->first],
                          src->times[u->last]);
        }
    }
    for (size_t i = 0; i < src->hours_cap; i++) {
        const hour_slot_t *h = &src->hours[i];
        if (h->count != 0) {
            const istr_t *p = &src->patterns.byidx[h->pat];
            add_hour(dst, p->s, p->len, h->hour, h->count);
        }
    }
    for (size_t i = 0; i < src->pairs_cap; i++) {
        const pair_slot_t *p = &src->pairs[i];
        if (p->count != 0) {
            const istr_t *x = &src->patterns.byidx[p->i1], *y = &src->patterns.byidx[p->i2];
            add_pair_n(dst, x->s, x->len, y->s, y->len, p->count, src->times[p->last]);
        }
    }
    for (size_t i = 0; i < src->topics_n; i++) {
        agg_add_topic(dst, &src->topics[i]);
    }
    for (size_t i = 0; i < src->offsets_n; i++) {
        const agg_offset_t *o = &src->offsets[i];
        agg_note_offset(dst, o->topic, o->partition, o->expected, o->next);
    }
    for (size_t i = 0; i < src->dead_n; i++) {
        agg_dead_t *d = &src->dead[i];
        /* Move, not copy: the payload buffers change owner. */
        const istr_t *t = intern(dst, &dst->strings, d->topic, strlen(d->topic));
        if (dst->dead_n == dst->dead_cap) {
            dst->dead_cap = dst->dead_cap ? dst->dead_cap * 2 : 16;
            dst->dead = xrealloc(dst->dead, dst->dead_cap * sizeof(agg_dead_t));
        }
        dst->dead[dst->dead_n] = *d;
        dst->dead[dst->dead_n].topic = t->s;
        dst->dead_n++;
        dst->dead_bytes += d->payload_len + sizeof(agg_dead_t);
        d->detail = NULL;
        d->payload = NULL;
    }
    dst->events += src->events;
    agg_reset(src);
}

size_t agg_events(const agg_t *a)
{
    return a->events;
}

size_t agg_patterns(const agg_t *a)
{
    return a->patterns.n;
}

/* What the batch holds, not what it has reserved: a reset keeps the tables' capacity (up to
 * 131072 slots each), and counting that would keep an empty batch "full" for a small
 * max_buffer_mb, pausing consumption for good. Tables count at twice their entries (their load
 * stays between 35 % and 70 %), strings once more for their byidx; the arena and the times at
 * their used bytes. */
size_t agg_bytes(const agg_t *a)
{
    size_t arena = 0;
    for (const chunk_t *c = a->chunks; c != NULL; c = c->next) {
        arena += c->used;
    }
    return arena + 3 * (a->patterns.n + a->strings.n) * sizeof(istr_t) +
           2 * a->uses_n * sizeof(use_slot_t) + 2 * a->hours_n * sizeof(hour_slot_t) +
           2 * a->pairs_n * sizeof(pair_slot_t) + a->times_n * sizeof(int64_t) + a->dead_bytes;
}

bool agg_empty(const agg_t *a)
{
    return a->events == 0 && a->offsets_n == 0 && a->topics_n == 0;
}

void agg_count_event(agg_t *a)
{
    a->events++;
}

void agg_each_use(const agg_t *a, void (*fn)(const agg_use_t *, void *), void *ud)
{
    for (size_t i = 0; i < a->uses_cap; i++) {
        const use_slot_t *s = &a->uses[i];
        if (s->count != 0) {
            const istr_t *p = &a->patterns.byidx[s->pat], *g = &a->strings.byidx[s->agent];
            agg_use_t u = {
                p->s, p->len, g->s, g->len, s->count, a->times[s->first], a->times[s->last]};
            fn(&u, ud);
        }
    }
}

void agg_each_hour(const agg_t *a, void (*fn)(const agg_hour_t *, void *), void *ud)
{
    for (size_t i = 0; i < a->hours_cap; i++) {
        const hour_slot_t *s = &a->hours[i];
        if (s->count != 0) {
            const istr_t *p = &a->patterns.byidx[s->pat];
            agg_hour_t h = {p->s, p->len, s->hour, s->count};
            fn(&h, ud);
        }
    }
}

void agg_each_pair(const agg_t *a, void (*fn)(const agg_pair_t *, void *), void *ud)
{
    for (size_t i = 0; i < a->pairs_cap; i++) {
        const pair_slot_t *p = &a->pairs[i];
        if (p->count != 0) {
            const istr_t *x = &a->patterns.byidx[p->i1], *y = &a->patterns.byidx[p->i2];
            agg_pair_t e = {x->s, x->len, y->s, y->len, p->count, a->times[p->last]};
            fn(&e, ud);
        }
    }
}

static int istr_bytes_cmp(const void *x, const void *y)
{
    const istr_t *a = x, *b = y;
    return agg_bytes_cmp(a->s, a->len, b->s, b->len);
}

typedef struct {
    uint64_t key; /* rank of the pattern, then of the partner */
    uint32_t slot;
} side_key_t;

static int side_key_cmp(const void *x, const void *y)
{
    uint64_t a = ((const side_key_t *)x)->key, b = ((const side_key_t *)y)->key;
    return a < b ? -1 : a > b;
}

/* Sorting integer ranks, not strings: the patterns are ranked once (a few thousand strings),
 * then each side is a 64-bit key. */
void agg_each_side(const agg_t *a, void (*fn)(const agg_side_t *, void *), void *ud)
{
    if (a->pairs_n == 0) {
        return;
    }
    size_t np = a->patterns.n;
    istr_t *order = xcalloc(np, sizeof *order); /* the patterns in byte order */
    uint32_t *rank = xcalloc(np, sizeof *rank);
    memcpy(order, a->patterns.byidx, np * sizeof *order);
    qsort(order, np, sizeof *order, istr_bytes_cmp);
    for (size_t r = 0; r < np; r++) {
        rank[order[r].idx] = (uint32_t)r;
    }
    side_key_t *v = xcalloc(2 * a->pairs_n, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < a->pairs_cap; i++) {
        const pair_slot_t *p = &a->pairs[i];
        if (p->count != 0) {
            uint64_t r1 = rank[p->i1], r2 = rank[p->i2];
            v[n++] = (side_key_t){r1 << 32 | r2, (uint32_t)i};
            v[n++] = (side_key_t){r2 << 32 | r1, (uint32_t)i};
        }
    }
    qsort(v, n, sizeof *v, side_key_cmp);
    for (size_t i = 0; i < n; i++) {
        const pair_slot_t *p = &a->pairs[v[i].slot];
        const istr_t *x = &order[v[i].key >> 32], *y = &order[v[i].key & 0xffffffffu];
        agg_side_t e = {x->s, y->s, x->len, y->len, p->count, a->times[p->last]};
        fn(&e, ud);
    }
    free(v);
    free(rank);
    free(order);
}

/* The ranks of an interning table's strings in byte order: rank[idx]. Owned by the caller. */
static uint32_t *ranks(const itab_t *t)
{
    istr_t *order = xcalloc(t->n ? t->n : 1, sizeof *order);
    uint32_t *rank = xcalloc(t->n ? t->n : 1, sizeof *rank);
    memcpy(order, t->byidx, t->n * sizeof *order);
    qsort(order, t->n, sizeof *order, istr_bytes_cmp);
    for (size_t r = 0; r < t->n; r++) {
        rank[order[r].idx] = (uint32_t)r;
    }
    free(order);
    return rank;
}

void agg_each_use_sorted(const agg_t *a, bool by_agent, void (*fn)(const agg_use_t *, void *),
                         void *ud)
{
    if (a->uses_n == 0) {
        return;
    }
    uint32_t *pr = ranks(&a->patterns), *sr = ranks(&a->strings);
    side_key_t *v = xcalloc(a->uses_n, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < a->uses_cap; i++) {
        const use_slot_t *u = &a->uses[i];
        if (u->count != 0) {
            uint64_t p = pr[u->pat], g = sr[u->agent];
            v[n++] = (side_key_t){by_agent ? g << 32 | p : p << 32 | g, (uint32_t)i};
        }
    }
    qsort(v, n, sizeof *v, side_key_cmp);
    for (size_t i = 0; i < n; i++) {
        const use_slot_t *s = &a->uses[v[i].slot];
        const istr_t *p = &a->patterns.byidx[s->pat], *g = &a->strings.byidx[s->agent];
        agg_use_t u = {p->s, p->len, g->s, g->len, s->count, a->times[s->first], a->times[s->last]};
        fn(&u, ud);
    }
    free(v);
    free(sr);
    free(pr);
}

void agg_each_pattern(const agg_t *a, void (*fn)(const char *, uint32_t, void *), void *ud)
{
    for (size_t i = 0; i < a->patterns.n; i++) {
        fn(a->patterns.byidx[i].s, a->patterns.byidx[i].len, ud);
    }
}

size_t agg_n_pairs(const agg_t *a)
{
    return a->pairs_n;
}

size_t agg_n_uses(const agg_t *a)
{
    return a->uses_n;
}

size_t agg_n_hours(const agg_t *a)
{
    return a->hours_n;
}

size_t agg_n_topics(const agg_t *a)
{
    return a->topics_n;
}

const agg_topic_t *agg_topic_at(const agg_t *a, size_t i)
{
    return &a->topics[i];
}

size_t agg_n_offsets(const agg_t *a)
{
    return a->offsets_n;
}

const agg_offset_t *agg_offset_at(const agg_t *a, size_t i)
{
    return &a->offsets[i];
}

size_t agg_n_dead(const agg_t *a)
{
    return a->dead_n;
}

const agg_dead_t *agg_dead_at(const agg_t *a, size_t i)
{
    return &a->dead[i];
}
