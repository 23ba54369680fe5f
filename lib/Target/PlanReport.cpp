//===- PlanReport.cpp - The planner's report and budget check -------------===//

#include "colossal/Target/PlanReport.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Dialect/Plan/PlanDialect.h"
#include "colossal/Transforms/PlanCost.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

//===----------------------------------------------------------------------===//
// Flags
//===----------------------------------------------------------------------===//

std::string mlir::colossal::takePlanReportArgs(int &argc, char **argv,
                                               PlanReportOptions &options) {
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    llvm::StringRef a = argv[i];
    llvm::StringRef flag = a.take_until([](char c) { return c == '='; });
    if (flag != "--budget" && flag != "--device-profile" &&
        flag != "--report-json" && flag != "--report" && flag != "--policy") {
      argv[out++] = argv[i];
      continue;
    }
    std::string v;
    if (flag.size() < a.size()) {
      v = a.drop_front(flag.size() + 1).str();
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      return flag.str() + " needs a value";
    }
    if (flag == "--budget") {
      std::optional<uint64_t> bytes = parseByteSize(v);
      if (!bytes || *bytes == 0)
        return "invalid value '" + v +
               "' for --budget: expected a size such as 24GiB, 1MiB, 1e9 "
               "or plain bytes";
      options.budgetBytes = *bytes;
    } else if (flag == "--policy") {
      if (v != "cuda" && v != "cpu" && v != "auto")
        return "invalid value '" + v + "' for --policy (cuda, cpu or auto)";
      options.policy = v;
    } else if (v.empty()) {
      return flag.str() + " needs a file name";
    } else if (flag == "--device-profile") {
      options.deviceProfilePath = v;
    } else if (flag == "--report-json") {
      options.reportJsonPath = v;
    } else {
      options.reportHtmlPath = v;
    }
  }
  argc = out;
  return "";
}

//===----------------------------------------------------------------------===//
// Formatting
//===----------------------------------------------------------------------===//

namespace {

std::string fmtBytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", n / double(1ull << 30));
  else if (n >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", n / double(1ull << 20));
  else if (n >= (1ull << 10))
    std::snprintf(buf, sizeof buf, "%.1f KiB", n / double(1ull << 10));
  else
    std::snprintf(buf, sizeof buf, "%llu B",
                  static_cast<unsigned long long>(n));
  return buf;
}

std::string fmtSeconds(double s) {
  char buf[32];
  if (s == 0)
    return "0 s";
  if (s >= 1)
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  else if (s >= 1e-3)
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  return buf;
}

std::string fmtFixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

const char *bottleneckName(llvm::StringRef b) {
  if (b == "pcie")
    return "PCIe";
  if (b == "cpu_optimizer")
    return "CPU optimizer";
  return "compute";
}

std::string locationName(Location loc) {
  if (auto nl = dyn_cast<NameLoc>(loc))
    return nl.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (auto nl = dyn_cast<NameLoc>(inner))
        return nl.getName().str();
  return "";
}

plan::BufferAllocOp bufferOf(Value view) {
  if (auto v = view.getDefiningOp<plan::ViewOp>())
    return v.getBuffer().getDefiningOp<plan::BufferAllocOp>();
  return {};
}

Placement placementOf(Value view) {
  plan::BufferAllocOp b = bufferOf(view);
  return b && b.getSpace() == plan::MemorySpace::host ? Placement::Host
                                                      : Placement::Device;
}

/// share/colossal/devices/h200.json next to the executable's bin/ folder
/// (the build tree and an install tree have the same layout).
std::string defaultProfilePath() {
  static int anchor;
  std::string exe = llvm::sys::fs::getMainExecutable("colossal-opt", &anchor);
  llvm::SmallString<256> path(
      llvm::sys::path::parent_path(llvm::sys::path::parent_path(exe)));
  llvm::sys::path::append(path, "share", "colossal", "devices", "h200.json");
  return path.str().str();
}

} // namespace

//===----------------------------------------------------------------------===//
// IR -> records -> report
//===----------------------------------------------------------------------===//

