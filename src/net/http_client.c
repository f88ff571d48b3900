#include "pdstrace/http_client.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/list.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"

/* The wiring follows CONVENTIONS.md §1.1 (curl's docs/examples/multi-uv.c with its
 * pitfalls fixed); docs/internals/http_client.md explains the event flow. */

#define DEFAULT_TIMEOUT_MS         30000u
#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_MAX_RESPONSE       (4u * 1024u * 1024u)
#define MAX_RESPONSE_HEADERS       (16u * 1024u)
#define USER_AGENT                 "pds-trace/" PDS_TRACE_VERSION

struct http_client {
    uv_loop_t *loop;
    CURLM *multi; /* NULL once http_client_free has run */
    uv_timer_t timer;
    struct list_node requests; /* in flight, newest first, for cancellation */
    struct list_node sockets;  /* polled, for a last sweep at shutdown */
    unsigned in_flight;
    int closing;
};

/* One per socket curl asks us to watch, handed to curl with curl_multi_assign. */
struct http_socket {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_client *client;
    struct list_node link; /* in client->sockets */
};

/* One per transfer, stored in CURLOPT_PRIVATE. Lives until its callback has returned,
 * because res points into body and the header lookup into hdrs. */
struct http_request {
    struct http_client *client;
    CURL *easy;
    struct curl_slist *headers;
    struct buf body;
    struct buf hdrs; /* "name\0value\0" pairs of the last response */
    int too_large;
    unsigned sends; /* requests curl has put on the wire, its own re-sends included */
    http_client_send_fn *on_send;
    void *send_arg;
    char errbuf[CURL_ERROR_SIZE]; /* curl's words for a failure: the TLS warning quotes it */
    http_client_cb *cb;
    void *arg;
    struct list_node link; /* in client->requests from add_handle to detach */
    struct http_client_response res;
};

static void on_timeout(uv_timer_t *t);

/* ---- sockets ---- */

static void on_socket_close(uv_handle_t *h)
{
    free(container_of((uv_poll_t *)h, struct http_socket, poll));
}

/* Stops polling at once, because curl closes the fd right after CURL_POLL_REMOVE and the
 * number may be reused; the memory goes only in the close callback. */
static void socket_close(struct http_socket *s)
{
    list_remove(&s->link);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_socket_close);
}

static void drain(struct http_client *c);

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct http_socket *s = container_of(p, struct http_socket, poll);
    struct http_client *c = s->client;
    int flags = 0;
    int running;

    /* On POLLERR libuv has stopped the handle and reports no events; curl must hear of it
     * or it waits on a socket nobody polls any more. */
    if (status < 0)
        flags |= CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    if (c->multi == NULL)
        return;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    drain(c);
}

static struct http_socket *socket_new(struct http_client *c, curl_socket_t fd)
{
    struct http_socket *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    int err = uv_poll_init_socket(c->loop, &s->poll, fd);
    if (err) {
        /* UV_EEXIST means a stale watcher holds the fd: REMOVE handling is broken. */
        log_msgf(LOG_LEVEL_ERROR, NULL, "http_client: uv_poll_init_socket: %s", uv_err_name(err));
        free(s);
        return NULL;
    }
    s->fd = fd;
    s->client = c;
    list_push_head(&c->sockets, &s->link);
    return s;
}

/* curl's socket callback: only (re)arms libuv. curl_multi_assign is the one curl call
 * made here, and it is meant for exactly this. Returning -1 aborts every transfer on the multi. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct http_socket *s = socketp;
    UNUSED(easy);

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL)
            socket_close(s);
        return 0;
    }
    if (s == NULL) {
        s = socket_new(c, fd);
        if (s == NULL)
            return -1;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) ? -1 : 0;
}

/* ---- timer ---- */

/* curl's timer callback: -1 deletes the deadline, anything else (0 included) replaces it.
 * libuv never fires a 0 ms timer inside uv_timer_start, so there is no recursion. */
static int on_timer_set(CURLM *multi, long ms, void *userp)
{
    struct http_client *c = userp;
    UNUSED(multi);

    if (ms < 0) {
        uv_timer_stop(&c->timer);
        return 0;
    }
    if (c->closing)
        return 0;
    return uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0) ? -1 : 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct http_client *c = container_of(t, struct http_client, timer);
    int running;

    if (c->multi == NULL)
        return;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    /* Always drain: a transfer that just timed out leaves running == 0. */
    drain(c);
}

/* ---- completion ---- */

