/* test_preprocess.c - preprocessing: the resize matches PIL's bilinear
 * output (values computed with Pillow 9.4 and written here), torchvision's
 * output sizes and center-crop offsets (half to even, zero padding), the
 * scale/mean/std arithmetic, layouts and dtypes, and config validation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "preprocess.h"
#include "dtype.h"

static struct image make_image(int w, int h, int ch, const uint8_t *px)
{
    struct image img = {w, h, ch, malloc((size_t)w * h * ch)};
    assert_non_null(img.pixels);
    memcpy(img.pixels, px, (size_t)w * h * ch);
    return img;
}

static void resize_matches_pil(void **state)
{
    (void)state;
    /* Image.fromarray(a).resize((3, 1), Image.BILINEAR) in Pillow 9.4 */
    uint8_t row[8] = {0, 10, 20, 30, 40, 50, 60, 255};
    struct image src = make_image(8, 1, 1, row), dst;
    assert_int_equal(preprocess_resize(&src, 3, 1, &dst), 0);
    uint8_t want[3] = {11, 35, 113};
    assert_memory_equal(dst.pixels, want, 3);
    image_free(&dst);
    image_free(&src);
    /* upsampling 2x2 -> 5x3 */
    uint8_t sq[4] = {0, 100, 200, 50};
    src = make_image(2, 2, 1, sq);
    assert_int_equal(preprocess_resize(&src, 5, 3, &dst), 0);
    uint8_t want_up[15] = {0, 10, 50, 90, 100, 100, 98, 88, 78, 75, 200, 185, 125, 65, 50};
    assert_memory_equal(dst.pixels, want_up, 15);
    image_free(&dst);
    image_free(&src);
    /* RGB 7x5 -> 3x2, both axes shrinking: pixel i = i * 7 % 256 */
    uint8_t rgb[7 * 5 * 3];
    for (int i = 0; i < 7 * 5 * 3; i++)
        rgb[i] = (uint8_t)(i * 7 % 256);
    src = make_image(7, 5, 3, rgb);
    assert_int_equal(preprocess_resize(&src, 3, 2, &dst), 0);
    uint8_t want_rgb[18] = {95,  102, 109, 137, 138, 140, 136, 98,  105,
                            133, 140, 147, 147, 154, 117, 114, 116, 123};
    assert_memory_equal(dst.pixels, want_rgb, 18);
    image_free(&dst);
    image_free(&src);
}

static void resize_keeps_constant_and_identity(void **state)
{
    (void)state;
    uint8_t *px = malloc(97 * 61 * 3);
    assert_non_null(px);
    memset(px, 173, 97 * 61 * 3);
    struct image src = make_image(97, 61, 3, px), dst;
    assert_int_equal(preprocess_resize(&src, 13, 29, &dst), 0);
    for (int i = 0; i < 13 * 29 * 3; i++)
        assert_int_equal(dst.pixels[i], 173);
    image_free(&dst);
    for (int i = 0; i < 97 * 61 * 3; i++)
        src.pixels[i] = (uint8_t)(i * 31);
    assert_int_equal(preprocess_resize(&src, 97, 61, &dst), 0);
    assert_memory_equal(dst.pixels, src.pixels, 97 * 61 * 3);
    image_free(&dst);
    image_free(&src);
    free(px);
}

static void output_size_follows_torchvision(void **state)
{
    (void)state;
    struct preprocess_spec s = {
        .color = IMAGE_RGB, .resize = PREPROCESS_RESIZE_SHORTER, .resize_short = 256};
    int h, w;
    preprocess_output_size(&s, 500, 333, &h, &w); /* int(256 * 500 / 333) = 384 */
    assert_int_equal(h, 256);
    assert_int_equal(w, 384);
    preprocess_output_size(&s, 451, 300, &h, &w); /* chelsea.png: int(384.853) */
    assert_int_equal(w, 384);
    preprocess_output_size(&s, 300, 451, &h, &w);
    assert_int_equal(h, 384);
    assert_int_equal(w, 256);
    preprocess_output_size(&s, 10, 10, &h, &w);
    assert_int_equal(h, 256);
    assert_int_equal(w, 256);
    s.crop_h = 224;
    s.crop_w = 200;
    preprocess_output_size(&s, 1920, 1080, &h, &w);
    assert_int_equal(h, 224);
    assert_int_equal(w, 200);
    s.resize = PREPROCESS_RESIZE_EXACT;
    s.resize_h = 30;
    s.resize_w = 40;
    s.crop_h = s.crop_w = 0;
    preprocess_output_size(&s, 1920, 1080, &h, &w);
    assert_int_equal(h, 30);
    assert_int_equal(w, 40);
}

