/* config.h - server-wide settings: command-line flags, their INFERD_*
 * environment equivalents (flags win) and their defaults. */
#ifndef INFERD_CONFIG_H
#define INFERD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_DEVICES 16
#define CONFIG_DEVICE_CPU (-1)

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum batch_wait { BATCH_WAIT_ADAPTIVE, BATCH_WAIT_ALWAYS };
/* Who changes the served models at run time (Triton's names). */
enum control_mode { CONTROL_NONE, CONTROL_POLL, CONTROL_EXPLICIT };

struct inferd_config {
    char host[256];
    int port;
    char model_repository[1024];
    char default_model[256];
    char devices_spec[256];          /* as given: auto | cpu | 0,1,.. */
    int devices[CONFIG_MAX_DEVICES]; /* resolved later by the server */
    int n_devices;
    int instances_per_device;
    int http_threads;
    int max_batch_size;
    long max_queue_delay_us;
    enum batch_wait batch_wait; /* adaptive: no wait when no companion is due */
    int max_queue;
    long max_body_bytes;
    long max_image_pixels;
    int max_connections;             /* open HTTP connections in all */
    int max_connections_per_address; /* ... from one client address */
    int header_timeout_s;            /* accept to a complete request header */
    int body_timeout_s;              /* a complete header to a complete body */
    long request_timeout_ms;         /* 0: no deadline */
    int drain_timeout_s;
    double gpu_memory_fraction; /* 0: no cap */
    enum log_format log_format;
    enum log_level log_level;
    bool health_check;            /* client mode: probe /v2/health/ready and exit */
    char api_key_file[1024];      /* empty: no keys */
    bool metrics_need_key;        /* /metrics needs a key too */
    char cors_allow_origin[2048]; /* empty: no CORS; "*" or a list */
    enum control_mode model_control_mode;
    int repository_poll_s;       /* poll mode: seconds between rescans */
    char admin_token_file[1024]; /* explicit mode: the control endpoints' token */
    bool shared_memory;          /* the shared memory extensions */
    int shared_memory_max_regions;
    long shared_memory_max_bytes; /* all regions together */
    int grpc_port;                /* 0: no gRPC listener */
    int grpc_threads;             /* completion queue threads */
    char grpc_tls_cert[1024];     /* PEM certificate chain: gRPC over TLS (with the key) */
    char grpc_tls_key[1024];      /* PEM private key */
};

enum config_result {
    CONFIG_OK = 0,
    CONFIG_HELP = 1,    /* --help was asked for: print usage, exit 0 */
    CONFIG_VERSION = 2, /* --version */
    CONFIG_ERROR = -1,  /* err holds the reason */
};

/* getenv-like lookup, injectable for tests. */
typedef const char *(*config_getenv_fn)(const char *name);

void config_defaults(struct inferd_config *cfg);

/* Fill cfg from defaults, then environment (via getenv_fn, may be NULL),
 * then argv. Returns a config_result; on CONFIG_ERROR err names the flag. */
int config_parse(struct inferd_config *cfg, int argc, char **argv, config_getenv_fn getenv_fn,
                 char *err, size_t err_len);

/* Parse a --devices value into cfg->devices; "auto" resolves using
 * cuda_count (0 means CPU). Returns 0 or -1 with err set. */
int config_resolve_devices(struct inferd_config *cfg, int cuda_count, char *err, size_t err_len);

void config_print_help(FILE *out, const char *argv0);

const char *log_level_name(enum log_level level);

#endif
