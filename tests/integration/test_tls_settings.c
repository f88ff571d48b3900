/* The TLS settings (pds.* and case.* ca_file, client_cert_file, client_key_file) and the
 * signed-JWT key (pds.key_file) are checked at start-up: a file that is not usable stops
 * the service with exit status 2 and one line naming the setting and why; usable ones let
 * it start. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"
#include "stack.h"
#include "test_util.h"
#include "tls_util.h"

TestSuite(tls_settings, .timeout = 60);

static struct tls_pki pki;
static char junk[128];   /* a file that is not PEM */
static char secret[128]; /* so that the TLS files are the only bad setting */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static void setup(void)
{
    cr_assert_eq(tls_pki_make(&pki), 0, "could not make the test PKI");
    snprintf(junk, sizeof(junk), "%s/junk.pem", pki.dir);
    snprintf(secret, sizeof(secret), "%s/secret", pki.dir);
    write_file(junk, "this is not a certificate\n");
    write_file(secret, "0123456789abcdef0123456789abcdef0123456789abcdef\n");
}

static void teardown(void)
{
    unlink(junk);
    unlink(secret);
    tls_pki_remove(&pki);
}

/* Runs `pds-trace serve` with the settings given and checks that it exits 2 with a
 * message that names want (the environment variable and the key). Returns the log. */
static char *run_exit_2(const char *const tls_env[], const char *want)
{
    struct proc p;
    char secret_env[160];
    const char *env[8] = {"PDS_TRACE_LISTEN=127.0.0.1:0", secret_env};
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "serve", NULL};
    size_t n = 2;
    snprintf(secret_env, sizeof(secret_env), "PDS_TRACE_SECRET_FILE=%s", secret);
    for (size_t i = 0; tls_env[i] != NULL && n < 7; i++)
        env[n++] = tls_env[i];
    env[n] = NULL;
    cr_assert_eq(proc_spawn(&p, argv, env), 0);
    int rc = proc_wait(&p, 5000);
    char *log = proc_log(&p);
    cr_assert_eq(rc, 2, "exit %d: %s", rc, log);
    cr_assert(strstr(log, want) != NULL, "want %s in: %s", want, log);
    unlink(p.log_path);
    return log;
}

static void expect_exit_2(const char *const tls_env[], const char *want)
{
    free(run_exit_2(tls_env, want));
}

static const char *env_kv(char *buf, size_t size, const char *name, const char *value)
{
    snprintf(buf, size, "%s=%s", name, value);
    return buf;
}

Test(tls_settings, pds_ca_file_that_is_not_pem_exits_2, .init = setup, .fini = teardown)
{
    char a[192];
    const char *env[] = {env_kv(a, sizeof(a), "PDS_TRACE_PDS_CA_FILE", junk), NULL};
    expect_exit_2(env, "PDS_TRACE_PDS_CA_FILE (pds.ca_file)");
}

Test(tls_settings, missing_pds_ca_file_exits_2, .init = setup, .fini = teardown)
{
    const char *env[] = {"PDS_TRACE_PDS_CA_FILE=/nonexistent/ca.pem", NULL};
    expect_exit_2(env, "PDS_TRACE_PDS_CA_FILE (pds.ca_file) /nonexistent/ca.pem");
}

Test(tls_settings, client_cert_without_key_exits_2, .init = setup, .fini = teardown)
{
    char a[192];
    const char *env[] = {env_kv(a, sizeof(a), "PDS_TRACE_PDS_CLIENT_CERT_FILE", pki.client_cert),
                         NULL};
    expect_exit_2(env, "PDS_TRACE_PDS_CLIENT_KEY_FILE (pds.client_key_file)");
}

Test(tls_settings, key_that_is_not_the_certificates_exits_2, .init = setup, .fini = teardown)
{
    char a[192], b[192];
    const char *env[] = {env_kv(a, sizeof(a), "PDS_TRACE_PDS_CLIENT_CERT_FILE", pki.client_cert),
                         env_kv(b, sizeof(b), "PDS_TRACE_PDS_CLIENT_KEY_FILE", pki.server_key),
                         NULL};
    expect_exit_2(env, "PDS_TRACE_PDS_CLIENT_KEY_FILE (pds.client_key_file)");
}

