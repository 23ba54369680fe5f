//===- Safetensors.cpp - Read and write .safetensors files ----------------===//
//
// The header is JSON, parsed here by a small recursive-descent parser that
// accepts exactly what safetensors headers use: objects, arrays, strings
// (with every JSON escape) and integers. Floats, true, false and null are
// rejected, as is nesting deeper than kMaxDepth, so a hostile header cannot
// exhaust the stack. Every tensor's range is checked against the data before
// any byte is copied.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <unistd.h>

namespace colossal::runtime {

const HostTensor *SafetensorsFile::find(const std::string &name) const {
  for (const auto &entry : tensors)
    if (entry.first == name)
      return &entry.second;
  return nullptr;
}

//===----------------------------------------------------------------------===//
// JSON
//===----------------------------------------------------------------------===//

namespace {

/// Safetensors' own limit on the header size (100 MB).
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr int kMaxDepth = 16;
/// Below the top level, safetensors headers hold only shapes, offset pairs,
/// three-field tensor entries and the metadata map; these caps bound the
/// memory a hostile header can make the parser hold at once.
constexpr size_t kMaxArrayItems = 64;
constexpr size_t kMaxObjectMembers = 1 << 16;

struct JsonValue {
  enum Kind { kObject, kArray, kString, kInteger } kind = kInteger;
  bool negative = false;
  uint64_t magnitude = 0;       ///< kInteger: |value|
  std::string str;              ///< kString
  std::vector<JsonValue> items; ///< kArray
  /// kObject members in file order (duplicates are rejected while parsing).
  std::vector<std::pair<std::string, JsonValue>> members;
};

const char *jsonKindName(JsonValue::Kind kind) {
  switch (kind) {
  case JsonValue::kObject:
    return "an object";
  case JsonValue::kArray:
    return "an array";
  case JsonValue::kString:
    return "a string";
  case JsonValue::kInteger:
    return "an integer";
  }
  return "?";
}

class JsonParser {
public:
  JsonParser(const char *text, size_t size)
      : p_(text), begin_(text), end_(text + size) {}

  /// Parses a top-level object followed only by whitespace, handing each
  /// member to `onMember` as soon as it is parsed, so that the whole tree
  /// of a large header is never held at once.
  template <typename OnMember> Status parseRootObject(OnMember &&onMember) {
    skipSpace();
    if (p_ == end_ || *p_ != '{')
      return error("the header is not a JSON object");
    ++p_;
    skipSpace();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
    } else {
      std::set<std::string> keys;
      while (true) {
        skipSpace();
        if (p_ == end_ || *p_ != '"')
          return error("expected a string key");
        std::string key;
        COLOSSAL_RETURN_IF_ERROR(parseString(key));
        if (!keys.insert(key).second)
          return error("duplicate key \"" + key + "\"");
        skipSpace();
        if (p_ == end_ || *p_ != ':')
          return error("expected ':' after a key");
        ++p_;
        JsonValue value;
        COLOSSAL_RETURN_IF_ERROR(parseValue(value, 1));
        COLOSSAL_RETURN_IF_ERROR(onMember(key, value));
        skipSpace();
        if (p_ != end_ && *p_ == ',') {
          ++p_;
          continue;
        }
        if (p_ != end_ && *p_ == '}') {
          ++p_;
          break;
        }
        return error("expected ',' or '}' in an object");
      }
    }
    skipSpace();
    if (p_ != end_)
      return error("unexpected text after the JSON object");
    return Status::ok();
  }

private:
  Status error(const std::string &what) const {
    return Status(StatusCode::kInvalidArgument,
                  "malformed header JSON at byte " +
                      std::to_string(p_ - begin_) + ": " + what);
  }

