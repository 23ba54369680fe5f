//===- OnnxImporter.cpp - ONNX ModelProto -> colossal graph dialect -------===//
//
// One pass over the nodes in graph order. Every ONNX value becomes an Entry:
// its static type, and either a known constant (folded with the runtime's
// CPU kernels), a materialised MLIR value, or a "poison" reason when an
// earlier node could not be imported (so that one run lists every problem
// without cascading errors). Constants are materialised as IR only when an
// op that stays in the graph uses them, so shape arithmetic never reaches
// the IR.
//
//===----------------------------------------------------------------------===//

#include "colossal/Import/OnnxImporter.h"
#include "colossal/Dialect/Graph/GraphDialect.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/runtime/Kernels.h"
#include "colossal/runtime/OpTable.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"

#include <onnx/onnx_pb.h>

#include <google/protobuf/unknown_field_set.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace mlir::colossal {
/// Owns the parsed protobuf; opaque to users of the header.
class OnnxModel {
public:
  onnx::ModelProto proto;
  std::string modelDir;
  std::map<std::string, const onnx::TensorProto *> initializers;
};
} // namespace mlir::colossal

//===----------------------------------------------------------------------===//
// TensorProto helpers
//===----------------------------------------------------------------------===//

static std::optional<rt::DType> dtypeFromOnnx(int32_t t) {
  switch (t) {
  case onnx::TensorProto_DataType_FLOAT:
    return rt::DType::kF32;
  case onnx::TensorProto_DataType_FLOAT16:
    return rt::DType::kF16;
  case onnx::TensorProto_DataType_BFLOAT16:
    return rt::DType::kBF16;
  case onnx::TensorProto_DataType_DOUBLE:
    return rt::DType::kF64;
  case onnx::TensorProto_DataType_INT64:
    return rt::DType::kI64;
  case onnx::TensorProto_DataType_INT32:
    return rt::DType::kI32;
  case onnx::TensorProto_DataType_INT8:
    return rt::DType::kI8;
  case onnx::TensorProto_DataType_UINT8:
    return rt::DType::kU8;
  case onnx::TensorProto_DataType_BOOL:
    return rt::DType::kBool;
  default:
    return std::nullopt;
  }
}

static std::string onnxDTypeName(int32_t t) {
  if (onnx::TensorProto_DataType_IsValid(t))
    return onnx::TensorProto_DataType_Name(
        static_cast<onnx::TensorProto_DataType>(t));
  return "data type " + std::to_string(t);
}

static rt::Status tensorProtoType(const onnx::TensorProto &t,
                                  rt::TensorType &out) {
  auto dtype = dtypeFromOnnx(t.data_type());
  if (!dtype)
    return COLOSSAL_ERROR(kUnsupported, "tensor '" + t.name() + "' has " +
                                            onnxDTypeName(t.data_type()) +
                                            ", which colossal does not support");
  if (t.dims_size() > static_cast<int>(rt::kMaxRank))
    return COLOSSAL_ERROR(kUnsupported, "tensor '" + t.name() + "' has rank " +
                                            std::to_string(t.dims_size()) +
                                            " > " +
                                            std::to_string(rt::kMaxRank));
  out.dtype = *dtype;
  out.dims.clear();
  for (int64_t d : t.dims()) {
    if (d < 0 || d > (int64_t(1) << 40))
      return COLOSSAL_ERROR(kInvalidArgument, "tensor '" + t.name() +
                                                  "' has an invalid dim " +
                                                  std::to_string(d));
    out.dims.push_back(d);
  }
  return rt::Status::ok();
}

static bool isExternal(const onnx::TensorProto &t) {
  return t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL;
}

/// Reads a TensorProto's values (inline or external) into `out`.
static rt::Status readTensorProto(const onnx::TensorProto &t,
                                  const std::string &modelDir,
                                  rt::HostTensor &out) {
  rt::TensorType type;
  COLOSSAL_RETURN_IF_ERROR(tensorProtoType(t, type));
  out = rt::HostTensor(type);
  const int64_t n = type.numElements();
  const size_t bytes = out.bytes.size();
  const std::string what = "tensor '" + t.name() + "'";

  if (isExternal(t)) {
    std::string location;
    uint64_t offset = 0;
    int64_t length = -1;
    for (const auto &kv : t.external_data()) {
      if (kv.key() == "location")
        location = kv.value();
      else if (kv.key() == "offset")
        offset = std::strtoull(kv.value().c_str(), nullptr, 10);
      else if (kv.key() == "length")
        length = std::strtoll(kv.value().c_str(), nullptr, 10);
    }
    if (location.empty())
      return COLOSSAL_ERROR(kInvalidArgument,
                            what + " is external but names no location");
    llvm::SmallString<256> path(modelDir);
    llvm::sys::path::append(path, location);
    std::ifstream in(path.str().str(), std::ios::binary);
    if (!in)
      return COLOSSAL_ERROR(kNotFound, what + ": external data file '" +
                                           path.str().str() + "' not found");
    if (length >= 0 && static_cast<uint64_t>(length) != bytes)
      return COLOSSAL_ERROR(kInvalidArgument,
                            what + ": external length " +
                                std::to_string(length) + " != " +
                                std::to_string(bytes) + " bytes");
    in.seekg(0, std::ios::end);
    uint64_t fileSize = static_cast<uint64_t>(in.tellg());
    if (offset > fileSize || fileSize - offset < bytes)
      return COLOSSAL_ERROR(kInvalidArgument,
                            what + ": external data [" +
                                std::to_string(offset) + ", +" +
                                std::to_string(bytes) + ") exceeds '" +
                                path.str().str() + "' of " +
                                std::to_string(fileSize) + " bytes");
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(reinterpret_cast<char *>(out.bytes.data()),
            static_cast<std::streamsize>(bytes));
    if (!in)
      return COLOSSAL_ERROR(kIoError, what + ": reading '" + path.str().str() +
                                          "' failed");
    return rt::Status::ok();
  }

  if (t.has_raw_data()) {
    if (t.raw_data().size() != bytes)
      return COLOSSAL_ERROR(kInvalidArgument,
                            what + ": raw_data has " +
                                std::to_string(t.raw_data().size()) +
                                " bytes, its type " + type.toString() +
                                " needs " + std::to_string(bytes));
    if (bytes)
      std::memcpy(out.bytes.data(), t.raw_data().data(), bytes);
    return rt::Status::ok();
  }

  auto countError = [&](int64_t got) {
    return COLOSSAL_ERROR(kInvalidArgument,
                          what + ": holds " + std::to_string(got) +
                              " values, its type " + type.toString() +
                              " needs " + std::to_string(n));
  };
  if (bytes == 0) // an empty tensor: nothing to copy (and memcpy from a
    return rt::Status::ok(); // possibly null source would be undefined)
  rt::TensorRef ref = out.ref();
  switch (t.data_type()) {
  case onnx::TensorProto_DataType_FLOAT:
    if (t.float_data_size() != n)
      return countError(t.float_data_size());
    std::memcpy(out.bytes.data(), t.float_data().data(), bytes);
    break;
  case onnx::TensorProto_DataType_DOUBLE:
    if (t.double_data_size() != n)
      return countError(t.double_data_size());
    std::memcpy(out.bytes.data(), t.double_data().data(), bytes);
    break;
  case onnx::TensorProto_DataType_INT64:
    if (t.int64_data_size() != n)
      return countError(t.int64_data_size());
    std::memcpy(out.bytes.data(), t.int64_data().data(), bytes);
    break;
  case onnx::TensorProto_DataType_FLOAT16:
  case onnx::TensorProto_DataType_BFLOAT16: {
    // int32_data holds the 16-bit patterns.
    if (t.int32_data_size() != n)
      return countError(t.int32_data_size());
    auto *dst = reinterpret_cast<uint16_t *>(out.bytes.data());
    for (int64_t i = 0; i < n; ++i)
      dst[i] = static_cast<uint16_t>(t.int32_data(i));
    break;
  }
  default: // INT32, INT8, UINT8, BOOL: values in int32_data
    if (t.int32_data_size() != n)
      return countError(t.int32_data_size());
    for (int64_t i = 0; i < n; ++i)
      rt::storeFromInt64(ref, i, t.int32_data(i));
    break;
  }
  return rt::Status::ok();
}

//===----------------------------------------------------------------------===//
// The importer
//===----------------------------------------------------------------------===//

namespace {

struct Entry {
  rt::TensorType type;
  Value value;                            ///< materialised MLIR value
  std::optional<rt::HostTensor> constant; ///< known value
  std::string weightName;                 ///< non-empty: an initializer
  bool poisoned = false; ///< unavailable: an earlier node failed
  /// An ONNX sequence (SplitToSequence, SequenceConstruct): its tensors.
  /// Sequences exist only at import time; every use must resolve them.
  std::optional<std::vector<Entry>> sequence;
};

struct NodeCtx {
  const onnx::NodeProto &proto;
  Location loc;
  std::string label; ///< "node 'name' (Op)"
};

class Importer {
public:
  Importer(MLIRContext *ctx, const ImportOptions &options, OnnxModel &model,
           ImportResult &result)
      : ctx(ctx), b(ctx), options(options), model(model), result(result) {}

  LogicalResult run();

private:
  // ---- diagnostics ----
  LogicalResult error(const NodeCtx &n, const Twine &msg) {
    emitError(n.loc) << n.label << ": " << msg;
    hadError = true;
    return failure();
  }

