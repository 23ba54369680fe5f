//===- Kernels.cpp - Exact CPU kernels for every OpKind -------------------===//
//
// The numerical reference. Float ops load every element as a double, compute
// in double and round once when storing (so f32, f16, bf16 and f64 all get a
// correctly rounded result of the double computation); integer ops compute in
// int64 with two's-complement wrap-around and wrap again when stored to a
// narrower type. Reductions, matmul, softmax, layer_norm and the loss
// accumulate in double, in a fixed order, so that results are deterministic.
// One exception: AdamW with an f32 or bf16 gradient computes in f32 by
// default, in PyTorch's own operation order (COLOSSAL_CPU_ADAMW=exact gives
// the f64 kernel back): it is the host update of offloaded training, bound
// by memory bandwidth, and PyTorch's AdamW, which the tests compare with, is
// f32 itself.
//
// Kernels trust that the types passed the rules of inferOutputTypes() (the
// plan reader and evaluateOp check that once); they re-check only what
// depends on data: gather indices, labels, integer division by zero, the
// optimizer step.
//
// Cost: most kernels are simple loops that widen their inputs into a vector
// of doubles or int64s first (8 bytes per element, simple and aliasing-safe).
// matmul packs both operands into row-major double matrices and runs an
// i-k-j loop, which the compiler vectorises; it is the only tuned kernel.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Kernels.h"

#include "Attention.h"
#include "ElementwiseOps.h"
#include "FusedElementwise.h"
#include "../Strides.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <cstring>
#include <limits>

namespace colossal::runtime {

namespace {

using Dims = std::vector<int64_t>;

Status kernelError(const Attrs &attrs, const std::string &message) {
  return COLOSSAL_ERROR(kInvalidArgument,
                        std::string(opInfo(attrs.kind()).name) + ": " +
                            message);
}

/// Visits every index of `dims` in row-major order and calls fn(flat,
/// offsets), where offsets[k] = base[k] + sum_d index[d] * strides[k][d].
/// Offsets are updated incrementally: O(1) amortised per element.
template <size_t N, typename Fn>
void walk(const Dims &dims, const std::array<const Dims *, N> &strides,
          std::array<int64_t, N> offsets, Fn &&fn) {
  // Ranks were validated to be <= kMaxRank, so the index fits on the stack.
  if (dims.size() > kMaxRank)
    return;
  int64_t count = product(dims);
  std::array<int64_t, kMaxRank> index{};
  for (int64_t flat = 0; flat < count; ++flat) {
    fn(flat, offsets);
    for (size_t d = dims.size(); d-- > 0;) {
      for (size_t k = 0; k < N; ++k)
        offsets[k] += (*strides[k])[d];
      if (++index[d] < dims[d])
        break;
      for (size_t k = 0; k < N; ++k)
        offsets[k] -= (*strides[k])[d] * dims[d];
      index[d] = 0;
    }
  }
}

void storeDoubles(const TensorRef &ref, const std::vector<double> &values) {
  int64_t count = ref.type.numElements();
  if (ref.type.dtype == DType::kF32) {
    float *data = static_cast<float *>(ref.data);
    for (int64_t i = 0; i < count; ++i)
      data[i] = static_cast<float>(values[i]);
  } else {
    for (int64_t i = 0; i < count; ++i)
      storeFromDouble(ref, i, values[i]);
  }
}

std::vector<int64_t> loadInts(const TensorRef &ref) {
  int64_t count = ref.type.numElements();
  std::vector<int64_t> values(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    values[i] = loadAsInt64(ref, i);
  return values;
}

void storeInts(const TensorRef &ref, const std::vector<int64_t> &values) {
  int64_t count = ref.type.numElements();
  for (int64_t i = 0; i < count; ++i)
    storeFromInt64(ref, i, values[i]);
}

// Two's-complement arithmetic without signed-overflow UB.
int64_t wrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) +
                              static_cast<uint64_t>(b));
}
int64_t wrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) -
                              static_cast<uint64_t>(b));
}
int64_t wrapMul(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) *
                              static_cast<uint64_t>(b));
}

uint8_t *bytesOf(const TensorRef &ref) {
  return static_cast<uint8_t *>(ref.data);
}

/// memmove that accepts the null data pointer of an empty tensor.
void copyBytes(void *dst, const void *src, size_t count) {
  if (count != 0)
    std::memmove(dst, src, count);
}

size_t elementBytes(const TensorRef &ref) {
  return dtypeSizeBytes(ref.type.dtype);
}

/// Smallest and largest value of an integer dtype, as int64.
std::pair<int64_t, int64_t> integerRange(DType dtype) {
  switch (dtype) {
  case DType::kI32:
    return {std::numeric_limits<int32_t>::min(),
            std::numeric_limits<int32_t>::max()};
  case DType::kI8:
    return {std::numeric_limits<int8_t>::min(),
            std::numeric_limits<int8_t>::max()};
  case DType::kU8:
    return {0, std::numeric_limits<uint8_t>::max()};
  default:
    return {std::numeric_limits<int64_t>::min(),
            std::numeric_limits<int64_t>::max()};
  }
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

} // namespace

// The per-element functions are shared with fused_elementwise
// (FusedElementwise.cpp, through ElementwiseOps.h): one definition, so that
// a fused chain computes bitwise what the unfused ops do.

