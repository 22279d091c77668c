/* access.h - who may call inferd: API keys from a key file (re-read on
 * SIGHUP, compared in constant time, never logged), the admin token, and
 * CORS for browser clients. Knows no endpoint and no HTTP library: the
 * route table says which level each endpoint needs (enum access_level), the
 * front end passes the request's method and headers in, and gets a verdict
 * and the headers to add. */
#ifndef INFERD_ACCESS_H
#define INFERD_ACCESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define ACCESS_KEY_MAX 256    /* longest key, in bytes */
#define ACCESS_MAX_KEYS 1024  /* most keys in one file */
#define ACCESS_MAX_ORIGINS 32 /* most origins in --cors-allow-origin */
#define ACCESS_ORIGIN_MAX 256 /* longest origin */

/* What an endpoint asks of its caller: the route table's access column
 * (api_routes.h). */
enum access_level {
    ACCESS_OPEN,    /* anyone (the health endpoints) */
    ACCESS_METRICS, /* anyone, or a key with --metrics-need-key (/metrics) */
    ACCESS_KEY,     /* an API key when --api-key-file is set (everything else) */
    ACCESS_ADMIN,   /* the admin token; without a token file, loopback clients only */
};

/* The keys of one key file. Each key sits in a fixed-size, zero-padded
 * slot so that comparing takes the same time whatever the key. */
struct access_keys {
    unsigned char (*slots)[ACCESS_KEY_MAX];
    size_t *lens;
    int n;
};

struct access {
    char key_file[1024]; /* empty: no keys, every endpoint open */
    bool metrics_need_key;
    struct access_keys admin_token; /* --admin-token-file's token (n == 0: none); read once */
    /* The key set, swapped whole on reload. HTTP threads read it. */
    pthread_rwlock_t lock;
    struct access_keys keys;
    /* CORS: off when n_origins == 0 and !any_origin. */
    bool any_origin;
    char origins[ACCESS_MAX_ORIGINS][ACCESS_ORIGIN_MAX];
    int n_origins;
};

/* What one request carries that matters here (NULL: header absent). */
struct access_request {
    const char *method;
    const char *authorization;    /* Authorization */
    const char *api_key;          /* X-API-Key */
    const char *origin;           /* Origin */
    const char *preflight_method; /* Access-Control-Request-Method */
    bool loopback;                /* the client is on this machine (read for ACCESS_ADMIN only) */
};

enum access_verdict {
    ACCESS_GO_ON = 0,  /* serve the request */
    ACCESS_PREFLIGHT,  /* answer 204 with the CORS preflight headers */
    ACCESS_NO_KEY,     /* 401: no key sent */
    ACCESS_BAD_KEY,    /* 401: a key that is not in the file */
    ACCESS_BAD_ORIGIN, /* 403: a preflight from an origin not allowed */
    ACCESS_NO_TOKEN,   /* 403: an admin endpoint without the admin token */
    ACCESS_NOT_LOCAL,  /* 403: an admin endpoint, no token file, a client not on loopback */
};

/* The outcome for one request; kept with the request until its reply. */
struct access_result {
    enum access_verdict verdict;
    /* Access-Control-Allow-Origin's value for the reply, or NULL (no CORS
     * headers): "*" or the request's allowed origin (points into struct
     * access, which outlives every request). */
    const char *allow_origin;
};

/* Called once per header a reply needs. */
typedef void (*access_add_header_fn)(void *ctx, const char *name, const char *value);

/* Set up from the flags: key_file may be NULL or empty (no keys), origins
 * is NULL, empty, "*" or a comma-separated list of origins such as
 * "https://app.example.com,http://localhost:3000". Reads the key file.
 * Returns 0, or -1 with err set (a missing or unreadable file, a file with
 * no key, a bad line, a bad origin). A key file readable by group or others
 * only warns, through the logger. */
int access_init(struct access *a, const char *key_file, bool metrics_need_key, const char *origins,
                char *err, size_t err_len);
void access_destroy(struct access *a);

/* Read the admin token from path (NULL or empty: none, and admin endpoints
 * are for loopback clients only): a file of exactly one token, in the key
 * file format. Returns 0, or -1 with err set (no token is then in force).
 * A file readable by group or others only warns, through the logger. */
int access_read_admin_token(struct access *a, const char *path, char *err, size_t err_len);

/* Re-read the key file (SIGHUP). On failure the old keys stay in force and
 * -1 is returned with err set; 0 on success, also when there is no file. */
int access_reload(struct access *a, char *err, size_t err_len);

/* Whether keys are required at all (a key file was given). */
bool access_keys_on(const struct access *a);

/* Decide what to do with a request to an endpoint of the given level
 * (ACCESS_KEY for a path that matches no endpoint), before its body is
 * read. Never fails. */
struct access_result access_check(struct access *a, enum access_level level,
                                  const struct access_request *req);

/* The token of an Authorization value "Bearer <token>" (the scheme in any
 * case, spaces around the token dropped), for API keys and the admin token
 * alike. Returns a pointer into authorization and sets *len; NULL when the
 * value is NULL, another scheme, or has no token. */
const char *access_bearer(const char *authorization, size_t *len);

/* The headers a reply needs for r: CORS headers, the preflight's, and
 * WWW-Authenticate for a 401. */
void access_reply_headers(const struct access *a, const struct access_result *r,
                          access_add_header_fn add, void *ctx);

/* The message of a verdict that answers at once ("" for ACCESS_GO_ON and
 * ACCESS_PREFLIGHT). It never contains a key. Each transport maps the
 * verdict to its own code (HTTP: http.c). */
const char *access_message(enum access_verdict v);

/* Parse key file text (len bytes, need not be NUL-terminated) into keys.
 * Lines: one key each; CR before LF is dropped, blank lines and lines
 * starting with '#' are skipped, spaces around a key are trimmed. A key
 * may hold printable ASCII other than space. Returns the number of keys,
 * or -1 with err set (naming the line, never the key). */
int access_parse_keys(const char *text, size_t len, struct access_keys *out, char *err,
                      size_t err_len);
void access_keys_free(struct access_keys *k);

/* Whether candidate (clen bytes) is one of k's keys. Looks at every slot,
 * byte for byte, whatever matches: the time depends on the number of keys
 * only. */
bool access_keys_match(const struct access_keys *k, const char *candidate, size_t clen);

/* Read path into keys: parse it and check its mode. *loose is set when
 * group or others may read it. Returns the number of keys or -1 with err. */
int access_read_key_file(const char *path, struct access_keys *out, bool *loose, char *err,
                         size_t err_len);

#endif
