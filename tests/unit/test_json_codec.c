/* test_json_codec.c - the JSON number codec: json_doc_parse / json_doc_array
 * / num_array_parse (text -> arrays), tensor_json_from_array (arrays -> typed
 * tensors) and tensor_json_append (tensors -> text). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_numbers.h"
#include "strbuf.h"
#include "tensor.h"
#include "tensor_json.h"
#include "test_support.h"

/* ---- helpers ---- */

/* Free what num_array_parse allocated. */
static void num_array_release(struct num_array *a)
{
    free(a->values);
    free(a->exact_ints);
    a->values = NULL;
    a->exact_ints = NULL;
}

/* num_array_parse on a NUL-terminated string. */
static size_t parse_str(const char *s, struct num_array *a)
{
    return num_array_parse(s, s + strlen(s), a);
}

/* Expect s to decode to an array error that contains every NULL-terminated
 * needle. */
static void expect_array_error(const char *s, ...)
{
    struct num_array a;
    size_t used = parse_str(s, &a);
    if (used != 0 || a.error[0] == '\0')
        fail_msg("'%s' decoded (%zu bytes) but should have failed", s, used);
    assert_null(a.values);
    assert_null(a.exact_ints);
    va_list ap;
    va_start(ap, s);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;)
        if (strstr(a.error, needle) == NULL)
            fail_msg("'%s': error '%s' does not mention '%s'", s, a.error, needle);
    va_end(ap);
}

/* Decode s and convert it to dtype; expect success. Caller frees t. */
static void decode_ok(const char *s, enum shim_dtype dtype, struct tensor *t)
{
    struct num_array a;
    char err[256] = "";
    size_t used = parse_str(s, &a);
    if (used != strlen(s))
        fail_msg("'%s' did not decode: %s", s, a.error);
    int rc = tensor_json_from_array(&a, dtype, t, err, sizeof err);
    num_array_release(&a);
    if (rc != 0)
        fail_msg("'%s' as %s: %s", s, dtype_name(dtype), err);
}

/* Decode s (must succeed) and expect converting it to dtype to fail with an
 * error containing needle. */
static void convert_fails(const char *s, enum shim_dtype dtype, const char *needle)
{
    struct num_array a;
    struct tensor t;
    char err[256] = "";
    if (parse_str(s, &a) == 0)
        fail_msg("'%s' did not decode: %s", s, a.error);
    int rc = tensor_json_from_array(&a, dtype, &t, err, sizeof err);
    num_array_release(&a);
    if (rc == 0) {
        tensor_free(&t);
        fail_msg("'%s' as %s was accepted", s, dtype_name(dtype));
    }
    assert_null(t.data);
    if (needle && strstr(err, needle) == NULL)
        fail_msg("'%s' as %s: error '%s' does not mention '%s'", s, dtype_name(dtype), err, needle);
}

/* Whether a request body is refused: the document is malformed, or one of
 * its numeric arrays is. */
static bool body_rejected(const char *body)
{
    struct json_doc doc;
    char err[256] = "";
    if (json_doc_parse(body, strlen(body), &doc, err, sizeof err) != 0) {
        assert_true(err[0] != '\0');
        assert_null(doc.root);
        json_doc_free(&doc); /* documented as safe after a failure */
        return true;
    }
    bool bad = false;
    for (size_t i = 0; i < doc.n_arrays; i++)
        bad |= doc.arrays[i].error[0] != '\0';
    json_doc_free(&doc);
    return bad;
}

/* Encode view as JSON; returns a malloc'd string. */
static char *encode(enum shim_dtype dtype, int ndim, const int64_t *shape, const void *data,
                    int64_t row0, int64_t nrows, bool nested)
{
    struct shim_tensor v;
    memset(&v, 0, sizeof v);
    v.dtype = dtype;
    v.ndim = ndim;
    memcpy(v.shape, shape, (size_t)ndim * sizeof *shape);
    v.data = data;
    v.nbytes = (size_t)shape_numel(shape, ndim) * dtype_size(dtype);
    struct strbuf sb = {0};
    assert_int_equal(tensor_json_append(&sb, &v, row0, nrows, nested), 0);
    char *s = strbuf_detach(&sb, NULL);
    assert_non_null(s);
    return s;
}

static void expect_encoding(enum shim_dtype dtype, int ndim, const int64_t *shape, const void *data,
                            int64_t row0, int64_t nrows, bool nested, const char *want)
{
    char *got = encode(dtype, ndim, shape, data, row0, nrows, nested);
    if (strcmp(got, want) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "encoded '%s', want '%s'", got, want);
        free(got);
        fail_msg("%s", msg);
    }
    free(got);
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Significant decimal digits of a number's text: the mantissa digits less
 * leading and trailing zeros ("100" -> 1, "0.00125" -> 3, "1e-05" -> 1). */
static int significant_digits(const char *s, size_t len)
{
    char digits[64];
    size_t n = 0;
    for (size_t i = 0; i < len && s[i] != 'e' && s[i] != 'E'; i++)
        if (s[i] >= '0' && s[i] <= '9' && n < sizeof digits)
            digits[n++] = s[i];
    size_t a = 0, b = n;
    while (a < b && digits[a] == '0')
        a++;
    while (b > a && digits[b - 1] == '0')
        b--;
    return b > a ? (int)(b - a) : 1;
}

/* Fewest significant digits that read back as exactly f; with sci_len, the
 * length of that many digits in printf's %e style. */
static int shortest_digits_len(float f, size_t *sci_len)
{
    for (int p = 1; p <= 9; p++) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "%.*e", p - 1, (double)f);
        if (float_bits(strtof(buf, NULL)) == float_bits(f)) {
            if (sci_len)
                *sci_len = (size_t)n;
            return p;
        }
    }
    return 9;
}

static int shortest_digits(float f)
{
    return shortest_digits_len(f, NULL);
}

/* Whether text (len bytes) is a shortest round-trip spelling of f: as few
 * significant digits as possible, except that a whole number written out in
 * full (no '.', no exponent) is as long as its magnitude makes it, which is
 * fine as long as no exponent form would be shorter. */
static bool is_shortest(float f, const char *text, size_t len, char *why, size_t why_len)
{
    size_t sci_len = 64;
    int want = shortest_digits_len(f, &sci_len);
    int sig = significant_digits(text, len);
    bool whole = memchr(text, '.', len) == NULL && memchr(text, 'e', len) == NULL;
    if (whole ? len > sci_len : sig != want) {
        snprintf(why, why_len, "%.9g encoded as '%.*s': %d digits, %d suffice", (double)f, (int)len,
                 text, sig, want);
        return false;
    }
    return true;
}

/* ---- decoding: shapes ---- */

