/* The flush's parameters, and (with --pg URL) the flush SQL itself against a real PostgreSQL:
 * exact sums across flushes, first/last times, used_by_agents without duplicates, unregistered
 * patterns created, dead letters stored, and the offset compare-and-set refusing a stale
 * writer without writing anything. */
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdlib.h>

#include "agg.h"
#include "check.h"
#include "cooc.h"
#include "flush.h"
#include "merge.h"
#include "migrate.h"
#include "pg.h"

#define H (3600LL * 1000000LL)

static void test_build(void)
{
    agg_t *a = agg_new();
    agg_add_use(a, "we\"ird\\id,{x}", 13, "ag \xc3\xa9", 5, 2 * H + 7);
    agg_note_offset(a, "topic-a", 3, -1, 42);
    agg_add_topic(a, &(agg_topic_t){.topic = "topic-a", .events = 1, .dead_letters = 1});
    agg_add_dead(a, "topic-a", 3, 41, "not json", "bad \xff byte", "\x01\xfe", 2, 100);
    char *v[FLUSH_NPARAMS];
    int len[FLUSH_NPARAMS];
    int n = flush_build(a, "grp", true, v, len);
    CHECK_EQ_INT(n, 33);
    CHECK_EQ_STR(v[32], "true");
    CHECK_EQ_STR(v[25], "{0}"); /* events with patterns */
    CHECK_EQ_STR(v[27], "{}");  /* no pairs */
    CHECK_EQ_INT(len[FLUSH_DATA_PARAM], 0);
    CHECK_EQ_STR(v[0], "grp");
    CHECK_EQ_STR(v[1], "{\"topic-a\"}");
    CHECK_EQ_STR(v[2], "{3}");
    CHECK_EQ_STR(v[3], "{-1}");
    CHECK_EQ_STR(v[4], "{42}");
    CHECK_EQ_STR(v[5], "{\"we\\\"ird\\\\id,{x}\"}");
    CHECK_EQ_STR(v[6], "{\"ag \xc3\xa9\"}");
    CHECK_EQ_STR(v[7], "{1}");
    CHECK_EQ_STR(v[10], "{\"we\\\"ird\\\\id,{x}\"}");
    CHECK_EQ_STR(v[11], "{2}");
    CHECK_EQ_STR(v[12], "{1}");
    CHECK_EQ_STR(v[13], "{\"topic-a\"}");
    CHECK_EQ_STR(v[22], "{\"bad ? byte\"}"); /* text must be UTF-8 */
    CHECK_EQ_STR(v[23], "{\"\\\\x01fe\"}");
    CHECK_EQ_STR(v[24], "{2}");
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(len[i], strlen(v[i]));
    }
    flush_build_free(v, n);
    /* pairs: a row per pattern with its partner list; the lists back to back in c_data */
    agg_reset(a);
    agg_add_pair(a, "b", 1, "a", 1, 5);
    agg_add_pair(a, "b", 1, "c", 1, 6);
    agg_add_pair(a, "c", 1, "b", 1, 7);
    n = flush_build(a, "grp", false, v, len);
    CHECK_EQ_STR(v[27], "{\"a\",\"b\",\"c\"}");
    CHECK_EQ_STR(v[28], "{1,2,1}");
    CHECK_EQ_STR(v[29], "{0,1,1}");
    CHECK_EQ_STR(v[30], "{6,11,6}");
    /* the lists byte by byte (src/cooc.h): version 2, then shared prefix, new bytes, count and
     * zigzag varint of the time's change */
    static const char lists[] = "\x02\x00\x01"
                                "b\x01\x0a" /* a: b 1 at 5 */
                                "\x02\x00\x01"
                                "a\x01\x0a\x00\x01"
                                "c\x02\x04" /* b: a 1 at 5, c 2 at 7 */
                                "\x02\x00\x01"
                                "b\x02\x0e"; /* c: b 2 at 7 */
    pg_buf_t want;
    pg_buf_init(&want);
    pg_buf_put(&want, lists, sizeof lists - 1);
    CHECK_EQ_INT(len[FLUSH_DATA_PARAM], want.len);
    CHECK(len[FLUSH_DATA_PARAM] == (int)want.len &&
          memcmp(v[FLUSH_DATA_PARAM], want.data, want.len) == 0);
    pg_buf_free(&want);
    flush_build_free(v, n);
    agg_free(a);
}

