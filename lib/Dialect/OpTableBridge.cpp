//===- OpTableBridge.cpp - MLIR <-> runtime op table conversions ----------===//

#include "colossal/Dialect/OpTableBridge.h"

#include "mlir/IR/Diagnostics.h"

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

std::optional<rt::DType> mlir::colossal::toDType(Type t) {
  if (t.isF32())
    return rt::DType::kF32;
  if (t.isF16())
    return rt::DType::kF16;
  if (t.isBF16())
    return rt::DType::kBF16;
  if (t.isF64())
    return rt::DType::kF64;
  if (auto it = dyn_cast<IntegerType>(t)) {
    unsigned w = it.getWidth();
    if (w == 1)
      return rt::DType::kBool;
    if (it.isUnsigned())
      return w == 8 ? std::optional(rt::DType::kU8) : std::nullopt;
    if (w == 64)
      return rt::DType::kI64;
    if (w == 32)
      return rt::DType::kI32;
    if (w == 8)
      return rt::DType::kI8;
  }
  return std::nullopt;
}

Type mlir::colossal::toElementType(MLIRContext *ctx, rt::DType d) {
  Builder b(ctx);
  switch (d) {
  case rt::DType::kF32:
    return b.getF32Type();
  case rt::DType::kF16:
    return b.getF16Type();
  case rt::DType::kBF16:
    return b.getBF16Type();
  case rt::DType::kF64:
    return b.getF64Type();
  case rt::DType::kI64:
    return b.getIntegerType(64);
  case rt::DType::kI32:
    return b.getIntegerType(32);
  case rt::DType::kI8:
    return b.getIntegerType(8);
  case rt::DType::kU8:
    return b.getIntegerType(8, /*isSigned=*/false);
  case rt::DType::kBool:
    return b.getI1Type();
  }
  return {};
}

std::optional<rt::TensorType> mlir::colossal::toTensorType(Type type) {
  auto shaped = dyn_cast<ShapedType>(type);
  if (!shaped || !shaped.hasStaticShape())
    return std::nullopt;
  auto dtype = toDType(shaped.getElementType());
  if (!dtype)
    return std::nullopt;
  rt::TensorType out;
  out.dtype = *dtype;
  out.dims.assign(shaped.getShape().begin(), shaped.getShape().end());
  return out;
}

RankedTensorType mlir::colossal::toRankedTensorType(MLIRContext *ctx,
                                                    const rt::TensorType &t) {
  return RankedTensorType::get(t.dims, toElementType(ctx, t.dtype));
}

bool mlir::colossal::isResultDerivedAttr(StringRef name) {
  return name == "shape" || name == "sizes" || name == "to";
}

FailureOr<rt::Attrs> mlir::colossal::attrsFromMlir(Location loc,
                                                   rt::OpKind kind,
                                                   DictionaryAttr dict,
                                                   ArrayRef<Type> resultTypes) {
  rt::Attrs out(kind);
  const rt::OpInfo &info = rt::opInfo(kind);
  std::optional<rt::TensorType> result;
  if (!resultTypes.empty())
    result = toTensorType(resultTypes.front());
  for (const rt::AttrSpec &spec : info.attrs) {
    StringRef name(spec.name.data(), spec.name.size());
    if (isResultDerivedAttr(name)) {
      if (!result)
        return emitError(loc) << info.name.data()
                              << ": needs a static result type to derive '"
                              << name << "'";
      if (spec.type == rt::AttrType::kDType)
        out.setDType(spec.name, result->dtype);
      else
        out.setList(spec.name, result->dims);
      continue;
    }
    Attribute attr = dict ? dict.get(name) : Attribute();
    if (!attr)
      continue; // the table default
    switch (spec.type) {
    case rt::AttrType::kI64:
      if (auto i = dyn_cast<IntegerAttr>(attr)) {
        out.setI(spec.name, i.getValue().getSExtValue());
        continue;
      }
      if (auto b = dyn_cast<BoolAttr>(attr)) {
        out.setI(spec.name, b.getValue() ? 1 : 0);
        continue;
      }
      break;
    case rt::AttrType::kF64:
      if (auto f = dyn_cast<FloatAttr>(attr)) {
        out.setF(spec.name, f.getValueAsDouble());
        continue;
      }
      break;
    case rt::AttrType::kI64List:
      if (auto a = dyn_cast<DenseI64ArrayAttr>(attr)) {
        out.setList(spec.name,
                    std::vector<int64_t>(a.asArrayRef().begin(),
                                         a.asArrayRef().end()));
        continue;
      }
      break;
    case rt::AttrType::kF64List:
      if (auto a = dyn_cast<DenseF64ArrayAttr>(attr)) {
        out.setFloatList(spec.name,
                         std::vector<double>(a.asArrayRef().begin(),
                                             a.asArrayRef().end()));
        continue;
      }
      break;
    case rt::AttrType::kDType:
      if (auto t = dyn_cast<TypeAttr>(attr)) {
        if (auto d = toDType(t.getValue())) {
          out.setDType(spec.name, *d);
          continue;
        }
      }
      break;
    }
    return emitError(loc) << info.name.data() << ": attribute '" << name
                          << "' has the wrong kind: " << attr;
  }
  return out;
}

SmallVector<NamedAttribute>
mlir::colossal::attrsToMlir(Builder &b, const rt::Attrs &attrs) {
  SmallVector<NamedAttribute> out;
  for (const rt::AttrSpec &spec : rt::opInfo(attrs.kind()).attrs) {
    StringRef name(spec.name.data(), spec.name.size());
    if (isResultDerivedAttr(name))
      continue;
    switch (spec.type) {
    case rt::AttrType::kI64:
      out.push_back(b.getNamedAttr(name, b.getI64IntegerAttr(attrs.i(spec.name))));
      break;
    case rt::AttrType::kF64:
      out.push_back(b.getNamedAttr(name, b.getF64FloatAttr(attrs.f(spec.name))));
      break;
    case rt::AttrType::kI64List:
      out.push_back(
          b.getNamedAttr(name, b.getDenseI64ArrayAttr(attrs.list(spec.name))));
      break;
    case rt::AttrType::kF64List:
      out.push_back(b.getNamedAttr(
          name, b.getDenseF64ArrayAttr(attrs.floatList(spec.name))));
      break;
    case rt::AttrType::kDType:
      out.push_back(b.getNamedAttr(
          name, TypeAttr::get(toElementType(b.getContext(),
                                            attrs.dtype(spec.name)))));
      break;
    }
  }
  return out;
}