static void test_nested_shapes(void **state)
{
    (void)state;
    /* [2,1,28,28], values 0..1567, like a batch of two MNIST images. */
    struct strbuf sb = {0};
    int v = 0;
    strbuf_puts(&sb, "[");
    for (int n = 0; n < 2; n++) {
        strbuf_puts(&sb, n ? ",[[" : "[[");
        for (int r = 0; r < 28; r++) {
            strbuf_puts(&sb, r ? ",[" : "[");
            for (int c = 0; c < 28; c++)
                strbuf_printf(&sb, c ? ",%d" : "%d", v++);
            strbuf_puts(&sb, "]");
        }
        strbuf_puts(&sb, "]]");
    }
    strbuf_puts(&sb, "]");
    assert_false(sb.failed);

    struct num_array a;
    assert_int_equal(num_array_parse(sb.data, sb.data + sb.len, &a), sb.len);
    assert_string_equal(a.error, "");
    assert_int_equal(a.ndim, 4);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 1);
    assert_int_equal(a.shape[2], 28);
    assert_int_equal(a.shape[3], 28);
    assert_int_equal(a.count, 2 * 28 * 28);
    assert_true(a.has_number);
    assert_false(a.has_bool);
    for (size_t i = 0; i < a.count; i++)
        assert_true(a.values[i] == (double)i);

    struct tensor t;
    char err[256];
    assert_int_equal(tensor_json_from_array(&a, SHIM_FP32, &t, err, sizeof err), 0);
    assert_int_equal(t.dtype, SHIM_FP32);
    assert_int_equal(t.ndim, 4);
    assert_memory_equal(t.shape, a.shape, 4 * sizeof t.shape[0]);
    assert_int_equal(t.nbytes, a.count * sizeof(float));
    for (size_t i = 0; i < a.count; i++)
        assert_true(((float *)t.data)[i] == (float)i);
    tensor_free(&t);
    assert_null(t.data);
    num_array_release(&a);
    strbuf_free(&sb);

    /* 1-D, no nesting. */
    decode_ok("[1,2.5,-3]", SHIM_FP64, &t);
    assert_int_equal(t.ndim, 1);
    assert_int_equal(t.shape[0], 3);
    assert_true(((double *)t.data)[1] == 2.5);
    assert_true(((double *)t.data)[2] == -3.0);
    tensor_free(&t);

    /* 3-D, with whitespace of every kind JSON allows. */
    decode_ok("[ [ [1, 2] ,\n[3,4],[5,6] ] ,\t[[7,8],[9,10],[11,\r\n12]] ]", SHIM_INT32, &t);
    assert_int_equal(t.ndim, 3);
    assert_int_equal(t.shape[0], 2);
    assert_int_equal(t.shape[1], 3);
    assert_int_equal(t.shape[2], 2);
    for (int i = 0; i < 12; i++)
        assert_int_equal(((int32_t *)t.data)[i], i + 1);
    tensor_free(&t);

    /* A single element and a [1,1] matrix. */
    decode_ok("[7]", SHIM_INT64, &t);
    assert_int_equal(t.ndim, 1);
    assert_int_equal(t.shape[0], 1);
    tensor_free(&t);
    decode_ok("[[7]]", SHIM_INT64, &t);
    assert_int_equal(t.ndim, 2);
    assert_int_equal(t.shape[0], 1);
    assert_int_equal(t.shape[1], 1);
    tensor_free(&t);
}

static void test_consumed_length(void **state)
{
    (void)state;
    struct num_array a;
    const char *s = "[1,2] , \"tail\"]";
    assert_int_equal(parse_str(s, &a), 5);
    assert_int_equal(a.count, 2);
    num_array_release(&a);
    s = "[[1],[2]]}";
    assert_int_equal(parse_str(s, &a), 9);
    num_array_release(&a);
    /* Not an array at all. */
    expect_array_error("1", "expected an array", NULL);
    expect_array_error("", "expected an array", NULL);
    /* Unterminated. */
    expect_array_error("[1,2", "unterminated", NULL);
    expect_array_error("[[1,2],", "unterminated", NULL);
    expect_array_error("[1,", "unterminated", NULL);
    expect_array_error("[1 2]", "expected ','", NULL);
}

static void test_ragged(void **state)
{
    (void)state;
    /* Each error says it is ragged and names where. */
    expect_array_error("[[1,2],[3]]", "ragged", "index [1", NULL);
    expect_array_error("[[1],[2,3]]", "ragged", "index [1", NULL);
    expect_array_error("[1,[2]]", "ragged", "index [1", NULL);
    expect_array_error("[[1],2]", "ragged", "index [1", NULL);
    /* Deeper down. */
    expect_array_error("[[[1,2],[3,4]],[[5,6],[7]]]", "ragged", "index [1,1", NULL);
    expect_array_error("[[[1,2],[3,4]],[[5,6]]]", "ragged", "index [1", NULL);
    expect_array_error("[[[1]],[2]]", "ragged", "index [1", NULL);
    expect_array_error("[[1],[[2]]]", "ragged", "index [1", NULL);
    expect_array_error("[[1,2],[3,4],[5,6,7]]", "ragged", "index [2", NULL);
}

static void test_empty_arrays(void **state)
{
    (void)state;
    expect_array_error("[]", "empty", NULL);
    expect_array_error("[ ]", "empty", NULL);
    expect_array_error("[[]]", "empty", NULL);
    expect_array_error("[[1],[]]", "empty", NULL);
    expect_array_error("[[],[1]]", "empty", NULL);

    /* In a document an empty array is an ordinary cJSON array, not one of
     * the numeric arrays. */
    struct json_doc doc;
    char err[256];
    const char *body = "{\"a\":[],\"b\":[[]]}";
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc.root, "a");
    assert_true(cJSON_IsArray(a));
    assert_int_equal(cJSON_GetArraySize(a), 0);
    assert_null(json_doc_array(&doc, a));
    json_doc_free(&doc);
}

static void test_depth_limit(void **state)
{
    (void)state;
    char s[64];
    /* Exactly NUM_ARRAY_MAX_DIMS (8) levels decodes. */
    snprintf(s, sizeof s, "%.*s1%.*s", 8, "[[[[[[[[[[[[", 8, "]]]]]]]]]]]]");
    struct num_array a;
    assert_int_equal(parse_str(s, &a), strlen(s));
    assert_int_equal(a.ndim, 8);
    for (int d = 0; d < 8; d++)
        assert_int_equal(a.shape[d], 1);
    struct tensor t;
    char err[256];
    assert_int_equal(tensor_json_from_array(&a, SHIM_FP32, &t, err, sizeof err), 0);
    assert_int_equal(t.ndim, 8);
    tensor_free(&t);
    num_array_release(&a);

    /* Nine is too deep; so is a hundred. */
    snprintf(s, sizeof s, "%.*s1%.*s", 9, "[[[[[[[[[[[[", 9, "]]]]]]]]]]]]");
    expect_array_error(s, "deep", NULL);
    char deep[256];
    memset(deep, '[', 100);
    deep[100] = '1';
    memset(deep + 101, ']', 100);
    deep[201] = '\0';
    expect_array_error(deep, "deep", NULL);

    char body[300];
    snprintf(body, sizeof body, "{\"a\":%s}", deep);
    assert_true(body_rejected(body));
}

