#include "mock_main.h"

#include <signal.h>

#include "pdstrace/log.h"

#define DRAIN_MS 5000

struct runner {
    uv_loop_t loop;
    const struct mock_main_ops *ops;
    void *mock;
    uv_signal_t sigterm, sigint;
};

/* With the signal handles closed, nothing is left to keep the loop running. */
static void close_signals(struct runner *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->sigterm))
        uv_close((uv_handle_t *)&r->sigterm, NULL);
    if (!uv_is_closing((uv_handle_t *)&r->sigint))
        uv_close((uv_handle_t *)&r->sigint, NULL);
}

static void on_stopped(void *arg)
{
    struct runner *r = arg;
    log_msgf(LOG_LEVEL_INFO, NULL, "drained");
    close_signals(r);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct runner *r = s->data;
    log_msgf(LOG_LEVEL_INFO, NULL, "signal %d: draining", signum);
    r->ops->stop(r->mock, DRAIN_MS, on_stopped, r);
}

static int start_signals(struct runner *r)
{
    uv_signal_init(&r->loop, &r->sigterm);
    uv_signal_init(&r->loop, &r->sigint);
    r->sigterm.data = r;
    r->sigint.data = r;
    int err = uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    return err ? err : uv_signal_start(&r->sigint, on_signal, SIGINT);
}

int mock_main_serve(const struct mock_main_ops *ops, void *arg)
{
    struct runner r = {.ops = ops};
    uv_loop_init(&r.loop);
    int err = start_signals(&r);
    err = err ? err : ops->start(&r.mock, &r.loop, arg);
    if (err) {
        ops->failed(err, arg);
        close_signals(&r);
    } else {
        log_event(LOG_LEVEL_INFO, NULL, "listening", json_pack("{s:i}", "port", ops->port(r.mock)));
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    ops->free(r.mock);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r.loop) != 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "handles left open at exit");
    if (!err)
        log_msgf(LOG_LEVEL_INFO, NULL, "stopped");
    return err;
}
