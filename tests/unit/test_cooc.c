/* The partner lists (cooc.c) and the co-occurrence routes' ranking over them (l_cooc.c),
 * against a brute-force model: random pairs whose counts are split between merged lists and
 * several flushes' pending lists, with a pattern_cooccurrence_top of varying size. */
#include "check.h"
#include "cooc.h"
#include "l_pt.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NP 14
#define NF 3

/* byte order matters: "\xc3\xa9" sorts above every ASCII id, "p1" below "p10" */
static const char *const ids[NP] = {"a",    "b", "p1", "p10", "p2", "p2\"q",
                                    "r\\s", "x", "xy", "xyz", "z",  "\xc3\xa9t\xc3\xa9",
                                    "Z",    "0"};

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static int64_t rnd(int64_t n)
{
    return (int64_t)(next_rand() % (uint64_t)n);
}

static int idcmp(int x, int y)
{
    return cooc_cmp(ids[x], strlen(ids[x]), ids[y], strlen(ids[y]));
}

/* counts[f][x][y] for x != y (both sides kept equal): f = 0 merged, 1..NF pending flushes */
static int64_t cnt[NF + 1][NP][NP], last[NF + 1][NP][NP];

static void make_model(int density, int64_t maxc)
{
    memset(cnt, 0, sizeof cnt);
    memset(last, 0, sizeof last);
    for (int f = 0; f <= NF; f++) {
        for (int x = 0; x < NP; x++) {
            for (int y = x + 1; y < NP; y++) {
                if (rnd(100) < density) {
                    cnt[f][x][y] = cnt[f][y][x] = 1 + rnd(maxc);
                    last[f][x][y] = last[f][y][x] = 1000 + rnd(1000000);
                }
            }
        }
    }
}

/* Pattern x's list in source f, partners in byte order; false when it has none. */
static bool list_of(int f, int x, pg_buf_t *b)
{
    int order[NP], n = 0;
    for (int y = 0; y < NP; y++) {
        if (y != x && cnt[f][x][y] > 0) {
            order[n++] = y;
        }
    }
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && idcmp(order[j], order[j - 1]) < 0; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    pg_buf_reset(b);
    cooc_writer_t w;
    cooc_writer_init(&w, b);
    for (int i = 0; i < n; i++) {
        cooc_write(&w, ids[order[i]], strlen(ids[order[i]]), cnt[f][x][order[i]],
                   last[f][x][order[i]]);
    }
    return n > 0;
}

typedef struct {
    int a, b; /* ids[a] < ids[b] */
    int64_t count, last;
} tpair_t;

static int rank(const tpair_t *x, const tpair_t *y)
{
    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    int c = idcmp(x->a, y->a);
    return c != 0 ? c : idcmp(x->b, y->b);
}

/* Every pair with count > 0 in sources [f0, f1], summed, best first. */
static int all_pairs(int f0, int f1, tpair_t *out)
{
    int n = 0;
    for (int x = 0; x < NP; x++) {
        for (int y = 0; y < NP; y++) {
            if (idcmp(x, y) >= 0) {
                continue;
            }
            tpair_t p = {x, y, 0, 0};
            for (int f = f0; f <= f1; f++) {
                p.count += cnt[f][x][y];
                if (cnt[f][x][y] > 0 && last[f][x][y] > p.last) {
                    p.last = last[f][x][y];
                }
            }
            if (p.count > 0) {
                int j = n++;
                while (j > 0 && rank(&p, &out[j - 1]) < 0) {
                    out[j] = out[j - 1];
                    j--;
                }
                out[j] = p;
            }
        }
    }
    return n;
}

/* Parses a one-dimensional array literal of quoted or bare elements. */
static int parse_array(const char *s, char out[][64], int max)
{
    int n = 0;
    if (*s++ != '{') {
        return -1;
    }
    while (*s && *s != '}' && n < max) {
        size_t k = 0;
        if (*s == '"') {
            s++;
            while (*s && *s != '"') {
                if (*s == '\\') {
                    s++;
                }
                out[n][k++] = *s++;
            }
            s++;
        } else {
            while (*s && *s != ',' && *s != '}') {
                out[n][k++] = *s++;
            }
        }
        out[n++][k] = '\0';
        if (*s == ',') {
            s++;
        }
    }
    return n;
}

