//===- GraphBase.td - The colossal graph dialect ------------*- tablegen -*-===//
#ifndef COLOSSAL_DIALECT_GRAPH_GRAPHBASE_TD
#define COLOSSAL_DIALECT_GRAPH_GRAPHBASE_TD

include "mlir/IR/OpBase.td"

def Colossal_Dialect : Dialect {
  let name = "colossal";
  let cppNamespace = "::mlir::colossal::graph";
  let summary = "Tensor-level graph of a model's computation";
  let description = [{
    Where it sits: ONNX -> `colossal` (this dialect) -> `cplan` -> .cplan.

    The importer turns an ONNX graph into one `func.func` of `colossal` ops on
    statically shaped ranked tensors. Each computational op corresponds to one
    entry of the runtime's op table (runtime/include/colossal/runtime/OpTable.h)
    with the same name and attribute names; its verifier runs that table's
    shape function, so the compiler, the constant folder and the runtime agree
    on every op's meaning. Parameters are `colossal.weight` ops that name an
    initializer (their values live in a safetensors file beside the plan, not
    in the IR); small constants are `colossal.constant`.

    Graph inputs and outputs keep their ONNX names in the `colossal.name`
    argument and result attributes; every op's location is the ONNX node name.
  }];
  let hasConstantMaterializer = 0;
}

class Colossal_Op<string mnemonic, list<Trait> traits = []>
    : Op<Colossal_Dialect, mnemonic, traits>;

#endif // COLOSSAL_DIALECT_GRAPH_GRAPHBASE_TD
