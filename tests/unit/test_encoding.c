/* test_encoding.c - content codings (encoding.h): Content-Encoding and
 * Accept-Encoding values, gzip and deflate (zlib and raw) bodies inflated in
 * chunks of every size, the inflated-size limit (a 10 MB deflate bomb stops
 * at the limit), corrupt, truncated and trailing data, and gzip replies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "encoding.h"
#include "test_support.h"

/* Compress with zlib: window 15 + 16 for gzip, 15 for the zlib format,
 * -15 for raw deflate. */
static unsigned char *pack(const void *data, size_t len, int window, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, window, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (unsigned char *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

/* Some JSON-like text that compresses but is not all one byte. */
static char *sample_text(size_t len)
{
    char *text = malloc(len + 1);
    assert_non_null(text);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        text[i] = "01.,  "[(x >> 16) % 6];
    }
    text[len] = '\0';
    return text;
}

struct result {
    int feed, finish;
    char *buf;
    size_t len, cap;
};

/* Inflate body in chunks of chunk bytes (0: all at once). */
static struct result run(enum encoding coding, const void *body, size_t len, size_t chunk,
                         size_t limit)
{
    struct result r = {0};
    char err[256] = "";
    struct inflater *z = inflater_new(coding, limit);
    assert_non_null(z);
    const unsigned char *p = body;
    size_t left = len;
    r.feed = INFLATE_OK;
    while (left > 0 && r.feed == INFLATE_OK) {
        size_t n = chunk && chunk < left ? chunk : left;
        r.feed = inflater_feed(z, p, n, &r.buf, &r.len, &r.cap, err, sizeof err);
        p += n;
        left -= n;
    }
    if (r.feed != INFLATE_OK)
        assert_true(err[0] != '\0');
    r.finish = r.feed == INFLATE_OK ? inflater_finish(z, err, sizeof err) : r.feed;
    if (r.buf != NULL)
        assert_int_equal(r.buf[r.len], '\0');
    assert_true(r.len <= limit + 1);
    inflater_free(z);
    return r;
}

static void test_parse(void **state)
{
    (void)state;
    enum encoding e;
    assert_int_equal(encoding_parse("gzip", &e), 0);
    assert_int_equal(e, ENCODING_GZIP);
    assert_int_equal(encoding_parse(" GZip ", &e), 0);
    assert_int_equal(e, ENCODING_GZIP);
    assert_int_equal(encoding_parse("x-gzip", &e), 0);
    assert_int_equal(e, ENCODING_GZIP);
    assert_int_equal(encoding_parse("deflate", &e), 0);
    assert_int_equal(e, ENCODING_DEFLATE);
    assert_int_equal(encoding_parse("identity", &e), 0);
    assert_int_equal(e, ENCODING_IDENTITY);
    static const char *const bad[] = {"br",  "zstd",  "",         "gzip, deflate", "gzip;q=1",
                                      "gzi", "gzipx", "compress", "deflate gzip"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(encoding_parse(bad[i], &e), -1);
    assert_string_equal(encoding_name(ENCODING_DEFLATE), "deflate");
}

static void test_accepts_gzip(void **state)
{
    (void)state;
    assert_true(encoding_accepts_gzip("gzip"));
    assert_true(encoding_accepts_gzip("gzip, deflate, br"));
    assert_true(encoding_accepts_gzip("br;q=1.0, GZIP;q=0.5"));
    assert_true(encoding_accepts_gzip("x-gzip"));
    assert_true(encoding_accepts_gzip("*"));
    assert_true(encoding_accepts_gzip("deflate, *;q=0.1"));
    assert_true(encoding_accepts_gzip("gzip;q=0.001"));
    assert_false(encoding_accepts_gzip(NULL));
    assert_false(encoding_accepts_gzip(""));
    assert_false(encoding_accepts_gzip("identity"));
    assert_false(encoding_accepts_gzip("deflate, br"));
    assert_false(encoding_accepts_gzip("gzip;q=0"));
    assert_false(encoding_accepts_gzip("gzip; q=0.000"));
    assert_false(encoding_accepts_gzip("*, gzip;q=0"));
    assert_false(encoding_accepts_gzip("*;q=0"));
    assert_false(encoding_accepts_gzip("gzipx"));
}

/* gzip, zlib-format deflate and raw deflate, fed whole and in chunks of 1,
 * 2, 3, 1000 bytes: the same text comes out. */
static void test_round_trip(void **state)
{
    (void)state;
    size_t len = 200000;
    char *text = sample_text(len);
    static const struct {
        enum encoding coding;
        int window;
    } kinds[] = {{ENCODING_GZIP, 31}, {ENCODING_DEFLATE, 15}, {ENCODING_DEFLATE, -15}};
    static const size_t chunks[] = {0, 1, 2, 3, 1000};
    for (size_t k = 0; k < 3; k++) {
        size_t packed_len;
        unsigned char *packed = pack(text, len, kinds[k].window, &packed_len);
        assert_true(packed_len < len / 2);
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            struct result r = run(kinds[k].coding, packed, packed_len, chunks[c], len);
            assert_int_equal(r.feed, INFLATE_OK);
            assert_int_equal(r.finish, INFLATE_OK);
            assert_int_equal(r.len, len);
            assert_memory_equal(r.buf, text, len);
            free(r.buf);
        }
        free(packed);
    }
    free(text);
}

/* An empty body compressed is an empty body; nothing at all is not. */
static void test_empty(void **state)
{
    (void)state;
    size_t packed_len;
    unsigned char *packed = pack("", 0, 31, &packed_len);
    struct result r = run(ENCODING_GZIP, packed, packed_len, 0, 100);
    assert_int_equal(r.finish, INFLATE_OK);
    assert_int_equal(r.len, 0);
    free(r.buf);
    free(packed);
    r = run(ENCODING_GZIP, "", 0, 0, 100);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
    r = run(ENCODING_DEFLATE, "x", 1, 0, 100);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
}

/* The limit is on the inflated size: exactly the limit passes, one byte
 * less refuses it. */
static void test_limit_exact(void **state)
{
    (void)state;
    size_t len = 50000, packed_len;
    char *text = sample_text(len);
    unsigned char *packed = pack(text, len, 31, &packed_len);
    struct result r = run(ENCODING_GZIP, packed, packed_len, 700, len);
    assert_int_equal(r.finish, INFLATE_OK);
    free(r.buf);
    r = run(ENCODING_GZIP, packed, packed_len, 700, len - 1);
    assert_int_equal(r.feed, INFLATE_TOO_BIG);
    assert_true(r.len <= len);
    free(r.buf);
    free(packed);
    free(text);
}

/* 10 MB of zeros deflated (about 10 KB): with a 1 MiB limit, inflating
 * stops just past the limit, the buffer never grows beyond it, and feeding
 * stops at the chunk that passed it. */
static void test_deflate_bomb(void **state)
{
    (void)state;
    size_t len = 10 * 1000 * 1000, packed_len;
    char *zeros = calloc(1, len);
    assert_non_null(zeros);
    unsigned char *packed = pack(zeros, len, 15, &packed_len);
    assert_true(packed_len < 20000);
    size_t limit = 1 << 20;
    char err[256];
    struct inflater *z = inflater_new(ENCODING_DEFLATE, limit);
    assert_non_null(z);
    char *buf = NULL;
    size_t out = 0, cap = 0, fed = 0;
    int rc = INFLATE_OK;
    while (rc == INFLATE_OK && fed < packed_len) {
        size_t n = packed_len - fed < 512 ? packed_len - fed : 512;
        rc = inflater_feed(z, packed + fed, n, &buf, &out, &cap, err, sizeof err);
        fed += n;
    }
    assert_int_equal(rc, INFLATE_TOO_BIG);
    assert_non_null(strstr(err, "more than 1048576 bytes"));
    assert_true(out == limit + 1);
    assert_true(cap <= limit + 2);
    assert_true(fed < packed_len / 4); /* stopped early: a tenth of the stream is 1 MB */
    /* It takes nothing more. */
    assert_int_equal(inflater_feed(z, packed, 10, &buf, &out, &cap, err, sizeof err),
                     INFLATE_CORRUPT);
    assert_int_equal(inflater_finish(z, err, sizeof err), INFLATE_CORRUPT);
    inflater_free(z);
    free(buf);
    free(packed);
    free(zeros);
}

static void test_corrupt(void **state)
{
    (void)state;
    size_t len = 20000, packed_len;
    char *text = sample_text(len);
    unsigned char *gz = pack(text, len, 31, &packed_len);

    /* Not gzip at all. */
    struct result r = run(ENCODING_GZIP, "{\"inputs\": [1, 2, 3]}", 21, 0, len);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
    free(r.buf);
    /* Truncated: every prefix but the whole fails, at feed or at finish. */
    for (size_t cut = 1; cut < packed_len; cut += packed_len / 13 + 1) {
        r = run(ENCODING_GZIP, gz, cut, 0, len);
        assert_int_equal(r.finish, INFLATE_CORRUPT);
        free(r.buf);
    }
    r = run(ENCODING_GZIP, gz, packed_len - 1, 0, len);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
    free(r.buf);
    /* A flipped byte in the CRC-32 trailer. */
    gz[packed_len - 6] ^= 0x55;
    r = run(ENCODING_GZIP, gz, packed_len, 0, len);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
    free(r.buf);
    gz[packed_len - 6] ^= 0x55;
    /* gzip data sent as deflate. */
    r = run(ENCODING_DEFLATE, gz, packed_len, 0, len);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
    free(r.buf);

    /* Bytes after the end of a zlib stream. */
    size_t zl_len;
    unsigned char *zl = pack(text, len, 15, &zl_len);
    unsigned char *tail = malloc(zl_len + 3);
    assert_non_null(tail);
    memcpy(tail, zl, zl_len);
    memcpy(tail + zl_len, "xyz", 3);
    r = run(ENCODING_DEFLATE, tail, zl_len + 3, 0, len);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
    free(r.buf);
    free(tail);
    free(zl);
    free(gz);
    free(text);
}

/* Two gzip members one after the other are one body (RFC 1952); garbage
 * after a member is not. */
static void test_gzip_members(void **state)
{
    (void)state;
    size_t a_len, b_len;
    unsigned char *a = pack("hello, ", 7, 31, &a_len);
    unsigned char *b = pack("world", 5, 31, &b_len);
    unsigned char *both = malloc(a_len + b_len);
    assert_non_null(both);
    memcpy(both, a, a_len);
    memcpy(both + a_len, b, b_len);
    for (size_t chunk = 0; chunk < 4; chunk++) {
        struct result r = run(ENCODING_GZIP, both, a_len + b_len, chunk, 100);
        assert_int_equal(r.finish, INFLATE_OK);
        assert_int_equal(r.len, 12);
        assert_memory_equal(r.buf, "hello, world", 12);
        free(r.buf);
    }
    memcpy(both + a_len, "garbage!", 8);
    struct result r = run(ENCODING_GZIP, both, a_len + 8, 0, 100);
    assert_int_equal(r.finish, INFLATE_CORRUPT);
    free(r.buf);
    free(both);
    free(a);
    free(b);
}

/* encoding_gzip's output is gzip that zlib (and so any client) reads. */
static void test_gzip_reply(void **state)
{
    (void)state;
    size_t len = 100000;
    char *text = sample_text(len);
    char *packed;
    size_t packed_len;
    assert_int_equal(encoding_gzip(text, len, 1, &packed, &packed_len), 0);
    assert_true(packed_len < len / 2);
    assert_int_equal((unsigned char)packed[0], 0x1f);
    assert_int_equal((unsigned char)packed[1], 0x8b);
    struct result r = run(ENCODING_GZIP, packed, packed_len, 0, len);
    assert_int_equal(r.finish, INFLATE_OK);
    assert_int_equal(r.len, len);
    assert_memory_equal(r.buf, text, len);
    free(r.buf);
    free(packed);
    assert_int_equal(encoding_gzip("", 0, 1, &packed, &packed_len), 0);
    assert_true(packed_len >= 18); /* header and trailer */
    free(packed);
    free(text);
    assert_null(inflater_new(ENCODING_IDENTITY, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),       cmocka_unit_test(test_accepts_gzip),
        cmocka_unit_test(test_round_trip),  cmocka_unit_test(test_empty),
        cmocka_unit_test(test_limit_exact), cmocka_unit_test(test_deflate_bomb),
        cmocka_unit_test(test_corrupt),     cmocka_unit_test(test_gzip_members),
        cmocka_unit_test(test_gzip_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