static PGresult *run_flush(PGconn *c, const agg_t *a)
{
    char *v[FLUSH_NPARAMS];
    int len[FLUSH_NPARAMS];
    int fmt[FLUSH_NPARAMS] = {0};
    fmt[FLUSH_DATA_PARAM] = 1;
    int n = flush_build(a, "g1", false, v, len);
    char sql[256] = "SELECT pt_flush($1";
    for (int i = 2; i <= n; i++) {
        snprintf(sql + strlen(sql), sizeof sql - strlen(sql), ",$%d", i);
    }
    strcat(sql, ")");
    PGresult *r = PQexecParams(c, sql, n, NULL, (const char *const *)v, len, fmt, 0);
    flush_build_free(v, n);
    return r;
}

/* A flush of a's pairs moving partition t/0 from offset `from` to `to`, which must succeed. */
static void flush_pairs(PGconn *c, agg_t *a, int64_t from, int64_t to)
{
    agg_note_offset(a, "t", 0, from, to);
    PGresult *r = run_flush(c, a);
    CHECK_EQ_STR(PQresultErrorMessage(r), "");
    PQclear(r);
}

typedef struct {
    struct event_base *base;
    int rc;
    int64_t patterns;
} merged_t;

static void merged_cb(int rc, const char *err, const merge_stats_t *st, void *ud)
{
    merged_t *m = ud;
    if (rc != 0) {
        fprintf(stderr, "merge: %s\n", err);
    }
    m->rc = rc;
    m->patterns = st->patterns;
    event_base_loopexit(m->base, NULL);
}

/* Merges what is pending as the engine does (merge.c): returns the patterns merged, -1 on
 * failure. */
static int64_t merge_all(const config_t *cfg)
{
    merged_t m = {.base = event_base_new(), .rc = -1};
    merge_t *mg = merge_drain_new(m.base, cfg, 0, merged_cb, &m);
    event_base_dispatch(m.base);
    merge_free(mg);
    event_base_free(m.base);
    return m.rc == 0 ? m.patterns : -1;
}

