//===- Pipeline.cpp - The compile pipeline, in one place ------------------===//

#include "colossal/Transforms/Passes.h"

#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::colossal;

void mlir::colossal::buildCompilePipeline(OpPassManager &pm,
                                          const CompileOptions &options) {
  // On the f32 forward, before precision and autodiff rebuild it.
  if (options.fuseAttention)
    pm.addPass(createFuseAttentionPass());
  // After attention has taken its k^T, before mixed precision casts the
  // weights and autodiff saves them: no transposed weight copy survives.
  if (options.foldTransposes)
    pm.addPass(createFoldTransposesPass());
  if (options.bf16)
    pm.addPass(createMixedPrecisionPass());
  if (!options.forwardOnly) {
    pm.addPass(createAutodiffPass(options.autodiff));
    // adamw_norm for the weights updated on the device: all of them unless
    // the optimizer is offloaded, then the device-resident share (an
    // offloaded update runs on the host, whose sum of squares the device's
    // norm could not read).
    BuildOptimizerStepPassOptions optimizer = options.optimizer;
    optimizer.normIntoUpdate = false;
    optimizer.normIntoUpdateOnly.clear();
    optimizer.rawGradToHost = false;
    if (options.fuseUpdateNorm && optimizer.fuse) {
      if (!options.lowering.offloadOptimizer) {
        optimizer.normIntoUpdate = true;
      } else {
        // The host's updates read the raw (bf16) gradient.
        optimizer.rawGradToHost = true;
        // The device updates the resident share and the streamed ones.
        std::vector<std::string> onDevice(
            options.lowering.deviceResident.begin(),
            options.lowering.deviceResident.end());
        onDevice.insert(onDevice.end(),
                        options.lowering.streamedUpdates.begin(),
                        options.lowering.streamedUpdates.end());
        if (!onDevice.empty()) {
          optimizer.normIntoUpdate = true;
          optimizer.normIntoUpdateOnly.assign(onDevice.begin(),
                                              onDevice.end());
        }
      }
    }
    pm.addPass(createBuildOptimizerStepPass(optimizer));
  }
  // Graph level: merge identical constants and computations.
  pm.addPass(createCSEPass());
  // On the whole step (forward, backward, optimizer), after CSE has merged
  // what it can: fusion hides intermediates CSE would otherwise share.
  if (options.fuseElementwise)
    pm.addPass(createFuseElementwisePass());
  pm.addPass(createLowerToPlanPass(options.lowering));
  // Recompute first: what it leaves (or finds cheaper to park) is offload's.
  if (options.remat.budgetBytes > 0)
    pm.addNestedPass<func::FuncOp>(createRematerializePass(options.remat));
  if (options.offload.budgetBytes > 0)
    pm.addNestedPass<func::FuncOp>(createOffloadAcrossGapsPass(options.offload));
  pm.addNestedPass<func::FuncOp>(createAssignOffsetsPass());
}
