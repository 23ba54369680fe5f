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

#include <cmath>
#include <cstdio>
#include <unistd.h>

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

TEST(Executor, DevicesHaveNamesAndTheCpuIsTheDefault) {
  EXPECT_STREQ(deviceName(Device::kCpu), "cpu");
  EXPECT_STREQ(deviceName(Device::kCuda), "cuda");
  EXPECT_EQ(parseDevice("cpu"), Device::kCpu);
  EXPECT_EQ(parseDevice("cuda"), Device::kCuda);
  EXPECT_FALSE(parseDevice("gpu").has_value());
  EXPECT_FALSE(parseDevice("").has_value());
  EXPECT_TRUE(deviceBuiltIn(Device::kCpu));
  Executor exec;
  EXPECT_EQ(exec.device(), Device::kCpu);
  EXPECT_TRUE(exec.setDevice(Device::kCpu).isOk());
  EXPECT_EQ(exec.device(), Device::kCpu);
}

// This binary never links the CUDA backend (runtime-CudaKernelsTest does):
// asking for it is a clear kUnsupported, and the executor stays usable on
// the CPU.
TEST(Executor, CudaWithoutTheBackendIsAClearError) {
  EXPECT_FALSE(deviceBuiltIn(Device::kCuda));
  Executor exec;
  EXPECT_ERROR(exec.setDevice(Device::kCuda), kUnsupported,
               "this build has no cuda backend (configure with "
               "-DCOLOSSAL_ENABLE_CUDA=ON");
  EXPECT_EQ(exec.device(), Device::kCpu);
  Plan plan = makeTestPlan();
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(exec.loadWeights(testWeights()).isOk());
  SafetensorsFile out;
  ASSERT_TRUE(exec.run(testInputs(), out).isOk());
  expectTestOutputs(out);
}

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

//===----------------------------------------------------------------------===//
// Training plans (makeTrainingPlan: t ~ w x + b, mean squared error, SGD)
//===----------------------------------------------------------------------===//

namespace {

/// The data of the worked example: x = 1..4, t = 2x + 1, one column.
SafetensorsFile regressionBatch(std::vector<float> x = {1, 2, 3, 4}) {
  std::vector<float> t;
  for (float v : x)
    t.push_back(2 * v + 1);
  int64_t rows = static_cast<int64_t>(x.size());
  SafetensorsFile batch;
  batch.tensors.emplace_back("x", f32Tensor({rows, 1}, x));
  batch.tensors.emplace_back("t", f32Tensor({rows, 1}, t));
  return batch;
}

SafetensorsFile regressionWeights(float w, float b) {
  SafetensorsFile weights;
  weights.tensors.emplace_back("w", f32Tensor({1}, {w}));
  weights.tensors.emplace_back("b", f32Tensor({1}, {b}));
  return weights;
}

float weightValue(const CpuExecutor &exec, BindingRole role,
                  const std::string &name) {
  HostTensor t;
  Status st = exec.readBinding(role, name, t);
  EXPECT_TRUE(st.isOk()) << st.toString();
  return t.bytes.size() >= 4 ? t.as<float>()[0] : std::nanf("");
}

std::vector<uint8_t> fileBytes(const std::string &path) {
  std::vector<uint8_t> bytes;
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    return bytes;
  int c;
  while ((c = std::fgetc(f)) != EOF)
    bytes.push_back(static_cast<uint8_t>(c));
  std::fclose(f);
  return bytes;
}

std::string tempPath(const std::string &name) {
  return ::testing::TempDir() + "executor-test-" + std::to_string(::getpid()) +
         "-" + name;
}

} // namespace

TEST(CpuExecutor, StatesStartAtZero) {
  Plan plan = makeTrainingPlan();
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  EXPECT_EQ(weightValue(exec, BindingRole::kState, "grad.w"), 0.0f);
  EXPECT_EQ(weightValue(exec, BindingRole::kState, "grad.b"), 0.0f);
  // prepare() again after a step starts the states over.
  ASSERT_TRUE(exec.loadWeights(regressionWeights(0.5f, 0)).isOk());
  SafetensorsFile out;
  ASSERT_TRUE(exec.runProgram("micro_step", regressionBatch(), out).isOk());
  EXPECT_NE(weightValue(exec, BindingRole::kState, "grad.w"), 0.0f);
  ASSERT_TRUE(exec.prepare(plan).isOk());
  EXPECT_EQ(weightValue(exec, BindingRole::kState, "grad.w"), 0.0f);
}

