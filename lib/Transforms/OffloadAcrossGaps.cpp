//===- OffloadAcrossGaps.cpp - Park device buffers in host memory between uses ===//
//
// A device buffer that is idle for a long stretch of the step (an
// activation saved in the forward and read again in the backward, a weight
// fetched for the forward and needed again for its gradient) can spend the
// gap in the host arena: an offload copy after the use before the gap, a
// prefetch copy before the use after it, and the later uses read the
// fetched buffer. Greedy under a budget: while the device's liveness peak is
// over `budget-bytes`, park the largest buffer idle across the peak.
//
// The copies run on their own streams (1: host to device, 2: device to
// host) and events order them against the compute stream 0, so that they
// hide behind compute: the offload starts behind the last use and stream 0
// waits for it only once the cost model's compute time since then covers
// the copy (at the latest, before the peak it relieves); the prefetch is
// issued that much compute time before the first use (at the earliest,
// after the peak), and stream 0 waits for it right before the use. Live
// ranges follow the streams (streamLiveSpans): the device buffer is held
// until stream 0's wait, the fetched one from the issue point. When a later
// round's peak falls inside a lead window, that lead is shortened first (the
// issue moved after the peak, or the wait before it): cheaper than parking
// another buffer.
//
//===----------------------------------------------------------------------===//

#include "colossal/Analysis/CostModel.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/Transforms/PlanCost.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/MemoryBuffer.h"

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
/// Marks a device buffer this pass parked (never parked twice).
constexpr llvm::StringLiteral kParkedAttr = "colossal.parked";
/// On a device copy of an offloaded master weight, fetched on the H2D
/// stream by colossal-lower-to-plan (parked like a stream-0 fetch).
constexpr llvm::StringLiteral kWeightFetchAttr = "colossal.weight_fetch";
/// On a fetched buffer: its prefetch lead was shortened to meet the budget.
constexpr llvm::StringLiteral kLeadShortenedAttr = "colossal.lead_shortened";

/// The streams of a plan, by role (docs/planner.md, "Streams and events").
constexpr int64_t kComputeStream = 0, kH2DStream = 1, kD2HStream = 2;
const char *const kStreamKinds[] = {"compute", "copy", "copy", "host"};

/// Declares at least `n` streams on the plan function, with their kinds.
void ensureStreams(func::FuncOp func, int64_t n) {
  int64_t have = 1;
  if (auto a = func->getAttrOfType<IntegerAttr>("cplan.num_streams"))
    have = a.getInt();
  if (have >= n && func->hasAttr("cplan.stream_kinds"))
    return;
  n = std::max(n, have);
  Builder b(func.getContext());
  SmallVector<Attribute> kinds;
  for (int64_t s = 0; s < n; ++s)
    kinds.push_back(b.getStringAttr(s < 4 ? kStreamKinds[s] : "compute"));
  func->setAttr("cplan.num_streams", b.getI64IntegerAttr(n));
  func->setAttr("cplan.stream_kinds", b.getArrayAttr(kinds));
}

/// A fresh event index of the plan function.
int64_t newEvent(func::FuncOp func) {
  int64_t n = 0;
  if (auto a = func->getAttrOfType<IntegerAttr>("cplan.num_events"))
    n = a.getInt();
  func->setAttr("cplan.num_events",
                Builder(func.getContext()).getI64IntegerAttr(n + 1));
  return n;
}

plan::BufferAllocOp bufferOf(Value view) {
  if (auto v = view.getDefiningOp<plan::ViewOp>())
    return v.getBuffer().getDefiningOp<plan::BufferAllocOp>();
  return {};
}

/// What this pass placed for one parked buffer, to shorten its leads later.
struct Parked {
  plan::BufferAllocOp fetched;
  /// The offload's join: stream 0's wait for the copy to the host.
  Operation *offloadWait = nullptr;
  /// The prefetch's issue: stream 0's record, stream 1's wait, the copy and
  /// its record, moved together.
  SmallVector<Operation *, 4> issue;
  Operation *offloadDone = nullptr; ///< the D2H stream's record
  Operation *fetchWait = nullptr;   ///< stream 0's wait before the use
  int timesShortened = 0; ///< bounded: each move is monotone, but cheap
};

