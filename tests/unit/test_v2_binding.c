/* test_v2_binding.c - the v2 protocol bound to a call, alone (no HTTP, no
 * model): JSON and binary inputs decode to the same tensors, datatypes are
 * converted only when every value fits, each client error gets its status,
 * the outputs encode as JSON, as binary parts and as classification
 * strings, and inputs and outputs bind to a shared-memory region. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "v2_json.h"

/* a FP32 [-1,4], b INT64 [-1,4] in; sum FP32 [-1,4], prod_sum FP32 [-1,1] out */
static const char two_io_config[] =
    "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[-1,4]},"
    "{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[-1,4]}],"
    "\"outputs\":[{\"name\":\"sum\",\"datatype\":\"FP32\",\"shape\":[-1,4]},"
    "{\"name\":\"prod_sum\",\"datatype\":\"FP32\",\"shape\":[-1,1]}],\"max_batch_size\":8}";

static struct model_config cfg;

static int setup(void **state)
{
    (void)state;
    struct inferd_config defaults;
    char err[256];
    config_defaults(&defaults);
    return model_config_parse(two_io_config, "/nonexistent/m", "m", &defaults, &cfg, err,
                              sizeof err);
}

/* One decode: json, then bin_len bytes of bin (NULL: no binary part and no
 * header). */
struct decoded {
    struct v2_request *v2;
    struct infer_request *req;
    enum infer_status status;
    char err[400];
    char *body;
    int rc;
};

static void decode(struct decoded *d, const char *json, const void *bin, size_t bin_len,
                   bool binary)
{
    size_t json_len = strlen(json);
    char header[32];
    snprintf(header, sizeof header, "%zu", json_len);
    memset(d, 0, sizeof *d);
    d->v2 = calloc(1, sizeof *d->v2);
    d->req = calloc(1, sizeof *d->req);
    d->body = malloc(json_len + bin_len + 1);
    assert_non_null(d->v2);
    assert_non_null(d->req);
    assert_non_null(d->body);
    memcpy(d->body, json, json_len);
    if (bin_len)
        memcpy(d->body + json_len, bin, bin_len);
    struct v2_body body = {d->body, json_len + bin_len, bin ? header : NULL, binary, NULL};
    d->status = INFER_OK;
    d->rc = v2_json_decode(&cfg, 1 << 20, &body, d->v2, d->req, &d->status, d->err, sizeof d->err);
}

static void release(struct decoded *d)
{
    infer_request_free_tensors(d->req);
    v2_request_free(d->v2);
    free(d->req);
    free(d->body);
}

static const float a_values[8] = {1, 2, 3, 4, 5, 6, 7, 8.5f};
static const int64_t b_values[8] = {-1, 0, 1, 2, 3, 4, 5, 1LL << 40};

static void check_inputs(const struct infer_request *req)
{
    assert_int_equal(req->n_inputs, 2);
    const struct tensor *a = &req->inputs[0], *b = &req->inputs[1];
    assert_int_equal(a->dtype, SHIM_FP32);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 4);
    assert_memory_equal(a->data, a_values, sizeof a_values);
    assert_int_equal(b->dtype, SHIM_INT64);
    assert_int_equal(b->ndim, 2);
    assert_memory_equal(b->data, b_values, sizeof b_values);
}

static void test_json_inputs(void **state)
{
    (void)state;
    struct decoded d;
    decode(&d,
           "{\"id\":\"r1\",\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[2,4],"
           "\"data\":[1,2,3,4,5,6,7,8.5]},{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[2,4],"
           "\"data\":[[-1,0,1,2],[3,4,5,1099511627776]]}],"
           "\"outputs\":[{\"name\":\"sum\",\"parameters\":{\"binary_data\":true}}]}",
           NULL, 0, false);
    assert_int_equal(d.rc, 0);
    check_inputs(d.req);
    assert_true(d.v2->has_id);
    assert_string_equal(d.v2->id, "r1");
    assert_int_equal(d.req->n_wanted, 1);
    assert_string_equal(d.req->wanted[0].name, "sum");
    assert_true(d.req->wanted[0].binary);
    char err[256];
    assert_int_equal(infer_request_check(d.req, cfg.max_batch_size, cfg.name, err, sizeof err), 0);
    assert_int_equal(d.req->samples, 2);
    release(&d);
}

