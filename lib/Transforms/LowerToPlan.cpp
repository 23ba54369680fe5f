//===- LowerToPlan.cpp - Graph functions -> one plan of buffers and kernels ===//
//
// Every graph function is a program (`forward`, or `micro_step` then
// `apply_step`); they become one plan function so that weights and states,
// named and persistent, are one buffer shared by all programs.
//
// With `offload-optimizer` (ZeRO-Offload) each weight's device copy is
// fetched on the H2D stream 1, issued the cost model's copy time ahead of its
// first use (placeWeightFetches), and each update runs on the host
// stream 3, overlapped with the rest of the backward: stream 0 records an
// event behind the gradient's producers, the D2H copy stream 2 copies the
// gradient (and lr, step) down after it, the host stream waits for that
// copy, updates the master weight and the optimizer state in place, and
// records. Stream 0 waits for the host stream where it touches what the
// side streams still use (orderSideStreams), and otherwise not at all: the
// host stream is carried across the program's end (cplan.carried_streams),
// each fetch waits for its weight's update of the previous step, and the
// step's last updates run in the forward's order under the next step
// (carryUpdatesAcrossSteps; with cross-step-updates=false stream 0 waits
// for the host stream at the program's end instead). Weights named in
// `device-resident` (the share of the optimizer state the budget leaves
// room for) keep master and state on the device and update on stream 0.
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/Transforms/PlanCost.h"
#include "colossal/runtime/PlanFormat.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#define DEBUG_TYPE "colossal-lower-to-plan"

