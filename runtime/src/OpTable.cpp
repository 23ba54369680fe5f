//===- OpTable.cpp - Op signatures, attribute encoding, shape rules -------===//
//
// The attribute table (its order is the plan encoding), Attrs and its plan
// encoding, and inferOutputTypes: the single shape function that the
// importer, the dialect verifiers and the plan reader all trust. Because the
// plan reader feeds it untrusted types and attributes, every rule below is
// also a safety check: whatever it accepts, a CPU kernel can run without
// reading or writing out of bounds.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/OpTable.h"

#include "colossal/runtime/FusedProgram.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <limits>

namespace colossal::runtime {

//===----------------------------------------------------------------------===//
// The table
//===----------------------------------------------------------------------===//

namespace {

/// Attributes per op, in plan-encoding order. Append only: reordering or
/// retyping an entry changes the plan format (a major version bump).
std::vector<AttrSpec> attrSpecsFor(OpKind kind) {
  constexpr AttrType kI64 = AttrType::kI64;
  constexpr AttrType kList = AttrType::kI64List;
  constexpr AttrType kF64 = AttrType::kF64;
  constexpr AttrType kDType = AttrType::kDType;
  constexpr AttrType kF64List = AttrType::kF64List;
  switch (kind) {
  case OpKind::Gelu:
    return {{"approximate", kI64}};
  case OpKind::Cast:
    return {{"to", kDType}};
  case OpKind::MatMul:
    return {{"transpose_a", kI64}, {"transpose_b", kI64}};
  case OpKind::ReduceSum:
  case OpKind::ReduceMean:
  case OpKind::ReduceMax:
  case OpKind::ReduceMin:
  case OpKind::ReduceSumSquare:
    return {{"axes", kList}, {"keepdims", kI64}};
  case OpKind::Softmax:
  case OpKind::LogSoftmax:
    return {{"axis", kI64}};
  case OpKind::LayerNorm:
    return {{"axis", kI64}, {"epsilon", kF64}};
  case OpKind::Gather:
    return {{"axis", kI64}};
  case OpKind::GatherND:
    return {{"batch_dims", kI64}};
  case OpKind::CumSum:
    return {{"axis", kI64}, {"exclusive", kI64}, {"reverse", kI64}};
  case OpKind::GatherElements:
    return {{"axis", kI64}};
  case OpKind::GatherElementsGrad:
    return {{"axis", kI64}, {"shape", kList}};
  case OpKind::Trilu:
    return {{"upper", kI64}, {"k", kI64}};
  case OpKind::Attention:
  case OpKind::AttentionGrad:
    return {{"scale", kF64}, {"causal", kI64}};
  case OpKind::FusedElementwise:
    return {{"program", kList}, {"constants", kF64List}, {"shape", kList}};
  case OpKind::Reshape:
  case OpKind::Expand:
    return {{"shape", kList}};
  case OpKind::Transpose:
    return {{"perm", kList}};
  case OpKind::Slice:
    return {{"starts", kList}, {"steps", kList}, {"sizes", kList}};
  case OpKind::Concat:
    return {{"axis", kI64}};
  case OpKind::Pad:
    return {{"pads", kList}, {"mode", kI64}, {"value", kF64}};
  case OpKind::Fill:
    return {{"to", kDType}, {"shape", kList}, {"value", kF64}};
  case OpKind::SoftmaxCrossEntropy:
  case OpKind::SoftmaxCrossEntropyGrad:
    return {{"ignore_index", kI64}, {"reduction", kI64}};
  case OpKind::GatherGrad:
    return {{"axis", kI64}, {"shape", kList}, {"padding_idx", kI64}};
  case OpKind::SliceGrad:
    return {{"starts", kList}, {"steps", kList}, {"shape", kList}};
  case OpKind::LayerNormGrad:
    return {{"axis", kI64}, {"epsilon", kF64}};
  case OpKind::AdamW:
  case OpKind::AdamWNorm:
    return {{"beta1", kF64},
            {"beta2", kF64},
            {"eps", kF64},
            {"weight_decay", kF64}};
  case OpKind::Sgd:
    return {{"momentum", kF64},
            {"dampening", kF64},
            {"weight_decay", kF64},
            {"nesterov", kI64}};
  case OpKind::EventRecord:
  case OpKind::EventWait:
    return {{"event", kI64}};
  default:
    return {};
  }
}

int numOutputsFor(OpKind kind) {
  switch (kind) {
  case OpKind::AdamWNorm: // param', m', v', sumsq
    return 4;
  case OpKind::LayerNormGrad: // dx, dscale, dbias
  case OpKind::AdamW:         // param', m', v'
  case OpKind::AttentionGrad: // dq, dk, dv
    return 3;
  case OpKind::Sgd:       // param', buf'
  case OpKind::Attention: // out, lse
    return 2;
  case OpKind::EventRecord: // stream ordering only
  case OpKind::EventWait:
    return 0;
  default:
    return 1;
  }
}

std::vector<OpInfo> buildOps() {
  std::vector<OpInfo> ops;
#define COLOSSAL_OP_INFO(E, N, C, MIN, MAX)                                    \
  ops.push_back(OpInfo{OpKind::E, N, MIN, MAX, attrSpecsFor(OpKind::E),        \
                       numOutputsFor(OpKind::E)});
  COLOSSAL_OP_KINDS(COLOSSAL_OP_INFO)
#undef COLOSSAL_OP_INFO
  return ops;
}

/// Raw kind -> entry of allOps(), nullptr for gaps in the numbering.
std::vector<const OpInfo *> buildIndex() {
  uint32_t maxCode = 0;
  for (const OpInfo &info : allOps())
    maxCode = std::max(maxCode, static_cast<uint32_t>(info.kind));
  std::vector<const OpInfo *> index(maxCode + 1, nullptr);
  for (const OpInfo &info : allOps())
    index[static_cast<uint32_t>(info.kind)] = &info;
  return index;
}

} // namespace

const std::vector<OpInfo> &allOps() {
  static const std::vector<OpInfo> ops = buildOps();
  return ops;
}

const OpInfo *lookupOp(uint32_t rawKind) {
  static const std::vector<const OpInfo *> index = buildIndex();
  return rawKind < index.size() ? index[rawKind] : nullptr;
}

const OpInfo *lookupOp(std::string_view name) {
  for (const OpInfo &info : allOps())
    if (info.name == name)
      return &info;
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Attrs
//===----------------------------------------------------------------------===//

Attrs::Attrs(OpKind kind) : kind_(kind) {
  const OpInfo *info = lookupOp(static_cast<uint32_t>(kind));
  assert(info && "Attrs built for a value that is not an OpKind");
  if (!info)
    return;
  values_.resize(info->attrs.size());
  for (size_t k = 0; k < info->attrs.size(); ++k)
    if (info->attrs[k].type == AttrType::kDType)
      values_[k].i = static_cast<int64_t>(DType::kF32);
}

size_t Attrs::indexOf(std::string_view name) const {
  if (const OpInfo *info = lookupOp(static_cast<uint32_t>(kind_)))
    for (size_t k = 0; k < info->attrs.size() && k < values_.size(); ++k)
      if (info->attrs[k].name == name)
        return k;
  assert(false && "attribute name not in the op's spec");
  return values_.size();
}

// With assertions off, an unknown name reads a default value and writes
// nothing rather than touching memory outside values_.
static const AttrValue &defaultAttrValue() {
  static const AttrValue value;
  return value;
}

int64_t Attrs::i(std::string_view name) const {
  size_t k = indexOf(name);
  return k < values_.size() ? values_[k].i : defaultAttrValue().i;
}

double Attrs::f(std::string_view name) const {
  size_t k = indexOf(name);
  return k < values_.size() ? values_[k].f : defaultAttrValue().f;
}

DType Attrs::dtype(std::string_view name) const {
  size_t k = indexOf(name);
  return static_cast<DType>(k < values_.size() ? values_[k].i
                                               : int64_t(DType::kF32));
}

const std::vector<int64_t> &Attrs::list(std::string_view name) const {
  size_t k = indexOf(name);
  return k < values_.size() ? values_[k].list : defaultAttrValue().list;
}

const std::vector<double> &Attrs::floatList(std::string_view name) const {
  size_t k = indexOf(name);
  return k < values_.size() ? values_[k].flist : defaultAttrValue().flist;
}

void Attrs::setI(std::string_view name, int64_t value) {
  size_t k = indexOf(name);
  if (k < values_.size())
    values_[k].i = value;
}

void Attrs::setF(std::string_view name, double value) {
  size_t k = indexOf(name);
  if (k < values_.size())
    values_[k].f = value;
}

void Attrs::setDType(std::string_view name, DType value) {
  size_t k = indexOf(name);
  if (k < values_.size())
    values_[k].i = static_cast<int64_t>(value);
}

void Attrs::setList(std::string_view name, std::vector<int64_t> value) {
  size_t k = indexOf(name);
  if (k < values_.size())
    values_[k].list = std::move(value);
}

void Attrs::setFloatList(std::string_view name, std::vector<double> value) {
  size_t k = indexOf(name);
  if (k < values_.size())
    values_[k].flist = std::move(value);
}

void Attrs::encode(std::vector<int64_t> &ints,
                   std::vector<double> &floats) const {
  const OpInfo *info = lookupOp(static_cast<uint32_t>(kind_));
  if (!info)
    return;
  for (size_t k = 0; k < info->attrs.size() && k < values_.size(); ++k) {
    const AttrValue &value = values_[k];
    switch (info->attrs[k].type) {
    case AttrType::kI64:
    case AttrType::kDType:
      ints.push_back(value.i);
      break;
    case AttrType::kI64List:
      ints.push_back(static_cast<int64_t>(value.list.size()));
      ints.insert(ints.end(), value.list.begin(), value.list.end());
      break;
    case AttrType::kF64:
      floats.push_back(value.f);
      break;
    case AttrType::kF64List:
      ints.push_back(static_cast<int64_t>(value.flist.size()));
      floats.insert(floats.end(), value.flist.begin(), value.flist.end());
      break;
    }
  }
}

Status Attrs::decode(OpKind kind, const int64_t *ints, size_t numInts,
                     const double *floats, size_t numFloats, Attrs &out) {
  const OpInfo *info = lookupOp(static_cast<uint32_t>(kind));
  if (!info)
    return COLOSSAL_ERROR(kCorruptPlan,
                          "unknown op kind " +
                              std::to_string(static_cast<uint32_t>(kind)));
  std::string op(info->name);
  auto fail = [&](const AttrSpec &spec, const std::string &what) {
    return COLOSSAL_ERROR(kCorruptPlan, op + ": attribute '" +
                                            std::string(spec.name) + "' " +
                                            what);
  };
  Attrs result(kind);
  size_t intPos = 0, floatPos = 0;
  for (size_t k = 0; k < info->attrs.size(); ++k) {
    const AttrSpec &spec = info->attrs[k];
    AttrValue &value = result.values_[k];
    if (spec.type == AttrType::kF64) {
      if (floatPos >= numFloats)
        return fail(spec, "runs past the end of the float pool (" +
                              std::to_string(numFloats) + " values)");
      value.f = floats[floatPos++];
      continue;
    }
    if (intPos >= numInts)
      return fail(spec, "runs past the end of the int pool (" +
                            std::to_string(numInts) + " values)");
    int64_t raw = ints[intPos++];
    switch (spec.type) {
    case AttrType::kI64:
      value.i = raw;
      break;
    case AttrType::kDType:
      if (raw < 0 || raw > std::numeric_limits<uint32_t>::max() ||
          !isValidDType(static_cast<uint32_t>(raw)))
        return fail(spec, "has invalid dtype value " + std::to_string(raw));
      value.i = raw;
      break;
    case AttrType::kI64List: {
      if (raw < 0 || static_cast<uint64_t>(raw) > kMaxAttrListLength)
        return fail(spec, "has list length " + std::to_string(raw) +
                              ", expected 0 to " +
                              std::to_string(kMaxAttrListLength));
      size_t count = static_cast<size_t>(raw);
      if (count > numInts - intPos)
        return fail(spec, "list of " + std::to_string(count) +
                              " runs past the end of the int pool (" +
                              std::to_string(numInts - intPos) + " left)");
      value.list.assign(ints + intPos, ints + intPos + count);
      intPos += count;
      break;
    }
    case AttrType::kF64List: {
      // The count is in the int pool, the values in the float pool.
      if (raw < 0 || static_cast<uint64_t>(raw) > kMaxAttrListLength)
        return fail(spec, "has list length " + std::to_string(raw) +
                              ", expected 0 to " +
                              std::to_string(kMaxAttrListLength));
      size_t count = static_cast<size_t>(raw);
      if (count > numFloats - floatPos)
        return fail(spec, "list of " + std::to_string(count) +
                              " runs past the end of the float pool (" +
                              std::to_string(numFloats - floatPos) +
                              " left)");
      value.flist.assign(floats + floatPos, floats + floatPos + count);
      floatPos += count;
      break;
    }
    case AttrType::kF64:
      break; // handled above
    }
  }
  if (intPos != numInts)
    return COLOSSAL_ERROR(kCorruptPlan,
                          op + ": " + std::to_string(numInts - intPos) +
                              " attribute ints left over, expected " +
                              std::to_string(intPos));
  if (floatPos != numFloats)
    return COLOSSAL_ERROR(kCorruptPlan,
                          op + ": " + std::to_string(numFloats - floatPos) +
                              " attribute floats left over, expected " +
                              std::to_string(floatPos));
  out = std::move(result);
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Shape rules
//===----------------------------------------------------------------------===//

namespace {

/// No tensor may hold 2^62 bytes or more: this keeps every element count,
/// byte size and flat index that a kernel computes inside int64.
constexpr uint64_t kMaxTensorBytes = uint64_t(1) << 62;
/// Pads beyond this magnitude are rejected before any arithmetic on them.
constexpr int64_t kMaxPadMagnitude = int64_t(1) << 40;

std::string shapeString(const std::vector<int64_t> &dims) {
  std::string text = "[";
  for (size_t d = 0; d < dims.size(); ++d)
    text += (d ? ", " : "") + std::to_string(dims[d]);
  return text + "]";
}

/// A double for messages, as %g spells it: "0.9", "1e-08", "nan".
std::string doubleString(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

/// Checks on one op; every message starts with the op's name.
class Rules {
public:
  Rules(const OpInfo &info, const Attrs &attrs,
        const std::vector<TensorType> &inputs)
      : info_(info), attrs_(attrs), in_(inputs) {}

  Status fail(const std::string &message) const {
    return COLOSSAL_ERROR(kInvalidArgument,
                          std::string(info_.name) + ": " + message);
  }

  /// dtype valid, rank <= kMaxRank, dims >= 0, size below kMaxTensorBytes.
  Status checkType(const std::string &what, const TensorType &type) const {
    if (!isValidDType(static_cast<uint32_t>(type.dtype)))
      return fail(what + " has invalid dtype value " +
                  std::to_string(static_cast<uint32_t>(type.dtype)));
    return checkDims(what, type.dims, dtypeSizeBytes(type.dtype));
  }

  Status checkDims(const std::string &what, const std::vector<int64_t> &dims,
                   uint64_t elementBytes) const {
    if (dims.size() > kMaxRank)
      return fail(what + " has rank " + std::to_string(dims.size()) +
                  ", the limit is " + std::to_string(kMaxRank));
    // Nonzero dims multiply to at most kMaxTensorBytes / elementBytes, so
    // that no partial product overflows, whatever a later zero dim does.
    uint64_t limit = kMaxTensorBytes / elementBytes;
    uint64_t count = 1;
    for (int64_t dim : dims) {
      if (dim < 0)
        return fail(what + " has a negative dim in " + shapeString(dims));
      if (dim == 0)
        continue;
      if (count > limit / static_cast<uint64_t>(dim))
        return fail(what + " " + shapeString(dims) + " is too large");
      count *= static_cast<uint64_t>(dim);
    }
    return Status::ok();
  }

  const TensorType &in(size_t k) const { return in_[k]; }
  size_t numInputs() const { return in_.size(); }
  int64_t attr(const char *name) const { return attrs_.i(name); }
  const std::vector<int64_t> &list(const char *name) const {
    return attrs_.list(name);
  }

  Status flag(const char *name) const {
    int64_t value = attrs_.i(name);
    if (value != 0 && value != 1)
      return fail(std::string(name) + " must be 0 or 1, got " +
                  std::to_string(value));
    return Status::ok();
  }

  /// An F64 attribute that must be finite and >= lo.
  Status finiteAtLeast(const char *name, double lo) const {
    double value = attrs_.f(name);
    if (!std::isfinite(value) || !(value >= lo))
      return fail(std::string(name) + " must be finite" +
                  (lo > -std::numeric_limits<double>::max()
                       ? " and >= " + doubleString(lo)
                       : std::string()) +
                  ", got " + doubleString(value));
    return Status::ok();
  }

  /// An F64 attribute in [lo, hi).
  Status finiteInRange(const char *name, double lo, double hi) const {
    double value = attrs_.f(name);
    if (!(value >= lo && value < hi))
      return fail(std::string(name) + " must be in [" + doubleString(lo) +
                  ", " + doubleString(hi) + "), got " + doubleString(value));
    return Status::ok();
  }

  Status axisInRange(const char *name, int64_t axis, size_t rank) const {
    if (axis < 0 || axis >= static_cast<int64_t>(rank))
      return fail(std::string(name) + " " + std::to_string(axis) +
                  " out of range [0, " + std::to_string(rank) + ")");
    return Status::ok();
  }

  Status requireFloat(size_t k) const {
    if (!isFloatDType(in_[k].dtype))
      return fail("operand " + std::to_string(k) + " must be float, got " +
                  in_[k].toString());
    return Status::ok();
  }

  Status requireNumeric(size_t k) const {
    if (!isFloatDType(in_[k].dtype) && !isIntegerDType(in_[k].dtype))
      return fail("operand " + std::to_string(k) +
                  " must be float or integer, got " + in_[k].toString());
    return Status::ok();
  }

  Status requireDType(size_t k, DType dtype) const {
    if (in_[k].dtype != dtype)
      return fail("operand " + std::to_string(k) + " must be " +
                  dtypeName(dtype) + ", got " + in_[k].toString());
    return Status::ok();
  }

  Status requireIndices(size_t k) const {
    if (in_[k].dtype != DType::kI32 && in_[k].dtype != DType::kI64)
      return fail("operand " + std::to_string(k) + " must be i32 or i64, got " +
                  in_[k].toString());
    return Status::ok();
  }

  Status sameDType(size_t a, size_t b) const {
    if (in_[a].dtype != in_[b].dtype)
      return fail(std::string("operand dtypes differ, ") +
                  dtypeName(in_[a].dtype) + " vs " + dtypeName(in_[b].dtype));
    return Status::ok();
  }

  Status broadcast(const std::vector<int64_t> &a, const std::vector<int64_t> &b,
                   std::vector<int64_t> &out) const {
    Status status = broadcastShapes(a, b, out);
    if (!status.isOk())
      return fail(status.message());
    return Status::ok();
  }

private:
  const OpInfo &info_;
  const Attrs &attrs_;
  const std::vector<TensorType> &in_;
};

Status inferMatMul(const Rules &r, TensorType &result) {
  const TensorType &a = r.in(0), &b = r.in(1);
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
  COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, 1));
  COLOSSAL_RETURN_IF_ERROR(r.flag("transpose_a"));
  COLOSSAL_RETURN_IF_ERROR(r.flag("transpose_b"));
  if (a.rank() < 2 || b.rank() < 2)
    return r.fail("operands need rank >= 2, got " + a.toString() + " and " +
                  b.toString());
  bool ta = r.attr("transpose_a"), tb = r.attr("transpose_b");
  size_t ra = a.rank(), rb = b.rank();
  int64_t m = ta ? a.dims[ra - 1] : a.dims[ra - 2];
  int64_t ka = ta ? a.dims[ra - 2] : a.dims[ra - 1];
  int64_t kb = tb ? b.dims[rb - 1] : b.dims[rb - 2];
  int64_t n = tb ? b.dims[rb - 2] : b.dims[rb - 1];
  if (ka != kb)
    return r.fail("contraction dims differ, " + std::to_string(ka) + " vs " +
                  std::to_string(kb));
  std::vector<int64_t> batchA(a.dims.begin(), a.dims.end() - 2);
  std::vector<int64_t> batchB(b.dims.begin(), b.dims.end() - 2);
  std::vector<int64_t> batch;
  Status status = broadcastShapes(batchA, batchB, batch);
  if (!status.isOk())
    return r.fail("batch dims do not broadcast: " + status.message());
  batch.push_back(m);
  batch.push_back(n);
  result = TensorType{a.dtype, batch};
  return Status::ok();
}

Status inferReduce(const Rules &r, TensorType &result) {
  const TensorType &x = r.in(0);
  COLOSSAL_RETURN_IF_ERROR(r.requireNumeric(0));
  COLOSSAL_RETURN_IF_ERROR(r.flag("keepdims"));
  const std::vector<int64_t> &axes = r.list("axes");
  for (size_t k = 0; k < axes.size(); ++k) {
    COLOSSAL_RETURN_IF_ERROR(r.axisInRange("axis", axes[k], x.rank()));
    if (k > 0 && axes[k] <= axes[k - 1])
      return r.fail("axes must be sorted and unique, got " + shapeString(axes));
  }
  bool keepdims = r.attr("keepdims");
  result.dtype = x.dtype;
  result.dims.clear();
  size_t next = 0;
  for (size_t d = 0; d < x.rank(); ++d) {
    bool reduced = next < axes.size() && axes[next] == static_cast<int64_t>(d);
    if (reduced)
      ++next;
    if (!reduced)
      result.dims.push_back(x.dims[d]);
    else if (keepdims)
      result.dims.push_back(1);
  }
  return Status::ok();
}

Status inferLayerNorm(const Rules &r, const Attrs &attrs, TensorType &result) {
  const TensorType &x = r.in(0);
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
  int64_t axis = attrs.i("axis");
  COLOSSAL_RETURN_IF_ERROR(r.axisInRange("axis", axis, x.rank()));
  COLOSSAL_RETURN_IF_ERROR(r.finiteAtLeast("epsilon", 0.0));
  std::vector<int64_t> normDims(x.dims.begin() + axis, x.dims.end());
  const char *names[] = {"x", "scale", "bias"};
  for (size_t k = 1; k < r.numInputs(); ++k) {
    COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, k));
    if (r.in(k).dims != normDims)
      return r.fail(std::string(names[k]) + " shape " +
                    shapeString(r.in(k).dims) +
                    " must be x.dims[axis:] = " + shapeString(normDims));
  }
  result = x;
  return Status::ok();
}

/// layer_norm_grad (x, scale, dy) -> dx, dscale, dbias.
Status inferLayerNormGrad(const Rules &r, const Attrs &attrs,
                          std::vector<TensorType> &results) {
  const TensorType &x = r.in(0), &scale = r.in(1), &dy = r.in(2);
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
  int64_t axis = attrs.i("axis");
  COLOSSAL_RETURN_IF_ERROR(r.axisInRange("axis", axis, x.rank()));
  COLOSSAL_RETURN_IF_ERROR(r.finiteAtLeast("epsilon", 0.0));
  COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, 1));
  std::vector<int64_t> normDims(x.dims.begin() + axis, x.dims.end());
  if (scale.dims != normDims)
    return r.fail("scale shape " + shapeString(scale.dims) +
                  " must be x.dims[axis:] = " + shapeString(normDims));
  if (dy != x)
    return r.fail("dy " + dy.toString() + " must have x's type " +
                  x.toString());
  results = {x, scale, scale};
  return Status::ok();
}

