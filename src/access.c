/* access.c - API keys, the admin token and CORS (see access.h).
 *
 * Keys are held in fixed-size zero-padded slots and every check walks all
 * slots byte for byte, so its time says nothing about how much of a key
 * matched. No function here prints a key: messages name line numbers. */
#include "access.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define KEY_FILE_MAX (1024 * 1024) /* a larger key file is a mistake */

void access_keys_free(struct access_keys *k)
{
    if (k->slots)
        memset(k->slots, 0, (size_t)k->n * ACCESS_KEY_MAX); /* no key left in freed memory */
    free(k->slots);
    free(k->lens);
    k->slots = NULL;
    k->lens = NULL;
    k->n = 0;
}

static bool key_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

int access_parse_keys(const char *text, size_t len, struct access_keys *out, char *err,
                      size_t err_len)
{
    memset(out, 0, sizeof *out);
    struct access_keys k = {0};
    /* room for one key per line, at most ACCESS_MAX_KEYS */
    size_t lines = 1;
    for (const char *p = text; (p = memchr(p, '\n', len - (size_t)(p - text))) != NULL; p++)
        lines++;
    size_t room = lines <= ACCESS_MAX_KEYS ? lines : ACCESS_MAX_KEYS;
    k.slots = calloc(room, ACCESS_KEY_MAX);
    k.lens = calloc(room, sizeof *k.lens);
    if (k.slots == NULL || k.lens == NULL) {
        snprintf(err, err_len, "out of memory reading the keys");
        goto err;
    }
    int line = 0;
    for (size_t pos = 0; pos < len;) {
        line++;
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > 0 && start[n - 1] == '\r')
            n--;
        while (n > 0 && (*start == ' ' || *start == '\t')) {
            start++;
            n--;
        }
        while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t'))
            n--;
        if (n == 0 || start[0] == '#')
            continue;
        if (n > ACCESS_KEY_MAX) {
            snprintf(err, err_len, "line %d: key longer than %d bytes", line, ACCESS_KEY_MAX);
            goto err;
        }
        for (size_t i = 0; i < n; i++) {
            if (!key_char_ok((unsigned char)start[i])) {
                snprintf(err, err_len,
                         "line %d: a key may hold printable ASCII only, without spaces "
                         "(byte %zu is 0x%02x)",
                         line, i + 1, (unsigned char)start[i]);
                goto err;
            }
        }
        if ((size_t)k.n == room) {
            snprintf(err, err_len, "more than %d keys", ACCESS_MAX_KEYS);
            goto err;
        }
        memcpy(k.slots[k.n], start, n);
        k.lens[k.n] = n;
        k.n++;
    }
    if (k.n == 0) {
        snprintf(err, err_len, "no key in the file (one key per line)");
        goto err;
    }
    *out = k;
    return k.n;
err:
    k.n = (int)room;
    if (k.slots == NULL)
        k.n = 0;
    access_keys_free(&k);
    return -1;
}

bool access_keys_match(const struct access_keys *k, const char *candidate, size_t clen)
{
    /* Pad the candidate like the slots; one too long can match nothing,
     * but is still compared in full time. */
    unsigned char padded[ACCESS_KEY_MAX];
    size_t n = clen <= ACCESS_KEY_MAX ? clen : 0;
    memset(padded, 0, sizeof padded);
    memcpy(padded, candidate, n);
    unsigned found = 0;
    for (int i = 0; i < k->n; i++) {
        uint64_t diff = (uint64_t)(k->lens[i] ^ clen);
        for (size_t b = 0; b < ACCESS_KEY_MAX; b++)
            diff |= (uint64_t)(padded[b] ^ k->slots[i][b]);
        /* 1 when diff == 0, else 0, without a branch */
        found |= (unsigned)(((diff | (0 - diff)) >> 63) ^ 1u);
    }
    memset(padded, 0, sizeof padded);
    return found != 0;
}

int access_read_key_file(const char *path, struct access_keys *out, bool *loose, char *err,
                         size_t err_len)
{
    char why[256];
    char *text = NULL;
    *loose = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "API key file %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "API key file %s: not a regular file", path);
        goto err;
    }
    if (st.st_size > KEY_FILE_MAX) {
        snprintf(err, err_len, "API key file %s: larger than %d bytes", path, KEY_FILE_MAX);
        goto err;
    }
    *loose = (st.st_mode & 077) != 0;
    text = malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        snprintf(err, err_len, "API key file %s: out of memory", path);
        goto err;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, err_len, "API key file %s: cannot read: %s", path, strerror(errno));
            goto err;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    int n = access_parse_keys(text, got, out, why, sizeof why);
    if (n < 0) {
        snprintf(err, err_len, "API key file %s: %s", path, why);
        goto err;
    }
    memset(text, 0, got);
    free(text);
    close(fd);
    return n;
err:
    if (text)
        memset(text, 0, (size_t)st.st_size);
    free(text);
    close(fd);
    return -1;
}

