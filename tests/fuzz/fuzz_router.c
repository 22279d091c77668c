/* fuzz_router.c - libFuzzer target for route_match over inferd's route
 * table (api_routes.h): the input is split at its first NUL or newline into
 * a method and a path. Checks the route's invariants: a model name only
 * when valid, an Allow list for 200 and 405, a 200 only for a method in
 * that list, and the access level: the row's when a row matched, a key
 * when none did, admin only under /v2/repository/models/ and for shared
 * memory register/unregister (with a {region} segment without a slash), open only for
 * the health endpoints. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_routes.h"
#include "bounds.h" /* model_name_valid */
#include "router.h"
#include "test_support.h"

#define FUZZ_ROW(name, methods, pattern, accepts, access)                                          \
    {#name, methods, pattern, accepts, API_ACCESS_##access, NULL},
static const struct route_def table[] = {API_ROUTES(FUZZ_ROW)};

/* Whether method is one of the comma-separated names in allow. */
static int listed(const char *allow, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = allow; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && memcmp(p, method, n) == 0)
            return 1;
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t split = 0;
    while (split < size && data[split] != '\0' && data[split] != '\n')
        split++;
    char *method = malloc(split + 1);
    size_t path_len = split < size ? size - split - 1 : 0;
    char *path = malloc(path_len + 1);
    if (method == NULL || path == NULL) {
        free(method);
        free(path);
        return 0;
    }
    memcpy(method, data, split);
    method[split] = '\0';
    if (path_len)
        memcpy(path, data + split + 1, path_len);
    path[path_len] = '\0'; /* a NUL inside the path just ends it early */

    struct route r;
    enum route_status st = route_match(table, sizeof table / sizeof table[0], method, path, &r);
    CHECK(st == ROUTE_OK || st == ROUTE_NOT_FOUND || st == ROUTE_BAD_METHOD ||
          st == ROUTE_BAD_NAME);
    CHECK(memchr(r.model, '\0', sizeof r.model) != NULL);
    CHECK(memchr(r.version, '\0', sizeof r.version) != NULL);
    CHECK(memchr(r.region, '\0', sizeof r.region) != NULL);
    if (st == ROUTE_OK || st == ROUTE_BAD_METHOD) {
        CHECK(r.def != NULL && r.def->methods != NULL);
        CHECK((st == ROUTE_OK) == listed(r.def->methods, method));
        const char *name = route_name(&r);
        bool shm_control =
            strstr(name, "shm_register") != NULL || strstr(name, "shm_unregister") != NULL;
        CHECK(route_takes_body(&r) ==
              (strcmp(name, "predict") == 0 || strcmp(name, "model_infer") == 0 ||
               strcmp(name, "repository_load") == 0 || strcmp(name, "repository_unload") == 0 ||
               shm_control));
        enum access_level level = route_access(&r);
        CHECK(level == r.def->access);
        if (level == ACCESS_ADMIN)
            CHECK(strncmp(path, "/v2/repository/models/", 22) == 0 ||
                  (shm_control && (strncmp(path, "/v2/systemsharedmemory/", 23) == 0 ||
                                   strncmp(path, "/v2/cudasharedmemory/", 21) == 0)));
        if (strstr(r.def->pattern, "{region}") != NULL) {
            CHECK(r.region[0] != '\0' && strchr(r.region, '/') == NULL);
            CHECK(strstr(path, r.region) != NULL);
        }
        if (level == ACCESS_OPEN)
            CHECK(strncmp(path, "/v2/health/", 11) == 0);
        if (level == ACCESS_METRICS)
            CHECK(strcmp(path, "/metrics") == 0);
        if (strstr(r.def->pattern, "{model}") != NULL) {
            CHECK(model_name_valid(r.model));
            CHECK(strstr(path, r.model) != NULL);
            CHECK(strchr(r.version, '/') == NULL);
        } else {
            CHECK(r.model[0] == '\0');
        }
    } else {
        CHECK(r.def == NULL);
        CHECK(r.model[0] == '\0');
        CHECK(route_access(&r) == ACCESS_KEY);
    }

    free(method);
    free(path);
    return 0;
}
