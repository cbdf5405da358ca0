#include "agg.h"
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define H (3600LL * 1000000LL)

typedef struct {
    const char *pattern, *agent;
    int64_t count, first, last;
    int found;
} want_use_t;

static want_use_t *wanted;
static size_t n_wanted;

static void match_use(const agg_use_t *u, void *ud)
{
    int *unexpected = ud;
    for (size_t i = 0; i < n_wanted; i++) {
        if (strcmp(wanted[i].pattern, u->pattern) == 0 && strcmp(wanted[i].agent, u->agent) == 0) {
            CHECK_EQ_INT(u->count, wanted[i].count);
            CHECK_EQ_INT(u->first_us, wanted[i].first);
            CHECK_EQ_INT(u->last_us, wanted[i].last);
            CHECK_EQ_INT(u->pattern_len, strlen(wanted[i].pattern));
            wanted[i].found++;
            return;
        }
    }
    (*unexpected)++;
}

static int64_t hour_sum;
static void sum_hours(const agg_hour_t *h, void *ud)
{
    (void)ud;
    hour_sum += h->count;
}

/* A big batch grows the tables; after a reset the kept capacity must not count as held data,
 * or back-pressure (held bytes >= max_buffer_mb) would never release. */
static void test_bytes_after_reset(void)
{
    agg_t *a = agg_new();
    char p[32], g[32];
    for (int i = 0; i < 200000; i++) {
        int np = snprintf(p, sizeof p, "pattern-%d", i);
        int ng = snprintf(g, sizeof g, "agent-%d", i % 1000);
        agg_add_use(a, p, (size_t)np, g, (size_t)ng, (int64_t)(i % 5000) * H);
        agg_add_pair(a, p, (size_t)np, "other", 5, 0);
    }
    size_t full = agg_bytes(a);
    CHECK(full > 200000u * 3 * 16); /* uses, hours, pairs: at least 16 bytes an entry each */
    agg_reset(a);
    CHECK_EQ_INT(agg_bytes(a), 0);
    agg_add_use(a, "p", 1, "a", 1, 0);
    CHECK(agg_bytes(a) > 0 && agg_bytes(a) < 4096);
    agg_free(a);
}

/* A model-based check of the slot tables (strings by idx, times as trefs into the batch's
 * times table, 32-bit counts): random events go to two aggregates while plain arrays keep what
 * each should hold, and every entry agg reports is compared with them, for each aggregate
 * alone, after agg_merge, and after agg_reset and reuse. Every expected value comes from the
 * model, none from agg. */
#define NP 30
#define NA 5
#define EVENTS 1500
#define EVENT_USES 5  /* at most, an event */
#define EVENT_PAIRS 4 /* at most, an event */
#define MAX_HOURS (EVENTS * EVENT_USES)

/* Names that byte order (memcmp, then length) tells apart in ways a signed or length-first
 * comparison would not. */
static const char *const pats[] = {
    /* prefixes of each other */
    "a", "ab", "abc", "abd", "p", "pa", "pat-1", "pat-10", "pat-100", "pat-2", "pat-20", "0", "00",
    /* bytes above 0x7f, which memcmp orders after ASCII */
    "a\xff", "p\x80", "\xc3\xa9t\xc3\xa9", "\xff", "\xff\xff", "\x7f",
    /* upper case before lower, punctuation, long IDs */
    "b", "B", "z", "01", "9", "~", " space", "x\"q", "tab\t", "a-long-pattern-identifier-0001",
    "a-long-pattern-identifier-0002"};
static const char *const agents[] = {"alice", "bob", "a", "agent-\xe2\x82\xac", "carol"};
_Static_assert(sizeof pats / sizeof pats[0] == NP, "NP names");
_Static_assert(sizeof agents / sizeof agents[0] == NA, "NA names");

typedef struct {
    int64_t count, first, last;
} m_use_t;

typedef struct {
    int pat;
    int64_t hour, count;
} m_hour_t;

typedef struct {
    int64_t count, last;
} m_pair_t;

typedef struct {
    m_use_t use[NP][NA];
    m_pair_t pair[NP][NP]; /* [lower][higher] in model_cmp's order */
    m_hour_t hours[MAX_HOURS];
    size_t n_hours;
    bool pat_used[NP]; /* by a use or a pair */
    int64_t events;
} model_t;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

