/* test_image.c - image_probe and image_decode: every PNG colour type and
 * bit depth, gray/RGB/CMYK JPEGs, conversions to gray and RGB, and the
 * refusals (truncated, corrupt, unsupported format, over the pixel limit
 * before any decoding). Test images are encoded here with libpng and
 * TurboJPEG. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "image.h"

/* ---- encoders for the test images ---- */

struct mem {
    uint8_t *data;
    size_t len;
};

static void png_write_mem(png_structp png, png_bytep data, png_size_t n)
{
    struct mem *m = png_get_io_ptr(png);
    m->data = realloc(m->data, m->len + n);
    assert_non_null(m->data);
    memcpy(m->data + m->len, data, n);
    m->len += n;
}

static void png_flush_mem(png_structp png)
{
    (void)png;
}

/* Encode w x h samples (rows packed at the given bit depth) as a PNG,
 * Adam7-interlaced when interlace is set. */
static struct mem encode_png_ex(int w, int h, int type, int depth, const uint8_t *rows_data,
                                const png_color *palette, int n_palette, const uint8_t *trns,
                                int n_trns, bool interlace)
{
    struct mem m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed writing a test image");
    png_set_write_fn(png, &m, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette)
        png_set_PLTE(png, info, palette, n_palette);
    if (trns)
        png_set_tRNS(png, info, trns, n_trns, NULL);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    int channels = type == PNG_COLOR_TYPE_RGB          ? 3
                   : type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                   : type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                       : 1;
    size_t rowbytes = ((size_t)w * (size_t)channels * (size_t)depth + 7) / 8;
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < h; y++)
            png_write_row(png, rows_data + (size_t)y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return m;
}

static struct mem encode_png(int w, int h, int type, int depth, const uint8_t *rows_data,
                             const png_color *palette, int n_palette, const uint8_t *trns,
                             int n_trns)
{
    return encode_png_ex(w, h, type, depth, rows_data, palette, n_palette, trns, n_trns, false);
}

static struct mem encode_jpeg(int w, int h, int pf, int subsamp, const uint8_t *pixels)
{
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *out = NULL;
    unsigned long len = 0;
    assert_int_equal(tjCompress2(tj, pixels, w, 0, h, pf, &out, &len, subsamp, 100, 0), 0);
    tjDestroy(tj);
    struct mem m = {malloc(len), len};
    memcpy(m.data, out, len);
    tjFree(out);
    return m;
}

static enum image_status decode(struct mem m, enum image_color color, struct image *img)
{
    char err[256] = "";
    enum image_status st = image_decode(m.data, m.len, color, 0, img, err, sizeof err);
    if (st != IMAGE_OK)
        print_message("image_decode: %s\n", err);
    return st;
}

/* ---- PNG ---- */

static void png_gray_to_gray_and_rgb(void **state)
{
    (void)state;
    uint8_t px[6] = {0, 1, 127, 128, 254, 255};
    struct mem m = encode_png(3, 2, PNG_COLOR_TYPE_GRAY, 8, px, NULL, 0, NULL, 0);
    struct image img;
    assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
    assert_int_equal(img.width, 3);
    assert_int_equal(img.height, 2);
    assert_int_equal(img.channels, 1);
    assert_memory_equal(img.pixels, px, 6);
    image_free(&img);
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    assert_int_equal(img.channels, 3);
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++)
            assert_int_equal(img.pixels[i * 3 + c], px[i]);
    image_free(&img);
    free(m.data);
}

static void png_rgb_to_gray_uses_pil_luma(void **state)
{
    (void)state;
    uint8_t px[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30};
    struct mem m = encode_png(2, 2, PNG_COLOR_TYPE_RGB, 8, px, NULL, 0, NULL, 0);
    struct image img;
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    assert_memory_equal(img.pixels, px, sizeof px);
    image_free(&img);
    assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
    /* PIL: Image.new("RGB", ...).convert("L") gives 76, 150, 29 and 124. */
    uint8_t want[4] = {76, 150, 29, 124};
    assert_memory_equal(img.pixels, want, 4);
    image_free(&img);
    free(m.data);
}

