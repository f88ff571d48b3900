#ifndef PDS_APP_H
#define PDS_APP_H

#include <stddef.h>
#include <uv.h>

/* The composition root: owns every long-lived part of a running service and the order in
 * which they start and stop (CONVENTIONS.md §1.5). */
struct app;
struct config;
struct metrics;
struct objections;
struct pds_client;
struct trace_service;
struct writeback_queue;

/* Builds and starts everything on loop: Redis, the HTTP client, keys, routes, the listener
 * and the SIGTERM/SIGINT handlers. cfg is copied. Returns 0, ERR_CONFIG (with a line in
 * err, exit code 2) or another code (bind failure...). */
int app_new(struct app **out, uv_loop_t *loop, const struct config *cfg, char *err,
            size_t err_size);

/* For `pds-trace bulk`: the same parts without the HTTP side (no listener, no routes, no
 * API keys, no write-back worker: a bulk run queues write-backs, the service's instances
 * deliver them). SIGTERM and SIGINT call the stop hook, then stop as app_stop does. */
int app_new_bulk(struct app **out, uv_loop_t *loop, const struct config *cfg, char *err,
                 size_t err_size);

/* Called once at the start of a stop (a signal or app_stop), before anything closes. */
typedef void app_stop_hook(void *arg);
void app_set_stop_hook(struct app *app, app_stop_hook *fn, void *arg);

/* The parts a bulk run borrows; valid until app_stop. */
struct trace_service *app_traces(const struct app *app);
struct writeback_queue *app_writebacks(const struct app *app);
struct objections *app_objections(const struct app *app);
struct metrics *app_metrics(const struct app *app);
struct pds_client *app_pds(const struct app *app);

/* Starts a graceful stop, as SIGTERM does: stop accepting, drain, close everything. When the
 * loop then runs dry, app_free() releases what is left. */
void app_stop(struct app *app);

/* NULL is fine. Call after uv_run() has returned. */
void app_free(struct app *app);

/* The bound HTTP port. */
int app_port(const struct app *app);

#endif