static void test_binary_inputs(void **state)
{
    (void)state;
    uint8_t bin[sizeof a_values + sizeof b_values + 1];
    memcpy(bin, a_values, sizeof a_values);
    memcpy(bin + sizeof a_values, b_values, sizeof b_values);
    const char *json = "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[2,4],"
                       "\"parameters\":{\"binary_data_size\":32}},"
                       "{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[2,4],"
                       "\"parameters\":{\"binary_data_size\":64}}]}";
    struct decoded d;
    decode(&d, json, bin, 96, true);
    assert_int_equal(d.rc, 0);
    check_inputs(d.req); /* the same tensors as the JSON form */
    release(&d);

    decode(&d, json, bin, 95, true); /* one byte short */
    assert_int_equal(d.rc, -1);
    assert_int_equal(d.status, INFER_INVALID);
    assert_non_null(strstr(d.err, "truncated"));
    release(&d);

    decode(&d, json, bin, 97, true); /* one byte over */
    assert_int_equal(d.rc, -1);
    assert_int_equal(d.status, INFER_INVALID);
    assert_non_null(strstr(d.err, "after the last input"));
    release(&d);

    /* binary without the header that splits the body */
    struct v2_request *v2 = calloc(1, sizeof *v2);
    struct infer_request *req = calloc(1, sizeof *req);
    assert_non_null(v2);
    assert_non_null(req);
    struct v2_body body = {json, strlen(json), NULL, true, NULL};
    enum infer_status status = INFER_OK;
    char err[400];
    assert_int_equal(v2_json_decode(&cfg, 1 << 20, &body, v2, req, &status, err, sizeof err), -1);
    assert_int_equal(status, INFER_INVALID);
    assert_non_null(strstr(err, V2_HEADER_LENGTH));
    infer_request_free_tensors(req);
    v2_request_free(v2);
    free(req);
}

static void test_conversion(void **state)
{
    (void)state;
    struct decoded d;
    /* a sent as INT64 whole numbers: converted to the declared FP32 */
    decode(&d,
           "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"INT64\",\"shape\":[1,4],"
           "\"data\":[1,2,3,16777216]},{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[1,4],"
           "\"data\":[1,2,3,4]}]}",
           NULL, 0, false);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.req->inputs[0].dtype, SHIM_FP32);
    const float want[4] = {1, 2, 3, 16777216};
    assert_memory_equal(d.req->inputs[0].data, want, sizeof want);
    release(&d);
    /* b sent as FP32 with a fraction: an INT64 input cannot hold it */
    decode(&d,
           "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,2,3,4]},"
           "{\"name\":\"b\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,2.5,3,4]}]}",
           NULL, 0, false);
    assert_int_equal(d.rc, -1);
    assert_int_equal(d.status, INFER_INVALID);
    assert_true(d.err[0] != '\0');
    release(&d);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        enum infer_status status;
        const char *says;
    } cases[] = {
        {"[]", INFER_INVALID, "\"inputs\""},
        {"{\"inputs\":[{\"name\":\"zz\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,2,3,4]}]"
         "}",
         INFER_INVALID, "zz"},
        {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[1,5],"
         "\"data\":[1,2,3,4,5]},{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[1,4],"
         "\"data\":[1,2,3,4]}]}",
         INFER_INVALID, "a"},
        {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,2,3,4]}]}",
         INFER_INVALID, "missing input \"b\""},
        {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,2,3,4]},"
         "{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[1,4],\"data\":[1,2,3,4]}],"
         "\"outputs\":[{\"name\":\"nope\"}]}",
         INFER_INVALID, "nope"},
        {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,2,3,4]},"
         "{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[1,4],\"data\":[1,2,3,4]}],"
         "\"outputs\":[{\"name\":\"sum\",\"parameters\":{\"classification\":0}}]}",
         INFER_INVALID, "classification"},
        {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"aGk=\"]}]}",
         INFER_UNSUPPORTED, "BYTES"},
        {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[2,4],"
         "\"data\":[1,2,3,4,5,6,7,8]},{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[1,4],"
         "\"data\":[1,2,3,4]}]}",
         INFER_INVALID, "dim 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct decoded d;
        decode(&d, cases[i].json, NULL, 0, false);
        if (d.rc != -1 || d.status != cases[i].status || strstr(d.err, cases[i].says) == NULL)
            fail_msg("case %zu: rc %d, status %s, error '%s'", i, d.rc, infer_status_name(d.status),
                     d.err);
        release(&d);
    }
}

