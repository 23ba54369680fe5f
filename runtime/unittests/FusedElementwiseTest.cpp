//===- FusedElementwiseTest.cpp - fused_elementwise on the CPU ------------===//
//
// The CPU kernel against the unfused ops, bitwise: every record of a
// program is also run as its own op (evaluateOp) on whole tensors, and the
// fused result must have the same bytes. Programs mix dtypes so that the
// rounding of every intermediate matters (bf16 above all), and inputs
// broadcast. Also: a hand-computed bf16 case, and the kernel's errors.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/FusedProgram.h"
#include "colossal/runtime/Kernels.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

using namespace colossal::runtime;

namespace {

using Dims = std::vector<int64_t>;
constexpr DType f32 = DType::kF32, bf16 = DType::kBF16, f16 = DType::kF16,
                f64 = DType::kF64, i32 = DType::kI32, i8 = DType::kI8,
                boolean = DType::kBool;

FusedRecord rec(OpKind op, DType dtype, std::vector<int> operands,
                int64_t immediate = 0) {
  FusedRecord r;
  r.op = op;
  r.dtype = dtype;
  r.numOperands = static_cast<int>(operands.size());
  for (size_t k = 0; k < operands.size(); ++k)
    r.operands[k] = operands[k];
  r.immediate = immediate;
  return r;
}

Attrs fusedOp(const std::vector<FusedRecord> &records,
              std::vector<double> constants, Dims shape) {
  Attrs a(OpKind::FusedElementwise);
  std::vector<int64_t> program;
  for (const FusedRecord &r : records)
    encodeFusedRecord(r, program);
  a.setList("program", program);
  a.setFloatList("constants", std::move(constants));
  a.setList("shape", std::move(shape));
  return a;
}

HostTensor random(DType dtype, Dims dims, std::mt19937_64 &rng) {
  HostTensor t(TensorType{dtype, std::move(dims)});
  std::uniform_real_distribution<double> real(-3.0, 3.0);
  std::uniform_int_distribution<int64_t> integer(-100, 100);
  for (int64_t i = 0; i < t.type.numElements(); ++i) {
    if (isFloatDType(dtype))
      storeFromDouble(t.ref(), i, real(rng));
    else
      storeFromInt64(t.ref(), i, dtype == boolean ? integer(rng) > 0
                                                  : integer(rng));
  }
  return t;
}

/// Runs each record as its own op, as the unfused graph would, and expands
/// the last value to `shape` (the fused op's result shape).
HostTensor unfused(const std::vector<FusedRecord> &records,
                   const std::vector<double> &constants,
                   const std::vector<HostTensor> &inputs, const Dims &shape) {
  std::vector<HostTensor> regs(inputs);
  for (const FusedRecord &r : records) {
    Attrs attrs(r.op);
    if (r.op == OpKind::Gelu)
      attrs.setI("approximate", r.immediate);
    if (r.op == OpKind::Cast || r.op == OpKind::Fill)
      attrs.setDType("to", r.dtype);
    if (r.op == OpKind::Fill) {
      attrs.setList("shape", {});
      attrs.setF("value", constants[r.immediate]);
    }
    std::vector<HostTensor> ins, outs;
    for (int k = 0; k < r.numOperands; ++k)
      ins.push_back(regs[r.operands[k]]);
    Status st = evaluateOp(attrs, ins, outs);
    EXPECT_TRUE(st.isOk()) << st.toString();
    if (!st.isOk())
      return HostTensor();
    regs.push_back(outs[0]);
  }
  HostTensor last = regs.back();
  if (last.type.dims == shape)
    return last;
  Attrs expand(OpKind::Expand);
  expand.setList("shape", shape);
  std::vector<HostTensor> outs;
  EXPECT_TRUE(evaluateOp(expand, {last}, outs).isOk());
  return outs.empty() ? HostTensor() : outs[0];
}

void expectBitwise(const std::vector<FusedRecord> &records,
                   const std::vector<double> &constants,
                   const std::vector<HostTensor> &inputs, const Dims &shape) {
  std::vector<HostTensor> fused;
  Status st = evaluateOp(fusedOp(records, constants, shape), inputs, fused);
  ASSERT_TRUE(st.isOk()) << st.toString();
  HostTensor reference = unfused(records, constants, inputs, shape);
  ASSERT_EQ(fused[0].type, reference.type);
  int64_t differ = 0;
  size_t bytes = dtypeSizeBytes(reference.type.dtype);
  for (int64_t i = 0; i < reference.type.numElements(); ++i)
    differ += std::memcmp(fused[0].bytes.data() + i * bytes,
                          reference.bytes.data() + i * bytes, bytes) != 0;
  EXPECT_EQ(differ, 0) << "of " << reference.type.toString();
}

TEST(FusedElementwise, Bf16ChainMatchesTheUnfusedOpsBitwise) {
  std::mt19937_64 rng(5);
  // cast f32 -> bf16, + bias (bf16, broadcast), gelu (both forms), * 0.5,
  // exp, / (x in bf16), cast back to f32.
  for (int64_t approximate : {0, 1}) {
    std::vector<FusedRecord> program = {
        rec(OpKind::Cast, bf16, {0}),         rec(OpKind::Add, bf16, {2, 1}),
        rec(OpKind::Gelu, bf16, {3}, approximate),
        rec(OpKind::Fill, bf16, {}, 0),       rec(OpKind::Mul, bf16, {4, 5}),
        rec(OpKind::Exp, bf16, {6}),          rec(OpKind::Div, bf16, {7, 2}),
        rec(OpKind::Cast, f32, {8})};
    expectBitwise(program, {0.5},
                  {random(f32, {16, 33}, rng), random(bf16, {33}, rng)},
                  {16, 33});
  }
}

TEST(FusedElementwise, MixedDtypesAndBroadcastMatchBitwise) {
  std::mt19937_64 rng(7);
  // where(a > b, sqrt(|a|) in f16, cast(i32 c * c -> f16)), then f64.
  std::vector<FusedRecord> program = {
      rec(OpKind::Greater, boolean, {0, 1}),
      rec(OpKind::Abs, f32, {0}),
      rec(OpKind::Sqrt, f32, {4}),
      rec(OpKind::Cast, f16, {5}),
      rec(OpKind::Mul, i32, {2, 2}),
      rec(OpKind::Cast, f16, {7}),
      rec(OpKind::Where, f16, {3, 6, 8}),
      rec(OpKind::Cast, f64, {9}),
      rec(OpKind::Fill, f64, {}, 0),
      rec(OpKind::Pow, f64, {10, 11})};
  expectBitwise(program, {1.5},
                {random(f32, {4, 1, 5}, rng), random(f32, {3, 1}, rng),
                 random(i32, {5}, rng)},
                {4, 3, 5});
}

TEST(FusedElementwise, IntegersWrapAndBoolsLogicMatchBitwise) {
  std::mt19937_64 rng(9);
  // i8 arithmetic wraps at every register; not/and/xor on bools.
  std::vector<FusedRecord> program = {
      rec(OpKind::Mul, i8, {0, 0}),       rec(OpKind::Add, i8, {3, 0}),
      rec(OpKind::Neg, i8, {4}),          rec(OpKind::Less, boolean, {5, 0}),
      rec(OpKind::Not, boolean, {1}),     rec(OpKind::And, boolean, {6, 7}),
      rec(OpKind::Xor, boolean, {8, 1}),  rec(OpKind::Cast, f32, {5}),
      rec(OpKind::Cast, f32, {9}),        rec(OpKind::Max, f32, {10, 11}),
      rec(OpKind::Identity, f32, {12}),   rec(OpKind::Min, f32, {13, 2})};
  expectBitwise(program, {},
                {random(i8, {64}, rng), random(boolean, {64}, rng),
                 random(f32, {1}, rng)},
                {64});
}

TEST(FusedElementwise, Bf16IntermediatesRoundLikeStoredTensors) {
  // x = 1 + 2^-8 in f32. cast to bf16 (8 significant bits) is a tie
  // between 1 and 1 + 2^-7 and rounds to even: 1. Adding 2^-8 in bf16 is
  // the same tie: 1 again. In f32 the chain would give 1 + 2^-7.
  HostTensor x(TensorType{f32, {1}});
  storeFromDouble(x.ref(), 0, 1.0 + std::ldexp(1.0, -8));
  std::vector<HostTensor> out;
  Attrs attrs = fusedOp({rec(OpKind::Cast, bf16, {0}),
                         rec(OpKind::Fill, bf16, {}, 0),
                         rec(OpKind::Add, bf16, {1, 2}),
                         rec(OpKind::Cast, f32, {3})},
                        {std::ldexp(1.0, -8)}, {1});
  ASSERT_TRUE(evaluateOp(attrs, {x}, out).isOk());
  EXPECT_EQ(loadAsDouble(out[0].ref(), 0), 1.0);
}

TEST(FusedElementwise, OutputMayAliasAnInput) {
  // In place, as the plan reader allows: relu(x + x) written over x.
  HostTensor x(TensorType{f32, {3}});
  const float values[3] = {-1.0f, 0.5f, 2.0f};
  std::memcpy(x.bytes.data(), values, sizeof(values));
  Attrs attrs = fusedOp(
      {rec(OpKind::Add, f32, {0, 0}), rec(OpKind::Relu, f32, {1})}, {}, {3});
  ASSERT_TRUE(runCpuKernel(attrs, {x.ref()}, {x.ref()}).isOk());
  EXPECT_EQ(x.as<float>()[0], 0.0f);
  EXPECT_EQ(x.as<float>()[1], 1.0f);
  EXPECT_EQ(x.as<float>()[2], 4.0f);
}

TEST(FusedElementwise, IntegerDivisionByZeroNamesTheRecord) {
  HostTensor a(TensorType{i32, {2}}), b(TensorType{i32, {2}});
  storeFromInt64(a.ref(), 0, 7);
  storeFromInt64(a.ref(), 1, 8);
  storeFromInt64(b.ref(), 0, 1); // b[1] stays 0
  std::vector<HostTensor> out;
  Status st = evaluateOp(fusedOp({rec(OpKind::Add, i32, {0, 1}),
                                  rec(OpKind::Div, i32, {2, 1})},
                                 {}, {2}),
                         {a, b}, out);
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find(
                "fused_elementwise: record 1 (div): integer division by zero"),
            std::string::npos)
      << st.message();
}

