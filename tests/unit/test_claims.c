/* Event-ID deduplication in the engine: held events count nothing until their claims are
 * decided (agg_release_held), survive a merge, and pt_claim_events' parameters and answer map to
 * the right held events (claims.c). The SQL side is integration_dedupe's. */
#include "agg.h"
#include "check.h"
#include "claims.h"
#include "ingest.h"

#include <stdlib.h>

#define H (3600LL * 1000000LL)

static int64_t n_uses, n_sides, n_hours_sum;
static void count_use(const agg_use_t *u, void *ud)
{
    (void)ud;
    n_uses += u->count;
}
static void count_side(const agg_side_t *s, void *ud)
{
    (void)ud;
    n_sides += s->count;
}
static void count_hour(const agg_hour_t *h, void *ud)
{
    (void)ud;
    n_hours_sum += h->count;
}
static void totals(const agg_t *a)
{
    n_uses = n_sides = n_hours_sum = 0;
    agg_each_use(a, count_use, NULL);
    agg_each_side(a, count_side, NULL);
    agg_each_hour(a, count_hour, NULL);
}

static const agg_topic_t *topic(const agg_t *a, const char *name)
{
    for (size_t i = 0; i < agg_n_topics(a); i++) {
        if (strcmp(agg_topic_at(a, i)->topic, name) == 0) {
            return agg_topic_at(a, i);
        }
    }
    return NULL;
}

static void hold(agg_t *a, const char *id, int32_t part, int64_t off, const agg_ref_t *refs,
                 size_t n, unsigned tflags)
{
    agg_hold_t h = {.topic = "t", .partition = part, .offset = off, .window_s = 60};
    ingest_event_key("t", id, strlen(id), h.key);
    agg_hold_event(a, &h, "alice", 5, 5 * H, refs, n, true, tflags);
}

/* A fake answer of pt_claim_events: one row, one column, the text given. */
static PGresult *answer(const char *text)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc att = {.name = "pt_claim_events", .format = 0, .typid = 1007, .typlen = -1};
    CHECK(PQsetResultAttrs(r, 1, &att));
    CHECK(PQsetvalue(r, 0, 0, (char *)text, (int)strlen(text)));
    return r;
}

static int count_elems(const char *arr)
{
    if (strcmp(arr, "{}") == 0) {
        return 0;
    }
    int n = 1;
    for (const char *p = arr; *p; p++) {
        n += *p == ',';
    }
    return n;
}

static void test_keys(void)
{
    uint8_t k1[16], k2[16], k3[16];
    ingest_event_key("t", "id-1", 4, k1);
    ingest_event_key("t", "id-1", 4, k2);
    ingest_event_key("u", "id-1", 4, k3);
    CHECK(memcmp(k1, k2, 16) == 0);
    CHECK(memcmp(k1, k3, 16) != 0); /* the same ID on another topic is another event */
    /* topic and ID are not simply concatenated: "ta"+"b" differs from "t"+"ab" */
    ingest_event_key("ta", "b", 1, k2);
    ingest_event_key("t", "ab", 2, k3);
    CHECK(memcmp(k2, k3, 16) != 0);
}

