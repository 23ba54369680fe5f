//===- TestPlans.h - Small hand-built plans shared by the unit tests ------===//
//
// Two plans, built field by field so that every number can be checked by
// hand. The forward plan (makeTestPlan):
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
// The training plan (makeTrainingPlan): linear regression t ~ w * x + b
// under the mean squared error, trained by plain SGD with learning rate lr,
// written with forward ops only (see the function's comment).
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_UNITTESTS_TESTPLANS_H
#define COLOSSAL_RUNTIME_UNITTESTS_TESTPLANS_H

#include "colossal/runtime/PlanFormat.h"

#include <cstring>
#include <string>
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

/// Appends tensors (each in its own 64-aligned buffer of one arena, live for
/// the whole plan, so that nothing shares bytes), instructions and bindings.
class PlanBuilder {
public:
  PlanBuilder() {
    plan.arenas.push_back(PlanArena{MemorySpace::kDevice, 0, 64});
  }

  uint32_t tensor(const std::string &name, DType dtype,
                  std::vector<int64_t> dims) {
    TensorType type{dtype, std::move(dims)};
    PlanBuffer buf;
    buf.name = name;
    buf.offsetBytes = plan.arenas[0].sizeBytes;
    buf.sizeBytes = type.sizeBytes();
    buf.alignBytes = 64;
    plan.arenas[0].sizeBytes += (buf.sizeBytes + 63) / 64 * 64;
    if (buf.sizeBytes == 0)
      plan.arenas[0].sizeBytes += 64;
    plan.buffers.push_back(buf);
    uint32_t index = static_cast<uint32_t>(plan.tensors.size());
    plan.tensors.push_back(PlanTensor{
        name, static_cast<uint32_t>(plan.buffers.size() - 1), 0, type});
    return index;
  }
  void instr(Attrs attrs, std::vector<uint32_t> in, std::vector<uint32_t> out) {
    PlanInstr i;
    i.attrs = std::move(attrs);
    i.inputs = std::move(in);
    i.outputs = std::move(out);
    i.location = "node_" + std::to_string(plan.instrs.size());
    plan.instrs.push_back(std::move(i));
  }
  PlanBinding &bind(BindingRole role, const std::string &name, uint32_t tensor,
                    uint32_t program = kAllPrograms) {
    PlanBinding b;
    b.role = role;
    b.name = name;
    b.tensor = tensor;
    b.program = program;
    plan.bindings.push_back(b);
    return plan.bindings.back();
  }
  /// Opens a program at the current instruction; the previous one ends here.
  void program(const std::string &name) {
    if (!plan.programs.empty())
      plan.programs.back().numInstrs =
          static_cast<uint32_t>(plan.instrs.size()) -
          plan.programs.back().firstInstr;
    plan.programs.push_back(
        PlanProgram{name, static_cast<uint32_t>(plan.instrs.size()), 0});
  }
  Plan finish() {
    program("");
    plan.programs.pop_back();
    uint32_t last =
        plan.instrs.empty() ? 0 : static_cast<uint32_t>(plan.instrs.size() - 1);
    for (PlanBuffer &buf : plan.buffers)
      buf.liveEnd = last;
    return plan;
  }

  static Attrs fill(DType to, std::vector<int64_t> shape, double value) {
    Attrs a(OpKind::Fill);
    a.setDType("to", to);
    a.setList("shape", std::move(shape));
    a.setF("value", value);
    return a;
  }
  static Attrs reduce(OpKind kind, std::vector<int64_t> axes) {
    Attrs a(kind);
    a.setList("axes", std::move(axes));
    a.setI("keepdims", 0);
    return a;
  }

  Plan plan;
};

struct TrainingPlanOptions {
  int64_t rows = 4; ///< micro-batch rows M
  int64_t cols = 1; ///< columns S (the "sequence")
  /// false: f32 inputs "x" and "t"; true: i64 inputs "input_ids" and
  /// "labels" that index a constant table [vocab] with table[i] = i.
  bool tokens = false;
  int64_t vocab = 16;
  double lr = 1.0 / 16;
  InitKind initW = InitKind::kNormal;
  double initScaleW = 0.5;
};

