#include "mock_opts.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/log.h"

int mock_opts_bad(const struct mock_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli->prog);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return MOCK_EXIT_USAGE;
}

/* Digits only: strtoull would take a sign or leading spaces. */
static int parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    *out = strtoull(s, &end, 10);
    return errno != 0 || *end != '\0' || *out > max ? -1 : 0;
}

static int parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno != 0 || end == s || *end != '\0' || !(*out >= 0 && *out <= 1) ? -1 : 0;
}

/* Stores one option's value at its place in opts. Returns 0 or -1 for a bad value. */
static int set_value(void *opts, const struct mock_opt *opt, const char *v)
{
    void *at = (char *)opts + opt->offset;
    unsigned long long n = 0;
    switch (opt->kind) {
    case MOCK_OPT_STR:
        *(const char **)at = v;
        return 0;
    case MOCK_OPT_RATE:
        return parse_rate(v, at);
    case MOCK_OPT_U64:
        if (parse_u64(v, UINT64_MAX, &n) != 0)
            return -1;
        *(uint64_t *)at = n;
        return 0;
    case MOCK_OPT_PORT:
    case MOCK_OPT_STATUS:
        if (parse_u64(v, opt->kind == MOCK_OPT_PORT ? 65535 : 599, &n) != 0)
            return -1;
        *(int *)at = (int)n;
        return 0;
    default:
        if (parse_u64(v, UINT_MAX, &n) != 0)
            return -1;
        *(unsigned *)at = (unsigned)n;
        return 0;
    }
}

static const struct mock_opt *find_opt(const struct mock_cli *cli, const char *name)
{
    for (size_t i = 0; i < cli->n_opts; i++)
        if (strcmp(cli->opts[i].name, name) == 0)
            return &cli->opts[i];
    return NULL;
}

int mock_opts_parse(const struct mock_cli *cli, void *opts, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const struct mock_opt *opt = find_opt(cli, argv[i]);
        if (opt == NULL)
            return mock_opts_bad(cli, "unknown argument %s", argv[i]);
        if (opt->kind == MOCK_OPT_FLAG) {
            *(bool *)(void *)((char *)opts + opt->offset) = true;
            continue;
        }
        if (i + 1 >= argc)
            return mock_opts_bad(cli, "%s needs a value", argv[i]);
        if (set_value(opts, opt, argv[i + 1]) != 0)
            return mock_opts_bad(cli, "%s: bad value '%s'", argv[i], argv[i + 1]);
        if (cli->seen != NULL)
            cli->seen(opts, opt);
        i++;
    }
    return 0;
}

int mock_opts_log_level(const struct mock_cli *cli, const char *level)
{
    enum log_level l;
    if (level == NULL)
        return 0;
    if (log_level_parse(level, &l) != 0)
        return mock_opts_bad(cli, "--log-level: bad value '%s'", level);
    log_set_level(l);
    return 0;
}

int mock_opts_out_of_range(const struct mock_cli *cli, const char *field)
{
    const char *name = field;
    for (size_t i = 0; i < cli->n_opts; i++)
        if (cli->opts[i].field != NULL && strcmp(cli->opts[i].field, field) == 0)
            name = cli->opts[i].name;
    return mock_opts_bad(cli, "%s: value out of range", name);
}
