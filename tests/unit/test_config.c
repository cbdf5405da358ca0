/* config: every option refuses a value of the wrong type and names itself; every environment
 * override applies and refuses a bad value naming the variable; dedupe's table is validated;
 * a reload tells options that need a restart from those that apply live. The option list
 * comes from config_print_markdown, so an option added later is covered without editing this
 * file. */
#include "check.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    char key[64];
    char type[16];
    char def[128]; /* "" when the default is described in words */
    char env[64];  /* "" when none */
} opt_t;

static opt_t opts[128];
static size_t n_opts;

/* "| `key` | type | `default` | ENV | help |" rows of the option table. */
static void read_options(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_markdown(f);
    fclose(f);
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "| `", 3) != 0 || n_opts == sizeof opts / sizeof opts[0]) {
            continue;
        }
        opt_t *o = &opts[n_opts];
        char *cells[5] = {0};
        char *p = line + 1;
        for (int i = 0; i < 5 && p; i++) {
            char *bar = strchr(p, '|');
            if (bar) {
                *bar = '\0';
            }
            cells[i] = p;
            p = bar ? bar + 1 : NULL;
        }
        if (!cells[3]) {
            continue;
        }
        /* trim spaces and backticks */
        for (int i = 0; i < 4; i++) {
            char *s = cells[i];
            while (*s == ' ' || *s == '`') {
                s++;
            }
            char *e = s + strlen(s);
            while (e > s && (e[-1] == ' ' || e[-1] == '`')) {
                *--e = '\0';
            }
            cells[i] = s;
        }
        snprintf(o->key, sizeof o->key, "%s", cells[0]);
        snprintf(o->type, sizeof o->type, "%s", cells[1]);
        snprintf(o->def, sizeof o->def, "%s", strcmp(cells[2], "see meaning") == 0 ? "" : cells[2]);
        snprintf(o->env, sizeof o->env, "%s", cells[3]);
        n_opts++;
    }
    free(buf);
}

static config_t *load(const char *text, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/pt-test-config-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        return NULL;
    }
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    config_t *c = config_load(path, err, errlen);
    unlink(path);
    return c;
}

/* Fails the check with the message when cond does not hold. */
static void expect(bool cond, const char *what, const char *err)
{
    CHECK(cond);
    if (!cond) {
        fprintf(stderr, "  %s: %s\n", what, err);
    }
}

static void test_wrong_types(void)
{
    size_t tried = 0;
    for (size_t i = 0; i < n_opts; i++) {
        const opt_t *o = &opts[i];
        if (strcmp(o->key, "root") == 0) {
            continue; /* applied before the file is read, from the environment only */
        }
        const char *bad = strcmp(o->type, "string") == 0    ? "42"
                          : strcmp(o->type, "integer") == 0 ? "\"x\""
                          : strcmp(o->type, "boolean") == 0 ? "\"yes\""
                                                            : "7";
        char text[256], err[2048] = "";
        snprintf(text, sizeof text, "return { %.63s = %s }", o->key, bad);
        config_t *c = load(text, err, sizeof err);
        char what[128];
        snprintf(what, sizeof what, "%.63s = %s", o->key, bad);
        expect(c == NULL && strstr(err, o->key) != NULL, what, err);
        config_free(c);
        tried++;
    }
    CHECK_EQ_INT(tried, n_opts - 1); /* every option but root */
    /* a fraction is not an integer, an unknown option is named */
    char err[2048] = "";
    config_t *c = load("return { batch_max_events = 1.5 }", err, sizeof err);
    expect(c == NULL && strstr(err, "fraction") != NULL, "fraction", err);
    config_free(c);
    c = load("return { batch_max_event = 5 }", err, sizeof err);
    expect(c == NULL && strstr(err, "unknown option 'batch_max_event'") != NULL, "unknown", err);
    config_free(c);
}

