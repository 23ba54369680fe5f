//===- ColossalRunTest.cpp - The colossal-run tool, end to end ------------===//
//
// Writes the hand-built plans of TestPlans.h, their weights and data to a
// temporary folder, runs the colossal-run binary on them and checks its exit
// code, its output lines and the files it writes: forward mode as before,
// training from --batches and --data, metrics, gradient dumps, checkpoints
// (a resumed run is bitwise identical to an uninterrupted one), weight
// export, random init, and the usage errors.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Executor.h"
#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Safetensors.h"

#include "TestPlans.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace colossal::runtime;
using namespace colossal::runtime::testing;

namespace {

struct Result {
  int code = -1;
  std::string output; ///< stdout and stderr, interleaved
};

Result runTool(const std::string &args) {
  Result r;
  std::string command = std::string(COLOSSAL_RUN_PATH) + " " + args + " 2>&1";
  std::FILE *pipe = ::popen(command.c_str(), "r");
  if (!pipe)
    return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0)
    r.output.append(buf, n);
  int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

std::vector<uint8_t> fileBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> lines(const std::string &text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    out.push_back(line);
  return out;
}

HostTensor f32Tensor(std::vector<int64_t> dims, const std::vector<float> &v) {
  HostTensor t(TensorType{DType::kF32, std::move(dims)});
  t.bytes = f32Bytes(v);
  return t;
}

/// A fresh folder per test, removed with its files at the end.
class ColossalRun : public ::testing::Test {
protected:
  void SetUp() override {
    const ::testing::TestInfo *info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "colossal-run-test-" +
           std::to_string(::getpid()) + "-" + info->name();
    ::mkdir(dir_.c_str(), 0755);
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    (void)std::system(cmd.c_str());
  }
  std::string path(const std::string &name) const { return dir_ + "/" + name; }

  /// The regression plan with micro-batch `rows` and its weights file
  /// (w = 0.5, b = 0) beside it; returns the plan's path.
  std::string writeRegression(int64_t rows, int64_t gradAccum) {
    TrainingPlanOptions o;
    o.rows = rows;
    Plan plan = makeTrainingPlan(o);
    plan.weightsFile = "regression.safetensors";
    plan.trainConfig = "{\"optimizer\": {\"name\": \"sgd\", \"lr\": 0.0625}, "
                       "\"grad_accum\": " +
                       std::to_string(gradAccum) + "}";
    EXPECT_TRUE(writePlanFile(plan, path("regression.cplan")).isOk());
    SafetensorsFile weights;
    weights.tensors.emplace_back("w", f32Tensor({1}, {0.5f}));
    weights.tensors.emplace_back("b", f32Tensor({1}, {0.0f}));
    EXPECT_TRUE(
        writeSafetensorsFile(weights, path("regression.safetensors")).isOk());
    return path("regression.cplan");
  }

  /// Batches x, t of [K, 4, 1]: entry 0 is the worked example (x = 1..4,
  /// t = 2x + 1), entry 1 another sample of the same line.
  std::string writeBatches() {
    SafetensorsFile batches;
    batches.tensors.emplace_back(
        "x", f32Tensor({2, 4, 1}, {1, 2, 3, 4, 0.5f, 1.5f, 2.5f, 3.5f}));
    batches.tensors.emplace_back(
        "t", f32Tensor({2, 4, 1}, {3, 5, 7, 9, 2, 4, 6, 8}));
    EXPECT_TRUE(
        writeSafetensorsFile(batches, path("batches.safetensors")).isOk());
    return path("batches.safetensors");
  }

