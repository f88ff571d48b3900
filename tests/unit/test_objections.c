#include "pdstrace/objections.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"
#include "redis_server.h"
#include "test_util.h"

/* The objection registry against a real redis-server: two registries on two connections
 * stand for two instances of the service. */

TestSuite(objections, .timeout = 60);

static const char secret[] = "0123456789abcdef0123456789abcdef-test-secret";

/* One instance: its connection, metrics and registry. */
struct inst {
    struct redis_conn *rc;
    struct metrics *metrics;
    struct objections *o;
};

struct fixture {
    struct redis_server rs;
    uv_loop_t loop;
    struct inst a, b;
    redisContext *direct; /* a blocking client to look at what Redis holds */
};

static bool connected(void *arg)
{
    return redis_conn_state(arg) == REDIS_CONN_CONNECTED;
}

static bool current(void *arg)
{
    return objections_current(arg);
}

static void inst_start_on(struct fixture *f, struct inst *in, unsigned staleness_ms,
                          unsigned command_timeout_ms, const char *key_secret, bool wait)
{
    char url[128];
    struct redis_conn_config rcfg = {.url = redis_server_url(&f->rs, url, sizeof(url)),
                                     .command_timeout_ms = command_timeout_ms,
                                     .connect_timeout_ms = command_timeout_ms,
                                     .ping_interval_ms = 100};
    cr_assert_eq(redis_conn_new(&in->rc, &f->loop, &rcfg), 0);
    cr_assert(!wait || run_loop_until(&f->loop, connected, in->rc, 3000));
    cr_assert_eq(metrics_new(&in->metrics), 0);
    struct objections_config oc = {"t:", staleness_ms, in->metrics};
    cr_assert_eq(objections_new(&in->o, &f->loop, in->rc, key_secret, strlen(key_secret), &oc), 0);
}

static void inst_start(struct fixture *f, struct inst *in, unsigned staleness_ms,
                       unsigned command_timeout_ms, const char *key_secret)
{
    inst_start_on(f, in, staleness_ms, command_timeout_ms, key_secret, true);
}

static void inst_stop(struct inst *in)
{
    objections_free(in->o);
    redis_conn_free(in->rc);
    in->o = NULL;
    in->rc = NULL;
}

static void setup(struct fixture *f, unsigned staleness_ms)
{
    memset(f, 0, sizeof(*f));
    cr_assert_eq(redis_server_start(&f->rs), 0);
    uv_loop_init(&f->loop);
    inst_start(f, &f->a, staleness_ms, 1000, secret);
    cr_assert(run_loop_until(&f->loop, current, f->a.o, 3000), "never loaded");
    f->direct = redisConnect("127.0.0.1", f->rs.port);
    cr_assert(f->direct != NULL && f->direct->err == 0);
}

static void teardown(struct fixture *f)
{
    inst_stop(&f->a);
    inst_stop(&f->b);
    cr_assert_eq(close_loop(&f->loop), 0);
    metrics_free(f->a.metrics);
    metrics_free(f->b.metrics);
    redisFree(f->direct);
    redis_server_destroy(&f->rs);
}

static struct objection make(const char *case_id, const char *nhs, const char *by, const char *note)
{
    struct objection ob;
    memset(&ob, 0, sizeof(ob));
    snprintf(ob.case_id, sizeof(ob.case_id), "%s", case_id);
    snprintf(ob.nhs_number, sizeof(ob.nhs_number), "%s", nhs);
    snprintf(ob.recorded_by, sizeof(ob.recorded_by), "%s", by);
    snprintf(ob.note, sizeof(ob.note), "%s", note);
    return ob;
}

struct result {
    bool done;
    int status;
    bool created;
    int check_in_cb; /* what the registry answered for the case while the callback ran */
    struct objection obj;
    struct objections *o;
};

static void on_put(int status, bool created, const struct objection *stored, void *arg)
{
    struct result *r = arg;
    r->done = true;
    r->status = status;
    r->created = created;
    if (stored != NULL) {
        r->obj = *stored;
        r->check_in_cb = objections_check(r->o, stored->case_id, NULL);
    }
}

static void on_get(int status, const struct objection *obj, void *arg)
{
    struct result *r = arg;
    r->done = true;
    r->status = status;
    if (obj != NULL)
        r->obj = *obj;
}

static void on_delete(int status, void *arg)
{
    struct result *r = arg;
    r->done = true;
    r->status = status;
}

