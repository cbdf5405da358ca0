/* The flush's parameters, and (with --pg URL) the flush SQL itself against a real PostgreSQL:
 * exact sums across flushes, first/last times, the (pattern, agent) keys and the distinct
 * counts they make, the partner lists both ways (a pattern's agents and co-occurring patterns,
 * an agent's patterns) pending and folded, unregistered patterns created, dead letters stored,
 * a flush built with a stale pattern type refused (PT410), and the offset compare-and-set
 * refusing a stale writer without writing anything. */
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdlib.h>

#include "agg.h"
#include "check.h"
#include "cooc.h"
#include "flush.h"
#include "fold.h"
#include "known.h"
#include "migrate.h"
#include "pg.h"
#include "pg_buf.h"

#define H (3600LL * 1000000LL)

static void test_build(void)
{
    agg_t *a = agg_new();
    known_t *k = known_new(1024);
    agg_add_use(a, "we\"ird\\id,{x}", 13, "ag \xc3\xa9", 5, 2 * H + 7);
    agg_note_offset(a, "topic-a", 3, -1, 42);
    agg_add_topic(a, &(agg_topic_t){.topic = "topic-a", .events = 1, .dead_letters = 1});
    agg_add_dead(a, "topic-a", 3, 41, "not json", "bad \xff byte", "\x01\xfe", 2, 100);
    /* dead_letter_payload_max 0: no payload byte, only the size and the hash */
    agg_add_dead(a, "topic-a", 3, 40, "not json", NULL, "abcdef", 6, 0);
    char *v[FLUSH_NPARAMS];
    int len[FLUSH_NPARAMS];
    int n = flush_build(a, "grp", true, k, v, len);
    CHECK_EQ_INT(n, FLUSH_NPARAMS);
    CHECK_EQ_STR(v[FLUSH_P_DURABLE], "true");
    CHECK_EQ_STR(v[FLUSH_P_T_WITH], "{0}"); /* events with patterns */
    CHECK_EQ_STR(v[FLUSH_P_GROUP], "grp");
    CHECK_EQ_STR(v[FLUSH_P_O_TOPIC], "{topic-a}");
    CHECK_EQ_STR(v[FLUSH_P_O_PART], "{3}");
    CHECK_EQ_STR(v[FLUSH_P_O_EXPECTED], "{-1}");
    CHECK_EQ_STR(v[FLUSH_P_O_NEXT], "{42}");
    CHECK_EQ_STR(v[FLUSH_P_P_ID], "{\"we\\\"ird\\\\id,{x}\"}");
    CHECK_EQ_STR(v[FLUSH_P_P_TYPE], "{unknown}"); /* not read: "unknown" */
    CHECK_EQ_STR(v[FLUSH_P_P_COUNT], "{1}");
    CHECK_EQ_STR(v[FLUSH_P_K_PATTERN], "{\"we\\\"ird\\\\id,{x}\"}");
    CHECK_EQ_STR(v[FLUSH_P_K_AGENT], "{\"ag \xc3\xa9\"}");
    CHECK_EQ_STR(v[FLUSH_P_A_AGENT], "{\"ag \xc3\xa9\"}");
    CHECK_EQ_STR(v[FLUSH_P_Y_AGENT], "{\"ag \xc3\xa9\"}");
    CHECK_EQ_STR(v[FLUSH_P_Y_TYPE], "{unknown}");
    CHECK_EQ_STR(v[FLUSH_P_H_PATTERN], "{\"we\\\"ird\\\\id,{x}\"}");
    CHECK_EQ_STR(v[FLUSH_P_H_HOUR], "{2}");
    CHECK_EQ_STR(v[FLUSH_P_H_COUNT], "{1}");
    CHECK_EQ_STR(v[FLUSH_P_T_TOPIC], "{topic-a}");
    CHECK_EQ_STR(v[FLUSH_P_D_DETAIL], "{\"bad ? byte\",NULL}"); /* text must be UTF-8 */
    CHECK_EQ_STR(v[FLUSH_P_D_PAYLOAD], "{\"\\\\x01fe\",NULL}");
    CHECK_EQ_STR(v[FLUSH_P_D_SIZE], "{2,6}");
    /* XXH3-128 of each whole payload, as `xxhsum -H2` prints it, in uuid form */
    CHECK_EQ_STR(v[FLUSH_P_D_HASH],
                 "{7002dab4-0676-ae77-addf-cd1f07475bed,389197a5-5db2-b2e4-da35-a6714d34f8a2}");
    CHECK_EQ_STR(v[FLUSH_P_L_N_PARTNERS], "{0}");
    for (int i = 0; i < n; i++) {
        if (i != FLUSH_DATA_PARAM) {
            CHECK_EQ_INT(len[i], strlen(v[i]));
        }
    }
    flush_build_free(v, n);
    /* the key was sent; once known committed it is not sent again */
    known_commit(k);
    n = flush_build(a, "grp", true, k, v, len);
    CHECK_EQ_STR(v[FLUSH_P_K_PATTERN], "{}");
    CHECK_EQ_STR(v[FLUSH_P_P_ID], "{\"we\\\"ird\\\\id,{x}\"}");
    flush_build_free(v, n);
    known_drop(k);

    /* pairs and uses: per pattern its agents list then its partners list, then per agent its
     * patterns list, back to back in x_data */
    agg_reset(a);
    agg_add_pair(a, "b", 1, "a", 1, 5);
    agg_add_pair(a, "b", 1, "c", 1, 6);
    agg_add_pair(a, "c", 1, "b", 1, 7);
    agg_add_use(a, "b", 1, "z", 1, 5);
    agg_add_use(a, "a", 1, "z", 1, 3);
    agg_add_use(a, "b", 1, "y", 1, 4);
    known_set_type(k, "b", 1, "code", 4);
    n = flush_build(a, "grp", false, k, v, len);
    CHECK_EQ_STR(v[FLUSH_P_P_ID], "{a,b}");
    CHECK_EQ_STR(v[FLUSH_P_P_TYPE], "{unknown,code}");
    CHECK_EQ_STR(v[FLUSH_P_P_COUNT], "{1,2}");
    CHECK_EQ_STR(v[FLUSH_P_P_FIRST], "{3,4}");
    CHECK_EQ_STR(v[FLUSH_P_P_LAST], "{3,5}");
    /* c has pairs and no uses (an aggregate built by hand): a row of partners only */
    CHECK_EQ_STR(v[FLUSH_P_L_PATTERN], "{a,b,c}");
    CHECK_EQ_STR(v[FLUSH_P_L_N_AGENTS], "{1,2,0}");
    CHECK_EQ_STR(v[FLUSH_P_L_N_PARTNERS], "{1,2,1}");
    CHECK_EQ_STR(v[FLUSH_P_L_N_LOW], "{0,1,1}");
    CHECK_EQ_STR(v[FLUSH_P_M_AGENT], "{y,z}");
    CHECK_EQ_STR(v[FLUSH_P_M_N], "{1,2}");
    CHECK_EQ_STR(v[FLUSH_P_A_COUNT], "{1,2}");
    /* the lists byte by byte (src/cooc.h): version 3 (usage) or 2 (pairs), then per entry the
     * shared prefix, new bytes, count, zigzag varint of the time's change and (version 3) how
     * long before the last the first was */
    static const char lists[] = "\x03\x00\x01"
                                "z\x01\x06\x00" /* a's agents: z 1 at 3 */
                                "\x02\x00\x01"
                                "b\x01\x0a" /* a's partners: b 1 at 5 */
                                "\x03\x00\x01"
                                "y\x01\x08\x00\x00\x01"
                                "z\x01\x02\x00" /* b's agents: y 1 at 4, z 1 at 5 */
                                "\x02\x00\x01"
                                "a\x01\x0a\x00\x01"
                                "c\x02\x04" /* b's partners: a 1 at 5, c 2 at 7 */
                                "\x02\x00\x01"
                                "b\x02\x0e" /* c's partners: b 2 at 7 */
                                "\x03\x00\x01"
                                "b\x01\x08\x00" /* y's patterns: b 1 at 4 */
                                "\x03\x00\x01"
                                "a\x01\x06\x00\x00\x01"
                                "b\x01\x04\x00"; /* z's patterns: a 1 at 3, b 1 at 5 */
    CHECK_EQ_STR(v[FLUSH_P_L_AGENTS_LEN], "{7,13,0}");
    CHECK_EQ_STR(v[FLUSH_P_L_PARTNERS_LEN], "{6,11,6}");
    /* each partners list's largest count (a: b 1; b: a 1, c 2; c: b 2) */
    CHECK_EQ_STR(v[FLUSH_P_L_PARTNERS_MAX], "{1,2,2}");
    CHECK_EQ_STR(v[FLUSH_P_M_LEN], "{7,13}");
    CHECK_EQ_INT(len[FLUSH_DATA_PARAM], sizeof lists - 1);
    CHECK(len[FLUSH_DATA_PARAM] == (int)sizeof lists - 1 &&
          memcmp(v[FLUSH_DATA_PARAM], lists, sizeof lists - 1) == 0);
    flush_build_free(v, n);
    known_drop(k);
    known_free(k);
    agg_free(a);
}