  void skipSpace() {
    while (p_ != end_ &&
           (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
      ++p_;
  }

  Status parseValue(JsonValue &out, int depth) {
    if (depth > kMaxDepth)
      return error("nesting deeper than " + std::to_string(kMaxDepth));
    skipSpace();
    if (p_ == end_)
      return error("unexpected end of header");
    char c = *p_;
    if (c == '{')
      return parseObject(out, depth);
    if (c == '[')
      return parseArray(out, depth);
    if (c == '"') {
      out.kind = JsonValue::kString;
      return parseString(out.str);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
      return parseInteger(out);
    return error(std::string("unexpected character '") + c +
                 "' (only objects, arrays, strings and integers are allowed)");
  }

  Status parseObject(JsonValue &out, int depth) {
    out.kind = JsonValue::kObject;
    ++p_; // '{'
    skipSpace();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return Status::ok();
    }
    std::set<std::string> keys;
    while (true) {
      skipSpace();
      if (p_ == end_ || *p_ != '"')
        return error("expected a string key");
      std::string key;
      COLOSSAL_RETURN_IF_ERROR(parseString(key));
      if (!keys.insert(key).second)
        return error("duplicate key \"" + key + "\"");
      skipSpace();
      if (p_ == end_ || *p_ != ':')
        return error("expected ':' after a key");
      ++p_;
      JsonValue value;
      COLOSSAL_RETURN_IF_ERROR(parseValue(value, depth + 1));
      if (out.members.size() >= kMaxObjectMembers)
        return error("object with more than " +
                     std::to_string(kMaxObjectMembers) + " members");
      out.members.emplace_back(std::move(key), std::move(value));
      skipSpace();
      if (p_ != end_ && *p_ == ',') {
        ++p_;
        continue;
      }
      if (p_ != end_ && *p_ == '}') {
        ++p_;
        return Status::ok();
      }
      return error("expected ',' or '}' in an object");
    }
  }

  Status parseArray(JsonValue &out, int depth) {
    out.kind = JsonValue::kArray;
    ++p_; // '['
    skipSpace();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return Status::ok();
    }
    while (true) {
      JsonValue value;
      COLOSSAL_RETURN_IF_ERROR(parseValue(value, depth + 1));
      if (out.items.size() >= kMaxArrayItems)
        return error("array with more than " + std::to_string(kMaxArrayItems) +
                     " items");
      out.items.push_back(std::move(value));
      skipSpace();
      if (p_ != end_ && *p_ == ',') {
        ++p_;
        continue;
      }
      if (p_ != end_ && *p_ == ']') {
        ++p_;
        return Status::ok();
      }
      return error("expected ',' or ']' in an array");
    }
  }

  Status parseHex4(uint32_t &out) {
    if (end_ - p_ < 4)
      return error("truncated \\u escape");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *p_++;
      uint32_t digit;
      if (c >= '0' && c <= '9')
        digit = c - '0';
      else if (c >= 'a' && c <= 'f')
        digit = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        digit = c - 'A' + 10;
      else
        return error("bad hex digit in a \\u escape");
      out = out * 16 + digit;
    }
    return Status::ok();
  }

