//===- PlanFormatTest.cpp - Plan writer, reader and validator -------------===//
//
// Round trips the hand-built plan of TestPlans.h, then attacks the reader:
// every truncation, every single-byte flip, and targeted corruptions written
// with a recomputed checksum, so that the checks behind the checksum are the
// ones under test. The record offsets used here are the ones that
// docs/plan-format.md documents; a test failing here after a layout change
// means the format (and its major version) changed.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/PlanFormat.h"

#include "TestPlans.h"

#include <gtest/gtest.h>

#include "colossal/runtime/Executor.h"

#include <cstdio>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <unistd.h>

using namespace colossal::runtime;
using namespace colossal::runtime::testing;

namespace {

uint64_t fnv1a64(const uint8_t *data, size_t size) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

/// A serialized plan that tests patch field by field (offsets from
/// docs/plan-format.md) and then reseal with valid checksums.
struct PlanBytes {
  std::vector<uint8_t> bytes;

  uint64_t get(size_t off, int width) const {
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; --i)
      v = (v << 8) | bytes.at(off + i);
    return v;
  }
  void put(size_t off, uint64_t v, int width) {
    for (int i = 0; i < width; ++i)
      bytes.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
  }
  /// Offset of the section table entry for `id`.
  size_t entry(SectionId id) const {
    uint32_t n = static_cast<uint32_t>(get(24, 4));
    for (uint32_t k = 0; k < n; ++k)
      if (get(64 + 24 * k, 4) == static_cast<uint32_t>(id))
        return 64 + 24 * k;
    ADD_FAILURE() << "no section " << static_cast<uint32_t>(id);
    return 0;
  }
  uint64_t sectionOffset(SectionId id) const { return get(entry(id) + 8, 8); }
  uint64_t sectionSize(SectionId id) const { return get(entry(id) + 16, 8); }
  /// Absolute offset of `field` in record `index` of section `id`.
  size_t field(SectionId id, size_t index, size_t field) const {
    uint32_t recordBytes = static_cast<uint32_t>(get(entry(id) + 4, 4));
    return sectionOffset(id) + index * recordBytes + field;
  }
  void reseal() {
    put(32, fnv1a64(bytes.data() + 64, bytes.size() - 64), 8);
    put(56, fnv1a64(bytes.data(), 56), 8);
  }
  Status read(Plan &plan) const {
    return readPlan(bytes.data(), bytes.size(), plan);
  }
};

PlanBytes writeTestPlan(const Plan &plan = makeTestPlan()) {
  PlanBytes pb;
  Status st = writePlan(plan, pb.bytes);
  EXPECT_TRUE(st.isOk()) << st.toString();
  return pb;
}

void expectSameAttrs(const Attrs &a, const Attrs &b) {
  EXPECT_EQ(a.kind(), b.kind());
  std::vector<int64_t> ia, ib;
  std::vector<double> fa, fb;
  a.encode(ia, fa);
  b.encode(ib, fb);
  EXPECT_EQ(ia, ib);
  EXPECT_EQ(fa, fb);
}

void expectSamePlan(const Plan &a, const Plan &b) {
  EXPECT_EQ(a.majorVersion, b.majorVersion);
  EXPECT_EQ(a.minorVersion, b.minorVersion);
  EXPECT_EQ(a.worldSize, b.worldSize);
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(a.numStreams, b.numStreams);
  EXPECT_EQ(a.numEvents, b.numEvents);
  EXPECT_EQ(a.sourceModel, b.sourceModel);
  EXPECT_EQ(a.weightsFile, b.weightsFile);
  ASSERT_EQ(a.arenas.size(), b.arenas.size());
  for (size_t i = 0; i < a.arenas.size(); ++i) {
    EXPECT_EQ(a.arenas[i].space, b.arenas[i].space);
    EXPECT_EQ(a.arenas[i].sizeBytes, b.arenas[i].sizeBytes);
    EXPECT_EQ(a.arenas[i].alignBytes, b.arenas[i].alignBytes);
  }
  ASSERT_EQ(a.buffers.size(), b.buffers.size());
  for (size_t i = 0; i < a.buffers.size(); ++i) {
    const PlanBuffer &x = a.buffers[i], &y = b.buffers[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.arena, y.arena);
    EXPECT_EQ(x.offsetBytes, y.offsetBytes);
    EXPECT_EQ(x.sizeBytes, y.sizeBytes);
    EXPECT_EQ(x.alignBytes, y.alignBytes);
    EXPECT_EQ(x.liveStart, y.liveStart);
    EXPECT_EQ(x.liveEnd, y.liveEnd);
  }
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].buffer, b.tensors[i].buffer);
    EXPECT_EQ(a.tensors[i].byteOffset, b.tensors[i].byteOffset);
    EXPECT_EQ(a.tensors[i].type, b.tensors[i].type);
  }
  ASSERT_EQ(a.instrs.size(), b.instrs.size());
  for (size_t i = 0; i < a.instrs.size(); ++i) {
    expectSameAttrs(a.instrs[i].attrs, b.instrs[i].attrs);
    EXPECT_EQ(a.instrs[i].stream, b.instrs[i].stream);
    EXPECT_EQ(a.instrs[i].inputs, b.instrs[i].inputs);
    EXPECT_EQ(a.instrs[i].outputs, b.instrs[i].outputs);
    EXPECT_EQ(a.instrs[i].location, b.instrs[i].location);
  }
  ASSERT_EQ(a.bindings.size(), b.bindings.size());
  for (size_t i = 0; i < a.bindings.size(); ++i) {
    EXPECT_EQ(a.bindings[i].role, b.bindings[i].role);
    EXPECT_EQ(a.bindings[i].name, b.bindings[i].name);
    EXPECT_EQ(a.bindings[i].tensor, b.bindings[i].tensor);
    EXPECT_EQ(a.bindings[i].data, b.bindings[i].data);
    EXPECT_EQ(a.bindings[i].program, b.bindings[i].program);
    EXPECT_EQ(a.bindings[i].trainable, b.bindings[i].trainable);
    EXPECT_EQ(a.bindings[i].init, b.bindings[i].init);
    EXPECT_EQ(a.bindings[i].initScale, b.bindings[i].initScale);
    EXPECT_EQ(a.bindings[i].exportName, b.bindings[i].exportName);
  }
  ASSERT_EQ(a.programs.size(), b.programs.size());
  for (size_t i = 0; i < a.programs.size(); ++i) {
    EXPECT_EQ(a.programs[i].name, b.programs[i].name);
    EXPECT_EQ(a.programs[i].firstInstr, b.programs[i].firstInstr);
    EXPECT_EQ(a.programs[i].numInstrs, b.programs[i].numInstrs);
  }
  EXPECT_EQ(a.trainConfig, b.trainConfig);
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

#define EXPECT_ERROR(status, wantCode, part)                                   \
  do {                                                                         \
    ::colossal::runtime::Status s_ = (status);                                 \
    EXPECT_FALSE(s_.isOk()) << "expected an error containing: " << (part);     \
    EXPECT_EQ(s_.code(), ::colossal::runtime::StatusCode::wantCode)            \
        << s_.message();                                                       \
    EXPECT_TRUE(contains(s_.message(), (part)))                                \
        << "message: " << s_.message() << "\nexpected part: " << (part);       \
  } while (0)

// Record field offsets, as docs/plan-format.md gives them.
constexpr size_t kMetaNumStreams = 8, kMetaNumTensors = 40;
constexpr size_t kBufOffsetBytes = 16, kBufSizeBytes = 24, kBufAlignBytes = 32;
constexpr size_t kTenBuffer = 8, kTenDType = 12, kTenRank = 13,
                 kTenByteOffset = 16, kTenDims = 24;
constexpr size_t kInsKind = 0, kInsStream = 4, kInsOperandsBegin = 8,
                 kInsNumInputs = 12, kInsIntsBegin = 24, kInsNumInts = 28,
                 kInsNumFloats = 36;
constexpr size_t kBndRole = 0, kBndTensor = 4, kBndName = 8, kBndDataBytes = 24;
// Format 1.1 fields.
constexpr size_t kMetaNumPrograms = 52, kMetaTrainConfig = 56;
constexpr size_t kBndProgram = 32, kBndTrainable = 36, kBndInit = 37,
                 kBndInitScale = 40, kBndExportName = 48;
