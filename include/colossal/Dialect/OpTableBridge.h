//===- OpTableBridge.h - MLIR <-> runtime op table conversions --*- C++ -*-===//
//
// The graph dialect and the cplan kernels are defined by the runtime's op
// table (runtime/include/colossal/runtime/OpTable.h). These helpers convert
// between MLIR types/attributes and the table's TensorType/Attrs, so that one
// shape function and one attribute schema serve the importer, the verifiers,
// the lowering and the plan writer.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_DIALECT_OPTABLEBRIDGE_H
#define COLOSSAL_DIALECT_OPTABLEBRIDGE_H

#include "colossal/runtime/OpTable.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"

#include <optional>

namespace mlir::colossal {

/// Element type <-> DType; std::nullopt for types the runtime has no DType
/// for (the caller emits the diagnostic).
std::optional<::colossal::runtime::DType> toDType(Type elementType);
Type toElementType(MLIRContext *ctx, ::colossal::runtime::DType dtype);

/// A static shaped type (tensor or memref) as a runtime TensorType.
std::optional<::colossal::runtime::TensorType> toTensorType(Type type);
RankedTensorType toRankedTensorType(MLIRContext *ctx,
                                    const ::colossal::runtime::TensorType &type);

/// True for attributes the table keeps but MLIR ops derive from their
/// result type: `shape`, `sizes` (result dims) and `to` (result dtype).
bool isResultDerivedAttr(llvm::StringRef name);

/// Reads an op's attributes by the table's schema from `attrs` (a graph op's
/// attribute dictionary or a cplan.kernel's params), taking result-derived
/// ones from `resultTypes[0]`. Missing attributes keep the table default.
/// Emits at `loc` and fails on an attribute of the wrong kind.
FailureOr<::colossal::runtime::Attrs> attrsFromMlir(Location loc, ::colossal::runtime::OpKind kind,
                                        DictionaryAttr attrs,
                                        ArrayRef<Type> resultTypes);

/// The MLIR attributes for `attrs`, result-derived ones left out.
SmallVector<NamedAttribute> attrsToMlir(Builder &builder,
                                        const ::colossal::runtime::Attrs &attrs);

} // namespace mlir::colossal

#endif // COLOSSAL_DIALECT_OPTABLEBRIDGE_H
