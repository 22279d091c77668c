/* test_config.c - config_parse (defaults, INFERD_* environment, flags) and
 * config_resolve_devices. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "test_support.h"

/* ---- an injected environment ---- */

static const char *fake_env[32][2];
static int fake_env_n;
static int fake_env_lookups;

static void env_clear(void)
{
    fake_env_n = 0;
    fake_env_lookups = 0;
}

static void env_set(const char *name, const char *value)
{
    assert_true(fake_env_n < 32);
    fake_env[fake_env_n][0] = name;
    fake_env[fake_env_n][1] = value;
    fake_env_n++;
}

static const char *fake_getenv(const char *name)
{
    fake_env_lookups++;
    for (int i = 0; i < fake_env_n; i++)
        if (strcmp(fake_env[i][0], name) == 0)
            return fake_env[i][1];
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    env_clear();
    return 0;
}

/* config_parse with argv given as a NULL-terminated list after argv0. */
#define PARSE(cfg, err, ...)                                                                       \
    parse_list((cfg), (err), sizeof(err), (const char *[]){"inferd", __VA_ARGS__, NULL})

static int parse_list(struct inferd_config *cfg, char *err, size_t err_len, const char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    err[0] = '\0';
    return config_parse(cfg, argc, (char **)args, fake_getenv, err, err_len);
}

static void expect_error(const char *needle, const char **args)
{
    struct inferd_config cfg;
    char err[256];
    int rc = parse_list(&cfg, err, sizeof err, args);
    if (rc != CONFIG_ERROR)
        fail_msg("%s %s: got %d, want CONFIG_ERROR", args[1], args[2] ? args[2] : "", rc);
    if (strstr(err, needle) == NULL)
        fail_msg("%s: error '%s' does not mention '%s'", args[1], err, needle);
}
#define EXPECT_ERROR(needle, ...)                                                                  \
    expect_error((needle), (const char *[]){"inferd", __VA_ARGS__, NULL})

/* ---- tests ---- */

static void check_defaults(const struct inferd_config *cfg)
{
    assert_string_equal(cfg->host, "0.0.0.0");
    assert_int_equal(cfg->port, 8080);
    assert_string_equal(cfg->model_repository, "./models");
    assert_string_equal(cfg->default_model, "fashion_mnist");
    assert_string_equal(cfg->devices_spec, "auto");
    assert_int_equal(cfg->instances_per_device, 1);
    assert_int_equal(cfg->http_threads, 2);
    assert_int_equal(cfg->max_batch_size, 32);
    assert_int_equal(cfg->max_queue_delay_us, 2000);
    assert_int_equal(cfg->max_queue, 256);
    assert_int_equal(cfg->max_body_bytes, 16L * 1024 * 1024);
    assert_int_equal(cfg->request_timeout_ms, 30000);
    assert_int_equal(cfg->drain_timeout_s, 8);
    assert_true(cfg->gpu_memory_fraction == 0.0);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_false(cfg->health_check);
}

static void test_defaults(void **state)
{
    (void)state;
    struct inferd_config cfg;
    config_defaults(&cfg);
    check_defaults(&cfg);

    char err[256] = "";
    char *argv[] = {"inferd", NULL};
    memset(&cfg, 0x5a, sizeof cfg);
    assert_int_equal(config_parse(&cfg, 1, argv, NULL, err, sizeof err), CONFIG_OK);
    check_defaults(&cfg);

    /* An environment with nothing set changes nothing; every option is
     * looked up. */
    assert_int_equal(config_parse(&cfg, 1, argv, fake_getenv, err, sizeof err), CONFIG_OK);
    check_defaults(&cfg);
    assert_true(fake_env_lookups >= 17);

    /* Empty values are ignored. */
    env_set("INFERD_PORT", "");
    assert_int_equal(config_parse(&cfg, 1, argv, fake_getenv, err, sizeof err), CONFIG_OK);
    assert_int_equal(cfg.port, 8080);
}

