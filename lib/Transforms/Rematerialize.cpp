//===- Rematerialize.cpp - Recompute idle device buffers under a budget ---===//
//
// A buffer written by a cheap, pure kernel and read again much later (an
// activation saved in the forward for the backward) need not stay on the
// device in between: drop it after the use before the gap and run its
// producing kernel again right before the use after it, into a new buffer
// that the later uses read. The inputs of that kernel must still hold the
// same bytes then, so they stay live until the recompute: the choice
// (chooseRemat, lib/Analysis/RematChoice.cpp) charges those bytes, and
// weighs each recompute's predicted time against the bytes it frees at the
// peak and, when offload runs after this pass, against parking the buffer
// in host memory instead. An input that would be dead by then and is itself
// recomputable is recomputed too: a chain of up to `max-chain` kernels,
// cloned in order. This pass only turns the IR into the choice's records
// and applies the choice.
//
//===----------------------------------------------------------------------===//

#include "colossal/Analysis/CostModel.h"
#include "colossal/Analysis/RematChoice.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/Transforms/PlanCost.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/Support/MemoryBuffer.h"

#define DEBUG_TYPE "colossal-rematerialize"

namespace mlir::colossal {
#define GEN_PASS_DEF_REMATERIALIZEPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

/// Marks the recompute kernels and the buffers they write.
constexpr llvm::StringLiteral kRecomputeAttr = "colossal.recompute";
constexpr llvm::StringLiteral kRecomputedAttr = "colossal.recomputed";
/// The function's summary: {buffers, bytes, added_s}.
constexpr llvm::StringLiteral kRematSummaryAttr = "colossal.remat";

struct RematerializePass
    : public mlir::colossal::impl::RematerializePassBase<RematerializePass> {
  using RematerializePassBase::RematerializePassBase;
  void runOnOperation() override;

  /// The rates from `device-profile`, else from the scalar options.
  FailureOr<DeviceProfile> loadProfile();
};

bool isInstruction(Operation *op) {
  return isa<plan::KernelOp, plan::CopyOp, plan::EventRecordOp,
             plan::EventWaitOp>(op);
}

plan::BufferAllocOp bufferOf(Value view) {
  if (auto v = view.getDefiningOp<plan::ViewOp>())
    return v.getBuffer().getDefiningOp<plan::BufferAllocOp>();
  return {};
}

/// One device or host buffer as the choice sees it.
struct BufferInfo {
  plan::BufferAllocOp alloc;
  SmallVector<int64_t> uses;    ///< instruction indices touching it, sorted
  SmallVector<int64_t> writers; ///< those that write it, sorted
  bool bound = false;
  int64_t first = 0, last = 0; ///< live range, as colossal-assign-offsets
};

/// The plan function read once: instructions, programs and buffers.
struct PlanView {
  SmallVector<Operation *> instrs;
  SmallVector<int64_t> programOf; ///< per instruction: which program
  SmallVector<BufferInfo> buffers;
  llvm::DenseMap<Operation *, int64_t> bufferId;
  llvm::DenseMap<Operation *, int64_t> index;

