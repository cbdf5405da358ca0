#include "pg_buf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void pg_buf_init(pg_buf_t *b)
{
    memset(b, 0, sizeof *b);
}

void pg_buf_free(pg_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void pg_buf_reset(pg_buf_t *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

static void reserve(pg_buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap) {
        return;
    }
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + more + 1) {
        ncap *= 2;
    }
    char *nd = realloc(b->data, ncap);
    if (nd == NULL) {
        abort();
    }
    b->data = nd;
    b->cap = ncap;
}

void pg_buf_putc(pg_buf_t *b, char ch)
{
    reserve(b, 1);
    b->data[b->len++] = ch;
    b->data[b->len] = '\0';
}

void pg_buf_uuid(pg_buf_t *b, const uint8_t *k)
{
    static const char hex[] = "0123456789abcdef";
    char s[36];
    size_t n = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            s[n++] = '-';
        }
        s[n++] = hex[k[i] >> 4];
        s[n++] = hex[k[i] & 15];
    }
    pg_buf_put(b, s, n);
}

void pg_buf_put(pg_buf_t *b, const char *s, size_t len)
{
    reserve(b, len);
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void pg_buf_printf(pg_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof tmp) {
        pg_buf_put(b, tmp, (size_t)n);
        return;
    }
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void pg_array_text(pg_buf_t *b, const char *s, size_t len)
{
    reserve(b, len * 2 + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '"' || ch == '\\') {
            b->data[b->len++] = '\\';
        }
        b->data[b->len++] = ch;
    }
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

/* Unquoted where array_in reads the text back unchanged: not empty, not NULL in any case, no
 * delimiter, brace, quote, backslash or white space. A row of pattern_cooccurrence_pending is an
 * array literal inside an array literal, so every quote would be escaped twice. */
void pg_array_word(pg_buf_t *b, const char *s, size_t len)
{
    bool bare = len > 0 && !(len == 4 && strncasecmp(s, "null", 4) == 0);
    for (size_t i = 0; i < len && bare; i++) {
        unsigned char ch = (unsigned char)s[i];
        bare = !(ch == '{' || ch == '}' || ch == ',' || ch == '"' || ch == '\\' || ch == ' ' ||
                 (ch >= '\t' && ch <= '\r'));
    }
    if (!bare) {
        pg_array_text(b, s, len);
        return;
    }
    pg_buf_put(b, s, len);
}

/* Not printf: a large flush writes millions of these from the builder thread, on a core the
 * flush's PostgreSQL backend shares. */
void pg_array_int(pg_buf_t *b, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    reserve(b, n + 2);
    if (v < 0) {
        b->data[b->len++] = '-';
    }
    while (n > 0) {
        b->data[b->len++] = tmp[--n];
    }
    b->data[b->len] = '\0';
}

void pg_array_bytea(pg_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Inside a quoted array element a backslash is escaped, so bytea's \x becomes \\x. */
    reserve(b, len * 2 + 6);
    b->data[b->len++] = '"';
    b->data[b->len++] = '\\';
    b->data[b->len++] = '\\';
    b->data[b->len++] = 'x';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        b->data[b->len++] = hex[ch >> 4];
        b->data[b->len++] = hex[ch & 15];
    }
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

void pg_array_next(pg_buf_t *b)
{
    pg_buf_putc(b, ',');
}

void pg_array_end(pg_buf_t *b)
{
    pg_buf_putc(b, '}');
}
