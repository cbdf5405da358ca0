#include "known.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#define NO_TYPE UINT32_MAX

/* A string dictionary: ids in order of insertion, slots holding id + 1 (0: empty). */
typedef struct {
    uint32_t *slots;
    size_t cap; /* a power of two, or 0 */
    struct ent {
        uint64_t hash;
        size_t off; /* in chars */
        uint32_t len;
        uint32_t type; /* patterns: index into types, or NO_TYPE */
    } * v;
    size_t n, vcap;
    char *chars;
    size_t chars_len, chars_cap;
} dict_t;

struct known {
    size_t max_keys;
    dict_t patterns, agents, types;
    uint64_t *keys; /* (pattern id + 1) << 32 | (agent id + 1); 0: empty */
    size_t keys_cap, keys_n;
    uint64_t *staged;
    size_t staged_n, staged_cap;
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        abort(); /* bounded by max_keys; running out here is fatal, as in agg */
    }
    return q;
}

static void dict_clear(dict_t *d)
{
    free(d->slots);
    free(d->v);
    free(d->chars);
    memset(d, 0, sizeof *d);
}

static void dict_grow(dict_t *d)
{
    size_t cap = d->cap ? d->cap * 2 : 256;
    uint32_t *s = calloc(cap, sizeof *s);
    if (s == NULL) {
        abort();
    }
    for (size_t i = 0; i < d->n; i++) {
        size_t j = d->v[i].hash & (cap - 1);
        while (s[j] != 0) {
            j = (j + 1) & (cap - 1);
        }
        s[j] = (uint32_t)i + 1;
    }
    free(d->slots);
    d->slots = s;
    d->cap = cap;
}

/* The id of s, adding it when add (else UINT32_MAX when absent). */
static uint32_t dict_id(dict_t *d, const char *s, size_t len, bool add)
{
    uint64_t h = text_hash(s, len, 0);
    if (d->cap > 0) {
        for (size_t j = h & (d->cap - 1); d->slots[j] != 0; j = (j + 1) & (d->cap - 1)) {
            const struct ent *e = &d->v[d->slots[j] - 1];
            if (e->hash == h && e->len == len && memcmp(d->chars + e->off, s, len) == 0) {
                return d->slots[j] - 1;
            }
        }
    }
    if (!add) {
        return UINT32_MAX;
    }
    if ((d->n + 1) * 10 >= d->cap * 7) {
        dict_grow(d);
    }
    if (d->n == d->vcap) {
        d->vcap = d->vcap ? d->vcap * 2 : 256;
        d->v = xrealloc(d->v, d->vcap * sizeof *d->v);
    }
    if (d->chars_len + len > d->chars_cap) {
        d->chars_cap =
            d->chars_cap * 2 > d->chars_len + len ? d->chars_cap * 2 : d->chars_len + len + 4096;
        d->chars = xrealloc(d->chars, d->chars_cap);
    }
    memcpy(d->chars + d->chars_len, s, len);
    d->v[d->n] = (struct ent){h, d->chars_len, (uint32_t)len, NO_TYPE};
    d->chars_len += len;
    size_t j = h & (d->cap - 1);
    while (d->slots[j] != 0) {
        j = (j + 1) & (d->cap - 1);
    }
    d->slots[j] = (uint32_t)d->n + 1;
    return (uint32_t)d->n++;
}

known_t *known_new(size_t max_keys)
{
    known_t *k = calloc(1, sizeof *k);
    if (k != NULL) {
        k->max_keys = max_keys < 1024 ? 1024 : max_keys;
    }
    return k;
}

static void forget_all(known_t *k)
{
    dict_clear(&k->patterns);
    dict_clear(&k->agents);
    dict_clear(&k->types);
    free(k->keys);
    k->keys = NULL;
    k->keys_cap = k->keys_n = 0;
    k->staged_n = 0;
}

void known_free(known_t *k)
{
    if (k == NULL) {
        return;
    }
    forget_all(k);
    free(k->staged);
    free(k);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    return x;
}

static bool set_has(const known_t *k, uint64_t key)
{
    if (k->keys_cap == 0) {
        return false;
    }
    for (size_t j = mix64(key) & (k->keys_cap - 1); k->keys[j] != 0;
         j = (j + 1) & (k->keys_cap - 1)) {
        if (k->keys[j] == key) {
            return true;
        }
    }
    return false;
}

