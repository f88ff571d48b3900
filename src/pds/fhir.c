#include "pdstrace/fhir.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"

/* PDS bodies nest about ten levels deep. jansson recurses up to 2048 levels while parsing
 * and again while freeing, so anything deeper than this is refused before it is parsed. */
#define MAX_DEPTH 64

#define SPINE_SYSTEM         "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"
#define NHS_NUMBER_SYSTEM    "https://fhir.nhs.uk/Id/nhs-number"
#define VERIFICATION_URL_END "NHSNumberVerificationStatus"

/* The FHIR issue type, severity and display PDS sends with each Spine code (the examples
 * in tests/data/pds); unknown codes get "processing" and "error". */
static const struct outcome_kind {
    const char *code;
    const char *issue;
    const char *severity;
    const char *display;
} outcome_kinds[] = {
    {"ACCESS_DENIED", "forbidden", "error", "Access denied"},
    {"ADDITIONAL_PROPERTIES", "invariant", "error", "Additional properties should not be included"},
    {"INVALIDATED_RESOURCE", "processing", "error",
     "Resource that has been marked as invalid was requested - invalid resources cannot be "
     "retrieved"},
    {"INVALID_RESOURCE_ID", "value", "error", "Resource Id is invalid"},
    {"INVALID_SEARCH_DATA", "value", "error", "Search data is invalid"},
    {"INVALID_VALUE", "value", "error", "Provided value is invalid"},
    {"MISSING_VALUE", "required", "error", "Required value is missing"},
    {"RESOURCE_NOT_FOUND", "not-found", "information", "Resource not found"},
    {"UNSUPPORTED_SERVICE", "processing", "error", "Unsupported Service"},
    {"TOO_MANY_MATCHES", "multiple-matches", "information", "Too Many Matches"},
    {"TOO_MANY_REQUESTS", "throttled", "error", "You have exceeded your application's rate limit"},
    {"SERVICE_UNAVAILABLE", "transient", "error", "Service unavailable"},
};

/* The index of the quote that closes the string opened just before i, or len. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (; i < len && s[i] != '"'; i++)
        if (s[i] == '\\' && i + 1 < len)
            i++;
    return i;
}

/* Whether no array or object in s nests deeper than max. Brackets inside strings do not
 * count; the parser rejects anything malformed that this lenient scan lets through. */
static bool depth_ok(const char *s, size_t len, unsigned max)
{
    unsigned depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '"')
            i = skip_string(s, len, i + 1);
        else if ((c == '[' || c == '{') && ++depth > max)
            return false;
        else if ((c == ']' || c == '}') && depth > 0)
            depth--;
    }
    return true;
}

static json_t *load(const char *body, size_t len)
{
    if (body == NULL || len == 0 || !depth_ok(body, len, MAX_DEPTH))
        return NULL;
    /* Duplicate keys would let two readers of one body see different patients. */
    return json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
}

/* jansson's getters return NULL for a missing key or a value of another type, so every
 * lookup below degrades to "absent" on hostile shapes. */
