/* app: the engine's top-level objects of one running process, shared by main (which builds and
 * tears them down) and l_engine (which shows their state to routes). */
#ifndef PT_APP_H
#define PT_APP_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "fold.h"
#include "http.h"
#include "ingest.h"
#include "kafka.h"
#include "pg_pool.h"
#include "reload.h"
#include "routes.h"
#include "rules.h"
#include "upkeep.h"

typedef struct app {
    struct event_base *base;
    config_t *cfg;
    rules_t *rules;
    ingest_t *ingest;
    kafka_t *kafka;
    pg_pool_t *pool;
    routes_t *routes;
    http_t *http;
    upkeep_t *upkeep;
    fold_t *fold;
    reload_t *reload;
    struct event *ev_term, *ev_int, *ev_deadline;
    struct event *ev_lag; /* event loop lag probe */
    struct timespec lag_due;
    time_t started;
    uint64_t data_changes; /* catalog writes, for pt.data_version */
    bool stopping;
    int exit_code;
} app_t;

#endif
