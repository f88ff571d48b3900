#ifndef PDS_TEST_UTIL_H
#define PDS_TEST_UTIL_H

#include <stdbool.h>
#include <uv.h>

/* Runs loop until *done is true or deadline_ms passes. Returns true when done. */
bool run_until(uv_loop_t *loop, const bool *done, unsigned deadline_ms);

/* Closes every handle left on loop, runs it until they are gone, and returns the result of
 * uv_loop_close (0 when nothing leaked), in the spirit of libuv's MAKE_VALGRIND_HAPPY. */
int close_loop(uv_loop_t *loop);

/* Sleeps the calling thread (usleep is not POSIX 2008). */
void sleep_ms(unsigned ms);

/* Reads a whole file into a NUL-terminated malloc'd string (free it). NULL on failure. */
char *read_file(const char *path, size_t *len);

#endif
