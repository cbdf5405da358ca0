/* ingest: what one message does to the filling batch (counted uses, dead letters by reason,
 * events held for event-ID deduplication, the per-topic counters) and how an HTTP body splits
 * into messages. No flush runs: the event loop is never started, and the batch is read through
 * the snapshot hook (ingest_note_offsets). */
#include "agg.h"
#include "check.h"
#include "config.h"
#include "ingest.h"
#include "rules.h"

#include <event2/event.h>
#include <stdlib.h>
#include <unistd.h>

static const agg_t *seen; /* the filling batch, from the snapshot hook */

static void snapshot_hook(agg_t *a, void *ud)
{
    (void)ud;
    seen = a;
}

static int64_t n_uses;
static void count_use(const agg_use_t *u, void *ud)
{
    (void)ud;
    n_uses += u->count;
}

static void message(ingest_t *g, const char *payload, size_t len, int32_t partition, int64_t offset)
{
    rule_meta_t meta = {
        .topic = "t", .partition = partition, .offset = offset, .timestamp_ms = 1700000000000};
    ingest_msg_t m = {.topic_idx = 0,
                      .topic = "t",
                      .partition = partition,
                      .offset = offset,
                      .payload = payload,
                      .len = len,
                      .meta = &meta,
                      .kafka_ts_ms = 1700000000000};
    ingest_message(g, &m);
}

static void msg(ingest_t *g, const char *payload, int32_t partition, int64_t offset)
{
    message(g, payload, strlen(payload), partition, offset);
}

int main(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/pt-test-ingest-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char rule[128], cfgpath[128], cfg[1024], err[1024] = "";
    snprintf(rule, sizeof rule, "%s/t.lua", dir);
    snprintf(cfgpath, sizeof cfgpath, "%s/config.lua", dir);
    FILE *f = fopen(rule, "w");
    CHECK(f != NULL);
    fputs("return function(e, meta) return e.a, e.p, nil, nil, meta.dedupe and e.id or nil end\n",
          f);
    fclose(f);
    snprintf(cfg, sizeof cfg,
             "return { topics = { t = '%s' }, dedupe = { t = { window_s = 60 } },"
             " max_event_bytes = 1024, cooccurrence_max_patterns = 3,"
             " dead_letter_payload_max = 16 }",
             rule);
    f = fopen(cfgpath, "w");
    CHECK(f != NULL);
    fputs(cfg, f);
    fclose(f);
    config_t *c = config_load(cfgpath, err, sizeof err);
    CHECK(c != NULL);
    rules_t *rules = c ? rules_new(c, err, sizeof err) : NULL;
    CHECK(rules != NULL);
    if (rules == NULL) {
        fprintf(stderr, "%s\n", err);
        config_free(c);
        return check_done("test_ingest");
    }
    struct event_base *base = event_base_new();
    ingest_t *g = ingest_new(base, c, rules, (ingest_hooks_t){.snapshot = snapshot_hook});
    CHECK(g != NULL);

    msg(g, "{\"a\": \"x\", \"p\": [\"p1\", \"p2\", \"p1\"]}", 0, 1); /* 2 uses, p1 once */
    message(g, "{\"a\": \"\xff\"}", 11, 0, 2);                       /* not UTF-8 */
    char big[2048];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[sizeof big - 1] = '}';
    message(g, big, sizeof big, 0, 3);                     /* over max_event_bytes */
    msg(g, "{not json", 0, 4);                             /* not JSON */
    msg(g, "{\"p\": [\"ok\", \"\"]}", 0, 5);               /* 1 use and a dead letter */
    msg(g, "{\"p\": [\"a\", \"b\", \"c\", \"d\"]}", 0, 6); /* 4 uses, no pairs: over the limit */
    msg(g, "{\"p\": [\"q\"], \"id\": \"e1\"}", 0, 7);      /* held: dedupe, with an ID */
    msg(g, "{\"p\": [\"q\"], \"id\": \"e1\"}", -1, -1);    /* HTTP: counted as it is */
    msg(g, "{\"p\": []}", 0, 8);                           /* without patterns */

    const ingest_topic_stats_t *st = ingest_stats(g, 0);
    CHECK_EQ_INT(st->events, 9);
    CHECK_EQ_INT(st->dead_letters, 4);
    CHECK_EQ_INT(st->without_patterns, 1);
    CHECK_EQ_INT(st->uses, 2 + 1 + 4 + 1 + 1);
    ingest_note_offsets(g);
    CHECK(seen != NULL);
    if (seen) {
        CHECK_EQ_INT(agg_events(seen), 9);
        CHECK_EQ_INT(agg_n_held(seen), 1);
        CHECK_EQ_INT(agg_held_at(seen, 0)->offset, 7);
        CHECK_EQ_INT(agg_held_at(seen, 0)->window_s, 60);
        n_uses = 0;
        agg_each_use(seen, count_use, NULL);
        CHECK_EQ_INT(n_uses, 2 + 1 + 4 + 1); /* the held event's use waits for its claim */
        CHECK_EQ_INT(agg_n_pairs(seen), 1);  /* p1-p2 only: the 4-pattern event is over 3 */
        CHECK_EQ_INT(agg_n_dead(seen), 4);
        const char *want[] = {"not utf-8", "too large", "not json", "invalid pattern id"};
        for (size_t i = 0; i < 4 && i < agg_n_dead(seen); i++) {
            CHECK_EQ_STR(agg_dead_at(seen, i)->reason, want[i]);
        }
        /* payloads are kept cut at dead_letter_payload_max, their size remembered */
        CHECK_EQ_INT(agg_dead_at(seen, 1)->payload_len, 16);
        CHECK_EQ_INT(agg_dead_at(seen, 1)->payload_size, sizeof big);
    }
    CHECK(ingest_buffer_bytes(g) > 0);
    CHECK(ingest_accepting(g));

    /* HTTP bodies */
    const char *nd = "{\"p\": [\"n1\"]}\n\n  {\"p\": [\"n2\"]}\r\n{\"p\": [\"n3\"]}";
    CHECK_EQ_INT(ingest_body(g, 0, "t", nd, strlen(nd), INGEST_NDJSON), 3);
    const char *arr =
        " [ {\"p\": [\"x,]\"], \"s\": \"}\\\"]\"}, {\"p\": [\"y\"], \"q\": [[1, 2]]} ] ";
    CHECK_EQ_INT(ingest_body(g, 0, "t", arr, strlen(arr), INGEST_JSON), 2);
    const char *one = "{\"p\": [\"solo\"]}";
    CHECK_EQ_INT(ingest_body(g, 0, "t", one, strlen(one), INGEST_JSON), 1);
    CHECK_EQ_INT(ingest_body(g, 0, "t", "[]", 2, INGEST_JSON), 0);
    CHECK_EQ_INT(st->events, 9 + 3 + 2 + 1);
    CHECK_EQ_INT(st->dead_letters, 4); /* each element was a whole object */

    ingest_free(g);
    event_base_free(base);
    rules_free(rules);
    config_free(c);
    unlink(rule);
    unlink(cfgpath);
    rmdir(dir);
    return check_done("test_ingest");
}
