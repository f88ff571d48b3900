#include "pdstrace/bulk_csv.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

/* Every input is fed whole, one byte per feed, and (when short) cut in two at every
 * position; each way must give the same records, fields and end offsets. Records are
 * compared as a dump, one line each: "<end_offset>/<n_fields>:<field>|<field>...", bytes
 * outside printable ASCII (and | and \) as \xhh, a field over 64 bytes as "{<len> bytes
 * of <c>}" when all its bytes are c, and "|+<n>" for fields counted but not kept.
 * Parameterised tests get an index into a table: criterion re-executes the binary, so a
 * parameter must not hold pointers. */

TestSuite(bulk_csv, .timeout = 60);

#define LONG_CUTS 4096 /* inputs longer than this are not cut at every position */

/* ---- Reading into a dump ---- */

struct got {
    struct buf dump;
    uint64_t records;
    uint64_t stop_at; /* the callback fails on this record (0: never) */
};

static void dump_field(struct buf *b, const char *f, size_t n)
{
    size_t same = 0;

    cr_assert_eq(f[n], '\0', "a field is not NUL-terminated");
    while (same < n && f[same] == f[0])
        same++;
    if (n > 64 && same == n) {
        cr_assert_eq(buf_appendf(b, "{%zu bytes of %c}", n, f[0]), 0);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)f[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '|' && c != '\\';
        int err = plain ? buf_append(b, &f[i], 1) : buf_appendf(b, "\\x%02x", c);
        cr_assert_eq(err, 0);
    }
}

static int collect(const struct bulk_csv_record *rec, void *arg)
{
    struct got *g = arg;
    size_t kept = rec->n_fields < BULK_CSV_MAX_FIELDS ? rec->n_fields : BULK_CSV_MAX_FIELDS;

    cr_assert_eq(rec->number, ++g->records, "records are numbered from 1");
    cr_assert_eq(rec->n_kept, kept);
    cr_assert_eq(buf_appendf(&g->dump, "%" PRIu64 "/%zu:", rec->end_offset, rec->n_fields), 0);
    for (size_t i = 0; i < rec->n_kept; i++) {
        if (i > 0)
            cr_assert_eq(buf_append(&g->dump, "|", 1), 0);
        dump_field(&g->dump, rec->field[i], rec->len[i]);
    }
    if (rec->n_fields > rec->n_kept)
        cr_assert_eq(buf_appendf(&g->dump, "|+%zu", rec->n_fields - rec->n_kept), 0);
    cr_assert_eq(buf_append(&g->dump, "\n", 1), 0);
    return g->records == g->stop_at ? UV_ECANCELED : 0;
}

struct result {
    int err;
    bool bom;
    char message[128];
};

/* Feeds in[0, cut) and then in[cut, n), each in pieces of at most chunk bytes, then
 * finishes (unless a feed failed). */
static void run(const char *in, size_t n, size_t cut, size_t chunk, struct got *g,
                struct result *res)
{
    struct bulk_csv_reader *r;
    size_t ends[2] = {cut, n};
    size_t at = 0;

    buf_init(&g->dump, 1u << 24);
    g->records = 0;
    cr_assert_eq(bulk_csv_reader_new(&r, collect, g), 0);
    res->err = 0;
    for (int part = 0; part < 2 && res->err == 0; part++) {
        while (res->err == 0 && at < ends[part]) {
            size_t k = ends[part] - at < chunk ? ends[part] - at : chunk;
            res->err = bulk_csv_feed(r, in + at, k);
            at += k;
        }
    }
    if (res->err == 0)
        res->err = bulk_csv_finish(r);
    res->bom = bulk_csv_reader_had_bom(r);
    snprintf(res->message, sizeof res->message, "%s", bulk_csv_reader_error(r));
    bulk_csv_reader_free(r);
}

/* ---- The table of hostile files ---- */

struct csv_case {
    const char *name;
    const char *in;
    size_t len;
    const char *want; /* the dump */
    bool bom;
};

#define IN(s) s, sizeof(s) - 1

