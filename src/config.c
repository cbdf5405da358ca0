#include "config.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_options.h"
#include "lvm.h"

#ifndef PT_SOURCE_DIR
#define PT_SOURCE_DIR "."
#endif

static const char *const default_topics[] = {"agent-manifest-injections", "agent-actions",
                                             "agent-routing-decisions"};

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

/* Sets a scalar option from text (defaults and environment). */
static int set_text(config_t *c, const option_t *o, const char *text, const char *origin, char *err,
                    size_t errlen)
{
    char *base = (char *)c;
    switch (o->type) {
    case T_STRING: {
        char **dst = (char **)(base + o->offset);
        free(*dst);
        *dst = xstrdup(text);
        return 0;
    }
    case T_INT: {
        int64_t v;
        if (parse_int(text, &v) != 0 || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: %s must be an integer in %lld..%lld, got '%s'", origin,
                     o->key, (long long)o->min, (long long)o->max, text);
            return -1;
        }
        *(int64_t *)(base + o->offset) = v;
        return 0;
    }
    case T_BOOL: {
        bool v;
        if (parse_bool(text, &v) != 0) {
            snprintf(err, errlen, "%s: %s must be true or false, got '%s'", origin, o->key, text);
            return -1;
        }
        *(bool *)(base + o->offset) = v;
        return 0;
    }
    default:
        snprintf(err, errlen, "%s: %s cannot be set from text", origin, o->key);
        return -1;
    }
}

static void clear_topics(config_t *c)
{
    for (size_t i = 0; i < c->n_topics; i++) {
        free(c->topics[i].topic);
        free(c->topics[i].rule);
    }
    c->n_topics = 0;
}

static int valid_topic_name(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-')) {
            return 0;
        }
    }
    return 1;
}

/* The string at idx (which must be a string), or NULL when it holds a NUL byte: C would cut it
 * there, so "a\0b" would pass as "a". [-0, +0] */
static const char *cstring_at(lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return strlen(s) == len ? s : NULL;
}

/* Reads the table at the top of the stack into the option o. [-0, +0] */
static int cmp_topic(const void *a, const void *b)
{
    return strcmp(((const config_topic_t *)a)->topic, ((const config_topic_t *)b)->topic);
}

static int cmp_prop(const void *a, const void *b)
{
    return strcmp(((const config_prop_t *)a)->key, ((const config_prop_t *)b)->key);
}

static void clear_dedupe(config_t *c)
{
    for (size_t i = 0; i < c->n_dedupe; i++) {
        free(c->dedupe[i].topic);
    }
    c->n_dedupe = 0;
}

static int cmp_dedupe(const void *a, const void *b)
{
    return strcmp(((const config_dedupe_t *)a)->topic, ((const config_dedupe_t *)b)->topic);
}

/* dedupe = { [topic] = { window_s = N }, ... } at the top of the stack. [-0, +0] */
static int set_dedupe(config_t *c, lua_State *L, const option_t *o, const char *origin, char *err,
                      size_t errlen)
{
    if (lua_type(L, -1) != LUA_TTABLE) {
        snprintf(err, errlen,
                 "%s: dedupe must be a table of topic = { window_s = seconds }, got %s", origin,
                 luaL_typename(L, -1));
        return -1;
    }
    clear_dedupe(c);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? cstring_at(L, -2) : NULL;
        if (k == NULL || !valid_topic_name(k)) {
            snprintf(err, errlen, "%s: dedupe: keys must be Kafka topic names", origin);
            lua_pop(L, 2);
            return -1;
        }
        if (lua_type(L, -1) != LUA_TTABLE) {
            snprintf(err, errlen, "%s: dedupe: '%s' must be a table { window_s = seconds }, got %s",
                     origin, k, luaL_typename(L, -1));
            lua_pop(L, 2);
            return -1;
        }
        int64_t window = -1;
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            const char *f = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(f, "window_s") != 0) {
                snprintf(err, errlen, "%s: dedupe: '%s': unknown field '%s' (only window_s)",
                         origin, k, f);
                lua_pop(L, 4);
                return -1;
            }
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < o->min ||
                lua_tointeger(L, -1) > o->max) {
                snprintf(err, errlen,
                         "%s: dedupe: '%s': window_s must be whole seconds in %lld..%lld", origin,
                         k, (long long)o->min, (long long)o->max);
                lua_pop(L, 4);
                return -1;
            }
            window = (int64_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        if (window < 0) {
            snprintf(err, errlen, "%s: dedupe: '%s' needs window_s (seconds)", origin, k);
            lua_pop(L, 2);
            return -1;
        }
        if (c->n_dedupe == CONFIG_MAX_TOPICS) {
            snprintf(err, errlen, "%s: dedupe: at most %d topics", origin, CONFIG_MAX_TOPICS);
            lua_pop(L, 2);
            return -1;
        }
        c->dedupe[c->n_dedupe].topic = xstrdup(k);
        c->dedupe[c->n_dedupe].window_s = window;
        c->n_dedupe++;
        lua_pop(L, 1);
    }
    qsort(c->dedupe, c->n_dedupe, sizeof c->dedupe[0], cmp_dedupe);
    return 0;
}

