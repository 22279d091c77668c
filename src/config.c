/* config.c - flags and INFERD_* environment variables (see config.h).
 * One table describes every option: its flag, type, default and help. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { OPT_STR, OPT_INT, OPT_LONG, OPT_DOUBLE, OPT_ENUM, OPT_FLAG };

struct option_spec {
    const char *flag; /* without the leading dashes */
    enum opt_type type;
    size_t offset;
    size_t size;        /* OPT_STR: buffer size */
    long min, max;      /* OPT_INT/OPT_LONG bounds */
    const char *values; /* OPT_ENUM: "a|b|c", index is the value */
    const char *help;
};

#define FIELD(f) offsetof(struct inferd_config, f)
#define STR(f) FIELD(f), sizeof(((struct inferd_config *)0)->f)

static const struct option_spec options[] = {
    {"host", OPT_STR, STR(host), 0, 0, NULL, "address to listen on"},
    {"port", OPT_INT, FIELD(port), 0, 0, 65535, NULL, "TCP port (0: any)"},
    {"model-repository", OPT_STR, STR(model_repository), 0, 0, NULL,
     "folder with one sub-folder (config.json, model.pt) per model"},
    {"default-model", OPT_STR, STR(default_model), 0, 0, NULL, "model served by POST /predict"},
    {"devices", OPT_STR, STR(devices_spec), 0, 0, NULL,
     "auto (every CUDA GPU, else CPU) | cpu | 0,1,.. (GPU ordinals)"},
    {"instances-per-device", OPT_INT, FIELD(instances_per_device), 0, 1, 64, NULL,
     "model instances (worker threads) per device; config.json \"instances\" wins"},
    {"http-threads", OPT_INT, FIELD(http_threads), 0, 1, 256, NULL, "HTTP polling threads"},
    {"max-batch-size", OPT_INT, FIELD(max_batch_size), 0, 0, 65536, NULL,
     "most samples in one forward (0: no batching); config.json wins"},
    {"max-queue-delay-us", OPT_LONG, FIELD(max_queue_delay_us), 0, 0, 60000000, NULL,
     "longest wait for a batch to fill, from the oldest arrival; config.json wins"},
    {"batch-wait", OPT_ENUM, FIELD(batch_wait), 0, 0, 0, "adaptive|always",
     "adaptive: an idle instance takes an incomplete batch at once when the recent arrival rate "
     "expects no other request within the queue delay, or its last waits gathered none; always: "
     "wait the delay (as Triton)"},
    {"max-queue", OPT_INT, FIELD(max_queue), 0, 1, 1000000, NULL,
     "queued requests per model before 503"},
    {"max-body-bytes", OPT_LONG, FIELD(max_body_bytes), 0, 1, LONG_MAX / 2, NULL,
     "largest request body (413 above)"},
    {"max-image-pixels", OPT_LONG, FIELD(max_image_pixels), 0, 1, 1L << 40, NULL,
     "largest image (width x height) a request may send; checked from its header, 400 above"},
    {"max-connections", OPT_INT, FIELD(max_connections), 0, 2, 1000000, NULL,
     "open HTTP connections in all; past it a new one gets 503 and is closed (idle kept-alive "
     "connections are closed first to make room)"},
    {"max-connections-per-address", OPT_INT, FIELD(max_connections_per_address), 0, 1, 1000000,
     NULL,
     "open HTTP connections from one client address (behind a proxy: the proxy's); past it the "
     "same as --max-connections"},
    {"header-timeout-s", OPT_INT, FIELD(header_timeout_s), 0, 1, 3600, NULL,
     "a new connection's whole request header must arrive within this, else 408 and closed"},
    {"body-timeout-s", OPT_INT, FIELD(body_timeout_s), 0, 1, 86400, NULL,
     "a request's whole body must arrive within this from the end of its header, else 408 and "
     "closed"},
    {"request-timeout-ms", OPT_LONG, FIELD(request_timeout_ms), 0, 0, 86400000, NULL,
     "504 for a request still queued after this (0: never)"},
    {"drain-timeout-s", OPT_INT, FIELD(drain_timeout_s), 0, 0, 3600, NULL,
     "on SIGTERM, longest wait for accepted requests to finish"},
    {"gpu-memory-fraction", OPT_DOUBLE, FIELD(gpu_memory_fraction), 0, 0, 0, NULL,
     "cap on this process's share of each GPU's memory (0: none)"},
    {"log-format", OPT_ENUM, FIELD(log_format), 0, 0, 0, "text|json", "log line format"},
    {"log-level", OPT_ENUM, FIELD(log_level), 0, 0, 0, "debug|info|warn|error",
     "lowest level logged"},
    {"health-check", OPT_FLAG, FIELD(health_check), 0, 0, 0, NULL,
     "probe http://127.0.0.1:<port>/v2/health/ready, exit 0 if ready"},
    {"api-key-file", OPT_STR, STR(api_key_file), 0, 0, NULL,
     "file with the accepted API keys, one per line, re-read on SIGHUP; inference and "
     "metadata then need 'Authorization: Bearer <key>' or 'X-API-Key' (health stays open)"},
    {"metrics-need-key", OPT_FLAG, FIELD(metrics_need_key), 0, 0, 0, NULL,
     "with --api-key-file, /metrics needs a key too"},
    {"cors-allow-origin", OPT_STR, STR(cors_allow_origin), 0, 0, NULL,
     "CORS for browsers: * or origins like https://app.example.com,http://localhost:3000 "
     "(empty: off)"},
    {"model-control-mode", OPT_ENUM, FIELD(model_control_mode), 0, 0, 0, "none|poll|explicit",
     "none: the models found at start-up, for good; poll: rescan the repository every "
     "--repository-poll-s and on SIGHUP, (re)loading and unloading what changed; explicit: "
     "POST /v2/repository/models/<name>/load and /unload"},
    {"repository-poll-s", OPT_INT, FIELD(repository_poll_s), 0, 1, 86400, NULL,
     "poll mode: seconds between repository scans"},
    {"admin-token-file", OPT_STR, STR(admin_token_file), 0, 0, NULL,
     "explicit mode: file holding the token that load/unload need as 'Authorization: Bearer "
     "<token>' (without it, only loopback clients may load and unload)"},
    {"shared-memory", OPT_FLAG, FIELD(shared_memory), 0, 0, 0, NULL,
     "the system (and, on CUDA builds, CUDA) shared memory extensions: local clients register "
     "regions (admin access, like load/unload) and name them in requests instead of sending "
     "tensors in the body"},
    {"shared-memory-max-regions", OPT_INT, FIELD(shared_memory_max_regions), 0, 1, 4096, NULL,
     "most shared memory regions registered at once"},
    {"shared-memory-max-bytes", OPT_LONG, FIELD(shared_memory_max_bytes), 0, 1, 1L << 46, NULL,
     "most bytes of shared memory registered at once, all regions together"},
    {"grpc-port", OPT_INT, FIELD(grpc_port), 0, 0, 65535, NULL,
     "port of the gRPC listener (KServe v2 / Triton GRPCInferenceService and grpc.health.v1) on "
     "--host (0: off)"},
    {"grpc-threads", OPT_INT, FIELD(grpc_threads), 0, 0, 256, NULL,
     "gRPC completion queue threads (0: as many as --http-threads)"},
    {"grpc-tls-cert", OPT_STR, STR(grpc_tls_cert), 0, 0, NULL,
     "PEM certificate chain: with --grpc-tls-key, gRPC is served over TLS only"},
    {"grpc-tls-key", OPT_STR, STR(grpc_tls_key), 0, 0, NULL, "PEM private key of --grpc-tls-cert"},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

void config_defaults(struct inferd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->host, "0.0.0.0");
    cfg->port = 8080;
    strcpy(cfg->model_repository, "./models");
    strcpy(cfg->default_model, "fashion_mnist");
    strcpy(cfg->devices_spec, "auto");
    cfg->instances_per_device = 1;
    cfg->http_threads = 2;
    cfg->max_batch_size = 32;
    cfg->max_queue_delay_us = 2000;
    cfg->batch_wait = BATCH_WAIT_ADAPTIVE;
    cfg->max_queue = 256;
    cfg->max_body_bytes = 16L * 1024 * 1024;
    cfg->max_image_pixels = 40L * 1000 * 1000;
    cfg->max_connections = 1000;
    cfg->max_connections_per_address = 128;
    cfg->header_timeout_s = 10;
    cfg->body_timeout_s = 60;
    cfg->request_timeout_ms = 30000;
    cfg->drain_timeout_s = 8;
    cfg->gpu_memory_fraction = 0.0;
    cfg->log_format = LOG_FORMAT_TEXT;
    cfg->log_level = LOG_INFO;
    cfg->model_control_mode = CONTROL_NONE;
    cfg->repository_poll_s = 5;
    cfg->shared_memory_max_regions = 64;
    cfg->shared_memory_max_bytes = 4L << 30;
    cfg->grpc_port = 8001;
}