constexpr size_t kProgName = 0, kProgFirstInstr = 8, kProgNumInstrs = 12;

/// The string a StringRef at `off` points to.
std::string stringAt(const PlanBytes &p, size_t off) {
  uint64_t begin = p.sectionOffset(SectionId::kStrings) + p.get(off, 4);
  uint64_t length = p.get(off + 4, 4);
  return std::string(p.bytes.begin() + begin, p.bytes.begin() + begin + length);
}

/// Rewrites a 1.1 file in the 1.0 layout, as a 1.0 writer laid it out:
/// minor 0, the first eleven sections only, 56-byte meta records (bytes
/// 52..55 reserved, zero) and 32-byte binding records. Only plans without
/// 1.1 content (no programs, states or weight fields) survive this intact.
PlanBytes downgradeTo10(const PlanBytes &in) {
  std::vector<uint8_t> payload[12];
  for (uint32_t id = 1; id <= 11; ++id) {
    SectionId sid = static_cast<SectionId>(id);
    uint64_t off = in.sectionOffset(sid), size = in.sectionSize(sid);
    uint32_t rb = static_cast<uint32_t>(in.get(in.entry(sid) + 4, 4));
    uint32_t keep = sid == SectionId::kMeta       ? 56
                    : sid == SectionId::kBindings ? 32
                                                  : rb;
    for (uint64_t r = 0; r < size / rb; ++r)
      payload[id].insert(payload[id].end(), in.bytes.begin() + off + r * rb,
                         in.bytes.begin() + off + r * rb + keep);
    if (sid == SectionId::kMeta)
      std::fill(payload[id].begin() + 52, payload[id].end(), 0);
  }
  PlanBytes out;
  out.bytes.assign(64 + 11 * 24, 0);
  std::memcpy(out.bytes.data(), in.bytes.data(), 64);
  out.put(10, 0, 2);  // minor 0
  out.put(24, 11, 4); // eleven sections
  for (uint32_t id = 1; id <= 11; ++id) {
    uint32_t rb =
        id == 1    ? 56
        : id == 10 ? 32
                   : static_cast<uint32_t>(
                         in.get(in.entry(static_cast<SectionId>(id)) + 4, 4));
    size_t e = 64 + (id - 1) * 24;
    out.bytes.resize((out.bytes.size() + 7) / 8 * 8, 0);
    out.put(e, id, 4);
    out.put(e + 4, rb, 4);
    out.put(e + 8, out.bytes.size(), 8);
    out.put(e + 16, payload[id].size(), 8);
    out.bytes.insert(out.bytes.end(), payload[id].begin(), payload[id].end());
  }
  out.bytes.resize((out.bytes.size() + 7) / 8 * 8, 0);
  out.put(16, out.bytes.size(), 8);
  out.reseal();
  return out;
}

} // namespace

//===----------------------------------------------------------------------===//
// Round trip and determinism
//===----------------------------------------------------------------------===//

