//===- PlanDialect.cpp - The cplan plan dialect ----------------------------===//

#include "colossal/Dialect/Plan/PlanDialect.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/runtime/PlanFormat.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::colossal;
using namespace mlir::colossal::plan;
namespace rt = ::colossal::runtime;

#include "colossal/Dialect/Plan/PlanDialect.cpp.inc"
#include "colossal/Dialect/Plan/PlanEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "colossal/Dialect/Plan/PlanAttrs.cpp.inc"
#define GET_TYPEDEF_CLASSES
#include "colossal/Dialect/Plan/PlanTypes.cpp.inc"

void CPlanDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "colossal/Dialect/Plan/PlanAttrs.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "colossal/Dialect/Plan/PlanTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "colossal/Dialect/Plan/PlanOps.cpp.inc"
      >();
}

static LogicalResult checkStream(Operation *op, int64_t stream) {
  if (stream < 0 || stream >= static_cast<int64_t>(rt::kMaxStreams))
    return op->emitOpError() << "requires a stream in [0, " << rt::kMaxStreams
                             << "), got " << stream;
  return success();
}

// ODS getters of I64Attr return the value zero-extended (uint64_t): the
// verifiers read the attributes' signed values to catch negative ones.
LogicalResult BufferAllocOp::verify() {
  int64_t size = getSizeAttr().getInt(), alignValue = getAlignAttr().getInt();
  if (size < 0)
    return emitOpError() << "requires a non-negative size, got " << size;
  uint64_t align = static_cast<uint64_t>(alignValue);
  if (alignValue <= 0 || !llvm::isPowerOf2_64(align))
    return emitOpError() << "requires a power-of-two alignment, got "
                         << alignValue;
  if (auto live = getLive()) {
    if (live->size() != 2)
      return emitOpError() << "requires live(first, last), got "
                           << live->size() << " values";
    if ((*live)[0] < 0 || (*live)[0] > (*live)[1])
      return emitOpError() << "requires 0 <= live first <= last, got ["
                           << (*live)[0] << ", " << (*live)[1] << "]";
  }
  if (auto offsetAttr = getOffsetAttr()) {
    int64_t offset = offsetAttr.getInt();
    if (offset < 0 || static_cast<uint64_t>(offset) % align != 0)
      return emitOpError() << "requires a non-negative offset aligned to "
                           << align << ", got " << offset;
  }
  return success();
}

LogicalResult ViewOp::verify() {
  auto type = getType();
  if (type.getLayout() && !type.getLayout().isIdentity())
    return emitOpError("requires a dense row-major (identity layout) view");
  auto tt = toTensorType(type);
  if (!tt)
    return emitOpError() << "has no runtime element type: " << type;
  int64_t byteOffset = getByteOffsetAttr().getInt();
  if (byteOffset < 0)
    return emitOpError() << "requires a non-negative byte offset, got "
                         << byteOffset;
  if (auto alloc = getBuffer().getDefiningOp<BufferAllocOp>()) {
    uint64_t end = static_cast<uint64_t>(byteOffset) + tt->sizeBytes();
    if (alloc.getSizeAttr().getInt() < 0 ||
        end > static_cast<uint64_t>(alloc.getSizeAttr().getInt()))
      return emitOpError() << "view of " << tt->sizeBytes() << " bytes at "
                           << byteOffset << " exceeds its buffer of "
                           << alloc.getSizeAttr().getInt() << " bytes";
  }
  return success();
}

LogicalResult KernelOp::verify() {
  StringRef name = getOp();
  const rt::OpInfo *info =
      rt::lookupOp(std::string_view(name.data(), name.size()));
  if (!info)
    return emitOpError() << "names no op-table kernel: '" << name << "'";
  // The event kinds are plan-only op-table entries (no `colossal` graph op,
  // no kernel): this dialect spells them cplan.event.record / .wait, whose
  // event index is an attribute of the op, not a kernel parameter.
  if (info->kind == rt::OpKind::EventRecord ||
      info->kind == rt::OpKind::EventWait)
    return emitOpError() << "names '" << name
                         << "', which is not a kernel: use cplan.event."
                         << (info->kind == rt::OpKind::EventRecord ? "record"
                                                                   : "wait");
  if (failed(checkStream(getOperation(), getStream())))
    return failure();
  std::vector<rt::TensorType> inputs;
  for (Value v : getIns())
    inputs.push_back(*toTensorType(v.getType()));
  SmallVector<Type> outTypes;
  for (Value v : getOuts()) {
    if (!toTensorType(v.getType()))
      return emitOpError() << "has no runtime element type: " << v.getType();
    outTypes.push_back(v.getType());
  }
  for (Value v : getIns())
    if (!toTensorType(v.getType()))
      return emitOpError() << "has no runtime element type: " << v.getType();
  FailureOr<rt::Attrs> attrs =
      attrsFromMlir(getLoc(), info->kind, getParams(), outTypes);
  if (failed(attrs))
    return failure();
  std::vector<rt::TensorType> expected;
  rt::Status st = rt::inferOutputTypes(*attrs, inputs, expected);
  if (!st.isOk())
    return emitOpError() << st.message();
  if (expected.size() != outTypes.size())
    return emitOpError() << "requires " << expected.size()
                         << " outputs, got " << outTypes.size();
  for (auto [i, t] : llvm::enumerate(outTypes))
    if (*toTensorType(t) != expected[i])
      return emitOpError() << "output #" << i << " must be "
                           << expected[i].toString() << ", got " << t;
  return success();
}

LogicalResult CopyOp::verify() {
  if (getSource().getType() != getTarget().getType())
    return emitOpError() << "requires equal source and target types, got "
                         << getSource().getType() << " and "
                         << getTarget().getType();
  return checkStream(getOperation(), getStream());
}

static LogicalResult checkEvent(Operation *op, int64_t event) {
  if (event < 0 || event >= static_cast<int64_t>(rt::kMaxEvents))
    return op->emitOpError() << "requires an event in [0, " << rt::kMaxEvents
                             << "), got " << event;
  return success();
}

LogicalResult EventRecordOp::verify() {
  if (failed(checkEvent(getOperation(), getEvent())))
    return failure();
  return checkStream(getOperation(), getStream());
}

LogicalResult EventWaitOp::verify() {
  if (failed(checkEvent(getOperation(), getEvent())))
    return failure();
  return checkStream(getOperation(), getStream());
}

LogicalResult BindOp::verify() {
  if (getName().empty())
    return emitOpError("requires a non-empty name");
  bool isConstant = getRole() == BindingRole::constant;
  if (isConstant != getValue().has_value())
    return emitOpError() << (isConstant ? "requires" : "must not have")
                         << " a value for a " << stringifyBindingRole(getRole())
                         << " binding";
  if (auto value = getValue()) {
    auto viewType = getView().getType();
    auto valueType = cast<ShapedType>(value->getType());
    if (valueType.getShape() != viewType.getShape() ||
        valueType.getElementType() != viewType.getElementType())
      return emitOpError() << "requires a value of the view's shape and type, got "
                           << valueType;
  }
  return success();
}

#define GET_OP_CLASSES
#include "colossal/Dialect/Plan/PlanOps.cpp.inc"
