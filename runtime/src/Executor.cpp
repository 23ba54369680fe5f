//===- Executor.cpp - Run a validated plan on a backend -------------------===//
//
// Arenas are allocated once in prepare() and never resized: every tensor
// lives at arena base + buffer offset + tensor byte offset, exactly as the
// plan says. Weights and states persist across programs and run() calls (a
// training step updates them in place); inputs are copied in and outputs
// copied out on each program run.
//
// The arenas belong to the backend (Backend.h): this file computes addresses
// in them but touches their bytes only through the backend's upload,
// download and fill, so the same code drives host and GPU memory.
//
// This file is compiled with -ffp-contract=off (runtime/CMakeLists.txt):
// the weight initialiser must give the same bytes on every platform, and a
// fused multiply-add would round differently from a multiply then an add.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Executor.h"

#include "Backend.h"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <set>

namespace colossal::runtime {

namespace {

Status invalid(const std::string &message) {
  return Status(StatusCode::kInvalidArgument, message);
}

std::string quoted(const std::string &s) { return "'" + s + "'"; }

bool isReservedInput(const std::string &name) {
  return name == kStepInputName || name == kCountTotalInputName;
}

uint64_t fnv1a64(const void *data, size_t size, uint64_t hash) {
  const uint8_t *p = static_cast<const uint8_t *>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= p[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;

//===----------------------------------------------------------------------===//
// The weight initialiser's random numbers
//
// Everything below uses integer arithmetic and the IEEE-754 basic operations
// (+ - * / sqrt, correctly rounded everywhere) in double, never the C
// library's log/sin/cos (whose last bit differs between platforms), so the
// same seed gives the same bytes on every machine.
//===----------------------------------------------------------------------===//

/// splitmix64 (Steele, Lea, Flood 2014): a 64-bit counter stepped by the
/// golden-ratio increment, then a bijective mix.
uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// Natural log of s in (0, 1], good to a few ulps and bit-reproducible:
/// s = m * 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(r) with
/// r = (m - 1) / (m + 1), |r| < 0.172, summed to r^29 (the next term is
/// below 2^-75 of the result).
double reproducibleLog(double s) {
  int e = 0;
  double m = std::frexp(s, &e); // exact: m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m *= 2.0;
    e -= 1;
  }
  double r = (m - 1.0) / (m + 1.0);
  double r2 = r * r;
  double sum = 1.0 / 29.0;
  for (int k = 27; k >= 1; k -= 2)
    sum = sum * r2 + 1.0 / static_cast<double>(k);
  double logM = 2.0 * r * sum;
  // ln 2 split so that e * kLn2Hi is exact for |e| < 2^11.
  const double kLn2Hi = 6.93147180369123816490e-01;
  const double kLn2Lo = 1.90821492927058770002e-10;
  return static_cast<double>(e) * kLn2Hi +
         (static_cast<double>(e) * kLn2Lo + logM);
}

/// Standard normal pairs by Marsaglia's polar method (the rejection form of
/// Box-Muller): u, v uniform in [-1, 1) from the top 53 bits of two
/// splitmix64 outputs, rejected unless 0 < s = u^2 + v^2 < 1, then
/// (u, v) * sqrt(-2 log(s) / s).
class NormalStream {
public:
  explicit NormalStream(uint64_t state) : state_(state) {}
  double next() {
    if (hasSpare_) {
      hasSpare_ = false;
      return spare_;
    }
    for (;;) {
      double u = uniform() * 2.0 - 1.0;
      double v = uniform() * 2.0 - 1.0;
      double s = u * u + v * v;
      if (s >= 1.0 || s == 0.0)
        continue;
      double f = std::sqrt(-2.0 * reproducibleLog(s) / s);
      spare_ = v * f;
      hasSpare_ = true;
      return u * f;
    }
  }

private:
  double uniform() {
    return static_cast<double>(splitmix64(state_) >> 11) *
           (1.0 / 9007199254740992.0); // 2^-53
  }
  uint64_t state_;
  double spare_ = 0.0;
  bool hasSpare_ = false;
};

} // namespace

//===----------------------------------------------------------------------===//
// Plan helpers
//===----------------------------------------------------------------------===//

std::vector<PlanProgram> effectivePrograms(const Plan &plan) {
  if (!plan.programs.empty())
    return plan.programs;
  PlanProgram all;
  all.name = kForwardProgram;
  all.firstInstr = 0;
  all.numInstrs = static_cast<uint32_t>(plan.instrs.size());
  return {all};
}

bool isTrainingPlan(const Plan &plan) {
  bool micro = false, apply = false, fused = false;
  for (const PlanProgram &prog : plan.programs) {
    micro |= prog.name == kMicroStepProgram;
    apply |= prog.name == kApplyStepProgram;
    fused |= prog.name == kTrainStepProgram;
  }
  return (micro && apply) || fused;
}

bool isFusedTrainingPlan(const Plan &plan) {
  return plan.programs.size() == 1 &&
         plan.programs[0].name == kTrainStepProgram;
}

bool bindingInProgram(const PlanBinding &bind, uint32_t index) {
  return bind.program == kAllPrograms || bind.program == index;
}

std::string planFingerprint(const Plan &plan) {
  // Canonical text, one line per record; names cannot contain '\n' in a way
  // that matters (a name with '\n' still hashes deterministically).
  std::string text = "colossal-plan-fingerprint 1\n";
  for (const PlanProgram &prog : plan.programs)
    text += "program " + prog.name + "\n";
  for (const PlanBinding &bind : plan.bindings) {
    const TensorType &type = plan.tensors[bind.tensor].type;
    text += "binding " + std::to_string(static_cast<unsigned>(bind.role)) +
            " " + std::to_string(bind.program) + " " + bind.name + " " +
            type.toString() + "\n";
  }
  for (const PlanInstr &instr : plan.instrs)
    text += "instr " +
            std::to_string(static_cast<uint32_t>(instr.attrs.kind())) + "\n";
  uint64_t hash = fnv1a64(text.data(), text.size(), kFnvOffset);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(hash));
  return hex;
}

//===----------------------------------------------------------------------===//
// Devices and backends
//===----------------------------------------------------------------------===//

namespace {

BackendFactory &factorySlot(Device device) {
  static BackendFactory cuda = nullptr;
  static BackendFactory none = nullptr;
  return device == Device::kCuda ? cuda : none;
}

} // namespace

const char *deviceName(Device device) {
  switch (device) {
  case Device::kCpu:
    return "cpu";
  case Device::kCuda:
    return "cuda";
  }
  return "?";
}

std::optional<Device> parseDevice(std::string_view name) {
  if (name == "cpu")
    return Device::kCpu;
  if (name == "cuda")
    return Device::kCuda;
  return std::nullopt;
}

void registerBackendFactory(Device device, BackendFactory factory) {
  if (device != Device::kCpu)
    factorySlot(device) = factory;
}

bool deviceBuiltIn(Device device) {
  return device == Device::kCpu || factorySlot(device) != nullptr;
}

Status createBackend(Device device, std::unique_ptr<Backend> &out) {
  if (device == Device::kCpu) {
    out = createCpuBackend();
    return Status::ok();
  }
  BackendFactory factory = factorySlot(device);
  if (!factory)
    return Status(StatusCode::kUnsupported,
                  std::string("this build has no ") + deviceName(device) +
                      " backend (configure with -DCOLOSSAL_ENABLE_CUDA=ON "
                      "where the CUDA toolkit is installed)");
  return factory(out);
}

//===----------------------------------------------------------------------===//
// Executor
//===----------------------------------------------------------------------===//

Executor::Executor() : backend_(createCpuBackend()) {}
Executor::~Executor() = default;
Executor::Executor(Executor &&) noexcept = default;
Executor &Executor::operator=(Executor &&) noexcept = default;

Status Executor::setDevice(Device device) {
  if (backend_ && backend_->device() == device)
    return Status::ok();
  std::unique_ptr<Backend> backend;
  COLOSSAL_RETURN_IF_ERROR(createBackend(device, backend));
  reset();
  backend_ = std::move(backend);
  return Status::ok();
}

Device Executor::device() const { return backend_->device(); }

void Executor::reset() {
  plan_ = nullptr;
  programs_.clear();
  backend_->releaseArenas();
  weightsLoaded_ = false;
  checking_ = false;
  arenaChecks_.clear();
}

Status Executor::prepare(const Plan &plan) {
  reset();
  // The runtime never trusts a plan, even one built in memory: validation
  // is what makes every address computed below fall inside an arena.
  COLOSSAL_RETURN_IF_ERROR(validatePlan(plan));

  COLOSSAL_RETURN_IF_ERROR(backend_->allocateArenas(plan.arenas));
  plan_ = &plan;
  programs_ = effectivePrograms(plan);
  Status st = backend_->preparePlan(plan);
  if (st.isOk() && checkPlan_)
    st = startPlanCheck();

  for (size_t b = 0; st.isOk() && b < plan.bindings.size(); ++b) {
    const PlanBinding &bind = plan.bindings[b];
    if (bind.role == BindingRole::kConstant && !bind.data.empty())
      st = backend_->upload(tensorData(bind.tensor), bind.data.data(),
                            bind.data.size());
    // The arena is zeroed already; the explicit fill states the contract
    // (accumulated gradients and optimizer moments start at zero).
    if (bind.role == BindingRole::kState)
      st = backend_->fill(tensorData(bind.tensor), 0,
                          plan.tensors[bind.tensor].type.sizeBytes());
  }
  if (!st.isOk())
    reset();
  return st;
}

void *Executor::tensorData(uint32_t tensorIndex) const {
  const PlanTensor &tensor = plan_->tensors[tensorIndex];
  const PlanBuffer &buffer = plan_->buffers[tensor.buffer];
  return backend_->arenaBase(buffer.arena) + buffer.offsetBytes +
         tensor.byteOffset;
}

std::vector<uint64_t> Executor::arenaBytes() const {
  std::vector<uint64_t> bytes;
  if (plan_)
    for (const PlanArena &arena : plan_->arenas)
      bytes.push_back(arena.sizeBytes);
  return bytes;
}

Status Executor::loadWeights(const SafetensorsFile &weights) {
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
    COLOSSAL_RETURN_IF_ERROR(backend_->upload(
        tensorData(bind.tensor), w->bytes.data(), w->bytes.size()));
  }
  weightsLoaded_ = true;
  return Status::ok();
}