/// attention (q, k, v [, bias]) -> out, lse; see OpTable.h. Checks
/// everything the kernels index with: after this, q, k, v are rank 4 with
/// equal batch and head dims, Hq % Hkv == 0, and bias (when present) reads
/// in bounds through broadcast strides.
Status checkAttentionOperands(const Rules &r, bool hasBias) {
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
  COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, 1));
  COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, 2));
  COLOSSAL_RETURN_IF_ERROR(r.flag("causal"));
  COLOSSAL_RETURN_IF_ERROR(
      r.finiteAtLeast("scale", -std::numeric_limits<double>::max()));
  const TensorType &q = r.in(0), &k = r.in(1), &v = r.in(2);
  const char *names[] = {"q", "k", "v"};
  for (size_t i = 0; i < 3; ++i)
    if (r.in(i).rank() != 4)
      return r.fail(std::string(names[i]) + " must be [B, H, S, D], got " +
                    r.in(i).toString());
  if (k.dims != v.dims)
    return r.fail("k " + shapeString(k.dims) + " and v " +
                  shapeString(v.dims) + " must have one shape");
  if (k.dims[0] != q.dims[0] || k.dims[3] != q.dims[3])
    return r.fail("k " + shapeString(k.dims) + " must be [B, Hkv, T, D] for q " +
                  shapeString(q.dims));
  // D >= 1 bounds every scratch row a kernel sizes by T by k's own bytes.
  if (q.dims[3] < 1)
    return r.fail("head dim must be >= 1, got " + shapeString(q.dims));
  if (k.dims[1] < 1 || q.dims[1] % k.dims[1] != 0)
    return r.fail("query heads " + std::to_string(q.dims[1]) +
                  " must be a multiple of kv heads " +
                  std::to_string(k.dims[1]));
  if (!hasBias)
    return Status::ok();
  const TensorType &bias = r.in(3);
  COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, 3));
  std::vector<int64_t> scores = {q.dims[0], q.dims[1], q.dims[2], k.dims[2]};
  bool ok = bias.rank() <= 4;
  for (size_t d = 0; ok && d < bias.rank(); ++d) {
    int64_t dim = bias.dims[bias.rank() - 1 - d];
    ok = dim == 1 || dim == scores[3 - d];
  }
  if (!ok)
    return r.fail("bias " + shapeString(bias.dims) +
                  " must broadcast to the scores " + shapeString(scores));
  return Status::ok();
}

