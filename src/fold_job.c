#include "fold_job.h"

#include <stdlib.h>
#include <string.h>

#include "cooc.h"

#define JOB_BUFS(j)                                                                                \
    {                                                                                              \
        &(j)->topraw, &(j)->pat, &(j)->na, &(j)->al, &(j)->np, &(j)->low, &(j)->pl, &(j)->adata,   \
            &(j)->pdata, &(j)->agent, &(j)->an, &(j)->alen, &(j)->gdata, &(j)->tp1, &(j)->tp2,     \
            &(j)->tcnt, &(j)->tlast                                                                \
    }

void fold_job_init(fold_job_t *j)
{
    memset(j, 0, sizeof *j);
    pg_buf_t *bufs[] = JOB_BUFS(j);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        pg_buf_init(bufs[i]);
    }
}

void fold_job_free(fold_job_t *j)
{
    pg_buf_t *bufs[] = JOB_BUFS(j);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        pg_buf_free(bufs[i]);
    }
    PQclear(j->fetched);
    free(j->rows);
    free(j->top);
    memset(j, 0, sizeof *j);
}

static int row_cmp(const void *x, const void *y)
{
    const fold_row_t *a = x, *b = y;
    if (a->kind != b->kind) {
        return a->kind < b->kind ? -1 : 1;
    }
    return cooc_cmp(a->id.p, a->id.len, b->id.p, b->id.len);
}

/* The pairs a merge changed. Their partners are copied (cooc_merge's ids last one call), into
 * ids by offset (offs[i]: ids moves while it grows); v[i].p2 is set once all are in. */
typedef struct {
    fold_pair_t *v;
    size_t *offs;
    size_t n, cap;
    pg_buf_t ids;
    const char *self;
    uint32_t self_len;
    /* Only pairs that may still make the top are kept: a count below thr cannot (keep better
     * pairs are known), and at limit the kept ones are pruned to the keep best counts. A merge
     * of everything pending changes millions of pairs; the top needs its keep best. */
    int64_t thr;
    size_t keep, limit;
} changed_t;

static int count_desc(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a > b ? -1 : a < b;
}

/* The keep best counts among the kept pairs are all >= the keep-th best; a pair below it has
 * keep pairs above it, so it is not in the top after this merge (an old member below it had a
 * count no higher before). Ties stay: the top breaks them by ID. */
static void prune(changed_t *c)
{
    int64_t *cnt = malloc(c->n * sizeof *cnt);
    if (cnt == NULL) {
        abort();
    }
    for (size_t i = 0; i < c->n; i++) {
        cnt[i] = c->v[i].count;
    }
    qsort(cnt, c->n, sizeof *cnt, count_desc);
    int64_t k = cnt[c->keep - 1];
    free(cnt);
    if (k > c->thr) {
        c->thr = k;
        pg_buf_t ids;
        pg_buf_init(&ids);
        size_t m = 0;
        for (size_t i = 0; i < c->n; i++) {
            if (c->v[i].count >= k) {
                c->v[m] = c->v[i];
                c->offs[m++] = ids.len;
                pg_buf_put(&ids, c->ids.data + c->offs[i], c->v[i].l2);
            }
        }
        c->n = m;
        pg_buf_free(&c->ids);
        c->ids = ids;
    }
    if (c->n * 2 > c->limit) {
        c->limit *= 2; /* ties at the threshold: room for them */
    }
}

static void changed_cb(const char *id, size_t len, int64_t count, int64_t last_us, void *ud)
{
    changed_t *c = ud;
    if (count < c->thr) {
        return;
    }
    if (c->n == c->limit && c->keep > 0) {
        prune(c);
        if (count < c->thr) {
            return;
        }
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        fold_pair_t *nv = realloc(c->v, c->cap * sizeof *nv);
        size_t *no = realloc(c->offs, c->cap * sizeof *no);
        if (nv == NULL || no == NULL) {
            abort();
        }
        c->v = nv;
        c->offs = no;
    }
    c->offs[c->n] = c->ids.len;
    pg_buf_put(&c->ids, id, len);
    c->v[c->n++] = (fold_pair_t){c->self, NULL, c->self_len, (uint32_t)len, count, last_us, true};
}

