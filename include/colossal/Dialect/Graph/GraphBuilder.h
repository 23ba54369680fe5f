//===- GraphBuilder.h - Build graph ops from op-table descriptions -*- C++ -*-===//
//
// Passes that synthesise graph ops (autodiff, the optimizer, precision)
// describe each op as the runtime op table does (an Attrs value and operand
// values); this helper infers the result types with the table's shape
// function and creates the `colossal.<name>` op. A shape error is emitted at
// `loc` and returned as failure, so a pass can report the node it came from.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_DIALECT_GRAPH_GRAPHBUILDER_H
#define COLOSSAL_DIALECT_GRAPH_GRAPHBUILDER_H

#include "colossal/Dialect/Graph/GraphDialect.h"
#include "colossal/runtime/OpTable.h"

#include "mlir/IR/Builders.h"

namespace mlir::colossal {

class GraphBuilder {
public:
  explicit GraphBuilder(OpBuilder &b) : b(b) {}

  /// Creates the op described by `attrs` on `operands`; all its results.
  FailureOr<SmallVector<Value>> create(Location loc,
                                       const ::colossal::runtime::Attrs &attrs,
                                       ValueRange operands);
  /// The same for single-result ops.
  FailureOr<Value> create1(Location loc,
                           const ::colossal::runtime::Attrs &attrs,
                           ValueRange operands);
  FailureOr<Value> create1(Location loc, ::colossal::runtime::OpKind kind,
                           ValueRange operands) {
    return create1(loc, ::colossal::runtime::Attrs(kind), operands);
  }

  /// A scalar (rank-0) constant of `elementType`.
  Value scalar(Location loc, Type elementType, double value);
  /// A splat constant of `type`.
  Value splat(Location loc, RankedTensorType type, double value);
  FailureOr<Value> reshape(Location loc, Value v, ArrayRef<int64_t> dims);
  FailureOr<Value> cast(Location loc, Value v, Type elementType);
  /// Sums `grad` (of a broadcast result's shape) down to `shape`, the shape
  /// of an operand that was broadcast: the reverse of numpy broadcasting.
  FailureOr<Value> unbroadcast(Location loc, Value grad,
                               ArrayRef<int64_t> shape);
  /// Broadcasts `v` to `dims` (a no-op when it already has them).
  FailureOr<Value> expand(Location loc, Value v, ArrayRef<int64_t> dims);

  OpBuilder &builder() { return b; }

private:
  OpBuilder &b;
};

} // namespace mlir::colossal

#endif // COLOSSAL_DIALECT_GRAPH_GRAPHBUILDER_H
