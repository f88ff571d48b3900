/* The synthetic population generator behind population_generate (declared in
 * population.h). Everything is derived from one splitmix64 stream, so the same seed always
 * gives the same document, byte for byte. Proportions are documented in mocks/pds/README.md;
 * the fixed people come first and are the same for every seed. */
#include "population.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"

#define SYS_NHS "https://fhir.nhs.uk/Id/nhs-number"
#define URL_VERIFY                                                                                 \
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
#define SYS_VERIFY  "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
#define SYS_CONFID  "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
#define GEN_MAX_N   1000000
#define FIRST_BLOCK 910000000ULL /* random numbers start here, above the fixed people */
#define LAST_BLOCK  999999999ULL

static const char *const families[] = {
    "Smith",        "Jones",      "Taylor",        "Brown",       "Williams",   "Wilson",
    "Johnson",      "Davies",     "Robinson",      "Wright",      "Thompson",   "Evans",
    "Walker",       "White",      "Roberts",       "Green",       "Hall",       "Wood",
    "Jackson",      "Clarke",     "Patel",         "Khan",        "Lewis",      "James",
    "Phillips",     "Mason",      "Mitchell",      "Rose",        "Davis",      "Rodriguez",
    "Cox",          "Alexander",  "Garden",        "Campbell",    "Johnston",   "Moore",
    "Smyth",        "O'Neill",    "Doherty",       "Stewart",     "Quinn",      "Murphy",
    "Graham",       "McLaughlin", "Hamilton",      "Murray",      "Hughes",     "Robertson",
    "Thomson",      "Scott",      "Macdonald",     "Reid",        "Clark",      "Ross",
    "Young",        "Watson",     "Paterson",      "Morrison",    "O'Brien",    "O'Connor",
    "O'Sullivan",   "D'Souza",    "D'Arcy",        "Smith-Jones", "Bowes-Lyon", "Lloyd-Webber",
    "Ashworth",     "Barker",     "Bennett",       "Booth",       "Bradley",    "Briggs",
    "Butler",       "Carter",     "Chapman",       "Cooper",      "Dawson",     "Dixon",
    "Ellis",        "Fletcher",   "Foster",        "Fox",         "Gibson",     "Harris",
    "Harrison",     "Hartley",    "Holmes",        "Howard",      "Hunt",       "Kaur",
    "Kelly",        "Kennedy",    "King",          "Knight",      "Lawson",     "Lee",
    "Marshall",     "Matthews",   "Mills",         "Morgan",      "Morris",     "Nelson",
    "Owen",         "Palmer",     "Parker",        "Pearson",     "Porter",     "Price",
    "Richards",     "Riley",      "Russell",       "Saunders",    "Shaw",       "Simpson",
    "Singh",        "Spencer",    "Stevens",       "Stone",       "Sutcliffe",  "Turner",
    "Tyler",        "Wade",       "Ward",          "Watts",       "Webb",       "Wells",
    "West",         "Wheeler",    "Whitehead",     "Wilkinson",   "Akhtar",     "Ahmed",
    "Begum",        "Hussain",    "Ali",           "Chowdhury",   "Nowak",      "Kowalski",
    "Wiśniewski",   "Nguyen",     "Chen",          "Wang",        "Okafor",     "Adeyemi",
    "Mensah",       "Gonçalves",  "Müller",        "Brontë",      "Hernández",  "Da Silva",
    "Van der Berg", "De Souza",   "Le Roux",       "Fitzgerald",  "MacKenzie",  "Featherstonehaugh",
    "Higginbottom", "Pennington", "Holloway",      "Fenwick",     "Whitfield",  "Cholmondeley",
    "Ackroyd",      "Armitage",   "Barraclough",   "Broadbent",   "Crowther",   "Haigh",
    "Illingworth",  "Lumb",       "Micklethwaite", "Oldroyd",     "Pickles",    "Rhodes",
    "Sugden",       "Tattersall", "Womersley",     "Garside",     "Greenwood",  "Heaton",
    "Jagger",       "Moorhouse",  "Nettleton",
};

