//===- CostModel.h - Device profiles and step-time estimates -----*- C++
//-*-===//
//
// A first-order model of how long a plan's step takes on one device: every
// instruction is timed alone from a DeviceProfile (rates measured on the
// hardware, devices/*.json), and the step is the slowest of the resources
// that can run side by side: the GPU's compute stream, the PCIe link in each
// direction and the CPU. Plain records in, numbers out, no IR: tested in
// unittests/CostModelTest.cpp. docs/planner.md states the formulas and their
// limits (no overlap modelling yet; the fp32 GEMM rate is assumed).
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_ANALYSIS_COSTMODEL_H
#define COLOSSAL_ANALYSIS_COSTMODEL_H

#include "colossal/runtime/OpTable.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlir::colossal {

/// Parses a byte size: plain bytes ("1048576"), scientific ("1e9"), or a
/// number with a unit: K/M/G/T + "iB" (powers of 1024: "24GiB", "1.5MiB")
/// or "B" (powers of 1000: "24GB"); "B" alone is bytes. Case-insensitive
/// units; no spaces. std::nullopt for anything else, a negative or
/// non-finite value, or one beyond 2^63 bytes. Fractions round down.
std::optional<uint64_t> parseByteSize(llvm::StringRef text);

/// The GEMM rate for matmuls whose smallest dim min(M, N, K) is at least
/// `minDim`: layer-wide GEMMs run near peak, thin ones (768-wide, attention's
/// K = head dim) far below it.
struct GemmRate {
  uint64_t minDim = 0;
  double flopsPerS = 0;
};

/// What the cost model knows of a machine: one GPU, its host link, its CPU.
/// Parsed from JSON (devices/h200.json is the default; docs/planner.md
/// documents every field).
struct DeviceProfile {
  std::string name;
  uint64_t deviceMemoryBytes = 0; ///< usable device memory: the default budget
  uint64_t hostMemoryBytes = 0;   ///< 0: not given
  double hbmBytesPerS = 0;        ///< bytes read + written per second
  double kernelFloorS = 0;        ///< the least time of any kernel (launch)
  /// Per element type, classes sorted by decreasing minDim, the last with
  /// minDim 0. f32 is always present; a dtype without an entry uses f32's.
  std::map<::colossal::runtime::DType, std::vector<GemmRate>> gemm;
  double h2dBytesPerS = 0, d2hBytesPerS = 0;
  double bidirectionalBytesPerS = 0; ///< both directions at once, in total
  double copyLatencyS = 0;           ///< the fixed cost of one copy call
  double cpuAdamwParamsPerS = 0;     ///< host-resident AdamW, all cores
  double cpuBytesPerS = 0;           ///< other host kernels: memory bound
  /// The host's memory bandwidth, shared by the host kernels and the PCIe
  /// copies' DMA ("host_memory_bytes_per_s"; 0: not modelled). When set,
  /// every host kernel takes bytes x (1 + D / H) / this, H being the step's
  /// host-kernel bytes and D its copies' bytes: the DMA traffic spread over
  /// the host work it overlaps (the host optimizer of an offloaded plan
  /// runs while the copies stream).
  double hostMemoryBytesPerS = 0;
  /// What fraction of its roofline time (max(bytes / hbm, flops / rate)) a
  /// device kernel of this kind achieves, in (0, 1]: "kernel_efficiency"
  /// in the JSON, by op name, fitted from traces (bench/fit_efficiency.py).
  /// A kind without an entry is taken at its roofline.
  std::map<::colossal::runtime::OpKind, double> kernelEfficiency;
  std::vector<std::string> notes;    ///< where the numbers come from

  /// The rate for a matmul of `dtype` whose smallest dim is `minDim`.
  double gemmFlopsPerS(::colossal::runtime::DType dtype, uint64_t minDim) const;
};

/// Parses a profile. Errors name the field and say what was expected:
/// "field 'gemm_tflops.bf16[1].tflops': expected a positive number, got
/// \"fast\"". Unknown fields are errors (a misspelt rate must not silently
/// fall back to a default).
llvm::Expected<DeviceProfile> parseDeviceProfile(llvm::StringRef jsonText);

/// One instruction as the stream analyses (below) see it.
struct StreamInstr {
  enum class Sync : uint8_t { None, Record, Wait };
  uint32_t stream = 0;
  Sync sync = Sync::None;
  int64_t event = -1;  ///< Record / Wait: the event index
  double seconds = 0;  ///< predicted duration of one run (list schedule)
};

/// Where a kernel's operands live, or a copy's ends.
enum class Placement : uint8_t { Device, Host };

