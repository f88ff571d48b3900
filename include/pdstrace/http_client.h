#ifndef PDS_NET_HTTP_CLIENT_H
#define PDS_NET_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

/* Outgoing HTTP on the loop: one libcurl multi handle driven by libuv (a uv_poll_t per
 * socket curl asks us to watch, one uv_timer_t for curl's timeouts), so connections are
 * reused across requests. See docs/internals/http_client.md. */
struct http_client;

/* TLS files for one upstream, each a PEM file path; NULL or "" leaves curl's default: the
 * system's CAs, and no client certificate. A client certificate needs its key. */
struct http_client_tls {
    const char *ca_file;   /* CAs to trust instead of the system's (private CA, proxy) */
    const char *cert_file; /* client certificate, for mutual TLS */
    const char *key_file;  /* its private key (unencrypted) */
};

/* Called before every request that really goes out on the wire: n is 1 for the first
 * send of the transfer, 2 and up when libcurl re-sends it by itself on a new connection
 * because a reused one died before answering (CONVENTIONS §1.1 pitfall 15). Return 0 to
 * let it go, or <0 to stop it: the transfer then completes with ERR_UPSTREAM. Runs inside
 * a curl callback: bookkeeping only, never a call into http_client or curl. */
typedef int http_client_send_fn(unsigned n, void *arg);

struct http_client_request {
    const char *method; /* "GET", "POST", "PUT", ...; NULL means GET */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* may be NULL */
    size_t body_len;
    unsigned timeout_ms;               /* whole transfer; 0 means 30 s */
    unsigned connect_timeout_ms;       /* 0 means the lesser of timeout_ms and 5 s */
    size_t max_response_bytes;         /* body ceiling; 0 means 4 MiB */
    const struct http_client_tls *tls; /* NULL: curl's defaults */
    http_client_send_fn *on_send;      /* NULL, or told of every send (above) */
    void *send_arg;
};

struct http_client_response {
    long status;      /* HTTP status */
    const char *body; /* NUL-terminated; "" when empty */
    size_t body_len;
    double seconds; /* total transfer time */
};

/* status is 0 when an HTTP response arrived (whatever its code), or: ERR_UPSTREAM_TIMEOUT
 * (the timeout passed), ERR_UPSTREAM (refused, reset, DNS, a send stopped by on_send...),
 * ERR_UPSTREAM_TLS (a certificate refused by either side, or an unusable TLS file: not
 * transient; logged once as a warning naming the host), ERR_TOO_LARGE (body over the
 * ceiling, or response headers over 16 KiB), UV_ECANCELED (client freed). res is NULL
 * unless status is 0, and is borrowed; valid until cb returns. */
typedef void http_client_cb(int status, const struct http_client_response *res, void *arg);

/* Needs curl_global_init() to have been called once. */
int http_client_new(struct http_client **out, uv_loop_t *loop);

/* Cancels what is in flight (each cb runs once with UV_ECANCELED, inside this call) and
 * frees the client. NULL is fine, and so is calling it from a cb. Run the loop afterwards
 * so the poll and timer handles close and the memory goes. */
void http_client_free(struct http_client *c);

/* Starts a transfer. Returns 0 and calls cb exactly once later (never from inside this
 * call), or returns <0 and never calls cb: ERR_INVALID_INPUT (no url, CR/LF in a value),
 * UV_ECANCELED (the client is being freed), UV_ENOMEM. Everything in req is copied, the
 * TLS file names included, except send_arg, which must stay valid until cb runs. */
int http_client_request(struct http_client *c, const struct http_client_request *req,
                        http_client_cb *cb, void *arg);

/* A response header's value (case-insensitive name, first occurrence) of the final
 * response, borrowed like res; NULL when absent. res must be the one given to a cb. */
const char *http_client_response_header(const struct http_client_response *res, const char *name);

/* Transfers in flight. */
unsigned http_client_in_flight(const struct http_client *c);

#endif
