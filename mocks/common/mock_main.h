#ifndef PDS_MOCKCOMMON_MOCK_MAIN_H
#define PDS_MOCKCOMMON_MOCK_MAIN_H

#include <uv.h>

/* A mock's life as a process: serve on a loop of its own until SIGTERM or SIGINT, then drain
 * and stop. The mock itself is reached through the functions below (the program's thin
 * wrappers around mock_pds_* or mock_case_*). */

/* Called once a mock has stopped. */
typedef void mock_stopped_fn(void *arg);

/* Starts the mock on loop; *mock is set, or left NULL, either way (run the loop after a
 * failure so that opened handles close). Returns 0 or an error code. */
typedef int mock_start_fn(void **mock, uv_loop_t *loop, void *arg);
/* The bound port. */
typedef int mock_port_fn(const void *mock);
/* Graceful stop: cb(cb_arg) runs once, later, when everything has closed. */
typedef void mock_stop_fn(void *mock, unsigned deadline_ms, mock_stopped_fn *cb, void *cb_arg);
/* Closes everything at once; NULL is fine. */
typedef void mock_free_fn(void *mock);
/* Says on stderr why start failed with err. */
typedef void mock_failed_fn(int err, void *arg);

struct mock_main_ops {
    mock_start_fn *start;
    mock_port_fn *port;
    mock_stop_fn *stop;
    mock_free_fn *free;
    mock_failed_fn *failed;
};

/* Starts the mock (start(..., arg)) and logs {"msg":"listening","port":N}, runs the loop
 * until a signal has drained it, and frees it. Returns 0, or the error of a failed start
 * (already reported through failed(err, arg)). */
int mock_main_serve(const struct mock_main_ops *ops, void *arg);

#endif
