//===- Reduce.cu - Reductions, softmax, layer_norm, cumsum, the loss ------===//
//
// Reductions, layer_norm and the loss accumulate in double (int64 for
// integer reductions), as the CPU reference does; softmax, log_softmax and
// the loss gradient compute in f32 (double for f64 tensors), within a few
// f32 ulps of the reference. Parallel sums add in a tree instead of the CPU's
// sequential order, which in double changes the rounded f32 or bf16 result
// only when the exact value sits within ~1e-16 of a rounding boundary. Work
// is split one warp per output line (reductions, softmax, the loss), a warp
// or a block per row (layer_norm), or over chunks of rows and then a
// finishing pass (column sums), with fixed combination orders: results are
// deterministic run to run. The bf16/f16/f32 fast paths read packs of 2 to
// 8 adjacent elements per load, several loads in flight per thread.
//
//===----------------------------------------------------------------------===//

#include "CudaCommon.cuh"

#include <algorithm>
#include <cfloat>
#include <initializer_list>
#include <utility>

namespace colossal::runtime::cuda {

namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

unsigned blocksForWarps(int64_t lines) {
  int64_t blocks = (lines + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > (int64_t{1} << 20))
    blocks = int64_t{1} << 20;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

#define COLOSSAL_WARP_STRIDE(line, lines)                                      \
  for (int64_t line = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;   \
       line < (lines); line += (int64_t(blockDim.x) * gridDim.x) / 32)

// ---- Packed access for the bf16/f16/f32 fast paths -----------------------
//
// The generic kernels read one element per load through loadF's dtype
// switch, and each add waits for its load: one load in flight per thread,
// so they run at a fraction of the memory bandwidth. The fast kernels read
// 4-, 8- or 16-byte packs of adjacent elements (one load instruction each)
// and issue several packs before using any. A pack is a few 32-bit words;
// element e of a 2-byte type is half e % 2 (low half first: little-endian)
// of word e / 2, of f32 word e. The element type is a template parameter
// (Bf16Elem, F16Elem, F32Elem), so the conversions compile to a shift or
// a cvt with no switch.

template <int kBytes> struct alignas(kBytes) Pack {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "pack size");
  uint32_t w[kBytes / 4];
};

/// The pack of `kBytes` at byte `index * kBytes` of `p` (which the caller
/// has checked is aligned to kBytes).
template <int kBytes>
__device__ inline Pack<kBytes> loadPack(const void *p, int64_t index) {
  return static_cast<const Pack<kBytes> *>(p)[index];
}

template <int kBytes>
__device__ inline void storePack(void *p, int64_t index,
                                 const Pack<kBytes> &pack) {
  static_cast<Pack<kBytes> *>(p)[index] = pack;
}

struct Bf16Elem {
  static constexpr int kBytes = 2;
  __device__ static float toFloat(uint32_t bits) {
    return bf16ToFloat(static_cast<uint16_t>(bits));
  }
  /// Rounds as storeF does (floatToBf16(roundToOddFloat(v)) is
  /// floatToBf16(v) for a float v).
  __device__ static uint32_t fromFloat(float v) { return floatToBf16(v); }
};

struct F16Elem {
  static constexpr int kBytes = 2;
  __device__ static float toFloat(uint32_t bits) {
    return __half2float(__ushort_as_half(static_cast<uint16_t>(bits)));
  }
  __device__ static uint32_t fromFloat(float v) {
    return __half_as_ushort(__float2half_rn(v));
  }
};

struct F32Elem {
  static constexpr int kBytes = 4;
  __device__ static float toFloat(uint32_t bits) {
    return __uint_as_float(bits);
  }
};

/// Element e of a pack of E elements, as a float.
template <typename E, int kBytes>
__device__ inline float packElement(const Pack<kBytes> &pack, int e) {
  if constexpr (E::kBytes == 2)
    return E::toFloat(pack.w[e >> 1] >> (16 * (e & 1)));
  else
    return E::toFloat(pack.w[e]);
}

/// The pack holding values[0 .. kBytes / 2), each rounded to E (a 2-byte
/// type: only bf16/f16 rows are written through packs).
template <typename E, int kBytes>
__device__ inline Pack<kBytes> packFloats(const float *values) {
  static_assert(E::kBytes == 2, "packFloats writes 2-byte elements");
  Pack<kBytes> pack;
#pragma unroll
  for (int k = 0; k < kBytes / 4; ++k)
    pack.w[k] = E::fromFloat(values[2 * k]) |
                (E::fromFloat(values[2 * k + 1]) << 16);
  return pack;
}

bool alignedTo(const void *p, int bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// ---- reduce_* ------------------------------------------------------------

__device__ double combineFloat(OpKind kind, double slot, double x) {
  if (kind == OpKind::ReduceMax)
    return (isnan(x) || x > slot) ? x : slot;
  if (kind == OpKind::ReduceMin)
    return (isnan(x) || x < slot) ? x : slot;
  return slot + x;
}

__device__ int64_t combineInt(OpKind kind, int64_t slot, int64_t x) {
  if (kind == OpKind::ReduceMax)
    return slot > x ? slot : x;
  if (kind == OpKind::ReduceMin)
    return slot < x ? slot : x;
  return static_cast<int64_t>(static_cast<uint64_t>(slot) +
                              static_cast<uint64_t>(x));
}

/// An input element as the reduction sees it: reduce_sum_square adds x * x
/// (only where elements are read from the input, never on partials).
__device__ inline double reducedElement(OpKind kind, double x) {
  return kind == OpKind::ReduceSumSquare ? x * x : x;
}

__device__ void integerRange(DType dtype, int64_t &lo, int64_t &hi) {
  switch (dtype) {
  case DType::kI32:
    lo = INT32_MIN, hi = INT32_MAX;
    return;
  case DType::kI8:
    lo = INT8_MIN, hi = INT8_MAX;
    return;
  case DType::kU8:
    lo = 0, hi = UINT8_MAX;
    return;
  default:
    lo = INT64_MIN, hi = INT64_MAX;
    return;
  }
}

/// One warp per output element; lanes stride over the reduced elements and
/// combine with shuffles in a fixed order.
__global__ void reduceKernel(OpKind kind, DType dtype, int64_t outCount,
                             Dims keptDims, Dims keptStrides, Dims redDims,
                             Dims redStrides, int64_t reduced, const void *in,
                             void *out) {
  int lane = threadIdx.x & 31;
  bool floats = isFloatType(dtype);
  COLOSSAL_WARP_STRIDE(o, outCount) {
    int64_t base = stridedOffset(o, keptDims, keptStrides);
    if (floats) {
      double init = kind == OpKind::ReduceMax   ? -INFINITY
                    : kind == OpKind::ReduceMin ? INFINITY
                                                : 0.0;
      double acc = init;
      for (int64_t r = lane; r < reduced; r += 32)
        acc = combineFloat(
            kind, acc,
            reducedElement(kind, loadF(in, dtype,
                                       base + stridedOffset(r, redDims,
                                                            redStrides))));
      for (int offset = 16; offset > 0; offset >>= 1) {
        double other = __shfl_down_sync(0xffffffffu, acc, offset);
        acc = kind == OpKind::ReduceSum || kind == OpKind::ReduceMean
                  ? acc + other
                  : combineFloat(kind, acc, other);
      }
      if (lane == 0) {
        if (kind == OpKind::ReduceMean)
          acc /= static_cast<double>(reduced); // 0/0: NaN
        storeF(out, dtype, o, acc);
      }
    } else {
      int64_t lo, hi;
      integerRange(dtype, lo, hi);
      int64_t init = kind == OpKind::ReduceMax   ? lo
                     : kind == OpKind::ReduceMin ? hi
                                                 : 0;
      int64_t acc = init;
      for (int64_t r = lane; r < reduced; r += 32)
        acc = combineInt(
            kind, acc,
            loadI(in, dtype, base + stridedOffset(r, redDims, redStrides)));
      for (int offset = 16; offset > 0; offset >>= 1)
        acc = combineInt(kind, acc, __shfl_down_sync(0xffffffffu, acc, offset));
      if (lane == 0) {
        if (kind == OpKind::ReduceMean)
          acc = reduced == 0 ? 0 : acc / reduced;
        storeI(out, dtype, o, acc);
      }
    }
  }
}

/// Few outputs, many reduced elements (a gradient norm's sum of squares over
/// a whole weight): one warp per output would read tens of millions of
/// elements alone. Instead block (o, p) of `parts` blocks per output reduces
/// a contiguous chunk of output o's elements into partial[o * parts + p];
/// reduceFinishKernel combines the parts of each output in part order
/// (deterministic run to run).
__global__ void reducePartsKernel(OpKind kind, DType dtype, int64_t outCount,
                                  Dims keptDims, Dims keptStrides, Dims redDims,
                                  Dims redStrides, int64_t reduced,
                                  int64_t parts, const void *in,
                                  double *partial) {
  __shared__ double scratch[32];
  int64_t o = blockIdx.x / parts, p = blockIdx.x % parts;
  if (o >= outCount)
    return;
  int64_t base = stridedOffset(o, keptDims, keptStrides);
  int64_t chunk = (reduced + parts - 1) / parts;
  int64_t begin = p * chunk, end = begin + chunk < reduced ? begin + chunk : reduced;
  double init = kind == OpKind::ReduceMax   ? -INFINITY
                : kind == OpKind::ReduceMin ? INFINITY
                                            : 0.0;
  double acc = init;
  for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x)
    acc = combineFloat(
        kind, acc,
        reducedElement(kind, loadF(in, dtype,
                                   base + stridedOffset(r, redDims, redStrides))));
  if (kind == OpKind::ReduceSum || kind == OpKind::ReduceMean ||
      kind == OpKind::ReduceSumSquare) {
    acc = blockSum(acc, scratch);
  } else {
    for (int offset = 16; offset > 0; offset >>= 1)
      acc = combineFloat(kind, acc, __shfl_down_sync(0xffffffffu, acc, offset));
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
      scratch[threadIdx.x >> 5] = acc;
    __syncthreads();
    acc = init;
    for (int w = 0; w < int(blockDim.x >> 5); ++w)
      acc = combineFloat(kind, acc, scratch[w]);
  }
  if (threadIdx.x == 0)
    partial[o * parts + p] = acc;
}

__global__ void reduceFinishKernel(OpKind kind, DType dtype, int64_t outCount,
                                   int64_t reduced, int64_t parts,
                                   const double *partial, void *out) {
  COLOSSAL_GRID_STRIDE(o, outCount) {
    double acc = partial[o * parts];
    for (int64_t p = 1; p < parts; ++p)
      acc = kind == OpKind::ReduceSum || kind == OpKind::ReduceMean
                ? acc + partial[o * parts + p]
                : combineFloat(kind, acc, partial[o * parts + p]);
    if (kind == OpKind::ReduceMean)
      acc /= static_cast<double>(reduced);
    storeF(out, dtype, o, acc);
  }
}

// ---- reduce_* in f32 (the default; COLOSSAL_CUDA_REDUCE=f64: above) -----
//
// For f32/bf16/f16 inputs whose reduced axes are one run of adjacent axes
// of the contiguous input, seen as [outer, length, inner] (ReduceView):
// inner == 1 is the row path (a warp per row, or blocks over a long row),
// inner > 1 the column path (threads own columns, 2 to 8 adjacent ones
// read as one pack where inner and the alignment allow; blocks own row
// chunks). Accumulation is f32 with a blocked pairwise order: every thread
// adds four elements as (x0 + x1) + (x2 + x3) before adding them to its
// running sum, its partial then goes through a fixed shuffle/shared-memory
// tree, and chunk partials (float, in the planned scratch) are added by a
// second pass in the same blocked order (columns: 8 warps over contiguous
// chunk ranges, then the 8 in order). For a sum of n nonnegative terms the
// rounding error is at most about d x 2^-24 relative, d the longest chain
// of dependent adds: n = 38.6M (one output, 2356 blocks of 16384 elements)
// gives d ~ 16 + 2 + 8 + 2356/256/4 + 10 < 40, so <= 2.4e-6 (typically
// ~1e-7: the errors are not all of one sign); a column of 8192 rows in 256
// chunks of 32, d ~ 8 + 2 + 256/32 + 2 + 8 = 28. Order is fixed:
// deterministic.

__device__ float loadF32(const void *p, DType t, int64_t i) {
  if (t == DType::kF32)
    return static_cast<const float *>(p)[i];
  if (t == DType::kBF16)
    return bf16ToFloat(static_cast<const uint16_t *>(p)[i]);
  return __half2float(static_cast<const __half *>(p)[i]);
}

/// loadF32 as the reduction sees it (reducedElement in f32).
__device__ float loadReduced32(OpKind kind, const void *p, DType t,
                               int64_t i) {
  float x = loadF32(p, t, i);
  return kind == OpKind::ReduceSumSquare ? x * x : x;
}

__device__ float combine32(OpKind kind, float slot, float x) {
  if (kind == OpKind::ReduceMax)
    return (isnan(x) || x > slot) ? x : slot;
  if (kind == OpKind::ReduceMin)
    return (isnan(x) || x < slot) ? x : slot;
  return slot + x;
}

__device__ float init32(OpKind kind) {
  return kind == OpKind::ReduceMax   ? -INFINITY
         : kind == OpKind::ReduceMin ? INFINITY
                                     : 0.0f;
}

/// Four elements, pairwise: (x0 + x1) + (x2 + x3).
__device__ float combine4(OpKind kind, float x0, float x1, float x2, float x3) {
  return combine32(kind, combine32(kind, x0, x1), combine32(kind, x2, x3));
}

/// The combination of the elements at `at(k)`, k = first, first + step,
/// ... below `end`, in the blocked order above (a thread's share of a line).
template <typename At>
__device__ float stridedCombine(OpKind kind, int64_t first, int64_t end,
                                int64_t step, At at) {
  float acc = init32(kind);
  int64_t k = first;
  for (; k + 3 * step < end; k += 4 * step)
    acc = combine32(kind, acc,
                    combine4(kind, at(k), at(k + step), at(k + 2 * step),
                             at(k + 3 * step)));
  for (; k < end; k += step)
    acc = combine32(kind, acc, at(k));
  return acc;
}

__device__ float warpCombine32(OpKind kind, float acc) {
  for (int offset = 16; offset > 0; offset >>= 1)
    acc = combine32(kind, acc, __shfl_down_sync(0xffffffffu, acc, offset));
  return acc; // lane 0 holds the result
}

/// Thread 0 gets the block's combination (warps in order).
__device__ float blockCombine32(OpKind kind, float acc, float *scratch) {
  acc = warpCombine32(kind, acc);
  __syncthreads();
  if ((threadIdx.x & 31) == 0)
    scratch[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    acc = scratch[0];
    for (int w = 1; w < int(blockDim.x >> 5); ++w)
      acc = combine32(kind, acc, scratch[w]);
  }
  return acc;
}

__device__ void storeResult32(OpKind kind, DType dtype, void *out, int64_t o,
                              float acc, int64_t length) {
  if (kind == OpKind::ReduceMean)
    acc /= static_cast<float>(length); // 0/0: NaN
  storeF(out, dtype, o, acc);
}

/// Row path, short rows: one warp per row of `length` elements.
__global__ void reduceRowsWarpKernel(OpKind kind, DType dtype, int64_t rows,
                                     int64_t length, const void *in,
                                     void *out) {
  int lane = threadIdx.x & 31;
  COLOSSAL_WARP_STRIDE(o, rows) {
    int64_t base = o * length;
    float acc = warpCombine32(
        kind, stridedCombine(kind, lane, length, 32, [&](int64_t k) {
          return loadReduced32(kind, in, dtype, base + k);
        }));
    if (lane == 0)
      storeResult32(kind, dtype, out, o, acc, length);
  }
}

/// Row path, long rows: block (o, p) of `parts` per row combines chunk p of
/// row o; with one part it stores the result, else partial[o x parts + p].
__global__ void reduceRowsBlockKernel(OpKind kind, DType dtype, int64_t rows,
                                      int64_t length, int64_t parts,
                                      const void *in, void *out,
                                      float *partial) {
  __shared__ float scratch[32];
  int64_t o = blockIdx.x / parts, p = blockIdx.x % parts;
  if (o >= rows)
    return;
  int64_t chunk = (length + parts - 1) / parts;
  int64_t begin = p * chunk;
  int64_t end = begin + chunk < length ? begin + chunk : length;
  const int64_t base = o * length + begin;
  float acc = blockCombine32(
      kind,
      stridedCombine(kind, threadIdx.x, end - begin, blockDim.x,
                     [&](int64_t k) {
                       return loadReduced32(kind, in, dtype, base + k);
                     }),
      scratch);
  if (threadIdx.x != 0)
    return;
  if (parts == 1)
    storeResult32(kind, dtype, out, o, acc, length);
  else
    partial[o * parts + p] = acc;
}

/// Row path, second pass: one block per row combines its parts.
__global__ void reduceRowsFinishKernel(OpKind kind, DType dtype, int64_t rows,
                                       int64_t length, int64_t parts,
                                       const float *partial, void *out) {
  __shared__ float scratch[32];
  for (int64_t o = blockIdx.x; o < rows; o += gridDim.x) {
    const float *mine = partial + o * parts;
    float acc =
        blockCombine32(kind,
                       stridedCombine(kind, threadIdx.x, parts, blockDim.x,
                                      [&](int64_t k) { return mine[k]; }),
                       scratch);
    if (threadIdx.x == 0)
      storeResult32(kind, dtype, out, o, acc, length);
  }
}

/// Column path: thread j of block (x, c, z) combines column x * 256 + j
/// over rows [c x rowsPerChunk, ...) of slab a (z, z + gridDim.z, ...) of
/// [outer, length, inner]; with one chunk it stores the result, else
/// partial[(a x chunks + c) x inner + j].
__global__ void reduceColumnsKernel(OpKind kind, DType dtype, int64_t outer,
                                    int64_t length, int64_t inner,
                                    int64_t rowsPerChunk, int64_t chunks,
                                    const void *in, void *out, float *partial) {
  int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t c = blockIdx.y;
  if (j >= inner)
    return;
  int64_t first = c * rowsPerChunk;
  int64_t last = first + rowsPerChunk < length ? first + rowsPerChunk : length;
  for (int64_t a = blockIdx.z; a < outer; a += gridDim.z) {
    const int64_t base = a * length * inner + j;
    float acc = stridedCombine(kind, first, last, 1, [&](int64_t r) {
      return loadReduced32(kind, in, dtype, base + r * inner);
    });
    if (chunks == 1)
      storeResult32(kind, dtype, out, a * inner + j, acc, length);
    else
      partial[(a * chunks + c) * inner + j] = acc;
  }
}

/// Column path with packs: thread j of block (x, c, z) combines columns
/// [kCols j', kCols j' + kCols), j' = x * blockDim.x + j, over rows
/// [c x rowsPerChunk, ...) of slab a (z, z + gridDim.z, ...), reading a
/// pack of kCols elements per row (4, 8 or 16 bytes: inner % kCols == 0
/// and `in` aligned, checked by the launch). Each column is combined in
/// exactly reduceColumnsKernel's blocked order (rows in fours, the fours in
/// row order), so the two kernels give the same bits; the difference is
/// that eight rows' packs are loaded before the first is used (eight loads
/// in flight per thread, kCols columns per load), where
/// reduceColumnsKernel has one 2- or 4-byte load in flight.
template <typename E, int kCols>
__global__ void reduceColumnsPackedKernel(OpKind kind, int64_t outer,
                                          int64_t length, int64_t inner,
                                          int64_t rowsPerChunk, int64_t chunks,
                                          DType dtype, const void *in,
                                          void *out, float *partial) {
  constexpr int kBytes = kCols * E::kBytes;
  constexpr int kRowsInFlight = 8; // two blocked fours
  int64_t group = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t c = blockIdx.y;
  if (group * kCols >= inner)
    return;
  int64_t packsPerRow = inner / kCols;
  int64_t first = c * rowsPerChunk;
  int64_t last = first + rowsPerChunk < length ? first + rowsPerChunk : length;
  bool square = kind == OpKind::ReduceSumSquare;
  for (int64_t a = blockIdx.z; a < outer; a += gridDim.z) {
    // Pack index of (slab a, row r, this thread's columns).
    const int64_t base = a * length * packsPerRow + group;
    float acc[kCols];
#pragma unroll
    for (int e = 0; e < kCols; ++e)
      acc[e] = init32(kind);
    auto element = [&](const Pack<kBytes> &pack, int e) {
      float x = packElement<E>(pack, e);
      return square ? x * x : x;
    };
    int64_t r = first;
    for (; r + kRowsInFlight <= last; r += kRowsInFlight) {
      Pack<kBytes> rows[kRowsInFlight];
#pragma unroll
      for (int k = 0; k < kRowsInFlight; ++k)
        rows[k] = loadPack<kBytes>(in, base + (r + k) * packsPerRow);
#pragma unroll
      for (int e = 0; e < kCols; ++e)
#pragma unroll
        for (int k = 0; k < kRowsInFlight; k += 4)
          acc[e] = combine32(
              kind, acc[e],
              combine4(kind, element(rows[k], e), element(rows[k + 1], e),
                       element(rows[k + 2], e), element(rows[k + 3], e)));
    }
    if (r + 4 <= last) { // fewer than eight rows left: one more four
      Pack<kBytes> rows[4];
#pragma unroll
      for (int k = 0; k < 4; ++k)
        rows[k] = loadPack<kBytes>(in, base + (r + k) * packsPerRow);
#pragma unroll
      for (int e = 0; e < kCols; ++e)
        acc[e] = combine32(
            kind, acc[e],
            combine4(kind, element(rows[0], e), element(rows[1], e),
                     element(rows[2], e), element(rows[3], e)));
      r += 4;
    }
    for (; r < last; ++r) { // the last 0-3 rows one by one
      Pack<kBytes> row = loadPack<kBytes>(in, base + r * packsPerRow);
#pragma unroll
      for (int e = 0; e < kCols; ++e)
        acc[e] = combine32(kind, acc[e], element(row, e));
    }
    int64_t j = group * kCols;
#pragma unroll
    for (int e = 0; e < kCols; ++e) {
      if (chunks == 1)
        storeResult32(kind, dtype, out, a * inner + j + e, acc[e], length);
      else
        partial[(a * chunks + c) * inner + j + e] = acc[e];
    }
  }
}

/// Column path, second pass: block (x, y) finishes columns x * 32 + lane of
/// slabs y, y + gridDim.y, ... Its 8 warps split the chunks into 8
/// contiguous ranges, each warp combining its range in the blocked order
/// (eight partials loaded before the first is added: the partials come
/// from L2, and a lone thread per column adding them one by one would wait
/// a round trip per chunk); lane l of warp 0 then combines the 8 warp
/// results of its column in warp order. Fixed order: deterministic.
/// Rounding (sums): the chain of dependent adds is chunks/32 + 2 + 8 here.
__global__ void reduceColumnsFinishKernel(OpKind kind, DType dtype,
                                          int64_t outer, int64_t length,
                                          int64_t inner, int64_t chunks,
                                          const float *partial, void *out) {
  constexpr int kWarps = kThreads / 32;
  __shared__ float warpAcc[kWarps][32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t j = int64_t(blockIdx.x) * 32 + lane;
  int64_t perWarp = (chunks + kWarps - 1) / kWarps;
  int64_t begin = warp * perWarp < chunks ? warp * perWarp : chunks;
  int64_t end = begin + perWarp < chunks ? begin + perWarp : chunks;
  for (int64_t a = blockIdx.y; a < outer; a += gridDim.y) {
    float acc = init32(kind);
    if (j < inner) {
      const float *mine = partial + a * chunks * inner + j;
      int64_t c = begin;
      for (; c + 8 <= end; c += 8) {
        float p[8];
#pragma unroll
        for (int k = 0; k < 8; ++k)
          p[k] = mine[(c + k) * inner];
        acc = combine32(kind, acc, combine4(kind, p[0], p[1], p[2], p[3]));
        acc = combine32(kind, acc, combine4(kind, p[4], p[5], p[6], p[7]));
      }
      acc = combine32(kind, acc,
                      stridedCombine(kind, c, end, 1, [&](int64_t k) {
                        return mine[k * inner];
                      }));
    }
    __syncthreads(); // the previous slab's warpAcc has been read
    warpAcc[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && j < inner) {
      float total = warpAcc[0][lane];
      for (int w = 1; w < kWarps; ++w)
        total = combine32(kind, total, warpAcc[w][lane]);
      storeResult32(kind, dtype, out, a * inner + j, total, length);
    }
  }
}

/// A reduction of a contiguous input as [outer, length, inner] (output
/// [outer, inner]); `ok` is false when the reduced axes are not one run of
/// adjacent axes (after dropping size-1 axes) or the input is not
/// contiguous.
struct ReduceView {
  bool ok = false;
  int64_t outer = 1, length = 1, inner = 1;
};

ReduceView reduceView(int64_t outCount, const Dims &keptDims,
                      const Dims &keptStrides, const Dims &redDims,
                      const Dims &redStrides) {
  ReduceView view;
  int64_t reduced = 1;
  for (int d = 0; d < redDims.rank; ++d)
    reduced *= redDims.d[d];
  if (reduced == 0) { // every output is the identity (or NaN for mean)
    view.ok = true;
    view.outer = outCount, view.length = 0;
    return view;
  }
  // The axes of size > 1 have distinct strides in a contiguous tensor with
  // no empty axis: order them outermost first.
  struct Axis {
    int64_t size, stride;
    bool reduced;
  };
  Axis axes[2 * kMaxDims];
  int n = 0;
  for (int d = 0; d < keptDims.rank; ++d)
    if (keptDims.d[d] != 1)
      axes[n++] = {keptDims.d[d], keptStrides.d[d], false};
  for (int d = 0; d < redDims.rank; ++d)
    if (redDims.d[d] != 1)
      axes[n++] = {redDims.d[d], redStrides.d[d], true};
  for (int i = 1; i < n; ++i) // insertion sort, stride descending
    for (int k = i; k > 0 && axes[k - 1].stride < axes[k].stride; --k) {
      Axis t = axes[k];
      axes[k] = axes[k - 1];
      axes[k - 1] = t;
    }
  int64_t expected = 1;
  for (int i = n; i-- > 0;) {
    if (axes[i].stride != expected)
      return view; // not contiguous
    expected *= axes[i].size;
  }
  int firstReduced = n, lastReduced = -1;
  for (int i = 0; i < n; ++i)
    if (axes[i].reduced) {
      firstReduced = firstReduced < i ? firstReduced : i;
      lastReduced = i;
    }
  for (int i = firstReduced; i <= lastReduced; ++i)
    if (!axes[i].reduced)
      return view; // kept axes between reduced ones
  for (int i = 0; i < n; ++i) {
    if (i < firstReduced)
      view.outer *= axes[i].size;
    else if (i <= lastReduced)
      view.length *= axes[i].size;
    else
      view.inner *= axes[i].size;
  }
  if (lastReduced < 0) { // nothing reduced but size-1 axes: rows of one
    view.outer = outCount, view.inner = 1;
  }
  view.ok = true;
  return view;
}

bool f32ReduceType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
}

/// Row path: 0 for a warp per row, else blocks per row (about 16k elements
/// each, at most 4096 blocks in all unless there are more rows).
int64_t rowParts(int64_t rows, int64_t length) {
  if (length < 4096)
    return 0;
  int64_t parts = length >> 14;
  int64_t cap = 4096 / rows;
  parts = parts < cap ? parts : cap;
  return parts < 1 ? 1 : parts;
}

/// Column path: columns per thread of reduceColumnsPackedKernel for
/// `dtype` (1: reduceColumnsKernel), the widest 16-, 8- or 4-byte pack of
/// at least 2 elements whose element count divides inner. Alignment is
/// checked at launch: an unaligned input runs reduceColumnsKernel over the
/// same chunks, so the scratch size does not depend on it.
int columnPackCols(DType dtype, int64_t inner) {
  int elemBytes = dtype == DType::kF32 ? 4 : 2;
  for (int bytes = 16; bytes >= 4; bytes /= 2) {
    int cols = bytes / elemBytes;
    if (cols >= 2 && inner % cols == 0)
      return cols;
  }
  return 1;
}

/// Column path: rows per chunk. Enough chunks for about 64k threads in all
/// (each with eight packs in flight: ~8 MB of loads in flight, enough to
/// cover the memory latency) and chunks of <= 256 rows where possible (a
/// chain of <= 64 blocked adds: the rounding bound above), but chunks of
/// >= 32 rows (a chunk's partial row, one float per column, is written and
/// read once: at most 1/32 of the input's traffic for f32, 1/64 for bf16)
/// and at most 2048 chunks (the finishing pass's chain, chunks / 32 adds).
/// [8192, 2048] bf16: 256 threads per row, 256 chunks of 32 rows; [8192,
/// 50272] bf16: 32 chunks of 256 rows.
int64_t columnRowsPerChunk(const ReduceView &v, DType dtype) {
  int64_t cols = columnPackCols(dtype, v.inner);
  int64_t threads = (v.inner + cols - 1) / cols;
  int64_t slabs = v.outer < 65535 ? v.outer : 65535;
  int64_t perChunk = threads * slabs;
  int64_t chunks = (65536 + perChunk - 1) / perChunk;
  int64_t fewest = (v.length + 255) / 256, most = (v.length + 31) / 32;
  chunks = chunks > fewest ? chunks : fewest;
  chunks = chunks < most ? chunks : most;
  chunks = chunks < 2048 ? chunks : 2048;
  chunks = chunks < 1 ? 1 : chunks;
  return (v.length + chunks - 1) / chunks;
}

/// reduceColumnsPackedKernel<E, cols> for cols in {2, 4, 8} (f32: {2, 4}).
template <typename E>
void launchReduceColumnsPacked(cudaStream_t stream, int cols, dim3 grid,
                               unsigned block, OpKind kind,
                               const ReduceView &v, int64_t rowsPerChunk,
                               int64_t chunks, DType dtype, const void *in,
                               void *out, float *partial) {
  if constexpr (E::kBytes == 2) {
    if (cols == 8) {
      reduceColumnsPackedKernel<E, 8><<<grid, block, 0, stream>>>(
          kind, v.outer, v.length, v.inner, rowsPerChunk, chunks, dtype, in,
          out, partial);
      return;
    }
  }
  if (cols == 4)
    reduceColumnsPackedKernel<E, 4><<<grid, block, 0, stream>>>(
        kind, v.outer, v.length, v.inner, rowsPerChunk, chunks, dtype, in, out,
        partial);
  else
    reduceColumnsPackedKernel<E, 2><<<grid, block, 0, stream>>>(
        kind, v.outer, v.length, v.inner, rowsPerChunk, chunks, dtype, in, out,
        partial);
}

cudaError_t launchReduceF32(cudaStream_t stream, OpKind kind, DType dtype,
                            const ReduceView &v, const void *in, void *out,
                            float *partial) {
  if (v.inner == 1) {
    int64_t parts = rowParts(v.outer, v.length);
    if (parts == 0) {
      reduceRowsWarpKernel<<<blocksForWarps(v.outer), kThreads, 0, stream>>>(
          kind, dtype, v.outer, v.length, in, out);
      return cudaGetLastError();
    }
    reduceRowsBlockKernel<<<static_cast<unsigned>(v.outer * parts), kThreads, 0,
                            stream>>>(kind, dtype, v.outer, v.length, parts, in,
                                      out, partial);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess || parts == 1)
      return err;
    reduceRowsFinishKernel<<<blocksFor(v.outer, 1), kThreads, 0, stream>>>(
        kind, dtype, v.outer, v.length, parts, partial, out);
    return cudaGetLastError();
  }
  int64_t rowsPerChunk = columnRowsPerChunk(v, dtype);
  int64_t chunks = (v.length + rowsPerChunk - 1) / rowsPerChunk;
  unsigned slabs = static_cast<unsigned>(v.outer < 65535 ? v.outer : 65535);
  int cols = columnPackCols(dtype, v.inner);
  int packBytes = cols * (dtype == DType::kF32 ? 4 : 2);
  if (cols > 1 && alignedTo(in, packBytes)) {
    // Threads per slab: one per pack of a row; blocks of up to 256 threads,
    // narrower when a row has fewer packs (inner 64 bf16: one warp).
    int64_t threads = v.inner / cols;
    unsigned block = threads >= kThreads
                         ? kThreads
                         : static_cast<unsigned>((threads + 31) / 32 * 32);
    dim3 grid(static_cast<unsigned>((threads + block - 1) / block),
              static_cast<unsigned>(chunks), slabs);
    if (dtype == DType::kBF16)
      launchReduceColumnsPacked<Bf16Elem>(stream, cols, grid, block, kind, v,
                                          rowsPerChunk, chunks, dtype, in, out,
                                          partial);
    else if (dtype == DType::kF16)
      launchReduceColumnsPacked<F16Elem>(stream, cols, grid, block, kind, v,
                                         rowsPerChunk, chunks, dtype, in, out,
                                         partial);
    else
      launchReduceColumnsPacked<F32Elem>(stream, cols, grid, block, kind, v,
                                         rowsPerChunk, chunks, dtype, in, out,
                                         partial);
  } else {
    dim3 grid(static_cast<unsigned>((v.inner + kThreads - 1) / kThreads),
              static_cast<unsigned>(chunks), slabs);
    reduceColumnsKernel<<<grid, kThreads, 0, stream>>>(
        kind, dtype, v.outer, v.length, v.inner, rowsPerChunk, chunks, in, out,
        partial);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || chunks == 1)
    return err;
  dim3 finishGrid(static_cast<unsigned>((v.inner + 31) / 32), slabs);
  reduceColumnsFinishKernel<<<finishGrid, kThreads, 0, stream>>>(
      kind, dtype, v.outer, v.length, v.inner, chunks, partial, out);
  return cudaGetLastError();
}

