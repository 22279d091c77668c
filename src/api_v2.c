/* api_v2.c - KServe v2 model endpoints: metadata, readiness, inference. */
#include <stdio.h>
#include <string.h>

#include "api.h"

static void append_io(struct strbuf *sb, const struct io_spec *specs, int n)
{
    strbuf_puts(sb, "[");
    for (int i = 0; i < n; i++) {
        char shape[128];
        shape_format(specs[i].shape, specs[i].ndim, shape, sizeof shape);
        strbuf_puts(sb, i ? ",{\"name\":" : "{\"name\":");
        strbuf_json_string(sb, specs[i].name);
        strbuf_printf(sb, ",\"datatype\":\"%s\",\"shape\":%s}", dtype_name(specs[i].dtype), shape);
    }
    strbuf_puts(sb, "]");
}

int api_model_meta(struct http_exchange *ex)
{
    struct model *m = api_lookup_model(ex, ex->route.model);
    if (m == NULL)
        return 0;
    struct strbuf sb = {0};
    strbuf_puts(&sb, "{\"name\":");
    strbuf_json_string(&sb, m->cfg.name);
    strbuf_puts(&sb, ",\"versions\":[\"1\"],\"platform\":\"pytorch_torchscript\",\"inputs\":");
    append_io(&sb, m->cfg.inputs, m->cfg.n_inputs);
    strbuf_puts(&sb, ",\"outputs\":");
    append_io(&sb, m->cfg.outputs, m->cfg.n_outputs);
    strbuf_printf(&sb, ",\"max_batch_size\":%d,\"state\":\"%s\"}", m->cfg.max_batch_size,
                  model_state_name(model_get_state(m)));
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "application/json");
}

int api_model_ready(struct http_exchange *ex)
{
    struct model *m = api_lookup_model(ex, ex->route.model);
    if (m == NULL)
        return 0;
    if (model_get_state(m) == MODEL_READY && !atomic_load(&ex->srv->draining)) {
        char *body = strdup("{\"ready\":true}");
        return http_reply_body(ex, 200, body, body ? strlen(body) : 0, "application/json");
    }
    http_reply_error(ex, 503, "model %s is %s", m->cfg.name, model_state_name(model_get_state(m)));
    ex->reply.retry_after_s = 1;
    return 0;
}

int api_model_infer(struct http_exchange *ex)
{
    return http_reply_error(ex, 501, "v2 inference is not implemented yet");
}