static const char *const female_given[] = {
    "Jane",       "Olivia",     "Amelia",    "Isla",      "Ava",       "Mia",       "Ivy",
    "Lily",       "Isabella",   "Rosie",     "Sophia",    "Grace",     "Freya",     "Willow",
    "Florence",   "Emily",      "Ella",      "Poppy",     "Evie",      "Elsie",     "Charlotte",
    "Evelyn",     "Sienna",     "Sofia",     "Daisy",     "Phoebe",    "Sophie",    "Alice",
    "Harper",     "Matilda",    "Ruby",      "Emilia",    "Maya",      "Millie",    "Isabelle",
    "Eva",        "Margaret",   "Mary",      "Patricia",  "Susan",     "Linda",     "Barbara",
    "Elizabeth",  "Jennifer",   "Sarah",     "Karen",     "Helen",     "Joan",      "Dorothy",
    "Doris",      "Edna",       "Gladys",    "Irene",     "Pauline",   "Sandra",    "Janet",
    "Christine",  "Deborah",    "Julie",     "Tracey",    "Nicola",    "Emma",      "Claire",
    "Rebecca",    "Hannah",     "Laura",     "Amy",       "Jessica",   "Lauren",    "Chloe",
    "Zoë",        "Chloé",      "Renée",     "Noémie",    "Siobhán",   "Aoife",     "Niamh",
    "Saoirse",    "Bronwen",    "Cerys",     "Seren",     "Priya",     "Aisha",     "Fatima",
    "Maryam",     "Zainab",     "Anika",     "Mei",       "Agnieszka", "Oluwaseun", "Mary Ann",
    "Anne-Marie", "Rose-Marie", "Mary-Jane", "Lou-Ellen", "Eleanor",   "Beatrice",  "Harriet",
    "Imogen",     "Jemima",     "Kirsty",    "Leanne",    "Maisie",    "Nia",       "Orla",
    "Penelope",   "Rhiannon",   "Tamsin",    "Ursula",    "Vera",      "Winifred",  "Yasmin",
    "Zara",
};

static const char *const male_given[] = {
    "John",     "Oliver",  "George",      "Noah",   "Arthur",  "Leo",     "Muhammad", "Oscar",
    "Harry",    "Archie",  "Jack",        "Henry",  "Charlie", "Freddie", "Theodore", "Thomas",
    "Finley",   "Theo",    "Alfie",       "Jacob",  "William", "Isaac",   "Tommy",    "Joshua",
    "James",    "Lucas",   "Alexander",   "Arlo",   "Roman",   "Edward",  "Max",      "Ethan",
    "Mohammed", "David",   "Michael",     "Robert", "Richard", "Peter",   "Paul",     "Mark",
    "Stephen",  "Andrew",  "Christopher", "Daniel", "Matthew", "Anthony", "Kevin",    "Gary",
    "Ian",      "Keith",   "Colin",       "Barry",  "Trevor",  "Derek",   "Kenneth",  "Ronald",
    "Stanley",  "Albert",  "Ernest",      "Walter", "Harold",  "Cyril",   "Wilfred",  "Jonathan",
    "Benjamin", "Samuel",  "Nathan",      "Ryan",   "Liam",    "Connor",  "Kieran",   "Jean-Paul",
    "Jean-Luc", "José",    "André",       "Zoltán", "Seán",    "Ciarán",  "Pádraig",  "Oisín",
    "Rhys",     "Dafydd",  "Gareth",      "Iwan",   "Rajesh",  "Arjun",   "Imran",    "Tariq",
    "Wei",      "Piotr",   "Chukwuemeka", "Kwame",  "Tobias",  "Rupert",  "Hugo",     "Jasper",
    "Felix",    "Rory",    "Callum",      "Declan", "Ewan",    "Fraser",  "Gordon",   "Hamish",
    "Lewis",    "Malcolm", "Neil",        "Ross",
};

static const char *const neutral_given[] = {
    "Alex", "Sam", "Charlie", "Jordan", "Robin", "Ashley", "Jamie", "Morgan", "Riley", "Kit",
};

