#include "pdstrace/jwt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"

/* RSA keys from 2048 bits (NHS onboarding asks for 4096) up to 8192, whose signatures
 * fit the fixed buffers below. */
#define MIN_BITS 2048
#define MAX_BITS 8192
#define MAX_SIG  (MAX_BITS / 8)

struct jwt_key {
    EVP_PKEY *pkey;
};

struct jwt_pubkey {
    EVP_PKEY *pkey;
};

/* OpenSSL would otherwise ask for a passphrase on the terminal, which a service has not
 * got: none is given, and *u notes that one was wanted, so the key is encrypted. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(bool *)u = true;
    return -1;
}

static const char *open_problem(int e)
{
    if (e == ENOENT)
        return "does not exist";
    if (e == EACCES)
        return "cannot be read (permission denied)";
    return "cannot be opened";
}

/* Why pkey (NULL when none could be read) is no key for RS512; NULL when it is one. */
static const char *key_problem(const EVP_PKEY *pkey, int private, bool encrypted)
{
    if (pkey == NULL && encrypted)
        return "is encrypted (give the key without a passphrase)";
    if (pkey == NULL)
        return private ? "holds no PEM private key" : "holds no PEM public key";
    if (!EVP_PKEY_is_a(pkey, "RSA"))
        return "is not an RSA key (RS512 needs one)";
    if (EVP_PKEY_get_bits(pkey) < MIN_BITS)
        return "is an RSA key of fewer than 2048 bits";
    if (EVP_PKEY_get_bits(pkey) > MAX_BITS)
        return "is an RSA key of more than 8192 bits";
    return NULL;
}

/* Reads a PEM key and insists on RSA of a sane size; anything else is a bad setting, and
 * *why says which. */
static EVP_PKEY *load_pem(const char *path, int private, const char **why)
{
    bool encrypted = false;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        *why = open_problem(errno);
        return NULL;
    }
    EVP_PKEY *pkey = private ? PEM_read_PrivateKey(f, NULL, no_passphrase, &encrypted)
                             : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    *why = key_problem(pkey, private, encrypted);
    if (*why != NULL) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    return pkey;
}

/* Both key types hold one EVP_PKEY; they are distinct types only so that a public key
 * cannot be passed where a private one is needed. */
static int load_into(EVP_PKEY **slot, const char *pem_path, int private, const char **why)
{
    *slot = load_pem(pem_path, private, why);
    return *slot != NULL ? 0 : ERR_CONFIG;
}

int jwt_key_load_why(struct jwt_key **out, const char *pem_path, const char **why)
{
    const char *spare;
    struct jwt_key *k = calloc(1, sizeof(*k));
    why = why != NULL ? why : &spare;
    *why = "cannot be loaded (out of memory)";
    int err = k != NULL ? load_into(&k->pkey, pem_path, 1, why) : ERR_CONFIG;
    if (err)
        free(k);
    else
        *out = k;
    return err;
}

int jwt_key_load(struct jwt_key **out, const char *pem_path)
{
    return jwt_key_load_why(out, pem_path, NULL);
}

void jwt_key_free(struct jwt_key *k)
{
    if (k != NULL)
        EVP_PKEY_free(k->pkey);
    free(k);
}

int jwt_pubkey_load(struct jwt_pubkey **out, const char *pem_path)
{
    const char *why;
    struct jwt_pubkey *k = calloc(1, sizeof(*k));
    int err = k != NULL ? load_into(&k->pkey, pem_path, 0, &why) : ERR_CONFIG;
    if (err)
        free(k);
    else
        *out = k;
    return err;
}

void jwt_pubkey_free(struct jwt_pubkey *k)
{
    if (k != NULL)
        EVP_PKEY_free(k->pkey);
    free(k);
}

/* Appends the unpadded base64url form of p[0..n) to b. */
static int append_b64(struct buf *b, const void *p, size_t n)
{
    size_t size = n / 3 * 4 + 5;
    char *tmp = malloc(size);
    if (tmp == NULL)
        return ERR_INTERNAL;
    size_t len = crypto_base64url(p, n, tmp, size);
    int err = len ? buf_append(b, tmp, len) : ERR_INTERNAL;
    free(tmp);
    return err;
}

/* Appends a JSON value in its compact form, base64url-encoded. Takes ownership of v. */
static int append_json(struct buf *b, json_t *v)
{
    if (v == NULL)
        return ERR_INTERNAL;
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (text == NULL)
        return ERR_INTERNAL;
    int err = append_b64(b, text, strlen(text));
    free(text);
    return err;
}