Status inferAttention(const Rules &r, std::vector<TensorType> &results) {
  COLOSSAL_RETURN_IF_ERROR(checkAttentionOperands(r, r.numInputs() == 4));
  const TensorType &q = r.in(0);
  results = {q, TensorType{DType::kF32, {q.dims[0], q.dims[1], q.dims[2]}}};
  return Status::ok();
}

/// attention_grad (q, k, v [, bias], out, lse, dout) -> dq, dk, dv.
Status inferAttentionGrad(const Rules &r, std::vector<TensorType> &results) {
  bool hasBias = r.numInputs() == 7;
  COLOSSAL_RETURN_IF_ERROR(checkAttentionOperands(r, hasBias));
  size_t outIndex = hasBias ? 4 : 3;
  const TensorType &q = r.in(0);
  TensorType lse{DType::kF32, {q.dims[0], q.dims[1], q.dims[2]}};
  const char *names[] = {"out", "lse", "dout"};
  const TensorType *expected[] = {&q, &lse, &q};
  for (size_t i = 0; i < 3; ++i)
    if (r.in(outIndex + i) != *expected[i])
      return r.fail(std::string(names[i]) + " " +
                    r.in(outIndex + i).toString() + " must be " +
                    expected[i]->toString());
  results = {q, r.in(1), r.in(2)};
  return Status::ok();
}