/// One plan instruction, as the cost model sees it.
struct CostInstr {
  enum class Kind : uint8_t { Kernel, Copy, Event };
  Kind kind = Kind::Kernel;
  /// Kernels: the op-table kind, operand and result types, attributes (only
  /// matmul's transpose_a and attention's causal are read; attributes of
  /// another kind, or none, are ignored).
  ::colossal::runtime::OpKind op = ::colossal::runtime::OpKind::Identity;
  std::vector<::colossal::runtime::TensorType> inputs, outputs;
  ::colossal::runtime::Attrs attrs;
  /// Kernels: where their results live (host: run by the CPU). Copies: the
  /// source; `copyTo` the target. A copy's bytes are inputs[0]'s.
  Placement placement = Placement::Device;
  Placement copyTo = Placement::Device;
  /// How many times one step runs it: grad-accum for micro_step's
  /// instructions, 1 for the rest.
  uint32_t repeat = 1;
  /// The stream it runs on, and for an event op its kind and index: the
  /// list schedule's edges (StreamInstr). `program`: consecutive
  /// instructions of one program run together, programs one after another.
  uint32_t stream = 0;
  StreamInstr::Sync sync = StreamInstr::Sync::None;
  int64_t event = -1;
  uint32_t program = 0;
};

/// Which queue an instruction occupies.
enum class Resource : uint8_t { None, Compute, H2D, D2H, Cpu };

struct InstrCost {
  double seconds = 0; ///< one run of the instruction
  Resource resource = Resource::None;
  double flops = 0;   ///< matmuls: 2 x M x N x K x batch
  uint64_t bytes = 0; ///< bytes read + written (copies: bytes moved)
  bool isGemm = false;
  bool atFloor = false; ///< took the profile's per-kernel floor
};

/// The step: every instruction's cost (one run) and the totals (x repeat).
struct StepCost {
  std::vector<InstrCost> instrs;
  double gemmS = 0;          ///< device matmuls
  double memoryBoundS = 0;   ///< other device kernels (and on-device copies)
  double computeS = 0;       ///< gemmS + memoryBoundS: the compute stream
  double h2dS = 0, d2hS = 0; ///< copies per direction, latency included
  /// The link: max(h2dS, d2hS, all copy bytes / bidirectional rate +
  /// latencies), since both directions at once share ~100 GB/s, not 110.
  double pcieS = 0;
  double cpuS = 0;  ///< host kernels (the CPU optimizer)
  /// The list schedule's makespan over the plan's streams and events
  /// (scheduleStreams): what overlap the plan's streams allow.
  double makespanS = 0;
  /// max(makespanS, computeS, pcieS, cpuS): the schedule, but never below
  /// a resource's busy time (the link shared by both directions).
  double stepS = 0;
  /// Per stream: its busy seconds per step (scheduleStreams's busyS).
  std::vector<double> streamBusyS;
  /// "compute", "pcie" or "cpu_optimizer": the term that sets stepS (ties
  /// go in that order).
  std::string bottleneck = "compute";
  double flops = 0;
  uint64_t h2dBytes = 0, d2hBytes = 0; ///< per step
  uint64_t numCopies = 0;
};

/// One instruction alone:
///   matmul         max(flops / gemm rate(dtype, min(M, N, K)),
///                      bytes / hbm, floor)
///   attention      max(flops / gemm rate(dtype, head dim), bytes / hbm,
///                  floor); flops 4 B H S T D (x 0.5 causal when S = T),
///                  x 2.5 for attention_grad
///   other kernels  max(bytes / hbm, floor); gather reads only the rows it
///                  gathers
///   every device kernel's roofline time above (before the floor) is
///   divided by the profile's kernel_efficiency for its kind, if any
///   host kernels   adamw: params / cpu_adamw_params_per_s; others:
///                  bytes / cpu_bytes_per_s
///   copies         bytes / link rate of their direction + latency;
///                  device to device: max(2 x bytes / hbm, floor)
///   events         0
InstrCost estimateInstr(const CostInstr &instr, const DeviceProfile &profile);

/// Every instruction, then the totals per resource and the step time.
/// `carriedStreams`: scheduleStreams's (a plan's cplan.carried_streams).
StepCost estimateStep(const std::vector<CostInstr> &instrs,
                      const DeviceProfile &profile,
                      uint32_t carriedStreams = 0);