static void test_environment(void)
{
    size_t tried = 0;
    for (size_t i = 0; i < n_opts; i++) {
        const opt_t *o = &opts[i];
        if (o->env[0] == '\0' || strcmp(o->key, "root") == 0) {
            continue;
        }
        char err[2048] = "";
        /* the default given as the variable loads */
        const char *good = o->def[0] ? o->def : "0123456789abcdef-token";
        setenv(o->env, good, 1);
        config_t *c = load("return {}", err, sizeof err);
        expect(c != NULL, o->env, err);
        config_free(c);
        /* a value of the wrong kind is refused, naming the variable */
        const char *bad = strcmp(o->type, "integer") == 0   ? "12x"
                          : strcmp(o->type, "boolean") == 0 ? "maybe"
                                                            : NULL;
        if (bad) {
            setenv(o->env, bad, 1);
            c = load("return {}", err, sizeof err);
            expect(c == NULL && strstr(err, o->env) != NULL, o->env, err);
            config_free(c);
        }
        unsetenv(o->env);
        tried++;
    }
    CHECK(tried >= 5);
    /* the environment wins over the file */
    char err[2048] = "";
    setenv("HTTP_PORT", "9123", 1);
    setenv("KAFKA_ENABLE_CONSUMER", "false", 1);
    setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/elsewhere", 1);
    config_t *c =
        load("return { http_port = 8000, kafka_enable_consumer = true }", err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->http_port, 9123);
        CHECK(!c->kafka_enable_consumer);
        CHECK_EQ_STR(c->database_url, "postgresql://u@127.0.0.1:1/elsewhere");
    }
    config_free(c);
    setenv("HTTP_PORT", "70000", 1); /* out of range */
    c = load("return {}", err, sizeof err);
    expect(c == NULL && strstr(err, "HTTP_PORT") != NULL && strstr(err, "65535") != NULL,
           "HTTP_PORT range", err);
    config_free(c);
    unsetenv("HTTP_PORT");
    unsetenv("KAFKA_ENABLE_CONSUMER");
    unsetenv("DATABASE_URL");
}

static void test_dedupe(void)
{
    char err[2048] = "";
    config_t *c = load("return { dedupe = { [\"agent-routing-decisions\"] = { window_s = 60 },"
                       " [\"agent-actions\"] = { window_s = 3600 } } }",
                       err, sizeof err);
    expect(c != NULL, "dedupe", err);
    if (c) {
        CHECK_EQ_INT(c->n_dedupe, 2);
        CHECK_EQ_STR(c->dedupe[0].topic, "agent-actions"); /* sorted */
        CHECK_EQ_INT(config_dedupe_window(c, "agent-actions"), 3600);
        CHECK_EQ_INT(config_dedupe_window(c, "agent-routing-decisions"), 60);
        CHECK_EQ_INT(config_dedupe_window(c, "agent-manifest-injections"), 0);
    }
    config_free(c);
    c = load("return {}", err, sizeof err);
    CHECK(c != NULL && c->n_dedupe == 0); /* off unless configured */
    config_free(c);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"return { dedupe = 5 }", "dedupe must be a table"},
        {"return { dedupe = { [\"agent-actions\"] = 3600 } }", "must be a table { window_s"},
        {"return { dedupe = { [\"agent-actions\"] = {} } }", "needs window_s"},
        {"return { dedupe = { [\"agent-actions\"] = { window_s = 0 } } }", "1..2592000"},
        {"return { dedupe = { [\"agent-actions\"] = { window_s = 2592001 } } }", "1..2592000"},
        {"return { dedupe = { [\"agent-actions\"] = { window_s = 1.5 } } }", "whole seconds"},
        {"return { dedupe = { [\"agent-actions\"] = { window = 60 } } }", "unknown field 'window'"},
        {"return { dedupe = { [\"bad topic!\"] = { window_s = 60 } } }", "Kafka topic names"},
        {"return { dedupe = { [\"no-rule\"] = { window_s = 60 } } }",
         "topic 'no-rule' has no rule in topics"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        c = load(bad[i].text, err, sizeof err);
        expect(c == NULL && strstr(err, bad[i].want) != NULL, bad[i].text, err);
        config_free(c);
    }
}

static void test_reload(void)
{
    char err[2048] = "";
    config_t *a = load("return { http_port = 8000, batch_max_events = 1000 }", err, sizeof err);
    config_t *b = load("return { http_port = 8001, batch_max_events = 2000,"
                       " dedupe = { [\"agent-actions\"] = { window_s = 5 } } }",
                       err, sizeof err);
    CHECK(a != NULL && b != NULL);
    if (a && b) {
        char keys[512];
        CHECK_EQ_INT(config_restart_keys(a, b, keys, sizeof keys), 1);
        CHECK_EQ_STR(keys, "http_port");
        config_apply_live(a, b);
        CHECK_EQ_INT(a->batch_max_events, 2000);
        CHECK_EQ_INT(a->http_port, 8000); /* not live */
        CHECK_EQ_INT(config_dedupe_window(a, "agent-actions"), 5);
    }
    config_free(a);
    config_free(b);
}

int main(void)
{
    read_options();
    CHECK(n_opts >= 40);
    test_wrong_types();
    test_environment();
    test_dedupe();
    test_reload();
    return check_done("test_config");
}
