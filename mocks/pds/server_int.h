#ifndef PDS_MOCKPDS_SERVER_INT_H
#define PDS_MOCKPDS_SERVER_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mock_http.h"
#include "mock_later.h"
#include "mock_reqlog.h"
#include "pdstrace/list.h"
#include "server.h"

/* Shared by the files of the mock's HTTP side only (server.h is what callers see):
 *   server.c         life cycle, routes, hung answers, query/form parsing;
 *   server_fhir.c    the FHIR routes: the steps of mocks/pds/README.md, search, retrieve;
 *   server_token.c   POST /oauth2/token and the bearer tokens it issues;
 *   server_faults.c  the faults, their admin API and the rate windows;
 *   server_reqlog.c  the request log's entries and the debug line per request.
 * What the mock case system does alike (held-back answers, the fault PRNG, the request
 * log's ring and admin API, the graceful stop) is in mocks/common. */

struct http_exchange;
struct http_server;
struct jwt_pubkey;
struct router;
struct search_param;
struct server_window;

#define SERVER_FHIR_JSON "application/fhir+json"
#define SERVER_HOST_MAX  200 /* longest Host header used to build URLs */

struct mock_pds {
    uv_loop_t *loop;
    struct population *pop;
    const struct sandbox *sandbox;
    struct http_server *server;
    struct router *router;
    struct jwt_pubkey *pubkey;
    char *host, *client_id, *token_url;
    unsigned token_ttl_s;
    struct mock_pds_faults faults;
    uint64_t prng;
    json_t *tokens; /* access token -> expiry (ms since the epoch) */
    json_t *jtis;   /* jti -> its exp (s since the epoch) */
    struct server_window *windows;
    struct mock_reqlog log; /* the last MOCK_PDS_LOG_CAP requests */
    struct mock_later delayed;
    struct list_node hung; /* requests never answered (hang_next), newest first */
    struct mock_stop stop;
};

/* ---- server.c ---- */

/* Decoded name=value pairs of a query string or form body, in order, repeats kept. */
struct server_kv {
    char *copy;
    struct search_param *items;
    size_t n;
};

/* Splits "a=1&b=2" (len bytes of s) into decoded pairs; empty pieces are skipped, and with
 * plus_space '+' decodes to a space. Returns 0, ERR_PARSE (a bad escape) or UV_ENOMEM;
 * on failure kv holds nothing. Free it with server_kv_free. */
int server_kv_parse(struct server_kv *kv, const char *s, size_t len, bool plus_space);
void server_kv_free(struct server_kv *kv);
/* The first value of name, borrowed from kv; NULL when absent. */
const char *server_kv_get(const struct server_kv *kv, const char *name);

/* Answers x with text, after latency_ms unless the mock is stopping. Takes ownership of
 * text. */
void server_respond_later(struct mock_pds *m, struct http_exchange *x, int status,
                          const char *ctype, char *text);

/* Answers x at once with body as compact application/json (mock_respond_json). Takes
 * ownership of body; NULL (a failed json_pack) answers 500. */
void server_respond_json(struct http_exchange *x, int status, json_t *body);

/* Holds x unanswered until its client leaves or the mock stops; while stopping, or out of
 * memory, the connection is reset at once instead. */
void server_hang(struct mock_pds *m, struct http_exchange *x);

/* Resets the hung exchanges whose client has gone. */
void server_sweep_hung(struct mock_pds *m);

/* ---- server_fhir.c ---- */

/* Adds GET /Patient and GET /Patient/{id} under MOCK_PDS_BASE_PATH. Returns 0 or a router
 * error. */
int server_fhir_add_routes(struct mock_pds *m);

/* ---- server_token.c ---- */

/* Adds POST /oauth2/token. Returns 0 or a router error. */
int server_token_add_routes(struct mock_pds *m);

/* The client id behind x's valid bearer token (borrowed from the mock), or NULL. */
const char *server_token_client(struct mock_pds *m, struct http_exchange *x);

/* ---- server_faults.c ---- */

/* Adds GET and PUT /_admin/faults. Returns 0 or a router error. */
int server_faults_add_routes(struct mock_pds *m);

/* Counts a request of app against rate_limit_per_min; false when it is over the limit (a
 * refused request does not count). */
bool server_faults_rate_admit(struct mock_pds *m, const char *app);

/* Forgets every application's rate window. */
void server_faults_windows_free(struct mock_pds *m);

/* ---- server_reqlog.c ---- */

/* mock_reqlog_init with the FHIR and token requests' entries. Returns 0 or UV_ENOMEM;
 * mock_reqlog_close releases it (also after a failed init). */
int server_reqlog_init(struct mock_reqlog *log);

/* Records x (client: static or borrowed from the mock; may be NULL) and returns its
 * sequence number, 0 when out of memory. */
uint64_t server_reqlog_record(struct mock_reqlog *log, struct http_exchange *x, const char *client);

/* Sets the client of request seq, if it is still in the log. */
void server_reqlog_set_client(struct mock_reqlog *log, uint64_t seq, const char *client);

/* Records how request seq was answered (status 0: not at all; fault static or NULL) and
 * writes its debug log line. */
void server_reqlog_answered(struct mock_reqlog *log, uint64_t seq, struct http_exchange *x,
                            int status, const char *fault);

#endif
