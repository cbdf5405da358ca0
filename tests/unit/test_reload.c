/* reload: a new generation (config and rules; this engine has no HTTP, so no routes) replaces
 * the running one only when all of it loads. A broken rule or config leaves the running objects
 * in place and says why; options that apply live take their new value, options that need a
 * restart keep theirs and are named; a changed file is noticed by the poll, and SIGHUP
 * reloads. (Routes, and retiring them while requests run, are it_reload's: it needs HTTP.) */
#include "check.h"

#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "config.h"
#include "metrics.h"
#include "reload.h"
#include "rules.h"

static char dir[64];

static void put(const char *name, const char *text)
{
    check_put(dir, name, text);
}

static void put_config(int batch_timeout_ms, const char *group)
{
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "return { topics = { echo = '%s/echo.lua' }, batch_timeout_ms = %d,"
             " kafka_group_id = '%s' }",
             dir, batch_timeout_ms, group);
    put("config.lua", cfg);
}

static void put_rule(const char *agent)
{
    char rule[256];
    snprintf(rule, sizeof rule, "return function(e) return '%s', e.p end\n", agent);
    put("echo.lua", rule);
}

/* The agent the running rule returns for one event. */
static const char *agent_of(app_t *app)
{
    static char agent[64];
    rule_result_t res;
    rule_meta_t meta = {.topic = "echo", .partition = 0, .offset = 1, .timestamp_ms = -1};
    char err[256] = "";
    const char *ev = "{\"p\": [\"x\"]}";
    rule_status_t st = rules_run(app->rules, (size_t)rules_find(app->rules, "echo"), ev, strlen(ev),
                                 &meta, &res, err, sizeof err);
    snprintf(agent, sizeof agent, "%.*s", st == RULE_OK ? (int)res.agent_len : 0,
             st == RULE_OK ? res.agent : "");
    rules_done(app->rules);
    return agent;
}

/* Runs the loop until reloads (ok + failed) exceed `before`, for at most `secs`. */
static bool wait_reloads(app_t *app, uint64_t before, int secs)
{
    time_t end = time(NULL) + secs;
    while (time(NULL) < end) {
        const reload_status_t *st = reload_status(app->reload);
        if (st->ok + st->failed > before) {
            return true;
        }
        struct timeval tick = {0, 50000};
        event_base_loopexit(app->base, &tick);
        event_base_dispatch(app->base);
    }
    return false;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pt-test-reload-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    put_config(500, "g1");
    put_rule("v1");
    char path[128], err[1024] = "", msg[2048];
    snprintf(path, sizeof path, "%s/config.lua", dir);
    app_t app = {0};
    app.base = event_base_new();
    app.cfg = config_load(path, err, sizeof err);
    CHECK(app.cfg != NULL);
    if (app.cfg == NULL) {
        fprintf(stderr, "config: %s\n", err);
        return check_done("test_reload");
    }
    app.rules = rules_new(app.cfg, err, sizeof err);
    CHECK(app.rules != NULL);
    app.reload = reload_new(&app);
    CHECK(app.reload != NULL);
    if (app.rules == NULL || app.reload == NULL) {
        return check_done("test_reload");
    }
    const reload_status_t *st = reload_status(app.reload);
    CHECK_EQ_STR(agent_of(&app), "v1");
    char fp0[32];
    snprintf(fp0, sizeof fp0, "%s", st->fingerprint);

    /* nothing changed: a new generation all the same, the same files' fingerprint */
    rules_t *before = app.rules;
    CHECK_EQ_INT(reload_now(app.reload, msg, sizeof msg), 0);
    CHECK(app.rules != before);
    CHECK_EQ_INT(st->ok, 1);
    CHECK_EQ_STR(st->fingerprint, fp0);
    CHECK_EQ_STR(msg, "reloaded");

    /* a rule that does not load: refused, the running rules stay (the same object) */
    put("echo.lua", "return function(e\n");
    before = app.rules;
    CHECK_EQ_INT(reload_now(app.reload, msg, sizeof msg), -1);
    CHECK(app.rules == before);
    CHECK_EQ_INT(st->failed, 1);
    CHECK(!st->last_ok);
    CHECK(strstr(msg, "echo.lua") != NULL);
    CHECK_EQ_STR(agent_of(&app), "v1");

    /* fixed and changed: the new rule runs, and the fingerprint says the files changed */
    put_rule("v2");
    CHECK_EQ_INT(reload_now(app.reload, msg, sizeof msg), 0);
    CHECK_EQ_STR(agent_of(&app), "v2");
    CHECK(strcmp(st->fingerprint, fp0) != 0);
    CHECK(st->last_ok);

    /* a live option takes its new value; one that needs a restart keeps its own and is named */
    put_config(900, "g2");
    CHECK_EQ_INT(reload_now(app.reload, msg, sizeof msg), 0);
    CHECK_EQ_INT(app.cfg->batch_timeout_ms, 900);
    CHECK_EQ_STR(app.cfg->kafka_group_id, "g1");
    CHECK(strstr(msg, "kafka_group_id") != NULL && strstr(msg, "restart") != NULL);

    /* a config that does not load: refused, every value stays */
    put("config.lua", "return {\n");
    CHECK_EQ_INT(reload_now(app.reload, msg, sizeof msg), -1);
    CHECK_EQ_INT(app.cfg->batch_timeout_ms, 900);
    CHECK(strstr(msg, "config.lua") != NULL);

    /* the poll (every 2 s) notices a changed file by itself */
    uint64_t n = st->ok + st->failed;
    put_config(700, "g1");
    CHECK(wait_reloads(&app, n, 10));
    CHECK_EQ_INT(app.cfg->batch_timeout_ms, 700);
    CHECK(st->last_ok);

    /* SIGHUP reloads, with no file changed (so the poll has nothing to do) */
    n = st->ok + st->failed;
    rules_t *r_before = app.rules;
    CHECK_EQ_INT(raise(SIGHUP), 0);
    CHECK(wait_reloads(&app, n, 10));
    CHECK_EQ_INT(st->ok + st->failed, n + 1);
    CHECK(st->last_ok && app.rules != r_before);
    CHECK_EQ_STR(agent_of(&app), "v2");

    reload_free(app.reload);
    rules_free(app.rules);
    config_free(app.cfg);
    event_base_free(app.base);
    metrics_free_all();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_done("test_reload");
}
