/* numconv.h - exact, shortest round-trip text <-> number conversion, backed by
 * C++17 std::from_chars / std::to_chars (see numconv.cpp). Plain C interface.
 */
#ifndef INFERD_NUMCONV_H
#define INFERD_NUMCONV_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parse one JSON number at [p, end) as a double. Returns the number of bytes
 * consumed, or 0 when the text there is not a JSON number. Out-of-range
 * magnitudes give +-HUGE_VAL (overflow) or 0 (underflow), as strtod would. */
size_t numconv_parse_double(const char *p, const char *end, double *out);

/* Parse an integer token (-?[0-9]+) at [p, end) exactly. Returns 1, or -1
 * when it is beyond the int64 range, or 0 when it is not an integer. */
int numconv_parse_int64(const char *p, const char *end, long long *out);

/* Write the shortest text that reads back as exactly value (float32 or
 * float64). Returns the length written (no NUL), or 0 if buf is too small or
 * value is not finite. 32 bytes are always enough. */
size_t numconv_format_float(float value, char *buf, size_t buf_len);
size_t numconv_format_double(double value, char *buf, size_t buf_len);

#ifdef __cplusplus
}
#endif
#endif