Test(tls_settings, case_client_cert_that_is_not_pem_exits_2, .init = setup, .fini = teardown)
{
    char a[192], b[192];
    const char *env[] = {env_kv(a, sizeof(a), "PDS_TRACE_CASE_CLIENT_CERT_FILE", junk),
                         env_kv(b, sizeof(b), "PDS_TRACE_CASE_CLIENT_KEY_FILE", pki.client_key),
                         NULL};
    expect_exit_2(env, "PDS_TRACE_CASE_CLIENT_CERT_FILE (case.client_cert_file)");
}

Test(tls_settings, usable_files_start_the_service, .init = setup, .fini = teardown)
{
    struct stack st;
    char a[192], b[192], c[192], d[192];
    const char *env[] = {env_kv(a, sizeof(a), "PDS_TRACE_PDS_CA_FILE", pki.ca),
                         env_kv(b, sizeof(b), "PDS_TRACE_PDS_CLIENT_CERT_FILE", pki.client_cert),
                         env_kv(c, sizeof(c), "PDS_TRACE_PDS_CLIENT_KEY_FILE", pki.client_key),
                         env_kv(d, sizeof(d), "PDS_TRACE_CASE_CA_FILE", pki.ca), NULL};
    cr_assert_eq(stack_start(&st, env), 0, "did not start; see %s", st.svc.log_path);
    stack_stop(&st);
}

/* ---- pds.key_file: why it cannot sign ---- */

TestSuite(pds_auth_settings, .timeout = 60);

/* Runs the service with signed-JWT auth and key_file, and checks that it exits 2 with one
 * line "pds-trace: PDS_TRACE_PDS_KEY_FILE (pds.key_file) <key_file>: <why>". */
static void expect_key_refused(const char *key_file, const char *why)
{
    char k[192], line[512];
    const char *env[] = {"PDS_TRACE_PDS_AUTH=signed-jwt",
                         "PDS_TRACE_PDS_TOKEN_URL=http://127.0.0.1:9/oauth2/token",
                         "PDS_TRACE_PDS_CLIENT_ID=test-client",
                         "PDS_TRACE_PDS_KID=test-kid",
                         env_kv(k, sizeof(k), "PDS_TRACE_PDS_KEY_FILE", key_file),
                         NULL};
    snprintf(line, sizeof(line), "pds-trace: PDS_TRACE_PDS_KEY_FILE (pds.key_file) %s: %s\n",
             key_file, why);
    char *log = run_exit_2(env, line);
    const char *at = strstr(log, line);
    cr_assert(at == log || at[-1] == '\n', "not a line of its own: %s", log);
    free(log);
}

Test(pds_auth_settings, missing_key_file_says_so, .init = setup, .fini = teardown)
{
    expect_key_refused("/nonexistent/pds-key.pem", "does not exist");
}

Test(pds_auth_settings, file_without_a_key_says_so, .init = setup, .fini = teardown)
{
    expect_key_refused(junk, "holds no PEM private key");
}

Test(pds_auth_settings, key_that_is_not_rsa_says_so, .init = setup, .fini = teardown)
{
    /* The test PKI's keys are P-256. */
    expect_key_refused(pki.client_key, "is not an RSA key (RS512 needs one)");
}

Test(pds_auth_settings, small_rsa_key_says_so, .init = setup, .fini = teardown)
{
    char priv[160], pub[160];
    snprintf(priv, sizeof(priv), "%s/small-key.pem", pki.dir);
    snprintf(pub, sizeof(pub), "%s/small-pub.pem", pki.dir);
    cr_assert_eq(tls_rsa_pair_write(priv, pub, 1024), 0);
    expect_key_refused(priv, "is an RSA key of fewer than 2048 bits");
    unlink(priv);
    unlink(pub);
}