TEST(CpuExecutor, TrainingLossDecreasesAsWorkedOutByHand) {
  Plan plan = makeTrainingPlan();
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(exec.loadWeights(regressionWeights(0.5f, 0)).isOk());

  // Step 0, w = 0.5, b = 0, x = 1..4, t = 2x + 1 = 3, 5, 7, 9:
  //   d = 0.5x - t = -2.5, -4, -5.5, -7
  //   loss = (6.25 + 16 + 30.25 + 49) / 4 = 25.375
  //   dloss/dw = 2 sum(d x) / 4 = 2 (-55) / 4 = -27.5
  //   dloss/db = 2 sum(d) / 4 = 2 (-19) / 4 = -9.5
  //   grad_norm = sqrt(27.5^2 + 9.5^2) = sqrt(846.5)
  //   w = 0.5 + 27.5 / 16 = 2.21875, b = 0 + 9.5 / 16 = 0.59375
  // Every number is exact in f32.
  TrainStepStats stats;
  SafetensorsFile grads;
  Status st = exec.trainStep(0, regressionBatch(), stats, &grads);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(stats.loss, 25.375);
  EXPECT_EQ(stats.countTotal, 4.0);
  EXPECT_EQ(stats.microSteps, 1);
  ASSERT_TRUE(stats.lr && stats.gradNorm);
  EXPECT_EQ(*stats.lr, 0.0625);
  EXPECT_NEAR(*stats.gradNorm, std::sqrt(846.5), 1e-5);
  EXPECT_EQ(weightValue(exec, BindingRole::kWeight, "w"), 2.21875f);
  EXPECT_EQ(weightValue(exec, BindingRole::kWeight, "b"), 0.59375f);
  // apply_step zeroed the accumulated gradients.
  EXPECT_EQ(weightValue(exec, BindingRole::kState, "grad.w"), 0.0f);
  // The dumped gradients are the mean gradients, before the update.
  ASSERT_EQ(grads.tensors.size(), 2u);
  EXPECT_EQ(grads.tensors[0].first, "w");
  EXPECT_EQ(values(grads.tensors[0].second), (std::vector<float>{-27.5f}));
  EXPECT_EQ(grads.tensors[1].first, "b");
  EXPECT_EQ(values(grads.tensors[1].second), (std::vector<float>{-9.5f}));

  // Step 1: d = 2.21875x + 0.59375 - t = -0.1875, 0.03125, 0.25, 0.46875
  //   loss = (0.03515625 + 0.0009765625 + 0.0625 + 0.2197265625) / 4
  //        = 0.07958984375 (exact)
  ASSERT_TRUE(exec.trainStep(1, regressionBatch(), stats).isOk());
  EXPECT_EQ(stats.loss, 0.07958984375);

  // Further steps follow gradient descent in double to within f32 rounding,
  // and the loss keeps decreasing (lr = 1/16 < 2 / the largest Hessian
  // eigenvalue, 16.7).
  double w =
      2.21875 -
      0.0625 * (2 * (-0.1875 + 2 * 0.03125 + 3 * 0.25 + 4 * 0.46875) / 4);
  double b = 0.59375 - 0.0625 * (2 * (-0.1875 + 0.03125 + 0.25 + 0.46875) / 4);
  double previous = stats.loss;
  for (uint64_t k = 2; k < 30; ++k) {
    double loss = 0, gw = 0, gb = 0;
    for (double x = 1; x <= 4; ++x) {
      double d = w * x + b - (2 * x + 1);
      loss += d * d / 4;
      gw += 2 * d * x / 4;
      gb += 2 * d / 4;
    }
    ASSERT_TRUE(exec.trainStep(k, regressionBatch(), stats).isOk());
    EXPECT_NEAR(stats.loss, loss, 1e-5 * loss + 1e-9) << "step " << k;
    EXPECT_LT(stats.loss, previous) << "step " << k;
    previous = stats.loss;
    w -= 0.0625 * gw;
    b -= 0.0625 * gb;
  }
  EXPECT_NEAR(weightValue(exec, BindingRole::kWeight, "w"), w, 1e-4);
  EXPECT_NEAR(weightValue(exec, BindingRole::kWeight, "b"), b, 1e-4);
}

