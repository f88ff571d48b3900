#ifndef PDS_MOCKPDS_SAMPLE_H
#define PDS_MOCKPDS_SAMPLE_H

#include <stdint.h>
#include <stdio.h>

/* Sample bulk files (DESIGN.md §6, simple and pds-mesh) drawn from the mock's population,
 * for the bulk command's tests, examples and benchmarks: people as a council holds them,
 * some with their NHS number (a few superseded or invalidated), some with an older or no
 * postcode, a few made-up people, repeats, and about 1 % bad rows. The mix is documented
 * in mocks/pds/README.md ("Sample bulk files"). Rows are written one at a time, so memory
 * does not grow with their count; the same population, options and seed give the same
 * bytes. Synchronous; nothing is logged. */

struct population;

enum sample_format {
    SAMPLE_SIMPLE,   /* reference,family,given,birth_date,gender,postcode,address,... */
    SAMPLE_PDS_MESH, /* the 24 request columns of the PDS MESH layout */
};

/* "simple" or "pds-mesh". Returns 0 or ERR_INVALID_INPUT. */
int sample_format_parse(const char *name, enum sample_format *out);

struct sample_opts {
    enum sample_format format;
    uint64_t rows;        /* data rows after the header */
    uint64_t seed;        /* mock-pds passes its --seed, the population's */
    uint64_t sample_seed; /* another sample of the same population; 0 is as good as any */
};

/* Writes the header and o->rows data rows drawn from pop (borrowed) to f (borrowed, left
 * open), each record ending in CRLF, fields quoted as RFC 4180 says. Returns 0,
 * ERR_INTERNAL when a write fails, ERR_INVALID_INPUT when pop has nobody with a name, or
 * UV_ENOMEM. */
int sample_write(const struct population *pop, const struct sample_opts *o, FILE *f);

/* The same into the file at path, created or replaced. Returns as sample_write, and
 * ERR_NOT_FOUND when the file cannot be created. */
int sample_save(const struct population *pop, const struct sample_opts *o, const char *path);

#endif
