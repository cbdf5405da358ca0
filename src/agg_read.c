#include "agg_impl.h"

#include <stdlib.h>
#include <string.h>

static int istr_bytes_cmp(const void *x, const void *y)
{
    const istr_t *a = x, *b = y;
    return agg_bytes_cmp(a->s, a->len, b->s, b->len);
}

/* The ranks of an interning table's strings in byte order: rank[idx], and the strings in that
 * order (order[rank]). Owned by the caller. */
static uint32_t *ranks(const itab_t *t, istr_t **order_out)
{
    istr_t *order = agg_xcalloc(t->n ? t->n : 1, sizeof *order);
    uint32_t *rank = agg_xcalloc(t->n ? t->n : 1, sizeof *rank);
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
    size_t *per = agg_xcalloc(n_lead + 1, sizeof *per);
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
                v = agg_xcalloc(cap, sizeof *v);
                tmp = agg_xcalloc(cap, sizeof *tmp);
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
