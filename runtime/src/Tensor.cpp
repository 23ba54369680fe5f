//===- Tensor.cpp - Tensor types and element access -----------------------===//
//
// Element access by dtype: the one place that defines how a value converts
// between dtypes, used by the CPU kernels, constant folding and colossal-run.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Tensor.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace colossal::runtime {

int64_t TensorType::numElements() const {
  int64_t count = 1;
  for (int64_t dim : dims)
    count *= dim;
  return count;
}

std::string TensorType::toString() const {
  std::string text;
  for (int64_t dim : dims)
    text += std::to_string(dim) + "x";
  return text + dtypeName(dtype);
}

namespace {

template <typename T> T loadRaw(const TensorRef &ref, int64_t index) {
  T value;
  std::memcpy(&value,
              static_cast<const uint8_t *>(ref.data) + index * sizeof(T),
              sizeof(T));
  return value;
}

template <typename T>
void storeRaw(const TensorRef &ref, int64_t index, T value) {
  std::memcpy(static_cast<uint8_t *>(ref.data) + index * sizeof(T), &value,
              sizeof(T));
}

/// double -> float rounded to odd: exact values stay, inexact ones become the
/// neighbour (toward or away from zero) whose last mantissa bit is 1. Rounding
/// that result once more to nearest even at bf16/f16 precision gives the
/// correctly rounded narrow value, which double -> f32 -> narrow (two
/// round-to-nearest steps) does not always do.
float roundToOddFloat(double value) {
  float narrow = static_cast<float>(value);
  if (std::isnan(value) || static_cast<double>(narrow) == value)
    return narrow;
  if (std::fabs(static_cast<double>(narrow)) > std::fabs(value))
    narrow = std::nextafter(narrow, 0.0f); // now truncated toward zero
  uint32_t bits;
  std::memcpy(&bits, &narrow, sizeof(bits));
  bits |= 1u;
  std::memcpy(&narrow, &bits, sizeof(bits));
  return narrow;
}

/// Truncates toward zero and saturates to [lo, hi]; NaN becomes 0.
int64_t truncSaturate(double value, int64_t lo, int64_t hi) {
  if (std::isnan(value))
    return 0;
  if (value <= static_cast<double>(lo))
    return lo;
  if (value >= static_cast<double>(hi))
    return hi;
  return static_cast<int64_t>(value);
}

} // namespace

double loadAsDouble(const TensorRef &ref, int64_t index) {
  switch (ref.type.dtype) {
  case DType::kF32:
    return loadRaw<float>(ref, index);
  case DType::kF16:
    return f16ToF32(loadRaw<uint16_t>(ref, index));
  case DType::kBF16:
    return bf16ToF32(loadRaw<uint16_t>(ref, index));
  case DType::kF64:
    return loadRaw<double>(ref, index);
  case DType::kI64:
    return static_cast<double>(loadRaw<int64_t>(ref, index));
  case DType::kI32:
    return loadRaw<int32_t>(ref, index);
  case DType::kI8:
    return loadRaw<int8_t>(ref, index);
  case DType::kU8:
    return loadRaw<uint8_t>(ref, index);
  case DType::kBool:
    return loadRaw<uint8_t>(ref, index) != 0 ? 1.0 : 0.0;
  }
  return 0.0;
}

// Float targets round to nearest even. Integer targets truncate toward zero
// and saturate to the dtype's range (NaN stores 0), so that no conversion is
// undefined behaviour whatever the value.
std::vector<double> loadAllAsDouble(const TensorRef &ref) {
  int64_t count = ref.type.numElements();
  std::vector<double> values(static_cast<size_t>(count));
  if (ref.type.dtype == DType::kF32) {
    const float *data = static_cast<const float *>(ref.data);
    for (int64_t i = 0; i < count; ++i)
      values[i] = data[i];
  } else {
    for (int64_t i = 0; i < count; ++i)
      values[i] = loadAsDouble(ref, i);
  }
  return values;
}

void storeFromDouble(const TensorRef &ref, int64_t index, double value) {
  switch (ref.type.dtype) {
  case DType::kF32:
    storeRaw<float>(ref, index, static_cast<float>(value));
    return;
  case DType::kF16:
    storeRaw<uint16_t>(ref, index, f32ToF16(roundToOddFloat(value)));
    return;
  case DType::kBF16:
    storeRaw<uint16_t>(ref, index, f32ToBf16(roundToOddFloat(value)));
    return;
  case DType::kF64:
    storeRaw<double>(ref, index, value);
    return;
  case DType::kI64:
    storeRaw<int64_t>(ref, index,
                      truncSaturate(value, std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max()));
    return;
  case DType::kI32:
    storeRaw<int32_t>(
        ref, index,
        static_cast<int32_t>(truncSaturate(value, INT32_MIN, INT32_MAX)));
    return;
  case DType::kI8:
    storeRaw<int8_t>(
        ref, index,
        static_cast<int8_t>(truncSaturate(value, INT8_MIN, INT8_MAX)));
    return;
  case DType::kU8:
    storeRaw<uint8_t>(ref, index,
                      static_cast<uint8_t>(truncSaturate(value, 0, UINT8_MAX)));
    return;
  case DType::kBool:
    storeRaw<uint8_t>(ref, index, value != 0.0 ? 1 : 0);
    return;
  }
}

int64_t loadAsInt64(const TensorRef &ref, int64_t index) {
  switch (ref.type.dtype) {
  case DType::kI64:
    return loadRaw<int64_t>(ref, index);
  case DType::kI32:
    return loadRaw<int32_t>(ref, index);
  case DType::kI8:
    return loadRaw<int8_t>(ref, index);
  case DType::kU8:
    return loadRaw<uint8_t>(ref, index);
  case DType::kBool:
    return loadRaw<uint8_t>(ref, index) != 0 ? 1 : 0;
  case DType::kF32:
  case DType::kF16:
  case DType::kBF16:
  case DType::kF64:
    return truncSaturate(loadAsDouble(ref, index),
                         std::numeric_limits<int64_t>::min(),
                         std::numeric_limits<int64_t>::max());
  }
  return 0;
}

// Narrower integer targets wrap (two's complement), as a C++ or numpy cast
// does; float targets round to nearest even.
void storeFromInt64(const TensorRef &ref, int64_t index, int64_t value) {
  switch (ref.type.dtype) {
  case DType::kI64:
    storeRaw<int64_t>(ref, index, value);
    return;
  case DType::kI32:
    storeRaw<int32_t>(ref, index,
                      static_cast<int32_t>(static_cast<uint32_t>(value)));
    return;
  case DType::kI8:
    storeRaw<int8_t>(ref, index,
                     static_cast<int8_t>(static_cast<uint8_t>(value)));
    return;
  case DType::kU8:
    storeRaw<uint8_t>(ref, index, static_cast<uint8_t>(value));
    return;
  case DType::kBool:
    storeRaw<uint8_t>(ref, index, value != 0 ? 1 : 0);
    return;
  case DType::kF32:
    storeRaw<float>(ref, index, static_cast<float>(value));
    return;
  case DType::kF64:
    storeRaw<double>(ref, index, static_cast<double>(value));
    return;
  case DType::kF16:
  case DType::kBF16:
    storeFromDouble(ref, index, static_cast<double>(value));
    return;
  }
}

} // namespace colossal::runtime
