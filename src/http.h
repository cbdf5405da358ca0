/* http: the evhttp server: binding, limits (request and header size, open connections, the
 * time a request may take to arrive), and the two ways a request ends (http_reply_json,
 * http_reply_error). Every request goes to routes; http knows no paths and no token. */
#ifndef PT_HTTP_H
#define PT_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct http http_t;
typedef void (*http_handler_fn)(struct evhttp_request *req, void *ud);

http_t *http_new(struct event_base *base, const config_t *c, http_handler_fn fn, void *ud,
                 char *err, size_t errlen) __attribute__((warn_unused_result));
void http_free(http_t *h);
/* The port actually bound (when configured as 0 in tests, the kernel's choice). */
int http_port(const http_t *h);

/* Sends body with the given status and content type (NULL = application/json). */
void http_reply(struct evhttp_request *req, int status, const char *content_type, const char *body,
                size_t len);
void http_reply_json(struct evhttp_request *req, int status, const char *body, size_t len);
/* A short JSON error: {"detail": msg, "error_id": id} (error_id omitted when id is 0). */
void http_reply_error(struct evhttp_request *req, int status, const char *msg, uint64_t id);

/* libevent 2.1 reads no body after a HEAD or TRACE request line, whatever Content-Length says:
 * on a kept-alive connection those bytes would be parsed as the next request. When req is such
 * a request with a body, answers 400 and closes the connection with it, and returns true. */
bool http_refuse_unread_body(struct evhttp_request *req);

#endif
