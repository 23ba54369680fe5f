//===- MemoryTimelineTest.cpp - Live bytes per instruction, without IR ----===//

#include "colossal/Analysis/MemoryTimeline.h"
#include "colossal/Analysis/OffsetPacker.h"

#include <gtest/gtest.h>

#include <random>

using namespace mlir::colossal;

namespace {

uint64_t at(const SpaceTimeline &t, TensorClass c, uint32_t i) {
  return t.bytesByClass[static_cast<size_t>(c)][i];
}
uint64_t peakOf(const SpaceTimeline &t, TensorClass c) {
  return t.peakByClass[static_cast<size_t>(c)];
}

TEST(MemoryTimeline, EmptyPlan) {
  MemoryTimeline t = computeMemoryTimeline({}, 0);
  EXPECT_EQ(t.numInstructions, 0u);
  EXPECT_EQ(t[Space::Device].peakBytes, 0u);
  EXPECT_TRUE(t[Space::Device].totalBytes.empty());
}

TEST(MemoryTimeline, SumsPerClassAndSpace) {
  // Six instructions; the backward starts at 2.
  //   weights     100 B  [0, 5]  device
  //   gradients    50 B  [0, 5]  device
  //   activation   30 B  [1, 3]  device: defined at 1 < 2, used at 3 >= 2
  //                              -> saved for backward
  //   activation   20 B  [2, 2]  device: defined at 2 -> temporary
  //   adam state   40 B  [0, 5]  host
  // Device totals: 150, 180 (+30), 200 (+20), 180, 150, 150 -> peak 200 at 2.
  std::optional<uint32_t> bwd = 2;
  std::vector<TimelineBuffer> buffers = {
      {100, Space::Device, 0, 5, TensorClass::Weights},
      {50, Space::Device, 0, 5, classifyState("grad.w")},
      {30, Space::Device, 1, 3, classifyActivation(1, 3, bwd)},
      {20, Space::Device, 2, 2, classifyActivation(2, 2, bwd)},
      {40, Space::Host, 0, 5, classifyState("adam.m.w")},
  };
  MemoryTimeline t = computeMemoryTimeline(buffers, 6);
  ASSERT_EQ(t.numInstructions, 6u);
  const SpaceTimeline &dev = t[Space::Device];
  EXPECT_EQ(dev.totalBytes,
            (std::vector<uint64_t>{150, 180, 200, 180, 150, 150}));
  EXPECT_EQ(dev.peakBytes, 200u);
  EXPECT_EQ(dev.peakInstruction, 2u);
  EXPECT_EQ(peakOf(dev, TensorClass::Weights), 100u);
  EXPECT_EQ(peakOf(dev, TensorClass::Gradients), 50u);
  EXPECT_EQ(peakOf(dev, TensorClass::SavedActivations), 30u);
  EXPECT_EQ(peakOf(dev, TensorClass::Temporaries), 20u);
  EXPECT_EQ(peakOf(dev, TensorClass::OptimizerState), 0u);  // it is on the host
  EXPECT_EQ(at(dev, TensorClass::SavedActivations, 4), 0u); // dead after 3

  const SpaceTimeline &host = t[Space::Host];
  EXPECT_EQ(host.peakBytes, 40u);
  EXPECT_EQ(host.peakInstruction, 0u); // flat: the first instruction
  EXPECT_EQ(peakOf(host, TensorClass::OptimizerState), 40u);
}

TEST(MemoryTimeline, FirstPeakWinsATie) {
  // 10 B at [0, 0] and 10 B at [3, 3]: both instructions hold 10.
  MemoryTimeline t = computeMemoryTimeline(
      {{10, Space::Device, 3, 3, TensorClass::Temporaries},
       {10, Space::Device, 0, 0, TensorClass::Temporaries}},
      4);
  EXPECT_EQ(t[Space::Device].peakInstruction, 0u);
  EXPECT_EQ(t[Space::Device].peakBytes, 10u);
}

TEST(MemoryTimeline, StretchesToTheLastUseAndSkipsEmptyBuffers) {
  // A plan with no instructions keeps its buffers at instruction 0; a live
  // range past the count stretches the timeline. Zero-size buffers count
  // nothing.
  MemoryTimeline t = computeMemoryTimeline(
      {{8, Space::Device, 0, 0, TensorClass::InputsOutputs},
       {0, Space::Device, 0, 0, TensorClass::Temporaries}},
      0);
  EXPECT_EQ(t.numInstructions, 1u);
  EXPECT_EQ(t[Space::Device].peakBytes, 8u);

  t = computeMemoryTimeline({{8, Space::Device, 2, 6, TensorClass::Constants}},
                            4);
  EXPECT_EQ(t.numInstructions, 7u);
  EXPECT_EQ(t[Space::Device].totalBytes[6], 8u);
  EXPECT_EQ(t[Space::Device].totalBytes[1], 0u);
}

TEST(MemoryTimeline, Classification) {
  EXPECT_EQ(classifyState("grad.model.w"), TensorClass::Gradients);
  EXPECT_EQ(classifyState("adam.v.model.w"), TensorClass::OptimizerState);
  EXPECT_EQ(classifyState("sgd.momentum.w"), TensorClass::OptimizerState);
  EXPECT_EQ(classifyState("gradient_scale"), TensorClass::OptimizerState);
  // Backward starts at 10.
  EXPECT_EQ(classifyActivation(3, 10, 10u), TensorClass::SavedActivations);
  EXPECT_EQ(classifyActivation(3, 9, 10u), TensorClass::Temporaries);
  EXPECT_EQ(classifyActivation(10, 12, 10u), TensorClass::Temporaries);
  EXPECT_EQ(classifyActivation(3, 12, std::nullopt), TensorClass::Temporaries);
  EXPECT_STREQ(tensorClassKey(TensorClass::SavedActivations),
               "saved_activations");
  EXPECT_STREQ(tensorClassName(TensorClass::OptimizerState), "optimizer state");
}

TEST(MemoryTimeline, DevicePeakEqualsThePackersLowerBound) {
  // The report prints both: they must agree on any input.
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> time(0, 99), size(0, 5000);
  std::vector<TimelineBuffer> buffers;
  std::vector<PackItem> items;
  for (int i = 0; i < 300; ++i) {
    uint32_t a = time(rng), b = time(rng);
    uint64_t bytes = size(rng);
    buffers.push_back({bytes, Space::Device, std::min(a, b), std::max(a, b),
                       static_cast<TensorClass>(i % kNumTensorClasses)});
    items.push_back({bytes, 64, std::min(a, b), std::max(a, b)});
  }
  MemoryTimeline t = computeMemoryTimeline(buffers, 100);
  EXPECT_EQ(t[Space::Device].peakBytes, packIntervals(items).lowerBoundBytes);
  uint64_t sum = 0;
  for (uint64_t b : t[Space::Device].peakByClass)
    sum += b;
  EXPECT_EQ(sum, t[Space::Device].peakBytes);
}

} // namespace
