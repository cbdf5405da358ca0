#include "l_cooc.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cooc.h"
#include "pg_buf.h"

/* The answers that read partner lists (pattern_lists, agent_lists: a pattern's agents and
 * co-occurring patterns, an agent's patterns) get them from SQL as bytes, which SQL can only
 * decode at several microseconds an entry; a popular pattern has thousands of partners, a busy
 * agent thousands of patterns. These functions do the decoding, summing and ranking here and
 * hand back text-array literals that the route binds in its next query (the catalog lookup of
 * the few entries it shows). */

#define MAX_LIMIT 10000

/* ---- common ---- */

typedef struct {
    const char *s;
    size_t len;
} str_t;

/* t[key] as a string (NULL when absent or not a string). [-0, +0] */
static const char *field_str(lua_State *L, int t, const char *key, size_t *len)
{
    lua_getfield(L, t, key);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
    lua_pop(L, 1); /* the string stays alive: the row table holds it */
    return s;
}

static int64_t field_int(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    return ok ? (int64_t)v : 0;
}

/* Literals for unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) (ids, counts,
 * first and last times) and their length. */
typedef struct {
    pg_buf_t ids, counts, firsts, lasts;
    size_t n;
} lits_t;

static void lits_init(lits_t *o)
{
    pg_buf_t *b[] = {&o->ids, &o->counts, &o->firsts, &o->lasts};
    for (size_t i = 0; i < 4; i++) {
        pg_buf_init(b[i]);
        pg_buf_putc(b[i], '{');
    }
    o->n = 0;
}

static void lits_add(lits_t *o, const char *id, size_t len, int64_t count, int64_t first_us,
                     int64_t last_us)
{
    if (o->n++ > 0) {
        pg_array_next(&o->ids);
        pg_array_next(&o->counts);
        pg_array_next(&o->firsts);
        pg_array_next(&o->lasts);
    }
    pg_array_text(&o->ids, id, len);
    pg_array_int(&o->counts, count);
    pg_array_int(&o->firsts, first_us);
    pg_array_int(&o->lasts, last_us);
}

static void lits_end(lits_t *o)
{
    pg_array_end(&o->ids);
    pg_array_end(&o->counts);
    pg_array_end(&o->firsts);
    pg_array_end(&o->lasts);
}

static void lits_free(lits_t *o)
{
    pg_buf_free(&o->ids);
    pg_buf_free(&o->counts);
    pg_buf_free(&o->firsts);
    pg_buf_free(&o->lasts);
}

/* ---- pt.list_entries ---- */

static int by_last(size_t a, size_t b, void *ud)
{
    const cooc_entry_t *v = ud;
    if (v[a].last_us != v[b].last_us) {
        return v[a].last_us > v[b].last_us ? -1 : 1;
    }
    return cooc_cmp(v[a].id, v[a].len, v[b].id, v[b].len);
}

/* The summed entries of the lists in the table at idx (bytea strings of one version), into l.
 * Raises on a malformed list. [-0, +0] */
static void build_arg(lua_State *L, int idx, cooc_list_t *l)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    size_t k = (size_t)luaL_len(L, idx);
    cooc_src_t *src = malloc((k > 0 ? k : 1) * sizeof *src);
    if (src == NULL) {
        luaL_error(L, "out of memory");
        return;
    }
    for (size_t i = 0; i < k; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            free(src);
            luaL_error(L, "list %d is not a string", (int)i + 1);
            return;
        }
        src[i].data = lua_tolstring(L, -1, &src[i].len);
        src[i].pending = false;
        lua_pop(L, 1); /* held by the table */
    }
    char err[160];
    int rc = cooc_list_build(l, src, k, err, sizeof err);
    free(src);
    if (rc != 0) {
        luaL_error(L, "malformed partner list: %s", err);
    }
}

typedef struct {
    size_t limit;
    int order; /* 0: count, 1: last */
    int64_t since;
} pick_t;

/* The arguments limit, order and since at idx .. idx + 2, checked before anything is allocated
 * (a Lua error would leak it). [-0, +0] */
static pick_t check_pick(lua_State *L, int idx)
{
    lua_Integer limit = luaL_checkinteger(L, idx);
    luaL_argcheck(L, limit >= 0 && limit <= MAX_LIMIT, idx, "out of range");
    static const char *const orders[] = {"count", "last", NULL};
    pick_t p = {(size_t)limit, luaL_checkoption(L, idx + 1, "count", orders),
                (int64_t)luaL_optinteger(L, idx + 2, INT64_MIN)};
    return p;
}

