#include "pdstrace/fhir.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "test_util.h"

TestSuite(fhir, .timeout = 60);

/* ---- helpers ---------------------------------------------------------------------- */

static char *load_example(const char *dir, const char *file, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/pds/%s/%s", PDS_TEST_DATA, dir, file);
    char *body = read_file(path, len);
    cr_assert_not_null(body, "cannot read %s", path);
    return body;
}

/* Serialises j (stolen) and parses it as a search (or retrieve) answer. */
static int parse_json(json_t *j, bool retrieve, struct fhir_result *r)
{
    cr_assert_not_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cr_assert_not_null(s);
    int rc = retrieve ? fhir_parse_patient(s, strlen(s), r) : fhir_parse_search(s, strlen(s), r);
    free(s);
    return rc;
}

static int parse_str(const char *s, bool retrieve, struct fhir_result *r)
{
    return retrieve ? fhir_parse_patient(s, strlen(s), r) : fhir_parse_search(s, strlen(s), r);
}

static json_t *patient_min(void)
{
    return json_pack("{s:s, s:s}", "resourceType", "Patient", "id", "9000000009");
}

/* A one-entry Bundle around patient (stolen); score NULL leaves search out. */
static json_t *bundle_of(json_t *patient, json_t *score)
{
    json_t *entry = json_pack("{s:o}", "resource", patient);
    if (score != NULL)
        json_object_set_new(entry, "search", json_pack("{s:o}", "score", score));
    return json_pack("{s:s, s:s, s:i, s:[o]}", "resourceType", "Bundle", "type", "searchset",
                     "total", 1, "entry", entry);
}

static void assert_unparsed(int rc, const struct fhir_result *r)
{
    cr_assert_eq(rc, ERR_PARSE, "rc %d", rc);
    cr_assert_eq(r->kind, FHIR_UNPARSED);
    cr_assert_str_eq(r->patient.id, "");
}

/* ---- every example file ----------------------------------------------------------- */

struct example {
    char dir[16];
    char file[64];
    enum fhir_kind kind;
    unsigned n_entries;
    char id[11];
    double score;
    enum fhir_security security;
    char birth_date[11];
    char postcode[9];
    char family[32];
    unsigned n_given;
    char given0[16];
    char gender[16];
    char verification[4];
    char version[16];
    char death_date[11];
    char error_code[48];
};

static struct example examples[] = {
    {"search", "Minimal_PatientSearch.json", FHIR_SEARCH_ONE, 1, "9000000033", 0.75, FHIR_SEC_U, "",
     "", "", 0, "", "", "01", "2", "", ""},
    {"search", "PatientSearch.json", FHIR_SEARCH_ONE, 1, "9000000009", 0.75, FHIR_SEC_U,
     "2010-10-22", "LS1 6AE", "Smith", 1, "Jane", "female", "01", "2", "2010-10-22", ""},
    {"search", "Sensitive_PatientSearch.json", FHIR_SEARCH_ONE, 1, "9000000025", 0.75, FHIR_SEC_R,
     "2005-06-16", "", "Smythe", 1, "Janet", "female", "01", "2", "2005-06-16", ""},
    {"search", "TOO_MANY_MATCHES.json", FHIR_TOO_MANY, 0, "", 0, FHIR_SEC_UNKNOWN, "", "", "", 0,
     "", "", "", "", "", "TOO_MANY_MATCHES"},
    /* A superseded number comes back as its superseding record: nothing marks it here. */
    {"search", "cuff_superseded_searchset.json", FHIR_SEARCH_ONE, 1, "9732019395", 1.0, FHIR_SEC_U,
     "1926-01-07", "DN20 0PQ", "CUFF", 1, "Jane", "female", "01", "2", "", ""},
    {"search", "mock_single_searchset.json", FHIR_SEARCH_ONE, 1, "5900054586", 1.0, FHIR_SEC_U,
     "1954-10-26", "BAP4WG", "McMatch-Single", 1, "Mickey", "male", "01", "1", "", ""},
    {"search", "NOT_SUPPORTED_SEARCH.json", FHIR_ERROR, 0, "", 0, FHIR_SEC_UNKNOWN, "", "", "", 0,
     "", "", "", "", "", ""},
    {"search", "pauline_attison_searchset.json", FHIR_TOO_MANY, 2, "", 0, FHIR_SEC_UNKNOWN, "", "",
     "", 0, "", "", "", "", "", ""},
    {"search", "rodney_godsoe_searchset.json", FHIR_SEARCH_ONE, 1, "9693632125", 1.0, FHIR_SEC_R,
     "1936-02-24", "", "GODSOE", 2, "Rodney", "male", "01", "2", "", ""},
    {"search", "youds_searchset.json", FHIR_TOO_MANY, 4, "", 0, FHIR_SEC_UNKNOWN, "", "", "", 0, "",
     "", "", "", "", ""},
    {"retrieve", "Minimal_Patient.json", FHIR_PATIENT, 0, "9000000033", 1.0, FHIR_SEC_U, "", "", "",
     0, "", "", "01", "2", "", ""},
    {"retrieve", "Patient.json", FHIR_PATIENT, 0, "9000000009", 1.0, FHIR_SEC_U, "2010-10-22",
     "LS1 6AE", "Smith", 1, "Jane", "female", "01", "2", "2010-10-22", ""},
    {"retrieve", "Sensitive_Patient.json", FHIR_PATIENT, 0, "9000000025", 1.0, FHIR_SEC_R,
     "2010-10-22", "", "Smythe", 1, "Janet", "female", "01", "2", "2010-10-22", ""},
};