Status Executor::initWeights(uint64_t seed) {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "initWeights() called before a successful prepare()");
  for (const PlanBinding &bind : plan_->bindings)
    if (bind.role == BindingRole::kWeight && bind.init == InitKind::kNone)
      return invalid("weight '" + bind.name +
                     "' has no init rule; give --weights FILE");
  std::vector<const PlanBinding *> weights;
  for (const PlanBinding &bind : plan_->bindings)
    if (bind.role == BindingRole::kWeight)
      weights.push_back(&bind);
  // Each weight is drawn on the host by its own sequential generator (its
  // values do not depend on the others), so weights are drawn on several
  // threads, at most `ahead` past the one being uploaded (host memory
  // stays bounded), and uploaded in plan order on this thread. A 6.7b
  // model's 6.7G normal draws take minutes on one core.
  auto draw = [&](const PlanBinding &bind) {
    const TensorType &type = plan_->tensors[bind.tensor].type;
    auto value = std::make_unique<HostTensor>(type);
    TensorRef ref = value->ref();
    int64_t n = type.numElements();
    switch (bind.init) {
    case InitKind::kNone:
      break; // rejected above
    case InitKind::kZeros:
      break; // HostTensor starts zeroed
    case InitKind::kOnes:
      for (int64_t i = 0; i < n; ++i)
        storeFromDouble(ref, i, 1.0);
      break;
    case InitKind::kNormal: {
      // One stream per weight, keyed by its name: adding or reordering
      // weights leaves the others' values unchanged.
      NormalStream normal(
          seed ^ fnv1a64(bind.name.data(), bind.name.size(), kFnvOffset));
      if (type.dtype == DType::kF32) {
        float *out = static_cast<float *>(ref.data);
        for (int64_t i = 0; i < n; ++i)
          out[i] = static_cast<float>(bind.initScale * normal.next());
      } else {
        for (int64_t i = 0; i < n; ++i)
          storeFromDouble(ref, i, bind.initScale * normal.next());
      }
      break;
    }
    }
    return value;
  };
  const size_t count = weights.size();
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
  if (const char *env = std::getenv("COLOSSAL_CPU_THREADS"))
    threads = static_cast<size_t>(std::max(1, std::atoi(env)));
  threads = std::min(threads, count);
  const size_t ahead = 2 * threads;
  std::vector<std::unique_ptr<HostTensor>> drawn(count);
  std::mutex mutex;
  std::condition_variable changed;
  size_t next = 0, uploaded = 0;
  bool stop = false;
  auto worker = [&] {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      changed.wait(lock, [&] {
        return stop || next >= count || next < uploaded + ahead;
      });
      if (stop || next >= count)
        return;
      size_t i = next++;
      lock.unlock();
      std::unique_ptr<HostTensor> value = draw(*weights[i]);
      lock.lock();
      drawn[i] = std::move(value);
      changed.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t)
    pool.emplace_back(worker);
  Status status = Status::ok();
  for (size_t i = 0; i < count && status.isOk(); ++i) {
    std::unique_ptr<HostTensor> value;
    {
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] { return drawn[i] != nullptr; });
      value = std::move(drawn[i]);
    }
    status = backend_->upload(tensorData(weights[i]->tensor),
                              value->bytes.data(), value->bytes.size());
    std::lock_guard<std::mutex> lock(mutex);
    uploaded = i + 1;
    changed.notify_all();
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    stop = true;
  }
  changed.notify_all();
  for (std::thread &t : pool)
    t.join();
  COLOSSAL_RETURN_IF_ERROR(status);
  weightsLoaded_ = true;
  return Status::ok();
}

Status Executor::run(const SafetensorsFile &inputs,
                        SafetensorsFile &outputs) {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "run() called before a successful prepare()");
  if (programs_.size() != 1) {
    std::string names;
    for (const PlanProgram &prog : programs_)
      names += (names.empty() ? "" : ", ") + prog.name;
    return invalid("the plan has " + std::to_string(programs_.size()) +
                   " programs (" + names + "); run one by name");
  }
  return runProgram(programs_[0].name, inputs, outputs);
}

