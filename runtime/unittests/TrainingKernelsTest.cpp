//===- TrainingKernelsTest.cpp - Backward and optimizer ops ---------------===//
//
// The training ops of OpTable.h (gather_grad, slice_grad, layer_norm_grad,
// softmax_cross_entropy_grad, adamw, sgd): their table entries, their shape
// rules (mostly rejections, each checking the message), and their kernels.
// Gradient kernels are checked against central differences of the forward
// kernels in f64; optimizer steps against values from an independent numpy
// re-implementation (the script is quoted above the test that uses it).
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

constexpr DType f64 = DType::kF64;
constexpr DType f32 = DType::kF32;
constexpr DType f16 = DType::kF16;
constexpr DType bf16 = DType::kBF16;
constexpr DType i64 = DType::kI64;
constexpr DType i32 = DType::kI32;
constexpr DType boolean = DType::kBool;
constexpr int64_t kNone = std::numeric_limits<int64_t>::min();

TensorType t(DType dtype, Dims dims) {
  return TensorType{dtype, std::move(dims)};
}

/// Every result type, or a failed test with the error message.
std::vector<TensorType> inferOk(const Attrs &attrs,
                                const std::vector<TensorType> &inputs) {
  std::vector<TensorType> outputs;
  Status status = inferOutputTypes(attrs, inputs, outputs);
  EXPECT_TRUE(status.isOk()) << status.toString();
  return outputs;
}

/// Expects a kInvalidArgument whose message contains `fragment`.
void inferFails(const Attrs &attrs, const std::vector<TensorType> &inputs,
                const std::string &fragment) {
  std::vector<TensorType> outputs;
  Status status = inferOutputTypes(attrs, inputs, outputs);
  ASSERT_FALSE(status.isOk())
      << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << "message: " << status.message();
  EXPECT_TRUE(outputs.empty());
}

using Types = std::vector<TensorType>;

Attrs gatherGradAttrs(int64_t axis, Dims shape, int64_t paddingIdx = kNone) {
  Attrs attrs(OpKind::GatherGrad);
  attrs.setI("axis", axis);
  attrs.setList("shape", std::move(shape));
  attrs.setI("padding_idx", paddingIdx);
  return attrs;
}

Attrs sliceGradAttrs(Dims starts, Dims steps, Dims shape) {
  Attrs attrs(OpKind::SliceGrad);
  attrs.setList("starts", std::move(starts));
  attrs.setList("steps", std::move(steps));
  attrs.setList("shape", std::move(shape));
  return attrs;
}

Attrs layerNormGradAttrs(int64_t axis, double epsilon) {
  Attrs attrs(OpKind::LayerNormGrad);
  attrs.setI("axis", axis);
  attrs.setF("epsilon", epsilon);
  return attrs;
}

Attrs crossEntropyGradAttrs(int64_t reduction, int64_t ignoreIndex = -100) {
  Attrs attrs(OpKind::SoftmaxCrossEntropyGrad);
  attrs.setI("ignore_index", ignoreIndex);
  attrs.setI("reduction", reduction);
  return attrs;
}

Attrs adamwAttrs(double beta1, double beta2, double eps, double weightDecay) {
  Attrs attrs(OpKind::AdamW);
  attrs.setF("beta1", beta1);
  attrs.setF("beta2", beta2);
  attrs.setF("eps", eps);
  attrs.setF("weight_decay", weightDecay);
  return attrs;
}

Attrs adamwNormAttrs(double beta1, double beta2, double eps,
                     double weightDecay) {
  Attrs attrs(OpKind::AdamWNorm);
  attrs.setF("beta1", beta1);
  attrs.setF("beta2", beta2);
  attrs.setF("eps", eps);
  attrs.setF("weight_decay", weightDecay);
  return attrs;
}

