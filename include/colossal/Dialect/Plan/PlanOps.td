//===- PlanOps.td - Ops of the cplan dialect ----------------*- tablegen -*-===//
#ifndef COLOSSAL_DIALECT_PLAN_PLANOPS_TD
#define COLOSSAL_DIALECT_PLAN_PLANOPS_TD

include "colossal/Dialect/Plan/PlanBase.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def CPlan_BufferAllocOp : CPlan_Op<"buffer.alloc"> {
  let summary = "A region of a memory space's arena";
  let description = [{
    `size` and `align` are in bytes. `live(first, last)` is the inclusive
    range of instruction indices (kernels, copies, event ops, counted in
    order from 0) during which the bytes are in use; `offset` is the byte
    offset in the arena. Both are set by `colossal-assign-offsets`.

    ```mlir
    %b = cplan.buffer.alloc device size(4096) align(64) live(3, 7) offset(0)
    ```
  }];
  let arguments = (ins CPlan_MemorySpaceAttr:$space, I64Attr:$size,
                   I64Attr:$align, OptionalAttr<DenseI64ArrayAttr>:$live,
                   OptionalAttr<I64Attr>:$offset);
  let results = (outs CPlan_BufferType:$result);
  let assemblyFormat = [{
    $space `size` `(` $size `)` `align` `(` $align `)`
    (`live` `(` $live^ `)`)? (`offset` `(` $offset^ `)`)? attr-dict
  }];
  let hasVerifier = 1;
}

def CPlan_ViewOp : CPlan_Op<"view", [Pure]> {
  let summary = "A typed view of a buffer's bytes at a byte offset";
  let description = [{
    ```mlir
    %v = cplan.view %b[0] : memref<2x16xf32>
    ```
  }];
  let arguments = (ins CPlan_BufferType:$buffer, I64Attr:$byte_offset);
  let results = (outs AnyStaticShapeMemRef:$result);
  let assemblyFormat = "$buffer `[` $byte_offset `]` attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def CPlan_KernelOp : CPlan_Op<"kernel", [AttrSizedOperandSegments]> {
  let summary = "Run one op-table kernel on views";
  let description = [{
    `op` names a runtime op-table entry; `params` holds its attributes by
    name (those the op derives from its result, such as a reshape's shape,
    are taken from the output views). Destination-passing: results are
    written into the `outs` views.

    ```mlir
    cplan.kernel "matmul" ins(%a, %b : memref<32x64xf32>, memref<256x64xf32>)
        outs(%c : memref<32x256xf32>) params {transpose_b = 1 : i64} stream(0)
    ```
  }];
  let arguments = (ins StrAttr:$op, Variadic<AnyStaticShapeMemRef>:$ins,
                   Variadic<AnyStaticShapeMemRef>:$outs,
                   DictionaryAttr:$params,
                   DefaultValuedAttr<I64Attr, "0">:$stream);
  let assemblyFormat = [{
    $op `ins` `(` ($ins^ `:` type($ins))? `)` `outs` `(` $outs `:` type($outs) `)`
    `params` $params `stream` `(` $stream `)` attr-dict
  }];
  let hasVerifier = 1;
}

def CPlan_CopyOp : CPlan_Op<"copy", [AllTypesMatch<["source", "target"]>]> {
  let summary = "Copy a view's bytes into another view of the same type";
  let description = [{
    Across memory spaces this is an offload (device to host) or a prefetch
    (host to device).

    ```mlir
    cplan.copy %src to %dst stream(1) : memref<64xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeMemRef:$source, AnyStaticShapeMemRef:$target,
                   DefaultValuedAttr<I64Attr, "0">:$stream);
  let assemblyFormat = "$source `to` $target `stream` `(` $stream `)` attr-dict `:` type($source)";
  let hasVerifier = 1;
}

def CPlan_EventRecordOp : CPlan_Op<"event.record"> {
  let summary = "Mark a point in a stream that other streams can wait for";
  let arguments = (ins I64Attr:$event, DefaultValuedAttr<I64Attr, "0">:$stream);
  let assemblyFormat = "$event `stream` `(` $stream `)` attr-dict";
  let hasVerifier = 1;
}

def CPlan_EventWaitOp : CPlan_Op<"event.wait"> {
  let summary = "Make a stream wait until an event has been reached";
  let arguments = (ins I64Attr:$event, DefaultValuedAttr<I64Attr, "0">:$stream);
  let assemblyFormat = "$event `stream` `(` $stream `)` attr-dict";
  let hasVerifier = 1;
}

def CPlan_BindOp : CPlan_Op<"bind"> {
  let summary = "Connect a view to a graph input, output, weight or constant";
  let description = [{
    Inputs are written before the first instruction of their `program`,
    outputs read after its last; weights are loaded once from the weights
    file by `name` (or initialised by their `init` rule: `zeros`, `ones`,
    `normal` with standard deviation `init_scale`), and the optimizer
    updates the `trainable` ones; states (optimizer moments, accumulated
    gradients) start at zero; weights and states persist across programs
    and steps. Constants carry their bytes in `value`. `export_name` is the
    name `colossal-run --export-weights` writes a weight under.

    ```mlir
    cplan.bind input "input_ids" %v : memref<2x16xi64>
    cplan.bind constant "c0" %c {value = dense<1.0> : tensor<4xf32>} : memref<4xf32>
    ```
  }];
  let arguments = (ins CPlan_BindingRoleAttr:$role, StrAttr:$name,
                   AnyStaticShapeMemRef:$view, OptionalAttr<ElementsAttr>:$value,
                   OptionalAttr<StrAttr>:$program, UnitAttr:$trainable,
                   OptionalAttr<StrAttr>:$init, OptionalAttr<F64Attr>:$init_scale,
                   OptionalAttr<StrAttr>:$export_name);
  let assemblyFormat = "$role $name $view attr-dict `:` type($view)";
  let hasVerifier = 1;
}

def CPlan_ProgramOp : CPlan_Op<"program"> {
  let summary = "Start a named program (an entry point) of the plan";
  let description = [{
    The instructions that follow, up to the next `cplan.program`, form the
    program `name`: `forward`, or `micro_step` and `apply_step` for a
    training step. A plan with no marker is one `forward` program.

    ```mlir
    cplan.program "micro_step"
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let assemblyFormat = "$name attr-dict";
}

#endif // COLOSSAL_DIALECT_PLAN_PLANOPS_TD
