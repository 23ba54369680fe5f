//===- CheckPlanTest.cpp - Check-plan mode of the CPU executor ------------===//
//
// CpuExecutor::setCheckPlan on hand-built plans whose every offset and live
// range is written out below: legal byte sharing runs and gives the numbers
// of an unchecked run; a read past liveEnd, a write before liveStart, bytes
// reused while live, bindings outside their live ranges and an
// over-allocated arena fail with messages naming them; dead buffers hold
// NaN. The training plan of TestPlans.h, with compiler-style live ranges and
// packed offsets, trains to the same losses with and without the checks.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Executor.h"

#include "TestPlans.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace colossal::runtime;
using namespace colossal::runtime::testing;

namespace {

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

#define EXPECT_ERROR(status, wantCode, part)                                   \
  do {                                                                         \
    ::colossal::runtime::Status s_ = (status);                                 \
    EXPECT_FALSE(s_.isOk()) << "expected an error containing: " << (part);     \
    EXPECT_EQ(s_.code(), ::colossal::runtime::StatusCode::wantCode)            \
        << s_.message();                                                       \
    EXPECT_TRUE(contains(s_.message(), (part)))                                \
        << "message: " << s_.message() << "\nexpected part: " << (part);       \
  } while (0)

HostTensor f32Tensor(std::vector<int64_t> dims, const std::vector<float> &v) {
  HostTensor t(TensorType{DType::kF32, std::move(dims)});
  t.bytes = f32Bytes(v);
  return t;
}

std::vector<float> values(const HostTensor &t) {
  std::vector<float> out(t.bytes.size() / sizeof(float));
  if (!out.empty())
    std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

/// A forward plan of f32 [2, 2] tensors (16 bytes each), each in its own
/// buffer at an explicit offset and live range, in one device arena.
class SmallPlan {
public:
  explicit SmallPlan(uint64_t arenaBytes) {
    plan.arenas.push_back(PlanArena{MemorySpace::kDevice, arenaBytes, 64});
  }
  uint32_t tensor(const std::string &name, uint64_t offsetBytes,
                  uint32_t liveStart, uint32_t liveEnd) {
    TensorType type{DType::kF32, {2, 2}};
    plan.buffers.push_back(PlanBuffer{name, 0, offsetBytes, type.sizeBytes(),
                                      16, liveStart, liveEnd});
    plan.tensors.push_back(PlanTensor{
        name, static_cast<uint32_t>(plan.buffers.size() - 1), 0, type});
    return static_cast<uint32_t>(plan.tensors.size() - 1);
  }
  void instr(OpKind kind, std::vector<uint32_t> in, uint32_t out) {
    PlanInstr i;
    i.attrs = Attrs(kind);
    i.inputs = std::move(in);
    i.outputs = {out};
    i.location = "node_" + std::to_string(plan.instrs.size());
    plan.instrs.push_back(std::move(i));
  }
  void bind(BindingRole role, const std::string &name, uint32_t tensor,
            std::vector<uint8_t> data = {}) {
    plan.bindings.push_back(PlanBinding{role, name, tensor, std::move(data)});
  }
  Plan plan;
};

/// Legal sharing, 64 bytes for what needs 6 x 16 = 96 without reuse:
///
///   offset  0: c   constant [10, 10, 10, 10]   live [0, 3]
///   offset 16: a   input                       live [0, 1]
///              u   = add(t, t)   (instr 2)     live [2, 3]   a is dead
///   offset 32: s   = add(a, a)   (instr 0)     live [0, 1]
///              out = mul(u, c)   (instr 3)     live [3, 3]   s is dead
///   offset 48: t   = mul(s, a)   (instr 1)     live [1, 2]
///
/// Live bytes per instruction: 0: c a s = 48, 1: c a s t = 64,
/// 2: c t u = 48, 3: c u out = 48; the live peak is 64, the arena size.
/// With a = [1, 2, 3, 4]: s = 2a, t = 2a^2, u = 4a^2, out = 40a^2.
Plan makeSharedPlan() {
  SmallPlan p(64);
  uint32_t c = p.tensor("c", 0, 0, 3);
  uint32_t a = p.tensor("a", 16, 0, 1);
  uint32_t s = p.tensor("s", 32, 0, 1);
  uint32_t t = p.tensor("t", 48, 1, 2);
  uint32_t u = p.tensor("u", 16, 2, 3);
  uint32_t out = p.tensor("out", 32, 3, 3);
  p.instr(OpKind::Add, {a, a}, s);
  p.instr(OpKind::Mul, {s, a}, t);
  p.instr(OpKind::Add, {t, t}, u);
  p.instr(OpKind::Mul, {u, c}, out);
  p.bind(BindingRole::kConstant, "c", c, f32Bytes({10, 10, 10, 10}));
  p.bind(BindingRole::kInput, "a", a);
  p.bind(BindingRole::kOutput, "out", out);
  return p.plan;
}
const std::vector<float> kSharedOut = {40, 160, 360, 640};

/// Buffer indices of makeSharedPlan().
enum SharedBuffer : uint32_t { kBufC, kBufA, kBufS, kBufT, kBufU, kBufOut };

SafetensorsFile sharedInputs() {
  SafetensorsFile in;
  in.tensors.emplace_back("a", f32Tensor({2, 2}, {1, 2, 3, 4}));
  return in;
}

Status runShared(const Plan &plan, bool check, SafetensorsFile &out,
                 CpuExecutor &exec) {
  exec.setCheckPlan(check);
  COLOSSAL_RETURN_IF_ERROR(exec.prepare(plan));
  return exec.run(sharedInputs(), out);
}

bool allPoison(const HostTensor &t) {
  for (uint8_t byte : t.bytes)
    if (byte != 0xff)
      return false;
  return !t.bytes.empty();
}

} // namespace

TEST(CheckPlan, IsOffByDefault) {
  CpuExecutor exec;
  EXPECT_FALSE(exec.checkPlan());
  Plan plan = makeSharedPlan();
  plan.arenas[0].sizeBytes = 128; // over-allocated: not checked
  SafetensorsFile out;
  ASSERT_TRUE(runShared(plan, false, out, exec).isOk());
  EXPECT_EQ(values(out.tensors[0].second), kSharedOut);
  EXPECT_TRUE(exec.planCheck().empty());
  EXPECT_TRUE(exec.verifyPlanPeak().isOk());
}

TEST(CheckPlan, LegalSharingPassesAndMeasuresThePeak) {
  Plan plan = makeSharedPlan();
  CpuExecutor exec;
  SafetensorsFile out;
  Status st = runShared(plan, true, out, exec);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_TRUE(exec.checkPlan());
  ASSERT_EQ(out.tensors.size(), 1u);
  EXPECT_EQ(values(out.tensors[0].second), kSharedOut);

  std::vector<ArenaCheck> checks = exec.planCheck();
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].space, MemorySpace::kDevice);
  EXPECT_EQ(checks[0].plannedBytes, 64u);
  EXPECT_EQ(checks[0].touchedBytes, 64u);  // t ends at 48 + 16
  EXPECT_EQ(checks[0].livePeakBytes, 64u); // instruction 1: c a s t
  EXPECT_TRUE(exec.verifyPlanPeak().isOk());

  // Dead buffers hold the poison: the output once it was copied out, the
  // input's bytes since u (which reused them) died. The constant is kept.
  HostTensor t;
  ASSERT_TRUE(exec.readBinding(BindingRole::kOutput, "out", t).isOk());
  EXPECT_TRUE(allPoison(t));
  EXPECT_TRUE(std::isnan(values(t)[0]));
  ASSERT_TRUE(exec.readBinding(BindingRole::kInput, "a", t).isOk());
  EXPECT_TRUE(allPoison(t));
  ASSERT_TRUE(exec.readBinding(BindingRole::kConstant, "c", t).isOk());
  EXPECT_EQ(values(t), (std::vector<float>{10, 10, 10, 10}));

  // The input's region is re-filled before each run: a second run gives the
  // same numbers.
  SafetensorsFile again;
  ASSERT_TRUE(exec.run(sharedInputs(), again).isOk());
  EXPECT_EQ(values(again.tensors[0].second), kSharedOut);
}

