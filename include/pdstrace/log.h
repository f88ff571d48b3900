#ifndef PDS_CORE_LOG_H
#define PDS_CORE_LOG_H

#include <stdio.h>
#include <jansson.h>

/* Logs are JSON lines on stderr: {"time","level","request_id","msg",...fields}. They never
 * hold names, addresses or dates of birth, and NHS numbers only through log_mask_nhs(). */
enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

/* Parses "debug", "info", "warn" or "error". Returns 0 or ERR_INVALID_INPUT. */
int log_level_parse(const char *s, enum log_level *out);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

/* Buffered mode: lines collect in memory and go out in one write when log_flush() is
 * called (the service calls it once per loop iteration) or when 64 KiB have gathered.
 * Off by default: every line is written at once. */
void log_set_buffered(int on);
void log_flush(void);

/* Redirects the log (tests); NULL restores stderr. The stream is borrowed. */
void log_set_stream(FILE *f);

/* Writes one line. request_id may be NULL. Takes ownership of fields (a JSON object or
 * NULL), whose members are added to the line. */
void log_event(enum log_level level, const char *request_id, const char *msg, json_t *fields);

/* A field of a hot-path line: a string (str non-NULL) or a number. */
struct log_field {
    const char *key;
    const char *str;
    long long num;
};

/* As log_event, for lines written per request (the audit line): the fields are borrowed
 * and formatted without building a JSON tree. */
void log_fields(enum log_level level, const char *request_id, const char *msg,
                const struct log_field *fields, size_t n);

/* Writes one line whose msg is formatted. Never format personal data into it. */
void log_msgf(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_MASKED_NHS_SIZE 13

/* Masks an NHS number for logs: "9434765870" (or "943 476 5870") becomes "*** *** 5870".
 * Anything that is not ten digits becomes "***". out is always NUL-terminated. */
void log_mask_nhs(const char *nhs, char out[LOG_MASKED_NHS_SIZE]);

#endif
