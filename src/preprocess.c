/* preprocess.c - image preprocessing (see preprocess.h).
 *
 * The steps and their arithmetic are torchvision 0.14's on a PIL image
 * (Pillow 9.4), so that a model trained with
 *   Resize(S or [H, W]) -> CenterCrop([H, W]) -> ToTensor() -> Normalize(mean, std)
 * gets the same input from inferd:
 *
 * Resize, shorter side to S: for w <= h the size is (S, int(S * h / w)),
 * else (int(S * w / h), S), the quotient computed in double and truncated;
 * an image already that size is left alone.
 *
 * Resampling (PIL's ImagingResample with the BILINEAR filter, 8-bit path):
 * separable, horizontal pass first into an 8-bit intermediate image, then
 * vertical. For each axis, with in/out the sizes, scale = in / out and
 * fs = max(scale, 1), support = 1.0 * fs (the triangle filter widened by
 * the shrink factor: this is the antialiasing). Output pixel i has center
 * c = (i + 0.5) * scale and reads input pixels [lo, hi) with
 * lo = max(0, (int)(c - support + 0.5)), hi = min(in, (int)(c + support + 0.5));
 * pixel x gets weight tri((x - c + 0.5) / fs), tri(t) = max(0, 1 - |t|),
 * and the weights are divided by their sum. They are then rounded to fixed
 * point with 22 fractional bits (away from zero at .5), and each output is
 * (2^21 + sum(weight * pixel)) >> 22, clipped to 0..255.
 *
 * Center crop to [h, w]: top = round((H - h) / 2), left = round((W - w) / 2),
 * rounding half to even (Python's round); a crop larger than the image pads
 * it with zeros first, (d // 2) before and ((d + 1) // 2) after.
 *
 * Values: out = (pixel * scale - mean[c]) / std[c], computed in double and
 * rounded once to the output dtype (torchvision computes pixel / 255, then
 * the subtraction and division, in float32: the results differ by at most
 * an ulp or two of float32). UINT8 outputs are the pixels themselves, and
 * so are an input's whose "normalize" is "device": the shim computes the
 * values there (shim_load_options.normalize). */
#include "preprocess.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

#define PRECISION_BITS 22

/* ---- configuration ---- */

static int parse_pair(const cJSON *item, const char *key, int *h, int *w, bool *single, char *err,
                      size_t err_len)
{
    *single = false;
    if (cJSON_IsNumber(item)) {
        double v = item->valuedouble;
        if (!(v >= 1 && v <= 65535) || v != (double)(int)v)
            goto bad;
        *h = *w = (int)v;
        *single = true;
        return 0;
    }
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
        goto bad;
    for (int i = 0; i < 2; i++) {
        const cJSON *d = cJSON_GetArrayItem(item, i);
        if (!cJSON_IsNumber(d) || !(d->valuedouble >= 1 && d->valuedouble <= 65535) ||
            d->valuedouble != (double)(int)d->valuedouble)
            goto bad;
        *(i == 0 ? h : w) = (int)d->valuedouble;
    }
    return 0;
bad:
    snprintf(err, err_len, "image \"%s\" must be a size S or [H, W] of integers in [1, 65535]",
             key);
    return -1;
}

/* "mean"/"std": one number, or one per channel. */
static int parse_channels(const cJSON *obj, const char *key, int channels, double def, double *out,
                          char *err, size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    for (int c = 0; c < 3; c++)
        out[c] = def;
    if (item == NULL)
        return 0;
    if (cJSON_IsNumber(item)) {
        for (int c = 0; c < 3; c++)
            out[c] = item->valuedouble;
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == channels) {
        for (int c = 0; c < channels; c++) {
            const cJSON *v = cJSON_GetArrayItem(item, c);
            if (!cJSON_IsNumber(v))
                goto bad;
            out[c] = v->valuedouble;
        }
    } else {
        goto bad;
    }
    for (int c = 0; c < channels; c++)
        if (!isfinite(out[c]) || (strcmp(key, "std") == 0 && out[c] == 0))
            goto bad;
    return 0;
bad:
    snprintf(err, err_len, "image \"%s\" must be a number or an array of %d numbers%s", key,
             channels, strcmp(key, "std") == 0 ? ", none of them 0" : "");
    return -1;
}