TEST(PlanFormat, RoundTripKeepsEveryField) {
  Plan original = makeTestPlan();
  original.worldSize = 4;
  original.rank = 3;
  original.numStreams = 2;
  original.numEvents = 7;
  original.instrs[1].stream = 1;
  PlanBytes pb = writeTestPlan(original);
  Plan read;
  Status st = pb.read(read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectSamePlan(original, read);
  EXPECT_EQ(read.majorVersion, kPlanMajorVersion);
  EXPECT_EQ(read.minorVersion, kPlanMinorVersion);
  // The 0.5 of the fill survives the f64 pool bit for bit.
  EXPECT_EQ(read.instrs[3].attrs.f("value"), 0.5);
  EXPECT_EQ(read.instrs[2].attrs.list("axes"), (std::vector<int64_t>{0, 1}));
}

/// The test plan with a host stream 1 and one event: stream 0 waits for
/// it (instruction 5), and stream 1 records it after (6), later in plan
/// order: only a carried stream's record can satisfy that wait, the
/// previous step's (format 1.3).
Plan planWithLateRecord(uint64_t carried) {
  Plan plan = makeTestPlan();
  plan.numStreams = 2;
  plan.numEvents = 1;
  plan.streamKinds = {StreamKind::kCompute, StreamKind::kHost};
  plan.carriedStreams = carried;
  PlanInstr wait, record;
  wait.attrs = Attrs(OpKind::EventWait);
  wait.attrs.setI("event", 0);
  record.attrs = Attrs(OpKind::EventRecord);
  record.attrs.setI("event", 0);
  record.stream = 1;
  plan.instrs.push_back(wait);
  plan.instrs.push_back(record);
  return plan;
}

TEST(PlanFormat, CarriedHostStreamRoundTripsAndAllowsTheLateRecord) {
  EXPECT_ERROR(validatePlan(planWithLateRecord(0)), kCorruptPlan,
               "waits for event 0, which no earlier event_record of its "
               "program records");
  Plan carried = planWithLateRecord(uint64_t{1} << 1);
  ASSERT_TRUE(validatePlan(carried).isOk());
  PlanBytes pb = writeTestPlan(carried);
  Plan read;
  Status st = pb.read(read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectSamePlan(carried, read);
  EXPECT_EQ(read.carriedStreams, uint64_t{1} << 1);
  // On disk: byte 1 of stream 1's record, bit 0; stream 0's flags are 0.
  size_t streams = pb.sectionOffset(SectionId::kStreams);
  EXPECT_EQ(pb.get(streams + 1, 1), 0u);
  EXPECT_EQ(pb.get(streams + 8, 1), 2u); // StreamKind host
  EXPECT_EQ(pb.get(streams + 9, 1), 1u);
  // An unknown flag is corrupt, named with its stream.
  pb.put(streams + 9, 3, 1);
  pb.reseal();
  Plan bad;
  EXPECT_ERROR(pb.read(bad), kCorruptPlan, "stream 1: unknown flags 3");
  // Only a declared host stream may be carried.
  EXPECT_ERROR(validatePlan(planWithLateRecord(1)), kCorruptPlan,
               "stream 0: marked carried, but only a declared host stream");
  EXPECT_ERROR(validatePlan(planWithLateRecord(uint64_t{1} << 2)),
               kCorruptPlan, "stream 2: marked carried");
}

TEST(PlanFormat, WeightBindingRoundTrips) {
  Plan original = makeTestPlan(/*weightBinding=*/true);
  PlanBytes pb = writeTestPlan(original);
  Plan read;
  ASSERT_TRUE(pb.read(read).isOk());
  expectSamePlan(original, read);
  EXPECT_EQ(read.weightsFile, "tiny.safetensors");
}

TEST(PlanFormat, HeaderAndLayoutAreAsDocumented) {
  PlanBytes pb = writeTestPlan();
  ASSERT_GE(pb.bytes.size(), 64u);
  EXPECT_EQ(std::memcmp(pb.bytes.data(), kPlanMagic, 8), 0);
  EXPECT_EQ(pb.get(8, 2), kPlanMajorVersion);
  EXPECT_EQ(pb.get(10, 2), kPlanMinorVersion);
  EXPECT_EQ(pb.get(12, 4), 64u);
  EXPECT_EQ(pb.get(16, 8), pb.bytes.size());
  EXPECT_EQ(pb.get(24, 4), 13u); // one entry per SectionId
  EXPECT_EQ(pb.get(28, 4), 24u);
  EXPECT_EQ(pb.get(32, 8), fnv1a64(pb.bytes.data() + 64, pb.bytes.size() - 64));
  EXPECT_EQ(pb.get(56, 8), fnv1a64(pb.bytes.data(), 56));
  EXPECT_EQ(pb.bytes.size() % 8, 0u);
  // Sections in id order, each 8-aligned, records of the documented sizes.
  const uint32_t recordBytes[] = {0, 64, 1, 24, 48, 88, 48, 4, 8, 8, 56, 1, 16, 8};
  uint64_t end = 64 + 13 * 24;
  for (uint32_t id = 1; id <= 13; ++id) {
    size_t e = pb.entry(static_cast<SectionId>(id));
    EXPECT_EQ(pb.get(e + 4, 4), recordBytes[id]) << "section " << id;
    uint64_t offset = pb.get(e + 8, 8);
    EXPECT_EQ(offset % 8, 0u);
    EXPECT_GE(offset, end);
    end = offset + pb.get(e + 16, 8);
  }
  EXPECT_EQ(pb.sectionSize(SectionId::kTensors), 8u * 88);
  EXPECT_EQ(pb.sectionSize(SectionId::kInstrs), 5u * 48);
  // Inputs + outputs: add 3, matmul 3, reduce_sum 2, fill 1, mul 3.
  EXPECT_EQ(pb.sectionSize(SectionId::kOperands), (3u + 3 + 2 + 1 + 3) * 4);
  // The constant w: 6 floats.
  EXPECT_EQ(pb.sectionSize(SectionId::kData), 24u);
}

TEST(PlanFormat, WritingIsDeterministic) {
  PlanBytes first = writeTestPlan();
  PlanBytes second = writeTestPlan();
  EXPECT_EQ(first.bytes, second.bytes);
  // Reading and writing again gives the same bytes.
  Plan read;
  ASSERT_TRUE(first.read(read).isOk());
  PlanBytes third = writeTestPlan(read);
  EXPECT_EQ(first.bytes, third.bytes);
}

TEST(PlanFormat, FileRoundTrip) {
  std::string path = ::testing::TempDir() + "plan-format-test-" +
                     std::to_string(::getpid()) + ".cplan";
  Plan original = makeTestPlan();
  Status st = writePlanFile(original, path);
  ASSERT_TRUE(st.isOk()) << st.toString();
  Plan read;
  st = readPlanFile(path, read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectSamePlan(original, read);
  std::remove(path.c_str());
  st = readPlanFile(path, read);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(st.message(), path)) << st.message();
}

TEST(PlanFormat, FileErrorsNameThePath) {
  std::string path = ::testing::TempDir() + "plan-format-test-bad-" +
                     std::to_string(::getpid()) + ".cplan";
  std::FILE *f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("not a plan at all, but long enough to hold the 64 bytes of a "
             "plan header and then some more",
             f);
  std::fclose(f);
  Plan read;
  Status st = readPlanFile(path, read);
  EXPECT_ERROR(st, kCorruptPlan, path + ": not a plan file");
  std::remove(path.c_str());
}

TEST(PlanFormat, AcceptsALaterMinorVersion) {
  PlanBytes pb = writeTestPlan();
  pb.put(10, 7, 2);
  pb.reseal();
  Plan read;
  Status st = pb.read(read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(read.minorVersion, 7);
}

//===----------------------------------------------------------------------===//
// Rejection of damaged files
//===----------------------------------------------------------------------===//

TEST(PlanFormat, RejectsEmptyFile) {
  Plan read;
  EXPECT_ERROR(readPlan(nullptr, 0, read), kCorruptPlan,
               "smaller than the 64-byte plan header");
}

TEST(PlanFormat, RejectsEveryTruncation) {
  PlanBytes pb = writeTestPlan();
  for (size_t len = 0; len < pb.bytes.size(); ++len) {
    Plan read;
    Status st = readPlan(pb.bytes.data(), len, read);
    EXPECT_FALSE(st.isOk())
        << "a plan truncated to " << len << " bytes was accepted";
    EXPECT_EQ(st.code(), StatusCode::kCorruptPlan) << st.message();
  }
}

TEST(PlanFormat, RejectsWrongMagic) {
  PlanBytes pb = writeTestPlan();
  pb.bytes[0] = 'X';
  pb.reseal();
  Plan read;
  EXPECT_ERROR(pb.read(read), kCorruptPlan, "not a plan file (bad magic)");
}

TEST(PlanFormat, RejectsUnknownMajorVersion) {
  PlanBytes pb = writeTestPlan();
  pb.put(8, 2, 2);
  pb.put(10, 0, 2);
  pb.reseal();
  Plan read;
  Status st = pb.read(read);
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_EQ(st.message(),
            "plan format version 2.0 is not supported by this runtime (1.x)");
}

TEST(PlanFormat, RejectsBadChecksum) {
  PlanBytes pb = writeTestPlan();
  pb.put(32, pb.get(32, 8) ^ 1, 8);
  pb.put(56, fnv1a64(pb.bytes.data(), 56), 8); // header itself stays valid
  Plan read;
  EXPECT_ERROR(pb.read(read), kCorruptPlan,
               "checksum mismatch: the plan file is corrupt");
}

TEST(PlanFormat, RejectsFileSizeMismatch) {
  PlanBytes pb = writeTestPlan();
  pb.bytes.resize(pb.bytes.size() + 8, 0);
  pb.reseal();
  Plan read;
  EXPECT_ERROR(pb.read(read), kCorruptPlan, "header says the file has");
}

TEST(PlanFormat, RejectsEverySingleByteFlip) {
  PlanBytes pb = writeTestPlan();
  for (size_t pos = 0; pos < pb.bytes.size(); ++pos) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::vector<uint8_t> copy = pb.bytes;
      copy[pos] ^= mask;
      Plan read;
      Status st = readPlan(copy.data(), copy.size(), read);
      EXPECT_FALSE(st.isOk()) << "flipping byte " << pos << " with mask "
                              << int(mask) << " was accepted";
    }
  }
}

/// Each case corrupts one field, reseals the checksums, and expects the
/// validation behind the checksum to name the field.
TEST(PlanFormat, RejectsCorruptFieldsBehindAValidChecksum) {
  struct Case {
    const char *what;
    std::function<void(PlanBytes &)> corrupt;
    StatusCode code;
    std::string message;
  };
  using S = SectionId;
  const uint64_t u64max = std::numeric_limits<uint64_t>::max();
  std::vector<Case> cases = {
      {"tensor buffer index out of range",
       [](PlanBytes &p) { p.put(p.field(S::kTensors, 2, kTenBuffer), 99, 4); },
       StatusCode::kCorruptPlan,
       "tensor 2 'sum': buffer index 99 is out of range (8 buffers)"},
      {"buffer outside its arena",
       [](PlanBytes &p) {
         p.put(p.field(S::kBuffers, 7, kBufOffsetBytes), 512, 8);
       },
       StatusCode::kCorruptPlan,
       "buffer 7 'loss': offset 512 + 4 bytes exceeds arena 0 of 512 bytes"},
      {"buffer offset that overflows",
       [&](PlanBytes &p) {
         p.put(p.field(S::kBuffers, 1, kBufOffsetBytes), u64max - 63, 8);
       },
       StatusCode::kCorruptPlan, "buffer 1 'b': offset 18446744073709551552"},
      {"buffer size that overflows",
       [&](PlanBytes &p) {
         p.put(p.field(S::kBuffers, 1, kBufSizeBytes), u64max, 8);
       },
       StatusCode::kCorruptPlan, "exceeds arena 0 of 512 bytes"},
      {"buffer alignment not a power of two",
       [](PlanBytes &p) {
         p.put(p.field(S::kBuffers, 0, kBufAlignBytes), 48, 8);
       },
       StatusCode::kCorruptPlan, "buffer 0 'a': alignment 48"},
      {"tensor outside its buffer",
       [](PlanBytes &p) {
         p.put(p.field(S::kTensors, 4, kTenByteOffset), 8, 8);
       },
       StatusCode::kCorruptPlan,
       "tensor 4 'y': offset 8 + 24 bytes exceeds buffer 'y' of 24 bytes"},
      {"tensor with a bad dtype",
       [](PlanBytes &p) { p.put(p.field(S::kTensors, 0, kTenDType), 42, 1); },
       StatusCode::kCorruptPlan, "tensor 0 'a': invalid dtype 42"},
      {"tensor with rank 9",
       [](PlanBytes &p) { p.put(p.field(S::kTensors, 0, kTenRank), 9, 1); },
       StatusCode::kCorruptPlan, "tensor 0 'a': rank 9 exceeds 8"},
      {"tensor with a negative dim",
       [](PlanBytes &p) {
         p.put(p.field(S::kTensors, 0, kTenDims), static_cast<uint64_t>(-2), 8);
       },
       StatusCode::kCorruptPlan, "tensor 0 'a': type has negative dim -2"},
      {"tensor with a dim past its rank",
       [](PlanBytes &p) {
         p.put(p.field(S::kTensors, 0, kTenDims + 16), 3, 8);
       },
       StatusCode::kCorruptPlan, "dim slot 2 past rank 2 is 3, not 0"},
      {"output type disagrees with shape inference",
       [](PlanBytes &p) {
         // y: 2x3 -> 2x2 (still inside its buffer).
         p.put(p.field(S::kTensors, 4, kTenDims + 8), 2, 8);
       },
       StatusCode::kCorruptPlan,
       "instruction 1 (matmul at node_MatMul_1): output 0 (tensor 4 'y') is "
       "2x2xf32 but matmul gives 2x3xf32"},
      {"input types that inference rejects",
       [](PlanBytes &p) {
         // w: 2x3 -> 1x3 makes matmul's contraction dims differ (2 vs 1).
         p.put(p.field(S::kTensors, 3, kTenDims), 1, 8);
       },
       StatusCode::kCorruptPlan, "instruction 1 (matmul at node_MatMul_1): "},
      {"unknown op kind",
       [](PlanBytes &p) { p.put(p.field(S::kInstrs, 2, kInsKind), 999, 4); },
       StatusCode::kCorruptPlan, "instruction 2: unknown op kind 999"},
      {"stream out of range",
       [](PlanBytes &p) { p.put(p.field(S::kInstrs, 0, kInsStream), 5, 4); },
       StatusCode::kCorruptPlan,
       "instruction 0 (add at node_Add_0): stream 5 is out of range (1 "
       "streams)"},
      {"operand tensor index out of range",
       [](PlanBytes &p) {
         size_t pool = p.sectionOffset(S::kOperands);
         p.put(pool + 4 * 1, 1000, 4); // add's second input
       },
       StatusCode::kCorruptPlan,
       "instruction 0 (add at node_Add_0): input 1 tensor index 1000 is out "
       "of range (8 tensors)"},
      {"operand range past the pool",
       [](PlanBytes &p) {
         p.put(p.field(S::kInstrs, 4, kInsOperandsBegin), 11, 4);
       },
       StatusCode::kCorruptPlan, "operands [11, 14) exceed the operand pool"},
      {"operand range that wraps",
       [](PlanBytes &p) {
         p.put(p.field(S::kInstrs, 4, kInsOperandsBegin), 0xffffffffu, 4);
       },
       StatusCode::kCorruptPlan, "exceed the operand pool of 12"},
      {"wrong input count",
       [](PlanBytes &p) { p.put(p.field(S::kInstrs, 0, kInsNumInputs), 1, 4); },
       StatusCode::kCorruptPlan,
       "instruction 0 (add at node_Add_0): has 1 inputs, add takes 2"},
      {"attribute ints past the pool",
       [](PlanBytes &p) {
         p.put(p.field(S::kInstrs, 2, kInsIntsBegin), 100, 4);
       },
       StatusCode::kCorruptPlan, "attribute ints [100,"},
      {"attribute floats past the pool",
       [](PlanBytes &p) { p.put(p.field(S::kInstrs, 3, kInsNumFloats), 2, 4); },
       StatusCode::kCorruptPlan, "attribute floats"},
      {"attribute list count that Attrs::decode rejects",
       [](PlanBytes &p) {
         size_t begin = p.get(p.field(S::kInstrs, 2, kInsIntsBegin), 4);
         size_t pool = p.sectionOffset(S::kAttrInts);
         p.put(pool + 8 * begin, 1000, 8); // the axes count
       },
       StatusCode::kCorruptPlan,
       "instruction 2 (reduce_sum at node_ReduceSum_2)"},
      {"attribute values left over",
       [](PlanBytes &p) { p.put(p.field(S::kInstrs, 1, kInsNumInts), 3, 4); },
       StatusCode::kCorruptPlan, "instruction 1 (matmul at node_MatMul_1)"},
      {"string past the strings section",
       [](PlanBytes &p) { p.put(p.field(S::kBindings, 0, kBndName), 5000, 4); },
       StatusCode::kCorruptPlan,
       "binding 0 name: string at 5000 + 1 bytes exceeds the strings section"},
      {"binding with a bad role",
       [](PlanBytes &p) { p.put(p.field(S::kBindings, 0, kBndRole), 9, 1); },
       StatusCode::kCorruptPlan, "binding 0: invalid role 9"},
      {"binding tensor out of range",
       [](PlanBytes &p) { p.put(p.field(S::kBindings, 3, kBndTensor), 8, 4); },
       StatusCode::kCorruptPlan,
       "binding 3 (output 'y'): tensor index 8 is out of range (8 tensors)"},
      {"constant data size differs from its tensor",
       [](PlanBytes &p) {
         p.put(p.field(S::kBindings, 2, kBndDataBytes), 16, 8);
       },
       StatusCode::kCorruptPlan,
       "binding 2 (constant 'w'): has 16 data bytes, tensor 3 (2x3xf32) needs "
       "24"},
      {"constant data past the data section",
       [](PlanBytes &p) {
         p.put(p.field(S::kBindings, 2, kBndDataBytes), 32, 8);
       },
       StatusCode::kCorruptPlan, "exceeds the data section of 24 bytes"},
      {"data on an input binding",
       [](PlanBytes &p) {
         p.put(p.field(S::kBindings, 0, kBndDataBytes), 4, 8);
       },
       StatusCode::kCorruptPlan, "only constants carry data"},
      {"too many streams",
       [](PlanBytes &p) {
         p.put(p.field(S::kMeta, 0, kMetaNumStreams), kMaxStreams + 1, 4);
       },
       StatusCode::kCorruptPlan, "stream count 65 is not in [1, 64]"},
      {"meta count that disagrees with its section",
       [](PlanBytes &p) {
         p.put(p.field(S::kMeta, 0, kMetaNumTensors), 1000000, 4);
       },
       StatusCode::kCorruptPlan,
       "meta record says 1000000 tensors but the tensors section holds 8"},
      {"section offset not 8-aligned",
       [](PlanBytes &p) {
         size_t e = p.entry(S::kData);
         p.put(e + 8, p.get(e + 8, 8) + 4, 8);
       },
       StatusCode::kCorruptPlan, "is not 8-byte aligned"},
      {"section past the end of the file",
       [](PlanBytes &p) {
         size_t e = p.entry(S::kData);
         p.put(e + 16, 1u << 30, 8);
       },
       StatusCode::kCorruptPlan, "are outside"},
      {"overlapping sections",
       [](PlanBytes &p) {
         size_t e = p.entry(S::kBindings);
         p.put(e + 8, p.sectionOffset(S::kInstrs), 8);
       },
       StatusCode::kCorruptPlan, "overlap"},
      {"section size not a whole number of records",
       [](PlanBytes &p) {
         size_t e = p.entry(S::kTensors);
         p.put(e + 16, p.get(e + 16, 8) - 8, 8);
       },
       StatusCode::kCorruptPlan, "is not a whole number of 88-byte records"},
      {"record size smaller than format 1.0's",
       [](PlanBytes &p) { p.put(p.entry(S::kTensors) + 4, 8, 4); },
       StatusCode::kCorruptPlan, "tensors section: record size 8"},
      {"a section listed twice",
       [](PlanBytes &p) {
         p.put(p.entry(S::kAttrFloats), static_cast<uint32_t>(S::kAttrInts), 4);
       },
       StatusCode::kCorruptPlan, "a second attr-ints section"},
      {"too many sections", [](PlanBytes &p) { p.put(24, 1000, 4); },
       StatusCode::kCorruptPlan, "section count 1000 exceeds the limit 64"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    PlanBytes pb = writeTestPlan();
    c.corrupt(pb);
    pb.reseal();
    Plan read;
    Status st = pb.read(read);
    EXPECT_FALSE(st.isOk());
    EXPECT_EQ(st.code(), c.code) << st.message();
    EXPECT_TRUE(contains(st.message(), c.message))
        << "message: " << st.message() << "\nexpected part: " << c.message;
    // A rejected read leaves nothing half-filled behind.
    EXPECT_TRUE(read.instrs.empty() && read.tensors.empty());
  }
}

/// Random corruptions behind a valid checksum: whatever the reader accepts
/// must be runnable without crashing (under ASan/UBSan this also checks
/// that no read goes out of bounds).
TEST(PlanFormat, RandomCorruptionsNeverCrash) {
  const PlanBytes clean = writeTestPlan(makeTestPlan(/*weightBinding=*/true));
  std::mt19937_64 rng(20240611);
  const uint64_t interesting[] = {0,
                                  1,
                                  2,
                                  7,
                                  8,
                                  63,
                                  64,
                                  0x7f,
                                  0x80,
                                  0xff,
                                  0xffff,
                                  0xffffffffull,
                                  0x80000000ull,
                                  ~uint64_t(0)};
  int accepted = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    PlanBytes pb = clean;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t pos = 64 + rng() % (pb.bytes.size() - 64);
      if (rng() % 2) {
        pb.bytes[pos] = static_cast<uint8_t>(rng());
      } else {
        // An interesting value over a whole aligned field.
        int width = 1 << (rng() % 4);
        pos &= ~size_t(width - 1);
        if (pos + width <= pb.bytes.size())
          pb.put(pos, interesting[rng() % std::size(interesting)], width);
      }
    }
    pb.reseal();
    Plan plan;
    Status st = pb.read(plan);
    if (!st.isOk())
      continue;
    ++accepted;
    // An accepted plan writes back and runs (or fails cleanly).
    std::vector<uint8_t> again;
    ASSERT_TRUE(writePlan(plan, again).isOk());
    uint64_t arenaTotal = 0;
    for (const PlanArena &arena : plan.arenas)
      arenaTotal += arena.sizeBytes;
    if (arenaTotal > (1u << 20))
      continue;
    CpuExecutor exec;
    if (!exec.prepare(plan).isOk())
      continue;
    SafetensorsFile weights, inputs, outputs;
    for (const PlanBinding &bind : plan.bindings) {
      HostTensor t(plan.tensors[bind.tensor].type);
      if (bind.role == BindingRole::kWeight)
        weights.tensors.emplace_back(bind.name, t);
      else if (bind.role == BindingRole::kInput && !inputs.find(bind.name))
        inputs.tensors.emplace_back(bind.name, t);
    }
    ASSERT_TRUE(exec.loadWeights(weights).isOk());
    (void)exec.run(inputs, outputs);
  }
  // Some corruptions (names, data, float values) are valid plans.
  EXPECT_GT(accepted, 0);
  RecordProperty("accepted", accepted);
}

