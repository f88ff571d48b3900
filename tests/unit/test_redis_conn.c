#include "pdstrace/redis_conn.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "redis_server.h"
#include "test_util.h"

/* ---- redis_url_parse ---- */

struct url_case {
    char url[96];
    int ok;
    char host[64];
    int port;
    int db;
    char password[32];
    char user[32];
};

ParameterizedTestParameters(redis_url, parse)
{
    static struct url_case cases[] = {
        {"redis://127.0.0.1", 1, "127.0.0.1", 6379, 0, "", ""},
        {"redis://localhost:6380", 1, "localhost", 6380, 0, "", ""},
        {"redis://127.0.0.1:6379/3", 1, "127.0.0.1", 6379, 3, "", ""},
        {"redis://:secret@redis.internal:7000/15", 1, "redis.internal", 7000, 15, "secret", ""},
        {"redis://:p%40ss%2Fw@host/2", 1, "host", 6379, 2, "p@ss/w", ""},
        {"redis://:a@b@host", 1, "host", 6379, 0, "a@b", ""},
        {"REDIS://host", 1, "host", 6379, 0, "", ""},
        {"redis://[::1]:6390/1", 1, "::1", 6390, 1, "", ""},
        {"redis://host/", 1, "host", 6379, 0, "", ""},
        {"redis://h:65535/65535", 1, "h", 65535, 65535, "", ""},
        {"", 0, "", 0, 0, "", ""},
        {"http://host", 0, "", 0, 0, "", ""},
        {"rediss://host", 0, "", 0, 0, "", ""},
        {"redis://", 0, "", 0, 0, "", ""},
        {"redis://:6379", 0, "", 0, 0, "", ""},
        {"redis://host:", 0, "", 0, 0, "", ""},
        {"redis://host:0", 0, "", 0, 0, "", ""},
        {"redis://host:65536", 0, "", 0, 0, "", ""},
        {"redis://host:12ab", 0, "", 0, 0, "", ""},
        {"redis://host:-1", 0, "", 0, 0, "", ""},
        {"redis://host/-1", 0, "", 0, 0, "", ""},
        {"redis://host/abc", 0, "", 0, 0, "", ""},
        {"redis://host/70000", 0, "", 0, 0, "", ""},
        {"redis://host/99999999999", 0, "", 0, 0, "", ""},
        {"redis://host:6379/1/2", 0, "", 0, 0, "", ""},
        {"redis://user:pw@host", 1, "host", 6379, 0, "pw", "user"},
        {"redis://alice:s3:cr@t@redis.internal:6380/2", 1, "redis.internal", 6380, 2, "s3:cr@t",
         "alice"},
        {"redis://al%40ice:p%3Aw@host", 1, "host", 6379, 0, "p:w", "al@ice"},
        {"redis://alice@host", 0, "", 0, 0, "", ""},
        {"redis://alice:@host", 0, "", 0, 0, "", ""},
        {"redis://al%4:pw@host", 0, "", 0, 0, "", ""},
        {"redis://:@host", 0, "", 0, 0, "", ""},
        {"redis://:p%4@host", 0, "", 0, 0, "", ""},
        {"redis://ho st", 0, "", 0, 0, "", ""},
        {"redis://[::1", 0, "", 0, 0, "", ""},
        {"redis://host?db=1", 0, "", 0, 0, "", ""},
    };
    return cr_make_param_array(struct url_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct url_case *c, redis_url, parse, .timeout = 10)
{
    struct redis_url u;
    memset(&u, 0x55, sizeof(u));
    int err = redis_url_parse(c->url, &u);
    if (!c->ok) {
        cr_assert_eq(err, ERR_INVALID_INPUT, "%s should be rejected", c->url);
        return;
    }
    cr_assert_eq(err, 0, "%s should parse", c->url);
    cr_assert_str_eq(u.host, c->host);
    cr_assert_eq(u.port, c->port);
    cr_assert_eq(u.db, c->db);
    cr_assert_str_eq(u.password, c->password);
    cr_assert_str_eq(u.user, c->user);
}

Test(redis_url, new_rejects_bad_config, .timeout = 10)
{
    uv_loop_t loop;
    struct redis_conn *rc = NULL;
    struct redis_conn_config cfg = {.url = "http://127.0.0.1"};
    uv_loop_init(&loop);
    cr_assert_eq(redis_conn_new(&rc, &loop, &cfg), ERR_INVALID_INPUT);
    cfg.url = NULL;
    cr_assert_eq(redis_conn_new(&rc, &loop, &cfg), ERR_INVALID_INPUT);
    cr_assert_null(rc);
    redis_conn_free(NULL);
    cr_assert_eq(close_loop(&loop), 0);
}

/* ---- against a real redis-server ---- */

static uv_loop_t loop;
static struct redis_server srv;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2), as in main */
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&srv, 0, sizeof(srv));
    cr_assert_eq(redis_server_start(&srv), 0, "redis-server did not start");
}

