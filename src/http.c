#include "http.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "auth.h"
#include "log.h"
#include "metrics.h"

/* File descriptors kept for everything but HTTP clients (PostgreSQL, Kafka, files). */
#define FD_RESERVE 128
#define SWEEP_MS 250

/* One client connection, as http sees it. libevent 2.1 has neither a connection limit nor a
 * hook for the end of a server connection, so http makes each connection's bufferevent itself
 * (evhttp_set_bevcb) and holds a reference to it. When evhttp frees the connection it clears
 * the bufferevent's callbacks and drops its own reference; a sweep notices (bufferevent_getcb
 * gives NULL), drops ours, which closes the socket (BEV_OPT_CLOSE_ON_FREE), and forgets the
 * connection. Until then the bufferevent (and so its address) stays ours: a conn_t never
 * outlives its evhttp connection by more than a sweep, and never points at freed memory. */
typedef struct conn {
    struct bufferevent *bev; /* one reference is ours */
    struct timespec since;   /* when it began waiting for its next request */
    int busy;                /* requests handed to the handler and not answered yet */
    bool refused;            /* over the limit: to be (or already) answered 503 and shut */
    bool answered;           /* the 503 was sent */
    bool closing;            /* shut down for want of a whole request in time */
    struct conn *prev, *next;
} conn_t;

struct http {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int port;
    http_handler_fn fn;
    void *ud;
    conn_t *conns;
    size_t n_open; /* connections not refused */
    size_t max_conns;
    int64_t request_timeout_ms;
    struct event *ev_sweep;  /* armed while there are connections */
    struct event *ev_refuse; /* activated when a connection over the limit arrives */
    metric_t *m_open, *m_refused, *m_timed_out;
};

static int64_t ms_between(const struct timespec *a, const struct timespec *b)
{
    return (int64_t)(b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

static bool conn_freed(const conn_t *c)
{
    bufferevent_data_cb rd, wr;
    bufferevent_event_cb ev;
    void *arg;
    bufferevent_getcb(c->bev, &rd, &wr, &ev, &arg);
    return rd == NULL && wr == NULL && ev == NULL && arg == NULL;
}

static void conn_forget(http_t *h, conn_t *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        h->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    if (!c->refused) {
        h->n_open--;
    }
    bufferevent_decref(c->bev);
    free(c);
}

/* Forgets the connections evhttp has freed, and shuts the ones that have waited too long for a
 * whole request (evhttp then sees the end of the stream and frees them). */
static void sweep(http_t *h)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    conn_t *next;
    for (conn_t *c = h->conns; c; c = next) {
        next = c->next;
        if (conn_freed(c)) {
            conn_forget(h, c);
        } else if (!c->refused && !c->closing && c->busy == 0 &&
                   ms_between(&c->since, &now) >= h->request_timeout_ms) {
            evutil_socket_t fd = bufferevent_getfd(c->bev);
            if (fd >= 0) {
                shutdown(fd, SHUT_RDWR);
            }
            c->closing = true;
            metric_add(h->m_timed_out, 1);
            log_debug("http: closed a connection that sent no whole request within %llds",
                      (long long)(h->request_timeout_ms / 1000));
        }
    }
    metric_set(h->m_open, (double)h->n_open);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_t *h = arg;
    sweep(h);
    if (h->conns) {
        struct timeval tv = {0, SWEEP_MS * 1000};
        evtimer_add(h->ev_sweep, &tv);
    }
}

/* Answers the connections over the limit and shuts them. Runs after evhttp has set up the
 * socket and before it reads a byte of it (the accept and this event are in the same loop
 * turn; a read needs the next poll). */
static void refuse_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_t *h = arg;
    static const char answer[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                 "Content-Type: application/json\r\n"
                                 "Connection: close\r\n"
                                 "Retry-After: 1\r\n"
                                 "Content-Length: 44\r\n"
                                 "\r\n"
                                 "{\"detail\":\"too many connections, try again\"}";
    for (conn_t *c = h->conns; c; c = c->next) {
        if (!c->refused || c->answered || conn_freed(c)) {
            continue;
        }
        c->answered = true;
        evutil_socket_t s = bufferevent_getfd(c->bev);
        if (s < 0) {
            continue;
        }
        /* What the client sent already is read first, so that closing does not reset the
         * connection before the answer arrives. */
        char junk[4096];
        int reads = 0;
        while (reads++ < 4 && recv(s, junk, sizeof junk, MSG_DONTWAIT) > 0) {
            continue;
        }
        /* A failed send (client gone) changes nothing: the connection is shut either way. */
        (void)send(s, answer, sizeof answer - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(s, SHUT_RDWR);
    }
}

/* evhttp's factory of a new connection's bufferevent: the place where http learns of every
 * connection, and turns away the ones over the limit. */
static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    http_t *h = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    conn_t *c = bev ? calloc(1, sizeof *c) : NULL;
    if (c == NULL) {
        return bev; /* out of memory: evhttp copes, and the connection is not counted */
    }
    sweep(h); /* count exactly: what evhttp freed since the last sweep is not open */
    bufferevent_incref(bev);
    c->bev = bev;
    clock_gettime(CLOCK_MONOTONIC, &c->since);
    c->refused = h->n_open >= h->max_conns;
    if (c->refused) {
        metric_add(h->m_refused, 1);
        event_active(h->ev_refuse, EV_TIMEOUT, 0);
        static struct timespec warned;
        if (warned.tv_sec == 0 || ms_between(&warned, &c->since) > 10000) {
            log_warn("http: %zu connections open, the limit (http_max_connections): refusing "
                     "new ones with 503",
                     h->n_open);
            warned = c->since;
        }
    } else {
        h->n_open++;
    }
    c->next = h->conns;
    if (h->conns) {
        h->conns->prev = c;
    }
    h->conns = c;
    if (!evtimer_pending(h->ev_sweep, NULL)) {
        struct timeval tv = {0, SWEEP_MS * 1000};
        evtimer_add(h->ev_sweep, &tv);
    }
    metric_set(h->m_open, (double)h->n_open);
    return bev;
}

/* The connection a request arrived on (a linear search: there are at most max_conns). */
static conn_t *find_conn(http_t *h, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    for (conn_t *c = h->conns; bev && c; c = c->next) {
        if (c->bev == bev) {
            return c;
        }
    }
    return NULL;
}

/* The answer is sent: the connection waits for its next request from now on. */
static void complete_cb(struct evhttp_request *req, void *arg)
{
    conn_t *c = find_conn(arg, req);
    if (c && c->busy > 0) {
        c->busy--;
        clock_gettime(CLOCK_MONOTONIC, &c->since);
    }
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    http_t *h = arg;
    conn_t *c = find_conn(h, req);
    if (c && c->refused) {
        http_reply_error(req, 503, "too many connections, try again", 0);
        return;
    }
    if (c) {
        c->busy++;
        evhttp_request_set_on_complete_cb(req, complete_cb, h);
    }
    h->fn(req, h->ud);
}

/* Lowers max to what the open-files limit allows, after trying to raise the limit. */
static size_t fit_fd_limit(size_t max)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max + FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) {
        return max;
    }
    struct rlimit up = rl;
    up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
        rl = up;
    }
    if (rl.rlim_cur >= want) {
        return max;
    }
    size_t fit = rl.rlim_cur > 2 * FD_RESERVE ? (size_t)(rl.rlim_cur - FD_RESERVE)
                                              : (size_t)(rl.rlim_cur / 2);
    log_warn("http: the open-files limit is %llu: at most %zu HTTP connections instead of "
             "http_max_connections = %zu (raise ulimit -n)",
             (unsigned long long)rl.rlim_cur, fit, max);
    return fit;
}

