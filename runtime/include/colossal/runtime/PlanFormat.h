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
inline constexpr uint16_t kPlanMinorVersion = 3;

/// Limits a reader enforces before allocating anything.
inline constexpr uint32_t kMaxSections = 64;
inline constexpr uint32_t kMaxStreams = 64;
inline constexpr uint32_t kMaxEvents = 1u << 20;
inline constexpr uint32_t kMaxWorldSize = 1u << 16;
/// Arena alignments: the CPU executor over-allocates each arena by its
/// alignment, so an unbounded one (a 512-byte arena aligned to 2^46) would
/// make it ask for terabytes. No backend needs more than a page.
inline constexpr uint64_t kMaxAlignBytes = 4096;

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
  /// ProgramRecord[] (format 1.1): the named entry points; absent or empty
  /// in a forward plan of format 1.0 (one `forward` over every instruction).
  kPrograms = 12,
  /// StreamRecord[] (format 1.2): one per stream, its StreamKind; absent in
  /// 1.0 and 1.1 files, whose streams are all compute streams.
  kStreams = 13,
};

/// Where an arena lives. Values are stored in plan files.
enum class MemorySpace : uint8_t {
  kDevice = 0, ///< GPU memory (host memory on the CPU backend)
  kHost = 1,   ///< pinned host memory
};
const char *memorySpaceName(MemorySpace space);

/// What a stream runs (format 1.2). Values are stored in plan files.
/// validatePlan enforces: stream 0 is kCompute; a kCopy stream runs only
/// `identity` instructions between arenas of different memory spaces, and
/// event ops; a kHost stream runs only kernels all of whose operands are in
/// kHost arenas (run by the CPU), and event ops. The compiler numbers them
/// 0 compute, 1 copy (host to device), 2 copy (device to host), 3 host, and
/// declares only the streams it uses.
enum class StreamKind : uint8_t {
  kCompute = 0, ///< kernels on the device (and any copy, in plan order)
  kCopy = 1,    ///< copies between the device and the host arenas
  kHost = 2,    ///< kernels on host-resident tensors, run by CPU threads
};
const char *streamKindName(StreamKind kind);

/// What a binding connects a tensor to. Values are stored in plan files.
enum class BindingRole : uint8_t {
  kInput = 0,    ///< a graph input, named as in the ONNX graph
  kOutput = 1,   ///< a graph output, named as in the ONNX graph
  kWeight = 2,   ///< an initializer, read from the weights file by name
  kConstant = 3, ///< bytes stored in the plan's data section
  /// Persistent state that is not a weight (optimizer moments, accumulated
  /// gradients): zero-filled when the executor is prepared, kept across
  /// programs and steps, saved in checkpoints.
  kState = 4,
};

/// How a weight is initialised when there is no weights file (`colossal-run
/// --init random`). Values are stored in plan files.
enum class InitKind : uint8_t {
  kNone = 0,   ///< no rule: the weight must come from a weights file
  kZeros = 1,  ///< 0 (biases)
  kOnes = 2,   ///< 1 (norm scales)
  kNormal = 3, ///< N(0, initScale^2), Hugging Face's default init
};
const char *initKindName(InitKind kind);

/// Inputs that colossal-run provides itself, by name (never in a data file).
/// `__step`: i64 [], the 0-based optimizer step (bias correction, schedules).
inline constexpr const char *kStepInputName = "__step";
/// `__count_total`: f32 [], the number of scored labels of the whole batch,
/// summed over the micro-batches' `__count` outputs (gradient accumulation).
inline constexpr const char *kCountTotalInputName = "__count_total";
/// `__count`: f32 [] output of `micro_step`: scored labels in the micro-batch.
inline constexpr const char *kCountOutputName = "__count";

/// Program names. A forward plan has `forward`; a training plan has
/// `micro_step` (forward + backward, adding count x gradient into the
/// `grad.*` states) and `apply_step` (clipping, the optimizer update, zeroing
/// the gradient states), run as micro_step x grad_accum, then apply_step.
inline constexpr const char *kForwardProgram = "forward";
inline constexpr const char *kMicroStepProgram = "micro_step";
inline constexpr const char *kApplyStepProgram = "apply_step";
/// A fused training plan (grad-accum 1, no clipping): one program that runs
/// forward, backward and each weight's update as soon as its gradient is
/// complete. Inputs: the user inputs and `__step`; outputs: `loss`,
/// `__count`, `grad_norm`, `lr`. No gradient states exist.
inline constexpr const char *kTrainStepProgram = "train_step";
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
  /// The stream it runs on, in [0, numStreams). Within a stream
  /// instructions run in plan order; across streams only event_record /
  /// event_wait pairs order them (OpTable.h).
  uint32_t stream = 0;
  std::vector<uint32_t> inputs;  ///< tensor indices
  std::vector<uint32_t> outputs; ///< tensor indices
  std::string location;          ///< the ONNX node name it came from
};