static void teardown(void)
{
    redis_server_destroy(&srv);
}

TestSuite(redis_conn, .init = setup, .fini = teardown, .timeout = 30);

struct result {
    int calls;
    int status;
    int type;
    long long integer;
    char str[64];
    bool done;
    /* What the callback does from inside (re-entrancy tests). */
    struct redis_conn *rc;
    bool free_inside;
    struct result *next; /* issue a GET into this one from inside */
};

static void on_result(int status, struct redisReply *reply, void *arg)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    r->done = true;
    if (reply != NULL) {
        r->type = reply->type;
        r->integer = reply->integer;
        if (reply->str != NULL)
            snprintf(r->str, sizeof(r->str), "%s", reply->str);
    }
    if (r->next != NULL)
        cr_assert_eq(redis_conn_command(r->rc, on_result, r->next, "GET %s", "t:k"), 0);
    if (r->free_inside)
        redis_conn_free(r->rc);
}

static struct redis_conn *conn_new_url(const char *url, unsigned connect_timeout_ms,
                                       unsigned command_timeout_ms, unsigned ping_interval_ms)
{
    struct redis_conn_config cfg = {
        .url = url,
        .connect_timeout_ms = connect_timeout_ms,
        .command_timeout_ms = command_timeout_ms,
        .reconnect_min_ms = 50,
        .reconnect_max_ms = 200,
        .ping_interval_ms = ping_interval_ms,
    };
    struct redis_conn *rc = NULL;
    cr_assert_eq(redis_conn_new(&rc, &loop, &cfg), 0);
    cr_assert_not_null(rc);
    return rc;
}

static struct redis_conn *conn_new(const char *suffix, unsigned command_timeout_ms,
                                   unsigned ping_interval_ms)
{
    char url[128], base[64];
    snprintf(url, sizeof(url), "%s%s", redis_server_url(&srv, base, sizeof(base)), suffix);
    return conn_new_url(url, 500, command_timeout_ms, ping_interval_ms);
}

/* A condition the loop runs until: a connection state, or a client blocked in Redis. */
struct waiter {
    bool (*holds)(const struct waiter *w);
    struct redis_conn *rc;
    enum redis_conn_state state;
    bool equal;
    redisContext *admin; /* a plain connection of the test's own, for INFO */
    bool done;
};

static void on_poll(uv_timer_t *t)
{
    struct waiter *w = t->data;
    if (w->holds(w))
        w->done = true;
}

/* Runs the loop until w holds or ms pass, asking every 2 ms so that a short visit to a
 * state is not missed. */
static bool wait_until_holds(struct waiter *w, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = w;
    uv_timer_start(&t, on_poll, 0, 2);
    run_until(&loop, &w->done, ms);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return w->done;
}

static bool state_matches(const struct waiter *w)
{
    return (redis_conn_state(w->rc) == w->state) == w->equal;
}

static bool wait_state(struct redis_conn *rc, enum redis_conn_state state, bool equal, unsigned ms)
{
    struct waiter w = {.holds = state_matches, .rc = rc, .state = state, .equal = equal};
    return wait_until_holds(&w, ms);
}