static const char *const streets[] = {
    "Church",    "Station", "Victoria",    "Main",      "Park",   "High",   "Mill",
    "Queen's",   "King's",  "Manor",       "Chapel",    "School", "Green",  "Albert",
    "Windsor",   "Grange",  "Springfield", "Westfield", "York",   "Bridge", "Castle",
    "Alexandra", "Orchard", "Meadow",      "Beech",     "Oak",    "Ash",    "Elm",
    "Willow",    "Cedar",   "St John's",   "St Mary's", "New",    "North",  "South",
    "Prince's",  "Moor",    "Ridge",       "Hollins",   "Brook",
};

static const char *const suffixes[] = {
    "Road",  "Street",  "Lane",    "Avenue", "Close", "Drive", "Way",  "Crescent",
    "Grove", "Terrace", "Gardens", "Place",  "Court", "Rise",  "View",
};

struct area {
    const char *code;
    const char *town;
};

static const struct area areas[] = {
    {"LS", "Leeds"},         {"BD", "Bradford"},        {"HX", "Halifax"},
    {"HD", "Huddersfield"},  {"WF", "Wakefield"},       {"YO", "York"},
    {"HU", "Hull"},          {"DN", "Doncaster"},       {"S", "Sheffield"},
    {"M", "Manchester"},     {"OL", "Oldham"},          {"BL", "Bolton"},
    {"L", "Liverpool"},      {"WA", "Warrington"},      {"PR", "Preston"},
    {"BB", "Blackburn"},     {"LA", "Lancaster"},       {"CA", "Carlisle"},
    {"NE", "Newcastle"},     {"SR", "Sunderland"},      {"DH", "Durham"},
    {"TS", "Middlesbrough"}, {"DL", "Darlington"},      {"B", "Birmingham"},
    {"CV", "Coventry"},      {"WV", "Wolverhampton"},   {"ST", "Stoke-on-Trent"},
    {"DE", "Derby"},         {"NG", "Nottingham"},      {"LE", "Leicester"},
    {"LN", "Lincoln"},       {"PE", "Peterborough"},    {"NR", "Norwich"},
    {"IP", "Ipswich"},       {"CB", "Cambridge"},       {"CO", "Colchester"},
    {"CM", "Chelmsford"},    {"SS", "Southend-on-Sea"}, {"OX", "Oxford"},
    {"RG", "Reading"},       {"MK", "Milton Keynes"},   {"LU", "Luton"},
    {"SO", "Southampton"},   {"PO", "Portsmouth"},      {"BN", "Brighton"},
    {"CT", "Canterbury"},    {"ME", "Rochester"},       {"TN", "Tunbridge Wells"},
    {"GU", "Guildford"},     {"EX", "Exeter"},          {"PL", "Plymouth"},
    {"TR", "Truro"},         {"TA", "Taunton"},         {"BA", "Bath"},
    {"BS", "Bristol"},       {"GL", "Gloucester"},      {"WR", "Worcester"},
    {"HR", "Hereford"},      {"E", "London"},           {"N", "London"},
    {"SE", "London"},        {"SW", "London"},          {"NW", "London"},
};

/* Letters that may end a UK postcode (C, I, K, M, O and V never do). */
static const char unit_letters[] = "ABDEFGHJLNPQRSTUWXYZ";

/* ---- fixed people (mocks/pds/README.md has the table) ---- */

struct spec_name {
    const char *use;
    const char *family;
    const char *given[POPULATION_MAX_GIVEN];
    const char *prefix;
    const char *start;
    const char *end;
};

struct spec_addr {
    const char *use;
    const char *line[4];
    const char *postcode;
    const char *start;
    const char *end;
};

struct spec {
    const char *id;
    char security;
    const char *gender; /* NULL: minimal record (only id and meta; answers add identifier) */
    const char *birth;
    struct spec_name names[2];
    struct spec_addr addrs[2];
};