ParameterizedTestParameters(fhir, parses_example)
{
    return cr_make_param_array(struct example, examples, ARRAY_SIZE(examples));
}

ParameterizedTest(struct example *e, fhir, parses_example)
{
    size_t len;
    char *body = load_example(e->dir, e->file, &len);
    struct fhir_result r;
    bool retrieve = strcmp(e->dir, "retrieve") == 0;
    int rc = retrieve ? fhir_parse_patient(body, len, &r) : fhir_parse_search(body, len, &r);
    free(body);
    const struct fhir_patient *p = &r.patient;
    cr_assert_eq(rc, 0, "%s: rc %d", e->file, rc);
    cr_assert_eq(r.kind, e->kind, "%s: kind %d", e->file, r.kind);
    cr_assert_eq(r.n_entries, e->n_entries);
    cr_assert_str_eq(p->id, e->id);
    cr_assert_float_eq(p->score, e->score, 1e-9);
    cr_assert_eq(p->security, e->security);
    cr_assert_str_eq(p->birth_date, e->birth_date);
    cr_assert_str_eq(p->postcode, e->postcode);
    cr_assert_str_eq(p->family, e->family);
    cr_assert_eq(p->n_given, e->n_given);
    cr_assert_str_eq(p->given[0], e->given0);
    cr_assert_str_eq(p->gender, e->gender);
    cr_assert_str_eq(p->verification, e->verification);
    cr_assert_str_eq(p->version, e->version);
    cr_assert_str_eq(p->death_date, e->death_date);
    cr_assert_str_eq(r.error_code, e->error_code);
}

Test(fhir, second_given_name_is_kept)
{
    size_t len;
    char *body = load_example("search", "rodney_godsoe_searchset.json", &len);
    struct fhir_result r;
    cr_assert_eq(fhir_parse_search(body, len, &r), 0);
    free(body);
    cr_assert_str_eq(r.patient.given[1], "Jeff");
}

Test(fhir, search_parser_refuses_a_bare_patient_and_retrieve_a_bundle)
{
    struct fhir_result r;
    size_t len;
    char *body = load_example("retrieve", "Patient.json", &len);
    assert_unparsed(fhir_parse_search(body, len, &r), &r);
    free(body);
    body = load_example("search", "PatientSearch.json", &len);
    assert_unparsed(fhir_parse_patient(body, len, &r), &r);
    free(body);
}

struct error_example {
    char file[48];
    char code[48];
    bool has_diagnostics; /* the file holds the "#(diagnostics)" placeholder */
};

static struct error_example error_examples[] = {
    {"ACCESS_DENIED.json", "ACCESS_DENIED", true},
    {"ADDITIONAL_PROPERTIES.json", "ADDITIONAL_PROPERTIES", true},
    {"INVALIDATED_RESOURCE.json", "INVALIDATED_RESOURCE", false},
    {"INVALID_RESOURCE_ID.json", "INVALID_RESOURCE_ID", false},
    {"INVALID_SEARCH_DATA.json", "INVALID_SEARCH_DATA", true},
    {"INVALID_VALUE.json", "INVALID_VALUE", true},
    {"MISSING_VALUE.json", "MISSING_VALUE", true},
    {"RESOURCE_NOT_FOUND.json", "RESOURCE_NOT_FOUND", false},
    {"UNSUPPORTED_SERVICE.json", "UNSUPPORTED_SERVICE", false},
};

