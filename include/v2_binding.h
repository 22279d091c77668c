/* v2_binding.h - the KServe v2 inference protocol bound to an inference
 * request, apart from any transport: decode a v2 request (its JSON part and
 * the binary tensor data extension's binary part; tensors, BYTES images,
 * requested outputs, classification, id) into an infer_request, and encode
 * the request's outputs as a v2 reply. Knows no HTTP: the transport hands in
 * the body and the one header the binary extension defines, and sends what
 * comes back. Runs alone in unit tests and fuzz targets. */
#ifndef INFERD_V2_BINDING_H
#define INFERD_V2_BINDING_H

#include <stdbool.h>
#include <stddef.h>

#include "image_batch.h"
#include "infer_request.h"
#include "model_repo.h"
#include "strbuf.h"

/* The binary tensor data extension's header: the length of the JSON part
 * of the body, the rest being binary tensor data. */
#define V2_HEADER_LENGTH "Inference-Header-Content-Length"

/* What a v2 request asked for, kept until its reply is encoded. */
struct v2_request {
    char id[256];
    bool has_id;
    int n_outputs;                    /* 0: every output */
    char outputs[MODEL_MAX_IO][64];   /* requested output names, in order */
    bool binary[MODEL_MAX_IO];        /* per requested output */
    bool binary_all;                  /* binary_data_output */
    int classification[MODEL_MAX_IO]; /* per requested output: top k as BYTES (0: off) */
    enum infer_status status;         /* the error's when not INFER_INVALID */
    struct image_request images;      /* BYTES inputs (encoded images) */
};

/* A v2 request body as a transport received it. */
struct v2_body {
    const char *data; /* outlives the request: binary inputs may point into it */
    size_t len;
    const char *header_length; /* V2_HEADER_LENGTH's value, or NULL when absent */
    bool binary;               /* sent as application/octet-stream */
};

/* Decode body for the model cfg into req (inputs, n_inputs, and the image
 * prepare hook) and v2 (what the reply must hold); v2 starts zeroed.
 * Returns 0, or -1 with err set and *status why: INFER_INVALID,
 * INFER_UNSUPPORTED (BYTES for a non-image input, an image format inferd
 * does not read), INFER_INTERNAL (out of memory). The request's batch rules
 * are infer_request_check's, run after this. */
int v2_decode(const struct model_config *cfg, long long max_image_pixels,
              const struct v2_body *body, struct v2_request *v2, struct infer_request *req,
              enum infer_status *status, char *err, size_t err_len);

/* Encode req's outputs as v2 asked into sb: the JSON part (*json_len bytes)
 * then the binary parts; *any_binary says whether there are any. Returns
 * INFER_OK, or INFER_INVALID (classification of an output that is no
 * [batch, classes] float tensor) or INFER_INTERNAL (an asked-for output is
 * missing) with err set; sb is then the caller's to free. */
enum infer_status v2_encode(const struct v2_request *v2, const struct model_config *cfg,
                            const struct infer_request *req, struct strbuf *sb, size_t *json_len,
                            bool *any_binary, char *err, size_t err_len);

/* Free v2 and the images it holds (NULL: nothing). */
void v2_request_free(struct v2_request *v2);

#endif