namespace mlir::colossal {
#define GEN_PASS_DEF_LOWERTOPLANPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

constexpr int64_t kBufferAlignBytes = 64;
/// Splat constants at least this large become `fill` kernels.
constexpr int64_t kMinFillBytes = 256;

/// The streams of a plan, by role (docs/planner.md, "Streams and events"):
/// the same numbering as colossal-offload-across-gaps.
constexpr int64_t kComputeStream = 0, kH2DStream = 1, kD2HStream = 2,
                  kHostStream = 3;
const char *const kStreamKinds[] = {"compute", "copy", "copy", "host"};

/// Kernels that may write their output over one of their inputs (the plan
/// reader accepts exact aliases for elementwise ops and the optimizers).
bool mayWriteInPlace(StringRef op) {
  static const llvm::StringSet<> ops = {
      "add", "sub", "mul", "div", "max", "min", "neg", "identity", "fill",
      "adamw", "adamw_norm", "sgd", "fused_elementwise"};
  return ops.contains(op);
}

plan::BindOp createBind(OpBuilder &b, Location loc, plan::BindingRole role,
                        StringRef name, Value view, ElementsAttr value) {
  return plan::BindOp::create(
      b, loc, plan::BindingRoleAttr::get(b.getContext(), role),
      b.getStringAttr(name), view, value, StringAttr(), UnitAttr(),
      StringAttr(), FloatAttr(), StringAttr());
}

/// Hugging Face's default initialisation, by name and shape: biases 0,
/// 1-D weights (norm scales) 1, everything else N(0, std).
void initRule(StringRef name, ArrayRef<int64_t> shape, double std,
              StringRef &kind, double &scale) {
  if (name.ends_with("bias")) {
    kind = "zeros";
    scale = 0.0;
  } else if (shape.size() == 1) {
    kind = "ones";
    scale = 0.0;
  } else {
    kind = "normal";
    scale = std;
  }
}

plan::BufferAllocOp bufferOf(Value view) {
  if (auto v = view.getDefiningOp<plan::ViewOp>())
    return v.getBuffer().getDefiningOp<plan::BufferAllocOp>();
  return {};
}

/// The buffers an instruction reads and writes (none for an event op).
void touchesOf(Operation *op, SmallVectorImpl<Operation *> &reads,
               SmallVectorImpl<Operation *> &writes) {
  auto add = [](SmallVectorImpl<Operation *> &to, Value view) {
    if (plan::BufferAllocOp a = bufferOf(view))
      to.push_back(a);
  };
  if (auto k = dyn_cast<plan::KernelOp>(op)) {
    for (Value v : k.getIns())
      add(reads, v);
    for (Value v : k.getOuts())
      add(writes, v);
  } else if (auto c = dyn_cast<plan::CopyOp>(op)) {
    add(reads, c.getSource());
    add(writes, c.getTarget());
  }
}

/// Makes stream 0 wait for the side streams wherever it needs their work:
/// before a stream-0 instruction that reads a buffer a side stream writes,
/// or writes one a side stream touches, and at each program's end for
/// whatever is still in flight (the next program, or the next step, reads
/// the updated masters). Everything a side stream does between two records
/// of it is one group; stream 0 waits for the latest group it conflicts
/// with, and vector clocks over the groups (a host-stream group has seen
/// the copy groups it waited for) keep it from waiting for what a wait
/// already covers. Every side-stream instruction must be followed by a
/// record of its stream (the lowering writes one after each group).
/// O(instructions x streams x pending groups).
void orderSideStreams(func::FuncOp func, int64_t numStreams,
                      uint32_t carriedStreams) {
  struct Group {
    int64_t event;
    llvm::SmallPtrSet<Operation *, 4> reads, writes;
    SmallVector<int64_t, 4> clock; ///< groups of each stream it has seen
  };
  using Clock = SmallVector<int64_t, 4>;
  SmallVector<SmallVector<Group>> groups;
  SmallVector<Group> open;
  SmallVector<Clock> clock; // per stream: groups of each stream it has seen
  llvm::DenseMap<int64_t, std::pair<int64_t, int64_t>> groupOfEvent;
  auto reset = [&] {
    groups.assign(numStreams, {});
    open.assign(numStreams, Group{});
    clock.assign(numStreams, Clock(numStreams, 0));
    groupOfEvent.clear();
  };
  auto merge = [&](Clock &into, const Clock &from) {
    for (int64_t t = 0; t < numStreams; ++t)
      into[t] = std::max(into[t], from[t]);
  };
  auto waitBefore = [&](Operation *at, int64_t s, int64_t g) {
    OpBuilder b(at);
    plan::EventWaitOp::create(b, at->getLoc(),
                              b.getI64IntegerAttr(groups[s][g].event),
                              b.getI64IntegerAttr(kComputeStream));
    merge(clock[kComputeStream], groups[s][g].clock);
  };
  // Stream 0 waits for the latest pending group of each side stream that
  // `conflicts` (host stream first: its wait may cover the copies).
  auto syncBefore = [&](Operation *at,
                        llvm::function_ref<bool(const Group &)> conflicts,
                        uint32_t skip = 0) {
    for (int64_t s = numStreams - 1; s > kComputeStream; --s) {
      if (s < 32 && (skip >> s & 1u))
        continue;
      for (int64_t g = static_cast<int64_t>(groups[s].size()) - 1;
           g >= clock[kComputeStream][s]; --g) {
        if (conflicts(groups[s][g])) {
          waitBefore(at, s, g);
          break;
        }
      }
    }
  };
  reset();
  SmallVector<Operation *> ops;
  for (Operation &op : func.getBody().front())
    ops.push_back(&op);
  for (Operation *op : ops) {
    if (isa<plan::ProgramOp, func::ReturnOp>(op)) {
      // The program's end: everything still in flight, but the carried
      // streams' work (the next step's fetches wait for it).
      syncBefore(op, [](const Group &) { return true; }, carriedStreams);
      reset();
      continue;
    }
    if (!isa<plan::KernelOp, plan::CopyOp, plan::EventRecordOp,
             plan::EventWaitOp>(op))
      continue;
    const int64_t s = instructionStream(op);
    if (auto w = dyn_cast<plan::EventWaitOp>(op)) {
      auto it = groupOfEvent.find(w.getEvent());
      if (it != groupOfEvent.end())
        merge(clock[s], groups[it->second.first][it->second.second].clock);
      continue;
    }
    if (auto r = dyn_cast<plan::EventRecordOp>(op)) {
      if (s == kComputeStream)
        continue;
      Group g = std::move(open[s]);
      open[s] = Group{};
      g.event = r.getEvent();
      clock[s][s] = static_cast<int64_t>(groups[s].size()) + 1;
      g.clock = clock[s];
      groupOfEvent[g.event] = {s, static_cast<int64_t>(groups[s].size())};
      groups[s].push_back(std::move(g));
      continue;
    }
    SmallVector<Operation *> reads, writes;
    touchesOf(op, reads, writes);
    if (s != kComputeStream) {
      open[s].reads.insert(reads.begin(), reads.end());
      open[s].writes.insert(writes.begin(), writes.end());
      continue;
    }
    syncBefore(op, [&](const Group &g) {
      for (Operation *r : reads)
        if (g.writes.contains(r))
          return true;
      for (Operation *w : writes)
        if (g.writes.contains(w) || g.reads.contains(w))
          return true;
      return false;
    });
  }
}

/// Marks a weight's fetched device copy (colossal-offload-across-gaps parks
/// it like one stream 0 fetched).
constexpr llvm::StringLiteral kWeightFetchAttr = "colossal.weight_fetch";

/// Streamed updates whose device copies may be held at once: stream 0
/// waits for the write-back of the update this many back before the next.
constexpr size_t kStreamedInFlight = 2;

/// One weight's fetch as the lowering first writes it, at the weight op:
/// stream 0's record, stream 1's wait for it, the copy and stream 1's record.
struct WeightFetch {
  SmallVector<Operation *, 4> issue;
  plan::CopyOp copy;
};

bool isInstruction(Operation *op) {
  return isa<plan::KernelOp, plan::CopyOp, plan::EventRecordOp,
             plan::EventWaitOp>(op);
}

/// Moves each fetch's issue as late as its copy allows: the copy's
/// predicted time (bytes over the H2D rate, plus the copy latency) must fit
/// in stream 0's predicted compute between the issue and the weight's first
/// stream-0 use, and the copies run one at a time on stream 1, so a fetch
/// also ends before the next one (in first-use order) starts: a schedule
/// as late as possible, computed backwards from the last use of a program.
/// A fetch whose lead is longer than the program so far is issued at the
/// program's start; one that stream 0 never reads is removed. Late issue keeps each fetched copy off the device
/// until shortly before it is read (the fetched bytes are live from the
/// issue on). Stream 0's wait right before the use is orderSideStreams'.
/// O(instructions + fetches x log instructions).
void placeWeightFetches(func::FuncOp func, ArrayRef<WeightFetch> fetches,
                        const DeviceProfile &profile) {
  llvm::SmallPtrSet<Operation *, 16> moving;
  for (const WeightFetch &f : fetches)
    moving.insert(f.issue.begin(), f.issue.end());
  // Per program: stream 0's kernels and copies (the issue points) and the
  // predicted compute time before each.
  struct Program {
    SmallVector<Operation *> points;
    SmallVector<double> startS;
  };
  SmallVector<Program> programs;
  llvm::DenseMap<Operation *, std::pair<unsigned, unsigned>> pointOf;
  double t = 0;
  for (Operation &op : func.getBody().front()) {
    if (isa<plan::ProgramOp>(op)) {
      programs.emplace_back();
      t = 0;
      continue;
    }
    if (!isInstruction(&op) || moving.contains(&op) ||
        instructionStream(&op) != kComputeStream ||
        isa<plan::EventRecordOp, plan::EventWaitOp>(op))
      continue;
    if (programs.empty())
      programs.emplace_back();
    Program &p = programs.back();
    pointOf[&op] = {programs.size() - 1, p.points.size()};
    p.points.push_back(&op);
    p.startS.push_back(t);
    t += predictedSeconds(&op, profile);
  }
  // Each fetch's first stream-0 use, grouped by program.
  struct Placed {
    const WeightFetch *fetch;
    unsigned use; ///< index of the first use in its program's points
    /// The latest point the issue may precede: the first use, or a point
    /// before the first later write of the master (stream 0's `identity` of
    /// an update not written in place), which the copy must not see; -1:
    /// right before that write (no point comes before it).
    int64_t latest;
    Operation *writer;
    double copyS;
    Operation *before = nullptr;
  };
  SmallVector<SmallVector<Placed>> byProgram(programs.size());
  for (const WeightFetch &f : fetches) {
    std::optional<std::pair<unsigned, unsigned>> first;
    plan::CopyOp copy = f.copy;
    plan::BufferAllocOp fetched = bufferOf(copy.getTarget());
    for (Operation *view : fetched->getUsers())
      for (Operation *user : view->getUsers()) {
        auto it = pointOf.find(user);
        if (it != pointOf.end() && (!first || it->second < *first))
          first = it->second;
      }
    if (!first) {
      // No stream-0 reader (apply_step's weights feed only their host
      // update, which reads the master): the copy is dead, and would race
      // with that update, which writes the master in place.
      Operation *view = copy.getTarget().getDefiningOp();
      for (Operation *op : llvm::reverse(f.issue))
        op->erase();
      if (view->use_empty())
        view->erase();
      if (fetched->use_empty())
        fetched->erase();
      continue;
    }
    const double copyS =
        static_cast<double>(fetched.getSizeAttr().getInt()) /
            profile.h2dBytesPerS +
        profile.copyLatencyS;
    int64_t latest = first->second;
    Operation *writer = nullptr;
    for (Operation *view : bufferOf(copy.getSource())->getUsers())
      for (Operation *user : view->getUsers()) {
        SmallVector<Operation *> reads, writes;
        touchesOf(user, reads, writes);
        if (user != copy && copy->isBeforeInBlock(user) &&
            llvm::is_contained(writes, bufferOf(copy.getSource())) &&
            (!writer || user->isBeforeInBlock(writer)))
          writer = user;
      }
    if (writer) {
      const Program &p = programs[first->first];
      auto k = std::partition_point(
          p.points.begin(), p.points.end(),
          [&](Operation *q) { return q->isBeforeInBlock(writer); });
      int64_t cap = k - p.points.begin();
      if (k == p.points.end() || *k != writer)
        --cap;
      latest = std::min(latest, cap);
    }
    byProgram[first->first].push_back(
        {&f, first->second, latest, writer, copyS});
  }
  for (auto [pi, placed] : llvm::enumerate(byProgram)) {
    const Program &p = programs[pi];
    llvm::stable_sort(placed, [](const Placed &a, const Placed &b) {
      return a.use < b.use;
    });
    double nextStart = std::numeric_limits<double>::infinity();
    for (Placed &f : llvm::reverse(placed)) {
      double start = std::min(p.startS[f.use], nextStart) - f.copyS;
      if (f.latest < 0) {
        f.before = f.writer;
        nextStart = std::min(start, 0.0);
        continue;
      }
      // The latest allowed point whose start is <= start.
      auto end = p.startS.begin() + f.latest + 1;
      auto it = std::upper_bound(p.startS.begin(), end, start);
      size_t at = it == p.startS.begin() ? 0 : (it - p.startS.begin()) - 1;
      f.before = p.points[at];
      nextStart = std::min(start, p.startS[at]);
    }
    for (Placed &f : placed) {
      // The copy's views (and a master first bound here) move with it.
      plan::CopyOp copy = f.fetch->copy;
      for (Value v : {copy.getSource(), copy.getTarget()}) {
        Operation *view = v.getDefiningOp();
        Operation *alloc = bufferOf(v);
        if (f.before->isBeforeInBlock(view)) {
          alloc->moveBefore(f.before);
          view->moveBefore(f.before);
        }
      }
      for (Operation *op : f.fetch->issue)
        op->moveBefore(f.before);
    }
  }
}

/// Updates across the step boundary (docs/planner.md): the host stream's
/// in-place updates stop joining stream 0 at the program's end, and each
/// weight's fetch waits for its update instead, the previous step's (a wait
/// before its event's record in plan order takes the previous run's). The
/// step's last updates, a suffix of the gradients' order, move to the end
/// of their program in the order the forward fetches their weights, so the
/// next step's forward starts as soon as its first weight is updated and
/// follows the host layer by layer; the suffix's length is the one whose
/// steady state the cost model predicts fastest (chooseCarriedTail). Runs
/// after orderSideStreams (with the host stream carried), so that the
/// schedule has stream 0's waits for the fetches; an update stream 0 waits
/// for stays in place.
void carryUpdatesAcrossSteps(func::FuncOp func, const DeviceProfile &profile) {
  struct Update {
    plan::EventWaitOp wait;
    plan::KernelOp kernel;
    plan::EventRecordOp record;
    Operation *programEnd = nullptr;
  };
  SmallVector<Operation *> ops;
  for (Operation &op : func.getBody().front())
    ops.push_back(&op);
  // The instructions as the cost model sees them, by program.
  llvm::DenseMap<Operation *, uint32_t> indexOf;
  std::vector<StreamInstr> instrs;
  std::vector<StreamProgram> programs;
  uint32_t numStreams = kHostStream + 1;
  SmallVector<Operation *> programEnds;
  for (Operation *op : ops) {
    if (isa<plan::ProgramOp, func::ReturnOp>(op)) {
      if (!programs.empty()) {
        programs.back().count =
            static_cast<uint32_t>(instrs.size()) - programs.back().first;
        programEnds.push_back(op);
      }
      if (isa<plan::ProgramOp>(op))
        programs.push_back({static_cast<uint32_t>(instrs.size()), 0, 1});
      continue;
    }
    if (!isInstruction(op))
      continue;
    if (programs.empty())
      programs.push_back({0, 0, 1});
    StreamInstr in;
    in.stream = static_cast<uint32_t>(instructionStream(op));
    numStreams = std::max(numStreams, in.stream + 1);
    if (auto r = dyn_cast<plan::EventRecordOp>(op)) {
      in.sync = StreamInstr::Sync::Record;
      in.event = static_cast<int64_t>(r.getEvent());
    } else if (auto w = dyn_cast<plan::EventWaitOp>(op)) {
      in.sync = StreamInstr::Sync::Wait;
      in.event = static_cast<int64_t>(w.getEvent());
    } else {
      in.seconds = predictedSeconds(op, profile);
    }
    indexOf[op] = static_cast<uint32_t>(instrs.size());
    instrs.push_back(in);
  }
  if (programEnds.size() < programs.size()) // no marker before the first
    programEnds.push_back(ops.back());
  auto programOf = [&](uint32_t i) {
    size_t p = 0;
    while (p + 1 < programs.size() && i >= programs[p + 1].first)
      ++p;
    return p;
  };
  // The in-place host updates as the lowering writes them: the host
  // stream's wait for its copies, the kernel, its record.
  // Events stream 0 waits for: an update whose record is one of them (stream
  // 0 reads what it wrote) stays where it is.
  llvm::DenseSet<int64_t> computeWaits;
  for (Operation *op : ops)
    if (auto w = dyn_cast<plan::EventWaitOp>(op))
      if (w.getStream() == kComputeStream)
        computeWaits.insert(static_cast<int64_t>(w.getEvent()));
  SmallVector<Update> updates;
  llvm::DenseMap<Operation *, int64_t> updateEventOf; // master -> record
  for (size_t i = 1; i + 1 < ops.size(); ++i) {
    auto k = dyn_cast<plan::KernelOp>(ops[i]);
    if (!k || k.getStream() != kHostStream)
      continue;
    auto wait = dyn_cast<plan::EventWaitOp>(ops[i - 1]);
    auto record = dyn_cast<plan::EventRecordOp>(ops[i + 1]);
    if (!wait || !record || wait.getStream() != kHostStream ||
        record.getStream() != kHostStream || k.getOuts().empty() ||
        computeWaits.contains(static_cast<int64_t>(record.getEvent())) ||
        !llvm::all_of(k.getOuts(), [&](Value out) {
          return llvm::is_contained(k.getIns(), out);
        }))
      continue;
    plan::BufferAllocOp master = bufferOf(k.getOuts()[0]);
    if (!master)
      continue;
    updates.push_back(
        {wait, k, record, programEnds[programOf(indexOf[k])]});
    updateEventOf[master] = record.getEvent();
  }
  if (updates.empty())
    return;
  // Each fetch of an updated master waits for the update first; the
  // forward's order is that of the first fetches.
  SmallVector<std::pair<plan::CopyOp, int64_t>> fetchWaits;
  llvm::DenseMap<Operation *, int64_t> firstFetchOf;
  std::vector<AddedWait> added;
  for (Operation *op : ops) {
    auto copy = dyn_cast<plan::CopyOp>(op);
    if (!copy || copy.getStream() != kH2DStream)
      continue;
    plan::BufferAllocOp master = bufferOf(copy.getSource());
    auto it = master ? updateEventOf.find(master) : updateEventOf.end();
    if (it == updateEventOf.end())
      continue;
    fetchWaits.push_back({copy, it->second});
    firstFetchOf.try_emplace(master, indexOf[copy]);
    added.push_back({indexOf[copy], static_cast<uint32_t>(kH2DStream),
                     it->second});
  }
  // The tail: a suffix of the updates of the program holding the most.
  SmallVector<unsigned> count(programs.size(), 0);
  for (Update &u : updates)
    ++count[programOf(indexOf[u.kernel])];
  size_t home = std::max_element(count.begin(), count.end()) - count.begin();
  std::vector<CarriedUpdate> candidates;
  SmallVector<Update *> homeUpdates;
  for (Update &u : updates) {
    if (programOf(indexOf[u.kernel]) != home)
      continue;
    auto it = firstFetchOf.find(bufferOf(u.kernel.getOuts()[0]));
    candidates.push_back({indexOf[u.wait], indexOf[u.kernel],
                          indexOf[u.record],
                          it == firstFetchOf.end() ? INT64_MAX : it->second});
    homeUpdates.push_back(&u);
  }
  size_t kept = chooseCarriedTail(instrs, programs, numStreams,
                                  1u << kHostStream, candidates, added);
  SmallVector<size_t> tail;
  for (size_t u = kept; u < candidates.size(); ++u)
    tail.push_back(u);
  llvm::stable_sort(tail, [&](size_t a, size_t b) {
    return candidates[a].forwardKey < candidates[b].forwardKey;
  });
  for (size_t u : tail) {
    Update &up = *homeUpdates[u];
    up.wait->moveBefore(up.programEnd);
    up.kernel->moveBefore(up.programEnd);
    up.record->moveBefore(up.programEnd);
  }
  for (auto &[copy, event] : fetchWaits) {
    OpBuilder b(copy);
    plan::EventWaitOp::create(b, copy.getLoc(), b.getI64IntegerAttr(event),
                              b.getI64IntegerAttr(kH2DStream));
  }
}

struct LowerToPlanPass
    : public mlir::colossal::impl::LowerToPlanPassBase<LowerToPlanPass> {
  using LowerToPlanPassBase::LowerToPlanPassBase;
  void runOnOperation() override;

private:
  FailureOr<Value> newView(OpBuilder &b, Location loc, Type tensorType,
                           plan::MemorySpace space = plan::MemorySpace::device);
  /// A copy of `view` into a new buffer of `space` (an offload or prefetch),
  /// on `stream`.
  FailureOr<Value> copyTo(OpBuilder &b, Location loc, Value view,
                          plan::MemorySpace space,
                          int64_t stream = kComputeStream);
  /// Where a persistent name lives under the placement options.
  plan::MemorySpace spaceOf(StringRef name, bool trainableWeight) const;
  LogicalResult lowerProgram(OpBuilder &b, func::FuncOp func,
                             StringRef program);
  Value persistent(OpBuilder &b, Location loc, StringRef name, Type type,
                   plan::BindingRole role, Operation *source);
  /// An H2D copy of host `source` into device `working` on stream 1, behind
  /// a stream-0 record, with its own record after; placeWeightFetches gives
  /// it its lead.
  void addFetch(OpBuilder &b, Location loc, Value source, Value working);
  /// Lowers `op`, an update, streamed through the device when its weight
  /// is named in `streamed-updates` and every assigned result follows the
  /// old value's reads: true when lowered so, false to lower it as usual.
  FailureOr<bool> lowerStreamedUpdate(
      OpBuilder &b, Operation &op, SmallVectorImpl<Value> &ins,
      const llvm::DenseMap<Value, Value> &masterOf,
      llvm::DenseMap<Value, Value> &viewOf,
      const llvm::StringMap<SmallVector<Operation *>> &readers,
      llvm::function_ref<StringRef(Value)> persistentNameOf);

  /// Weights and states by name: one view each, shared by every program.
  llvm::StringMap<Value> persistentViews;
  int64_t numConstants = 0;
  /// Events of the plan so far, and the highest stream used.
  int64_t numEvents = 0;
  int64_t maxStream = kComputeStream;
  /// Weights (and their optimizer states) kept on the device under
  /// offload-optimizer: `device-resident` and what their updates read.
  llvm::StringSet<> residentNames;
  /// The weight fetches written so far, for placeWeightFetches.
  std::vector<WeightFetch> fetches;
  /// The current program's last gradient copy (its stream-2 record), which
  /// stream 0 waits for before issuing the next one: -1 when none.
  int64_t lastCopiedEvent = -1;
  /// offload-optimizer: `streamed-updates` and the states their updates
  /// read (host-resident, updated on the device).
  llvm::StringSet<> streamedNames;
  /// The current program's streamed updates' write-back records, oldest
  /// first, at most kStreamedInFlight.
  SmallVector<int64_t> streamedOutEvents;
};

} // namespace

