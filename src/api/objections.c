#include "api_int.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"
#include "pdstrace/objections.h"

/* PUT/GET/DELETE /v1/objections/{case_id} (role objections), DESIGN.md §3. The audit line
 * of a change names the caller and the case, never the number, the recorder or the note. */

#define ROUTE "/v1/objections/{case_id}"

/* One request waiting on the registry. If the caller hangs up meanwhile the change still
 * completes and is audited; only the answer is dropped. */
struct objection_request {
    struct http_exchange *x;
    const char *caller;
    char case_id[OBJECTION_CASE_ID_MAX + 1];
};

/* A 400 naming the field: missing_field or invalid_field. */
struct bad_field {
    const char *code;
    const char *field;
    const char *message;
};

static bool case_id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static bool case_id_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n < 1 || n > OBJECTION_CASE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!case_id_char(s[i]))
            return false;
    return true;
}

/* The case id of the path, or a 400 answered here. */
static const char *path_case_id(struct http_exchange *x, const struct route_params *p)
{
    const char *id = route_param(p, "case_id");
    if (case_id_valid(id))
        return id;
    http_exchange_respond_err(x, ERR_INVALID_INPUT, "case_id",
                              "case_id must be 1-64 characters of A-Z a-z 0-9 . _ : -");
    return NULL;
}

/* No control characters, except that a note may hold tabs and line breaks. */
static bool text_clean(const json_t *v, bool multiline)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool allowed = multiline && (c == '\t' || c == '\n' || c == '\r');
        if ((c < 0x20 || c == 0x7f) && !allowed)
            return false;
    }
    return true;
}

static bool parse_nhs(const json_t *v, struct objection *ob, struct bad_field *bad)
{
    if (v == NULL || json_is_null(v))
        return true;
    if (json_is_string(v) && json_string_length(v) < 32 &&
        nhs_number_normalise(json_string_value(v), ob->nhs_number) == 0)
        return true;
    *bad = (struct bad_field){"invalid_field", "nhs_number",
                              "nhs_number must be 10 digits with a valid check digit"};
    return false;
}

static bool parse_recorded_by(const json_t *v, struct objection *ob, struct bad_field *bad)
{
    if (v == NULL || json_is_null(v)) {
        *bad = (struct bad_field){"missing_field", "recorded_by", "recorded_by is required"};
        return false;
    }
    size_t n = json_string_length(v);
    if (!json_is_string(v) || n == 0 || n > OBJECTION_RECORDED_BY_MAX || !text_clean(v, false)) {
        *bad = (struct bad_field){"invalid_field", "recorded_by",
                                  "recorded_by must be a string of 1-200 bytes without control "
                                  "characters"};
        return false;
    }
    memcpy(ob->recorded_by, json_string_value(v), n + 1);
    return true;
}

static bool parse_note(const json_t *v, struct objection *ob, struct bad_field *bad)
{
    if (v == NULL || json_is_null(v))
        return true;
    size_t n = json_string_length(v);
    if (!json_is_string(v) || n > OBJECTION_NOTE_MAX || !text_clean(v, true)) {
        *bad = (struct bad_field){"invalid_field", "note",
                                  "note must be a string of at most 1000 bytes without control "
                                  "characters other than tabs and line breaks"};
        return false;
    }
    memcpy(ob->note, json_string_value(v), n + 1);
    return true;
}

static bool known_fields(json_t *j, struct bad_field *bad)
{
    const char *key;
    const json_t *v;
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "nhs_number") != 0 && strcmp(key, "recorded_by") != 0 &&
            strcmp(key, "note") != 0) {
            *bad = (struct bad_field){"invalid_field", key, "unknown field"};
            return false;
        }
    }
    return true;
}

/* The objection of a PUT body; on failure the 400 has been answered. */
static int parse_body(struct http_exchange *x, struct objection *ob)
{
    size_t len;
    const char *body = http_exchange_body(x, &len);
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        http_exchange_respond_error(x, 400, "invalid_json", NULL, "the body must be a JSON object");
        return ERR_INVALID_INPUT;
    }
    struct bad_field bad = {NULL, NULL, NULL};
    bool ok = known_fields(j, &bad) && parse_nhs(json_object_get(j, "nhs_number"), ob, &bad) &&
              parse_recorded_by(json_object_get(j, "recorded_by"), ob, &bad) &&
              parse_note(json_object_get(j, "note"), ob, &bad);
    if (!ok)
        http_exchange_respond_error(x, 400, bad.code, bad.field, bad.message);
    json_decref(j);
    return ok ? 0 : ERR_INVALID_INPUT;
}