static void set_add(known_t *k, uint64_t key)
{
    if ((k->keys_n + 1) * 4 >= k->keys_cap * 3) {
        size_t cap = k->keys_cap ? k->keys_cap * 2 : 4096;
        uint64_t *s = calloc(cap, sizeof *s);
        if (s == NULL) {
            abort();
        }
        for (size_t i = 0; i < k->keys_cap; i++) {
            if (k->keys[i] != 0) {
                size_t j = mix64(k->keys[i]) & (cap - 1);
                while (s[j] != 0) {
                    j = (j + 1) & (cap - 1);
                }
                s[j] = k->keys[i];
            }
        }
        free(k->keys);
        k->keys = s;
        k->keys_cap = cap;
    }
    size_t j = mix64(key) & (k->keys_cap - 1);
    while (k->keys[j] != 0) {
        if (k->keys[j] == key) {
            return;
        }
        j = (j + 1) & (k->keys_cap - 1);
    }
    k->keys[j] = key;
    k->keys_n++;
}

bool known_key(known_t *k, const char *pattern, size_t plen, const char *agent, size_t alen)
{
    uint32_t p = dict_id(&k->patterns, pattern, plen, false);
    uint32_t a = p == UINT32_MAX ? UINT32_MAX : dict_id(&k->agents, agent, alen, false);
    return a != UINT32_MAX && set_has(k, (uint64_t)(p + 1) << 32 | (a + 1));
}

void known_stage(known_t *k, const char *pattern, size_t plen, const char *agent, size_t alen)
{
    /* Forgetting is done here, before a key is staged: never between staging and commit, or the
     * staged ids would name other strings. */
    if (k->staged_n == 0 &&
        (k->keys_n >= k->max_keys || k->patterns.n >= k->max_keys || k->agents.n >= k->max_keys)) {
        forget_all(k);
    }
    uint32_t p = dict_id(&k->patterns, pattern, plen, true);
    uint32_t a = dict_id(&k->agents, agent, alen, true);
    if (k->staged_n == k->staged_cap) {
        k->staged_cap = k->staged_cap ? k->staged_cap * 2 : 1024;
        k->staged = xrealloc(k->staged, k->staged_cap * sizeof *k->staged);
    }
    k->staged[k->staged_n++] = (uint64_t)(p + 1) << 32 | (a + 1);
}

void known_commit(known_t *k)
{
    for (size_t i = 0; i < k->staged_n; i++) {
        set_add(k, k->staged[i]);
    }
    k->staged_n = 0;
}

void known_drop(known_t *k)
{
    k->staged_n = 0;
}

const char *known_type(known_t *k, const char *pattern, size_t plen, size_t *tlen)
{
    uint32_t p = dict_id(&k->patterns, pattern, plen, false);
    if (p == UINT32_MAX || k->patterns.v[p].type == NO_TYPE) {
        return NULL;
    }
    const struct ent *t = &k->types.v[k->patterns.v[p].type];
    *tlen = t->len;
    return k->types.chars + t->off;
}

void known_set_type(known_t *k, const char *pattern, size_t plen, const char *type, size_t tlen)
{
    if (k->staged_n == 0 && k->patterns.n >= k->max_keys) {
        forget_all(k);
    }
    uint32_t p = dict_id(&k->patterns, pattern, plen, true);
    k->patterns.v[p].type = dict_id(&k->types, type, tlen, true);
}

void known_forget_types(known_t *k)
{
    for (size_t i = 0; i < k->patterns.n; i++) {
        k->patterns.v[i].type = NO_TYPE;
    }
    dict_clear(&k->types);
}

size_t known_n_keys(const known_t *k)
{
    return k->keys_n;
}

static size_t dict_bytes(const dict_t *d)
{
    return d->cap * sizeof(uint32_t) + d->vcap * sizeof(struct ent) + d->chars_cap;
}

size_t known_bytes(const known_t *k)
{
    return dict_bytes(&k->patterns) + dict_bytes(&k->agents) + dict_bytes(&k->types) +
           k->keys_cap * sizeof(uint64_t) + k->staged_cap * sizeof(uint64_t);
}
