#ifndef PDS_CORE_CONFIG_H
#define PDS_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "pdstrace/log.h"

/* Settings of DESIGN.md §7: built-in defaults, then an optional JSON file, then
 * PDS_TRACE_* environment variables (environment wins). Every JSON key "section.key" has
 * the twin PDS_TRACE_SECTION_KEY; top-level keys have PDS_TRACE_KEY. Secrets are never
 * settings: settings name the files that hold them. The struct is plain data (fixed
 * arrays), so it can be copied and needs no freeing. */

#define CONFIG_STR_MAX 512

enum config_pds_auth {
    CONFIG_PDS_AUTH_NONE,
    CONFIG_PDS_AUTH_SIGNED_JWT,
};

struct config {
    char listen[CONFIG_STR_MAX];
    char api_keys_file[CONFIG_STR_MAX];
    char secret_file[CONFIG_STR_MAX];
    struct {
        size_t max_header_bytes;
        size_t max_body_bytes;
        unsigned header_timeout_ms;
        unsigned body_timeout_ms;
        unsigned idle_timeout_ms;
        unsigned drain_ms;
        unsigned max_connections;
        unsigned max_connections_per_client;
    } server;
    struct {
        char url[CONFIG_STR_MAX];
        unsigned connect_timeout_ms;
        unsigned command_timeout_ms;
        char key_prefix[64];
    } redis;
    struct {
        int level; /* enum log_level */
    } log;
    struct {
        char base_url[CONFIG_STR_MAX];
        int auth; /* enum config_pds_auth */
        char token_url[CONFIG_STR_MAX];
        char client_id[CONFIG_STR_MAX];
        char key_file[CONFIG_STR_MAX];
        char kid[128];
        char ods_code[16];
        double rate;
        unsigned concurrency;
        unsigned timeout_ms;
        unsigned max_attempts;
        unsigned deadline_ms;
        unsigned max_queue;
        char ca_file[CONFIG_STR_MAX];
        char client_cert_file[CONFIG_STR_MAX];
        char client_key_file[CONFIG_STR_MAX];
        bool fuzzy;
        bool history;
    } pds;
    struct {
        double accept_score;
        double review_score;
    } match;
    struct {
        unsigned ttl_s;
        unsigned negative_ttl_s;
    } cache;
    struct {
        char base_url[CONFIG_STR_MAX];
        char token_file[CONFIG_STR_MAX];
        unsigned max_age_s;
        unsigned timeout_ms;
        unsigned concurrency;
        unsigned retry_initial_ms;
        unsigned retry_max_ms;
        unsigned reclaim_idle_ms;
        char ca_file[CONFIG_STR_MAX];
        char client_cert_file[CONFIG_STR_MAX];
        char client_key_file[CONFIG_STR_MAX];
    } case_system;
    struct {
        unsigned max_staleness_ms;
    } objections;
    struct {
        size_t max_bytes;         /* a POST /v1/bulk file's size limit */
        unsigned concurrency;     /* HTTP job rows traced at once per instance */
        unsigned reclaim_idle_ms; /* rows idle this long on a stopped instance are taken */
        unsigned retention_s;     /* a job's keys outlive its last change by this */
    } bulk;
};

/* Fills every setting with its built-in default. */
void config_defaults(struct config *c);

/* Defaults, then the JSON file at path (NULL for none), then the environment, then the
 * checks across settings. Returns 0, or ERR_CONFIG with one line naming the setting in
 * err (for example "PDS_TRACE_PDS_RATE (pds.rate): must be a number from 0.1 to 1000"). */
int config_load(struct config *c, const char *path, char *err, size_t err_size);

/* Prints every setting: JSON key, environment variable, default and meaning. */
void config_print_help(FILE *f);

/* Splits "host:port" or "[v6]:port". Returns 0 or ERR_INVALID_INPUT. */
int config_parse_listen(const char *listen, char *host, size_t host_size, int *port);

#endif