  int64_t idOf(Value view) const {
    plan::BufferAllocOp b = bufferOf(view);
    if (!b)
      return -1;
    auto it = bufferId.find(b.getOperation());
    return it == bufferId.end() ? -1 : it->second;
  }
};

PlanView readPlan(func::FuncOp func) {
  PlanView p;
  // Programs: each cplan.program starts one; bindings of inputs and outputs
  // live from their program's first instruction to its last.
  llvm::StringMap<std::pair<int64_t, int64_t>> programRange;
  int64_t program = 0;
  std::string current;
  func.walk([&](Operation *op) {
    if (auto marker = dyn_cast<plan::ProgramOp>(op)) {
      ++program;
      current = marker.getName().str();
      programRange[current] = {static_cast<int64_t>(p.instrs.size()),
                               static_cast<int64_t>(p.instrs.size())};
    } else if (isInstruction(op)) {
      if (!current.empty())
        programRange[current].second = static_cast<int64_t>(p.instrs.size());
      p.index[op] = static_cast<int64_t>(p.instrs.size());
      p.instrs.push_back(op);
      p.programOf.push_back(program);
    }
  });
  const int64_t lastInstr = static_cast<int64_t>(p.instrs.size()) - 1;

  func.walk([&](plan::BufferAllocOp alloc) {
    BufferInfo info;
    info.alloc = alloc;
    int64_t first = INT64_MAX, last = INT64_MIN;
    auto touch = [&](int64_t at) {
      first = std::min(first, at);
      last = std::max(last, at);
    };
    for (Operation *viewUser : alloc->getUsers()) {
      for (OpOperand &use : viewUser->getUses()) {
        Operation *user = use.getOwner();
        if (auto it = p.index.find(user); it != p.index.end()) {
          touch(it->second);
          info.uses.push_back(it->second);
          bool writes = false;
          if (auto k = dyn_cast<plan::KernelOp>(user))
            writes = use.getOperandNumber() >= k.getIns().size();
          else if (auto c = dyn_cast<plan::CopyOp>(user))
            writes = use.get() == c.getTarget();
          if (writes)
            info.writers.push_back(it->second);
        } else if (auto bind = dyn_cast<plan::BindOp>(user)) {
          info.bound = true;
          std::pair<int64_t, int64_t> range = {0, lastInstr};
          if (auto name = bind.getProgram())
            if (auto r = programRange.find(*name); r != programRange.end())
              range = r->second;
          switch (bind.getRole()) {
          case plan::BindingRole::input:
            touch(range.first);
            break;
          case plan::BindingRole::output:
            touch(range.second);
            break;
          case plan::BindingRole::weight:
          case plan::BindingRole::constant:
          case plan::BindingRole::state:
            touch(0);
            touch(lastInstr);
            break;
          }
        }
      }
    }
    if (first == INT64_MAX)
      first = last = 0;
    info.first = first;
    info.last = last;
    for (auto *list : {&info.uses, &info.writers}) {
      llvm::sort(*list);
      list->erase(std::unique(list->begin(), list->end()), list->end());
    }
    p.bufferId[alloc.getOperation()] = static_cast<int64_t>(p.buffers.size());
    p.buffers.push_back(std::move(info));
  });
  return p;
}


/// Whether buffer `id` could be written again by re-running its producer: an
/// unbound device buffer written once, by the kernel that first touches it,
/// through one view covering all of it; that kernel is pure (not the
/// in-place optimizer updates), its outputs are distinct device buffers and
/// none of them is also an input, and its inputs are device buffers. Every
/// instruction touching it runs on the compute stream: a recompute goes on
/// that stream right before a later reader, which another stream's reader
/// (a gradient's copy to the host) would not wait for.
bool isRecomputable(PlanView &plan, int64_t id) {
  BufferInfo &buf = plan.buffers[id];
  if (buf.alloc.getSpace() != plan::MemorySpace::device || buf.bound ||
      buf.writers.size() != 1 || buf.writers[0] != buf.uses[0])
    return false;
  for (int64_t u : buf.uses) {
    auto stream = plan.instrs[u]->getAttrOfType<IntegerAttr>("stream");
    if (stream && stream.getInt() != 0)
      return false;
  }
  auto producer = dyn_cast<plan::KernelOp>(plan.instrs[buf.uses[0]]);
  if (!producer || producer.getOp() == "adamw" ||
      producer.getOp() == "adamw_norm" || producer.getOp() == "sgd")
    return false;
  SmallVector<int64_t> outIds;
  int64_t coveringOuts = 0;
  for (Value out : producer.getOuts()) {
    int64_t o = plan.idOf(out);
    if (o < 0 || llvm::is_contained(outIds, o) ||
        plan.buffers[o].alloc.getSpace() != plan::MemorySpace::device)
      return false;
    outIds.push_back(o);
    if (o == id) {
      std::optional<rt::TensorType> t = toTensorType(out.getType());
      if (t && t->sizeBytes() == static_cast<uint64_t>(buf.alloc.getSize()) &&
          out.getDefiningOp<plan::ViewOp>().getByteOffset() == 0)
        ++coveringOuts;
    }
  }
  for (Value in : producer.getIns()) {
    int64_t i = plan.idOf(in);
    if (i < 0 || llvm::is_contained(outIds, i) ||
        plan.buffers[i].alloc.getSpace() != plan::MemorySpace::device)
      return false;
  }
  return coveringOuts == 1;
}

/// The kernels that recompute one buffer before instruction z.
struct Chain {
  SmallVector<int64_t> kernels; ///< instruction indices, in IR order
  SmallVector<int64_t> leaves;  ///< buffers read as they are, kept to z
  SmallVector<int64_t> written; ///< every output of the kernels
  double seconds = 0;           ///< the kernels' predicted time
};

/// The chain recomputing `root` right before instruction `z`, of at most
/// `limit` kernels: from the root's producer, an input that would die before
/// z and is itself recomputable (same program) is recomputed too, while the
/// chain has room; any other input is a leaf, kept live until z, and must
/// not be written between its first read in the chain and z. None when a
/// leaf is rewritten or a kernel has no predicted time.
std::optional<Chain> buildChain(PlanView &plan, int64_t root, int64_t z,
                                int64_t limit, const DeviceProfile &profile) {
  llvm::SetVector<int64_t> kernels;
  kernels.insert(plan.buffers[root].uses[0]);
  llvm::MapVector<int64_t, int64_t> leafReader; // leaf -> first reader
  llvm::SetVector<int64_t> written;
  Chain chain;
  // Breadth first from the root: the links nearest the root come first.
  for (size_t w = 0; w < kernels.size(); ++w) {
    const int64_t at = kernels[w];
    auto kernel = cast<plan::KernelOp>(plan.instrs[at]);
    const double s = predictedSeconds(kernel, profile);
    if (s <= 0)
      return std::nullopt;
    chain.seconds += s;
    for (Value out : kernel.getOuts())
      written.insert(plan.idOf(out));
    for (Value in : kernel.getIns()) {
      const int64_t i = plan.idOf(in);
      BufferInfo &input = plan.buffers[i];
      if (kernels.contains(input.uses[0]) && input.writers.size() == 1 &&
          input.writers[0] == input.uses[0])
        continue; // an intermediate of the chain
      if (auto it = leafReader.find(i); it != leafReader.end()) {
        it->second = std::min(it->second, at);
        continue;
      }
      if (input.last < z && static_cast<int64_t>(kernels.size()) < limit &&
          isRecomputable(plan, i) &&
          plan.programOf[input.uses[0]] == plan.programOf[z]) {
        kernels.insert(input.uses[0]);
        continue;
      }
      leafReader[i] = at;
    }
  }
  // The leaves must hold the same bytes at z as when the chain read them,
  // and no clone may write one (the later clones would read the copy).
  for (auto [leaf, reader] : leafReader) {
    if (written.contains(leaf) ||
        llvm::any_of(plan.buffers[leaf].writers,
                     [&](int64_t w) { return reader < w && w < z; }))
      return std::nullopt;
    chain.leaves.push_back(leaf);
  }
  chain.kernels.assign(kernels.begin(), kernels.end());
  llvm::sort(chain.kernels);
  chain.written.assign(written.begin(), written.end());
  return chain;
}

/// What applying a candidate needs besides the choice's record.
struct CandidateSite {
  SmallVector<plan::KernelOp> chain; ///< in IR order; the last writes it
  Operation *gapEnd = nullptr;
};

} // namespace