ParameterizedTestParameters(fhir, parses_error_example)
{
    return cr_make_param_array(struct error_example, error_examples, ARRAY_SIZE(error_examples));
}

/* Searches and retrieves both meet these bodies, so both parsers must read them. */
ParameterizedTest(struct error_example *e, fhir, parses_error_example)
{
    size_t len;
    char *body = load_example("errors", e->file, &len);
    for (int retrieve = 0; retrieve < 2; retrieve++) {
        struct fhir_result r;
        int rc = retrieve ? fhir_parse_patient(body, len, &r) : fhir_parse_search(body, len, &r);
        cr_assert_eq(rc, 0);
        cr_assert_eq(r.kind, FHIR_ERROR);
        cr_assert_str_eq(r.error_code, e->code);
        cr_assert_str_eq(r.error_diagnostics, e->has_diagnostics ? "#(diagnostics)" : "");
        cr_assert_str_eq(r.patient.id, "");
    }
    free(body);
}

ParameterizedTestParameters(fhir, builder_reproduces_error_example)
{
    return cr_make_param_array(struct error_example, error_examples, ARRAY_SIZE(error_examples));
}

/* Builds each example with fhir_operation_outcome and compares the whole tree, so the
 * mock PDS answers in exactly PDS's shape (issue type and severity per code). */
ParameterizedTest(struct error_example *e, fhir, builder_reproduces_error_example)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/pds/errors/%s", PDS_TEST_DATA, e->file);
    json_t *file = json_load_file(path, 0, NULL);
    cr_assert_not_null(file);
    /* ACCESS_DENIED's display is a run-time placeholder in the example. */
    const char *display = strcmp(e->code, "ACCESS_DENIED") == 0 ? "#(display)" : NULL;
    json_t *built =
        fhir_operation_outcome(e->code, display, e->has_diagnostics ? "#(diagnostics)" : NULL);
    cr_assert_not_null(built);
    char *got = json_dumps(built, JSON_SORT_KEYS);
    cr_assert(json_equal(built, file), "built %s", got);
    free(got);
    json_decref(built);
    json_decref(file);
}

Test(fhir, builder_reproduces_too_many_matches)
{
    json_t *file = json_load_file(PDS_TEST_DATA "/pds/search/TOO_MANY_MATCHES.json", 0, NULL);
    json_t *built = fhir_operation_outcome("TOO_MANY_MATCHES", NULL, NULL);
    cr_assert(json_equal(built, file));
    json_decref(built);
    json_decref(file);
}

/* A new example dropped into tests/data/pds must get a row in the tables above. */
static unsigned count_json(const char *dir)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/pds/%s", PDS_TEST_DATA, dir);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s", path);
    unsigned n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        n += l > 5 && strcmp(de->d_name + l - 5, ".json") == 0;
    }
    closedir(d);
    return n;
}

static unsigned count_rows(const char *dir)
{
    unsigned n = 0;
    for (size_t i = 0; i < ARRAY_SIZE(examples); i++)
        n += strcmp(examples[i].dir, dir) == 0;
    return n;
}

Test(fhir, tables_cover_every_example_file)
{
    cr_assert_eq(count_json("search"), count_rows("search"));
    cr_assert_eq(count_json("retrieve"), count_rows("retrieve"));
    cr_assert_eq(count_json("errors"), ARRAY_SIZE(error_examples));
}

/* ---- shapes the examples do not show ---------------------------------------------- */

Test(fhir, bundle_without_entry_is_no_match)
{
    struct fhir_result r;
    cr_assert_eq(
        parse_str("{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":0}", false, &r),
        0);
    cr_assert_eq(r.kind, FHIR_SEARCH_NONE);
    cr_assert_eq(parse_str("{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":0,"
                           "\"entry\":[]}",
                           false, &r),
                 0);
    cr_assert_eq(r.kind, FHIR_SEARCH_NONE);
    cr_assert_eq(r.n_entries, 0);
}

Test(fhir, partial_birth_dates_are_kept_malformed_ones_dropped)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {{"1970", "1970"},
                 {"1970-03", "1970-03"},
                 {"1970-03-01", "1970-03-01"},
                 {"1970-3-1", ""},
                 {"19700301", ""},
                 {"1970-03-01T00:00", ""},
                 {"abcd", ""},
                 {"", ""},
                 {"1970-03-0x", ""}};
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *p = patient_min();
        json_object_set_new(p, "birthDate", json_string(cases[i].in));
        struct fhir_result r;
        cr_assert_eq(parse_json(p, true, &r), 0);
        cr_assert_str_eq(r.patient.birth_date, cases[i].out, "in %s", cases[i].in);
    }
}

