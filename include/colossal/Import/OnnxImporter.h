//===- OnnxImporter.h - ONNX ModelProto -> colossal graph dialect -*- C++ -*-===//
//
// Reads an ONNX model with libonnx/protobuf and builds one `func.func @main`
// of `colossal` ops on static tensors. The importer propagates shapes itself
// (with the runtime op table's shape function, not libonnx's inference) and
// folds everything whose inputs are constant and whose result is small
// (shape arithmetic, masks) with the runtime's CPU kernels, so folding and
// running agree exactly. Initializers become `colossal.weight` ops; their
// bytes stay in the ONNX file (or its external data) until the compile
// driver writes them beside the plan.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_IMPORT_ONNXIMPORTER_H
#define COLOSSAL_IMPORT_ONNXIMPORTER_H

#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mlir::colossal {

struct ImportOptions {
  /// Static shapes for graph inputs, overriding or completing the model's
  /// (`--shape input_ids=2x16`). Every dynamic dim must be fixed here.
  std::map<std::string, std::vector<int64_t>> inputShapes;
  /// A computation whose inputs are all constant is folded when its result
  /// has at most this many elements; larger ones stay ops.
  int64_t maxFoldElements = 1 << 16;
  /// Float initializers with fewer elements than this become constants in
  /// the IR instead of weights (scalars such as an attention scale).
  int64_t minWeightElements = 2;
};

/// Where an initializer's bytes are, so that they can be read after import.
struct WeightInfo {
  std::string name;
  ::colossal::runtime::TensorType type;
  bool external = false;     ///< in an external data file
  std::string externalPath;  ///< resolved against the model's folder
  uint64_t externalOffset = 0;
  int64_t externalLength = -1; ///< -1: to the end of the file
  /// The dynamo exporter's graph-signature kind (PARAMETER, BUFFER,
  /// CONSTANT_TENSOR), or empty when the export does not say.
  std::string signature;
};

/// What colossal.export writes into a model's `colossal.export`
/// metadata_props entry (docs/python.md): which initializers are trained,
/// their Hugging Face state-dict names, the embeddings' padding rows.
struct ExportMetadata {
  std::string wrapperPrefix;
  std::vector<std::string> trainable;
  std::map<std::string, std::string> exportNames;
  std::map<std::string, int64_t> paddingIdx;
};

class OnnxModel;

struct ImportResult {
  OwningOpRef<ModuleOp> module;
  std::shared_ptr<OnnxModel> model; ///< keeps initializer bytes reachable
  std::vector<WeightInfo> weights;  ///< in the order the graph lists them
  int64_t opsetVersion = 0;
  int64_t numNodes = 0;
  /// Present when the model carries a `colossal.export` metadata entry.
  std::optional<ExportMetadata> exportMetadata;
};

/// Imports `path`. Every problem is reported through the context's
/// diagnostic engine with the ONNX node name as location (all unsupported
/// ops in one run); returns failure if any was an error.
FailureOr<ImportResult> importOnnxFile(MLIRContext *ctx,
                                       const std::string &path,
                                       const ImportOptions &options);

/// Reads one weight's bytes (inline raw_data or typed fields, or external
/// data). Errors name the weight and the file.
::colossal::runtime::Status readWeight(const ImportResult &result,
                                     const WeightInfo &weight,
                                     ::colossal::runtime::HostTensor &out);

/// True when every external data file the weights point to exists.
bool weightDataAvailable(const ImportResult &result, std::string *missing);

} // namespace mlir::colossal

#endif // COLOSSAL_IMPORT_ONNXIMPORTER_H