/* Crop a 1-row gradient (pixel = x) of width src_w to crop_w; UINT8 out. */
static void crop_row(int src_w, int crop_w, uint8_t *out)
{
    uint8_t px[64];
    for (int i = 0; i < src_w; i++)
        px[i] = (uint8_t)(i + 1);
    struct image img = make_image(src_w, 1, 1, px);
    struct preprocess_spec s = {.color = IMAGE_GRAY,
                                .crop_h = 1,
                                .crop_w = crop_w,
                                .scale = 1,
                                .std = {1, 1, 1},
                                .dtype = SHIM_UINT8};
    char err[128];
    assert_int_equal(preprocess_run(&s, &img, out, err, sizeof err), 0);
    image_free(&img);
}

static void center_crop_rounds_half_to_even_and_pads(void **state)
{
    (void)state;
    uint8_t out[64];
    crop_row(5, 4, out); /* round(0.5) = 0 */
    assert_int_equal(out[0], 1);
    crop_row(7, 4, out); /* round(1.5) = 2 */
    assert_int_equal(out[0], 3);
    crop_row(9, 4, out); /* round(2.5) = 2 */
    assert_int_equal(out[0], 3);
    crop_row(3, 6, out); /* pad (6-3)//2 = 1 before, 2 after */
    uint8_t want[6] = {0, 1, 2, 3, 0, 0};
    assert_memory_equal(out, want, 6);
}

static void values_layout_and_dtypes(void **state)
{
    (void)state;
    uint8_t px[2 * 1 * 3] = {0, 128, 255, 51, 102, 153};
    struct image img = make_image(2, 1, 3, px);
    struct preprocess_spec s = {.color = IMAGE_RGB,
                                .scale = 1.0 / 255,
                                .mean = {0.5, 0.25, 0},
                                .std = {0.5, 0.25, 2},
                                .layout = PREPROCESS_NCHW,
                                .dtype = SHIM_FP32};
    char err[128];
    float nchw[6], nhwc[6];
    assert_int_equal(preprocess_run(&s, &img, nchw, err, sizeof err), 0);
    s.layout = PREPROCESS_NHWC;
    assert_int_equal(preprocess_run(&s, &img, nhwc, err, sizeof err), 0);
    for (int x = 0; x < 2; x++) {
        for (int c = 0; c < 3; c++) {
            double want = (px[x * 3 + c] / 255.0 - s.mean[c]) / s.std[c];
            assert_float_equal(nchw[c * 2 + x], want, 1e-6);
            assert_float_equal(nhwc[x * 3 + c], want, 1e-6);
        }
    }
    uint16_t half[6];
    s.dtype = SHIM_FP16;
    assert_int_equal(preprocess_run(&s, &img, half, err, sizeof err), 0);
    for (int i = 0; i < 6; i++)
        assert_float_equal(dtype_half_to_float(half[i]), nhwc[i], 2e-3);
    uint8_t raw[6];
    struct preprocess_spec u = {.color = IMAGE_RGB,
                                .scale = 1,
                                .std = {1, 1, 1},
                                .layout = PREPROCESS_NCHW,
                                .dtype = SHIM_UINT8};
    assert_int_equal(preprocess_run(&u, &img, raw, err, sizeof err), 0);
    uint8_t want[6] = {0, 51, 128, 102, 255, 153};
    assert_memory_equal(raw, want, 6);
    image_free(&img);
}