static bool client_blocked(const struct waiter *w)
{
    redisReply *r = redisCommand(w->admin, "INFO clients");
    const char *at =
        r != NULL && r->type == REDIS_REPLY_STRING ? strstr(r->str, "blocked_clients:") : NULL;
    bool blocked = at != NULL && strtol(at + strlen("blocked_clients:"), NULL, 10) > 0;
    freeReplyObject(r);
    return blocked;
}

/* Returns once Redis reports a blocked client: the BLPOP just sent has reached it, and
 * what is sent next queues behind it. */
static void wait_blpop_arrived(void)
{
    struct waiter w = {.holds = client_blocked, .admin = redisConnect("127.0.0.1", srv.port)};
    cr_assert(w.admin != NULL && w.admin->err == 0, "no admin connection to Redis");
    cr_assert(wait_until_holds(&w, 2000), "the BLPOP never reached Redis");
    redisFree(w.admin);
}

static struct redis_conn *connected(const char *suffix, unsigned command_timeout_ms,
                                    unsigned ping_interval_ms)
{
    struct redis_conn *rc = conn_new(suffix, command_timeout_ms, ping_interval_ms);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, 2000), "never connected");
    return rc;
}

static void finish(struct redis_conn *rc)
{
    redis_conn_free(rc);
    cr_assert_eq(close_loop(&loop), 0);
}

static void set_ok(struct redis_conn *rc, const char *key, const char *value)
{
    struct result r = {0};
    cr_assert_eq(redis_conn_command(rc, on_result, &r, "SET %s %s", key, value), 0);
    cr_assert(run_until(&loop, &r.done, 2000));
    cr_assert_eq(r.status, 0, "status %s", err_name(r.status));
    cr_assert_str_eq(r.str, "OK");
}

Test(redis_conn, set_get_and_error_reply)
{
    struct redis_conn *rc = connected("", 0, 0);
    set_ok(rc, "t:k", "hello");
    struct result get = {0}, incr = {0};
    cr_assert_eq(redis_conn_command(rc, on_result, &get, "GET %s", "t:k"), 0);
    cr_assert_eq(redis_conn_pending(rc), 1);
    cr_assert(run_until(&loop, &get.done, 2000));
    cr_assert_eq(get.status, 0);
    cr_assert_eq(get.type, REDIS_REPLY_STRING);
    cr_assert_str_eq(get.str, "hello");
    const char *argv[] = {"INCR", "t:k"};
    cr_assert_eq(redis_conn_command_argv(rc, on_result, &incr, 2, argv, NULL), 0);
    cr_assert(run_until(&loop, &incr.done, 2000));
    cr_assert_eq(incr.status, 0);
    cr_assert_eq(incr.type, REDIS_REPLY_ERROR);
    cr_assert_eq(get.calls + incr.calls, 2);
    cr_assert_eq(redis_conn_pending(rc), 0);
    finish(rc);
}

