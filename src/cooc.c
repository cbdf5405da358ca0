#include "cooc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cooc_writer_init(cooc_writer_t *w, pg_buf_t *b)
{
    cooc_writer_init_v(w, b, COOC_VERSION);
}

void cooc_writer_init_v(cooc_writer_t *w, pg_buf_t *b, int version)
{
    pg_buf_putc(b, (char)version);
    w->b = b;
    w->version = version;
    w->prev_len = 0;
    w->prev_last = 0;
}

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/* Differences of two int64 times as unsigned, wrapping: every pair of times has one. */
static uint64_t zigzag(uint64_t d)
{
    return (d << 1) ^ ((d >> 63) ? UINT64_MAX : 0);
}

static uint64_t unzigzag(uint64_t z)
{
    return (z >> 1) ^ ((z & 1) ? UINT64_MAX : 0);
}

void cooc_write(cooc_writer_t *w, const char *id, size_t len, int64_t count, int64_t last_us)
{
    cooc_write_usage(w, id, len, count, last_us, last_us);
}

void cooc_write_usage(cooc_writer_t *w, const char *id, size_t len, int64_t count, int64_t first_us,
                      int64_t last_us)
{
    unsigned char e[COOC_ENTRY_MAX];
    size_t shared = 0;
    while (shared < w->prev_len && shared < len && w->prev[shared] == id[shared]) {
        shared++;
    }
    e[0] = (unsigned char)shared;
    e[1] = (unsigned char)(len - shared);
    memcpy(e + 2, id + shared, len - shared);
    size_t n = 2 + len - shared;
    n += put_varint(e + n, (uint64_t)count);
    n += put_varint(e + n, zigzag((uint64_t)last_us - (uint64_t)w->prev_last));
    if (w->version == COOC_USAGE_VERSION) {
        /* first <= last: how long before the last the first was, unsigned */
        n += put_varint(e + n, (uint64_t)last_us - (uint64_t)first_us);
    }
    pg_buf_put(w->b, (const char *)e, n);
    memcpy(w->prev + shared, id + shared, len - shared);
    w->prev_len = len;
    w->prev_last = last_us;
}

int cooc_cmp(const char *x, size_t lx, const char *y, size_t ly)
{
    int c = memcmp(x, y, lx < ly ? lx : ly);
    if (c != 0) {
        return c;
    }
    return lx < ly ? -1 : lx > ly ? 1 : 0;
}

bool cooc_iter_init(cooc_iter_t *it, const void *list, size_t n)
{
    const unsigned char *p = list;
    it->p = p;
    it->end = p + n;
    it->id = NULL;
    it->len = 0;
    it->count = 0;
    it->last_us = 0;
    it->first_us = 0;
    it->err = NULL;
    it->version = n < 1 ? 0 : p[0];
    if (n < 1 || (p[0] != COOC_VERSION && p[0] != COOC_USAGE_VERSION)) {
        it->err = n < 1 ? "empty partner list" : "unknown partner list version";
        it->p = it->end;
        return false;
    }
    it->p++;
    return true;
}

static bool stop(cooc_iter_t *it, const char *err)
{
    it->err = err;
    it->p = it->end;
    return false;
}

static bool get_varint(cooc_iter_t *it, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (it->p >= it->end) {
            return stop(it, "truncated partner list");
        }
        unsigned char b = *it->p++;
        if (shift == 63 && b > 1) {
            break;
        }
        r |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            return true;
        }
    }
    return stop(it, "partner list varint over 64 bits");
}

bool cooc_iter_next(cooc_iter_t *it)
{
    if (it->p >= it->end) {
        return false;
    }
    if (it->end - it->p < 2) {
        return stop(it, "truncated partner list");
    }
    size_t shared = it->p[0], n = it->p[1];
    if (shared > it->len) {
        return stop(it, "partner list prefix longer than the partner before");
    }
    if (n == 0 || shared + n > COOC_MAX_ID) {
        return stop(it, n == 0 ? "empty partner in a partner list"
                               : "partner over 255 bytes in a partner list");
    }
    if ((size_t)(it->end - it->p) < 2 + n) {
        return stop(it, "truncated partner list");
    }
    const unsigned char *suffix = it->p + 2;
    /* In order when the new bytes sort above the partner's bytes at the same place (or the
     * partner before ends there): the shared prefix is equal by construction. */
    if (it->id != NULL && shared < it->len) {
        size_t m = it->len - shared < n ? it->len - shared : n;
        int c = memcmp(it->buf + shared, suffix, m);
        if (c > 0 || (c == 0 && it->len - shared >= n)) {
            return stop(it, "partner list out of order");
        }
    }
    it->p += 2 + n;
    uint64_t count, dlast, dfirst = 0;
    if (!get_varint(it, &count) || !get_varint(it, &dlast) ||
        (it->version == COOC_USAGE_VERSION && !get_varint(it, &dfirst))) {
        return false;
    }
    if (count < 1 || count > INT64_MAX) {
        return stop(it, count < 1 ? "partner list count below 1" : "partner list count over 2^63");
    }
    memcpy(it->buf + shared, suffix, n);
    it->id = it->buf;
    it->len = shared + n;
    it->count = (int64_t)count;
    it->last_us = (int64_t)((uint64_t)it->last_us + unzigzag(dlast));
    it->first_us = (int64_t)((uint64_t)it->last_us - dfirst);
    if (it->first_us > it->last_us) {
        return stop(it, "partner list first time after its last");
    }
    return true;
}

