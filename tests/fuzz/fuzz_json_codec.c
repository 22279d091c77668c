/* fuzz_json_codec.c - libFuzzer target for the JSON number codec.
 *
 * Feeds the input to json_doc_parse; converts every numeric array it found
 * to FP32 and INT64 (and BOOL, UINT8, FP16) with tensor_json_from_array;
 * encodes each tensor back with tensor_json_append (nested, flat, and a row
 * slice); and checks that what the encoder writes decodes back to the same
 * values. Also runs num_array_parse on the raw bytes, and checks that
 * json_check_budget counts exactly the nodes cJSON makes of a whole
 * document (so the budget refuses what it should and nothing more). Any
 * sanitizer report or failed invariant is a crash. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_numbers.h"
#include "strbuf.h"
#include "tensor.h"
#include "tensor_json.h"
#include "test_support.h"

static void check_array(const struct num_array *a)
{
    if (a->error[0]) {
        CHECK(a->values == NULL && a->exact_ints == NULL && a->count == 0);
        CHECK(memchr(a->error, '\0', sizeof a->error) != NULL);
        return;
    }
    CHECK(a->ndim >= 1 && a->ndim <= NUM_ARRAY_MAX_DIMS);
    int64_t numel = shape_numel(a->shape, a->ndim);
    CHECK(numel > 0 && (size_t)numel == a->count);
    CHECK(a->has_bool || a->has_number);
    for (size_t i = 0; i < a->count; i++)
        CHECK(!isnan(a->values[i]));
}

/* Encode t; when it is FP32 or INT64, decode the text and compare. */
static void encode_and_check(const struct tensor *t)
{
    struct shim_tensor view = tensor_view(t);
    int64_t rows = t->ndim ? t->shape[0] : 1;
    for (int nested = 0; nested < 2; nested++) {
        struct strbuf sb = {0};
        CHECK(tensor_json_append(&sb, &view, 0, rows, nested) == 0);
        CHECK(sb.len > 0 && sb.data[sb.len - 1] == ']');
        struct num_array back;
        size_t used = num_array_parse(sb.data, sb.data + sb.len, &back);
        if (used != sb.len) {
            fprintf(stderr, "re-decoding '%.200s' failed: %s\n", sb.data, back.error);
            abort();
        }
        CHECK(back.count * dtype_size(t->dtype) == t->nbytes);
        if (nested) {
            CHECK(back.ndim == t->ndim);
            CHECK(memcmp(back.shape, t->shape, (size_t)t->ndim * sizeof t->shape[0]) == 0);
        } else {
            CHECK(back.ndim == 1);
        }
        /* Compare element by element; floats are read with strtof (the
         * encoder promises text that strtof reads back exactly). */
        const char *p = sb.data;
        for (size_t i = 0; i < back.count; i++) {
            while (*p == '[' || *p == ']' || *p == ',')
                p++;
            char *end;
            float f = strtof(p, &end);
            CHECK(end > p || *p == 't' || *p == 'f');
            if (t->dtype == SHIM_FP32) {
                float want = ((const float *)t->data)[i];
                CHECK(memcmp(&f, &want, sizeof f) == 0);
            } else if (t->dtype == SHIM_INT64) {
                CHECK((double)((const int64_t *)t->data)[i] == back.values[i]);
            } else if (t->dtype == SHIM_BOOL) {
                CHECK(back.has_bool && !back.has_number);
                CHECK(back.values[i] == (double)((const uint8_t *)t->data)[i]);
            } else if (t->dtype == SHIM_UINT8) {
                CHECK(back.values[i] == (double)((const uint8_t *)t->data)[i]);
            } else if (t->dtype == SHIM_FP16) {
                CHECK(dtype_double_to_half(f) == ((const uint16_t *)t->data)[i]);
            }
            p = end > p ? end : p + strspn(p, "truefals");
        }
        free(back.values);
        free(back.exact_ints);
        strbuf_free(&sb);
    }
    /* A slice of the rows. */
    if (t->ndim > 0 && rows > 1) {
        struct strbuf sb = {0};
        CHECK(tensor_json_append(&sb, &view, rows / 2, rows - rows / 2, true) == 0);
        strbuf_free(&sb);
    }
}

static void walk(const struct json_doc *doc, const cJSON *item)
{
    for (; item; item = item->next) {
        const struct num_array *a = json_doc_array(doc, item);
        if (a)
            CHECK(a >= doc->arrays && a < doc->arrays + doc->n_arrays);
        walk(doc, item->child);
    }
}

/* Nodes of the tree under item (siblings included), and its deepest
 * nesting of arrays and objects. */
static size_t count_nodes(const cJSON *item, int depth, int *max_depth)
{
    size_t n = 0;
    for (; item; item = item->next) {
        n++;
        if (cJSON_IsArray(item) || cJSON_IsObject(item)) {
            if (depth + 1 > *max_depth)
                *max_depth = depth + 1;
            n += count_nodes(item->child, depth + 1, max_depth);
        }
    }
    return n;
}

/* For a document cJSON parses whole, the budget's count is cJSON's. */
static void check_budget_count(const char *text, size_t size)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (root == NULL)
        return;
    while (end < text + size && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (end == text + size) {
        int depth = 0;
        size_t nodes = count_nodes(root, 0, &depth);
        char err[256];
        if (depth > JSON_DOC_MAX_DEPTH) {
            CHECK(json_check_budget(text, size, nodes, err, sizeof err) == -1);
        } else {
            CHECK(json_check_budget(text, size, nodes, err, sizeof err) == 0);
            CHECK(json_check_budget(text, size, nodes - 1, err, sizeof err) == -1);
            CHECK(strstr(err, "values outside numeric arrays") != NULL);
        }
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    check_budget_count(text, size);

    /* The array decoder on its own. */
    struct num_array raw;
    size_t used = num_array_parse(text, text + size, &raw);
    CHECK(used <= size);
    CHECK((used == 0) == (raw.error[0] != '\0'));
    check_array(&raw);
    free(raw.values);
    free(raw.exact_ints);

    struct json_doc doc;
    char err[256];
    if (json_doc_parse(text, size, &doc, err, sizeof err) != 0) {
        CHECK(doc.root == NULL && doc.n_arrays == 0);
        json_doc_free(&doc);
        return 0;
    }
    CHECK(doc.root != NULL);
    walk(&doc, doc.root);
    static const enum shim_dtype dtypes[] = {SHIM_FP32, SHIM_INT64, SHIM_BOOL, SHIM_UINT8,
                                             SHIM_FP16};
    for (size_t i = 0; i < doc.n_arrays; i++) {
        const struct num_array *a = &doc.arrays[i];
        check_array(a);
        for (size_t k = 0; k < sizeof dtypes / sizeof dtypes[0]; k++) {
            struct tensor t;
            if (tensor_json_from_array(a, dtypes[k], &t, err, sizeof err) != 0) {
                CHECK(t.data == NULL && err[0] != '\0');
                continue;
            }
            CHECK(t.dtype == dtypes[k] && t.ndim == a->ndim);
            CHECK(t.nbytes == a->count * dtype_size(dtypes[k]));
            encode_and_check(&t);
            tensor_free(&t);
        }
    }
    json_doc_free(&doc);
    return 0;
}
