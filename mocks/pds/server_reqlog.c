#include "server_int.h"

#include <stdlib.h>
#include <string.h>

#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"

/* One FHIR or token request as the admin API shows it. The strings live in the same
 * allocation; client_id and fault are static or borrowed from the mock. */
struct server_log_entry {
    struct mock_log_entry head; /* first: the log frees the entry through it */
    int status;                 /* 0 until answered; stays 0 for resets and hangs */
    bool authorization;
    const char *client_id;
    const char *fault;
    const char *method, *path, *query, *request_id, *correlation_id, *ods;
    char strings[];
};

enum { LF_METHOD, LF_PATH, LF_QUERY, LF_REQUEST_ID, LF_CORRELATION_ID, LF_ODS, LF_COUNT };

static struct server_log_entry *entry_new(const char *const v[LF_COUNT])
{
    size_t total = 0;
    for (int i = 0; i < LF_COUNT; i++)
        total += v[i] != NULL ? strlen(v[i]) + 1 : 0;
    struct server_log_entry *e = calloc(1, sizeof(*e) + total);
    if (e == NULL)
        return NULL;
    const char **dst[LF_COUNT] = {&e->method,     &e->path,           &e->query,
                                  &e->request_id, &e->correlation_id, &e->ods};
    char *p = e->strings;
    for (int i = 0; i < LF_COUNT; i++) {
        if (v[i] == NULL)
            continue;
        size_t n = strlen(v[i]) + 1;
        memcpy(p, v[i], n);
        *dst[i] = p;
        p += n;
    }
    return e;
}

uint64_t server_reqlog_record(struct mock_reqlog *log, struct http_exchange *x, const char *client)
{
    const char *v[LF_COUNT] = {
        http_exchange_method(x),
        http_exchange_path(x),
        http_exchange_query(x),
        http_exchange_header(x, "X-Request-ID"),
        http_exchange_header(x, "X-Correlation-ID"),
        http_exchange_header(x, "NHSD-End-User-Organisation-ODS"),
    };
    struct server_log_entry *e = entry_new(v);
    if (e == NULL)
        return 0;
    e->authorization = http_exchange_header(x, "Authorization") != NULL;
    e->client_id = client;
    return mock_reqlog_add(log, &e->head);
}

static struct server_log_entry *find(struct mock_reqlog *log, uint64_t seq)
{
    struct mock_log_entry *e = mock_reqlog_find(log, seq);
    return e != NULL ? container_of(e, struct server_log_entry, head) : NULL;
}

void server_reqlog_set_client(struct mock_reqlog *log, uint64_t seq, const char *client)
{
    struct server_log_entry *e = find(log, seq);
    if (e != NULL)
        e->client_id = client;
}

/* Debug only, and without the query string or the path: both can hold personal data. */
static void log_line(struct http_exchange *x, int status, const char *fault)
{
    if (!log_enabled(LOG_LEVEL_DEBUG))
        return;
    json_int_t us = (json_int_t)((uv_hrtime() - http_exchange_start_ns(x)) / 1000);
    log_event(LOG_LEVEL_DEBUG, http_exchange_request_id(x), "request",
              json_pack("{s:s, s:s, s:i, s:s*, s:I}", "method", http_exchange_method(x), "route",
                        http_exchange_route(x), "status", status, "fault", fault, "us", us));
}

void server_reqlog_answered(struct mock_reqlog *log, uint64_t seq, struct http_exchange *x,
                            int status, const char *fault)
{
    struct server_log_entry *e = find(log, seq);
    if (e != NULL) {
        e->status = status;
        e->fault = fault;
    }
    log_line(x, status, fault);
}

/* ---- GET /_admin/requests ------------------------------------------------------------- */

static json_t *entry_json(const struct mock_log_entry *head)
{
    const struct server_log_entry *e = (const void *)head; /* its first member */
    return json_pack("{s:I, s:I, s:I, s:s, s:s, s:s, s:s?, s:s?, s:b, s:s?, s:s?, s:i, s:s?}",
                     "seq", (json_int_t)head->seq, "time_ms", (json_int_t)head->time_ms, "time_us",
                     (json_int_t)head->time_us, "method", e->method, "path", e->path, "query",
                     e->query, "x_request_id", e->request_id, "x_correlation_id", e->correlation_id,
                     "authorization", e->authorization, "client_id", e->client_id, "ods", e->ods,
                     "status", e->status, "fault", e->fault);
}

int server_reqlog_init(struct mock_reqlog *log)
{
    return mock_reqlog_init(log, MOCK_PDS_LOG_CAP, entry_json);
}
