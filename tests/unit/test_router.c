/* test_router.c - route_match over inferd's route table (api_routes.h):
 * every endpoint, 404, 405 with Allow, 400 for bad model names, and the
 * versions path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "api_routes.h"
#include "router.h"
#include "test_support.h"

/* The API's rows, without their handlers (the router never calls them). */
#define TEST_ROW(name, methods, pattern, accepts, access)                                          \
    {#name, methods, pattern, accepts, API_ACCESS_##access, NULL},
static const struct route_def table[] = {API_ROUTES(TEST_ROW)};
#define N_ROWS (sizeof table / sizeof table[0])

static enum route_status match(const char *method, const char *path, struct route *r)
{
    return route_match(table, N_ROWS, method, path, r);
}

static void expect_route(const char *method, const char *path, const char *ep, const char *model,
                         const char *version, bool has_body)
{
    struct route r;
    enum route_status st = match(method, path, &r);
    if (st != ROUTE_OK)
        fail_msg("%s %s: status %d, want 200", method, path, (int)st);
    if (strcmp(route_name(&r), ep) != 0)
        fail_msg("%s %s: endpoint %s, want %s", method, path, route_name(&r), ep);
    assert_string_equal(r.model, model);
    assert_string_equal(r.version, version);
    assert_int_equal(route_takes_body(&r), has_body);
    assert_non_null(r.def->methods);
    assert_non_null(strstr(r.def->methods, method));
}

static void expect_status(const char *method, const char *path, enum route_status want)
{
    struct route r;
    enum route_status st = match(method, path, &r);
    if (st != want)
        fail_msg("%s %.60s: status %d, want %d", method, path, (int)st, (int)want);
}

static void expect_405(const char *method, const char *path, const char *allow)
{
    struct route r;
    enum route_status st = match(method, path, &r);
    if (st != ROUTE_BAD_METHOD)
        fail_msg("%s %s: status %d, want 405", method, path, (int)st);
    assert_non_null(r.def);
    assert_string_equal(r.def->methods, allow);
}

static void test_fixed_endpoints(void **state)
{
    (void)state;
    expect_route("POST", "/predict", "predict", "", "", true);
    expect_route("GET", "/v2/health/live", "health_live", "", "", false);
    expect_route("HEAD", "/v2/health/live", "health_live", "", "", false);
    expect_route("GET", "/v2/health/ready", "health_ready", "", "", false);
    expect_route("HEAD", "/v2/health/ready", "health_ready", "", "", false);
    expect_route("GET", "/metrics", "metrics", "", "", false);
    expect_route("HEAD", "/metrics", "metrics", "", "", false);
    expect_route("GET", "/v2", "server_meta", "", "", false);
    expect_route("HEAD", "/v2", "server_meta", "", "", false);
    expect_route("GET", "/v2/repository/index", "repository_index", "", "", false);
    expect_route("POST", "/v2/repository/index", "repository_index", "", "", false);
}

static void test_model_endpoints(void **state)
{
    (void)state;
    expect_route("GET", "/v2/models/mnist", "model_meta", "mnist", "", false);
    expect_route("HEAD", "/v2/models/mnist", "model_meta", "mnist", "", false);
    expect_route("GET", "/v2/models/mnist/ready", "model_ready", "mnist", "", false);
    expect_route("POST", "/v2/models/mnist/infer", "model_infer", "mnist", "", true);
    /* Versions. */
    expect_route("GET", "/v2/models/mnist/versions/1", "model_meta", "mnist", "1", false);
    expect_route("GET", "/v2/models/mnist/versions/2/ready", "model_ready", "mnist", "2", false);
    expect_route("POST", "/v2/models/mnist/versions/12/infer", "model_infer", "mnist", "12", true);
    /* Statistics and configuration. "/v2/models/stats" is every model's
     * statistics (Triton's path), not a model called "stats", whose own
     * statistics and metadata stay reachable by their longer paths. */
    expect_route("GET", "/v2/models/stats", "models_stats", "", "", false);
    expect_route("HEAD", "/v2/models/stats", "models_stats", "", "", false);
    expect_route("GET", "/v2/models/mnist/stats", "model_stats", "mnist", "", false);
    expect_route("GET", "/v2/models/mnist/versions/1/stats", "model_stats", "mnist", "1", false);
    expect_route("GET", "/v2/models/stats/stats", "model_stats", "stats", "", false);
    expect_route("GET", "/v2/models/stats/versions/1", "model_meta", "stats", "1", false);
    expect_route("GET", "/v2/models/mnist/config", "model_config", "mnist", "", false);
    expect_route("HEAD", "/v2/models/mnist/config", "model_config", "mnist", "", false);
    expect_route("GET", "/v2/models/mnist/versions/3/config", "model_config", "mnist", "3", false);
    expect_route("GET", "/v2/models/config", "model_meta", "config", "", false);
    /* Every character a name may hold. */
    expect_route("POST", "/v2/models/Az09._-x/infer", "model_infer", "Az09._-x", "", true);
    expect_route("GET", "/v2/models/.hidden", "model_meta", ".hidden", "", false);
    expect_route("GET", "/v2/models/...", "model_meta", "...", "", false);

    /* The longest name allowed: 127 bytes. */
    char name[MODEL_NAME_MAX + 1], path[512];
    memset(name, 'n', MODEL_NAME_MAX - 1);
    name[MODEL_NAME_MAX - 1] = '\0';
    snprintf(path, sizeof path, "/v2/models/%s/infer", name);
    expect_route("POST", path, "model_infer", name, "", true);
    /* The longest version. */
    snprintf(path, sizeof path, "/v2/models/m/versions/%s/ready",
             "1234567890123456789012345678901");
    expect_route("GET", path, "model_ready", "m", "1234567890123456789012345678901", false);
}

/* The access column: who may call each endpoint (access.h). */
static void expect_access(const char *method, const char *path, enum access_level want)
{
    struct route r;
    enum route_status st = match(method, path, &r);
    (void)st;
    if (route_access(&r) != want)
        fail_msg("%s %s: access %d, want %d", method, path, (int)route_access(&r), (int)want);
}

static void test_access_levels(void **state)
{
    (void)state;
    expect_access("GET", "/v2/health/live", ACCESS_OPEN);
    expect_access("GET", "/v2/health/ready", ACCESS_OPEN);
    expect_access("GET", "/metrics", ACCESS_METRICS);
    expect_access("POST", "/v2/repository/models/m/load", ACCESS_ADMIN);
    expect_access("POST", "/v2/repository/models/m/unload", ACCESS_ADMIN);
    expect_access("POST", "/predict", ACCESS_KEY);
    expect_access("GET", "/v2", ACCESS_KEY);
    expect_access("GET", "/v2/repository/index", ACCESS_KEY);
    expect_access("GET", "/v2/models/stats", ACCESS_KEY);
    expect_access("GET", "/v2/models/m/versions/1/config", ACCESS_KEY);
    expect_access("POST", "/v2/models/m/infer", ACCESS_KEY);
    expect_access("POST", "/v2/systemsharedmemory/region/r/register", ACCESS_ADMIN);
    expect_access("POST", "/v2/systemsharedmemory/region/r/unregister", ACCESS_ADMIN);
    expect_access("POST", "/v2/systemsharedmemory/unregister", ACCESS_ADMIN);
    expect_access("POST", "/v2/cudasharedmemory/region/r/register", ACCESS_ADMIN);
    expect_access("POST", "/v2/cudasharedmemory/unregister", ACCESS_ADMIN);
    expect_access("GET", "/v2/systemsharedmemory/status", ACCESS_KEY);
    expect_access("GET", "/v2/cudasharedmemory/region/r/status", ACCESS_KEY);
    /* a wrong method keeps its row's level; no row, or a bad name: a key */
    expect_access("GET", "/v2/repository/models/m/load", ACCESS_ADMIN);
    expect_access("POST", "/v2/health/live", ACCESS_OPEN);
    expect_access("GET", "/nope", ACCESS_KEY);
    expect_access("GET", "/v2/repository/models/m/other", ACCESS_KEY);
    expect_access("POST", "/v2/repository/models/bad name/load", ACCESS_KEY);
    /* every row has one of the four levels */
    for (size_t i = 0; i < N_ROWS; i++)
        assert_true(table[i].access == ACCESS_OPEN || table[i].access == ACCESS_METRICS ||
                    table[i].access == ACCESS_KEY || table[i].access == ACCESS_ADMIN);
}

static void test_not_found(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/",
        "",
        "/predict/",
        "/PREDICT",
        "/predictx",
        "/predict?x=1",
        "/v2/",
        "/v3",
        "/v2/health",
        "/v2/health/",
        "/v2/health/live/",
        "/v2/health/alive",
        "/metrics/",
        "/metricsx",
        "/v2/repository",
        "/v2/repository/index/",
        "/v2/models",
        "/v2/models/",
        "/v2/models//infer",
        "/v2/models/m/",
        "/v2/models/m/infer/",
        "/v2/models/m/predict",
        "/v2/models/m/ready/",
        "/v2/models/m/readyx",
        "/v2/models/m/versions",
        "/v2/models/m/versions/",
        "/v2/models/m/versions//infer",
        "/v2/models/m/versions/1/",
        "/v2/models/m/versions/1/x",
        "/v2/models/m/version/1",
        "/v2/models/stats/",
        "/v2/models/m/stats/",
        "/v2/models/m/statsx",
        "/v2/models/m/config/",
        "/v2/models/m/versions/1/config/x",
        "//v2/models/m",
        "v2/models/m",
        "/V2/models/m",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        expect_status("GET", paths[i], ROUTE_NOT_FOUND);
        expect_status("POST", paths[i], ROUTE_NOT_FOUND);
    }
    /* A version too long for the route is not found either. */
    char path[256];
    snprintf(path, sizeof path, "/v2/models/m/versions/%s/ready",
             "12345678901234567890123456789012");
    expect_status("GET", path, ROUTE_NOT_FOUND);
}

