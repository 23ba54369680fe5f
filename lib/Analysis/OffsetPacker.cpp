//===- OffsetPacker.cpp - Place live intervals in one arena ---------------===//

#include "colossal/Analysis/OffsetPacker.h"

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>

using namespace mlir::colossal;

static uint64_t alignUp(uint64_t value, uint64_t align) {
  return (value + align - 1) / align * align;
}

namespace {

/// Places the items in `order`, each at the best-fitting aligned gap among
/// the already placed items live at the same time (else above them all).
/// Returns the arena size; `offsets` receives one offset per item.
uint64_t placeInOrder(const std::vector<PackItem> &items,
                      const std::vector<size_t> &order,
                      std::vector<uint64_t> &offsets) {
  offsets.assign(items.size(), 0);
  uint64_t arena = 0;
  std::vector<size_t> placed; // indices into items
  std::vector<std::pair<uint64_t, uint64_t>> busy;
  for (size_t idx : order) {
    const PackItem &it = items[idx];
    uint64_t align = it.alignBytes ? it.alignBytes : 1;
    if (it.sizeBytes == 0)
      continue;
    // The byte ranges of placed items that are live at the same time.
    busy.clear();
    for (size_t p : placed) {
      const PackItem &q = items[p];
      if (q.firstUse <= it.lastUse && it.firstUse <= q.lastUse)
        busy.emplace_back(offsets[p], offsets[p] + q.sizeBytes);
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
    offsets[idx] = bestOffset;
    arena = std::max(arena, bestOffset + it.sizeBytes);
    placed.push_back(idx);
  }
  return arena;
}

} // namespace

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

  // Greedy placement depends on the order; no one order wins on every
  // schedule (sizes that vary widely fragment a size-first order, long
  // lived small buffers a time-first one). Try a few, keep the smallest
  // arena; ties go to the earlier order, so the result is deterministic.
  auto lifetime = [&](size_t i) {
    return static_cast<uint64_t>(items[i].lastUse - items[i].firstUse) + 1;
  };
  using Less = std::function<bool(size_t, size_t)>;
  const Less orders[] = {
      // 1. decreasing size, then first use
      [&](size_t a, size_t b) {
        if (items[a].sizeBytes != items[b].sizeBytes)
          return items[a].sizeBytes > items[b].sizeBytes;
        return items[a].firstUse < items[b].firstUse;
      },
      // 2. decreasing size x lifetime (the area in the timeline picture)
      [&](size_t a, size_t b) {
        unsigned __int128 x = (unsigned __int128)items[a].sizeBytes * lifetime(a);
        unsigned __int128 y = (unsigned __int128)items[b].sizeBytes * lifetime(b);
        if (x != y)
          return x > y;
        return items[a].firstUse < items[b].firstUse;
      },
      // 3. decreasing lifetime, then size
      [&](size_t a, size_t b) {
        if (lifetime(a) != lifetime(b))
          return lifetime(a) > lifetime(b);
        return items[a].sizeBytes > items[b].sizeBytes;
      },
  };
  std::vector<uint64_t> offsets;
  bool first = true;
  for (const Less &less : orders) {
    std::vector<size_t> order(items.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), less);
    uint64_t arena = placeInOrder(items, order, offsets);
    if (first || arena < result.arenaBytes) {
      result.arenaBytes = arena;
      result.offsets = offsets;
      first = false;
    }
    if (result.arenaBytes == result.lowerBoundBytes)
      break; // optimal: no order can do better
  }
  return result;
}
