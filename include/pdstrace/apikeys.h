#ifndef PDS_AUTH_APIKEYS_H
#define PDS_AUTH_APIKEYS_H

#include <stddef.h>

/* API keys with roles (DESIGN.md §3). The keys file holds only SHA-256 digests:
 * [{"name": "case-system", "key_sha256": "<64 hex>", "roles": ["trace", ...]}]. */
struct apikeys;

enum apikey_role {
    APIKEY_ROLE_TRACE = 1 << 0,
    APIKEY_ROLE_BULK = 1 << 1,
    APIKEY_ROLE_OBJECTIONS = 1 << 2,
    APIKEY_ROLE_ADMIN = 1 << 3,
};

struct apikey {
    char name[64];
    unsigned roles; /* enum apikey_role bits */
    unsigned char sha256[32];
};

/* Loads and checks a keys file. path NULL or "" gives an empty set (every key refused).
 * Returns 0, or ERR_CONFIG with a line naming the problem (never a key) in err. */
int apikeys_load(struct apikeys **out, const char *path, char *err, size_t err_size);
void apikeys_free(struct apikeys *keys);

/* The entry whose digest matches key, or NULL. Every entry is compared, in constant time,
 * so the answer's timing does not depend on which entry (if any) matched. The result is
 * borrowed from keys. */
const struct apikey *apikeys_find(const struct apikeys *keys, const char *key);

/* The bit of a role name ("trace"), or 0 for an unknown name. */
unsigned apikeys_role(const char *name);

size_t apikeys_count(const struct apikeys *keys);

#endif