/* Flushes a with known k as the engine does; the keys it sent become known when it commits. */
static PGresult *run_flush(PGconn *c, const agg_t *a, known_t *k)
{
    char *v[FLUSH_NPARAMS];
    int len[FLUSH_NPARAMS];
    int fmt[FLUSH_NPARAMS] = {0};
    fmt[FLUSH_DATA_PARAM] = 1;
    int n = flush_build(a, "g1", false, k, v, len);
    char sql[512] = "SELECT pt_flush($1";
    for (int i = 2; i <= n; i++) {
        snprintf(sql + strlen(sql), sizeof sql - strlen(sql), ",$%d", i);
    }
    strcat(sql, ")");
    PGresult *r = PQexecParams(c, sql, n, NULL, (const char *const *)v, len, fmt, 0);
    flush_build_free(v, n);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        known_commit(k);
    } else {
        known_drop(k);
    }
    return r;
}

/* A flush of a moving partition t/0 from offset `from` to `to`, which must succeed. */
static void flush_ok(PGconn *c, agg_t *a, known_t *k, int64_t from, int64_t to)
{
    agg_note_offset(a, "t", 0, from, to);
    PGresult *r = run_flush(c, a, k);
    CHECK_EQ_STR(PQresultErrorMessage(r), "");
    PQclear(r);
}

