/* model_repo.c - model folders and their config.json (see model_repo.h). */
#include "model_repo.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#define CONFIG_MAX_BYTES (1 << 20)
#define LABELS_MAX_BYTES (8 << 20)

/* The model formats, by KServe v2 platform name: the shim's format name
 * (shim_load_options.format) and the file extension that implies it. */
static const struct {
    const char *platform, *format, *extension;
} kFormats[] = {
    {"pytorch_torchscript", "torchscript", ".pt"},
    {"torch_aoti", "aoti", ".pt2"},
};
#define N_FORMATS (sizeof kFormats / sizeof kFormats[0])

/* Set out's platform and format from config.json's "platform" when given,
 * else from the file's extension (TorchScript when neither says). */
static int parse_platform(const cJSON *root, const char *file, struct model_config *out, char *err,
                          size_t err_len)
{
    const cJSON *platform = cJSON_GetObjectItemCaseSensitive(root, "platform");
    size_t k = 0;
    if (platform != NULL) {
        if (!cJSON_IsString(platform)) {
            snprintf(err, err_len, "\"platform\" must be a string");
            return -1;
        }
        while (k < N_FORMATS && strcmp(platform->valuestring, kFormats[k].platform) != 0)
            k++;
        if (k == N_FORMATS) {
            char known[128] = "";
            for (size_t i = 0; i < N_FORMATS; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         i == 0 ? "" : " or ", kFormats[i].platform);
            snprintf(err, err_len, "unknown \"platform\" \"%.64s\" (%s)", platform->valuestring,
                     known);
            return -1;
        }
    } else {
        const char *dot = strrchr(file, '.');
        while (k < N_FORMATS && !(dot != NULL && strcmp(dot, kFormats[k].extension) == 0))
            k++;
        if (k == N_FORMATS)
            k = 0;
    }
    out->platform = kFormats[k].platform;
    out->format = kFormats[k].format;
    return 0;
}

/* Read a whole file (at most max bytes) into a NUL-terminated buffer.
 * Returns NULL with err set on failure. */
static char *read_file(const char *path, size_t max, size_t *len, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, err_len, "out of memory reading %s", path);
        return NULL;
    }
    size_t n = fread(buf, 1, max + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || n > max) {
        free(buf);
        snprintf(err, err_len, "%s: %s", path, failed ? "read error" : "file too large");
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int model_repo_list(const char *dir, char (*names)[MODEL_NAME_MAX], int max, char *err,
                    size_t err_len)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, err_len, "cannot open model repository %s: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (!model_name_valid(e->d_name) || e->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s/config.json", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        memcpy(names[n++], e->d_name, strlen(e->d_name) + 1); /* valid names fit */
    }
    closedir(d);
    qsort(names, (size_t)n, MODEL_NAME_MAX, compare_names);
    return n;
}

static int parse_io(const cJSON *list, const char *what, struct io_spec *specs, int *n_specs,
                    char *err, size_t err_len)
{
    *n_specs = 0;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        snprintf(err, err_len, "\"%s\" must be a non-empty array", what);
        return -1;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        if (*n_specs == MODEL_MAX_IO) {
            snprintf(err, err_len, "at most %d %s", MODEL_MAX_IO, what);
            return -1;
        }
        struct io_spec *s = &specs[(*n_specs)++];
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "datatype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
        if (!cJSON_IsString(name) || strlen(name->valuestring) >= sizeof s->name) {
            snprintf(err, err_len, "each of \"%s\" needs a \"name\" (under 64 bytes)", what);
            return -1;
        }
        strcpy(s->name, name->valuestring);
        if (!cJSON_IsString(dtype) || dtype_from_name(dtype->valuestring, &s->dtype) != 0) {
            snprintf(err, err_len, "%s \"%s\": \"datatype\" must be one of %s", what, s->name,
                     dtype_names_text());
            return -1;
        }
        s->is_image = false;
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > TENSOR_MAX_DIMS) {
            snprintf(err, err_len, "%s \"%s\": \"shape\" must be an array of at most %d dims", what,
                     s->name, TENSOR_MAX_DIMS);
            return -1;
        }
        s->ndim = 0;
        const cJSON *dim;
        cJSON_ArrayForEach(dim, shape)
        {
            if (!cJSON_IsNumber(dim) || dim->valuedouble < -1 || dim->valuedouble == 0 ||
                dim->valuedouble > 1e9 || dim->valuedouble != (double)(int64_t)dim->valuedouble) {
                snprintf(err, err_len, "%s \"%s\": dims must be positive integers or -1", what,
                         s->name);
                return -1;
            }
            s->shape[s->ndim++] = (int64_t)dim->valuedouble;
        }
    }
    return 0;
}