Attrs sgdAttrs(double momentum, double dampening, double weightDecay,
               int64_t nesterov) {
  Attrs attrs(OpKind::Sgd);
  attrs.setF("momentum", momentum);
  attrs.setF("dampening", dampening);
  attrs.setF("weight_decay", weightDecay);
  attrs.setI("nesterov", nesterov);
  return attrs;
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

/// Uniform values in [lo, hi), from a fixed seed.
Values randomValues(size_t count, uint64_t seed, double lo = -1.0,
                    double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Values values(count);
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

/// Runs the op through evaluateOp and returns all its results.
std::vector<HostTensor> evalAll(const Attrs &attrs,
                                const std::vector<HostTensor> &inputs) {
  std::vector<HostTensor> outputs;
  Status status = evaluateOp(attrs, inputs, outputs);
  EXPECT_TRUE(status.isOk()) << status.toString();
  EXPECT_EQ(outputs.size(),
            static_cast<size_t>(opInfo(attrs.kind()).numOutputs));
  return outputs;
}

HostTensor eval(const Attrs &attrs, const std::vector<HostTensor> &inputs) {
  std::vector<HostTensor> outputs = evalAll(attrs, inputs);
  return outputs.empty() ? HostTensor() : std::move(outputs[0]);
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

/// Central differences of `loss` wrt every element of inputs[k] (f64), step
/// h: truncation error O(h^2), rounding error O(1e-16 * |loss| / h).
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

/// Gradients of smooth f64 losses agree with central differences to this.
constexpr double kFiniteDifferenceTolerance = 1e-7;

//===----------------------------------------------------------------------===//
// Table entries
//===----------------------------------------------------------------------===//

TEST(TrainingOpTableTest, CodesNamesAndArity) {
  struct Expected {
    OpKind kind;
    uint32_t code;
    const char *name;
    int inputs, outputs;
    int maxInputs = -2; // -2: as inputs
  };
  const Expected expected[] = {
      {OpKind::GatherGrad, 90, "gather_grad", 2, 1},
      {OpKind::SliceGrad, 91, "slice_grad", 1, 1},
      {OpKind::LayerNormGrad, 92, "layer_norm_grad", 3, 3},
      {OpKind::SoftmaxCrossEntropyGrad, 93, "softmax_cross_entropy_grad", 3, 1},
      {OpKind::AdamW, 94, "adamw", 6, 3, 7}, // 7: with the divisor
      {OpKind::Sgd, 95, "sgd", 5, 2},
      {OpKind::AdamWNorm, 96, "adamw_norm", 7, 4},
  };
  for (const Expected &e : expected) {
    const OpInfo *info = lookupOp(e.code);
    ASSERT_NE(info, nullptr) << e.name;
    EXPECT_EQ(info->kind, e.kind);
    EXPECT_EQ(info->name, e.name);
    EXPECT_EQ(lookupOp(e.name), info);
    EXPECT_EQ(info->minInputs, e.inputs) << e.name;
    EXPECT_EQ(info->maxInputs, e.maxInputs == -2 ? e.inputs : e.maxInputs)
        << e.name;
    EXPECT_EQ(info->numOutputs, e.outputs) << e.name;
  }
  // Everything older has one result.
  EXPECT_EQ(opInfo(OpKind::LayerNorm).numOutputs, 1);
  EXPECT_EQ(opInfo(OpKind::SoftmaxCrossEntropy).numOutputs, 1);
  EXPECT_EQ(lookupOp(89u), nullptr);
  EXPECT_EQ(lookupOp(97u), nullptr);
}

TEST(TrainingOpTableTest, AttributeSpecs) {
  auto specs = [](OpKind kind) {
    std::vector<std::pair<std::string_view, AttrType>> out;
    for (const AttrSpec &spec : opInfo(kind).attrs)
      out.emplace_back(spec.name, spec.type);
    return out;
  };
  using V = std::vector<std::pair<std::string_view, AttrType>>;
  constexpr AttrType kI64 = AttrType::kI64, kList = AttrType::kI64List,
                     kF64 = AttrType::kF64;
  EXPECT_EQ(specs(OpKind::GatherGrad),
            V({{"axis", kI64}, {"shape", kList}, {"padding_idx", kI64}}));
  EXPECT_EQ(specs(OpKind::SliceGrad),
            V({{"starts", kList}, {"steps", kList}, {"shape", kList}}));
  EXPECT_EQ(specs(OpKind::LayerNormGrad),
            V({{"axis", kI64}, {"epsilon", kF64}}));
  EXPECT_EQ(specs(OpKind::SoftmaxCrossEntropyGrad),
            V({{"ignore_index", kI64}, {"reduction", kI64}}));
  EXPECT_EQ(specs(OpKind::AdamW), V({{"beta1", kF64},
                                     {"beta2", kF64},
                                     {"eps", kF64},
                                     {"weight_decay", kF64}}));
  EXPECT_EQ(specs(OpKind::Sgd), V({{"momentum", kF64},
                                   {"dampening", kF64},
                                   {"weight_decay", kF64},
                                   {"nesterov", kI64}}));
}

TEST(TrainingOpTableTest, PlanEncoding) {
  // gather_grad: axis, shape (count 2, then 2 dims), padding_idx.
  std::vector<int64_t> ints;
  std::vector<double> floats;
  gatherGradAttrs(0, {5, 3}, -1).encode(ints, floats);
  EXPECT_EQ(ints, std::vector<int64_t>({0, 2, 5, 3, -1}));
  EXPECT_TRUE(floats.empty());
  // sgd: the three doubles in the float pool, nesterov in the int pool.
  ints.clear();
  sgdAttrs(0.9, 0.0, 1e-4, 1).encode(ints, floats);
  EXPECT_EQ(ints, std::vector<int64_t>({1}));
  EXPECT_EQ(floats, std::vector<double>({0.9, 0.0, 1e-4}));
  Attrs decoded;
  ASSERT_TRUE(Attrs::decode(OpKind::Sgd, ints.data(), ints.size(),
                            floats.data(), floats.size(), decoded)
                  .isOk());
  EXPECT_EQ(decoded.f("momentum"), 0.9);
  EXPECT_EQ(decoded.i("nesterov"), 1);
}

//===----------------------------------------------------------------------===//
// Shape rules
//===----------------------------------------------------------------------===//

TEST(TrainingInferTest, GatherGrad) {
  // Embedding backward: data [10, 4], indices [2, 3] -> grad [2, 3, 4].
  EXPECT_EQ(
      inferOk(gatherGradAttrs(0, {10, 4}), {t(f32, {2, 3, 4}), t(i64, {2, 3})}),
      Types({t(f32, {10, 4})}));
  // axis 1 of [2, 5, 3] with indices [4]: grad [2, 4, 3]; bf16 stays bf16.
  EXPECT_EQ(inferOk(gatherGradAttrs(1, {2, 5, 3}, 4),
                    {t(bf16, {2, 4, 3}), t(i32, {4})}),
            Types({t(bf16, {2, 5, 3})}));
  // Scalar indices drop the axis: grad [2, 3] for shape [2, 5, 3].
  EXPECT_EQ(
      inferOk(gatherGradAttrs(1, {2, 5, 3}, -5), {t(f64, {2, 3}), t(i64, {})}),
      Types({t(f64, {2, 5, 3})}));

  inferFails(gatherGradAttrs(0, {10, 4}), {t(f32, {2, 3, 5}), t(i64, {2, 3})},
             "gather_grad: grad shape [2, 3, 5] must be shape[:axis] ++ "
             "indices ++ shape[axis+1:] = [2, 3, 4]");
  inferFails(gatherGradAttrs(0, {10, 4}), {t(i64, {2, 4}), t(i64, {2})},
             "gather_grad: operand 0 must be float, got 2x4xi64");
  inferFails(gatherGradAttrs(0, {10, 4}), {t(f32, {2, 4}), t(f32, {2})},
             "gather_grad: operand 1 must be i32 or i64, got 2xf32");
  inferFails(gatherGradAttrs(2, {10, 4}), {t(f32, {2, 4}), t(i64, {2})},
             "gather_grad: axis 2 out of range [0, 2)");
  inferFails(gatherGradAttrs(-1, {10, 4}), {t(f32, {2, 4}), t(i64, {2})},
             "gather_grad: axis -1 out of range [0, 2)");
  inferFails(gatherGradAttrs(0, {}), {t(f32, {}), t(i64, {})},
             "gather_grad: axis 0 out of range [0, 0)");
  inferFails(gatherGradAttrs(0, {10, -4}), {t(f32, {2, -4}), t(i64, {2})},
             "gather_grad: operand 0 has a negative dim");
  inferFails(gatherGradAttrs(0, {10, -4}), {t(f32, {2, 4}), t(i64, {2})},
             "gather_grad: shape has a negative dim in [10, -4]");
  inferFails(gatherGradAttrs(0, {int64_t(1) << 40, int64_t(1) << 40}),
             {t(f32, {1, int64_t(1) << 40}), t(i64, {1})},
             "gather_grad: shape [1099511627776, 1099511627776] is too large");
  inferFails(gatherGradAttrs(0, {10, 4}, 10), {t(f32, {2, 4}), t(i64, {2})},
             "gather_grad: padding_idx 10 out of range [-10, 10)");
  inferFails(gatherGradAttrs(0, {10, 4}, -11), {t(f32, {2, 4}), t(i64, {2})},
             "gather_grad: padding_idx -11 out of range [-10, 10)");
  inferFails(gatherGradAttrs(0, {10, 4}), {t(f32, {2, 4})},
             "gather_grad: expects 2 operands, got 1");
}

TEST(TrainingInferTest, SliceGrad) {
  // The backward of slicing [6, 4] with starts [1, 3], steps [2, -1],
  // sizes [3, 2] (rows 1, 3, 5; columns 3, 2).
  EXPECT_EQ(inferOk(sliceGradAttrs({1, 3}, {2, -1}, {6, 4}), {t(f32, {3, 2})}),
            Types({t(f32, {6, 4})}));
  // Any dtype moves; an empty grad needs no start in range.
  EXPECT_EQ(inferOk(sliceGradAttrs({9, 0}, {1, 1}, {6, 4}), {t(i32, {0, 4})}),
            Types({t(i32, {6, 4})}));
  EXPECT_EQ(inferOk(sliceGradAttrs({}, {}, {}), {t(f16, {})}),
            Types({t(f16, {})}));

  inferFails(sliceGradAttrs({1, 3}, {2, -1}, {6, 4}), {t(f32, {4, 2})},
             "slice_grad: start 1, step 2 and size 4 read outside [0, 6) in "
             "dim 0");
  inferFails(sliceGradAttrs({1, 4}, {2, -1}, {6, 4}), {t(f32, {3, 2})},
             "slice_grad: start 4 out of range [0, 4) in dim 1");
  inferFails(sliceGradAttrs({1, 3}, {0, 1}, {6, 4}), {t(f32, {3, 1})},
             "slice_grad: step 0 in dim 0");
  inferFails(sliceGradAttrs({1, 3}, {2, -1}, {6, 4}), {t(f32, {3})},
             "slice_grad: grad rank, starts and steps need one entry per dim "
             "of shape [6, 4] (2), got 1, 2 and 2");
  inferFails(sliceGradAttrs({1}, {2, -1}, {6, 4}), {t(f32, {3, 2})},
             "got 2, 1 and 2");
  inferFails(sliceGradAttrs({1, 3}, {2, -1}, {6, -4}), {t(f32, {3, 2})},
             "slice_grad: shape has a negative dim in [6, -4]");
  // INT64_MIN as a step is only harmless when the dim has one element.
  inferFails(sliceGradAttrs({5}, {kNone}, {6}), {t(f32, {2})},
             "slice_grad: start 5, step -9223372036854775808 and size 2 read "
             "outside [0, 6) in dim 0");
  EXPECT_EQ(inferOk(sliceGradAttrs({5}, {kNone}, {6}), {t(f32, {1})}),
            Types({t(f32, {6})}));
}

TEST(TrainingInferTest, LayerNormGrad) {
  Attrs attrs = layerNormGradAttrs(1, 1e-5);
  EXPECT_EQ(
      inferOk(attrs, {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f32, {4, 2, 3})}),
      Types({t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f32, {2, 3})}));
  inferFails(attrs, {t(f32, {4, 2, 3}), t(f32, {3}), t(f32, {4, 2, 3})},
             "layer_norm_grad: scale shape [3] must be x.dims[axis:] = [2, 3]");
  inferFails(attrs, {t(f32, {4, 2, 3}), t(f16, {2, 3}), t(f32, {4, 2, 3})},
             "layer_norm_grad: operand dtypes differ, f32 vs f16");
  inferFails(attrs, {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f32, {4, 3, 2})},
             "layer_norm_grad: dy 4x3x2xf32 must have x's type 4x2x3xf32");
  inferFails(attrs, {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f16, {4, 2, 3})},
             "layer_norm_grad: dy 4x2x3xf16 must have x's type 4x2x3xf32");
  inferFails(attrs, {t(i32, {4, 2, 3}), t(i32, {2, 3}), t(i32, {4, 2, 3})},
             "layer_norm_grad: operand 0 must be float");
  inferFails(attrs, {t(f32, {4, 2, 3}), t(f32, {2, 3})},
             "layer_norm_grad: expects 3 operands, got 2");
  inferFails(layerNormGradAttrs(3, 1e-5),
             {t(f32, {4, 2, 3}), t(f32, {}), t(f32, {4, 2, 3})},
             "layer_norm_grad: axis 3 out of range [0, 3)");
  inferFails(layerNormGradAttrs(1, -1.0),
             {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f32, {4, 2, 3})},
             "layer_norm_grad: epsilon must be finite and >= 0, got -1");
  inferFails(layerNormGradAttrs(1, std::nan("")),
             {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f32, {4, 2, 3})},
             "layer_norm_grad: epsilon must be finite and >= 0, got nan");
}

