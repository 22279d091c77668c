/* preprocess.h - image preprocessing declared per model input in
 * config.json ("image": {...}): colour mode, resize, center crop, scale,
 * mean and std, layout, and the input's datatype; computed the way
 * torchvision's transforms compute it on PIL images. */
#ifndef INFERD_PREPROCESS_H
#define INFERD_PREPROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "image.h"
#include "torch_shim.h"

enum preprocess_resize {
    PREPROCESS_RESIZE_NONE,
    PREPROCESS_RESIZE_SHORTER, /* shorter side to S, aspect ratio kept */
    PREPROCESS_RESIZE_EXACT,   /* to [H, W] */
};

enum preprocess_layout { PREPROCESS_NCHW, PREPROCESS_NHWC };

struct preprocess_spec {
    enum image_color color;
    enum preprocess_resize resize;
    int resize_short;       /* PREPROCESS_RESIZE_SHORTER */
    int resize_h, resize_w; /* PREPROCESS_RESIZE_EXACT */
    int crop_h, crop_w;     /* 0: no crop */
    double scale;           /* pixel * scale, then (- mean) / std */
    double mean[3], std[3];
    enum preprocess_layout layout;
    enum shim_dtype dtype; /* what preprocessing writes: FP32, FP16, FP64 or UINT8 */
    /* "normalize": "device": the model takes model_dtype (FP32, FP16 or
     * FP64), but preprocessing stops at the pixels (dtype is UINT8): the
     * shim copies them to the device and computes (pixel * scale - mean) /
     * std there. Otherwise false, and model_dtype == dtype. */
    bool on_device;
    enum shim_dtype model_dtype;
};

/* Parse an input's "image" object. dtype is the input's declared datatype
 * (out->model_dtype; out->dtype too unless "normalize" is "device");
 * shape its declared shape (with the batch dim when batching), which must
 * agree with the colour mode, layout and the fixed output size, if any.
 * Returns 0, or -1 with err saying which key is wrong. */
int preprocess_spec_parse(const cJSON *obj, enum shim_dtype dtype, const int64_t *shape, int ndim,
                          bool batching, struct preprocess_spec *out, char *err, size_t err_len);

/* The most pixels an aspect-keeping resize ("resize": S, no matter the
 * crop) may give one image: 2048 x 2048, or 4 S^2 when S is over 1024. */
#define PREPROCESS_MAX_RESIZED_PIXELS (2048L * 2048)

/* The working memory a resize may take (weight tables, intermediate rows)
 * when the decoded image is smaller; else the decoded image's size. */
#define PREPROCESS_MIN_WORK_BYTES (16L * 1000 * 1000)

/* Check, from its size alone (before decoding), that a width x height
 * image can be preprocessed within the limits above, and give its output
 * [H, W] (as preprocess_output_size). Returns 0, or -1 with err set (a
 * 400: the resize would be too large or take too much memory). */
int preprocess_check(const struct preprocess_spec *spec, int width, int height, int *out_h,
                     int *out_w, char *err, size_t err_len);

/* The [H, W] an image of width x height comes out as (a side too large
 * for an int comes out as INT_MAX: preprocess_check refuses those). */
void preprocess_output_size(const struct preprocess_spec *spec, int width, int height, int *out_h,
                            int *out_w);

/* Dims of one sample of output (without the batch dim): [C, H, W] or
 * [H, W, C]; returns the count (3). */
int preprocess_sample_dims(const struct preprocess_spec *spec, int out_h, int out_w, int64_t *dims);

/* Resize src to out_w x out_h with PIL's bilinear filter, antialiased when
 * shrinking (support scaled by the shrink factor), as Image.resize does for
 * 8-bit images. Returns 0, or -1 (out of memory) with dst empty. */
int preprocess_resize(const struct image *src, int out_w, int out_h, struct image *dst);

/* Resize, crop, convert and lay out img (already in spec->color) into dst,
 * which holds one sample (C * H * W elements of spec->dtype). Returns 0, or
 * -1 with err set (out of memory). */
int preprocess_run(const struct preprocess_spec *spec, const struct image *img, void *dst,
                   char *err, size_t err_len);

#endif