/* "normalize": "host" (the default: the values are computed here) or
 * "device" (the pixels stay UINT8 up to the model's device). */
static int parse_normalize(const cJSON *obj, struct preprocess_spec *out, char *err, size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "normalize");
    if (item == NULL || (cJSON_IsString(item) && strcmp(item->valuestring, "host") == 0))
        return 0;
    if (!cJSON_IsString(item) || strcmp(item->valuestring, "device") != 0) {
        snprintf(err, err_len, "image \"normalize\" must be \"host\" or \"device\"");
        return -1;
    }
    if (out->model_dtype == SHIM_UINT8) {
        snprintf(err, err_len,
                 "image \"normalize\": \"device\" needs an FP32, FP16 or FP64 input (a UINT8 "
                 "input takes the pixels as they are)");
        return -1;
    }
    out->on_device = true;
    out->dtype = SHIM_UINT8;
    return 0;
}

static int check_shape(const struct preprocess_spec *s, const int64_t *shape, int ndim,
                       bool batching, char *err, size_t err_len)
{
    int want = batching ? 4 : 3;
    if (ndim != want) {
        snprintf(err, err_len, "an image input's shape must be %s (layout %s), got %d dims",
                 s->layout == PREPROCESS_NCHW ? (batching ? "[-1, C, H, W]" : "[C, H, W]")
                                              : (batching ? "[-1, H, W, C]" : "[H, W, C]"),
                 s->layout == PREPROCESS_NCHW ? "NCHW" : "NHWC", ndim);
        return -1;
    }
    const int64_t *d = shape + (batching ? 1 : 0);
    int64_t c = s->layout == PREPROCESS_NCHW ? d[0] : d[2];
    int64_t h = s->layout == PREPROCESS_NCHW ? d[1] : d[0];
    int64_t w = s->layout == PREPROCESS_NCHW ? d[2] : d[1];
    if (c != (int64_t)s->color) {
        snprintf(err, err_len, "image color \"%s\" has %d channels but the shape says %lld",
                 s->color == IMAGE_GRAY ? "gray" : "rgb", (int)s->color, (long long)c);
        return -1;
    }
    int fh = 0, fw = 0; /* the fixed output size, if any */
    if (s->crop_h) {
        fh = s->crop_h;
        fw = s->crop_w;
    } else if (s->resize == PREPROCESS_RESIZE_EXACT) {
        fh = s->resize_h;
        fw = s->resize_w;
    }
    if ((fh && ((h != -1 && h != fh) || (w != -1 && w != fw))) ||
        (!fh && s->resize != PREPROCESS_RESIZE_NONE && (h != -1 || w != -1))) {
        snprintf(err, err_len, "image resize/crop gives %s but the shape declares H=%lld, W=%lld",
                 fh ? "a fixed size" : "a size that varies with the image", (long long)h,
                 (long long)w);
        return -1;
    }
    return 0;
}