  /// The token plan ([2, 4] input_ids and labels, vocab 16, weights w and b
  /// by init rule only) and a uint16 or uint32 token stream of `count`
  /// tokens i % 16 (plus `bad` at position 5 when non-zero).
  std::string writeTokenPlan(InitKind initW = InitKind::kNormal) {
    TrainingPlanOptions o;
    o.rows = 2;
    o.cols = 4;
    o.tokens = true;
    o.lr = 1.0 / 256;
    o.initW = initW;
    Plan plan = makeTrainingPlan(o);
    plan.trainConfig = "{\"grad_accum\": 2, \"seq_len\": 4}";
    EXPECT_TRUE(writePlanFile(plan, path("tokens.cplan")).isOk());
    return path("tokens.cplan");
  }
  std::string writeTokens(int bytesPerToken, int count, uint32_t bad = 0) {
    std::vector<uint8_t> bytes;
    for (int i = 0; i < count; ++i) {
      uint32_t v = (i == 5 && bad) ? bad : static_cast<uint32_t>(i % 16);
      for (int b = 0; b < bytesPerToken; ++b)
        bytes.push_back(static_cast<uint8_t>(v >> (8 * b)));
    }
    std::string p = path("tokens" + std::to_string(bytesPerToken) + ".bin");
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    return p;
  }

  std::string dir_;
};

} // namespace

//===----------------------------------------------------------------------===//
// Forward mode
//===----------------------------------------------------------------------===//

TEST_F(ColossalRun, ForwardModeRunsAsBefore) {
  Plan plan = makeTestPlan(/*weightBinding=*/true);
  ASSERT_TRUE(writePlanFile(plan, path("tiny.cplan")).isOk());
  SafetensorsFile weights, inputs;
  weights.tensors.emplace_back("w", f32Tensor({2, 3}, testWeightValues()));
  inputs.tensors.emplace_back("a", f32Tensor({2, 2}, {1, 2, 3, 4}));
  inputs.tensors.emplace_back("b", f32Tensor({2, 2}, {10, 20, 30, 40}));
  ASSERT_TRUE(writeSafetensorsFile(weights, path("tiny.safetensors")).isOk());
  ASSERT_TRUE(writeSafetensorsFile(inputs, path("in.safetensors")).isOk());
  Result r =
      runTool(path("tiny.cplan") + " --inputs " + path("in.safetensors") +
              " --outputs " + path("out.safetensors"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "loss = 66.0000")) << r.output;
  EXPECT_TRUE(contains(r.output, "plan format 1.3, 5 instructions"))
      << r.output;
  SafetensorsFile out;
  ASSERT_TRUE(readSafetensorsFile(path("out.safetensors"), out).isOk());
  EXPECT_EQ(out.tensors.size(), 2u);

  // Training flags are usage errors on a forward plan, as is a missing
  // --outputs.
  r = runTool(path("tiny.cplan") + " --inputs " + path("in.safetensors") +
              " --outputs " + path("o.safetensors") + " --steps 3");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--steps applies to training plans; '" +
                                     path("tiny.cplan") +
                                     "' is a forward plan"))
      << r.output;
  r = runTool(path("tiny.cplan") + " --inputs " + path("in.safetensors"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "no --outputs file given")) << r.output;
}

