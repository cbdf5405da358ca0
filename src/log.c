#include "log.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "text.h"

/* A text line is at most TEXT_LINE_MAX - 1 bytes with its newline, as it always was. A JSON
 * line carries the same message (formatted into TEXT_LINE_MAX) escaped, so it may grow; it is
 * at most JSON_LINE_MAX - 1 bytes, within PIPE_BUF, so one write to a pipe stays atomic. */
#define TEXT_LINE_MAX 2048
#define JSON_LINE_MAX 4096
/* Room the fields of a line may take, so that a long message cannot crowd them out. */
#define FIELDS_MAX 1024
/* What a JSON line keeps free for ,"truncated":true and }\n after the message. */
#define JSON_TAIL 20

static log_level_t current_level = LOG_INFO;
/* Read by librdkafka's and the flush builder's threads while a reload may set it. */
static atomic_int current_format = LOG_FORMAT_TEXT;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"text", "json"};

void log_set_level(log_level_t level)
{
    current_level = level;
}

log_level_t log_get_level(void)
{
    return current_level;
}

bool log_parse_level(const char *name, log_level_t *out)
{
    for (int i = 0; i <= LOG_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return true;
        }
    }
    return false;
}

void log_set_format(log_format_t format)
{
    atomic_store_explicit(&current_format, (int)format, memory_order_relaxed);
}

log_format_t log_get_format(void)
{
    return (log_format_t)atomic_load_explicit(&current_format, memory_order_relaxed);
}

bool log_parse_format(const char *name, log_format_t *out)
{
    for (int i = 0; i <= LOG_FORMAT_JSON; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (log_format_t)i;
            return true;
        }
    }
    return false;
}

/* A bounded output: puts never write past cap; what does not fit sets cut. */
typedef struct {
    char *p;
    size_t len, cap;
    bool cut;
} out_t;

/* All or nothing. */
static bool put(out_t *o, const char *s, size_t n)
{
    if (n > o->cap - o->len) {
        o->cut = true;
        return false;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    return true;
}

static bool puts_(out_t *o, const char *s)
{
    return put(o, s, strlen(s));
}

/* A JSON string of s[0..n): quotes, backslashes and control characters escaped, each byte
 * that starts no valid UTF-8 sequence replaced with U+FFFD. Needs 2 bytes free or writes
 * nothing, sets cut and returns false; otherwise always closes the string, cutting s (and
 * setting cut) where it no longer fits. */
static bool json_str(out_t *o, const char *s, size_t n)
{
    if (o->cap - o->len < 2) {
        o->cut = true;
        return false;
    }
    size_t end = o->cap - 1; /* the closing quote */
    o->p[o->len++] = '"';
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        char esc[8];
        const char *w = esc;
        size_t k, adv = 1;
        unsigned char c = u[i];
        switch (c) {
        case '"':
            w = "\\\"";
            k = 2;
            break;
        case '\\':
            w = "\\\\";
            k = 2;
            break;
        case '\n':
            w = "\\n";
            k = 2;
            break;
        case '\r':
            w = "\\r";
            k = 2;
            break;
        case '\t':
            w = "\\t";
            k = 2;
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                k = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
            } else if (c < 0x80) {
                w = (const char *)u + i;
                k = 1;
            } else if ((adv = text_utf8_seq(s + i, n - i)) > 0) {
                w = (const char *)u + i;
                k = adv;
            } else {
                w = "\xEF\xBF\xBD"; /* U+FFFD */
                k = 3;
                adv = 1;
            }
        }
        if (k > end - o->len) {
            o->cut = true;
            break;
        }
        memcpy(o->p + o->len, w, k);
        o->len += k;
        i += adv;
    }
    o->p[o->len++] = '"';
    return true;
}

/* A text field value: as is when it is one plain word, else quoted with \" \\ \n \r \t and
 * \xNN escapes. All or nothing. */
static bool text_value(out_t *o, const char *s)
{
    bool plain = *s != '\0';
    for (const unsigned char *c = (const unsigned char *)s; plain && *c; c++) {
        plain = *c > 0x20 && *c != 0x7f && *c != '"' && *c != '=' && *c != '\\';
    }
    if (plain) {
        return puts_(o, s);
    }
    size_t start = o->len;
    bool ok = put(o, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; ok && *c; c++) {
        char esc[8];
        switch (*c) {
        case '"':
            ok = put(o, "\\\"", 2);
            break;
        case '\\':
            ok = put(o, "\\\\", 2);
            break;
        case '\n':
            ok = put(o, "\\n", 2);
            break;
        case '\r':
            ok = put(o, "\\r", 2);
            break;
        case '\t':
            ok = put(o, "\\t", 2);
            break;
        default:
            if (*c < 0x20 || *c == 0x7f) {
                ok = put(o, esc, (size_t)snprintf(esc, sizeof esc, "\\x%02x", *c));
            } else {
                ok = put(o, (const char *)c, 1);
            }
        }
    }
    ok = ok && put(o, "\"", 1);
    if (!ok) {
        o->len = start;
    }
    return ok;
}

