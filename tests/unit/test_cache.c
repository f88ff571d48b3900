#include "pdstrace/cache.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/trace_result.h"
#include "redis_server.h"
#include "test_util.h"

TestSuite(cache, .timeout = 30);

static const char secret[] = "0123456789abcdef0123456789abcdef-test-secret";

struct fixture {
    struct redis_server rs;
    uv_loop_t loop;
    struct redis_conn *rc;
    struct cache *cache;
    struct metrics *metrics;
    redisContext *direct; /* a blocking client to look at what Redis holds */
};

static void setup_fixture(struct fixture *f, const char *key_secret)
{
    memset(f, 0, sizeof(*f));
    cr_assert_eq(redis_server_start(&f->rs), 0);
    char url[128];
    struct redis_conn_config rcfg = {.url = redis_server_url(&f->rs, url, sizeof(url))};
    uv_loop_init(&f->loop);
    cr_assert_eq(redis_conn_new(&f->rc, &f->loop, &rcfg), 0);
    for (int i = 0; i < 200 && redis_conn_state(f->rc) != REDIS_CONN_CONNECTED; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    cr_assert_eq(redis_conn_state(f->rc), REDIS_CONN_CONNECTED);
    cr_assert_eq(metrics_new(&f->metrics), 0);
    struct cache_config cc = {"t:", 3600, 60, f->metrics};
    cr_assert_eq(cache_new(&f->cache, f->rc, key_secret, strlen(key_secret), &cc), 0);
    f->direct = redisConnect("127.0.0.1", f->rs.port);
    cr_assert(f->direct != NULL && f->direct->err == 0);
}

static void teardown_fixture(struct fixture *f)
{
    cache_free(f->cache);
    redis_conn_free(f->rc);
    cr_assert_eq(close_loop(&f->loop), 0);
    metrics_free(f->metrics);
    redisFree(f->direct);
    redis_server_destroy(&f->rs);
}

static struct demographics jane(void)
{
    struct demographics d;
    memset(&d, 0, sizeof(d));
    snprintf(d.family, sizeof(d.family), "Smithfield");
    snprintf(d.given[0], sizeof(d.given[0]), "Janetta");
    d.n_given = 1;
    snprintf(d.birth_date, sizeof(d.birth_date), "2010-10-22");
    snprintf(d.postcode, sizeof(d.postcode), "LS1 6AE");
    d.gender = DEMOG_GENDER_FEMALE;
    d.write_back = -1;
    return d;
}

struct got {
    bool done;
    int status;
    struct trace_result r;
};

static void on_get(int status, const struct trace_result *r, void *arg)
{
    struct got *g = arg;
    g->done = true;
    g->status = status;
    if (r != NULL)
        g->r = *r;
}

static struct got get(struct fixture *f, const struct demographics *d)
{
    struct got g = {0};
    cr_assert_eq(cache_get(f->cache, d, on_get, &g), 0);
    cr_assert(run_until(&f->loop, &g.done, 2000));
    return g;
}

static void put_and_settle(struct fixture *f, const struct demographics *d,
                           const struct trace_result *r)
{
    cache_put(f->cache, d, r);
    for (int i = 0; i < 50 && redis_conn_pending(f->rc) > 0; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static struct trace_result matched(void)
{
    struct trace_result r = {.outcome = TRACE_MATCHED, .score = 1.0, .steps = 2};
    memcpy(r.nhs_number, "9000000009", 11);
    return r;
}

Test(cache, put_then_get_is_a_hit_from_the_cache)
{
    struct fixture f;
    setup_fixture(&f, secret);
    struct demographics d = jane();
    struct trace_result r = matched();
    put_and_settle(&f, &d, &r);
    struct got g = get(&f, &d);
    cr_assert_eq(g.status, 0);
    cr_assert_eq(g.r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(g.r.nhs_number, "9000000009");
    cr_assert_eq(g.r.source, TRACE_SOURCE_CACHE);
    cr_assert_eq(g.r.steps, 0);
    /* Case and spacing do not change the key. */
    snprintf(d.family, sizeof(d.family), "SMITHFIELD");
    cr_assert_eq(get(&f, &d).status, 0);
    cr_assert_eq(metrics_value(f.metrics, "pdstrace_cache_lookups_total", "result=\"hit\""), 2);
    cr_assert_eq(metrics_value(f.metrics, "pdstrace_cache_stores_total", "result=\"ok\""), 1);
    teardown_fixture(&f);
}

Test(cache, other_person_is_a_miss)
{
    struct fixture f;
    setup_fixture(&f, secret);
    struct demographics d = jane();
    struct trace_result r = matched();
    put_and_settle(&f, &d, &r);
    snprintf(d.birth_date, sizeof(d.birth_date), "2010-10-23");
    cr_assert_eq(get(&f, &d).status, ERR_NOT_FOUND);
    cr_assert_eq(metrics_value(f.metrics, "pdstrace_cache_lookups_total", "result=\"miss\""), 1);
    teardown_fixture(&f);
}

Test(cache, redis_holds_no_demographics_in_clear_and_ttls_follow_outcome)
{
    struct fixture f;
    setup_fixture(&f, secret);
    struct demographics d = jane();
    struct trace_result r = matched();
    put_and_settle(&f, &d, &r);
    struct demographics other = jane();
    snprintf(other.family, sizeof(other.family), "Nobody");
    struct trace_result none = {.outcome = TRACE_NO_MATCH, .score = -1, .steps = 5};
    put_and_settle(&f, &other, &none);
    redisReply *keys = redisCommand(f.direct, "KEYS *");
    cr_assert_eq(keys->elements, 2);
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        cr_assert_eq(strncmp(k, "t:trace:", 8), 0, "%s", k);
        cr_assert_eq(strlen(k), 8 + 64);
        redisReply *v = redisCommand(f.direct, "GET %s", k);
        for (size_t j = 0; j + 5 < v->len; j++) {
            cr_assert(memcmp(v->str + j, "Smith", 5) != 0);
            cr_assert(memcmp(v->str + j, "2010-", 5) != 0);
            cr_assert(memcmp(v->str + j, "LS1 6", 5) != 0);
            cr_assert(memcmp(v->str + j, "90000", 5) != 0);
        }
        freeReplyObject(v);
        redisReply *ttl = redisCommand(f.direct, "TTL %s", k);
        cr_assert(ttl->integer == 60 || (ttl->integer > 3500 && ttl->integer <= 3600), "%lld",
                  ttl->integer);
        freeReplyObject(ttl);
    }
    freeReplyObject(keys);
    teardown_fixture(&f);
}

Test(cache, tampered_value_is_a_miss)
{
    struct fixture f;
    setup_fixture(&f, secret);
    struct demographics d = jane();
    struct trace_result r = matched();
    put_and_settle(&f, &d, &r);
    redisReply *keys = redisCommand(f.direct, "KEYS *");
    char key[128];
    snprintf(key, sizeof(key), "%s", keys->element[0]->str);
    freeReplyObject(keys);
    redisReply *v = redisCommand(f.direct, "GET %s", key);
    v->str[20] ^= 1;
    freeReplyObject(redisCommand(f.direct, "SET %s %b", key, v->str, v->len));
    freeReplyObject(v);
    cr_assert_neq(get(&f, &d).status, 0);
    teardown_fixture(&f);
}

Test(cache, value_under_another_secret_is_a_miss)
{
    struct fixture f;
    setup_fixture(&f, secret);
    struct demographics d = jane();
    struct trace_result r = matched();
    put_and_settle(&f, &d, &r);
    cache_free(f.cache);
    struct cache_config cc = {"t:", 3600, 60, NULL};
    const char *other = "another-secret-of-at-least-32-bytes-long";
    cr_assert_eq(cache_new(&f.cache, f.rc, other, strlen(other), &cc), 0);
    cr_assert_neq(get(&f, &d).status, 0);
    teardown_fixture(&f);
}

Test(cache, objections_are_never_stored)
{
    struct fixture f;
    setup_fixture(&f, secret);
    struct demographics d = jane();
    struct trace_result r = {.outcome = TRACE_OBJECTION, .score = -1};
    put_and_settle(&f, &d, &r);
    redisReply *n = redisCommand(f.direct, "DBSIZE");
    cr_assert_eq(n->integer, 0);
    freeReplyObject(n);
    teardown_fixture(&f);
}

Test(cache, redis_down_fails_fast_without_callback)
{
    struct fixture f;
    setup_fixture(&f, secret);
    redis_server_stop(&f.rs);
    for (int i = 0; i < 200 && redis_conn_state(f.rc) == REDIS_CONN_CONNECTED; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    struct demographics d = jane();
    struct got g = {0};
    cr_assert_neq(cache_get(f.cache, &d, on_get, &g), 0);
    struct trace_result r = matched();
    cache_put(f.cache, &d, &r);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    cr_assert(!g.done);
    teardown_fixture(&f);
}

/* Neither path leaves the sealed plaintext (which holds the NHS number) in freed memory:
 * free() is interposed for this binary and every freed block is searched for it while the
 * test runs. ASan brings its own free, so the check runs in the normal build only. */
#if !defined(__SANITIZE_ADDRESS__)
#include <malloc.h>

void __libc_free(void *p);
void free(void *p);

static const char *freed_needle;
static volatile int freed_hits;

void free(void *p)
{
    if (p != NULL && freed_needle != NULL) {
        size_t n = malloc_usable_size(p), m = strlen(freed_needle);
        for (size_t i = 0; i + m <= n && !freed_hits; i++)
            freed_hits = memcmp((const char *)p + i, freed_needle, m) == 0;
    }
    __libc_free(p);
}

Test(cache, no_plaintext_is_left_in_freed_memory)
{
    struct fixture f;
    setup_fixture(&f, secret);
    struct demographics d = jane();
    struct trace_result r = matched();
    freed_needle = "|9000000009|";
    put_and_settle(&f, &d, &r);
    cr_assert_eq(freed_hits, 0, "cache_put freed its plaintext without wiping it");
    struct got g = get(&f, &d);
    cr_assert_eq(g.status, 0);
    cr_assert_eq(freed_hits, 0, "cache_get freed its plaintext without wiping it");
    freed_needle = NULL;
    teardown_fixture(&f);
}
#else
Test(cache, no_plaintext_is_left_in_freed_memory)
{
    cr_skip_test("ASan interposes free itself; the normal build runs this check");
}
#endif
