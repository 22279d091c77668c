/* api_v2.c - KServe v2 model endpoints: metadata, readiness, inference. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "model_config_json.h"
#include "v2_json.h"

/* The served versions of model name, as a JSON list of strings. */
static void append_versions(struct strbuf *sb, struct server *srv, const char *name)
{
    int versions[MODEL_MAX_VERSIONS];
    int n = registry_versions(&srv->registry, name, versions, MODEL_MAX_VERSIONS);
    strbuf_puts(sb, "[");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "%s\"%d\"", i ? "," : "", versions[i]);
    strbuf_puts(sb, "]");
}

enum route_outcome api_model_meta(struct http_exchange *ex)
{
    struct model *m = api_lookup_version(ex);
    if (m == NULL)
        return ROUTE_REPLIED;
    struct strbuf sb = {0};
    strbuf_puts(&sb, "{\"name\":");
    strbuf_json_string(&sb, m->cfg.name);
    strbuf_puts(&sb, ",\"versions\":");
    append_versions(&sb, ex->srv, m->cfg.name);
    strbuf_puts(&sb, ",\"platform\":");
    strbuf_json_string(&sb, m->cfg.platform ? m->cfg.platform : "");
    strbuf_puts(&sb, ",\"inputs\":");
    model_config_json_io(&sb, m->cfg.inputs, m->cfg.n_inputs, false);
    strbuf_puts(&sb, ",\"outputs\":");
    model_config_json_io(&sb, m->cfg.outputs, m->cfg.n_outputs, false);
    strbuf_printf(&sb, ",\"max_batch_size\":%d,\"state\":\"%s\"}", m->cfg.max_batch_size,
                  model_state_name(model_get_state(m)));
    model_release(m);
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "application/json");
}

enum route_outcome api_model_ready(struct http_exchange *ex)
{
    struct model *m = api_lookup_version(ex);
    if (m == NULL)
        return ROUTE_REPLIED;
    enum model_state state = model_get_state(m);
    if (state == MODEL_READY && !server_draining(ex->srv))
        api_reply_json_text(ex, 200, "{\"ready\":true}");
    else
        http_reply_unavailable(ex, 1, "model %s is %s", m->cfg.name, model_state_name(state));
    model_release(m);
    return ROUTE_REPLIED;
}

/* The call's state's destructor. */
static void free_v2(void *arg)
{
    v2_request_free(arg);
}

/* As the answer leaves: the regions are free for the client again. */
static void settle_v2(void *arg)
{
    v2_request_settle(arg);
}

/* Worker thread: the request's outputs as a v2 reply. */
static void encode_v2(struct http_exchange *ex)
{
    struct strbuf sb = {0};
    size_t json_len = 0;
    bool any_binary = false;
    char err[256] = "";
    struct api_call *c = api_call_of(ex);
    enum infer_status status = v2_json_encode(c->state, &c->req.model->cfg, &c->req, &sb, &json_len,
                                              &any_binary, err, sizeof err);
    if (status != INFER_OK) {
        strbuf_free(&sb);
        http_reply_status(ex, status, 1, err);
        return;
    }
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    http_reply_body(ex, 200, body, len, any_binary ? API_BINARY : API_JSON);
    if (any_binary && body) {
        char number[32];
        snprintf(number, sizeof number, "%zu", json_len);
        http_reply_header(ex, V2_HEADER_LENGTH, number);
    }
}

enum route_outcome api_model_infer(struct http_exchange *ex)
{
    struct model *m = api_lookup_version(ex);
    if (m == NULL)
        return ROUTE_REPLIED;
    struct api_call *c = api_call_begin(ex, m, encode_v2);
    if (c == NULL)
        return ROUTE_REPLIED;
    struct v2_request *v2 = calloc(1, sizeof *v2);
    if (v2 == NULL)
        return http_reply_error(ex, 500, "out of memory");
    c->state = v2;
    c->state_free = free_v2;
    c->state_settle = settle_v2;
    char err[400] = "";
    enum infer_status status = INFER_INVALID;
    struct v2_body body = {ex->body, ex->body_len, http_request_header(ex, V2_HEADER_LENGTH),
                           strcmp(ex->body_type, API_BINARY) == 0, &ex->srv->shm};
    if (v2_json_decode(&m->cfg, ex->srv->cfg.max_image_pixels, &body, v2, &c->req, &status, err,
                       sizeof err) != 0)
        return http_reply_status(ex, status, 1, err);
    return api_call_submit(ex, c);
}