static void test_hold_release(void)
{
    agg_t *a = agg_new();
    agg_ref_t xy[2] = {{"x", 1}, {"y", 1}};
    agg_add_event(a, "bob", 3, 5 * H, xy, 2, true);         /* an event without an ID: counts now */
    hold(a, "e1", 0, 1, xy, 2, AGG_T_WITH);                 /* held 0 */
    hold(a, "e2", 0, 2, NULL, 0, AGG_T_WITHOUT);            /* held 1: no patterns */
    hold(a, "e1", 1, 5, xy, 2, AGG_T_WITH | AGG_T_FLAGGED); /* held 2: a copy of e1 */
    CHECK_EQ_INT(agg_n_held(a), 3);
    totals(a);
    CHECK_EQ_INT(n_uses, 2); /* bob's only */
    CHECK_EQ_INT(n_sides, 2);
    CHECK_EQ_INT(n_hours_sum, 2);
    CHECK(topic(a, "t") == NULL);

    claims_t c;
    claims_init(&c);
    const char *v[CLAIMS_NPARAMS];
    claims_build(&c, a, v);
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_INT(c.n_single, 1);
    CHECK_EQ_INT(count_elems(v[0]), 1); /* e2 alone */
    CHECK_EQ_INT(count_elems(v[4]), 2); /* e1's two copies, in arrival order */
    CHECK_EQ_STR(v[1], "{0}");
    CHECK_EQ_STR(v[2], "{2}");
    CHECK_EQ_STR(v[5], "{0,1}");
    CHECK_EQ_STR(v[6], "{1,5}");
    CHECK_EQ_STR(v[7], "{60,60}");
    CHECK_EQ_INT(strlen(v[0]), 2 + 36);

    bool won[3];
    char err[200];
    /* answers that are not one: each refused */
    const char *bad[] = {"{0}", "{4}", "{1,1}", "x", "{1", "{a}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        PGresult *r = answer(bad[i]);
        CHECK(claims_read(&c, r, won, err, sizeof err) == -1);
        PQclear(r);
    }
    /* e2 and the second copy of e1 (its position held the claim) count */
    PGresult *r = answer("{1,3}");
    CHECK(claims_read(&c, r, won, err, sizeof err) == 0);
    PQclear(r);
    CHECK(!won[0] && won[1] && won[2]);
    agg_release_held(a, won);
    CHECK_EQ_INT(agg_n_held(a), 0);
    totals(a);
    CHECK_EQ_INT(n_uses, 4);
    CHECK_EQ_INT(n_sides, 4);
    CHECK_EQ_INT(n_hours_sum, 4);
    const agg_topic_t *t = topic(a, "t");
    CHECK(t != NULL);
    CHECK_EQ_INT(t->duplicates, 1);
    CHECK_EQ_INT(t->with_patterns, 1);
    CHECK_EQ_INT(t->without_patterns, 1);
    CHECK_EQ_INT(t->flagged, 1);

    /* held events move with a merge and keep their records */
    agg_t *b = agg_new();
    hold(b, "e9", 2, 7, xy, 2, AGG_T_WITH);
    agg_merge(a, b);
    CHECK_EQ_INT(agg_n_held(a), 1);
    CHECK_EQ_INT(agg_n_held(b), 0);
    claims_build(&c, a, v);
    CHECK_EQ_STR(v[5], "{}");
    r = answer("{1}");
    CHECK(claims_read(&c, r, won, err, sizeof err) == 0);
    PQclear(r);
    agg_release_held(a, won);
    totals(a);
    CHECK_EQ_INT(n_uses, 6);
    CHECK_EQ_INT(topic(a, "t")->with_patterns, 2);

    claims_free(&c);
    agg_free(a);
    agg_free(b);
}

/* A held event's memory counts at once, its pair sides included (max_buffer_mb): two events of
 * three patterns, one with pairs (6 sides), differ by the sides' 2 x 10 bytes each. */
static void test_held_bytes(void)
{
    agg_ref_t abc[3] = {{"a", 1}, {"b", 1}, {"c", 1}};
    agg_hold_t h = {.topic = "t", .partition = 0, .offset = 1, .window_s = 60};
    agg_t *p = agg_new(), *q = agg_new();
    agg_hold_event(p, &h, "alice", 5, H, abc, 3, true, AGG_T_WITH);
    agg_hold_event(q, &h, "alice", 5, H, abc, 3, false, AGG_T_WITH);
    CHECK_EQ_INT(agg_bytes(p) - agg_bytes(q), 2 * 10 * 6);
    agg_free(p);
    agg_free(q);
}

int main(void)
{
    test_held_bytes();
    test_keys();
    test_hold_release();
    return check_done("test_claims");
}
