/* router.h - maps a method and path to a row of a route table (the row
 * names the endpoint's handler, its methods, the body it takes and who may
 * call it), or to
 * the error the request deserves: 404, 405 with Allow, 400 for a bad model
 * name. The router knows no endpoint: the table is the caller's (api.h). */
#ifndef INFERD_ROUTER_H
#define INFERD_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "access.h"
#include "bounds.h"

struct http_exchange;

/* What a handler did with its exchange: set the reply, or handed the
 * request to a model's queue (a worker sets the reply later). */
enum route_outcome { ROUTE_REPLIED, ROUTE_SUSPENDED };

typedef enum route_outcome (*route_handler)(struct http_exchange *ex);

/* One endpoint. pattern is matched segment by segment: literal text,
 * "{model}" (a model name, checked with model_name_valid), "{version}" (one
 * segment of at most 31 bytes), "{region}" (one segment of at most 63 bytes:
 * a longer one is a bad name), and at most one optional part in brackets,
 * e.g. "/v2/models/{model}[/versions/{version}]/infer". */
struct route_def {
    const char *name;    /* e.g. "model_infer", for logs and tests */
    const char *methods; /* e.g. "GET, HEAD": what it takes, and the 405's Allow */
    const char *pattern;
    /* The media types its body may have, comma-separated; the first one is
     * assumed when the request has no Content-Type. NULL: no body. */
    const char *accepts;
    enum access_level access; /* who may call it */
    route_handler handler;
};

enum route_status {
    ROUTE_OK = 0,
    ROUTE_NOT_FOUND = 404,
    ROUTE_BAD_METHOD = 405,
    ROUTE_BAD_NAME = 400,
};

struct route {
    const struct route_def *def; /* set for ROUTE_OK and ROUTE_BAD_METHOD */
    char model[MODEL_NAME_MAX];  /* {model}, or empty */
    char version[32];            /* {version}, or empty */
    char region[64];             /* {region} (SHM_NAME_MAX), or empty; its handler checks it */
};

/* Match method and path (without the query string) against the n rows of
 * table, in order: the first row whose pattern matches the path decides.
 * Returns a route_status; out is reset first, and out->def is set for
 * ROUTE_OK and ROUTE_BAD_METHOD. */
enum route_status route_match(const struct route_def *table, size_t n, const char *method,
                              const char *path, struct route *out);

/* Whether method is one of the comma-separated names in methods. */
bool route_method_listed(const char *methods, const char *method);

/* The matched endpoint's name, or "none". */
const char *route_name(const struct route *r);

/* Whether the matched endpoint reads a request body. */
bool route_takes_body(const struct route *r);

/* Who may call the matched endpoint; ACCESS_KEY when none matched (an
 * unknown path needs a key like any other). */
enum access_level route_access(const struct route *r);

#endif
