#ifndef PT_KAFKA_WAKE_H
#define PT_KAFKA_WAKE_H

/* Keeps librdkafka fetching while the engine works through a backlog.
 *
 * librdkafka before 2.3 (Debian 12 has 2.0.2) stops fetching when the consumer queue is over
 * queued.max.messages.kbytes and decides again only when its broker thread wakes: on a fetch
 * response (there is none outstanding then), on an operation queued for it, or after 1 s. So a
 * queue that does not hold a whole second of events leaves the engine idle for the rest of
 * that second: 2 MB was 9,000 events/s, 16 MB 50,000 (BENCHMARKS.md), and the queue is most of
 * the engine's memory. A background thread asks the partitions' leaders for their end offsets
 * (ListOffsets, a small request) every interval while the engine reports a backlog: the request
 * wakes each leader's broker thread, which then sees the room the engine made and fetches.
 * librdkafka 2.3 has fetch.queue.backoff.ms for this. */

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

typedef struct kafka_wake kafka_wake_t;

/* Starts the thread; interval_ms between wake-ups while backlogged. NULL when out of memory or
 * threads. */
kafka_wake_t *kafka_wake_start(rd_kafka_t *rk, int interval_ms);
/* Whether the engine has messages waiting in Kafka beyond what librdkafka holds. Any thread. */
void kafka_wake_set_backlogged(kafka_wake_t *w, bool backlogged);
/* Wake-ups sent (a metric and a test's proof that the thread ran). */
unsigned long kafka_wake_count(const kafka_wake_t *w);
/* Stops and joins the thread; before rd_kafka_destroy. NULL is a no-op. */
void kafka_wake_stop(kafka_wake_t *w);

#endif