//===----------------------------------------------------------------------===//
// validatePlan on in-memory plans (what the compiler hands to writePlan)
//===----------------------------------------------------------------------===//

TEST(PlanFormat, ValidTestPlanValidates) {
  Status st = validatePlan(makeTestPlan());
  EXPECT_TRUE(st.isOk()) << st.toString();
  st = validatePlan(makeTestPlan(true));
  EXPECT_TRUE(st.isOk()) << st.toString();
}

TEST(PlanFormat, WriterRejectsAnInvalidPlan) {
  Plan plan = makeTestPlan();
  plan.tensors[kLoss].type.dims = {2};
  plan.buffers[kLoss].sizeBytes = 8;
  std::vector<uint8_t> bytes;
  EXPECT_ERROR(writePlan(plan, bytes), kCorruptPlan,
               "instruction 4 (mul at node_Mul_4): output 0 (tensor 7 'loss') "
               "is 2xf32 but mul gives f32");
}

TEST(PlanFormat, RejectsDuplicateBindingNamesPerRole) {
  Plan plan = makeTestPlan();
  plan.bindings.push_back(PlanBinding{BindingRole::kInput, "a", kB, {}});
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "binding 5 (input 'a'): a second input binding with this name");
  // The same name under another role is fine: an output may echo an input.
  plan = makeTestPlan();
  plan.bindings.push_back(PlanBinding{BindingRole::kOutput, "a", kA, {}});
  EXPECT_TRUE(validatePlan(plan).isOk());
}

