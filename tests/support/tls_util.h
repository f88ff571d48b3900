#ifndef PDS_TEST_TLS_UTIL_H
#define PDS_TEST_TLS_UTIL_H

#include <openssl/types.h>
#include <stdbool.h>

#include "proc.h"

/* A throwaway PKI made with the openssl CLI in a fresh temporary directory: a CA, a server
 * certificate for 127.0.0.1 and localhost, and a client certificate, all signed by the CA,
 * with unencrypted P-256 keys. */
struct tls_pki {
    char dir[64];
    char ca[128];
    char server_cert[128];
    char server_key[128];
    char client_cert[128];
    char client_key[128];
};

/* Returns 0, or -1 when an openssl command failed. */
int tls_pki_make(struct tls_pki *p);

/* Removes the files and the directory. */
void tls_pki_remove(struct tls_pki *p);

/* `openssl s_server -www` on 127.0.0.1 and an ephemeral port (it answers GET with a status
 * page); with require_client_cert, a client certificate signed by the CA is required. */
struct tls_server {
    struct proc proc;
    int port;
};

/* Waits up to 10 s for the server to listen. Returns 0 or -1. */
int tls_server_start(struct tls_server *s, const struct tls_pki *p, bool require_client_cert);

/* Stops the server and removes its log. */
void tls_server_stop(struct tls_server *s);

/* Writes pkey to path as PEM: the private key (unencrypted PKCS#8) when private, else the
 * public key (SubjectPublicKeyInfo). Returns 0, or -1 when the file could not be written. */
int tls_pem_write(const char *path, EVP_PKEY *pkey, bool private);

/* Generates an RSA key of bits bits and writes its private half to priv_path and its public
 * half to pub_path, as tls_pem_write does. Returns 0 or -1. */
int tls_rsa_pair_write(const char *priv_path, const char *pub_path, unsigned bits);

#endif