/// The f32 path's view, or !ok where the f64 path runs.
ReduceView f32View(Precision precision, DType dtype, int64_t outCount,
                   const Dims &keptDims, const Dims &keptStrides,
                   const Dims &redDims, const Dims &redStrides) {
  if (precision != Precision::kF32 || !f32ReduceType(dtype))
    return ReduceView();
  return reduceView(outCount, keptDims, keptStrides, redDims, redStrides);
}

// ---- softmax -------------------------------------------------------------

template <typename Acc>
__global__ void softmaxKernel(bool logSoftmax, DType dtype, int64_t outer,
                              int64_t length, int64_t inner, const void *in,
                              void *out) {
  int lane = threadIdx.x & 31;
  COLOSSAL_WARP_STRIDE(line, outer * inner) {
    int64_t o = line / inner, j = line % inner;
    int64_t base = o * length * inner + j;
    // Subtract the max first so that exp cannot overflow.
    Acc maxValue = -INFINITY;
    for (int64_t a = lane; a < length; a += 32)
      maxValue = stdMax(maxValue, Acc(loadF(in, dtype, base + a * inner)));
    maxValue = warpMax(maxValue);
    Acc sum = 0.0;
    for (int64_t a = lane; a < length; a += 32)
      sum += exp(Acc(loadF(in, dtype, base + a * inner)) - maxValue);
    sum = warpSum(sum);
    Acc logSum = log(sum);
    for (int64_t a = lane; a < length; a += 32) {
      Acc shifted = Acc(loadF(in, dtype, base + a * inner)) - maxValue;
      storeF(out, dtype, base + a * inner,
             logSoftmax ? shifted - logSum : exp(shifted) / sum);
    }
  }
}