TEST(FusedElementwise, RuleRejectsMalformedPrograms) {
  std::vector<TensorType> in = {TensorType{f32, {4}}}, out;
  auto fails = [&](const Attrs &attrs, const std::string &part) {
    Status st = inferOutputTypes(attrs, in, out);
    ASSERT_FALSE(st.isOk()) << part;
    EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
  };
  fails(fusedOp({rec(OpKind::Relu, f32, {1})}, {}, {4}),
        "record 0 (relu) operand 0 names register 1");
  fails(fusedOp({rec(OpKind::Relu, bf16, {0})}, {}, {4}),
        "record 0 (relu) has dtype bf16, but the op gives f32");
  fails(fusedOp({rec(OpKind::Fill, f32, {}, 3)}, {1.0}, {4}),
        "record 0 (fill) names constant 3, out of range [0, 1)");
  fails(fusedOp({rec(OpKind::Relu, f32, {0})}, {}, {5}),
        "input 0 4xf32 does not broadcast to shape 5xf32");
  Attrs raw(OpKind::FusedElementwise);
  raw.setList("program", {40, 1, 0, 0});
  raw.setList("shape", {4});
  fails(raw, "record 0 has opcode 40, not an elementwise op kind");
  raw.setList("program", {10, 99, 0});
  fails(raw, "record 0 (relu) has invalid dtype value 99");
  raw.setList("program", {10, 1});
  fails(raw, "record 0 (relu) is cut short: needs 3 ints, 2 left");
  // Nine inputs: over the limit of the op table's entry.
  std::vector<TensorType> nine(9, TensorType{f32, {4}});
  Status st = inferOutputTypes(
      fusedOp({rec(OpKind::Relu, f32, {0})}, {}, {4}), nine, out);
  EXPECT_FALSE(st.isOk());
}

} // namespace
