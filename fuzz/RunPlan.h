//===- RunPlan.h - Run an accepted plan on zeros, for the fuzz targets ----===//
//
// Shared by the plan-reader and onnx-import fuzzers: prepares a CpuExecutor
// on a plan the runtime accepted, loads zero-filled weights of the planned
// types, and runs every program in plan order with zero-filled inputs of
// the planned types. A failing Status is fine (a gather index out of range
// is a run-time error); an internal error, or a crash, is a bug.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_FUZZ_RUNPLAN_H
#define COLOSSAL_FUZZ_RUNPLAN_H

#include "colossal/runtime/Executor.h"
#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Safetensors.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

namespace colossal::fuzz {

/// Plans whose arenas exceed this are not run: allocating and computing a
/// huge (valid) plan only measures the machine. 256 KiB bound every
/// kernel's work: a matmul whose operands fit in S elements does at most
/// S^1.5 multiply-adds.
inline constexpr uint64_t kMaxRunArenaBytes = 256 << 10;

[[noreturn]] inline void bug(const char *who, const char *what,
                             const std::string &detail) {
  std::fprintf(stderr, "%s fuzzer: %s: %s\n", who, what, detail.c_str());
  std::abort();
}

/// Runs `plan` (accepted by validatePlan) as described above; `who` names
/// the fuzzer in bug reports.
inline void runPlanOnZeros(const runtime::Plan &plan, const char *who) {
  using namespace runtime;
  uint64_t arenaBytes = 0;
  for (const PlanArena &arena : plan.arenas) {
    if (arena.sizeBytes > kMaxRunArenaBytes)
      return;
    arenaBytes += arena.sizeBytes;
  }
  if (arenaBytes > kMaxRunArenaBytes)
    return;

  CpuExecutor exec;
  Status st = exec.prepare(plan);
  if (!st.isOk()) {
    if (st.code() == StatusCode::kInternal)
      bug(who, "prepare() of an accepted plan", st.toString());
    return;
  }
  SafetensorsFile weights;
  for (const PlanBinding &bind : plan.bindings)
    if (bind.role == BindingRole::kWeight)
      weights.tensors.emplace_back(bind.name,
                                   HostTensor(plan.tensors[bind.tensor].type));
  st = exec.loadWeights(weights);
  if (!st.isOk())
    bug(who, "loadWeights() with the planned weight types", st.toString());

  std::vector<PlanProgram> programs = effectivePrograms(plan);
  for (uint32_t p = 0; p < programs.size(); ++p) {
    SafetensorsFile inputs, outputs;
    std::set<std::string> names;
    for (const PlanBinding &bind : plan.bindings)
      if (bind.role == BindingRole::kInput && bindingInProgram(bind, p) &&
          names.insert(bind.name).second)
        inputs.tensors.emplace_back(bind.name,
                                    HostTensor(plan.tensors[bind.tensor].type));
    st = exec.runProgram(programs[p].name, inputs, outputs);
    if (!st.isOk() && st.code() == StatusCode::kInternal)
      bug(who, "running an accepted plan", st.toString());
  }
}

} // namespace colossal::fuzz

#endif // COLOSSAL_FUZZ_RUNPLAN_H