double unaryFloat(OpKind kind, bool tanhGelu, double x) {
  switch (kind) {
  case OpKind::Neg:
    return -x;
  case OpKind::Abs:
    return std::fabs(x);
  case OpKind::Exp:
    return std::exp(x);
  case OpKind::Log:
    return std::log(x);
  case OpKind::Sqrt:
    return std::sqrt(x);
  case OpKind::Rsqrt:
    return 1.0 / std::sqrt(x);
  case OpKind::Reciprocal:
    return 1.0 / x;
  case OpKind::Tanh:
    return std::tanh(x);
  case OpKind::Sigmoid:
    return 1.0 / (1.0 + std::exp(-x));
  case OpKind::Relu:
    return x < 0.0 ? 0.0 : x; // NaN stays NaN
  case OpKind::Erf:
    return std::erf(x);
  case OpKind::Sin:
    return std::sin(x);
  case OpKind::Cos:
    return std::cos(x);
  case OpKind::Gelu:
    if (tanhGelu) {
      const double kPi = 3.14159265358979323846;
      const double kSqrt2OverPi = std::sqrt(2.0 / kPi);
      return 0.5 * x *
             (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
    }
    return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  default:
    return x;
  }
}

int64_t unaryInt(OpKind kind, int64_t x) {
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

Status runUnary(const Attrs &attrs, const TensorRef &in, const TensorRef &out) {
  OpKind kind = attrs.kind();
  if (isFloatDType(in.type.dtype)) {
    bool tanhGelu = kind == OpKind::Gelu && attrs.i("approximate") == 1;
    std::vector<double> values = loadAllAsDouble(in);
    for (double &value : values)
      value = unaryFloat(kind, tanhGelu, value);
    storeDoubles(out, values);
  } else {
    std::vector<int64_t> values = loadInts(in);
    for (int64_t &value : values)
      value = unaryInt(kind, value);
    storeInts(out, values);
  }
  return Status::ok();
}

Status runCast(const TensorRef &in, const TensorRef &out) {
  int64_t count = in.type.numElements();
  // Floats go through double (to an integer: truncate and saturate); integers
  // and bools go through int64 (to a narrower integer: wrap).
  if (isFloatDType(in.type.dtype)) {
    for (int64_t i = 0; i < count; ++i)
      storeFromDouble(out, i, loadAsDouble(in, i));
  } else {
    for (int64_t i = 0; i < count; ++i)
      storeFromInt64(out, i, loadAsInt64(in, i));
  }
  return Status::ok();
}

bool compare(OpKind kind, double a, double b) {
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

bool compare(OpKind kind, int64_t a, int64_t b) {
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

bool isComparison(OpKind kind) {
  return kind == OpKind::Equal || kind == OpKind::Less ||
         kind == OpKind::LessEqual || kind == OpKind::Greater ||
         kind == OpKind::GreaterEqual;
}

double binaryFloat(OpKind kind, double a, double b) {
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
    return std::pow(a, b);
  case OpKind::Max: // NaN propagates, as in numpy.maximum and PyTorch
    return (std::isnan(a) || a > b) ? a : b;
  case OpKind::Min:
    return (std::isnan(a) || a < b) ? a : b;
  default:
    return 0.0;
  }
}

/// Integer power by squaring, wrapping on overflow. A negative exponent
/// gives the truncated 1 / base^-exp (so 0 unless |base| == 1); 0 to a
/// negative power sets `divByZero`.
int64_t integerPow(int64_t base, int64_t exponent, bool &divByZero) {
  if (exponent < 0) {
    if (base == 0)
      divByZero = true;
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

/// Integer div truncates toward zero; INT64_MIN / -1 wraps to INT64_MIN.
int64_t binaryInt(OpKind kind, int64_t a, int64_t b, bool &divByZero) {
  switch (kind) {
  case OpKind::Add:
    return wrapAdd(a, b);
  case OpKind::Sub:
    return wrapSub(a, b);
  case OpKind::Mul:
    return wrapMul(a, b);
  case OpKind::Div:
    if (b == 0) {
      divByZero = true;
      return 0;
    }
    if (b == -1)
      return wrapSub(0, a);
    return a / b;
  case OpKind::Pow:
    return integerPow(a, b, divByZero);
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

namespace {

Status runBinary(const Attrs &attrs, const TensorRef &a, const TensorRef &b,
                 const TensorRef &out) {
  OpKind kind = attrs.kind();
  const Dims &dims = out.type.dims;
  Dims stridesA = broadcastStrides(a.type.dims, dims);
  Dims stridesB = broadcastStrides(b.type.dims, dims);
  size_t count = static_cast<size_t>(out.type.numElements());
  if (isFloatDType(a.type.dtype)) {
    std::vector<double> lhs = loadAllAsDouble(a), rhs = loadAllAsDouble(b);
    if (isComparison(kind)) {
      std::vector<int64_t> result(count);
      walk<2>(dims, {&stridesA, &stridesB}, {0, 0},
              [&](int64_t i, const std::array<int64_t, 2> &at) {
                result[i] = compare(kind, lhs[at[0]], rhs[at[1]]);
              });
      storeInts(out, result);
      return Status::ok();
    }
    std::vector<double> result(count);
    walk<2>(dims, {&stridesA, &stridesB}, {0, 0},
            [&](int64_t i, const std::array<int64_t, 2> &at) {
              result[i] = binaryFloat(kind, lhs[at[0]], rhs[at[1]]);
            });
    storeDoubles(out, result);
    return Status::ok();
  }
  std::vector<int64_t> lhs = loadInts(a), rhs = loadInts(b);
  std::vector<int64_t> result(count);
  bool divByZero = false;
  walk<2>(dims, {&stridesA, &stridesB}, {0, 0},
          [&](int64_t i, const std::array<int64_t, 2> &at) {
            int64_t x = lhs[at[0]], y = rhs[at[1]];
            result[i] = isComparison(kind) ? compare(kind, x, y)
                                           : binaryInt(kind, x, y, divByZero);
          });
  if (divByZero)
    return kernelError(attrs, kind == OpKind::Pow
                                  ? "integer zero to a negative power"
                                  : "integer division by zero");
  storeInts(out, result);
  return Status::ok();
}

Status runWhere(const TensorRef &cond, const TensorRef &x, const TensorRef &y,
                const TensorRef &out) {
  const Dims &dims = out.type.dims;
  Dims stridesC = broadcastStrides(cond.type.dims, dims);
  Dims stridesX = broadcastStrides(x.type.dims, dims);
  Dims stridesY = broadcastStrides(y.type.dims, dims);
  std::vector<int64_t> mask = loadInts(cond);
  size_t bytes = elementBytes(out);
  walk<3>(dims, {&stridesC, &stridesX, &stridesY}, {0, 0, 0},
          [&](int64_t i, const std::array<int64_t, 3> &at) {
            const uint8_t *src = mask[at[0]] ? bytesOf(x) + at[1] * bytes
                                             : bytesOf(y) + at[2] * bytes;
            copyBytes(bytesOf(out) + i * bytes, src, bytes);
          });
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// matmul
//===----------------------------------------------------------------------===//

/// Copies every matrix of `ref` ([..., R, C] row-major) into row-major
/// doubles of shape [..., rows, cols], transposing each when asked.
std::vector<double> packMatrices(const TensorRef &ref, bool transpose,
                                 int64_t rows, int64_t cols) {
  std::vector<double> values = loadAllAsDouble(ref);
  if (!transpose)
    return values;
  std::vector<double> packed(values.size());
  int64_t matrixSize = rows * cols;
  int64_t count = matrixSize == 0 ? 0 : ref.type.numElements() / matrixSize;
  for (int64_t m = 0; m < count; ++m) {
    const double *src = values.data() + m * matrixSize; // [cols, rows]
    double *dst = packed.data() + m * matrixSize;       // [rows, cols]
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        dst[r * cols + c] = src[c * rows + r];
  }
  return packed;
}

Status runMatMul(const Attrs &attrs, const TensorRef &a, const TensorRef &b,
                 const TensorRef &out) {
  bool ta = attrs.i("transpose_a"), tb = attrs.i("transpose_b");
  const Dims &da = a.type.dims, &db = b.type.dims, &dOut = out.type.dims;
  size_t ra = da.size(), rOut = dOut.size();
  int64_t m = dOut[rOut - 2], n = dOut[rOut - 1];
  int64_t k = ta ? da[ra - 2] : da[ra - 1];
  std::vector<double> lhs = packMatrices(a, ta, m, k);
  std::vector<double> rhs = packMatrices(b, tb, k, n);

  // Batch strides count whole matrices; broadcast batch dims get stride 0.
  Dims batch(dOut.begin(), dOut.end() - 2);
  Dims stridesA = broadcastStrides(Dims(da.begin(), da.end() - 2), batch);
  Dims stridesB = broadcastStrides(Dims(db.begin(), db.end() - 2), batch);
  std::vector<double> acc(static_cast<size_t>(n));
  float *outF32 =
      out.type.dtype == DType::kF32 ? static_cast<float *>(out.data) : nullptr;
  walk<2>(batch, {&stridesA, &stridesB}, {0, 0},
          [&](int64_t batchIndex, const std::array<int64_t, 2> &at) {
            const double *matA = lhs.data() + at[0] * m * k;
            const double *matB = rhs.data() + at[1] * k * n;
            for (int64_t i = 0; i < m; ++i) {
              // i-k-j order: each output row accumulates over k in order,
              // and the inner loop is a contiguous axpy that vectorises.
              std::fill(acc.begin(), acc.end(), 0.0);
              for (int64_t p = 0; p < k; ++p) {
                double scale = matA[i * k + p];
                const double *row = matB + p * n;
                for (int64_t j = 0; j < n; ++j)
                  acc[j] += scale * row[j];
              }
              int64_t base = (batchIndex * m + i) * n;
              if (outF32) {
                for (int64_t j = 0; j < n; ++j)
                  outF32[base + j] = static_cast<float>(acc[j]);
              } else {
                for (int64_t j = 0; j < n; ++j)
                  storeFromDouble(out, base + j, acc[j]);
              }
            }
          });
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Reductions and normalisation
//===----------------------------------------------------------------------===//

Status runReduce(const Attrs &attrs, const TensorRef &in,
                 const TensorRef &out) {
  OpKind kind = attrs.kind();
  const Dims &dims = in.type.dims;
  const std::vector<int64_t> &axes = attrs.list("axes");
  std::vector<bool> reduced(dims.size(), false);
  for (int64_t axis : axes)
    reduced[axis] = true;
  // Each input element adds into the output element of its kept dims:
  // strides of the kept shape, 0 for reduced dims.
  Dims toOut(dims.size(), 0);
  int64_t stride = 1, reducedCount = 1;
  for (size_t d = dims.size(); d-- > 0;) {
    if (reduced[d]) {
      reducedCount *= dims[d];
      continue;
    }
    toOut[d] = stride;
    stride *= dims[d];
  }
  size_t outCount = static_cast<size_t>(out.type.numElements());
  if (isFloatDType(in.type.dtype)) {
    double init = kind == OpKind::ReduceMax   ? -INFINITY
                  : kind == OpKind::ReduceMin ? INFINITY
                                              : 0.0;
    std::vector<double> values = loadAllAsDouble(in), acc(outCount, init);
    walk<1>(dims, {&toOut}, {0},
            [&](int64_t i, const std::array<int64_t, 1> &at) {
              double &slot = acc[at[0]];
              double x = values[i];
              if (kind == OpKind::ReduceMax) {
                if (std::isnan(x) || x > slot)
                  slot = x;
              } else if (kind == OpKind::ReduceMin) {
                if (std::isnan(x) || x < slot)
                  slot = x;
              } else if (kind == OpKind::ReduceSumSquare) {
                slot += x * x; // in double: the square of a float is exact
              } else {
                slot += x;
              }
            });
    if (kind == OpKind::ReduceMean)
      for (double &slot : acc)
        slot /= static_cast<double>(reducedCount); // 0/0: NaN
    storeDoubles(out, acc);
    return Status::ok();
  }
  auto [lo, hi] = integerRange(in.type.dtype);
  int64_t init = kind == OpKind::ReduceMax   ? lo
                 : kind == OpKind::ReduceMin ? hi
                                             : 0;
  std::vector<int64_t> values = loadInts(in), acc(outCount, init);
  walk<1>(dims, {&toOut}, {0},
          [&](int64_t i, const std::array<int64_t, 1> &at) {
            int64_t &slot = acc[at[0]];
            if (kind == OpKind::ReduceMax)
              slot = std::max(slot, values[i]);
            else if (kind == OpKind::ReduceMin)
              slot = std::min(slot, values[i]);
            else
              slot = wrapAdd(slot, values[i]);
          });
  if (kind == OpKind::ReduceMean)
    for (int64_t &slot : acc)
      slot = reducedCount == 0 ? 0 : slot / reducedCount;
  storeInts(out, acc);
  return Status::ok();
}

Status runSoftmax(const Attrs &attrs, const TensorRef &in,
                  const TensorRef &out) {
  bool logSoftmax = attrs.kind() == OpKind::LogSoftmax;
  const Dims &dims = in.type.dims;
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  int64_t outer = product(dims, 0, axis), length = dims[axis],
          inner = product(dims, axis + 1, dims.size());
  std::vector<double> values = loadAllAsDouble(in);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < inner; ++j) {
      double *base = values.data() + o * length * inner + j;
      // Subtract the max first so that exp cannot overflow.
      double maxValue = -INFINITY;
      for (int64_t a = 0; a < length; ++a)
        maxValue = std::max(maxValue, base[a * inner]);
      double sum = 0.0;
      for (int64_t a = 0; a < length; ++a)
        sum += std::exp(base[a * inner] - maxValue);
      double logSum = std::log(sum);
      for (int64_t a = 0; a < length; ++a) {
        double shifted = base[a * inner] - maxValue;
        base[a * inner] =
            logSoftmax ? shifted - logSum : std::exp(shifted) / sum;
      }
    }
  }
  storeDoubles(out, values);
  return Status::ok();
}

Status runLayerNorm(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                    const TensorRef &out) {
  const Dims &dims = inputs[0].type.dims;
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  double epsilon = attrs.f("epsilon");
  int64_t outer = product(dims, 0, axis),
          inner = product(dims, axis, dims.size());
  std::vector<double> values = loadAllAsDouble(inputs[0]);
  std::vector<double> scale = loadAllAsDouble(inputs[1]);
  std::vector<double> bias = inputs.size() > 2
                                 ? loadAllAsDouble(inputs[2])
                                 : std::vector<double>(scale.size(), 0.0);
  for (int64_t o = 0; o < outer; ++o) {
    double *row = values.data() + o * inner;
    // Two passes (mean, then the biased variance around it): more accurate
    // than E[x^2] - E[x]^2 when the mean is large.
    double sum = 0.0;
    for (int64_t j = 0; j < inner; ++j)
      sum += row[j];
    double mean = sum / static_cast<double>(inner);
    double squares = 0.0;
    for (int64_t j = 0; j < inner; ++j)
      squares += (row[j] - mean) * (row[j] - mean);
    double variance = squares / static_cast<double>(inner);
    double stddev = std::sqrt(variance + epsilon);
    for (int64_t j = 0; j < inner; ++j)
      row[j] = (row[j] - mean) / stddev * scale[j] + bias[j];
  }
  storeDoubles(out, values);
  return Status::ok();
}

Status runCrossEntropy(const Attrs &attrs, const TensorRef &scores,
                       const TensorRef &labels, const TensorRef &out) {
  const Dims &dims = scores.type.dims;
  int64_t batch = dims[0], classes = dims[1];
  int64_t inner = product(dims, 2, dims.size());
  int64_t ignoreIndex = attrs.i("ignore_index");
  int64_t reduction = attrs.i("reduction");
  std::vector<double> values = loadAllAsDouble(scores);
  std::vector<int64_t> targets = loadInts(labels);
  std::vector<double> losses(targets.size(), 0.0);
  int64_t counted = 0;
  // No positions when a spatial dim is 0; skip the batch loop then, as
  // the empty labels do not bound its count ([2^40, C, 0] scores).
  if (targets.empty())
    batch = 0;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t j = 0; j < inner; ++j) {
      int64_t label = targets[n * inner + j];
      if (label == ignoreIndex)
        continue; // contributes 0 and is not counted
      if (label < 0 || label >= classes)
        return kernelError(
            attrs, "label " + std::to_string(label) + " out of range [0, " +
                       std::to_string(classes) + ") and not ignore_index " +
                       std::to_string(ignoreIndex));
      const double *base = values.data() + n * classes * inner + j;
      double maxValue = -INFINITY;
      for (int64_t c = 0; c < classes; ++c)
        maxValue = std::max(maxValue, base[c * inner]);
      double sum = 0.0;
      for (int64_t c = 0; c < classes; ++c)
        sum += std::exp(base[c * inner] - maxValue);
      losses[n * inner + j] = -(base[label * inner] - maxValue - std::log(sum));
      ++counted;
    }
  }
  if (reduction == 0) {
    storeDoubles(out, losses);
    return Status::ok();
  }
  double total = 0.0;
  for (double loss : losses)
    total += loss;
  if (reduction == 2)
    total /= static_cast<double>(counted); // all ignored: 0/0 = NaN
  storeFromDouble(out, 0, total);
  return Status::ok();
}

Status runCumSum(const Attrs &attrs, const TensorRef &in,
                 const TensorRef &out) {
  const Dims &dims = in.type.dims;
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  bool exclusive = attrs.i("exclusive"), reverse = attrs.i("reverse");
  int64_t outer = product(dims, 0, axis), length = dims[axis],
          inner = product(dims, axis + 1, dims.size());
  // One scan per (outer, inner) line, in the direction `reverse` says;
  // exclusive writes the running sum before adding the element.
  auto scan = [&](auto &values, auto add) {
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < inner; ++j) {
        auto running = decltype(values[0] + values[0])(0);
        for (int64_t s = 0; s < length; ++s) {
          int64_t a = reverse ? length - 1 - s : s;
          auto &slot = values[(o * length + a) * inner + j];
          auto element = slot;
          if (exclusive) {
            slot = running;
            running = add(running, element);
          } else {
            running = add(running, element);
            slot = running;
          }
        }
      }
    }
  };
  if (isFloatDType(in.type.dtype)) {
    std::vector<double> values = loadAllAsDouble(in);
    scan(values, [](double x, double y) { return x + y; });
    storeDoubles(out, values);
  } else {
    std::vector<int64_t> values = loadInts(in);
    scan(values, wrapAdd);
    storeInts(out, values);
  }
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Indexing and data movement (dtype-agnostic: they move element bytes)
//===----------------------------------------------------------------------===//

Status runGather(const Attrs &attrs, const TensorRef &data,
                 const TensorRef &indices, const TensorRef &out) {
  const Dims &dims = data.type.dims;
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  int64_t outer = product(dims, 0, axis), length = dims[axis],
          inner = product(dims, axis + 1, dims.size());
  std::vector<int64_t> index = loadInts(indices);
  // Check every index before writing anything.
  for (int64_t &value : index) {
    if (value < -length || value >= length)
      return kernelError(attrs, "index " + std::to_string(value) +
                                    " out of range [" +
                                    std::to_string(-length) + ", " +
                                    std::to_string(length) + ")");
    if (value < 0)
      value += length;
  }
  size_t bytes = elementBytes(data);
  size_t chunk = static_cast<size_t>(inner) * bytes;
  int64_t count = static_cast<int64_t>(index.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < count; ++j)
      copyBytes(bytesOf(out) + (o * count + j) * chunk,
                bytesOf(data) + (o * length + index[j]) * chunk, chunk);
  return Status::ok();
}

Status runGatherND(const Attrs &attrs, const TensorRef &data,
                   const TensorRef &indices, const TensorRef &out) {
  const Dims &dd = data.type.dims, &di = indices.type.dims;
  size_t batchDims = static_cast<size_t>(attrs.i("batch_dims"));
  size_t depth = static_cast<size_t>(di.back());
  int64_t batches = product(dd, 0, batchDims);
  int64_t tuplesPerBatch = product(di, batchDims, di.size() - 1);
  int64_t sliceElems = product(dd, batchDims + depth, dd.size());
  int64_t batchElems = product(dd, batchDims, dd.size());
  Dims strides = contiguousStrides(dd);
  std::vector<int64_t> index = loadInts(indices);
  // Resolve every index tuple to a source offset first, so a bad index
  // fails before anything is written.
  std::vector<int64_t> sources(static_cast<size_t>(batches * tuplesPerBatch));
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t t = 0; t < tuplesPerBatch; ++t) {
      int64_t tuple = b * tuplesPerBatch + t;
      int64_t offset = b * batchElems;
      for (size_t j = 0; j < depth; ++j) {
        int64_t dim = dd[batchDims + j];
        int64_t value = index[tuple * depth + j];
        if (value < -dim || value >= dim)
          return kernelError(
              attrs, "index " + std::to_string(value) + " out of range [" +
                         std::to_string(-dim) + ", " + std::to_string(dim) +
                         ") in dim " + std::to_string(batchDims + j));
        if (value < 0)
          value += dim;
        offset += value * strides[batchDims + j];
      }
      sources[tuple] = offset;
    }
  }
  size_t chunk = static_cast<size_t>(sliceElems) * elementBytes(data);
  for (size_t tuple = 0; tuple < sources.size(); ++tuple)
    copyBytes(bytesOf(out) + tuple * chunk,
              bytesOf(data) + sources[tuple] * elementBytes(data), chunk);
  return Status::ok();
}

/// Loads the indices of gather_elements(_grad) and normalises them into
/// [0, length), the gathered axis' size; the first one outside [-length,
/// length) is an error naming it.
Status loadAxisIndices(const Attrs &attrs, const TensorRef &indices,
                       int64_t length, std::vector<int64_t> &index) {
  index = loadInts(indices);
  for (int64_t &value : index) {
    if (value < -length || value >= length)
      return kernelError(attrs, "index " + std::to_string(value) +
                                    " out of range [" +
                                    std::to_string(-length) + ", " +
                                    std::to_string(length) + ")");
    if (value < 0)
      value += length;
  }
  return Status::ok();
}

/// Strides of the gathered data (dims `dataDims`) for walking the indices'
/// dims: the data's own strides, except 0 on `axis`, where the offset comes
/// from the index instead. Inference bounded indices.dims[d] by
/// dataDims[d] off the axis, so every walked offset is in bounds.
Dims gatherElementsStrides(const Dims &dataDims, size_t axis) {
  Dims strides = contiguousStrides(dataDims);
  strides[axis] = 0;
  return strides;
}

Status runGatherElements(const Attrs &attrs, const TensorRef &data,
                         const TensorRef &indices, const TensorRef &out) {
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  const Dims &dims = data.type.dims;
  std::vector<int64_t> index;
  // Check every index before writing anything.
  COLOSSAL_RETURN_IF_ERROR(loadAxisIndices(attrs, indices, dims[axis], index));
  Dims strides = gatherElementsStrides(dims, axis);
  int64_t axisStride = contiguousStrides(dims)[axis];
  size_t bytes = elementBytes(data);
  walk<1>(indices.type.dims, {&strides}, {0},
          [&](int64_t i, const std::array<int64_t, 1> &at) {
            copyBytes(bytesOf(out) + i * bytes,
                      bytesOf(data) + (at[0] + index[i] * axisStride) * bytes,
                      bytes);
          });
  return Status::ok();
}

Status runTrilu(const Attrs &attrs, const TensorRef &in, const TensorRef &out) {
  const Dims &dims = in.type.dims;
  size_t rank = dims.size();
  int64_t rows = dims[rank - 2], cols = dims[rank - 1];
  int64_t matrices = product(dims, 0, rank - 2);
  if (rows == 0 || cols == 0 || matrices == 0)
    return Status::ok();
  bool upper = attrs.i("upper") != 0;
  // Row i keeps columns j with j - i >= k (upper) or j - i <= k (lower): one
  // contiguous run. Clamping k to [-rows, cols] first changes no run (every
  // j - i lies in (-rows, cols)) and keeps i + k from overflowing.
  int64_t k = std::clamp<int64_t>(attrs.i("k"), -rows, cols);
  size_t bytes = elementBytes(out);
  // Each element is read (memmove) before it is written and only from its
  // own position, so in and out may alias exactly.
  for (int64_t m = 0; m < matrices; ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      int64_t keepBegin = upper ? std::clamp<int64_t>(i + k, 0, cols) : 0;
      int64_t keepEnd = upper ? cols : std::clamp<int64_t>(i + k + 1, 0, cols);
      int64_t row = (m * rows + i) * cols;
      // All-zero bytes are 0 (or false) in every dtype.
      if (keepBegin > 0)
        std::memset(bytesOf(out) + row * bytes, 0,
                    static_cast<size_t>(keepBegin) * bytes);
      if (keepEnd > keepBegin)
        copyBytes(bytesOf(out) + (row + keepBegin) * bytes,
                  bytesOf(in) + (row + keepBegin) * bytes,
                  static_cast<size_t>(keepEnd - keepBegin) * bytes);
      if (keepEnd < cols)
        std::memset(bytesOf(out) + (row + keepEnd) * bytes, 0,
                    static_cast<size_t>(cols - keepEnd) * bytes);
    }
  }
  return Status::ok();
}

/// out[i] = in[base + sum index[d] * strides[d]] for every index of out.
void stridedCopy(const TensorRef &in, const TensorRef &out, const Dims &strides,
                 int64_t base) {
  size_t bytes = elementBytes(out);
  walk<1>(out.type.dims, {&strides}, {base},
          [&](int64_t i, const std::array<int64_t, 1> &at) {
            copyBytes(bytesOf(out) + i * bytes, bytesOf(in) + at[0] * bytes,
                      bytes);
          });
}

Status runTranspose(const Attrs &attrs, const TensorRef &in,
                    const TensorRef &out) {
  const std::vector<int64_t> &perm = attrs.list("perm");
  Dims inStrides = contiguousStrides(in.type.dims);
  Dims strides(perm.size());
  for (size_t d = 0; d < perm.size(); ++d)
    strides[d] = inStrides[perm[d]];
  stridedCopy(in, out, strides, 0);
  return Status::ok();
}

Status runSlice(const Attrs &attrs, const TensorRef &in, const TensorRef &out) {
  if (out.type.numElements() == 0)
    return Status::ok(); // starts need not be in range then
  const std::vector<int64_t> &starts = attrs.list("starts");
  const std::vector<int64_t> &steps = attrs.list("steps");
  Dims inStrides = contiguousStrides(in.type.dims);
  Dims strides(starts.size());
  int64_t base = 0;
  for (size_t d = 0; d < starts.size(); ++d) {
    base += starts[d] * inStrides[d];
    // With one element the step is never taken (and may be as large as
    // INT64_MIN); with more, inference bounded |step| by the dim.
    strides[d] = out.type.dims[d] > 1 ? steps[d] * inStrides[d] : 0;
  }
  stridedCopy(in, out, strides, base);
  return Status::ok();
}

Status runConcat(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                 const TensorRef &out) {
  const Dims &dims = out.type.dims;
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  int64_t outer = product(dims, 0, axis);
  size_t rowBytes =
      static_cast<size_t>(product(dims, axis, dims.size())) * elementBytes(out);
  uint8_t *dst = bytesOf(out);
  // Row by row (one row = the dims from axis on): each input contributes
  // one contiguous chunk to each row of the result.
  for (int64_t o = 0; o < outer; ++o) {
    size_t filled = 0;
    for (const TensorRef &in : inputs) {
      size_t chunk = static_cast<size_t>(
                         product(in.type.dims, axis, in.type.dims.size())) *
                     elementBytes(in);
      copyBytes(dst + o * rowBytes + filled, bytesOf(in) + o * chunk, chunk);
      filled += chunk;
    }
  }
  return Status::ok();
}

Status runPad(const Attrs &attrs, const TensorRef &in, const TensorRef &out) {
  const Dims &inDims = in.type.dims, &outDims = out.type.dims;
  const std::vector<int64_t> &pads = attrs.list("pads");
  int64_t mode = attrs.i("mode");
  size_t rank = inDims.size();
  // Per dim, the source index of each output index, or -1 for the constant.
  std::vector<Dims> source(rank);
  for (size_t d = 0; d < rank; ++d) {
    int64_t dim = inDims[d];
    source[d].resize(static_cast<size_t>(outDims[d]));
    for (int64_t o = 0; o < outDims[d]; ++o) {
      int64_t i = o - pads[d];
      if (i < 0 || i >= dim) {
        if (mode == 0)
          i = -1;
        else if (mode == 1) // reflect, edge not repeated (numpy 'reflect')
          i = i < 0 ? -i : 2 * (dim - 1) - i;
        else // edge
          i = i < 0 ? 0 : dim - 1;
      }
      source[d][o] = i;
    }
  }
  size_t bytes = elementBytes(out);
  std::vector<uint8_t> constant(bytes);
  storeFromDouble(TensorRef{TensorType{out.type.dtype, {}}, constant.data()}, 0,
                  attrs.f("value"));
  Dims inStrides = contiguousStrides(inDims);
  Dims index(rank, 0);
  int64_t count = out.type.numElements();
  for (int64_t flat = 0; flat < count; ++flat) {
    int64_t offset = 0;
    bool inside = true;
    for (size_t d = 0; d < rank && inside; ++d) {
      int64_t i = source[d][index[d]];
      inside = i >= 0;
      offset += i * inStrides[d];
    }
    copyBytes(bytesOf(out) + flat * bytes,
              inside ? bytesOf(in) + offset * bytes : constant.data(), bytes);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < outDims[d])
        break;
      index[d] = 0;
    }
  }
  return Status::ok();
}