  static void appendUtf8(std::string &s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  Status parseString(std::string &out) {
    ++p_; // '"'
    out.clear();
    while (true) {
      if (p_ == end_)
        return error("unterminated string");
      unsigned char c = static_cast<unsigned char>(*p_++);
      if (c == '"')
        return Status::ok();
      if (c < 0x20)
        return error("control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (p_ == end_)
        return error("unterminated escape");
      char e = *p_++;
      switch (e) {
      case '"':
      case '\\':
      case '/':
        out += e;
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        uint32_t cp = 0;
        COLOSSAL_RETURN_IF_ERROR(parseHex4(cp));
        if (cp >= 0xDC00 && cp <= 0xDFFF)
          return error("unpaired low surrogate in a \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u')
            return error("unpaired high surrogate in a \\u escape");
          p_ += 2;
          uint32_t low;
          COLOSSAL_RETURN_IF_ERROR(parseHex4(low));
          if (low < 0xDC00 || low > 0xDFFF)
            return error("bad low surrogate in a \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        return error(std::string("unknown escape '\\") + e + "'");
      }
    }
  }

  Status parseInteger(JsonValue &out) {
    out.kind = JsonValue::kInteger;
    out.negative = false;
    if (*p_ == '-') {
      out.negative = true;
      ++p_;
    }
    if (p_ == end_ || *p_ < '0' || *p_ > '9')
      return error("expected a digit");
    if (*p_ == '0' && end_ - p_ > 1 && p_[1] >= '0' && p_[1] <= '9')
      return error("leading zero in a number");
    uint64_t v = 0;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
      uint64_t digit = static_cast<uint64_t>(*p_ - '0');
      if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10)
        return error("integer too large");
      v = v * 10 + digit;
      ++p_;
    }
    if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E'))
      return error("only integers are allowed, not fractions or exponents");
    out.magnitude = v;
    return Status::ok();
  }

  const char *p_;
  const char *begin_;
  const char *end_;
};

Status invalid(const std::string &message) {
  return Status(StatusCode::kInvalidArgument, message);
}

/// A non-negative integer that fits `limit`, or an error naming `what`.
Status asUnsigned(const JsonValue &v, uint64_t limit, const std::string &what,
                  uint64_t &out) {
  if (v.kind != JsonValue::kInteger)
    return invalid(what + " is " + jsonKindName(v.kind) +
                   ", expected an integer");
  if (v.negative && v.magnitude != 0)
    return invalid(what + " is negative");
  if (v.magnitude > limit)
    return invalid(what + " " + std::to_string(v.magnitude) + " is too large");
  out = v.magnitude;
  return Status::ok();
}

void appendJsonString(std::string &out, const std::string &s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\u%04x", c);
        out += buf;
      } else {
        out += static_cast<char>(c);
      }
    }
  }
  out += '"';
}

} // namespace

//===----------------------------------------------------------------------===//
// Reading
//===----------------------------------------------------------------------===//