  // ---- values ----
  Entry *input(const NodeCtx &n, int i) {
    if (i >= n.proto.input_size() || n.proto.input(i).empty())
      return nullptr;
    auto it = values.find(n.proto.input(i));
    return it == values.end() ? nullptr : &it->second;
  }
  bool hasInput(const NodeCtx &n, int i) {
    return i < n.proto.input_size() && !n.proto.input(i).empty();
  }
  FailureOr<Entry *> requireInput(const NodeCtx &n, int i) {
    if (Entry *e = input(n, i))
      return e;
    (void)error(n, "requires input #" + Twine(i));
    return failure();
  }
  FailureOr<const rt::HostTensor *> constInput(const NodeCtx &n, int i,
                                               StringRef what) {
    auto e = requireInput(n, i);
    if (failed(e))
      return failure();
    if (!(*e)->constant) {
      (void)error(n, Twine(what) + " (input #" + Twine(i) + " '" +
                   n.proto.input(i) +
                   "') must be a constant known at compile time");
      return failure();
    }
    return &*(*e)->constant;
  }
  FailureOr<std::vector<int64_t>> constInts(const NodeCtx &n, int i,
                                            StringRef what) {
    auto t = constInput(n, i, what);
    if (failed(t))
      return failure();
    const rt::HostTensor &h = **t;
    if (h.type.dtype != rt::DType::kI64 && h.type.dtype != rt::DType::kI32) {
      (void)error(n, Twine(what) + " must be int64 or int32, got " +
                   rt::dtypeName(h.type.dtype));
      return failure();
    }
    std::vector<int64_t> out;
    for (int64_t k = 0; k < h.type.numElements(); ++k)
      out.push_back(rt::loadAsInt64(h.ref(), k));
    return out;
  }
  Value materialize(Entry &e, Location loc);
  void define(const NodeCtx &n, int i, Entry e) {
    if (i < n.proto.output_size() && !n.proto.output(i).empty())
      values[n.proto.output(i)] = std::move(e);
  }
  void poisonOutputs(const NodeCtx &n) {
    for (const std::string &out : n.proto.output()) {
      if (out.empty())
        continue;
      Entry e;
      e.poisoned = true;
      values[out] = std::move(e);
    }
  }

  // ---- attributes ----
  const onnx::AttributeProto *attr(const NodeCtx &n, StringRef name) {
    for (const auto &a : n.proto.attribute())
      if (a.name() == name)
        return &a;
    return nullptr;
  }
  int64_t attrInt(const NodeCtx &n, StringRef name, int64_t dflt) {
    const auto *a = attr(n, name);
    return a ? a->i() : dflt;
  }
  float attrFloat(const NodeCtx &n, StringRef name, float dflt) {
    const auto *a = attr(n, name);
    return a ? a->f() : dflt;
  }
  std::string attrString(const NodeCtx &n, StringRef name, StringRef dflt) {
    const auto *a = attr(n, name);
    return a ? a->s() : dflt.str();
  }
  std::optional<std::vector<int64_t>> attrInts(const NodeCtx &n,
                                               StringRef name) {
    const auto *a = attr(n, name);
    if (!a)
      return std::nullopt;
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  }
  FailureOr<int64_t> normAxis(const NodeCtx &n, int64_t axis, int64_t rank,
                              StringRef what = "axis") {
    if (axis < -rank || axis >= rank) {
      (void)error(n, Twine(what) + " " + Twine(axis) + " is out of range for rank " +
                   Twine(rank));
      return failure();
    }
    return axis < 0 ? axis + rank : axis;
  }

  // ---- building ----
  /// Infers the result type; folds when every input is constant and the
  /// result is small; otherwise creates the op.
  FailureOr<Entry> emit(const NodeCtx &n, const rt::Attrs &attrs,
                        ArrayRef<Entry *> inputs);
  FailureOr<Entry> emitUnary(const NodeCtx &n, rt::OpKind kind, Entry *x) {
    return emit(n, rt::Attrs(kind), {x});
  }
  FailureOr<Entry> emitReshape(const NodeCtx &n, Entry *x,
                               std::vector<int64_t> shape) {
    if (x->type.dims == shape)
      return *x;
    rt::Attrs a(rt::OpKind::Reshape);
    a.setList("shape", std::move(shape));
    return emit(n, a, {x});
  }
  FailureOr<Entry> emitCast(const NodeCtx &n, Entry *x, rt::DType to) {
    if (x->type.dtype == to)
      return *x;
    rt::Attrs a(rt::OpKind::Cast);
    a.setDType("to", to);
    return emit(n, a, {x});
  }
  Entry scalarConstant(rt::DType dtype, double value) {
    Entry e;
    e.type = rt::TensorType{dtype, {}};
    rt::HostTensor t(e.type);
    rt::storeFromDouble(t.ref(), 0, value);
    e.constant = std::move(t);
    return e;
  }

  // ---- node handlers ----
  LogicalResult importNode(const NodeCtx &n);
  LogicalResult importConstant(const NodeCtx &n);
  LogicalResult importMatMul(const NodeCtx &n);
  LogicalResult importGemm(const NodeCtx &n);
  LogicalResult importReduce(const NodeCtx &n, rt::OpKind kind);
  LogicalResult importSlice(const NodeCtx &n);
  LogicalResult importSplit(const NodeCtx &n);
  LogicalResult importPad(const NodeCtx &n);
  LogicalResult importReshape(const NodeCtx &n);
  LogicalResult importCrossEntropy(const NodeCtx &n);
  LogicalResult importLayerNorm(const NodeCtx &n);
  LogicalResult importSequenceOp(const NodeCtx &n);

  LogicalResult importInitializers();
  LogicalResult importInputs(func::FuncOp func, SmallVector<Type> &argTypes);

  MLIRContext *ctx;
  OpBuilder b;
  const ImportOptions &options;
  OnnxModel &model;
  ImportResult &result;
  std::map<std::string, Entry> values;
  /// The dynamo exporter's graph signature: initializer name -> PARAMETER,
  /// BUFFER or CONSTANT_TENSOR (from ValueInfo metadata_props).
  std::map<std::string, std::string> signatureKinds;
  std::vector<std::pair<std::string, std::string>> unsupported; // node, op
  bool hadError = false;
  int64_t opset = 0;
};

} // namespace

Value Importer::materialize(Entry &e, Location loc) {
  if (e.value)
    return e.value;
  if (!e.weightName.empty()) {
    StringAttr signature;
  if (auto it = signatureKinds.find(e.weightName); it != signatureKinds.end())
    signature = b.getStringAttr(it->second);
  e.value = graph::WeightOp::create(
                b, NameLoc::get(b.getStringAttr(e.weightName)),
                toRankedTensorType(ctx, e.type), e.weightName,
                /*trainable=*/false, signature, IntegerAttr(), StringAttr())
                .getResult();
    return e.value;
  }
  const rt::HostTensor &t = *e.constant;
  auto type = toRankedTensorType(ctx, t.type);
  const size_t elemBytes = rt::dtypeSizeBytes(t.type.dtype);
  const int64_t n = t.type.numElements();
  bool splat = n > 0;
  for (int64_t i = 1; i < n && splat; ++i)
    splat = std::memcmp(t.bytes.data(), t.bytes.data() + i * elemBytes,
                        elemBytes) == 0;
  DenseElementsAttr attr;
  if (t.type.dtype == rt::DType::kBool) {
    SmallVector<bool> bits;
    for (int64_t i = 0; i < (splat ? 1 : n); ++i)
      bits.push_back(t.bytes[i] != 0);
    attr = splat ? DenseElementsAttr::get(type, bits.front())
                 : DenseElementsAttr::get(type, ArrayRef<bool>(bits));
  } else {
    size_t len = splat ? elemBytes : t.bytes.size();
    attr = DenseElementsAttr::getFromRawBuffer(
        type, ArrayRef<char>(reinterpret_cast<const char *>(t.bytes.data()),
                             len));
  }
  e.value = graph::ConstantOp::create(b, loc, attr.getType(), attr).getResult();
  return e.value;
}

FailureOr<Entry> Importer::emit(const NodeCtx &n, const rt::Attrs &attrs,
                                ArrayRef<Entry *> inputs) {
  std::vector<rt::TensorType> types;
  for (Entry *e : inputs) {
    if (e->sequence) {
      (void)error(n, "a sequence is used where a tensor is expected");
      return failure();
    }
    types.push_back(e->type);
  }
  std::vector<rt::TensorType> outs;
  rt::Status st = rt::inferOutputTypes(attrs, types, outs);
  if (!st.isOk()) {
    (void)error(n, st.message());
    return failure();
  }
  Entry out;
  out.type = outs.front();
  bool allConstant = llvm::all_of(inputs, [](Entry *e) {
    return e->constant.has_value();
  });
  if (allConstant && out.type.numElements() <= options.maxFoldElements) {
    std::vector<rt::HostTensor> in;
    for (Entry *e : inputs)
      in.push_back(*e->constant);
    std::vector<rt::HostTensor> res;
    rt::Status es = rt::evaluateOp(attrs, in, res);
    if (!es.isOk()) {
      (void)error(n, "folding " + Twine(rt::opInfo(attrs.kind()).name.data()) +
                   " failed: " + es.message());
      return failure();
    }
    out.constant = std::move(res.front());
    return out;
  }
  SmallVector<Value> operands;
  for (Entry *e : inputs)
    operands.push_back(materialize(*e, n.loc));
  OperationState state(n.loc,
                       "colossal." + std::string(rt::opInfo(attrs.kind()).name));
  state.addOperands(operands);
  state.addTypes(toRankedTensorType(ctx, out.type));
  state.addAttributes(attrsToMlir(b, attrs));
  out.value = b.create(state)->getResult(0);
  return out;
}

