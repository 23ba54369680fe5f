//===- Tensor.h - Tensor types and host tensors -------------------*- C++ -*-===//
//
// TensorType is a dtype plus a static shape (every dim >= 0, rank <= kMaxRank).
// HostTensor owns its bytes; TensorRef points at bytes owned elsewhere (an
// arena, a HostTensor). Layout is always dense row-major.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_TENSOR_H
#define COLOSSAL_RUNTIME_TENSOR_H

#include "colossal/runtime/DType.h"

#include <cstdint>
#include <string>
#include <vector>

namespace colossal::runtime {

inline constexpr size_t kMaxRank = 8;

struct TensorType {
  DType dtype = DType::kF32;
  std::vector<int64_t> dims;

  size_t rank() const { return dims.size(); }
  /// Product of dims (1 for a scalar). Callers validate dims first.
  int64_t numElements() const;
  uint64_t sizeBytes() const {
    return static_cast<uint64_t>(numElements()) * dtypeSizeBytes(dtype);
  }
  bool operator==(const TensorType &o) const {
    return dtype == o.dtype && dims == o.dims;
  }
  bool operator!=(const TensorType &o) const { return !(*this == o); }
  /// "2x16xf32", "f32" for a scalar; the same spelling as MLIR's shapes.
  std::string toString() const;
};

/// A non-owning view of dense row-major data.
struct TensorRef {
  TensorType type;
  void *data = nullptr;
};

/// A tensor that owns its bytes (used for inputs, outputs, weights and the
/// compiler's constant folding).
struct HostTensor {
  TensorType type;
  std::vector<uint8_t> bytes; ///< exactly type.sizeBytes() bytes

  HostTensor() = default;
  explicit HostTensor(TensorType t)
      : type(std::move(t)), bytes(type.sizeBytes(), 0) {}
  TensorRef ref() { return TensorRef{type, bytes.data()}; }
  TensorRef ref() const {
    return TensorRef{type, const_cast<uint8_t *>(bytes.data())};
  }
  template <typename T> T *as() { return reinterpret_cast<T *>(bytes.data()); }
  template <typename T> const T *as() const {
    return reinterpret_cast<const T *>(bytes.data());
  }
};

/// Reads element `index` of `ref` as a double (bf16/f16 widened, bool 0/1).
double loadAsDouble(const TensorRef &ref, int64_t index);
/// Writes `value` into element `index`, converting to ref's dtype (floats
/// round to nearest even; integers truncate toward zero; bool is value != 0).
void storeFromDouble(const TensorRef &ref, int64_t index, double value);
/// Every element of `ref` as a double, in order (f32 read directly: the
/// reference kernels widen whole tensors this way).
std::vector<double> loadAllAsDouble(const TensorRef &ref);
/// Integer element access without a round trip through double.
int64_t loadAsInt64(const TensorRef &ref, int64_t index);
void storeFromInt64(const TensorRef &ref, int64_t index, int64_t value);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_TENSOR_H
