#include "pdstrace/demographics.h"

#include <stdint.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"
#include "pdstrace/unicode.h"
#include "demographics_int.h"

/* Reasons end up in "<field> <reason>" messages, so none of them may quote the value. */
static const char R_UTF8[] = "is not valid UTF-8";
static const char R_TOO_LONG[] = "is too long";
static const char R_NAME_LONG[] = "must be at most 35 characters, the most PDS holds";
static const char R_DIGITS[] = "must not contain digits";
static const char R_PUNCT[] = "may hold only letters, spaces, apostrophes, hyphens and full stops";
static const char R_NO_LETTER[] = "must contain a letter";
static const char R_DATE_FORM[] = "must be a date in the form YYYY-MM-DD";
static const char R_DATE_REAL[] = "is not a real calendar date";
static const char R_DATE_OLD[] = "must not be before 1880";
static const char R_DATE_FUTURE[] = "must not be in the future";

/* ---- ASCII helpers: no <ctype.h>, whose answers depend on the locale. ---- */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return is_upper(c) || (c >= 'a' && c <= 'z');
}

static char to_upper(unsigned char c)
{
    return (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
}

/* ---- UTF-8 and the classes of code points that name normalisation cares about. ---- */

/* The length of a sequence from its lead byte (0 for a stray continuation byte or an
 * invalid lead), and the payload bits the lead byte carries. */
static size_t utf8_lead(unsigned char c, uint32_t *bits)
{
    if (c < 0x80) {
        *bits = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        *bits = c & 0x1Fu;
        return 2;
    }
    if ((c & 0xF0) == 0xE0) {
        *bits = c & 0x0Fu;
        return 3;
    }
    *bits = c & 0x07u;
    return (c & 0xF8) == 0xF0 ? 4 : 0;
}

/* Decodes one sequence at s. Returns its length, or 0 when it is malformed, overlong, a
 * surrogate or beyond U+10FFFF. A NUL fails the continuation test, so we never read past
 * the end of the string. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = utf8_lead(s[0], cp);

    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3Fu);
    }
    if (len == 0 || *cp < min[len] || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return 0;
    return len;
}

enum cp_class { CP_PLAIN, CP_SPACE, CP_QUOTE, CP_DASH, CP_CONTROL };

/* First match wins, so the tab entry must come before the C0 control range. Invisible
 * format characters (zero-width, bidi overrides, BOM, soft hyphen) count as controls:
 * they would make two spellings of one name differ without anyone seeing why. */
static const struct cp_range {
    uint32_t lo, hi;
    enum cp_class cls;
} cp_ranges[] = {
    {0x09, 0x09, CP_SPACE},       {0x20, 0x20, CP_SPACE},       {0x00, 0x1F, CP_CONTROL},
    {0x7F, 0x9F, CP_CONTROL},     {0xA0, 0xA0, CP_SPACE},       {0xAD, 0xAD, CP_CONTROL},
    {0x2BC, 0x2BC, CP_QUOTE},     {0x2000, 0x200A, CP_SPACE},   {0x200B, 0x200F, CP_CONTROL},
    {0x2010, 0x2015, CP_DASH},    {0x2018, 0x2019, CP_QUOTE},   {0x201B, 0x201B, CP_QUOTE},
    {0x2028, 0x202E, CP_CONTROL}, {0x202F, 0x202F, CP_SPACE},   {0x2032, 0x2032, CP_QUOTE},
    {0x205F, 0x205F, CP_SPACE},   {0x2060, 0x206F, CP_CONTROL}, {0x2212, 0x2212, CP_DASH},
    {0x3000, 0x3000, CP_SPACE},   {0xFEFF, 0xFEFF, CP_CONTROL}, {0xFFF9, 0xFFFB, CP_CONTROL},
};

static enum cp_class classify(uint32_t cp)
{
    for (size_t i = 0; i < ARRAY_SIZE(cp_ranges); i++)
        if (cp >= cp_ranges[i].lo && cp <= cp_ranges[i].hi)
            return cp_ranges[i].cls;
    return CP_PLAIN;
}

/* ---- Free text: trim, collapse whitespace, map quotes and dashes. ---- */

struct text_out {
    char *p;
    size_t len, size;
    bool space; /* a whitespace run is pending; written only before the next character */
};

static int put(struct text_out *t, const char *bytes, size_t n, const char **why)
{
    size_t extra = t->space && t->len > 0 ? 1 : 0;

    if (t->len + extra + n >= t->size) {
        *why = R_TOO_LONG;
        return ERR_INVALID_INPUT;
    }
    if (extra)
        t->p[t->len++] = ' ';
    memcpy(t->p + t->len, bytes, n);
    t->len += n;
    t->space = false;
    return 0;
}

static int emit(struct text_out *t, const unsigned char *s, size_t n, uint32_t cp, const char **why)
{
    switch (classify(cp)) {
    case CP_SPACE:
        t->space = true;
        return 0;
    case CP_CONTROL:
        *why = R_CONTROL;
        return ERR_INVALID_INPUT;
    case CP_QUOTE:
        return put(t, "'", 1, why);
    case CP_DASH:
        return put(t, "-", 1, why);
    default:
        return put(t, (const char *)s, n, why);
    }
}

/* Writes the normalised text (possibly "") to out; on failure out is "". */
static int text_normalise(const char *in, char *out, size_t size, const char **why)
{
    struct text_out t = {out, 0, size, false};
    const unsigned char *s = (const unsigned char *)in;
    int err = 0;

    while (err == 0 && *s != '\0') {
        uint32_t cp;
        size_t n = utf8_decode(s, &cp);
        if (n == 0) {
            *why = R_UTF8;
            err = ERR_INVALID_INPUT;
            break;
        }
        err = emit(&t, s, n, cp, why);
        s += n;
    }
    out[err ? 0 : t.len] = '\0';
    return err;
}

/* ---- Names. ---- */

/* Drops one trailing "(...)" whose contents hold no parenthesis, and the space before it;
 * anything else ending in ')' is left for the character check to reject. */
static size_t drop_suffix(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || s[n - 1] != ')')
        return n;
    i = n - 1;
    while (i > 0 && s[i - 1] != '(' && s[i - 1] != ')')
        i--;
    if (i == 0 || s[i - 1] != '(')
        return n;
    n = i - 1;
    while (n > 0 && s[n - 1] == ' ')
        n--;
    return n;
}

