#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/apikeys.h"
#include "pdstrace/app.h"
#include "pdstrace/bulk_cli.h"
#include "pdstrace/config.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"

/* Exit codes: 0 done, 1 failed while running, 2 bad usage or setting. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static void usage(FILE *f)
{
    fprintf(f, "usage: pds-trace <command> [options]\n\n"
               "commands:\n"
               "  serve [--config FILE]        run the HTTP service\n"
               "  bulk INPUT.csv -o OUTPUT.csv [--format simple|pds-mesh] [--rate N]\n"
               "       [--concurrency N] [--write-back] [--resume] [--config FILE]\n"
               "                               trace every row of a CSV file (bulk --help)\n"
               "  apikey NAME ROLE[,ROLE...]   mint a new API key and print its keys-file entry\n"
               "                               (roles: trace, bulk, objections, admin)\n\n"
               "options:\n"
               "  --help                       this text (serve --help lists every setting)\n"
               "  --version                    print the version\n");
}

static int serve_usage(FILE *f)
{
    fprintf(f, "usage: pds-trace serve [--config FILE]\n\n"
               "Settings come from built-in defaults, then FILE (JSON), then PDS_TRACE_*\n"
               "environment variables, which win. Secrets are only ever read from files.\n\n");
    config_print_help(f);
    return EXIT_OK;
}

static int run(const struct config *cfg)
{
    uv_loop_t loop;
    struct app *app = NULL;
    char err[512] = "";
    uv_loop_init(&loop);
    int e = app_new(&app, &loop, cfg, err, sizeof(err));
    if (e) {
        fprintf(stderr, "pds-trace: %s\n", err[0] ? err : err_str(e));
        app_stop(app);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    app_free(app);
    if (uv_loop_close(&loop) != 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "handles left open at exit");
    if (e)
        return e == ERR_CONFIG ? EXIT_USAGE : EXIT_FAILED;
    log_msgf(LOG_LEVEL_INFO, NULL, "stopped");
    return EXIT_OK;
}

static int serve(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return serve_usage(stdout);
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
            continue;
        }
        fprintf(stderr, "pds-trace serve: unknown argument %s\n", argv[i]);
        return EXIT_USAGE;
    }
    struct config cfg;
    char err[512];
    if (config_load(&cfg, path, err, sizeof(err))) {
        fprintf(stderr, "pds-trace: %s\n", err);
        return EXIT_USAGE;
    }
    log_set_level((enum log_level)cfg.log.level);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(&cfg);
    curl_global_cleanup();
    return rc;
}

static int check_roles(const char *list)
{
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", list);
    for (char *save = NULL, *r = strtok_r(copy, ",", &save); r != NULL;
         r = strtok_r(NULL, ",", &save))
        if (apikeys_role(r) == 0)
            return ERR_INVALID_INPUT;
    return 0;
}

/* Mints a random key: the key goes to the caller once, only its digest to the file. */
static int apikey(int argc, char **argv)
{
    if (argc != 2 || check_roles(argv[1]) != 0) {
        fprintf(stderr, "usage: pds-trace apikey NAME ROLE[,ROLE...] "
                        "(roles: trace, bulk, objections, admin)\n");
        return EXIT_USAGE;
    }
    unsigned char raw[32], digest[32];
    char key[64], hex[65];
    if (crypto_random(raw, sizeof(raw)) != 0)
        return EXIT_FAILED;
    crypto_base64url(raw, sizeof(raw), key, sizeof(key));
    crypto_sha256(key, strlen(key), digest);
    crypto_hex(digest, sizeof(digest), hex);
    json_t *roles = json_array();
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", argv[1]);
    for (char *save = NULL, *r = strtok_r(copy, ",", &save); r != NULL;
         r = strtok_r(NULL, ",", &save))
        json_array_append_new(roles, json_string(r));
    json_t *entry =
        json_pack("{s:s, s:s, s:o}", "name", argv[0], "key_sha256", hex, "roles", roles);
    char *text = json_dumps(entry, JSON_PRESERVE_ORDER);
    printf("key: %s\nentry for the keys file:\n%s\n", key, text);
    free(text);
    json_decref(entry);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    /* Peers that vanish must surface as write errors, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("pds-trace %s\n", PDS_TRACE_VERSION);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "serve") == 0)
        return serve(argc - 2, argv + 2);
    if (strcmp(argv[1], "bulk") == 0)
        return bulk_cli(argc - 2, argv + 2);
    if (strcmp(argv[1], "apikey") == 0)
        return apikey(argc - 2, argv + 2);
    fprintf(stderr, "pds-trace: unknown command %s\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
