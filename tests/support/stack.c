#include "stack.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdstrace/crypto.h"

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

int stack_start_service(struct stack *s, const char *const extra_env[])
{
    static char redis_env[160], keys_env[200], secret_env[200];
    char url[128];
    snprintf(redis_env, sizeof(redis_env), "PDS_TRACE_REDIS_URL=%s",
             redis_server_url(&s->redis, url, sizeof(url)));
    snprintf(keys_env, sizeof(keys_env), "PDS_TRACE_API_KEYS_FILE=%s", s->keys_path);
    snprintf(secret_env, sizeof(secret_env), "PDS_TRACE_SECRET_FILE=%s", s->secret_path);
    const char *env[32] = {"PDS_TRACE_LISTEN=127.0.0.1:0", redis_env, keys_env, secret_env,
                           "PDS_TRACE_LOG_LEVEL=debug"};
    size_t n = 5;
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL && n < 31; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "serve", NULL};
    return proc_start(&s->svc, argv, env);
}

int stack_stop_service(struct stack *s)
{
    return proc_stop(&s->svc, SIGTERM, 15000);
}

int stack_start(struct stack *s, const char *const extra_env[])
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/pdsstackXXXXXX");
    if (mkdtemp(s->dir) == NULL || write_keys(s) != 0 || write_secret(s) != 0)
        return -1;
    if (redis_server_start(&s->redis) != 0)
        return -1;
    return stack_start_service(s, extra_env);
}

void stack_stop(struct stack *s)
{
    if (s->svc.pid > 0)
        stack_stop_service(s);
    redis_server_destroy(&s->redis);
    unlink(s->keys_path);
    unlink(s->secret_path);
    rmdir(s->dir);
}

const char *stack_auth(const char *key)
{
    static char h[128];
    snprintf(h, sizeof(h), "Authorization: Bearer %s", key);
    return h;
}