Status runFill(const Attrs &attrs, const TensorRef &out) {
  size_t bytes = elementBytes(out);
  std::vector<uint8_t> value(bytes);
  storeFromDouble(TensorRef{TensorType{out.type.dtype, {}}, value.data()}, 0,
                  attrs.f("value"));
  int64_t count = out.type.numElements();
  for (int64_t i = 0; i < count; ++i)
    copyBytes(bytesOf(out) + i * bytes, value.data(), bytes);
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Training: backward kernels and optimizer updates
//===----------------------------------------------------------------------===//

Status runGatherGrad(const Attrs &attrs, const TensorRef &grad,
                     const TensorRef &indices, const TensorRef &out) {
  const Dims &dims = out.type.dims; // the gathered data's shape
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  int64_t outer = product(dims, 0, axis), length = dims[axis],
          inner = product(dims, axis + 1, dims.size());
  std::vector<int64_t> index = loadInts(indices);
  // Check every index before writing anything, as gather does.
  for (int64_t &value : index) {
    if (value < -length || value >= length)
      return kernelError(attrs, "index " + std::to_string(value) +
                                    " out of range [" +
                                    std::to_string(-length) + ", " +
                                    std::to_string(length) + ")");
    if (value < 0)
      value += length;
  }
  // Inference bounded padding_idx to [-length, length) unless it is the
  // INT64_MIN "none", which no normalised index (>= 0) can equal.
  int64_t paddingIdx = attrs.i("padding_idx");
  if (paddingIdx != std::numeric_limits<int64_t>::min() && paddingIdx < 0)
    paddingIdx += length;
  // Scatter-add into f64 in a fixed order (o, then j, then the slice), so
  // repeated indices sum exactly as in f64 and deterministically; round once.
  std::vector<double> values = loadAllAsDouble(grad);
  std::vector<double> acc(static_cast<size_t>(out.type.numElements()), 0.0);
  int64_t count = static_cast<int64_t>(index.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < count; ++j) {
      if (index[j] == paddingIdx)
        continue;
      double *dst = acc.data() + (o * length + index[j]) * inner;
      const double *src = values.data() + (o * count + j) * inner;
      for (int64_t e = 0; e < inner; ++e)
        dst[e] += src[e];
    }
  }
  storeDoubles(out, acc);
  return Status::ok();
}