FailureOr<Value> LowerToPlanPass::newView(OpBuilder &b, Location loc,
                                          Type tensorType,
                                          plan::MemorySpace space) {
  MLIRContext *ctx = b.getContext();
  auto tt = toTensorType(tensorType);
  if (!tt)
    return emitError(loc) << "cannot plan a value of type " << tensorType
                          << ": it needs a static shape and a runtime dtype";
  auto shaped = cast<RankedTensorType>(tensorType);
  auto alloc = plan::BufferAllocOp::create(
      b, loc, plan::BufferType::get(ctx),
      plan::MemorySpaceAttr::get(ctx, space),
      b.getI64IntegerAttr(static_cast<int64_t>(tt->sizeBytes())),
      b.getI64IntegerAttr(kBufferAlignBytes), DenseI64ArrayAttr(),
      IntegerAttr());
  auto memref = MemRefType::get(shaped.getShape(), shaped.getElementType());
  return plan::ViewOp::create(b, loc, memref, alloc.getResult(),
                              b.getI64IntegerAttr(0))
      .getResult();
}

FailureOr<bool> LowerToPlanPass::lowerStreamedUpdate(
    OpBuilder &b, Operation &op, SmallVectorImpl<Value> &ins,
    const llvm::DenseMap<Value, Value> &masterOf,
    llvm::DenseMap<Value, Value> &viewOf,
    const llvm::StringMap<SmallVector<Operation *>> &readers,
    llvm::function_ref<StringRef(Value)> persistentNameOf) {
  auto w = op.getOperand(0).getDefiningOp<graph::WeightOp>();
  if (!w || !streamedNames.contains(w.getName()) ||
      !masterOf.count(w.getResult()))
    return false;
  Location loc = op.getLoc();
  // Each result assigned to a weight or state is written back over it, so
  // the update must follow every read of the old value (as an in-place host
  // update does); otherwise the weight is updated on the host.
  SmallVector<Value> hostTarget(op.getNumResults());
  for (auto [k, r] : llvm::enumerate(op.getResults())) {
    StringRef target = persistentNameOf(r);
    if (target.empty())
      continue;
    auto it = persistentViews.find(target);
    auto readersIt = readers.find(target);
    bool afterReads =
        readersIt == readers.end() ||
        llvm::all_of(readersIt->second, [&](Operation *reader) {
          return reader == &op || reader->isBeforeInBlock(&op);
        });
    if (it == persistentViews.end() || !afterReads ||
        it->second.getType() !=
            MemRefType::get(cast<RankedTensorType>(r.getType()).getShape(),
                            cast<RankedTensorType>(r.getType())
                                .getElementType())) {
      if (isa<graph::AdamWNormOp>(op))
        return op.emitOpError()
               << "cannot stream the update of '" << w.getName()
               << "' through the device: a read of its old value follows it";
      return false;
    }
    hostTarget[k] = it->second;
  }
  // Up: the master and every host-resident operand (the moments), each
  // into a device copy the update works on in place.
  llvm::DenseMap<Value, Value> workingOf;
  for (auto [i, v] : llvm::enumerate(op.getOperands())) {
    Value host = masterOf.lookup(v);
    if (!host) {
      plan::BufferAllocOp alloc = bufferOf(ins[i]);
      if (!alloc || alloc.getSpace() != plan::MemorySpace::host)
        continue;
      host = ins[i];
    }
    Value &working = workingOf[host];
    if (!working) {
      auto view = newView(b, loc, v.getType());
      if (failed(view))
        return failure();
      working = *view;
      // Fetched like a weight: offload-across-gaps may shorten its lead.
      bufferOf(working)->setAttr(kWeightFetchAttr, b.getUnitAttr());
      addFetch(b, loc, host, working);
    }
    ins[i] = working;
  }
  SmallVector<Value> outs;
  for (auto [k, r] : llvm::enumerate(op.getResults())) {
    Value working = hostTarget[k] ? workingOf.lookup(hostTarget[k]) : Value();
    if (!working) {
      auto view = newView(b, loc, r.getType());
      if (failed(view))
        return failure();
      working = *view;
    }
    outs.push_back(working);
    // The assign finds its value already in place (written back below).
    viewOf[r] = hostTarget[k] ? hostTarget[k] : working;
  }
  // At most kStreamedInFlight updates' device copies are held: stream 0
  // waits for the write-back of the one that many updates back.
  if (streamedOutEvents.size() >= kStreamedInFlight) {
    plan::EventWaitOp::create(
        b, loc, b.getI64IntegerAttr(streamedOutEvents.front()),
        b.getI64IntegerAttr(kComputeStream));
    streamedOutEvents.erase(streamedOutEvents.begin());
  }
  SmallVector<NamedAttribute> params;
  for (NamedAttribute attr : op.getAttrs())
    params.push_back(attr);
  plan::KernelOp::create(b, loc, b.getStringAttr(op.getName().stripDialect()),
                         ins, outs, b.getDictionaryAttr(params),
                         b.getI64IntegerAttr(kComputeStream));
  // Down: what the update wrote, over the host copies, on stream 2.
  int64_t updated = numEvents++;
  plan::EventRecordOp::create(b, loc, b.getI64IntegerAttr(updated),
                              b.getI64IntegerAttr(kComputeStream));
  plan::EventWaitOp::create(b, loc, b.getI64IntegerAttr(updated),
                            b.getI64IntegerAttr(kD2HStream));
  for (auto [k, target] : llvm::enumerate(hostTarget))
    if (target)
      plan::CopyOp::create(b, loc, outs[k], target,
                           b.getI64IntegerAttr(kD2HStream));
  int64_t written = numEvents++;
  plan::EventRecordOp::create(b, loc, b.getI64IntegerAttr(written),
                              b.getI64IntegerAttr(kD2HStream));
  streamedOutEvents.push_back(written);
  maxStream = std::max(maxStream, kD2HStream);
  return true;
}

