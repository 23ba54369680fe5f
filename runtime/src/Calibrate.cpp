//===- Calibrate.cpp - Measure the CPU, write the device profile ----------===//
//
// The host half of `colossal-run --calibrate` (Calibrate.h): the runtime's
// own AdamW host kernel timed on all cores, the machine's memory and CPU
// model, and the profile writer. The GPU half (cuda/Calibrate.cu) fills a
// GpuCalibration; without it the GPU fields are copied verbatim from a base
// profile, which is read and checked before anything is measured.
//
//===----------------------------------------------------------------------===//

#include "Calibrate.h"

#include "colossal/runtime/Kernels.h"
#include "colossal/runtime/OpTable.h"
#include "colossal/runtime/Tensor.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace colossal::runtime {

namespace {

GpuCalibrator &gpuCalibrator() {
  static GpuCalibrator calibrator = nullptr;
  return calibrator;
}

void progress(const CalibrateOptions &opts, const std::string &line) {
  if (opts.progress) {
    std::fprintf(opts.progress, "colossal-run: calibrate: %s\n", line.c_str());
    std::fflush(opts.progress);
  }
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string format(const char *fmt, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, value);
  return buf;
}

/// A rate as the shipped profile writes it: 4 significant digits, an
/// exponent ("4.213e+09" is valid JSON).
std::string rate(double value) { return format("%.4g", value); }

/// Bytes as a size string rounded down to 0.1 GiB ("139.8GiB"): the
/// profile's budget must never promise more than is there.
std::string gibString(uint64_t bytes) {
  double tenths = std::floor(static_cast<double>(bytes) / (1ull << 30) * 10);
  return format("%.1f", tenths / 10) + "GiB";
}

std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    }
    else
      out += c;
  }
  return out + "\"";
}

//===----------------------------------------------------------------------===//
// The base profile: only its top-level members are needed, each kept as the
// raw JSON text of its value so that it is copied unchanged. A small
// recursive scanner (the runtime links no JSON library); colossal-opt checks
// the written profile fully.
//===----------------------------------------------------------------------===//

struct BaseMember {
  std::string key;
  std::string raw;  ///< the value's JSON text
  char kind = 0;    ///< 'o'bject 'a'rray 's'tring 'n'umber 'l'iteral
  std::string text; ///< strings: the decoded value (escapes kept simple)
  double number = 0;
};

class JsonScanner {
public:
  explicit JsonScanner(const std::string &text) : s(text) {}