Status runGatherElementsGrad(const Attrs &attrs, const TensorRef &grad,
                             const TensorRef &indices, const TensorRef &out) {
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  const Dims &dims = out.type.dims; // the gathered data's shape
  std::vector<int64_t> index;
  // Check every index before writing anything, as gather_elements does.
  COLOSSAL_RETURN_IF_ERROR(loadAxisIndices(attrs, indices, dims[axis], index));
  Dims strides = gatherElementsStrides(dims, axis);
  int64_t axisStride = contiguousStrides(dims)[axis];
  // Scatter-add into f64 in grad's row-major order, so repeated positions
  // sum exactly as in f64 and deterministically; round once.
  std::vector<double> values = loadAllAsDouble(grad);
  std::vector<double> acc(static_cast<size_t>(out.type.numElements()), 0.0);
  walk<1>(grad.type.dims, {&strides}, {0},
          [&](int64_t i, const std::array<int64_t, 1> &at) {
            acc[at[0] + index[i] * axisStride] += values[i];
          });
  storeDoubles(out, acc);
  return Status::ok();
}

Status runSliceGrad(const Attrs &attrs, const TensorRef &grad,
                    const TensorRef &out) {
  // All-zero bytes are 0 (or false) in every dtype.
  if (out.type.numElements() != 0)
    std::memset(out.data, 0, static_cast<size_t>(out.type.sizeBytes()));
  if (grad.type.numElements() == 0)
    return Status::ok(); // starts need not be in range then
  const std::vector<int64_t> &starts = attrs.list("starts");
  const std::vector<int64_t> &steps = attrs.list("steps");
  Dims outStrides = contiguousStrides(out.type.dims);
  Dims strides(starts.size());
  int64_t base = 0;
  for (size_t d = 0; d < starts.size(); ++d) {
    base += starts[d] * outStrides[d];
    // As in runSlice: a step is only taken when the grad dim exceeds 1.
    strides[d] = grad.type.dims[d] > 1 ? steps[d] * outStrides[d] : 0;
  }
  // The inverse of slice's strided copy: grad element i goes where slice
  // read its element i from. Positions are distinct (|step| >= 1).
  size_t bytes = elementBytes(out);
  walk<1>(grad.type.dims, {&strides}, {base},
          [&](int64_t i, const std::array<int64_t, 1> &at) {
            copyBytes(bytesOf(out) + at[0] * bytes, bytesOf(grad) + i * bytes,
                      bytes);
          });
  return Status::ok();
}

