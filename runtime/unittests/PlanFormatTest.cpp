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
  }
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
  EXPECT_EQ(pb.get(24, 4), 11u); // one entry per SectionId
  EXPECT_EQ(pb.get(28, 4), 24u);
  EXPECT_EQ(pb.get(32, 8), fnv1a64(pb.bytes.data() + 64, pb.bytes.size() - 64));
  EXPECT_EQ(pb.get(56, 8), fnv1a64(pb.bytes.data(), 56));
  EXPECT_EQ(pb.bytes.size() % 8, 0u);
  // Sections in id order, each 8-aligned, records of the documented sizes.
  const uint32_t recordBytes[] = {0, 56, 1, 24, 48, 88, 48, 4, 8, 8, 32, 1};
  uint64_t end = 64 + 11 * 24;
  for (uint32_t id = 1; id <= 11; ++id) {
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
}
