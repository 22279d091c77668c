/* grpc_reply.h - the answers the gRPC services (grpc_service.h,
 * grpc_shm.h) share: a protobuf-c message packed as a call's OK answer, and
 * INVALID_ARGUMENT for a request message that does not unpack. */
#ifndef INFERD_GRPC_REPLY_H
#define INFERD_GRPC_REPLY_H

#include <protobuf-c/protobuf-c.h>

#include "grpc_front.h"

/* Pack msg and answer call OK with it; when out of memory, answer
 * INTERNAL instead. */
void grpc_reply_message(struct grpc_front_call *call, const ProtobufCMessage *msg);

/* Answer call INVALID_ARGUMENT: the request is not a valid message of
 * type (its protobuf name, "ModelInferRequest"). */
void grpc_reply_invalid(struct grpc_front_call *call, const char *type);

#endif