int64_t config_dedupe_window(const config_t *c, const char *topic)
{
    for (size_t i = 0; i < c->n_dedupe; i++) {
        if (strcmp(c->dedupe[i].topic, topic) == 0) {
            return c->dedupe[i].window_s;
        }
    }
    return 0;
}

static int set_lua(config_t *c, lua_State *L, const option_t *o, const char *origin, char *err,
                   size_t errlen)
{
    char *base = (char *)c;
    int t = lua_type(L, -1);
    switch (o->type) {
    case T_STRING:
        if (t != LUA_TSTRING) {
            snprintf(err, errlen, "%s: %s must be a string, got %s", origin, o->key,
                     lua_typename(L, t));
            return -1;
        }
        if (cstring_at(L, -1) == NULL) {
            snprintf(err, errlen, "%s: %s must not contain a NUL byte", origin, o->key);
            return -1;
        }
        return set_text(c, o, lua_tostring(L, -1), origin, err, errlen);
    case T_INT:
        if (!lua_isinteger(L, -1)) {
            snprintf(err, errlen, "%s: %s must be an integer, got %s", origin, o->key,
                     t == LUA_TNUMBER ? "a fraction" : lua_typename(L, t));
            return -1;
        } else {
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
            return set_text(c, o, num, origin, err, errlen);
        }
    case T_BOOL:
        if (t != LUA_TBOOLEAN) {
            snprintf(err, errlen, "%s: %s must be true or false, got %s", origin, o->key,
                     lua_typename(L, t));
            return -1;
        }
        *(bool *)(base + o->offset) = lua_toboolean(L, -1);
        return 0;
    case T_DAYS:
        if (t != LUA_TTABLE) {
            snprintf(err, errlen, "%s: %s must be a table of pattern_type = days", origin, o->key);
            return -1;
        }
        for (size_t i = 0; i < c->n_lifetimes; i++) {
            free(c->lifetimes[i].key);
            free(c->lifetimes[i].value);
        }
        c->n_lifetimes = 0;
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING || cstring_at(L, -2) == NULL ||
                !lua_isinteger(L, -1) || lua_tointeger(L, -1) < o->min ||
                lua_tointeger(L, -1) > o->max) {
                snprintf(err, errlen, "%s: %s must map pattern types to whole days (%lld..%lld)",
                         origin, o->key, (long long)o->min, (long long)o->max);
                lua_pop(L, 2);
                return -1;
            }
            const char *k = lua_tostring(L, -2);
            long long days = (long long)lua_tointeger(L, -1);
            if (strcmp(k, "default") == 0) {
                c->lifetime_default_days = days;
            } else if (c->n_lifetimes < CONFIG_MAX_PROPS) {
                char num[32];
                snprintf(num, sizeof num, "%lld", days);
                c->lifetimes[c->n_lifetimes].key = xstrdup(k);
                c->lifetimes[c->n_lifetimes].value = xstrdup(num);
                c->n_lifetimes++;
            }
            lua_pop(L, 1);
        }
        return 0;
    case T_DEDUPE:
        return set_dedupe(c, L, o, origin, err, errlen);
    case T_TOPICS:
    case T_PROPS:
        if (t != LUA_TTABLE) {
            snprintf(err, errlen, "%s: %s must be a table, got %s", origin, o->key,
                     lua_typename(L, t));
            return -1;
        }
        if (o->type == T_TOPICS) {
            clear_topics(c);
        }
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING ||
                cstring_at(L, -2) == NULL || cstring_at(L, -1) == NULL) {
                snprintf(err, errlen, "%s: %s must map strings to strings (without NUL bytes)",
                         origin, o->key);
                lua_pop(L, 2);
                return -1;
            }
            const char *k = lua_tostring(L, -2);
            const char *v = lua_tostring(L, -1);
            if (o->type == T_TOPICS) {
                if (!valid_topic_name(k)) {
                    snprintf(err, errlen, "%s: topics: '%s' is not a valid Kafka topic name",
                             origin, k);
                    lua_pop(L, 2);
                    return -1;
                }
                if (c->n_topics == CONFIG_MAX_TOPICS) {
                    snprintf(err, errlen, "%s: topics: at most %d topics", origin,
                             CONFIG_MAX_TOPICS);
                    lua_pop(L, 2);
                    return -1;
                }
                c->topics[c->n_topics].topic = xstrdup(k);
                c->topics[c->n_topics].rule = xstrdup(v);
                c->n_topics++;
            } else {
                if (c->n_props == CONFIG_MAX_PROPS) {
                    snprintf(err, errlen, "%s: kafka_properties: at most %d", origin,
                             CONFIG_MAX_PROPS);
                    lua_pop(L, 2);
                    return -1;
                }
                c->kafka_properties[c->n_props].key = xstrdup(k);
                c->kafka_properties[c->n_props].value = xstrdup(v);
                c->n_props++;
            }
            lua_pop(L, 1);
        }
        /* lua_next's order is the table's hash order, which differs between Lua states: sort,
         * so that a reload compares like with like (and librdkafka sees a stable order). */
        if (o->type == T_TOPICS) {
            qsort(c->topics, c->n_topics, sizeof c->topics[0], cmp_topic);
        } else {
            qsort(c->kafka_properties, c->n_props, sizeof c->kafka_properties[0], cmp_prop);
        }
        return 0;
    }
    return -1;
}