/* One label per line, class index = line number: a blank line is an empty
 * label (it keeps the later ones in place); blank lines at the very end are
 * dropped. Line ends: \n, \r\n or \r. */
static int parse_labels(const char *path, struct model_config *out, char *err, size_t err_len)
{
    size_t len;
    char *text = read_file(path, LABELS_MAX_BYTES, &len, err, err_len);
    if (text == NULL)
        return -1;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    size_t lines = len > 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n' || (text[i] == '\r' && text[i + 1] != '\n'))
            lines++;
    out->labels = calloc(lines + 1, sizeof *out->labels);
    if (out->labels == NULL) {
        free(text);
        snprintf(err, err_len, "out of memory reading labels");
        return -1;
    }
    for (size_t start = 0; out->n_labels < (int)lines;) {
        size_t end = start;
        while (end < len && text[end] != '\n' && text[end] != '\r')
            end++;
        out->labels[out->n_labels] = strndup(text + start, end - start);
        if (out->labels[out->n_labels] == NULL) {
            free(text);
            snprintf(err, err_len, "out of memory reading labels");
            return -1;
        }
        out->n_labels++;
        start = end + (end + 1 < len && text[end] == '\r' && text[end + 1] == '\n' ? 2 : 1);
    }
    free(text);
    return 0;
}

/* Whether item is a whole number in [lo, hi] (checked before any cast to
 * int, which is undefined for a value out of range). */
static bool whole_in(const cJSON *item, double lo, double hi)
{
    return cJSON_IsNumber(item) && item->valuedouble >= lo && item->valuedouble <= hi &&
           item->valuedouble == (double)(long)item->valuedouble;
}

static int get_int(const cJSON *obj, const char *key, long lo, long hi, long *value, char *err,
                   size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (item == NULL)
        return 0; /* keep the default */
    if (!cJSON_IsNumber(item) || item->valuedouble < (double)lo || item->valuedouble > (double)hi ||
        item->valuedouble != (double)(long)item->valuedouble) {
        snprintf(err, err_len, "\"%s\" must be an integer in [%ld, %ld]", key, lo, hi);
        return -1;
    }
    *value = (long)item->valuedouble;
    return 0;
}

static int get_bool(const cJSON *obj, const char *key, bool *value, char *err, size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (item == NULL)
        return 0; /* keep the default */
    if (!cJSON_IsBool(item)) {
        snprintf(err, err_len, "\"%s\" must be true or false", key);
        return -1;
    }
    *value = cJSON_IsTrue(item);
    return 0;
}

/* "precision", "channels_last", "cudnn_benchmark" and "cuda_graphs". */
static int parse_speed(const cJSON *root, struct model_config *out, char *err, size_t err_len)
{
    const cJSON *precision = cJSON_GetObjectItemCaseSensitive(root, "precision");
    const cJSON *graphs = cJSON_GetObjectItemCaseSensitive(root, "cuda_graphs");
    out->precision = SHIM_PRECISION_FP32;
    if (precision != NULL) {
        if (cJSON_IsString(precision) && strcmp(precision->valuestring, "fp16") == 0) {
            out->precision = SHIM_PRECISION_FP16;
        } else if (!cJSON_IsString(precision) || strcmp(precision->valuestring, "fp32") != 0) {
            snprintf(err, err_len, "\"precision\" must be \"fp32\" or \"fp16\"");
            return -1;
        }
    }
    if (get_bool(root, "channels_last", &out->channels_last, err, err_len) != 0 ||
        get_bool(root, "cudnn_benchmark", &out->cudnn_benchmark, err, err_len) != 0)
        return -1;
    if (graphs == NULL)
        return 0;
    int most = out->max_batch_size > 0 ? out->max_batch_size : 1;
    if (!cJSON_IsArray(graphs) || cJSON_GetArraySize(graphs) > SHIM_MAX_GRAPHS) {
        snprintf(err, err_len, "\"cuda_graphs\" must be a list of at most %d batch sizes",
                 SHIM_MAX_GRAPHS);
        return -1;
    }
    const cJSON *b;
    cJSON_ArrayForEach(b, graphs)
    {
        int prev = out->n_cuda_graphs ? out->cuda_graphs[out->n_cuda_graphs - 1] : 0;
        /* The range first: casting a double outside int's range is undefined. */
        if (!cJSON_IsNumber(b) || !(b->valuedouble > prev && b->valuedouble <= most) ||
            b->valuedouble != (double)(int)b->valuedouble) {
            snprintf(err, err_len,
                     "\"cuda_graphs\" must list ascending batch sizes from 1 to the max batch "
                     "size (%d)",
                     most);
            return -1;
        }
        out->cuda_graphs[out->n_cuda_graphs++] = b->valueint;
    }
    for (int i = 0; out->n_cuda_graphs > 0 && i < out->n_inputs; i++) { /* an empty list: none */
        for (int d = 1; d < out->inputs[i].ndim; d++) {
            if (out->inputs[i].shape[d] < 0) {
                snprintf(err, err_len, "input \"%s\": CUDA graphs need fixed dims after the batch",
                         out->inputs[i].name);
                return -1;
            }
        }
    }
    return 0;
}