int preprocess_spec_parse(const cJSON *obj, enum shim_dtype dtype, const int64_t *shape, int ndim,
                          bool batching, struct preprocess_spec *out, char *err, size_t err_len)
{
    static const char *const known[] = {"color", "resize", "crop",      "scale", "mean",
                                        "std",   "layout", "normalize", NULL};
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(obj)) {
        snprintf(err, err_len, "\"image\" must be an object");
        return -1;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        bool ok = false;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(item->string, known[i]) == 0;
        if (!ok) {
            snprintf(err, err_len,
                     "unknown image key \"%.40s\" (color, resize, crop, scale, mean, std, layout, "
                     "normalize)",
                     item->string);
            return -1;
        }
    }
    const cJSON *color = cJSON_GetObjectItemCaseSensitive(obj, "color");
    if (cJSON_IsString(color) && strcmp(color->valuestring, "gray") == 0) {
        out->color = IMAGE_GRAY;
    } else if (cJSON_IsString(color) && strcmp(color->valuestring, "rgb") == 0) {
        out->color = IMAGE_RGB;
    } else {
        snprintf(err, err_len, "image \"color\" must be \"gray\" or \"rgb\"");
        return -1;
    }
    const cJSON *layout = cJSON_GetObjectItemCaseSensitive(obj, "layout");
    out->layout = PREPROCESS_NCHW;
    if (layout != NULL) {
        if (cJSON_IsString(layout) && strcmp(layout->valuestring, "NHWC") == 0)
            out->layout = PREPROCESS_NHWC;
        else if (!cJSON_IsString(layout) || strcmp(layout->valuestring, "NCHW") != 0) {
            snprintf(err, err_len, "image \"layout\" must be \"NCHW\" or \"NHWC\"");
            return -1;
        }
    }
    bool single;
    const cJSON *resize = cJSON_GetObjectItemCaseSensitive(obj, "resize");
    if (resize != NULL) {
        if (parse_pair(resize, "resize", &out->resize_h, &out->resize_w, &single, err, err_len) !=
            0)
            return -1;
        out->resize = single ? PREPROCESS_RESIZE_SHORTER : PREPROCESS_RESIZE_EXACT;
        out->resize_short = single ? out->resize_h : 0;
    }
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(obj, "crop");
    if (crop != NULL &&
        parse_pair(crop, "crop", &out->crop_h, &out->crop_w, &single, err, err_len) != 0)
        return -1;
    if (dtype != SHIM_FP32 && dtype != SHIM_FP16 && dtype != SHIM_FP64 && dtype != SHIM_UINT8) {
        snprintf(err, err_len, "an image input's datatype must be FP32, FP16, FP64 or UINT8");
        return -1;
    }
    out->dtype = out->model_dtype = dtype;
    if (parse_normalize(obj, out, err, err_len) != 0)
        return -1;
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(obj, "scale");
    bool integral = out->model_dtype == SHIM_UINT8;
    out->scale = integral ? 1.0 : 1.0 / 255.0;
    if (scale != NULL) {
        if (!cJSON_IsNumber(scale) || !isfinite(scale->valuedouble)) {
            snprintf(err, err_len, "image \"scale\" must be a number");
            return -1;
        }
        out->scale = scale->valuedouble;
    }
    int ch = (int)out->color;
    if (parse_channels(obj, "mean", ch, 0.0, out->mean, err, err_len) != 0 ||
        parse_channels(obj, "std", ch, 1.0, out->std, err, err_len) != 0)
        return -1;
    if (integral &&
        (out->scale != 1.0 || out->mean[0] != 0 || out->mean[1] != 0 || out->mean[2] != 0 ||
         out->std[0] != 1 || out->std[1] != 1 || out->std[2] != 1)) {
        snprintf(err, err_len,
                 "a UINT8 image input takes the pixels as they are: "
                 "no scale, mean or std");
        return -1;
    }
    return check_shape(out, shape, ndim, batching, err, err_len);
}

/* The size the resize step gives (before any crop), in double so that a
 * thin image's long side cannot overflow: shorter side S keeps the aspect
 * ratio, so 1 x 4000 at S = 224 is 224 x 896000. */
static void resized_size(const struct preprocess_spec *spec, int width, int height, double *rh,
                         double *rw)
{
    double h = height, w = width;
    if (spec->resize == PREPROCESS_RESIZE_EXACT) {
        h = spec->resize_h;
        w = spec->resize_w;
    } else if (spec->resize == PREPROCESS_RESIZE_SHORTER) {
        long long s = spec->resize_short;
        if (w <= h) {
            h = floor((double)(s * height) / (double)width);
            w = (double)s;
        } else {
            w = floor((double)(s * width) / (double)height);
            h = (double)s;
        }
        if (h < 1)
            h = 1;
        if (w < 1)
            w = 1;
    }
    *rh = h;
    *rw = w;
}

void preprocess_output_size(const struct preprocess_spec *spec, int width, int height, int *out_h,
                            int *out_w)
{
    double h, w;
    resized_size(spec, width, height, &h, &w);
    if (spec->crop_h) {
        h = spec->crop_h;
        w = spec->crop_w;
    }
    *out_h = h > INT_MAX ? INT_MAX : (int)h;
    *out_w = w > INT_MAX ? INT_MAX : (int)w;
}