/* The config file's root (the value at the top of L's stack, [-0, +0]) replaces the one
 * find_root chose, unless PATTERNTRACK_ROOT is set (the environment overrides the file). A
 * relative root is relative to the file's directory. The root must hold lua/pt/sandbox.lua:
 * a root without the engine's files is a config error naming the path. */
static int root_from_file(config_t *c, lua_State *L, const char *path, char *err, size_t errlen)
{
    const char *env = getenv("PATTERNTRACK_ROOT");
    if (env != NULL && *env != '\0') {
        return 0;
    }
    if (lua_type(L, -1) != LUA_TSTRING || cstring_at(L, -1) == NULL || !*lua_tostring(L, -1)) {
        snprintf(err, errlen, "%s: root must be a non-empty string (a directory), got %s", path,
                 luaL_typename(L, -1));
        return -1;
    }
    const char *v = lua_tostring(L, -1);
    const char *slash = strrchr(path, '/');
    char root[4096], probe[4200];
    if (v[0] == '/' || slash == NULL) {
        snprintf(root, sizeof root, "%s", v);
    } else {
        snprintf(root, sizeof root, "%.*s/%s", (int)(slash - path), path, v);
    }
    snprintf(probe, sizeof probe, "%s/lua/pt/sandbox.lua", root);
    if (access(probe, R_OK) != 0) {
        snprintf(err, errlen,
                 "%s: root %s does not hold the engine's files (cannot read %s: %s); root is "
                 "the directory of lua/, rules/, sql/ and web/ (installed: "
                 "PREFIX/share/patterntrack)",
                 path, root, probe, strerror(errno));
        return -1;
    }
    free(c->root);
    c->root = xstrdup(root);
    return 0;
}

