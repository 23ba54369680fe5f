//===- ElementwiseDevice.cuh - Per-element device functions -*- CUDA -*-===//
//
// The per-element math of the elementwise ops, one definition for the
// kernels of Elementwise.cu (one op per launch) and the interpreters of
// FusedElementwise.cu (a program of ops per element), so that a fused op
// computes exactly what the same op alone computes. Floats in f64 (as the
// CPU reference; the target builds with --fmad=false), integers and bools
// in int64 with two's-complement wrap-around. The float functions are
// templates: float instantiations serve the f32 fused interpreter and the
// packed kernel (the default; COLOSSAL_CUDA_FUSED=f64 selects the f64 one).
//
// Errors (integer division by zero, 0 to a negative power) are returned
// through `error` as a kErr* code; the caller reports them.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CUDA_ELEMENTWISEDEVICE_CUH
#define COLOSSAL_RUNTIME_CUDA_ELEMENTWISEDEVICE_CUH

#include "CudaCommon.cuh"

namespace colossal::runtime::cuda {

// ---- Unary ---------------------------------------------------------------

/// GELU, exact (erf) or the tanh approximation, in f64 (the CPU's
/// formula) and in f32 (constants as f32 literals).
__device__ inline double gelu(bool tanhGelu, double x) {
  if (tanhGelu) {
    const double kPi = 3.14159265358979323846;
    const double kSqrt2OverPi = sqrt(2.0 / kPi);
    return 0.5 * x * (1.0 + tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
  }
  return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

__device__ inline float gelu(bool tanhGelu, float x) {
  if (tanhGelu) {
    const float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * x *
           (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
  }
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

/// T = double: the f64 kernels. T = float: the f32 fused
/// interpreter on f32/bf16/f16 values (CUDA's float overloads of exp, log,
/// ... are expf, logf, ...: correctly rounded + - * / sqrt, <= 2 ulps for
/// the rest).
template <typename T>
__device__ inline T unaryFloat(OpKind kind, bool tanhGelu, T x) {
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
    return T(1) / sqrt(x);
  case OpKind::Reciprocal:
    return T(1) / x;
  case OpKind::Tanh:
    return tanh(x);
  case OpKind::Sigmoid:
    return T(1) / (T(1) + exp(-x));
  case OpKind::Relu:
    return x < T(0) ? T(0) : x;
  case OpKind::Erf:
    return erf(x);
  case OpKind::Sin:
    return sin(x);
  case OpKind::Cos:
    return cos(x);
  case OpKind::Gelu:
    return gelu(tanhGelu, x);
  default:
    return x;
  }
}

__device__ inline int64_t wrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) -
                              static_cast<uint64_t>(b));
}

__device__ inline int64_t unaryInt(OpKind kind, int64_t x) {
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

// ---- Binary --------------------------------------------------------------

__device__ inline bool isComparison(OpKind kind) {
  return kind == OpKind::Equal || kind == OpKind::Less ||
         kind == OpKind::LessEqual || kind == OpKind::Greater ||
         kind == OpKind::GreaterEqual;
}

template <typename T> __device__ inline bool compare(OpKind kind, T a, T b) {
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

/// T = double or float, as unaryFloat.
template <typename T> __device__ inline T binaryFloat(OpKind kind, T a, T b) {
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
    return T(0);
  }
}

__device__ inline int64_t integerPow(int64_t base, int64_t exponent,
                                     int32_t &error) {
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

__device__ inline int64_t binaryInt(OpKind kind, int64_t a, int64_t b,
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

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_ELEMENTWISEDEVICE_CUH
