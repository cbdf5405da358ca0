#include "cooc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cooc_put_header(pg_buf_t *b)
{
    pg_buf_putc(b, (char)COOC_VERSION);
}

static void put_be64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(u & 0xff);
        u >>= 8;
    }
}

static int64_t get_be64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) {
        u = (u << 8) | p[i];
    }
    return (int64_t)u;
}

void cooc_put(pg_buf_t *b, const char *id, size_t len, int64_t count, int64_t last_us)
{
    unsigned char e[1 + COOC_MAX_ID + 16];
    e[0] = (unsigned char)len;
    memcpy(e + 1, id, len);
    put_be64(e + 1 + len, count);
    put_be64(e + 9 + len, last_us);
    pg_buf_put(b, (const char *)e, len + COOC_ENTRY_FIXED);
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
    *it = (cooc_iter_t){.p = p, .end = p + n};
    if (n < 1 || p[0] != COOC_VERSION) {
        it->err = n < 1 ? "empty partner list" : "unknown partner list version";
        it->p = it->end;
        return false;
    }
    it->p++;
    return true;
}

bool cooc_iter_next(cooc_iter_t *it)
{
    if (it->p >= it->end) {
        return false;
    }
    size_t len = it->p[0];
    if (len == 0 || (size_t)(it->end - it->p) < len + COOC_ENTRY_FIXED) {
        it->err = len == 0 ? "empty partner in a partner list" : "truncated partner list";
        it->p = it->end;
        return false;
    }
    const char *id = (const char *)it->p + 1;
    if (it->id != NULL && cooc_cmp(it->id, it->len, id, len) >= 0) {
        it->err = "partner list out of order";
        it->p = it->end;
        return false;
    }
    int64_t count = get_be64(it->p + 1 + len);
    if (count < 1) {
        it->err = "partner list count below 1";
        it->p = it->end;
        return false;
    }
    it->id = id;
    it->len = len;
    it->count = count;
    it->last_us = get_be64(it->p + 9 + len);
    it->p += len + COOC_ENTRY_FIXED;
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

/* Sources with at most this many lists are merged by scanning every head per entry; a pattern's
 * lists are its merged row and the few flushes pending since (merges bound them). */
int cooc_merge(const cooc_src_t *src, size_t k, const char *self, size_t self_len, pg_buf_t *out,
               int64_t *entries, int64_t *n_low, cooc_changed_fn changed, void *ud, char *err,
               size_t errlen)
{
    cooc_iter_t stack_it[16];
    bool stack_live[16];
    cooc_iter_t *it = k <= 16 ? stack_it : malloc(k * sizeof *it);
    bool *live = k <= 16 ? stack_live : malloc(k * sizeof *live);
    int rc = -1;
    int64_t e = 0, low = 0;
    if (it == NULL || live == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < k; i++) {
        live[i] = cooc_iter_init(&it[i], src[i].data, src[i].len) && cooc_iter_next(&it[i]);
        if (it[i].err != NULL) {
            snprintf(err, errlen, "%s", it[i].err);
            goto done;
        }
    }
    cooc_put_header(out);
    for (;;) {
        const char *id = NULL;
        size_t len = 0;
        for (size_t i = 0; i < k; i++) {
            if (live[i] && (id == NULL || cooc_cmp(it[i].id, it[i].len, id, len) < 0)) {
                id = it[i].id;
                len = it[i].len;
            }
        }
        if (id == NULL) {
            break;
        }
        int64_t count = 0, last = INT64_MIN;
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
            from_pending |= src[i].pending;
        }
        cooc_put(out, id, len, count, last);
        bool below = cooc_cmp(id, len, self, self_len) < 0;
        e++;
        low += below;
        if (from_pending && !below && changed != NULL) {
            changed(id, len, count, last, ud);
        }
        /* id stays valid: it points into an input, not into an iterator */
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
    *entries = e;
    *n_low = low;
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

void cooc_list_free(cooc_list_t *l)
{
    if (l == NULL) {
        return;
    }
    pg_buf_free(&l->buf);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int cooc_list_build(cooc_list_t *l, const cooc_src_t *src, size_t k, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    pg_buf_init(&l->buf);
    int64_t n, low;
    if (cooc_merge(src, k, "", 0, &l->buf, &n, &low, NULL, NULL, err, errlen) != 0) {
        cooc_list_free(l);
        return -1;
    }
    l->v = malloc(((size_t)n > 0 ? (size_t)n : 1) * sizeof *l->v);
    if (l->v == NULL) {
        snprintf(err, errlen, "out of memory");
        cooc_list_free(l);
        return -1;
    }
    /* the merged list is in its final buffer now: entries may point into it */
    cooc_iter_t it;
    if (!cooc_iter_init(&it, l->buf.data, l->buf.len)) {
        snprintf(err, errlen, "%s", it.err);
        cooc_list_free(l);
        return -1;
    }
    while (cooc_iter_next(&it)) {
        l->v[l->n++] = (cooc_entry_t){it.id, (uint32_t)it.len, it.count, it.last_us};
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