/* Which of l's entries to give, in order: indexes into l->v in *out (owned; NULL when out of
 * memory), how many in *m, and how many had a last time >= since in *total. limit 0: all in
 * partner order. Entries before since are dropped from l. */
static void pick_entries(const pick_t *p, cooc_list_t *l, size_t **out, size_t *m, size_t *total)
{
    size_t keep = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].last_us >= p->since) {
            l->v[keep++] = l->v[i];
        }
    }
    l->n = keep;
    *total = keep;
    size_t want = p->limit == 0 || p->limit > keep ? keep : p->limit;
    *out = malloc((want > 0 ? want : 1) * sizeof **out);
    *m = 0;
    if (*out == NULL) {
        return;
    }
    if (p->limit == 0) {
        for (size_t i = 0; i < keep; i++) {
            (*out)[i] = i;
        }
        *m = keep;
    } else {
        *m = p->order == 0 ? cooc_list_top(l, want, *out)
                           : cooc_topk(l->n, want, by_last, l->v, *out);
    }
}

/* What a list function allocates, held by a userdata whose __gc frees it: a Lua error (out of
 * memory in a push) cannot leak it. [-0, +1] */
typedef struct {
    cooc_list_t l;
    size_t *idx;
    lits_t o;
    bool lits;
} guard_t;

static void guard_release(guard_t *g)
{
    cooc_list_free(&g->l);
    free(g->idx);
    g->idx = NULL;
    if (g->lits) {
        lits_free(&g->o);
        g->lits = false;
    }
}

static int guard_gc(lua_State *L)
{
    guard_release(lua_touserdata(L, 1));
    return 0;
}

static guard_t *guard_push(lua_State *L)
{
    guard_t *g = lua_newuserdatauv(L, sizeof *g, 0);
    memset(g, 0, sizeof *g);
    if (luaL_newmetatable(L, "pt.list_guard")) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return g;
}

/* pt.list_entries(lists, limit [, order [, since_us]]) -> ids, counts, firsts, lasts, n, total:
 * the entries of one owner's partner lists (an array of bytea strings: its folded row and its
 * pending ones, all of one version) summed, as text-array literals to bind: the `limit` first
 * in the order asked for ("count": count descending, "last": last time descending; ties by
 * partner in byte order), or with limit 0 all of them in partner order; with since_us only
 * those last used then or later (total: how many those are). firsts are the lasts for
 * co-occurrence lists. Raises on a malformed list. [-4, +6] (and the guard below them) */
static int l_list_entries(lua_State *L)
{
    pick_t p = check_pick(L, 2);
    guard_t *g = guard_push(L);
    build_arg(L, 1, &g->l);
    size_t m = 0, total = 0;
    pick_entries(&p, &g->l, &g->idx, &m, &total);
    if (g->idx == NULL) {
        return luaL_error(L, "out of memory");
    }
    lits_init(&g->o);
    g->lits = true;
    for (size_t i = 0; i < m; i++) {
        const cooc_entry_t *e = &g->l.v[g->idx[i]];
        lits_add(&g->o, e->id, e->len, e->count, e->first_us, e->last_us);
    }
    lits_end(&g->o);
    lua_pushlstring(L, g->o.ids.data, g->o.ids.len);
    lua_pushlstring(L, g->o.counts.data, g->o.counts.len);
    lua_pushlstring(L, g->o.firsts.data, g->o.firsts.len);
    lua_pushlstring(L, g->o.lasts.data, g->o.lasts.len);
    lua_pushinteger(L, (lua_Integer)g->o.n);
    lua_pushinteger(L, (lua_Integer)total);
    guard_release(g); /* now rather than at the next collection */
    return 6;
}

/* pt.list_rows(lists, limit [, order [, since_us]]) -> rows, total: as pt.list_entries, the
 * entries as a Lua array of {id, count, first_us, last_us}. [-4, +2] (the guard stays on the
 * stack below the results; Lua drops it with the call's frame) */
