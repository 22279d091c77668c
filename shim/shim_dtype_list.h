/* shim_dtype_list.h - the element types inferd handles, as one X-macro
 * list that every table of them is generated from (plain C, shared by the
 * daemon and the shim):
 *
 *   X(name, C storage type, libtorch scalar type suffix)
 *
 * name is the KServe v2 datatype (and SHIM_<name> in enum shim_dtype); an
 * element takes sizeof(storage type) bytes (FP16 is stored as its IEEE bit
 * pattern); the libtorch type is torch::k<suffix>. The order is the enum's
 * and the v2 specification's. */
#ifndef INFERD_SHIM_DTYPE_LIST_H
#define INFERD_SHIM_DTYPE_LIST_H

#include <stdint.h>

/* clang-format off */
#define SHIM_DTYPE_LIST(X)     \
    X(BOOL,  uint8_t,  Bool)    \
    X(UINT8, uint8_t,  UInt8)   \
    X(INT8,  int8_t,   Int8)    \
    X(INT16, int16_t,  Int16)   \
    X(INT32, int32_t,  Int32)   \
    X(INT64, int64_t,  Int64)   \
    X(FP16,  uint16_t, Float16) \
    X(FP32,  float,    Float32) \
    X(FP64,  double,   Float64)
/* clang-format on */

#endif
