#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_util.h"

static void on_deadline(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

bool run_until(uv_loop_t *loop, const bool *done, unsigned deadline_ms)
{
    bool expired = false;
    uv_timer_t timer, tick;
    uv_timer_init(loop, &timer);
    timer.data = &expired;
    uv_timer_start(&timer, on_deadline, deadline_ms, 0);
    /* A flag set from a callback with nothing else due would leave UV_RUN_ONCE waiting
     * until the deadline: the tick bounds each wait to 10 ms. */
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    while (!*done && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *done;
}

static void close_one(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int close_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    uv_walk(loop, close_one, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *data = malloc(cap);
    size_t got;
    while (data != NULL && (got = fread(data + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *p = realloc(data, cap * 2);
            if (p == NULL) {
                free(data);
                data = NULL;
                break;
            }
            data = p;
            cap *= 2;
        }
    }
    fclose(f);
    if (data != NULL) {
        data[n] = '\0';
        if (len != NULL)
            *len = n;
    }
    return data;
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Asks cond every 10 ms until it holds or the deadline passes; between two questions the
 * loop runs (when there is one) or the thread waits. */
static bool poll_cond(test_cond_fn *cond, void *arg, unsigned deadline_ms, uv_loop_t *loop)
{
    static const bool never = false;
    uint64_t end = now_ms() + deadline_ms;
    while (!cond(arg)) {
        if (now_ms() >= end)
            return false;
        if (loop != NULL)
            run_until(loop, &never, 10);
        else
            sleep_ms(10);
    }
    return true;
}

bool wait_until(test_cond_fn *cond, void *arg, unsigned deadline_ms)
{
    return poll_cond(cond, arg, deadline_ms, NULL);
}

bool run_loop_until(uv_loop_t *loop, test_cond_fn *cond, void *arg, unsigned deadline_ms)
{
    return poll_cond(cond, arg, deadline_ms, loop);
}

bool http_probe_answers(void *probe)
{
    const struct http_probe *p = probe;
    struct http_reply r;
    bool is = http_do(p->port, "GET", p->path, NULL, NULL, &r) == 0 && r.status == p->status;
    http_reply_free(&r);
    return is;
}

bool bytes_hold(const char *p, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; p != NULL && m > 0 && i + m <= n; i++)
        if (p[i] == needle[0] && memcmp(p + i, needle, m) == 0)
            return true;
    return false;
}
