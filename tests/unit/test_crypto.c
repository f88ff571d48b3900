#include "pdstrace/crypto.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"

TestSuite(crypto, .timeout = 30);

/* Decodes a hex literal from a vector table; the lengths come from the literal itself. */
static size_t unhex_any(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2;
    cr_assert_eq(crypto_unhex(hex, out, n), 0, "bad vector hex %s", hex);
    return n;
}

/* ---- SHA-256 (FIPS 180-2 examples) ---- */

struct sha_vector {
    char msg[64];
    char digest[65];
};

ParameterizedTestParameters(crypto, sha256_known_vectors)
{
    static struct sha_vector v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    return cr_make_param_array(struct sha_vector, v, sizeof(v) / sizeof(v[0]));
}

ParameterizedTest(struct sha_vector *v, crypto, sha256_known_vectors)
{
    unsigned char d[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    crypto_sha256(v->msg, strlen(v->msg), d);
    crypto_hex(d, sizeof(d), hex);
    cr_assert_str_eq(hex, v->digest);
}

/* ---- HMAC-SHA256 (RFC 4231 test cases 1, 2, 3, 4 and 6) ---- */

struct hmac_vector {
    char key[300];
    char data[120];
    char mac[65];
};

ParameterizedTestParameters(crypto, hmac_sha256_rfc4231)
{
    static struct hmac_vector v[] = {
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
         "dddddddddddddddd",
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {"0102030405060708090a0b0c0d0e0f10111213141516171819",
         "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
         "cdcdcdcdcdcdcdcd",
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaa",
         "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048"
         "617368204b6579204669727374",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    };
    return cr_make_param_array(struct hmac_vector, v, sizeof(v) / sizeof(v[0]));
}

ParameterizedTest(struct hmac_vector *v, crypto, hmac_sha256_rfc4231)
{
    unsigned char key[150], data[60], mac[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    size_t klen = unhex_any(v->key, key);
    size_t dlen = unhex_any(v->data, data);
    cr_assert_eq(crypto_hmac_sha256(key, klen, data, dlen, mac), 0);
    crypto_hex(mac, sizeof(mac), hex);
    cr_assert_str_eq(hex, v->mac);
}

Test(crypto, hmac_depends_on_key_and_message)
{
    unsigned char a[CRYPTO_SHA256_LEN], b[CRYPTO_SHA256_LEN], c[CRYPTO_SHA256_LEN];
    cr_assert_eq(crypto_hmac_sha256("k1", 2, "msg", 3, a), 0);
    cr_assert_eq(crypto_hmac_sha256("k2", 2, "msg", 3, b), 0);
    cr_assert_eq(crypto_hmac_sha256("k1", 2, "msh", 3, c), 0);
    cr_assert_not(crypto_equal(a, b, sizeof(a)));
    cr_assert_not(crypto_equal(a, c, sizeof(a)));
    cr_assert_eq(crypto_hmac_sha256("", 0, "", 0, a), 0, "an empty key is valid HMAC");
}

/* ---- HKDF-SHA256 (RFC 5869 test cases 1 and 3) ---- */

Test(crypto, hkdf_rfc5869_case1)
{
    unsigned char ikm[22], salt[13], okm[42];
    char info[11] = {0};
    char hex[2 * sizeof(okm) + 1];
    memset(ikm, 0x0b, sizeof(ikm));
    for (size_t i = 0; i < sizeof(salt); i++)
        salt[i] = (unsigned char)i;
    for (size_t i = 0; i < 10; i++)
        info[i] = (char)(0xf0 + i);
    cr_assert_eq(crypto_hkdf_sha256(salt, sizeof(salt), ikm, sizeof(ikm), info, okm, 42), 0);
    crypto_hex(okm, sizeof(okm), hex);
    cr_assert_str_eq(hex, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                          "34007208d5b887185865");
}

Test(crypto, hkdf_rfc5869_case3_empty_salt_and_info)
{
    unsigned char ikm[22], okm[42], zeros[32] = {0}, again[42];
    char hex[2 * sizeof(okm) + 1];
    memset(ikm, 0x0b, sizeof(ikm));
    cr_assert_eq(crypto_hkdf_sha256(NULL, 0, ikm, sizeof(ikm), NULL, okm, sizeof(okm)), 0);
    crypto_hex(okm, sizeof(okm), hex);
    cr_assert_str_eq(hex, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                          "9d201395faa4b61a96c8");
    /* RFC 5869 §2.2: a missing salt means HashLen zero bytes. */
    cr_assert_eq(crypto_hkdf_sha256(zeros, 32, ikm, sizeof(ikm), "", again, sizeof(again)), 0);
    cr_assert_arr_eq(okm, again, sizeof(okm));
}

Test(crypto, hkdf_separates_by_info_and_checks_length)
{
    unsigned char a[32], b[32];
    cr_assert_eq(crypto_hkdf_sha256(NULL, 0, "secret", 6, "cache-hmac", a, 32), 0);
    cr_assert_eq(crypto_hkdf_sha256(NULL, 0, "secret", 6, "cache-aead", b, 32), 0);
    cr_assert_not(crypto_equal(a, b, 32));
    cr_assert_eq(crypto_hkdf_sha256(NULL, 0, "secret", 6, "x", a, 0), ERR_INVALID_INPUT);
    static unsigned char big[255 * 32 + 1];
    cr_assert_eq(crypto_hkdf_sha256(NULL, 0, "secret", 6, "x", big, sizeof(big)),
                 ERR_INVALID_INPUT);
    cr_assert_eq(crypto_hkdf_sha256(NULL, 0, "secret", 6, "x", big, sizeof(big) - 1), 0);
}

/* ---- hex ---- */

Test(crypto, hex_round_trip_and_strictness)
{
    const unsigned char raw[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char hex[2 * sizeof(raw) + 1];
    unsigned char back[sizeof(raw)];
    crypto_hex(raw, sizeof(raw), hex);
    cr_assert_str_eq(hex, "00017f80abff");
    cr_assert_eq(crypto_unhex(hex, back, sizeof(back)), 0);
    cr_assert_arr_eq(back, raw, sizeof(raw));
    cr_assert_eq(crypto_unhex("00017F80ABFF", back, sizeof(back)), 0);
    cr_assert_arr_eq(back, raw, sizeof(raw));
    cr_assert_eq(crypto_unhex("00017f80abf", back, sizeof(back)), ERR_INVALID_INPUT);
    cr_assert_eq(crypto_unhex("00017f80abfff0", back, sizeof(back)), ERR_INVALID_INPUT);
    cr_assert_eq(crypto_unhex("00017f80abfg", back, sizeof(back)), ERR_INVALID_INPUT);
    cr_assert_eq(crypto_unhex(" 0017f80abff", back, sizeof(back)), ERR_INVALID_INPUT);
}

/* ---- base64url (RFC 4648 §10 vectors, in the URL alphabet without padding) ---- */

struct b64_vector {
    char raw[16];
    size_t raw_len;
    char enc[24];
};

ParameterizedTestParameters(crypto, base64url_known_vectors)
{
    static struct b64_vector v[] = {
        {"", 0, ""},
        {"f", 1, "Zg"},
        {"fo", 2, "Zm8"},
        {"foo", 3, "Zm9v"},
        {"foob", 4, "Zm9vYg"},
        {"fooba", 5, "Zm9vYmE"},
        {"foobar", 6, "Zm9vYmFy"},
        {"\xfb\xff", 2, "-_8"},
        {"\xfb\xef\xbe", 3, "----"},
        {"\xff\xff\xff", 3, "____"},
        {"\x00\x00\x00\x00", 4, "AAAAAA"},
        {"{\"typ\":\"JWT\"}", 13, "eyJ0eXAiOiJKV1QifQ"},
    };
    return cr_make_param_array(struct b64_vector, v, sizeof(v) / sizeof(v[0]));
}

ParameterizedTest(struct b64_vector *v, crypto, base64url_known_vectors)
{
    char enc[32];
    unsigned char dec[32];
    size_t dec_len = 99;
    size_t n = crypto_base64url(v->raw, v->raw_len, enc, sizeof(enc));
    cr_assert_eq(n, strlen(v->enc));
    cr_assert_str_eq(enc, v->enc);
    cr_assert_eq(crypto_unbase64url(v->enc, strlen(v->enc), dec, sizeof(dec), &dec_len), 0);
    cr_assert_eq(dec_len, v->raw_len);
    cr_assert_arr_eq(dec, v->raw, v->raw_len);
}

Test(crypto, base64url_round_trips_every_length)
{
    unsigned char raw[200], dec[200];
    char enc[300];
    cr_assert_eq(crypto_random(raw, sizeof(raw)), 0);
    for (size_t n = 0; n <= sizeof(raw); n++) {
        size_t len = crypto_base64url(raw, n, enc, sizeof(enc));
        size_t dec_len = 0;
        cr_assert_eq(len, (n * 4 + 2) / 3, "length for n=%zu", n);
        cr_assert_null(strpbrk(enc, "+/="));
        cr_assert_eq(crypto_unbase64url(enc, len, dec, sizeof(dec), &dec_len), 0);
        cr_assert_eq(dec_len, n);
        cr_assert_arr_eq(dec, raw, n);
    }
}

Test(crypto, base64url_refuses_small_output)
{
    char enc[5];
    unsigned char dec[2];
    size_t dec_len = 0;
    cr_assert_eq(crypto_base64url("foob", 4, enc, sizeof(enc)), 0, "needs 6 + NUL");
    cr_assert_eq(crypto_base64url("foo", 3, enc, sizeof(enc)), 4);
    cr_assert_eq(crypto_base64url("foo", 3, enc, 4), 0, "no room for the NUL");
    cr_assert_eq(crypto_unbase64url("Zm9v", 4, dec, sizeof(dec), &dec_len), ERR_TOO_LARGE);
}

struct b64_bad {
    char enc[16];
};

ParameterizedTestParameters(crypto, base64url_rejects_malformed)
{
    static struct b64_bad v[] = {
        {"Zg=="},          /* padding */
        {"Zm8="},   {"Z"}, /* a lone sextet carries no whole byte */
        {"Zm9vY"},         /* the same after a full group */
        {"Zh"},            /* non-zero trailing bits: not the canonical encoding of "f" */
        {"Zm9"},           /* likewise for "fo" (canonical is Zm8) */
        {"Zm9v+A"},        /* standard alphabet, not URL */
        {"Zm9v/A"}, {"Zm 9v"}, {"Zm9v\n"}, {"Zm.v"},
    };
    return cr_make_param_array(struct b64_bad, v, sizeof(v) / sizeof(v[0]));
}

ParameterizedTest(struct b64_bad *v, crypto, base64url_rejects_malformed)
{
    unsigned char dec[16];
    size_t dec_len = 0;
    cr_assert_eq(crypto_unbase64url(v->enc, strlen(v->enc), dec, sizeof(dec), &dec_len), ERR_PARSE,
                 "accepted \"%s\"", v->enc);
}

/* ---- AES-256-GCM seal/open ---- */

static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    }
    return false;
}

static const unsigned char test_key[CRYPTO_KEY_LEN] = "0123456789abcdef0123456789abcdef";

Test(crypto, seal_open_round_trip)
{
    const char msg[] = "{\"nhs_number\":\"9000000009\"}";
    struct buf sealed, plain;
    buf_init(&sealed, 1024);
    buf_init(&plain, 1024);
    cr_assert_eq(crypto_seal(test_key, "k:1", 3, msg, strlen(msg), &sealed), 0);
    cr_assert_eq(buf_len(&sealed), strlen(msg) + CRYPTO_SEAL_OVERHEAD);
    cr_assert_not(contains(buf_cstr(&sealed), buf_len(&sealed), "9000000009"), "plaintext leaked");
    cr_assert_eq(crypto_open(test_key, "k:1", 3, buf_cstr(&sealed), buf_len(&sealed), &plain), 0);
    cr_assert_eq(buf_len(&plain), strlen(msg));
    cr_assert_str_eq(buf_cstr(&plain), msg);
    buf_free(&sealed);
    buf_free(&plain);
}

Test(crypto, seal_open_empty_plaintext_and_no_aad)
{
    struct buf sealed, plain;
    buf_init(&sealed, 1024);
    buf_init(&plain, 1024);
    cr_assert_eq(crypto_seal(test_key, NULL, 0, "", 0, &sealed), 0);
    cr_assert_eq(buf_len(&sealed), CRYPTO_SEAL_OVERHEAD);
    cr_assert_eq(crypto_open(test_key, NULL, 0, buf_cstr(&sealed), buf_len(&sealed), &plain), 0);
    cr_assert_eq(buf_len(&plain), 0);
    cr_assert_eq(crypto_open(test_key, "x", 1, buf_cstr(&sealed), buf_len(&sealed), &plain),
                 ERR_PARSE, "aad added after sealing without one");
    buf_free(&sealed);
    buf_free(&plain);
}

Test(crypto, open_rejects_every_tampered_byte)
{
    const char msg[] = "payload";
    struct buf sealed, plain;
    buf_init(&sealed, 1024);
    buf_init(&plain, 1024);
    cr_assert_eq(crypto_seal(test_key, "aad", 3, msg, strlen(msg), &sealed), 0);
    size_t n = buf_len(&sealed);
    char *bytes = buf_steal(&sealed);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            bytes[i] ^= (char)(1 << bit);
            int err = crypto_open(test_key, "aad", 3, bytes, n, &plain);
            cr_assert_eq(err, ERR_PARSE, "byte %zu bit %d accepted", i, bit);
            cr_assert_eq(buf_len(&plain), 0, "output touched on failure");
            bytes[i] ^= (char)(1 << bit);
        }
    }
    cr_assert_eq(crypto_open(test_key, "aad", 3, bytes, n, &plain), 0);
    free(bytes);
    buf_free(&plain);
}

