/* fuzz_v2_decode.c - libFuzzer target for the v2 request decoder alone
 * (v2_json and v2_binding: JSON part, binary part, BYTES images, requested outputs,
 * classification, parameters) and the batch rules after it
 * (infer_request_check). Input: byte 0 picks the model (fuzz_v2_models.h),
 * byte 1 the form (bit 0: an Inference-Header-Content-Length header, bit 1:
 * sent as binary, bit 2: the header's text is garbage), bytes 2-3 the
 * header's value (little-endian), the rest the body. An accepted request
 * has every declared input, each matching its declared shape, sized by the
 * checked helper (an image input's data waits for the prepare hook:
 * tensor_defer), and any borrowed bytes lie inside the body; a refused one
 * has a message and a 4xx/500 status. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_v2_models.h"
#include "v2_json.h"

/* The accepted request's inputs borrowed from the body lie inside it. */
static void check_in_body(const struct model_config *cfg, const struct infer_request *req,
                          const char *body, size_t len)
{
    for (int i = 0; i < cfg->n_inputs; i++) {
        const struct tensor *t = &req->inputs[i];
        if (t->memory == TENSOR_BODY && !cfg->inputs[i].is_image)
            CHECK((const char *)t->data >= body && t->nbytes <= len &&
                  (const char *)t->data - body <= (ptrdiff_t)(len - t->nbytes));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const struct model_config *cfg = &fuzz_v2_models()[data[0] % FUZZ_V2_N_MODELS];
    char header[32];
    if (data[1] & 4)
        snprintf(header, sizeof header, "%.*s", 3, (const char *)data + 1);
    else
        snprintf(header, sizeof header, "%u", (unsigned)(data[2] | data[3] << 8));
    size_t len = size - 4;
    /* An exact-size copy, so that ASan sees any read past the body. */
    char *body = malloc(len ? len : 1);
    struct v2_request *v2 = calloc(1, sizeof *v2);
    struct infer_request *req = calloc(1, sizeof *req);
    CHECK(body != NULL && v2 != NULL && req != NULL);
    memcpy(body, data + 4, len);
    struct v2_body in = {body, len, (data[1] & 1) ? header : NULL, (data[1] & 2) != 0, NULL};
    char err[400] = "";
    enum infer_status status = INFER_OK;
    int rc = v2_json_decode(cfg, FUZZ_V2_MAX_PIXELS, &in, v2, req, &status, err, sizeof err);
    if (rc != 0) {
        fuzz_v2_check_refused(status, err, sizeof err);
    } else {
        fuzz_v2_check_accepted(cfg, req);
        check_in_body(cfg, req, body, len);
        if (infer_request_check(req, cfg->max_batch_size, cfg->name, err, sizeof err) == 0) {
            CHECK(req->samples >= 1);
            CHECK(cfg->max_batch_size == 0 || req->samples <= cfg->max_batch_size);
        } else {
            CHECK(err[0] != '\0');
        }
        /* The worker's image decode, for the requests that carry images. */
        if (req->prepare != NULL && req->prepare(req, req->prepare_arg) != 0)
            CHECK(req->error[0] != '\0');
    }
    for (int i = 0; i < MODEL_MAX_IO; i++)
        tensor_free(&req->inputs[i]);
    v2_request_free(v2);
    free(req);
    free(body);
    return 0;
}