/// ONNX IR 10 added `metadata_props` (field 4, repeated StringStringEntryProto)
/// to ValueInfoProto; libonnx 1.12 keeps it as an unknown field, so it is
/// read through protobuf's unknown-field API.
static std::map<std::string, std::string>
readSignatureKinds(const onnx::GraphProto &graph) {
  constexpr int kMetadataPropsField = 4;
  const std::string key = "pkg.torch.export.graph_signature.InputSpec.kind";
  std::map<std::string, std::string> kinds;
  auto scan = [&](const onnx::ValueInfoProto &vi) {
    const auto &unknown = vi.GetReflection()->GetUnknownFields(vi);
    for (int i = 0; i < unknown.field_count(); ++i) {
      const auto &f = unknown.field(i);
      if (f.number() != kMetadataPropsField ||
          f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED)
        continue;
      onnx::StringStringEntryProto entry;
      if (entry.ParseFromString(f.length_delimited()) && entry.key() == key)
        kinds[vi.name()] = entry.value();
    }
  };
  for (const auto &vi : graph.value_info())
    scan(vi);
  for (const auto &vi : graph.input())
    scan(vi);
  return kinds;
}

LogicalResult Importer::importInitializers() {
  signatureKinds = readSignatureKinds(model.proto.graph());
  for (const onnx::TensorProto &t : model.proto.graph().initializer()) {
    if (t.name().empty()) {
      emitError(UnknownLoc::get(ctx)) << "an initializer has no name";
      hadError = true;
      continue;
    }
    model.initializers[t.name()] = &t;
    Entry e;
    rt::Status st = tensorProtoType(t, e.type);
    if (!st.isOk()) {
      emitError(NameLoc::get(b.getStringAttr(t.name())))
          << "initializer '" << t.name() << "': " << st.message();
      hadError = true;
      e.poisoned = true;
      values[t.name()] = std::move(e);
      continue;
    }
    const int64_t n = e.type.numElements();
    bool isFloat = rt::isFloatDType(e.type.dtype);
    // A dynamo export's buffers and constant tensors (rotary inv_freq, a
    // mask fill value) are not parameters: small ones become constants, so
    // that what they feed folds.
    auto sig = signatureKinds.find(t.name());
    bool notParameter = sig != signatureKinds.end() &&
                        (sig->second == "BUFFER" ||
                         sig->second == "CONSTANT_TENSOR");
    bool asConstant = (isFloat && !notParameter)
                          ? n < options.minWeightElements
                          : n <= options.maxFoldElements;
    if (asConstant) {
      rt::HostTensor value;
      st = readTensorProto(t, model.modelDir, value);
      if (st.isOk()) {
        e.constant = std::move(value);
        values[t.name()] = std::move(e);
        continue;
      }
      if (!isFloat || !isExternal(t)) {
        emitError(NameLoc::get(b.getStringAttr(t.name())))
            << "initializer '" << t.name() << "': " << st.message();
        hadError = true;
        e.poisoned = true;
        values[t.name()] = std::move(e);
        continue;
      }
      // A float scalar whose external data is missing: keep it a weight.
    }
    e.weightName = t.name();
    WeightInfo w;
    w.name = t.name();
    w.type = e.type;
    w.external = isExternal(t);
    if (sig != signatureKinds.end())
      w.signature = sig->second;
    if (w.external) {
      for (const auto &kv : t.external_data()) {
        if (kv.key() == "location") {
          llvm::SmallString<256> path(model.modelDir);
          llvm::sys::path::append(path, kv.value());
          w.externalPath = path.str().str();
        } else if (kv.key() == "offset") {
          w.externalOffset = std::strtoull(kv.value().c_str(), nullptr, 10);
        } else if (kv.key() == "length") {
          w.externalLength = std::strtoll(kv.value().c_str(), nullptr, 10);
        }
      }
    }
    result.weights.push_back(std::move(w));
    values[t.name()] = std::move(e);
  }
  return success();
}

LogicalResult Importer::importInputs(func::FuncOp func,
                                     SmallVector<Type> &argTypes) {
  Block &body = func.getBody().front();
  llvm::StringSet<> seen;
  for (const onnx::ValueInfoProto &vi : model.proto.graph().input()) {
    if (values.count(vi.name())) // an initializer listed as input (IR < 4)
      continue;
    Location loc = NameLoc::get(b.getStringAttr(vi.name()));
    seen.insert(vi.name());
    // Until the input is accepted, nodes that read it are skipped quietly:
    // the problem is reported once, here.
    values[vi.name()].poisoned = true;
    if (!vi.type().has_tensor_type()) {
      emitError(loc) << "graph input '" << vi.name()
                     << "' is not a tensor; only tensor inputs are supported";
      hadError = true;
      continue;
    }
    const auto &tt = vi.type().tensor_type();
    auto dtype = dtypeFromOnnx(tt.elem_type());
    if (!dtype) {
      emitError(loc) << "graph input '" << vi.name() << "' has "
                     << onnxDTypeName(tt.elem_type())
                     << ", which colossal does not support";
      hadError = true;
      continue;
    }
    rt::TensorType type;
    type.dtype = *dtype;
    auto given = options.inputShapes.find(vi.name());
    if (given != options.inputShapes.end()) {
      type.dims = given->second;
      if (tt.has_shape()) {
        const auto &shape = tt.shape();
        bool ok = shape.dim_size() == static_cast<int>(type.dims.size());
        for (int d = 0; ok && d < shape.dim_size(); ++d)
          if (shape.dim(d).has_dim_value() &&
              shape.dim(d).dim_value() != type.dims[d])
            ok = false;
        if (!ok) {
          std::string model_shape;
          for (int d = 0; d < shape.dim_size(); ++d) {
            if (d)
              model_shape += "x";
            model_shape += shape.dim(d).has_dim_value()
                               ? std::to_string(shape.dim(d).dim_value())
                               : (shape.dim(d).dim_param().empty()
                                      ? std::string("?")
                                      : shape.dim(d).dim_param());
          }
          std::string given_shape;
          for (size_t d = 0; d < type.dims.size(); ++d)
            given_shape += (d ? "x" : "") + std::to_string(type.dims[d]);
          emitError(loc) << "--shape " << vi.name() << "=" << given_shape
                         << " does not match the model's shape "
                         << model_shape;
          hadError = true;
          continue;
        }
      }
    } else {
      if (!tt.has_shape()) {
        emitError(loc) << "graph input '" << vi.name()
                       << "' has no shape: give --shape " << vi.name()
                       << "=DxD...";
        hadError = true;
        continue;
      }
      bool ok = true;
      for (int d = 0; d < tt.shape().dim_size(); ++d) {
        const auto &dim = tt.shape().dim(d);
        if (!dim.has_dim_value() || dim.dim_value() < 0) {
          emitError(loc) << "graph input '" << vi.name() << "' dim " << d
                         << (dim.dim_param().empty()
                                 ? std::string("")
                                 : " ('" + dim.dim_param() + "')")
                         << " is dynamic: give --shape " << vi.name()
                         << "=DxD... to fix it at compile time";
          hadError = true;
          ok = false;
          break;
        }
        type.dims.push_back(dim.dim_value());
      }
      if (!ok)
        continue;
    }
    if (type.dims.size() > rt::kMaxRank) {
      emitError(loc) << "graph input '" << vi.name() << "' has rank "
                     << type.dims.size() << " > " << rt::kMaxRank;
      hadError = true;
      continue;
    }
    Type argType = toRankedTensorType(ctx, type);
    argTypes.push_back(argType);
    BlockArgument arg = body.addArgument(argType, loc);
    Entry e;
    e.type = type;
    e.value = arg;
    values[vi.name()] = std::move(e); // replaces the poisoned placeholder
  }
  for (const auto &kv : options.inputShapes)
    if (!seen.contains(kv.first)) {
      emitError(UnknownLoc::get(ctx))
          << "--shape names '" << kv.first << "', which is not a graph input";
      hadError = true;
    }
  return success();
}

LogicalResult Importer::run() {
  const onnx::GraphProto &graph = model.proto.graph();
  for (const auto &op : model.proto.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx")
      opset = op.version();
  if (opset == 0) {
    emitError(UnknownLoc::get(ctx))
        << "the model imports no ai.onnx opset (opset_import is empty)";
    return failure();
  }
  if (opset < 11 || opset > 21) {
    emitError(UnknownLoc::get(ctx))
        << "the model uses ai.onnx opset " << opset
        << "; colossal supports opsets 11 to 21 (tested: 13 to 20)";
    return failure();
  }
  result.opsetVersion = opset;
  result.numNodes = graph.node_size();

  result.module = ModuleOp::create(UnknownLoc::get(ctx));
  b.setInsertionPointToEnd(result.module->getBody());
  auto func = func::FuncOp::create(b, UnknownLoc::get(ctx), "main",
                                   b.getFunctionType({}, {}));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToEnd(body);

  (void)importInitializers();
  SmallVector<Type> argTypes;
  (void)importInputs(func, argTypes);

  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto &node = graph.node(i);
    std::string name =
        node.name().empty() ? node.op_type() + "_" + std::to_string(i)
                            : node.name();
    NodeCtx n{node, NameLoc::get(b.getStringAttr(name)),
              "node '" + name + "' (" + node.op_type() + ")"};
    // Inputs produced by a failed node: skip quietly, the cause was reported.
    bool skip = false;
    for (int k = 0; k < node.input_size(); ++k) {
      if (node.input(k).empty())
        continue;
      auto it = values.find(node.input(k));
      if (it == values.end()) {
        (void)error(n, "input '" + node.input(k) +
                     "' is not a graph input, an initializer or an earlier "
                     "node's output");
        skip = true;
      } else if (it->second.poisoned) {
        skip = true;
      }
    }
    if (skip || failed(importNode(n)))
      poisonOutputs(n);
  }

  if (!unsupported.empty()) {
    std::map<std::string, int> counts;
    for (const auto &u : unsupported)
      counts[u.second]++;
    std::string list;
    for (const auto &[op, count] : counts)
      list += (list.empty() ? "" : ", ") + op + " (" + std::to_string(count) +
              (count == 1 ? " node)" : " nodes)");
    emitError(UnknownLoc::get(ctx))
        << unsupported.size() << " node(s) use ops colossal does not support: "
        << list;
    hadError = true;
  }

  SmallVector<Value> results;
  SmallVector<Type> resultTypes;
  for (const onnx::ValueInfoProto &vi : graph.output()) {
    auto it = values.find(vi.name());
    if (it == values.end()) {
      emitError(NameLoc::get(b.getStringAttr(vi.name())))
          << "graph output '" << vi.name() << "' is never produced";
      hadError = true;
      continue;
    }
    if (it->second.poisoned)
      continue;
    if (it->second.sequence) {
      emitError(NameLoc::get(b.getStringAttr(vi.name())))
          << "graph output '" << vi.name()
          << "' is a sequence; only tensor outputs are supported";
      hadError = true;
      continue;
    }
    Value v = materialize(it->second, NameLoc::get(b.getStringAttr(vi.name())));
    results.push_back(v);
    resultTypes.push_back(v.getType());
  }
  if (graph.output_size() == 0) {
    emitError(UnknownLoc::get(ctx)) << "the graph has no outputs";
    hadError = true;
  }
  func::ReturnOp::create(b, UnknownLoc::get(ctx), results);
  func.setFunctionType(b.getFunctionType(argTypes, resultTypes));
  {
    unsigned argIdx = 0;
    for (const onnx::ValueInfoProto &vi : graph.input()) {
      if (argIdx >= argTypes.size())
        break;
      if (model.initializers.count(vi.name()))
        continue;
      auto it = values.find(vi.name());
      if (it == values.end() || !it->second.value ||
          !isa<BlockArgument>(it->second.value))
        continue;
      func.setArgAttr(argIdx++, "colossal.name", b.getStringAttr(vi.name()));
    }
    unsigned resIdx = 0;
    for (const onnx::ValueInfoProto &vi : graph.output()) {
      auto it = values.find(vi.name());
      if (it == values.end() || it->second.poisoned || it->second.sequence)
        continue;
      func.setResultAttr(resIdx++, "colossal.name", b.getStringAttr(vi.name()));
    }
  }
  return failure(hadError);
}