static int pair_key_cmp(const fold_pair_t *a, const fold_pair_t *b)
{
    int c = cooc_cmp(a->p1, a->l1, b->p1, b->l1);
    return c != 0 ? c : cooc_cmp(a->p2, a->l2, b->p2, b->l2);
}

static int pair_key_qcmp(const void *x, const void *y)
{
    return pair_key_cmp(x, y);
}

/* The top's order: count descending, then pattern_id_1 and pattern_id_2 in byte order. */
static int pair_rank_qcmp(const void *x, const void *y)
{
    const fold_pair_t *a = x, *b = y;
    if (a->count != b->count) {
        return a->count > b->count ? -1 : 1;
    }
    return pair_key_cmp(a, b);
}

static void put_top(fold_job_t *j, const fold_pair_t *v, size_t n)
{
    pg_buf_t *bufs[] = {&j->tp1, &j->tp2, &j->tcnt, &j->tlast};
    for (size_t i = 0; i < 4; i++) {
        pg_buf_putc(bufs[i], '{');
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            for (size_t k = 0; k < 4; k++) {
                pg_array_next(bufs[k]);
            }
        }
        pg_array_text(&j->tp1, v[i].p1, v[i].l1);
        pg_array_text(&j->tp2, v[i].p2, v[i].l2);
        pg_array_int(&j->tcnt, v[i].count);
        pg_array_int(&j->tlast, v[i].last_us);
    }
    for (size_t i = 0; i < 4; i++) {
        pg_array_end(bufs[i]);
    }
}

/* The new top: the old one with its merged members' new counts, and the pairs merged now that
 * rank among the keep best. Every other pair kept its count and ranked below all old members. */
static void update_top(fold_job_t *j, changed_t *ch)
{
    for (size_t i = 0; i < j->n_top; i++) {
        j->top[i].p1 = j->topraw.data + (size_t)(uintptr_t)j->top[i].p1;
        j->top[i].p2 = j->topraw.data + (size_t)(uintptr_t)j->top[i].p2;
    }
    if (ch->n == 0) {
        return;
    }
    qsort(j->top, j->n_top, sizeof *j->top, pair_key_qcmp);
    size_t n_all = j->n_top;
    fold_pair_t *all = malloc((j->n_top + ch->n) * sizeof *all);
    if (all == NULL) {
        abort();
    }
    memcpy(all, j->top, j->n_top * sizeof *all);
    bool member_moved = false;
    for (size_t i = 0; i < ch->n; i++) {
        fold_pair_t *hit = bsearch(&ch->v[i], all, j->n_top, sizeof *all, pair_key_qcmp);
        if (hit != NULL) {
            hit->count = ch->v[i].count;
            hit->last_us = ch->v[i].last_us;
            member_moved = true;
        } else {
            all[n_all++] = ch->v[i];
        }
    }
    qsort(all, n_all, sizeof *all, pair_rank_qcmp);
    size_t keep = n_all < j->keep ? n_all : j->keep;
    bool fresh_in = false;
    for (size_t i = 0; i < keep; i++) {
        fresh_in |= all[i].fresh;
    }
    if (member_moved || fresh_in) {
        j->top_changed = true;
        put_top(j, all, keep);
    }
    free(all);
}

/* Appends one owner's merged list (of the k sources' lists in section l2 or not) to data, its
 * entries and length to the literals n and lens; no sources: no list (length 0). */
