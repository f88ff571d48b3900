#include "pdstrace/demographics.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

/* All data below is synthetic. Parameter structs hold inline arrays only: criterion
 * re-executes the binary per test (PIE), so pointers to literals would dangle. UTF-8 is
 * spelt as hex escapes, split from the following letters so that \x does not eat them. */

#define TODAY "2024-06-15"

TestSuite(demog, .timeout = 10);

/* ---- Names ---- */

struct name_case {
    char in[128];
    char want[128]; /* "" when the name must be refused */
};

ParameterizedTestParameters(demog, name)
{
    static struct name_case cases[] = {
        {"O\xe2\x80\x99"
         "Brien",
         "O'Brien"},
        {"d\xe2\x80\x98"
         "Arcy",
         "d'Arcy"},
        {"O\xe2\x80\x9b"
         "Neil",
         "O'Neil"},
        {"O\xe2\x80\xb2"
         "Neil",
         "O'Neil"},
        {"Smith\xe2\x80\x93"
         "Jones",
         "Smith-Jones"},
        {"Smith\xe2\x80\x90"
         "Jones",
         "Smith-Jones"},
        {"Smith\xe2\x80\x95"
         "Jones",
         "Smith-Jones"},
        {"Smith\xe2\x88\x92"
         "Jones",
         "Smith-Jones"},
        {"Mary  Ann ", "Mary Ann"},
        {"  Jean-Luc\t ", "Jean-Luc"},
        {"Mary\tAnn", "Mary Ann"},
        {"Mary\xc2\xa0"
         "Ann",
         "Mary Ann"},
        {"Smith (nee Jones)", "Smith"},
        {"Smith (n\xc3\xa9"
         "e Jones)",
         "Smith"},
        {"Smith(nee Jones)", "Smith"},
        {"Zo\xc3\xab", "Zo\xc3\xab"},
        {"M\xc3\xbcller", "M\xc3\xbcller"},
        {"\xe7\x8e\x8b", "\xe7\x8e\x8b"},
        {"St. John", "St. John"},
        {"", ""},
        {"   ", ""},
        {"Smith2", ""},
        {"Sm\xff"
         "ith",
         ""},
        {"Zo\xc3", ""},
        {"\xc0\xaf"
         "Smith",
         ""},
        {"\xed\xa0\x80"
         "Smith",
         ""},
        {"\xf4\x90\x80\x80", ""},
        {"Smith\nJones", ""},
        {"Smith\x7f", ""},
        {"Smi\xe2\x80\x8b"
         "th",
         ""},
        {"Smith\xef\xbb\xbf", ""},
        {"Smith, Jones", ""},
        {"Smith!", ""},
        {"Smith & Jones", ""},
        {"(nee Jones)", ""},
        {"Smith (nee Jones", ""},
        {"Smith (a) (b)", ""},
        {"Smith (a (b))", ""},
        {"-", ""},
        {"' . -", ""},
        /* Letters of any script, nothing else (issue 6): no emoji, symbols or digits. */
        {"Smith\xf0\x9f\x98\x80", ""},
        {"\xf0\x9f\x98\x80", ""},
        {"Smith\xc2\xa9", ""},
        {"Sm\xc3\x97th", ""},
        {"Smith\xe2\x84\xa2", ""},
        {"Smith\xe2\x82\xac", ""},
        {"\xd9\xa3Smith", ""},
        {"Smith\xe2\x80\xa2", ""},
        {"Smith\xee\x80\x80", ""},
        {"\xce\x9d\xce\xaf\xce\xba\xce\xbf\xcf\x82", "\xce\x9d\xce\xaf\xce\xba\xce\xbf\xcf\x82"},
        {"\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd\xd0\xbe\xd0\xb2",
         "\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd\xd0\xbe\xd0\xb2"},
        {"\xd8\xae\xd8\xa7\xd9\x86", "\xd8\xae\xd8\xa7\xd9\x86"},
        {"\xea\xb9\x80", "\xea\xb9\x80"},
        {"\xe0\xa4\xaa\xe0\xa4\x9f\xe0\xa5\x87\xe0\xa4\xb2",
         "\xe0\xa4\xaa\xe0\xa4\x9f\xe0\xa5\x87\xe0\xa4\xb2"},
        {"Zoe\xcc\x88", "Zoe\xcc\x88"},
        {"Abcdefghijklmnopqrstuvwxyzabcdefghi", "Abcdefghijklmnopqrstuvwxyzabcdefghi"},
        {"Abcdefghijklmnopqrstuvwxyzabcdefghij", ""},
        {"Abcdefghijklmnop-Abcdefghijklmnopqrs", ""},
    };
    return cr_make_param_array(struct name_case, cases, ARRAY_SIZE(cases));
}

