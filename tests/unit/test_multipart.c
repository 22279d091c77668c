/* test_multipart.c - multipart/form-data: boundaries from Content-Type,
 * parts with names, filenames and types, and every malformed body refused
 * with a message; plus base64 decoding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base64.h"
#include "multipart.h"

static void boundary_from_content_type(void **state)
{
    (void)state;
    char b[MULTIPART_BOUNDARY_MAX + 1], err[128];
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=abc123", b, err, 128), 0);
    assert_string_equal(b, "abc123");
    assert_int_equal(
        multipart_boundary("Multipart/Form-Data;charset=x; BOUNDARY=\"a b;c\"", b, err, 128), 0);
    assert_string_equal(b, "a b;c");
    assert_int_equal(multipart_boundary("multipart/form-data", b, err, 128), -1);
    assert_non_null(strstr(err, "boundary"));
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=", b, err, 128), -1);
    assert_int_equal(multipart_boundary("text/plain; boundary=x", b, err, 128), -1);
    char longer[200];
    snprintf(longer, sizeof longer, "multipart/form-data; boundary=%071d", 0);
    assert_int_equal(multipart_boundary(longer, b, err, 128), -1);
}

static int parse(const char *body, const char *boundary, struct multipart_part *parts, int max,
                 char *err)
{
    return multipart_parse((const uint8_t *)body, strlen(body), boundary, parts, max, err, 256);
}

static void parts_as_curl_sends_them(void **state)
{
    (void)state;
    const char *body = "preamble\r\n"
                       "--XyZ\r\n"
                       "Content-Disposition: form-data; name=\"image\"; filename=\"boot.png\"\r\n"
                       "Content-Type: image/png\r\n"
                       "\r\n"
                       "\x89PNG\r\n--XyZ-not-a-delimiter\r\n"
                       "--XyZ  \r\n"
                       "content-disposition: form-data; filename=\"b;c.jpg\"; name=second\r\n"
                       "\r\n"
                       "JPEG\r\n"
                       "--XyZ\r\n"
                       "Content-Disposition: form-data; name=\"note\"\r\n"
                       "\r\n"
                       "hello\r\n"
                       "--XyZ--\r\n";
    struct multipart_part parts[4];
    char err[256] = "";
    assert_int_equal(parse(body, "XyZ", parts, 4, err), 3);
    assert_string_equal(parts[0].name, "image");
    assert_string_equal(parts[0].filename, "boot.png");
    assert_string_equal(parts[0].content_type, "image/png");
    assert_true(parts[0].is_file);
    assert_int_equal(parts[0].len, strlen("\x89PNG\r\n--XyZ-not-a-delimiter"));
    assert_memory_equal(parts[0].data, "\x89PNG\r\n--XyZ-not-a-delimiter", parts[0].len);
    assert_string_equal(parts[1].name, "second");
    assert_string_equal(parts[1].filename, "b;c.jpg");
    assert_memory_equal(parts[1].data, "JPEG", 4);
    assert_false(parts[2].is_file);
    assert_string_equal(parts[2].name, "note");
    assert_int_equal(parts[2].len, 5);
    /* The first delimiter may open the body. */
    assert_int_equal(parse("--b\r\n\r\nx\r\n--b--", "b", parts, 4, err), 1);
    assert_int_equal(parts[0].len, 1);
    assert_string_equal(parts[0].name, "");
}

static void malformed_bodies_are_refused(void **state)
{
    (void)state;
    struct multipart_part parts[2];
    struct {
        const char *body, *says;
    } bad[] = {
        {"--other\r\n\r\nx\r\n--other--", "does not contain its boundary"},
        {"--b\r\nContent-Type: x\r\n\r\nunterminated", "no closing boundary"},
        {"--b\r\nContent-Type: x", "headers do not end"},
        {"--b--\r\n", "no parts"},
        {"--bjunk\r\n\r\nx\r\n--b--", "not followed by a line end"},
        {"--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--", "more than 2 parts"},
        {"", "does not contain"},
    };
    char err0[256] = "";
    assert_int_equal(multipart_parse(NULL, 0, "b", parts, 2, err0, sizeof err0), -1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        assert_int_equal(parse(bad[i].body, "b", parts, 2, err), -1);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("body %zu: error '%s' does not mention '%s'", i, err, bad[i].says);
    }
}

static void base64_round_trips_and_refuses(void **state)
{
    (void)state;
    uint8_t out[64];
    char err[128];
    assert_int_equal(base64_decode("", 0, out, err, sizeof err), 0);
    assert_int_equal(base64_decode("Zg==", 4, out, err, sizeof err), 1);
    assert_memory_equal(out, "f", 1);
    assert_int_equal(base64_decode("Zm8=", 4, out, err, sizeof err), 2);
    assert_int_equal(base64_decode("Zm9vYmFy", 8, out, err, sizeof err), 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(base64_decode("/+8A", 4, out, err, sizeof err), 3);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0xef);
    assert_int_equal(out[2], 0x00);
    assert_int_equal(base64_decode("Zm9", 3, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "multiple of 4"));
    assert_int_equal(base64_decode("Zm9v YmFy", 9, out, err, sizeof err), -1);
    assert_int_equal(base64_decode("Z===", 4, out, err, sizeof err), -1);
    assert_int_equal(base64_decode("Zg==Zg==", 8, out, err, sizeof err), -1);
    assert_int_equal(base64_decode("Zm-v", 4, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "offset 2"));
    assert_true(base64_decoded_max(8) >= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(boundary_from_content_type),
        cmocka_unit_test(parts_as_curl_sends_them),
        cmocka_unit_test(malformed_bodies_are_refused),
        cmocka_unit_test(base64_round_trips_and_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