Test(crypto, open_rejects_wrong_aad_key_and_short_input)
{
    unsigned char other[CRYPTO_KEY_LEN];
    struct buf sealed, plain;
    buf_init(&sealed, 1024);
    buf_init(&plain, 1024);
    memcpy(other, test_key, sizeof(other));
    other[31] ^= 1;
    cr_assert_eq(crypto_seal(test_key, "key:a", 5, "secret", 6, &sealed), 0);
    cr_assert_eq(crypto_open(test_key, "key:b", 5, buf_cstr(&sealed), buf_len(&sealed), &plain),
                 ERR_PARSE);
    cr_assert_eq(crypto_open(test_key, NULL, 0, buf_cstr(&sealed), buf_len(&sealed), &plain),
                 ERR_PARSE);
    cr_assert_eq(crypto_open(other, "key:a", 5, buf_cstr(&sealed), buf_len(&sealed), &plain),
                 ERR_PARSE);
    cr_assert_eq(crypto_open(test_key, "key:a", 5, buf_cstr(&sealed), buf_len(&sealed) - 1, &plain),
                 ERR_PARSE);
    cr_assert_eq(
        crypto_open(test_key, "key:a", 5, buf_cstr(&sealed), CRYPTO_SEAL_OVERHEAD - 1, &plain),
        ERR_PARSE);
    cr_assert_eq(crypto_open(test_key, "key:a", 5, buf_cstr(&sealed), 0, &plain), ERR_PARSE);
    cr_assert_eq(buf_len(&plain), 0);
    buf_free(&sealed);
    buf_free(&plain);
}

