//===- Elementwise.cu - Elementwise, data movement and optimizer kernels --===//
//
// One thread per output element (grid-stride). Broadcasting and every layout
// change (expand, transpose, slice) go through one strided index walk
// (stridedOffset), except float add/sub/mul/div/max/min: f32 math, operands
// in the common broadcast layouts addressed as (i / div) % mod, and 16-byte
// packs per thread where the pointers allow (binaryF32Kernel). The
// per-element math is in ElementwiseDevice.cuh, shared with the
// fused_elementwise interpreters (FusedElementwise.cu).
//
//===----------------------------------------------------------------------===//

#include "CudaCommon.cuh"
#include "ElementwiseDevice.cuh"

namespace colossal::runtime::cuda {

namespace {

// ---- Unary ---------------------------------------------------------------

__global__ void unaryKernel(OpKind kind, bool tanhGelu, DType inType,
                            DType outType, int64_t n, const void *in,
                            void *out) {
  if (isFloatType(inType)) {
    COLOSSAL_GRID_STRIDE(i, n) {
      storeF(out, outType, i, unaryFloat(kind, tanhGelu, loadF(in, inType, i)));
    }
  } else {
    COLOSSAL_GRID_STRIDE(i, n) {
      storeI(out, outType, i, unaryInt(kind, loadI(in, inType, i)));
    }
  }
}

/// Casts among f32, bf16 and f16 through float: the value is exact in
/// float, and rounding it once to the output is what castKernel's double
/// rounding gives (a float is exact in double).
template <typename In, typename Out>
__global__ void castFloatKernel(int64_t n, const typename In::S *in,
                                typename Out::S *out) {
  COLOSSAL_GRID_STRIDE(i, n) { out[i] = Out::store(In::load(in[i])); }
}

/// castFloatKernel eight elements a thread: each pack of 8 read and
/// written in 16-byte accesses (two for f32), then the last n % 8 elements
/// one a thread. Each element converts as in castFloatKernel (same
/// functions, so the same bits); only the accesses are wider. One element
/// a thread (4- and 2-byte accesses) reached a third to a half of the
/// bandwidth: a [50272, 2048] f32 -> bf16 cast took 423 us for 150 us of
/// bytes. Both pointers must be 16-byte aligned (launchCast checks).
template <typename In, typename Out>
__global__ void castFloatPackKernel(int64_t n, const typename In::S *in,
                                    typename Out::S *out) {
  using SI = typename In::S;
  using SO = typename Out::S;
  constexpr int V = 8;
  constexpr int kInVecs = V * sizeof(SI) / 16, kOutVecs = V * sizeof(SO) / 16;
  const int64_t packs = n / V;
  COLOSSAL_GRID_STRIDE(q, packs) {
    uint4 a[kInVecs], b[kOutVecs];
#pragma unroll
    for (int k = 0; k < kInVecs; ++k)
      a[k] = reinterpret_cast<const uint4 *>(in + q * V)[k];
    const SI *x = reinterpret_cast<const SI *>(a);
    SO *y = reinterpret_cast<SO *>(b);
#pragma unroll
    for (int l = 0; l < V; ++l)
      y[l] = Out::store(In::load(x[l]));
#pragma unroll
    for (int k = 0; k < kOutVecs; ++k)
      reinterpret_cast<uint4 *>(out + q * V)[k] = b[k];
  }
  for (int64_t i = packs * V + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += int64_t(blockDim.x) * gridDim.x)
    out[i] = Out::store(In::load(in[i]));
}

__global__ void castKernel(DType inType, DType outType, int64_t n,
                           const void *in, void *out) {
  // Floats go through double (to an integer: truncate and saturate);
  // integers and bools through int64 (to a narrower integer: wrap).
  if (isFloatType(inType)) {
    COLOSSAL_GRID_STRIDE(i, n) {
      storeF(out, outType, i, loadF(in, inType, i));
    }
  } else {
    COLOSSAL_GRID_STRIDE(i, n) {
      storeI(out, outType, i, loadI(in, inType, i));
    }
  }
}

// ---- Binary --------------------------------------------------------------

// ---- Binary in f32 ----------------------------------------------------
//
// add, sub, mul, div, max and min of f32, bf16 or f16 tensors (output of
// the same dtype) compute in f32 and round once to the output. That is
// bit-identical to the CPU's f64 computation rounded once: a + b, a - b,
// a * b and a / b of p-bit floats rounded to f32 (24 bits) and then to
// p bits equal the correctly rounded p-bit result whenever 24 >= 2p + 2
// (bf16: p = 8, f16: p = 11), and for f32 the f64 result (53 >= 2 x 24 + 2)
// is rounded once to the same f32; max and min are exact. pow keeps f64
// (powf is not correctly rounded).

/// Where operand element of output index i lives: (i / div) % mod, with
/// mod == 0 meaning no modulus and mod == 1 a scalar. `vec`: div == 1, mod
/// a multiple of the pack (or 0) and a 16-byte aligned base, so a pack of
/// output elements reads one aligned pack of the operand.
struct Operand {
  const void *p;
  int64_t div, mod;
  bool vec;
};

__device__ inline int64_t operandOffset(const Operand &o, int64_t i) {
  int64_t j = o.div == 1 ? i : i / o.div;
  return o.mod == 0 ? j : j % o.mod;
}

struct F32Storage {
  using S = float;
  __device__ static float load(S v) { return v; }
  __device__ static S store(float f) { return f; }
};
struct BF16Storage {
  using S = uint16_t;
  __device__ static float load(S v) { return bf16ToFloat(v); }
  __device__ static S store(float f) { return floatToBf16(f); }
};
struct F16Storage {
  using S = uint16_t;
  __device__ static float load(S v) { return __half2float(__ushort_as_half(v)); }
  __device__ static S store(float f) {
    return __half_as_ushort(__float2half_rn(f));
  }
};

__device__ inline float binaryF32(OpKind kind, float a, float b) {
  switch (kind) {
  case OpKind::Add:
    return a + b;
  case OpKind::Sub:
    return a - b;
  case OpKind::Mul:
    return a * b;
  case OpKind::Div:
    return a / b; // IEEE division: nvcc's default -prec-div=true
  case OpKind::Max: // NaN propagates, as binaryFloat
    return (isnan(a) || a > b) ? a : b;
  default: // Min
    return (isnan(a) || a < b) ? a : b;
  }
}

/// The V operand values of output elements [i0, i0 + V), i0 a multiple of V.
template <typename T, int V>
__device__ inline void loadPack(const Operand &o, int64_t i0, float (&x)[V]) {
  using S = typename T::S;
  const S *p = static_cast<const S *>(o.p);
  if (o.mod == 1) {
    float v = T::load(p[0]);
    for (int k = 0; k < V; ++k)
      x[k] = v;
  } else if (o.vec) {
    uint4 bits = *reinterpret_cast<const uint4 *>(p + operandOffset(o, i0));
    const S *s = reinterpret_cast<const S *>(&bits);
    for (int k = 0; k < V; ++k)
      x[k] = T::load(s[k]);
  } else {
    for (int k = 0; k < V; ++k)
      x[k] = T::load(p[operandOffset(o, i0 + k)]);
  }
}

/// Packs of 16 bytes of output per thread when `vec` (the output is 16-byte
/// aligned), then the tail (n % V elements) one per thread.
template <typename T>
__global__ void binaryF32Kernel(OpKind kind, int64_t n, Operand a, Operand b,
                                typename T::S *out, bool vec) {
  using S = typename T::S;
  constexpr int V = 16 / sizeof(S);
  int64_t start = 0;
  if (vec) {
    int64_t packs = n / V;
    COLOSSAL_GRID_STRIDE(q, packs) {
      int64_t i0 = q * V;
      float x[V], y[V];
      loadPack<T, V>(a, i0, x);
      loadPack<T, V>(b, i0, y);
      uint4 bits;
      S *r = reinterpret_cast<S *>(&bits);
      for (int k = 0; k < V; ++k)
        r[k] = T::store(binaryF32(kind, x[k], y[k]));
      *reinterpret_cast<uint4 *>(out + i0) = bits;
    }
    start = packs * V;
  }
  const S *pa = static_cast<const S *>(a.p), *pb = static_cast<const S *>(b.p);
  for (int64_t i = start + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += int64_t(blockDim.x) * gridDim.x) {
    float x = T::load(pa[operandOffset(a, i)]);
    float y = T::load(pb[operandOffset(b, i)]);
    out[i] = T::store(binaryF32(kind, x, y));
  }
}

/// The general strided walk; `f32Math` as binaryF32.
__global__ void binaryKernel(ErrorSink sink, OpKind kind, DType inType,
                             DType outType, Dims outDims, Dims aStrides,
                             Dims bStrides, int64_t n, const void *a,
                             const void *b, void *out, bool f32Math) {
  bool floats = isFloatType(inType), comparison = isComparison(kind);
  COLOSSAL_GRID_STRIDE(i, n) {
    int64_t ia = stridedOffset(i, outDims, aStrides);
    int64_t ib = stridedOffset(i, outDims, bStrides);
    if (floats) {
      double x = loadF(a, inType, ia), y = loadF(b, inType, ib);
      if (comparison)
        storeI(out, outType, i, compare(kind, x, y) ? 1 : 0);
      else if (f32Math) // x, y are f32/bf16/f16 values: exact in float
        storeF(out, outType, i,
               binaryF32(kind, static_cast<float>(x), static_cast<float>(y)));
      else
        storeF(out, outType, i, binaryFloat(kind, x, y));
    } else {
      int64_t x = loadI(a, inType, ia), y = loadI(b, inType, ib);
      if (comparison) {
        storeI(out, outType, i, compare(kind, x, y) ? 1 : 0);
      } else {
        int32_t error = kErrNone;
        int64_t r = binaryInt(kind, x, y, error);
        if (error != kErrNone)
          reportError(sink, error, 0, 0, 0);
        storeI(out, outType, i, r);
      }
    }
  }
}

__global__ void whereKernel(DType condType, int elemBytes, Dims outDims,
                            Dims cStrides, Dims xStrides, Dims yStrides,
                            int64_t n, const void *cond, const void *x,
                            const void *y, void *out) {
  COLOSSAL_GRID_STRIDE(i, n) {
    bool take = loadI(cond, condType, stridedOffset(i, outDims, cStrides)) != 0;
    if (take)
      copyElement(out, i, x, stridedOffset(i, outDims, xStrides), elemBytes);
    else
      copyElement(out, i, y, stridedOffset(i, outDims, yStrides), elemBytes);
  }
}

// ---- Data movement -------------------------------------------------------

__global__ void stridedCopyKernel(int elemBytes, Dims outDims, Dims inStrides,
                                  int64_t base, int64_t n, const void *in,
                                  void *out) {
  COLOSSAL_GRID_STRIDE(i, n) {
    copyElement(out, i, in, base + stridedOffset(i, outDims, inStrides),
                elemBytes);
  }
}

/// stridedCopyKernel for copies whose indices and offsets fit 32 bits:
/// the index walk in 32-bit divisions, several times cheaper than 64-bit
/// ones on the GPU. Only for merged ranks above kMaxCopyRank now; the
/// others take stridedCopyRankKernel (below).
__global__ void stridedCopy32Kernel(int elemBytes, Dims outDims,
                                    Dims inStrides, uint32_t base, uint32_t n,
                                    const void *in, void *out) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += blockDim.x * gridDim.x) {
    uint32_t flat = i, offset = base;
    for (int d = outDims.rank - 1; d >= 0; --d) {
      uint32_t size = static_cast<uint32_t>(outDims.d[d]);
      offset += (flat % size) * static_cast<uint32_t>(inStrides.d[d]);
      flat /= size;
    }
    copyElement(out, i, in, offset, elemBytes);
  }
}

