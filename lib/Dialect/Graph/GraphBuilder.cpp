//===- GraphBuilder.cpp - Build graph ops from op-table descriptions ------===//

#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Dialect/OpTableBridge.h"

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

FailureOr<SmallVector<Value>>
GraphBuilder::create(Location loc, const rt::Attrs &attrs, ValueRange operands) {
  std::vector<rt::TensorType> inputs;
  for (Value v : operands) {
    auto t = toTensorType(v.getType());
    if (!t)
      return emitError(loc) << "cannot build "
                            << rt::opInfo(attrs.kind()).name.data()
                            << " on a value of type " << v.getType();
    inputs.push_back(*t);
  }
  std::vector<rt::TensorType> outs;
  rt::Status st = rt::inferOutputTypes(attrs, inputs, outs);
  if (!st.isOk())
    return emitError(loc) << st.message();
  OperationState state(loc, "colossal." +
                                std::string(rt::opInfo(attrs.kind()).name));
  state.addOperands(operands);
  for (const rt::TensorType &t : outs)
    state.addTypes(toRankedTensorType(b.getContext(), t));
  state.addAttributes(attrsToMlir(b, attrs));
  Operation *op = b.create(state);
  return SmallVector<Value>(op->getResults());
}

FailureOr<Value> GraphBuilder::create1(Location loc, const rt::Attrs &attrs,
                                       ValueRange operands) {
  auto r = create(loc, attrs, operands);
  if (failed(r))
    return failure();
  return r->front();
}

Value GraphBuilder::splat(Location loc, RankedTensorType type, double value) {
  Attribute elem;
  Type et = type.getElementType();
  if (auto ft = dyn_cast<FloatType>(et)) {
    elem = b.getFloatAttr(ft, value);
  } else {
    elem = b.getIntegerAttr(et, static_cast<int64_t>(value));
  }
  auto attr = DenseElementsAttr::get(type, elem);
  return graph::ConstantOp::create(b, loc, attr.getType(), attr).getResult();
}

Value GraphBuilder::scalar(Location loc, Type elementType, double value) {
  return splat(loc, RankedTensorType::get({}, elementType), value);
}

FailureOr<Value> GraphBuilder::reshape(Location loc, Value v,
                                       ArrayRef<int64_t> dims) {
  auto type = llvm::cast<RankedTensorType>(v.getType());
  if (type.getShape() == dims)
    return v;
  rt::Attrs a(rt::OpKind::Reshape);
  a.setList("shape", std::vector<int64_t>(dims.begin(), dims.end()));
  return create1(loc, a, v);
}

FailureOr<Value> GraphBuilder::cast(Location loc, Value v, Type elementType) {
  auto type = llvm::cast<RankedTensorType>(v.getType());
  if (type.getElementType() == elementType)
    return v;
  auto d = toDType(elementType);
  if (!d)
    return emitError(loc) << "cannot cast to " << elementType;
  rt::Attrs a(rt::OpKind::Cast);
  a.setDType("to", *d);
  return create1(loc, a, v);
}

FailureOr<Value> GraphBuilder::expand(Location loc, Value v,
                                      ArrayRef<int64_t> dims) {
  auto type = llvm::cast<RankedTensorType>(v.getType());
  if (type.getShape() == dims)
    return v;
  rt::Attrs a(rt::OpKind::Expand);
  a.setList("shape", std::vector<int64_t>(dims.begin(), dims.end()));
  return create1(loc, a, v);
}

FailureOr<Value> GraphBuilder::unbroadcast(Location loc, Value grad,
                                           ArrayRef<int64_t> shape) {
  auto type = llvm::cast<RankedTensorType>(grad.getType());
  ArrayRef<int64_t> dims = type.getShape();
  if (dims == shape)
    return grad;
  int64_t lead = static_cast<int64_t>(dims.size()) -
                 static_cast<int64_t>(shape.size());
  if (lead < 0)
    return emitError(loc) << "cannot unbroadcast " << type << " to rank "
                          << shape.size();
  // Sum the leading dims the operand did not have and the dims where it had
  // size 1; keep them (keepdims) and reshape to the operand's shape.
  std::vector<int64_t> axes;
  for (int64_t d = 0; d < static_cast<int64_t>(dims.size()); ++d) {
    if (d < lead) {
      axes.push_back(d);
      continue;
    }
    int64_t want = shape[d - lead];
    if (want == dims[d])
      continue;
    if (want != 1)
      return emitError(loc) << "cannot unbroadcast " << type << " to a dim of "
                            << want;
    axes.push_back(d);
  }
  Value v = grad;
  if (!axes.empty()) {
    rt::Attrs a(rt::OpKind::ReduceSum);
    a.setList("axes", axes);
    a.setI("keepdims", 1);
    auto r = create1(loc, a, v);
    if (failed(r))
      return failure();
    v = *r;
  }
  return reshape(loc, v, shape);
}