//===----------------------------------------------------------------------===//
// Node handlers
//===----------------------------------------------------------------------===//

LogicalResult Importer::importConstant(const NodeCtx &n) {
  Entry e;
  if (const auto *a = attr(n, "value")) {
    rt::HostTensor t;
    rt::Status st = readTensorProto(a->t(), model.modelDir, t);
    if (!st.isOk())
      return error(n, st.message());
    e.type = t.type;
    e.constant = std::move(t);
  } else if (const auto *a = attr(n, "value_float")) {
    e = scalarConstant(rt::DType::kF32, a->f());
  } else if (const auto *a = attr(n, "value_int")) {
    e = scalarConstant(rt::DType::kI64, static_cast<double>(a->i()));
    rt::storeFromInt64(e.constant->ref(), 0, a->i());
  } else if (const auto *a = attr(n, "value_floats")) {
    e.type = rt::TensorType{rt::DType::kF32, {a->floats_size()}};
    rt::HostTensor t(e.type);
    for (int i = 0; i < a->floats_size(); ++i)
      t.as<float>()[i] = a->floats(i);
    e.constant = std::move(t);
  } else if (const auto *a = attr(n, "value_ints")) {
    e.type = rt::TensorType{rt::DType::kI64, {a->ints_size()}};
    rt::HostTensor t(e.type);
    for (int i = 0; i < a->ints_size(); ++i)
      t.as<int64_t>()[i] = a->ints(i);
    e.constant = std::move(t);
  } else {
    return error(n, "needs a value, value_float(s) or value_int(s) attribute "
                    "(sparse and string constants are not supported)");
  }
  define(n, 0, std::move(e));
  return success();
}

LogicalResult Importer::importMatMul(const NodeCtx &n) {
  auto a = requireInput(n, 0), bb = requireInput(n, 1);
  if (failed(a) || failed(bb))
    return failure();
  Entry *x = *a, *y = *bb;
  if (x->type.rank() == 0 || y->type.rank() == 0)
    return error(n, "operands must have rank >= 1, got " + x->type.toString() +
                        " and " + y->type.toString());
  // numpy rules for 1-D operands: promote, multiply, drop the added dim.
  Entry xs = *x, ys = *y;
  bool dropM = false, dropN = false;
  if (x->type.rank() == 1) {
    auto r = emitReshape(n, x, {1, x->type.dims[0]});
    if (failed(r))
      return failure();
    xs = *r;
    dropM = true;
  }
  if (y->type.rank() == 1) {
    auto r = emitReshape(n, y, {y->type.dims[0], 1});
    if (failed(r))
      return failure();
    ys = *r;
    dropN = true;
  }
  auto mm = emit(n, rt::Attrs(rt::OpKind::MatMul), {&xs, &ys});
  if (failed(mm))
    return failure();
  Entry out = *mm;
  if (dropM || dropN) {
    std::vector<int64_t> dims = out.type.dims;
    if (dropN)
      dims.erase(dims.end() - 1);
    if (dropM)
      dims.erase(dims.end() - 1 - (dropN ? 0 : 1));
    auto r = emitReshape(n, &out, dims);
    if (failed(r))
      return failure();
    out = *r;
  }
  define(n, 0, std::move(out));
  return success();
}

LogicalResult Importer::importGemm(const NodeCtx &n) {
  auto a = requireInput(n, 0), bb = requireInput(n, 1);
  if (failed(a) || failed(bb))
    return failure();
  if ((*a)->type.rank() != 2 || (*bb)->type.rank() != 2)
    return error(n, "requires 2-D A and B, got " + (*a)->type.toString() +
                        " and " + (*bb)->type.toString());
  rt::Attrs mmAttrs(rt::OpKind::MatMul);
  mmAttrs.setI("transpose_a", attrInt(n, "transA", 0) ? 1 : 0);
  mmAttrs.setI("transpose_b", attrInt(n, "transB", 0) ? 1 : 0);
  auto mm = emit(n, mmAttrs, {*a, *bb});
  if (failed(mm))
    return failure();
  Entry out = *mm;
  float alpha = attrFloat(n, "alpha", 1.0f), beta = attrFloat(n, "beta", 1.0f);
  if (alpha != 1.0f) {
    Entry s = scalarConstant(out.type.dtype, alpha);
    auto r = emit(n, rt::Attrs(rt::OpKind::Mul), {&out, &s});
    if (failed(r))
      return failure();
    out = *r;
  }
  if (Entry *c = input(n, 2)) {
    Entry cs = *c;
    if (beta != 1.0f) {
      Entry s = scalarConstant(c->type.dtype, beta);
      auto r = emit(n, rt::Attrs(rt::OpKind::Mul), {c, &s});
      if (failed(r))
        return failure();
      cs = *r;
    }
    auto r = emit(n, rt::Attrs(rt::OpKind::Add), {&out, &cs});
    if (failed(r))
      return failure();
    out = *r;
  }
  define(n, 0, std::move(out));
  return success();
}

LogicalResult Importer::importReduce(const NodeCtx &n, rt::OpKind kind) {
  auto x = requireInput(n, 0);
  if (failed(x))
    return failure();
  int64_t rank = (*x)->type.rank();
  std::vector<int64_t> axes;
  bool given = false;
  if (hasInput(n, 1)) {
    auto a = constInts(n, 1, "axes");
    if (failed(a))
      return failure();
    axes = *a;
    given = true;
  } else if (auto a = attrInts(n, "axes")) {
    axes = *a;
    given = true;
  }
  if (!given || axes.empty()) {
    if (attrInt(n, "noop_with_empty_axes", 0)) {
      define(n, 0, **x);
      return success();
    }
    axes.clear();
    for (int64_t d = 0; d < rank; ++d)
      axes.push_back(d);
  }
  for (int64_t &a : axes) {
    auto na = normAxis(n, a, rank);
    if (failed(na))
      return failure();
    a = *na;
  }
  llvm::sort(axes);
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    return error(n, "axes repeat a dim");
  rt::Attrs attrs(kind);
  attrs.setList("axes", axes);
  attrs.setI("keepdims", attrInt(n, "keepdims", 1) ? 1 : 0);
  auto r = emit(n, attrs, {*x});
  if (failed(r))
    return failure();
  define(n, 0, *r);
  return success();
}

LogicalResult Importer::importSlice(const NodeCtx &n) {
  auto x = requireInput(n, 0);
  if (failed(x))
    return failure();
  const auto &dims = (*x)->type.dims;
  int64_t rank = dims.size();
  auto starts = constInts(n, 1, "starts");
  auto ends = constInts(n, 2, "ends");
  if (failed(starts) || failed(ends))
    return failure();
  std::vector<int64_t> axes, steps;
  if (hasInput(n, 3)) {
    auto a = constInts(n, 3, "axes");
    if (failed(a))
      return failure();
    axes = *a;
  } else {
    for (size_t i = 0; i < starts->size(); ++i)
      axes.push_back(i);
  }
  if (hasInput(n, 4)) {
    auto s = constInts(n, 4, "steps");
    if (failed(s))
      return failure();
    steps = *s;
  } else {
    steps.assign(starts->size(), 1);
  }
  if (starts->size() != ends->size() || axes.size() != starts->size() ||
      steps.size() != starts->size())
    return error(n, "starts, ends, axes and steps must have one length, got " +
                        Twine(starts->size()) + ", " + Twine(ends->size()) +
                        ", " + Twine(axes.size()) + ", " + Twine(steps.size()));
  std::vector<int64_t> outStarts(rank, 0), outSteps(rank, 1), sizes = dims;
  std::vector<bool> seen(rank, false);
  for (size_t k = 0; k < axes.size(); ++k) {
    auto ax = normAxis(n, axes[k], rank);
    if (failed(ax))
      return failure();
    if (seen[*ax])
      return error(n, "axis " + Twine(*ax) + " is sliced twice");
    seen[*ax] = true;
    int64_t dim = dims[*ax], step = steps[k];
    if (step == 0)
      return error(n, "step 0 on axis " + Twine(*ax));
    // Clamp as the ONNX spec says (values may be INT64_MAX / INT64_MIN).
    auto clampIdx = [&](int64_t v, bool isEnd) -> int64_t {
      if (v < 0)
        v = v < -dim ? (step > 0 || !isEnd ? 0 : -1) : v + dim;
      if (step > 0)
        return std::min(std::max<int64_t>(v, 0), dim);
      return std::min(std::max<int64_t>(v, isEnd ? -1 : 0), dim - 1);
    };
    int64_t start = clampIdx((*starts)[k], false);
    int64_t end = clampIdx((*ends)[k], true);
    if ((*ends)[k] < -dim && step < 0)
      end = -1;
    int64_t size = 0;
    if (step > 0 && end > start)
      size = (end - start + step - 1) / step;
    else if (step < 0 && start > end)
      size = (start - end + (-step) - 1) / (-step);
    sizes[*ax] = size;
    outStarts[*ax] = size > 0 ? start : 0;
    outSteps[*ax] = step;
  }
  rt::Attrs attrs(rt::OpKind::Slice);
  attrs.setList("starts", outStarts);
  attrs.setList("steps", outSteps);
  attrs.setList("sizes", sizes);
  if (sizes == dims &&
      llvm::all_of(outSteps, [](int64_t s) { return s == 1; })) {
    define(n, 0, **x);
    return success();
  }
  auto r = emit(n, attrs, {*x});
  if (failed(r))
    return failure();
  define(n, 0, *r);
  return success();
}