static int l_list_rows(lua_State *L)
{
    pick_t p = check_pick(L, 2);
    guard_t *g = guard_push(L);
    build_arg(L, 1, &g->l);
    size_t m = 0, total = 0;
    pick_entries(&p, &g->l, &g->idx, &m, &total);
    if (g->idx == NULL) {
        return luaL_error(L, "out of memory");
    }
    lua_createtable(L, (int)m, 0);
    for (size_t i = 0; i < m; i++) {
        const cooc_entry_t *e = &g->l.v[g->idx[i]];
        lua_createtable(L, 0, 4);
        lua_pushlstring(L, e->id, e->len);
        lua_setfield(L, -2, "id");
        lua_pushinteger(L, e->count);
        lua_setfield(L, -2, "count");
        lua_pushinteger(L, e->first_us);
        lua_setfield(L, -2, "first_us");
        lua_pushinteger(L, e->last_us);
        lua_setfield(L, -2, "last_us");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushinteger(L, (lua_Integer)total);
    guard_release(g);
    return 2;
}

/* ---- pt.cooc_top_pairs ---- */

/* A pair (a < b) with what is known of its count. */
typedef struct {
    str_t a, b;
    int64_t count, last_us;
    bool pending; /* a top row that pending entries were added to */
} pair_t;

typedef struct {
    pair_t *v;
    size_t n, cap;
} pairs_t;

static bool pairs_add(pairs_t *p, pair_t x)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        pair_t *v = realloc(p->v, cap * sizeof *v);
        if (v == NULL) {
            return false;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = x;
    return true;
}

static int key_cmp(const pair_t *x, const pair_t *y)
{
    int c = cooc_cmp(x->a.s, x->a.len, y->a.s, y->a.len);
    return c != 0 ? c : cooc_cmp(x->b.s, x->b.len, y->b.s, y->b.len);
}

static int key_qcmp(const void *x, const void *y)
{
    return key_cmp(x, y);
}

/* The answer's order: count descending, then pattern_id_1, then pattern_id_2. */
static int rank_cmp(const pair_t *x, const pair_t *y)
{
    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    return key_cmp(x, y);
}

static int rank_idx(size_t a, size_t b, void *ud)
{
    const pair_t *v = ud;
    return rank_cmp(&v[a], &v[b]);
}

/* A list of one pattern, from the first query (pending) or the second (resolved). */
typedef struct {
    str_t pattern;
    const char *data;
    size_t len;
} row_t;

static int row_qcmp(const void *x, const void *y)
{
    const row_t *r = x, *s = y;
    return cooc_cmp(r->pattern.s, r->pattern.len, s->pattern.s, s->pattern.len);
}

typedef struct {
    pairs_t top;   /* pattern_cooccurrence_top's rows, by key */
    pairs_t exact; /* pairs whose count is known */
    pairs_t bound; /* pending pairs outside the top whose merged part is unknown */
    row_t *rows;
    size_t nrows;
    cooc_src_t *src;
    cooc_list_t *lists; /* every decoded list, kept: pairs point into them */
    size_t nlists, caplists;
    char err[200];
} tp_t;

static void tp_free(tp_t *t)
{
    free(t->top.v);
    free(t->exact.v);
    free(t->bound.v);
    free(t->rows);
    free(t->src);
    for (size_t i = 0; i < t->nlists; i++) {
        cooc_list_free(&t->lists[i]);
    }
    free(t->lists);
}

/* Reads the rows of kind `kind` (and with a pattern in field `a` and a list in `data`) of the
 * rows array at index idx into t->rows, sorted by pattern. */
static bool read_rows(lua_State *L, tp_t *t, int idx, const char *kind)
{
    size_t n = (size_t)luaL_len(L, idx);
    free(t->rows);
    t->rows = malloc((n > 0 ? n : 1) * sizeof *t->rows);
    t->nrows = 0;
    if (t->rows == NULL) {
        snprintf(t->err, sizeof t->err, "out of memory");
        return false;
    }
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        int r = lua_gettop(L);
        size_t kl;
        const char *k = field_str(L, r, "kind", &kl);
        if (k != NULL && strcmp(k, kind) == 0) {
            row_t *w = &t->rows[t->nrows];
            w->pattern.s = field_str(L, r, "a", &w->pattern.len);
            w->data = field_str(L, r, "data", &w->len);
            if (w->pattern.s == NULL || w->data == NULL) {
                lua_pop(L, 1);
                snprintf(t->err, sizeof t->err, "row %zu has no pattern or list", i);
                return false;
            }
            t->nrows++;
        }
        lua_pop(L, 1);
    }
    qsort(t->rows, t->nrows, sizeof *t->rows, row_qcmp);
    free(t->src);
    t->src = malloc((t->nrows > 0 ? t->nrows : 1) * sizeof *t->src);
    if (t->src == NULL) {
        snprintf(t->err, sizeof t->err, "out of memory");
        return false;
    }
    return true;
}