/* The reason a character of a normalised name is refused, or NULL. */
static const char *name_char_problem(uint32_t cp)
{
    if (unicode_is_letter(cp) || (cp < 0x80 && memchr(" '-.", (int)cp, 4) != NULL))
        return NULL;
    return cp < 0x80 && is_digit((unsigned char)cp) ? R_DIGITS : R_PUNCT;
}

/* The text is already valid UTF-8 (text_normalise checked it), so decoding cannot fail. */
static int check_name_chars(const char *s, size_t n, const char **why)
{
    bool letter = false;
    size_t chars = 0;

    for (size_t i = 0; i < n; chars++) {
        uint32_t cp;
        size_t len = utf8_decode((const unsigned char *)s + i, &cp);
        const char *problem = len == 0 ? R_UTF8 : name_char_problem(cp);
        if (problem != NULL) {
            *why = problem;
            return ERR_INVALID_INPUT;
        }
        letter = letter || unicode_is_letter(cp);
        i += len;
    }
    if (chars > DEMOG_NAME_MAX_CHARS) {
        *why = R_NAME_LONG;
        return ERR_INVALID_INPUT;
    }
    if (letter)
        return 0;
    *why = n == 0 ? R_EMPTY : R_NO_LETTER;
    return ERR_INVALID_INPUT;
}

static int name_normalise(const char *in, char *out, size_t size, const char **why)
{
    /* Room for a name plus a long "(nee ...)" suffix, which is dropped before the length
     * check against size. */
    char tmp[512];
    size_t n;

    if (size == 0)
        return ERR_INVALID_INPUT;
    out[0] = '\0';
    if (in == NULL || text_normalise(in, tmp, sizeof tmp, why) != 0)
        return ERR_INVALID_INPUT;
    n = drop_suffix(tmp, strlen(tmp));
    if (check_name_chars(tmp, n, why) != 0)
        return ERR_INVALID_INPUT;
    if (n >= size) {
        *why = R_TOO_LONG;
        return ERR_INVALID_INPUT;
    }
    memcpy(out, tmp, n);
    out[n] = '\0';
    return 0;
}

int demog_normalise_name(const char *in, char *out, size_t size)
{
    const char *why;

    return name_normalise(in, out, size, &why);
}

int demog_normalise_name_why(const char *in, char *out, size_t size, const char **why)
{
    return name_normalise(in, out, size, why);
}

int demog_normalise_text(const char *in, char *out, size_t size, const char **why)
{
    return size == 0 ? ERR_INVALID_INPUT : text_normalise(in, out, size, why);
}

/* ---- Postcodes. ---- */

/* 'A' stands for an upper-case letter, '9' for a digit. */
static bool shape(const char *tpl, const char *s, size_t n)
{
    if (strlen(tpl) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (tpl[i] == 'A' ? !is_upper(c) : !is_digit(c))
            return false;
    }
    return true;
}