LogicalResult Importer::importSplit(const NodeCtx &n) {
  auto x = requireInput(n, 0);
  if (failed(x))
    return failure();
  const auto &dims = (*x)->type.dims;
  auto axis = normAxis(n, attrInt(n, "axis", 0), dims.size());
  if (failed(axis))
    return failure();
  int64_t numOutputs = n.proto.output_size();
  std::vector<int64_t> split;
  if (hasInput(n, 1)) {
    auto s = constInts(n, 1, "split");
    if (failed(s))
      return failure();
    split = *s;
  } else if (auto s = attrInts(n, "split")) {
    split = *s;
  } else {
    int64_t parts = attrInt(n, "num_outputs", numOutputs);
    if (parts <= 0)
      return error(n, "num_outputs must be positive, got " + Twine(parts));
    int64_t chunk = (dims[*axis] + parts - 1) / parts;
    for (int64_t k = 0, left = dims[*axis]; k < parts; ++k) {
      split.push_back(std::min(chunk, left));
      left -= split.back();
    }
  }
  if (static_cast<int64_t>(split.size()) != numOutputs)
    return error(n, "splits into " + Twine(split.size()) + " parts but has " +
                        Twine(numOutputs) + " outputs");
  int64_t total = 0;
  for (int64_t s : split) {
    if (s < 0)
      return error(n, "negative split size " + Twine(s));
    if (__builtin_add_overflow(total, s, &total))
      return error(n, "split sizes overflow");
  }
  if (total != dims[*axis])
    return error(n, "split sizes sum to " + Twine(total) + ", axis has " +
                        Twine(dims[*axis]));
  int64_t offset = 0;
  for (int64_t k = 0; k < numOutputs; ++k) {
    std::vector<int64_t> starts(dims.size(), 0), steps(dims.size(), 1),
        sizes = dims;
    starts[*axis] = split[k] > 0 ? offset : 0;
    sizes[*axis] = split[k];
    rt::Attrs attrs(rt::OpKind::Slice);
    attrs.setList("starts", starts);
    attrs.setList("steps", steps);
    attrs.setList("sizes", sizes);
    auto r = emit(n, attrs, {*x});
    if (failed(r))
      return failure();
    define(n, k, *r);
    offset += split[k];
  }
  return success();
}

LogicalResult Importer::importPad(const NodeCtx &n) {
  auto x = requireInput(n, 0);
  if (failed(x))
    return failure();
  int64_t rank = (*x)->type.rank();
  std::vector<int64_t> pads;
  if (hasInput(n, 1)) {
    auto p = constInts(n, 1, "pads");
    if (failed(p))
      return failure();
    pads = *p;
  } else if (auto p = attrInts(n, "pads")) {
    pads = *p;
  }
  std::vector<int64_t> axes;
  if (hasInput(n, 3)) {
    auto a = constInts(n, 3, "axes");
    if (failed(a))
      return failure();
    for (int64_t ax : *a) {
      auto na = normAxis(n, ax, rank);
      if (failed(na))
        return failure();
      axes.push_back(*na);
    }
  } else {
    for (int64_t d = 0; d < rank; ++d)
      axes.push_back(d);
  }
  if (pads.size() != 2 * axes.size())
    return error(n, "pads has " + Twine(pads.size()) + " values, expected " +
                        Twine(2 * axes.size()));
  std::vector<int64_t> full(2 * rank, 0);
  for (size_t k = 0; k < axes.size(); ++k) {
    full[axes[k]] = pads[k];
    full[rank + axes[k]] = pads[axes.size() + k];
  }
  double value = 0.0;
  if (hasInput(n, 2)) {
    auto v = constInput(n, 2, "constant_value");
    if (failed(v))
      return failure();
    if ((*v)->type.numElements() != 1)
      return error(n, "constant_value must be a scalar");
    value = rt::loadAsDouble((*v)->ref(), 0);
  } else if (const auto *a = attr(n, "value")) {
    value = a->f();
  }
  std::string mode = attrString(n, "mode", "constant");
  int64_t modeCode;
  if (mode == "constant")
    modeCode = 0;
  else if (mode == "reflect")
    modeCode = 1;
  else if (mode == "edge")
    modeCode = 2;
  else
    return error(n, "pad mode '" + mode +
                        "' is not supported (constant, reflect, edge)");
  rt::Attrs attrs(rt::OpKind::Pad);
  attrs.setList("pads", full);
  attrs.setI("mode", modeCode);
  attrs.setF("value", value);
  auto r = emit(n, attrs, {*x});
  if (failed(r))
    return failure();
  define(n, 0, *r);
  return success();
}

LogicalResult Importer::importReshape(const NodeCtx &n) {
  auto x = requireInput(n, 0);
  if (failed(x))
    return failure();
  auto shape = constInts(n, 1, "shape");
  if (failed(shape))
    return failure();
  const auto &dims = (*x)->type.dims;
  bool allowZero = attrInt(n, "allowzero", 0) != 0;
  std::vector<int64_t> out;
  int inferAt = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape->size(); ++i) {
    int64_t s = (*shape)[i];
    if (s == 0 && !allowZero) {
      if (i >= dims.size())
        return error(n, "shape[" + Twine(i) +
                            "] = 0 copies a dim the input does not have");
      s = dims[i];
    }
    if (s == -1) {
      if (inferAt >= 0)
        return error(n, "shape has more than one -1");
      inferAt = i;
      out.push_back(-1);
      continue;
    }
    if (s < 0)
      return error(n, "shape[" + Twine(i) + "] = " + Twine(s) + " is invalid");
    if (__builtin_mul_overflow(known, s, &known))
      return error(n, "shape " + Twine(i) + " makes the element count overflow");
    out.push_back(s);
  }
  int64_t total = (*x)->type.numElements();
  if (inferAt >= 0) {
    if (known == 0 || total % known != 0)
      return error(n, "cannot infer the -1 dim: " + Twine(total) +
                          " elements into a multiple of " + Twine(known));
    out[inferAt] = total / known;
  }
  auto r = emitReshape(n, *x, out);
  if (failed(r))
    return failure();
  define(n, 0, *r);
  return success();
}

LogicalResult Importer::importCrossEntropy(const NodeCtx &n) {
  auto s = requireInput(n, 0), l = requireInput(n, 1);
  if (failed(s) || failed(l))
    return failure();
  if (hasInput(n, 2))
    return error(n, "class weights (input #2) are not supported");
  std::string reduction = attrString(n, "reduction", "mean");
  int64_t code = reduction == "none" ? 0 : reduction == "sum" ? 1 : reduction == "mean" ? 2 : -1;
  if (code < 0)
    return error(n, "reduction '" + reduction + "' is not one of none, sum, mean");
  rt::Attrs attrs(rt::OpKind::SoftmaxCrossEntropy);
  const auto *ignore = attr(n, "ignore_index");
  attrs.setI("ignore_index",
             ignore ? ignore->i() : std::numeric_limits<int64_t>::min());
  attrs.setI("reduction", code);
  auto r = emit(n, attrs, {*s, *l});
  if (failed(r))
    return failure();
  define(n, 0, *r);
  if (n.proto.output_size() > 1 && !n.proto.output(1).empty()) {
    // log_prob: log_softmax of the scores over the class dim.
    rt::Attrs ls(rt::OpKind::LogSoftmax);
    ls.setI("axis", 1);
    auto lp = emit(n, ls, {*s});
    if (failed(lp))
      return failure();
    define(n, 1, *lp);
  }
  return success();
}

LogicalResult Importer::importLayerNorm(const NodeCtx &n) {
  auto x = requireInput(n, 0), scale = requireInput(n, 1);
  if (failed(x) || failed(scale))
    return failure();
  int64_t rank = (*x)->type.rank();
  auto axis = normAxis(n, attrInt(n, "axis", -1), rank);
  if (failed(axis))
    return failure();
  for (int k = 1; k < n.proto.output_size(); ++k)
    if (!n.proto.output(k).empty())
      return error(n, "the Mean and InvStdDev outputs are not supported");
  rt::Attrs attrs(rt::OpKind::LayerNorm);
  attrs.setI("axis", *axis);
  attrs.setF("epsilon", attrFloat(n, "epsilon", 1e-5f));
  SmallVector<Entry *> ins{*x, *scale};
  if (Entry *bias = input(n, 2))
    ins.push_back(bias);
  auto r = emit(n, attrs, ins);
  if (failed(r))
    return failure();
  define(n, 0, *r);
  return success();
}