static int load_file(config_t *c, const char *path, char *err, size_t errlen)
{
    int rc = -1;
    lvm_t *vm = lvm_new(c->root, 16u << 20, err, errlen);
    if (vm == NULL) {
        return -1;
    }
    lua_State *L = lvm_state(vm);
    lvm_push_sandbox(vm);
    lua_getfield(L, -1, "load_file");
    lua_pushstring(L, path);
    lua_pushstring(L, path);
    if (lvm_pcall(vm, 2, 2, 10000000) != LUA_OK) {
        snprintf(err, errlen, "%s: %s", path, lua_tostring(L, -1));
        goto done;
    }
    if (lua_isnil(L, -2)) {
        if (lua_type(L, -1) == LUA_TSTRING) {
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
        } else {
            snprintf(err, errlen, "%s: the file must return a table of options", path);
        }
        goto done;
    }
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TTABLE) {
        snprintf(err, errlen, "%s: the file must return a table of options, got %s", path,
                 luaL_typename(L, -1));
        goto done;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || cstring_at(L, -2) == NULL) {
            snprintf(err, errlen, "%s: option names must be strings (without NUL bytes)", path);
            goto done;
        }
        const char *key = lua_tostring(L, -2);
        const option_t *o = config_find_option(key);
        if (o == NULL) {
            snprintf(err, errlen, "%s: unknown option '%s' (see patterntrack --help)", path, key);
            goto done;
        }
        if (strcmp(key, "root") == 0) {
            if (root_from_file(c, L, path, err, errlen) != 0) {
                goto done;
            }
            lua_pop(L, 1);
            continue;
        }
        if (set_lua(c, L, o, path, err, errlen) != 0) {
            goto done;
        }
        lua_pop(L, 1);
    }
    rc = 0;
done:
    lvm_free(vm);
    return rc;
}

static bool file_exists(const char *p)
{
    return access(p, R_OK) == 0;
}

#define TOKEN_MIN 16
#define TOKEN_MAX 4096

/* RFC 6750's b64token, with a floor on length: a guessable token is no guard. */
static bool valid_token(const char *t)
{
    size_t n = strlen(t);
    if (n < TOKEN_MIN || n > TOKEN_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/' ||
              ch == '=')) {
            return false;
        }
    }
    return true;
}

