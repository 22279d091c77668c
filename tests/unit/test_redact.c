/* test_redact.c - server paths stripped from client messages (redact.h):
 * absolute paths become their last component, other text stays. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "redact.h"
#include "test_support.h"

static void expect(const char *in, const char *want)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", in);
    redact_paths(buf);
    assert_string_equal(buf, want);
}

static void test_paths(void **state)
{
    (void)state;
    expect("cannot open /srv/models/a/labels.txt: No such file or directory",
           "cannot open labels.txt: No such file or directory");
    expect("/srv/models/a/model.pt is not a model", "model.pt is not a model");
    expect("file '/x/y/model.pt' (size 3)", "file 'model.pt' (size 3)");
    expect("open(\"/a/b\"), then [/c/d]", "open(\"b\"), then [d]");
    expect("path=/a/b/c,next", "path=c,next");
    expect("error in /build/torch/csrc/jit/x.cpp:42", "error in x.cpp:42");
}

static void test_other_text_stays(void **state)
{
    (void)state;
    expect("model a/b is 3/4 done", "model a/b is 3/4 done");
    expect("a / b and a trailing /", "a / b and a trailing /");
    expect("", "");
    expect("http://example.com/x", "http://example.com/x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_other_text_stays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
