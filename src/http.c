#include "http.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct http {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int port;
};

http_t *http_new(struct event_base *base, const config_t *c, http_handler_fn fn, void *ud,
                 char *err, size_t errlen)
{
    http_t *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->http = evhttp_new(base);
    if (h->http == NULL) {
        snprintf(err, errlen, "cannot create the HTTP server");
        goto fail;
    }
    /* Limits: a request cannot make the server buffer without bound or hold a connection
     * forever (slow clients are timed out). */
    evhttp_set_max_body_size(h->http, (ev_ssize_t)c->http_max_body_bytes);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_timeout(h->http, (int)c->http_timeout_s);
    /* Every method libevent knows reaches the router, which answers the ones no route has with
     * a JSON 405 (or 404); left to libevent, TRACE and CONNECT got an HTML 501. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
    evhttp_set_gencb(h->http, fn, ud);
    h->sock = evhttp_bind_socket_with_handle(h->http, c->http_bind, (ev_uint16_t)c->http_port);
    if (h->sock == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%lld (in use, or not an address of this host)",
                 c->http_bind, (long long)c->http_port);
        goto fail;
    }
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h->sock);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    h->port = (int)c->http_port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    log_info("http: listening on %s:%d", c->http_bind, h->port);
    return h;
fail:
    http_free(h);
    return NULL;
}

void http_free(http_t *h)
{
    if (h == NULL) {
        return;
    }
    if (h->http) {
        evhttp_free(h->http);
    }
    free(h);
}

int http_port(const http_t *h)
{
    return h->port;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

void http_reply(struct evhttp_request *req, int status, const char *content_type, const char *body,
                size_t len)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", content_type ? content_type : "application/json");
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (len > 0 && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evbuffer_add(buf, body, len);
    }
    evhttp_send_reply(req, status, reason(status), buf);
    evbuffer_free(buf);
}

void http_reply_json(struct evhttp_request *req, int status, const char *body, size_t len)
{
    http_reply(req, status, "application/json", body, len);
}

void http_reply_error(struct evhttp_request *req, int status, const char *msg, uint64_t id)
{
    char body[1024];
    char esc[600];
    size_t n = 0;
    for (const char *p = msg; *p && n + 7 < sizeof esc; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(esc + n, sizeof esc - n, "\\u%04x", ch);
        } else {
            esc[n++] = (char)ch;
        }
    }
    esc[n] = '\0';
    int len;
    if (id) {
        len = snprintf(body, sizeof body, "{\"detail\":\"%s\",\"error_id\":\"%llu\"}", esc,
                       (unsigned long long)id);
    } else {
        len = snprintf(body, sizeof body, "{\"detail\":\"%s\"}", esc);
    }
    http_reply_json(req, status, body, (size_t)len);
}

bool http_refuse_unread_body(struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_HEAD && cmd != EVHTTP_REQ_TRACE) {
        return false;
    }
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *cl = evhttp_find_header(in, "Content-Length");
    if (evhttp_find_header(in, "Transfer-Encoding") == NULL &&
        (cl == NULL || strspn(cl, "0") == strlen(cl))) {
        return false;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    http_reply_error(req, 400, "a HEAD or TRACE request cannot have a body", 0);
    return true;
}
