//===- Compile.cpp - The compile and import subcommands -------------------===//
//
// compile: import ONNX -> run the compile pipeline -> write PLAN.cplan and
// PLAN.weights.safetensors -> print a summary. Every failure prints
// "colossal-opt: error: ..." (after the located diagnostics) and exits 1;
// usage errors exit 2. Nothing is written unless the compile succeeded, and
// files are written through a temporary name, so no half-written plan is
// ever left behind.
//
//===----------------------------------------------------------------------===//

#include "Compile.h"

#include "colossal/Analysis/ShareSearch.h"
#include "colossal/Import/OnnxImporter.h"
#include "colossal/Target/PlanEmitter.h"
#include "colossal/Target/PlanReport.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Safetensors.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdio>
#include <cmath>
#include <fstream>
#include <optional>
#include <tuple>
#include <map>
#include <set>

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

struct CommonArgs {
  std::string model;
  std::string output;
  std::string emitGraph; ///< --emit-graph FILE: the imported graph MLIR
  std::string emitPlan;  ///< --emit-plan FILE: the plan MLIR
  bool forwardOnly = false;
  // Training (without --forward-only).
  CompileOptions compile;
  std::string trainableRe, frozenRe;
  std::map<std::string, int64_t> paddingIdx; ///< weight name -> row
  std::map<std::string, std::string> exportNames; ///< weight -> HF name
  int64_t gradAccum = 1;
  std::string precision = "fp32";
  bool separateOptimizerStep = false; ///< --separate-optimizer-step
  bool remat = true;                  ///< --remat auto (true) or off
  bool joinedSteps = false;           ///< --joined-steps
  /// --stream-updates: off, all, auto or a count of host updates.
  std::string streamUpdates = "off";
  bool quiet = false;
  bool printLocations = false; ///< import: print each op's location
  ImportOptions import;
};

int usageError(const char *cmd, const std::string &msg) {
  llvm::errs() << "colossal-opt " << cmd << ": " << msg << "\n"
               << "run 'colossal-opt " << cmd << " --help' for usage\n";
  return 2;
}

int fail(const std::string &msg) {
  llvm::errs() << "colossal-opt: error: " << msg << "\n";
  return 1;
}

/// An offloaded plan's host-stream updates in the order their gradients come
/// down (the position of the D2H copy that writes one of their inputs: with
/// updates across the step boundary the tail's kernels sit at the program's
/// end in the forward's order), each weight's name and its master and
/// state bytes (bound buffers).
std::vector<ShareWeight> hostUpdatesByArrival(ModuleOp module) {
  llvm::DenseMap<Operation *, int64_t> firstWrite;
  int64_t position = 0;
  module->walk([&](Operation *op) {
    ++position;
    if (auto copy = dyn_cast<plan::CopyOp>(op))
      if (auto view = copy.getTarget().getDefiningOp<plan::ViewOp>())
        firstWrite.try_emplace(view.getBuffer().getDefiningOp(), position);
  });
  std::vector<std::pair<int64_t, ShareWeight>> arrivals;
  module->walk([&](plan::KernelOp k) {
    if (k.getStream() != 3 || k.getIns().empty() ||
        (k.getOp() != "adamw" && k.getOp() != "sgd"))
      return;
    std::string name;
    int64_t bytes = 0;
    for (Value in : k.getIns())
      for (Operation *user : in.getUsers())
        if (auto bind = dyn_cast<plan::BindOp>(user)) {
          if (bind.getRole() == plan::BindingRole::weight)
            name = bind.getName().str();
          if (bind.getRole() == plan::BindingRole::weight ||
              bind.getRole() == plan::BindingRole::state)
            if (auto view = in.getDefiningOp<plan::ViewOp>())
              if (auto a =
                      view.getBuffer().getDefiningOp<plan::BufferAllocOp>())
                bytes += a.getSize();
        }
    int64_t arrival = INT64_MAX;
    for (Value in : k.getIns())
      if (auto view = in.getDefiningOp<plan::ViewOp>()) {
        auto it = firstWrite.find(view.getBuffer().getDefiningOp());
        if (it != firstWrite.end())
          arrival = std::min(arrival, it->second);
      }
    if (!name.empty())
      arrivals.push_back({arrival, {name, static_cast<uint64_t>(bytes)}});
  });
  std::stable_sort(arrivals.begin(), arrivals.end(),
                   [](const auto &a, const auto &b) { return a.first < b.first; });
  std::vector<ShareWeight> order;
  for (auto &[arrival, weight] : arrivals)
    order.push_back(weight);
  return order;
}

const char *kCompileUsage = R"(usage: colossal-opt compile MODEL.onnx -o PLAN.cplan [options]

Imports an ONNX model, compiles it to an executable plan and writes
PLAN.cplan and its weights, PLAN.weights.safetensors, beside it.

options:
  -o, --output FILE       the plan file to write (required)
  --forward-only          compile the forward pass only (loss and logits)
  --shape NAME=DxD...     fix a graph input's shape (every dynamic dim must
                          be fixed); repeat per input
  --emit-graph FILE       also write the imported graph MLIR ('-': stdout)
  --fuse-attention on|off replace recognised attention with the fused
                          attention op (default on; docs/cuda.md)
  --fuse-elementwise on|off
                          group chains of elementwise ops into one kernel
                          each (default on; docs/planner.md)
  --fold-transposes on|off
                          read a matmul operand's transpose through the
                          matmul's transpose flag (default on;
                          docs/planner.md)
  --fuse-update-norm on|off
                          in a fused AdamW step, update each weight updated
                          on the device with one adamw_norm on its raw
                          gradient: the division by the token count and
                          the weight's share of the gradient norm in the
                          update's own pass (default on; docs/planner.md)