/* Byte order as the model sees it: unsigned bytes, then the shorter first. */
static int model_cmp(const char *x, const char *y)
{
    size_t lx = strlen(x), ly = strlen(y), n = lx < ly ? lx : ly;
    for (size_t i = 0; i < n; i++) {
        unsigned char cx = (unsigned char)x[i], cy = (unsigned char)y[i];
        if (cx != cy) {
            return cx < cy ? -1 : 1;
        }
    }
    return lx < ly ? -1 : lx > ly ? 1 : 0;
}

/* floor(t / 1 h), toward -infinity */
static int64_t model_hour(int64_t t)
{
    int64_t q = t / H;
    if (q * H > t) {
        q--;
    }
    return q;
}

static void model_use(model_t *m, int p, int g, int64_t t)
{
    m_use_t *u = &m->use[p][g];
    if (u->count == 0 || t < u->first) {
        u->first = t;
    }
    if (u->count == 0 || t > u->last) {
        u->last = t;
    }
    u->count++;
    m->pat_used[p] = true;
    int64_t hour = model_hour(t);
    for (size_t k = 0; k < m->n_hours; k++) {
        if (m->hours[k].pat == p && m->hours[k].hour == hour) {
            m->hours[k].count++;
            return;
        }
    }
    if (m->n_hours == MAX_HOURS) {
        abort(); /* the generator bounds uses by MAX_HOURS */
    }
    m->hours[m->n_hours++] = (m_hour_t){p, hour, 1};
}

static void model_pair(model_t *m, int p, int q, int64_t t)
{
    int lo = model_cmp(pats[p], pats[q]) < 0 ? p : q, hi = lo == p ? q : p;
    m_pair_t *e = &m->pair[lo][hi];
    if (e->count == 0 || t > e->last) {
        e->last = t;
    }
    e->count++;
    m->pat_used[p] = m->pat_used[q] = true;
}

/* What one pass over an aggregate has seen; mismatches print (the first few) with the phase. */
typedef struct {
    const model_t *m;
    const char *phase;
    int bad;
    unsigned char use_seen[NP][NA];
    unsigned char pair_seen[NP][NP];
    unsigned char hour_seen[MAX_HOURS];
    const char *pat_ptr[NP]; /* interned: one pointer a string */
    const char *agent_ptr[NA];
} seen_t;

static void mismatch(seen_t *s, const char *fmt, ...)
{
    if (s->bad++ < 10) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "test_agg %s: ", s->phase);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static int find_name(const char *const *names, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
            return i;
        }
    }
    return -1;
}

static void same_ptr(seen_t *s, const char **kept, const char *p)
{
    if (*kept == NULL) {
        *kept = p;
    } else if (*kept != p) {
        mismatch(s, "a string is held at two addresses");
    }
}

static void on_use(const agg_use_t *u, void *ud)
{
    seen_t *s = ud;
    int p = find_name(pats, NP, u->pattern, u->pattern_len);
    int g = find_name(agents, NA, u->agent, u->agent_len);
    if (p < 0 || g < 0) {
        mismatch(s, "use of an unknown pattern or agent");
        return;
    }
    same_ptr(s, &s->pat_ptr[p], u->pattern);
    same_ptr(s, &s->agent_ptr[g], u->agent);
    const m_use_t *w = &s->m->use[p][g];
    if (s->use_seen[p][g]++) {
        mismatch(s, "use (pattern %d, agent %d) reported twice", p, g);
    } else if (w->count == 0) {
        mismatch(s, "use (pattern %d, agent %d) not in the model", p, g);
    } else if (u->count != w->count || u->first_us != w->first || u->last_us != w->last) {
        mismatch(
            s,
            "use (pattern %d, agent %d): count %lld first %lld last %lld, expected %lld %lld %lld",
            p, g, (long long)u->count, (long long)u->first_us, (long long)u->last_us,
            (long long)w->count, (long long)w->first, (long long)w->last);
    }
}

static void on_hour(const agg_hour_t *h, void *ud)
{
    seen_t *s = ud;
    int p = find_name(pats, NP, h->pattern, h->pattern_len);
    if (p < 0) {
        mismatch(s, "hour of an unknown pattern");
        return;
    }
    same_ptr(s, &s->pat_ptr[p], h->pattern);
    for (size_t k = 0; k < s->m->n_hours; k++) {
        const m_hour_t *w = &s->m->hours[k];
        if (w->pat == p && w->hour == h->hour) {
            if (s->hour_seen[k]++) {
                mismatch(s, "hour (pattern %d, %lld) reported twice", p, (long long)h->hour);
            } else if (h->count != w->count) {
                mismatch(s, "hour (pattern %d, %lld): count %lld, expected %lld", p,
                         (long long)h->hour, (long long)h->count, (long long)w->count);
            }
            return;
        }
    }
    mismatch(s, "hour (pattern %d, %lld) not in the model", p, (long long)h->hour);
}

