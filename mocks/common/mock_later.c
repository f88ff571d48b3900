#include "mock_later.h"

#include <stdlib.h>
#include <string.h>

#include "pdstrace/http_server.h"
#include "pdstrace/macros.h"

/* One held-back answer. */
struct later_answer {
    struct list_node link;
    uv_timer_t timer;
    struct http_exchange *x;
    int status;
    const char *ctype;
    char *body;
};

void mock_later_init(struct mock_later *l, uv_loop_t *loop)
{
    l->_loop = loop;
    list_init(&l->_pending);
}

static void on_answer_close(uv_handle_t *h)
{
    struct later_answer *a = container_of((uv_timer_t *)h, struct later_answer, timer);
    free(a->body);
    free(a);
}

/* Sends the answer and lets go; the struct goes once its timer has closed. */
static void finish(struct later_answer *a)
{
    list_remove(&a->link);
    http_exchange_respond(a->x, a->status, a->ctype, a->body, strlen(a->body));
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, on_answer_close);
}

static void on_due(uv_timer_t *t)
{
    finish(container_of(t, struct later_answer, timer));
}

bool mock_later_add(struct mock_later *l, unsigned ms, struct http_exchange *x, int status,
                    const char *ctype, char *body)
{
    struct later_answer *a = calloc(1, sizeof(*a));
    if (a == NULL || uv_timer_init(l->_loop, &a->timer) != 0) {
        free(a);
        return false;
    }
    a->x = x;
    a->status = status;
    a->ctype = ctype;
    a->body = body;
    list_push_tail(&l->_pending, &a->link);
    /* The loop's cached time may be stale after other work in this turn. */
    uv_update_time(l->_loop);
    uv_timer_start(&a->timer, on_due, ms, 0);
    return true;
}

void mock_later_flush(struct mock_later *l)
{
    while (!list_is_empty(&l->_pending))
        finish(LIST_ENTRY(list_first(&l->_pending), struct later_answer, link));
}
