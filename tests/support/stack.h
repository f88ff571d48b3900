#ifndef PDS_TEST_STACK_H
#define PDS_TEST_STACK_H

#include <stdbool.h>

#include "proc.h"
#include "redis_server.h"

/* A running service for integration tests: its own redis-server on a free loopback port,
 * a keys file and pds-trace on an ephemeral port; later issues add the mocks. */
#define STACK_KEY_TRACE "trace-key-0123456789"     /* roles: trace */
#define STACK_KEY_ADMIN "admin-key-0123456789"     /* roles: admin */
#define STACK_KEY_ALL   "all-roles-key-0123456789" /* roles: trace, bulk, objections, admin */

struct stack {
    struct redis_server redis;
    struct proc svc;
    struct proc pds; /* pid 0 when the stack runs without the mock PDS */
    char dir[64];
    char keys_path[128];
    char secret_path[128];
    char last_env[24][320]; /* the settings the service last started with, copied */
    size_t n_last_env;
};

#define STACK_PDS_CLIENT_ID "pds-trace-test"
#define STACK_PDS_BASE      "/personal-demographics/FHIR/R4"

/* Like stack_start, with the mock PDS first (a generated population of 2000 plus the fixed
 * people of mocks/pds/README.md, signed-JWT auth with a fresh RSA key) and the service
 * pointed at it. pds_args are extra mock-pds arguments (NULL-terminated or NULL). */
int stack_start_pds(struct stack *s, const char *const pds_args[], const char *const env[]);

/* Like stack_start_pds, with Redis keeping an append-only file (redis_server_start_aof). */
int stack_start_pds_aof(struct stack *s, const char *const pds_args[], const char *const env[]);

/* Starts the mock PDS again on the same port after it was stopped. */
int stack_restart_pds(struct stack *s);

/* A request to the mock PDS's admin API; returns the parsed JSON body (json_decref it) or
 * NULL. body may be NULL. */
struct json_t;
struct json_t *stack_pds_admin(struct stack *s, const char *method, const char *path,
                               const char *body);

/* Starts Redis and the service with extra "NAME=value" settings (NULL-terminated or NULL).
 * Returns 0 or -1. */
int stack_start(struct stack *s, const char *const extra_env[]);

/* Like stack_start, with Redis keeping an append-only file (redis_server_start_aof), so
 * that it can be killed and restarted without losing what it acknowledged. */
int stack_start_aof(struct stack *s, const char *const extra_env[]);

/* Starts the service again (after stack_stop_service) with the same Redis. */
int stack_start_service(struct stack *s, const char *const extra_env[]);
int stack_stop_service(struct stack *s);

/* Starts mock-case-system (mocks/case-system) on an ephemeral loopback port; args are
 * extra arguments (NULL-terminated or NULL), such as {"--token", "secret", NULL}. The port
 * is in p->port. Stop it with proc_stop(p, SIGTERM, ...). Returns 0 or -1. */
int stack_start_case(struct proc *p, const char *const args[]);

/* A request to the mock case system's admin API on port; returns the parsed JSON body
 * (json_decref it) or NULL (no answer, or no JSON, as for a 204). body may be NULL. */
struct json_t *stack_case_admin(int port, const char *method, const char *path, const char *body);

/* Helpers for the mock case system's routes (mocks/case-system/README.md), on its port. */
struct http_reply;

/* A write-back body of DESIGN.md §5 for nhs and trace_id (traced_at 2026-12-02T10:15:00Z,
 * score 0.97), in out. Returns out. */
const char *stack_case_body(char *out, size_t size, const char *nhs, const char *trace_id);

/* PUT /clients/{case_id}/nhs-number with Content-Type: application/json, and
 * Idempotency-Key: key and Authorization: auth unless NULL. Returns the status (0 when no
 * answer came); free r with http_reply_free. */
