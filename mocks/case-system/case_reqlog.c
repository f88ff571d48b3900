#include "case_server_int.h"

#include <stdlib.h>
#include <string.h>

#include "pdstrace/http_server.h"
#include "pdstrace/macros.h"

/* One write request as the admin API shows it: no body, so no NHS number. The strings live
 * in the same allocation; outcome and fault are static. */
struct case_log_entry {
    struct mock_log_entry head; /* first: the log frees the entry through it */
    int status;                 /* 0 for a dropped connection */
    const char *outcome, *fault;
    const char *method, *path, *key; /* key NULL when the header was absent */
    char strings[];
};

/* Copies s to *at and returns the copy; *at moves past its NUL. */
static const char *put(char **at, const char *s)
{
    char *copy = *at;
    size_t n = strlen(s) + 1;
    memcpy(copy, s, n);
    *at += n;
    return copy;
}

static struct case_log_entry *entry_new(const char *method, const char *path, const char *key)
{
    size_t total = strlen(method) + strlen(path) + (key != NULL ? strlen(key) : 0) + 3;
    struct case_log_entry *e = calloc(1, sizeof(*e) + total);
    if (e == NULL)
        return NULL;
    char *at = e->strings;
    e->method = put(&at, method);
    e->path = put(&at, path);
    e->key = key != NULL ? put(&at, key) : NULL;
    e->outcome = "pending";
    return e;
}

struct case_log_entry *case_reqlog_record(struct mock_reqlog *log, struct http_exchange *x)
{
    struct case_log_entry *e = entry_new(http_exchange_method(x), http_exchange_path(x),
                                         http_exchange_header(x, "Idempotency-Key"));
    if (e != NULL)
        mock_reqlog_add(log, &e->head);
    return e;
}

void case_reqlog_answered(struct case_log_entry *e, int status, const char *outcome,
                          const char *fault)
{
    if (e == NULL)
        return;
    e->status = status;
    e->outcome = outcome;
    e->fault = fault;
}

/* ---- GET /_admin/requests --------------------------------------------------------- */

static json_t *entry_json(const struct mock_log_entry *head)
{
    const struct case_log_entry *e = (const void *)head; /* its first member */
    return json_pack("{s:I,s:I,s:s,s:s,s:s?,s:i,s:s,s:s?}", "seq", (json_int_t)head->seq, "time_ms",
                     (json_int_t)head->time_ms, "method", e->method, "path", e->path,
                     "idempotency_key", e->key, "status", e->status, "outcome", e->outcome, "fault",
                     e->fault);
}

int case_reqlog_init(struct mock_reqlog *log)
{
    return mock_reqlog_init(log, MOCK_CASE_LOG_CAP, entry_json);
}