static const struct spec fixed[] = {
    {"9000000009",
     'U',
     "female",
     "2010-10-22",
     {{"usual", "Smith", {"Jane"}, NULL, "2010-10-22", NULL}},
     {{"home", {"1 Trevelyan Square", "Boar Lane", "Leeds"}, "LS1 6AE", "2018-04-01", NULL}}},
    {"9000000017",
     'R',
     "female",
     "1988-03-14",
     {{"usual", "O'Hara", {"Alexis"}, "Ms", "1988-03-14", NULL}},
     {{NULL}}},
    {"9000000041",
     'U',
     "female",
     "1926-01-07",
     {{"usual", "Cuff", {"Ruth", "Edna"}, "Mrs", "1948-06-12", NULL}},
     {{"home", {"2 Church Close", "Bonby", "Brigg"}, "DN20 0PQ", "1975-06-28", NULL}}},
    {"9000000033", 'U', NULL, NULL, {{NULL}}, {{NULL}}},
    {"9000000076",
     'U',
     "female",
     "2015-06-30",
     {{"usual", "O'Neill", {"Aoife"}, NULL, "2015-06-30", NULL}},
     {{"home", {"14 Ladybarn Lane", "Fallowfield", "Manchester"}, "M14 6RT", "2015-07-10", NULL}}},
    {"9000000084",
     'U',
     "female",
     "2015-06-30",
     {{"usual", "O'Neill", {"Siobhán"}, NULL, "2015-06-30", NULL}},
     {{"home", {"14 Ladybarn Lane", "Fallowfield", "Manchester"}, "M14 6RT", "2015-07-10", NULL}}},
    {"9000000092",
     'U',
     "female",
     "1979-09-03",
     {{"usual", "Patel", {"Priya"}, "Dr", "1979-09-03", NULL}},
     {{"home", {"7 Laisteridge Lane", "Bradford"}, "BD7 1DP", "2012-02-01", NULL}}},
    {"9000000106",
     'U',
     "male",
     "1964-02-29",
     {{"usual", "Whitfield", {"Jonathan"}, "Mr", "1964-02-29", NULL}},
     {{"home", {"22 Crookes Valley Road", "Sheffield"}, "S10 2TN", "1999-09-09", NULL}}},
    {"9000000114",
     'U',
     "female",
     "1952-11-05",
     {{"usual", "Thompson", {"Eleanor"}, "Mrs", "1952-11-05", NULL}},
     {{"home", {"3 Shields Road", "Byker", "Newcastle upon Tyne"}, "NE6 5QD", "1980-01-15", NULL}}},
    {"9000000122",
     'U',
     "female",
     "1990-07-19",
     {{"usual", "Holloway", {"Grace"}, "Miss", "1990-07-19", NULL}},
     {{"home", {"9 Huntington Road", "York"}, "YO31 8HE", "2016-05-20", NULL}}},
    {"9000000130",
     'U',
     "female",
     "1990-07-19",
     {{"usual", "Fenwick", {"Grace"}, "Mrs", "2019-08-03", NULL},
      {"old", "Holloway", {"Grace"}, "Miss", "1990-07-19", "2019-08-03"}},
     {{"home", {"11 Huntington Road", "York"}, "YO31 8HE", "2019-09-01", NULL}}},
    {"9000000149",
     'U',
     "female",
     "1947-08-23",
     {{"usual", "Ashworth", {"Margaret"}, "Mrs", "1969-05-17", NULL},
      {"old", "Pennington", {"Margaret"}, "Miss", "1947-08-23", "1969-05-17"}},
     {{"home", {"40 Fishergate Hill", "Preston"}, "PR1 8JD", "1972-03-01", NULL},
      {"old",
       {"5 Watling Street Road", "Fulwood", "Preston"},
       "PR2 8EA",
       "1947-08-23",
       "1972-03-01"}}},
    {"9000000157",
     'U',
     "male",
     "1983-01-15",
     {{"usual", "Khan", {"Mohammed"}, "Mr", "1983-01-15", NULL}},
     {{"home", {"61 Stratford Road", "Sparkhill", "Birmingham"}, "B11 1AA", "2005-10-01", NULL}}},
    {"9000000165",
     'U',
     "male",
     "1983-01-15",
     {{"usual", "Khan", {"Mohammed"}, "Mr", "1983-01-15", NULL}},
     {{"home", {"18 Brick Lane", "London"}, "E1 6RF", "2009-04-04", NULL}}},
    {"9000000173",
     'U',
     "female",
     "2001-12-01",
     {{"usual", "D'Arcy-Bowes", {"Zoë", "Renée"}, "Ms", "2001-12-01", NULL}},
     {{"home", {"Flat 2", "19 Gloucester Road", "Bristol"}, "BS7 8AA", "2021-09-15", NULL}}},
    {"9000000181",
     'U',
     "female",
     "1938-04-02",
     {{"usual", "Cholmondeley", {"Mary Ann"}, "Mrs", "1938-04-02", NULL}},
     {{"home", {"6 Minster Yard", "Lincoln"}, "LN2 1PX", "1990-11-30", NULL}}},
    {"9000000203",
     'U',
     "male",
     "1931-05",
     {{"usual", "Higginbottom", {"Albert"}, NULL, NULL, NULL}},
     {{NULL}}},
    {"9000000211",
     'V',
     "other",
     "1999-02-14",
     {{"usual", "Ashdown", {"Robin"}, NULL, "1999-02-14", NULL}},
     {{NULL}}},
};