FailureOr<DeviceProfile> RematerializePass::loadProfile() {
  if (deviceProfile.empty()) {
    DeviceProfile p;
    p.name = "pass options";
    p.hbmBytesPerS = hbmBytesPerS;
    p.kernelFloorS = kernelFloorS;
    p.h2dBytesPerS = h2dBytesPerS;
    p.d2hBytesPerS = d2hBytesPerS;
    p.bidirectionalBytesPerS = h2dBytesPerS + d2hBytesPerS;
    p.copyLatencyS = copyLatencyS;
    p.gemm[rt::DType::kF32] = {{0, gemmTflops * 1e12}};
    if (!(hbmBytesPerS > 0 && gemmTflops > 0 && kernelFloorS >= 0 &&
          h2dBytesPerS > 0 && d2hBytesPerS > 0 && copyLatencyS >= 0)) {
      getOperation().emitError()
          << "colossal-rematerialize: the rates hbm-bytes-per-s, gemm-tflops, "
             "h2d-bytes-per-s and d2h-bytes-per-s must be positive, and "
             "kernel-floor-s and copy-latency-s non-negative";
      return failure();
    }
    return p;
  }
  auto file = llvm::MemoryBuffer::getFile(deviceProfile);
  if (!file) {
    getOperation().emitError()
        << "colossal-rematerialize: cannot read the device profile '"
        << deviceProfile << "': " << file.getError().message();
    return failure();
  }
  llvm::Expected<DeviceProfile> p = parseDeviceProfile((*file)->getBuffer());
  if (!p) {
    getOperation().emitError()
        << "colossal-rematerialize: device profile '" << deviceProfile
        << "': " << llvm::toString(p.takeError());
    return failure();
  }
  return std::move(*p);
}