/* Calls fn for each pattern of t->rows with its lists summed, for each partner above it. */
typedef bool (*upper_fn)(tp_t *t, str_t a, const cooc_entry_t *e, void *ud);

static bool each_upper(tp_t *t, upper_fn fn, void *ud)
{
    for (size_t i = 0; i < t->nrows;) {
        size_t j = i;
        while (j < t->nrows && row_qcmp(&t->rows[i], &t->rows[j]) == 0) {
            t->src[j - i] = (cooc_src_t){t->rows[j].data, t->rows[j].len, false};
            j++;
        }
        if (t->nlists == t->caplists) {
            size_t cap = t->caplists ? t->caplists * 2 : 16;
            cooc_list_t *v = realloc(t->lists, cap * sizeof *v);
            if (v == NULL) {
                snprintf(t->err, sizeof t->err, "out of memory");
                return false;
            }
            t->lists = v;
            t->caplists = cap;
        }
        cooc_list_t *l = &t->lists[t->nlists];
        char err[160];
        if (cooc_list_build(l, t->src, j - i, err, sizeof err) != 0) {
            snprintf(t->err, sizeof t->err, "malformed co-occurrence list of %.*s: %s",
                     (int)(t->rows[i].pattern.len > 60 ? 60 : t->rows[i].pattern.len),
                     t->rows[i].pattern.s, err);
            return false;
        }
        t->nlists++;
        str_t a = t->rows[i].pattern;
        for (size_t e = 0; e < l->n; e++) {
            if (cooc_cmp(l->v[e].id, l->v[e].len, a.s, a.len) > 0 && !fn(t, a, &l->v[e], ud)) {
                return false;
            }
        }
        i = j;
    }
    return true;
}

typedef struct {
    const str_t *need; /* patterns resolved by the second query (sorted), or NULL */
    size_t nneed;
    bool all;
    bool full;
    int64_t tmin;
} ctx_t;

static int str_qcmp(const void *x, const void *y)
{
    const str_t *a = x, *b = y;
    return cooc_cmp(a->s, a->len, b->s, b->len);
}