Status Executor::runProgram(const std::string &name,
                               const SafetensorsFile &inputs,
                               SafetensorsFile &outputs) {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "runProgram() called before a successful prepare()");
  const Plan &plan = *plan_;
  uint32_t index = 0;
  while (index < programs_.size() && programs_[index].name != name)
    ++index;
  if (index == programs_.size()) {
    std::string names;
    for (const PlanProgram &prog : programs_)
      names += (names.empty() ? "" : ", ") + prog.name;
    return invalid("the plan has no program '" + name + "' (it has " + names +
                   ")");
  }
  const PlanProgram &program = programs_[index];

  size_t numWeights = 0;
  std::set<std::string> inputNames;
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role == BindingRole::kWeight)
      ++numWeights;
    if (bind.role == BindingRole::kInput && bindingInProgram(bind, index))
      inputNames.insert(bind.name);
  }
  if (numWeights != 0 && !weightsLoaded_)
    return invalid("the plan has " + std::to_string(numWeights) +
                   " weights but none were loaded (give a weights file)");

  // Check all inputs before writing any, then copy them in.
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role != BindingRole::kInput || !bindingInProgram(bind, index))
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
    if (inputNames.count(entry.first) || isReservedInput(entry.first))
      continue;
    std::string known;
    for (const std::string &n : inputNames)
      known += (known.empty() ? "" : ", ") + n;
    std::string whose = programs_.size() > 1
                            ? "program " + quoted(name) + " reads"
                            : std::string("the plan's inputs are");
    return invalid("unexpected input '" + entry.first + "' (" + whose + ": " +
                   (known.empty() ? "none" : known) + ")");
  }
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role != BindingRole::kInput || !bindingInProgram(bind, index))
      continue;
    const HostTensor *in = inputs.find(bind.name);
    COLOSSAL_RETURN_IF_ERROR(backend_->upload(
        tensorData(bind.tensor), in->bytes.data(), in->bytes.size()));
    if (checking_)
      touchBuffer(plan.tensors[bind.tensor].buffer);
  }

  if (checking_) {
    // Outputs are live to the program's last instruction and die once they
    // are copied out below, not when their liveEnd instruction has run.
    std::fill(programOutputBuffer_.begin(), programOutputBuffer_.end(), false);
    for (const PlanBinding &bind : plan.bindings)
      if (bind.role == BindingRole::kOutput && bindingInProgram(bind, index))
        programOutputBuffer_[plan.tensors[bind.tensor].buffer] = true;
  }
  COLOSSAL_RETURN_IF_ERROR(
      runInstructions(program.firstInstr, program.numInstrs));

  outputs = SafetensorsFile();
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role != BindingRole::kOutput || !bindingInProgram(bind, index))
      continue;
    HostTensor out(plan.tensors[bind.tensor].type);
    COLOSSAL_RETURN_IF_ERROR(backend_->download(
        out.bytes.data(), tensorData(bind.tensor), out.bytes.size()));
    outputs.tensors.emplace_back(bind.name, std::move(out));
    if (checking_)
      touchBuffer(plan.tensors[bind.tensor].buffer);
  }
  if (checking_ && program.numInstrs != 0) {
    // An output whose buffer stays live past this program (not what the
    // compiler emits) dies at its liveEnd instead.
    uint64_t last = uint64_t(program.firstInstr) + program.numInstrs - 1;
    for (const PlanBinding &bind : plan.bindings) {
      if (bind.role != BindingRole::kOutput || !bindingInProgram(bind, index))
        continue;
      uint32_t b = plan.tensors[bind.tensor].buffer;
      if (!persistentBuffer_[b] && plan.buffers[b].liveEnd <= last)
        COLOSSAL_RETURN_IF_ERROR(poisonBuffer(b));
    }
  }
  return Status::ok();
}

namespace {
/// Microseconds from `originNs` (steady clock) to now.
double traceNowUs(int64_t originNs) {
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  return static_cast<double>(now - originNs) / 1e3;
}
} // namespace

std::string Executor::describeInstr(uint64_t index) const {
  const PlanInstr &instr = plan_->instrs[index];
  std::string where = "instruction " + std::to_string(index) + " (" +
                      std::string(opInfo(instr.attrs.kind()).name);
  if (!instr.location.empty())
    where += " at " + instr.location;
  return where + ")";
}

Status Executor::drain() {
  if (!plan_ || !backend_)
    return Status::ok();
  uint64_t failed = UINT64_MAX;
  Status st = backend_->synchronize(&failed);
  if (!st.isOk())
    return Status(st.code(),
                  (failed < plan_->instrs.size() ? describeInstr(failed)
                                                 : std::string("draining")) +
                      ": " + st.message());
  return Status::ok();
}

