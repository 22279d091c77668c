/* fuzz_image.c - libFuzzer target for image decoding plus preprocessing:
 * the first two bytes choose the colour mode, resize, crop, layout and
 * dtype, the rest is the encoded image. Checks that a decode succeeds only
 * after a probe that agrees on the size, that the pixel limit holds, that
 * preprocess_check bounds what it accepts, and (through ASan) that
 * preprocessing stays inside its output buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "preprocess.h"
#include "test_support.h"

/* The pixel limit the decoders are given. The server's default is larger;
 * the code paths are the same at any limit, and a small one lets a tiny
 * input claim at most 65,536 pixels, so each run costs microseconds, not
 * the milliseconds a 2,000,000-pixel decode under ASan takes (250 inputs/s
 * with that limit, too slow for 10^7 executions). */
#define MAX_PIXELS (256 * 256)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t opt = data[0], dim = data[1];
    data += 2;
    size -= 2;
    struct preprocess_spec spec = {0};
    spec.color = (opt & 1) ? IMAGE_RGB : IMAGE_GRAY;
    spec.layout = (opt & 2) ? PREPROCESS_NHWC : PREPROCESS_NCHW;
    static const enum shim_dtype dtypes[4] = {SHIM_FP32, SHIM_FP16, SHIM_FP64, SHIM_UINT8};
    spec.dtype = dtypes[(opt >> 2) & 3];
    spec.scale = spec.dtype == SHIM_UINT8 ? 1.0 : 1.0 / 255;
    for (int c = 0; c < 3; c++)
        spec.std[c] = 1.0;
    int s = 1 + (dim & 63);
    switch ((opt >> 4) & 3) {
    case 1:
        spec.resize = PREPROCESS_RESIZE_SHORTER;
        spec.resize_short = s;
        break;
    case 2:
        spec.resize = PREPROCESS_RESIZE_EXACT;
        spec.resize_h = s;
        spec.resize_w = 1 + (dim >> 2);
        break;
    default: break;
    }
    if (opt & 0x40) {
        spec.crop_h = 1 + (dim & 31);
        spec.crop_w = 1 + (dim >> 3);
    }
    char err[256];
    struct image_info info;
    enum image_status probed = image_probe(data, size, MAX_PIXELS, &info, err, sizeof err);
    CHECK(probed == IMAGE_OK || probed == IMAGE_CORRUPT || probed == IMAGE_UNSUPPORTED);
    struct image img;
    enum image_status st = image_decode(data, size, spec.color, MAX_PIXELS, &img, err, sizeof err);
    if (st != IMAGE_OK) {
        CHECK(img.pixels == NULL);
        CHECK(err[0] != '\0');
        return 0;
    }
    CHECK(probed == IMAGE_OK);
    CHECK(img.width == info.width && img.height == info.height);
    CHECK((long long)img.width * img.height <= MAX_PIXELS);
    CHECK(img.channels == (int)spec.color);
    int h, w;
    if (preprocess_check(&spec, img.width, img.height, &h, &w, err, sizeof err) != 0) {
        CHECK(err[0] != '\0'); /* refused as the server refuses it, before decoding */
        image_free(&img);
        return 0;
    }
    int h2, w2;
    preprocess_output_size(&spec, img.width, img.height, &h2, &w2);
    CHECK(h == h2 && w == w2);
    /* An aspect-keeping resize stays within preprocess_check's bound (the
     * larger of PREPROCESS_MAX_RESIZED_PIXELS and 4 S^2; h and w are its
     * sides rounded), whatever the input's own pixel limit. */
    double bound = (double)PREPROCESS_MAX_RESIZED_PIXELS;
    if (4.0 * spec.resize_short * spec.resize_short > bound)
        bound = 4.0 * spec.resize_short * spec.resize_short;
    CHECK((double)h * w <= bound + h + w || spec.crop_h ||
          spec.resize != PREPROCESS_RESIZE_SHORTER);
    size_t n = (size_t)h * (size_t)w * (size_t)spec.color;
    void *out = malloc(n * 8);
    if (out != NULL) {
        CHECK(preprocess_run(&spec, &img, out, err, sizeof err) == 0);
        free(out);
    }
    image_free(&img);
    return 0;
}