static void test_non_numeric(void **state)
{
    (void)state;
    expect_array_error("[1,\"a\"]", "non-numeric", "index [1", NULL);
    expect_array_error("[1,null]", "non-numeric", "index [1", NULL);
    expect_array_error("[1,{}]", "non-numeric", "index [1", NULL);
    expect_array_error("[[1,2],[3,\"x\"]]", "non-numeric", "index [1,1", NULL);
    expect_array_error("[true,\"x\"]", "non-numeric", NULL);
    expect_array_error("[1,tru]", NULL);
    expect_array_error("[1,-]", NULL);
    expect_array_error("[1,+2]", NULL);
    expect_array_error("[1,.5]", NULL);
    expect_array_error("[1,5.]", NULL);
    expect_array_error("[1,01]", NULL);
    expect_array_error("[1,0x10]", NULL);
    expect_array_error("[1,1e]", NULL);

    assert_true(body_rejected("{\"a\":[1,\"a\"]}"));
    assert_true(body_rejected("{\"a\":[1,null]}"));
    assert_true(body_rejected("{\"a\":[[1],[{}]]}"));

    /* An array that does not start like a number is cJSON's business. */
    struct json_doc doc;
    char err[256];
    const char *body = "{\"a\":[\"x\",1],\"b\":[null],\"c\":[{\"d\":[1,2]}]}";
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    assert_null(json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "a")));
    assert_null(json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "b")));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(doc.root, "c");
    assert_true(cJSON_IsArray(c));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(c, 0), "d");
    const struct num_array *na = json_doc_array(&doc, d);
    assert_non_null(na);
    assert_int_equal(na->count, 2);
    json_doc_free(&doc);
}

static void test_exponents(void **state)
{
    (void)state;
    struct tensor t;
    /* Beyond FP32's range: refused for FP32, fine for FP64. */
    convert_fails("[1e39]", SHIM_FP32, "out of range");
    convert_fails("[0,-1e39]", SHIM_FP32, "element 1");
    decode_ok("[1e39]", SHIM_FP64, &t);
    assert_true(((double *)t.data)[0] == 1e39);
    tensor_free(&t);
    /* FLT_MAX itself is fine. */
    decode_ok("[3.4028234663852886e38,-3.4028234663852886e38]", SHIM_FP32, &t);
    assert_true(((float *)t.data)[0] == FLT_MAX);
    assert_true(((float *)t.data)[1] == -FLT_MAX);
    tensor_free(&t);
    /* Beyond double's range: refused everywhere. */
    convert_fails("[1e999]", SHIM_FP32, "out of range");
    convert_fails("[-1e999]", SHIM_FP32, "out of range");
    convert_fails("[1e999]", SHIM_FP64, "out of range");
    convert_fails("[1E+400]", SHIM_FP16, "out of range");
    convert_fails("[1e999]", SHIM_INT64, "out of range");
    /* Underflow goes to zero (with its sign). */
    decode_ok("[1e-50,-1e-50]", SHIM_FP32, &t);
    assert_int_equal(float_bits(((float *)t.data)[0]), 0x00000000u);
    assert_int_equal(float_bits(((float *)t.data)[1]), 0x80000000u);
    tensor_free(&t);
    decode_ok("[1e-400]", SHIM_FP64, &t);
    assert_true(((double *)t.data)[0] == 0.0);
    tensor_free(&t);
    /* 0e999 is zero, not infinity. */
    decode_ok("[0e999]", SHIM_FP32, &t);
    assert_true(((float *)t.data)[0] == 0.0f);
    tensor_free(&t);
    /* FP32 subnormals survive. */
    decode_ok("[1e-45]", SHIM_FP32, &t);
    assert_int_equal(float_bits(((float *)t.data)[0]), 1u);
    tensor_free(&t);
}

/* A decimal fraction with no exponent that underflows (0.000...0001, 340
 * zeros) is a tiny number, not infinity: it must read as 0 like 1e-341
 * does. */
static void test_long_fraction_underflow(void **state)
{
    (void)state;
    char s[400] = "[0.";
    memset(s + 3, '0', 340);
    strcpy(s + 343, "1]");
    struct tensor t;
    decode_ok(s, SHIM_FP64, &t);
    assert_true(((double *)t.data)[0] == 0.0);
    tensor_free(&t);
    decode_ok(s, SHIM_FP32, &t);
    assert_true(((float *)t.data)[0] == 0.0f);
    tensor_free(&t);
    char neg[400] = "[-0.";
    memset(neg + 4, '0', 340);
    strcpy(neg + 344, "1]");
    decode_ok(neg, SHIM_FP64, &t);
    assert_true(((double *)t.data)[0] == 0.0);
    tensor_free(&t);
}

static void test_nan_infinity_rejected(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"a\":[NaN]}",
        "{\"a\":[1,NaN]}",
        "{\"a\":[Infinity]}",
        "{\"a\":[-Infinity]}",
        "{\"a\":[[1],[Infinity]]}",
        "{\"a\":[nan]}",
        "{\"a\":[inf]}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":[-NaN]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        if (!body_rejected(bodies[i]))
            fail_msg("accepted %s", bodies[i]);
    expect_array_error("[NaN]", NULL);
    expect_array_error("[Infinity]", NULL);
    expect_array_error("[-Infinity]", NULL);
}

static void test_negative_zero(void **state)
{
    (void)state;
    struct tensor t;
    decode_ok("[-0,0,-0.0,-0e5]", SHIM_FP32, &t);
    assert_int_equal(float_bits(((float *)t.data)[0]), 0x80000000u);
    assert_int_equal(float_bits(((float *)t.data)[1]), 0u);
    assert_int_equal(float_bits(((float *)t.data)[2]), 0x80000000u);
    assert_int_equal(float_bits(((float *)t.data)[3]), 0x80000000u);
    int64_t shape[1] = {2};
    char *s = encode(SHIM_FP32, 1, shape, t.data, 0, 2, true);
    assert_string_equal(s, "[-0,0]");
    free(s);
    tensor_free(&t);
    decode_ok("[-0]", SHIM_INT32, &t);
    assert_int_equal(((int32_t *)t.data)[0], 0);
    tensor_free(&t);
    decode_ok("[-0]", SHIM_UINT8, &t);
    assert_int_equal(((uint8_t *)t.data)[0], 0);
    tensor_free(&t);
}

