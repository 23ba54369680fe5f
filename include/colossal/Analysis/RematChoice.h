//===- RematChoice.h - Which buffers to recompute under a budget -*- C++ -*-===//
//
// The algorithm behind colossal-rematerialize, kept apart from the IR: given
// the device liveness profile (plain intervals) and the buffers that could be
// dropped over an idle gap and recomputed before their next use, each with
// the predicted time of the recompute, the bytes it keeps live for longer,
// and the predicted time of parking the buffer in host memory instead, pick
// the recomputes that bring the peak under a budget at the least added time.
// Unit-tested in unittests/RematChoiceTest.cpp.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_ANALYSIS_REMATCHOICE_H
#define COLOSSAL_ANALYSIS_REMATCHOICE_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mlir::colossal {

/// `sizeBytes` bytes in use during instructions [first, last] (inclusive).
struct RematInterval {
  uint64_t sizeBytes = 0;
  int64_t first = 0;
  int64_t last = 0;
};

/// One possible recompute: a buffer written at `gapStart`'s producer, idle
/// between its uses at `gapStart` and `gapEnd` (instruction indices, a < z),
/// dropped after a and recomputed right before z. Its bytes are then free
/// over [a + 1, z - 1].
struct RematCandidate {
  int64_t buffer = 0; ///< an id of the dropped buffer (for conflicts)
  uint64_t sizeBytes = 0;
  int64_t gapStart = 0, gapEnd = 0;
  /// Kernels cloned: 1, or a chain that recomputes dead inputs too (their
  /// bytes at the recompute point are in `extra`). Reported, not weighed.
  int64_t chainLength = 1;
  /// The recompute's predicted time, seconds per run of its program.
  double recomputeS = 0;
  /// Parking the buffer in host memory over the gap instead: both copies,
  /// bytes over the link rates plus the per-copy latency, seconds.
  double offloadS = 0;
  /// What the recompute keeps live that would otherwise be free: inputs
  /// whose live range is extended to z, scratch outputs at z. The model
  /// counts them up to and including z (the recompute runs just before z),
  /// which over-counts by at most one instruction: conservative.
  std::vector<RematInterval> extra;
  /// Ids of the buffers the recompute reads. Two candidates conflict when
  /// they drop the same buffer or one drops a buffer the other reads: their
  /// effects on the profile would not add up, so at most one is chosen per
  /// call (the caller applies them, rebuilds the profile and calls again).
  std::vector<int64_t> reads;
};

struct RematChoiceOptions {
  /// The device liveness peak to reach, bytes.
  uint64_t budgetBytes = 0;
  /// Offload to host memory is available for what remat leaves: then a
  /// buffer whose recompute is predicted slower than parking it is left to
  /// offload (not chosen). Without offload every candidate may be chosen.
  bool offloadAvailable = false;
};

struct RematChoice {
  /// Indices into the candidates, in the order chosen.
  std::vector<size_t> chosen;
  /// The modelled device liveness peak before and after the chosen
  /// recomputes (the caller's IR decides the exact figure).
  uint64_t peakBeforeBytes = 0, peakAfterBytes = 0;
  double addedS = 0;          ///< sum of the chosen recomputes' times
  uint64_t droppedBytes = 0;  ///< sum of the chosen buffers' sizes
  /// Candidates that would have cut the peak but were left to offload
  /// because their recompute is predicted slower than parking them.
  std::vector<size_t> leftForOffload;
};

/// Greedy by cost per byte: while the modelled peak is over the budget, among
/// the candidates whose gap strictly contains the peak instruction (the first
/// one at the peak) and that lower the live bytes there (their size less
/// their extra bytes live at the peak), take the one with the least
/// recomputeS / bytes saved at the peak (ties: the larger saving, then the
/// lower index), provided it does not raise the peak elsewhere; then
/// re-evaluate. Stops when the peak fits or no candidate cuts it. Each
/// candidate is tried at most once: O(candidates x (instructions +
/// candidates)). Not optimal (a knapsack over a moving peak): a cheap buffer
/// that helps only after others are gone may be passed over.
RematChoice chooseRemat(int64_t numInstrs,
                        const std::vector<RematInterval> &live,
                        const std::vector<RematCandidate> &candidates,
                        const RematChoiceOptions &options);

} // namespace mlir::colossal

#endif // COLOSSAL_ANALYSIS_REMATCHOICE_H