// ---- layer_norm ----------------------------------------------------------

/// One block per row: two passes (mean, then the biased variance around
/// it), as the CPU.
template <typename Acc>
__global__ void layerNormKernel(DType xType, DType scaleType, DType biasType,
                                int64_t outer, int64_t inner, double epsilon,
                                const void *x, const void *scale,
                                const void *bias, void *out) {
  __shared__ Acc scratch[32];
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    int64_t row = o * inner;
    Acc sum = 0.0;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x)
      sum += Acc(loadF(x, xType, row + j));
    Acc mean = blockSum(sum, scratch) / static_cast<double>(inner);
    Acc squares = 0.0;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) {
      Acc d = Acc(loadF(x, xType, row + j)) - mean;
      squares += d * d;
    }
    Acc variance = blockSum(squares, scratch) / static_cast<double>(inner);
    Acc stddev = sqrt(variance + epsilon);
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) {
      Acc b = bias ? Acc(loadF(bias, biasType, j)) : 0.0;
      storeF(out, xType, row + j,
             (Acc(loadF(x, xType, row + j)) - mean) / stddev *
                     Acc(loadF(scale, scaleType, j)) +
                 b);
    }
  }
}

/// layer_norm of bf16/f16 rows, a warp per row (no block barriers): the
/// same three passes and formula as layerNormKernel<float>, each lane
/// summing a strided share of the row and the warp combining by shuffles.
/// The row is read three times; after the first it is in L1.
__global__ void layerNormWarpKernel(DType xType, DType scaleType,
                                    DType biasType, int64_t outer,
                                    int64_t inner, double epsilon,
                                    const void *x, const void *scale,
                                    const void *bias, void *out) {
  int lane = threadIdx.x & 31;
  COLOSSAL_WARP_STRIDE(o, outer) {
    int64_t row = o * inner;
    float sum = 0.0f;
    for (int64_t j = lane; j < inner; j += 32)
      sum += float(loadF(x, xType, row + j));
    float mean = warpSum(sum) / static_cast<double>(inner);
    float squares = 0.0f;
    for (int64_t j = lane; j < inner; j += 32) {
      float d = float(loadF(x, xType, row + j)) - mean;
      squares += d * d;
    }
    float variance = warpSum(squares) / static_cast<double>(inner);
    float stddev = sqrt(variance + epsilon);
    for (int64_t j = lane; j < inner; j += 32) {
      float b = bias ? float(loadF(bias, biasType, j)) : 0.0f;
      storeF(out, xType, row + j,
             (float(loadF(x, xType, row + j)) - mean) / stddev *
                     float(loadF(scale, scaleType, j)) +
                 b);
    }
  }
}