TEST(CpuExecutor, GradAccumulationEqualsOneLargerMicroBatch) {
  // Two micro-batches of 2 rows against one of 4: the same update, bit for
  // bit (every value of the example is exact), and the same step loss.
  TrainingPlanOptions half;
  half.rows = 2;
  Plan small = makeTrainingPlan(half), large = makeTrainingPlan();
  CpuExecutor a, b;
  ASSERT_TRUE(a.prepare(small).isOk());
  ASSERT_TRUE(b.prepare(large).isOk());
  ASSERT_TRUE(a.loadWeights(regressionWeights(0.5f, 0)).isOk());
  ASSERT_TRUE(b.loadWeights(regressionWeights(0.5f, 0)).isOk());
  TrainStepStats sa, sb;
  SafetensorsFile ga, gb;
  ASSERT_TRUE(a.trainStep(0, regressionBatch(), sa, &ga).isOk());
  ASSERT_TRUE(b.trainStep(0, regressionBatch(), sb, &gb).isOk());
  EXPECT_EQ(sa.microSteps, 2);
  EXPECT_EQ(sb.microSteps, 1);
  EXPECT_EQ(sa.countTotal, 4.0);
  EXPECT_EQ(sa.loss, sb.loss);
  EXPECT_EQ(sa.loss, 25.375);
  EXPECT_EQ(*sa.gradNorm, *sb.gradNorm);
  EXPECT_EQ(values(ga.tensors[0].second), values(gb.tensors[0].second));
  EXPECT_EQ(values(ga.tensors[1].second), values(gb.tensors[1].second));
  EXPECT_EQ(weightValue(a, BindingRole::kWeight, "w"),
            weightValue(b, BindingRole::kWeight, "w"));
  EXPECT_EQ(weightValue(a, BindingRole::kWeight, "b"),
            weightValue(b, BindingRole::kWeight, "b"));
  // A batch of 8 rows is four micro-batches of 2, or two of 4.
  SafetensorsFile eight = regressionBatch({1, 2, 3, 4, 4, 3, 2, 1});
  ASSERT_TRUE(a.trainStep(1, eight, sa).isOk());
  ASSERT_TRUE(b.trainStep(1, eight, sb).isOk());
  EXPECT_EQ(sa.microSteps, 4);
  EXPECT_EQ(sb.microSteps, 2);
  EXPECT_EQ(sa.countTotal, 8.0);
  EXPECT_NEAR(sa.loss, sb.loss, 1e-6 * sb.loss);
  EXPECT_NEAR(weightValue(a, BindingRole::kWeight, "w"),
              weightValue(b, BindingRole::kWeight, "w"), 1e-6);
}

TEST(CpuExecutor, TrainStepRejectsBadBatches) {
  TrainingPlanOptions half;
  half.rows = 2;
  Plan plan = makeTrainingPlan(half);
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(exec.loadWeights(regressionWeights(0.5f, 0)).isOk());
  TrainStepStats stats;
  EXPECT_ERROR(exec.trainStep(0, regressionBatch({1, 2, 3}), stats),
               kInvalidArgument,
               "batch input 'x' is 3x1xf32, expected the micro-batch 2x1xf32 "
               "with dim 0 multiplied by the number of micro-batches");
  SafetensorsFile mixed = regressionBatch({1, 2, 3, 4});
  mixed.tensors[1].second = f32Tensor({6, 1}, {1, 2, 3, 4, 5, 6});
  EXPECT_ERROR(exec.trainStep(0, mixed, stats), kInvalidArgument,
               "batch input 't' holds 3 micro-batches, the others 2");
  SafetensorsFile missing = regressionBatch();
  missing.tensors.pop_back();
  EXPECT_ERROR(exec.trainStep(0, missing, stats), kInvalidArgument,
               "missing batch input 't' (micro-batch 2x1xf32)");
  SafetensorsFile extra = regressionBatch();
  extra.tensors.emplace_back("__step", HostTensor(TensorType{DType::kI64, {}}));
  EXPECT_ERROR(exec.trainStep(0, extra, stats), kInvalidArgument,
               "unexpected batch input '__step' (micro_step does not read it)");
  // Nothing was applied by the failed steps.
  EXPECT_EQ(weightValue(exec, BindingRole::kWeight, "w"), 0.5f);

  CpuExecutor forward;
  Plan fwd = makeTestPlan();
  ASSERT_TRUE(forward.prepare(fwd).isOk());
  EXPECT_ERROR(forward.trainStep(0, testInputs(), stats), kInvalidArgument,
               "the plan is not a training plan");
}

