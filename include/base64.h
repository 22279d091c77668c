/* base64.h - decoding of standard base64 (RFC 4648, section 4), as the v2
 * protocol's JSON form carries BYTES elements such as encoded images. */
#ifndef INFERD_BASE64_H
#define INFERD_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes that decoding len characters can give at most. */
size_t base64_decoded_max(size_t len);

/* Decode len characters of src into dst (room for base64_decoded_max(len)
 * bytes). The alphabet is A-Z a-z 0-9 + /, with '=' padding to a multiple
 * of 4 characters; whitespace is not allowed. Returns the decoded length,
 * or -1 with err saying where the input is wrong. */
long long base64_decode(const char *src, size_t len, uint8_t *dst, char *err, size_t err_len);

#endif
