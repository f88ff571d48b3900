#ifndef PDS_APP_H
#define PDS_APP_H

#include <stddef.h>
#include <uv.h>

/* The composition root: owns every long-lived part of a running service and the order in
 * which they start and stop (CONVENTIONS.md §1.5). */
struct app;
struct config;

/* Builds and starts everything on loop: Redis, the HTTP client, keys, routes, the listener
 * and the SIGTERM/SIGINT handlers. cfg is copied. Returns 0, ERR_CONFIG (with a line in
 * err, exit code 2) or another code (bind failure...). */
int app_new(struct app **out, uv_loop_t *loop, const struct config *cfg, char *err,
            size_t err_size);

/* Starts a graceful stop, as SIGTERM does: stop accepting, drain, close everything. When the
 * loop then runs dry, app_free() releases what is left. */
void app_stop(struct app *app);

/* NULL is fine. Call after uv_run() has returned. */
void app_free(struct app *app);

/* The bound HTTP port. */
int app_port(const struct app *app);

#endif
