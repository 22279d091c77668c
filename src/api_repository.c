/* api_repository.c - the repository endpoints (Triton's repository
 * extension): the index, and model load and unload in explicit mode. Who
 * may load and unload (the admin token, or without a token file a loopback
 * client) is the route table's admin access, checked before the handler
 * runs. The work runs on the registry's manager thread; the connection
 * waits suspended meanwhile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "json_numbers.h"
#include "registry_manager.h"
#include "registry_render.h"

enum route_outcome api_repository_index(struct http_exchange *ex)
{
    struct strbuf sb = {0};
    registry_render_index(&ex->srv->registry, &sb);
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "application/json");
}

/* Whether models may be loaded and unloaded (explicit mode); else sets a
 * 403 reply. */
static bool control_on(struct http_exchange *ex)
{
    if (ex->srv->cfg.model_control_mode == CONTROL_EXPLICIT)
        return true;
    http_reply_error(ex, 403,
                     "model control is off: start inferd with --model-control-mode explicit "
                     "to load and unload models");
    return false;
}

/* A job's status as HTTP's. */
static int job_http_status(enum registry_status status)
{
    switch (status) {
    case REGISTRY_OK: return 200;
    case REGISTRY_INVALID: return 400;
    case REGISTRY_NOT_FOUND: return 404;
    case REGISTRY_STOPPING: return 503;
    }
    return 500;
}

/* Runs on the manager thread when the job is done. */
static void job_done(struct registry_job *job)
{
    struct http_exchange *ex = job->arg;
    int status = job_http_status(job->status);
    if (status == 200) {
        struct strbuf sb = {0};
        int versions[MODEL_MAX_VERSIONS];
        int n = registry_versions(&ex->srv->registry, job->name, versions, MODEL_MAX_VERSIONS);
        strbuf_puts(&sb, "{\"name\":");
        strbuf_json_string(&sb, job->name);
        strbuf_puts(&sb, job->kind == REGISTRY_LOAD ? ",\"loaded\":true" : ",\"unloaded\":true");
        strbuf_puts(&sb, ",\"versions\":[");
        for (int i = 0; i < n; i++)
            strbuf_printf(&sb, "%s\"%d\"", i ? "," : "", versions[i]);
        strbuf_puts(&sb, "]}");
        size_t len = 0;
        char *body = strbuf_detach(&sb, &len);
        http_reply_body(ex, 200, body, len, "application/json");
    } else if (status == 503) {
        http_reply_unavailable(ex, 1, "%s", job->message);
    } else {
        http_reply_error(ex, status, "%s", job->message);
    }
    free(job->config);
    free(job);
    http_resume(ex);
}

static enum route_outcome submit(struct http_exchange *ex, enum registry_job_kind kind,
                                 char *config)
{
    struct registry_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        free(config);
        return http_reply_error(ex, 500, "out of memory");
    }
    job->kind = kind;
    snprintf(job->name, sizeof job->name, "%s", ex->route.model);
    job->config = config;
    job->done = job_done;
    job->arg = ex;
    http_suspend(ex); /* before the manager can answer */
    if (registry_manager_submit(&ex->srv->registry, job) != 0) {
        free(job->config);
        free(job);
        http_reply_unavailable(ex, 1, "the server is shutting down");
        http_resume(ex);
    }
    return ROUTE_SUSPENDED;
}

/* The body's config override: {"parameters": {"config": ...}} (Triton's)
 * or {"config": ...}, a config.json as a string or an object. Returns 0
 * with *config set (NULL: none), or -1 with a 400 reply set. */
static int read_override(struct http_exchange *ex, char **config)
{
    *config = NULL;
    if (ex->body_len == 0)
        return 0;
    char why[200];
    if (json_check_budget(ex->body, ex->body_len, JSON_DOC_MAX_VALUES, why, sizeof why) != 0) {
        http_reply_error(ex, 400, "%s", why);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(ex->body, ex->body_len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        http_reply_error(ex, 400, "the load request's body must be a JSON object");
        return -1;
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(params ? params : root, "config");
    int rc = 0;
    if (c == NULL)
        ;
    else if (cJSON_IsString(c))
        *config = strdup(c->valuestring);
    else if (cJSON_IsObject(c))
        *config = cJSON_PrintUnformatted(c);
    else
        rc = -1;
    if (rc == 0 && c != NULL && *config == NULL) {
        http_reply_error(ex, 500, "out of memory");
        rc = -2;
    }
    cJSON_Delete(root);
    if (rc == -1)
        http_reply_error(ex, 400, "\"config\" must be a config.json, as a string or an object");
    return rc == 0 ? 0 : -1;
}

enum route_outcome api_repository_load(struct http_exchange *ex)
{
    char *config;
    if (!control_on(ex) || read_override(ex, &config) != 0)
        return ROUTE_REPLIED;
    return submit(ex, REGISTRY_LOAD, config);
}

enum route_outcome api_repository_unload(struct http_exchange *ex)
{
    if (!control_on(ex))
        return ROUTE_REPLIED;
    return submit(ex, REGISTRY_UNLOAD, NULL);
}
