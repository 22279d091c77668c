/* test_model_repo.c - config.json parsing (model_config_parse), model names,
 * the repository listing, and shape_fit (fitting decoded tensors to a
 * model's declared inputs). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "model_repo.h"
#include "shape.h"
#include "test_support.h"

/* ---- a scratch model repository ---- */

static char scratch[256];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int make_scratch(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/inferd-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(scratch) ? 0 : -1;
}

static int remove_scratch(void **state)
{
    (void)state;
    return nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0)
        fail_msg("mkdir %s failed", path);
}

/* ---- config.json ---- */

static const char *const valid_config =
    "{\"file\":\"net.pt\","
    " \"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[-1,1,28,28]},"
    "            {\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":[-1,4]}],"
    " \"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP16\",\"shape\":[-1,10]}],"
    " \"max_batch_size\":16, \"max_queue_delay_us\":500, \"instances\":3, \"warmup\":false}";

static void test_valid_config(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    struct model_config m;
    char err[256] = "";
    int rc =
        model_config_parse(valid_config, "/repo/mnist", "mnist", &defaults, &m, err, sizeof err);
    if (rc != 0)
        fail_msg("valid config refused: %s", err);
    assert_string_equal(m.name, "mnist");
    assert_string_equal(m.path, "/repo/mnist/net.pt");
    assert_int_equal(m.n_inputs, 2);
    assert_string_equal(m.inputs[0].name, "image");
    assert_int_equal(m.inputs[0].dtype, SHIM_FP32);
    assert_int_equal(m.inputs[0].ndim, 4);
    const int64_t image_shape[] = {-1, 1, 28, 28};
    assert_memory_equal(m.inputs[0].shape, image_shape, sizeof image_shape);
    assert_string_equal(m.inputs[1].name, "mask");
    assert_int_equal(m.inputs[1].dtype, SHIM_BOOL);
    assert_int_equal(m.inputs[1].ndim, 2);
    assert_int_equal(m.inputs[1].shape[1], 4);
    assert_int_equal(m.n_outputs, 1);
    assert_string_equal(m.outputs[0].name, "logits");
    assert_int_equal(m.outputs[0].dtype, SHIM_FP16);
    assert_int_equal(m.outputs[0].ndim, 2);
    assert_int_equal(m.outputs[0].shape[1], 10);
    assert_int_equal(m.max_batch_size, 16);
    assert_int_equal(m.max_queue_delay_us, 500);
    assert_int_equal(m.instances_per_device, 3);
    assert_false(m.warmup);
    assert_null(m.labels);
    assert_int_equal(m.n_labels, 0);
    model_config_free(&m);

    /* Every datatype name. */
    static const char *const names[] = {"BOOL",  "UINT8", "INT8", "INT16", "INT32",
                                        "INT64", "FP16",  "FP32", "FP64"};
    for (int i = 0; i < 9; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"%s\",\"shape\":[-1]}],"
                 "\"outputs\":[{\"name\":\"y\",\"datatype\":\"%s\",\"shape\":[-1]}]}",
                 names[i], names[i]);
        assert_int_equal(model_config_parse(json, "d", "m", &defaults, &m, err, sizeof err), 0);
        assert_int_equal(m.inputs[0].dtype, (enum shim_dtype)i);
        assert_string_equal(dtype_name(m.inputs[0].dtype), names[i]);
        model_config_free(&m);
    }
}

static void test_defaults_from_server(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    defaults.max_batch_size = 7;
    defaults.max_queue_delay_us = 1234;
    defaults.instances_per_device = 2;
    const char *json = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,3]}],"
                       "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1]}]}";
    struct model_config m;
    char err[256];
    assert_int_equal(model_config_parse(json, "/r/m", "m", &defaults, &m, err, sizeof err), 0);
    assert_string_equal(m.path, "/r/m/model.pt");
    assert_int_equal(m.max_batch_size, 7);
    assert_int_equal(m.max_queue_delay_us, 1234);
    assert_int_equal(m.instances_per_device, 2);
    assert_true(m.warmup);
    model_config_free(&m);

    /* The model's own settings win; 0 turns batching off. */
    const char *own = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[3]}],"
                      "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[]}],"
                      "\"max_batch_size\":0,\"warmup\":true}";
    assert_int_equal(model_config_parse(own, "/r/m", "m", &defaults, &m, err, sizeof err), 0);
    assert_int_equal(m.max_batch_size, 0);
    assert_int_equal(m.inputs[0].ndim, 1);
    assert_int_equal(m.inputs[0].shape[0], 3);
    assert_int_equal(m.outputs[0].ndim, 0);
    assert_true(m.warmup);
    model_config_free(&m);
}

