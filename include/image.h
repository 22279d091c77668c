/* image.h - JPEG and PNG decoding to 8-bit gray or RGB pixels: a cheap
 * header probe (format, size, refused above a pixel limit before any
 * decoding) and a full decode with colour conversion, both refusing bad
 * input with a status (400 corrupt, 415 unsupported) and a message. */
#ifndef INFERD_IMAGE_H
#define INFERD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

enum image_format { IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG };

/* The colour modes a model can declare: 1 or 3 channels, 8 bits each. */
enum image_color { IMAGE_GRAY = 1, IMAGE_RGB = 3 };

/* Why an image was refused (image_batch maps it to an infer_status). */
enum image_status {
    IMAGE_OK = 0,
    IMAGE_CORRUPT,     /* truncated, corrupt, or over the pixel limit */
    IMAGE_UNSUPPORTED, /* a format inferd does not decode (GIF, WebP...) */
};

struct image_info {
    enum image_format format;
    int width, height;
};

/* Decoded pixels, row-major, channels interleaved (RGBRGB... or gray). */
struct image {
    int width, height;
    int channels; /* 1 or 3 */
    uint8_t *pixels;
};

/* Read only the header of an encoded image: its format and size. Refuses an
 * image whose width * height is over max_pixels (0: no limit) without
 * decoding it. Returns IMAGE_OK, or IMAGE_CORRUPT / IMAGE_UNSUPPORTED with
 * err set. */
enum image_status image_probe(const uint8_t *data, size_t len, long long max_pixels,
                              struct image_info *info, char *err, size_t err_len);

/* Decode a JPEG or PNG into color (probing first, with the same limit).
 * Gray, gray+alpha, RGB, RGBA, palette, 1/2/4/16-bit PNGs and gray, YCbCr,
 * RGB and CMYK/YCCK JPEGs are converted (see image.c for how). Returns
 * IMAGE_OK with out->pixels malloc'd (free with image_free), or a refusal
 * with err set and out empty. */
enum image_status image_decode(const uint8_t *data, size_t len, enum image_color color,
                               long long max_pixels, struct image *out, char *err, size_t err_len);

void image_free(struct image *img);

/* Tune glibc's malloc for per-request buffers of a few MB (decoded pixels,
 * input tensors): keep them in the heap after free instead of returning
 * them to the kernel, which page-faults them back on the next request (on
 * the VMs measured, faults were 60% of a 224x224 JPEG's decode+preprocess
 * time). Call once at start-up, before threads. Returns 0, or -1 when the
 * C library refused. */
int image_tune_malloc(void);

#endif
