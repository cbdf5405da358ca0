#include "ingest.h"

#include <stdbool.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* One event of an HTTP body: a message without partition, offset, key or Kafka time. */
static void body_event(ingest_t *g, size_t idx, const char *topic, const char *p, size_t len)
{
    rule_meta_t meta = {.topic = topic, .partition = -1, .offset = -1, .timestamp_ms = -1};
    ingest_msg_t m = {.topic_idx = idx,
                      .topic = topic,
                      .partition = -1,
                      .offset = -1,
                      .payload = p,
                      .len = len,
                      .meta = &meta,
                      .kafka_ts_ms = -1};
    ingest_message(g, &m);
}

/* Calls body_event for each element of a top-level JSON array; returns how many. The caller
 * validates the JSON, but the split stays within the body and ends whatever the bytes are. */
static size_t split_array(ingest_t *g, size_t idx, const char *topic, const char *s, size_t n)
{
    size_t count = 0;
    const char *end = s + n;
    const char *p = skip_ws(s, end);
    if (p == end || *p != '[') {
        return 0;
    }
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p == ']') {
            return count;
        }
        const char *start = p;
        int depth = 0;
        bool in_str = false;
        for (; p < end; p++) {
            char ch = *p;
            if (in_str) {
                if (ch == '\\' && p + 1 < end) {
                    p++; /* the escaped character, if the body has one */
                } else if (ch == '"') {
                    in_str = false;
                }
                continue;
            }
            if (ch == '"') {
                in_str = true;
            } else if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (depth == 0) {
                    break; /* the closing bracket of the outer array */
                }
                depth--;
            } else if (ch == ',' && depth == 0) {
                break;
            }
        }
        const char *stop = p;
        while (stop > start &&
               (stop[-1] == ' ' || stop[-1] == '\n' || stop[-1] == '\r' || stop[-1] == '\t')) {
            stop--;
        }
        body_event(g, idx, topic, start, (size_t)(stop - start));
        count++;
        /* Only a comma goes on: a '}' out of place must not end the element again and again. */
        if (p >= end || *p != ',') {
            return count;
        }
        p++;
    }
}

size_t ingest_body(ingest_t *g, size_t topic_idx, const char *topic, const char *body, size_t len,
                   ingest_format_t format)
{
    size_t count = 0;
    const char *end = body + len;
    const char *p = skip_ws(body, end);
    if (format == INGEST_NDJSON) {
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *stop = nl ? nl : end;
            const char *t = stop;
            while (t > p && (t[-1] == '\r' || t[-1] == ' ' || t[-1] == '\t')) {
                t--;
            }
            if (t > p) {
                body_event(g, topic_idx, topic, p, (size_t)(t - p));
                count++;
            }
            p = nl ? skip_ws(nl + 1, end) : end;
        }
    } else if (p < end && *p == '[') {
        count = split_array(g, topic_idx, topic, body, len);
    } else {
        body_event(g, topic_idx, topic, body, len);
        count = 1;
    }
    return count;
}