int cooc_check(const void *list, size_t n, const char *self, size_t self_len, int64_t *entries,
               int64_t *n_low, char *err, size_t errlen)
{
    cooc_iter_t it;
    int64_t e = 0, low = 0;
    if (cooc_iter_init(&it, list, n)) {
        while (cooc_iter_next(&it)) {
            e++;
            low += cooc_cmp(it.id, it.len, self, self_len) < 0;
        }
    }
    if (it.err != NULL) {
        snprintf(err, errlen, "%s", it.err);
        return -1;
    }
    *entries = e;
    *n_low = low;
    return 0;
}

/* One entry of k merged lists: the partner (valid for the call), its summed count, earliest
 * and latest time, and whether a pending source contributed. */
typedef void (*emit_fn)(const char *id, size_t len, int64_t count, int64_t first_us,
                        int64_t last_us, bool from_pending, void *ud);

/* The k-way merge both cooc_merge (which encodes) and cooc_list_build (which keeps entries)
 * stand on. A pattern's lists are its merged row and the few flushes pending since (merges bound
 * them), so each entry scans every head rather than keeping a heap. */
static int merge_walk(const cooc_src_t *src, size_t k, emit_fn emit, void *ud, int *version,
                      char *err, size_t errlen)
{
    cooc_iter_t stack_it[16];
    bool stack_live[16];
    cooc_iter_t *it = k <= 16 ? stack_it : malloc(k * sizeof *it);
    bool *live = k <= 16 ? stack_live : malloc(k * sizeof *live);
    int rc = -1;
    if (it == NULL || live == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    *version = 0;
    for (size_t i = 0; i < k; i++) {
        live[i] = cooc_iter_init(&it[i], src[i].data, src[i].len) && cooc_iter_next(&it[i]);
        if (it[i].err != NULL) {
            snprintf(err, errlen, "%s", it[i].err);
            goto done;
        }
        if (i > 0 && it[i].version != *version) {
            snprintf(err, errlen, "lists of versions %d and %d merged", *version, it[i].version);
            goto done;
        }
        *version = it[i].version;
    }
    char id[COOC_MAX_ID]; /* a copy: the iterators' ids change as they advance */
    for (;;) {
        const cooc_iter_t *least = NULL;
        for (size_t i = 0; i < k; i++) {
            if (live[i] &&
                (least == NULL || cooc_cmp(it[i].id, it[i].len, least->id, least->len) < 0)) {
                least = &it[i];
            }
        }
        if (least == NULL) {
            break;
        }
        size_t len = least->len;
        memcpy(id, least->id, len);
        int64_t count = 0, last = INT64_MIN, first = INT64_MAX;
        bool from_pending = false;
        for (size_t i = 0; i < k; i++) {
            if (!live[i] || cooc_cmp(it[i].id, it[i].len, id, len) != 0) {
                continue;
            }
            if (__builtin_add_overflow(count, it[i].count, &count)) {
                snprintf(err, errlen, "co-occurrence count overflows");
                goto done;
            }
            last = it[i].last_us > last ? it[i].last_us : last;
            first = it[i].first_us < first ? it[i].first_us : first;
            from_pending |= src[i].pending;
        }
        emit(id, len, count, first, last, from_pending, ud);
        for (size_t i = 0; i < k; i++) {
            if (live[i] && cooc_cmp(it[i].id, it[i].len, id, len) == 0) {
                live[i] = cooc_iter_next(&it[i]);
            }
            if (it[i].err != NULL) {
                snprintf(err, errlen, "%s", it[i].err);
                goto done;
            }
        }
    }
    rc = 0;
done:
    if (it != stack_it) {
        free(it);
    }
    if (live != stack_live) {
        free(live);
    }
    return rc;
}

typedef struct {
    cooc_writer_t w;
    const char *self;
    size_t self_len;
    int64_t entries, n_low;
    cooc_changed_fn changed;
    void *ud;
} encode_t;

static void encode_emit(const char *id, size_t len, int64_t count, int64_t first_us,
                        int64_t last_us, bool from_pending, void *ud)
{
    encode_t *x = ud;
    cooc_write_usage(&x->w, id, len, count, first_us, last_us);
    bool below = cooc_cmp(id, len, x->self, x->self_len) < 0;
    x->entries++;
    x->n_low += below;
    if (from_pending && !below && x->changed != NULL) {
        x->changed(id, len, count, last_us, x->ud);
    }
}

int cooc_merge(const cooc_src_t *src, size_t k, const char *self, size_t self_len, pg_buf_t *out,
               int64_t *entries, int64_t *n_low, cooc_changed_fn changed, void *ud, char *err,
               size_t errlen)
{
    encode_t x = {.self = self, .self_len = self_len, .changed = changed, .ud = ud};
    /* the version byte is the sources' (checked by the walk, which writes nothing before it) */
    int version = COOC_VERSION;
    if (k > 0 && src[0].len > 0) {
        version = ((const unsigned char *)src[0].data)[0];
    }
    cooc_writer_init_v(&x.w, out, version);
    if (merge_walk(src, k, encode_emit, &x, &version, err, errlen) != 0) {
        return -1;
    }
    *entries = x.entries;
    *n_low = x.n_low;
    return 0;
}

void cooc_list_free(cooc_list_t *l)
{
    if (l == NULL) {
        return;
    }
    free(l->ids);
    free(l->v);
    l->ids = NULL;
    l->v = NULL;
    l->n = 0;
}

/* Entries as the walk gives them, their partners into one buffer by offset (it moves while it
 * grows; the pointers are set at the end). */
typedef struct {
    cooc_list_t *l;
    pg_buf_t ids;
    size_t cap;
    bool oom;
} collect_t;

static void collect_emit(const char *id, size_t len, int64_t count, int64_t first_us,
                         int64_t last_us, bool from_pending, void *ud)
{
    (void)from_pending;
    collect_t *x = ud;
    cooc_list_t *l = x->l;
    if (x->oom) {
        return;
    }
    if (l->n == x->cap) {
        size_t cap = x->cap * 2;
        cooc_entry_t *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL) {
            x->oom = true;
            return;
        }
        l->v = v;
        x->cap = cap;
    }
    l->v[l->n++] = (cooc_entry_t){(const char *)(uintptr_t)x->ids.len, (uint32_t)len, count,
                                  first_us, last_us};
    pg_buf_put(&x->ids, id, len);
}

