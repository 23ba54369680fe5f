//===- SafetensorsTest.cpp - safetensors reader and writer ----------------===//
//
// Round trips (every dtype, scalars, empty tensors, metadata), the exact
// bytes the writer produces, headers written by hand (escapes, whitespace,
// key order), and rejection of malformed files: truncations, bad JSON, bad
// dtypes, shapes and offsets, overlaps.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <unistd.h>

using namespace colossal::runtime;

namespace {

HostTensor makeTensor(DType dtype, std::vector<int64_t> dims) {
  HostTensor t(TensorType{dtype, std::move(dims)});
  for (size_t i = 0; i < t.bytes.size(); ++i)
    t.bytes[i] = static_cast<uint8_t>(i * 7 + 3);
  return t;
}

/// A file from a header written by hand and raw data bytes.
std::vector<uint8_t> rawFile(const std::string &json,
                             const std::vector<uint8_t> &data = {}) {
  std::vector<uint8_t> out;
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), json.begin(), json.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Status parse(const std::vector<uint8_t> &bytes, SafetensorsFile &out) {
  return readSafetensors(bytes.data(), bytes.size(), out);
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

SafetensorsFile sampleFile() {
  SafetensorsFile file;
  file.tensors.emplace_back("weight", makeTensor(DType::kF32, {2, 3}));
  file.tensors.emplace_back("bias.bf16", makeTensor(DType::kBF16, {3}));
  file.tensors.emplace_back("half", makeTensor(DType::kF16, {1, 1, 2}));
  file.tensors.emplace_back("double", makeTensor(DType::kF64, {2}));
  file.tensors.emplace_back("ids", makeTensor(DType::kI64, {4}));
  file.tensors.emplace_back("ids32", makeTensor(DType::kI32, {2, 2}));
  file.tensors.emplace_back("small", makeTensor(DType::kI8, {5}));
  file.tensors.emplace_back("bytes", makeTensor(DType::kU8, {3}));
  HostTensor mask = makeTensor(DType::kBool, {3});
  mask.bytes = {1, 0, 1};
  file.tensors.emplace_back("mask", mask);
  file.tensors.emplace_back("scalar", makeTensor(DType::kF32, {}));
  file.tensors.emplace_back("empty", makeTensor(DType::kF32, {0, 4}));
  file.metadata["format"] = "pt";
  file.metadata["note"] = "quote \" backslash \\ newline \n tab \t";
  return file;
}

void expectSameFile(const SafetensorsFile &a, const SafetensorsFile &b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
    EXPECT_EQ(a.tensors[i].second.type, b.tensors[i].second.type);
    EXPECT_EQ(a.tensors[i].second.bytes, b.tensors[i].second.bytes);
  }
  EXPECT_EQ(a.metadata, b.metadata);
}

} // namespace

//===----------------------------------------------------------------------===//
// Round trips and exact output
//===----------------------------------------------------------------------===//

TEST(Safetensors, RoundTripEveryDType) {
  SafetensorsFile original = sampleFile();
  std::vector<uint8_t> bytes;
  Status st = writeSafetensors(original, bytes);
  ASSERT_TRUE(st.isOk()) << st.toString();
  SafetensorsFile read;
  st = parse(bytes, read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectSameFile(original, read);
  // Writing what was read gives the same bytes.
  std::vector<uint8_t> again;
  ASSERT_TRUE(writeSafetensors(read, again).isOk());
  EXPECT_EQ(bytes, again);
}

TEST(Safetensors, WriterOutputIsExact) {
  SafetensorsFile file;
  HostTensor x(TensorType{DType::kF32, {2}});
  float values[2] = {1.0f, -2.0f};
  std::memcpy(x.bytes.data(), values, 8);
  file.tensors.emplace_back("x", x);
  file.tensors.emplace_back("a\"b", HostTensor(TensorType{DType::kI64, {}}));
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(writeSafetensors(file, bytes).isOk());
  std::string json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],"
                     "\"data_offsets\":[0,8]},\"a\\\"b\":{\"dtype\":\"I64\","
                     "\"shape\":[],\"data_offsets\":[8,16]}}";
  // Padded with spaces so that the data starts 8-aligned.
  while (json.size() % 8)
    json += ' ';
  std::vector<uint8_t> data(16, 0);
  std::memcpy(data.data(), values, 8);
  EXPECT_EQ(bytes, rawFile(json, data));
}

TEST(Safetensors, EmptyFileRoundTrips) {
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(writeSafetensors(SafetensorsFile(), bytes).isOk());
  EXPECT_EQ(bytes, rawFile("{}      "));
  SafetensorsFile read;
  EXPECT_TRUE(parse(bytes, read).isOk());
  EXPECT_TRUE(read.tensors.empty());
}

