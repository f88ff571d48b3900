#ifndef PDS_API_API_INT_H
#define PDS_API_API_INT_H

/* Shared only by the route groups of src/api/ (common.c holds these helpers); what the app
 * needs is in pdstrace/api.h. */

#include <jansson.h>

#include "pdstrace/api.h"
#include "pdstrace/http_server.h"
#include "pdstrace/router.h"

/* The name of the key that authorised x, or "-" for open routes. */
const char *api_caller(const struct http_exchange *x);

/* Sends body (takes ownership) as application/json. */
void api_respond_json(struct http_exchange *x, int status, json_t *body);

#endif