  Status members(std::vector<BaseMember> &out) {
    skipSpace();
    if (!eat('{'))
      return fail("expected a JSON object at the top level");
    skipSpace();
    if (eat('}'))
      return Status::ok();
    while (true) {
      BaseMember m;
      skipSpace();
      COLOSSAL_RETURN_IF_ERROR(string(m.key));
      skipSpace();
      if (!eat(':'))
        return fail("expected ':' after \"" + m.key + "\"");
      skipSpace();
      size_t begin = pos;
      m.kind = peekKind();
      if (m.kind == 's') {
        COLOSSAL_RETURN_IF_ERROR(string(m.text));
      } else if (m.kind == 'n') {
        char *end = nullptr;
        m.number = std::strtod(s.c_str() + pos, &end);
        if (end == s.c_str() + pos)
          return fail("bad number");
        pos = static_cast<size_t>(end - s.c_str());
      } else {
        COLOSSAL_RETURN_IF_ERROR(skipValue(0));
      }
      m.raw = s.substr(begin, pos - begin);
      out.push_back(std::move(m));
      skipSpace();
      if (eat('}'))
        break;
      if (!eat(','))
        return fail("expected ',' or '}'");
    }
    skipSpace();
    if (pos != s.size())
      return fail("text after the top-level object");
    return Status::ok();
  }

private:
  Status fail(const std::string &what) const {
    return Status(StatusCode::kInvalidArgument,
                  "not valid JSON at byte " + std::to_string(pos) + ": " +
                      what);
  }
  void skipSpace() {
    while (pos < s.size() && std::strchr(" \t\r\n", s[pos]))
      ++pos;
  }
  bool eat(char c) {
    if (pos < s.size() && s[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  }
  char peekKind() const {
    if (pos >= s.size())
      return 0;
    char c = s[pos];
    if (c == '{')
      return 'o';
    if (c == '[')
      return 'a';
    if (c == '"')
      return 's';
    if (c == '-' || (c >= '0' && c <= '9'))
      return 'n';
    return 'l';
  }
  Status string(std::string &out) {
    if (!eat('"'))
      return fail("expected a string");
    while (pos < s.size() && s[pos] != '"') {
      if (s[pos] == '\\') {
        if (++pos >= s.size())
          break;
        if (s[pos] == 'u') { // kept as written: only names use strings
          out += "\\u";
          ++pos;
          continue;
        }
        static const char kFrom[] = "\"\\/bfnrt", kTo[] = "\"\\/\b\f\n\r\t";
        const char *p = std::strchr(kFrom, s[pos]);
        if (!p)
          return fail("bad escape in a string");
        out += kTo[p - kFrom];
        ++pos;
        continue;
      }
      out += s[pos++];
    }
    if (!eat('"'))
      return fail("unterminated string");
    return Status::ok();
  }
  Status skipValue(int depth) {
    if (depth > 32)
      return fail("nested too deeply");
    skipSpace();
    switch (peekKind()) {
    case 's': {
      std::string ignored;
      return string(ignored);
    }
    case 'n': {
      char *end = nullptr;
      std::strtod(s.c_str() + pos, &end);
      if (end == s.c_str() + pos)
        return fail("bad number");
      pos = static_cast<size_t>(end - s.c_str());
      return Status::ok();
    }
    case 'o':
    case 'a': {
      char close = s[pos] == '{' ? '}' : ']';
      bool object = close == '}';
      ++pos;
      skipSpace();
      if (eat(close))
        return Status::ok();
      while (true) {
        skipSpace();
        if (object) {
          std::string key;
          COLOSSAL_RETURN_IF_ERROR(string(key));
          skipSpace();
          if (!eat(':'))
            return fail("expected ':'");
        }
        COLOSSAL_RETURN_IF_ERROR(skipValue(depth + 1));
        skipSpace();
        if (eat(close))
          return Status::ok();
        if (!eat(','))
          return fail(std::string("expected ',' or '") + close + "'");
      }
    }
    default:
      for (const char *word : {"true", "false", "null"})
        if (s.compare(pos, std::strlen(word), word) == 0) {
          pos += std::strlen(word);
          return Status::ok();
        }
      return fail("unexpected character");
    }
  }

  const std::string &s;
  size_t pos = 0;
};

/// The GPU fields, in the order the profile writes them, and whether the
/// base profile must have each (the cost model's required fields).
struct GpuField {
  const char *key;
  char kind; ///< 'n' a positive number, 'b' bytes (number or string),
             ///< 'o' an object
  bool required;
};
const GpuField kGpuFields[] = {
    {"device_memory", 'b', true},
    {"hbm_bytes_per_s", 'n', true},
    {"kernel_floor_s", 'n', false},
    {"gemm_tflops", 'o', true},
    {"h2d_bytes_per_s", 'n', true},
    {"d2h_bytes_per_s", 'n', true},
    {"bidirectional_bytes_per_s", 'n', false},
    {"copy_latency_s", 'n', true},
};

/// Reads `path` and keeps its GPU fields' raw JSON text by key.
Status readBase(const std::string &path, std::string &baseName,
                std::vector<std::pair<std::string, std::string>> &fields) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status(StatusCode::kNotFound,
                  "--calibrate-base '" + path + "': cannot open: " +
                      std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::vector<BaseMember> members;
  std::string text = buffer.str();
  Status st = JsonScanner(text).members(members);
  if (!st.isOk())
    return Status(StatusCode::kInvalidArgument,
                  "--calibrate-base '" + path + "': " + st.message());
  for (const BaseMember &m : members)
    if (m.key == "name" && m.kind == 's')
      baseName = m.text;
  for (const GpuField &f : kGpuFields) {
    const BaseMember *found = nullptr;
    for (const BaseMember &m : members)
      if (m.key == f.key)
        found = &m;
    auto bad = [&](const std::string &what) {
      return Status(StatusCode::kInvalidArgument,
                    "--calibrate-base '" + path + "': field '" + f.key +
                        "' " + what);
    };
    if (!found) {
      if (f.required)
        return bad("is missing (the GPU fields are copied from the base "
                   "profile when no GPU is measured)");
      continue;
    }
    bool ok = f.kind == 'o' ? found->kind == 'o'
              : f.kind == 'b'
                  ? (found->kind == 'n' && found->number > 0) ||
                        found->kind == 's'
                  : found->kind == 'n' && found->number > 0 &&
                        std::isfinite(found->number);
    if (!ok)
      return bad(std::string("must be ") +
                 (f.kind == 'o'   ? "an object"
                  : f.kind == 'b' ? "a positive size"
                                  : "a positive number") +
                 ", got " + found->raw);
    fields.emplace_back(f.key, found->raw);
  }
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// The CPU
//===----------------------------------------------------------------------===//

std::string cpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string model = line.substr(colon + 1);
        model.erase(0, model.find_first_not_of(" \t"));
        return model;
      }
    }
  return "unknown CPU";
}

