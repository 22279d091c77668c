/* codec_speed.c - JSON number throughput of inferd's codec against cJSON's
 * own, on the same 3x224x224 float32 tensor (150,528 numbers, ~1.4 MB):
 * decode (text -> float32) and encode (float32 -> shortest round-trip text),
 * MB/s of JSON text on one core. `make bench-codec` builds and runs it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json_numbers.h"
#include "strbuf.h"
#include "tensor.h"
#include "tensor_json.h"

#define N_VALUES (3 * 224 * 224)

static double seconds_since(uint64_t t0)
{
    return (double)(clock_now_ns() - t0) / 1e9;
}

/* Run fn(arg) repeatedly for about a second; return seconds per call. */
static double time_per_call(void (*fn)(void *), void *arg)
{
    int reps = 0;
    uint64_t t0 = clock_now_ns();
    do {
        fn(arg);
        reps++;
    } while (seconds_since(t0) < 1.0);
    return seconds_since(t0) / reps;
}

struct job {
    const char *text;
    size_t len;
    const struct tensor *tensor;
};

static void decode_inferd(void *arg)
{
    const struct job *j = arg;
    struct json_doc doc;
    char err[256];
    struct tensor t;
    if (json_doc_parse(j->text, j->len, &doc, err, sizeof err) != 0 ||
        tensor_json_from_array(json_doc_array(&doc, cJSON_GetObjectItem(doc.root, "data")),
                               SHIM_FP32, &t, err, sizeof err) != 0) {
        fprintf(stderr, "decode failed: %s\n", err);
        exit(1);
    }
    tensor_free(&t);
    json_doc_free(&doc);
}

static void decode_cjson(void *arg)
{
    const struct job *j = arg;
    cJSON *root = cJSON_ParseWithLength(j->text, j->len);
    float *out = malloc(N_VALUES * sizeof *out);
    const cJSON *v;
    size_t i = 0;
    if (root == NULL || out == NULL)
        exit(1);
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(root, "data")) out[i++] = (float)v->valuedouble;
    free(out);
    cJSON_Delete(root);
}

static void encode_inferd(void *arg)
{
    const struct job *j = arg;
    struct strbuf sb = {0};
    struct shim_tensor view = tensor_view(j->tensor);
    strbuf_puts(&sb, "{\"data\":");
    tensor_json_append(&sb, &view, 0, j->tensor->shape[0], false);
    strbuf_puts(&sb, "}");
    strbuf_free(&sb);
}

static void encode_cjson(void *arg)
{
    const struct job *j = arg;
    cJSON *root = cJSON_CreateObject();
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    const float *f = j->tensor->data;
    for (size_t i = 0; i < N_VALUES; i++)
        cJSON_AddItemToArray(data, cJSON_CreateNumber(f[i]));
    char *text = cJSON_PrintUnformatted(root);
    free(text);
    cJSON_Delete(root);
}

int main(void)
{
    int64_t shape[1] = {N_VALUES};
    struct tensor t;
    if (tensor_alloc(&t, SHIM_FP32, 1, shape) != 0)
        return 1;
    srand(1);
    for (size_t i = 0; i < N_VALUES; i++) /* pixel-like values, pixel/255 */
        ((float *)t.data)[i] = (float)(rand() % 256) / 255.0f;
    struct strbuf sb = {0};
    struct shim_tensor view = tensor_view(&t);
    strbuf_puts(&sb, "{\"data\":");
    tensor_json_append(&sb, &view, 0, N_VALUES, false);
    strbuf_puts(&sb, "}");
    struct job job = {sb.data, sb.len, &t};
    double mb = (double)sb.len / 1e6;
    double d_inferd = time_per_call(decode_inferd, &job);
    double d_cjson = time_per_call(decode_cjson, &job);
    double e_inferd = time_per_call(encode_inferd, &job);
    double e_cjson = time_per_call(encode_cjson, &job);
    printf("tensor: 3x224x224 FP32, %d numbers, %.2f MB of JSON\n", N_VALUES, mb);
    printf("| path | inferd ms | inferd MB/s | cJSON ms | cJSON MB/s | ratio |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    printf("| decode | %.2f | %.0f | %.2f | %.0f | %.1fx |\n", d_inferd * 1e3, mb / d_inferd,
           d_cjson * 1e3, mb / d_cjson, d_cjson / d_inferd);
    printf("| encode | %.2f | %.0f | %.2f | %.0f | %.1fx |\n", e_inferd * 1e3, mb / e_inferd,
           e_cjson * 1e3, mb / e_cjson, e_cjson / e_inferd);
    strbuf_free(&sb);
    tensor_free(&t);
    return 0;
}