http_t *http_new(struct event_base *base, const config_t *c, http_handler_fn fn, void *ud,
                 char *err, size_t errlen)
{
    http_t *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->fn = fn;
    h->ud = ud;
    h->max_conns = fit_fd_limit((size_t)c->http_max_connections);
    h->request_timeout_ms = c->http_request_timeout_s * 1000;
    h->m_open = metrics_series("patterntrack_http_connections", METRIC_GAUGE,
                               "Open HTTP client connections.", "");
    h->m_refused =
        metrics_series("patterntrack_http_connections_refused_total", METRIC_COUNTER,
                       "Connections answered 503 and closed at http_max_connections.", "");
    h->m_timed_out = metrics_series("patterntrack_http_connections_timed_out_total", METRIC_COUNTER,
                                    "Connections closed for not sending a whole request within "
                                    "http_request_timeout_s.",
                                    "");
    h->ev_sweep = evtimer_new(base, sweep_cb, h);
    h->ev_refuse = event_new(base, -1, 0, refuse_cb, h);
    h->http = evhttp_new(base);
    if (h->http == NULL || h->ev_sweep == NULL || h->ev_refuse == NULL) {
        snprintf(err, errlen, "cannot create the HTTP server");
        goto fail;
    }
    /* Limits: a request cannot make the server buffer without bound, a connection that sends
     * nothing is dropped after http_timeout_s, one that trickles after http_request_timeout_s,
     * and the connections are counted. */
    evhttp_set_max_body_size(h->http, (ev_ssize_t)c->http_max_body_bytes);
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)c->http_max_header_bytes);
    evhttp_set_timeout(h->http, (int)c->http_timeout_s);
    /* Every method libevent knows reaches the router, which answers the ones no route has with
     * a JSON 405 (or 404); left to libevent, TRACE and CONNECT got an HTML 501. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
    evhttp_set_bevcb(h->http, bev_cb, h);
    evhttp_set_gencb(h->http, request_cb, h);
    h->sock = evhttp_bind_socket_with_handle(h->http, c->http_bind, (ev_uint16_t)c->http_port);
    if (h->sock == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%lld (in use, or not an address of this host)",
                 c->http_bind, (long long)c->http_port);
        goto fail;
    }
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h->sock);
    /* evhttp writes a large answer in pieces; with Nagle's algorithm the last piece waited for
     * the client's delayed ACK: 40 ms on every answer over a segment or so (measured: /top,
     * 106 KB, at p50 43 ms with the engine 86 % idle). Accepted sockets inherit the option
     * from the listening one on Linux. */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
    log_info("http: listening on %s:%d (at most %zu connections; bearer token: %s)", c->http_bind,
             h->port, h->max_conns, auth_scope(c->http_token, c->http_token_reads));
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
        evhttp_free(h->http); /* frees every connection: their bufferevents hold our refs only */
    }
    while (h->conns) {
        conn_forget(h, h->conns);
    }
    if (h->ev_sweep) {
        event_free(h->ev_sweep);
    }
    if (h->ev_refuse) {
        event_free(h->ev_refuse);
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
