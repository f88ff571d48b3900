#include "pdstrace/jwt.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "test_util.h"
#include "tls_util.h"

extern char **environ;

#define CLIENT_ID "test-client-0001"
#define TOKEN_URL "https://int.api.service.nhs.uk/oauth2/token"
#define KID       "test-kid-1"
#define NOW       1700000000LL

#define KEYS_ENV "PDS_TEST_JWT_KEYS"

/* RSA key generation is slow under valgrind, so the runner makes the two key pairs once
 * (PRE_ALL runs in the runner process, and every test process inherits its environment).
 * Everything else a test writes goes to its own scratch directory. */
static char keys_dir[64];
static const char *const key_files[] = {"priv.pem", "pub.pem", "other-priv.pem", "other-pub.pem"};

/* Each test runs in its own process, so these belong to the current test only. */
static char dir[64];
static char priv_path[128];
static char pub_path[128];
static char other_pub_path[128];
static struct jwt_key *key;
static struct jwt_pubkey *pub;

static void path_in_dir(char out[128], const char *name)
{
    snprintf(out, 128, "%s/%s", dir, name);
}

/* Generates an RSA key and writes both halves as PEM files under in. */
static bool write_rsa_pair(const char *in, const char *priv_name, const char *pub_name,
                           unsigned bits)
{
    char p[128], q[128];
    snprintf(p, sizeof(p), "%s/%s", in, priv_name);
    snprintf(q, sizeof(q), "%s/%s", in, pub_name);
    return tls_rsa_pair_write(p, q, bits) == 0;
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    memcpy(keys_dir, "/tmp/pds-jwt-keys-XXXXXX", sizeof("/tmp/pds-jwt-keys-XXXXXX"));
    if (mkdtemp(keys_dir) == NULL)
        return;
    if (write_rsa_pair(keys_dir, key_files[0], key_files[1], 2048) &&
        write_rsa_pair(keys_dir, key_files[2], key_files[3], 2048))
        setenv(KEYS_ENV, keys_dir, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    char p[128];
    (void)stats;
    if (keys_dir[0] == '\0')
        return;
    for (size_t i = 0; i < sizeof(key_files) / sizeof(key_files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", keys_dir, key_files[i]);
        unlink(p);
    }
    rmdir(keys_dir);
}

static void setup(void)
{
    const char *keys = getenv(KEYS_ENV);
    cr_assert_not_null(keys, "the runner could not generate the test keys");
    snprintf(priv_path, sizeof(priv_path), "%s/priv.pem", keys);
    snprintf(pub_path, sizeof(pub_path), "%s/pub.pem", keys);
    snprintf(other_pub_path, sizeof(other_pub_path), "%s/other-pub.pem", keys);
    memcpy(dir, "/tmp/pds-jwt-XXXXXX", sizeof("/tmp/pds-jwt-XXXXXX"));
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(jwt_key_load(&key, priv_path), 0);
    cr_assert_eq(jwt_pubkey_load(&pub, pub_path), 0);
}

static void teardown(void)
{
    static const char *const names[] = {"small-priv.pem", "small-pub.pem",   "ec.pem",
                                        "junk.pem",       "jwt-private.pem", "jwt-public.pem",
                                        "input.bin",      "sig.bin",         "enc.pem"};
    char p[128];
    jwt_key_free(key);
    jwt_pubkey_free(pub);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        path_in_dir(p, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

TestSuite(jwt, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers that take a token apart and put it back together ---- */

struct parts {
    char seg[3][JWT_MAX_LEN];
};

static void split(const char *jwt, struct parts *p)
{
    const char *d1 = strchr(jwt, '.');
    cr_assert_not_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    cr_assert_not_null(d2);
    cr_assert_null(strchr(d2 + 1, '.'), "exactly three segments");
    snprintf(p->seg[0], JWT_MAX_LEN, "%.*s", (int)(d1 - jwt), jwt);
    snprintf(p->seg[1], JWT_MAX_LEN, "%.*s", (int)(d2 - d1 - 1), d1 + 1);
    snprintf(p->seg[2], JWT_MAX_LEN, "%s", d2 + 1);
}

static char *join(const char *h, const char *c, const char *s)
{
    size_t n = strlen(h) + strlen(c) + strlen(s) + 3;
    char *out = malloc(n);
    cr_assert_not_null(out);
    snprintf(out, n, "%s.%s.%s", h, c, s);
    return out;
}

/* Decodes a segment on its own, without jwt.c, to check what was really signed. */
static json_t *decode_segment(const char *seg)
{
    unsigned char raw[JWT_MAX_LEN];
    size_t n = 0;
    cr_assert_eq(crypto_unbase64url(seg, strlen(seg), raw, sizeof(raw), &n), 0);
    json_t *v = json_loadb((const char *)raw, n, 0, NULL);
    cr_assert(json_is_object(v));
    return v;
}

static void encode_json(const json_t *v, char out[JWT_MAX_LEN])
{
    char *text = json_dumps(v, JSON_COMPACT);
    cr_assert_not_null(text);
    cr_assert_gt(crypto_base64url(text, strlen(text), out, JWT_MAX_LEN), 0);
    free(text);
}

static char *make_assertion(void)
{
    char *jwt = jwt_client_assertion(key, KID, CLIENT_ID, TOKEN_URL, NOW, 300);
    cr_assert_not_null(jwt);
    return jwt;
}

/* ---- building and verifying ---- */

Test(jwt, assertion_has_nhs_header_and_claims)
{
    char *jwt = make_assertion();
    struct parts p;
    split(jwt, &p);
    json_t *h = decode_segment(p.seg[0]);
    json_t *c = decode_segment(p.seg[1]);
    cr_assert_str_eq(json_string_value(json_object_get(h, "alg")), "RS512");
    cr_assert_str_eq(json_string_value(json_object_get(h, "typ")), "JWT");
    cr_assert_str_eq(json_string_value(json_object_get(h, "kid")), KID);
    cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), CLIENT_ID);
    cr_assert_str_eq(json_string_value(json_object_get(c, "sub")), CLIENT_ID);
    cr_assert_str_eq(json_string_value(json_object_get(c, "aud")), TOKEN_URL);
    const char *jti = json_string_value(json_object_get(c, "jti"));
    cr_assert_not_null(jti);
    cr_assert_eq(strlen(jti), 36);
    cr_assert_eq(jti[14], '4', "jti is a UUIDv4");
    json_t *exp = json_object_get(c, "exp");
    cr_assert(json_is_integer(exp), "exp must be an integer, not a string or real");
    cr_assert_eq(json_integer_value(exp), NOW + 300);
    cr_assert_leq(json_integer_value(exp) - NOW, JWT_MAX_TTL_S);
    cr_assert_null(strpbrk(jwt, "+/= "), "base64url without padding");
    json_decref(h);
    json_decref(c);
    free(jwt);
}

Test(jwt, assertion_verifies_with_public_key)
{
    char *jwt = jwt_client_assertion(key, KID, CLIENT_ID, TOKEN_URL, NOW, 60);
    cr_assert_not_null(jwt);
    json_t *h = NULL;
    json_t *c = NULL;
    cr_assert_eq(jwt_verify(pub, jwt, &h, &c), 0);
    cr_assert_str_eq(json_string_value(json_object_get(h, "kid")), KID);
    cr_assert_str_eq(json_string_value(json_object_get(c, "aud")), TOKEN_URL);
    cr_assert_eq(json_integer_value(json_object_get(c, "exp")), NOW + 60);
    cr_assert_eq(jwt_verify(pub, jwt, NULL, NULL), 0, "outputs are optional");
    json_decref(h);
    json_decref(c);
    free(jwt);
}

Test(jwt, jti_differs_between_assertions)
{
    char *a = make_assertion();
    char *b = make_assertion();
    json_t *ca = NULL;
    json_t *cb = NULL;
    cr_assert_eq(jwt_verify(pub, a, NULL, &ca), 0);
    cr_assert_eq(jwt_verify(pub, b, NULL, &cb), 0);
    cr_assert_str_neq(json_string_value(json_object_get(ca, "jti")),
                      json_string_value(json_object_get(cb, "jti")));
    json_decref(ca);
    json_decref(cb);
    free(a);
    free(b);
}

Test(jwt, refuses_ttl_beyond_five_minutes_and_missing_arguments)
{
    cr_assert_null(jwt_client_assertion(key, KID, CLIENT_ID, TOKEN_URL, NOW, 301));
    cr_assert_null(jwt_client_assertion(key, KID, CLIENT_ID, TOKEN_URL, NOW, 0));
    cr_assert_null(jwt_client_assertion(key, KID, CLIENT_ID, TOKEN_URL, NOW, -5));
    cr_assert_null(jwt_client_assertion(key, NULL, CLIENT_ID, TOKEN_URL, NOW, 60));
    cr_assert_null(jwt_client_assertion(key, KID, NULL, TOKEN_URL, NOW, 60));
    cr_assert_null(jwt_client_assertion(key, KID, CLIENT_ID, NULL, NOW, 60));
    cr_assert_null(jwt_client_assertion(NULL, KID, CLIENT_ID, TOKEN_URL, NOW, 60));
    char *ok = jwt_client_assertion(key, KID, CLIENT_ID, TOKEN_URL, NOW, 1);
    cr_assert_not_null(ok);
    free(ok);
}

/* ---- rejection ---- */

Test(jwt, rejects_flipped_signature_byte)
{
    char *jwt = make_assertion();
    struct parts p;
    unsigned char sig[1024];
    size_t n = 0;
    split(jwt, &p);
    cr_assert_eq(crypto_unbase64url(p.seg[2], strlen(p.seg[2]), sig, sizeof(sig), &n), 0);
    cr_assert_eq(n, 256, "a 2048-bit key signs 256 bytes");
    size_t positions[] = {0, 1, 128, 255};
    for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
        sig[positions[i]] ^= 0x01;
        cr_assert_gt(crypto_base64url(sig, n, p.seg[2], JWT_MAX_LEN), 0);
        char *bad = join(p.seg[0], p.seg[1], p.seg[2]);
        json_t *c = NULL;
        cr_assert_eq(jwt_verify(pub, bad, NULL, &c), ERR_UNAUTHORISED, "byte %zu", i);
        cr_assert_null(c, "no claims on failure");
        free(bad);
        sig[positions[i]] ^= 0x01;
    }
    free(jwt);
}

Test(jwt, rejects_altered_claims)
{
    char *jwt = make_assertion();
    struct parts p;
    split(jwt, &p);
    json_t *c = decode_segment(p.seg[1]);
    json_object_set_new(c, "exp", json_integer(NOW + 86400));
    encode_json(c, p.seg[1]);
    char *bad = join(p.seg[0], p.seg[1], p.seg[2]);
    cr_assert_eq(jwt_verify(pub, bad, NULL, NULL), ERR_UNAUTHORISED);
    free(bad);
    json_object_set_new(c, "exp", json_integer(NOW + 300));
    json_object_set_new(c, "sub", json_string("someone-else"));
    encode_json(c, p.seg[1]);
    bad = join(p.seg[0], p.seg[1], p.seg[2]);
    cr_assert_eq(jwt_verify(pub, bad, NULL, NULL), ERR_UNAUTHORISED);
    free(bad);
    json_decref(c);
    free(jwt);
}

Test(jwt, rejects_alg_none)
{
    char *jwt = make_assertion();
    struct parts p;
    split(jwt, &p);
    json_t *h = json_pack("{s:s, s:s}", "alg", "none", "typ", "JWT");
    encode_json(h, p.seg[0]);
    char *unsigned_jwt = join(p.seg[0], p.seg[1], "");
    char *kept_sig = join(p.seg[0], p.seg[1], p.seg[2]);
    cr_assert_eq(jwt_verify(pub, unsigned_jwt, NULL, NULL), ERR_UNAUTHORISED);
    cr_assert_eq(jwt_verify(pub, kept_sig, NULL, NULL), ERR_UNAUTHORISED);
    json_decref(h);
    free(unsigned_jwt);
    free(kept_sig);
    free(jwt);
}

/* Signs header.claims with the test's private key, RS512, without jwt.c. */
static void sign_rs512(const char *input, char out[JWT_MAX_LEN])
{
    unsigned char sig[1024];
    size_t n = sizeof(sig);
    FILE *f = fopen(priv_path, "r");
    cr_assert_not_null(f);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(pkey);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    cr_assert_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha512(), NULL, pkey), 1);
    cr_assert_eq(EVP_DigestSign(ctx, sig, &n, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    cr_assert_gt(crypto_base64url(sig, n, out, JWT_MAX_LEN), 0);
}

/* Replaces the header of p with one naming alg (none when NULL), signs it RS512 with the
 * test key and returns the token. */
static char *forge(struct parts *p, const char *alg)
{
    json_t *h =
        alg ? json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT") : json_pack("{s:s}", "typ", "JWT");
    encode_json(h, p->seg[0]);
    json_decref(h);
    char *input = join(p->seg[0], p->seg[1], "");
    input[strlen(input) - 1] = '\0'; /* the signing input has no trailing dot */
    sign_rs512(input, p->seg[2]);
    free(input);
    return join(p->seg[0], p->seg[1], p->seg[2]);
}

/* A header naming any other algorithm is refused even when the RS512 signature is good,
 * so the check does not lean on the signature failing by accident. */
Test(jwt, rejects_good_signature_under_other_alg)
{
    static const char *const algs[] = {"none", "RS256", "HS512", "rs512", NULL};
    char *jwt = make_assertion();
    struct parts p;
    split(jwt, &p);
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char *token = forge(&p, algs[i]);
        cr_assert_eq(jwt_verify(pub, token, NULL, NULL), ERR_UNAUTHORISED, "alg %s",
                     algs[i] ? algs[i] : "(missing)");
        free(token);
    }
    /* The same construction with RS512 passes, which shows the forgery itself is sound. */
    char *token = forge(&p, "RS512");
    cr_assert_eq(jwt_verify(pub, token, NULL, NULL), 0);
    free(token);
    free(jwt);
}

/* The classic algorithm-confusion attack: HMAC the token with the public key as secret. */
Test(jwt, rejects_hs256_signed_with_public_key)
{
    char *jwt = make_assertion();
    struct parts p;
    size_t pem_len = 0;
    unsigned char mac[CRYPTO_SHA256_LEN];
    split(jwt, &p);
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "typ", "JWT", "kid", KID);
    encode_json(h, p.seg[0]);
    char *pem = read_file(pub_path, &pem_len);
    cr_assert_not_null(pem);
    char *input = join(p.seg[0], p.seg[1], "");
    input[strlen(input) - 1] = '\0'; /* the signing input has no trailing dot */
    cr_assert_eq(crypto_hmac_sha256(pem, pem_len, input, strlen(input), mac), 0);
    cr_assert_gt(crypto_base64url(mac, sizeof(mac), p.seg[2], JWT_MAX_LEN), 0);
    char *forged = join(p.seg[0], p.seg[1], p.seg[2]);
    cr_assert_eq(jwt_verify(pub, forged, NULL, NULL), ERR_UNAUTHORISED);
    json_decref(h);
    free(pem);
    free(input);
    free(forged);
    free(jwt);
}

