//===- DType.cpp - Element types shared by the compiler and the runtime ---===//
//
// Names, sizes and the bf16/f16 <-> f32 conversions. The conversions work on
// bit patterns so that they round the same way on every host, whatever the
// compiler or FPU does with narrow types.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/DType.h"

#include <cmath>
#include <cstring>

namespace colossal::runtime {

size_t dtypeSizeBytes(DType dtype) {
  switch (dtype) {
  case DType::kF32:
  case DType::kI32:
    return 4;
  case DType::kF16:
  case DType::kBF16:
    return 2;
  case DType::kF64:
  case DType::kI64:
    return 8;
  case DType::kI8:
  case DType::kU8:
  case DType::kBool:
    return 1;
  }
  return 0;
}

const char *dtypeName(DType dtype) {
  switch (dtype) {
  case DType::kF32:
    return "f32";
  case DType::kF16:
    return "f16";
  case DType::kBF16:
    return "bf16";
  case DType::kF64:
    return "f64";
  case DType::kI64:
    return "i64";
  case DType::kI32:
    return "i32";
  case DType::kI8:
    return "i8";
  case DType::kU8:
    return "u8";
  case DType::kBool:
    return "bool";
  }
  return "?";
}

const char *dtypeSafetensorsName(DType dtype) {
  switch (dtype) {
  case DType::kF32:
    return "F32";
  case DType::kF16:
    return "F16";
  case DType::kBF16:
    return "BF16";
  case DType::kF64:
    return "F64";
  case DType::kI64:
    return "I64";
  case DType::kI32:
    return "I32";
  case DType::kI8:
    return "I8";
  case DType::kU8:
    return "U8";
  case DType::kBool:
    return "BOOL";
  }
  return "?";
}

std::optional<DType> dtypeFromSafetensorsName(std::string_view name) {
  for (uint32_t raw = 1; raw <= static_cast<uint32_t>(kMaxDType); ++raw) {
    DType dtype = static_cast<DType>(raw);
    if (name == dtypeSafetensorsName(dtype))
      return dtype;
  }
  return std::nullopt;
}

bool isValidDType(uint32_t raw) {
  return raw >= 1 && raw <= static_cast<uint32_t>(kMaxDType);
}

bool isFloatDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 ||
         dtype == DType::kBF16 || dtype == DType::kF64;
}

bool isIntegerDType(DType dtype) {
  return dtype == DType::kI64 || dtype == DType::kI32 || dtype == DType::kI8 ||
         dtype == DType::kU8;
}

//===----------------------------------------------------------------------===//
// bf16 and f16
//===----------------------------------------------------------------------===//

static uint32_t floatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

static float bitsFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

uint16_t f32ToBf16(float value) {
  uint32_t bits = floatBits(value);
  // NaN: keep the sign and the top payload bits and force the quiet bit, so
  // that truncation cannot turn a NaN with a low payload into an infinity.
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  // Round to nearest even on the 16 dropped bits. A carry out of the
  // mantissa bumps the exponent, which is the right result (up to infinity).
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float bf16ToF32(uint16_t bits) {
  return bitsFloat(static_cast<uint32_t>(bits) << 16);
}

uint16_t f32ToF16(float value) {
  uint32_t bits = floatBits(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t absBits = bits & 0x7fffffffu;
  if (absBits > 0x7f800000u) // NaN: quiet, keep the top payload bits
    return sign | 0x7e00u | static_cast<uint16_t>((absBits >> 13) & 0x3ffu);
  if (absBits == 0x7f800000u)
    return sign | 0x7c00u;
  int32_t exponent = static_cast<int32_t>(absBits >> 23) - 127;
  uint32_t mantissa = absBits & 0x7fffffu;
  if (exponent > 15) // >= 65536: beyond every rounding of the largest half
    return sign | 0x7c00u;
  if (exponent >= -14) {
    // Normal half: drop 13 mantissa bits with round-to-nearest-even; a carry
    // into the exponent is correct, including the overflow to 0x7c00 (inf).
    uint32_t half =
        (static_cast<uint32_t>(exponent + 15) << 10) | (mantissa >> 13);
    uint32_t rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
      ++half;
    return sign | static_cast<uint16_t>(half);
  }
  // Subnormal half (unit 2^-24). Values up to 2^-25 (the halfway point to the
  // smallest subnormal, a tie that goes to the even zero) become zero.
  if (exponent < -25)
    return sign;
  uint32_t significand = mantissa | 0x800000u; // value = sig * 2^(e-23)
  uint32_t shift = static_cast<uint32_t>(-(exponent + 1)); // 14..24
  uint32_t half = significand >> shift;
  uint32_t rest = significand & ((1u << shift) - 1u);
  uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u)))
    ++half; // may become 0x400, the smallest normal: still the right bits
  return sign | static_cast<uint16_t>(half);
}

float f16ToF32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) // inf and NaN, payload kept
    return bitsFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in f32.
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return bitsFloat(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

} // namespace colossal::runtime
