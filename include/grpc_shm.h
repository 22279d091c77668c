/* grpc_shm.h - the shared memory RPCs of inference.GRPCInferenceService
 * (Status, Register and Unregister for system and CUDA regions) on the
 * server's region table: the gRPC counterpart of api_shm.c, with the same
 * checks and messages, statuses mapped to gRPC's codes here. Handlers for
 * grpc_service.c's method table (ctx: a struct server *). */
#ifndef INFERD_GRPC_SHM_H
#define INFERD_GRPC_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "grpc_front.h"

void grpc_shm_system_status(struct grpc_front_call *call, const uint8_t *msg, size_t len);
void grpc_shm_system_register(struct grpc_front_call *call, const uint8_t *msg, size_t len);
void grpc_shm_system_unregister(struct grpc_front_call *call, const uint8_t *msg, size_t len);
void grpc_shm_cuda_status(struct grpc_front_call *call, const uint8_t *msg, size_t len);
void grpc_shm_cuda_register(struct grpc_front_call *call, const uint8_t *msg, size_t len);
void grpc_shm_cuda_unregister(struct grpc_front_call *call, const uint8_t *msg, size_t len);

#endif