TEST(PlanFormat, RejectsBadMeta) {
  Plan plan = makeTestPlan();
  plan.worldSize = 2;
  plan.rank = 2;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "rank 2 is not below the world size 2");
  plan = makeTestPlan();
  plan.worldSize = kMaxWorldSize + 1;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan, "world size 65537");
  plan = makeTestPlan();
  plan.numEvents = kMaxEvents + 1;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan, "event count");
  plan = makeTestPlan();
  plan.majorVersion = 3;
  plan.minorVersion = 0;
  EXPECT_ERROR(validatePlan(plan), kUnsupported,
               "plan format version 3.0 is not supported");
}

TEST(PlanFormat, RejectsReversedLiveRange) {
  Plan plan = makeTestPlan();
  plan.buffers[kY].liveStart = 3;
  plan.buffers[kY].liveEnd = 2;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "buffer 4 'y': live range [3, 2] is reversed");
}

TEST(PlanFormat, RejectsOverlappingOperands) {
  // matmul writing over its own input: the kernel would read what it wrote.
  Plan plan = makeTestPlan();
  plan.tensors[kY].buffer = plan.tensors[kSum].buffer;
  plan.buffers[kSum].sizeBytes = 24;
  plan.buffers[kSum].liveEnd = 2;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "instruction 1 (matmul at node_MatMul_1): output 0 (tensor 4) "
               "overlaps input 0 (tensor 2) in memory");
}

TEST(PlanFormat, AllowsExactElementwiseAliasing) {
  // add writing its result over input a, element for element: allowed.
  Plan plan = makeTestPlan();
  plan.tensors[kSum].buffer = plan.tensors[kA].buffer;
  Status st = validatePlan(plan);
  EXPECT_TRUE(st.isOk()) << st.toString();
  // A partial overlap is not.
  plan.buffers[kA].sizeBytes = 20;
  plan.tensors[kSum].byteOffset = 4;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan, "overlaps input 0");
}

TEST(PlanFormat, RejectsMisalignedTensorsAndBuffers) {
  Plan plan = makeTestPlan();
  plan.buffers[kA].sizeBytes = 20;
  plan.tensors[kA].byteOffset = 2;
  EXPECT_ERROR(
      validatePlan(plan), kCorruptPlan,
      "tensor 0 'a': offset 2 is not a multiple of its element size 4");
  plan = makeTestPlan();
  plan.buffers[kB].offsetBytes = 72;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "buffer 1 'b': offset 72 is not a multiple of its alignment 64");
  plan = makeTestPlan();
  plan.buffers[kB].alignBytes = 128;
  plan.buffers[kB].offsetBytes = 128;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "alignment 128 exceeds arena 0's alignment 64");
}

// Found by colossal-fuzz-plan-reader (fuzz/regressions/plan-reader/
// huge-arena-alignment.cplan): arena alignments had no upper bound, and
// CpuExecutor::prepare() over-allocates each arena by its alignment, so a
// 512-byte arena aligned to 2^46 made it calloc 64 TiB. Alignments are now
// capped at kMaxAlignBytes, before anything is allocated.
TEST(PlanFormat, RejectsHugeArenaAlignment) {
  Plan plan = makeTestPlan();
  plan.arenas[0].alignBytes = kMaxAlignBytes;
  Status st = validatePlan(plan);
  EXPECT_TRUE(st.isOk()) << st.toString();
  plan.arenas[0].alignBytes = kMaxAlignBytes * 2;
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "arena 0: alignment 8192 exceeds the limit 4096");

  // The same through the reader and the executor: 2^46 in the arena record
  // (alignBytes at byte 16), checksums resealed.
  PlanBytes pb = writeTestPlan();
  pb.put(pb.field(SectionId::kArenas, 0, 16), uint64_t(1) << 46, 8);
  pb.reseal();
  Plan read;
  EXPECT_ERROR(pb.read(read), kCorruptPlan,
               "arena 0: alignment 70368744177664 exceeds the limit 4096");
  plan = makeTestPlan();
  plan.arenas[0].alignBytes = uint64_t(1) << 46;
  CpuExecutor exec;
  EXPECT_ERROR(exec.prepare(plan), kCorruptPlan, "exceeds the limit 4096");
}

