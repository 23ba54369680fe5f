//===- RematChoiceTest.cpp - Which buffers to recompute, without IR -------===//

#include "colossal/Analysis/RematChoice.h"

#include <gtest/gtest.h>

using namespace mlir::colossal;

namespace {

/// A candidate for buffer `id` of `size` bytes over the gap (a, z).
RematCandidate cand(int64_t id, uint64_t size, int64_t a, int64_t z,
                    double recomputeS, double offloadS = 1.0) {
  RematCandidate c;
  c.buffer = id;
  c.sizeBytes = size;
  c.gapStart = a;
  c.gapEnd = z;
  c.recomputeS = recomputeS;
  c.offloadS = offloadS;
  return c;
}

// Ten instructions; a 100-byte floor all along, a 300-byte spike at 4..6.
std::vector<RematInterval> baseProfile() {
  return {{100, 0, 9}, {300, 4, 6}};
}

} // namespace

TEST(RematChoice, UnderBudgetChoosesNothing) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({50, 0, 9});
  RematChoice r = chooseRemat(10, live, {cand(2, 50, 0, 9, 1e-6)},
                              {/*budgetBytes=*/450, false});
  EXPECT_TRUE(r.chosen.empty());
  EXPECT_EQ(r.peakBeforeBytes, 450u);
  EXPECT_EQ(r.peakAfterBytes, 450u);
}

TEST(RematChoice, EmptyStep) {
  RematChoice r = chooseRemat(0, {}, {}, {0, false});
  EXPECT_TRUE(r.chosen.empty());
  EXPECT_EQ(r.peakAfterBytes, 0u);
}

// Two buffers idle across the spike; either alone fits 500. The one with
// the least time per byte freed wins: 2e-6 / 200 < 1e-6 / 50.
TEST(RematChoice, CheapestPerByteFirst) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({50, 1, 8});  // buffer 2
  live.push_back({200, 2, 8}); // buffer 3
  // Peak 100 + 300 + 50 + 200 = 650 at 4..6.
  std::vector<RematCandidate> cands = {cand(2, 50, 1, 8, 1e-6),
                                       cand(3, 200, 2, 8, 2e-6)};
  RematChoice r = chooseRemat(10, live, cands, {500, false});
  ASSERT_EQ(r.chosen.size(), 1u);
  EXPECT_EQ(r.chosen[0], 1u);
  EXPECT_EQ(r.peakBeforeBytes, 650u);
  EXPECT_EQ(r.peakAfterBytes, 450u);
  EXPECT_DOUBLE_EQ(r.addedS, 2e-6);
  EXPECT_EQ(r.droppedBytes, 200u);
}

// Keeps choosing until the peak fits: 650 -> 450 -> 400.
TEST(RematChoice, ChoosesUntilItFits) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({50, 1, 8});
  live.push_back({200, 2, 8});
  std::vector<RematCandidate> cands = {cand(2, 50, 1, 8, 1e-6),
                                       cand(3, 200, 2, 8, 2e-6)};
  RematChoice r = chooseRemat(10, live, cands, {420, false});
  ASSERT_EQ(r.chosen.size(), 2u);
  EXPECT_EQ(r.chosen[0], 1u);
  EXPECT_EQ(r.chosen[1], 0u);
  EXPECT_EQ(r.peakAfterBytes, 400u);
}

// With offload available, a recompute slower than parking the buffer is
// left to offload; without it, it is taken.
TEST(RematChoice, SlowerThanOffloadIsLeftToOffload) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({200, 2, 8});
  std::vector<RematCandidate> cands = {cand(2, 200, 2, 8, /*recompute*/ 5e-3,
                                            /*offload*/ 1e-3)};
  RematChoice joint = chooseRemat(10, live, cands, {500, true});
  EXPECT_TRUE(joint.chosen.empty());
  ASSERT_EQ(joint.leftForOffload.size(), 1u);
  EXPECT_EQ(joint.leftForOffload[0], 0u);
  EXPECT_EQ(joint.peakAfterBytes, 600u);
  RematChoice alone = chooseRemat(10, live, cands, {500, false});
  ASSERT_EQ(alone.chosen.size(), 1u);
  EXPECT_TRUE(alone.leftForOffload.empty());
  EXPECT_EQ(alone.peakAfterBytes, 400u);
}