static bool resolved(const ctx_t *c, str_t a)
{
    if (c->all) {
        return true;
    }
    size_t lo = 0, hi = c->nneed;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cooc_cmp(c->need[mid].s, c->need[mid].len, a.s, a.len);
        if (r == 0) {
            return true;
        }
        if (r < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

/* A pending pair of an unresolved pattern: added to its top row, or exact (nothing merged
 * when the top is not full, since then it holds every merged pair), or bounded. */
static bool on_pending(tp_t *t, str_t a, const cooc_entry_t *e, void *ud)
{
    ctx_t *c = ud;
    if (resolved(c, a)) {
        return true;
    }
    pair_t key = {.a = a, .b = {e->id, e->len}};
    pair_t *hit = bsearch(&key, t->top.v, t->top.n, sizeof key, key_qcmp);
    if (hit != NULL) {
        hit->count += e->count;
        if (e->last_us > hit->last_us) {
            hit->last_us = e->last_us;
        }
        hit->pending = true;
        return true;
    }
    key.b = (str_t){e->id, e->len};
    key.count = e->count;
    key.last_us = e->last_us;
    if (!pairs_add(c->full ? &t->bound : &t->exact, key)) {
        snprintf(t->err, sizeof t->err, "out of memory");
        return false;
    }
    return true;
}

/* A pair of a resolved pattern: its count summed over the second query's lists. */
static bool on_resolved(tp_t *t, str_t a, const cooc_entry_t *e, void *ud)
{
    (void)ud;
    pair_t p = {.a = a, .b = {e->id, e->len}, .count = e->count, .last_us = e->last_us};
    if (!pairs_add(&t->exact, p)) {
        snprintf(t->err, sizeof t->err, "out of memory");
        return false;
    }
    return true;
}

static int push_need_all(lua_State *L)
{
    lua_pushnil(L);
    lua_pushboolean(L, 1);
    return 2;
}

/* Several pending pairs of one pattern may need it: each pattern once, sorted. */
static int push_need(lua_State *L, tp_t *t, const size_t *which, size_t n)
{
    pair_t **v = malloc((n > 0 ? n : 1) * sizeof *v);
    if (v == NULL) {
        return luaL_error(L, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = &t->bound.v[which[i]];
    }
    lua_pushnil(L);
    lua_createtable(L, (int)n, 0);
    lua_Integer m = 0;
    /* which[] follows bound's order, which follows each_upper's: patterns ascending */
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cooc_cmp(v[i]->a.s, v[i]->a.len, v[i - 1]->a.s, v[i - 1]->a.len) == 0) {
            continue;
        }
        lua_pushlstring(L, v[i]->a.s, v[i]->a.len);
        lua_rawseti(L, -2, ++m);
    }
    free(v);
    return 2;
}

/* pt.cooc_top_pairs(rows, limit [, need, rows2]) -> pairs | nil, need
 *
 * The top `limit` pairs by count (ties by pattern_id_1, pattern_id_2), exactly, from rows: one
 * row of kind "h" with cnt = pt_cooccurrence_top_keep(); rows of kind "t", pattern_cooccurrence_top
 * (a, b, cnt, l: the best `keep` pairs of the merged lists, all of them when fewer); rows of
 * kind "p", the pending lists (a = pattern, data). A pair outside the top counts at most what
 * the top's last row counts in the merged lists (they are its best), so a pending pair outside
 * it whose bound could still rank within `limit` needs its pattern's merged list: then the
 * answer is nil and the patterns to read (an array of ids; true for every pattern, when keep is
 * below limit), and the caller calls again with them and rows2, that read's rows of kind "r"
 * (a, data: those patterns' merged and pending lists, read in a later snapshot, and used whole
 * for those patterns). pairs = {ids1, ids2, counts, lasts, n} as array literals. [-4, +2] */
static int l_cooc_top_pairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer limit = luaL_checkinteger(L, 2);
    luaL_argcheck(L, limit >= 1 && limit <= MAX_LIMIT, 2, "out of range");
    bool second = !lua_isnoneornil(L, 3);
    bool all = second && lua_type(L, 3) == LUA_TBOOLEAN && lua_toboolean(L, 3);
    if (second) {
        luaL_checktype(L, 4, LUA_TTABLE);
        if (!all) {
            luaL_checktype(L, 3, LUA_TTABLE);
        }
    }
    ctx_t c = {.all = all};
    tp_t t = {0};
    str_t *need = NULL;
    size_t nneed = 0;

    /* the header and the top rows; the top's array exists even when empty, for qsort and
     * bsearch (which must not be given NULL) */
    t.top.cap = 64;
    t.top.v = malloc(t.top.cap * sizeof *t.top.v);
    if (t.top.v == NULL) {
        return luaL_error(L, "out of memory");
    }
    int64_t keep = -1;
    size_t n1 = (size_t)luaL_len(L, 1);
    for (size_t i = 1; i <= n1; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i);
        int r = lua_gettop(L);
        size_t kl;
        const char *k = field_str(L, r, "kind", &kl);
        if (k != NULL && strcmp(k, "h") == 0) {
            keep = field_int(L, r, "cnt");
        } else if (k != NULL && strcmp(k, "t") == 0) {
            pair_t p = {0};
            p.a.s = field_str(L, r, "a", &p.a.len);
            p.b.s = field_str(L, r, "b", &p.b.len);
            p.count = field_int(L, r, "cnt");
            p.last_us = field_int(L, r, "l");
            if (p.a.s == NULL || p.b.s == NULL || !pairs_add(&t.top, p)) {
                lua_pop(L, 1);
                tp_free(&t);
                return luaL_error(L, "pt.cooc_top_pairs: bad top row %d", (int)i);
            }
        }
        lua_pop(L, 1);
    }
    if (keep < 0) {
        tp_free(&t);
        return luaL_error(L, "pt.cooc_top_pairs: no header row");
    }
    c.full = t.top.n >= (size_t)keep;
    /* the top's last row in the merged lists bounds every other merged pair */
    c.tmin = 0;
    for (size_t i = 0; i < t.top.n; i++) {
        if (i == 0 || t.top.v[i].count < c.tmin) {
            c.tmin = t.top.v[i].count;
        }
    }
    if (c.full && (size_t)keep < (size_t)limit && !all) {
        /* pairs outside the top and with nothing pending may rank within limit */
        tp_free(&t);
        return push_need_all(L);
    }
    qsort(t.top.v, t.top.n, sizeof *t.top.v, key_qcmp);

    if (second && !all) {
        nneed = (size_t)luaL_len(L, 3);
        need = malloc((nneed > 0 ? nneed : 1) * sizeof *need);
        if (need == NULL) {
            tp_free(&t);
            return luaL_error(L, "out of memory");
        }
        for (size_t i = 0; i < nneed; i++) {
            lua_rawgeti(L, 3, (lua_Integer)i + 1);
            need[i].s = luaL_checklstring(L, -1, &need[i].len);
            lua_pop(L, 1);
        }
        qsort(need, nneed, sizeof *need, str_qcmp);
    }
    c.need = need;
    c.nneed = nneed;

    bool ok = true;
    if (!all) {
        ok = read_rows(L, &t, 1, "p") && each_upper(&t, on_pending, &c);
        /* the top rows of unresolved patterns are exact now (their pending part added) */
        for (size_t i = 0; ok && i < t.top.n; i++) {
            if (!resolved(&c, t.top.v[i].a) && !pairs_add(&t.exact, t.top.v[i])) {
                snprintf(t.err, sizeof t.err, "out of memory");
                ok = false;
            }
        }
    }
    if (ok && second) {
        ok = read_rows(L, &t, 4, "r") && each_upper(&t, on_resolved, &c);
    }
    if (!ok) {
        free(need);
        tp_free(&t);
        return luaL_error(L, "pt.cooc_top_pairs: %s", t.err);
    }

    size_t idx[MAX_LIMIT];
    size_t m = cooc_topk(t.exact.n, (size_t)limit, rank_idx, t.exact.v, idx);
    /* which bounded pairs could rank within limit: at most tmin merged plus their pending */
    if (!second && t.bound.n > 0) {
        size_t *which = malloc(t.bound.n * sizeof *which);
        size_t nw = 0;
        if (which == NULL) {
            tp_free(&t);
            return luaL_error(L, "out of memory");
        }
        for (size_t i = 0; i < t.bound.n; i++) {
            pair_t b = t.bound.v[i];
            b.count += c.tmin;
            if (m < (size_t)limit || rank_cmp(&b, &t.exact.v[idx[m - 1]]) < 0) {
                which[nw++] = i;
            }
        }
        if (nw > 0) {
            int rc = push_need(L, &t, which, nw);
            free(which);
            tp_free(&t);
            return rc;
        }
        free(which);
    }
    lits_t o;
    pg_buf_t b;
    lits_init(&o);
    pg_buf_init(&b);
    pg_buf_putc(&b, '{');
    for (size_t i = 0; i < m; i++) {
        const pair_t *p = &t.exact.v[idx[i]];
        lits_add(&o, p->a.s, p->a.len, p->count, p->last_us, p->last_us);
        if (i > 0) {
            pg_array_next(&b);
        }
        pg_array_text(&b, p->b.s, p->b.len);
    }
    pg_array_end(&b);
    lits_end(&o);
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, o.ids.data, o.ids.len);
    lua_setfield(L, -2, "ids1");
    lua_pushlstring(L, b.data, b.len);
    lua_setfield(L, -2, "ids2");
    lua_pushlstring(L, o.counts.data, o.counts.len);
    lua_setfield(L, -2, "counts");
    lua_pushlstring(L, o.lasts.data, o.lasts.len);
    lua_setfield(L, -2, "lasts");
    lua_pushinteger(L, (lua_Integer)m);
    lua_setfield(L, -2, "n");
    lits_free(&o);
    pg_buf_free(&b);
    free(need);
    tp_free(&t);
    return 1;
}

void l_cooc_register(lua_State *L)
{
    lua_pushcfunction(L, l_list_entries);
    lua_setfield(L, -2, "list_entries");
    lua_pushcfunction(L, l_list_rows);
    lua_setfield(L, -2, "list_rows");
    lua_pushcfunction(L, l_cooc_top_pairs);
    lua_setfield(L, -2, "cooc_top_pairs");
}
