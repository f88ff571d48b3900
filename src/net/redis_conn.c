#include "pdstrace/redis_conn.h"

#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include "pdstrace/err.h"
#include "pdstrace/list.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/url.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB       65535
#define REDIS_TIMER_COUNT  4

/* Internal commands share the FIFO with user commands so that the single command deadline
 * covers the handshake and the heartbeat as well. */
enum cmd_kind {
    CMD_USER,
    CMD_HANDSHAKE, /* AUTH, SELECT or the first PING */
    CMD_PING,
};

struct redis_cmd {
    struct list_node link; /* in rc->cmds from the send until its reply */
    struct redis_conn *rc;
    enum cmd_kind kind;
    redis_conn_cb *cb;
    void *arg;
    uint64_t sent_ms;
};

struct redis_conn {
    uv_loop_t *loop;
    struct redis_url url;
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms;
    unsigned reconnect_min_ms;
    unsigned reconnect_max_ms;
    unsigned ping_interval_ms;
    redisAsyncContext *ac; /* NULL unless a hiredis context is ours */
    enum redis_conn_state state;
    uv_getaddrinfo_t resolver;       /* host name lookup, off the loop thread */
    bool resolving;                  /* resolver in flight (it holds a ref) */
    bool resolve_wanted;             /* the current attempt waits for its answer */
    char resolved[INET6_ADDRSTRLEN]; /* an answer that came during the backoff, or "" */
    uv_timer_t connect_timer;        /* lookup + TCP connect + AUTH + SELECT deadline */
    uv_timer_t command_timer;        /* deadline of the oldest pending command */
    uv_timer_t ping_timer;           /* heartbeat while connected */
    uv_timer_t retry_timer;          /* backoff before the next attempt */
    /* sent and unanswered, in reply order: the first is the oldest */
    struct list_node cmds;
    unsigned npending;   /* user commands in the FIFO */
    int fail_status;     /* status for NULL replies while we drop the context */
    int handshake_left;  /* AUTH/SELECT replies still expected */
    unsigned backoff_ms; /* next retry delay before jitter */
    unsigned failures;   /* attempts failed since the last success, for quieter logs */
    uint64_t seed;       /* xorshift state for the backoff jitter */
    int refs;            /* timers not yet closed + resolver in flight; free at 0 */
    bool closing;
};

static void attempt(struct redis_conn *rc);

/* The one place where hiredis' error codes become ours. A reset, a refusal and EOF all
 * mean the same thing to callers: Redis is not there right now. */
static int convert_err(const redisAsyncContext *ac)
{
    switch (ac->err) {
    case 0:
        return 0;
    case REDIS_ERR_OOM:
        return UV_ENOMEM;
    case REDIS_ERR_PROTOCOL:
        return ERR_PARSE;
    default:
        return ERR_UNAVAILABLE;
    }
}

const char *redis_conn_state_name(enum redis_conn_state state)
{
    switch (state) {
    case REDIS_CONN_CLOSED:
        return "closed";
    case REDIS_CONN_CONNECTING:
        return "connecting";
    case REDIS_CONN_CONNECTED:
        return "connected";
    }
    return "unknown";
}

enum redis_conn_state redis_conn_state(const struct redis_conn *rc)
{
    return rc->state;
}

unsigned redis_conn_pending(const struct redis_conn *rc)
{
    return rc->npending;
}

/* ---- URL parsing ---- */

static int decode_part(const char *s, size_t n, char *out, size_t size)
{
    if (n == 0 || n >= size)
        return ERR_INVALID_INPUT;
    memcpy(out, s, n);
    out[n] = '\0';
    return url_decode(out, false);
}

/* The part before '@': ":password" (the default user, AUTH password) or "user:password"
 * (a Redis 6 ACL user, AUTH user password). A user without a password is refused: it
 * would need no AUTH at all. */
