/* routes: the HTTP routes of one generation: a sandboxed Lua state holding the router
 * (lua/pt/router.lua) and every .lua file in lua/routes, and the request lifecycle. Each request
 * runs as a coroutine: a C function that starts I/O (db.query, pt.ingest) records how to cancel
 * it, and the coroutine yields; the I/O callback pushes the results and calls routes_resume.
 * A request ends in exactly one reply. Does not own the HTTP server or the database pool. */
#ifndef PT_ROUTES_H
#define PT_ROUTES_H

#include <event2/http.h>
#include <lua.h>
#include <stdbool.h>

#include "config.h"
#include "lvm.h"
#include "pg_pool.h"

typedef struct routes routes_t;
typedef struct route_req route_req_t;

/* Extra functions for the `pt` table (health, metrics, ingest...), each called with `app` as
 * its first upvalue. */
typedef struct {
    const char *name;
    lua_CFunction fn;
} routes_fn_t;

routes_t *routes_new(struct event_base *base, const config_t *c, pg_pool_t *pool,
                     const routes_fn_t *extra, void *app, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void routes_free(routes_t *r);
/* The evhttp handler. */
void routes_handle(struct evhttp_request *req, void *routes);
size_t routes_in_flight(const routes_t *r);

/* Sets `segments` (the path's non-empty segments, percent-decoded) and `query` (the query
 * string's parameters, percent-decoded; see add_query) on the table at the top of L, from a request's path
 * (which starts with '/') and query string (NULL when none): [-0, +0]. 0, or 400 when the
 * target cannot be represented (malformed percent-encoding, not UTF-8, a NUL byte); the table
 * may then hold some fields already and is the caller's to discard. */
int routes_set_target(lua_State *L, const char *path, const char *query)
    __attribute__((warn_unused_result));

/* For l_db and other yielding APIs. */
route_req_t *routes_current(routes_t *r, lua_State *co);
pg_pool_t *routes_pool(routes_t *r);
int64_t routes_query_timeout(routes_t *r);
/* Records how to cancel the I/O the coroutine waits for (called if the client goes away);
 * NULL when nothing is pending. */
void routes_set_pending(route_req_t *rr, void (*cancel)(void *), void *ud);
/* Answers the request now (once; later answers are dropped): the route goes on, to refresh a
 * cached answer after sending the previous one (lua/pt/router.lua). */
void routes_reply_early(route_req_t *rr, int status, const char *ctype, const char *body,
                        size_t len, const char *route);
/* The VM's main state, for work done in a protected call on the request's behalf. */
lua_State *routes_main_state(route_req_t *rr);
lua_State *routes_thread(route_req_t *rr);
/* Resumes the request's coroutine with nargs values already pushed on its stack. */
void routes_resume(route_req_t *rr, int nargs);

#endif
