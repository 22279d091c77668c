/* grpc_reply.c - the gRPC services' shared answers (see grpc_reply.h). */
#include "grpc_reply.h"

#include <stdio.h>

#include "v2_proto.h"

void grpc_reply_message(struct grpc_front_call *call, const ProtobufCMessage *msg)
{
    uint8_t *body;
    size_t len;
    if (v2_proto_pack(msg, &body, &len) != 0) {
        grpc_front_answer(call, GF_INTERNAL, "out of memory", NULL, 0);
        return;
    }
    grpc_front_answer(call, GF_OK, NULL, body, len);
}

void grpc_reply_invalid(struct grpc_front_call *call, const char *type)
{
    char message[128];
    snprintf(message, sizeof message, "the request is not a valid %s message", type);
    grpc_front_answer(call, GF_INVALID_ARGUMENT, message, NULL, 0);
}
