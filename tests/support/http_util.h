#ifndef PDS_TEST_HTTP_UTIL_H
#define PDS_TEST_HTTP_UTIL_H

#include <stddef.h>

/* Blocking HTTP for integration tests (libcurl easy), and raw TCP for the cases curl
 * would tidy away (pipelining, malformed requests, slow clients). */
struct http_reply {
    long status; /* 0 when the request failed at transport level */
    char *body;
    size_t body_len;
    char *headers; /* raw response header block */
};

/* headers: NULL-terminated "Name: value" lines or NULL; body may be NULL. Returns 0 when a
 * response arrived. Free the reply with http_reply_free. */
int http_do(int port, const char *method, const char *path, const char *const *headers,
            const char *body, struct http_reply *out);
void http_reply_free(struct http_reply *r);

/* A header value from the reply, copied into out; NULL when absent. */
const char *http_reply_header(const struct http_reply *r, const char *name, char *out, size_t size);

/* Raw TCP to 127.0.0.1:port with a receive timeout. Returns an fd or -1. */
int tcp_connect(int port, unsigned recv_timeout_ms);
int tcp_send(int fd, const char *data, size_t len);
/* Reads until the peer closes, size-1 bytes, or the timeout; NUL-terminates. Returns the
 * byte count, or -1 when nothing came before the timeout. */
long tcp_recv_all(int fd, char *out, size_t size);
/* Reads until needle has been seen count times or the timeout passes. */
long tcp_recv_until(int fd, char *out, size_t size, const char *needle, int count);
/* 1 when the peer has closed the connection (within the receive timeout). */
int tcp_peer_closed(int fd);

#endif