static int enum_index(const char *values, const char *value)
{
    int index = 0;
    size_t n = strlen(value);
    for (const char *p = values; *p; index++) {
        size_t len = strcspn(p, "|");
        if (len == n && strncmp(p, value, n) == 0)
            return index;
        p += len;
        if (*p == '|')
            p++;
    }
    return -1;
}

static int set_option(struct inferd_config *cfg, const struct option_spec *o, const char *value,
                      const char *source, char *err, size_t err_len)
{
    char *field = (char *)cfg + o->offset;
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_STR:
        if (strlen(value) >= o->size) {
            snprintf(err, err_len, "%s: value too long", source);
            return -1;
        }
        strcpy(field, value);
        return 0;
    case OPT_INT:
    case OPT_LONG: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0' || v < o->min || v > o->max) {
            snprintf(err, err_len, "%s: expected an integer in [%ld, %ld], got '%s'", source,
                     o->min, o->max, value);
            return -1;
        }
        if (o->type == OPT_INT)
            *(int *)field = (int)v;
        else
            *(long *)field = v;
        return 0;
    }
    case OPT_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !(v >= 0.0 && v <= 1.0)) {
            snprintf(err, err_len, "%s: expected a number in [0, 1], got '%s'", source, value);
            return -1;
        }
        *(double *)field = v;
        return 0;
    }
    case OPT_ENUM: {
        int v = enum_index(o->values, value);
        if (v < 0) {
            snprintf(err, err_len, "%s: expected one of %s, got '%s'", source, o->values, value);
            return -1;
        }
        *(int *)field = v;
        return 0;
    }
    case OPT_FLAG: {
        bool on = strcmp(value, "1") == 0 || strcmp(value, "true") == 0;
        if (!on && strcmp(value, "0") != 0 && strcmp(value, "false") != 0) {
            snprintf(err, err_len, "%s: expected 0/1/true/false, got '%s'", source, value);
            return -1;
        }
        *(bool *)field = on;
        return 0;
    }
    }
    return -1;
}