void LowerToPlanPass::addFetch(OpBuilder &b, Location loc, Value source,
                               Value working) {
  WeightFetch fetch;
  int64_t issued = numEvents++;
  fetch.issue.push_back(plan::EventRecordOp::create(
      b, loc, b.getI64IntegerAttr(issued),
      b.getI64IntegerAttr(kComputeStream)));
  fetch.issue.push_back(plan::EventWaitOp::create(
      b, loc, b.getI64IntegerAttr(issued), b.getI64IntegerAttr(kH2DStream)));
  fetch.copy = plan::CopyOp::create(b, loc, source, working,
                                    b.getI64IntegerAttr(kH2DStream));
  fetch.issue.push_back(fetch.copy);
  fetch.issue.push_back(plan::EventRecordOp::create(
      b, loc, b.getI64IntegerAttr(numEvents++),
      b.getI64IntegerAttr(kH2DStream)));
  fetches.push_back(std::move(fetch));
  maxStream = std::max(maxStream, kH2DStream);
}

FailureOr<Value> LowerToPlanPass::copyTo(OpBuilder &b, Location loc,
                                         Value view, plan::MemorySpace space,
                                         int64_t stream) {
  auto memref = cast<MemRefType>(view.getType());
  auto tensor = RankedTensorType::get(memref.getShape(),
                                      memref.getElementType());
  auto target = newView(b, loc, tensor, space);
  if (failed(target))
    return failure();
  plan::CopyOp::create(b, loc, view, *target, b.getI64IntegerAttr(stream));
  return *target;
}