/// Sequences are resolved at import time: a sequence value is a list of
/// entries, and SequenceAt/ConcatFromSequence pick from it statically.
LogicalResult Importer::importSequenceOp(const NodeCtx &n) {
  const std::string &op = n.proto.op_type();
  auto sequenceInput = [&](int i) -> FailureOr<std::vector<Entry> *> {
    auto e = requireInput(n, i);
    if (failed(e))
      return failure();
    if (!(*e)->sequence) {
      (void)error(n, "input #" + Twine(i) + " must be a sequence");
      return failure();
    }
    return &*(*e)->sequence;
  };
  if (op == "SequenceConstruct") {
    Entry seq;
    seq.sequence.emplace();
    for (int i = 0; i < n.proto.input_size(); ++i) {
      auto e = requireInput(n, i);
      if (failed(e))
        return failure();
      seq.sequence->push_back(**e);
    }
    define(n, 0, std::move(seq));
    return success();
  }
  if (op == "SplitToSequence") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    const auto &dims = (*x)->type.dims;
    auto axis = normAxis(n, attrInt(n, "axis", 0), dims.size());
    if (failed(axis))
      return failure();
    int64_t dim = dims[*axis];
    std::vector<int64_t> sizes;
    bool squeeze = false;
    if (hasInput(n, 1)) {
      auto split = constInts(n, 1, "split");
      if (failed(split))
        return failure();
      auto t = constInput(n, 1, "split");
      if ((*t)->type.rank() == 0) {
        int64_t chunk = split->front();
        if (chunk <= 0)
          return error(n, "split chunk size must be positive, got " +
                              Twine(chunk));
        for (int64_t left = dim; left > 0; left -= chunk)
          sizes.push_back(std::min(chunk, left));
      } else {
        sizes = *split;
      }
    } else {
      sizes.assign(dim, 1);
      squeeze = attrInt(n, "keepdims", 1) == 0;
    }
    int64_t total = 0;
    for (int64_t sz : sizes) {
      if (sz < 0)
        return error(n, "negative split size " + Twine(sz));
      if (__builtin_add_overflow(total, sz, &total))
        return error(n, "split sizes overflow");
    }
    if (total != dim)
      return error(n, "split sizes sum to " + Twine(total) + ", axis has " +
                          Twine(dim));
    Entry seq;
    seq.sequence.emplace();
    int64_t offset = 0;
    for (int64_t sz : sizes) {
      std::vector<int64_t> starts(dims.size(), 0), steps(dims.size(), 1),
          outSizes = dims;
      starts[*axis] = sz > 0 ? offset : 0;
      outSizes[*axis] = sz;
      rt::Attrs a(rt::OpKind::Slice);
      a.setList("starts", starts);
      a.setList("steps", steps);
      a.setList("sizes", outSizes);
      auto part = emit(n, a, {*x});
      if (failed(part))
        return failure();
      Entry piece = *part;
      if (squeeze) {
        std::vector<int64_t> sq = outSizes;
        sq.erase(sq.begin() + *axis);
        auto r = emitReshape(n, &piece, sq);
        if (failed(r))
          return failure();
        piece = *r;
      }
      seq.sequence->push_back(std::move(piece));
      offset += sz;
    }
    define(n, 0, std::move(seq));
    return success();
  }
  auto seq = sequenceInput(0);
  if (failed(seq))
    return failure();
  int64_t count = (*seq)->size();
  if (op == "SequenceLength") {
    Entry e = scalarConstant(rt::DType::kI64, 0);
    rt::storeFromInt64(e.constant->ref(), 0, count);
    define(n, 0, std::move(e));
    return success();
  }
  if (op == "SequenceAt") {
    auto pos = constInts(n, 1, "position");
    if (failed(pos))
      return failure();
    if (pos->size() != 1)
      return error(n, "position must be a scalar");
    int64_t p = pos->front();
    if (p < -count || p >= count)
      return error(n, "position " + Twine(p) + " is out of range for a "
                                                 "sequence of " +
                          Twine(count));
    define(n, 0, (**seq)[p < 0 ? p + count : p]);
    return success();
  }
  // ConcatFromSequence
  if (count == 0)
    return error(n, "cannot concatenate an empty sequence");
  bool newAxis = attrInt(n, "new_axis", 0) != 0;
  int64_t rank = (**seq)[0].type.rank() + (newAxis ? 1 : 0);
  auto axis = normAxis(n, attrInt(n, "axis", 0), rank);
  if (failed(axis))
    return failure();
  std::vector<Entry> parts = **seq;
  SmallVector<Entry *> ins;
  for (Entry &p : parts) {
    if (newAxis) {
      std::vector<int64_t> dims = p.type.dims;
      dims.insert(dims.begin() + *axis, 1);
      auto r = emitReshape(n, &p, dims);
      if (failed(r))
        return failure();
      p = *r;
    }
    ins.push_back(&p);
  }
  rt::Attrs a(rt::OpKind::Concat);
  a.setI("axis", *axis);
  auto r = emit(n, a, ins);
  if (failed(r))
    return failure();
  define(n, 0, *r);
  return success();
}

