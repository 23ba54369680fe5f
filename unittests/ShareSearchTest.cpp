//===- ShareSearchTest.cpp - How much optimizer state to keep, without IR -===//

#include "colossal/Analysis/ShareSearch.h"

#include <gtest/gtest.h>

#include <functional>

using namespace mlir::colossal;

namespace {

/// `n` weights of `bytes` each, named w0, w1, ...
std::vector<ShareWeight> uniform(size_t n, uint64_t bytes) {
  std::vector<ShareWeight> order;
  for (size_t i = 0; i < n; ++i)
    order.push_back({"w" + std::to_string(i), bytes});
  return order;
}

/// Runs the search against a model of the compiler: `plan(shareBytes)`
/// gives (fits, stepS, overshootBytes). Returns the points in the order
/// compiled.
std::vector<SharePoint>
search(const std::vector<ShareWeight> &order, const ShareSearchOptions &options,
       const std::function<SharePoint(uint64_t)> &plan) {
  std::vector<SharePoint> points;
  while (std::optional<uint64_t> t =
             proposeShareTarget(order, points, options)) {
    SharePoint p = plan(shareBytesFor(order, *t));
    p.targetBytes = *t;
    p.shareBytes = shareBytesFor(order, *t);
    points.push_back(p);
    EXPECT_LE(points.size(), options.maxCandidates);
    if (points.size() > options.maxCandidates)
      break;
  }
  return points;
}

/// A step that falls by `perByteS` for every byte kept on the device, on a
/// device with `limit` bytes of room at most (recomputation and parking
/// can shrink the activations only so far).
SharePoint fallingStep(uint64_t share, uint64_t limit, double baseS,
                       double perByteS) {
  SharePoint p;
  p.fits = share <= limit;
  p.stepS = baseS - perByteS * double(share);
  p.overshootBytes = p.fits ? 0 : share - limit;
  return p;
}

} // namespace

TEST(ShareSearch, FillIsGreedyInOrder) {
  // 50 does not fit 60 after 40, the 10 after it does.
  std::vector<ShareWeight> order = {{"a", 40}, {"b", 50}, {"c", 10}, {"d", 30}};
  std::vector<size_t> taken = fillShare(order, 60);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0], 0u);
  EXPECT_EQ(taken[1], 2u);
  EXPECT_EQ(shareBytesFor(order, 60), 50u);
  EXPECT_EQ(shareBytesFor(order, 0), 0u);
  EXPECT_EQ(shareBytesFor(order, 1000), 130u);
}

TEST(ShareSearch, NothingToShare) {
  EXPECT_FALSE(proposeShareTarget({}, {}, {}).has_value());
  EXPECT_FALSE(
      proposeShareTarget(uniform(3, 0), {}, ShareSearchOptions{}).has_value());
}

// The room first (the share that needs no extra recomputation), then every
// weight.
TEST(ShareSearch, RoomThenEverything) {
  std::vector<ShareWeight> order = uniform(10, 100); // 1000 bytes in all
  ShareSearchOptions o;
  o.roomBytes = 250;
  o.baselineStepS = 1.0;
  std::optional<uint64_t> t = proposeShareTarget(order, {}, o);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 250u);
  std::vector<SharePoint> points = {{250, 200, true, 0.9, 0}};
  t = proposeShareTarget(order, points, o);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 1000u);
}

// A room smaller than every weight gives an empty share: not compiled.
TEST(ShareSearch, EmptyRoomIsSkipped) {
  ShareSearchOptions o;
  o.roomBytes = 50;
  std::optional<uint64_t> t = proposeShareTarget(uniform(10, 100), {}, o);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 1000u);
}

// Everything overshoots by 600: the next try is 1000 - 600 (state on the
// device is live all step, so the overshoot is what has to come off).
TEST(ShareSearch, OvershootGivesTheFrontier) {
  std::vector<ShareWeight> order = uniform(10, 100);
  ShareSearchOptions o;
  o.baselineStepS = 1.0;
  std::vector<SharePoint> points = {{1000, 1000, false, 0.2, 600}};
  std::optional<uint64_t> t = proposeShareTarget(order, points, o);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 400u);
}

// With the step falling as the share grows and a fit limit of 430 bytes
// (the weights are 100 bytes: the largest share that fits is 400), the
// search finds 400 and stops within the limit on compiles.
TEST(ShareSearch, FindsTheLargestShareThatFits) {
  std::vector<ShareWeight> order = uniform(10, 100);
  ShareSearchOptions o;
  o.roomBytes = 120;
  o.baselineStepS = 1.0;
  std::vector<SharePoint> points = search(order, o, [](uint64_t share) {
    return fallingStep(share, 430, 1.0, 1e-3);
  });
  ASSERT_FALSE(points.empty());
  std::optional<size_t> best = bestSharePoint(points, o.baselineStepS);
  ASSERT_TRUE(best);
  EXPECT_EQ(points[*best].shareBytes, 400u);
  EXPECT_TRUE(points[*best].fits);
  // room (100 taken), everything (over by 570), 1000 - 570 = 430 (400
  // taken, fits), then bisection below and above it.
  EXPECT_EQ(points[0].shareBytes, 100u);
  EXPECT_EQ(points[1].shareBytes, 1000u);
  EXPECT_FALSE(points[1].fits);
  EXPECT_EQ(points[2].shareBytes, 400u);
  EXPECT_LE(points.size(), 8u);
}

