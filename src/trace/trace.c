#include "pdstrace/trace.h"

#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <strings.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/cache.h"
#include "pdstrace/cascade.h"
#include "pdstrace/crypto.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/fhir.h"
#include "pdstrace/objections.h"
#include "pdstrace/pds_client.h"
#include "pdstrace/trace_result.h"

struct trace_service {
    struct pds_client *pds;
    struct cache *cache;
    struct trace_service_config cfg;
    unsigned active;
    bool closing;
};

enum trace_state {
    TRACE_STATE_LOOKUP, /* cache */
    TRACE_STATE_VERIFY, /* retrieve the held number */
    TRACE_STATE_SEARCH, /* the cascade */
};

#define DEFAULT_DEADLINE_MS 30000u
#define NS_PER_MS           1000000ull

/* A trace owns everything it allocates and is freed in finish(), after its callback. */
struct trace_job {
    struct trace_service *svc;
    enum trace_state state;
    struct demographics d;
    char trace_id[CRYPTO_UUID_SIZE + 64];
    struct trace_call call;
    uint64_t deadline_ns;
    struct cascade cascade;
    struct buf query;
    struct trace_result result;
    unsigned pds_requests;
    bool held_invalidated; /* the retrieve of the held number said INVALIDATED_RESOURCE */
    char detail[128];
};

static void advance(struct trace_job *job);

/* A number is only ever answered after the registry says nobody objected to its use: by
 * the case (recorded while the trace ran) or by the number. Returns 0 or
 * ERR_OBJECTIONS_UNAVAILABLE. */
static int honour_objections(struct trace_job *job)
{
    struct trace_result *r = &job->result;
    if (job->svc->cfg.objections == NULL || r->nhs_number[0] == '\0')
        return 0;
    int found = objections_check(job->svc->cfg.objections, job->d.case_id, r->nhs_number);
    if (found < 0)
        return found;
    if (found > 0)
        trace_result_withhold(r);
    return 0;
}

static void finish(struct trace_job *job, int status)
{
    if (status == 0 && job->svc->cache != NULL && job->result.source == TRACE_SOURCE_PDS)
        cache_put(job->svc->cache, &job->d, &job->result);
    if (status == 0)
        status = honour_objections(job);
    job->svc->active--;
    job->call.cb(status, status == 0 ? &job->result : NULL, job->detail, job->call.arg);
    buf_free(&job->query);
    free(job);
}

static bool job_gone(void *arg)
{
    const struct trace_job *job = arg;
    return job->call.gone != NULL && job->call.gone(job->call.arg);
}

/* Whether PDS's answer says something about the person. Anything else (NHS England's
 * sandbox answers "not-supported" at 200, a proxy may answer an HTML page) means we do not
 * know, and must never be read as "no match". */
static bool is_definite(const struct trace_job *job, const struct pds_response *res)
{
    const struct fhir_result *r = &res->result;
    if (job->state == TRACE_STATE_SEARCH)
        return r->kind == FHIR_SEARCH_NONE || r->kind == FHIR_SEARCH_ONE ||
               r->kind == FHIR_TOO_MANY;
    if (res->http_status == 200)
        return r->kind == FHIR_PATIENT;
    return r->kind == FHIR_ERROR && (strcmp(r->error_code, "RESOURCE_NOT_FOUND") == 0 ||
                                     strcmp(r->error_code, "INVALIDATED_RESOURCE") == 0);
}

/* Ends the trace when PDS failed or refused, or answered nothing definite; the detail
 * names what came back. Returns true when the trace has ended. */
static bool pds_failed(struct trace_job *job, int status, const struct pds_response *res)
{
    char what[64];
    if (status == 0 && is_definite(job, res))
        return false;
    if (res != NULL && (status == 0 || status == ERR_PARSE || status == ERR_UPSTREAM_REJECTED)) {
        fhir_describe(&res->result, what, sizeof(what));
        snprintf(job->detail, sizeof(job->detail), "the %s: %s",
                 job->state == TRACE_STATE_SEARCH ? "search" : "retrieve", what);
        status = ERR_UPSTREAM_REJECTED;
    }
    finish(job, status);
    return true;
}

static void on_lookup(int status, const struct trace_result *r, void *arg)
{
    struct trace_job *job = arg;
    if (status == 0) {
        job->result = *r;
        finish(job, 0);
        return;
    }
    job->state = job->d.nhs_number[0] != '\0' ? TRACE_STATE_VERIFY : TRACE_STATE_SEARCH;
    advance(job);
}

/* A held number stands when PDS knows it (or its successor) and the birth date, and the
 * family name where PDS holds one, agree with the request. */
static bool verified(const struct trace_job *job, const struct fhir_patient *p)
{
    if (!fhir_birth_date_agrees(p->birth_date, job->d.birth_date))
        return false;
    return p->family[0] == '\0' || strcasecmp(p->family, job->d.family) == 0;
}