static int parse(const char *json, enum shim_dtype dtype, const int64_t *shape, int ndim,
                 struct preprocess_spec *s, char *err, size_t err_len)
{
    cJSON *obj = cJSON_Parse(json);
    assert_non_null(obj);
    int rc = preprocess_spec_parse(obj, dtype, shape, ndim, true, s, err, err_len);
    cJSON_Delete(obj);
    return rc;
}

static void spec_parse_and_refusals(void **state)
{
    (void)state;
    struct preprocess_spec s;
    char err[256];
    int64_t nchw[4] = {-1, 3, 224, 224};
    assert_int_equal(parse("{\"color\":\"rgb\",\"resize\":256,\"crop\":[224,224],"
                           "\"mean\":[0.485,0.456,0.406],\"std\":[0.229,0.224,0.225]}",
                           SHIM_FP32, nchw, 4, &s, err, sizeof err),
                     0);
    assert_int_equal(s.resize, PREPROCESS_RESIZE_SHORTER);
    assert_int_equal(s.resize_short, 256);
    assert_int_equal(s.crop_h, 224);
    assert_float_equal(s.scale, 1.0 / 255, 1e-12);
    assert_float_equal(s.std[2], 0.225, 1e-12);
    int64_t nhwc[4] = {-1, 28, 28, 1};
    assert_int_equal(parse("{\"color\":\"gray\",\"resize\":[28,28],\"layout\":\"NHWC\"}",
                           SHIM_UINT8, nhwc, 4, &s, err, sizeof err),
                     0);
    assert_int_equal(s.layout, PREPROCESS_NHWC);
    struct {
        const char *json;
        enum shim_dtype dtype;
        const char *says;
    } bad[] = {
        {"{\"color\":\"cmyk\"}", SHIM_FP32, "color"},
        {"{\"color\":\"gray\",\"crop\":224}", SHIM_FP32, "channels"},
        {"{\"color\":\"rgb\",\"crop\":[200,224]}", SHIM_FP32, "shape declares"},
        {"{\"color\":\"rgb\",\"resize\":256}", SHIM_FP32, "varies"},
        {"{\"color\":\"rgb\",\"crop\":224,\"std\":[1,0,1]}", SHIM_FP32, "std"},
        {"{\"color\":\"rgb\",\"crop\":224,\"mean\":[1,2]}", SHIM_FP32, "mean"},
        {"{\"color\":\"rgb\",\"crop\":224,\"resise\":1}", SHIM_FP32, "unknown"},
        {"{\"color\":\"rgb\",\"crop\":224,\"mean\":0.5}", SHIM_UINT8, "UINT8"},
        {"{\"color\":\"rgb\",\"crop\":224}", SHIM_INT64, "datatype"},
        {"{\"color\":\"rgb\",\"crop\":0}", SHIM_FP32, "crop"},
        {"{\"color\":\"rgb\",\"crop\":224,\"layout\":\"CHW\"}", SHIM_FP32, "layout"},
        {"{\"color\":\"rgb\",\"crop\":224,\"normalize\":\"gpu\"}", SHIM_FP32, "normalize"},
        {"{\"color\":\"rgb\",\"crop\":224,\"normalize\":\"device\"}", SHIM_UINT8, "UINT8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(parse(bad[i].json, bad[i].dtype, nchw, 4, &s, err, sizeof err), -1);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("%s: error '%s' does not mention '%s'", bad[i].json, err, bad[i].says);
    }
    /* Normalised on the device: the pixels stay UINT8, the model's dtype and
     * the values' parameters are kept for the shim. */
    assert_int_equal(parse("{\"color\":\"rgb\",\"crop\":224,\"mean\":0.5,\"std\":0.25,"
                           "\"normalize\":\"device\"}",
                           SHIM_FP16, nchw, 4, &s, err, sizeof err),
                     0);
    assert_true(s.on_device);
    assert_int_equal(s.dtype, SHIM_UINT8);
    assert_int_equal(s.model_dtype, SHIM_FP16);
    assert_float_equal(s.scale, 1.0 / 255, 1e-12);
    assert_float_equal(s.mean[1], 0.5, 1e-12);
    assert_float_equal(s.std[2], 0.25, 1e-12);
    assert_int_equal(parse("{\"color\":\"rgb\",\"crop\":224,\"normalize\":\"host\"}", SHIM_FP32,
                           nchw, 4, &s, err, sizeof err),
                     0);
    assert_false(s.on_device);
    assert_int_equal(s.dtype, SHIM_FP32);
    assert_int_equal(s.model_dtype, SHIM_FP32);
    int64_t var[4] = {-1, 3, -1, -1};
    assert_int_equal(
        parse("{\"color\":\"rgb\",\"resize\":256}", SHIM_FP32, var, 4, &s, err, sizeof err), 0);
}

static void check_bounds_resize_size_and_memory(void **state)
{
    (void)state;
    struct preprocess_spec s = {0};
    char err[300];
    int h = 0, w = 0;
    s.color = IMAGE_RGB;
    s.resize = PREPROCESS_RESIZE_SHORTER;
    s.resize_short = 224;
    assert_int_equal(preprocess_check(&s, 4000, 3000, &h, &w, err, sizeof err), 0);
    assert_int_equal(h, 224);
    assert_int_equal(w, 298);
    /* 1 x 4000 at S = 224 would be 224 x 896000: refused, crop or not. */
    assert_int_equal(preprocess_check(&s, 1, 4000, &h, &w, err, sizeof err), -1);
    assert_non_null(strstr(err, "224x896000"));
    assert_non_null(strstr(err, "over the limit of 4194304"));
    s.crop_h = s.crop_w = 224;
    assert_int_equal(preprocess_check(&s, 1, 4000, &h, &w, err, sizeof err), -1);
    /* A side too long for an int is refused, not overflowed. */
    assert_int_equal(preprocess_check(&s, 40000000, 1, &h, &w, err, sizeof err), -1);
    preprocess_output_size(&s, 40000000, 1, &h, &w);
    assert_int_equal(h, 224);
    s.crop_h = s.crop_w = 0;
    preprocess_output_size(&s, 40000000, 1, &h, &w);
    assert_int_equal(w, INT_MAX);
    /* A large S allows 4 S^2 pixels: an aspect ratio of 4. */
    s.resize_short = 2000;
    assert_int_equal(preprocess_check(&s, 2000, 8000, &h, &w, err, sizeof err), 0);
    assert_int_equal(h, 8000);
    assert_int_equal(preprocess_check(&s, 2000, 8004, &h, &w, err, sizeof err), -1);

    /* Exact resize of a thin image: the weight tables (8 bytes per input
     * column) or the intermediate rows would dwarf the decoded image. */
    s.color = IMAGE_GRAY;
    s.resize = PREPROCESS_RESIZE_EXACT;
    s.resize_h = s.resize_w = 28;
    assert_int_equal(preprocess_check(&s, 40000000, 1, &h, &w, err, sizeof err), -1);
    assert_non_null(strstr(err, "working memory"));
    assert_int_equal(preprocess_check(&s, 1, 40000000, &h, &w, err, sizeof err), -1);
    assert_non_null(strstr(err, "working memory"));
    assert_int_equal(preprocess_check(&s, 20000, 2000, &h, &w, err, sizeof err), 0);
    assert_int_equal(h, 28);
    assert_int_equal(w, 28);
    assert_int_equal(preprocess_check(&s, 100000, 1, &h, &w, err, sizeof err), 0); /* 3.2 MB */
    assert_int_equal(preprocess_check(&s, 28, 28, &h, &w, err, sizeof err), 0);
    s.resize = PREPROCESS_RESIZE_NONE; /* no resize: nothing to bound here */
    assert_int_equal(preprocess_check(&s, 40000000, 1, &h, &w, err, sizeof err), 0);
    assert_int_equal(w, 40000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resize_matches_pil),
        cmocka_unit_test(resize_keeps_constant_and_identity),
        cmocka_unit_test(output_size_follows_torchvision),
        cmocka_unit_test(center_crop_rounds_half_to_even_and_pads),
        cmocka_unit_test(values_layout_and_dtypes),
        cmocka_unit_test(spec_parse_and_refusals),
        cmocka_unit_test(check_bounds_resize_size_and_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