training (the default; --forward-only turns it off):
  --optimizer adamw|sgd   (default adamw)
  --lr X                  peak learning rate (default 1e-3)
  --betas B1,B2           AdamW betas (default 0.9,0.999)
  --eps X                 AdamW epsilon (default 1e-8)
  --weight-decay X        decoupled weight decay (default 0.01)
  --no-decay REGEX        weights whose name matches get no weight decay
  --momentum X            SGD momentum (default 0); --nesterov, --dampening X
  --schedule constant|cosine
                          lr schedule; cosine = linear warm-up then cosine
  --warmup-steps N --total-steps N --min-lr-ratio X
                          the cosine schedule's shape
  --clip-grad-norm X      clip the global gradient norm (default: off)
  --separate-optimizer-step
                          keep the optimizer in its own program after the
                          gradients (micro_step + apply_step, with full
                          gradient buffers). It is implied by --grad-accum
                          > 1 and --clip-grad-norm; otherwise each update is
                          fused into the step right after its gradient
                          (train_step), which needs no gradient buffers.
                          colossal-run --dump-grads needs the separate form
  --grad-accum N          split each batch into N micro-batches: --shape
                          gives the full batch, the plan runs micro-batches
  --trainable REGEX       train only the weights whose name matches
  --frozen REGEX          do not train the weights whose name matches
  --padding-idx NAME=ROW  the embedding NAME's padding row gets no gradient
                          (PyTorch's nn.Embedding(padding_idx=ROW))
  --loss NAME             the graph output to minimise (default loss)
  --export-name W=NAME    colossal-run --export-weights writes weight W as
                          NAME (e.g. a tied weight under the name the
                          Hugging Face model expects); repeatable
  --init-std X            std of the --init random rule (default 0.02)
  --precision fp32|bf16   bf16: bf16 compute and activations, f32 master
                          weights, optimizer state and loss (default fp32)
  --emit-plan FILE        also write the plan MLIR ('-': stdout)
  --quiet                 no summary

memory planning and report (docs/planner.md):
  --budget SIZE           device memory the plan may use: 24GiB, 512MiB,
                          24GB, 1e9 or plain bytes (default: the device
                          profile's memory); a plan over it is an error
  --device-profile FILE   rates for the cost model and the default budget
                          (default: share/colossal/devices/h200.json beside
                          the binary's bin/)
  --policy cuda|cpu|auto  where state may live: cuda keeps everything on
                          the device; cpu keeps the trained weights' master
                          copies and the optimizer state in host memory and
                          runs the update there (ZeRO-Offload) and, under a
                          --budget, parks idle device buffers (saved
                          activations, fetched weights) in host memory
                          between uses until the plan fits; auto (the
                          default) is cuda if the plan fits the budget, else
                          cpu
  --remat auto|off        under a --budget, recompute idle device buffers
                          (activations saved for the backward) instead of
                          keeping them, cheapest per byte first, before any
                          is parked in host memory; with the optimizer
                          offloaded, only those whose recompute is predicted
                          faster than parking them (default auto)
  --joined-steps          with the optimizer offloaded, every host update
                          ends before the step does (default: the last
                          ones run on under the next step's forward, each
                          weight's fetch waiting for its update)
  --stream-updates off|auto|all|N
                          with the optimizer offloaded, run some updates on
                          the device instead of the host: their master and
                          moments stay in host memory, come up before the
                          update and go back down after it (the PCIe links
                          add to the host's memory bandwidth). N: the last N
                          host updates in the gradients' order; all: every
                          one; auto: the count the cost model predicts
                          fastest that fits, if faster than none; off (the
                          default): none (the cost model does not see the
                          host's memory shared with the copies, and
                          over-predicts the gain: docs/planner.md)
  --report-json FILE      write the memory and step-time report as JSON
  --report FILE.html      write it as a page with the memory timeline
)";

const char *kImportUsage = R"(usage: colossal-opt import MODEL.onnx [--shape NAME=DxD...] [-o FILE]
                           [--print-locations]

Imports an ONNX model and prints the `colossal` graph MLIR; with
--print-locations each op shows the ONNX node it came from.
)";

/// Parses "NAME=2x16" into the import options.
bool parseShape(const std::string &spec, ImportOptions &options,
                std::string &err) {
  size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) {
    err = "--shape expects NAME=DxD..., got '" + spec + "'";
    return false;
  }
  std::string name = spec.substr(0, eq), dims = spec.substr(eq + 1);
  std::vector<int64_t> shape;
  if (!dims.empty() && dims != "scalar") {
    llvm::SmallVector<llvm::StringRef> parts;
    llvm::StringRef(dims).split(parts, 'x');
    for (llvm::StringRef p : parts) {
      int64_t d;
      if (p.getAsInteger(10, d) || d < 0) {
        err = "--shape " + name + ": '" + p.str() +
              "' is not a non-negative dim in '" + dims + "'";
        return false;
      }
      shape.push_back(d);
    }
  }
  if (options.inputShapes.count(name)) {
    err = "--shape " + name + " given twice";
    return false;
  }
  options.inputShapes[name] = shape;
  return true;
}

/// Returns -1 when parsing succeeded, else the exit code.
int parseArgs(const char *cmd, int argc, char **argv, CommonArgs &args,
              bool allowCompileFlags) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string &out) -> bool {
      size_t eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        out = a.substr(eq + 1);
        return true;
      }
      if (i + 1 >= argc)
        return false;
      out = argv[++i];
      return true;
    };
    auto flagIs = [&](const char *name) {
      return a == name || a.rfind(std::string(name) + "=", 0) == 0;
    };
    if (a == "-h" || a == "--help") {
      llvm::outs() << (allowCompileFlags ? kCompileUsage : kImportUsage);
      return 0;
    }
    if (a == "-o" || flagIs("--output")) {
      if (!value(args.output))
        return usageError(cmd, "-o needs a file name");
    } else if (flagIs("--shape")) {
      std::string spec, err;
      if (!value(spec))
        return usageError(cmd, "--shape needs NAME=DxD...");
      if (!parseShape(spec, args.import, err))
        return usageError(cmd, err);
    } else if (!allowCompileFlags && a == "--print-locations") {
      args.printLocations = true;
    } else if (allowCompileFlags && a == "--forward-only") {
      args.forwardOnly = true;
    } else if (allowCompileFlags && a == "--separate-optimizer-step") {
      args.separateOptimizerStep = true;
    } else if (allowCompileFlags && a == "--joined-steps") {
      args.joinedSteps = true;
    } else if (allowCompileFlags && a == "--nesterov") {
      args.compile.optimizer.nesterov = true;
    } else if (allowCompileFlags &&
               (flagIs("--optimizer") || flagIs("--lr") || flagIs("--betas") ||
                flagIs("--eps") || flagIs("--weight-decay") ||
                flagIs("--no-decay") || flagIs("--momentum") ||
                flagIs("--dampening") || flagIs("--schedule") ||
                flagIs("--warmup-steps") || flagIs("--total-steps") ||
                flagIs("--min-lr-ratio") || flagIs("--clip-grad-norm") ||
                flagIs("--grad-accum") || flagIs("--trainable") ||
                flagIs("--frozen") || flagIs("--padding-idx") ||
                flagIs("--loss") || flagIs("--init-std") ||
                flagIs("--export-name") ||
                flagIs("--precision"))) {
      std::string flag = a.substr(0, a.find('=')), v;
      if (!value(v))
        return usageError(cmd, flag + " needs a value");
      auto number = [&](double &out) {
        char *end = nullptr;
        out = std::strtod(v.c_str(), &end);
        return !v.empty() && end && *end == 0 && std::isfinite(out);
      };
      auto integer = [&](int64_t &out) {
        return !llvm::StringRef(v).getAsInteger(10, out);
      };
      auto &opt = args.compile.optimizer;
      bool ok = true;
      double d = 0;
      int64_t n = 0;
      if (flag == "--optimizer") {
        ok = v == "adamw" || v == "sgd";
        opt.optimizer = v;
      } else if (flag == "--lr") {
        ok = number(opt.lr) && opt.lr >= 0;
      } else if (flag == "--betas") {
        llvm::StringRef b1, b2;
        std::tie(b1, b2) = llvm::StringRef(v).split(',');
        ok = !b1.getAsDouble(opt.beta1) && !b2.getAsDouble(opt.beta2) &&
             opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1;
      } else if (flag == "--eps") {
        ok = number(opt.eps) && opt.eps >= 0;
      } else if (flag == "--weight-decay") {
        ok = number(opt.weightDecay) && opt.weightDecay >= 0;
      } else if (flag == "--no-decay") {
        opt.noDecay = v;
      } else if (flag == "--momentum") {
        ok = number(opt.momentum) && opt.momentum >= 0;
      } else if (flag == "--dampening") {
        ok = number(opt.dampening);
      } else if (flag == "--schedule") {
        ok = v == "constant" || v == "cosine";
        opt.schedule = v;
      } else if (flag == "--warmup-steps") {
        ok = integer(opt.warmupSteps) && opt.warmupSteps >= 0;
      } else if (flag == "--total-steps") {
        ok = integer(opt.totalSteps) && opt.totalSteps > 0;
      } else if (flag == "--min-lr-ratio") {
        ok = number(opt.minLrRatio) && opt.minLrRatio >= 0 &&
             opt.minLrRatio <= 1;
      } else if (flag == "--clip-grad-norm") {
        ok = number(opt.clipGradNorm) && opt.clipGradNorm > 0;
      } else if (flag == "--grad-accum") {
        ok = integer(n) && n >= 1;
        args.gradAccum = n;
      } else if (flag == "--trainable") {
        args.trainableRe = v;
      } else if (flag == "--frozen") {
        args.frozenRe = v;
      } else if (flag == "--padding-idx") {
        size_t eq = v.rfind('=');
        ok = eq != std::string::npos && eq > 0 &&
             !llvm::StringRef(v).substr(eq + 1).getAsInteger(10, n) && n >= 0;
        if (ok)
          args.paddingIdx[v.substr(0, eq)] = n;
      } else if (flag == "--export-name") {
        size_t eq = v.find('=');
        ok = eq != std::string::npos && eq > 0 && eq + 1 < v.size();
        if (ok)
          args.exportNames[v.substr(0, eq)] = v.substr(eq + 1);
      } else if (flag == "--loss") {
        args.compile.autodiff.lossName = v;
      } else if (flag == "--init-std") {
        ok = number(d) && d > 0;
        args.compile.lowering.initStd = d;
      } else if (flag == "--precision") {
        ok = v == "fp32" || v == "bf16";
        args.precision = v;
      }
      if (!ok)
        return usageError(cmd, "invalid value '" + v + "' for " + flag);
    } else if (allowCompileFlags && flagIs("--fuse-attention")) {
      std::string v;
      if (!value(v) || (v != "on" && v != "off"))
        return usageError(cmd, "--fuse-attention expects on or off, got '" +
                                   v + "'");
      args.compile.fuseAttention = v == "on";
    } else if (allowCompileFlags && flagIs("--fuse-elementwise")) {
      std::string v;
      if (!value(v) || (v != "on" && v != "off"))
        return usageError(cmd, "--fuse-elementwise expects on or off, got '" +
                                   v + "'");
      args.compile.fuseElementwise = v == "on";
    } else if (allowCompileFlags && flagIs("--fuse-update-norm")) {
      std::string v;
      if (!value(v) || (v != "on" && v != "off"))
        return usageError(cmd, "--fuse-update-norm expects on or off, got '" +
                                   v + "'");
      args.compile.fuseUpdateNorm = v == "on";
    } else if (allowCompileFlags && flagIs("--fold-transposes")) {
      std::string v;
      if (!value(v) || (v != "on" && v != "off"))
        return usageError(cmd, "--fold-transposes expects on or off, got '" +
                                   v + "'");
      args.compile.foldTransposes = v == "on";
    } else if (allowCompileFlags && flagIs("--remat")) {
      std::string v;
      if (!value(v) || (v != "auto" && v != "off"))
        return usageError(cmd, "--remat expects auto or off, got '" + v + "'");
      args.remat = v == "auto";
    } else if (allowCompileFlags && flagIs("--stream-updates")) {
      std::string v;
      bool count = false;
      if (value(v) && !v.empty() &&
          v.find_first_not_of("0123456789") == std::string::npos &&
          v.size() < 10)
        count = true;
      if (!count && v != "off" && v != "auto" && v != "all")
        return usageError(cmd, "--stream-updates expects off, auto, all or "
                               "a count, got '" + v + "'");
      args.streamUpdates = v;
    } else if (allowCompileFlags && a == "--quiet") {
      args.quiet = true;
    } else if (allowCompileFlags && flagIs("--emit-graph")) {
      if (!value(args.emitGraph))
        return usageError(cmd, "--emit-graph needs a file name");
    } else if (allowCompileFlags && flagIs("--emit-plan")) {
      if (!value(args.emitPlan))
        return usageError(cmd, "--emit-plan needs a file name");
    } else if (!a.empty() && a[0] == '-') {
      return usageError(cmd, "unknown option '" + a + "'");
    } else if (args.model.empty()) {
      args.model = a;
    } else {
      return usageError(cmd, "more than one model given ('" + args.model +
                                 "' and '" + a + "')");
    }
  }
  if (args.model.empty())
    return usageError(cmd, "no model given");
  return -1;
}