TEST(CheckPlan, LivePeakIsBelowTheArenaWhenThePackingWastesBytes) {
  // u at offset 64 instead of a's dead bytes: the arena grows to 80 while
  // the live peak stays 64 (1.25x).
  Plan plan = makeSharedPlan();
  plan.buffers[kBufU].offsetBytes = 64;
  plan.arenas[0].sizeBytes = 80;
  CpuExecutor exec;
  SafetensorsFile out;
  ASSERT_TRUE(runShared(plan, true, out, exec).isOk());
  std::vector<ArenaCheck> checks = exec.planCheck();
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].touchedBytes, 80u);
  EXPECT_EQ(checks[0].livePeakBytes, 64u);
  EXPECT_TRUE(exec.verifyPlanPeak().isOk());
}

TEST(CheckPlan, ReadAfterLiveEndFails) {
  // t is read by instruction 2 but claims to die at 1. Unchecked, the run
  // still gives the right numbers (nothing reused t's bytes yet): only the
  // check sees the wrong range, before the packer exploits it.
  Plan plan = makeSharedPlan();
  plan.buffers[kBufT].liveEnd = 1;
  CpuExecutor plain;
  SafetensorsFile out;
  ASSERT_TRUE(runShared(plan, false, out, plain).isOk());
  EXPECT_EQ(values(out.tensors[0].second), kSharedOut);

  CpuExecutor exec;
  EXPECT_ERROR(runShared(plan, true, out, exec), kCorruptPlan,
               "check-plan: instruction 2 (add at node_2) reads tensor 't' of "
               "buffer 't' live [1, 1]");
}