/* "max-batch-size" -> "INFERD_MAX_BATCH_SIZE" */
static void env_name(const char *flag, char *out, size_t out_len)
{
    size_t n = (size_t)snprintf(out, out_len, "INFERD_");
    for (const char *p = flag; *p && n + 1 < out_len; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static const struct option_spec *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, name, len) == 0)
            return &options[i];
    return NULL;
}

static int parse_args(struct inferd_config *cfg, int argc, char **argv, char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return CONFIG_HELP;
        if (strcmp(arg, "--version") == 0)
            return CONFIG_VERSION;
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument '%s' (see --help)", arg);
            return CONFIG_ERROR;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const struct option_spec *o = find_option(name, name_len);
        if (o == NULL) {
            snprintf(err, err_len, "unknown flag '%.*s' (see --help)", (int)(name_len + 2), arg);
            return CONFIG_ERROR;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (value == NULL && o->type == OPT_FLAG)
            value = "1";
        if (value == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, err_len, "--%s needs a value", o->flag);
                return CONFIG_ERROR;
            }
            value = argv[++i];
        }
        char source[64];
        snprintf(source, sizeof source, "--%s", o->flag);
        if (set_option(cfg, o, value, source, err, err_len) != 0)
            return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

int config_parse(struct inferd_config *cfg, int argc, char **argv, config_getenv_fn getenv_fn,
                 char *err, size_t err_len)
{
    config_defaults(cfg);
    for (size_t i = 0; getenv_fn && i < N_OPTIONS; i++) {
        char name[64];
        env_name(options[i].flag, name, sizeof name);
        const char *value = getenv_fn(name);
        if (value == NULL || *value == '\0')
            continue;
        if (set_option(cfg, &options[i], value, name, err, err_len) != 0)
            return CONFIG_ERROR;
    }
    return parse_args(cfg, argc, argv, err, err_len);
}

