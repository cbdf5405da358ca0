#include "auth.h"

#include <string.h>
#include <strings.h>

bool auth_required(const char *token, bool guard_reads, bool read, const char *path)
{
    if (token == NULL) {
        return false;
    }
    if (!read) {
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