Status Executor::runInstructions(uint32_t first, uint32_t count) {
  const Plan &plan = *plan_;
  std::vector<TensorRef> ins, outs;
  // Tracing: the backend times its instructions itself (asynchronous), or
  // the wall clock around each run() call does (synchronous).
  const bool tracing = traceActive();
  const double regionUs = tracing ? traceNowUs(traceOriginNs_) : 0.0;
  const bool backendTimes = tracing && backend_->traceBegin();
  for (uint64_t i = first; i < uint64_t(first) + count; ++i) {
    const PlanInstr &instr = plan.instrs[i];
    if (checking_)
      COLOSSAL_RETURN_IF_ERROR(checkOperandsLive(i));
    ins.clear();
    outs.clear();
    for (uint32_t t : instr.inputs)
      ins.push_back(TensorRef{plan.tensors[t].type, tensorData(t)});
    for (uint32_t t : instr.outputs)
      outs.push_back(TensorRef{plan.tensors[t].type, tensorData(t)});
    double startUs = tracing && !backendTimes ? traceNowUs(traceOriginNs_) : 0;
    Status st = backend_->run(i, instr, ins, outs);
    if (!st.isOk())
      return Status(st.code(), describeInstr(i) + ": " + st.message());
    if (tracing && !backendTimes)
      traceRecords_.push_back(
          {i, traceStep_, startUs, traceNowUs(traceOriginNs_) - startUs});
    if (checking_)
      for (uint32_t b : diesAfter_[i])
        if (!programOutputBuffer_[b])
          COLOSSAL_RETURN_IF_ERROR(poisonBuffer(b));
  }
  // An asynchronous backend reports here what its kernels found (a gather
  // index out of range) and names the instruction that found it.
  // The carried streams (the host updates that run across the step
  // boundary) are left running, unless check-plan is on: its bookkeeping
  // assumes every stream joins at a program's end.
  uint64_t failed = UINT64_MAX;
  Status st = checking_ ? backend_->synchronize(&failed)
                        : backend_->synchronizeStep(&failed);
  if (!st.isOk())
    return Status(st.code(),
                  (failed < plan.instrs.size()
                       ? describeInstr(failed)
                       : "after instruction " +
                             std::to_string(uint64_t(first) + count - 1)) +
                      ": " + st.message());
  if (backendTimes) {
    std::vector<TraceSlice> slices;
    COLOSSAL_RETURN_IF_ERROR(backend_->traceEnd(slices));
    for (const TraceSlice &slice : slices)
      traceRecords_.push_back({slice.instr, traceStep_,
                               regionUs + slice.startUs, slice.durationUs});
  }
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Check-plan mode
//===----------------------------------------------------------------------===//

namespace {

/// Every byte of a dead buffer: 0xFF is a NaN in f16, bf16, f32 and f64
/// (exponent all ones, mantissa all ones: a quiet NaN with the sign set and
/// an all-ones payload, easy to spot in a dump as 0xffff...), -1 in every
/// signed integer, 255 in u8 and true in bool.
constexpr uint8_t kPoisonByte = 0xff;

std::string liveRange(const PlanBuffer &buf) {
  return "[" + std::to_string(buf.liveStart) + ", " +
         std::to_string(buf.liveEnd) + "]";
}

Status planViolation(const std::string &message) {
  return Status(StatusCode::kCorruptPlan, "check-plan: " + message);
}

} // namespace

namespace {

std::string instrText(const Plan &plan, uint64_t index) {
  const PlanInstr &instr = plan.instrs[index];
  std::string where = "instruction " + std::to_string(index) + " (" +
                      std::string(opInfo(instr.attrs.kind()).name);
  if (!instr.location.empty())
    where += " at " + instr.location;
  return where + ", stream " + std::to_string(instr.stream) + ")";
}

/// Vector clocks over a plan's streams: `in` takes a step on its stream; a
/// record stores the stream's clock in its event, a wait joins the event's
/// latest clock into the stream's. Returns the stream's clock after `in`.
const std::vector<uint32_t> &
advanceClock(const PlanInstr &in,
             std::vector<std::vector<uint32_t>> &streamClock,
             std::map<int64_t, std::vector<uint32_t>> &eventClock) {
  std::vector<uint32_t> &clock = streamClock[in.stream];
  ++clock[in.stream];
  OpKind kind = in.attrs.kind();
  if (kind == OpKind::EventRecord) {
    eventClock[in.attrs.i("event")] = clock;
  } else if (kind == OpKind::EventWait) {
    auto it = eventClock.find(in.attrs.i("event"));
    if (it != eventClock.end()) // none: a carried stream's, not yet recorded
      for (size_t s = 0; s < clock.size(); ++s)
        clock[s] = std::max(clock[s], it->second[s]);
  }
  return clock;
}

/// The read/write part of the ordering rule, over instructions the caller
/// numbers (`v`: a plan index, or one of an unrolled run): a touch of a
/// buffer happens after the buffer's last write, and a write after the
/// reads since. `before(a, b)`: a happens before b; `text(v)` names v;
/// `why` ends a message about a missed write, `whyRead` one about a read.
struct AccessOrder {
  static constexpr uint64_t kNone = UINT64_MAX;
  const Plan &plan;
  std::vector<uint64_t> lastWriter;
  /// Per buffer and stream: the last reader since the last write.
  std::vector<std::vector<uint64_t>> lastReaders;

  explicit AccessOrder(const Plan &p)
      : plan(p), lastWriter(p.buffers.size(), kNone),
        lastReaders(p.buffers.size()) {}

  template <typename Before, typename Text>
  Status touch(uint64_t v, const PlanInstr &in, const Before &before,
               const Text &text, const std::string &why,
               const std::string &whyRead) {
    for (int pass = 0; pass < 2; ++pass) {
      const bool write = pass == 1;
      for (uint32_t t : write ? in.outputs : in.inputs) {
        uint32_t b = plan.tensors[t].buffer;
        uint64_t w = lastWriter[b];
        if (w != kNone && w != v && !before(w, v))
          return planViolation(text(v) + (write ? " writes" : " reads") +
                               " buffer " + quoted(plan.buffers[b].name) +
                               " written by " + text(w) +
                               ", which does not happen before it " + why);
        std::vector<uint64_t> &readers = lastReaders[b];
        if (write) {
          for (uint64_t r : readers)
            if (r != kNone && r != v && !before(r, v))
              return planViolation(text(v) + " writes buffer " +
                                   quoted(plan.buffers[b].name) +
                                   " read by " + text(r) +
                                   ", which does not happen before it " +
                                   whyRead);
        } else {
          readers.resize(plan.numStreams, kNone);
          readers[in.stream] = v;
        }
      }
    }
    for (uint32_t t : in.outputs) {
      uint32_t b = plan.tensors[t].buffer;
      lastWriter[b] = v;
      lastReaders[b].assign(plan.numStreams, kNone);
    }
    return Status::ok();
  }
};

/// The ordering safety rule of multi-stream plans (docs/plan-format.md,
/// "Streams and events"), checked per program with vector clocks: clock[s]
/// counts the instructions of stream s that the current point of a stream
/// has seen; a record stores its stream's clock in the event, a wait joins
/// the event's clock into its stream's. Instruction a happens before b when
/// b's clock has seen a: ts(a)[stream(a)] <= ts(b)[stream(a)]. Checked:
///  - a read happens after the last write of its buffer before it (plan
///    order), and a write after the earlier reads and write;
///  - for two buffers of one arena that share bytes (disjoint live ranges),
///    every touch of the earlier happens before every touch of the later.
/// Buffers are the unit (a view is its buffer), programs are independent
/// (the executor joins every stream at a program's end; a carried stream's
/// work across it is checkCarriedOrder's). Cost:
/// O(instructions x streams + pairs of byte-sharing buffers x streams).
Status checkStreamOrder(const Plan &plan,
                        const std::vector<PlanProgram> &programs) {
  const size_t numStreams = plan.numStreams;
  if (numStreams <= 1)
    return Status::ok(); // one stream runs in plan order: nothing to order
  auto violation = [](const std::string &message) {
    return Status(StatusCode::kCorruptPlan, "check-plan: " + message);
  };
  const size_t numBuffers = plan.buffers.size();
  for (const PlanProgram &prog : programs) {
    const uint64_t first = prog.firstInstr, end = first + prog.numInstrs;
    std::vector<uint32_t> ts(prog.numInstrs * numStreams, 0);
    auto clockOf = [&](uint64_t i) { return &ts[(i - first) * numStreams]; };
    auto before = [&](uint64_t a, uint64_t b) {
      uint32_t s = plan.instrs[a].stream;
      return clockOf(a)[s] <= clockOf(b)[s];
    };
    std::vector<std::vector<uint32_t>> streamClock(
        numStreams, std::vector<uint32_t>(numStreams, 0));
    std::map<int64_t, std::vector<uint32_t>> eventClock;
    // Per buffer: the last writer and, per stream, the last reader since it
    // (instruction indices; none in this program yet).
    constexpr uint64_t kNone = AccessOrder::kNone;
    AccessOrder order(plan);
    auto text = [&](uint64_t i) { return instrText(plan, i); };
    // Per buffer and stream: the touch with the largest clock component and
    // the touch whose clock has seen the least of that stream.
    std::vector<std::vector<uint64_t>> latestOn(numBuffers),
        earliestSeen(numBuffers);
    for (uint64_t i = first; i < end; ++i) {
      const PlanInstr &in = plan.instrs[i];
      const std::vector<uint32_t> &clock =
          advanceClock(in, streamClock, eventClock);
      std::copy(clock.begin(), clock.end(), clockOf(i));
      COLOSSAL_RETURN_IF_ERROR(order.touch(
          i, in, before, text,
          "(no event orders the two streams: a missing wait)",
          "(no event orders the two streams)"));
      for (int pass = 0; pass < 2; ++pass) {
        const bool write = pass == 1;
        for (uint32_t t : write ? in.outputs : in.inputs) {
          uint32_t b = plan.tensors[t].buffer;
          std::vector<uint64_t> &latest = latestOn[b], &seen = earliestSeen[b];
          if (latest.empty()) {
            latest.assign(numStreams, kNone);
            seen.assign(numStreams, i);
          }
          latest[in.stream] = i; // clocks grow along a stream
          for (size_t s = 0; s < numStreams; ++s)
            if (clockOf(i)[s] < clockOf(seen[s])[s])
              seen[s] = i;
        }
      }
    }

    // Byte-sharing buffers touched in this program, per arena, by offset.
    std::vector<uint32_t> touched;
    for (uint32_t b = 0; b < numBuffers; ++b)
      if (!latestOn[b].empty() && plan.buffers[b].sizeBytes != 0)
        touched.push_back(b);
    std::stable_sort(touched.begin(), touched.end(),
                     [&](uint32_t x, uint32_t y) {
                       const PlanBuffer &a = plan.buffers[x],
                                        &c = plan.buffers[y];
                       return a.arena != c.arena ? a.arena < c.arena
                                                 : a.offsetBytes < c.offsetBytes;
                     });
    for (size_t x = 0; x < touched.size(); ++x) {
      const PlanBuffer &bx = plan.buffers[touched[x]];
      for (size_t y = x + 1; y < touched.size(); ++y) {
        const PlanBuffer &by = plan.buffers[touched[y]];
        if (by.arena != bx.arena || by.offsetBytes >= bx.offsetBytes + bx.sizeBytes)
          break;
        uint32_t early = touched[x], late = touched[y];
        if (plan.buffers[late].liveEnd < plan.buffers[early].liveStart)
          std::swap(early, late);
        if (plan.buffers[early].liveEnd >= plan.buffers[late].liveStart)
          continue; // live together: the live-range check reports it
        for (size_t s = 0; s < numStreams; ++s) {
          uint64_t a = latestOn[early][s], n = earliestSeen[late][s];
          if (a == kNone || clockOf(a)[s] <= clockOf(n)[s])
            continue;
          return violation(
              instrText(plan, a) + " touches buffer " +
              quoted(plan.buffers[early].name) + " and " + instrText(plan, n) +
              " touches buffer " + quoted(plan.buffers[late].name) +
              ", which reuses its " +
              memorySpaceName(plan.arenas[plan.buffers[late].arena].space) +
              " bytes, but the first does not happen before the second (no "
              "event orders them)");
        }
      }
    }
  }
  return Status::ok();
}

/// The ordering rule across the step boundary, for a plan with carried
/// streams (Plan::carriedStreams: the host updates run on under the next
/// step): checkStreamOrder's read/write rule over two steps run back to
/// back, where a program's end joins only the other streams (the
/// executor's synchronizeStep), the carried ones and the events' latest
/// records carry over, and a buffer's last writer and readers carry over
/// too. It catches a next-step reader that no event orders after a carried
/// update (a fetch not waiting for its weight's update) and a next-step
/// writer of what a carried update still reads. Cost: O(2 x instructions x
/// streams).
Status checkCarriedOrder(const Plan &plan,
                         const std::vector<PlanProgram> &programs) {
  const size_t numStreams = plan.numStreams;
  if (plan.carriedStreams == 0 || numStreams <= 1)
    return Status::ok();
  auto carried = [&](size_t s) {
    return s < 64 && (plan.carriedStreams >> s & 1u);
  };
  const uint64_t numInstrs = plan.instrs.size();
  // Virtual instruction v = step * numInstrs + i.
  std::vector<uint32_t> ts(2 * numInstrs * numStreams, 0);
  auto clockOf = [&](uint64_t v) { return &ts[v * numStreams]; };
  auto streamOf = [&](uint64_t v) { return plan.instrs[v % numInstrs].stream; };
  auto before = [&](uint64_t a, uint64_t b) {
    uint32_t s = streamOf(a);
    return clockOf(a)[s] <= clockOf(b)[s];
  };
  auto text = [&](uint64_t v) {
    return instrText(plan, v % numInstrs) +
           (v < numInstrs ? " of the previous step" : "");
  };
  std::vector<std::vector<uint32_t>> streamClock(
      numStreams, std::vector<uint32_t>(numStreams, 0));
  std::map<int64_t, std::vector<uint32_t>> eventClock;
  AccessOrder order(plan);
  for (uint64_t step = 0; step < 2; ++step)
    for (const PlanProgram &prog : programs) {
      for (uint64_t i = prog.firstInstr;
           i < uint64_t(prog.firstInstr) + prog.numInstrs; ++i) {
        const uint64_t v = step * numInstrs + i;
        const PlanInstr &in = plan.instrs[i];
        const std::vector<uint32_t> &clock =
            advanceClock(in, streamClock, eventClock);
        std::copy(clock.begin(), clock.end(), clockOf(v));
        COLOSSAL_RETURN_IF_ERROR(order.touch(
            v, in, before, text,
            "(across the step boundary: a stream runs on into the next "
            "step, and no event orders the two)",
            "(across the step boundary: no event orders the two)"));
      }
      // The program's end: the streams but the carried ones join.
      std::vector<uint32_t> joined(numStreams, 0);
      for (size_t s = 0; s < numStreams; ++s)
        if (!carried(s))
          for (size_t t = 0; t < numStreams; ++t)
            joined[t] = std::max(joined[t], streamClock[s][t]);
      for (size_t s = 0; s < numStreams; ++s)
        if (!carried(s))
          streamClock[s] = joined;
    }
  return Status::ok();
}

} // namespace

Status Executor::startPlanCheck() {
  const Plan &plan = *plan_;
  const size_t numBuffers = plan.buffers.size();
  const uint64_t numInstrs = plan.instrs.size();
  auto bufferText = [&](uint32_t b) {
    return "buffer " + quoted(plan.buffers[b].name) + " live " +
           liveRange(plan.buffers[b]);
  };

  // Bindings against live ranges: persistent tensors are live everywhere,
  // inputs from their program's first instruction (they are written just
  // before it), outputs to its last (they are read just after it).
  persistentBuffer_.assign(numBuffers, false);
  for (const PlanBinding &bind : plan.bindings)
    if (bind.role == BindingRole::kWeight || bind.role == BindingRole::kState ||
        bind.role == BindingRole::kConstant)
      persistentBuffer_[plan.tensors[bind.tensor].buffer] = true;
  for (const PlanBinding &bind : plan.bindings) {
    uint32_t b = plan.tensors[bind.tensor].buffer;
    const PlanBuffer &buf = plan.buffers[b];
    std::string what =
        std::string(bindingRoleName(bind.role)) + " " + quoted(bind.name);
    if (bind.role != BindingRole::kInput && bind.role != BindingRole::kOutput) {
      if (numInstrs != 0 && (buf.liveStart != 0 || buf.liveEnd < numInstrs - 1))
        return planViolation(what +
                             " must be live over every instruction [0, " +
                             std::to_string(numInstrs - 1) + "], but its " +
                             bufferText(b) + " is not");
      continue;
    }
    for (uint32_t p = 0; p < programs_.size(); ++p) {
      const PlanProgram &prog = programs_[p];
      if (!bindingInProgram(bind, p) || prog.numInstrs == 0)
        continue;
      bool input = bind.role == BindingRole::kInput;
      uint64_t at = input ? prog.firstInstr
                          : uint64_t(prog.firstInstr) + prog.numInstrs - 1;
      if (at < buf.liveStart || at > buf.liveEnd)
        return planViolation(what + " of program " + quoted(prog.name) +
                             (input ? " is written before instruction "
                                    : " is read after instruction ") +
                             std::to_string(at) + ", but its " + bufferText(b) +
                             " is not");
    }
  }

  // No two buffers of an arena share bytes while both are live. A sweep in
  // liveStart order against the buffers still live: O(buffers x the most
  // buffers live at once).
  std::vector<uint32_t> order(numBuffers);
  for (uint32_t b = 0; b < numBuffers; ++b)
    order[b] = b;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
    return plan.buffers[x].liveStart < plan.buffers[y].liveStart;
  });
  std::vector<uint32_t> active;
  for (uint32_t b : order) {
    const PlanBuffer &cur = plan.buffers[b];
    if (cur.sizeBytes == 0)
      continue;
    active.erase(std::remove_if(active.begin(), active.end(),
                                [&](uint32_t a) {
                                  return plan.buffers[a].liveEnd <
                                         cur.liveStart;
                                }),
                 active.end());
    for (uint32_t a : active) {
      const PlanBuffer &old = plan.buffers[a];
      if (old.arena != cur.arena ||
          old.offsetBytes >= cur.offsetBytes + cur.sizeBytes ||
          cur.offsetBytes >= old.offsetBytes + old.sizeBytes)
        continue;
      auto bytes = [](const PlanBuffer &buf) {
        return "bytes [" + std::to_string(buf.offsetBytes) + ", " +
               std::to_string(buf.offsetBytes + buf.sizeBytes) + ")";
      };
      return planViolation(
          "buffers " + quoted(old.name) + " (" + bytes(old) + ", live " +
          liveRange(old) + ") and " + quoted(cur.name) + " (" + bytes(cur) +
          ", live " + liveRange(cur) + ") share " +
          memorySpaceName(plan.arenas[cur.arena].space) +
          " arena bytes while both are live (from instruction " +
          std::to_string(cur.liveStart) + ")");
    }
    active.push_back(b);
  }

  // Per instruction: the buffers that die after it, and the live bytes of
  // each arena (a difference array over the live ranges).
  diesAfter_.assign(numInstrs, {});
  liveBytesAt_.assign(plan.arenas.size(), std::vector<uint64_t>(numInstrs, 0));
  for (uint32_t b = 0; b < numBuffers; ++b) {
    const PlanBuffer &buf = plan.buffers[b];
    if (buf.liveStart >= numInstrs)
      continue;
    uint64_t end = std::min<uint64_t>(buf.liveEnd, numInstrs - 1);
    if (!persistentBuffer_[b] && buf.liveEnd < numInstrs)
      diesAfter_[buf.liveEnd].push_back(b);
    std::vector<uint64_t> &live = liveBytesAt_[buf.arena];
    live[buf.liveStart] += buf.sizeBytes;
    if (end + 1 < numInstrs)
      live[end + 1] -= buf.sizeBytes; // wraps back: unsigned, exact sums
  }
  for (std::vector<uint64_t> &live : liveBytesAt_)
    for (uint64_t i = 1; i < numInstrs; ++i)
      live[i] += live[i - 1];

  // Multi-stream plans: the live ranges above are in plan order; the
  // streams must also be ordered so that plan order is what happens.
  COLOSSAL_RETURN_IF_ERROR(checkStreamOrder(plan, programs_));
  COLOSSAL_RETURN_IF_ERROR(checkCarriedOrder(plan, programs_));

  arenaChecks_.clear();
  for (const PlanArena &arena : plan.arenas) {
    ArenaCheck check;
    check.space = arena.space;
    check.plannedBytes = arena.sizeBytes;
    arenaChecks_.push_back(check);
  }
  touchedBuffer_.assign(numBuffers, false);
  programOutputBuffer_.assign(numBuffers, false);
  checking_ = true;
  // Weights, states and constants are written (prepare, loadWeights) and
  // kept for the whole run.
  for (uint32_t b = 0; b < numBuffers; ++b)
    if (persistentBuffer_[b])
      touchBuffer(b);
  // Everything starts dead: a buffer read before it is written reads NaN.
  // prepare() writes the constants and states over it next.
  for (size_t a = 0; a < plan.arenas.size(); ++a)
    COLOSSAL_RETURN_IF_ERROR(
        backend_->fill(backend_->arenaBase(a), kPoisonByte,
                       static_cast<size_t>(plan.arenas[a].sizeBytes)));
  return Status::ok();
}

