/* rules: what the host makes of a rule's return values (agent, patterns, time, note, event
 * ID: accepted forms and bad results), the statuses of payloads that are not objects, of rules
 * that raise, loop or allocate without bound, and what a rule sees in meta. The rule used echoes
 * fields of the event, so each case is its payload. */
#include "check.h"
#include "config.h"
#include "rules.h"

#include <stdlib.h>
#include <unistd.h>

static char dir[64];

static void put(const char *name, const char *text)
{
    check_put(dir, name, text);
}

static rules_t *load(void)
{
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "return { topics = { echo = '%s/echo.lua', meta = '%s/meta.lua',"
             " loop = '%s/loop.lua', bomb = '%s/bomb.lua' },"
             " rule_instruction_budget = 200000, lua_memory_mb = 8 }",
             dir, dir, dir, dir);
    put("config.lua", cfg);
    char path[128], err[1024] = "";
    snprintf(path, sizeof path, "%s/config.lua", dir);
    config_t *c = config_load(path, err, sizeof err);
    CHECK(c != NULL);
    if (c == NULL) {
        fprintf(stderr, "config: %s\n", err);
        return NULL;
    }
    rules_t *r = rules_new(c, err, sizeof err);
    CHECK(r != NULL);
    if (r == NULL) {
        fprintf(stderr, "rules: %s\n", err);
    }
    config_free(c);
    return r;
}

typedef struct {
    rule_status_t st;
    char err[512];
    char agent[64];
    size_t n_patterns;
    char patterns[256]; /* joined by ',' (NULL elements as ~) */
    bool has_time, time_unusable;
    int64_t time_us;
    char note[80];
    char id[300]; /* "" when none */
} out_t;

static out_t run(rules_t *r, const char *topic, const char *payload, const rule_meta_t *meta)
{
    out_t o = {0};
    rule_result_t res;
    rule_meta_t m0 = {.topic = topic, .partition = 3, .offset = 42, .timestamp_ms = -1};
    o.st = rules_run(r, (size_t)rules_find(r, topic), payload, strlen(payload), meta ? meta : &m0,
                     &res, o.err, sizeof o.err);
    if (o.st == RULE_OK) {
        snprintf(o.agent, sizeof o.agent, "%.*s", (int)res.agent_len, res.agent);
        o.n_patterns = res.n_patterns;
        size_t used = 0;
        for (size_t i = 0; i < res.n_patterns && used < sizeof o.patterns - 1; i++) {
            size_t len;
            const char *s = rules_pattern(r, i, &len);
            used += (size_t)snprintf(o.patterns + used, sizeof o.patterns - used, "%s%.*s",
                                     i ? "," : "", s ? (int)len : 1, s ? s : "~");
        }
        o.has_time = res.has_time;
        o.time_unusable = res.time_unusable;
        o.time_us = res.time_us;
        snprintf(o.note, sizeof o.note, "%s", res.note ? res.note : "");
        if (res.event_id) {
            snprintf(o.id, sizeof o.id, "%.*s", (int)res.event_id_len, res.event_id);
        }
    }
    rules_done(r);
    return o;
}

