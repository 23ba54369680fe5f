//===- colossal-run.cpp - Run a .cplan plan on the CPU backend ------------===//
//
//   colossal-run PLAN.cplan --inputs IN.safetensors --outputs OUT.safetensors
//                [--weights W.safetensors]
//
// Reads and validates the plan, loads the weights (by default the plan's
// weightsFile, relative to the plan's folder), runs one step on the CPU and
// writes every output. A summary goes to stderr; scalar outputs are printed
// to stdout as "name = value". Exit codes: 0 success, 1 error (bad file,
// failed run), 2 usage error. docs/colossal-run.md documents the tool.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Executor.h"
#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Safetensors.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <new>
#include <string>

using namespace colossal::runtime;

namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

const char *const kUsage =
    "usage: colossal-run PLAN.cplan --inputs IN.safetensors "
    "--outputs OUT.safetensors [--weights W.safetensors]\n"
    "\n"
    "Runs one step of a compiled plan on the CPU backend.\n"
    "\n"
    "  PLAN.cplan                 the plan written by `colossal-opt compile`\n"
    "  --inputs FILE              every graph input, by name (safetensors)\n"
    "  --outputs FILE             where every graph output is written\n"
    "  --weights FILE             the weights (default: the plan's weights\n"
    "                             file, relative to the plan's folder)\n"
    "  --help                     print this message\n"
    "\n"
    "Scalar outputs are printed to stdout as `name = value`; a summary goes\n"
    "to stderr. Exit codes: 0 success, 1 error, 2 usage error.\n";

int fail(const std::string &message) {
  std::fprintf(stderr, "colossal-run: error: %s\n", message.c_str());
  return kExitError;
}

int usageError(const std::string &message) {
  std::fprintf(stderr, "colossal-run: error: %s (see --help)\n",
               message.c_str());
  return kExitUsage;
}

struct Options {
  std::string plan, inputs, outputs, weights;
  bool help = false;
};

/// Parses argv; returns 0 or the exit code of a usage error (already
/// reported). Accepts both "--flag value" and "--flag=value".
int parseArgs(int argc, char **argv, Options &opts) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      opts.help = true;
      return 0;
    }
    std::string *target = nullptr;
    std::string flag = arg, value;
    bool hasValue = false;
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      hasValue = true;
    }
    if (flag == "--inputs")
      target = &opts.inputs;
    else if (flag == "--outputs")
      target = &opts.outputs;
    else if (flag == "--weights")
      target = &opts.weights;
    if (target) {
      if (!hasValue) {
        if (i + 1 >= argc)
          return usageError(flag + " needs a file name");
        value = argv[++i];
      }
      if (value.empty())
        return usageError(flag + " needs a file name");
      if (!target->empty())
        return usageError(flag + " given twice");
      *target = value;
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-')
      return usageError("unknown option '" + arg + "'");
    if (!opts.plan.empty())
      return usageError("more than one plan file ('" + opts.plan + "', '" +
                        arg + "')");
    opts.plan = arg;
  }
  if (opts.plan.empty())
    return usageError("no plan file given");
  if (opts.inputs.empty())
    return usageError("no --inputs file given");
  if (opts.outputs.empty())
    return usageError("no --outputs file given");
  return 0;
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

void printScalar(const std::string &name, const HostTensor &t) {
  TensorRef ref = t.ref();
  if (isFloatDType(t.type.dtype)) {
    double v = loadAsDouble(ref, 0);
    double mag = std::fabs(v);
    if (v == 0.0 || (mag >= 1e-3 && mag < 1e9) || !std::isfinite(v))
      std::printf("%s = %.4f\n", name.c_str(), v);
    else
      std::printf("%s = %.4e\n", name.c_str(), v);
  } else {
    std::printf("%s = %lld\n", name.c_str(),
                static_cast<long long>(loadAsInt64(ref, 0)));
  }
}

int runTool(const Options &opts) {
  Plan plan;
  Status st = readPlanFile(opts.plan, plan);
  if (!st.isOk())
    return fail(st.toString());

  size_t numWeights = 0;
  for (const PlanBinding &bind : plan.bindings)
    numWeights += bind.role == BindingRole::kWeight;
  std::string weightsPath = opts.weights;
  if (weightsPath.empty() && numWeights != 0) {
    if (plan.weightsFile.empty())
      return fail("plan '" + opts.plan +
                  "' was compiled from a graph without weight data; give "
                  "--weights FILE");
    weightsPath = besidePlan(opts.plan, plan.weightsFile);
  }

  SafetensorsFile inputs;
  st = readSafetensorsFile(opts.inputs, inputs);
  if (!st.isOk())
    return fail(st.toString());

  CpuExecutor executor;
  st = executor.prepare(plan);
  if (!st.isOk())
    return fail(opts.plan + ": " + st.toString());
  if (!weightsPath.empty()) {
    SafetensorsFile weights;
    st = readSafetensorsFile(weightsPath, weights);
    if (!st.isOk())
      return fail(st.toString());
    st = executor.loadWeights(weights);
    if (!st.isOk())
      return fail(weightsPath + ": " + st.toString());
  }

  SafetensorsFile outputs;
  auto start = std::chrono::steady_clock::now();
  st = executor.run(inputs, outputs);
  auto stop = std::chrono::steady_clock::now();
  if (!st.isOk())
    return fail(st.toString());
  st = writeSafetensorsFile(outputs, opts.outputs);
  if (!st.isOk())
    return fail(st.toString());

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
  return 0;
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