static const char *get_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void copy_trunc(char *dst, size_t size, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* For values whose truncation would change their meaning (codes, postcodes): too long
 * reads as absent. */
static void copy_exact(char *dst, size_t size, const char *src)
{
    if (src == NULL || strlen(src) >= size)
        src = "";
    copy_trunc(dst, size, src);
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Whether the first n bytes of s are "YYYY", "YYYY-MM" or "YYYY-MM-DD". */
static bool date_shape(const char *s, size_t n)
{
    if (n != 4 && n != 7 && n != 10)
        return false;
    if (!all_digits(s, 4))
        return false;
    if (n >= 7 && (s[4] != '-' || !all_digits(s + 5, 2)))
        return false;
    return n < 10 || (s[7] == '-' && all_digits(s + 8, 2));
}

static void read_birth_date(char dst[11], const char *s)
{
    copy_exact(dst, 11, s && date_shape(s, strlen(s)) ? s : "");
}

/* deceasedDateTime is "YYYY-MM-DD" or "YYYY-MM-DDThh:mm:ss+zz:zz"; keep the date. */
static void read_death_date(char dst[11], const char *s)
{
    dst[0] = '\0';
    if (s == NULL || strnlen(s, 11) < 10 || !date_shape(s, 10))
        return;
    if (s[10] == '\0' || s[10] == 'T')
        copy_trunc(dst, 11, s);
}

static bool nhs_shape(const char *s)
{
    return s != NULL && strlen(s) == 10 && all_digits(s, 10);
}

static double read_score(const json_t *entry)
{
    const json_t *v = json_object_get(json_object_get(entry, "search"), "score");
    double d = json_is_number(v) ? json_number_value(v) : 0.0;
    /* An out-of-range score must not turn into an exact match by clamping. */
    return d >= 0.0 && d <= 1.0 ? d : 0.0;
}

static enum fhir_security security_of(const char *code)
{
    if (code == NULL || code[0] == '\0' || code[1] != '\0')
        return FHIR_SEC_UNKNOWN;
    switch (code[0]) {
    case 'U':
        return FHIR_SEC_U;
    case 'R':
        return FHIR_SEC_R;
    case 'V':
        return FHIR_SEC_V;
    default:
        return FHIR_SEC_UNKNOWN;
    }
}

/* With several labels the most restrictive wins, so a stray U never unmasks an R. */
static enum fhir_security read_security(const json_t *patient)
{
    const json_t *labels = json_object_get(json_object_get(patient, "meta"), "security");
    enum fhir_security sec = FHIR_SEC_UNKNOWN;
    size_t i;
    const json_t *label;
    json_array_foreach(labels, i, label)
    {
        enum fhir_security s = security_of(get_str(label, "code"));
        if (s > sec)
            sec = s;
    }
    return sec;
}

/* The identifier in the NHS number system, else the first one. */
static const json_t *nhs_identifier(const json_t *patient)
{
    const json_t *ids = json_object_get(patient, "identifier");
    size_t i;
    const json_t *id;
    json_array_foreach(ids, i, id)
    {
        const char *sys = get_str(id, "system");
        if (sys != NULL && strcmp(sys, NHS_NUMBER_SYSTEM) == 0)
            return id;
    }
    return json_array_get(ids, 0);
}

static bool ends_with(const char *s, const char *end)
{
    size_t n = strlen(s), m = strlen(end);
    return n >= m && memcmp(s + n - m, end, m) == 0;
}

static void read_verification(char dst[4], const json_t *patient)
{
    const json_t *exts = json_object_get(nhs_identifier(patient), "extension");
    size_t i;
    const json_t *ext;
    dst[0] = '\0';
    json_array_foreach(exts, i, ext)
    {
        const char *url = get_str(ext, "url");
        if (url == NULL || !ends_with(url, VERIFICATION_URL_END))
            continue;
        const json_t *coding =
            json_object_get(json_object_get(ext, "valueCodeableConcept"), "coding");
        copy_exact(dst, 4, get_str(json_array_get(coding, 0), "code"));
        return;
    }
}

/* The name with use "usual" (PDS holds one), else the first object in the array. */
static const json_t *pick_name(const json_t *names)
{
    size_t i;
    const json_t *name;
    json_array_foreach(names, i, name)
    {
        const char *use = get_str(name, "use");
        if (use != NULL && strcmp(use, "usual") == 0)
            return name;
    }
    return json_array_get(names, 0);
}

static void read_name(struct fhir_patient *p, const json_t *patient)
{
    const json_t *name = pick_name(json_object_get(patient, "name"));
    const json_t *given = json_object_get(name, "given");
    size_t i;
    const json_t *g;
    copy_trunc(p->family, sizeof(p->family), get_str(name, "family"));
    json_array_foreach(given, i, g)
    {
        if (p->n_given == FHIR_MAX_GIVEN)
            break;
        if (json_is_string(g))
            copy_trunc(p->given[p->n_given++], sizeof(p->given[0]), json_string_value(g));
    }
}

static bool is_current_home(const json_t *addr)
{
    const char *use = get_str(addr, "use");
    const json_t *period = json_object_get(addr, "period");
    return use != NULL && strcmp(use, "home") == 0 && json_object_get(period, "end") == NULL;
}

/* The current home address, else the first one (restricted records carry none). */
static const json_t *pick_address(const json_t *addrs)
{
    size_t i;
    const json_t *addr;
    json_array_foreach(addrs, i, addr)
    {
        if (is_current_home(addr))
            return addr;
    }
    return json_array_get(addrs, 0);
}

/* FHIR's AdministrativeGender codes; any other value reads as absent rather than being
 * copied, so that gender holds only what fhir.h promises. */
static void read_gender(char dst[16], const char *s)
{
    static const char *const codes[] = {"male", "female", "other", "unknown"};
    dst[0] = '\0';
    for (size_t i = 0; s != NULL && i < ARRAY_SIZE(codes); i++)
        if (strcmp(s, codes[i]) == 0)
            copy_trunc(dst, 16, s);
}

static int read_patient(struct fhir_patient *p, const json_t *res)
{
    const char *id = get_str(res, "id");
    const char *type = get_str(res, "resourceType");
    if (type == NULL || strcmp(type, "Patient") != 0 || !nhs_shape(id))
        return ERR_PARSE;
    copy_trunc(p->id, sizeof(p->id), id);
    p->security = read_security(res);
    read_birth_date(p->birth_date, get_str(res, "birthDate"));
    read_death_date(p->death_date, get_str(res, "deceasedDateTime"));
    read_name(p, res);
    read_gender(p->gender, get_str(res, "gender"));
    const json_t *addr = pick_address(json_object_get(res, "address"));
    copy_exact(p->postcode, sizeof(p->postcode), get_str(addr, "postalCode"));
    read_verification(p->verification, res);
    copy_exact(p->version, sizeof(p->version), get_str(json_object_get(res, "meta"), "versionId"));
    return 0;
}

/* Appends what fits of s to dst, always leaving room for the terminating NUL. */
static void emit(char *dst, size_t size, size_t *n, const char *s, size_t len)
{
    while (len-- > 0 && *n + 1 < size)
        dst[(*n)++] = *s++;
}

enum quote_state { OUTSIDE, KEEP, HIDE };

/* A quote closes the current span, or opens one that is kept only when it names a field. */
static enum quote_state on_quote(enum quote_state st, char *dst, size_t size, size_t *n)
{
    if (st != OUTSIDE) {
        emit(dst, size, n, "'", 1);
        return OUTSIDE;
    }
    st = *n >= 6 && memcmp(dst + *n - 6, "field ", 6) == 0 ? KEEP : HIDE;
    emit(dst, size, n, st == HIDE ? "'***" : "'", st == HIDE ? 4 : 1);
    return st;
}

/* Copies diagnostics, replacing each single-quoted value with '***' unless it names a
 * field ("... in field 'birthdate'"): PDS echoes the rejected value, which may be a name or
 * a date of birth from our own request. An unbalanced quote hides the rest. */
static void redact(char *dst, size_t size, const char *src)
{
    enum quote_state st = OUTSIDE;
    size_t n = 0;
    for (; src != NULL && *src != '\0'; src++) {
        if (*src == '\'')
            st = on_quote(st, dst, size, &n);
        else if (st != HIDE)
            emit(dst, size, &n, src, 1);
    }
    dst[n] = '\0';
}

static int read_outcome(const json_t *root, struct fhir_result *out)
{
    const json_t *issue = json_array_get(json_object_get(root, "issue"), 0);
    copy_exact(out->issue_code, sizeof(out->issue_code), get_str(issue, "code"));
    const json_t *coding =
        json_array_get(json_object_get(json_object_get(issue, "details"), "coding"), 0);
    copy_exact(out->error_code, sizeof(out->error_code), get_str(coding, "code"));
    redact(out->error_diagnostics, sizeof(out->error_diagnostics), get_str(issue, "diagnostics"));
    out->kind = strcmp(out->error_code, "TOO_MANY_MATCHES") == 0 ? FHIR_TOO_MANY : FHIR_ERROR;
    return 0;
}

static int read_bundle(const json_t *root, struct fhir_result *out)
{
    const json_t *entries = json_object_get(root, "entry");
    const char *type = get_str(root, "type");
    /* A history or collection Bundle is not an answer to a search. */
    if (type == NULL || strcmp(type, "searchset") != 0)
        return ERR_PARSE;
    if (entries == NULL) {
        out->kind = FHIR_SEARCH_NONE;
        return 0;
    }
    if (!json_is_array(entries))
        return ERR_PARSE;
    size_t n = json_array_size(entries);
    out->n_entries = n > UINT_MAX ? UINT_MAX : (unsigned)n;
    if (n != 1) {
        out->kind = n == 0 ? FHIR_SEARCH_NONE : FHIR_TOO_MANY;
        return 0;
    }
    const json_t *entry = json_array_get(entries, 0);
    int err = read_patient(&out->patient, json_object_get(entry, "resource"));
    if (err)
        return err;
    out->patient.score = read_score(entry);
    out->kind = FHIR_SEARCH_ONE;
    return 0;
}

static bool type_is(const json_t *root, const char *type)
{
    const char *t = get_str(root, "resourceType");
    return t != NULL && strcmp(t, type) == 0;
}

static int dispatch(const json_t *root, bool retrieve, struct fhir_result *out)
{
    if (type_is(root, "OperationOutcome"))
        return read_outcome(root, out);
    if (!retrieve && type_is(root, "Bundle"))
        return read_bundle(root, out);
    if (!retrieve)
        return ERR_PARSE;
    int err = read_patient(&out->patient, root);
    if (err)
        return err;
    out->patient.score = 1.0;
    out->kind = FHIR_PATIENT;
    return 0;
}

/* A refused body keeps its resourceType, so that the error can say what came back. */
static int parse(const char *body, size_t len, bool retrieve, struct fhir_result *out)
{
    char type[sizeof(out->resource_type)] = "";
    memset(out, 0, sizeof(*out));
    json_t *root = load(body, len);
    copy_exact(type, sizeof(type), get_str(root, "resourceType"));
    int err = root ? dispatch(root, retrieve, out) : ERR_PARSE;
    json_decref(root);
    if (err)
        memset(out, 0, sizeof(*out));
    memcpy(out->resource_type, type, sizeof(type));
    return err;
}

/* Codes and resource types are short words; anything else is not repeated to a caller. */
static bool is_word(const char *s)
{
    for (; *s != '\0'; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '-' || *s == '_'))
            return false;
    return true;
}

void fhir_describe(const struct fhir_result *r, char *out, size_t size)
{
    const char *code = r->error_code[0] != '\0' ? r->error_code : r->issue_code;
    if (!is_word(code))
        code = "";
    if (r->resource_type[0] == '\0' || !is_word(r->resource_type))
        snprintf(out, size, "a body that is not a FHIR resource");
    else if (strcmp(r->resource_type, "OperationOutcome") == 0 && code[0] != '\0')
        snprintf(out, size, "OperationOutcome %s", code);
    else
        snprintf(out, size, "%s", r->resource_type);
}

int fhir_parse_search(const char *body, size_t len, struct fhir_result *out)
{
    return parse(body, len, false, out);
}

int fhir_parse_patient(const char *body, size_t len, struct fhir_result *out)
{
    return parse(body, len, true, out);
}

bool fhir_birth_date_agrees(const char *pds_date, const char *yyyy_mm_dd)
{
    if (pds_date == NULL || yyyy_mm_dd == NULL)
        return false;
    size_t n = strlen(pds_date);
    if (!date_shape(pds_date, n) || strlen(yyyy_mm_dd) != 10 || !date_shape(yyyy_mm_dd, 10))
        return false;
    return memcmp(pds_date, yyyy_mm_dd, n) == 0;
}

bool fhir_birth_date_contradicts(const char *pds_date, const char *yyyy_mm_dd)
{
    if (pds_date == NULL || pds_date[0] == '\0')
        return false;
    return !fhir_birth_date_agrees(pds_date, yyyy_mm_dd);
}

static const struct outcome_kind *outcome_kind_of(const char *code)
{
    static const struct outcome_kind fallback = {NULL, "processing", "error", NULL};
    for (size_t i = 0; i < ARRAY_SIZE(outcome_kinds); i++)
        if (strcmp(outcome_kinds[i].code, code) == 0)
            return &outcome_kinds[i];
    return &fallback;
}

json_t *fhir_operation_outcome(const char *code, const char *display, const char *diagnostics)
{
    if (code == NULL)
        return NULL;
    const struct outcome_kind *k = outcome_kind_of(code);
    if (display == NULL)
        display = k->display ? k->display : code;
    json_t *coding = json_pack("{s:s, s:s, s:s, s:s}", "system", SPINE_SYSTEM, "version", "1",
                               "code", code, "display", display);
    json_t *issue = json_pack("{s:s, s:s, s:{s:[o]}}", "severity", k->severity, "code", k->issue,
                              "details", "coding", coding);
    if (issue != NULL && diagnostics != NULL &&
        json_object_set_new(issue, "diagnostics", json_string(diagnostics)) != 0) {
        json_decref(issue);
        return NULL;
    }
    return json_pack("{s:s, s:[o]}", "resourceType", "OperationOutcome", "issue", issue);
}