Test(fhir, null_address_lines_and_missing_given_names)
{
    json_t *p = patient_min();
    json_object_set_new(p, "address",
                        json_pack("[{s:s, s:[n, s, n], s:s}]", "use", "home", "line",
                                  "1 Test Street", "postalCode", "LS1 6AE"));
    json_object_set_new(p, "name", json_pack("[{s:s, s:s}]", "use", "usual", "family", "Testa"));
    struct fhir_result r;
    cr_assert_eq(parse_json(bundle_of(p, json_real(0.99)), false, &r), 0);
    cr_assert_eq(r.kind, FHIR_SEARCH_ONE);
    cr_assert_str_eq(r.patient.postcode, "LS1 6AE");
    cr_assert_str_eq(r.patient.family, "Testa");
    cr_assert_eq(r.patient.n_given, 0);
    cr_assert_str_eq(r.patient.given[0], "");
    cr_assert_float_eq(r.patient.score, 0.99, 1e-9);
}

Test(fhir, usual_name_wins_else_first)
{
    json_t *p = patient_min();
    json_object_set_new(p, "name",
                        json_pack("[{s:s, s:s}, {s:s, s:s, s:[s, i, s]}]", "use", "old", "family",
                                  "Oldname", "use", "usual", "family", "Newname", "given", "Ann", 7,
                                  "Bea"));
    struct fhir_result r;
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_str_eq(r.patient.family, "Newname");
    cr_assert_eq(r.patient.n_given, 2, "a non-string given name is skipped");
    cr_assert_str_eq(r.patient.given[1], "Bea");

    p = patient_min();
    json_object_set_new(p, "name",
                        json_pack("[{s:s}, {s:s}]", "family", "First", "family", "Second"));
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_str_eq(r.patient.family, "First");
}

Test(fhir, at_most_four_given_names)
{
    json_t *p = patient_min();
    json_object_set_new(p, "name",
                        json_pack("[{s:[s,s,s,s,s,s]}]", "given", "A", "B", "C", "D", "E", "F"));
    struct fhir_result r;
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_eq(r.patient.n_given, FHIR_MAX_GIVEN);
    cr_assert_str_eq(r.patient.given[3], "D");
}

Test(fhir, current_home_address_preferred)
{
    json_t *p = patient_min();
    json_object_set_new(p, "address",
                        json_pack("[{s:s, s:s}, {s:s, s:{s:s}, s:s}, {s:s, s:{s:s}, s:s}]", "use",
                                  "temp", "postalCode", "TT1 1TT", "use", "home", "period", "end",
                                  "2020-01-01", "postalCode", "OL1 1OL", "use", "home", "period",
                                  "start", "2020-01-02", "postalCode", "NE1 1NE"));
    struct fhir_result r;
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_str_eq(r.patient.postcode, "NE1 1NE");

    /* No current home address: the first one is taken. */
    p = patient_min();
    json_object_set_new(p, "address",
                        json_pack("[{s:s, s:s}, {s:s, s:{s:s}, s:s}]", "use", "temp", "postalCode",
                                  "TT1 1TT", "use", "home", "period", "end", "2020-01-01",
                                  "postalCode", "OL1 1OL"));
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_str_eq(r.patient.postcode, "TT1 1TT");
}

Test(fhir, most_restrictive_security_label_wins)
{
    static const struct {
        const char *a, *b;
        enum fhir_security want;
    } cases[] = {{"U", "R", FHIR_SEC_R},
                 {"V", "U", FHIR_SEC_V},
                 {"U", "X", FHIR_SEC_U},
                 {"X", "RR", FHIR_SEC_UNKNOWN},
                 {"", "U", FHIR_SEC_U}};
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *p = patient_min();
        json_object_set_new(
            p, "meta",
            json_pack("{s:[{s:s}, {s:s}]}", "security", "code", cases[i].a, "code", cases[i].b));
        struct fhir_result r;
        cr_assert_eq(parse_json(p, true, &r), 0);
        cr_assert_eq(r.patient.security, cases[i].want, "case %zu", i);
    }
}

