/* main: command line, start-up order and shutdown. Owns the event loop and the top-level
 * objects; everything else is reached through them. */
#include <event2/event.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dirent.h>
#include <lauxlib.h>

#include "app.h"
#include "config.h"
#include "dump.h"
#include "http.h"
#include "ingest.h"
#include "kafka.h"
#include "l_engine.h"
#include "log.h"
#include "lvm.h"
#include "metrics.h"
#include "migrate.h"
#include "notify.h"
#include "pg_pool.h"
#include "routes.h"
#include "rules.h"

#ifndef PT_VERSION
#define PT_VERSION "0.0.0"
#endif

static void usage(FILE *out)
{
    fprintf(
        out,
        "patterntrack %s - counts pattern usage from Kafka events into PostgreSQL and\n"
        "answers analytics over HTTP.\n"
        "\n"
        "Usage:\n"
        "  patterntrack [run] [--config FILE]   run the engine (the default command)\n"
        "  patterntrack migrate [--config FILE] apply the SQL migrations and exit\n"
        "  patterntrack check [--config FILE]   validate the config, every rule and route; "
        "start nothing\n"
        "  patterntrack test-rules [DIR] [--config FILE]\n"
        "                                       run rule fixtures (default rules/tests/*.json:\n"
        "                                       cases of an event and the expected agent,\n"
        "                                       patterns, time, note and, when given,\n"
        "                                       event_id); exit 1 on any failure\n"
        "  patterntrack fold [--owners N] [--config FILE]\n"
        "                                       fold every pending partner list (a pattern's\n"
        "                                       agents and co-occurring patterns, an agent's\n"
        "                                       patterns) into pattern_lists and agent_lists now\n"
        "                                       (with --owners, those of at most N patterns and\n"
        "                                       agents, in one transaction) and exit; safe while\n"
        "                                       engines run (one fold at a time). Answers are the\n"
        "                                       same before and after. Old name:\n"
        "                                       merge-cooccurrence [--patterns N]\n"
        "  patterntrack dump-lists [--snapshot ID] [--config FILE]\n"
        "                                       print every partner list (a pattern's agents\n"
        "                                       and co-occurring patterns, an agent's patterns,\n"
        "                                       folded and pending) as rows for COPY: kind, src,\n"
        "                                       row, owner, n, n_low, ord, partner, count,\n"
        "                                       first_us, last_us; --snapshot reads the snapshot\n"
        "                                       another transaction exported\n"
        "  patterntrack options-markdown        print the option table as Markdown\n"
        "  patterntrack --help | --version\n"
        "\n"
        "The config file is Lua returning a table (default: etc/patterntrack.lua under the\n"
        "root, when it exists). Every key is optional; unknown keys are errors.\n"
        "Environment variables override the file where listed.\n"
        "\n",
        PT_VERSION);
    config_print_help(out);
    fprintf(out, "\nSignals: SIGTERM/SIGINT stop consuming, flush, store offsets and exit 0.\n"
                 "Exit status: 0 clean stop, 1 bad usage or config, 2 start-up failure,\n"
                 "3 the final flush did not finish within shutdown_timeout_ms.\n");
}

/* Requests go to whichever routes generation is current when they arrive. */
static void http_cb(struct evhttp_request *req, void *ud)
{
    app_t *app = ud;
    routes_handle(req, app->routes);
}

static void closed_cb(void *ud)
{
    app_t *app = ud;
    log_info("consumer closed; exiting");
    event_base_loopexit(app->base, NULL);
}

static void drained_cb(void *ud)
{
    app_t *app = ud;
    event_base_loopexit(app->base, NULL);
}

#define TEARDOWN_TIMEOUT_S 20

