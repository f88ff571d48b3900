/* The people files both bulk paths are tested with (tests/integration/test_bulk_cli.c,
 * tests/unit/test_bulk_job.c): the fixed people of mocks/pds/README.md, each answer and
 * each kind of bad row once, and what they must give. */
#include "bulk_fixtures.h"

const char bulk_fixture_simple_in[] =
    "reference,family,given,birth_date,gender,postcode,nhs_number\n"
    "r1,Smith,Jane,2010-10-22,female,LS1 6AE,\n"
    "r2,Patel,Priya,1979-09-03,,BD9 4RU,\n"
    "r3,Khan,Mohammed,1983-01-15,male,,\n"
    "r4,Nobody,Anne,1950-01-01,,,\n"
    "r5,Cuff,Ruth,1926-01-07,female,,9000000025\n"
    "r6,,Jane,2010-10-22,,,\n"
    "r7,Smith,Jane,2010-02-30,,,\n"
    "\"r8, quoted\",\"SMITH\",\"Jane\",2010-10-22,female,ls16ae,\n"
    "r9,Smith,Jane,2010-10-22,female,LS1 6AE,900000000\n"
    "r10,Pennington,Margaret,1947-08-23,female,PR1 8JD,\n"
    "r11,Smith,Jane\n";

const char bulk_fixture_simple_out[] =
    "reference,family,given,birth_date,gender,postcode,nhs_number,outcome,matched_nhs_number,"
    "score,error\r\n"
    "r1,Smith,Jane,2010-10-22,female,LS1 6AE,,matched,9000000009,1,\r\n"
    "r2,Patel,Priya,1979-09-03,,BD9 4RU,,matched,9000000092,0.99,\r\n"
    "r3,Khan,Mohammed,1983-01-15,male,,,multiple_matches,,,\r\n"
    "r4,Nobody,Anne,1950-01-01,,,,no_match,,,\r\n"
    "r5,Cuff,Ruth,1926-01-07,female,,9000000025,matched,9000000041,1,\r\n"
    "r6,,Jane,2010-10-22,,,,invalid,,,family: missing\r\n"
    "r7,Smith,Jane,2010-02-30,,,,invalid,,,birth_date: is not a real calendar date\r\n"
    "\"r8, quoted\",SMITH,Jane,2010-10-22,female,ls16ae,,matched,9000000009,1,\r\n"
    "r9,Smith,Jane,2010-10-22,female,LS1 6AE,900000000,invalid,,,"
    "nhs_number: is not a valid NHS number (10 digits with a valid check digit)\r\n"
    "r10,Pennington,Margaret,1947-08-23,female,PR1 8JD,,potential_match,9000000149,0.94,\r\n"
    "r11,Smith,Jane,,,,,invalid,,,the row has 3 fields; the header has 7\r\n";

const char bulk_fixture_mesh_in[] =
    "UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,DATE_OF_BIRTH,"
    "POSTCODE\r\n"
    "m1,,SMITH,JANE,,2,20101022,LS1 6AE\r\n"
    "m2,,O'Hara,Alexis,,2,19880314,\r\n"
    "m3,9000000025,Cuff,Ruth,Edna,2,19260107,DN20 0PQ\r\n"
    "m4,9000000068,Nobody,Anne,,0,19500101,\r\n"
    "m5,,Khan,Mohammed,,1,19830115,\r\n"
    "m6,,Nobody,Anne,,9,19500101,\r\n"
    "m7,,Smith,Jane,,2,201010,\r\n"
    "m8,943 476 5870,Smith,Jane,,2,20101022,LS1 6AE\r\n";

const char bulk_fixture_mesh_rows[] =
    "m1," BULK_FIXTURE_EMPTY21 ",,,00,9000000009,2,100\r\n"
    "m2," BULK_FIXTURE_EMPTY21 ",S,,92,9000000017,2,100\r\n"
    "m3,9000000025" BULK_FIXTURE_EMPTY21 ",,,90,9000000041,1,100\r\n"
    "m4,9000000068" BULK_FIXTURE_EMPTY21 ",,,91,0000000000,1,0\r\n"
    "m5," BULK_FIXTURE_EMPTY21 ",,,97,9999999999,0,0\r\n"
    "m6," BULK_FIXTURE_EMPTY21 ",,,98,0000000000,0,0\r\n"
    "m7," BULK_FIXTURE_EMPTY21 ",,,96,0000000000,0,0\r\n"
    "m8,943 476 5870" BULK_FIXTURE_EMPTY21 ",,,00,9000000009,2,100\r\n";