TEST(TrainingInferTest, SoftmaxCrossEntropyGrad) {
  TensorType scores = t(f32, {2, 5, 3}), labels = t(i64, {2, 3});
  EXPECT_EQ(inferOk(crossEntropyGradAttrs(0), {scores, labels, t(f32, {2, 3})}),
            Types({scores}));
  EXPECT_EQ(inferOk(crossEntropyGradAttrs(1), {scores, labels, t(f32, {})}),
            Types({scores}));
  // dloss may be another float dtype than the scores.
  EXPECT_EQ(inferOk(crossEntropyGradAttrs(2),
                    {t(bf16, {2, 5}), t(i32, {2}), t(f32, {})}),
            Types({t(bf16, {2, 5})}));

  inferFails(crossEntropyGradAttrs(0), {scores, labels, t(f32, {})},
             "softmax_cross_entropy_grad: dloss shape [] must be [2, 3] (the "
             "loss's shape for reduction 0)");
  inferFails(crossEntropyGradAttrs(2), {scores, labels, t(f32, {2, 3})},
             "softmax_cross_entropy_grad: dloss shape [2, 3] must be [] (the "
             "loss's shape for reduction 2)");
  inferFails(crossEntropyGradAttrs(1), {scores, labels, t(i64, {})},
             "softmax_cross_entropy_grad: operand 2 must be float, got i64");
  inferFails(crossEntropyGradAttrs(3), {scores, labels, t(f32, {})},
             "softmax_cross_entropy_grad: reduction must be 0 (none), 1 (sum) "
             "or 2 (mean), got 3");
  inferFails(crossEntropyGradAttrs(1), {scores, t(i64, {2, 5}), t(f32, {})},
             "softmax_cross_entropy_grad: labels shape [2, 5] must be scores "
             "shape without dim 1, [2, 3]");
  inferFails(crossEntropyGradAttrs(1), {scores, t(f32, {2, 3}), t(f32, {})},
             "softmax_cross_entropy_grad: operand 1 must be i32 or i64");
  inferFails(crossEntropyGradAttrs(1),
             {t(i32, {2, 5}), t(i64, {2}), t(f32, {})},
             "softmax_cross_entropy_grad: operand 0 must be float");
  inferFails(crossEntropyGradAttrs(1), {t(f32, {5}), t(i64, {}), t(f32, {})},
             "softmax_cross_entropy_grad: scores need rank >= 2");
}

TEST(TrainingInferTest, AdamW) {
  Attrs attrs = adamwAttrs(0.9, 0.999, 1e-8, 0.01);
  TensorType p = t(f32, {3, 4}), lr = t(f32, {}), step = t(i64, {});
  EXPECT_EQ(inferOk(attrs, {p, p, p, p, lr, step}), Types({p, p, p}));
  EXPECT_EQ(inferOk(attrs, {p, t(bf16, {3, 4}), p, p, lr, step}),
            Types({p, p, p}));
  EXPECT_EQ(inferOk(adamwAttrs(0.0, 0.0, 0.0, 0.0), {p, p, p, p, lr, step}),
            Types({p, p, p}));

  inferFails(attrs, {t(f16, {3, 4}), p, p, p, lr, step},
             "adamw: param must be f32, got 3x4xf16");
  inferFails(attrs, {p, t(i32, {3, 4}), p, p, lr, step},
             "adamw: grad must be float, got 3x4xi32");
  inferFails(attrs, {p, p, t(f64, {3, 4}), p, lr, step},
             "adamw: m must be f32, got 3x4xf64");
  inferFails(attrs, {p, p, p, t(f32, {4, 3}), lr, step},
             "adamw: v shape [4, 3] must be param's shape [3, 4]");
  inferFails(attrs, {p, t(f32, {12}), p, p, lr, step},
             "adamw: grad shape [12] must be param's shape [3, 4]");
  inferFails(attrs, {p, p, p, p, t(f32, {1}), step},
             "adamw: lr must be a scalar [], got 1xf32");
  inferFails(attrs, {p, p, p, p, t(f64, {}), step},
             "adamw: lr must be f32, got f64");
  inferFails(attrs, {p, p, p, p, lr, t(i32, {})},
             "adamw: step must be i64, got i32");
  inferFails(attrs, {p, p, p, p, lr, t(i64, {1})},
             "adamw: step must be a scalar [], got 1xi64");
  inferFails(attrs, {p, p, p, p, lr}, "adamw: expects 6 to 7 operands, got 5");
  // The optional divisor: an f32 scalar.
  EXPECT_EQ(inferOk(attrs, {p, t(bf16, {3, 4}), p, p, lr, step, t(f32, {})}),
            Types({p, p, p}));
  inferFails(attrs, {p, p, p, p, lr, step, t(f32, {2})},
             "adamw: divisor must be an f32 scalar [], got 2xf32");
  inferFails(adamwAttrs(1.0, 0.999, 1e-8, 0.01), {p, p, p, p, lr, step},
             "adamw: beta1 must be in [0, 1), got 1");
  inferFails(adamwAttrs(0.9, -0.5, 1e-8, 0.01), {p, p, p, p, lr, step},
             "adamw: beta2 must be in [0, 1), got -0.5");
  inferFails(adamwAttrs(0.9, std::nan(""), 1e-8, 0.01), {p, p, p, p, lr, step},
             "adamw: beta2 must be in [0, 1), got nan");
  inferFails(adamwAttrs(0.9, 0.999, -1e-8, 0.01), {p, p, p, p, lr, step},
             "adamw: eps must be finite and >= 0, got -1e-08");
  inferFails(adamwAttrs(0.9, 0.999, 1e-8, -0.01), {p, p, p, p, lr, step},
             "adamw: weight_decay must be finite and >= 0, got -0.01");
  inferFails(adamwAttrs(0.9, 0.999, 1e-8, INFINITY), {p, p, p, p, lr, step},
             "adamw: weight_decay must be finite and >= 0, got inf");
}

TEST(TrainingInferTest, AdamWNorm) {
  Attrs attrs = adamwNormAttrs(0.9, 0.999, 1e-8, 0.01);
  TensorType p = t(f32, {3, 4}), lr = t(f32, {}), step = t(i64, {});
  TensorType div = t(f32, {}), sum = t(f32, {});
  EXPECT_EQ(inferOk(attrs, {p, t(bf16, {3, 4}), p, p, lr, step, div}),
            Types({p, p, p, sum}));
  inferFails(attrs, {p, p, p, p, lr, step, t(f64, {})},
             "adamw_norm: divisor must be an f32 scalar [], got f64");
  inferFails(attrs, {p, p, p, p, lr, step, t(f32, {1})},
             "adamw_norm: divisor must be an f32 scalar [], got 1xf32");
  inferFails(attrs, {p, p, p, t(f32, {4, 3}), lr, step, div},
             "adamw_norm: v shape [4, 3] must be param's shape [3, 4]");
  inferFails(attrs, {p, p, p, p, lr, step},
             "adamw_norm: expects 7 operands, got 6");
}

TEST(TrainingInferTest, Sgd) {
  TensorType p = t(f32, {5}), lr = t(f32, {}), step = t(i64, {});
  EXPECT_EQ(inferOk(sgdAttrs(0.9, 0.0, 1e-4, 1), {p, p, p, lr, step}),
            Types({p, p}));
  EXPECT_EQ(inferOk(sgdAttrs(0.0, 0.5, 0.0, 0), {p, t(f16, {5}), p, lr, step}),
            Types({p, p}));
  // Negative dampening is allowed (PyTorch does not check it).
  EXPECT_EQ(inferOk(sgdAttrs(0.9, -1.0, 0.0, 0), {p, p, p, lr, step}),
            Types({p, p}));

  inferFails(sgdAttrs(0.9, 0.0, 0.0, 0), {p, p, t(f32, {1}), lr, step},
             "sgd: buf shape [1] must be param's shape [5]");
  inferFails(sgdAttrs(0.9, 0.0, 0.0, 0), {p, p, p, t(f32, {5}), step},
             "sgd: lr must be a scalar [], got 5xf32");
  inferFails(sgdAttrs(0.9, 0.0, 0.0, 0), {p, p, p, lr, t(f32, {})},
             "sgd: step must be i64, got f32");
  inferFails(sgdAttrs(0.9, 0.0, 0.0, 0), {p, p, t(bf16, {5}), lr, step},
             "sgd: buf must be f32, got 5xbf16");
  inferFails(sgdAttrs(-0.9, 0.0, 0.0, 0), {p, p, p, lr, step},
             "sgd: momentum must be finite and >= 0, got -0.9");
  inferFails(sgdAttrs(0.9, INFINITY, 0.0, 0), {p, p, p, lr, step},
             "sgd: dampening must be finite, got inf");
  inferFails(sgdAttrs(0.9, 0.0, -1.0, 0), {p, p, p, lr, step},
             "sgd: weight_decay must be finite and >= 0, got -1");
  inferFails(sgdAttrs(0.9, 0.0, 0.0, 2), {p, p, p, lr, step},
             "sgd: nesterov must be 0 or 1, got 2");
  inferFails(sgdAttrs(0.0, 0.0, 0.0, 1), {p, p, p, lr, step},
             "sgd: nesterov needs momentum > 0 and dampening 0, got momentum "
             "0 and dampening 0");
  inferFails(sgdAttrs(0.9, 0.1, 0.0, 1), {p, p, p, lr, step},
             "sgd: nesterov needs momentum > 0 and dampening 0, got momentum "
             "0.9 and dampening 0.1");
  inferFails(sgdAttrs(0.9, 0.0, 0.0, 0), {p, p, p, lr, step, step},
             "sgd: expects 5 operands, got 6");
}