Status inferGatherND(const Rules &r, const Attrs &attrs, TensorType &result) {
  const TensorType &data = r.in(0), &indices = r.in(1);
  COLOSSAL_RETURN_IF_ERROR(r.requireIndices(1));
  int64_t rankData = static_cast<int64_t>(data.rank());
  int64_t rankIdx = static_cast<int64_t>(indices.rank());
  if (rankData < 1 || rankIdx < 1)
    return r.fail("data and indices need rank >= 1, got " + data.toString() +
                  " and " + indices.toString());
  int64_t batchDims = attrs.i("batch_dims");
  if (batchDims < 0 || batchDims >= std::min(rankData, rankIdx))
    return r.fail("batch_dims " + std::to_string(batchDims) +
                  " out of range [0, " +
                  std::to_string(std::min(rankData, rankIdx)) + ")");
  for (int64_t d = 0; d < batchDims; ++d)
    if (data.dims[d] != indices.dims[d])
      return r.fail("batch dim " + std::to_string(d) + " differs, " +
                    std::to_string(data.dims[d]) + " vs " +
                    std::to_string(indices.dims[d]));
  int64_t depth = indices.dims[rankIdx - 1];
  if (depth < 1 || depth > rankData - batchDims)
    return r.fail("indices.dims[-1] " + std::to_string(depth) +
                  " out of range [1, " + std::to_string(rankData - batchDims) +
                  "]");
  result.dtype = data.dtype;
  result.dims.assign(indices.dims.begin(), indices.dims.end() - 1);
  result.dims.insert(result.dims.end(), data.dims.begin() + batchDims + depth,
                     data.dims.end());
  return Status::ok();
}