/// layerNormGradRowsKernel<float> with a warp per row.
__global__ void layerNormGradRowsWarpKernel(DType xType, DType scaleType,
                                            DType dyType, int64_t outer,
                                            int64_t inner, double epsilon,
                                            const void *x, const void *scale,
                                            const void *dy, void *dx,
                                            double *stats) {
  int lane = threadIdx.x & 31;
  float count = static_cast<double>(inner);
  COLOSSAL_WARP_STRIDE(o, outer) {
    int64_t row = o * inner;
    float sum = 0.0f;
    for (int64_t j = lane; j < inner; j += 32)
      sum += float(loadF(x, xType, row + j));
    float mean = warpSum(sum) / count;
    float squares = 0.0f;
    for (int64_t j = lane; j < inner; j += 32) {
      float d = float(loadF(x, xType, row + j)) - mean;
      squares += d * d;
    }
    float rstd = 1.0 / sqrt(warpSum(squares) / count + epsilon);
    float sumG = 0.0f, sumGXhat = 0.0f;
    for (int64_t j = lane; j < inner; j += 32) {
      float xhat = (float(loadF(x, xType, row + j)) - mean) * rstd;
      float g = float(loadF(dy, dyType, row + j)) *
                float(loadF(scale, scaleType, j));
      sumG += g;
      sumGXhat += g * xhat;
    }
    float meanG = warpSum(sumG) / count;
    float meanGXhat = warpSum(sumGXhat) / count;
    for (int64_t j = lane; j < inner; j += 32) {
      float xhat = (float(loadF(x, xType, row + j)) - mean) * rstd;
      storeF(dx, xType, row + j,
             rstd * (float(loadF(dy, dyType, row + j)) *
                         float(loadF(scale, scaleType, j)) -
                     meanG - xhat * meanGXhat));
    }
    if (lane == 0) {
      stats[2 * o] = mean;
      stats[2 * o + 1] = rstd;
    }
  }
}

// ---- layer_norm of bf16/f16 rows, packed ---------------------------------
//
// A row of inner = 8 x packs elements is held in registers as 16-byte packs
// (8 elements each): read once, with one load instruction per 8 elements,
// all of a thread's packs in flight together. A group of threads owns a
// row: a warp (kWarpRow, rows of up to 256 packs = 2048 elements;
// reductions by shuffles, no barriers) or the whole block (longer rows, up
// to 1024 packs = 8192 elements; blockSum through shared memory).
// Thread t of a group holds packs t, t + T, t + 2T, ... (T threads in the
// group): a warp's loads of one k cover 32 adjacent packs, 512 bytes.
// The arithmetic is the warp kernels' above (f32, two passes over the
// registers, the same formulas); the sums add in another order (each
// thread's packs, then the tree), deterministic run to run.

/// The threads of one row: a warp, or the block.
template <bool kWarpRow> struct RowGroup {
  __device__ static int rank() {
    return kWarpRow ? int(threadIdx.x & 31) : int(threadIdx.x);
  }
  __device__ static int size() { return kWarpRow ? 32 : int(blockDim.x); }
  __device__ static int64_t firstRow() {
    return kWarpRow ? (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32
                    : int64_t(blockIdx.x);
  }
  __device__ static int64_t rowStep() {
    return kWarpRow ? (int64_t(blockDim.x) * gridDim.x) / 32
                    : int64_t(gridDim.x);
  }
  /// Every thread of the group gets the sum (scratch: 32 floats of shared
  /// memory, used by the block form only).
  __device__ static float sum(float v, float *scratch) {
    if constexpr (kWarpRow)
      return warpSum(v);
    else
      return blockSum(v, scratch);
  }
};

/// The float values of pack `q` of a row of E elements (16-byte packs).
template <typename E>
__device__ inline void unpack8(const Pack<16> &pack, float *values) {
#pragma unroll
  for (int e = 0; e < 8; ++e)
    values[e] = packElement<E>(pack, e);
}

/// The thread's part of a packed row's sum (layerNormPackedKernel and
/// layerNormGradRowsPackedKernel): a partial per pack (independent adds),
/// then the packs in order.
template <typename E, int kPacks>
__device__ inline float packedRowSum(const Pack<16> (&xs)[kPacks], int t,
                                     int threads, int64_t packs) {
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (t + int64_t(k) * threads >= packs)
      continue;
    float values[8];
    unpack8<E>(xs[k], values);
    float packSum = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e)
      packSum += values[e];
    sum += packSum;
  }
  return sum;
}

/// The thread's part of a packed row's sum of squares around `mean`, in
/// packedRowSum's order.
template <typename E, int kPacks>
__device__ inline float packedRowSquares(const Pack<16> (&xs)[kPacks],
                                         float mean, int t, int threads,
                                         int64_t packs) {
  float squares = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (t + int64_t(k) * threads >= packs)
      continue;
    float values[8];
    unpack8<E>(xs[k], values);
    float packSquares = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      float d = values[e] - mean;
      packSquares += d * d;
    }
    squares += packSquares;
  }
  return squares;
}

/// layer_norm of rows of E (bf16 or f16) elements, inner % 8 == 0, x, out,
/// scale, bias 16-byte aligned, scale and bias of E too (the launch checks
/// all of it). Each thread holds kPacks packs of the row; the ones past the
/// row's end (q >= packs) are never loaded nor stored.
template <typename E, int kPacks, bool kWarpRow>
__global__ void layerNormPackedKernel(int64_t outer, int64_t inner,
                                      double epsilon, const void *x,
                                      const void *scale, const void *bias,
                                      void *out) {
  using Group = RowGroup<kWarpRow>;
  __shared__ float scratch[32];
  const int t = Group::rank(), threads = Group::size();
  const int64_t packs = inner / 8;
  for (int64_t o = Group::firstRow(); o < outer; o += Group::rowStep()) {
    const int64_t rowPack = o * packs;
    Pack<16> xs[kPacks];
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      int64_t q = t + int64_t(k) * threads;
      if (q < packs)
        xs[k] = loadPack<16>(x, rowPack + q);
    }
    float sum = packedRowSum<E, kPacks>(xs, t, threads, packs);
    float mean = Group::sum(sum, scratch) / static_cast<double>(inner);
    float squares = packedRowSquares<E, kPacks>(xs, mean, t, threads, packs);
    float variance = Group::sum(squares, scratch) / static_cast<double>(inner);
    float stddev = sqrt(variance + epsilon);
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      int64_t q = t + int64_t(k) * threads;
      if (q >= packs)
        continue;
      float values[8], s[8], b[8] = {};
      unpack8<E>(xs[k], values);
      unpack8<E>(loadPack<16>(scale, q), s);
      if (bias)
        unpack8<E>(loadPack<16>(bias, q), b);
#pragma unroll
      for (int e = 0; e < 8; ++e)
        values[e] = (values[e] - mean) / stddev * s[e] + b[e];
      storePack<16>(out, rowPack + q, packFloats<E, 16>(values));
    }
  }
}