uint64_t hostMemoryBytes() {
  long pages = sysconf(_SC_PHYS_PAGES), pageBytes = sysconf(_SC_PAGESIZE);
  return pages > 0 && pageBytes > 0
             ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(pageBytes)
             : 0;
}

/// The threads the runtime's host kernels use (Kernels.cpp's parallelFor).
int64_t hostThreads() {
  int64_t threads = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (const char *env = std::getenv("COLOSSAL_CPU_THREADS"))
    threads = std::max<int64_t>(1, std::atoll(env));
  return std::max<int64_t>(threads, 1);
}

/// Times the host AdamW kernel (runCpuKernel, what the host stream runs):
/// f32 param, grad and states, updated in place; the median of 5 updates
/// after one warm-up. Returns parameters per second.
Status measureCpuAdamW(const CalibrateOptions &opts, double &paramsPerS) {
  int64_t n = opts.adamwParams;
  std::vector<float> p(n, 0.5f), g(n, 0.01f), m(n, 0.0f), v(n, 0.0f);
  float lr = 1e-4f;
  int64_t step = 0;
  Attrs attrs(OpKind::AdamW);
  attrs.setF("beta1", 0.9);
  attrs.setF("beta2", 0.999);
  attrs.setF("eps", 1e-8);
  attrs.setF("weight_decay", 0.01);
  TensorType vec{DType::kF32, {n}};
  std::vector<TensorRef> ins = {{vec, p.data()},
                                {vec, g.data()},
                                {vec, m.data()},
                                {vec, v.data()},
                                {TensorType{DType::kF32, {}}, &lr},
                                {TensorType{DType::kI64, {}}, &step}};
  std::vector<TensorType> inTypes, outTypes;
  for (const TensorRef &r : ins)
    inTypes.push_back(r.type);
  COLOSSAL_RETURN_IF_ERROR(inferOutputTypes(attrs, inTypes, outTypes));
  std::vector<TensorRef> outs = {{outTypes[0], p.data()},
                                 {outTypes[1], m.data()},
                                 {outTypes[2], v.data()}};
  std::vector<double> seconds;
  for (int run = 0; run < 6; ++run) {
    auto start = std::chrono::steady_clock::now();
    COLOSSAL_RETURN_IF_ERROR(runCpuKernel(attrs, ins, outs));
    std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    ++step;
    if (run > 0) // the first touches the pages and wakes the threads
      seconds.push_back(took.count());
  }
  double s = median(seconds);
  if (!(s > 0))
    return Status(StatusCode::kInternal,
                  "the AdamW update took no measurable time");
  paramsPerS = static_cast<double>(n) / s;
  return Status::ok();
}

} // namespace