/* Old numbers of fixed people (superseded) and fixed invalidated numbers. */
static const char *const fixed_superseded[][2] = {{"9000000025", "9000000041"}};
static const char *const fixed_invalidated[] = {"9000000068"};

/* ---- deterministic randomness ---- */

struct gen {
    uint64_t state;
    uint64_t cursor;   /* next nine-digit prefix to try */
    uint64_t step_max; /* numbers advance by 1..step_max, so they never repeat */
    json_t *patients;
};

static uint64_t next(struct gen *g)
{
    /* splitmix64 (Steele, Lea and Flood): tiny, fast and good enough for test data. */
    uint64_t z = (g->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static unsigned below(struct gen *g, unsigned n)
{
    return (unsigned)(next(g) % n);
}

#define PICK(g, list) ((list)[below((g), ARRAY_SIZE(list))])

static void next_number(struct gen *g, char out[11])
{
    int check;

    do {
        g->cursor += 1 + next(g) % g->step_max;
        snprintf(out, 11, "%09llu", (unsigned long long)g->cursor);
        check = nhs_number_check_digit(out);
    } while (check < 0);
    out[9] = (char)('0' + check);
    out[10] = '\0';
}

static void format_id(struct gen *g, char out[9])
{
    snprintf(out, 9, "%08llX", (unsigned long long)(next(g) & 0xFFFFFFFFULL));
}

/* ---- JSON building ---- */

static json_t *meta_json(char security, unsigned version)
{
    char code[2] = {security, '\0'};
    char ver[12];
    const char *display = security == 'R'   ? "restricted"
                          : security == 'V' ? "very restricted"
                                            : "unrestricted";

    snprintf(ver, sizeof(ver), "%u", version);
    return json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "versionId", ver, "security", "system",
                     SYS_CONFID, "code", code, "display", display);
}

static json_t *period_json(const char *start, const char *end)
{
    if (!start && !end)
        return NULL;
    return json_pack("{s:s*, s:s*}", "start", start, "end", end);
}

static json_t *strings_json(const char *const *items, size_t max)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; arr && i < max && items[i]; i++)
        json_array_append_new(arr, json_string(items[i]));
    return arr;
}

static json_t *name_json(struct gen *g, const struct spec_name *n)
{
    char id[9];

    format_id(g, id);
    return json_pack("{s:s, s:s, s:o*, s:o, s:s, s:o*}", "id", id, "use", n->use, "period",
                     period_json(n->start, n->end), "given",
                     strings_json(n->given, POPULATION_MAX_GIVEN), "family", n->family, "prefix",
                     n->prefix ? strings_json(&n->prefix, 1) : NULL);
}

/* A NULL line in the middle of a spec's lines becomes a JSON null: PDS sends those. */
static json_t *lines_json(const char *const *line, size_t max, size_t count)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; arr && i < max && i < count; i++)
        json_array_append_new(arr, line[i] ? json_string(line[i]) : json_null());
    return arr;
}