/* "measure_batch_sizes", "preferred_batch_sizes" and "pad_batches", once
 * max_batch_size is known. */
static int parse_batch_sizes(const cJSON *root, struct model_config *out, char *err, size_t err_len)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "preferred_batch_sizes");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "pad_batches");
    out->measure_batch_sizes = true;
    if (get_bool(root, "measure_batch_sizes", &out->measure_batch_sizes, err, err_len) != 0)
        return -1;
    out->pad_batches = MODEL_PAD_AUTO;
    if (pad != NULL) {
        if (cJSON_IsBool(pad)) {
            out->pad_batches = cJSON_IsTrue(pad) ? MODEL_PAD_ON : MODEL_PAD_OFF;
        } else if (!cJSON_IsString(pad) || strcmp(pad->valuestring, "auto") != 0) {
            snprintf(err, err_len, "\"pad_batches\" must be true, false or \"auto\"");
            return -1;
        }
    }
    if (list == NULL)
        return 0;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > MODEL_MAX_PREFERRED ||
        (out->max_batch_size < 1 && cJSON_GetArraySize(list) > 0)) { /* [] is none */
        snprintf(err, err_len,
                 "\"preferred_batch_sizes\" must be a list of at most %d batch sizes, for a "
                 "batching model",
                 MODEL_MAX_PREFERRED);
        return -1;
    }
    const cJSON *b;
    cJSON_ArrayForEach(b, list)
    {
        int n = out->n_preferred_batch_sizes;
        int prev = n ? out->preferred_batch_sizes[n - 1] : 0;
        if (!cJSON_IsNumber(b) ||
            !(b->valuedouble > prev && b->valuedouble <= out->max_batch_size) ||
            b->valuedouble != (double)(int)b->valuedouble) {
            snprintf(err, err_len,
                     "\"preferred_batch_sizes\" must list ascending batch sizes from 1 to the max "
                     "batch size (%d)",
                     out->max_batch_size);
            return -1;
        }
        out->preferred_batch_sizes[out->n_preferred_batch_sizes++] = b->valueint;
    }
    return 0;
}

/* The "image" object of each input, once the batching is known. */
static int parse_images(const cJSON *inputs, struct model_config *out, char *err, size_t err_len)
{
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, inputs)
    {
        struct io_spec *s = &out->inputs[i++];
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(item, "image");
        if (image == NULL)
            continue;
        char why[256];
        if (preprocess_spec_parse(image, s->dtype, s->shape, s->ndim, out->max_batch_size > 0,
                                  &s->image, why, sizeof why) != 0) {
            snprintf(err, err_len, "input \"%s\": %s", s->name, why);
            return -1;
        }
        s->is_image = true;
        /* What the request side holds: the pixels, when the normalisation
         * runs on the device (s->image.model_dtype keeps the model's). */
        s->dtype = s->image.dtype;
    }
    return 0;
}

/* config.json's "version_policy": {"latest": {"num_versions": n}},
 * {"all": {}} or {"specific": {"versions": [..]}}; absent: the newest. */