static void test_results(rules_t *r)
{
    out_t o = run(r, "echo",
                  "{\"a\": \"alice\", \"p\": [\"x\", \"y\", 5], \"t\": "
                  "\"2025-01-01T00:00:00Z\", \"n\": \"flag\", \"id\": \"ev-1\"}",
                  NULL);
    CHECK_EQ_INT(o.st, RULE_OK);
    CHECK_EQ_STR(o.agent, "alice");
    CHECK_EQ_STR(o.patterns, "x,y,~"); /* a non-string element is reported, not counted */
    CHECK(o.has_time && o.time_us == INT64_C(1735689600000000));
    CHECK_EQ_STR(o.note, "flag");
    CHECK_EQ_STR(o.id, "ev-1");
    /* nothing returned: agent unknown, no patterns, no time, no note, no ID */
    o = run(r, "echo", "{}", NULL);
    CHECK_EQ_INT(o.st, RULE_OK);
    CHECK_EQ_STR(o.agent, "unknown");
    CHECK(o.n_patterns == 0 && !o.has_time && !o.time_unusable && o.note[0] == 0 && !o.id[0]);
    /* times: epoch seconds; an unparsable string is unusable, not an error */
    o = run(r, "echo", "{\"t\": 1735689600.5}", NULL);
    CHECK(o.st == RULE_OK && o.has_time && o.time_us == INT64_C(1735689600500000));
    o = run(r, "echo", "{\"t\": \"yesterday\"}", NULL);
    CHECK(o.st == RULE_OK && !o.has_time && o.time_unusable);
    /* event IDs: integers (JSON numbers are floats in Lua) in decimal */
    o = run(r, "echo", "{\"id\": 12}", NULL);
    CHECK_EQ_STR(o.id, "12");
    o = run(r, "echo", "{\"id\": -9007199254740991}", NULL);
    CHECK_EQ_STR(o.id, "-9007199254740991");
    char long_id[300];
    memset(long_id, 'x', 255);
    long_id[255] = '\0';
    char payload[400];
    snprintf(payload, sizeof payload, "{\"id\": \"%s\"}", long_id);
    o = run(r, "echo", payload, NULL);
    CHECK_EQ_STR(o.id, long_id);
    /* bad results, each named */
    static const struct {
        const char *payload, *want;
    } bad[] = {
        {"{\"a\": 5}", "as the agent"},
        {"{\"a\": \"\"}", "invalid agent name"},
        {"{\"p\": \"x\"}", "as the pattern list"},
        {"{\"t\": true}", "as the time"},
        {"{\"n\": 5}", "as the note"},
        {"{\"n\": \"\"}", "invalid note"},
        {"{\"id\": \"\"}", "event ID of 0 bytes"},
        {"{\"id\": 1.5}", "fraction"},
        {"{\"id\": 9007199254740993}", "beyond 2^53"},
        {"{\"id\": true}", "boolean as the event ID"},
        {"{\"id\": {}}", "table as the event ID"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = run(r, "echo", bad[i].payload, NULL);
        CHECK_EQ_INT(o.st, RULE_BAD_RESULT);
        if (strstr(o.err, bad[i].want) == NULL) {
            CHECK(!"message");
            fprintf(stderr, "  %s: %s\n", bad[i].payload, o.err);
        }
    }
    snprintf(payload, sizeof payload, "{\"id\": \"%sx\"}", long_id); /* 256 bytes */
    o = run(r, "echo", payload, NULL);
    CHECK(o.st == RULE_BAD_RESULT && strstr(o.err, "256 bytes") != NULL);
}

static void test_statuses(rules_t *r)
{
    CHECK_EQ_INT(run(r, "echo", "not json", NULL).st, RULE_NOT_JSON);
    CHECK_EQ_INT(run(r, "echo", "[1, 2]", NULL).st, RULE_NOT_OBJECT);
    CHECK_EQ_INT(run(r, "echo", "\"text\"", NULL).st, RULE_NOT_OBJECT);
    CHECK_EQ_INT(run(r, "echo", "{\"a\": ", NULL).st, RULE_NOT_JSON);
    out_t o = run(r, "echo", "{\"boom\": true}", NULL);
    CHECK(o.st == RULE_ERROR && strstr(o.err, "boom!") != NULL);
    CHECK_EQ_INT(run(r, "loop", "{}", NULL).st, RULE_TIMEOUT);
    CHECK_EQ_INT(run(r, "bomb", "{}", NULL).st, RULE_NOMEM);
    /* the state goes on after each */
    CHECK_EQ_INT(run(r, "echo", "{\"a\": \"after\"}", NULL).st, RULE_OK);
}

static void test_meta(rules_t *r)
{
    rule_meta_t m = {.topic = "meta",
                     .partition = 7,
                     .offset = 123456789012,
                     .key = "k1",
                     .key_len = 2,
                     .timestamp_ms = 1700000000000,
                     .n_headers = 1,
                     .header_names = {"h"},
                     .header_values = {"v"},
                     .header_lens = {1},
                     .dedupe = true};
    out_t o = run(r, "meta", "{}", &m);
    CHECK_EQ_INT(o.st, RULE_OK);
    CHECK_EQ_STR(o.agent, "meta|7|123456789012|k1|1700000000000|v|true");
    m.dedupe = false;
    m.key = NULL;
    m.timestamp_ms = -1;
    m.n_headers = 0;
    o = run(r, "meta", "{}", &m);
    CHECK_EQ_STR(o.agent, "meta|7|123456789012|nil|nil|nil|false");
    /* meta is read-only */
    o = run(r, "meta", "{\"write\": true}", &m);
    CHECK(o.st == RULE_ERROR && strstr(o.err, "read-only") != NULL);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pt-test-rules-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    put("echo.lua", "return function(e, meta)\n"
                    "  if e.boom then error('boom!') end\n"
                    "  return e.a, e.p, e.t, e.n, e.id\n"
                    "end\n");
    put("meta.lua", "return function(e, meta)\n"
                    "  if e.write then meta.topic = 'x' end\n"
                    "  local h = meta.headers\n"
                    "  return table.concat({meta.topic, tostring(meta.partition),\n"
                    "    tostring(meta.offset), tostring(meta.key), tostring(meta.timestamp),\n"
                    "    tostring(h and h.h), tostring(meta.dedupe)}, '|')\n"
                    "end\n");
    put("loop.lua", "return function() while true do end end\n");
    put("bomb.lua",
        "return function() local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1000000) .. i "
        "end end\n");
    rules_t *r = load();
    if (r) {
        test_results(r);
        test_statuses(r);
        test_meta(r);
        rules_free(r);
    }
    const char *names[] = {"echo.lua", "meta.lua", "loop.lua", "bomb.lua", "config.lua"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return check_done("test_rules");
}