Test(redis_conn, selects_database_from_url)
{
    struct redis_conn *rc = connected("/3", 0, 0);
    set_ok(rc, "t:db", "three");
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    cr_assert(c != NULL && c->err == 0);
    redisReply *in0 = redisCommand(c, "GET t:db");
    cr_assert_eq(in0->type, REDIS_REPLY_NIL, "the key must not land in db 0");
    freeReplyObject(in0);
    freeReplyObject(redisCommand(c, "SELECT 3"));
    redisReply *in3 = redisCommand(c, "GET t:db");
    cr_assert_eq(in3->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(in3->str, "three");
    freeReplyObject(in3);
    redisFree(c);
    finish(rc);
}

Test(redis_conn, bad_database_never_connects)
{
    struct redis_conn *rc = conn_new("/60000", 0, 0);
    cr_assert_not(wait_state(rc, REDIS_CONN_CONNECTED, true, 600));
    struct result r = {0};
    cr_assert_eq(redis_conn_command(rc, on_result, &r, "PING"), ERR_UNAVAILABLE);
    finish(rc);
    cr_assert_eq(r.calls, 0);
}

Test(redis_conn, stop_and_restart)
{
    struct redis_conn *rc = connected("", 5000, 0);
    struct result blocked = {0}, late = {0};
    cr_assert_eq(redis_conn_command(rc, on_result, &blocked, "BLPOP %s 0", "t:list"), 0);
    wait_blpop_arrived();
    cr_assert_eq(redis_conn_pending(rc), 1);
    cr_assert_eq(redis_server_stop(&srv), 0);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, false, 1500), "still connected");
    cr_assert(run_until(&loop, &blocked.done, 500));
    cr_assert_eq(blocked.status, ERR_UNAVAILABLE, "status %s", err_name(blocked.status));
    cr_assert_eq(redis_conn_command(rc, on_result, &late, "PING"), ERR_UNAVAILABLE);
    cr_assert_eq(redis_server_restart(&srv), 0);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, 2000), "did not reconnect");
    set_ok(rc, "t:k", "again");
    cr_assert_eq(blocked.calls, 1);
    /* The loop has run through a reconnect and a command since: a refused command's
     * callback would have had every chance to run. */
    cr_assert_eq(late.calls, 0);
    finish(rc);
}

Test(redis_conn, frozen_server_times_out_command)
{
    struct redis_conn *rc = connected("", 300, 60000);
    cr_assert_eq(redis_server_freeze(&srv), 0);
    struct result r = {0};
    uint64_t t0 = uv_now(&loop);
    cr_assert_eq(redis_conn_command(rc, on_result, &r, "SET %s %s", "t:k", "v"), 0);
    cr_assert(run_until(&loop, &r.done, 1000), "the command deadline never fired");
    uint64_t took = uv_now(&loop) - t0;
    cr_assert_eq(r.status, ERR_UPSTREAM_TIMEOUT, "status %s", err_name(r.status));
    cr_assert_geq(took, 250);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(redis_server_thaw(&srv), 0);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, 2000));
    set_ok(rc, "t:k", "thawed");
    cr_assert_eq(r.calls, 1);
    finish(rc);
}

Test(redis_conn, heartbeat_notices_frozen_idle_server)
{
    struct redis_conn *rc = connected("", 300, 300);
    cr_assert_eq(redis_server_freeze(&srv), 0);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, false, 300 + 300 + 600),
              "an idle connection to a frozen server still looks connected");
    cr_assert_eq(redis_server_thaw(&srv), 0);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, 2000));
    set_ok(rc, "t:k", "v");
    finish(rc);
}

Test(redis_conn, connects_once_server_appears)
{
    cr_assert_eq(redis_server_stop(&srv), 0);
    struct redis_conn *rc = conn_new("", 0, 0);
    cr_assert_not(wait_state(rc, REDIS_CONN_CONNECTED, true, 500));
    enum redis_conn_state s = redis_conn_state(rc);
    cr_assert(s == REDIS_CONN_CLOSED || s == REDIS_CONN_CONNECTING);
    cr_assert_eq(redis_server_restart(&srv), 0);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, 2000), "did not connect");
    set_ok(rc, "t:k", "v");
    finish(rc);
}

Test(redis_conn, free_cancels_pending_commands)
{
    struct redis_conn *rc = connected("", 5000, 0);
    struct result r[4] = {{0}};
    cr_assert_eq(redis_conn_command(rc, on_result, &r[0], "BLPOP %s 0", "t:list"), 0);
    wait_blpop_arrived();
    for (int i = 1; i < 4; i++)
        cr_assert_eq(redis_conn_command(rc, on_result, &r[i], "SET t:%d v", i), 0);
    cr_assert_eq(redis_conn_pending(rc), 4);
    redis_conn_free(rc);
    cr_assert_eq(close_loop(&loop), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(r[i].calls, 1, "command %d completed %d times", i, r[i].calls);
        cr_assert_eq(r[i].status, UV_ECANCELED, "command %d: %s", i, err_name(r[i].status));
    }
}