static struct result put(struct fixture *f, struct objections *o, const struct objection *ob)
{
    struct result r = {.o = o};
    cr_assert_eq(objections_put(o, ob, on_put, &r), 0);
    cr_assert(!r.done, "called back from inside the call");
    cr_assert(run_until(&f->loop, &r.done, 3000));
    return r;
}

static struct result get(struct fixture *f, struct objections *o, const char *case_id)
{
    struct result r = {.o = o};
    cr_assert_eq(objections_get(o, case_id, on_get, &r), 0);
    cr_assert(run_until(&f->loop, &r.done, 3000));
    return r;
}

static int del(struct fixture *f, struct objections *o, const char *case_id)
{
    struct result r = {.o = o};
    cr_assert_eq(objections_delete(o, case_id, on_delete, &r), 0);
    cr_assert(!r.done, "called back from inside the call");
    cr_assert(run_until(&f->loop, &r.done, 3000));
    return r.status;
}

Test(objections, put_get_delete_round_trip)
{
    struct fixture f;
    setup(&f, 2000);
    struct objection ob = make("LAS-000123", "9000000009", "J. Clerk", "by letter");
    struct result r = put(&f, f.a.o, &ob);
    cr_assert_eq(r.status, 0);
    cr_assert(r.created);
    cr_assert_eq(strlen(r.obj.recorded_at), 20, "%s", r.obj.recorded_at);
    cr_assert_eq(r.obj.recorded_at[10], 'T');
    cr_assert_eq(r.obj.recorded_at[19], 'Z');
    struct result g = get(&f, f.a.o, "LAS-000123");
    cr_assert_eq(g.status, 0);
    cr_assert_str_eq(g.obj.case_id, "LAS-000123");
    cr_assert_str_eq(g.obj.nhs_number, "9000000009");
    cr_assert_str_eq(g.obj.recorded_by, "J. Clerk");
    cr_assert_str_eq(g.obj.note, "by letter");
    cr_assert_str_eq(g.obj.recorded_at, r.obj.recorded_at);
    cr_assert_eq(del(&f, f.a.o, "LAS-000123"), 0);
    cr_assert_eq(get(&f, f.a.o, "LAS-000123").status, ERR_NOT_FOUND);
    cr_assert_eq(del(&f, f.a.o, "LAS-000123"), ERR_NOT_FOUND);
    cr_assert_eq(get(&f, f.a.o, "never-recorded").status, ERR_NOT_FOUND);
    teardown(&f);
}

Test(objections, second_put_updates_and_replaces_the_number)
{
    struct fixture f;
    setup(&f, 2000);
    struct objection ob = make("C1", "9000000009", "clerk", "");
    cr_assert(put(&f, f.a.o, &ob).created);
    ob = make("C1", "9000000017", "other clerk", "changed");
    struct result r = put(&f, f.a.o, &ob);
    cr_assert_eq(r.status, 0);
    cr_assert(!r.created);
    cr_assert_eq(objections_count(f.a.o), 1);
    cr_assert_eq(objections_check(f.a.o, NULL, "9000000009"), 0, "old number still held");
    cr_assert_eq(objections_check(f.a.o, NULL, "9000000017"), OBJECTIONS_BY_NUMBER);
    struct result g = get(&f, f.a.o, "C1");
    cr_assert_str_eq(g.obj.recorded_by, "other clerk");
    cr_assert_str_eq(g.obj.nhs_number, "9000000017");
    teardown(&f);
}

Test(objections, check_by_case_and_by_number)
{
    struct fixture f;
    setup(&f, 2000);
    struct objection ob = make("CASE-1", "9000000009", "clerk", "");
    struct result r = put(&f, f.a.o, &ob);
    /* In this instance's copy before the callback runs. */
    cr_assert_eq(r.check_in_cb, OBJECTIONS_BY_CASE);
    cr_assert_eq(objections_check(f.a.o, "CASE-1", NULL), OBJECTIONS_BY_CASE);
    cr_assert_eq(objections_check(f.a.o, "", "9000000009"), OBJECTIONS_BY_NUMBER);
    cr_assert_eq(objections_check(f.a.o, NULL, "900 000 0009"), OBJECTIONS_BY_NUMBER);
    cr_assert_eq(objections_check(f.a.o, "CASE-1", "9000000009"),
                 OBJECTIONS_BY_CASE | OBJECTIONS_BY_NUMBER);
    cr_assert_eq(objections_check(f.a.o, "CASE-2", "9000000017"), 0);
    cr_assert_eq(objections_check(f.a.o, NULL, NULL), 0);
    /* A case id is not a number and a number is not a case id. */
    cr_assert_eq(objections_check(f.a.o, "9000000009", NULL), 0);
    /* Two cases naming one number: the number stays objected to until both are gone. */
    ob = make("CASE-2", "9000000009", "clerk", "");
    put(&f, f.a.o, &ob);
    ob = make("CASE-3", "", "clerk", "no number");
    put(&f, f.a.o, &ob);
    cr_assert_eq(objections_count(f.a.o), 3);
    cr_assert_eq(del(&f, f.a.o, "CASE-1"), 0);
    cr_assert_eq(objections_check(f.a.o, "CASE-1", "9000000009"), OBJECTIONS_BY_NUMBER);
    cr_assert_eq(del(&f, f.a.o, "CASE-2"), 0);
    cr_assert_eq(objections_check(f.a.o, "CASE-2", "9000000009"), 0);
    cr_assert_eq(objections_check(f.a.o, "CASE-3", NULL), OBJECTIONS_BY_CASE);
    teardown(&f);
}