TEST(CpuExecutor, RunProgramTakesEachProgramsInputs) {
  Plan plan = makeTrainingPlan();
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(exec.loadWeights(regressionWeights(0.5f, 0)).isOk());
  SafetensorsFile out;
  EXPECT_ERROR(exec.run(regressionBatch(), out), kInvalidArgument,
               "the plan has 2 programs (micro_step, apply_step); run one by "
               "name");
  EXPECT_ERROR(exec.runProgram("forward", regressionBatch(), out),
               kInvalidArgument,
               "the plan has no program 'forward' (it has micro_step, "
               "apply_step)");
  // The reserved names may be given to a program that does not read them.
  SafetensorsFile in = regressionBatch();
  HostTensor step(TensorType{DType::kI64, {}});
  HostTensor total(TensorType{DType::kF32, {}});
  total.as<float>()[0] = 4;
  in.tensors.emplace_back("__step", step);
  in.tensors.emplace_back("__count_total", total);
  Status st = exec.runProgram("micro_step", in, out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].first, "loss");
  EXPECT_EQ(values(out.tensors[0].second), (std::vector<float>{25.375f}));
  EXPECT_EQ(out.tensors[1].first, "__count");
  EXPECT_EQ(values(out.tensors[1].second), (std::vector<float>{4}));
  // But other names are still checked, per program.
  EXPECT_ERROR(exec.runProgram("apply_step", in, out), kInvalidArgument,
               "unexpected input 'x' (program 'apply_step' reads: "
               "__count_total, __step)");
  SafetensorsFile applyIn;
  applyIn.tensors.emplace_back("__step", step);
  EXPECT_ERROR(exec.runProgram("apply_step", applyIn, out), kInvalidArgument,
               "missing input '__count_total' (expected f32)");
  applyIn.tensors.emplace_back("__count_total", total);
  st = exec.runProgram("apply_step", applyIn, out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].first, "lr");
  EXPECT_EQ(out.tensors[1].first, "grad_norm");
  EXPECT_EQ(weightValue(exec, BindingRole::kWeight, "w"), 2.21875f);
}

TEST(CpuExecutor, RunsAForwardProgramByName) {
  Plan plan = makeTestPlan();
  plan.programs.push_back(PlanProgram{"forward", 0, 5});
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  SafetensorsFile out;
  ASSERT_TRUE(exec.run(testInputs(), out).isOk());
  expectTestOutputs(out);
  ASSERT_TRUE(exec.runProgram("forward", testInputs(), out).isOk());
  expectTestOutputs(out);
  // A 1.0 plan (no programs) has an implicit forward too.
  Plan old = makeTestPlan();
  ASSERT_TRUE(exec.prepare(old).isOk());
  ASSERT_TRUE(exec.runProgram("forward", testInputs(), out).isOk());
  expectTestOutputs(out);
}

TEST(CpuExecutor, ReadsAndWritesBindingsByName) {
  Plan plan = makeTrainingPlan();
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(
      exec.writeBinding(BindingRole::kWeight, "w", f32Tensor({1}, {3.5f}))
          .isOk());
  EXPECT_EQ(weightValue(exec, BindingRole::kWeight, "w"), 3.5f);
  TensorRef ref;
  ASSERT_TRUE(exec.bindingTensor(BindingRole::kState, "grad.b", ref).isOk());
  EXPECT_EQ(ref.type, (TensorType{DType::kF32, {1}}));
  HostTensor t;
  EXPECT_ERROR(exec.readBinding(BindingRole::kWeight, "grad.w", t), kNotFound,
               "the plan has no weight 'grad.w'");
  EXPECT_ERROR(
      exec.writeBinding(BindingRole::kWeight, "w", f32Tensor({2}, {1, 2})),
      kInvalidArgument, "weight 'w': the plan expects 1xf32, got 2xf32");
}

