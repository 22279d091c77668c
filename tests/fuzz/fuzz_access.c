/* fuzz_access.c - libFuzzer target for the API key file parser, the
 * Bearer parser and the checks: the input is parsed as a key file; when it
 * parses, every key must match itself and a changed copy must not; then the
 * input's first line is tried as an Authorization value and as a presented
 * key (Bearer and X-API-Key) against those keys at every access level, and
 * as the admin token with the file's first key as the token. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "test_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct access_keys k;
    char err[256];
    int n = access_parse_keys((const char *)data, size, &k, err, sizeof err);
    if (n < 0) {
        CHECK(err[0] != '\0');
        return 0;
    }
    CHECK(n == k.n && n >= 1 && n <= ACCESS_MAX_KEYS);
    /* Each match walks every slot in full (constant time), so checking every
     * key against the list costs keys^2 x 256 bytes: a file of 1,024 keys
     * took seconds per input. The first four keys and the last one cover the
     * parser's cases (first, later, last line) at a bounded cost. */
    for (int i = 0; i < k.n; i++) {
        if (i >= 4 && i != k.n - 1)
            continue;
        CHECK(k.lens[i] >= 1 && k.lens[i] <= ACCESS_KEY_MAX);
        char key[ACCESS_KEY_MAX + 1];
        memcpy(key, k.slots[i], k.lens[i]);
        CHECK(access_keys_match(&k, key, k.lens[i]));
        key[k.lens[i]] = '!';
        /* one byte longer: a match only if that longer key is listed too */
        if (access_keys_match(&k, key, k.lens[i] + 1)) {
            bool listed = false;
            for (int j = 0; j < k.n; j++)
                listed |= k.lens[j] == k.lens[i] + 1 && memcmp(k.slots[j], key, k.lens[j]) == 0;
            CHECK(listed);
        }
    }
    /* the whole input's first line as a header value */
    size_t line = 0;
    while (line < size && data[line] != '\n' && data[line] != '\0')
        line++;
    char *value = malloc(line + 8);
    if (value == NULL) {
        access_keys_free(&k);
        return 0;
    }
    memcpy(value, "Bearer ", 7);
    memcpy(value + 7, data, line);
    value[7 + line] = '\0';
    /* the Bearer parser, on the raw line and with the scheme in front */
    size_t tlen = 0;
    const char *token = access_bearer(value + 7, &tlen);
    if (token != NULL) {
        CHECK(tlen >= 1 && token >= value + 7 && token + tlen <= value + 7 + line);
        CHECK(token[0] != ' ' && token[tlen - 1] != ' ');
    }
    token = access_bearer(value, &tlen);
    if (token != NULL)
        CHECK(tlen >= 1 && token >= value + 7 && token + tlen <= value + 7 + line);
    struct access a;
    memset(&a, 0, sizeof a);
    if (pthread_rwlock_init(&a.lock, NULL) == 0) {
        strcpy(a.key_file, "fuzz");
        a.keys = k;
        a.admin_token = (struct access_keys){k.slots, k.lens, 1};
        static const enum access_level levels[] = {ACCESS_OPEN, ACCESS_METRICS, ACCESS_KEY,
                                                   ACCESS_ADMIN};
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
            struct access_request r = {
                "POST", value, value + 7, "https://x.example", NULL, (data[0] & 1) != 0};
            struct access_result res = access_check(&a, levels[i], &r);
            if (levels[i] == ACCESS_OPEN || levels[i] == ACCESS_METRICS)
                CHECK(res.verdict == ACCESS_GO_ON);
            else if (levels[i] == ACCESS_KEY)
                CHECK(res.verdict == ACCESS_GO_ON || res.verdict == ACCESS_BAD_KEY ||
                      res.verdict == ACCESS_NO_KEY);
            else /* the admin token is the first key: it is what the Bearer token must be */
                CHECK((res.verdict == ACCESS_GO_ON) ==
                      (token != NULL && tlen == k.lens[0] && memcmp(token, k.slots[0], tlen) == 0));
            CHECK(access_message(res.verdict) != NULL);
        }
        pthread_rwlock_destroy(&a.lock);
    }
    free(value);
    access_keys_free(&k);
    return 0;
}
