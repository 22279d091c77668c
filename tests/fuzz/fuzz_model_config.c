/* fuzz_model_config.c - libFuzzer target for a model folder's config.json:
 * the input is parsed as its text. A refused config has a message and
 * holds nothing; an accepted one has its invariants: at least one input and
 * output, ranks and dims in range, a batching model's inputs batch on dim 0,
 * CUDA graph sizes ascending within the batch limit; written back as
 * config.json (model_config_json), it parses again to the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model_config_json.h"
#include "model_repo.h"
#include "test_support.h"

static void check_io(const struct io_spec *s, int n)
{
    CHECK(n >= 1 && n <= MODEL_MAX_IO);
    for (int i = 0; i < n; i++) {
        CHECK(s[i].ndim >= 0 && s[i].ndim <= TENSOR_MAX_DIMS);
        for (int d = 0; d < s[i].ndim; d++)
            CHECK(s[i].shape[d] == -1 || s[i].shape[d] >= 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct inferd_config defaults;
    config_defaults(&defaults);
    struct model_config m;
    char err[256] = "";
    int rc = model_config_parse(text, "/nonexistent/m", "m", &defaults, &m, err, sizeof err);
    free(text);
    if (rc != 0) {
        CHECK(err[0] != '\0');
        CHECK(m.labels == NULL && m.n_labels == 0);
        return 0;
    }
    check_io(m.inputs, m.n_inputs);
    check_io(m.outputs, m.n_outputs);
    CHECK(m.max_batch_size >= 0 && m.instances_per_device >= 1);
    for (int i = 0; m.max_batch_size > 0 && i < m.n_inputs; i++)
        CHECK(m.inputs[i].ndim >= 1 && m.inputs[i].shape[0] == -1);
    for (int k = 0; k < m.n_cuda_graphs; k++) {
        CHECK(m.cuda_graphs[k] >= 1);
        CHECK(m.cuda_graphs[k] <= (m.max_batch_size > 0 ? m.max_batch_size : 1));
        CHECK(k == 0 || m.cuda_graphs[k] > m.cuda_graphs[k - 1]);
    }
    CHECK(strncmp(m.path, "/nonexistent/m/", 15) == 0);
    /* the version policy: a sane kind, and what it selects is ascending
     * and on disk */
    const struct model_version_policy *p = &m.policy;
    CHECK(p->kind == MODEL_POLICY_LATEST || p->kind == MODEL_POLICY_ALL ||
          p->kind == MODEL_POLICY_SPECIFIC);
    CHECK(p->kind != MODEL_POLICY_LATEST || (p->latest >= 1 && p->latest <= MODEL_MAX_VERSIONS));
    CHECK(p->kind != MODEL_POLICY_SPECIFIC ||
          (p->n_versions >= 1 && p->n_versions <= MODEL_MAX_VERSIONS));
    for (int k = 1; p->kind == MODEL_POLICY_SPECIFIC && k < p->n_versions; k++)
        CHECK(p->versions[k] > p->versions[k - 1]);
    const int disk[] = {1, 2, 3, 5, 8, 13, 21};
    int picked[MODEL_MAX_VERSIONS];
    int n = model_version_select(p, disk, 7, picked);
    CHECK(n >= 0 && n <= 7);
    for (int k = 0; k < n; k++) {
        bool found = false;
        for (int j = 0; j < 7; j++)
            found = found || disk[j] == picked[k];
        CHECK(found && (k == 0 || picked[k] > picked[k - 1]));
    }
    struct strbuf first = {0}, second = {0};
    CHECK(model_config_json(&m, &first) == 0);
    struct model_config again;
    CHECK(model_config_parse(first.data, "/nonexistent/m", "m", &defaults, &again, err,
                             sizeof err) == 0);
    CHECK(model_config_json(&again, &second) == 0);
    CHECK(first.len == second.len && memcmp(first.data, second.data, first.len) == 0);
    model_config_free(&again);
    strbuf_free(&first);
    strbuf_free(&second);
    model_config_free(&m);
    return 0;
}
