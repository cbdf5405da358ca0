#include "agg.h"
#include "check.h"

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

int main(void)
{
    test_bytes_after_reset();
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
