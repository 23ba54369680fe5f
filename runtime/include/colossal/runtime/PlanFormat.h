//===- PlanFormat.h - The .cplan file: on-disk schema and in-memory model -===//
//
// The only schema of the plan file; the compiler writes it with writePlan()
// and the runtime reads it with readPlan(). docs/plan-format.md describes it
// field by field; keep the two in the same change.
//
// File layout (all integers little-endian, all records 8-byte aligned):
//
//   FileHeader                          64 bytes at offset 0
//   SectionEntry[header.numSections]    directly after the header
//   section payloads                    each at an 8-aligned offset
//
// header.checksum is the FNV-1a 64-bit hash of bytes [64, fileBytes): every
// byte after the header, section table included. Sections are arrays of
// fixed-size records (SectionEntry::recordBytes says the size, so a minor
// version may append fields to a record) or raw bytes (strings, data).
//
// Versioning: a reader accepts any minor of its major and rejects any other
// major with a message naming both versions.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_PLANFORMAT_H
#define COLOSSAL_RUNTIME_PLANFORMAT_H

#include "colossal/runtime/OpTable.h"
#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace colossal::runtime {

inline constexpr char kPlanMagic[8] = {'C', 'P', 'L', 'A', 'N', 0x1a, '\n', 0};
inline constexpr uint16_t kPlanMajorVersion = 1;
inline constexpr uint16_t kPlanMinorVersion = 0;

/// Limits a reader enforces before allocating anything.
inline constexpr uint32_t kMaxSections = 64;
inline constexpr uint32_t kMaxStreams = 64;
inline constexpr uint32_t kMaxEvents = 1u << 20;
inline constexpr uint32_t kMaxWorldSize = 1u << 16;

enum class SectionId : uint32_t {
  kMeta = 1,       ///< one MetaRecord
  kStrings = 2,    ///< raw UTF-8 bytes; strings are (offset, length) pairs
  kArenas = 3,     ///< ArenaRecord[]
  kBuffers = 4,    ///< BufferRecord[]
  kTensors = 5,    ///< TensorRecord[]
  kInstrs = 6,     ///< InstrRecord[]
  kOperands = 7,   ///< uint32 tensor indices, instructions point into it
  kAttrInts = 8,   ///< int64 attribute pool
  kAttrFloats = 9, ///< double attribute pool
  kBindings = 10,  ///< BindingRecord[]
  kData = 11,      ///< raw bytes of constant tensors
};

/// Where an arena lives. Values are stored in plan files.
enum class MemorySpace : uint8_t {
  kDevice = 0, ///< GPU memory (host memory on the CPU backend)
  kHost = 1,   ///< pinned host memory
};
const char *memorySpaceName(MemorySpace space);

/// What a binding connects a tensor to. Values are stored in plan files.
enum class BindingRole : uint8_t {
  kInput = 0,    ///< a graph input, named as in the ONNX graph
  kOutput = 1,   ///< a graph output, named as in the ONNX graph
  kWeight = 2,   ///< an initializer, read from the weights file by name
  kConstant = 3, ///< bytes stored in the plan's data section
};
const char *bindingRoleName(BindingRole role);

// ---- In-memory model (what writePlan takes and readPlan returns) ---------

/// One contiguous allocation per memory space; the executor allocates each
/// arena once, with sizeBytes and alignBytes as given.
struct PlanArena {
  MemorySpace space = MemorySpace::kDevice;
  uint64_t sizeBytes = 0;
  uint64_t alignBytes = 64;
};

/// A region of an arena. [liveStart, liveEnd] are instruction indices
/// (inclusive) during which its bytes are in use; buffers whose live ranges
/// do not overlap may share bytes.
struct PlanBuffer {
  std::string name;
  uint32_t arena = 0;
  uint64_t offsetBytes = 0;
  uint64_t sizeBytes = 0;
  uint64_t alignBytes = 64;
  uint32_t liveStart = 0;
  uint32_t liveEnd = 0;
};

/// A typed view at byteOffset inside a buffer (reshapes alias their input).
struct PlanTensor {
  std::string name;
  uint32_t buffer = 0;
  uint64_t byteOffset = 0;
  TensorType type;
};

struct PlanInstr {
  Attrs attrs; ///< carries the OpKind
  uint32_t stream = 0;
  std::vector<uint32_t> inputs;  ///< tensor indices
  std::vector<uint32_t> outputs; ///< tensor indices
  std::string location;          ///< the ONNX node name it came from
};

struct PlanBinding {
  BindingRole role = BindingRole::kInput;
  std::string name;
  uint32_t tensor = 0;
  std::vector<uint8_t> data; ///< kConstant only: exactly the tensor's bytes
};

struct Plan {
  uint16_t majorVersion = kPlanMajorVersion;
  uint16_t minorVersion = kPlanMinorVersion;
  uint32_t worldSize = 1; ///< ranks the plan was compiled for
  uint32_t rank = 0;      ///< which rank this file is
  uint32_t numStreams = 1;
  uint32_t numEvents = 0;
  std::string sourceModel; ///< the ONNX file it was compiled from
  /// The safetensors file with the weights, relative to the plan's folder;
  /// empty when the model had no weight data (a weight-free graph).
  std::string weightsFile;
  std::vector<PlanArena> arenas;
  std::vector<PlanBuffer> buffers;
  std::vector<PlanTensor> tensors;
  std::vector<PlanInstr> instrs;
  std::vector<PlanBinding> bindings;
};

/// Checks every cross-reference and size of an in-memory plan: arena,
/// buffer and tensor indices in range, buffers inside their arena, tensors
/// inside their buffer, live ranges ordered, every instruction's operand
/// types equal to inferOutputTypes() of its inputs, constant data sizes,
/// binding names unique per role. The first failure is returned, naming the
/// record ("instruction 12 (matmul at node_MatMul_45): ...").
Status validatePlan(const Plan &plan);

/// Serialises `plan` (validated first) to bytes.
Status writePlan(const Plan &plan, std::vector<uint8_t> &bytes);
Status writePlanFile(const Plan &plan, const std::string &path);

/// Parses and validates untrusted bytes: magic, version, sizes, checksum,
/// every section bound and record, then validatePlan(). Never reads out of
/// bounds, never allocates more than the input can justify.
Status readPlan(const uint8_t *data, size_t size, Plan &plan);
Status readPlanFile(const std::string &path, Plan &plan);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_PLANFORMAT_H
