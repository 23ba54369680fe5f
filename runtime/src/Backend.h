//===- Backend.h - Where arenas live and how an instruction runs --*- C++
//-*-===//
//
// Internal to the runtime (not installed, not included by public headers).
// The Executor (Executor.cpp) does everything a plan asks on the host: plan
// bookkeeping, bindings, the training loop, checkpoints, check-plan. A
// Backend owns the memory of the arenas and runs one instruction at a time:
//
//   allocateArenas   once per prepare(): one allocation per plan arena
//   arenaBase        the base address of an arena in the backend's memory
//                    (a host pointer on the CPU, a device pointer on CUDA);
//                    the executor adds buffer and tensor offsets to it and
//                    never dereferences the result itself
//   upload/download  host bytes to and from backend memory
//   fill             a byte pattern over backend memory (zeroing, poison)
//   run              runs, or enqueues, one instruction
//   synchronize      waits for everything enqueued and reports a failure
//                    that an enqueued kernel detected (an index out of range)
//   synchronizeStep  the same at a program's end, except for the plan's
//                    carried streams (Plan::carriedStreams), whose work runs
//                    on under the next program; a backend that runs in plan
//                    order has nothing left in flight
//   enableTracing,   optional (colossal-run --trace): a backend that runs
//   traceBegin/End   asynchronously times its own instructions (the CUDA
//                    backend with events); the defaults leave timing to the
//                    executor's wall clock, right for a synchronous backend
//
// Backends are created by createBackend(); the CUDA backend registers its
// factory from its own object files (src/cuda/CudaBackend.cpp), so that
// colossal_runtime itself never depends on CUDA.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_BACKEND_H
#define COLOSSAL_RUNTIME_BACKEND_H

#include "colossal/runtime/Executor.h"
#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace colossal::runtime {

/// One instruction run as a backend timed it (traceEnd).
struct TraceSlice {
  uint64_t instr = 0;
  /// Start and length in microseconds, the start relative to the moment
  /// traceBegin() was called.
  double startUs = 0.0;
  double durationUs = 0.0;
};

class Backend {
public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;

  /// Allocates one zero-filled region per arena, `sizeBytes` long and aligned
  /// to at least `alignBytes`, replacing any earlier arenas. On failure no
  /// arena is held.
  virtual Status allocateArenas(const std::vector<PlanArena> &arenas) = 0;
  /// Frees the arenas (pointers from arenaBase() die).
  virtual void releaseArenas() = 0;
  /// Base address of arena `index`, valid until the next allocateArenas() or
  /// releaseArenas(). Never null, also for an arena of 0 bytes.
  virtual uint8_t *arenaBase(size_t index) const = 0;
  /// Called by prepare() after allocateArenas() with the validated plan, so
  /// that a backend can size its own scratch memory once (the CUDA backend's
  /// workspace) instead of deciding anything while the plan runs.
  virtual Status preparePlan(const Plan &plan) {
    (void)plan;
    return Status::ok();
  }

  /// Copies `bytes` host bytes to backend memory `dst` (inside an arena).
  virtual Status upload(void *dst, const void *src, size_t bytes) = 0;
  /// Copies `bytes` from backend memory `src` to the host; complete on return
  /// (everything enqueued before has run).
  virtual Status download(void *dst, const void *src, size_t bytes) = 0;
  /// Sets `bytes` bytes of backend memory to `value`.
  virtual Status fill(void *dst, uint8_t value, size_t bytes) = 0;

  /// Runs instruction `index` of the plan on tensors inside the arenas, with
  /// the types the plan gives (validated: inferOutputTypes holds). A failure
  /// found at once is returned; the executor prefixes the instruction. A
  /// backend that runs asynchronously may instead record a data-dependent
  /// failure and return it from synchronize().
  virtual Status run(uint64_t index, const PlanInstr &instr,
                     const std::vector<TensorRef> &inputs,
                     const std::vector<TensorRef> &outputs) = 0;
  /// Waits until everything enqueued has run. Returns the first recorded
  /// kernel failure, with `*failedInstr` set to its instruction index, or an
  /// asynchronous error of the device (`*failedInstr` = UINT64_MAX when no
  /// instruction can be named). Clears the recorded failure.
  virtual Status synchronize(uint64_t *failedInstr) = 0;
  /// synchronize() but for the carried streams' work (the executor's call
  /// at each program's end; Plan::carriedStreams). A failure that work
  /// finds is reported by a later call.
  virtual Status synchronizeStep(uint64_t *failedInstr) {
    return synchronize(failedInstr);
  }

  // ---- Tracing (Executor::setTrace, `colossal-run --trace`) ---------------
  /// Called by Executor::setTrace(), before prepare(): a backend that times
  /// its own instructions creates what it needs (the CUDA backend's timing
  /// events) in the next preparePlan(), never while a program runs.
  virtual void enableTracing(bool on) { (void)on; }
  /// Called before the instructions of a traced program run. True when the
  /// backend times them itself (then traceEnd() reports the times); false
  /// (the default) lets the executor time each run() with the wall clock.
  virtual bool traceBegin() { return false; }
  /// Called after synchronize() returned ok for a traced program: appends
  /// one slice per instruction that run() executed since traceBegin().
  virtual Status traceEnd(std::vector<TraceSlice> &slices) {
    (void)slices;
    return Status::ok();
  }
};

/// The CPU backend: arenas from calloc, kernels from runCpuKernel().
std::unique_ptr<Backend> createCpuBackend();

using BackendFactory = Status (*)(std::unique_ptr<Backend> &out);
/// Registers the factory of a device's backend (the CUDA backend does so from
/// a static initializer in its own object files).
void registerBackendFactory(Device device, BackendFactory factory);
/// Creates the backend of `device`: kUnsupported naming why when this build
/// has none, or when the device is not usable (no GPU visible).
Status createBackend(Device device, std::unique_ptr<Backend> &out);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_BACKEND_H
