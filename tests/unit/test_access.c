/* test_access.c - API keys, the admin token and CORS: key file parsing
 * (blank lines, CRLF, comments, bad bytes, a missing file, loose
 * permissions), the constant-time match, reload keeping the old keys on
 * failure, the one Bearer parser, the verdicts per access level and header,
 * the admin token and loopback rule, the CORS headers, and that no message
 * ever holds a key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"

static char tmpdir[] = "/tmp/inferd-test-access.XXXXXX";

static int setup_dir(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Write text to <tmpdir>/name with mode; returns the path (static). */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static bool has_key(const struct access_keys *k, const char *key)
{
    return access_keys_match(k, key, strlen(key));
}

static void test_parse_lines(void **state)
{
    (void)state;
    const char text[] = "\n  alpha-key-1  \r\n\r\n# a comment\nbeta_key.2\r\n\t\ngamma";
    struct access_keys k;
    char err[256] = "";
    assert_int_equal(access_parse_keys(text, strlen(text), &k, err, sizeof err), 3);
    assert_true(has_key(&k, "alpha-key-1"));
    assert_true(has_key(&k, "beta_key.2"));
    assert_true(has_key(&k, "gamma")); /* no newline at the end */
    assert_false(has_key(&k, "beta_key.2\r"));
    assert_false(has_key(&k, "# a comment"));
    assert_false(has_key(&k, ""));
    assert_false(has_key(&k, "alpha-key-"));   /* a prefix */
    assert_false(has_key(&k, "alpha-key-12")); /* longer */
    assert_false(has_key(&k, "ALPHA-KEY-1"));  /* case matters */
    access_keys_free(&k);
}

