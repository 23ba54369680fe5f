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

Attrs sgdAttrs(double momentum, double dampening, double weightDecay,
               int64_t nesterov) {
  Attrs attrs(OpKind::Sgd);
  attrs.setF("momentum", momentum);
  attrs.setF("dampening", dampening);
  attrs.setF("weight_decay", weightDecay);
  attrs.setI("nesterov", nesterov);
  return attrs;
}

//===----------------------------------------------------------------------===//
// Table entries
//===----------------------------------------------------------------------===//

TEST(TrainingOpTableTest, CodesNamesAndArity) {
  struct Expected {
    OpKind kind;
    uint32_t code;
    const char *name;
    int inputs, outputs;
  };
  const Expected expected[] = {
      {OpKind::GatherGrad, 90, "gather_grad", 2, 1},
      {OpKind::SliceGrad, 91, "slice_grad", 1, 1},
      {OpKind::LayerNormGrad, 92, "layer_norm_grad", 3, 3},
      {OpKind::SoftmaxCrossEntropyGrad, 93, "softmax_cross_entropy_grad", 3, 1},
      {OpKind::AdamW, 94, "adamw", 6, 3},
      {OpKind::Sgd, 95, "sgd", 5, 2},
  };
  for (const Expected &e : expected) {
    const OpInfo *info = lookupOp(e.code);
    ASSERT_NE(info, nullptr) << e.name;
    EXPECT_EQ(info->kind, e.kind);
    EXPECT_EQ(info->name, e.name);
    EXPECT_EQ(lookupOp(e.name), info);
    EXPECT_EQ(info->minInputs, e.inputs) << e.name;
    EXPECT_EQ(info->maxInputs, e.inputs) << e.name;
    EXPECT_EQ(info->numOutputs, e.outputs) << e.name;
  }
  // Everything older has one result.
  EXPECT_EQ(opInfo(OpKind::LayerNorm).numOutputs, 1);
  EXPECT_EQ(opInfo(OpKind::SoftmaxCrossEntropy).numOutputs, 1);
  EXPECT_EQ(lookupOp(89u), nullptr);
  EXPECT_EQ(lookupOp(96u), nullptr);
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
  inferFails(attrs, {p, p, p, p, lr}, "adamw: expects 6 operands, got 5");
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

} // namespace
