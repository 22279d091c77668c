/* test_router.c - route_match: every endpoint, 404, 405 with Allow, 400
 * for bad model names, and the versions path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "router.h"
#include "test_support.h"

static void expect_route(const char *method, const char *path, enum endpoint ep, const char *model,
                         const char *version, bool has_body)
{
    struct route r;
    enum route_status st = route_match(method, path, &r);
    if (st != ROUTE_OK)
        fail_msg("%s %s: status %d, want 200", method, path, (int)st);
    if (r.endpoint != ep)
        fail_msg("%s %s: endpoint %s, want %s", method, path, endpoint_name(r.endpoint),
                 endpoint_name(ep));
    assert_string_equal(r.model, model);
    assert_string_equal(r.version, version);
    assert_int_equal(r.has_body, has_body);
    assert_non_null(r.allow);
    assert_non_null(strstr(r.allow, method));
}

static void expect_status(const char *method, const char *path, enum route_status want)
{
    struct route r;
    enum route_status st = route_match(method, path, &r);
    if (st != want)
        fail_msg("%s %.60s: status %d, want %d", method, path, (int)st, (int)want);
}

static void expect_405(const char *method, const char *path, const char *allow)
{
    struct route r;
    enum route_status st = route_match(method, path, &r);
    if (st != ROUTE_BAD_METHOD)
        fail_msg("%s %s: status %d, want 405", method, path, (int)st);
    assert_non_null(r.allow);
    assert_string_equal(r.allow, allow);
}

static void test_fixed_endpoints(void **state)
{
    (void)state;
    expect_route("POST", "/predict", EP_PREDICT, "", "", true);
    expect_route("GET", "/v2/health/live", EP_HEALTH_LIVE, "", "", false);
    expect_route("HEAD", "/v2/health/live", EP_HEALTH_LIVE, "", "", false);
    expect_route("GET", "/v2/health/ready", EP_HEALTH_READY, "", "", false);
    expect_route("HEAD", "/v2/health/ready", EP_HEALTH_READY, "", "", false);
    expect_route("GET", "/metrics", EP_METRICS, "", "", false);
    expect_route("HEAD", "/metrics", EP_METRICS, "", "", false);
    expect_route("GET", "/v2", EP_SERVER_META, "", "", false);
    expect_route("HEAD", "/v2", EP_SERVER_META, "", "", false);
    expect_route("GET", "/v2/repository/index", EP_REPOSITORY_INDEX, "", "", false);
    expect_route("POST", "/v2/repository/index", EP_REPOSITORY_INDEX, "", "", false);
}

static void test_model_endpoints(void **state)
{
    (void)state;
    expect_route("GET", "/v2/models/mnist", EP_MODEL_META, "mnist", "", false);
    expect_route("HEAD", "/v2/models/mnist", EP_MODEL_META, "mnist", "", false);
    expect_route("GET", "/v2/models/mnist/ready", EP_MODEL_READY, "mnist", "", false);
    expect_route("POST", "/v2/models/mnist/infer", EP_MODEL_INFER, "mnist", "", true);
    /* Versions. */
    expect_route("GET", "/v2/models/mnist/versions/1", EP_MODEL_META, "mnist", "1", false);
    expect_route("GET", "/v2/models/mnist/versions/2/ready", EP_MODEL_READY, "mnist", "2", false);
    expect_route("POST", "/v2/models/mnist/versions/12/infer", EP_MODEL_INFER, "mnist", "12", true);
    /* Every character a name may hold. */
    expect_route("POST", "/v2/models/Az09._-x/infer", EP_MODEL_INFER, "Az09._-x", "", true);
    expect_route("GET", "/v2/models/.hidden", EP_MODEL_META, ".hidden", "", false);
    expect_route("GET", "/v2/models/...", EP_MODEL_META, "...", "", false);

    /* The longest name allowed: 127 bytes. */
    char name[MODEL_NAME_MAX + 1], path[512];
    memset(name, 'n', MODEL_NAME_MAX - 1);
    name[MODEL_NAME_MAX - 1] = '\0';
    snprintf(path, sizeof path, "/v2/models/%s/infer", name);
    expect_route("POST", path, EP_MODEL_INFER, name, "", true);
    /* The longest version. */
    snprintf(path, sizeof path, "/v2/models/m/versions/%s/ready",
             "1234567890123456789012345678901");
    expect_route("GET", path, EP_MODEL_READY, "m", "1234567890123456789012345678901", false);
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
    assert_int_equal(route_match("GET", "/v2/models/abc/versions/7/infer", &r), ROUTE_BAD_METHOD);
    assert_int_equal(r.endpoint, EP_MODEL_INFER);
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
    assert_int_equal(route_match("GET", "/v2/models/first/versions/9", &r), ROUTE_OK);
    assert_int_equal(route_match("GET", "/metrics", &r), ROUTE_OK);
    assert_int_equal(r.endpoint, EP_METRICS);
    assert_string_equal(r.model, "");
    assert_string_equal(r.version, "");
    assert_int_equal(route_match("GET", "/nowhere", &r), ROUTE_NOT_FOUND);
    assert_int_equal(r.endpoint, EP_NONE);
    assert_string_equal(r.model, "");
}

static void test_endpoint_names(void **state)
{
    (void)state;
    assert_string_equal(endpoint_name(EP_NONE), "none");
    assert_string_equal(endpoint_name(EP_PREDICT), "predict");
    assert_string_equal(endpoint_name(EP_MODEL_INFER), "model_infer");
    assert_string_equal(endpoint_name(EP_REPOSITORY_INDEX), "repository_index");
    assert_string_equal(endpoint_name((enum endpoint)99), "?");
    assert_string_equal(endpoint_name((enum endpoint) - 1), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_endpoints), cmocka_unit_test(test_model_endpoints),
        cmocka_unit_test(test_not_found),       cmocka_unit_test(test_bad_method),
        cmocka_unit_test(test_bad_model_names), cmocka_unit_test(test_route_is_reset),
        cmocka_unit_test(test_endpoint_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