static size_t line_count(const struct spec_addr *a)
{
    size_t n = ARRAY_SIZE(a->line);

    while (n > 0 && !a->line[n - 1])
        n--;
    return n;
}

static json_t *addr_json(struct gen *g, const struct spec_addr *a)
{
    char id[9];

    format_id(g, id);
    return json_pack("{s:s, s:s, s:o*, s:o, s:s}", "id", id, "use", a->use, "period",
                     period_json(a->start, a->end), "line",
                     lines_json(a->line, ARRAY_SIZE(a->line), line_count(a)), "postalCode",
                     a->postcode);
}

static json_t *list_json(struct gen *g, const struct spec *s, bool names)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; arr && i < 2; i++) {
        if (names && s->names[i].use)
            json_array_append_new(arr, name_json(g, &s->names[i]));
        else if (!names && s->addrs[i].use)
            json_array_append_new(arr, addr_json(g, &s->addrs[i]));
    }
    if (arr && json_array_size(arr) == 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static int add_patient(struct gen *g, const struct spec *s, unsigned version)
{
    json_t *p = json_pack("{s:s, s:s, s:o}", "resourceType", "Patient", "id", s->id, "meta",
                          meta_json(s->security, version));

    if (p && s->gender) {
        json_t *names = list_json(g, s, true);
        json_t *addrs = list_json(g, s, false);
        if (names)
            json_object_set_new(p, "name", names);
        json_object_set_new(p, "gender", json_string(s->gender));
        if (s->birth)
            json_object_set_new(p, "birthDate", json_string(s->birth));
        if (addrs)
            json_object_set_new(p, "address", addrs);
    }
    if (!p || json_array_append_new(g->patients, p))
        return UV_ENOMEM;
    return 0;
}

/* ---- random people ---- */

/* Storage for the strings one random person points at. */
struct scratch {
    char id[11];
    char birth[11];
    char name_start[11];
    char name_end[11];
    char addr_start[2][11];
    char line1[2][64];
    char postcode[2][10];
};

static bool fixed_date(const char *date)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(fixed); i++) {
        if (fixed[i].birth && strncmp(date, fixed[i].birth, strlen(fixed[i].birth)) == 0)
            return true;
    }
    return false;
}

static unsigned days_in(unsigned year, unsigned month)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

static void random_date(struct gen *g, unsigned from_year, unsigned to_year, char out[11])
{
    unsigned year = from_year + below(g, to_year - from_year + 1);
    unsigned month = 1 + below(g, 12);
    unsigned day = 1 + below(g, days_in(year, month));

    snprintf(out, 11, "%04u-%02u-%02u", year % 10000, month % 100, day % 100);
}

static unsigned year_of(const char *date)
{
    return (unsigned)((date[0] - '0') * 1000 + (date[1] - '0') * 100 + (date[2] - '0') * 10 +
                      (date[3] - '0'));
}

/* Random people never share a birth date with a fixed person, so wildcard and fuzzy
 * searches for the fixed people find exactly what mocks/pds/README.md promises. */
static void random_birth(struct gen *g, char out[11])
{
    do
        random_date(g, 1920, 2024, out);
    while (fixed_date(out));
}

static void random_address(struct gen *g, struct spec_addr *a, char line1[64], char pc[10])
{
    const struct area *area = &PICK(g, areas);

    snprintf(line1, 64, "%u %s %s", 1 + below(g, 180), PICK(g, streets), PICK(g, suffixes));
    snprintf(pc, 10, "%s%u %u%c%c", area->code, 1 + below(g, 20), below(g, 10),
             unit_letters[below(g, sizeof(unit_letters) - 1)],
             unit_letters[below(g, sizeof(unit_letters) - 1)]);
    memset(a, 0, sizeof(*a));
    a->use = "home";
    a->line[0] = line1;
    /* About one address in a hundred has an empty line, sent by PDS as null. */
    a->line[below(g, 100) == 0 ? 2 : 1] = area->town;
    a->postcode = pc;
}

static const char *random_gender(struct gen *g)
{
    unsigned r = below(g, 100);

    return r < 49 ? "female" : r < 98 ? "male" : r == 98 ? "other" : "unknown";
}