plan::MemorySpace LowerToPlanPass::spaceOf(StringRef name,
                                           bool trainableWeight) const {
  if (!offloadOptimizer || residentNames.contains(name))
    return plan::MemorySpace::device;
  // ZeRO-Offload: trained weights' master copies and the optimizer state
  // live in pinned host memory; the update runs on the host.
  if (trainableWeight || name.starts_with("adam.") ||
      name.starts_with("sgd."))
    return plan::MemorySpace::host;
  return plan::MemorySpace::device;
}

Value LowerToPlanPass::persistent(OpBuilder &b, Location loc, StringRef name,
                                  Type type, plan::BindingRole role,
                                  Operation *source) {
  auto it = persistentViews.find(name);
  if (it != persistentViews.end())
    return it->second;
  auto sourceWeight = dyn_cast_or_null<graph::WeightOp>(source);
  auto view = newView(b, loc, type,
                      spaceOf(name, sourceWeight && sourceWeight.getTrainable()));
  if (failed(view))
    return {};
  auto bind = createBind(b, loc, role, name, *view, ElementsAttr());
  if (role == plan::BindingRole::weight) {
    StringRef kind;
    double scale;
    initRule(name, cast<RankedTensorType>(type).getShape(), initStd, kind,
             scale);
    bind.setInitAttr(b.getStringAttr(kind));
    if (scale > 0)
      bind.setInitScaleAttr(b.getF64FloatAttr(scale));
    StringRef exportName = name;
    if (!exportPrefix.empty() && exportName.starts_with(exportPrefix))
      exportName = exportName.drop_front(exportPrefix.size());
    if (auto w = dyn_cast_or_null<graph::WeightOp>(source))
      if (auto given = w.getExportName())
        exportName = *given;
    bind.setExportNameAttr(b.getStringAttr(exportName));
  }
  persistentViews[name] = *view;
  return *view;
}

