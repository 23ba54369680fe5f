//===- CostModel.cpp - Device profiles and step-time estimates ------------===//

#include "colossal/Analysis/CostModel.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

using namespace mlir::colossal;
namespace rt = ::colossal::runtime;
namespace json = llvm::json;

std::optional<uint64_t> mlir::colossal::parseByteSize(llvm::StringRef text) {
  // Split the longest numeric prefix (digits, '.', an exponent) from the unit.
  size_t end = 0;
  while (end < text.size() &&
         (llvm::isDigit(text[end]) || text[end] == '.' || text[end] == '+' ||
          ((text[end] == 'e' || text[end] == 'E') && end > 0 &&
           end + 1 < text.size() &&
           (llvm::isDigit(text[end + 1]) || text[end + 1] == '+'))))
    ++end;
  llvm::StringRef number = text.substr(0, end), unit = text.substr(end);
  double value = 0;
  if (number.empty() || number.getAsDouble(value) || !std::isfinite(value) ||
      value < 0)
    return std::nullopt;
  std::string u = unit.lower();
  double scale = 1;
  if (!u.empty() && u != "b") {
    static const char kPrefixes[] = "kmgt";
    const char *p = std::strchr(kPrefixes, u[0]);
    if (!p || (u.size() != 1 && u.substr(1) != "b" && u.substr(1) != "ib"))
      return std::nullopt;
    // "24G" alone is ambiguous; binary units are what memory sizes mean.
    bool binary = u.size() == 1 || u.substr(1) == "ib";
    scale = std::pow(binary ? 1024.0 : 1000.0, (p - kPrefixes) + 1);
  }
  double bytes = std::floor(value * scale);
  if (bytes >= 9.2e18)
    return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

double DeviceProfile::gemmFlopsPerS(rt::DType dtype, uint64_t minDim) const {
  auto it = gemm.find(dtype);
  if (it == gemm.end())
    it = gemm.find(rt::DType::kF32);
  if (it == gemm.end() || it->second.empty())
    return 0;
  for (const GemmRate &r : it->second) // sorted by decreasing minDim
    if (minDim >= r.minDim)
      return r.flopsPerS;
  return it->second.back().flopsPerS;
}

namespace {

/// Reads one profile object, recording which fields it consumed so that the
/// rest can be reported as unknown.
class FieldReader {
public:
  FieldReader(const json::Object &obj, std::string path)
      : obj(obj), path(std::move(path)) {}

  std::string field(llvm::StringRef key) const {
    return path.empty() ? key.str() : path + "." + key.str();
  }

  /// A positive finite number; `required` or else left unchanged.
  bool number(llvm::StringRef key, double &out, bool required,
              std::string &err) {
    used.insert(key.str());
    const json::Value *v = obj.get(key);
    if (!v) {
      if (required)
        err = "field '" + field(key) + "' is missing (a positive number)";
      return !required;
    }
    std::optional<double> d = v->getAsNumber();
    if (!d || !std::isfinite(*d) || *d <= 0) {
      err = "field '" + field(key) + "': expected a positive number, got " +
            render(*v);
      return false;
    }
    out = *d;
    return true;
  }

  /// Bytes: a number or a size string ("139.8GiB").
  bool bytes(llvm::StringRef key, uint64_t &out, bool required,
             std::string &err) {
    used.insert(key.str());
    const json::Value *v = obj.get(key);
    if (!v) {
      if (required)
        err = "field '" + field(key) +
              "' is missing (bytes: a number or a size such as \"80GiB\")";
      return !required;
    }
    std::optional<uint64_t> size;
    if (std::optional<double> d = v->getAsNumber();
        d && std::isfinite(*d) && *d > 0 && *d < 9.2e18)
      size = static_cast<uint64_t>(*d);
    else if (std::optional<llvm::StringRef> s = v->getAsString())
      size = parseByteSize(*s);
    if (!size || *size == 0) {
      err = "field '" + field(key) +
            "': expected a positive size (bytes, or a string such as "
            "\"80GiB\"), got " +
            render(*v);
      return false;
    }
    out = *size;
    return true;
  }

  bool unknownFields(std::string &err) const {
    // json::Object iterates in hash order: sort for a deterministic message.
    std::vector<std::string> unknown;
    for (const auto &kv : obj)
      if (!used.count(kv.first.str()))
        unknown.push_back(kv.first.str());
    if (unknown.empty())
      return false;
    std::sort(unknown.begin(), unknown.end());
    err = "unknown field '" + field(unknown.front()) + "'";
    return true;
  }

  static std::string render(const json::Value &v) {
    std::string s;
    llvm::raw_string_ostream os(s);
    os << v;
    return s;
  }

  const json::Object &obj;
  std::string path;
  std::set<std::string> used;
};

} // namespace

llvm::Expected<DeviceProfile>
mlir::colossal::parseDeviceProfile(llvm::StringRef jsonText) {
  auto fail = [](const std::string &msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
  };
  llvm::Expected<json::Value> parsed = json::parse(jsonText);
  if (!parsed)
    return fail("not valid JSON: " + llvm::toString(parsed.takeError()));
  const json::Object *root = parsed->getAsObject();
  if (!root)
    return fail("expected a JSON object at the top level");

  DeviceProfile p;
  FieldReader r(*root, "");
  std::string err;
  r.used.insert("name");
  if (const json::Value *v = root->get("name")) {
    if (!v->getAsString())
      return fail("field 'name': expected a string, got " +
                  FieldReader::render(*v));
    p.name = v->getAsString()->str();
  }
  r.used.insert("notes");
  if (const json::Value *v = root->get("notes")) {
    const json::Array *a = v->getAsArray();
    if (!a)
      return fail("field 'notes': expected an array of strings");
    for (const json::Value &n : *a) {
      if (!n.getAsString())
        return fail("field 'notes': expected an array of strings, got " +
                    FieldReader::render(n));
      p.notes.push_back(n.getAsString()->str());
    }
  }
  p.kernelFloorS = 3e-6;
  if (!r.bytes("device_memory", p.deviceMemoryBytes, true, err) ||
      !r.bytes("host_memory", p.hostMemoryBytes, false, err) ||
      !r.number("hbm_bytes_per_s", p.hbmBytesPerS, true, err) ||
      !r.number("kernel_floor_s", p.kernelFloorS, false, err) ||
      !r.number("h2d_bytes_per_s", p.h2dBytesPerS, true, err) ||
      !r.number("d2h_bytes_per_s", p.d2hBytesPerS, true, err) ||
      !r.number("copy_latency_s", p.copyLatencyS, true, err) ||
      !r.number("cpu_adamw_params_per_s", p.cpuAdamwParamsPerS, true, err))
    return fail(err);
  p.bidirectionalBytesPerS = p.h2dBytesPerS + p.d2hBytesPerS;
  if (!r.number("bidirectional_bytes_per_s", p.bidirectionalBytesPerS, false,
                err))
    return fail(err);
  // AdamW in fp32 moves 28 bytes per parameter (read p, g, m, v; write p,
  // m, v): its rate gives the CPU's memory bandwidth when not given.
  p.cpuBytesPerS = p.cpuAdamwParamsPerS * 28;
  if (!r.number("cpu_bytes_per_s", p.cpuBytesPerS, false, err) ||
      !r.number("host_memory_bytes_per_s", p.hostMemoryBytesPerS, false, err))
    return fail(err);
  if (p.hostMemoryBytesPerS < 0)
    return fail("field 'host_memory_bytes_per_s' must be >= 0 (0: not "
                "modelled)");

  r.used.insert("gemm_tflops");
  const json::Value *gemmValue = root->get("gemm_tflops");
  if (!gemmValue)
    return fail("field 'gemm_tflops' is missing (an object of element type "
                "-> [{\"min_dim\": N, \"tflops\": X}, ...])");
  const json::Object *gemm = gemmValue->getAsObject();
  if (!gemm)
    return fail("field 'gemm_tflops': expected an object of element type -> "
                "list of rates, got " +
                FieldReader::render(*gemmValue));
  std::vector<std::string> dtypeKeys;
  for (const auto &kv : *gemm)
    dtypeKeys.push_back(kv.first.str());
  std::sort(dtypeKeys.begin(), dtypeKeys.end());
  for (const std::string &key : dtypeKeys) {
    std::string where = "gemm_tflops." + key;
    std::optional<rt::DType> dtype;
    for (uint32_t raw = 1; raw <= rt::kMaxDType; ++raw)
      if (rt::isValidDType(raw) &&
          key == rt::dtypeName(static_cast<rt::DType>(raw)) &&
          rt::isFloatDType(static_cast<rt::DType>(raw)))
        dtype = static_cast<rt::DType>(raw);
    if (!dtype)
      return fail("field '" + where +
                  "': not a floating-point element type (f32, bf16, f16, "
                  "f64)");
    const json::Array *list = gemm->get(key)->getAsArray();
    if (!list || list->empty())
      return fail("field '" + where +
                  "': expected a non-empty list of {\"min_dim\", "
                  "\"tflops\"}");
    std::vector<GemmRate> rates;
    for (size_t i = 0; i < list->size(); ++i) {
      std::string at = where + "[" + std::to_string(i) + "]";
      const json::Object *entry = (*list)[i].getAsObject();
      if (!entry)
        return fail("field '" + at +
                    "': expected an object {\"min_dim\", "
                    "\"tflops\"}, got " +
                    FieldReader::render((*list)[i]));
      FieldReader er(*entry, at);
      er.used.insert("class"); // a label for people; ignored
      double tflops = 0;
      if (!er.number("tflops", tflops, true, err))
        return fail(err);
      er.used.insert("min_dim");
      uint64_t minDim = 0;
      if (const json::Value *m = entry->get("min_dim")) {
        std::optional<int64_t> n = m->getAsInteger();
        if (!n || *n < 0)
          return fail("field '" + er.field("min_dim") +
                      "': expected a non-negative integer, got " +
                      FieldReader::render(*m));
        minDim = static_cast<uint64_t>(*n);
      } else {
        return fail("field '" + er.field("min_dim") +
                    "' is missing (the least min(M, N, K) of the class)");
      }
      if (er.unknownFields(err))
        return fail(err);
      rates.push_back({minDim, tflops * 1e12});
    }
    std::stable_sort(rates.begin(), rates.end(),
                     [](const GemmRate &a, const GemmRate &b) {
                       return a.minDim > b.minDim;
                     });
    if (rates.back().minDim != 0)
      return fail("field '" + where +
                  "': needs a class with \"min_dim\": 0 (the rate of the "
                  "thinnest matmuls)");
    p.gemm[*dtype] = std::move(rates);
  }
  if (!p.gemm.count(rt::DType::kF32))
    return fail("field 'gemm_tflops.f32' is missing (the rate every element "
                "type without its own falls back to)");

  r.used.insert("kernel_efficiency");
  if (const json::Value *effValue = root->get("kernel_efficiency")) {
    const json::Object *eff = effValue->getAsObject();
    if (!eff)
      return fail("field 'kernel_efficiency': expected an object of op name "
                  "-> fraction of the roofline time in (0, 1], got " +
                  FieldReader::render(*effValue));
    std::vector<std::string> names;
    for (const auto &kv : *eff)
      names.push_back(kv.first.str());
    std::sort(names.begin(), names.end());
    for (const std::string &name : names) {
      std::string where = "kernel_efficiency." + name;
      const rt::OpInfo *info = rt::lookupOp(name);
      if (!info)
        return fail("field '" + where + "': '" + name +
                    "' is not an op of the plan format");
      std::optional<double> d = eff->get(name)->getAsNumber();
      if (!d || !std::isfinite(*d) || *d <= 0 || *d > 1)
        return fail("field '" + where +
                    "': expected a fraction in (0, 1], got " +
                    FieldReader::render(*eff->get(name)));
      p.kernelEfficiency[info->kind] = *d;
    }
  }
  if (r.unknownFields(err))
    return fail(err);
  return p;
}

namespace {

uint64_t sumBytes(const std::vector<rt::TensorType> &types) {
  uint64_t n = 0;
  for (const rt::TensorType &t : types)
    n += t.sizeBytes();
  return n;
}

} // namespace

InstrCost mlir::colossal::estimateInstr(const CostInstr &instr,
                                        const DeviceProfile &p) {
  InstrCost c;
  switch (instr.kind) {
  case CostInstr::Kind::Event:
    return c;
  case CostInstr::Kind::Copy: {
    c.bytes = instr.inputs.empty() ? 0 : instr.inputs[0].sizeBytes();
    const bool fromHost = instr.placement == Placement::Host;
    const bool toHost = instr.copyTo == Placement::Host;
    if (fromHost && toHost) {
      c.resource = Resource::Cpu;
      c.seconds = 2.0 * c.bytes / p.cpuBytesPerS;
    } else if (!fromHost && !toHost) {
      c.resource = Resource::Compute;
      c.seconds = std::max(2.0 * c.bytes / p.hbmBytesPerS, p.kernelFloorS);
      c.atFloor = c.seconds == p.kernelFloorS;
    } else {
      c.resource = fromHost ? Resource::H2D : Resource::D2H;
      c.seconds = c.bytes / (fromHost ? p.h2dBytesPerS : p.d2hBytesPerS) +
                  p.copyLatencyS;
    }
    return c;
  }
  case CostInstr::Kind::Kernel:
    break;
  }

  // Every kernel reads its inputs and writes its outputs once: this is also
  // the right cost of fused_elementwise, whose intermediates never reach
  // HBM (a broadcast input is read at its own size, from cache).
  const uint64_t inBytes = sumBytes(instr.inputs);
  const uint64_t outBytes = sumBytes(instr.outputs);
  c.bytes = inBytes + outBytes;
  if (instr.op == rt::OpKind::Gather && instr.inputs.size() == 2)
    // Reads the gathered rows, not the whole table.
    c.bytes = 2 * outBytes + instr.inputs[1].sizeBytes();

  if (instr.placement == Placement::Host) {
    c.resource = Resource::Cpu;
    if (instr.op == rt::OpKind::AdamW && !instr.inputs.empty())
      c.seconds = instr.inputs[0].numElements() / p.cpuAdamwParamsPerS;
    else
      c.seconds = c.bytes / p.cpuBytesPerS;
    return c;
  }

  c.resource = Resource::Compute;
  double seconds = c.bytes / p.hbmBytesPerS;
  if (instr.op == rt::OpKind::MatMul && instr.inputs.size() == 2 &&
      instr.outputs.size() == 1 && instr.inputs[0].rank() >= 2 &&
      instr.outputs[0].rank() >= 2) {
    const rt::TensorType &a = instr.inputs[0], &out = instr.outputs[0];
    bool transposeA = instr.attrs.kind() == rt::OpKind::MatMul &&
                      instr.attrs.i("transpose_a") != 0;
    const size_t r = out.rank(), ra = a.rank();
    const uint64_t m = out.dims[r - 2], n = out.dims[r - 1];
    const uint64_t k = transposeA ? a.dims[ra - 2] : a.dims[ra - 1];
    double batch = 1;
    for (size_t i = 0; i + 2 < r; ++i)
      batch *= static_cast<double>(out.dims[i]);
    c.flops = 2.0 * batch * m * n * k;
    c.isGemm = true;
    double rate = p.gemmFlopsPerS(a.dtype, std::min({m, n, k}));
    if (rate > 0)
      seconds = std::max(seconds, c.flops / rate);
  }
  const bool attention = instr.op == rt::OpKind::Attention ||
                         instr.op == rt::OpKind::AttentionGrad;
  if (attention && instr.inputs.size() >= 2 && instr.inputs[0].rank() == 4 &&
      instr.inputs[1].rank() == 4) {
    // q [B, H, S, D], k [B, Hkv, T, D]: QK^T and PV are 2 B H S T D
    // multiply-adds each; the backward recomputes QK^T and adds three more
    // products (dV, dP, dQ and dK: 2.5x the forward's flops).
    const rt::TensorType &q = instr.inputs[0], &kk = instr.inputs[1];
    double b = q.dims[0], h = q.dims[1], sq = q.dims[2], d = q.dims[3],
           t = kk.dims[2];
    double flops = 4.0 * b * h * sq * t * d;
    if (instr.attrs.kind() == instr.op && instr.attrs.i("causal") != 0 &&
        q.dims[2] == kk.dims[2])
      flops *= 0.5 * (sq + 1) / sq; // the lower triangle, diagonal included
    if (instr.op == rt::OpKind::AttentionGrad)
      flops *= 2.5;
    c.flops = flops;
    c.isGemm = true;
    double rate = p.gemmFlopsPerS(q.dtype, static_cast<uint64_t>(d));
    if (rate > 0)
      seconds = std::max(seconds, flops / rate);
  }
  if (auto it = p.kernelEfficiency.find(instr.op);
      it != p.kernelEfficiency.end())
    seconds /= it->second;
  c.atFloor = seconds < p.kernelFloorS;
  c.seconds = std::max(seconds, p.kernelFloorS);
  return c;
}

StepCost mlir::colossal::estimateStep(const std::vector<CostInstr> &instrs,
                                      const DeviceProfile &p,
                                      uint32_t carriedStreams) {
  StepCost s;
  s.instrs.reserve(instrs.size());
  for (const CostInstr &instr : instrs) {
    InstrCost c = estimateInstr(instr, p);
    const double times = instr.repeat;
    switch (c.resource) {
    case Resource::None:
      break;
    case Resource::Compute:
      (c.isGemm ? s.gemmS : s.memoryBoundS) += times * c.seconds;
      break;
    case Resource::H2D:
      s.h2dS += times * c.seconds;
      s.h2dBytes += instr.repeat * c.bytes;
      s.numCopies += instr.repeat;
      break;
    case Resource::D2H:
      s.d2hS += times * c.seconds;
      s.d2hBytes += instr.repeat * c.bytes;
      s.numCopies += instr.repeat;
      break;
    case Resource::Cpu:
      s.cpuS += times * c.seconds;
      break;
    }
    s.flops += times * c.flops;
    s.instrs.push_back(c);
  }
  s.computeS = s.gemmS + s.memoryBoundS;

  // The host's memory shared with the copies' DMA (hostMemoryBytesPerS):
  // host kernels retimed as their bytes, stretched by the copy bytes.
  if (p.hostMemoryBytesPerS > 0) {
    double hostBytes = 0;
    for (size_t i = 0; i < instrs.size(); ++i)
      if (s.instrs[i].resource == Resource::Cpu)
        hostBytes += instrs[i].repeat * s.instrs[i].bytes;
    if (hostBytes > 0) {
      double stretch = 1.0 + (s.h2dBytes + s.d2hBytes) / hostBytes;
      s.cpuS = 0;
      for (size_t i = 0; i < instrs.size(); ++i) {
        InstrCost &c = s.instrs[i];
        if (c.resource != Resource::Cpu)
          continue;
        // A host-to-host copy's bytes are moved: read and written.
        double bytes = instrs[i].kind == CostInstr::Kind::Copy
                           ? 2.0 * c.bytes
                           : static_cast<double>(c.bytes);
        c.seconds = bytes * stretch / p.hostMemoryBytesPerS;
        s.cpuS += instrs[i].repeat * c.seconds;
      }
    }
  }

  // The list schedule over the plan's streams and events: consecutive
  // instructions of one program form a StreamProgram (run `repeat` times).
  std::vector<StreamInstr> streamInstrs(instrs.size());
  std::vector<StreamProgram> programs;
  uint32_t numStreams = 1;
  for (size_t i = 0; i < instrs.size(); ++i) {
    const CostInstr &in = instrs[i];
    streamInstrs[i] = {in.stream, in.sync, in.event, s.instrs[i].seconds};
    numStreams = std::max(numStreams, in.stream + 1);
    if (i == 0 || in.program != instrs[i - 1].program ||
        in.repeat != instrs[i - 1].repeat)
      programs.push_back({static_cast<uint32_t>(i), 0, in.repeat});
    ++programs.back().count;
  }
  StreamSchedule schedule =
      scheduleStreams(streamInstrs, programs, numStreams, carriedStreams);
  s.makespanS = schedule.makespanS;
  s.streamBusyS = schedule.busyS;
  double shared = 0;
  if (s.h2dBytes + s.d2hBytes > 0)
    shared = (s.h2dBytes + s.d2hBytes) / p.bidirectionalBytesPerS +
             s.numCopies * p.copyLatencyS;
  s.pcieS = std::max({s.h2dS, s.d2hS, shared});
  // The bottleneck is the resource with the most busy time; the step is
  // the schedule's makespan (which includes the waits the events impose).
  s.stepS = s.computeS;
  s.bottleneck = "compute";
  if (s.pcieS > s.stepS) {
    s.stepS = s.pcieS;
    s.bottleneck = "pcie";
  }
  if (s.cpuS > s.stepS) {
    s.stepS = s.cpuS;
    s.bottleneck = "cpu_optimizer";
  }
  s.stepS = std::max(s.stepS, s.makespanS);
  return s;
}

//===----------------------------------------------------------------------===//
// Streams and events
//===----------------------------------------------------------------------===//

std::vector<std::pair<uint32_t, uint32_t>>
mlir::colossal::streamLiveSpans(const std::vector<StreamInstr> &instrs,
                                const std::vector<StreamProgram> &programs,
                                uint32_t carriedStreams) {
  std::vector<std::pair<uint32_t, uint32_t>> spans(instrs.size());
  for (size_t i = 0; i < instrs.size(); ++i)
    spans[i] = {static_cast<uint32_t>(i), static_cast<uint32_t>(i)};
  uint32_t numStreams = 1;
  for (const StreamInstr &in : instrs)
    numStreams = std::max(numStreams, in.stream + 1);
  if (numStreams == 1)
    return spans;
  for (const StreamProgram &prog : programs) {
    if (prog.count == 0)
      continue;
    const uint32_t end = prog.first + prog.count;
    // clock[s][t]: instructions of stream t seen by stream s's current
    // point; per instruction its stream's clock after it.
    std::vector<std::vector<uint32_t>> clock(
        numStreams, std::vector<uint32_t>(numStreams, 0));
    std::map<int64_t, std::vector<uint32_t>> eventClock;
    std::vector<std::vector<uint32_t>> ts(prog.count);
    // Stream 0's instructions in order, and what each has seen of every
    // stream (non-decreasing along stream 0): for the binary searches.
    std::vector<uint32_t> zeroAt;
    for (uint32_t i = prog.first; i < end; ++i) {
      const StreamInstr &in = instrs[i];
      std::vector<uint32_t> &c = clock[in.stream];
      ++c[in.stream];
      if (in.sync == StreamInstr::Sync::Record) {
        eventClock[in.event] = c;
      } else if (in.sync == StreamInstr::Sync::Wait) {
        auto it = eventClock.find(in.event);
        if (it != eventClock.end())
          for (uint32_t t = 0; t < numStreams; ++t)
            c[t] = std::max(c[t], it->second[t]);
      }
      ts[i - prog.first] = c;
      if (in.stream == 0)
        zeroAt.push_back(i);
    }
    for (uint32_t i = prog.first; i < end; ++i) {
      const StreamInstr &in = instrs[i];
      if (in.stream == 0)
        continue;
      const std::vector<uint32_t> &mine = ts[i - prog.first];
      // from: stream-0 instructions before it number mine[0]; the last of
      // them is zeroAt[mine[0] - 1].
      uint32_t from = mine[0] == 0 ? prog.first : zeroAt[mine[0] - 1] + 1;
      // to: the first stream-0 instruction whose clock has seen it.
      auto it = std::partition_point(
          zeroAt.begin(), zeroAt.end(), [&](uint32_t z) {
            return ts[z - prog.first][in.stream] < mine[in.stream];
          });
      uint32_t to = it == zeroAt.end() ? end - 1 : *it;
      if (it == zeroAt.end() && in.stream < 32 &&
          (carriedStreams >> in.stream & 1u))
        from = prog.first; // runs on into the next run of the program
      spans[i] = {std::min(from, i), std::max(to, i)};
    }
  }
  return spans;
}

namespace {

/// One instruction of a list schedule: it starts when its stream is free
/// and, for a wait, when its event's latest record is reached; a record
/// marks its finish. Returns {start, finish}.
std::pair<double, double> scheduleOne(const StreamInstr &in,
                                      std::vector<double> &streamFree,
                                      std::map<int64_t, double> &eventAt) {
  double start = streamFree[in.stream];
  if (in.sync == StreamInstr::Sync::Wait) {
    auto it = eventAt.find(in.event);
    if (it != eventAt.end())
      start = std::max(start, it->second);
  }
  double finish = start + in.seconds;
  streamFree[in.stream] = finish;
  if (in.sync == StreamInstr::Sync::Record)
    eventAt[in.event] = finish;
  return {start, finish};
}

/// scheduleStreams with carried streams: the steady state of steps run one
/// after another (CostModel.h).
StreamSchedule steadyState(const std::vector<StreamInstr> &instrs,
                           const std::vector<StreamProgram> &programs,
                           uint32_t numStreams, uint32_t carried) {
  StreamSchedule s;
  s.startS.assign(instrs.size(), 0);
  s.finishS.assign(instrs.size(), 0);
  s.busyS.assign(numStreams, 0);
  for (const StreamProgram &prog : programs)
    for (uint32_t i = prog.first; i < prog.first + prog.count; ++i)
      s.busyS[instrs[i].stream] += prog.repeat * instrs[i].seconds;
  auto isCarried = [&](uint32_t stream) {
    return stream < 32 && (carried >> stream & 1u);
  };
  std::vector<double> streamFree(numStreams, 0);
  std::map<int64_t, double> eventAt; // the latest record, of any run
  // The joined streams' end: where the executor's synchronize returns.
  auto join = [&] {
    double end = 0;
    for (uint32_t t = 0; t < numStreams; ++t)
      if (!isCarried(t))
        end = std::max(end, streamFree[t]);
    for (uint32_t t = 0; t < numStreams; ++t)
      if (!isCarried(t))
        streamFree[t] = end;
    return end;
  };
  constexpr int kSteps = 4;
  double stepEnd[kSteps] = {};
  double stepStart = 0;
  for (int step = 0; step < kSteps; ++step) {
    stepStart = join();
    for (const StreamProgram &prog : programs)
      for (uint32_t run = 0; run < prog.repeat; ++run) {
        join();
        for (uint32_t i = prog.first; i < prog.first + prog.count; ++i) {
          auto [start, finish] = scheduleOne(instrs[i], streamFree, eventAt);
          s.startS[i] = start - stepStart;
          s.finishS[i] = finish - stepStart;
        }
      }
    stepEnd[step] = join();
  }
  s.makespanS = (stepEnd[kSteps - 1] - stepEnd[kSteps - 3]) / 2;
  return s;
}

} // namespace

StreamSchedule
mlir::colossal::scheduleStreams(const std::vector<StreamInstr> &instrs,
                                const std::vector<StreamProgram> &programs,
                                uint32_t numStreams, uint32_t carriedStreams) {
  StreamSchedule s;
  for (const StreamInstr &in : instrs)
    numStreams = std::max(numStreams, in.stream + 1);
  if (carriedStreams != 0)
    return steadyState(instrs, programs, numStreams, carriedStreams);
  s.startS.assign(instrs.size(), 0);
  s.finishS.assign(instrs.size(), 0);
  s.busyS.assign(numStreams, 0);
  for (const StreamProgram &prog : programs) {
    // Plan order is a topological order of the stream and event edges (a
    // wait follows its record), so one pass schedules every instruction.
    std::vector<double> streamFree(numStreams, 0);
    std::map<int64_t, double> eventAt;
    double end = 0;
    for (uint32_t i = prog.first; i < prog.first + prog.count; ++i) {
      std::tie(s.startS[i], s.finishS[i]) =
          scheduleOne(instrs[i], streamFree, eventAt);
      s.busyS[instrs[i].stream] += prog.repeat * instrs[i].seconds;
      end = std::max(end, s.finishS[i]);
    }
    s.makespanS += prog.repeat * end;
  }
  return s;
}

size_t mlir::colossal::chooseCarriedTail(
    const std::vector<StreamInstr> &instrs,
    const std::vector<StreamProgram> &programs, uint32_t numStreams,
    uint32_t carriedStreams, const std::vector<CarriedUpdate> &updates,
    const std::vector<AddedWait> &waits, double *stepS) {
  const size_t n = updates.size();
  if (n == 0)
    return 0;
  // The program holding the updates: the tail goes to its end.
  size_t home = 0;
  for (size_t p = 0; p < programs.size(); ++p)
    if (updates[0].kernel >= programs[p].first &&
        updates[0].kernel < programs[p].first + programs[p].count)
      home = p;
  std::vector<std::vector<const AddedWait *>> waitsBefore(instrs.size());
  for (const AddedWait &w : waits)
    if (w.before < instrs.size())
      waitsBefore[w.before].push_back(&w);
  std::vector<int64_t> updateOf(instrs.size(), -1);
  for (size_t u = 0; u < n; ++u)
    updateOf[updates[u].wait] = updateOf[updates[u].kernel] =
        updateOf[updates[u].record] = static_cast<int64_t>(u);
  auto stepFor = [&](size_t kept) {
    std::vector<size_t> tail;
    for (size_t u = kept; u < n; ++u)
      tail.push_back(u);
    std::stable_sort(tail.begin(), tail.end(), [&](size_t a, size_t b) {
      return updates[a].forwardKey < updates[b].forwardKey;
    });
    std::vector<StreamInstr> order;
    std::vector<StreamProgram> progs;
    order.reserve(instrs.size() + waits.size());
    for (size_t p = 0; p < programs.size(); ++p) {
      StreamProgram prog{static_cast<uint32_t>(order.size()), 0,
                         programs[p].repeat};
      for (uint32_t i = programs[p].first;
           i < programs[p].first + programs[p].count; ++i) {
        for (const AddedWait *w : waitsBefore[i])
          order.push_back({w->stream, StreamInstr::Sync::Wait, w->event, 0});
        if (updateOf[i] >= 0 && static_cast<size_t>(updateOf[i]) >= kept)
          continue;
        order.push_back(instrs[i]);
      }
      if (p == home)
        for (size_t u : tail)
          for (uint32_t i : {updates[u].wait, updates[u].kernel,
                             updates[u].record})
            order.push_back(instrs[i]);
      prog.count = static_cast<uint32_t>(order.size()) - prog.first;
      progs.push_back(prog);
    }
    return scheduleStreams(order, progs, numStreams, carriedStreams)
        .makespanS;
  };
  // Longest kept prefix first: a tie keeps the shorter tail.
  const size_t points = std::min<size_t>(n + 1, 64);
  size_t best = n;
  double bestS = stepFor(n);
  for (size_t c = points - 1; c-- > 0;) {
    size_t kept = c * n / (points - 1);
    double t = stepFor(kept);
    if (t < bestS * (1 - 1e-9)) {
      best = kept;
      bestS = t;
    }
  }
  if (stepS)
    *stepS = bestS;
  return best;
}
