/* http_reply.c - the front end's replies (see http.h): bodies, JSON
 * errors, extra headers, an inference status as its HTTP code (the one
 * place), and gzip for large JSON replies. */
#include "http.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "redact.h"
#include "strbuf.h"

enum route_outcome http_reply_body(struct http_exchange *ex, int status, char *body, size_t len,
                                   const char *content_type)
{
    free(ex->reply.body);
    ex->reply.body = NULL;
    if (body == NULL) {
        static const char oom[] = "{\"error\":\"out of memory building the reply\"}";
        body = strdup(oom);
        len = body ? strlen(body) : 0;
        status = 500;
        content_type = "application/json";
    }
    ex->reply.status = status;
    ex->reply.body = body;
    ex->reply.len = len;
    ex->reply.content_type = content_type;
    ex->reply.n_headers = 0;
    ex->reply.gzipped = false;
    return ROUTE_REPLIED;
}

static enum route_outcome reply_error_v(struct http_exchange *ex, int status, const char *fmt,
                                        va_list ap)
{
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    struct strbuf sb = {0};
    strbuf_puts(&sb, "{\"error\":");
    strbuf_json_string(&sb, message);
    strbuf_puts(&sb, "}");
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, status, body, len, "application/json");
}

enum route_outcome http_reply_error(struct http_exchange *ex, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(ex, status, fmt, ap);
    va_end(ap);
    return ROUTE_REPLIED;
}

enum route_outcome http_reply_unavailable(struct http_exchange *ex, int retry_after_s,
                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(ex, 503, fmt, ap);
    va_end(ap);
    char seconds[16];
    snprintf(seconds, sizeof seconds, "%d", retry_after_s);
    http_reply_header(ex, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    return ROUTE_REPLIED;
}

int http_reply_header(struct http_exchange *ex, const char *name, const char *value)
{
    struct http_reply *r = &ex->reply;
    if (r->n_headers == HTTP_REPLY_MAX_HEADERS)
        return -1;
    struct http_header *h = &r->headers[r->n_headers];
    size_t n = strlen(value);
    if (n >= sizeof h->value)
        return -1;
    memcpy(h->value, value, n + 1);
    h->name = name;
    r->n_headers++;
    return 0;
}

/* Gzip a JSON reply of at least HTTP_GZIP_MIN_BYTES for a client that
 * accepts it. Left as it is when compressing fails or does not shrink it. */
void http_reply_compress(struct http_exchange *ex)
{
    struct http_reply *r = &ex->reply;
    if (!ex->accept_gzip || r->gzipped || r->body == NULL || r->len < HTTP_GZIP_MIN_BYTES ||
        r->content_type == NULL || strncmp(r->content_type, "application/json", 16) != 0)
        return;
    char *packed;
    size_t len;
    /* Level 1: a 5 MB JSON of logits came to 49% in 121 ms; level 6 to 45%
     * in 622 ms (zlib 1.2.13, this 2-core machine). */
    if (encoding_gzip(r->body, r->len, 1, &packed, &len) != 0)
        return;
    if (len >= r->len) {
        free(packed);
        return;
    }
    free(r->body);
    r->body = packed;
    r->len = len;
    r->gzipped = true;
}

/* The HTTP status of an inference status: the one place they are mapped. */
static int status_of(enum infer_status s)
{
    switch (s) {
    case INFER_OK: return 200;
    case INFER_INVALID: return 400;
    case INFER_NOT_FOUND: return 404;
    case INFER_UNSUPPORTED: return 415;
    case INFER_CANCELLED: return HTTP_STATUS_CLIENT_CLOSED;
    case INFER_INTERNAL: return 500;
    case INFER_UNAVAILABLE: return 503;
    case INFER_DEADLINE: return 504;
    }
    return 500;
}

enum route_outcome http_reply_status(struct http_exchange *ex, enum infer_status status,
                                     int retry_after_s, const char *message)
{
    if (status == INFER_UNAVAILABLE)
        return http_reply_unavailable(ex, retry_after_s, "%s", message);
    if (status == INFER_INTERNAL) {
        /* the model failed: libtorch's text may name files of this server's */
        char text[512];
        snprintf(text, sizeof text, "%s", message);
        redact_paths(text);
        return http_reply_error(ex, 500, "%s", text);
    }
    return http_reply_error(ex, status_of(status), "%s", message);
}
