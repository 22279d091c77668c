/* base64.c - standard base64 decoding (see base64.h). */
#include "base64.h"

#include <stdio.h>

static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

size_t base64_decoded_max(size_t len)
{
    return len / 4 * 3 + 3;
}

long long base64_decode(const char *src, size_t len, uint8_t *dst, char *err, size_t err_len)
{
    if (len % 4 != 0) {
        snprintf(err, err_len, "base64 text of %zu characters is not a multiple of 4", len);
        return -1;
    }
    size_t out = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)src[i + j];
            /* '=' only as the last one or two characters of the text. */
            if (c == '=' && i + 4 == len && (j == 3 || (j == 2 && src[i + 3] == '='))) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad || (v[j] = sextet(c)) < 0) {
                snprintf(err, err_len, "invalid base64 character at offset %zu", i + (size_t)j);
                return -1;
            }
        }
        uint32_t bits =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        dst[out++] = (uint8_t)(bits >> 16);
        if (pad < 2)
            dst[out++] = (uint8_t)(bits >> 8);
        if (pad < 1)
            dst[out++] = (uint8_t)bits;
    }
    return (long long)out;
}