TEST(CpuExecutor, CheckpointRoundTripAndResumeAreBitwise) {
  // Data that changes per step (four batches, step k takes k % 4), so that
  // a resume from the wrong step would show.
  auto batchFor = [](uint64_t k) {
    float s = static_cast<float>(k % 4);
    return regressionBatch({1 + s, 2 - s / 2, 3 + s / 4, 4});
  };
  TrainingPlanOptions half;
  half.rows = 2; // two micro-steps per step
  Plan plan = makeTrainingPlan(half);
  std::string full = tempPath("full.ckpt"), first = tempPath("first.ckpt"),
              resumed = tempPath("resumed.ckpt");

  CpuExecutor uninterrupted;
  ASSERT_TRUE(uninterrupted.prepare(plan).isOk());
  ASSERT_TRUE(uninterrupted.initWeights(7).isOk());
  TrainStepStats stats;
  std::vector<double> losses;
  for (uint64_t k = 0; k < 6; ++k) {
    ASSERT_TRUE(uninterrupted.trainStep(k, batchFor(k), stats).isOk());
    losses.push_back(stats.loss);
  }
  ASSERT_TRUE(uninterrupted.saveCheckpoint(full, 6).isOk());

  CpuExecutor before;
  ASSERT_TRUE(before.prepare(plan).isOk());
  ASSERT_TRUE(before.initWeights(7).isOk());
  for (uint64_t k = 0; k < 3; ++k)
    ASSERT_TRUE(before.trainStep(k, batchFor(k), stats).isOk());
  ASSERT_TRUE(before.saveCheckpoint(first, 3).isOk());

  CpuExecutor after;
  ASSERT_TRUE(after.prepare(plan).isOk());
  uint64_t step = 0;
  std::string config;
  Status st = after.loadCheckpoint(first, &step, &config);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(step, 3u);
  EXPECT_EQ(config, plan.trainConfig);
  for (uint64_t k = step; k < 6; ++k) {
    ASSERT_TRUE(after.trainStep(k, batchFor(k), stats).isOk());
    EXPECT_EQ(stats.loss, losses[k]) << "step " << k;
  }
  ASSERT_TRUE(after.saveCheckpoint(resumed, 6).isOk());
  std::vector<uint8_t> a = fileBytes(full), b = fileBytes(resumed);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);

  // The file: every weight and state under its name, and the metadata.
  SafetensorsFile ckpt;
  ASSERT_TRUE(readSafetensorsFile(full, ckpt).isOk());
  ASSERT_EQ(ckpt.tensors.size(), 4u);
  EXPECT_EQ(ckpt.tensors[0].first, "w");
  EXPECT_EQ(ckpt.tensors[1].first, "b");
  EXPECT_EQ(ckpt.tensors[2].first, "grad.w");
  EXPECT_EQ(ckpt.tensors[3].first, "grad.b");
  EXPECT_EQ(ckpt.metadata["format"], "colossal-checkpoint");
  EXPECT_EQ(ckpt.metadata["step"], "6");
  EXPECT_EQ(ckpt.metadata["plan_fingerprint"], planFingerprint(plan));
  EXPECT_EQ(ckpt.metadata["train_config"], plan.trainConfig);
  for (const std::string &path : {full, first, resumed})
    std::remove(path.c_str());
}

