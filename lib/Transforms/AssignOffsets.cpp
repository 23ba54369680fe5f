//===- AssignOffsets.cpp - Place buffers in the device and host arenas ----===//

#include "colossal/Analysis/CostModel.h"
#include "colossal/Analysis/OffsetPacker.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/Transforms/PlanCost.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#define DEBUG_TYPE "colossal-assign-offsets"

namespace mlir::colossal {
#define GEN_PASS_DEF_ASSIGNOFFSETSPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;

namespace {

struct AssignOffsetsPass
    : public mlir::colossal::impl::AssignOffsetsPassBase<AssignOffsetsPass> {
  void runOnOperation() override;
};

bool isInstruction(Operation *op) {
  return isa<plan::KernelOp, plan::CopyOp, plan::EventRecordOp,
             plan::EventWaitOp>(op);
}

/// An instruction's stream and event, as the stream analyses see it.
StreamInstr streamInstrOf(Operation *op) {
  StreamInstr s;
  if (auto k = dyn_cast<plan::KernelOp>(op))
    s.stream = static_cast<uint32_t>(k.getStream());
  else if (auto c = dyn_cast<plan::CopyOp>(op))
    s.stream = static_cast<uint32_t>(c.getStream());
  else if (auto r = dyn_cast<plan::EventRecordOp>(op)) {
    s.stream = static_cast<uint32_t>(r.getStream());
    s.sync = StreamInstr::Sync::Record;
    s.event = static_cast<int64_t>(r.getEvent());
  } else if (auto w = dyn_cast<plan::EventWaitOp>(op)) {
    s.stream = static_cast<uint32_t>(w.getStream());
    s.sync = StreamInstr::Sync::Wait;
    s.event = static_cast<int64_t>(w.getEvent());
  }
  return s;
}

} // namespace

void AssignOffsetsPass::runOnOperation() {
  func::FuncOp func = getOperation();
  llvm::DenseMap<Operation *, uint32_t> index;
  std::vector<StreamInstr> streamInstrs;
  uint32_t count = 0;
  func.walk([&](Operation *op) {
    if (isInstruction(op)) {
      index[op] = count++;
      streamInstrs.push_back(streamInstrOf(op));
    }
  });
  const uint32_t last = count ? count - 1 : 0;

  // Each program's instruction range [first, last], from the cplan.program
  // markers (an empty program gets [first, first]).
  llvm::StringMap<std::pair<uint32_t, uint32_t>> programRange;
  {
    std::string current;
    uint32_t at = 0;
    func.walk([&](Operation *op) {
      if (auto p = dyn_cast<plan::ProgramOp>(op)) {
        current = p.getName().str();
        programRange[current] = {at, at};
      } else if (index.count(op)) {
        if (!current.empty())
          programRange[current].second = at;
        ++at;
      }
    });
  }
  // What a touch at instruction i occupies: [i, i] on stream 0; for a copy
  // or host kernel on another stream, from after the last stream-0
  // instruction ordered before it to the first ordered after it (the
  // stream-0 wait for its event), so that bytes are reused only once every
  // stream is done with them (docs/planner.md, "Streams and events").
  std::vector<StreamProgram> programs;
  {
    SmallVector<std::pair<uint32_t, uint32_t>> ranges;
    for (auto &entry : programRange)
      ranges.push_back(entry.second);
    llvm::sort(ranges);
    for (auto [from, to] : ranges)
      if (from < count)
        programs.push_back({from, to - from + 1, 1});
    if (programs.empty() && count != 0)
      programs.push_back({0, count, 1});
  }
  std::vector<std::pair<uint32_t, uint32_t>> spans =
      streamLiveSpans(streamInstrs, programs, carriedStreamsOf(func));

  auto rangeOf = [&](plan::BindOp bind) -> std::pair<uint32_t, uint32_t> {
    if (auto p = bind.getProgram()) {
      auto it = programRange.find(*p);
      if (it != programRange.end())
        return it->second;
    }
    return {0, last};
  };

  SmallVector<plan::BufferAllocOp> allocs;
  func.walk([&](plan::BufferAllocOp a) { allocs.push_back(a); });
  if (allocs.empty())
    return;

  // Live range of each buffer: every instruction that touches one of its
  // views; bindings stretch it to the step's start (inputs, weights,
  // constants) or end (outputs, weights, constants).
  std::vector<PackItem> items(allocs.size());
  for (auto [i, alloc] : llvm::enumerate(allocs)) {
    uint32_t first = UINT32_MAX, lastUse = 0;
    auto touch = [&](uint32_t at) {
      first = std::min(first, at);
      lastUse = std::max(lastUse, at);
    };
    for (Operation *viewUser : alloc->getUsers()) {
      auto view = dyn_cast<plan::ViewOp>(viewUser);
      if (!view) {
        alloc.emitOpError() << "is used by " << viewUser->getName()
                            << "; buffers may only be used by cplan.view";
        return signalPassFailure();
      }
      for (Operation *user : view->getUsers()) {
        if (auto it = index.find(user); it != index.end()) {
          touch(spans[it->second].first);
          touch(spans[it->second].second);
        } else if (auto bind = dyn_cast<plan::BindOp>(user)) {
          // Inputs are written before their program's first instruction,
          // outputs read after its last; the rest persist.
          switch (bind.getRole()) {
          case plan::BindingRole::input:
            touch(rangeOf(bind).first);
            break;
          case plan::BindingRole::output:
            touch(rangeOf(bind).second);
            break;
          case plan::BindingRole::weight:
          case plan::BindingRole::constant:
          case plan::BindingRole::state:
            touch(0);
            touch(last);
            break;
          }
        }
      }
    }
    if (first == UINT32_MAX) // never used: keep it, at the start
      first = lastUse = 0;
    items[i].sizeBytes = static_cast<uint64_t>(alloc.getSize());
    items[i].alignBytes = static_cast<uint64_t>(alloc.getAlign());
    items[i].firstUse = first;
    items[i].lastUse = lastUse;
  }

  // One arena per memory space; pack each separately.
  OpBuilder b(func);
  SmallVector<int64_t> arenaBytes, lowerBounds;
  for (plan::MemorySpace space :
       {plan::MemorySpace::device, plan::MemorySpace::host}) {
    std::vector<PackItem> spaceItems;
    std::vector<size_t> which;
    for (auto [i, alloc] : llvm::enumerate(allocs))
      if (alloc.getSpace() == space) {
        spaceItems.push_back(items[i]);
        which.push_back(i);
      }
    PackResult packed = packIntervals(spaceItems);
    for (auto [k, i] : llvm::enumerate(which)) {
      plan::BufferAllocOp alloc = allocs[i];
      alloc.setLiveAttr(b.getDenseI64ArrayAttr(
          {static_cast<int64_t>(items[i].firstUse),
           static_cast<int64_t>(items[i].lastUse)}));
      alloc.setOffsetAttr(
          b.getI64IntegerAttr(static_cast<int64_t>(packed.offsets[k])));
    }
    arenaBytes.push_back(static_cast<int64_t>(packed.arenaBytes));
    lowerBounds.push_back(static_cast<int64_t>(packed.lowerBoundBytes));
  }
  func->setAttr("cplan.arena_bytes", b.getDenseI64ArrayAttr(arenaBytes));
  func->setAttr("cplan.lower_bound_bytes", b.getDenseI64ArrayAttr(lowerBounds));
}