static void set_str(lua_State *L, const char *k, const char *v, size_t len)
{
    lua_pushlstring(L, v, len);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, int64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* Appends to the array at the top the pattern lists of sources f0..f1 as rows of `kind`, for
 * the patterns with want[x] (NULL: all). */
static void add_list_rows(lua_State *L, const char *kind, int f0, int f1, const bool *want,
                          pg_buf_t *b)
{
    for (int f = f0; f <= f1; f++) {
        for (int x = 0; x < NP; x++) {
            if ((want == NULL || want[x]) && list_of(f, x, b)) {
                lua_createtable(L, 0, 3);
                set_str(L, "kind", kind, strlen(kind));
                set_str(L, "a", ids[x], strlen(ids[x]));
                set_str(L, "data", b->data, b->len);
                lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
            }
        }
    }
}

static int need_calls, need_all_calls, direct_calls;

/* One /cooccurrence/top answer over the model with a top of `keep`, checked against it. */
static void check_top(lua_State *L, int keep, int limit, pg_buf_t *b)
{
    static tpair_t merged[NP * NP], truth[NP * NP];
    int nm = all_pairs(0, 0, merged);
    int nt = all_pairs(0, NF, truth);
    lua_getglobal(L, "pt");
    lua_getfield(L, -1, "cooc_top_pairs");
    lua_newtable(L); /* rows */
    lua_createtable(L, 0, 2);
    set_str(L, "kind", "h", 1);
    set_int(L, "cnt", keep);
    lua_rawseti(L, -2, 1);
    for (int i = 0; i < nm && i < keep; i++) {
        lua_createtable(L, 0, 5);
        set_str(L, "kind", "t", 1);
        set_str(L, "a", ids[merged[i].a], strlen(ids[merged[i].a]));
        set_str(L, "b", ids[merged[i].b], strlen(ids[merged[i].b]));
        set_int(L, "cnt", merged[i].count);
        set_int(L, "l", merged[i].last);
        lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    }
    add_list_rows(L, "p", 1, NF, NULL, b);
    lua_pushvalue(L, -1);
    int rows_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushinteger(L, limit);
    if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
        fprintf(stderr, "cooc_top_pairs: %s\n", lua_tostring(L, -1));
        CHECK(0);
        lua_settop(L, 0);
        return;
    }
    if (lua_isnil(L, -2)) {
        /* the patterns to read: check each is one with pending pairs, then read them */
        bool want[NP] = {0};
        bool all = lua_type(L, -1) == LUA_TBOOLEAN;
        if (all) {
            need_all_calls++;
            CHECK(keep < limit && nm >= keep);
        } else {
            need_calls++;
            CHECK(lua_istable(L, -1));
            lua_Integer nn = luaL_len(L, -1);
            CHECK(nn > 0);
            for (lua_Integer i = 1; i <= nn; i++) {
                lua_rawgeti(L, -1, i);
                const char *s = lua_tostring(L, -1);
                int found = -1;
                for (int x = 0; x < NP; x++) {
                    found = strcmp(s, ids[x]) == 0 ? x : found;
                }
                CHECK(found >= 0);
                if (found >= 0) {
                    want[found] = true;
                }
                lua_pop(L, 1);
            }
        }
        int need_idx = lua_gettop(L);
        lua_getglobal(L, "pt");
        lua_getfield(L, -1, "cooc_top_pairs");
        lua_rawgeti(L, LUA_REGISTRYINDEX, rows_ref);
        lua_pushinteger(L, limit);
        lua_pushvalue(L, need_idx);
        lua_newtable(L);
        add_list_rows(L, "r", 0, NF, all ? NULL : want, b);
        if (lua_pcall(L, 4, 2, 0) != LUA_OK) {
            fprintf(stderr, "cooc_top_pairs (second): %s\n", lua_tostring(L, -1));
            CHECK(0);
            lua_settop(L, 0);
            return;
        }
    } else {
        direct_calls++;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, rows_ref);
    CHECK(lua_istable(L, -2));
    if (!lua_istable(L, -2)) {
        lua_settop(L, 0);
        return;
    }
    lua_pop(L, 1);
    static char a1[NP * NP][64], a2[NP * NP][64], c[NP * NP][64], l[NP * NP][64];
    lua_getfield(L, -1, "ids1");
    int n1 = parse_array(lua_tostring(L, -1), a1, NP * NP);
    lua_getfield(L, -2, "ids2");
    int n2 = parse_array(lua_tostring(L, -1), a2, NP * NP);
    lua_getfield(L, -3, "counts");
    int n3 = parse_array(lua_tostring(L, -1), c, NP * NP);
    lua_getfield(L, -4, "lasts");
    int n4 = parse_array(lua_tostring(L, -1), l, NP * NP);
    lua_getfield(L, -5, "n");
    int n = (int)lua_tointeger(L, -1);
    int want_n = nt < limit ? nt : limit;
    CHECK_EQ_INT(n, want_n);
    CHECK(n1 == n && n2 == n && n3 == n && n4 == n);
    for (int i = 0; i < n && i < want_n && n1 == n && n2 == n && n3 == n && n4 == n; i++) {
        CHECK_EQ_STR(a1[i], ids[truth[i].a]);
        CHECK_EQ_STR(a2[i], ids[truth[i].b]);
        CHECK_EQ_INT(atoll(c[i]), truth[i].count);
        CHECK_EQ_INT(atoll(l[i]), truth[i].last);
    }
    lua_settop(L, 0);
}

