/* model_repo.h - the model repository on disk: one folder per model holding
 * config.json (file, platform, inputs with their image preprocessing,
 * outputs, batching, instances, labels, top_k) and the model file
 * (TorchScript .pt or AOTInductor .pt2). Parses and validates; loads nothing
 * into libtorch. */
#ifndef INFERD_MODEL_REPO_H
#define INFERD_MODEL_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "config.h"
#include "preprocess.h"
#include "tensor.h"

struct io_spec {
    char name[64];
    enum shim_dtype dtype; /* what requests bring and batches hold (UINT8 when the
                              image is normalised on the device: image.model_dtype) */
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS]; /* -1: any size (dim 0 is the batch) */
    bool is_image;                  /* takes encoded images ("image" in config.json) */
    struct preprocess_spec image;   /* how, when is_image */
};

/* Which versions of a model are served (config.json "version_policy", as
 * Triton's): the newest n, all, or a list. Default: the newest one. */
enum model_policy_kind { MODEL_POLICY_LATEST, MODEL_POLICY_ALL, MODEL_POLICY_SPECIFIC };

struct model_version_policy {
    enum model_policy_kind kind;
    int latest;                       /* MODEL_POLICY_LATEST: how many */
    int versions[MODEL_MAX_VERSIONS]; /* MODEL_POLICY_SPECIFIC, ascending */
    int n_versions;
};

#define MODEL_MAX_PREFERRED 16

/* Whether a batch is padded with zero rows to the next preferred size (the
 * padding rows never reach an answer): by default on a GPU only. */
enum model_pad { MODEL_PAD_AUTO = 0, MODEL_PAD_ON, MODEL_PAD_OFF };

struct model_config {
    char name[MODEL_NAME_MAX];
    int version; /* the version folder's number (1 for a flat folder) */
    struct model_version_policy policy;
    char path[2048];      /* the model file */
    const char *platform; /* KServe v2 platform, e.g. "torch_aoti" (static string) */
    const char *format;   /* the shim's format name for it, e.g. "aoti" (static string) */
    struct io_spec inputs[MODEL_MAX_IO];
    int n_inputs;
    struct io_spec outputs[MODEL_MAX_IO];
    int n_outputs;
    int max_batch_size; /* 0: the model does not batch */
    long max_queue_delay_us;
    int instances_per_device;
    char labels_file[MODEL_NAME_MAX]; /* config.json's "labels", or empty */
    char **labels;                    /* n_labels class names, or NULL */
    int n_labels;
    int top_k; /* /predict's default top_k (0: none) */
    bool warmup;
    /* GPU speed settings, all off by default (docs/models.md, "Speed settings") */
    enum shim_precision precision;
    bool channels_last;
    bool cudnn_benchmark;
    int n_cuda_graphs; /* batch sizes to capture as CUDA graphs, ascending */
    int cuda_graphs[SHIM_MAX_GRAPHS];
    /* Batch sizes (docs/models.md, "Batch sizes"): measured at warm-up
     * unless fixed by preferred_batch_sizes or turned off. */
    bool measure_batch_sizes;
    int n_preferred_batch_sizes; /* 0: none fixed */
    int preferred_batch_sizes[MODEL_MAX_PREFERRED];
    enum model_pad pad_batches;
};

/* model_name_valid: bounds.h. */

/* Names of the folders in dir that hold a config.json, sorted. Returns the
 * count (0..max), or -1 with err set when dir cannot be read. */
int model_repo_list(const char *dir, char (*names)[MODEL_NAME_MAX], int max, char *err,
                    size_t err_len);

/* Read dir/name/config.json; settings it omits come from server defaults.
 * Returns 0, or -1 with err saying what is wrong. */
int model_config_load(const char *dir, const char *name, const struct inferd_config *defaults,
                      struct model_config *out, char *err, size_t err_len);

/* Parse the text of a config.json (used by model_config_load and tests). */
int model_config_parse(const char *json, const char *model_dir, const char *name,
                       const struct inferd_config *defaults, struct model_config *out, char *err,
                       size_t err_len);

/* As model_config_parse, for version `version` of the model: the model
 * file is looked for in model_dir/<version>/ (version 0: a flat folder, the
 * model's version 1, file in model_dir). Without "file", the file is
 * model.pt, or model.pt2 when only that one is there. Labels stay at the
 * model level. Returns 0, or -1 with err set. */
int model_config_parse_version(const char *json, const char *model_dir, int version,
                               const char *name, const struct inferd_config *defaults,
                               struct model_config *out, char *err, size_t err_len);

/* The text of dir/name/config.json (malloc'd, NUL-terminated), or NULL with
 * err set. */
char *model_repo_read_config(const char *dir, const char *name, char *err, size_t err_len);

/* The versions on disk of model folder model_dir: its numbered sub-folders
 * (1, 2, ..., ascending; at most max), or none for a flat folder (*flat is
 * then true and the count 1, version 1). Returns the count, or -1 with err
 * set. */
int model_repo_versions(const char *model_dir, int *versions, int max, bool *flat, char *err,
                        size_t err_len);

/* The versions policy serves among the n on disk (ascending): written to
 * out (room for MODEL_MAX_VERSIONS), ascending. Returns their count. */
int model_version_select(const struct model_version_policy *policy, const int *on_disk, int n,
                         int *out);

void model_config_free(struct model_config *cfg);

#endif