// The strided copy for a merged rank of at most kMaxCopyRank and an
// element of 1, 2, 4, 8 or 16 bytes, with 32-bit indices (every index and
// offset below 2^31). stridedCopy32Kernel walks a runtime-rank Dims with a
// runtime loop, so the array is indexed at run time and lands in local
// memory, copies through a switch on the width and divides by a runtime
// size per dim: OPT's head transposes ([8, 1024, 32, 64] bf16, 16-byte
// packs after simplifyStridedCopy) ran at a sixth of the bandwidth. Here
// the rank and the element type are template arguments: the walk unrolls
// and reads its constants at fixed offsets of the kernel parameters, each
// division is a multiply-high and a shift, and each thread has
// kCopyIlp loads in flight before it stores.

constexpr int kMaxCopyRank = 6;
constexpr int kCopyIlp = 4;

/// Unsigned division by a divisor fixed at launch as a multiply-high, an
/// add and a shift (Granlund and Montgomery; PyTorch's IntDivider): exact
/// for every dividend below 2^31 (t + n then fits 32 bits), which is all a
/// 32-bit walk divides.
struct FastDivider {
  uint32_t divisor = 1, magic = 1, shift = 0;
};

FastDivider makeDivider(uint32_t divisor) {
  FastDivider f;
  f.divisor = divisor;
  while (f.shift < 32 && (uint64_t{1} << f.shift) < divisor)
    ++f.shift;
  // magic = floor(2^32 (2^shift - d) / d) + 1 < 2^32 for 1 <= d < 2^31.
  uint64_t magic =
      ((uint64_t{1} << 32) * ((uint64_t{1} << f.shift) - divisor)) / divisor +
      1;
  f.magic = static_cast<uint32_t>(magic);
  return f;
}