Test(demog, a_name_longer_than_pds_holds_says_so)
{
    struct field_error fe = {NULL, NULL};
    json_t *j = json_pack("{s:s, s:s}", "family", "Abcdefghijklmnopqrstuvwxyzabcdefghij",
                          "birth_date", "2010-10-22");
    struct demographics d;
    cr_assert_eq(demographics_from_json(j, "2026-12-02", &d, &fe), ERR_INVALID_INPUT);
    json_decref(j);
    cr_assert_str_eq(fe.field, "family");
    cr_assert(strstr(fe.reason, "35") != NULL, "%s", fe.reason);
}

ParameterizedTest(struct name_case *c, demog, name, .timeout = 10)
{
    char out[DEMOG_NAME_SIZE] = "junk";
    int err = demog_normalise_name(c->in, out, sizeof out);

    if (c->want[0] == '\0') {
        cr_assert_eq(err, ERR_INVALID_INPUT, "accepted \"%s\" as \"%s\"", c->in, out);
        cr_assert_str_eq(out, "");
    } else {
        cr_assert_eq(err, 0, "refused \"%s\"", c->in);
        cr_assert_str_eq(out, c->want);
    }
}

Test(demog, name_length_is_checked_after_normalising)
{
    char in[400], out[DEMOG_NAME_SIZE];

    memset(in, 'a', 35);
    in[35] = '\0';
    cr_assert_eq(demog_normalise_name(in, out, sizeof out), 0);
    cr_assert_eq(strlen(out), 35);
    memcpy(in + 35, " (nee Jones)", sizeof " (nee Jones)");
    cr_assert_eq(demog_normalise_name(in, out, sizeof out), 0);
    cr_assert_eq(strlen(out), 35);
    memcpy(in + 35, "a", 2);
    cr_assert_eq(demog_normalise_name(in, out, sizeof out), ERR_INVALID_INPUT);
    /* Whitespace runs collapse before the limit applies. */
    memset(in, ' ', 300);
    in[0] = 'a';
    in[299] = 'b';
    in[300] = '\0';
    cr_assert_eq(demog_normalise_name(in, out, sizeof out), 0);
    cr_assert_str_eq(out, "a b");
    cr_assert_eq(demog_normalise_name("Smith", out, 5), ERR_INVALID_INPUT);
    cr_assert_eq(demog_normalise_name("Smith", out, 6), 0);
    cr_assert_eq(demog_normalise_name(NULL, out, sizeof out), ERR_INVALID_INPUT);
}

/* ---- Postcodes ---- */

struct postcode_case {
    char in[32];
    char want[9]; /* "" when refused */
};

