/* fuzz_v2_models.h - the model configurations the v2 fuzz targets decode
 * requests for (config.json texts, parsed by the daemon's own parser): one
 * per shape of input the binding handles, and the checks every decoder's
 * outcome must pass against them. Shared by fuzz_v2_decode.c,
 * fuzz_v2_batch.c and fuzz_grpc_decode.c. */
#ifndef INFERD_FUZZ_V2_MODELS_H
#define INFERD_FUZZ_V2_MODELS_H

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "infer_request.h"
#include "model_repo.h"
#include "shape.h"
#include "test_support.h"

static const char *const fuzz_v2_configs[] = {
    /* fashion_mnist's: a gray image input, fixed dims */
    "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[-1,1,28,28],"
    "\"image\":{\"color\":\"gray\",\"resize\":[28,28],\"scale\":0.0039}}],"
    "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[-1,10]}],"
    "\"max_batch_size\":32}",
    /* two variable dims (the wrapping-size crash) */
    "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,1,-1,-1]}],"
    "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1,1]}],\"max_batch_size\":8}",
    /* two inputs of two types, two outputs */
    "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[-1,4]},"
    "{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[-1,4]}],"
    "\"outputs\":[{\"name\":\"sum\",\"datatype\":\"FP32\",\"shape\":[-1,4]},"
    "{\"name\":\"prod_sum\",\"datatype\":\"FP32\",\"shape\":[-1,1]}],\"max_batch_size\":8}",
    /* an rgb image resized by its short side, no crop: variable output size */
    "{\"inputs\":[{\"name\":\"img\",\"datatype\":\"FP32\",\"shape\":[-1,3,-1,-1],"
    "\"image\":{\"color\":\"rgb\",\"resize\":8}}],"
    "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1,3]}],\"max_batch_size\":4}",
    /* a model that does not batch */
    "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[3]}],"
    "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[3]}],\"max_batch_size\":0}",
};
#define FUZZ_V2_N_MODELS ((int)(sizeof fuzz_v2_configs / sizeof fuzz_v2_configs[0]))

/* The image pixel limit the targets decode with: small, to keep runs fast. */
#define FUZZ_V2_MAX_PIXELS 4096

/* The parsed configurations, built once (the fuzzer's process is single
 * threaded). */
static struct model_config *fuzz_v2_models(void)
{
    static struct model_config models[FUZZ_V2_N_MODELS];
    static int ready;
    if (!ready) {
        struct inferd_config defaults;
        config_defaults(&defaults);
        for (int i = 0; i < FUZZ_V2_N_MODELS; i++) {
            char err[256];
            CHECK(model_config_parse(fuzz_v2_configs[i], "/nonexistent/m", "m", &defaults,
                                     &models[i], err, sizeof err) == 0);
        }
        ready = 1;
    }
    return models;
}

/* A request the decoder accepted for cfg: it has every declared input, each
 * of its declared type, matching its declared shape and sized by the
 * checked helper, with its data (an image input's may wait for the prepare
 * hook: tensor_defer). Aborts otherwise. */
static inline void fuzz_v2_check_accepted(const struct model_config *cfg,
                                          const struct infer_request *req)
{
    CHECK(req->n_inputs == cfg->n_inputs);
    for (int i = 0; i < cfg->n_inputs; i++) {
        const struct tensor *t = &req->inputs[i];
        CHECK(t->data != NULL || (cfg->inputs[i].is_image && tensor_pending(t)));
        CHECK(t->dtype == cfg->inputs[i].dtype);
        CHECK(shape_matches(cfg->inputs[i].shape, cfg->inputs[i].ndim, t->shape, t->ndim));
        size_t bytes;
        CHECK(shape_size(t->shape, t->ndim, dtype_size(t->dtype), NULL, &bytes) == 0);
        CHECK(bytes == t->nbytes);
    }
}

/* A request the decoder refused with status and its message err (a buffer
 * of err_len bytes): the message is there and fits, the status is one a
 * decoder gives. Aborts otherwise. */
static inline void fuzz_v2_check_refused(enum infer_status status, const char *err,
                                         size_t err_len)
{
    CHECK(err[0] != '\0' && strlen(err) < err_len);
    CHECK(status == INFER_INVALID || status == INFER_UNSUPPORTED || status == INFER_INTERNAL);
}

#endif