FailureOr<PlanReport>
mlir::colossal::buildPlanReport(ModuleOp module,
                                const PlanReportOptions &options,
                                llvm::StringRef modelPath, std::string &err) {
  PlanReport r;
  r.model = llvm::sys::path::filename(modelPath).str();
  r.policy = options.policy;

  // The device profile.
  r.profilePath = options.deviceProfilePath.empty() ? defaultProfilePath()
                                                    : options.deviceProfilePath;
  auto file = llvm::MemoryBuffer::getFile(r.profilePath);
  if (!file) {
    err = "cannot read the device profile '" + r.profilePath +
          "': " + file.getError().message();
    if (options.deviceProfilePath.empty())
      err += " (the build installs devices/h200.json there; pass "
             "--device-profile FILE)";
    return failure();
  }
  llvm::Expected<DeviceProfile> profile =
      parseDeviceProfile((*file)->getBuffer());
  if (!profile) {
    err = "device profile '" + r.profilePath +
          "': " + llvm::toString(profile.takeError());
    return failure();
  }
  r.profile = std::move(*profile);
  r.budgetFromProfile = !options.budgetBytes;
  r.budgetBytes = options.budgetBytes.value_or(r.profile.deviceMemoryBytes);

  func::FuncOp func;
  for (func::FuncOp f : module.getOps<func::FuncOp>())
    if (f->hasAttr("cplan.arena_bytes")) {
      func = f;
      break;
    }
  if (!func) {
    err = "the compiled module has no plan function with cplan.arena_bytes";
    return failure();
  }
  auto arena = func->getAttrOfType<DenseI64ArrayAttr>("cplan.arena_bytes");
  auto lower =
      func->getAttrOfType<DenseI64ArrayAttr>("cplan.lower_bound_bytes");
  for (size_t s = 0; s < kNumSpaces; ++s) {
    if (arena && static_cast<int64_t>(s) < arena.size())
      r.plannedPeakBytes[s] = static_cast<uint64_t>(arena[s]);
    if (lower && static_cast<int64_t>(s) < lower.size())
      r.lowerBoundBytes[s] = static_cast<uint64_t>(lower[s]);
  }

  // How the step was compiled (grad-accum and the kind line).
  std::string optimizer, precision;
  if (auto cfg = module->getAttrOfType<StringAttr>("colossal.train_config")) {
    if (llvm::Expected<llvm::json::Value> v =
            llvm::json::parse(cfg.getValue())) {
      if (const llvm::json::Object *o = v->getAsObject()) {
        if (std::optional<int64_t> n = o->getInteger("grad_accum"); n && *n > 0)
          r.gradAccum = static_cast<uint32_t>(*n);
        optimizer = o->getString("optimizer").value_or("").str();
        precision = o->getString("precision").value_or("").str();
      }
    } else {
      llvm::consumeError(v.takeError());
    }
  }

  // Where each trained weight's master and optimizer state live (the
  // states by name: adam.m.<weight>, adam.v.<weight>, sgd.*.<weight>).
  {
    llvm::StringMap<std::pair<bool, uint64_t>> trained;
    llvm::StringMap<std::pair<bool, uint64_t>> states;
    func.walk([&](plan::BindOp b) {
      auto view = b.getView().getDefiningOp<plan::ViewOp>();
      auto alloc = view ? view.getBuffer().getDefiningOp<plan::BufferAllocOp>()
                        : plan::BufferAllocOp();
      if (!alloc)
        return;
      bool onDevice = alloc.getSpace() == plan::MemorySpace::device;
      uint64_t bytes = static_cast<uint64_t>(alloc.getSize());
      if (b.getRole() == plan::BindingRole::weight && b.getTrainable())
        trained[b.getName()] = {onDevice, bytes};
      else if (b.getRole() == plan::BindingRole::state &&
               (b.getName().starts_with("adam.") ||
                b.getName().starts_with("sgd.")))
        states[b.getName()] = {onDevice, bytes};
    });
    for (auto &s : states) {
      // The weight is the name after the second dot.
      StringRef w = s.getKey().split('.').second.split('.').second;
      auto it = trained.find(w);
      if (it != trained.end())
        it->second.second += s.getValue().second;
    }
    for (auto &t : trained) {
      if (t.getValue().first) {
        ++r.optimizerDeviceWeights;
        r.optimizerDeviceBytes += t.getValue().second;
      } else {
        ++r.optimizerHostWeights;
        r.optimizerHostBytes += t.getValue().second;
      }
    }
  }

  // Instructions in order, and the programs' ranges.
  std::vector<Operation *> instrs;
  func.walk([&](Operation *op) {
    if (auto p = dyn_cast<plan::ProgramOp>(op)) {
      if (!r.programs.empty())
        r.programs.back().last = static_cast<uint32_t>(instrs.size()) - 1;
      r.programs.push_back(
          {p.getName().str(), static_cast<uint32_t>(instrs.size()), 0});
    } else if (isa<plan::KernelOp, plan::CopyOp, plan::EventRecordOp,
                   plan::EventWaitOp>(op)) {
      instrs.push_back(op);
    }
  });
  if (!r.programs.empty())
    r.programs.back().last = static_cast<uint32_t>(instrs.size()) - 1;
  r.numInstructions = static_cast<uint32_t>(instrs.size());
  // micro_step (+ apply_step), or train_step with the updates fused in.
  auto isGradientProgram = [](llvm::StringRef name) {
    return name == "micro_step" || name == "train_step";
  };
  bool training = false;
  for (const PlanProgramRange &p : r.programs)
    training |= isGradientProgram(p.name);
  r.kind = training ? "training step" : "forward";
  if (training && !optimizer.empty())
    r.kind +=
        " (" + optimizer + ", " + precision +
        (r.gradAccum > 1 ? ", " + std::to_string(r.gradAccum) + " micro-batches"
                         : std::string()) +
        ")";

  // Buffers: class from their bindings. The backward starts after the loss
  // is written: the gradient program's first output (autodiff returns the
  // loss first; __count and, when fused, grad_norm and lr follow).
  SmallVector<plan::BufferAllocOp> allocs;
  func.walk([&](plan::BufferAllocOp a) { allocs.push_back(a); });
  auto liveOf = [](plan::BufferAllocOp a)
      -> std::optional<std::pair<uint32_t, uint32_t>> {
    auto live = a.getLive();
    if (!live || live->size() != 2)
      return std::nullopt;
    return std::pair<uint32_t, uint32_t>{static_cast<uint32_t>((*live)[0]),
                                         static_cast<uint32_t>((*live)[1])};
  };
  func.walk([&](plan::BindOp bind) -> WalkResult {
    if (bind.getRole() != plan::BindingRole::output ||
        !isGradientProgram(bind.getProgram().value_or("")) ||
        bind.getName().starts_with("__"))
      return WalkResult::advance();
    if (plan::BufferAllocOp b = bufferOf(bind.getView()))
      if (auto live = liveOf(b))
        r.backwardStart = live->first + 1;
    return WalkResult::interrupt();
  });

  std::vector<TimelineBuffer> buffers;
  buffers.reserve(allocs.size());
  for (plan::BufferAllocOp alloc : allocs) {
    auto live = liveOf(alloc);
    if (!live) {
      err = "a buffer has no live range: the plan was not through "
            "colossal-assign-offsets";
      return failure();
    }
    // A buffer bound several ways takes the most persistent role.
    std::optional<TensorClass> cls;
    auto rank = [](TensorClass c) {
      switch (c) {
      case TensorClass::Weights:
        return 0;
      case TensorClass::Gradients:
      case TensorClass::OptimizerState:
        return 1;
      case TensorClass::Constants:
        return 2;
      default:
        return 3;
      }
    };
    for (Operation *viewUser : alloc->getUsers())
      for (Operation *user : viewUser->getUsers()) {
        auto bind = dyn_cast<plan::BindOp>(user);
        if (!bind)
          continue;
        TensorClass c = TensorClass::InputsOutputs;
        switch (bind.getRole()) {
        case plan::BindingRole::weight:
          c = TensorClass::Weights;
          break;
        case plan::BindingRole::state:
          c = classifyState(bind.getName().str());
          break;
        case plan::BindingRole::constant:
          c = TensorClass::Constants;
          break;
        case plan::BindingRole::input:
        case plan::BindingRole::output:
          break;
        }
        if (!cls || rank(c) < rank(*cls))
          cls = c;
      }
    TimelineBuffer tb;
    tb.sizeBytes = static_cast<uint64_t>(alloc.getSize());
    tb.space = alloc.getSpace() == plan::MemorySpace::host ? Space::Host
                                                           : Space::Device;
    tb.firstUse = live->first;
    tb.lastUse = live->second;
    tb.tensorClass = cls.value_or(
        classifyActivation(tb.firstUse, tb.lastUse, r.backwardStart));
    buffers.push_back(tb);
  }
  r.timeline = computeMemoryTimeline(buffers, r.numInstructions);
  for (size_t s = 0; s < kNumSpaces; ++s) {
    uint32_t at = r.timeline.spaces[s].peakInstruction;
    if (r.timeline.spaces[s].peakBytes > 0 && at < instrs.size()) {
      Operation *op = instrs[at];
      std::string what = op->getName().getStringRef().str();
      if (auto k = dyn_cast<plan::KernelOp>(op))
        what = k.getOp().str();
      r.peakNode[s] = locationName(op->getLoc());
      r.peakOp[s] = what;
    }
  }

  // Cost records: micro_step's instructions run gradAccum times per step.
  std::vector<CostInstr> records;
  records.reserve(instrs.size());
  auto repeatOf = [&](uint32_t i) {
    // Only micro_step repeats: a fused train_step has grad-accum 1.
    for (const PlanProgramRange &p : r.programs)
      if (p.name == "micro_step" && i >= p.first && i <= p.last)
        return r.gradAccum;
    return 1u;
  };
  for (auto [i, op] : llvm::enumerate(instrs)) {
    CostInstr c;
    c.repeat = repeatOf(static_cast<uint32_t>(i));
    if (auto k = dyn_cast<plan::KernelOp>(op)) {
      const rt::OpInfo *info = rt::lookupOp(k.getOp().str());
      if (!info) {
        err = "kernel '" + k.getOp().str() + "' is not in the op table";
        return failure();
      }
      c.op = info->kind;
      SmallVector<Type> resultTypes;
      for (Value v : k.getIns())
        if (auto t = toTensorType(v.getType()))
          c.inputs.push_back(*t);
      for (Value v : k.getOuts()) {
        resultTypes.push_back(v.getType());
        if (auto t = toTensorType(v.getType()))
          c.outputs.push_back(*t);
      }
      FailureOr<rt::Attrs> attrs =
          attrsFromMlir(k.getLoc(), c.op, k.getParams(), resultTypes);
      if (failed(attrs)) {
        err = "reading the attributes of kernel '" + k.getOp().str() + "'";
        return failure();
      }
      c.attrs = std::move(*attrs);
      c.placement =
          k.getOuts().empty() ? Placement::Device : placementOf(k.getOuts()[0]);
    } else if (auto copy = dyn_cast<plan::CopyOp>(op)) {
      c.kind = CostInstr::Kind::Copy;
      if (auto t = toTensorType(copy.getSource().getType()))
        c.inputs.push_back(*t);
      c.placement = placementOf(copy.getSource());
      c.copyTo = placementOf(copy.getTarget());
      if (c.placement != c.copyTo)
        r.copies.push_back({static_cast<uint32_t>(i),
                            c.copyTo == Placement::Device,
                            c.inputs.empty() ? 0 : c.inputs[0].sizeBytes()});
    } else {
      c.kind = CostInstr::Kind::Event;
      if (auto rec = dyn_cast<plan::EventRecordOp>(op)) {
        c.sync = StreamInstr::Sync::Record;
        c.event = static_cast<int64_t>(rec.getEvent());
        c.stream = static_cast<uint32_t>(rec.getStream());
      } else if (auto w = dyn_cast<plan::EventWaitOp>(op)) {
        c.sync = StreamInstr::Sync::Wait;
        c.event = static_cast<int64_t>(w.getEvent());
        c.stream = static_cast<uint32_t>(w.getStream());
      }
    }
    if (auto k = dyn_cast<plan::KernelOp>(op))
      c.stream = static_cast<uint32_t>(k.getStream());
    else if (auto copy = dyn_cast<plan::CopyOp>(op))
      c.stream = static_cast<uint32_t>(copy.getStream());
    for (auto [p, range] : llvm::enumerate(r.programs))
      if (i >= range.first && i <= range.last)
        c.program = static_cast<uint32_t>(p);
    records.push_back(std::move(c));
  }
  r.carriedStreams = carriedStreamsOf(func);
  r.cost = estimateStep(records, r.profile, r.carriedStreams);
  for (size_t i = 0; i < records.size() && i < r.cost.instrs.size(); ++i) {
    const CostInstr &c = records[i];
    const InstrCost &cost = r.cost.instrs[i];
    if (c.kind != CostInstr::Kind::Kernel)
      continue;
    std::string key(rt::opInfo(c.op).name);
    if (cost.resource == Resource::Cpu)
      key += "@host";
    PlanReport::KindCost &k = r.perKind[key];
    k.count += c.repeat;
    k.seconds += c.repeat * cost.seconds;
    k.bytes += static_cast<double>(c.repeat) * cost.bytes;
    k.flops += c.repeat * cost.flops;
  }
  return r;
}

