#include "reload.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "app.h"
#include "auth.h"
#include "l_engine.h"
#include "log.h"
#include "lvm.h"
#include "metrics.h"
#include "notify.h"

#define MAX_FILES 256

typedef struct {
    char path[4400];
    char hash[20];
} file_t;

typedef struct retired {
    config_t *cfg; /* the config the routes were built with */
    routes_t *routes;
    struct retired *next;
} retired_t;

struct reload {
    app_t *app;
    struct event *ev_hup;
    struct event *ev_poll;
    struct event *ev_run; /* a pending reload: activations coalesce */
    config_t *routes_cfg; /* config of the running routes (NULL: app->cfg) */
    retired_t *retired;
    unsigned long long watch_sum; /* mtimes and sizes of the watched files */
    file_t files[MAX_FILES];
    size_t n_files;
    reload_status_t st;
    metric_t *m_ok, *m_failed;
};

static unsigned long long fnv(const char *s, size_t n, unsigned long long h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Adds a file's mtime and size to the watch sum. */
static void watch_file(unsigned long long *sum, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        *sum = fnv((const char *)&st.st_mtim, sizeof st.st_mtim, *sum);
        *sum = fnv((const char *)&st.st_size, sizeof st.st_size, *sum);
    }
    *sum = fnv(path, strlen(path), *sum);
}

static void watch_dir(unsigned long long *sum, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL || depth > 3) {
        if (d) {
            closedir(d);
        }
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".lua") == 0) {
            watch_file(sum, p);
        } else if (e->d_type == DT_DIR) {
            watch_dir(sum, p, depth + 1);
        }
    }
    closedir(d);
}

/* What a change of which should reload: the config file, the token file, the rule files, and
 * lua/ (routes, libraries, the router and the sandbox). */
static unsigned long long watch_sum(const config_t *c)
{
    unsigned long long sum = 1469598103934665603ULL;
    char p[4096];
    if (c->config_path) {
        watch_file(&sum, c->config_path);
    }
    if (c->http_token_file) {
        watch_file(&sum, config_path(c, c->http_token_file, p, sizeof p));
    }
    for (size_t i = 0; i < c->n_topics; i++) {
        watch_file(&sum, config_path(c, c->topics[i].rule, p, sizeof p));
    }
    watch_dir(&sum, config_path(c, "lua", p, sizeof p), 0);
    return sum;
}

static void add_file(reload_t *r, const char *path)
{
    if (r->n_files == MAX_FILES) {
        return;
    }
    size_t len = 0;
    char *src = lvm_readfile(path, &len);
    file_t *f = &r->files[r->n_files++];
    snprintf(f->path, sizeof f->path, "%s", path);
    if (src == NULL) {
        snprintf(f->hash, sizeof f->hash, "unreadable");
        return;
    }
    snprintf(f->hash, sizeof f->hash, "%016llx", fnv(src, len, 1469598103934665603ULL));
    free(src);
}

static void list_lua(reload_t *r, const char *dir, const char *rel)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] != '.' && l > 4 && strcmp(e->d_name + l - 4, ".lua") == 0) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", rel, e->d_name);
            add_file(r, p);
        }
    }
    closedir(d);
}

/* Records what the running generation loaded, with content hashes (shown in /health). */
static void record_files(reload_t *r, const config_t *c)
{
    r->n_files = 0;
    char p[4096];
    if (c->config_path) {
        add_file(r, c->config_path);
    }
    for (size_t i = 0; i < c->n_topics; i++) {
        add_file(r, config_path(c, c->topics[i].rule, p, sizeof p));
    }
    list_lua(r, config_path(c, "lua/routes", p, sizeof p), p);
    unsigned long long all = 1469598103934665603ULL;
    for (size_t i = 0; i < r->n_files; i++) {
        all = fnv(r->files[i].hash, strlen(r->files[i].hash), all);
    }
    snprintf(r->st.fingerprint, sizeof r->st.fingerprint, "%016llx", all);
}

static void free_idle_retired(reload_t *r)
{
    retired_t **pp = &r->retired;
    while (*pp) {
        retired_t *x = *pp;
        if (x->routes == NULL || routes_in_flight(x->routes) == 0) {
            *pp = x->next;
            routes_free(x->routes);
            config_free(x->cfg);
            free(x);
        } else {
            pp = &x->next;
        }
    }
}

/* Says that the bearer token changed (never what it is). */
static void log_token_change(const config_t *running, const config_t *next)
{
    const char *a = running->http_token ? running->http_token : "";
    const char *b = next->http_token ? next->http_token : "";
    if (strcmp(a, b) != 0 || running->http_token_reads != next->http_token_reads) {
        log_info("reload: the HTTP bearer token changed; it now guards: %s",
                 auth_scope(next->http_token, next->http_token_reads));
    }
}