int config_resolve_devices(struct inferd_config *cfg, int cuda_count, char *err, size_t err_len)
{
    const char *spec = cfg->devices_spec;
    cfg->n_devices = 0;
    if (strcmp(spec, "cpu") == 0 || (strcmp(spec, "auto") == 0 && cuda_count == 0)) {
        cfg->devices[cfg->n_devices++] = CONFIG_DEVICE_CPU;
        return 0;
    }
    if (strcmp(spec, "auto") == 0) {
        for (int i = 0; i < cuda_count && i < CONFIG_MAX_DEVICES; i++)
            cfg->devices[cfg->n_devices++] = i;
        return 0;
    }
    const char *p = spec;
    while (*p) {
        char *end = NULL;
        errno = 0;
        long ordinal = strtol(p, &end, 10);
        if (errno || end == p || ordinal < 0 || (*end && *end != ',')) {
            snprintf(err, err_len,
                     "--devices: expected auto, cpu or GPU ordinals like 0,1; got '%s'", spec);
            return -1;
        }
        if (ordinal >= cuda_count) {
            snprintf(err, err_len, "--devices: GPU %ld requested but %d CUDA device(s) visible",
                     ordinal, cuda_count);
            return -1;
        }
        for (int i = 0; i < cfg->n_devices; i++) {
            if (cfg->devices[i] == (int)ordinal) {
                snprintf(err, err_len, "--devices: GPU %ld listed twice", ordinal);
                return -1;
            }
        }
        if (cfg->n_devices == CONFIG_MAX_DEVICES) {
            snprintf(err, err_len, "--devices: at most %d devices", CONFIG_MAX_DEVICES);
            return -1;
        }
        cfg->devices[cfg->n_devices++] = (int)ordinal;
        if (*end == ',' && end[1] == '\0') {
            snprintf(err, err_len, "--devices: trailing ',' in '%s'", spec);
            return -1;
        }
        p = *end ? end + 1 : end;
    }
    if (cfg->n_devices == 0) {
        snprintf(err, err_len, "--devices: empty list");
        return -1;
    }
    return 0;
}

static void format_default(const struct inferd_config *d, const struct option_spec *o, char *buf,
                           size_t len)
{
    const char *field = (const char *)d + o->offset;
    switch (o->type) {
    case OPT_STR: snprintf(buf, len, "%s", field[0] ? field : "none"); break;
    case OPT_INT: snprintf(buf, len, "%d", *(const int *)field); break;
    case OPT_LONG: snprintf(buf, len, "%ld", *(const long *)field); break;
    case OPT_DOUBLE: snprintf(buf, len, "%g", *(const double *)field); break;
    case OPT_FLAG: snprintf(buf, len, "off"); break;
    case OPT_ENUM: {
        int index = *(const int *)field;
        const char *p = o->values;
        for (int i = 0; i < index; i++)
            p += strcspn(p, "|") + 1;
        snprintf(buf, len, "%.*s", (int)strcspn(p, "|"), p);
        break;
    }
    }
}

void config_print_help(FILE *out, const char *argv0)
{
    struct inferd_config d;
    config_defaults(&d);
    fprintf(
        out,
        "Usage: %s [flags]\n"
        "HTTP and gRPC inference server for PyTorch models (TorchScript and AOTInductor .pt2).\n\n"
        "Every flag can also be set as an environment variable INFERD_<FLAG>\n"
        "(upper case, dashes to underscores); flags win.\n\n",
        argv0);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char def[64], env[64];
        format_default(&d, &options[i], def, sizeof def);
        env_name(options[i].flag, env, sizeof env);
        fprintf(out, "  --%-22s %s\n  %24s (default: %s; env %s)\n", options[i].flag,
                options[i].help, "", def, env);
    }
    fprintf(out, "  --%-22s %s\n  --%-22s %s\n", "help", "show this help", "version",
            "print the version");
}

const char *log_level_name(enum log_level level)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    return level <= LOG_ERROR ? names[level] : "?";
}