struct seen {
    struct objections *o;
    const char *case_id;
    int want;
};

static bool sees(void *arg)
{
    const struct seen *s = arg;
    return objections_check(s->o, s->case_id, NULL) == s->want;
}

Test(objections, another_instance_sees_a_change_within_the_bound)
{
    struct fixture f;
    setup(&f, 1000);
    inst_start(&f, &f.b, 1000, 1000, secret);
    cr_assert(run_loop_until(&f.loop, current, f.b.o, 3000));
    struct objection ob = make("SHARED-1", "9000000025", "clerk", "");
    put(&f, f.a.o, &ob);
    uint64_t t0 = uv_hrtime();
    struct seen s = {f.b.o, "SHARED-1", OBJECTIONS_BY_CASE};
    cr_assert(run_loop_until(&f.loop, sees, &s, 1000), "B did not see the put within 1000 ms");
    cr_assert_eq(objections_check(f.b.o, NULL, "9000000025"), OBJECTIONS_BY_NUMBER);
    cr_assert_leq((uv_hrtime() - t0) / 1000000, 1000);
    /* B's own GET reads the record A sealed. */
    cr_assert_str_eq(get(&f, f.b.o, "SHARED-1").obj.nhs_number, "9000000025");
    cr_assert_eq(del(&f, f.b.o, "SHARED-1"), 0);
    s = (struct seen){f.a.o, "SHARED-1", 0};
    cr_assert(run_loop_until(&f.loop, sees, &s, 1000), "A did not see the delete");
    cr_assert_eq(objections_check(f.a.o, NULL, "9000000025"), 0);
    teardown(&f);
}

static bool unavailable(void *arg)
{
    return objections_check(arg, "X", NULL) == ERR_OBJECTIONS_UNAVAILABLE;
}

Test(objections, fails_closed_while_redis_is_frozen_and_recovers)
{
    struct fixture f;
    memset(&f, 0, sizeof(f));
    cr_assert_eq(redis_server_start(&f.rs), 0);
    uv_loop_init(&f.loop);
    inst_start(&f, &f.a, 600, 200, secret);
    cr_assert(run_loop_until(&f.loop, current, f.a.o, 3000));
    struct objection ob = make("FROZEN-1", "9000000009", "clerk", "");
    put(&f, f.a.o, &ob);
    cr_assert_eq(redis_server_freeze(&f.rs), 0);
    uint64_t t0 = uv_hrtime();
    cr_assert(run_loop_until(&f.loop, unavailable, f.a.o, 3000), "never failed closed");
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    /* Confirmed at most one poll interval (150 ms) before the freeze, so closed by 600 ms
     * after it, and not before 600 - 150. */
    cr_assert(ms >= 400 && ms <= 700, "failed closed after %llu ms", (unsigned long long)ms);
    cr_assert(!objections_current(f.a.o));
    cr_assert_eq(objections_check(f.a.o, NULL, "9000000009"), ERR_OBJECTIONS_UNAVAILABLE);
    cr_assert_eq(redis_server_thaw(&f.rs), 0);
    cr_assert(run_loop_until(&f.loop, current, f.a.o, 5000), "did not recover");
    cr_assert_eq(objections_check(f.a.o, "FROZEN-1", NULL), OBJECTIONS_BY_CASE);
    teardown(&f);
}

