#ifndef PDS_MOCKCOMMON_MOCK_REQLOG_H
#define PDS_MOCKCOMMON_MOCK_REQLOG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A mock's request log: the last cap requests in a ring, by sequence number, and the admin
 * API over it (GET /_admin/requests lists them oldest first, DELETE clears them). What an
 * entry holds beyond its header is the mock's. */

struct router;

/* The first member of every entry; the log fills it in. */
struct mock_log_entry {
    uint64_t seq;
    long long time_ms; /* wall clock, ms since the epoch */
    long long time_us; /* the same instant in microseconds, for tests that measure spacing */
};

/* One entry as GET /_admin/requests shows it; NULL when out of memory. */
typedef json_t *mock_log_json_fn(const struct mock_log_entry *e);

/* Embedded in the mock. */
struct mock_reqlog {
    struct mock_log_entry **_ring;
    size_t _cap;
    uint64_t _next_seq, _cleared_seq;
    mock_log_json_fn *_entry_json;
};

/* Returns 0 or UV_ENOMEM. mock_reqlog_close releases it (also after a failed init). */
int mock_reqlog_init(struct mock_reqlog *log, size_t cap, mock_log_json_fn *entry_json);
void mock_reqlog_close(struct mock_reqlog *log);

/* Forgets every entry; the count shown starts again from 0, the sequence numbers do not. */
void mock_reqlog_clear(struct mock_reqlog *log);

/* Logs e, timed now, with the next sequence number, which it returns. Takes ownership of
 * e: a malloc'd block that starts with its struct mock_log_entry, freed with free() once it
 * has left the log (when cap newer ones have come, or at a clear). */
uint64_t mock_reqlog_add(struct mock_reqlog *log, struct mock_log_entry *e);

/* Entry seq, or NULL once it has left the log. */
struct mock_log_entry *mock_reqlog_find(struct mock_reqlog *log, uint64_t seq);

/* Adds GET and DELETE /_admin/requests, served from log. Returns 0 or a router error. */
int mock_reqlog_add_routes(struct mock_reqlog *log, struct router *r);

#endif