Status Executor::checkOperandsLive(uint64_t index) {
  const Plan &plan = *plan_;
  const PlanInstr &instr = plan.instrs[index];
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t t : pass == 0 ? instr.inputs : instr.outputs) {
      const PlanTensor &tensor = plan.tensors[t];
      const PlanBuffer &buf = plan.buffers[tensor.buffer];
      if (index < buf.liveStart || index > buf.liveEnd)
        return planViolation(describeInstr(index) +
                             (pass == 0 ? " reads" : " writes") + " tensor " +
                             quoted(tensor.name) + " of buffer " +
                             quoted(buf.name) + " live " + liveRange(buf));
      touchBuffer(tensor.buffer);
    }
  }
  for (size_t a = 0; a < arenaChecks_.size(); ++a)
    arenaChecks_[a].livePeakBytes =
        std::max(arenaChecks_[a].livePeakBytes, liveBytesAt_[a][index]);
  return Status::ok();
}

void Executor::touchBuffer(uint32_t buffer) {
  if (touchedBuffer_[buffer])
    return;
  touchedBuffer_[buffer] = true;
  const PlanBuffer &buf = plan_->buffers[buffer];
  ArenaCheck &check = arenaChecks_[buf.arena];
  check.touchedBytes =
      std::max(check.touchedBytes, buf.offsetBytes + buf.sizeBytes);
}