Test(crypto, seals_of_same_plaintext_differ)
{
    struct buf a, b;
    buf_init(&a, 1024);
    buf_init(&b, 1024);
    cr_assert_eq(crypto_seal(test_key, NULL, 0, "same", 4, &a), 0);
    cr_assert_eq(crypto_seal(test_key, NULL, 0, "same", 4, &b), 0);
    cr_assert_eq(buf_len(&a), buf_len(&b));
    cr_assert_neq(memcmp(buf_cstr(&a), buf_cstr(&b), CRYPTO_NONCE_LEN), 0, "nonce reused");
    cr_assert_neq(memcmp(buf_cstr(&a) + CRYPTO_NONCE_LEN, buf_cstr(&b) + CRYPTO_NONCE_LEN,
                         buf_len(&a) - CRYPTO_NONCE_LEN),
                  0);
    buf_free(&a);
    buf_free(&b);
}

Test(crypto, seal_and_open_append_and_respect_ceiling)
{
    struct buf sealed, plain;
    buf_init(&sealed, 1024);
    buf_init(&plain, 8);
    cr_assert_eq(buf_append_str(&sealed, "prefix"), 0);
    cr_assert_eq(crypto_seal(test_key, NULL, 0, "0123456789", 10, &sealed), 0);
    cr_assert_eq(memcmp(buf_cstr(&sealed), "prefix", 6), 0);
    const char *body = buf_cstr(&sealed) + 6;
    size_t body_len = buf_len(&sealed) - 6;
    cr_assert_eq(crypto_open(test_key, NULL, 0, body, body_len, &plain), ERR_TOO_LARGE);
    cr_assert_eq(buf_len(&plain), 0);
    struct buf tiny;
    buf_init(&tiny, CRYPTO_SEAL_OVERHEAD + 9);
    cr_assert_eq(crypto_seal(test_key, NULL, 0, "0123456789", 10, &tiny), ERR_TOO_LARGE);
    cr_assert_eq(buf_len(&tiny), 0);
    buf_free(&sealed);
    buf_free(&plain);
    buf_free(&tiny);
}