//===----------------------------------------------------------------------===//
// gather_grad
//===----------------------------------------------------------------------===//

Attrs gatherAttrs(int64_t axis) {
  Attrs attrs(OpKind::Gather);
  attrs.setI("axis", axis);
  return attrs;
}

TEST(GatherGradTest, MatchesFiniteDifferencesOfGather) {
  // Inner axis with repeated and negative indices (-1 is row 4, so row 4
  // is gathered three times), then the embedding case (axis 0).
  struct Case {
    int64_t axis;
    Dims data;
    Dims indexDims;
    std::vector<int64_t> indices;
  };
  const Case cases[] = {
      {1, {3, 5, 2}, {2, 3}, {4, -1, 0, 2, 4, 1}},
      {0, {6, 3}, {4}, {5, 0, 5, -6}},
      {2, {2, 2, 3}, {}, {-2}},
  };
  uint64_t seed = 1;
  for (const Case &c : cases) {
    HostTensor data(TensorType{f64, c.data});
    Values dataValues = randomValues(data.type.numElements(), seed++);
    data = tensor(f64, c.data, dataValues);
    HostTensor indices = ints(i64, c.indexDims, c.indices);
    HostTensor gathered = eval(gatherAttrs(c.axis), {data, indices});
    Values weights = randomValues(gathered.type.numElements(), seed++);
    auto loss = [&](const std::vector<HostTensor> &in) {
      return weightedSum(eval(gatherAttrs(c.axis), in), weights);
    };
    Values numeric = numericGradient(loss, {data, indices}, 0);
    HostTensor analytic =
        eval(gatherGradAttrs(c.axis, c.data),
             {tensor(f64, gathered.type.dims, weights), indices});
    ASSERT_EQ(analytic.type, data.type);
    expectClose(valuesOf(analytic), numeric, kFiniteDifferenceTolerance,
                "gather_grad axis " + std::to_string(c.axis));
  }
}

TEST(GatherGradTest, RepeatedIndicesSumInDoubleThenRound) {
  // Row 1 receives 1 + 2^-24 + 2^-24 = 1 + 2^-23, which f32 holds exactly;
  // adding in f32 would round 1 + 2^-24 to 1 (a tie, to even) twice and
  // give 1. Row 0 receives -1.5 (index -3) and 0.25; row 2 nothing.
  const double tiny = std::ldexp(1.0, -24);
  HostTensor grad = tensor(f32, {5}, {1.0, -1.5, tiny, tiny, 0.25});
  HostTensor indices = ints(i32, {5}, {1, -3, 1, -2, 0});
  expectExact(eval(gatherGradAttrs(0, {3}), {grad, indices}), t(f32, {3}),
              {-1.25, 1.0 + 2 * tiny, 0.0});
}

