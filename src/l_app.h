/* l_app: the `pt` functions that show the running engine to routes: pt.health() and
 * pt.metrics(). Reads app_t; changes nothing. */
#ifndef PT_L_APP_H
#define PT_L_APP_H

#include "routes.h"

/* The functions, for routes_new (each gets the app_t as upvalue 1). */
extern const routes_fn_t l_app_fns[];

/* Refreshes gauges (lag, buffer, paused) before /metrics renders. */
void l_app_collect(void *app);

#endif