/* Certificates refused by either side, and TLS files or settings we cannot use: asking
 * again gets the same answer, so these are not transient. */
static int is_tls_refusal(CURLcode rc)
{
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
        return 1;
    default:
        return 0;
    }
}

/* A failed handshake (CURLE_SSL_CONNECT_ERROR) is transient when the connection was cut
 * (a reset or EOF while a load balancer restarts), but not when the peer sent a TLS alert:
 * that is a refusal, such as a server that wants a client certificate. With TLS 1.3 that
 * refusal ("tlsv13 alert certificate required") only shows at the first read, as
 * CURLE_RECV_ERROR. OpenSSL names every alert "... alert <reason>". */
static int is_tls_alert(CURLcode rc, const char *errbuf)
{
    if (rc != CURLE_SSL_CONNECT_ERROR && rc != CURLE_RECV_ERROR)
        return 0;
    return strstr(errbuf, " alert ") != NULL;
}

/* The one place where curl's results become our codes. A send stopped by on_send
 * (CURLE_ABORTED_BY_CALLBACK) is an ERR_UPSTREAM like a dead connection, so that the
 * caller's own retry, which waits for the rate budget, takes over. */
static int map_result(CURLcode rc, const struct http_request *r)
{
    if (rc == CURLE_OK)
        return 0;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return ERR_UPSTREAM_TIMEOUT;
    if (rc == CURLE_WRITE_ERROR && r->too_large)
        return ERR_TOO_LARGE;
    if (is_tls_refusal(rc) || is_tls_alert(rc, r->errbuf))
        return ERR_UPSTREAM_TLS;
    log_msgf(LOG_LEVEL_DEBUG, NULL, "http_client: transfer failed: %s", curl_easy_strerror(rc));
    return ERR_UPSTREAM;
}

/* One warning per failed transfer, naming the host (never the URL, whose query holds
 * personal data) and what curl and the certificate check said: operators must be able to
 * tell a missing private CA from an expired certificate without a packet capture. */
static void log_tls_failure(CURL *easy, CURLcode rc, const struct http_request *r)
{
    char *url = NULL;
    char *host = NULL;
    long verify = 0;
    CURLU *u = curl_url();

    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    curl_easy_getinfo(easy, CURLINFO_SSL_VERIFYRESULT, &verify);
    if (u != NULL && url != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK)
        curl_url_get(u, CURLUPART_HOST, &host, 0);
    log_event(LOG_LEVEL_WARN, NULL, "upstream TLS failure",
              json_pack("{s:s,s:s,s:I}", "host", host != NULL ? host : "unknown", "error",
                        r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(rc), "verify_result",
                        (json_int_t)verify));
    curl_free(host);
    curl_url_cleanup(u);
}

/* Takes the request off the multi and frees everything curl could still read. */
static void detach(struct http_request *r)
{
    struct http_client *c = r->client;

    list_remove(&r->link);
    c->in_flight--;
    curl_multi_remove_handle(c->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    curl_slist_free_all(r->headers);
    r->headers = NULL;
}

static void request_free(struct http_request *r)
{
    buf_free(&r->body);
    buf_free(&r->hdrs);
    free(r);
}

/* Runs the callback outside every curl callback, so it may start another transfer or
 * free the client, then releases what res pointed at. */
static void complete(struct http_request *r, int status)
{
    r->res.body = buf_cstr(&r->body);
    r->res.body_len = buf_len(&r->body);
    r->cb(status, status == 0 ? &r->res : NULL, r->arg);
    request_free(r);
}

static void finish(CURL *easy, CURLcode rc)
{
    char *priv = NULL;

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    struct http_request *r = (struct http_request *)priv;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->res.status);
    curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &r->res.seconds);
    int status = map_result(rc, r);
    if (status == ERR_UPSTREAM_TLS)
        log_tls_failure(easy, rc, r);
    detach(r);
    complete(r, status);
}

static void drain(struct http_client *c)
{
    int left;

    for (;;) {
        /* A completion may have freed the client, which clears multi. */
        if (c->multi == NULL)
            return;
        CURLMsg *msg = curl_multi_info_read(c->multi, &left);
        if (msg == NULL)
            return;
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* The message dies with remove_handle/easy_cleanup: copy it out first. */
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        finish(easy, rc);
    }
}

/* ---- body and header capture (curl callbacks: store only, never complete) ---- */

