/* fuzz_multipart.c - libFuzzer target for the multipart/form-data parser
 * and base64: the input up to its first newline is the boundary, the rest
 * the body. Checks that every part lies inside the body and that base64
 * never writes past its stated bound. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "multipart.h"
#include "test_support.h"

#define MAX_PARTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t split = 0;
    while (split < size && data[split] != '\n')
        split++;
    char header[160];
    size_t blen = split < 80 ? split : 80;
    snprintf(header, sizeof header, "multipart/form-data; boundary=%.*s", (int)blen,
             (const char *)data);
    char boundary[MULTIPART_BOUNDARY_MAX + 1], err[256];
    const uint8_t *body = split < size ? data + split + 1 : data + size;
    size_t body_len = split < size ? size - split - 1 : 0;
    /* An exact-size copy, so that ASan sees any read past the body. */
    uint8_t *copy = malloc(body_len ? body_len : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, body, body_len);
    if (memchr(data, '\0', blen) == NULL &&
        multipart_boundary(header, boundary, err, sizeof err) == 0) {
        CHECK(strlen(boundary) >= 1 && strlen(boundary) <= MULTIPART_BOUNDARY_MAX);
        struct multipart_part parts[MAX_PARTS];
        int n = multipart_parse(copy, body_len, boundary, parts, MAX_PARTS, err, sizeof err);
        CHECK(n == -1 || (n >= 1 && n <= MAX_PARTS));
        for (int i = 0; i < n; i++) {
            CHECK(parts[i].data >= copy && parts[i].data + parts[i].len <= copy + body_len);
            CHECK(strlen(parts[i].name) < sizeof parts[i].name);
        }
    }
    uint8_t *decoded = malloc(base64_decoded_max(body_len));
    if (decoded != NULL) {
        long long n = base64_decode((const char *)copy, body_len, decoded, err, sizeof err);
        CHECK(n == -1 || (n >= 0 && (size_t)n <= base64_decoded_max(body_len)));
        free(decoded);
    }
    free(copy);
    return 0;
}
