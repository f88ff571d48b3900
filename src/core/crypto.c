#include "pdstrace/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"

/* The EVP cipher interface counts bytes in int; stay well below it. */
#define MAX_CIPHER_INPUT ((size_t)INT_MAX - 64)

/* OpenSSL 3 looks algorithms up, under a lock, each time EVP_sha256() and friends are
 * used; on the per-request paths that lookup costs more than the hash itself. Fetch once
 * and keep them for the life of the process. */
static const EVP_MD *sha256(void)
{
    static EVP_MD *md;
    if (md == NULL)
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    return md;
}

static const EVP_CIPHER *aes_256_gcm(void)
{
    static EVP_CIPHER *cipher;
    if (cipher == NULL)
        cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    return cipher;
}

void crypto_sha256(const void *p, size_t n, unsigned char out[CRYPTO_SHA256_LEN])
{
    /* EVP_Digest fails only when it cannot allocate a context. A wrong hash would be
     * silently dangerous (cache keys, API keys), so there is no sensible fallback. */
    if (EVP_Digest(p, n, out, NULL, sha256(), NULL) != 1)
        abort();
}

void crypto_hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int crypto_unhex(const char *hex, unsigned char *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return ERR_INVALID_INPUT;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(hex[2 * i]);
        int lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return ERR_INVALID_INPUT;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

bool crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int crypto_random(void *p, size_t n)
{
    unsigned char *q = p;
    /* RAND_bytes takes an int length, so large requests go in chunks. */
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(q, chunk) != 1)
            return ERR_INTERNAL;
        q += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

/* Ids are wanted per request and trace, and RAND_bytes costs far more per call than per
 * byte: draw them from a pool of CSPRNG output, refilled in bulk. One loop thread uses it;
 * a forked child refills rather than repeat its parent's ids. */
static void pool_take(unsigned char *b, size_t n)
{
    static unsigned char pool[4096];
    static size_t left;
    static pid_t owner;
    if (left < n || owner != getpid()) {
        if (crypto_random(pool, sizeof(pool)) != 0)
            abort();
        left = sizeof(pool);
        owner = getpid();
    }
    memcpy(b, pool + sizeof(pool) - left, n);
    OPENSSL_cleanse(pool + sizeof(pool) - left, n);
    left -= n;
}

void crypto_uuid4(char out[CRYPTO_UUID_SIZE])
{
    unsigned char b[16];
    char hex[33];
    pool_take(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    crypto_hex(b, sizeof(b), hex);
    /* 8-4-4-4-12 hex digits with dashes between the groups. */
    static const unsigned groups[] = {8, 4, 4, 4, 12};
    char *o = out;
    const char *h = hex;
    for (size_t i = 0; i < ARRAY_SIZE(groups); i++) {
        if (i > 0)
            *o++ = '-';
        memcpy(o, h, groups[i]);
        o += groups[i];
        h += groups[i];
    }
    *o = '\0';
}

int crypto_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                       unsigned char out[CRYPTO_SHA256_LEN])
{
    size_t outlen = 0;
    /* HMAC allows an empty key, but OpenSSL wants a real pointer for it. */
    static const unsigned char empty[1];
    const void *k = klen ? key : empty;
    unsigned char *res = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k, klen, msg, mlen, out,
                                   CRYPTO_SHA256_LEN, &outlen);
    if (res == NULL || outlen != CRYPTO_SHA256_LEN)
        return ERR_INTERNAL;
    return 0;
}

struct crypto_hmac {
    EVP_MAC_CTX *ctx;
};

int crypto_hmac_new(struct crypto_hmac **out, const void *key, size_t klen)
{
    static const unsigned char empty[1];
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    struct crypto_hmac *h = calloc(1, sizeof(*h));
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (h != NULL && mac != NULL)
        h->ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (h == NULL || h->ctx == NULL ||
        EVP_MAC_init(h->ctx, klen ? key : empty, klen, params) != 1) {
        crypto_hmac_free(h);
        return ERR_INTERNAL;
    }
    *out = h;
    return 0;
}

void crypto_hmac_free(struct crypto_hmac *h)
{
    if (h == NULL)
        return;
    EVP_MAC_CTX_free(h->ctx);
    free(h);
}