static void png_alpha_is_dropped(void **state)
{
    (void)state;
    uint8_t rgba[] = {10, 20, 30, 0, 40, 50, 60, 255};
    struct mem m = encode_png(2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, NULL, 0, NULL, 0);
    struct image img;
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    uint8_t want[] = {10, 20, 30, 40, 50, 60};
    assert_memory_equal(img.pixels, want, 6);
    image_free(&img);
    free(m.data);
    uint8_t ga[] = {77, 0, 99, 128};
    m = encode_png(2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, NULL, 0, NULL, 0);
    assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
    assert_int_equal(img.pixels[0], 77);
    assert_int_equal(img.pixels[1], 99);
    image_free(&img);
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    uint8_t want_rgb[] = {77, 77, 77, 99, 99, 99};
    assert_memory_equal(img.pixels, want_rgb, 6);
    image_free(&img);
    free(m.data);
}

static void png_palette_expands(void **state)
{
    (void)state;
    png_color pal[3] = {{255, 0, 0}, {0, 128, 0}, {1, 2, 3}};
    uint8_t trns[3] = {0, 255, 128}; /* transparency is dropped, as PIL's convert("RGB") */
    uint8_t idx[] = {2, 0, 1, 2};
    struct mem m = encode_png(4, 1, PNG_COLOR_TYPE_PALETTE, 8, idx, pal, 3, trns, 3);
    struct image img;
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    uint8_t want[] = {1, 2, 3, 255, 0, 0, 0, 128, 0, 1, 2, 3};
    assert_memory_equal(img.pixels, want, sizeof want);
    image_free(&img);
    free(m.data);
}

static void png_16bit_keeps_high_byte(void **state)
{
    (void)state;
    uint8_t px[] = {0x12, 0x34, 0xff, 0xff, 0x00, 0xff}; /* big-endian samples */
    struct mem m = encode_png(3, 1, PNG_COLOR_TYPE_GRAY, 16, px, NULL, 0, NULL, 0);
    struct image img;
    assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
    uint8_t want[] = {0x12, 0xff, 0x00};
    assert_memory_equal(img.pixels, want, 3);
    image_free(&img);
    free(m.data);
    uint8_t rgb16[] = {0xab, 0, 0xcd, 0, 0xef, 0xff};
    m = encode_png(1, 1, PNG_COLOR_TYPE_RGB, 16, rgb16, NULL, 0, NULL, 0);
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    uint8_t want_rgb[] = {0xab, 0xcd, 0xef};
    assert_memory_equal(img.pixels, want_rgb, 3);
    image_free(&img);
    free(m.data);
}

static void png_low_bit_gray_scales_to_255(void **state)
{
    (void)state;
    uint8_t bits[] = {0xa0}; /* 1-bit: 1 0 1 0 */
    struct mem m = encode_png(4, 1, PNG_COLOR_TYPE_GRAY, 1, bits, NULL, 0, NULL, 0);
    struct image img;
    assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
    uint8_t want[] = {255, 0, 255, 0};
    assert_memory_equal(img.pixels, want, 4);
    image_free(&img);
    free(m.data);
    uint8_t two[] = {0x1b}; /* 2-bit: 0 1 2 3 */
    m = encode_png(4, 1, PNG_COLOR_TYPE_GRAY, 2, two, NULL, 0, NULL, 0);
    assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
    uint8_t want2[] = {0, 85, 170, 255};
    assert_memory_equal(img.pixels, want2, 4);
    image_free(&img);
    free(m.data);
}

/* ---- JPEG ---- */