TEST_F(ColossalRun, CheckPlanReportsEachArena) {
  // The test plan as written fails the binding checks: weight w is live
  // over [0, 1] only (a weight keeps its bytes for the whole run), and
  // output y is read after instruction 4, but its buffer claims to die at 2.
  Plan plan = makeTestPlan(/*weightBinding=*/true);
  SafetensorsFile weights, inputs;
  weights.tensors.emplace_back("w", f32Tensor({2, 3}, testWeightValues()));
  inputs.tensors.emplace_back("a", f32Tensor({2, 2}, {1, 2, 3, 4}));
  inputs.tensors.emplace_back("b", f32Tensor({2, 2}, {10, 20, 30, 40}));
  ASSERT_TRUE(writeSafetensorsFile(weights, path("tiny.safetensors")).isOk());
  ASSERT_TRUE(writeSafetensorsFile(inputs, path("in.safetensors")).isOk());
  auto run = [&](const Plan &p, const std::string &flags) {
    EXPECT_TRUE(writePlanFile(p, path("tiny.cplan")).isOk());
    return runTool(path("tiny.cplan") + " --inputs " + path("in.safetensors") +
                   " --outputs " + path("out.safetensors") + flags);
  };
  Result r = run(plan, " --check-plan");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "colossal-run: error: " + path("tiny.cplan") +
                                     ": check-plan: weight 'w' must be live "
                                     "over every instruction [0, 4], but its "
                                     "buffer 'w' live [0, 1] is not"))
      << r.output;
  plan.buffers[kW].liveEnd = 4;
  r = run(plan, " --check-plan");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "colossal-run: error: " + path("tiny.cplan") +
                                     ": check-plan: output 'y' of program "
                                     "'forward' is read after instruction 4, "
                                     "but its buffer 'y' live [1, 2] is not"))
      << r.output;

  // With y live to the end too, the run is right but the arena
  // over-allocated: its 512 bytes end with 60 that nothing uses (loss, the
  // last buffer, ends at 448 + 4). Live peak: a, b, sum, w at instruction
  // 0, 16 + 16 + 16 + 24 = 72 bytes.
  plan.buffers[kY].liveEnd = 4;
  r = run(plan, " --check-plan");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "loss = 66.0000")) << r.output;
  EXPECT_TRUE(contains(r.output, "check-plan: device arena 512 bytes: touched "
                                 "452, live peak 72 (7.1111x): over-allocated"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "colossal-run: error: check-plan: device "
                                 "arena: the plan allocates 512 bytes, the run "
                                 "touched 452 (over-allocated by 60 bytes)"))
      << r.output;
  // Without --check-plan nothing is checked.
  r = run(plan, "");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "check-plan")) << r.output;

  plan.arenas[0].sizeBytes = 452;
  r = run(plan, " --check-plan");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "loss = 66.0000")) << r.output;
  EXPECT_TRUE(contains(r.output, "check-plan: device arena 452 bytes: touched "
                                 "452, live peak 72 (6.2778x): ok"))
      << r.output;

  r = run(plan, " --check-plan=yes");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--check-plan takes no value")) << r.output;
  r = run(plan, " --check-plan --check-plan");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "--check-plan given twice")) << r.output;
}

TEST_F(ColossalRun, CheckPlanInTrainingMode) {
  // The regression plan with its arena cut to the end of its last buffer;
  // every buffer is live over the whole plan, so the live peak is the sum
  // of their sizes.
  TrainingPlanOptions o;
  o.rows = 2;
  Plan plan = makeTrainingPlan(o);
  plan.weightsFile = "regression.safetensors";
  uint64_t end = 0, sum = 0;
  for (const PlanBuffer &buf : plan.buffers) {
    end = std::max(end, buf.offsetBytes + buf.sizeBytes);
    sum += buf.sizeBytes;
  }
  plan.arenas[0].sizeBytes = end;
  ASSERT_TRUE(writePlanFile(plan, path("regression.cplan")).isOk());
  SafetensorsFile weights;
  weights.tensors.emplace_back("w", f32Tensor({1}, {0.5f}));
  weights.tensors.emplace_back("b", f32Tensor({1}, {0.0f}));
  ASSERT_TRUE(
      writeSafetensorsFile(weights, path("regression.safetensors")).isOk());
  std::string batches = writeBatches();
  Result plain = runTool(path("regression.cplan") + " --batches " + batches +
                         " --steps 4");
  Result r = runTool(path("regression.cplan") + " --batches " + batches +
                     " --steps 4 --check-plan");
  EXPECT_EQ(r.code, 0) << r.output;
  std::string line = "check-plan: device arena " + std::to_string(end) +
                     " bytes: touched " + std::to_string(end) + ", live peak " +
                     std::to_string(sum) + " (";
  EXPECT_TRUE(contains(r.output, line)) << r.output;
  EXPECT_TRUE(contains(r.output, "): ok")) << r.output;
  // The same final loss as the unchecked run.
  std::vector<std::string> a = lines(plain.output), b = lines(r.output);
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(contains(r.output, a.back())) << a.back() << "\n" << r.output;
  EXPECT_TRUE(contains(a.back(), "loss = ")) << a.back();
}