TEST(GatherGradTest, PaddingIdxRowsReceiveNothing) {
  // data [4, 2]; padding_idx -1 normalises to row 3, so both index 3 and
  // index -1 are dropped, as nn.Embedding(4, 2, padding_idx=-1) does.
  HostTensor grad =
      tensor(f32, {2, 3, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  HostTensor indices = ints(i64, {2, 3}, {3, 0, -1, 0, 2, 3});
  // Row 0: (3, 4) + (7, 8); row 2: (9, 10); row 3 (padding) and row 1: 0.
  expectExact(eval(gatherGradAttrs(0, {4, 2}, -1), {grad, indices}),
              t(f32, {4, 2}), {10, 12, 0, 0, 9, 10, 0, 0});
  // padding_idx 0 drops row 0 instead, and row 3 gets (1, 2) + (5, 6) +
  // (11, 12); without padding_idx every row gets its sum.
  expectExact(eval(gatherGradAttrs(0, {4, 2}, 0), {grad, indices}),
              t(f32, {4, 2}), {0, 0, 0, 0, 9, 10, 17, 20});
  expectExact(eval(gatherGradAttrs(0, {4, 2}), {grad, indices}), t(f32, {4, 2}),
              {10, 12, 0, 0, 9, 10, 17, 20});
}

TEST(GatherGradTest, OutOfRangeIndexIsAnError) {
  HostTensor grad = tensor(f32, {2, 2}, {1, 2, 3, 4});
  evalFails(gatherGradAttrs(0, {4, 2}), {grad, ints(i64, {2}, {0, 4})},
            "gather_grad: index 4 out of range [-4, 4)");
  evalFails(gatherGradAttrs(0, {4, 2}), {grad, ints(i32, {2}, {-5, 0})},
            "gather_grad: index -5 out of range [-4, 4)");
  // Gathering from an empty axis: any index is out of range.
  evalFails(gatherGradAttrs(0, {0, 2}), {grad, ints(i64, {2}, {0, 0})},
            "gather_grad: index 0 out of range [0, 0)");
  // No indices: zeros.
  expectExact(eval(gatherGradAttrs(0, {2, 2}),
                   {HostTensor(t(f32, {0, 2})), ints(i64, {0}, {})}),
              t(f32, {2, 2}), {0, 0, 0, 0});
}

//===----------------------------------------------------------------------===//
// slice_grad
//===----------------------------------------------------------------------===//

Attrs sliceAttrs(Dims starts, Dims steps, Dims sizes) {
  Attrs attrs(OpKind::Slice);
  attrs.setList("starts", std::move(starts));
  attrs.setList("steps", std::move(steps));
  attrs.setList("sizes", std::move(sizes));
  return attrs;
}

TEST(SliceGradTest, WritesWhereSliceReads) {
  // shape [3, 4], starts (2, 3), steps (-2, -2): rows 2, 0 and columns 3, 1.
  // grad [[1, 2], [3, 4]] lands at (2,3) (2,1) (0,3) (0,1).
  HostTensor grad = ints(i32, {2, 2}, {1, 2, 3, 4});
  expectExact(eval(sliceGradAttrs({2, 3}, {-2, -2}, {3, 4}), {grad}),
              t(i32, {3, 4}), {0, 4, 0, 3, 0, 0, 0, 0, 0, 2, 0, 1});
  // Size 1 with an extreme step, and an empty grad: zeros elsewhere.
  expectExact(
      eval(sliceGradAttrs({1}, {kNone}, {3}), {tensor(f16, {1}, {0.5})}),
      t(f16, {3}), {0, 0.5, 0});
  expectExact(eval(sliceGradAttrs({7}, {1}, {3}), {HostTensor(t(f32, {0}))}),
              t(f32, {3}), {0, 0, 0});
}

TEST(SliceGradTest, MatchesFiniteDifferencesOfSlice) {
  struct Case {
    Dims shape, starts, steps, sizes;
  };
  const Case cases[] = {
      {{5, 6}, {4, 1}, {-2, 2}, {3, 3}},
      {{2, 3, 4}, {1, 0, 3}, {1, 1, -1}, {1, 3, 4}},
      {{7}, {0}, {3}, {3}},
  };
  uint64_t seed = 10;
  for (const Case &c : cases) {
    Attrs slice = sliceAttrs(c.starts, c.steps, c.sizes);
    HostTensor x(TensorType{f64, c.shape});
    x = tensor(f64, c.shape, randomValues(x.type.numElements(), seed++));
    Values weights =
        randomValues(TensorType{f64, c.sizes}.numElements(), seed++);
    auto loss = [&](const std::vector<HostTensor> &in) {
      return weightedSum(eval(slice, in), weights);
    };
    Values numeric = numericGradient(loss, {x}, 0);
    HostTensor analytic = eval(sliceGradAttrs(c.starts, c.steps, c.shape),
                               {tensor(f64, c.sizes, weights)});
    ASSERT_EQ(analytic.type, x.type);
    expectClose(valuesOf(analytic), numeric, kFiniteDifferenceTolerance,
                "slice_grad");
  }
}

//===----------------------------------------------------------------------===//
// layer_norm_grad
//===----------------------------------------------------------------------===//

Attrs layerNormAttrs(int64_t axis, double epsilon) {
  Attrs attrs(OpKind::LayerNorm);
  attrs.setI("axis", axis);
  attrs.setF("epsilon", epsilon);
  return attrs;
}

TEST(LayerNormGradTest, MatchesFiniteDifferencesOfLayerNorm) {
  // Gradients wrt x, scale and bias of sum(layer_norm(x, scale, bias) * W),
  // over the last two dims, the last dim and all dims.
  struct Case {
    Dims x;
    int64_t axis;
    double epsilon;
  };
  const Case cases[] = {
      {{3, 2, 4}, 1, 1e-5},
      {{3, 2, 4}, 2, 0.1},
      {{2, 5}, 0, 1e-3},
  };
  uint64_t seed = 20;
  for (const Case &c : cases) {
    Dims normDims(c.x.begin() + c.axis, c.x.end());
    int64_t count = TensorType{f64, c.x}.numElements();
    int64_t normCount = TensorType{f64, normDims}.numElements();
    HostTensor x = tensor(f64, c.x, randomValues(count, seed++, -2.0, 2.0));
    HostTensor scale =
        tensor(f64, normDims, randomValues(normCount, seed++, 0.5, 1.5));
    HostTensor bias = tensor(f64, normDims, randomValues(normCount, seed++));
    Values weights = randomValues(count, seed++);
    Attrs forward = layerNormAttrs(c.axis, c.epsilon);
    auto loss = [&](const std::vector<HostTensor> &in) {
      return weightedSum(eval(forward, in), weights);
    };
    std::vector<HostTensor> grads =
        evalAll(layerNormGradAttrs(c.axis, c.epsilon),
                {x, scale, tensor(f64, c.x, weights)});
    ASSERT_EQ(grads.size(), 3u);
    EXPECT_EQ(grads[0].type, x.type);
    EXPECT_EQ(grads[1].type, scale.type);
    EXPECT_EQ(grads[2].type, scale.type);
    std::string what = "layer_norm_grad axis " + std::to_string(c.axis);
    const char *names[] = {"dx", "dscale", "dbias"};
    for (size_t k = 0; k < 3; ++k)
      expectClose(valuesOf(grads[k]),
                  numericGradient(loss, {x, scale, bias}, k),
                  kFiniteDifferenceTolerance, what + " " + names[k]);
  }
}

TEST(LayerNormGradTest, StoresOnceInTheTensorDtype) {
  // f32 inputs (exactly representable values) give the f64 results rounded
  // once to f32.
  Values x = {0.5, -1.25, 2.0, 0.75, 3.0, -0.5}, scale = {1.5, -0.25, 2.0},
         dy = {0.25, 1.0, -2.0, 0.5, -0.75, 1.25};
  std::vector<HostTensor> exact =
      evalAll(layerNormGradAttrs(1, 1e-5),
              {tensor(f64, {2, 3}, x), tensor(f64, {3}, scale),
               tensor(f64, {2, 3}, dy)});
  std::vector<HostTensor> single =
      evalAll(layerNormGradAttrs(1, 1e-5),
              {tensor(f32, {2, 3}, x), tensor(f32, {3}, scale),
               tensor(f32, {2, 3}, dy)});
  ASSERT_EQ(exact.size(), 3u);
  ASSERT_EQ(single.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    Values rounded = valuesOf(exact[k]);
    for (double &value : rounded)
      value = static_cast<float>(value);
    expectExact(single[k], TensorType{f32, exact[k].type.dims}, rounded);
  }
}

//===----------------------------------------------------------------------===//
// softmax_cross_entropy_grad
//===----------------------------------------------------------------------===//

Attrs crossEntropyAttrs(int64_t reduction, int64_t ignoreIndex) {
  Attrs attrs(OpKind::SoftmaxCrossEntropy);
  attrs.setI("ignore_index", ignoreIndex);
  attrs.setI("reduction", reduction);
  return attrs;
}

TEST(SoftmaxCrossEntropyGradTest, MatchesFiniteDifferences) {
  // scores [N=3, C=4, d=2] with one position at ignore_index -100, and a
  // second setup where ignore_index is a real class (2) that must not get
  // a gradient either; every reduction of each.
  struct Case {
    Dims scores;
    std::vector<int64_t> labels;
    int64_t ignoreIndex;
  };
  const Case cases[] = {
      {{3, 4, 2}, {0, 3, -100, 1, 2, 2}, -100},
      {{3, 4, 2}, {0, 3, 2, 1, 2, 1}, 2},
      {{4, 5}, {4, 0, 0, 3}, -1},
  };
  uint64_t seed = 30;
  for (const Case &c : cases) {
    Dims labelDims = c.scores;
    labelDims.erase(labelDims.begin() + 1);
    HostTensor scores = tensor(
        f64, c.scores,
        randomValues(TensorType{f64, c.scores}.numElements(), seed++, -3, 3));
    HostTensor labels = ints(i64, labelDims, c.labels);
    for (int64_t reduction = 0; reduction <= 2; ++reduction) {
      Values dloss =
          reduction == 0 ? randomValues(c.labels.size(), seed++) : Values{0.7};
      Dims dlossDims = reduction == 0 ? labelDims : Dims{};
      Attrs forward = crossEntropyAttrs(reduction, c.ignoreIndex);
      auto loss = [&](const std::vector<HostTensor> &in) {
        return weightedSum(eval(forward, in), dloss);
      };
      HostTensor analytic =
          eval(crossEntropyGradAttrs(reduction, c.ignoreIndex),
               {scores, labels, tensor(f64, dlossDims, dloss)});
      ASSERT_EQ(analytic.type, scores.type);
      expectClose(valuesOf(analytic),
                  numericGradient(loss, {scores, labels}, 0),
                  kFiniteDifferenceTolerance,
                  "reduction " + std::to_string(reduction) + ", ignore_index " +
                      std::to_string(c.ignoreIndex));
    }
  }
}

TEST(SoftmaxCrossEntropyGradTest, IgnoredPositionsAndAllIgnoredMean) {
  // scores [2, 2]: row 0 equal scores (softmax 1/2, 1/2), label 1; row 1
  // ignored. sum with dloss 2: row 0 = (0.5 - 0, 0.5 - 1) * 2; mean divides
  // by the one counted label, the same here.
  HostTensor scores = tensor(f32, {2, 2}, {3, 3, 1, 5});
  HostTensor labels = ints(i32, {2}, {1, -100});
  for (int64_t reduction : {1, 2})
    expectExact(eval(crossEntropyGradAttrs(reduction),
                     {scores, labels, tensor(f32, {}, {2.0})}),
                t(f32, {2, 2}), {1, -1, 0, 0});
  // Every label ignored: the mean loss is 0/0 = NaN, the gradient is 0.
  HostTensor allIgnored = ints(i64, {2}, {-100, -100});
  HostTensor lossValue = eval(crossEntropyAttrs(2, -100), {scores, allIgnored});
  EXPECT_TRUE(std::isnan(loadAsDouble(lossValue.ref(), 0)));
  expectExact(eval(crossEntropyGradAttrs(2),
                   {scores, allIgnored, tensor(f32, {}, {1.0})}),
              t(f32, {2, 2}), {0, 0, 0, 0});
}

TEST(SoftmaxCrossEntropyGradTest, LabelOutOfRangeIsAnError) {
  HostTensor scores = tensor(f32, {2, 4}, {0, 0, 0, 0, 0, 0, 0, 0});
  evalFails(crossEntropyGradAttrs(1),
            {scores, ints(i64, {2}, {0, 4}), tensor(f32, {}, {1})},
            "softmax_cross_entropy_grad: label 4 out of range [0, 4) and not "
            "ignore_index -100");
  evalFails(crossEntropyGradAttrs(0, 3),
            {scores, ints(i32, {2}, {-1, 3}), tensor(f32, {2}, {1, 1})},
            "softmax_cross_entropy_grad: label -1 out of range [0, 4) and not "
            "ignore_index 3");
}

//===----------------------------------------------------------------------===//
// adamw and sgd
//===----------------------------------------------------------------------===//

// Expected values come from this numpy re-implementation (numpy 1.24, run
// with /usr/bin/python3); state is stored as f32 between steps and each step
// computes in f64, as the kernels do. Its output is pasted below.
//
//   import numpy as np
//   f32 = np.float32
//   def adamw(p, g, m, v, lr, step, b1, b2, eps, wd):
//       p, g, m, v = (np.asarray(a, np.float64) for a in (p, g, m, v))
//       lr = float(f32(lr)); t = step + 1
//       p = p * (1 - lr * wd)
//       m = b1 * m + (1 - b1) * g
//       v = b2 * v + (1 - b2) * g * g
//       denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
//       p = p - (lr / (1 - b1 ** t)) * m / denom
//       return [a.astype(f32) for a in (p, m, v)]
//   def sgd(p, g, buf, lr, step, mom, damp, wd, nesterov):
//       p, g, buf = (np.asarray(a, np.float64) for a in (p, g, buf))
//       lr = float(f32(lr))
//       g = g + wd * p
//       if mom != 0:
//           buf = g if step == 0 else mom * buf + (1 - damp) * g
//           g = g + mom * buf if nesterov else buf
//       p = p - lr * g
//       return [a.astype(f32) for a in (p, buf)]
//   grads = [np.array(x, f32) for x in ([0.5, -1.25, 3.0, 0.015625],
//                                       [0.25, 2.0, -0.75, 0.0],
//                                       [-1.5, 0.125, 1.0, -4.0])]
//   p = np.array([1.0, -2.0, 0.5, 3.0], f32)
//   m = np.zeros(4, f32); v = np.zeros(4, f32)
//   for s, g in enumerate(grads):
//       p, m, v = adamw(p, g, m, v, 1e-3, s, 0.9, 0.999, 1e-8, 0.01)
//       print(s, p, m, v)  # as '%.9g', likewise below
//   print(adamw([1.0, -2.0, 0.5, 3.0], grads[2], [0.1, -0.2, 0.3, 0.0],
//               [0.01, 0.04, 0.5, 1.0], 0.1, 6, 0.5, 0.75, 0.1, 0.5))
//   p = np.array([1.0, -2.0, 0.5, 3.0], f32); buf = np.full(4, 7.0, f32)
//   for s, g in enumerate(grads):
//       p, buf = sgd(p, g, buf, 0.05, s, 0.9, 0.1, 0.01, False)
//   p = np.array([1.0, -2.0, 0.5, 3.0], f32); buf = np.zeros(4, f32)
//   for s, g in enumerate(grads):
//       p, buf = sgd(p, g, buf, 0.05, s, 0.9, 0.0, 0.0, True)
//   print(sgd([1.0, -2.0, 0.5, 3.0], grads[0], [7, 8, 9, 10], 0.05, 3,
//             0.0, 0.0, 0.01, False))

/// Sets COLOSSAL_CPU_ADAMW for one test (the CPU AdamW reads it per call)
/// and restores the previous value.
class ScopedAdamWMode {
public:
  explicit ScopedAdamWMode(const char *mode) {
    if (const char *old = std::getenv("COLOSSAL_CPU_ADAMW"))
      saved_ = old, hadOld_ = true;
    setenv("COLOSSAL_CPU_ADAMW", mode, 1);
  }
  ~ScopedAdamWMode() {
    if (hadOld_)
      setenv("COLOSSAL_CPU_ADAMW", saved_.c_str(), 1);
    else
      unsetenv("COLOSSAL_CPU_ADAMW");
  }

private:
  std::string saved_;
  bool hadOld_ = false;
};

const Values kGrads[3] = {{0.5, -1.25, 3.0, 0.015625},
                          {0.25, 2.0, -0.75, 0.0},
                          {-1.5, 0.125, 1.0, -4.0}};
const Values kParam0 = {1.0, -2.0, 0.5, 3.0};

/// f32 values within one ulp of numpy's (whose f64 pow and sqrt may differ
/// from the C library's in the last double bit).
void expectF32(const HostTensor &actual, const Values &expected,
               const std::string &what) {
  ASSERT_EQ(actual.type.dtype, f32) << what;
  ASSERT_EQ(actual.type.numElements(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    float want = static_cast<float>(expected[i]);
    float got = actual.as<float>()[i];
    float ulp = std::nextafter(std::fabs(want), INFINITY) - std::fabs(want);
    EXPECT_NEAR(got, want, ulp) << what << ", element " << i;
  }
}

/// One optimizer step run in place: outputs[k] is inputs[aliasOf[k]].
void runInPlace(const Attrs &attrs, std::vector<HostTensor> &inputs,
                const std::vector<size_t> &aliasOf) {
  std::vector<TensorRef> ins, outs;
  for (HostTensor &in : inputs)
    ins.push_back(in.ref());
  for (size_t k : aliasOf)
    outs.push_back(inputs[k].ref());
  Status status = runCpuKernel(attrs, ins, outs);
  ASSERT_TRUE(status.isOk()) << status.toString();
}

TEST(AdamWTest, ThreeStepsInPlaceMatchNumpy) {
  const Values expected[3][3] = {
      {{0.998989999, -1.99898005, 0.498995006, 2.99897003},
       {0.0500000007, -0.125, 0.300000012, 0.00156250002},
       {0.000250000012, 0.00156250002, 0.00899999961, 2.44140637e-07}},
      {{0.998047829, -1.99923623, 0.498520553, 2.99827003},
       {0.0700000003, 0.0874999985, 0.195000008, 0.00140625006},
       {0.00031225002, 0.00556093734, 0.00955349952, 2.43896494e-07}},
      {{0.998385072, -1.9994632, 0.497973561, 2.99887681},
       {-0.0869999975, 0.0912500024, 0.2755, -0.398734361},
       {0.00256193778, 0.00557100121, 0.0105439462, 0.0160002429}}};
  ScopedAdamWMode exact("exact"); // the f64 model above
  Attrs attrs = adamwAttrs(0.9, 0.999, 1e-8, 0.01);
  // param, grad, m, v, lr, step; param' m' v' written over param m v.
  std::vector<HostTensor> in = {
      tensor(f32, {4}, kParam0),      tensor(f32, {4}, kGrads[0]),
      tensor(f32, {4}, {0, 0, 0, 0}), tensor(f32, {4}, {0, 0, 0, 0}),
      tensor(f32, {}, {1e-3}),        ints(i64, {}, {0})};
  for (int64_t step = 0; step < 3; ++step) {
    in[1] = tensor(f32, {4}, kGrads[step]);
    in[5] = ints(i64, {}, {step});
    // The same step out of place first: it must agree bit for bit.
    std::vector<HostTensor> copy = evalAll(attrs, in);
    runInPlace(attrs, in, {0, 2, 3});
    std::string what = "step " + std::to_string(step);
    expectF32(in[0], expected[step][0], what + " param");
    expectF32(in[2], expected[step][1], what + " m");
    expectF32(in[3], expected[step][2], what + " v");
    ASSERT_EQ(copy.size(), 3u);
    EXPECT_EQ(copy[0].bytes, in[0].bytes) << what;
    EXPECT_EQ(copy[1].bytes, in[2].bytes) << what;
    EXPECT_EQ(copy[2].bytes, in[3].bytes) << what;
  }
}

TEST(AdamWTest, StepZeroBiasCorrection) {
  // With m = v = 0 and wd = 0, step 0 gives m / (1 - beta1) = g and
  // sqrt(v / (1 - beta2)) = |g|: param moves by lr * g / (|g| + eps), about
  // lr * sign(g) whatever the betas. Hand-computed: 1 - 0.1 * 4/(4+1e-8).
  std::vector<HostTensor> out =
      evalAll(adamwAttrs(0.5, 0.75, 1e-8, 0.0),
              {tensor(f32, {2}, {1.0, 1.0}), tensor(f32, {2}, {4.0, -0.001}),
               tensor(f32, {2}, {0, 0}), tensor(f32, {2}, {0, 0}),
               tensor(f32, {}, {0.1}), ints(i64, {}, {0})});
  ASSERT_EQ(out.size(), 3u);
  double lr = static_cast<float>(0.1);
  expectF32(out[0],
            {1.0 - lr * 4.0 / (4.0 + 1e-8), 1.0 + lr * 0.001 / (0.001 + 1e-8)},
            "param");
  expectF32(out[1], {2.0, -0.0005}, "m");
  expectF32(out[2], {4.0, 0.25 * 1e-6}, "v");
}

TEST(AdamWTest, LaterStepWithWeightDecayAndBf16Grad) {
  // Step 6 (t = 7) from given moments, strong weight decay (0.5 * lr 0.1).
  const Values expected[3] = {
      {1.02743924, -1.88730896, 0.405988008, 2.93256831},
      {-0.699999988, -0.0375000015, 0.649999976, -2},
      {0.569999993, 0.0339062512, 0.625, 4.75}};
  ScopedAdamWMode exact("exact"); // the f64 model above
  Attrs attrs = adamwAttrs(0.5, 0.75, 0.1, 0.5);
  // kGrads[2] is exact in bf16, so a bf16 grad gives the same step.
  for (DType gradType : {f32, bf16, f64}) {
    std::vector<HostTensor> out = evalAll(
        attrs, {tensor(f32, {4}, kParam0), tensor(gradType, {4}, kGrads[2]),
                tensor(f32, {4}, {0.1, -0.2, 0.3, 0.0}),
                tensor(f32, {4}, {0.01, 0.04, 0.5, 1.0}),
                tensor(f32, {}, {0.1}), ints(i64, {}, {6})});
    ASSERT_EQ(out.size(), 3u);
    std::string what = "grad " + TensorType{gradType, {}}.toString();
    expectF32(out[0], expected[0], what + " param");
    expectF32(out[1], expected[1], what + " m");
    expectF32(out[2], expected[2], what + " v");
  }
}

TEST(AdamWTest, NegativeStepIsAnError) {
  HostTensor p = tensor(f32, {1}, {1});
  evalFails(adamwAttrs(0.9, 0.999, 1e-8, 0.0),
            {p, p, p, p, tensor(f32, {}, {0.1}), ints(i64, {}, {-1})},
            "adamw: step -1 must be >= 0");
}

// The fast AdamW (the default; COLOSSAL_CPU_ADAMW=fast or unset) computes in
// f32 in PyTorch's operation order. Expected values come from this numpy
// model of torch.optim.AdamW's single-tensor path on f32 tensors (numpy
// 1.24, /usr/bin/python3), on the same inputs as the f64 tests above:
//
//   def adamw_f32(p, g, m, v, lr, step, b1, b2, eps, wd):
//       # Each Python float operand is rounded to f32 by the tensor op.
//       p, g, m, v = (np.array(a, f32) for a in (p, g, m, v))
//       lr = float(f32(lr)); t = step + 1
//       p = p * f32(1 - lr * wd)                         # param.mul_
//       w = f32(1 - b1)                                  # exp_avg.lerp_
//       m = m + w * (g - m) if abs(w) < 0.5 else g - (g - m) * (f32(1) - w)
//       v = v * f32(b2)                                  # exp_avg_sq.mul_
//       v = v + f32(1 - b2) * g * g                      # .addcmul_
//       denom = np.sqrt(v) / f32((1 - b2 ** t) ** 0.5) + f32(eps)
//       p = p + f32(-(lr / (1 - b1 ** t))) * m / denom   # param.addcdiv_
//       return p, m, v
//
// The f32 results differ from the f64 ones above by up to a few ulp
// (e.g. step 1 param[1]: -1.99923599 here, -1.99923623 in f64).

TEST(AdamWFastTest, ThreeStepsInPlaceMatchNumpyF32) {
  const Values expected[3][3] = {
      {{0.998989999, -1.99897993, 0.498995006, 2.99897003},
       {0.0500000007, -0.125, 0.300000012, 0.00156250002},
       {0.000250000012, 0.00156250014, 0.00899999961, 2.44140637e-07}},
      {{0.998047829, -1.99923599, 0.498520523, 2.99827003},
       {0.0700000003, 0.087500006, 0.195000023, 0.00140625006},
       {0.00031225002, 0.0055609378, 0.00955349952, 2.43896494e-07}},
      {{0.998385012, -1.99946296, 0.497973531, 2.99887681},
       {-0.0870000049, 0.0912500024, 0.275500029, -0.398734361},
       {0.00256193755, 0.00557100167, 0.0105439462, 0.0160002448}}};
  ScopedAdamWMode fast("fast");
  Attrs attrs = adamwAttrs(0.9, 0.999, 1e-8, 0.01);
  std::vector<HostTensor> in = {
      tensor(f32, {4}, kParam0),      tensor(f32, {4}, kGrads[0]),
      tensor(f32, {4}, {0, 0, 0, 0}), tensor(f32, {4}, {0, 0, 0, 0}),
      tensor(f32, {}, {1e-3}),        ints(i64, {}, {0})};
  for (int64_t step = 0; step < 3; ++step) {
    in[1] = tensor(f32, {4}, kGrads[step]);
    in[5] = ints(i64, {}, {step});
    std::vector<HostTensor> copy = evalAll(attrs, in);
    runInPlace(attrs, in, {0, 2, 3});
    std::string what = "step " + std::to_string(step);
    expectF32(in[0], expected[step][0], what + " param");
    expectF32(in[2], expected[step][1], what + " m");
    expectF32(in[3], expected[step][2], what + " v");
    ASSERT_EQ(copy.size(), 3u);
    EXPECT_EQ(copy[0].bytes, in[0].bytes) << what;
    EXPECT_EQ(copy[1].bytes, in[2].bytes) << what;
    EXPECT_EQ(copy[2].bytes, in[3].bytes) << what;
  }
}

TEST(AdamWFastTest, LargeLerpWeightAndBf16Grad) {
  // beta1 0.5: lerp weight 1 - beta1 = 0.5 is not "small", so ATen's lerp
  // takes its other form, g - (g - m) * (1 - w). The model above gives:
  const Values expected[3] = {
      {1.02743912, -1.88730896, 0.405988008, 2.93256831},
      {-0.699999988, -0.037499994, 0.649999976, -2},
      {0.569999993, 0.0339062512, 0.625, 4.75}};
  ScopedAdamWMode fast("fast");
  Attrs attrs = adamwAttrs(0.5, 0.75, 0.1, 0.5);
  // kGrads[2] is exact in bf16: an f32 and a bf16 grad give the same bits.
  std::vector<HostTensor> first;
  for (DType gradType : {f32, bf16}) {
    std::vector<HostTensor> out = evalAll(
        attrs, {tensor(f32, {4}, kParam0), tensor(gradType, {4}, kGrads[2]),
                tensor(f32, {4}, {0.1, -0.2, 0.3, 0.0}),
                tensor(f32, {4}, {0.01, 0.04, 0.5, 1.0}),
                tensor(f32, {}, {0.1}), ints(i64, {}, {6})});
    ASSERT_EQ(out.size(), 3u);
    std::string what = "grad " + TensorType{gradType, {}}.toString();
    expectF32(out[0], expected[0], what + " param");
    expectF32(out[1], expected[1], what + " m");
    expectF32(out[2], expected[2], what + " v");
    if (first.empty())
      first = out;
    for (size_t k = 0; k < 3; ++k)
      EXPECT_EQ(out[k].bytes, first[k].bytes) << what << " output " << k;
  }
}

TEST(AdamWFastTest, F64GradUsesTheExactPath) {
  // Only f32 and bf16 gradients have the f32 path; an f64 one is computed
  // in f64 whatever the mode (the f64 model's values, as in
  // LaterStepWithWeightDecayAndBf16Grad).
  ScopedAdamWMode fast("fast");
  std::vector<HostTensor> out = evalAll(
      adamwAttrs(0.5, 0.75, 0.1, 0.5),
      {tensor(f32, {4}, kParam0), tensor(f64, {4}, kGrads[2]),
       tensor(f32, {4}, {0.1, -0.2, 0.3, 0.0}),
       tensor(f32, {4}, {0.01, 0.04, 0.5, 1.0}), tensor(f32, {}, {0.1}),
       ints(i64, {}, {6})});
  ASSERT_EQ(out.size(), 3u);
  expectF32(out[1], {-0.699999988, -0.0375000015, 0.649999976, -2}, "m");
}

TEST(AdamWFastTest, UnknownModeIsAnError) {
  ScopedAdamWMode bad("f16");
  HostTensor p = tensor(f32, {1}, {1});
  evalFails(adamwAttrs(0.9, 0.999, 1e-8, 0.0),
            {p, p, p, p, tensor(f32, {}, {0.1}), ints(i64, {}, {0})},
            "adamw: COLOSSAL_CPU_ADAMW must be 'exact' or 'fast', got 'f16'");
}

TEST(AdamWFastTest, RaggedSizesAgreeWithTheExactPath) {
  // Sizes around the kernel's 512-element blocks (the tail is padded): the
  // f32 update stays close to the f64 one after 5 steps from random state,
  // and in place equals out of place bit for bit.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Attrs attrs = adamwAttrs(0.9, 0.999, 1e-8, 0.01);
  for (int64_t n : {1, 511, 512, 513, 1500}) {
    std::vector<double> p0(n), m0(n), v0(n);
    for (int64_t i = 0; i < n; ++i) {
      p0[i] = normal(rng);
      m0[i] = 0.01 * normal(rng);
      v0[i] = 1e-4 * std::fabs(normal(rng));
    }
    Dims d = {n};
    std::vector<HostTensor> fastIn = {tensor(f32, d, p0), tensor(f32, d, p0),
                                      tensor(f32, d, m0), tensor(f32, d, v0),
                                      tensor(f32, {}, {1e-3}),
                                      ints(i64, {}, {0})};
    std::vector<HostTensor> exactIn = fastIn;
    for (int64_t step = 0; step < 5; ++step) {
      std::vector<double> g(n);
      for (double &x : g)
        x = 0.01 * normal(rng);
      fastIn[1] = exactIn[1] = tensor(f32, d, g);
      fastIn[5] = exactIn[5] = ints(i64, {}, {step + 4});
      {
        ScopedAdamWMode fast("fast");
        std::vector<HostTensor> copy = evalAll(attrs, fastIn);
        runInPlace(attrs, fastIn, {0, 2, 3});
        ASSERT_EQ(copy.size(), 3u);
        EXPECT_EQ(copy[0].bytes, fastIn[0].bytes) << "n " << n;
      }
      ScopedAdamWMode exact("exact");
      runInPlace(attrs, exactIn, {0, 2, 3});
    }
    // Per element: 2e-6 relative (f32 roundings, about 4 per output per
    // step, accumulate in v, which beta2 ~ 1 barely decays), plus 1e-7 of
    // the tensor's largest |value| for m's and p's cancellations.
    for (size_t k : {0, 2, 3}) {
      double largest = 0.0;
      for (int64_t i = 0; i < n; ++i)
        largest = std::max(largest, std::fabs(double(exactIn[k].as<float>()[i])));
      for (int64_t i = 0; i < n; ++i) {
        double a = fastIn[k].as<float>()[i], b = exactIn[k].as<float>()[i];
        ASSERT_NEAR(a, b, 2e-6 * std::fabs(b) + 1e-7 * largest)
            << "n " << n << " input " << k << " i " << i;
      }
    }
  }
}

TEST(SgdTest, MomentumWithDampeningAndWeightDecayInPlace) {
  const Values expected[3][2] = {
      {{0.9745, -1.93649995, 0.349750012, 2.99771881},
       {0.50999999, -1.26999998, 3.00500011, 0.0456250012}},
      {{0.939861476, -1.96847856, 0.248117611, 2.99431682},
       {0.692770481, 0.639571488, 2.03264785, 0.0680419728}},
      {{0.975763857, -2.00199842, 0.111536801, 3.16990757},
       {-0.718047798, 0.670398057, 2.73161602, -3.5118134}}};
  Attrs attrs = sgdAttrs(0.9, 0.1, 0.01, 0);
  // The incoming buffer (7s) is ignored at step 0: PyTorch starts it as g.
  std::vector<HostTensor> in = {tensor(f32, {4}, kParam0),
                                tensor(f32, {4}, kGrads[0]),
                                tensor(f32, {4}, {7, 7, 7, 7}),
                                tensor(f32, {}, {0.05}), ints(i64, {}, {0})};
  for (int64_t step = 0; step < 3; ++step) {
    in[1] = tensor(f32, {4}, kGrads[step]);
    in[4] = ints(i64, {}, {step});
    std::vector<HostTensor> copy = evalAll(attrs, in);
    runInPlace(attrs, in, {0, 2});
    std::string what = "step " + std::to_string(step);
    expectF32(in[0], expected[step][0], what + " param");
    expectF32(in[2], expected[step][1], what + " buf");
    ASSERT_EQ(copy.size(), 2u);
    EXPECT_EQ(copy[0].bytes, in[0].bytes) << what;
    EXPECT_EQ(copy[1].bytes, in[2].bytes) << what;
  }
}

TEST(SgdTest, NesterovInPlace) {
  const Values expected[3][2] = {
      {{0.952499986, -1.88125002, 0.214999989, 2.99851561},
       {0.5, -1.25, 3, 0.015625}},
      {{0.908499956, -2.02062511, 0.164749995, 2.99788284},
       {0.699999988, 0.875, 1.95000005, 0.0140624996}},
      {{1.02265, -2.06793761, -0.00922500994, 3.37731338},
       {-0.870000005, 0.912500024, 2.75500011, -3.98734379}}};
  Attrs attrs = sgdAttrs(0.9, 0.0, 0.0, 1);
  std::vector<HostTensor> in = {tensor(f32, {4}, kParam0),
                                tensor(f32, {4}, kGrads[0]),
                                tensor(f32, {4}, {0, 0, 0, 0}),
                                tensor(f32, {}, {0.05}), ints(i64, {}, {0})};
  for (int64_t step = 0; step < 3; ++step) {
    // A bf16 gradient (the values are exact in bf16).
    in[1] = tensor(bf16, {4}, kGrads[step]);
    in[4] = ints(i64, {}, {step});
    runInPlace(attrs, in, {0, 2});
    std::string what = "step " + std::to_string(step);
    expectF32(in[0], expected[step][0], what + " param");
    expectF32(in[2], expected[step][1], what + " buf");
  }
}

TEST(SgdTest, NoMomentumLeavesTheBufferAlone) {
  // p - lr * (g + wd * p) = (1, -2, 0.5, 3) - 0.05 * (0.51, -1.27, 3.005,
  // 0.045625); buf' = buf, both out of place and in place.
  const Values param = {0.9745, -1.93649995, 0.349750012, 2.99771881};
  Attrs attrs = sgdAttrs(0.0, 0.0, 0.01, 0);
  std::vector<HostTensor> in = {tensor(f32, {4}, kParam0),
                                tensor(f32, {4}, kGrads[0]),
                                tensor(f32, {4}, {7, 8, 9, 10}),
                                tensor(f32, {}, {0.05}), ints(i64, {}, {3})};
  std::vector<HostTensor> out = evalAll(attrs, in);
  ASSERT_EQ(out.size(), 2u);
  expectF32(out[0], param, "param");
  expectExact(out[1], t(f32, {4}), {7, 8, 9, 10});
  runInPlace(attrs, in, {0, 2});
  expectF32(in[0], param, "in-place param");
  expectExact(in[2], t(f32, {4}), {7, 8, 9, 10});
}

TEST(SgdTest, NegativeStepIsAnError) {
  HostTensor p = tensor(f32, {1}, {1});
  evalFails(sgdAttrs(0.9, 0.0, 0.0, 0),
            {p, p, p, tensor(f32, {}, {0.1}), ints(i64, {}, {-3})},
            "sgd: step -3 must be >= 0");
}

TEST(TrainingKernelsTest, OutputCountIsChecked) {
  HostTensor p = tensor(f32, {1}, {1}), lr = tensor(f32, {}, {0.1});
  HostTensor step = ints(i64, {}, {0});
  Status status = runCpuKernel(
      sgdAttrs(0.9, 0.0, 0.0, 0),
      {p.ref(), p.ref(), p.ref(), lr.ref(), step.ref()}, {p.ref()});
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_NE(status.message().find("sgd: kernel called with 5 inputs and 1 "
                                  "outputs"),
            std::string::npos)
      << status.message();
}

} // namespace

// The update of a large weight is split over threads: the result must not
// depend on the thread count (each element is computed by the same code).
TEST(TrainingKernels, AdamWThreadedEqualsSingleThreaded) {
  const int64_t n = (1 << 18) + 37; // several chunks plus a ragged tail
  TensorType t{DType::kF32, {n}};
  HostTensor p(t), g(t), m(t), v(t);
  for (int64_t i = 0; i < n; ++i) {
    p.as<float>()[i] = std::sin(0.001 * i);
    g.as<float>()[i] = std::cos(0.003 * i) * 1e-2f;
    m.as<float>()[i] = 1e-3f * (i % 17);
    v.as<float>()[i] = 1e-6f * (i % 5);
  }
  HostTensor lr(TensorType{DType::kF32, {}}), step(TensorType{DType::kI64, {}});
  lr.as<float>()[0] = 1e-3f;
  step.as<int64_t>()[0] = 3;
  Attrs a(OpKind::AdamW);
  a.setF("beta1", 0.9);
  a.setF("beta2", 0.999);
  a.setF("eps", 1e-8);
  a.setF("weight_decay", 0.01);
  auto runWith = [&](const char *threads) {
    setenv("COLOSSAL_CPU_THREADS", threads, 1);
    std::vector<HostTensor> out;
    Status st = evaluateOp(a, {p, g, m, v, lr, step}, out);
    unsetenv("COLOSSAL_CPU_THREADS");
    EXPECT_TRUE(st.isOk()) << st.message();
    return out;
  };
  std::vector<HostTensor> one = runWith("1"), four = runWith("4");
  ASSERT_EQ(one.size(), 3u);
  for (size_t k = 0; k < 3; ++k)
    EXPECT_EQ(one[k].bytes, four[k].bytes) << "output " << k;
}

/// adamw_norm is, bit for bit, div (f32), reduce_sum_square and adamw (and
/// adamw with a divisor operand is div and adamw): the
/// update the fused step made of three kernels, in either AdamW mode, for
/// f32 and bf16 gradients, over a size that spans several fast-AdamW blocks
/// with a ragged tail.
TEST(AdamWNormTest, EqualsDivSumOfSquaresAndAdamW) {
  const int64_t n = 1000;
  Values p0 = randomValues(n, 1), g0 = randomValues(n, 2, -3.0, 3.0),
         m0 = randomValues(n, 3, -0.1, 0.1), v0 = randomValues(n, 4, 0.0, 0.01);
  for (const char *mode : {"fast", "exact"})
    for (DType gradType : {f32, bf16}) {
      SCOPED_TRACE(std::string(mode) + (gradType == bf16 ? " bf16" : " f32"));
      ScopedAdamWMode scoped(mode);
      HostTensor grad = tensor(gradType, {n}, g0);
      HostTensor count = tensor(f32, {}, {37.0});
      HostTensor lr = tensor(f32, {}, {1e-3}), step = ints(i64, {}, {4});
      // The three kernels of the unfused step: g = f32(grad) / count.
      Attrs castTo(OpKind::Cast);
      castTo.setDType("to", f32);
      HostTensor widened = evalAll(castTo, {grad})[0];
      HostTensor g = evalAll(Attrs(OpKind::Div), {widened, count})[0];
      Attrs sumSq(OpKind::ReduceSumSquare);
      sumSq.setList("axes", {0});
      sumSq.setI("keepdims", 0);
      HostTensor expectedSum = evalAll(sumSq, {g})[0];
      Attrs adam = adamwAttrs(0.9, 0.999, 1e-8, 0.01);
      std::vector<HostTensor> expected =
          evalAll(adam, {tensor(f32, {n}, p0), g, tensor(f32, {n}, m0),
                         tensor(f32, {n}, v0), lr, step});
      std::vector<HostTensor> got =
          evalAll(adamwNormAttrs(0.9, 0.999, 1e-8, 0.01), {tensor(f32, {n}, p0), grad, tensor(f32, {n}, m0),
                          tensor(f32, {n}, v0), lr, step, count});
      ASSERT_EQ(got.size(), 4u);
      for (size_t k = 0; k < 3; ++k)
        EXPECT_EQ(got[k].bytes, expected[k].bytes) << "output " << k;
      EXPECT_EQ(got[3].bytes, expectedSum.bytes) << "sum of squares";
      EXPECT_GT(got[3].as<float>()[0], 0.0f);
      // adamw with its divisor operand (the host's update of an offloaded
      // weight reading the raw gradient): the same three results.
      std::vector<HostTensor> divided =
          evalAll(adam, {tensor(f32, {n}, p0), grad, tensor(f32, {n}, m0),
                         tensor(f32, {n}, v0), lr, step, count});
      ASSERT_EQ(divided.size(), 3u);
      for (size_t k = 0; k < 3; ++k)
        EXPECT_EQ(divided[k].bytes, expected[k].bytes) << "adamw output " << k;
    }
}
