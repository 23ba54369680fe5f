//===- Passes.h - colossal passes and the compile pipeline ------*- C++ -*-===//
#ifndef COLOSSAL_TRANSFORMS_PASSES_H
#define COLOSSAL_TRANSFORMS_PASSES_H

#include "colossal/Dialect/Graph/GraphDialect.h"
#include "colossal/Dialect/Plan/PlanDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace mlir::colossal {

#define GEN_PASS_DECL
#define GEN_PASS_REGISTRATION
#include "colossal/Transforms/Passes.h.inc"

/// What `colossal-opt compile` asks of the pipeline.
struct CompileOptions {
  /// Forward only (loss and logits); otherwise a training step:
  /// micro_step (autodiff) + apply_step (optimizer).
  bool forwardOnly = true;
  /// bf16 compute, f32 master weights and loss (colossal-mixed-precision).
  bool bf16 = false;
  /// Replace recognised attention with colossal.attention
  /// (colossal-fuse-attention).
  bool fuseAttention = true;
  /// Read matmul operands' last-two-dim transposes through the matmul's
  /// transpose flags (colossal-fold-transposes).
  bool foldTransposes = true;
  /// Group chains of elementwise ops into colossal.fused_elementwise
  /// (colossal-fuse-elementwise).
  bool fuseElementwise = true;
  /// In a fused AdamW step, update each device-updated weight with one
  /// adamw_norm on its raw gradient (the count division and the norm's
  /// sum of squares in the update's pass). buildCompilePipeline sets the
  /// pass's norm-into-update options from the lowering's placement: every
  /// weight without an offloaded optimizer, the device-resident share with
  /// one.
  bool fuseUpdateNorm = true;
  AutodiffPassOptions autodiff;
  BuildOptimizerStepPassOptions optimizer;
  LowerToPlanPassOptions lowering;
  /// Park idle device buffers in host memory until the device liveness
  /// peak fits (0: off).
  OffloadAcrossGapsPassOptions offload;
  /// Recompute idle device buffers until the device liveness peak fits,
  /// before offload (0: off).
  RematerializePassOptions remat;
};

/// The whole compile pipeline, from an imported graph module to a plan
/// module ready for emission. `compile` and the tests both use it.
void buildCompilePipeline(OpPassManager &pm, const CompileOptions &options);

} // namespace mlir::colossal

#endif // COLOSSAL_TRANSFORMS_PASSES_H