static const char *one(PGconn *c, const char *sql)
{
    static char buf[4096];
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        snprintf(buf, sizeof buf, "ERROR %s", PQresultErrorMessage(r));
    } else {
        snprintf(buf, sizeof buf, "%s", PQgetisnull(r, 0, 0) ? "NULL" : PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return buf;
}

static void test_pg(const char *url)
{
    char err[1024];
    setenv("DATABASE_URL", url, 1);
    config_t *cfg = config_load(NULL, err, sizeof err);
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        return;
    }
    CHECK(migrate_run(cfg, 5, err, sizeof err) == 0);
    /* migrations are idempotent */
    CHECK(migrate_run(cfg, 5, err, sizeof err) == 0);
    PGconn *c = PQconnectdb(url);
    CHECK(PQstatus(c) == CONNECTION_OK);
    PQclear(
        PQexec(c, "TRUNCATE pattern_lineage_nodes, pattern_agent_usage, pattern_usage_hourly,"
                  " pattern_usage_daily, pattern_cooccurrence_merged, pattern_cooccurrence_pending,"
                  " pattern_cooccurrence_top,"
                  " agent_usage_totals,"
                  " usage_hourly_totals, usage_daily_totals, agent_type_usage,"
                  " agent_top_patterns,"
                  " usage_consumer_offsets, usage_topic_stats, usage_dead_letters"));
    PQclear(PQexec(c, "INSERT INTO pattern_lineage_nodes (pattern_id, pattern_name, pattern_type)"
                      " VALUES ('reg', 'Registered', 'code')"));

    agg_t *a = agg_new();
    agg_add_use(a, "reg", 3, "bob", 3, 5 * H + 10);
    agg_add_use(a, "reg", 3, "alice", 5, 5 * H + 20);
    agg_add_use(a, "new\"one", 7, "alice", 5, 6 * H);
    agg_note_offset(a, "t", 0, -1, 100);
    agg_add_topic(
        a, &(agg_topic_t){.topic = "t", .events = 3, .without_patterns = 1, .dead_letters = 1});
    agg_add_dead(a, "t", 0, 50, "not json", "x", "not-json", 8, 3);
    PGresult *r = run_flush(c, a);
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);

    /* second batch continues from 100 */
    agg_reset(a);
    agg_add_use(a, "reg", 3, "alice", 5, 4 * H);
    agg_add_use(a, "reg", 3, "carol", 5, 7 * H);
    agg_note_offset(a, "t", 0, 100, 130);
    r = run_flush(c, a);
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);

    CHECK_EQ_STR(one(c, "SELECT usage_count FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
                 "4");
    CHECK_EQ_STR(
        one(c, "SELECT used_by_agents::text FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
        "{alice,bob,carol}");
    CHECK_EQ_STR(one(c, "SELECT registered::text || pattern_name FROM pattern_lineage_nodes WHERE "
                        "pattern_id='reg'"),
                 "trueRegistered");
    CHECK_EQ_STR(one(c, "SELECT (first_used_at = pt_ts(4*3600000000))::text || (last_used_at = "
                        "pt_ts(7*3600000000))::text"
                        " FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
                 "truetrue");
    CHECK_EQ_STR(
        one(c, "SELECT registered::text FROM pattern_lineage_nodes WHERE pattern_id='new\"one'"),
        "false");
    CHECK_EQ_STR(one(c, "SELECT usage_count FROM pattern_agent_usage WHERE pattern_id='reg' AND "
                        "agent_name='alice'"),
                 "2");
    CHECK_EQ_STR(one(c, "SELECT sum(usage_count) FROM pattern_usage_hourly WHERE pattern_id='reg'"),
                 "4");
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM pattern_usage_hourly WHERE pattern_id='reg'"), "3");
    /* per agent: alice used reg twice and new"one once (2 patterns), bob reg once, carol once */
    CHECK_EQ_STR(one(c, "SELECT string_agg(agent_name || '=' || usage_count || '/' || "
                        "distinct_patterns, ' ' ORDER BY agent_name) FROM agent_usage_totals"),
                 "alice=3/2 bob=1/1 carol=1/1");
    CHECK_EQ_STR(one(c, "SELECT (first_used_at = pt_ts(4*3600000000))::text || (last_used_at = "
                        "pt_ts(6*3600000000))::text FROM agent_usage_totals WHERE "
                        "agent_name='alice'"),
                 "truetrue");
    /* per hour: 4h reg/alice, 5h reg/bob + reg/alice, 6h new"one, 7h reg/carol */
    CHECK_EQ_STR(one(c, "SELECT string_agg((extract(epoch FROM hour) / 3600)::bigint || '=' || "
                        "usage_count, ' ' ORDER BY hour) FROM usage_hourly_totals"),
                 "4=1 5=2 6=1 7=1");
    CHECK_EQ_STR(one(c, "SELECT next_offset FROM usage_consumer_offsets WHERE group_id='g1'"),
                 "130");
    CHECK_EQ_STR(
        one(c, "SELECT events || '/' || dead_letters FROM usage_topic_stats WHERE topic='t'"),
        "3/1");
    CHECK_EQ_STR(
        one(c,
            "SELECT encode(payload,'escape') || payload_size || truncated FROM usage_dead_letters"),
        "not8true");

    /* a stale writer (expects 100, the row says 130) is refused and writes nothing */
    agg_reset(a);
    agg_add_use(a, "reg", 3, "mallory", 7, 8 * H);
    agg_note_offset(a, "t", 0, 100, 120);
    r = run_flush(c, a);
    CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
    CHECK_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE), "PT409");
    PQclear(r);
    CHECK_EQ_STR(one(c, "SELECT usage_count FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
                 "4");
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM pattern_agent_usage WHERE agent_name='mallory'"),
                 "0");
    /* and a second "first" writer of a partition that already has a row is refused too */
    agg_reset(a);
    agg_add_use(a, "reg", 3, "mallory", 7, 8 * H);
    agg_note_offset(a, "t", 0, -1, 10);
    r = run_flush(c, a);
    CHECK_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                                                         : "",
                 "PT409");
    PQclear(r);
    CHECK_EQ_STR(one(c, "SELECT usage_count FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
                 "4");

    /* pairs: a row per pattern, partners in byte order with the n_low below it first (read by
     * sql/012's own decoder); pending pairs counted once each; merged exactly */
    const char *rows = "SELECT string_agg(pattern_id || '/' || n || '/' || n_low || '/' ||"
                       " (SELECT string_agg(partner || ':' || cnt || ':' || last_us, '|')"
                       " FROM pt_cooc_entries(data)), ' ' ORDER BY pattern_id COLLATE \"C\")"
                       " FROM pattern_cooccurrence_pending";
    agg_reset(a);
    agg_add_pair(a, "b", 1, "a\"{,}", 5, 5 * H);
    agg_add_pair(a, "b", 1, "c", 1, 6 * H);
    agg_add_pair(a, "c", 1, "b", 1, 4 * H);
    agg_add_pair(a, "\xc3\xa9", 2, "b", 1, 7 * H);
    flush_pairs(c, a, 130, 140);
    CHECK_EQ_STR(one(c, rows), "a\"{,}/1/0/b:1:18000000000 "
                               "b/3/1/a\"{,}:1:18000000000|c:2:21600000000|\xc3\xa9:1:25200000000 "
                               "c/1/1/b:2:21600000000 \xc3\xa9/1/1/b:1:25200000000");
    agg_reset(a);
    agg_add_pair(a, "c", 1, "b", 1, 3 * H);
    flush_pairs(c, a, 140, 150);
    const char *pairs = "a\"{,}+b=1 b+c=3 b+\xc3\xa9=1";
    const char *view = "SELECT string_agg(pattern_id_1 || '+' || pattern_id_2 || '=' ||"
                       " cooccurrence_count, ' ' ORDER BY pattern_id_1 COLLATE \"C\","
                       " pattern_id_2 COLLATE \"C\") FROM pattern_cooccurrence";
    CHECK_EQ_STR(one(c, view), pairs);
    CHECK_EQ_INT(merge_all(cfg), 4);
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM pattern_cooccurrence_pending"), "0");
    CHECK_EQ_STR(one(c, view), pairs);
    CHECK_EQ_STR(one(c, "SELECT last_seen_together = pt_ts(6*3600000000) FROM pattern_cooccurrence"
                        " WHERE pattern_id_1 = 'b' AND pattern_id_2 = 'c'"),
                 "t");
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id || '/' || n || '/' || n_low, ' ' ORDER BY"
                        " pattern_id COLLATE \"C\") FROM pattern_cooccurrence_merged"),
                 "a\"{,}/1/0 b/3/1 c/1/1 \xc3\xa9/1/1");
    /* c_pattern's array_in must not misread ids when unquoted: NULL, white space, a backslash */
    agg_reset(a);
    agg_add_pair(a, "NULL", 4, "x y", 3, 1 * H);
    agg_add_pair(a, "x y", 3, "p\\q", 3, 2 * H);
    agg_add_pair(a, "null", 4, "t\tab", 4, 3 * H);
    flush_pairs(c, a, 150, 160);
    CHECK_EQ_STR(one(c, rows), "NULL/1/0/x y:1:3600000000 null/1/0/t\tab:1:10800000000 "
                               "p\\q/1/0/x y:1:7200000000 t\tab/1/1/null:1:10800000000 "
                               "x y/2/2/NULL:1:3600000000|p\\q:1:7200000000");
    CHECK_EQ_INT(merge_all(cfg), 5);
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id_1 || '+' || pattern_id_2, ' ' ORDER BY"
                        " pattern_id_1 COLLATE \"C\") FROM pattern_cooccurrence WHERE"
                        " last_seen_together < pt_ts(4*3600000000)"),
                 "NULL+x y null+t\tab p\\q+x y");
    /* pattern_cooccurrence_top across merges, kept at 100 here: 120 pairs counted 1..120 fill
     * it with 21..120; then k019 (20) gains one and ties the last member k020 (21), ranking
     * above it (byte order), and member k025 gains one: k019 is in, k020 out, k025 updated */
    PQclear(PQexec(c, "CREATE OR REPLACE FUNCTION pt_cooccurrence_top_keep() RETURNS INTEGER"
                      " LANGUAGE sql IMMUTABLE AS $$ SELECT 100 $$"));
    PQclear(PQexec(c, "TRUNCATE pattern_cooccurrence_merged, pattern_cooccurrence_top"));
    agg_reset(a);
    char id[8];
    for (int i = 0; i < 120; i++) {
        snprintf(id, sizeof id, "k%03d", i);
        for (int n = 0; n <= i; n++) {
            agg_add_pair(a, id, 4, "z", 1, 9 * H);
        }
    }
    flush_pairs(c, a, 160, 170);
    CHECK_EQ_INT(merge_all(cfg), 121);
    const char *top = "SELECT count(*) || '/' || min(cooccurrence_count) || '/' ||"
                      " max(cooccurrence_count) || '/' || sum(cooccurrence_count) FROM"
                      " pattern_cooccurrence_top";
    CHECK_EQ_STR(one(c, top), "100/21/120/7050");
    agg_reset(a);
    agg_add_pair(a, "k019", 4, "z", 1, 9 * H);
    agg_add_pair(a, "k025", 4, "z", 1, 9 * H);
    flush_pairs(c, a, 170, 180);
    CHECK_EQ_INT(merge_all(cfg), 3);
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id_1 || '=' || cooccurrence_count, ' ' ORDER BY"
                        " pattern_id_1) FROM pattern_cooccurrence_top WHERE pattern_id_1 IN"
                        " ('k019', 'k020', 'k021', 'k025')"),
                 "k019=21 k021=22 k025=27");
    CHECK_EQ_STR(one(c, top), "100/21/120/7051");
    /* k017 (18) gains four and passes the last member, k019 (21), which drops out */
    agg_reset(a);
    for (int n = 0; n < 4; n++) {
        agg_add_pair(a, "k017", 4, "z", 1, 9 * H);
    }
    flush_pairs(c, a, 180, 190);
    CHECK_EQ_INT(merge_all(cfg), 2);
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id_1 || '=' || cooccurrence_count, ' ' ORDER BY"
                        " pattern_id_1) FROM pattern_cooccurrence_top WHERE pattern_id_1 < 'k022'"),
                 "k017=22 k021=22");
    CHECK_EQ_STR(one(c, top), "100/22/120/7052");
    /* the rebuild gives what the merges kept */
    CHECK_EQ_STR(one(c, "SELECT pt_rebuild_cooccurrence_top()"), "NULL"); /* void */
    CHECK_EQ_STR(one(c, top), "100/22/120/7052");
    /* z's merged list holds all 120 partners, summed */
    CHECK_EQ_STR(one(c, "SELECT n || '/' || n_low || '/' || (SELECT sum(cnt) FROM"
                        " pt_cooc_entries(data)) FROM pattern_cooccurrence_merged"
                        " WHERE pattern_id = 'z'"),
                 "120/120/7266");
    PQclear(PQexec(c, "CREATE OR REPLACE FUNCTION pt_cooccurrence_top_keep() RETURNS INTEGER"
                      " LANGUAGE sql IMMUTABLE AS $$ SELECT 1000 $$"));
    agg_free(a);
    PQfinish(c);
    config_free(cfg);
}