int crypto_hmac_run(struct crypto_hmac *h, const void *msg, size_t mlen,
                    unsigned char out[CRYPTO_SHA256_LEN])
{
    size_t outlen = 0;
    /* Initialising without a key starts a new MAC under the key already set. */
    if (EVP_MAC_init(h->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(h->ctx, msg, mlen) != 1 ||
        EVP_MAC_final(h->ctx, out, &outlen, CRYPTO_SHA256_LEN) != 1 || outlen != CRYPTO_SHA256_LEN)
        return ERR_INTERNAL;
    return 0;
}

/* Builds the HKDF parameter list. The pointers are only read by OpenSSL; the casts are
 * needed because OSSL_PARAM has one non-const data field for input and output alike. */
static void hkdf_params(OSSL_PARAM *p, const void *salt, size_t salt_len, const void *ikm,
                        size_t ikm_len, const char *info)
{
    static char digest[] = "SHA256";
    static unsigned char empty[1];
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                             ikm_len ? (void *)(uintptr_t)ikm : empty, ikm_len);
    if (salt_len > 0)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt,
                                                 salt_len);
    if (info != NULL && info[0] != '\0')
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info,
                                                 strlen(info));
    *p = OSSL_PARAM_construct_end();
}

int crypto_hkdf_sha256(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
                       const char *info, unsigned char *out, size_t out_len)
{
    if (out_len == 0 || out_len > 255 * CRYPTO_SHA256_LEN)
        return ERR_INVALID_INPUT;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (ctx == NULL)
        return ERR_INTERNAL;
    OSSL_PARAM params[5];
    hkdf_params(params, salt, salt_len, ikm, ikm_len, info);
    int ok = EVP_KDF_derive(ctx, out, out_len, params);
    EVP_KDF_CTX_free(ctx);
    return ok == 1 ? 0 : ERR_INTERNAL;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t crypto_base64url(const void *p, size_t n, char *out, size_t size)
{
    const unsigned char *in = p;
    size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    if (n > (SIZE_MAX - 1) / 4 * 3 || size < need + 1)
        return 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        size_t chars = n - i >= 3 ? 4 : n - i + 1;
        for (size_t c = 0; c < chars; c++)
            out[o++] = b64url_alphabet[(v >> (18 - 6 * c)) & 0x3f];
    }
    out[o] = '\0';
    return o;
}

static int b64url_value(char c)
{
    const char *hit = c ? strchr(b64url_alphabet, c) : NULL;
    return hit ? (int)(hit - b64url_alphabet) : -1;
}

/* Decodes one group of 2 to 4 characters into 1 to 3 bytes. Bits left over in a short
 * group must be zero, so that every byte string has exactly one encoding. */
static int b64url_group(const char *s, size_t chars, unsigned char *out)
{
    uint32_t v = 0;
    for (size_t c = 0; c < 4; c++) {
        int d = c < chars ? b64url_value(s[c]) : 0;
        if (d < 0)
            return ERR_PARSE;
        v = v << 6 | (uint32_t)d;
    }
    size_t bytes = chars - 1;
    if (bytes < 3 && (v & (0xffffffu >> (8 * bytes))) != 0)
        return ERR_PARSE;
    for (size_t b = 0; b < bytes; b++)
        out[b] = (unsigned char)(v >> (16 - 8 * b));
    return 0;
}

int crypto_unbase64url(const char *s, size_t len, unsigned char *out, size_t size, size_t *out_len)
{
    if (len % 4 == 1)
        return ERR_PARSE;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > size)
        return ERR_TOO_LARGE;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        size_t chars = len - i >= 4 ? 4 : len - i;
        int err = b64url_group(s + i, chars, out + o);
        if (err)
            return err;
        o += chars - 1;
    }
    *out_len = o;
    return 0;
}

/* Runs AES-256-GCM one way or the other over in[0..n) into out. For decryption the
 * expected tag is set before the final step, which then fails on any mismatch. */