Test(fhir, verification_found_among_other_extensions)
{
    json_t *p = patient_min();
    json_object_set_new(p, "identifier",
                        json_pack("[{s:s, s:s}, {s:s, s:s, s:[{s:s}, {s:s, s:{s:[{s:s}]}}]}]",
                                  "system", "https://example.org/other", "value", "X1", "system",
                                  "https://fhir.nhs.uk/Id/nhs-number", "value", "9000000009",
                                  "extension", "url", "https://example.org/ext", "url",
                                  "https://fhir.hl7.org.uk/StructureDefinition/"
                                  "Extension-UKCore-NHSNumberVerificationStatus",
                                  "valueCodeableConcept", "coding", "code", "02"));
    struct fhir_result r;
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_str_eq(r.patient.verification, "02");
}

Test(fhir, death_date_is_the_date_part)
{
    static const struct {
        const char *in, *out;
    } cases[] = {{"2010-10-22T00:00:00+00:00", "2010-10-22"},
                 {"2010-10-22", "2010-10-22"},
                 {"2010-10-22X", ""},
                 {"2010-10", ""},
                 {"", ""}};
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *p = patient_min();
        json_object_set_new(p, "deceasedDateTime", json_string(cases[i].in));
        struct fhir_result r;
        cr_assert_eq(parse_json(p, true, &r), 0);
        cr_assert_str_eq(r.patient.death_date, cases[i].out, "in %s", cases[i].in);
    }
}

Test(fhir, id_must_be_ten_digits)
{
    static const char *bad[] = {"900000000", "90000000091", "900000000a", "", "9000 00000"};
    struct fhir_result r;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *p = patient_min();
        json_object_set_new(p, "id", json_string(bad[i]));
        assert_unparsed(parse_json(json_deep_copy(p), true, &r), &r);
        assert_unparsed(parse_json(bundle_of(p, json_integer(1)), false, &r), &r);
    }
    /* The check digit is not this module's business. */
    json_t *p = patient_min();
    json_object_set_new(p, "id", json_string("9000000000"));
    cr_assert_eq(parse_json(p, true, &r), 0);
}

Test(fhir, score_must_be_a_number_in_range)
{
    static const struct {
        const char *json;
        double want;
    } cases[] = {{"1", 1.0},    {"0.5", 0.5},   {"0", 0.0},    {"1.5", 0.0},
                 {"-0.1", 0.0}, {"\"1\"", 0.0}, {"null", 0.0}, {"[1]", 0.0}};
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *score = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        struct fhir_result r;
        cr_assert_eq(parse_json(bundle_of(patient_min(), score), false, &r), 0);
        cr_assert_eq(r.kind, FHIR_SEARCH_ONE);
        cr_assert_float_eq(r.patient.score, cases[i].want, 1e-9, "score %s", cases[i].json);
    }
    struct fhir_result r;
    cr_assert_eq(parse_json(bundle_of(patient_min(), NULL), false, &r), 0);
    cr_assert_float_eq(r.patient.score, 0.0, 1e-9);
}

/* ---- hostile input ---------------------------------------------------------------- */

Test(fhir, rejects_non_fhir_bodies)
{
    static const char *bodies[] = {
        "",
        " ",
        "null",
        "[]",
        "\"Bundle\"",
        "{}",
        "{\"resourceType\":7}",
        "{\"resourceType\":\"Observation\"}",
        "{\"resourceType\":\"Bundle\",\"entry\":{}}",
        "{\"resourceType\":\"Bundle\",\"entry\":\"x\"}",
        "{\"resourceType\":\"Bundle\",\"entry\":[1]}",
        "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":[]}]}",
        "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\","
        "\"id\":9000000009}}]}",
        "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"id\":\"9000000009\"}}]}",
        "{\"resourceType\":\"Bundle\"} trailing",
        "{\"resourceType\":\"Bundle\",\"resourceType\":\"OperationOutcome\"}",
        "{\"resourceType\":\"Bundle\",\"x\":\"a\\u0000b\"}",
    };
    struct fhir_result r;
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++)
        assert_unparsed(parse_str(bodies[i], false, &r), &r);
    assert_unparsed(fhir_parse_search(NULL, 10, &r), &r);
    assert_unparsed(fhir_parse_patient("{\"resourceType\":\"Patient\"}", 26, &r), &r);
    assert_unparsed(fhir_parse_search("{\"a\":1}\0{}", 10, &r), &r);
}