static void test_integer_dtypes(void **state)
{
    (void)state;
    struct tensor t;
    decode_ok("[-128,127,0,1e2]", SHIM_INT8, &t);
    assert_int_equal(((int8_t *)t.data)[0], -128);
    assert_int_equal(((int8_t *)t.data)[1], 127);
    assert_int_equal(((int8_t *)t.data)[3], 100);
    tensor_free(&t);
    convert_fails("[128]", SHIM_INT8, "out of range");
    convert_fails("[-129]", SHIM_INT8, "out of range");
    convert_fails("[1,2,1.5]", SHIM_INT8, "not an integer");
    convert_fails("[1,2,1.5]", SHIM_INT8, "element 2");

    decode_ok("[0,255]", SHIM_UINT8, &t);
    assert_int_equal(((uint8_t *)t.data)[0], 0);
    assert_int_equal(((uint8_t *)t.data)[1], 255);
    tensor_free(&t);
    convert_fails("[256]", SHIM_UINT8, "out of range");
    convert_fails("[-1]", SHIM_UINT8, "out of range");
    convert_fails("[0.5]", SHIM_UINT8, "not an integer");

    decode_ok("[-32768,32767]", SHIM_INT16, &t);
    assert_int_equal(((int16_t *)t.data)[0], -32768);
    assert_int_equal(((int16_t *)t.data)[1], 32767);
    tensor_free(&t);
    convert_fails("[32768]", SHIM_INT16, "out of range");

    decode_ok("[-2147483648,2147483647]", SHIM_INT32, &t);
    assert_int_equal(((int32_t *)t.data)[0], INT32_MIN);
    assert_int_equal(((int32_t *)t.data)[1], INT32_MAX);
    tensor_free(&t);
    convert_fails("[2147483648]", SHIM_INT32, "out of range");
    convert_fails("[-2147483649]", SHIM_INT32, "out of range");
    convert_fails("[1e-300]", SHIM_INT32, "not an integer");

    /* INT64: the values JSON numbers (doubles) can carry. */
    decode_ok("[-9223372036854775808,9223372036854774784,9007199254740992,-1]", SHIM_INT64, &t);
    assert_true(((int64_t *)t.data)[0] == INT64_MIN);
    assert_true(((int64_t *)t.data)[1] == INT64_C(9223372036854774784));
    assert_true(((int64_t *)t.data)[2] == INT64_C(9007199254740992));
    assert_true(((int64_t *)t.data)[3] == -1);
    tensor_free(&t);
    convert_fails("[9223372036854775808]", SHIM_INT64, "out of range");
    convert_fails("[1e19]", SHIM_INT64, "out of range");
    convert_fails("[-1e19]", SHIM_INT64, "out of range");
    convert_fails("[-9223372036854777856]", SHIM_INT64, "out of range");
    convert_fails("[2.5]", SHIM_INT64, "not an integer");
}

/* Integers beyond 2^53 reach INT64 tensors exactly, whatever else the array
 * holds; everything else keeps its usual checks. */