static const struct csv_case cases[] = {
    {"LF", IN("a,b\nc,d\n"), "4/2:a|b\n8/2:c|d\n", false},
    {"CRLF", IN("a,b\r\nc,d\r\n"), "5/2:a|b\n10/2:c|d\n", false},
    {"CR", IN("a,b\rc,d\r"), "4/2:a|b\n8/2:c|d\n", false},
    {"mixed line ends", IN("a\r\nb\nc\rd"), "3/1:a\n5/1:b\n7/1:c\n8/1:d\n", false},
    {"CR CR LF", IN("a\r\r\nb"), "2/1:a\n5/1:b\n", false},
    {"LF CR", IN("a\n\rb\n"), "2/1:a\n5/1:b\n", false},
    {"BOM",
     IN("\xEF\xBB\xBF"
        "a,b\r\n"),
     "8/2:a|b\n", true},
    {"BOM and a quoted first field", IN("\xEF\xBB\xBF\"a\"\n"), "7/1:a\n", true},
    {"BOM alone", IN("\xEF\xBB\xBF"), "", true},
    {"half a BOM is data", IN("\xEF\xBBx\n"), "4/1:\\xef\\xbbx\n", false},
    {"half a BOM at the end", IN("\xEF\xBB"), "2/1:\\xef\\xbb\n", false},
    {"BOM later is data", IN("a\n\xEF\xBB\xBF"), "2/1:a\n5/1:\\xef\\xbb\\xbf\n", false},
    {"quoted comma, quote, CRLF",
     IN("\"a,b\",\"c\"\"d\",\"e\r\nf\"\r\n"
        "g\r\n"),
     "21/3:a,b|c\"d|e\\x0d\\x0af\n24/1:g\n", false},
    {"doubled quotes alone", IN("\"\"\"\"\n"), "5/1:\"\n", false},
    {"quoted empty field", IN("\"\"\n"), "3/1:\n", false},
    {"quoted CR at a line end", IN("\"a\r\"\r\nb\n"), "6/1:a\\x0d\n8/1:b\n", false},
    {"no final line end", IN("a,b\nc,d"), "4/2:a|b\n7/2:c|d\n", false},
    {"blank lines", IN("\n\na\n\r\n\r\nb\n  \n\t\r"), "4/1:a\n10/1:b\n", false},
    {"stray quote in an unquoted field", IN("ab\"c,d\n"), "7/2:ab\"c|d\n", false},
    /* libcsv goes back into the quotes after a stray one there. */
    {"text after a closing quote", IN("\"ab\"c,d\n"), "8/1:ab\"c,d\\x0a\n", false},
    {"unterminated quote at EOF", IN("a\n\"bc,d\n"), "2/1:a\n8/1:bc,d\\x0a\n", false},
    {"spaces around fields", IN(" a , b \n\" a \" ,c\n"), "8/2:a|b\n17/2: a |c\n", false},
    {"trailing comma", IN("a,\n"), "3/2:a|\n", false},
    {"only commas", IN(",,\r\n"), "4/3:||\n", false},
    {"NUL bytes", IN("a\0b,\0\n\0\n"), "6/2:a\\x00b|\\x00\n8/1:\\x00\n", false},
    {"UTF-8", IN("Zo\xc3\xab,\xc5\x81\n"), "8/2:Zo\\xc3\\xab|\\xc5\\x81\n", false},
    {"empty file", IN(""), "", false},
    {"header only", IN("reference,family,birth_date\r\n"), "29/3:reference|family|birth_date\n",
     false},
};

struct idx {
    int i;
};

ParameterizedTestParameters(bulk_csv, hostile)
{
    static struct idx p[ARRAY_SIZE(cases)];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        p[i].i = (int)i;
    return cr_make_param_array(struct idx, p, ARRAY_SIZE(p));
}

static void expect(const struct csv_case *c, size_t cut, size_t chunk)
{
    struct got g = {0};
    struct result res;

    run(c->in, c->len, cut, chunk, &g, &res);
    cr_assert_eq(res.err, 0, "%s (cut %zu, chunk %zu): %d", c->name, cut, chunk, res.err);
    cr_assert_str_eq(buf_cstr(&g.dump), c->want, "%s (cut %zu, chunk %zu)", c->name, cut, chunk);
    cr_assert_eq(res.bom, c->bom, "%s: BOM", c->name);
    cr_assert_str_eq(res.message, "");
    buf_free(&g.dump);
}

