//===- Executor.cpp - Run a validated plan with the CPU kernels -----------===//
//
// Arenas are allocated once in prepare() and never resized: every tensor
// lives at arena base + buffer offset + tensor byte offset, exactly as the
// plan says. Weights persist across run() calls (a training step updates
// them in place); inputs are copied in and outputs copied out on each run.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Executor.h"

#include "colossal/runtime/Kernels.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>

namespace colossal::runtime {

namespace {

Status invalid(const std::string &message) {
  return Status(StatusCode::kInvalidArgument, message);
}

} // namespace

Status CpuExecutor::prepare(const Plan &plan) {
  plan_ = nullptr;
  arenas_.clear();
  arenaBase_.clear();
  weightsLoaded_ = false;
  // The runtime never trusts a plan, even one built in memory: validation
  // is what makes every address computed below fall inside an arena.
  COLOSSAL_RETURN_IF_ERROR(validatePlan(plan));

  for (size_t a = 0; a < plan.arenas.size(); ++a) {
    const PlanArena &arena = plan.arenas[a];
    // calloc, over-allocated by the alignment and aligned by hand: large
    // arenas come zeroed from the OS without touching every page, and an
    // arena of 0 bytes still gets a valid base.
    uint64_t align = std::max<uint64_t>(arena.alignBytes, 16);
    uint64_t padded = arena.sizeBytes + align;
    if (arena.sizeBytes > UINT64_MAX - align || padded > SIZE_MAX) {
      arenas_.clear();
      arenaBase_.clear();
      return Status(StatusCode::kUnsupported,
                    "arena " + std::to_string(a) + " of " +
                        std::to_string(arena.sizeBytes) +
                        " bytes is too large for this machine");
    }
    void *raw = std::calloc(static_cast<size_t>(padded), 1);
    if (!raw) {
      arenas_.clear();
      arenaBase_.clear();
      return Status(StatusCode::kUnsupported,
                    "cannot allocate arena " + std::to_string(a) + " (" +
                        memorySpaceName(arena.space) + ", " +
                        std::to_string(arena.sizeBytes) + " bytes)");
    }
    // Zeroed, so that a plan reading a buffer before writing it (a compiler
    // bug) gives the same numbers on every run.
    uintptr_t addr = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned =
        (addr + (align - 1)) & ~static_cast<uintptr_t>(align - 1);
    arenas_.emplace_back(static_cast<uint8_t *>(raw), &std::free);
    arenaBase_.push_back(reinterpret_cast<uint8_t *>(aligned));
  }
  plan_ = &plan;

  for (const PlanBinding &bind : plan.bindings)
    if (bind.role == BindingRole::kConstant && !bind.data.empty())
      std::memcpy(tensorData(bind.tensor), bind.data.data(), bind.data.size());
  return Status::ok();
}

void *CpuExecutor::tensorData(uint32_t tensorIndex) const {
  const PlanTensor &tensor = plan_->tensors[tensorIndex];
  const PlanBuffer &buffer = plan_->buffers[tensor.buffer];
  return arenaBase_[buffer.arena] + buffer.offsetBytes + tensor.byteOffset;
}

std::vector<uint64_t> CpuExecutor::arenaBytes() const {
  std::vector<uint64_t> bytes;
  if (plan_)
    for (const PlanArena &arena : plan_->arenas)
      bytes.push_back(arena.sizeBytes);
  return bytes;
}

Status CpuExecutor::loadWeights(const SafetensorsFile &weights) {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "loadWeights() called before a successful prepare()");
  // Check every weight before copying any, so a failed load leaves the
  // arenas as they were.
  for (const PlanBinding &bind : plan_->bindings) {
    if (bind.role != BindingRole::kWeight)
      continue;
    const TensorType &expected = plan_->tensors[bind.tensor].type;
    const HostTensor *w = weights.find(bind.name);
    if (!w)
      return Status(StatusCode::kNotFound, "weight '" + bind.name + "' (" +
                                               expected.toString() +
                                               ") is not in the weights file");
    if (w->type != expected)
      return invalid("weight '" + bind.name + "': the plan expects " +
                     expected.toString() + ", the weights file has " +
                     w->type.toString());
    if (w->bytes.size() != expected.sizeBytes())
      return invalid("weight '" + bind.name + "' has " +
                     std::to_string(w->bytes.size()) + " bytes, expected " +
                     std::to_string(expected.sizeBytes()));
  }
  for (const PlanBinding &bind : plan_->bindings) {
    if (bind.role != BindingRole::kWeight)
      continue;
    const HostTensor *w = weights.find(bind.name);
    if (!w->bytes.empty())
      std::memcpy(tensorData(bind.tensor), w->bytes.data(), w->bytes.size());
  }
  weightsLoaded_ = true;
  return Status::ok();
}

