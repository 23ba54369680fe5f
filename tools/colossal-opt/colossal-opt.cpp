//===- colossal-opt.cpp - The compiler driver and pass runner -------------===//
//
// `colossal-opt compile MODEL.onnx -o PLAN.cplan ...` and `colossal-opt
// import MODEL.onnx` are the user-facing subcommands (Compile.cpp); any other
// invocation is an mlir-opt style pass runner over .mlir input, for tests.
//
//===----------------------------------------------------------------------===//

#include "Compile.h"

#include "colossal/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

int main(int argc, char **argv) {
  if (argc >= 2) {
    llvm::StringRef sub = argv[1];
    if (sub == "compile")
      return colossal::runCompile(argc - 1, argv + 1);
    if (sub == "import")
      return colossal::runImport(argc - 1, argv + 1);
  }

  DialectRegistry registry;
  registry.insert<func::FuncDialect, colossal::graph::ColossalDialect,
                  colossal::plan::CPlanDialect>();
  registerCanonicalizerPass();
  registerCSEPass();
  colossal::registerColossalPasses();
  PassPipelineRegistration<>(
      "colossal-compile-pipeline",
      "The whole compile pipeline (what `colossal-opt compile` runs)",
      [](OpPassManager &pm) {
        colossal::buildCompilePipeline(pm, colossal::CompileOptions{});
      });
  return asMainReturnCode(MlirOptMain(
      argc, argv,
      "colossal-opt: pass runner (subcommands: compile, import; see --help "
      "of each)\n",
      registry));
}