/// The weight fetches of colossal-lower-to-plan, as Parked records without
/// an offload: stream 0's record E, stream 1's wait E, with updates across
/// the step boundary stream 1's wait for the master's update, the copy into
/// the fetched buffer and stream 1's record F (issue), and stream 0's wait
/// F before the use (fetchWait). A fetch of another shape is left alone.
void collectWeightFetches(func::FuncOp func, std::vector<Parked> &out) {
  llvm::DenseMap<int64_t, Operation *> computeWaits;
  func.walk([&](plan::EventWaitOp w) {
    if (w.getStream() == kComputeStream)
      computeWaits[static_cast<int64_t>(w.getEvent())] = w;
  });
  func.walk([&](plan::CopyOp copy) {
    if (copy.getStream() != kH2DStream)
      return;
    auto view = copy.getTarget().getDefiningOp<plan::ViewOp>();
    auto alloc = view ? view.getBuffer().getDefiningOp<plan::BufferAllocOp>()
                      : plan::BufferAllocOp();
    if (!alloc || !alloc->hasAttr(kWeightFetchAttr))
      return;
    auto streamWait = dyn_cast_or_null<plan::EventWaitOp>(copy->getPrevNode());
    // The wait for the master's update (cplan.carried_streams), if any,
    // sits between the issue's wait and the copy.
    plan::EventWaitOp updateWait;
    if (streamWait && streamWait.getStream() == kH2DStream)
      if (auto before = dyn_cast_or_null<plan::EventWaitOp>(
              streamWait->getPrevNode()))
        if (before.getStream() == kH2DStream) {
          updateWait = streamWait;
          streamWait = before;
        }
    auto issueRecord = streamWait ? dyn_cast_or_null<plan::EventRecordOp>(
                                        streamWait->getPrevNode())
                                  : plan::EventRecordOp();
    auto doneRecord = dyn_cast_or_null<plan::EventRecordOp>(copy->getNextNode());
    if (!streamWait || !issueRecord || !doneRecord ||
        streamWait.getStream() != kH2DStream ||
        issueRecord.getStream() != kComputeStream ||
        issueRecord.getEvent() != streamWait.getEvent() ||
        doneRecord.getStream() != kH2DStream)
      return;
    auto it = computeWaits.find(static_cast<int64_t>(doneRecord.getEvent()));
    if (it == computeWaits.end())
      return;
    Parked p;
    p.fetched = alloc;
    p.issue = {issueRecord, streamWait, copy, doneRecord};
    if (updateWait)
      p.issue.insert(p.issue.begin() + 2, updateWait);
    p.fetchWait = it->second;
    out.push_back(std::move(p));
  });
}

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

int64_t mlir::colossal::instructionStream(Operation *op) {
  if (auto k = dyn_cast<plan::KernelOp>(op))
    return k.getStream();
  if (auto c = dyn_cast<plan::CopyOp>(op))
    return c.getStream();
  if (auto r = dyn_cast<plan::EventRecordOp>(op))
    return r.getStream();
  if (auto w = dyn_cast<plan::EventWaitOp>(op))
    return w.getStream();
  return 0;
}

double mlir::colossal::predictedSeconds(Operation *op,
                                        const DeviceProfile &profile) {
  CostInstr c;
  if (auto k = dyn_cast<plan::KernelOp>(op)) {
    StringRef name = k.getOp();
    const ::colossal::runtime::OpInfo *info =
        ::colossal::runtime::lookupOp(std::string_view(name.data(), name.size()));
    if (!info)
      return 0;
    c.op = info->kind;
    SmallVector<Type> outTypes;
    for (Value v : k.getIns())
      if (auto t = toTensorType(v.getType()))
        c.inputs.push_back(*t);
    for (Value v : k.getOuts()) {
      outTypes.push_back(v.getType());
      if (auto t = toTensorType(v.getType()))
        c.outputs.push_back(*t);
    }
    // The attributes the cost model reads: matmul's transpose_a, attention's
    // causal flag.
    if (c.op == ::colossal::runtime::OpKind::MatMul ||
        c.op == ::colossal::runtime::OpKind::Attention ||
        c.op == ::colossal::runtime::OpKind::AttentionGrad) {
      FailureOr<::colossal::runtime::Attrs> attrs =
          attrsFromMlir(k.getLoc(), c.op, k.getParams(), outTypes);
      if (failed(attrs))
        return 0;
      c.attrs = std::move(*attrs);
    }
    plan::BufferAllocOp out =
        k.getOuts().empty() ? plan::BufferAllocOp() : bufferOf(k.getOuts()[0]);
    c.placement = out && out.getSpace() == plan::MemorySpace::host
                      ? Placement::Host
                      : Placement::Device;
  } else if (auto copy = dyn_cast<plan::CopyOp>(op)) {
    c.kind = CostInstr::Kind::Copy;
    if (auto t = toTensorType(copy.getSource().getType()))
      c.inputs.push_back(*t);
    auto space = [](Value v) {
      plan::BufferAllocOp a = bufferOf(v);
      return a && a.getSpace() == plan::MemorySpace::host ? Placement::Host
                                                          : Placement::Device;
    };
    c.placement = space(copy.getSource());
    c.copyTo = space(copy.getTarget());
  } else {
    return 0;
  }
  return estimateInstr(c, profile).seconds;
}

