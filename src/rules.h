/* rules: the extraction rules of one generation: a sandboxed Lua state (lvm) holding one rule
 * function per topic, and the per-event call: JSON decode, rule call under the instruction
 * budget, and checking what the rule returned. Does not decide what happens to the results
 * (ingest does) and does not own the messages it reads. */
#ifndef PT_RULES_H
#define PT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct rules rules_t;

typedef enum {
    RULE_OK = 0,
    RULE_NOT_JSON,   /* the payload is not valid JSON */
    RULE_NOT_OBJECT, /* valid JSON, but not an object */
    RULE_ERROR,      /* the rule raised an error */
    RULE_TIMEOUT,    /* the rule ran out of its instruction budget */
    RULE_NOMEM,      /* decoding or the rule hit the Lua memory cap */
    RULE_BAD_RESULT, /* the rule returned values of the wrong types */
} rule_status_t;

#define RULES_MAX_HEADERS 32

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *key; /* may be NULL */
    size_t key_len;
    int64_t timestamp_ms; /* -1 when the message has none */
    size_t n_headers;
    const char *header_names[RULES_MAX_HEADERS];
    const char *header_values[RULES_MAX_HEADERS];
    size_t header_lens[RULES_MAX_HEADERS];
    /* meta.dedupe: the topic is deduplicated by event ID (config dedupe) and the message has a
     * Kafka position to claim one with, so the rule's event ID is read; a rule may skip
     * finding one otherwise */
    bool dedupe;
} rule_meta_t;

typedef struct {
    const char *agent; /* valid until rules_done */
    size_t agent_len;
    bool has_time;      /* the rule gave a usable event time */
    bool time_unusable; /* the rule gave a time that could not be parsed */
    int64_t time_us;
    const char *note; /* NULL or the rule's note, valid until rules_done */
    size_t n_patterns;
    /* The event's ID (the fifth value; NULL: none), valid until rules_done: a string of 1..255
     * bytes as returned, or an integer in decimal (in event_id_buf). */
    const char *event_id;
    size_t event_id_len;
    char event_id_buf[24];
} rule_result_t;

/* Loads every topic's rule file. NULL with a message naming the file on any error. */
rules_t *rules_new(const config_t *c, char *err, size_t errlen) __attribute__((warn_unused_result));
void rules_free(rules_t *r);
/* Index of the topic's rule, or -1. */
int rules_find(const rules_t *r, const char *topic);
size_t rules_count(const rules_t *r);
const char *rules_topic(const rules_t *r, size_t idx);
const char *rules_file(const rules_t *r, size_t idx);

/* Runs the topic's rule over a payload that the caller has checked is UTF-8 and not too large.
 * On RULE_OK the results stay readable (res, rules_pattern) until rules_done, which must be
 * called after every rules_run whatever it returned. On failure err holds the reason. */
rule_status_t rules_run(rules_t *r, size_t idx, const char *payload, size_t len,
                        const rule_meta_t *meta, rule_result_t *res, char *err, size_t errlen);
/* The i-th reference the rule returned: the string, or NULL when that element is not a
 * string. */
const char *rules_pattern(rules_t *r, size_t i, size_t *len);
void rules_done(rules_t *r);
size_t rules_mem_used(const rules_t *r);

#endif
