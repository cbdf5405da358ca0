/* static: serves the dashboard's files (web/) at /dashboard with caching headers (ETag from size
 * and mtime, Cache-Control). Only files under web/ with known types are served; paths with "..",
 * hidden files or anything that is not a regular file are 404. Owns nothing but its root path. */
#ifndef PT_STATIC_H
#define PT_STATIC_H

#include <event2/http.h>
#include <stdbool.h>

/* True when the request was for /dashboard...: it has been answered. */
bool static_handle(struct evhttp_request *req, const char *web_root);
/* True when rel (the raw request path after "/dashboard/") may name a file under the web root:
 * only [A-Za-z0-9/._-], no "..", "//" or hidden component. */
bool static_path_safe(const char *rel);

#endif