//===----------------------------------------------------------------------===//
// Training from --batches
//===----------------------------------------------------------------------===//

TEST_F(ColossalRun, TrainsFromBatchesWithMetrics) {
  // Micro-batch 2, batches of 4: two micro-steps per step.
  std::string plan = writeRegression(2, 2);
  std::string batches = writeBatches();
  Result r = runTool(plan + " --batches " + batches + " --steps 4 --metrics " +
                     path("m.jsonl"));
  ASSERT_EQ(r.code, 0) << r.output;
  // Not a terminal: one plain line per step (4 <= 50 steps), the summary,
  // and the final loss on stdout. Step 0 is the worked example of
  // ExecutorTest: loss 25.375, grad_norm sqrt(846.5) = 29.0947 (29.0946732
  // after the plan's f32 sqrt).
  EXPECT_TRUE(contains(r.output, "train config {\"optimizer\""));
  EXPECT_TRUE(contains(
      r.output, "step 0/4: loss 25.3750, grad_norm 29.0947, lr 6.250e-02, "))
      << r.output;
  for (const char *step : {"step 1/4: ", "step 2/4: ", "step 3/4: "})
    EXPECT_TRUE(contains(r.output, step)) << step << "\n" << r.output;
  EXPECT_TRUE(contains(r.output, "trained steps 0-3 (4 steps, grad_accum 2, "
                                 "4 tokens/step)"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "\nloss = ")) << r.output;
  EXPECT_FALSE(contains(r.output, "warning")) << r.output;

  std::vector<std::string> metrics;
  std::ifstream in(path("m.jsonl"));
  for (std::string line; std::getline(in, line);)
    metrics.push_back(line);
  ASSERT_EQ(metrics.size(), 4u);
  EXPECT_EQ(metrics[0].rfind("{\"step\": 0, \"loss\": 25.375, \"grad_norm\": "
                             "29.0946732, \"lr\": 0.0625, \"tokens_per_s\": ",
                             0),
            0u)
      << metrics[0];
  EXPECT_TRUE(contains(metrics[0], "\"tokens\": 4, \"scored\": 4, "
                                   "\"micro_steps\": 2, \"step_s\": "))
      << metrics[0];
  EXPECT_EQ(metrics[3].rfind("{\"step\": 3, ", 0), 0u) << metrics[3];
}

TEST_F(ColossalRun, StepsDefaultToOnePassOverTheBatches) {
  std::string plan = writeRegression(4, 1);
  Result r = runTool(plan + " --batches " + writeBatches());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "trained steps 0-1 (2 steps, grad_accum 1"))
      << r.output;
}

TEST_F(ColossalRun, WarnsWhenTheBatchesDisagreeWithTheCompiledGradAccum) {
  std::string plan = writeRegression(2, 4);
  Result r = runTool(plan + " --batches " + writeBatches() + " --steps 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "warning: the plan was compiled for grad_accum 4, the "
                       "batches give 2 micro-batches per step"))
      << r.output;
}

TEST_F(ColossalRun, DumpsTheFirstStepsGradients) {
  std::string plan = writeRegression(2, 2);
  Result r = runTool(plan + " --batches " + writeBatches() +
                     " --steps 2 --dump-grads " + path("grads.safetensors"));
  ASSERT_EQ(r.code, 0) << r.output;
  SafetensorsFile grads;
  ASSERT_TRUE(readSafetensorsFile(path("grads.safetensors"), grads).isOk());
  ASSERT_EQ(grads.tensors.size(), 2u);
  // The mean gradients of the worked example, before the update.
  EXPECT_EQ(grads.tensors[0].first, "w");
  EXPECT_EQ(grads.tensors[0].second.as<float>()[0], -27.5f);
  EXPECT_EQ(grads.tensors[1].first, "b");
  EXPECT_EQ(grads.tensors[1].second.as<float>()[0], -9.5f);
}

