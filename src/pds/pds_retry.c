#include "pds_client_int.h"

#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"

/* The retry policy of the PDS client: what each answer means (the table "Judging an
 * answer" in docs/internals/pds_client.md) and how long to wait before trying again. */

#define RETRY_AFTER_MAX_S 60L

/* ---- verdicts ---- */

static bool is_retryable_status(long s)
{
    return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

static int parse_body(struct pds_request *r, const struct http_client_response *res)
{
    memset(&r->res.result, 0, sizeof(r->res.result));
    if (res->body_len == 0)
        return ERR_PARSE;
    if (r->op == PDS_SEARCH)
        return fhir_parse_search(res->body, res->body_len, &r->res.result);
    return fhir_parse_patient(res->body, res->body_len, &r->res.result);
}

static enum pds_verdict judge_http(struct pds_request *r, const struct http_client_response *res,
                                   bool can_reauth, int *code)
{
    long s = res->status;
    int perr = parse_body(r, res);

    *code = 0;
    if (s >= 200 && s < 300) {
        *code = perr ? ERR_PARSE : 0;
        return PDS_VERDICT_DONE;
    }
    /* Retrieve's 404 is an answer (RESOURCE_NOT_FOUND or INVALIDATED_RESOURCE); a 404
     * without an OperationOutcome means a wrong base URL, which no retry mends. */
    if (s == 404 && r->op == PDS_RETRIEVE && r->res.result.kind == FHIR_ERROR)
        return PDS_VERDICT_DONE;
    if (s == 401 && can_reauth && !r->auth_retried)
        return PDS_VERDICT_REAUTH;
    if (is_retryable_status(s)) {
        *code = s == 408 ? ERR_UPSTREAM_TIMEOUT : ERR_UPSTREAM;
        return PDS_VERDICT_RETRY;
    }
    *code = s >= 400 && s < 500 ? ERR_UPSTREAM_REJECTED : ERR_UPSTREAM;
    return PDS_VERDICT_DONE;
}

enum pds_verdict pds_retry_judge(struct pds_request *r, int status,
                                 const struct http_client_response *res, bool can_reauth, int *code)
{
    r->res.http_status = res != NULL ? res->status : 0;
    if (status == 0)
        return judge_http(r, res, can_reauth, code);
    memset(&r->res.result, 0, sizeof(r->res.result));
    /* Connection failures and timeouts are worth another try; a body over the ceiling is
     * not, it would only be as large again, and neither is ERR_UPSTREAM_TLS: a refused
     * certificate stays refused (http_client has logged it once). */
    *code = status == ERR_TOO_LARGE ? ERR_UPSTREAM : status;
    if (status == ERR_UPSTREAM || status == ERR_UPSTREAM_TIMEOUT)
        return PDS_VERDICT_RETRY;
    return PDS_VERDICT_DONE;
}

/* ---- delays ---- */

/* Retry-After in delta-seconds; the HTTP-date form is ignored in favour of our backoff. */
static bool parse_retry_after(const char *v, long *secs)
{
    char *end = NULL;
    if (v == NULL || *v < '0' || *v > '9')
        return false;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < 0)
        return false;
    *secs = n > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : n;
    return true;
}

/* Exponential backoff with "equal jitter": half the delay is fixed so that a server
 * answering 429 is never hammered at once, the other half random so that clients spread. */
static uint64_t backoff_ms(const struct pds_client_config *cfg, unsigned attempt)
{
    unsigned shift = attempt > 1 ? attempt - 1 : 0;
    uint64_t d = cfg->backoff_base_ms;
    uint32_t rnd = 0;

    if (shift > 20)
        shift = 20;
    d <<= shift;
    if (d > cfg->backoff_max_ms)
        d = cfg->backoff_max_ms;
    if (crypto_random(&rnd, sizeof(rnd)) != 0)
        rnd = 0;
    return d / 2 + (d / 2 > 0 ? rnd % (d / 2 + 1) : 0);
}

uint64_t pds_retry_delay_ms(const struct pds_client_config *cfg, unsigned attempt,
                            const struct http_client_response *res)
{
    long secs;
    const char *ra = res != NULL ? http_client_response_header(res, "Retry-After") : NULL;
    if (parse_retry_after(ra, &secs))
        return (uint64_t)secs * 1000u;
    return backoff_ms(cfg, attempt);
}

/* An attempt never outlives its caller's deadline: a hung PDS ends the trace on time. */
unsigned pds_retry_attempt_timeout_ms(unsigned timeout_ms, uint64_t deadline_ns, uint64_t now)
{
    if (deadline_ns == 0)
        return timeout_ms;
    uint64_t left = deadline_ns > now ? (deadline_ns - now) / PDS_NS_PER_MS : 0;
    return left < 1 ? 1 : left < timeout_ms ? (unsigned)left : timeout_ms;
}