static int parse_policy(const cJSON *root, struct model_version_policy *p, char *err,
                        size_t err_len)
{
    const cJSON *vp = cJSON_GetObjectItemCaseSensitive(root, "version_policy");
    p->kind = MODEL_POLICY_LATEST;
    p->latest = 1;
    if (vp == NULL)
        return 0;
    const cJSON *latest = cJSON_GetObjectItemCaseSensitive(vp, "latest");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(vp, "all");
    const cJSON *specific = cJSON_GetObjectItemCaseSensitive(vp, "specific");
    if (!cJSON_IsObject(vp) || cJSON_GetArraySize(vp) != 1 ||
        !(cJSON_IsObject(latest) || cJSON_IsObject(all) || cJSON_IsObject(specific))) {
        snprintf(err, err_len,
                 "\"version_policy\" must be one of {\"latest\": {\"num_versions\": n}}, "
                 "{\"all\": {}} or {\"specific\": {\"versions\": [..]}}");
        return -1;
    }
    if (all != NULL) {
        p->kind = MODEL_POLICY_ALL;
        return 0;
    }
    if (latest != NULL) {
        long n = 1;
        if (get_int(latest, "num_versions", 1, MODEL_MAX_VERSIONS, &n, err, err_len) != 0)
            return -1;
        p->latest = (int)n;
        return 0;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(specific, "versions");
    const cJSON *v;
    p->kind = MODEL_POLICY_SPECIFIC;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1 ||
        cJSON_GetArraySize(list) > MODEL_MAX_VERSIONS)
        goto bad;
    cJSON_ArrayForEach(v, list)
    {
        int prev = p->n_versions ? p->versions[p->n_versions - 1] : 0;
        if (!whole_in(v, 1, 1e9) || v->valueint <= prev)
            goto bad;
        p->versions[p->n_versions++] = v->valueint;
    }
    return 0;
bad:
    snprintf(err, err_len,
             "\"version_policy\": \"specific\" needs \"versions\": a list of 1 to %d "
             "ascending version numbers",
             MODEL_MAX_VERSIONS);
    return -1;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The model file when config.json names none: model<extension> of the
 * first format whose file is in dir, else of the first format. Returns
 * buf. */
static const char *default_file(const char *dir, char *buf, size_t len)
{
    for (size_t k = 0; k < N_FORMATS; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model%s", dir, kFormats[k].extension);
        if (is_file(path)) {
            snprintf(buf, len, "model%s", kFormats[k].extension);
            return buf;
        }
    }
    snprintf(buf, len, "model%s", kFormats[0].extension);
    return buf;
}

int model_config_parse(const char *json, const char *model_dir, const char *name,
                       const struct inferd_config *defaults, struct model_config *out, char *err,
                       size_t err_len)
{
    return model_config_parse_version(json, model_dir, 0, name, defaults, out, err, err_len);
}

int model_config_parse_version(const char *json, const char *model_dir, int version,
                               const char *name, const struct inferd_config *defaults,
                               struct model_config *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->version = version > 0 ? version : 1;
    char file_dir[2048];
    if (version > 0)
        snprintf(file_dir, sizeof file_dir, "%s/%d", model_dir, version);
    else
        snprintf(file_dir, sizeof file_dir, "%s", model_dir);
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(err, err_len, "config.json is not a JSON object");
        return -1;
    }
    int rc = -1;
    long max_batch = defaults->max_batch_size;
    long delay = defaults->max_queue_delay_us;
    long instances = defaults->instances_per_device;
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(root, "file");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
    const cJSON *warmup = cJSON_GetObjectItemCaseSensitive(root, "warmup");
    if (file != NULL && (!cJSON_IsString(file) || strchr(file->valuestring, '/') ||
                         !model_name_valid(file->valuestring))) {
        snprintf(err, err_len, "\"file\" must be a file name inside the model folder");
        goto out;
    }
    char default_name[32];
    const char *file_name =
        file ? file->valuestring : default_file(file_dir, default_name, sizeof default_name);
    snprintf(out->path, sizeof out->path, "%.1900s/%.127s", file_dir, file_name);
    if (parse_platform(root, file_name, out, err, err_len) != 0 ||
        parse_policy(root, &out->policy, err, err_len) != 0)
        goto out;
    if (parse_io(cJSON_GetObjectItemCaseSensitive(root, "inputs"), "inputs", out->inputs,
                 &out->n_inputs, err, err_len) != 0 ||
        parse_io(cJSON_GetObjectItemCaseSensitive(root, "outputs"), "outputs", out->outputs,
                 &out->n_outputs, err, err_len) != 0 ||
        get_int(root, "max_batch_size", 0, 65536, &max_batch, err, err_len) != 0 ||
        get_int(root, "max_queue_delay_us", 0, 60000000, &delay, err, err_len) != 0 ||
        get_int(root, "instances", 1, 64, &instances, err, err_len) != 0)
        goto out;
    out->max_batch_size = (int)max_batch;
    out->max_queue_delay_us = delay;
    out->instances_per_device = (int)instances;
    out->warmup = !cJSON_IsFalse(warmup);
    if (parse_speed(root, out, err, err_len) != 0 ||
        parse_batch_sizes(root, out, err, err_len) != 0)
        goto out;
    long top_k = 0;
    if (get_int(root, "top_k", 0, 1000000, &top_k, err, err_len) != 0)
        goto out;
    out->top_k = (int)top_k;
    if (parse_images(cJSON_GetObjectItemCaseSensitive(root, "inputs"), out, err, err_len) != 0)
        goto out;
    for (int i = 0; out->max_batch_size > 0 && i < out->n_inputs; i++) {
        if (out->inputs[i].ndim == 0 || out->inputs[i].shape[0] != -1) {
            snprintf(err, err_len, "input \"%s\": a batching model's first dim must be -1",
                     out->inputs[i].name);
            goto out;
        }
    }
    if (labels != NULL) {
        if (!cJSON_IsString(labels) || !model_name_valid(labels->valuestring)) {
            snprintf(err, err_len, "\"labels\" must be a file name inside the model folder");
            goto out;
        }
        snprintf(out->labels_file, sizeof out->labels_file, "%s", labels->valuestring);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", model_dir, labels->valuestring);
        if (parse_labels(path, out, err, err_len) != 0)
            goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc != 0)
        model_config_free(out);
    return rc;
}