/* Decode s as INT64 and compare with want (freeing before any failure). */
static void expect_int64s(const char *s, const int64_t *want, size_t n)
{
    struct tensor t;
    decode_ok(s, SHIM_INT64, &t);
    int64_t got[16];
    size_t have = t.nbytes / sizeof got[0];
    assert_true(have <= 16);
    memcpy(got, t.data, t.nbytes);
    tensor_free(&t);
    if (have != n)
        fail_msg("'%s' as INT64: %zu elements, want %zu", s, have, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("'%s' as INT64: element %zu is %lld, want %lld", s, i, (long long)got[i],
                     (long long)want[i]);
}

static void test_int64_exact(void **state)
{
    (void)state;
    struct tensor t;
    const int64_t want1[] = {INT64_MAX, INT64_MIN, INT64_C(9007199254740993),
                             INT64_C(-9007199254740993), INT64_C(1234567890123456789)};
    expect_int64s("[9223372036854775807,-9223372036854775808,9007199254740993,-9007199254740993,"
                  "1234567890123456789]",
                  want1, 5);
    const int64_t want[] = {1, INT64_C(9007199254740993), 3, 4};
    expect_int64s("[[1,9007199254740993],[3,4]]", want, 4);

    /* Other spellings of whole numbers next to a big one keep their value. */
    const int64_t want2[] = {INT64_C(9007199254740993), 2, 100, 0, -3, 7};
    expect_int64s("[9007199254740993,2.0,1e2,-0,-3E0,7]", want2, 6);
    const int64_t want3[] = {2, 100, INT64_C(9007199254740993)};
    expect_int64s("[2.0,1e2,9007199254740993]", want3, 3);

    /* Out of range or fractional, before or after a big one: refused. */
    convert_fails("[9223372036854775808]", SHIM_INT64, "out of range");
    convert_fails("[-9223372036854775809]", SHIM_INT64, "out of range");
    convert_fails("[99999999999999999999999]", SHIM_INT64, "out of range");
    convert_fails("[9007199254740993,9223372036854775808]", SHIM_INT64, "element 1");
    convert_fails("[9007199254740993,1e19]", SHIM_INT64, "element 1");
    convert_fails("[9007199254740993,1e19]", SHIM_INT64, "out of range");
    convert_fails("[9007199254740993,-1e300]", SHIM_INT64, "out of range");
    convert_fails("[1e19,9007199254740993]", SHIM_INT64, "element 0");
    convert_fails("[1e19,9007199254740993]", SHIM_INT64, "out of range");
    convert_fails("[1e300,9007199254740993]", SHIM_INT64, "out of range");
    convert_fails("[9007199254740993,0.5]", SHIM_INT64, "not an integer");
    convert_fails("[0.5,9007199254740993]", SHIM_INT64, "not an integer");
    convert_fails("[9007199254740993,true]", SHIM_INT64, "true/false");

    /* Other dtypes see the nearest double, with their usual range checks. */
    decode_ok("[9007199254740993]", SHIM_FP64, &t);
    assert_true(((double *)t.data)[0] == 9007199254740992.0);
    tensor_free(&t);
    convert_fails("[9007199254740993]", SHIM_INT32, "out of range");
}

static void test_bool(void **state)
{
    (void)state;
    struct num_array a;
    assert_int_equal(parse_str("[true,false,true]", &a), 17);
    assert_true(a.has_bool);
    assert_false(a.has_number);
    num_array_release(&a);

    struct tensor t;
    decode_ok("[[true,false],[false,true]]", SHIM_BOOL, &t);
    assert_int_equal(t.ndim, 2);
    assert_memory_equal(t.data, "\1\0\0\1", 4);
    tensor_free(&t);
    decode_ok("[1,0]", SHIM_BOOL, &t);
    assert_memory_equal(t.data, "\1\0", 2);
    tensor_free(&t);
    decode_ok("[true,0]", SHIM_BOOL, &t);
    assert_memory_equal(t.data, "\1\0", 2);
    tensor_free(&t);
    convert_fails("[2]", SHIM_BOOL, "BOOL");
    convert_fails("[0.5]", SHIM_BOOL, "BOOL");
    /* true/false are refused for numeric dtypes. */
    convert_fails("[true]", SHIM_FP32, "true/false");
    convert_fails("[1,false]", SHIM_FP32, "true/false");
    convert_fails("[true]", SHIM_INT64, "true/false");
    convert_fails("[false]", SHIM_UINT8, "true/false");
    /* "truex" and "fals" are not booleans. */
    expect_array_error("[truex]", NULL);
    expect_array_error("[fals]", NULL);
}

static void test_fp16(void **state)
{
    (void)state;
    /* Every finite half survives half -> float -> half. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue; /* NaN */
        uint16_t back = dtype_double_to_half(dtype_half_to_float((uint16_t)h));
        if (back != h)
            fail_msg("half 0x%04x -> %g -> 0x%04x", h, (double)dtype_half_to_float((uint16_t)h),
                     back);
    }
    assert_true(dtype_half_to_float(0x3c00) == 1.0f);
    assert_true(dtype_half_to_float(0x7bff) == 65504.0f);
    assert_true(dtype_half_to_float(0x0001) == ldexpf(1.0f, -24));
    assert_true(isinf(dtype_half_to_float(0x7c00)));
    assert_true(isnan(dtype_half_to_float(0x7e00)));
    assert_true(isnan(dtype_half_to_float(dtype_double_to_half(NAN))));
    assert_int_equal(dtype_double_to_half(INFINITY), 0x7c00);
    assert_int_equal(dtype_double_to_half(-INFINITY), 0xfc00);
    /* Ties round to even. */
    assert_int_equal(dtype_double_to_half(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    assert_int_equal(dtype_double_to_half(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    assert_int_equal(dtype_double_to_half(65519.0f), 0x7bff);
    assert_int_equal(dtype_double_to_half(65520.0f), 0x7c00);
    /* Rounded once, from the double: just past the tie at 1 + 2^-11 goes up,
     * though as a float it would land on the tie and round down to 1. */
    assert_int_equal(dtype_double_to_half(1.0 + ldexp(1.0, -11) + ldexp(1.0, -40)), 0x3c01);
    assert_int_equal(dtype_double_to_half(1.0 + ldexp(1.0, -11) - ldexp(1.0, -40)), 0x3c00);
    assert_int_equal(dtype_double_to_half(-(1.0 + ldexp(1.0, -11) + ldexp(1.0, -40))), 0xbc01);
    assert_int_equal(dtype_double_to_half(ldexp(1.0, -25) + ldexp(1.0, -60)), 0x0001);
    assert_int_equal(dtype_double_to_half(ldexp(1.0, -25)), 0x0000); /* tie: to even */

    struct tensor t;
    decode_ok("[1.0004882812509095]", SHIM_FP16, &t); /* 1 + 2^-11 + ~2^-40 */
    assert_int_equal(((const uint16_t *)t.data)[0], 0x3c01);
    tensor_free(&t);
    decode_ok("[1,-2.5,0.1,65504,5.960464477539063e-8,1e-8,-0,0.5]", SHIM_FP16, &t);
    const uint16_t want[] = {0x3c00, 0xc100, 0x2e66, 0x7bff, 0x0001, 0x0000, 0x8000, 0x3800};
    assert_memory_equal(t.data, want, sizeof want);
    /* Encoding gives the float value of each half, read back exactly. */
    char *s = encode(SHIM_FP16, t.ndim, t.shape, t.data, 0, t.shape[0], true);
    const char *q = s + 1;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *end;
        float back = strtof(q, &end);
        assert_true(end > q);
        assert_int_equal(float_bits(back), float_bits(dtype_half_to_float(want[i])));
        q = end + 1;
    }
    assert_string_equal(q, "");
    assert_non_null(strstr(s, "[1,-2.5,"));
    free(s);
    tensor_free(&t);
    convert_fails("[65520]", SHIM_FP16, "out of range");
    convert_fails("[-1e5]", SHIM_FP16, "out of range");
}

/* ---- documents ---- */

static void test_malformed_documents(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "",
        "   ",
        "{",
        "{\"a\":1,}",
        "{\"a\":[1,2],}",
        "{\"a\":[1,2,]}",
        "{\"a\":[[1,2],]}",
        "{\"a\":\"abc}",
        "{\"a\":\"abc",
        "{\"a\":[1,2}",
        "{\"a\":[[1,2]}",
        "{\"a\":[1,2",
        "[1,2",
        "[[1,2],[3,4]",
        "{\"a\":[1,2]]}",
        "{a:1}",
        "{\"a\":'x'}",
        "{\"a\":[1,2]\"b\":1}",
        "{\"a\":\"\\",
        "{\"a\":[\"x\\\"]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        if (!body_rejected(bodies[i]))
            fail_msg("accepted malformed body '%s'", bodies[i]);

    /* And the length is honoured: a NUL-free prefix of a valid body. */
    const char *body = "{\"a\":[1,2,3]}";
    for (size_t n = 0; n < strlen(body); n++) {
        struct json_doc doc;
        char err[128];
        if (json_doc_parse(body, n, &doc, err, sizeof err) == 0) {
            json_doc_free(&doc);
            fail_msg("accepted the first %zu bytes of %s", n, body);
        }
    }
}

/* Text after the document is not JSON either. */
static void test_trailing_garbage_rejected(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"a\":1} x", "{\"a\":1}}", "{\"a\":[1,2]} ]", "{\"a\":[1,2]}{\"b\":2}", "[1,2] [3]",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        if (!body_rejected(bodies[i]))
            fail_msg("accepted '%s' (garbage after the document)", bodies[i]);
    /* Whitespace after it is fine. */
    assert_false(body_rejected("{\"a\":[1,2]} \r\n\t"));
}

static void test_document_arrays(void **state)
{
    (void)state;
    const char *body = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2,2],"
                       "\"data\":[[1,2],[3,4]]},{\"name\":\"y\",\"data\":[true,false]}],"
                       "\"id\":\"r1\",\"n\":5}";
    struct json_doc doc;
    char err[256];
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    assert_true(cJSON_IsObject(doc.root));
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc.root, "inputs");
    assert_true(cJSON_IsArray(inputs));
    assert_null(json_doc_array(&doc, inputs));
    assert_int_equal(cJSON_GetArraySize(inputs), 2);
    const cJSON *x = cJSON_GetArrayItem(inputs, 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring, "x");
    const struct num_array *shape =
        json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(x, "shape"));
    assert_non_null(shape);
    assert_int_equal(shape->ndim, 1);
    assert_int_equal(shape->count, 2);
    const struct num_array *data =
        json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(x, "data"));
    assert_non_null(data);
    assert_string_equal(data->error, "");
    assert_int_equal(data->ndim, 2);
    assert_true(data->values[3] == 4.0);
    const struct num_array *y = json_doc_array(
        &doc, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(inputs, 1), "data"));
    assert_non_null(y);
    assert_true(y->has_bool);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc.root, "id")->valuestring, "r1");
    assert_null(json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "id")));
    assert_null(json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "n")));
    assert_null(json_doc_array(&doc, NULL));
    json_doc_free(&doc);

    /* A bare numeric array as the whole document. */
    body = " [[1,2],[3,4]] ";
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    const struct num_array *top = json_doc_array(&doc, doc.root);
    assert_non_null(top);
    assert_int_equal(top->count, 4);
    json_doc_free(&doc);

    /* A bad array is reported on the array; the document still parses. */
    body = "{\"a\":[[1,2],[3]],\"b\":[1]}";
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    const struct num_array *bad =
        json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "a"));
    assert_non_null(bad);
    assert_non_null(strstr(bad->error, "ragged"));
    assert_null(bad->values);
    struct tensor t;
    assert_int_equal(tensor_json_from_array(bad, SHIM_FP32, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "ragged"));
    const struct num_array *good =
        json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "b"));
    assert_non_null(good);
    assert_string_equal(good->error, "");
    json_doc_free(&doc);
    assert_null(doc.root);
    json_doc_free(&doc); /* twice is fine */
}