/// The window of slice (and slice_grad): in each dim d of `dims`, sizes[d]
/// elements from starts[d] every steps[d], all inside [0, dims[d]). The
/// three lists have dims.size() entries (checked by the caller).
Status checkSliceWindow(const Rules &r, const std::vector<int64_t> &dims,
                        const std::vector<int64_t> &starts,
                        const std::vector<int64_t> &steps,
                        const std::vector<int64_t> &sizes) {
  for (size_t d = 0; d < dims.size(); ++d) {
    std::string where = " in dim " + std::to_string(d);
    if (steps[d] == 0)
      return r.fail("step 0" + where);
    if (sizes[d] < 0)
      return r.fail("size " + std::to_string(sizes[d]) + where);
    if (sizes[d] == 0)
      continue; // reads nothing
    if (starts[d] < 0 || starts[d] >= dims[d])
      return r.fail("start " + std::to_string(starts[d]) +
                    " out of range [0, " + std::to_string(dims[d]) + ")" +
                    where);
    // The last index read, starts + (sizes - 1) * steps, must stay in
    // [0, dim); checked by division so nothing overflows.
    uint64_t room = steps[d] > 0
                        ? static_cast<uint64_t>(dims[d] - 1 - starts[d])
                        : static_cast<uint64_t>(starts[d]);
    uint64_t stride = steps[d] > 0
                          ? static_cast<uint64_t>(steps[d])
                          : uint64_t(0) - static_cast<uint64_t>(steps[d]);
    if (static_cast<uint64_t>(sizes[d] - 1) > room / stride)
      return r.fail("start " + std::to_string(starts[d]) + ", step " +
                    std::to_string(steps[d]) + " and size " +
                    std::to_string(sizes[d]) + " read outside [0, " +
                    std::to_string(dims[d]) + ")" + where);
  }
  return Status::ok();
}

Status inferSlice(const Rules &r, TensorType &result) {
  const TensorType &x = r.in(0);
  const std::vector<int64_t> &starts = r.list("starts");
  const std::vector<int64_t> &steps = r.list("steps");
  const std::vector<int64_t> &sizes = r.list("sizes");
  if (starts.size() != x.rank() || steps.size() != x.rank() ||
      sizes.size() != x.rank())
    return r.fail("starts, steps and sizes need one entry per dim (" +
                  std::to_string(x.rank()) + "), got " +
                  std::to_string(starts.size()) + ", " +
                  std::to_string(steps.size()) + " and " +
                  std::to_string(sizes.size()));
  COLOSSAL_RETURN_IF_ERROR(checkSliceWindow(r, x.dims, starts, steps, sizes));
  result = TensorType{x.dtype, sizes};
  return Status::ok();
}

/// slice_grad: the slice window runs over `shape` (the sliced input), with
/// sizes = grad.dims; the result is grad's dtype with dims `shape`.
Status inferSliceGrad(const Rules &r, TensorType &result) {
  const TensorType &grad = r.in(0);
  const std::vector<int64_t> &starts = r.list("starts");
  const std::vector<int64_t> &steps = r.list("steps");
  const std::vector<int64_t> &shape = r.list("shape");
  result = TensorType{grad.dtype, shape};
  COLOSSAL_RETURN_IF_ERROR(r.checkType("shape", result));
  if (grad.rank() != shape.size() || starts.size() != shape.size() ||
      steps.size() != shape.size())
    return r.fail("grad rank, starts and steps need one entry per dim of "
                  "shape " +
                  shapeString(shape) + " (" + std::to_string(shape.size()) +
                  "), got " + std::to_string(grad.rank()) + ", " +
                  std::to_string(starts.size()) + " and " +
                  std::to_string(steps.size()));
  return checkSliceWindow(r, shape, starts, steps, grad.dims);
}

/// gather_grad: the result has dims `shape` (the gathered data's) and
/// grad's dtype; grad must have the shape gather would give.
Status inferGatherGrad(const Rules &r, const Attrs &attrs, TensorType &result) {
  const TensorType &grad = r.in(0), &indices = r.in(1);
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
  COLOSSAL_RETURN_IF_ERROR(r.requireIndices(1));
  const std::vector<int64_t> &shape = attrs.list("shape");
  result = TensorType{grad.dtype, shape};
  COLOSSAL_RETURN_IF_ERROR(r.checkType("shape", result));
  int64_t axis = attrs.i("axis");
  COLOSSAL_RETURN_IF_ERROR(r.axisInRange("axis", axis, shape.size()));
  std::vector<int64_t> expected(shape.begin(), shape.begin() + axis);
  expected.insert(expected.end(), indices.dims.begin(), indices.dims.end());
  expected.insert(expected.end(), shape.begin() + axis + 1, shape.end());
  if (grad.dims != expected)
    return r.fail("grad shape " + shapeString(grad.dims) +
                  " must be shape[:axis] ++ indices ++ shape[axis+1:] = " +
                  shapeString(expected));
  int64_t rows = shape[axis];
  int64_t paddingIdx = attrs.i("padding_idx");
  if (paddingIdx != std::numeric_limits<int64_t>::min() &&
      (paddingIdx < -rows || paddingIdx >= rows))
    return r.fail("padding_idx " + std::to_string(paddingIdx) +
                  " out of range [" + std::to_string(-rows) + ", " +
                  std::to_string(rows) + ") (INT64_MIN means none)");
  return Status::ok();
}

/// The index operand of gather_elements and gather_elements_grad against
/// the gathered data's dims `dataDims` (`what` names them in messages):
/// same rank, axis in range, and indices.dims[d] <= dataDims[d] for every
/// d != axis, so that every position but the axis one is in bounds; the
/// axis dim of indices is free (onnxruntime checks exactly this).
Status checkGatherElementsIndices(const Rules &r, const Attrs &attrs,
                                  const std::vector<int64_t> &dataDims,
                                  const char *what) {
  const TensorType &indices = r.in(1);
  COLOSSAL_RETURN_IF_ERROR(r.requireIndices(1));
  if (indices.rank() != dataDims.size())
    return r.fail("indices rank " + std::to_string(indices.rank()) +
                  " must equal " + what + " rank " +
                  std::to_string(dataDims.size()) + ", got " +
                  shapeString(indices.dims) + " and " + shapeString(dataDims));
  int64_t axis = attrs.i("axis");
  COLOSSAL_RETURN_IF_ERROR(r.axisInRange("axis", axis, dataDims.size()));
  for (size_t d = 0; d < dataDims.size(); ++d)
    if (static_cast<int64_t>(d) != axis && indices.dims[d] > dataDims[d])
      return r.fail("indices dim " + std::to_string(d) + " is " +
                    std::to_string(indices.dims[d]) + ", must be <= " + what +
                    " dim " + std::to_string(d) + " = " +
                    std::to_string(dataDims[d]) + " (off the axis " +
                    std::to_string(axis) + ")");
  return Status::ok();
}

/// gather_elements (data, indices): data's dtype, indices' dims.
Status inferGatherElements(const Rules &r, const Attrs &attrs,
                           TensorType &result) {
  COLOSSAL_RETURN_IF_ERROR(
      checkGatherElementsIndices(r, attrs, r.in(0).dims, "data"));
  result = TensorType{r.in(0).dtype, r.in(1).dims};
  return Status::ok();
}

/// gather_elements_grad (grad, indices): grad has indices' dims; the result
/// has dims `shape` (the gathered data's) and grad's dtype.
Status inferGatherElementsGrad(const Rules &r, const Attrs &attrs,
                               TensorType &result) {
  const TensorType &grad = r.in(0), &indices = r.in(1);
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
  const std::vector<int64_t> &shape = attrs.list("shape");
  result = TensorType{grad.dtype, shape};
  COLOSSAL_RETURN_IF_ERROR(r.checkType("shape", result));
  COLOSSAL_RETURN_IF_ERROR(
      checkGatherElementsIndices(r, attrs, shape, "shape"));
  if (grad.dims != indices.dims)
    return r.fail("grad shape " + shapeString(grad.dims) +
                  " must be indices' shape " + shapeString(indices.dims));
  return Status::ok();
}

