//===- Executor.h - Runs a validated plan on the CPU or a GPU ---*- C++ -*-===//
//
// The executor is thin: it allocates each arena once, places every tensor at
// the offset the plan gives, copies weights, constants and inputs into their
// tensors, runs the instructions of a program in order and reads the outputs.
// It makes no decisions of its own.
//
// Where the arenas live and how an instruction runs is its backend's part
// (setDevice): the CPU backend (default; the reference kernels of Kernels.h)
// or, in a build with the CUDA toolkit, the CUDA backend (arenas in GPU
// memory, docs/cuda.md). Everything else, including the training loop, is
// the same code for both.
//
// Training plans have two programs run in a fixed pattern (trainStep): per
// optimizer step, `micro_step` once per micro-batch (it adds count x gradient
// into the `grad.*` states), then `apply_step` once (the optimizer update in
// place on the weights and the optimizer states). Weights and states persist
// between programs and steps; checkpoints save and restore them.
//
// Check-plan mode (setCheckPlan, `colossal-run --check-plan`) verifies the
// compiler's live ranges while it runs: operands must be live, dead buffers
// are poisoned with NaN, and the bytes touched are measured against the
// planned arena size.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_EXECUTOR_H
#define COLOSSAL_RUNTIME_EXECUTOR_H

#include "colossal/runtime/PlanFormat.h"
#include "colossal/runtime/Safetensors.h"
#include "colossal/runtime/Status.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace colossal::runtime {

class Backend;

/// Where an Executor keeps its arenas and runs its kernels.
enum class Device : uint8_t {
  kCpu = 0,  ///< host memory, the reference kernels (always built)
  kCuda = 1, ///< GPU memory, CUDA kernels and cuBLASLt (CUDA builds only)
};
/// "cpu", "cuda".
const char *deviceName(Device device);
/// The Device named "cpu" or "cuda"; nothing for any other text.
std::optional<Device> parseDevice(std::string_view name);
/// True when this binary has the backend of `device` (kCpu always; kCuda
/// when the CUDA backend was built and linked in). Says nothing about
/// whether a GPU is visible: Executor::setDevice() checks that.
bool deviceBuiltIn(Device device);

/// The programs of `plan` as the executor sees them: plan.programs, or, for a
/// plan without any (format 1.0), one `forward` over every instruction.
std::vector<PlanProgram> effectivePrograms(const Plan &plan);
/// True when `plan` has the `micro_step` and `apply_step` programs, or the
/// fused `train_step`.
bool isTrainingPlan(const Plan &plan);
/// True for a plan whose one program, train_step, also applies the updates
/// (no gradient accumulation, no --dump-grads).
bool isFusedTrainingPlan(const Plan &plan);
/// True when binding `bind` (an input or output) belongs to program `index`
/// of effectivePrograms(): its program is `index` or kAllPrograms.
bool bindingInProgram(const PlanBinding &bind, uint32_t index);

/// A hash of what a checkpoint depends on: every binding's role, name,
/// program, dtype and shape, and every instruction's kind, in plan order
/// (not offsets, so a plan re-compiled under another memory budget still
/// matches when the computation is the same). 16 lowercase hex digits of
/// FNV-1a 64 over a canonical byte string (docs/colossal-run.md).
std::string planFingerprint(const Plan &plan);

/// What one optimizer step (Executor::trainStep) reports.
struct TrainStepStats {
  /// sum(loss x count) / sum(count) over the micro-batches: the mean over
  /// every scored label of the full batch (NaN when none was scored).
  double loss = 0.0;
  /// Scored labels of the full batch: the sum of the micro-steps' `__count`.
  double countTotal = 0.0;
  /// Micro-batches the batch was split into (grad_accum).
  int64_t microSteps = 0;
  /// apply_step's `grad_norm` and `lr` outputs, when it has them.
  std::optional<double> gradNorm, lr;
};

/// What check-plan mode (Executor::setCheckPlan) measured for one arena.
struct ArenaCheck {
  MemorySpace space = MemorySpace::kDevice;
  /// PlanArena::sizeBytes: what the plan allocates.
  uint64_t plannedBytes = 0;
  /// High-water mark of the bytes in use: the largest offset + size of a
  /// buffer that an executed instruction read or wrote, that a binding
  /// filled (weights, states, constants, program inputs) or that was read
  /// as a program output. Equals plannedBytes for a tight plan.
  uint64_t touchedBytes = 0;
  /// The largest sum of the sizes of the buffers live at one executed
  /// instruction: what any packing of these live ranges needs at least
  /// (the compiler's "liveness lower bound"). plannedBytes / livePeakBytes
  /// is the packing overhead.
  uint64_t livePeakBytes = 0;
};

class Executor {
public:
  /// An executor on the CPU backend.
  Executor();
  ~Executor();
  Executor(Executor &&) noexcept;
  Executor &operator=(Executor &&) noexcept;
  Executor(const Executor &) = delete;
  Executor &operator=(const Executor &) = delete;

