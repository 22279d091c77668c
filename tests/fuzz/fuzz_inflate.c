/* fuzz_inflate.c - libFuzzer target for the gzip/deflate body inflater
 * (encoding.h). Byte 0 picks the coding, byte 1 the inflated-size limit,
 * byte 2 the chunk size the body arrives in; the rest is the body. Checks
 * that the output never passes the limit by more than the one byte that
 * shows it was passed, stays NUL-terminated in a buffer no bigger than the
 * limit allows, and that gzip replies of the same bytes inflate back to
 * them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "test_support.h"

static void inflate_body(enum encoding coding, size_t limit, size_t chunk, const uint8_t *body,
                         size_t len)
{
    struct inflater *z = inflater_new(coding, limit);
    if (z == NULL)
        return;
    char *buf = NULL, err[256];
    size_t out = 0, cap = 0, fed = 0;
    int rc = INFLATE_OK;
    while (rc == INFLATE_OK && fed < len) {
        size_t n = len - fed < chunk ? len - fed : chunk;
        /* An exact-size copy of the chunk, so that ASan sees any read past it. */
        uint8_t *copy = malloc(n);
        if (copy == NULL)
            break;
        memcpy(copy, body + fed, n);
        err[0] = '\0';
        rc = inflater_feed(z, copy, n, &buf, &out, &cap, err, sizeof err);
        free(copy);
        fed += n;
        CHECK(rc == INFLATE_OK || rc == INFLATE_TOO_BIG || rc == INFLATE_CORRUPT ||
              rc == INFLATE_NO_MEMORY);
        CHECK(rc == INFLATE_OK || err[0] != '\0');
        CHECK(out <= limit + 1);
        CHECK(rc == INFLATE_TOO_BIG || out <= limit);
        CHECK(cap <= limit + 2);
        CHECK(buf == NULL || (out < cap && buf[out] == '\0'));
    }
    if (rc == INFLATE_OK)
        rc = inflater_finish(z, err, sizeof err);
    CHECK(rc == INFLATE_OK || rc == INFLATE_TOO_BIG || rc == INFLATE_CORRUPT ||
          rc == INFLATE_NO_MEMORY);
    inflater_free(z);
    free(buf);
}

/* gzip the bytes as a reply would be, then inflate them back whole. */
static void round_trip(const uint8_t *body, size_t len)
{
    char *packed;
    size_t packed_len;
    if (encoding_gzip(body, len, 1, &packed, &packed_len) != 0)
        return;
    struct inflater *z = inflater_new(ENCODING_GZIP, len);
    CHECK(z != NULL);
    char *buf = NULL, err[256];
    size_t out = 0, cap = 0;
    CHECK(inflater_feed(z, packed, packed_len, &buf, &out, &cap, err, sizeof err) == INFLATE_OK);
    CHECK(inflater_finish(z, err, sizeof err) == INFLATE_OK);
    CHECK(out == len && (len == 0 || memcmp(buf, body, len) == 0));
    inflater_free(z);
    free(buf);
    free(packed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    enum encoding coding = data[0] & 1 ? ENCODING_DEFLATE : ENCODING_GZIP;
    /* Limits from 0 to about 64 KiB, dense at the small end. */
    size_t limit = (size_t)data[1] * data[1] + (data[0] >> 1);
    size_t chunk = data[2] ? data[2] : size;
    inflate_body(coding, limit, chunk, data + 3, size - 3);
    round_trip(data + 3, size - 3);
    return 0;
}