Test(redis_conn, command_from_inside_callback)
{
    struct redis_conn *rc = connected("", 0, 0);
    struct result get = {0};
    struct result set = {.rc = rc, .next = &get};
    cr_assert_eq(redis_conn_command(rc, on_result, &set, "SET %s %s", "t:k", "nested"), 0);
    cr_assert(run_until(&loop, &get.done, 2000));
    cr_assert_eq(set.status, 0);
    cr_assert_eq(get.status, 0);
    cr_assert_str_eq(get.str, "nested");
    cr_assert_eq(set.calls + get.calls, 2);
    finish(rc);
}

Test(redis_conn, free_from_inside_reply_callback)
{
    struct redis_conn *rc = connected("", 0, 0);
    struct result first = {.rc = rc, .free_inside = true}, r[2] = {{0}};
    cr_assert_eq(redis_conn_command(rc, on_result, &first, "PING"), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(redis_conn_command(rc, on_result, &r[i], "PING"), 0);
    cr_assert(run_until(&loop, &first.done, 2000));
    cr_assert_eq(close_loop(&loop), 0);
    cr_assert_eq(first.calls, 1);
    cr_assert_eq(first.status, 0);
    for (int i = 0; i < 2; i++) {
        /* hiredis stops handing out replies once the context is being freed. */
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].status, UV_ECANCELED, "%s", err_name(r[i].status));
    }
}

Test(redis_conn, free_from_inside_disconnect_callback)
{
    struct redis_conn *rc = connected("", 5000, 0);
    struct result first = {.rc = rc, .free_inside = true}, behind = {0};
    cr_assert_eq(redis_conn_command(rc, on_result, &first, "BLPOP %s 0", "t:list"), 0);
    cr_assert_eq(redis_conn_command(rc, on_result, &behind, "PING"), 0);
    wait_blpop_arrived();
    cr_assert_eq(redis_server_stop(&srv), 0);
    cr_assert(run_until(&loop, &first.done, 1500));
    cr_assert_eq(close_loop(&loop), 0);
    cr_assert_eq(first.status, ERR_UNAVAILABLE);
    cr_assert_eq(first.calls, 1);
    cr_assert_eq(behind.calls, 1);
    cr_assert_eq(behind.status, UV_ECANCELED);
}

Test(redis_conn, free_from_inside_timeout_callback)
{
    struct redis_conn *rc = connected("", 300, 60000);
    struct result first = {.rc = rc, .free_inside = true}, behind = {0};
    cr_assert_eq(redis_server_freeze(&srv), 0);
    cr_assert_eq(redis_conn_command(rc, on_result, &first, "PING"), 0);
    cr_assert_eq(redis_conn_command(rc, on_result, &behind, "PING"), 0);
    cr_assert(run_until(&loop, &first.done, 1500));
    cr_assert_eq(close_loop(&loop), 0);
    cr_assert_eq(first.status, ERR_UPSTREAM_TIMEOUT);
    cr_assert_eq(first.calls, 1);
    cr_assert_eq(behind.calls, 1);
    cr_assert_eq(behind.status, UV_ECANCELED);
}

/* ---- AUTH against a Redis with requirepass and a Redis 6 ACL user ---- */

#define AUTH_PASSWORD  "default-secret"
#define ALICE_PASSWORD "alice:secret@1"

static void setup_auth(void)
{
    static const char *const conf[] = {"requirepass " AUTH_PASSWORD,
                                       "user alice on >" ALICE_PASSWORD " ~* +@all", NULL};
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&srv, 0, sizeof(srv));
    cr_assert_eq(redis_server_start_conf(&srv, conf), 0, "redis-server did not start");
}

TestSuite(redis_auth, .init = setup_auth, .fini = teardown, .timeout = 30);

