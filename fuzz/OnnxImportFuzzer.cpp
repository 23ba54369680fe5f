//===- OnnxImportFuzzer.cpp - libFuzzer target for the ONNX importer ------===//
//
// importOnnxFile() reads a path, so each input is written to a file in a
// private temporary folder made once per process (two fuzzers never share
// it; external data locations resolve inside it). A model that imports is
// then taken as far as `colossal-opt compile --forward-only` takes it:
//   - every inline initializer is read with readWeight();
//   - the compile pipeline runs (with the verifier after each pass) and
//     buildPlan() turns the result into a runtime Plan;
//   - that Plan must serialise and read back: buildPlan promises a plan
//     the runtime accepts;
//   - the plan runs on the CPU executor with zero-filled weights and inputs
//     when its arenas are small (RunPlan.h).
// Failures at any step are fine (bad input is normal); crashes, sanitizer
// reports, assertion failures and broken promises are bugs. Diagnostics are
// dropped: printing them would only slow the fuzzer down.
//
//===----------------------------------------------------------------------===//

#include "RunPlan.h"

#include "colossal/Import/OnnxImporter.h"
#include "colossal/Target/PlanEmitter.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/runtime/PlanFormat.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;
namespace fuzz = ::colossal::fuzz;

namespace {

/// Inline initializers larger than this are not read back: a model may
/// declare any shape, and the importer does not read weights itself.
constexpr uint64_t kMaxReadWeightBytes = 16 << 20;

std::string &tempDir() {
  static std::string dir;
  return dir;
}
std::string &modelPath() {
  static std::string path;
  return path;
}

void removeTempFiles() {
  if (!modelPath().empty())
    ::unlink(modelPath().c_str());
  if (!tempDir().empty())
    ::rmdir(tempDir().c_str());
}

bool writeModel(const uint8_t *data, size_t size) {
  std::FILE *f = std::fopen(modelPath().c_str(), "wb");
  if (!f)
    return false;
  bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  return (std::fclose(f) == 0) && ok;
}

/// True when a type holds at most `limit` bytes (computed without overflow).
bool smallerThan(const rt::TensorType &type, uint64_t limit) {
  uint64_t bytes = rt::dtypeSizeBytes(type.dtype);
  for (int64_t d : type.dims) {
    if (d < 0)
      return false;
    if (d != 0 && bytes > limit / static_cast<uint64_t>(d))
      return false;
    bytes *= static_cast<uint64_t>(d);
  }
  return bytes <= limit;
}

void compile(MLIRContext &ctx, ImportResult &imported) {
  for (const WeightInfo &w : imported.weights) {
    if (w.external || !smallerThan(w.type, kMaxReadWeightBytes))
      continue;
    rt::HostTensor t;
    (void)readWeight(imported, w, t);
  }

  ModuleOp module = *imported.module;
  PassManager pm(&ctx);
  CompileOptions options;
  options.forwardOnly = true;
  buildCompilePipeline(pm, options);
  if (failed(pm.run(module)))
    return;
  auto funcs = module.getOps<func::FuncOp>();
  if (funcs.empty())
    return;
  FailureOr<rt::Plan> plan = buildPlan(*funcs.begin());
  if (failed(plan))
    return;
  std::vector<uint8_t> bytes;
  rt::Status st = rt::writePlan(*plan, bytes);
  if (!st.isOk())
    fuzz::bug("onnx-import", "writePlan() of buildPlan()'s plan",
              st.toString());
  rt::Plan reread;
  st = rt::readPlan(bytes.data(), bytes.size(), reread);
  if (!st.isOk())
    fuzz::bug("onnx-import", "readPlan() of buildPlan()'s plan", st.toString());
  fuzz::runPlanOnZeros(*plan, "onnx-import");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  const char *tmp = std::getenv("TMPDIR");
  std::string templ =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/colossal-fuzz-onnx-XXXXXX";
  if (!::mkdtemp(templ.data())) {
    std::perror("onnx-import fuzzer: mkdtemp");
    std::abort();
  }
  tempDir() = templ;
  modelPath() = templ + "/model.onnx";
  std::atexit(removeTempFiles);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!writeModel(data, size))
    fuzz::bug("onnx-import", "cannot write the temporary model file",
              modelPath());
  MLIRContext ctx(MLIRContext::Threading::DISABLED);
  ScopedDiagnosticHandler dropAll(&ctx, [](Diagnostic &) { return success(); });
  ctx.loadDialect<graph::ColossalDialect, plan::CPlanDialect,
                  func::FuncDialect>();
  FailureOr<ImportResult> imported =
      importOnnxFile(&ctx, modelPath(), ImportOptions());
  if (succeeded(imported))
    compile(ctx, *imported);
  return 0;
}