static void test_bad_method(void **state)
{
    (void)state;
    expect_405("GET", "/predict", "POST");
    expect_405("PUT", "/predict", "POST");
    expect_405("HEAD", "/predict", "POST");
    expect_405("POST", "/v2/health/live", "GET, HEAD");
    expect_405("DELETE", "/v2/health/ready", "GET, HEAD");
    expect_405("POST", "/metrics", "GET, HEAD");
    expect_405("POST", "/v2", "GET, HEAD");
    expect_405("DELETE", "/v2/repository/index", "GET, HEAD, POST");
    expect_405("POST", "/v2/models/m", "GET, HEAD");
    expect_405("POST", "/v2/models/m/ready", "GET, HEAD");
    expect_405("GET", "/v2/models/m/infer", "POST");
    expect_405("GET", "/v2/models/m/versions/3/infer", "POST");
    expect_405("PUT", "/v2/models/m/versions/3", "GET, HEAD");
    expect_405("POST", "/v2/models/stats", "GET, HEAD");
    expect_405("POST", "/v2/models/m/stats", "GET, HEAD");
    expect_405("DELETE", "/v2/models/m/versions/1/config", "GET, HEAD");
    /* Methods are case-sensitive and matched whole. */
    expect_405("get", "/metrics", "GET, HEAD");
    expect_405("post", "/predict", "POST");
    expect_405("GE", "/metrics", "GET, HEAD");
    expect_405("GETS", "/metrics", "GET, HEAD");
    expect_405("HEA", "/metrics", "GET, HEAD");
    expect_405("", "/metrics", "GET, HEAD");
    expect_405("GET, HEAD", "/metrics", "GET, HEAD");
    expect_405(" HEAD", "/metrics", "GET, HEAD");
    expect_405("POS", "/v2/repository/index", "GET, HEAD, POST");

    /* The 405 still says which endpoint and model. */
    struct route r;
    assert_int_equal(match("GET", "/v2/models/abc/versions/7/infer", &r), ROUTE_BAD_METHOD);
    assert_string_equal(route_name(&r), "model_infer");
    assert_string_equal(r.model, "abc");
    assert_string_equal(r.version, "7");
}

