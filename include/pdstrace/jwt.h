#ifndef PDS_AUTH_JWT_H
#define PDS_AUTH_JWT_H

#include <jansson.h>

/* RS512 JSON Web Tokens for NHS "signed JWT" application-restricted auth (pds/README.md,
 * DESIGN.md §4): building the client assertion, and verifying one for the mock PDS token
 * endpoint and the tests. Pure: nothing here touches the loop. */

#define JWT_MAX_TTL_S 300 /* NHS refuses assertions that expire more than 5 minutes ahead */
#define JWT_MAX_LEN   16384

struct jwt_key;    /* an RSA private key (opaque) */
struct jwt_pubkey; /* an RSA public key (opaque) */

/* Loads an RSA private key (PEM, PKCS#1 or PKCS#8, unencrypted) of at least 2048 bits.
 * Returns 0 and sets *out (free with jwt_key_free), or ERR_CONFIG. */
int jwt_key_load(struct jwt_key **out, const char *pem_path);
/* As jwt_key_load; on ERR_CONFIG, *why (a static phrase for a message that names the
 * setting) says what is wrong with the file: "does not exist", "holds no PEM private key",
 * "is encrypted ...", "is not an RSA key ...", "is an RSA key of fewer than 2048 bits"...
 * No passphrase is ever asked for. why may be NULL. */
int jwt_key_load_why(struct jwt_key **out, const char *pem_path, const char **why);
/* NULL is fine. */
void jwt_key_free(struct jwt_key *k);

/* Builds and signs a client assertion: header {"alg":"RS512","typ":"JWT","kid":kid},
 * claims iss = sub = client_id, aud = token_url, jti = a fresh UUIDv4, exp = now + ttl_s
 * (integer seconds since the epoch). now is passed in so tests can pin it; ttl_s must be
 * 1..JWT_MAX_TTL_S. Returns the compact JWT (malloc'd, the caller frees it) or NULL on bad
 * arguments or failure. */
char *jwt_client_assertion(const struct jwt_key *k, const char *kid, const char *client_id,
                           const char *token_url, long long now, int ttl_s);

/* Loads an RSA public key (PEM "PUBLIC KEY", SubjectPublicKeyInfo). Returns 0 and sets
 * *out (free with jwt_pubkey_free), or ERR_CONFIG. */
int jwt_pubkey_load(struct jwt_pubkey **out, const char *pem_path);
/* NULL is fine. */
void jwt_pubkey_free(struct jwt_pubkey *k);

/* Checks a compact JWT: the header must be a JSON object with "alg":"RS512" and the
 * signature must verify under k. Claims are decoded only after the signature holds; their
 * values (exp, aud, ...) are the caller's to judge. On success sets *header and *claims
 * (new references, json_decref both; either pointer may be NULL if not wanted). Returns 0,
 * ERR_PARSE (malformed) or ERR_UNAUTHORISED (wrong alg or bad signature). */
int jwt_verify(const struct jwt_pubkey *k, const char *jwt, json_t **header, json_t **claims);

#endif