static int gcm_run(int enc, const unsigned char *key, const unsigned char *nonce, const void *aad,
                   size_t aad_len, const unsigned char *in, size_t n, unsigned char *out,
                   unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    int ok = ctx != NULL;
    ok = ok && EVP_CipherInit_ex2(ctx, aes_256_gcm(), key, nonce, enc, NULL) == 1;
    if (ok && aad_len > 0)
        ok = EVP_CipherUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1;
    if (ok && n > 0)
        ok = EVP_CipherUpdate(ctx, out, &len, in, (int)n) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_TAG_LEN, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(ctx, out + (n > 0 ? len : 0), &len) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : (enc ? ERR_INTERNAL : ERR_PARSE);
}

int crypto_seal(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const void *plain, size_t n, struct buf *out)
{
    if (n > MAX_CIPHER_INPUT || aad_len > MAX_CIPHER_INPUT)
        return ERR_TOO_LARGE;
    size_t total = n + CRYPTO_SEAL_OVERHEAD;
    unsigned char *sealed = malloc(total);
    if (sealed == NULL)
        return UV_ENOMEM;
    unsigned char *nonce = sealed;
    unsigned char *tag = sealed + CRYPTO_NONCE_LEN + n;
    int err = crypto_random(nonce, CRYPTO_NONCE_LEN);
    if (!err)
        err = gcm_run(1, key, nonce, aad, aad_len, plain, n, sealed + CRYPTO_NONCE_LEN, tag);
    if (!err)
        err = buf_append(out, sealed, total);
    free(sealed);
    return err;
}

int crypto_open(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const void *sealed, size_t n, struct buf *out)
{
    if (n < CRYPTO_SEAL_OVERHEAD)
        return ERR_PARSE;
    if (n > MAX_CIPHER_INPUT || aad_len > MAX_CIPHER_INPUT)
        return ERR_TOO_LARGE;
    const unsigned char *in = sealed;
    size_t plain_len = n - CRYPTO_SEAL_OVERHEAD;
    unsigned char tag[CRYPTO_TAG_LEN];
    memcpy(tag, in + CRYPTO_NONCE_LEN + plain_len, CRYPTO_TAG_LEN);
    /* One spare byte so that an empty plaintext still gets a real allocation. */
    unsigned char *plain = malloc(plain_len + 1);
    if (plain == NULL)
        return UV_ENOMEM;
    int err = gcm_run(0, key, in, aad, aad_len, in + CRYPTO_NONCE_LEN, plain_len, plain, tag);
    if (!err)
        err = buf_append(out, plain, plain_len);
    /* Unauthenticated plaintext must not linger in freed memory either. */
    OPENSSL_clear_free(plain, plain_len + 1);
    return err;
}

/* Reads at most CRYPTO_SECRET_MAX + 1 bytes, so that an oversized file is noticed. */
static int read_secret(int fd, struct buf *out)
{
    unsigned char chunk[512];
    ssize_t got;
    int err = 0;
    do {
        got = read(fd, chunk, sizeof(chunk));
        if (got < 0 && errno != EINTR)
            err = ERR_CONFIG;
        else if (got > 0 && buf_append(out, chunk, (size_t)got) != 0)
            err = ERR_CONFIG;
    } while (!err && got != 0);
    OPENSSL_cleanse(chunk, sizeof(chunk));
    return err;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int check_secret(const char *path, int fd, struct buf *out)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return ERR_CONFIG;
    int err = read_secret(fd, out);
    if (err)
        return err;
    size_t n = buf_len(out);
    while (n > 0 && is_space(buf_cstr(out)[n - 1]))
        n--;
    buf_truncate(out, n);
    if (buf_len(out) < CRYPTO_SECRET_MIN)
        return ERR_CONFIG;
    /* Refusing would break deployments that mount secrets with loose modes, so only warn;
     * the path is configuration, not personal data. */
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        log_event(LOG_LEVEL_WARN, NULL, "secret file is accessible to group or others",
                  json_pack("{s:s}", "path", path));
    return 0;
}

int crypto_load_secret(const char *path, struct buf *out)
{
    buf_init(out, CRYPTO_SECRET_MAX);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ERR_CONFIG;
    int err = check_secret(path, fd, out);
    close(fd);
    if (err)
        buf_wipe(out);
    return err;
}