//===----------------------------------------------------------------------===//
// Budget
//===----------------------------------------------------------------------===//

namespace {

/// "weights 4.90 GiB, gradients 4.90 GiB, ..., activations 54.30 GiB (saved
/// for backward ..., temporaries ...)": the classes at a space's peak, in
/// the order people reason about them; empty classes left out.
std::string describePeak(const SpaceTimeline &t) {
  auto at = [&](TensorClass c) {
    return t.peakByClass[static_cast<size_t>(c)];
  };
  std::string s;
  auto add = [&](const std::string &part) {
    s += (s.empty() ? "" : ", ") + part;
  };
  for (TensorClass c : {TensorClass::Weights, TensorClass::Gradients,
                        TensorClass::OptimizerState})
    if (at(c))
      add(std::string(tensorClassName(c)) + " " + fmtBytes(at(c)));
  uint64_t saved = at(TensorClass::SavedActivations);
  uint64_t temps = at(TensorClass::Temporaries);
  if (saved + temps) {
    std::string part = "activations " + fmtBytes(saved + temps);
    if (saved && temps)
      part += " (saved for backward " + fmtBytes(saved) + ", temporaries " +
              fmtBytes(temps) + ")";
    else if (saved)
      part += " (all saved for backward)";
    add(part);
  }
  for (TensorClass c : {TensorClass::InputsOutputs, TensorClass::Constants})
    if (at(c))
      add(std::string(tensorClassName(c)) + " " + fmtBytes(at(c)));
  return s.empty() ? "nothing" : s;
}

} // namespace