TEST(CpuExecutor, LoadCheckpointChecksEverythingFirst) {
  Plan plan = makeTrainingPlan();
  std::string good = tempPath("good.ckpt"), bad = tempPath("bad.ckpt");
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(exec.loadWeights(regressionWeights(0.25f, 1)).isOk());
  ASSERT_TRUE(exec.saveCheckpoint(good, 12).isOk());
  SafetensorsFile base;
  ASSERT_TRUE(readSafetensorsFile(good, base).isOk());

  CpuExecutor fresh;
  ASSERT_TRUE(fresh.prepare(plan).isOk());
  uint64_t step = 99;
  auto expectRejected = [&](const SafetensorsFile &file,
                            const std::string &message) {
    ASSERT_TRUE(writeSafetensorsFile(file, bad).isOk());
    Status st = fresh.loadCheckpoint(bad, &step);
    EXPECT_FALSE(st.isOk());
    EXPECT_TRUE(contains(st.message(), bad + ": " + message))
        << "message: " << st.message() << "\nexpected part: " << message;
    EXPECT_EQ(step, 99u);
    // Nothing was restored.
    HostTensor w;
    ASSERT_TRUE(fresh.readBinding(BindingRole::kWeight, "w", w).isOk());
    EXPECT_EQ(w.as<float>()[0], 0.0f);
  };
  SafetensorsFile f = base;
  f.metadata["format"] = "pt";
  expectRejected(f, "not a colossal checkpoint (metadata \"format\" is "
                    "\"pt\", expected \"colossal-checkpoint\")");
  f = base;
  f.metadata.erase("step");
  expectRejected(f, "metadata \"step\" is missing, expected a decimal step "
                    "count");
  f = base;
  f.metadata["step"] = "12x";
  expectRejected(f, "metadata \"step\" is \"12x\"");
  f = base;
  f.tensors.erase(f.tensors.begin() + 3);
  expectRejected(f, "state 'grad.b' (1xf32) is not in the checkpoint");
  f = base;
  f.tensors[0].second = f32Tensor({2}, {1, 2});
  expectRejected(f, "weight 'w': the plan expects 1xf32, the checkpoint has "
                    "2xf32");
  f = base;
  f.tensors[1].second = HostTensor(TensorType{DType::kBF16, {1}});
  expectRejected(f, "weight 'b': the plan expects 1xf32, the checkpoint has "
                    "1xbf16");
  f = base;
  f.tensors.emplace_back("adam.m.w", f32Tensor({1}, {0}));
  expectRejected(f, "tensor 'adam.m.w' is not a weight or state of this plan");
  f = base;
  f.metadata["plan_fingerprint"] = "0123456789abcdef";
  expectRejected(f, "was saved from another plan (fingerprint "
                    "0123456789abcdef, this plan's is " +
                        planFingerprint(plan) +
                        "): the tensors match, the computation differs");

  // A plan with the same weights and states but another computation: the
  // fingerprint tells them apart.
  TrainingPlanOptions other;
  other.lr = 0.5; // a constant: not part of the fingerprint...
  EXPECT_EQ(planFingerprint(makeTrainingPlan(other)), planFingerprint(plan));
  other.rows = 2; // ...but input shapes are
  EXPECT_NE(planFingerprint(makeTrainingPlan(other)), planFingerprint(plan));
  Plan extraInstr = makeTrainingPlan();
  extraInstr.instrs[5].attrs = Attrs(OpKind::Identity); // instruction kinds too
  EXPECT_NE(planFingerprint(extraInstr), planFingerprint(plan));

  Status st = fresh.loadCheckpoint(good, &step);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(step, 12u);
  EXPECT_EQ(weightValue(fresh, BindingRole::kWeight, "w"), 0.25f);
  EXPECT_EQ(weightValue(fresh, BindingRole::kWeight, "b"), 1.0f);
  EXPECT_FALSE(fresh.loadCheckpoint(tempPath("missing.ckpt"), &step).isOk());
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

//===----------------------------------------------------------------------===//
// initWeights
//===----------------------------------------------------------------------===//

namespace {

/// A forward plan whose only content is weights with init rules.
Plan makeInitPlan(DType dtype, int64_t n, InitKind init, double scale) {
  PlanBuilder pb;
  uint32_t w = pb.tensor("layer.weight", dtype, {n});
  uint32_t y = pb.tensor("y", dtype, {n});
  PlanBinding &bw = pb.bind(BindingRole::kWeight, "layer.weight", w);
  bw.init = init;
  bw.initScale = scale;
  pb.instr(Attrs(OpKind::Identity), {w}, {y});
  pb.bind(BindingRole::kOutput, "y", y);
  return pb.finish();
}

std::vector<uint8_t> initBytes(const Plan &plan, uint64_t seed) {
  CpuExecutor exec;
  EXPECT_TRUE(exec.prepare(plan).isOk());
  Status st = exec.initWeights(seed);
  EXPECT_TRUE(st.isOk()) << st.toString();
  HostTensor t;
  EXPECT_TRUE(exec.readBinding(BindingRole::kWeight, "layer.weight", t).isOk());
  return t.bytes;
}

} // namespace

TEST(CpuExecutor, InitWeightsIsDeterministic) {
  Plan plan = makeInitPlan(DType::kF32, 1001, InitKind::kNormal, 0.02);
  std::vector<uint8_t> a = initBytes(plan, 1234), b = initBytes(plan, 1234);
  EXPECT_EQ(a, b);
  EXPECT_NE(initBytes(plan, 1235), a);
  // Keyed by name: another weight name gives another stream.
  Plan renamed = plan;
  renamed.bindings[0].name = "other.weight";
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(renamed).isOk());
  ASSERT_TRUE(exec.initWeights(1234).isOk());
  HostTensor t;
  ASSERT_TRUE(exec.readBinding(BindingRole::kWeight, "other.weight", t).isOk());
  EXPECT_NE(t.bytes, a);
}