void RematerializePass::runOnOperation() {
  func::FuncOp func = getOperation();
  if (budgetBytes <= 0)
    return;
  if (maxChain < 1) {
    func.emitError() << "colossal-rematerialize: max-chain must be at least "
                        "1, got "
                     << maxChain;
    return signalPassFailure();
  }
  FailureOr<DeviceProfile> profile = loadProfile();
  if (failed(profile))
    return signalPassFailure();
  MLIRContext *ctx = &getContext();
  OpBuilder b(ctx);

  int64_t totalBuffers = 0, totalBytes = 0;
  double totalS = 0;
  // Each round reads the plan afresh, chooses a set of non-conflicting
  // recomputes and applies them; a later round sees the extended live
  // ranges exactly and may take what conflicted before.
  while (totalBuffers < maxRecomputes) {
    PlanView plan = readPlan(func);
    const int64_t numInstrs = static_cast<int64_t>(plan.instrs.size());
    if (numInstrs == 0)
      break;
    std::vector<RematInterval> live;
    for (BufferInfo &buf : plan.buffers)
      if (buf.alloc.getSpace() == plan::MemorySpace::device)
        live.push_back({static_cast<uint64_t>(buf.alloc.getSize()),
                        buf.first, buf.last});

    std::vector<RematCandidate> candidates;
    std::vector<CandidateSite> sites;
    for (auto [id, buf] : llvm::enumerate(plan.buffers)) {
      const int64_t size = buf.alloc.getSize();
      if (size < minBytes || buf.uses.size() < 2 ||
          !isRecomputable(plan, static_cast<int64_t>(id)))
        continue;
      const int64_t made = buf.uses[0];
      const double offloadS = size / profile->d2hBytesPerS +
                              size / profile->h2dBytesPerS +
                              2 * profile->copyLatencyS;
      for (size_t k = 0; k + 1 < buf.uses.size(); ++k) {
        const int64_t a = buf.uses[k], z = buf.uses[k + 1];
        if (z - a < minGap || plan.programOf[made] != plan.programOf[z])
          continue;
        // One candidate per chain length up to the limit, as long as the
        // chain grows: the single kernel keeps its inputs live, a longer
        // chain trades time for the bytes of the inputs it recomputes.
        size_t lastLength = 0;
        for (int64_t limit = 1; limit <= maxChain; ++limit) {
          std::optional<Chain> chain =
              buildChain(plan, static_cast<int64_t>(id), z, limit, *profile);
          if (!chain || chain->kernels.size() == lastLength)
            break;
          lastLength = chain->kernels.size();
          RematCandidate c;
          c.buffer = static_cast<int64_t>(id);
          c.sizeBytes = static_cast<uint64_t>(size);
          c.gapStart = a;
          c.gapEnd = z;
          c.recomputeS = chain->seconds;
          c.offloadS = offloadS;
          c.chainLength = static_cast<int64_t>(chain->kernels.size());
          for (int64_t l : chain->leaves) {
            c.reads.push_back(l);
            if (plan.buffers[l].last < z)
              c.extra.push_back(
                  {static_cast<uint64_t>(plan.buffers[l].alloc.getSize()),
                   plan.buffers[l].last + 1, z});
          }
          // The chain's intermediates and scratch outputs exist only at
          // the recompute point.
          for (int64_t o : chain->written) {
            c.reads.push_back(o);
            if (o != static_cast<int64_t>(id))
              c.extra.push_back(
                  {static_cast<uint64_t>(plan.buffers[o].alloc.getSize()), z,
                   z});
          }
          candidates.push_back(std::move(c));
          SmallVector<plan::KernelOp> kernels;
          for (int64_t at : chain->kernels)
            kernels.push_back(cast<plan::KernelOp>(plan.instrs[at]));
          sites.push_back({std::move(kernels), plan.instrs[z]});
        }
      }
    }

    RematChoiceOptions options;
    options.budgetBytes = static_cast<uint64_t>(budgetBytes);
    options.offloadAvailable = offload;
    RematChoice choice = chooseRemat(numInstrs, live, candidates, options);
    if (choice.peakBeforeBytes <= options.budgetBytes || choice.chosen.empty())
      break;

    for (size_t which : choice.chosen) {
      if (totalBuffers >= maxRecomputes)
        break;
      const RematCandidate &c = candidates[which];
      const CandidateSite &site = sites[which];
      plan::BufferAllocOp old = plan.buffers[c.buffer].alloc;
      Operation *gapEnd = site.gapEnd;

      // Clone the chain in order right before the use, every output into a
      // new buffer: the recomputed one, and intermediates and scratch that
      // die right after their last read in the chain. A clone reads an
      // earlier clone's output through a view like the original one.
      b.setInsertionPoint(gapEnd);
      llvm::DenseMap<Operation *, plan::BufferAllocOp> freshOf;
      plan::BufferAllocOp fresh;
      auto remap = [&](Value v, IRMapping &mapping) {
        plan::BufferAllocOp src = bufferOf(v);
        auto it = freshOf.find(src.getOperation());
        if (it == freshOf.end() || mapping.contains(v))
          return;
        auto view = v.getDefiningOp<plan::ViewOp>();
        mapping.map(v, plan::ViewOp::create(b, view.getLoc(), view.getType(),
                                            it->second.getResult(),
                                            view.getByteOffsetAttr())
                           .getResult());
      };
      for (plan::KernelOp kernel : site.chain) {
        IRMapping mapping;
        for (Value in : kernel.getIns())
          remap(in, mapping);
        for (Value out : kernel.getOuts()) {
          plan::BufferAllocOp src = bufferOf(out);
          auto alloc = plan::BufferAllocOp::create(
              b, src.getLoc(), plan::BufferType::get(ctx), src.getSpaceAttr(),
              src.getSizeAttr(), src.getAlignAttr(), DenseI64ArrayAttr(),
              IntegerAttr());
          freshOf[src.getOperation()] = alloc;
          if (src == old) {
            fresh = alloc;
            fresh->setAttr(kRecomputedAttr, b.getUnitAttr());
          }
          remap(out, mapping);
        }
        Operation *clone = b.clone(*kernel.getOperation(), mapping);
        clone->setAttr(kRecomputeAttr, b.getUnitAttr());
      }

      // The use after the gap and every later one read the new buffer,
      // through views like the old ones.
      SmallVector<plan::ViewOp> oldViews;
      for (Operation *u : old->getUsers())
        if (auto v = dyn_cast<plan::ViewOp>(u))
          oldViews.push_back(v);
      for (plan::ViewOp v : oldViews) {
        Value replacement;
        for (OpOperand &use : llvm::make_early_inc_range(v->getUses())) {
          Operation *user = use.getOwner();
          if (user != gapEnd && !gapEnd->isBeforeInBlock(user))
            continue;
          if (!replacement) {
            b.setInsertionPoint(gapEnd);
            replacement = plan::ViewOp::create(b, v.getLoc(), v.getType(),
                                               fresh.getResult(),
                                               v.getByteOffsetAttr())
                              .getResult();
          }
          use.set(replacement);
        }
      }
      ++totalBuffers;
      totalBytes += static_cast<int64_t>(c.sizeBytes);
      totalS += c.recomputeS;
    }
  }

  if (totalBuffers > 0) {
    // Accumulate over runs (a function may be rematerialised more than once).
    if (auto prev = func->getAttrOfType<DictionaryAttr>(kRematSummaryAttr)) {
      if (auto n = prev.getAs<IntegerAttr>("buffers"))
        totalBuffers += n.getInt();
      if (auto n = prev.getAs<IntegerAttr>("bytes"))
        totalBytes += n.getInt();
      if (auto s = prev.getAs<FloatAttr>("added_s"))
        totalS += s.getValueAsDouble();
    }
    func->setAttr(kRematSummaryAttr,
                  b.getDictionaryAttr(
                      {b.getNamedAttr("buffers", b.getI64IntegerAttr(totalBuffers)),
                       b.getNamedAttr("bytes", b.getI64IntegerAttr(totalBytes)),
                       b.getNamedAttr("added_s", b.getF64FloatAttr(totalS))}));
  }
}