TEST(CheckPlan, WriteBeforeLiveStartFails) {
  Plan plan = makeSharedPlan();
  plan.buffers[kBufT].liveStart = 2; // written by instruction 1
  CpuExecutor exec;
  SafetensorsFile out;
  EXPECT_ERROR(runShared(plan, true, out, exec), kCorruptPlan,
               "check-plan: instruction 1 (mul at node_1) writes tensor 't' of "
               "buffer 't' live [2, 2]");
}

TEST(CheckPlan, ReusingBytesOfALiveBufferFails) {
  //   0: s   = add(a, a)   s at offset 0,  live [0, 2]
  //   1: t   = mul(a, a)   t at offset 0,  live [1, 2]: over s, still live
  //   2: out = add(s, t)
  // validatePlan does not compare live ranges, so the plan is accepted and,
  // unchecked, silently computes a^2 + a^2 instead of 2a + a^2.
  SmallPlan p(48);
  uint32_t a = p.tensor("a", 16, 0, 1);
  uint32_t s = p.tensor("s", 0, 0, 2);
  uint32_t t = p.tensor("t", 0, 1, 2);
  uint32_t out = p.tensor("out", 32, 2, 2);
  p.instr(OpKind::Add, {a, a}, s);
  p.instr(OpKind::Mul, {a, a}, t);
  p.instr(OpKind::Add, {s, t}, out);
  p.bind(BindingRole::kInput, "a", a);
  p.bind(BindingRole::kOutput, "out", out);
  ASSERT_TRUE(validatePlan(p.plan).isOk());

  CpuExecutor plain;
  plain.setCheckPlan(false);
  ASSERT_TRUE(plain.prepare(p.plan).isOk());
  SafetensorsFile res;
  ASSERT_TRUE(plain.run(sharedInputs(), res).isOk());
  EXPECT_EQ(values(res.tensors[0].second),
            (std::vector<float>{2, 8, 18, 32})); // not 3, 8, 15, 24

  CpuExecutor exec;
  exec.setCheckPlan(true);
  EXPECT_ERROR(exec.prepare(p.plan), kCorruptPlan,
               "check-plan: buffers 's' (bytes [0, 16), live [0, 2]) and 't' "
               "(bytes [0, 16), live [1, 2]) share device arena bytes while "
               "both are live (from instruction 1)");
  // A failed prepare leaves nothing to run.
  EXPECT_ERROR(exec.run(sharedInputs(), res), kInternal,
               "before a successful prepare()");
}

TEST(CheckPlan, AReadBeforeAnyWriteGivesNaN) {
  // y shares x's bytes legally (x dies at 0, y is born at 1), but nothing
  // writes y before instruction 1 reads it. Unchecked, y holds x's stale
  // values; checked, x's bytes were poisoned when it died.
  //   0: x   = add(a, a)   x at offset 0,  live [0, 0]
  //   1: out = add(y, a)   y at offset 0,  live [1, 1]
  SmallPlan p(48);
  uint32_t a = p.tensor("a", 16, 0, 1);
  uint32_t x = p.tensor("x", 0, 0, 0);
  uint32_t y = p.tensor("y", 0, 1, 1);
  uint32_t out = p.tensor("out", 32, 1, 1);
  p.instr(OpKind::Add, {a, a}, x);
  p.instr(OpKind::Add, {y, a}, out);
  p.bind(BindingRole::kInput, "a", a);
  p.bind(BindingRole::kOutput, "out", out);

  CpuExecutor plain;
  ASSERT_TRUE(plain.prepare(p.plan).isOk());
  SafetensorsFile res;
  ASSERT_TRUE(plain.run(sharedInputs(), res).isOk());
  EXPECT_EQ(values(res.tensors[0].second), (std::vector<float>{3, 6, 9, 12}));

  CpuExecutor exec;
  exec.setCheckPlan(true);
  ASSERT_TRUE(exec.prepare(p.plan).isOk());
  ASSERT_TRUE(exec.run(sharedInputs(), res).isOk());
  for (float v : values(res.tensors[0].second))
    EXPECT_TRUE(std::isnan(v)) << v;

  // The arena starts poisoned too: here y is read before anything at all
  // was written to its bytes.
  //   0: out = add(y, a)
  SmallPlan q(48);
  a = q.tensor("a", 16, 0, 0);
  y = q.tensor("y", 0, 0, 0);
  out = q.tensor("out", 32, 0, 0);
  q.instr(OpKind::Add, {y, a}, out);
  q.bind(BindingRole::kInput, "a", a);
  q.bind(BindingRole::kOutput, "out", out);
  ASSERT_TRUE(exec.prepare(q.plan).isOk());
  ASSERT_TRUE(exec.run(sharedInputs(), res).isOk());
  EXPECT_TRUE(std::isnan(values(res.tensors[0].second)[0]));
}