Status inferPad(const Rules &r, const Attrs &attrs, TensorType &result) {
  const TensorType &x = r.in(0);
  const std::vector<int64_t> &pads = attrs.list("pads");
  size_t rank = x.rank();
  if (pads.size() != 2 * rank)
    return r.fail("pads needs 2 * rank = " + std::to_string(2 * rank) +
                  " entries, got " + std::to_string(pads.size()));
  int64_t mode = attrs.i("mode");
  if (mode < 0 || mode > 2)
    return r.fail("mode must be 0 (constant), 1 (reflect) or 2 (edge), got " +
                  std::to_string(mode));
  result.dtype = x.dtype;
  result.dims.resize(rank);
  for (size_t d = 0; d < rank; ++d) {
    int64_t begin = pads[d], end = pads[rank + d];
    std::string where = " in dim " + std::to_string(d);
    if (begin < -kMaxPadMagnitude || begin > kMaxPadMagnitude ||
        end < -kMaxPadMagnitude || end > kMaxPadMagnitude)
      return r.fail("pads " + std::to_string(begin) + ", " +
                    std::to_string(end) + " too large" + where);
    int64_t dim = x.dims[d] + begin + end;
    if (dim < 0)
      return r.fail("result dim " + std::to_string(dim) + " is negative" +
                    where);
    result.dims[d] = dim;
    if (dim == 0)
      continue;
    // Reflect mirrors without repeating the edge element, so each side may
    // add at most dim - 1 elements; edge repeats one, so it needs one.
    if (mode == 1 && (begin > x.dims[d] - 1 || end > x.dims[d] - 1))
      return r.fail(
          "reflect pads " + std::to_string(begin) + ", " + std::to_string(end) +
          " exceed dim - 1 = " + std::to_string(x.dims[d] - 1) + where);
    if (mode == 2 && x.dims[d] == 0)
      return r.fail("edge padding of an empty dim" + where);
  }
  return Status::ok();
}

Status inferCrossEntropy(const Rules &r, TensorType &result) {
  const TensorType &scores = r.in(0), &labels = r.in(1);
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
  COLOSSAL_RETURN_IF_ERROR(r.requireIndices(1));
  if (scores.rank() < 2)
    return r.fail("scores need rank >= 2 ([N, C, d...]), got " +
                  scores.toString());
  std::vector<int64_t> labelDims = scores.dims;
  labelDims.erase(labelDims.begin() + 1);
  if (labels.dims != labelDims)
    return r.fail("labels shape " + shapeString(labels.dims) +
                  " must be scores shape without dim 1, " +
                  shapeString(labelDims));
  int64_t reduction = r.attr("reduction");
  if (reduction < 0 || reduction > 2)
    return r.fail("reduction must be 0 (none), 1 (sum) or 2 (mean), got " +
                  std::to_string(reduction));
  // The loss in f32 for 16-bit scores (the kernels compute it in f32 or
  // f64 from the exactly widened scores, as a cast up first would), in the
  // scores' dtype otherwise.
  result.dtype = scores.dtype == DType::kBF16 || scores.dtype == DType::kF16
                     ? DType::kF32
                     : scores.dtype;
  if (reduction == 0)
    result.dims = labelDims;
  else
    result.dims.clear();
  return Status::ok();
}

/// softmax_cross_entropy_grad (scores, labels, dloss): dloss has the
/// forward's result shape; the result is scores' type.
Status inferCrossEntropyGrad(const Rules &r, TensorType &result) {
  TensorType loss;
  COLOSSAL_RETURN_IF_ERROR(inferCrossEntropy(r, loss));
  const TensorType &dloss = r.in(2);
  COLOSSAL_RETURN_IF_ERROR(r.requireFloat(2));
  if (dloss.dims != loss.dims)
    return r.fail("dloss shape " + shapeString(dloss.dims) + " must be " +
                  shapeString(loss.dims) + " (the loss's shape for reduction " +
                  std::to_string(r.attr("reduction")) + ")");
  result = r.in(0);
  return Status::ok();
}

/// The operands shared by adamw and sgd: param (operand 0, f32), grad
/// (operand 1, any float dtype), the f32 states in `states`, all of
/// param's shape; then lr (f32 []) and step (i64 []) as the last two.
Status checkOptimizerOperands(const Rules &r,
                              const std::vector<const char *> &names) {
  const TensorType &param = r.in(0);
  size_t lrIndex = names.size() - 2, stepIndex = names.size() - 1;
  for (size_t k = 0; k < names.size(); ++k) {
    const TensorType &type = r.in(k);
    bool dtypeOk = k == 1           ? isFloatDType(type.dtype)
                   : k == stepIndex ? type.dtype == DType::kI64
                                    : type.dtype == DType::kF32;
    if (!dtypeOk)
      return r.fail(std::string(names[k]) + " must be " +
                    (k == 1           ? "float"
                     : k == stepIndex ? "i64"
                                      : "f32") +
                    ", got " + type.toString());
    bool scalar = k == lrIndex || k == stepIndex;
    if (scalar && !type.dims.empty())
      return r.fail(std::string(names[k]) + " must be a scalar [], got " +
                    type.toString());
    if (!scalar && type.dims != param.dims)
      return r.fail(std::string(names[k]) + " shape " + shapeString(type.dims) +
                    " must be param's shape " + shapeString(param.dims));
  }
  return Status::ok();
}

Status inferAdamW(const Rules &r, std::vector<TensorType> &results) {
  COLOSSAL_RETURN_IF_ERROR(
      checkOptimizerOperands(r, {"param", "grad", "m", "v", "lr", "step"}));
  // PyTorch's constructor checks: 0 <= beta < 1, eps >= 0, wd >= 0. beta < 1
  // keeps both bias corrections 1 - beta^t positive.
  COLOSSAL_RETURN_IF_ERROR(r.finiteInRange("beta1", 0.0, 1.0));
  COLOSSAL_RETURN_IF_ERROR(r.finiteInRange("beta2", 0.0, 1.0));
  COLOSSAL_RETURN_IF_ERROR(r.finiteAtLeast("eps", 0.0));
  COLOSSAL_RETURN_IF_ERROR(r.finiteAtLeast("weight_decay", 0.0));
  if (r.numInputs() == 7) {
    const TensorType &divisor = r.in(6);
    if (divisor.dtype != DType::kF32 || !divisor.dims.empty())
      return r.fail("divisor must be an f32 scalar [], got " +
                    divisor.toString());
  }
  results.assign(3, r.in(0));
  return Status::ok();
}

/// adamw_norm: adamw's operands and a divisor (f32 []); adamw's results
/// and the f32 [] sum of squares.
Status inferAdamWNorm(const Rules &r, std::vector<TensorType> &results) {
  COLOSSAL_RETURN_IF_ERROR(inferAdamW(r, results)); // the divisor included
  results.push_back(TensorType{DType::kF32, {}});
  return Status::ok();
}

Status inferSgd(const Rules &r, const Attrs &attrs,
                std::vector<TensorType> &results) {
  COLOSSAL_RETURN_IF_ERROR(
      checkOptimizerOperands(r, {"param", "grad", "buf", "lr", "step"}));
  COLOSSAL_RETURN_IF_ERROR(r.finiteAtLeast("momentum", 0.0));
  COLOSSAL_RETURN_IF_ERROR(
      r.finiteAtLeast("dampening", -std::numeric_limits<double>::max()));
  COLOSSAL_RETURN_IF_ERROR(r.finiteAtLeast("weight_decay", 0.0));
  COLOSSAL_RETURN_IF_ERROR(r.flag("nesterov"));
  if (attrs.i("nesterov") &&
      !(attrs.f("momentum") > 0.0 && attrs.f("dampening") == 0.0))
    return r.fail("nesterov needs momentum > 0 and dampening 0, got "
                  "momentum " +
                  doubleString(attrs.f("momentum")) + " and dampening " +
                  doubleString(attrs.f("dampening")));
  results.assign(2, r.in(0));
  return Status::ok();
}

