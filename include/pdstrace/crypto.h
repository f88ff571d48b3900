#ifndef PDS_CORE_CRYPTO_H
#define PDS_CORE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/* Small, pure wrappers over OpenSSL 3's EVP interfaces: hashes, MACs, key derivation,
 * authenticated encryption and the encodings the service needs (API keys, request ids,
 * the encrypted cache, JWT). Nothing here touches the loop. */

struct buf;

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_UUID_SIZE  37 /* 36 characters and the NUL */
#define CRYPTO_KEY_LEN    32 /* AES-256 */
#define CRYPTO_NONCE_LEN  12
#define CRYPTO_TAG_LEN    16
/* What crypto_seal adds to the plaintext: nonce in front, tag behind. */
#define CRYPTO_SEAL_OVERHEAD (CRYPTO_NONCE_LEN + CRYPTO_TAG_LEN)
#define CRYPTO_SECRET_MIN    32
#define CRYPTO_SECRET_MAX    4096

/* SHA-256 of p[0..n). Aborts only if OpenSSL cannot allocate a digest context. */
void crypto_sha256(const void *p, size_t n, unsigned char out[CRYPTO_SHA256_LEN]);

/* Lower-case hex of p[0..n) into out, which holds 2n+1 bytes; always NUL-terminated. */
void crypto_hex(const unsigned char *p, size_t n, char *out);

/* Decodes exactly 2n hex characters (either case; hex must be that long and no longer)
 * into out[0..n). Returns 0 or ERR_INVALID_INPUT. */
int crypto_unhex(const char *hex, unsigned char *out, size_t n);

/* Compares a and b in time that depends only on n (CRYPTO_memcmp). */
bool crypto_equal(const void *a, const void *b, size_t n);

/* Fills p[0..n) from the CSPRNG. Returns 0 or ERR_INTERNAL. */
int crypto_random(void *p, size_t n);

/* A random RFC 4122 version-4 UUID in lower case, "xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx".
 * Aborts if the CSPRNG fails, because a predictable id must never be handed out. */
void crypto_uuid4(char out[CRYPTO_UUID_SIZE]);

/* A keyed HMAC-SHA256 for hot paths: the key is set up once, each run only hashes. Not
 * for use from several threads at once. crypto_hmac_free(NULL) is a no-op. */
struct crypto_hmac;
int crypto_hmac_new(struct crypto_hmac **out, const void *key, size_t klen);
void crypto_hmac_free(struct crypto_hmac *h);
int crypto_hmac_run(struct crypto_hmac *h, const void *msg, size_t mlen,
                    unsigned char out[CRYPTO_SHA256_LEN]);

/* HMAC-SHA256 of msg under key. Returns 0 or ERR_INTERNAL. */
int crypto_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                       unsigned char out[CRYPTO_SHA256_LEN]);

/* RFC 5869 HKDF-SHA256 (extract then expand) of ikm into out[0..out_len). salt may be
 * NULL with salt_len 0, which RFC 5869 treats as HashLen zero bytes; info is a C string
 * and may be NULL for none. Returns 0, ERR_INVALID_INPUT (out_len 0 or > 255*32) or
 * ERR_INTERNAL. */
int crypto_hkdf_sha256(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
                       const char *info, unsigned char *out, size_t out_len);

/* Unpadded base64url (RFC 4648 §5) of p[0..n) into out, NUL-terminated. Returns the
 * length written without the NUL, or 0 when out (size bytes) is too small. */
size_t crypto_base64url(const void *p, size_t n, char *out, size_t size);

/* Decodes len characters of unpadded base64url into out (size bytes) and sets *out_len.
 * Padding, characters outside the alphabet and non-zero trailing bits are refused.
 * Returns 0, ERR_PARSE or ERR_TOO_LARGE (out too small). */
int crypto_unbase64url(const char *s, size_t len, unsigned char *out, size_t size, size_t *out_len);

/* AES-256-GCM. Appends nonce (12 random bytes) || ciphertext || tag (16 bytes) to out.
 * aad is authenticated but not stored, and may be NULL with aad_len 0. Returns 0,
 * ERR_TOO_LARGE (input or out's ceiling), UV_ENOMEM or ERR_INTERNAL; on failure out is
 * left as it was. */
int crypto_seal(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const void *plain, size_t n, struct buf *out);

/* Reverses crypto_seal, appending the plaintext to out only once the tag has checked.
 * Returns 0, ERR_PARSE (too short, tampered, wrong key or wrong aad), ERR_TOO_LARGE,
 * UV_ENOMEM or ERR_INTERNAL; on failure out is left as it was. */
int crypto_open(const unsigned char key[CRYPTO_KEY_LEN], const void *aad, size_t aad_len,
                const void *sealed, size_t n, struct buf *out);

/* Reads a secret file whole, drops trailing whitespace and keeps the raw bytes (meant as
 * HKDF input key material, so a file of 64 hex characters works as it is). out must not be
 * initialised; on success it holds the secret (wipe with OPENSSL_cleanse, then buf_free),
 * on failure it is empty. Returns ERR_CONFIG when the file is missing, unreadable, shorter
 * than CRYPTO_SECRET_MIN or longer than CRYPTO_SECRET_MAX bytes. A file that group or
 * others may read is accepted with a warning in the log. */
int crypto_load_secret(const char *path, struct buf *out);

#endif