Test(fhir, wrong_types_in_optional_fields_are_ignored)
{
    json_t *p = json_loads("{\"resourceType\": \"Patient\", \"id\": \"9000000009\","
                           " \"birthDate\": 1970, \"gender\": \"female\", \"name\": {},"
                           " \"meta\": {\"versionId\": 2, \"security\": \"R\"},"
                           " \"identifier\": [1, null], \"address\": true,"
                           " \"deceasedDateTime\": [5], \"telecom\": 3, \"extension\": {}}",
                           0, NULL);
    struct fhir_result r;
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_eq(r.kind, FHIR_PATIENT);
    cr_assert_str_eq(r.patient.id, "9000000009");
    cr_assert_str_eq(r.patient.gender, "female");
    cr_assert_str_eq(r.patient.birth_date, "");
    cr_assert_str_eq(r.patient.family, "");
    cr_assert_str_eq(r.patient.version, "");
    cr_assert_str_eq(r.patient.postcode, "");
    cr_assert_eq(r.patient.security, FHIR_SEC_UNKNOWN);

    /* An OperationOutcome of the wrong shape is still an error, just without a code. */
    cr_assert_eq(parse_str("{\"resourceType\":\"OperationOutcome\",\"issue\":{}}", false, &r), 0);
    cr_assert_eq(r.kind, FHIR_ERROR);
    cr_assert_str_eq(r.error_code, "");
    cr_assert_eq(parse_str("{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"details\":"
                           "{\"coding\":[{\"code\":42}]},\"diagnostics\":[]}]}",
                           true, &r),
                 0);
    cr_assert_eq(r.kind, FHIR_ERROR);
    cr_assert_str_eq(r.error_code, "");
    cr_assert_str_eq(r.error_diagnostics, "");
}