Status runLayerNormGrad(const Attrs &attrs,
                        const std::vector<TensorRef> &inputs,
                        const std::vector<TensorRef> &outputs) {
  const Dims &dims = inputs[0].type.dims;
  size_t axis = static_cast<size_t>(attrs.i("axis"));
  double epsilon = attrs.f("epsilon");
  int64_t outer = product(dims, 0, axis),
          inner = product(dims, axis, dims.size());
  std::vector<double> x = loadAllAsDouble(inputs[0]);
  std::vector<double> scale = loadAllAsDouble(inputs[1]);
  std::vector<double> dy = loadAllAsDouble(inputs[2]);
  std::vector<double> dscale(scale.size(), 0.0), dbias(scale.size(), 0.0);
  std::vector<double> normalised(static_cast<size_t>(inner));
  double count = static_cast<double>(inner);
  // Per row, with xhat = (x - mean) * rstd and g = dy * scale:
  //   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
  // and dscale += dy * xhat, dbias += dy over all rows, in row order. The
  // statistics are the forward's: two-pass mean, biased variance. dx
  // overwrites x in place (x of a row is no longer needed after xhat).
  for (int64_t o = 0; o < outer; ++o) {
    double *row = x.data() + o * inner;
    const double *dyRow = dy.data() + o * inner;
    double sum = 0.0;
    for (int64_t j = 0; j < inner; ++j)
      sum += row[j];
    double mean = sum / count;
    double squares = 0.0;
    for (int64_t j = 0; j < inner; ++j)
      squares += (row[j] - mean) * (row[j] - mean);
    double rstd = 1.0 / std::sqrt(squares / count + epsilon);
    double sumG = 0.0, sumGXhat = 0.0;
    for (int64_t j = 0; j < inner; ++j) {
      double xhat = (row[j] - mean) * rstd;
      double g = dyRow[j] * scale[j];
      normalised[j] = xhat;
      sumG += g;
      sumGXhat += g * xhat;
      dscale[j] += dyRow[j] * xhat;
      dbias[j] += dyRow[j];
    }
    double meanG = sumG / count, meanGXhat = sumGXhat / count;
    for (int64_t j = 0; j < inner; ++j)
      row[j] = rstd * (dyRow[j] * scale[j] - meanG - normalised[j] * meanGXhat);
  }
  storeDoubles(outputs[0], x);
  storeDoubles(outputs[1], dscale);
  storeDoubles(outputs[2], dbias);
  return Status::ok();
}