/* The binder fed directly, as a wire form other than JSON (protobuf's raw
 * contents and typed values) would: the same tensors, the same checks. */
static void test_binder_alone(void **state)
{
    (void)state;
    struct v2_request *v2 = calloc(1, sizeof *v2);
    struct infer_request *req = calloc(1, sizeof *req);
    assert_non_null(v2);
    assert_non_null(req);
    struct v2_binder b;
    char err[256];
    const int64_t shape[2] = {2, 4};
    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    /* a: raw bytes in FP32's layout */
    assert_int_equal(v2_bind_input(&b, "a", "FP32", err, sizeof err), 0);
    assert_int_equal(v2_bind_shape(&b, shape, 2, err, sizeof err), 0);
    assert_int_equal(v2_bind_raw(&b, a_values, sizeof a_values - 1, err, sizeof err), -1);
    assert_int_equal(b.status, INFER_INVALID);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(v2_bind_raw(&b, a_values, sizeof a_values, err, sizeof err), 0);
    assert_int_equal(v2_bind_input_end(&b, err, sizeof err), 0);
    /* b: typed values (a flat tensor of the sent type) */
    assert_int_equal(v2_bind_input(&b, "b", "INT64", err, sizeof err), 0);
    assert_int_equal(v2_bind_shape(&b, shape, 2, err, sizeof err), 0);
    struct tensor values;
    const int64_t flat[1] = {8};
    assert_int_equal(tensor_alloc(&values, SHIM_INT64, 1, flat), 0);
    memcpy(values.data, b_values, sizeof b_values);
    assert_int_equal(v2_bind_values(&b, &values, err, sizeof err), 0);
    assert_int_equal(v2_bind_input_end(&b, err, sizeof err), 0);
    assert_int_equal(v2_bind_output(&b, "sum", false, 3, err, sizeof err), 0);
    assert_int_equal(v2_bind_output(&b, "prod_sum", false, -1, err, sizeof err), -1);
    assert_non_null(strstr(err, "classification"));
    assert_int_equal(v2_bind_end(&b, err, sizeof err), 0);
    check_inputs(req);
    assert_int_equal(req->wanted[0].classification, 3);
    /* a second "a", and a shape too large for its bytes to be counted */
    assert_int_equal(v2_bind_input(&b, "a", "FP32", err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    const int64_t huge[3] = {1 << 30, 1 << 30, 1 << 30};
    infer_request_free_tensors(req);
    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    assert_int_equal(v2_bind_input(&b, "a", "FP32", err, sizeof err), 0);
    assert_int_equal(v2_bind_shape(&b, huge, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "too large"));
    /* a missing input */
    assert_int_equal(v2_bind_end(&b, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing input"));
    infer_request_free_tensors(req);
    v2_request_free(v2);
    free(req);
}

/* Bind one input of b by hand: name sent as datatype with shape, from raw
 * bytes. Returns what the first failing step returned (0: bound). */
static int bind_raw_input(struct v2_binder *b, const char *name, const char *datatype,
                          const int64_t *shape, int ndim, const void *data, size_t len, char *err,
                          size_t err_len)
{
    if (v2_bind_input(b, name, datatype, err, err_len) != 0 ||
        v2_bind_shape(b, shape, ndim, err, err_len) != 0 ||
        v2_bind_raw(b, data, len, err, err_len) != 0)
        return -1;
    return v2_bind_input_end(b, err, err_len);
}

/* The binder's rules as the protobuf form meets them: raw bytes of another
 * datatype converted (aligned bytes borrowed, not copied), BOOL bytes other
 * than 0 and 1, a shape the model does not take, a value count that is not
 * the shape's, an unknown output, and inputs whose batch sizes differ. */
static void test_binder_rules(void **state)
{
    (void)state;
    struct v2_request *v2 = calloc(1, sizeof *v2);
    struct infer_request *req = calloc(1, sizeof *req);
    assert_non_null(v2);
    assert_non_null(req);
    struct v2_binder b;
    char err[256];
    const int64_t two[2] = {2, 4}, three[2] = {3, 4}, wide[2] = {2, 5};
    static const float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const int32_t b32[8] = {1, -2, 3, -4, 5, -6, 7, -8}; /* INT32 for an INT64 input */
    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    assert_int_equal(bind_raw_input(&b, "a", "FP32", two, 2, a, sizeof a, err, sizeof err), 0);
    assert_int_equal(req->inputs[0].memory, TENSOR_BODY);
    assert_ptr_equal(req->inputs[0].data, a);
    assert_int_equal(bind_raw_input(&b, "b", "INT32", two, 2, b32, sizeof b32, err, sizeof err), 0);
    assert_int_equal(req->inputs[1].dtype, SHIM_INT64);
    assert_int_equal(((int64_t *)req->inputs[1].data)[7], -8);
    assert_int_equal(v2_bind_output(&b, "nope", true, 0, err, sizeof err), -1);
    assert_int_equal(b.status, INFER_INVALID);
    assert_int_equal(v2_bind_end(&b, err, sizeof err), 0);
    infer_request_free_tensors(req);

    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    static const uint8_t bools[8] = {0, 1, 2, 0, 0, 0, 0, 0};
    assert_int_equal(bind_raw_input(&b, "a", "BOOL", two, 2, bools, sizeof bools, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "BOOL"));
    float w[10] = {0};
    infer_request_free_tensors(req);
    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    assert_int_equal(bind_raw_input(&b, "a", "FP32", wide, 2, w, sizeof w, err, sizeof err), -1);
    assert_int_equal(b.status, INFER_INVALID);
    /* values: 7 for a shape of 8 */
    infer_request_free_tensors(req);
    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    assert_int_equal(v2_bind_input(&b, "a", "FP64", err, sizeof err), 0);
    assert_int_equal(v2_bind_shape(&b, two, 2, err, sizeof err), 0);
    struct tensor values;
    const int64_t seven[1] = {7};
    assert_int_equal(tensor_alloc(&values, SHIM_FP64, 1, seven), 0);
    memset(values.data, 0, values.nbytes);
    assert_int_equal(v2_bind_values(&b, &values, err, sizeof err), -1); /* taken over */
    assert_int_equal(b.status, INFER_INVALID);
    infer_request_free_tensors(req);

    /* batch sizes that differ: 2 and 3 */
    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    static const int64_t b64[12] = {0};
    assert_int_equal(bind_raw_input(&b, "a", "FP32", two, 2, a, sizeof a, err, sizeof err), 0);
    assert_int_equal(bind_raw_input(&b, "b", "INT64", three, 2, b64, sizeof b64, err, sizeof err),
                     0);
    assert_int_equal(v2_bind_end(&b, err, sizeof err), -1);
    assert_int_equal(b.status, INFER_INVALID);
    assert_non_null(strstr(err, "batch"));
    infer_request_free_tensors(req);
    v2_request_free(v2);
    free(req);
}

/* A request that ran: sum [2,4] and prod_sum [2,1] as the model's outputs. */
static void ran(struct infer_request *req)
{
    const int64_t sum_shape[2] = {2, 4}, prod_shape[2] = {2, 1};
    const float sum[8] = {0.1f, 0.9f, 0.3f, 0.2f, 4, 3, 2, 1}, prod[2] = {10, 20};
    memset(req, 0, sizeof *req);
    assert_int_equal(tensor_alloc(&req->outputs[0], SHIM_FP32, 2, sum_shape), 0);
    assert_int_equal(tensor_alloc(&req->outputs[1], SHIM_FP32, 2, prod_shape), 0);
    memcpy(req->outputs[0].data, sum, sizeof sum);
    memcpy(req->outputs[1].data, prod, sizeof prod);
    snprintf(req->output_names[0], sizeof req->output_names[0], "sum");
    snprintf(req->output_names[1], sizeof req->output_names[1], "prod_sum");
    req->n_outputs = 2;
}

/* The reply's "outputs" entry called name. */
static const cJSON *output(const cJSON *reply, const char *name)
{
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(reply, "outputs"))
    {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, name) == 0)
            return o;
    }
    fail_msg("no output %s", name);
    return NULL;
}

static void test_encode(void **state)
{
    (void)state;
    struct infer_request req;
    ran(&req);
    struct v2_request v2 = {0};
    snprintf(v2.id, sizeof v2.id, "r\"1");
    v2.has_id = true;
    struct strbuf sb = {0};
    size_t json_len = 0;
    bool any_binary = true;
    char err[256];
    assert_int_equal(v2_json_encode(&v2, &cfg, &req, &sb, &json_len, &any_binary, err, sizeof err),
                     INFER_OK);
    assert_false(any_binary);
    assert_int_equal(json_len, sb.len);
    cJSON *reply = cJSON_ParseWithLength(sb.data, sb.len);
    assert_non_null(reply);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(reply, "model_name")->valuestring, "m");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(reply, "id")->valuestring, "r\"1");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(output(reply, "sum"), "data");
    assert_int_equal(cJSON_GetArraySize(data), 8);
    assert_true((float)cJSON_GetArrayItem(data, 1)->valuedouble == 0.9f); /* shortest float32 */
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(output(reply, "prod_sum"), "shape")),
        2);
    cJSON_Delete(reply);
    strbuf_free(&sb);

    /* binary_data_output: the JSON part, then each output's bytes in order */
    v2.binary_all = true;
    sb = (struct strbuf){0};
    assert_int_equal(v2_json_encode(&v2, &cfg, &req, &sb, &json_len, &any_binary, err, sizeof err),
                     INFER_OK);
    assert_true(any_binary);
    assert_int_equal(sb.len, json_len + 32 + 8);
    assert_memory_equal(sb.data + json_len, req.outputs[0].data, 32);
    assert_memory_equal(sb.data + json_len + 32, req.outputs[1].data, 8);
    reply = cJSON_ParseWithLength(sb.data, json_len);
    assert_non_null(reply);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(output(reply, "sum"), "parameters");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(params, "binary_data_size")->valueint, 32);
    cJSON_Delete(reply);
    strbuf_free(&sb);
    infer_request_free_tensors(&req);
}