/* Bytes of one axis's weight tables (see coeffs_compute): bounds and
 * ksize weights per output, and the scratch row of ksize doubles. */
static double table_bytes(double in, double out)
{
    double scale = in / out;
    double ksize = ceil(scale < 1.0 ? 1.0 : scale) * 2 + 1;
    return out * (2 * sizeof(int) + ksize * sizeof(int32_t)) + ksize * sizeof(double);
}

int preprocess_check(const struct preprocess_spec *spec, int width, int height, int *out_h,
                     int *out_w, char *err, size_t err_len)
{
    double rh, rw;
    resized_size(spec, width, height, &rh, &rw);
    if (spec->resize == PREPROCESS_RESIZE_SHORTER) {
        double s = spec->resize_short, max = (double)PREPROCESS_MAX_RESIZED_PIXELS;
        if (4 * s * s > max)
            max = 4 * s * s;
        if (rh * rw > max) {
            snprintf(err, err_len,
                     "a %dx%d image resized to a shorter side of %d would be %.0fx%.0f = %.0f "
                     "pixels, over the limit of %.0f (a limit of inferd's: send a less elongated "
                     "image)",
                     width, height, spec->resize_short, rw, rh, rw * rh, max);
            return -1;
        }
    }
    /* What resize_window allocates: the tables of the axes that change,
     * the horizontally resampled rows (at most every input row) and the
     * window it keeps. */
    double ch = (double)spec->color, work = 0;
    double ww = spec->crop_w && spec->crop_w < rw ? spec->crop_w : rw;
    double wh = spec->crop_h && spec->crop_h < rh ? spec->crop_h : rh;
    bool need_h = rw != width, need_v = rh != height;
    if (need_h)
        work += table_bytes(width, rw);
    if (need_v)
        work += table_bytes(height, rh) + ww * height * ch + ww * ch * sizeof(int32_t);
    if (need_h || need_v)
        work += ww * wh * ch;
    double budget = (double)width * height * ch;
    if (budget < (double)PREPROCESS_MIN_WORK_BYTES)
        budget = (double)PREPROCESS_MIN_WORK_BYTES;
    if (work > budget) {
        snprintf(err, err_len,
                 "resizing a %dx%d image to %.0fx%.0f would take %.0f MB of working memory, over "
                 "the limit of %.0f MB (the larger of %ld MB and the decoded image: a limit of "
                 "inferd's against extreme aspect ratios)",
                 width, height, rw, rh, ceil(work / 1e6), floor(budget / 1e6),
                 PREPROCESS_MIN_WORK_BYTES / 1000000L);
        return -1;
    }
    preprocess_output_size(spec, width, height, out_h, out_w);
    return 0;
}

int preprocess_sample_dims(const struct preprocess_spec *spec, int out_h, int out_w, int64_t *dims)
{
    int64_t c = (int64_t)spec->color;
    if (spec->layout == PREPROCESS_NCHW) {
        dims[0] = c;
        dims[1] = out_h;
        dims[2] = out_w;
    } else {
        dims[0] = out_h;
        dims[1] = out_w;
        dims[2] = c;
    }
    return 3;
}

/* ---- resampling (PIL's 8-bit bilinear, see the top of the file) ---- */

struct coeffs {
    int ksize;
    int *bounds; /* per output: first input index, count */
    int32_t *kk; /* per output: ksize fixed-point weights */
};