/// layerNormGradRowsWarpKernel's rows, packed as layerNormPackedKernel: x
/// and dy (both of E) in registers, read once; scale re-read per pass
/// (inner elements, cached). Writes dx and the row's mean and rstd (as
/// floats widened to double, as the warp kernel) into stats[2o], [2o + 1].
template <typename E, int kPacks, bool kWarpRow>
__global__ void layerNormGradRowsPackedKernel(int64_t outer, int64_t inner,
                                              double epsilon, const void *x,
                                              const void *scale,
                                              const void *dy, void *dx,
                                              double *stats) {
  using Group = RowGroup<kWarpRow>;
  __shared__ float scratch[32];
  const int t = Group::rank(), threads = Group::size();
  const int64_t packs = inner / 8;
  float count = static_cast<double>(inner);
  for (int64_t o = Group::firstRow(); o < outer; o += Group::rowStep()) {
    const int64_t rowPack = o * packs;
    Pack<16> xs[kPacks], dys[kPacks];
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      int64_t q = t + int64_t(k) * threads;
      if (q < packs) {
        xs[k] = loadPack<16>(x, rowPack + q);
        dys[k] = loadPack<16>(dy, rowPack + q);
      }
    }
    float sum = packedRowSum<E, kPacks>(xs, t, threads, packs);
    float mean = Group::sum(sum, scratch) / count;
    float squares = packedRowSquares<E, kPacks>(xs, mean, t, threads, packs);
    float rstd = 1.0 / sqrt(Group::sum(squares, scratch) / count + epsilon);
    float sumG = 0.0f, sumGXhat = 0.0f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      int64_t q = t + int64_t(k) * threads;
      if (q >= packs)
        continue;
      float values[8], g[8], s[8];
      unpack8<E>(xs[k], values);
      unpack8<E>(dys[k], g);
      unpack8<E>(loadPack<16>(scale, q), s);
      float packG = 0.0f, packGXhat = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        float xhat = (values[e] - mean) * rstd;
        float ge = g[e] * s[e];
        packG += ge;
        packGXhat += ge * xhat;
      }
      sumG += packG;
      sumGXhat += packGXhat;
    }
    float meanG = Group::sum(sumG, scratch) / count;
    float meanGXhat = Group::sum(sumGXhat, scratch) / count;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      int64_t q = t + int64_t(k) * threads;
      if (q >= packs)
        continue;
      float values[8], g[8], s[8];
      unpack8<E>(xs[k], values);
      unpack8<E>(dys[k], g);
      unpack8<E>(loadPack<16>(scale, q), s);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        float xhat = (values[e] - mean) * rstd;
        values[e] = rstd * (g[e] * s[e] - meanG - xhat * meanGXhat);
      }
      storePack<16>(dx, rowPack + q, packFloats<E, 16>(values));
    }
    if (t == 0) {
      stats[2 * o] = mean;
      stats[2 * o + 1] = rstd;
    }
  }
}

/// Per row: dx, and the row's mean and rstd into stats[2o], stats[2o + 1].
template <typename Acc>
__global__ void layerNormGradRowsKernel(DType xType, DType scaleType,
                                        DType dyType, int64_t outer,
                                        int64_t inner, double epsilon,
                                        const void *x, const void *scale,
                                        const void *dy, void *dx,
                                        double *stats) {
  __shared__ Acc scratch[32];
  Acc count = static_cast<double>(inner);
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    int64_t row = o * inner;
    Acc sum = 0.0;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x)
      sum += Acc(loadF(x, xType, row + j));
    Acc mean = blockSum(sum, scratch) / count;
    Acc squares = 0.0;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) {
      Acc d = Acc(loadF(x, xType, row + j)) - mean;
      squares += d * d;
    }
    Acc rstd = 1.0 / sqrt(blockSum(squares, scratch) / count + epsilon);
    Acc sumG = 0.0, sumGXhat = 0.0;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) {
      Acc xhat = (Acc(loadF(x, xType, row + j)) - mean) * rstd;
      Acc g = Acc(loadF(dy, dyType, row + j)) * Acc(loadF(scale, scaleType, j));
      sumG += g;
      sumGXhat += g * xhat;
    }
    Acc meanG = blockSum(sumG, scratch) / count;
    Acc meanGXhat = blockSum(sumGXhat, scratch) / count;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) {
      Acc xhat = (Acc(loadF(x, xType, row + j)) - mean) * rstd;
      storeF(dx, xType, row + j,
             rstd * (Acc(loadF(dy, dyType, row + j)) * Acc(loadF(scale, scaleType, j)) -
                     meanG - xhat * meanGXhat));
    }
    if (threadIdx.x == 0) {
      stats[2 * o] = mean;
      stats[2 * o + 1] = rstd;
    }
  }
}

/// Per column: dscale and dbias summed over the rows in row order, exactly
/// the CPU's order.
__global__ void layerNormGradColumnsKernel(DType xType, DType dyType,
                                           int64_t outer, int64_t inner,
                                           const void *x, const void *dy,
                                           const double *stats,
                                           DType dscaleType, void *dscale,
                                           void *dbias) {
  COLOSSAL_GRID_STRIDE(j, inner) {
    double ds = 0.0, db = 0.0;
    for (int64_t o = 0; o < outer; ++o) {
      double xhat =
          (loadF(x, xType, o * inner + j) - stats[2 * o]) * stats[2 * o + 1];
      double g = loadF(dy, dyType, o * inner + j);
      ds += g * xhat;
      db += g;
    }
    storeF(dscale, dscaleType, j, ds);
    storeF(dbias, dscaleType, j, db);
  }
}

/// The blocked column pass: block (x, c) sums rows [c x rowsPerChunk, ...)
/// of 256 columns, one column per thread in row order, into
/// partial[(2c) x inner + j] (dscale) and partial[(2c + 1) x inner + j]
/// (dbias).
__global__ void layerNormGradPartialKernel(DType xType, DType dyType,
                                           int64_t outer, int64_t inner,
                                           int64_t rowsPerChunk, const void *x,
                                           const void *dy, const double *stats,
                                           double *partial) {
  int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t c = blockIdx.y;
  if (j >= inner)
    return;
  int64_t first = c * rowsPerChunk;
  int64_t last = first + rowsPerChunk < outer ? first + rowsPerChunk : outer;
  double ds = 0.0, db = 0.0;
  for (int64_t o = first; o < last; ++o) {
    double xhat =
        (loadF(x, xType, o * inner + j) - stats[2 * o]) * stats[2 * o + 1];
    double g = loadF(dy, dyType, o * inner + j);
    ds += g * xhat;
    db += g;
  }
  partial[(2 * c) * inner + j] = ds;
  partial[(2 * c + 1) * inner + j] = db;
}

/// layerNormGradPartialKernel with packs: thread j of block (x, c) sums
/// columns [kCols j', kCols j' + kCols), j' = x * blockDim.x + j, over rows
/// [c x rowsPerChunk, ...) in row order, the same double arithmetic per
/// element as layerNormGradPartialKernel (so the same partial sums), but x
/// and dy are read as packs of kCols elements (8 or 16 bytes; inner % kCols
/// == 0 and both aligned, checked by the launch) and eight rows' packs are
/// loaded before the first is used: 16 loads in flight per thread where
/// the scalar kernel has one.
template <typename E, int kCols>
__global__ void layerNormGradPartialPackedKernel(int64_t outer, int64_t inner,
                                                 int64_t rowsPerChunk,
                                                 const void *x, const void *dy,
                                                 const double *stats,
                                                 double *partial) {
  constexpr int kBytes = kCols * E::kBytes;
  constexpr int kRowsInFlight = 8;
  int64_t group = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t c = blockIdx.y;
  if (group * kCols >= inner)
    return;
  int64_t packsPerRow = inner / kCols;
  int64_t first = c * rowsPerChunk;
  int64_t last = first + rowsPerChunk < outer ? first + rowsPerChunk : outer;
  double ds[kCols], db[kCols];
#pragma unroll
  for (int e = 0; e < kCols; ++e)
    ds[e] = 0.0, db[e] = 0.0;
  // One row's contribution, in the scalar kernel's arithmetic.
  auto addRow = [&](int64_t o, const Pack<kBytes> &xPack,
                    const Pack<kBytes> &dyPack) {
    double mean = stats[2 * o], rstd = stats[2 * o + 1];
#pragma unroll
    for (int e = 0; e < kCols; ++e) {
      double xhat = (double(packElement<E>(xPack, e)) - mean) * rstd;
      double g = packElement<E>(dyPack, e);
      ds[e] += g * xhat;
      db[e] += g;
    }
  };
  int64_t o = first;
  for (; o + kRowsInFlight <= last; o += kRowsInFlight) {
    Pack<kBytes> xs[kRowsInFlight], dys[kRowsInFlight];
#pragma unroll
    for (int k = 0; k < kRowsInFlight; ++k) {
      xs[k] = loadPack<kBytes>(x, (o + k) * packsPerRow + group);
      dys[k] = loadPack<kBytes>(dy, (o + k) * packsPerRow + group);
    }
#pragma unroll
    for (int k = 0; k < kRowsInFlight; ++k)
      addRow(o + k, xs[k], dys[k]);
  }
  for (; o < last; ++o) // the last 0-7 rows one by one
    addRow(o, loadPack<kBytes>(x, o * packsPerRow + group),
           loadPack<kBytes>(dy, o * packsPerRow + group));
  int64_t j = group * kCols;
#pragma unroll
  for (int e = 0; e < kCols; ++e) {
    partial[(2 * c) * inner + j + e] = ds[e];
    partial[(2 * c + 1) * inner + j + e] = db[e];
  }
}

