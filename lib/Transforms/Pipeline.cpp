//===- Pipeline.cpp - The compile pipeline, in one place ------------------===//

#include "colossal/Transforms/Passes.h"

#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::colossal;

void mlir::colossal::buildCompilePipeline(OpPassManager &pm,
                                          const CompileOptions &options) {
  (void)options; // forward only until the training-step passes land
  // Graph level: merge identical constants and computations.
  pm.addPass(createCSEPass());
  pm.addPass(createLowerToPlanPass());
  pm.addNestedPass<func::FuncOp>(createAssignOffsetsPass());
}