static void on_verify(int status, const struct pds_response *res, void *arg)
{
    struct trace_job *job = arg;
    job->pds_requests++;
    if (pds_failed(job, status, res))
        return;
    const struct fhir_patient *p = &res->result.patient;
    if (res->result.kind != FHIR_PATIENT || !verified(job, p)) {
        job->held_invalidated = res->result.kind == FHIR_ERROR &&
                                strcmp(res->result.error_code, "INVALIDATED_RESOURCE") == 0;
        job->state = TRACE_STATE_SEARCH;
        advance(job);
        return;
    }
    job->result = (struct trace_result){.outcome = TRACE_MATCHED, .score = 1.0};
    memcpy(job->result.nhs_number, p->id, sizeof(p->id));
    job->result.restricted = p->security == FHIR_SEC_R || p->security == FHIR_SEC_V;
    job->result.deceased = p->death_date[0] != '\0';
    if (strcmp(p->id, job->d.nhs_number) != 0)
        memcpy(job->result.superseded_from, job->d.nhs_number, sizeof(job->d.nhs_number));
    job->result.steps = job->pds_requests;
    finish(job, 0);
}

static void on_search(int status, const struct pds_response *res, void *arg)
{
    struct trace_job *job = arg;
    job->pds_requests++;
    if (pds_failed(job, status, res))
        return;
    cascade_feed(&job->cascade, &res->result);
    advance(job);
}

/* Starts the next search, or decides when the cascade is over (returns 1). */
static int search_next(struct trace_job *job, const struct pds_call *call)
{
    int more = cascade_query(&job->cascade, &job->query);
    if (more == 1)
        return pds_client_search(job->svc->pds, buf_cstr(&job->query), call, on_search, job);
    if (more < 0)
        return more;
    cascade_result(&job->cascade, &job->result);
    job->result.steps = job->pds_requests;
    job->result.held_invalidated = job->held_invalidated;
    return 1;
}

/* Starts the next PDS request, unless nobody waits for the answer any more or the
 * deadline has passed: either way another request could only spend the rate budget. */
static int start_pds(struct trace_job *job)
{
    const struct pds_call call = {job->trace_id, job->deadline_ns, job_gone,
                                  job->call.bulk ? PDS_PRIORITY_BULK : PDS_PRIORITY_TRACE};
    if (job_gone(job))
        return UV_ECANCELED;
    if (uv_hrtime() >= job->deadline_ns)
        return ERR_UPSTREAM_TIMEOUT;
    if (job->state == TRACE_STATE_VERIFY)
        return pds_client_retrieve(job->svc->pds, job->d.nhs_number, &call, on_verify, job);
    return search_next(job, &call);
}

/* Starts the current state's asynchronous work (CONVENTIONS.md §2.5: one short function
 * per state). Returns 0 when a callback will follow, 1 when the trace is decided, or <0
 * when nothing could be started. */
static int start(struct trace_job *job)
{
    if (job->state != TRACE_STATE_LOOKUP)
        return start_pds(job);
    if (job->svc->cache != NULL && cache_get(job->svc->cache, &job->d, on_lookup, job) == 0)
        return 0;
    /* No cache, or Redis is away: go straight to PDS. */
    job->state = job->d.nhs_number[0] != '\0' ? TRACE_STATE_VERIFY : TRACE_STATE_SEARCH;
    return start_pds(job);
}

static void advance(struct trace_job *job)
{
    int r = job->svc->closing ? UV_ECANCELED : start(job);
    if (r != 0)
        finish(job, r == 1 ? 0 : r);
}

int trace_service_new(struct trace_service **out, struct pds_client *pds, struct cache *cache,
                      const struct trace_service_config *cfg)
{
    struct trace_service *svc = calloc(1, sizeof(*svc));
    if (svc == NULL)
        return UV_ENOMEM;
    svc->pds = pds;
    svc->cache = cache;
    svc->cfg = *cfg;
    if (svc->cfg.deadline_ms == 0)
        svc->cfg.deadline_ms = DEFAULT_DEADLINE_MS;
    *out = svc;
    return 0;
}

void trace_service_free(struct trace_service *svc)
{
    free(svc);
}

void trace_service_shutdown(struct trace_service *svc)
{
    svc->closing = true;
}

unsigned trace_service_active(const struct trace_service *svc)
{
    return svc->active;
}

/* An objection by case stops the trace before PDS hears of it. Without a current copy of
 * the registry that cannot be known, so a trace for a case does not start. */
static int case_objection(const struct trace_service *svc, const struct demographics *d)
{
    if (svc->cfg.objections == NULL || d->case_id[0] == '\0')
        return 0;
    int found = objections_check(svc->cfg.objections, d->case_id, NULL);
    return found > 0 ? ERR_OBJECTION : found;
}

int trace_run(struct trace_service *svc, const struct demographics *d,
              const struct trace_call *call)
{
    int err = case_objection(svc, d);
    if (err)
        return err;
    struct trace_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return UV_ENOMEM;
    job->svc = svc;
    job->d = *d;
    job->call = *call;
    snprintf(job->trace_id, sizeof(job->trace_id), "%s", call->trace_id);
    job->call.trace_id = job->trace_id;
    unsigned deadline_ms = call->deadline_ms ? call->deadline_ms : svc->cfg.deadline_ms;
    job->deadline_ns = uv_hrtime() + (uint64_t)deadline_ms * NS_PER_MS;
    buf_init(&job->query, 8192);
    cascade_init(&job->cascade, &job->d, &svc->cfg.cascade);
    job->result.score = -1;
    job->state = TRACE_STATE_LOOKUP;
    /* The first search (EXACT) always applies, so start() cannot decide at once here:
     * it either starts asynchronous work or fails without calling back. */
    err = start(job);
    if (err) {
        buf_free(&job->query);
        free(job);
        return err < 0 ? err : ERR_INTERNAL;
    }
    svc->active++;
    return 0;
}