/// Per column: the chunks' partial sums. Block x finishes columns x * 32 +
/// lane; its 8 warps split the chunks into 8 contiguous ranges, each warp
/// adding its range in chunk order with four chunks' partials loaded before
/// the first is added (a lone thread per column would wait an L2 round
/// trip per chunk); lane l of warp 0 then adds the 8 warp sums of its
/// column in warp order. Fixed order: deterministic run to run.
__global__ void layerNormGradFinalKernel(int64_t inner, int64_t chunks,
                                         const double *partial,
                                         DType dscaleType, void *dscale,
                                         void *dbias) {
  constexpr int kWarps = kThreads / 32;
  __shared__ double warpDs[kWarps][32], warpDb[kWarps][32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t j = int64_t(blockIdx.x) * 32 + lane;
  int64_t perWarp = (chunks + kWarps - 1) / kWarps;
  int64_t begin = warp * perWarp < chunks ? warp * perWarp : chunks;
  int64_t end = begin + perWarp < chunks ? begin + perWarp : chunks;
  double ds = 0.0, db = 0.0;
  if (j < inner) {
    int64_t c = begin;
    for (; c + 4 <= end; c += 4) {
      double pds[4], pdb[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        pds[k] = partial[(2 * (c + k)) * inner + j];
        pdb[k] = partial[(2 * (c + k) + 1) * inner + j];
      }
#pragma unroll
      for (int k = 0; k < 4; ++k)
        ds += pds[k], db += pdb[k];
    }
    for (; c < end; ++c) {
      ds += partial[(2 * c) * inner + j];
      db += partial[(2 * c + 1) * inner + j];
    }
  }
  warpDs[warp][lane] = ds;
  warpDb[warp][lane] = db;
  __syncthreads();
  if (warp == 0 && j < inner) {
    ds = warpDs[0][lane], db = warpDb[0][lane];
    for (int w = 1; w < kWarps; ++w)
      ds += warpDs[w][lane], db += warpDb[w][lane];
    storeF(dscale, dscaleType, j, ds);
    storeF(dbias, dscaleType, j, db);
  }
}

/// Rows per chunk of the blocked column pass: at least 32, and at most 128
/// chunks, so that the partial sums (2 x chunks x inner doubles, written
/// and read once) stay small next to x and dy: for OPT's 8192 x 2048 rows,
/// 128 chunks of 64 rows, 4 MiB of partials against 64 MiB of x and dy.
int64_t layerNormGradRowsPerChunk(int64_t outer) {
  int64_t rows = (outer + 127) / 128;
  return rows < 32 ? 32 : rows;
}

/// The packed column pass's columns per thread for E: 4 or 2 (pack of 8 or
/// 16 bytes), or 0 where inner or the pointers do not allow either.
template <typename E>
int layerNormGradPackCols(int64_t inner, const void *x, const void *dy) {
  for (int cols = 4; cols >= 2; cols /= 2)
    if (inner % cols == 0 && alignedTo(x, cols * E::kBytes) &&
        alignedTo(dy, cols * E::kBytes))
      return cols;
  return 0;
}

/// The partial pass for x and dy of E: packed where layerNormGradPackCols
/// allows, else layerNormGradPartialKernel.
template <typename E>
void launchLayerNormGradPartial(cudaStream_t stream, DType xType,
                                DType dyType, int64_t outer, int64_t inner,
                                int64_t rowsPerChunk, int64_t chunks,
                                const void *x, const void *dy,
                                const double *stats, double *partial) {
  int cols = layerNormGradPackCols<E>(inner, x, dy);
  if (cols == 0) {
    dim3 grid(static_cast<unsigned>((inner + kThreads - 1) / kThreads),
              static_cast<unsigned>(chunks));
    layerNormGradPartialKernel<<<grid, kThreads, 0, stream>>>(
        xType, dyType, outer, inner, rowsPerChunk, x, dy, stats, partial);
    return;
  }
  int64_t threads = inner / cols;
  dim3 grid(static_cast<unsigned>((threads + kThreads - 1) / kThreads),
            static_cast<unsigned>(chunks));
  if (cols == 4)
    layerNormGradPartialPackedKernel<E, 4><<<grid, kThreads, 0, stream>>>(
        outer, inner, rowsPerChunk, x, dy, stats, partial);
  else
    layerNormGradPartialPackedKernel<E, 2><<<grid, kThreads, 0, stream>>>(
        outer, inner, rowsPerChunk, x, dy, stats, partial);
}

/// The largest row (elements) the packed layer_norm kernels take: 1024
/// packs, four per thread of a 256-thread block.
constexpr int64_t kPackedRowMax = 8192;

/// True where layerNormPackedKernel / layerNormGradRowsPackedKernel run:
/// bf16/f16 rows of 8k <= 8192 elements, every row operand (null: absent)
/// of the same dtype and 16-byte aligned; otherwise the warp kernels.
bool packedRows(DType xType, int64_t inner,
                std::initializer_list<std::pair<DType, const void *>> ops) {
  if ((xType != DType::kBF16 && xType != DType::kF16) || inner % 8 != 0 ||
      inner > kPackedRowMax)
    return false;
  for (const auto &[dtype, p] : ops)
    if (p && (dtype != xType || !alignedTo(p, 16)))
      return false;
  return true;
}

/// Launches KernelFor<E, kPacks, kWarpRow> (layerNormPackedKernel or
/// layerNormGradRowsPackedKernel) for rows of inner elements: a warp per
/// row with 1, 2, 4 or 8 packs per lane up to 2048 elements, else a block
/// per row of 4 packs per thread (96 to 256 threads).
template <template <typename, int, bool> class KernelFor, typename E,
          typename... Args>
void launchPackedRows(cudaStream_t stream, int64_t outer, int64_t inner,
                      Args... args) {
  int64_t packs = inner / 8;
  unsigned warpBlocks = blocksForWarps(outer);
  if (packs <= 32)
    KernelFor<E, 1, true>::launch(warpBlocks, kThreads, stream, outer, inner,
                                  args...);
  else if (packs <= 64)
    KernelFor<E, 2, true>::launch(warpBlocks, kThreads, stream, outer, inner,
                                  args...);
  else if (packs <= 128)
    KernelFor<E, 4, true>::launch(warpBlocks, kThreads, stream, outer, inner,
                                  args...);
  else if (packs <= 256)
    KernelFor<E, 8, true>::launch(warpBlocks, kThreads, stream, outer, inner,
                                  args...);
  else
    KernelFor<E, 4, false>::launch(blocksFor(outer, 1),
                                   static_cast<unsigned>((packs + 127) / 128 *
                                                         32),
                                   stream, outer, inner, args...);
}

template <typename E, int kPacks, bool kWarpRow> struct LayerNormPacked {
  template <typename... Args>
  static void launch(unsigned blocks, unsigned threads, cudaStream_t stream,
                     Args... args) {
    layerNormPackedKernel<E, kPacks, kWarpRow>
        <<<blocks, threads, 0, stream>>>(args...);
  }
};

template <typename E, int kPacks, bool kWarpRow> struct LayerNormGradPacked {
  template <typename... Args>
  static void launch(unsigned blocks, unsigned threads, cudaStream_t stream,
                     Args... args) {
    layerNormGradRowsPackedKernel<E, kPacks, kWarpRow>
        <<<blocks, threads, 0, stream>>>(args...);
  }
};

// ---- cumsum --------------------------------------------------------------

/// One thread per line, sequential as on the CPU.
__global__ void cumsumKernel(DType dtype, int64_t outer, int64_t length,
                             int64_t inner, bool exclusive, bool reverse,
                             const void *in, void *out) {
  bool floats = isFloatType(dtype);
  COLOSSAL_GRID_STRIDE(line, outer * inner) {
    int64_t o = line / inner, j = line % inner;
    double runningF = 0.0;
    int64_t runningI = 0;
    for (int64_t s = 0; s < length; ++s) {
      int64_t a = reverse ? length - 1 - s : s;
      int64_t at = (o * length + a) * inner + j;
      if (floats) {
        double element = loadF(in, dtype, at);
        if (exclusive) {
          storeF(out, dtype, at, runningF);
          runningF += element;
        } else {
          runningF += element;
          storeF(out, dtype, at, runningF);
        }
      } else {
        int64_t element = loadI(in, dtype, at);
        int64_t next = static_cast<int64_t>(static_cast<uint64_t>(runningI) +
                                            static_cast<uint64_t>(element));
        storeI(out, dtype, at, exclusive ? runningI : next);
        runningI = next;
      }
    }
  }
}

// ---- softmax_cross_entropy -----------------------------------------------

/// One warp per position: -log_softmax(scores)[label], 0 when ignored;
/// the loss stored as outType (f32 for 16-bit scores: OpTable.h).
__global__ void crossEntropyKernel(ErrorSink sink, DType scoreType,
                                   DType outType, DType labelType,
                                   int64_t batch,
                                   int64_t classes, int64_t inner,
                                   int64_t ignoreIndex, int64_t reduction,
                                   const void *scores, const void *labels,
                                   void *out, double *losses) {
  int lane = threadIdx.x & 31;
  COLOSSAL_WARP_STRIDE(p, batch * inner) {
    int64_t n = p / inner, j = p % inner;
    int64_t label = loadI(labels, labelType, p);
    double loss = 0.0;
    if (label != ignoreIndex) {
      if (label < 0 || label >= classes) {
        if (lane == 0)
          reportError(sink, kErrLabelRange, label, classes, ignoreIndex);
      } else {
        int64_t base = n * classes * inner + j;
        double maxValue = -INFINITY;
        for (int64_t c = lane; c < classes; c += 32)
          maxValue =
              stdMax(maxValue, loadF(scores, scoreType, base + c * inner));
        maxValue = warpMax(maxValue);
        double sum = 0.0;
        for (int64_t c = lane; c < classes; c += 32)
          sum += exp(loadF(scores, scoreType, base + c * inner) - maxValue);
        sum = warpSum(sum);
        loss = -(loadF(scores, scoreType, base + label * inner) - maxValue -
                 log(sum));
      }
    }
    if (lane == 0) {
      if (reduction == 0)
        storeF(out, outType, p, loss);
      else
        losses[p] = loss;
    }
  }
}

/// One block: the sum (or mean over the scored labels) of the losses.
__global__ void crossEntropyTotalKernel(DType outType, DType labelType,
                                        int64_t positions, int64_t ignoreIndex,
                                        int64_t reduction, const void *labels,
                                        const double *losses, void *out) {
  __shared__ double scratch[32];
  double total = 0.0, counted = 0.0;
  for (int64_t p = threadIdx.x; p < positions; p += blockDim.x) {
    total += losses[p];
    counted += loadI(labels, labelType, p) != ignoreIndex ? 1.0 : 0.0;
  }
  total = blockSum(total, scratch);
  counted = blockSum(counted, scratch);
  if (threadIdx.x == 0) {
    if (reduction == 2)
      total /= counted; // all ignored: 0/0 = NaN, as PyTorch
    storeF(out, outType, 0, total);
  }
}

/// One block: validates every label and counts the scored ones.
__global__ void countLabelsKernel(ErrorSink sink, DType labelType,
                                  int64_t positions, int64_t classes,
                                  int64_t ignoreIndex, const void *labels,
                                  int64_t *count) {
  __shared__ double scratch[32];
  double counted = 0.0;
  for (int64_t p = threadIdx.x; p < positions; p += blockDim.x) {
    int64_t label = loadI(labels, labelType, p);
    if (label == ignoreIndex)
      continue;
    if (label < 0 || label >= classes)
      reportError(sink, kErrLabelRange, label, classes, ignoreIndex);
    counted += 1.0; // exact in double up to 2^53 positions
  }
  counted = blockSum(counted, scratch);
  if (threadIdx.x == 0)
    *count = static_cast<int64_t>(counted);
}

/// One warp per position: (softmax - onehot(label)) * dloss weight.
template <typename Acc>
__global__ void crossEntropyGradKernel(DType scoreType, DType labelType,
                                       DType dlossType, int64_t batch,
                                       int64_t classes, int64_t inner,
                                       int64_t ignoreIndex, int64_t reduction,
                                       const void *scores, const void *labels,
                                       const void *dloss, void *out,
                                       const int64_t *count) {
  int lane = threadIdx.x & 31;
  COLOSSAL_WARP_STRIDE(p, batch * inner) {
    int64_t n = p / inner, j = p % inner;
    int64_t base = n * classes * inner + j;
    int64_t label = loadI(labels, labelType, p);
    if (label == ignoreIndex || label < 0 || label >= classes) {
      // Ignored (or invalid, reported by countLabelsKernel): zero gradient.
      for (int64_t c = lane; c < classes; c += 32)
        storeF(out, scoreType, base + c * inner, 0.0);
      continue;
    }
    Acc weight = reduction == 0 ? Acc(loadF(dloss, dlossType, p))
                                   : Acc(loadF(dloss, dlossType, 0));
    if (reduction == 2)
      weight /= static_cast<double>(*count);
    Acc maxValue = -INFINITY;
    for (int64_t c = lane; c < classes; c += 32)
      maxValue = stdMax(maxValue, Acc(loadF(scores, scoreType, base + c * inner)));
    maxValue = warpMax(maxValue);
    Acc sum = 0.0;
    for (int64_t c = lane; c < classes; c += 32)
      sum += exp(Acc(loadF(scores, scoreType, base + c * inner)) - maxValue);
    sum = warpSum(sum);
    for (int64_t c = lane; c < classes; c += 32) {
      Acc probability =
          exp(Acc(loadF(scores, scoreType, base + c * inner)) - maxValue) / sum;
      storeF(out, scoreType, base + c * inner,
             (probability - (c == label ? 1.0 : 0.0)) * weight);
    }
  }
}

// ---- softmax_cross_entropy over contiguous rows ---------------------------
//
// The generic kernels above give a warp to a position and read its scores
// one element at a time through loadF, in f64 (the forward) or with a max
// pass, a sum pass and a write pass (the gradient). On a language model's
// logits, [8192, 50272] bf16, that was 3.2 ms forward and 5.0 ms for the
// gradient (session 6, call 1) where the bytes take 0.2 and 0.6 ms. When
// the classes are the innermost axis and the scores are f32, bf16 or f16,
// a block takes a row instead: one pass keeps each thread's running
// maximum and its sum of exp(x - max), rescaled when the maximum grows
// (8 scores at a time when a row is whole 16-byte packs), and the threads'
// pairs combine in a fixed order. f32 math, as PyTorch's CUDA loss over
// bf16 logits. The gradient reads the row a second time for
// exp(x - max) / sum and writes it (over the scores when planned in place:
// each element is read before it is written, by the same thread).

template <typename E>
__device__ inline float rowScore(const void *row, int64_t c) {
  if constexpr (E::kBytes == 2)
    return E::toFloat(static_cast<const uint16_t *>(row)[c]);
  else
    return E::toFloat(static_cast<const uint32_t *>(row)[c]);
}

/// A thread's running maximum and sum of exp(x - max) over its scores.
struct RunningSoftmax {
  float max = -INFINITY, sum = 0.0f;
  /// Takes a group of scores whose largest (NaN ignored) is `groupMax`.
  __device__ void rescaleTo(float groupMax) {
    if (max < groupMax) {
      sum *= expf(max - groupMax); // exp(-inf) = 0 for the first group
      max = groupMax;
    }
  }
  /// exp(x - max) for x <= max; -inf adds 0 (also when max is still -inf)
  /// and a NaN score makes the sum NaN.
  __device__ void add(float x) {
    sum += x == -INFINITY ? 0.0f : expf(x - max);
  }
};

/// The row's maximum and sum of exp(x - maximum), in every thread of the
/// block: the threads' pairs combined in thread order.
template <typename E, bool kPacked>
__device__ inline RunningSoftmax rowSoftmax(const void *row, int64_t classes,
                                            float *scratch) {
  RunningSoftmax mine;
  if constexpr (kPacked) {
    constexpr int kPerPack = 16 / E::kBytes;
    int64_t packs = classes / kPerPack;
    int64_t q = threadIdx.x;
    auto take = [&](const Pack<16> &pack) {
      float values[kPerPack], groupMax = -INFINITY;
#pragma unroll
      for (int e = 0; e < kPerPack; ++e) {
        values[e] = packElement<E>(pack, e);
        groupMax = stdMax(groupMax, values[e]);
      }
      mine.rescaleTo(groupMax);
#pragma unroll
      for (int e = 0; e < kPerPack; ++e)
        mine.add(values[e]);
    };
    // Two packs in flight before either is used.
    for (; q + blockDim.x < packs; q += 2 * blockDim.x) {
      Pack<16> a = loadPack<16>(row, q), b = loadPack<16>(row, q + blockDim.x);
      take(a);
      take(b);
    }
    if (q < packs)
      take(loadPack<16>(row, q));
  } else {
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
      float x = rowScore<E>(row, c);
      mine.rescaleTo(x);
      mine.add(x);
    }
  }
  RunningSoftmax all;
  // blockSum's scratch holds 32 floats: the maximum first, then the sums.
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float m = warpMax(mine.max);
  __syncthreads();
  if (lane == 0)
    scratch[warp] = m;
  __syncthreads();
  for (int w = 0; w < int(blockDim.x >> 5); ++w)
    all.max = stdMax(all.max, scratch[w]);
  float scaled = mine.max == -INFINITY ? mine.sum
                                       : mine.sum * expf(mine.max - all.max);
  all.sum = blockSum(scaled, scratch);
  return all;
}