static int parse_userinfo(const char *s, size_t n, struct redis_url *u)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL)
        return ERR_INVALID_INPUT;
    size_t ulen = (size_t)(colon - s);
    if (ulen > 0 && decode_part(s, ulen, u->user, sizeof(u->user)) != 0)
        return ERR_INVALID_INPUT;
    return decode_part(colon + 1, n - ulen - 1, u->password, sizeof(u->password));
}

/* Parses a decimal number in [min, max] from exactly n characters. */
static int parse_number(const char *s, size_t n, long min, long max, int *out)
{
    long v = 0;
    if (n == 0 || n > 9)
        return ERR_INVALID_INPUT;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ERR_INVALID_INPUT;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return ERR_INVALID_INPUT;
    *out = (int)v;
    return 0;
}

static bool host_char_ok(char c, bool bracketed)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    if (bracketed)
        return c == ':' || c == '.' || c == '%';
    return c == '.' || c == '-' || c == '_';
}

/* Copies the host (an IPv6 literal loses its brackets) and returns the number of
 * characters consumed, or ERR_INVALID_INPUT. */
static int parse_host(const char *s, size_t n, struct redis_url *out)
{
    bool bracketed = n > 0 && s[0] == '[';
    size_t start = bracketed ? 1 : 0, end = start;
    while (end < n && s[end] != (bracketed ? ']' : ':')) {
        if (!host_char_ok(s[end], bracketed))
            return ERR_INVALID_INPUT;
        end++;
    }
    if (end == start || end - start >= sizeof(out->host) || (bracketed && end == n))
        return ERR_INVALID_INPUT;
    memcpy(out->host, s + start, end - start);
    out->host[end - start] = '\0';
    return (int)(bracketed ? end + 1 : end);
}

static int parse_hostport(const char *s, size_t n, struct redis_url *out)
{
    int used = parse_host(s, n, out);
    if (used < 0)
        return used;
    if ((size_t)used == n)
        return 0;
    if (s[used] != ':')
        return ERR_INVALID_INPUT;
    return parse_number(s + used + 1, n - (size_t)used - 1, 1, 65535, &out->port);
}

int redis_url_parse(const char *url, struct redis_url *out)
{
    static const char scheme[] = "redis://";
    if (url == NULL || out == NULL || strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return ERR_INVALID_INPUT;
    struct redis_url u = {.port = REDIS_DEFAULT_PORT, .db = 0};
    const char *auth = url + sizeof(scheme) - 1;
    const char *at = strrchr(auth, '@');
    const char *hp = at != NULL ? at + 1 : auth;
    if (at != NULL && parse_userinfo(auth, (size_t)(at - auth), &u) != 0)
        return ERR_INVALID_INPUT;
    const char *slash = strchr(hp, '/');
    size_t hplen = slash != NULL ? (size_t)(slash - hp) : strlen(hp);
    if (parse_hostport(hp, hplen, &u) != 0)
        return ERR_INVALID_INPUT;
    if (slash != NULL && slash[1] != '\0' &&
        parse_number(slash + 1, strlen(slash + 1), 0, REDIS_MAX_DB, &u.db) != 0)
        return ERR_INVALID_INPUT;
    *out = u;
    return 0;
}

/* ---- the command FIFO and its deadline ---- */

/* The command sent first and not yet answered, or NULL. */
static struct redis_cmd *oldest(const struct redis_conn *rc)
{
    struct list_node *n = list_first(&rc->cmds);
    return n != NULL ? LIST_ENTRY(n, struct redis_cmd, link) : NULL;
}

static void unlink_cmd(struct redis_conn *rc, struct redis_cmd *cmd)
{
    if (!list_is_linked(&cmd->link))
        return;
    list_remove(&cmd->link);
    if (cmd->kind == CMD_USER)
        rc->npending--;
}

static void on_command_timeout(uv_timer_t *t);

/* Arms the deadline for the oldest pending command, or stops it when nothing waits. */
static void arm_command_timer(struct redis_conn *rc)
{
    if (rc->closing)
        return;
    struct redis_cmd *first = oldest(rc);
    if (first == NULL || rc->ac == NULL) {
        uv_timer_stop(&rc->command_timer);
        return;
    }
    uint64_t now = uv_now(rc->loop);
    uint64_t due = first->sent_ms + rc->command_timeout_ms;
    uv_timer_start(&rc->command_timer, on_command_timeout, due > now ? due - now : 0, 0);
}

static int status_for_null_reply(const struct redis_conn *rc)
{
    if (rc->closing)
        return UV_ECANCELED;
    return rc->fail_status != 0 ? rc->fail_status : ERR_UNAVAILABLE;
}

static void on_handshake_reply(struct redis_conn *rc, const redisReply *reply);

/* hiredis calls this exactly once per command: with a reply, or with NULL when the context
 * goes away (ours to free, its own error, or redis_conn_free). */
static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_cmd *cmd = privdata;
    struct redis_conn *rc = cmd->rc;
    redisReply *reply = r;
    UNUSED(ac);
    unlink_cmd(rc, cmd);
    arm_command_timer(rc);
    if (cmd->kind == CMD_USER)
        cmd->cb(reply != NULL ? 0 : status_for_null_reply(rc), reply, cmd->arg);
    else if (cmd->kind == CMD_HANDSHAKE)
        on_handshake_reply(rc, reply);
    free(cmd);
}

