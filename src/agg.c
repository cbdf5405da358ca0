#include "agg_impl.h"

#include <xxhash.h>

#include <stdlib.h>
#include <string.h>

#include "text.h"

void *agg_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        abort(); /* the aggregate is bounded by back-pressure; running out here is fatal */
    }
    return q;
}

void *agg_xcalloc(size_t n, size_t sz)
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
        chunk_t *nc = agg_xcalloc(1, sizeof(chunk_t) + cap);
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
    istr_t *ns = agg_xcalloc(ncap, sizeof(istr_t));
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
        t->byidx = agg_xrealloc(t->byidx, t->vcap * sizeof(istr_t));
    }
    t->slots[j] = (istr_t){h, arena_copy(a, s, len), (uint32_t)len, (uint32_t)t->n};
    t->byidx[t->n++] = t->slots[j];
    return &t->slots[j];
}

agg_t *agg_new(void)
{
    return agg_xcalloc(1, sizeof(agg_t));
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
    hour_slot_t *ns = agg_xcalloc(ncap, sizeof(hour_slot_t));
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
        a->ev = agg_xrealloc(a->ev, a->ev_cap * sizeof(ev_t));
    }
    if (a->refs_n + n > a->refs_cap) {
        size_t cap = a->refs_cap ? a->refs_cap * 2 : 4096;
        while (cap < a->refs_n + n) {
            cap *= 2;
        }
        a->refs = agg_xrealloc(a->refs, cap * sizeof(uint32_t));
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
    uint32_t *pats = n <= 64 ? stack : agg_xcalloc(n, sizeof(uint32_t));
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
        a->topics = agg_xrealloc(a->topics, a->topics_cap * sizeof(agg_topic_t));
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
        a->held = agg_xrealloc(a->held, a->held_cap * sizeof(held_t));
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
    uint32_t *pats = n <= 64 ? stack : agg_xcalloc(n, sizeof(uint32_t));
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
        a->offsets = agg_xrealloc(a->offsets, a->offsets_cap * sizeof(agg_offset_t));
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
        a->dead = agg_xrealloc(a->dead, a->dead_cap * sizeof(agg_dead_t));
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
        d->detail = agg_xcalloc(1, dl + 1);
        memcpy(d->detail, detail, dl);
    }
    /* max_payload 0: no byte of it is kept (payloads may carry user text), only its size and
     * hash, which tell a payload found again (in Kafka, say) from another */
    d->payload = NULL;
    if (max_payload > 0) {
        d->payload = agg_xcalloc(1, keep + 1);
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
        uint32_t *pats = e->n <= 64 ? stack : agg_xcalloc(e->n, sizeof(uint32_t));
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
            dst->dead = agg_xrealloc(dst->dead, dst->dead_cap * sizeof(agg_dead_t));
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