static void test_classification(void **state)
{
    (void)state;
    struct infer_request req;
    ran(&req);
    struct v2_request v2 = {0};
    req.n_wanted = 1;
    snprintf(req.wanted[0].name, sizeof req.wanted[0].name, "sum");
    req.wanted[0].classification = 2;
    struct strbuf sb = {0};
    size_t json_len = 0;
    bool any_binary;
    char err[256];
    assert_int_equal(v2_json_encode(&v2, &cfg, &req, &sb, &json_len, &any_binary, err, sizeof err),
                     INFER_OK);
    cJSON *reply = cJSON_ParseWithLength(sb.data, sb.len);
    assert_non_null(reply);
    const cJSON *sum = output(reply, "sum");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(sum, "datatype")->valuestring, "BYTES");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(sum, "data");
    assert_int_equal(cJSON_GetArraySize(data), 4); /* 2 rows x top 2 */
    assert_string_equal(cJSON_GetArrayItem(data, 0)->valuestring, "0.900000:1");
    assert_string_equal(cJSON_GetArrayItem(data, 1)->valuestring, "0.300000:2");
    assert_string_equal(cJSON_GetArrayItem(data, 2)->valuestring, "4.000000:0");
    assert_string_equal(cJSON_GetArrayItem(data, 3)->valuestring, "3.000000:1");
    cJSON_Delete(reply);
    strbuf_free(&sb);

    /* an asked-for output the model did not produce: the server's fault */
    snprintf(req.wanted[0].name, sizeof req.wanted[0].name, "gone");
    sb = (struct strbuf){0};
    assert_int_equal(v2_json_encode(&v2, &cfg, &req, &sb, &json_len, &any_binary, err, sizeof err),
                     INFER_INTERNAL);
    assert_non_null(strstr(err, "gone"));
    strbuf_free(&sb);

    /* classification of an integer output: the client's */
    tensor_free(&req.outputs[1]);
    const int64_t shape[2] = {2, 1};
    assert_int_equal(tensor_alloc(&req.outputs[1], SHIM_INT64, 2, shape), 0);
    snprintf(req.wanted[0].name, sizeof req.wanted[0].name, "prod_sum");
    sb = (struct strbuf){0};
    assert_int_equal(v2_json_encode(&v2, &cfg, &req, &sb, &json_len, &any_binary, err, sizeof err),
                     INFER_INVALID);
    assert_non_null(strstr(err, "cannot be classified"));
    strbuf_free(&sb);
    infer_request_free_tensors(&req);
}

