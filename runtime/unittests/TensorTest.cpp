//===- TensorTest.cpp - Tensor types and element conversions --------------===//
//
// Expected values are worked out by hand in the comments.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

using namespace colossal::runtime;

namespace {

TEST(TensorTest, TypeBasics) {
  TensorType type{DType::kF32, {2, 16}};
  EXPECT_EQ(type.numElements(), 32);
  EXPECT_EQ(type.sizeBytes(), 128u);
  EXPECT_EQ(type.toString(), "2x16xf32");
  TensorType scalar{DType::kBF16, {}};
  EXPECT_EQ(scalar.numElements(), 1);
  EXPECT_EQ(scalar.toString(), "bf16");
  TensorType empty{DType::kI64, {3, 0}};
  EXPECT_EQ(empty.numElements(), 0);
  EXPECT_EQ(empty.toString(), "3x0xi64");
  EXPECT_NE(type, scalar);
}

TEST(TensorTest, DoubleRoundTripEveryDType) {
  // 2.5 is exact in every float dtype; integers truncate it to 2.
  struct Case {
    DType dtype;
    double in;
    double out;
  } cases[] = {{DType::kF32, 2.5, 2.5},   {DType::kF16, 2.5, 2.5},
               {DType::kBF16, 2.5, 2.5},  {DType::kF64, 2.5, 2.5},
               {DType::kI64, 2.5, 2.0},   {DType::kI32, -2.5, -2.0},
               {DType::kI8, -2.9, -2.0},  {DType::kU8, 200.7, 200.0},
               {DType::kBool, 0.25, 1.0}, {DType::kBool, 0.0, 0.0}};
  for (const Case &c : cases) {
    HostTensor tensor(TensorType{c.dtype, {3}});
    storeFromDouble(tensor.ref(), 1, c.in);
    EXPECT_EQ(loadAsDouble(tensor.ref(), 1), c.out) << dtypeName(c.dtype);
    EXPECT_EQ(loadAsDouble(tensor.ref(), 0), 0.0) << dtypeName(c.dtype);
    EXPECT_EQ(loadAsDouble(tensor.ref(), 2), 0.0) << dtypeName(c.dtype);
  }
}

TEST(TensorTest, IntegerStoresSaturate) {
  HostTensor i8(TensorType{DType::kI8, {1}});
  storeFromDouble(i8.ref(), 0, 1000.0);
  EXPECT_EQ(loadAsInt64(i8.ref(), 0), 127);
  storeFromDouble(i8.ref(), 0, -1000.0);
  EXPECT_EQ(loadAsInt64(i8.ref(), 0), -128);
  HostTensor u8(TensorType{DType::kU8, {1}});
  storeFromDouble(u8.ref(), 0, -3.0);
  EXPECT_EQ(loadAsInt64(u8.ref(), 0), 0);
  HostTensor i64(TensorType{DType::kI64, {1}});
  storeFromDouble(i64.ref(), 0, 1e30);
  EXPECT_EQ(loadAsInt64(i64.ref(), 0), std::numeric_limits<int64_t>::max());
  storeFromDouble(i64.ref(), 0, NAN);
  EXPECT_EQ(loadAsInt64(i64.ref(), 0), 0);
  HostTensor i32(TensorType{DType::kI32, {1}});
  storeFromDouble(i32.ref(), 0, -INFINITY);
  EXPECT_EQ(loadAsInt64(i32.ref(), 0), std::numeric_limits<int32_t>::min());
}

TEST(TensorTest, Int64StoresWrapLikeACast) {
  // 300 = 0x12c: low byte 0x2c = 44. -1 as u8 is 255. 2^31 as i32 is -2^31.
  HostTensor i8(TensorType{DType::kI8, {1}});
  storeFromInt64(i8.ref(), 0, 300);
  EXPECT_EQ(loadAsInt64(i8.ref(), 0), 44);
  HostTensor u8(TensorType{DType::kU8, {1}});
  storeFromInt64(u8.ref(), 0, -1);
  EXPECT_EQ(loadAsInt64(u8.ref(), 0), 255);
  HostTensor i32(TensorType{DType::kI32, {1}});
  storeFromInt64(i32.ref(), 0, int64_t(1) << 31);
  EXPECT_EQ(loadAsInt64(i32.ref(), 0), -(int64_t(1) << 31));
  HostTensor boolean(TensorType{DType::kBool, {1}});
  storeFromInt64(boolean.ref(), 0, -7);
  EXPECT_EQ(boolean.as<uint8_t>()[0], 1);
  // i64 keeps values a double cannot: 2^53 + 1.
  HostTensor i64(TensorType{DType::kI64, {1}});
  storeFromInt64(i64.ref(), 0, (int64_t(1) << 53) + 1);
  EXPECT_EQ(loadAsInt64(i64.ref(), 0), (int64_t(1) << 53) + 1);
  // Floats truncate toward zero when read as int64.
  HostTensor f32(TensorType{DType::kF32, {1}});
  storeFromDouble(f32.ref(), 0, -3.75);
  EXPECT_EQ(loadAsInt64(f32.ref(), 0), -3);
  storeFromInt64(f32.ref(), 0, 16777217); // 2^24 + 1: ties to even 2^24
  EXPECT_EQ(f32.as<float>()[0], 16777216.0f);
}

TEST(TensorTest, NarrowFloatStoresRoundOnce) {
  // 1 + 2^-8 + 2^-40 is just above the halfway point between the bf16
  // values 1 (0x3f80) and 1 + 2^-7 (0x3f81), so it rounds up. Rounding to
  // f32 first would land exactly on the halfway point (2^-40 is below f32's
  // half ulp of 2^-24) and then tie to the even 0x3f80.
  HostTensor bf16(TensorType{DType::kBF16, {1}});
  storeFromDouble(bf16.ref(), 0,
                  1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40));
  EXPECT_EQ(bf16.as<uint16_t>()[0], 0x3f81);
  storeFromDouble(bf16.ref(), 0, 1.0 + std::ldexp(1.0, -8)); // exact tie
  EXPECT_EQ(bf16.as<uint16_t>()[0], 0x3f80);
  storeFromDouble(bf16.ref(), 0, 1e300); // far past the largest bf16
  EXPECT_EQ(bf16.as<uint16_t>()[0], 0x7f80);
  storeFromDouble(bf16.ref(), 0, NAN);
  EXPECT_TRUE(std::isnan(loadAsDouble(bf16.ref(), 0)));
  // The same for f16, whose ulp at 1 is 2^-10: 1 + 2^-11 + 2^-40 -> 0x3c01.
  HostTensor f16(TensorType{DType::kF16, {1}});
  storeFromDouble(f16.ref(), 0,
                  1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40));
  EXPECT_EQ(f16.as<uint16_t>()[0], 0x3c01);
  storeFromDouble(f16.ref(), 0,
                  -1.0 - std::ldexp(1.0, -11) - std::ldexp(1.0, -40));
  EXPECT_EQ(f16.as<uint16_t>()[0], 0xbc01);
  storeFromDouble(f16.ref(), 0, std::ldexp(1.0, -30)); // below half of 2^-24
  EXPECT_EQ(f16.as<uint16_t>()[0], 0x0000);
}

} // namespace
