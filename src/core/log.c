#include "pdstrace/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

static enum log_level min_level = LOG_LEVEL_INFO;
static FILE *stream;
static int buffered;
static struct buf pending = {NULL, 0, 0, 128 << 10};
static struct buf line = {NULL, 0, 0, 64 << 10};

void log_set_buffered(int on)
{
    if (!on) {
        log_flush();
        buf_free(&pending);
        buf_free(&line);
    }
    buffered = on;
}

void log_flush(void)
{
    if (buf_len(&pending) == 0)
        return;
    FILE *f = stream != NULL ? stream : stderr;
    fwrite(buf_cstr(&pending), 1, buf_len(&pending), f);
    fflush(f);
    buf_reset(&pending);
}

/* One line, written now or gathered for the next flush. */
static void emit(const char *text)
{
    if (buffered) {
        if (buf_len(&pending) > (64 << 10))
            log_flush();
        if (buf_append_str(&pending, text) == 0 && buf_append(&pending, "\n", 1) == 0)
            return;
        log_flush();
    }
    FILE *f = stream != NULL ? stream : stderr;
    fprintf(f, "%s\n", text);
    fflush(f);
}

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

/* A JSON string: quotes, backslashes and control bytes escaped, UTF-8 passed through. */
static int append_string(struct buf *b, const char *s)
{
    int err = buf_append(b, "\"", 1);
    for (const char *p = s; *p != '\0' && !err; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            err = buf_appendf(b, "\\%c", c);
        else if (c < 0x20)
            err = buf_appendf(b, "\\u%04x", c);
        else
            err = buf_append(b, p, 1);
    }
    return err ? err : buf_append(b, "\"", 1);
}

/* The members every line has: time, level, request_id and msg. */
static int format_head(struct buf *b, enum log_level level, const char *request_id, const char *msg)
{
    char when[40];
    format_time(when, sizeof(when));
    int err = buf_appendf(b, "{\"time\":\"%s\",\"level\":\"%s\"", when, level_names[level]);
    if (!err && request_id != NULL) {
        err = buf_append_str(b, ",\"request_id\":");
        err = err ? err : append_string(b, request_id);
    }
    err = err ? err : buf_append_str(b, ",\"msg\":");
    return err ? err : append_string(b, msg);
}

/* The fixed members by hand and the caller's fields through jansson. */
static int format_line(struct buf *b, enum log_level level, const char *request_id, const char *msg,
                       const json_t *fields)
{
    int err = format_head(b, level, request_id, msg);
    char *rest = fields != NULL && json_object_size(fields) > 0
                     ? json_dumps(fields, JSON_COMPACT | JSON_PRESERVE_ORDER)
                     : NULL;
    if (!err && rest != NULL) {
        rest[0] = ','; /* the fields' own '{' becomes the separator; their '}' ends the line */
        err = buf_append_str(b, rest);
    } else if (!err) {
        err = buf_append(b, "}", 1);
    }
    free(rest);
    return err;
}

void log_event(enum log_level level, const char *request_id, const char *msg, json_t *fields)
{
    if (log_enabled(level)) {
        buf_reset(&line);
        if (format_line(&line, level, request_id, msg, fields) == 0)
            emit(buf_cstr(&line));
    }
    json_decref(fields);
}

void log_fields(enum log_level level, const char *request_id, const char *msg,
                const struct log_field *fields, size_t n)
{
    if (!log_enabled(level))
        return;
    buf_reset(&line);
    int err = format_head(&line, level, request_id, msg);
    for (size_t i = 0; i < n && !err; i++) {
        err = buf_append(&line, ",", 1);
        err = err ? err : append_string(&line, fields[i].key);
        err = err ? err : buf_append(&line, ":", 1);
        if (!err && fields[i].str != NULL)
            err = append_string(&line, fields[i].str);
        else if (!err)
            err = buf_appendf(&line, "%lld", fields[i].num);
    }
    err = err ? err : buf_append(&line, "}", 1);
    if (!err)
        emit(buf_cstr(&line));
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
