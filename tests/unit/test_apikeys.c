#include "pdstrace/apikeys.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"

TestSuite(apikeys, .timeout = 10);

static char path[64];
static char errline[512];

static void write_keys(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/pdskeysXXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

static void digest_hex(const char *key, char hex[65])
{
    unsigned char d[32];
    crypto_sha256(key, strlen(key), d);
    crypto_hex(d, sizeof(d), hex);
}

Test(apikeys, finds_key_by_digest_with_roles)
{
    char a[65], b[65], text[512];
    digest_hex("alpha-key", a);
    digest_hex("beta-key", b);
    snprintf(text, sizeof(text),
             "[{\"name\":\"case-system\",\"key_sha256\":\"%s\",\"roles\":[\"trace\","
             "\"objections\"]},{\"name\":\"ops\",\"key_sha256\":\"%s\",\"roles\":[\"admin\"]}]",
             a, b);
    write_keys(text);
    struct apikeys *keys;
    cr_assert_eq(apikeys_load(&keys, path, errline, sizeof(errline)), 0, "%s", errline);
    const struct apikey *k = apikeys_find(keys, "alpha-key");
    cr_assert_not_null(k);
    cr_assert_str_eq(k->name, "case-system");
    cr_assert_eq(k->roles, APIKEY_ROLE_TRACE | APIKEY_ROLE_OBJECTIONS);
    cr_assert_str_eq(apikeys_find(keys, "beta-key")->name, "ops");
    cr_assert_null(apikeys_find(keys, "alpha-ke"));
    cr_assert_null(apikeys_find(keys, ""));
    apikeys_free(keys);
    unlink(path);
}

Test(apikeys, rejects_bad_entries_without_echoing_keys)
{
    static const char *const bad[] = {
        "{}",
        "[{\"name\":\"x\",\"key_sha256\":\"abc\",\"roles\":[\"trace\"]}]",
        "[{\"name\":\"x\",\"key_sha256\":\""
        "0000000000000000000000000000000000000000000000"
        "000000000000000000\",\"roles\":[\"root\"]}]",
        "[{\"key_sha256\":\"00\",\"roles\":[]}]",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_keys(bad[i]);
        struct apikeys *keys = NULL;
        cr_assert_eq(apikeys_load(&keys, path, errline, sizeof(errline)), ERR_CONFIG, "case %zu",
                     i);
        cr_assert(strstr(errline, "PDS_TRACE_API_KEYS_FILE") != NULL, "%s", errline);
        cr_assert_null(keys);
        unlink(path);
    }
}

Test(apikeys, no_file_means_no_keys)
{
    struct apikeys *keys;
    cr_assert_eq(apikeys_load(&keys, "", errline, sizeof(errline)), 0);
    cr_assert_eq(apikeys_count(keys), 0);
    cr_assert_null(apikeys_find(keys, "anything"));
    apikeys_free(keys);
}

Test(apikeys, role_names)
{
    cr_assert_eq(apikeys_role("bulk"), APIKEY_ROLE_BULK);
    cr_assert_eq(apikeys_role("superuser"), 0);
}