static bool outward_ok(const char *s, size_t n)
{
    static const char *const outward[] = {"A9", "A99", "AA9", "AA99", "A9A", "AA9A"};

    for (size_t i = 0; i < ARRAY_SIZE(outward); i++)
        if (shape(outward[i], s, n))
            return true;
    return false;
}

/* Royal Mail never uses C I K M O V in the inward code, to avoid misreadings. */
static bool inward_ok(const char *s)
{
    return shape("9AA", s, 3) && strchr("CIKMOV", s[1]) == NULL && strchr("CIKMOV", s[2]) == NULL;
}

/* Upper-cases and drops spaces; fails on anything but ASCII letters and digits, or on
 * more than seven of them. */
static int compact_postcode(const char *in, char pc[8], size_t *n)
{
    *n = 0;
    for (; *in != '\0'; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == ' ')
            continue;
        if (*n == 7 || !(is_alpha(c) || is_digit(c)))
            return ERR_INVALID_INPUT;
        pc[(*n)++] = to_upper(c);
    }
    pc[*n] = '\0';
    return 0;
}

int demog_normalise_postcode(const char *in, char out[9])
{
    char pc[8];
    size_t n;

    out[0] = '\0';
    if (in == NULL || compact_postcode(in, pc, &n) != 0 || n < 5)
        return ERR_INVALID_INPUT;
    if (strcmp(pc, "GIR0AA") != 0 && !(outward_ok(pc, n - 3) && inward_ok(pc + n - 3)))
        return ERR_INVALID_INPUT;
    memcpy(out, pc, n - 3);
    out[n - 3] = ' ';
    memcpy(out + n - 2, pc + n - 3, 4);
    return 0;
}

/* ---- Dates. ---- */

static bool date_shape(const char *s)
{
    for (int i = 0; i < 10; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? s[i] != '-' : !is_digit((unsigned char)s[i]))
            return false;
    }
    return s[10] == '\0';
}

static int number(const char *s, int digits)
{
    int v = 0;

    for (int i = 0; i < digits; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

/* A calendar date in the exact form YYYY-MM-DD. */
bool demog_date_real(const char *s)
{
    int m, d;

    if (!date_shape(s))
        return false;
    m = number(s + 5, 2);
    d = number(s + 8, 2);
    return m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(number(s, 4), m);
}

/* Expects a valid today. Same-width ISO dates compare correctly as strings. */
static int birth_date_check(const char *in, const char *today, const char **why)
{
    if (in == NULL || !date_shape(in))
        *why = R_DATE_FORM;
    else if (!demog_date_real(in))
        *why = R_DATE_REAL;
    else if (number(in, 4) < 1880)
        *why = R_DATE_OLD;
    else if (strcmp(in, today) > 0)
        *why = R_DATE_FUTURE;
    else
        return 0;
    return ERR_INVALID_INPUT;
}

int demog_check_birth_date(const char *in, const char *today)
{
    const char *why;

    return demog_check_birth_date_why(in, today, &why);
}

int demog_check_birth_date_why(const char *in, const char *today, const char **why)
{
    if (today == NULL || !demog_date_real(today))
        return ERR_INTERNAL;
    return birth_date_check(in, today, why);
}

/* ---- Gender. ---- */

static const char *const gender_names[] = {
    [DEMOG_GENDER_NONE] = "",           [DEMOG_GENDER_MALE] = "male",
    [DEMOG_GENDER_FEMALE] = "female",   [DEMOG_GENDER_OTHER] = "other",
    [DEMOG_GENDER_UNKNOWN] = "unknown",
};

/* Compares the n bytes at s with the lower-case word, ignoring ASCII case. */
static bool word_eq(const char *s, size_t n, const char *word)
{
    if (strlen(word) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (to_lower((unsigned char)s[i]) != word[i])
            return false;
    return true;
}

int demog_parse_gender(const char *in, enum demog_gender *out)
{
    size_t n;

    if (in == NULL)
        return ERR_INVALID_INPUT;
    while (*in == ' ' || *in == '\t')
        in++;
    n = strlen(in);
    while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t'))
        n--;
    for (size_t g = DEMOG_GENDER_MALE; g < ARRAY_SIZE(gender_names); g++) {
        if (word_eq(in, n, gender_names[g])) {
            *out = (enum demog_gender)g;
            return 0;
        }
    }
    return ERR_INVALID_INPUT;
}

const char *demog_gender_name(enum demog_gender g)
{
    if ((size_t)g >= ARRAY_SIZE(gender_names))
        return "";
    return gender_names[g];
}