static void test_bad_model_names(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/v2/models/..",        "/v2/models/../infer",    "/v2/models/./ready",
        "/v2/models/a b",       "/v2/models/a b/infer",   "/v2/models/%2e%2e/infer",
        "/v2/models/a%20b",     "/v2/models/caf\xc3\xa9", "/v2/models/a\\b",
        "/v2/models/a:b/infer", "/v2/models/a\tb",        "/v2/models/a?b",
        "/v2/models/a*",        "/v2/models/\x01",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        expect_status("GET", paths[i], ROUTE_BAD_NAME);
        expect_status("POST", paths[i], ROUTE_BAD_NAME);
    }
    /* Too long: 128 bytes, 255 (fits the router's buffer), 256 and far
     * more. */
    static const size_t lengths[] = {MODEL_NAME_MAX, 200, 255, 256, 300, 4000};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        char path[4100];
        int n = snprintf(path, sizeof path, "/v2/models/");
        memset(path + n, 'a', lengths[i]);
        strcpy(path + n + lengths[i], "/infer");
        expect_status("POST", path, ROUTE_BAD_NAME);
        path[n + lengths[i]] = '\0';
        expect_status("GET", path, ROUTE_BAD_NAME);
    }
}

static void test_route_is_reset(void **state)
{
    (void)state;
    struct route r;
    assert_int_equal(match("GET", "/v2/models/first/versions/9", &r), ROUTE_OK);
    assert_int_equal(match("GET", "/metrics", &r), ROUTE_OK);
    assert_string_equal(route_name(&r), "metrics");
    assert_string_equal(r.model, "");
    assert_string_equal(r.version, "");
    assert_int_equal(match("GET", "/nowhere", &r), ROUTE_NOT_FOUND);
    assert_null(r.def);
    assert_string_equal(r.model, "");
}