static void test_parse_errors_name_the_line_not_the_key(void **state)
{
    (void)state;
    struct access_keys k;
    char err[256];
    /* nothing but blanks and comments */
    assert_int_equal(access_parse_keys("\n\r\n# only\n", 10, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "no key"));
    /* a space inside a key */
    const char spaced[] = "good-key\nsecret part\n";
    assert_int_equal(access_parse_keys(spaced, strlen(spaced), &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2"));
    assert_null(strstr(err, "secret"));
    /* a control byte */
    const char ctl[] = "a\x01secretb\n";
    assert_int_equal(access_parse_keys(ctl, strlen(ctl), &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1"));
    assert_null(strstr(err, "secret"));
    /* too long */
    char longkey[ACCESS_KEY_MAX + 3];
    memset(longkey, 'x', ACCESS_KEY_MAX + 1);
    longkey[ACCESS_KEY_MAX + 1] = '\0';
    assert_int_equal(access_parse_keys(longkey, strlen(longkey), &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than"));
    assert_null(strstr(err, "xxxx"));
    /* NUL inside the text (not NUL-terminated input) */
    const char nul[] = {'k', 'e', 'y', '\0', 'x', '\n'};
    assert_int_equal(access_parse_keys(nul, sizeof nul, &k, err, sizeof err), -1);
}

static void test_match_longest_key_and_overlong_candidate(void **state)
{
    (void)state;
    char text[ACCESS_KEY_MAX + 8];
    memset(text, 'k', ACCESS_KEY_MAX);
    text[ACCESS_KEY_MAX] = '\0';
    struct access_keys k;
    char err[256];
    assert_int_equal(access_parse_keys(text, strlen(text), &k, err, sizeof err), 1);
    assert_true(access_keys_match(&k, text, ACCESS_KEY_MAX));
    char over[ACCESS_KEY_MAX + 1];
    memset(over, 'k', sizeof over);
    assert_false(access_keys_match(&k, over, sizeof over));
    assert_false(access_keys_match(&k, text, ACCESS_KEY_MAX - 1));
    access_keys_free(&k);
}

static void test_key_file_missing_and_permissions(void **state)
{
    (void)state;
    struct access_keys k;
    bool loose = true;
    char err[512];
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no-such-file", tmpdir);
    assert_int_equal(access_read_key_file(missing, &k, &loose, err, sizeof err), -1);
    assert_non_null(strstr(err, missing));
    assert_non_null(strstr(err, "No such file"));

    const char *tight = write_file("tight", "one\r\ntwo\r\n", 0600);
    assert_int_equal(access_read_key_file(tight, &k, &loose, err, sizeof err), 2);
    assert_false(loose);
    access_keys_free(&k);

    const char *wide = write_file("wide", "one\n", 0644);
    assert_int_equal(access_read_key_file(wide, &k, &loose, err, sizeof err), 1);
    assert_true(loose);
    access_keys_free(&k);

    const char *group = write_file("group", "one\n", 0640);
    assert_int_equal(access_read_key_file(group, &k, &loose, err, sizeof err), 1);
    assert_true(loose);
    access_keys_free(&k);

    /* a folder is not a key file */
    assert_int_equal(access_read_key_file(tmpdir, &k, &loose, err, sizeof err), -1);

    /* access_init fails at start-up with the same clear reason */
    struct access a;
    assert_int_equal(access_init(&a, missing, false, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

static struct access_result check(struct access *a, const char *method, enum access_level level,
                                  const char *authorization, const char *api_key)
{
    struct access_request r = {method, authorization, api_key, NULL, NULL, false};
    return access_check(a, level, &r);
}

static void test_bearer(void **state)
{
    (void)state;
    size_t n = 0;
    const char *t = access_bearer("Bearer abc", &n);
    assert_non_null(t);
    assert_int_equal(n, 3);
    assert_memory_equal(t, "abc", 3);
    t = access_bearer("bEARER   abc  ", &n);
    assert_non_null(t);
    assert_int_equal(n, 3);
    assert_memory_equal(t, "abc", 3);
    assert_null(access_bearer(NULL, &n));
    assert_null(access_bearer("", &n));
    assert_null(access_bearer("Bearer", &n));
    assert_null(access_bearer("Bearer    ", &n));
    assert_null(access_bearer("Basic abc", &n));
    assert_null(access_bearer("Bearerabc", &n));
    assert_null(access_bearer("abc", &n));
}

static void test_verdicts(void **state)
{
    (void)state;
    const char *path = write_file("keys", "key-one\nkey-two\n", 0600);
    struct access a;
    char err[512];
    assert_int_equal(access_init(&a, path, false, NULL, err, sizeof err), 0);
    assert_true(access_keys_on(&a));
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, NULL).verdict, ACCESS_NO_KEY);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, "Bearer key-one", NULL).verdict, ACCESS_GO_ON);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, "bearer  key-two ", NULL).verdict, ACCESS_GO_ON);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, "key-two").verdict, ACCESS_GO_ON);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, "Bearer key-three", NULL).verdict,
                     ACCESS_BAD_KEY);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, "key-on").verdict, ACCESS_BAD_KEY);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, "Basic a2V5LW9uZQ==", NULL).verdict,
                     ACCESS_NO_KEY);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, "Bearer ", NULL).verdict, ACCESS_NO_KEY);
    /* key routes (and unknown paths) need a key; open ones and (by default)
     * metrics do not; admin ones need no key (the admin token instead) */
    assert_int_equal(check(&a, "GET", ACCESS_KEY, NULL, NULL).verdict, ACCESS_NO_KEY);
    assert_int_equal(check(&a, "GET", ACCESS_KEY, NULL, NULL).verdict, ACCESS_NO_KEY);
    assert_int_equal(check(&a, "GET", ACCESS_KEY, NULL, NULL).verdict, ACCESS_NO_KEY);
    assert_int_equal(check(&a, "GET", ACCESS_KEY, NULL, NULL).verdict, ACCESS_NO_KEY);
    assert_int_equal(check(&a, "GET", ACCESS_OPEN, NULL, NULL).verdict, ACCESS_GO_ON);
    assert_int_equal(check(&a, "GET", ACCESS_OPEN, NULL, NULL).verdict, ACCESS_GO_ON);
    assert_int_equal(check(&a, "GET", ACCESS_METRICS, NULL, NULL).verdict, ACCESS_GO_ON);
    struct access_request local = {"POST", NULL, NULL, NULL, NULL, true};
    assert_int_equal(access_check(&a, ACCESS_ADMIN, &local).verdict, ACCESS_GO_ON);
    /* the messages (HTTP's codes for them: http.c, test_access.py) */
    const char *msg = access_message(ACCESS_NO_KEY);
    assert_non_null(strstr(msg, "Authorization: Bearer"));
    msg = access_message(ACCESS_BAD_KEY);
    assert_non_null(strstr(msg, "not valid"));
    assert_null(strstr(msg, "key-"));
    assert_string_equal(access_message(ACCESS_GO_ON), "");
    access_destroy(&a);

    assert_int_equal(access_init(&a, path, true, NULL, err, sizeof err), 0);
    assert_int_equal(check(&a, "GET", ACCESS_METRICS, NULL, NULL).verdict, ACCESS_NO_KEY);
    assert_int_equal(check(&a, "GET", ACCESS_METRICS, NULL, "key-one").verdict, ACCESS_GO_ON);
    access_destroy(&a);

    /* no key file: everything open */
    assert_int_equal(access_init(&a, "", true, NULL, err, sizeof err), 0);
    assert_false(access_keys_on(&a));
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, NULL).verdict, ACCESS_GO_ON);
    assert_int_equal(access_reload(&a, err, sizeof err), 0);
    access_destroy(&a);
}

