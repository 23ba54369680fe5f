//===- Elementwise.cu - Elementwise, data movement and optimizer kernels --===//
//
// One thread per output element (grid-stride). Broadcasting and every layout
// change (expand, transpose, slice) go through one strided index walk
// (stridedOffset): simple, not yet vectorised or tiled.
//
//===----------------------------------------------------------------------===//

#include "CudaCommon.cuh"

namespace colossal::runtime::cuda {

namespace {

// ---- Unary ---------------------------------------------------------------

__device__ double unaryFloat(OpKind kind, bool tanhGelu, double x) {
  switch (kind) {
  case OpKind::Neg:
    return -x;
  case OpKind::Abs:
    return fabs(x);
  case OpKind::Exp:
    return exp(x);
  case OpKind::Log:
    return log(x);
  case OpKind::Sqrt:
    return sqrt(x);
  case OpKind::Rsqrt:
    return 1.0 / sqrt(x);
  case OpKind::Reciprocal:
    return 1.0 / x;
  case OpKind::Tanh:
    return tanh(x);
  case OpKind::Sigmoid:
    return 1.0 / (1.0 + exp(-x));
  case OpKind::Relu:
    return x < 0.0 ? 0.0 : x;
  case OpKind::Erf:
    return erf(x);
  case OpKind::Sin:
    return sin(x);
  case OpKind::Cos:
    return cos(x);
  case OpKind::Gelu:
    if (tanhGelu) {
      const double kPi = 3.14159265358979323846;
      const double kSqrt2OverPi = sqrt(2.0 / kPi);
      return 0.5 * x * (1.0 + tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
    }
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  default:
    return x;
  }
}

__device__ int64_t wrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) -
                              static_cast<uint64_t>(b));
}

__device__ int64_t unaryInt(OpKind kind, int64_t x) {
  switch (kind) {
  case OpKind::Neg:
    return wrapSub(0, x);
  case OpKind::Abs:
    return x < 0 ? wrapSub(0, x) : x;
  case OpKind::Relu:
    return x < 0 ? 0 : x;
  case OpKind::Not:
    return x == 0 ? 1 : 0;
  default:
    return x;
  }
}

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

__device__ bool isComparison(OpKind kind) {
  return kind == OpKind::Equal || kind == OpKind::Less ||
         kind == OpKind::LessEqual || kind == OpKind::Greater ||
         kind == OpKind::GreaterEqual;
}

template <typename T> __device__ bool compare(OpKind kind, T a, T b) {
  switch (kind) {
  case OpKind::Equal:
    return a == b;
  case OpKind::Less:
    return a < b;
  case OpKind::LessEqual:
    return a <= b;
  case OpKind::Greater:
    return a > b;
  default:
    return a >= b;
  }
}

__device__ double binaryFloat(OpKind kind, double a, double b) {
  switch (kind) {
  case OpKind::Add:
    return a + b;
  case OpKind::Sub:
    return a - b;
  case OpKind::Mul:
    return a * b;
  case OpKind::Div:
    return a / b;
  case OpKind::Pow:
    return pow(a, b);
  case OpKind::Max: // NaN propagates, as in numpy.maximum and PyTorch
    return (isnan(a) || a > b) ? a : b;
  case OpKind::Min:
    return (isnan(a) || a < b) ? a : b;
  default:
    return 0.0;
  }
}

__device__ int64_t integerPow(int64_t base, int64_t exponent, int32_t &error) {
  if (exponent < 0) {
    if (base == 0)
      error = kErrPowZeroNegative;
    if (base == 1)
      return 1;
    if (base == -1)
      return (exponent & 1) ? -1 : 1;
    return 0;
  }
  uint64_t result = 1, factor = static_cast<uint64_t>(base);
  for (uint64_t e = static_cast<uint64_t>(exponent); e; e >>= 1) {
    if (e & 1)
      result *= factor;
    factor *= factor;
  }
  return static_cast<int64_t>(result);
}