TEST(CheckPlan, OverAllocatedArenaFailsThePeakCheck) {
  Plan plan = makeSharedPlan();
  plan.arenas[0].sizeBytes = 128; // 64 bytes no buffer uses
  CpuExecutor exec;
  SafetensorsFile out;
  ASSERT_TRUE(runShared(plan, true, out, exec).isOk());
  EXPECT_EQ(values(out.tensors[0].second), kSharedOut);
  std::vector<ArenaCheck> checks = exec.planCheck();
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].plannedBytes, 128u);
  EXPECT_EQ(checks[0].touchedBytes, 64u);
  EXPECT_EQ(checks[0].livePeakBytes, 64u);
  EXPECT_ERROR(exec.verifyPlanPeak(), kCorruptPlan,
               "check-plan: device arena: the plan allocates 128 bytes, the "
               "run touched 64 (over-allocated by 64 bytes)");

  // A buffer that no instruction uses and nothing binds does not count:
  // the arena holds it, but the run never touches it.
  plan = makeSharedPlan();
  plan.buffers.push_back(PlanBuffer{"unused", 0, 64, 16, 16, 0, 0});
  plan.arenas[0].sizeBytes = 80;
  ASSERT_TRUE(runShared(plan, true, out, exec).isOk());
  EXPECT_ERROR(exec.verifyPlanPeak(), kCorruptPlan,
               "the plan allocates 80 bytes, the run touched 64");
}

TEST(CheckPlan, BindingsMustBeLiveWhereTheyAreUsed) {
  struct Case {
    uint32_t buffer, liveStart, liveEnd;
    const char *message;
  };
  const Case cases[] = {
      {kBufC, 0, 2,
       "check-plan: constant 'c' must be live over every instruction [0, 3], "
       "but its buffer 'c' live [0, 2] is not"},
      {kBufA, 1, 1,
       "check-plan: input 'a' of program 'forward' is written before "
       "instruction 0, but its buffer 'a' live [1, 1] is not"},
      {kBufOut, 2, 2,
       "check-plan: output 'out' of program 'forward' is read after "
       "instruction 3, but its buffer 'out' live [2, 2] is not"},
  };
  for (const Case &c : cases) {
    Plan plan = makeSharedPlan();
    plan.buffers[c.buffer].liveStart = c.liveStart;
    plan.buffers[c.buffer].liveEnd = c.liveEnd;
    CpuExecutor exec;
    exec.setCheckPlan(true);
    EXPECT_ERROR(exec.prepare(plan), kCorruptPlan, c.message);
  }
}

//===----------------------------------------------------------------------===//
// A training plan with compiler-style live ranges
//===----------------------------------------------------------------------===//