/* Found by tests/fuzz/fuzz_fhir: any string was copied into gender, truncated. */
Test(fhir, gender_is_a_code_or_absent)
{
    static const char *const cases[][2] = {
        {"male", "male"},   {"female", "female"}, {"other", "other"}, {"unknown", "unknown"},
        {"Female", ""},     {"femalex", ""},      {"m", ""},          {"", ""},
        {"Jane Smith", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *p = patient_min();
        json_object_set_new(p, "gender", json_string(cases[i][0]));
        struct fhir_result r;
        cr_assert_eq(parse_json(bundle_of(p, json_real(0.9)), false, &r), 0);
        cr_assert_eq(r.kind, FHIR_SEARCH_ONE);
        cr_assert_str_eq(r.patient.gender, cases[i][1], "gender \"%s\"", cases[i][0]);
    }
}

/* Every prefix of a real answer either fails to parse or, once only trailing whitespace is
 * missing, gives the full answer: never a half-read patient. */
static void truncate_everywhere(const char *dir, const char *file, bool retrieve)
{
    size_t len;
    char *body = load_example(dir, file, &len);
    struct fhir_result full, r;
    cr_assert_eq(
        retrieve ? fhir_parse_patient(body, len, &full) : fhir_parse_search(body, len, &full), 0);
    for (size_t n = 0; n < len; n++) {
        /* A fresh allocation of exactly n bytes lets ASan catch any read past the end. */
        char *cut = malloc(n ? n : 1);
        memcpy(cut, body, n);
        int rc = retrieve ? fhir_parse_patient(cut, n, &r) : fhir_parse_search(cut, n, &r);
        free(cut);
        if (rc == 0)
            cr_assert(memcmp(&r, &full, sizeof(r)) == 0, "prefix %zu differs", n);
        else
            assert_unparsed(rc, &r);
    }
    free(body);
}

Test(fhir, truncated_at_every_offset)
{
    truncate_everywhere("search", "PatientSearch.json", false);
    truncate_everywhere("search", "TOO_MANY_MATCHES.json", false);
    truncate_everywhere("retrieve", "Sensitive_Patient.json", true);
}

static char *nested(size_t depth, const char *inner)
{
    size_t n = strlen(inner);
    char *s = malloc(2 * depth + n + 1);
    memset(s, '[', depth);
    memcpy(s + depth, inner, n);
    memset(s + depth + n, ']', depth);
    s[2 * depth + n] = '\0';
    return s;
}

Test(fhir, deep_nesting_is_refused_before_parsing)
{
    struct fhir_result r;
    char *deep = nested(1000000, "");
    assert_unparsed(parse_str(deep, false, &r), &r);
    free(deep);
    /* Unbalanced: only opening brackets. */
    deep = malloc(100001);
    memset(deep, '{', 100000);
    deep[100000] = '\0';
    assert_unparsed(parse_str(deep, true, &r), &r);
    free(deep);

    /* Moderate nesting in a field we ignore is fine; past the limit it is not. */
    for (size_t depth = 40; depth <= 80; depth += 40) {
        char *arr = nested(depth, "1");
        json_t *p = patient_min();
        json_object_set_new(p, "extension", json_loads(arr, 0, NULL));
        free(arr);
        int rc = parse_json(p, true, &r);
        cr_assert_eq(rc, depth < 64 ? 0 : ERR_PARSE, "depth %zu", depth);
    }
}

Test(fhir, brackets_inside_strings_do_not_count_as_nesting)
{
    char *brackets = nested(500, "\\\"");
    json_t *p = patient_min();
    json_object_set_new(p, "name", json_pack("[{s:s}]", "family", brackets));
    free(brackets);
    struct fhir_result r;
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_eq(strlen(r.patient.family), sizeof(r.patient.family) - 1);
    cr_assert_eq(r.patient.family[0], '[');
}

Test(fhir, huge_strings_are_truncated_or_dropped)
{
    size_t big = 1 << 20;
    char *s = malloc(big + 1);
    memset(s, 'a', big);
    s[big] = '\0';
    json_t *p = patient_min();
    json_object_set_new(p, "name", json_pack("[{s:s, s:[s]}]", "family", s, "given", s));
    json_object_set_new(p, "gender", json_string(s));
    json_object_set_new(p, "address", json_pack("[{s:s}]", "postalCode", "LS1 6AE EXTRA"));
    json_object_set_new(p, "meta",
                        json_pack("{s:s, s:[{s:s}]}", "versionId", s, "security", "code", s));
    struct fhir_result r;
    cr_assert_eq(parse_json(p, true, &r), 0);
    cr_assert_eq(strlen(r.patient.family), sizeof(r.patient.family) - 1);
    cr_assert_eq(strlen(r.patient.given[0]), sizeof(r.patient.given[0]) - 1);
    cr_assert_str_eq(r.patient.gender, "", "not a gender code: absent");
    cr_assert_str_eq(r.patient.postcode, "", "a truncated postcode would be another postcode");
    cr_assert_str_eq(r.patient.version, "");
    cr_assert_eq(r.patient.security, FHIR_SEC_UNKNOWN);

    json_t *oo = fhir_operation_outcome(s, NULL, s);
    cr_assert_eq(parse_json(oo, false, &r), 0);
    cr_assert_eq(r.kind, FHIR_ERROR);
    cr_assert_str_eq(r.error_code, "");
    cr_assert_eq(strlen(r.error_diagnostics), sizeof(r.error_diagnostics) - 1);
    free(s);
}

/* ---- diagnostics, builder round trip, birth-date agreement ------------------------ */

Test(fhir, diagnostics_hide_echoed_values_but_keep_field_names)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"Invalid value - '19570723' in field 'birthdate'",
         "Invalid value - '***' in field 'birthdate'"},
        {"Invalid value - 'Smith' in field 'family' and 'x'",
         "Invalid value - '***' in field 'family' and '***'"},
        {"Unbalanced 'Smith", "Unbalanced '***"},
        {"no quotes at all", "no quotes at all"},
        {"", ""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct fhir_result r;
        cr_assert_eq(
            parse_json(fhir_operation_outcome("INVALID_VALUE", NULL, cases[i].in), false, &r), 0);
        cr_assert_str_eq(r.error_diagnostics, cases[i].out);
    }
}

Test(fhir, operation_outcome_round_trips)
{
    static const char *codes[] = {"INVALID_VALUE", "TOO_MANY_MATCHES",  "RESOURCE_NOT_FOUND",
                                  "ACCESS_DENIED", "TOO_MANY_REQUESTS", "SOMETHING_NEW",
                                  "MISSING_VALUE"};
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++) {
        struct fhir_result r;
        json_t *oo = fhir_operation_outcome(codes[i], NULL, "why");
        cr_assert_eq(parse_json(oo, false, &r), 0);
        bool too_many = strcmp(codes[i], "TOO_MANY_MATCHES") == 0;
        cr_assert_eq(r.kind, too_many ? FHIR_TOO_MANY : FHIR_ERROR);
        cr_assert_str_eq(r.error_code, codes[i]);
        cr_assert_str_eq(r.error_diagnostics, "why");
    }
    json_t *unknown = fhir_operation_outcome("SOMETHING_NEW", NULL, NULL);
    json_t *issue = json_array_get(json_object_get(unknown, "issue"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(issue, "code")), "processing");
    cr_assert_str_eq(json_string_value(json_object_get(issue, "severity")), "error");
    cr_assert_null(json_object_get(issue, "diagnostics"));
    json_decref(unknown);
    cr_assert_null(fhir_operation_outcome(NULL, NULL, NULL));
    cr_assert_null(fhir_operation_outcome("INVALID_VALUE", NULL, "\xff\xfe not UTF-8"));
}

