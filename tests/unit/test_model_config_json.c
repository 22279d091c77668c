/* test_model_config_json.c - the effective config.json (model_config_json):
 * defaults filled in, every setting written, and the text parses back to
 * the same configuration (parse, write, parse, write: the same text). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "model_config_json.h"
#include "model_repo.h"
#include "test_support.h"

static char dir[256];

static int make_dir(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/inferd-cfgjson-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return -1;
    char path[512];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs("cat\ndog\n", f);
    return fclose(f);
}

static int remove_dir(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    unlink(path);
    return rmdir(dir);
}

/* Parse json, write it, parse that, write again: both writes match.
 * Returns the first write (caller frees). */
static char *round_trip(const char *json, const struct inferd_config *defaults)
{
    struct model_config a, b;
    char err[256] = "";
    if (model_config_parse(json, dir, "m", defaults, &a, err, sizeof err) != 0)
        fail_msg("parse: %s", err);
    struct strbuf first = {0}, second = {0};
    assert_int_equal(model_config_json(&a, &first), 0);
    if (model_config_parse(first.data, dir, "m", defaults, &b, err, sizeof err) != 0)
        fail_msg("the written config does not parse back: %s\n%s", err, first.data);
    assert_int_equal(model_config_json(&b, &second), 0);
    assert_string_equal(first.data, second.data);
    assert_int_equal(a.n_labels, b.n_labels);
    model_config_free(&a);
    model_config_free(&b);
    strbuf_free(&second);
    return strbuf_detach(&first, NULL);
}

static const cJSON *get(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (item == NULL)
        fail_msg("no \"%s\" in the written config", key);
    return item;
}

/* A minimal config.json: the server's defaults appear in the answer. */
static void test_defaults_filled_in(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    defaults.max_batch_size = 7;
    defaults.max_queue_delay_us = 1234;
    defaults.instances_per_device = 3;
    char *text =
        round_trip("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,4]}],"
                   "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1,2]}]}",
                   &defaults);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    assert_string_equal(get(root, "name")->valuestring, "m");
    assert_string_equal(get(root, "file")->valuestring, "model.pt");
    assert_string_equal(get(root, "platform")->valuestring, "pytorch_torchscript");
    assert_int_equal(get(root, "max_batch_size")->valueint, 7);
    assert_int_equal(get(root, "max_queue_delay_us")->valueint, 1234);
    assert_int_equal(get(root, "instances")->valueint, 3);
    assert_true(cJSON_IsTrue(get(root, "warmup")));
    assert_int_equal(get(root, "top_k")->valueint, 0);
    assert_string_equal(get(root, "precision")->valuestring, "fp32");
    assert_true(cJSON_IsFalse(get(root, "channels_last")));
    assert_int_equal(cJSON_GetArraySize(get(root, "cuda_graphs")), 0);
    assert_true(cJSON_IsTrue(get(root, "measure_batch_sizes")));
    assert_int_equal(cJSON_GetArraySize(get(root, "preferred_batch_sizes")), 0);
    assert_string_equal(get(root, "pad_batches")->valuestring, "auto");
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "labels"));
    const cJSON *in = cJSON_GetArrayItem(get(root, "inputs"), 0);
    assert_string_equal(get(in, "name")->valuestring, "x");
    assert_string_equal(get(in, "datatype")->valuestring, "FP32");
    assert_int_equal(cJSON_GetArrayItem(get(in, "shape"), 0)->valueint, -1);
    assert_int_equal(cJSON_GetArrayItem(get(in, "shape"), 1)->valueint, 4);
    cJSON_Delete(root);
    free(text);
}

