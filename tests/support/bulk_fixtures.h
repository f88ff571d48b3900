#ifndef PDS_TEST_BULK_FIXTURES_H
#define PDS_TEST_BULK_FIXTURES_H

/* A simple file of 11 rows and what it gives, and a pds-mesh file of 8 rows and its rows
 * out (after the header record, which names the file or the job). */
extern const char bulk_fixture_simple_in[];
extern const char bulk_fixture_simple_out[];
extern const char bulk_fixture_mesh_in[];
extern const char bulk_fixture_mesh_rows[];

/* pds-mesh's 21 empty demographic columns, between REQ_NHS_NUMBER and SENSITIVITY_FLAG. */
#define BULK_FIXTURE_EMPTY21 ",,,,,,,,,,,,,,,,,,,,,"

#endif
