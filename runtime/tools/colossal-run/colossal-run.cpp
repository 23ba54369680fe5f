//===- colossal-run.cpp - Run or train a .cplan plan on the CPU or a GPU --===//
//
//   colossal-run PLAN.cplan --inputs IN.safetensors --outputs OUT.safetensors
//                [--weights W.safetensors]                       (forward)
//   colossal-run PLAN.cplan (--batches B.safetensors | --data TOKENS.bin)
//                [--steps N] [--init random] [--seed S] ...       (training)
//   either mode: [--check-plan] [--device cpu|cuda] [--trace FILE]
//   colossal-run --calibrate PROFILE.json [--device cuda|cpu]
//                [--calibrate-base FILE]                  (device profile)
//
// A forward plan runs once: reads the inputs, writes every output, prints
// the scalar outputs as "name = value". A training plan (micro_step +
// apply_step programs) runs N optimizer steps on batches from a safetensors
// file or windows of a raw token stream, with progress on stderr, optional
// per-step metrics, gradient dump, checkpoints and weight export.
// --check-plan runs either mode with the executor's plan checks (live
// operands, NaN poison in dead buffers, measured peak vs planned). --device
// picks the executor's backend: the CPU (default) or the CUDA backend, which
// a build without CUDA, or a machine without a GPU, refuses. --trace writes
// a Chrome trace / Perfetto JSON of the instructions run, one track per
// plan stream (--trace-step K: of step K only). --calibrate measures this
// machine's device profile (src/Calibrate.h) for `colossal-opt compile
// --device-profile`. Exit codes:
// 0 success, 1 error (bad file, failed run), 2 usage error.
// docs/colossal-run.md documents the tool.
//
//===----------------------------------------------------------------------===//

#include "Calibrate.h"

#include "colossal/runtime/Executor.h"
#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Safetensors.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <unistd.h>

using namespace colossal::runtime;

namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

const char *const kUsage =
    "usage: colossal-run PLAN.cplan --inputs IN.safetensors "
    "--outputs OUT.safetensors [--weights W.safetensors]\n"
    "       colossal-run PLAN.cplan (--batches FILE.safetensors | --data "
    "FILE.bin)\n"
    "                    [--steps N] [--init random] [--seed S] [options]\n"
    "       colossal-run --calibrate PROFILE.json [--device cuda|cpu]\n"
    "                    [--calibrate-base FILE]\n"
    "\n"
    "Runs a compiled plan on the CPU or a GPU: one forward step, or N\n"
    "training steps of a training plan (programs micro_step and apply_step).\n"
    "\n"
    "  PLAN.cplan                 the plan written by `colossal-opt compile`\n"
    "  --weights FILE             the weights (default: the plan's weights\n"
    "                             file, relative to the plan's folder)\n"
    "  --device cpu|cuda          where the plan runs (default cpu); cuda\n"
    "                             needs a CUDA build and a visible GPU\n"
    "  --check-plan               check the plan's live ranges while running:\n"
    "                             operands live, dead buffers poisoned with\n"
    "                             NaN, bytes touched equal to the arena size\n"
    "  --trace FILE.json          a Chrome trace / Perfetto JSON of the run:\n"
    "                             a track per plan stream, a slice per\n"
    "                             instruction (its op and ONNX node)\n"
    "  --trace-step K             trace training step K only (default: all)\n"
    "  --help                     print this message\n"
    "\n"
    "Forward plans:\n"
    "  --inputs FILE              every graph input, by name (safetensors)\n"
    "  --outputs FILE             where every graph output is written\n"
    "\n"
    "Training plans:\n"
    "  --batches FILE             input_ids, labels (i64 or i32) shaped\n"
    "                             [K, batch, seq]; step k uses entry k % K\n"
    "  --data FILE                a raw token stream; windows of the compiled\n"
    "                             sequence length drawn with --seed\n"
    "  --data-dtype uint16|uint32 the token width of --data (default uint16)\n"
    "  --steps N                  train until step N (default: K with\n"
    "                             --batches; required with --data)\n"
    "  --init random|file         random: each weight's init rule, drawn with\n"
    "                             --seed; file (default): load the weights\n"
    "  --seed S                   seed of --init random and --data (default "
    "0)\n"
    "  --metrics FILE.jsonl       one JSON object per step\n"
    "  --dump-grads FILE          the first step's gradients, before the "
    "update\n"
    "  --save CKPT                a checkpoint after the last step\n"
    "  --resume CKPT              continue from a checkpoint's step\n"
    "  --export-weights FILE      every weight under its export name\n"
    "\n"
    "Calibration (no plan):\n"
    "  --calibrate FILE.json      measure this machine's device profile\n"
    "                             (GEMM rates, HBM, PCIe, copy cost, CPU\n"
    "                             AdamW) and write it for `colossal-opt\n"
    "                             compile --device-profile`; --device cuda\n"
    "                             (default when a GPU is usable) or cpu\n"
    "  --calibrate-base FILE      where the GPU fields come from when no GPU\n"
    "                             is measured (default: share/colossal/\n"
    "                             devices/h200.json beside bin/)\n"
    "  COLOSSAL_CALIBRATE_ADAMW_PARAMS=N  the timed AdamW's size (default\n"
    "                             67108864)\n"
    "\n"
    "Errors are one line on stderr. Exit codes: 0 success, 1 error, 2 usage\n"
    "error.\n";

int fail(const std::string &message) {
  std::fprintf(stderr, "colossal-run: error: %s\n", message.c_str());
  return kExitError;
}

int usageError(const std::string &message) {
  std::fprintf(stderr, "colossal-run: error: %s (see --help)\n",
               message.c_str());
  return kExitUsage;
}

void warn(const std::string &message) {
  std::fprintf(stderr, "colossal-run: warning: %s\n", message.c_str());
}

struct Options {
  std::string plan, inputs, outputs, weights, device, trace, traceStep;
  // Training.
  std::string batches, data, dataDtype, init, seed, steps, metrics, dumpGrads,
      save, resume, exportWeights;
  // Calibration.
  std::string calibrate, calibrateBase;
  bool help = false;
  bool checkPlan = false;
};

