/* infer_request.c - the one exit of a queued inference request (see
 * infer_request.h). */
#include "infer_request.h"

#include <string.h>

void infer_request_finish(struct infer_request *req, int status, const char *error)
{
    size_t n = error ? strnlen(error, sizeof req->error - 1) : 0;
    req->status = status;
    if (n)
        memcpy(req->error, error, n);
    req->error[n] = '\0';
    req->done(req);
}

void infer_request_finish_all(struct infer_request *list, int status, const char *error)
{
    while (list != NULL) {
        struct infer_request *next = list->next;
        infer_request_finish(list, status, error);
        list = next;
    }
}
