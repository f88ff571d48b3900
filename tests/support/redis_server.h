#ifndef PDS_TEST_REDIS_SERVER_H
#define PDS_TEST_REDIS_SERVER_H

#include <stddef.h>
#include <sys/types.h>

/* A private redis-server for one test: loopback only, an ephemeral port, its own temporary
 * directory (with redis.log), no persistence. The binary is $PDS_REDIS_SERVER or
 * redis-server on PATH. The child gets SIGKILL if the test process dies, so a crashed test
 * never leaves a Redis behind. Zero-initialise the struct before the first start. */
struct redis_server {
    pid_t pid; /* 0 when not running */
    int port;  /* kept across stop/restart */
    char dir[256];
    int has_conf; /* started with extra config lines (dir/extra.conf) */
    int aof;      /* set before starting: appendonly yes, appendfsync everysec */
};

/* The ACL user the harness adds next to extra config lines, so that it can still check
 * that the server answers when requirepass or ACL rules lock out the default user. */
#define REDIS_SERVER_HARNESS_USER     "pds-harness"
#define REDIS_SERVER_HARNESS_PASSWORD "pds-harness-password"

/* Picks a free port, creates the directory and starts Redis, then blocks until it answers
 * PING (at most 5 s). Returns 0 or a negative code; on failure nothing is left running. */
int redis_server_start(struct redis_server *rs);

/* Like redis_server_start, with extra redis.conf lines (NULL-terminated), for example
 * "requirepass secret" or "user alice on >secret ~* +@all"; restarts keep them. */
int redis_server_start_conf(struct redis_server *rs, const char *const conf[]);

/* SIGTERM (and SIGCONT, in case it is frozen) and waitpid; keeps the port and directory. */
int redis_server_stop(struct redis_server *rs);

/* Starts Redis again on the same port and waits for PING like redis_server_start. */
int redis_server_restart(struct redis_server *rs);

/* Like redis_server_start with the append-only file on (appendonly yes, appendfsync
 * everysec: what deploy/ asks of production), kept in dir across restarts. */
int redis_server_start_aof(struct redis_server *rs);

/* SIGKILL and waitpid, as a crash: nothing is flushed. Keeps the port and directory. */
int redis_server_kill(struct redis_server *rs);

/* SIGSTOP / SIGCONT: the kernel still accepts connections, but nobody answers. */
int redis_server_freeze(struct redis_server *rs);
int redis_server_thaw(struct redis_server *rs);

/* Stops Redis if it runs and removes the directory. Safe on a zeroed struct. */
void redis_server_destroy(struct redis_server *rs);

/* Runs one command (no arguments to format) and returns its integer answer, the number of
 * elements of an array answer (KEYS), 0 for "OK", or -1 for anything else (an error, no
 * answer). */
long long redis_server_query(const struct redis_server *rs, const char *command);

/* Every key with its type and every value it holds (GET, HGETALL, XRANGE, ZRANGE WITHSCORES,
 * LRANGE, SMEMBERS), as one malloc'd byte string of what Redis answered, in *len; for tests
 * that search what Redis holds in clear. NULL when Redis did not answer. */
char *redis_server_dump(const struct redis_server *rs, size_t *len);

/* The files of the append-only directory (dir/appendonlydir), one after another, malloc'd,
 * in *len; NULL when there are none. */
char *redis_server_read_aof(const struct redis_server *rs, size_t *len);

/* Writes "redis://127.0.0.1:<port>" into out and returns out. */
char *redis_server_url(const struct redis_server *rs, char *out, size_t size);

#endif
