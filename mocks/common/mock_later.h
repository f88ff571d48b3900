#ifndef PDS_MOCKCOMMON_MOCK_LATER_H
#define PDS_MOCKCOMMON_MOCK_LATER_H

#include <stdbool.h>
#include <uv.h>

#include "pdstrace/list.h"

struct http_exchange;

/* Answers held back by a mock's latency_ms, each on a timer of its own: never a sleep, so
 * the loop serves other requests meanwhile. Embedded in the mock. */
struct mock_later {
    uv_loop_t *_loop;
    struct list_node _pending;
};

void mock_later_init(struct mock_later *l, uv_loop_t *loop);

/* Answers x with status, ctype (static) and body ms from now. Returns true and takes
 * ownership of body, or false (out of memory) and leaves body with the caller. */
bool mock_later_add(struct mock_later *l, unsigned ms, struct http_exchange *x, int status,
                    const char *ctype, char *body);

/* Sends every held answer now (http_server drops those whose exchange is detached) and lets
 * go of them; their memory goes as their timers close, so run the loop afterwards. */
void mock_later_flush(struct mock_later *l);

#endif
