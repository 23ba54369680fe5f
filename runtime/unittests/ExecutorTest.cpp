//===- ExecutorTest.cpp - The CPU executor on hand-built plans ------------===//
//
// Runs the plan of TestPlans.h and checks the numbers worked out there by
// hand; checks that inputs and weights are matched exactly (name, dtype,
// shape) and that kernel errors name the instruction.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Executor.h"

#include "TestPlans.h"

#include <gtest/gtest.h>

using namespace colossal::runtime;
using namespace colossal::runtime::testing;

namespace {

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

SafetensorsFile testInputs() {
  SafetensorsFile in;
  in.tensors.emplace_back("a", f32Tensor({2, 2}, {1, 2, 3, 4}));
  in.tensors.emplace_back("b", f32Tensor({2, 2}, {10, 20, 30, 40}));
  return in;
}

SafetensorsFile testWeights() {
  SafetensorsFile w;
  w.tensors.emplace_back("w", f32Tensor({2, 3}, testWeightValues()));
  return w;
}

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

void expectTestOutputs(const SafetensorsFile &out) {
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].first, "y");
  EXPECT_EQ(out.tensors[0].second.type, (TensorType{DType::kF32, {2, 3}}));
  // y = (a + b) @ w, worked out in TestPlans.h.
  EXPECT_EQ(values(out.tensors[0].second),
            (std::vector<float>{11, 22, 0, 33, 44, 22}));
  EXPECT_EQ(out.tensors[1].first, "loss");
  EXPECT_EQ(out.tensors[1].second.type, (TensorType{DType::kF32, {}}));
  // loss = 0.5 * (11 + 22 + 0 + 33 + 44 + 22) = 66.
  EXPECT_EQ(values(out.tensors[1].second), (std::vector<float>{66}));
}

} // namespace