ParameterizedTest(struct idx *p, bulk_csv, hostile)
{
    const struct csv_case *c = &cases[p->i];

    expect(c, 0, SIZE_MAX);
    expect(c, 0, 1);
    for (size_t cut = 1; cut < c->len; cut++)
        expect(c, cut, SIZE_MAX);
}

/* ---- Generated inputs: long fields and lines ---- */

static char *repeat(const char *head, char c, size_t n, const char *tail, size_t *len)
{
    size_t h = strlen(head), t = strlen(tail);
    char *s = malloc(h + n + t + 1);

    cr_assert_not_null(s);
    memcpy(s, head, h);
    memset(s + h, c, n);
    memcpy(s + h + n, tail, t + 1);
    *len = h + n + t;
    return s;
}

/* Whole, a byte per feed, and cut at a few places around the interesting ones. */
static void expect_long(const char *in, size_t n, const char *want, int want_err,
                        const char *want_message)
{
    const size_t cuts[] = {0, 1, 2, 3, n / 2, n - 2, n - 1};

    for (size_t i = 0; i < ARRAY_SIZE(cuts) + 1; i++) {
        struct got g = {0};
        struct result res;
        bool bytewise = i == ARRAY_SIZE(cuts);
        run(in, n, bytewise ? 0 : cuts[i], bytewise ? 1 : SIZE_MAX, &g, &res);
        cr_assert_eq(res.err, want_err, "way %zu: %d", i, res.err);
        cr_assert_str_eq(res.message, want_message);
        cr_assert_str_eq(buf_cstr(&g.dump), want, "way %zu", i);
        buf_free(&g.dump);
    }
}

Test(bulk_csv, field_over_the_limit_is_an_error_naming_the_record)
{
    size_t n;
    char *in = repeat("h\n", 'x', 70000, "\n", &n);

    expect_long(in, n, "2/1:h\n", ERR_INVALID_INPUT,
                "record 2: a field longer than 65536 bytes (an unterminated quote?)");
    free(in);
}

Test(bulk_csv, unterminated_quote_runs_into_the_limit)
{
    size_t n;
    char *in = repeat("h\na,\"b\n", '\n', 70000, "c\n", &n);

    expect_long(in, n, "2/1:h\n", ERR_INVALID_INPUT,
                "record 2: a field longer than 65536 bytes (an unterminated quote?)");
    free(in);
}

Test(bulk_csv, field_at_the_limit_is_read)
{
    size_t n;
    char *in = repeat("a,", 'x', BULK_CSV_MAX_FIELD, "\n", &n);

    expect_long(in, n, "65539/2:a|{65536 bytes of x}\n", 0, "");
    free(in);
    /* One byte more, and the spaces libcsv trims only at the field's end do not count. */
    in = repeat("a,", 'x', BULK_CSV_MAX_FIELD + 1, "\n", &n);
    expect_long(in, n, "", ERR_INVALID_INPUT,
                "record 1: a field longer than 65536 bytes (an unterminated quote?)");
    free(in);
    in = repeat("a,\"", 'x', BULK_CSV_MAX_FIELD, "\"       ,b\n", &n);
    expect_long(in, n, "65550/3:a|{65536 bytes of x}|b\n", 0, "");
    free(in);
}

Test(bulk_csv, many_fields_are_counted_not_kept)
{
    size_t n;
    char *in = repeat("h\n", ',', 100000, "\nt\n", &n);
    struct buf want;

    buf_init(&want, 4096);
    cr_assert_eq(buf_append_str(&want, "2/1:h\n100003/100001:"), 0);
    for (int i = 1; i < BULK_CSV_MAX_FIELDS; i++)
        cr_assert_eq(buf_append_str(&want, "|"), 0);
    cr_assert_eq(buf_appendf(&want, "|+%d\n100005/1:t\n", 100001 - BULK_CSV_MAX_FIELDS), 0);
    expect_long(in, n, buf_cstr(&want), 0, "");
    buf_free(&want);
    free(in);
}