typedef struct {
    struct event_base *base;
    int rc;
    int64_t owners;
} folded_t;

static void folded_cb(int rc, const char *err, const fold_stats_t *st, void *ud)
{
    folded_t *m = ud;
    if (rc != 0) {
        fprintf(stderr, "fold: %s\n", err);
    }
    m->rc = rc;
    m->owners = st->owners;
    event_base_loopexit(m->base, NULL);
}

/* Folds what is pending as the engine does (fold.c): returns the owners (patterns and agents)
 * folded, -1 on failure. */
static int64_t fold_all(const config_t *cfg)
{
    folded_t m = {.base = event_base_new(), .rc = -1};
    fold_t *f = fold_drain_new(m.base, cfg, 0, folded_cb, &m);
    event_base_dispatch(m.base);
    fold_free(f);
    event_base_free(m.base);
    return m.rc == 0 ? m.owners : -1;
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

/* (pattern, agent) rows of both views, which must agree, as "p/a=count". */
static void check_usage(PGconn *c, const char *want)
{
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id || '/' || agent_name || '=' || usage_count,"
                        " ' ' ORDER BY pattern_id COLLATE \"C\", agent_name COLLATE \"C\")"
                        " FROM pattern_agent_usage"),
                 want);
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id || '/' || agent_name || '=' || usage_count,"
                        " ' ' ORDER BY pattern_id COLLATE \"C\", agent_name COLLATE \"C\")"
                        " FROM agent_pattern_usage"),
                 want);
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
    PQclear(PQexec(c, "TRUNCATE pattern_lineage_nodes, pattern_agents, pattern_usage_hourly,"
                      " pattern_usage_daily, pattern_lists, pattern_lists_pending, agent_lists,"
                      " agent_lists_pending, pattern_cooccurrence_top, agent_usage_totals,"
                      " usage_hourly_totals, usage_daily_totals, agent_type_usage,"
                      " usage_consumer_offsets, usage_topic_stats, usage_dead_letters"));
    PQclear(PQexec(c, "INSERT INTO pattern_lineage_nodes (pattern_id, pattern_name, pattern_type)"
                      " VALUES ('reg', 'Registered', 'code')"));
    known_t *k = known_new(1024);

    agg_t *a = agg_new();
    agg_add_use(a, "reg", 3, "bob", 3, 5 * H + 10);
    agg_add_use(a, "reg", 3, "alice", 5, 5 * H + 20);
    agg_add_use(a, "new\"one", 7, "alice", 5, 6 * H);
    agg_note_offset(a, "t", 0, -1, 100);
    agg_add_topic(
        a, &(agg_topic_t){.topic = "t", .events = 3, .without_patterns = 1, .dead_letters = 1});
    agg_add_dead(a, "t", 0, 50, "not json", "x", "not-json", 8, 3);
    /* reg's type was not read: taken as "unknown", which the catalog contradicts */
    PGresult *r = run_flush(c, a, k);
    CHECK_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                                                         : "",
                 "PT410");
    PQclear(r);
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM pattern_agents"), "0");
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM usage_consumer_offsets"), "0");
    known_set_type(k, "reg", 3, "code", 4);
    known_set_type(k, "new\"one", 7, "unknown", 7);
    r = run_flush(c, a, k);
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    CHECK_EQ_INT(known_n_keys(k), 3);

    /* second batch continues from 100: alice/reg is known (not sent), carol/reg is new */
    agg_reset(a);
    agg_add_use(a, "reg", 3, "alice", 5, 4 * H);
    agg_add_use(a, "reg", 3, "carol", 5, 7 * H);
    agg_note_offset(a, "t", 0, 100, 130);
    r = run_flush(c, a, k);
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);

    CHECK_EQ_STR(one(c, "SELECT usage_count FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
                 "4");
    CHECK_EQ_STR(one(c, "SELECT string_agg(agent_name, ',' ORDER BY agent_name) FROM"
                        " pattern_agents WHERE pattern_id='reg'"),
                 "alice,bob,carol");
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
    check_usage(c, "new\"one/alice=1 reg/alice=2 reg/bob=1 reg/carol=1");
    CHECK_EQ_STR(one(c, "SELECT (first_used_at = pt_ts(4*3600000000))::text ||"
                        " (last_used_at = pt_ts(5*3600000000+20))::text FROM pattern_agent_usage"
                        " WHERE pattern_id = 'reg' AND agent_name = 'alice'"),
                 "truetrue");
    CHECK_EQ_STR(one(c, "SELECT sum(usage_count) FROM pattern_usage_hourly WHERE pattern_id='reg'"),
                 "4");
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM pattern_usage_hourly WHERE pattern_id='reg'"), "3");
    /* per agent: alice used reg twice and new"one once (2 patterns), bob reg once, carol once */
    CHECK_EQ_STR(one(c, "SELECT string_agg(agent_name || '=' || usage_count || '/' || "
                        "distinct_patterns, ' ' ORDER BY agent_name) FROM agent_usage_totals"),
                 "alice=3/2 bob=1/1 carol=1/1");
    CHECK_EQ_STR(one(c, "SELECT string_agg(agent_name || '/' || pattern_type || '=' || usage_count"
                        " || '/' || patterns, ' ' ORDER BY agent_name, pattern_type) FROM"
                        " agent_type_usage"),
                 "alice/code=2/1 alice/unknown=1/1 bob/code=1/1 carol/code=1/1");
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
    /* a key another engine committed meanwhile (not known here) is not counted new twice */
    PQclear(PQexec(c, "INSERT INTO pattern_agents VALUES ('reg', 'dave')"));
    agg_reset(a);
    agg_add_use(a, "reg", 3, "dave", 4, 8 * H);
    flush_ok(c, a, k, 130, 131);
    CHECK_EQ_STR(one(c, "SELECT string_agg(agent_name || '/' || distinct_patterns, ' ') FROM"
                        " agent_usage_totals WHERE agent_name = 'dave'"),
                 "dave/0");

    /* a stale writer (expects 100, the row says 131) is refused and writes nothing */
    agg_reset(a);
    agg_add_use(a, "reg", 3, "mallory", 7, 8 * H);
    agg_note_offset(a, "t", 0, 100, 120);
    r = run_flush(c, a, k);
    CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
    CHECK_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE), "PT409");
    PQclear(r);
    CHECK_EQ_STR(one(c, "SELECT usage_count FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
                 "5");
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM pattern_agents WHERE agent_name='mallory'"), "0");
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM agent_lists_pending WHERE agent_name='mallory'"),
                 "0");
    /* and a second "first" writer of a partition that already has a row is refused too */
    agg_reset(a);
    agg_add_use(a, "reg", 3, "mallory", 7, 8 * H);
    agg_note_offset(a, "t", 0, -1, 10);
    r = run_flush(c, a, k);
    CHECK_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                                                         : "",
                 "PT409");
    PQclear(r);
    CHECK_EQ_STR(one(c, "SELECT usage_count FROM pattern_lineage_nodes WHERE pattern_id='reg'"),
                 "5");
    /* the usage lists fold into one row per owner with the same answers */
    CHECK_EQ_INT(fold_all(cfg), 2 + 4); /* reg, new"one; alice, bob, carol, dave */
    CHECK_EQ_STR(one(c, "SELECT (SELECT count(*) FROM pattern_lists_pending) +"
                        " (SELECT count(*) FROM agent_lists_pending)"),
                 "0");
    check_usage(c, "new\"one/alice=1 reg/alice=2 reg/bob=1 reg/carol=1 reg/dave=1");
    CHECK_EQ_STR(one(c, "SELECT n_agents || '/' || n_partners || '/' || (agents IS NOT NULL) ||"
                        " '/' || (partners IS NULL) FROM pattern_lists WHERE pattern_id = 'reg'"),
                 "4/0/true/true");

    /* pairs: a row per pattern, partners in byte order with the n_low below it first (read by
     * SQL's own decoder); pending pairs counted once each; folded exactly */
    const char *rows = "SELECT string_agg(pattern_id || '/' || n_partners || '/' || n_low || '/'"
                       " || (SELECT string_agg(partner || ':' || cnt || ':' || last_us, '|')"
                       " FROM pt_list_entries(partners)), ' ' ORDER BY pattern_id COLLATE \"C\")"
                       " FROM pattern_lists_pending WHERE partners IS NOT NULL";
    agg_reset(a);
    agg_add_pair(a, "b", 1, "a\"{,}", 5, 5 * H);
    agg_add_pair(a, "b", 1, "c", 1, 6 * H);
    agg_add_pair(a, "c", 1, "b", 1, 4 * H);
    agg_add_pair(a, "\xc3\xa9", 2, "b", 1, 7 * H);
    flush_ok(c, a, k, 131, 140);
    CHECK_EQ_STR(one(c, rows), "a\"{,}/1/0/b:1:18000000000 "
                               "b/3/1/a\"{,}:1:18000000000|c:2:21600000000|\xc3\xa9:1:25200000000 "
                               "c/1/1/b:2:21600000000 \xc3\xa9/1/1/b:1:25200000000");
    /* each pending row's partners_max is its list's largest count, as SQL's decoder reads it */
    CHECK_EQ_STR(one(c, "SELECT count(*) FILTER (WHERE partners_max IS DISTINCT FROM"
                        " (SELECT max(cnt) FROM pt_list_entries(partners))) || '/' || count(*)"
                        " FROM pattern_lists_pending WHERE partners IS NOT NULL"),
                 "0/4");
    agg_reset(a);
    agg_add_pair(a, "c", 1, "b", 1, 3 * H);
    flush_ok(c, a, k, 140, 150);
    const char *pairs = "a\"{,}+b=1 b+c=3 b+\xc3\xa9=1";
    const char *view = "SELECT string_agg(pattern_id_1 || '+' || pattern_id_2 || '=' ||"
                       " cooccurrence_count, ' ' ORDER BY pattern_id_1 COLLATE \"C\","
                       " pattern_id_2 COLLATE \"C\") FROM pattern_cooccurrence";
    CHECK_EQ_STR(one(c, view), pairs);
    CHECK_EQ_INT(fold_all(cfg), 4);
    CHECK_EQ_STR(one(c, "SELECT count(*) FROM pattern_lists_pending"), "0");
    CHECK_EQ_STR(one(c, view), pairs);
    CHECK_EQ_STR(one(c, "SELECT last_seen_together = pt_ts(6*3600000000) FROM pattern_cooccurrence"
                        " WHERE pattern_id_1 = 'b' AND pattern_id_2 = 'c'"),
                 "t");
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id || '/' || n_partners || '/' || n_low, ' '"
                        " ORDER BY pattern_id COLLATE \"C\") FROM pattern_lists"
                        " WHERE partners IS NOT NULL"),
                 "a\"{,}/1/0 b/3/1 c/1/1 \xc3\xa9/1/1");
    /* ids array_in must not misread when unquoted: NULL, white space, a backslash */
    agg_reset(a);
    agg_add_pair(a, "NULL", 4, "x y", 3, 1 * H);
    agg_add_pair(a, "x y", 3, "p\\q", 3, 2 * H);
    agg_add_pair(a, "null", 4, "t\tab", 4, 3 * H);
    flush_ok(c, a, k, 150, 160);
    CHECK_EQ_STR(one(c, rows), "NULL/1/0/x y:1:3600000000 null/1/0/t\tab:1:10800000000 "
                               "p\\q/1/0/x y:1:7200000000 t\tab/1/1/null:1:10800000000 "
                               "x y/2/2/NULL:1:3600000000|p\\q:1:7200000000");
    CHECK_EQ_INT(fold_all(cfg), 5);
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id_1 || '+' || pattern_id_2, ' ' ORDER BY"
                        " pattern_id_1 COLLATE \"C\") FROM pattern_cooccurrence WHERE"
                        " last_seen_together < pt_ts(4*3600000000)"),
                 "NULL+x y null+t\tab p\\q+x y");
    /* pattern_cooccurrence_top across folds, kept at 100 here: 120 pairs counted 1..120 fill
     * it with 21..120; then k019 (20) gains one and ties the last member k020 (21), ranking
     * above it (byte order), and member k025 gains one: k019 is in, k020 out, k025 updated */
    PQclear(PQexec(c, "CREATE OR REPLACE FUNCTION pt_cooccurrence_top_keep() RETURNS INTEGER"
                      " LANGUAGE sql IMMUTABLE AS $$ SELECT 100 $$"));
    PQclear(PQexec(c, "TRUNCATE pattern_lists, pattern_cooccurrence_top"));
    agg_reset(a);
    char id[8];
    for (int i = 0; i < 120; i++) {
        snprintf(id, sizeof id, "k%03d", i);
        for (int n = 0; n <= i; n++) {
            agg_add_pair(a, id, 4, "z", 1, 9 * H);
        }
    }
    flush_ok(c, a, k, 160, 170);
    CHECK_EQ_INT(fold_all(cfg), 121);
    const char *top = "SELECT count(*) || '/' || min(cooccurrence_count) || '/' ||"
                      " max(cooccurrence_count) || '/' || sum(cooccurrence_count) FROM"
                      " pattern_cooccurrence_top";
    CHECK_EQ_STR(one(c, top), "100/21/120/7050");
    agg_reset(a);
    agg_add_pair(a, "k019", 4, "z", 1, 9 * H);
    agg_add_pair(a, "k025", 4, "z", 1, 9 * H);
    flush_ok(c, a, k, 170, 180);
    CHECK_EQ_INT(fold_all(cfg), 3);
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
    flush_ok(c, a, k, 180, 190);
    CHECK_EQ_INT(fold_all(cfg), 2);
    CHECK_EQ_STR(one(c, "SELECT string_agg(pattern_id_1 || '=' || cooccurrence_count, ' ' ORDER BY"
                        " pattern_id_1) FROM pattern_cooccurrence_top WHERE pattern_id_1 < 'k022'"),
                 "k017=22 k021=22");
    CHECK_EQ_STR(one(c, top), "100/22/120/7052");
    /* the rebuild gives what the folds kept */
    CHECK_EQ_STR(one(c, "SELECT pt_rebuild_cooccurrence_top()"), "NULL"); /* void */
    CHECK_EQ_STR(one(c, top), "100/22/120/7052");
    /* z's folded list holds all 120 partners, summed */
    CHECK_EQ_STR(one(c, "SELECT n_partners || '/' || n_low || '/' || (SELECT sum(cnt) FROM"
                        " pt_list_entries(partners)) FROM pattern_lists WHERE pattern_id = 'z'"),
                 "120/120/7266");
    PQclear(PQexec(c, "CREATE OR REPLACE FUNCTION pt_cooccurrence_top_keep() RETURNS INTEGER"
                      " LANGUAGE sql IMMUTABLE AS $$ SELECT 1000 $$"));
    known_free(k);
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