Status runCrossEntropyGrad(const Attrs &attrs, const TensorRef &scores,
                           const TensorRef &labels, const TensorRef &dloss,
                           const TensorRef &out) {
  const Dims &dims = scores.type.dims;
  int64_t batch = dims[0], classes = dims[1];
  int64_t inner = product(dims, 2, dims.size());
  int64_t ignoreIndex = attrs.i("ignore_index");
  int64_t reduction = attrs.i("reduction");
  std::vector<int64_t> targets = loadInts(labels);
  // Validate every label and count the scored ones before writing anything.
  int64_t counted = 0;
  for (int64_t label : targets) {
    if (label == ignoreIndex)
      continue;
    if (label < 0 || label >= classes)
      return kernelError(
          attrs, "label " + std::to_string(label) + " out of range [0, " +
                     std::to_string(classes) + ") and not ignore_index " +
                     std::to_string(ignoreIndex));
    ++counted;
  }
  std::vector<double> values = loadAllAsDouble(scores);
  std::vector<double> upstream = loadAllAsDouble(dloss);
  std::vector<double> result(values.size(), 0.0);
  // mean with counted == 0: every position is ignored, so nothing below
  // divides by the zero count and the gradient stays 0 (the forward is NaN).
  // No positions at all: skip the batch loop, which empty labels do not
  // bound (as in runCrossEntropy).
  if (targets.empty())
    batch = 0;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t j = 0; j < inner; ++j) {
      int64_t label = targets[n * inner + j];
      if (label == ignoreIndex)
        continue;
      double weight = reduction == 0 ? upstream[n * inner + j] : upstream[0];
      if (reduction == 2)
        weight /= static_cast<double>(counted);
      const double *base = values.data() + n * classes * inner + j;
      double *grad = result.data() + n * classes * inner + j;
      // The forward's stable softmax: subtract the max before exp.
      double maxValue = -INFINITY;
      for (int64_t c = 0; c < classes; ++c)
        maxValue = std::max(maxValue, base[c * inner]);
      double sum = 0.0;
      for (int64_t c = 0; c < classes; ++c)
        sum += std::exp(base[c * inner] - maxValue);
      for (int64_t c = 0; c < classes; ++c) {
        double probability = std::exp(base[c * inner] - maxValue) / sum;
        grad[c * inner] = (probability - (c == label ? 1.0 : 0.0)) * weight;
      }
    }
  }
  storeDoubles(out, result);
  return Status::ok();
}

/// The 0-based optimizer step of an i64 [] tensor; negative is an error.
Status loadStep(const Attrs &attrs, const TensorRef &ref, int64_t &step) {
  step = loadAsInt64(ref, 0);
  if (step < 0)
    return kernelError(attrs, "step " + std::to_string(step) + " must be >= 0");
  return Status::ok();
}

// The optimizer kernels are elementwise: for each i they read every input's
// element i and then write every output's element i, so an output may alias
// its matching input exactly (param'<-param, m'<-m, v'<-v, buf'<-buf). The
// scalars lr and step are read before the loop. Each element is computed in
// double from the stored f32 values and rounded once per output, except in
// the fast (f32) AdamW below.

/// Worker threads that live as long as the process, for parallelFor: the
/// host AdamW of an offloaded plan runs once per weight (hundreds of calls
/// a step), and creating and joining a thread per chunk per call cost more
/// than the update of a small weight. One job at a time (callers queue on
/// a mutex); the calling thread takes tasks too. A job has more tasks than
/// threads, taken in order by whichever thread is free: on a machine whose
/// cores are also busy with other work (the CUDA backend's launching
/// thread, the copies' DMA), a thread that runs late leaves its share to
/// the others instead of holding up the whole job.
class HostPool {
public:
  static HostPool &get() {
    static HostPool pool;
    return pool;
  }

  /// Runs task(t) for t in [0, tasks) on `threads` threads (the caller and
  /// threads - 1 workers) and returns when all have run.
  void run(int64_t tasks, int64_t threads,
           const std::function<void(int64_t)> &task) {
    std::lock_guard<std::mutex> serial(runMutex_);
    ensureWorkers(std::min(tasks, threads) - 1);
    std::unique_lock<std::mutex> lock(mutex_);
    task_ = &task;
    tasks_ = tasks;
    next_ = 0;
    pending_ = tasks;
    ++generation_;
    lock.unlock();
    wake_.notify_all();
    lock.lock();
    takeTasks(lock);
    done_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
  }

  ~HostPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread &t : workers_)
      t.join();
  }

private:
  void ensureWorkers(int64_t count) {
    while (static_cast<int64_t>(workers_.size()) < count)
      workers_.emplace_back([this] { loop(); });
  }

  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || (generation_ != seen && next_ < tasks_); });
      if (stop_)
        return;
      seen = generation_;
      takeTasks(lock);
    }
  }

  /// Runs the job's next task until none is left (`lock` held on entry and
  /// on return).
  void takeTasks(std::unique_lock<std::mutex> &lock) {
    while (next_ < tasks_) {
      int64_t t = next_++;
      const std::function<void(int64_t)> *task = task_;
      lock.unlock();
      (*task)(t);
      lock.lock();
      if (--pending_ == 0)
        done_.notify_one();
    }
  }

  std::mutex runMutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)> *task_ = nullptr;
  int64_t tasks_ = 0, next_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

/// Runs body(begin, end) over [0, count) in contiguous chunks on several
/// threads when the work is large (the optimizer updates of big weights:
/// the host-resident update of an offloaded plan is CPU-bound), on the
/// HostPool's threads. Every element is computed by the same code either
/// way, so the result does not depend on the thread count.
/// COLOSSAL_CPU_THREADS overrides the count.
template <typename Body>
void parallelFor(int64_t count, const Body &body) {
  constexpr int64_t kMinPerThread = 1 << 16;
  int64_t threads = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (const char *env = std::getenv("COLOSSAL_CPU_THREADS"))
    threads = std::max<int64_t>(1, std::atoll(env));
  threads = std::min<int64_t>(threads, count / kMinPerThread);
  if (threads <= 1) {
    body(int64_t(0), count);
    return;
  }
  // Eight tasks a thread (each at least kMinPerThread elements): a late
  // thread holds up the job by a task, not by its whole share.
  int64_t tasks = std::min<int64_t>(threads * 8, count / kMinPerThread);
  int64_t chunk = (count + tasks - 1) / tasks;
  HostPool::get().run(tasks, threads, [&](int64_t t) {
    int64_t begin = t * chunk, end = std::min(count, begin + chunk);
    if (begin < end)
      body(begin, end);
  });
}

/// Which AdamW the CPU runs: COLOSSAL_CPU_ADAMW=exact (f64 per element, the
/// reference the unit tests' numpy model and the CUDA device kernel follow)
/// or fast (the default: f32 in PyTorch's operation order, vectorised).
Status adamwUsesExactMath(const Attrs &attrs, bool &exact) {
  exact = false;
  const char *env = std::getenv("COLOSSAL_CPU_ADAMW");
  if (!env || !*env || std::strcmp(env, "fast") == 0)
    return Status::ok();
  if (std::strcmp(env, "exact") == 0) {
    exact = true;
    return Status::ok();
  }
  return kernelError(attrs, std::string("COLOSSAL_CPU_ADAMW must be 'exact' "
                                        "or 'fast', got '") +
                                env + "'");
}

/// The f32 scalars of one fast AdamW call, each rounded once from the
/// double expression PyTorch evaluates in Python before its f32 tensor ops
/// see it (a Python float operand of an f32 op is cast to f32).
struct AdamWF32Scalars {
  float decay;      // 1 - lr * wd                    (param.mul_)
  float lerpCoeff;  // w or w - 1, w = 1 - beta1      (exp_avg.lerp_)
  float beta2;      //                                (exp_avg_sq.mul_)
  float oneMinusBeta2; //                             (addcmul_ value)
  float correction2Sqrt; // sqrt(1 - beta2^t)
  float eps;
  float negStepSize; // -lr / (1 - beta1^t)          (addcdiv_ value)
};

/// Elements per block of the fast AdamW: the block is copied into local
/// arrays (which alias nothing, so the compiler vectorises the arithmetic
/// without run-time overlap checks even though outputs may alias inputs),
/// updated, and copied back. A multiple of every vector width.
constexpr int64_t kAdamWBlock = 512;