/// Writes `text` to `path` ('-' = stdout).
bool writeText(const std::string &path, llvm::function_ref<void(llvm::raw_ostream &)> fn,
               std::string &err) {
  if (path == "-") {
    fn(llvm::outs());
    return true;
  }
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec) {
    err = "cannot write '" + path + "': " + ec.message();
    return false;
  }
  fn(os);
  return true;
}

std::string human(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull)
    std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000ull)
    std::snprintf(buf, sizeof buf, "%.1fM", n / 1e6);
  else if (n >= 1000ull)
    std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  return buf;
}

std::string humanBytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", n / double(1ull << 30));
  else if (n >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", n / double(1ull << 20));
  else if (n >= (1ull << 10))
    std::snprintf(buf, sizeof buf, "%.1f KiB", n / double(1ull << 10));
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

/// A location as a user reads it: the ONNX node or value name, or the file.
std::string describe(Location loc) {
  if (auto nl = dyn_cast<NameLoc>(loc))
    return nl.getName().str();
  if (auto fl = dyn_cast<FileLineColLoc>(loc)) {
    if (fl.getLine() == 0)
      return fl.getFilename().str();
    return (fl.getFilename().getValue() + ":" + Twine(fl.getLine()) + ":" +
            Twine(fl.getColumn()))
        .str();
  }
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (std::string d = describe(inner); !d.empty())
        return d;
  return "";
}

/// Prints "<where>: error: <message>" without MLIR's loc(...) syntax; the
/// node name is left out when the message already quotes it.
void printDiagnostic(Diagnostic &diag) {
  const char *severity = "error";
  switch (diag.getSeverity()) {
  case DiagnosticSeverity::Warning:
    severity = "warning";
    break;
  case DiagnosticSeverity::Note:
    severity = "note";
    break;
  case DiagnosticSeverity::Remark:
    severity = "remark";
    break;
  default:
    break;
  }
  std::string msg = diag.str();
  std::string where = describe(diag.getLocation());
  if (!where.empty() && msg.find("'" + where + "'") == std::string::npos)
    llvm::errs() << where << ": ";
  llvm::errs() << severity << ": " << msg << "\n";
  for (Diagnostic &note : diag.getNotes())
    printDiagnostic(note);
}

/// The device profile the planner reads: --device-profile, else
/// share/colossal/devices/h200.json beside the binary's bin/ (as the report).
std::string profilePathFor(const PlanReportOptions &options) {
  if (!options.deviceProfilePath.empty())
    return options.deviceProfilePath;
  static int anchor;
  std::string exe = llvm::sys::fs::getMainExecutable("colossal-opt", &anchor);
  llvm::SmallString<256> path(
      llvm::sys::path::parent_path(llvm::sys::path::parent_path(exe)));
  llvm::sys::path::append(path, "share", "colossal", "devices", "h200.json");
  return path.str().str();
}

/// colossal-rematerialize's summary on the plan function, if it recomputed.
DictionaryAttr rematSummary(ModuleOp module) {
  for (func::FuncOp f : module.getOps<func::FuncOp>())
    if (auto d = f->getAttrOfType<DictionaryAttr>("colossal.remat"))
      return d;
  return {};
}

std::string weightsPathFor(const std::string &planPath) {
  llvm::StringRef p(planPath);
  if (p.ends_with(".cplan"))
    p = p.drop_back(6);
  return p.str() + ".weights.safetensors";
}

} // namespace

