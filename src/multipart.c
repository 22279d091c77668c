/* multipart.c - multipart/form-data parsing (see multipart.h). The body is
 * already in memory (read under --max-body-bytes), so parts are views into
 * it; each scan is a memmem for the next delimiter, linear in the body. */
#include "multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HEADER_LINE_MAX 1024

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Next parameter of a header value "type; a=b; c="d"": sets the name and
 * value spans, unquoting a quoted value (backslash escapes kept as they
 * are). Returns the position after it, or NULL at the end. */
static const char *next_param(const char *p, const char *end, const char **name, size_t *name_len,
                              const char **value, size_t *value_len)
{
    while (p < end && *p != ';')
        p++;
    if (p >= end)
        return NULL;
    p = skip_space(p + 1, end);
    *name = p;
    while (p < end && *p != '=' && *p != ';')
        p++;
    *name_len = (size_t)(p - *name);
    while (*name_len > 0 && ((*name)[*name_len - 1] == ' ' || (*name)[*name_len - 1] == '\t'))
        (*name_len)--;
    *value = p;
    *value_len = 0;
    if (p >= end || *p != '=')
        return p;
    p = skip_space(p + 1, end);
    if (p < end && *p == '"') {
        const char *q = ++p;
        while (q < end && *q != '"') {
            if (*q == '\\' && q + 1 < end)
                q++;
            q++;
        }
        *value = p;
        *value_len = (size_t)(q - p);
        return q < end ? q + 1 : q;
    }
    *value = p;
    while (p < end && *p != ';' && *p != ' ' && *p != '\t')
        p++;
    *value_len = (size_t)(p - *value);
    return p;
}

static void copy_span(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

int multipart_boundary(const char *content_type, char *out, char *err, size_t err_len)
{
    static const char type[] = "multipart/form-data";
    const char *end = content_type + strlen(content_type);
    if (strncasecmp(content_type, type, sizeof type - 1) != 0) {
        snprintf(err, err_len, "not multipart/form-data");
        return -1;
    }
    const char *p = content_type + sizeof type - 1, *name, *value;
    size_t name_len, value_len;
    while ((p = next_param(p, end, &name, &name_len, &value, &value_len)) != NULL) {
        if (name_len == 8 && strncasecmp(name, "boundary", 8) == 0) {
            if (value_len == 0 || value_len > MULTIPART_BOUNDARY_MAX) {
                snprintf(err, err_len, "multipart boundary must be 1 to %d characters",
                         MULTIPART_BOUNDARY_MAX);
                return -1;
            }
            copy_span(out, MULTIPART_BOUNDARY_MAX + 1, value, value_len);
            return 0;
        }
    }
    snprintf(err, err_len, "multipart/form-data without a boundary parameter");
    return -1;
}

/* Parse one header line [p, end) into part. */
static void parse_header(const char *p, const char *end, struct multipart_part *part)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL)
        return;
    size_t key_len = (size_t)(colon - p);
    const char *v = skip_space(colon + 1, end);
    const char *vend = end;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    if (key_len == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
        copy_span(part->content_type, sizeof part->content_type, v, (size_t)(vend - v));
    } else if (key_len == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
        const char *name, *value;
        size_t name_len, value_len;
        while ((v = next_param(v, vend, &name, &name_len, &value, &value_len)) != NULL) {
            if (name_len == 4 && strncasecmp(name, "name", 4) == 0) {
                copy_span(part->name, sizeof part->name, value, value_len);
            } else if (name_len == 8 && strncasecmp(name, "filename", 8) == 0) {
                copy_span(part->filename, sizeof part->filename, value, value_len);
                part->is_file = true;
            }
        }
    }
}

/* After a delimiter at p: returns 1 at the closing "--", 0 when a part
 * follows (p moved past the line end), -1 when neither. */
static int after_delimiter(const char **p, const char *end)
{
    const char *q = *p;
    if (end - q >= 2 && q[0] == '-' && q[1] == '-')
        return 1;
    q = skip_space(q, end);
    if (end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
        *p = q + 2;
        return 0;
    }
    return -1;
}

/* The next delimiter line at or after p: CRLF "--" boundary followed by
 * "--" or by optional spaces and CRLF. The same bytes followed by anything
 * else are content. Returns its start, or NULL. */
static const char *find_delimiter(const char *p, const char *end, const char *delim, size_t dn)
{
    for (;;) {
        const char *hit = memmem(p, (size_t)(end - p), delim, dn);
        if (hit == NULL)
            return NULL;
        const char *after = hit + dn;
        if (after_delimiter(&after, end) >= 0)
            return hit;
        p = hit + 1;
    }
}

int multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                    struct multipart_part *parts, int max, char *err, size_t err_len)
{
    char delim[MULTIPART_BOUNDARY_MAX + 5];
    int dn = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    if (dn <= 4 || (size_t)dn >= sizeof delim) {
        snprintf(err, err_len, "bad multipart boundary");
        return -1;
    }
    if (body == NULL || len == 0) {
        snprintf(err, err_len, "empty multipart body: it does not contain its boundary \"%s\"",
                 boundary);
        return -1;
    }
    const char *start = (const char *)body, *end = start + len, *p;
    /* The first delimiter may open the body without the CRLF before it. */
    if (len >= (size_t)dn - 2 && memcmp(start, delim + 2, (size_t)dn - 2) == 0) {
        p = start + dn - 2;
    } else {
        p = memmem(start, len, delim, (size_t)dn);
        if (p == NULL) {
            snprintf(err, err_len, "multipart body does not contain its boundary \"%s\"", boundary);
            return -1;
        }
        p += dn;
    }
    int n = 0;
    for (;;) {
        int state = after_delimiter(&p, end);
        if (state == 1)
            break;
        if (state < 0) {
            snprintf(err, err_len, "multipart boundary is not followed by a line end");
            return -1;
        }
        if (n == max) {
            snprintf(err, err_len, "more than %d parts in the multipart body", max);
            return -1;
        }
        struct multipart_part *part = &parts[n];
        memset(part, 0, sizeof *part);
        for (;;) { /* header lines up to an empty one */
            const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
            if (eol == NULL || eol - p > HEADER_LINE_MAX) {
                snprintf(err, err_len,
                         "multipart part %d: headers do not end (or a line is "
                         "over %d bytes)",
                         n + 1, HEADER_LINE_MAX);
                return -1;
            }
            if (eol == p) {
                p += 2;
                break;
            }
            parse_header(p, eol, part);
            p = eol + 2;
        }
        const char *next = find_delimiter(p, end, delim, (size_t)dn);
        if (next == NULL) {
            snprintf(err, err_len, "multipart part %d has no closing boundary (truncated body?)",
                     n + 1);
            return -1;
        }
        part->data = (const uint8_t *)p;
        part->len = (size_t)(next - p);
        n++;
        p = next + dn;
    }
    if (n == 0) {
        snprintf(err, err_len, "multipart body has no parts");
        return -1;
    }
    return n;
}