/* Queues an already formatted command. cmd is freed on failure. */
static int send_formatted(struct redis_conn *rc, struct redis_cmd *cmd, const char *buf, size_t len)
{
    cmd->rc = rc;
    cmd->sent_ms = uv_now(rc->loop);
    if (redisAsyncFormattedCommand(rc->ac, on_reply, cmd, buf, len) != REDIS_OK) {
        bool going = (rc->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0;
        free(cmd);
        return going ? ERR_UNAVAILABLE : UV_ENOMEM;
    }
    list_push_tail(&rc->cmds, &cmd->link);
    if (cmd->kind == CMD_USER)
        rc->npending++;
    if (oldest(rc) == cmd)
        arm_command_timer(rc);
    return 0;
}

/* Takes ownership of buf (a hiredis-formatted command) on every path. */
static int send_cmd(struct redis_conn *rc, enum cmd_kind kind, redis_conn_cb *cb, void *arg,
                    char *buf, int len)
{
    if (len < 0)
        return len == -2 ? ERR_INVALID_INPUT : UV_ENOMEM;
    struct redis_cmd *cmd = calloc(1, sizeof(*cmd));
    int err = UV_ENOMEM;
    if (cmd != NULL) {
        list_init(&cmd->link);
        cmd->kind = kind;
        cmd->cb = cb;
        cmd->arg = arg;
        err = send_formatted(rc, cmd, buf, (size_t)len);
    }
    redisFreeCommand(buf);
    return err;
}

static int check_usable(const struct redis_conn *rc, redis_conn_cb *cb)
{
    if (rc == NULL || cb == NULL)
        return ERR_INVALID_INPUT;
    if (rc->closing || rc->state != REDIS_CONN_CONNECTED || rc->ac == NULL)
        return ERR_UNAVAILABLE;
    return 0;
}

int redis_conn_command(struct redis_conn *rc, redis_conn_cb *cb, void *arg, const char *fmt, ...)
{
    int err = check_usable(rc, cb);
    if (err)
        return err;
    if (fmt == NULL)
        return ERR_INVALID_INPUT;
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    return send_cmd(rc, CMD_USER, cb, arg, buf, len);
}

int redis_conn_command_argv(struct redis_conn *rc, redis_conn_cb *cb, void *arg, int argc,
                            const char **argv, const size_t *argvlen)
{
    int err = check_usable(rc, cb);
    if (err)
        return err;
    if (argc <= 0 || argv == NULL)
        return ERR_INVALID_INPUT;
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    return send_cmd(rc, CMD_USER, cb, arg, buf, len);
}

/* ---- connection lifecycle ---- */

static redisAsyncContext *detach(struct redis_conn *rc)
{
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    if (ac != NULL)
        ac->data = NULL;
    return ac;
}

static void stop_timers(struct redis_conn *rc)
{
    uv_timer_stop(&rc->connect_timer);
    uv_timer_stop(&rc->command_timer);
    uv_timer_stop(&rc->ping_timer);
}

/* xorshift64: rand() is banned and the jitter only has to spread reconnects so that many
 * instances do not hammer a restarted Redis in lockstep. */
static unsigned jitter(struct redis_conn *rc, unsigned ms)
{
    uint64_t x = rc->seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rc->seed = x;
    return (unsigned)(x % (ms / 10 + 1));
}

static void on_retry(uv_timer_t *t)
{
    struct redis_conn *rc = container_of(t, struct redis_conn, retry_timer);
    log_msgf(LOG_LEVEL_DEBUG, NULL, "redis reconnecting (attempt %u)", rc->failures + 1);
    attempt(rc);
}

static void schedule_retry(struct redis_conn *rc)
{
    unsigned delay = rc->backoff_ms + jitter(rc, rc->backoff_ms);
    if (rc->backoff_ms >= rc->reconnect_max_ms / 2)
        rc->backoff_ms = rc->reconnect_max_ms;
    else
        rc->backoff_ms *= 2;
    uv_timer_start(&rc->retry_timer, on_retry, delay, 0);
}

/* Enters CLOSED after a failed attempt or a lost connection, and plans the next attempt
 * from the backoff timer (never from inside a hiredis callback). */
static void closed(struct redis_conn *rc, enum redis_conn_state was, int code, const char *why)
{
    rc->state = REDIS_CONN_CLOSED;
    if (rc->closing)
        return;
    stop_timers(rc);
    if (was == REDIS_CONN_CONNECTED) {
        log_msgf(LOG_LEVEL_WARN, NULL, "redis connection lost (%s: %s), reconnecting", why,
                 err_name(code));
        rc->failures = 1;
    } else if (rc->failures++ == 0) {
        log_msgf(LOG_LEVEL_WARN, NULL, "redis connect failed (%s: %s), retrying", why,
                 err_name(code));
    }
    schedule_retry(rc);
}

/* Frees our own context. Pending commands complete with status (fail_status is read by
 * on_reply), or later with the same status when hiredis defers the free because we are
 * inside one of its reply callbacks. Never called from the connect or disconnect callback,
 * after which 0.14.1 goes on using the context. */
static void drop(struct redis_conn *rc, int status, const char *why)
{
    enum redis_conn_state was = rc->state;
    redisAsyncContext *ac = detach(rc);
    if (ac == NULL)
        return;
    rc->fail_status = status;
    rc->state = REDIS_CONN_CLOSED;
    redisAsyncFree(ac);
    closed(rc, was, status, why);
}

static void on_ping(uv_timer_t *t);

static void mark_connected(struct redis_conn *rc)
{
    uv_timer_stop(&rc->connect_timer);
    rc->state = REDIS_CONN_CONNECTED;
    rc->backoff_ms = rc->reconnect_min_ms;
    log_msgf(LOG_LEVEL_INFO, NULL, "redis connected to %s:%d db %d after %u failed attempts",
             rc->url.host, rc->url.port, rc->url.db, rc->failures);
    rc->failures = 0;
    uv_timer_start(&rc->ping_timer, on_ping, rc->ping_interval_ms, rc->ping_interval_ms);
}

static void on_handshake_reply(struct redis_conn *rc, const redisReply *reply)
{
    /* A NULL reply means the context is going away, and that path reports itself. */
    if (rc->closing || rc->ac == NULL || rc->handshake_left <= 0 || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Server error texts for AUTH and SELECT never echo the password. Repeats of the
         * same misconfiguration go to debug so that the backoff does not flood the log. */
        log_msgf(rc->failures == 0 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, NULL,
                 "redis handshake rejected: %.80s", reply->str);
        rc->handshake_left = -1;
        drop(rc, ERR_UNAVAILABLE, "handshake");
        return;
    }
    if (--rc->handshake_left == 0)
        mark_connected(rc);
}

/* AUTH user password for a Redis 6 ACL user; AUTH password for the default user, which
 * older servers understand too. */
static int format_auth(const struct redis_url *url, char **buf)
{
    const char *argv[] = {"AUTH", url->user, url->password};
    if (url->user[0] != '\0')
        return redisFormatCommandArgv(buf, 3, argv, NULL);
    argv[1] = url->password;
    return redisFormatCommandArgv(buf, 2, argv, NULL);
}

static int send_handshake(struct redis_conn *rc)
{
    char *buf = NULL;
    int len, err = 0;
    if (rc->url.password[0] != '\0') {
        len = format_auth(&rc->url, &buf);
        err = send_cmd(rc, CMD_HANDSHAKE, NULL, NULL, buf, len);
        rc->handshake_left += err == 0;
    }
    if (err == 0 && rc->url.db != 0) {
        len = redisFormatCommand(&buf, "SELECT %d", rc->url.db);
        err = send_cmd(rc, CMD_HANDSHAKE, NULL, NULL, buf, len);
        rc->handshake_left += err == 0;
    }
    /* Without AUTH or SELECT a PING proves the server answers: the kernel accepts TCP
     * connections even for a frozen Redis, which must not count as CONNECTED. */
    if (err == 0 && rc->handshake_left == 0) {
        len = redisFormatCommand(&buf, "PING");
        err = send_cmd(rc, CMD_HANDSHAKE, NULL, NULL, buf, len);
        rc->handshake_left += err == 0;
    }
    return err;
}

/* TCP is up. The connection counts as CONNECTED only once Redis has answered the
 * handshake (AUTH and SELECT, or a PING); the connect deadline keeps running until then. */
static void on_connect(const redisAsyncContext *cac, int status)
{
    struct redis_conn *rc = cac->data;
    if (rc == NULL)
        return;
    if (status != REDIS_OK) {
        int code = convert_err(cac);
        detach(rc);
        closed(rc, rc->state, code, "connect");
        return;
    }
    rc->handshake_left = 0;
    int err = send_handshake(rc);
    if (err) {
        /* Freeing the context here would be a use after free in 0.14.1: leave it to the
         * connect deadline. */
        log_msgf(LOG_LEVEL_WARN, NULL, "redis handshake not sent: %s", err_name(err));
        rc->handshake_left = -1;
        return;
    }
    if (rc->handshake_left == 0)
        mark_connected(rc);
}

/* hiredis has already completed every pending command with NULL (ERR_UNAVAILABLE) and
 * frees the context when this returns. */
static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct redis_conn *rc = cac->data;
    UNUSED(status);
    if (rc == NULL)
        return;
    int code = convert_err(cac);
    enum redis_conn_state was = rc->state;
    detach(rc);
    closed(rc, was, code != 0 ? code : ERR_UNAVAILABLE, "disconnect");
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct redis_conn *rc = container_of(t, struct redis_conn, connect_timer);
    if (rc->ac == NULL) {
        /* Still resolving. The lookup cannot be stopped once its thread has it: it runs
         * on, and the next attempt adopts it instead of starting a second one. */
        rc->resolve_wanted = false;
        closed(rc, REDIS_CONN_CONNECTING, ERR_UPSTREAM_TIMEOUT, "connect timeout, resolving");
        return;
    }
    drop(rc, ERR_UPSTREAM_TIMEOUT, "connect timeout");
}