/// Sentinel for PlanBinding::program: the binding belongs to every program
/// (weights, states, constants).
inline constexpr uint32_t kAllPrograms = 0xffffffffu;

struct PlanBinding {
  BindingRole role = BindingRole::kInput;
  std::string name;
  uint32_t tensor = 0;
  std::vector<uint8_t> data; ///< kConstant only: exactly the tensor's bytes
  /// kInput: written before this program runs; kOutput: read after it.
  /// kAllPrograms for kWeight, kState and kConstant (and for inputs/outputs
  /// of a plan with a single program).
  uint32_t program = kAllPrograms;
  /// kWeight only: updated by the optimizer (saved by --export-weights and
  /// checkpoints either way).
  bool trainable = false;
  /// kWeight only: the rule for `--init random`, with its scale (kNormal's
  /// standard deviation).
  InitKind init = InitKind::kNone;
  double initScale = 0.0;
  /// kWeight only: the name under which --export-weights writes it (the
  /// Hugging Face state-dict name); empty: the binding's name.
  std::string exportName;
};

/// A named entry point: instructions [firstInstr, firstInstr + numInstrs).
/// Programs cover disjoint, consecutive instruction ranges in plan order.
struct PlanProgram {
  std::string name;
  uint32_t firstInstr = 0;
  uint32_t numInstrs = 0;
};

struct Plan {
  uint16_t majorVersion = kPlanMajorVersion;
  uint16_t minorVersion = kPlanMinorVersion;
  uint32_t worldSize = 1; ///< ranks the plan was compiled for
  uint32_t rank = 0;      ///< which rank this file is
  uint32_t numStreams = 1;
  uint32_t numEvents = 0;
  /// Format 1.2: the kind of each stream, numStreams of them. Empty (1.0 and
  /// 1.1 files, and plans built in memory without streams): every stream is
  /// a compute stream.
  std::vector<StreamKind> streamKinds;
  /// Format 1.3: bit s set = stream s is carried: its work runs on into the
  /// next program and the next step, which wait for it only through events
  /// (a wait with no earlier record of its event in its program waits for
  /// the previous run's record on the carried stream). Only host streams;
  /// the compiler carries the offloaded updates (docs/planner.md, "Updates
  /// across the step boundary").
  uint64_t carriedStreams = 0;
  std::string sourceModel; ///< the ONNX file it was compiled from
  /// The safetensors file with the weights, relative to the plan's folder;
  /// empty when the model had no weight data (a weight-free graph).
  std::string weightsFile;
  std::vector<PlanArena> arenas;
  std::vector<PlanBuffer> buffers;
  std::vector<PlanTensor> tensors;
  std::vector<PlanInstr> instrs;
  std::vector<PlanBinding> bindings;
  /// Entry points; empty means one program, `forward`, over every
  /// instruction (format 1.0 files).
  std::vector<PlanProgram> programs;
  /// Training plans: how the step was compiled, as a JSON object (optimizer
  /// and its hyper-parameters, lr schedule, grad_accum, precision, micro-batch
  /// and full-batch shapes); printed by colossal-run and kept in checkpoints.
  std::string trainConfig;
};

/// Checks every cross-reference and size of an in-memory plan: arena,
/// buffer and tensor indices in range, buffers inside their arena, tensors
/// inside their buffer, live ranges ordered, every instruction's operand
/// types equal to inferOutputTypes() of its inputs, no overlapping operands
/// but the allowed in-place ones, constant data sizes, binding names unique
/// per role (and program); format 1.1: programs that partition the
/// instructions with known names (forward alone, or micro_step and
/// apply_step), binding programs in range (kAllPrograms for weights, states
/// and constants), weight-only fields on weights only, valid init rules,
/// reserved names with their types, persistent buffers not shared; format
/// 1.2: stream kinds (stream 0 compute; copy streams run only cross-space
/// identity copies and events, host streams only host kernels and events),
/// event indices below numEvents, and every event_wait preceded by an
/// event_record of its event in the same program. The
/// first failure is returned, naming the record ("instruction 12 (matmul at
/// node_MatMul_45): ..."); docs/plan-format.md lists every rule.
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
