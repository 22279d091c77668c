/* api.h - the endpoint handlers. Each reads the exchange (route, body) and
 * either sets its reply and returns 0, or hands it to a model's queue with
 * http_submit and returns 1 (suspended). */
#ifndef INFERD_API_H
#define INFERD_API_H

#include "http.h"

int api_predict(struct http_exchange *ex);     /* api_predict.c */
int api_health_live(struct http_exchange *ex); /* api_server.c */
int api_health_ready(struct http_exchange *ex);
int api_metrics(struct http_exchange *ex);
int api_server_meta(struct http_exchange *ex);
int api_repository_index(struct http_exchange *ex);
int api_model_meta(struct http_exchange *ex); /* api_v2.c */
int api_model_ready(struct http_exchange *ex);
int api_model_infer(struct http_exchange *ex);

/* Find the model a request names; sets a 404 reply and returns NULL when
 * there is none (api_server.c). */
struct model *api_lookup_model(struct http_exchange *ex, const char *name);

/* Set the reply to a copy of a fixed JSON text (api_server.c). */
int api_reply_json_text(struct http_exchange *ex, int status, const char *json);

/* Set a 503 reply when m cannot take requests (loading, failed, queue
 * full); returns 0 when m is ready to take one (api_server.c). */
int api_check_available(struct http_exchange *ex, struct model *m);

#endif