namespace {

Status readSafetensorsImpl(const uint8_t *data, size_t size,
                           SafetensorsFile &out) {
  if (size < 8)
    return invalid("file is " + std::to_string(size) +
                   " bytes, too short for the 8-byte header length");
  uint64_t headerBytes = 0;
  for (int i = 7; i >= 0; --i)
    headerBytes = (headerBytes << 8) | data[i];
  if (headerBytes > size - 8)
    return invalid("header length " + std::to_string(headerBytes) +
                   " exceeds file size " + std::to_string(size));
  if (headerBytes > kMaxHeaderBytes)
    return invalid("header length " + std::to_string(headerBytes) +
                   " exceeds the limit of " + std::to_string(kMaxHeaderBytes));
  const char *text = reinterpret_cast<const char *>(data + 8);
  if (headerBytes == 0 || text[0] != '{')
    return invalid("header does not start with '{'");

  const uint8_t *payload = data + 8 + headerBytes;
  uint64_t payloadBytes = size - 8 - headerBytes;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  auto onMember = [&](const std::string &name,
                      const JsonValue &value) -> Status {
    if (name == "__metadata__") {
      if (value.kind != JsonValue::kObject)
        return invalid("__metadata__ is " +
                       std::string(jsonKindName(value.kind)) +
                       ", expected an object");
      for (auto &kv : value.members) {
        if (kv.second.kind != JsonValue::kString)
          return invalid("__metadata__ entry \"" + kv.first + "\" is " +
                         jsonKindName(kv.second.kind) + ", expected a string");
        out.metadata[kv.first] = kv.second.str;
      }
      return Status::ok();
    }
    std::string label = "tensor '" + name + "'";
    if (value.kind != JsonValue::kObject)
      return invalid(label + " is " + jsonKindName(value.kind) +
                     ", expected an object");
    const JsonValue *dtypeV = nullptr, *shapeV = nullptr, *offsetsV = nullptr;
    for (auto &kv : value.members) {
      if (kv.first == "dtype")
        dtypeV = &kv.second;
      else if (kv.first == "shape")
        shapeV = &kv.second;
      else if (kv.first == "data_offsets")
        offsetsV = &kv.second;
      else
        return invalid(label + ": unknown field \"" + kv.first + "\"");
    }
    if (!dtypeV || !shapeV || !offsetsV)
      return invalid(label + ": needs dtype, shape and data_offsets");
    if (dtypeV->kind != JsonValue::kString)
      return invalid(label + ": dtype is " + jsonKindName(dtypeV->kind) +
                     ", expected a string");
    std::optional<DType> dtype = dtypeFromSafetensorsName(dtypeV->str);
    if (!dtype)
      return invalid(label + ": unsupported dtype \"" + dtypeV->str + "\"");
    if (shapeV->kind != JsonValue::kArray)
      return invalid(label + ": shape is " + jsonKindName(shapeV->kind) +
                     ", expected an array");
    if (shapeV->items.size() > kMaxRank)
      return invalid(label + ": rank " + std::to_string(shapeV->items.size()) +
                     " exceeds " + std::to_string(kMaxRank));
    TensorType type;
    type.dtype = *dtype;
    // Element count overflow is impossible past the payload check below,
    // but the product itself must not wrap first.
    uint64_t elems = 1;
    bool huge = false;
    for (size_t d = 0; d < shapeV->items.size(); ++d) {
      uint64_t dim;
      COLOSSAL_RETURN_IF_ERROR(
          asUnsigned(shapeV->items[d],
                     static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                     label + ": shape[" + std::to_string(d) + "]", dim));
      type.dims.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && elems > (uint64_t(1) << 62) / dim)
        huge = true;
      else
        elems *= dim;
    }
    if (offsetsV->kind != JsonValue::kArray || offsetsV->items.size() != 2)
      return invalid(label + ": data_offsets must be an array [begin, end]");
    uint64_t begin, end;
    COLOSSAL_RETURN_IF_ERROR(asUnsigned(offsetsV->items[0], payloadBytes,
                                        label + ": data_offsets begin", begin));
    COLOSSAL_RETURN_IF_ERROR(asUnsigned(offsetsV->items[1], payloadBytes,
                                        label + ": data_offsets end", end));
    if (begin > end)
      return invalid(label + ": data_offsets [" + std::to_string(begin) + ", " +
                     std::to_string(end) + "] are reversed");
    uint64_t esize = dtypeSizeBytes(*dtype);
    if (huge || elems > (uint64_t(1) << 62) / esize ||
        elems * esize != end - begin)
      return invalid(label + ": " + type.toString() + " needs " +
                     (huge ? std::string("more than 2^62")
                           : std::to_string(elems * esize)) +
                     " bytes, data_offsets give " +
                     std::to_string(end - begin));
    ranges.push_back({begin, end, out.tensors.size()});
    HostTensor tensor;
    tensor.type = std::move(type);
    out.tensors.emplace_back(name, std::move(tensor));
    return Status::ok();
  };
  COLOSSAL_RETURN_IF_ERROR(JsonParser(text, static_cast<size_t>(headerBytes))
                               .parseRootObject(onMember));

  std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Range *last = nullptr;
  for (const Range &r : ranges) {
    if (r.begin == r.end)
      continue; // empty tensors occupy no bytes
    if (last && r.begin < last->end)
      return invalid("tensors '" + out.tensors[last->index].first + "' and '" +
                     out.tensors[r.index].first + "' overlap in the data");
    last = &r;
  }
  // Copy only now: with overlaps ruled out, the copies together are at most
  // the payload's size, whatever the header claims.
  for (const Range &r : ranges)
    out.tensors[r.index].second.bytes.assign(payload + r.begin,
                                             payload + r.end);
  return Status::ok();
}

} // namespace

Status readSafetensors(const uint8_t *data, size_t size, SafetensorsFile &out) {
  out = SafetensorsFile();
  Status st = readSafetensorsImpl(data, size, out);
  if (!st.isOk())
    out = SafetensorsFile();
  return st;
}

