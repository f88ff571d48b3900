#ifndef PDS_TEST_STACK_H
#define PDS_TEST_STACK_H

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
};

#define STACK_PDS_CLIENT_ID "pds-trace-test"
#define STACK_PDS_BASE      "/personal-demographics/FHIR/R4"

/* Like stack_start, with the mock PDS first (a generated population of 2000 plus the fixed
 * people of mocks/pds/README.md, signed-JWT auth with a fresh RSA key) and the service
 * pointed at it. pds_args are extra mock-pds arguments (NULL-terminated or NULL). */
int stack_start_pds(struct stack *s, const char *const pds_args[], const char *const env[]);

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

/* Starts the service again (after stack_stop_service) with the same Redis. */
int stack_start_service(struct stack *s, const char *const extra_env[]);
int stack_stop_service(struct stack *s);

/* Stops everything and removes the files. */
void stack_stop(struct stack *s);

/* "Authorization: Bearer <key>" in a static buffer. */
const char *stack_auth(const char *key);

#endif
