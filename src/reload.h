/* reload: builds a new generation (config, rules, routes, each in fresh Lua states) beside the
 * running one, checks it, and swaps it in between two events; a generation that fails to load
 * leaves the running one in place. Triggers: SIGHUP, POST /admin/reload, and changes to the
 * config file, the rule files or lua/ (polled every 2 s). Triggers that arrive while a reload
 * is pending coalesce into it. Retired routes are freed once their last request finished.
 * Owns the retired generations and the reload counters; the live objects stay in app_t. */
#ifndef PT_RELOAD_H
#define PT_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct app;
typedef struct reload reload_t;

reload_t *reload_new(struct app *app);
/* Call after the running routes were freed: it frees the config they were built with. */
void reload_free(reload_t *r);
/* Reloads now. 0 when the new generation runs (msg may still say which options need a
 * restart), -1 when it failed and the running one stays (msg says why). */
int reload_now(reload_t *r, char *msg, size_t msglen);

typedef struct {
    uint64_t ok, failed;
    bool last_ok;
    char last_message[1100];
    int64_t last_at_us;
    char fingerprint[32]; /* of every loaded file's contents */
} reload_status_t;
const reload_status_t *reload_status(const reload_t *r);
/* "file hash" lines of the loaded version, for /health: calls fn for each loaded file. */
void reload_each_file(const reload_t *r, void (*fn)(const char *path, const char *hash, void *),
                      void *ud);

#endif
