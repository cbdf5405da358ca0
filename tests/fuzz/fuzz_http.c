/* libFuzzer target for the HTTP request target: routes_set_target (the path's segments,
 * percent-decoded, and the query string's parameters, checked and put into the request table
 * the Lua router reads) and static_path_safe (which files under web/ /dashboard/ may serve).
 * The input is a request target as it follows the method on a request line. It is parsed with
 * evhttp_uri_parse_with_flags(EVHTTP_URI_NONCONFORMANT), as libevent parses a request line, and
 * also split at the first '?' without libevent, so bytes libevent would refuse reach the
 * decoders too. The segments are compared with a reference decoding. */
#include <event2/http.h>
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "fuzz.h"
#include "routes.h"
#include "static.h"

/* One state per input, closed after it: an input frees all it allocates, so libFuzzer's leak
 * check has nothing to chase between inputs. */
static lua_State *L;

static int hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* RFC 3986 percent-decoding of s[0..len) into out, strictly: false on a '%' not followed by two
 * hex digits, or when the result is not UTF-8 text without NUL. */
static bool ref_segment(const char *s, size_t len, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; o++) {
        if (s[i] != '%') {
            out[o] = s[i++];
            continue;
        }
        if (len - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0) {
            return false;
        }
        out[o] = (char)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
        i += 3;
    }
    *outlen = o;
    return fuzz_utf8_ref((const uint8_t *)out, o) && memchr(out, '\0', o) == NULL;
}

/* True when some '%' in s does not start a two-hex-digit escape. */
static bool bad_escape(const char *s)
{
    for (; *s; s++) {
        if (*s == '%' && (hex(s[1]) < 0 || hex(s[2]) < 0)) {
            return true;
        }
    }
    return false;
}

/* routes_set_target against the reference: the same segments, or 400 exactly when a segment
 * cannot be represented; decoded query parameters are UTF-8 without NUL. */
static void check_target(const char *path, const char *query)
{
    size_t plen = strlen(path);
    char *dec = malloc(plen + 1);
    FUZZ_CHECK(dec != NULL);
    lua_settop(L, 0);
    lua_newtable(L);
    int rc = routes_set_target(L, path, query);
    FUZZ_CHECK(rc == 0 || rc == 400);
    FUZZ_CHECK(lua_gettop(L) == 1);
    if (query && *query && bad_escape(query)) {
        FUZZ_CHECK(rc == 400);
    }
    bool all_ok = true;
    lua_Integer n = 0;
    if (rc == 0) {
        FUZZ_CHECK(lua_getfield(L, 1, "segments") == LUA_TTABLE);
    }
    for (const char *p = path + 1; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len > 0) {
            size_t dlen = 0;
            bool ok = ref_segment(p, len, dec, &dlen);
            all_ok = all_ok && ok;
            if (rc == 0) {
                FUZZ_CHECK(ok);
                FUZZ_CHECK(lua_rawgeti(L, -1, ++n) == LUA_TSTRING);
                size_t got_len;
                const char *got = lua_tolstring(L, -1, &got_len);
                FUZZ_CHECK(got_len == dlen && memcmp(got, dec, dlen) == 0);
                lua_pop(L, 1);
            }
        }
        if (!slash) {
            break;
        }
        p = slash + 1;
    }
    free(dec);
    if (!all_ok) {
        FUZZ_CHECK(rc == 400);
        return;
    }
    if (rc != 0) {
        FUZZ_CHECK(query != NULL && *query != '\0'); /* only the query can have been refused */
        return;
    }
    FUZZ_CHECK(lua_rawlen(L, -1) == (size_t)n);
    lua_pop(L, 1);
    FUZZ_CHECK(lua_getfield(L, 1, "query") == LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        size_t kl, vl;
        FUZZ_CHECK(lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING);
        const char *k = lua_tolstring(L, -2, &kl);
        const char *v = lua_tolstring(L, -1, &vl);
        FUZZ_CHECK(fuzz_utf8_ref((const uint8_t *)k, kl) && memchr(k, '\0', kl) == NULL);
        FUZZ_CHECK(fuzz_utf8_ref((const uint8_t *)v, vl) && memchr(v, '\0', vl) == NULL);
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
}

/* What /dashboard/ may serve stays under web/: no "." or ".." component, no hidden file, only
 * a few plain characters. */
static void check_static(const char *rel)
{
    if (!static_path_safe(rel)) {
        return;
    }
    for (const char *p = rel; *p; p++) {
        char c = *p;
        FUZZ_CHECK(c == '/' || c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') ||
                   (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
        if (p == rel || p[-1] == '/') {
            FUZZ_CHECK(c != '.');
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    L = luaL_newstate();
    FUZZ_CHECK(L != NULL);
    /* A request line is text: it ends at the first NUL as it would in libevent. */
    char *target = strndup((const char *)data, size);
    FUZZ_CHECK(target != NULL);

    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
    if (uri != NULL) {
        const char *path = evhttp_uri_get_path(uri);
        if (path != NULL && path[0] == '/') {
            check_target(path, evhttp_uri_get_query(uri));
            if (strncmp(path, "/dashboard/", 11) == 0) {
                check_static(path + 11);
            }
        }
        evhttp_uri_free(uri);
    }

    if (target[0] == '/') {
        char *q = strchr(target, '?');
        if (q != NULL) {
            *q++ = '\0';
        }
        check_target(target, q);
    }
    check_static(target);
    free(target);
    lua_close(L);
    L = NULL;
    return 0;
}