TEST(CpuExecutor, InitWeightsGivesTheDocumentedValues) {
  // Pinned values: the generator is part of the documented behaviour (the
  // same seed gives the same weights on every platform). Seed 0, weight
  // "layer.weight", N(0, 1): these are the f32 bit patterns of its first
  // four values, checked against an independent implementation of the
  // algorithm in docs/colossal-run.md (Python floats and math.log; the two
  // agreed on all of 200000 values when this test was written).
  Plan plan = makeInitPlan(DType::kF32, 4, InitKind::kNormal, 1.0);
  std::vector<uint8_t> bytes = initBytes(plan, 0);
  ASSERT_EQ(bytes.size(), 16u);
  uint32_t bits[4];
  std::memcpy(bits, bytes.data(), 16);
  // -0.08333431870306583, 0.01629589846513737, 0.4166314351580948,
  // -1.3109468664982855 before rounding to f32.
  EXPECT_EQ(bits[0], 0xbdaaab2fu);
  EXPECT_EQ(bits[1], 0x3c857efau);
  EXPECT_EQ(bits[2], 0x3ed550b7u);
  EXPECT_EQ(bits[3], 0xbfa7cd1bu);
}

TEST(CpuExecutor, InitWeightsFollowsEachRule) {
  // N(0, 0.02^2) over 20000 samples: mean and standard deviation.
  Plan plan = makeInitPlan(DType::kF32, 20000, InitKind::kNormal, 0.02);
  std::vector<uint8_t> bytes = initBytes(plan, 42);
  const float *v = reinterpret_cast<const float *>(bytes.data());
  double sum = 0, sumSq = 0;
  for (int i = 0; i < 20000; ++i) {
    sum += v[i];
    sumSq += double(v[i]) * v[i];
  }
  double mean = sum / 20000, stddev = std::sqrt(sumSq / 20000 - mean * mean);
  EXPECT_LT(std::fabs(mean), 4 * 0.02 / std::sqrt(20000.0));
  EXPECT_NEAR(stddev, 0.02, 0.02 * 0.03);

  // bf16 weights get the same normals, rounded.
  Plan bf = makeInitPlan(DType::kBF16, 20000, InitKind::kNormal, 0.02);
  std::vector<uint8_t> bfBytes = initBytes(bf, 42);
  const uint16_t *h = reinterpret_cast<const uint16_t *>(bfBytes.data());
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(h[i], f32ToBf16(v[i])) << i;

  std::vector<uint8_t> ones =
      initBytes(makeInitPlan(DType::kF32, 3, InitKind::kOnes, 0), 5);
  EXPECT_EQ(ones, f32Bytes({1, 1, 1}));
  std::vector<uint8_t> zeros =
      initBytes(makeInitPlan(DType::kF32, 3, InitKind::kZeros, 0), 5);
  EXPECT_EQ(zeros, f32Bytes({0, 0, 0}));
}

TEST(CpuExecutor, InitWeightsNeedsARuleForEveryWeight) {
  Plan plan = makeTrainingPlan();
  plan.bindings[1].init = InitKind::kNone; // b
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(plan).isOk());
  EXPECT_ERROR(exec.initWeights(0), kInvalidArgument,
               "weight 'b' has no init rule; give --weights FILE");
  // Nothing was written, and the weights do not count as loaded.
  EXPECT_EQ(weightValue(exec, BindingRole::kWeight, "w"), 0.0f);
  SafetensorsFile out;
  EXPECT_ERROR(exec.runProgram("micro_step", regressionBatch(), out),
               kInvalidArgument, "none were loaded");
}