TEST_F(ColossalRun, ResumeIsBitwiseIdenticalToAnUninterruptedRun) {
  std::string plan = writeRegression(2, 2);
  std::string batches = writeBatches();
  Result full =
      runTool(plan + " --batches " + batches + " --steps 5 --save " +
              path("full.ckpt") + " --export-weights " +
              path("full.safetensors") + " --metrics " + path("full.jsonl"));
  ASSERT_EQ(full.code, 0) << full.output;
  Result first = runTool(plan + " --batches " + batches + " --steps 2 --save " +
                         path("first.ckpt"));
  ASSERT_EQ(first.code, 0) << first.output;
  Result rest =
      runTool(plan + " --batches " + batches + " --steps 5 --resume " +
              path("first.ckpt") + " --save " + path("rest.ckpt") +
              " --export-weights " + path("rest.safetensors") + " --metrics " +
              path("rest.jsonl"));
  ASSERT_EQ(rest.code, 0) << rest.output;
  EXPECT_TRUE(contains(rest.output, "trained steps 2-4 (3 steps"))
      << rest.output;
  std::vector<uint8_t> a = fileBytes(path("full.ckpt"));
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, fileBytes(path("rest.ckpt")));
  EXPECT_EQ(fileBytes(path("full.safetensors")),
            fileBytes(path("rest.safetensors")));
  // The resumed metrics continue the step count with the same losses.
  std::ifstream fullIn(path("full.jsonl")), restIn(path("rest.jsonl"));
  std::vector<std::string> fullLines, restLines;
  for (std::string l; std::getline(fullIn, l);)
    fullLines.push_back(l.substr(0, l.find("\"tokens_per_s\"")));
  for (std::string l; std::getline(restIn, l);)
    restLines.push_back(l.substr(0, l.find("\"tokens_per_s\"")));
  ASSERT_EQ(fullLines.size(), 5u);
  ASSERT_EQ(restLines.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(restLines[i], fullLines[i + 2]);

  // A checkpoint at or past --steps leaves nothing to do.
  Result none = runTool(plan + " --batches " + batches +
                        " --steps 5 --resume " + path("full.ckpt"));
  EXPECT_EQ(none.code, 2) << none.output;
  EXPECT_TRUE(contains(none.output, "is at step 5; --steps 5 leaves nothing to "
                                    "run (--steps counts from step 0)"))
      << none.output;
  // A checkpoint of another plan is refused, naming what differs.
  TrainingPlanOptions other;
  other.rows = 2;
  Plan otherPlan = makeTrainingPlan(other);
  otherPlan.bindings[0].name = "weight";
  otherPlan.bindings[0].exportName.clear();
  ASSERT_TRUE(writePlanFile(otherPlan, path("other.cplan")).isOk());
  Result wrong = runTool(path("other.cplan") + " --batches " + batches +
                         " --steps 9 --resume " + path("full.ckpt"));
  EXPECT_EQ(wrong.code, 1) << wrong.output;
  EXPECT_TRUE(contains(wrong.output, "full.ckpt: weight 'weight' (1xf32) is "
                                     "not in the checkpoint"))
      << wrong.output;
}

TEST_F(ColossalRun, ExportsWeightsUnderTheirExportNames) {
  std::string plan = writeRegression(4, 1);
  Result r = runTool(plan + " --batches " + writeBatches() +
                     " --steps 1 --export-weights " + path("hf.safetensors"));
  ASSERT_EQ(r.code, 0) << r.output;
  SafetensorsFile exported;
  ASSERT_TRUE(readSafetensorsFile(path("hf.safetensors"), exported).isOk());
  ASSERT_EQ(exported.tensors.size(), 2u);
  EXPECT_EQ(exported.tensors[0].first, "model.w");
  EXPECT_EQ(exported.tensors[0].second.as<float>()[0], 2.21875f);
  EXPECT_EQ(exported.tensors[1].first, "model.b");
  EXPECT_EQ(exported.tensors[1].second.as<float>()[0], 0.59375f);
  EXPECT_EQ(exported.metadata["format"], "pt");
}

