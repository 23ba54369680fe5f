//===- GraphDialect.cpp - The colossal graph dialect ----------------------===//

#include "colossal/Dialect/Graph/GraphDialect.h"
#include "colossal/Dialect/OpTableBridge.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::colossal;
using namespace mlir::colossal::graph;
namespace rt = ::colossal::runtime;

#include "colossal/Dialect/Graph/GraphDialect.cpp.inc"

void ColossalDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "colossal/Dialect/Graph/GraphOps.cpp.inc"
      >();
}

/// Types the runtime can hold: static shapes, rank <= kMaxRank, a DType.
static LogicalResult checkRuntimeType(Operation *op, Type type,
                                      StringRef what, unsigned index) {
  auto shaped = dyn_cast<RankedTensorType>(type);
  if (!shaped || !shaped.hasStaticShape())
    return op->emitOpError() << "requires statically shaped " << what << " #"
                             << index << ", got " << type;
  if (shaped.getRank() > static_cast<int64_t>(rt::kMaxRank))
    return op->emitOpError() << "requires rank <= " << rt::kMaxRank << " for "
                             << what << " #" << index << ", got "
                             << shaped.getRank();
  if (!toDType(shaped.getElementType()))
    return op->emitOpError() << "has no runtime element type for " << what
                             << " #" << index << ": " << shaped.getElementType();
  return success();
}

LogicalResult mlir::colossal::verifyWithOpTable(Operation *op) {
  StringRef name = op->getName().stripDialect();
  const rt::OpInfo *info = rt::lookupOp(std::string_view(name.data(), name.size()));
  if (!info)
    return op->emitOpError() << "is not in the runtime op table";
  std::vector<rt::TensorType> inputs;
  for (auto [i, v] : llvm::enumerate(op->getOperands())) {
    if (failed(checkRuntimeType(op, v.getType(), "operand", i)))
      return failure();
    inputs.push_back(*toTensorType(v.getType()));
  }
  for (auto [i, t] : llvm::enumerate(op->getResultTypes()))
    if (failed(checkRuntimeType(op, t, "result", i)))
      return failure();
  FailureOr<rt::Attrs> attrs = attrsFromMlir(
      op->getLoc(), info->kind, op->getAttrDictionary(),
      SmallVector<Type>(op->getResultTypes()));
  if (failed(attrs))
    return failure();
  std::vector<rt::TensorType> expected;
  rt::Status st = rt::inferOutputTypes(*attrs, inputs, expected);
  if (!st.isOk())
    return op->emitOpError() << st.message();
  if (expected.size() != op->getNumResults())
    return op->emitOpError() << "requires " << expected.size()
                             << " results, got " << op->getNumResults();
  for (auto [i, t] : llvm::enumerate(op->getResultTypes())) {
    if (*toTensorType(t) != expected[i])
      return op->emitOpError()
             << "result #" << i << " must be " << expected[i].toString()
             << " by the op's shape rule, got " << t;
  }
  return success();
}

LogicalResult WeightOp::verify() {
  if (getName().empty())
    return emitOpError("requires a non-empty initializer name");
  return checkRuntimeType(getOperation(), getType(), "result", 0);
}

LogicalResult StateOp::verify() {
  if (getName().empty())
    return emitOpError("requires a non-empty state name");
  return checkRuntimeType(getOperation(), getType(), "result", 0);
}

LogicalResult ConstantOp::verify() {
  auto value = getValue();
  if (value.getType() != getType())
    return emitOpError() << "requires the value's type " << value.getType()
                         << " to equal the result type " << getType();
  return checkRuntimeType(getOperation(), getType(), "result", 0);
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }

#define GET_OP_CLASSES
#include "colossal/Dialect/Graph/GraphOps.cpp.inc"
