/* libFuzzer target for config.c: the config file (a Lua chunk that returns a table of options,
 * run in the sandbox, then checked option by option) and the environment overrides (set_text,
 * parse_int, parse_bool). The input's first five lines are the values of DATABASE_URL,
 * KAFKA_BOOTSTRAP_SERVERS, KAFKA_ENABLE_CONSUMER, KAFKA_GROUP_ID and HTTP_PORT (an empty line
 * leaves the variable unset); the rest is the config file. A configuration that loads must
 * hold what config_load promises, take its overrides from the environment, and survive a
 * reload onto a running configuration (config_restart_keys, config_apply_live) and back. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static const char *const env_names[] = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS",
                                        "KAFKA_ENABLE_CONSUMER", "KAFKA_GROUP_ID", "HTTP_PORT"};
#define N_ENV (sizeof env_names / sizeof env_names[0])

/* The variables live in these buffers (putenv): setting one rewrites its buffer instead of
 * allocating as setenv does, so an input frees all it allocates. An empty value is what
 * config_load treats as unset. */
#define ENV_CAP 8192
static char env_bufs[N_ENV][ENV_CAP];

static int file_fd = -1;
static char file_path[64];
static config_t *running;  /* stands for the engine's configuration across reloads */
static config_t *pristine; /* what running goes back to after each input */

static void init(void)
{
    setenv("PATTERNTRACK_ROOT", PT_SOURCE_DIR, 1);
    for (size_t i = 0; i < N_ENV; i++) {
        snprintf(env_bufs[i], ENV_CAP, "%s=", env_names[i]);
        FUZZ_CHECK(putenv(env_bufs[i]) == 0);
    }
    file_fd = memfd_create("pt-fuzz-config", MFD_CLOEXEC);
    FUZZ_CHECK(file_fd >= 0);
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    char err[1024];
    running = config_load(NULL, err, sizeof err);
    pristine = config_load(NULL, err, sizeof err);
    if (running == NULL || pristine == NULL) {
        fprintf(stderr, "fuzz_config: the default configuration does not load: %s\n", err);
        abort();
    }
}