TEST_F(ColossalRun, RejectsBadBatchFiles) {
  std::string plan = writeRegression(2, 2);
  SafetensorsFile odd;
  odd.tensors.emplace_back("x", f32Tensor({1, 3, 1}, {1, 2, 3}));
  odd.tensors.emplace_back("t", f32Tensor({1, 3, 1}, {3, 5, 7}));
  ASSERT_TRUE(writeSafetensorsFile(odd, path("odd.safetensors")).isOk());
  Result r = runTool(plan + " --batches " + path("odd.safetensors"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "odd.safetensors: the batch dim of 'x' is 3, "
                                 "not a positive multiple of the compiled "
                                 "micro-batch 2"))
      << r.output;

  SafetensorsFile flat;
  flat.tensors.emplace_back("x", f32Tensor({4, 1}, {1, 2, 3, 4}));
  flat.tensors.emplace_back("t", f32Tensor({4, 1}, {3, 5, 7, 9}));
  ASSERT_TRUE(writeSafetensorsFile(flat, path("flat.safetensors")).isOk());
  r = runTool(plan + " --batches " + path("flat.safetensors"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "'x' is 4x1xf32, expected [K, batch, 1] for "
                                 "the micro-batch 2x1xf32"))
      << r.output;

  SafetensorsFile extra;
  extra.tensors.emplace_back("x", f32Tensor({1, 2, 1}, {1, 2}));
  extra.tensors.emplace_back("t", f32Tensor({1, 2, 1}, {3, 5}));
  extra.tensors.emplace_back("mask", f32Tensor({1, 2, 1}, {1, 1}));
  ASSERT_TRUE(writeSafetensorsFile(extra, path("extra.safetensors")).isOk());
  r = runTool(plan + " --batches " + path("extra.safetensors"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "warning: " + path("extra.safetensors") +
                                     ": ignoring tensors micro_step does not "
                                     "read: 'mask'"))
      << r.output;

  SafetensorsFile typo;
  typo.tensors.emplace_back("x", f32Tensor({1, 2, 1}, {1, 2}));
  typo.tensors.emplace_back("target", f32Tensor({1, 2, 1}, {3, 5}));
  ASSERT_TRUE(writeSafetensorsFile(typo, path("typo.safetensors")).isOk());
  r = runTool(plan + " --batches " + path("typo.safetensors"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "typo.safetensors: missing 't' ([K, batch, "
                                 "1])"))
      << r.output;
}

TEST_F(ColossalRun, AcceptsInt32TokenBatches) {
  std::string plan = writeTokenPlan();
  // [K = 1, batch 4, seq 4] as i32 for the plan's i64 inputs.
  HostTensor ids(TensorType{DType::kI32, {1, 4, 4}});
  for (int i = 0; i < 16; ++i)
    ids.as<int32_t>()[i] = i % 7;
  SafetensorsFile batches;
  batches.tensors.emplace_back("input_ids", ids);
  batches.tensors.emplace_back("labels", ids);
  ASSERT_TRUE(writeSafetensorsFile(batches, path("ids.safetensors")).isOk());
  Result r = runTool(plan + " --batches " + path("ids.safetensors") +
                     " --init random --steps 2");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "grad_accum 2, 16 tokens/step")) << r.output;
}

//===----------------------------------------------------------------------===//
// Training from --data, random init
//===----------------------------------------------------------------------===//