static void test_environment(void **state)
{
    (void)state;
    env_set("INFERD_PORT", "9001");
    env_set("INFERD_HOST", "127.0.0.1");
    env_set("INFERD_MODEL_REPOSITORY", "/srv/models");
    env_set("INFERD_DEFAULT_MODEL", "resnet");
    env_set("INFERD_DEVICES", "0,1");
    env_set("INFERD_INSTANCES_PER_DEVICE", "3");
    env_set("INFERD_HTTP_THREADS", "8");
    env_set("INFERD_MAX_BATCH_SIZE", "0");
    env_set("INFERD_MAX_QUEUE_DELAY_US", "500");
    env_set("INFERD_MAX_QUEUE", "10");
    env_set("INFERD_MAX_BODY_BYTES", "1024");
    env_set("INFERD_REQUEST_TIMEOUT_MS", "0");
    env_set("INFERD_DRAIN_TIMEOUT_S", "1");
    env_set("INFERD_GPU_MEMORY_FRACTION", "0.5");
    env_set("INFERD_LOG_FORMAT", "json");
    env_set("INFERD_LOG_LEVEL", "debug");
    env_set("INFERD_HEALTH_CHECK", "true");
    struct inferd_config cfg;
    char err[256];
    char *argv[] = {"inferd", NULL};
    assert_int_equal(config_parse(&cfg, 1, argv, fake_getenv, err, sizeof err), CONFIG_OK);
    assert_int_equal(cfg.port, 9001);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_string_equal(cfg.model_repository, "/srv/models");
    assert_string_equal(cfg.default_model, "resnet");
    assert_string_equal(cfg.devices_spec, "0,1");
    assert_int_equal(cfg.instances_per_device, 3);
    assert_int_equal(cfg.http_threads, 8);
    assert_int_equal(cfg.max_batch_size, 0);
    assert_int_equal(cfg.max_queue_delay_us, 500);
    assert_int_equal(cfg.max_queue, 10);
    assert_int_equal(cfg.max_body_bytes, 1024);
    assert_int_equal(cfg.request_timeout_ms, 0);
    assert_int_equal(cfg.drain_timeout_s, 1);
    assert_true(cfg.gpu_memory_fraction == 0.5);
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_int_equal(cfg.log_level, LOG_DEBUG);
    assert_true(cfg.health_check);
}

static void test_environment_errors(void **state)
{
    (void)state;
    struct inferd_config cfg;
    char err[256];
    char *argv[] = {"inferd", NULL};
    env_set("INFERD_PORT", "http");
    assert_int_equal(config_parse(&cfg, 1, argv, fake_getenv, err, sizeof err), CONFIG_ERROR);
    assert_non_null(strstr(err, "INFERD_PORT"));
    assert_non_null(strstr(err, "http"));

    env_clear();
    env_set("INFERD_LOG_LEVEL", "loud");
    assert_int_equal(config_parse(&cfg, 1, argv, fake_getenv, err, sizeof err), CONFIG_ERROR);
    assert_non_null(strstr(err, "INFERD_LOG_LEVEL"));

    env_clear();
    env_set("INFERD_MAX_QUEUE", "0");
    assert_int_equal(config_parse(&cfg, 1, argv, fake_getenv, err, sizeof err), CONFIG_ERROR);
    assert_non_null(strstr(err, "INFERD_MAX_QUEUE"));

    env_clear();
    env_set("INFERD_GPU_MEMORY_FRACTION", "2");
    assert_int_equal(config_parse(&cfg, 1, argv, fake_getenv, err, sizeof err), CONFIG_ERROR);
    assert_non_null(strstr(err, "INFERD_GPU_MEMORY_FRACTION"));
}

static void test_flags_win_over_environment(void **state)
{
    (void)state;
    env_set("INFERD_PORT", "9001");
    env_set("INFERD_LOG_LEVEL", "error");
    env_set("INFERD_HOST", "10.0.0.1");
    struct inferd_config cfg;
    char err[256];
    assert_int_equal(PARSE(&cfg, err, "--port", "7000", "--log-level=warn"), CONFIG_OK);
    assert_int_equal(cfg.port, 7000);
    assert_int_equal(cfg.log_level, LOG_WARN);
    assert_string_equal(cfg.host, "10.0.0.1"); /* not given as a flag: env stays */

    /* The last of a repeated flag wins. */
    assert_int_equal(PARSE(&cfg, err, "--port=1", "--port", "2"), CONFIG_OK);
    assert_int_equal(cfg.port, 2);
}