TEST(PlanFormat, RejectsHugeTensorTypesWithoutOverflow) {
  Plan plan = makeTestPlan();
  plan.tensors[kA].type.dims = {int64_t(1) << 40, int64_t(1) << 40};
  EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
               "tensor 0 'a': type has more than 2^62 elements");
}

TEST(PlanFormat, NamesOfEnums) {
  EXPECT_STREQ(memorySpaceName(MemorySpace::kDevice), "device");
  EXPECT_STREQ(memorySpaceName(MemorySpace::kHost), "host");
  EXPECT_STREQ(bindingRoleName(BindingRole::kInput), "input");
  EXPECT_STREQ(bindingRoleName(BindingRole::kOutput), "output");
  EXPECT_STREQ(bindingRoleName(BindingRole::kWeight), "weight");
  EXPECT_STREQ(bindingRoleName(BindingRole::kConstant), "constant");
  EXPECT_STREQ(bindingRoleName(BindingRole::kState), "state");
  EXPECT_STREQ(initKindName(InitKind::kNone), "none");
  EXPECT_STREQ(initKindName(InitKind::kZeros), "zeros");
  EXPECT_STREQ(initKindName(InitKind::kOnes), "ones");
  EXPECT_STREQ(initKindName(InitKind::kNormal), "normal");
}

//===----------------------------------------------------------------------===//
// Format 1.1: programs, states, weight fields, train config
//===----------------------------------------------------------------------===//

namespace {

uint32_t bindingIndex(const Plan &plan, BindingRole role,
                      const std::string &name) {
  for (size_t b = 0; b < plan.bindings.size(); ++b)
    if (plan.bindings[b].role == role && plan.bindings[b].name == name)
      return static_cast<uint32_t>(b);
  ADD_FAILURE() << "no binding " << name;
  return 0;
}

uint32_t tensorIndex(const Plan &plan, const std::string &name) {
  for (size_t t = 0; t < plan.tensors.size(); ++t)
    if (plan.tensors[t].name == name)
      return static_cast<uint32_t>(t);
  ADD_FAILURE() << "no tensor " << name;
  return 0;
}

/// Adds an unused weight tensor (its own buffer) to `plan`.
PlanBinding &addWeight(Plan &plan, const std::string &name, DType dtype) {
  TensorType type{dtype, {2}};
  PlanBuffer buf;
  buf.name = name;
  buf.offsetBytes = plan.arenas[0].sizeBytes;
  buf.sizeBytes = type.sizeBytes();
  plan.arenas[0].sizeBytes += 64;
  plan.buffers.push_back(buf);
  plan.tensors.push_back(PlanTensor{
      name, static_cast<uint32_t>(plan.buffers.size() - 1), 0, type});
  PlanBinding bind;
  bind.role = BindingRole::kWeight;
  bind.name = name;
  bind.tensor = static_cast<uint32_t>(plan.tensors.size() - 1);
  plan.bindings.push_back(bind);
  return plan.bindings.back();
}

} // namespace