TEST(Safetensors, FileRoundTripAndMissingFile) {
  std::string path = ::testing::TempDir() + "safetensors-test-" +
                     std::to_string(::getpid()) + ".safetensors";
  SafetensorsFile original = sampleFile();
  Status st = writeSafetensorsFile(original, path);
  ASSERT_TRUE(st.isOk()) << st.toString();
  SafetensorsFile read;
  st = readSafetensorsFile(path, read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  expectSameFile(original, read);
  EXPECT_NE(read.find("ids"), nullptr);
  EXPECT_EQ(read.find("nope"), nullptr);
  std::remove(path.c_str());
  st = readSafetensorsFile(path, read);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(st.message(), path)) << st.message();
}

TEST(Safetensors, FileErrorsNameThePath) {
  std::string path = ::testing::TempDir() + "safetensors-test-bad-" +
                     std::to_string(::getpid()) + ".safetensors";
  std::vector<uint8_t> bytes = rawFile("{}");
  bytes[0] = 200; // header length 200, file of 10 bytes
  std::FILE *f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  SafetensorsFile read;
  Status st = readSafetensorsFile(path, read);
  EXPECT_EQ(st.message(), path + ": header length 200 exceeds file size 10");
  std::remove(path.c_str());
}

TEST(Safetensors, ReadsHandWrittenHeaders) {
  // Whitespace, escapes (including a surrogate pair), metadata last, keys
  // in any order, and trailing padding.
  std::string json =
      "{ \"caf\\u00e9\\ud83d\\ude00\\n\" : { \"shape\" : [ 1 , 2 ] ,"
      " \"data_offsets\" : [ 0 , 8 ] , \"dtype\" : \"F32\" } ,\n"
      "\"__metadata__\": {\"k\\/ey\": \"v\\\\al\\u0041\"}}\t\r\n   ";
  std::vector<uint8_t> data(8, 0);
  SafetensorsFile read;
  Status st = parse(rawFile(json, data), read);
  ASSERT_TRUE(st.isOk()) << st.toString();
  ASSERT_EQ(read.tensors.size(), 1u);
  EXPECT_EQ(read.tensors[0].first, "caf\xc3\xa9\xf0\x9f\x98\x80\n");
  EXPECT_EQ(read.tensors[0].second.type, (TensorType{DType::kF32, {1, 2}}));
  EXPECT_EQ(read.metadata.at("k/ey"), "v\\alA");
}

TEST(Safetensors, AllowsUnusedBytesAndEmptyTensorsAnywhere) {
  // An empty tensor at the same offset as a real one does not overlap it,
  // and bytes no tensor claims are tolerated.
  std::string json = "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],"
                     "\"data_offsets\":[4,4]},\"x\":{\"dtype\":\"I32\","
                     "\"shape\":[1],\"data_offsets\":[4,8]}}";
  SafetensorsFile read;
  Status st = parse(rawFile(json, std::vector<uint8_t>(12, 0)), read);
  EXPECT_TRUE(st.isOk()) << st.toString();
}

//===----------------------------------------------------------------------===//
// Rejections
//===----------------------------------------------------------------------===//

TEST(Safetensors, RejectsShortAndTruncatedFiles) {
  SafetensorsFile read;
  EXPECT_FALSE(readSafetensors(nullptr, 0, read).isOk());
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(writeSafetensors(sampleFile(), bytes).isOk());
  for (size_t len = 0; len < bytes.size(); ++len) {
    Status st = readSafetensors(bytes.data(), len, read);
    EXPECT_FALSE(st.isOk()) << "truncated to " << len << " bytes: accepted";
    EXPECT_TRUE(read.tensors.empty());
  }
}

TEST(Safetensors, RejectsGarbage) {
  std::vector<uint8_t> garbage(4096);
  uint32_t x = 12345;
  for (uint8_t &b : garbage) {
    x = x * 1103515245 + 12345;
    b = static_cast<uint8_t>(x >> 16);
  }
  SafetensorsFile read;
  EXPECT_FALSE(parse(garbage, read).isOk());
  // A plausible length followed by garbage.
  garbage[0] = 100;
  for (int i = 1; i < 8; ++i)
    garbage[i] = 0;
  EXPECT_FALSE(parse(garbage, read).isOk());
}

