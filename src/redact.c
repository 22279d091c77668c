/* redact.c - strip server file paths from client messages (see redact.h). */
#include "redact.h"

#include <stdbool.h>
#include <string.h>

static bool starts_path(const char *s, const char *p)
{
    return p[0] == '/' && (p == s || strchr(" \t'\"([=", p[-1]) != NULL) && p[1] != '\0' &&
           strchr(" \t'\":,;)]", p[1]) == NULL;
}

void redact_paths(char *s)
{
    char *out = s;
    const char *in = s;
    while (*in) {
        if (!starts_path(s, in)) {
            *out++ = *in++;
            continue;
        }
        size_t len = strcspn(in, " \t'\":,;)]\n");
        const char *last = in;
        for (size_t i = 0; i < len; i++)
            if (in[i] == '/')
                last = in + i + 1;
        size_t keep = (size_t)(in + len - last);
        memmove(out, last, keep); /* out never passes in: the text only shrinks */
        out += keep;
        in += len;
    }
    *out = '\0';
}
