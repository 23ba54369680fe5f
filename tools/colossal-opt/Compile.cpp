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

#include "colossal/Import/OnnxImporter.h"
#include "colossal/Target/PlanEmitter.h"
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
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdio>
#include <fstream>
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

const char *kCompileUsage = R"(usage: colossal-opt compile MODEL.onnx -o PLAN.cplan [options]

Imports an ONNX model, compiles it to an executable plan and writes
PLAN.cplan and its weights, PLAN.weights.safetensors, beside it.

options:
  -o, --output FILE       the plan file to write (required)
  --forward-only          compile the forward pass only (loss and logits)
  --shape NAME=DxD...     fix a graph input's shape (every dynamic dim must
                          be fixed); repeat per input
  --emit-graph FILE       also write the imported graph MLIR ('-': stdout)
  --emit-plan FILE        also write the plan MLIR ('-': stdout)
  --quiet                 no summary
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
  if (int rc = parseArgs("compile", argc, argv, args, true); rc >= 0)
    return rc;
  if (args.output.empty())
    return usageError("compile", "no output plan given (-o PLAN.cplan)");
  if (!args.forwardOnly)
    return fail("training-step compilation (autodiff, optimizer) is not "
                "available yet; pass --forward-only to compile the forward "
                "pass");
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

  // Parameters as the graph holds them (before CSE may merge anything).
  uint64_t paramElems = 0, paramBytes = 0;
  for (const WeightInfo &w : imported->weights) {
    paramElems += static_cast<uint64_t>(w.type.numElements());
    paramBytes += w.type.sizeBytes();
  }

  PassManager pm(&ctx);
  CompileOptions options;
  options.forwardOnly = args.forwardOnly;
  buildCompilePipeline(pm, options);
  if (failed(pm.run(module)))
    return fail("compiling '" + args.model + "' failed");
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
       << ") in " << imported->weights.size() << " tensors, " << paramBytes
       << " bytes\n";
    os << "  constants: " << constBytes << " bytes in the plan\n";
    os << "  device arena: " << arenaBytes[0] << " bytes ("
       << humanBytes(arenaBytes[0]) << "), liveness lower bound "
       << lower[0] << " bytes\n";
    os << "  plan: " << args.output << "\n";
    if (!plan->weightsFile.empty())
      os << "  weights: " << weightsPath << "\n";
    else if (!bound.empty())
      os << "  weights: none written: the model's weight data file '"
         << missing << "' is absent (a weight-free graph)\n";
  }
  return 0;
}
