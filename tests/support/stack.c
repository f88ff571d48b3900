#include "stack.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_util.h"
#include "test_util.h"
#include "pdstrace/crypto.h"

#include <jansson.h>

static void digest(const char *key, char hex[65])
{
    unsigned char d[32];
    crypto_sha256(key, strlen(key), d);
    crypto_hex(d, sizeof(d), hex);
}

static int write_keys(struct stack *s)
{
    char t[65], a[65], all[65];
    digest(STACK_KEY_TRACE, t);
    digest(STACK_KEY_ADMIN, a);
    digest(STACK_KEY_ALL, all);
    snprintf(s->keys_path, sizeof(s->keys_path), "%s/keys.json", s->dir);
    FILE *f = fopen(s->keys_path, "w");
    if (f == NULL)
        return -1;
    fprintf(f,
            "[{\"name\":\"case-system\",\"key_sha256\":\"%s\",\"roles\":[\"trace\"]},\n"
            " {\"name\":\"ops\",\"key_sha256\":\"%s\",\"roles\":[\"admin\"]},\n"
            " {\"name\":\"all\",\"key_sha256\":\"%s\",\"roles\":[\"trace\",\"bulk\","
            "\"objections\",\"admin\"]}]\n",
            t, a, all);
    return fclose(f);
}

static int write_secret(struct stack *s)
{
    snprintf(s->secret_path, sizeof(s->secret_path), "%s/secret", s->dir);
    FILE *f = fopen(s->secret_path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%s\n", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    return fclose(f);
}

/* The service's settings: Redis, keys and secret, then the last extra settings a start was
 * given (the mock PDS's among them), then more (NULL-terminated or NULL). Returns env. */
static const char **service_env(struct stack *s, const char *const *more, const char *env[32])
{
    static char redis_env[160], keys_env[200], secret_env[200];
    char url[128];
    snprintf(redis_env, sizeof(redis_env), "PDS_TRACE_REDIS_URL=%s",
             redis_server_url(&s->redis, url, sizeof(url)));
    snprintf(keys_env, sizeof(keys_env), "PDS_TRACE_API_KEYS_FILE=%s", s->keys_path);
    snprintf(secret_env, sizeof(secret_env), "PDS_TRACE_SECRET_FILE=%s", s->secret_path);
    const char *base[] = {"PDS_TRACE_LISTEN=127.0.0.1:0", redis_env, keys_env, secret_env,
                          "PDS_TRACE_LOG_LEVEL=debug"};
    size_t n = 0;
    for (; n < sizeof(base) / sizeof(base[0]); n++)
        env[n] = base[n];
    for (size_t i = 0; i < s->n_last_env && n < 31; i++)
        env[n++] = s->last_env[i];
    for (size_t i = 0; more != NULL && more[i] != NULL && n < 31; i++)
        env[n++] = more[i];
    env[n] = NULL;
    return env;
}

int stack_start_service(struct stack *s, const char *const extra_env[])
{
    /* A restart without settings reuses the last ones (tests restart the same service). */
    if (extra_env != NULL)
        s->n_last_env = 0;
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL && i < 24; i++) {
        snprintf(s->last_env[i], sizeof(s->last_env[i]), "%s", extra_env[i]);
        s->n_last_env = i + 1;
    }
    const char *env[32];
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "serve", NULL};
    return proc_start(&s->svc, argv, service_env(s, NULL, env));
}

int stack_spawn_bulk(struct stack *s, struct proc *p, const char *const args[],
                     const char *const extra_env[])
{
    const char *env[32], *argv[24] = {PDS_BINARY_DIR "/pds-trace", "bulk"};
    size_t n = 2;
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return proc_spawn(p, argv, service_env(s, extra_env, env));
}

/* Waits, as an orchestrator would, until /readyz says 200 (Redis connected, PDS token
 * held), so that no test races the service's own start-up. */