/// Parses argv; returns 0 or the exit code of a usage error (already
/// reported). Accepts both "--flag value" and "--flag=value".
int parseArgs(int argc, char **argv, Options &opts) {
  struct Flag {
    const char *name;
    std::string Options::*field;
    const char *what;
  };
  static const Flag kFlags[] = {
      {"--inputs", &Options::inputs, "a file name"},
      {"--outputs", &Options::outputs, "a file name"},
      {"--weights", &Options::weights, "a file name"},
      {"--device", &Options::device, "cpu or cuda"},
      {"--trace", &Options::trace, "a file name"},
      {"--trace-step", &Options::traceStep, "a step number"},
      {"--batches", &Options::batches, "a file name"},
      {"--data", &Options::data, "a file name"},
      {"--data-dtype", &Options::dataDtype, "uint16 or uint32"},
      {"--init", &Options::init, "random or file"},
      {"--seed", &Options::seed, "a number"},
      {"--steps", &Options::steps, "a number"},
      {"--metrics", &Options::metrics, "a file name"},
      {"--dump-grads", &Options::dumpGrads, "a file name"},
      {"--save", &Options::save, "a file name"},
      {"--resume", &Options::resume, "a file name"},
      {"--export-weights", &Options::exportWeights, "a file name"},
      {"--calibrate", &Options::calibrate, "a file name"},
      {"--calibrate-base", &Options::calibrateBase, "a file name"},
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      opts.help = true;
      return 0;
    }
    if (arg == "--check-plan") {
      if (opts.checkPlan)
        return usageError("--check-plan given twice");
      opts.checkPlan = true;
      continue;
    }
    if (arg.rfind("--check-plan=", 0) == 0)
      return usageError("--check-plan takes no value");
    std::string flag = arg, value;
    bool hasValue = false;
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      hasValue = true;
    }
    const Flag *match = nullptr;
    for (const Flag &f : kFlags)
      if (flag == f.name)
        match = &f;
    if (match) {
      if (!hasValue) {
        if (i + 1 >= argc)
          return usageError(flag + " needs " + match->what);
        value = argv[++i];
      }
      if (value.empty())
        return usageError(flag + " needs " + match->what);
      std::string &target = opts.*(match->field);
      if (!target.empty())
        return usageError(flag + " given twice");
      target = value;
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-')
      return usageError("unknown option '" + arg + "'");
    if (!opts.plan.empty())
      return usageError("more than one plan file ('" + opts.plan + "', '" +
                        arg + "')");
    opts.plan = arg;
  }
  if (!opts.calibrateBase.empty() && opts.calibrate.empty())
    return usageError("--calibrate-base needs --calibrate");
  if (!opts.calibrate.empty()) {
    // Calibration runs no plan: any plan option is a mistake.
    if (!opts.plan.empty())
      return usageError("--calibrate takes no plan file, got '" + opts.plan +
                        "'");
    for (const Flag &f : kFlags) {
      std::string field = opts.*(f.field);
      if (!field.empty() && f.field != &Options::calibrate &&
          f.field != &Options::calibrateBase && f.field != &Options::device)
        return usageError(std::string(f.name) +
                          " does not apply to --calibrate");
    }
    if (opts.checkPlan)
      return usageError("--check-plan does not apply to --calibrate");
    return 0;
  }
  if (opts.plan.empty())
    return usageError("no plan file given");
  return 0;
}

/// Strict decimal parse of a non-negative integer.
bool parseUint64(const std::string &text, uint64_t &value) {
  if (text.empty() || text.size() > 20)
    return false;
  value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return false;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10)
      return false;
    value = value * 10 + digit;
  }
  return true;
}

/// `relative` resolved against the folder that holds `planPath`.
std::string besidePlan(const std::string &planPath,
                       const std::string &relative) {
  if (!relative.empty() && relative[0] == '/')
    return relative;
  size_t slash = planPath.find_last_of('/');
  if (slash == std::string::npos)
    return relative;
  return planPath.substr(0, slash + 1) + relative;
}

/// "%.4f", or 4-digit scientific notation below 1e-3 and from 1e9.
std::string formatValue(double v) {
  char buf[64];
  double mag = std::fabs(v);
  if (v == 0.0 || (mag >= 1e-3 && mag < 1e9) || !std::isfinite(v))
    std::snprintf(buf, sizeof(buf), "%.4f", v);
  else
    std::snprintf(buf, sizeof(buf), "%.4e", v);
  return buf;
}

void printScalar(const std::string &name, const HostTensor &t) {
  TensorRef ref = t.ref();
  if (isFloatDType(t.type.dtype))
    std::printf("%s = %s\n", name.c_str(),
                formatValue(loadAsDouble(ref, 0)).c_str());
  else
    std::printf("%s = %lld\n", name.c_str(),
                static_cast<long long>(loadAsInt64(ref, 0)));
}

/// Loads the plan's weights from --weights or the plan's weights file.
Status loadWeightsFile(const Options &opts, const Plan &plan,
                       Executor &executor, std::string &error) {
  size_t numWeights = 0;
  for (const PlanBinding &bind : plan.bindings)
    numWeights += bind.role == BindingRole::kWeight;
  std::string weightsPath = opts.weights;
  if (weightsPath.empty() && numWeights != 0) {
    if (plan.weightsFile.empty()) {
      error = "plan '" + opts.plan +
              "' was compiled from a graph without weight data; give "
              "--weights FILE" +
              (isTrainingPlan(plan) ? " or --init random" : "");
      return Status(StatusCode::kInvalidArgument, error);
    }
    weightsPath = besidePlan(opts.plan, plan.weightsFile);
  }
  if (weightsPath.empty())
    return Status::ok();
  SafetensorsFile weights;
  Status st = readSafetensorsFile(weightsPath, weights);
  if (!st.isOk()) {
    error = st.toString();
    return st;
  }
  st = executor.loadWeights(weights);
  if (!st.isOk())
    error = weightsPath + ": " + st.toString();
  return st;
}

//===----------------------------------------------------------------------===//
// --check-plan
//===----------------------------------------------------------------------===//