LogicalResult LowerToPlanPass::lowerProgram(OpBuilder &b, func::FuncOp func,
                                            StringRef program) {
  plan::ProgramOp::create(b, func.getLoc(), program);
  lastCopiedEvent = -1; // events do not cross programs
  streamedOutEvents.clear();
  auto programAttr = b.getStringAttr(program);
  auto bind = [&](Location loc, plan::BindingRole role, StringRef name,
                  Value view, ElementsAttr value = {}) {
    auto op = createBind(b, loc, role, name, view, value);
    if (role == plan::BindingRole::input || role == plan::BindingRole::output)
      op.setProgramAttr(programAttr);
    return op;
  };

  // The view that holds each graph value; for an offloaded weight, the host
  // view of its master copy too.
  llvm::DenseMap<Value, Value> viewOf, masterOf;
  for (BlockArgument arg : func.getArguments()) {
    auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                  "colossal.name");
    if (!name)
      return func.emitOpError() << "argument #" << arg.getArgNumber()
                                << " has no colossal.name";
    auto view = newView(b, NameLoc::get(name), arg.getType());
    if (failed(view))
      return failure();
    bind(NameLoc::get(name), plan::BindingRole::input, name.getValue(), *view);
    viewOf[arg] = *view;
  }

  Block &body = func.getBody().front();
  // Reads of each persistent name in this function, to know when an update
  // may be written in place (after its last read).
  llvm::StringMap<SmallVector<Operation *>> readers;
  for (Operation &op : body) {
    StringRef name;
    if (auto w = dyn_cast<graph::WeightOp>(op))
      name = w.getName();
    else if (auto s = dyn_cast<graph::StateOp>(op))
      name = s.getName();
    else
      continue;
    for (Operation *user : op.getUsers())
      readers[name].push_back(user);
  }
  auto persistentNameOf = [&](Value v) -> StringRef {
    if (!v.hasOneUse())
      return {};
    if (auto assign = dyn_cast<graph::AssignOp>(*v.getUsers().begin()))
      return assign.getName();
    return {};
  };

  for (Operation &op : body) {
    Location loc = op.getLoc();
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
        auto name = func.getResultAttrOfType<StringAttr>(i, "colossal.name");
        if (!name)
          return func.emitOpError() << "result #" << i
                                    << " has no colossal.name";
        bind(NameLoc::get(name), plan::BindingRole::output, name.getValue(),
             viewOf.lookup(v));
      }
      continue;
    }
    if (auto w = dyn_cast<graph::WeightOp>(op)) {
      Value view = persistent(b, loc, w.getName(), w.getType(),
                              plan::BindingRole::weight, w);
      if (!view)
        return failure();
      if (w.getTrainable()) {
        for (Operation *user : view.getUsers())
          if (auto bop = dyn_cast<plan::BindOp>(user))
            bop.setTrainable(true);
      }
      auto buffer = view.getDefiningOp<plan::ViewOp>()
                        .getBuffer()
                        .getDefiningOp<plan::BufferAllocOp>();
      if (buffer.getSpace() == plan::MemorySpace::host) {
        // An offloaded master weight: the step computes with a device copy
        // fetched on the H2D stream (issued here; placeWeightFetches moves
        // the issue to its lead time); the update reads the master.
        auto working = newView(b, loc, w.getType());
        if (failed(working))
          return failure();
        bufferOf(*working)->setAttr(kWeightFetchAttr, b.getUnitAttr());
        addFetch(b, loc, view, *working);
        masterOf[w.getResult()] = view;
        viewOf[w.getResult()] = *working;
        continue;
      }
      viewOf[w.getResult()] = view;
      continue;
    }
    if (auto s = dyn_cast<graph::StateOp>(op)) {
      Value view = persistent(b, loc, s.getName(), s.getType(),
                              plan::BindingRole::state, s);
      if (!view)
        return failure();
      viewOf[s.getResult()] = view;
      continue;
    }
    if (auto assign = dyn_cast<graph::AssignOp>(op)) {
      Value target = persistent(b, loc, assign.getName(),
                                assign.getValue().getType(),
                                plan::BindingRole::state, assign);
      if (!target)
        return failure();
      auto valueType = cast<RankedTensorType>(assign.getValue().getType());
      if (target.getType() != MemRefType::get(valueType.getShape(),
                                              valueType.getElementType()))
        return assign.emitOpError()
               << "assigns a " << valueType << " to '" << assign.getName()
               << "' of type " << target.getType();
      if (auto fill = assign.getValue().getDefiningOp<graph::FillOp>()) {
        // A splat (zeroing gradients): fill the target itself rather than
        // copying a shared filled buffer (CSE merges equal fills).
        plan::KernelOp::create(b, loc, b.getStringAttr("fill"), ValueRange{},
                               ValueRange{target}, fill->getAttrDictionary(),
                               b.getI64IntegerAttr(0));
        continue;
      }
      Value source = viewOf.lookup(assign.getValue());
      if (source != target)
        plan::KernelOp::create(b, loc, b.getStringAttr("identity"),
                               ValueRange{source}, ValueRange{target},
                               b.getDictionaryAttr({}), b.getI64IntegerAttr(0));
      continue;
    }
    if (auto c = dyn_cast<graph::ConstantOp>(op)) {
      auto view = newView(b, loc, c.getType());
      if (failed(view))
        return failure();
      auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
      auto tt = *toTensorType(c.getType());
      int64_t bytes = static_cast<int64_t>(tt.sizeBytes());
      if (dense && dense.isSplat() && bytes >= kMinFillBytes &&
          tt.dtype != rt::DType::kBool) {
        double value = isa<FloatType>(dense.getElementType())
                           ? dense.getSplatValue<APFloat>().convertToDouble()
                           : static_cast<double>(
                                 dense.getSplatValue<APInt>().getSExtValue());
        plan::KernelOp::create(
            b, loc, b.getStringAttr("fill"), ValueRange{}, ValueRange{*view},
            b.getDictionaryAttr(
                {b.getNamedAttr("value", b.getF64FloatAttr(value))}),
            b.getI64IntegerAttr(0));
      } else {
        if (bytes > maxConstantBytes)
          return emitError(loc) << "constant of " << bytes
                                << " bytes exceeds max-constant-bytes ("
                                << static_cast<int64_t>(maxConstantBytes)
                                << ")";
        // Unique per plan: the node name plus a counter.
        std::string name = "const" + std::to_string(numConstants++);
        if (auto nl = dyn_cast<NameLoc>(loc))
          name = nl.getName().str() + "#" + name;
        bind(loc, plan::BindingRole::constant, name, *view, c.getValue());
      }
      viewOf[c.getResult()] = *view;
      continue;
    }
    if (!isa<graph::ColossalDialect>(op.getDialect()))
      return op.emitOpError() << "cannot be lowered to a plan";
    // A fill only assigned is written by its assigns, into their targets.
    if (isa<graph::FillOp>(op) && !op.use_empty() &&
        llvm::all_of(op.getUsers(),
                     [](Operation *u) { return isa<graph::AssignOp>(u); }))
      continue;
    SmallVector<Value> ins;
    for (Value v : op.getOperands()) {
      Value view = viewOf.lookup(v);
      if (!view)
        return op.emitOpError() << "uses a value with no planned buffer";
      ins.push_back(view);
    }
    // An update streamed through the device (`streamed-updates`): its
    // master and state come up on stream 1 (leads from placeWeightFetches),
    // it runs on stream 0, and what it writes goes back down on stream 2.
    if (offloadOptimizer &&
        isa<graph::AdamWOp, graph::AdamWNormOp, graph::SgdOp>(op)) {
      FailureOr<bool> streamed = lowerStreamedUpdate(
          b, op, ins, masterOf, viewOf, readers, persistentNameOf);
      if (failed(streamed))
        return failure();
      if (*streamed)
        continue;
    }
    // adamw_norm's sum of squares feeds the device's norm: it is built only
    // for weights updated on the device (colossal-build-optimizer-step's
    // norm-into-update-only).
    if (offloadOptimizer && isa<graph::AdamWNormOp>(op) &&
        llvm::any_of(op.getOperands(),
                     [&](Value v) { return masterOf.count(v) != 0; }))
      return op.emitOpError()
             << "updates an offloaded weight: adamw_norm runs on the device "
                "only (build the step without norm-into-update for it)";
    // An offloaded update runs on the host stream (below).
    bool onHostStream = false;
    if (offloadOptimizer && isa<graph::AdamWOp, graph::SgdOp>(op) &&
        llvm::any_of(op.getOperands(),
                     [&](Value v) { return masterOf.count(v) != 0; })) {
      // The update runs on the host: the master weight and the optimizer
      // state are there; the gradient, lr and step are copied down on the
      // D2H stream, behind a stream-0 record that follows their producers.
      SmallVector<unsigned> down;
      for (auto [i, v] : llvm::enumerate(op.getOperands())) {
        if (Value master = masterOf.lookup(v)) {
          ins[i] = master;
          continue;
        }
        auto alloc = ins[i]
                         .getDefiningOp<plan::ViewOp>()
                         .getBuffer()
                         .getDefiningOp<plan::BufferAllocOp>();
        if (alloc.getSpace() != plan::MemorySpace::host)
          down.push_back(i);
      }
      auto event = [&](bool isRecord, int64_t e, int64_t stream) {
        maxStream = std::max(maxStream, stream);
        if (isRecord)
          plan::EventRecordOp::create(b, loc, b.getI64IntegerAttr(e),
                                      b.getI64IntegerAttr(stream));
        else
          plan::EventWaitOp::create(b, loc, b.getI64IntegerAttr(e),
                                    b.getI64IntegerAttr(stream));
      };
      // One gradient copy in flight: stream 0 waits for the previous one
      // before issuing this, so that a device gradient is held only until
      // the next update's issue point (not to the program's end). Weakness:
      // a copy slower than the compute up to there stalls stream 0 (a lead
      // from the cost model, as offload-across-gaps places, would not).
      if (lastCopiedEvent >= 0 && !down.empty())
        event(false, lastCopiedEvent, kComputeStream);
      int64_t issued = numEvents++;
      event(true, issued, kComputeStream);
      int64_t hostWaits = issued;
      if (!down.empty()) {
        event(false, issued, kD2HStream);
        for (unsigned i : down) {
          auto copy = copyTo(b, loc, ins[i], plan::MemorySpace::host,
                             kD2HStream);
          if (failed(copy))
            return failure();
          ins[i] = *copy;
        }
        lastCopiedEvent = hostWaits = numEvents++;
        event(true, hostWaits, kD2HStream);
      }
      event(false, hostWaits, kHostStream);
      onHostStream = true;
    }
    if (isa<graph::ReshapeOp>(op)) {
      // Same bytes, another shape: a second view of the input's buffer.
      auto src = ins.front().getDefiningOp<plan::ViewOp>();
      auto shaped = cast<RankedTensorType>(op.getResult(0).getType());
      auto memref =
          MemRefType::get(shaped.getShape(), shaped.getElementType());
      viewOf[op.getResult(0)] =
          plan::ViewOp::create(b, loc, memref, src.getBuffer(),
                               src.getByteOffsetAttr())
              .getResult();
      continue;
    }
    StringRef kernel = op.getName().stripDialect();
    SmallVector<Value> outs;
    // The loss gradient over its scores: softmax_cross_entropy_grad reads a
    // row's scores before it writes that row's gradient, so when the scores
    // (OPT's f32 logits, 8192 x 50272: 1.65 GB) die here the gradient takes
    // their bytes instead of new ones, halving the loss's peak. Only for
    // an unbound device buffer that every graph value viewing it has left.
    auto scoresReusable = [&]() -> bool {
      if (kernel != "softmax_cross_entropy_grad" || onHostStream ||
          ins.empty() || op.getNumResults() != 1)
        return false;
      auto view = ins[0].getDefiningOp<plan::ViewOp>();
      auto result = cast<RankedTensorType>(op.getResult(0).getType());
      if (!view || cast<MemRefType>(ins[0].getType()) !=
                       MemRefType::get(result.getShape(),
                                       result.getElementType()))
        return false;
      Value buffer = view.getBuffer();
      auto alloc = buffer.getDefiningOp<plan::BufferAllocOp>();
      if (!alloc || alloc.getSpace() != plan::MemorySpace::device)
        return false;
      for (Operation *user : buffer.getUsers()) // bound: an input, weight...
        for (Value v : user->getResults())
          for (Operation *u : v.getUsers())
            if (isa<plan::BindOp>(u))
              return false;
      for (auto &[value, v] : viewOf) {
        auto other = v.getDefiningOp<plan::ViewOp>();
        if (!other || other.getBuffer() != buffer)
          continue;
        for (Operation *user : value.getUsers())
          if (user != &op && !user->isBeforeInBlock(&op))
            return false;
      }
      return true;
    };
    if (scoresReusable()) {
      outs.push_back(ins[0]);
      viewOf[op.getResult(0)] = ins[0];
      SmallVector<NamedAttribute> params;
      for (NamedAttribute attr : op.getAttrs())
        params.push_back(attr);
      plan::KernelOp::create(b, loc, b.getStringAttr(kernel), ins, outs,
                             b.getDictionaryAttr(params),
                             b.getI64IntegerAttr(kComputeStream));
      continue;
    }
    for (Value r : op.getResults()) {
      // An update assigned to a weight or state is written straight into it
      // when this op comes after every read of the old value here and the
      // kernel tolerates writing over its input.
      StringRef target = persistentNameOf(r);
      auto it = persistentViews.find(target);
      bool inPlace = !target.empty() && it != persistentViews.end() &&
                     it->second.getType() ==
                         MemRefType::get(cast<RankedTensorType>(r.getType())
                                             .getShape(),
                                         cast<RankedTensorType>(r.getType())
                                             .getElementType()) &&
                     mayWriteInPlace(kernel) &&
                     llvm::all_of(readers[target], [&](Operation *reader) {
                       return reader == &op || reader->isBeforeInBlock(&op);
                     });
      if (inPlace) {
        // Exact aliases only: the target is not read through another view.
        for (Value in : ins)
          if (in != it->second &&
              in.getDefiningOp<plan::ViewOp>().getBuffer() ==
                  it->second.getDefiningOp<plan::ViewOp>().getBuffer())
            inPlace = false;
      }
      if (inPlace) {
        outs.push_back(it->second);
        viewOf[r] = it->second;
        continue;
      }
      // A host-stream kernel touches host memory only.
      auto out = newView(b, loc, r.getType(),
                         onHostStream ? plan::MemorySpace::host
                                      : plan::MemorySpace::device);
      if (failed(out))
        return failure();
      outs.push_back(*out);
      viewOf[r] = *out;
    }
    SmallVector<NamedAttribute> params;
    for (NamedAttribute attr : op.getAttrs())
      params.push_back(attr);
    plan::KernelOp::create(
        b, loc, b.getStringAttr(kernel), ins, outs, b.getDictionaryAttr(params),
        b.getI64IntegerAttr(onHostStream ? kHostStream : kComputeStream));
    if (onHostStream)
      plan::EventRecordOp::create(b, loc, b.getI64IntegerAttr(numEvents++),
                                  b.getI64IntegerAttr(kHostStream));
  }
  return success();
}

