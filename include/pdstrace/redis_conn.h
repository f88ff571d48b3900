#ifndef PDS_NET_REDIS_CONN_H
#define PDS_NET_REDIS_CONN_H

#include <stddef.h>
#include <uv.h>

/* One Redis connection on the loop: hiredis' async API with its libuv adapter, plus our
 * own connect and command deadlines (Debian's hiredis 0.14.1 has none), a heartbeat PING so
 * a frozen server is noticed while idle, and reconnection with backoff. It never blocks
 * the loop. See docs/internals/redis_conn.md. */
struct redis_conn;
struct redisReply;

enum redis_conn_state {
    REDIS_CONN_CLOSED,     /* waiting for the backoff timer to reconnect */
    REDIS_CONN_CONNECTING, /* TCP connect, AUTH and SELECT under way */
    REDIS_CONN_CONNECTED,
};

struct redis_conn_config {
    const char *url;             /* redis://[[user]:password@]host[:port][/db] */
    unsigned connect_timeout_ms; /* 0 means 1000 */
    unsigned command_timeout_ms; /* 0 means 1000 */
    unsigned reconnect_min_ms;   /* first backoff step; 0 means 100 */
    unsigned reconnect_max_ms;   /* backoff ceiling; 0 means 1000 */
    unsigned ping_interval_ms;   /* heartbeat while idle; 0 means 1000 */
};

struct redis_url {
    char host[256];
    int port;
    int db;
    char user[256];     /* a Redis 6 ACL user; "" for the default user */
    char password[256]; /* "" when none */
};

/* Parses redis://[[user]:password@]host[:port][/db] (port 6379 and db 0 by default; user
 * and password may be percent-encoded; a user needs a password; an IPv6 host goes in
 * brackets). Returns 0 or ERR_INVALID_INPUT, leaving out untouched on failure. */
int redis_url_parse(const char *url, struct redis_url *out);

/* status is 0 with a reply (which may be a Redis error reply: check reply->type), or
 * ERR_UPSTREAM_TIMEOUT (no answer within the deadline: the connection was dropped),
 * ERR_UNAVAILABLE (the connection went away), UV_ECANCELED (redis_conn_free). reply is
 * borrowed; valid until cb returns, NULL unless status is 0. */
typedef void redis_conn_cb(int status, struct redisReply *reply, void *arg);

/* Validates cfg (copied) and starts connecting at once; an unreachable Redis is not an error
 * here, the connection keeps retrying. A host name is looked up again on every attempt with
 * uv_getaddrinfo, off the loop, within the connect deadline; hiredis only ever sees the
 * numeric address (its own lookup would block). */
int redis_conn_new(struct redis_conn **out, uv_loop_t *loop, const struct redis_conn_config *cfg);

/* Pending commands complete with UV_ECANCELED (from inside this call, or right after the
 * current callback returns when called from one); handles close. NULL is fine, and so is
 * calling it from a redis_conn_cb. Run the loop afterwards so the close callbacks free
 * memory. */
void redis_conn_free(struct redis_conn *rc);

/* Sends a command (hiredis format string). Returns 0 and calls cb exactly once later, or
 * returns ERR_UNAVAILABLE (not connected) / UV_ENOMEM (hiredis 0.14.1 also reports a bad
 * format string this way) / ERR_INVALID_INPUT (NULL arguments) and never calls cb. Callbacks may
 * issue new commands. */
int redis_conn_command(struct redis_conn *rc, redis_conn_cb *cb, void *arg, const char *fmt, ...);
int redis_conn_command_argv(struct redis_conn *rc, redis_conn_cb *cb, void *arg, int argc,
                            const char **argv, const size_t *argvlen);

enum redis_conn_state redis_conn_state(const struct redis_conn *rc);
const char *redis_conn_state_name(enum redis_conn_state state);

/* Commands sent and not yet answered (the internal AUTH, SELECT and PING do not count). */
unsigned redis_conn_pending(const struct redis_conn *rc);

#endif
