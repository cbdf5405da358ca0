/* notify: tells the service manager (systemd's sd_notify(3) protocol) where the engine is in its
 * life: ready, reloading, stopping, and, through the watchdog, that its event loop still turns.
 * Process-wide, like the NOTIFY_SOCKET it writes to: without one (not started by a service
 * manager) every function does nothing. Owns the watchdog timer and the last state it sent;
 * decides nothing about when the engine is ready or what its status says (main does). */
#ifndef PT_NOTIFY_H
#define PT_NOTIFY_H

#include <event2/event.h>
#include <stddef.h>

/* Writes a one-line STATUS= text (no newline) of at most len bytes into buf. */
typedef void (*notify_status_fn)(char *buf, size_t len, void *ud);

/* Starts notifying when NOTIFY_SOCKET is set. When the manager expects watchdog pings
 * (sd_watchdog_enabled: WATCHDOG_USEC set, WATCHDOG_PID unset or ours), a timer on base sends
 * WATCHDOG=1 every half of its interval, so a loop that stops turning stops the pings; without
 * a watchdog the timer only refreshes STATUS= every 10 s. status (may be NULL) fills STATUS= of
 * every message; it runs on the loop. 0, or -1 when the timer cannot be created (logged). */
int notify_start(struct event_base *base, notify_status_fn status, void *ud)
    __attribute__((warn_unused_result));
/* Frees the timer: before the base is freed. A no-op when not started. */
void notify_stop(void);
/* READY=1: start-up is complete. Sent once; later calls do nothing (a reload ends through
 * notify_reload_end). */
void notify_ready(void);
/* RELOADING=1 when a reload starts, READY=1 when it has ended (whether the new generation runs
 * or the old one stays). Both do nothing unless the engine is ready and not reloading
 * (respectively reloading), so nested or repeated brackets send one pair, and a reload before
 * readiness cannot mark the service ready. */
void notify_reload_begin(void);
void notify_reload_end(void);
/* STOPPING=1: shutdown has started; nothing but STATUS= and WATCHDOG=1 follows. */
void notify_stopping(void);

#endif
