#include "pdstrace/tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"

static bool is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* OpenSSL would otherwise ask for a passphrase on the terminal; curl is given none, so an
 * encrypted key is unusable and must fail here, not at the first request. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    UNUSED(buf);
    UNUSED(size);
    UNUSED(rwflag);
    UNUSED(u);
    return -1;
}

/* The first certificate (or private key) of a PEM file; NULL when the file cannot be
 * read or holds none. */
static void *read_pem(const char *path, bool want_key)
{
    FILE *f = fopen(path, "r");
    void *v = NULL;
    if (f == NULL)
        return NULL;
    if (want_key)
        v = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    else
        v = PEM_read_X509(f, NULL, no_password, NULL);
    fclose(f);
    ERR_clear_error();
    return v;
}

static int fail(struct tls_files_error *e, const char *what, const char *path, const char *why)
{
    *e = (struct tls_files_error){what, path, why};
    return ERR_CONFIG;
}

/* A client certificate and its key: both or neither, both readable, and a pair. */
static int check_client_pair(const struct http_client_tls *t, struct tls_files_error *e)
{
    if (!is_set(t->cert_file) && !is_set(t->key_file))
        return 0;
    if (!is_set(t->key_file))
        return fail(e, "client_key_file", "", "is required with client_cert_file");
    if (!is_set(t->cert_file))
        return fail(e, "client_cert_file", "", "is required with client_key_file");
    X509 *cert = read_pem(t->cert_file, false);
    EVP_PKEY *key = cert != NULL ? read_pem(t->key_file, true) : NULL;
    bool ok = cert != NULL && key != NULL && X509_check_private_key(cert, key) == 1;
    int err = 0;
    ERR_clear_error();
    if (cert == NULL)
        err = fail(e, "client_cert_file", t->cert_file,
                   "not a readable PEM file holding a certificate");
    else if (key == NULL)
        err = fail(e, "client_key_file", t->key_file,
                   "not a readable PEM file holding an unencrypted private key");
    else if (!ok)
        err = fail(e, "client_key_file", t->key_file, "is not the key of client_cert_file");
    X509_free(cert);
    EVP_PKEY_free(key);
    return err;
}

int tls_files_check(const struct http_client_tls *t, struct tls_files_error *e)
{
    if (is_set(t->ca_file)) {
        X509 *ca = read_pem(t->ca_file, false);
        X509_free(ca);
        if (ca == NULL)
            return fail(e, "ca_file", t->ca_file, "not a readable PEM file holding a certificate");
    }
    return check_client_pair(t, e);
}