long stack_case_put(int port, const char *case_id, const char *key, const char *auth,
                    const char *body, struct http_reply *r);

/* The same PUT on a raw connection, without waiting for the answer: returns the fd (read
 * the answer with tcp_recv_until, then close it) or -1. */
int stack_case_put_nowait(int port, const char *case_id, const char *key, const char *body);

/* GET /clients/{case_id}: the record (json_decref it), or NULL unless it answered 200. */
struct json_t *stack_case_client(int port, const char *case_id);

/* One counter of GET /_admin/stats ("deliveries", "duplicates", ...), or -1. */
long long stack_case_stat(int port, const char *name);

/* PUT /_admin/faults with body. Returns 0 when it answered 200, else -1. */
int stack_case_faults(int port, const char *body);

/* The mock case system as the service's write-back target: the process, and the two
 * settings that point the service at it ("PDS_TRACE_CASE_BASE_URL=...",
 * "PDS_TRACE_CASE_TOKEN_FILE=..."), to put in the service's environment. Keep the struct
 * alive while the service runs (the stack keeps pointers to the settings). */
struct stack_case_system {
    struct proc proc;
    char token_path[160];
    char base_env[96];
    char token_env[200];
};

/* Starts mock-case-system with --token token and writes the token to a file of its own.
 * Returns 0 or -1. */
int stack_case_system_start(struct stack_case_system *c, const char *token);

/* Stops it (SIGTERM) and removes the token file; safe when it never started. */
void stack_case_system_stop(struct stack_case_system *c);

/* Starts c (with token) and then the stack with c as the service's write-back target, plus
 * settings (NULL-terminated "NAME=value" list, at most 12; NULL: none). aof: Redis keeps
 * an append-only file. Returns 0 or -1. */
int stack_start_with_case(struct stack *s, struct stack_case_system *c, const char *token, bool aof,
                          const char *const settings[]);

/* A request with key (NULL: none) and a JSON body (or NULL) to the service on port;
 * returns the status (0 without an answer) and the parsed answer in *out unless out is NULL
 * (NULL when the body was empty or not JSON; json_decref it). */
long stack_request(int port, const char *key, const char *method, const char *path,
                   const char *body, struct json_t **out);

/* Starts another pds-trace on the stack's Redis, keys and secret (a second instance of the
 * service) with extra settings, into peer; stop it with proc_stop(peer, SIGTERM, ...).
 * Returns 0 or -1. */
int stack_start_peer(struct stack *s, struct proc *peer, const char *const extra_env[]);

/* POST /v1/trace with body and the trace key (STACK_KEY_TRACE) to the service on port: the
 * parsed answer (json_decref it), or NULL when none came or it was not JSON; *status (unless
 * status is NULL) is the HTTP status, 0 without an answer. */
struct json_t *stack_trace(int port, const char *body, long *status);

/* The first audit line ("msg":"audit") of event for case_id in p's log, parsed (json_decref
 * it), or NULL when there is none. */
struct json_t *stack_audit_line(const struct proc *p, const char *event, const char *case_id);

/* Like stack_audit_line, asking again until deadline_ms has passed: the service gathers
 * its log lines and writes them once per turn of its loop, so a line may follow the answer
 * it belongs to. */
struct json_t *stack_wait_audit_line(const struct proc *p, const char *event, const char *case_id,
                                     unsigned deadline_ms);

/* Runs `pds-trace bulk args...` (NULL-terminated) with the service's settings (Redis, the
 * secret, the mock PDS and the rest the service last started with) plus extra_env, into p
 * (proc_spawn: wait for it with proc_wait). Returns 0 or -1. */
int stack_spawn_bulk(struct stack *s, struct proc *p, const char *const args[],
                     const char *const extra_env[]);

/* Stops everything and removes the files. */
void stack_stop(struct stack *s);

/* "Authorization: Bearer <key>" in a static buffer. */
const char *stack_auth(const char *key);

#endif