static double triangle(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static int coeffs_compute(int in_size, int out_size, struct coeffs *c)
{
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w = malloc((size_t)ksize * sizeof *w);
    c->ksize = ksize;
    c->bounds = malloc((size_t)out_size * 2 * sizeof *c->bounds);
    c->kk = malloc((size_t)out_size * (size_t)ksize * sizeof *c->kk);
    if (w == NULL || c->bounds == NULL || c->kk == NULL) {
        free(w);
        free(c->bounds);
        free(c->kk);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = triangle((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->kk + (size_t)xx * (size_t)ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            v *= (double)(1 << PRECISION_BITS);
            k[x] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    free(w);
    return 0;
}

static void coeffs_free(struct coeffs *c)
{
    free(c->bounds);
    free(c->kk);
}

static inline uint8_t clip8(int32_t v)
{
    if (v >= (1 << PRECISION_BITS << 8))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* Rows [y0, y0 + rows) of src, resampled along x into dst (rows x out_w):
 * output columns [xx0, xx0 + out_w) of the full resize. The channels of a
 * pixel are summed together (3 or 1 at a time). */
static void resample_horizontal(const uint8_t *src, int src_w, int ch, int y0, int rows,
                                const struct coeffs *c, int xx0, int out_w, uint8_t *dst)
{
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)(y0 + y) * (size_t)src_w * (size_t)ch;
        uint8_t *out = dst + (size_t)y * (size_t)out_w * (size_t)ch;
        if (c == NULL) { /* no resampling along x: the window's columns */
            memcpy(out, in + (size_t)xx0 * (size_t)ch, (size_t)out_w * (size_t)ch);
            continue;
        }
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[(xx0 + xx) * 2], xmax = c->bounds[(xx0 + xx) * 2 + 1];
            const int32_t *k = c->kk + (size_t)(xx0 + xx) * (size_t)c->ksize;
            const uint8_t *p = in + (size_t)xmin * (size_t)ch;
            if (ch == 3 && c->ksize == 3 && xmin + 3 <= src_w) {
                /* Enlarging or shrinking by under 1.5x: three taps, the
                 * ones past xmax weighted 0, so summing all three is exact. */
                int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                s0 += p[0] * k[0] + p[3] * k[1] + p[6] * k[2];
                s1 += p[1] * k[0] + p[4] * k[1] + p[7] * k[2];
                s2 += p[2] * k[0] + p[5] * k[1] + p[8] * k[2];
                out[xx * 3] = clip8(s0);
                out[xx * 3 + 1] = clip8(s1);
                out[xx * 3 + 2] = clip8(s2);
            } else if (ch == 3) {
                int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < xmax; x++) {
                    s0 += p[x * 3] * k[x];
                    s1 += p[x * 3 + 1] * k[x];
                    s2 += p[x * 3 + 2] * k[x];
                }
                out[xx * 3] = clip8(s0);
                out[xx * 3 + 1] = clip8(s1);
                out[xx * 3 + 2] = clip8(s2);
            } else {
                int32_t s0 = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++)
                    s0 += p[x] * k[x];
                out[xx] = clip8(s0);
            }
        }
    }
}

/* acc[i] += p[i] * k: restrict tells the compiler that the bytes do not
 * alias the sums, so that it vectorises the loop. */
static void accumulate_row(int32_t *restrict acc, const uint8_t *restrict p, int32_t k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += p[i] * k;
}

/* src resampled along y into dst (w x out_h): output rows [yy0, yy0 +
 * out_h) of the full resize; bounds are relative to row y_shift of src. Each output row is a
 * weighted sum of whole input rows, accumulated in acc (one int32 per byte of a row): the same
 * integer sums as PIL's column-by-column loop, in an order the compiler vectorises. */
static void resample_vertical(const uint8_t *src, int w, int ch, const struct coeffs *c,
                              int y_shift, int yy0, int out_h, uint8_t *dst, int32_t *acc)
{
    size_t row = (size_t)w * (size_t)ch;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = c->bounds[(yy0 + yy) * 2] - y_shift, ymax = c->bounds[(yy0 + yy) * 2 + 1];
        const int32_t *k = c->kk + (size_t)(yy0 + yy) * (size_t)c->ksize;
        for (size_t i = 0; i < row; i++)
            acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++)
            accumulate_row(acc, src + (size_t)(ymin + y) * row, k[y], row);
        uint8_t *out = dst + (size_t)yy * row;
        for (size_t i = 0; i < row; i++)
            out[i] = clip8(acc[i]);
    }
}