TEST(CpuExecutor, RunsThePlanWithAConstant) {
  Plan plan = makeTestPlan();
  CpuExecutor exec;
  Status st = exec.prepare(plan);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(exec.arenaBytes(), (std::vector<uint64_t>{512}));
  SafetensorsFile out;
  st = exec.run(testInputs(), out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectTestOutputs(out);
  // A second step with the same inputs gives the same outputs.
  SafetensorsFile again;
  ASSERT_TRUE(exec.run(testInputs(), again).isOk());
  expectTestOutputs(again);
}

TEST(CpuExecutor, TakesInputsInAnyOrder) {
  Plan plan = makeTestPlan();
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  SafetensorsFile in = testInputs();
  std::swap(in.tensors[0], in.tensors[1]);
  SafetensorsFile out;
  Status st = exec.run(in, out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectTestOutputs(out);
}

TEST(CpuExecutor, RunsInPlaceElementwise) {
  // add writes its result over input a (an exact alias the plan allows).
  Plan plan = makeTestPlan();
  plan.tensors[kSum].buffer = plan.tensors[kA].buffer;
  CpuExecutor exec;
  Status st = exec.prepare(plan);
  ASSERT_TRUE(st.isOk()) << st.toString();
  SafetensorsFile out;
  st = exec.run(testInputs(), out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectTestOutputs(out);
}

TEST(CpuExecutor, RunsThePlanWithLoadedWeights) {
  Plan plan = makeTestPlan(/*weightBinding=*/true);
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  Status st = exec.loadWeights(testWeights());
  ASSERT_TRUE(st.isOk()) << st.toString();
  SafetensorsFile out;
  st = exec.run(testInputs(), out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectTestOutputs(out);
}

TEST(CpuExecutor, RequiresWeightsWhenThePlanHasThem) {
  Plan plan = makeTestPlan(/*weightBinding=*/true);
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  SafetensorsFile out;
  EXPECT_ERROR(exec.run(testInputs(), out), kInvalidArgument,
               "the plan has 1 weights but none were loaded");
}

TEST(CpuExecutor, RejectsMismatchedWeights) {
  Plan plan = makeTestPlan(/*weightBinding=*/true);
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  EXPECT_ERROR(exec.loadWeights(SafetensorsFile()), kNotFound,
               "weight 'w' (2x3xf32) is not in the weights file");
  SafetensorsFile wrongShape;
  wrongShape.tensors.emplace_back("w", f32Tensor({3, 2}, testWeightValues()));
  EXPECT_ERROR(exec.loadWeights(wrongShape), kInvalidArgument,
               "weight 'w': the plan expects 2x3xf32, the weights file has "
               "3x2xf32");
  SafetensorsFile wrongDType;
  wrongDType.tensors.emplace_back("w",
                                  HostTensor(TensorType{DType::kF64, {2, 3}}));
  EXPECT_ERROR(exec.loadWeights(wrongDType), kInvalidArgument,
               "the weights file has 2x3xf64");
  // Failed loads do not count as loaded.
  SafetensorsFile out;
  EXPECT_FALSE(exec.run(testInputs(), out).isOk());
  // Extra tensors in a weights file are fine (it may serve several plans).
  SafetensorsFile extra = testWeights();
  extra.tensors.emplace_back("unused", f32Tensor({1}, {1}));
  EXPECT_TRUE(exec.loadWeights(extra).isOk());
}

TEST(CpuExecutor, RejectsWrongInputs) {
  Plan plan = makeTestPlan();
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  SafetensorsFile out;

  SafetensorsFile missing = testInputs();
  missing.tensors.pop_back();
  EXPECT_ERROR(exec.run(missing, out), kInvalidArgument,
               "missing input 'b' (expected 2x2xf32)");

  SafetensorsFile extra = testInputs();
  extra.tensors.emplace_back("c", f32Tensor({1}, {0}));
  EXPECT_ERROR(exec.run(extra, out), kInvalidArgument,
               "unexpected input 'c' (the plan's inputs are: a, b)");

  SafetensorsFile wrongShape = testInputs();
  wrongShape.tensors[0].second = f32Tensor({2, 3}, {1, 2, 3, 4, 5, 6});
  EXPECT_ERROR(exec.run(wrongShape, out), kInvalidArgument,
               "input 'a': expected 2x2xf32, got 2x3xf32");

  SafetensorsFile wrongDType = testInputs();
  wrongDType.tensors[1].second = HostTensor(TensorType{DType::kBF16, {2, 2}});
  EXPECT_ERROR(exec.run(wrongDType, out), kInvalidArgument,
               "input 'b': expected 2x2xf32, got 2x2xbf16");

  // The executor is still usable after rejecting inputs.
  Status st = exec.run(testInputs(), out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectTestOutputs(out);
}

TEST(CpuExecutor, RejectsAnInvalidPlan) {
  Plan plan = makeTestPlan();
  plan.tensors[kY].buffer = 42;
  CpuExecutor exec;
  EXPECT_ERROR(exec.prepare(plan), kCorruptPlan,
               "tensor 4 'y': buffer index 42 is out of range");
  SafetensorsFile out;
  EXPECT_ERROR(exec.run(testInputs(), out), kInternal,
               "before a successful prepare()");
}

TEST(CpuExecutor, KernelErrorsNameTheInstruction) {
  // out = gather(data, indices) with data = [5, 6, 7] a constant.
  Plan plan;
  plan.arenas.push_back(PlanArena{MemorySpace::kDevice, 192, 64});
  TensorType dataType{DType::kF32, {3}};
  TensorType indexType{DType::kI64, {1}};
  TensorType outType{DType::kF32, {1}};
  plan.buffers = {PlanBuffer{"data", 0, 0, 12, 64, 0, 0},
                  PlanBuffer{"indices", 0, 64, 8, 64, 0, 0},
                  PlanBuffer{"out", 0, 128, 4, 64, 0, 0}};
  plan.tensors = {PlanTensor{"data", 0, 0, dataType},
                  PlanTensor{"indices", 1, 0, indexType},
                  PlanTensor{"out", 2, 0, outType}};
  PlanInstr gather;
  gather.attrs = Attrs(OpKind::Gather);
  gather.attrs.setI("axis", 0);
  gather.inputs = {0, 1};
  gather.outputs = {2};
  gather.location = "node_Gather_7";
  plan.instrs.push_back(gather);
  plan.bindings = {
      PlanBinding{BindingRole::kConstant, "data", 0, f32Bytes({5, 6, 7})},
      PlanBinding{BindingRole::kInput, "indices", 1, {}},
      PlanBinding{BindingRole::kOutput, "out", 2, {}}};
  CpuExecutor exec;
  Status st = exec.prepare(plan);
  ASSERT_TRUE(st.isOk()) << st.toString();

  SafetensorsFile in, out;
  HostTensor indices(indexType);
  indices.as<int64_t>()[0] = -1; // counts from the end: 7
  in.tensors.emplace_back("indices", indices);
  st = exec.run(in, out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(values(out.tensors.at(0).second), (std::vector<float>{7}));

  in.tensors[0].second.as<int64_t>()[0] = 3;
  st = exec.run(in, out);
  EXPECT_FALSE(st.isOk());
  EXPECT_EQ(st.message().rfind("instruction 0 (gather at node_Gather_7): ", 0),
            0u)
      << st.message();
}

TEST(CpuExecutor, PrepareForgetsLoadedWeights) {
  // prepare() starts over: weights loaded for an earlier plan are gone.
  Plan plan = makeTestPlan(/*weightBinding=*/true);
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(exec.loadWeights(testWeights()).isOk());
  ASSERT_TRUE(exec.prepare(plan).isOk());
  SafetensorsFile out;
  EXPECT_ERROR(exec.run(testInputs(), out), kInvalidArgument,
               "none were loaded");
}