__device__ inline uint32_t divide(const FastDivider &f, uint32_t n) {
  uint32_t t = __umulhi(n, f.magic);
  return (t + n) >> f.shift;
}

/// The walk of a copy of rank R: the sizes of dims 1 .. R-1 as dividers
/// (dim 0's coordinate is what is left) and every stride, in elements.
template <int R>
struct CopyWalk {
  FastDivider size[R];
  uint32_t stride[R];
};

/// base + sum_d coord_d(i) x stride_d, coordinates row-major over the sizes.
template <int R>
__device__ inline uint32_t walkOffset(const CopyWalk<R> &w, uint32_t base,
                                      uint32_t i) {
  uint32_t offset = base;
#pragma unroll
  for (int d = R - 1; d > 0; --d) {
    uint32_t q = divide(w.size[d], i);
    offset += (i - q * w.size[d].divisor) * w.stride[d];
    i = q;
  }
  return offset + i * w.stride[0];
}

/// out[i] = in[walk(i)] for i < n, T the element (uint8_t .. uint4). A
/// thread takes kCopyIlp elements one grid apart (each warp's stores stay
/// contiguous), loading all before storing any. n < 2^31 and the grid is
/// at most 2^28 threads, so i + kCopyIlp x grid stays below 2^32.
template <int R, typename T>
__global__ void __launch_bounds__(kThreads)
    stridedCopyRankKernel(CopyWalk<R> walk, uint32_t base, uint32_t n,
                          const T *in, T *out) {
  const uint32_t grid = blockDim.x * gridDim.x;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += kCopyIlp * grid) {
    T v[kCopyIlp];
#pragma unroll
    for (int u = 0; u < kCopyIlp; ++u) {
      uint32_t j = i + u * grid;
      if (j < n)
        v[u] = in[walkOffset(walk, base, j)];
    }
#pragma unroll
    for (int u = 0; u < kCopyIlp; ++u) {
      uint32_t j = i + u * grid;
      if (j < n)
        out[j] = v[u];
    }
  }
}

template <int R, typename T>
cudaError_t launchCopyRankAs(cudaStream_t stream, const CopyWalk<R> &walk,
                             uint32_t base, uint32_t n, const void *in,
                             void *out) {
  unsigned blocks = blocksFor((int64_t{n} + kCopyIlp - 1) / kCopyIlp);
  stridedCopyRankKernel<R, T><<<blocks, kThreads, 0, stream>>>(
      walk, base, n, static_cast<const T *>(in), static_cast<T *>(out));
  return cudaGetLastError();
}

/// stridedCopyRankKernel for `dims` of rank R (sizes >= 1 and, as every
/// index and offset, below 2^31) and elements of `elemBytes`.
template <int R>
cudaError_t launchCopyRank(cudaStream_t stream, int elemBytes,
                           const Dims &dims, const Dims &strides, uint32_t base,
                           uint32_t n, const void *in, void *out) {
  CopyWalk<R> walk;
  for (int d = 0; d < R; ++d) {
    walk.size[d] = makeDivider(static_cast<uint32_t>(dims.d[d]));
    walk.stride[d] = static_cast<uint32_t>(strides.d[d]);
  }
  switch (elemBytes) {
  case 1:
    return launchCopyRankAs<R, uint8_t>(stream, walk, base, n, in, out);
  case 2:
    return launchCopyRankAs<R, uint16_t>(stream, walk, base, n, in, out);
  case 4:
    return launchCopyRankAs<R, uint32_t>(stream, walk, base, n, in, out);
  case 8:
    return launchCopyRankAs<R, uint2>(stream, walk, base, n, in, out);
  default: // 16 (the caller passes only these five widths)
    return launchCopyRankAs<R, uint4>(stream, walk, base, n, in, out);
  }
}

__global__ void stridedScatterKernel(int elemBytes, Dims inDims,
                                     Dims outStrides, int64_t base, int64_t n,
                                     const void *in, void *out) {
  COLOSSAL_GRID_STRIDE(i, n) {
    copyElement(out, base + stridedOffset(i, inDims, outStrides), in, i,
                elemBytes);
  }
}

__global__ void concatPartKernel(int elemBytes, int64_t chunk, int64_t rowElems,
                                 int64_t offset, int64_t n, const void *in,
                                 void *out) {
  COLOSSAL_GRID_STRIDE(i, n) {
    int64_t row = i / chunk, col = i % chunk;
    copyElement(out, row * rowElems + offset + col, in, i, elemBytes);
  }
}

__global__ void fillKernel(int elemBytes, int64_t n, uint64_t bits, void *out) {
  COLOSSAL_GRID_STRIDE(i, n) { storeBits(out, i, bits, elemBytes); }
}

__global__ void triluKernel(int elemBytes, int64_t n, int64_t rows,
                            int64_t cols, int64_t k, bool upper, const void *in,
                            void *out) {
  COLOSSAL_GRID_STRIDE(i, n) {
    int64_t col = i % cols, row = (i / cols) % rows;
    // k was clamped to [-rows, cols]: col - row cannot overflow.
    bool keep = upper ? col - row >= k : col - row <= k;
    if (keep)
      copyElement(out, i, in, i, elemBytes);
    else
      storeBits(out, i, 0, elemBytes); // all-zero bytes: 0 in every dtype
  }
}

