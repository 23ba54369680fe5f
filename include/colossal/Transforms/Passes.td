//===- Passes.td - Every colossal pass, in pipeline order ---*- tablegen -*-===//
#ifndef COLOSSAL_TRANSFORMS_PASSES_TD
#define COLOSSAL_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// lower-to-plan
//===----------------------------------------------------------------------===//

def LowerToPlanPass : Pass<"colossal-lower-to-plan", "::mlir::ModuleOp"> {
  let summary = "Turn graph functions into plans of buffers, views and kernels";
  let description = [{
    Input: `func.func`s of `colossal` ops on static tensors (as the importer
    writes them), arguments and results named by `colossal.name`.

    Output: each such function becomes a no-argument plan function of `cplan`
    ops: one `cplan.buffer.alloc` (device space, 64-byte aligned) and
    `cplan.view` per tensor value, a `cplan.bind` for each input, output,
    weight and constant, and one `cplan.kernel` per computational op, in the
    original order on stream 0. A `colossal.reshape` becomes a second view of
    its input's buffer (no copy, no kernel). Large splat constants become
    `fill` kernels instead of stored bytes. Live ranges and offsets are left
    for `colossal-assign-offsets`.

    ```mlir
    // before
    func.func @main(%x: tensor<4xf32> {colossal.name = "x"}) -> (tensor<4xf32> {colossal.name = "y"}) {
      %0 = colossal.relu %x : (tensor<4xf32>) -> tensor<4xf32>
      return %0 : tensor<4xf32>
    }
    // after
    func.func @main() attributes {cplan.num_streams = 1 : i64, cplan.num_events = 0 : i64} {
      %b0 = cplan.buffer.alloc device size(16) align(64)
      %v0 = cplan.view %b0[0] : memref<4xf32>
      cplan.bind input "x" %v0 : memref<4xf32>
      %b1 = cplan.buffer.alloc device size(16) align(64)
      %v1 = cplan.view %b1[0] : memref<4xf32>
      cplan.kernel "relu" ins(%v0 : memref<4xf32>) outs(%v1 : memref<4xf32>) params {} stream(0)
      cplan.bind output "y" %v1 : memref<4xf32>
      return
    }
    ```
  }];
  let options = [
    Option<"maxConstantBytes", "max-constant-bytes", "int64_t", "1 << 20",
           "A non-splat constant larger than this is an error (the importer "
           "keeps large computations as ops instead of folding them).">
  ];
  let dependentDialects = ["::mlir::colossal::plan::CPlanDialect",
                           "::mlir::func::FuncDialect"];
}

//===----------------------------------------------------------------------===//
// assign-offsets
//===----------------------------------------------------------------------===//

def AssignOffsetsPass : Pass<"colossal-assign-offsets", "::mlir::func::FuncOp"> {
  let summary = "Compute buffer live ranges and place buffers in their arena";
  let description = [{
    Input: a plan function (after `colossal-lower-to-plan`). Instructions are
    the `cplan.kernel`, `cplan.copy` and `cplan.event.*` ops, numbered from 0
    in order. A buffer is live from the first instruction that touches any
    view of it to the last; buffers bound as inputs, outputs, weights or
    constants are live for the whole step.

    Output: every `cplan.buffer.alloc` gets `live(first, last)` and an
    `offset` in its space's arena, such that buffers whose live ranges
    overlap never share bytes. Offsets come from the interval packer
    (include/colossal/Analysis/OffsetPacker.h). The function gets
    `cplan.arena_bytes` (one entry per memory space: device, host) and
    `cplan.lower_bound_bytes` (the largest total of simultaneously live
    bytes, per space) so the gap to the lower bound is visible.

    ```mlir
    // two buffers whose lifetimes do not overlap share offset 0
    %a = cplan.buffer.alloc device size(100) align(16) live(0, 1) offset(0)
    %b = cplan.buffer.alloc device size(100) align(16) live(2, 3) offset(0)
    ```
  }];
}

#endif // COLOSSAL_TRANSFORMS_PASSES_TD