static void test_image_input_and_top_k(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    const char *json = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,1,28,28],"
                       "\"image\":{\"color\":\"gray\",\"resize\":[28,28]}},"
                       "{\"name\":\"z\",\"datatype\":\"FP32\",\"shape\":[-1,2]}],"
                       "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1,10]}],"
                       "\"top_k\":5}";
    struct model_config m;
    char err[256];
    assert_int_equal(model_config_parse(json, "/r/m", "m", &defaults, &m, err, sizeof err), 0);
    assert_true(m.inputs[0].is_image);
    assert_int_equal(m.inputs[0].image.color, IMAGE_GRAY);
    assert_int_equal(m.inputs[0].image.resize_w, 28);
    assert_false(m.inputs[1].is_image);
    assert_int_equal(m.top_k, 5);
    model_config_free(&m);
}

static void expect_config_error(const char *json, const char *needle)
{
    struct inferd_config defaults;
    config_defaults(&defaults);
    struct model_config m;
    char err[256] = "";
    if (model_config_parse(json, "/r/m", "m", &defaults, &m, err, sizeof err) == 0) {
        model_config_free(&m);
        fail_msg("accepted config %s", json);
    }
    assert_null(m.labels);
    if (strstr(err, needle) == NULL)
        fail_msg("config %s: error '%s' does not mention '%s'", json, err, needle);
}

#define IN(shape) "\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":" shape "}]"
#define OUT "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1]}]"
#define IN_SPEC IN("[-1,3]")
#define OUT_SPEC OUT

static void test_config_errors(void **state)
{
    (void)state;
    expect_config_error("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,3,"
                        "9,9],\"image\":{\"color\":\"gray\",\"crop\":9}}]," OUT "}",
                        "input \"x\": image color \"gray\" has 1 channels");
    expect_config_error("{" IN("[-1,3]") "," OUT ",\"top_k\":-1}", "top_k");
    expect_config_error("", "not a JSON object");
    expect_config_error("[]", "not a JSON object");
    expect_config_error("{", "not a JSON object");
    expect_config_error("{" OUT "}", "inputs");
    expect_config_error("{\"inputs\":[]," OUT "}", "inputs");
    expect_config_error("{\"inputs\":{}," OUT "}", "inputs");
    expect_config_error("{" IN("[-1]") "}", "outputs");
    expect_config_error("{\"inputs\":[{\"datatype\":\"FP32\",\"shape\":[-1]}]," OUT "}", "name");
    expect_config_error("{\"inputs\":[{\"name\":5,\"datatype\":\"FP32\",\"shape\":[-1]}]," OUT "}",
                        "name");
    /* Datatypes. */
    expect_config_error(
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FLOAT32\",\"shape\":[-1]}]," OUT "}",
        "datatype");
    expect_config_error(
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"fp32\",\"shape\":[-1]}]," OUT "}", "datatype");
    expect_config_error("{\"inputs\":[{\"name\":\"x\",\"shape\":[-1]}]," OUT "}", "datatype");
    expect_config_error("{\"inputs\":[{\"name\":\"x\",\"datatype\":7,\"shape\":[-1]}]," OUT "}",
                        "datatype");
    expect_config_error("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"STRING\",\"shape\":[-1]}]," OUT
                        "}",
                        "datatype");
    /* Dims. */
    expect_config_error("{" IN("[-1,0]") "," OUT "}", "dims");
    expect_config_error("{" IN("[-1,-2]") "," OUT "}", "dims");
    expect_config_error("{" IN("[-1,1.5]") "," OUT "}", "dims");
    expect_config_error("{" IN("[-1,\"3\"]") "," OUT "}", "dims");
    expect_config_error("{" IN("[-1,null]") "," OUT "}", "dims");
    expect_config_error("{" IN("[-1,1e10]") "," OUT "}", "dims");
    expect_config_error("{" IN("[-1,1,1,1,1,1,1,1,1]") "," OUT "}", "shape");
    expect_config_error("{" IN("\"[-1]\"") "," OUT "}", "shape");
    expect_config_error("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\"}]," OUT "}", "shape");
    /* A batching model (max_batch_size from the server default, 32, or its
     * own) needs -1 first in every input. */
    expect_config_error("{" IN("[1,28,28]") "," OUT "}", "first dim must be -1");
    expect_config_error("{" IN("[28,-1]") "," OUT ",\"max_batch_size\":4}", "first dim must be -1");
    expect_config_error("{" IN("[]") "," OUT ",\"max_batch_size\":4}", "first dim must be -1");
    expect_config_error("{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[-1,2]},"
                        "{\"name\":\"b\",\"datatype\":\"FP32\",\"shape\":[2,2]}]," OUT "}",
                        "\"b\"");
    /* Integer settings. */
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":-1}", "max_batch_size");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":65537}", "max_batch_size");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":2.5}", "max_batch_size");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":\"8\"}", "max_batch_size");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_queue_delay_us\":60000001}",
                        "max_queue_delay_us");
    expect_config_error("{" IN("[-1]") "," OUT ",\"instances\":0}", "instances");
    expect_config_error("{" IN("[-1]") "," OUT ",\"instances\":65}", "instances");
    /* The file must stay inside the model folder. */
    expect_config_error("{\"file\":\"../other/model.pt\"," IN("[-1]") "," OUT "}", "file");
    expect_config_error("{\"file\":\"/etc/passwd\"," IN("[-1]") "," OUT "}", "file");
    expect_config_error("{\"file\":\"..\"," IN("[-1]") "," OUT "}", "file");
    expect_config_error("{\"file\":\"\"," IN("[-1]") "," OUT "}", "file");
    expect_config_error("{\"file\":3," IN("[-1]") "," OUT "}", "file");
    expect_config_error("{\"labels\":\"../labels.txt\"," IN("[-1]") "," OUT "}", "labels");
    expect_config_error("{\"labels\":[\"a\"]," IN("[-1]") "," OUT "}", "labels");
    /* Nine inputs is one too many. */
    char many[2048] = "{\"inputs\":[";
    for (int i = 0; i < MODEL_MAX_IO + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many),
                 "%s{\"name\":\"x%d\",\"datatype\":\"FP32\",\"shape\":[-1]}", i ? "," : "", i);
    strcat(many, "]," OUT "}");
    expect_config_error(many, "at most");
    /* A name that does not fit. */
    char longname[512];
    snprintf(longname, sizeof longname,
             "{\"inputs\":[{\"name\":\"%0100d\",\"datatype\":\"FP32\",\"shape\":[-1]}]," OUT "}",
             0);
    expect_config_error(longname, "name");
}