__global__ void padKernel(int elemBytes, Dims inDims, Dims outDims, Dims pads,
                          int mode, uint64_t valueBits, int64_t n,
                          const void *in, void *out) {
  COLOSSAL_GRID_STRIDE(i, n) {
    int64_t flat = i, offset = 0, stride = 1;
    bool inside = true;
    for (int d = outDims.rank - 1; d >= 0; --d) {
      int64_t o = flat % outDims.d[d];
      flat /= outDims.d[d];
      int64_t dim = inDims.d[d];
      int64_t s = o - pads.d[d];
      if (s < 0 || s >= dim) {
        if (mode == 0)
          inside = false;
        else if (mode == 1) // reflect, edge not repeated (numpy 'reflect')
          s = s < 0 ? -s : 2 * (dim - 1) - s;
        else // edge
          s = s < 0 ? 0 : dim - 1;
      }
      offset += s * stride;
      stride *= dim;
    }
    if (inside)
      copyElement(out, i, in, offset, elemBytes);
    else
      storeBits(out, i, valueBits, elemBytes);
  }
}

// ---- Optimizers ----------------------------------------------------------
//
// As on the CPU: per element, in double from the stored values, rounded
// once per output; each element is read before it is written, so outputs
// may alias their inputs exactly. A negative step writes nothing.

/// adamw_norm's gradient element i: grad widened to f32 and divided by the
/// divisor in one correctly rounded f32 division (what the f32 `div` of the
/// widened gradient stores), and its square added to the thread's sum.
/// A widened gradient element divided (one IEEE f32 division), its
/// square added to sumOfSquares in double.
__device__ inline float divideAndSquare(float widened, float divisor,
                                        double &sumOfSquares) {
  float g = __fdiv_rn(widened, divisor);
  sumOfSquares += static_cast<double>(g) * static_cast<double>(g);
  return g;
}

__device__ inline float scaledGradient(const void *grad, DType gradType,
                                       int64_t i, float divisor,
                                       double &sumOfSquares) {
  float widened = gradType == DType::kF32
                      ? static_cast<const float *>(grad)[i]
                      : static_cast<float>(loadF(grad, gradType, i));
  return divideAndSquare(widened, divisor, sumOfSquares);
}

/// The block's sum of its threads' sums of squares into partials[block]
/// (adamw_norm; a fixed order: deterministic).
__device__ inline void storeBlockSumOfSquares(double sumOfSquares,
                                              double *partials) {
  __shared__ double scratch[32];
  double total = blockSum(sumOfSquares, scratch);
  if (threadIdx.x == 0)
    partials[blockIdx.x] = total;
}

/// adamw_norm's second pass: one block sums the partials in a fixed order
/// into the f32 result.
__global__ void sumPartialsKernel(int blocks, const double *partials,
                                  float *out) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x)
    sum += partials[b];
  double total = blockSum(sum, scratch);
  if (threadIdx.x == 0)
    *out = static_cast<float>(total);
}

/// AdamW in f64 (COLOSSAL_CPU_ADAMW=exact). kScaled (adamw_norm): the
/// gradient is scaledGradient's, rounded to f32 first as the unfused step
/// stored it, and each block writes its sum of squares to `partials`.
template <bool kScaled>
__global__ void adamWKernel(ErrorSink sink, int64_t n, double beta1,
                            double beta2, double eps, double weightDecay,
                            const float *param, DType gradType,
                            const void *grad, const float *m, const float *v,
                            const float *lrPtr, const int64_t *stepPtr,
                            float *paramOut, float *mOut, float *vOut,
                            const float *divisorPtr, double *partials) {
  int64_t step = *stepPtr;
  if (step < 0) {
    if (blockIdx.x == 0 && threadIdx.x == 0)
      reportError(sink, kErrNegativeStep, step, 0, 0);
    return;
  }
  double lr = *lrPtr;
  double t = static_cast<double>(step) + 1.0;
  double correction1 = 1.0 - pow(beta1, t);
  double correction2Sqrt = sqrt(1.0 - pow(beta2, t));
  double stepSize = lr / correction1;
  double decay = 1.0 - lr * weightDecay;
  float divisor = kScaled ? *divisorPtr : 1.0f;
  double sumOfSquares = 0.0;
  COLOSSAL_GRID_STRIDE(i, n) {
    double g = kScaled ? static_cast<double>(scaledGradient(
                             grad, gradType, i, divisor, sumOfSquares))
                       : loadF(grad, gradType, i);
    double pi = param[i], mi = m[i], vi = v[i];
    pi *= decay;
    mi = beta1 * mi + (1.0 - beta1) * g;
    vi = beta2 * vi + (1.0 - beta2) * g * g;
    double denom = sqrt(vi) / correction2Sqrt + eps;
    pi -= stepSize * mi / denom;
    paramOut[i] = static_cast<float>(pi);
    mOut[i] = static_cast<float>(mi);
    vOut[i] = static_cast<float>(vi);
  }
  if (kScaled && partials) // adamw_norm (adamw's divisor: none)
    storeBlockSumOfSquares(sumOfSquares, partials);
}

/// The step's scalars of AdamW in f32, in PyTorch's operation order: the
/// CPU's default ("fast") AdamW (cpu/Kernels.cpp, adamwF32Block) step by
/// step, so the two agree bit for bit (both without contraction:
/// --fmad=false here, -ffp-contract=off there). The scalars are rounded
/// once to f32 from the double expressions PyTorch evaluates in Python;
/// the lerp takes the form ATen picks for its weight (m + w(g - m) for
/// w < 0.5, else g + (w - 1)(g - m)).
struct AdamWF32Step {
  float decay, lerpCoeff, b2, oneMinusB2, c2Sqrt, epsF, negStepSize;
  bool fromM;

