//===- DTypeTest.cpp - DType names, sizes and bf16/f16 rounding -----------===//
//
// Expected bit patterns are worked out by hand (comments show the arithmetic)
// or by numpy's float16, which rounds to nearest even:
//   /usr/bin/python3 -c "import numpy as np; v = 65519.0;
//     print(hex(np.array(v, np.float32).astype(np.float16).view(np.uint16)))"
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/DType.h"
#include "colossal/runtime/Status.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

using namespace colossal::runtime;

namespace {

float floatFromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

bool isBf16NaN(uint16_t bits) {
  return (bits & 0x7f80u) == 0x7f80u && (bits & 0x007fu) != 0;
}

bool isF16NaN(uint16_t bits) {
  return (bits & 0x7c00u) == 0x7c00u && (bits & 0x03ffu) != 0;
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(dtypeSizeBytes(DType::kF32), 4u);
  EXPECT_EQ(dtypeSizeBytes(DType::kBF16), 2u);
  EXPECT_EQ(dtypeSizeBytes(DType::kF16), 2u);
  EXPECT_EQ(dtypeSizeBytes(DType::kF64), 8u);
  EXPECT_EQ(dtypeSizeBytes(DType::kI64), 8u);
  EXPECT_EQ(dtypeSizeBytes(DType::kI32), 4u);
  EXPECT_EQ(dtypeSizeBytes(DType::kI8), 1u);
  EXPECT_EQ(dtypeSizeBytes(DType::kU8), 1u);
  EXPECT_EQ(dtypeSizeBytes(DType::kBool), 1u);
  EXPECT_EQ(dtypeSizeBytes(static_cast<DType>(0)), 0u);
  EXPECT_STREQ(dtypeName(DType::kBF16), "bf16");
  EXPECT_STREQ(dtypeName(DType::kBool), "bool");
  EXPECT_STREQ(dtypeName(static_cast<DType>(42)), "?");
  EXPECT_STREQ(dtypeSafetensorsName(DType::kBF16), "BF16");
  EXPECT_STREQ(dtypeSafetensorsName(DType::kBool), "BOOL");
}

TEST(DTypeTest, SafetensorsNamesRoundTrip) {
  for (uint32_t raw = 1; raw <= kMaxDType; ++raw) {
    DType dtype = static_cast<DType>(raw);
    std::optional<DType> back =
        dtypeFromSafetensorsName(dtypeSafetensorsName(dtype));
    ASSERT_TRUE(back.has_value()) << raw;
    EXPECT_EQ(*back, dtype);
  }
  EXPECT_FALSE(dtypeFromSafetensorsName("F8_E4M3").has_value());
  EXPECT_FALSE(dtypeFromSafetensorsName("f32").has_value()); // case matters
  EXPECT_FALSE(dtypeFromSafetensorsName("").has_value());
}

TEST(DTypeTest, Classification) {
  EXPECT_FALSE(isValidDType(0));
  EXPECT_TRUE(isValidDType(1));
  EXPECT_TRUE(isValidDType(9));
  EXPECT_FALSE(isValidDType(10));
  EXPECT_FALSE(isValidDType(0xffffffffu));
  EXPECT_TRUE(isFloatDType(DType::kBF16));
  EXPECT_FALSE(isFloatDType(DType::kI32));
  EXPECT_TRUE(isIntegerDType(DType::kU8));
  EXPECT_FALSE(isIntegerDType(DType::kBool));
  EXPECT_FALSE(isIntegerDType(DType::kF64));
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  // bf16 keeps the top 16 bits of an f32; the low 16 bits decide rounding.
  EXPECT_EQ(f32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(f32ToBf16(floatFromBits(0x3f807fffu)), 0x3f80); // below half
  EXPECT_EQ(f32ToBf16(floatFromBits(0x3f808000u)), 0x3f80); // tie, 0x3f80 even
  EXPECT_EQ(f32ToBf16(floatFromBits(0x3f818000u)), 0x3f82); // tie, 0x3f82 even
  EXPECT_EQ(f32ToBf16(floatFromBits(0x3f808001u)), 0x3f81); // above half
  EXPECT_EQ(f32ToBf16(floatFromBits(0xbf808001u)), 0xbf81); // sign kept
  // 0x3fffffff rounds up and carries into the exponent: 2.0 = 0x4000.
  EXPECT_EQ(f32ToBf16(floatFromBits(0x3fffffffu)), 0x4000);
  // The largest f32 is past the largest bf16's halfway point: infinity.
  EXPECT_EQ(f32ToBf16(floatFromBits(0x7f7fffffu)), 0x7f80);
  EXPECT_EQ(f32ToBf16(INFINITY), 0x7f80);
  EXPECT_EQ(f32ToBf16(-INFINITY), 0xff80);
  EXPECT_EQ(f32ToBf16(-0.0f), 0x8000);
  // Smallest f32 subnormal (bits 0x1): low half 0x0001 < 0x8000, rounds to 0.
  EXPECT_EQ(f32ToBf16(floatFromBits(0x00000001u)), 0x0000);
}

TEST(DTypeTest, Bf16KeepsNaN) {
  // A NaN whose payload sits only in the low 16 bits must not become inf.
  uint16_t low = f32ToBf16(floatFromBits(0x7f800001u));
  EXPECT_TRUE(isBf16NaN(low)) << std::hex << low;
  EXPECT_TRUE(isBf16NaN(f32ToBf16(std::nanf(""))));
  EXPECT_EQ(f32ToBf16(floatFromBits(0xffc00000u)), 0xffc0); // -qNaN
  EXPECT_TRUE(std::isnan(bf16ToF32(0x7fc0)));
}

TEST(DTypeTest, Bf16ToF32IsExact) {
  EXPECT_EQ(bf16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(bf16ToF32(0x4049), 3.140625f); // 0x40490000 = 1.5703125 * 2
  EXPECT_EQ(bf16ToF32(0xc000), -2.0f);
  EXPECT_EQ(bf16ToF32(0x7f80), INFINITY);
  // Every non-NaN bf16 survives bf16 -> f32 -> bf16 unchanged.
  for (uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    if (isBf16NaN(static_cast<uint16_t>(bits)))
      continue;
    ASSERT_EQ(f32ToBf16(bf16ToF32(static_cast<uint16_t>(bits))), bits);
  }
}

TEST(DTypeTest, F16RoundsToNearestEven) {
  // Expected bits from numpy float16 (see the file comment).
  EXPECT_EQ(f32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(f32ToF16(65504.0f), 0x7bff); // largest half
  EXPECT_EQ(f32ToF16(65519.0f), 0x7bff); // below the halfway 65520
  EXPECT_EQ(f32ToF16(65520.0f), 0x7c00); // tie rounds to even: inf
  EXPECT_EQ(f32ToF16(1e10f), 0x7c00);
  EXPECT_EQ(f32ToF16(std::ldexp(1.0f, -24)), 0x0001);        // min subnormal
  EXPECT_EQ(f32ToF16(std::ldexp(1.0f, -25)), 0x0000);        // tie -> 0
  EXPECT_EQ(f32ToF16(std::ldexp(1.5f, -25)), 0x0001);        // above tie
  EXPECT_EQ(f32ToF16(std::ldexp(3.0f, -25)), 0x0002);        // 1.5 units: even
  EXPECT_EQ(f32ToF16(std::ldexp(1.0f, -14)), 0x0400);        // min normal
  EXPECT_EQ(f32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00); // tie -> even
  EXPECT_EQ(f32ToF16(1.0f + std::ldexp(3.0f, -11)), 0x3c02); // tie -> even
  EXPECT_EQ(f32ToF16(-0.1f), 0xae66);
  EXPECT_EQ(f32ToF16(0.1f), 0x2e66);
  EXPECT_EQ(f32ToF16(3.14159f), 0x4248);
  EXPECT_EQ(f32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(f32ToF16(-INFINITY), 0xfc00);
  EXPECT_TRUE(isF16NaN(f32ToF16(std::nanf(""))));
  EXPECT_TRUE(isF16NaN(f32ToF16(floatFromBits(0x7f800001u))));
}

TEST(DTypeTest, F16ToF32IsExact) {
  EXPECT_EQ(f16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(f16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16ToF32(0x03ff), std::ldexp(1023.0f, -24)); // largest subnormal
  EXPECT_EQ(f16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(f16ToF32(0xfc00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16ToF32(0x7e00)));
  for (uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    if (isF16NaN(static_cast<uint16_t>(bits)))
      continue;
    ASSERT_EQ(f32ToF16(f16ToF32(static_cast<uint16_t>(bits))), bits);
  }
}

TEST(StatusTest, ToStringAddsLocationOnlyForInternal) {
  Status user = COLOSSAL_ERROR(kInvalidArgument, "bad shape");
  EXPECT_FALSE(user.isOk());
  EXPECT_EQ(user.toString(), "bad shape");
  Status bug(StatusCode::kInternal, "broken", "Foo.cpp", 12);
  EXPECT_EQ(bug.toString(), "broken (Foo.cpp:12)");
  EXPECT_TRUE(Status::ok().isOk());
  EXPECT_STREQ(statusCodeName(StatusCode::kCorruptPlan), "corrupt_plan");
  EXPECT_STREQ(statusCodeName(StatusCode::kInvalidArgument),
               "invalid_argument");
}

} // namespace