void registerGpuCalibrator(GpuCalibrator calibrator) {
  gpuCalibrator() = calibrator;
}

Status calibrateToFile(const CalibrateOptions &opts, const std::string &path) {
  if (opts.adamwParams <= 0)
    return Status(StatusCode::kInvalidArgument,
                  "COLOSSAL_CALIBRATE_ADAMW_PARAMS must be a positive count");
  // Everything that can fail on input fails before the measurements: the
  // output file, then the base profile (read even when a GPU is measured,
  // so that a bad --calibrate-base is reported the same way on any machine).
  std::FILE *out = std::fopen(path.c_str(), "w");
  if (!out)
    return Status(StatusCode::kIoError, "cannot write '" + path +
                                            "': " + std::strerror(errno));
  auto failed = [&](Status st) {
    std::fclose(out);
    std::remove(path.c_str());
    return st;
  };
  std::string baseName;
  std::vector<std::pair<std::string, std::string>> baseFields;
  Status st = readBase(opts.basePath, baseName, baseFields);
  if (!st.isOk())
    return failed(st);

  auto begin = std::chrono::steady_clock::now();
  GpuCalibration gpu;
  bool measuredGpu = false;
  std::string noGpuWhy;
  if (!opts.useGpu) {
    noGpuWhy = "--device cpu";
  } else if (!gpuCalibrator()) {
    noGpuWhy = "this colossal-run was built without CUDA";
  } else {
    Status gst = gpuCalibrator()(opts, gpu);
    if (gst.isOk())
      measuredGpu = true;
    else if (gst.code() == StatusCode::kUnsupported)
      noGpuWhy = gst.message();
    else
      return failed(gst);
  }
  if (!measuredGpu)
    progress(opts, "no GPU measured (" + noGpuWhy +
                       "): the GPU fields are copied from '" + opts.basePath +
                       "'");

  std::string cpu = cpuModel();
  int64_t threads = hostThreads();
  progress(opts, "CPU AdamW: " + std::to_string(opts.adamwParams) +
                     " f32 parameters, " + std::to_string(threads) +
                     " threads, median of 5 updates");
  double adamwPerS = 0;
  st = measureCpuAdamW(opts, adamwPerS);
  if (!st.isOk())
    return failed(st);
  // An f32 AdamW update reads p, g, m, v and writes p, m, v: 28 bytes per
  // parameter, the cost model's measure of the host's memory bandwidth.
  double cpuBytesPerS = adamwPerS * 28;
  progress(opts, "  " + format("%.3g", adamwPerS / 1e9) + " G params/s (" +
                     format("%.1f", cpuBytesPerS / 1e9) + " GB/s)");
  uint64_t hostBytes = hostMemoryBytes();
  double totalS = std::chrono::duration<double>(
                      std::chrono::steady_clock::now() - begin)
                      .count();

  std::vector<std::string> notes;
  std::string cpuPart = cpu + ", " + std::to_string(
                                        std::thread::hardware_concurrency()) +
                        " cores";
  std::string name;
  if (measuredGpu) {
    name = gpu.gpuName + " (" + gibString(gpu.deviceMemoryBytes) + "), " +
           cpuPart;
    notes.push_back("Measured by colossal-run --calibrate in " +
                    format("%.1f", totalS) + " s.");
    notes.insert(notes.end(), gpu.notes.begin(), gpu.notes.end());
  } else {
    name = "CPU-only calibration (" + cpuPart + "); GPU fields from " +
           (baseName.empty() ? opts.basePath : baseName);
    notes.push_back("Measured by colossal-run --calibrate without a GPU (" +
                    noGpuWhy + "): only the CPU fields are measured.");
    notes.push_back("GPU fields (device_memory, hbm_bytes_per_s, "
                    "kernel_floor_s, gemm_tflops, PCIe rates, copy_latency_s) "
                    "are copied unchanged from " +
                    opts.basePath + ", NOT measured.");
  }
  notes.push_back("CPU AdamW: the runtime's host kernel, f32, " +
                  std::to_string(threads) + " threads, " +
                  std::to_string(opts.adamwParams) +
                  " parameters: " + format("%.3g", adamwPerS / 1e9) +
                  " G params/s; cpu_bytes_per_s = 28 bytes per parameter x "
                  "that rate.");

  // The shipped profile's layout and field order.
  std::string j = "{\n  \"name\": " + jsonString(name) + ",\n  \"notes\": [\n";
  for (size_t i = 0; i < notes.size(); ++i)
    j += "    " + jsonString(notes[i]) + (i + 1 < notes.size() ? ",\n" : "\n");
  j += "  ],\n";
  auto field = [&](const std::string &key, const std::string &value) {
    j += "  \"" + key + "\": " + value + ",\n";
  };
  auto gpuFields = [&](size_t first, size_t last) {
    for (size_t k = first; k < last; ++k) {
      const char *key = kGpuFields[k].key;
      if (measuredGpu) {
        std::string value;
        if (k == 0)
          value = jsonString(gibString(gpu.deviceMemoryBytes));
        else if (k == 1)
          value = rate(gpu.hbmBytesPerS);
        else if (k == 2)
          value = rate(gpu.kernelFloorS);
        else if (k == 3) {
          value = "{\n";
          std::vector<std::string> dtypes;
          for (const GemmClassRate &r : gpu.gemm)
            if (std::find(dtypes.begin(), dtypes.end(), r.dtype) ==
                dtypes.end())
              dtypes.push_back(r.dtype);
          for (size_t d = 0; d < dtypes.size(); ++d) {
            value += "    \"" + dtypes[d] + "\": [\n";
            std::vector<std::string> rows;
            for (const GemmClassRate &r : gpu.gemm)
              if (r.dtype == dtypes[d])
                rows.push_back("      {\"class\": " + jsonString(r.label) +
                               ", \"min_dim\": " + std::to_string(r.minDim) +
                               ", \"tflops\": " + format("%.1f", r.tflops) +
                               "}");
            for (size_t i = 0; i < rows.size(); ++i)
              value += rows[i] + (i + 1 < rows.size() ? ",\n" : "\n");
            value += std::string("    ]") +
                     (d + 1 < dtypes.size() ? ",\n" : "\n");
          }
          value += "  }";
        } else if (k == 4)
          value = rate(gpu.h2dBytesPerS);
        else if (k == 5)
          value = rate(gpu.d2hBytesPerS);
        else if (k == 6)
          value = rate(gpu.bidirectionalBytesPerS);
        else
          value = rate(0.5 * (gpu.h2dCopyS + gpu.d2hCopyS));
        field(key, value);
        continue;
      }
      for (const auto &kv : baseFields)
        if (kv.first == key)
          field(key, kv.second);
    }
  };
  gpuFields(0, 1);
  if (hostBytes >= (1ull << 30) / 10) // optional; "0.0GiB" would not parse
    field("host_memory", jsonString(gibString(hostBytes)));
  gpuFields(1, std::size(kGpuFields));
  field("cpu_adamw_params_per_s", rate(adamwPerS));
  j += "  \"cpu_bytes_per_s\": " + rate(cpuBytesPerS) + "\n}\n";

  bool ok = std::fwrite(j.data(), 1, j.size(), out) == j.size();
  ok &= std::fclose(out) == 0;
  if (!ok) {
    std::remove(path.c_str());
    return Status(StatusCode::kIoError, "cannot write '" + path +
                                            "': " + std::strerror(errno));
  }
  progress(opts, "wrote " + path + " in " + format("%.1f", totalS) + " s");
  return Status::ok();
}

} // namespace colossal::runtime