static void test_flag_forms(void **state)
{
    (void)state;
    struct inferd_config cfg;
    char err[256];
    assert_int_equal(PARSE(&cfg, err, "--port=8081", "--host", "::1", "--max-batch-size", "16",
                           "--max-queue-delay-us=0", "--gpu-memory-fraction", "1",
                           "--log-format=json", "--model-repository", "/m", "--default-model=x",
                           "--devices=cpu", "--max-body-bytes", "100", "--request-timeout-ms=5",
                           "--drain-timeout-s", "0", "--instances-per-device=64", "--http-threads",
                           "256", "--max-queue=1000000"),
                     CONFIG_OK);
    assert_int_equal(cfg.port, 8081);
    assert_string_equal(cfg.host, "::1");
    assert_int_equal(cfg.max_batch_size, 16);
    assert_int_equal(cfg.max_queue_delay_us, 0);
    assert_true(cfg.gpu_memory_fraction == 1.0);
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_string_equal(cfg.model_repository, "/m");
    assert_string_equal(cfg.default_model, "x");
    assert_string_equal(cfg.devices_spec, "cpu");
    assert_int_equal(cfg.max_body_bytes, 100);
    assert_int_equal(cfg.request_timeout_ms, 5);
    assert_int_equal(cfg.drain_timeout_s, 0);
    assert_int_equal(cfg.instances_per_device, 64);
    assert_int_equal(cfg.http_threads, 256);
    assert_int_equal(cfg.max_queue, 1000000);

    /* A boolean flag needs no value, or takes 0/1/true/false after '='. */
    assert_int_equal(PARSE(&cfg, err, "--health-check"), CONFIG_OK);
    assert_true(cfg.health_check);
    assert_int_equal(PARSE(&cfg, err, "--health-check", "--port", "1"), CONFIG_OK);
    assert_true(cfg.health_check);
    assert_int_equal(cfg.port, 1);
    assert_int_equal(PARSE(&cfg, err, "--health-check=0"), CONFIG_OK);
    assert_false(cfg.health_check);
    assert_int_equal(PARSE(&cfg, err, "--health-check=true"), CONFIG_OK);
    assert_true(cfg.health_check);

    /* '=' splits at the first one only; the value may hold more. */
    assert_int_equal(PARSE(&cfg, err, "--default-model=a=b"), CONFIG_OK);
    assert_string_equal(cfg.default_model, "a=b");
    /* The value after a space may start with dashes. */
    assert_int_equal(PARSE(&cfg, err, "--model-repository", "--odd"), CONFIG_OK);
    assert_string_equal(cfg.model_repository, "--odd");
    /* Bounds are inclusive. */
    assert_int_equal(PARSE(&cfg, err, "--port", "0"), CONFIG_OK);
    assert_int_equal(cfg.port, 0);
    assert_int_equal(PARSE(&cfg, err, "--port", "65535"), CONFIG_OK);
    assert_int_equal(cfg.port, 65535);
}