static json_t *objection_json(const struct objection *ob)
{
    return json_pack("{s:s, s:s?, s:s, s:s?, s:s}", "case_id", ob->case_id, "nhs_number",
                     ob->nhs_number[0] ? ob->nhs_number : NULL, "recorded_by", ob->recorded_by,
                     "note", ob->note[0] ? ob->note : NULL, "recorded_at", ob->recorded_at);
}

static void audit(const struct objection_request *q, const char *event, const char *change)
{
    const struct log_field f[] = {
        {"event", event, 0},
        {"caller", q->caller, 0},
        {"case_id", q->case_id, 0},
        {"change", change, 0},
    };
    log_fields(LOG_LEVEL_INFO, http_exchange_request_id(q->x), "audit", f,
               change != NULL ? ARRAY_SIZE(f) : ARRAY_SIZE(f) - 1);
}

/* Every Redis failure, a timeout included, is the store being unavailable. */
static void fail(struct http_exchange *x, int status)
{
    if (status == ERR_NOT_FOUND)
        http_exchange_respond_err(x, ERR_NOT_FOUND, "case_id",
                                  "no objection is recorded for this case_id");
    else if (err_http_status(status) < 500)
        http_exchange_respond_err(x, status, NULL, NULL);
    else
        http_exchange_respond_err(x, ERR_UNAVAILABLE, NULL,
                                  "the objection store is unavailable: retry later");
}

static struct objection_request *request_new(struct http_exchange *x, const char *case_id)
{
    struct objection_request *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        http_exchange_respond_err(x, UV_ENOMEM, NULL, NULL);
        return NULL;
    }
    q->x = x;
    q->caller = api_caller(x);
    memcpy(q->case_id, case_id, strlen(case_id) + 1);
    return q;
}

static void on_put(int status, bool created, const struct objection *stored, void *arg)
{
    struct objection_request *q = arg;
    if (status == 0) {
        audit(q, "objection_recorded", created ? "created" : "updated");
        api_respond_json(q->x, created ? 201 : 200, objection_json(stored));
    } else {
        fail(q->x, status);
    }
    free(q);
}

static void put_objection(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct api_context *ctx = arg;
    struct objection ob;
    memset(&ob, 0, sizeof(ob));
    const char *case_id = path_case_id(x, p);
    if (case_id == NULL || parse_body(x, &ob) != 0) {
        OPENSSL_cleanse(&ob, sizeof(ob));
        return;
    }
    memcpy(ob.case_id, case_id, strlen(case_id) + 1);
    struct objection_request *q = request_new(x, case_id);
    int err = q != NULL ? objections_put(ctx->objections, &ob, on_put, q) : 0;
    if (err) {
        fail(x, err);
        free(q);
    }
    OPENSSL_cleanse(&ob, sizeof(ob));
}

static void on_get(int status, const struct objection *ob, void *arg)
{
    struct objection_request *q = arg;
    if (status == 0)
        api_respond_json(q->x, 200, objection_json(ob));
    else
        fail(q->x, status);
    free(q);
}

static void get_objection(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct api_context *ctx = arg;
    const char *case_id = path_case_id(x, p);
    struct objection_request *q = case_id != NULL ? request_new(x, case_id) : NULL;
    int err = q != NULL ? objections_get(ctx->objections, case_id, on_get, q) : 0;
    if (err) {
        fail(x, err);
        free(q);
    }
}

static void on_delete(int status, void *arg)
{
    struct objection_request *q = arg;
    if (status == 0) {
        audit(q, "objection_withdrawn", NULL);
        http_exchange_respond(q->x, 204, NULL, "", 0);
    } else {
        fail(q->x, status);
    }
    free(q);
}

static void delete_objection(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct api_context *ctx = arg;
    const char *case_id = path_case_id(x, p);
    struct objection_request *q = case_id != NULL ? request_new(x, case_id) : NULL;
    int err = q != NULL ? objections_delete(ctx->objections, case_id, on_delete, q) : 0;
    if (err) {
        fail(x, err);
        free(q);
    }
}

int api_objections_register(struct router *r, struct api_context *ctx)
{
    int err = router_add(r, "PUT", ROUTE, "objections", put_objection, ctx);
    err = err ? err : router_add(r, "GET", ROUTE, "objections", get_objection, ctx);
    return err ? err : router_add(r, "DELETE", ROUTE, "objections", delete_objection, ctx);
}