/* The window [wx, wx + ww) x [wy, wy + wh) of src resized to out_w x
 * out_h, into dst (ww x wh): each output pixel of PIL's resample depends
 * only on the input, so computing only the pixels a crop keeps gives the
 * same bytes. Returns 0 or -1 (out of memory). */
static int resize_window(const struct image *src, int out_w, int out_h, int wx, int wy, int ww,
                         int wh, struct image *dst)
{
    memset(dst, 0, sizeof *dst);
    int ch = src->channels;
    struct coeffs cx = {0}, cy = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    bool need_h = out_w != src->width, need_v = out_h != src->height;
    int rc = -1;
    if ((need_h && coeffs_compute(src->width, out_w, &cx) != 0) ||
        (need_v && coeffs_compute(src->height, out_h, &cy) != 0))
        goto out;
    /* The input rows the window needs. */
    int first = wy, last = wy + wh;
    if (need_v) {
        first = cy.bounds[wy * 2];
        last = cy.bounds[(wy + wh - 1) * 2] + cy.bounds[(wy + wh - 1) * 2 + 1];
    }
    dst->pixels = malloc((size_t)ww * (size_t)wh * (size_t)ch);
    if (dst->pixels == NULL)
        goto out;
    dst->width = ww;
    dst->height = wh;
    dst->channels = ch;
    if (!need_v) {
        resample_horizontal(src->pixels, src->width, ch, first, wh, need_h ? &cx : NULL, wx, ww,
                            dst->pixels);
    } else {
        tmp = malloc((size_t)ww * (size_t)(last - first) * (size_t)ch);
        acc = malloc((size_t)ww * (size_t)ch * sizeof *acc);
        if (tmp == NULL || acc == NULL)
            goto out;
        resample_horizontal(src->pixels, src->width, ch, first, last - first, need_h ? &cx : NULL,
                            wx, ww, tmp);
        resample_vertical(tmp, ww, ch, &cy, first, wy, wh, dst->pixels, acc);
    }
    rc = 0;
out:
    free(acc);
    free(tmp);
    coeffs_free(&cx);
    coeffs_free(&cy);
    if (rc != 0)
        image_free(dst);
    return rc;
}

int preprocess_resize(const struct image *src, int out_w, int out_h, struct image *dst)
{
    return resize_window(src, out_w, out_h, 0, 0, out_w, out_h, dst);
}

/* ---- crop and values ---- */

/* Offset of a centered crop of c out of s (negative: zero padding). */
static int crop_offset(int s, int c)
{
    if (c > s)
        return -((c - s) / 2);
    return (int)nearbyint((double)(s - c) / 2.0); /* half to even, as Python's round */
}

/* Write one output row of channel c: out[x] = value of the pixel at
 * (sy, x + left) of src, 0 outside it, through lut; step is the distance
 * between a row's elements (1 in NCHW, C in NHWC). One copy per dtype. */
#define DEFINE_WRITE_ROW(name, type)                                                               \
    static void name(const struct image *src, int sy, int left, int ow, int c, const type *lut,    \
                     type *out, size_t step)                                                       \
    {                                                                                              \
        int ch = src->channels;                                                                    \
        int x0 = left < 0 ? -left : 0, x1 = src->width - left;                                     \
        if (sy < 0 || sy >= src->height)                                                           \
            x0 = x1 = ow;                                                                          \
        if (x1 > ow)                                                                               \
            x1 = ow;                                                                               \
        if (x0 > x1)                                                                               \
            x0 = x1;                                                                               \
        for (int x = 0; x < x0; x++)                                                               \
            out[(size_t)x * step] = lut[0];                                                        \
        if (x0 < x1) {                                                                             \
            const uint8_t *p =                                                                     \
                src->pixels +                                                                      \
                ((size_t)sy * (size_t)src->width + (size_t)(x0 + left)) * (size_t)ch + (size_t)c;  \
            for (int x = x0; x < x1; x++, p += ch)                                                 \
                out[(size_t)x * step] = lut[*p];                                                   \
        }                                                                                          \
        for (int x = x1; x < ow; x++)                                                              \
            out[(size_t)x * step] = lut[0];                                                        \
    }
