#include "pdstrace/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"

static enum log_level min_level = LOG_LEVEL_INFO;
static FILE *stream;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return ERR_INVALID_INPUT;
}

void log_set_level(enum log_level level)
{
    min_level = level;
}

int log_enabled(enum log_level level)
{
    return level >= min_level;
}

void log_set_stream(FILE *f)
{
    stream = f;
}

static void format_time(char *out, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void log_event(enum log_level level, const char *request_id, const char *msg, json_t *fields)
{
    if (!log_enabled(level)) {
        json_decref(fields);
        return;
    }
    char when[40];
    format_time(when, sizeof(when));
    json_t *line = json_pack("{s:s, s:s}", "time", when, "level", level_names[level]);
    if (line == NULL) {
        json_decref(fields);
        return;
    }
    if (request_id != NULL)
        json_object_set_new(line, "request_id", json_string(request_id));
    json_object_set_new(line, "msg", json_string(msg));
    if (fields != NULL) {
        json_object_update(line, fields);
        json_decref(fields);
    }
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (text == NULL)
        return;
    FILE *f = stream != NULL ? stream : stderr;
    fprintf(f, "%s\n", text);
    fflush(f);
    free(text);
}

void log_msgf(enum log_level level, const char *request_id, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_event(level, request_id, msg, NULL);
}

void log_mask_nhs(const char *nhs, char out[LOG_MASKED_NHS_SIZE])
{
    char digits[10];
    size_t n = 0;
    for (const char *p = nhs; p != NULL && *p != '\0'; p++) {
        if (*p == ' ' || *p == '-')
            continue;
        if (!isdigit((unsigned char)*p) || n == sizeof(digits)) {
            n = 0;
            break;
        }
        digits[n++] = *p;
    }
    if (n != sizeof(digits)) {
        memcpy(out, "***", 4);
        return;
    }
    memcpy(out, "*** *** ", 8);
    memcpy(out + 8, digits + 6, 4);
    out[12] = '\0';
}