TEST(Safetensors, RejectsMalformedHeaders) {
  const std::vector<uint8_t> data(16, 0);
  struct Case {
    std::string json;
    std::string message;
  };
  const std::string ok = "\"dtype\":\"F32\",\"shape\":[2],";
  std::string longArray = "[1";
  for (int i = 1; i < 65; ++i)
    longArray += ",1";
  longArray += "]";
  std::vector<Case> cases = {
      {"", "header does not start with '{'"},
      {"[]", "header does not start with '{'"},
      {" {}", "header does not start with '{'"},
      {"{", "expected a string key"},
      {"{\"a\":}", "unexpected character '}'"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8]},}", "expected a string key"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8,]}}",
       "unexpected character ']'"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8]}} x", "unexpected text after"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8]}}{}", "unexpected text after"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8.0]}}", "only integers"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8e0]}}", "only integers"},
      {"{\"a\":{" + ok + "\"data_offsets\":[00,8]}}", "leading zero"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,99999999999999999999999]}}",
       "integer too large"},
      {"{\"a\":true}", "unexpected character 't'"},
      {"{\"a\":null}", "unexpected character 'n'"},
      {"{\"a\\q\":1}", "unknown escape '\\q'"},
      {"{\"a\\u12\":1}", "bad hex digit"},
      {"{\"a\\ud800\":1}", "unpaired high surrogate"},
      {"{\"a\\udc00\":1}", "unpaired low surrogate"},
      {"{\"a\nb\":1}", "control character in a string"},
      {"{\"a", "unterminated string"},
      {"{\"a\" 1}", "expected ':' after a key"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8]},\"a\":{" + ok +
           "\"data_offsets\":[8,16]}}",
       "duplicate key \"a\""},
      {"{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}", "nesting deeper"},
      {"{\"a\":" + longArray + "}", "array with more than 64 items"},
      // Schema errors.
      {"{\"a\":1}", "tensor 'a' is an integer, expected an object"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}",
       "needs dtype, shape and data_offsets"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8],\"extra\":1}}",
       "unknown field \"extra\""},
      {"{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}",
       "tensor 'a': unsupported dtype \"F8_E4M3\""},
      {"{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}",
       "dtype is an integer, expected a string"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}",
       "shape is an integer, expected an array"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
       "tensor 'a': shape[0] is negative"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}",
       "shape[0] is a string, expected an integer"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
       "\"data_offsets\":[0,4]}}",
       "tensor 'a': rank 9 exceeds 8"},
      {"{\"a\":{" + ok + "\"data_offsets\":[8,0]}}", "are reversed"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,12]}}",
       "tensor 'a': 2xf32 needs 8 bytes, data_offsets give 12"},
      {"{\"a\":{" + ok + "\"data_offsets\":[12,20]}}",
       "data_offsets end 20 is too large"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0]}}",
       "data_offsets must be an array [begin, end]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
       "\"data_offsets\":[0,16]}}",
       "needs more than 2^62 bytes"},
      {"{\"a\":{" + ok + "\"data_offsets\":[0,8]},\"b\":{" + ok +
           "\"data_offsets\":[4,12]}}",
       "tensors 'a' and 'b' overlap in the data"},
      {"{\"__metadata__\":[]}", "__metadata__ is an array, expected an object"},
      {"{\"__metadata__\":{\"k\":1}}",
       "__metadata__ entry \"k\" is an integer, expected a string"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.json);
    SafetensorsFile read;
    Status st = parse(rawFile(c.json, data), read);
    EXPECT_FALSE(st.isOk());
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(st.message(), c.message))
        << "message: " << st.message() << "\nexpected part: " << c.message;
  }
}

TEST(Safetensors, RejectsHeaderLengthPastTheEnd) {
  std::vector<uint8_t> bytes = rawFile("{}");
  bytes[0] = 0xff;
  bytes[7] = 0xff; // a length near 2^64 must not wrap the bounds check
  SafetensorsFile read;
  Status st = parse(bytes, read);
  EXPECT_FALSE(st.isOk());
  EXPECT_TRUE(contains(st.message(), "exceeds file size 10")) << st.message();
}

TEST(Safetensors, WriterRejectsInconsistentTensors) {
  std::vector<uint8_t> bytes;
  SafetensorsFile dup;
  dup.tensors.emplace_back("x", makeTensor(DType::kF32, {1}));
  dup.tensors.emplace_back("x", makeTensor(DType::kF32, {1}));
  Status st = writeSafetensors(dup, bytes);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(st.message(), "duplicate tensor name 'x'"));

  SafetensorsFile wrongSize;
  HostTensor t = makeTensor(DType::kF32, {2});
  t.bytes.resize(5);
  wrongSize.tensors.emplace_back("t", t);
  st = writeSafetensors(wrongSize, bytes);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(st.message(), "tensor 't' (2xf32) has 5 bytes, "
                                     "expected 8"))
      << st.message();
}

/// Random byte edits anywhere in a valid file, header JSON included: the
/// reader either accepts (and then the file writes back) or reports an
/// error; it never crashes or reads out of bounds.
TEST(Safetensors, RandomCorruptionsNeverCrash) {
  std::vector<uint8_t> clean;
  ASSERT_TRUE(writeSafetensors(sampleFile(), clean).isOk());
  const char tokens[] = "{}[]\",:0123456789-.eu\\ ";
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> bytes = clean;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % bytes.size();
      bytes[pos] =
          rng() % 2
              ? static_cast<uint8_t>(rng())
              : static_cast<uint8_t>(tokens[rng() % (sizeof(tokens) - 1)]);
    }
    if (rng() % 8 == 0)
      bytes.resize(rng() % bytes.size());
    SafetensorsFile read;
    Status st = parse(bytes, read);
    if (st.isOk()) {
      std::vector<uint8_t> again;
      EXPECT_TRUE(writeSafetensors(read, again).isOk());
    }
  }
}