char *model_repo_read_config(const char *dir, const char *name, char *err, size_t err_len)
{
    if (!model_name_valid(name)) {
        snprintf(err, err_len, "invalid model name");
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/config.json", dir, name);
    return read_file(path, CONFIG_MAX_BYTES, NULL, err, err_len);
}

int model_config_load(const char *dir, const char *name, const struct inferd_config *defaults,
                      struct model_config *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    char *text = model_repo_read_config(dir, name, err, err_len);
    if (text == NULL)
        return -1;
    char model_dir[2048];
    snprintf(model_dir, sizeof model_dir, "%s/%s", dir, name);
    int rc = model_config_parse(text, model_dir, name, defaults, out, err, err_len);
    free(text);
    return rc;
}

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* A version folder's name: digits only, no leading zero, 1..999999999. */
static int version_number(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 9 || name[0] == '0' || strspn(name, "0123456789") != n)
        return 0;
    return atoi(name);
}

int model_repo_versions(const char *model_dir, int *versions, int max, bool *flat, char *err,
                        size_t err_len)
{
    DIR *d = opendir(model_dir);
    if (d == NULL) {
        snprintf(err, err_len, "cannot open model folder %s: %s", model_dir, strerror(errno));
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int v = version_number(e->d_name);
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", model_dir, e->d_name);
        if (v <= 0 || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (n == max) { /* keep the newest max */
            qsort(versions, (size_t)n, sizeof *versions, compare_ints);
            if (v < versions[0])
                continue;
            versions[0] = v;
        } else {
            versions[n++] = v;
        }
    }
    closedir(d);
    *flat = n == 0;
    if (n == 0 && max > 0) {
        versions[0] = 1;
        return 1;
    }
    qsort(versions, (size_t)n, sizeof *versions, compare_ints);
    return n;
}

int model_version_select(const struct model_version_policy *policy, const int *on_disk, int n,
                         int *out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        bool take = false;
        if (policy->kind == MODEL_POLICY_ALL)
            take = true;
        else if (policy->kind == MODEL_POLICY_LATEST)
            take = i >= n - policy->latest;
        else
            for (int j = 0; j < policy->n_versions; j++)
                take = take || policy->versions[j] == on_disk[i];
        if (take && k < MODEL_MAX_VERSIONS)
            out[k++] = on_disk[i];
    }
    if (policy->kind == MODEL_POLICY_ALL && n > MODEL_MAX_VERSIONS) {
        memmove(out, on_disk + n - MODEL_MAX_VERSIONS, MODEL_MAX_VERSIONS * sizeof *out);
        k = MODEL_MAX_VERSIONS;
    }
    return k;
}

void model_config_free(struct model_config *cfg)
{
    for (int i = 0; i < cfg->n_labels; i++)
        free(cfg->labels[i]);
    free(cfg->labels);
    cfg->labels = NULL;
    cfg->n_labels = 0;
}
