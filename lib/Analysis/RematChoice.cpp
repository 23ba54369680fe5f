//===- RematChoice.cpp - Which buffers to recompute under a budget --------===//

#include "colossal/Analysis/RematChoice.h"

#include <algorithm>
#include <set>

using namespace mlir::colossal;

namespace {

/// Bytes live per instruction, updated in place as recomputes are tried.
class Profile {
public:
  Profile(int64_t numInstrs, const std::vector<RematInterval> &live)
      : bytes(std::max<int64_t>(numInstrs, 0), 0) {
    for (const RematInterval &iv : live)
      add(iv.first, iv.last, static_cast<int64_t>(iv.sizeBytes));
  }

  /// Adds `delta` bytes over [first, last], clamped to the step.
  void add(int64_t first, int64_t last, int64_t delta) {
    first = std::max<int64_t>(first, 0);
    last = std::min<int64_t>(last, static_cast<int64_t>(bytes.size()) - 1);
    for (int64_t i = first; i <= last; ++i)
      bytes[i] += delta;
  }

  /// The effect of recomputing `c` (sign +1) or of undoing it (-1).
  void apply(const RematCandidate &c, int64_t sign) {
    add(c.gapStart + 1, c.gapEnd - 1, -sign * static_cast<int64_t>(c.sizeBytes));
    for (const RematInterval &e : c.extra)
      add(e.first, e.last, sign * static_cast<int64_t>(e.sizeBytes));
  }

  /// The largest live total and the first instruction that has it.
  std::pair<int64_t, int64_t> peak() const {
    int64_t best = 0, at = 0;
    for (size_t i = 0; i < bytes.size(); ++i)
      if (bytes[i] > best) {
        best = bytes[i];
        at = static_cast<int64_t>(i);
      }
    return {best, at};
  }

private:
  std::vector<int64_t> bytes;
};

/// The bytes a candidate frees at instruction `p`, less what it keeps live
/// there; 0 unless its gap strictly contains `p`.
int64_t savingAt(const RematCandidate &c, int64_t p) {
  if (!(c.gapStart < p && p < c.gapEnd))
    return 0;
  int64_t saving = static_cast<int64_t>(c.sizeBytes);
  for (const RematInterval &e : c.extra)
    if (e.first <= p && p <= e.last)
      saving -= static_cast<int64_t>(e.sizeBytes);
  return saving;
}

} // namespace

RematChoice mlir::colossal::chooseRemat(
    int64_t numInstrs, const std::vector<RematInterval> &live,
    const std::vector<RematCandidate> &candidates,
    const RematChoiceOptions &options) {
  RematChoice result;
  Profile profile(numInstrs, live);
  auto [peak, peakAt] = profile.peak();
  result.peakBeforeBytes = result.peakAfterBytes = static_cast<uint64_t>(peak);

  std::vector<bool> tried(candidates.size(), false);
  std::set<size_t> leftForOffload;
  // Buffers dropped by a chosen recompute, and buffers a chosen recompute
  // reads: a later candidate may touch neither in a conflicting way.
  std::set<int64_t> dropped, read;
  auto conflicts = [&](const RematCandidate &c) {
    if (dropped.count(c.buffer) || read.count(c.buffer))
      return true;
    return std::any_of(c.reads.begin(), c.reads.end(),
                       [&](int64_t r) { return dropped.count(r) != 0; });
  };

  while (static_cast<uint64_t>(peak) > options.budgetBytes) {
    // The cheapest recompute per byte it frees at the peak.
    size_t best = candidates.size();
    double bestScore = 0;
    int64_t bestSaving = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      const RematCandidate &c = candidates[i];
      if (tried[i] || conflicts(c))
        continue;
      int64_t saving = savingAt(c, peakAt);
      if (saving <= 0)
        continue;
      if (options.offloadAvailable && c.recomputeS >= c.offloadS) {
        leftForOffload.insert(i);
        continue;
      }
      double score = c.recomputeS / static_cast<double>(saving);
      if (best == candidates.size() || score < bestScore ||
          (score == bestScore && saving > bestSaving)) {
        best = i;
        bestScore = score;
        bestSaving = saving;
      }
    }
    if (best == candidates.size())
      break; // nothing left that cuts the peak

    const RematCandidate &c = candidates[best];
    tried[best] = true;
    profile.apply(c, +1);
    auto [newPeak, newPeakAt] = profile.peak();
    if (newPeak > peak) {
      // Its extra bytes make another instruction the new, higher peak.
      profile.apply(c, -1);
      continue;
    }
    result.chosen.push_back(best);
    result.addedS += c.recomputeS;
    result.droppedBytes += c.sizeBytes;
    dropped.insert(c.buffer);
    read.insert(c.reads.begin(), c.reads.end());
    peak = newPeak;
    peakAt = newPeakAt;
  }
  result.peakAfterBytes = static_cast<uint64_t>(peak);
  result.leftForOffload.assign(leftForOffload.begin(), leftForOffload.end());
  return result;
}