static struct access_result admin(struct access *a, const char *authorization, bool loopback)
{
    struct access_request r = {"POST", authorization, NULL, NULL, NULL, loopback};
    return access_check(a, ACCESS_ADMIN, &r);
}

static void test_admin(void **state)
{
    (void)state;
    struct access a;
    char err[512];
    const char *msg;
    /* no token file: loopback clients only, with or without an API key file */
    const char *keys = write_file("admin-keys", "api-key\n", 0600);
    assert_int_equal(access_init(&a, keys, false, NULL, err, sizeof err), 0);
    assert_int_equal(access_read_admin_token(&a, "", err, sizeof err), 0);
    assert_int_equal(admin(&a, NULL, true).verdict, ACCESS_GO_ON);
    assert_int_equal(admin(&a, NULL, false).verdict, ACCESS_NOT_LOCAL);
    assert_int_equal(admin(&a, "Bearer api-key", false).verdict, ACCESS_NOT_LOCAL);
    msg = access_message(ACCESS_NOT_LOCAL);
    assert_non_null(strstr(msg, "loopback"));
    access_destroy(&a);

    /* a token file: the token, from anywhere; loopback alone is not enough */
    const char *token = write_file("admin-token", "s3cret-token\n", 0600);
    assert_int_equal(access_init(&a, NULL, false, NULL, err, sizeof err), 0);
    assert_int_equal(access_read_admin_token(&a, token, err, sizeof err), 0);
    assert_int_equal(admin(&a, "Bearer s3cret-token", false).verdict, ACCESS_GO_ON);
    assert_int_equal(admin(&a, "bearer  s3cret-token ", false).verdict, ACCESS_GO_ON);
    assert_int_equal(admin(&a, NULL, true).verdict, ACCESS_NO_TOKEN);
    assert_int_equal(admin(&a, "s3cret-token", false).verdict, ACCESS_NO_TOKEN);
    assert_int_equal(admin(&a, "Bearer s3cret-toke", false).verdict, ACCESS_NO_TOKEN);
    assert_int_equal(admin(&a, "Bearer s3cret-tokenx", false).verdict, ACCESS_NO_TOKEN);
    assert_int_equal(admin(&a, "Bearer ", false).verdict, ACCESS_NO_TOKEN);
    msg = access_message(ACCESS_NO_TOKEN);
    assert_non_null(strstr(msg, "admin token"));
    assert_null(strstr(msg, "s3cret"));
    /* the token is no API key, and keys are not asked of admin routes */
    assert_int_equal(check(&a, "POST", ACCESS_KEY, "Bearer s3cret-token", NULL).verdict,
                     ACCESS_GO_ON); /* no key file: open */
    access_destroy(&a);

    /* a token file must hold exactly one token */
    const char *two = write_file("admin-two", "one\ntwo\n", 0600);
    assert_int_equal(access_init(&a, NULL, false, NULL, err, sizeof err), 0);
    assert_int_equal(access_read_admin_token(&a, two, err, sizeof err), -1);
    assert_non_null(strstr(err, "exactly one token"));
    assert_int_equal(admin(&a, NULL, false).verdict, ACCESS_NOT_LOCAL);
    access_destroy(&a);
}

static void test_reload(void **state)
{
    (void)state;
    const char *path = write_file("reload", "old-key\n", 0600);
    char saved[256];
    snprintf(saved, sizeof saved, "%s", path);
    struct access a;
    char err[512];
    assert_int_equal(access_init(&a, saved, false, NULL, err, sizeof err), 0);
    write_file("reload", "new-key\r\n", 0600);
    assert_int_equal(access_reload(&a, err, sizeof err), 0);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, "new-key").verdict, ACCESS_GO_ON);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, "old-key").verdict, ACCESS_BAD_KEY);
    /* a broken file: the keys in force stay */
    write_file("reload", "# emptied by mistake\n", 0600);
    assert_int_equal(access_reload(&a, err, sizeof err), -1);
    assert_non_null(strstr(err, "no key"));
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, "new-key").verdict, ACCESS_GO_ON);
    unlink(saved);
    assert_int_equal(access_reload(&a, err, sizeof err), -1);
    assert_int_equal(check(&a, "POST", ACCESS_KEY, NULL, "new-key").verdict, ACCESS_GO_ON);
    access_destroy(&a);
}

/* Collects reply headers as "Name: value\n" lines. */
struct headers {
    char text[2048];
};

