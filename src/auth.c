#include "auth.h"

#include <string.h>
#include <strings.h>

static int hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Whether the next non-empty segment of *p, percent-decoded, is word; moves *p past it. The
 * router skips empty segments and decodes each one (routes_set_target), so this must too. */
static bool segment_is(const char **p, const char *word)
{
    const char *s = *p;
    while (*s == '/') {
        s++;
    }
    size_t i = 0;
    bool same = true;
    while (*s != '\0' && *s != '/' && *s != '?') {
        char c = *s++;
        if (c == '%' && hex(s[0]) >= 0 && hex(s[1]) >= 0) {
            c = (char)(hex(s[0]) * 16 + hex(s[1]));
            s += 2;
        }
        same = same && word[i] != '\0' && word[i] == c;
        i++;
    }
    *p = s;
    return same && word[i] == '\0';
}

bool auth_sensitive(const char *path)
{
    const char *p = path;
    return segment_is(&p, "api") && segment_is(&p, "dead-letters");
}

bool auth_required(const char *token, bool guard_reads, bool read, const char *path)
{
    if (token == NULL) {
        return false;
    }
    if (!read || auth_sensitive(path)) {
        return true;
    }
    return guard_reads && strcmp(path, "/health") != 0;
}

const char *auth_scope(const char *token, bool guard_reads)
{
    return token == NULL ? "none" : guard_reads ? "every request but /health" : "writes";
}

bool auth_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Every byte of b is visited whatever a holds, and no branch depends on a byte of either:
     * the time tells an attacker nothing about how much of a guess was right. */
    volatile unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

auth_result_t auth_check(const char *token, const char *authorization)
{
    if (authorization == NULL) {
        return AUTH_MISSING;
    }
    if (strncasecmp(authorization, "Bearer ", 7) != 0) {
        return AUTH_MISSING; /* another scheme (Basic...) carries no bearer token */
    }
    const char *p = authorization + 7;
    while (*p == ' ') {
        p++;
    }
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    if (n == 0) {
        return AUTH_MISSING;
    }
    return auth_equal(p, n, token, strlen(token)) ? AUTH_OK : AUTH_INVALID;
}
