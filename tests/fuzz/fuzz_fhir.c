/* libFuzzer harness: the PDS response parsers, fhir_parse_search and fhir_parse_patient,
 * on the same bytes. Invariants (include/pdstrace/fhir.h): a failure is ERR_PARSE with
 * kind FHIR_UNPARSED; a search never yields a retrieved Patient and a retrieve never a
 * search kind; a patient has a 10-digit id, a score in 0..1 (1 on retrieve), strings of
 * the documented shapes; diagnostics keep no quoted value except a field name. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/fhir.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static void require(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* "", "YYYY", "YYYY-MM" or "YYYY-MM-DD" (digits only: the calendar is not checked). */
static bool date_like(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return true;
    if ((n != 4 && n != 7 && n != 10) || !digits(s, 4))
        return false;
    if (n >= 7 && (s[4] != '-' || !digits(s + 5, 2)))
        return false;
    return n < 10 || (s[7] == '-' && digits(s + 8, 2));
}

static bool one_of(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return true;
    return false;
}

static void check_patient(const struct fhir_patient *p)
{
    static const char *const genders[] = {"", "male", "female", "other", "unknown"};

    require(strlen(p->id) == 10 && digits(p->id, 10));
    require(p->score >= 0.0 && p->score <= 1.0);
    require(p->security <= FHIR_SEC_V && p->n_given <= FHIR_MAX_GIVEN);
    require(date_like(p->birth_date) && date_like(p->death_date));
    require(strlen(p->death_date) == 0 || strlen(p->death_date) == 10);
    require(one_of(p->gender, genders, sizeof genders / sizeof genders[0]));
    require(strlen(p->postcode) < sizeof p->postcode && strlen(p->version) < sizeof p->version);
    require(strlen(p->verification) < sizeof p->verification);
    (void)fhir_birth_date_agrees(p->birth_date, "2000-01-01");
}

/* Each quoted span in the redacted text is '***' (or cut short by the size limit), or
 * follows "field ". */
static void check_redacted(const char *s)
{
    bool inside = false;
    for (const char *q = s; (q = strchr(q, '\'')) != NULL; q++) {
        inside = !inside;
        if (!inside || (q - s >= 6 && memcmp(q - 6, "field ", 6) == 0))
            continue;
        size_t rest = strlen(q + 1);
        require(strncmp(q + 1, "***", 3) == 0 || strncmp(q + 1, "***", rest) == 0);
        require(rest < 3 || q[4] == '\0' || q[4] == '\'');
    }
}

static void check(int rc, const struct fhir_result *r, bool retrieve)
{
    if (rc != 0) {
        require(rc == ERR_PARSE && r->kind == FHIR_UNPARSED);
        return;
    }
    require(r->kind != FHIR_UNPARSED && r->kind <= FHIR_PATIENT);
    require(retrieve ? r->kind == FHIR_PATIENT || r->kind == FHIR_TOO_MANY || r->kind == FHIR_ERROR
                     : r->kind != FHIR_PATIENT);
    if (r->kind == FHIR_SEARCH_ONE || r->kind == FHIR_PATIENT)
        check_patient(&r->patient);
    if (r->kind == FHIR_PATIENT)
        require(r->patient.score == 1.0);
    if (r->kind == FHIR_SEARCH_ONE)
        require(r->n_entries == 1);
    require(strlen(r->error_code) < sizeof r->error_code);
    require(strlen(r->error_diagnostics) < sizeof r->error_diagnostics);
    check_redacted(r->error_diagnostics);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct fhir_result r;

    check(fhir_parse_search((const char *)d, n, &r), &r, false);
    check(fhir_parse_patient((const char *)d, n, &r), &r, true);
    return 0;
}