static const char *given_for(struct gen *g, const char *gender)
{
    if (strcmp(gender, "female") == 0)
        return PICK(g, female_given);
    if (strcmp(gender, "male") == 0)
        return PICK(g, male_given);
    return PICK(g, neutral_given);
}

static const char *prefix_for(struct gen *g, const char *gender, const char *birth)
{
    if (year_of(birth) > 2006)
        return NULL;
    if (below(g, 50) == 0)
        return "Dr";
    if (strcmp(gender, "male") == 0)
        return "Mr";
    if (strcmp(gender, "female") == 0)
        return below(g, 3) == 0 ? "Ms" : below(g, 2) ? "Mrs" : "Miss";
    return below(g, 2) ? "Mx" : NULL;
}

static void random_person(struct gen *g, struct spec *s, struct scratch *t)
{
    memset(s, 0, sizeof(*s));
    next_number(g, t->id);
    s->id = t->id;
    s->security = 'U';
    s->gender = random_gender(g);
    random_birth(g, t->birth);
    s->birth = t->birth;
    s->names[0].use = "usual";
    s->names[0].family = PICK(g, families);
    s->names[0].given[0] = given_for(g, s->gender);
    if (below(g, 6) == 0)
        s->names[0].given[1] = given_for(g, s->gender);
    s->names[0].prefix = prefix_for(g, s->gender, t->birth);
    s->names[0].start = t->birth;
    random_address(g, &s->addrs[0], t->line1[0], t->postcode[0]);
    random_date(g, year_of(t->birth), 2024, t->addr_start[0]);
    s->addrs[0].start = t->addr_start[0];
}

/* A previous family name and a previous address, both ended when the current ones began. */
static void add_history(struct gen *g, struct spec *s, struct scratch *t)
{
    unsigned year = year_of(t->birth);

    random_date(g, year, year < 2024 ? 2024 : year, t->name_end);
    if (strcmp(t->name_end, t->birth) <= 0)
        memcpy(t->name_end, t->birth, sizeof(t->name_end));
    s->names[1] = s->names[0];
    s->names[1].use = "old";
    s->names[1].end = t->name_end;
    do
        s->names[1].family = PICK(g, families);
    while (strcmp(s->names[1].family, s->names[0].family) == 0);
    s->names[0].start = t->name_end;
    random_address(g, &s->addrs[1], t->line1[1], t->postcode[1]);
    s->addrs[1].use = "old";
    s->addrs[1].start = t->birth;
    s->addrs[1].end = t->addr_start[0];
}

/* The twin shares family name, birth date and address, never the given name. */
static int add_twin(struct gen *g, struct spec *s, struct scratch *t, unsigned version)
{
    const char *first = s->names[0].given[0];

    next_number(g, t->id);
    s->gender = random_gender(g);
    s->names[0].given[1] = NULL;
    s->names[0].prefix = prefix_for(g, s->gender, t->birth);
    do
        s->names[0].given[0] = given_for(g, s->gender);
    while (strcmp(s->names[0].given[0], first) == 0);
    return add_patient(g, s, version);
}

enum kind { KIND_PLAIN, KIND_R, KIND_V, KIND_MINIMAL, KIND_TWINS, KIND_HISTORY, KIND_PARTIAL };

/* Per mille: 30 R, 3 V, 20 minimal, 10 twin pairs (2% of people), 50 history, 2 partial. */
static enum kind roll(struct gen *g)
{
    static const struct {
        unsigned upto;
        enum kind kind;
    } table[] = {{30, KIND_R},     {33, KIND_V},        {53, KIND_MINIMAL},
                 {63, KIND_TWINS}, {113, KIND_HISTORY}, {115, KIND_PARTIAL}};
    unsigned r = below(g, 1000);
    size_t i;

    for (i = 0; i < ARRAY_SIZE(table); i++) {
        if (r < table[i].upto)
            return table[i].kind;
    }
    return KIND_PLAIN;
}

