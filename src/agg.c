#include "agg.h"

#include <xxhash.h>

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
    free(a->ev);
    free(a->refs);
    free(a->hours);
    free(a->topics);
    free(a->offsets);
    free(a->dead);
    free(a->held);
    free(a);
}

static void itab_reset(itab_t *t)
{
    /* Tables shrink back to nothing when they grew large, otherwise they are cleared. */
    if (t->cap > 65536) {
        free(t->slots);
        t->slots = NULL;
        t->cap = 0;
        free(t->byidx);
        t->byidx = NULL;
        t->vcap = 0;
    } else if (t->slots) {
        memset(t->slots, 0, t->cap * sizeof(istr_t));
    }
    t->n = 0;
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
    itab_reset(&a->patterns);
    itab_reset(&a->strings);
    if (a->ev_cap > 65536) {
        free(a->ev);
        a->ev = NULL;
        a->ev_cap = 0;
    }
    a->ev_n = 0;
    if (a->refs_cap > 262144) {
        free(a->refs);
        a->refs = NULL;
        a->refs_cap = 0;
    }
    a->refs_n = 0;
    a->sides_n = 0;
    if (a->hours_cap > 131072) {
        free(a->hours);
        a->hours = NULL;
        a->hours_cap = 0;
    } else if (a->hours) {
        memset(a->hours, 0, a->hours_cap * sizeof(hour_slot_t));
    }
    a->hours_n = 0;
    a->topics_n = 0;
    a->offsets_n = 0;
    if (a->held_cap > 65536) {
        free(a->held);
        a->held = NULL;
        a->held_cap = 0;
    }
    a->held_n = 0;
    a->held_sides_n = 0;
    a->events = 0;
}

