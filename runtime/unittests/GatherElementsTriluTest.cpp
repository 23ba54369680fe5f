//===- GatherElementsTriluTest.cpp - gather_elements(_grad) and trilu -----===//
//
// The ONNX GatherElements and Trilu ops of OpTable.h and the backward of
// gather_elements: their table entries, their shape rules (mostly
// rejections, each checking the message) and their CPU kernels. Expected
// values are the ONNX spec's examples, worked out by hand in comments, or
// computed by the numpy script quoted above the tests that use it (and
// cross-checked against onnxruntime 1.32); gather_elements_grad is also
// checked against central differences of gather_elements in f64, and the
// trilu gradient rule (trilu of the gradient) against central differences
// of trilu.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

using namespace colossal::runtime;

namespace {

using Dims = std::vector<int64_t>;
using Values = std::vector<double>;
using Types = std::vector<TensorType>;

constexpr DType f64 = DType::kF64;
constexpr DType f32 = DType::kF32;
constexpr DType f16 = DType::kF16;
constexpr DType bf16 = DType::kBF16;
constexpr DType i64 = DType::kI64;
constexpr DType i32 = DType::kI32;
constexpr DType i8 = DType::kI8;
constexpr DType boolean = DType::kBool;
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TensorType t(DType dtype, Dims dims) {
  return TensorType{dtype, std::move(dims)};
}

Attrs gatherElementsAttrs(int64_t axis) {
  Attrs attrs(OpKind::GatherElements);
  attrs.setI("axis", axis);
  return attrs;
}

Attrs gatherElementsGradAttrs(int64_t axis, Dims shape) {
  Attrs attrs(OpKind::GatherElementsGrad);
  attrs.setI("axis", axis);
  attrs.setList("shape", std::move(shape));
  return attrs;
}

Attrs triluAttrs(int64_t upper, int64_t k) {
  Attrs attrs(OpKind::Trilu);
  attrs.setI("upper", upper);
  attrs.setI("k", k);
  return attrs;
}

/// Every result type, or a failed test with the error message.
Types inferOk(const Attrs &attrs, const Types &inputs) {
  Types outputs;
  Status status = inferOutputTypes(attrs, inputs, outputs);
  EXPECT_TRUE(status.isOk()) << status.toString();
  return outputs;
}

/// Expects a kInvalidArgument whose message contains `fragment`.
void inferFails(const Attrs &attrs, const Types &inputs,
                const std::string &fragment) {
  Types outputs;
  Status status = inferOutputTypes(attrs, inputs, outputs);
  ASSERT_FALSE(status.isOk())
      << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << "message: " << status.message();
  EXPECT_TRUE(outputs.empty());
}

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

int64_t numElementsOf(const Dims &dims) {
  int64_t count = 1;
  for (int64_t dim : dims)
    count *= dim;
  return count;
}

/// first, first + 1, ..., first + count - 1.
Values sequence(int64_t count, double first = 0.0) {
  Values values(static_cast<size_t>(count));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = first + static_cast<double>(i);
  return values;
}

/// Uniform values in [-1, 1), from a fixed seed.
Values randomValues(int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  Values values(static_cast<size_t>(count));
  for (double &value : values)
    value = dist(rng);
  return values;
}

Values valuesOf(const HostTensor &tensor) {
  Values values(static_cast<size_t>(tensor.type.numElements()));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = loadAsDouble(tensor.ref(), static_cast<int64_t>(i));
  return values;
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

/// Expects evaluateOp to fail with kInvalidArgument and `fragment`.
void evalFails(const Attrs &attrs, const std::vector<HostTensor> &inputs,
               const std::string &fragment) {
  std::vector<HostTensor> outputs;
  Status status = evaluateOp(attrs, inputs, outputs);
  ASSERT_FALSE(status.isOk()) << "expected: " << fragment;
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << status.message();
}

/// Type and exact values.
void expectExact(const HostTensor &actual, const TensorType &type,
                 const Values &expected) {
  ASSERT_EQ(actual.type, type) << actual.type.toString();
  Values values = valuesOf(actual);
  ASSERT_EQ(values.size(), expected.size());
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_EQ(values[i], expected[i]) << "element " << i;
}

/// Type and exact int64 values (for integer tensors beyond 2^53).
void expectInts(const HostTensor &actual, const TensorType &type,
                const std::vector<int64_t> &expected) {
  ASSERT_EQ(actual.type, type) << actual.type.toString();
  ASSERT_EQ(actual.type.numElements(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(loadAsInt64(actual.ref(), static_cast<int64_t>(i)), expected[i])
        << "element " << i;
}

/// |actual - expected| <= tolerance * max(1, |expected|), element by element.
void expectClose(const Values &actual, const Values &expected, double tolerance,
                 const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i)
    EXPECT_NEAR(actual[i], expected[i],
                tolerance * std::max(1.0, std::fabs(expected[i])))
        << what << ", element " << i;
}

/// sum(out * weights): a scalar loss whose gradient wrt out is `weights`.
double weightedSum(const HostTensor &out, const Values &weights) {
  Values values = valuesOf(out);
  EXPECT_EQ(values.size(), weights.size());
  double sum = 0.0;
  for (size_t i = 0; i < values.size() && i < weights.size(); ++i)
    sum += values[i] * weights[i];
  return sum;
}

/// Central differences of `loss` wrt every element of inputs[k] (f64).
Values numericGradient(
    const std::function<double(const std::vector<HostTensor> &)> &loss,
    std::vector<HostTensor> inputs, size_t k, double h = 1e-5) {
  HostTensor &x = inputs[k];
  Values gradient(static_cast<size_t>(x.type.numElements()));
  for (int64_t i = 0; i < x.type.numElements(); ++i) {
    double saved = loadAsDouble(x.ref(), i);
    storeFromDouble(x.ref(), i, saved + h);
    double plus = loss(inputs);
    storeFromDouble(x.ref(), i, saved - h);
    double minus = loss(inputs);
    storeFromDouble(x.ref(), i, saved);
    gradient[i] = (plus - minus) / (2 * h);
  }
  return gradient;
}

/// The losses are linear in the differentiated input, so central
/// differences are exact up to rounding (~1e-16 * |loss| / h).
constexpr double kFiniteDifferenceTolerance = 1e-9;

//===----------------------------------------------------------------------===//
// Table entries
//===----------------------------------------------------------------------===//

TEST(GatherElementsTriluTableTest, CodesNamesArityAndAttributes) {
  struct Expected {
    OpKind kind;
    uint32_t code;
    const char *name;
    int inputs;
    std::vector<std::pair<std::string_view, AttrType>> attrs;
  };
  const Expected expected[] = {
      {OpKind::GatherElements,
       52,
       "gather_elements",
       2,
       {{"axis", AttrType::kI64}}},
      {OpKind::GatherElementsGrad,
       53,
       "gather_elements_grad",
       2,
       {{"axis", AttrType::kI64}, {"shape", AttrType::kI64List}}},
      {OpKind::Trilu,
       54,
       "trilu",
       1,
       {{"upper", AttrType::kI64}, {"k", AttrType::kI64}}},
  };
  for (const Expected &e : expected) {
    const OpInfo *info = lookupOp(e.code);
    ASSERT_NE(info, nullptr) << e.name;
    EXPECT_EQ(info->kind, e.kind);
    EXPECT_EQ(info->name, e.name);
    EXPECT_EQ(lookupOp(e.name), info);
    EXPECT_EQ(info->minInputs, e.inputs) << e.name;
    EXPECT_EQ(info->maxInputs, e.inputs) << e.name;
    EXPECT_EQ(info->numOutputs, 1) << e.name;
    std::vector<std::pair<std::string_view, AttrType>> attrs;
    for (const AttrSpec &spec : info->attrs)
      attrs.emplace_back(spec.name, spec.type);
    EXPECT_EQ(attrs, e.attrs) << e.name;
  }
  // 51 stays a gap; 55 to 59 are free.
  EXPECT_EQ(lookupOp(51u), nullptr);
  EXPECT_EQ(lookupOp(55u), nullptr);
}

TEST(GatherElementsTriluTableTest, PlanEncoding) {
  // gather_elements_grad: axis, then shape as count 3 and 3 dims.
  std::vector<int64_t> ints;
  std::vector<double> floats;
  gatherElementsGradAttrs(1, {4, 5, 6}).encode(ints, floats);
  EXPECT_EQ(ints, std::vector<int64_t>({1, 3, 4, 5, 6}));
  EXPECT_TRUE(floats.empty());
  Attrs decoded;
  ASSERT_TRUE(Attrs::decode(OpKind::GatherElementsGrad, ints.data(),
                            ints.size(), nullptr, 0, decoded)
                  .isOk());
  EXPECT_EQ(decoded.i("axis"), 1);
  EXPECT_EQ(decoded.list("shape"), Dims({4, 5, 6}));
  // trilu: upper, then k (any int64 survives the pool).
  ints.clear();
  triluAttrs(0, kMin).encode(ints, floats);
  EXPECT_EQ(ints, std::vector<int64_t>({0, kMin}));
  ASSERT_TRUE(Attrs::decode(OpKind::Trilu, ints.data(), ints.size(), nullptr, 0,
                            decoded)
                  .isOk());
  EXPECT_EQ(decoded.i("k"), kMin);
}

//===----------------------------------------------------------------------===//
// Shape rules
//===----------------------------------------------------------------------===//

TEST(GatherElementsInferTest, ResultIsDataDtypeWithIndicesDims) {
  EXPECT_EQ(inferOk(gatherElementsAttrs(1), {t(f32, {2, 2}), t(i64, {2, 2})}),
            Types({t(f32, {2, 2})}));
  // Off the axis indices may be smaller than data; on it, larger.
  EXPECT_EQ(
      inferOk(gatherElementsAttrs(1), {t(bf16, {2, 3, 4}), t(i32, {1, 7, 4})}),
      Types({t(bf16, {1, 7, 4})}));
  EXPECT_EQ(inferOk(gatherElementsAttrs(0), {t(i64, {3, 4}), t(i64, {5, 0})}),
            Types({t(i64, {5, 0})}));
  // Any data dtype; rank 1 is fine.
  EXPECT_EQ(inferOk(gatherElementsAttrs(0), {t(boolean, {3}), t(i32, {6})}),
            Types({t(boolean, {6})}));
}

TEST(GatherElementsInferTest, Rejections) {
  inferFails(gatherElementsAttrs(0), {t(f32, {3, 4}), t(i64, {2})},
             "gather_elements: indices rank 1 must equal data rank 2, got "
             "[2] and [3, 4]");
  inferFails(gatherElementsAttrs(0), {t(f32, {3, 4}), t(i64, {1, 5})},
             "gather_elements: indices dim 1 is 5, must be <= data dim 1 = 4 "
             "(off the axis 0)");
  inferFails(gatherElementsAttrs(1), {t(f32, {3, 4}), t(i64, {4, 1})},
             "gather_elements: indices dim 0 is 4, must be <= data dim 0 = 3");
  inferFails(gatherElementsAttrs(2), {t(f32, {3, 4}), t(i64, {3, 4})},
             "gather_elements: axis 2 out of range [0, 2)");
  // Negative axes are normalised by the importer, not here.
  inferFails(gatherElementsAttrs(-1), {t(f32, {3, 4}), t(i64, {3, 4})},
             "gather_elements: axis -1 out of range [0, 2)");
  // ONNX needs rank >= 1: a scalar has no axis.
  inferFails(gatherElementsAttrs(0), {t(f32, {}), t(i64, {})},
             "gather_elements: axis 0 out of range [0, 0)");
  inferFails(gatherElementsAttrs(0), {t(f32, {3}), t(f32, {3})},
             "gather_elements: operand 1 must be i32 or i64, got 3xf32");
  inferFails(gatherElementsAttrs(0), {t(f32, {3}), t(i8, {3})},
             "gather_elements: operand 1 must be i32 or i64, got 3xi8");
  inferFails(gatherElementsAttrs(0), {t(f32, {3, -1}), t(i64, {3, 1})},
             "gather_elements: operand 0 has a negative dim");
  inferFails(gatherElementsAttrs(0), {t(f32, {3})},
             "gather_elements: expects 2 operands, got 1");
}

TEST(GatherElementsGradInferTest, ResultIsGradDtypeWithShape) {
  EXPECT_EQ(inferOk(gatherElementsGradAttrs(0, {3, 4}),
                    {t(f32, {5, 4}), t(i64, {5, 4})}),
            Types({t(f32, {3, 4})}));
  EXPECT_EQ(inferOk(gatherElementsGradAttrs(2, {2, 3, 4}),
                    {t(bf16, {1, 3, 9}), t(i32, {1, 3, 9})}),
            Types({t(bf16, {2, 3, 4})}));
  // No indices: zeros of `shape`.
  EXPECT_EQ(inferOk(gatherElementsGradAttrs(0, {2, 2}),
                    {t(f64, {0, 2}), t(i64, {0, 2})}),
            Types({t(f64, {2, 2})}));
}

TEST(GatherElementsGradInferTest, Rejections) {
  inferFails(gatherElementsGradAttrs(0, {3, 4}),
             {t(f32, {2, 4}), t(i64, {2, 3})},
             "gather_elements_grad: grad shape [2, 4] must be indices' shape "
             "[2, 3]");
  inferFails(gatherElementsGradAttrs(0, {3, 4}),
             {t(i64, {2, 4}), t(i64, {2, 4})},
             "gather_elements_grad: operand 0 must be float, got 2x4xi64");
  inferFails(gatherElementsGradAttrs(0, {3, 4}),
             {t(f32, {2, 4}), t(f32, {2, 4})},
             "gather_elements_grad: operand 1 must be i32 or i64, got 2x4xf32");
  inferFails(gatherElementsGradAttrs(0, {3, 4}), {t(f32, {8}), t(i64, {8})},
             "gather_elements_grad: indices rank 1 must equal shape rank 2, "
             "got [8] and [3, 4]");
  inferFails(gatherElementsGradAttrs(0, {3, 4}),
             {t(f32, {2, 5}), t(i64, {2, 5})},
             "gather_elements_grad: indices dim 1 is 5, must be <= shape dim 1 "
             "= 4 (off the axis 0)");
  inferFails(gatherElementsGradAttrs(2, {3, 4}),
             {t(f32, {3, 4}), t(i64, {3, 4})},
             "gather_elements_grad: axis 2 out of range [0, 2)");
  inferFails(gatherElementsGradAttrs(0, {}), {t(f32, {}), t(i64, {})},
             "gather_elements_grad: axis 0 out of range [0, 0)");
  inferFails(gatherElementsGradAttrs(0, {3, -4}),
             {t(f32, {2, 4}), t(i64, {2, 4})},
             "gather_elements_grad: shape has a negative dim in [3, -4]");
  inferFails(gatherElementsGradAttrs(0, {int64_t(1) << 40, int64_t(1) << 40}),
             {t(f32, {1, 1}), t(i64, {1, 1})},
             "gather_elements_grad: shape [1099511627776, 1099511627776] is "
             "too large");
}

TEST(TriluInferTest, AnyDtypeRankAtLeastTwo) {
  EXPECT_EQ(inferOk(triluAttrs(1, 0), {t(f32, {3, 4})}),
            Types({t(f32, {3, 4})}));
  EXPECT_EQ(inferOk(triluAttrs(0, kMin), {t(boolean, {2, 0, 5})}),
            Types({t(boolean, {2, 0, 5})}));
  EXPECT_EQ(inferOk(triluAttrs(0, kMax), {t(i8, {1, 2, 3, 4})}),
            Types({t(i8, {1, 2, 3, 4})}));
  inferFails(triluAttrs(1, 0), {t(f32, {4})},
             "trilu: x needs rank >= 2, got 4xf32");
  inferFails(triluAttrs(1, 0), {t(f32, {})}, "trilu: x needs rank >= 2");
  inferFails(triluAttrs(2, 0), {t(f32, {2, 2})},
             "trilu: upper must be 0 or 1, got 2");
  inferFails(triluAttrs(-1, 0), {t(f32, {2, 2})},
             "trilu: upper must be 0 or 1, got -1");
  inferFails(triluAttrs(1, 0), {t(f32, {2, 2}), t(f32, {2, 2})},
             "trilu: expects 1 operands, got 2");
}

//===----------------------------------------------------------------------===//
// gather_elements
//===----------------------------------------------------------------------===//

TEST(GatherElementsTest, OnnxSpecExamples) {
  // Example 1, axis 1: out[i][j] = data[i][indices[i][j]]:
  // [[data[0][0], data[0][0]], [data[1][1], data[1][0]]] = [[1, 1], [4, 3]].
  expectExact(eval(gatherElementsAttrs(1), {tensor(f32, {2, 2}, {1, 2, 3, 4}),
                                            ints(i64, {2, 2}, {0, 0, 1, 0})}),
              t(f32, {2, 2}), {1, 1, 4, 3});
  // Example 2, axis 0: out[i][j] = data[indices[i][j]][j]:
  // [[data[1][0], data[2][1], data[0][2]], [data[2][0], data[0][1],
  // data[0][2]]] = [[4, 8, 3], [7, 2, 3]].
  expectExact(eval(gatherElementsAttrs(0),
                   {tensor(f32, {3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}),
                    ints(i32, {2, 3}, {1, 2, 0, 2, 0, 0})}),
              t(f32, {2, 3}), {4, 8, 3, 7, 2, 3});
  // ONNX's backend test gather_elements_negative_indices, axis 0, indices
  // [[-1, -2, 0], [-2, 0, 0]] (-1 is row 2, -2 row 1): [[data[2][0],
  // data[1][1], data[0][2]], [data[1][0], data[0][1], data[0][2]]] =
  // [[7, 5, 3], [4, 2, 3]].
  expectExact(eval(gatherElementsAttrs(0),
                   {tensor(f32, {3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}),
                    ints(i64, {2, 3}, {-1, -2, 0, -2, 0, 0})}),
              t(f32, {2, 3}), {7, 5, 3, 4, 2, 3});
}

// Expected values from numpy (1.24, /usr/bin/python3); onnxruntime 1.32's
// GatherElements gives the same. Slicing data down to the indices' dims off
// the axis makes take_along_axis compute ONNX's rule exactly.
//   import numpy as np
//   data = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
//   idx = np.array([[[0, -1, 2], [1, 1, -3]], [[2, 0, -2], [-1, 1, 0]]])
//   print(np.take_along_axis(data[:, :, :3], idx, axis=1).ravel().tolist())
//   idx = np.array([[[3, 0, -1, 1, 1], [-4, 2, 2, 0, 3],
//                    [1, -2, 0, 3, -3]]])
//   print(np.take_along_axis(data[:1], idx, axis=2).ravel().tolist())
//   idx = np.array([[[1], [0]], [[-2], [-1]], [[0], [1]]])
//   print(np.take_along_axis(data[:, :2, :1], idx, axis=0).ravel().tolist())
TEST(GatherElementsTest, EveryAxisOfARank3TensorMatchesNumpy) {
  HostTensor data = tensor(f64, {2, 3, 4}, sequence(24));
  // axis 1, indices [2, 2, 3]: smaller than data in dim 2.
  expectExact(eval(gatherElementsAttrs(1),
                   {data, ints(i64, {2, 2, 3},
                               {0, -1, 2, 1, 1, -3, 2, 0, -2, -1, 1, 0})}),
              t(f64, {2, 2, 3}), {0, 9, 10, 4, 5, 2, 20, 13, 18, 20, 17, 14});
  // axis 2, indices [1, 3, 5]: longer than data (4) on the axis itself.
  expectExact(
      eval(gatherElementsAttrs(2),
           {data, ints(i32, {1, 3, 5},
                       {3, 0, -1, 1, 1, -4, 2, 2, 0, 3, 1, -2, 0, 3, -3})}),
      t(f64, {1, 3, 5}), {3, 0, 3, 1, 1, 4, 6, 6, 4, 7, 9, 10, 8, 11, 9});
  // axis 0, indices [3, 2, 1].
  expectExact(eval(gatherElementsAttrs(0),
                   {data, ints(i64, {3, 2, 1}, {1, 0, -2, -1, 0, 1})}),
              t(f64, {3, 2, 1}), {12, 4, 0, 16, 0, 16});
}

TEST(GatherElementsTest, MovesElementBytesOfAnyDtype) {
  // i64 beyond 2^53 (a trip through double would round it), bool and bf16.
  const int64_t big = (int64_t(1) << 62) + 1;
  expectInts(eval(gatherElementsAttrs(0),
                  {ints(i64, {2}, {big, -big}), ints(i32, {3}, {1, 0, -2})}),
             t(i64, {3}), {-big, big, big});
  expectInts(
      eval(gatherElementsAttrs(1), {ints(boolean, {2, 2}, {1, 0, 0, 1}),
                                    ints(i64, {2, 3}, {1, 1, 0, 1, 0, 0})}),
      t(boolean, {2, 3}), {0, 0, 1, 1, 0, 0});
  // 1.5 and -0.375 are exact in bf16.
  expectExact(eval(gatherElementsAttrs(1), {tensor(bf16, {1, 2}, {1.5, -0.375}),
                                            ints(i64, {1, 2}, {1, -2})}),
              t(bf16, {1, 2}), {-0.375, 1.5});
}

TEST(GatherElementsTest, OutOfRangeIndexIsAnError) {
  HostTensor data = tensor(f32, {3, 2}, {1, 2, 3, 4, 5, 6});
  evalFails(gatherElementsAttrs(0), {data, ints(i64, {1, 2}, {0, 3})},
            "gather_elements: index 3 out of range [-3, 3)");
  evalFails(gatherElementsAttrs(0), {data, ints(i32, {1, 2}, {-4, 0})},
            "gather_elements: index -4 out of range [-3, 3)");
  evalFails(gatherElementsAttrs(1), {data, ints(i64, {1, 1}, {kMin})},
            "gather_elements: index -9223372036854775808 out of range [-2, 2)");
  // An empty axis has no valid index; with no indices there is nothing to
  // check and the result is empty.
  evalFails(gatherElementsAttrs(0),
            {HostTensor(t(f32, {0, 2})), ints(i64, {1, 2}, {0, 0})},
            "gather_elements: index 0 out of range [0, 0)");
  expectExact(eval(gatherElementsAttrs(0),
                   {HostTensor(t(f32, {0, 2})), ints(i64, {0, 2}, {})}),
              t(f32, {0, 2}), {});
}

//===----------------------------------------------------------------------===//
// gather_elements_grad
//===----------------------------------------------------------------------===//

TEST(GatherElementsGradTest, MatchesFiniteDifferencesOfGatherElements) {
  // Repeated and negative indices on every axis, indices smaller than the
  // data off the axis and larger on it, and a rank-1 case.
  struct Case {
    int64_t axis;
    Dims data;
    Dims indexDims;
    std::vector<int64_t> indices;
  };
  const Case cases[] = {
      {0, {3, 4}, {5, 3}, {0, -3, 2, 2, 0, 0, -1, 1, 0, 2, 2, -2, 1, 1, 1}},
      {1, {2, 3, 4}, {2, 2, 3}, {0, -1, 2, 1, 1, -3, 2, 0, -2, -1, 1, 0}},
      {2,
       {2, 3, 4},
       {1, 3, 5},
       {3, 0, -1, 1, 1, -4, 2, 2, 0, 3, 1, -2, 0, 3, -3}},
      {0, {5}, {7}, {4, -1, 0, 2, 2, -5, 1}},
  };
  uint64_t seed = 1;
  for (const Case &c : cases) {
    HostTensor data =
        tensor(f64, c.data, randomValues(numElementsOf(c.data), seed++));
    HostTensor indices = ints(i64, c.indexDims, c.indices);
    Values weights = randomValues(numElementsOf(c.indexDims), seed++);
    auto loss = [&](const std::vector<HostTensor> &in) {
      return weightedSum(eval(gatherElementsAttrs(c.axis), in), weights);
    };
    Values numeric = numericGradient(loss, {data, indices}, 0);
    HostTensor analytic = eval(gatherElementsGradAttrs(c.axis, c.data),
                               {tensor(f64, c.indexDims, weights), indices});
    ASSERT_EQ(analytic.type, data.type);
    expectClose(valuesOf(analytic), numeric, kFiniteDifferenceTolerance,
                "gather_elements_grad axis " + std::to_string(c.axis));
  }
}

// Expected values from numpy (1.24, /usr/bin/python3):
//   import numpy as np
//   idx = np.array([[0, -3, 2], [2, 0, 0], [-1, 1, 0], [2, 2, -2]])
//   grad = np.arange(1, 13, dtype=np.float64).reshape(4, 3) * 0.5
//   out = np.zeros((3, 4))
//   np.add.at(out, (idx, np.arange(3)[None, :]), grad)
//   print(out.ravel().tolist())
//   idx = np.array([[2, -1, 0, 2, -3]])
//   grad = np.array([[1.0, 2.0, 4.0, 8.0, 16.0]])
//   out = np.zeros((2, 3))
//   np.add.at(out, (np.arange(1)[:, None], idx), grad)
//   print(out.ravel().tolist())
TEST(GatherElementsGradTest, ScatterAddMatchesNumpy) {
  // axis 0 of shape [3, 4] from indices [4, 3]: column 3 gets nothing.
  expectExact(
      eval(gatherElementsGradAttrs(0, {3, 4}),
           {tensor(f32, {4, 3},
                   {0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6}),
            ints(i64, {4, 3}, {0, -3, 2, 2, 0, 0, -1, 1, 0, 2, 2, -2})}),
      t(f32, {3, 4}), {0.5, 3.5, 7.5, 0, 0, 4, 6, 0, 10.5, 5.5, 1.5, 0});
  // axis 1 of shape [2, 3] from indices [1, 5]: row 1 gets nothing.
  expectExact(eval(gatherElementsGradAttrs(1, {2, 3}),
                   {tensor(f16, {1, 5}, {1, 2, 4, 8, 16}),
                    ints(i32, {1, 5}, {2, -1, 0, 2, -3})}),
              t(f16, {2, 3}), {20, 0, 11, 0, 0, 0});
}

TEST(GatherElementsGradTest, RepeatedPositionsSumInDoubleThenRound) {
  // Position 1 receives 1 + 2^-24 + 2^-24 = 1 + 2^-23, which f32 holds
  // exactly; adding in f32 would round 1 + 2^-24 to 1 (a tie, to even)
  // twice and give 1. Position 0 receives -1.5 (index -3) and 0.25;
  // position 2 nothing.
  const double tiny = std::ldexp(1.0, -24);
  HostTensor grad = tensor(f32, {5}, {1.0, -1.5, tiny, tiny, 0.25});
  HostTensor indices = ints(i32, {5}, {1, -3, 1, -2, 0});
  expectExact(eval(gatherElementsGradAttrs(0, {3}), {grad, indices}),
              t(f32, {3}), {-1.25, 1.0 + 2 * tiny, 0.0});
}

TEST(GatherElementsGradTest, OutOfRangeIndexIsAnError) {
  HostTensor grad = tensor(f32, {1, 2}, {1, 2});
  evalFails(gatherElementsGradAttrs(0, {4, 2}),
            {grad, ints(i64, {1, 2}, {0, 4})},
            "gather_elements_grad: index 4 out of range [-4, 4)");
  evalFails(gatherElementsGradAttrs(1, {4, 2}),
            {grad, ints(i32, {1, 2}, {-3, 0})},
            "gather_elements_grad: index -3 out of range [-2, 2)");
  evalFails(gatherElementsGradAttrs(0, {0, 2}),
            {grad, ints(i64, {1, 2}, {0, 0})},
            "gather_elements_grad: index 0 out of range [0, 0)");
  // No indices: zeros.
  expectExact(eval(gatherElementsGradAttrs(0, {2, 2}),
                   {HostTensor(t(f32, {0, 2})), ints(i64, {0, 2}, {})}),
              t(f32, {2, 2}), {0, 0, 0, 0});
}

//===----------------------------------------------------------------------===//
// trilu
//===----------------------------------------------------------------------===//

// Expected values from numpy (1.24, /usr/bin/python3): np.triu(x, k) keeps
// j - i >= k and np.tril(x, k) keeps j - i <= k, as ONNX Trilu does;
// onnxruntime 1.32's Trilu gives the same.
//   import numpy as np
//   x = np.arange(1, 25).reshape(2, 3, 4)
//   for upper, k in [(1, 0), (0, 0), (1, -1), (0, 2), (1, 3), (0, -2)]:
//       y = np.triu(x, k) if upper else np.tril(x, k)
//       print(upper, k, y.ravel().tolist())
//   x = np.arange(1, 9).reshape(4, 2)
//   print(np.triu(x, -2).ravel().tolist(), np.tril(x, -1).ravel().tolist())
TEST(TriluTest, BatchedMatricesMatchNumpy) {
  struct Case {
    int64_t upper, k;
    Values expected;
  };
  const Case cases[] = {
      {1, 0, {1,  2,  3,  4,  0, 6,  7,  8,  0, 0, 11, 12,
              13, 14, 15, 16, 0, 18, 19, 20, 0, 0, 23, 24}},
      {0, 0, {1,  0, 0, 0, 5,  6,  0, 0, 9,  10, 11, 0,
              13, 0, 0, 0, 17, 18, 0, 0, 21, 22, 23, 0}},
      {1, -1, {1,  2,  3,  4,  5,  6,  7,  8,  0, 10, 11, 12,
               13, 14, 15, 16, 17, 18, 19, 20, 0, 22, 23, 24}},
      {0, 2, {1,  2,  3,  0, 5,  6,  7,  8,  9,  10, 11, 12,
              13, 14, 15, 0, 17, 18, 19, 20, 21, 22, 23, 24}},
      {1, 3, {0, 0, 0, 4,  0, 0, 0, 0, 0, 0, 0, 0,
              0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0}},
      {0, -2, {0, 0, 0, 0, 0, 0, 0, 0, 9,  0, 0, 0,
               0, 0, 0, 0, 0, 0, 0, 0, 21, 0, 0, 0}},
  };
  HostTensor x = tensor(f32, {2, 3, 4}, sequence(24, 1));
  for (const Case &c : cases) {
    SCOPED_TRACE("upper " + std::to_string(c.upper) + " k " +
                 std::to_string(c.k));
    expectExact(eval(triluAttrs(c.upper, c.k), {x}), t(f32, {2, 3, 4}),
                c.expected);
  }
  // A tall matrix [4, 2]: upper k -2 drops only (3, 0); lower k -1 keeps
  // (1, 0), (2, 0..1), (3, 0..1).
  HostTensor tall = tensor(f64, {4, 2}, sequence(8, 1));
  expectExact(eval(triluAttrs(1, -2), {tall}), t(f64, {4, 2}),
              {1, 2, 3, 4, 5, 6, 0, 8});
  expectExact(eval(triluAttrs(0, -1), {tall}), t(f64, {4, 2}),
              {0, 0, 3, 0, 5, 6, 7, 8});
}

TEST(TriluTest, ExtremeOffsetsKeepAllOrNothing) {
  // j - i lies in [-2, 2] for a [3, 3] matrix: every k <= -2 keeps all of
  // the upper triangle and nothing of the lower, k >= 3 the reverse.
  HostTensor x = tensor(f32, {3, 3}, sequence(9, 1));
  const Values all = sequence(9, 1), none(9, 0.0);
  for (int64_t k : {kMin, int64_t(-3), int64_t(-2)}) {
    expectExact(eval(triluAttrs(1, k), {x}), t(f32, {3, 3}), all);
    expectExact(eval(triluAttrs(0, k), {x}), t(f32, {3, 3}),
                k == -2 ? Values{0, 0, 0, 0, 0, 0, 7, 0, 0} : none);
  }
  for (int64_t k : {kMax, int64_t(3), int64_t(2)}) {
    expectExact(eval(triluAttrs(0, k), {x}), t(f32, {3, 3}), all);
    expectExact(eval(triluAttrs(1, k), {x}), t(f32, {3, 3}),
                k == 2 ? Values{0, 0, 3, 0, 0, 0, 0, 0, 0} : none);
  }
}

TEST(TriluTest, AnyDtypeAndEmptyShapes) {
  // bool [2, 2] all true, lower k 0: [[1, 0], [1, 1]]; i64 keeps its bytes.
  expectInts(eval(triluAttrs(0, 0), {ints(boolean, {2, 2}, {1, 1, 1, 1})}),
             t(boolean, {2, 2}), {1, 0, 1, 1});
  const int64_t big = (int64_t(1) << 62) + 1;
  expectInts(
      eval(triluAttrs(1, 1), {ints(i64, {2, 2}, {big, big, -big, -big})}),
      t(i64, {2, 2}), {0, big, 0, 0});
  // Upper k 1 keeps only (0, 1). Zeros are +0 (all-zero bytes), even where
  // the input was -0 or NaN.
  HostTensor special = tensor(f16, {2, 2}, {-0.0, 1.0, std::nan(""), 2.0});
  HostTensor out = eval(triluAttrs(1, 1), {special});
  expectExact(out, t(f16, {2, 2}), {0, 1, 0, 0});
  EXPECT_FALSE(std::signbit(loadAsDouble(out.ref(), 0)));
  // Empty batch, rows or columns: an empty result.
  for (const Dims &dims : {Dims{0, 2, 2}, Dims{2, 0, 3}, Dims{3, 0}})
    expectExact(eval(triluAttrs(1, 0), {HostTensor(t(f32, dims))}),
                t(f32, dims), {});
}

TEST(TriluTest, RunsInPlace) {
  // The kernel reads each element only at its own position before writing
  // it, so the output may alias the input exactly.
  HostTensor x = tensor(f32, {2, 3}, sequence(6, 1));
  Attrs attrs = triluAttrs(0, 0);
  ASSERT_TRUE(runCpuKernel(attrs, {x.ref()}, {x.ref()}).isOk());
  expectExact(x, t(f32, {2, 3}), {1, 0, 0, 4, 5, 0});
}

TEST(TriluTest, GradientIsTriluOfTheGradient) {
  // d sum(w * trilu(x)) / dx = trilu(w) with the same attrs, so the
  // backward needs no op of its own.
  uint64_t seed = 100;
  for (int64_t upper : {0, 1}) {
    for (int64_t k : {int64_t(-1), int64_t(0), int64_t(2)}) {
      Dims dims = {2, 3, 4};
      HostTensor x = tensor(f64, dims, randomValues(24, seed++));
      Values weights = randomValues(24, seed++);
      Attrs attrs = triluAttrs(upper, k);
      auto loss = [&](const std::vector<HostTensor> &in) {
        return weightedSum(eval(attrs, in), weights);
      };
      Values numeric = numericGradient(loss, {x}, 0);
      HostTensor analytic = eval(attrs, {tensor(f64, dims, weights)});
      expectClose(valuesOf(analytic), numeric, kFiniteDifferenceTolerance,
                  "trilu upper " + std::to_string(upper) + " k " +
                      std::to_string(k));
    }
  }
}

} // namespace
