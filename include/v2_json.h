/* v2_json.h - the KServe v2 protocol's JSON wire form and its binary tensor
 * data extension, on the wire-neutral binding (v2_binding.h): decode a body
 * (its JSON part and binary part) into an infer_request, and encode the
 * reply's outputs as JSON text then binary parts. Knows no HTTP: the
 * transport hands in the body and the one header the binary extension
 * defines, and sends what comes back. Runs alone in unit tests and fuzz
 * targets. */
#ifndef INFERD_V2_JSON_H
#define INFERD_V2_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"
#include "v2_binding.h"

/* The binary tensor data extension's header: the length of the JSON part
 * of the body, the rest being binary tensor data. */
#define V2_HEADER_LENGTH "Inference-Header-Content-Length"

/* A v2 request body as a transport received it. */
struct v2_body {
    const char *data; /* outlives the request: binary inputs may point into it */
    size_t len;
    const char *header_length; /* V2_HEADER_LENGTH's value, or NULL when absent */
    bool binary;               /* sent as application/octet-stream */
};

/* Decode body for the model cfg into req (inputs, n_inputs, and the image
 * prepare hook) and v2 (what the reply must hold); v2 starts zeroed.
 * Returns INFER_OK, or with err set INFER_INVALID, INFER_UNSUPPORTED (BYTES
 * for a non-image input) or INFER_INTERNAL (out of memory). The request's
 * batch rules are infer_request_check's, run after this. */
enum infer_status v2_json_decode(const struct model_config *cfg, long long max_image_pixels,
                                 const struct v2_body *body, struct v2_request *v2,
                                 struct infer_request *req, char *err, size_t err_len);

/* Encode req's outputs as v2 asked into sb: the JSON part (*json_len bytes)
 * then the binary parts; *any_binary says whether there are any. Returns
 * INFER_OK, or v2_outputs' status with err set; sb is then the caller's to
 * free. */
enum infer_status v2_json_encode(const struct v2_request *v2, const struct model_config *cfg,
                                 const struct infer_request *req, struct strbuf *sb,
                                 size_t *json_len, bool *any_binary, char *err, size_t err_len);

#endif
