//===- ShareSearch.h - Optimizer state kept on the device ------*- C++ -*-===//
//
// The search behind --policy auto's device-resident share, kept apart from
// the IR: the weights whose master and moments may stay on the device, in
// the order they are taken (last-updated first), and the plans compiled so
// far for some share sizes (predicted step, fits the budget or not, by how
// much it overshot); it proposes the next share size to compile, or none.
// A share larger than the room the all-offloaded plan leaves is paid for by
// recomputing or parking more activations (colossal-rematerialize,
// colossal-offload-across-gaps), so the predicted step is not monotone in
// the share and only a compile tells whether a share fits.
// Unit-tested in unittests/ShareSearchTest.cpp.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_ANALYSIS_SHARESEARCH_H
#define COLOSSAL_ANALYSIS_SHARESEARCH_H

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mlir::colossal {

/// A weight whose master and optimizer state could stay on the device, and
/// what that costs there: master plus state bytes (12 B/parameter with
/// fp32 AdamW).
struct ShareWeight {
  std::string name;
  uint64_t bytes = 0;
};

/// The share for a byte target: greedy over `order`, a weight is taken
/// while the sum stays within `targetBytes` (smaller ones after a large one
/// that does not fit). Indices into `order`, in order.
std::vector<size_t> fillShare(const std::vector<ShareWeight> &order,
                              uint64_t targetBytes);

/// The bytes of fillShare(order, targetBytes).
uint64_t shareBytesFor(const std::vector<ShareWeight> &order,
                       uint64_t targetBytes);

/// One compiled share: the target asked for, the bytes fillShare took, and
/// the plan's outcome.
struct SharePoint {
  uint64_t targetBytes = 0;
  uint64_t shareBytes = 0;
  /// The planned device peak is within the budget (and the pipeline ran).
  bool fits = false;
  /// Predicted step time, seconds (the stream list-schedule cost model).
  /// Only compared between fitting points.
  double stepS = 0;
  /// Planned peak less the budget when the plan does not fit; 0 when
  /// unknown (the pipeline failed).
  uint64_t overshootBytes = 0;
};

struct ShareSearchOptions {
  /// What the all-offloaded plan leaves under the budget (the old share's
  /// target; 0 when it leaves nothing).
  uint64_t roomBytes = 0;
  /// The all-offloaded plan's predicted step: the point (0 bytes, fits).
  double baselineStepS = 0;
  /// Compiles allowed, not counting the all-offloaded plan.
  size_t maxCandidates = 8;
  /// Intervals of targets narrower than this are not split further; 0:
  /// 1/64 of all the weights' bytes.
  uint64_t resolutionBytes = 0;
};

/// The next share target to compile, or none when the search is done.
///
/// The all-offloaded plan is the point (0 bytes, fits, baselineStepS); the
/// best point is the fitting one with the lowest predicted step (ties: the
/// smaller target). In order:
///  1. roomBytes, when its share is not empty (the share the room alone
///     pays for, which needs no extra recomputation);
///  2. when nothing above the best was compiled, every weight (the share
///     bounded only by how far recomputation and parking can shrink the
///     activations);
///  3. between the best and the next compiled point above it: when that
///     one overshot by B bytes, its target less B (state on the device is
///     live all step, so the overshoot is what must come off; with a
///     second point above that overshot too, B over the rate at which the
///     overshoot fell between the two: a secant), else the midpoint;
///     between the best and the point below it, the midpoint.
///     Above first when the point above does not fit (the fit frontier,
///     where the share is largest), else the wider interval.
/// A proposal whose share (fillShare) equals a compiled one's, or whose
/// interval is narrower than the resolution, is not made; the search stops
/// after maxCandidates points. A bracketing search, not an exhaustive one:
/// with a step that is not unimodal in the share it may settle on a local
/// minimum.
std::optional<uint64_t>
proposeShareTarget(const std::vector<ShareWeight> &order,
                   const std::vector<SharePoint> &points,
                   const ShareSearchOptions &options);

/// The index of the best fitting point predicted no slower than the
/// all-offloaded plan (lowest step; ties: the smaller share, then the
/// earlier point), or none.
std::optional<size_t> bestSharePoint(const std::vector<SharePoint> &points,
                                     double baselineStepS);

} // namespace mlir::colossal

#endif // COLOSSAL_ANALYSIS_SHARESEARCH_H
