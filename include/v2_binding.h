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
#include "v2_shm.h"

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
    int status;                       /* the error's HTTP status when not 400 */
    struct image_request images;      /* BYTES inputs (encoded images) */
    struct v2_shm shm;                /* holds on shared-memory regions, until freed */
};

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
 * Returns 0, or -1 with err set and *status the client's error: 400, 415
 * (BYTES for a non-image input), 500 (out of memory). The request's batch
 * rules are infer_request_check's, run after this. */
int v2_decode(const struct model_config *cfg, long long max_image_pixels,
              const struct v2_body *body, struct v2_request *v2, struct infer_request *req,
              int *status, char *err, size_t err_len);

/* Encode req's outputs as v2 asked into sb: the JSON part (*json_len bytes)
 * then the binary parts; *any_binary says whether there are any. Returns 0,
 * or an HTTP status (400: classification of an output that is no
 * [batch, classes] float tensor; 500: an asked-for output is missing) with
 * err set; sb is then the caller's to free. */
int v2_encode(const struct v2_request *v2, const struct model_config *cfg,
              const struct infer_request *req, struct strbuf *sb, size_t *json_len,
              bool *any_binary, char *err, size_t err_len);

/* Free v2, the images it holds and its holds on shared memory (NULL:
 * nothing). */
void v2_request_free(struct v2_request *v2);

#endif