  __device__ AdamWF32Step(double lr, int64_t step, double beta1, double beta2,
                          double eps, double weightDecay) {
    double t = static_cast<double>(step) + 1.0;
    double correction1 = 1.0 - pow(beta1, t);
    decay = static_cast<float>(1.0 - lr * weightDecay);
    float w = static_cast<float>(1.0 - beta1);
    fromM = fabsf(w) < 0.5f;
    lerpCoeff = fromM ? w : w - 1.0f;
    b2 = static_cast<float>(beta2);
    oneMinusB2 = static_cast<float>(1.0 - beta2);
    c2Sqrt = static_cast<float>(sqrt(1.0 - pow(beta2, t)));
    epsF = static_cast<float>(eps);
    negStepSize = static_cast<float>(-(lr / correction1));
  }

  /// One element: p, m, v in, updated in place.
  __device__ void update(float g, float &p, float &m, float &v) const {
    float mi = (fromM ? m : g) + lerpCoeff * (g - m);
    float pi = p * decay;
    float vi = v * b2;
    vi = vi + oneMinusB2 * g * g;
    float denom = sqrtf(vi) / c2Sqrt + epsF;
    p = pi + negStepSize * mi / denom;
    m = mi;
    v = vi;
  }
};

/// adamWF32Kernel's gradient element i, divided and squared into
/// sumOfSquares when kScaled.
template <bool kScaled>
__device__ inline float adamWGradient(const void *grad, DType gradType,
                                      int64_t i, float divisor,
                                      double &sumOfSquares) {
  if constexpr (kScaled)
    return scaledGradient(grad, gradType, i, divisor, sumOfSquares);
  return gradType == DType::kF32 ? static_cast<const float *>(grad)[i]
                                 : static_cast<float>(loadF(grad, gradType, i));
}

/// AdamW in f32 (AdamWF32Step). kScaled: adamw_norm, as adamWKernel's.
/// kPacked: every f32 operand 16-byte aligned and the gradient (f32 or
/// bf16) aligned to 4 of its elements; each thread then takes 4 adjacent
/// elements at a time in 16-byte (gradient: 8 or 16-byte) accesses, four
/// times the bytes in flight of one element a thread, and the n % 4 last
/// elements go one each to the first threads. The arithmetic per element
/// is the same either way; only the order of a thread's sum of squares
/// differs (deterministic: fixed by n and the block count).
template <bool kScaled, bool kPacked>
__global__ void adamWF32Kernel(ErrorSink sink, int64_t n, double beta1,
                               double beta2, double eps, double weightDecay,
                               const float *param, DType gradType,
                               const void *grad, const float *m,
                               const float *v, const float *lrPtr,
                               const int64_t *stepPtr, float *paramOut,
                               float *mOut, float *vOut,
                               const float *divisorPtr, double *partials) {
  int64_t step = *stepPtr;
  if (step < 0) {
    if (blockIdx.x == 0 && threadIdx.x == 0)
      reportError(sink, kErrNegativeStep, step, 0, 0);
    return;
  }
  const AdamWF32Step s(*lrPtr, step, beta1, beta2, eps, weightDecay);
  float divisor = kScaled ? *divisorPtr : 1.0f;
  double sumOfSquares = 0.0;
  // One element, from and to memory (the scalar form, and the packed
  // form's tail).
  auto updateOne = [&](int64_t i) {
    float g = adamWGradient<kScaled>(grad, gradType, i, divisor, sumOfSquares);
    float pi = param[i], mi = m[i], vi = v[i];
    s.update(g, pi, mi, vi);
    paramOut[i] = pi, mOut[i] = mi, vOut[i] = vi;
  };
  if constexpr (kPacked) {
    const int64_t quads = n / 4;
    COLOSSAL_GRID_STRIDE(q, quads) {
      float4 p4 = reinterpret_cast<const float4 *>(param)[q];
      float4 m4 = reinterpret_cast<const float4 *>(m)[q];
      float4 v4 = reinterpret_cast<const float4 *>(v)[q];
      float g[4];
      if (gradType == DType::kF32) {
        float4 g4 = reinterpret_cast<const float4 *>(grad)[q];
        g[0] = g4.x, g[1] = g4.y, g[2] = g4.z, g[3] = g4.w;
      } else { // bf16
        uint2 bits = reinterpret_cast<const uint2 *>(grad)[q];
        g[0] = __uint_as_float(bits.x << 16);
        g[1] = __uint_as_float(bits.x & 0xffff0000u);
        g[2] = __uint_as_float(bits.y << 16);
        g[3] = __uint_as_float(bits.y & 0xffff0000u);
      }
      if constexpr (kScaled)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          g[e] = divideAndSquare(g[e], divisor, sumOfSquares);
      s.update(g[0], p4.x, m4.x, v4.x);
      s.update(g[1], p4.y, m4.y, v4.y);
      s.update(g[2], p4.z, m4.z, v4.z);
      s.update(g[3], p4.w, m4.w, v4.w);
      reinterpret_cast<float4 *>(paramOut)[q] = p4;
      reinterpret_cast<float4 *>(mOut)[q] = m4;
      reinterpret_cast<float4 *>(vOut)[q] = v4;
    }
    // The tail: element 4 quads + k to global thread k.
    int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (4 * quads + k < n)
      updateOne(4 * quads + k);
  } else {
    COLOSSAL_GRID_STRIDE(i, n) { updateOne(i); }
  }
  if (kScaled && partials) // adamw_norm (adamw's divisor: none)
    storeBlockSumOfSquares(sumOfSquares, partials);
}

__global__ void sgdKernel(ErrorSink sink, int64_t n, double momentum,
                          double dampening, double weightDecay, bool nesterov,
                          const float *param, DType gradType, const void *grad,
                          const float *buf, const float *lrPtr,
                          const int64_t *stepPtr, float *paramOut,
                          float *bufOut) {
  int64_t step = *stepPtr;
  if (step < 0) {
    if (blockIdx.x == 0 && threadIdx.x == 0)
      reportError(sink, kErrNegativeStep, step, 0, 0);
    return;
  }
  double lr = *lrPtr;
  COLOSSAL_GRID_STRIDE(i, n) {
    double g = loadF(grad, gradType, i);
    double pi = param[i], bi = buf[i];
    g += weightDecay * pi;
    if (momentum != 0.0) {
      // PyTorch starts the buffer as a copy of the first gradient.
      bi = step == 0 ? g : momentum * bi + (1.0 - dampening) * g;
      g = nesterov ? g + momentum * bi : bi;
    }
    pi -= lr * g;
    paramOut[i] = static_cast<float>(pi);
    bufOut[i] = static_cast<float>(bi);
  }
}

} // namespace