static void on_pair(const agg_pair_t *e, void *ud)
{
    seen_t *s = ud;
    int p = find_name(pats, NP, e->pattern_1, e->len_1);
    int q = find_name(pats, NP, e->pattern_2, e->len_2);
    if (p < 0 || q < 0) {
        mismatch(s, "pair of an unknown pattern");
        return;
    }
    same_ptr(s, &s->pat_ptr[p], e->pattern_1);
    same_ptr(s, &s->pat_ptr[q], e->pattern_2);
    const m_pair_t *w = &s->m->pair[p][q];
    if (p == q || model_cmp(pats[p], pats[q]) > 0) {
        mismatch(s, "pair (pattern %d, pattern %d) not in byte order", p, q);
    } else if (s->pair_seen[p][q]++) {
        mismatch(s, "pair (pattern %d, pattern %d) reported twice", p, q);
    } else if (w->count == 0) {
        mismatch(s, "pair (pattern %d, pattern %d) not in the model", p, q);
    } else if (e->count != w->count || e->last_us != w->last) {
        mismatch(s, "pair (pattern %d, pattern %d): count %lld last %lld, expected %lld %lld", p, q,
                 (long long)e->count, (long long)e->last_us, (long long)w->count,
                 (long long)w->last);
    }
}

/* Compares everything a reports with the model: each entry once, with the model's values,
 * none missing, and the sizes. */
static void check_model(const agg_t *a, const model_t *m, const char *round, const char *what)
{
    seen_t *s = calloc(1, sizeof *s);
    char phase[128];
    snprintf(phase, sizeof phase, "%s, %s", round, what);
    s->m = m;
    s->phase = phase;
    agg_each_use(a, on_use, s);
    agg_each_hour(a, on_hour, s);
    agg_each_pair(a, on_pair, s);
    size_t n_uses = 0, n_pairs = 0, n_pats = 0;
    for (int p = 0; p < NP; p++) {
        n_pats += m->pat_used[p];
        for (int g = 0; g < NA; g++) {
            if (m->use[p][g].count != 0) {
                n_uses++;
                if (!s->use_seen[p][g]) {
                    mismatch(s, "use (pattern %d, agent %d) missing", p, g);
                }
            }
        }
        for (int q = 0; q < NP; q++) {
            if (m->pair[p][q].count != 0) {
                n_pairs++;
                if (!s->pair_seen[p][q]) {
                    mismatch(s, "pair (pattern %d, pattern %d) missing", p, q);
                }
            }
        }
    }
    for (size_t k = 0; k < m->n_hours; k++) {
        if (!s->hour_seen[k]) {
            mismatch(s, "hour (pattern %d, %lld) missing", m->hours[k].pat,
                     (long long)m->hours[k].hour);
        }
    }
    if (agg_n_uses(a) != n_uses || agg_n_hours(a) != m->n_hours || agg_n_pairs(a) != n_pairs ||
        agg_patterns(a) != n_pats || agg_events(a) != (size_t)m->events) {
        mismatch(s,
                 "%zu uses, %zu hours, %zu pairs, %zu patterns, %zu events, expected %zu %zu %zu "
                 "%zu %lld",
                 agg_n_uses(a), agg_n_hours(a), agg_n_pairs(a), agg_patterns(a), agg_events(a),
                 n_uses, m->n_hours, n_pairs, n_pats, (long long)m->events);
    }
    if (s->bad > 10) {
        fprintf(stderr, "test_agg %s: %d mismatches in all\n", phase, s->bad);
    }
    CHECK_EQ_INT(s->bad, 0);
    free(s);
}

/* An event's time: often one seen before (just before: consecutive equal times; or earlier:
 * the same time at another tref), at an hour's edge on either side of the epoch, or anywhere
 * within spread_h hours of it, so times come out of order. */
static int64_t pick_time(uint64_t *rng, const int64_t *seen, size_t n_seen, int64_t spread_h)
{
    uint64_t r = rng_below(rng, 100);
    if (n_seen > 0 && r < 15) {
        return seen[n_seen - 1];
    }
    if (n_seen > 0 && r < 35) {
        return seen[rng_below(rng, n_seen)];
    }
    if (r < 50) {
        return ((int64_t)rng_below(rng, 7) - 3) * H + (int64_t)rng_below(rng, 3) - 1;
    }
    return (int64_t)rng_below(rng, (uint64_t)(2 * spread_h * H + 1)) - spread_h * H;
}