ParameterizedTestParameters(demog, postcode)
{
    static struct postcode_case cases[] = {
        {"ls16ae", "LS1 6AE"},
        {"sw1a1aa", "SW1A 1AA"},
        {"EC1A 1BB", "EC1A 1BB"},
        {"M1 1AE", "M1 1AE"},
        {"B33 8TH", "B33 8TH"},
        {"CR2 6XH", "CR2 6XH"},
        {"DN55 1PT", "DN55 1PT"},
        {"W1A 0AX", "W1A 0AX"},
        {" ls1  6ae ", "LS1 6AE"},
        {"GIR 0AA", "GIR 0AA"},
        {"gir0aa", "GIR 0AA"},
        {"LS1 6AEX", ""},
        {"123", ""},
        {"LS1 6CE", ""},
        {"LS1 6AI", ""},
        {"LS1 6MA", ""},
        {"", ""},
        {"   ", ""},
        {"LS1", ""},
        {"1LS 6AE", ""},
        {"LS1-6AE", ""},
        {"LSS1 6AE", ""},
        {"LS1 6A", ""},
        {"LS123 6AE", ""},
        {"LS1 AAE", ""},
        {"SW1A1AAA", ""},
        {"GIR 0AB", ""},
        {"L\xc3\xa9"
         "1 6AE",
         ""},
        {"LS1\t6AE", ""},
    };
    return cr_make_param_array(struct postcode_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct postcode_case *c, demog, postcode, .timeout = 10)
{
    char out[9] = "junk";
    int err = demog_normalise_postcode(c->in, out);

    if (c->want[0] == '\0') {
        cr_assert_eq(err, ERR_INVALID_INPUT, "accepted \"%s\" as \"%s\"", c->in, out);
        cr_assert_str_eq(out, "");
    } else {
        cr_assert_eq(err, 0, "refused \"%s\"", c->in);
        cr_assert_str_eq(out, c->want);
    }
}

/* ---- Birth dates ---- */

struct date_case {
    char in[16];
    char today[11];
    bool ok;
};

ParameterizedTestParameters(demog, birth_date)
{
    static struct date_case cases[] = {
        {"2024-02-29", TODAY, true},
        {"2000-02-29", TODAY, true},
        {"2010-10-22", TODAY, true},
        {"1880-01-01", TODAY, true},
        {TODAY, TODAY, true},
        {"2023-12-31", TODAY, true},
        {"2024-12-31", "2024-12-31", true},
        {"2023-02-29", TODAY, false},
        {"1900-02-29", TODAY, false},
        {"2010-13-01", TODAY, false},
        {"2010-00-10", TODAY, false},
        {"2010-01-00", TODAY, false},
        {"2010-04-31", TODAY, false},
        {"2024-06-16", TODAY, false},
        {"2025-01-01", "2024-12-31", false},
        {"1879-12-31", TODAY, false},
        {"2010-1-01", TODAY, false},
        {"20101001", TODAY, false},
        {"2010/10/01", TODAY, false},
        {"2010-10-011", TODAY, false},
        {" 2010-10-01", TODAY, false},
        {"", TODAY, false},
        {"2010-10-0a", TODAY, false},
        {"0000-01-01", TODAY, false},
    };
    return cr_make_param_array(struct date_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct date_case *c, demog, birth_date, .timeout = 10)
{
    int err = demog_check_birth_date(c->in, c->today);

    cr_assert_eq(err, c->ok ? 0 : ERR_INVALID_INPUT, "\"%s\" today %s gave %d", c->in, c->today,
                 err);
}

Test(demog, birth_date_needs_a_valid_today)
{
    cr_assert_eq(demog_check_birth_date("2010-10-22", "2024-02-30"), ERR_INTERNAL);
    cr_assert_eq(demog_check_birth_date("2010-10-22", "today"), ERR_INTERNAL);
    cr_assert_eq(demog_check_birth_date("2010-10-22", NULL), ERR_INTERNAL);
    cr_assert_eq(demog_check_birth_date(NULL, TODAY), ERR_INVALID_INPUT);
}

/* ---- Gender ---- */

struct gender_case {
    char in[16];
    int want; /* -1 when refused */
};

ParameterizedTestParameters(demog, gender)
{
    static struct gender_case cases[] = {
        {"male", DEMOG_GENDER_MALE},
        {"Female", DEMOG_GENDER_FEMALE},
        {"OTHER", DEMOG_GENDER_OTHER},
        {" unknown ", DEMOG_GENDER_UNKNOWN},
        {"fEmAlE", DEMOG_GENDER_FEMALE},
        {"", -1},
        {"m", -1},
        {"f", -1},
        {"males", -1},
        {"femal", -1},
        {"none", -1},
        {"1", -1},
        {"ma le", -1},
    };
    return cr_make_param_array(struct gender_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct gender_case *c, demog, gender, .timeout = 10)
{
    enum demog_gender g = DEMOG_GENDER_NONE;
    int err = demog_parse_gender(c->in, &g);

    if (c->want < 0) {
        cr_assert_eq(err, ERR_INVALID_INPUT, "accepted \"%s\"", c->in);
        cr_assert_eq(g, DEMOG_GENDER_NONE);
    } else {
        cr_assert_eq(err, 0, "refused \"%s\"", c->in);
        cr_assert_eq((int)g, c->want);
    }
}

Test(demog, gender_names_round_trip)
{
    for (int g = DEMOG_GENDER_MALE; g <= DEMOG_GENDER_UNKNOWN; g++) {
        enum demog_gender back = DEMOG_GENDER_NONE;
        cr_assert_eq(demog_parse_gender(demog_gender_name((enum demog_gender)g), &back), 0);
        cr_assert_eq((int)back, g);
    }
    cr_assert_str_eq(demog_gender_name(DEMOG_GENDER_NONE), "");
    cr_assert_str_eq(demog_gender_name((enum demog_gender)42), "");
}

/* ---- Request bodies ---- */

static int parse(const char *text, const char *today, struct demographics *d,
                 struct field_error *fe)
{
    json_error_t jerr;
    json_t *body = json_loads(text, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    int err;

    cr_assert_not_null(body, "test body does not parse: %s", jerr.text);
    err = demographics_from_json(body, today, d, fe);
    json_decref(body);
    return err;
}

struct body_case {
    char body[400];
    char field[16];
    bool missing;
};

#define BD  "\"birth_date\":\"2010-10-22\""
#define FAM "\"family\":\"Smith\""

ParameterizedTestParameters(demog, bad_body)
{
    static struct body_case cases[] = {
        {"{}", "family", true},
        {"{\"family\":null," BD "}", "family", true},
        {"{" FAM "}", "birth_date", true},
        {"{" FAM ",\"birth_date\":null}", "birth_date", true},
        {"{\"family\":1," BD "}", "family", false},
        {"{\"family\":[\"Smith\"]," BD "}", "family", false},
        {"{\"family\":\"Sm1th\"," BD "}", "family", false},
        {"{\"family\":\"\"," BD "}", "family", false},
        {"{\"family\":\"Smith\\u0000x\"," BD "}", "family", false},
        {"{\"family\":\"Sm1th\",\"birth_date\":\"bad\"}", "family", false},
        {"{" FAM ",\"birth_date\":20101022}", "birth_date", false},
        {"{" FAM ",\"birth_date\":\"2030-01-01\"}", "birth_date", false},
        {"{" FAM ",\"birth_date\":\"\"}", "birth_date", false},
        {"{" FAM "," BD ",\"given\":5}", "given", false},
        {"{" FAM "," BD ",\"given\":{\"a\":\"b\"}}", "given", false},
        {"{" FAM "," BD ",\"given\":[\"Jane\",\"\"]}", "given", false},
        {"{" FAM "," BD ",\"given\":[\"Jane\",3]}", "given", false},
        {"{" FAM "," BD ",\"given\":[\"J4ne\"]}", "given", false},
        {"{" FAM "," BD ",\"given\":\"J4ne\"}", "given", false},
        {"{" FAM "," BD ",\"given\":[\"A\",\"B\",\"C\",\"D\",\"E\"]}", "given", false},
        {"{" FAM "," BD ",\"gender\":\"x\"}", "gender", false},
        {"{" FAM "," BD ",\"gender\":1}", "gender", false},
        {"{" FAM "," BD ",\"postcode\":\"123\"}", "postcode", false},
        {"{" FAM "," BD ",\"postcode\":5}", "postcode", false},
        {"{" FAM "," BD ",\"address\":7}", "address", false},
        {"{" FAM "," BD ",\"address\":[\"1 High St\",1]}", "address", false},
        {"{" FAM "," BD ",\"address\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]}", "address", false},
        {"{" FAM "," BD ",\"address\":[\"1 High\\u0001St\"]}", "address", false},
        {"{" FAM "," BD ",\"nhs_number\":\"9000000000\"}", "nhs_number", false},
        {"{" FAM "," BD ",\"nhs_number\":9000000009}", "nhs_number", false},
        {"{" FAM "," BD ",\"case_id\":\"a b\"}", "case_id", false},
        {"{" FAM "," BD ",\"case_id\":123}", "case_id", false},
        {"{" FAM "," BD ",\"case_id\":\"caf\\u00e9\"}", "case_id", false},
        {"{" FAM "," BD ",\"case_id\":\"" /* 65 characters */
         "0123456789012345678901234567890123456789012345678901234567890123X\"}",
         "case_id", false},
        {"{\"case_id\":\"a b\",\"family\":\"Sm1th\"}", "case_id", false},
        {"{" FAM "," BD ",\"write_back\":\"yes\"}", "write_back", false},
        {"{" FAM "," BD ",\"write_back\":1}", "write_back", false},
        {"{" FAM "," BD ",\"purpose\":5}", "purpose", false},
        {"{" FAM "," BD ",\"purpose\":\"care\\u0007\"}", "purpose", false},
    };
    return cr_make_param_array(struct body_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct body_case *c, demog, bad_body, .timeout = 10)
{
    struct demographics d;
    struct field_error fe;
    int err = parse(c->body, TODAY, &d, &fe);

    cr_assert_eq(err, ERR_INVALID_INPUT, "accepted %s", c->body);
    cr_assert_not_null(fe.field);
    cr_assert_str_eq(fe.field, c->field, "%s: blamed %s", c->body, fe.field);
    cr_assert_not_null(fe.reason);
    cr_assert_gt(strlen(fe.reason), 0);
    cr_assert_eq(demographics_error_is_missing(&fe), c->missing, "%s: %s", c->body, fe.reason);
}

Test(demog, long_purpose_is_refused)
{
    char text[400] = "{" FAM "," BD ",\"purpose\":\"";
    size_t n = strlen(text);
    struct demographics d;
    struct field_error fe;

    memset(text + n, 'p', 201);
    memcpy(text + n + 201, "\"}", 3);
    cr_assert_eq(parse(text, TODAY, &d, &fe), ERR_INVALID_INPUT);
    cr_assert_str_eq(fe.field, "purpose");
    text[n + 200] = '"';
    text[n + 201] = '}';
    text[n + 202] = '\0';
    cr_assert_eq(parse(text, TODAY, &d, &fe), 0);
    cr_assert_eq(strlen(d.purpose), 200);
}

Test(demog, reasons_never_echo_the_value)
{
    struct demographics d;
    struct field_error fe;

    cr_assert_eq(parse("{\"family\":\"Qzxwv9\"," BD "}", TODAY, &d, &fe), ERR_INVALID_INPUT);
    cr_assert_null(strstr(fe.reason, "Qzxwv"));
    cr_assert_eq(parse("{" FAM ",\"birth_date\":\"2010-02-30\"}", TODAY, &d, &fe),
                 ERR_INVALID_INPUT);
    cr_assert_null(strstr(fe.reason, "2010"));
    cr_assert_eq(parse("{" FAM "," BD ",\"nhs_number\":\"9000000015\"}", TODAY, &d, &fe),
                 ERR_INVALID_INPUT);
    cr_assert_null(strstr(fe.reason, "9000000015"));
}

Test(demog, body_must_be_an_object)
{
    struct demographics d;
    struct field_error fe = {"x", "y"};

    cr_assert_eq(parse("[]", TODAY, &d, &fe), ERR_INVALID_INPUT);
    cr_assert_null(fe.field);
    cr_assert_not_null(fe.reason);
    cr_assert_not(demographics_error_is_missing(&fe));
    cr_assert_eq(parse("\"Smith\"", TODAY, &d, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(parse("{" FAM "," BD "}", "2024-13-01", &d, &fe), ERR_INTERNAL);
}

Test(demog, full_body_is_normalised)
{
    struct demographics d;
    struct field_error fe;
    const char *text = "{\"case_id\":\"LAS-000123\",\"family\":\"  O\xe2\x80\x99"
                       "Brien (nee Jones) \",\"given\":[\"Mary  Ann\",\"Zo\xc3\xab\"],"
                       "\"birth_date\":\"2010-10-22\",\"gender\":\"Female\","
                       "\"postcode\":\"ls16ae\",\"address\":[\" 1  Trevelyan Square\",\"\","
                       "\"Leeds\"],\"nhs_number\":\"943 476 5870\",\"write_back\":false,"
                       "\"purpose\":\" hospital  discharge \",\"unknown\":{\"x\":1}}";

    cr_assert_eq(parse(text, TODAY, &d, &fe), 0, "%s %s", fe.field, fe.reason);
    cr_assert_str_eq(d.case_id, "LAS-000123");
    cr_assert_str_eq(d.family, "O'Brien");
    cr_assert_eq(d.n_given, 2);
    cr_assert_str_eq(d.given[0], "Mary Ann");
    cr_assert_str_eq(d.given[1], "Zo\xc3\xab");
    cr_assert_str_eq(d.birth_date, "2010-10-22");
    cr_assert_eq(d.gender, DEMOG_GENDER_FEMALE);
    cr_assert_str_eq(d.postcode, "LS1 6AE");
    cr_assert_eq(d.n_address, 2);
    cr_assert_str_eq(d.address[0], "1 Trevelyan Square");
    cr_assert_str_eq(d.address[1], "Leeds");
    cr_assert_str_eq(d.nhs_number, "9434765870");
    cr_assert_eq(d.write_back, 0);
    cr_assert_str_eq(d.purpose, "hospital discharge");
}

Test(demog, minimal_body_leaves_optionals_absent)
{
    struct demographics d;
    struct field_error fe;
    const char *text = "{" FAM "," BD ",\"gender\":\"\",\"postcode\":\"  \",\"nhs_number\":null,"
                       "\"case_id\":\"\",\"given\":\" \",\"address\":[],\"purpose\":\"\"}";

    cr_assert_eq(parse(text, TODAY, &d, &fe), 0, "%s %s", fe.field, fe.reason);
    cr_assert_str_eq(d.family, "Smith");
    cr_assert_eq(d.n_given, 0);
    cr_assert_eq(d.gender, DEMOG_GENDER_NONE);
    cr_assert_str_eq(d.postcode, "");
    cr_assert_str_eq(d.nhs_number, "");
    cr_assert_str_eq(d.case_id, "");
    cr_assert_eq(d.n_address, 0);
    cr_assert_str_eq(d.purpose, "");
    cr_assert_eq(d.write_back, -1);
    cr_assert_eq(parse("{" FAM "," BD ",\"write_back\":true}", TODAY, &d, &fe), 0);
    cr_assert_eq(d.write_back, 1);
}

Test(demog, given_as_string_or_array)
{
    struct demographics d;
    struct field_error fe;

    cr_assert_eq(parse("{" FAM "," BD ",\"given\":\"Mary  Ann\"}", TODAY, &d, &fe), 0);
    cr_assert_eq(d.n_given, 1);
    cr_assert_str_eq(d.given[0], "Mary Ann");
    cr_assert_eq(parse("{" FAM "," BD ",\"given\":[\"Mary\",\"Ann\"]}", TODAY, &d, &fe), 0);
    cr_assert_eq(d.n_given, 2);
    cr_assert_str_eq(d.given[0], "Mary");
    cr_assert_str_eq(d.given[1], "Ann");
    cr_assert_eq(parse("{" FAM "," BD ",\"given\":[\"A\",\"B\",\"C\",\"D\"]}", TODAY, &d, &fe), 0);
    cr_assert_eq(d.n_given, 4);
    cr_assert_str_eq(d.given[3], "D");
}

/* ---- Canonical form ---- */

static void canonical(const char *text, struct buf *out)
{
    struct demographics d;
    struct field_error fe;

    cr_assert_eq(parse(text, TODAY, &d, &fe), 0, "%s: %s %s", text, fe.field, fe.reason);
    buf_init(out, 4096);
    cr_assert_eq(demographics_canonical(&d, out), 0);
}

static bool same_canonical(const char *a, const char *b)
{
    struct buf x, y;
    bool same;

    canonical(a, &x);
    canonical(b, &y);
    same = buf_len(&x) == buf_len(&y) && memcmp(buf_cstr(&x), buf_cstr(&y), buf_len(&x)) == 0;
    buf_free(&x);
    buf_free(&y);
    return same;
}

struct canon_case {
    char a[300];
    char b[300];
    bool same;
};

#define FULL_A                                                                                     \
    "\"family\":\"SMITH\",\"given\":[\"Mary  Ann\"],\"gender\":\"Female\","                        \
    "\"postcode\":\"ls16ae\",\"nhs_number\":\"943 476 5870\""
#define FULL_B                                                                                     \
    "\"family\":\" smith \",\"given\":\"mary ann\",\"gender\":\"female\","                         \
    "\"postcode\":\"LS1 6AE\",\"nhs_number\":\"9434765870\""

ParameterizedTestParameters(demog, canonical)
{
    static struct canon_case cases[] = {
        /* Case, spacing and spelling variants of one search. */
        {"{" FULL_A "," BD "}", "{" FULL_B "," BD "}", true},
        {"{" FULL_A "," BD "}",
         "{" FULL_B "," BD ",\"case_id\":\"C1\",\"address\":[\"x\"],\"purpose\":\"p\","
         "\"write_back\":false}",
         true},
        {"{\"family\":\"O\xe2\x80\x99"
         "Brien\"," BD "}",
         "{\"family\":\"o'brien (nee Jones)\"," BD "}", true},
        /* Anything that changes the search changes the string. */
        {"{" FULL_A "," BD "}", "{" FULL_B ",\"birth_date\":\"2010-10-23\"}", false},
        {"{" FAM "," BD "}", "{\"family\":\"Smyth\"," BD "}", false},
        {"{" FAM "," BD "}", "{" FAM "," BD ",\"gender\":\"male\"}", false},
        {"{" FAM "," BD "}", "{" FAM "," BD ",\"postcode\":\"LS1 6AE\"}", false},
        {"{" FAM "," BD "}", "{" FAM "," BD ",\"nhs_number\":\"9000000009\"}", false},
        {"{" FAM "," BD ",\"given\":[\"Mary\",\"Ann\"]}",
         "{" FAM "," BD ",\"given\":[\"Mary Ann\"]}", false},
        {"{\"family\":\"Ann\",\"given\":\"Mary\"," BD "}", "{\"family\":\"Ann Mary\"," BD "}",
         false},
        {"{\"family\":\"Zo\xc3\xab\"," BD "}", "{\"family\":\"Zoe\"," BD "}", false},
    };
    return cr_make_param_array(struct canon_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct canon_case *c, demog, canonical, .timeout = 10)
{
    cr_assert_eq(same_canonical(c->a, c->b), c->same, "%s vs %s", c->a, c->b);
}

Test(demog, canonical_appends_and_fails_cleanly)
{
    struct demographics d;
    struct field_error fe;
    struct buf b;

    cr_assert_eq(parse("{" FAM "," BD "}", TODAY, &d, &fe), 0);
    buf_init(&b, 20);
    cr_assert_eq(buf_append_str(&b, "key:"), 0);
    cr_assert_eq(demographics_canonical(&d, &b), ERR_TOO_LARGE);
    cr_assert_str_eq(buf_cstr(&b), "key:");
    buf_free(&b);

    buf_init(&b, 4096);
    cr_assert_eq(buf_append_str(&b, "key:"), 0);
    cr_assert_eq(demographics_canonical(&d, &b), 0);
    cr_assert_eq(strncmp(buf_cstr(&b), "key:", 4), 0);
    cr_assert_not_null(strstr(buf_cstr(&b), "smith"));
    cr_assert_null(strstr(buf_cstr(&b), "Smith"));

    /* A struct filled in by hand with a separator byte must not produce a key. */
    memcpy(d.family, "Sm\x1fith", 7);
    buf_reset(&b);
    cr_assert_eq(demographics_canonical(&d, &b), ERR_INVALID_INPUT);
    cr_assert_str_eq(buf_cstr(&b), "");
    buf_free(&b);
}