cudaError_t launchUnary(cudaStream_t stream, OpKind kind, bool tanhGelu,
                        DType inType, DType outType, int64_t n, const void *in,
                        void *out) {
  if (n == 0)
    return cudaSuccess;
  unaryKernel<<<blocksFor(n), kThreads, 0, stream>>>(kind, tanhGelu, inType,
                                                     outType, n, in, out);
  return cudaGetLastError();
}

cudaError_t launchCast(cudaStream_t stream, DType inType, DType outType,
                       int64_t n, const void *in, void *out) {
  if (n == 0)
    return cudaSuccess;
  auto floatCast = [&](auto inTag, auto outTag) {
    using In = decltype(inTag);
    using Out = decltype(outTag);
    auto aligned = [](const void *p) {
      return reinterpret_cast<uintptr_t>(p) % 16 == 0;
    };
    if (aligned(in) && aligned(out))
      castFloatPackKernel<In, Out><<<blocksFor(n / 8), kThreads, 0, stream>>>(
          n, static_cast<const typename In::S *>(in),
          static_cast<typename Out::S *>(out));
    else // a slice at an odd offset: one element a thread
      castFloatKernel<In, Out><<<blocksFor(n), kThreads, 0, stream>>>(
          n, static_cast<const typename In::S *>(in),
          static_cast<typename Out::S *>(out));
    return cudaGetLastError();
  };
  auto withOut = [&](auto inTag) -> cudaError_t {
    switch (outType) {
    case DType::kF32:
      return floatCast(inTag, F32Storage());
    case DType::kBF16:
      return floatCast(inTag, BF16Storage());
    default:
      return floatCast(inTag, F16Storage());
    }
  };
  auto narrow = [](DType t) {
    return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
  };
  if (narrow(inType) && narrow(outType)) {
    switch (inType) {
    case DType::kF32:
      return withOut(F32Storage());
    case DType::kBF16:
      return withOut(BF16Storage());
    default:
      return withOut(F16Storage());
    }
  }
  castKernel<<<blocksFor(n), kThreads, 0, stream>>>(inType, outType, n, in,
                                                    out);
  return cudaGetLastError();
}

namespace {

/// True when add/sub/mul/div/max/min may compute in f32 (see binaryF32).
bool f32Binary(OpKind kind, DType inType, DType outType) {
  bool narrow =
      inType == DType::kF32 || inType == DType::kBF16 || inType == DType::kF16;
  bool exactOp = kind == OpKind::Add || kind == OpKind::Sub ||
                 kind == OpKind::Mul || kind == OpKind::Div ||
                 kind == OpKind::Max || kind == OpKind::Min;
  return narrow && exactOp && outType == inType;
}

/// Describes `strides` over `dims` as (i / div) % mod when it is one run of
/// row-major contiguous dims [lo, hi) with every other dim broadcast (stride
/// 0; dims of size 1 are ignored): the identity, a [N] or [M, 1] operand
/// against [M, N], a scalar. False for anything else (a transpose, a
/// broadcast in the middle of the operand).
bool describeOperand(const Dims &dims, const Dims &strides, const void *p,
                     int pack, Operand &o) {
  int64_t div = 1, mod = 1, expected = 1;
  int d = dims.rank - 1;
  for (; d >= 0 && (dims.d[d] == 1 || strides.d[d] == 0); --d)
    div *= dims.d[d]; // trailing broadcast dims
  for (; d >= 0 && (dims.d[d] == 1 || strides.d[d] == expected); --d) {
    expected *= dims.d[d];
    mod *= dims.d[d];
  }
  bool leadingBroadcast = false;
  for (; d >= 0; --d) {
    if (dims.d[d] != 1 && strides.d[d] != 0)
      return false;
    leadingBroadcast = leadingBroadcast || dims.d[d] != 1;
  }
  o.p = p;
  o.div = mod == 1 ? 1 : div;
  o.mod = mod == 1 ? 1 : (leadingBroadcast ? mod : 0);
  o.vec = o.div == 1 && (o.mod == 0 || o.mod % pack == 0) &&
          reinterpret_cast<uintptr_t>(p) % 16 == 0;
  return true;
}

template <typename T>
cudaError_t launchBinaryF32(cudaStream_t stream, OpKind kind, int64_t n,
                            const Operand &a, const Operand &b, void *out) {
  bool vec = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  int pack = static_cast<int>(16 / sizeof(typename T::S));
  binaryF32Kernel<T><<<blocksFor(vec ? (n + pack - 1) / pack : n), kThreads, 0,
                       stream>>>(kind, n, a, b,
                                 static_cast<typename T::S *>(out), vec);
  return cudaGetLastError();
}

} // namespace

cudaError_t launchBinary(cudaStream_t stream, ErrorSink sink, OpKind kind,
                         DType inType, DType outType, const Dims &outDims,
                         const Dims &aStrides, const Dims &bStrides,
                         const void *a, const void *b, void *out) {
  int64_t n = elementCount(outDims);
  if (n == 0)
    return cudaSuccess;
  if (f32Binary(kind, inType, outType)) {
    int pack = 16 / elementBytes(inType);
    Operand oa, ob;
    if (describeOperand(outDims, aStrides, a, pack, oa) &&
        describeOperand(outDims, bStrides, b, pack, ob)) {
      if (inType == DType::kF32)
        return launchBinaryF32<F32Storage>(stream, kind, n, oa, ob, out);
      if (inType == DType::kBF16)
        return launchBinaryF32<BF16Storage>(stream, kind, n, oa, ob, out);
      return launchBinaryF32<F16Storage>(stream, kind, n, oa, ob, out);
    }
  }
  binaryKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      sink, kind, inType, outType, outDims, aStrides, bStrides, n, a, b, out,
      f32Binary(kind, inType, outType));
  return cudaGetLastError();
}

cudaError_t launchWhere(cudaStream_t stream, DType condType, int elemBytes,
                        const Dims &outDims, const Dims &condStrides,
                        const Dims &xStrides, const Dims &yStrides,
                        const void *cond, const void *x, const void *y,
                        void *out) {
  int64_t n = elementCount(outDims);
  if (n == 0)
    return cudaSuccess;
  whereKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      condType, elemBytes, outDims, condStrides, xStrides, yStrides, n, cond, x,
      y, out);
  return cudaGetLastError();
}