void LowerToPlanPass::runOnOperation() {
  ModuleOp module = getOperation();
  persistentViews.clear();
  fetches.clear();
  numConstants = numEvents = 0;
  maxStream = kComputeStream;
  llvm::StringMap<func::FuncOp> graphs;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    if (!func->hasAttr("cplan.num_streams")) // not already a plan
      graphs[func.getName()] = func;
  }
  if (graphs.empty())
    return;
  // Programs, in execution order.
  SmallVector<std::pair<func::FuncOp, StringRef>> programs;
  if (graphs.count(rt::kMicroStepProgram) || graphs.count(rt::kApplyStepProgram)) {
    if (!graphs.count(rt::kMicroStepProgram) ||
        !graphs.count(rt::kApplyStepProgram) || graphs.size() != 2) {
      module.emitError("a training plan needs exactly @micro_step and "
                       "@apply_step");
      return signalPassFailure();
    }
    programs.push_back({graphs[rt::kMicroStepProgram], rt::kMicroStepProgram});
    programs.push_back({graphs[rt::kApplyStepProgram], rt::kApplyStepProgram});
  } else if (graphs.size() == 1) {
    func::FuncOp only = graphs.begin()->second;
    programs.push_back({only, only.getName() == rt::kTrainStepProgram
                                  ? rt::kTrainStepProgram
                                  : rt::kForwardProgram});
  } else {
    module.emitError("expected one forward graph function or @micro_step and "
                     "@apply_step, got ")
        << graphs.size() << " functions";
    return signalPassFailure();
  }

  // The resident share and the streamed updates: the named weights and
  // the states their updates read (moments, momentum), by name across the
  // programs.
  auto collectNames = [&](ArrayRef<std::string> list, StringRef option,
                          llvm::StringSet<> &names) -> LogicalResult {
    names.clear();
    llvm::StringSet<> named;
    for (const std::string &n : list)
      named.insert(n);
    llvm::StringSet<> seen;
    for (auto &[func, name] : programs) {
      func.walk([&](graph::WeightOp w) {
        if (named.contains(w.getName()))
          seen.insert(w.getName());
      });
      func.walk([&](Operation *update) {
        if (!isa<graph::AdamWOp, graph::AdamWNormOp, graph::SgdOp>(update))
          return;
        auto w = update->getOperand(0).getDefiningOp<graph::WeightOp>();
        if (!w || !named.contains(w.getName()))
          return;
        names.insert(w.getName());
        for (Value v : update->getOperands())
          if (auto st = v.getDefiningOp<graph::StateOp>())
            names.insert(st.getName());
      });
    }
    for (const std::string &n : list)
      if (!seen.contains(n))
        return module.emitError() << option << " names '" << n
                                  << "', which is not a weight of the graph";
    return success();
  };
  residentNames.clear();
  streamedNames.clear();
  if (offloadOptimizer) {
    if (failed(collectNames(deviceResident, "device-resident",
                            residentNames)) ||
        failed(collectNames(streamedUpdates, "streamed-updates",
                            streamedNames)))
      return signalPassFailure();
    for (const std::string &n : streamedUpdates)
      if (residentNames.contains(n)) {
        module.emitError() << "'" << n
                           << "' is named both device-resident and "
                              "streamed-updates";
        return signalPassFailure();
      }
  }

  func::FuncOp first = programs.front().first;
  OpBuilder b(first);
  auto plan = func::FuncOp::create(b, first.getLoc(),
                                   programs.size() == 1
                                       ? first.getName()
                                       : StringRef("train_step"),
                                   b.getFunctionType({}, {}));
  plan->setAttr("cplan.num_streams", b.getI64IntegerAttr(1));
  plan->setAttr("cplan.num_events", b.getI64IntegerAttr(0));
  Block *body = plan.addEntryBlock();
  b.setInsertionPointToEnd(body);
  for (auto &[func, name] : programs)
    if (failed(lowerProgram(b, func, name)))
      return signalPassFailure();
  func::ReturnOp::create(b, plan.getLoc());
  for (auto &[func, name] : programs)
    func.erase();
  // The rates the fetches' leads and the carried tail are timed with
  // (read once, when either needs them).
  std::optional<DeviceProfile> profile;
  auto leadProfile = [&]() -> const DeviceProfile * {
    if (!profile) {
      FailureOr<DeviceProfile> loaded = loadLeadProfile(plan, deviceProfile);
      if (failed(loaded))
        return nullptr;
      profile = std::move(*loaded);
    }
    return &*profile;
  };
  if (!fetches.empty()) {
    const DeviceProfile *rates = leadProfile();
    if (!rates)
      return signalPassFailure();
    placeWeightFetches(plan, fetches, *rates);
  }
  // Updates across the step boundary: stream 0 does not wait for the host
  // stream at the program's end (orderSideStreams), then the fetches wait
  // for their updates and the tail moves (carryUpdatesAcrossSteps, which
  // schedules the plan with stream 0's waits for the fetches in place).
  uint32_t carriedStreams = 0;
  if (crossStepUpdates && offloadOptimizer && maxStream >= kHostStream) {
    bool hostKernels = false;
    plan.walk([&](plan::KernelOp k) {
      hostKernels |= k.getStream() == kHostStream;
    });
    if (hostKernels)
      carriedStreams = 1u << kHostStream;
  }
  if (maxStream != kComputeStream) {
    const int64_t numStreams = maxStream + 1;
    orderSideStreams(plan, numStreams, carriedStreams);
    if (carriedStreams) {
      const DeviceProfile *rates = leadProfile();
      if (!rates)
        return signalPassFailure();
      carryUpdatesAcrossSteps(plan, *rates);
      plan->setAttr("cplan.carried_streams",
                    b.getArrayAttr({b.getI64IntegerAttr(kHostStream)}));
    }
    // Streams up to the highest used, each with its kind.
    SmallVector<Attribute> kinds;
    for (int64_t s = 0; s < numStreams; ++s)
      kinds.push_back(b.getStringAttr(kStreamKinds[s]));
    plan->setAttr("cplan.num_streams", b.getI64IntegerAttr(numStreams));
    plan->setAttr("cplan.stream_kinds", b.getArrayAttr(kinds));
  }
  plan->setAttr("cplan.num_events", b.getI64IntegerAttr(numEvents));
}
