//===- PlanFormat.cpp - Read, write and validate .cplan plan files --------===//
//
// The on-disk records are encoded and decoded field by field with explicit
// little-endian loads and stores at fixed offsets (no struct memcpy), so the
// layout does not depend on the host's endianness, padding or alignment.
// docs/plan-format.md documents every record below; keep the two in step.
//
// Reading is defensive: every count is checked against the bytes that hold
// it before anything is allocated, every (offset, size) pair is checked with
// overflow-safe arithmetic, and every raw enum value is checked before it is
// cast. What survives decoding then goes through validatePlan(), the same
// checks the writer runs.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/PlanFormat.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unistd.h>

namespace colossal::runtime {

//===----------------------------------------------------------------------===//
// On-disk layout (format 1.1; 1.0 records are prefixes of these)
//===----------------------------------------------------------------------===//

namespace {

// FileHeader, 64 bytes at offset 0.
constexpr uint32_t kHeaderBytes = 64;
constexpr size_t kHdrMagic = 0;              // char[8], kPlanMagic
constexpr size_t kHdrMajor = 8;              // u16
constexpr size_t kHdrMinor = 10;             // u16
constexpr size_t kHdrHeaderBytes = 12;       // u32, 64
constexpr size_t kHdrFileBytes = 16;         // u64, the whole file
constexpr size_t kHdrNumSections = 24;       // u32
constexpr size_t kHdrSectionEntryBytes = 28; // u32, >= 24
constexpr size_t kHdrChecksum = 32;          // u64, FNV-1a of [64, fileBytes)
// 40..55: two reserved u64, written as zero.
constexpr size_t kHdrHeaderChecksum = 56; // u64, FNV-1a of bytes [0, 56)

// SectionEntry, 24 bytes each, directly after the header.
constexpr uint32_t kSectionEntryBytes = 24;
constexpr size_t kSecId = 0;          // u32 SectionId
constexpr size_t kSecRecordBytes = 4; // u32 bytes per record (1 for raw)
constexpr size_t kSecOffset = 8;      // u64 from the start of the file
constexpr size_t kSecSizeBytes = 16;  // u64 payload bytes

// StringRef: u32 offset, u32 length into the strings section.

// MetaRecord, 64 bytes (56 in format 1.0).
constexpr uint32_t kMetaBytes10 = 56;
constexpr uint32_t kMetaBytes = 64;
constexpr size_t kMetaWorldSize = 0;    // u32
constexpr size_t kMetaRank = 4;         // u32
constexpr size_t kMetaNumStreams = 8;   // u32
constexpr size_t kMetaNumEvents = 12;   // u32
constexpr size_t kMetaSourceModel = 16; // StringRef
constexpr size_t kMetaWeightsFile = 24; // StringRef
constexpr size_t kMetaNumArenas = 32;   // u32
constexpr size_t kMetaNumBuffers = 36;  // u32
constexpr size_t kMetaNumTensors = 40;  // u32
constexpr size_t kMetaNumInstrs = 44;   // u32
constexpr size_t kMetaNumBindings = 48; // u32
constexpr size_t kMetaNumPrograms = 52; // u32 (1.0: reserved, so 0)
constexpr size_t kMetaTrainConfig = 56; // StringRef (1.1)

// ArenaRecord, 24 bytes.
constexpr uint32_t kArenaBytes = 24;
constexpr size_t kArenaSpace = 0;       // u8 MemorySpace; 1..7 reserved
constexpr size_t kArenaSizeBytes = 8;   // u64
constexpr size_t kArenaAlignBytes = 16; // u64

// BufferRecord, 48 bytes.
constexpr uint32_t kBufferBytes = 48;
constexpr size_t kBufName = 0;         // StringRef
constexpr size_t kBufArena = 8;        // u32
constexpr size_t kBufLiveStart = 12;   // u32
constexpr size_t kBufOffsetBytes = 16; // u64
constexpr size_t kBufSizeBytes = 24;   // u64
constexpr size_t kBufAlignBytes = 32;  // u64
constexpr size_t kBufLiveEnd = 40;     // u32
// 44..47 reserved.

// TensorRecord, 88 bytes.
constexpr uint32_t kTensorBytes = 88;
constexpr size_t kTenName = 0;   // StringRef
constexpr size_t kTenBuffer = 8; // u32
constexpr size_t kTenDType = 12; // u8 DType
constexpr size_t kTenRank = 13;  // u8, <= kMaxRank
// 14..15 reserved.
constexpr size_t kTenByteOffset = 16; // u64
constexpr size_t kTenDims = 24;       // i64[8]; dims past rank are 0

// InstrRecord, 48 bytes.
constexpr uint32_t kInstrBytes = 48;
constexpr size_t kInsKind = 0;          // u32 OpKind
constexpr size_t kInsStream = 4;        // u32
constexpr size_t kInsOperandsBegin = 8; // u32 index into the operands pool
constexpr size_t kInsNumInputs = 12;    // u32
constexpr size_t kInsNumOutputs = 16;   // u32
// 20..23 reserved.
constexpr size_t kInsIntsBegin = 24;   // u32 index into the int64 pool
constexpr size_t kInsNumInts = 28;     // u32
constexpr size_t kInsFloatsBegin = 32; // u32 index into the f64 pool
constexpr size_t kInsNumFloats = 36;   // u32
constexpr size_t kInsLocation = 40;    // StringRef

// BindingRecord, 56 bytes (32 in format 1.0).
constexpr uint32_t kBindingBytes10 = 32;
constexpr uint32_t kBindingBytes = 56;
constexpr size_t kBndRole = 0;        // u8 BindingRole; 1..3 reserved
constexpr size_t kBndTensor = 4;      // u32
constexpr size_t kBndName = 8;        // StringRef
constexpr size_t kBndDataOffset = 16; // u64 into the data section
constexpr size_t kBndDataBytes = 24;  // u64, 0 unless a constant
constexpr size_t kBndProgram = 32;    // u32 program index or kAllPrograms
constexpr size_t kBndTrainable = 36;  // u8, 0 or 1
constexpr size_t kBndInit = 37;       // u8 InitKind
// 38..39 reserved.
constexpr size_t kBndInitScale = 40;  // f64
constexpr size_t kBndExportName = 48; // StringRef

// ProgramRecord, 16 bytes (section 12, format 1.1).
constexpr uint32_t kProgramBytes = 16;
constexpr size_t kProgName = 0;       // StringRef
constexpr size_t kProgFirstInstr = 8; // u32
constexpr size_t kProgNumInstrs = 12; // u32

// StreamRecord, 8 bytes (section 13, format 1.2).
constexpr uint32_t kStreamBytes = 8;
constexpr size_t kStrKind = 0;  // u8 StreamKind
constexpr size_t kStrFlags = 1; // u8 (format 1.3): bit 0 carried; 2..7 reserved
constexpr uint8_t kStreamCarried = 1;

constexpr uint32_t kNumKnownSections = 13;

/// Record size of each known section: the smallest a reader accepts (the
/// first format that had the section), the size this writer emits, and
/// whether a later minor may grow it (records may; pools of scalars and raw
/// bytes may not). Fields past a short record read as their defaults.
struct SectionShape {
  uint32_t minRecordBytes;
  uint32_t recordBytes;
  bool growable;
};

SectionShape sectionShape(SectionId id) {
  switch (id) {
  case SectionId::kMeta:
    return {kMetaBytes10, kMetaBytes, true};
  case SectionId::kStrings:
    return {1, 1, false};
  case SectionId::kArenas:
    return {kArenaBytes, kArenaBytes, true};
  case SectionId::kBuffers:
    return {kBufferBytes, kBufferBytes, true};
  case SectionId::kTensors:
    return {kTensorBytes, kTensorBytes, true};
  case SectionId::kInstrs:
    return {kInstrBytes, kInstrBytes, true};
  case SectionId::kOperands:
    return {4, 4, false};
  case SectionId::kAttrInts:
    return {8, 8, false};
  case SectionId::kAttrFloats:
    return {8, 8, false};
  case SectionId::kBindings:
    return {kBindingBytes10, kBindingBytes, true};
  case SectionId::kData:
    return {1, 1, false};
  case SectionId::kPrograms:
    return {kProgramBytes, kProgramBytes, true};
  case SectionId::kStreams:
    return {kStreamBytes, kStreamBytes, true};
  }
  return {0, 0, false};
}

const char *sectionName(SectionId id) {
  switch (id) {
  case SectionId::kMeta:
    return "meta";
  case SectionId::kStrings:
    return "strings";
  case SectionId::kArenas:
    return "arenas";
  case SectionId::kBuffers:
    return "buffers";
  case SectionId::kTensors:
    return "tensors";
  case SectionId::kInstrs:
    return "instructions";
  case SectionId::kOperands:
    return "operands";
  case SectionId::kAttrInts:
    return "attr-ints";
  case SectionId::kAttrFloats:
    return "attr-floats";
  case SectionId::kBindings:
    return "bindings";
  case SectionId::kData:
    return "data";
  case SectionId::kPrograms:
    return "programs";
  case SectionId::kStreams:
    return "streams";
  }
  return "?";
}

//===----------------------------------------------------------------------===//
// Little-endian helpers and the checksum
//===----------------------------------------------------------------------===//

uint64_t fnv1a64(const uint8_t *data, size_t size) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

uint64_t loadLE(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}
uint8_t ld8(const uint8_t *p, size_t off) { return p[off]; }
uint16_t ld16(const uint8_t *p, size_t off) {
  return static_cast<uint16_t>(loadLE(p + off, 2));
}
uint32_t ld32(const uint8_t *p, size_t off) {
  return static_cast<uint32_t>(loadLE(p + off, 4));
}
uint64_t ld64(const uint8_t *p, size_t off) { return loadLE(p + off, 8); }
int64_t ldI64(const uint8_t *p, size_t off) {
  return static_cast<int64_t>(ld64(p, off));
}
double ldF64(const uint8_t *p, size_t off) {
  uint64_t bits = ld64(p, off);
  double v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

void storeLE(uint8_t *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void st8(uint8_t *p, size_t off, uint8_t v) { p[off] = v; }
void st16(uint8_t *p, size_t off, uint16_t v) { storeLE(p + off, v, 2); }
void st32(uint8_t *p, size_t off, uint32_t v) { storeLE(p + off, v, 4); }
void st64(uint8_t *p, size_t off, uint64_t v) { storeLE(p + off, v, 8); }

uint64_t alignUp8(uint64_t v) { return (v + 7) & ~uint64_t(7); }
bool isPowerOf2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

/// a + b <= limit without overflowing.
bool fitsIn(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

std::string quoted(const std::string &s) { return "'" + s + "'"; }

Status corrupt(const std::string &message) {
  return Status(StatusCode::kCorruptPlan, message);
}

/// Bytes of a tensor type, or false when dims are negative, rank exceeds
/// kMaxRank, the dtype is not one, or the size overflows 2^62 bytes.
bool checkedTypeBytes(const TensorType &type, uint64_t &bytes,
                      std::string &why) {
  if (!isValidDType(static_cast<uint32_t>(type.dtype))) {
    why = "has an invalid dtype " +
          std::to_string(static_cast<unsigned>(type.dtype));
    return false;
  }
  if (type.rank() > kMaxRank) {
    why = "has rank " + std::to_string(type.rank()) + ", more than " +
          std::to_string(kMaxRank);
    return false;
  }
  constexpr uint64_t kLimit = uint64_t(1) << 62;
  uint64_t elems = 1;
  for (size_t d = 0; d < type.dims.size(); ++d) {
    int64_t dim = type.dims[d];
    if (dim < 0) {
      why = "has negative dim " + std::to_string(dim) + " at index " +
            std::to_string(d);
      return false;
    }
    uint64_t u = static_cast<uint64_t>(dim);
    if (u != 0 && elems > kLimit / u) {
      why = "has more than 2^62 elements";
      return false;
    }
    elems *= u;
  }
  uint64_t esize = dtypeSizeBytes(type.dtype);
  if (elems > kLimit / esize) {
    why = "is larger than 2^62 bytes";
    return false;
  }
  bytes = elems * esize;
  return true;
}

std::string instrLabel(const Plan &plan, size_t i) {
  const PlanInstr &in = plan.instrs[i];
  std::string s = "instruction " + std::to_string(i) + " (" +
                  std::string(opInfo(in.attrs.kind()).name);
  if (!in.location.empty())
    s += " at " + in.location;
  return s + ")";
}

/// Elementwise ops (the unary and binary families of OpTable.h, and
/// fused_elementwise): their kernels read element i before writing element
/// i, so an output may alias an input of the same type exactly.
bool isElementwise(OpKind kind) {
  uint32_t code = static_cast<uint32_t>(kind);
  return (code >= 1 && code <= 17) || (code >= 20 && code <= 35) ||
         kind == OpKind::FusedElementwise;
}

/// The optimizer kernels update a weight and its moments in place, element
/// by element: these (output, input) pairs may alias exactly. They are
/// matched by op name so that this file does not depend on when the kinds
/// were appended to the op table. adamw (and adamw_norm) writes (param, m,
/// v) over its inputs 0, 2, 3 (param, grad, m, v, lr, step[, divisor]);
/// sgd writes (param, buf)
/// over its inputs 0, 2 (param, grad, buf, lr, step).
bool isInPlaceOptimizerPair(std::string_view op, size_t out, size_t in) {
  // The loss gradient over its scores (each row's scores are read before
  // its gradient is written: the CPU and CUDA kernels).
  if (op == "softmax_cross_entropy_grad")
    return out == 0 && in == 0;
  if (op == "adamw" || op == "adamw_norm")
    return (out == 0 && in == 0) || (out == 1 && in == 2) ||
           (out == 2 && in == 3);
  if (op == "sgd")
    return (out == 0 && in == 0) || (out == 1 && in == 2);
  return false;
}

bool isKnownProgramName(const std::string &name) {
  return name == kForwardProgram || name == kMicroStepProgram ||
         name == kApplyStepProgram || name == kTrainStepProgram;
}

/// The type a reserved binding name requires, or nullptr for other names.
const TensorType *reservedType(BindingRole role, const std::string &name) {
  static const TensorType kI64Scalar{DType::kI64, {}};
  static const TensorType kF32Scalar{DType::kF32, {}};
  if (role == BindingRole::kInput && name == kStepInputName)
    return &kI64Scalar;
  if (role == BindingRole::kInput && name == kCountTotalInputName)
    return &kF32Scalar;
  if (role == BindingRole::kOutput && name == kCountOutputName)
    return &kF32Scalar;
  return nullptr;
}

std::string formatDouble(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

} // namespace

const char *memorySpaceName(MemorySpace space) {
  switch (space) {
  case MemorySpace::kDevice:
    return "device";
  case MemorySpace::kHost:
    return "host";
  }
  return "?";
}

const char *streamKindName(StreamKind kind) {
  switch (kind) {
  case StreamKind::kCompute:
    return "compute";
  case StreamKind::kCopy:
    return "copy";
  case StreamKind::kHost:
    return "host";
  }
  return "?";
}

const char *bindingRoleName(BindingRole role) {
  switch (role) {
  case BindingRole::kInput:
    return "input";
  case BindingRole::kOutput:
    return "output";
  case BindingRole::kWeight:
    return "weight";
  case BindingRole::kConstant:
    return "constant";
  case BindingRole::kState:
    return "state";
  }
  return "?";
}

const char *initKindName(InitKind kind) {
  switch (kind) {
  case InitKind::kNone:
    return "none";
  case InitKind::kZeros:
    return "zeros";
  case InitKind::kOnes:
    return "ones";
  case InitKind::kNormal:
    return "normal";
  }
  return "?";
}

//===----------------------------------------------------------------------===//
// validatePlan
//===----------------------------------------------------------------------===//

Status validatePlan(const Plan &plan) {
  if (plan.majorVersion != kPlanMajorVersion)
    return Status(StatusCode::kUnsupported,
                  "plan format version " + std::to_string(plan.majorVersion) +
                      "." + std::to_string(plan.minorVersion) +
                      " is not supported by this runtime (" +
                      std::to_string(kPlanMajorVersion) + ".x)");
  if (plan.worldSize == 0 || plan.worldSize > kMaxWorldSize)
    return corrupt("world size " + std::to_string(plan.worldSize) +
                   " is not in [1, " + std::to_string(kMaxWorldSize) + "]");
  if (plan.rank >= plan.worldSize)
    return corrupt("rank " + std::to_string(plan.rank) +
                   " is not below the world size " +
                   std::to_string(plan.worldSize));
  if (plan.numStreams == 0 || plan.numStreams > kMaxStreams)
    return corrupt("stream count " + std::to_string(plan.numStreams) +
                   " is not in [1, " + std::to_string(kMaxStreams) + "]");
  if (plan.numEvents > kMaxEvents)
    return corrupt("event count " + std::to_string(plan.numEvents) +
                   " exceeds the limit " + std::to_string(kMaxEvents));
  // Format 1.2 stream kinds; none given means every stream computes.
  if (!plan.streamKinds.empty()) {
    if (plan.streamKinds.size() != plan.numStreams)
      return corrupt("stream kinds: " +
                     std::to_string(plan.streamKinds.size()) +
                     " given for " + std::to_string(plan.numStreams) +
                     " streams");
    for (size_t s = 0; s < plan.streamKinds.size(); ++s)
      if (static_cast<unsigned>(plan.streamKinds[s]) >
          static_cast<unsigned>(StreamKind::kHost))
        return corrupt("stream " + std::to_string(s) +
                       ": unknown stream kind " +
                       std::to_string(
                           static_cast<unsigned>(plan.streamKinds[s])));
    if (plan.streamKinds[0] != StreamKind::kCompute)
      return corrupt(std::string("stream 0: kind ") +
                     streamKindName(plan.streamKinds[0]) +
                     ", but stream 0 is always a compute stream");
  }
  // Format 1.3: only host streams run on across a program's end.
  for (uint32_t s = 0; s < 64; ++s) {
    if (!(plan.carriedStreams >> s & 1u))
      continue;
    if (s >= plan.numStreams || s >= plan.streamKinds.size() ||
        plan.streamKinds[s] != StreamKind::kHost)
      return corrupt("stream " + std::to_string(s) +
                     ": marked carried, but only a declared host stream may "
                     "run on across a program's end");
  }
  auto kindOfStream = [&](uint32_t s) {
    return s < plan.streamKinds.size() ? plan.streamKinds[s]
                                       : StreamKind::kCompute;
  };
  // Every count must fit the u32 fields that store it.
  constexpr size_t kMaxCount = std::numeric_limits<uint32_t>::max();
  if (plan.arenas.size() > kMaxCount || plan.buffers.size() > kMaxCount ||
      plan.tensors.size() > kMaxCount || plan.instrs.size() > kMaxCount ||
      plan.bindings.size() > kMaxCount || plan.programs.size() > kMaxCount)
    return corrupt("plan has more than 2^32 - 1 records of one kind");

  for (size_t a = 0; a < plan.arenas.size(); ++a) {
    const PlanArena &arena = plan.arenas[a];
    std::string label = "arena " + std::to_string(a);
    if (arena.space != MemorySpace::kDevice &&
        arena.space != MemorySpace::kHost)
      return corrupt(label + ": invalid memory space " +
                     std::to_string(static_cast<unsigned>(arena.space)));
    if (!isPowerOf2(arena.alignBytes))
      return corrupt(label + ": alignment " + std::to_string(arena.alignBytes) +
                     " is not a power of two");
    if (arena.alignBytes > kMaxAlignBytes)
      return corrupt(label + ": alignment " + std::to_string(arena.alignBytes) +
                     " exceeds the limit " + std::to_string(kMaxAlignBytes));
  }

  for (size_t b = 0; b < plan.buffers.size(); ++b) {
    const PlanBuffer &buf = plan.buffers[b];
    std::string label = "buffer " + std::to_string(b) + " " + quoted(buf.name);
    if (buf.arena >= plan.arenas.size())
      return corrupt(label + ": arena index " + std::to_string(buf.arena) +
                     " is out of range (" + std::to_string(plan.arenas.size()) +
                     " arenas)");
    const PlanArena &arena = plan.arenas[buf.arena];
    if (!fitsIn(buf.offsetBytes, buf.sizeBytes, arena.sizeBytes))
      return corrupt(label + ": offset " + std::to_string(buf.offsetBytes) +
                     " + " + std::to_string(buf.sizeBytes) +
                     " bytes exceeds arena " + std::to_string(buf.arena) +
                     " of " + std::to_string(arena.sizeBytes) + " bytes");
    if (!isPowerOf2(buf.alignBytes))
      return corrupt(label + ": alignment " + std::to_string(buf.alignBytes) +
                     " is not a power of two");
    if (buf.alignBytes > arena.alignBytes)
      return corrupt(label + ": alignment " + std::to_string(buf.alignBytes) +
                     " exceeds arena " + std::to_string(buf.arena) +
                     "'s alignment " + std::to_string(arena.alignBytes));
    if (buf.offsetBytes % buf.alignBytes != 0)
      return corrupt(label + ": offset " + std::to_string(buf.offsetBytes) +
                     " is not a multiple of its alignment " +
                     std::to_string(buf.alignBytes));
    if (buf.liveStart > buf.liveEnd)
      return corrupt(label + ": live range [" + std::to_string(buf.liveStart) +
                     ", " + std::to_string(buf.liveEnd) + "] is reversed");
  }

  // Absolute byte ranges of the tensors, for the aliasing check below.
  struct Extent {
    uint32_t arena;
    uint64_t begin;
    uint64_t bytes;
  };
  std::vector<Extent> extents;
  extents.reserve(plan.tensors.size());
  for (size_t t = 0; t < plan.tensors.size(); ++t) {
    const PlanTensor &ten = plan.tensors[t];
    std::string label = "tensor " + std::to_string(t) + " " + quoted(ten.name);
    if (ten.buffer >= plan.buffers.size())
      return corrupt(label + ": buffer index " + std::to_string(ten.buffer) +
                     " is out of range (" +
                     std::to_string(plan.buffers.size()) + " buffers)");
    uint64_t bytes = 0;
    std::string why;
    if (!checkedTypeBytes(ten.type, bytes, why))
      return corrupt(label + ": type " + why);
    const PlanBuffer &buf = plan.buffers[ten.buffer];
    if (!fitsIn(ten.byteOffset, bytes, buf.sizeBytes))
      return corrupt(label + ": offset " + std::to_string(ten.byteOffset) +
                     " + " + std::to_string(bytes) + " bytes exceeds buffer " +
                     quoted(buf.name) + " of " + std::to_string(buf.sizeBytes) +
                     " bytes");
    uint64_t esize = dtypeSizeBytes(ten.type.dtype);
    if (ten.byteOffset % esize != 0)
      return corrupt(label + ": offset " + std::to_string(ten.byteOffset) +
                     " is not a multiple of its element size " +
                     std::to_string(esize));
    extents.push_back({buf.arena, buf.offsetBytes + ten.byteOffset, bytes});
  }

  std::vector<TensorType> inTypes, outTypes;
  for (size_t i = 0; i < plan.instrs.size(); ++i) {
    const PlanInstr &in = plan.instrs[i];
    const OpInfo *info = lookupOp(static_cast<uint32_t>(in.attrs.kind()));
    if (!info)
      return corrupt("instruction " + std::to_string(i) + ": unknown op kind " +
                     std::to_string(static_cast<uint32_t>(in.attrs.kind())));
    std::string label = instrLabel(plan, i);
    if (in.stream >= plan.numStreams)
      return corrupt(label + ": stream " + std::to_string(in.stream) +
                     " is out of range (" + std::to_string(plan.numStreams) +
                     " streams)");
    int numIn = static_cast<int>(std::min<size_t>(in.inputs.size(), 1 << 30));
    if (numIn < info->minInputs ||
        (info->maxInputs >= 0 && numIn > info->maxInputs)) {
      std::string expected = info->maxInputs < 0
                                 ? "at least " + std::to_string(info->minInputs)
                             : info->minInputs == info->maxInputs
                                 ? std::to_string(info->minInputs)
                                 : std::to_string(info->minInputs) + " to " +
                                       std::to_string(info->maxInputs);
      return corrupt(label + ": has " + std::to_string(in.inputs.size()) +
                     " inputs, " + std::string(info->name) + " takes " +
                     expected);
    }
    inTypes.clear();
    for (size_t k = 0; k < in.inputs.size(); ++k) {
      if (in.inputs[k] >= plan.tensors.size())
        return corrupt(label + ": input " + std::to_string(k) +
                       " tensor index " + std::to_string(in.inputs[k]) +
                       " is out of range (" +
                       std::to_string(plan.tensors.size()) + " tensors)");
      inTypes.push_back(plan.tensors[in.inputs[k]].type);
    }
    for (size_t k = 0; k < in.outputs.size(); ++k)
      if (in.outputs[k] >= plan.tensors.size())
        return corrupt(label + ": output " + std::to_string(k) +
                       " tensor index " + std::to_string(in.outputs[k]) +
                       " is out of range (" +
                       std::to_string(plan.tensors.size()) + " tensors)");
    outTypes.clear();
    Status st = inferOutputTypes(in.attrs, inTypes, outTypes);
    if (!st.isOk())
      return corrupt(label + ": " + st.message());
    if (outTypes.size() != in.outputs.size())
      return corrupt(label + ": has " + std::to_string(in.outputs.size()) +
                     " outputs, " + std::string(info->name) + " gives " +
                     std::to_string(outTypes.size()));
    for (size_t k = 0; k < in.outputs.size(); ++k) {
      const PlanTensor &out = plan.tensors[in.outputs[k]];
      if (out.type != outTypes[k])
        return corrupt(label + ": output " + std::to_string(k) + " (tensor " +
                       std::to_string(in.outputs[k]) + " " + quoted(out.name) +
                       ") is " + out.type.toString() + " but " +
                       std::string(info->name) + " gives " +
                       outTypes[k].toString());
    }
    // Kernels assume outputs do not overlap inputs or each other. The one
    // exception is an exact alias: an elementwise op writing over an input
    // of its own type, a byte-preserving copy (identity, reshape) in place,
    // an optimizer update of a weight and its moments in place, or the loss
    // gradient over its scores.
    for (size_t k = 0; k < in.outputs.size(); ++k) {
      uint32_t o = in.outputs[k];
      const Extent &eo = extents[o];
      auto overlaps = [&](const Extent &e) {
        return e.arena == eo.arena && e.bytes != 0 && eo.bytes != 0 &&
               e.begin < eo.begin + eo.bytes && eo.begin < e.begin + e.bytes;
      };
      for (size_t j = 0; j < in.inputs.size(); ++j) {
        uint32_t x = in.inputs[j];
        const Extent &ex = extents[x];
        if (!overlaps(ex))
          continue;
        bool exact = ex.begin == eo.begin && ex.bytes == eo.bytes;
        bool sameType = plan.tensors[x].type == plan.tensors[o].type;
        bool ok =
            exact && ((isElementwise(in.attrs.kind()) && sameType) ||
                      in.attrs.kind() == OpKind::Identity ||
                      in.attrs.kind() == OpKind::Reshape ||
                      (isInPlaceOptimizerPair(info->name, k, j) && sameType));
        if (!ok)
          return corrupt(label + ": output " + std::to_string(k) + " (tensor " +
                         std::to_string(o) + ") overlaps input " +
                         std::to_string(j) + " (tensor " + std::to_string(x) +
                         ") in memory");
      }
      for (size_t j = k + 1; j < in.outputs.size(); ++j)
        if (overlaps(extents[in.outputs[j]]))
          return corrupt(label + ": outputs " + std::to_string(k) + " and " +
                         std::to_string(j) + " overlap in memory");
    }
  }

  // What each stream kind may run (format 1.2), and event indices. A copy
  // stream is a DMA queue: it moves bytes between the spaces and nothing
  // else; a host stream is CPU threads: they cannot touch device memory.
  for (size_t i = 0; i < plan.instrs.size(); ++i) {
    const PlanInstr &in = plan.instrs[i];
    OpKind kind = in.attrs.kind();
    bool isEvent = kind == OpKind::EventRecord || kind == OpKind::EventWait;
    if (isEvent && static_cast<uint64_t>(in.attrs.i("event")) >=
                       plan.numEvents)
      return corrupt(instrLabel(plan, i) + ": event " +
                     std::to_string(in.attrs.i("event")) +
                     " is out of range (" + std::to_string(plan.numEvents) +
                     " events)");
    StreamKind sk = kindOfStream(in.stream);
    if (isEvent || sk == StreamKind::kCompute)
      continue;
    std::string where = instrLabel(plan, i) + ": stream " +
                        std::to_string(in.stream) + " is a " +
                        streamKindName(sk) + " stream";
    auto spaceOf = [&](uint32_t t) {
      return plan.arenas[extents[t].arena].space;
    };
    if (sk == StreamKind::kCopy) {
      if (kind != OpKind::Identity)
        return corrupt(where + ", which runs only identity copies between "
                               "memory spaces and events");
      if (spaceOf(in.inputs[0]) == spaceOf(in.outputs[0]))
        return corrupt(where + ", but this copy stays in " +
                       memorySpaceName(spaceOf(in.inputs[0])) +
                       " memory (a copy stream moves bytes between spaces)");
      continue;
    }
    for (int pass = 0; pass < 2; ++pass) {
      const std::vector<uint32_t> &ops = pass == 0 ? in.inputs : in.outputs;
      for (size_t k = 0; k < ops.size(); ++k)
        if (spaceOf(ops[k]) != MemorySpace::kHost)
          return corrupt(where + ", but its " +
                         (pass == 0 ? "input " : "output ") +
                         std::to_string(k) + " (tensor " +
                         std::to_string(ops[k]) + ") is in " +
                         memorySpaceName(spaceOf(ops[k])) +
                         " memory (a host stream runs only kernels on host "
                         "tensors)");
    }
  }

  // Programs partition the instructions: consecutive ranges, in order,
  // covering every instruction (an instruction outside every program would
  // never run).
  uint64_t nextInstr = 0;
  std::set<std::string> programNames;
  for (size_t p = 0; p < plan.programs.size(); ++p) {
    const PlanProgram &prog = plan.programs[p];
    std::string label =
        "program " + std::to_string(p) + " " + quoted(prog.name);
    if (!isKnownProgramName(prog.name))
      return corrupt(label + ": unknown program name (expected " +
                     kForwardProgram + ", " + kMicroStepProgram + ", " +
                     kApplyStepProgram + " or " + kTrainStepProgram + ")");
    if (!programNames.insert(prog.name).second)
      return corrupt(label + ": a second program with this name");
    if (prog.firstInstr != nextInstr)
      return corrupt(label + ": starts at instruction " +
                     std::to_string(prog.firstInstr) + ", expected " +
                     std::to_string(nextInstr) +
                     " (programs cover consecutive instruction ranges in "
                     "order)");
    if (!fitsIn(prog.firstInstr, prog.numInstrs, plan.instrs.size()))
      return corrupt(
          label + ": instructions [" + std::to_string(prog.firstInstr) + ", " +
          std::to_string(uint64_t(prog.firstInstr) + prog.numInstrs) +
          ") exceed the " + std::to_string(plan.instrs.size()) +
          " instructions");
    nextInstr = uint64_t(prog.firstInstr) + prog.numInstrs;
  }
  if (!plan.programs.empty()) {
    if (nextInstr != plan.instrs.size())
      return corrupt("instructions [" + std::to_string(nextInstr) + ", " +
                     std::to_string(plan.instrs.size()) +
                     ") belong to no program");
    bool forwardPlan =
        plan.programs.size() == 1 && programNames.count(kForwardProgram);
    bool trainingPlan = plan.programs.size() == 2 &&
                        programNames.count(kMicroStepProgram) &&
                        programNames.count(kApplyStepProgram);
    bool fusedPlan =
        plan.programs.size() == 1 && programNames.count(kTrainStepProgram);
    if (!forwardPlan && !trainingPlan && !fusedPlan) {
      std::string names;
      for (const PlanProgram &prog : plan.programs)
        names += (names.empty() ? "" : ", ") + prog.name;
      return corrupt("programs (" + names +
                     ") are not a valid set: a plan has " + kForwardProgram +
                     " alone, " + kTrainStepProgram + " alone, or " +
                     kMicroStepProgram + " and " + kApplyStepProgram);
    }
  }
  // Every wait needs a record of its event earlier in its program: programs
  // run separately, so a record in another program orders nothing. Except
  // an event a carried stream records: its stream runs on across programs
  // and steps, and a wait before the record waits for the previous run's.
  {
    std::vector<bool> carriedEvent(plan.numEvents, false);
    for (const PlanInstr &in : plan.instrs)
      if (in.attrs.kind() == OpKind::EventRecord && in.stream < 64 &&
          (plan.carriedStreams >> in.stream & 1u))
        carriedEvent[in.attrs.i("event")] = true;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    if (plan.programs.empty())
      ranges.push_back({0, plan.instrs.size()});
    for (const PlanProgram &prog : plan.programs)
      ranges.push_back(
          {prog.firstInstr, uint64_t(prog.firstInstr) + prog.numInstrs});
    std::vector<bool> recorded(plan.numEvents, false);
    for (auto [begin, end] : ranges) {
      std::fill(recorded.begin(), recorded.end(), false);
      for (uint64_t i = begin; i < end; ++i) {
        const PlanInstr &in = plan.instrs[i];
        if (in.attrs.kind() == OpKind::EventRecord)
          recorded[in.attrs.i("event")] = true;
        else if (in.attrs.kind() == OpKind::EventWait &&
                 !recorded[in.attrs.i("event")] &&
                 !carriedEvent[in.attrs.i("event")])
          return corrupt(instrLabel(plan, i) + ": waits for event " +
                         std::to_string(in.attrs.i("event")) +
                         ", which no earlier event_record of its program "
                         "records");
      }
    }
  }

  const size_t numPrograms = plan.programs.size();
  const bool trainingPlan =
      numPrograms > 1 ||
      (numPrograms == 1 && plan.programs[0].name == kTrainStepProgram);

  // Names are unique per role (and, for inputs and outputs of a plan with
  // several programs, per program). Weights and states share one namespace:
  // a checkpoint stores both by name. Export names are unique too: they
  // key the exported weights file.
  std::set<std::tuple<uint8_t, uint32_t, std::string>> seen;
  std::map<std::string, size_t> persistentNames, exportNames;
  std::vector<bool> persistentBuffer(plan.buffers.size(), false);
  for (size_t b = 0; b < plan.bindings.size(); ++b) {
    const PlanBinding &bind = plan.bindings[b];
    std::string label = "binding " + std::to_string(b);
    if (static_cast<unsigned>(bind.role) >
        static_cast<unsigned>(BindingRole::kState))
      return corrupt(label + ": invalid role " +
                     std::to_string(static_cast<unsigned>(bind.role)));
    label += " (" + std::string(bindingRoleName(bind.role)) + " " +
             quoted(bind.name) + ")";
    if (bind.name.empty())
      return corrupt(label + ": empty name");
    if (bind.tensor >= plan.tensors.size())
      return corrupt(label + ": tensor index " + std::to_string(bind.tensor) +
                     " is out of range (" +
                     std::to_string(plan.tensors.size()) + " tensors)");
    const TensorType &type = plan.tensors[bind.tensor].type;
    bool io =
        bind.role == BindingRole::kInput || bind.role == BindingRole::kOutput;
    if (bind.program != kAllPrograms && bind.program >= numPrograms)
      return corrupt(label + ": program index " + std::to_string(bind.program) +
                     " is out of range (" + std::to_string(numPrograms) +
                     " programs)");
    if (!io && bind.program != kAllPrograms)
      return corrupt(label + ": a " + bindingRoleName(bind.role) +
                     " belongs to every program (program " +
                     std::to_string(kAllPrograms) + "), got program " +
                     std::to_string(bind.program));
    if (io && trainingPlan && bind.program == kAllPrograms)
      return corrupt(label + ": must name its program in a plan with " +
                     std::to_string(numPrograms) + " programs");
    uint32_t programKey = io && trainingPlan ? bind.program : 0;
    if (!seen.insert({static_cast<uint8_t>(bind.role), programKey, bind.name})
             .second)
      return corrupt(
          label + ": a second " + std::string(bindingRoleName(bind.role)) +
          " binding with this name" +
          (io && trainingPlan
               ? " in program " + quoted(plan.programs[bind.program].name)
               : std::string()));
    if (const TensorType *want = reservedType(bind.role, bind.name))
      if (type != *want)
        return corrupt(label + ": the reserved name needs " + want->toString() +
                       ", tensor " + std::to_string(bind.tensor) + " is " +
                       type.toString());

    // The 1.1 weight fields.
    if (static_cast<unsigned>(bind.init) >
        static_cast<unsigned>(InitKind::kNormal))
      return corrupt(label + ": invalid init kind " +
                     std::to_string(static_cast<unsigned>(bind.init)));
    if (bind.role != BindingRole::kWeight) {
      if (bind.trainable)
        return corrupt(label + ": only weights can be trainable");
      if (bind.init != InitKind::kNone || bind.initScale != 0.0)
        return corrupt(label + ": only weights have an init rule");
      if (!bind.exportName.empty())
        return corrupt(label + ": only weights have an export name");
    }
    if (bind.init == InitKind::kNormal) {
      if (!(bind.initScale > 0.0) || !std::isfinite(bind.initScale))
        return corrupt(label + ": init normal needs a finite scale > 0, got " +
                       formatDouble(bind.initScale));
      if (!isFloatDType(type.dtype))
        return corrupt(label + ": init normal needs a float tensor, got " +
                       type.toString());
    } else if (bind.initScale != 0.0) {
      return corrupt(label + ": init scale " + formatDouble(bind.initScale) +
                     " given for init " + initKindName(bind.init) +
                     " (only normal takes a scale)");
    }
    if (bind.role == BindingRole::kWeight || bind.role == BindingRole::kState) {
      auto it = persistentNames.emplace(bind.name, b);
      if (!it.second)
        return corrupt(label + ": binding " + std::to_string(it.first->second) +
                       " (" +
                       bindingRoleName(plan.bindings[it.first->second].role) +
                       ") has the same name (checkpoints key weights and "
                       "states by name)");
      if (bind.role == BindingRole::kState || trainingPlan)
        persistentBuffer[plan.tensors[bind.tensor].buffer] = true;
    }
    if (bind.role == BindingRole::kWeight) {
      const std::string &exported =
          bind.exportName.empty() ? bind.name : bind.exportName;
      auto it = exportNames.emplace(exported, b);
      if (!it.second)
        return corrupt(label + ": export name " + quoted(exported) +
                       " is also binding " + std::to_string(it.first->second) +
                       "'s");
    }

    // Tensor sizes were checked above, so sizeBytes() cannot overflow.
    uint64_t bytes = type.sizeBytes();
    if (bind.role == BindingRole::kConstant) {
      if (bind.data.size() != bytes)
        return corrupt(label + ": has " + std::to_string(bind.data.size()) +
                       " data bytes, tensor " + std::to_string(bind.tensor) +
                       " (" + type.toString() + ") needs " +
                       std::to_string(bytes));
    } else if (!bind.data.empty()) {
      return corrupt(label + ": has " + std::to_string(bind.data.size()) +
                     " data bytes, but only constants carry data");
    }
  }

  // States (and the weights of a training plan) keep their values from one
  // program and step to the next, so no other buffer may reuse their bytes.
  // O(persistent x buffers): a few hundred by a few thousand in practice.
  for (size_t p = 0; p < plan.buffers.size(); ++p) {
    if (!persistentBuffer[p])
      continue;
    const PlanBuffer &pb = plan.buffers[p];
    for (size_t q = 0; q < plan.buffers.size(); ++q) {
      const PlanBuffer &qb = plan.buffers[q];
      if (q == p || qb.arena != pb.arena || pb.sizeBytes == 0 ||
          qb.sizeBytes == 0 ||
          qb.offsetBytes >= pb.offsetBytes + pb.sizeBytes ||
          pb.offsetBytes >= qb.offsetBytes + qb.sizeBytes)
        continue;
      return corrupt("buffer " + std::to_string(p) + " " + quoted(pb.name) +
                     " holds a state or a training weight, but buffer " +
                     std::to_string(q) + " " + quoted(qb.name) +
                     " shares its bytes (persistent buffers keep their bytes "
                     "for the whole run)");
    }
  }
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// writePlan
//===----------------------------------------------------------------------===//

namespace {

/// Builds the strings section. Equal strings share one copy; the first use
/// decides the offset, so the layout depends only on the plan.
class StringTable {
public:
  bool add(const std::string &s, uint8_t *record, size_t off) {
    uint32_t offset = 0;
    if (!s.empty()) {
      auto it = index_.find(s);
      if (it != index_.end()) {
        offset = it->second;
      } else {
        if (bytes_.size() + s.size() > std::numeric_limits<uint32_t>::max())
          return false;
        offset = static_cast<uint32_t>(bytes_.size());
        bytes_.insert(bytes_.end(), s.begin(), s.end());
        index_.emplace(s, offset);
      }
    }
    if (s.size() > std::numeric_limits<uint32_t>::max())
      return false;
    st32(record, off, offset);
    st32(record, off + 4, static_cast<uint32_t>(s.size()));
    return true;
  }
  std::vector<uint8_t> &bytes() { return bytes_; }

private:
  std::vector<uint8_t> bytes_;
  std::map<std::string, uint32_t> index_;
};

} // namespace

Status writePlan(const Plan &plan, std::vector<uint8_t> &bytes) {
  COLOSSAL_RETURN_IF_ERROR(validatePlan(plan));

  std::vector<uint8_t> sections[kNumKnownSections + 1];
  auto section = [&](SectionId id) -> std::vector<uint8_t> & {
    return sections[static_cast<uint32_t>(id)];
  };
  StringTable strings;
  Status tooBig = Status(StatusCode::kInvalidArgument,
                         "plan strings exceed the 4 GiB strings section");

  std::vector<uint8_t> &meta = section(SectionId::kMeta);
  meta.assign(kMetaBytes, 0);
  st32(meta.data(), kMetaWorldSize, plan.worldSize);
  st32(meta.data(), kMetaRank, plan.rank);
  st32(meta.data(), kMetaNumStreams, plan.numStreams);
  st32(meta.data(), kMetaNumEvents, plan.numEvents);
  if (!strings.add(plan.sourceModel, meta.data(), kMetaSourceModel) ||
      !strings.add(plan.weightsFile, meta.data(), kMetaWeightsFile) ||
      !strings.add(plan.trainConfig, meta.data(), kMetaTrainConfig))
    return tooBig;
  st32(meta.data(), kMetaNumArenas, static_cast<uint32_t>(plan.arenas.size()));
  st32(meta.data(), kMetaNumBuffers,
       static_cast<uint32_t>(plan.buffers.size()));
  st32(meta.data(), kMetaNumTensors,
       static_cast<uint32_t>(plan.tensors.size()));
  st32(meta.data(), kMetaNumInstrs, static_cast<uint32_t>(plan.instrs.size()));
  st32(meta.data(), kMetaNumBindings,
       static_cast<uint32_t>(plan.bindings.size()));
  st32(meta.data(), kMetaNumPrograms,
       static_cast<uint32_t>(plan.programs.size()));

  std::vector<uint8_t> &arenas = section(SectionId::kArenas);
  arenas.assign(plan.arenas.size() * kArenaBytes, 0);
  for (size_t a = 0; a < plan.arenas.size(); ++a) {
    uint8_t *r = arenas.data() + a * kArenaBytes;
    st8(r, kArenaSpace, static_cast<uint8_t>(plan.arenas[a].space));
    st64(r, kArenaSizeBytes, plan.arenas[a].sizeBytes);
    st64(r, kArenaAlignBytes, plan.arenas[a].alignBytes);
  }

  std::vector<uint8_t> &buffers = section(SectionId::kBuffers);
  buffers.assign(plan.buffers.size() * kBufferBytes, 0);
  for (size_t b = 0; b < plan.buffers.size(); ++b) {
    const PlanBuffer &buf = plan.buffers[b];
    uint8_t *r = buffers.data() + b * kBufferBytes;
    if (!strings.add(buf.name, r, kBufName))
      return tooBig;
    st32(r, kBufArena, buf.arena);
    st32(r, kBufLiveStart, buf.liveStart);
    st64(r, kBufOffsetBytes, buf.offsetBytes);
    st64(r, kBufSizeBytes, buf.sizeBytes);
    st64(r, kBufAlignBytes, buf.alignBytes);
    st32(r, kBufLiveEnd, buf.liveEnd);
  }

  std::vector<uint8_t> &tensors = section(SectionId::kTensors);
  tensors.assign(plan.tensors.size() * kTensorBytes, 0);
  for (size_t t = 0; t < plan.tensors.size(); ++t) {
    const PlanTensor &ten = plan.tensors[t];
    uint8_t *r = tensors.data() + t * kTensorBytes;
    if (!strings.add(ten.name, r, kTenName))
      return tooBig;
    st32(r, kTenBuffer, ten.buffer);
    st8(r, kTenDType, static_cast<uint8_t>(ten.type.dtype));
    st8(r, kTenRank, static_cast<uint8_t>(ten.type.rank()));
    st64(r, kTenByteOffset, ten.byteOffset);
    for (size_t d = 0; d < ten.type.rank(); ++d)
      st64(r, kTenDims + 8 * d, static_cast<uint64_t>(ten.type.dims[d]));
  }

  std::vector<uint8_t> &instrs = section(SectionId::kInstrs);
  std::vector<uint8_t> &operands = section(SectionId::kOperands);
  std::vector<int64_t> ints;
  std::vector<double> floats;
  instrs.assign(plan.instrs.size() * kInstrBytes, 0);
  uint64_t numOperands = 0;
  for (const PlanInstr &in : plan.instrs)
    numOperands += in.inputs.size() + in.outputs.size();
  if (numOperands > std::numeric_limits<uint32_t>::max())
    return Status(StatusCode::kInvalidArgument,
                  "plan has more than 2^32 - 1 operands");
  operands.reserve(numOperands * 4);
  for (size_t i = 0; i < plan.instrs.size(); ++i) {
    const PlanInstr &in = plan.instrs[i];
    uint8_t *r = instrs.data() + i * kInstrBytes;
    st32(r, kInsKind, static_cast<uint32_t>(in.attrs.kind()));
    st32(r, kInsStream, in.stream);
    st32(r, kInsOperandsBegin, static_cast<uint32_t>(operands.size() / 4));
    st32(r, kInsNumInputs, static_cast<uint32_t>(in.inputs.size()));
    st32(r, kInsNumOutputs, static_cast<uint32_t>(in.outputs.size()));
    for (uint32_t idx : in.inputs) {
      operands.resize(operands.size() + 4);
      st32(operands.data(), operands.size() - 4, idx);
    }
    for (uint32_t idx : in.outputs) {
      operands.resize(operands.size() + 4);
      st32(operands.data(), operands.size() - 4, idx);
    }
    size_t intsBegin = ints.size(), floatsBegin = floats.size();
    in.attrs.encode(ints, floats);
    if (ints.size() > std::numeric_limits<uint32_t>::max() ||
        floats.size() > std::numeric_limits<uint32_t>::max())
      return Status(StatusCode::kInvalidArgument,
                    "plan attribute pools exceed 2^32 - 1 values");
    st32(r, kInsIntsBegin, static_cast<uint32_t>(intsBegin));
    st32(r, kInsNumInts, static_cast<uint32_t>(ints.size() - intsBegin));
    st32(r, kInsFloatsBegin, static_cast<uint32_t>(floatsBegin));
    st32(r, kInsNumFloats, static_cast<uint32_t>(floats.size() - floatsBegin));
    if (!strings.add(in.location, r, kInsLocation))
      return tooBig;
  }
  std::vector<uint8_t> &attrInts = section(SectionId::kAttrInts);
  attrInts.assign(ints.size() * 8, 0);
  for (size_t k = 0; k < ints.size(); ++k)
    st64(attrInts.data(), 8 * k, static_cast<uint64_t>(ints[k]));
  std::vector<uint8_t> &attrFloats = section(SectionId::kAttrFloats);
  attrFloats.assign(floats.size() * 8, 0);
  for (size_t k = 0; k < floats.size(); ++k) {
    uint64_t bits;
    std::memcpy(&bits, &floats[k], sizeof(bits));
    st64(attrFloats.data(), 8 * k, bits);
  }

  std::vector<uint8_t> &bindings = section(SectionId::kBindings);
  std::vector<uint8_t> &data = section(SectionId::kData);
  bindings.assign(plan.bindings.size() * kBindingBytes, 0);
  for (size_t b = 0; b < plan.bindings.size(); ++b) {
    const PlanBinding &bind = plan.bindings[b];
    uint8_t *r = bindings.data() + b * kBindingBytes;
    st8(r, kBndRole, static_cast<uint8_t>(bind.role));
    st32(r, kBndTensor, bind.tensor);
    if (!strings.add(bind.name, r, kBndName))
      return tooBig;
    st32(r, kBndProgram, bind.program);
    st8(r, kBndTrainable, bind.trainable ? 1 : 0);
    st8(r, kBndInit, static_cast<uint8_t>(bind.init));
    uint64_t scaleBits;
    std::memcpy(&scaleBits, &bind.initScale, sizeof(scaleBits));
    st64(r, kBndInitScale, scaleBits);
    if (!strings.add(bind.exportName, r, kBndExportName))
      return tooBig;
    if (!bind.data.empty()) {
      // Each constant starts 8-aligned within the data section.
      data.resize(alignUp8(data.size()), 0);
      st64(r, kBndDataOffset, data.size());
      st64(r, kBndDataBytes, bind.data.size());
      data.insert(data.end(), bind.data.begin(), bind.data.end());
    }
  }
  std::vector<uint8_t> &programs = section(SectionId::kPrograms);
  programs.assign(plan.programs.size() * kProgramBytes, 0);
  for (size_t p = 0; p < plan.programs.size(); ++p) {
    const PlanProgram &prog = plan.programs[p];
    uint8_t *r = programs.data() + p * kProgramBytes;
    if (!strings.add(prog.name, r, kProgName))
      return tooBig;
    st32(r, kProgFirstInstr, prog.firstInstr);
    st32(r, kProgNumInstrs, prog.numInstrs);
  }
  std::vector<uint8_t> &streams = section(SectionId::kStreams);
  streams.assign(size_t(plan.numStreams) * kStreamBytes, 0);
  for (size_t k = 0; k < plan.streamKinds.size(); ++k) {
    st8(streams.data() + k * kStreamBytes, kStrKind,
        static_cast<uint8_t>(plan.streamKinds[k]));
    if (k < 64 && (plan.carriedStreams >> k & 1u))
      st8(streams.data() + k * kStreamBytes, kStrFlags, kStreamCarried);
  }
  section(SectionId::kStrings) = std::move(strings.bytes());

  // Assemble: header, section table (ids ascending), payloads in id order.
  uint64_t tableEnd = kHeaderBytes + kNumKnownSections * kSectionEntryBytes;
  uint64_t total = tableEnd;
  for (uint32_t id = 1; id <= kNumKnownSections; ++id)
    total = alignUp8(total) + sections[id].size();
  total = alignUp8(total);
  bytes.assign(total, 0);
  uint8_t *out = bytes.data();
  uint64_t cursor = tableEnd;
  for (uint32_t id = 1; id <= kNumKnownSections; ++id) {
    cursor = alignUp8(cursor);
    uint8_t *entry = out + kHeaderBytes + (id - 1) * kSectionEntryBytes;
    st32(entry, kSecId, id);
    st32(entry, kSecRecordBytes,
         sectionShape(static_cast<SectionId>(id)).recordBytes);
    st64(entry, kSecOffset, cursor);
    st64(entry, kSecSizeBytes, sections[id].size());
    if (!sections[id].empty())
      std::memcpy(out + cursor, sections[id].data(), sections[id].size());
    cursor += sections[id].size();
  }

  std::memcpy(out + kHdrMagic, kPlanMagic, sizeof(kPlanMagic));
  st16(out, kHdrMajor, kPlanMajorVersion);
  st16(out, kHdrMinor, kPlanMinorVersion);
  st32(out, kHdrHeaderBytes, kHeaderBytes);
  st64(out, kHdrFileBytes, total);
  st32(out, kHdrNumSections, kNumKnownSections);
  st32(out, kHdrSectionEntryBytes, kSectionEntryBytes);
  st64(out, kHdrChecksum, fnv1a64(out + kHeaderBytes, total - kHeaderBytes));
  st64(out, kHdrHeaderChecksum, fnv1a64(out, kHdrHeaderChecksum));
  return Status::ok();
}

Status writePlanFile(const Plan &plan, const std::string &path) {
  std::vector<uint8_t> bytes;
  COLOSSAL_RETURN_IF_ERROR(writePlan(plan, bytes));
  // Write beside the target and rename, so that readers never see a
  // half-written plan and a failed write leaves the old file in place.
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    return Status(StatusCode::kIoError,
                  path + ": cannot write: " + std::strerror(errno));
  bool ok = bytes.empty() ||
            std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    int err = errno;
    std::remove(tmp.c_str());
    return Status(StatusCode::kIoError,
                  path + ": write failed: " + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return Status(StatusCode::kIoError,
                  path + ": cannot rename " + tmp +
                      " into place: " + std::strerror(err));
  }
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// readPlan
//===----------------------------------------------------------------------===//

namespace {

struct SectionView {
  bool present = false;
  uint32_t recordBytes = 0;
  uint64_t offset = 0;
  uint64_t sizeBytes = 0;
  const uint8_t *data = nullptr;
  uint64_t count() const { return recordBytes ? sizeBytes / recordBytes : 0; }
  const uint8_t *record(uint64_t i) const { return data + i * recordBytes; }
};

/// Decodes records from a file whose header and section table were
/// checked; each decode step checks what it reads.
class PlanDecoder {
public:
  explicit PlanDecoder(const SectionView *sections) : sections_(sections) {}

  const SectionView &sec(SectionId id) const {
    return sections_[static_cast<uint32_t>(id)];
  }

  Status string(const uint8_t *record, size_t off, const std::string &what,
                std::string &out) const {
    uint32_t offset = ld32(record, off), length = ld32(record, off + 4);
    const SectionView &s = sec(SectionId::kStrings);
    if (!fitsIn(offset, length, s.sizeBytes))
      return corrupt(what + ": string at " + std::to_string(offset) + " + " +
                     std::to_string(length) +
                     " bytes exceeds the strings section of " +
                     std::to_string(s.sizeBytes) + " bytes");
    out.assign(reinterpret_cast<const char *>(s.data) + offset, length);
    return Status::ok();
  }

  Status decode(Plan &plan) const;

private:
  const SectionView *sections_;
};

Status checkCount(const SectionView &s, SectionId id, uint32_t metaCount) {
  if (s.count() != metaCount)
    return corrupt(std::string("meta record says ") +
                   std::to_string(metaCount) + " " + sectionName(id) +
                   " but the " + sectionName(id) + " section holds " +
                   std::to_string(s.count()));
  return Status::ok();
}

Status PlanDecoder::decode(Plan &plan) const {
  const SectionView &metaSec = sec(SectionId::kMeta);
  if (!metaSec.present || metaSec.count() != 1)
    return corrupt("the meta section must hold exactly one record, found " +
                   std::to_string(metaSec.count()));
  const uint8_t *meta = metaSec.record(0);
  plan.worldSize = ld32(meta, kMetaWorldSize);
  plan.rank = ld32(meta, kMetaRank);
  plan.numStreams = ld32(meta, kMetaNumStreams);
  plan.numEvents = ld32(meta, kMetaNumEvents);
  COLOSSAL_RETURN_IF_ERROR(
      string(meta, kMetaSourceModel, "meta source model", plan.sourceModel));
  COLOSSAL_RETURN_IF_ERROR(
      string(meta, kMetaWeightsFile, "meta weights file", plan.weightsFile));
  // Format 1.0 meta records end before the train config; their bytes
  // 52..55 (now the program count) were reserved and written as zero.
  if (metaSec.recordBytes >= kMetaBytes)
    COLOSSAL_RETURN_IF_ERROR(
        string(meta, kMetaTrainConfig, "meta train config", plan.trainConfig));

  // Counts are only trusted once they agree with the section sizes, which
  // were checked against the file size: no allocation below exceeds what
  // the file's bytes justify.
  const SectionView &arenaSec = sec(SectionId::kArenas);
  const SectionView &bufferSec = sec(SectionId::kBuffers);
  const SectionView &tensorSec = sec(SectionId::kTensors);
  const SectionView &instrSec = sec(SectionId::kInstrs);
  const SectionView &bindingSec = sec(SectionId::kBindings);
  COLOSSAL_RETURN_IF_ERROR(
      checkCount(arenaSec, SectionId::kArenas, ld32(meta, kMetaNumArenas)));
  COLOSSAL_RETURN_IF_ERROR(
      checkCount(bufferSec, SectionId::kBuffers, ld32(meta, kMetaNumBuffers)));
  COLOSSAL_RETURN_IF_ERROR(
      checkCount(tensorSec, SectionId::kTensors, ld32(meta, kMetaNumTensors)));
  COLOSSAL_RETURN_IF_ERROR(
      checkCount(instrSec, SectionId::kInstrs, ld32(meta, kMetaNumInstrs)));
  COLOSSAL_RETURN_IF_ERROR(checkCount(bindingSec, SectionId::kBindings,
                                      ld32(meta, kMetaNumBindings)));
  const SectionView &programSec = sec(SectionId::kPrograms);
  COLOSSAL_RETURN_IF_ERROR(checkCount(programSec, SectionId::kPrograms,
                                      ld32(meta, kMetaNumPrograms)));

  plan.arenas.resize(arenaSec.count());
  for (uint64_t a = 0; a < arenaSec.count(); ++a) {
    const uint8_t *r = arenaSec.record(a);
    uint8_t space = ld8(r, kArenaSpace);
    if (space > static_cast<uint8_t>(MemorySpace::kHost))
      return corrupt("arena " + std::to_string(a) + ": invalid memory space " +
                     std::to_string(space));
    plan.arenas[a].space = static_cast<MemorySpace>(space);
    plan.arenas[a].sizeBytes = ld64(r, kArenaSizeBytes);
    plan.arenas[a].alignBytes = ld64(r, kArenaAlignBytes);
  }

  plan.buffers.resize(bufferSec.count());
  for (uint64_t b = 0; b < bufferSec.count(); ++b) {
    const uint8_t *r = bufferSec.record(b);
    PlanBuffer &buf = plan.buffers[b];
    COLOSSAL_RETURN_IF_ERROR(
        string(r, kBufName, "buffer " + std::to_string(b) + " name", buf.name));
    buf.arena = ld32(r, kBufArena);
    buf.liveStart = ld32(r, kBufLiveStart);
    buf.offsetBytes = ld64(r, kBufOffsetBytes);
    buf.sizeBytes = ld64(r, kBufSizeBytes);
    buf.alignBytes = ld64(r, kBufAlignBytes);
    buf.liveEnd = ld32(r, kBufLiveEnd);
  }

  plan.tensors.resize(tensorSec.count());
  for (uint64_t t = 0; t < tensorSec.count(); ++t) {
    const uint8_t *r = tensorSec.record(t);
    PlanTensor &ten = plan.tensors[t];
    std::string label = "tensor " + std::to_string(t);
    COLOSSAL_RETURN_IF_ERROR(string(r, kTenName, label + " name", ten.name));
    ten.buffer = ld32(r, kTenBuffer);
    uint8_t dtype = ld8(r, kTenDType);
    if (!isValidDType(dtype))
      return corrupt(label + " " + quoted(ten.name) + ": invalid dtype " +
                     std::to_string(dtype));
    ten.type.dtype = static_cast<DType>(dtype);
    uint8_t rank = ld8(r, kTenRank);
    if (rank > kMaxRank)
      return corrupt(label + " " + quoted(ten.name) + ": rank " +
                     std::to_string(rank) + " exceeds " +
                     std::to_string(kMaxRank));
    ten.byteOffset = ld64(r, kTenByteOffset);
    ten.type.dims.resize(rank);
    for (size_t d = 0; d < kMaxRank; ++d) {
      int64_t dim = ldI64(r, kTenDims + 8 * d);
      if (d < rank)
        ten.type.dims[d] = dim;
      else if (dim != 0)
        return corrupt(label + " " + quoted(ten.name) + ": dim slot " +
                       std::to_string(d) + " past rank " +
                       std::to_string(rank) + " is " + std::to_string(dim) +
                       ", not 0");
    }
  }

  const SectionView &operandSec = sec(SectionId::kOperands);
  const SectionView &intSec = sec(SectionId::kAttrInts);
  const SectionView &floatSec = sec(SectionId::kAttrFloats);
  std::vector<int64_t> ints;
  std::vector<double> floats;
  plan.instrs.resize(instrSec.count());
  for (uint64_t i = 0; i < instrSec.count(); ++i) {
    const uint8_t *r = instrSec.record(i);
    PlanInstr &in = plan.instrs[i];
    std::string label = "instruction " + std::to_string(i);
    uint32_t rawKind = ld32(r, kInsKind);
    const OpInfo *info = lookupOp(rawKind);
    if (!info)
      return corrupt(label + ": unknown op kind " + std::to_string(rawKind));
    COLOSSAL_RETURN_IF_ERROR(
        string(r, kInsLocation, label + " location", in.location));
    label += " (" + std::string(info->name) +
             (in.location.empty() ? "" : " at " + in.location) + ")";
    in.stream = ld32(r, kInsStream);

    uint64_t begin = ld32(r, kInsOperandsBegin);
    uint64_t numIn = ld32(r, kInsNumInputs), numOut = ld32(r, kInsNumOutputs);
    if (!fitsIn(begin, numIn + numOut, operandSec.count()))
      return corrupt(label + ": operands [" + std::to_string(begin) + ", " +
                     std::to_string(begin + numIn + numOut) +
                     ") exceed the operand pool of " +
                     std::to_string(operandSec.count()));
    in.inputs.resize(numIn);
    in.outputs.resize(numOut);
    for (uint64_t k = 0; k < numIn; ++k)
      in.inputs[k] = ld32(operandSec.data, 4 * (begin + k));
    for (uint64_t k = 0; k < numOut; ++k)
      in.outputs[k] = ld32(operandSec.data, 4 * (begin + numIn + k));

    uint64_t intsBegin = ld32(r, kInsIntsBegin), numInts = ld32(r, kInsNumInts);
    uint64_t floatsBegin = ld32(r, kInsFloatsBegin),
             numFloats = ld32(r, kInsNumFloats);
    if (!fitsIn(intsBegin, numInts, intSec.count()))
      return corrupt(label + ": attribute ints [" + std::to_string(intsBegin) +
                     ", " + std::to_string(intsBegin + numInts) +
                     ") exceed the pool of " + std::to_string(intSec.count()));
    if (!fitsIn(floatsBegin, numFloats, floatSec.count()))
      return corrupt(
          label + ": attribute floats [" + std::to_string(floatsBegin) + ", " +
          std::to_string(floatsBegin + numFloats) + ") exceed the pool of " +
          std::to_string(floatSec.count()));
    ints.resize(numInts);
    floats.resize(numFloats);
    for (uint64_t k = 0; k < numInts; ++k)
      ints[k] = ldI64(intSec.data, 8 * (intsBegin + k));
    for (uint64_t k = 0; k < numFloats; ++k)
      floats[k] = ldF64(floatSec.data, 8 * (floatsBegin + k));
    Status st = Attrs::decode(info->kind, ints.data(), ints.size(),
                              floats.data(), floats.size(), in.attrs);
    if (!st.isOk())
      return corrupt(label + ": " + st.message());
  }

  const SectionView &dataSec = sec(SectionId::kData);
  plan.bindings.resize(bindingSec.count());
  for (uint64_t b = 0; b < bindingSec.count(); ++b) {
    const uint8_t *r = bindingSec.record(b);
    PlanBinding &bind = plan.bindings[b];
    std::string label = "binding " + std::to_string(b);
    uint8_t role = ld8(r, kBndRole);
    if (role > static_cast<uint8_t>(BindingRole::kState))
      return corrupt(label + ": invalid role " + std::to_string(role));
    bind.role = static_cast<BindingRole>(role);
    bind.tensor = ld32(r, kBndTensor);
    COLOSSAL_RETURN_IF_ERROR(string(r, kBndName, label + " name", bind.name));
    label += " (" + std::string(bindingRoleName(bind.role)) + " " +
             quoted(bind.name) + ")";
    uint64_t offset = ld64(r, kBndDataOffset), size = ld64(r, kBndDataBytes);
    if (bind.role != BindingRole::kConstant && (offset != 0 || size != 0))
      return corrupt(label + ": has data range " + std::to_string(offset) +
                     " + " + std::to_string(size) +
                     " bytes, but only constants carry data");
    if (!fitsIn(offset, size, dataSec.sizeBytes))
      return corrupt(label + ": data at " + std::to_string(offset) + " + " +
                     std::to_string(size) +
                     " bytes exceeds the data section of " +
                     std::to_string(dataSec.sizeBytes) + " bytes");
    if (size != 0)
      bind.data.assign(dataSec.data + offset, dataSec.data + offset + size);
    // Format 1.0 records (32 bytes) stop here: the fields below keep their
    // defaults (every program, not trainable, no init rule, no export name).
    if (bindingSec.recordBytes < kBindingBytes)
      continue;
    bind.program = ld32(r, kBndProgram);
    uint8_t trainable = ld8(r, kBndTrainable), init = ld8(r, kBndInit);
    if (trainable > 1)
      return corrupt(label + ": trainable flag " + std::to_string(trainable) +
                     " is not 0 or 1");
    if (init > static_cast<uint8_t>(InitKind::kNormal))
      return corrupt(label + ": invalid init kind " + std::to_string(init));
    bind.trainable = trainable != 0;
    bind.init = static_cast<InitKind>(init);
    bind.initScale = ldF64(r, kBndInitScale);
    COLOSSAL_RETURN_IF_ERROR(
        string(r, kBndExportName, label + " export name", bind.exportName));
  }

  plan.programs.resize(programSec.count());
  for (uint64_t p = 0; p < programSec.count(); ++p) {
    const uint8_t *r = programSec.record(p);
    PlanProgram &prog = plan.programs[p];
    COLOSSAL_RETURN_IF_ERROR(string(
        r, kProgName, "program " + std::to_string(p) + " name", prog.name));
    prog.firstInstr = ld32(r, kProgFirstInstr);
    prog.numInstrs = ld32(r, kProgNumInstrs);
  }

  // Format 1.2: one record per stream. Older files have none: every stream
  // computes (streamKinds stays empty).
  const SectionView &streamSec = sec(SectionId::kStreams);
  if (streamSec.present) {
    // The range first: a corrupt count is reported as such, not as a
    // mismatch with the section.
    if (plan.numStreams < 1 || plan.numStreams > kMaxStreams)
      return corrupt("stream count " + std::to_string(plan.numStreams) +
                     " is not in [1, " + std::to_string(kMaxStreams) + "]");
    if (streamSec.count() != plan.numStreams)
      return corrupt("meta record says " + std::to_string(plan.numStreams) +
                     " streams but the streams section holds " +
                     std::to_string(streamSec.count()));
    plan.streamKinds.resize(streamSec.count());
    for (uint64_t k = 0; k < streamSec.count(); ++k) {
      uint8_t kind = ld8(streamSec.record(k), kStrKind);
      if (kind > static_cast<uint8_t>(StreamKind::kHost))
        return corrupt("stream " + std::to_string(k) +
                       ": unknown stream kind " + std::to_string(kind));
      plan.streamKinds[k] = static_cast<StreamKind>(kind);
      uint8_t flags = ld8(streamSec.record(k), kStrFlags);
      if (flags & ~kStreamCarried)
        return corrupt("stream " + std::to_string(k) + ": unknown flags " +
                       std::to_string(flags));
      if (flags & kStreamCarried)
        plan.carriedStreams |= uint64_t{1} << k;
    }
  }
  return Status::ok();
}

} // namespace

Status readPlan(const uint8_t *data, size_t size, Plan &plan) {
  plan = Plan();
  if (size < kHeaderBytes)
    return corrupt("file is " + std::to_string(size) +
                   " bytes, smaller than the 64-byte plan header");
  if (std::memcmp(data + kHdrMagic, kPlanMagic, sizeof(kPlanMagic)) != 0)
    return corrupt("not a plan file (bad magic)");
  uint16_t major = ld16(data, kHdrMajor), minor = ld16(data, kHdrMinor);
  if (major != kPlanMajorVersion)
    return Status(StatusCode::kUnsupported,
                  "plan format version " + std::to_string(major) + "." +
                      std::to_string(minor) +
                      " is not supported by this runtime (" +
                      std::to_string(kPlanMajorVersion) + ".x)");
  // The header is not covered by the file checksum, so it has its own.
  if (ld64(data, kHdrHeaderChecksum) != fnv1a64(data, kHdrHeaderChecksum))
    return corrupt("header checksum mismatch: the plan file is corrupt");
  uint32_t headerBytes = ld32(data, kHdrHeaderBytes);
  if (headerBytes != kHeaderBytes)
    return corrupt("header size " + std::to_string(headerBytes) + " is not 64");
  uint64_t fileBytes = ld64(data, kHdrFileBytes);
  if (fileBytes != size)
    return corrupt("header says the file has " + std::to_string(fileBytes) +
                   " bytes but it has " + std::to_string(size) +
                   (fileBytes > size ? " (truncated?)" : ""));
  if (ld64(data, kHdrChecksum) !=
      fnv1a64(data + kHeaderBytes, size - kHeaderBytes))
    return corrupt("checksum mismatch: the plan file is corrupt");

  uint32_t numSections = ld32(data, kHdrNumSections);
  uint32_t entryBytes = ld32(data, kHdrSectionEntryBytes);
  if (numSections > kMaxSections)
    return corrupt("section count " + std::to_string(numSections) +
                   " exceeds the limit " + std::to_string(kMaxSections));
  if (entryBytes < kSectionEntryBytes || entryBytes % 8 != 0)
    return corrupt("section entry size " + std::to_string(entryBytes) +
                   " is not a multiple of 8 of at least 24");
  uint64_t tableEnd =
      uint64_t(kHeaderBytes) + uint64_t(numSections) * entryBytes;
  if (tableEnd > size)
    return corrupt("section table of " + std::to_string(numSections) +
                   " entries ends at " + std::to_string(tableEnd) +
                   ", past the end of the " + std::to_string(size) +
                   "-byte file");

  SectionView sections[kNumKnownSections + 1];
  struct Span {
    uint64_t offset, sizeBytes;
    uint32_t id;
  };
  std::vector<Span> spans;
  for (uint32_t k = 0; k < numSections; ++k) {
    const uint8_t *e = data + kHeaderBytes + uint64_t(k) * entryBytes;
    uint32_t id = ld32(e, kSecId);
    uint32_t recordBytes = ld32(e, kSecRecordBytes);
    uint64_t offset = ld64(e, kSecOffset), sizeBytes = ld64(e, kSecSizeBytes);
    std::string label =
        "section " + std::to_string(k) + " (id " + std::to_string(id) + ")";
    if (offset % 8 != 0)
      return corrupt(label + ": offset " + std::to_string(offset) +
                     " is not 8-byte aligned");
    if (offset < tableEnd || !fitsIn(offset, sizeBytes, size))
      return corrupt(label + ": bytes [" + std::to_string(offset) + ", +" +
                     std::to_string(sizeBytes) + ") are outside [" +
                     std::to_string(tableEnd) + ", " + std::to_string(size) +
                     ")");
    if (recordBytes == 0 || sizeBytes % recordBytes != 0)
      return corrupt(label + ": size " + std::to_string(sizeBytes) +
                     " is not a whole number of " +
                     std::to_string(recordBytes) + "-byte records");
    spans.push_back({offset, sizeBytes, id});
    // Unknown ids come from a later minor version: bounds-checked, skipped.
    if (id == 0 || id > kNumKnownSections)
      continue;
    SectionId sid = static_cast<SectionId>(id);
    SectionShape shape = sectionShape(sid);
    if (shape.growable ? (recordBytes < shape.minRecordBytes || recordBytes % 8)
                       : recordBytes != shape.minRecordBytes)
      return corrupt(std::string(sectionName(sid)) + " section: record size " +
                     std::to_string(recordBytes) + " is not " +
                     (shape.growable ? "a multiple of 8 of at least " : "") +
                     std::to_string(shape.minRecordBytes));
    if (sections[id].present)
      return corrupt(std::string("a second ") + sectionName(sid) + " section");
    sections[id] = {true, recordBytes, offset, sizeBytes, data + offset};
  }
  std::sort(spans.begin(), spans.end(), [](const Span &a, const Span &b) {
    return a.offset != b.offset ? a.offset < b.offset : a.id < b.id;
  });
  for (size_t k = 1; k < spans.size(); ++k) {
    const Span &prev = spans[k - 1], &cur = spans[k];
    if (prev.sizeBytes != 0 && cur.sizeBytes != 0 &&
        prev.offset + prev.sizeBytes > cur.offset)
      return corrupt("sections with ids " + std::to_string(prev.id) + " and " +
                     std::to_string(cur.id) + " overlap");
  }
  // Absent sections read as empty (with the current record size, so that
  // an absent meta section is reported as such, not as a short record).
  for (uint32_t id = 1; id <= kNumKnownSections; ++id)
    if (!sections[id].present)
      sections[id].recordBytes =
          sectionShape(static_cast<SectionId>(id)).recordBytes;

  PlanDecoder decoder(sections);
  Status st = decoder.decode(plan);
  if (st.isOk())
    st = validatePlan(plan);
  if (!st.isOk()) {
    plan = Plan();
    return st;
  }
  plan.majorVersion = major;
  plan.minorVersion = minor;
  return Status::ok();
}

Status readPlanFile(const std::string &path, Plan &plan) {
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) {
    int err = errno;
    return Status(err == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError,
                  path + ": cannot open: " + std::strerror(err));
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0)
    bytes.insert(bytes.end(), chunk, chunk + n);
  bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed)
    return Status(StatusCode::kIoError, path + ": read error");
  Status st = readPlan(bytes.data(), bytes.size(), plan);
  if (!st.isOk())
    return Status(st.code(), path + ": " + st.message());
  return Status::ok();
}

} // namespace colossal::runtime
