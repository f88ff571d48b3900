#include "pdstrace/trace.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/cache.h"
#include "pdstrace/cascade.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/fhir.h"
#include "pdstrace/pds_client.h"

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

/* A trace owns everything it allocates and is freed in finish(), after its callback. */
struct trace_job {
    struct trace_service *svc;
    enum trace_state state;
    struct demographics d;
    char trace_id[CRYPTO_UUID_SIZE + 64];
    struct cascade cascade;
    struct buf query;
    struct trace_result result;
    unsigned pds_requests;
    trace_cb *cb;
    void *arg;
};

static void advance(struct trace_job *job);

static void finish(struct trace_job *job, int status, const char *detail)
{
    if (status == 0 && job->svc->cache != NULL && job->result.source == TRACE_SOURCE_PDS)
        cache_put(job->svc->cache, &job->d, &job->result);
    job->svc->active--;
    job->cb(status, status == 0 ? &job->result : NULL, detail != NULL ? detail : "", job->arg);
    buf_free(&job->query);
    free(job);
}

/* Turns a failed or refused PDS answer into the trace's failure. */
static int pds_failed(struct trace_job *job, int status, const struct pds_response *res)
{
    if (status == 0)
        return 0;
    finish(job, status, res != NULL ? res->result.error_code : "");
    return -1;
}

static void on_lookup(int status, const struct trace_result *r, void *arg)
{
    struct trace_job *job = arg;
    if (status == 0) {
        job->result = *r;
        finish(job, 0, NULL);
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
        job->state = TRACE_STATE_SEARCH;
        advance(job);
        return;
    }
    job->result = (struct trace_result){.outcome = TRACE_MATCHED, .score = 1.0};
    memcpy(job->result.nhs_number, p->id, sizeof(p->id));
    job->result.restricted = p->security == FHIR_SEC_R || p->security == FHIR_SEC_V;
    if (strcmp(p->id, job->d.nhs_number) != 0)
        memcpy(job->result.superseded_from, job->d.nhs_number, sizeof(job->d.nhs_number));
    job->result.steps = job->pds_requests;
    finish(job, 0, NULL);
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
static int search_next(struct trace_job *job)
{
    int more = cascade_query(&job->cascade, &job->query);
    if (more == 1)
        return pds_client_search(job->svc->pds, buf_cstr(&job->query), job->trace_id, on_search,
                                 job);
    if (more < 0)
        return more;
    cascade_result(&job->cascade, &job->result);
    job->result.steps = job->pds_requests;
    return 1;
}

/* Starts the current state's asynchronous work (CONVENTIONS.md §2.5: one short function
 * per state). Returns 0 when a callback will follow, 1 when the trace is decided, or <0
 * when nothing could be started. */
static int start(struct trace_job *job)
{
    switch (job->state) {
    case TRACE_STATE_LOOKUP:
        if (job->svc->cache != NULL && cache_get(job->svc->cache, &job->d, on_lookup, job) == 0)
            return 0;
        /* No cache, or Redis is away: go straight to PDS. */
        job->state = job->d.nhs_number[0] != '\0' ? TRACE_STATE_VERIFY : TRACE_STATE_SEARCH;
        return start(job);
    case TRACE_STATE_VERIFY:
        return pds_client_retrieve(job->svc->pds, job->d.nhs_number, job->trace_id, on_verify, job);
    case TRACE_STATE_SEARCH:
        return search_next(job);
    }
    return ERR_INTERNAL;
}

static void advance(struct trace_job *job)
{
    int r = job->svc->closing ? UV_ECANCELED : start(job);
    if (r != 0)
        finish(job, r == 1 ? 0 : r, NULL);
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

int trace_run(struct trace_service *svc, const struct demographics *d, const char *trace_id,
              trace_cb *cb, void *arg)
{
    struct trace_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return UV_ENOMEM;
    job->svc = svc;
    job->d = *d;
    snprintf(job->trace_id, sizeof(job->trace_id), "%s", trace_id);
    job->cb = cb;
    job->arg = arg;
    buf_init(&job->query, 8192);
    cascade_init(&job->cascade, &job->d, &svc->cfg.bands, svc->cfg.fuzzy);
    job->result.score = -1;
    job->state = TRACE_STATE_LOOKUP;
    /* The first search (EXACT) always applies, so start() cannot decide at once here:
     * it either starts asynchronous work or fails without calling back. */
    int err = start(job);
    if (err) {
        buf_free(&job->query);
        free(job);
        return err < 0 ? err : ERR_INTERNAL;
    }
    svc->active++;
    return 0;
}
