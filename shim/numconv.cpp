// numconv.cpp - JSON number text <-> binary with std::from_chars/to_chars
// (GCC 12: exact, shortest round-trip). No exception can escape: these
// functions do not throw.
#include "numconv.h"

#include <charconv>
#include <cmath>
#include <system_error>

// JSON grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
static size_t json_number_length(const char *p, const char *end)
{
    const char *s = p;
    if (s < end && *s == '-')
        s++;
    if (s >= end)
        return 0;
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (s < end && *s >= '0' && *s <= '9')
            s++;
    } else {
        return 0;
    }
    if (s < end && *s == '.') {
        s++;
        const char *digits = s;
        while (s < end && *s >= '0' && *s <= '9')
            s++;
        if (s == digits)
            return 0;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        const char *digits = s;
        while (s < end && *s >= '0' && *s <= '9')
            s++;
        if (s == digits)
            return 0;
    }
    return (size_t)(s - p);
}

extern "C" size_t numconv_parse_double(const char *p, const char *end, double *out)
{
    size_t len = json_number_length(p, end);
    if (len == 0)
        return 0;
    auto res = std::from_chars(p, p + len, *out);
    if (res.ec == std::errc::result_out_of_range) {
        // from_chars leaves *out untouched here. Decide by the decimal
        // exponent of the first nonzero digit: k - 1 - f + exp, where k is
        // the count of integer digits and f the index of that digit.
        const char *q = p + (*p == '-'), *stop = p + len;
        long i = 0, k = -1, f = -1, exp = 0;
        for (; q < stop && *q != 'e' && *q != 'E'; q++) {
            if (*q == '.') {
                k = i;
                continue;
            }
            if (f < 0 && *q != '0')
                f = i;
            i++;
        }
        if (k < 0)
            k = i;
        if (q < stop) {
            bool neg = *++q == '-';
            if (*q == '+' || *q == '-')
                q++;
            for (; q < stop; q++)
                if (exp < 1000000)
                    exp = exp * 10 + (*q - '0');
            if (neg)
                exp = -exp;
        }
        bool tiny = k - 1 - f + exp < 0;
        *out = tiny ? 0.0 : HUGE_VAL;
        if (*p == '-')
            *out = -*out;
        return len;
    }
    if (res.ec != std::errc() || res.ptr != p + len)
        return 0;
    return len;
}

extern "C" int numconv_parse_int64(const char *p, const char *end, long long *out)
{
    long long value = 0;
    auto res = std::from_chars(p, end, value);
    if (res.ec == std::errc::result_out_of_range)
        return -1;
    if (res.ec != std::errc() || res.ptr != end)
        return 0;
    *out = value;
    return 1;
}

template <typename T> static size_t format_shortest(T value, char *buf, size_t buf_len)
{
    if (!std::isfinite(value))
        return 0;
    auto res = std::to_chars(buf, buf + buf_len, value);
    if (res.ec != std::errc())
        return 0;
    return (size_t)(res.ptr - buf);
}

extern "C" size_t numconv_format_float(float value, char *buf, size_t buf_len)
{
    return format_shortest(value, buf, buf_len);
}

extern "C" size_t numconv_format_double(double value, char *buf, size_t buf_len)
{
    return format_shortest(value, buf, buf_len);
}