/* Array elements as PostgreSQL's int8in reads them, at both ends of the range. */
static void test_array_int(void)
{
    pg_buf_t b;
    pg_buf_init(&b);
    const int64_t v[] = {0, 7, -1, 10, -10, 1234567890123LL, INT64_MAX, INT64_MIN};
    char want[512] = "";
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (i > 0) {
            pg_array_next(&b);
        }
        pg_array_int(&b, v[i]);
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i > 0 ? "," : "",
                 (long long)v[i]);
    }
    CHECK_EQ_STR(b.data, want);
    CHECK_EQ_INT(b.len, strlen(want));
    /* words: bare where array_in reads them back as they are, quoted otherwise */
    pg_buf_reset(&b);
    const char *w[] = {"pat-1", "\xc3\xa9", "NULL", "nUlL", "nulls", "a b",
                       "a,b",   "{",        "q\"",  "\\",   "\n"};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        if (i > 0) {
            pg_array_next(&b);
        }
        pg_array_word(&b, w[i], strlen(w[i]));
    }
    CHECK_EQ_STR(
        b.data,
        "pat-1,\xc3\xa9,\"NULL\",\"nUlL\",nulls,\"a b\",\"a,b\",\"{\",\"q\\\"\",\"\\\\\",\"\n\"");
    pg_buf_free(&b);
}

int main(int argc, char **argv)
{
    test_build();
    test_array_int();
    if (argc == 3 && strcmp(argv[1], "--pg") == 0) {
        test_pg(argv[2]);
    }
    return check_done("test_flush");
}
