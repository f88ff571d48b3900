#ifndef PDS_TEST_UTIL_H
#define PDS_TEST_UTIL_H

#include <stdbool.h>
#include <uv.h>

/* Runs loop until *done is true or deadline_ms passes. Returns true when done. */
bool run_until(uv_loop_t *loop, const bool *done, unsigned deadline_ms);

/* A condition a test waits for: true once it holds. */
typedef bool test_cond_fn(void *arg);

/* Asks cond every 10 ms until it holds or deadline_ms passes, for conditions another process
 * makes true (a request in the mock PDS's log, a metric, a log line): a test waits for
 * what it needs, never for a guessed time. Returns whether cond held. */
bool wait_until(test_cond_fn *cond, void *arg, unsigned deadline_ms);

/* Runs loop until cond holds or deadline_ms passes, asking cond every 10 ms (for a
 * condition held outside the loop, such as the mock PDS's request log). Returns whether
 * cond held. */
bool run_loop_until(uv_loop_t *loop, test_cond_fn *cond, void *arg, unsigned deadline_ms);

/* For wait_until: whether GET path on 127.0.0.1:port answers status (e.g. /readyz 503). */
struct http_probe {
    int port;
    const char *path;
    long status;
};
bool http_probe_answers(void *probe);

/* Closes every handle left on loop, runs it until they are gone, and returns the result of
 * uv_loop_close (0 when nothing leaked), in the spirit of libuv's MAKE_VALGRIND_HAPPY. */
int close_loop(uv_loop_t *loop);

/* Sleeps the calling thread (usleep is not POSIX 2008). */
void sleep_ms(unsigned ms);

/* Reads a whole file into a NUL-terminated malloc'd string (free it). NULL on failure. */
char *read_file(const char *path, size_t *len);

/* Whether the n bytes at p (which may hold NULs) contain needle. */
bool bytes_hold(const char *p, size_t n, const char *needle);

#endif