static void test_strings_are_not_arrays(void **state)
{
    (void)state;
    const char *body = "{\"s\":\"[1,2]\",\"t\":\"x\\\"[3]\\\" ]1[\",\"u\":\"\\\\\",\"a\":[5,6],"
                       "\"[7]\":[8]}";
    struct json_doc doc;
    char err[256];
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(doc.root, "s");
    assert_true(cJSON_IsString(s));
    assert_string_equal(s->valuestring, "[1,2]");
    assert_null(json_doc_array(&doc, s));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc.root, "t");
    assert_string_equal(t->valuestring, "x\"[3]\" ]1[");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc.root, "u")->valuestring, "\\");
    const struct num_array *a =
        json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "a"));
    assert_non_null(a);
    assert_int_equal(a->count, 2);
    assert_true(a->values[0] == 5.0);
    const struct num_array *k =
        json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "[7]"));
    assert_non_null(k);
    assert_true(k->values[0] == 8.0);
    assert_int_equal(doc.n_arrays, 2);
    json_doc_free(&doc);
}

/* A string the client sent must never stand for one of the numeric arrays,
 * whatever its text (json_numbers.c marks arrays with U+FDD0 + an index):
 * either the body is refused or the string stays a plain string. */
static void test_client_string_is_not_a_placeholder(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"a\":[1,2],\"b\":\"\\ufdd00\"}",
        "{\"a\":[1,2],\"b\":\"\xEF\xB7\x90"
        "0\"}",
        "{\"b\":\"\\uFDD00\",\"a\":[1,2]}",
        "{\"a\":[1,2],\"b\":\"\\ufdd0\"}",
        "{\"a\":[1,2],\"b\":\"\\ufdd00x\"}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct json_doc doc;
        char err[256];
        if (json_doc_parse(bodies[i], strlen(bodies[i]), &doc, err, sizeof err) != 0)
            continue; /* refused: fine */
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(doc.root, "b");
        assert_true(cJSON_IsString(b));
        const struct num_array *spoofed = json_doc_array(&doc, b);
        const struct num_array *real =
            json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "a"));
        json_doc_free(&doc);
        if (spoofed != NULL)
            fail_msg("the string \"b\" in body %zu decoded as a numeric array", i);
        assert_non_null(real);
    }
    /* Ordinary non-ASCII text is still fine. */
    const char *body = "{\"a\":[1],\"b\":\"caf\xC3\xA9 \\u00e9 \\ufdd1\"}";
    struct json_doc doc;
    char err[256];
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    assert_null(json_doc_array(&doc, cJSON_GetObjectItemCaseSensitive(doc.root, "b")));
    json_doc_free(&doc);
}

/* The scan for numeric arrays must stay linear: a body of many '[' that
 * are not numeric arrays must not take time quadratic in its length (16 MiB
 * bodies are allowed). Linear is well under a millisecond for 30000 bytes;
 * quadratic is about half a second (seconds under ASan). */
static double time_bracket_run(size_t n)
{
    char *body = malloc(n + 8);
    assert_non_null(body);
    memset(body, '[', n);
    strcpy(body + n, "\"x\"");
    struct json_doc doc;
    char err[256];
    uint64_t t0 = clock_now_ns();
    int rc = json_doc_parse(body, strlen(body), &doc, err, sizeof err);
    double seconds = (double)(clock_now_ns() - t0) / 1e9;
    json_doc_free(&doc);
    free(body);
    assert_int_equal(rc, -1); /* unbalanced */
    return seconds;
}

static void test_bracket_run_is_linear(void **state)
{
    (void)state;
    const size_t n = 30000;
    double seconds = time_bracket_run(n);
    if (seconds > 0.1 && seconds < 0.5) /* maybe just a busy machine: once more */
        seconds = time_bracket_run(n);
    if (seconds > 0.1)
        fail_msg("json_doc_parse took %.2f s on %zu '[' (quadratic scan)", seconds, n);
}

/* ---- encoding ---- */

static void test_encode_shortest(void **state)
{
    (void)state;
    const float vals[] = {0.1f,        1e-5f,           1.0f,   100.0f,  0.3f,
                          16777216.0f, 1.17549435e-38f, 1e-45f, FLT_MAX, -2.5f,
                          123456.79f,  3.14159274f};
    int64_t shape[1] = {1};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char *s = encode(SHIM_FP32, 1, shape, &vals[i], 0, 1, false);
        size_t len = strlen(s);
        assert_true(len >= 3 && s[0] == '[' && s[len - 1] == ']');
        char *end;
        float back = strtof(s + 1, &end);
        assert_ptr_equal(end, s + len - 1);
        assert_int_equal(float_bits(back), float_bits(vals[i]));
        char why[160];
        if (!is_shortest(vals[i], s + 1, len - 2, why, sizeof why))
            fail_msg("%s", why);
        if (vals[i] < 1e6f) /* no whole-number exception below 7 digits */
            assert_int_equal(significant_digits(s + 1, len - 2), shortest_digits(vals[i]));
        free(s);
    }
    char *s = encode(SHIM_FP32, 1, shape, &vals[0], 0, 1, false);
    assert_string_equal(s, "[0.1]");
    free(s);
    s = encode(SHIM_FP32, 1, shape, &vals[2], 0, 1, false);
    assert_string_equal(s, "[1]");
    free(s);
    s = encode(SHIM_FP32, 1, shape, &vals[4], 0, 1, false);
    assert_string_equal(s, "[0.3]");
    free(s);
}

