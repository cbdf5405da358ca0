#include "kafka_wake.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

struct kafka_wake {
    rd_kafka_t *rk;
    int interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    atomic_bool backlogged;
    atomic_ulong sent;
};

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* One ListOffsets for the end offsets of every assigned partition: librdkafka sends it to each
 * partition's leader, which wakes those broker threads. The answer itself is not needed. */
static void wake_brokers(kafka_wake_t *w)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(w->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || parts == NULL) {
        return;
    }
    if (parts->cnt > 0) {
        for (int i = 0; i < parts->cnt; i++) {
            parts->elems[i].offset = RD_KAFKA_OFFSET_END; /* the timestamp "latest" */
        }
        rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(w->rk, parts, 1000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_fetch_add(&w->sent, 1);
        } else {
            log_debug("kafka: fetch wake-up: %s", rd_kafka_err2str(err));
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

static void *wake_main(void *arg)
{
    kafka_wake_t *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        deadline_in(&ts, w->interval_ms);
        while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0) {
        }
        if (w->stop) {
            break;
        }
        if (atomic_load(&w->backlogged)) {
            pthread_mutex_unlock(&w->mu);
            wake_brokers(w);
            pthread_mutex_lock(&w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

kafka_wake_t *kafka_wake_start(rd_kafka_t *rk, int interval_ms)
{
    kafka_wake_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return NULL;
    }
    w->rk = rk;
    w->interval_ms = interval_ms;
    atomic_init(&w->backlogged, false);
    atomic_init(&w->sent, 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, wake_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void kafka_wake_set_backlogged(kafka_wake_t *w, bool backlogged)
{
    if (w) {
        atomic_store(&w->backlogged, backlogged);
    }
}

unsigned long kafka_wake_count(const kafka_wake_t *w)
{
    return w ? atomic_load(&((kafka_wake_t *)w)->sent) : 0;
}

void kafka_wake_stop(kafka_wake_t *w)
{
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