/* The shared memory routes and their {region} segment. */
static void test_region_endpoints(void **state)
{
    (void)state;
    struct route r;
    static const char *const kinds[] = {"sys", "cuda"};
    static const char *const prefixes[] = {"/v2/systemsharedmemory", "/v2/cudasharedmemory"};
    for (int k = 0; k < 2; k++) {
        char path[256], ep[64];
        snprintf(path, sizeof path, "%s/region/my-region.1/register", prefixes[k]);
        snprintf(ep, sizeof ep, "%sshm_register", kinds[k]);
        assert_int_equal(match("POST", path, &r), ROUTE_OK);
        assert_string_equal(route_name(&r), ep);
        assert_string_equal(r.region, "my-region.1");
        assert_true(route_takes_body(&r));
        expect_405("GET", path, "POST");
        snprintf(path, sizeof path, "%s/region/x/status", prefixes[k]);
        assert_int_equal(match("GET", path, &r), ROUTE_OK);
        assert_string_equal(r.region, "x");
        snprintf(path, sizeof path, "%s/status", prefixes[k]);
        assert_int_equal(match("GET", path, &r), ROUTE_OK);
        assert_string_equal(r.region, "");
        snprintf(path, sizeof path, "%s/unregister", prefixes[k]);
        assert_int_equal(match("POST", path, &r), ROUTE_OK);
        snprintf(path, sizeof path, "%s/region//register", prefixes[k]);
        expect_status("POST", path, ROUTE_NOT_FOUND);
        snprintf(path, sizeof path, "%s/region/a/b/register", prefixes[k]);
        expect_status("POST", path, ROUTE_NOT_FOUND);
    }
    /* 63 bytes fit; 64 are a bad name, whatever the rest of the path. */
    char path[256];
    snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%063d/status", 0);
    assert_int_equal(match("GET", path, &r), ROUTE_OK);
    assert_int_equal(strlen(r.region), 63);
    snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%064d/status", 0);
    expect_status("GET", path, ROUTE_BAD_NAME);
}

static void test_endpoint_names(void **state)
{
    (void)state;
    struct route none = {0};
    assert_string_equal(route_name(&none), "none");
    assert_false(route_takes_body(&none));
    /* Every row has a name, methods, a pattern and a handler slot; names
     * are unique. */
    for (size_t i = 0; i < N_ROWS; i++) {
        assert_non_null(table[i].name);
        assert_true(table[i].methods[0] != '\0');
        assert_true(table[i].pattern[0] == '/');
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(table[i].name, table[j].name);
    }
}

/* The pattern language on its own: literals, placeholders, one optional
 * part, and a malformed pattern that matches nothing. */
static void test_patterns(void **state)
{
    (void)state;
    static const struct route_def rows[] = {
        {"a", "GET", "/a/{model}[/v/{version}]/x", NULL, ACCESS_KEY, NULL},
        {"b", "PUT, GET", "/b[/opt]", "application/json", ACCESS_OPEN, NULL},
        {"broken", "GET", "/c[/never", NULL, ACCESS_KEY, NULL},
    };
    struct route r;
    assert_int_equal(route_match(rows, 3, "GET", "/a/m/x", &r), ROUTE_OK);
    assert_string_equal(r.model, "m");
    assert_int_equal(route_match(rows, 3, "GET", "/a/m/v/3/x", &r), ROUTE_OK);
    assert_string_equal(r.version, "3");
    assert_int_equal(route_match(rows, 3, "GET", "/a/m/v/3", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match(rows, 3, "GET", "/b", &r), ROUTE_OK);
    assert_int_equal(route_match(rows, 3, "PUT", "/b/opt", &r), ROUTE_OK);
    assert_true(route_takes_body(&r));
    assert_int_equal(route_match(rows, 3, "GET", "/b/op", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match(rows, 3, "GET", "/c", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match(rows, 3, "GET", "/c[/never", &r), ROUTE_NOT_FOUND);
    assert_int_equal(route_match(rows, 0, "GET", "/a/m/x", &r), ROUTE_NOT_FOUND);
    assert_true(route_method_listed("PUT, GET", "GET"));
    assert_false(route_method_listed("PUT, GET", "PU"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_endpoints), cmocka_unit_test(test_model_endpoints),
        cmocka_unit_test(test_access_levels),   cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_bad_method),      cmocka_unit_test(test_bad_model_names),
        cmocka_unit_test(test_route_is_reset),  cmocka_unit_test(test_endpoint_names),
        cmocka_unit_test(test_patterns),        cmocka_unit_test(test_region_endpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
