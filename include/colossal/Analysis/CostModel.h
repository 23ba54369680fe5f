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
  std::vector<std::string> notes;    ///< where the numbers come from

  /// The rate for a matmul of `dtype` whose smallest dim is `minDim`.
  double gemmFlopsPerS(::colossal::runtime::DType dtype, uint64_t minDim) const;
};

/// Parses a profile. Errors name the field and say what was expected:
/// "field 'gemm_tflops.bf16[1].tflops': expected a positive number, got
/// \"fast\"". Unknown fields are errors (a misspelt rate must not silently
/// fall back to a default).
llvm::Expected<DeviceProfile> parseDeviceProfile(llvm::StringRef jsonText);

/// Where a kernel's operands live, or a copy's ends.
enum class Placement : uint8_t { Device, Host };

/// One plan instruction, as the cost model sees it.
struct CostInstr {
  enum class Kind : uint8_t { Kernel, Copy, Event };
  Kind kind = Kind::Kernel;
  /// Kernels: the op-table kind, operand and result types, attributes (only
  /// matmul's transpose_a is read; attributes of another kind are ignored).
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
  double stepS = 0; ///< max(computeS, pcieS, cpuS): perfect overlap
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
///   other kernels  max(bytes / hbm, floor); gather reads only the rows it
///                  gathers
///   host kernels   adamw: params / cpu_adamw_params_per_s; others:
///                  bytes / cpu_bytes_per_s
///   copies         bytes / link rate of their direction + latency;
///                  device to device: max(2 x bytes / hbm, floor)
///   events         0
InstrCost estimateInstr(const CostInstr &instr, const DeviceProfile &profile);

/// Every instruction, then the totals per resource and the step time.
StepCost estimateStep(const std::vector<CostInstr> &instrs,
                      const DeviceProfile &profile);

} // namespace mlir::colossal

#endif // COLOSSAL_ANALYSIS_COSTMODEL_H