Test(bulk_csv, long_line_of_short_fields)
{
    struct buf in, want;

    buf_init(&in, 1 << 20);
    buf_init(&want, 1 << 20);
    for (int i = 0; i < 5000; i++)
        cr_assert_eq(buf_appendf(&in, "%sab", i ? "," : ""), 0);
    cr_assert_eq(buf_append_str(&in, "\r\n"), 0);
    cr_assert_eq(buf_appendf(&want, "%zu/5000:", buf_len(&in)), 0);
    for (int i = 0; i < BULK_CSV_MAX_FIELDS; i++)
        cr_assert_eq(buf_appendf(&want, "%sab", i ? "|" : ""), 0);
    cr_assert_eq(buf_appendf(&want, "|+%d\n", 5000 - BULK_CSV_MAX_FIELDS), 0);
    expect_long(buf_cstr(&in), buf_len(&in), buf_cstr(&want), 0, "");
    buf_free(&in);
    buf_free(&want);
}

/* ---- The reader's other promises ---- */

Test(bulk_csv, callback_error_stops_and_sticks)
{
    struct got g = {.stop_at = 2};
    struct bulk_csv_reader *r;

    buf_init(&g.dump, 4096);
    cr_assert_eq(bulk_csv_reader_new(&r, collect, &g), 0);
    cr_assert_eq(bulk_csv_feed(r, "a\nb\nc\n", 6), UV_ECANCELED);
    cr_assert_eq(bulk_csv_feed(r, "d\n", 2), UV_ECANCELED);
    cr_assert_eq(bulk_csv_finish(r), UV_ECANCELED);
    cr_assert_str_eq(buf_cstr(&g.dump), "2/1:a\n4/1:b\n");
    cr_assert_str_eq(bulk_csv_reader_error(r), "");
    bulk_csv_reader_free(r);
    buf_free(&g.dump);
}

Test(bulk_csv, invalid_input_sticks)
{
    size_t n;
    char *in = repeat("", 'x', 70000, "", &n);
    struct got g = {0};
    struct bulk_csv_reader *r;

    buf_init(&g.dump, 4096);
    cr_assert_eq(bulk_csv_reader_new(&r, collect, &g), 0);
    cr_assert_eq(bulk_csv_feed(r, in, n), ERR_INVALID_INPUT);
    cr_assert_eq(bulk_csv_feed(r, "a\n", 2), ERR_INVALID_INPUT);
    cr_assert_eq(bulk_csv_finish(r), ERR_INVALID_INPUT);
    cr_assert_eq(g.records, 0);
    bulk_csv_reader_free(r);
    buf_free(&g.dump);
    free(in);
}

/* The bound acts while the field grows, not when it ends: an open quote never ends. */
Test(bulk_csv, open_field_stops_at_the_limit_while_feeding)
{
    static char chunk[4096];
    struct got g = {0};
    struct bulk_csv_reader *r;
    int err = 0;
    size_t fed = 0;

    memset(chunk, 'x', sizeof chunk);
    buf_init(&g.dump, 4096);
    cr_assert_eq(bulk_csv_reader_new(&r, collect, &g), 0);
    cr_assert_eq(bulk_csv_feed(r, "a,\"", 3), 0);
    while (err == 0 && fed < ((size_t)1 << 24)) {
        err = bulk_csv_feed(r, chunk, sizeof chunk);
        fed += sizeof chunk;
    }
    cr_assert_eq(err, ERR_INVALID_INPUT);
    cr_assert_leq(fed, BULK_CSV_MAX_FIELD + 2 * sizeof chunk, "stopped after %zu bytes", fed);
    cr_assert_str_eq(bulk_csv_reader_error(r),
                     "record 1: a field longer than 65536 bytes (an unterminated quote?)");
    bulk_csv_reader_free(r);
    buf_free(&g.dump);
}

/* A CR that ends a feed may be half a CRLF: its record waits, and counts the LF. */
Test(bulk_csv, cr_at_the_end_of_a_feed_waits_for_the_next)
{
    struct got g = {0};
    struct bulk_csv_reader *r;

    buf_init(&g.dump, 4096);
    cr_assert_eq(bulk_csv_reader_new(&r, collect, &g), 0);
    cr_assert_eq(bulk_csv_feed(r, "a\r", 2), 0);
    cr_assert_eq(g.records, 0);
    cr_assert_eq(bulk_csv_feed(r, "\nb\r", 3), 0);
    cr_assert_str_eq(buf_cstr(&g.dump), "3/1:a\n");
    cr_assert_eq(bulk_csv_finish(r), 0);
    cr_assert_str_eq(buf_cstr(&g.dump), "3/1:a\n5/1:b\n");
    cr_assert_eq(bulk_csv_finish(r), 0, "a second finish does nothing");
    cr_assert_eq(bulk_csv_feed(r, "c\n", 2), ERR_INTERNAL, "nothing is fed after finish");
    cr_assert_eq(g.records, 2);
    bulk_csv_reader_free(r);
    buf_free(&g.dump);
}

