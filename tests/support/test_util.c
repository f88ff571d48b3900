#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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