/* ---- random, uuid4, equal ---- */

Test(crypto, random_fills_differently)
{
    unsigned char a[32] = {0}, b[32] = {0};
    cr_assert_eq(crypto_random(a, sizeof(a)), 0);
    cr_assert_eq(crypto_random(b, sizeof(b)), 0);
    cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
    cr_assert_eq(crypto_random(a, 0), 0);
}

static void assert_uuid4_shape(const char *u)
{
    cr_assert_eq(strlen(u), 36, "%s", u);
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_assert_eq(u[i], '-', "%s", u);
        else
            cr_assert_not_null(strchr("0123456789abcdef", u[i]), "%s", u);
    }
    cr_assert_eq(u[14], '4', "version nibble in %s", u);
    cr_assert_not_null(strchr("89ab", u[19]), "variant nibble in %s", u);
}

static int cmp_uuid(const void *a, const void *b)
{
    return memcmp(a, b, CRYPTO_UUID_SIZE);
}

Test(crypto, uuid4_shape_and_uniqueness)
{
    enum { N = 10000 };
    char(*ids)[CRYPTO_UUID_SIZE] = malloc(N * sizeof(*ids));
    cr_assert_not_null(ids);
    const char *variants = "89ab";
    int seen_variant[4] = {0};
    for (size_t i = 0; i < N; i++) {
        crypto_uuid4(ids[i]);
        assert_uuid4_shape(ids[i]);
        seen_variant[strchr(variants, ids[i][19]) - variants]++;
    }
    for (int v = 0; v < 4; v++)
        cr_assert_gt(seen_variant[v], 0, "variant nibbles should all occur");
    qsort(ids, N, sizeof(*ids), cmp_uuid);
    for (size_t i = 1; i < N; i++)
        cr_assert_neq(memcmp(ids[i - 1], ids[i], CRYPTO_UUID_SIZE), 0, "dup %s", ids[i]);
    free(ids);
}