  /// Selects the backend: where the arenas live and the kernels run. Call it
  /// before prepare(); it drops a prepared plan. kUnsupported, naming the
  /// reason, when this build has no backend for `device` or the device is
  /// not usable (no GPU visible); the executor keeps its backend then.
  Status setDevice(Device device);
  Device device() const;

  /// Check-plan mode (`colossal-run --check-plan`), off by default: the
  /// executor verifies that the plan's live ranges tell the truth. Call it
  /// before prepare(); it takes effect there. When on:
  ///  - prepare() fails (kCorruptPlan) when two buffers of an arena share
  ///    bytes while both are live, when a weight, state or constant buffer
  ///    is not live over every instruction, when a program input's buffer is
  ///    not live at its program's first instruction or an output's at its
  ///    last; and it fills every arena with the poison pattern (below)
  ///    before it writes the constants and states.
  ///  - before instruction i runs, every operand's buffer must be live at i
  ///    (liveStart <= i <= liveEnd), else the run fails naming the
  ///    instruction, the tensor and the buffer's live range.
  ///  - after instruction i, every buffer whose liveEnd is i is poisoned,
  ///    except persistent ones (weights, states, constants) and outputs of
  ///    the running program, which are poisoned once they are copied out.
  ///    Poison is 0xFF in every byte: a NaN for every float width, -1 for
  ///    signed integers. A plan that reuses bytes too early, or reads a
  ///    buffer before writing it, computes NaN.
  ///  - planCheck() reports, per arena, the bytes touched and the live peak;
  ///    verifyPlanPeak() compares them with the plan.
  /// Outputs read with readBinding() after a run are poisoned then: use the
  /// `outputs` that run() and runProgram() return.
  void setCheckPlan(bool on) { checkPlan_ = on; }
  bool checkPlan() const { return checkPlan_; }
  /// Check-plan measurements since prepare(), one per arena in plan order;
  /// empty unless check-plan mode was on at prepare().
  std::vector<ArenaCheck> planCheck() const;
  /// Ok when every arena's touched bytes equal its planned size. Fewer is
  /// kCorruptPlan (the plan over-allocates: no executed instruction and no
  /// binding uses the last bytes); more is kInternal (validation keeps every
  /// buffer inside its arena). Both messages name the two numbers. Ok when
  /// check-plan mode is off. Call it after the runs that should cover the
  /// arena (a forward run; a training step runs both programs).
  Status verifyPlanPeak() const;

  /// Takes a plan that readPlan()/validatePlan() accepted; allocates the
  /// arenas, writes the constants and zero-fills every kState binding. The
  /// executor keeps a pointer to `plan`, which must outlive it (or the next
  /// prepare()).
  Status prepare(const Plan &plan);
  /// Copies every kWeight binding from `weights`; a missing name, or a dtype
  /// or shape different from the plan's, is an error naming the tensor.
  Status loadWeights(const SafetensorsFile &weights);
  /// Initialises every kWeight binding by its InitKind instead: zeros, ones,
  /// or N(0, initScale^2) drawn from a generator keyed by (seed, weight
  /// name), so that the same seed gives the same bytes on every platform and
  /// adding a weight does not change the others (docs/colossal-run.md gives
  /// the algorithm). A weight without a rule is an error naming it, and no
  /// weight is written then.
  Status initWeights(uint64_t seed);

  /// Runs the plan's only program (a forward plan): `inputs` must hold every
  /// kInput binding with the planned dtype and shape (extra names are an
  /// error too: a typo must not pass silently). `outputs` receives every
  /// kOutput binding. A plan with several programs needs runProgram().
  Status run(const SafetensorsFile &inputs, SafetensorsFile &outputs);
  /// Runs one program by name (see effectivePrograms()). `inputs` must hold
  /// exactly the program's kInput bindings, as for run(), except that the
  /// reserved names `__step` and `__count_total` may be given to a program
  /// that does not read them. `outputs` receives the program's kOutput
  /// bindings, in binding order. Weights and states carry over from the
  /// previous program.
  Status runProgram(const std::string &name, const SafetensorsFile &inputs,
                    SafetensorsFile &outputs);
  /// One optimizer step of a training plan. `batch` holds every user input
  /// of micro_step (not the reserved `__*` names) with the planned dtype and
  /// dims, except dim 0, which must be the same multiple G of the planned dim
  /// 0 for every input: the batch is split along dim 0 into G micro-batches,
  /// micro_step runs on each (with `__step` = step if it reads it), then
  /// apply_step with `__step` = step and `__count_total` = the sum of the
  /// micro-steps' `__count`. With `gradsBeforeApply`, it receives every
  /// state named `grad.<p>` divided by `__count_total`, keyed by `<p>`, as
  /// it was after the micro-steps and before apply_step (f32, or f64 for an
  /// f64 state).
  Status trainStep(uint64_t step, const SafetensorsFile &batch,
                   TrainStepStats &stats,
                   SafetensorsFile *gradsBeforeApply = nullptr);
  /// Waits for every stream, the carried ones too: the host updates of a
  /// plan whose updates run across the step boundary
  /// (Plan::carriedStreams) are still in flight when trainStep() returns,
  /// and a failure one of them found is reported here (or by the next
  /// step). Reading a weight or state (readBinding, checkpoints, exports)
  /// waits for them by itself.
  Status drain();

