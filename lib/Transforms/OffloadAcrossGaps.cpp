//===- OffloadAcrossGaps.cpp - Park device buffers in host memory between uses ===//
//
// A device buffer that is idle for a long stretch of the step (an
// activation saved in the forward and read again in the backward, a weight
// fetched for the forward and needed again for its gradient) can spend the
// gap in the host arena: an offload copy right after the use before the gap,
// a prefetch copy right before the use after it, and the later uses read the
// fetched buffer. Greedy under a budget: while the device's liveness peak is
// over `budget-bytes`, park the largest buffer idle across the peak.
//
//===----------------------------------------------------------------------===//

#include "colossal/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"

#include <map>

#define DEBUG_TYPE "colossal-offload-across-gaps"

namespace mlir::colossal {
#define GEN_PASS_DEF_OFFLOADACROSSGAPSPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;

namespace {

struct OffloadAcrossGapsPass
    : public mlir::colossal::impl::OffloadAcrossGapsPassBase<
          OffloadAcrossGapsPass> {
  using OffloadAcrossGapsPassBase::OffloadAcrossGapsPassBase;
  void runOnOperation() override;
};

/// Marks the device buffers this pass created by a prefetch.
constexpr llvm::StringLiteral kFetchedAttr = "colossal.fetched";

bool isInstruction(Operation *op) {
  return isa<plan::KernelOp, plan::CopyOp, plan::EventRecordOp,
             plan::EventWaitOp>(op);
}

/// The instructions that touch a buffer (through any of its views), in
/// order, and whether a binding pins it (inputs, outputs, weights, states
/// and constants are never parked).
struct BufferUses {
  SmallVector<Operation *> instrs;
  bool bound = false;
};

BufferUses usesOf(plan::BufferAllocOp alloc) {
  BufferUses uses;
  llvm::SmallPtrSet<Operation *, 8> seen;
  for (Operation *viewUser : alloc->getUsers())
    for (Operation *user : viewUser->getUsers()) {
      if (isa<plan::BindOp>(user))
        uses.bound = true;
      else if (isInstruction(user) && seen.insert(user).second)
        uses.instrs.push_back(user);
    }
  llvm::sort(uses.instrs, [](Operation *a, Operation *b) {
    return a->isBeforeInBlock(b);
  });
  return uses;
}

} // namespace

void OffloadAcrossGapsPass::runOnOperation() {
  func::FuncOp func = getOperation();
  if (budgetBytes <= 0)
    return;
  MLIRContext *ctx = &getContext();
  OpBuilder b(ctx);

  for (int round = 0; round < maxCopies; ++round) {
    // Instruction indices and the device liveness profile.
    llvm::DenseMap<Operation *, int64_t> index;
    int64_t count = 0;
    func.walk([&](Operation *op) {
      if (isInstruction(op))
        index[op] = count++;
    });
    if (count == 0)
      return;
    std::vector<int64_t> live(count + 1, 0);
    SmallVector<std::pair<plan::BufferAllocOp, BufferUses>> candidates;
    func.walk([&](plan::BufferAllocOp alloc) {
      if (alloc.getSpace() != plan::MemorySpace::device)
        return;
      BufferUses uses = usesOf(alloc);
      int64_t first = 0, last = count - 1;
      if (!uses.bound && !uses.instrs.empty()) {
        first = index[uses.instrs.front()];
        last = index[uses.instrs.back()];
      }
      int64_t size = alloc.getSizeAttr().getInt();
      live[first] += size;
      live[last + 1] -= size;
      // A buffer this pass fetched is not parked again: its first "use" is
      // its own prefetch, and parking it would only move the copy around.
      if (!uses.bound && uses.instrs.size() >= 2 &&
          !alloc->hasAttr(kFetchedAttr))
        candidates.push_back({alloc, std::move(uses)});
    });
    int64_t peak = 0, peakAt = 0, running = 0;
    for (int64_t i = 0; i < count; ++i) {
      running += live[i];
      if (running > peak) {
        peak = running;
        peakAt = i;
      }
    }
    if (peak <= budgetBytes)
      return;

    // The largest buffer idle across the peak (a gap of at least
    // min-gap instructions strictly around it); ties: earliest.
    plan::BufferAllocOp best;
    Operation *gapStart = nullptr, *gapEnd = nullptr;
    int64_t bestSize = 0;
    for (auto &[alloc, uses] : candidates) {
      int64_t size = alloc.getSizeAttr().getInt();
      if (size < minBytes || size <= bestSize)
        continue;
      for (size_t k = 0; k + 1 < uses.instrs.size(); ++k) {
        int64_t a = index[uses.instrs[k]], z = index[uses.instrs[k + 1]];
        if (a < peakAt && peakAt < z && z - a >= minGap) {
          best = alloc;
          bestSize = size;
          gapStart = uses.instrs[k];
          gapEnd = uses.instrs[k + 1];
          break;
        }
      }
    }
    if (!best)
      return; // nothing left to park; the budget check reports the rest

    // Offload after the last use before the gap, prefetch before the first
    // use after it, as whole-buffer byte copies.
    Location loc = best.getLoc();
    auto bytes = MemRefType::get({bestSize}, IntegerType::get(
                                                 ctx, 8, IntegerType::Unsigned));
    auto newAlloc = [&](plan::MemorySpace space) {
      return plan::BufferAllocOp::create(
          b, loc, plan::BufferType::get(ctx),
          plan::MemorySpaceAttr::get(ctx, space), best.getSizeAttr(),
          best.getAlignAttr(), DenseI64ArrayAttr(), IntegerAttr());
    };
    auto wholeView = [&](Value buffer) {
      return plan::ViewOp::create(b, loc, bytes, buffer,
                                  b.getI64IntegerAttr(0))
          .getResult();
    };
    b.setInsertionPointAfter(gapStart);
    auto host = newAlloc(plan::MemorySpace::host);
    Value hostView = wholeView(host);
    Value oldView = wholeView(best);
    plan::CopyOp::create(b, loc, oldView, hostView, b.getI64IntegerAttr(0));
    b.setInsertionPoint(gapEnd);
    auto fetched = newAlloc(plan::MemorySpace::device);
    fetched->setAttr(kFetchedAttr, b.getUnitAttr());
    Value fetchedView = wholeView(fetched);
    plan::CopyOp::create(b, loc, hostView, fetchedView,
                         b.getI64IntegerAttr(0));
    // Later uses read the fetched buffer, through views like the old ones.
    SmallVector<plan::ViewOp> oldViews;
    for (Operation *u : best->getUsers())
      if (auto v = dyn_cast<plan::ViewOp>(u))
        oldViews.push_back(v);
    for (plan::ViewOp v : oldViews) {
      Value replacement;
      for (OpOperand &use : llvm::make_early_inc_range(v->getUses())) {
        Operation *user = use.getOwner();
        if (user == gapEnd || gapEnd->isBeforeInBlock(user)) {
          if (!replacement)
            replacement = plan::ViewOp::create(b, v.getLoc(), v.getType(),
                                               fetched.getResult(),
                                               v.getByteOffsetAttr())
                              .getResult();
          use.set(replacement);
        }
      }
    }
  }
}