static void teardown_timeout(int sig)
{
    (void)sig;
    static const char msg[] = "patterntrack: shutdown: freeing resources took over 20 s "
                              "(a library thread did not stop); exiting anyway\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_t *app = arg;
    log_error("shutdown: the final flush did not finish within shutdown_timeout_ms; exiting "
              "anyway (unflushed events are consumed again on the next start)");
    app->exit_code = 3;
    event_base_loopbreak(app->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    app_t *app = arg;
    if (app->stopping) {
        log_warn("second signal; exiting now");
        app->exit_code = 3;
        event_base_loopbreak(app->base);
        return;
    }
    app->stopping = true;
    log_info("%s: stopping (flush, store offsets, leave the group)",
             sig == SIGTERM ? "SIGTERM" : "SIGINT");
    notify_stopping();
    struct timeval tv = {(time_t)(app->cfg->shutdown_timeout_ms / 1000),
                         (suseconds_t)((app->cfg->shutdown_timeout_ms % 1000) * 1000)};
    evtimer_add(app->ev_deadline, &tv);
    if (app->kafka) {
        kafka_close(app->kafka, closed_cb, app);
    } else {
        ingest_drain(app->ingest, drained_cb, app);
    }
}

/* Event loop lag: a timer due every LAG_PROBE_MS observes how late it runs. Everything the
 * engine does (Kafka, rules, flush building, HTTP answers, Lua routes) shares one thread, so
 * this is the wait every HTTP request and Kafka batch sees on top of its own work; its
 * histogram tells an operator whether slow answers come from the engine or from PostgreSQL. */
#define LAG_PROBE_MS 100

/* Arms the probe: due LAG_PROBE_MS from now (a one-shot timer, re-armed at each run, so "due"
 * is exactly what was asked of libevent). */
static void lag_arm(app_t *app)
{
    clock_gettime(CLOCK_MONOTONIC, &app->lag_due);
    app->lag_due.tv_nsec += LAG_PROBE_MS * 1000000L;
    if (app->lag_due.tv_nsec >= 1000000000L) {
        app->lag_due.tv_nsec -= 1000000000L;
        app->lag_due.tv_sec++;
    }
    struct timeval tv = {0, LAG_PROBE_MS * 1000};
    event_base_update_cache_time(app->base); /* libevent counts from its cached "now" */
    evtimer_add(app->ev_lag, &tv);
}

static void lag_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_t *app = arg;
    static metric_t *m;
    if (m == NULL) {
        m = metrics_series("patterntrack_event_loop_lag_seconds", METRIC_HISTOGRAM,
                           "How late a timer due every 100 ms ran: time the engine's single "
                           "thread was busy with other work.",
                           "");
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double late = (double)(now.tv_sec - app->lag_due.tv_sec) +
                  (double)(now.tv_nsec - app->lag_due.tv_nsec) / 1e9;
    metric_observe(m, late > 0 ? late : 0);
    lag_arm(app);
}

/* STATUS= for the service manager (systemctl status): what is consumed and served, and how
 * much was counted. */
static void status_cb(char *buf, size_t len, void *ud)
{
    const app_t *app = ud;
    uint64_t events = 0;
    for (size_t i = 0; app->ingest && app->rules && i < rules_count(app->rules); i++) {
        events += ingest_stats(app->ingest, i)->events;
    }
    char kafka[64] = "", http[96] = "";
    if (app->kafka) {
        snprintf(kafka, sizeof kafka, "%zu partitions assigned; ", kafka_n_parts(app->kafka));
    }
    if (app->http) {
        snprintf(http, sizeof http, "HTTP on %s:%d; ", app->cfg->http_bind, http_port(app->http));
    }
    const char *stopping = !app->stopping ? ""
                           : app->kafka   ? "stopping (final flush, leaving the group); "
                                          : "stopping (final flush); ";
    snprintf(buf, len, "%s%s%s%llu events in, %llu flushes (%llu failed)", stopping, kafka, http,
             (unsigned long long)events,
             (unsigned long long)(app->ingest ? ingest_flushes_ok(app->ingest) : 0),
             (unsigned long long)(app->ingest ? ingest_flushes_failed(app->ingest) : 0));
}

/* Ready with Kafka: the first partitions are positioned at their stored offsets. */
static void first_assigned_cb(void *ud)
{
    (void)ud;
    notify_ready();
}

static int run(config_t *cfg)
{
    char err[2048];
    app_t app = {.cfg = cfg, .started = time(NULL)};
    int rc = 2;
    if (migrate_run(cfg, 30, err, sizeof err) != 0) {
        log_error("start-up: %s", err);
        return 2;
    }
    /* SIGTERM and SIGINT wait (blocked) until their handlers are in the loop: a stop asked
     * during start-up (an orchestrator's, or a test's right after "consuming") is then the
     * same clean stop as later, not the default action. Threads created meanwhile (librdkafka's,
     * the flush builder's) inherit the mask, so the loop's thread is the one that gets them. */
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
    /* Kafka reading re-activates itself while messages are queued (128 per turn). libevent runs
     * the active callbacks until none is left before it looks at timers and sockets again, so
     * draining a backlog after a back-pressure pause kept HTTP requests and timers waiting for
     * up to 1.2 s (measured with patterntrack_event_loop_lag_seconds). With a dispatch slice
     * the loop looks again after 5 ms of callbacks, and what arrived meanwhile runs next. */
    struct event_config *ec = event_config_new();
    if (ec != NULL) {
        struct timeval slice = {0, 5000};
        (void)event_config_set_max_dispatch_interval(ec, &slice, -1, 0);
        app.base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    if (app.base == NULL) {
        log_error("start-up: cannot create the event loop");
        return 2;
    }
    if (notify_start(app.base, status_cb, &app) != 0) {
        goto done;
    }
    app.rules = rules_new(cfg, err, sizeof err);
    if (app.rules == NULL) {
        log_error("start-up: rules: %s", err);
        goto done;
    }
    if (cfg->kafka_enable_consumer) {
        app.kafka = kafka_new(app.base, cfg, app.rules, err, sizeof err);
        if (app.kafka == NULL) {
            log_error("start-up: %s", err);
            goto done;
        }
    }
    /* Ingest runs without Kafka too: HTTP ingest feeds the same batches. */
    app.ingest = ingest_new(app.base, cfg, app.rules,
                            app.kafka ? kafka_ingest_hooks(app.kafka) : (ingest_hooks_t){0});
    if (app.ingest == NULL) {
        log_error("start-up: out of memory");
        goto done;
    }
    if (app.kafka) {
        kafka_set_ingest(app.kafka, app.ingest);
        kafka_on_first_assignment(app.kafka, first_assigned_cb, NULL);
        if (kafka_start(app.kafka, err, sizeof err) != 0) {
            log_error("start-up: %s", err);
            goto done;
        }
        log_info("consuming %zu topics as group %s from %s", rules_count(app.rules),
                 cfg->kafka_group_id, cfg->kafka_bootstrap_servers);
    } else {
        log_info("KAFKA_ENABLE_CONSUMER is false: not consuming (HTTP ingest still works)");
    }
    if (cfg->http_port > 0) {
        char opts[256];
        /* UTC so timestamps render as ...Z; the timeout bounds every HTTP query; a client that
         * vanished mid-query is noticed by the server within a second. JIT compilation and
         * parallel workers cost more than these short queries take (measured: 21 ms -> 6 ms
         * for /top over 100,000 patterns). */
        snprintf(
            opts, sizeof opts,
            "-c TimeZone=UTC -c statement_timeout=%lld -c client_connection_check_interval=1000"
            " -c jit=off -c max_parallel_workers_per_gather=0",
            (long long)cfg->query_timeout_ms);
        app.pool = pg_pool_new(app.base, cfg->database_url, opts, (int)cfg->pg_pool_size, 1024,
                               (int)cfg->pg_prepared_statements);
        if (app.pool == NULL) {
            log_error("start-up: out of memory");
            goto done;
        }
        app.routes = routes_new(app.base, cfg, app.pool, l_engine_fns, &app, err, sizeof err);
        if (app.routes == NULL) {
            log_error("start-up: routes: %s", err);
            goto done;
        }
        app.http = http_new(app.base, cfg, http_cb, &app, err, sizeof err);
        if (app.http == NULL) {
            log_error("start-up: %s", err);
            goto done;
        }
        metrics_add_collector(l_engine_collect, &app);
    }
    app.upkeep = upkeep_new(app.base, cfg);
    app.fold = fold_new(app.base, cfg);
    if (app.upkeep == NULL || app.fold == NULL) {
        log_error("start-up: out of memory");
        goto done;
    }
    app.reload = reload_new(&app);
    if (app.reload == NULL) {
        log_error("start-up: out of memory");
        goto done;
    }
    app.ev_lag = evtimer_new(app.base, lag_cb, &app);
    if (app.ev_lag) {
        lag_arm(&app);
    }
    app.ev_term = evsignal_new(app.base, SIGTERM, signal_cb, &app);
    app.ev_int = evsignal_new(app.base, SIGINT, signal_cb, &app);
    app.ev_deadline = evtimer_new(app.base, deadline_cb, &app);
    evsignal_add(app.ev_term, NULL);
    evsignal_add(app.ev_int, NULL);
    if (app.kafka == NULL) {
        /* Without Kafka, ready now: HTTP, when configured, listens (http_new bound it). */
        notify_ready();
    }
    pthread_sigmask(SIG_UNBLOCK, &stop_sigs, NULL);
    event_base_dispatch(app.base);
    rc = app.exit_code;
    /* Tearing down joins library threads (librdkafka's among them); none of it may keep a
     * stopping engine alive, so a watchdog bounds it. */
    signal(SIGALRM, teardown_timeout);
    alarm(TEARDOWN_TIMEOUT_S);
done:
    notify_stop();
    if (app.ev_term) {
        event_free(app.ev_term);
    }
    if (app.ev_int) {
        event_free(app.ev_int);
    }
    if (app.ev_deadline) {
        event_free(app.ev_deadline);
    }
    if (app.ev_lag) {
        event_free(app.ev_lag);
    }
    upkeep_free(app.upkeep);
    fold_free(app.fold);
    http_free(app.http);
    routes_free(app.routes);
    reload_free(app.reload);
    pg_pool_free(app.pool);
    kafka_free(app.kafka);
    ingest_free(app.ingest);
    rules_free(app.rules);
    if (app.base) {
        event_base_free(app.base);
    }
    metrics_free_all();
    alarm(0);
    return rc;
}

/* budget_call(fn, ...) -> pcall results, with the rule instruction budget. */
static int l_main_budget_call(lua_State *L)
{
    lvm_t *vm = lua_touserdata(L, lua_upvalueindex(1));
    int64_t budget = (int64_t)lua_tointeger(L, lua_upvalueindex(2));
    int n = lua_gettop(L) - 1;
    int rc = lvm_pcall(vm, n, LUA_MULTRET, budget);
    lua_pushboolean(L, rc == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* rule_for(topic) -> path, chunkname: the configured rule, else rules/<topic>.lua */
static int l_main_rule_for(lua_State *L)
{
    const config_t *cfg = lua_touserdata(L, lua_upvalueindex(1));
    const char *topic = luaL_checkstring(L, 1);
    char rel[600], path[4096];
    snprintf(rel, sizeof rel, "rules/%s.lua", topic);
    const char *use = rel;
    for (size_t i = 0; i < cfg->n_topics; i++) {
        if (strcmp(cfg->topics[i].topic, topic) == 0) {
            use = cfg->topics[i].rule;
        }
    }
    lua_pushstring(L, config_path(cfg, use, path, sizeof path));
    lua_pushstring(L, use);
    return 2;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* patterntrack test-rules [DIR]: every DIR/<topic>.json fixture file through the rules. */
static int test_rules(config_t *cfg, const char *dir_arg)
{
    char err[2048], dir[4096], path[4400];
    config_path(cfg, dir_arg ? dir_arg : "rules/tests", dir, sizeof dir);
    lvm_t *vm = lvm_new(cfg->root, (size_t)cfg->lua_memory_mb << 20, err, sizeof err);
    if (vm == NULL) {
        fprintf(stderr, "patterntrack test-rules: %s\n", err);
        return 1;
    }
    lua_State *L = lvm_state(vm);
    char *src = NULL;
    size_t len;
    config_path(cfg, "lua/pt/testrules.lua", path, sizeof path);
    if ((src = lvm_readfile(path, &len)) == NULL ||
        luaL_loadbufferx(L, src, len, "@lua/pt/testrules.lua", "t") != LUA_OK) {
        fprintf(stderr, "patterntrack test-rules: cannot load %s\n", path);
        free(src);
        lvm_free(vm);
        return 1;
    }
    free(src);
    lvm_push_sandbox(vm);
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "patterntrack test-rules: cannot open %s\n", dir);
        lvm_free(vm);
        return 1;
    }
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names);
    lvm_push_readfile(vm);
    lua_newtable(L);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        lua_pushstring(L, path);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        free(names[i]);
    }
    lua_pushlightuserdata(L, cfg);
    lua_pushcclosure(L, l_main_rule_for, 1);
    lua_pushlightuserdata(L, vm);
    lua_pushinteger(L, cfg->rule_instruction_budget);
    lua_pushcclosure(L, l_main_budget_call, 2);
    int rc = lvm_pcall(vm, 5, 1, 0);
    int failed = 1;
    if (rc != LUA_OK) {
        fprintf(stderr, "patterntrack test-rules: %s\n", lua_tostring(L, -1));
    } else {
        failed = (int)lua_tointeger(L, -1);
    }
    lvm_free(vm);
    if (n == 0) {
        fprintf(stderr, "patterntrack test-rules: no fixture files (*.json) in %s\n", dir);
        return 1;
    }
    return failed > 0 ? 1 : 0;
}

static int check(config_t *cfg)
{
    char err[2048];
    rules_t *r = rules_new(cfg, err, sizeof err);
    if (r == NULL) {
        fprintf(stderr, "patterntrack check: %s\n", err);
        return 1;
    }
    printf("config %s: ok\n", cfg->config_path ? cfg->config_path : "(defaults)");
    for (size_t i = 0; i < rules_count(r); i++) {
        printf("rule %s for topic %s: ok\n", rules_file(r, i), rules_topic(r, i));
    }
    /* Routes load like at start-up; the pool never connects (no query runs). */
    app_t app = {.cfg = cfg, .rules = r};
    app.base = event_base_new();
    app.pool = app.base ? pg_pool_new(app.base, cfg->database_url, NULL, 1, 1, 0) : NULL;
    routes_t *routes =
        app.pool ? routes_new(app.base, cfg, app.pool, l_engine_fns, &app, err, sizeof err) : NULL;
    int rc = 0;
    if (routes == NULL) {
        fprintf(stderr, "patterntrack check: routes: %s\n", app.pool ? err : "out of memory");
        rc = 1;
    } else {
        printf("routes in lua/routes: ok\n");
    }
    routes_free(routes);
    pg_pool_free(app.pool);
    if (app.base) {
        event_base_free(app.base);
    }
    rules_free(r);
    return rc;
}

typedef struct {
    struct event_base *base;
    int rc;
} drain_t;

static void drained_fold_cb(int rc, const char *err, const fold_stats_t *st, void *ud)
{
    drain_t *d = ud;
    if (rc != 0) {
        fprintf(stderr, "patterntrack fold: %s\n", err);
        d->rc = 2;
    } else {
        printf("folded the pending rows of %lld patterns and agents (%lld entries) in %lld "
               "transactions; %lld entries pending\n",
               (long long)st->owners, (long long)st->entries_in, (long long)st->transactions,
               (long long)st->pending_entries);
    }
    event_base_loopexit(d->base, NULL);
}

/* Folds what is pending with the engine's own fold (fold.c), on a loop of its own. */
static int fold_now(config_t *cfg, long long max_owners)
{
    drain_t d = {.base = event_base_new(), .rc = 2};
    fold_t *m = d.base ? fold_drain_new(d.base, cfg, max_owners, drained_fold_cb, &d) : NULL;
    if (m == NULL) {
        fprintf(stderr, "patterntrack fold: out of memory\n");
    } else {
        d.rc = 0;
        event_base_dispatch(d.base);
    }
    fold_free(m);
    if (d.base) {
        event_base_free(d.base);
    }
    metrics_free_all();
    return d.rc;
}

int main(int argc, char **argv)
{
    const char *cmd = "run";
    const char *config_file = NULL;
    const char *fixture_dir = NULL;
    long long max_owners = 0;
    const char *snapshot = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("patterntrack %s\n", PT_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "patterntrack: --config needs a file\n");
                return 1;
            }
            config_file = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config_file = argv[i] + 9;
        } else if (argv[i][0] != '-' && i == 1) {
            cmd = argv[i];
        } else if (argv[i][0] != '-' && i == 2 && !strcmp(cmd, "test-rules")) {
            fixture_dir = argv[i];
        } else if (!strcmp(argv[i], "--snapshot") && !strcmp(cmd, "dump-lists")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "patterntrack: --snapshot needs a snapshot id\n");
                return 1;
            }
            snapshot = argv[++i];
        } else if ((!strcmp(argv[i], "--owners") && !strcmp(cmd, "fold")) ||
                   (!strcmp(argv[i], "--patterns") && !strcmp(cmd, "merge-cooccurrence"))) {
            char *end = NULL;
            max_owners = i + 1 < argc ? strtoll(argv[i + 1], &end, 10) : 0;
            if (end == NULL || *end != '\0' || max_owners < 1) {
                fprintf(stderr, "patterntrack: %s needs a number (1 or more)\n", argv[i]);
                return 1;
            }
            i++;
        } else {
            fprintf(stderr, "patterntrack: unknown argument '%s' (see --help)\n", argv[i]);
            return 1;
        }
    }
    if (!strcmp(cmd, "options-markdown")) {
        config_print_markdown(stdout);
        return 0;
    }
    if (strcmp(cmd, "run") && strcmp(cmd, "migrate") && strcmp(cmd, "check") &&
        strcmp(cmd, "test-rules") && strcmp(cmd, "fold") && strcmp(cmd, "merge-cooccurrence") &&
        strcmp(cmd, "dump-lists")) {
        fprintf(stderr, "patterntrack: unknown command '%s' (see --help)\n", cmd);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Flush parameters are large, short-lived buffers: served by mmap they go back to the
     * system when freed, instead of raising the heap (and RSS) for good. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    /* librdkafka's threads would each get a malloc arena that keeps freed fetch buffers. */
    mallopt(M_ARENA_MAX, 2);
    /* No fastbins (tcache still caches small chunks): with fastbins, the first allocation of
     * 1 KiB or more after a burst of small frees consolidates every fastbin chunk at once, a
     * stall of milliseconds in the event loop when the Lua heap holds many cached answers. */
    mallopt(M_MXFAST, 0);
    char err[2048];
    config_t *cfg = config_load(config_file, err, sizeof err);
    if (cfg == NULL) {
        fprintf(stderr, "patterntrack: %s\n", err);
        return 1;
    }
    log_level_t lvl;
    if (log_parse_level(cfg->log_level, &lvl)) {
        log_set_level(lvl);
    }
    log_format_t lfmt;
    if (log_parse_format(cfg->log_format, &lfmt)) {
        log_set_format(lfmt);
    }
    int rc;
    if (!strcmp(cmd, "migrate")) {
        rc = migrate_run(cfg, 30, err, sizeof err) == 0 ? 0 : 2;
        if (rc != 0) {
            fprintf(stderr, "patterntrack migrate: %s\n", err);
        } else {
            printf("migrations applied\n");
        }
    } else if (!strcmp(cmd, "check")) {
        rc = check(cfg);
    } else if (!strcmp(cmd, "test-rules")) {
        rc = test_rules(cfg, fixture_dir);
    } else if (!strcmp(cmd, "dump-lists")) {
        rc = dump_lists(cfg, snapshot, stdout, err, sizeof err) == 0 ? 0 : 2;
        if (rc != 0) {
            fprintf(stderr, "patterntrack dump-lists: %s\n", err);
        }
    } else if (!strcmp(cmd, "fold") || !strcmp(cmd, "merge-cooccurrence")) {
        rc = fold_now(cfg, max_owners);
    } else {
        rc = run(cfg);
    }
    config_free(cfg);
    return rc;
}