static void jpeg_gray_and_rgb(void **state)
{
    (void)state;
    uint8_t gray[64];
    for (int i = 0; i < 64; i++)
        gray[i] = 100;
    struct mem m = encode_jpeg(8, 8, TJPF_GRAY, TJSAMP_GRAY, gray);
    struct image img;
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    assert_int_equal(img.channels, 3);
    for (int i = 0; i < 64 * 3; i++)
        assert_int_equal(img.pixels[i], 100);
    image_free(&img);
    free(m.data);
    uint8_t rgb[16 * 16 * 3];
    for (int i = 0; i < 16 * 16; i++) {
        rgb[i * 3] = 200;
        rgb[i * 3 + 1] = 50;
        rgb[i * 3 + 2] = 10;
    }
    m = encode_jpeg(16, 16, TJPF_RGB, TJSAMP_444, rgb);
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    for (int i = 0; i < 16 * 16 * 3; i++)
        assert_in_range(img.pixels[i], rgb[i] - 2, rgb[i] + 2); /* quality 100, 4:4:4 */
    image_free(&img);
    assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
    assert_in_range(img.pixels[0], 90 - 2, 90 + 2); /* PIL: (200, 50, 10) -> L 90 */
    image_free(&img);
    free(m.data);
}

static void jpeg_cmyk_converts_like_pil(void **state)
{
    (void)state;
    /* TurboJPEG writes CMYK inverted with an Adobe marker, as Photoshop and
     * PIL do; given inverted (c', m', y', k') = (255, 0, 255, 255), i.e. no
     * cyan, full magenta, no yellow, no black, the colour is (255, 0, 255). */
    uint8_t cmyk[8 * 8 * 4];
    for (int i = 0; i < 64; i++) {
        cmyk[i * 4] = 255;
        cmyk[i * 4 + 1] = 0;
        cmyk[i * 4 + 2] = 255;
        cmyk[i * 4 + 3] = 255;
    }
    struct mem m = encode_jpeg(8, 8, TJPF_CMYK, TJSAMP_444, cmyk);
    struct image img;
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    assert_in_range(img.pixels[0], 253, 255);
    assert_in_range(img.pixels[1], 0, 2);
    assert_in_range(img.pixels[2], 253, 255);
    image_free(&img);
    free(m.data);
}

/* ---- refusals ---- */

static enum image_status refuse(const void *data, size_t len, long long max_pixels,
                                const char *expect_in_err)
{
    char err[256] = "";
    struct image img;
    enum image_status st = image_decode(data, len, IMAGE_RGB, max_pixels, &img, err, sizeof err);
    assert_int_not_equal(st, IMAGE_OK);
    assert_null(img.pixels);
    if (expect_in_err && strstr(err, expect_in_err) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, expect_in_err);
    return st;
}

static void truncated_and_corrupt_are_400(void **state)
{
    (void)state;
    uint8_t rgb[32 * 32 * 3];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7);
    struct mem j = encode_jpeg(32, 32, TJPF_RGB, TJSAMP_420, rgb);
    assert_int_equal(refuse(j.data, j.len / 2, 0, "truncated"), IMAGE_CORRUPT);
    assert_int_equal(refuse(j.data, 40, 0, NULL), IMAGE_CORRUPT);
    struct mem p = encode_png(32, 32, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, NULL, 0);
    assert_int_equal(refuse(p.data, p.len - 20, 0, "PNG"), IMAGE_CORRUPT);
    assert_int_equal(refuse(p.data, 30, 0, "PNG"), IMAGE_CORRUPT);
    p.data[40] ^= 0xff; /* inside the image data: its CRC no longer matches */
    assert_int_equal(refuse(p.data, p.len, 0, "PNG"), IMAGE_CORRUPT);
    assert_int_equal(refuse("", 0, 0, "empty"), IMAGE_CORRUPT);
    assert_int_equal(refuse("hello, world", 12, 0, "not a JPEG or PNG"), IMAGE_CORRUPT);
    free(j.data);
    free(p.data);
}

static void other_formats_are_415(void **state)
{
    (void)state;
    assert_int_equal(refuse("GIF89a\x01\x00\x01\x00", 10, 0, "GIF"), IMAGE_UNSUPPORTED);
    assert_int_equal(refuse("RIFF\x10\0\0\0WEBPVP8 ", 16, 0, "WebP"), IMAGE_UNSUPPORTED);
    assert_int_equal(refuse("BM\x36\0\0\0", 6, 0, "BMP"), IMAGE_UNSUPPORTED);
    assert_int_equal(refuse("II*\0\x08\0\0\0", 8, 0, "TIFF"), IMAGE_UNSUPPORTED);
}

