/* grpc_service.h - the gRPC services inferd serves on its gRPC front end
 * (grpc_front.h): inference.GRPCInferenceService (the KServe v2 / Triton
 * protocol: health, metadata, ModelInfer and ModelStreamInfer through the
 * models' queues, ModelConfig, statistics, the repository; the shared
 * memory RPCs are grpc_shm.h's) and grpc.health.v1.Health. The gRPC
 * counterpart of the HTTP handlers (api.h): same lookups, same rules,
 * statuses mapped to gRPC's codes here. */
#ifndef INFERD_GRPC_SERVICE_H
#define INFERD_GRPC_SERVICE_H

#include <stdint.h>

#include "grpc_front.h"

/* The method table; handlers take a struct server * as the front's ctx. */
extern const struct grpc_method grpc_service_methods[];
extern const int grpc_service_n_methods;

struct server;

/* Give g its settings (grpc_front_init) to serve these services for srv and,
 * unless --grpc-port is 0, start it as one of srv's transports
 * (server_add_transport: drained and stopped with HTTP). Returns 0, or -1
 * with err set (nothing of it left running). */
int grpc_service_start(struct grpc_front *g, struct server *srv, char *err, size_t err_len);

/* A ModelStreamInferResponse with error_message (the front's
 * stream_error). Returns 0, or -1 when out of memory. */
int grpc_service_stream_error(const char *message, uint8_t **out, size_t *len);

#endif
