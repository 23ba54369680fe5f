//===- OpTableTest.cpp - Op table, attribute encoding, shape rules --------===//
//
// inferOutputTypes is the safety net in front of every kernel, so most cases
// here are rejections: one per rule, each checking that the message names
// the op and the offending values. Expected shapes are worked out by hand.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/OpTable.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

using namespace colossal::runtime;

namespace {

using Dims = std::vector<int64_t>;

constexpr DType f32 = DType::kF32;
constexpr DType f16 = DType::kF16;
constexpr DType i64 = DType::kI64;
constexpr DType i32 = DType::kI32;
constexpr DType boolean = DType::kBool;

TensorType t(DType dtype, Dims dims) {
  return TensorType{dtype, std::move(dims)};
}

Attrs attrsOf(OpKind kind) { return Attrs(kind); }

/// The single result type, or a failed test with the error message.
TensorType inferOk(const Attrs &attrs, const std::vector<TensorType> &inputs) {
  std::vector<TensorType> outputs;
  Status status = inferOutputTypes(attrs, inputs, outputs);
  EXPECT_TRUE(status.isOk()) << status.toString();
  if (!status.isOk() || outputs.size() != 1)
    return TensorType{};
  return outputs[0];
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

//===----------------------------------------------------------------------===//
// Table
//===----------------------------------------------------------------------===//

TEST(OpTableTest, TableMatchesTheXMacro) {
  size_t count = 0;
#define COUNT_OP(E, N, C, MIN, MAX) ++count;
  COLOSSAL_OP_KINDS(COUNT_OP)
#undef COUNT_OP
  ASSERT_EQ(allOps().size(), count);
  std::set<std::string_view> names;
  for (const OpInfo &info : allOps()) {
    EXPECT_EQ(lookupOp(static_cast<uint32_t>(info.kind)), &info);
    EXPECT_EQ(lookupOp(info.name), &info);
    EXPECT_TRUE(names.insert(info.name).second) << info.name;
  }
  for (size_t k = 1; k < allOps().size(); ++k)
    EXPECT_LT(allOps()[k - 1].kind, allOps()[k].kind); // enum order
  EXPECT_EQ(opInfo(OpKind::MatMul).name, "matmul");
  EXPECT_EQ(opInfo(OpKind::Concat).maxInputs, -1);
  EXPECT_EQ(opInfo(OpKind::LayerNorm).minInputs, 2);
  EXPECT_EQ(opInfo(OpKind::LayerNorm).maxInputs, 3);
}

TEST(OpTableTest, UnknownKindsAndNames) {
  EXPECT_EQ(lookupOp(0u), nullptr);
  EXPECT_EQ(lookupOp(18u), nullptr); // a gap in the numbering
  EXPECT_EQ(lookupOp(81u), nullptr);
  EXPECT_EQ(lookupOp(0xffffffffu), nullptr);
  EXPECT_EQ(lookupOp("conv"), nullptr);
  EXPECT_EQ(lookupOp(""), nullptr);
}

TEST(OpTableTest, AttributeTableOrder) {
  auto names = [](OpKind kind) {
    std::vector<std::string_view> out;
    for (const AttrSpec &spec : opInfo(kind).attrs)
      out.push_back(spec.name);
    return out;
  };
  using V = std::vector<std::string_view>;
  EXPECT_EQ(names(OpKind::Gelu), V({"approximate"}));
  EXPECT_EQ(names(OpKind::Cast), V({"to"}));
  EXPECT_EQ(names(OpKind::MatMul), V({"transpose_a", "transpose_b"}));
  EXPECT_EQ(names(OpKind::ReduceMin), V({"axes", "keepdims"}));
  EXPECT_EQ(names(OpKind::ReduceSumSquare), V({"axes", "keepdims"}));
  EXPECT_EQ(names(OpKind::LogSoftmax), V({"axis"}));
  EXPECT_EQ(names(OpKind::LayerNorm), V({"axis", "epsilon"}));
  EXPECT_EQ(names(OpKind::GatherND), V({"batch_dims"}));
  EXPECT_EQ(names(OpKind::CumSum), V({"axis", "exclusive", "reverse"}));
  EXPECT_EQ(names(OpKind::Expand), V({"shape"}));
  EXPECT_EQ(names(OpKind::Transpose), V({"perm"}));
  EXPECT_EQ(names(OpKind::Slice), V({"starts", "steps", "sizes"}));
  EXPECT_EQ(names(OpKind::Pad), V({"pads", "mode", "value"}));
  EXPECT_EQ(names(OpKind::Fill), V({"to", "shape", "value"}));
  EXPECT_EQ(names(OpKind::SoftmaxCrossEntropy),
            V({"ignore_index", "reduction"}));
  EXPECT_TRUE(names(OpKind::Add).empty());
  EXPECT_TRUE(names(OpKind::Where).empty());
  EXPECT_EQ(opInfo(OpKind::Pad).attrs[2].type, AttrType::kF64);
  EXPECT_EQ(opInfo(OpKind::Fill).attrs[0].type, AttrType::kDType);
  EXPECT_EQ(opInfo(OpKind::Slice).attrs[1].type, AttrType::kI64List);
}

//===----------------------------------------------------------------------===//
// Attrs
//===----------------------------------------------------------------------===//

TEST(AttrsTest, Defaults) {
  Attrs fill(OpKind::Fill);
  EXPECT_EQ(fill.kind(), OpKind::Fill);
  EXPECT_EQ(fill.dtype("to"), DType::kF32);
  EXPECT_TRUE(fill.list("shape").empty());
  EXPECT_EQ(fill.f("value"), 0.0);
  Attrs matmul(OpKind::MatMul);
  EXPECT_EQ(matmul.i("transpose_a"), 0);
  matmul.setI("transpose_b", 1);
  EXPECT_EQ(matmul.i("transpose_b"), 1);
}

TEST(AttrsTest, EncodeLayout) {
  // pad: pads (count 4, then 4 values), mode; value goes to the float pool.
  Attrs pad(OpKind::Pad);
  pad.setList("pads", {1, 0, -2, 3});
  pad.setI("mode", 2);
  pad.setF("value", 0.5);
  std::vector<int64_t> ints;
  std::vector<double> floats;
  pad.encode(ints, floats);
  EXPECT_EQ(ints, std::vector<int64_t>({4, 1, 0, -2, 3, 2}));
  EXPECT_EQ(floats, std::vector<double>({0.5}));
  // cast: one int, the raw dtype (bf16 = 3).
  Attrs cast(OpKind::Cast);
  cast.setDType("to", DType::kBF16);
  ints.clear();
  floats.clear();
  cast.encode(ints, floats);
  EXPECT_EQ(ints, std::vector<int64_t>({3}));
  EXPECT_TRUE(floats.empty());
}

TEST(AttrsTest, RoundTripEveryOp) {
  for (const OpInfo &info : allOps()) {
    Attrs attrs(info.kind);
    int64_t seed = 1;
    for (const AttrSpec &spec : info.attrs) {
      switch (spec.type) {
      case AttrType::kI64:
        attrs.setI(spec.name, -7 * seed++);
        break;
      case AttrType::kI64List:
        attrs.setList(spec.name, {seed, -seed, 3 * seed});
        ++seed;
        break;
      case AttrType::kF64:
        attrs.setF(spec.name, 1.25 * seed++);
        break;
      case AttrType::kDType:
        attrs.setDType(spec.name, DType::kI8);
        break;
      case AttrType::kF64List:
        attrs.setFloatList(spec.name, {0.5 * seed, -0.25});
        ++seed;
        break;
      }
    }
    std::vector<int64_t> ints;
    std::vector<double> floats;
    attrs.encode(ints, floats);
    Attrs decoded;
    Status status = Attrs::decode(info.kind, ints.data(), ints.size(),
                                  floats.data(), floats.size(), decoded);
    ASSERT_TRUE(status.isOk()) << info.name << ": " << status.toString();
    EXPECT_EQ(decoded.kind(), info.kind);
    std::vector<int64_t> ints2;
    std::vector<double> floats2;
    decoded.encode(ints2, floats2);
    EXPECT_EQ(ints, ints2) << info.name;
    EXPECT_EQ(floats, floats2) << info.name;
    for (const AttrSpec &spec : info.attrs) {
      if (spec.type == AttrType::kI64List) {
        EXPECT_EQ(decoded.list(spec.name), attrs.list(spec.name));
      }
      if (spec.type == AttrType::kF64List) {
        EXPECT_EQ(decoded.floatList(spec.name), attrs.floatList(spec.name));
      }
    }
  }
}

/// Decodes and expects kCorruptPlan with a message naming op and fragment.
void decodeFails(OpKind kind, const std::vector<int64_t> &ints,
                 const std::vector<double> &floats,
                 const std::string &fragment) {
  Attrs out(OpKind::Neg);
  Status status = Attrs::decode(kind, ints.data(), ints.size(), floats.data(),
                                floats.size(), out);
  ASSERT_FALSE(status.isOk()) << fragment;
  EXPECT_EQ(status.code(), StatusCode::kCorruptPlan);
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << status.message();
  EXPECT_EQ(out.kind(), OpKind::Neg); // untouched on failure
}

TEST(AttrsTest, DecodeRejectsGarbage) {
  // Missing values.
  decodeFails(OpKind::Gelu, {}, {}, "gelu: attribute 'approximate'");
  decodeFails(OpKind::LayerNorm, {0}, {}, "layer_norm: attribute 'epsilon'");
  // Left-over values.
  decodeFails(OpKind::Add, {1}, {}, "add: 1 attribute ints left over");
  decodeFails(OpKind::Gelu, {0}, {1.0}, "gelu: 1 attribute floats left over");
  // A list count past the end of the pool, negative, or over the limit.
  decodeFails(OpKind::Transpose, {3, 0, 1}, {}, "transpose: attribute 'perm'");
  decodeFails(OpKind::Transpose, {-1}, {}, "list length -1");
  std::vector<int64_t> longList(66, 0);
  longList[0] = 65;
  decodeFails(OpKind::Reshape, longList, {}, "list length 65");
  decodeFails(OpKind::Reshape, {int64_t(1) << 62}, {},
              "reshape: attribute 'shape'");
  // Bad dtypes.
  decodeFails(OpKind::Cast, {0}, {},
              "cast: attribute 'to' has invalid dtype value 0");
  decodeFails(OpKind::Cast, {10}, {}, "invalid dtype value 10");
  decodeFails(OpKind::Fill, {-1, 0}, {0.0}, "fill: attribute 'to'");
  decodeFails(OpKind::Cast, {(int64_t(1) << 32) + 1}, {}, "invalid dtype");
  // An op kind that does not exist.
  decodeFails(static_cast<OpKind>(19), {}, {}, "unknown op kind 19");
}

TEST(AttrsTest, DecodeAcceptsExactPools) {
  Attrs out;
  std::vector<int64_t> ints = {2, 0, 2, 1}; // axes [0, 2], keepdims 1
  ASSERT_TRUE(Attrs::decode(OpKind::ReduceSum, ints.data(), ints.size(),
                            nullptr, 0, out)
                  .isOk());
  EXPECT_EQ(out.list("axes"), Dims({0, 2}));
  EXPECT_EQ(out.i("keepdims"), 1);
  std::vector<int64_t> full(65, 7);
  full[0] = 64; // exactly kMaxAttrListLength
  EXPECT_TRUE(
      Attrs::decode(OpKind::Reshape, full.data(), full.size(), nullptr, 0, out)
          .isOk());
  EXPECT_EQ(out.list("shape").size(), 64u);
  EXPECT_TRUE(Attrs::decode(OpKind::Add, nullptr, 0, nullptr, 0, out).isOk());
}

TEST(AttrsTest, DecodeMutatedPoolsNeverCrashes) {
  // Start from a valid encoding of random values and mutate it: overwrite one
  // int (small or huge), drop or append a value. Decode must either fail
  // cleanly or succeed with the pools used exactly (re-encoding gives them
  // back).
  std::mt19937_64 rng(1234);
  int decoded = 0, rejected = 0;
  for (int round = 0; round < 4000; ++round) {
    const OpInfo &info = allOps()[rng() % allOps().size()];
    std::vector<int64_t> ints;
    std::vector<double> floats;
    for (const AttrSpec &spec : info.attrs) {
      if (spec.type == AttrType::kF64) {
        floats.push_back(0.25);
      } else if (spec.type == AttrType::kI64List) {
        size_t count = rng() % 4;
        ints.push_back(static_cast<int64_t>(count));
        for (size_t k = 0; k < count; ++k)
          ints.push_back(static_cast<int64_t>(rng() % 7) - 3);
      } else {
        ints.push_back(static_cast<int64_t>(rng() % kMaxDType) + 1);
      }
    }
    switch (rng() % 5) {
    case 0:
      break; // unmutated
    case 1:
      if (!ints.empty())
        ints[rng() % ints.size()] = static_cast<int64_t>(rng() % 80) - 10;
      break;
    case 2:
      if (!ints.empty())
        ints[rng() % ints.size()] = static_cast<int64_t>(rng());
      break;
    case 3:
      if (!ints.empty())
        ints.pop_back();
      else
        floats.clear();
      break;
    case 4:
      if (rng() % 2)
        ints.push_back(1);
      else
        floats.push_back(1.0);
      break;
    }
    Attrs out;
    Status status = Attrs::decode(info.kind, ints.data(), ints.size(),
                                  floats.data(), floats.size(), out);
    if (!status.isOk()) {
      ++rejected;
      EXPECT_EQ(status.message().rfind(std::string(info.name) + ": ", 0), 0u)
          << status.message();
      continue;
    }
    ++decoded;
    std::vector<int64_t> ints2;
    std::vector<double> floats2;
    out.encode(ints2, floats2);
    EXPECT_EQ(ints, ints2) << info.name;
    EXPECT_EQ(floats, floats2) << info.name;
  }
  EXPECT_GT(decoded, 500);
  EXPECT_GT(rejected, 500);
}

//===----------------------------------------------------------------------===//
// broadcastShapes
//===----------------------------------------------------------------------===//

TEST(BroadcastTest, Numpy) {
  Dims out;
  ASSERT_TRUE(broadcastShapes({2, 3}, {3}, out).isOk());
  EXPECT_EQ(out, Dims({2, 3}));
  ASSERT_TRUE(broadcastShapes({4, 1, 3}, {5, 1}, out).isOk());
  EXPECT_EQ(out, Dims({4, 5, 3}));
  ASSERT_TRUE(broadcastShapes({}, {2, 2}, out).isOk());
  EXPECT_EQ(out, Dims({2, 2}));
  ASSERT_TRUE(broadcastShapes({0}, {1}, out).isOk()); // 1 stretches to 0
  EXPECT_EQ(out, Dims({0}));
  ASSERT_TRUE(broadcastShapes({1, 0}, {3, 1}, out).isOk());
  EXPECT_EQ(out, Dims({3, 0}));
  Status status = broadcastShapes({2, 3}, {4, 3}, out);
  EXPECT_FALSE(status.isOk());
  EXPECT_EQ(status.message(), "cannot broadcast [2, 3] with [4, 3]");
  EXPECT_FALSE(broadcastShapes({0}, {2}, out).isOk());
}

//===----------------------------------------------------------------------===//
// inferOutputTypes: generic checks
//===----------------------------------------------------------------------===//

TEST(InferTest, OperandCount) {
  inferFails(attrsOf(OpKind::Add), {t(f32, {2})},
             "add: expects 2 operands, got 1");
  inferFails(attrsOf(OpKind::Neg), {}, "neg: expects 1 operands, got 0");
  inferFails(attrsOf(OpKind::Concat), {},
             "concat: expects at least 1 operands");
  inferFails(attrsOf(OpKind::LayerNorm),
             {t(f32, {2}), t(f32, {2}), t(f32, {2}), t(f32, {2})},
             "layer_norm: expects 2 to 3 operands, got 4");
  inferFails(attrsOf(OpKind::Fill), {t(f32, {})}, "fill: expects 0 operands");
}

TEST(InferTest, OperandTypesAreValidated) {
  inferFails(attrsOf(OpKind::Identity), {t(f32, {1, 1, 1, 1, 1, 1, 1, 1, 1})},
             "identity: operand 0 has rank 9, the limit is 8");
  inferFails(attrsOf(OpKind::Identity), {t(f32, {2, -1})},
             "identity: operand 0 has a negative dim in [2, -1]");
  inferFails(attrsOf(OpKind::Identity), {t(static_cast<DType>(0), {2})},
             "identity: operand 0 has invalid dtype value 0");
  inferFails(attrsOf(OpKind::Identity), {t(static_cast<DType>(77), {2})},
             "invalid dtype value 77");
  // 2^31 * 2^31 f32 elements is 2^64 bytes: too large to address.
  inferFails(attrsOf(OpKind::Identity),
             {t(f32, {int64_t(1) << 31, int64_t(1) << 31})}, "is too large");
  // A zero dim does not excuse an overflowing product of the others.
  inferFails(attrsOf(OpKind::Identity),
             {t(f32, {int64_t(1) << 40, int64_t(1) << 40, 0})}, "is too large");
  EXPECT_EQ(inferOk(attrsOf(OpKind::Identity), {t(i64, {0, 5})}),
            t(i64, {0, 5}));
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

TEST(InferTest, Unary) {
  EXPECT_EQ(inferOk(attrsOf(OpKind::Exp), {t(f16, {2, 3})}), t(f16, {2, 3}));
  EXPECT_EQ(inferOk(attrsOf(OpKind::Neg), {t(i32, {4})}), t(i32, {4}));
  EXPECT_EQ(inferOk(attrsOf(OpKind::Relu), {t(i64, {})}), t(i64, {}));
  inferFails(attrsOf(OpKind::Exp), {t(i64, {2})},
             "exp: operand 0 must be float, got 2xi64");
  inferFails(attrsOf(OpKind::Neg), {t(boolean, {2})},
             "neg: operand 0 must be float or integer");
  inferFails(attrsOf(OpKind::Not), {t(f32, {2})},
             "not: operand 0 must be bool");
  EXPECT_EQ(inferOk(attrsOf(OpKind::Not), {t(boolean, {2})}), t(boolean, {2}));
  Attrs gelu(OpKind::Gelu);
  gelu.setI("approximate", 2);
  inferFails(gelu, {t(f32, {2})}, "gelu: approximate must be 0 or 1, got 2");
  Attrs cast(OpKind::Cast);
  cast.setDType("to", DType::kBF16);
  EXPECT_EQ(inferOk(cast, {t(i64, {3, 1})}), t(DType::kBF16, {3, 1}));
  cast.setDType("to", static_cast<DType>(12));
  inferFails(cast, {t(f32, {2})}, "cast: to has invalid dtype value 12");
}

TEST(InferTest, Binary) {
  EXPECT_EQ(inferOk(attrsOf(OpKind::Add), {t(f32, {2, 1, 3}), t(f32, {4, 1})}),
            t(f32, {2, 4, 3}));
  EXPECT_EQ(inferOk(attrsOf(OpKind::Div), {t(i64, {}), t(i64, {5})}),
            t(i64, {5}));
  inferFails(attrsOf(OpKind::Add), {t(f32, {2}), t(i64, {2})},
             "add: operand dtypes differ, f32 vs i64");
  inferFails(attrsOf(OpKind::Mul), {t(f32, {2, 3}), t(f32, {4, 3})},
             "mul: cannot broadcast [2, 3] with [4, 3]");
  inferFails(attrsOf(OpKind::Add), {t(boolean, {2}), t(boolean, {2})},
             "add: operand 0 must be float or integer");
  EXPECT_EQ(inferOk(attrsOf(OpKind::Less), {t(f32, {3, 1}), t(f32, {2})}),
            t(boolean, {3, 2}));
  EXPECT_EQ(inferOk(attrsOf(OpKind::Equal), {t(boolean, {2}), t(boolean, {1})}),
            t(boolean, {2}));
  inferFails(attrsOf(OpKind::Greater), {t(f32, {2}), t(f16, {2})},
             "greater: operand dtypes differ, f32 vs f16");
  EXPECT_EQ(
      inferOk(attrsOf(OpKind::Xor), {t(boolean, {2, 1}), t(boolean, {3})}),
      t(boolean, {2, 3}));
  inferFails(attrsOf(OpKind::And), {t(boolean, {2}), t(i32, {2})},
             "and: operand 1 must be bool");
}

TEST(InferTest, Where) {
  EXPECT_EQ(inferOk(attrsOf(OpKind::Where),
                    {t(boolean, {2, 1, 1}), t(i64, {3, 1}), t(i64, {4})}),
            t(i64, {2, 3, 4}));
  inferFails(attrsOf(OpKind::Where), {t(f32, {2}), t(f32, {2}), t(f32, {2})},
             "where: operand 0 must be bool");
  inferFails(attrsOf(OpKind::Where),
             {t(boolean, {2}), t(f32, {2}), t(f16, {2})},
             "where: operand dtypes differ, f32 vs f16");
  inferFails(attrsOf(OpKind::Where),
             {t(boolean, {2}), t(f32, {2}), t(f32, {3})},
             "where: cannot broadcast [2] with [3]");
}

//===----------------------------------------------------------------------===//
// matmul
//===----------------------------------------------------------------------===//

Attrs matmul(int64_t ta = 0, int64_t tb = 0) {
  Attrs attrs(OpKind::MatMul);
  attrs.setI("transpose_a", ta);
  attrs.setI("transpose_b", tb);
  return attrs;
}

TEST(InferTest, MatMul) {
  EXPECT_EQ(inferOk(matmul(), {t(f32, {8, 64}), t(f32, {64, 16})}),
            t(f32, {8, 16}));
  // a^T: [64, 8] -> M = 8; b^T: [16, 64] -> N = 16.
  EXPECT_EQ(inferOk(matmul(1, 1), {t(f32, {64, 8}), t(f32, {16, 64})}),
            t(f32, {8, 16}));
  // Batch dims [2, 1] and [5] broadcast to [2, 5].
  EXPECT_EQ(inferOk(matmul(), {t(f32, {2, 1, 3, 4}), t(f32, {5, 4, 6})}),
            t(f32, {2, 5, 3, 6}));
  inferFails(matmul(), {t(f32, {8, 64}), t(f32, {32, 16})},
             "matmul: contraction dims differ, 64 vs 32");
  inferFails(matmul(0, 1), {t(f32, {8, 64}), t(f32, {64, 16})},
             "matmul: contraction dims differ, 64 vs 16");
  inferFails(matmul(), {t(f32, {64}), t(f32, {64, 16})},
             "matmul: operands need rank >= 2");
  inferFails(matmul(), {t(i64, {2, 2}), t(i64, {2, 2})},
             "matmul: operand 0 must be float");
  inferFails(matmul(), {t(f32, {2, 2}), t(f16, {2, 2})},
             "matmul: operand dtypes differ");
  inferFails(matmul(), {t(f32, {3, 2, 2}), t(f32, {4, 2, 2})},
             "matmul: batch dims do not broadcast");
  inferFails(matmul(2, 0), {t(f32, {2, 2}), t(f32, {2, 2})},
             "matmul: transpose_a must be 0 or 1, got 2");
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

TEST(InferTest, Reduce) {
  EXPECT_EQ(inferOk(reduce(OpKind::ReduceSum, {0, 2}, 0), {t(f32, {2, 3, 4})}),
            t(f32, {3}));
  EXPECT_EQ(inferOk(reduce(OpKind::ReduceMax, {0, 2}, 1), {t(f32, {2, 3, 4})}),
            t(f32, {1, 3, 1}));
  EXPECT_EQ(inferOk(reduce(OpKind::ReduceMean, {}, 0), {t(f32, {2, 3})}),
            t(f32, {2, 3}));
  EXPECT_EQ(inferOk(reduce(OpKind::ReduceMin, {0}, 0), {t(i32, {5})}),
            t(i32, {}));
  inferFails(reduce(OpKind::ReduceSum, {2, 0}, 0), {t(f32, {2, 3, 4})},
             "reduce_sum: axes must be sorted and unique, got [2, 0]");
  inferFails(reduce(OpKind::ReduceSum, {1, 1}, 0), {t(f32, {2, 3, 4})},
             "sorted and unique");
  inferFails(reduce(OpKind::ReduceSum, {3}, 0), {t(f32, {2, 3, 4})},
             "reduce_sum: axis 3 out of range [0, 3)");
  inferFails(reduce(OpKind::ReduceSum, {-1}, 0), {t(f32, {2, 3, 4})},
             "axis -1 out of range");
  inferFails(reduce(OpKind::ReduceMean, {0}, 2), {t(f32, {2})},
             "reduce_mean: keepdims must be 0 or 1, got 2");
  inferFails(reduce(OpKind::ReduceSum, {0}, 0), {t(boolean, {2})},
             "must be float or integer");
}

TEST(InferTest, Softmax) {
  Attrs softmax(OpKind::Softmax);
  softmax.setI("axis", 1);
  EXPECT_EQ(inferOk(softmax, {t(f32, {2, 3})}), t(f32, {2, 3}));
  softmax.setI("axis", 2);
  inferFails(softmax, {t(f32, {2, 3})}, "softmax: axis 2 out of range [0, 2)");
  Attrs logSoftmax(OpKind::LogSoftmax);
  inferFails(logSoftmax, {t(f32, {})},
             "log_softmax: axis 0 out of range [0, 0)");
  inferFails(logSoftmax, {t(i64, {3})}, "log_softmax: operand 0 must be float");
}

TEST(InferTest, LayerNorm) {
  Attrs ln(OpKind::LayerNorm);
  ln.setI("axis", 1);
  ln.setF("epsilon", 1e-5);
  EXPECT_EQ(inferOk(ln, {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f32, {2, 3})}),
            t(f32, {4, 2, 3}));
  EXPECT_EQ(inferOk(ln, {t(f32, {4, 2, 3}), t(f32, {2, 3})}),
            t(f32, {4, 2, 3}));
  inferFails(ln, {t(f32, {4, 2, 3}), t(f32, {3})},
             "layer_norm: scale shape [3] must be x.dims[axis:] = [2, 3]");
  inferFails(ln, {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f32, {1, 3})},
             "layer_norm: bias shape [1, 3]");
  inferFails(ln, {t(f32, {4, 2, 3}), t(f32, {2, 3}), t(f16, {2, 3})},
             "layer_norm: operand dtypes differ, f32 vs f16");
  inferFails(ln, {t(i64, {4, 2, 3}), t(i64, {2, 3})},
             "layer_norm: operand 0 must be float");
  ln.setF("epsilon", -1.0);
  inferFails(ln, {t(f32, {4, 2, 3}), t(f32, {2, 3})},
             "layer_norm: epsilon must be finite and >= 0");
  ln.setF("epsilon", 1e-5);
  ln.setI("axis", 3);
  inferFails(ln, {t(f32, {4, 2, 3}), t(f32, {})},
             "layer_norm: axis 3 out of range");
}

TEST(InferTest, CumSum) {
  Attrs cumsum(OpKind::CumSum);
  cumsum.setI("axis", 1);
  EXPECT_EQ(inferOk(cumsum, {t(i32, {2, 3})}), t(i32, {2, 3}));
  cumsum.setI("reverse", 3);
  inferFails(cumsum, {t(f32, {2, 3})}, "cumsum: reverse must be 0 or 1, got 3");
  cumsum.setI("reverse", 0);
  cumsum.setI("exclusive", -1);
  inferFails(cumsum, {t(f32, {2, 3})}, "cumsum: exclusive must be 0 or 1");
  cumsum.setI("exclusive", 0);
  cumsum.setI("axis", 2);
  inferFails(cumsum, {t(f32, {2, 3})}, "cumsum: axis 2 out of range [0, 2)");
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

TEST(InferTest, Gather) {
  Attrs gather(OpKind::Gather);
  gather.setI("axis", 1);
  // [5, 7, 3] gathered on axis 1 by [2, 4]: [5] ++ [2, 4] ++ [3].
  EXPECT_EQ(inferOk(gather, {t(f16, {5, 7, 3}), t(i32, {2, 4})}),
            t(f16, {5, 2, 4, 3}));
  EXPECT_EQ(inferOk(gather, {t(f32, {5, 7}), t(i64, {})}), t(f32, {5}));
  inferFails(gather, {t(f32, {5, 7}), t(f32, {2})},
             "gather: operand 1 must be i32 or i64, got 2xf32");
  gather.setI("axis", 2);
  inferFails(gather, {t(f32, {5, 7}), t(i64, {2})},
             "gather: axis 2 out of range [0, 2)");
  // The result would have rank 7 - 1 + 3 = 9.
  gather.setI("axis", 0);
  inferFails(gather, {t(f32, {1, 1, 1, 1, 1, 1, 1}), t(i64, {1, 1, 1})},
             "gather: result has rank 9, the limit is 8");
}

TEST(InferTest, GatherND) {
  Attrs gnd(OpKind::GatherND);
  // ONNX examples: data [2, 2], indices [2, 2] -> [2]; indices [2, 1] -> [2,
  // 2].
  EXPECT_EQ(inferOk(gnd, {t(i32, {2, 2}), t(i64, {2, 2})}), t(i32, {2}));
  EXPECT_EQ(inferOk(gnd, {t(i32, {2, 2}), t(i64, {2, 1})}), t(i32, {2, 2}));
  // data [2, 2, 2], indices [2, 1, 1], batch_dims 1: [2, 1] ++ [2].
  gnd.setI("batch_dims", 1);
  EXPECT_EQ(inferOk(gnd, {t(f32, {2, 2, 2}), t(i64, {2, 1, 1})}),
            t(f32, {2, 1, 2}));
  inferFails(gnd, {t(f32, {2, 2, 2}), t(i64, {3, 1, 1})},
             "gather_nd: batch dim 0 differs, 2 vs 3");
  inferFails(gnd, {t(f32, {2, 2, 2}), t(i64, {2, 3})},
             "gather_nd: indices.dims[-1] 3 out of range [1, 2]");
  gnd.setI("batch_dims", 2);
  inferFails(gnd, {t(f32, {2, 2, 2}), t(i64, {2, 1})},
             "gather_nd: batch_dims 2 out of range [0, 2)");
  gnd.setI("batch_dims", 0);
  inferFails(gnd, {t(f32, {2, 2}), t(i64, {2, 0})},
             "gather_nd: indices.dims[-1] 0 out of range");
  inferFails(gnd, {t(f32, {2, 2}), t(i64, {})},
             "gather_nd: data and indices need rank >= 1");
  inferFails(gnd, {t(f32, {2, 2}), t(boolean, {1})}, "must be i32 or i64");
}

//===----------------------------------------------------------------------===//
// Data movement
//===----------------------------------------------------------------------===//

TEST(InferTest, Reshape) {
  Attrs reshape(OpKind::Reshape);
  reshape.setList("shape", {3, 0, 2});
  EXPECT_EQ(inferOk(reshape, {t(f32, {0, 6})}), t(f32, {3, 0, 2}));
  reshape.setList("shape", {4, 2});
  EXPECT_EQ(inferOk(reshape, {t(boolean, {2, 2, 2})}), t(boolean, {4, 2}));
  reshape.setList("shape", {4, 3});
  inferFails(
      reshape, {t(f32, {2, 5})},
      "reshape: cannot reshape 2x5xf32 (10 elements) to [4, 3] (12 elements)");
  reshape.setList("shape", {-1, 10});
  inferFails(reshape, {t(f32, {2, 5})}, "reshape: shape has a negative dim");
  reshape.setList("shape", {int64_t(1) << 62, 4});
  inferFails(reshape, {t(f32, {2, 5})},
             "reshape: shape [4611686018427387904, 4] is too large");
}

TEST(InferTest, Expand) {
  Attrs expand(OpKind::Expand);
  expand.setList("shape", {2, 3, 4});
  EXPECT_EQ(inferOk(expand, {t(f32, {3, 1})}), t(f32, {2, 3, 4}));
  EXPECT_EQ(inferOk(expand, {t(f32, {})}), t(f32, {2, 3, 4}));
  inferFails(expand, {t(f32, {2, 4})},
             "expand: cannot expand [2, 4] to [2, 3, 4]");
  expand.setList("shape", {3});
  inferFails(expand, {t(f32, {1, 3})}, "expand: cannot expand [1, 3] to [3]");
  // The shape attr is the result: a 1 in it does not stretch to 5.
  expand.setList("shape", {1});
  inferFails(expand, {t(f32, {5})}, "expand: cannot expand [5] to [1]");
}

TEST(InferTest, Transpose) {
  Attrs transpose(OpKind::Transpose);
  transpose.setList("perm", {2, 0, 1});
  EXPECT_EQ(inferOk(transpose, {t(f32, {2, 3, 4})}), t(f32, {4, 2, 3}));
  transpose.setList("perm", {0, 0, 1});
  inferFails(transpose, {t(f32, {2, 3, 4})},
             "transpose: perm [0, 0, 1] is not a permutation of [0, 3)");
  transpose.setList("perm", {1, 0});
  inferFails(transpose, {t(f32, {2, 3, 4})}, "is not a permutation");
  transpose.setList("perm", {0, 1, 3});
  inferFails(transpose, {t(f32, {2, 3, 4})}, "is not a permutation");
}

Attrs slice(Dims starts, Dims steps, Dims sizes) {
  Attrs attrs(OpKind::Slice);
  attrs.setList("starts", std::move(starts));
  attrs.setList("steps", std::move(steps));
  attrs.setList("sizes", std::move(sizes));
  return attrs;
}

TEST(InferTest, Slice) {
  // Rows 2, 1, 0 (step -1) and columns 3, 1 (step -2) of a [3, 4].
  EXPECT_EQ(inferOk(slice({2, 3}, {-1, -2}, {3, 2}), {t(f32, {3, 4})}),
            t(f32, {3, 2}));
  EXPECT_EQ(inferOk(slice({0, 1}, {1, 2}, {3, 2}), {t(f32, {3, 4})}),
            t(f32, {3, 2}));
  // A zero-size slice reads nothing, so its start is not checked.
  EXPECT_EQ(inferOk(slice({9}, {1}, {0}), {t(f32, {3})}), t(f32, {0}));
  inferFails(slice({0}, {0}, {1}), {t(f32, {3})}, "slice: step 0 in dim 0");
  inferFails(slice({3}, {1}, {1}), {t(f32, {3})},
             "slice: start 3 out of range [0, 3) in dim 0");
  inferFails(slice({-1}, {1}, {1}), {t(f32, {3})}, "start -1 out of range");
  // Last index 1 + 2 * 1 = 3 is past the end.
  inferFails(slice({1}, {1}, {3}), {t(f32, {3})},
             "slice: start 1, step 1 and size 3 read outside [0, 3) in dim 0");
  // Last index 1 - 2 * 1 = -1 is before the start.
  inferFails(slice({1}, {-1}, {3}), {t(f32, {3})}, "read outside [0, 3)");
  // (size - 1) * step would overflow int64.
  inferFails(slice({0}, {int64_t(1) << 62}, {5}), {t(f32, {3})},
             "read outside");
  inferFails(slice({2}, {INT64_MIN}, {2}), {t(f32, {3})}, "read outside");
  EXPECT_EQ(inferOk(slice({2}, {INT64_MIN}, {1}), {t(f32, {3})}), t(f32, {1}));
  inferFails(slice({0}, {1}, {-1}), {t(f32, {3})}, "slice: size -1 in dim 0");
  inferFails(slice({0}, {1}, {1, 1}), {t(f32, {3})},
             "slice: starts, steps and sizes need one entry per dim (1)");
}

TEST(InferTest, Concat) {
  Attrs concat(OpKind::Concat);
  concat.setI("axis", 1);
  EXPECT_EQ(inferOk(concat, {t(f32, {2, 1}), t(f32, {2, 3}), t(f32, {2, 0})}),
            t(f32, {2, 4}));
  EXPECT_EQ(inferOk(concat, {t(i64, {2, 5})}), t(i64, {2, 5}));
  inferFails(concat, {t(f32, {2, 1}), t(f32, {3, 1})},
             "concat: operand 1 dim 0 differs, 2 vs 3");
  inferFails(concat, {t(f32, {2, 1}), t(f32, {2, 1, 1})},
             "concat: operand ranks differ");
  inferFails(concat, {t(f32, {2, 1}), t(i64, {2, 1})},
             "concat: operand dtypes differ");
  concat.setI("axis", 2);
  inferFails(concat, {t(f32, {2, 1})}, "concat: axis 2 out of range [0, 2)");
}

Attrs pad(Dims pads, int64_t mode) {
  Attrs attrs(OpKind::Pad);
  attrs.setList("pads", std::move(pads));
  attrs.setI("mode", mode);
  return attrs;
}

TEST(InferTest, Pad) {
  // dims + begins + ends: [2 + 1 + 0, 3 + 0 + 2].
  EXPECT_EQ(inferOk(pad({1, 0, 0, 2}, 0), {t(f32, {2, 3})}), t(f32, {3, 5}));
  EXPECT_EQ(inferOk(pad({-1, 1, 0, -1}, 2), {t(f32, {2, 3})}), t(f32, {1, 3}));
  EXPECT_EQ(inferOk(pad({1, 2, 1, 2}, 1), {t(f32, {2, 3})}), t(f32, {4, 7}));
  EXPECT_EQ(inferOk(pad({}, 0), {t(f32, {})}), t(f32, {}));
  inferFails(pad({-3, 0, 0, 0}, 0), {t(f32, {2, 3})},
             "pad: result dim -1 is negative in dim 0");
  inferFails(pad({0, 3, 0, 0}, 1), {t(f32, {2, 3})},
             "pad: reflect pads 3, 0 exceed dim - 1 = 2 in dim 1");
  inferFails(pad({0, 0, 2, 0}, 1), {t(f32, {2, 3})},
             "reflect pads 0, 2 exceed dim - 1 = 1");
  inferFails(pad({1, 0}, 2), {t(f32, {0})},
             "pad: edge padding of an empty dim");
  EXPECT_EQ(inferOk(pad({1, 0}, 0), {t(f32, {0})}), t(f32, {1}));
  inferFails(pad({0, 0}, 3), {t(f32, {2})}, "pad: mode must be 0 (constant)");
  inferFails(pad({0, 0, 0}, 0), {t(f32, {2})},
             "pad: pads needs 2 * rank = 2 entries, got 3");
  inferFails(pad({INT64_MIN, 0}, 0), {t(f32, {2})}, "too large");
}

TEST(InferTest, Fill) {
  Attrs fill(OpKind::Fill);
  fill.setDType("to", DType::kI64);
  fill.setList("shape", {2, 3});
  EXPECT_TRUE(inferOk(fill, {}) == t(i64, {2, 3}));
  fill.setList("shape", {});
  EXPECT_TRUE(inferOk(fill, {}) == t(i64, {}));
  fill.setList("shape", {2, -3});
  inferFails(fill, {}, "fill: result has a negative dim in [2, -3]");
  fill.setList("shape", {int64_t(1) << 40, int64_t(1) << 40});
  inferFails(fill, {},
             "fill: result [1099511627776, 1099511627776] is too large");
}

TEST(InferTest, SoftmaxCrossEntropy) {
  Attrs ce(OpKind::SoftmaxCrossEntropy);
  ce.setI("ignore_index", -100);
  ce.setI("reduction", 2);
  EXPECT_EQ(inferOk(ce, {t(f32, {4, 10}), t(i64, {4})}), t(f32, {}));
  // 16-bit scores give an f32 loss; f64 scores an f64 one.
  EXPECT_EQ(inferOk(ce, {t(DType::kBF16, {4, 10, 5, 6}), t(i32, {4, 5, 6})}),
            t(f32, {}));
  EXPECT_EQ(inferOk(ce, {t(DType::kF16, {4, 10}), t(i64, {4})}), t(f32, {}));
  EXPECT_EQ(inferOk(ce, {t(DType::kF64, {4, 10}), t(i64, {4})}),
            t(DType::kF64, {}));
  ce.setI("reduction", 0);
  EXPECT_EQ(inferOk(ce, {t(f32, {4, 10, 5}), t(i64, {4, 5})}), t(f32, {4, 5}));
  inferFails(ce, {t(f32, {4, 10, 5}), t(i64, {4, 10})},
             "softmax_cross_entropy: labels shape [4, 10] must be scores shape "
             "without dim 1, [4, 5]");
  inferFails(ce, {t(f32, {4, 10}), t(f32, {4})},
             "operand 1 must be i32 or i64");
  inferFails(ce, {t(i64, {4, 10}), t(i64, {4})}, "operand 0 must be float");
  inferFails(ce, {t(f32, {4}), t(i64, {})}, "scores need rank >= 2");
  ce.setI("reduction", 3);
  inferFails(ce, {t(f32, {4, 10}), t(i64, {4})},
             "reduction must be 0 (none), 1 (sum) or 2 (mean), got 3");
}

} // namespace