/// Training plan, M x S samples per micro-batch:
///
///   micro_step (inputs x, t [M, S] f32, or input_ids/labels gathered from
///   the table; outputs loss, __count):
///     d      = x * w + b - t                    w, b: [1] f32 weights
///     loss   = mean(d * d)                      over [M, S]
///     __count = M * S                           (fill)
///     grad.w += 2 * sum(d * x)                  = count x dloss/dw, in place
///     grad.b += 2 * sum(d)                      = count x dloss/db, in place
///   apply_step (inputs __step i64, __count_total f32; outputs lr,
///   grad_norm):
///     gw, gb = grad.w / __count_total, grad.b / __count_total
///     w -= lr * gw; b -= lr * gb                (sub in place)
///     grad_norm = sqrt(sum(gw^2) + sum(gb^2))
///     grad.w = grad.b = 0                       (fill)
///
/// w is trainable with init rule `initW` (export name "model.w"); b has
/// init zeros (export name "model.b").
inline Plan makeTrainingPlan(const TrainingPlanOptions &o = {}) {
  PlanBuilder pb;
  const DType f32 = DType::kF32;
  const std::vector<int64_t> dims = {o.rows, o.cols};
  const double count = static_cast<double>(o.rows * o.cols);

  uint32_t w = pb.tensor("w", f32, {1}), b = pb.tensor("b", f32, {1});
  uint32_t gradW = pb.tensor("grad.w", f32, {1});
  uint32_t gradB = pb.tensor("grad.b", f32, {1});
  PlanBinding &bw = pb.bind(BindingRole::kWeight, "w", w);
  bw.trainable = true;
  bw.init = o.initW;
  bw.initScale = o.initW == InitKind::kNormal ? o.initScaleW : 0.0;
  bw.exportName = "model.w";
  PlanBinding &bb = pb.bind(BindingRole::kWeight, "b", b);
  bb.trainable = true;
  bb.init = InitKind::kZeros;
  bb.exportName = "model.b";
  pb.bind(BindingRole::kState, "grad.w", gradW);
  pb.bind(BindingRole::kState, "grad.b", gradB);

  pb.program(kMicroStepProgram);
  uint32_t x, t;
  if (o.tokens) {
    uint32_t ids = pb.tensor("input_ids", DType::kI64, dims);
    uint32_t labels = pb.tensor("labels", DType::kI64, dims);
    uint32_t table = pb.tensor("table", f32, {o.vocab});
    std::vector<float> values(static_cast<size_t>(o.vocab));
    for (int64_t i = 0; i < o.vocab; ++i)
      values[i] = static_cast<float>(i);
    pb.bind(BindingRole::kInput, "input_ids", ids, 0);
    pb.bind(BindingRole::kInput, "labels", labels, 0);
    pb.bind(BindingRole::kConstant, "table", table).data = f32Bytes(values);
    x = pb.tensor("x", f32, dims);
    t = pb.tensor("t", f32, dims);
    Attrs gather(OpKind::Gather);
    gather.setI("axis", 0);
    pb.instr(gather, {table, ids}, {x});
    pb.instr(gather, {table, labels}, {t});
  } else {
    x = pb.tensor("x", f32, dims);
    t = pb.tensor("t", f32, dims);
    pb.bind(BindingRole::kInput, "x", x, 0);
    pb.bind(BindingRole::kInput, "t", t, 0);
  }
  uint32_t xw = pb.tensor("xw", f32, dims), p = pb.tensor("p", f32, dims);
  uint32_t d = pb.tensor("d", f32, dims), sq = pb.tensor("sq", f32, dims);
  uint32_t loss = pb.tensor("loss", f32, {});
  uint32_t cnt = pb.tensor("count", f32, {});
  uint32_t dx = pb.tensor("dx", f32, dims);
  uint32_t sdx = pb.tensor("sum_dx", f32, {}), sd = pb.tensor("sum_d", f32, {});
  uint32_t two = pb.tensor("two", f32, {});
  uint32_t gw = pb.tensor("gw_micro", f32, {}),
           gb = pb.tensor("gb_micro", f32, {});
  pb.instr(Attrs(OpKind::Mul), {x, w}, {xw});
  pb.instr(Attrs(OpKind::Add), {xw, b}, {p});
  pb.instr(Attrs(OpKind::Sub), {p, t}, {d});
  pb.instr(Attrs(OpKind::Mul), {d, d}, {sq});
  pb.instr(PlanBuilder::reduce(OpKind::ReduceMean, {0, 1}), {sq}, {loss});
  pb.instr(PlanBuilder::fill(f32, {}, count), {}, {cnt});
  pb.instr(Attrs(OpKind::Mul), {d, x}, {dx});
  pb.instr(PlanBuilder::reduce(OpKind::ReduceSum, {0, 1}), {dx}, {sdx});
  pb.instr(PlanBuilder::reduce(OpKind::ReduceSum, {0, 1}), {d}, {sd});
  pb.instr(PlanBuilder::fill(f32, {}, 2.0), {}, {two});
  pb.instr(Attrs(OpKind::Mul), {sdx, two}, {gw});
  pb.instr(Attrs(OpKind::Mul), {sd, two}, {gb});
  pb.instr(Attrs(OpKind::Add), {gradW, gw}, {gradW}); // accumulate in place
  pb.instr(Attrs(OpKind::Add), {gradB, gb}, {gradB});
  pb.bind(BindingRole::kOutput, "loss", loss, 0);
  pb.bind(BindingRole::kOutput, kCountOutputName, cnt, 0);

  pb.program(kApplyStepProgram);
  uint32_t step = pb.tensor("step", DType::kI64, {});
  uint32_t total = pb.tensor("count_total", f32, {});
  pb.bind(BindingRole::kInput, kStepInputName, step, 1);
  pb.bind(BindingRole::kInput, kCountTotalInputName, total, 1);
  uint32_t mw = pb.tensor("mean_gw", f32, {1}),
           mb = pb.tensor("mean_gb", f32, {1});
  uint32_t lr = pb.tensor("lr", f32, {});
  uint32_t uw = pb.tensor("upd_w", f32, {1}), ub = pb.tensor("upd_b", f32, {1});
  uint32_t w2 = pb.tensor("gw2", f32, {1}), b2 = pb.tensor("gb2", f32, {1});
  uint32_t sw = pb.tensor("sum_gw2", f32, {}),
           sb = pb.tensor("sum_gb2", f32, {});
  uint32_t ss = pb.tensor("sum_g2", f32, {}), norm = pb.tensor("norm", f32, {});
  pb.instr(Attrs(OpKind::Div), {gradW, total}, {mw});
  pb.instr(Attrs(OpKind::Div), {gradB, total}, {mb});
  pb.instr(PlanBuilder::fill(f32, {}, o.lr), {}, {lr});
  pb.instr(Attrs(OpKind::Mul), {mw, lr}, {uw});
  pb.instr(Attrs(OpKind::Mul), {mb, lr}, {ub});
  pb.instr(Attrs(OpKind::Sub), {w, uw}, {w}); // the update, in place
  pb.instr(Attrs(OpKind::Sub), {b, ub}, {b});
  pb.instr(Attrs(OpKind::Mul), {mw, mw}, {w2});
  pb.instr(Attrs(OpKind::Mul), {mb, mb}, {b2});
  pb.instr(PlanBuilder::reduce(OpKind::ReduceSum, {0}), {w2}, {sw});
  pb.instr(PlanBuilder::reduce(OpKind::ReduceSum, {0}), {b2}, {sb});
  pb.instr(Attrs(OpKind::Add), {sw, sb}, {ss});
  pb.instr(Attrs(OpKind::Sqrt), {ss}, {norm});
  pb.instr(PlanBuilder::fill(f32, {1}, 0.0), {}, {gradW}); // zero the grads
  pb.instr(PlanBuilder::fill(f32, {1}, 0.0), {}, {gradB});
  pb.bind(BindingRole::kOutput, "lr", lr, 1);
  pb.bind(BindingRole::kOutput, "grad_norm", norm, 1);

  Plan plan = pb.finish();
  plan.sourceModel = "regression.onnx";
  plan.trainConfig = "{\"optimizer\": \"sgd\", \"grad_accum\": 1}";
  return plan;
}

} // namespace colossal::runtime::testing

#endif // COLOSSAL_RUNTIME_UNITTESTS_TESTPLANS_H