/* /{id}/cooccurring's partners of x, top `limit` by count or all in partner order. */
static void check_partners(lua_State *L, int x, int limit, pg_buf_t *b)
{
    lua_getglobal(L, "pt");
    lua_getfield(L, -1, "list_entries");
    lua_newtable(L);
    for (int f = 0; f <= NF; f++) {
        if (list_of(f, x, b)) {
            lua_pushlstring(L, b->data, b->len);
            lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
        }
    }
    lua_pushinteger(L, limit);
    if (lua_pcall(L, 2, 6, 0) != LUA_OK) {
        fprintf(stderr, "list_entries: %s\n", lua_tostring(L, -1));
        CHECK(0);
        lua_settop(L, 0);
        return;
    }
    /* expected: x's partners with their sums */
    tpair_t want[NP];
    int nw = 0;
    for (int y = 0; y < NP; y++) {
        tpair_t p = {y, y, 0, 0};
        for (int f = 0; f <= NF; f++) {
            p.count += cnt[f][x][y];
            if (cnt[f][x][y] > 0 && last[f][x][y] > p.last) {
                p.last = last[f][x][y];
            }
        }
        if (y == x || p.count == 0) {
            continue;
        }
        int j = nw++;
        while (j > 0 && (limit == 0 ? idcmp(y, want[j - 1].a) < 0 : rank(&p, &want[j - 1]) < 0)) {
            want[j] = want[j - 1];
            j--;
        }
        want[j] = p;
    }
    CHECK_EQ_INT(lua_tointeger(L, -1), nw); /* total */
    if (limit > 0 && nw > limit) {
        nw = limit;
    }
    static char a[NP][64], c[NP][64], l[NP][64];
    int na = parse_array(lua_tostring(L, -6), a, NP);
    int nc = parse_array(lua_tostring(L, -5), c, NP);
    int nl = parse_array(lua_tostring(L, -3), l, NP);
    CHECK_EQ_INT(lua_tointeger(L, -2), nw);
    CHECK(na == nw && nc == nw && nl == nw);
    for (int i = 0; i < nw && na == nw && nc == nw && nl == nw; i++) {
        CHECK_EQ_STR(a[i], ids[want[i].a]);
        CHECK_EQ_INT(atoll(c[i]), want[i].count);
        CHECK_EQ_INT(atoll(l[i]), want[i].last);
    }
    lua_settop(L, 0);
}

static int check_bytes(const char *list, size_t n)
{
    char err[128];
    int64_t e, low;
    return cooc_check(list, n, "c", 1, &e, &low, err, sizeof err);
}

