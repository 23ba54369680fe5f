//===- ShareSearch.cpp - How much optimizer state to keep on the device ---===//

#include "colossal/Analysis/ShareSearch.h"

#include <algorithm>

namespace mlir::colossal {

std::vector<size_t> fillShare(const std::vector<ShareWeight> &order,
                              uint64_t targetBytes) {
  std::vector<size_t> taken;
  uint64_t used = 0;
  for (size_t i = 0; i < order.size(); ++i)
    if (order[i].bytes <= targetBytes - used) {
      taken.push_back(i);
      used += order[i].bytes;
    }
  return taken;
}

uint64_t shareBytesFor(const std::vector<ShareWeight> &order,
                       uint64_t targetBytes) {
  uint64_t used = 0;
  for (size_t i : fillShare(order, targetBytes))
    used += order[i].bytes;
  return used;
}

std::optional<uint64_t>
proposeShareTarget(const std::vector<ShareWeight> &order,
                   const std::vector<SharePoint> &points,
                   const ShareSearchOptions &options) {
  uint64_t totalBytes = 0;
  for (const ShareWeight &w : order)
    totalBytes += w.bytes;
  if (totalBytes == 0 || points.size() >= options.maxCandidates)
    return std::nullopt;
  uint64_t resolution = options.resolutionBytes
                            ? options.resolutionBytes
                            : std::max<uint64_t>(totalBytes / 64, 1);

  // The all-offloaded plan is the point at 0 bytes.
  std::vector<SharePoint> all = points;
  SharePoint baseline;
  baseline.fits = true;
  baseline.stepS = options.baselineStepS;
  all.push_back(baseline);
  // A target is worth a compile only if its share is new: targets between
  // two weights' boundaries give the same plan.
  auto isNew = [&](uint64_t target) {
    uint64_t share = shareBytesFor(order, target);
    return std::none_of(all.begin(), all.end(), [&](const SharePoint &p) {
      return p.targetBytes == target || p.shareBytes == share;
    });
  };

  // 1. The room alone; 2. everything.
  uint64_t room = std::min(options.roomBytes, totalBytes);
  if (room > 0 && isNew(room))
    return room;
  if (isNew(totalBytes))
    return totalBytes;

  // 3. Refine around the best fitting point.
  const SharePoint *best = nullptr;
  for (const SharePoint &p : all)
    if (p.fits &&
        (!best || p.stepS < best->stepS ||
         (p.stepS == best->stepS && p.targetBytes < best->targetBytes)))
      best = &p;
  const SharePoint *above = nullptr, *below = nullptr;
  for (const SharePoint &p : all) {
    if (p.targetBytes > best->targetBytes &&
        (!above || p.targetBytes < above->targetBytes))
      above = &p;
    if (p.targetBytes < best->targetBytes &&
        (!below || p.targetBytes > below->targetBytes))
      below = &p;
  }
  std::optional<uint64_t> up, down;
  bool frontierFound = false;
  uint64_t upGap = 0, downGap = 0;
  if (above) {
    upGap = above->targetBytes - best->targetBytes;
    if (upGap >= resolution) {
      // State on the device is live for the whole step, so an overshoot is
      // what has to come off the share, if the activations that the
      // recomputation and parking could not shrink stay as they were. They
      // do not quite (more state can leave less that recomputation can
      // reach), so with a second point that overshot further up, the rate
      // at which the overshoot falls with the share is measured from the
      // two (a secant, as regula falsi).
      if (!above->fits && above->overshootBytes > 0) {
        const SharePoint *further = nullptr;
        for (const SharePoint &p : all)
          if (!p.fits && p.overshootBytes > 0 &&
              p.targetBytes > above->targetBytes &&
              (!further || p.targetBytes < further->targetBytes))
            further = &p;
        double rate = 1.0;
        if (further && further->overshootBytes > above->overshootBytes)
          rate = double(further->overshootBytes - above->overshootBytes) /
                 double(further->targetBytes - above->targetBytes);
        // An estimate at or below the best's share says the best is at the
        // frontier already: nothing above is bisected then.
        double cut = double(above->overshootBytes) / rate;
        uint64_t t = cut < double(upGap)
                         ? above->targetBytes - static_cast<uint64_t>(cut)
                         : best->targetBytes;
        if (shareBytesFor(order, t) <= best->shareBytes)
          frontierFound = true;
        else if (isNew(t))
          up = t;
      }
      uint64_t mid = best->targetBytes + upGap / 2;
      if (!up && !frontierFound && isNew(mid))
        up = mid;
    }
  }
  if (below) {
    downGap = best->targetBytes - below->targetBytes;
    uint64_t mid = below->targetBytes + downGap / 2;
    if (downGap >= resolution && isNew(mid))
      down = mid;
  }
  // The frontier first: with the step falling as the share grows (the usual
  // case: the host AdamW is the bottleneck), the largest share that fits is
  // the likely best. Otherwise the wider interval (ties: above).
  if (up && (!down || !above->fits || upGap >= downGap))
    return up;
  return down;
}

std::optional<size_t> bestSharePoint(const std::vector<SharePoint> &points,
                                     double baselineStepS) {
  std::optional<size_t> best;
  for (size_t i = 0; i < points.size(); ++i) {
    const SharePoint &p = points[i];
    if (!p.fits || p.stepS > baselineStepS)
      continue;
    if (!best || p.stepS < points[*best].stepS ||
        (p.stepS == points[*best].stepS &&
         p.shareBytes < points[*best].shareBytes))
      best = i;
  }
  return best;
}

} // namespace mlir::colossal
