//===- DType.h - Element types shared by the compiler and the runtime -----===//
//
// The numeric values are part of the plan file format (PlanFormat.h): never
// renumber an existing entry.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_DTYPE_H
#define COLOSSAL_RUNTIME_DTYPE_H

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace colossal::runtime {

enum class DType : uint8_t {
  kF32 = 1,
  kF16 = 2,
  kBF16 = 3,
  kF64 = 4,
  kI64 = 5,
  kI32 = 6,
  kI8 = 7,
  kU8 = 8,
  kBool = 9, ///< one byte per element, 0 or 1
};

inline constexpr int kMaxDType = 9;

/// Bytes per element, or 0 for a value that is not a DType.
size_t dtypeSizeBytes(DType dtype);
/// "f32", "bf16", "i64", "bool", ...; "?" for a value that is not a DType.
const char *dtypeName(DType dtype);
/// The safetensors spelling: "F32", "BF16", "I64", "BOOL", ...
const char *dtypeSafetensorsName(DType dtype);
std::optional<DType> dtypeFromSafetensorsName(std::string_view name);
/// True for raw values that name a DType (used when reading untrusted files).
bool isValidDType(uint32_t raw);
bool isFloatDType(DType dtype);
bool isIntegerDType(DType dtype); ///< i64, i32, i8, u8 (not bool)

/// bf16 <-> f32 with round-to-nearest-even, as PyTorch does; NaN stays NaN.
uint16_t f32ToBf16(float value);
float bf16ToF32(uint16_t bits);
/// IEEE half <-> f32, round-to-nearest-even.
uint16_t f32ToF16(float value);
float f16ToF32(uint16_t bits);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_DTYPE_H