/* Appends ".<signature>" where the signature is RSASSA-PKCS1-v1_5 with SHA-512 (RS512)
 * over everything already in b. */
static int append_signature(struct buf *b, EVP_PKEY *pkey)
{
    unsigned char sig[MAX_SIG];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha512(), NULL, pkey) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)buf_cstr(b), buf_len(b)) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return ERR_INTERNAL;
    }
    int err = buf_append(b, ".", 1);
    return err ? err : append_b64(b, sig, siglen);
}

static json_t *assertion_claims(const char *client_id, const char *token_url, long long exp)
{
    char jti[CRYPTO_UUID_SIZE];
    crypto_uuid4(jti);
    return json_pack("{s:s, s:s, s:s, s:s, s:I}", "iss", client_id, "sub", client_id, "aud",
                     token_url, "jti", jti, "exp", (json_int_t)exp);
}

char *jwt_client_assertion(const struct jwt_key *k, const char *kid, const char *client_id,
                           const char *token_url, long long now, int ttl_s)
{
    if (k == NULL || kid == NULL || client_id == NULL || token_url == NULL || ttl_s < 1 ||
        ttl_s > JWT_MAX_TTL_S)
        return NULL;
    struct buf b;
    buf_init(&b, JWT_MAX_LEN);
    json_t *header = json_pack("{s:s, s:s, s:s}", "alg", "RS512", "typ", "JWT", "kid", kid);
    int err = append_json(&b, header);
    if (!err)
        err = buf_append(&b, ".", 1);
    if (!err)
        err = append_json(&b, assertion_claims(client_id, token_url, now + ttl_s));
    if (!err)
        err = append_signature(&b, k->pkey);
    if (err) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Decodes one base64url segment holding a JSON object. */
static int decode_object(const char *s, size_t len, json_t **out)
{
    unsigned char *raw = malloc(len / 4 * 3 + 3);
    size_t n = 0;
    if (raw == NULL)
        return ERR_INTERNAL;
    int err = crypto_unbase64url(s, len, raw, len / 4 * 3 + 3, &n);
    json_t *v = err ? NULL : json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (!json_is_object(v)) {
        json_decref(v);
        return ERR_PARSE;
    }
    *out = v;
    return 0;
}

/* Checks the RS512 signature (base64url in sig_b64) over signed[0..signed_len). */
static int check_signature(EVP_PKEY *pkey, const char *signed_part, size_t signed_len,
                           const char *sig_b64)
{
    unsigned char sig[MAX_SIG];
    size_t siglen = 0;
    if (crypto_unbase64url(sig_b64, strlen(sig_b64), sig, sizeof(sig), &siglen) != 0)
        return ERR_UNAUTHORISED;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok =
        ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, EVP_sha512(), NULL, pkey) == 1 &&
        EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok ? 0 : ERR_UNAUTHORISED;
}

/* The header decides how the token is checked, so it is judged before anything else:
 * only RS512 is accepted, which shuts out "none" and HMAC algorithm confusion. */
static int check_header(const char *s, size_t len, json_t **out)
{
    int err = decode_object(s, len, out);
    if (err)
        return err;
    const char *alg = json_string_value(json_object_get(*out, "alg"));
    if (alg == NULL || strcmp(alg, "RS512") != 0) {
        json_decref(*out);
        *out = NULL;
        return ERR_UNAUTHORISED;
    }
    return 0;
}

static void hand_over(json_t *v, json_t **out)
{
    if (out != NULL)
        *out = v;
    else
        json_decref(v);
}

int jwt_verify(const struct jwt_pubkey *k, const char *jwt, json_t **header, json_t **claims)
{
    const char *dot1 = jwt ? strchr(jwt, '.') : NULL;
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL || strlen(jwt) > JWT_MAX_LEN)
        return ERR_PARSE;
    json_t *h = NULL;
    json_t *c = NULL;
    int err = check_header(jwt, (size_t)(dot1 - jwt), &h);
    if (!err)
        err = check_signature(k->pkey, jwt, (size_t)(dot2 - jwt), dot2 + 1);
    if (!err)
        err = decode_object(dot1 + 1, (size_t)(dot2 - dot1 - 1), &c);
    if (err) {
        json_decref(h);
        return err;
    }
    hand_over(h, header);
    hand_over(c, claims);
    return 0;
}