static void on_command_timeout(uv_timer_t *t)
{
    struct redis_conn *rc = container_of(t, struct redis_conn, command_timer);
    struct redis_cmd *first = oldest(rc);
    if (first == NULL)
        return;
    if (uv_now(rc->loop) - first->sent_ms < rc->command_timeout_ms) {
        arm_command_timer(rc);
        return;
    }
    /* Replies are pipelined in order, so one late reply holds up everything behind it:
     * the whole connection goes. */
    drop(rc, ERR_UPSTREAM_TIMEOUT, "command timeout");
}

/* An idle connection to a frozen server looks healthy forever, and 0.14.1's adapter even
 * swallows poll errors; a PING under the command deadline notices both. */
static void on_ping(uv_timer_t *t)
{
    struct redis_conn *rc = container_of(t, struct redis_conn, ping_timer);
    if (rc->state != REDIS_CONN_CONNECTED || rc->ac == NULL || !list_is_empty(&rc->cmds))
        return;
    char *buf = NULL;
    int len = redisFormatCommand(&buf, "PING");
    int err = send_cmd(rc, CMD_PING, NULL, NULL, buf, len);
    if (err)
        log_msgf(LOG_LEVEL_DEBUG, NULL, "redis heartbeat not sent: %s", err_name(err));
}