/// "instruction 787, matmul node_linear_144": where the device peak is.
static std::string describePeakInstruction(const PlanReport &r) {
  std::string s = "instruction " +
                  std::to_string(r.timeline[Space::Device].peakInstruction);
  if (!r.peakOp[0].empty())
    s += ", " + r.peakOp[0];
  if (!r.peakNode[0].empty())
    s += " " + r.peakNode[0];
  return s;
}

LogicalResult mlir::colossal::checkPlanBudget(const PlanReport &r,
                                              std::string &err) {
  const uint64_t need = r.plannedPeakBytes[0];
  if (need <= r.budgetBytes)
    return success();
  const SpaceTimeline &dev = r.timeline[Space::Device];
  err = "the plan needs " + fmtBytes(need) +
        " of device memory but the budget is " + fmtBytes(r.budgetBytes) +
        (r.budgetFromProfile ? " (the device profile's memory)" : "") +
        " (over by " + fmtBytes(need - r.budgetBytes) +
        "): " + describePeak(dev) + " at the peak (" +
        describePeakInstruction(r) + ")";
  if (need > r.lowerBoundBytes[0] &&
      need - r.lowerBoundBytes[0] >= (1ull << 20))
    err += "; packing adds " + fmtBytes(need - r.lowerBoundBytes[0]) +
           " over the liveness lower bound";
  if (r.policy == "cuda")
    err += "; --policy cpu (or auto) would offload the optimizer state and "
           "the master weights to host memory";
  else
    err += " even with the optimizer state and the master weights in host "
           "memory and idle device buffers parked there between uses "
           "(--policy " + r.policy +
           "), and the activations whose recompute the cost model allows "
           "recomputed (unless --remat off): what remains is live at once";
  return failure();
}

//===----------------------------------------------------------------------===//
// Summary
//===----------------------------------------------------------------------===//

void mlir::colossal::printPlanReportSummary(llvm::raw_ostream &os,
                                            const PlanReport &r) {
  const char *names[kNumSpaces] = {"device", "host"};
  for (size_t s = 0; s < kNumSpaces; ++s) {
    os << "  " << names[s] << " memory: planned peak "
       << fmtBytes(r.plannedPeakBytes[s]) << ", lower bound "
       << fmtBytes(r.lowerBoundBytes[s]);
    if (s == 0)
      os << ", budget " << fmtBytes(r.budgetBytes)
         << (r.budgetFromProfile ? " (the device profile's)" : "");
    os << "\n";
  }
  const SpaceTimeline &dev = r.timeline[Space::Device];
  os << "  at the device peak (" << describePeakInstruction(r)
     << "): " << describePeak(dev) << "\n";
  os << "  bytes moved per step: host-to-device " << fmtBytes(r.cost.h2dBytes)
     << ", device-to-host " << fmtBytes(r.cost.d2hBytes) << "\n";
  if (r.optimizerHostWeights != 0)
    os << "  optimizer state (master + moments): " << r.optimizerDeviceWeights
       << " weights, " << fmtBytes(r.optimizerDeviceBytes)
       << " on the device; " << r.optimizerHostWeights << " weights, "
       << fmtBytes(r.optimizerHostBytes) << " offloaded to host memory\n";
  const StepCost &c = r.cost;
  os << "  predicted step: " << fmtSeconds(c.stepS) << ", bound by "
     << bottleneckName(c.bottleneck) << " (compute " << fmtSeconds(c.computeS)
     << ": GEMM " << fmtSeconds(c.gemmS) << " + memory-bound "
     << fmtSeconds(c.memoryBoundS) << "; PCIe " << fmtSeconds(c.pcieS)
     << "; CPU optimizer " << fmtSeconds(c.cpuS) << "; "
     << c.streamBusyS.size() << (c.streamBusyS.size() == 1 ? " stream" : " streams")
     << " scheduled: " << fmtSeconds(c.makespanS)
     << (r.carriedStreams ? ", steady state: host updates run on into the "
                            "next step"
                          : "")
     << ") on "
     << (r.profile.name.empty() ? r.profilePath : r.profile.name) << "\n";
}

//===----------------------------------------------------------------------===//
// JSON
//===----------------------------------------------------------------------===//

