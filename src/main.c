/* main.c - inferd's entry point: flags, signals and the server's life:
 * start, re-read the API keys on SIGHUP, wait for SIGTERM or SIGINT, drain,
 * exit 0. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "image.h"
#ifndef INFERD_NO_GRPC
#include "grpc_service.h"
#endif
#include "health_probe.h"
#include "log.h"
#include "server.h"
#include "version.h"

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

/* libgomp (libtorch's OpenMP) reads OMP_WAIT_POLICY once, when it is loaded,
 * before main runs. Its default lets idle intra-op threads spin, which takes
 * the CPU from the HTTP threads on a small machine; passive waiting measured
 * faster end to end (bench/RESULTS.md). Unless the user chose a policy, set
 * PASSIVE and re-execute once. Returns only when no re-exec happened. */
static void prefer_passive_openmp(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") != NULL)
        return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the default policy */
}

int main(int argc, char **argv)
{
    struct inferd_config cfg;
    char err[512] = "";
    switch (config_parse(&cfg, argc, argv, env_lookup, err, sizeof err)) {
    case CONFIG_HELP: config_print_help(stdout, argv[0]); return 0;
    case CONFIG_VERSION: printf("inferd %s\n", INFERD_VERSION); return 0;
    case CONFIG_ERROR: fprintf(stderr, "inferd: %s\n", err); return 2;
    default: break;
    }
    if (cfg.health_check) {
        int status = health_probe(cfg.port, 2000);
        printf("ready: %d\n", status);
        return status == 200 ? 0 : 1;
    }
    prefer_passive_openmp(argv);
    bool malloc_tuned = image_tune_malloc() == 0;
    /* Reloads start new threads; with glibc's default (8 arenas per core)
     * each may take a fresh malloc arena, and memory that outlives a
     * version (libtorch's caches) pins pages in each: RSS then grows by
     * several MB per arena over the first reloads. With model control on,
     * two arenas keep it flat (tests/integration/test_model_leak.py), on
     * any number of cores; MALLOC_ARENA_MAX, when set, decides instead. */
    if (cfg.model_control_mode != CONTROL_NONE && getenv("MALLOC_ARENA_MAX") == NULL)
        mallopt(M_ARENA_MAX, 2);

    /* Block the stop signals in every thread; main waits for them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP); /* re-read the API key file */
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (log_start(cfg.log_level, cfg.log_format) != 0)
        fprintf(stderr, "inferd: logging synchronously (no writer thread)\n");
    log_msg(LOG_INFO, "inferd %s starting: repository %s, default model %s, devices %s",
            INFERD_VERSION, cfg.model_repository, cfg.default_model, cfg.devices_spec);
    if (!malloc_tuned) /* e.g. under a sanitizer's allocator */
        log_msg(LOG_DEBUG, "mallopt refused: image requests will page-fault more");

    struct server srv;
    if (server_start(&srv, &cfg, api_routes, api_n_routes, err, sizeof err) != 0) {
        log_msg(LOG_ERROR, "cannot start: %s", err);
        log_stop();
        fprintf(stderr, "inferd: %s\n", err);
        return 1;
    }
#ifndef INFERD_NO_GRPC
    struct grpc_front grpc = {0};
    if (grpc_service_start(&grpc, &srv, err, sizeof err) != 0) {
        log_msg(LOG_ERROR, "cannot start: %s", err);
        server_drain_and_stop(&srv);
        log_stop();
        fprintf(stderr, "inferd: %s\n", err);
        return 1;
    }
#else
    if (cfg.grpc_port != 0)
        log_msg(LOG_INFO, "built without gRPC (WITH_GRPC=0): --grpc-port is ignored");
#endif
    int sig = 0;
    while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP)
        server_reload(&srv);
    log_msg(LOG_INFO, "%s received: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    server_drain_and_stop(&srv);
    log_msg(LOG_INFO, "bye");
    log_stop();
    return 0;
}