/// One block of the fast AdamW on local copies. PyTorch's single-tensor
/// AdamW (what torch.optim.AdamW runs on CPU tensors), step by step:
///   param.mul_(1 - lr*wd)
///   exp_avg.lerp_(grad, w)            m + w*(g - m), or g + (w-1)*(g - m)
///                                     when w >= 0.5 (ATen's lerp)
///   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
///   denom = exp_avg_sq.sqrt() / sqrt(1 - beta2^t) + eps
///   param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1^t))
/// lerp's two forms are base + coeff * (g - m), base m or g: a template
/// parameter, so the loop has no branch. In f32 throughout, so the loop is
/// vectorised; every element goes through the same instructions (the tail
/// is padded), so the result does not depend on where blocks or threads
/// split.
template <bool kLerpFromM>
void adamwF32Block(float *p, float *m, float *v, const float *g,
                   const AdamWF32Scalars &s) {
  for (int64_t i = 0; i < kAdamWBlock; ++i) {
    float gi = g[i], mi = m[i];
    float pi = p[i] * s.decay;
    mi = (kLerpFromM ? mi : gi) + s.lerpCoeff * (gi - mi);
    float vi = v[i] * s.beta2;
    vi = vi + s.oneMinusBeta2 * gi * gi;
    float denom = std::sqrt(vi) / s.correction2Sqrt + s.eps;
    p[i] = pi + s.negStepSize * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

/// The fast AdamW over [begin, end): f32 param and states, an f32 or bf16
/// gradient (`gBf16` set for bf16, as raw bits), divided by `divisor` when
/// it is not null (adamw's optional operand: one IEEE f32 division of the
/// widened gradient, what an f32 `div` stores).
template <bool kLerpFromM>
void adamwF32Range(const float *p, const float *m, const float *v,
                   const float *gF32, const uint16_t *gBf16, float *pOut,
                   float *mOut, float *vOut, const AdamWF32Scalars &s,
                   const float *divisor, int64_t begin, int64_t end) {
  alignas(64) float pb[kAdamWBlock], mb[kAdamWBlock], vb[kAdamWBlock],
      gb[kAdamWBlock];
  for (int64_t start = begin; start < end; start += kAdamWBlock) {
    int64_t n = std::min(kAdamWBlock, end - start);
    size_t bytes = static_cast<size_t>(n) * sizeof(float);
    if (n < kAdamWBlock) {
      // The ragged tail: pad with values that keep the arithmetic finite.
      std::fill(pb, pb + kAdamWBlock, 0.0f);
      std::fill(mb, mb + kAdamWBlock, 0.0f);
      std::fill(vb, vb + kAdamWBlock, 0.0f);
      std::fill(gb, gb + kAdamWBlock, 0.0f);
    }
    std::memcpy(pb, p + start, bytes);
    std::memcpy(mb, m + start, bytes);
    std::memcpy(vb, v + start, bytes);
    if (gF32) {
      std::memcpy(gb, gF32 + start, bytes);
    } else {
      // bf16 is the high half of an f32: widening is a shift.
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits = static_cast<uint32_t>(gBf16[start + i]) << 16;
        std::memcpy(&gb[i], &bits, sizeof(float));
      }
    }
    if (divisor) {
      float d = *divisor;
      for (int64_t i = 0; i < n; ++i)
        gb[i] = gb[i] / d;
    }
    adamwF32Block<kLerpFromM>(pb, mb, vb, gb, s);
    std::memcpy(pOut + start, pb, bytes);
    std::memcpy(mOut + start, mb, bytes);
    std::memcpy(vOut + start, vb, bytes);
  }
}

Status runAdamW(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                const std::vector<TensorRef> &outputs) {
  const TensorRef &param = inputs[0], &grad = inputs[1];
  const float *p = static_cast<const float *>(param.data);
  const float *m = static_cast<const float *>(inputs[2].data);
  const float *v = static_cast<const float *>(inputs[3].data);
  double lr = loadAsDouble(inputs[4], 0);
  int64_t step = 0;
  COLOSSAL_RETURN_IF_ERROR(loadStep(attrs, inputs[5], step));
  bool exact = false;
  COLOSSAL_RETURN_IF_ERROR(adamwUsesExactMath(attrs, exact));
  double beta1 = attrs.f("beta1"), beta2 = attrs.f("beta2");
  double eps = attrs.f("eps"), weightDecay = attrs.f("weight_decay");
  // t = step + 1 >= 1 and beta < 1, so both corrections are > 0 (they
  // round to 1 once beta^t underflows).
  double t = static_cast<double>(step) + 1.0;
  double correction1 = 1.0 - std::pow(beta1, t);
  double correction2Sqrt = std::sqrt(1.0 - std::pow(beta2, t));
  double stepSize = lr / correction1;
  double decay = 1.0 - lr * weightDecay;
  float *pOut = static_cast<float *>(outputs[0].data);
  float *mOut = static_cast<float *>(outputs[1].data);
  float *vOut = static_cast<float *>(outputs[2].data);
  const float *gF32 = grad.type.dtype == DType::kF32
                          ? static_cast<const float *>(grad.data)
                          : nullptr;
  int64_t count = param.type.numElements();
  // adamw's optional seventh operand: g = grad / divisor (f32).
  const float *divisor =
      inputs.size() > 6 ? static_cast<const float *>(inputs[6].data) : nullptr;
  if (!exact && (gF32 || grad.type.dtype == DType::kBF16)) {
    AdamWF32Scalars s;
    s.decay = static_cast<float>(decay);
    float w = static_cast<float>(1.0 - beta1);
    bool small = std::fabs(w) < 0.5f; // ATen's is_lerp_weight_small
    s.lerpCoeff = small ? w : w - 1.0f;
    s.beta2 = static_cast<float>(beta2);
    s.oneMinusBeta2 = static_cast<float>(1.0 - beta2);
    s.correction2Sqrt = static_cast<float>(correction2Sqrt);
    s.eps = static_cast<float>(eps);
    s.negStepSize = static_cast<float>(-stepSize);
    const uint16_t *gBf16 =
        gF32 ? nullptr : static_cast<const uint16_t *>(grad.data);
    parallelFor(count, [&](int64_t begin, int64_t end) {
      if (small)
        adamwF32Range<true>(p, m, v, gF32, gBf16, pOut, mOut, vOut, s,
                            divisor, begin, end);
      else
        adamwF32Range<false>(p, m, v, gF32, gBf16, pOut, mOut, vOut, s,
                             divisor, begin, end);
    });
    return Status::ok();
  }
  parallelFor(count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      double g = gF32 ? gF32[i] : loadAsDouble(grad, i);
      if (divisor) // the f32 quotient the unfused step stored
        g = static_cast<float>(static_cast<float>(g) / *divisor);
      double pi = p[i], mi = m[i], vi = v[i];
      pi *= decay;
      mi = beta1 * mi + (1.0 - beta1) * g;
      vi = beta2 * vi + (1.0 - beta2) * g * g;
      double denom = std::sqrt(vi) / correction2Sqrt + eps;
      pi -= stepSize * mi / denom;
      pOut[i] = static_cast<float>(pi);
      mOut[i] = static_cast<float>(mi);
      vOut[i] = static_cast<float>(vi);
    }
  });
  return Status::ok();
}

/// adamw_norm: g = grad / divisor, the gradient widened to f32 and divided
/// in one IEEE f32 division (what `div` of the f32-widened gradient
/// stores); sumsq = the sum of g * g in double in index order (what
/// reduce_sum_square of g gives); then adamw with the divisor operand. So a
/// step built with adamw_norm is bitwise the one built with div,
/// reduce_sum_square and adamw.
Status runAdamWNorm(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                    const std::vector<TensorRef> &outputs) {
  const TensorRef &grad = inputs[1];
  int64_t count = grad.type.numElements();
  float divisor = *static_cast<const float *>(inputs[6].data);
  // The sum first (the update may write over nothing it reads here).
  double sum = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    float g = static_cast<float>(loadAsDouble(grad, i)) / divisor;
    double x = g;
    sum += x * x; // in double: the square of a float is exact
  }
  // adamw with its divisor operand: the same quotients.
  std::vector<TensorRef> adamOutputs(outputs.begin(), outputs.begin() + 3);
  COLOSSAL_RETURN_IF_ERROR(runAdamW(attrs, inputs, adamOutputs));
  *static_cast<float *>(outputs[3].data) = static_cast<float>(sum);
  return Status::ok();
}

Status runSgd(const Attrs &attrs, const std::vector<TensorRef> &inputs,
              const std::vector<TensorRef> &outputs) {
  const TensorRef &param = inputs[0], &grad = inputs[1];
  const float *p = static_cast<const float *>(param.data);
  const float *buf = static_cast<const float *>(inputs[2].data);
  double lr = loadAsDouble(inputs[3], 0);
  int64_t step = 0;
  COLOSSAL_RETURN_IF_ERROR(loadStep(attrs, inputs[4], step));
  double momentum = attrs.f("momentum"), dampening = attrs.f("dampening");
  double weightDecay = attrs.f("weight_decay");
  bool nesterov = attrs.i("nesterov") != 0;
  float *pOut = static_cast<float *>(outputs[0].data);
  float *bufOut = static_cast<float *>(outputs[1].data);
  const float *gF32 = grad.type.dtype == DType::kF32
                          ? static_cast<const float *>(grad.data)
                          : nullptr;
  int64_t count = param.type.numElements();
  for (int64_t i = 0; i < count; ++i) {
    double g = gF32 ? gF32[i] : loadAsDouble(grad, i);
    double pi = p[i], bi = buf[i];
    g += weightDecay * pi;
    if (momentum != 0.0) {
      // PyTorch starts the buffer as a copy of the first gradient.
      bi = step == 0 ? g : momentum * bi + (1.0 - dampening) * g;
      g = nesterov ? g + momentum * bi : bi;
    }
    pi -= lr * g;
    pOut[i] = static_cast<float>(pi);
    bufOut[i] = static_cast<float>(bi); // momentum 0: buf unchanged
  }
  return Status::ok();
}

