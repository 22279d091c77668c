/* model_config_json.c - the effective config.json of a model (see
 * model_config_json.h). */
#include "model_config_json.h"

#include <string.h>

#include "dtype.h"
#include "shape.h"

/* A double that reads back as the same double. */
static void put_number(struct strbuf *sb, double v)
{
    strbuf_printf(sb, "%.17g", v);
}

static void put_image(struct strbuf *sb, const struct preprocess_spec *p)
{
    int channels = (int)p->color;
    strbuf_printf(sb, "{\"color\":\"%s\"", p->color == IMAGE_GRAY ? "gray" : "rgb");
    if (p->resize == PREPROCESS_RESIZE_SHORTER)
        strbuf_printf(sb, ",\"resize\":%d", p->resize_short);
    else if (p->resize == PREPROCESS_RESIZE_EXACT)
        strbuf_printf(sb, ",\"resize\":[%d,%d]", p->resize_h, p->resize_w);
    if (p->crop_h)
        strbuf_printf(sb, ",\"crop\":[%d,%d]", p->crop_h, p->crop_w);
    strbuf_puts(sb, ",\"scale\":");
    put_number(sb, p->scale);
    const char *keys[2] = {"mean", "std"};
    const double *values[2] = {p->mean, p->std};
    for (int k = 0; k < 2; k++) {
        strbuf_printf(sb, ",\"%s\":[", keys[k]);
        for (int c = 0; c < channels; c++) {
            if (c)
                strbuf_puts(sb, ",");
            put_number(sb, values[k][c]);
        }
        strbuf_puts(sb, "]");
    }
    strbuf_printf(sb, ",\"layout\":\"%s\"", p->layout == PREPROCESS_NHWC ? "NHWC" : "NCHW");
    strbuf_printf(sb, ",\"normalize\":\"%s\"}", p->on_device ? "device" : "host");
}

void model_config_json_io(struct strbuf *sb, const struct io_spec *specs, int n, bool with_image)
{
    strbuf_puts(sb, "[");
    for (int i = 0; i < n; i++) {
        char shape[256];
        shape_format(specs[i].shape, specs[i].ndim, shape, sizeof shape);
        strbuf_puts(sb, i ? ",{\"name\":" : "{\"name\":");
        strbuf_json_string(sb, specs[i].name);
        /* The config shows the datatype the model takes; the v2 metadata
         * (with_image false) the one requests send. */
        enum shim_dtype dtype =
            with_image && specs[i].is_image ? specs[i].image.model_dtype : specs[i].dtype;
        strbuf_printf(sb, ",\"datatype\":\"%s\",\"shape\":%s", dtype_name(dtype), shape);
        if (with_image && specs[i].is_image) {
            strbuf_puts(sb, ",\"image\":");
            put_image(sb, &specs[i].image);
        }
        strbuf_puts(sb, "}");
    }
    strbuf_puts(sb, "]");
}

int model_config_json(const struct model_config *cfg, struct strbuf *sb)
{
    const char *slash = strrchr(cfg->path, '/');
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, cfg->name);
    strbuf_puts(sb, ",\"file\":");
    strbuf_json_string(sb, slash ? slash + 1 : cfg->path);
    strbuf_puts(sb, ",\"platform\":");
    strbuf_json_string(sb, cfg->platform ? cfg->platform : "");
    strbuf_puts(sb, ",\"inputs\":");
    model_config_json_io(sb, cfg->inputs, cfg->n_inputs, true);
    strbuf_puts(sb, ",\"outputs\":");
    model_config_json_io(sb, cfg->outputs, cfg->n_outputs, true);
    strbuf_printf(sb,
                  ",\"max_batch_size\":%d,\"max_queue_delay_us\":%ld,\"instances\":%d"
                  ",\"warmup\":%s,\"top_k\":%d",
                  cfg->max_batch_size, cfg->max_queue_delay_us, cfg->instances_per_device,
                  cfg->warmup ? "true" : "false", cfg->top_k);
    if (cfg->labels_file[0]) {
        strbuf_puts(sb, ",\"labels\":");
        strbuf_json_string(sb, cfg->labels_file);
    }
    strbuf_printf(sb, ",\"precision\":\"%s\",\"channels_last\":%s,\"cudnn_benchmark\":%s",
                  cfg->precision == SHIM_PRECISION_FP16 ? "fp16" : "fp32",
                  cfg->channels_last ? "true" : "false", cfg->cudnn_benchmark ? "true" : "false");
    strbuf_puts(sb, ",\"cuda_graphs\":[");
    for (int i = 0; i < cfg->n_cuda_graphs; i++)
        strbuf_printf(sb, i ? ",%d" : "%d", cfg->cuda_graphs[i]);
    strbuf_printf(sb, "],\"measure_batch_sizes\":%s,\"preferred_batch_sizes\":[",
                  cfg->measure_batch_sizes ? "true" : "false");
    for (int i = 0; i < cfg->n_preferred_batch_sizes; i++)
        strbuf_printf(sb, i ? ",%d" : "%d", cfg->preferred_batch_sizes[i]);
    strbuf_printf(sb, "],\"pad_batches\":%s",
                  cfg->pad_batches == MODEL_PAD_ON    ? "true"
                  : cfg->pad_batches == MODEL_PAD_OFF ? "false"
                                                      : "\"auto\"");
    const struct model_version_policy *p = &cfg->policy;
    if (p->kind == MODEL_POLICY_ALL) {
        strbuf_puts(sb, ",\"version_policy\":{\"all\":{}}}");
    } else if (p->kind == MODEL_POLICY_LATEST) {
        strbuf_printf(sb, ",\"version_policy\":{\"latest\":{\"num_versions\":%d}}}", p->latest);
    } else {
        strbuf_puts(sb, ",\"version_policy\":{\"specific\":{\"versions\":[");
        for (int i = 0; i < p->n_versions; i++)
            strbuf_printf(sb, i ? ",%d" : "%d", p->versions[i]);
        strbuf_puts(sb, "]}}}");
    }
    return sb->failed ? -1 : 0;
}
