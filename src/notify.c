#include "notify.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "log.h"

/* Without a watchdog, how often STATUS= is refreshed. */
#define STATUS_EVERY_US 10000000ULL

typedef enum { N_STARTING, N_READY, N_RELOADING, N_STOPPING } nstate_t;

static struct {
    bool on; /* NOTIFY_SOCKET was set at notify_start */
    bool watchdog;
    bool send_failed_logged;
    nstate_t state;
    struct event *ev_tick;
    notify_status_fn status;
    void *ud;
} N;

/* Sends head plus, when there is a status function, STATUS=<its line>. */
static void send_msg(const char *head)
{
    char status[512] = "";
    if (N.status) {
        N.status(status, sizeof status, N.ud);
        for (char *p = status; *p; p++) {
            if (*p == '\n' || *p == '\r') {
                *p = ' ';
            }
        }
    }
    char msg[768];
    snprintf(msg, sizeof msg, "%s%s%s%s", head, *head && *status ? "\n" : "",
             *status ? "STATUS=" : "", status);
    if (*msg == '\0') {
        return;
    }
    int rc = sd_notify(0, msg);
    if (rc < 0 && !N.send_failed_logged) {
        N.send_failed_logged = true;
        log_warn("notify: cannot tell the service manager (NOTIFY_SOCKET): %s", strerror(-rc));
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    send_msg(N.watchdog ? "WATCHDOG=1" : "");
}

int notify_start(struct event_base *base, notify_status_fn status, void *ud)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock == NULL || *sock == '\0') {
        return 0;
    }
    N.on = true;
    N.state = N_STARTING;
    N.status = status;
    N.ud = ud;
    uint64_t usec = 0;
    N.watchdog = sd_watchdog_enabled(0, &usec) > 0 && usec > 0;
    uint64_t every = N.watchdog ? usec / 2 : STATUS_EVERY_US;
    N.ev_tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    if (N.ev_tick == NULL) {
        log_error("notify: cannot create the watchdog timer");
        N.on = false;
        return -1;
    }
    struct timeval tv = {(time_t)(every / 1000000), (suseconds_t)(every % 1000000)};
    event_add(N.ev_tick, &tv);
    if (N.watchdog) {
        log_info("notify: service manager at %s; watchdog every %.1f s (timeout %.1f s)", sock,
                 (double)every / 1e6, (double)usec / 1e6);
    } else {
        log_info("notify: service manager at %s; no watchdog", sock);
    }
    return 0;
}

void notify_stop(void)
{
    if (N.ev_tick) {
        event_free(N.ev_tick);
        N.ev_tick = NULL;
    }
    N.on = false;
}

void notify_ready(void)
{
    if (!N.on || N.state != N_STARTING) {
        return;
    }
    N.state = N_READY;
    send_msg("READY=1");
}

void notify_reload_begin(void)
{
    if (!N.on || N.state != N_READY) {
        return;
    }
    N.state = N_RELOADING;
    /* MONOTONIC_USEC: systemd 253 and later match it against the reload they asked for. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char head[96];
    snprintf(head, sizeof head, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    send_msg(head);
}

void notify_reload_end(void)
{
    if (!N.on || N.state != N_RELOADING) {
        return;
    }
    N.state = N_READY;
    send_msg("READY=1");
}

void notify_stopping(void)
{
    if (!N.on || N.state == N_STOPPING) {
        return;
    }
    N.state = N_STOPPING;
    send_msg("STOPPING=1");
}