int cooc_list_build(cooc_list_t *l, const cooc_src_t *src, size_t k, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    /* v exists even when empty: callers may hand it to qsort or bsearch */
    collect_t x = {.l = l, .cap = 64};
    pg_buf_init(&x.ids);
    l->v = malloc(x.cap * sizeof *l->v);
    x.oom = l->v == NULL;
    int version;
    if (x.oom || merge_walk(src, k, collect_emit, &x, &version, err, errlen) != 0 || x.oom) {
        if (x.oom) {
            snprintf(err, errlen, "out of memory");
        }
        pg_buf_free(&x.ids);
        cooc_list_free(l);
        return -1;
    }
    /* the buffer is final: offsets become pointers (ids owns it; pg_buf_t's data is malloc'd) */
    l->ids = x.ids.data;
    for (size_t i = 0; i < l->n; i++) {
        l->v[i].id = l->ids + (uintptr_t)l->v[i].id;
    }
    return 0;
}

const cooc_entry_t *cooc_list_find(const cooc_list_t *l, const char *id, size_t len)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cooc_cmp(l->v[mid].id, l->v[mid].len, id, len);
        if (c == 0) {
            return &l->v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

size_t cooc_topk(size_t n, size_t limit, int (*cmp)(size_t a, size_t b, void *ud), void *ud,
                 size_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n && limit > 0; i++) {
        if (m == limit && cmp(i, out[m - 1], ud) >= 0) {
            continue;
        }
        size_t j = m < limit ? m++ : m - 1;
        while (j > 0 && cmp(i, out[j - 1], ud) < 0) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
    }
    return m;
}

static int by_count(size_t a, size_t b, void *ud)
{
    const cooc_entry_t *v = ud;
    if (v[a].count != v[b].count) {
        return v[a].count > v[b].count ? -1 : 1;
    }
    return cooc_cmp(v[a].id, v[a].len, v[b].id, v[b].len);
}

size_t cooc_list_top(const cooc_list_t *l, size_t limit, size_t *out)
{
    return cooc_topk(l->n, limit, by_count, l->v, out);
}