/// One line per arena on stderr, then the executor's verdict: 0, or the exit
/// code of the violation (already reported).
int reportPlanCheck(const Executor &executor) {
  Status verdict = executor.verifyPlanPeak();
  for (const ArenaCheck &check : executor.planCheck()) {
    char ratio[32] = "-";
    if (check.livePeakBytes != 0)
      std::snprintf(ratio, sizeof(ratio), "%.4fx",
                    static_cast<double>(check.plannedBytes) /
                        static_cast<double>(check.livePeakBytes));
    const char *state = check.touchedBytes == check.plannedBytes ? "ok"
                        : check.touchedBytes < check.plannedBytes
                            ? "over-allocated"
                            : "out of bounds";
    std::fprintf(stderr,
                 "check-plan: %s arena %llu bytes: touched %llu, live peak "
                 "%llu (%s): %s\n",
                 memorySpaceName(check.space),
                 static_cast<unsigned long long>(check.plannedBytes),
                 static_cast<unsigned long long>(check.touchedBytes),
                 static_cast<unsigned long long>(check.livePeakBytes), ratio,
                 state);
  }
  return verdict.isOk() ? 0 : fail(verdict.toString());
}

/// Under --check-plan, dead buffers hold NaN: a NaN result most likely read
/// one (a byte reused too early, or a buffer read before it was written).
std::string poisonHint() {
  return "NaN under --check-plan: poisoned bytes reached it (a buffer was "
         "read after its bytes were reused, or before it was written); if a "
         "run without --check-plan gives NaN too, the model itself does";
}

//===----------------------------------------------------------------------===//
// Forward mode
//===----------------------------------------------------------------------===//

Status checkWritable(const std::string &path); // below