/* Reads the token file into c->http_token. The token itself never appears in a message. */
static int read_token_file(config_t *c, char *err, size_t errlen)
{
    char path[4096], buf[TOKEN_MAX + 64];
    config_path(c, c->http_token_file, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "http_token_file %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    bool more = !feof(f) && fgetc(f) != EOF;
    fclose(f);
    buf[n] = '\0';
    size_t a = 0;
    while (a < n && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r' || buf[a] == '\n')) {
        a++;
    }
    while (n > a &&
           (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r' || buf[n - 1] == '\n')) {
        buf[--n] = '\0';
    }
    if (more || !valid_token(buf + a)) {
        snprintf(err, errlen,
                 "http_token_file %s: must hold one token of %d to %d characters of A-Z a-z 0-9 "
                 "- . _ ~ + / =",
                 path, TOKEN_MIN, TOKEN_MAX);
        return -1;
    }
    free(c->http_token);
    c->http_token = xstrdup(buf + a);
    return 0;
}

/* Settles the token in force: http_token (file or environment) or http_token_file, not both;
 * an empty http_token is no token. */
static int resolve_token(config_t *c, char *err, size_t errlen)
{
    if (c->http_token != NULL && c->http_token[0] == '\0') {
        free(c->http_token);
        c->http_token = NULL;
    }
    if (c->http_token_file != NULL && c->http_token_file[0] != '\0') {
        if (c->http_token != NULL) {
            snprintf(err, errlen,
                     "set http_token (or PATTERNTRACK_HTTP_TOKEN) or http_token_file, not both");
            return -1;
        }
        return read_token_file(c, err, errlen);
    }
    if (c->http_token != NULL && !valid_token(c->http_token)) {
        snprintf(err, errlen,
                 "http_token must be %d to %d characters of A-Z a-z 0-9 - . _ ~ + / = (the value "
                 "is not shown)",
                 TOKEN_MIN, TOKEN_MAX);
        return -1;
    }
    return 0;
}

/* Finds the root before the file is read: sandbox.lua lives there. In order: PATTERNTRACK_ROOT
 * (taken as given: a root without the files fails where they are read, naming the path); the
 * current directory when it holds lua/pt/sandbox.lua (a source tree or a copy of one); the data
 * directory installed next to the executable, <bindir>/../share/patterntrack, when it holds it
 * (make install under any PREFIX or DESTDIR, an extracted package); else the source tree the
 * binary was built from (running from build/). A root set in the config file replaces this
 * one after the file is read (root_from_file). Returns a malloc'ed path. */
static char *find_root(void)
{
    const char *env = getenv("PATTERNTRACK_ROOT");
    if (env && *env) {
        return xstrdup(env);
    }
    char buf[4096];
    if (file_exists("lua/pt/sandbox.lua") && getcwd(buf, sizeof buf)) {
        return xstrdup(buf);
    }
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    char *slash = n > 0 ? memrchr(buf, '/', (size_t)n) : NULL;
    if (slash != NULL) {
        char data[4096 + 64], probe[sizeof data + 32], *real;
        *slash = '\0';
        snprintf(data, sizeof data, "%s/../share/patterntrack", buf);
        snprintf(probe, sizeof probe, "%s/lua/pt/sandbox.lua", data);
        if (file_exists(probe) && (real = realpath(data, NULL)) != NULL) {
            return real;
        }
    }
    return xstrdup(PT_SOURCE_DIR);
}

config_t *config_load(const char *path, char *err, size_t errlen)
{
    config_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->root = find_root();
    for (size_t i = 0; i < config_n_options; i++) {
        const option_t *o = &config_options[i];
        if (o->def != NULL && set_text(c, o, o->def, "default", err, errlen) != 0) {
            goto fail;
        }
    }
    c->lifetime_default_days = 90;
    for (size_t i = 0; i < sizeof default_topics / sizeof default_topics[0]; i++) {
        char rule[512];
        snprintf(rule, sizeof rule, "rules/%s.lua", default_topics[i]);
        c->topics[i].topic = xstrdup(default_topics[i]);
        c->topics[i].rule = xstrdup(rule);
        c->n_topics++;
    }
    char def[4096];
    if (path == NULL) {
        config_path(c, "etc/patterntrack.lua", def, sizeof def);
        if (file_exists(def)) {
            path = def;
        }
    }
    if (path != NULL) {
        if (!file_exists(path)) {
            snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
            goto fail;
        }
        c->config_path = xstrdup(path);
        if (load_file(c, path, err, errlen) != 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < config_n_options; i++) {
        const option_t *o = &config_options[i];
        const char *v = o->env ? getenv(o->env) : NULL;
        if (v != NULL && *v != '\0' && strcmp(o->key, "root") != 0) {
            char origin[64];
            snprintf(origin, sizeof origin, "environment %s", o->env);
            if (set_text(c, o, v, origin, err, errlen) != 0) {
                goto fail;
            }
        }
    }
    if (resolve_token(c, err, errlen) != 0) {
        goto fail;
    }
    if (strcmp(c->kafka_start_offset, "earliest") != 0 &&
        strcmp(c->kafka_start_offset, "latest") != 0) {
        snprintf(err, errlen, "kafka_start_offset must be earliest or latest, got '%s'",
                 c->kafka_start_offset);
        goto fail;
    }
    if (strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") &&
        strcmp(c->log_level, "warn") && strcmp(c->log_level, "error")) {
        snprintf(err, errlen, "log_level must be debug, info, warn or error, got '%s'",
                 c->log_level);
        goto fail;
    }
    if (strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0) {
        snprintf(err, errlen, "log_format must be text or json, got '%s'", c->log_format);
        goto fail;
    }
    for (size_t i = 0; i < c->n_dedupe; i++) {
        bool found = false;
        for (size_t t = 0; t < c->n_topics && !found; t++) {
            found = strcmp(c->topics[t].topic, c->dedupe[i].topic) == 0;
        }
        if (!found) {
            snprintf(err, errlen, "dedupe: topic '%s' has no rule in topics", c->dedupe[i].topic);
            goto fail;
        }
    }
    if (c->n_topics == 0 && c->kafka_enable_consumer) {
        snprintf(err, errlen, "topics is empty: give at least one topic and its rule file");
        goto fail;
    }
    return c;
fail:
    config_free(c);
    return NULL;
}

void config_free(config_t *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < config_n_options; i++) {
        if (config_options[i].type == T_STRING) {
            free(*(char **)((char *)c + config_options[i].offset));
        }
    }
    clear_topics(c);
    for (size_t i = 0; i < c->n_props; i++) {
        free(c->kafka_properties[i].key);
        free(c->kafka_properties[i].value);
    }
    for (size_t i = 0; i < c->n_lifetimes; i++) {
        free(c->lifetimes[i].key);
        free(c->lifetimes[i].value);
    }
    clear_dedupe(c);
    free(c->config_path);
    free(c);
}

/* The value of option o in c, as text, for comparisons. */
static void option_text(const config_t *c, const option_t *o, char *buf, size_t len)
{
    const char *base = (const char *)c;
    switch (o->type) {
    case T_STRING: {
        const char *v = *(char *const *)(base + o->offset);
        snprintf(buf, len, "%s", v ? v : "");
        return;
    }
    case T_INT:
        snprintf(buf, len, "%lld", (long long)*(const int64_t *)(base + o->offset));
        return;
    case T_BOOL:
        snprintf(buf, len, "%s", *(const bool *)(base + o->offset) ? "true" : "false");
        return;
    case T_TOPICS: {
        size_t n = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < c->n_topics && n < len; i++) {
            n +=
                (size_t)snprintf(buf + n, len - n, "%s=%s;", c->topics[i].topic, c->topics[i].rule);
        }
        return;
    }
    case T_DAYS: {
        size_t n = (size_t)snprintf(buf, len, "default=%lld;", (long long)c->lifetime_default_days);
        for (size_t i = 0; i < c->n_lifetimes && n < len; i++) {
            n += (size_t)snprintf(buf + n, len - n, "%s=%s;", c->lifetimes[i].key,
                                  c->lifetimes[i].value);
        }
        return;
    }
    case T_DEDUPE: {
        size_t n = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < c->n_dedupe && n < len; i++) {
            n += (size_t)snprintf(buf + n, len - n, "%s=%lld;", c->dedupe[i].topic,
                                  (long long)c->dedupe[i].window_s);
        }
        return;
    }
    case T_PROPS: {
        size_t n = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < c->n_props && n < len; i++) {
            n += (size_t)snprintf(buf + n, len - n, "%s=%s;", c->kafka_properties[i].key,
                                  c->kafka_properties[i].value);
        }
        return;
    }
    }
}