/* Hands hiredis a numeric address: its own getaddrinfo then does no lookup, so the
 * blocking resolver of 0.14.1 never stalls the loop. */
static void connect_to(struct redis_conn *rc, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, rc->url.port);
    int err = ac == NULL ? UV_ENOMEM : convert_err(ac);
    if (err == 0 && redisLibuvAttach(ac, rc->loop) != REDIS_OK) {
        /* 0.14.1 installs the hooks before it can fail; without clearing them
         * redisAsyncFree would hand a NULL to the adapter's cleanup. */
        memset(&ac->ev, 0, sizeof(ac->ev));
        err = UV_ENOMEM;
    }
    if (err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        closed(rc, REDIS_CONN_CONNECTING, err, "connect");
        return;
    }
    rc->ac = ac;
    ac->data = rc;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static bool is_numeric(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return uv_inet_pton(AF_INET, host, addr) == 0 || uv_inet_pton(AF_INET6, host, addr) == 0;
}

/* IPv4 first, then IPv6, as hiredis 0.14.1's own lookup does: "localhost" keeps reaching
 * a Redis bound to 127.0.0.1 only. */
static int pick_address(const struct addrinfo *res, char *ip, size_t size)
{
    const struct addrinfo *v6 = NULL;
    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        if (a->ai_family == AF_INET)
            return uv_ip4_name((const struct sockaddr_in *)(const void *)a->ai_addr, ip, size);
        if (a->ai_family == AF_INET6 && v6 == NULL)
            v6 = a;
    }
    if (v6 == NULL)
        return UV_EAI_NONAME;
    return uv_ip6_name((const struct sockaddr_in6 *)(const void *)v6->ai_addr, ip, size);
}