static void collect(void *ctx, const char *name, const char *value)
{
    struct headers *h = ctx;
    size_t n = strlen(h->text);
    snprintf(h->text + n, sizeof h->text - n, "%s: %s\n", name, value);
}

static struct access_result cors(struct access *a, const char *method, const char *origin,
                                 const char *preflight, struct headers *h)
{
    struct access_request r = {method, NULL, NULL, origin, preflight, false};
    struct access_result res = access_check(a, ACCESS_KEY, &r);
    memset(h, 0, sizeof *h);
    access_reply_headers(a, &res, collect, h);
    return res;
}

static void test_cors(void **state)
{
    (void)state;
    struct access a;
    struct headers h;
    char err[512];
    const char *keys = write_file("cors-keys", "k1\n", 0600);
    assert_int_equal(access_init(&a, keys, false, " https://app.example.com, http://localhost:3000",
                                 err, sizeof err),
                     0);
    assert_int_equal(a.n_origins, 2);
    /* preflight from an allowed origin: no key needed, 204 and the headers */
    struct access_result r = cors(&a, "OPTIONS", "http://localhost:3000", "POST", &h);
    assert_int_equal(r.verdict, ACCESS_PREFLIGHT);
    assert_string_equal(access_message(r.verdict), "");
    assert_non_null(strstr(h.text, "Access-Control-Allow-Origin: http://localhost:3000\n"));
    assert_non_null(strstr(h.text, "Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS\n"));
    assert_non_null(strstr(h.text, "Authorization"));
    assert_non_null(strstr(h.text, "Content-Type"));
    assert_non_null(strstr(h.text, "Inference-Header-Content-Length"));
    assert_non_null(strstr(h.text, "Vary: Origin\n"));
    /* from another origin: 403, no Allow-Origin */
    r = cors(&a, "OPTIONS", "https://evil.example.com", "POST", &h);
    assert_int_equal(r.verdict, ACCESS_BAD_ORIGIN);
    assert_non_null(strstr(access_message(r.verdict), "CORS"));
    assert_null(strstr(h.text, "Access-Control-Allow-Origin"));
    /* a prefix of an allowed origin is another origin */
    r = cors(&a, "OPTIONS", "https://app.example.co", "POST", &h);
    assert_int_equal(r.verdict, ACCESS_BAD_ORIGIN);
    /* the actual request still needs its key, and its 401 carries CORS
     * headers so that the browser can read it */
    r = cors(&a, "POST", "https://app.example.com", NULL, &h);
    assert_int_equal(r.verdict, ACCESS_NO_KEY);
    assert_non_null(strstr(h.text, "Access-Control-Allow-Origin: https://app.example.com\n"));
    assert_non_null(strstr(h.text, "WWW-Authenticate: Bearer realm=\"inferd\"\n"));
    assert_non_null(strstr(h.text, "Access-Control-Expose-Headers: X-Request-ID"));
    /* OPTIONS without the preflight header is not a preflight */
    r = cors(&a, "OPTIONS", "https://app.example.com", NULL, &h);
    assert_int_equal(r.verdict, ACCESS_NO_KEY);
    access_destroy(&a);

    /* "*" answers any origin with "*", and no Vary */
    assert_int_equal(access_init(&a, NULL, false, "*", err, sizeof err), 0);
    r = cors(&a, "OPTIONS", "https://anyone.example", "GET", &h);
    assert_int_equal(r.verdict, ACCESS_PREFLIGHT);
    assert_non_null(strstr(h.text, "Access-Control-Allow-Origin: *\n"));
    assert_null(strstr(h.text, "Vary"));
    access_destroy(&a);

    /* CORS off: OPTIONS goes on to the router (405), no CORS headers */
    assert_int_equal(access_init(&a, NULL, false, "", err, sizeof err), 0);
    r = cors(&a, "OPTIONS", "https://anyone.example", "GET", &h);
    assert_int_equal(r.verdict, ACCESS_GO_ON);
    assert_string_equal(h.text, "");
    access_destroy(&a);

    /* bad origin lists */
    const char *bad[] = {"example.com", "https://a.example/path", "ftp://x", "*,https://a.b",
                         "https://"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (access_init(&a, NULL, false, bad[i], err, sizeof err) == 0)
            fail_msg("--cors-allow-origin '%s' accepted", bad[i]);
        assert_non_null(strstr(err, "--cors-allow-origin"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_lines),
        cmocka_unit_test(test_parse_errors_name_the_line_not_the_key),
        cmocka_unit_test(test_match_longest_key_and_overlong_candidate),
        cmocka_unit_test(test_key_file_missing_and_permissions),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_cors),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
