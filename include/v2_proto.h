/* v2_proto.h - the KServe v2 protocol's protobuf wire form (gRPC's
 * ModelInferRequest / ModelInferResponse, proto/inference.proto) on the
 * wire-neutral binding (v2_binding.h): inputs from raw_input_contents or
 * typed contents, BYTES images, requested outputs and classification, the
 * id, inputs and outputs in shared-memory regions (each tensor's
 * shared_memory_* parameters); outputs into raw_output_contents. Knows no gRPC transport: it works
 * on messages and bytes, and runs alone in a fuzz target. */
#ifndef INFERD_V2_PROTO_H
#define INFERD_V2_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inference.pb-c.h"
#include "v2_binding.h"

/* Bind msg for the model cfg into req and v2 (starts zeroed), with shm the
 * registered regions (NULL: shared memory off). Tensor data may point into
 * msg, which must outlive req. Returns INFER_OK, or with err
 * set INFER_INVALID, INFER_UNSUPPORTED (BYTES for a non-image input) or
 * INFER_INTERNAL (out of memory). infer_request_check runs after this. */
enum infer_status v2_proto_decode(const struct model_config *cfg, long long max_image_pixels,
                                  struct shm_table *shm, const Inference__ModelInferRequest *msg,
                                  struct v2_request *v2, struct infer_request *req, char *err,
                                  size_t err_len);

/* req's outputs as v2 asked (one in a region written there: its entry
 * echoes the region's parameters and its raw_output_contents entry is
 * empty, so the entries stay in step with the outputs), packed as a ModelInferResponse, or with
 * stream as a ModelStreamInferResponse holding one, into *out (malloc'd, *len bytes). Returns
 * INFER_OK, or a status with err set (*out NULL). */
enum infer_status v2_proto_encode(const struct v2_request *v2, const struct model_config *cfg,
                                  const struct infer_request *req, bool stream, uint8_t **out,
                                  size_t *len, char *err, size_t err_len);

/* A ModelStreamInferResponse carrying only error_message, packed into *out
 * (malloc'd, *len bytes). Returns 0, or -1 when out of memory. */
int v2_proto_stream_error(const char *message, uint8_t **out, size_t *len);

/* Pack any message into *out (malloc'd, *len bytes). Returns 0, or -1 when
 * out of memory. */
int v2_proto_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len);

#endif