template <typename E, bool kPacked>
__global__ void crossEntropyRowsKernel(ErrorSink sink, DType outType,
                                       DType labelType, int64_t rows,
                                       int64_t classes, int64_t ignoreIndex,
                                       int64_t reduction, const void *scores,
                                       const void *labels, void *out,
                                       double *losses) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    int64_t label = loadI(labels, labelType, r);
    bool scored = label != ignoreIndex;
    if (scored && (label < 0 || label >= classes)) {
      if (threadIdx.x == 0)
        reportError(sink, kErrLabelRange, label, classes, ignoreIndex);
      scored = false;
    }
    double loss = 0.0;
    if (scored) { // uniform across the block: every thread reduces
      const void *row =
          static_cast<const char *>(scores) + r * classes * E::kBytes;
      RunningSoftmax all = rowSoftmax<E, kPacked>(row, classes, scratch);
      loss = -(rowScore<E>(row, label) - all.max - logf(all.sum));
    }
    if (threadIdx.x == 0) {
      if (reduction == 0)
        storeF(out, outType, r, loss);
      else
        losses[r] = loss;
    }
  }
}

template <typename E, bool kPacked>
__global__ void crossEntropyGradRowsKernel(DType labelType, DType dlossType,
                                           int64_t rows, int64_t classes,
                                           int64_t ignoreIndex,
                                           int64_t reduction,
                                           const void *scores,
                                           const void *labels,
                                           const void *dloss, void *out,
                                           const int64_t *count) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    int64_t label = loadI(labels, labelType, r);
    const void *row =
        static_cast<const char *>(scores) + r * classes * E::kBytes;
    void *grad = static_cast<char *>(out) + r * classes * E::kBytes;
    float weight = 0.0f, maxValue = 0.0f, inverse = 0.0f;
    // Ignored (or invalid, reported by countLabelsKernel): zero gradient.
    bool scored = label != ignoreIndex && label >= 0 && label < classes;
    if (scored) {
      weight = reduction == 0 ? float(loadF(dloss, dlossType, r))
                              : float(loadF(dloss, dlossType, 0));
      if (reduction == 2)
        weight /= static_cast<float>(*count);
      RunningSoftmax all = rowSoftmax<E, kPacked>(row, classes, scratch);
      maxValue = all.max;
      inverse = 1.0f / all.sum;
    }
    auto gradient = [&](int64_t c, float x) {
      float probability = scored ? expf(x - maxValue) * inverse : 0.0f;
      return scored ? (probability - (c == label ? 1.0f : 0.0f)) * weight
                    : 0.0f;
    };
    if constexpr (kPacked && E::kBytes == 2) {
      int64_t packs = classes / 8;
      for (int64_t q = threadIdx.x; q < packs; q += blockDim.x) {
        Pack<16> pack = loadPack<16>(row, q);
        float values[8];
#pragma unroll
        for (int e = 0; e < 8; ++e)
          values[e] = gradient(q * 8 + e, packElement<E>(pack, e));
        storePack<16>(grad, q, packFloats<E, 16>(values));
      }
    } else if constexpr (kPacked) {
      int64_t packs = classes / 4;
      for (int64_t q = threadIdx.x; q < packs; q += blockDim.x) {
        Pack<16> pack = loadPack<16>(row, q), result;
#pragma unroll
        for (int e = 0; e < 4; ++e)
          result.w[e] = __float_as_uint(
              gradient(q * 4 + e, packElement<E>(pack, e)));
        storePack<16>(grad, q, result);
      }
    } else {
      for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
        float g = gradient(c, rowScore<E>(row, c));
        if constexpr (E::kBytes == 2)
          static_cast<uint16_t *>(grad)[c] =
              static_cast<uint16_t>(E::fromFloat(g));
        else
          static_cast<float *>(grad)[c] = g;
      }
    }
  }
}

/// Launches KernelFor<E, packed> for a rows kernel when the classes are
/// the innermost axis of f32/bf16/f16 scores; false when the generic
/// kernel has to run.
template <template <typename, bool> class KernelFor, typename... Args>
bool launchScoreRows(cudaStream_t stream, DType scoreType, int64_t rows,
                     int64_t classes, int64_t inner, const void *scores,
                     const void *out, Args... args) {
  if (inner != 1 || rows == 0)
    return false;
  int bytes = scoreType == DType::kF32                                ? 4
              : scoreType == DType::kBF16 || scoreType == DType::kF16 ? 2
                                                                      : 0;
  if (bytes == 0)
    return false;
  bool packed = classes * bytes % 16 == 0 && alignedTo(scores, 16) &&
                alignedTo(out, 16);
  unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, 1 << 20));
  auto go = [&](auto elem) {
    using E = decltype(elem);
    if (packed)
      KernelFor<E, true>::launch(blocks, stream, args...);
    else
      KernelFor<E, false>::launch(blocks, stream, args...);
  };
  if (scoreType == DType::kF32)
    go(F32Elem{});
  else if (scoreType == DType::kBF16)
    go(Bf16Elem{});
  else
    go(F16Elem{});
  return true;
}

template <typename E, bool kPacked> struct CrossEntropyRows {
  template <typename... Args>
  static void launch(unsigned blocks, cudaStream_t stream, Args... args) {
    crossEntropyRowsKernel<E, kPacked><<<blocks, kThreads, 0, stream>>>(
        args...);
  }
};

template <typename E, bool kPacked> struct CrossEntropyGradRows {
  template <typename... Args>
  static void launch(unsigned blocks, cudaStream_t stream, Args... args) {
    crossEntropyGradRowsKernel<E, kPacked><<<blocks, kThreads, 0, stream>>>(
        args...);
  }
};

} // namespace

int64_t reduceParts(DType dtype, int64_t outCount, int64_t reduced) {
  // Integers keep the warp path (exact int64 sums); floats split when an
  // output has over 64k elements and there are few outputs: about 16k
  // elements per block, at most 4096 blocks in all.
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16 &&
      dtype != DType::kF64)
    return 1;
  if (reduced < (int64_t{1} << 16) || outCount > 1024)
    return 1;
  int64_t parts = reduced >> 14;
  int64_t cap = 4096 / outCount;
  if (parts > cap)
    parts = cap;
  return parts < 1 ? 1 : parts;
}

size_t reduceScratchBytes(Precision precision, DType dtype, int64_t outCount,
                          const Dims &keptDims, const Dims &keptStrides,
                          const Dims &redDims, const Dims &redStrides) {
  if (outCount == 0)
    return 0;
  ReduceView v = f32View(precision, dtype, outCount, keptDims, keptStrides,
                         redDims, redStrides);
  if (v.ok) {
    if (v.inner == 1) {
      int64_t parts = rowParts(v.outer, v.length);
      return parts > 1 ? static_cast<size_t>(v.outer * parts) * sizeof(float)
                       : 0;
    }
    int64_t rowsPerChunk = columnRowsPerChunk(v, dtype);
    int64_t chunks = (v.length + rowsPerChunk - 1) / rowsPerChunk;
    return chunks > 1
               ? static_cast<size_t>(v.outer * chunks * v.inner) * sizeof(float)
               : 0;
  }
  int64_t reduced = 1;
  for (int d = 0; d < redDims.rank; ++d)
    reduced *= redDims.d[d];
  int64_t parts = reduceParts(dtype, outCount, reduced);
  return parts > 1 ? static_cast<size_t>(outCount * parts) * sizeof(double) : 0;
}

