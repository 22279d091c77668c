/* fuzz_v2_models.h - the model configurations the v2 fuzz targets decode
 * requests for (config.json texts, parsed by the daemon's own parser): one
 * per shape of input the binding handles. Shared by fuzz_v2_decode.c and
 * fuzz_v2_batch.c. */
#ifndef INFERD_FUZZ_V2_MODELS_H
#define INFERD_FUZZ_V2_MODELS_H

#include <stdlib.h>

#include "config.h"
#include "model_repo.h"
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

#endif