namespace {

Status readWholeFile(const std::string &path, std::vector<uint8_t> &bytes) {
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) {
    int err = errno;
    return Status(err == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError,
                  path + ": cannot open: " + std::strerror(err));
  }
  std::unique_ptr<uint8_t[]> chunk(new uint8_t[1 << 16]);
  size_t n;
  while ((n = std::fread(chunk.get(), 1, 1 << 16, f)) > 0)
    bytes.insert(bytes.end(), chunk.get(), chunk.get() + n);
  bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed)
    return Status(StatusCode::kIoError, path + ": read error");
  return Status::ok();
}

} // namespace

Status readSafetensorsFile(const std::string &path, SafetensorsFile &out) {
  std::vector<uint8_t> bytes;
  COLOSSAL_RETURN_IF_ERROR(readWholeFile(path, bytes));
  Status st = readSafetensors(bytes.data(), bytes.size(), out);
  if (!st.isOk())
    return Status(st.code(), path + ": " + st.message());
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Writing
//===----------------------------------------------------------------------===//

Status writeSafetensors(const SafetensorsFile &file,
                        std::vector<uint8_t> &out) {
  std::set<std::string> names;
  // Header: metadata first (sorted by key, as std::map iterates), then the
  // tensors in the caller's order, packed back to back in the data.
  std::string json = "{";
  bool first = true;
  if (!file.metadata.empty()) {
    json += "\"__metadata__\":{";
    for (auto it = file.metadata.begin(); it != file.metadata.end(); ++it) {
      if (it != file.metadata.begin())
        json += ',';
      appendJsonString(json, it->first);
      json += ':';
      appendJsonString(json, it->second);
    }
    json += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const auto &entry : file.tensors) {
    const std::string &name = entry.first;
    const HostTensor &t = entry.second;
    if (name == "__metadata__")
      return invalid("a tensor cannot be named __metadata__");
    if (!names.insert(name).second)
      return invalid("duplicate tensor name '" + name + "'");
    const char *dtypeName = dtypeSafetensorsName(t.type.dtype);
    if (!isValidDType(static_cast<uint32_t>(t.type.dtype)))
      return invalid("tensor '" + name + "' has an invalid dtype");
    if (t.type.rank() > kMaxRank)
      return invalid("tensor '" + name + "' has rank " +
                     std::to_string(t.type.rank()) + ", more than " +
                     std::to_string(kMaxRank));
    for (int64_t d : t.type.dims)
      if (d < 0)
        return invalid("tensor '" + name + "' has a negative dim");
    if (t.bytes.size() != t.type.sizeBytes())
      return invalid("tensor '" + name + "' (" + t.type.toString() + ") has " +
                     std::to_string(t.bytes.size()) + " bytes, expected " +
                     std::to_string(t.type.sizeBytes()));
    if (!first)
      json += ',';
    first = false;
    appendJsonString(json, name);
    json += ":{\"dtype\":\"";
    json += dtypeName;
    json += "\",\"shape\":[";
    for (size_t d = 0; d < t.type.dims.size(); ++d) {
      if (d)
        json += ',';
      json += std::to_string(t.type.dims[d]);
    }
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," +
            std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  json += '}';
  // The spec allows trailing spaces; padding keeps the data 8-aligned.
  while (json.size() % 8 != 0)
    json += ' ';

  out.clear();
  out.reserve(8 + json.size() + offset);
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), json.begin(), json.end());
  for (const auto &entry : file.tensors)
    out.insert(out.end(), entry.second.bytes.begin(), entry.second.bytes.end());
  return Status::ok();
}

Status writeSafetensorsFile(const SafetensorsFile &file,
                            const std::string &path) {
  std::vector<uint8_t> bytes;
  Status st = writeSafetensors(file, bytes);
  if (!st.isOk())
    return Status(st.code(), path + ": " + st.message());
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    return Status(StatusCode::kIoError,
                  path + ": cannot write: " + std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
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

} // namespace colossal::runtime