Test(jwt, rejects_signature_from_another_key)
{
    struct jwt_pubkey *other = NULL;
    cr_assert_eq(jwt_pubkey_load(&other, other_pub_path), 0);
    char *jwt = make_assertion();
    cr_assert_eq(jwt_verify(other, jwt, NULL, NULL), ERR_UNAUTHORISED);
    cr_assert_eq(jwt_verify(pub, jwt, NULL, NULL), 0);
    jwt_pubkey_free(other);
    free(jwt);
}

Test(jwt, rejects_malformed_tokens)
{
    char *jwt = make_assertion();
    struct parts p;
    split(jwt, &p);
    char arr[JWT_MAX_LEN];
    json_t *array = json_pack("[s]", "RS512");
    encode_json(array, arr);
    json_decref(array);
    char *cases[] = {
        strdup(""),
        strdup("abc"),
        join(p.seg[0], p.seg[1], ""), /* stays three segments, but see below */
        join("!!!!", p.seg[1], p.seg[2]),
        join("bm90IGpzb24", p.seg[1], p.seg[2]), /* "not json" */
        join(arr, p.seg[1], p.seg[2]),           /* JSON, but not an object */
    };
    cr_assert_eq(jwt_verify(pub, cases[0], NULL, NULL), ERR_PARSE);
    cr_assert_eq(jwt_verify(pub, cases[1], NULL, NULL), ERR_PARSE);
    cr_assert_eq(jwt_verify(pub, cases[2], NULL, NULL), ERR_UNAUTHORISED, "empty signature");
    for (size_t i = 3; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(jwt_verify(pub, cases[i], NULL, NULL), ERR_PARSE, "case %zu", i);
    char *four = join(jwt, "x", "y");
    cr_assert_eq(jwt_verify(pub, four, NULL, NULL), ERR_PARSE, "five segments");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        free(cases[i]);
    free(four);
    free(jwt);
}

/* ---- key loading ---- */

Test(jwt, key_load_refuses_missing_wrong_kind_and_small_keys)
{
    struct jwt_key *k = NULL;
    struct jwt_pubkey *pk = NULL;
    char p[128];
    cr_assert_eq(jwt_key_load(&k, "/nonexistent/key.pem"), ERR_CONFIG);
    cr_assert_eq(jwt_pubkey_load(&pk, "/nonexistent/key.pem"), ERR_CONFIG);
    cr_assert_eq(jwt_key_load(&k, pub_path), ERR_CONFIG, "a public key is no private key");
    path_in_dir(p, "junk.pem");
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    cr_assert_eq(jwt_key_load(&k, p), ERR_CONFIG);
    cr_assert(write_rsa_pair(dir, "small-priv.pem", "small-pub.pem", 1024));
    path_in_dir(p, "small-priv.pem");
    cr_assert_eq(jwt_key_load(&k, p), ERR_CONFIG, "1024-bit RSA is too weak");
    path_in_dir(p, "small-pub.pem");
    cr_assert_eq(jwt_pubkey_load(&pk, p), ERR_CONFIG);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    cr_assert_not_null(ec);
    path_in_dir(p, "ec.pem");
    cr_assert_eq(tls_pem_write(p, ec, true), 0);
    EVP_PKEY_free(ec);
    cr_assert_eq(jwt_key_load(&k, p), ERR_CONFIG, "RS512 needs RSA");
    jwt_key_free(NULL);
    jwt_pubkey_free(NULL);
}

/* jwt_key_load_why refuses path, and says why with a phrase holding want. */
static void expect_why(const char *path, const char *want)
{
    struct jwt_key *k = NULL;
    const char *why = NULL;
    cr_assert_eq(jwt_key_load_why(&k, path, &why), ERR_CONFIG, "%s", path);
    cr_assert_null(k);
    cr_assert_not_null(why, "%s", path);
    cr_assert(strstr(why, want) != NULL, "%s: %s", path, why);
}

/* A copy of the test key, encrypted with a passphrase, at path. */
static void write_encrypted_key(const char *path)
{
    FILE *f = fopen(priv_path, "r");
    cr_assert_not_null(f);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(pkey);
    unsigned char pass[] = "secret";
    f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_PrivateKey(f, pkey, EVP_aes_256_cbc(), pass, 6, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(pkey);
}

Test(jwt, key_load_why_names_the_problem)
{
    char p[128];
    struct jwt_key *k = NULL;
    const char *why = "unset";
    expect_why("/nonexistent/key.pem", "does not exist");
    expect_why(pub_path, "holds no PEM private key");
    path_in_dir(p, "enc.pem");
    write_encrypted_key(p);
    expect_why(p, "is encrypted");
    cr_assert(write_rsa_pair(dir, "small-priv.pem", "small-pub.pem", 1024));
    path_in_dir(p, "small-priv.pem");
    expect_why(p, "fewer than 2048 bits");
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    cr_assert_not_null(ec);
    path_in_dir(p, "ec.pem");
    cr_assert_eq(tls_pem_write(p, ec, true), 0);
    EVP_PKEY_free(ec);
    expect_why(p, "not an RSA key");
    cr_assert_eq(jwt_key_load_why(&k, priv_path, &why), 0);
    cr_assert_null(why);
    jwt_key_free(k);
}

/* ---- scripts/gen-jwt-key, and an independent check with the openssl CLI ---- */

/* Runs a program quietly (its chatter would only clutter the test report). */
static int run(char *const argv[])
{
    pid_t pid;
    int status = 0;
    posix_spawn_file_actions_t fa;
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    cr_assert_eq(posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* openssl dgst verifies RS512 (PKCS#1 v1.5 over SHA-512) without any of our code. */
static int openssl_verify(const char *jwt, const char *pubkey)
{
    char prog[] = "openssl", dgst[] = "dgst", sha[] = "-sha512", ver[] = "-verify";
    char sigopt[] = "-signature", key_path[128];
    struct parts p;
    unsigned char sig[1024];
    size_t n = 0;
    char in_path[128], sig_path[128];
    split(jwt, &p);
    cr_assert_eq(crypto_unbase64url(p.seg[2], strlen(p.seg[2]), sig, sizeof(sig), &n), 0);
    path_in_dir(in_path, "input.bin");
    path_in_dir(sig_path, "sig.bin");
    write_bytes(in_path, jwt, strlen(p.seg[0]) + 1 + strlen(p.seg[1]));
    write_bytes(sig_path, sig, n);
    snprintf(key_path, sizeof(key_path), "%s", pubkey);
    char *argv[] = {prog, dgst, ver, key_path, sha, sigopt, sig_path, in_path, NULL};
    return run(argv);
}

Test(jwt, gen_jwt_key_script_makes_a_usable_private_key_0600)
{
    char script[256], bits[] = "2048", priv[128], pubp[128];
    struct stat st;
    struct jwt_key *k = NULL;
    struct jwt_pubkey *pk = NULL;
    snprintf(script, sizeof(script), "%s/scripts/gen-jwt-key", PDS_SOURCE_DIR);
    char *argv[] = {script, dir, bits, NULL};
    cr_assert_eq(run(argv), 0);
    path_in_dir(priv, "jwt-private.pem");
    path_in_dir(pubp, "jwt-public.pem");
    cr_assert_eq(stat(priv, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_neq(run(argv), 0, "must not overwrite an existing key");
    cr_assert_eq(jwt_key_load(&k, priv), 0);
    cr_assert_eq(jwt_pubkey_load(&pk, pubp), 0);
    char *jwt = jwt_client_assertion(k, KID, CLIENT_ID, TOKEN_URL, NOW, 300);
    cr_assert_not_null(jwt);
    cr_assert_eq(jwt_verify(pk, jwt, NULL, NULL), 0);
    cr_assert_eq(openssl_verify(jwt, pubp), 0, "openssl CLI disagrees with our RS512");
    cr_assert_neq(openssl_verify(jwt, pub_path), 0, "openssl CLI accepted the wrong key");
    jwt_key_free(k);
    jwt_pubkey_free(pk);
    free(jwt);
}