static void shape(struct gen *g, struct spec *s, struct scratch *t, enum kind kind)
{
    if (kind == KIND_R || kind == KIND_V) {
        s->security = kind == KIND_R ? 'R' : 'V';
        memset(s->addrs, 0, sizeof(s->addrs));
    } else if (kind == KIND_MINIMAL) {
        s->gender = NULL;
    } else if (kind == KIND_HISTORY) {
        add_history(g, s, t);
    } else if (kind == KIND_PARTIAL) {
        t->birth[below(g, 2) ? 4 : 7] = '\0';
        s->names[0].start = NULL;
    }
}

/* Adds one random person, or two for a twin pair; *added says how many. */
static int add_random(struct gen *g, size_t *added)
{
    struct spec s;
    struct scratch t;
    enum kind kind = roll(g);
    unsigned version = 1 + below(g, 4);
    int err;

    random_person(g, &s, &t);
    shape(g, &s, &t, kind);
    err = add_patient(g, &s, version);
    *added = 1;
    if (!err && kind == KIND_TWINS) {
        err = add_twin(g, &s, &t, version);
        *added = 2;
    }
    return err;
}

static int add_fixed(struct gen *g, json_t *superseded, json_t *invalidated)
{
    size_t i;
    int err;

    for (i = 0; i < ARRAY_SIZE(fixed); i++) {
        err = add_patient(g, &fixed[i], 2);
        if (err)
            return err;
    }
    for (i = 0; i < ARRAY_SIZE(fixed_superseded); i++) {
        if (json_object_set_new(superseded, fixed_superseded[i][0],
                                json_string(fixed_superseded[i][1])))
            return UV_ENOMEM;
    }
    for (i = 0; i < ARRAY_SIZE(fixed_invalidated); i++) {
        if (json_array_append_new(invalidated, json_string(fixed_invalidated[i])))
            return UV_ENOMEM;
    }
    return 0;
}

/* One old number per hundred people, each leading to a random person who has a record. */
static int add_superseded(struct gen *g, size_t first, json_t *map, size_t count)
{
    size_t total = json_array_size(g->patients) - first;
    char old_id[11];

    while (count-- > 0 && total > 0) {
        const json_t *p = json_array_get(g->patients, first + below(g, (unsigned)total));
        next_number(g, old_id);
        if (json_object_set_new(map, old_id, json_incref(json_object_get(p, "id"))))
            return UV_ENOMEM;
    }
    return 0;
}

static int add_invalidated(struct gen *g, json_t *list, size_t count)
{
    char id[11];

    while (count-- > 0) {
        next_number(g, id);
        if (json_array_append_new(list, json_string(id)))
            return UV_ENOMEM;
    }
    return 0;
}

static int fill(struct gen *g, size_t n, json_t *superseded, json_t *invalidated)
{
    size_t done = 0;
    size_t added;
    size_t first;
    int err;

    err = add_fixed(g, superseded, invalidated);
    first = json_array_size(g->patients);
    while (!err && done < n) {
        err = add_random(g, &added);
        done += added;
    }
    if (!err)
        err = add_superseded(g, first, superseded, n / 100);
    if (!err)
        err = add_invalidated(g, invalidated, n / 200);
    return err;
}

int population_generate(struct population **out, size_t n, uint64_t seed)
{
    struct gen g = {.state = seed, .cursor = FIRST_BLOCK};
    json_t *superseded = json_object();
    json_t *invalidated = json_array();
    json_t *root;
    int err;

    *out = NULL;
    g.patients = json_array();
    /* About 1.12 n numbers are drawn (people, old and invalidated numbers, one in eleven
     * skipped for its check digit), each step averaging step_max / 2: the cursor ends near
     * a third of the block, far from its end. */
    g.step_max = (LAST_BLOCK - FIRST_BLOCK) / (2 * n + 16);
    root = json_pack("{s:o, s:o, s:o}", "patients", g.patients, "superseded", superseded,
                     "invalidated", invalidated);
    if (!root)
        return UV_ENOMEM;
    if (n > GEN_MAX_N) {
        json_decref(root);
        return ERR_INVALID_INPUT;
    }
    err = fill(&g, n, superseded, invalidated);
    if (err) {
        json_decref(root);
        return err;
    }
    return population_from_json(out, root);
}