LogicalResult Importer::importNode(const NodeCtx &n) {
  const std::string &op = n.proto.op_type();
  if (!n.proto.domain().empty() && n.proto.domain() != "ai.onnx") {
    unsupported.emplace_back(n.label, n.proto.domain() + "::" + op);
    emitError(n.loc) << n.label << ": ops of domain '" << n.proto.domain()
                     << "' are not supported";
    return failure();
  }
  using K = rt::OpKind;
  static const std::map<std::string, K> unary = {
      {"Neg", K::Neg},         {"Abs", K::Abs},     {"Exp", K::Exp},
      {"Log", K::Log},         {"Sqrt", K::Sqrt},   {"Reciprocal", K::Reciprocal},
      {"Tanh", K::Tanh},       {"Sigmoid", K::Sigmoid}, {"Relu", K::Relu},
      {"Erf", K::Erf},         {"Sin", K::Sin},     {"Cos", K::Cos},
      {"Not", K::Not}};
  static const std::map<std::string, K> binary = {
      {"Add", K::Add},         {"Sub", K::Sub},     {"Mul", K::Mul},
      {"Div", K::Div},         {"And", K::And},     {"Or", K::Or},
      {"Xor", K::Xor},         {"Equal", K::Equal}, {"Less", K::Less},
      {"LessOrEqual", K::LessEqual}, {"Greater", K::Greater},
      {"GreaterOrEqual", K::GreaterEqual}};
  static const std::map<std::string, K> variadic = {
      {"Max", K::Max}, {"Min", K::Min}, {"Sum", K::Add}, {"Mean", K::Add}};
  static const std::map<std::string, K> reductions = {
      {"ReduceSum", K::ReduceSum}, {"ReduceMean", K::ReduceMean},
      {"ReduceMax", K::ReduceMax}, {"ReduceMin", K::ReduceMin},
      {"ReduceSumSquare", K::ReduceSumSquare}};

  auto defineResult = [&](FailureOr<Entry> r) -> LogicalResult {
    if (failed(r))
      return failure();
    define(n, 0, *r);
    return success();
  };

  if (auto it = unary.find(op); it != unary.end()) {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    return defineResult(emitUnary(n, it->second, *x));
  }
  if (auto it = binary.find(op); it != binary.end()) {
    auto x = requireInput(n, 0), y = requireInput(n, 1);
    if (failed(x) || failed(y))
      return failure();
    return defineResult(emit(n, rt::Attrs(it->second), {*x, *y}));
  }
  if (auto it = variadic.find(op); it != variadic.end()) {
    if (n.proto.input_size() == 0)
      return error(n, "needs at least one input");
    auto first = requireInput(n, 0);
    if (failed(first))
      return failure();
    Entry acc = **first;
    for (int i = 1; i < n.proto.input_size(); ++i) {
      auto y = requireInput(n, i);
      if (failed(y))
        return failure();
      auto r = emit(n, rt::Attrs(it->second), {&acc, *y});
      if (failed(r))
        return failure();
      acc = *r;
    }
    if (op == "Mean" && n.proto.input_size() > 1) {
      Entry count = scalarConstant(acc.type.dtype, n.proto.input_size());
      auto r = emit(n, rt::Attrs(K::Div), {&acc, &count});
      if (failed(r))
        return failure();
      acc = *r;
    }
    define(n, 0, acc);
    return success();
  }
  if (auto it = reductions.find(op); it != reductions.end())
    return importReduce(n, it->second);

  if (op == "Identity" || op == "Dropout") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    if (op == "Dropout" && n.proto.output_size() > 1 &&
        !n.proto.output(1).empty())
      return error(n, "the mask output of Dropout is not supported");
    if (op == "Dropout" && hasInput(n, 2)) {
      auto training = constInput(n, 2, "training_mode");
      if (failed(training))
        return failure();
      if ((*training)->type.numElements() != 1)
        return error(n, "training_mode must be a scalar");
      if (rt::loadAsDouble((*training)->ref(), 0) != 0)
        return error(n, "training-mode Dropout is not supported; export the "
                        "model in eval mode");
    }
    define(n, 0, **x);
    return success();
  }
  if (op == "Constant")
    return importConstant(n);
  if (op == "Pow") {
    // The exponent's type may differ from the base's; the result has the
    // base's type. An integer base with a float exponent is computed in the
    // exponent's float type and truncated back (onnxruntime does the same).
    auto x = requireInput(n, 0), y = requireInput(n, 1);
    if (failed(x) || failed(y))
      return failure();
    rt::DType baseType = (*x)->type.dtype, expType = (*y)->type.dtype;
    if (!rt::isFloatDType(baseType) && rt::isFloatDType(expType)) {
      auto xf = emitCast(n, *x, expType);
      if (failed(xf))
        return failure();
      Entry xfv = *xf;
      auto p = emit(n, rt::Attrs(K::Pow), {&xfv, *y});
      if (failed(p))
        return failure();
      Entry pv = *p;
      return defineResult(emitCast(n, &pv, baseType));
    }
    auto yc = emitCast(n, *y, baseType);
    if (failed(yc))
      return failure();
    Entry ycv = *yc;
    return defineResult(emit(n, rt::Attrs(K::Pow), {*x, &ycv}));
  }
  if (op == "Where") {
    auto c = requireInput(n, 0), x = requireInput(n, 1), y = requireInput(n, 2);
    if (failed(c) || failed(x) || failed(y))
      return failure();
    return defineResult(emit(n, rt::Attrs(K::Where), {*c, *x, *y}));
  }
  if (op == "Cast" || op == "CastLike") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    rt::DType to;
    if (op == "Cast") {
      const auto *a = attr(n, "to");
      if (!a)
        return error(n, "requires the 'to' attribute");
      auto d = dtypeFromOnnx(static_cast<int32_t>(a->i()));
      if (!d)
        return error(n, "casts to " + onnxDTypeName(a->i()) +
                            ", which colossal does not support");
      to = *d;
    } else {
      auto like = requireInput(n, 1);
      if (failed(like))
        return failure();
      to = (*like)->type.dtype;
    }
    return defineResult(emitCast(n, *x, to));
  }
  if (op == "Gelu") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    std::string approx = attrString(n, "approximate", "none");
    if (approx != "none" && approx != "tanh")
      return error(n, "approximate must be 'none' or 'tanh', got '" + approx + "'");
    rt::Attrs a(K::Gelu);
    a.setI("approximate", approx == "tanh" ? 1 : 0);
    return defineResult(emit(n, a, {*x}));
  }
  if (op == "Clip") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    Entry acc = **x;
    for (int i = 1; i <= 2; ++i) {
      if (!hasInput(n, i))
        continue;
      auto bound = requireInput(n, i);
      if (failed(bound))
        return failure();
      auto r = emit(n, rt::Attrs(i == 1 ? K::Max : K::Min), {&acc, *bound});
      if (failed(r))
        return failure();
      acc = *r;
    }
    define(n, 0, acc);
    return success();
  }
  if (op == "MatMul")
    return importMatMul(n);
  if (op == "Gemm")
    return importGemm(n);
  if (op == "Softmax" || op == "LogSoftmax") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    auto axis = normAxis(n, attrInt(n, "axis", -1), (*x)->type.rank());
    if (failed(axis))
      return failure();
    rt::Attrs a(op == "Softmax" ? K::Softmax : K::LogSoftmax);
    if (opset >= 13) {
      a.setI("axis", *axis);
      return defineResult(emit(n, a, {*x}));
    }
    // Before opset 13 the input is coerced to 2-D at `axis` (default 1) and
    // normalised over all the trailing dims together.
    if (!attr(n, "axis")) {
      auto one = normAxis(n, 1, (*x)->type.rank());
      if (failed(one))
        return failure();
      axis = one;
    }
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < static_cast<int64_t>((*x)->type.rank()); ++d)
      (d < *axis ? outer : inner) *= (*x)->type.dims[d];
    std::vector<int64_t> dims = (*x)->type.dims;
    auto flat = emitReshape(n, *x, {outer, inner});
    if (failed(flat))
      return failure();
    Entry flatEntry = *flat;
    a.setI("axis", 1);
    auto r = emit(n, a, {&flatEntry});
    if (failed(r))
      return failure();
    Entry rEntry = *r;
    return defineResult(emitReshape(n, &rEntry, dims));
  }
  if (op == "LayerNormalization")
    return importLayerNorm(n);
  if (op == "Gather") {
    auto x = requireInput(n, 0), idx = requireInput(n, 1);
    if (failed(x) || failed(idx))
      return failure();
    auto axis = normAxis(n, attrInt(n, "axis", 0), (*x)->type.rank());
    if (failed(axis))
      return failure();
    rt::Attrs a(K::Gather);
    a.setI("axis", *axis);
    return defineResult(emit(n, a, {*x, *idx}));
  }
  if (op == "GatherND") {
    auto x = requireInput(n, 0), idx = requireInput(n, 1);
    if (failed(x) || failed(idx))
      return failure();
    rt::Attrs a(K::GatherND);
    a.setI("batch_dims", attrInt(n, "batch_dims", 0));
    return defineResult(emit(n, a, {*x, *idx}));
  }
  if (op == "GatherElements") {
    auto x = requireInput(n, 0), idx = requireInput(n, 1);
    if (failed(x) || failed(idx))
      return failure();
    auto axis = normAxis(n, attrInt(n, "axis", 0), (*x)->type.rank());
    if (failed(axis))
      return failure();
    rt::Attrs a(K::GatherElements);
    a.setI("axis", *axis);
    return defineResult(emit(n, a, {*x, *idx}));
  }
  if (op == "Trilu") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    int64_t k = 0;
    if (hasInput(n, 1)) {
      auto kv = constInts(n, 1, "k");
      if (failed(kv))
        return failure();
      if (kv->size() != 1)
        return error(n, "k must hold one value");
      k = kv->front();
    }
    rt::Attrs a(K::Trilu);
    a.setI("upper", attrInt(n, "upper", 1) ? 1 : 0);
    a.setI("k", k);
    return defineResult(emit(n, a, {*x}));
  }
  if (op == "CumSum") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    auto axisVals = constInts(n, 1, "axis");
    if (failed(axisVals))
      return failure();
    if (axisVals->size() != 1)
      return error(n, "axis must hold one value");
    auto axis = normAxis(n, axisVals->front(), (*x)->type.rank());
    if (failed(axis))
      return failure();
    rt::Attrs a(K::CumSum);
    a.setI("axis", *axis);
    a.setI("exclusive", attrInt(n, "exclusive", 0) ? 1 : 0);
    a.setI("reverse", attrInt(n, "reverse", 0) ? 1 : 0);
    return defineResult(emit(n, a, {*x}));
  }
  if (op == "Reshape")
    return importReshape(n);
  if (op == "Flatten") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    int64_t rank = (*x)->type.rank();
    int64_t axis = attrInt(n, "axis", 1);
    if (axis < -rank || axis > rank)
      return error(n, "axis " + Twine(axis) + " is out of range for rank " +
                          Twine(rank));
    if (axis < 0)
      axis += rank;
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < rank; ++d)
      (d < axis ? outer : inner) *= (*x)->type.dims[d];
    return defineResult(emitReshape(n, *x, {outer, inner}));
  }
  if (op == "Squeeze" || op == "Unsqueeze") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    std::vector<int64_t> axes;
    if (hasInput(n, 1)) {
      auto a = constInts(n, 1, "axes");
      if (failed(a))
        return failure();
      axes = *a;
    } else if (auto a = attrInts(n, "axes")) {
      axes = *a;
    }
    const auto &dims = (*x)->type.dims;
    std::vector<int64_t> out;
    if (op == "Squeeze") {
      std::vector<bool> drop(dims.size(), false);
      if (axes.empty()) {
        for (size_t d = 0; d < dims.size(); ++d)
          drop[d] = dims[d] == 1;
      }
      for (int64_t a : axes) {
        auto na = normAxis(n, a, dims.size());
        if (failed(na))
          return failure();
        if (dims[*na] != 1)
          return error(n, "cannot squeeze dim " + Twine(*na) + " of size " +
                              Twine(dims[*na]));
        drop[*na] = true;
      }
      for (size_t d = 0; d < dims.size(); ++d)
        if (!drop[d])
          out.push_back(dims[d]);
    } else {
      int64_t outRank = dims.size() + axes.size();
      std::vector<bool> added(outRank, false);
      for (int64_t a : axes) {
        auto na = normAxis(n, a, outRank);
        if (failed(na))
          return failure();
        if (added[*na])
          return error(n, "axis " + Twine(*na) + " is repeated");
        added[*na] = true;
      }
      size_t src = 0;
      for (int64_t d = 0; d < outRank; ++d)
        out.push_back(added[d] ? 1 : dims[src++]);
    }
    return defineResult(emitReshape(n, *x, out));
  }
  if (op == "Expand") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    auto shape = constInts(n, 1, "shape");
    if (failed(shape))
      return failure();
    std::vector<int64_t> out;
    rt::Status st = rt::broadcastShapes((*x)->type.dims, *shape, out);
    if (!st.isOk())
      return error(n, st.message());
    if (out == (*x)->type.dims) {
      define(n, 0, **x);
      return success();
    }
    rt::Attrs a(K::Expand);
    a.setList("shape", out);
    return defineResult(emit(n, a, {*x}));
  }
  if (op == "Transpose") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    int64_t rank = (*x)->type.rank();
    std::vector<int64_t> perm;
    if (auto p = attrInts(n, "perm"))
      perm = *p;
    else
      for (int64_t d = rank - 1; d >= 0; --d)
        perm.push_back(d);
    rt::Attrs a(K::Transpose);
    a.setList("perm", perm);
    return defineResult(emit(n, a, {*x}));
  }
  if (op == "Slice")
    return importSlice(n);
  if (op == "Split")
    return importSplit(n);
  if (op == "Concat") {
    SmallVector<Entry *> ins;
    for (int i = 0; i < n.proto.input_size(); ++i) {
      auto e = requireInput(n, i);
      if (failed(e))
        return failure();
      ins.push_back(*e);
    }
    if (ins.empty())
      return error(n, "needs at least one input");
    auto axis = normAxis(n, attrInt(n, "axis", 0), ins.front()->type.rank());
    if (failed(axis))
      return failure();
    rt::Attrs a(K::Concat);
    a.setI("axis", *axis);
    return defineResult(emit(n, a, ins));
  }
  if (op == "Pad")
    return importPad(n);
  if (op == "Shape" || op == "Size") {
    auto x = requireInput(n, 0);
    if (failed(x))
      return failure();
    const auto &dims = (*x)->type.dims;
    std::vector<int64_t> vals;
    if (op == "Size") {
      vals.push_back((*x)->type.numElements());
    } else {
      int64_t rank = dims.size();
      int64_t start = attrInt(n, "start", 0), end = attrInt(n, "end", rank);
      if (start < 0)
        start += rank;
      if (end < 0)
        end += rank;
      start = std::clamp<int64_t>(start, 0, rank);
      end = std::clamp<int64_t>(end, 0, rank);
      for (int64_t d = start; d < end; ++d)
        vals.push_back(dims[d]);
    }
    Entry e;
    e.type = op == "Size" ? rt::TensorType{rt::DType::kI64, {}}
                          : rt::TensorType{rt::DType::kI64,
                                           {static_cast<int64_t>(vals.size())}};
    rt::HostTensor t(e.type);
    if (!vals.empty())
      std::memcpy(t.bytes.data(), vals.data(), vals.size() * sizeof(int64_t));
    e.constant = std::move(t);
    define(n, 0, std::move(e));
    return success();
  }
  if (op == "ConstantOfShape") {
    auto shape = constInts(n, 0, "shape");
    if (failed(shape))
      return failure();
    double value = 0.0;
    rt::DType dtype = rt::DType::kF32;
    if (const auto *a = attr(n, "value")) {
      rt::HostTensor t;
      rt::Status st = readTensorProto(a->t(), model.modelDir, t);
      if (!st.isOk())
        return error(n, st.message());
      if (t.type.numElements() != 1)
        return error(n, "value must hold one element");
      dtype = t.type.dtype;
      value = rt::loadAsDouble(t.ref(), 0);
    }
    rt::Attrs a(K::Fill);
    a.setDType("to", dtype);
    a.setList("shape", *shape);
    a.setF("value", value);
    // fill carries its value as a double: an integer beyond 2^53 is exact
    // only as a constant.
    if (!rt::isFloatDType(dtype)) {
      rt::HostTensor t;
      (void)readTensorProto(attr(n, "value")->t(), model.modelDir, t);
      int64_t exact = rt::loadAsInt64(t.ref(), 0);
      if (static_cast<int64_t>(static_cast<double>(exact)) != exact) {
        rt::TensorType type{dtype, *shape};
        if (type.numElements() > options.maxFoldElements)
          return error(n, "an integer fill value beyond 2^53 over more than " +
                              Twine(options.maxFoldElements) +
                              " elements is not supported");
        Entry e;
        e.type = type;
        rt::HostTensor filled(type);
        for (int64_t i = 0; i < type.numElements(); ++i)
          rt::storeFromInt64(filled.ref(), i, exact);
        e.constant = std::move(filled);
        define(n, 0, std::move(e));
        return success();
      }
    }
    return defineResult(emit(n, a, {}));
  }
  if (op == "Range") {
    auto s = constInput(n, 0, "start"), l = constInput(n, 1, "limit"),
         d = constInput(n, 2, "delta");
    if (failed(s) || failed(l) || failed(d))
      return failure();
    for (auto [what, t] : {std::pair{"start", *s}, std::pair{"limit", *l},
                           std::pair{"delta", *d}})
      if (t->type.numElements() != 1)
        return error(n, Twine(what) + " must be a scalar, got " +
                            t->type.toString());
    rt::DType dtype = (*s)->type.dtype;
    double start = rt::loadAsDouble((*s)->ref(), 0),
           limit = rt::loadAsDouble((*l)->ref(), 0),
           delta = rt::loadAsDouble((*d)->ref(), 0);
    if (delta == 0)
      return error(n, "delta is 0");
    // Checked in double before the conversion: a huge or non-finite count
    // must be an error, not an undefined cast.
    double steps = std::ceil((limit - start) / delta);
    if (!(steps <= double(int64_t(1) << 24)))
      return error(n, "range [" + std::to_string(start) + ", " +
                          std::to_string(limit) + ") by " +
                          std::to_string(delta) +
                          " has too many elements (at most 2^24)");
    int64_t count = steps > 0 ? static_cast<int64_t>(steps) : 0;
    Entry e;
    e.type = rt::TensorType{dtype, {count}};
    rt::HostTensor t(e.type);
    for (int64_t i = 0; i < count; ++i) {
      if (rt::isFloatDType(dtype))
        rt::storeFromDouble(t.ref(), i, start + i * delta);
      else {
        int64_t v;
        if (__builtin_mul_overflow(i, rt::loadAsInt64((*d)->ref(), 0), &v) ||
            __builtin_add_overflow(rt::loadAsInt64((*s)->ref(), 0), v, &v))
          return error(n, "the range's values overflow int64");
        rt::storeFromInt64(t.ref(), i, v);
      }
    }
    e.constant = std::move(t);
    define(n, 0, std::move(e));
    return success();
  }
  if (op == "SoftmaxCrossEntropyLoss")
    return importCrossEntropy(n);
  if (op == "SplitToSequence" || op == "SequenceConstruct" ||
      op == "SequenceAt" || op == "SequenceLength" ||
      op == "ConcatFromSequence")
    return importSequenceOp(n);

  unsupported.emplace_back(n.label, op);
  emitError(n.loc) << n.label << ": op '" << op
                   << "' is not supported by colossal";
  return failure();
}

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