int runForward(const Options &opts, const Plan &plan, Executor &executor) {
  if (opts.inputs.empty())
    return usageError("no --inputs file given");
  if (opts.outputs.empty())
    return usageError("no --outputs file given");

  SafetensorsFile inputs;
  Status st = readSafetensorsFile(opts.inputs, inputs);
  if (!st.isOk())
    return fail(st.toString());

  if (!opts.trace.empty()) {
    st = checkWritable(opts.trace);
    if (!st.isOk())
      return fail(st.toString());
  }
  executor.setCheckPlan(opts.checkPlan);
  executor.setTrace(!opts.trace.empty());
  st = executor.prepare(plan);
  if (!st.isOk())
    return fail(opts.plan + ": " + st.toString());
  std::string error;
  if (!loadWeightsFile(opts, plan, executor, error).isOk())
    return fail(error);

  SafetensorsFile outputs;
  auto start = std::chrono::steady_clock::now();
  st = executor.run(inputs, outputs);
  auto stop = std::chrono::steady_clock::now();
  if (!st.isOk())
    return fail(st.toString());
  st = writeSafetensorsFile(outputs, opts.outputs);
  if (!st.isOk())
    return fail(st.toString());
  if (!opts.trace.empty()) {
    st = executor.writeTrace(opts.trace);
    if (!st.isOk())
      return fail(st.toString());
  }

  uint64_t arenaTotal = 0;
  for (uint64_t bytes : executor.arenaBytes())
    arenaTotal += bytes;
  double ms = std::chrono::duration<double, std::milli>(stop - start).count();
  std::fprintf(stderr,
               "colossal-run: %s: plan format %u.%u, %zu instructions, "
               "%zu arenas (%llu bytes), %zu outputs, ran in %.3f ms\n",
               opts.plan.c_str(), plan.majorVersion, plan.minorVersion,
               plan.instrs.size(), plan.arenas.size(),
               static_cast<unsigned long long>(arenaTotal),
               outputs.tensors.size(), ms);
  for (const auto &entry : outputs.tensors)
    if (entry.second.type.numElements() == 1)
      printScalar(entry.first, entry.second);
  if (opts.checkPlan) {
    if (int code = reportPlanCheck(executor))
      return code;
    for (const auto &entry : outputs.tensors) {
      const HostTensor &t = entry.second;
      if (!isFloatDType(t.type.dtype))
        continue;
      int64_t n = t.type.numElements(), nans = 0;
      for (int64_t i = 0; i < n; ++i)
        nans += std::isnan(loadAsDouble(t.ref(), i)) ? 1 : 0;
      if (nans != 0)
        return fail("output '" + entry.first + "' has " + std::to_string(nans) +
                    " of " + std::to_string(n) + " values " + poisonHint());
    }
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// Training mode: where batches come from
//===----------------------------------------------------------------------===//

/// The value of a top-level integer member of a JSON object (the plan's
/// train config), or nothing when the text is not such an object or the key
/// is absent or not an integer. A small skipper, not a validator.
std::optional<int64_t> jsonTopLevelInt(const std::string &json,
                                       const std::string &key) {
  size_t i = 0;
  auto ws = [&] {
    while (i < json.size() && std::strchr(" \t\r\n", json[i]) && json[i])
      ++i;
  };
  auto parseString = [&](std::string *out) -> bool {
    if (i >= json.size() || json[i] != '"')
      return false;
    for (++i; i < json.size(); ++i) {
      if (json[i] == '\\') {
        if (++i >= json.size())
          return false;
        if (out)
          out->push_back(json[i]); // escapes are kept literally: keys are ASCII
      } else if (json[i] == '"') {
        ++i;
        return true;
      } else if (out) {
        out->push_back(json[i]);
      }
    }
    return false;
  };
  // Skips one value; depth-limited.
  std::function<bool(int)> skipValue = [&](int depth) -> bool {
    ws();
    if (i >= json.size() || depth > 64)
      return false;
    char c = json[i];
    if (c == '"')
      return parseString(nullptr);
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++i;
      ws();
      if (i < json.size() && json[i] == close) {
        ++i;
        return true;
      }
      for (;;) {
        if (c == '{') {
          ws();
          if (!parseString(nullptr))
            return false;
          ws();
          if (i >= json.size() || json[i++] != ':')
            return false;
        }
        if (!skipValue(depth + 1))
          return false;
        ws();
        if (i < json.size() && json[i] == ',') {
          ++i;
          continue;
        }
        if (i < json.size() && json[i] == close) {
          ++i;
          return true;
        }
        return false;
      }
    }
    size_t start = i;
    while (i < json.size() && !std::strchr(",}] \t\r\n", json[i]))
      ++i;
    return i > start;
  };
  ws();
  if (i >= json.size() || json[i] != '{')
    return std::nullopt;
  ++i;
  for (;;) {
    ws();
    std::string name;
    if (!parseString(&name))
      return std::nullopt;
    ws();
    if (i >= json.size() || json[i++] != ':')
      return std::nullopt;
    ws();
    size_t valueStart = i;
    if (!skipValue(0))
      return std::nullopt;
    if (name == key) {
      std::string text = json.substr(valueStart, i - valueStart);
      uint64_t v = 0;
      if (!parseUint64(text, v) ||
          v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return std::nullopt;
      return static_cast<int64_t>(v);
    }
    ws();
    if (i < json.size() && json[i] == ',') {
      ++i;
      continue;
    }
    return std::nullopt;
  }
}

/// A user input of micro_step and its planned (micro-batch) type.
struct DataInput {
  std::string name;
  TensorType micro;
};

/// Copies element values between integer tensors, checking that each fits
/// the destination (an i64 token id that wraps to a small i32 would read the
/// wrong embedding row silently).
Status copyInts(const TensorRef &src, int64_t srcOffset, const TensorRef &dst,
                int64_t count, const std::string &what) {
  for (int64_t i = 0; i < count; ++i) {
    int64_t v = loadAsInt64(src, srcOffset + i);
    if (dst.type.dtype == DType::kI32 &&
        (v < std::numeric_limits<int32_t>::min() ||
         v > std::numeric_limits<int32_t>::max()))
      return Status(StatusCode::kInvalidArgument,
                    what + ": value " + std::to_string(v) +
                        " does not fit the plan's i32 input");
    storeFromInt64(dst, i, v);
  }
  return Status::ok();
}

/// The data a step trains on. Both sources are pure functions of the step
/// (and the seed), so a resumed run sees the same batches as an
/// uninterrupted one.
class BatchSource {
public:
  virtual ~BatchSource() = default;
  virtual Status batch(uint64_t step, SafetensorsFile &out) = 0;
  /// Rows of the full batch (micro-batch rows x grad_accum).
  int64_t fullBatch = 0;
};

/// --batches: [K, batch, ...] tensors; step k uses entry k % K.
class SafetensorsBatches : public BatchSource {
public:
  Status open(const std::string &path, const std::vector<DataInput> &inputs) {
    path_ = path;
    inputs_ = inputs;
    COLOSSAL_RETURN_IF_ERROR(readSafetensorsFile(path, file_));
    auto bad = [&](const std::string &message) {
      return Status(StatusCode::kInvalidArgument, path + ": " + message);
    };
    // Tensors micro_step does not read are ignored (an oracle file may carry
    // logits and gradients too), but named, so that an input the user
    // expected the plan to read does not vanish silently. A misspelled
    // input still fails below, as missing.
    std::vector<std::string> ignored;
    for (const auto &entry : file_.tensors) {
      bool known = false;
      for (const DataInput &in : inputs)
        known |= in.name == entry.first;
      if (!known)
        ignored.push_back(entry.first);
    }
    if (!ignored.empty()) {
      std::string names;
      for (size_t i = 0; i < ignored.size() && i < 3; ++i)
        names += (i ? ", '" : "'") + ignored[i] + "'";
      if (ignored.size() > 3)
        names += ", ... (" + std::to_string(ignored.size()) + " in all)";
      warn(path + ": ignoring tensors micro_step does not read: " + names);
    }
    entries_ = -1;
    for (const DataInput &in : inputs) {
      const HostTensor *t = file_.find(in.name);
      std::string expect =
          "[K, batch" + std::string(in.micro.rank() > 1 ? ", " : "");
      for (size_t d = 1; d < in.micro.rank(); ++d)
        expect += std::to_string(in.micro.dims[d]) +
                  (d + 1 < in.micro.rank() ? ", " : "");
      expect += "]";
      if (!t)
        return bad("missing '" + in.name + "' (" + expect + ")");
      const TensorType &type = t->type;
      bool intToInt = isIntegerDType(in.micro.dtype) &&
                      (type.dtype == DType::kI64 || type.dtype == DType::kI32);
      if (type.dtype != in.micro.dtype && !intToInt)
        return bad(
            "'" + in.name + "' is " + dtypeName(type.dtype) +
            ", the plan reads " + dtypeName(in.micro.dtype) +
            (isIntegerDType(in.micro.dtype) ? " (give i64 or i32)" : ""));
      bool shapeOk = in.micro.rank() >= 1 &&
                     type.rank() == in.micro.rank() + 1 && type.dims[0] > 0;
      for (size_t d = 1; shapeOk && d < in.micro.rank(); ++d)
        shapeOk = type.dims[d + 1] == in.micro.dims[d];
      if (!shapeOk)
        return bad("'" + in.name + "' is " + type.toString() + ", expected " +
                   expect + " for the micro-batch " + in.micro.toString());
      int64_t batch = type.dims[1], micro = in.micro.dims[0];
      if (micro == 0 || batch == 0 || batch % micro != 0)
        return bad("the batch dim of '" + in.name + "' is " +
                   std::to_string(batch) +
                   ", not a positive multiple of the compiled micro-batch " +
                   std::to_string(micro));
      if (entries_ >= 0 && (type.dims[0] != entries_ || batch != fullBatch))
        return bad("'" + in.name + "' is " + type.toString() +
                   ", the other inputs have " + std::to_string(entries_) +
                   " entries of batch " + std::to_string(fullBatch));
      entries_ = type.dims[0];
      fullBatch = batch;
    }
    return Status::ok();
  }

  int64_t entries() const { return entries_; }

  Status batch(uint64_t step, SafetensorsFile &out) override {
    out = SafetensorsFile();
    int64_t entry =
        static_cast<int64_t>(step % static_cast<uint64_t>(entries_));
    for (const DataInput &in : inputs_) {
      const HostTensor *t = file_.find(in.name);
      TensorType type = in.micro;
      type.dims[0] = fullBatch;
      HostTensor batchTensor(type);
      int64_t n = type.numElements();
      if (type.dtype == t->type.dtype) {
        if (!batchTensor.bytes.empty())
          std::memcpy(batchTensor.bytes.data(),
                      t->bytes.data() + entry * type.sizeBytes(),
                      type.sizeBytes());
      } else {
        COLOSSAL_RETURN_IF_ERROR(copyInts(
            t->ref(), entry * n, batchTensor.ref(), n,
            path_ + ": '" + in.name + "' entry " + std::to_string(entry)));
      }
      out.tensors.emplace_back(in.name, std::move(batchTensor));
    }
    return Status::ok();
  }

private:
  std::string path_;
  std::vector<DataInput> inputs_;
  SafetensorsFile file_;
  int64_t entries_ = -1;
};

/// splitmix64's output mix, as a hash of one 64-bit word.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// --data: a raw little-endian token stream (nanoGPT's and llm.c's .bin
/// without a header). Row r of step k is the window of `seq` tokens at
///   mix64(mix64(mix64(seed ^ 0x636f6c6f7373616c) ^ k) ^ r) % (T - seq + 1)
/// (T tokens in the file); input_ids and labels both get it (the loss
/// shifts the labels itself).
class TokenStream : public BatchSource {
public:
  ~TokenStream() override {
    if (file_)
      std::fclose(file_);
  }

  Status open(const std::string &path, int tokenBytes, uint64_t seed,
              const std::vector<DataInput> &inputs, int64_t gradAccum) {
    path_ = path;
    tokenBytes_ = tokenBytes;
    seed_ = seed;
    inputs_ = inputs;
    auto bad = [&](const std::string &message) {
      return Status(StatusCode::kInvalidArgument, path + ": " + message);
    };
    bool hasIds = false;
    for (const DataInput &in : inputs) {
      if (in.name != "input_ids" && in.name != "labels")
        return bad("--data provides input_ids and labels, but micro_step also "
                   "reads '" +
                   in.name + "' (use --batches)");
      if (!isIntegerDType(in.micro.dtype) || in.micro.rank() != 2)
        return bad("--data needs a [batch, seq] integer '" + in.name +
                   "', the plan has " + in.micro.toString());
      if (in.micro.dims != inputs[0].micro.dims)
        return bad("input_ids and labels have different shapes in the plan");
      hasIds |= in.name == "input_ids";
    }
    if (!hasIds)
      return bad("--data needs a plan whose micro_step reads input_ids");
    rows_ = inputs[0].micro.dims[0];
    seq_ = inputs[0].micro.dims[1];
    fullBatch = rows_ * gradAccum;

    file_ = std::fopen(path.c_str(), "rb");
    if (!file_)
      return Status(errno == ENOENT ? StatusCode::kNotFound
                                    : StatusCode::kIoError,
                    path + ": cannot open: " + std::strerror(errno));
    if (fseeko(file_, 0, SEEK_END) != 0)
      return Status(StatusCode::kIoError, path + ": cannot seek");
    off_t size = ftello(file_);
    if (size < 0)
      return Status(StatusCode::kIoError, path + ": cannot size");
    if (static_cast<uint64_t>(size) % tokenBytes != 0)
      return bad(std::to_string(size) + " bytes is not a whole number of " +
                 std::to_string(8 * tokenBytes) + "-bit tokens");
    numTokens_ = static_cast<uint64_t>(size) / tokenBytes;
    if (numTokens_ < static_cast<uint64_t>(seq_) || seq_ == 0)
      return bad("holds " + std::to_string(numTokens_) +
                 " tokens, fewer than the compiled sequence length " +
                 std::to_string(seq_));
    return Status::ok();
  }

  uint64_t numTokens() const { return numTokens_; }

  Status batch(uint64_t step, SafetensorsFile &out) override {
    out = SafetensorsFile();
    std::vector<int64_t> tokens(static_cast<size_t>(fullBatch * seq_));
    std::vector<uint8_t> raw(static_cast<size_t>(seq_) * tokenBytes_);
    uint64_t windows = numTokens_ - static_cast<uint64_t>(seq_) + 1;
    uint64_t stepKey = mix64(mix64(seed_ ^ 0x636f6c6f7373616cull) ^ step);
    for (int64_t r = 0; r < fullBatch; ++r) {
      uint64_t start = mix64(stepKey ^ static_cast<uint64_t>(r)) % windows;
      if (fseeko(file_, static_cast<off_t>(start * tokenBytes_), SEEK_SET) !=
              0 ||
          std::fread(raw.data(), 1, raw.size(), file_) != raw.size())
        return Status(StatusCode::kIoError,
                      path_ + ": read error at token " + std::to_string(start));
      for (int64_t j = 0; j < seq_; ++j) {
        const uint8_t *p = raw.data() + j * tokenBytes_;
        uint64_t v = 0;
        for (int b = tokenBytes_ - 1; b >= 0; --b)
          v = (v << 8) | p[b];
        tokens[r * seq_ + j] = static_cast<int64_t>(v);
      }
    }
    for (const DataInput &in : inputs_) {
      HostTensor t(TensorType{in.micro.dtype, {fullBatch, seq_}});
      TensorRef src{TensorType{DType::kI64, {fullBatch, seq_}}, tokens.data()};
      COLOSSAL_RETURN_IF_ERROR(
          copyInts(src, 0, t.ref(), t.type.numElements(),
                   path_ + ": a token of '" + in.name + "'"));
      out.tensors.emplace_back(in.name, std::move(t));
    }
    return Status::ok();
  }

private:
  std::string path_;
  std::FILE *file_ = nullptr;
  int tokenBytes_ = 2;
  uint64_t seed_ = 0;
  std::vector<DataInput> inputs_;
  int64_t rows_ = 0, seq_ = 0;
  uint64_t numTokens_ = 0;
};

//===----------------------------------------------------------------------===//
// Training mode: the loop
//===----------------------------------------------------------------------===//

/// Creates and removes a file beside `path`, so that a bad --save or
/// --export-weights path fails before the training, not after it.
Status checkWritable(const std::string &path) {
  std::string probe = path + ".tmp." + std::to_string(::getpid());
  std::FILE *f = std::fopen(probe.c_str(), "wb");
  if (!f)
    return Status(StatusCode::kIoError,
                  path + ": cannot write: " + std::strerror(errno));
  std::fclose(f);
  std::remove(probe.c_str());
  return Status::ok();
}

/// JSON number, or null for NaN and infinities (strict JSON has neither).
std::string jsonNumber(double v) {
  if (!std::isfinite(v))
    return "null";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    seconds = 0;
  uint64_t s = static_cast<uint64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%llu:%02llu:%02llu",
                static_cast<unsigned long long>(s / 3600),
                static_cast<unsigned long long>(s / 60 % 60),
                static_cast<unsigned long long>(s % 60));
  return buf;
}

int runTraining(const Options &opts, const Plan &plan, Executor &executor) {
  // Flags that do not belong to training, and combinations that conflict.
  if (!opts.inputs.empty() || !opts.outputs.empty())
    return usageError("'" + opts.plan +
                      "' is a training plan (micro_step, apply_step): give "
                      "--batches or --data, not --inputs/--outputs");
  if (opts.batches.empty() == opts.data.empty())
    return usageError(opts.batches.empty()
                          ? "a training plan needs --batches FILE or --data "
                            "FILE"
                          : "--batches and --data exclude each other");
  if (!opts.dataDtype.empty() && opts.data.empty())
    return usageError("--data-dtype applies to --data only");
  int tokenBytes = 2;
  if (opts.dataDtype == "uint32")
    tokenBytes = 4;
  else if (!opts.dataDtype.empty() && opts.dataDtype != "uint16")
    return usageError("--data-dtype must be uint16 or uint32, got '" +
                      opts.dataDtype + "'");
  bool randomInit = opts.init == "random";
  if (!opts.init.empty() && opts.init != "random" && opts.init != "file")
    return usageError("--init must be random or file, got '" + opts.init + "'");
  if (randomInit && !opts.weights.empty())
    return usageError("--init random and --weights exclude each other");
  if (!opts.resume.empty() && (randomInit || !opts.weights.empty()))
    return usageError("--resume restores the weights; drop --init random and "
                      "--weights");
  uint64_t seed = 0, steps = 0;
  if (!opts.seed.empty() && !parseUint64(opts.seed, seed))
    return usageError("--seed must be a non-negative integer, got '" +
                      opts.seed + "'");
  if (!opts.seed.empty() && !randomInit && opts.data.empty())
    return usageError("--seed applies to --init random and --data only");
  int64_t traceStep = -1;
  if (!opts.traceStep.empty()) {
    uint64_t k = 0;
    if (!parseUint64(opts.traceStep, k) ||
        k > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return usageError("--trace-step must be a non-negative integer, got '" +
                        opts.traceStep + "'");
    if (opts.trace.empty())
      return usageError("--trace-step needs --trace FILE");
    traceStep = static_cast<int64_t>(k);
  }
  if (!opts.steps.empty() && (!parseUint64(opts.steps, steps) || steps == 0))
    return usageError("--steps must be a positive integer, got '" + opts.steps +
                      "'");
  if (opts.steps.empty() && !opts.data.empty())
    return usageError("--data needs --steps N");

  // The micro_step's user inputs: what the data must provide.
  std::vector<PlanProgram> programs = effectivePrograms(plan);
  uint32_t microIndex = 0;
  const char *stepProgram =
      isFusedTrainingPlan(plan) ? kTrainStepProgram : kMicroStepProgram;
  while (programs[microIndex].name != stepProgram)
    ++microIndex;
  if (isFusedTrainingPlan(plan) && !opts.dumpGrads.empty())
    return fail(opts.plan + ": this plan fuses each weight's update into the "
                "step, so no gradient is kept to dump; compile it with "
                "--separate-optimizer-step to use --dump-grads");
  std::vector<DataInput> dataInputs;
  for (const PlanBinding &bind : plan.bindings)
    if (bind.role == BindingRole::kInput &&
        bindingInProgram(bind, microIndex) && bind.name != kStepInputName &&
        bind.name != kCountTotalInputName)
      dataInputs.push_back({bind.name, plan.tensors[bind.tensor].type});
  if (dataInputs.empty())
    return fail(opts.plan + ": " + stepProgram +
                " reads no input: nothing to feed");

  std::optional<int64_t> compiledAccum =
      jsonTopLevelInt(plan.trainConfig, "grad_accum");
  if (!plan.trainConfig.empty())
    std::fprintf(stderr, "colossal-run: %s: train config %s\n",
                 opts.plan.c_str(), plan.trainConfig.c_str());

  // Data first (cheap to check), then the executor.
  SafetensorsBatches batchFile;
  TokenStream tokenStream;
  BatchSource *source = nullptr;
  Status st;
  if (!opts.batches.empty()) {
    st = batchFile.open(opts.batches, dataInputs);
    if (!st.isOk())
      return fail(st.toString());
    source = &batchFile;
    if (opts.steps.empty())
      steps = static_cast<uint64_t>(batchFile.entries());
  } else {
    int64_t accum = compiledAccum.value_or(1);
    if (accum <= 0)
      return fail(opts.plan + ": train config grad_accum " +
                  std::to_string(accum) + " is not positive");
    st = tokenStream.open(opts.data, tokenBytes, seed, dataInputs, accum);
    if (!st.isOk())
      return fail(st.toString());
    source = &tokenStream;
  }
  int64_t microRows =
      dataInputs[0].micro.rank() ? dataInputs[0].micro.dims[0] : 1;
  int64_t gradAccum = microRows ? source->fullBatch / microRows : 1;
  if (compiledAccum && *compiledAccum != gradAccum)
    warn("the plan was compiled for grad_accum " +
         std::to_string(*compiledAccum) + ", the batches give " +
         std::to_string(gradAccum) + " micro-batches per step");
  // Tokens per step: the elements of the first data input (input_ids) in
  // the full batch.
  int64_t tokensPerStep = dataInputs[0].micro.numElements() * gradAccum;

  for (const std::string *path :
       {&opts.save, &opts.exportWeights, &opts.dumpGrads, &opts.trace})
    if (!path->empty()) {
      st = checkWritable(*path);
      if (!st.isOk())
        return fail(st.toString());
    }

  executor.setCheckPlan(opts.checkPlan);
  executor.setTrace(!opts.trace.empty(), traceStep);
  // Start-up can take a minute on a big plan (pinned host arenas, weights
  // drawn or read): say where the time went.
  auto sinceStart = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  auto t0 = std::chrono::steady_clock::now();
  st = executor.prepare(plan);
  if (!st.isOk())
    return fail(opts.plan + ": " + st.toString());
  std::fprintf(stderr, "colossal-run: %s: prepared in %.1f s\n",
               opts.plan.c_str(), sinceStart(t0));
  t0 = std::chrono::steady_clock::now();
  uint64_t startStep = 0;
  if (!opts.resume.empty()) {
    std::string savedConfig;
    st = executor.loadCheckpoint(opts.resume, &startStep, &savedConfig);
    if (!st.isOk())
      return fail(st.toString());
    if (savedConfig != plan.trainConfig)
      warn(opts.resume + " was saved with train config " + savedConfig +
           ", the plan has " + plan.trainConfig);
    if (startStep >= steps)
      return usageError(opts.resume + " is at step " +
                        std::to_string(startStep) + "; --steps " +
                        std::to_string(steps) +
                        " leaves nothing to run (--steps counts from step 0)");
  } else if (randomInit) {
    st = executor.initWeights(seed);
    if (!st.isOk())
      return fail(opts.plan + ": " + st.toString());
    std::fprintf(stderr,
                 "colossal-run: %s: weights drawn (--init random, seed %llu) "
                 "in %.1f s\n",
                 opts.plan.c_str(), static_cast<unsigned long long>(seed),
                 sinceStart(t0));
  } else {
    std::string error;
    if (!loadWeightsFile(opts, plan, executor, error).isOk())
      return fail(error);
    std::fprintf(stderr, "colossal-run: %s: weights loaded in %.1f s\n",
                 opts.plan.c_str(), sinceStart(t0));
  }

  std::FILE *metrics = nullptr;
  if (!opts.metrics.empty()) {
    metrics = std::fopen(opts.metrics.c_str(), "w");
    if (!metrics)
      return fail(opts.metrics + ": cannot write: " + std::strerror(errno));
  }
  struct CloseFile {
    std::FILE *&f;
    ~CloseFile() {
      if (f)
        std::fclose(f);
    }
  } closeMetrics{metrics};

  const bool tty = ::isatty(::fileno(stderr)) != 0;
  const uint64_t every = std::max<uint64_t>(1, steps / 50);
  TrainStepStats stats;
  // The bar is redrawn at most every 0.1 s: a fast plan would otherwise
  // spend its time writing to the terminal.
  auto lastDraw = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  double trainSeconds = 0.0;
  uint64_t stepsRun = 0;
  SafetensorsFile batch, grads;
  for (uint64_t k = startStep; k < steps; ++k) {
    auto t0 = std::chrono::steady_clock::now();
    st = source->batch(k, batch);
    if (!st.isOk())
      return fail(st.toString());
    bool dump = k == startStep && !opts.dumpGrads.empty();
    st = executor.trainStep(k, batch, stats, dump ? &grads : nullptr);
    if (!st.isOk())
      return fail("step " + std::to_string(k) + ": " + st.toString());
    if (opts.checkPlan && ((stats.countTotal > 0 && std::isnan(stats.loss)) ||
                           (stats.gradNorm && std::isnan(*stats.gradNorm))))
      return fail("step " + std::to_string(k) + ": the " +
                  (std::isnan(stats.loss) ? "loss" : "gradient norm") + " is " +
                  poisonHint());
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    trainSeconds += seconds;
    ++stepsRun;
    if (dump) {
      st = writeSafetensorsFile(grads, opts.dumpGrads);
      if (!st.isOk())
        return fail(st.toString());
    }
    double tokensPerSecond =
        seconds > 0 ? static_cast<double>(tokensPerStep) / seconds : 0.0;
    double nan = std::numeric_limits<double>::quiet_NaN();

    if (metrics) {
      std::fprintf(
          metrics,
          "{\"step\": %llu, \"loss\": %s, \"grad_norm\": %s, \"lr\": %s, "
          "\"tokens_per_s\": %s, \"tokens\": %lld, \"scored\": %s, "
          "\"micro_steps\": %lld, \"step_s\": %s}\n",
          static_cast<unsigned long long>(k), jsonNumber(stats.loss).c_str(),
          jsonNumber(stats.gradNorm.value_or(nan)).c_str(),
          jsonNumber(stats.lr.value_or(nan)).c_str(),
          jsonNumber(tokensPerSecond).c_str(),
          static_cast<long long>(tokensPerStep),
          jsonNumber(stats.countTotal).c_str(),
          static_cast<long long>(stats.microSteps),
          jsonNumber(seconds).c_str());
      if (std::fflush(metrics) != 0)
        return fail(opts.metrics + ": write failed: " + std::strerror(errno));
    }

    double avgTokensPerSecond =
        trainSeconds > 0 ? tokensPerStep * stepsRun / trainSeconds : 0.0;
    auto now = std::chrono::steady_clock::now();
    if (tty &&
        (k + 1 == steps || now - lastDraw >= std::chrono::milliseconds(100))) {
      lastDraw = now;
      // One line redrawn in place: bar, loss, throughput, time left.
      const int width = 24;
      int filled = static_cast<int>(width * (k + 1) / steps);
      std::string bar(filled, '#');
      bar.append(width - filled, '.');
      double eta = trainSeconds / stepsRun * (steps - k - 1);
      std::fprintf(stderr,
                   "\r\x1b[Kstep %llu/%llu [%s] loss %s | %.0f tok/s | ETA %s",
                   static_cast<unsigned long long>(k + 1),
                   static_cast<unsigned long long>(steps), bar.c_str(),
                   formatValue(stats.loss).c_str(), avgTokensPerSecond,
                   formatDuration(eta).c_str());
      if (k + 1 == steps)
        std::fputc('\n', stderr);
      std::fflush(stderr);
    } else if (!tty &&
               (k == startStep || k + 1 == steps || (k + 1) % every == 0)) {
      std::string line = "step " + std::to_string(k) + "/" +
                         std::to_string(steps) + ": loss " +
                         formatValue(stats.loss);
      if (stats.gradNorm)
        line += ", grad_norm " + formatValue(*stats.gradNorm);
      if (stats.lr) {
        char lr[32];
        std::snprintf(lr, sizeof(lr), "%.3e", *stats.lr);
        line += std::string(", lr ") + lr;
      }
      char rate[48];
      std::snprintf(rate, sizeof(rate), ", %.0f tok/s", tokensPerSecond);
      std::fprintf(stderr, "%s%s\n", line.c_str(), rate);
    }
  }

  {
    // The last step's host updates may still run (updates across the step
    // boundary): they are part of the training time.
    auto t0 = std::chrono::steady_clock::now();
    st = executor.drain();
    if (!st.isOk())
      return fail("step " + std::to_string(steps - 1) + ": " + st.toString());
    trainSeconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
  }
  if (!opts.save.empty()) {
    st = executor.saveCheckpoint(opts.save, steps);
    if (!st.isOk())
      return fail(st.toString());
  }
  if (!opts.exportWeights.empty()) {
    SafetensorsFile exported;
    // Hugging Face's loaders look for this tag in safetensors metadata.
    exported.metadata["format"] = "pt";
    for (const PlanBinding &bind : plan.bindings) {
      if (bind.role != BindingRole::kWeight)
        continue;
      HostTensor t;
      st = executor.readBinding(BindingRole::kWeight, bind.name, t);
      if (!st.isOk())
        return fail(st.toString());
      exported.tensors.emplace_back(
          bind.exportName.empty() ? bind.name : bind.exportName, std::move(t));
    }
    st = writeSafetensorsFile(exported, opts.exportWeights);
    if (!st.isOk())
      return fail(st.toString());
  }

  double avgTokensPerSecond =
      trainSeconds > 0 ? tokensPerStep * stepsRun / trainSeconds : 0.0;
  std::fprintf(stderr,
               "colossal-run: %s: trained steps %llu-%llu (%llu steps, "
               "grad_accum %lld, %lld tokens/step) in %.3f s: final loss %s, "
               "%.0f tokens/s\n",
               opts.plan.c_str(), static_cast<unsigned long long>(startStep),
               static_cast<unsigned long long>(steps - 1),
               static_cast<unsigned long long>(stepsRun),
               static_cast<long long>(gradAccum),
               static_cast<long long>(tokensPerStep), trainSeconds,
               formatValue(stats.loss).c_str(), avgTokensPerSecond);
  std::printf("loss = %s\n", formatValue(stats.loss).c_str());
  if (!opts.trace.empty()) {
    if (traceStep >= 0 && (static_cast<uint64_t>(traceStep) < startStep ||
                           static_cast<uint64_t>(traceStep) >= steps))
      warn("--trace-step " + std::to_string(traceStep) +
           " was not run (steps " + std::to_string(startStep) + "-" +
           std::to_string(steps - 1) + "): the trace has no slices");
    st = executor.writeTrace(opts.trace);
    if (!st.isOk())
      return fail(st.toString());
  }
  if (opts.checkPlan)
    return reportPlanCheck(executor);
  return 0;
}

/// share/colossal/devices/h200.json beside the binary's bin/ folder, as
/// colossal-opt finds its default profile.
std::string defaultBaseProfile() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0)
    return "share/colossal/devices/h200.json";
  std::string path(exe, static_cast<size_t>(n));
  for (int up = 0; up < 2; ++up) { // drop the file name, then bin/
    size_t slash = path.find_last_of('/');
    path = slash == std::string::npos ? "." : path.substr(0, slash);
  }
  return path + "/share/colossal/devices/h200.json";
}

