/* fuzz_grpc_decode.c - libFuzzer target for the gRPC wire form alone: the
 * protobuf decode of a ModelInferRequest (protobuf-c, from proto/) and its
 * mapping to an inference request (v2_proto on v2_binding: raw and typed
 * inputs, BYTES images, requested outputs, classification), the batch rules
 * after it (infer_request_check), the worker's image decode, and the reply's
 * encoding for outputs the model might produce, and inputs and outputs in
 * shared memory regions (each tensor's InferParameter map) against a table
 * holding regions "r" (64 KiB) and "s" (64 bytes at offset 8) of one
 * object. No network. Input: byte 0 picks the model (fuzz_v2_models.h,
 * bits 0-5), no region table (bit 6: shared memory off) and a stream
 * response (bit 7); the rest is the message. An accepted request has every declared input, each
 * matching its declared shape and sized by the checked helper; a refused
 * one has a message; an encoded reply unpacks with one raw entry per
 * output (an image input's data waits for the prepare hook: tensor_defer). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_v2_models.h"
#include "v2_proto.h"

#define OBJECT_SIZE (64 * 1024)

static char key[64];
static struct shm_table table;

static void unlink_object(void)
{
    shm_unlink(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(key, sizeof key, "/inferd-fuzz-grpc-%d", (int)getpid());
    int fd = shm_open(key, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, OBJECT_SIZE) == 0);
    close(fd);
    atexit(unlink_object);
    char err[256];
    CHECK(shm_table_init(&table, true, 4, 2 * OBJECT_SIZE) == 0);
    CHECK(shm_register_system(&table, "r", key, 0, OBJECT_SIZE, err, sizeof err) == SHM_OK);
    CHECK(shm_register_system(&table, "s", key, 8, 64, err, sizeof err) == SHM_OK);
    return 0;
}

/* Outputs as the model would give them: each declared output with the
 * request's samples as dim 0 and 2 for other free dims, values from i. */
static void fake_outputs(const struct model_config *cfg, struct infer_request *req)
{
    for (int o = 0; o < cfg->n_outputs; o++) {
        const struct io_spec *spec = &cfg->outputs[o];
        int64_t shape[TENSOR_MAX_DIMS];
        for (int d = 0; d < spec->ndim; d++)
            shape[d] = spec->shape[d] >= 0 ? spec->shape[d] : d == 0 ? req->samples : 2;
        struct tensor *t = &req->outputs[o];
        CHECK(tensor_alloc(t, spec->dtype, spec->ndim, shape) == 0);
        for (size_t i = 0; i < t->nbytes / dtype_size(t->dtype); i++)
            dtype_store(t->data, i, t->dtype, (double)(i % 7) - 3.0);
        snprintf(req->output_names[o], sizeof req->output_names[o], "%s", spec->name);
    }
    req->n_outputs = cfg->n_outputs;
}

static void check_reply(const struct v2_request *v2, const struct model_config *cfg,
                        const struct infer_request *req, bool stream)
{
    uint8_t *out = NULL;
    size_t len = 0;
    char err[256] = "";
    enum infer_status s = v2_proto_encode(v2, cfg, req, stream, &out, &len, err, sizeof err);
    if (s != INFER_OK) {
        CHECK(out == NULL && err[0] != '\0');
        return;
    }
    Inference__ModelInferResponse *r = NULL;
    Inference__ModelStreamInferResponse *w = NULL;
    if (stream) {
        w = inference__model_stream_infer_response__unpack(NULL, len, out);
        CHECK(w != NULL && w->infer_response != NULL);
        r = w->infer_response;
    } else {
        r = inference__model_infer_response__unpack(NULL, len, out);
        CHECK(r != NULL);
    }
    CHECK(r->n_outputs == r->n_raw_output_contents);
    CHECK(r->n_outputs == (size_t)(req->n_wanted ? req->n_wanted : req->n_outputs));
    if (w)
        inference__model_stream_infer_response__free_unpacked(w, NULL);
    else
        inference__model_infer_response__free_unpacked(r, NULL);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct model_config *cfg = &fuzz_v2_models()[(data[0] & 0x3f) % FUZZ_V2_N_MODELS];
    struct shm_table *shm = (data[0] & 0x40) ? NULL : &table;
    bool stream = (data[0] & 0x80) != 0;
    Inference__ModelInferRequest *msg =
        inference__model_infer_request__unpack(NULL, size - 1, data + 1);
    if (msg == NULL)
        return 0;
    struct v2_request *v2 = calloc(1, sizeof *v2);
    struct infer_request *req = calloc(1, sizeof *req);
    CHECK(v2 != NULL && req != NULL);
    char err[400] = "";
    enum infer_status status =
        v2_proto_decode(cfg, FUZZ_V2_MAX_PIXELS, shm, msg, v2, req, err, sizeof err);
    if (status != INFER_OK) {
        fuzz_v2_check_refused(status, err, sizeof err);
    } else {
        fuzz_v2_check_accepted(cfg, req);
        if (infer_request_check(req, cfg->max_batch_size, cfg->name, err, sizeof err) == 0) {
            CHECK(req->samples >= 1);
            if (req->prepare != NULL && req->prepare(req, req->prepare_arg) != 0)
                CHECK(req->error[0] != '\0');
            else if (req->samples <= 64)
                fake_outputs(cfg, req), check_reply(v2, cfg, req, stream);
        } else {
            CHECK(err[0] != '\0');
        }
    }
    for (int i = 0; i < MODEL_MAX_IO; i++) {
        tensor_free(&req->inputs[i]);
        tensor_free(&req->outputs[i]);
    }
    v2_request_free(v2);
    free(req);
    struct shm_region_info info[4];
    enum shm_status st;
    CHECK(shm_status_list(&table, SHM_SYSTEM, NULL, info, 4, &st, err, sizeof err) == 2);
    CHECK(info[0].users == 0 && info[1].users == 0); /* every hold dropped */
    inference__model_infer_request__free_unpacked(msg, NULL);
    return 0;
}