static int merge_section(fold_job_t *j, const fold_row_t *rows, size_t k, bool l2, const char *self,
                         uint32_t self_len, pg_buf_t *data, pg_buf_t *n, pg_buf_t *lens,
                         pg_buf_t *low, bool first, changed_t *ch)
{
    cooc_src_t stack_src[32];
    cooc_src_t *src = k <= 32 ? stack_src : malloc(k * sizeof *src);
    if (src == NULL) {
        abort();
    }
    size_t m = 0;
    for (size_t x = 0; x < k; x++) {
        const fold_ref_t *l = l2 ? &rows[x].l2 : &rows[x].l1;
        if (l->len > 0) {
            src[m++] = (cooc_src_t){l->p, l->len, !rows[x].folded};
        }
    }
    int64_t entries = 0, n_low = 0;
    size_t before = data->len;
    int rc = 0;
    if (m > 0) {
        char err[200];
        if (cooc_merge(src, m, self, self_len, data, &entries, &n_low, ch ? changed_cb : NULL, ch,
                       err, sizeof err) != 0) {
            snprintf(j->err, sizeof j->err, "%s %.*s: %s",
                     rows[0].kind == 'p' ? "pattern" : "agent", (int)self_len, self, err);
            rc = -1;
        }
    }
    if (src != stack_src) {
        free(src);
    }
    if (!first) {
        pg_array_next(n);
        pg_array_next(lens);
        if (low != NULL) {
            pg_array_next(low);
        }
    }
    pg_array_int(n, entries);
    pg_array_int(lens, (int64_t)(data->len - before));
    if (low != NULL) {
        pg_array_int(low, n_low);
    }
    return rc;
}

void fold_job_run(fold_job_t *j)
{
    qsort(j->rows, j->n_rows, sizeof *j->rows, row_cmp);
    pg_buf_t *arr[] = {&j->pat, &j->na,    &j->al, &j->np,  &j->low,
                       &j->pl,  &j->agent, &j->an, &j->alen};
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
        pg_buf_putc(arr[i], '{');
    }
    changed_t ch = {0};
    pg_buf_init(&ch.ids);
    ch.keep = j->keep;
    ch.limit = 4 * j->keep > 4096 ? 4 * j->keep : 4096;
    if (j->keep > 0 && j->n_top >= j->keep) {
        ch.thr = INT64_MAX; /* the top is full: only what beats its last may enter */
        for (size_t i = 0; i < j->n_top; i++) {
            ch.thr = j->top[i].count < ch.thr ? j->top[i].count : ch.thr;
        }
    }
    j->rc = 0;
    for (size_t i = 0; i < j->n_rows && j->rc == 0;) {
        size_t e = i;
        const fold_row_t *r0 = &j->rows[i];
        while (e < j->n_rows && j->rows[e].kind == r0->kind &&
               cooc_cmp(j->rows[e].id.p, j->rows[e].id.len, r0->id.p, r0->id.len) == 0) {
            e++;
        }
        size_t k = e - i;
        bool any_pending = false;
        for (size_t x = 0; x < k; x++) {
            any_pending |= !j->rows[i + x].folded;
        }
        /* a folded row alone: its pending rows went to another fold */
        if (any_pending) {
            const char *self = r0->id.p;
            uint32_t self_len = r0->id.len;
            if (r0->kind == 'p') {
                bool first = j->patterns == 0;
                if (!first) {
                    pg_array_next(&j->pat);
                }
                pg_array_text(&j->pat, self, self_len);
                ch.self = self;
                ch.self_len = self_len;
                if (merge_section(j, j->rows + i, k, false, self, self_len, &j->adata, &j->na,
                                  &j->al, NULL, first, NULL) != 0 ||
                    merge_section(j, j->rows + i, k, true, self, self_len, &j->pdata, &j->np,
                                  &j->pl, &j->low, first, &ch) != 0) {
                    j->rc = -1;
                }
                j->patterns++;
            } else {
                bool first = j->agents == 0;
                if (!first) {
                    pg_array_next(&j->agent);
                }
                pg_array_text(&j->agent, self, self_len);
                if (merge_section(j, j->rows + i, k, false, self, self_len, &j->gdata, &j->an,
                                  &j->alen, NULL, first, NULL) != 0) {
                    j->rc = -1;
                }
                j->agents++;
            }
        }
        i = e;
    }
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
        pg_array_end(arr[i]);
    }
    for (size_t i = 0; i < ch.n; i++) {
        ch.v[i].p2 = ch.ids.data + ch.offs[i];
    }
    if (j->rc == 0) {
        update_top(j, &ch);
    }
    free(ch.v);
    free(ch.offs);
    pg_buf_free(&ch.ids);
}
