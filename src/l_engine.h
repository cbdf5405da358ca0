/* l_engine: the `pt` functions that connect routes to the running engine: pt.health() and
 * pt.metrics() (read its state), pt.ingest() (HTTP ingest into the current batch, answered
 * once it commits), pt.topics(), pt.reload(), the data version for answer caches, and the
 * lifetimes of pattern types. Reads and drives app_t's modules; owns none of them. */
#ifndef PT_L_ENGINE_H
#define PT_L_ENGINE_H

#include "routes.h"

/* The functions, for routes_new (each gets the app_t as upvalue 1). */
extern const routes_fn_t l_engine_fns[];

/* Refreshes gauges (lag, buffer, paused) before /metrics renders. */
void l_engine_collect(void *app);

#endif