// An input kept live until the recompute is charged: dropping 200 bytes
// while extending a 200-byte input over the peak frees nothing there.
TEST(RematChoice, ExtendedInputsAreCharged) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({200, 2, 8});
  RematCandidate c = cand(2, 200, 2, 8, 1e-6);
  c.extra.push_back({200, 3, 8});
  RematChoice r = chooseRemat(10, live, {c}, {500, false});
  EXPECT_TRUE(r.chosen.empty());
  // A smaller input leaves a net saving: 200 - 50 at the peak.
  c.extra[0].sizeBytes = 50;
  r = chooseRemat(10, live, {c}, {500, false});
  ASSERT_EQ(r.chosen.size(), 1u);
  EXPECT_EQ(r.peakAfterBytes, 450u);
}

// A recompute whose scratch bytes at z would make z a higher peak than the
// one it cuts is refused.
TEST(RematChoice, NeverRaisesThePeak) {
  std::vector<RematInterval> live = baseProfile(); // 400 at 4..6
  live.push_back({200, 2, 8});                     // 600 at 4..6
  RematCandidate c = cand(2, 200, 2, 8, 1e-6);
  c.extra.push_back({500, 8, 8}); // 100 + 200 + 500 = 800 at 8
  RematChoice r = chooseRemat(10, live, {c}, {500, false});
  EXPECT_TRUE(r.chosen.empty());
  EXPECT_EQ(r.peakAfterBytes, 600u);
}

// One action per buffer per call, and none that reads a dropped buffer:
// their effects on the profile would not add up.
TEST(RematChoice, ConflictingCandidatesAreNotCombined) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({200, 2, 9}); // buffer 2, used at 2, 3, 7 and 9
  live.push_back({100, 1, 8}); // buffer 3
  // Peak: 100 + 300 + 200 + 100 = 700 at 4..6.
  RematCandidate first = cand(2, 200, 2, 7, 1e-6);
  RematCandidate second = cand(2, 200, 3, 9, 1e-6);
  RematCandidate reader = cand(3, 100, 1, 8, 1e-6);
  reader.reads.push_back(2); // recomputing 3 reads buffer 2
  RematChoice r =
      chooseRemat(10, live, {first, second, reader}, {350, false});
  ASSERT_EQ(r.chosen.size(), 1u);
  EXPECT_EQ(r.chosen[0], 0u);
  EXPECT_EQ(r.peakAfterBytes, 500u);
}

// Nothing idle across the peak: nothing chosen, the peak reported as is.
TEST(RematChoice, NothingCoversThePeak) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({200, 0, 3});
  RematChoice r =
      chooseRemat(10, live, {cand(2, 200, 0, 3, 1e-6)}, {300, false});
  EXPECT_TRUE(r.chosen.empty());
  EXPECT_EQ(r.peakAfterBytes, 400u);
}

// The same buffer as a single kernel and as a chain: the single kernel
// keeps its dead 150-byte input live over the gap (it frees 50 at the
// peak), the two-kernel chain recomputes that input too and charges it only
// at the recompute point (it frees 200 at the peak). The chain wins despite
// its longer time, and the single kernel, dropping the same buffer, is not
// taken as well.
TEST(RematChoice, ChainFreesWhatTheSingleKernelKeeps) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({200, 2, 8}); // buffer 2
  // Peak 100 + 300 + 200 = 600 at 4..6.
  RematCandidate single = cand(2, 200, 2, 8, 1e-6);
  single.extra.push_back({150, 2, 8}); // input 3, dead after 1
  single.reads.push_back(3);
  RematCandidate chain = cand(2, 200, 2, 8, 3e-6);
  chain.chainLength = 2;
  chain.extra.push_back({150, 8, 8}); // input 3 again, at the recompute
  chain.reads.push_back(4);           // the chain's leaf
  RematChoice r = chooseRemat(10, live, {single, chain}, {450, false});
  ASSERT_EQ(r.chosen.size(), 1u);
  EXPECT_EQ(r.chosen[0], 1u);
  // The new peak is at the recompute: 100 + 200 + the 150 intermediate.
  EXPECT_EQ(r.peakAfterBytes, 450u);
  EXPECT_DOUBLE_EQ(r.addedS, 3e-6);
}

// A chain whose intermediates at the recompute point make that instruction
// the new, higher peak is undone: nothing chosen.
TEST(RematChoice, ChainIntermediatesMustNotRaiseThePeak) {
  std::vector<RematInterval> live = baseProfile();
  live.push_back({200, 2, 8}); // buffer 2; at 8: 100 + 200 = 300
  RematCandidate chain = cand(2, 200, 2, 8, 1e-6);
  chain.chainLength = 3;
  chain.extra.push_back({500, 8, 8}); // at 8: 300 + 500 = 800 > 600
  RematChoice r = chooseRemat(10, live, {chain}, {450, false});
  EXPECT_TRUE(r.chosen.empty());
  EXPECT_EQ(r.peakAfterBytes, 600u);
}
