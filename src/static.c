#include "static.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
    {".map", "application/json"},
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(dot, types[i].ext) == 0) {
            return types[i].type;
        }
    }
    return NULL;
}

bool static_path_safe(const char *rel)
{
    if (strstr(rel, "..") || strstr(rel, "//") || rel[0] == '.' || strstr(rel, "/.")) {
        return false;
    }
    for (const char *p = rel; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(c == '/' || c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') ||
              (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return false;
        }
    }
    return true;
}

bool static_handle(struct evhttp_request *req, const char *web_root)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || strncmp(path, "/dashboard", 10) != 0 ||
        (path[10] != '\0' && path[10] != '/')) {
        return false;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        http_reply_error(req, 405, "Method Not Allowed", 0);
        return true;
    }
    if (path[10] == '\0') {
        /* Relative links in the page resolve against /dashboard/ */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/dashboard/");
        evhttp_send_reply(req, 301, "Moved Permanently", NULL);
        return true;
    }
    const char *rel = path + 11;
    if (*rel == '\0') {
        rel = "index.html";
    }
    const char *ctype = content_type(rel);
    char full[4096];
    struct stat st;
    int fd = -1;
    if (!static_path_safe(rel) || ctype == NULL ||
        snprintf(full, sizeof full, "%s/%s", web_root, rel) >= (int)sizeof full ||
        (fd = open(full, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        if (fd >= 0) {
            close(fd);
        }
        http_reply_error(req, 404, "Not Found", 0);
        return true;
    }
    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtime);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "ETag", etag);
    /* The page itself revalidates every time; its assets may be cached for a day. */
    evhttp_add_header(out, "Cache-Control",
                      strcmp(rel, "index.html") == 0 ? "no-cache" : "public, max-age=86400");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
    if (inm && strcmp(inm, etag) == 0) {
        close(fd);
        evhttp_send_reply(req, 304, "Not Modified", NULL);
        return true;
    }
    evhttp_add_header(out, "Content-Type", ctype);
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        close(fd);
        http_reply_error(req, 500, "out of memory", 0);
        return true;
    }
    if (cmd == EVHTTP_REQ_HEAD) {
        close(fd);
    } else if (st.st_size > 0 && evbuffer_add_file(buf, fd, 0, st.st_size) != 0) {
        close(fd);
        evbuffer_free(buf);
        http_reply_error(req, 500, "cannot read the file", 0);
        return true;
    } else if (st.st_size == 0) {
        close(fd);
    }
    /* evbuffer_add_file took the descriptor */
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
    return true;
}