/* Parse --cors-allow-origin. Returns 0 or -1 with err set. */
static int parse_origins(struct access *a, const char *spec, char *err, size_t err_len)
{
    if (spec == NULL || spec[0] == '\0')
        return 0;
    if (strcmp(spec, "*") == 0) {
        a->any_origin = true;
        return 0;
    }
    for (const char *p = spec; *p;) {
        size_t n = strcspn(p, ",");
        const char *s = p;
        p += n;
        if (*p == ',')
            p++;
        while (n > 0 && *s == ' ') {
            s++;
            n--;
        }
        while (n > 0 && s[n - 1] == ' ')
            n--;
        if (n == 0)
            continue;
        if (n == 1 && *s == '*') {
            snprintf(err, err_len, "--cors-allow-origin: '*' must stand alone");
            return -1;
        }
        size_t skip = (n > 7 && strncmp(s, "http://", 7) == 0)    ? 7
                      : (n > 8 && strncmp(s, "https://", 8) == 0) ? 8
                                                                  : 0;
        bool ok = skip > 0 && n < ACCESS_ORIGIN_MAX && memchr(s + skip, '/', n - skip) == NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = key_char_ok((unsigned char)s[i]);
        if (!ok) {
            snprintf(err, err_len,
                     "--cors-allow-origin: '%.*s' is not an origin like https://host[:port]",
                     (int)(n < 200 ? n : 200), s);
            return -1;
        }
        if (a->n_origins == ACCESS_MAX_ORIGINS) {
            snprintf(err, err_len, "--cors-allow-origin: at most %d origins", ACCESS_MAX_ORIGINS);
            return -1;
        }
        memcpy(a->origins[a->n_origins], s, n);
        a->origins[a->n_origins][n] = '\0';
        a->n_origins++;
    }
    return 0;
}

static int load_keys(struct access *a, char *err, size_t err_len)
{
    struct access_keys fresh;
    bool loose = false;
    int n = access_read_key_file(a->key_file, &fresh, &loose, err, err_len);
    if (n < 0)
        return -1;
    if (loose)
        log_msg(LOG_WARN, "API key file %s can be read by group or others: chmod 600 it (or 400)",
                a->key_file);
    pthread_rwlock_wrlock(&a->lock);
    struct access_keys old = a->keys;
    a->keys = fresh;
    pthread_rwlock_unlock(&a->lock);
    access_keys_free(&old);
    log_msg(LOG_INFO, "API keys: %d key(s) from %s", n, a->key_file);
    return 0;
}

int access_init(struct access *a, const char *key_file, bool metrics_need_key, const char *origins,
                char *err, size_t err_len)
{
    memset(a, 0, sizeof *a);
    if (pthread_rwlock_init(&a->lock, NULL) != 0) {
        snprintf(err, err_len, "cannot create the API key lock");
        return -1;
    }
    a->metrics_need_key = metrics_need_key;
    if (parse_origins(a, origins, err, err_len) != 0)
        goto err;
    if (key_file && key_file[0]) {
        if (strlen(key_file) >= sizeof a->key_file) {
            snprintf(err, err_len, "--api-key-file: path too long");
            goto err;
        }
        strcpy(a->key_file, key_file);
        if (load_keys(a, err, err_len) != 0)
            goto err;
    }
    return 0;
err:
    pthread_rwlock_destroy(&a->lock);
    return -1;
}

void access_destroy(struct access *a)
{
    access_keys_free(&a->keys);
    access_keys_free(&a->admin_token);
    pthread_rwlock_destroy(&a->lock);
}

int access_reload(struct access *a, char *err, size_t err_len)
{
    if (a->key_file[0] == '\0')
        return 0;
    return load_keys(a, err, err_len);
}

bool access_keys_on(const struct access *a)
{
    return a->key_file[0] != '\0';
}

int access_read_admin_token(struct access *a, const char *path, char *err, size_t err_len)
{
    if (path == NULL || path[0] == '\0')
        return 0;
    bool loose = false;
    char why[256];
    int n = access_read_key_file(path, &a->admin_token, &loose, why, sizeof why);
    if (n < 0) {
        snprintf(err, err_len, "--admin-token-file: %s", why);
        return -1;
    }
    if (n != 1) {
        access_keys_free(&a->admin_token);
        snprintf(err, err_len, "--admin-token-file %s: expected exactly one token, found %d", path,
                 n);
        return -1;
    }
    if (loose)
        log_msg(LOG_WARN, "--admin-token-file %s is readable by group or others", path);
    return 0;
}

static const char *allowed_origin(const struct access *a, const char *origin)
{
    if (origin == NULL)
        return NULL;
    if (a->any_origin)
        return "*";
    for (int i = 0; i < a->n_origins; i++)
        if (strcmp(a->origins[i], origin) == 0)
            return a->origins[i];
    return NULL;
}

