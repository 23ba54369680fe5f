//===- Executor.h - Runs a validated plan on the CPU backend ------*- C++ -*-===//
//
// The executor is thin: it allocates each arena once, places every tensor at
// the offset the plan gives, copies weights, constants and inputs into their
// tensors, runs the instructions in order and reads the outputs. It makes no
// decisions of its own.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_EXECUTOR_H
#define COLOSSAL_RUNTIME_EXECUTOR_H

#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Safetensors.h"
#include "colossal/runtime/Status.h"

#include <map>
#include <memory>
#include <string>

namespace colossal::runtime {

class CpuExecutor {
public:
  /// Takes a plan that readPlan()/validatePlan() accepted; allocates the
  /// arenas and writes the constants. The executor keeps a pointer to
  /// `plan`, which must outlive it (or the next prepare()).
  Status prepare(const Plan &plan);
  /// Copies every kWeight binding from `weights`; a missing name, or a dtype
  /// or shape different from the plan's, is an error naming the tensor.
  Status loadWeights(const SafetensorsFile &weights);
  /// Runs one step: `inputs` must hold every kInput binding with the planned
  /// dtype and shape (extra names are an error too: a typo must not pass
  /// silently). `outputs` receives every kOutput binding.
  Status run(const SafetensorsFile &inputs, SafetensorsFile &outputs);

  /// Bytes allocated for each arena, in plan order.
  std::vector<uint64_t> arenaBytes() const;

private:
  void *tensorData(uint32_t tensorIndex) const;

  const Plan *plan_ = nullptr;
  std::vector<std::unique_ptr<uint8_t[], void (*)(void *)>> arenas_;
  std::vector<uint8_t *> arenaBase_;
  bool weightsLoaded_ = false;
};

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_EXECUTOR_H