Test(crypto, equal_compares_exactly_n_bytes)
{
    unsigned char a[64], b[64];
    cr_assert_eq(crypto_random(a, sizeof(a)), 0);
    memcpy(b, a, sizeof(a));
    cr_assert(crypto_equal(a, b, sizeof(a)));
    cr_assert(crypto_equal(a, b, 0));
    b[0] ^= 0x80;
    cr_assert_not(crypto_equal(a, b, sizeof(a)));
    cr_assert(crypto_equal(a + 1, b + 1, sizeof(a) - 1));
    b[0] ^= 0x80;
    b[63] ^= 0x01;
    cr_assert_not(crypto_equal(a, b, sizeof(a)));
    cr_assert(crypto_equal(a, b, sizeof(a) - 1));
}

/* ---- load_secret ---- */

/* One scratch directory per test; .fini empties it even after a failed assertion. */
static char scratch[64];

static void scratch_make(void)
{
    memcpy(scratch, "/tmp/pds-crypto-XXXXXX", sizeof("/tmp/pds-crypto-XXXXXX"));
    cr_assert_not_null(mkdtemp(scratch));
}

static void scratch_remove(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    char path[sizeof(scratch) + sizeof(e->d_name) + 1];
    while (d != NULL && (e = readdir(d)) != NULL) {
        snprintf(path, sizeof(path), "%s/%s", scratch, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(scratch);
}

TestSuite(crypto_secret, .init = scratch_make, .fini = scratch_remove, .timeout = 30);

/* Writes a file named name in the scratch directory with the given mode and returns its
 * path in out. */
static void write_file(const char *name, const void *p, size_t n, mode_t mode, char out[128])
{
    snprintf(out, 128, "%s/%s", scratch, name);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert_geq(fd, 0);
    cr_assert_eq(fchmod(fd, mode), 0, "umask must not hide the mode under test");
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

Test(crypto_secret, load_secret_refuses_missing_short_and_huge)
{
    char p[128];
    struct buf s;
    snprintf(p, sizeof(p), "%s/absent", scratch);
    cr_assert_eq(crypto_load_secret(p, &s), ERR_CONFIG);
    cr_assert_eq(buf_len(&s), 0);
    write_file("short", "0123456789abcdef0123456789abcde\n\n  ", 35, 0600, p);
    cr_assert_eq(crypto_load_secret(p, &s), ERR_CONFIG, "31 bytes after trimming");
    cr_assert_eq(buf_len(&s), 0);
    static char huge[CRYPTO_SECRET_MAX + 1];
    memset(huge, 'x', sizeof(huge));
    write_file("huge", huge, sizeof(huge), 0600, p);
    cr_assert_eq(crypto_load_secret(p, &s), ERR_CONFIG);
    cr_assert_eq(crypto_load_secret(scratch, &s), ERR_CONFIG, "a directory is no secret");
}

Test(crypto_secret, load_secret_trims_trailing_whitespace_only)
{
    char p[128];
    struct buf s;
    const char hex64[] = " 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char content[80];
    snprintf(content, sizeof(content), "%s \r\n\t\n", hex64);
    write_file("hex", content, strlen(content), 0600, p);
    cr_assert_eq(crypto_load_secret(p, &s), 0);
    cr_assert_eq(buf_len(&s), strlen(hex64));
    cr_assert_arr_eq(buf_cstr(&s), hex64, buf_len(&s), "leading space kept, trailing dropped");
    buf_free(&s);
    unsigned char bin[40];
    cr_assert_eq(crypto_random(bin, sizeof(bin)), 0);
    bin[0] = 0x20;  /* whitespace inside is data */
    bin[39] = 0x00; /* a NUL at the end is data too, not whitespace */
    write_file("bin", bin, sizeof(bin), 0400, p);
    cr_assert_eq(crypto_load_secret(p, &s), 0);
    cr_assert_eq(buf_len(&s), sizeof(bin));
    cr_assert_arr_eq(buf_cstr(&s), bin, sizeof(bin));
    buf_free(&s);
}

/* Loads path with the log captured and reports whether a warning line was written. */
static bool load_warns(const char *path)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    cr_assert_not_null(f);
    log_set_stream(f);
    struct buf s;
    cr_assert_eq(crypto_load_secret(path, &s), 0);
    buf_free(&s);
    log_set_stream(NULL);
    fclose(f);
    bool warned = strstr(text, "\"warn\"") != NULL && strstr(text, path) != NULL;
    free(text);
    return warned;
}

Test(crypto_secret, load_secret_warns_on_loose_mode)
{
    char p[128];
    write_file("tight", "0123456789abcdef0123456789abcdef", 32, 0600, p);
    cr_assert_not(load_warns(p));
    write_file("group", "0123456789abcdef0123456789abcdef", 32, 0640, p);
    cr_assert(load_warns(p), "group-readable");
    write_file("world", "0123456789abcdef0123456789abcdef", 32, 0604, p);
    cr_assert(load_warns(p), "world-readable");
}