Test(fhir, birth_date_agreement)
{
    static const struct {
        const char *pds, *ours;
        bool want;
    } cases[] = {
        {"2010-10-22", "2010-10-22", true},
        {"2010-10", "2010-10-22", true},
        {"2010", "2010-10-22", true},
        {"2010-10-23", "2010-10-22", false},
        {"2010-11", "2010-10-22", false},
        {"2011", "2010-10-22", false},
        {"", "2010-10-22", false},
        {"201", "2010-10-22", false},
        {"2010-1", "2010-10-22", false},
        {"2010", "2010-10", false},
        {"2010", "2010", false},
        {"2010", "2010-10-2x", false},
        {"20xx", "20xx-10-22", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        cr_assert_eq(fhir_birth_date_agrees(cases[i].pds, cases[i].ours), cases[i].want, "%s vs %s",
                     cases[i].pds, cases[i].ours);
    cr_assert_not(fhir_birth_date_agrees(NULL, "2010-10-22"));
    cr_assert_not(fhir_birth_date_agrees("2010", NULL));
}

/* ---- answers PDS never gives (pds/README.md) ------------------------------------------ */

Test(fhir, sandbox_not_supported_is_an_outcome_that_names_itself)
{
    size_t len;
    char *body = load_example("search", "NOT_SUPPORTED_SEARCH.json", &len);
    struct fhir_result r;
    char what[64];
    cr_assert_eq(fhir_parse_search(body, len, &r), 0);
    free(body);
    cr_assert_eq(r.kind, FHIR_ERROR, "not-supported must never read as a search answer");
    cr_assert_str_eq(r.issue_code, "not-supported");
    fhir_describe(&r, what, sizeof(what));
    cr_assert_str_eq(what, "OperationOutcome not-supported");
}

Test(fhir, refused_bodies_keep_their_resource_type)
{
    static const char history[] = "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"total\":0}";
    static const char other[] = "{\"status\":\"ok\"}";
    static const char html[] = "<html>gateway</html>";
    struct fhir_result r;
    char what[64];
    assert_unparsed(fhir_parse_search(history, strlen(history), &r), &r);
    fhir_describe(&r, what, sizeof(what));
    cr_assert_str_eq(what, "Bundle");
    assert_unparsed(fhir_parse_search(other, strlen(other), &r), &r);
    fhir_describe(&r, what, sizeof(what));
    cr_assert_str_eq(what, "a body that is not a FHIR resource");
    assert_unparsed(fhir_parse_search(html, strlen(html), &r), &r);
    assert_unparsed(fhir_parse_search("", 0, &r), &r);
    fhir_describe(&r, what, sizeof(what));
    cr_assert_str_eq(what, "a body that is not a FHIR resource");
}

Test(fhir, describe_never_repeats_odd_text)
{
    static const char odd[] = "{\"resourceType\":\"Jane Smith 2010\"}";
    struct fhir_result r;
    char what[64];
    assert_unparsed(fhir_parse_search(odd, strlen(odd), &r), &r);
    fhir_describe(&r, what, sizeof(what));
    cr_assert_str_eq(what, "a body that is not a FHIR resource");
}

struct contradiction_case {
    char pds[16];
    bool contradicts;
};

ParameterizedTestParameters(fhir, birth_date_contradiction)
{
    static struct contradiction_case cases[] = {
        {"2010-10-22", false}, {"2010-10", false}, {"2010", false}, {"", false},
        {"2010-10-23", true},  {"2010-11", true},  {"2011", true},  {"1910-10-22", true},
    };
    return cr_make_param_array(struct contradiction_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct contradiction_case *c, fhir, birth_date_contradiction)
{
    cr_assert_eq(fhir_birth_date_contradicts(c->pds, "2010-10-22"), c->contradicts, "%s", c->pds);
}
