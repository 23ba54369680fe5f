//===- CudaCommon.cuh - Device helpers shared by the CUDA kernels -*- CUDA
//-*-===//
//
// Element access by runtime dtype (the same conversions as Tensor.cpp's
// loadAsDouble/storeFromDouble/loadAsInt64/storeFromInt64), index
// arithmetic over Dims, error reporting and launch sizes. The dtype switch
// is uniform across a launch, so it costs a branch, not divergence; it keeps
// one kernel per op family instead of one per dtype pair (compile time).
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CUDA_CUDACOMMON_CUH
#define COLOSSAL_RUNTIME_CUDA_CUDACOMMON_CUH

#include "CudaKernels.h"

#include <cuda_fp16.h>

#include <cstdint>

namespace colossal::runtime::cuda {

inline constexpr int kThreads = 256;

/// Blocks for a grid-stride loop over n items.
inline unsigned blocksFor(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > (int64_t{1} << 20))
    blocks = int64_t{1} << 20;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

#define COLOSSAL_GRID_STRIDE(i, n)                                             \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);    \
       i += int64_t(blockDim.x) * gridDim.x)

__device__ inline bool isFloatType(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 ||
         t == DType::kF64;
}

// ---- Conversions ---------------------------------------------------------

__device__ inline float bf16ToFloat(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

/// f32 -> bf16, round to nearest even; NaN keeps its top payload, made
/// quiet (DType.cpp's f32ToBf16).
__device__ inline uint16_t floatToBf16(float value) {
  uint32_t bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

/// double -> float rounded to odd (Tensor.cpp's roundToOddFloat): rounding
/// that once more to bf16/f16 gives the correctly rounded narrow value.
__device__ inline float roundToOddFloat(double value) {
  if (isnan(value))
    return static_cast<float>(value);
  float truncated = __double2float_rz(value);
  if (static_cast<double>(truncated) == value)
    return truncated;
  return __uint_as_float(__float_as_uint(truncated) | 1u);
}

__device__ inline int64_t truncSaturate(double value, int64_t lo, int64_t hi) {
  if (isnan(value))
    return 0;
  if (value <= static_cast<double>(lo))
    return lo;
  if (value >= static_cast<double>(hi))
    return hi;
  return static_cast<int64_t>(value);
}

__device__ inline double loadF(const void *p, DType t, int64_t i) {
  switch (t) {
  case DType::kF32:
    return static_cast<const float *>(p)[i];
  case DType::kF16:
    return __half2float(__ushort_as_half(static_cast<const uint16_t *>(p)[i]));
  case DType::kBF16:
    return bf16ToFloat(static_cast<const uint16_t *>(p)[i]);
  case DType::kF64:
    return static_cast<const double *>(p)[i];
  case DType::kI64:
    return static_cast<double>(static_cast<const int64_t *>(p)[i]);
  case DType::kI32:
    return static_cast<const int32_t *>(p)[i];
  case DType::kI8:
    return static_cast<const int8_t *>(p)[i];
  case DType::kU8:
    return static_cast<const uint8_t *>(p)[i];
  case DType::kBool:
    return static_cast<const uint8_t *>(p)[i] != 0 ? 1.0 : 0.0;
  }
  return 0.0;
}

__device__ inline void storeF(void *p, DType t, int64_t i, double v) {
  switch (t) {
  case DType::kF32:
    static_cast<float *>(p)[i] = static_cast<float>(v);
    return;
  case DType::kF16:
    static_cast<uint16_t *>(p)[i] =
        __half_as_ushort(__float2half_rn(roundToOddFloat(v)));
    return;
  case DType::kBF16:
    static_cast<uint16_t *>(p)[i] = floatToBf16(roundToOddFloat(v));
    return;
  case DType::kF64:
    static_cast<double *>(p)[i] = v;
    return;
  case DType::kI64:
    static_cast<int64_t *>(p)[i] = truncSaturate(v, INT64_MIN, INT64_MAX);
    return;
  case DType::kI32:
    static_cast<int32_t *>(p)[i] =
        static_cast<int32_t>(truncSaturate(v, INT32_MIN, INT32_MAX));
    return;
  case DType::kI8:
    static_cast<int8_t *>(p)[i] =
        static_cast<int8_t>(truncSaturate(v, INT8_MIN, INT8_MAX));
    return;
  case DType::kU8:
    static_cast<uint8_t *>(p)[i] =
        static_cast<uint8_t>(truncSaturate(v, 0, UINT8_MAX));
    return;
  case DType::kBool:
    static_cast<uint8_t *>(p)[i] = v != 0.0 ? 1 : 0;
    return;
  }
}

__device__ inline int64_t loadI(const void *p, DType t, int64_t i) {
  switch (t) {
  case DType::kI64:
    return static_cast<const int64_t *>(p)[i];
  case DType::kI32:
    return static_cast<const int32_t *>(p)[i];
  case DType::kI8:
    return static_cast<const int8_t *>(p)[i];
  case DType::kU8:
    return static_cast<const uint8_t *>(p)[i];
  case DType::kBool:
    return static_cast<const uint8_t *>(p)[i] != 0 ? 1 : 0;
  default:
    return truncSaturate(loadF(p, t, i), INT64_MIN, INT64_MAX);
  }
}

__device__ inline void storeI(void *p, DType t, int64_t i, int64_t v) {
  switch (t) {
  case DType::kI64:
    static_cast<int64_t *>(p)[i] = v;
    return;
  case DType::kI32:
    static_cast<int32_t *>(p)[i] =
        static_cast<int32_t>(static_cast<uint32_t>(v));
    return;
  case DType::kI8:
    static_cast<int8_t *>(p)[i] = static_cast<int8_t>(static_cast<uint8_t>(v));
    return;
  case DType::kU8:
    static_cast<uint8_t *>(p)[i] = static_cast<uint8_t>(v);
    return;
  case DType::kBool:
    static_cast<uint8_t *>(p)[i] = v != 0 ? 1 : 0;
    return;
  case DType::kF32:
    static_cast<float *>(p)[i] = static_cast<float>(v);
    return;
  case DType::kF64:
    static_cast<double *>(p)[i] = static_cast<double>(v);
    return;
  default: // f16, bf16: through double, as storeFromInt64
    storeF(p, t, i, static_cast<double>(v));
    return;
  }
}

/// Copies one element of `bytes` bytes (1, 2, 4 or 8).
__device__ inline void copyElement(void *dst, int64_t di, const void *src,
                                   int64_t si, int bytes) {
  switch (bytes) {
  case 1:
    static_cast<uint8_t *>(dst)[di] = static_cast<const uint8_t *>(src)[si];
    return;
  case 2:
    static_cast<uint16_t *>(dst)[di] = static_cast<const uint16_t *>(src)[si];
    return;
  case 4:
    static_cast<uint32_t *>(dst)[di] = static_cast<const uint32_t *>(src)[si];
    return;
  case 8:
    static_cast<uint64_t *>(dst)[di] = static_cast<const uint64_t *>(src)[si];
    return;
  default: // 16: a pack (launchStridedCopy widens aligned runs to packs)
    static_cast<uint4 *>(dst)[di] = static_cast<const uint4 *>(src)[si];
    return;
  }
}

__device__ inline void storeBits(void *dst, int64_t di, uint64_t bits,
                                 int bytes) {
  switch (bytes) {
  case 1:
    static_cast<uint8_t *>(dst)[di] = static_cast<uint8_t>(bits);
    return;
  case 2:
    static_cast<uint16_t *>(dst)[di] = static_cast<uint16_t>(bits);
    return;
  case 4:
    static_cast<uint32_t *>(dst)[di] = static_cast<uint32_t>(bits);
    return;
  default:
    static_cast<uint64_t *>(dst)[di] = bits;
    return;
  }
}

// ---- Index arithmetic ----------------------------------------------------

/// The offset of row-major index `flat` of `dims` under `strides`.
__device__ inline int64_t stridedOffset(int64_t flat, const Dims &dims,
                                        const Dims &strides) {
  int64_t offset = 0;
  for (int d = dims.rank - 1; d >= 0; --d) {
    int64_t size = dims.d[d];
    int64_t coord = flat % size;
    flat /= size;
    offset += coord * strides.d[d];
  }
  return offset;
}

// ---- Errors --------------------------------------------------------------

__device__ inline void reportError(const ErrorSink &sink, int32_t code,
                                   int64_t a, int64_t b, int64_t c) {
  if (atomicCAS(&sink.error->claimed, 0u, 1u) == 0u) {
    sink.error->code = code;
    sink.error->instr = sink.instr;
    sink.error->a = a;
    sink.error->b = b;
    sink.error->c = c;
  }
}

// ---- Reductions within a warp or block ----------------------------------

template <typename T> __device__ inline T warpSum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v += __shfl_down_sync(0xffffffffu, v, offset);
  return __shfl_sync(0xffffffffu, v, 0);
}

__device__ inline int64_t warpSumInt(int64_t v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = static_cast<int64_t>(
        static_cast<uint64_t>(v) +
        static_cast<uint64_t>(__shfl_down_sync(0xffffffffu, v, offset)));
  return __shfl_sync(0xffffffffu, v, 0);
}

/// std::max as the CPU kernels use it, (a < b) ? b : a: a NaN never wins
/// (unless it came first), so combining in any order gives the same result
/// as the CPU's sequential loop whenever the input has no NaN.
template <typename T> __device__ inline T stdMax(T a, T b) {
  return a < b ? b : a;
}

template <typename T> __device__ inline T warpMax(T v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = stdMax(v, __shfl_down_sync(0xffffffffu, v, offset));
  return __shfl_sync(0xffffffffu, v, 0);
}

/// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
/// gets the result. `scratch` holds 32 T of shared memory.
template <typename T> __device__ inline T blockSum(T v, T *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int warps = blockDim.x >> 5;
  v = warpSum(v);
  __syncthreads(); // scratch may still be read by a previous call
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) // fixed order: deterministic
    total += scratch[w];
  return total;
}

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_CUDACOMMON_CUH