static int wait_ready(const struct stack *s)
{
    for (int i = 0; i < 500; i++) {
        struct http_reply r;
        int ok = http_do(s->svc.port, "GET", "/readyz", NULL, NULL, &r) == 0 && r.status == 200;
        http_reply_free(&r);
        if (ok)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static int gen_keys(const struct stack *s)
{
    struct proc p;
    const char *argv[] = {PDS_SOURCE_DIR "/scripts/gen-jwt-key", s->dir, "2048", NULL};
    if (proc_spawn(&p, argv, NULL) != 0)
        return -1;
    int rc = proc_wait(&p, 30000);
    unlink(p.log_path);
    return rc;
}

static int start_pds(struct stack *s, const char *const pds_args[], int port)
{
    static char pub[160], port_arg[16];
    snprintf(pub, sizeof(pub), "%s/jwt-public.pem", s->dir);
    snprintf(port_arg, sizeof(port_arg), "%d", port);
    const char *argv[40] = {PDS_BINARY_DIR "/mock-pds",
                            "--port",
                            port_arg,
                            "--generate",
                            "2000",
                            "--seed",
                            "7",
                            "--jwt-public-key",
                            pub,
                            "--client-id",
                            STACK_PDS_CLIENT_ID};
    size_t n = 11;
    for (size_t i = 0; pds_args != NULL && pds_args[i] != NULL && n < 39; i++)
        argv[n++] = pds_args[i];
    argv[n] = NULL;
    return proc_start(&s->pds, argv, NULL);
}

static const char *const *saved_pds_args;

int stack_restart_pds(struct stack *s)
{
    return start_pds(s, saved_pds_args, s->pds.port);
}

static int start_pds_stack(struct stack *s, const char *const pds_args[], const char *const env[],
                           int aof)
{
    static char base[160], token[160], key[160];
    memset(s, 0, sizeof(*s));
    s->redis.aof = aof;
    snprintf(s->dir, sizeof(s->dir), "/tmp/pdsstackXXXXXX");
    if (mkdtemp(s->dir) == NULL || write_keys(s) != 0 || write_secret(s) != 0 || gen_keys(s) != 0)
        return -1;
    saved_pds_args = pds_args;
    if (start_pds(s, pds_args, 0) != 0 || redis_server_start(&s->redis) != 0)
        return -1;
    snprintf(base, sizeof(base), "PDS_TRACE_PDS_BASE_URL=http://127.0.0.1:%d" STACK_PDS_BASE,
             s->pds.port);
    snprintf(token, sizeof(token), "PDS_TRACE_PDS_TOKEN_URL=http://127.0.0.1:%d/oauth2/token",
             s->pds.port);
    snprintf(key, sizeof(key), "PDS_TRACE_PDS_KEY_FILE=%s/jwt-private.pem", s->dir);
    static const char *all[32];
    const char *fixed[] = {base,
                           token,
                           key,
                           "PDS_TRACE_PDS_AUTH=signed-jwt",
                           "PDS_TRACE_PDS_CLIENT_ID=" STACK_PDS_CLIENT_ID,
                           "PDS_TRACE_PDS_KID=test-1",
                           "PDS_TRACE_PDS_RATE=200"};
    size_t n = sizeof(fixed) / sizeof(fixed[0]);
    memcpy(all, fixed, sizeof(fixed));
    for (size_t i = 0; env != NULL && env[i] != NULL && n < 31; i++)
        all[n++] = env[i];
    all[n] = NULL;
    if (stack_start_service(s, all) != 0)
        return -1;
    return wait_ready(s);
}

int stack_start_pds(struct stack *s, const char *const pds_args[], const char *const env[])
{
    return start_pds_stack(s, pds_args, env, 0);
}

int stack_start_pds_aof(struct stack *s, const char *const pds_args[], const char *const env[])
{
    return start_pds_stack(s, pds_args, env, 1);
}

json_t *stack_pds_admin(struct stack *s, const char *method, const char *path, const char *body)
{
    struct http_reply r;
    const char *h[] = {"Content-Type: application/json", NULL};
    if (http_do(s->pds.port, method, path, h, body, &r) != 0) {
        http_reply_free(&r);
        return NULL;
    }
    json_t *j = json_loads(r.body, 0, NULL);
    http_reply_free(&r);
    return j;
}

int stack_stop_service(struct stack *s)
{
    return proc_stop(&s->svc, SIGTERM, 15000);
}

int stack_start_peer(struct stack *s, struct proc *peer, const char *const extra_env[])
{
    /* stack_start_service starts into s->svc: the first instance is put back after. */
    struct proc first = s->svc;
    int r = stack_start_service(s, extra_env);
    *peer = s->svc;
    s->svc = first;
    return r;
}

int stack_start(struct stack *s, const char *const extra_env[])
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/pdsstackXXXXXX");
    if (mkdtemp(s->dir) == NULL || write_keys(s) != 0 || write_secret(s) != 0)
        return -1;
    if (redis_server_start(&s->redis) != 0 || stack_start_service(s, extra_env) != 0)
        return -1;
    return wait_ready(s);
}

int stack_start_aof(struct stack *s, const char *const extra_env[])
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/pdsstackXXXXXX");
    if (mkdtemp(s->dir) == NULL || write_keys(s) != 0 || write_secret(s) != 0)
        return -1;
    if (redis_server_start_aof(&s->redis) != 0 || stack_start_service(s, extra_env) != 0)
        return -1;
    return wait_ready(s);
}