// The overshoot is optimistic (more state also means more recomputation,
// which misses its aim): it falls at half the rate of the share, which the
// second cut measures from the first two points (a secant) and lands on the
// frontier.
TEST(ShareSearch, OptimisticOvershootStillConverges) {
  std::vector<ShareWeight> order = uniform(64, 16); // 1024 bytes
  ShareSearchOptions o;
  o.baselineStepS = 1.0;
  o.maxCandidates = 8;
  std::vector<SharePoint> points = search(order, o, [](uint64_t share) {
    SharePoint p = fallingStep(share, 300, 1.0, 1e-3);
    p.overshootBytes /= 2; // reports half of what must come off
    return p;
  });
  std::optional<size_t> best = bestSharePoint(points, o.baselineStepS);
  ASSERT_TRUE(best);
  EXPECT_LE(points[*best].shareBytes, 300u);
  // everything (over by 362), 1024 - 362 = 662 (656 taken, over by 178),
  // then the secant: the overshoot fell 184 over 362 bytes, so 662 - 178 /
  // 0.508 = 312 (304 taken, over by 2), and so on: the largest share that
  // fits is 288 (the weights are 16 bytes).
  EXPECT_EQ(points[*best].shareBytes, 288u);
  EXPECT_EQ(points[1].targetBytes, 662u);
  EXPECT_EQ(points[2].shareBytes, 304u);
}

// A step that falls, then rises once the recomputation costs more than the
// host updates it saves (minimum at 500 bytes), with everything fitting:
// the search bisects towards the minimum instead of taking the largest
// share.
TEST(ShareSearch, BisectsTowardsAnInteriorMinimum) {
  std::vector<ShareWeight> order = uniform(100, 10); // 1000 bytes
  ShareSearchOptions o;
  o.baselineStepS = 1.0;
  std::vector<SharePoint> points = search(order, o, [](uint64_t share) {
    double x = double(share) - 500;
    SharePoint p;
    p.fits = true;
    p.stepS = 0.5 + x * x * 1e-6;
    return p;
  });
  std::optional<size_t> best = bestSharePoint(points, o.baselineStepS);
  ASSERT_TRUE(best);
  EXPECT_EQ(points[*best].shareBytes, 500u);
  EXPECT_EQ(points[0].shareBytes, 1000u); // everything, first (no room)
}

// Nothing fits but the empty share: the search gives up within the limit
// and there is no best point.
TEST(ShareSearch, NothingFits) {
  std::vector<ShareWeight> order = uniform(8, 128);
  ShareSearchOptions o;
  o.baselineStepS = 1.0;
  std::vector<SharePoint> points = search(order, o, [](uint64_t share) {
    return fallingStep(share, 0, 1.0, 1e-3);
  });
  EXPECT_FALSE(points.empty());
  EXPECT_LE(points.size(), o.maxCandidates);
  EXPECT_FALSE(bestSharePoint(points, o.baselineStepS).has_value());
}

// A share that fits but is slower than offloading everything is not kept;
// one no slower is (ties: the smaller share).
TEST(ShareSearch, BestIsNoSlowerThanBaseline) {
  std::vector<SharePoint> points = {{100, 100, true, 1.2, 0},
                                    {50, 50, true, 1.0, 0},
                                    {40, 40, true, 1.0, 0},
                                    {300, 300, false, 0.1, 20}};
  std::optional<size_t> best = bestSharePoint(points, 1.0);
  ASSERT_TRUE(best);
  EXPECT_EQ(*best, 2u);
  EXPECT_FALSE(bestSharePoint({{100, 100, true, 1.2, 0}}, 1.0).has_value());
}

// The search never compiles two targets that give the same share.
TEST(ShareSearch, NoDuplicateShares) {
  std::vector<ShareWeight> order = {{"big", 900}, {"a", 50}, {"b", 50}};
  ShareSearchOptions o;
  o.roomBytes = 60;
  o.baselineStepS = 1.0;
  std::vector<SharePoint> points = search(order, o, [](uint64_t share) {
    return fallingStep(share, 950, 1.0, 1e-4);
  });
  for (size_t i = 0; i < points.size(); ++i)
    for (size_t j = i + 1; j < points.size(); ++j)
      EXPECT_NE(points[i].shareBytes, points[j].shareBytes);
  std::optional<size_t> best = bestSharePoint(points, o.baselineStepS);
  ASSERT_TRUE(best);
  EXPECT_EQ(points[*best].shareBytes, 950u); // big + a
}

// Everything overshot by 900 of 1400 bytes and 1400 - 900 = 500 fits: the
// estimate says 500 is the frontier, so the search does not bisect above it
// (each such compile would overshoot) but turns to the interval below,
// between the room's share and 500.
TEST(ShareSearch, AtTheFrontierTurnsBelow) {
  std::vector<ShareWeight> order = uniform(140, 10); // 1400 bytes
  ShareSearchOptions o;
  o.roomBytes = 20;
  o.baselineStepS = 1.0;
  std::vector<SharePoint> points = {{20, 20, true, 0.95, 0},
                                    {1400, 1400, false, 0.5, 900},
                                    {500, 500, true, 0.8, 0}};
  std::optional<uint64_t> t = proposeShareTarget(order, points, o);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 260u); // (20 + 500) / 2
}
