/* libFuzzer harness: the POST /v1/trace body, as the API reads it (json_loadb, then
 * demographics_from_json with a fixed today), and demographics_canonical on success.
 * Invariants (include/pdstrace/demographics.h): a failure is ERR_INVALID_INPUT with a
 * reason, and with a field name exactly when the body is an object; a success holds only
 * normalised values, which the normalisers leave as they are. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/nhs_number.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

#define TODAY "2024-06-30"

static void require(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static size_t utf8_len(unsigned char lead)
{
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF)
        return 3;
    return lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
}

/* The length of the UTF-8 sequence at s in shortest form, not a surrogate and at most
 * U+10FFFF, or 0 when it is not one. The NUL after s stops a truncated sequence. */
static size_t utf8_seq(const unsigned char *s)
{
    static const unsigned char lead_bits[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    size_t len = utf8_len(s[0]);
    unsigned long cp = s[0] & lead_bits[len];

    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return cp >= 0xD800 && cp <= 0xDFFF ? 0 : len;
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t len = utf8_seq(p);
        if (len == 0)
            return false;
        p += len;
    }
    return true;
}

/* A normalised name: non-empty, valid UTF-8, no control bytes, no space at either end
 * and no double space, and normalising it again changes nothing. */
static void check_name(const char *s)
{
    char again[DEMOG_NAME_SIZE];
    size_t len = strlen(s);

    require(len > 0 && len < DEMOG_NAME_SIZE && utf8_valid(s));
    require(s[0] != ' ' && s[len - 1] != ' ' && strstr(s, "  ") == NULL);
    for (const char *p = s; *p != '\0'; p++)
        require((unsigned char)*p >= 0x20 && *p != 0x7F);
    require(demog_normalise_name(s, again, sizeof again) == 0 && strcmp(s, again) == 0);
}

static void check_line(const char *s)
{
    size_t len = strlen(s);
    require(len > 0 && len < DEMOG_NAME_SIZE && utf8_valid(s));
    for (const char *p = s; *p != '\0'; p++)
        require((unsigned char)*p >= 0x20 && *p != 0x7F);
}

static void check_case_id(const char *s)
{
    require(strlen(s) < sizeof(((struct demographics *)0)->case_id));
    for (const char *p = s; *p != '\0'; p++)
        require((unsigned char)*p >= 0x21 && (unsigned char)*p <= 0x7E);
}

static void check_postcode(const char *s)
{
    char again[9];
    if (s[0] == '\0')
        return;
    require(strlen(s) <= 8 && strchr(s, ' ') != NULL);
    require(demog_normalise_postcode(s, again) == 0 && strcmp(s, again) == 0);
}

static void check_success(const struct demographics *dm)
{
    struct buf b;

    check_case_id(dm->case_id);
    check_name(dm->family);
    require(dm->n_given <= DEMOG_MAX_GIVEN && dm->n_address <= DEMOG_MAX_ADDRESS);
    for (unsigned i = 0; i < dm->n_given; i++)
        check_name(dm->given[i]);
    for (unsigned i = 0; i < dm->n_address; i++)
        check_line(dm->address[i]);
    require(strlen(dm->birth_date) == 10 && demog_check_birth_date(dm->birth_date, TODAY) == 0);
    require(dm->gender <= DEMOG_GENDER_UNKNOWN);
    check_postcode(dm->postcode);
    require(dm->nhs_number[0] == '\0' || nhs_number_is_valid(dm->nhs_number));
    require(dm->write_back >= -1 && dm->write_back <= 1);
    require(strlen(dm->purpose) < sizeof dm->purpose && utf8_valid(dm->purpose));
    buf_init(&b, 1 << 16);
    require(demographics_canonical(dm, &b) == 0 && buf_len(&b) > 0);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    json_error_t jerr;
    struct demographics dm;
    struct field_error fe;
    /* The API's flags plus JSON_ALLOW_NUL: the API lets jansson refuse "\u0000", and
     * letting it through here exercises the validator's own check too. */
    json_t *body = json_loadb((const char *)d, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);

    if (body == NULL)
        return 0;
    int rc = demographics_from_json(body, TODAY, &dm, &fe);
    if (rc == 0) {
        check_success(&dm);
    } else {
        require(rc == ERR_INVALID_INPUT && fe.reason != NULL && fe.reason[0] != '\0');
        require((fe.field == NULL) == !json_is_object(body));
        (void)demographics_error_is_missing(&fe);
    }
    json_decref(body);
    return 0;
}