Test(objections, fails_closed_when_redis_stops_and_never_loaded_is_unavailable)
{
    struct fixture f;
    setup(&f, 400);
    cr_assert_eq(redis_server_stop(&f.rs), 0);
    cr_assert(run_loop_until(&f.loop, unavailable, f.a.o, 2000));
    /* A registry that never loaded fails closed from the start. */
    inst_start_on(&f, &f.b, 400, 200, secret, false);
    cr_assert_eq(objections_check(f.b.o, NULL, NULL), ERR_OBJECTIONS_UNAVAILABLE);
    cr_assert(!objections_current(f.b.o));
    struct result r = {0};
    struct objection ob = make("DOWN-1", "", "clerk", "");
    cr_assert_eq(objections_put(f.a.o, &ob, on_put, &r), ERR_UNAVAILABLE);
    cr_assert_eq(redis_server_restart(&f.rs), 0);
    cr_assert(run_loop_until(&f.loop, current, f.a.o, 5000));
    cr_assert(run_loop_until(&f.loop, current, f.b.o, 5000));
    cr_assert(!r.done, "a put refused at once called back");
    teardown(&f);
}

static double metric(const struct inst *in, const char *name, const char *labels)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    cr_assert_eq(metrics_render(in->metrics, &b), 0); /* runs the collector */
    buf_free(&b);
    return metrics_value(in->metrics, name, labels);
}

static void put_many(struct fixture *f, struct objections *o, int from, int n)
{
    struct result r[8];
    cr_assert_leq(n, 8);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "TRIM-%d", from + i);
        struct objection ob = make(id, "", "clerk", "");
        r[i] = (struct result){.o = o};
        cr_assert_eq(objections_put(o, &ob, on_put, &r[i]), 0);
    }
    cr_assert(run_until(&f->loop, &r[n - 1].done, 3000));
}

#define POLL_OK "kind=\"poll\",result=\"ok\""

struct poll_seen {
    struct inst *in;
    double before;
};

static bool polled(void *arg)
{
    const struct poll_seen *p = arg;
    return metrics_value(p->in->metrics, "pdstrace_objections_syncs_total", POLL_OK) > p->before;
}

Test(objections, reloads_when_the_change_stream_was_trimmed)
{
    struct fixture f;
    setup(&f, 2000);
    /* B polls every 2 s; the puts and the trim below follow one of its polls at once, so
     * they land between two. */
    inst_start(&f, &f.b, 8000, 1000, secret);
    cr_assert(run_loop_until(&f.loop, current, f.b.o, 3000));
    cr_assert_eq(metric(&f.b, "pdstrace_objections_syncs_total", "kind=\"load\",result=\"ok\""), 1);
    struct poll_seen ps = {&f.b, metric(&f.b, "pdstrace_objections_syncs_total", POLL_OK)};
    cr_assert(run_loop_until(&f.loop, polled, &ps, 5000));
    put_many(&f, f.a.o, 0, 3);
    freeReplyObject(redisCommand(f.direct, "XTRIM t:objections:log MAXLEN 1"));
    struct seen s = {f.b.o, "TRIM-2", OBJECTIONS_BY_CASE};
    cr_assert(run_loop_until(&f.loop, sees, &s, 8000));
    cr_assert_eq(objections_count(f.b.o), 3);
    cr_assert_eq(metric(&f.b, "pdstrace_objections_syncs_total", "kind=\"load\",result=\"ok\""), 2,
                 "B did not reload");
    /* After the reload B follows the stream again, without another load. */
    put_many(&f, f.a.o, 3, 1);
    s.case_id = "TRIM-3";
    cr_assert(run_loop_until(&f.loop, sees, &s, 8000));
    cr_assert_eq(metric(&f.b, "pdstrace_objections_syncs_total", "kind=\"load\",result=\"ok\""), 2);
    cr_assert_eq(metric(&f.b, "pdstrace_objections", NULL), 4);
    cr_assert_eq(metric(&f.b, "pdstrace_objections_current", NULL), 1);
    teardown(&f);
}

static bool empty(void *arg)
{
    return objections_count(arg) == 0 && objections_current(arg);
}

Test(objections, a_flushed_redis_empties_the_copy)
{
    struct fixture f;
    setup(&f, 1000);
    struct objection ob = make("GONE-1", "9000000009", "clerk", "");
    put(&f, f.a.o, &ob);
    freeReplyObject(redisCommand(f.direct, "FLUSHALL"));
    cr_assert(run_loop_until(&f.loop, empty, f.a.o, 2000));
    cr_assert_eq(objections_check(f.a.o, "GONE-1", "9000000009"), 0);
    teardown(&f);
}

/* Whether needle occurs in p[0..n). */
static bool contains(const char *p, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(p + i, needle, m) == 0)
            return true;
    return false;
}