/* The fields, each whole or not at all (in JSON a string value may be cut short): text
 * " key=value", JSON ,"key":value. Stops at the first that does not fit. */
static void put_fields(out_t *o, bool json, const log_field_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i].type == LOG_F_STR && f[i].s == NULL) {
            continue;
        }
        size_t start = o->len;
        char num[64];
        num[0] = '\0';
        switch (f[i].type) {
        case LOG_F_STR:
            break;
        case LOG_F_INT:
            snprintf(num, sizeof num, "%lld", f[i].i);
            break;
        case LOG_F_UINT:
            snprintf(num, sizeof num, "%llu", f[i].u);
            break;
        case LOG_F_DBL:
            if (json && !isfinite(f[i].d)) {
                snprintf(num, sizeof num, "null");
            } else {
                snprintf(num, sizeof num, "%.3f", f[i].d);
            }
            break;
        }
        bool ok;
        if (json) {
            /* keys are the caller's constant names: nothing to escape */
            ok = put(o, ",\"", 2) && puts_(o, f[i].key) && put(o, "\":", 2) &&
                 (f[i].type == LOG_F_STR ? json_str(o, f[i].s, strlen(f[i].s)) : puts_(o, num));
        } else {
            ok = put(o, " ", 1) && puts_(o, f[i].key) && put(o, "=", 1) &&
                 (f[i].type == LOG_F_STR ? text_value(o, f[i].s) : puts_(o, num));
        }
        if (!ok) {
            o->len = start;
            o->cut = true;
            return;
        }
    }
}

/* "2026-01-02T03:04:05.678Z": 24 bytes. */
static size_t stamp(char *out, size_t cap)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(out + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    return n + (m < 0 ? 0 : (size_t)m);
}

static void text_line(log_level_t level, const log_field_t *fields, size_t nf, const char *fmt,
                      va_list ap)
{
    char fb[FIELDS_MAX];
    out_t f = {fb, 0, sizeof fb, false};
    put_fields(&f, false, fields, nf);
    char line[TEXT_LINE_MAX];
    size_t n = stamp(line, sizeof line);
    int p = snprintf(line + n, sizeof line - n, " %-5s ", level_names[level]);
    n += p < 0 ? 0 : (size_t)p;
    int m = vsnprintf(line + n, sizeof line - n - f.len, fmt, ap);
    size_t len = n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2 - f.len) {
        len = sizeof line - 2 - f.len;
    }
    memcpy(line + len, fb, f.len);
    len += f.len;
    line[len++] = '\n';
    /* One write per line so concurrent librdkafka log lines never interleave mid-line. */
    fwrite(line, 1, len, stderr);
}

static void json_line(log_level_t level, const log_field_t *fields, size_t nf, const char *fmt,
                      va_list ap)
{
    char fb[FIELDS_MAX];
    out_t f = {fb, 0, sizeof fb, false};
    put_fields(&f, true, fields, nf);
    char msg[TEXT_LINE_MAX];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m;
    bool cut = f.cut;
    if (mlen >= sizeof msg) {
        mlen = sizeof msg - 1;
        cut = true;
    }
    char line[JSON_LINE_MAX];
    out_t o = {line, 0, sizeof line - JSON_TAIL - f.len, false};
    char ts[40];
    stamp(ts, sizeof ts);
    puts_(&o, "{\"time\":\"");
    puts_(&o, ts);
    puts_(&o, "\",\"level\":\"");
    puts_(&o, level_names[level]);
    puts_(&o, "\",\"msg\":");
    json_str(&o, msg, mlen);
    cut = cut || o.cut;
    o.cap = sizeof line;
    put(&o, fb, f.len);
    if (cut) {
        puts_(&o, ",\"truncated\":true");
    }
    put(&o, "}\n", 2);
    fwrite(line, 1, o.len, stderr);
}

static void vlog(log_level_t level, const log_field_t *fields, size_t nf, const char *fmt,
                 va_list ap)
{
    if (log_get_format() == LOG_FORMAT_JSON) {
        json_line(level, fields, nf, fmt, ap);
    } else {
        text_line(level, fields, nf, fmt, ap);
    }
}

void log_msg(log_level_t level, const char *fmt, ...)
{
    if (level < current_level) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_fields(log_level_t level, const log_field_t *fields, size_t n, const char *fmt, ...)
{
    if (level < current_level) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fields, n, fmt, ap);
    va_end(ap);
}
