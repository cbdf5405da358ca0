/* pg_buf: growable byte buffers and PostgreSQL text array literals built in them (quoting as
 * array_in reads it back), for query parameters. Knows no connection. */
#ifndef PT_PG_BUF_H
#define PT_PG_BUF_H

#include <stddef.h>
#include <stdint.h>

/* A growable buffer. */
typedef struct {
    char *data;
    size_t len, cap;
} pg_buf_t;
void pg_buf_init(pg_buf_t *b);
void pg_buf_free(pg_buf_t *b);
void pg_buf_reset(pg_buf_t *b);
void pg_buf_putc(pg_buf_t *b, char c);
void pg_buf_put(pg_buf_t *b, const char *s, size_t len);
/* 16 bytes as the text of a PostgreSQL uuid (8-4-4-4-12 lowercase hex digits). */
void pg_buf_uuid(pg_buf_t *b, const uint8_t *k);
void pg_buf_printf(pg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Array literals: start with '{', elements separated by ',', end with '}'. */
void pg_array_text(pg_buf_t *b, const char *s, size_t len);
void pg_array_word(pg_buf_t *b, const char *s, size_t len);
void pg_array_int(pg_buf_t *b, int64_t v);
void pg_array_bytea(pg_buf_t *b, const char *s, size_t len);
void pg_array_next(pg_buf_t *b);
void pg_array_end(pg_buf_t *b);

#endif