static size_t on_write(char *p, size_t size, size_t n, void *userdata)
{
    struct http_request *r = userdata;
    size_t len = size * n;
    int err = buf_append(&r->body, p, len);

    if (err == ERR_TOO_LARGE)
        r->too_large = 1;
    return err ? 0 : len;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Stores "Name: value" as "Name\0value\0". Blank lines, folded continuations and lines
 * with NUL bytes are skipped, since they would break the pair layout. */
static int store_header(struct buf *b, const char *p, size_t len)
{
    while (len > 0 && is_space(p[len - 1]))
        len--;
    const char *colon = memchr(p, ':', len);
    if (colon == NULL || colon == p || is_space(p[0]) || memchr(p, '\0', len) != NULL)
        return 0;
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    while (vlen > 0 && is_space(*v)) {
        v++;
        vlen--;
    }
    if (nlen + vlen + 2 > buf_room(b))
        return ERR_TOO_LARGE;
    int err = buf_append(b, p, nlen);
    if (!err)
        err = buf_append(b, "", 1);
    if (!err)
        err = buf_append(b, v, vlen);
    if (!err)
        err = buf_append(b, "", 1);
    return err;
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
    struct http_request *r = userdata;
    size_t len = size * n;

    /* A status line starts a new response (after 1xx or a redirect): keep only the last. */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        buf_reset(&r->hdrs);
        return len;
    }
    int err = store_header(&r->hdrs, p, len);
    if (err == ERR_TOO_LARGE)
        r->too_large = 1;
    return err ? 0 : len;
}

const char *http_client_response_header(const struct http_client_response *res, const char *name)
{
    if (res == NULL || name == NULL)
        return NULL;
    const struct http_request *r =
        (const struct http_request *)((const char *)res - offsetof(struct http_request, res));
    const char *p = buf_cstr(&r->hdrs);
    const char *end = p + buf_len(&r->hdrs);

    while (p < end) {
        const char *value = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

/* ---- starting a transfer ---- */

/* A CR or LF in a caller's value would let it inject a header or a second request. */
static int has_line_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static int check_request(const struct http_client_request *req)
{
    if (req == NULL || req->url == NULL || has_line_break(req->url))
        return ERR_INVALID_INPUT;
    if (req->method != NULL && (req->method[0] == '\0' || strpbrk(req->method, " \r\n")))
        return ERR_INVALID_INPUT;
    if (req->body == NULL && req->body_len != 0)
        return ERR_INVALID_INPUT;
    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++) {
        if (has_line_break(*h))
            return ERR_INVALID_INPUT;
    }
    return 0;
}

/* Builds the header list; "Expect:" stops curl from waiting for 100-continue. */
static int build_headers(struct http_request *r, const struct http_client_request *req)
{
    const char *const *h = req->headers;

    for (; h != NULL && *h != NULL; h++) {
        struct curl_slist *l = curl_slist_append(r->headers, *h);
        if (l == NULL)
            return UV_ENOMEM;
        r->headers = l;
    }
    if (req->body != NULL) {
        struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
        if (l == NULL)
            return UV_ENOMEM;
        r->headers = l;
    }
    return 0;
}

static int wants_body(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0;
}

/* The body is copied (COPYPOSTFIELDS), so the caller's buffer may go at once. */
static CURLcode set_method(CURL *e, const struct http_client_request *req)
{
    const char *m = req->method != NULL ? req->method : "GET";
    CURLcode rc = CURLE_OK;

    if (strcmp(m, "HEAD") == 0)
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (req->body != NULL || wants_body(m)) {
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
    }
    if (rc == CURLE_OK && strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0)
        rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    return rc;
}

static CURLcode set_limits(CURL *e, const struct http_client_request *req)
{
    unsigned total = req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
    unsigned conn = req->connect_timeout_ms;

    if (conn == 0)
        conn = total < DEFAULT_CONNECT_TIMEOUT_MS ? total : DEFAULT_CONNECT_TIMEOUT_MS;
    CURLcode rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)total);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)conn);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
    /* Else a transfer ended during a lookup joins the resolver thread, stopping the loop. */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    return rc;
}

static CURLcode set_io(CURL *e, struct http_request *r, const struct http_client_request *req)
{
    CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, req->url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    return rc;
}

static int is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* A ca_file replaces the system's CAs rather than adding to them, so CURLOPT_CAPATH (on
 * Debian /etc/ssl/certs) is cleared too. curl copies the strings. */