cudaError_t launchReduce(cudaStream_t stream, OpKind kind, DType dtype,
                         int64_t outCount, const Dims &keptDims,
                         const Dims &keptStrides, const Dims &redDims,
                         const Dims &redStrides, const void *in, void *out,
                         void *scratch, Precision precision) {
  if (outCount == 0)
    return cudaSuccess;
  ReduceView view = f32View(precision, dtype, outCount, keptDims, keptStrides,
                            redDims, redStrides);
  if (view.ok)
    return launchReduceF32(stream, kind, dtype, view, in, out,
                           static_cast<float *>(scratch));
  double *partial = static_cast<double *>(scratch);
  int64_t reduced = 1;
  for (int d = 0; d < redDims.rank; ++d)
    reduced *= redDims.d[d];
  int64_t parts = reduceParts(dtype, outCount, reduced);
  if (parts > 1 && partial) {
    reducePartsKernel<<<static_cast<unsigned>(outCount * parts), kThreads, 0,
                        stream>>>(kind, dtype, outCount, keptDims, keptStrides,
                                  redDims, redStrides, reduced, parts, in,
                                  partial);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
      return err;
    reduceFinishKernel<<<blocksFor(outCount), kThreads, 0, stream>>>(
        kind, dtype, outCount, reduced, parts, partial, out);
    return cudaGetLastError();
  }
  reduceKernel<<<blocksForWarps(outCount), kThreads, 0, stream>>>(
      kind, dtype, outCount, keptDims, keptStrides, redDims, redStrides,
      reduced, in, out);
  return cudaGetLastError();
}

cudaError_t launchSoftmax(cudaStream_t stream, bool logSoftmax, DType dtype,
                          int64_t outer, int64_t length, int64_t inner,
                          const void *in, void *out) {
  if (outer * length * inner == 0)
    return cudaSuccess;
  // f32 math for every dtype but f64 (exp/log in f32, warp sums in f32).
  if (dtype == DType::kF64)
    softmaxKernel<double><<<blocksForWarps(outer * inner), kThreads, 0, stream>>>(
        logSoftmax, dtype, outer, length, inner, in, out);
  else
    softmaxKernel<float><<<blocksForWarps(outer * inner), kThreads, 0, stream>>>(
        logSoftmax, dtype, outer, length, inner, in, out);
  return cudaGetLastError();
}

cudaError_t launchLayerNorm(cudaStream_t stream, DType xType, DType scaleType,
                            DType biasType, int64_t outer, int64_t inner,
                            double epsilon, const void *x, const void *scale,
                            const void *bias, void *out) {
  if (outer * inner == 0)
    return cudaSuccess;
  // bf16/f16 rows: a warp per row with f32 statistics (the result's
  // rounding is 2^-9; the f32 error of (x - mean) is far below it); f32
  // rows keep a block per row in f64: in f32,
  // (x - mean) loses the digits of an element near the mean, beyond the
  // kernel tests' elementwise 1e-5.
  // The packed kernels where the rows allow (packedRows), else the warp
  // kernel (rows of another length, unaligned operands).
  if (packedRows(xType, inner,
                 {{xType, x}, {xType, out}, {scaleType, scale},
                  {biasType, bias}})) {
    if (xType == DType::kBF16)
      launchPackedRows<LayerNormPacked, Bf16Elem>(stream, outer, inner,
                                                  epsilon, x, scale, bias, out);
    else
      launchPackedRows<LayerNormPacked, F16Elem>(stream, outer, inner, epsilon,
                                                 x, scale, bias, out);
  } else if (xType == DType::kBF16 || xType == DType::kF16)
    layerNormWarpKernel<<<blocksForWarps(outer), kThreads, 0, stream>>>(
        xType, scaleType, biasType, outer, inner, epsilon, x, scale, bias,
        out);
  else
    layerNormKernel<double><<<blocksFor(outer, 1), kThreads, 0, stream>>>(
        xType, scaleType, biasType, outer, inner, epsilon, x, scale, bias,
        out);
  return cudaGetLastError();
}

cudaError_t launchLayerNormGrad(cudaStream_t stream, DType xType,
                                DType scaleType, DType dyType, int64_t outer,
                                int64_t inner, double epsilon, const void *x,
                                const void *scale, const void *dy, void *dx,
                                DType dscaleType, void *dscale, void *dbias,
                                double *stats) {
  if (inner == 0)
    return cudaSuccess;
  if (outer > 0) {
    // As launchLayerNorm: f32 arithmetic for bf16/f16 rows (the stats are
    // stored as double either way).
    if (packedRows(xType, inner,
                   {{xType, x}, {scaleType, scale}, {dyType, dy}, {xType, dx}})) {
      if (xType == DType::kBF16)
        launchPackedRows<LayerNormGradPacked, Bf16Elem>(
            stream, outer, inner, epsilon, x, scale, dy, dx, stats);
      else
        launchPackedRows<LayerNormGradPacked, F16Elem>(
            stream, outer, inner, epsilon, x, scale, dy, dx, stats);
    } else if (xType == DType::kBF16 || xType == DType::kF16)
      layerNormGradRowsWarpKernel<<<blocksForWarps(outer), kThreads, 0,
                                    stream>>>(
          xType, scaleType, dyType, outer, inner, epsilon, x, scale, dy, dx,
          stats);
    else
      layerNormGradRowsKernel<double><<<blocksFor(outer, 1), kThreads, 0,
                                         stream>>>(
          xType, scaleType, dyType, outer, inner, epsilon, x, scale, dy, dx,
          stats);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
      return err;
  }
  int64_t rowsPerChunk = layerNormGradRowsPerChunk(outer);
  int64_t chunks = (outer + rowsPerChunk - 1) / rowsPerChunk;
  if (chunks <= 1) { // few rows: one pass in the CPU's row order
    layerNormGradColumnsKernel<<<blocksFor(inner), kThreads, 0, stream>>>(
        xType, dyType, outer, inner, x, dy, stats, dscaleType, dscale, dbias);
    return cudaGetLastError();
  }
  double *partial = stats + 2 * outer;
  // Packed partial sums where x and dy are bf16/f16/f32 of one dtype (the
  // op's type rule) and inner and the pointers allow a pack.
  if (xType == dyType && xType == DType::kBF16)
    launchLayerNormGradPartial<Bf16Elem>(stream, xType, dyType, outer, inner,
                                         rowsPerChunk, chunks, x, dy, stats,
                                         partial);
  else if (xType == dyType && xType == DType::kF16)
    launchLayerNormGradPartial<F16Elem>(stream, xType, dyType, outer, inner,
                                        rowsPerChunk, chunks, x, dy, stats,
                                        partial);
  else if (xType == dyType && xType == DType::kF32)
    launchLayerNormGradPartial<F32Elem>(stream, xType, dyType, outer, inner,
                                        rowsPerChunk, chunks, x, dy, stats,
                                        partial);
  else {
    dim3 grid(static_cast<unsigned>((inner + kThreads - 1) / kThreads),
              static_cast<unsigned>(chunks));
    layerNormGradPartialKernel<<<grid, kThreads, 0, stream>>>(
        xType, dyType, outer, inner, rowsPerChunk, x, dy, stats, partial);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return err;
  layerNormGradFinalKernel<<<static_cast<unsigned>((inner + 31) / 32),
                             kThreads, 0, stream>>>(inner, chunks, partial,
                                                    dscaleType, dscale, dbias);
  return cudaGetLastError();
}

size_t layerNormGradScratchBytes(int64_t outer, int64_t inner) {
  int64_t rowsPerChunk = layerNormGradRowsPerChunk(outer);
  int64_t chunks = (outer + rowsPerChunk - 1) / rowsPerChunk;
  int64_t doubles = 2 * outer + (chunks > 1 ? 2 * chunks * inner : 0);
  return static_cast<size_t>(doubles) * sizeof(double);
}

cudaError_t launchCumSum(cudaStream_t stream, DType dtype, int64_t outer,
                         int64_t length, int64_t inner, bool exclusive,
                         bool reverse, const void *in, void *out) {
  if (outer * length * inner == 0)
    return cudaSuccess;
  cumsumKernel<<<blocksFor(outer * inner), kThreads, 0, stream>>>(
      dtype, outer, length, inner, exclusive, reverse, in, out);
  return cudaGetLastError();
}

cudaError_t launchCrossEntropy(cudaStream_t stream, ErrorSink sink,
                               DType scoreType, DType outType,
                               DType labelType, int64_t batch,
                               int64_t classes, int64_t inner,
                               int64_t ignoreIndex, int64_t reduction,
                               const void *scores, const void *labels,
                               void *out, double *losses) {
  int64_t positions = batch * inner;
  if (positions > 0) {
    if (classes == 0 ||
        !launchScoreRows<CrossEntropyRows>(
            stream, scoreType, batch, classes, inner, scores, scores, sink,
            outType, labelType, batch, classes, ignoreIndex, reduction,
            scores, labels, out, losses))
      crossEntropyKernel<<<blocksForWarps(positions), kThreads, 0, stream>>>(
          sink, scoreType, outType, labelType, batch, classes, inner,
          ignoreIndex, reduction, scores, labels, out, losses);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
      return err;
  }
  if (reduction == 0)
    return cudaSuccess;
  crossEntropyTotalKernel<<<1, 1024, 0, stream>>>(
      outType, labelType, positions, ignoreIndex, reduction, labels, losses,
      out);
  return cudaGetLastError();
}

cudaError_t launchCrossEntropyGrad(
    cudaStream_t stream, ErrorSink sink, DType scoreType, DType labelType,
    DType dlossType, int64_t batch, int64_t classes, int64_t inner,
    int64_t ignoreIndex, int64_t reduction, const void *scores,
    const void *labels, const void *dloss, void *out, int64_t *count) {
  int64_t positions = batch * inner;
  if (positions == 0)
    return cudaSuccess;
  countLabelsKernel<<<1, 1024, 0, stream>>>(sink, labelType, positions, classes,
                                            ignoreIndex, labels, count);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || classes == 0)
    return err;
  if (launchScoreRows<CrossEntropyGradRows>(
          stream, scoreType, batch, classes, inner, scores, out, labelType,
          dlossType, batch, classes, ignoreIndex, reduction, scores, labels,
          dloss, out, static_cast<const int64_t *>(count)))
    return cudaGetLastError();
  // f32 math for every score dtype but f64: the logits' gradient is the
  // largest elementwise pass of a language model (positions x vocabulary).
  if (scoreType == DType::kF64)
    crossEntropyGradKernel<double><<<blocksForWarps(positions), kThreads, 0,
                                     stream>>>(
        scoreType, labelType, dlossType, batch, classes, inner, ignoreIndex,
        reduction, scores, labels, dloss, out, count);
  else
    crossEntropyGradKernel<float><<<blocksForWarps(positions), kThreads, 0,
                                    stream>>>(
        scoreType, labelType, dlossType, batch, classes, inner, ignoreIndex,
        reduction, scores, labels, dloss, out, count);
  return cudaGetLastError();
}

} // namespace colossal::runtime::cuda