/* Thousands of random float32 bit patterns: each encodes to the shortest
 * text that strtof reads back bit-exactly. */
static void test_encode_random_roundtrip(void **state)
{
    (void)state;
    enum { N = 4000 };
    static float vals[N];
    for (int i = 0; i < N; i++) {
        float f;
        do {
            uint32_t bits = (uint32_t)rng_next();
            memcpy(&f, &bits, sizeof f);
        } while (!isfinite(f));
        vals[i] = f;
    }
    int64_t shape[1] = {N};
    char *s = encode(SHIM_FP32, 1, shape, vals, 0, N, true);
    assert_int_equal(s[0], '[');
    const char *p = s + 1;
    for (int i = 0; i < N; i++) {
        char *end;
        float back = strtof(p, &end);
        assert_true(end > p);
        if (float_bits(back) != float_bits(vals[i]))
            fail_msg("%.9g (0x%08x) encoded as '%.*s'", (double)vals[i], float_bits(vals[i]),
                     (int)(end - p), p);
        char why[160];
        if (!is_shortest(vals[i], p, (size_t)(end - p), why, sizeof why))
            fail_msg("%s", why);
        assert_int_equal(*end, i == N - 1 ? ']' : ',');
        p = end + 1;
    }
    assert_int_equal(*p, '\0');
    free(s);

    /* Doubles read back exactly through strtod. */
    static double dvals[1000];
    for (int i = 0; i < 1000; i++) {
        double d;
        do {
            uint64_t bits = rng_next();
            memcpy(&d, &bits, sizeof d);
        } while (!isfinite(d));
        dvals[i] = d;
    }
    shape[0] = 1000;
    s = encode(SHIM_FP64, 1, shape, dvals, 0, 1000, false);
    p = s + 1;
    for (int i = 0; i < 1000; i++) {
        char *end;
        double back = strtod(p, &end);
        assert_true(end > p);
        assert_memory_equal(&back, &dvals[i], sizeof back);
        p = end + 1;
    }
    free(s);

    /* And what the encoder writes, the decoder reads back exactly. */
    s = encode(SHIM_FP32, 1, (int64_t[]){N}, vals, 0, N, true);
    struct num_array a;
    assert_int_equal(parse_str(s, &a), strlen(s));
    struct tensor t;
    char err[256];
    assert_int_equal(tensor_json_from_array(&a, SHIM_FP32, &t, err, sizeof err), 0);
    assert_memory_equal(t.data, vals, sizeof vals);
    tensor_free(&t);
    num_array_release(&a);
    free(s);
}

static void test_encode_nested(void **state)
{
    (void)state;
    const int32_t i4[] = {1, 2, 3, 4};
    expect_encoding(SHIM_INT32, 2, (int64_t[]){2, 2}, i4, 0, 2, true, "[[1,2],[3,4]]");
    expect_encoding(SHIM_INT32, 2, (int64_t[]){2, 2}, i4, 0, 2, false, "[1,2,3,4]");
    expect_encoding(SHIM_INT32, 1, (int64_t[]){4}, i4, 0, 4, true, "[1,2,3,4]");
    expect_encoding(SHIM_INT32, 2, (int64_t[]){1, 4}, i4, 0, 1, true, "[[1,2,3,4]]");
    expect_encoding(SHIM_INT32, 2, (int64_t[]){4, 1}, i4, 0, 4, true, "[[1],[2],[3],[4]]");

    const float f12[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    expect_encoding(SHIM_FP32, 3, (int64_t[]){2, 3, 2}, f12, 0, 2, true,
                    "[[[1,2],[3,4],[5,6]],[[7,8],[9,10],[11,12]]]");
    expect_encoding(SHIM_FP32, 3, (int64_t[]){3, 2, 2}, f12, 0, 3, true,
                    "[[[1,2],[3,4]],[[5,6],[7,8]],[[9,10],[11,12]]]");
    expect_encoding(SHIM_FP32, 4, (int64_t[]){2, 1, 2, 3}, f12, 0, 2, true,
                    "[[[[1,2,3],[4,5,6]]],[[[7,8,9],[10,11,12]]]]");

    /* Row slicing on dim 0. */
    expect_encoding(SHIM_FP32, 2, (int64_t[]){6, 2}, f12, 1, 2, true, "[[3,4],[5,6]]");
    expect_encoding(SHIM_FP32, 2, (int64_t[]){6, 2}, f12, 5, 1, true, "[[11,12]]");
    expect_encoding(SHIM_FP32, 2, (int64_t[]){6, 2}, f12, 2, 3, false, "[5,6,7,8,9,10]");
    expect_encoding(SHIM_FP32, 3, (int64_t[]){3, 2, 2}, f12, 2, 1, true, "[[[9,10],[11,12]]]");
    expect_encoding(SHIM_FP32, 1, (int64_t[]){12}, f12, 10, 2, true, "[11,12]");

    /* A scalar. */
    const int64_t seven = 7;
    expect_encoding(SHIM_INT64, 0, (int64_t[]){0}, &seven, 0, 1, true, "7");

    /* Every dtype. */
    expect_encoding(SHIM_BOOL, 1, (int64_t[]){3}, "\1\0\1", 0, 3, true, "[true,false,true]");
    expect_encoding(SHIM_UINT8, 1, (int64_t[]){2}, "\0\377", 0, 2, true, "[0,255]");
    const int8_t i8[] = {-128, 127};
    expect_encoding(SHIM_INT8, 1, (int64_t[]){2}, i8, 0, 2, true, "[-128,127]");
    const int16_t i16[] = {-32768, 32767};
    expect_encoding(SHIM_INT16, 1, (int64_t[]){2}, i16, 0, 2, true, "[-32768,32767]");
    const int64_t i64[] = {INT64_MIN, INT64_MAX};
    expect_encoding(SHIM_INT64, 1, (int64_t[]){2}, i64, 0, 2, true,
                    "[-9223372036854775808,9223372036854775807]");
    const double f64[] = {0.1, -1e300, 5e-324};
    expect_encoding(SHIM_FP64, 1, (int64_t[]){3}, f64, 0, 3, true, "[0.1,-1e+300,5e-324]");

    /* Non-finite values are null. */
    const float nf[] = {1.0f, NAN, INFINITY, -INFINITY};
    expect_encoding(SHIM_FP32, 2, (int64_t[]){2, 2}, nf, 0, 2, true, "[[1,null],[null,null]]");
    const double nd[] = {NAN, -INFINITY, 2.0};
    expect_encoding(SHIM_FP64, 1, (int64_t[]){3}, nd, 0, 3, false, "[null,null,2]");
    const uint16_t nh[] = {0x7c00, 0xfc00, 0x7e00, 0x3c00};
    expect_encoding(SHIM_FP16, 1, (int64_t[]){4}, nh, 0, 4, true, "[null,null,null,1]");
    const float nan1 = NAN;
    expect_encoding(SHIM_FP32, 0, (int64_t[]){0}, &nan1, 0, 1, true, "null");

    /* It appends to what is already there. */
    struct strbuf sb = {0};
    strbuf_puts(&sb, "{\"y\":");
    struct shim_tensor v = {
        .dtype = SHIM_INT32, .ndim = 2, .shape = {2, 2}, .data = i4, .nbytes = sizeof i4};
    assert_int_equal(tensor_json_append(&sb, &v, 0, 2, true), 0);
    strbuf_puts(&sb, "}");
    assert_string_equal(sb.data, "{\"y\":[[1,2],[3,4]]}");
    strbuf_free(&sb);
}

/* Tensors with a zero-sized dim encode to the nesting their shape says. */
static void test_encode_zero_sized(void **state)
{
    (void)state;
    const float none[1] = {0};
    expect_encoding(SHIM_FP32, 1, (int64_t[]){0}, none, 0, 0, true, "[]");
    expect_encoding(SHIM_FP32, 2, (int64_t[]){0, 3}, none, 0, 0, true, "[]");
    expect_encoding(SHIM_FP32, 2, (int64_t[]){2, 0}, none, 0, 2, true, "[[],[]]");
    expect_encoding(SHIM_FP32, 3, (int64_t[]){1, 2, 0}, none, 0, 1, true, "[[[],[]]]");
}

/* A document of n copies of item, separated by commas, inside [ ]. */
static char *repeat_doc(const char *head, const char *item, size_t n, const char *tail)
{
    struct strbuf sb = {0};
    assert_int_equal(strbuf_puts(&sb, head), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(strbuf_printf(&sb, i ? ",%s" : "%s", item), 0);
    assert_int_equal(strbuf_puts(&sb, tail), 0);
    return sb.data;
}

static void expect_budget_refusal(const char *body, const char *needle)
{
    struct json_doc doc;
    char err[256] = "";
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), -1);
    assert_null(doc.root);
    assert_non_null(strstr(err, needle));
    json_doc_free(&doc);
}