const char *access_bearer(const char *authorization, size_t *len)
{
    const char *token = authorization;
    if (token == NULL || strncasecmp(token, "Bearer ", 7) != 0)
        return NULL;
    token += 7;
    while (*token == ' ')
        token++;
    size_t n = strlen(token);
    while (n > 0 && token[n - 1] == ' ')
        n--;
    if (n == 0)
        return NULL;
    *len = n;
    return token;
}

/* The key the request presents: "Authorization: Bearer <key>" or X-API-Key.
 * Sets *len; NULL when neither is there. */
static const char *presented_key(const struct access_request *req, size_t *len)
{
    const char *key = access_bearer(req->authorization, len);
    if (key != NULL)
        return key;
    if (req->api_key && req->api_key[0]) {
        *len = strlen(req->api_key);
        return req->api_key;
    }
    return NULL;
}

/* The admin endpoints' verdict: the admin token, or without a token file
 * a loopback client. The token is compared in constant time. */
static enum access_verdict check_admin(const struct access *a, const struct access_request *req)
{
    if (a->admin_token.n == 0)
        return req->loopback ? ACCESS_GO_ON : ACCESS_NOT_LOCAL;
    size_t n = 0;
    const char *token = access_bearer(req->authorization, &n);
    if (token != NULL && access_keys_match(&a->admin_token, token, n))
        return ACCESS_GO_ON;
    return ACCESS_NO_TOKEN;
}

/* The API key verdict: a listed key, when keys are on. */
static enum access_verdict check_key(struct access *a, const struct access_request *req)
{
    size_t n = 0;
    const char *key = presented_key(req, &n);
    if (key == NULL)
        return ACCESS_NO_KEY;
    pthread_rwlock_rdlock(&a->lock);
    bool ok = access_keys_match(&a->keys, key, n);
    pthread_rwlock_unlock(&a->lock);
    return ok ? ACCESS_GO_ON : ACCESS_BAD_KEY;
}

struct access_result access_check(struct access *a, enum access_level level,
                                  const struct access_request *req)
{
    struct access_result r = {ACCESS_GO_ON, NULL};
    bool cors = a->any_origin || a->n_origins > 0;
    if (cors)
        r.allow_origin = allowed_origin(a, req->origin);
    /* A preflight carries no key (browsers never send one): answer it
     * here, before the key check. */
    if (cors && req->origin && req->preflight_method && strcmp(req->method, "OPTIONS") == 0) {
        r.verdict = r.allow_origin ? ACCESS_PREFLIGHT : ACCESS_BAD_ORIGIN;
        return r;
    }
    switch (level) {
    case ACCESS_OPEN: break;
    case ACCESS_METRICS:
        if (a->metrics_need_key && access_keys_on(a))
            r.verdict = check_key(a, req);
        break;
    case ACCESS_KEY:
        if (access_keys_on(a))
            r.verdict = check_key(a, req);
        break;
    case ACCESS_ADMIN: r.verdict = check_admin(a, req); break;
    }
    return r;
}

const char *access_message(enum access_verdict v)
{
    switch (v) {
    case ACCESS_GO_ON:
    case ACCESS_PREFLIGHT: return "";
    case ACCESS_NO_KEY:
        return "an API key is needed: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'";
    case ACCESS_BAD_KEY: return "the API key is not valid";
    case ACCESS_BAD_ORIGIN: return "this origin may not call the API (CORS)";
    case ACCESS_NO_TOKEN:
        return "this control endpoint (model load/unload, shared memory register/unregister) "
               "needs the admin token: send 'Authorization: Bearer <token>' (the token in "
               "--admin-token-file)";
    case ACCESS_NOT_LOCAL:
        return "without --admin-token-file, only clients on loopback may load and unload "
               "models or register and unregister shared memory";
    }
    return "internal error";
}

void access_reply_headers(const struct access *a, const struct access_result *r,
                          access_add_header_fn add, void *ctx)
{
    if (r->verdict == ACCESS_NO_KEY)
        add(ctx, "WWW-Authenticate", "Bearer realm=\"inferd\"");
    else if (r->verdict == ACCESS_BAD_KEY)
        add(ctx, "WWW-Authenticate", "Bearer realm=\"inferd\", error=\"invalid_token\"");
    if (!(a->any_origin || a->n_origins > 0))
        return;
    /* The answer depends on Origin unless every origin gets "*". */
    if (!a->any_origin)
        add(ctx, "Vary", "Origin");
    if (r->allow_origin == NULL)
        return;
    add(ctx, "Access-Control-Allow-Origin", r->allow_origin);
    if (r->verdict == ACCESS_PREFLIGHT) {
        add(ctx, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
        add(ctx, "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Inference-Header-Content-Length, X-API-Key, "
            "X-Request-ID");
        add(ctx, "Access-Control-Max-Age", "600");
    } else {
        add(ctx, "Access-Control-Expose-Headers",
            "X-Request-ID, Inference-Header-Content-Length, Retry-After, WWW-Authenticate");
    }
}