Status inferResult(const Rules &r, const Attrs &attrs, TensorType &result) {
  switch (attrs.kind()) {
  case OpKind::Neg:
  case OpKind::Abs:
  case OpKind::Relu:
    COLOSSAL_RETURN_IF_ERROR(r.requireNumeric(0));
    result = r.in(0);
    return Status::ok();
  case OpKind::Gelu:
    COLOSSAL_RETURN_IF_ERROR(r.flag("approximate"));
    [[fallthrough]];
  case OpKind::Exp:
  case OpKind::Log:
  case OpKind::Sqrt:
  case OpKind::Rsqrt:
  case OpKind::Reciprocal:
  case OpKind::Tanh:
  case OpKind::Sigmoid:
  case OpKind::Erf:
  case OpKind::Sin:
  case OpKind::Cos:
    COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
    result = r.in(0);
    return Status::ok();
  case OpKind::Not:
    COLOSSAL_RETURN_IF_ERROR(r.requireDType(0, DType::kBool));
    result = r.in(0);
    return Status::ok();
  case OpKind::Identity:
    result = r.in(0);
    return Status::ok();
  case OpKind::Cast: {
    DType to = attrs.dtype("to");
    if (!isValidDType(static_cast<uint32_t>(to)))
      return r.fail("to has invalid dtype value " +
                    std::to_string(static_cast<uint32_t>(to)));
    result = TensorType{to, r.in(0).dims};
    return Status::ok();
  }
  case OpKind::Add:
  case OpKind::Sub:
  case OpKind::Mul:
  case OpKind::Div:
  case OpKind::Pow:
  case OpKind::Max:
  case OpKind::Min:
    COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, 1));
    COLOSSAL_RETURN_IF_ERROR(r.requireNumeric(0));
    result.dtype = r.in(0).dtype;
    return r.broadcast(r.in(0).dims, r.in(1).dims, result.dims);
  case OpKind::And:
  case OpKind::Or:
  case OpKind::Xor:
    COLOSSAL_RETURN_IF_ERROR(r.requireDType(0, DType::kBool));
    COLOSSAL_RETURN_IF_ERROR(r.requireDType(1, DType::kBool));
    result.dtype = DType::kBool;
    return r.broadcast(r.in(0).dims, r.in(1).dims, result.dims);
  case OpKind::Equal:
  case OpKind::Less:
  case OpKind::LessEqual:
  case OpKind::Greater:
  case OpKind::GreaterEqual:
    COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, 1));
    result.dtype = DType::kBool;
    return r.broadcast(r.in(0).dims, r.in(1).dims, result.dims);
  case OpKind::Where: {
    COLOSSAL_RETURN_IF_ERROR(r.requireDType(0, DType::kBool));
    COLOSSAL_RETURN_IF_ERROR(r.sameDType(1, 2));
    std::vector<int64_t> partial;
    COLOSSAL_RETURN_IF_ERROR(r.broadcast(r.in(0).dims, r.in(1).dims, partial));
    result.dtype = r.in(1).dtype;
    return r.broadcast(partial, r.in(2).dims, result.dims);
  }
  case OpKind::MatMul:
    return inferMatMul(r, result);
  case OpKind::ReduceSum:
  case OpKind::ReduceMean:
  case OpKind::ReduceMax:
  case OpKind::ReduceMin:
    return inferReduce(r, result);
  case OpKind::ReduceSumSquare: // sum of x * x: floats only
    COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
    return inferReduce(r, result);
  case OpKind::Softmax:
  case OpKind::LogSoftmax:
    COLOSSAL_RETURN_IF_ERROR(r.requireFloat(0));
    COLOSSAL_RETURN_IF_ERROR(
        r.axisInRange("axis", attrs.i("axis"), r.in(0).rank()));
    result = r.in(0);
    return Status::ok();
  case OpKind::LayerNorm:
    return inferLayerNorm(r, attrs, result);
  case OpKind::Gather: {
    const TensorType &data = r.in(0), &indices = r.in(1);
    COLOSSAL_RETURN_IF_ERROR(r.requireIndices(1));
    int64_t axis = attrs.i("axis");
    COLOSSAL_RETURN_IF_ERROR(r.axisInRange("axis", axis, data.rank()));
    result.dtype = data.dtype;
    result.dims.assign(data.dims.begin(), data.dims.begin() + axis);
    result.dims.insert(result.dims.end(), indices.dims.begin(),
                       indices.dims.end());
    result.dims.insert(result.dims.end(), data.dims.begin() + axis + 1,
                       data.dims.end());
    return Status::ok();
  }
  case OpKind::GatherND:
    return inferGatherND(r, attrs, result);
  case OpKind::CumSum:
    COLOSSAL_RETURN_IF_ERROR(r.requireNumeric(0));
    COLOSSAL_RETURN_IF_ERROR(
        r.axisInRange("axis", attrs.i("axis"), r.in(0).rank()));
    COLOSSAL_RETURN_IF_ERROR(r.flag("exclusive"));
    COLOSSAL_RETURN_IF_ERROR(r.flag("reverse"));
    result = r.in(0);
    return Status::ok();
  case OpKind::GatherElements:
    return inferGatherElements(r, attrs, result);
  case OpKind::GatherElementsGrad:
    return inferGatherElementsGrad(r, attrs, result);
  case OpKind::Trilu:
    // Any dtype (zero is all-zero bytes in each); every k is meaningful.
    if (r.in(0).rank() < 2)
      return r.fail("x needs rank >= 2, got " + r.in(0).toString());
    COLOSSAL_RETURN_IF_ERROR(r.flag("upper"));
    result = r.in(0);
    return Status::ok();
  case OpKind::Reshape: {
    result = TensorType{r.in(0).dtype, attrs.list("shape")};
    COLOSSAL_RETURN_IF_ERROR(r.checkType("shape", result));
    if (result.numElements() != r.in(0).numElements())
      return r.fail("cannot reshape " + r.in(0).toString() + " (" +
                    std::to_string(r.in(0).numElements()) + " elements) to " +
                    shapeString(result.dims) + " (" +
                    std::to_string(result.numElements()) + " elements)");
    return Status::ok();
  }
  case OpKind::Expand: {
    const TensorType &x = r.in(0);
    result = TensorType{x.dtype, attrs.list("shape")};
    COLOSSAL_RETURN_IF_ERROR(r.checkType("shape", result));
    bool ok = result.rank() >= x.rank();
    for (size_t d = 0; ok && d < x.rank(); ++d) {
      int64_t from = x.dims[x.rank() - 1 - d];
      int64_t to = result.dims[result.rank() - 1 - d];
      ok = from == to || from == 1;
    }
    if (!ok)
      return r.fail("cannot expand " + shapeString(x.dims) + " to " +
                    shapeString(result.dims));
    return Status::ok();
  }
  case OpKind::Transpose: {
    const TensorType &x = r.in(0);
    const std::vector<int64_t> &perm = attrs.list("perm");
    std::vector<bool> seen(x.rank(), false);
    bool ok = perm.size() == x.rank();
    for (size_t d = 0; ok && d < perm.size(); ++d) {
      ok = perm[d] >= 0 && perm[d] < static_cast<int64_t>(x.rank()) &&
           !seen[perm[d]];
      if (ok)
        seen[perm[d]] = true;
    }
    if (!ok)
      return r.fail("perm " + shapeString(perm) +
                    " is not a permutation of [0, " + std::to_string(x.rank()) +
                    ")");
    result.dtype = x.dtype;
    result.dims.clear();
    for (int64_t p : perm)
      result.dims.push_back(x.dims[p]);
    return Status::ok();
  }
  case OpKind::Slice:
    return inferSlice(r, result);
  case OpKind::Concat: {
    const TensorType &first = r.in(0);
    int64_t axis = attrs.i("axis");
    COLOSSAL_RETURN_IF_ERROR(r.axisInRange("axis", axis, first.rank()));
    result = first;
    for (size_t k = 1; k < r.numInputs(); ++k) {
      const TensorType &next = r.in(k);
      COLOSSAL_RETURN_IF_ERROR(r.sameDType(0, k));
      if (next.rank() != first.rank())
        return r.fail("operand ranks differ, " + first.toString() + " vs " +
                      next.toString());
      for (size_t d = 0; d < first.rank(); ++d)
        if (static_cast<int64_t>(d) != axis && next.dims[d] != first.dims[d])
          return r.fail("operand " + std::to_string(k) + " dim " +
                        std::to_string(d) + " differs, " +
                        std::to_string(first.dims[d]) + " vs " +
                        std::to_string(next.dims[d]));
      // Inputs were size-checked, so each addend is below 2^62: test the
      // running sum before it could overflow.
      if (result.dims[axis] >
          std::numeric_limits<int64_t>::max() - next.dims[axis])
        return r.fail("concatenated dim is too large");
      result.dims[axis] += next.dims[axis];
    }
    return Status::ok();
  }
  case OpKind::Pad:
    return inferPad(r, attrs, result);
  case OpKind::Fill: {
    DType to = attrs.dtype("to");
    if (!isValidDType(static_cast<uint32_t>(to)))
      return r.fail("to has invalid dtype value " +
                    std::to_string(static_cast<uint32_t>(to)));
    result = TensorType{to, attrs.list("shape")};
    return Status::ok();
  }
  case OpKind::SoftmaxCrossEntropy:
    return inferCrossEntropy(r, result);
  case OpKind::GatherGrad:
    return inferGatherGrad(r, attrs, result);
  case OpKind::SliceGrad:
    return inferSliceGrad(r, result);
  case OpKind::SoftmaxCrossEntropyGrad:
    return inferCrossEntropyGrad(r, result);
  case OpKind::FusedElementwise: { // FusedProgram.cpp
    std::vector<TensorType> inputs;
    for (size_t k = 0; k < r.numInputs(); ++k)
      inputs.push_back(r.in(k));
    return inferFusedElementwise(attrs, inputs, result);
  }
  case OpKind::EventRecord: // no results: inferResults
  case OpKind::EventWait:
  case OpKind::LayerNormGrad: // several results: inferResults
  case OpKind::AdamW:
  case OpKind::AdamWNorm:
  case OpKind::Sgd:
  case OpKind::Attention:
  case OpKind::AttentionGrad:
    break;
  }
  return r.fail("has no shape rule");
}