Status runCopy(const TensorRef &in, const TensorRef &out) {
  // Reshape outputs may alias their input (same bytes): nothing to move then.
  if (in.data != out.data)
    copyBytes(out.data, in.data, static_cast<size_t>(in.type.sizeBytes()));
  return Status::ok();
}

} // namespace

namespace {

/// True when a kernel can neither write nor report anything: every output
/// is empty, and so is every input whose values the kernel checks (indices,
/// labels), the only source of a data-dependent error. Such calls return
/// before the kernel, because kernels loop over, and size scratch buffers
/// by, partial products of dims, which an empty tensor does not bound: a
/// 0 x 2^40 tensor holds no bytes and passes every size check, yet pad
/// would build a 2^40-entry index table and softmax loop 2^40 times.
bool hasNoEffect(OpKind kind, const std::vector<TensorRef> &inputs,
                 const std::vector<TensorRef> &outputs) {
  for (const TensorRef &out : outputs)
    if (out.type.numElements() != 0)
      return false;
  switch (kind) {
  case OpKind::Gather:
  case OpKind::GatherND:
  case OpKind::GatherElements:
  case OpKind::GatherGrad:
  case OpKind::GatherElementsGrad:
  case OpKind::SoftmaxCrossEntropy:
  case OpKind::SoftmaxCrossEntropyGrad:
    return inputs[1].type.numElements() == 0; // the indices or labels
  case OpKind::AdamW:
  case OpKind::AdamWNorm:
  case OpKind::Sgd:
    return false; // the step input is checked whatever the parameters hold
  default:
    return true;
  }
}

} // namespace

Status runCpuKernel(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                    const std::vector<TensorRef> &outputs) {
  const OpInfo *info = lookupOp(static_cast<uint32_t>(attrs.kind()));
  if (!info)
    return COLOSSAL_ERROR(
        kInternal, "no kernel for op kind " +
                       std::to_string(static_cast<uint32_t>(attrs.kind())));
  int64_t count = static_cast<int64_t>(inputs.size());
  if (count < info->minInputs ||
      (info->maxInputs >= 0 && count > info->maxInputs) ||
      outputs.size() != static_cast<size_t>(info->numOutputs))
    return COLOSSAL_ERROR(kInternal,
                          std::string(info->name) + ": kernel called with " +
                              std::to_string(inputs.size()) + " inputs and " +
                              std::to_string(outputs.size()) + " outputs");
  // Events order streams. This backend runs one instruction at a time in
  // plan order, a valid serialization of every stream, so each event has
  // been reached when it is waited for: nothing to do.
  if (attrs.kind() == OpKind::EventRecord ||
      attrs.kind() == OpKind::EventWait)
    return Status::ok();
  if (hasNoEffect(attrs.kind(), inputs, outputs))
    return Status::ok();
  const TensorRef &out = outputs[0];
  switch (attrs.kind()) {
  case OpKind::Neg:
  case OpKind::Abs:
  case OpKind::Exp:
  case OpKind::Log:
  case OpKind::Sqrt:
  case OpKind::Rsqrt:
  case OpKind::Reciprocal:
  case OpKind::Tanh:
  case OpKind::Sigmoid:
  case OpKind::Relu:
  case OpKind::Erf:
  case OpKind::Sin:
  case OpKind::Cos:
  case OpKind::Gelu:
  case OpKind::Not:
    return runUnary(attrs, inputs[0], out);
  case OpKind::Identity:
  case OpKind::Reshape:
    return runCopy(inputs[0], out);
  case OpKind::Cast:
    return runCast(inputs[0], out);
  case OpKind::Add:
  case OpKind::Sub:
  case OpKind::Mul:
  case OpKind::Div:
  case OpKind::Pow:
  case OpKind::Max:
  case OpKind::Min:
  case OpKind::And:
  case OpKind::Or:
  case OpKind::Xor:
  case OpKind::Equal:
  case OpKind::Less:
  case OpKind::LessEqual:
  case OpKind::Greater:
  case OpKind::GreaterEqual:
    return runBinary(attrs, inputs[0], inputs[1], out);
  case OpKind::Where:
    return runWhere(inputs[0], inputs[1], inputs[2], out);
  case OpKind::MatMul:
    return runMatMul(attrs, inputs[0], inputs[1], out);
  case OpKind::ReduceSum:
  case OpKind::ReduceMean:
  case OpKind::ReduceMax:
  case OpKind::ReduceMin:
  case OpKind::ReduceSumSquare:
    return runReduce(attrs, inputs[0], out);
  case OpKind::Softmax:
  case OpKind::LogSoftmax:
    return runSoftmax(attrs, inputs[0], out);
  case OpKind::LayerNorm:
    return runLayerNorm(attrs, inputs, out);
  case OpKind::Gather:
    return runGather(attrs, inputs[0], inputs[1], out);
  case OpKind::GatherND:
    return runGatherND(attrs, inputs[0], inputs[1], out);
  case OpKind::CumSum:
    return runCumSum(attrs, inputs[0], out);
  case OpKind::GatherElements:
    return runGatherElements(attrs, inputs[0], inputs[1], out);
  case OpKind::GatherElementsGrad:
    return runGatherElementsGrad(attrs, inputs[0], inputs[1], out);
  case OpKind::Trilu:
    return runTrilu(attrs, inputs[0], out);
  case OpKind::Expand:
    stridedCopy(inputs[0], out,
                broadcastStrides(inputs[0].type.dims, out.type.dims), 0);
    return Status::ok();
  case OpKind::Transpose:
    return runTranspose(attrs, inputs[0], out);
  case OpKind::Slice:
    return runSlice(attrs, inputs[0], out);
  case OpKind::Concat:
    return runConcat(attrs, inputs, out);
  case OpKind::Pad:
    return runPad(attrs, inputs[0], out);
  case OpKind::Fill:
    return runFill(attrs, out);
  case OpKind::SoftmaxCrossEntropy:
    return runCrossEntropy(attrs, inputs[0], inputs[1], out);
  case OpKind::GatherGrad:
    return runGatherGrad(attrs, inputs[0], inputs[1], out);
  case OpKind::SliceGrad:
    return runSliceGrad(attrs, inputs[0], out);
  case OpKind::LayerNormGrad:
    return runLayerNormGrad(attrs, inputs, outputs);
  case OpKind::SoftmaxCrossEntropyGrad:
    return runCrossEntropyGrad(attrs, inputs[0], inputs[1], inputs[2], out);
  case OpKind::AdamW:
    return runAdamW(attrs, inputs, outputs);
  case OpKind::AdamWNorm:
    return runAdamWNorm(attrs, inputs, outputs);
  case OpKind::EventRecord: // returned above
  case OpKind::EventWait:
    return Status::ok();
  case OpKind::Sgd:
    return runSgd(attrs, inputs, outputs);
  case OpKind::Attention:
    return runAttentionCpu(attrs, inputs, outputs);
  case OpKind::AttentionGrad:
    return runAttentionGradCpu(attrs, inputs, outputs);
  case OpKind::FusedElementwise:
    return runFusedElementwiseCpu(attrs, inputs, out);
  }
  return COLOSSAL_ERROR(kInternal, std::string(info->name) + ": no CPU kernel");
}

Status evaluateOp(const Attrs &attrs, const std::vector<HostTensor> &inputs,
                  std::vector<HostTensor> &outputs) {
  std::vector<TensorType> inputTypes;
  for (const HostTensor &tensor : inputs)
    inputTypes.push_back(tensor.type);
  std::vector<TensorType> outputTypes;
  COLOSSAL_RETURN_IF_ERROR(inferOutputTypes(attrs, inputTypes, outputTypes));
  std::vector<TensorRef> inputRefs;
  for (const HostTensor &tensor : inputs) {
    if (tensor.bytes.size() != tensor.type.sizeBytes())
      return COLOSSAL_ERROR(kInvalidArgument,
                            std::string(opInfo(attrs.kind()).name) +
                                ": input " + tensor.type.toString() + " has " +
                                std::to_string(tensor.bytes.size()) +
                                " bytes, expected " +
                                std::to_string(tensor.type.sizeBytes()));
    inputRefs.push_back(tensor.ref());
  }
  std::vector<HostTensor> results;
  std::vector<TensorRef> outputRefs;
  for (const TensorType &type : outputTypes)
    results.emplace_back(type);
  for (HostTensor &tensor : results)
    outputRefs.push_back(tensor.ref());
  COLOSSAL_RETURN_IF_ERROR(runCpuKernel(attrs, inputRefs, outputRefs));
  outputs = std::move(results);
  return Status::ok();
}

} // namespace colossal::runtime