int reload_now(reload_t *r, char *msg, size_t msglen)
{
    app_t *app = r->app;
    char err[2048];
    notify_reload_begin(); /* the service manager (systemd) is told RELOADING=1 ... READY=1 */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    r->st.last_at_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    config_t *next = config_load(app->cfg->config_path, err, sizeof err);
    rules_t *rules = NULL;
    routes_t *routes = NULL;
    if (next == NULL) {
        goto fail;
    }
    if (next->kafka_enable_consumer && next->n_topics == 0) {
        snprintf(err, sizeof err, "no topics");
        goto fail;
    }
    rules = rules_new(next, err, sizeof err);
    if (rules == NULL) {
        goto fail;
    }
    if (app->http) {
        routes = routes_new(app->base, next, app->pool, l_engine_fns, app, err, sizeof err);
        if (routes == NULL) {
            goto fail;
        }
    }
    /* Checked: swap. Nothing below can fail. */
    char restart[512];
    size_t n_restart = config_restart_keys(app->cfg, next, restart, sizeof restart);
    log_token_change(app->cfg, next);
    config_apply_live(app->cfg, next);
    log_level_t lvl;
    if (log_parse_level(app->cfg->log_level, &lvl)) {
        log_set_level(lvl);
    }
    log_format_t lfmt;
    if (log_parse_format(app->cfg->log_format, &lfmt)) {
        log_set_format(lfmt);
    }
    rules_t *old_rules = app->rules;
    if (app->ingest) {
        ingest_set_rules(app->ingest, rules);
    }
    if (app->kafka) {
        kafka_set_rules(app->kafka, rules);
    }
    app->rules = rules;
    rules_free(old_rules);
    if (routes) {
        retired_t *x = calloc(1, sizeof *x);
        if (x == NULL) {
            abort();
        }
        x->routes = app->routes;
        x->cfg = r->routes_cfg; /* NULL for the first generation: app->cfg is freed by main */
        x->next = r->retired;
        r->retired = x;
        app->routes = routes;
        r->routes_cfg = next; /* the new routes read their limits from it */
        next = NULL;
    }
    config_free(next);
    free_idle_retired(r);
    record_files(r, app->cfg);
    r->watch_sum = watch_sum(app->cfg);
    r->st.ok++;
    r->st.last_ok = true;
    if (n_restart > 0) {
        snprintf(r->st.last_message, sizeof r->st.last_message,
                 "reloaded; these options changed but need a restart to apply: %s", restart);
        log_warn("reload: %s", r->st.last_message);
    } else {
        snprintf(r->st.last_message, sizeof r->st.last_message, "reloaded");
        log_info("reload: ok (fingerprint %s)", r->st.fingerprint);
    }
    metric_add(r->m_ok, 1);
    snprintf(msg, msglen, "%s", r->st.last_message);
    notify_reload_end();
    return 0;
fail:
    routes_free(routes);
    rules_free(rules);
    config_free(next);
    /* Do not retry the same broken files every poll: wait for the next change. */
    r->watch_sum = watch_sum(app->cfg);
    r->st.failed++;
    r->st.last_ok = false;
    snprintf(r->st.last_message, sizeof r->st.last_message, "%.1000s", err);
    log_error("reload failed, the running version stays: %s", err);
    metric_add(r->m_failed, 1);
    snprintf(msg, msglen, "%s", err);
    notify_reload_end();
    return -1;
}

static void run_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    char msg[1024];
    if (reload_now(arg, msg, sizeof msg) != 0) {
        /* already logged */
    }
}

static void hup_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reload_t *r = arg;
    log_info("SIGHUP: reloading");
    event_active(r->ev_run, EV_TIMEOUT, 0);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reload_t *r = arg;
    free_idle_retired(r);
    if (!r->app->stopping && watch_sum(r->app->cfg) != r->watch_sum) {
        log_info("configuration, rules or routes changed on disk: reloading");
        event_active(r->ev_run, EV_TIMEOUT, 0);
    }
}

reload_t *reload_new(app_t *app)
{
    reload_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->app = app;
    r->ev_hup = evsignal_new(app->base, SIGHUP, hup_cb, r);
    r->ev_poll = event_new(app->base, -1, EV_PERSIST, poll_cb, r);
    r->ev_run = evtimer_new(app->base, run_cb, r);
    if (!r->ev_hup || !r->ev_poll || !r->ev_run) {
        reload_free(r);
        return NULL;
    }
    r->m_ok = metrics_series("patterntrack_reloads_total", METRIC_COUNTER,
                             "Reloads of config, rules and routes, by result.", "result=\"ok\"");
    r->m_failed =
        metrics_series("patterntrack_reloads_total", METRIC_COUNTER,
                       "Reloads of config, rules and routes, by result.", "result=\"failed\"");
    evsignal_add(r->ev_hup, NULL);
    struct timeval two = {2, 0};
    event_add(r->ev_poll, &two);
    record_files(r, app->cfg);
    r->watch_sum = watch_sum(app->cfg);
    r->st.last_ok = true;
    snprintf(r->st.last_message, sizeof r->st.last_message, "loaded at start");
    return r;
}

void reload_free(reload_t *r)
{
    if (r == NULL) {
        return;
    }
    if (r->ev_hup) {
        event_free(r->ev_hup);
    }
    if (r->ev_poll) {
        event_free(r->ev_poll);
    }
    if (r->ev_run) {
        event_free(r->ev_run);
    }
    while (r->retired) {
        retired_t *x = r->retired;
        r->retired = x->next;
        routes_free(x->routes);
        config_free(x->cfg);
        free(x);
    }
    config_free(r->routes_cfg); /* main has freed the running routes before */
    free(r);
}

const reload_status_t *reload_status(const reload_t *r)
{
    return &r->st;
}

void reload_each_file(const reload_t *r, void (*fn)(const char *path, const char *hash, void *),
                      void *ud)
{
    for (size_t i = 0; i < r->n_files; i++) {
        fn(r->files[i].path, r->files[i].hash, ud);
    }
}