/// Every result type of the op, in order.
Status inferResults(const Rules &r, const Attrs &attrs,
                    std::vector<TensorType> &results) {
  switch (attrs.kind()) {
  case OpKind::LayerNormGrad:
    return inferLayerNormGrad(r, attrs, results);
  case OpKind::AdamW:
    return inferAdamW(r, results);
  case OpKind::AdamWNorm:
    return inferAdamWNorm(r, results);
  case OpKind::Sgd:
    return inferSgd(r, attrs, results);
  case OpKind::Attention:
    return inferAttention(r, results);
  case OpKind::AttentionGrad:
    return inferAttentionGrad(r, results);
  case OpKind::EventRecord:
  case OpKind::EventWait:
    // No operands (the count was checked), no results. The event's upper
    // bound is the plan's numEvents: validatePlan checks it.
    results.clear();
    if (attrs.i("event") < 0)
      return r.fail("event " + std::to_string(attrs.i("event")) +
                    " is negative");
    return Status::ok();
  default:
    results.resize(1);
    return inferResult(r, attrs, results[0]);
  }
}

} // namespace

Status broadcastShapes(const std::vector<int64_t> &a,
                       const std::vector<int64_t> &b,
                       std::vector<int64_t> &out) {
  size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> result(rank);
  for (size_t d = 0; d < rank; ++d) {
    // Align from the right; a missing leading dim acts as 1.
    int64_t da = d < rank - a.size() ? 1 : a[d - (rank - a.size())];
    int64_t db = d < rank - b.size() ? 1 : b[d - (rank - b.size())];
    if (da == db || db == 1)
      result[d] = da;
    else if (da == 1)
      result[d] = db;
    else
      return COLOSSAL_ERROR(kInvalidArgument, "cannot broadcast " +
                                                  shapeString(a) + " with " +
                                                  shapeString(b));
  }
  out = std::move(result);
  return Status::ok();
}

Status inferOutputTypes(const Attrs &attrs,
                        const std::vector<TensorType> &inputs,
                        std::vector<TensorType> &outputs) {
  outputs.clear();
  const OpInfo *info = lookupOp(static_cast<uint32_t>(attrs.kind()));
  if (!info)
    return COLOSSAL_ERROR(
        kInvalidArgument,
        "unknown op kind " +
            std::to_string(static_cast<uint32_t>(attrs.kind())));
  Rules rules(*info, attrs, inputs);
  int64_t count = static_cast<int64_t>(inputs.size());
  if (count < info->minInputs ||
      (info->maxInputs >= 0 && count > info->maxInputs)) {
    std::string expected = info->maxInputs < 0
                               ? "at least " + std::to_string(info->minInputs)
                           : info->minInputs == info->maxInputs
                               ? std::to_string(info->minInputs)
                               : std::to_string(info->minInputs) + " to " +
                                     std::to_string(info->maxInputs);
    return rules.fail("expects " + expected + " operands, got " +
                      std::to_string(count));
  }
  for (size_t k = 0; k < inputs.size(); ++k)
    COLOSSAL_RETURN_IF_ERROR(
        rules.checkType("operand " + std::to_string(k), inputs[k]));
  std::vector<TensorType> results;
  COLOSSAL_RETURN_IF_ERROR(inferResults(rules, attrs, results));
  assert(results.size() == static_cast<size_t>(info->numOutputs));
  for (size_t k = 0; k < results.size(); ++k)
    COLOSSAL_RETURN_IF_ERROR(rules.checkType(
        results.size() == 1 ? "result" : "result " + std::to_string(k),
        results[k]));
  outputs = std::move(results);
  return Status::ok();
}

bool isFloatUnaryOp(OpKind kind) {
  switch (kind) {
  case OpKind::Neg:
  case OpKind::Abs:
  case OpKind::Exp:
  case OpKind::Log:
  case OpKind::Sqrt:
  case OpKind::Rsqrt:
  case OpKind::Reciprocal:
  case OpKind::Tanh:
  case OpKind::Sigmoid:
  case OpKind::Relu:
  case OpKind::Erf:
  case OpKind::Sin:
  case OpKind::Cos:
  case OpKind::Gelu:
    return true;
  default:
    return false;
  }
}

} // namespace colossal::runtime
