/* image_speed.c - inferd's image path on one core: decode + preprocess
 * (resize shorter side 256, center crop 224, ToTensor + ImageNet mean/std,
 * FP32 NCHW) of each file given, repeated for SECONDS of this thread's CPU
 * time per file (CPU time, not wall time: the machine is shared). Prints one
 * line per file: "IMAGE <file> <width>x<height> images=<n> ms_per_image=<t>".
 * bench/image_speed.py runs it beside PIL + torchvision.
 *
 *   build/bench/image_speed SECONDS FILE...
 *
 * IMAGE_SPEED_DEFAULT_MALLOC=1 leaves glibc's malloc as it is (the daemon
 * tunes it with image_tune_malloc; Python does not). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "preprocess.h"

/* CPU time of this thread: what one image costs a core, whatever else
 * the (shared) machine runs meanwhile. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SECONDS FILE...\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    if (getenv("IMAGE_SPEED_DEFAULT_MALLOC") == NULL)
        image_tune_malloc(); /* as the daemon does at start-up */
    struct preprocess_spec spec = {
        .color = IMAGE_RGB,
        .resize = PREPROCESS_RESIZE_SHORTER,
        .resize_short = 256,
        .crop_h = 224,
        .crop_w = 224,
        .scale = 1.0 / 255,
        .mean = {0.485, 0.456, 0.406},
        .std = {0.229, 0.224, 0.225},
        .layout = PREPROCESS_NCHW,
        .dtype = SHIM_FP32,
    };
    float *out = malloc(3 * 224 * 224 * sizeof *out);
    if (out == NULL)
        return 1;
    for (int f = 2; f < argc; f++) {
        size_t len;
        unsigned char *data = read_all(argv[f], &len);
        if (data == NULL) {
            fprintf(stderr, "cannot read %s\n", argv[f]);
            return 1;
        }
        char err[256];
        struct image img = {0};
        long n = 0;
        double t0 = now_s(), t = t0;
        while (t - t0 < seconds || n < 3) {
            if (image_decode(data, len, IMAGE_RGB, 0, &img, err, sizeof err) != IMAGE_OK ||
                preprocess_run(&spec, &img, out, err, sizeof err) != 0) {
                fprintf(stderr, "%s: %s\n", argv[f], err);
                return 1;
            }
            n++;
            t = now_s();
            if (t - t0 >= seconds && n >= 3)
                break;
            image_free(&img);
        }
        printf("IMAGE %s %dx%d images=%ld ms_per_image=%.4f\n", argv[f], img.width, img.height, n,
               1000.0 * (t - t0) / (double)n);
        image_free(&img);
        free(data);
    }
    free(out);
    return 0;
}
