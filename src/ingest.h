/* ingest: what happens to one message: size and UTF-8 checks, the topic's rule, the checks on
 * what it extracted, and the resulting uses, counters and dead letters in the current batch
 * (ingest.c); how an HTTP ingest body (NDJSON or a JSON array) splits into such messages
 * (ingest_body.c). Also owns the batching policy around the flush (ingest_batch.c): size and
 * time triggers, one flush in flight while the next batch fills, retry with backoff, the
 * back-pressure signal and the HTTP requests waiting for their batch's commit. Does not own the
 * rules (the generation does) or any Kafka state (kafka passes offsets in). */
#ifndef PT_INGEST_H
#define PT_INGEST_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "agg.h"
#include "config.h"
#include "rules.h"

typedef struct ingest ingest_t;

typedef struct {
    /* Called just before a batch is handed to the flush: the owner records into it how far each
     * partition advanced since the previous batch (agg_note_offset). */
    void (*snapshot)(agg_t *a, void *ud);
    /* Called after a flush committed, with the aggregate that was written (for its offsets). */
    void (*committed)(const agg_t *a, void *ud);
    /* Called when a flush hit an offset conflict: both batches were dropped; the owner must
     * re-read its offsets from PostgreSQL before consuming on. */
    void (*conflict)(void *ud);
    void *ud;
} ingest_hooks_t;

typedef struct {
    size_t topic_idx; /* index of the rule in the current rules */
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *payload;
    size_t len;
    rule_meta_t *meta;
    int64_t kafka_ts_ms; /* -1 when none */
} ingest_msg_t;

/* Waiting for the batch that holds the events just added: cb(true) once it committed,
 * cb(false, why) if it was dropped (offset conflict, shutdown). Used by HTTP ingest, which
 * answers only when its events are durable. */
typedef struct ingest_waiter ingest_waiter_t;
ingest_waiter_t *ingest_wait(ingest_t *g, void (*cb)(bool ok, const char *why, void *ud), void *ud);
/* Forget a waiter (its client went away); its events stay in the batch. */
void ingest_unwait(ingest_t *g, ingest_waiter_t *w);

/* Per topic counters since start (for metrics and /health). */
typedef struct {
    uint64_t events;
    uint64_t dead_letters;
    uint64_t without_patterns;
    uint64_t flagged;
    uint64_t uses;
    uint64_t duplicates; /* copies not counted (event-ID deduplication), once committed */
} ingest_topic_stats_t;

/* The 128-bit key event-ID deduplication claims for an event: XXH3 of the topic and the ID
 * (n distinct IDs in a window collide with a probability of about n^2 / 2^129). */
void ingest_event_key(const char *topic, const char *id, size_t len, uint8_t key[16]);
/* The seed's source_type label of a topic: manifest, action or routing for the seed topics
 * (also with a prefix such as prod.), else the topic itself. */
const char *ingest_source_type(const char *topic);

ingest_t *ingest_new(struct event_base *base, const config_t *c, rules_t *rules,
                     ingest_hooks_t hooks);
void ingest_free(ingest_t *g);
/* Switches to another generation's rules (between two messages). Counters of topics that stay
 * are kept; topic indices given to ingest_message from now on refer to the new rules. */
void ingest_set_rules(ingest_t *g, rules_t *rules);
/* Processes one message into the current batch. */
void ingest_message(ingest_t *g, const ingest_msg_t *m);
/* How an HTTP ingest body holds its events. */
typedef enum {
    INGEST_JSON,   /* one JSON object, or a JSON array of them (validated by the caller) */
    INGEST_NDJSON, /* one event per line; blank lines are skipped */
} ingest_format_t;
/* Processes each event of an HTTP ingest body through topic_idx's rule, as messages without
 * partition, offset, key or Kafka time; returns how many events it held. */
size_t ingest_body(ingest_t *g, size_t topic_idx, const char *topic, const char *body, size_t len,
                   ingest_format_t format);
/* How many messages wait in Kafka for this consumer (kafka says, as it reads): with a batch or
 * more waiting, batches grow to their size limits (catching up) rather than flushing every
 * batch_timeout_ms. */
void ingest_set_backlog(ingest_t *g, int64_t messages);
/* Starts a flush if the batch is due (call after a burst of messages). */
void ingest_poke(ingest_t *g);
/* False while the unflushed batches hold more than max_buffer_mb: stop consuming. */
bool ingest_accepting(const ingest_t *g);
/* Flushes everything now. done() is called once nothing is left unflushed; failed flushes are
 * retried (at least every 500 ms) until then, so the caller bounds the wait with its own
 * deadline. */
void ingest_drain(ingest_t *g, void (*done)(void *ud), void *ud);
/* True when nothing is waiting to be flushed and no flush is in flight. */
bool ingest_idle(const ingest_t *g);
/* Asks the owner (hooks.snapshot) to record its partitions' progress into the filling batch
 * now, e.g. before partitions are revoked. */
void ingest_note_offsets(ingest_t *g);
bool ingest_pg_down(const ingest_t *g);
const ingest_topic_stats_t *ingest_stats(const ingest_t *g, size_t topic_idx);
uint64_t ingest_flushes_ok(const ingest_t *g);
/* Of those, the batches HTTP requests waited for (pt.ingest): their clients may read back. */
uint64_t ingest_flushes_waited(const ingest_t *g);
uint64_t ingest_flushes_failed(const ingest_t *g);
int64_t ingest_last_flush_us(const ingest_t *g);
size_t ingest_buffer_bytes(const ingest_t *g);

#endif