/// The same copy with fewer, wider elements: size-1 dims dropped, adjacent
/// dims merged where the input walks them contiguously (stride[d] ==
/// stride[d + 1] x dims[d + 1]), and a unit-stride innermost run moved in
/// the widest unit of 16, 8, 4 or 2 bytes that divides it, every stride,
/// the base and both addresses. A transpose (0, 2, 1, 3) of [8, 1024, 12,
/// 64] bf16 becomes a rank-3 walk of 16-byte packs, eight per row of 64.
void simplifyStridedCopy(int &elemBytes, Dims &dims, Dims &strides,
                         int64_t &base, const void *in, const void *out) {
  Dims d2, s2;
  for (int d = 0; d < dims.rank; ++d) {
    if (dims.d[d] == 1)
      continue;
    if (d2.rank > 0 &&
        s2.d[d2.rank - 1] == strides.d[d] * dims.d[d]) {
      d2.d[d2.rank - 1] *= dims.d[d];
      s2.d[d2.rank - 1] = strides.d[d];
      continue;
    }
    d2.d[d2.rank] = dims.d[d];
    s2.d[d2.rank] = strides.d[d];
    ++d2.rank;
  }
  if (d2.rank == 0) { // a single element
    d2.rank = 1;
    d2.d[0] = 1;
    s2.d[0] = 1;
  }
  dims = d2;
  strides = s2;
  int last = dims.rank - 1;
  if (strides.d[last] != 1)
    return;
  for (int width = 16; width > elemBytes; width /= 2) {
    int64_t k = width / elemBytes;
    bool fits = dims.d[last] % k == 0 && base % k == 0 &&
                reinterpret_cast<uintptr_t>(in) % width == 0 &&
                reinterpret_cast<uintptr_t>(out) % width == 0;
    for (int d = 0; fits && d < last; ++d)
      fits = strides.d[d] % k == 0;
    if (!fits)
      continue;
    dims.d[last] /= k;
    for (int d = 0; d < last; ++d)
      strides.d[d] /= k;
    base /= k;
    elemBytes = width;
    return;
  }
}

cudaError_t launchStridedCopy(cudaStream_t stream, int elemBytes,
                              const Dims &outDims, const Dims &inStrides,
                              int64_t base, const void *in, void *out) {
  int64_t n = elementCount(outDims);
  if (n == 0)
    return cudaSuccess;
  Dims dims = outDims, strides = inStrides;
  simplifyStridedCopy(elemBytes, dims, strides, base, in, out);
  n = elementCount(dims);
  // The furthest element read: base + sum (dims - 1) x stride (strides are
  // >= 0 here except a slice's negative steps, which take the 64-bit walk).
  bool small = n < (int64_t{1} << 31) && base >= 0;
  int64_t reach = base;
  for (int d = 0; small && d < dims.rank; ++d) {
    small = strides.d[d] >= 0;
    reach += (dims.d[d] - 1) * strides.d[d];
  }
  if (small && reach < (int64_t{1} << 31)) {
    const uint32_t base32 = static_cast<uint32_t>(base),
                   n32 = static_cast<uint32_t>(n);
    const bool width = elemBytes == 1 || elemBytes == 2 || elemBytes == 4 ||
                       elemBytes == 8 || elemBytes == 16;
    if (width && dims.rank <= kMaxCopyRank) {
      switch (dims.rank) {
      case 1:
        return launchCopyRank<1>(stream, elemBytes, dims, strides, base32, n32,
                                 in, out);
      case 2:
        return launchCopyRank<2>(stream, elemBytes, dims, strides, base32, n32,
                                 in, out);
      case 3:
        return launchCopyRank<3>(stream, elemBytes, dims, strides, base32, n32,
                                 in, out);
      case 4:
        return launchCopyRank<4>(stream, elemBytes, dims, strides, base32, n32,
                                 in, out);
      case 5:
        return launchCopyRank<5>(stream, elemBytes, dims, strides, base32, n32,
                                 in, out);
      default:
        return launchCopyRank<6>(stream, elemBytes, dims, strides, base32, n32,
                                 in, out);
      }
    }
    stridedCopy32Kernel<<<blocksFor(n), kThreads, 0, stream>>>(
        elemBytes, dims, strides, static_cast<uint32_t>(base),
        static_cast<uint32_t>(n), in, out);
    return cudaGetLastError();
  }
  stridedCopyKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      elemBytes, dims, strides, base, n, in, out);
  return cudaGetLastError();
}

cudaError_t launchStridedScatter(cudaStream_t stream, int elemBytes,
                                 const Dims &inDims, const Dims &outStrides,
                                 int64_t base, const void *in, void *out) {
  int64_t n = elementCount(inDims);
  if (n == 0)
    return cudaSuccess;
  stridedScatterKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      elemBytes, inDims, outStrides, base, n, in, out);
  return cudaGetLastError();
}

cudaError_t launchConcatPart(cudaStream_t stream, int elemBytes, int64_t outer,
                             int64_t chunk, int64_t rowElems, int64_t offset,
                             const void *in, void *out) {
  int64_t n = outer * chunk;
  if (n == 0)
    return cudaSuccess;
  concatPartKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      elemBytes, chunk, rowElems, offset, n, in, out);
  return cudaGetLastError();
}

cudaError_t launchFill(cudaStream_t stream, int elemBytes, int64_t n,
                       uint64_t valueBits, void *out) {
  if (n == 0)
    return cudaSuccess;
  fillKernel<<<blocksFor(n), kThreads, 0, stream>>>(elemBytes, n, valueBits,
                                                    out);
  return cudaGetLastError();
}

cudaError_t launchTrilu(cudaStream_t stream, int elemBytes, int64_t n,
                        int64_t rows, int64_t cols, int64_t k, bool upper,
                        const void *in, void *out) {
  if (n == 0 || rows == 0 || cols == 0)
    return cudaSuccess;
  triluKernel<<<blocksFor(n), kThreads, 0, stream>>>(elemBytes, n, rows, cols,
                                                     k, upper, in, out);
  return cudaGetLastError();
}