void stack_stop(struct stack *s)
{
    if (s->svc.pid > 0)
        stack_stop_service(s);
    if (s->pds.pid > 0)
        proc_stop(&s->pds, SIGTERM, 5000);
    redis_server_destroy(&s->redis);
    unlink(s->keys_path);
    unlink(s->secret_path);
    char path[128];
    snprintf(path, sizeof(path), "%s/jwt-private.pem", s->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/jwt-public.pem", s->dir);
    unlink(path);
    rmdir(s->dir);
}

const char *stack_auth(const char *key)
{
    static char h[128];
    snprintf(h, sizeof(h), "Authorization: Bearer %s", key);
    return h;
}

int stack_start_case(struct proc *p, const char *const args[])
{
    const char *argv[40] = {PDS_BINARY_DIR "/mock-case-system", "--port", "0"};
    size_t n = 3;
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return proc_start(p, argv, NULL);
}

json_t *stack_case_admin(int port, const char *method, const char *path, const char *body)
{
    struct http_reply r;
    const char *h[] = {"Content-Type: application/json", NULL};
    if (http_do(port, method, path, h, body, &r) != 0) {
        http_reply_free(&r);
        return NULL;
    }
    json_t *j = json_loads(r.body, 0, NULL);
    http_reply_free(&r);
    return j;
}

const char *stack_case_body(char *out, size_t size, const char *nhs, const char *trace_id)
{
    snprintf(out, size,
             "{\"nhs_number\":\"%s\",\"nhs_number_status\":\"01\",\"trace_id\":\"%s\","
             "\"traced_at\":\"2026-12-02T10:15:00Z\",\"score\":0.97}",
             nhs, trace_id);
    return out;
}

long stack_case_put(int port, const char *case_id, const char *key, const char *auth,
                    const char *body, struct http_reply *r)
{
    char path[256], key_line[256], auth_line[256];
    const char *h[4] = {"Content-Type: application/json"};
    size_t n = 1;
    snprintf(path, sizeof(path), "/clients/%s/nhs-number", case_id);
    if (key != NULL) {
        snprintf(key_line, sizeof(key_line), "Idempotency-Key: %s", key);
        h[n++] = key_line;
    }
    if (auth != NULL) {
        snprintf(auth_line, sizeof(auth_line), "Authorization: %s", auth);
        h[n++] = auth_line;
    }
    h[n] = NULL;
    http_do(port, "PUT", path, h, body, r);
    return r->status;
}

int stack_case_put_nowait(int port, const char *case_id, const char *key, const char *body)
{
    char req[2048];
    int fd = tcp_connect(port, 10000);
    int n = snprintf(req, sizeof(req),
                     "PUT /clients/%s/nhs-number HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nIdempotency-Key: %s\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     case_id, key, strlen(body), body);
    if (fd >= 0 && (n < 0 || (size_t)n >= sizeof(req) || tcp_send(fd, req, (size_t)n) != 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

json_t *stack_case_client(int port, const char *case_id)
{
    char path[128];
    struct http_reply r;
    snprintf(path, sizeof(path), "/clients/%s", case_id);
    http_do(port, "GET", path, NULL, NULL, &r);
    json_t *j = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
    http_reply_free(&r);
    return j;
}

long long stack_case_stat(int port, const char *name)
{
    json_t *j = stack_case_admin(port, "GET", "/_admin/stats", NULL);
    json_t *v = json_object_get(j, name);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(j);
    return n;
}

int stack_case_faults(int port, const char *body)
{
    struct http_reply r;
    const char *h[] = {"Content-Type: application/json", NULL};
    http_do(port, "PUT", "/_admin/faults", h, body, &r);
    http_reply_free(&r);
    return r.status == 200 ? 0 : -1;
}

json_t *stack_trace(int port, const char *body, long *status)
{
    struct http_reply r;
    const char *h[] = {stack_auth(STACK_KEY_TRACE), "Content-Type: application/json", NULL};
    http_do(port, "POST", "/v1/trace", h, body, &r);
    if (status != NULL)
        *status = r.status;
    json_t *j = r.body != NULL ? json_loads(r.body, 0, NULL) : NULL;
    http_reply_free(&r);
    return j;
}

/* Whether a parsed log line has member key equal to want. */
static bool member_is(const json_t *j, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(j, key));
    return v != NULL && strcmp(v, want) == 0;
}

json_t *stack_audit_line(const struct proc *p, const char *event, const char *case_id)
{
    char *log = proc_log(p);
    json_t *found = NULL;
    for (char *line = log; line != NULL && *line != '\0' && found == NULL;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        if (j != NULL && member_is(j, "msg", "audit") && member_is(j, "event", event) &&
            member_is(j, "case_id", case_id))
            found = json_incref(j);
        json_decref(j);
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(log);
    return found;
}

int stack_case_system_start(struct stack_case_system *c, const char *token)
{
    static unsigned seq;
    const char *args[] = {"--token", token, NULL};
    memset(c, 0, sizeof(*c));
    snprintf(c->token_path, sizeof(c->token_path), "/tmp/pds-case-token-%d-%u", (int)getpid(),
             seq++);
    FILE *f = fopen(c->token_path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%s\n", token);
    if (fclose(f) != 0 || stack_start_case(&c->proc, args) != 0)
        return -1;
    snprintf(c->base_env, sizeof(c->base_env), "PDS_TRACE_CASE_BASE_URL=http://127.0.0.1:%d",
             c->proc.port);
    snprintf(c->token_env, sizeof(c->token_env), "PDS_TRACE_CASE_TOKEN_FILE=%s", c->token_path);
    return 0;
}

void stack_case_system_stop(struct stack_case_system *c)
{
    if (c->proc.pid > 0)
        proc_stop(&c->proc, SIGTERM, 5000);
    if (c->token_path[0] != '\0')
        unlink(c->token_path);
    c->token_path[0] = '\0';
}

long stack_request(int port, const char *key, const char *method, const char *path,
                   const char *body, json_t **out)
{
    struct http_reply r;
    const char *h[] = {"Content-Type: application/json", key != NULL ? stack_auth(key) : NULL,
                       NULL};
    http_do(port, method, path, h, body, &r);
    long status = r.status;
    if (out != NULL)
        *out = r.body_len > 0 ? json_loads(r.body, 0, NULL) : NULL;
    http_reply_free(&r);
    return status;
}

struct audit_wait {
    const struct proc *p;
    const char *event, *case_id;
    json_t *found;
};

static bool audit_found(void *arg)
{
    struct audit_wait *w = arg;
    w->found = stack_audit_line(w->p, w->event, w->case_id);
    return w->found != NULL;
}

json_t *stack_wait_audit_line(const struct proc *p, const char *event, const char *case_id,
                              unsigned deadline_ms)
{
    struct audit_wait w = {p, event, case_id, NULL};
    wait_until(audit_found, &w, deadline_ms);
    return w.found;
}

int stack_start_with_case(struct stack *s, struct stack_case_system *c, const char *token, bool aof,
                          const char *const settings[])
{
    static const char *env[16];
    size_t n = 0;
    if (stack_case_system_start(c, token) != 0)
        return -1;
    env[n++] = c->base_env;
    env[n++] = c->token_env;
    for (size_t i = 0; settings != NULL && settings[i] != NULL && n < 15; i++)
        env[n++] = settings[i];
    env[n] = NULL;
    return aof ? stack_start_pds_aof(s, NULL, env) : stack_start_pds(s, NULL, env);
}
