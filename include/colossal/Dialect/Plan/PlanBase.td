//===- PlanBase.td - The cplan plan dialect -----------------*- tablegen -*-===//
#ifndef COLOSSAL_DIALECT_PLAN_PLANBASE_TD
#define COLOSSAL_DIALECT_PLAN_PLANBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def CPlan_Dialect : Dialect {
  let name = "cplan";
  let cppNamespace = "::mlir::colossal::plan";
  let summary = "An executable plan: buffers, kernel calls, copies, events";
  let description = [{
    Where it sits: ONNX -> `colossal` -> `cplan` (this dialect) -> .cplan.

    A plan is one `func.func` whose body lists, in execution order, what the
    runtime does: it never decides anything itself. Memory is explicit:
    every byte a step touches is in a `cplan.buffer.alloc` of a memory space,
    with a size, an alignment, a live range over the instruction sequence and
    (after `colossal-assign-offsets`) an offset in that space's arena.
    `cplan.view` types a region of a buffer as a memref; kernels read and
    write views. `cplan.bind` connects a view to the outside world (a graph
    input or output, a weight in the weights file, constant bytes).

    Memory spaces:
    - `device`: the accelerator's memory (on the CPU backend, host memory
      that stands in for it); one arena.
    - `host`: pinned host memory, the target of offloads; one arena.

    Streams are numbered queues of instructions; events order work across
    streams. The function's `cplan.num_streams` / `cplan.num_events`
    attributes give their counts.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
}

def CPlan_MemorySpace : I32EnumAttr<"MemorySpace", "where an arena lives", [
  I32EnumAttrCase<"device", 0>,
  I32EnumAttrCase<"host", 1>
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::colossal::plan";
}
def CPlan_MemorySpaceAttr : EnumAttr<CPlan_Dialect, CPlan_MemorySpace, "space">;

def CPlan_BindingRole : I32EnumAttr<"BindingRole", "what a binding connects", [
  I32EnumAttrCase<"input", 0>,
  I32EnumAttrCase<"output", 1>,
  I32EnumAttrCase<"weight", 2>,
  I32EnumAttrCase<"constant", 3>,
  I32EnumAttrCase<"state", 4>
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::colossal::plan";
}
def CPlan_BindingRoleAttr : EnumAttr<CPlan_Dialect, CPlan_BindingRole, "role">;

def CPlan_BufferType : TypeDef<CPlan_Dialect, "Buffer"> {
  let mnemonic = "buffer";
  let summary = "A region of an arena";
  let description = [{
    Untyped bytes; `cplan.view` gives them a tensor shape.
  }];
}

class CPlan_Op<string mnemonic, list<Trait> traits = []>
    : Op<CPlan_Dialect, mnemonic, traits>;

#endif // COLOSSAL_DIALECT_PLAN_PLANBASE_TD
