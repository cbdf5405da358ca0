/* auth: the optional bearer token of the HTTP API: which requests must carry it, and whether a
 * request's Authorization header does (compared in constant time). Knows neither the server nor
 * the replies (routes sends the 401); does not own the token (the config does). */
#ifndef PT_AUTH_H
#define PT_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { AUTH_OK, AUTH_MISSING, AUTH_INVALID } auth_result_t;

/* Whether a request must carry the token: never when token is NULL; always for a method other
 * than GET and HEAD (read false) and for the dead letters (auth_sensitive); for other reads only
 * when guard_reads, and never for /health. path is the raw path of the request (not decoded:
 * /h%65alth is not /health). */
bool auth_required(const char *token, bool guard_reads, bool read, const char *path);
/* Whether path is under /api/dead-letters as the router matches it (empty segments skipped,
 * each segment percent-decoded): their payloads may carry user text, so reading them needs the
 * token like a write does. */
bool auth_sensitive(const char *path);
/* Checks an Authorization header value (NULL when absent) against token: the scheme Bearer
 * (any case), one or more spaces, the token, optional trailing white space. */
auth_result_t auth_check(const char *token, const char *authorization);
/* What the token guards, for the log: "none", "writes" or "every request but /health". */
const char *auth_scope(const char *token, bool guard_reads);
/* a == b in time that depends on blen only (b is the secret). */
bool auth_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