int mlir::colossal::runImport(int argc, char **argv) {
  CommonArgs args;
  if (int rc = parseArgs("import", argc, argv, args, false); rc >= 0)
    return rc;
  MLIRContext ctx;
  ScopedDiagnosticHandler handler(&ctx, [](Diagnostic &diag) {
    printDiagnostic(diag);
    return success();
  });
  auto result = importOnnxFile(&ctx, args.model, args.import);
  if (failed(result))
    return fail("could not import '" + args.model + "'");
  std::string err;
  if (!writeText(args.output.empty() ? "-" : args.output,
                 [&](llvm::raw_ostream &os) {
                   OpPrintingFlags flags;
                   if (args.printLocations)
                     flags.enableDebugInfo(/*enable=*/true, /*pretty=*/true);
                   result->module->print(os, flags);
                 },
                 err))
    return fail(err);
  return 0;
}

int mlir::colossal::runCompile(int argc, char **argv) {
  CommonArgs args;
  PlanReportOptions reportOptions;
  if (std::string e = takePlanReportArgs(argc, argv, reportOptions); !e.empty())
    return usageError("compile", e);
  if (int rc = parseArgs("compile", argc, argv, args, true); rc >= 0)
    return rc;
  if (args.output.empty())
    return usageError("compile", "no output plan given (-o PLAN.cplan)");
  if (args.forwardOnly && args.gradAccum != 1)
    return usageError("compile", "--grad-accum needs a training plan (drop "
                                 "--forward-only)");
  // --grad-accum N: --shape gives the full batch, the plan is compiled at
  // the micro-batch shape (dim 0 divided by N).
  int64_t fullBatch = 0;
  if (args.gradAccum > 1) {
    if (args.import.inputShapes.empty())
      return usageError("compile", "--grad-accum needs --shape for the graph "
                                   "inputs (the full batch)");
    for (auto &[name, dims] : args.import.inputShapes) {
      if (dims.empty() || dims[0] % args.gradAccum != 0)
        return usageError("compile", "--grad-accum " +
                                         std::to_string(args.gradAccum) +
                                         " does not divide the batch dim of "
                                         "--shape " + name);
      fullBatch = dims[0];
      dims[0] /= args.gradAccum;
    }
  }
  auto start = std::chrono::steady_clock::now();

  MLIRContext ctx;
  ScopedDiagnosticHandler handler(&ctx, [](Diagnostic &diag) {
    printDiagnostic(diag);
    return success();
  });
  ctx.loadDialect<graph::ColossalDialect, plan::CPlanDialect,
                  func::FuncDialect>();
  auto imported = importOnnxFile(&ctx, args.model, args.import);
  if (failed(imported))
    return fail("could not import '" + args.model + "'");
  ModuleOp module = *imported->module;
  std::string err;
  if (!args.emitGraph.empty() &&
      !writeText(args.emitGraph, [&](llvm::raw_ostream &os) { module.print(os); },
                 err))
    return fail(err);

  // Parameters as the graph holds them (before CSE may merge anything): the
  // weights, less those a dynamo export marks as buffers or constants.
  uint64_t paramElems = 0, paramBytes = 0, paramCount = 0;
  for (const WeightInfo &w : imported->weights) {
    if (w.signature == "BUFFER" || w.signature == "CONSTANT_TENSOR")
      continue;
    paramElems += static_cast<uint64_t>(w.type.numElements());
    paramBytes += w.type.sizeBytes();
    ++paramCount;
  }

  // colossal.export metadata (our own exporter) gives the trained set, the
  // Hugging Face names and the padding rows; flags override it.
  const std::optional<ExportMetadata> &meta = imported->exportMetadata;
  if (meta) {
    for (const auto &[name, row] : meta->paddingIdx)
      args.paddingIdx.insert({name, row});
    for (const auto &[name, hf] : meta->exportNames)
      args.exportNames.insert({name, hf});
    args.compile.lowering.exportPrefix = meta->wrapperPrefix;
  }
  for (const auto &[name, hf] : args.exportNames) {
    bool found = false;
    module.walk([&](graph::WeightOp w) {
      if (w.getName() == name) {
        w.setExportNameAttr(StringAttr::get(&ctx, hf));
        found = true;
      }
    });
    if (!found)
      return usageError("compile", "--export-name names '" + name +
                                       "', which is not a weight of the "
                                       "model");
  }

  // What is trained: float weights that are parameters (the metadata's list;
  // else the dynamo export's signature; else every float weight), narrowed
  // by --trainable and --frozen.
  uint64_t trainedElems = 0, trainedBytes = 0, trainedCount = 0;
  if (!args.forwardOnly) {
    std::optional<llvm::Regex> trainRe, frozenRe;
    for (auto [re, text, flag] :
         {std::tuple{&trainRe, &args.trainableRe, "--trainable"},
          std::tuple{&frozenRe, &args.frozenRe, "--frozen"}}) {
      if (text->empty())
        continue;
      re->emplace(*text);
      std::string reErr;
      if (!(*re)->isValid(reErr))
        return usageError("compile", std::string(flag) + ": invalid regex '" +
                                         *text + "': " + reErr);
    }
    std::set<std::string> seenPadding;
    module.walk([&](graph::WeightOp w) {
      auto type = cast<RankedTensorType>(w.getType());
      StringRef sig = w.getSignature().value_or("");
      bool trainable = isa<FloatType>(type.getElementType()) &&
                       sig != "BUFFER" && sig != "CONSTANT_TENSOR";
      if (meta)
        trainable = isa<FloatType>(type.getElementType()) &&
                    llvm::is_contained(meta->trainable, w.getName().str());
      // --trainable selects the trained set itself (any float weight that is
      // not a buffer), overriding the metadata's list.
      if (trainRe)
        trainable = isa<FloatType>(type.getElementType()) &&
                    sig != "BUFFER" && sig != "CONSTANT_TENSOR" &&
                    trainRe->match(w.getName());
      if (frozenRe && frozenRe->match(w.getName()))
        trainable = false;
      w.setTrainable(trainable);
      if (auto it = args.paddingIdx.find(w.getName().str());
          it != args.paddingIdx.end()) {
        w.setPaddingIdxAttr(
            IntegerAttr::get(IntegerType::get(&ctx, 64), it->second));
        seenPadding.insert(it->first);
      }
    });
    for (auto &[name, row] : args.paddingIdx)
      if (!seenPadding.count(name))
        return usageError("compile", "--padding-idx names '" + name +
                                         "', which is not a weight of the "
                                         "model");
    for (const WeightInfo &w : imported->weights) {
      bool trained = false;
      module.walk([&](graph::WeightOp op) {
        if (op.getName() == w.name && op.getTrainable())
          trained = true;
      });
      if (!trained)
        continue;
      trainedElems += static_cast<uint64_t>(w.type.numElements());
      trainedBytes += w.type.sizeBytes();
      ++trainedCount;
    }
    if (trainedCount == 0)
      return fail("no weight is trainable (check --trainable/--frozen)");

    // How the step was compiled, for colossal-run and checkpoints.
    std::string config;
    llvm::raw_string_ostream cs(config);
    const auto &o = args.compile.optimizer;
    cs << "{\"optimizer\": \"" << o.optimizer << "\", \"lr\": " << o.lr
       << ", \"betas\": [" << o.beta1 << ", " << o.beta2 << "], \"eps\": "
       << o.eps << ", \"weight_decay\": " << o.weightDecay
       << ", \"momentum\": " << o.momentum << ", \"schedule\": \""
       << o.schedule << "\", \"warmup_steps\": " << o.warmupSteps
       << ", \"total_steps\": " << o.totalSteps
       << ", \"clip_grad_norm\": " << o.clipGradNorm
       << ", \"grad_accum\": " << args.gradAccum
       << ", \"full_batch\": " << fullBatch << ", \"precision\": \""
       << args.precision << "\", \"fused_optimizer\": "
       << (!args.separateOptimizerStep && args.gradAccum == 1 &&
                   o.clipGradNorm <= 0
               ? "true"
               : "false")
       << "}";
    module->setAttr("colossal.train_config", StringAttr::get(&ctx, config));
  }

  CompileOptions options = args.compile;
  options.forwardOnly = args.forwardOnly;
  options.optimizer.fuse = !args.separateOptimizerStep && args.gradAccum == 1 &&
                           args.compile.optimizer.clipGradNorm <= 0;
  options.bf16 = args.precision == "bf16";
  if (reportOptions.policy == "cpu" && args.forwardOnly)
    return usageError("compile", "--policy cpu offloads the optimizer state "
                                 "and master weights: a forward plan has none");
  // --policy auto: everything on the device if it fits the budget, else the
  // optimizer state and master weights in host memory (the pipeline runs
  // again on a copy of the imported module).
  OwningOpRef<ModuleOp> pristine, streamPristine;
  if (reportOptions.policy == "auto" && !args.forwardOnly)
    pristine = module.clone();
  if (args.streamUpdates != "off" && !args.forwardOnly)
    streamPristine = module.clone();
  // The device-resident share of the plan chosen (for --stream-updates).
  std::vector<std::string> chosenShare;
  options.lowering.offloadOptimizer = reportOptions.policy == "cpu";
  options.lowering.crossStepUpdates = !args.joinedSteps;
  // The offload's lead times come from the same profile as the report.
  options.offload.deviceProfile = profilePathFor(reportOptions);
  options.lowering.deviceProfile = profilePathFor(reportOptions);
  // With the optimizer offloaded, idle device buffers (saved activations,
  // fetched weights) may be parked in host memory until the liveness peak
  // fits the budget, less 1% for the packer's alignment slack.
  // packingSlack: what the packer overshot the budget by on an earlier try.
  int64_t packingSlack = 0;
  auto gapBudget = [&]() -> int64_t {
    if (!reportOptions.budgetBytes)
      return 0;
    return static_cast<int64_t>(*reportOptions.budgetBytes) -
           static_cast<int64_t>(*reportOptions.budgetBytes / 100) -
           packingSlack;
  };
  if (options.lowering.offloadOptimizer)
    options.offload.budgetBytes = gapBudget();
  // --remat auto: under a --budget, recompute before parking (the pipeline
  // runs it first). With offload after it, only what is predicted faster
  // than parking; on the device alone, whatever cuts the peak.
  auto setRemat = [&]() {
    options.remat.budgetBytes = args.remat ? gapBudget() : 0;
    options.remat.offload = options.lowering.offloadOptimizer;
    options.remat.deviceProfile = profilePathFor(reportOptions);
  };
  setRemat();
  auto runOnce = [&]() -> FailureOr<PlanReport> {
    PassManager pm(&ctx);
    buildCompilePipeline(pm, options);
    if (failed(pm.run(module))) {
      err = "compiling '" + args.model + "' failed";
      return failure();
    }
    return buildPlanReport(module, reportOptions, args.model, err);
  };
  // Recomputation and offload aim at the liveness peak; packing may need
  // more than the 1% left to it. Then they aim lower by the overshoot and
  // the pipeline runs again on a copy (at most three more times).
  auto runFitting = [&]() -> FailureOr<PlanReport> {
    packingSlack = 0;
    setRemat();
    if (options.lowering.offloadOptimizer)
      options.offload.budgetBytes = gapBudget();
    OwningOpRef<ModuleOp> copy;
    if (options.remat.budgetBytes > 0 || options.offload.budgetBytes > 0)
      copy = module.clone();
    FailureOr<PlanReport> r = runOnce();
    for (int retry = 0; retry < 3 && copy && succeeded(r) &&
                        r->plannedPeakBytes[0] > *reportOptions.budgetBytes &&
                        r->lowerBoundBytes[0] <= *reportOptions.budgetBytes;
         ++retry) {
      // Aim the overshoot below what the liveness peak reached, not below
      // the last aim: when remat/offload already landed under that aim, a
      // small cut to it changes no choice and the same plan comes back.
      int64_t overshoot = static_cast<int64_t>(r->plannedPeakBytes[0] -
                                               *reportOptions.budgetBytes);
      int64_t reached =
          std::min(gapBudget(), static_cast<int64_t>(r->lowerBoundBytes[0]));
      packingSlack += gapBudget() - reached + overshoot;
      if (gapBudget() <= 0)
        break;
      setRemat();
      if (options.lowering.offloadOptimizer)
        options.offload.budgetBytes = gapBudget();
      imported->module = copy->clone();
      module = *imported->module;
      r = runOnce();
    }
    return r;
  };
  // Updates across the step boundary change what recomputation and parking
  // choose (the steady state's times) and hold the tail's host buffers all
  // step; a carried plan that misses the budget after the retries is
  // compiled once more with the updates joined (docs/planner.md).
  auto runPipeline = [&]() -> FailureOr<PlanReport> {
    OwningOpRef<ModuleOp> copy;
    // Not while searching a device-resident share: a share over the budget
    // is one of the search's points.
    bool mayJoin = options.lowering.offloadOptimizer &&
                   options.lowering.crossStepUpdates &&
                   options.lowering.deviceResident.empty() &&
                   options.lowering.streamedUpdates.empty() &&
                   reportOptions.budgetBytes.has_value();
    if (mayJoin)
      copy = module.clone();
    FailureOr<PlanReport> r = runFitting();
    if (!mayJoin || failed(r) ||
        r->plannedPeakBytes[0] <= *reportOptions.budgetBytes)
      return r;
    options.lowering.crossStepUpdates = false;
    imported->module = std::move(copy);
    module = *imported->module;
    FailureOr<PlanReport> joined = runFitting();
    options.lowering.crossStepUpdates = true;
    if (succeeded(joined) && !args.quiet &&
        joined->plannedPeakBytes[0] <= *reportOptions.budgetBytes)
      llvm::errs() << "colossal-opt: over the budget with the host updates "
                      "across the step boundary; joined at the step's end: "
                   << humanBytes(joined->plannedPeakBytes[0]) << "\n";
    return joined;
  };
  // One point of a search (a device-resident share, a count of streamed
  // updates): the offloaded pipeline once more on a copy of `pristineCopy`,
  // with `share` kept on the device and `streamed` updates streamed. Its
  // errors go to `pointErr`, not `err`: a point that does not compile is
  // one result of the search.
  auto compilePoint = [&](ModuleOp pristineCopy,
                          const std::vector<std::string> &share,
                          const std::vector<std::string> &streamed,
                          std::string &pointErr) -> FailureOr<PlanReport> {
    options.lowering.deviceResident.assign(share.begin(), share.end());
    options.lowering.streamedUpdates.assign(streamed.begin(), streamed.end());
    imported->module = pristineCopy.clone();
    module = *imported->module;
    std::string policy = reportOptions.policy;
    reportOptions.policy = "cpu";
    pointErr.clear();
    std::swap(err, pointErr);
    FailureOr<PlanReport> r = runPipeline();
    std::swap(err, pointErr);
    reportOptions.policy = policy;
    options.lowering.deviceResident.clear();
    options.lowering.streamedUpdates.clear();
    return r;
  };
  FailureOr<PlanReport> report = runPipeline();
  if (failed(report))
    return fail(err);
  bool deviceFits = succeeded(checkPlanBudget(*report, err));
  // --policy auto: a device plan that fits only by recomputing may be slower
  // than offloading the optimizer; then both are compiled and the lower
  // predicted step time wins (ties: the device plan).
  if (pristine && (!deviceFits || rematSummary(module))) {
    std::string deviceErr = err;
    OwningOpRef<ModuleOp> devicePlan;
    std::optional<PlanReport> deviceReport;
    if (deviceFits) {
      devicePlan = std::move(imported->module);
      deviceReport = std::move(*report);
    }
    OwningOpRef<ModuleOp> sharePristine = pristine->clone();
    imported->module = std::move(pristine);
    module = *imported->module;
    options.lowering.offloadOptimizer = true;
    options.offload.budgetBytes = gapBudget();
    setRemat();
    reportOptions.policy = "cpu";
    report = runPipeline();
    bool cpuFits = succeeded(report) && succeeded(checkPlanBudget(*report, err));
    reportOptions.policy = "auto";
    if (deviceReport &&
        (!cpuFits || deviceReport->cost.stepS <= report->cost.stepS)) {
      imported->module = std::move(devicePlan);
      module = *imported->module;
      report = std::move(*deviceReport);
      report->policy = "auto (everything on the device, with recomputation)";
    } else {
      if (!cpuFits)
        return fail(deviceFits ? deviceErr : err);
      report->policy = deviceReport
                           ? "auto (optimizer offloaded: predicted faster "
                             "than recomputing on the device)"
                           : "auto (optimizer offloaded: everything on the "
                             "device would not fit)";
      // The device-resident share (docs/planner.md, "A device-resident
      // share"): some weights' master and moments stay on the device, the
      // last-updated first (their host updates are the step's exposed
      // tail). A share larger than the room the offloaded plan leaves is
      // paid for by recomputing or parking more activations, so the size
      // is searched (proposeShareTarget: the room, everything, then the fit
      // frontier and bisection, at most eight compiles), and the fitting
      // plan with the lowest predicted step wins, if no slower than
      // offloading everything.
      if (reportOptions.budgetBytes) {
        // The offloaded plan's host-stream updates in the order their
        // gradients come down (the position of the D2H copy that writes
        // one of their inputs: with updates across the step boundary the
        // tail's kernels sit at the program's end in the forward's order):
        // each weight's name and its master and state bytes (bound
        // buffers).
        std::vector<ShareWeight> order =
            hostUpdatesByArrival(*imported->module);
        std::reverse(order.begin(), order.end());
        uint64_t orderBytes = 0;
        for (const ShareWeight &w : order)
          orderBytes += w.bytes;
        OwningOpRef<ModuleOp> cpuPlan = std::move(imported->module);
        PlanReport cpuReport = std::move(*report);
        int64_t room = gapBudget() -
                       static_cast<int64_t>(cpuReport.plannedPeakBytes[0]);
        ShareSearchOptions search;
        search.roomBytes = room > 0 ? static_cast<uint64_t>(room) : 0;
        search.baselineStepS = cpuReport.cost.stepS;
        std::vector<SharePoint> points;
        // Only the best plan so far is kept (each is a whole module).
        std::optional<size_t> bestIndex;
        OwningOpRef<ModuleOp> bestPlan;
        std::optional<PlanReport> best;
        // The last share's error, for its line.
        std::string lastShareErr;
        auto compileShare =
            [&](const std::vector<std::string> &share) -> FailureOr<PlanReport> {
          return compilePoint(*sharePristine, share, {}, lastShareErr);
        };
        while (std::optional<uint64_t> target =
                   proposeShareTarget(order, points, search)) {
          std::vector<std::string> share;
          SharePoint point;
          point.targetBytes = *target;
          for (size_t i : fillShare(order, *target)) {
            share.push_back(order[i].name);
            point.shareBytes += order[i].bytes;
          }
          FailureOr<PlanReport> r = compileShare(share);
          if (succeeded(r)) {
            point.stepS = r->cost.stepS;
            point.fits = r->plannedPeakBytes[0] <= *reportOptions.budgetBytes;
            if (!point.fits)
              point.overshootBytes =
                  r->plannedPeakBytes[0] - *reportOptions.budgetBytes;
          }
          points.push_back(point);
          if (!args.quiet) {
            llvm::errs() << "colossal-opt: device-resident share "
                         << points.size() << ": " << share.size() << " of "
                         << order.size() << " weights, "
                         << humanBytes(point.shareBytes) << " of "
                         << humanBytes(orderBytes)
                         << (point.targetBytes == search.roomBytes
                                 ? " (the room the all-offloaded plan leaves)"
                                 : "")
                         << ": ";
            if (failed(r))
              llvm::errs() << "does not compile: " << lastShareErr << "\n";
            else
              llvm::errs() << "predicted step "
                           << llvm::format("%.4g", point.stepS * 1e3)
                           << " ms (all offloaded: "
                           << llvm::format("%.4g", search.baselineStepS * 1e3)
                           << " ms), "
                           << (point.fits
                                   ? std::string("fits")
                                   : "over the budget by " +
                                         humanBytes(point.overshootBytes))
                           << "\n";
          }
          if (bestSharePoint(points, search.baselineStepS) ==
              points.size() - 1) {
            bestIndex = points.size() - 1;
            best = std::move(*r);
            bestPlan = std::move(imported->module);
          }
        }
        std::string tried = std::to_string(points.size()) +
                            (points.size() == 1 ? " size" : " sizes") +
                            " tried";
        if (best) {
          imported->module = std::move(bestPlan);
          report = std::move(*best);
          report->policy =
              "auto (optimizer offloaded, a device-resident share of " +
              humanBytes(points[*bestIndex].shareBytes) + " of " +
              humanBytes(orderBytes) + " optimizer state: " + tried +
              ", predicted fastest that fits";
          for (size_t i : fillShare(order, points[*bestIndex].targetBytes))
            chosenShare.push_back(order[i].name);
          // Updates across the step boundary pay off when the host is the
          // bottleneck; where the device is, the steady state can come out
          // slower (the tail's order, the fetches' waits), so the best
          // share is compiled joined too and the faster plan kept.
          if (options.lowering.crossStepUpdates) {
            std::vector<std::string> share;
            for (size_t i : fillShare(order, points[*bestIndex].targetBytes))
              share.push_back(order[i].name);
            OwningOpRef<ModuleOp> crossPlan = std::move(imported->module);
            options.lowering.crossStepUpdates = false;
            FailureOr<PlanReport> joined = compileShare(share);
            options.lowering.crossStepUpdates = true;
            bool better = succeeded(joined) &&
                          joined->plannedPeakBytes[0] <=
                              *reportOptions.budgetBytes &&
                          joined->cost.stepS < report->cost.stepS;
            if (!args.quiet && succeeded(joined))
              llvm::errs() << "colossal-opt: the same share with the host "
                              "updates joined at the step's end: predicted "
                           << llvm::format("%.4g", joined->cost.stepS * 1e3)
                           << " ms (across the step boundary: "
                           << llvm::format("%.4g", report->cost.stepS * 1e3)
                           << " ms)\n";
            if (better) {
              std::string policy = report->policy;
              report = std::move(*joined);
              report->policy =
                  policy + "; host updates joined at the step's end, "
                           "predicted faster";
            } else {
              imported->module = std::move(crossPlan);
              report->policy += "; host updates across the step boundary";
            }
          }
          report->policy += ")";
        } else {
          imported->module = std::move(cpuPlan);
          report = std::move(cpuReport);
          if (!points.empty())
            report->policy =
                report->policy.substr(0, report->policy.size() - 1) +
                "; no device-resident share predicted faster " +
                "that fits: " + tried + ")";
        }
        module = *imported->module;
      }
    }
  } else if (!deviceFits) {
    return fail(err);
  }
  // Updates streamed through the device (docs/planner.md): the last host
  // updates in the gradients' order (the share's order, continued) run on
  // the device with their master and moments copied up and back; the plan
  // chosen above is recompiled with a count of them, forced or searched.
  if (streamPristine) {
    std::vector<ShareWeight> order = hostUpdatesByArrival(*imported->module);
    std::reverse(order.begin(), order.end());
    size_t n = order.size();
    std::vector<size_t> counts;
    bool search = args.streamUpdates == "auto";
    if (args.streamUpdates == "all")
      counts = {n};
    else if (!search)
      counts = {std::min<size_t>(n, std::stoul(args.streamUpdates))};
    else
      for (size_t eighths = 1; eighths <= 8; ++eighths)
        if (size_t k = n * eighths / 8;
            k > 0 && (counts.empty() || counts.back() != k))
          counts.push_back(k);
    bool carried = false;
    imported->module->walk([&](func::FuncOp f) {
      carried |= f->hasAttr("cplan.carried_streams");
    });
    OwningOpRef<ModuleOp> basePlan = std::move(imported->module);
    std::optional<PlanReport> base = std::move(*report);
    OwningOpRef<ModuleOp> bestPlan;
    std::optional<PlanReport> best;
    size_t bestCount = 0;
    // One count: compiled, reported, kept when it is the best so far.
    // Returns whether it fits, with its predicted step.
    auto tryCount = [&](size_t k, double &stepS) -> FailureOr<bool> {
      std::vector<std::string> streamed;
      for (size_t i = 0; i < k; ++i)
        streamed.push_back(order[i].name);
      options.lowering.offloadOptimizer = true;
      options.lowering.crossStepUpdates = carried;
      std::string streamErr;
      FailureOr<PlanReport> r =
          compilePoint(*streamPristine, chosenShare, streamed, streamErr);
      options.lowering.crossStepUpdates = !args.joinedSteps;
      bool fits = succeeded(r) &&
                  (!reportOptions.budgetBytes ||
                   r->plannedPeakBytes[0] <= *reportOptions.budgetBytes);
      if (!args.quiet) {
        llvm::errs() << "colossal-opt: " << k << " of " << n
                     << " host updates streamed through the device: ";
        if (failed(r))
          llvm::errs() << "does not compile: " << streamErr << "\n";
        else
          llvm::errs() << "predicted step "
                       << llvm::format("%.4g", r->cost.stepS * 1e3)
                       << " ms (none streamed: "
                       << llvm::format("%.4g", base->cost.stepS * 1e3)
                       << " ms), "
                       << (fits ? std::string("fits")
                                : "over the budget by " +
                                      humanBytes(r->plannedPeakBytes[0] -
                                                 *reportOptions.budgetBytes))
                       << "\n";
      }
      if (!search && !fits) {
        err = failed(r) ? streamErr
                        : "with " + std::to_string(k) +
                              " updates streamed through the device the "
                              "plan needs " +
                              humanBytes(r->plannedPeakBytes[0]) +
                              ", over the budget of " +
                              humanBytes(*reportOptions.budgetBytes);
        return failure();
      }
      stepS = succeeded(r) ? r->cost.stepS : 0.0;
      if (fits && (!search || r->cost.stepS < base->cost.stepS) &&
          (!best || r->cost.stepS < best->cost.stepS)) {
        best = std::move(*r);
        bestPlan = std::move(imported->module);
        bestCount = k;
      }
      return fits;
    };
    double stepS = 0;
    if (!search) {
      if (counts.front() > 0 && failed(tryCount(counts.front(), stepS)))
        return fail(err);
    } else {
      // auto: eighths of the host updates upwards, until one does not fit
      // (more streamed updates hold more device copies) or one is predicted
      // slower than the last (the gain has peaked); after a miss of the
      // budget, bisection between the last that fit and it.
      size_t lastFit = 0, over = 0;
      double lastStepS = base->cost.stepS;
      for (size_t k : counts) {
        FailureOr<bool> fits = tryCount(k, stepS);
        if (!*fits) {
          over = k;
          break;
        }
        if (stepS > lastStepS)
          break;
        lastFit = k;
        lastStepS = stepS;
      }
      for (int i = 0; i < 3 && over > lastFit + 1; ++i) {
        size_t mid = (lastFit + over) / 2;
        if (*tryCount(mid, stepS))
          lastFit = mid;
        else
          over = mid;
      }
    }
    if (best) {
      imported->module = std::move(bestPlan);
      report = std::move(*best);
      report->policy = base->policy + "; " + std::to_string(bestCount) +
                       " of " + std::to_string(n) +
                       " host updates streamed through the device" +
                       (search ? " (predicted fastest that fits)" : "");
    } else {
      imported->module = std::move(basePlan);
      report = std::move(*base);
      if (n > 0)
        report->policy += "; no streamed updates predicted faster";
    }
    module = *imported->module;
  }
  if (!args.emitPlan.empty() &&
      !writeText(args.emitPlan, [&](llvm::raw_ostream &os) { module.print(os); },
                 err))
    return fail(err);

  auto funcs = module.getOps<func::FuncOp>();
  if (funcs.empty())
    return fail("the compiled module has no plan function");
  FailureOr<rt::Plan> plan = buildPlan(*funcs.begin());
  if (failed(plan))
    return fail("writing the plan for '" + args.model + "' failed");
  plan->sourceModel = llvm::sys::path::filename(args.model).str();

  // Weights: read every initializer the plan binds, unless the model is a
  // weight-free graph (its external data file is absent).
  std::string weightsPath = weightsPathFor(args.output);
  std::string missing;
  bool haveWeights = weightDataAvailable(*imported, &missing);
  std::set<std::string> bound;
  for (const rt::PlanBinding &b : plan->bindings)
    if (b.role == rt::BindingRole::kWeight)
      bound.insert(b.name);
  if (haveWeights && !bound.empty()) {
    rt::SafetensorsFile weights;
    for (const WeightInfo &w : imported->weights) {
      if (!bound.count(w.name))
        continue;
      rt::HostTensor t;
      rt::Status st = readWeight(*imported, w, t);
      if (!st.isOk())
        return fail("reading weight '" + w.name + "': " + st.message());
      weights.tensors.emplace_back(w.name, std::move(t));
    }
    weights.metadata["format"] = "colossal-weights";
    weights.metadata["source_model"] = plan->sourceModel;
    rt::Status st = rt::writeSafetensorsFile(weights, weightsPath);
    if (!st.isOk())
      return fail(st.message());
    plan->weightsFile = llvm::sys::path::filename(weightsPath).str();
  }
  rt::Status st = rt::writePlanFile(*plan, args.output);
  if (!st.isOk())
    return fail(st.message());

  if (!args.quiet) {
    double seconds = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - start)
                         .count();
    uint64_t constBytes = 0;
    for (const rt::PlanBinding &b : plan->bindings)
      constBytes += b.data.size();
    auto arenaBytes = (*funcs.begin())->getAttrOfType<DenseI64ArrayAttr>(
        "cplan.arena_bytes");
    auto lower = (*funcs.begin())->getAttrOfType<DenseI64ArrayAttr>(
        "cplan.lower_bound_bytes");
    auto &os = llvm::errs();
    os << "colossal-opt: compiled " << args.model << " (opset "
       << imported->opsetVersion << ", " << imported->numNodes
       << " nodes) in " << llvm::format("%.2f", seconds) << " s\n";
    os << "  ops: " << plan->instrs.size() << "\n";
    os << "  parameters: " << paramElems << " (" << human(paramElems)
       << ") in " << paramCount << " tensors, " << paramBytes << " bytes\n";
    if (!args.forwardOnly) {
      os << "  trained: " << trainedElems << " (" << human(trainedElems)
         << ") in " << trainedCount << " tensors, " << trainedBytes
         << " bytes; frozen: " << paramElems - std::min(paramElems, trainedElems)
         << " in " << paramCount - std::min(paramCount, trainedCount)
         << " tensors\n";
      const auto &o = args.compile.optimizer;
      os << "  step: " << o.optimizer << " lr " << o.lr << " ("
         << o.schedule << ")";
      if (args.gradAccum > 1)
        os << ", " << args.gradAccum << " micro-batches of "
           << fullBatch / args.gradAccum;
      os << (options.optimizer.fuse
                 ? ", updates fused into the step (train_step)"
                 : ", separate optimizer program (micro_step + apply_step)");
      os << "\n";
    }
    os << "  constants: " << constBytes << " bytes in the plan\n";
    os << "  device arena: " << arenaBytes[0] << " bytes ("
       << humanBytes(arenaBytes[0]) << "), liveness lower bound "
       << lower[0] << " bytes\n";
    if (DictionaryAttr remat = rematSummary(module)) {
      auto count = remat.getAs<IntegerAttr>("buffers");
      auto bytes = remat.getAs<IntegerAttr>("bytes");
      auto addedS = remat.getAs<FloatAttr>("added_s");
      if (count && bytes && addedS)
        os << "  recomputed: " << count.getInt() << " buffers, "
           << humanBytes(static_cast<uint64_t>(bytes.getInt()))
           << ", predicted +" << llvm::format("%.3g", addedS.getValueAsDouble())
           << " s of compute per step (colossal-rematerialize)\n";
    }
    os << "  plan: " << args.output << "\n";
    if (!plan->weightsFile.empty())
      os << "  weights: " << weightsPath << "\n";
    else if (!bound.empty())
      os << "  weights: none written: the model's weight data file '"
         << missing << "' is absent (a weight-free graph)\n";
  }
  if (!args.quiet)
    printPlanReportSummary(llvm::errs(), *report);
  if (failed(writePlanReports(*report, reportOptions, err)))
    return fail(err);
  return 0;
}