Test(bulk_csv, free_null)
{
    bulk_csv_reader_free(NULL);
}

/* ---- Writing ---- */

struct write_case {
    const char *name;
    const char *field[3];
    size_t len[3];
    size_t n;
    enum bulk_csv_style style;
    const char *want;
};

#define F1(a)    {a}, {sizeof(a) - 1}, 1
#define F2(a, b) {a, b}, {sizeof(a) - 1, sizeof(b) - 1}, 2

static const struct write_case writes[] = {
    {"plain", F2("a", "b"), BULK_CSV_EXACT, "a,b\r\n"},
    {"comma", F1("a,b"), BULK_CSV_EXACT, "\"a,b\"\r\n"},
    {"quotes doubled", F1("a\"b\""), BULK_CSV_EXACT, "\"a\"\"b\"\"\"\r\n"},
    {"CR", F1("a\rb"), BULK_CSV_EXACT, "\"a\rb\"\r\n"},
    {"LF", F1("a\nb"), BULK_CSV_EXACT, "\"a\nb\"\r\n"},
    {"leading space", F1(" a"), BULK_CSV_EXACT, "\" a\"\r\n"},
    {"trailing space", F1("a "), BULK_CSV_EXACT, "\"a \"\r\n"},
    {"leading tab", F1("\ta"), BULK_CSV_EXACT, "\"\ta\"\r\n"},
    {"inner space", F1("a b"), BULK_CSV_EXACT, "a b\r\n"},
    {"BOM at the start", F1("\xEF\xBB\xBFx"), BULK_CSV_EXACT, "\"\xEF\xBB\xBFx\"\r\n"},
    {"one empty field", F1(""), BULK_CSV_EXACT, "\"\"\r\n"},
    {"two empty fields", F2("", ""), BULK_CSV_EXACT, ",\r\n"},
    {"stray quote", F1("ab\"c"), BULK_CSV_EXACT, "\"ab\"\"c\"\r\n"},
    {"formula kept when exact", F1("=1+1"), BULK_CSV_EXACT, "=1+1\r\n"},
    {"safe =", F1("=1+1"), BULK_CSV_SAFE, "'=1+1\r\n"},
    {"safe +", F1("+441234"), BULK_CSV_SAFE, "'+441234\r\n"},
    {"safe -", F1("-5"), BULK_CSV_SAFE, "'-5\r\n"},
    {"safe @", F1("@SUM(A1)"), BULK_CSV_SAFE, "'@SUM(A1)\r\n"},
    {"safe tab", F1("\tx"), BULK_CSV_SAFE, "'\tx\r\n"},
    {"safe CR", F1("\rx"), BULK_CSV_SAFE, "\"'\rx\"\r\n"},
    {"safe and quoted", F1("=HYPERLINK(\"a\",\"b\")"), BULK_CSV_SAFE,
     "\"'=HYPERLINK(\"\"a\"\",\"\"b\"\")\"\r\n"},
    {"safe, not at the start", F2("a=b", "x-1"), BULK_CSV_SAFE, "a=b,x-1\r\n"},
    {"safe empty", F2("", "a"), BULK_CSV_SAFE, ",a\r\n"},
    {"safe trailing space", F1("-a "), BULK_CSV_SAFE, "\"'-a \"\r\n"},
};

ParameterizedTestParameters(bulk_csv, write)
{
    static struct idx p[ARRAY_SIZE(writes)];
    for (size_t i = 0; i < ARRAY_SIZE(writes); i++)
        p[i].i = (int)i;
    return cr_make_param_array(struct idx, p, ARRAY_SIZE(p));
}

ParameterizedTest(struct idx *p, bulk_csv, write)
{
    const struct write_case *c = &writes[p->i];
    struct buf out;

    buf_init(&out, 1024);
    cr_assert_eq(buf_append_str(&out, "x"), 0);
    cr_assert_eq(bulk_csv_append(&out, c->field, c->len, c->n, c->style), 0, "%s", c->name);
    cr_assert_str_eq(buf_cstr(&out) + 1, c->want, "%s", c->name);
    buf_free(&out);
}