namespace {

/// devices/h200.json's figures, when no `device-profile` is given.
DeviceProfile defaultProfile() {
  DeviceProfile p;
  p.name = "built-in H200 figures";
  p.hbmBytesPerS = 4.2e12;
  p.kernelFloorS = 3e-6;
  p.gemm[::colossal::runtime::DType::kF32] = {{0, 50e12}};
  p.gemm[::colossal::runtime::DType::kBF16] = {
      {1536, 700e12}, {512, 300e12}, {0, 150e12}};
  p.gemm[::colossal::runtime::DType::kF16] =
      p.gemm[::colossal::runtime::DType::kBF16];
  p.h2dBytesPerS = p.d2hBytesPerS = 55e9;
  p.bidirectionalBytesPerS = 100e9;
  p.copyLatencyS = 15e-6;
  p.cpuAdamwParamsPerS = 4.2e9;
  p.cpuBytesPerS = 118e9;
  return p;
}

} // namespace

FailureOr<DeviceProfile>
mlir::colossal::loadLeadProfile(Operation *at, llvm::StringRef path) {
  if (path.empty())
    return defaultProfile();
  auto text = llvm::MemoryBuffer::getFile(path);
  if (!text)
    return at->emitError() << "device-profile '" << path
                           << "': cannot read: " << text.getError().message();
  auto parsed = parseDeviceProfile((*text)->getBuffer());
  if (!parsed)
    return at->emitError() << "device-profile '" << path
                           << "': " << llvm::toString(parsed.takeError());
  return std::move(*parsed);
}