void mlir::colossal::writePlanReportJson(llvm::raw_ostream &os,
                                         const PlanReport &r) {
  llvm::json::OStream j(os, 2);
  auto space = [&](Space s) {
    const SpaceTimeline &t = r.timeline[s];
    size_t i = static_cast<size_t>(s);
    j.attributeObject(s == Space::Device ? "device" : "host", [&] {
      j.attribute("planned_peak_bytes", r.plannedPeakBytes[i]);
      j.attribute("lower_bound_bytes", r.lowerBoundBytes[i]);
      j.attribute("peak_instruction", static_cast<int64_t>(t.peakInstruction));
      j.attribute("peak_node", r.peakNode[i]);
      j.attribute("peak_op", r.peakOp[i]);
      j.attributeObject("by_class_at_peak", [&] {
        for (size_t c = 0; c < kNumTensorClasses; ++c)
          j.attribute(tensorClassKey(static_cast<TensorClass>(c)),
                      t.peakByClass[c]);
      });
    });
  };
  j.object([&] {
    j.attribute("model", r.model);
    j.attribute("kind", r.kind);
    space(Space::Device);
    space(Space::Host);
    j.attributeObject("bytes_moved", [&] {
      j.attribute("h2d", r.cost.h2dBytes);
      j.attribute("d2h", r.cost.d2hBytes);
    });
    j.attributeObject("optimizer_state", [&] {
      j.attribute("device_weights", static_cast<int64_t>(r.optimizerDeviceWeights));
      j.attribute("device_bytes", r.optimizerDeviceBytes);
      j.attribute("host_weights", static_cast<int64_t>(r.optimizerHostWeights));
      j.attribute("host_bytes", r.optimizerHostBytes);
    });
    j.attribute("predicted_step_s", r.cost.stepS);
    j.attribute("bottleneck", r.cost.bottleneck);
    // The streams that run on into the next step (time_s.makespan is then
    // the steady state's step).
    if (r.carriedStreams)
      j.attributeArray("carried_streams", [&] {
        for (uint32_t s = 0; s < 32; ++s)
          if (r.carriedStreams >> s & 1u)
            j.value(static_cast<int64_t>(s));
      });
    j.attributeObject("time_s", [&] {
      j.attribute("compute", r.cost.computeS);
      j.attribute("gemm", r.cost.gemmS);
      j.attribute("memory_bound", r.cost.memoryBoundS);
      j.attribute("h2d", r.cost.h2dS);
      j.attribute("d2h", r.cost.d2hS);
      j.attribute("pcie", r.cost.pcieS);
      j.attribute("cpu_optimizer", r.cost.cpuS);
      j.attribute("makespan", r.cost.makespanS);
    });
    j.attributeArray("stream_busy_s", [&] {
      for (double busy : r.cost.streamBusyS)
        j.value(busy);
    });
    j.attributeObject("per_kind", [&] {
      for (const auto &[name, k] : r.perKind)
        j.attributeObject(name, [&] {
          j.attribute("count", static_cast<int64_t>(k.count));
          j.attribute("predicted_s", k.seconds);
          j.attribute("bytes", k.bytes);
          j.attribute("flops", k.flops);
        });
    });
    j.attribute("flops_per_step", r.cost.flops);
    j.attribute("instructions", static_cast<int64_t>(r.numInstructions));
    j.attribute("grad_accum", static_cast<int64_t>(r.gradAccum));
    j.attributeArray("programs", [&] {
      for (const PlanProgramRange &p : r.programs)
        j.object([&] {
          j.attribute("name", p.name);
          j.attribute("first", static_cast<int64_t>(p.first));
          j.attribute("last", static_cast<int64_t>(p.last));
        });
    });
    if (r.backwardStart)
      j.attribute("backward_start", static_cast<int64_t>(*r.backwardStart));
    else
      j.attribute("backward_start", nullptr);
    j.attribute("budget_bytes", r.budgetBytes);
    j.attribute("budget_source", r.budgetFromProfile ? "profile" : "--budget");
    j.attribute("policy", r.policy);
    j.attributeObject("profile", [&] {
      j.attribute("name", r.profile.name);
      j.attribute("path", r.profilePath);
      j.attribute("device_memory_bytes", r.profile.deviceMemoryBytes);
    });
  });
  os << "\n";
}

//===----------------------------------------------------------------------===//
// HTML
//===----------------------------------------------------------------------===//

namespace {

std::string escapeHtml(llvm::StringRef s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&quot;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

/// Fill colours by class: persistent state in cool colours at the bottom,
/// activations in warm colours on top.
const char *classColor(TensorClass c) {
  switch (c) {
  case TensorClass::Weights:
    return "#3b6ea8";
  case TensorClass::OptimizerState:
    return "#8a6bbf";
  case TensorClass::Gradients:
    return "#3a9e8f";
  case TensorClass::Constants:
    return "#7f7f7f";
  case TensorClass::InputsOutputs:
    return "#b9b9b9";
  case TensorClass::SavedActivations:
    return "#e58e26";
  case TensorClass::Temporaries:
    return "#f3cd6e";
  }
  return "#000";
}

/// A "nice" axis step (1, 2 or 5 x 10^k) giving at most `maxTicks` ticks.
double niceStep(double range, int maxTicks) {
  if (range <= 0)
    return 1;
  double raw = range / maxTicks;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw)
      return m * mag;
  return 10 * mag;
}

} // namespace

/// "53%", or "<1%" for a sliver.
static std::string percent(uint64_t part, uint64_t whole) {
  double p = 100.0 * part / std::max<uint64_t>(whole, 1);
  return p > 0 && p < 1 ? "&lt;1%" : fmtFixed(p, 0) + "%";
}

/// "69.4 TFLOP", "153.0 GFLOP".
static std::string fmtFlops(double f) {
  if (f >= 1e12)
    return fmtFixed(f / 1e12, 1) + " TFLOP";
  if (f >= 1e9)
    return fmtFixed(f / 1e9, 1) + " GFLOP";
  return fmtFixed(f / 1e6, 1) + " MFLOP";
}