cudaError_t launchPad(cudaStream_t stream, int elemBytes, const Dims &inDims,
                      const Dims &outDims, const Dims &pads, int mode,
                      uint64_t valueBits, const void *in, void *out) {
  int64_t n = elementCount(outDims);
  if (n == 0)
    return cudaSuccess;
  padKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      elemBytes, inDims, outDims, pads, mode, valueBits, n, in, out);
  return cudaGetLastError();
}

namespace {

/// adamWF32Kernel, packed (kPacked) where every operand is aligned for it:
/// then a block per 1024 elements, else per 256, at most maxBlocks
/// (reported in *launched). With a divisor the kScaled kernel; partials
/// (adamw_norm's) may be null.
cudaError_t launchAdamWF32(cudaStream_t stream, ErrorSink sink, int64_t n,
                           double beta1, double beta2, double eps,
                           double weightDecay, const float *param,
                           DType gradType, const void *grad, const float *m,
                           const float *v, const float *lr,
                           const int64_t *step, float *paramOut, float *mOut,
                           float *vOut, const float *divisor,
                           double *partials, unsigned maxBlocks,
                           unsigned *launched = nullptr) {
  auto aligned = [](const void *p, size_t bytes) {
    return reinterpret_cast<uintptr_t>(p) % bytes == 0;
  };
  bool packed = aligned(param, 16) && aligned(m, 16) && aligned(v, 16) &&
                aligned(paramOut, 16) && aligned(mOut, 16) &&
                aligned(vOut, 16) &&
                aligned(grad, gradType == DType::kF32 ? 16 : 8);
  unsigned blocks = blocksFor(packed ? (n + 3) / 4 : n);
  blocks = blocks < maxBlocks ? blocks : maxBlocks;
  if (launched)
    *launched = blocks;
  auto go = [&](auto kernel) {
    kernel<<<blocks, kThreads, 0, stream>>>(sink, n, beta1, beta2, eps,
                                            weightDecay, param, gradType, grad,
                                            m, v, lr, step, paramOut, mOut,
                                            vOut, divisor, partials);
    return cudaGetLastError();
  };
  if (divisor)
    return packed ? go(adamWF32Kernel<true, true>)
                  : go(adamWF32Kernel<true, false>);
  return packed ? go(adamWF32Kernel<false, true>)
                : go(adamWF32Kernel<false, false>);
}

} // namespace

cudaError_t launchAdamW(cudaStream_t stream, ErrorSink sink, int64_t n,
                        double beta1, double beta2, double eps,
                        double weightDecay, const float *param, DType gradType,
                        const void *grad, const float *m, const float *v,
                        const float *lr, const int64_t *step, float *paramOut,
                        float *mOut, float *vOut, bool exact,
                        const float *divisor) {
  // Launched even when n == 0: a negative step is an error either way.
  // f32 and bf16 gradients take the f32 kernel unless `exact`.
  // Each thread derives the step's scalars (two f64 pows) before its
  // elements: at most 2048 blocks, so that is paid once per several
  // elements, not once per element.
  // With a divisor (adamw's optional operand), the kScaled kernels with no
  // sum of squares.
  bool f32 = !exact && (gradType == DType::kF32 || gradType == DType::kBF16);
  if (f32)
    return launchAdamWF32(stream, sink, n, beta1, beta2, eps, weightDecay,
                          param, gradType, grad, m, v, lr, step, paramOut,
                          mOut, vOut, divisor, nullptr, 2048);
  unsigned blocks = blocksFor(n) < 2048u ? blocksFor(n) : 2048u;
  if (divisor)
    adamWKernel<true><<<blocks, kThreads, 0, stream>>>(
        sink, n, beta1, beta2, eps, weightDecay, param, gradType, grad, m, v,
        lr, step, paramOut, mOut, vOut, divisor, nullptr);
  else
    adamWKernel<false><<<blocks, kThreads, 0, stream>>>(
        sink, n, beta1, beta2, eps, weightDecay, param, gradType, grad, m, v,
        lr, step, paramOut, mOut, vOut, nullptr, nullptr);
  return cudaGetLastError();
}

size_t adamWNormScratchBytes() { return kAdamWNormBlocks * sizeof(double); }

cudaError_t launchAdamWNorm(cudaStream_t stream, ErrorSink sink, int64_t n,
                            double beta1, double beta2, double eps,
                            double weightDecay, const float *param,
                            DType gradType, const void *grad, const float *m,
                            const float *v, const float *lr,
                            const int64_t *step, const float *divisor,
                            float *paramOut, float *mOut, float *vOut,
                            float *sumOfSquares, double *scratch, bool exact) {
  // As launchAdamW, with the block count fixed by n alone (the partials'
  // order, so the sum, does not depend on anything else).
  unsigned blocks;
  if (!exact && (gradType == DType::kF32 || gradType == DType::kBF16)) {
    cudaError_t err = launchAdamWF32(
        stream, sink, n, beta1, beta2, eps, weightDecay, param, gradType,
        grad, m, v, lr, step, paramOut, mOut, vOut, divisor, scratch,
        unsigned(kAdamWNormBlocks), &blocks);
    if (err != cudaSuccess)
      return err;
  } else {
    blocks = blocksFor(n) < unsigned(kAdamWNormBlocks)
                 ? blocksFor(n)
                 : unsigned(kAdamWNormBlocks);
    adamWKernel<true><<<blocks, kThreads, 0, stream>>>(
        sink, n, beta1, beta2, eps, weightDecay, param, gradType, grad, m, v,
        lr, step, paramOut, mOut, vOut, divisor, scratch);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return err;
  sumPartialsKernel<<<1, kThreads, 0, stream>>>(static_cast<int>(blocks),
                                                scratch, sumOfSquares);
  return cudaGetLastError();
}

cudaError_t launchSgd(cudaStream_t stream, ErrorSink sink, int64_t n,
                      double momentum, double dampening, double weightDecay,
                      bool nesterov, const float *param, DType gradType,
                      const void *grad, const float *buf, const float *lr,
                      const int64_t *step, float *paramOut, float *bufOut) {
  sgdKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      sink, n, momentum, dampening, weightDecay, nesterov, param, gradType,
      grad, buf, lr, step, paramOut, bufOut);
  return cudaGetLastError();
}

} // namespace colossal::runtime::cuda