/* Skewed toward low indices, so that some patterns are rare (in one aggregate, not the other). */
static int pick_pattern(uint64_t *rng)
{
    return (int)rng_below(rng, 1 + rng_below(rng, NP));
}

/* EVENTS random events, each to a or b, checked alone, then merged into a. */
static void random_round(agg_t *a, agg_t *b, uint64_t *rng, int64_t spread_h, const char *round)
{
    model_t *ma = calloc(1, sizeof *ma), *mb = calloc(1, sizeof *mb);
    model_t *mall = calloc(1, sizeof *mall), *none = calloc(1, sizeof *none);
    int64_t *times = malloc(EVENTS * sizeof *times);
    for (size_t e = 0; e < EVENTS; e++) {
        int64_t t = pick_time(rng, times, e, spread_h);
        times[e] = t;
        bool to_a = rng_below(rng, 3) != 0;
        agg_t *x = to_a ? a : b;
        model_t *mx = to_a ? ma : mb;
        int n_uses = (int)rng_below(rng, EVENT_USES + 1);
        int n_pairs = (int)rng_below(rng, EVENT_PAIRS + 1);
        while (n_uses + n_pairs > 0) {
            /* an event's uses and pairs interleave, all at its time */
            if (n_pairs == 0 || (n_uses > 0 && rng_below(rng, 2) == 0)) {
                int p = pick_pattern(rng), g = (int)rng_below(rng, NA);
                agg_add_use(x, pats[p], strlen(pats[p]), agents[g], strlen(agents[g]), t);
                model_use(mx, p, g, t);
                model_use(mall, p, g, t);
                n_uses--;
            } else {
                int p = pick_pattern(rng), q = (int)rng_below(rng, NP - 1);
                if (q >= p) {
                    q++; /* p != q, and either may be the lower */
                }
                agg_add_pair(x, pats[p], strlen(pats[p]), pats[q], strlen(pats[q]), t);
                model_pair(mx, p, q, t);
                model_pair(mall, p, q, t);
                n_pairs--;
            }
        }
        agg_count_event(x);
        mx->events++;
        mall->events++;
    }
    check_model(a, ma, round, "a alone");
    check_model(b, mb, round, "b alone");
    agg_merge(a, b); /* b is the newer batch */
    check_model(a, mall, round, "a after merging b");
    check_model(b, none, round, "b after the merge");
    CHECK_EQ_INT(agg_events(b), 0);
    CHECK_EQ_INT(agg_n_uses(b), 0);
    CHECK(agg_empty(b));
    free(times);
    free(ma);
    free(mb);
    free(mall);
    free(none);
}

static void test_random_against_model(void)
{
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    agg_t *a = agg_new(), *b = agg_new();
    random_round(a, b, &rng, 50, "round 1");
    /* Reset and reuse: only what is added after the reset counts. a holds the merged batch; b
     * was emptied by the merge, and now holds some more that a reset throws away. */
    agg_reset(a);
    agg_add_use(b, "stale", 5, "alice", 5, 42);
    agg_add_use(b, pats[0], strlen(pats[0]), agents[0], strlen(agents[0]), -7 * H);
    agg_add_pair(b, pats[0], strlen(pats[0]), pats[1], strlen(pats[1]), 99 * H);
    agg_count_event(b);
    agg_reset(b);
    CHECK(agg_empty(a) && agg_empty(b));
    random_round(a, b, &rng, 3, "round 2 (after reset, few hours)");
    agg_reset(a);
    random_round(a, b, &rng, (int64_t)1 << 20, "round 3 (after reset, hours spread)");
    agg_free(a);
    agg_free(b);
}

