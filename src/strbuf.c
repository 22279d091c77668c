/* strbuf.c - growable byte buffer (see strbuf.h). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int strbuf_reserve(struct strbuf *sb, size_t extra)
{
    if (sb->failed)
        return -1;
    if (sb->len + extra + 1 <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            sb->failed = true;
            return -1;
        }
        cap *= 2;
    }
    char *grown = realloc(sb->data, cap);
    if (grown == NULL) {
        sb->failed = true;
        return -1;
    }
    sb->data = grown;
    sb->cap = cap;
    return 0;
}

int strbuf_append(struct strbuf *sb, const void *bytes, size_t n)
{
    if (strbuf_reserve(sb, n) != 0)
        return -1;
    memcpy(sb->data + sb->len, bytes, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return 0;
}

int strbuf_puts(struct strbuf *sb, const char *s)
{
    return strbuf_append(sb, s, strlen(s));
}

int strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || strbuf_reserve(sb, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return 0;
}

int strbuf_json_string(struct strbuf *sb, const char *s)
{
    if (strbuf_reserve(sb, strlen(s) + 2) != 0)
        return -1;
    sb->data[sb->len++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        const char *out = NULL;
        switch (*p) {
        case '"': out = "\\\""; break;
        case '\\': out = "\\\\"; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                out = esc;
            }
        }
        int rc = out ? strbuf_puts(sb, out) : strbuf_append(sb, p, 1);
        if (rc != 0)
            return -1;
    }
    return strbuf_append(sb, "\"", 1);
}

char *strbuf_detach(struct strbuf *sb, size_t *len)
{
    if (sb->failed || strbuf_reserve(sb, 0) != 0) {
        strbuf_free(sb);
        return NULL;
    }
    char *data = sb->data;
    data[sb->len] = '\0'; /* an empty buffer has had no append to write it */
    if (len)
        *len = sb->len;
    memset(sb, 0, sizeof *sb);
    return data;
}

void strbuf_free(struct strbuf *sb)
{
    free(sb->data);
    memset(sb, 0, sizeof *sb);
}