Test(bulk_csv, write_failure_leaves_out_as_it_was)
{
    const char *field[] = {"abc", "def"};
    const size_t len[] = {3, 3};
    struct buf out;

    buf_init(&out, 8);
    cr_assert_eq(buf_append_str(&out, "xy"), 0);
    cr_assert_eq(bulk_csv_append(&out, field, len, 2, BULK_CSV_EXACT), ERR_TOO_LARGE);
    cr_assert_str_eq(buf_cstr(&out), "xy");
    cr_assert_eq(bulk_csv_append(&out, field, len, 0, BULK_CSV_EXACT), ERR_INVALID_INPUT);
    cr_assert_str_eq(buf_cstr(&out), "xy");
    buf_free(&out);
}

/* ---- Round trip: what EXACT writes reads back byte for byte ---- */

struct rt_record {
    size_t n;
    char *field[8];
    size_t len[8];
};

struct rt_check {
    const struct rt_record *recs;
    const uint64_t *ends;
    uint64_t seen;
};

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Fields drawn from the bytes that matter to CSV, and a few others. */
static void random_record(uint64_t *seed, struct rt_record *r)
{
    static const char alphabet[] = ",\"\r\n \t\0a=\xEF\xBB\xBF\xFFz";

    r->n = 1 + next(seed) % 8;
    for (size_t i = 0; i < r->n; i++) {
        r->len[i] = next(seed) % 12;
        r->field[i] = malloc(r->len[i] + 1);
        cr_assert_not_null(r->field[i]);
        for (size_t k = 0; k < r->len[i]; k++)
            r->field[i][k] = alphabet[next(seed) % (sizeof alphabet - 1)];
        r->field[i][r->len[i]] = '\0';
    }
}

static int compare(const struct bulk_csv_record *rec, void *arg)
{
    struct rt_check *c = arg;
    const struct rt_record *want = &c->recs[c->seen];

    cr_assert_eq(rec->end_offset, c->ends[c->seen], "record %" PRIu64, rec->number);
    cr_assert_eq(rec->n_fields, want->n, "record %" PRIu64, rec->number);
    for (size_t i = 0; i < want->n; i++) {
        cr_assert_eq(rec->len[i], want->len[i], "record %" PRIu64 " field %zu", rec->number, i);
        cr_assert(memcmp(rec->field[i], want->field[i], want->len[i]) == 0,
                  "record %" PRIu64 " field %zu", rec->number, i);
    }
    c->seen++;
    return 0;
}

static void read_back(const struct buf *text, size_t cut, const struct rt_record *recs,
                      const uint64_t *ends, size_t n)
{
    struct rt_check c = {recs, ends, 0};
    struct bulk_csv_reader *r;

    cr_assert_eq(bulk_csv_reader_new(&r, compare, &c), 0);
    cr_assert_eq(bulk_csv_feed(r, buf_cstr(text), cut), 0);
    cr_assert_eq(bulk_csv_feed(r, buf_cstr(text) + cut, buf_len(text) - cut), 0);
    cr_assert_eq(bulk_csv_finish(r), 0);
    cr_assert_eq(c.seen, n, "cut at %zu", cut);
    bulk_csv_reader_free(r);
}

Test(bulk_csv, exact_round_trip)
{
    enum { N = 300 };
    static struct rt_record recs[N];
    static uint64_t ends[N];
    uint64_t seed = 0x9E3779B97F4A7C15u;
    struct buf text;

    buf_init(&text, 1 << 20);
    for (size_t i = 0; i < N; i++) {
        random_record(&seed, &recs[i]);
        cr_assert_eq(bulk_csv_append(&text, (const char *const *)recs[i].field, recs[i].len,
                                     recs[i].n, BULK_CSV_EXACT),
                     0);
        ends[i] = buf_len(&text);
    }
    for (size_t cut = 0; cut <= buf_len(&text); cut += 1 + cut / 7)
        read_back(&text, cut, recs, ends, N);
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < recs[i].n; k++)
            free(recs[i].field[k]);
    buf_free(&text);
}
