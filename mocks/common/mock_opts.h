#ifndef PDS_MOCKCOMMON_MOCK_OPTS_H
#define PDS_MOCKCOMMON_MOCK_OPTS_H

#include <stddef.h>

/* The mocks' command lines: a table of "--name value" options, each stored at its offset in
 * the program's own options struct, and the one-line errors every bad argument gets. */

/* Exit codes, as pds-trace's: 0 done, 1 failed while running, 2 bad usage or setting. */
enum { MOCK_EXIT_OK = 0, MOCK_EXIT_FAILED = 1, MOCK_EXIT_USAGE = 2 };

/* What an option's value is, and the type of the member it is stored in. */
enum mock_opt_kind {
    MOCK_OPT_STR,    /* const char *, borrowed from argv */
    MOCK_OPT_PORT,   /* int, 0..65535 */
    MOCK_OPT_UINT,   /* unsigned, 0..UINT_MAX */
    MOCK_OPT_U64,    /* uint64_t */
    MOCK_OPT_RATE,   /* double, 0..1 */
    MOCK_OPT_STATUS, /* int, 0..599 */
    MOCK_OPT_FLAG,   /* bool, set to true; takes no value */
};

struct mock_opt {
    const char *name; /* "--port" */
    enum mock_opt_kind kind;
    size_t offset; /* of the member in the program's options struct */
    /* The fault field the option sets, as the mock's faults check names it; NULL: none. */
    const char *field;
};

/* An option stored in member of struct type; MOCK_FAULT_OPT for one that sets the fault
 * field cfg.faults.field. */
#define MOCK_OPT(type, name, kind, member)                                                         \
    {                                                                                              \
        name, kind, offsetof(type, member), NULL                                                   \
    }
#define MOCK_FAULT_OPT(type, name, kind, field)                                                    \
    {                                                                                              \
        name, kind, offsetof(type, cfg.faults.field), #field                                       \
    }

/* Called after an option's value has been stored in opts. */
typedef void mock_opt_seen_fn(void *opts, const struct mock_opt *opt);

/* One program's command line. */
struct mock_cli {
    const char *prog; /* starts every error line: "mock-pds" */
    const struct mock_opt *opts;
    size_t n_opts;
    mock_opt_seen_fn *seen; /* NULL: nobody asks */
};

/* Writes "<prog>: <message> (see --help)" on stderr and returns MOCK_EXIT_USAGE. */
int mock_opts_bad(const struct mock_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Stores argv[1..argc-1] in opts as cli's table says. Returns 0, or MOCK_EXIT_USAGE after
 * mock_opts_bad for an unknown argument, a missing value or a bad one. */
int mock_opts_parse(const struct mock_cli *cli, void *opts, int argc, char **argv);

/* Sets the log level from --log-level (NULL: left as it is). Returns 0 or MOCK_EXIT_USAGE
 * after mock_opts_bad. */
int mock_opts_log_level(const struct mock_cli *cli, const char *level);

/* Reports a fault value out of range, naming the option that sets field (or field itself
 * when no option does). Returns MOCK_EXIT_USAGE. */
int mock_opts_out_of_range(const struct mock_cli *cli, const char *field);

#endif