static void test_malformed(void)
{
    pg_buf_t b;
    pg_buf_init(&b);
    char err[128];
    int64_t n, low;
    cooc_writer_t w;
    cooc_writer_init(&w, &b);
    cooc_write(&w, "b", 1, 3, 10);
    cooc_write(&w, "d", 1, 1, 20);
    CHECK(cooc_check(b.data, b.len, "c", 1, &n, &low, err, sizeof err) == 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(low, 1);
    /* truncated anywhere */
    for (size_t cut = 0; cut < b.len; cut++) {
        /* cut after the header or the first entry: a shorter list, valid */
        CHECK(cooc_check(b.data, cut, "c", 1, &n, &low, err, sizeof err) < 0 || cut == 1 ||
              cut == 6);
    }
    /* out of order */
    pg_buf_reset(&b);
    cooc_writer_init(&w, &b);
    cooc_write(&w, "d", 1, 1, 20);
    cooc_write(&w, "b", 1, 3, 10);
    CHECK(cooc_check(b.data, b.len, "c", 1, &n, &low, err, sizeof err) < 0);
    /* count below 1 */
    pg_buf_reset(&b);
    cooc_writer_init(&w, &b);
    cooc_write(&w, "b", 1, 0, 10);
    CHECK(cooc_check(b.data, b.len, "c", 1, &n, &low, err, sizeof err) < 0);
    /* by hand, each a valid list but for one thing */
#define BYTES(s) s, sizeof s - 1
    CHECK(check_bytes(BYTES("\x02\x00\x02xy\x01\x00\x01\x01z\x01\x00")) == 0); /* xy, xz */
    CHECK(check_bytes(BYTES("\x01\x00\x02xy\x01\x00")) < 0);                   /* version 1 */
    CHECK(check_bytes(BYTES("\x02\x00\x02xy\x01\x00\x03\x01z\x01\x00")) < 0);  /* shared 3 > 2 */
    CHECK(check_bytes(BYTES("\x02\x00\x00\x01\x00")) < 0);                     /* empty partner */
    CHECK(check_bytes(BYTES("\x02\x00\x02xy\x01\x00\x01\x01"
                            "a\x01\x00")) < 0);                                /* xa < xy */
    CHECK(check_bytes(BYTES("\x02\x00\x02xy\x01\x00\x02\x01z\x01\x00")) == 0); /* xyz */
    CHECK(check_bytes(BYTES("\x02\x00\x02xy\x01\x00\x01\x01y\x01\x00")) < 0);  /* xy again */
    CHECK(check_bytes(BYTES("\x02\x00\x02xy\x01\x00\x00\x01x\x01\x00")) < 0);  /* x < xy */
    CHECK(check_bytes(BYTES("\x02\x00\x01x\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02\x00")) < 0);
    CHECK(check_bytes(BYTES("\x02\x00\x01x\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01\x00")) < 0);
    CHECK(check_bytes(BYTES("\x02\x00\x01x\x01\x80")) < 0); /* varint cut */
#undef BYTES
    /* shared + n over 255 */
    pg_buf_reset(&b);
    char id[256];
    memset(id, 'q', sizeof id);
    cooc_writer_init(&w, &b);
    cooc_write(&w, id, 255, 1, 0);
    CHECK(cooc_check(b.data, b.len, "c", 1, &n, &low, err, sizeof err) == 0);
    pg_buf_putc(&b, (char)255);
    pg_buf_putc(&b, 1);
    pg_buf_putc(&b, 'r');
    pg_buf_putc(&b, 1);
    pg_buf_putc(&b, 0);
    CHECK(cooc_check(b.data, b.len, "c", 1, &n, &low, err, sizeof err) < 0);
    pg_buf_free(&b);
}

/* Every value survives the encoding: long shared prefixes, extreme counts and times (their
 * differences wrap), against what was written. */
static void test_roundtrip(void)
{
    static const struct {
        const char *id;
        int64_t count, last;
    } e[] = {
        {"a", 1, 0},
        {"pat-000001", INT64_MAX, INT64_MIN},
        {"pat-000001x", 127, INT64_MAX},
        {"pat-000002", 128, -1},
        {"pat-0001", 16383, 1700000000000000},
        {"pat-00010", 16384, 1700000003600000},
        {"pat-1", 2, -1700000000000000},
        {"\xc3\xa9t\xc3\xa9", 3, 5},
    };
    size_t ne = sizeof e / sizeof e[0];
    pg_buf_t b;
    pg_buf_init(&b);
    cooc_writer_t w;
    cooc_writer_init(&w, &b);
    for (size_t i = 0; i < ne; i++) {
        cooc_write(&w, e[i].id, strlen(e[i].id), e[i].count, e[i].last);
    }
    cooc_iter_t it;
    CHECK(cooc_iter_init(&it, b.data, b.len));
    size_t i = 0;
    while (cooc_iter_next(&it)) {
        CHECK(i < ne);
        if (i >= ne) {
            break;
        }
        CHECK(it.len == strlen(e[i].id) && memcmp(it.id, e[i].id, it.len) == 0);
        CHECK_EQ_INT(it.count, e[i].count);
        CHECK_EQ_INT(it.last_us, e[i].last);
        i++;
    }
    CHECK(it.err == NULL);
    CHECK_EQ_INT(i, ne);
    pg_buf_free(&b);
}

/* Version 3 (usage) lists: first times survive the encoding, merging takes the earliest first
 * and the latest last, a version 2 and a version 3 list do not merge, a first after its last
 * is malformed. */
static void test_usage_lists(void)
{
    pg_buf_t a, b, out;
    pg_buf_init(&a);
    pg_buf_init(&b);
    pg_buf_init(&out);
    cooc_writer_t w;
    cooc_writer_init_v(&w, &a, COOC_USAGE_VERSION);
    cooc_write_usage(&w, "agent-1", 7, 3, 100, 300);
    cooc_write_usage(&w, "agent-2", 7, 1, INT64_MIN, INT64_MAX);
    cooc_write_usage(&w, "b", 1, INT64_MAX / 2, -5, -5);
    cooc_writer_init_v(&w, &b, COOC_USAGE_VERSION);
    cooc_write_usage(&w, "agent-1", 7, 2, 50, 200);
    cooc_write_usage(&w, "c", 1, 1, 7, 9);
    cooc_src_t src[2] = {{a.data, a.len, false}, {b.data, b.len, true}};
    int64_t n, low;
    char err[128];
    CHECK(cooc_merge(src, 2, "agent-2", 7, &out, &n, &low, NULL, NULL, err, sizeof err) == 0);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(low, 1);
    static const struct {
        const char *id;
        int64_t count, first, last;
    } want[] = {{"agent-1", 5, 50, 300},
                {"agent-2", 1, INT64_MIN, INT64_MAX},
                {"b", INT64_MAX / 2, -5, -5},
                {"c", 1, 7, 9}};
    cooc_iter_t it;
    CHECK(cooc_iter_init(&it, out.data, out.len));
    CHECK_EQ_INT(it.version, COOC_USAGE_VERSION);
    size_t i = 0;
    while (cooc_iter_next(&it) && i < 4) {
        CHECK(it.len == strlen(want[i].id) && memcmp(it.id, want[i].id, it.len) == 0);
        CHECK_EQ_INT(it.count, want[i].count);
        CHECK_EQ_INT(it.first_us, want[i].first);
        CHECK_EQ_INT(it.last_us, want[i].last);
        i++;
    }
    CHECK(it.err == NULL);
    CHECK_EQ_INT(i, 4);
    /* versions do not mix */
    pg_buf_reset(&b);
    cooc_writer_init(&w, &b);
    cooc_write(&w, "agent-1", 7, 1, 5);
    src[1] = (cooc_src_t){b.data, b.len, true};
    pg_buf_reset(&out);
    CHECK(cooc_merge(src, 2, "x", 1, &out, &n, &low, NULL, NULL, err, sizeof err) < 0);
    /* a first time after the last: last 10, last - first = 2^64 - 1 wraps to first 11 */
#define BYTES(s) s, sizeof s - 1
    CHECK(check_bytes(BYTES("\x03\x00\x01x\x01\x14\x00")) == 0);
    CHECK(check_bytes(BYTES("\x03\x00\x01x\x01\x14\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")) < 0);
    CHECK(check_bytes(BYTES("\x03\x00\x01x\x01\x14")) < 0); /* its first cut off */
#undef BYTES
    pg_buf_free(&a);
    pg_buf_free(&b);
    pg_buf_free(&out);
}

/* pt.list_rows over random usage lists against a model: every order, limit and since. */
static void test_usage_rows(lua_State *L)
{
    enum { NA = 40, NL = 4 };
    for (int trial = 0; trial < 40; trial++) {
        int64_t mc[NA] = {0}, mf[NA], ml[NA];
        lua_getglobal(L, "pt");
        lua_getfield(L, -1, "list_rows");
        lua_newtable(L);
        for (int f = 0; f < NL; f++) {
            pg_buf_t b;
            pg_buf_init(&b);
            cooc_writer_t w;
            cooc_writer_init_v(&w, &b, COOC_USAGE_VERSION);
            for (int x = 0; x < NA; x++) {
                if (rnd(3) != 0) {
                    continue;
                }
                int64_t c = 1 + (int64_t)rnd(5), fst = (int64_t)rnd(50),
                        lst = fst + (int64_t)rnd(50);
                char id[16];
                snprintf(id, sizeof id, "a%02d", x);
                cooc_write_usage(&w, id, strlen(id), c, fst, lst);
                mf[x] = mc[x] == 0 || fst < mf[x] ? fst : mf[x];
                ml[x] = mc[x] == 0 || lst > ml[x] ? lst : ml[x];
                mc[x] += c;
            }
            lua_pushlstring(L, b.data, b.len);
            lua_rawseti(L, -2, f + 1);
            pg_buf_free(&b);
        }
        int limit = (int)rnd(6);
        bool by_last = trial % 2 == 1;
        int64_t since = (int64_t)rnd(80);
        lua_pushinteger(L, limit);
        lua_pushstring(L, by_last ? "last" : "count");
        lua_pushinteger(L, since);
        if (lua_pcall(L, 4, 2, 0) != LUA_OK) {
            fprintf(stderr, "list_rows: %s\n", lua_tostring(L, -1));
            CHECK(0);
            lua_settop(L, 0);
            continue;
        }
        /* the model's answer: entries last used at or after since, ranked */
        int order[NA], n = 0;
        for (int x = 0; x < NA; x++) {
            if (mc[x] == 0 || ml[x] < since) {
                continue;
            }
            int j = n++;
            while (j > 0) {
                int y = order[j - 1];
                bool before = limit == 0 ? x < y
                              : by_last  ? (ml[x] > ml[y] || (ml[x] == ml[y] && x < y))
                                         : (mc[x] > mc[y] || (mc[x] == mc[y] && x < y));
                if (!before) {
                    break;
                }
                order[j] = order[j - 1];
                j--;
            }
            order[j] = x;
        }
        CHECK_EQ_INT(lua_tointeger(L, -1), n);
        int shown = limit > 0 && n > limit ? limit : n;
        CHECK_EQ_INT(luaL_len(L, -2), shown);
        for (int i = 0; i < shown && luaL_len(L, -2) == shown; i++) {
            lua_rawgeti(L, -2, i + 1);
            lua_getfield(L, -1, "id");
            char id[16];
            snprintf(id, sizeof id, "a%02d", order[i]);
            CHECK_EQ_STR(lua_tostring(L, -1), id);
            lua_getfield(L, -2, "count");
            CHECK_EQ_INT(lua_tointeger(L, -1), mc[order[i]]);
            lua_getfield(L, -3, "first_us");
            CHECK_EQ_INT(lua_tointeger(L, -1), mf[order[i]]);
            lua_getfield(L, -4, "last_us");
            CHECK_EQ_INT(lua_tointeger(L, -1), ml[order[i]]);
            lua_pop(L, 5);
        }
        lua_settop(L, 0);
    }
}

int main(void)
{
    test_usage_lists();
    test_malformed();
    test_roundtrip();
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    l_pt_open(L);
    lua_setglobal(L, "pt");
    pg_buf_t b;
    pg_buf_init(&b);
    /* a malformed list is an error, not an answer */
    lua_getglobal(L, "pt");
    lua_getfield(L, -1, "list_entries");
    lua_newtable(L);
    lua_pushliteral(L, "\x01\x05short");
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, 5);
    CHECK(lua_pcall(L, 2, 6, 0) != LUA_OK);
    lua_settop(L, 0);
    test_usage_rows(L);

    static const int keeps[] = {1, 2, 3, 5, 8, 20, 1000};
    static const int limits[] = {1, 2, 3, 5, 20, 100};
    for (int trial = 0; trial < 60; trial++) {
        make_model(10 + (int)rnd(60), trial % 3 == 0 ? 3 : 1000);
        if (trial % 5 == 4) {
            /* nothing merged yet: an empty top, every pair pending */
            memset(cnt[0], 0, sizeof cnt[0]);
        }
        for (size_t k = 0; k < sizeof keeps / sizeof keeps[0]; k++) {
            for (size_t m = 0; m < sizeof limits / sizeof limits[0]; m++) {
                check_top(L, keeps[k], limits[m], &b);
            }
        }
        for (int x = 0; x < NP; x++) {
            check_partners(L, x, 0, &b);
            check_partners(L, x, 3, &b);
        }
    }
    /* every path was taken: answered from the top and pending lists, after reading some
     * patterns' lists, after reading all */
    CHECK(direct_calls > 0);
    CHECK(need_calls > 0);
    CHECK(need_all_calls > 0);
    printf("top pairs: %d direct, %d after reading some lists, %d after reading all\n",
           direct_calls, need_calls, need_all_calls);
    pg_buf_free(&b);
    lua_close(L);
    return check_done("test_cooc");
}