static bool topic_name_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249) {
        return false;
    }
    return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool one_of(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, set[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* What config_load promises of a configuration it returns. */
static void check_loaded(const config_t *c, char *const env[N_ENV])
{
    static const char *const offsets[] = {"earliest", "latest"};
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    FUZZ_CHECK(c->root && c->database_url && c->kafka_bootstrap_servers && c->kafka_group_id &&
               c->http_bind);
    FUZZ_CHECK(one_of(c->kafka_start_offset, offsets, 2));
    FUZZ_CHECK(one_of(c->log_level, levels, 4));
    FUZZ_CHECK(c->http_port >= 0 && c->http_port <= 65535);
    FUZZ_CHECK(c->http_max_body_bytes >= 1024 && c->http_max_body_bytes <= 1073741824);
    FUZZ_CHECK(c->max_event_bytes >= 64 && c->max_event_bytes <= 1073741824);
    FUZZ_CHECK(c->batch_max_events >= 1 && c->batch_timeout_ms >= 1);
    FUZZ_CHECK(c->lua_memory_mb >= 1 && c->lua_memory_mb <= 4096);
    FUZZ_CHECK(c->pg_pool_size >= 1 && c->pg_pool_size <= 64);
    FUZZ_CHECK(c->cooccurrence_max_patterns >= 0 && c->cooccurrence_max_patterns <= 1000);
    FUZZ_CHECK(c->lifetime_default_days >= 1 && c->lifetime_default_days <= 36500);
    FUZZ_CHECK(c->n_topics <= CONFIG_MAX_TOPICS && c->n_props <= CONFIG_MAX_PROPS &&
               c->n_lifetimes <= CONFIG_MAX_PROPS);
    FUZZ_CHECK(c->n_topics > 0 || !c->kafka_enable_consumer);
    for (size_t i = 0; i < c->n_topics; i++) {
        FUZZ_CHECK(topic_name_ok(c->topics[i].topic) && c->topics[i].rule != NULL);
        for (size_t j = 0; j < i; j++) {
            FUZZ_CHECK(strcmp(c->topics[i].topic, c->topics[j].topic) != 0);
        }
    }
    for (size_t i = 0; i < c->n_props; i++) {
        FUZZ_CHECK(c->kafka_properties[i].key && c->kafka_properties[i].value);
    }
    /* The environment wins over the file. */
    if (env[0]) {
        FUZZ_CHECK(strcmp(c->database_url, env[0]) == 0);
    }
    if (env[1]) {
        FUZZ_CHECK(strcmp(c->kafka_bootstrap_servers, env[1]) == 0);
    }
    if (env[3]) {
        FUZZ_CHECK(strcmp(c->kafka_group_id, env[3]) == 0);
    }
    if (env[4]) {
        char *end;
        errno = 0;
        long long port = strtoll(env[4], &end, 10);
        FUZZ_CHECK(errno == 0 && *end == '\0' && port == c->http_port);
    }
}

/* A reload onto the running configuration: what may change live is taken, and back. */
static void check_reload(const config_t *next)
{
    char keys[2048];
    memset(keys, 'x', sizeof keys);
    size_t n = config_restart_keys(running, next, keys, sizeof keys);
    FUZZ_CHECK(memchr(keys, '\0', sizeof keys) != NULL);
    FUZZ_CHECK((n == 0) == (keys[0] == '\0'));
    FUZZ_CHECK(config_restart_keys(next, next, keys, sizeof keys) == 0);
    config_apply_live(running, next);
    FUZZ_CHECK(running->n_topics == next->n_topics);
    for (size_t i = 0; i < next->n_topics; i++) {
        FUZZ_CHECK(strcmp(running->topics[i].topic, next->topics[i].topic) == 0);
        FUZZ_CHECK(strcmp(running->topics[i].rule, next->topics[i].rule) == 0);
    }
    FUZZ_CHECK(running->n_lifetimes == next->n_lifetimes);
    FUZZ_CHECK(running->lifetime_default_days == next->lifetime_default_days);
    FUZZ_CHECK(strcmp(running->log_level, next->log_level) == 0);
    FUZZ_CHECK(running->batch_max_events == next->batch_max_events);
    FUZZ_CHECK(config_restart_keys(running, next, keys, sizeof keys) == n);
    config_apply_live(running, pristine);
    FUZZ_CHECK(config_restart_keys(running, pristine, keys, sizeof keys) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (file_fd < 0) {
        init();
    }
    const char *p = (const char *)data, *end = p + size;
    char *env[N_ENV] = {NULL};
    for (size_t i = 0; i < N_ENV; i++) {
        const char *stop = p;
        if (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            stop = nl ? nl : end;
        }
        size_t name = strlen(env_names[i]) + 1;
        size_t len = (size_t)(stop - p);
        len = len < ENV_CAP - name ? len : ENV_CAP - name - 1;
        memcpy(env_bufs[i] + name, p, len);
        env_bufs[i][name + len] = '\0'; /* the value ends at a NUL, as in the environment */
        env[i] = env_bufs[i][name] ? env_bufs[i] + name : NULL;
        p = stop < end ? stop + 1 : end;
    }
    FUZZ_CHECK(ftruncate(file_fd, 0) == 0);
    size_t flen = (size_t)(end - p);
    FUZZ_CHECK(flen == 0 || pwrite(file_fd, p, flen, 0) == (ssize_t)flen);

    char err[1024];
    memset(err, 'x', sizeof err);
    config_t *c = config_load(file_path, err, sizeof err);
    if (c == NULL) {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
    } else {
        check_loaded(c, env);
        check_reload(c);
        config_free(c);
    }
    return 0;
}