void mlir::colossal::writePlanReportHtml(llvm::raw_ostream &os,
                                         const PlanReport &r) {
  const SpaceTimeline &dev = r.timeline[Space::Device];
  const uint32_t n = std::max<uint32_t>(r.timeline.numInstructions, 1);
  const double gib = double(1ull << 30);
  const uint64_t planned = r.plannedPeakBytes[0];
  const bool fits = planned <= r.budgetBytes;

  // Geometry of the chart (SVG user units = CSS px).
  // Integers, so that they print as such; computed positions go through
  // fmtFixed.
  const int W = 1340, H = 492;
  const int x0 = 78, x1 = 1010, y0 = 50, y1 = 418;
  // The y range shows the peak with headroom, and the budget unless it is
  // so far above the peak that the plan would be squashed at the bottom.
  double top = std::max<double>(planned, dev.peakBytes) * 1.12;
  bool budgetOnChart = r.budgetBytes <= top * 2.5;
  if (budgetOnChart)
    top = std::max(top, r.budgetBytes * 1.06);
  if (top <= 0)
    top = 1;
  auto X = [&](double instr) { return x0 + (x1 - x0) * instr / n; };
  auto Y = [&](double bytes) { return y1 - (y1 - y0) * bytes / top; };

  // One column per bin of instructions: the instruction with the most bytes
  // in the bin stands for it, so the peak is never averaged away.
  const uint32_t bins = std::min<uint32_t>(n, 960);
  std::vector<uint32_t> rep(bins);
  for (uint32_t b = 0; b < bins; ++b) {
    uint32_t lo = uint64_t(b) * n / bins, hi = uint64_t(b + 1) * n / bins;
    uint32_t best = lo;
    for (uint32_t i = lo; i < hi && i < dev.totalBytes.size(); ++i)
      if (dev.totalBytes[i] > dev.totalBytes[best])
        best = i;
    rep[b] = best;
  }
  auto binX = [&](uint32_t b) { return X(double(uint64_t(b) * n / bins)); };

  os << "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
     << "<title>Memory plan: " << escapeHtml(r.model) << "</title>\n"
     << R"(<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;margin:14px 26px;max-width:1360px}
h1{font-size:21px;margin:0 0 2px}
.sub{color:#555;margin:0 0 10px}
.verdict{font-size:16px;padding:8px 12px;border-radius:5px;margin:0 0 6px;display:inline-block}
.ok{background:#e3f3e5;border:1px solid #8cc79a}
.over{background:#fbe3e1;border:1px solid #e0928a}
svg{display:block}
svg text{font:12px system-ui,Helvetica,Arial,sans-serif;fill:#333}
svg .big{font-size:13px;font-weight:600}
svg .axis{fill:#555}
.tables{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start;margin-top:4px}
table{border-collapse:collapse}
caption{text-align:left;font-weight:600;padding:0 0 4px}
td,th{padding:2px 10px;border-bottom:1px solid #e4e4e4;text-align:right}
td:first-child,th:first-child{text-align:left}
th{font-weight:600;color:#444}
.note{color:#666;font-size:12.5px;max-width:1300px}
</style></head><body>
)";
  os << "<h1>Memory plan: " << escapeHtml(r.model) << "</h1>\n";
  os << "<p class=\"sub\">" << escapeHtml(r.kind) << ", " << r.numInstructions
     << " instructions; device profile: "
     << escapeHtml(r.profile.name.empty() ? r.profilePath : r.profile.name)
     << "; policy " << escapeHtml(r.policy) << "</p>\n";
  os << "<div class=\"verdict " << (fits ? "ok" : "over") << "\">"
     << (fits ? "Fits" : "Does not fit") << ": device peak <b>"
     << fmtBytes(planned) << "</b> of a " << fmtBytes(r.budgetBytes)
     << " budget (" << percent(planned, r.budgetBytes)
     << "). Predicted step <b>" << fmtSeconds(r.cost.stepS) << "</b>, bound by "
     << bottleneckName(r.cost.bottleneck) << ".</div>\n";

  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W
     << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H
     << "\" role=\"img\" aria-label=\"device memory in use over the "
        "schedule\">\n";
  os << "<text class=\"big\" x=\"" << x0
     << "\" y=\"22\">Device memory in "
        "use over the schedule, by what it holds</text>\n";

  // Grid and y axis, in the largest binary unit the peak reaches.
  double unit = 1;
  const char *unitName = "bytes";
  for (auto [u, name] : {std::pair{gib, "GiB"}, std::pair{gib / 1024, "MiB"},
                         std::pair{gib / (1024 * 1024), "KiB"}})
    if (top / 1.12 >= u) {
      unit = u;
      unitName = name;
      break;
    }
  double stepUnits = niceStep(top / unit, 8);
  for (double v = 0; v * unit <= top; v += stepUnits) {
    double y = Y(v * unit);
    os << "<line x1=\"" << x0 << "\" x2=\"" << x1 << "\" y1=\""
       << fmtFixed(y, 1) << "\" y2=\"" << fmtFixed(y, 1)
       << "\" stroke=\"#e6e6e6\"/>\n";
    os << "<text class=\"axis\" x=\"" << x0 - 8 << "\" y=\""
       << fmtFixed(y + 4, 1) << "\" text-anchor=\"end\">"
       << fmtFixed(v, stepUnits < 1 ? 1 : 0) << "</text>\n";
  }
  os << "<text class=\"axis\" transform=\"translate(22," << (y0 + y1) / 2
     << ") rotate(-90)\" text-anchor=\"middle\">" << unitName
     << " in use</text>\n";

  // The stacked areas, bottom class first.
  std::vector<double> below(bins, 0);
  for (size_t c = 0; c < kNumTensorClasses; ++c) {
    const std::vector<uint64_t> &bytes = dev.bytesByClass[c];
    bool any = false;
    for (uint32_t b = 0; b < bins && !any; ++b)
      any = rep[b] < bytes.size() && bytes[rep[b]] > 0;
    if (!any)
      continue;
    std::vector<double> above(bins);
    for (uint32_t b = 0; b < bins; ++b)
      above[b] = below[b] + (rep[b] < bytes.size() ? bytes[rep[b]] : 0);
    os << "<path fill=\"" << classColor(static_cast<TensorClass>(c))
       << "\" d=\"M";
    for (uint32_t b = 0; b < bins; ++b)
      os << fmtFixed(binX(b), 1) << "," << fmtFixed(Y(above[b]), 1) << "H"
         << fmtFixed(binX(b + 1), 1) << (b + 1 < bins ? "L" : "");
    for (uint32_t b = bins; b-- > 0;)
      os << "L" << fmtFixed(binX(b + 1), 1) << "," << fmtFixed(Y(below[b]), 1)
         << "H" << fmtFixed(binX(b), 1);
    os << "Z\"><title>" << tensorClassName(static_cast<TensorClass>(c))
       << "</title></path>\n";
    below = std::move(above);
  }

  // Axes.
  os << "<line x1=\"" << x0 << "\" x2=\"" << x1 << "\" y1=\"" << y1
     << "\" y2=\"" << y1 << "\" stroke=\"#333\"/>\n";
  os << "<line x1=\"" << x0 << "\" x2=\"" << x0 << "\" y1=\"" << y0
     << "\" y2=\"" << y1 << "\" stroke=\"#333\"/>\n";
  double xStep = niceStep(n, 10);
  for (double v = 0; v <= n; v += xStep) {
    double x = X(v);
    os << "<line x1=\"" << fmtFixed(x, 1) << "\" x2=\"" << fmtFixed(x, 1)
       << "\" y1=\"" << y1 << "\" y2=\"" << y1 + 5 << "\" stroke=\"#333\"/>\n";
    os << "<text class=\"axis\" x=\"" << fmtFixed(x, 1) << "\" y=\"" << y1 + 18
       << "\" text-anchor=\"middle\">" << static_cast<uint64_t>(v)
       << "</text>\n";
  }
  // Below the copy ticks' rows, when there are copies.
  os << "<text class=\"axis\" x=\"" << (x0 + x1) / 2 << "\" y=\""
     << y1 + (r.copies.empty() ? 40 : 66)
     << "\" text-anchor=\"middle\">instruction (execution order)</text>\n";

  // Program boundaries and the forward/backward split, labelled at the top.
  auto vline = [&](double x, const char *color, const char *dash) {
    os << "<line x1=\"" << fmtFixed(x, 1) << "\" x2=\"" << fmtFixed(x, 1)
       << "\" y1=\"" << y0 - 16 << "\" y2=\"" << y1 << "\" stroke=\"" << color
       << "\" stroke-width=\"1.5\" stroke-dasharray=\"" << dash << "\"/>\n";
  };
  for (size_t p = 0; p < r.programs.size(); ++p) {
    const PlanProgramRange &pr = r.programs[p];
    double xa = X(pr.first), xb = X(pr.last + 1.0);
    if (p > 0)
      vline(xa, "#222", "6,4");
    std::string label = pr.name;
    if (pr.name == "micro_step" && r.gradAccum > 1)
      label += " (x" + std::to_string(r.gradAccum) + " per step)";
    os << "<text class=\"big\" x=\"" << fmtFixed(xa + 6, 1) << "\" y=\""
       << y0 - 4 << "\">" << escapeHtml(label) << "</text>\n";
    (void)xb;
  }
  if (r.backwardStart && *r.backwardStart < n) {
    double x = X(*r.backwardStart);
    vline(x, "#777", "2,3");
    os << "<text class=\"axis\" x=\"" << fmtFixed(x - 5, 1) << "\" y=\""
       << y0 + 12 << "\" text-anchor=\"end\">forward</text>\n";
    os << "<text class=\"axis\" x=\"" << fmtFixed(x + 5, 1) << "\" y=\""
       << y0 + 12 << "\">backward</text>\n";
  }

  // The budget line.
  if (budgetOnChart) {
    double y = Y(r.budgetBytes);
    os << "<line x1=\"" << x0 << "\" x2=\"" << x1 << "\" y1=\""
       << fmtFixed(y, 1) << "\" y2=\"" << fmtFixed(y, 1)
       << "\" stroke=\"#d62828\" stroke-width=\"2\" "
          "stroke-dasharray=\"8,5\"/>\n";
    os << "<text x=\"" << x1 - 4 << "\" y=\"" << fmtFixed(y - 6, 1)
       << "\" text-anchor=\"end\" "
          "style=\"fill:#d62828;font-weight:600\">budget "
       << fmtBytes(r.budgetBytes) << "</text>\n";
  } else {
    os << "<text x=\"" << x1 - 4 << "\" y=\"" << y0 + 12
       << "\" text-anchor=\"end\" "
          "style=\"fill:#d62828;font-weight:600\">budget "
       << fmtBytes(r.budgetBytes) << " (above the chart)</text>\n";
  }

  // The peak.
  if (dev.peakBytes > 0) {
    double x = X(dev.peakInstruction + 0.5), y = Y(dev.peakBytes);
    os << "<line x1=\"" << fmtFixed(x, 1) << "\" x2=\"" << fmtFixed(x, 1)
       << "\" y1=\"" << fmtFixed(y, 1) << "\" y2=\"" << y1
       << "\" stroke=\"#111\" stroke-width=\"1\"/>\n";
    os << "<circle cx=\"" << fmtFixed(x, 1) << "\" cy=\"" << fmtFixed(y, 1)
       << "\" r=\"5\" fill=\"#111\"/>\n";
    bool left = x > (x0 + x1) / 2;
    double ty = std::max(y - 10, y0 + 30.0); // below the program labels
    os << "<text class=\"big\" x=\"" << fmtFixed(x + (left ? -9 : 9), 1)
       << "\" y=\"" << fmtFixed(ty, 1) << "\" text-anchor=\""
       << (left ? "end" : "start") << "\">peak " << fmtBytes(dev.peakBytes)
       << " at instruction " << dev.peakInstruction << "</text>\n";
    if (!r.peakOp[0].empty())
      os << "<text class=\"axis\" x=\"" << fmtFixed(x + (left ? -9 : 9), 1)
         << "\" y=\"" << fmtFixed(ty + 15, 1) << "\" text-anchor=\""
         << (left ? "end" : "start") << "\">"
         << escapeHtml(r.peakOp[0] + " " + r.peakNode[0]) << "</text>\n";
  }

  // Copies as ticks in two rows under the axis, offloads above prefetches.
  if (!r.copies.empty()) {
    const int offloadRow = y1 + 26, prefetchRow = y1 + 38;
    os << "<text class=\"axis\" x=\"" << x0 - 8 << "\" y=\"" << offloadRow + 9
       << "\" text-anchor=\"end\" style=\"fill:#c0392b\">offload</text>\n"
       << "<text class=\"axis\" x=\"" << x0 - 8 << "\" y=\"" << prefetchRow + 9
       << "\" text-anchor=\"end\" style=\"fill:#1f77b4\">prefetch</text>\n";
    for (const PlanCopyMark &m : r.copies) {
      double x = X(m.instruction + 0.5);
      int row = m.toDevice ? prefetchRow : offloadRow;
      os << "<line x1=\"" << fmtFixed(x, 1) << "\" x2=\"" << fmtFixed(x, 1)
         << "\" y1=\"" << row << "\" y2=\"" << row + 10 << "\" stroke=\""
         << (m.toDevice ? "#1f77b4" : "#c0392b") << "\" stroke-width=\"2\"/>\n";
    }
  }

  // Legend, on the right: class, colour, bytes at the peak.
  int lx = x1 + 28, ly = y0 + 4;
  os << "<text class=\"big\" x=\"" << lx << "\" y=\"" << ly
     << "\">at the peak</text>\n";
  auto legendName = [](TensorClass c) {
    switch (c) {
    case TensorClass::SavedActivations:
      return "activations: saved";
    case TensorClass::Temporaries:
      return "activations: temporary";
    default:
      return tensorClassName(c);
    }
  };
  ly += 10;
  for (size_t c = kNumTensorClasses; c-- > 0;) { // top of the stack first
    TensorClass tc = static_cast<TensorClass>(c);
    ly += 24;
    os << "<rect x=\"" << lx << "\" y=\"" << ly - 12 << "\" width=\"16\" "
       << "height=\"16\" fill=\"" << classColor(tc) << "\"/>\n";
    os << "<text x=\"" << lx + 24 << "\" y=\"" << ly + 1 << "\">"
       << escapeHtml(legendName(tc)) << "</text>\n";
    os << "<text x=\"" << W - 10 << "\" y=\"" << ly + 1
       << "\" text-anchor=\"end\">" << fmtBytes(dev.peakByClass[c])
       << "</text>\n";
  }
  ly += 34;
  auto legendLine = [&](const char *color, const char *dash, const char *text,
                        const char *width) {
    os << "<line x1=\"" << lx << "\" x2=\"" << lx + 16 << "\" y1=\"" << ly - 4
       << "\" y2=\"" << ly - 4 << "\" stroke=\"" << color
       << "\" stroke-width=\"" << width << "\" stroke-dasharray=\"" << dash
       << "\"/>\n<text x=\"" << lx + 24 << "\" y=\"" << ly << "\">" << text
       << "</text>\n";
    ly += 22;
  };
  legendLine("#d62828", "8,5", "budget", "2");
  legendLine("#222", "6,4", "program boundary", "1.5");
  legendLine("#777", "2,3", "forward | backward", "1.5");
  uint64_t prefetches = 0, offloads = 0;
  for (const PlanCopyMark &m : r.copies)
    (m.toDevice ? prefetches : offloads) += 1;
  std::string copiesText =
      "prefetch (host to device): " + std::to_string(prefetches);
  legendLine("#1f77b4", "none", copiesText.c_str(), "1.5");
  copiesText = "offload (device to host): " + std::to_string(offloads);
  legendLine("#c0392b", "none", copiesText.c_str(), "1.5");
  if (r.copies.empty())
    os << "<text class=\"axis\" x=\"" << lx << "\" y=\"" << ly
       << "\">(no copies in this plan)</text>\n";
  os << "</svg>\n";

  // The key numbers.
  const StepCost &c = r.cost;
  os << "<div class=\"tables\">\n<table><caption>Memory</caption>\n"
     << "<tr><th></th><th>device</th><th>host</th></tr>\n";
  os << "<tr><td>planned peak (arena)</td><td><b>" << fmtBytes(planned)
     << "</b></td><td>" << fmtBytes(r.plannedPeakBytes[1]) << "</td></tr>\n";
  os << "<tr><td>liveness lower bound</td><td>"
     << fmtBytes(r.lowerBoundBytes[0]) << "</td><td>"
     << fmtBytes(r.lowerBoundBytes[1]) << "</td></tr>\n";
  os << "<tr><td>budget</td><td>" << fmtBytes(r.budgetBytes)
     << (r.budgetFromProfile ? " (profile)" : " (--budget)") << "</td><td>"
     << (r.profile.hostMemoryBytes
             ? fmtBytes(r.profile.hostMemoryBytes) + " (profile)"
             : std::string("-"))
     << "</td></tr>\n";
  const SpaceTimeline &host = r.timeline[Space::Host];
  os << "<tr><td>peak at instruction</td><td>" << dev.peakInstruction
     << "</td><td>"
     << (host.peakBytes ? std::to_string(host.peakInstruction) : "-")
     << "</td></tr>\n";
  os << "</table>\n";
  os << "<table><caption>Predicted step time</caption>\n";
  auto row = [&](const std::string &k, const std::string &v) {
    os << "<tr><td>" << k << "</td><td>" << v << "</td></tr>\n";
  };
  row("<b>step</b>", "<b>" + fmtSeconds(c.stepS) + "</b>, bound by " +
                         bottleneckName(c.bottleneck));
  row("compute (GPU)", fmtSeconds(c.computeS));
  row("&nbsp;&nbsp;GEMMs",
      fmtSeconds(c.gemmS) + " (" + fmtFlops(c.flops) + ")");
  row("&nbsp;&nbsp;memory-bound kernels", fmtSeconds(c.memoryBoundS));
  row("PCIe (host to device, device to host)", fmtSeconds(c.pcieS) + " (" +
                                                   fmtSeconds(c.h2dS) + ", " +
                                                   fmtSeconds(c.d2hS) + ")");
  row("CPU optimizer", fmtSeconds(c.cpuS));
  row("bytes moved per step", fmtBytes(c.h2dBytes) + " to device, " +
                                  fmtBytes(c.d2hBytes) + " to host");
  os << "</table>\n</div>\n";
  os << "<p class=\"note\">Each column is one instruction of the plan";
  if (bins < n)
    os << " (the fullest of each group of up to " << (n + bins - 1) / bins
       << ", as they outnumber the pixels)";
  os << ", stacked by what the live buffers "
        "hold: weights, optimizer state and gradients live for the whole "
        "step; activations saved for backward are produced in the forward "
        "and still needed after the loss; temporaries are the rest. The "
        "step time is the slowest of GPU compute, the PCIe link and the CPU "
        "optimizer, each timed from the device profile as if the others "
        "overlapped perfectly; docs/planner.md gives the formulas and their "
        "limits.</p>\n";
  os << "</body></html>\n";
}

//===----------------------------------------------------------------------===//
// Files
//===----------------------------------------------------------------------===//

static LogicalResult
writeFileAtomically(const std::string &path,
                    llvm::function_ref<void(llvm::raw_ostream &)> fn,
                    std::string &err) {
  std::string tmp = path + ".tmp";
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(tmp, ec);
    if (ec) {
      err = "cannot write '" + path + "': " + ec.message();
      return failure();
    }
    fn(os);
    os.close();
    if (os.has_error()) {
      err = "cannot write '" + path + "': " + os.error().message();
      os.clear_error();
      llvm::sys::fs::remove(tmp);
      return failure();
    }
  }
  if (std::error_code ec = llvm::sys::fs::rename(tmp, path)) {
    llvm::sys::fs::remove(tmp);
    err = "cannot write '" + path + "': " + ec.message();
    return failure();
  }
  return success();
}

LogicalResult mlir::colossal::writePlanReports(const PlanReport &report,
                                               const PlanReportOptions &options,
                                               std::string &err) {
  if (!options.reportJsonPath.empty() &&
      failed(writeFileAtomically(
          options.reportJsonPath,
          [&](llvm::raw_ostream &os) { writePlanReportJson(os, report); },
          err)))
    return failure();
  if (!options.reportHtmlPath.empty() &&
      failed(writeFileAtomically(
          options.reportHtmlPath,
          [&](llvm::raw_ostream &os) { writePlanReportHtml(os, report); },
          err)))
    return failure();
  return success();
}
