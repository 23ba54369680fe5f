//===- TestPlans.h - Small hand-built plans shared by the unit tests
//-------===//
//
// One plan, built field by field so that every number can be checked by
// hand:
//
//   sum   = add(a, b)                        a, b: 2x2 f32 inputs
//   y     = matmul(sum, w)                   w: 2x3 f32 constant (or weight)
//   total = reduce_sum(y, axes [0, 1])       f32 scalar
//   half  = fill(to f32, shape [], 0.5)      f32 scalar
//   loss  = mul(total, half)                 outputs: y, loss
//
// With a = [[1, 2], [3, 4]], b = [[10, 20], [30, 40]] and
// w = [[1, 0, 2], [0, 1, -1]]:
//   sum  = [[11, 22], [33, 44]]
//   y    = [[11, 22, 22 - 22 = 0], [33, 44, 66 - 44 = 22]]
//   total = 11 + 22 + 0 + 33 + 44 + 22 = 132, loss = 66.
//
// Each tensor has its own 64-aligned buffer at offset 64 * index in one
// 512-byte device arena.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_UNITTESTS_TESTPLANS_H
#define COLOSSAL_RUNTIME_UNITTESTS_TESTPLANS_H

#include "colossal/runtime/PlanFormat.h"

#include <cstring>
#include <vector>

namespace colossal::runtime::testing {

/// Tensor indices of the plan below.
enum TestTensor : uint32_t {
  kA = 0,
  kB = 1,
  kSum = 2,
  kW = 3,
  kY = 4,
  kTotal = 5,
  kHalf = 6,
  kLoss = 7,
};

inline std::vector<uint8_t> f32Bytes(const std::vector<float> &values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  if (!values.empty())
    std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

inline const std::vector<float> &testWeightValues() {
  static const std::vector<float> w = {1, 0, 2, 0, 1, -1};
  return w;
}

/// The plan described above. With `weightBinding`, w is a kWeight named
/// "w" (read from a weights file) instead of a kConstant.
inline Plan makeTestPlan(bool weightBinding = false) {
  Plan plan;
  plan.sourceModel = "tiny.onnx";
  plan.weightsFile = weightBinding ? "tiny.safetensors" : "";
  plan.arenas.push_back(PlanArena{MemorySpace::kDevice, 512, 64});

  struct Spec {
    const char *name;
    std::vector<int64_t> dims;
    uint32_t liveStart, liveEnd;
  };
  const Spec specs[] = {
      {"a", {2, 2}, 0, 0}, {"b", {2, 2}, 0, 0}, {"sum", {2, 2}, 0, 1},
      {"w", {2, 3}, 0, 1}, {"y", {2, 3}, 1, 2}, {"total", {}, 2, 4},
      {"half", {}, 3, 4},  {"loss", {}, 4, 4},
  };
  for (uint32_t t = 0; t < 8; ++t) {
    TensorType type{DType::kF32, specs[t].dims};
    PlanBuffer buf;
    buf.name = specs[t].name;
    buf.arena = 0;
    buf.offsetBytes = 64 * t;
    buf.sizeBytes = type.sizeBytes();
    buf.alignBytes = 64;
    buf.liveStart = specs[t].liveStart;
    buf.liveEnd = specs[t].liveEnd;
    plan.buffers.push_back(buf);
    plan.tensors.push_back(PlanTensor{specs[t].name, t, 0, type});
  }

  auto instr = [&](Attrs attrs, std::vector<uint32_t> in,
                   std::vector<uint32_t> out, const char *loc) {
    PlanInstr i;
    i.attrs = std::move(attrs);
    i.inputs = std::move(in);
    i.outputs = std::move(out);
    i.location = loc;
    plan.instrs.push_back(std::move(i));
  };
  instr(Attrs(OpKind::Add), {kA, kB}, {kSum}, "node_Add_0");
  instr(Attrs(OpKind::MatMul), {kSum, kW}, {kY}, "node_MatMul_1");
  Attrs reduce(OpKind::ReduceSum);
  reduce.setList("axes", {0, 1});
  reduce.setI("keepdims", 0);
  instr(reduce, {kY}, {kTotal}, "node_ReduceSum_2");
  Attrs fill(OpKind::Fill);
  fill.setDType("to", DType::kF32);
  fill.setList("shape", {});
  fill.setF("value", 0.5);
  instr(fill, {}, {kHalf}, "node_Const_3");
  instr(Attrs(OpKind::Mul), {kTotal, kHalf}, {kLoss}, "node_Mul_4");

  plan.bindings.push_back(PlanBinding{BindingRole::kInput, "a", kA, {}});
  plan.bindings.push_back(PlanBinding{BindingRole::kInput, "b", kB, {}});
  if (weightBinding)
    plan.bindings.push_back(PlanBinding{BindingRole::kWeight, "w", kW, {}});
  else
    plan.bindings.push_back(PlanBinding{BindingRole::kConstant, "w", kW,
                                        f32Bytes(testWeightValues())});
  plan.bindings.push_back(PlanBinding{BindingRole::kOutput, "y", kY, {}});
  plan.bindings.push_back(PlanBinding{BindingRole::kOutput, "loss", kLoss, {}});
  return plan;
}

} // namespace colossal::runtime::testing

#endif // COLOSSAL_RUNTIME_UNITTESTS_TESTPLANS_H