/* Every setting the file may hold, image preprocessing included. */
static void test_everything(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    const char *json =
        "{\"file\":\"net.pt\",\"inputs\":[{\"name\":\"img\",\"datatype\":\"FP32\","
        "\"shape\":[-1,3,224,224],\"image\":{\"color\":\"rgb\",\"resize\":256,\"crop\":224,"
        "\"mean\":[0.485,0.456,0.406],\"std\":[0.229,0.224,0.225],\"normalize\":\"device\"}},"
        "{\"name\":\"extra\",\"datatype\":\"INT64\",\"shape\":[-1]}],"
        "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP16\",\"shape\":[-1,1000]}],"
        "\"max_batch_size\":8,\"max_queue_delay_us\":0,\"instances\":2,\"labels\":\"classes.txt\","
        "\"top_k\":5,\"warmup\":false,\"precision\":\"fp16\",\"channels_last\":true,"
        "\"cudnn_benchmark\":true,\"cuda_graphs\":[1,4,8],\"measure_batch_sizes\":false,"
        "\"preferred_batch_sizes\":[1,2,8],\"pad_batches\":false,"
        "\"version_policy\":{\"specific\":{\"versions\":[2,5]}}}";
    char *text = round_trip(json, &defaults);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    assert_string_equal(get(root, "file")->valuestring, "net.pt");
    assert_string_equal(get(root, "labels")->valuestring, "classes.txt");
    assert_int_equal(get(root, "max_batch_size")->valueint, 8);
    assert_int_equal(get(root, "max_queue_delay_us")->valueint, 0);
    assert_int_equal(get(root, "top_k")->valueint, 5);
    const cJSON *specific = get(get(get(root, "version_policy"), "specific"), "versions");
    assert_int_equal(cJSON_GetArraySize(specific), 2);
    assert_int_equal(cJSON_GetArrayItem(specific, 1)->valueint, 5);
    assert_true(cJSON_IsFalse(get(root, "warmup")));
    assert_string_equal(get(root, "precision")->valuestring, "fp16");
    assert_true(cJSON_IsTrue(get(root, "cudnn_benchmark")));
    assert_int_equal(cJSON_GetArrayItem(get(root, "cuda_graphs"), 2)->valueint, 8);
    assert_true(cJSON_IsFalse(get(root, "measure_batch_sizes")));
    assert_int_equal(cJSON_GetArrayItem(get(root, "preferred_batch_sizes"), 2)->valueint, 8);
    assert_true(cJSON_IsFalse(get(root, "pad_batches")));
    const cJSON *image = get(cJSON_GetArrayItem(get(root, "inputs"), 0), "image");
    assert_string_equal(get(image, "color")->valuestring, "rgb");
    assert_int_equal(get(image, "resize")->valueint, 256);
    assert_int_equal(cJSON_GetArrayItem(get(image, "crop"), 1)->valueint, 224);
    assert_true(get(image, "scale")->valuedouble == 1.0 / 255.0); /* the default, exactly */
    assert_true(cJSON_GetArrayItem(get(image, "std"), 2)->valuedouble == 0.225);
    assert_string_equal(get(image, "layout")->valuestring, "NCHW");
    /* Normalised on the device: the config shows the model's datatype (the
     * requests' is UINT8, in the v2 metadata). */
    assert_string_equal(get(image, "normalize")->valuestring, "device");
    assert_string_equal(get(cJSON_GetArrayItem(get(root, "inputs"), 0), "datatype")->valuestring,
                        "FP32");
    assert_null(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(get(root, "inputs"), 1), "image"));
    cJSON_Delete(root);
    free(text);

    /* A gray NHWC image resized to an exact size, and a .pt2 package. */
    json = "{\"file\":\"m.pt2\",\"inputs\":[{\"name\":\"i\",\"datatype\":\"UINT8\",\"shape\":[28,"
           "28,1],\"image\":{\"color\":\"gray\",\"resize\":[28,28],\"layout\":\"NHWC\"}}],"
           "\"outputs\":[{\"name\":\"o\",\"datatype\":\"FP32\",\"shape\":[10]}],"
           "\"max_batch_size\":0}";
    text = round_trip(json, &defaults);
    root = cJSON_Parse(text);
    assert_string_equal(get(root, "platform")->valuestring, "torch_aoti");
    image = get(cJSON_GetArrayItem(get(root, "inputs"), 0), "image");
    assert_int_equal(cJSON_GetArrayItem(get(image, "resize"), 0)->valueint, 28);
    assert_string_equal(get(image, "layout")->valuestring, "NHWC");
    assert_int_equal(cJSON_GetArraySize(get(image, "mean")), 1);
    assert_string_equal(get(image, "normalize")->valuestring, "host");
    cJSON_Delete(root);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_filled_in),
        cmocka_unit_test(test_everything),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