//===----------------------------------------------------------------------===//
// Streams and events
//
// Two algorithms over the instruction list of a multi-stream plan, plain
// records in (no IR): the compiler's live ranges (which plan-order span a
// side-stream instruction occupies memory for) and the cost model's list
// schedule (when each instruction runs). Semantics as the runtime's
// (OpTable.h): an instruction runs on its stream after the stream's earlier
// instructions; a record marks the point after them; a wait holds its
// stream until the latest earlier record of its event in plan order.
//===----------------------------------------------------------------------===//

/// A program: instructions [first, first + count), run `repeat` times per
/// step. Programs run one after the other; all streams join at each end,
/// except the carried streams (a bit mask of stream indices, below): their
/// work runs on into the next program and the next step, which wait for it
/// only through events (a wait with no earlier record in its program waits
/// for the previous run's record). colossal-lower-to-plan carries the host
/// stream when the updates run across the step boundary
/// (docs/planner.md, "Updates across the step boundary").
struct StreamProgram {
  uint32_t first = 0, count = 0;
  uint32_t repeat = 1;
};

/// Plan-order span [from, to] over which instruction i holds the memory it
/// touches, as stream 0 sees it: for a stream-0 instruction [i, i]; for an
/// instruction on another stream, from = one past the last stream-0
/// instruction that happens before it (its program's first instruction if
/// none) and to = the first stream-0 instruction that happens after it (its
/// program's last if none: the program's end joins every stream but the
/// carried ones, below). A buffer
/// live over the union of its touches' spans may share bytes with any buffer
/// whose span is disjoint, whatever the streams: everything the earlier one
/// does happens before the join point, which happens before the later one's
/// first touch. An instruction of a carried stream that no stream-0
/// instruction of its program has seen runs on into the next run of the
/// program, so its span is the whole program [first, last]. Vector clocks
/// over the streams: O(instructions x streams + side-stream instructions x
/// log).
std::vector<std::pair<uint32_t, uint32_t>>
streamLiveSpans(const std::vector<StreamInstr> &instrs,
                const std::vector<StreamProgram> &programs,
                uint32_t carriedStreams = 0);

/// The list schedule of a step: each instruction starts when its stream is
/// free and, for a wait, when the event's record was reached.
///
/// With carried streams, the steady state: the step's programs run again
/// and again (each `repeat` times), the other streams join at each
/// program's end (the executor's synchronize) while the carried ones run
/// on, and a wait takes its event's latest record, of this run or an
/// earlier one. Four steps are simulated; makespanS is the mean of the last
/// two steps' lengths (end to end, the ends being where the joined streams
/// are done), and startS/finishS are the last step's, from its start.
struct StreamSchedule {
  std::vector<double> startS, finishS; ///< per instruction, one run
  /// Per stream: the sum of its instructions' seconds, x repeat.
  std::vector<double> busyS;
  /// Sum over programs of repeat x (latest finish of the program); with
  /// carried streams, the steady state's step.
  double makespanS = 0;
};
StreamSchedule scheduleStreams(const std::vector<StreamInstr> &instrs,
                               const std::vector<StreamProgram> &programs,
                               uint32_t numStreams,
                               uint32_t carriedStreams = 0);

/// One host update for chooseCarriedTail: the positions of its three
/// instructions in the plan (the carried stream's wait for its copies, the
/// kernel, its record), and where the forward first fetches its weight.
struct CarriedUpdate {
  uint32_t wait = 0, kernel = 0, record = 0;
  int64_t forwardKey = 0; ///< smaller: fetched earlier by the forward
};

/// A wait the carried plan adds: `stream` waits for `event` right before
/// instruction `before` (a fetch waiting for its weight's update).
struct AddedWait {
  uint32_t before = 0;
  uint32_t stream = 0;
  int64_t event = -1;
};

/// Which updates form the step's tail (docs/planner.md, "Updates across
/// the step boundary"): the updates are given in plan (the gradients')
/// order, all in one program; a tail is a suffix of them, moved to the end
/// of that program in forwardKey order, with `waits` added and the
/// `carriedStreams` running on. Each suffix length (up to 64 evenly spaced
/// ones when there are more updates) is scheduled in the steady state
/// (scheduleStreams); the one with the shortest step wins, the shorter
/// tail on a tie. Returns the number of updates kept in the gradients'
/// order (the tail is the rest).
size_t chooseCarriedTail(const std::vector<StreamInstr> &instrs,
                         const std::vector<StreamProgram> &programs,
                         uint32_t numStreams, uint32_t carriedStreams,
                         const std::vector<CarriedUpdate> &updates,
                         const std::vector<AddedWait> &waits,
                         double *stepS = nullptr);

} // namespace mlir::colossal

#endif // COLOSSAL_ANALYSIS_COSTMODEL_H
