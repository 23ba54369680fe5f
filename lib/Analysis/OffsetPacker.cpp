//===- OffsetPacker.cpp - Place live intervals in one arena ---------------===//

#include "colossal/Analysis/OffsetPacker.h"

#include <algorithm>
#include <map>
#include <numeric>

using namespace mlir::colossal;

static uint64_t alignUp(uint64_t value, uint64_t align) {
  return (value + align - 1) / align * align;
}

PackResult mlir::colossal::packIntervals(const std::vector<PackItem> &items) {
  PackResult result;
  result.offsets.assign(items.size(), 0);

  // Lower bound: sweep the interval endpoints in instruction order.
  std::map<uint32_t, int64_t> delta; // ordered: deterministic sweep
  for (const PackItem &it : items) {
    if (it.sizeBytes == 0)
      continue;
    delta[it.firstUse] += static_cast<int64_t>(it.sizeBytes);
    delta[it.lastUse + 1] -= static_cast<int64_t>(it.sizeBytes);
  }
  int64_t live = 0;
  for (const auto &[time, d] : delta) {
    live += d;
    result.lowerBoundBytes =
        std::max(result.lowerBoundBytes, static_cast<uint64_t>(live));
  }

  std::vector<size_t> order(items.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (items[a].sizeBytes != items[b].sizeBytes)
      return items[a].sizeBytes > items[b].sizeBytes;
    return items[a].firstUse < items[b].firstUse;
  });

  std::vector<size_t> placed; // indices into items
  std::vector<std::pair<uint64_t, uint64_t>> busy;
  for (size_t idx : order) {
    const PackItem &it = items[idx];
    uint64_t align = it.alignBytes ? it.alignBytes : 1;
    if (it.sizeBytes == 0) {
      result.offsets[idx] = 0;
      continue;
    }
    // The byte ranges of placed items that are live at the same time.
    busy.clear();
    for (size_t p : placed) {
      const PackItem &q = items[p];
      if (q.firstUse <= it.lastUse && it.firstUse <= q.lastUse)
        busy.emplace_back(result.offsets[p], result.offsets[p] + q.sizeBytes);
    }
    std::sort(busy.begin(), busy.end());
    // Best fit: the smallest gap that holds the item; else after the last.
    uint64_t cursor = 0, bestOffset = UINT64_MAX, bestGap = UINT64_MAX;
    for (const auto &[begin, end] : busy) {
      uint64_t candidate = alignUp(cursor, align);
      if (candidate + it.sizeBytes <= begin) {
        uint64_t gap = begin - cursor;
        if (gap < bestGap) {
          bestGap = gap;
          bestOffset = candidate;
        }
      }
      cursor = std::max(cursor, end);
    }
    if (bestOffset == UINT64_MAX)
      bestOffset = alignUp(cursor, align);
    result.offsets[idx] = bestOffset;
    result.arenaBytes = std::max(result.arenaBytes, bestOffset + it.sizeBytes);
    placed.push_back(idx);
  }
  return result;
}