static void test_flag_errors(void **state)
{
    (void)state;
    EXPECT_ERROR("--bogus", "--bogus");
    EXPECT_ERROR("--bogus", "--bogus=1");
    EXPECT_ERROR("--por", "--por", "1"); /* no prefix matching */
    EXPECT_ERROR("--port-x", "--port-x=1");
    EXPECT_ERROR("unexpected argument", "port");
    EXPECT_ERROR("-p", "-p", "80");
    /* Bad integers. */
    EXPECT_ERROR("--port", "--port", "eighty");
    EXPECT_ERROR("--port", "--port=80x");
    EXPECT_ERROR("--port", "--port=");
    EXPECT_ERROR("--port", "--port", "1.5");
    EXPECT_ERROR("--port", "--port", "99999999999999999999999");
    EXPECT_ERROR("--max-batch-size", "--max-batch-size", "many");
    /* Out of range. */
    EXPECT_ERROR("--port", "--port", "65536");
    EXPECT_ERROR("--port", "--port", "-1");
    EXPECT_ERROR("--instances-per-device", "--instances-per-device", "0");
    EXPECT_ERROR("--instances-per-device", "--instances-per-device=65");
    EXPECT_ERROR("--http-threads", "--http-threads", "0");
    EXPECT_ERROR("--max-batch-size", "--max-batch-size", "65537");
    EXPECT_ERROR("--max-batch-size", "--max-batch-size", "-1");
    EXPECT_ERROR("--max-queue", "--max-queue", "0");
    EXPECT_ERROR("--max-queue-delay-us", "--max-queue-delay-us", "60000001");
    EXPECT_ERROR("--max-body-bytes", "--max-body-bytes", "0");
    EXPECT_ERROR("--request-timeout-ms", "--request-timeout-ms", "86400001");
    EXPECT_ERROR("--drain-timeout-s", "--drain-timeout-s", "3601");
    EXPECT_ERROR("--gpu-memory-fraction", "--gpu-memory-fraction", "1.5");
    EXPECT_ERROR("--gpu-memory-fraction", "--gpu-memory-fraction", "-0.1");
    EXPECT_ERROR("--gpu-memory-fraction", "--gpu-memory-fraction", "nan");
    EXPECT_ERROR("--gpu-memory-fraction", "--gpu-memory-fraction", "half");
    /* Bad enum values. */
    EXPECT_ERROR("--log-level", "--log-level", "verbose");
    EXPECT_ERROR("--log-level", "--log-level=INFO");
    EXPECT_ERROR("--log-level", "--log-level=inf");
    EXPECT_ERROR("--log-level", "--log-level=");
    EXPECT_ERROR("--log-format", "--log-format", "xml");
    EXPECT_ERROR("--health-check", "--health-check=yes");
    /* A value that is missing. */
    EXPECT_ERROR("--port", "--port");
    EXPECT_ERROR("--host", "--host");
    /* Too long for its buffer. */
    char longer[300];
    memset(longer, 'h', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    EXPECT_ERROR("--host", "--host", longer);
    EXPECT_ERROR("--default-model", "--default-model", longer);
    /* An error after good flags still names the bad one. */
    EXPECT_ERROR("--max-queue", "--port", "1", "--max-queue", "x");
}

static void test_help_and_version(void **state)
{
    (void)state;
    struct inferd_config cfg;
    char err[256];
    assert_int_equal(PARSE(&cfg, err, "--help"), CONFIG_HELP);
    assert_int_equal(PARSE(&cfg, err, "-h"), CONFIG_HELP);
    assert_int_equal(PARSE(&cfg, err, "--port", "1", "--help"), CONFIG_HELP);
    assert_int_equal(PARSE(&cfg, err, "--version"), CONFIG_VERSION);

    /* The help text lists every flag and its environment variable. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_print_help(f, "inferd");
    fclose(f);
    static const char *const flags[] = {
        "--host",
        "--port",
        "--model-repository",
        "--default-model",
        "--devices",
        "--max-batch-size",
        "--max-queue-delay-us",
        "--max-queue",
        "--log-level",
        "--help",
        "INFERD_MAX_BATCH_SIZE",
        "--health-check",
        "--gpu-memory-fraction",
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strstr(text, flags[i]) == NULL)
            fail_msg("help does not mention %s", flags[i]);
    free(text);

    assert_string_equal(log_level_name(LOG_DEBUG), "debug");
    assert_string_equal(log_level_name(LOG_ERROR), "error");
}

/* ---- devices ---- */

static int resolve(const char *spec, int cuda_count, struct inferd_config *cfg, char *err,
                   size_t err_len)
{
    config_defaults(cfg);
    snprintf(cfg->devices_spec, sizeof cfg->devices_spec, "%s", spec);
    err[0] = '\0';
    return config_resolve_devices(cfg, cuda_count, err, err_len);
}

static void expect_devices_error(const char *spec, int cuda_count, const char *needle)
{
    struct inferd_config cfg;
    char err[256];
    if (resolve(spec, cuda_count, &cfg, err, sizeof err) != -1)
        fail_msg("devices '%s' with %d GPUs accepted", spec, cuda_count);
    if (strstr(err, needle) == NULL)
        fail_msg("devices '%s': error '%s' does not mention '%s'", spec, err, needle);
}

static void test_devices(void **state)
{
    (void)state;
    struct inferd_config cfg;
    char err[256];

    assert_int_equal(resolve("auto", 0, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 1);
    assert_int_equal(cfg.devices[0], CONFIG_DEVICE_CPU);

    assert_int_equal(resolve("auto", 3, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cfg.devices[i], i);

    assert_int_equal(resolve("cpu", 0, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 1);
    assert_int_equal(cfg.devices[0], CONFIG_DEVICE_CPU);
    assert_int_equal(resolve("cpu", 4, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 1);
    assert_int_equal(cfg.devices[0], CONFIG_DEVICE_CPU);

    assert_int_equal(resolve("0,1", 2, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 2);
    assert_int_equal(cfg.devices[0], 0);
    assert_int_equal(cfg.devices[1], 1);

    assert_int_equal(resolve("1", 2, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 1);
    assert_int_equal(cfg.devices[0], 1);

    assert_int_equal(resolve("3,1", 4, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 2);
    assert_int_equal(cfg.devices[0], 3);
    assert_int_equal(cfg.devices[1], 1);

    /* Resolving again starts afresh. */
    assert_int_equal(resolve("0", 1, &cfg, err, sizeof err), 0);
    assert_int_equal(config_resolve_devices(&cfg, 1, err, sizeof err), 0);
    assert_int_equal(cfg.n_devices, 1);

    expect_devices_error("0,1", 1, "GPU 1");
    expect_devices_error("0", 0, "GPU 0");
    expect_devices_error("a", 2, "'a'");
    expect_devices_error("gpu", 2, "'gpu'");
    expect_devices_error("0,a", 2, "'0,a'");
    expect_devices_error("0;1", 2, "'0;1'");
    expect_devices_error("-1", 2, "'-1'");
    expect_devices_error("0,0", 2, "twice");
    expect_devices_error("1,0,1", 2, "twice");
    expect_devices_error("", 2, "empty");
    expect_devices_error(",0", 2, "',0'");
    expect_devices_error("0,,1", 2, "'0,,1'");
    expect_devices_error("99999999999999999999", 2, "'99999999999999999999'");
    expect_devices_error("CPU", 2, "'CPU'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_environment, setup),
        cmocka_unit_test_setup(test_environment_errors, setup),
        cmocka_unit_test_setup(test_flags_win_over_environment, setup),
        cmocka_unit_test_setup(test_flag_forms, setup),
        cmocka_unit_test_setup(test_flag_errors, setup),
        cmocka_unit_test_setup(test_help_and_version, setup),
        cmocka_unit_test_setup(test_devices, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