/* Inputs and an output in a registered region, through the binder as any
 * wire form calls it: the input points into the mapping (TENSOR_SHARED)
 * and the region stays held until the request is freed. */
static void test_binder_shm(void **state)
{
    (void)state;
    char key[64], err[256];
    snprintf(key, sizeof key, "/inferd-test-binding-%d", (int)getpid());
    int fd = shm_open(key, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4096), 0);
    float *mine = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(mine != MAP_FAILED);
    for (int i = 0; i < 8; i++)
        mine[i] = (float)i;
    struct shm_table t;
    assert_int_equal(shm_table_init(&t, true, 4, 1 << 20), 0);
    assert_int_equal(shm_register_system(&t, "r", key, 0, 4096, err, sizeof err), SHM_OK);
    struct v2_request *v2 = calloc(1, sizeof *v2);
    struct infer_request *req = calloc(1, sizeof *req);
    assert_non_null(v2);
    assert_non_null(req);
    struct v2_binder b;
    const int64_t shape[2] = {2, 4};
    v2_bind_begin(&b, &cfg, 1 << 20, v2, req);
    b.shm = &t;
    assert_int_equal(v2_bind_input(&b, "a", "FP32", err, sizeof err), 0);
    assert_int_equal(v2_bind_shape(&b, shape, 2, err, sizeof err), 0);
    struct shm_spec wrong = {"r", 0, 31}, a = {"r", 0, 32}, sum = {"r", 1024, 32};
    assert_int_equal(v2_bind_shm_input(&b, &wrong, err, sizeof err), -1);
    assert_int_equal(b.status, INFER_INVALID);
    assert_int_equal(v2_bind_shm_input(&b, &a, err, sizeof err), 0);
    assert_int_equal(v2_bind_input_end(&b, err, sizeof err), 0);
    assert_int_equal(req->inputs[0].memory, TENSOR_SHARED);
    assert_true(((const float *)req->inputs[0].data)[7] == 7.0f);
    assert_int_equal(v2_bind_input(&b, "b", "INT64", err, sizeof err), 0);
    assert_int_equal(v2_bind_shape(&b, shape, 2, err, sizeof err), 0);
    struct shm_spec past = {"r", 4096 - 32, 64}, missing = {"q", 0, 64};
    assert_int_equal(v2_bind_shm_input(&b, &past, err, sizeof err), -1);
    assert_int_equal(v2_bind_shm_input(&b, &missing, err, sizeof err), -1);
    struct shm_spec bspec = {"r", 64, 64};
    assert_int_equal(v2_bind_shm_input(&b, &bspec, err, sizeof err), 0);
    assert_int_equal(v2_bind_input_end(&b, err, sizeof err), 0);
    /* An output in the region; one that also wants binary data may not be. */
    assert_int_equal(v2_bind_output(&b, "prod_sum", true, 0, err, sizeof err), 0);
    assert_int_equal(v2_bind_shm_output(&b, &sum, err, sizeof err), -1);
    assert_non_null(strstr(err, "binary_data"));
    req->n_wanted = 0;
    assert_int_equal(v2_bind_output(&b, "sum", false, 0, err, sizeof err), 0);
    assert_int_equal(v2_bind_shm_output(&b, &sum, err, sizeof err), 0);
    assert_int_equal(v2_bind_end(&b, err, sizeof err), 0);
    assert_non_null(req->prepare);
    assert_int_equal(req->prepare(req, req->prepare_arg), INFER_OK);
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, "r", err, sizeof err), SHM_BUSY);
    /* The model's output, written into the region by the plan. */
    req->n_outputs = 1;
    snprintf(req->output_names[0], sizeof req->output_names[0], "sum");
    assert_int_equal(tensor_alloc(&req->outputs[0], SHIM_FP32, 2, shape), 0);
    for (int i = 0; i < 8; i++)
        ((float *)req->outputs[0].data)[i] = 10.0f + (float)i;
    struct v2_output_plan plan[MODEL_MAX_IO];
    int n = 0;
    v2->binary_all = true;
    assert_int_equal(v2_plan_outputs(v2, req, plan, &n, err, sizeof err), INFER_OK);
    assert_int_equal(n, 1);
    assert_non_null(plan[0].shm);
    assert_false(plan[0].binary);
    assert_int_equal(v2_shm_output_write(plan[0].shm, plan[0].name, plan[0].t, err, sizeof err),
                     INFER_OK);
    assert_true(mine[256 + 7] == 17.0f);
    infer_request_free_tensors(req);
    v2_request_free(v2);
    free(req);
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, "r", err, sizeof err), SHM_OK);
    shm_table_destroy(&t);
    munmap(mine, 4096);
    close(fd);
    shm_unlink(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_inputs),    cmocka_unit_test(test_binary_inputs),
        cmocka_unit_test(test_conversion),     cmocka_unit_test(test_binder_alone),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_encode),
        cmocka_unit_test(test_classification), cmocka_unit_test(test_binder_shm),
        cmocka_unit_test(test_binder_rules),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