/* userinfo is the part before '@', already percent-encoded. */
static struct redis_conn *auth_conn(const char *userinfo, const char *path)
{
    char url[160];
    snprintf(url, sizeof(url), "redis://%s@127.0.0.1:%d%s", userinfo, srv.port, path);
    return conn_new_url(url, 500, 0, 0);
}

static void assert_whoami(struct redis_conn *rc, const char *user)
{
    struct result r = {0};
    cr_assert_eq(redis_conn_command(rc, on_result, &r, "ACL WHOAMI"), 0);
    cr_assert(run_until(&loop, &r.done, 2000));
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.str, user);
}

Test(redis_auth, password_only_authenticates_default_user)
{
    struct redis_conn *rc = auth_conn(":" AUTH_PASSWORD, "/1");
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, 2000), "never connected");
    set_ok(rc, "t:k", "v");
    assert_whoami(rc, "default");
    finish(rc);
}

Test(redis_auth, acl_user_and_password)
{
    /* The password holds ':' and '@', percent-encoded in the URL. */
    struct redis_conn *rc = auth_conn("alice:alice%3Asecret%401", "/2");
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, 2000), "never connected");
    set_ok(rc, "t:k", "v");
    assert_whoami(rc, "alice");
    finish(rc);
}

struct wrong_auth {
    char userinfo[48];
    char path[8];
};

