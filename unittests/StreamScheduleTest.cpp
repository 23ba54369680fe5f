//===- StreamScheduleTest.cpp - List schedule and live spans over streams -===//

#include "colossal/Analysis/CostModel.h"

#include <gtest/gtest.h>

using namespace mlir::colossal;
using Sync = StreamInstr::Sync;

namespace {

StreamInstr op(uint32_t stream, double s) { return {stream, Sync::None, -1, s}; }
StreamInstr rec(uint32_t stream, int64_t e) { return {stream, Sync::Record, e, 0}; }
StreamInstr wait(uint32_t stream, int64_t e) { return {stream, Sync::Wait, e, 0}; }

// Compute 1 s, issue a 3 s copy on stream 1, compute 2 s more, then wait
// for the copy and compute 1 s: the copy overlaps the 2 s, the wait stalls
// stream 0 from 3 s to 4 s, the step ends at 5 s.
TEST(StreamSchedule, CopyOverlapsComputeUntilTheWait) {
  std::vector<StreamInstr> in = {op(0, 1), rec(0, 0), wait(1, 0), op(1, 3),
                                 rec(1, 1), op(0, 2), wait(0, 1), op(0, 1)};
  StreamSchedule s = scheduleStreams(in, {{0, 8, 1}}, 2);
  EXPECT_DOUBLE_EQ(s.startS[3], 1.0);  // the copy starts behind the record
  EXPECT_DOUBLE_EQ(s.finishS[5], 3.0); // compute goes on meanwhile
  EXPECT_DOUBLE_EQ(s.startS[7], 4.0);  // after the wait: 1 + 3
  EXPECT_DOUBLE_EQ(s.makespanS, 5.0);
  EXPECT_DOUBLE_EQ(s.busyS[0], 4.0);
  EXPECT_DOUBLE_EQ(s.busyS[1], 3.0);
}

// Without events the streams run side by side; repeat multiplies.
TEST(StreamSchedule, IndependentStreamsAndRepeat) {
  std::vector<StreamInstr> in = {op(0, 2), op(1, 5), op(0, 2)};
  StreamSchedule s = scheduleStreams(in, {{0, 3, 2}}, 2);
  EXPECT_DOUBLE_EQ(s.makespanS, 10.0); // 2 x max(4, 5)
  EXPECT_DOUBLE_EQ(s.busyS[0], 8.0);
}

// The copy at 3 holds memory from after the record at 1 (the last stream-0
// instruction before it) to the wait at 6 (the first that has seen it).
TEST(StreamLiveSpans, SideStreamSpansToTheJoin) {
  std::vector<StreamInstr> in = {op(0, 1), rec(0, 0), wait(1, 0), op(1, 3),
                                 rec(1, 1), op(0, 2), wait(0, 1), op(0, 1)};
  auto spans = streamLiveSpans(in, {{0, 8, 1}});
  EXPECT_EQ(spans[3], std::make_pair(2u, 6u));
  EXPECT_EQ(spans[5], std::make_pair(5u, 5u));
}

// Never joined: held to the program's end.
TEST(StreamLiveSpans, UnjoinedHeldToProgramEnd) {
  std::vector<StreamInstr> in = {op(0, 1), op(1, 1), op(0, 1), op(0, 1)};
  auto spans = streamLiveSpans(in, {{0, 4, 1}});
  EXPECT_EQ(spans[1], std::make_pair(0u, 3u));
}

// Updates across the step boundary: stream 0 runs f1, f2 (each after its
// weight's update: a wait with no earlier record in the program takes the
// previous step's), then b, whose record releases the host stream's two
// updates. Joined at the program's end, a step is 3 + 2 = 5 s. With the
// host stream carried, the next step's f1 starts after u1, and u2 runs
// under f1: steps 4 s apart (f1 4-5, f2 5-6, b 6-7, u1 7-8, u2 8-9, ...).
TEST(StreamSchedule, CarriedStreamOverlapsTheNextStep) {
  std::vector<StreamInstr> in = {wait(0, 1), op(0, 1), wait(0, 2), op(0, 1),
                                 op(0, 1),   rec(0, 0), wait(1, 0), op(1, 1),
                                 rec(1, 1),  op(1, 1),  rec(1, 2)};
  StreamSchedule joined = scheduleStreams(in, {{0, 11, 1}}, 2);
  EXPECT_DOUBLE_EQ(joined.makespanS, 5.0);
  StreamSchedule carried = scheduleStreams(in, {{0, 11, 1}}, 2, 1u << 1);
  EXPECT_DOUBLE_EQ(carried.makespanS, 4.0);
  EXPECT_DOUBLE_EQ(carried.busyS[1], 2.0);
  // The last step, from its start (where the step before left stream 0):
  // f1 waits for that step's u1, which ends 1 s later.
  EXPECT_DOUBLE_EQ(carried.startS[1], 1.0);
  // Carrying a stream no wait depends on changes nothing.
  StreamSchedule none = scheduleStreams(in, {{0, 11, 1}}, 2, 1u << 5);
  EXPECT_DOUBLE_EQ(none.makespanS, 5.0);
}

// Repeats: a program run twice per step is simulated twice per step.
TEST(StreamSchedule, CarriedStreamWithRepeat) {
  std::vector<StreamInstr> in = {op(0, 2), rec(0, 0), wait(1, 0), op(1, 1)};
  StreamSchedule carried = scheduleStreams(in, {{0, 4, 2}}, 2, 1u << 1);
  // Stream 0: 2 s a run; the host's 1 s runs behind each: 4 s a step.
  EXPECT_DOUBLE_EQ(carried.makespanS, 4.0);
  EXPECT_DOUBLE_EQ(carried.busyS[0], 4.0);
}

// A carried stream's instruction that no stream-0 instruction waits for
// runs on into the next run: its span is the whole program.
TEST(StreamLiveSpans, CarriedUnjoinedSpansTheProgram) {
  std::vector<StreamInstr> in = {op(0, 1), rec(0, 0), wait(1, 0), op(1, 1),
                                 op(0, 1)};
  EXPECT_EQ(streamLiveSpans(in, {{0, 5, 1}})[3], std::make_pair(2u, 4u));
  EXPECT_EQ(streamLiveSpans(in, {{0, 5, 1}}, 1u << 1)[3],
            std::make_pair(0u, 4u));
  // Joined by a stream-0 wait: the span is as before.
  std::vector<StreamInstr> joined = {op(0, 1),  rec(0, 0), wait(1, 0),
                                     op(1, 1),  rec(1, 1), wait(0, 1),
                                     op(0, 1)};
  EXPECT_EQ(streamLiveSpans(joined, {{0, 7, 1}}, 1u << 1)[3],
            std::make_pair(2u, 5u));
}

// chooseCarriedTail on three layers A, B, C: forward 1 s each, backward 1 s
// each (C's gradient first), host updates 3 s each; each forward waits for
// its weight's update (added waits: the previous step's). Worked by hand:
// in the gradients' order (C, B, A) a step takes 13 s (the forward waits
// for A's update, the last); with the tail A, B in the forward's order
// after C, 12 s (fA runs under B's update); a tail of all three, 13 s (the
// host waits for A's gradient, the backward's last, before starting).
TEST(CarriedTail, PicksTheSteadyStateFastestSuffix) {
  std::vector<StreamInstr> in = {
      op(0, 1),  op(0, 1), op(0, 1), op(0, 1),  rec(0, 0), op(0, 1),
      rec(0, 1), op(0, 1), rec(0, 2), wait(1, 0), op(1, 3), rec(1, 3),
      wait(1, 1), op(1, 3), rec(1, 4), wait(1, 2), op(1, 3), rec(1, 5)};
  std::vector<CarriedUpdate> updates = {
      {9, 10, 11, 2}, {12, 13, 14, 1}, {15, 16, 17, 0}};
  std::vector<AddedWait> waits = {{0, 0, 5}, {1, 0, 4}, {2, 0, 3}};
  double stepS = 0;
  EXPECT_EQ(chooseCarriedTail(in, {{0, 18, 1}}, 2, 1u << 1, updates, waits,
                              &stepS),
            1u);
  EXPECT_DOUBLE_EQ(stepS, 12.0);
  // A host faster than the device: every order gives the device's 6 s and
  // A's update (0.5 s after A's gradient, the backward's last) before the
  // next forward, and the tie keeps the gradients' order.
  for (uint32_t k : {10u, 13u, 16u})
    in[k].seconds = 0.5;
  EXPECT_EQ(chooseCarriedTail(in, {{0, 18, 1}}, 2, 1u << 1, updates, waits,
                              &stepS),
            3u);
  EXPECT_DOUBLE_EQ(stepS, 6.5);
}

} // namespace
