/* cooc: the partner lists that hold co-occurrence pairs and (pattern, agent) usage in
 * PostgreSQL (pattern_lists, agent_lists), and the in-memory work on them: encoding, checked
 * decoding, merging several lists of one owner, and ranking. One list holds the partners of one
 * owner (both sides of each pair are kept, one in each owner's list: a pattern's partner
 * patterns, a pattern's agents, an agent's patterns), sorted by partner in byte order, as
 * PostgreSQL's "C" collation sorts:
 *
 *   byte 0        COOC_VERSION (2): co-occurrence (count, last time), or
 *                 COOC_USAGE_VERSION (3): usage (count, first and last time)
 *   each entry    u8 shared | u8 n | n bytes | varint count | varint zigzag(last_us - last_us
 *                 of the entry before, 0 before the first) | version 3 only: varint (last_us -
 *                 first_us)
 *
 * The partner is the previous entry's first `shared` bytes followed by the n bytes (n >= 1,
 * shared + n <= 255); varints are LEB128 (7 bits a byte, low first, at most 10 bytes). Sorted
 * partners share their prefixes and a list's times lie close together, so an entry of a
 * pattern ID like "pat-000123" takes about 9 bytes where version 1's fixed layout took 27: that
 * is what a flush sends, PostgreSQL stores and writes to its WAL, and a merge reads and writes.
 *
 * A pair's count is the sum over its pattern's lists (one merged row and the rows flushes left
 * pending), its last time their maximum. Owns no connection and no SQL; knows nothing of Lua. */
#ifndef PT_COOC_H
#define PT_COOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg_buf.h"

#define COOC_VERSION 2
#define COOC_USAGE_VERSION 3
#define COOC_MAX_ID 255
/* Bytes an entry takes at most. */
#define COOC_ENTRY_MAX (2 + COOC_MAX_ID + 30)

/* Writes one list (entries refer to the one before). */
typedef struct {
    pg_buf_t *b;
    int version;
    char prev[COOC_MAX_ID];
    size_t prev_len;
    int64_t prev_last;
} cooc_writer_t;

/* Starts a list at the end of b: appends the version byte (cooc_writer_init: COOC_VERSION). */
void cooc_writer_init(cooc_writer_t *w, pg_buf_t *b);
void cooc_writer_init_v(cooc_writer_t *w, pg_buf_t *b, int version);
/* Appends an entry; entries must come in strictly increasing partner order (not checked here:
 * cooc_check and every reader check it). len is 1..COOC_MAX_ID, count > 0, first_us <=
 * last_us (a version 2 list keeps no first time). */
void cooc_write(cooc_writer_t *w, const char *id, size_t len, int64_t count, int64_t last_us);
void cooc_write_usage(cooc_writer_t *w, const char *id, size_t len, int64_t count, int64_t first_us,
                      int64_t last_us);

typedef struct {
    const unsigned char *p, *end;
    const char *id; /* the current entry: points into buf, valid until the next call */
    size_t len;
    int version;
    int64_t count, first_us, last_us; /* first_us = last_us in a version 2 list */
    const char *err;                  /* set when the list is malformed; iteration then stops */
    char buf[COOC_MAX_ID];
} cooc_iter_t;

/* False (with it->err) when the list does not start with COOC_VERSION or COOC_USAGE_VERSION. */
bool cooc_iter_init(cooc_iter_t *it, const void *list, size_t n);
/* The next entry; false at the end of the list or on a malformed entry (it->err says which:
 * truncated, a shared prefix longer than the partner before, an empty, too long or
 * out-of-order partner, a count below 1, a varint over 64 bits). The iterator must not be copied
 * while in use (id points into it). */
bool cooc_iter_next(cooc_iter_t *it);
/* Walks a whole list: its entries, how many sort below self (n_low), or -1 with err. */
int cooc_check(const void *list, size_t n, const char *self, size_t self_len, int64_t *entries,
               int64_t *n_low, char *err, size_t errlen) __attribute__((warn_unused_result));

typedef struct {
    const void *data;
    size_t len;
    bool pending; /* a flush's row (the merged row is not): see cooc_merge's changed */
} cooc_src_t;

/* Called for each entry of the merged list that a pending source contributed to and whose
 * partner sorts above self: the pair (self, id) and its count after the merge. */
typedef void (*cooc_changed_fn)(const char *id, size_t len, int64_t count, int64_t last_us,
                                void *ud);

/* Merges the k lists of one owner into out (which it starts with the header, of the sources'
 * version): partners in order, counts summed, first times the minimum, last times the maximum.
 * Sets *entries and *n_low (entries below self). -1 with err when an input is malformed or of
 * another version than the first (out is then unspecified) or a sum overflows. */
int cooc_merge(const cooc_src_t *src, size_t k, const char *self, size_t self_len, pg_buf_t *out,
               int64_t *entries, int64_t *n_low, cooc_changed_fn changed, void *ud, char *err,
               size_t errlen) __attribute__((warn_unused_result));

/* Byte order of two partners, as agg_bytes_cmp. */
int cooc_cmp(const char *x, size_t lx, const char *y, size_t ly);

/* An entry of a decoded list. */
typedef struct {
    const char *id;
    uint32_t len;
    int64_t count, first_us, last_us;
} cooc_entry_t;

/* A merged, decoded list: entries in partner order, their partners in ids (owned). */
typedef struct {
    char *ids;
    cooc_entry_t *v;
    size_t n;
} cooc_list_t;

/* Merges the k lists into l (freshly initialised inside). -1 with err as cooc_merge. */
int cooc_list_build(cooc_list_t *l, const cooc_src_t *src, size_t k, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void cooc_list_free(cooc_list_t *l);
/* The entry for a partner (binary search), or NULL. */
const cooc_entry_t *cooc_list_find(const cooc_list_t *l, const char *id, size_t len);
/* The `limit` first of n items in the order cmp gives (negative: a before b; a total order),
 * as indexes into out (room for limit), best first. Returns how many (min(n, limit)). For the
 * few shown out of many: one comparison per item that does not make it. */
size_t cooc_topk(size_t n, size_t limit, int (*cmp)(size_t a, size_t b, void *ud), void *ud,
                 size_t *out);
/* cooc_topk of a list's entries by count descending, then partner ascending. */
size_t cooc_list_top(const cooc_list_t *l, size_t limit, size_t *out);

#endif