static CURLcode set_tls(CURL *e, const struct http_client_tls *tls)
{
    CURLcode rc = CURLE_OK;

    if (tls == NULL)
        return CURLE_OK;
    if (is_set(tls->ca_file)) {
        rc = curl_easy_setopt(e, CURLOPT_CAINFO, tls->ca_file);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    }
    if (rc == CURLE_OK && is_set(tls->cert_file))
        rc = curl_easy_setopt(e, CURLOPT_SSLCERT, tls->cert_file);
    if (rc == CURLE_OK && is_set(tls->key_file))
        rc = curl_easy_setopt(e, CURLOPT_SSLKEY, tls->key_file);
    return rc;
}

/* curl's pre-request callback runs before every send, including the one it makes by
 * itself when a reused connection died unanswered; counting here is the only way to see
 * those. Bookkeeping only: curl must not be called from here. */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct http_request *r = clientp;
    UNUSED(primary_ip);
    UNUSED(local_ip);
    UNUSED(primary_port);
    UNUSED(local_port);

    r->sends++;
    if (r->on_send != NULL && r->on_send(r->sends, r->send_arg) < 0)
        return CURL_PREREQFUNC_ABORT;
    return CURL_PREREQFUNC_OK;
}

static CURLcode set_hooks(CURL *e, struct http_request *r, const struct http_client_request *req)
{
    r->on_send = req->on_send;
    r->send_arg = req->send_arg;
    CURLcode rc = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    return rc;
}

static int setup(struct http_request *r, const struct http_client_request *req)
{
    int err = build_headers(r, req);
    if (err)
        return err;
    r->easy = curl_easy_init();
    if (r->easy == NULL)
        return UV_ENOMEM;
    CURLcode rc = set_io(r->easy, r, req);
    if (rc == CURLE_OK)
        rc = set_limits(r->easy, req);
    if (rc == CURLE_OK)
        rc = set_method(r->easy, req);
    if (rc == CURLE_OK)
        rc = set_tls(r->easy, req->tls);
    if (rc == CURLE_OK)
        rc = set_hooks(r->easy, r, req);
    if (rc == CURLE_OUT_OF_MEMORY)
        return UV_ENOMEM;
    return rc == CURLE_OK ? 0 : ERR_INVALID_INPUT;
}

static void request_discard(struct http_request *r)
{
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    request_free(r);
}

int http_client_request(struct http_client *c, const struct http_client_request *req,
                        http_client_cb *cb, void *arg)
{
    if (c == NULL || cb == NULL || check_request(req))
        return ERR_INVALID_INPUT;
    if (c->closing)
        return UV_ECANCELED;
    struct http_request *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return UV_ENOMEM;
    r->client = c;
    r->cb = cb;
    r->arg = arg;
    list_init(&r->link);
    buf_init(&r->body, req->max_response_bytes ? req->max_response_bytes : DEFAULT_MAX_RESPONSE);
    buf_init(&r->hdrs, MAX_RESPONSE_HEADERS);
    int err = setup(r, req);
    if (!err && curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
        err = ERR_INTERNAL;
    if (err) {
        request_discard(r);
        return err;
    }
    /* curl answers add_handle through the timer callback; the transfer starts from the loop. */
    list_push_head(&c->requests, &r->link);
    c->in_flight++;
    return 0;
}

/* ---- lifetime ---- */

int http_client_new(struct http_client **out, uv_loop_t *loop)
{
    struct http_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    c->loop = loop;
    list_init(&c->requests);
    list_init(&c->sockets);
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        free(c);
        return UV_ENOMEM;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    *out = c;
    return 0;
}

static void on_client_close(uv_handle_t *h)
{
    free(container_of((uv_timer_t *)h, struct http_client, timer));
}

/* Every callback runs once with UV_ECANCELED; new requests are refused from here on. */
static void cancel_all(struct http_client *c)
{
    while (!list_is_empty(&c->requests)) {
        struct http_request *r = LIST_ENTRY(list_first(&c->requests), struct http_request, link);
        detach(r);
        complete(r, UV_ECANCELED);
    }
}

void http_client_free(struct http_client *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = 1;
    cancel_all(c);
    /* The socket callback may still fire here to drop pooled connections, so the client
     * must be alive and multi still set. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    /* Should curl have left a socket behind, stop watching it all the same. */
    while (!list_is_empty(&c->sockets))
        socket_close(LIST_ENTRY(list_first(&c->sockets), struct http_socket, link));
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_client_close);
}

unsigned http_client_in_flight(const struct http_client *c)
{
    return c != NULL ? c->in_flight : 0;
}
