/* image.c - JPEG (TurboJPEG) and PNG (libpng) decoding (see image.h).
 *
 * Colour conversions follow what PIL's Image.convert does, so that inferd's
 * pixels match a Python pipeline built on PIL + torchvision:
 * - RGB -> gray: L = (R*19595 + G*38470 + B*7471 + 2^15) >> 16 (ITU-R 601-2
 *   luma in 16-bit fixed point, PIL's formula);
 * - gray -> RGB: the value in all three channels;
 * - alpha is dropped, not composited (PIL's RGBA -> RGB);
 * - palette PNGs are expanded through the palette (transparency dropped);
 *   1, 2 and 4-bit gray PNGs are scaled to 0..255;
 * - 16-bit PNG samples keep their high byte (PIL does the same for RGB and
 *   RGBA; for 16-bit gray PIL clips to 255 instead, which inferd does not);
 * - CMYK and YCCK JPEGs are taken as Adobe's inverted CMYK (what Photoshop
 *   and PIL write) and converted as PIL does: with c, k the ink amounts,
 *   R = (255 - k) - (c * (255 - k)) / 255, rounded like PIL's MULDIV255.
 * JPEGs are decoded with libjpeg's defaults (accurate integer IDCT, smooth
 * chroma upsampling), the settings PIL uses, so YCbCr JPEGs decode to the
 * same RGB bytes. A JPEG that ends early is refused (PIL: "image file is
 * truncated"); libjpeg's other warnings (e.g. extraneous bytes before a
 * marker) are tolerated, as PIL tolerates them. */
#include "image.h"