Status CpuExecutor::run(const SafetensorsFile &inputs,
                        SafetensorsFile &outputs) {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "run() called before a successful prepare()");
  const Plan &plan = *plan_;

  size_t numWeights = 0;
  std::set<std::string> inputNames;
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role == BindingRole::kWeight)
      ++numWeights;
    if (bind.role == BindingRole::kInput)
      inputNames.insert(bind.name);
  }
  if (numWeights != 0 && !weightsLoaded_)
    return invalid("the plan has " + std::to_string(numWeights) +
                   " weights but none were loaded (give a weights file)");

  // Check all inputs before writing any, then copy them in.
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role != BindingRole::kInput)
      continue;
    const TensorType &expected = plan.tensors[bind.tensor].type;
    const HostTensor *in = inputs.find(bind.name);
    if (!in)
      return invalid("missing input '" + bind.name + "' (expected " +
                     expected.toString() + ")");
    if (in->type != expected)
      return invalid("input '" + bind.name + "': expected " +
                     expected.toString() + ", got " + in->type.toString());
    if (in->bytes.size() != expected.sizeBytes())
      return invalid("input '" + bind.name + "' has " +
                     std::to_string(in->bytes.size()) + " bytes, expected " +
                     std::to_string(expected.sizeBytes()));
  }
  for (const auto &entry : inputs.tensors) {
    if (inputNames.count(entry.first))
      continue;
    std::string known;
    for (const std::string &name : inputNames)
      known += (known.empty() ? "" : ", ") + name;
    return invalid(
        "unexpected input '" + entry.first +
        "' (the plan's inputs are: " + (known.empty() ? "none" : known) + ")");
  }
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role != BindingRole::kInput)
      continue;
    const HostTensor *in = inputs.find(bind.name);
    if (!in->bytes.empty())
      std::memcpy(tensorData(bind.tensor), in->bytes.data(), in->bytes.size());
  }

  std::vector<TensorRef> ins, outs;
  for (size_t i = 0; i < plan.instrs.size(); ++i) {
    const PlanInstr &instr = plan.instrs[i];
    ins.clear();
    outs.clear();
    for (uint32_t t : instr.inputs)
      ins.push_back(TensorRef{plan.tensors[t].type, tensorData(t)});
    for (uint32_t t : instr.outputs)
      outs.push_back(TensorRef{plan.tensors[t].type, tensorData(t)});
    Status st = runCpuKernel(instr.attrs, ins, outs);
    if (!st.isOk()) {
      std::string where = "instruction " + std::to_string(i) + " (" +
                          std::string(opInfo(instr.attrs.kind()).name);
      if (!instr.location.empty())
        where += " at " + instr.location;
      return Status(st.code(), where + "): " + st.message());
    }
  }

  outputs = SafetensorsFile();
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role != BindingRole::kOutput)
      continue;
    HostTensor out(plan.tensors[bind.tensor].type);
    if (!out.bytes.empty())
      std::memcpy(out.bytes.data(), tensorData(bind.tensor), out.bytes.size());
    outputs.tensors.emplace_back(bind.name, std::move(out));
  }
  return Status::ok();
}

} // namespace colossal::runtime