ParameterizedTestParameters(redis_auth, wrong_credentials_never_connect)
{
    static struct wrong_auth cases[] = {
        {":wrong-password", ""},
        {"alice:wrong-password", ""},
        {"alice:" AUTH_PASSWORD, "/1"},
        {"mallory:alice%3Asecret%401", ""},
    };
    return cr_make_param_array(struct wrong_auth, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct wrong_auth *w, redis_auth, wrong_credentials_never_connect)
{
    struct redis_conn *rc = auth_conn(w->userinfo, w->path);
    cr_assert_not(wait_state(rc, REDIS_CONN_CONNECTED, true, 800), "connected with %s",
                  w->userinfo);
    struct result r = {0};
    cr_assert_eq(redis_conn_command(rc, on_result, &r, "PING"), ERR_UNAVAILABLE);
    finish(rc);
    cr_assert_eq(r.calls, 0);
}

Test(redis_auth, no_password_never_connects)
{
    struct redis_conn *rc = conn_new("", 0, 0);
    cr_assert_not(wait_state(rc, REDIS_CONN_CONNECTED, true, 800));
    finish(rc);
}

/* ---- host names, resolved off the loop (run under tests/support/slow_dns.c) ---- */

/* The shim is preloaded only by the ctest entry unit/test_redis_conn_slow_dns, which sets
 * PDS_SLOW_DNS; names then take SLOW_DNS_MS to resolve. */
static bool slow_dns(void)
{
    return getenv("PDS_SLOW_DNS") != NULL;
}

static void setup_dns(void)
{
    if (slow_dns())
        setup();
}

TestSuite(redis_dns, .init = setup_dns, .fini = teardown, .timeout = 30);

/* Ticks every 5 ms and records the longest time between two ticks, in real time: a loop
 * blocked in a lookup shows up as one long gap. */
struct stall_meter {
    uv_timer_t timer;
    uint64_t last_ns;
    uint64_t max_gap_ns;
};

static void on_tick(uv_timer_t *t)
{
    struct stall_meter *m = container_of(t, struct stall_meter, timer);
    uint64_t now = uv_hrtime();
    if (now - m->last_ns > m->max_gap_ns)
        m->max_gap_ns = now - m->last_ns;
    m->last_ns = now;
}

static void meter_start(struct stall_meter *m)
{
    uv_timer_init(&loop, &m->timer);
    m->last_ns = uv_hrtime();
    m->max_gap_ns = 0;
    uv_timer_start(&m->timer, on_tick, 5, 5);
}

/* Stops the meter and fails the test if the loop ever stood still. A lookup done on the
 * loop would stop it for the whole SLOW_DNS_MS (1000 ms); the bound sits far below that
 * and far above what a loaded machine under ASan adds to a 5 ms tick. */
static void assert_no_stall(struct stall_meter *m)
{
    on_tick(&m->timer);
    uv_close((uv_handle_t *)&m->timer, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    unsigned gap = (unsigned)(m->max_gap_ns / 1000000);
    cr_assert_lt(gap, 250, "the loop stood still for %u ms", gap);
}

static struct redis_conn *slow_conn(const char *host, unsigned connect_timeout_ms)
{
    char url[128];
    snprintf(url, sizeof(url), "redis://%s:%d/0", host, srv.port);
    return conn_new_url(url, connect_timeout_ms, 0, 0);
}

/* Connects through the slow resolver within deadline_ms, and checks that the loop went
 * on running meanwhile. */
static struct redis_conn *connect_slowly(unsigned connect_timeout_ms, unsigned deadline_ms)
{
    struct stall_meter m;
    meter_start(&m);
    struct redis_conn *rc = slow_conn("slow.test", connect_timeout_ms);
    cr_assert(wait_state(rc, REDIS_CONN_CONNECTED, true, deadline_ms), "never connected");
    assert_no_stall(&m);
    return rc;
}

Test(redis_dns, loop_runs_while_host_name_resolves)
{
    if (!slow_dns())
        cr_skip_test("needs the slow_dns.c shim (ctest unit/test_redis_conn_slow_dns)");
    struct redis_conn *rc = connect_slowly(3000, 4000);
    set_ok(rc, "t:k", "v");
    finish(rc);
}

Test(redis_dns, resolver_slower_than_connect_deadline_still_connects)
{
    if (!slow_dns())
        cr_skip_test("needs the slow_dns.c shim (ctest unit/test_redis_conn_slow_dns)");
    /* Every attempt times out before its lookup ends; the answer still gets used. */
    struct redis_conn *rc = connect_slowly(300, 5000);
    set_ok(rc, "t:k", "v");
    finish(rc);
}

Test(redis_dns, unknown_host_is_a_failed_attempt)
{
    if (!slow_dns())
        cr_skip_test("needs the slow_dns.c shim (ctest unit/test_redis_conn_slow_dns)");
    struct stall_meter m;
    meter_start(&m);
    struct redis_conn *rc = slow_conn("nowhere.invalid", 3000);
    /* Only a failed lookup can close the attempt before its 3 s deadline. */
    cr_assert(wait_state(rc, REDIS_CONN_CLOSED, true, 1500),
              "the failed lookup did not end the attempt");
    cr_assert_neq(redis_conn_state(rc), REDIS_CONN_CONNECTED);
    assert_no_stall(&m);
    finish(rc);
}

static void on_marker_work(uv_work_t *w)
{
    UNUSED(w);
}

static void on_marker_done(uv_work_t *w, int status)
{
    UNUSED(status);
    *(bool *)w->data = true;
}

/* Returns once libuv's thread pool has taken every request queued before this call: it
 * takes them in order, and the marker queued behind them has run. A lookup taken by a
 * thread can no longer be cancelled. */
static void wait_pool_took_queued(void)
{
    bool done = false;
    uv_work_t marker = {.data = &done};
    cr_assert_eq(uv_queue_work(&loop, &marker, on_marker_work, on_marker_done), 0);
    cr_assert(run_until(&loop, &done, 2000), "the thread pool never ran the marker");
}

/* Freed while its lookup runs in a thread, and right after starting one (uv_cancel may or
 * may not win): the callback must still run, and touch nothing once the last ref goes. */
Test(redis_dns, free_while_resolving)
{
    if (!slow_dns())
        cr_skip_test("needs the slow_dns.c shim (ctest unit/test_redis_conn_slow_dns)");
    struct redis_conn *running = slow_conn("slow.test", 3000);
    wait_pool_took_queued();
    struct redis_conn *fresh = slow_conn("slow.test", 3000);
    redis_conn_free(fresh);
    redis_conn_free(running);
    cr_assert_eq(close_loop(&loop), 0);
}
