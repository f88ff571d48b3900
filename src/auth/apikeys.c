#include "pdstrace/apikeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <uv.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

struct apikeys {
    size_t count;
    struct apikey *keys;
};

static const struct {
    const char *name;
    unsigned bit;
} roles[] = {
    {"trace", APIKEY_ROLE_TRACE},
    {"bulk", APIKEY_ROLE_BULK},
    {"objections", APIKEY_ROLE_OBJECTIONS},
    {"admin", APIKEY_ROLE_ADMIN},
};

unsigned apikeys_role(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(roles); i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].bit;
    return 0;
}

static int parse_roles(const json_t *arr, unsigned *out)
{
    size_t i;
    const json_t *v;
    *out = 0;
    if (!json_is_array(arr))
        return ERR_CONFIG;
    json_array_foreach(arr, i, v)
    {
        unsigned bit = json_is_string(v) ? apikeys_role(json_string_value(v)) : 0;
        if (bit == 0)
            return ERR_CONFIG;
        *out |= bit;
    }
    return 0;
}

static int parse_entry(const json_t *e, struct apikey *k, size_t i, char *err, size_t n)
{
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *hex = json_string_value(json_object_get(e, "key_sha256"));
    if (name == NULL || name[0] == '\0' || strlen(name) >= sizeof(k->name)) {
        snprintf(err, n, "entry %zu: name must be a string of 1-63 characters", i);
        return ERR_CONFIG;
    }
    snprintf(k->name, sizeof(k->name), "%s", name);
    if (hex == NULL || strlen(hex) != 64 || crypto_unhex(hex, k->sha256, 32)) {
        snprintf(err, n, "key %s: key_sha256 must be 64 hex characters", name);
        return ERR_CONFIG;
    }
    if (parse_roles(json_object_get(e, "roles"), &k->roles)) {
        snprintf(err, n, "key %s: roles must be an array of trace, bulk, objections, admin", name);
        return ERR_CONFIG;
    }
    return 0;
}

static int parse_keys(struct apikeys *keys, const json_t *root, char *err, size_t n)
{
    if (!json_is_array(root)) {
        snprintf(err, n, "must hold a JSON array of keys");
        return ERR_CONFIG;
    }
    keys->count = json_array_size(root);
    keys->keys = calloc(keys->count ? keys->count : 1, sizeof(*keys->keys));
    if (keys->keys == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < keys->count; i++) {
        int e = parse_entry(json_array_get(root, i), &keys->keys[i], i, err, n);
        if (e)
            return e;
    }
    return 0;
}

int apikeys_load(struct apikeys **out, const char *path, char *err, size_t err_size)
{
    struct apikeys *keys = calloc(1, sizeof(*keys));
    if (keys == NULL)
        return UV_ENOMEM;
    *out = keys;
    if (path == NULL || path[0] == '\0')
        return 0;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    char why[256] = "";
    int e = root != NULL ? parse_keys(keys, root, why, sizeof(why)) : ERR_CONFIG;
    if (root == NULL)
        snprintf(why, sizeof(why), "line %d: %s", je.line, je.text);
    json_decref(root);
    if (e) {
        snprintf(err, err_size, "PDS_TRACE_API_KEYS_FILE (api_keys_file) %s: %s", path, why);
        apikeys_free(keys);
        *out = NULL;
    }
    return e;
}

void apikeys_free(struct apikeys *keys)
{
    if (keys == NULL)
        return;
    free(keys->keys);
    free(keys);
}

const struct apikey *apikeys_find(const struct apikeys *keys, const char *key)
{
    unsigned char digest[32];
    const struct apikey *found = NULL;
    crypto_sha256(key, strlen(key), digest);
    for (size_t i = 0; i < keys->count; i++) {
        /* No early exit: each entry costs the same whether or not it matches. */
        if (crypto_equal(digest, keys->keys[i].sha256, sizeof(digest)) && found == NULL)
            found = &keys->keys[i];
    }
    return found;
}

size_t apikeys_count(const struct apikeys *keys)
{
    return keys->count;
}