/* GPU speed settings: off by default, each parsed and checked. */
static void test_speed_settings(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    struct model_config m;
    char err[256] = "";
    assert_int_equal(model_config_parse("{" IN("[-1,3,8,8]") "," OUT "}", "/r/m", "m", &defaults,
                                        &m, err, sizeof err),
                     0);
    assert_int_equal(m.precision, SHIM_PRECISION_FP32);
    assert_false(m.channels_last);
    assert_false(m.cudnn_benchmark);
    assert_int_equal(m.n_cuda_graphs, 0);
    model_config_free(&m);
    int rc = model_config_parse(
        "{" IN("[-1,3,8,8]") "," OUT ",\"max_batch_size\":8,\"precision\":\"fp16\","
                             "\"channels_last\":true,\"cudnn_benchmark\":true,"
                             "\"cuda_graphs\":[1,2,4,8]}",
        "/r/m", "m", &defaults, &m, err, sizeof err);
    if (rc != 0)
        fail_msg("speed settings refused: %s", err);
    assert_int_equal(m.precision, SHIM_PRECISION_FP16);
    assert_true(m.channels_last);
    assert_true(m.cudnn_benchmark);
    assert_int_equal(m.n_cuda_graphs, 4);
    assert_int_equal(m.cuda_graphs[0], 1);
    assert_int_equal(m.cuda_graphs[3], 8);
    model_config_free(&m);
    expect_config_error("{" IN("[-1]") "," OUT ",\"precision\":\"bf16\"}", "precision");
    expect_config_error("{" IN("[-1]") "," OUT ",\"precision\":16}", "precision");
    expect_config_error("{" IN("[-1]") "," OUT ",\"channels_last\":\"yes\"}", "channels_last");
    expect_config_error("{" IN("[-1]") "," OUT ",\"cudnn_benchmark\":1}", "cudnn_benchmark");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[2,1]}",
                        "ascending");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[1,1]}",
                        "ascending");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[16]}",
                        "max batch size (8)");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[0]}",
                        "ascending");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[1.5]}",
                        "ascending");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":4}",
                        "cuda_graphs");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":64,\"cuda_graphs\":"
                                       "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}",
                        "at most 16");
    expect_config_error("{" IN("[-1,-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[1]}",
                        "fixed dims");
    /* Far outside int's range: refused, not cast (found by fuzz_model_config). */
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[1e300]}",
                        "ascending");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,\"cuda_graphs\":[-3e12]}",
                        "ascending");
    /* Batch sizes: measured by default, fixed by a list, padding auto. */
    assert_int_equal(model_config_parse("{" IN("[-1,3]") "," OUT ",\"max_batch_size\":8}", "/r/m",
                                        "m", &defaults, &m, err, sizeof err),
                     0);
    assert_true(m.measure_batch_sizes);
    assert_int_equal(m.n_preferred_batch_sizes, 0);
    assert_int_equal(m.pad_batches, MODEL_PAD_AUTO);
    model_config_free(&m);
    rc = model_config_parse(
        "{" IN("[-1,3]") "," OUT ",\"max_batch_size\":8,"
                         "\"measure_batch_sizes\":false,\"preferred_batch_sizes\":[2,4,8],"
                         "\"pad_batches\":true}",
        "/r/m", "m", &defaults, &m, err, sizeof err);
    if (rc != 0)
        fail_msg("batch sizes refused: %s", err);
    assert_false(m.measure_batch_sizes);
    assert_int_equal(m.n_preferred_batch_sizes, 3);
    assert_int_equal(m.preferred_batch_sizes[2], 8);
    assert_int_equal(m.pad_batches, MODEL_PAD_ON);
    model_config_free(&m);
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,"
                                       "\"preferred_batch_sizes\":[4,2]}",
                        "ascending");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,"
                                       "\"preferred_batch_sizes\":[16]}",
                        "max batch size (8)");
    expect_config_error("{" IN("[-1]") "," OUT ",\"max_batch_size\":8,"
                                       "\"preferred_batch_sizes\":[1e300]}",
                        "ascending");
    expect_config_error("{" IN("[3]") "," OUT ",\"max_batch_size\":0,"
                                      "\"preferred_batch_sizes\":[1]}",
                        "batching model");
    expect_config_error("{" IN("[-1]") "," OUT ",\"pad_batches\":\"yes\"}", "pad_batches");
    expect_config_error("{" IN("[-1]") "," OUT ",\"measure_batch_sizes\":1}",
                        "measure_batch_sizes");
    /* An empty list captures nothing, so variable dims are fine (the
     * effective config.json lists "cuda_graphs": [] for every model). */
    assert_int_equal(model_config_parse("{" IN("[-1,-1]") "," OUT ",\"cuda_graphs\":[]}", "/r/m",
                                        "m", &defaults, &m, err, sizeof err),
                     0);
    assert_int_equal(m.n_cuda_graphs, 0);
    model_config_free(&m);
}