#include <malloc.h>
#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Name a format inferd recognises but does not decode, or NULL. */
static const char *other_format(const uint8_t *d, size_t len)
{
    if (len >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
        return "GIF";
    if (len >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        return "WebP";
    if (len >= 2 && memcmp(d, "BM", 2) == 0)
        return "BMP";
    if (len >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0))
        return "TIFF";
    if (len >= 12 && memcmp(d + 4, "ftyp", 4) == 0)
        return "HEIF/AVIF";
    if (len >= 4 && memcmp(d, "\0\0\1\0", 4) == 0)
        return "ICO";
    return NULL;
}

static enum image_status check_size(int width, int height, long long max_pixels, char *err,
                                    size_t err_len)
{
    if (width <= 0 || height <= 0) {
        snprintf(err, err_len, "image header declares an empty size %dx%d", width, height);
        return IMAGE_CORRUPT;
    }
    long long pixels = (long long)width * height;
    if (max_pixels > 0 && pixels > max_pixels) {
        snprintf(err, err_len,
                 "image of %dx%d = %lld pixels is over the limit of %lld "
                 "(--max-image-pixels); refused before decoding",
                 width, height, pixels, max_pixels);
        return IMAGE_CORRUPT;
    }
    return IMAGE_OK;
}

static enum image_status probe_png(const uint8_t *d, size_t len, struct image_info *info, char *err,
                                   size_t err_len)
{
    /* signature, then the IHDR chunk: length 13, "IHDR", width, height... */
    if (len < 8 + 8 + 13 || be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0) {
        snprintf(err, err_len, "corrupt PNG: no IHDR chunk after the signature");
        return IMAGE_CORRUPT;
    }
    uint32_t w = be32(d + 16), h = be32(d + 20);
    if (w > 0x7fffffffu || h > 0x7fffffffu) {
        snprintf(err, err_len, "corrupt PNG: size %ux%u out of range", w, h);
        return IMAGE_CORRUPT;
    }
    info->format = IMAGE_FORMAT_PNG;
    info->width = (int)w;
    info->height = (int)h;
    return IMAGE_OK;
}

static enum image_status probe_jpeg(const uint8_t *d, size_t len, struct image_info *info,
                                    char *err, size_t err_len)
{
    tjhandle tj = tjInitDecompress();
    if (tj == NULL) {
        snprintf(err, err_len, "out of memory starting the JPEG decoder");
        return IMAGE_CORRUPT;
    }
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    int rc = tjDecompressHeader3(tj, d, (unsigned long)len, &w, &h, &subsamp, &colorspace);
    if (rc != 0)
        snprintf(err, err_len, "corrupt JPEG: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    if (rc != 0)
        return IMAGE_CORRUPT;
    info->format = IMAGE_FORMAT_JPEG;
    info->width = w;
    info->height = h;
    return IMAGE_OK;
}

enum image_status image_probe(const uint8_t *data, size_t len, long long max_pixels,
                              struct image_info *info, char *err, size_t err_len)
{
    enum image_status st;
    memset(info, 0, sizeof *info);
    if (len == 0) {
        snprintf(err, err_len, "empty image");
        return IMAGE_CORRUPT;
    }
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) {
        st = probe_jpeg(data, len, info, err, err_len);
    } else if (len >= 8 && memcmp(data, png_signature, 8) == 0) {
        st = probe_png(data, len, info, err, err_len);
    } else {
        const char *other = other_format(data, len);
        if (other) {
            snprintf(err, err_len, "%s images are not supported: send JPEG or PNG", other);
            return IMAGE_UNSUPPORTED;
        }
        snprintf(err, err_len, "not a JPEG or PNG image (unknown signature)");
        return IMAGE_CORRUPT;
    }
    if (st != IMAGE_OK)
        return st;
    return check_size(info->width, info->height, max_pixels, err, err_len);
}

void image_free(struct image *img)
{
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

int image_tune_malloc(void)
{
    /* Below 32 MiB from the heap, not mmap; trim the heap's top only past
     * 64 MiB free. (Setting either turns glibc's dynamic thresholds off.) */
    int ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) && mallopt(M_TRIM_THRESHOLD, 64 << 20);
    return ok ? 0 : -1;
}

/* ---- colour conversion (in place where the pixel shrinks) ---- */

static uint8_t luma(uint8_t r, uint8_t g, uint8_t b)
{
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

static uint8_t muldiv255(int a, int b)
{
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

/* Convert n pixels of src_ch channels (1: gray, 2: gray+alpha, 3: RGB,
 * 4: RGBA, or 4 with cmyk: inverted CMYK) into dst of color's channels.
 * dst may equal src when color's pixel is no larger. */
static void convert_pixels(const uint8_t *src, int src_ch, bool cmyk, uint8_t *dst,
                           enum image_color color, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = src + i * (size_t)src_ch;
        uint8_t r, g, b;
        if (cmyk) {
            int nk = s[3]; /* inverted: 255 - k */
            r = (uint8_t)(nk - muldiv255(255 - s[0], nk));
            g = (uint8_t)(nk - muldiv255(255 - s[1], nk));
            b = (uint8_t)(nk - muldiv255(255 - s[2], nk));
        } else if (src_ch <= 2) {
            r = g = b = s[0];
        } else {
            r = s[0];
            g = s[1];
            b = s[2];
        }
        if (color == IMAGE_GRAY) {
            dst[i] = src_ch <= 2 && !cmyk ? s[0] : luma(r, g, b);
        } else {
            dst[i * 3] = r;
            dst[i * 3 + 1] = g;
            dst[i * 3 + 2] = b;
        }
    }
}

/* Size of a w x h x ch buffer, or 0 when it overflows size_t. */
static size_t pixel_bytes(int w, int h, int ch)
{
    size_t n = (size_t)w;
    if (n > SIZE_MAX / (size_t)h)
        return 0;
    n *= (size_t)h;
    if (n > SIZE_MAX / (size_t)ch)
        return 0;
    return n * (size_t)ch;
}

static enum image_status decode_jpeg(const uint8_t *d, size_t len, const struct image_info *info,
                                     enum image_color color, struct image *out, char *err,
                                     size_t err_len)
{
    enum image_status st = IMAGE_CORRUPT;
    uint8_t *buf = NULL;
    tjhandle tj = tjInitDecompress();
    if (tj == NULL) {
        snprintf(err, err_len, "out of memory starting the JPEG decoder");
        return IMAGE_CORRUPT;
    }
    int w, h, subsamp, cs;
    if (tjDecompressHeader3(tj, d, (unsigned long)len, &w, &h, &subsamp, &cs) != 0 ||
        w != info->width || h != info->height) {
        snprintf(err, err_len, "corrupt JPEG: %s", tjGetErrorStr2(tj));
        goto out;
    }
    bool cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    bool gray_src = cs == TJCS_GRAY;
    int pf = cmyk ? TJPF_CMYK : gray_src ? TJPF_GRAY : TJPF_RGB;
    int ch = tjPixelSize[pf];
    /* Room for the decoded pixels and for the converted ones. */
    int room = ch > (int)color ? ch : (int)color;
    size_t bytes = pixel_bytes(w, h, room);
    if (bytes == 0 || (buf = malloc(bytes)) == NULL) {
        snprintf(err, err_len, "out of memory decoding a %dx%d JPEG", w, h);
        goto out;
    }
    if (tjDecompress2(tj, d, (unsigned long)len, buf, w, 0, h, pf, 0) != 0) {
        const char *why = tjGetErrorStr2(tj);
        bool warning = tjGetErrorCode(tj) == TJERR_WARNING;
        if (!warning || strstr(why, "Premature end") != NULL) {
            snprintf(err, err_len, "corrupt or truncated JPEG: %s", why);
            goto out;
        }
    }
    size_t n = (size_t)w * (size_t)h;
    if (ch != (int)color || cmyk) {
        if (ch < (int)color) { /* gray -> RGB grows: convert back to front */
            for (size_t i = n; i-- > 0;) {
                uint8_t v = buf[i];
                buf[i * 3] = buf[i * 3 + 1] = buf[i * 3 + 2] = v;
            }
        } else {
            convert_pixels(buf, ch, cmyk, buf, color, n);
        }
    }
    out->width = w;
    out->height = h;
    out->channels = (int)color;
    out->pixels = buf;
    buf = NULL;
    st = IMAGE_OK;
out:
    free(buf);
    tjDestroy(tj);
    return st;
}

/* libpng reads from memory through this cursor. */
struct png_source {
    const uint8_t *data;
    size_t len, pos;
    char *err;
    size_t err_len;
};

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
    struct png_source *src = png_get_io_ptr(png);
    if (n > src->len - src->pos)
        png_error(png, "truncated PNG (the data ends early)");
    memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_source *src = png_get_error_ptr(png);
    snprintf(src->err, src->err_len, "corrupt PNG: %s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* e.g. a bad ancillary chunk: PIL reads past it too */
}

static enum image_status decode_png(const uint8_t *d, size_t len, const struct image_info *info,
                                    enum image_color color, struct image *out, char *err,
                                    size_t err_len)
{
    struct png_source src = {d, len, 0, err, err_len};
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    png_infop pinfo = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile buf = NULL;
    if (pinfo == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(err, err_len, "out of memory starting the PNG decoder");
        return IMAGE_CORRUPT;
    }
    if (setjmp(png_jmpbuf(png))) {
        free(buf);
        png_destroy_read_struct(&png, &pinfo, NULL);
        return IMAGE_CORRUPT; /* err set by png_on_error */
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, (png_uint_32)info->width, (png_uint_32)info->height);
    png_read_info(png, pinfo);
    png_uint_32 w = png_get_image_width(png, pinfo), h = png_get_image_height(png, pinfo);
    if ((int)w != info->width || (int)h != info->height)
        png_error(png, "size changed after the header check");
    int type = png_get_color_type(png, pinfo);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, pinfo) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    png_set_strip_16(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, pinfo);
    int ch = png_get_channels(png, pinfo);
    size_t rowbytes = png_get_rowbytes(png, pinfo);
    if (ch < 1 || ch > 4 || rowbytes != (size_t)w * (size_t)ch)
        png_error(png, "unexpected pixel layout");
    int room = ch > (int)color ? ch : (int)color;
    size_t bytes = pixel_bytes((int)w, (int)h, room);
    if (bytes == 0 || (buf = malloc(bytes)) == NULL)
        png_error(png, "out of memory");
    /* Decode into the tail of the buffer, convert towards its head. Row by
     * row, each pass over every row (libpng fills in an interlaced image's
     * pixels pass by pass): no table of row pointers, which for a 1-pixel
     * wide image would be 8 bytes per pixel. */
    uint8_t *decoded = buf + (bytes - (size_t)w * h * (size_t)ch);
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < h; y++)
            png_read_row(png, decoded + (size_t)y * rowbytes, NULL);
    png_read_end(png, NULL);
    size_t n = (size_t)w * h;
    if (ch != (int)color || decoded != buf)
        convert_pixels(decoded, ch, false, buf, color, n);
    png_destroy_read_struct(&png, &pinfo, NULL);
    out->width = (int)w;
    out->height = (int)h;
    out->channels = (int)color;
    out->pixels = buf;
    return IMAGE_OK;
}

enum image_status image_decode(const uint8_t *data, size_t len, enum image_color color,
                               long long max_pixels, struct image *out, char *err, size_t err_len)
{
    struct image_info info;
    memset(out, 0, sizeof *out);
    enum image_status st = image_probe(data, len, max_pixels, &info, err, err_len);
    if (st != IMAGE_OK)
        return st;
    if (info.format == IMAGE_FORMAT_JPEG)
        return decode_jpeg(data, len, &info, color, out, err, err_len);
    return decode_png(data, len, &info, color, out, err, err_len);
}