size_t config_restart_keys(const config_t *running, const config_t *next, char *buf, size_t len)
{
    size_t n = 0, used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < config_n_options; i++) {
        const option_t *o = &config_options[i];
        if (o->reload) {
            continue;
        }
        char a[8192], b[8192];
        option_text(running, o, a, sizeof a);
        option_text(next, o, b, sizeof b);
        if (strcmp(a, b) != 0) {
            used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s", n ? ", " : "",
                                     o->key);
            n++;
        }
    }
    return n;
}

void config_apply_live(config_t *running, const config_t *next)
{
    for (size_t i = 0; i < config_n_options; i++) {
        const option_t *o = &config_options[i];
        if (!o->reload) {
            continue;
        }
        char *dst = (char *)running + o->offset;
        const char *src = (const char *)next + o->offset;
        switch (o->type) {
        case T_STRING:
            free(*(char **)dst);
            *(char **)dst = xstrdup(*(char *const *)src);
            break;
        case T_INT:
            *(int64_t *)dst = *(const int64_t *)src;
            break;
        case T_BOOL:
            *(bool *)dst = *(const bool *)src;
            break;
        case T_TOPICS:
            clear_topics(running);
            for (size_t t = 0; t < next->n_topics; t++) {
                running->topics[t].topic = xstrdup(next->topics[t].topic);
                running->topics[t].rule = xstrdup(next->topics[t].rule);
            }
            running->n_topics = next->n_topics;
            break;
        case T_PROPS:
            break; /* never live: librdkafka reads them once */
        case T_DAYS:
            for (size_t t = 0; t < running->n_lifetimes; t++) {
                free(running->lifetimes[t].key);
                free(running->lifetimes[t].value);
            }
            for (size_t t = 0; t < next->n_lifetimes; t++) {
                running->lifetimes[t].key = xstrdup(next->lifetimes[t].key);
                running->lifetimes[t].value = xstrdup(next->lifetimes[t].value);
            }
            running->n_lifetimes = next->n_lifetimes;
            running->lifetime_default_days = next->lifetime_default_days;
            break;
        case T_DEDUPE:
            clear_dedupe(running);
            for (size_t t = 0; t < next->n_dedupe; t++) {
                running->dedupe[t].topic = xstrdup(next->dedupe[t].topic);
                running->dedupe[t].window_s = next->dedupe[t].window_s;
            }
            running->n_dedupe = next->n_dedupe;
            break;
        }
    }
}

const char *config_path(const config_t *c, const char *rel, char *buf, size_t buflen)
{
    if (rel[0] == '/') {
        snprintf(buf, buflen, "%s", rel);
    } else {
        snprintf(buf, buflen, "%s/%s", c->root, rel);
    }
    return buf;
}
