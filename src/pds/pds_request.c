#include "pds_client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"

/* One request of the PDS client: what the caller gave, checked, and what each attempt
 * sends (docs/internals/pds_client.md, "One request, many attempts"). */

#define MAX_QUERY_LEN 4096
#define MAX_TOKEN_LEN 8192

bool pds_request_is_printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f || n >= max)
            return false;
    }
    return true;
}

struct pds_request *pds_request_new(enum pds_op op, char *url, const struct pds_call *call,
                                    pds_cb *cb, void *arg)
{
    struct pds_request *r = malloc(sizeof(*r));
    if (r == NULL) {
        free(url);
        return NULL;
    }
    *r = (struct pds_request){.where = PDS_NOWHERE, .op = op, .url = url, .cb = cb, .arg = arg};
    list_init(&r->link);
    if (call != NULL && call->correlation_id != NULL)
        snprintf(r->correlation_id, sizeof(r->correlation_id), "%s", call->correlation_id);
    if (call != NULL) {
        r->deadline_ns = call->deadline_ns;
        r->gone = call->gone;
        r->priority = call->priority;
    }
    crypto_uuid4(r->request_id);
    return r;
}

void pds_request_free(struct pds_request *r)
{
    free(r->url);
    free(r->token);
    free(r);
}

const char *pds_request_op_name(const struct pds_request *r)
{
    return r->op == PDS_SEARCH ? "search" : "retrieve";
}

/* ---- URLs ---- */

/* A query is already percent-encoded: anything that would break the request line or
 * smuggle a fragment is refused. */
static bool is_query(const char *q)
{
    return pds_request_is_printable(q, MAX_QUERY_LEN) && strchr(q, '#') == NULL;
}

static bool is_nhs_number(const char *s)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    return n == 10 && s[n] == '\0';
}

static int search_url(struct buf *url, const char *base_url, const char *query)
{
    if (query == NULL || !is_query(query))
        return ERR_INVALID_INPUT;
    buf_init(url, MAX_QUERY_LEN + strlen(base_url) + 64);
    return buf_appendf(url, "%s/Patient?%s%s_max-results=1", base_url, query,
                       query[0] != '\0' ? "&" : "");
}

static int retrieve_url(struct buf *url, const char *base_url, const char *nhs_number)
{
    if (nhs_number == NULL || !is_nhs_number(nhs_number))
        return ERR_INVALID_INPUT;
    buf_init(url, strlen(base_url) + 64);
    return buf_appendf(url, "%s/Patient/%s", base_url, nhs_number);
}

int pds_request_url(char **out, enum pds_op op, const char *base_url, const char *what)
{
    struct buf url;
    buf_init(&url, 0);
    int err =
        op == PDS_SEARCH ? search_url(&url, base_url, what) : retrieve_url(&url, base_url, what);
    if (err) {
        buf_free(&url);
        return err;
    }
    *out = buf_steal(&url);
    return 0;
}

/* ---- headers ---- */

int pds_request_headers(struct pds_headers *h, const struct pds_request *r, const char *ods_code)
{
    size_t n = 0;
    h->lines[n++] = "Accept: application/fhir+json";
    snprintf(h->request_id, sizeof(h->request_id), "X-Request-ID: %s", r->request_id);
    h->lines[n++] = h->request_id;
    if (r->correlation_id[0] != '\0') {
        snprintf(h->correlation, sizeof(h->correlation), "X-Correlation-ID: %s", r->correlation_id);
        h->lines[n++] = h->correlation;
    }
    if (ods_code != NULL) {
        snprintf(h->ods, sizeof(h->ods), "NHSD-End-User-Organisation-ODS: %s", ods_code);
        h->lines[n++] = h->ods;
    }
    h->lines[n] = NULL;
    buf_init(&h->auth, MAX_TOKEN_LEN + 32);
    if (r->token == NULL)
        return 0;
    int err = buf_appendf(&h->auth, "Authorization: Bearer %s", r->token);
    if (err)
        return err;
    h->lines[n++] = buf_cstr(&h->auth);
    h->lines[n] = NULL;
    return 0;
}

void pds_request_headers_free(struct pds_headers *h)
{
    buf_free(&h->auth);
}
