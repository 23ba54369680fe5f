//===- KernelsTest.cpp - The exact CPU kernels ----------------------------===//
//
// Expected values are worked out by hand in comments, or computed with numpy
// (/usr/bin/python3, numpy 1.24) by the snippet quoted above each test and
// pasted here; none is produced by the code under test. Float cases run in
// f64 where the point is the math (tolerance 1e-12 relative) and in f32,
// bf16 or i32 where the point is the dtype handling.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Kernels.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <random>

using namespace colossal::runtime;

namespace {

using Dims = std::vector<int64_t>;
using Values = std::vector<double>;

constexpr DType f64 = DType::kF64;
constexpr DType f32 = DType::kF32;
constexpr DType f16 = DType::kF16;
constexpr DType i64 = DType::kI64;
constexpr DType i32 = DType::kI32;
constexpr DType boolean = DType::kBool;
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

HostTensor tensor(DType dtype, Dims dims, const Values &values) {
  HostTensor result(TensorType{dtype, std::move(dims)});
  EXPECT_EQ(static_cast<int64_t>(values.size()), result.type.numElements());
  for (size_t i = 0; i < values.size(); ++i)
    storeFromDouble(result.ref(), static_cast<int64_t>(i), values[i]);
  return result;
}

HostTensor ints(DType dtype, Dims dims, const std::vector<int64_t> &values) {
  HostTensor result(TensorType{dtype, std::move(dims)});
  EXPECT_EQ(static_cast<int64_t>(values.size()), result.type.numElements());
  for (size_t i = 0; i < values.size(); ++i)
    storeFromInt64(result.ref(), static_cast<int64_t>(i), values[i]);
  return result;
}

/// Runs the op through evaluateOp and returns its one result.
HostTensor eval(const Attrs &attrs, const std::vector<HostTensor> &inputs) {
  std::vector<HostTensor> outputs;
  Status status = evaluateOp(attrs, inputs, outputs);
  EXPECT_TRUE(status.isOk()) << status.toString();
  if (!status.isOk() || outputs.size() != 1)
    return HostTensor();
  return std::move(outputs[0]);
}

/// Expects evaluateOp to fail with a message containing `fragment`.
void evalFails(const Attrs &attrs, const std::vector<HostTensor> &inputs,
               const std::string &fragment) {
  std::vector<HostTensor> outputs;
  Status status = evaluateOp(attrs, inputs, outputs);
  ASSERT_FALSE(status.isOk()) << "expected: " << fragment;
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << status.message();
}

/// Checks type and values; `tolerance` is relative (absolute below 1).
void expectValues(const HostTensor &actual, const TensorType &type,
                  const Values &expected, double tolerance = 0.0) {
  ASSERT_EQ(actual.type, type) << actual.type.toString();
  ASSERT_EQ(actual.type.numElements(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    double value = loadAsDouble(actual.ref(), static_cast<int64_t>(i));
    if (std::isnan(expected[i])) {
      EXPECT_TRUE(std::isnan(value)) << "element " << i << ": " << value;
    } else if (std::isinf(expected[i]) || tolerance == 0.0) {
      EXPECT_EQ(value, expected[i]) << "element " << i;
    } else {
      EXPECT_NEAR(value, expected[i],
                  tolerance * std::max(1.0, std::fabs(expected[i])))
          << "element " << i;
    }
  }
}

void expectInts(const HostTensor &actual, const TensorType &type,
                const std::vector<int64_t> &expected) {
  ASSERT_EQ(actual.type, type) << actual.type.toString();
  ASSERT_EQ(actual.type.numElements(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(loadAsInt64(actual.ref(), static_cast<int64_t>(i)), expected[i])
        << "element " << i;
}

TensorType t(DType dtype, Dims dims) {
  return TensorType{dtype, std::move(dims)};
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

TEST(KernelsTest, BinaryBroadcast) {
  // [[0,1,2],[3,4,5]] + [10,20,30]
  expectValues(
      eval(Attrs(OpKind::Add), {tensor(f32, {2, 3}, {0, 1, 2, 3, 4, 5}),
                                tensor(f32, {3}, {10, 20, 30})}),
      t(f32, {2, 3}), {10, 21, 32, 13, 24, 35});
  // [[1],[2]] * [[3,4,5]] is the outer product.
  expectValues(eval(Attrs(OpKind::Mul), {tensor(f64, {2, 1}, {1, 2}),
                                         tensor(f64, {1, 3}, {3, 4, 5})}),
               t(f64, {2, 3}), {3, 4, 5, 6, 8, 10});
  // A scalar on the left: 10 - [1, 2].
  expectValues(eval(Attrs(OpKind::Sub),
                    {tensor(f32, {}, {10}), tensor(f32, {2}, {1, 2})}),
               t(f32, {2}), {9, 8});
  // Zero-size broadcast: [0, 3] + [3] gives [0, 3] and touches nothing.
  expectValues(eval(Attrs(OpKind::Add),
                    {tensor(f32, {0, 3}, {}), tensor(f32, {3}, {1, 2, 3})}),
               t(f32, {0, 3}), {});
}

TEST(KernelsTest, IntegerArithmetic) {
  // C division truncates toward zero: 7/2 = 3, -7/2 = -3, 7/-2 = -3.
  expectInts(eval(Attrs(OpKind::Div), {ints(i64, {4}, {7, -7, 7, -7}),
                                       ints(i64, {4}, {2, 2, -2, -2})}),
             t(i64, {4}), {3, -3, -3, 3});
  expectInts(
      eval(Attrs(OpKind::Div), {ints(i32, {2}, {-9, 9}), ints(i32, {}, {4})}),
      t(i32, {2}), {-2, 2});
  evalFails(Attrs(OpKind::Div),
            {ints(i64, {2}, {1, 2}), ints(i64, {2}, {1, 0})},
            "div: integer division by zero");
  // i32 wraps: 2^31 - 1 + 1 = -2^31.
  expectInts(eval(Attrs(OpKind::Add),
                  {ints(i32, {1}, {2147483647}), ints(i32, {1}, {1})}),
             t(i32, {1}), {-2147483648LL});
  // 2^10, 3^0, (-2)^3, 5^-1 truncated to 0, 1^-3 = 1, (-1)^-3 = -1.
  expectInts(eval(Attrs(OpKind::Pow), {ints(i64, {6}, {2, 3, -2, 5, 1, -1}),
                                       ints(i64, {6}, {10, 0, 3, -1, -3, -3})}),
             t(i64, {6}), {1024, 1, -8, 0, 1, -1});
  evalFails(Attrs(OpKind::Pow), {ints(i64, {1}, {0}), ints(i64, {1}, {-1})},
            "pow: integer zero to a negative power");
  expectInts(eval(Attrs(OpKind::Max), {ints(DType::kU8, {2}, {3, 200}),
                                       ints(DType::kU8, {2}, {7, 100})}),
             t(DType::kU8, {2}), {7, 200});
}

TEST(KernelsTest, FloatArithmetic) {
  // Float division by zero follows IEEE: 1/0 = inf, 0/0 = NaN.
  expectValues(eval(Attrs(OpKind::Div),
                    {tensor(f32, {2}, {1, 0}), tensor(f32, {2}, {0, 0})}),
               t(f32, {2}), {kInf, kNaN});
  // std::pow: 2^3 = 8, 4^0.5 = 2, 2^-2 = 0.25, (-8)^(1/3) = NaN.
  expectValues(
      eval(Attrs(OpKind::Pow), {tensor(f64, {4}, {2, 4, 2, -8}),
                                tensor(f64, {4}, {3, 0.5, -2, 1.0 / 3})}),
      t(f64, {4}), {8, 2, 0.25, kNaN});
  // max/min propagate NaN from either side, like numpy.maximum.
  expectValues(eval(Attrs(OpKind::Max), {tensor(f32, {3}, {1, kNaN, 3}),
                                         tensor(f32, {3}, {2, 2, kNaN})}),
               t(f32, {3}), {2, kNaN, kNaN});
  expectValues(eval(Attrs(OpKind::Min), {tensor(f32, {3}, {1, kNaN, 3}),
                                         tensor(f32, {3}, {2, 2, kNaN})}),
               t(f32, {3}), {1, kNaN, kNaN});
}

TEST(KernelsTest, Bf16ArithmeticRoundsOnce) {
  // 1 + (2^-8 + 2^-14) = 1 + 2^-8 + 2^-14: above the bf16 halfway point
  // 1 + 2^-8 between 1 and 1 + 2^-7, so it rounds up to 1 + 2^-7.
  HostTensor sum = eval(Attrs(OpKind::Add),
                        {tensor(DType::kBF16, {2}, {1, 1}),
                         tensor(DType::kBF16, {2},
                                {std::ldexp(1.0, -8) + std::ldexp(1.0, -14),
                                 std::ldexp(1.0, -8)})});
  ASSERT_EQ(sum.type, t(DType::kBF16, {2}));
  EXPECT_EQ(sum.as<uint16_t>()[0], 0x3f81);
  EXPECT_EQ(sum.as<uint16_t>()[1], 0x3f80); // an exact tie: to even
}

TEST(KernelsTest, ComparisonsAndLogic) {
  expectInts(eval(Attrs(OpKind::Less),
                  {tensor(f32, {3}, {1, 2, 3}), tensor(f32, {}, {2})}),
             t(boolean, {3}), {1, 0, 0});
  expectInts(eval(Attrs(OpKind::GreaterEqual),
                  {ints(i64, {3}, {1, 2, 3}), ints(i64, {3}, {2, 2, 2})}),
             t(boolean, {3}), {0, 1, 1});
  expectInts(eval(Attrs(OpKind::Equal),
                  {tensor(f32, {2}, {kNaN, 1}), tensor(f32, {2}, {kNaN, 1})}),
             t(boolean, {2}), {0, 1}); // NaN != NaN
  // [[1],[0]] op [1,0] broadcast to [2, 2].
  HostTensor a = ints(boolean, {2, 1}, {1, 0}), b = ints(boolean, {2}, {1, 0});
  expectInts(eval(Attrs(OpKind::And), {a, b}), t(boolean, {2, 2}),
             {1, 0, 0, 0});
  expectInts(eval(Attrs(OpKind::Or), {a, b}), t(boolean, {2, 2}), {1, 1, 1, 0});
  expectInts(eval(Attrs(OpKind::Xor), {a, b}), t(boolean, {2, 2}),
             {0, 1, 1, 0});
  expectInts(eval(Attrs(OpKind::Not), {b}), t(boolean, {2}), {0, 1});
}

TEST(KernelsTest, Where) {
  // cond [[1],[0]], x [1, 2, 3], y 9 -> [[1, 2, 3], [9, 9, 9]]
  expectInts(eval(Attrs(OpKind::Where),
                  {ints(boolean, {2, 1}, {1, 0}), ints(i64, {3}, {1, 2, 3}),
                   ints(i64, {}, {9})}),
             t(i64, {2, 3}), {1, 2, 3, 9, 9, 9});
}

TEST(KernelsTest, UnaryFloat) {
  // numpy/math: [0.5*t*(1+math.erf(t/math.sqrt(2))) for t in g] and
  // [0.5*t*(1+math.tanh(math.sqrt(2/math.pi)*(t+0.044715*t**3))) for t in g]
  // with g = [-3, -1, -0.5, 0, 0.5, 1, 2.5].
  Values g = {-3, -1, -0.5, 0, 0.5, 1, 2.5};
  Attrs gelu(OpKind::Gelu);
  expectValues(eval(gelu, {tensor(f64, {7}, g)}), t(f64, {7}),
               {-0.00404969409489031, -0.15865525393145707,
                -0.15426876936299344, 0.0, 0.34573123063700656,
                0.8413447460685429, 2.4844758366855597},
               1e-12);
  gelu.setI("approximate", 1);
  expectValues(eval(gelu, {tensor(f64, {7}, g)}), t(f64, {7}),
               {-0.0036373920817729943, -0.15880800939172324,
                -0.15428599017485606, 0.0, 0.34571400982514394,
                0.8411919906082768, 2.484915733910001},
               1e-12);
  // sigmoid(0) = 0.5, sigmoid(-1000) = 0 (no overflow to NaN),
  // sigmoid(ln 3) = 1 / (1 + 1/3) = 0.75.
  expectValues(eval(Attrs(OpKind::Sigmoid),
                    {tensor(f64, {3}, {0, -1000, std::log(3.0)})}),
               t(f64, {3}), {0.5, 0, 0.75}, 1e-15);
  expectValues(eval(Attrs(OpKind::Rsqrt), {tensor(f32, {2}, {4, 0.25})}),
               t(f32, {2}), {0.5, 2});
  expectValues(eval(Attrs(OpKind::Reciprocal), {tensor(f32, {2}, {4, 0})}),
               t(f32, {2}), {0.25, kInf});
  expectValues(eval(Attrs(OpKind::Relu), {tensor(f32, {3}, {-1, 2, kNaN})}),
               t(f32, {3}), {0, 2, kNaN});
  expectValues(eval(Attrs(OpKind::Sqrt), {tensor(f32, {2}, {9, -1})}),
               t(f32, {2}), {3, kNaN});
  expectValues(eval(Attrs(OpKind::Abs), {tensor(DType::kF16, {2}, {-1.5, 2})}),
               t(DType::kF16, {2}), {1.5, 2});
}

TEST(KernelsTest, UnaryInteger) {
  const int64_t kMin = std::numeric_limits<int64_t>::min();
  // Negating INT64_MIN wraps to itself instead of overflowing.
  expectInts(eval(Attrs(OpKind::Neg), {ints(i64, {3}, {5, -7, kMin})}),
             t(i64, {3}), {-5, 7, kMin});
  expectInts(eval(Attrs(OpKind::Abs), {ints(i32, {2}, {-3, 4})}), t(i32, {2}),
             {3, 4});
  expectInts(eval(Attrs(OpKind::Relu), {ints(DType::kI8, {2}, {-3, 4})}),
             t(DType::kI8, {2}), {0, 4});
}

TEST(KernelsTest, Cast) {
  Attrs cast(OpKind::Cast);
  cast.setDType("to", i32);
  // Truncate toward zero; 1e10 saturates to 2^31 - 1; NaN becomes 0.
  expectInts(eval(cast, {tensor(f32, {4}, {-2.7, 2.7, 1e10, kNaN})}),
             t(i32, {4}), {-2, 2, 2147483647, 0});
  cast.setDType("to", DType::kI8);
  // Integer to narrower integer wraps: 300 = 0x12c -> 0x2c = 44,
  // -129 = ...ff7f -> 0x7f = 127.
  expectInts(eval(cast, {ints(i64, {2}, {300, -129})}), t(DType::kI8, {2}),
             {44, 127});
  cast.setDType("to", boolean);
  expectInts(eval(cast, {tensor(f32, {3}, {0, -0.5, kNaN})}), t(boolean, {3}),
             {0, 1, 1});
  cast.setDType("to", f32);
  expectValues(eval(cast, {ints(boolean, {2}, {1, 0})}), t(f32, {2}), {1, 0});
  expectValues(eval(cast, {ints(i64, {1}, {16777217})}), t(f32, {1}),
               {16777216}); // 2^24 + 1 ties to even 2^24
  cast.setDType("to", DType::kBF16);
  HostTensor narrow =
      eval(cast, {tensor(f64, {2}, {1.0 + std::ldexp(1.0, -8), -3.140625})});
  ASSERT_EQ(narrow.type, t(DType::kBF16, {2}));
  EXPECT_EQ(narrow.as<uint16_t>()[0], 0x3f80); // tie to even
  EXPECT_EQ(narrow.as<uint16_t>()[1], 0xc049); // -3.140625 is exact
}

//===----------------------------------------------------------------------===//
// matmul
//===----------------------------------------------------------------------===//

Attrs matmul(int64_t ta, int64_t tb) {
  Attrs attrs(OpKind::MatMul);
  attrs.setI("transpose_a", ta);
  attrs.setI("transpose_b", tb);
  return attrs;
}

TEST(KernelsTest, MatMulAndTransposes) {
  // a = np.arange(6.).reshape(2,3) - 2; b = np.arange(12.).reshape(3,4)*0.5 - 1
  // a @ b
  Values a = {-2, -1, 0, 1, 2, 3};
  Values aT = {-2, 1, -1, 2, 0, 3}; // a.T stored row-major
  Values b = {-1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5};
  Values bT = {-1, 1, 3, -0.5, 1.5, 3.5, 0, 2, 4, 0.5, 2.5, 4.5}; // b.T
  Values expected = {1.0, -0.5, -2.0, -3.5, 10.0, 13.0, 16.0, 19.0};
  expectValues(
      eval(matmul(0, 0), {tensor(f64, {2, 3}, a), tensor(f64, {3, 4}, b)}),
      t(f64, {2, 4}), expected);
  expectValues(
      eval(matmul(1, 0), {tensor(f64, {3, 2}, aT), tensor(f64, {3, 4}, b)}),
      t(f64, {2, 4}), expected);
  expectValues(
      eval(matmul(0, 1), {tensor(f64, {2, 3}, a), tensor(f64, {4, 3}, bT)}),
      t(f64, {2, 4}), expected);
  expectValues(
      eval(matmul(1, 1), {tensor(f32, {3, 2}, aT), tensor(f32, {4, 3}, bT)}),
      t(f32, {2, 4}), expected);
}

TEST(KernelsTest, MatMulBatchBroadcast) {
  // A = (np.arange(12.).reshape(2,1,2,3) % 5) - 1
  // B = (np.arange(18.).reshape(3,3,2) % 7) * 0.25
  // np.matmul(A, B)  -> [2, 3, 2, 2]
  Values a = {-1, 0, 1, 2, 3, -1, 0, 1, 2, 3, -1, 0};
  Values b = {0,   0.25, 0.5, 0.75, 1,   1.25, 1.5,  0,   0.25,
              0.5, 0.75, 1,   1.25, 1.5, 0,    0.25, 0.5, 0.75};
  // np.swapaxes(B, -1, -2), for transpose_b.
  Values bT = {0.0, 0.5, 1.0, 0.25, 0.75, 1.25, 1.5, 0.25, 0.75,
               0.0, 0.5, 1.0, 1.25, 0.0,  0.5,  1.5, 0.25, 0.75};
  Values expected = {1.0,   1.0,   0.5,  1.5,  -0.75, 1.0,  3.0,  0.5,
                     -0.75, -0.75, 2.0,  3.0,  2.5,   3.25, -0.5, 0.0,
                     1.75,  2.5,   4.25, -0.5, 1.0,   1.75, 3.75, 4.25};
  expectValues(eval(matmul(0, 0),
                    {tensor(f64, {2, 1, 2, 3}, a), tensor(f64, {3, 3, 2}, b)}),
               t(f64, {2, 3, 2, 2}), expected);
  expectValues(eval(matmul(0, 1),
                    {tensor(f32, {2, 1, 2, 3}, a), tensor(f32, {3, 2, 3}, bT)}),
               t(f32, {2, 3, 2, 2}), expected);
}

TEST(KernelsTest, MatMulEmptyContraction) {
  // K = 0: every output element is an empty sum, 0.
  expectValues(
      eval(matmul(0, 0), {tensor(f32, {2, 0}, {}), tensor(f32, {0, 3}, {})}),
      t(f32, {2, 3}), {0, 0, 0, 0, 0, 0});
}

TEST(KernelsTest, MatMulF32IsFastAndAccumulatesInDouble) {
  const int64_t m = 512, k = 64, n = 2048;
  HostTensor a(TensorType{f32, {m, k}}), b(TensorType{f32, {k, n}});
  for (int64_t i = 0; i < m * k; ++i)
    a.as<float>()[i] = static_cast<float>((i * 37 % 101) - 50) / 16.0f;
  for (int64_t i = 0; i < k * n; ++i)
    b.as<float>()[i] = static_cast<float>((i * 53 % 97) - 48) / 32.0f;
  auto start = std::chrono::steady_clock::now();
  HostTensor c = eval(matmul(0, 0), {a, b});
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  // "Well under a second" in an optimised build; this bound also holds for
  // an unoptimised one on a loaded machine.
  EXPECT_LT(seconds, 3.0);
  ASSERT_EQ(c.type, t(f32, {m, n}));
  // Spot-check against a plain dot product. The inputs are multiples of
  // 1/512 below 2^6, so every product and partial sum is exact in double and
  // the f32 result is the single rounding of the exact value.
  for (int64_t i : {int64_t(0), int64_t(17), m - 1}) {
    for (int64_t j : {int64_t(0), int64_t(1001), n - 1}) {
      double dot = 0;
      for (int64_t p = 0; p < k; ++p)
        dot += static_cast<double>(a.as<float>()[i * k + p]) *
               static_cast<double>(b.as<float>()[p * n + j]);
      EXPECT_EQ(c.as<float>()[i * n + j], static_cast<float>(dot));
    }
  }
}

//===----------------------------------------------------------------------===//
// Reductions and normalisation
//===----------------------------------------------------------------------===//

Attrs reduce(OpKind kind, Dims axes, int64_t keepdims) {
  Attrs attrs(kind);
  attrs.setList("axes", std::move(axes));
  attrs.setI("keepdims", keepdims);
  return attrs;
}

TEST(KernelsTest, Reductions) {
  // r = np.arange(24.).reshape(2,3,4) - 5
  Values r;
  for (int i = 0; i < 24; ++i)
    r.push_back(i - 5);
  HostTensor x = tensor(f64, {2, 3, 4}, r);
  // r.sum(axis=(0,2)), r.mean(axis=1), r.max(axis=2), r.min(axis=0)
  expectValues(eval(reduce(OpKind::ReduceSum, {0, 2}, 0), {x}), t(f64, {3}),
               {20.0, 52.0, 84.0});
  expectValues(eval(reduce(OpKind::ReduceSum, {0, 2}, 1), {x}),
               t(f64, {1, 3, 1}), {20.0, 52.0, 84.0});
  expectValues(eval(reduce(OpKind::ReduceMean, {1}, 0), {x}), t(f64, {2, 4}),
               {-1.0, 0.0, 1.0, 2.0, 11.0, 12.0, 13.0, 14.0});
  expectValues(eval(reduce(OpKind::ReduceMax, {2}, 0), {x}), t(f64, {2, 3}),
               {-2.0, 2.0, 6.0, 10.0, 14.0, 18.0});
  expectValues(eval(reduce(OpKind::ReduceMin, {0}, 1), {x}), t(f64, {1, 3, 4}),
               {-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6});
  // All axes: sum of -5..18 = 24 * 6.5 = 156.
  expectValues(eval(reduce(OpKind::ReduceSum, {0, 1, 2}, 0), {x}), t(f64, {}),
               {156});
  // No axes: a copy.
  expectValues(
      eval(reduce(OpKind::ReduceMax, {}, 0), {tensor(f32, {2}, {3, 1})}),
      t(f32, {2}), {3, 1});
  // NaN wins max and min.
  expectValues(
      eval(reduce(OpKind::ReduceMax, {0}, 0), {tensor(f32, {3}, {1, kNaN, 2})}),
      t(f32, {}), {kNaN});
  // Sum of squares, (r ** 2).sum(axis=(1, 2)): sum_{-5}^{6} k^2 = 146 and
  // sum_{7}^{18} k^2 = 2109 - 91 = 2018; over an empty axis 0. Floats
  // only.
  expectValues(eval(reduce(OpKind::ReduceSumSquare, {1, 2}, 0), {x}),
               t(f64, {2}), {146.0, 2018.0});
  expectValues(eval(reduce(OpKind::ReduceSumSquare, {1}, 1),
                    {tensor(f32, {2, 0}, {})}),
               t(f32, {2, 1}), {0, 0});
  // A square of an f32 is exact in double, so the f32 result is the sum
  // rounded once: 3e19^2 + 4e19^2 = 2.5e39 overflows f32 only at the end.
  expectValues(eval(reduce(OpKind::ReduceSumSquare, {0}, 0),
                    {tensor(f32, {2}, {3e19, 4e19})}),
               t(f32, {}), {kInf});
  evalFails(reduce(OpKind::ReduceSumSquare, {0}, 0), {ints(i64, {2}, {1, 2})},
            "reduce_sum_square");
}

TEST(KernelsTest, ReductionsOfIntegersAndEmptyAxes) {
  // Integer sums are exact in int64: 2^53 + 1 + 1 would round in double.
  expectInts(eval(reduce(OpKind::ReduceSum, {0}, 0),
                  {ints(i64, {2}, {(int64_t(1) << 53) + 1, 1})}),
             t(i64, {}), {(int64_t(1) << 53) + 2});
  // Integer mean truncates: (1 + 2 + 4) / 3 = 2.
  expectInts(
      eval(reduce(OpKind::ReduceMean, {0}, 0), {ints(i32, {3}, {1, 2, 4})}),
      t(i32, {}), {2});
  // Reducing an empty axis: sum 0, mean NaN (0/0), max -inf, min +inf; for
  // integers max and min give the dtype's extreme values.
  HostTensor empty = tensor(f32, {2, 0}, {});
  expectValues(eval(reduce(OpKind::ReduceSum, {1}, 0), {empty}), t(f32, {2}),
               {0, 0});
  expectValues(eval(reduce(OpKind::ReduceMean, {1}, 0), {empty}), t(f32, {2}),
               {kNaN, kNaN});
  expectValues(eval(reduce(OpKind::ReduceMax, {1}, 0), {empty}), t(f32, {2}),
               {-kInf, -kInf});
  expectValues(eval(reduce(OpKind::ReduceMin, {1}, 0), {empty}), t(f32, {2}),
               {kInf, kInf});
  expectInts(eval(reduce(OpKind::ReduceMax, {0}, 0), {ints(i32, {0}, {})}),
             t(i32, {}), {-2147483648LL});
  expectInts(
      eval(reduce(OpKind::ReduceMin, {0}, 0), {ints(DType::kU8, {0}, {})}),
      t(DType::kU8, {}), {255});
}

TEST(KernelsTest, SoftmaxAndLogSoftmax) {
  // x = np.array([[[1,-2],[0.5,3],[-1,0]],[[2,2],[-3,1],[0,-0.5]]])
  // e = np.exp(x - x.max(axis=1, keepdims=True))
  // sm = e / e.sum(axis=1, keepdims=True); np.log(sm)
  Values x = {1, -2, 0.5, 3, -1, 0, 2, 2, -3, 1, 0, -0.5};
  Values softmax = {
      0.5740969929676946,  0.006377460922442298, 0.3482074278837349,
      0.9464991225528937,  0.07769557914857059,  0.04712341652466415,
      0.8756005950630877,  0.6896720861245036,   0.0058997504019027815,
      0.25371618163502524, 0.11849965453500959,  0.05661173224047129};
  Values logSoftmax = {
      -0.5549569196419906,  -5.054985235377147,   -1.0549569196419906,
      -0.05498523537714727, -2.554956919641991,   -3.0549852353771474,
      -0.13284523372757545, -0.37153903185268283, -5.132845233727576,
      -1.3715390318526828,  -2.1328452337275756,  -2.8715390318526826};
  Attrs attrs(OpKind::Softmax);
  attrs.setI("axis", 1);
  expectValues(eval(attrs, {tensor(f64, {2, 3, 2}, x)}), t(f64, {2, 3, 2}),
               softmax, 1e-12);
  // f32 output: the same values, rounded once (relative error <= 2^-24).
  expectValues(eval(attrs, {tensor(f32, {2, 3, 2}, x)}), t(f32, {2, 3, 2}),
               softmax, 1e-7);
  Attrs logAttrs(OpKind::LogSoftmax);
  logAttrs.setI("axis", 1);
  expectValues(eval(logAttrs, {tensor(f64, {2, 3, 2}, x)}), t(f64, {2, 3, 2}),
               logSoftmax, 1e-12);
  // Large logits do not overflow: softmax([1000, 1000]) = [0.5, 0.5].
  attrs.setI("axis", 0);
  expectValues(eval(attrs, {tensor(f32, {2}, {1000, 1000})}), t(f32, {2}),
               {0.5, 0.5});
}

TEST(KernelsTest, LayerNorm) {
  // x = np.array([[[1,2,3],[4,5,7]],[[-1,0,2],[0.5,0.25,9]]])
  // scale = np.array([[1,2,0.5],[-1,1,3]]); bias =
  // np.array([[0,0.5,1],[2,-1,0]]) m = x.mean(axis=(1,2), keepdims=True); v =
  // x.var(axis=(1,2), keepdims=True) (x-m)/np.sqrt(v+1e-5)*scale+bias (np.var
  // is the biased variance)
  HostTensor x =
      tensor(f64, {2, 2, 3}, {1, 2, 3, 4, 5, 7, -1, 0, 2, 0.5, 0.25, 9});
  HostTensor scale = tensor(f64, {2, 3}, {1, 2, 0.5, -1, 1, 3});
  HostTensor bias = tensor(f64, {2, 3}, {0, 0.5, 1, 2, -1, 0});
  Attrs ln(OpKind::LayerNorm);
  ln.setI("axis", 1);
  ln.setF("epsilon", 1e-5);
  expectValues(eval(ln, {x, scale, bias}), t(f64, {2, 2, 3}),
               {-1.352245068965941, -1.1903063362074262, 0.8309693663792574,
                1.8309693663792572, -0.32387746551702934, 5.07091900862228,
                -0.8350891744804855, -0.5719055075421156, 1.0311600438238986,
                2.386384543416344, -1.4611686485937008, 6.468825097841371},
               1e-12);
  expectValues(eval(ln, {x, scale}), t(f64, {2, 2, 3}),
               {-1.352245068965941, -1.6903063362074262, -0.1690306336207426,
                -0.16903063362074272, 0.6761225344829707, 5.07091900862228,
                -0.8350891744804855, -1.0719055075421156, 0.031160043823898694,
                0.386384543416344, -0.4611686485937009, 6.468825097841371},
               1e-12);
  // A constant row has variance 0: (x - mean) = 0, so y = bias.
  ln.setI("axis", 0);
  expectValues(eval(ln, {tensor(f32, {2}, {3, 3}), tensor(f32, {2}, {5, 5}),
                         tensor(f32, {2}, {1, -1})}),
               t(f32, {2}), {1, -1});
}

TEST(KernelsTest, CumSum) {
  // ONNX CumSum examples on [1, 2, 3, 4, 5].
  HostTensor x = tensor(f64, {5}, {1, 2, 3, 4, 5});
  auto cumsum = [](int64_t axis, int64_t exclusive, int64_t reverse) {
    Attrs attrs(OpKind::CumSum);
    attrs.setI("axis", axis);
    attrs.setI("exclusive", exclusive);
    attrs.setI("reverse", reverse);
    return attrs;
  };
  expectValues(eval(cumsum(0, 0, 0), {x}), t(f64, {5}), {1, 3, 6, 10, 15});
  expectValues(eval(cumsum(0, 1, 0), {x}), t(f64, {5}), {0, 1, 3, 6, 10});
  expectValues(eval(cumsum(0, 0, 1), {x}), t(f64, {5}), {15, 14, 12, 9, 5});
  expectValues(eval(cumsum(0, 1, 1), {x}), t(f64, {5}), {14, 12, 9, 5, 0});
  // [[1,2,3],[4,5,6]] along each axis (ONNX example 2 and its transpose).
  HostTensor m = ints(i32, {2, 3}, {1, 2, 3, 4, 5, 6});
  expectInts(eval(cumsum(0, 0, 0), {m}), t(i32, {2, 3}), {1, 2, 3, 5, 7, 9});
  expectInts(eval(cumsum(1, 0, 0), {m}), t(i32, {2, 3}), {1, 3, 6, 4, 9, 15});
  expectInts(eval(cumsum(1, 1, 1), {m}), t(i32, {2, 3}), {5, 3, 0, 11, 6, 0});
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

TEST(KernelsTest, Gather) {
  // d = np.arange(6).reshape(2,3)*10
  // np.take(d, np.array([[0,-1],[1,0]]), axis=1)
  Attrs gather(OpKind::Gather);
  gather.setI("axis", 1);
  HostTensor data = ints(i64, {2, 3}, {0, 10, 20, 30, 40, 50});
  expectInts(eval(gather, {data, ints(i64, {2, 2}, {0, -1, 1, 0})}),
             t(i64, {2, 2, 2}), {0, 20, 10, 0, 30, 50, 40, 30});
  expectInts(eval(gather, {data, ints(i32, {}, {-3})}), t(i64, {2}), {0, 30});
  evalFails(gather, {data, ints(i64, {2}, {0, 3})},
            "gather: index 3 out of range [-3, 3)");
  evalFails(gather, {data, ints(i32, {1}, {-4})},
            "gather: index -4 out of range [-3, 3)");
  // Axis 0 of an embedding table [3, 2] by token ids [2, 0].
  gather.setI("axis", 0);
  expectValues(eval(gather, {tensor(f32, {3, 2}, {1, 2, 3, 4, 5, 6}),
                             ints(i64, {2}, {2, 0})}),
               t(f32, {2, 2}), {5, 6, 1, 2});
}

TEST(KernelsTest, GatherND) {
  Attrs gnd(OpKind::GatherND);
  // The ONNX GatherND examples 1-4 (batch_dims 0) and 5 (batch_dims 1).
  HostTensor d2 = ints(i32, {2, 2}, {0, 1, 2, 3});
  HostTensor d3 = ints(i32, {2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  expectInts(eval(gnd, {d2, ints(i64, {2, 2}, {0, 0, 1, 1})}), t(i32, {2}),
             {0, 3});
  expectInts(eval(gnd, {d2, ints(i64, {2, 1}, {1, 0})}), t(i32, {2, 2}),
             {2, 3, 0, 1});
  expectInts(eval(gnd, {d3, ints(i64, {2, 2}, {0, 1, 1, 0})}), t(i32, {2, 2}),
             {2, 3, 4, 5});
  expectInts(eval(gnd, {d3, ints(i64, {2, 1, 2}, {0, 1, 1, 0})}),
             t(i32, {2, 1, 2}), {2, 3, 4, 5});
  // Negative indices count from the end: [-1, -2] is [1, 0].
  expectInts(eval(gnd, {d2, ints(i64, {1, 2}, {-1, -2})}), t(i32, {1}), {2});
  evalFails(gnd, {d2, ints(i64, {1, 2}, {0, 2})},
            "gather_nd: index 2 out of range [-2, 2) in dim 1");
  gnd.setI("batch_dims", 1);
  expectInts(eval(gnd, {d3, ints(i64, {2, 1}, {1, 0})}), t(i32, {2, 2}),
             {2, 3, 4, 5});
  evalFails(gnd, {d3, ints(i64, {2, 1}, {1, -3})},
            "gather_nd: index -3 out of range [-2, 2) in dim 1");
}

//===----------------------------------------------------------------------===//
// Data movement
//===----------------------------------------------------------------------===//

TEST(KernelsTest, SliceWithNegativeSteps) {
  // s = np.arange(12).reshape(3,4); s[2::-1, 3::-2]
  Attrs slice(OpKind::Slice);
  slice.setList("starts", {2, 3});
  slice.setList("steps", {-1, -2});
  slice.setList("sizes", {3, 2});
  HostTensor s = ints(i64, {3, 4}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  expectInts(eval(slice, {s}), t(i64, {3, 2}), {11, 9, 7, 5, 3, 1});
  // s[1:2, 0:4:3] = [[4, 7]]
  slice.setList("starts", {1, 0});
  slice.setList("steps", {1, 3});
  slice.setList("sizes", {1, 2});
  expectInts(eval(slice, {s}), t(i64, {1, 2}), {4, 7});
  // A step that is never taken may be huge: s[2, 1::INT64_MIN] = [9].
  slice.setList("starts", {2, 1});
  slice.setList("steps", {std::numeric_limits<int64_t>::max(),
                          std::numeric_limits<int64_t>::min()});
  slice.setList("sizes", {1, 1});
  expectInts(eval(slice, {s}), t(i64, {1, 1}), {9});
}

TEST(KernelsTest, Transpose) {
  // np.transpose(np.arange(24).reshape(2,3,4), (2,0,1))
  std::vector<int64_t> x;
  for (int i = 0; i < 24; ++i)
    x.push_back(i);
  Attrs transpose(OpKind::Transpose);
  transpose.setList("perm", {2, 0, 1});
  expectInts(eval(transpose, {ints(i64, {2, 3, 4}, x)}), t(i64, {4, 2, 3}),
             {0, 4, 8,  12, 16, 20, 1, 5, 9,  13, 17, 21,
              2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23});
}

TEST(KernelsTest, Expand) {
  // np.broadcast_to(np.array([[1],[2],[3]]), (2,3,4))
  Attrs expand(OpKind::Expand);
  expand.setList("shape", {2, 3, 4});
  expectValues(
      eval(expand, {tensor(DType::kBF16, {3, 1}, {1, 2, 3})}),
      t(DType::kBF16, {2, 3, 4}),
      {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
}

TEST(KernelsTest, Concat) {
  // np.concatenate([[[1],[2]], [[3,4],[5,6]], np.zeros((2,0))], axis=1)
  Attrs concat(OpKind::Concat);
  concat.setI("axis", 1);
  expectValues(eval(concat, {tensor(f32, {2, 1}, {1, 2}),
                             tensor(f32, {2, 2}, {3, 4, 5, 6}),
                             tensor(f32, {2, 0}, {})}),
               t(f32, {2, 3}), {1, 3, 4, 2, 5, 6});
  concat.setI("axis", 0);
  expectValues(eval(concat, {tensor(f32, {1, 2}, {1, 2}),
                             tensor(f32, {2, 2}, {3, 4, 5, 6})}),
               t(f32, {3, 2}), {1, 2, 3, 4, 5, 6});
}

Attrs pad(Dims pads, int64_t mode, double value = 0.0) {
  Attrs attrs(OpKind::Pad);
  attrs.setList("pads", std::move(pads));
  attrs.setI("mode", mode);
  attrs.setF("value", value);
  return attrs;
}

TEST(KernelsTest, PadModes) {
  // x = np.arange(1, 7).reshape(2,3); ONNX pads are [begins..., ends...].
  HostTensor x = ints(i64, {2, 3}, {1, 2, 3, 4, 5, 6});
  // np.pad(x, ((1,0),(0,2)), mode='constant', constant_values=9)
  expectInts(eval(pad({1, 0, 0, 2}, 0, 9), {x}), t(i64, {3, 5}),
             {9, 9, 9, 9, 9, 1, 2, 3, 9, 9, 4, 5, 6, 9, 9});
  // np.pad(x, ((1,1),(2,1)), mode='reflect')
  expectInts(
      eval(pad({1, 2, 1, 1}, 1), {x}), t(i64, {4, 6}),
      {6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2});
  // np.pad(x, ((0,1),(2,0)), mode='edge')
  expectInts(eval(pad({0, 2, 1, 0}, 2), {x}), t(i64, {3, 5}),
             {1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 4, 4, 4, 5, 6});
  // Negative pads crop: drop row 0 and column 2, then edge-pad one column
  // on the left: np.pad(x[1:, :2], ((0,0),(1,0)), mode='edge')
  expectInts(eval(pad({-1, 1, 0, -1}, 2), {x}), t(i64, {1, 3}), {4, 4, 5});
  // The constant is converted to the dtype: 2.5 in an f32 tensor.
  expectValues(eval(pad({1, 1}, 0, 2.5), {tensor(f32, {1}, {7})}), t(f32, {3}),
               {2.5, 7, 2.5});
}

TEST(KernelsTest, FillReshapeIdentity) {
  Attrs fill(OpKind::Fill);
  fill.setDType("to", i64);
  fill.setList("shape", {2, 2});
  fill.setF("value", 7.9); // truncated toward zero
  expectInts(eval(fill, {}), t(i64, {2, 2}), {7, 7, 7, 7});
  fill.setDType("to", DType::kBF16);
  fill.setList("shape", {});
  expectValues(eval(fill, {}), t(DType::kBF16, {}), {7.90625}); // 7.9 rounded
  fill.setDType("to", boolean);
  fill.setList("shape", {3});
  fill.setF("value", -0.5);
  expectInts(eval(fill, {}), t(boolean, {3}), {1, 1, 1});
  Attrs reshape(OpKind::Reshape);
  reshape.setList("shape", {3, 2});
  expectValues(eval(reshape, {tensor(f32, {2, 3}, {1, 2, 3, 4, 5, 6})}),
               t(f32, {3, 2}), {1, 2, 3, 4, 5, 6});
  expectValues(eval(Attrs(OpKind::Identity), {tensor(f16, {2}, {1, -2})}),
               t(f16, {2}), {1, -2});
}

//===----------------------------------------------------------------------===//
// softmax_cross_entropy
//===----------------------------------------------------------------------===//

Attrs crossEntropy(int64_t reduction, int64_t ignoreIndex = -100) {
  Attrs attrs(OpKind::SoftmaxCrossEntropy);
  attrs.setI("ignore_index", ignoreIndex);
  attrs.setI("reduction", reduction);
  return attrs;
}

TEST(KernelsTest, CrossEntropyWithIgnoreIndex) {
  // s = np.array([[[1.0,-1.0],[2.0,0.5],[0.0,3.0]],
  //               [[0.25,1.5],[-2.0,0.0],[1.0,1.0]]])     # [N=2, C=3, d=2]
  // lab = np.array([[2,-100],[0,1]])
  // ls = s - s.max(axis=1, keepdims=True)
  // ls = ls - np.log(np.exp(ls).sum(axis=1, keepdims=True))
  // loss[n,j] = -ls[n, lab[n,j], j], or 0 where lab == -100
  // loss.sum(), loss.sum() / 3   (3 labels are not ignored)
  HostTensor scores =
      tensor(f64, {2, 3, 2},
             {1.0, -1.0, 2.0, 0.5, 0.0, 3.0, 0.25, 1.5, -2.0, 0.0, 1.0, 1.0});
  HostTensor labels = ints(i64, {2, 2}, {2, -100, 0, 1});
  expectValues(eval(crossEntropy(0), {scores, labels}), t(f64, {2, 2}),
               {2.40760596444438, 0.0, 1.1701261880575138, 2.1041306053367284},
               1e-12);
  expectValues(eval(crossEntropy(1), {scores, labels}), t(f64, {}),
               {5.681862757838623}, 1e-12);
  expectValues(eval(crossEntropy(2), {scores, labels}), t(f64, {}),
               {1.8939542526128743}, 1e-12);
  // i32 labels and an f32 result.
  expectValues(eval(crossEntropy(2), {tensor(f32, {2, 3, 2},
                                             {1.0, -1.0, 2.0, 0.5, 0.0, 3.0,
                                              0.25, 1.5, -2.0, 0.0, 1.0, 1.0}),
                                      ints(i32, {2, 2}, {2, -100, 0, 1})}),
               t(f32, {}), {1.8939542526128743}, 1e-7);
}

TEST(KernelsTest, CrossEntropyEdgeCases) {
  // Two classes with equal scores: each loss is log 2.
  HostTensor scores = tensor(f64, {2, 2}, {0.5, 0.5, -1, -1});
  expectValues(eval(crossEntropy(2), {scores, ints(i64, {2}, {0, 1})}),
               t(f64, {}), {std::log(2.0)}, 1e-15);
  // An ignore_index inside [0, C) is still ignored: only row 1 counts.
  expectValues(eval(crossEntropy(2, 0), {scores, ints(i64, {2}, {0, 1})}),
               t(f64, {}), {std::log(2.0)}, 1e-15);
  // Everything ignored: sum 0, mean 0/0 = NaN (as PyTorch).
  HostTensor ignored = ints(i64, {2}, {-100, -100});
  expectValues(eval(crossEntropy(1), {scores, ignored}), t(f64, {}), {0});
  expectValues(eval(crossEntropy(2), {scores, ignored}), t(f64, {}), {kNaN});
  // A label outside [0, C) that is not ignore_index is an error naming it.
  evalFails(crossEntropy(2), {scores, ints(i64, {2}, {0, 2})},
            "softmax_cross_entropy: label 2 out of range [0, 2)");
  evalFails(crossEntropy(0), {scores, ints(i64, {2}, {-1, 0})},
            "label -1 out of range");
}

//===----------------------------------------------------------------------===//
// runCpuKernel and evaluateOp contracts
//===----------------------------------------------------------------------===//

TEST(KernelsTest, ElementwiseMayRunInPlace) {
  HostTensor a = tensor(f32, {3}, {1, 2, 3});
  HostTensor b = tensor(f32, {3}, {10, 20, 30});
  ASSERT_TRUE(
      runCpuKernel(Attrs(OpKind::Add), {a.ref(), b.ref()}, {a.ref()}).isOk());
  expectValues(a, t(f32, {3}), {11, 22, 33});
  ASSERT_TRUE(runCpuKernel(Attrs(OpKind::Exp), {b.ref()}, {b.ref()}).isOk());
  expectValues(b, t(f32, {3}), {std::exp(10.0), std::exp(20.0), std::exp(30.0)},
               1e-7);
}

TEST(KernelsTest, ContractViolations) {
  HostTensor a = tensor(f32, {1}, {1});
  Status status = runCpuKernel(Attrs(OpKind::Add), {a.ref()}, {a.ref()});
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_NE(status.message().find("add: kernel called with 1 inputs"),
            std::string::npos);
  // evaluateOp validates types first, and the byte count of each input.
  evalFails(Attrs(OpKind::Add), {a, tensor(f32, {2}, {1, 2}), a},
            "add: expects 2 operands, got 3");
  HostTensor shortBytes = a;
  shortBytes.bytes.pop_back();
  evalFails(Attrs(OpKind::Neg), {shortBytes},
            "neg: input 1xf32 has 3 bytes, expected 4");
}

// Found by colossal-fuzz-plan-reader (fuzz/regressions/plan-reader/
// pad-empty-huge-dim.cplan): an empty tensor's other dims are unbounded (a
// 0 x 2^40 tensor holds no bytes and passes every size check), and kernels
// loop over, or size scratch buffers by, partial products of dims. pad built
// a 2^40-entry index table for a dim of an empty result; the cases below,
// found by running random ops on such tensors, crashed or ran for hours.
// Each must now return at once, with the right (empty or reduced) result.
TEST(KernelsTest, EmptyTensorsWithHugeDimsCostNothing) {
  const int64_t huge = int64_t(1) << 40;
  auto empty = [](DType dtype, Dims dims) {
    return HostTensor(t(dtype, dims));
  };
  auto start = std::chrono::steady_clock::now();

  expectValues(eval(pad({0, 0, 0, huge}, 0), {empty(f32, {0, 3})}),
               t(f32, {0, 3 + huge}), {});
  Attrs softmax(OpKind::Softmax);
  softmax.setI("axis", 1);
  expectValues(eval(softmax, {empty(f64, {huge, 0})}), t(f64, {huge, 0}), {});
  Attrs logSoftmax(OpKind::LogSoftmax);
  logSoftmax.setI("axis", 1);
  expectValues(eval(logSoftmax, {empty(f32, {1, 0, huge})}),
               t(f32, {1, 0, huge}), {});
  Attrs cumsum(OpKind::CumSum);
  cumsum.setI("axis", 0);
  cumsum.setI("exclusive", 0);
  cumsum.setI("reverse", 0);
  expectValues(eval(cumsum, {empty(f64, {0, huge, 1})}), t(f64, {0, huge, 1}),
               {});
  Attrs concat(OpKind::Concat);
  concat.setI("axis", 1);
  expectValues(
      eval(concat, {empty(f64, {huge, 0, 0}), empty(f64, {huge, 0, 0})}),
      t(f64, {huge, 0, 0}), {});
  expectValues(eval(matmul(0, 0), {empty(f32, {0, 0}), empty(f32, {0, huge})}),
               t(f32, {0, huge}), {});
  Attrs gather(OpKind::Gather);
  gather.setI("axis", 1);
  expectValues(eval(gather, {empty(i64, {huge, 2, 0}), empty(i64, {2, 0})}),
               t(i64, {huge, 2, 0, 0}), {});
  Attrs layerNormGrad(OpKind::LayerNormGrad);
  layerNormGrad.setI("axis", 1);
  layerNormGrad.setF("epsilon", 1e-5);
  std::vector<HostTensor> grads;
  Status st = evaluateOp(
      layerNormGrad,
      {empty(f16, {huge, 0}), empty(f16, {0}), empty(f16, {huge, 0})}, grads);
  EXPECT_TRUE(st.isOk()) << st.toString();
  // A reduced loss over no positions: sum 0, mean 0/0 = NaN, as always.
  HostTensor scores = empty(f32, {huge, 2, 0});
  HostTensor labels = empty(i64, {huge, 0});
  expectValues(eval(crossEntropy(1), {scores, labels}), t(f32, {}), {0});
  expectValues(eval(crossEntropy(2), {scores, labels}), t(f32, {}), {kNaN});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));

  // An empty result does not hide a bad index: indices are still checked.
  gather.setI("axis", 0);
  evalFails(gather, {empty(f32, {3, 0}), ints(i64, {1}, {7})},
            "gather: index 7 out of range [-3, 3)");
}

TEST(KernelsTest, WhateverInferenceAcceptsRunsSafely) {
  // Random small types and attributes for every op. Whenever
  // inferOutputTypes accepts them, the kernel must run without touching
  // memory outside its tensors (this test is most useful under ASan) and
  // either succeed or report a data-dependent error.
  std::mt19937_64 rng(42);
  auto small = [&](int lo, int hi) {
    return static_cast<int64_t>(lo + static_cast<int>(rng() % (hi - lo + 1)));
  };
  // An attribute value: usually small, sometimes extreme.
  const int64_t extremes[] = {std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max(),
                              int64_t(1) << 62, -(int64_t(1) << 40)};
  auto attrValue = [&](int lo, int hi) {
    return rng() % 40 == 0 ? extremes[rng() % 4] : small(lo, hi);
  };
  int accepted = 0;
  for (int round = 0; round < 30000; ++round) {
    const OpInfo &info = allOps()[rng() % allOps().size()];
    int maxInputs = info.maxInputs < 0 ? 4 : info.maxInputs;
    int count = static_cast<int>(small(info.minInputs, maxInputs));
    // Operands share a base shape and dtype half the time, so that the
    // binary, concat and layer_norm rules get to accept something.
    Dims base;
    for (int64_t d = small(0, 3); d > 0; --d)
      base.push_back(small(0, 3));
    DType baseType = static_cast<DType>(small(1, kMaxDType));
    // Later operands derive their shape from the base in the ways the rules
    // relate them: equal, random, without dim 1 (labels), a suffix (scale),
    // or with the last two dims swapped (matmul).
    std::vector<TensorType> types;
    for (int k = 0; k < count; ++k) {
      TensorType type{baseType, base};
      switch (k == 0 ? 0 : rng() % 5) {
      case 1:
        type.dtype = static_cast<DType>(small(1, kMaxDType));
        type.dims.clear();
        for (int64_t d = small(0, 3); d > 0; --d)
          type.dims.push_back(small(0, 3));
        break;
      case 2:
        type.dtype = rng() % 2 ? DType::kI64 : DType::kI32;
        if (type.dims.size() >= 2)
          type.dims.erase(type.dims.begin() + 1);
        break;
      case 3:
        type.dims.erase(type.dims.begin(),
                        type.dims.begin() + rng() % (type.dims.size() + 1));
        break;
      case 4:
        if (type.dims.size() >= 2)
          std::swap(type.dims[type.dims.size() - 1],
                    type.dims[type.dims.size() - 2]);
        break;
      }
      types.push_back(type);
    }
    Attrs attrs(info.kind);
    for (const AttrSpec &spec : info.attrs) {
      switch (spec.type) {
      case AttrType::kI64:
        attrs.setI(spec.name, attrValue(-1, 3));
        break;
      case AttrType::kDType:
        attrs.setDType(spec.name, static_cast<DType>(small(1, kMaxDType)));
        break;
      case AttrType::kF64:
        attrs.setF(spec.name, 0.5);
        break;
      case AttrType::kF64List:
        attrs.setFloatList(spec.name, {0.5, -2.0});
        break;
      case AttrType::kI64List: {
        // Usually one entry per dim (two for pads), as the rules need.
        int64_t length = rng() % 4 ? static_cast<int64_t>(base.size()) *
                                         (spec.name == "pads" ? 2 : 1)
                                   : small(0, 6);
        std::vector<int64_t> list;
        for (int64_t n = length; n > 0; --n)
          list.push_back(attrValue(-3, 3));
        attrs.setList(spec.name, list);
        break;
      }
      }
    }
    std::vector<TensorType> outTypes;
    if (!inferOutputTypes(attrs, types, outTypes).isOk())
      continue;
    ++accepted;
    std::vector<HostTensor> inputs;
    for (const TensorType &type : types) {
      HostTensor tensor(type);
      for (int64_t i = 0; i < type.numElements(); ++i)
        storeFromInt64(tensor.ref(), i, small(-3, 3));
      inputs.push_back(std::move(tensor));
    }
    std::vector<HostTensor> outputs;
    Status status = evaluateOp(attrs, inputs, outputs);
    if (!status.isOk()) {
      EXPECT_EQ(status.code(), StatusCode::kInvalidArgument)
          << status.toString();
      continue;
    }
    ASSERT_EQ(outputs.size(), static_cast<size_t>(info.numOutputs));
    ASSERT_EQ(outputs.size(), outTypes.size());
    for (size_t k = 0; k < outputs.size(); ++k)
      EXPECT_EQ(outputs[k].type, outTypes[k]) << info.name << " result " << k;
  }
  EXPECT_GT(accepted, 2000);
}

} // namespace