static void unref(struct redis_conn *rc)
{
    if (--rc->refs == 0)
        free(rc);
}

/* Runs exactly once per uv_getaddrinfo, also after uv_cancel (status UV_EAI_CANCELED), so
 * rc stays allocated until it has run. After redis_conn_free the answer is dropped; after
 * the attempt timed out, it is kept for the next one. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct redis_conn *rc = container_of(req, struct redis_conn, resolver);
    char ip[INET6_ADDRSTRLEN];
    int err = status != 0 ? status : pick_address(res, ip, sizeof(ip));
    bool wanted = rc->resolve_wanted && !rc->closing;
    uv_freeaddrinfo(res);
    rc->resolving = false;
    rc->resolve_wanted = false;
    if (wanted && err == 0) {
        connect_to(rc, ip);
    } else if (!rc->closing && err == 0) {
        /* Fresh, and the next attempt is due within the backoff: without it a resolver
         * slower than the connect deadline would never let us connect. */
        memcpy(rc->resolved, ip, sizeof(ip));
    } else if (wanted) {
        char why[300];
        snprintf(why, sizeof(why), "resolving %s", rc->url.host);
        closed(rc, REDIS_CONN_CONNECTING, err, why);
    }
    unref(rc);
}

/* Looks the host name up in libuv's thread pool. At most one lookup runs at a time: an
 * attempt that finds one still running (its own attempt timed out) waits for it. */
static void resolve(struct redis_conn *rc)
{
    rc->resolve_wanted = true;
    if (rc->resolving)
        return;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int err = uv_getaddrinfo(rc->loop, &rc->resolver, on_resolved, rc->url.host, NULL, &hints);
    if (err) {
        rc->resolve_wanted = false;
        closed(rc, REDIS_CONN_CONNECTING, err, "resolve");
        return;
    }
    rc->resolving = true;
    rc->refs++;
}