void OffloadAcrossGapsPass::runOnOperation() {
  func::FuncOp func = getOperation();
  if (budgetBytes <= 0)
    return;
  MLIRContext *ctx = &getContext();
  OpBuilder b(ctx);
  FailureOr<DeviceProfile> loaded = loadLeadProfile(func, deviceProfile);
  if (failed(loaded))
    return signalPassFailure();
  const DeviceProfile &profile = *loaded;
  std::vector<Parked> parked;
  int64_t shortened = 0;
  // colossal-lower-to-plan's weight fetches (H2D, issued a lead of predicted
  // compute ahead of their use) have the same shape as this pass's
  // prefetches: they are shortened the same way when the peak falls inside
  // their lead window (a forward whose fetches outrun the link otherwise
  // holds every fetched weight from the step's start).
  collectWeightFetches(func, parked);

  for (int round = 0; round < maxCopies; ++round) {
    // Instruction indices, programs and stream-aware spans (as
    // colossal-assign-offsets will compute them).
    llvm::DenseMap<Operation *, int64_t> index;
    SmallVector<Operation *> instrs;
    std::vector<StreamInstr> streamInstrs;
    std::vector<StreamProgram> programs;
    func.walk([&](Operation *op) {
      if (isa<plan::ProgramOp>(op)) {
        if (!programs.empty())
          programs.back().count = instrs.size() - programs.back().first;
        programs.push_back({static_cast<uint32_t>(instrs.size()), 0, 1});
      }
      if (!isInstruction(op))
        return;
      index[op] = instrs.size();
      instrs.push_back(op);
      StreamInstr s;
      s.stream = static_cast<uint32_t>(instructionStream(op));
      if (auto r = dyn_cast<plan::EventRecordOp>(op)) {
        s.sync = StreamInstr::Sync::Record;
        s.event = static_cast<int64_t>(r.getEvent());
      } else if (auto w = dyn_cast<plan::EventWaitOp>(op)) {
        s.sync = StreamInstr::Sync::Wait;
        s.event = static_cast<int64_t>(w.getEvent());
      }
      streamInstrs.push_back(s);
    });
    const int64_t count = instrs.size();
    if (count == 0)
      return;
    if (programs.empty())
      programs.push_back({0, static_cast<uint32_t>(count), 1});
    programs.back().count = count - programs.back().first;
    std::vector<std::pair<uint32_t, uint32_t>> spans =
        streamLiveSpans(streamInstrs, programs, carriedStreamsOf(func));

    std::vector<int64_t> live(count + 1, 0);
    SmallVector<std::pair<plan::BufferAllocOp, BufferUses>> candidates;
    func.walk([&](plan::BufferAllocOp alloc) {
      if (alloc.getSpace() != plan::MemorySpace::device)
        return;
      BufferUses uses = usesOf(alloc);
      int64_t first = 0, last = count - 1;
      bool sideStream = false;
      if (!uses.bound && !uses.instrs.empty()) {
        first = count;
        last = 0;
        for (Operation *u : uses.instrs) {
          first = std::min<int64_t>(first, spans[index[u]].first);
          last = std::max<int64_t>(last, spans[index[u]].second);
          sideStream |= instructionStream(u) != kComputeStream;
        }
      }
      int64_t size = alloc.getSizeAttr().getInt();
      live[first] += size;
      live[last + 1] -= size;
      // A weight fetched by colossal-lower-to-plan on the H2D stream: its
      // gaps are those between stream 0's uses (behind its wait for the
      // fetch), so the fetch itself is not one of them.
      if (alloc->hasAttr(kWeightFetchAttr) && !uses.instrs.empty() &&
          instructionStream(uses.instrs.front()) == kH2DStream &&
          isa<plan::CopyOp>(uses.instrs.front())) {
        uses.instrs.erase(uses.instrs.begin());
        sideStream = llvm::any_of(uses.instrs, [](Operation *u) {
          return instructionStream(u) != kComputeStream;
        });
      }
      // A buffer this pass fetched or parked is not parked again: its
      // first "use" is its own prefetch, and parking it would only move
      // the copy around. Nor is one a side stream touches.
      if (!uses.bound && uses.instrs.size() >= 2 && !sideStream &&
          !alloc->hasAttr(kFetchedAttr) && !alloc->hasAttr(kParkedAttr))
        candidates.push_back({alloc, std::move(uses)});
    });
    int64_t peak = 0, peakAt = 0, running = 0;
    std::vector<int64_t> liveAt(count);
    for (int64_t i = 0; i < count; ++i) {
      running += live[i];
      liveAt[i] = running;
      if (running > peak) {
        peak = running;
        peakAt = i;
      }
    }
    if (peak <= budgetBytes)
      break;
    Operation *peakOp = instrs[peakAt];

    // First, a lead window across the peak: shorten the largest such lead
    // (it frees the same bytes as parking, without another copy).
    Parked *shorten = nullptr;
    bool shortenIssue = false;
    int64_t shortenSize = 0;
    for (Parked &p : parked) {
      int64_t size = p.fetched.getSizeAttr().getInt();
      if (size <= shortenSize || p.timesShortened >= 8)
        continue;
      int64_t issueAt = index[p.issue.back()], fetchWaitAt = index[p.fetchWait];
      // The fetched bytes are held from the issue to the use, the parked
      // ones from the use before the gap to stream 0's wait (a weight
      // fetch has no offload).
      if (issueAt < peakAt && peakAt < fetchWaitAt) {
        shorten = &p;
        shortenIssue = true;
        shortenSize = size;
      } else if (p.offloadWait && index[p.offloadDone] < peakAt &&
                 peakAt < index[p.offloadWait]) {
        shorten = &p;
        shortenIssue = false;
        shortenSize = size;
      }
    }
    if (shorten) {
      if (shortenIssue) {
        // Issue right after the peak instruction (still before the use).
        Operation *after = peakOp;
        for (Operation *op : shorten->issue) {
          op->moveAfter(after);
          after = op;
        }
        shorten->fetched->setAttr(kLeadShortenedAttr, b.getUnitAttr());
        // The H2D stream runs its copies in issue order: a fetch issued
        // before the peak for a later use would now run ahead of this one
        // and delay it (OPT-6.7b under 24 GiB: layer 3's weights queued
        // behind layers 4 to 21's, stream 0 idle for 0.96 s). Such fetches
        // move behind it, in their order; that only shortens their leads.
        int64_t useAt = index[shorten->fetchWait];
        SmallVector<Parked *> behind;
        for (Parked &q : parked)
          if (&q != shorten && !q.issue.empty() &&
              index[q.issue.back()] < peakAt && index[q.fetchWait] > useAt)
            behind.push_back(&q);
        llvm::sort(behind, [&](Parked *x, Parked *y) {
          return index[x->issue.front()] < index[y->issue.front()];
        });
        for (Parked *q : behind)
          for (Operation *op : q->issue) {
            op->moveAfter(after);
            after = op;
          }
      } else {
        shorten->offloadWait->moveBefore(peakOp);
      }
      ++shorten->timesShortened;
      ++shortened;
      continue;
    }

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
      break; // nothing left to park; the budget check reports the rest
    ensureStreams(func, kD2HStream + 1);

    // Offload behind the last use before the gap, on the D2H stream.
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
    auto record = [&](int64_t event, int64_t stream) {
      return plan::EventRecordOp::create(b, loc, b.getI64IntegerAttr(event),
                                         b.getI64IntegerAttr(stream))
          .getOperation();
    };
    auto wait = [&](int64_t event, int64_t stream) {
      return plan::EventWaitOp::create(b, loc, b.getI64IntegerAttr(event),
                                       b.getI64IntegerAttr(stream))
          .getOperation();
    };
    best->setAttr(kParkedAttr, b.getUnitAttr());
    b.setInsertionPointAfter(gapStart);
    auto host = newAlloc(plan::MemorySpace::host);
    Value hostView = wholeView(host);
    Value oldView = wholeView(best);
    int64_t lastUseDone = newEvent(func), offloaded = newEvent(func);
    record(lastUseDone, kComputeStream);
    wait(lastUseDone, kD2HStream);
    plan::CopyOp::create(b, loc, oldView, hostView,
                         b.getI64IntegerAttr(kD2HStream));
    Operation *offloadDone = record(offloaded, kD2HStream);

    // The over-budget stretch inside the gap: the copies' leads stay out
    // of it (the wait before its start, the issue after its end).
    int64_t firstOver = peakAt, lastOver = peakAt;
    for (int64_t i = index[gapStart] + 1; i < index[gapEnd]; ++i)
      if (liveAt[i] > budgetBytes) {
        firstOver = std::min(firstOver, i);
        lastOver = std::max(lastOver, i);
      }

    // Stream 0 waits for the offload once the compute since the last use
    // covers the copy, and before the over-budget stretch at the latest.
    const double offloadS = bestSize / profile.d2hBytesPerS +
                            profile.copyLatencyS;
    Operation *waitBefore = instrs[firstOver];
    double covered = 0;
    for (int64_t i = index[gapStart] + 1; i < firstOver; ++i) {
      if (instructionStream(instrs[i]) != kComputeStream)
        continue;
      covered += predictedSeconds(instrs[i], profile);
      if (covered >= offloadS) {
        waitBefore = instrs[i + 1];
        break;
      }
    }
    if (index[waitBefore] <= index[gapStart])
      waitBefore = offloadDone->getNextNode();
    b.setInsertionPoint(waitBefore);
    Operation *offloadWait = wait(offloaded, kComputeStream);

    // The prefetch: issued on the H2D stream that much compute time before
    // the first use after the gap, after the peak at the earliest (an issue
    // before it would hold the fetched bytes across the peak again).
    const double fetchS = bestSize / profile.h2dBytesPerS +
                          profile.copyLatencyS;
    Operation *issueBefore = gapEnd;
    covered = 0;
    int64_t z = index[gapEnd];
    for (int64_t i = z - 1; i > lastOver; --i) {
      if (instructionStream(instrs[i]) != kComputeStream ||
          isa<plan::EventRecordOp, plan::EventWaitOp>(instrs[i]))
        continue;
      issueBefore = instrs[i];
      covered += predictedSeconds(instrs[i], profile);
      if (covered >= fetchS)
        break;
    }
    b.setInsertionPoint(issueBefore);
    auto fetched = newAlloc(plan::MemorySpace::device);
    fetched->setAttr(kFetchedAttr, b.getUnitAttr());
    if (covered < fetchS)
      fetched->setAttr(kLeadShortenedAttr, b.getUnitAttr());
    Value fetchedView = wholeView(fetched);
    int64_t issued = newEvent(func), prefetched = newEvent(func);
    Parked p;
    p.fetched = fetched;
    p.offloadWait = offloadWait;
    p.offloadDone = offloadDone;
    p.issue.push_back(record(issued, kComputeStream));
    p.issue.push_back(wait(issued, kH2DStream));
    p.issue.push_back(plan::CopyOp::create(b, loc, hostView, fetchedView,
                                           b.getI64IntegerAttr(kH2DStream))
                          .getOperation());
    p.issue.push_back(record(prefetched, kH2DStream));
    b.setInsertionPoint(gapEnd);
    p.fetchWait = wait(prefetched, kComputeStream);
    parked.push_back(p);

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
          if (!replacement) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPoint(gapEnd);
            replacement = plan::ViewOp::create(b, v.getLoc(), v.getType(),
                                               fetched.getResult(),
                                               v.getByteOffsetAttr())
                              .getResult();
          }
          use.set(replacement);
        }
      }
    }
  }
  if (shortened != 0)
    func->setAttr("colossal.leads_shortened", b.getI64IntegerAttr(shortened));
}