static void test_value_budget(void **state)
{
    (void)state;
    struct json_doc doc;
    char err[256];
    /* Empty objects: one cJSON node each, refused past the budget. */
    char *body = repeat_doc("{\"x\":[", "{}", JSON_DOC_MAX_VALUES, "]}");
    expect_budget_refusal(body, "values outside numeric arrays");
    free(body);
    /* Small numeric arrays between objects: each is one array and one node. */
    body = repeat_doc("[", "{},[1]", JSON_DOC_MAX_VALUES, "]");
    expect_budget_refusal(body, "a limit of inferd's");
    free(body);
    /* Just under the budget parses. */
    body = repeat_doc("{\"x\":[", "{}", JSON_DOC_MAX_VALUES - 3, "]}");
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    json_doc_free(&doc);
    free(body);
    /* Numbers in a numeric array cost nothing, however many. */
    body = repeat_doc("{\"inputs\":[{\"data\":[", "0", 4 * JSON_DOC_MAX_VALUES, "]}]}");
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    assert_int_equal(doc.n_arrays, 1);
    assert_int_equal(doc.arrays[0].count, 4 * JSON_DOC_MAX_VALUES);
    json_doc_free(&doc);
    free(body);
    /* Commas and brackets inside strings are not values. */
    body = repeat_doc("{\"s\":\"", ",,[{", JSON_DOC_MAX_VALUES, "\"}");
    assert_int_equal(json_doc_parse(body, strlen(body), &doc, err, sizeof err), 0);
    json_doc_free(&doc);
    free(body);
    /* Nesting past the depth limit. */
    char deep[2 * (JSON_DOC_MAX_DEPTH + 1) + 1];
    for (int i = 0; i <= JSON_DOC_MAX_DEPTH; i++) {
        deep[i] = '[';
        deep[JSON_DOC_MAX_DEPTH + 1 + i] = ']';
    }
    deep[sizeof deep - 1] = '\0';
    deep[JSON_DOC_MAX_DEPTH] = '{'; /* not numeric: cJSON would see it all */
    deep[JSON_DOC_MAX_DEPTH + 1] = '}';
    expect_budget_refusal(deep, "nested more than");
    /* The count is cJSON's node count: 3, then 4 (empty containers have no element). */
    assert_int_equal(json_check_budget("[[{}]]", 6, 3, err, sizeof err), 0);
    /* cJSON takes every control byte for whitespace: "[\x01]" is empty. */
    assert_int_equal(json_check_budget("[\x01\x00]", 4, 1, err, sizeof err), 0);
    assert_int_equal(json_check_budget("[[{}],{}]", 9, 3, err, sizeof err), -1);
    assert_int_equal(json_check_budget("[ [ { } ] , { } ]", 17, 4, err, sizeof err), 0);
    assert_int_equal(json_check_budget("{\"a\":1,\"b\":[\"x\",{}]}", 21, 5, err, sizeof err), 0);
    assert_int_equal(json_check_budget("{\"a\":1,\"b\":[\"x\",{}]}", 21, 4, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_shapes),
        cmocka_unit_test(test_consumed_length),
        cmocka_unit_test(test_ragged),
        cmocka_unit_test(test_empty_arrays),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_non_numeric),
        cmocka_unit_test(test_exponents),
        cmocka_unit_test(test_long_fraction_underflow),
        cmocka_unit_test(test_nan_infinity_rejected),
        cmocka_unit_test(test_negative_zero),
        cmocka_unit_test(test_integer_dtypes),
        cmocka_unit_test(test_int64_exact),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_fp16),
        cmocka_unit_test(test_value_budget),
        cmocka_unit_test(test_malformed_documents),
        cmocka_unit_test(test_trailing_garbage_rejected),
        cmocka_unit_test(test_document_arrays),
        cmocka_unit_test(test_strings_are_not_arrays),
        cmocka_unit_test(test_client_string_is_not_a_placeholder),
        cmocka_unit_test(test_bracket_run_is_linear),
        cmocka_unit_test(test_encode_shortest),
        cmocka_unit_test(test_encode_random_roundtrip),
        cmocka_unit_test(test_encode_nested),
        cmocka_unit_test(test_encode_zero_sized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