/* The format comes from "platform" when given, else from the extension. */
static void test_platform(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    static const struct {
        const char *keys, *platform, *format;
    } cases[] = {
        {"", "pytorch_torchscript", "torchscript"},
        {"\"file\":\"m.pt2\",", "torch_aoti", "aoti"},
        {"\"file\":\"m.pt\",", "pytorch_torchscript", "torchscript"},
        {"\"file\":\"weights.bin\",", "pytorch_torchscript", "torchscript"},
        {"\"file\":\"m.bin\",\"platform\":\"torch_aoti\",", "torch_aoti", "aoti"},
        {"\"file\":\"m.pt2\",\"platform\":\"pytorch_torchscript\",", "pytorch_torchscript",
         "torchscript"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{%s" IN_SPEC "," OUT_SPEC "}", cases[i].keys);
        struct model_config m;
        char err[256];
        assert_int_equal(model_config_parse(json, "/r/m", "m", &defaults, &m, err, sizeof err), 0);
        assert_string_equal(m.platform, cases[i].platform);
        assert_string_equal(m.format, cases[i].format);
        model_config_free(&m);
    }
    expect_config_error("{\"platform\":\"onnx\"," IN_SPEC "," OUT_SPEC "}",
                        "unknown \"platform\" \"onnx\"");
    expect_config_error("{\"platform\":3," IN_SPEC "," OUT_SPEC "}",
                        "\"platform\" must be a string");
}

static void test_labels(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/labelled", scratch);
    make_dir(dir);
    write_file(dir, "labels.txt", "T-shirt\nTrouser\r\nPullover\n");
    struct inferd_config defaults;
    config_defaults(&defaults);
    struct model_config m;
    char err[256];
    const char *json = "{\"labels\":\"labels.txt\"," IN("[-1,4]") "," OUT "}";
    if (model_config_parse(json, dir, "labelled", &defaults, &m, err, sizeof err) != 0)
        fail_msg("labels refused: %s", err);
    assert_int_equal(m.n_labels, 3);
    assert_string_equal(m.labels[0], "T-shirt");
    assert_string_equal(m.labels[1], "Trouser");
    assert_string_equal(m.labels[2], "Pullover");
    model_config_free(&m);
    assert_null(m.labels);
    assert_int_equal(m.n_labels, 0);

    /* No newline at the end. */
    write_file(dir, "labels.txt", "cat\ndog");
    assert_int_equal(model_config_parse(json, dir, "labelled", &defaults, &m, err, sizeof err), 0);
    assert_int_equal(m.n_labels, 2);
    assert_string_equal(m.labels[1], "dog");
    model_config_free(&m);

    /* A blank line is an empty label that keeps later labels at their
     * class index; blank lines at the end are not labels. */
    write_file(dir, "labels.txt", "cat\n\ndog\r\n\r\nbird\rfish\n\n\r\n");
    assert_int_equal(model_config_parse(json, dir, "labelled", &defaults, &m, err, sizeof err), 0);
    assert_int_equal(m.n_labels, 6);
    const char *want[] = {"cat", "", "dog", "", "bird", "fish"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(m.labels[i], want[i]);
    model_config_free(&m);

    /* An empty file: no labels. */
    write_file(dir, "labels.txt", "\n");
    assert_int_equal(model_config_parse(json, dir, "labelled", &defaults, &m, err, sizeof err), 0);
    assert_int_equal(m.n_labels, 0);
    model_config_free(&m);

    /* A missing labels file is an error naming it. */
    const char *missing = "{\"labels\":\"nope.txt\"," IN("[-1,4]") "," OUT "}";
    assert_int_equal(model_config_parse(missing, dir, "labelled", &defaults, &m, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "nope.txt"));
}

/* Old-Mac line ends ("\r" only) are line ends too: the label array must be
 * sized for them (model_repo.c counts only '\n' when allocating). Run in a
 * child process so that heap corruption shows as this test failing rather
 * than the whole binary aborting. */
static void test_labels_with_cr_line_ends(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cr", scratch);
    make_dir(dir);
    write_file(dir, "labels.txt", "cat\rdog\rbird\rfish\rcow");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct inferd_config defaults;
        config_defaults(&defaults);
        struct model_config m;
        char err[256];
        const char *json = "{\"labels\":\"labels.txt\"," IN("[-1,4]") "," OUT "}";
        int code = 0;
        if (model_config_parse(json, dir, "cr", &defaults, &m, err, sizeof err) != 0) {
            fprintf(stderr, "labels refused: %s\n", err);
            _exit(2);
        }
        if (m.n_labels != 5 || strcmp(m.labels[0], "cat") != 0 || strcmp(m.labels[4], "cow") != 0) {
            fprintf(stderr, "got %d labels\n", m.n_labels);
            code = 3;
        }
        model_config_free(&m);
        _exit(code);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("parsing a labels file with \\r line ends crashed (signal %d): the labels "
                 "array is sized by counting only \\n",
                 WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("parsing a labels file with \\r line ends failed (exit %d; a sanitizer "
                 "report above, if any, says why)",
                 WEXITSTATUS(status));
}

static void test_model_config_load_and_list(void **state)
{
    (void)state;
    char repo[512], dir[600];
    snprintf(repo, sizeof repo, "%s/repo", scratch);
    make_dir(repo);
    static const char *const models[] = {"zeta", "alpha", "mid-1.0"};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/%s", repo, models[i]);
        make_dir(dir);
        write_file(dir, "config.json", "{" IN("[-1,2]") "," OUT "}");
    }
    snprintf(dir, sizeof dir, "%s/no-config", repo);
    make_dir(dir);
    snprintf(dir, sizeof dir, "%s/.hidden", repo);
    make_dir(dir);
    write_file(dir, "config.json", "{}");
    snprintf(dir, sizeof dir, "%s/bad name", repo);
    make_dir(dir);
    write_file(dir, "config.json", "{}");
    write_file(repo, "stray-file", "x");

    char names[8][MODEL_NAME_MAX];
    char err[256];
    assert_int_equal(model_repo_list(repo, names, 8, err, sizeof err), 3);
    assert_string_equal(names[0], "alpha");
    assert_string_equal(names[1], "mid-1.0");
    assert_string_equal(names[2], "zeta");
    assert_int_equal(model_repo_list(repo, names, 2, err, sizeof err), 2);

    snprintf(dir, sizeof dir, "%s/nowhere", scratch);
    assert_int_equal(model_repo_list(dir, names, 8, err, sizeof err), -1);
    assert_non_null(strstr(err, "nowhere"));

    struct inferd_config defaults;
    config_defaults(&defaults);
    struct model_config m;
    assert_int_equal(model_config_load(repo, "alpha", &defaults, &m, err, sizeof err), 0);
    assert_string_equal(m.name, "alpha");
    snprintf(dir, sizeof dir, "%s/alpha/model.pt", repo);
    assert_string_equal(m.path, dir);
    model_config_free(&m);
    assert_int_equal(model_config_load(repo, "no-config", &defaults, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "config.json"));
    assert_int_equal(model_config_load(repo, "..", &defaults, &m, err, sizeof err), -1);
    assert_int_equal(model_config_load(repo, "a/b", &defaults, &m, err, sizeof err), -1);
}

static void test_model_name_valid(void **state)
{
    (void)state;
    assert_true(model_name_valid("fashion_mnist"));
    assert_true(model_name_valid("a"));
    assert_true(model_name_valid("A-Z.0_9"));
    assert_true(model_name_valid("..."));
    assert_true(model_name_valid(".x"));
    assert_false(model_name_valid(""));
    assert_false(model_name_valid("."));
    assert_false(model_name_valid(".."));
    assert_false(model_name_valid("a/b"));
    assert_false(model_name_valid("../x"));
    assert_false(model_name_valid("a b"));
    assert_false(model_name_valid("a\\b"));
    assert_false(model_name_valid("a\nb"));
    assert_false(model_name_valid("caf\xc3\xa9"));
    assert_false(model_name_valid("a%2f"));
    char name[MODEL_NAME_MAX + 2];
    memset(name, 'x', sizeof name);
    name[MODEL_NAME_MAX - 1] = '\0'; /* 127 bytes */
    assert_true(model_name_valid(name));
    name[MODEL_NAME_MAX - 1] = 'x';
    name[MODEL_NAME_MAX] = '\0'; /* 128 bytes */
    assert_false(model_name_valid(name));
}

/* ---- shape_fit ---- */

static int fit_to_spec(const struct io_spec *spec, bool batching, struct tensor *t, char *err,
                       size_t err_len)
{
    return shape_fit(spec->name, spec->shape, spec->ndim, batching, t->shape, &t->ndim, err,
                     err_len);
}

static struct io_spec spec_of(const char *name, int ndim, const int64_t *shape)
{
    struct io_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "%s", name);
    s.dtype = SHIM_FP32;
    s.ndim = ndim;
    memcpy(s.shape, shape, (size_t)ndim * sizeof *shape);
    return s;
}

static struct tensor tensor_of(int ndim, const int64_t *shape)
{
    struct tensor t;
    assert_int_equal(tensor_alloc(&t, SHIM_FP32, ndim, shape), 0);
    return t;
}

static void expect_conform(const struct io_spec *spec, bool batching, int ndim,
                           const int64_t *shape, int want_ndim, const int64_t *want)
{
    struct tensor t = tensor_of(ndim, shape);
    size_t nbytes = t.nbytes;
    char err[256] = "";
    if (fit_to_spec(spec, batching, &t, err, sizeof err) != 0) {
        tensor_free(&t);
        fail_msg("refused: %s", err);
    }
    assert_int_equal(t.ndim, want_ndim);
    assert_memory_equal(t.shape, want, (size_t)want_ndim * sizeof *want);
    assert_int_equal(shape_numel(t.shape, t.ndim) * 4, (int64_t)nbytes); /* same data */
    tensor_free(&t);
}

static void expect_conform_error(const struct io_spec *spec, bool batching, int ndim,
                                 const int64_t *shape, const char *needle)
{
    struct tensor t = tensor_of(ndim, shape);
    char err[256] = "";
    int rc = fit_to_spec(spec, batching, &t, err, sizeof err);
    tensor_free(&t);
    if (rc == 0)
        fail_msg("accepted a tensor for %s (want error '%s')", spec->name, needle);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

#define S(...) ((const int64_t[]){__VA_ARGS__})

static void test_io_spec_conform(void **state)
{
    (void)state;
    struct io_spec img = spec_of("image", 4, S(-1, 1, 28, 28));
    /* Already the right rank. */
    expect_conform(&img, true, 4, S(3, 1, 28, 28), 4, S(3, 1, 28, 28));
    /* One sample without its batch dim gets one. */
    expect_conform(&img, true, 3, S(1, 28, 28), 4, S(1, 1, 28, 28));
    /* Flat: reshaped to [-1, 1, 28, 28]. */
    expect_conform(&img, true, 1, S(784), 4, S(1, 1, 28, 28));
    expect_conform(&img, true, 1, S(784 * 5), 4, S(5, 1, 28, 28));
    /* Not a whole number of samples. */
    expect_conform_error(&img, true, 1, S(785), "whole number");
    expect_conform_error(&img, true, 1, S(100), "whole number");
    /* Wrong rank. */
    expect_conform_error(&img, true, 2, S(28, 28), "rank");
    expect_conform_error(&img, true, 5, S(1, 1, 1, 28, 28), "rank");
    /* Wrong fixed dims. */
    expect_conform_error(&img, true, 4, S(2, 3, 28, 28), "image");
    expect_conform_error(&img, true, 4, S(2, 1, 28, 27), "[2,1,28,27]");
    expect_conform_error(&img, true, 3, S(1, 28, 27), "shape");
    expect_conform_error(&img, true, 3, S(2, 28, 28), "shape");

    /* A two-dim input: a 1-D sample is flat data, one sample's worth. */
    struct io_spec vec = spec_of("v", 2, S(-1, 4));
    expect_conform(&vec, true, 1, S(4), 2, S(1, 4));
    expect_conform(&vec, true, 1, S(12), 2, S(3, 4));
    expect_conform(&vec, true, 2, S(3, 4), 2, S(3, 4));
    expect_conform_error(&vec, true, 1, S(6), "whole number");
    expect_conform_error(&vec, true, 2, S(4, 3), "shape");
    expect_conform_error(&vec, true, 3, S(1, 3, 4), "rank");

    /* Variable inner dims: flat data cannot be shaped. */
    struct io_spec var = spec_of("seq", 3, S(-1, -1, 8));
    expect_conform_error(&var, true, 1, S(16), "variable");
    expect_conform(&var, true, 3, S(2, 5, 8), 3, S(2, 5, 8));
    expect_conform(&var, true, 2, S(5, 8), 3, S(1, 5, 8));
    expect_conform_error(&var, true, 3, S(2, 5, 7), "shape");

    /* A 1-D input takes 1-D data as is. */
    struct io_spec one = spec_of("ids", 1, S(-1));
    expect_conform(&one, true, 1, S(9), 1, S(9));
    expect_conform_error(&one, true, 2, S(1, 9), "rank");

    /* Not batching: fixed shapes, no batch dim added to a lower rank. */
    struct io_spec fixed = spec_of("f", 2, S(2, 3));
    expect_conform(&fixed, false, 2, S(2, 3), 2, S(2, 3));
    expect_conform(&fixed, false, 1, S(6), 2, S(2, 3));
    expect_conform_error(&fixed, false, 1, S(12), "shape");
    expect_conform_error(&fixed, false, 1, S(5), "whole number");
    expect_conform_error(&fixed, false, 2, S(3, 2), "shape");
    struct io_spec fixed3 = spec_of("g", 3, S(1, 2, 3));
    expect_conform_error(&fixed3, false, 2, S(2, 3), "rank");
    expect_conform(&fixed3, false, 1, S(6), 3, S(1, 2, 3));
}

/* ---- versions ---- */

static void test_version_policy(void **state)
{
    (void)state;
    struct inferd_config defaults;
    config_defaults(&defaults);
    const int disk[] = {1, 2, 5, 7};
    static const struct {
        const char *policy;
        int n;
        int served[4];
    } cases[] = {
        {"", 1, {7}},
        {"\"version_policy\":{\"latest\":{\"num_versions\":2}},", 2, {5, 7}},
        {"\"version_policy\":{\"latest\":{\"num_versions\":9}},", 4, {1, 2, 5, 7}},
        {"\"version_policy\":{\"all\":{}},", 4, {1, 2, 5, 7}},
        {"\"version_policy\":{\"specific\":{\"versions\":[2,3,7]}},", 2, {2, 7}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{%s" IN_SPEC "," OUT_SPEC "}", cases[i].policy);
        struct model_config m;
        char err[256];
        assert_int_equal(model_config_parse(json, "/r/m", "m", &defaults, &m, err, sizeof err), 0);
        int out[MODEL_MAX_VERSIONS];
        int n = model_version_select(&m.policy, disk, 4, out);
        assert_int_equal(n, cases[i].n);
        for (int k = 0; k < n; k++)
            assert_int_equal(out[k], cases[i].served[k]);
        model_config_free(&m);
    }
    expect_config_error("{\"version_policy\":{}," IN_SPEC "," OUT_SPEC "}", "\"version_policy\"");
    expect_config_error("{\"version_policy\":{\"latest\":{\"num_versions\":0}}," IN_SPEC
                        "," OUT_SPEC "}",
                        "\"num_versions\"");
    expect_config_error("{\"version_policy\":{\"specific\":{\"versions\":[3,1]}}," IN_SPEC
                        "," OUT_SPEC "}",
                        "ascending");
    expect_config_error("{\"version_policy\":{\"all\":{},\"latest\":{}}," IN_SPEC "," OUT_SPEC "}",
                        "\"version_policy\"");
}

static void test_version_folders(void **state)
{
    (void)state;
    char dir[600], sub[700];
    snprintf(dir, sizeof dir, "%s/versioned", scratch);
    make_dir(dir);
    static const char *const folders[] = {"10", "2", "1", "007", "x3", "0"};
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, folders[i]);
        make_dir(sub);
    }
    write_file(dir, "3", "a file, not a version folder");
    int v[8];
    bool flat = true;
    char err[256];
    assert_int_equal(model_repo_versions(dir, v, 8, &flat, err, sizeof err), 3);
    assert_false(flat);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 10);
    assert_int_equal(model_repo_versions(dir, v, 2, &flat, err, sizeof err), 2);
    assert_int_equal(v[0], 2); /* the newest two */
    assert_int_equal(v[1], 10);

    /* the model file of a version: model.pt, else model.pt2 (.pt2: aoti) */
    snprintf(sub, sizeof sub, "%s/2", dir);
    write_file(sub, "model.pt2", "x");
    snprintf(sub, sizeof sub, "%s/10", dir);
    write_file(sub, "model.pt", "x");
    write_file(sub, "model.pt2", "x");
    struct inferd_config defaults;
    config_defaults(&defaults);
    struct model_config m;
    const char *json = "{" IN_SPEC "," OUT_SPEC "}";
    assert_int_equal(model_config_parse_version(json, dir, 2, "v", &defaults, &m, err, sizeof err),
                     0);
    snprintf(sub, sizeof sub, "%s/2/model.pt2", dir);
    assert_string_equal(m.path, sub);
    assert_string_equal(m.format, "aoti");
    assert_int_equal(m.version, 2);
    model_config_free(&m);
    assert_int_equal(model_config_parse_version(json, dir, 10, "v", &defaults, &m, err, sizeof err),
                     0);
    snprintf(sub, sizeof sub, "%s/10/model.pt", dir);
    assert_string_equal(m.path, sub);
    assert_string_equal(m.format, "torchscript");
    model_config_free(&m);

    /* a flat folder is version 1 */
    snprintf(dir, sizeof dir, "%s/flat", scratch);
    make_dir(dir);
    write_file(dir, "model.pt", "x");
    assert_int_equal(model_repo_versions(dir, v, 8, &flat, err, sizeof err), 1);
    assert_true(flat);
    assert_int_equal(v[0], 1);
    assert_int_equal(model_config_parse_version(json, dir, 0, "f", &defaults, &m, err, sizeof err),
                     0);
    assert_int_equal(m.version, 1);
    snprintf(sub, sizeof sub, "%s/model.pt", dir);
    assert_string_equal(m.path, sub);
    model_config_free(&m);
    snprintf(dir, sizeof dir, "%s/nowhere", scratch);
    assert_int_equal(model_repo_versions(dir, v, 8, &flat, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_config),
        cmocka_unit_test(test_defaults_from_server),
        cmocka_unit_test(test_image_input_and_top_k),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_platform),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_speed_settings),
        cmocka_unit_test(test_model_config_load_and_list),
        cmocka_unit_test(test_model_name_valid),
        cmocka_unit_test(test_io_spec_conform),
        cmocka_unit_test(test_labels_with_cr_line_ends),
        cmocka_unit_test(test_version_policy),
        cmocka_unit_test(test_version_folders),
    };
    return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