Status Executor::poisonBuffer(uint32_t buffer) {
  const PlanBuffer &buf = plan_->buffers[buffer];
  return backend_->fill(backend_->arenaBase(buf.arena) + buf.offsetBytes,
                        kPoisonByte, static_cast<size_t>(buf.sizeBytes));
}

std::vector<ArenaCheck> Executor::planCheck() const {
  return checking_ ? arenaChecks_ : std::vector<ArenaCheck>();
}

Status Executor::verifyPlanPeak() const {
  if (!checking_)
    return Status::ok();
  for (const ArenaCheck &check : arenaChecks_) {
    std::string arena = std::string(memorySpaceName(check.space)) + " arena";
    if (check.touchedBytes > check.plannedBytes)
      return COLOSSAL_ERROR(
          kInternal, "check-plan: " + arena + ": the run touched " +
                         std::to_string(check.touchedBytes) +
                         " bytes, more than the " +
                         std::to_string(check.plannedBytes) +
                         " planned (validation keeps every buffer inside its "
                         "arena: an executor bug)");
    if (check.touchedBytes < check.plannedBytes)
      return planViolation(
          arena + ": the plan allocates " + std::to_string(check.plannedBytes) +
          " bytes, the run touched " + std::to_string(check.touchedBytes) +
          " (over-allocated by " +
          std::to_string(check.plannedBytes - check.touchedBytes) + " bytes)");
  }
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Training steps
//===----------------------------------------------------------------------===//

namespace {

HostTensor stepTensor(uint64_t step) {
  HostTensor t(TensorType{DType::kI64, {}});
  storeFromInt64(t.ref(), 0, static_cast<int64_t>(step));
  return t;
}

HostTensor f32Scalar(double value) {
  HostTensor t(TensorType{DType::kF32, {}});
  storeFromDouble(t.ref(), 0, value);
  return t;
}

/// Reads scalar output `name` of `program`; `required` makes a missing one
/// an error.
Status scalarOutput(const SafetensorsFile &outputs, const std::string &program,
                    const std::string &name, bool required,
                    std::optional<double> &value) {
  const HostTensor *t = outputs.find(name);
  if (!t) {
    if (required)
      return invalid("program '" + program + "' has no output '" + name +
                     "' (a training plan's " + program + " must give it)");
    value.reset();
    return Status::ok();
  }
  if (t->type.numElements() != 1)
    return invalid("program '" + program + "' output '" + name + "' is " +
                   t->type.toString() + ", expected a scalar");
  value = loadAsDouble(t->ref(), 0);
  return Status::ok();
}

} // namespace

Status Executor::trainStep(uint64_t step, const SafetensorsFile &batch,
                              TrainStepStats &stats,
                              SafetensorsFile *gradsBeforeApply) {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "trainStep() called before a successful prepare()");
  const Plan &plan = *plan_;
  if (!isTrainingPlan(plan))
    return invalid("the plan is not a training plan (it has no " +
                   std::string(kTrainStepProgram) + " program, nor " +
                   kMicroStepProgram + " and " + kApplyStepProgram + ")");
  if (step > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return invalid("step " + std::to_string(step) + " does not fit __step");
  traceStep_ = step; // what setTrace()'s onlyStep selects
  // A fused plan runs one program per step that also applies the updates;
  // otherwise micro_step runs per micro-batch and apply_step once.
  const bool fused = isFusedTrainingPlan(plan);
  const char *stepProgram = fused ? kTrainStepProgram : kMicroStepProgram;
  if (fused && gradsBeforeApply)
    return invalid("this plan fuses each weight's update into the step, so "
                   "no gradient is kept to dump; compile it with "
                   "--separate-optimizer-step to use --dump-grads");
  uint32_t micro = 0;
  while (programs_[micro].name != stepProgram)
    ++micro;

  // Split the batch: every user input of micro_step, dim 0 a multiple G of
  // the planned dim 0, the same G for all.
  struct Slice {
    const PlanBinding *bind;
    const HostTensor *full;
    uint64_t microBytes;
  };
  std::vector<Slice> slices;
  int64_t groups = -1;
  bool stepInMicro = false;
  for (const PlanBinding &bind : plan.bindings) {
    if (bind.role != BindingRole::kInput || !bindingInProgram(bind, micro))
      continue;
    if (isReservedInput(bind.name)) {
      stepInMicro |= bind.name == kStepInputName;
      continue;
    }
    const TensorType &planned = plan.tensors[bind.tensor].type;
    const HostTensor *full = batch.find(bind.name);
    if (!full)
      return invalid("missing batch input '" + bind.name + "' (micro-batch " +
                     planned.toString() + ")");
    const TensorType &got = full->type;
    bool sameTail = got.dtype == planned.dtype && got.rank() == planned.rank();
    for (size_t d = 1; sameTail && d < planned.rank(); ++d)
      sameTail = got.dims[d] == planned.dims[d];
    int64_t g = planned.rank() == 0 ? 1
                : planned.dims[0] == 0
                    ? (got.rank() > 0 && got.dims[0] == 0 ? 1 : -1)
                    : (got.rank() > 0 && got.dims[0] % planned.dims[0] == 0
                           ? got.dims[0] / planned.dims[0]
                           : -1);
    if (!sameTail || g <= 0)
      return invalid("batch input '" + bind.name + "' is " + got.toString() +
                     ", expected the micro-batch " + planned.toString() +
                     " with dim 0 multiplied by the number of micro-batches");
    if (groups >= 0 && g != groups)
      return invalid("batch input '" + bind.name + "' holds " +
                     std::to_string(g) + " micro-batches, the others " +
                     std::to_string(groups));
    groups = g;
    slices.push_back({&bind, full, planned.sizeBytes()});
  }
  for (const auto &entry : batch.tensors) {
    bool known = false;
    for (const Slice &s : slices)
      known |= s.bind->name == entry.first;
    if (!known)
      return invalid("unexpected batch input '" + entry.first +
                     "' (micro_step does not read it)");
  }
  if (groups < 0)
    groups = 1; // micro_step reads no user input
  if (fused && groups != 1)
    return invalid("the batch holds " + std::to_string(groups) +
                   " times the compiled batch, but this plan fuses the "
                   "optimizer into the step (no gradient accumulation); "
                   "compile it with --grad-accum " + std::to_string(groups) +
                   " and --shape of the full batch");

  stats = TrainStepStats();
  stats.microSteps = groups;
  double lossSum = 0.0, countTotal = 0.0;
  SafetensorsFile microInputs, outputs;
  for (int64_t g = 0; g < groups; ++g) {
    microInputs.tensors.clear();
    for (const Slice &s : slices) {
      HostTensor t(plan.tensors[s.bind->tensor].type);
      if (s.microBytes != 0)
        std::memcpy(t.bytes.data(), s.full->bytes.data() + g * s.microBytes,
                    s.microBytes);
      microInputs.tensors.emplace_back(s.bind->name, std::move(t));
    }
    if (stepInMicro)
      microInputs.tensors.emplace_back(kStepInputName, stepTensor(step));
    COLOSSAL_RETURN_IF_ERROR(runProgram(stepProgram, microInputs, outputs));
    std::optional<double> loss, count;
    COLOSSAL_RETURN_IF_ERROR(
        scalarOutput(outputs, stepProgram, "loss", true, loss));
    COLOSSAL_RETURN_IF_ERROR(
        scalarOutput(outputs, stepProgram, kCountOutputName, true, count));
    // A micro-batch without scored labels has loss 0/0 = NaN and adds
    // nothing, as in PyTorch's token-weighted mean over the whole batch.
    if (*count > 0)
      lossSum += *loss * *count;
    countTotal += *count;
  }
  stats.countTotal = countTotal;
  stats.loss = countTotal > 0 ? lossSum / countTotal
                              : std::numeric_limits<double>::quiet_NaN();
  if (fused) {
    COLOSSAL_RETURN_IF_ERROR(scalarOutput(outputs, stepProgram, "grad_norm",
                                          false, stats.gradNorm));
    return scalarOutput(outputs, stepProgram, "lr", false, stats.lr);
  }

  if (gradsBeforeApply) {
    *gradsBeforeApply = SafetensorsFile();
    const std::string prefix = "grad.";
    for (const PlanBinding &bind : plan.bindings) {
      if (bind.role != BindingRole::kState ||
          bind.name.compare(0, prefix.size(), prefix) != 0)
        continue;
      const TensorType &type = plan.tensors[bind.tensor].type;
      HostTensor state(type);
      COLOSSAL_RETURN_IF_ERROR(backend_->download(
          state.bytes.data(), tensorData(bind.tensor), state.bytes.size()));
      TensorRef src = state.ref();
      HostTensor out(TensorType{
          type.dtype == DType::kF64 ? DType::kF64 : DType::kF32, type.dims});
      int64_t n = type.numElements();
      for (int64_t i = 0; i < n; ++i)
        storeFromDouble(out.ref(), i, loadAsDouble(src, i) / countTotal);
      gradsBeforeApply->tensors.emplace_back(bind.name.substr(prefix.size()),
                                             std::move(out));
    }
  }

  SafetensorsFile applyInputs;
  applyInputs.tensors.emplace_back(kStepInputName, stepTensor(step));
  applyInputs.tensors.emplace_back(kCountTotalInputName, f32Scalar(countTotal));
  COLOSSAL_RETURN_IF_ERROR(runProgram(kApplyStepProgram, applyInputs, outputs));
  COLOSSAL_RETURN_IF_ERROR(scalarOutput(outputs, kApplyStepProgram, "grad_norm",
                                        false, stats.gradNorm));
  COLOSSAL_RETURN_IF_ERROR(
      scalarOutput(outputs, kApplyStepProgram, "lr", false, stats.lr));
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Binding access and checkpoints
//===----------------------------------------------------------------------===//

const PlanBinding *Executor::findBinding(BindingRole role,
                                            const std::string &name) const {
  if (!plan_)
    return nullptr;
  for (const PlanBinding &bind : plan_->bindings)
    if (bind.role == role && bind.name == name)
      return &bind;
  return nullptr;
}

Status Executor::bindingTensor(BindingRole role, const std::string &name,
                                  TensorRef &out) const {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal, "bindingTensor() called before prepare()");
  const PlanBinding *bind = findBinding(role, name);
  if (!bind)
    return Status(StatusCode::kNotFound, std::string("the plan has no ") +
                                             bindingRoleName(role) + " " +
                                             quoted(name));
  out = TensorRef{plan_->tensors[bind->tensor].type, tensorData(bind->tensor)};
  return Status::ok();
}

Status Executor::readBinding(BindingRole role, const std::string &name,
                                HostTensor &out) const {
  TensorRef ref;
  COLOSSAL_RETURN_IF_ERROR(bindingTensor(role, name, ref));
  out = HostTensor(ref.type);
  return backend_->download(out.bytes.data(), ref.data, out.bytes.size());
}

Status Executor::writeBinding(BindingRole role, const std::string &name,
                                 const HostTensor &value) {
  TensorRef ref;
  COLOSSAL_RETURN_IF_ERROR(bindingTensor(role, name, ref));
  if (value.type != ref.type || value.bytes.size() != ref.type.sizeBytes())
    return invalid(std::string(bindingRoleName(role)) + " " + quoted(name) +
                   ": the plan expects " + ref.type.toString() + ", got " +
                   value.type.toString());
  return backend_->upload(ref.data, value.bytes.data(), value.bytes.size());
}

Status Executor::saveCheckpoint(const std::string &path,
                                   uint64_t step) const {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "saveCheckpoint() called before prepare()");
  SafetensorsFile file;
  file.metadata["format"] = "colossal-checkpoint";
  file.metadata["step"] = std::to_string(step);
  file.metadata["plan_fingerprint"] = planFingerprint(*plan_);
  file.metadata["train_config"] = plan_->trainConfig;
  for (const PlanBinding &bind : plan_->bindings) {
    if (bind.role != BindingRole::kWeight && bind.role != BindingRole::kState)
      continue;
    HostTensor t;
    COLOSSAL_RETURN_IF_ERROR(readBinding(bind.role, bind.name, t));
    file.tensors.emplace_back(bind.name, std::move(t));
  }
  return writeSafetensorsFile(file, path);
}