/// Parses the `colossal.export` metadata JSON (docs/python.md).
static llvm::Expected<ExportMetadata> parseExportMetadata(llvm::StringRef text) {
  auto value = llvm::json::parse(text);
  if (!value)
    return value.takeError();
  auto *obj = value->getAsObject();
  if (!obj)
    return llvm::createStringError("expected a JSON object");
  ExportMetadata meta;
  if (auto format = obj->getInteger("format"); format && *format != 1)
    return llvm::createStringError("format " + std::to_string(*format) +
                                   " is not supported (1)");
  if (auto prefix = obj->getString("wrapper_prefix"))
    meta.wrapperPrefix = prefix->str();
  if (auto *list = obj->getArray("trainable")) {
    for (const auto &v : *list) {
      auto s = v.getAsString();
      if (!s)
        return llvm::createStringError("trainable: expected strings");
      meta.trainable.push_back(s->str());
    }
  }
  if (auto *names = obj->getObject("export_names")) {
    for (const auto &kv : *names) {
      auto s = kv.second.getAsString();
      if (!s)
        return llvm::createStringError("export_names: expected string values");
      meta.exportNames[kv.first.str()] = s->str();
    }
  }
  if (auto *pads = obj->getObject("padding_idx")) {
    for (const auto &kv : *pads) {
      auto i = kv.second.getAsInteger();
      if (!i || *i < 0)
        return llvm::createStringError(
            "padding_idx: expected non-negative integers");
      meta.paddingIdx[kv.first.str()] = *i;
    }
  }
  return meta;
}

FailureOr<ImportResult>
mlir::colossal::importOnnxFile(MLIRContext *ctx, const std::string &path,
                               const ImportOptions &options) {
  ctx->loadDialect<graph::ColossalDialect, func::FuncDialect>();
  Location fileLoc = FileLineColLoc::get(ctx, path, 0, 0);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    emitError(fileLoc) << "cannot open '" << path << "'";
    return failure();
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string bytes = buffer.str();
  if (bytes.empty()) {
    emitError(fileLoc) << "'" << path << "' is empty, not an ONNX model";
    return failure();
  }

  auto model = std::make_shared<OnnxModel>();
  model->modelDir = llvm::sys::path::parent_path(path).str();
  if (model->modelDir.empty())
    model->modelDir = ".";
  // libonnx/protobuf may throw; this is the only place that calls them.
  bool parsed = false;
  try {
    parsed = model->proto.ParseFromString(bytes);
  } catch (const std::exception &e) {
    emitError(fileLoc) << "'" << path << "': protobuf error: " << e.what();
    return failure();
  }
  if (!parsed) {
    emitError(fileLoc) << "'" << path
                       << "' is not a valid ONNX model (protobuf parsing "
                          "failed: truncated or not an ONNX file)";
    return failure();
  }
  if (!model->proto.has_graph() || model->proto.graph().node_size() == 0) {
    emitError(fileLoc) << "'" << path
                       << "' holds no graph nodes (not an ONNX model, or an "
                          "empty one)";
    return failure();
  }

  ImportResult result;
  result.model = model;
  for (const auto &prop : model->proto.metadata_props()) {
    if (prop.key() != "colossal.export")
      continue;
    auto parsed = parseExportMetadata(prop.value());
    if (!parsed) {
      emitError(fileLoc) << "'" << path << "': the colossal.export metadata "
                         << "is malformed: " << llvm::toString(parsed.takeError());
      return failure();
    }
    result.exportMetadata = std::move(*parsed);
  }
  Importer importer(ctx, options, *model, result);
  if (failed(importer.run()))
    return failure();
  return result;
}

::colossal::runtime::Status
mlir::colossal::readWeight(const ImportResult &result, const WeightInfo &w,
                           ::colossal::runtime::HostTensor &out) {
  auto it = result.model->initializers.find(w.name);
  if (it == result.model->initializers.end())
    return COLOSSAL_ERROR(kNotFound, "no initializer named '" + w.name + "'");
  return readTensorProto(*it->second, result.model->modelDir, out);
}

bool mlir::colossal::weightDataAvailable(const ImportResult &result,
                                         std::string *missing) {
  for (const WeightInfo &w : result.weights) {
    if (!w.external)
      continue;
    std::ifstream f(w.externalPath, std::ios::binary);
    if (!f) {
      if (missing)
        *missing = w.externalPath;
      return false;
    }
  }
  return true;
}