static void pixel_limit_refuses_from_the_header(void **state)
{
    (void)state;
    /* A PNG header declaring 100000 x 100000 followed by nothing decodable:
     * refused for its size, which shows no decoding was tried. */
    uint8_t bomb[33] = {0x89, 'P', 'N', 'G',  '\r', '\n', 0x1a, '\n', 0,    0, 0, 13, 'I', 'H', 'D',
                        'R',  0,   1,   0x86, 0xa0, 0,    1,    0x86, 0xa0, 8, 2, 0,  0,   0};
    assert_int_equal(refuse(bomb, sizeof bomb, 40000000, "over the limit"), IMAGE_CORRUPT);
    struct image_info info;
    char err[256];
    assert_int_equal(image_probe(bomb, sizeof bomb, 0, &info, err, sizeof err), IMAGE_OK);
    assert_int_equal(info.width, 100000);
    assert_int_equal(info.format, IMAGE_FORMAT_PNG);
    uint8_t rgb[64 * 48 * 3] = {0};
    struct mem j = encode_jpeg(64, 48, TJPF_RGB, TJSAMP_444, rgb);
    assert_int_equal(refuse(j.data, j.len, 64 * 48 - 1, "3072 pixels"), IMAGE_CORRUPT);
    struct image img;
    assert_int_equal(image_decode(j.data, j.len, IMAGE_RGB, 64 * 48, &img, err, sizeof err),
                     IMAGE_OK); /* exactly at the limit is fine */
    image_free(&img);
    assert_int_equal(image_probe(j.data, j.len, 0, &info, err, sizeof err), IMAGE_OK);
    assert_int_equal(info.format, IMAGE_FORMAT_JPEG);
    assert_int_equal(info.width, 64);
    assert_int_equal(info.height, 48);
    free(j.data);
}

/* Rows are read one at a time (no table of row pointers): interlaced
 * images still come out whole, and so do very thin ones either way. */
static void png_interlaced_and_thin(void **state)
{
    (void)state;
    enum { W = 13, H = 11 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++)
        px[i] = (uint8_t)(i * 7 + 3);
    struct mem m = encode_png_ex(W, H, PNG_COLOR_TYPE_RGB, 8, px, NULL, 0, NULL, 0, true);
    struct image img;
    assert_int_equal(decode(m, IMAGE_RGB, &img), IMAGE_OK);
    assert_int_equal(img.width, W);
    assert_int_equal(img.height, H);
    assert_memory_equal(img.pixels, px, sizeof px);
    image_free(&img);
    free(m.data);
    enum { N = 5000 };
    uint8_t *line = malloc(N);
    assert_non_null(line);
    for (int i = 0; i < N; i++)
        line[i] = (uint8_t)(i % 251);
    for (int tall = 0; tall < 2; tall++) {
        for (int interlace = 0; interlace < 2; interlace++) {
            m = encode_png_ex(tall ? 1 : N, tall ? N : 1, PNG_COLOR_TYPE_GRAY, 8, line, NULL, 0,
                              NULL, 0, interlace);
            assert_int_equal(decode(m, IMAGE_GRAY, &img), IMAGE_OK);
            assert_int_equal(img.width * img.height, N);
            assert_memory_equal(img.pixels, line, N);
            image_free(&img);
            free(m.data);
        }
    }
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(png_gray_to_gray_and_rgb),
        cmocka_unit_test(png_rgb_to_gray_uses_pil_luma),
        cmocka_unit_test(png_alpha_is_dropped),
        cmocka_unit_test(png_palette_expands),
        cmocka_unit_test(png_16bit_keeps_high_byte),
        cmocka_unit_test(png_low_bit_gray_scales_to_255),
        cmocka_unit_test(jpeg_gray_and_rgb),
        cmocka_unit_test(jpeg_cmyk_converts_like_pil),
        cmocka_unit_test(truncated_and_corrupt_are_400),
        cmocka_unit_test(other_formats_are_415),
        cmocka_unit_test(pixel_limit_refuses_from_the_header),
        cmocka_unit_test(png_interlaced_and_thin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