static void assert_clean(const char *p, size_t n, const char *what)
{
    const char *secrets[] = {"CLEAR-CASE-77", "9000000009", "900 000 0009", "Alice Example",
                             "moved to Leeds"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        cr_assert(!contains(p, n, secrets[i]), "%s holds %s in clear", what, secrets[i]);
}

/* Every string in a reply, however nested. */
static void assert_reply_clean(const redisReply *r, const char *key)
{
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        assert_clean(r->str, r->len, key);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        assert_reply_clean(r->element[i], key);
}

static void dump_key(redisContext *c, const char *key)
{
    redisReply *t = redisCommand(c, "TYPE %s", key);
    const char *fmt = strcmp(t->str, "hash") == 0     ? "HGETALL %s"
                      : strcmp(t->str, "stream") == 0 ? "XRANGE %s - +"
                                                      : "GET %s";
    redisReply *v = redisCommand(c, fmt, key);
    cr_assert(v->type != REDIS_REPLY_ERROR, "%s: %s", key, v->str);
    assert_reply_clean(v, key);
    freeReplyObject(v);
    freeReplyObject(t);
}

Test(objections, redis_holds_no_case_id_number_or_text_in_clear)
{
    struct fixture f;
    setup(&f, 2000);
    struct objection ob = make("CLEAR-CASE-77", "9000000009", "Alice Example", "moved to Leeds");
    put(&f, f.a.o, &ob);
    ob = make("CLEAR-CASE-78", "9000000009", "Alice Example", "");
    put(&f, f.a.o, &ob);
    cr_assert_eq(del(&f, f.a.o, "CLEAR-CASE-78"), 0);
    redisReply *keys = redisCommand(f.direct, "KEYS *");
    cr_assert_eq(keys->elements, 4, "hash, record, version and stream");
    for (size_t i = 0; i < keys->elements; i++) {
        assert_clean(keys->element[i]->str, keys->element[i]->len, "a key name");
        dump_key(f.direct, keys->element[i]->str);
    }
    freeReplyObject(keys);
    teardown(&f);
}

Test(objections, another_secret_or_a_tampered_record_reads_nothing)
{
    struct fixture f;
    setup(&f, 2000);
    struct objection ob = make("SECRET-1", "9000000009", "clerk", "");
    put(&f, f.a.o, &ob);
    inst_start(&f, &f.b, 2000, 1000, "another-secret-of-at-least-32-bytes-long");
    cr_assert(run_loop_until(&f.loop, current, f.b.o, 3000));
    cr_assert_eq(objections_check(f.b.o, "SECRET-1", "9000000009"), 0);
    /* Its HMAC of the case id names another key. */
    cr_assert_eq(get(&f, f.b.o, "SECRET-1").status, ERR_NOT_FOUND);
    /* A record that does not open is not answered. */
    redisReply *keys = redisCommand(f.direct, "KEYS t:objection:*");
    cr_assert_eq(keys->elements, 1);
    redisReply *v = redisCommand(f.direct, "GET %s", keys->element[0]->str);
    v->str[v->len - 1] ^= 1;
    freeReplyObject(redisCommand(f.direct, "SET %s %b", keys->element[0]->str, v->str, v->len));
    freeReplyObject(v);
    freeReplyObject(keys);
    cr_assert_eq(get(&f, f.a.o, "SECRET-1").status, ERR_UNAVAILABLE);
    teardown(&f);
}

Test(objections, free_cancels_what_is_in_flight_inside_the_call)
{
    struct fixture f;
    setup(&f, 2000);
    struct objection ob = make("CANCEL-1", "", "clerk", "");
    struct result p = {0}, g = {0}, d = {0};
    cr_assert_eq(objections_put(f.a.o, &ob, on_put, &p), 0);
    cr_assert_eq(objections_get(f.a.o, "CANCEL-1", on_get, &g), 0);
    cr_assert_eq(objections_delete(f.a.o, "CANCEL-1", on_delete, &d), 0);
    objections_free(f.a.o);
    f.a.o = NULL;
    cr_assert(p.done && g.done && d.done);
    cr_assert_eq(p.status, UV_ECANCELED);
    cr_assert_eq(g.status, UV_ECANCELED);
    cr_assert_eq(d.status, UV_ECANCELED);
    /* Redis still answers the commands; their replies must find nothing to call. */
    for (int i = 0; i < 100 && redis_conn_pending(f.a.rc) > 0; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    cr_assert_eq(redis_conn_pending(f.a.rc), 0);
    teardown(&f);
}