TEST_F(ColossalRun, TrainsFromATokenStream) {
  std::string plan = writeTokenPlan();
  std::string data = writeTokens(2, 100);
  Result r =
      runTool(plan + " --data " + data +
              " --steps 3 --init random --seed 1 --metrics " + path("m.jsonl"));
  ASSERT_EQ(r.code, 0) << r.output;
  // 2 rows x 4 tokens per micro-batch, grad_accum 2 from the train config.
  EXPECT_TRUE(contains(r.output, "trained steps 0-2 (3 steps, grad_accum 2, "
                                 "16 tokens/step)"))
      << r.output;
  // The same seed draws the same windows and weights: same metrics (up to
  // the timings); another seed does not.
  Result again = runTool(plan + " --data " + data +
                         " --steps 3 --init random --seed 1 --metrics " +
                         path("again.jsonl"));
  ASSERT_EQ(again.code, 0) << again.output;
  auto losses = [](const std::string &file) {
    std::ifstream in(file);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);)
      out.push_back(l.substr(0, l.find("\"tokens_per_s\"")));
    return out;
  };
  EXPECT_EQ(losses(path("m.jsonl")), losses(path("again.jsonl")));
  Result other = runTool(plan + " --data " + data +
                         " --steps 3 --init random --seed 2 --metrics " +
                         path("other.jsonl"));
  ASSERT_EQ(other.code, 0) << other.output;
  EXPECT_NE(losses(path("m.jsonl")), losses(path("other.jsonl")));

  // uint32 tokens of the same values train the same way.
  Result wide = runTool(plan + " --data " + writeTokens(4, 100) +
                        " --data-dtype uint32 --steps 3 --init random --seed "
                        "1 --metrics " +
                        path("wide.jsonl"));
  ASSERT_EQ(wide.code, 0) << wide.output;
  EXPECT_EQ(losses(path("m.jsonl")), losses(path("wide.jsonl")));
}

TEST_F(ColossalRun, TokenStreamResumeIsBitwise) {
  std::string plan = writeTokenPlan();
  std::string data = writeTokens(2, 333);
  std::string common = plan + " --data " + data + " --seed 9";
  Result full =
      runTool(common + " --init random --steps 4 --save " + path("full.ckpt"));
  ASSERT_EQ(full.code, 0) << full.output;
  Result first =
      runTool(common + " --init random --steps 1 --save " + path("first.ckpt"));
  ASSERT_EQ(first.code, 0) << first.output;
  Result rest = runTool(common + " --steps 4 --resume " + path("first.ckpt") +
                        " --save " + path("rest.ckpt"));
  ASSERT_EQ(rest.code, 0) << rest.output;
  EXPECT_EQ(fileBytes(path("full.ckpt")), fileBytes(path("rest.ckpt")));
}

TEST_F(ColossalRun, TokenIdsPastTheVocabAreAGatherError) {
  std::string plan = writeTokenPlan();
  // A 9-token stream with token 300 (>= vocab 16) at position 5: four of
  // the six windows of 4 tokens cover it, and seed 0 draws one of them
  // within 5 steps x 4 rows.
  std::string data = writeTokens(2, 9, 300);
  Result r = runTool(plan + " --data " + data + " --steps 5 --init random");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "(gather at node_")) << r.output;
  EXPECT_TRUE(contains(r.output, "300")) << r.output;
}

TEST_F(ColossalRun, RejectsBadTokenStreams) {
  std::string plan = writeTokenPlan();
  std::string odd = path("odd.bin");
  std::ofstream(odd, std::ios::binary).write("abc", 3);
  Result r = runTool(plan + " --data " + odd + " --steps 1 --init random");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "odd.bin: 3 bytes is not a whole number of "
                                 "16-bit tokens"))
      << r.output;
  r = runTool(plan + " --data " + writeTokens(2, 3) +
              " --steps 1 --init random");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "holds 3 tokens, fewer than the compiled "
                                 "sequence length 4"))
      << r.output;
  r = runTool(plan + " --data " + path("missing.bin") +
              " --steps 1 --init random");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "missing.bin: cannot open")) << r.output;
  // The regression plan reads x and t, which a token stream cannot provide.
  std::string regression = writeRegression(2, 1);
  r = runTool(regression + " --data " + writeTokens(2, 50) + " --steps 1");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--data provides input_ids and labels, but "
                                 "micro_step also reads 'x' (use --batches)"))
      << r.output;
}

