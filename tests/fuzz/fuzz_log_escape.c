/* fuzz_log_escape.c - libFuzzer target for the logger's escaping of client
 * strings (log_append_escaped): whatever the bytes, the result holds no
 * control byte and is well-formed UTF-8, and quoted it is one JSON string
 * that decodes to the input when the input was UTF-8 without NUL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "strbuf.h"
#include "test_support.h"

/* An independent check: well-formed UTF-8 (no overlong form, surrogate or
 * code point past U+10FFFF). */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        unsigned cp;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    for (int quoted = 0; quoted <= 1; quoted++) {
        struct strbuf sb = {0};
        if (log_append_escaped(&sb, in, quoted) != 0) {
            strbuf_free(&sb);
            continue;
        }
        size_t len = 0;
        char *out = strbuf_detach(&sb, &len);
        CHECK(out != NULL);
        for (size_t i = 0; i < len; i++)
            CHECK((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] != 0x7F);
        CHECK(utf8_ok((const unsigned char *)out, len));
        if (quoted) {
            cJSON *j = cJSON_Parse(out);
            CHECK(j != NULL && cJSON_IsString(j));
            if (strlen(in) == size && utf8_ok(data, size))
                CHECK(strcmp(j->valuestring, in) == 0);
            cJSON_Delete(j);
        }
        free(out);
    }
    free(in);
    return 0;
}