Status Executor::loadCheckpoint(const std::string &path, uint64_t *step,
                                   std::string *trainConfig) {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "loadCheckpoint() called before prepare()");
  SafetensorsFile file;
  COLOSSAL_RETURN_IF_ERROR(readSafetensorsFile(path, file));
  auto bad = [&](const std::string &message) {
    return invalid(path + ": " + message);
  };
  auto meta = [&](const char *key) -> const std::string * {
    auto it = file.metadata.find(key);
    return it == file.metadata.end() ? nullptr : &it->second;
  };
  const std::string *format = meta("format");
  if (!format || *format != "colossal-checkpoint")
    return bad("not a colossal checkpoint (metadata \"format\" is " +
               (format ? "\"" + *format + "\"" : std::string("missing")) +
               ", expected \"colossal-checkpoint\")");
  const std::string *stepText = meta("step");
  uint64_t savedStep = 0;
  bool stepOk = stepText && !stepText->empty() && stepText->size() <= 19;
  for (size_t i = 0; stepOk && i < stepText->size(); ++i) {
    char c = (*stepText)[i];
    stepOk = c >= '0' && c <= '9';
    savedStep = savedStep * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!stepOk)
    return bad("metadata \"step\" is " +
               (stepText ? "\"" + *stepText + "\"" : std::string("missing")) +
               ", expected a decimal step count");

  // Every weight and state, by name, with its dtype and shape; nothing else.
  std::set<std::string> expected;
  for (const PlanBinding &bind : plan_->bindings) {
    if (bind.role != BindingRole::kWeight && bind.role != BindingRole::kState)
      continue;
    expected.insert(bind.name);
    const TensorType &type = plan_->tensors[bind.tensor].type;
    const HostTensor *t = file.find(bind.name);
    std::string what =
        std::string(bindingRoleName(bind.role)) + " " + quoted(bind.name);
    if (!t)
      return bad(what + " (" + type.toString() + ") is not in the checkpoint");
    if (t->type != type)
      return bad(what + ": the plan expects " + type.toString() +
                 ", the checkpoint has " + t->type.toString());
  }
  for (const auto &entry : file.tensors)
    if (!expected.count(entry.first))
      return bad("tensor " + quoted(entry.first) +
                 " is not a weight or state of this plan");
  const std::string *fingerprint = meta("plan_fingerprint");
  std::string mine = planFingerprint(*plan_);
  if (!fingerprint || *fingerprint != mine)
    return bad("was saved from another plan (fingerprint " +
               (fingerprint ? *fingerprint : std::string("missing")) +
               ", this plan's is " + mine +
               "): the tensors match, the computation differs");

  for (const PlanBinding &bind : plan_->bindings) {
    if (bind.role != BindingRole::kWeight && bind.role != BindingRole::kState)
      continue;
    const HostTensor *t = file.find(bind.name);
    COLOSSAL_RETURN_IF_ERROR(backend_->upload(
        tensorData(bind.tensor), t->bytes.data(), t->bytes.size()));
  }
  weightsLoaded_ = true;
  if (step)
    *step = savedStep;
  if (trainConfig) {
    const std::string *config = meta("train_config");
    *trainConfig = config ? *config : std::string();
  }
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Tracing (setTrace, writeTrace; `colossal-run --trace`)
//===----------------------------------------------------------------------===//