static uint64_t hour_hash(const agg_t *a, uint32_t pat, int64_t hour)
{
    return mix(a->patterns.byidx[pat].hash, (uint64_t)hour);
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

int agg_bytes_cmp(const char *x, size_t lx, const char *y, size_t ly)
{
    int c = memcmp(x, y, lx < ly ? lx : ly);
    if (c != 0) {
        return c;
    }
    return lx < ly ? -1 : lx > ly ? 1 : 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Adds n to an hour's 32-bit count. Below AGG_MAX_EVENTS events (ingest_accepting) a count
 * cannot get near UINT32_MAX; past it, stopping beats counting wrong. */
static void add_hour(agg_t *a, uint32_t pat, int64_t hour, int64_t count)
{
    if ((a->hours_n + 1) * 10 >= a->hours_cap * 7) {
        hours_grow(a);
    }
    size_t j = hour_hash(a, pat, hour) & (a->hours_cap - 1);
    while (a->hours[j].count != 0) {
        hour_slot_t *e = &a->hours[j];
        if (e->pat == pat && e->hour == hour) {
            break;
        }
        j = (j + 1) & (a->hours_cap - 1);
    }
    hour_slot_t *e = &a->hours[j];
    if (e->count == 0) {
        *e = (hour_slot_t){hour, pat, 0};
        a->hours_n++;
    }
    if (count < 0 || (uint64_t)count > UINT32_MAX - e->count) {
        abort();
    }
    e->count += (uint32_t)count;
}

/* Appends an event record of the given patterns (already interned). */
static void push_event(agg_t *a, uint32_t agent, int64_t time_us, const uint32_t *pats, size_t n,
                       uint32_t flags)
{
    if (a->ev_n == a->ev_cap) {
        a->ev_cap = a->ev_cap ? a->ev_cap * 2 : 1024;
        a->ev = xrealloc(a->ev, a->ev_cap * sizeof(ev_t));
    }
    if (a->refs_n + n > a->refs_cap) {
        size_t cap = a->refs_cap ? a->refs_cap * 2 : 4096;
        while (cap < a->refs_n + n) {
            cap *= 2;
        }
        a->refs = xrealloc(a->refs, cap * sizeof(uint32_t));
        a->refs_cap = cap;
    }
    if (a->refs_n + n > UINT32_MAX) {
        abort(); /* 16 GB of references: far beyond any max_buffer_mb */
    }
    if (n > 0) {
        memcpy(a->refs + a->refs_n, pats, n * sizeof(uint32_t));
    }
    a->ev[a->ev_n++] = (ev_t){time_us, agent, (uint32_t)a->refs_n, (uint32_t)n, flags};
    a->refs_n += n;
    if (flags & EV_PAIRS) {
        a->sides_n += n * (n - 1);
    }
}

void agg_add_event(agg_t *a, const char *agent, size_t alen, int64_t time_us,
                   const agg_ref_t *patterns, size_t n, bool pairs)
{
    if (n == 0) {
        return;
    }
    uint32_t g = intern(a, &a->strings, agent, alen)->idx;
    uint32_t stack[64];
    uint32_t *pats = n <= 64 ? stack : xcalloc(n, sizeof(uint32_t));
    int64_t hour = floor_div(time_us, 3600LL * 1000000LL);
    for (size_t i = 0; i < n; i++) {
        pats[i] = intern(a, &a->patterns, patterns[i].s, patterns[i].len)->idx;
        add_hour(a, pats[i], hour, 1);
    }
    push_event(a, g, time_us, pats, n, EV_USES | (pairs && n >= 2 ? EV_PAIRS : 0));
    if (pats != stack) {
        free(pats);
    }
}

void agg_add_use(agg_t *a, const char *pattern, size_t plen, const char *agent, size_t alen,
                 int64_t time_us)
{
    agg_ref_t r = {pattern, plen};
    agg_add_event(a, agent, alen, time_us, &r, 1, false);
}

void agg_add_pair(agg_t *a, const char *p1, size_t l1, const char *p2, size_t l2, int64_t time_us)
{
    uint32_t pats[2] = {intern(a, &a->patterns, p1, l1)->idx, intern(a, &a->patterns, p2, l2)->idx};
    if (pats[0] == pats[1]) {
        return; /* a pattern is not its own partner */
    }
    push_event(a, NO_AGENT, time_us, pats, 2, EV_PAIRS);
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
    e->duplicates += d->duplicates;
}

static void push_held(agg_t *a, const agg_hold_t *h, uint32_t ev, uint8_t flags,
                      uint8_t topic_flags)
{
    if (a->held_n == a->held_cap) {
        a->held_cap = a->held_cap ? a->held_cap * 2 : 1024;
        a->held = xrealloc(a->held, a->held_cap * sizeof(held_t));
    }
    held_t *e = &a->held[a->held_n++];
    e->h = *h;
    e->h.topic = intern(a, &a->strings, h->topic, strlen(h->topic))->s;
    e->ev = ev;
    e->flags = flags;
    e->topic_flags = topic_flags;
}

void agg_hold_event(agg_t *a, const agg_hold_t *h, const char *agent, size_t alen, int64_t time_us,
                    const agg_ref_t *patterns, size_t n, bool pairs, unsigned topic_flags)
{
    uint32_t g = intern(a, &a->strings, agent, alen)->idx;
    uint32_t stack[64];
    uint32_t *pats = n <= 64 ? stack : xcalloc(n, sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        pats[i] = intern(a, &a->patterns, patterns[i].s, patterns[i].len)->idx;
    }
    if (a->ev_n >= UINT32_MAX) {
        abort();
    }
    uint32_t ev = (uint32_t)a->ev_n;
    push_event(a, g, time_us, pats, n, 0);
    if (pats != stack) {
        free(pats);
    }
    uint8_t flags = n == 0 ? 0 : (uint8_t)(EV_USES | (pairs && n >= 2 ? EV_PAIRS : 0));
    push_held(a, h, ev, flags, (uint8_t)topic_flags);
    if (flags & EV_PAIRS) {
        a->held_sides_n += n * (n - 1); /* counted in agg_bytes as if they counted */
    }
}

size_t agg_n_held(const agg_t *a)
{
    return a->held_n;
}

const agg_hold_t *agg_held_at(const agg_t *a, size_t i)
{
    return &a->held[i].h;
}

void agg_release_held(agg_t *a, const bool *won)
{
    for (size_t i = 0; i < a->held_n; i++) {
        const held_t *e = &a->held[i];
        agg_topic_t d = {.topic = e->h.topic};
        if (won[i]) {
            ev_t *ev = &a->ev[e->ev];
            ev->flags = e->flags;
            int64_t hour = floor_div(ev->time_us, 3600LL * 1000000LL);
            for (uint32_t k = 0; k < ev->n && (e->flags & EV_USES); k++) {
                add_hour(a, a->refs[ev->ref + k], hour, 1);
            }
            if (e->flags & EV_PAIRS) {
                a->sides_n += (size_t)ev->n * (ev->n - 1);
            }
            d.with_patterns = (e->topic_flags & AGG_T_WITH) != 0;
            d.without_patterns = (e->topic_flags & AGG_T_WITHOUT) != 0;
            d.flagged = (e->topic_flags & AGG_T_FLAGGED) != 0;
            d.over_pair_limit = (e->topic_flags & AGG_T_OVER) != 0;
        } else {
            d.duplicates = 1;
        }
        agg_add_topic(a, &d);
    }
    a->held_n = 0;
    a->held_sides_n = 0;
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
    /* max_payload 0: no byte of it is kept (payloads may carry user text), only its size and
     * hash, which tell a payload found again (in Kafka, say) from another */
    d->payload = NULL;
    if (max_payload > 0) {
        d->payload = xcalloc(1, keep + 1);
        if (keep > 0) {
            memcpy(d->payload, payload, keep);
        }
    }
    d->payload_len = d->payload ? keep : 0;
    d->payload_size = len;
    XXH128_canonical_t h;
    XXH128_canonicalFromHash(&h, XXH3_128bits(payload, len));
    memcpy(d->hash, h.digest, sizeof d->hash);
    a->dead_bytes += keep + (d->detail ? strlen(d->detail) : 0) + sizeof(agg_dead_t);
}

void agg_merge(agg_t *dst, agg_t *src)
{
    uint32_t stack[64];
    size_t ev_base = dst->ev_n;
    for (size_t i = 0; i < src->ev_n; i++) {
        const ev_t *e = &src->ev[i];
        uint32_t *pats = e->n <= 64 ? stack : xcalloc(e->n, sizeof(uint32_t));
        for (uint32_t k = 0; k < e->n; k++) {
            const istr_t *p = &src->patterns.byidx[src->refs[e->ref + k]];
            pats[k] = intern(dst, &dst->patterns, p->s, p->len)->idx;
        }
        uint32_t g = NO_AGENT;
        if (e->agent != NO_AGENT) {
            const istr_t *s = &src->strings.byidx[e->agent];
            g = intern(dst, &dst->strings, s->s, s->len)->idx;
        }
        push_event(dst, g, e->time_us, pats, e->n, e->flags);
        if (pats != stack) {
            free(pats);
        }
    }
    for (size_t i = 0; i < src->hours_cap; i++) {
        const hour_slot_t *h = &src->hours[i];
        if (h->count != 0) {
            const istr_t *p = &src->patterns.byidx[h->pat];
            add_hour(dst, intern(dst, &dst->patterns, p->s, p->len)->idx, h->hour, h->count);
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
    for (size_t i = 0; i < src->held_n; i++) {
        const held_t *e = &src->held[i];
        push_held(dst, &e->h, (uint32_t)(ev_base + e->ev), e->flags, e->topic_flags);
    }
    dst->held_sides_n += src->held_sides_n;
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

/* What the batch holds, not what it has reserved: a reset keeps some capacity, and counting
 * that would keep an empty batch "full" for a small max_buffer_mb, pausing consumption for
 * good. The hours' table counts at twice its entries (its load stays between 35 % and 70 %),
 * strings once more for their byidx; the records and the arena at their used bytes. */
size_t agg_bytes(const agg_t *a)
{
    size_t arena = 0;
    for (const chunk_t *c = a->chunks; c != NULL; c = c->next) {
        arena += c->used;
    }
    /* The batch's own memory, and the parameters its flush will be sent with (the builder's
     * and libpq's copies, which are transient but are what the peak is made of): measured at
     * the benchmark's load, about 12 bytes a reference and 10 a pair side before they are
     * aggregated (flush's debug log prints both). */
    return arena + 3 * (a->patterns.n + a->strings.n) * sizeof(istr_t) + a->ev_n * sizeof(ev_t) +
           a->refs_n * sizeof(uint32_t) + 2 * a->hours_n * sizeof(hour_slot_t) + a->dead_bytes +
           /* a held event's claim parameters (about 60 bytes, text) live before the flush's
            * own, which are larger, are built: the record is what adds to the peak */
           a->held_n * (sizeof(held_t) + sizeof(size_t)) +
           2 * (12 * a->refs_n + 10 * (a->sides_n + a->held_sides_n));
}

size_t agg_sides(const agg_t *a)
{
    return a->sides_n;
}

size_t agg_refs(const agg_t *a)
{
    return a->refs_n;
}

bool agg_empty(const agg_t *a)
{
    return a->events == 0 && a->offsets_n == 0 && a->topics_n == 0;
}

void agg_count_event(agg_t *a)
{
    a->events++;
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

void agg_each_pattern(const agg_t *a, void (*fn)(const char *, uint32_t, void *), void *ud)
{
    for (size_t i = 0; i < a->patterns.n; i++) {
        fn(a->patterns.byidx[i].s, a->patterns.byidx[i].len, ud);
    }
}

/* ---- reading the events: tuples sorted in chunks ---- */

static int istr_bytes_cmp(const void *x, const void *y)
{
    const istr_t *a = x, *b = y;
    return agg_bytes_cmp(a->s, a->len, b->s, b->len);
}

/* The ranks of an interning table's strings in byte order: rank[idx], and the strings in that
 * order (order[rank]). Owned by the caller. */
static uint32_t *ranks(const itab_t *t, istr_t **order_out)
{
    istr_t *order = xcalloc(t->n ? t->n : 1, sizeof *order);
    uint32_t *rank = xcalloc(t->n ? t->n : 1, sizeof *rank);
    if (t->n > 0) { /* byidx is NULL in an empty table */
        memcpy(order, t->byidx, t->n * sizeof *order);
        qsort(order, t->n, sizeof *order, istr_bytes_cmp);
    }
    for (size_t r = 0; r < t->n; r++) {
        rank[order[r].idx] = (uint32_t)r;
    }
    *order_out = order;
    return rank;
}

/* What a reading pass makes of each event: a use of each pattern keyed (pattern, agent) or
 * (agent, pattern), or a side of each pair keyed (pattern, partner), ranks in byte order. */
typedef enum { T_USE_BY_PATTERN, T_USE_BY_AGENT, T_SIDE } tkind_t;

typedef struct {
    uint64_t key; /* leading rank << 32 | the other rank */
    int64_t time_us;
} tuple_t;

/* Tuples a chunk holds at most: 16 bytes each, twice (the sort's second buffer), 8 MB. */
#define CHUNK_TUPLES ((size_t)1 << 18)

/* LSD radix sort by key, a byte at a time, skipping the bytes every key shares. */
static void radix_sort(tuple_t *v, tuple_t *tmp, size_t n)
{
    static __thread size_t hist[8][256];
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = v[i].key;
        for (int b = 0; b < 8; b++) {
            hist[b][(k >> (8 * b)) & 255]++;
        }
    }
    tuple_t *src = v, *dst = tmp;
    for (int b = 0; b < 8; b++) {
        if (n == 0 || hist[b][(src[0].key >> (8 * b)) & 255] == n) {
            continue; /* every key has this byte */
        }
        size_t pos = 0;
        for (int d = 0; d < 256; d++) {
            size_t c = hist[b][d];
            hist[b][d] = pos;
            pos += c;
        }
        for (size_t i = 0; i < n; i++) {
            dst[hist[b][(src[i].key >> (8 * b)) & 255]++] = src[i];
        }
        tuple_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != v) {
        memcpy(v, src, n * sizeof *v);
    }
}

typedef struct {
    const agg_t *a;
    tkind_t kind;
    uint32_t *prank, *srank; /* pattern and string ranks */
    istr_t *porder, *sorder; /* strings by rank */
} reader_t;

/* Leading rank of the tuples an event makes from its k-th pattern (the agent's for uses by
 * agent: one leading rank for all of them). */
static void reader_init(reader_t *r, const agg_t *a, tkind_t kind)
{
    r->a = a;
    r->kind = kind;
    r->prank = ranks(&a->patterns, &r->porder);
    r->srank = ranks(&a->strings, &r->sorder);
}

static void reader_free(reader_t *r)
{
    free(r->prank);
    free(r->srank);
    free(r->porder);
    free(r->sorder);
}

static bool counts(const ev_t *e, tkind_t kind)
{
    return kind == T_SIDE ? (e->flags & EV_PAIRS) != 0 : (e->flags & EV_USES) != 0;
}

/* Calls emit for the tuples of events whose leading rank is in [lo, hi), or counts them per
 * leading rank into per (when not NULL). */
static void scan(const reader_t *r, uint64_t lo, uint64_t hi, size_t *per, tuple_t *out,
                 size_t *n_out)
{
    const agg_t *a = r->a;
    size_t n = 0;
    for (size_t i = 0; i < a->ev_n; i++) {
        const ev_t *e = &a->ev[i];
        if (!counts(e, r->kind)) {
            continue;
        }
        const uint32_t *p = a->refs + e->ref;
        if (r->kind == T_USE_BY_AGENT) {
            uint64_t g = r->srank[e->agent];
            if (per != NULL) {
                per[g] += e->n;
            } else if (g >= lo && g < hi) {
                for (uint32_t k = 0; k < e->n; k++) {
                    out[n++] = (tuple_t){g << 32 | r->prank[p[k]], e->time_us};
                }
            }
            continue;
        }
        for (uint32_t k = 0; k < e->n; k++) {
            uint64_t x = r->prank[p[k]];
            if (per != NULL) {
                per[x] += r->kind == T_SIDE ? e->n - 1 : 1;
            } else if (x >= lo && x < hi) {
                if (r->kind == T_USE_BY_PATTERN) {
                    out[n++] = (tuple_t){x << 32 | r->srank[e->agent], e->time_us};
                } else {
                    for (uint32_t m = 0; m < e->n; m++) {
                        if (p[m] != p[k]) {
                            out[n++] = (tuple_t){x << 32 | r->prank[p[m]], e->time_us};
                        }
                    }
                }
            }
        }
    }
    *n_out = n;
}

/* One aggregate of a run of equal keys. */
typedef void (*run_fn)(const reader_t *r, uint64_t key, int64_t count, int64_t first_us,
                       int64_t last_us, void *ud);

/* Reads every tuple of the kind in key order, in chunks of at most CHUNK_TUPLES tuples (more
 * only for a single leading rank that has more), and calls fn once per distinct key. */
static void read_runs(const agg_t *a, tkind_t kind, run_fn fn, void *ud)
{
    reader_t r;
    reader_init(&r, a, kind);
    size_t n_lead = kind == T_USE_BY_AGENT ? a->strings.n : a->patterns.n;
    size_t *per = xcalloc(n_lead + 1, sizeof *per);
    size_t dummy;
    scan(&r, 0, 0, per, NULL, &dummy);
    size_t cap = 0;
    tuple_t *v = NULL, *tmp = NULL;
    for (size_t lo = 0; lo < n_lead;) {
        size_t hi = lo, total = 0;
        while (hi < n_lead && (hi == lo || total + per[hi] <= CHUNK_TUPLES)) {
            total += per[hi++];
        }
        if (total > 0) {
            if (total > cap) {
                free(v);
                free(tmp);
                cap = total;
                v = xcalloc(cap, sizeof *v);
                tmp = xcalloc(cap, sizeof *tmp);
            }
            size_t n;
            scan(&r, lo, hi, NULL, v, &n);
            radix_sort(v, tmp, n);
            for (size_t i = 0; i < n;) {
                size_t e = i;
                int64_t first = v[i].time_us, last = v[i].time_us;
                while (e < n && v[e].key == v[i].key) {
                    first = v[e].time_us < first ? v[e].time_us : first;
                    last = v[e].time_us > last ? v[e].time_us : last;
                    e++;
                }
                fn(&r, v[i].key, (int64_t)(e - i), first, last, ud);
                i = e;
            }
        }
        lo = hi;
    }
    free(v);
    free(tmp);
    free(per);
    reader_free(&r);
}

typedef struct {
    void (*use)(const agg_use_t *, void *);
    void (*side)(const agg_side_t *, void *);
    void (*pair)(const agg_pair_t *, void *);
    void *ud;
} emit_t;

static void use_run(const reader_t *r, uint64_t key, int64_t count, int64_t first_us,
                    int64_t last_us, void *ud)
{
    const emit_t *x = ud;
    uint32_t hi = (uint32_t)(key >> 32), lo = (uint32_t)key;
    const istr_t *p = &r->porder[r->kind == T_USE_BY_AGENT ? lo : hi];
    const istr_t *g = &r->sorder[r->kind == T_USE_BY_AGENT ? hi : lo];
    agg_use_t u = {p->s, p->len, g->s, g->len, count, first_us, last_us};
    x->use(&u, x->ud);
}

static void side_run(const reader_t *r, uint64_t key, int64_t count, int64_t first_us,
                     int64_t last_us, void *ud)
{
    (void)first_us;
    const emit_t *x = ud;
    const istr_t *p = &r->porder[key >> 32], *q = &r->porder[(uint32_t)key];
    if (x->side != NULL) {
        agg_side_t s = {p->s, q->s, p->len, q->len, count, last_us};
        x->side(&s, x->ud);
    } else if ((key >> 32) < (uint32_t)key) { /* each pair once, from its lower pattern */
        agg_pair_t e = {p->s, p->len, q->s, q->len, count, last_us};
        x->pair(&e, x->ud);
    }
}

void agg_each_use_sorted(const agg_t *a, bool by_agent, void (*fn)(const agg_use_t *, void *),
                         void *ud)
{
    emit_t x = {.use = fn, .ud = ud};
    read_runs(a, by_agent ? T_USE_BY_AGENT : T_USE_BY_PATTERN, use_run, &x);
}

void agg_each_use(const agg_t *a, void (*fn)(const agg_use_t *, void *), void *ud)
{
    agg_each_use_sorted(a, false, fn, ud);
}

void agg_each_side(const agg_t *a, void (*fn)(const agg_side_t *, void *), void *ud)
{
    emit_t x = {.side = fn, .ud = ud};
    read_runs(a, T_SIDE, side_run, &x);
}

void agg_each_pair(const agg_t *a, void (*fn)(const agg_pair_t *, void *), void *ud)
{
    emit_t x = {.pair = fn, .ud = ud};
    read_runs(a, T_SIDE, side_run, &x);
}

static void count_run(const reader_t *r, uint64_t key, int64_t count, int64_t first_us,
                      int64_t last_us, void *ud)
{
    (void)count;
    (void)first_us;
    (void)last_us;
    if (r->kind != T_SIDE || (key >> 32) < (uint32_t)key) {
        (*(size_t *)ud)++;
    }
}

size_t agg_n_pairs(const agg_t *a)
{
    size_t n = 0;
    read_runs(a, T_SIDE, count_run, &n);
    return n;
}

size_t agg_n_uses(const agg_t *a)
{
    size_t n = 0;
    read_runs(a, T_USE_BY_PATTERN, count_run, &n);
    return n;
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