TEST_F(ColossalRun, RandomInitNeedsAnInitRuleForEveryWeight) {
  std::string plan = writeTokenPlan(InitKind::kNone);
  Result r = runTool(plan + " --data " + writeTokens(2, 50) +
                     " --steps 1 --init random");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "weight 'w' has no init rule; give --weights "
                                 "FILE"))
      << r.output;
  // And without --init random, a plan without a weights file says so.
  r = runTool(plan + " --data " + writeTokens(2, 50) + " --steps 1");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "give --weights FILE or --init random"))
      << r.output;
}

TEST_F(ColossalRun, PrintsAPlainLineEveryFiftiethOfTheRun) {
  std::string plan = writeRegression(4, 1);
  Result r = runTool(plan + " --batches " + writeBatches() + " --steps 100");
  ASSERT_EQ(r.code, 0) << r.output;
  // Steps 0, then every 2 steps (100 / 50): 1, 3, ..., 99.
  int stepLines = 0;
  for (const std::string &line : lines(r.output))
    stepLines += line.rfind("step ", 0) == 0;
  EXPECT_EQ(stepLines, 51) << r.output;
  EXPECT_TRUE(contains(r.output, "step 99/100: ")) << r.output;
  EXPECT_FALSE(contains(r.output, "step 2/100: ")) << r.output;
}

//===----------------------------------------------------------------------===//
// Usage errors (exit 2)
//===----------------------------------------------------------------------===//

TEST_F(ColossalRun, UsageErrorsOfTrainingMode) {
  std::string plan = writeRegression(2, 2);
  std::string batches = writeBatches();
  std::string data = writeTokens(2, 20);
  struct Case {
    std::string args, message;
  };
  std::vector<Case> cases = {
      {"", "a training plan needs --batches FILE or --data FILE"},
      {" --batches " + batches + " --data " + data,
       "--batches and --data exclude each other"},
      {" --inputs " + batches + " --outputs x",
       "is a training plan (micro_step, apply_step): give --batches or "
       "--data, not --inputs/--outputs"},
      {" --data " + data + " --data-dtype uint8 --steps 1",
       "--data-dtype must be uint16 or uint32, got 'uint8'"},
      {" --batches " + batches + " --data-dtype uint32",
       "--data-dtype applies to --data only"},
      {" --data " + data, "--data needs --steps N"},
      {" --batches " + batches + " --steps 0",
       "--steps must be a positive integer, got '0'"},
      {" --batches " + batches + " --steps -3",
       "--steps must be a positive integer, got '-3'"},
      {" --batches " + batches + " --seed x --init random",
       "--seed must be a non-negative integer, got 'x'"},
      {" --batches " + batches + " --seed 3",
       "--seed applies to --init random and --data only"},
      {" --batches " + batches + " --init zeros",
       "--init must be random or file, got 'zeros'"},
      {" --batches " + batches + " --init random --weights w.safetensors",
       "--init random and --weights exclude each other"},
      {" --batches " + batches + " --resume c.ckpt --init random",
       "--resume restores the weights; drop --init random and --weights"},
      {" --batches " + batches + " --steps 1 --steps 2", "--steps given twice"},
      {" --batches", "--batches needs a file name"},
      {" --frobnicate", "unknown option '--frobnicate'"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.args);
    Result r = runTool(plan + c.args);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, c.message)) << r.output;
  }
}

TEST_F(ColossalRun, HelpDescribesTrainingFlags) {
  Result r = runTool("--help");
  EXPECT_EQ(r.code, 0);
  for (const char *flag :
       {"--batches", "--data", "--data-dtype", "--steps", "--init", "--seed",
        "--metrics", "--dump-grads", "--save", "--resume", "--export-weights",
        "--check-plan"})
    EXPECT_TRUE(contains(r.output, flag)) << flag;
}

TEST_F(ColossalRun, ChecksOutputPathsBeforeTraining) {
  std::string plan = writeRegression(4, 1);
  Result r = runTool(plan + " --batches " + writeBatches() + " --save " +
                     path("no/such/dir/c.ckpt"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "c.ckpt: cannot write")) << r.output;
  EXPECT_FALSE(contains(r.output, "step 0/")) << r.output;
}