/// --calibrate: measures and writes the device profile (src/Calibrate.h).
int runCalibrate(const Options &opts) {
  CalibrateOptions copts;
  if (!opts.device.empty()) {
    std::optional<Device> parsed = parseDevice(opts.device);
    if (!parsed)
      return usageError("--device must be cpu or cuda, got '" + opts.device +
                        "'");
    copts.useGpu = *parsed == Device::kCuda;
  }
  if (const char *env = std::getenv("COLOSSAL_CALIBRATE_ADAMW_PARAMS")) {
    uint64_t n = 0;
    if (!parseUint64(env, n) || n == 0 || n > (uint64_t{1} << 34))
      return usageError(std::string("COLOSSAL_CALIBRATE_ADAMW_PARAMS must be "
                                    "a count in [1, 2^34], got '") +
                        env + "'");
    copts.adamwParams = static_cast<int64_t>(n);
  }
  copts.basePath =
      opts.calibrateBase.empty() ? defaultBaseProfile() : opts.calibrateBase;
  Status st = calibrateToFile(copts, opts.calibrate);
  if (!st.isOk())
    return fail("--calibrate: " + st.message());
  return 0;
}

int runTool(const Options &opts) {
  if (!opts.calibrate.empty())
    return runCalibrate(opts);
  // The device first: asking for a GPU that is not there is the clearest
  // error there is, whatever the plan.
  Device device = Device::kCpu;
  if (!opts.device.empty()) {
    std::optional<Device> parsed = parseDevice(opts.device);
    if (!parsed)
      return usageError("--device must be cpu or cuda, got '" + opts.device +
                        "'");
    device = *parsed;
  }
  Executor executor;
  Status st = executor.setDevice(device);
  if (!st.isOk())
    return fail("--device " + opts.device + ": " + st.toString());
  if (device != Device::kCpu)
    std::fprintf(stderr, "colossal-run: device %s\n", deviceName(device));

  Plan plan;
  st = readPlanFile(opts.plan, plan);
  if (!st.isOk())
    return fail(st.toString());
  if (isTrainingPlan(plan))
    return runTraining(opts, plan, executor);

  for (const auto &flag :
       {std::make_pair("--batches", &opts.batches),
        std::make_pair("--data", &opts.data),
        std::make_pair("--data-dtype", &opts.dataDtype),
        std::make_pair("--init", &opts.init),
        std::make_pair("--seed", &opts.seed),
        std::make_pair("--steps", &opts.steps),
        std::make_pair("--metrics", &opts.metrics),
        std::make_pair("--dump-grads", &opts.dumpGrads),
        std::make_pair("--save", &opts.save),
        std::make_pair("--resume", &opts.resume),
        std::make_pair("--export-weights", &opts.exportWeights),
        std::make_pair("--trace-step", &opts.traceStep)})
    if (!flag.second->empty())
      return usageError(std::string(flag.first) +
                        " applies to training plans; '" + opts.plan +
                        "' is a forward plan");
  return runForward(opts, plan, executor);
}

} // namespace

int main(int argc, char **argv) {
  Options opts;
  if (int code = parseArgs(argc, argv, opts))
    return code;
  if (opts.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  // The library never throws; a failed allocation for a huge (but
  // well-formed) input is the one exception that can reach here, when
  // exceptions are on at all.
#if defined(__cpp_exceptions)
  try {
    return runTool(opts);
  } catch (const std::bad_alloc &) {
    return fail("out of memory");
  }
#else
  return runTool(opts);
#endif
}
