/* test_log.c - log lines (log.h): every client string is escaped in both
 * formats, so that no request can forge a line or break the JSON; bytes
 * that are not UTF-8 never reach a JSON line raw. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"
#include "test_support.h"

/* s escaped, quoted or not, as a new string. */
static char *escaped(const char *s, bool quoted)
{
    struct strbuf sb = {0};
    assert_int_equal(log_append_escaped(&sb, s, quoted), 0);
    char *out = strbuf_detach(&sb, NULL);
    assert_non_null(out);
    return out;
}

static void expect_escaped(const char *in, bool quoted, const char *want)
{
    char *got = escaped(in, quoted);
    assert_string_equal(got, want);
    free(got);
}

/* One whole line with one string field, as a new string. */
static char *line(enum log_format format, const char *msg, const char *value)
{
    struct log_field f = {"path", LOG_STR, value, 0};
    struct strbuf sb = {0};
    log_render(&sb, format, LOG_INFO, msg, &f, 1);
    assert_false(sb.failed);
    char *out = strbuf_detach(&sb, NULL);
    assert_non_null(out);
    return out;
}

static void count_newlines(const char *s, int want)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    assert_int_equal(n, want);
}

static void test_control_bytes(void **state)
{
    (void)state;
    expect_escaped("a\nb\rc\td", false, "a\\nb\\rc\\td");
    expect_escaped("\x1b[31m\x7f", false, "\\u001b[31m\\u007f");
    expect_escaped("q\"b\\", true, "\"q\\\"b\\\\\"");
    expect_escaped("q\"b\\", false, "q\"b\\"); /* free text: only control bytes */
    expect_escaped("", true, "\"\"");
}

static void test_utf8(void **state)
{
    (void)state;
    expect_escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", true,
                   "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    expect_escaped("\xff\xfe", true, "\"\\u00ff\\u00fe\"");            /* never UTF-8 */
    expect_escaped("\xc3", true, "\"\\u00c3\"");                       /* cut short */
    expect_escaped("\xc3(", true, "\"\\u00c3(\"");                     /* bad continuation */
    expect_escaped("\xc0\xaf", true, "\"\\u00c0\\u00af\"");            /* overlong '/' */
    expect_escaped("\xe0\x80\xaf", true, "\"\\u00e0\\u0080\\u00af\""); /* overlong */
    expect_escaped("\xed\xa0\x80", true, "\"\\u00ed\\u00a0\\u0080\""); /* surrogate */
    expect_escaped("\xf4\x90\x80\x80", true, "\"\\u00f4\\u0090\\u0080\\u0080\""); /* > U+10FFFF */
    expect_escaped("\x80", true, "\"\\u0080\""); /* stray continuation */
}

static void test_text_line_cannot_be_forged(void **state)
{
    (void)state;
    const char *forged = "/x\n2026-01-01T00:00:00.000Z\terror\tFORGED";
    char *l = line(LOG_FORMAT_TEXT, "request", forged);
    count_newlines(l, 1);
    assert_non_null(strstr(l, " path=\"/x\\n2026-01-01T00:00:00.000Z\\terror\\tFORGED\"\n"));
    free(l);
    l = line(LOG_FORMAT_TEXT, "model a\nb failed", "plain");
    count_newlines(l, 1);
    assert_non_null(strstr(l, " model a\\nb failed path=plain\n"));
    free(l);
    l = line(LOG_FORMAT_TEXT, "m", "a=b"); /* a value cannot pose as another field */
    assert_non_null(strstr(l, " path=\"a=b\"\n"));
    free(l);
    l = line(LOG_FORMAT_TEXT, "m", "\xff");
    assert_non_null(strstr(l, " path=\"\\u00ff\"\n"));
    free(l);
}

static void test_json_line(void **state)
{
    (void)state;
    char *l = line(LOG_FORMAT_JSON, "bad\xfe msg\n", "/x\n\x01\xc3\xa9\xff");
    count_newlines(l, 1);
    assert_non_null(
        strstr(l, "\"msg\":\"bad\\u00fe msg\\n\",\"path\":\"/x\\n\\u0001\xc3\xa9\\u00ff\"}\n"));
    for (const unsigned char *p = (const unsigned char *)l; *p; p++)
        assert_true(*p != 0xff && *p != 0xfe && (*p >= 0x20 || *p == '\n'));
    free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_text_line_cannot_be_forged),
        cmocka_unit_test(test_json_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