__device__ int64_t binaryInt(OpKind kind, int64_t a, int64_t b,
                             int32_t &error) {
  uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
  switch (kind) {
  case OpKind::Add:
    return static_cast<int64_t>(ua + ub);
  case OpKind::Sub:
    return static_cast<int64_t>(ua - ub);
  case OpKind::Mul:
    return static_cast<int64_t>(ua * ub);
  case OpKind::Div:
    if (b == 0) {
      error = kErrDivByZero;
      return 0;
    }
    if (b == -1)
      return wrapSub(0, a);
    return a / b;
  case OpKind::Pow:
    return integerPow(a, b, error);
  case OpKind::Max:
    return a > b ? a : b;
  case OpKind::Min:
    return a < b ? a : b;
  case OpKind::And:
    return (a != 0) && (b != 0);
  case OpKind::Or:
    return (a != 0) || (b != 0);
  case OpKind::Xor:
    return (a != 0) != (b != 0);
  default:
    return 0;
  }
}

__global__ void binaryKernel(ErrorSink sink, OpKind kind, DType inType,
                             DType outType, Dims outDims, Dims aStrides,
                             Dims bStrides, int64_t n, const void *a,
                             const void *b, void *out) {
  bool floats = isFloatType(inType), comparison = isComparison(kind);
  COLOSSAL_GRID_STRIDE(i, n) {
    int64_t ia = stridedOffset(i, outDims, aStrides);
    int64_t ib = stridedOffset(i, outDims, bStrides);
    if (floats) {
      double x = loadF(a, inType, ia), y = loadF(b, inType, ib);
      if (comparison)
        storeI(out, outType, i, compare(kind, x, y) ? 1 : 0);
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

__global__ void adamWKernel(ErrorSink sink, int64_t n, double beta1,
                            double beta2, double eps, double weightDecay,
                            const float *param, DType gradType,
                            const void *grad, const float *m, const float *v,
                            const float *lrPtr, const int64_t *stepPtr,
                            float *paramOut, float *mOut, float *vOut) {
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
  COLOSSAL_GRID_STRIDE(i, n) {
    double g = loadF(grad, gradType, i);
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

int64_t product(const Dims &dims) {
  int64_t n = 1;
  for (int d = 0; d < dims.rank; ++d)
    n *= dims.d[d];
  return n;
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
  castKernel<<<blocksFor(n), kThreads, 0, stream>>>(inType, outType, n, in,
                                                    out);
  return cudaGetLastError();
}

cudaError_t launchBinary(cudaStream_t stream, ErrorSink sink, OpKind kind,
                         DType inType, DType outType, const Dims &outDims,
                         const Dims &aStrides, const Dims &bStrides,
                         const void *a, const void *b, void *out) {
  int64_t n = product(outDims);
  if (n == 0)
    return cudaSuccess;
  binaryKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      sink, kind, inType, outType, outDims, aStrides, bStrides, n, a, b, out);
  return cudaGetLastError();
}

cudaError_t launchWhere(cudaStream_t stream, DType condType, int elemBytes,
                        const Dims &outDims, const Dims &condStrides,
                        const Dims &xStrides, const Dims &yStrides,
                        const void *cond, const void *x, const void *y,
                        void *out) {
  int64_t n = product(outDims);
  if (n == 0)
    return cudaSuccess;
  whereKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      condType, elemBytes, outDims, condStrides, xStrides, yStrides, n, cond, x,
      y, out);
  return cudaGetLastError();
}

cudaError_t launchStridedCopy(cudaStream_t stream, int elemBytes,
                              const Dims &outDims, const Dims &inStrides,
                              int64_t base, const void *in, void *out) {
  int64_t n = product(outDims);
  if (n == 0)
    return cudaSuccess;
  stridedCopyKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      elemBytes, outDims, inStrides, base, n, in, out);
  return cudaGetLastError();
}

cudaError_t launchStridedScatter(cudaStream_t stream, int elemBytes,
                                 const Dims &inDims, const Dims &outStrides,
                                 int64_t base, const void *in, void *out) {
  int64_t n = product(inDims);
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
  int64_t n = product(outDims);
  if (n == 0)
    return cudaSuccess;
  padKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      elemBytes, inDims, outDims, pads, mode, valueBits, n, in, out);
  return cudaGetLastError();
}

cudaError_t launchAdamW(cudaStream_t stream, ErrorSink sink, int64_t n,
                        double beta1, double beta2, double eps,
                        double weightDecay, const float *param, DType gradType,
                        const void *grad, const float *m, const float *v,
                        const float *lr, const int64_t *step, float *paramOut,
                        float *mOut, float *vOut) {
  // Launched even when n == 0: a negative step is an error either way.
  adamWKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      sink, n, beta1, beta2, eps, weightDecay, param, gradType, grad, m, v, lr,
      step, paramOut, mOut, vOut);
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