TEST(PlanFormat, TrainingPlanRoundTripKeepsEveryField) {
  Plan original = makeTrainingPlan();
  ASSERT_TRUE(validatePlan(original).isOk())
      << validatePlan(original).toString();
  ASSERT_EQ(original.programs.size(), 2u);
  PlanBytes pb = writeTestPlan(original);
  Plan read;
  Status st = pb.read(read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectSamePlan(original, read);
  EXPECT_EQ(read.programs[0].name, "micro_step");
  EXPECT_EQ(read.programs[1].name, "apply_step");
  EXPECT_EQ(read.bindings[0].init, InitKind::kNormal);
  EXPECT_EQ(read.bindings[0].initScale, 0.5);
  EXPECT_TRUE(read.bindings[0].trainable);
  EXPECT_EQ(read.bindings[0].exportName, "model.w");
  EXPECT_EQ(read.bindings[2].role, BindingRole::kState);
  // Writing what was read gives the same bytes.
  PlanBytes again = writeTestPlan(read);
  EXPECT_EQ(again.bytes, pb.bytes);
}

TEST(PlanFormat, TrainingFieldsAreAtTheDocumentedOffsets) {
  Plan plan = makeTrainingPlan();
  PlanBytes pb = writeTestPlan(plan);
  using S = SectionId;
  EXPECT_EQ(pb.get(pb.field(S::kMeta, 0, kMetaNumPrograms), 4), 2u);
  EXPECT_EQ(stringAt(pb, pb.field(S::kMeta, 0, kMetaTrainConfig)),
            plan.trainConfig);
  // Binding 0: weight w, every program, trainable, normal(0.5), "model.w".
  EXPECT_EQ(pb.get(pb.field(S::kBindings, 0, kBndProgram), 4), kAllPrograms);
  EXPECT_EQ(pb.get(pb.field(S::kBindings, 0, kBndTrainable), 1), 1u);
  EXPECT_EQ(pb.get(pb.field(S::kBindings, 0, kBndInit), 1), 3u);
  double scale = 0.5;
  uint64_t scaleBits;
  std::memcpy(&scaleBits, &scale, 8);
  EXPECT_EQ(pb.get(pb.field(S::kBindings, 0, kBndInitScale), 8), scaleBits);
  EXPECT_EQ(stringAt(pb, pb.field(S::kBindings, 0, kBndExportName)), "model.w");
  // Binding 2: state grad.w (role 4).
  EXPECT_EQ(pb.get(pb.field(S::kBindings, 2, kBndRole), 1), 4u);
  // Input x belongs to program 0, __step to program 1.
  uint32_t x = bindingIndex(plan, BindingRole::kInput, "x");
  uint32_t step = bindingIndex(plan, BindingRole::kInput, "__step");
  EXPECT_EQ(pb.get(pb.field(S::kBindings, x, kBndProgram), 4), 0u);
  EXPECT_EQ(pb.get(pb.field(S::kBindings, step, kBndProgram), 4), 1u);
  // The program records.
  EXPECT_EQ(pb.sectionSize(S::kPrograms), 2u * 16);
  EXPECT_EQ(stringAt(pb, pb.field(S::kPrograms, 0, kProgName)), "micro_step");
  EXPECT_EQ(pb.get(pb.field(S::kPrograms, 0, kProgFirstInstr), 4), 0u);
  EXPECT_EQ(pb.get(pb.field(S::kPrograms, 0, kProgNumInstrs), 4),
            plan.programs[0].numInstrs);
  EXPECT_EQ(stringAt(pb, pb.field(S::kPrograms, 1, kProgName)), "apply_step");
  EXPECT_EQ(pb.get(pb.field(S::kPrograms, 1, kProgFirstInstr), 4),
            plan.programs[0].numInstrs);
}

TEST(PlanFormat, ReadsAFormat10File) {
  Plan original = makeTestPlan(/*weightBinding=*/true);
  PlanBytes v10 = downgradeTo10(writeTestPlan(original));
  EXPECT_EQ(v10.get(24, 4), 11u);
  EXPECT_EQ(v10.get(v10.entry(SectionId::kBindings) + 4, 4), 32u);
  EXPECT_EQ(v10.get(v10.entry(SectionId::kMeta) + 4, 4), 56u);
  Plan read;
  Status st = v10.read(read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(read.minorVersion, 0);
  // The 1.1 fields take their defaults: no programs (one implicit forward),
  // every binding in every program, no init rules, no train config.
  original.minorVersion = 0;
  expectSamePlan(original, read);
  for (const PlanBinding &bind : read.bindings) {
    EXPECT_EQ(bind.program, kAllPrograms);
    EXPECT_FALSE(bind.trainable);
    EXPECT_EQ(bind.init, InitKind::kNone);
    EXPECT_TRUE(bind.exportName.empty());
  }
  // And it runs as before.
  CpuExecutor exec;
  ASSERT_TRUE(exec.prepare(read).isOk());
  SafetensorsFile weights, inputs, outputs;
  HostTensor w(TensorType{DType::kF32, {2, 3}});
  w.bytes = f32Bytes(testWeightValues());
  weights.tensors.emplace_back("w", w);
  HostTensor a(TensorType{DType::kF32, {2, 2}}), b = a;
  a.bytes = f32Bytes({1, 2, 3, 4});
  b.bytes = f32Bytes({10, 20, 30, 40});
  inputs.tensors.emplace_back("a", a);
  inputs.tensors.emplace_back("b", b);
  ASSERT_TRUE(exec.loadWeights(weights).isOk());
  st = exec.run(inputs, outputs);
  ASSERT_TRUE(st.isOk()) << st.toString();
  ASSERT_NE(outputs.find("loss"), nullptr);
  EXPECT_EQ(outputs.find("loss")->as<float>()[0], 66.0f);
}

TEST(PlanFormat, ReadsAFileWithoutAProgramsSection) {
  // A 1.1 file whose writer left out the (empty) programs section.
  PlanBytes pb = writeTestPlan();
  size_t e = pb.entry(SectionId::kPrograms);
  pb.put(e, 99, 4); // an unknown id: skipped, so the section is absent
  pb.reseal();
  Plan read;
  Status st = pb.read(read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_TRUE(read.programs.empty());
}

TEST(PlanFormat, ForwardProgramRoundTrips) {
  Plan plan = makeTestPlan();
  plan.programs.push_back(PlanProgram{"forward", 0, 5});
  plan.bindings[0].program = 0; // an input may name the single program
  PlanBytes pb = writeTestPlan(plan);
  Plan read;
  ASSERT_TRUE(pb.read(read).isOk());
  expectSamePlan(plan, read);
}

TEST(PlanFormat, RejectsCorrupt11FieldsBehindAValidChecksum) {
  struct Case {
    const char *what;
    std::function<void(PlanBytes &)> corrupt;
    std::string message;
  };
  using S = SectionId;
  std::vector<Case> cases = {
      {"bad init kind",
       [](PlanBytes &p) { p.put(p.field(S::kBindings, 0, kBndInit), 7, 1); },
       "binding 0 (weight 'w'): invalid init kind 7"},
      {"trainable flag not 0 or 1",
       [](PlanBytes &p) {
         p.put(p.field(S::kBindings, 0, kBndTrainable), 2, 1);
       },
       "binding 0 (weight 'w'): trainable flag 2 is not 0 or 1"},
      {"program count that disagrees with its section",
       [](PlanBytes &p) {
         p.put(p.field(S::kMeta, 0, kMetaNumPrograms), 3, 4);
       },
       "meta record says 3 programs but the programs section holds 2"},
      {"program that does not start where the previous ended",
       [](PlanBytes &p) {
         p.put(p.field(S::kPrograms, 1, kProgFirstInstr), 3, 4);
       },
       "program 1 'apply_step': starts at instruction 3, expected 14"},
      {"program past the instructions",
       [](PlanBytes &p) {
         p.put(p.field(S::kPrograms, 1, kProgNumInstrs), 0xfffffff0u, 4);
       },
       "program 1 'apply_step': instructions [14, 4294967294) exceed the 29 "
       "instructions"},
      {"binding program out of range",
       [](PlanBytes &p) { p.put(p.field(S::kBindings, 4, kBndProgram), 7, 4); },
       "binding 4 (input 'x'): program index 7 is out of range (2 programs)"},
      {"export name past the strings section",
       [](PlanBytes &p) {
         p.put(p.field(S::kBindings, 0, kBndExportName), 100000, 4);
       },
       "binding 0 (weight 'w') export name: string at 100000"},
      {"train config past the strings section",
       [](PlanBytes &p) {
         p.put(p.field(S::kMeta, 0, kMetaTrainConfig) + 4, 100000, 4);
       },
       "meta train config: string at"},
      {"program record smaller than 16 bytes",
       [](PlanBytes &p) { p.put(p.entry(S::kPrograms) + 4, 8, 4); },
       "programs section: record size 8 is not a multiple of 8 of at least "
       "16"},
      {"binding record smaller than format 1.0's",
       [](PlanBytes &p) { p.put(p.entry(S::kBindings) + 4, 24, 4); },
       "bindings section: record size 24 is not a multiple of 8 of at least "
       "32"},
      {"binding role past state",
       [](PlanBytes &p) { p.put(p.field(S::kBindings, 2, kBndRole), 5, 1); },
       "binding 2: invalid role 5"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    PlanBytes pb = writeTestPlan(makeTrainingPlan());
    c.corrupt(pb);
    pb.reseal();
    Plan read;
    Status st = pb.read(read);
    EXPECT_FALSE(st.isOk());
    EXPECT_EQ(st.code(), StatusCode::kCorruptPlan) << st.message();
    EXPECT_TRUE(contains(st.message(), c.message))
        << "message: " << st.message() << "\nexpected part: " << c.message;
  }
}

/// Every validatePlan rule of format 1.1, each on a copy of the training
/// plan with one thing wrong.
TEST(PlanFormat, RejectsEachTrainingPlanRule) {
  struct Case {
    const char *what;
    std::function<void(Plan &)> corrupt;
    std::string message;
  };
  auto bind = [](Plan &p, BindingRole role, const char *name) -> PlanBinding & {
    return p.bindings[bindingIndex(p, role, name)];
  };
  using R = BindingRole;
  std::vector<Case> cases = {
      {"unknown program name",
       [](Plan &p) { p.programs[1].name = "optimizer"; },
       "program 1 'optimizer': unknown program name (expected forward, "
       "micro_step, apply_step or train_step)"},
      {"duplicate program name",
       [](Plan &p) { p.programs[1].name = "micro_step"; },
       "program 1 'micro_step': a second program with this name"},
      {"programs with a gap", [](Plan &p) { p.programs[0].numInstrs -= 1; },
       "program 1 'apply_step': starts at instruction 14, expected 13"},
      {"programs that do not reach the end",
       [](Plan &p) { p.programs[1].numInstrs -= 2; },
       "instructions [27, 29) belong to no program"},
      {"micro_step without apply_step",
       [](Plan &p) {
         p.programs[0].numInstrs = 29;
         p.programs.pop_back();
         for (PlanBinding &b : p.bindings)
           if (b.program == 1)
             b.program = 0;
       },
       "programs (micro_step) are not a valid set: a plan has forward alone, "
       "train_step alone, or micro_step and apply_step"},
      {"forward with apply_step",
       [](Plan &p) { p.programs[0].name = "forward"; },
       "programs (forward, apply_step) are not a valid set"},
      {"weight bound to one program",
       [&](Plan &p) { bind(p, R::kWeight, "w").program = 0; },
       "binding 0 (weight 'w'): a weight belongs to every program (program "
       "4294967295), got program 0"},
      {"state bound to one program",
       [&](Plan &p) { bind(p, R::kState, "grad.w").program = 1; },
       "binding 2 (state 'grad.w'): a state belongs to every program"},
      {"input without a program in a training plan",
       [&](Plan &p) { bind(p, R::kInput, "x").program = kAllPrograms; },
       "binding 4 (input 'x'): must name its program in a plan with 2 "
       "programs"},
      {"output program out of range",
       [&](Plan &p) { bind(p, R::kOutput, "loss").program = 2; },
       "binding 6 (output 'loss'): program index 2 is out of range (2 "
       "programs)"},
      {"trainable state",
       [&](Plan &p) { bind(p, R::kState, "grad.w").trainable = true; },
       "binding 2 (state 'grad.w'): only weights can be trainable"},
      {"init rule on an input",
       [&](Plan &p) { bind(p, R::kInput, "x").init = InitKind::kZeros; },
       "binding 4 (input 'x'): only weights have an init rule"},
      {"init scale on a state",
       [&](Plan &p) { bind(p, R::kState, "grad.b").initScale = 1.0; },
       "binding 3 (state 'grad.b'): only weights have an init rule"},
      {"export name on an output",
       [&](Plan &p) { bind(p, R::kOutput, "loss").exportName = "l"; },
       "binding 6 (output 'loss'): only weights have an export name"},
      {"normal init with scale 0",
       [&](Plan &p) { bind(p, R::kWeight, "w").initScale = 0.0; },
       "binding 0 (weight 'w'): init normal needs a finite scale > 0, got 0"},
      {"normal init with a NaN scale",
       [&](Plan &p) { bind(p, R::kWeight, "w").initScale = std::nan(""); },
       "init normal needs a finite scale > 0, got nan"},
      {"normal init with an infinite scale",
       [&](Plan &p) {
         bind(p, R::kWeight, "w").initScale =
             std::numeric_limits<double>::infinity();
       },
       "init normal needs a finite scale > 0, got inf"},
      {"normal init of an integer weight",
       [](Plan &p) {
         PlanBinding &b = addWeight(p, "ids", DType::kI64);
         b.init = InitKind::kNormal;
         b.initScale = 1.0;
       },
       "binding 12 (weight 'ids'): init normal needs a float tensor, got "
       "2xi64"},
      {"scale on a zeros init",
       [&](Plan &p) { bind(p, R::kWeight, "b").initScale = 0.02; },
       "binding 1 (weight 'b'): init scale 0.02 given for init zeros (only "
       "normal takes a scale)"},
      {"state named as a weight",
       [&](Plan &p) { bind(p, R::kState, "grad.b").name = "w"; },
       "binding 3 (state 'w'): binding 0 (weight) has the same name "
       "(checkpoints key weights and states by name)"},
      {"two weights exported under one name",
       [&](Plan &p) { bind(p, R::kWeight, "b").exportName = "model.w"; },
       "binding 1 (weight 'b'): export name 'model.w' is also binding 0's"},
      {"an export name equal to another weight's name",
       [](Plan &p) { addWeight(p, "model.b", DType::kF32); },
       "binding 12 (weight 'model.b'): export name 'model.b' is also binding "
       "1's"},
      {"__step of the wrong type",
       [](Plan &p) {
         uint32_t t = tensorIndex(p, "step");
         p.tensors[t].type = TensorType{DType::kI32, {}};
       },
       "binding 8 (input '__step'): the reserved name needs i64, tensor"},
      {"__count_total of the wrong type",
       [](Plan &p) {
         p.tensors[tensorIndex(p, "count_total")].type.dims = {1};
       },
       "(input '__count_total'): the reserved name needs f32"},
      {"__count output of the wrong type",
       [&](Plan &p) {
         bind(p, R::kOutput, "__count").tensor = tensorIndex(p, "step");
         bind(p, R::kOutput, "__count").program = 1;
       },
       "(output '__count'): the reserved name needs f32, tensor"},
      {"two inputs of one name in one program",
       [&](Plan &p) { bind(p, R::kInput, "t").name = "x"; },
       "binding 5 (input 'x'): a second input binding with this name in "
       "program 'micro_step'"},
      {"a buffer sharing a state's bytes",
       [](Plan &p) {
         // "two" is a micro_step temporary; put it over grad.w.
         uint32_t two = p.tensors[tensorIndex(p, "two")].buffer;
         uint32_t grad = p.tensors[tensorIndex(p, "grad.w")].buffer;
         p.buffers[two].offsetBytes = p.buffers[grad].offsetBytes;
       },
       "buffer 2 'grad.w' holds a state or a training weight, but buffer 15 "
       "'two' shares its bytes (persistent buffers keep their bytes for the "
       "whole run)"},
      {"a buffer sharing a training weight's bytes",
       [](Plan &p) {
         uint32_t sq = p.tensors[tensorIndex(p, "sum_d")].buffer;
         p.buffers[sq].offsetBytes = 0; // w's buffer
       },
       "buffer 0 'w' holds a state or a training weight, but buffer 14 "
       "'sum_d' shares its bytes"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    Plan plan = makeTrainingPlan();
    c.corrupt(plan);
    Status st = validatePlan(plan);
    EXPECT_FALSE(st.isOk());
    EXPECT_EQ(st.code(), StatusCode::kCorruptPlan) << st.message();
    EXPECT_TRUE(contains(st.message(), c.message))
        << "message: " << st.message() << "\nexpected part: " << c.message;
  }
}

TEST(PlanFormat, AcceptsTrainingPlanVariants) {
  // The same input name in two programs is fine, as is an output that
  // echoes an input.
  Plan plan = makeTrainingPlan();
  plan.bindings[bindingIndex(plan, BindingRole::kOutput, "lr")].name = "loss";
  Status st = validatePlan(plan);
  EXPECT_TRUE(st.isOk()) << st.toString();
  // A forward plan may carry states and weights with init rules; its weight
  // buffers are not required to be persistent.
  plan = makeTestPlan(/*weightBinding=*/true);
  plan.bindings[2].init = InitKind::kOnes;
  plan.bindings[2].trainable = true;
  plan.bindings[2].exportName = "linear.weight";
  st = validatePlan(plan);
  EXPECT_TRUE(st.isOk()) << st.toString();
  // Token inputs, ones init.
  TrainingPlanOptions o;
  o.tokens = true;
  o.initW = InitKind::kOnes;
  st = validatePlan(makeTrainingPlan(o));
  EXPECT_TRUE(st.isOk()) << st.toString();
}

/// The optimizer kernels write the weight and its moments in place: those
/// exact aliases are accepted, any other overlap is not.
TEST(PlanFormat, AllowsOptimizerUpdatesInPlace) {
  for (const char *name : {"adamw", "sgd"}) {
    SCOPED_TRACE(name);
    const OpInfo *info = lookupOp(std::string_view(name));
    if (!info)
      GTEST_SKIP() << name << " is not in the op table yet";
    bool adam = std::string(name) == "adamw";
    PlanBuilder pb;
    uint32_t param = pb.tensor("param", DType::kF32, {4});
    uint32_t grad = pb.tensor("grad", DType::kF32, {4});
    uint32_t m = pb.tensor("m", DType::kF32, {4});
    uint32_t v = adam ? pb.tensor("v", DType::kF32, {4}) : 0;
    uint32_t lr = pb.tensor("lr", DType::kF32, {});
    uint32_t step = pb.tensor("step", DType::kI64, {});
    Attrs attrs(info->kind);
    for (const AttrSpec &spec : info->attrs)
      if (spec.type == AttrType::kF64)
        attrs.setF(spec.name, 0.5); // valid for betas, eps, decay, momentum
    std::vector<uint32_t> ins =
        adam ? std::vector<uint32_t>{param, grad, m, v, lr, step}
             : std::vector<uint32_t>{param, grad, m, lr, step};
    std::vector<uint32_t> outs = adam ? std::vector<uint32_t>{param, m, v}
                                      : std::vector<uint32_t>{param, m};
    pb.instr(attrs, ins, outs);
    Plan plan = pb.finish();
    Status st = validatePlan(plan);
    EXPECT_TRUE(st.isOk()) << st.toString();
    // The moment written over the gradient: not an allowed pair.
    plan.instrs[0].outputs[1] = grad;
    EXPECT_ERROR(validatePlan(plan), kCorruptPlan,
                 "output 1 (tensor 1) overlaps input 1 (tensor 1) in memory");
  }
}

/// Random corruptions of a training plan: whatever is accepted trains (or
/// fails cleanly).
TEST(PlanFormat, RandomCorruptionsOfATrainingPlanNeverCrash) {
  const PlanBytes clean = writeTestPlan(makeTrainingPlan());
  std::mt19937_64 rng(20250101);
  int accepted = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    PlanBytes pb = clean;
    size_t pos = 64 + rng() % (pb.bytes.size() - 64);
    pb.bytes[pos] = static_cast<uint8_t>(rng());
    pb.reseal();
    Plan plan;
    if (!pb.read(plan).isOk())
      continue;
    ++accepted;
    CpuExecutor exec;
    if (!exec.prepare(plan).isOk())
      continue;
    SafetensorsFile weights, batch, grads;
    for (const PlanBinding &bind : plan.bindings) {
      HostTensor t(plan.tensors[bind.tensor].type);
      if (bind.role == BindingRole::kWeight)
        weights.tensors.emplace_back(bind.name, t);
      else if (bind.role == BindingRole::kInput && bind.program == 0 &&
               !batch.find(bind.name))
        batch.tensors.emplace_back(bind.name, t);
    }
    ASSERT_TRUE(exec.loadWeights(weights).isOk());
    TrainStepStats stats;
    (void)exec.trainStep(0, batch, stats, &grads);
  }
  EXPECT_GT(accepted, 0);
}
