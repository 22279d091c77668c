/* v2_json.h - the KServe v2 protocol's JSON wire form, with the binary
 * tensor data extension: a request body (its JSON part, and the binary
 * part the extension's header delimits) read into a v2 binder
 * (v2_binding.h), and a call's outputs written as a reply body. The
 * binding checks names, datatypes, shapes and sizes; this module reads and
 * writes the bytes, and the shared-memory parameters of inputs and outputs
 * that name a region. Knows no HTTP: the transport hands in the body and
 * the extension's header value, and sends what comes back. */
#ifndef INFERD_V2_JSON_H
#define INFERD_V2_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "shm_region.h"
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
    struct shm_table *shm;     /* registered regions; NULL: shared memory off */
};

/* Decode body for the model cfg into req (inputs, n_inputs, and the image
 * prepare hook) and v2 (what the reply must hold); v2 starts zeroed.
 * Returns 0, or -1 with err set and *status why (as v2_binding.h's). The
 * call's batch rules are infer_request_check's, run after this. */
int v2_json_decode(const struct model_config *cfg, long long max_image_pixels,
                   const struct v2_body *body, struct v2_request *v2, struct infer_request *req,
                   enum infer_status *status, char *err, size_t err_len);

/* Whether tensor (an input or a requested output, as JSON) names a
 * shared-memory region in its "parameters" (v2_shm.h's names): returns 1
 * with spec filled, 0 when it does not, -1 with err set when the
 * parameters are malformed or conflict (an input that also has "data" or
 * binary_data_size; an output that asks for classification or binary
 * data). name is the tensor's, for messages. */
int v2_json_shm_spec(const cJSON *tensor, bool input, const char *name, struct shm_spec *spec,
                     char *err, size_t err_len);

/* Encode req's outputs as v2 asked into sb: the JSON part (*json_len bytes)
 * then the binary parts; *any_binary says whether there are any. Returns
 * INFER_OK, or INFER_INVALID (classification of an output that is no
 * [batch, classes] float tensor) or INFER_INTERNAL (an asked-for output is
 * missing, out of memory) with err set; sb is then the caller's to free. */
enum infer_status v2_json_encode(const struct v2_request *v2, const struct model_config *cfg,
                                 const struct infer_request *req, struct strbuf *sb,
                                 size_t *json_len, bool *any_binary, char *err, size_t err_len);

#endif
