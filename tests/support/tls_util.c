#include "tls_util.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#define OPENSSL "/usr/bin/openssl"

/* Runs one openssl command to completion; its output goes to a log that is removed. */
static int run(const char *const argv[])
{
    struct proc p;
    if (proc_spawn(&p, argv, NULL) != 0)
        return -1;
    int rc = proc_wait(&p, 30000);
    if (rc != 0) {
        char *log = proc_log(&p);
        fprintf(stderr, "%s %s failed (%d): %s\n", argv[0], argv[1], rc, log ? log : "");
        free(log);
    }
    unlink(p.log_path);
    return rc == 0 ? 0 : -1;
}

static void path(char *out, size_t size, const struct tls_pki *p, const char *name)
{
    snprintf(out, size, "%s/%s", p->dir, name);
}

/* A key and a signing request for subject, then the certificate signed by the CA; ext
 * (a file of extensions) may be NULL. */
static int issue(const struct tls_pki *p, const char *subject, const char *cert, const char *key,
                 const char *ext)
{
    char csr[128], serial[128], ca_key[128];
    path(csr, sizeof(csr), p, "req.csr");
    path(serial, sizeof(serial), p, "ca.srl");
    path(ca_key, sizeof(ca_key), p, "ca.key");
    const char *req[] = {
        OPENSSL,  "req",     "-newkey", "ec",   "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", key,       "-out", csr,        "-subj",
        subject,  NULL};
    const char *sign[] = {OPENSSL,
                          "x509",
                          "-req",
                          "-in",
                          csr,
                          "-CA",
                          p->ca,
                          "-CAkey",
                          ca_key,
                          "-CAserial",
                          serial,
                          "-CAcreateserial",
                          "-days",
                          "2",
                          "-out",
                          cert,
                          ext != NULL ? "-extfile" : NULL,
                          ext,
                          NULL};
    return run(req) == 0 && run(sign) == 0 ? 0 : -1;
}

static int write_ext(const char *file)
{
    FILE *f = fopen(file, "w");
    if (f == NULL)
        return -1;
    fputs("subjectAltName=DNS:localhost,IP:127.0.0.1\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

int tls_pki_make(struct tls_pki *p)
{
    char ca_key[128], ext[128];
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/pdstls-XXXXXX");
    if (mkdtemp(p->dir) == NULL)
        return -1;
    path(p->ca, sizeof(p->ca), p, "ca.pem");
    path(p->server_cert, sizeof(p->server_cert), p, "server.pem");
    path(p->server_key, sizeof(p->server_key), p, "server.key");
    path(p->client_cert, sizeof(p->client_cert), p, "client.pem");
    path(p->client_key, sizeof(p->client_key), p, "client.key");
    path(ca_key, sizeof(ca_key), p, "ca.key");
    path(ext, sizeof(ext), p, "server.ext");
    const char *ca[] = {OPENSSL,
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-nodes",
                        "-keyout",
                        ca_key,
                        "-out",
                        p->ca,
                        "-days",
                        "2",
                        "-subj",
                        "/CN=pds-trace test CA",
                        NULL};
    if (run(ca) != 0 || write_ext(ext) != 0)
        return -1;
    if (issue(p, "/CN=localhost", p->server_cert, p->server_key, ext) != 0)
        return -1;
    return issue(p, "/CN=pds-trace test client", p->client_cert, p->client_key, NULL);
}

void tls_pki_remove(struct tls_pki *p)
{
    static const char *const names[] = {"ca.pem",     "ca.key",     "ca.srl",
                                        "req.csr",    "server.pem", "server.key",
                                        "server.ext", "client.pem", "client.key"};
    char file[128];
    if (p->dir[0] == '\0')
        return;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        path(file, sizeof(file), p, names[i]);
        unlink(file);
    }
    rmdir(p->dir);
    p->dir[0] = '\0';
}

/* s_server prints "ACCEPT 127.0.0.1:<port>" once it listens. */
static int read_accept_port(const struct proc *p)
{
    char *log = proc_log(p);
    const char *at = log != NULL ? strstr(log, "ACCEPT 127.0.0.1:") : NULL;
    int port = at != NULL ? (int)strtol(at + 17, NULL, 10) : -1;
    free(log);
    return port;
}

int tls_server_start(struct tls_server *s, const struct tls_pki *p, bool require_client_cert)
{
    const char *argv[] = {OPENSSL,   "s_server",
                          "-accept", "127.0.0.1:0",
                          "-cert",   p->server_cert,
                          "-key",    p->server_key,
                          "-www",    require_client_cert ? "-Verify" : NULL,
                          "1",       "-CAfile",
                          p->ca,     NULL};
    memset(s, 0, sizeof(*s));
    if (proc_spawn(&s->proc, argv, NULL) != 0)
        return -1;
    for (int i = 0; i < 1000 && s->port <= 0; i++) {
        sleep_ms(10);
        s->port = read_accept_port(&s->proc);
    }
    return s->port > 0 ? 0 : -1;
}

void tls_server_stop(struct tls_server *s)
{
    if (s->proc.pid > 0)
        proc_stop(&s->proc, SIGTERM, 5000);
    if (s->proc.log_path[0] != '\0')
        unlink(s->proc.log_path);
}

int tls_pem_write(const char *path, EVP_PKEY *pkey, bool private)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int ok = private ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_PUBKEY(f, pkey);
    return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

int tls_rsa_pair_write(const char *priv_path, const char *pub_path, unsigned bits)
{
    EVP_PKEY *pkey = EVP_RSA_gen(bits);
    int err = pkey != NULL ? 0 : -1;
    err = err ? err : tls_pem_write(priv_path, pkey, true);
    err = err ? err : tls_pem_write(pub_path, pkey, false);
    EVP_PKEY_free(pkey);
    return err;
}