/* The connect deadline covers the lookup as well as TCP and the handshake. */
static void attempt(struct redis_conn *rc)
{
    rc->state = REDIS_CONN_CONNECTING;
    rc->fail_status = 0;
    uv_timer_start(&rc->connect_timer, on_connect_timeout, rc->connect_timeout_ms, 0);
    if (is_numeric(rc->url.host)) {
        connect_to(rc, rc->url.host);
    } else if (rc->resolved[0] != '\0') {
        char ip[sizeof(rc->resolved)];
        memcpy(ip, rc->resolved, sizeof(ip));
        rc->resolved[0] = '\0';
        connect_to(rc, ip);
    } else {
        resolve(rc);
    }
}

/* ---- new / free ---- */

static unsigned or_default(unsigned v, unsigned def)
{
    return v != 0 ? v : def;
}

static void apply_config(struct redis_conn *rc, const struct redis_conn_config *cfg)
{
    rc->connect_timeout_ms = or_default(cfg->connect_timeout_ms, 1000);
    rc->command_timeout_ms = or_default(cfg->command_timeout_ms, 1000);
    rc->reconnect_min_ms = or_default(cfg->reconnect_min_ms, 100);
    rc->reconnect_max_ms = or_default(cfg->reconnect_max_ms, 1000);
    if (rc->reconnect_max_ms < rc->reconnect_min_ms)
        rc->reconnect_max_ms = rc->reconnect_min_ms;
    rc->ping_interval_ms = or_default(cfg->ping_interval_ms, 1000);
    rc->backoff_ms = rc->reconnect_min_ms;
}

static void timers(struct redis_conn *rc, uv_timer_t *out[REDIS_TIMER_COUNT])
{
    out[0] = &rc->connect_timer;
    out[1] = &rc->command_timer;
    out[2] = &rc->ping_timer;
    out[3] = &rc->retry_timer;
}

int redis_conn_new(struct redis_conn **out, uv_loop_t *loop, const struct redis_conn_config *cfg)
{
    struct redis_url url;
    if (out == NULL || loop == NULL || cfg == NULL || redis_url_parse(cfg->url, &url) != 0)
        return ERR_INVALID_INPUT;
    struct redis_conn *rc = calloc(1, sizeof(*rc));
    if (rc == NULL)
        return UV_ENOMEM;
    rc->loop = loop;
    rc->url = url;
    list_init(&rc->cmds);
    apply_config(rc, cfg);
    rc->seed = (uv_hrtime() ^ (uint64_t)(uintptr_t)rc) | 1;
    uv_timer_t *t[REDIS_TIMER_COUNT];
    timers(rc, t);
    for (size_t i = 0; i < REDIS_TIMER_COUNT; i++) {
        uv_timer_init(loop, t[i]); /* cannot fail on Unix */
        t[i]->data = rc;
        rc->refs++;
    }
    attempt(rc);
    *out = rc;
    return 0;
}

static void on_timer_close(uv_handle_t *h)
{
    unref(h->data);
}

void redis_conn_free(struct redis_conn *rc)
{
    if (rc == NULL || rc->closing)
        return;
    rc->closing = true;
    rc->state = REDIS_CONN_CLOSED;
    redisAsyncContext *ac = detach(rc);
    /* Pending callbacks run now with UV_ECANCELED, or right after the current hiredis
     * callback returns when we are inside one: rc stays valid until the timers close. */
    if (ac != NULL)
        redisAsyncFree(ac);
    /* A lookup not yet started is cancelled; one under way finishes in its thread. Either
     * way on_resolved runs and releases its ref. */
    if (rc->resolving)
        uv_cancel((uv_req_t *)&rc->resolver);
    uv_timer_t *t[REDIS_TIMER_COUNT];
    timers(rc, t);
    for (size_t i = 0; i < REDIS_TIMER_COUNT; i++)
        uv_close((uv_handle_t *)t[i], on_timer_close);
}
