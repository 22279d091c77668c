/* router.c - the URL table of inferd's HTTP API (see router.h). */
#include "router.h"

#include <stdio.h>
#include <string.h>

struct fixed_route {
    const char *path;
    enum endpoint endpoint;
    const char *allow;
};

static const struct fixed_route fixed_routes[] = {
    {"/predict", EP_PREDICT, "POST"},
    {"/v2/health/live", EP_HEALTH_LIVE, "GET, HEAD"},
    {"/v2/health/ready", EP_HEALTH_READY, "GET, HEAD"},
    {"/metrics", EP_METRICS, "GET, HEAD"},
    {"/v2", EP_SERVER_META, "GET, HEAD"},
    {"/v2/repository/index", EP_REPOSITORY_INDEX, "GET, HEAD, POST"},
};

static bool method_allowed(const char *allow, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = allow; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, method, n) == 0)
            return true;
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return false;
}

static enum route_status finish(const char *method, struct route *out)
{
    out->has_body = out->endpoint == EP_PREDICT || out->endpoint == EP_MODEL_INFER;
    return method_allowed(out->allow, method) ? ROUTE_OK : ROUTE_BAD_METHOD;
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

static enum route_status match_model_path(const char *method, const char *rest, struct route *out)
{
    char name[256];
    int n = take_segment(rest, name, sizeof name);
    if (n <= 0)
        return n == 0 ? ROUTE_NOT_FOUND : ROUTE_BAD_NAME;
    if (!model_name_valid(name))
        return ROUTE_BAD_NAME;
    strcpy(out->model, name);
    rest += n;
    if (strncmp(rest, "/versions/", 10) == 0) {
        int v = take_segment(rest + 10, out->version, sizeof out->version);
        if (v <= 0)
            return ROUTE_NOT_FOUND;
        rest += 10 + v;
    }
    if (*rest == '\0') {
        out->endpoint = EP_MODEL_META;
        out->allow = "GET, HEAD";
    } else if (strcmp(rest, "/ready") == 0) {
        out->endpoint = EP_MODEL_READY;
        out->allow = "GET, HEAD";
    } else if (strcmp(rest, "/infer") == 0) {
        out->endpoint = EP_MODEL_INFER;
        out->allow = "POST";
    } else {
        return ROUTE_NOT_FOUND;
    }
    return finish(method, out);
}

enum route_status route_match(const char *method, const char *path, struct route *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof fixed_routes / sizeof fixed_routes[0]; i++) {
        if (strcmp(path, fixed_routes[i].path) == 0) {
            out->endpoint = fixed_routes[i].endpoint;
            out->allow = fixed_routes[i].allow;
            return finish(method, out);
        }
    }
    if (strncmp(path, "/v2/models/", 11) == 0)
        return match_model_path(method, path + 11, out);
    return ROUTE_NOT_FOUND;
}

const char *endpoint_name(enum endpoint ep)
{
    static const char *names[] = {"none",        "predict",     "health_live",      "health_ready",
                                  "metrics",     "server_meta", "repository_index", "model_meta",
                                  "model_ready", "model_infer"};
    return (int)ep >= 0 && (size_t)ep < sizeof names / sizeof names[0] ? names[ep] : "?";
}
