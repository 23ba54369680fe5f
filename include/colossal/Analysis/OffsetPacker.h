//===- OffsetPacker.h - Place live intervals in one arena -------*- C++ -*-===//
//
// The algorithm behind colossal-assign-offsets, kept apart from the IR so
// that it is unit-tested and benchmarked alone: it takes plain records and
// returns offsets.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_ANALYSIS_OFFSETPACKER_H
#define COLOSSAL_ANALYSIS_OFFSETPACKER_H

#include <cstdint>
#include <vector>

namespace mlir::colossal {

/// One buffer: `sizeBytes` bytes aligned to `alignBytes` (a power of two),
/// in use during instructions [firstUse, lastUse] (inclusive).
struct PackItem {
  uint64_t sizeBytes = 0;
  uint64_t alignBytes = 1;
  uint32_t firstUse = 0;
  uint32_t lastUse = 0;
};

struct PackResult {
  std::vector<uint64_t> offsets; ///< one per item, in input order
  uint64_t arenaBytes = 0;       ///< max over items of offset + size
  /// The largest total size of items live at one instruction: no packing can
  /// use fewer bytes (alignment aside). arenaBytes / lowerBoundBytes is the
  /// packer's figure of merit.
  uint64_t lowerBoundBytes = 0;
};

/// Greedy best-fit in three orders, keeping the smallest arena: items are
/// taken by decreasing size, by decreasing size x lifetime, and by
/// decreasing lifetime; each takes the smallest aligned gap among the
/// already placed items live at the same time (else the offset above them
/// all). Stops early when an order reaches the lower bound. Deterministic
/// (ties between orders go to the earlier; within an order to first use,
/// then input index). O(n^2) per order in the number of items.
PackResult packIntervals(const std::vector<PackItem> &items);

} // namespace mlir::colossal

#endif // COLOSSAL_ANALYSIS_OFFSETPACKER_H