DEFINE_WRITE_ROW(write_row_f32, float)
DEFINE_WRITE_ROW(write_row_f64, double)
DEFINE_WRITE_ROW(write_row_u16, uint16_t)
DEFINE_WRITE_ROW(write_row_u8, uint8_t)

/* The cropped window of src (offset top, left; zeros outside) as values of
 * spec's dtype in spec's layout. Each (channel, pixel value) is computed
 * once, in double, and rounded once to the dtype. */
static void write_values(const struct preprocess_spec *spec, const struct image *src, int top,
                         int left, int oh, int ow, void *dst)
{
    int ch = (int)spec->color;
    union {
        float f32[3][256];
        double f64[3][256];
        uint16_t f16[3][256];
        uint8_t u8[3][256];
    } lut;
    for (int c = 0; c < ch; c++) {
        for (int v = 0; v < 256; v++) {
            double x = ((double)v * spec->scale - spec->mean[c]) / spec->std[c];
            switch (spec->dtype) {
            case SHIM_FP32: lut.f32[c][v] = (float)x; break;
            case SHIM_FP64: lut.f64[c][v] = x; break;
            case SHIM_FP16: lut.f16[c][v] = dtype_double_to_half(x); break;
            default: lut.u8[c][v] = (uint8_t)v; break;
            }
        }
    }
    bool nchw = spec->layout == PREPROCESS_NCHW;
    size_t plane = (size_t)oh * (size_t)ow, step = nchw ? 1 : (size_t)ch;
    for (int c = 0; c < ch; c++) {
        for (int y = 0; y < oh; y++) {
            size_t at = nchw ? (size_t)c * plane + (size_t)y * (size_t)ow
                             : (size_t)y * (size_t)ow * (size_t)ch + (size_t)c;
            int sy = y + top;
            switch (spec->dtype) {
            case SHIM_FP32:
                write_row_f32(src, sy, left, ow, c, lut.f32[c], (float *)dst + at, step);
                break;
            case SHIM_FP64:
                write_row_f64(src, sy, left, ow, c, lut.f64[c], (double *)dst + at, step);
                break;
            case SHIM_FP16:
                write_row_u16(src, sy, left, ow, c, lut.f16[c], (uint16_t *)dst + at, step);
                break;
            default:
                write_row_u8(src, sy, left, ow, c, lut.u8[c], (uint8_t *)dst + at, step);
                break;
            }
        }
    }
}

int preprocess_run(const struct preprocess_spec *spec, const struct image *img, void *dst,
                   char *err, size_t err_len)
{
    struct image resized = {0};
    const struct image *src = img;
    if (img->channels != (int)spec->color) {
        snprintf(err, err_len, "internal error: image has %d channels, spec wants %d",
                 img->channels, (int)spec->color);
        return -1;
    }
    int rh = img->height, rw = img->width;
    if (spec->resize != PREPROCESS_RESIZE_NONE) {
        struct preprocess_spec no_crop = *spec;
        no_crop.crop_h = no_crop.crop_w = 0;
        preprocess_output_size(&no_crop, img->width, img->height, &rh, &rw);
    }
    int oh = rh, ow = rw, top = 0, left = 0;
    if (spec->crop_h) {
        oh = spec->crop_h;
        ow = spec->crop_w;
        top = crop_offset(rh, oh);
        left = crop_offset(rw, ow);
    }
    if (rh != img->height || rw != img->width) {
        /* Resize only the part of the resized image the crop keeps. */
        int wy = top > 0 ? top : 0, wx = left > 0 ? left : 0;
        int wh = (top + oh < rh ? top + oh : rh) - wy, ww = (left + ow < rw ? left + ow : rw) - wx;
        if (resize_window(img, rw, rh, wx, wy, ww, wh, &resized) != 0) {
            snprintf(err, err_len, "out of memory resizing a %dx%d image to %dx%d", img->width,
                     img->height, rw, rh);
            return -1;
        }
        src = &resized;
        top -= wy;
        left -= wx;
    }
    write_values(spec, src, top, left, oh, ow, dst);
    image_free(&resized);
    return 0;
}
