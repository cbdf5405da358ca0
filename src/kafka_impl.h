/* kafka_impl: the consumer's state, shared by kafka.c (consuming: messages through the rules,
 * back-pressure, the consumer's life) and kafka_assign.c (partitions coming and going: each
 * assignment positioned at the offsets stored in PostgreSQL, each revocation drained first).
 * Private to those two files. */
#ifndef PT_KAFKA_IMPL_H
#define PT_KAFKA_IMPL_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "kafka.h"
#include "kafka_wake.h"
#include "pg.h"

/* Messages handled per loop turn. Each goes through a Lua rule and into the batch (0.15-0.8 ms
 * per message measured at 100,000 patterns with co-occurrence on), so a turn stays within a
 * few milliseconds and HTTP requests waiting behind it are not delayed by more; the read event
 * is re-armed while messages remain, and the loop's dispatch slice (main.c) lets what arrived
 * meanwhile run between turns. */
#define KAFKA_BATCH 32
/* The fetch wake-up (kafka_wake.h): every KAFKA_WAKE_MS while more than KAFKA_WAKE_BACKLOG
 * messages wait in Kafka beyond what was counted. */
#define KAFKA_WAKE_MS 50
#define KAFKA_WAKE_BACKLOG 1000
/* Back-pressure, first step: while the batches are over max_buffer_mb the engine leaves what
 * librdkafka fetched in its queue (bounded by queued.max.messages.kbytes, which stops the
 * fetching) and looks again every KAFKA_HOLD_CHECK_MS: a flush in flight usually makes room
 * within a second. Only after KAFKA_HOLD_MS (PostgreSQL slow or down) are the partitions paused,
 * which drops the queue (refetched later) but lets the engine poll again: librdkafka leaves the
 * group of a consumer that does not poll for max.poll.interval.ms. */
#define KAFKA_HOLD_CHECK_MS 20
#define KAFKA_HOLD_MS 3000
#define NO_RULE ((size_t)-1) /* a partition of a topic the current rules no longer have */

typedef enum { P_PENDING, P_ACTIVE } part_state_t;

typedef struct {
    char *topic;
    int32_t partition;
    size_t topic_idx;
    part_state_t state;
    int64_t next;        /* next offset to count; -1: no stored offset and nothing consumed */
    int64_t batch_start; /* `next` when the filling batch began: what PostgreSQL holds */
} part_t;

struct kafka {
    struct event_base *base;
    const config_t *cfg;
    rules_t *rules;
    ingest_t *ingest;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    kafka_wake_t *wake;
    int pipefd[2];
    struct event *ev_read;
    struct event *ev_retry;    /* retries the offset lookup */
    struct event *ev_pressure; /* re-checks back-pressure */
    struct event *ev_hold;     /* re-checks back-pressure while holding the queue */
    bool holding;
    bool hold_expired; /* held for KAFKA_HOLD_MS: the next message pauses */
    struct timespec hold_since;
    struct event *ev_revoke_timeout;
    pg_conn_t *pgc;
    part_t *parts;
    size_t n_parts, cap_parts;
    uint64_t generation; /* bumped by every (re)assignment; stale lookups are ignored */
    bool lookup_running;
    bool revoking;
    bool paused;
    bool closing;
    bool brokers_down;
    uint64_t rebalances;
    void (*close_done)(void *ud);
    void *close_ud;
    void (*first_assigned)(void *ud); /* kafka_on_first_assignment; NULL once called */
    void *first_assigned_ud;
    rd_kafka_message_t *msgs[KAFKA_BATCH];
};

part_t *kafka_find_part(kafka_t *k, const char *topic, int32_t partition);
void kafka_clear_parts(kafka_t *k);
/* Positions the assigned partitions at their stored offsets and resumes them (after_pause: they
 * were paused by back-pressure, not newly assigned). */
void kafka_apply_assignment(kafka_t *k, bool after_pause);
/* Reads the assigned partitions' offsets from PostgreSQL, then applies the assignment. */
void kafka_start_lookup(kafka_t *k);
void kafka_retry_cb(evutil_socket_t fd, short what, void *arg);
void kafka_revoke_timeout_cb(evutil_socket_t fd, short what, void *arg);
void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *parts, void *opaque);

#endif