void Executor::setTrace(bool on, int64_t onlyStep) {
  trace_ = on;
  traceOnlyStep_ = onlyStep;
  traceRecords_.clear();
  traceOriginNs_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  backend_->enableTracing(on);
}

namespace {

/// `text` as a JSON string literal (quotes, backslashes and control
/// characters escaped; other bytes as they are, ONNX names are UTF-8).
std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

/// The track name of stream `s`: its index and kind.
std::string streamTrackName(const Plan &plan, uint32_t s) {
  return "stream " + std::to_string(s) + " (" +
         streamKindName(s < plan.streamKinds.size() ? plan.streamKinds[s]
                                                    : StreamKind::kCompute) +
         ")";
}

} // namespace

Status Executor::writeTrace(const std::string &path) const {
  if (!plan_)
    return COLOSSAL_ERROR(kInternal,
                          "writeTrace() called before a successful prepare()");
  const Plan &plan = *plan_;
  std::FILE *f = std::fopen(path.c_str(), "w");
  if (!f)
    return Status(StatusCode::kInvalidArgument,
                  path + ": cannot write: " + std::strerror(errno));
  // Chrome's trace event format (also what Perfetto's UI opens): one
  // process, one thread per plan stream (tid = stream index), metadata
  // events naming them, then one complete event per instruction run.
  std::string out = "{\"displayTimeUnit\": \"ns\", \"traceEvents\": [\n";
  out += "{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": 0, "
         "\"tid\": 0, \"args\": {\"name\": " +
         jsonString(std::string("colossal-run (") + deviceName(device()) +
                    ")") +
         "}}";
  for (uint32_t s = 0; s < plan.numStreams; ++s)
    out += ",\n{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": 0, "
           "\"tid\": " +
           std::to_string(s) + ", \"args\": {\"name\": " +
           jsonString(streamTrackName(plan, s)) + "}}";
  // The program of each instruction, for the args.
  auto programOf = [&](uint64_t instr) -> std::string {
    for (const PlanProgram &p : programs_)
      if (instr >= p.firstInstr && instr < uint64_t(p.firstInstr) + p.numInstrs)
        return p.name;
    return std::string();
  };
  char num[64];
  for (const TraceRecord &r : traceRecords_) {
    const PlanInstr &instr = plan.instrs[r.instr];
    const std::string op(opInfo(instr.attrs.kind()).name);
    std::string name = op;
    if (!instr.location.empty())
      name += " at " + instr.location;
    out += ",\n{\"ph\": \"X\", \"pid\": 0, \"tid\": " +
           std::to_string(instr.stream) + ", \"name\": " + jsonString(name) +
           ", \"cat\": " + jsonString(op);
    std::snprintf(num, sizeof(num), ", \"ts\": %.3f, \"dur\": %.3f",
                  r.startUs, r.durationUs);
    out += num;
    out += ", \"args\": {\"instr\": " + std::to_string(r.instr) +
           ", \"step\": " + std::to_string(r.step) +
           ", \"program\": " + jsonString(programOf(r.instr)) +
           ", \"location\": " + jsonString(instr.location);
    // A copy (identity) says how many bytes it moved.
    if (instr.attrs.kind() == OpKind::Identity && !instr.outputs.empty())
      out += ", \"bytes\": " +
             std::to_string(plan.tensors[instr.outputs[0]].type.sizeBytes());
    out += "}}";
  }
  out += "\n]}\n";
  bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok)
    return Status(StatusCode::kInvalidArgument,
                  path + ": write failed: " + std::strerror(errno));
  return Status::ok();
}

} // namespace colossal::runtime