  /// The tensor of the binding with this role and name, pointing into the
  /// arena (valid until the next prepare()): host memory on the CPU backend,
  /// device memory on the CUDA backend (read it with readBinding() there). For inputs and outputs, names
  /// may repeat across programs; the first binding in plan order is taken.
  /// An unknown name is kNotFound.
  Status bindingTensor(BindingRole role, const std::string &name,
                       TensorRef &out) const;
  /// A copy of a binding's current bytes.
  Status readBinding(BindingRole role, const std::string &name,
                     HostTensor &out) const;
  /// Overwrites a binding's bytes; `value` must have its dtype and shape.
  Status writeBinding(BindingRole role, const std::string &name,
                      const HostTensor &value);

  /// Writes every kWeight and kState binding, under its binding name and in
  /// binding order, to a safetensors file (temporary file + rename), with
  /// metadata {"format": "colossal-checkpoint", "step": "<step>",
  /// "plan_fingerprint": planFingerprint(), "train_config": trainConfig}.
  /// `step` is the number of optimizer steps done (the next step to run).
  Status saveCheckpoint(const std::string &path, uint64_t step) const;
  /// Restores a checkpoint written by saveCheckpoint() for this plan: the
  /// format, then every weight and state (present, same dtype and shape, no
  /// extra tensor; errors name the tensor), then the plan fingerprint are
  /// checked before any byte is written. `step` receives the saved step;
  /// `trainConfig`, when given, the saved train config (colossal-run warns
  /// when it differs from the plan's).
  Status loadCheckpoint(const std::string &path, uint64_t *step,
                        std::string *trainConfig = nullptr);

  /// Bytes allocated for each arena, in plan order.
  std::vector<uint64_t> arenaBytes() const;

  /// Tracing (`colossal-run --trace`), off by default. When on, every
  /// instruction run is recorded with its stream, start and duration:
  /// timed by the backend where it runs asynchronously (CUDA events around
  /// each instruction, on its stream), else by the wall clock around the
  /// kernel call (CPU). `onlyStep` >= 0 records the programs of that
  /// trainStep() only (run() and runProgram() outside trainStep() count as
  /// step 0). Call it before prepare(); prepare() keeps the records of
  /// earlier runs, setTrace() clears them.
  void setTrace(bool on, int64_t onlyStep = -1);
  bool tracing() const { return trace_; }
  /// Writes the recorded instructions as Chrome trace / Perfetto JSON
  /// (docs/colossal-run.md): one track per plan stream, named by its kind,
  /// one complete ("X") slice per instruction run, named by its op and ONNX
  /// location, with the instruction, program, step and, for copies, the
  /// bytes as args. Times are microseconds since setTrace().
  Status writeTrace(const std::string &path) const;

private:
  /// Address of a plan tensor in backend memory (see Backend::arenaBase).
  void *tensorData(uint32_t tensorIndex) const;
  /// Drops the prepared plan and frees the arenas.
  void reset();
  const PlanBinding *findBinding(BindingRole role,
                                 const std::string &name) const;
  Status runInstructions(uint32_t first, uint32_t count);
  /// "instruction 17 (matmul at node_MatMul_45)".
  std::string describeInstr(uint64_t index) const;

  // Check-plan mode (setCheckPlan).
  Status startPlanCheck();
  Status checkOperandsLive(uint64_t index);
  void touchBuffer(uint32_t buffer);
  Status poisonBuffer(uint32_t buffer);

  std::unique_ptr<Backend> backend_;
  const Plan *plan_ = nullptr;
  std::vector<PlanProgram> programs_;
  bool weightsLoaded_ = false;

  bool checkPlan_ = false; ///< requested (setCheckPlan)
  bool checking_ = false;  ///< on since the last prepare()
  std::vector<bool> persistentBuffer_, touchedBuffer_;
  /// Per buffer: an output of the program now running (poisoned after it).
  std::vector<bool> programOutputBuffer_;
  /// Per instruction: the non-persistent buffers whose liveEnd it is.
  std::vector<std::vector<uint32_t>> diesAfter_;
  /// Per arena, per instruction: the bytes of the buffers live there.
  std::vector<std::vector<uint64_t>> liveBytesAt_;
  std::vector<ArenaCheck> arenaChecks_;

  // Tracing (setTrace).
  struct TraceRecord {
    uint64_t instr;
    uint64_t step;
    double startUs, durationUs;
  };
  bool traceActive() const {
    return trace_ && (traceOnlyStep_ < 0 ||
                      static_cast<uint64_t>(traceOnlyStep_) == traceStep_);
  }
  bool trace_ = false;
  int64_t traceOnlyStep_ = -1;
  uint64_t traceStep_ = 0; ///< the trainStep() running (0 outside one)
  int64_t traceOriginNs_ = 0;
  std::vector<TraceRecord> traceRecords_;
};

/// The executor's name from before it had backends; an Executor is on the
/// CPU backend unless setDevice() says otherwise.
using CpuExecutor = Executor;

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_EXECUTOR_H