namespace {

/// Gives `plan` the live ranges the compiler computes (assign-offsets): each
/// buffer from its first to its last use; inputs from their program's first
/// instruction, outputs to its last; weights, states and constants over every
/// instruction. Then packs the buffers greedily (lowest 64-aligned offset
/// clear of every placed buffer live at the same time) and sizes the arena to
/// the end of the last one.
void tightenAndPack(Plan &plan) {
  const uint32_t last = static_cast<uint32_t>(plan.instrs.size() - 1);
  std::vector<uint32_t> start(plan.buffers.size(), UINT32_MAX),
      end(plan.buffers.size(), 0);
  auto touch = [&](uint32_t tensor, uint32_t at) {
    uint32_t b = plan.tensors[tensor].buffer;
    start[b] = std::min(start[b], at);
    end[b] = std::max(end[b], at);
  };
  for (uint32_t i = 0; i <= last; ++i) {
    for (uint32_t t : plan.instrs[i].inputs)
      touch(t, i);
    for (uint32_t t : plan.instrs[i].outputs)
      touch(t, i);
  }
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role == BindingRole::kInput || bind.role == BindingRole::kOutput) {
      const PlanProgram &prog = plan.programs[bind.program];
      touch(bind.tensor, bind.role == BindingRole::kInput
                             ? prog.firstInstr
                             : prog.firstInstr + prog.numInstrs - 1);
    } else {
      touch(bind.tensor, 0);
      touch(bind.tensor, last);
    }
  }
  uint64_t arenaBytes = 0;
  for (size_t b = 0; b < plan.buffers.size(); ++b) {
    PlanBuffer &buf = plan.buffers[b];
    buf.liveStart = start[b] == UINT32_MAX ? 0 : start[b];
    buf.liveEnd = start[b] == UINT32_MAX ? 0 : end[b];
    uint64_t offset = 0;
    for (bool moved = true; moved;) {
      moved = false;
      for (size_t q = 0; q < b; ++q) {
        const PlanBuffer &other = plan.buffers[q];
        bool liveTogether =
            other.liveStart <= buf.liveEnd && buf.liveStart <= other.liveEnd;
        if (liveTogether && other.offsetBytes < offset + buf.sizeBytes &&
            offset < other.offsetBytes + other.sizeBytes) {
          offset = (other.offsetBytes + other.sizeBytes + 63) / 64 * 64;
          moved = true;
        }
      }
    }
    buf.offsetBytes = offset;
    arenaBytes = std::max(arenaBytes, offset + buf.sizeBytes);
  }
  plan.arenas[0].sizeBytes = arenaBytes;
}

SafetensorsFile regressionWeights() {
  SafetensorsFile w;
  w.tensors.emplace_back("w", f32Tensor({1}, {0.5f}));
  w.tensors.emplace_back("b", f32Tensor({1}, {0.0f}));
  return w;
}

/// x = 1..4, t = 2x + 1, as [4, 1].
SafetensorsFile regressionBatch() {
  SafetensorsFile batch;
  batch.tensors.emplace_back("x", f32Tensor({4, 1}, {1, 2, 3, 4}));
  batch.tensors.emplace_back("t", f32Tensor({4, 1}, {3, 5, 7, 9}));
  return batch;
}

} // namespace

TEST(CheckPlan, PackedTrainingPlanTrainsToTheSameLosses) {
  // Micro-batches of 2 rows: two micro_steps per step, so the inputs' bytes
  // are poisoned and re-filled within a step.
  TrainingPlanOptions o;
  o.rows = 2;
  Plan reference = makeTrainingPlan(o);
  Plan packed = reference;
  tightenAndPack(packed);
  ASSERT_TRUE(validatePlan(packed).isOk());
  ASSERT_LT(packed.arenas[0].sizeBytes, reference.arenas[0].sizeBytes);

  CpuExecutor plain, exec;
  exec.setCheckPlan(true);
  ASSERT_TRUE(plain.prepare(reference).isOk());
  Status st = exec.prepare(packed);
  ASSERT_TRUE(st.isOk()) << st.toString();
  ASSERT_TRUE(plain.loadWeights(regressionWeights()).isOk());
  ASSERT_TRUE(exec.loadWeights(regressionWeights()).isOk());
  for (uint64_t k = 0; k < 10; ++k) {
    TrainStepStats want, got;
    SafetensorsFile wantGrads, gotGrads;
    ASSERT_TRUE(plain.trainStep(k, regressionBatch(), want, &wantGrads).isOk());
    st = exec.trainStep(k, regressionBatch(), got, &gotGrads);
    ASSERT_TRUE(st.isOk()) << "step " << k << ": " << st.toString();
    EXPECT_EQ(got.microSteps, 2);
    EXPECT_EQ(got.loss, want.loss) << "step " << k;
    EXPECT_EQ(*got.gradNorm, *want.gradNorm) << "step " << k;
    EXPECT_EQ(values(gotGrads.tensors[0].second),
              values(wantGrads.tensors[0].second));
  }
  std::vector<ArenaCheck> checks = exec.planCheck();
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].touchedBytes, packed.arenas[0].sizeBytes);
  EXPECT_GT(checks[0].livePeakBytes, 0u);
  EXPECT_LE(checks[0].livePeakBytes, checks[0].plannedBytes);
  st = exec.verifyPlanPeak();
  EXPECT_TRUE(st.isOk()) << st.toString();
}
