//===- GraphDialect.h - The colossal graph dialect --------------*- C++ -*-===//
#ifndef COLOSSAL_DIALECT_GRAPH_GRAPHDIALECT_H
#define COLOSSAL_DIALECT_GRAPH_GRAPHDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace mlir::colossal {
/// Verifies a table op: its attributes against the runtime op table's
/// schema and its result types against the table's shape function.
LogicalResult verifyWithOpTable(Operation *op);
} // namespace mlir::colossal

#include "colossal/Dialect/Graph/GraphDialect.h.inc"

#define GET_OP_CLASSES
#include "colossal/Dialect/Graph/GraphOps.h.inc"

#endif // COLOSSAL_DIALECT_GRAPH_GRAPHDIALECT_H
