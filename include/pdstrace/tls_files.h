#ifndef PDS_NET_TLS_FILES_H
#define PDS_NET_TLS_FILES_H

#include "pdstrace/http_client.h"

/* Start-up checks of the PEM files that one upstream's struct http_client_tls names, so
 * that a file curl could not use stops the service by name instead of failing every
 * request to that upstream. Pure: reads the files, touches no loop. */

/* The first problem found. what is the setting's last part ("ca_file",
 * "client_cert_file" or "client_key_file", as in pds.ca_file), path the file ("" when the
 * setting is missing) and why a static phrase. path is borrowed from the checked struct. */
struct tls_files_error {
    const char *what;
    const char *path;
    const char *why;
};

/* Checks that ca_file, when set, is a readable PEM file holding a certificate, and that
 * cert_file and key_file are both set or neither, readable, the key unencrypted, and a
 * pair. NULL or "" means not set. Returns 0, or ERR_CONFIG with *e filled in. */
int tls_files_check(const struct http_client_tls *t, struct tls_files_error *e);

#endif
