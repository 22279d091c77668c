/* router.c - route table matching (see router.h). */
#include "router.h"

#include <string.h>

bool route_method_listed(const char *methods, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = methods; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, method, n) == 0)
            return true;
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return false;
}

/* Copy one path segment [p, next '/' or end) into buf. Returns its length,
 * or -1 when it does not fit. */
static int take_segment(const char *p, char *buf, size_t len)
{
    size_t n = strcspn(p, "/");
    if (n >= len)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return (int)n;
}

static bool placeholder(const char **pat, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(*pat, name, n) != 0)
        return false;
    *pat += n;
    return true;
}

/* Match path against pattern up to pattern_end. Returns ROUTE_OK,
 * ROUTE_NOT_FOUND, or ROUTE_BAD_NAME (a {model} segment that is not a
 * valid name: final, whatever follows). */
static enum route_status match_from(const char *pat, const char *pat_end, const char *path,
                                    struct route *out)
{
    while (pat < pat_end) {
        if (*pat == '[') {
            const char *close = memchr(pat, ']', (size_t)(pat_end - pat));
            char joined[256];
            size_t a = close ? (size_t)(close - pat - 1) : 0;
            size_t b = close ? (size_t)(pat_end - close - 1) : 0;
            if (close == NULL || a + b >= sizeof joined)
                return ROUTE_NOT_FOUND; /* a malformed pattern matches nothing */
            /* The optional part and the rest of the pattern, else the rest
             * alone. */
            memcpy(joined, pat + 1, a);
            memcpy(joined + a, close + 1, b);
            joined[a + b] = '\0';
            struct route saved = *out;
            enum route_status st = match_from(joined, joined + a + b, path, out);
            if (st != ROUTE_NOT_FOUND)
                return st;
            *out = saved;
            return match_from(close + 1, pat_end, path, out);
        }
        if (*pat == '{') {
            if (placeholder(&pat, "{model}")) {
                char name[256];
                int n = take_segment(path, name, sizeof name);
                if (n == 0)
                    return ROUTE_NOT_FOUND;
                if (n < 0 || !model_name_valid(name))
                    return ROUTE_BAD_NAME;
                strcpy(out->model, name);
                path += n;
            } else if (placeholder(&pat, "{region}")) {
                int n = take_segment(path, out->region, sizeof out->region);
                if (n == 0)
                    return ROUTE_NOT_FOUND;
                if (n < 0) {
                    out->region[0] = '\0';
                    return ROUTE_BAD_NAME;
                }
                path += n;
            } else if (placeholder(&pat, "{version}")) {
                int n = take_segment(path, out->version, sizeof out->version);
                if (n <= 0) {
                    out->version[0] = '\0';
                    return ROUTE_NOT_FOUND;
                }
                path += n;
            } else {
                return ROUTE_NOT_FOUND;
            }
            continue;
        }
        size_t lit = strcspn(pat, "[{");
        if (lit > (size_t)(pat_end - pat))
            lit = (size_t)(pat_end - pat);
        if (strncmp(pat, path, lit) != 0)
            return ROUTE_NOT_FOUND;
        pat += lit;
        path += lit;
    }
    return *path == '\0' ? ROUTE_OK : ROUTE_NOT_FOUND;
}

enum route_status route_match(const struct route_def *table, size_t n, const char *method,
                              const char *path, struct route *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const char *pat = table[i].pattern;
        enum route_status st = match_from(pat, pat + strlen(pat), path, out);
        if (st == ROUTE_BAD_NAME) {
            memset(out, 0, sizeof *out);
            return st;
        }
        if (st == ROUTE_OK) {
            out->def = &table[i];
            return route_method_listed(table[i].methods, method) ? ROUTE_OK : ROUTE_BAD_METHOD;
        }
        memset(out, 0, sizeof *out);
    }
    return ROUTE_NOT_FOUND;
}

const char *route_name(const struct route *r)
{
    return r->def ? r->def->name : "none";
}

bool route_takes_body(const struct route *r)
{
    return r->def != NULL && r->def->accepts != NULL;
}

enum access_level route_access(const struct route *r)
{
    return r->def ? r->def->access : ACCESS_KEY;
}
