/* kafka: the consumer. Subscribes to the configured topics, wires librdkafka's consumer queue
 * into the event loop (a pipe written on empty -> non-empty), drains bounded batches, and owns
 * per-partition progress. Offsets belong to PostgreSQL: on assignment the partitions are
 * positioned at the offsets stored there, each batch carries the offsets it advanced (compare-
 * and-set at flush), and Kafka commits are informational (assignment and revocation are
 * kafka_assign.c's). Does not own the rules or the batch; every message goes to ingest. */
#ifndef PT_KAFKA_H
#define PT_KAFKA_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "ingest.h"
#include "rules.h"

typedef struct kafka kafka_t;

kafka_t *kafka_new(struct event_base *base, const config_t *c, rules_t *rules, char *err,
                   size_t errlen) __attribute__((warn_unused_result));
/* Ownership of ingest stays with the caller; it must outlive the consumer. */
void kafka_set_ingest(kafka_t *k, ingest_t *g);
int kafka_start(kafka_t *k, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Switches to another generation's rules between two messages. When the set of topics changed,
 * the subscription changes too (the rebalance flushes before releasing partitions; messages of
 * a removed topic that arrive before that are not counted and their offsets do not move). */
void kafka_set_rules(kafka_t *k, rules_t *rules);
/* fn(ud) is called once, on the loop, when the first assignment is in place: this member's
 * partitions positioned at the offsets stored in PostgreSQL, or none assigned to it (readiness).
 * Set it before kafka_start. */
void kafka_on_first_assignment(kafka_t *k, void (*fn)(void *ud), void *ud);
/* Stops consuming, flushes, leaves the group; done() is called when the consumer is closed. */
void kafka_close(kafka_t *k, void (*done)(void *ud), void *ud);
void kafka_free(kafka_t *k);

/* The ingest hooks that tie batches to this consumer's partitions. */
ingest_hooks_t kafka_ingest_hooks(kafka_t *k);

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t next; /* next offset to count, -1 unknown */
    int64_t high; /* high watermark, -1 unknown */
    bool active;
} kafka_part_info_t;

size_t kafka_n_parts(const kafka_t *k);
bool kafka_part_info(const kafka_t *k, size_t i, kafka_part_info_t *out);
bool kafka_brokers_down(const kafka_t *k);
bool kafka_paused(const kafka_t *k);
uint64_t kafka_rebalances(const kafka_t *k);
/* Fetch wake-ups sent while a backlog waited (kafka_wake.h). */
uint64_t kafka_fetch_wakeups(const kafka_t *k);

#endif
