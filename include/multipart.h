/* multipart.h - a multipart/form-data (RFC 7578) parser over a request
 * body held in memory: the boundary from the Content-Type, then each part's
 * name, filename, content type and bytes (views into the body, no copy). */
#ifndef INFERD_MULTIPART_H
#define INFERD_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MULTIPART_BOUNDARY_MAX 70 /* RFC 2046 */

struct multipart_part {
    char name[64];          /* form field name ("" when absent) */
    char filename[256];     /* "" when the part is not a file */
    char content_type[128]; /* the part's Content-Type ("" when absent) */
    bool is_file;           /* has a filename */
    const uint8_t *data;    /* into the body */
    size_t len;
};

/* Read the boundary parameter of a multipart/form-data Content-Type into
 * out (room for MULTIPART_BOUNDARY_MAX + 1). Returns 0, or -1 with err. */
int multipart_boundary(const char *content_type, char *out, char *err, size_t err_len);

/* Split body into at most max parts. Returns the number of parts (>= 1),
 * or -1 with err set: no opening boundary, a part without its headers'
 * end, a missing closing boundary, more than max parts, or a part header
 * line over 1024 bytes. */
int multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                    struct multipart_part *parts, int max, char *err, size_t err_len);

#endif