int main(void)
{
    test_bytes_after_reset();
    test_random_against_model();
    agg_t *a = agg_new();
    agg_add_use(a, "p1", 2, "alice", 5, 10 * H + 5);
    agg_add_use(a, "p1", 2, "alice", 5, 10 * H + 1);
    agg_add_use(a, "p1", 2, "bob", 3, 11 * H);
    /* embedded NUL-free binary-ish IDs keep their length */
    agg_add_use(a, "p2\"x", 4, "alice", 5, -1); /* before the epoch: hour -1 */
    agg_count_event(a);
    agg_count_event(a);
    agg_count_event(a);
    CHECK_EQ_INT(agg_events(a), 3);
    CHECK_EQ_INT(agg_patterns(a), 2);
    CHECK_EQ_INT(agg_n_uses(a), 3);
    CHECK_EQ_INT(agg_n_hours(a), 3); /* p1@10, p1@11, p2@-1 */

    want_use_t w1[] = {{"p1", "alice", 2, 10 * H + 1, 10 * H + 5, 0},
                       {"p1", "bob", 1, 11 * H, 11 * H, 0},
                       {"p2\"x", "alice", 1, -1, -1, 0}};
    wanted = w1;
    n_wanted = 3;
    int unexpected = 0;
    agg_each_use(a, match_use, &unexpected);
    CHECK_EQ_INT(unexpected, 0);
    for (size_t i = 0; i < n_wanted; i++) {
        CHECK_EQ_INT(wanted[i].found, 1);
    }

    agg_note_offset(a, "t", 0, -1, 5);
    agg_note_offset(a, "t", 0, 99, 9); /* expected only taken on first sight */
    agg_note_offset(a, "t", 1, 3, 4);
    CHECK_EQ_INT(agg_n_offsets(a), 2);
    CHECK_EQ_INT(agg_offset_at(a, 0)->expected, -1);
    CHECK_EQ_INT(agg_offset_at(a, 0)->next, 9);

    agg_add_topic(
        a, &(agg_topic_t){.topic = "t", .events = 3, .without_patterns = 1, .dead_letters = 1});
    agg_add_dead(a, "t", 0, 7, "not json", "detail", "0123456789", 10, 4);
    CHECK_EQ_INT(agg_n_dead(a), 1);
    CHECK_EQ_INT(agg_dead_at(a, 0)->payload_len, 4);
    CHECK_EQ_INT(agg_dead_at(a, 0)->payload_size, 10);

    /* merge: newer batch b into older a */
    agg_t *b = agg_new();
    agg_add_use(b, "p1", 2, "alice", 5, 12 * H);
    agg_add_use(b, "p3", 2, "carol", 5, 9 * H);
    agg_count_event(b);
    agg_count_event(b);
    agg_note_offset(b, "t", 0, 9, 15);
    agg_note_offset(b, "t", 2, -1, 1);
    agg_add_topic(b, &(agg_topic_t){.topic = "t", .events = 2, .dead_letters = 1, .flagged = 1});
    agg_add_dead(b, "t", 2, 0, "not utf-8", NULL, "\xff", 1, 100);
    agg_merge(a, b);
    CHECK(agg_empty(b));
    CHECK_EQ_INT(agg_events(a), 5);
    want_use_t w2[] = {{"p1", "alice", 3, 10 * H + 1, 12 * H, 0},
                       {"p1", "bob", 1, 11 * H, 11 * H, 0},
                       {"p2\"x", "alice", 1, -1, -1, 0},
                       {"p3", "carol", 1, 9 * H, 9 * H, 0}};
    wanted = w2;
    n_wanted = 4;
    unexpected = 0;
    agg_each_use(a, match_use, &unexpected);
    CHECK_EQ_INT(unexpected, 0);
    for (size_t i = 0; i < n_wanted; i++) {
        CHECK_EQ_INT(wanted[i].found, 1);
    }
    CHECK_EQ_INT(agg_n_offsets(a), 3);
    CHECK_EQ_INT(agg_offset_at(a, 0)->expected, -1);
    CHECK_EQ_INT(agg_offset_at(a, 0)->next, 15);
    CHECK_EQ_INT(agg_offset_at(a, 2)->expected, -1);
    CHECK_EQ_INT(agg_n_topics(a), 1);
    CHECK_EQ_INT(agg_topic_at(a, 0)->events, 5);
    CHECK_EQ_INT(agg_topic_at(a, 0)->dead_letters, 2);
    CHECK_EQ_INT(agg_topic_at(a, 0)->flagged, 1);
    CHECK_EQ_INT(agg_n_dead(a), 2);
    CHECK_EQ_STR(agg_dead_at(a, 1)->reason, "not utf-8");

    /* growth: many distinct keys survive rehashing with exact counts */
    agg_reset(a);
    CHECK(agg_empty(a));
    char id[32], ag[32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 20000; i++) {
            int n = snprintf(id, sizeof id, "pat-%d", i);
            int m = snprintf(ag, sizeof ag, "agent-%d", i % 37);
            agg_add_use(a, id, (size_t)n, ag, (size_t)m, (int64_t)(i % 50) * H);
        }
    }
    CHECK_EQ_INT(agg_patterns(a), 20000);
    CHECK_EQ_INT(agg_n_uses(a), 20000);
    hour_sum = 0;
    agg_each_hour(a, sum_hours, NULL);
    CHECK_EQ_INT(hour_sum, 60000);
    agg_free(a);
    agg_free(b);
    agg_free(NULL);
    return check_done("test_agg");
}
