//===- PlanReport.h - The planner's report and budget check ------*- C++
//-*-===//
//
// What `colossal-opt compile` says about a plan's memory and time: the
// planned peak and lower bound per memory space, what is live at the device
// peak, bytes moved per step, the predicted step time and its bottleneck;
// as summary lines, --report-json FILE and a self-contained --report
// FILE.html with the memory timeline. It also refuses a plan whose device
// peak exceeds the budget. The IR is read once into plain records; the
// numbers come from MemoryTimeline and CostModel (lib/Analysis).
// docs/planner.md explains how to read it.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_TARGET_PLANREPORT_H
#define COLOSSAL_TARGET_PLANREPORT_H

#include "colossal/Analysis/CostModel.h"
#include "colossal/Analysis/MemoryTimeline.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlir::colossal {

/// The compile flags of the planner and its report.
struct PlanReportOptions {
  std::optional<uint64_t> budgetBytes; ///< --budget; else the profile's memory
  std::string deviceProfilePath;       ///< --device-profile; else the default
  std::string reportJsonPath;          ///< --report-json
  std::string reportHtmlPath;          ///< --report
  std::string policy = "auto";         ///< --policy: cuda or auto (= cuda)
};

/// Takes the planner's flags (--budget, --device-profile, --report-json,
/// --report, --policy; "--flag VALUE" or "--flag=VALUE") out of argv into
/// `options`, shifting the other arguments down and decreasing argc, so that
/// the caller's parser never sees them. Returns "" or a usage error message
/// (an invalid size, an unknown policy, `--policy cpu`, which is not
/// implemented yet).
std::string takePlanReportArgs(int &argc, char **argv,
                               PlanReportOptions &options);

/// A program's instruction range [first, last]; empty programs have
/// first == last + 1.
struct PlanProgramRange {
  std::string name;
  uint32_t first = 0, last = 0;
};

/// A copy between the spaces, for the picture's ticks.
struct PlanCopyMark {
  uint32_t instruction = 0;
  bool toDevice = false; ///< a prefetch (host to device); else an offload
  uint64_t bytes = 0;
};

/// Everything the summary, the JSON and the HTML show. Valid on its own:
/// it holds no IR.
struct PlanReport {
  std::string model; ///< the model file's name, for titles
  std::string kind;  ///< "training step (adamw, fp32)" or "forward"
  DeviceProfile profile;
  std::string profilePath;
  uint64_t budgetBytes = 0;
  bool budgetFromProfile = true;
  std::string policy;
  uint32_t numInstructions = 0;
  uint32_t gradAccum = 1; ///< micro_step runs per step
  /// cplan.carried_streams as a bit mask: the streams whose work runs on
  /// into the next step (the cost's makespan is then the steady state's).
  uint32_t carriedStreams = 0;
  std::array<uint64_t, kNumSpaces> plannedPeakBytes{}; ///< cplan.arena_bytes
  std::array<uint64_t, kNumSpaces>
      lowerBoundBytes{}; ///< cplan.lower_bound_bytes
  MemoryTimeline timeline;
  /// The instruction at each space's timeline peak: its node (the ONNX
  /// node name from its location; may be empty) and op ("matmul").
  std::array<std::string, kNumSpaces> peakNode, peakOp;
  std::vector<PlanProgramRange> programs;
  /// The first instruction after the loss is computed (training plans).
  std::optional<uint32_t> backwardStart;
  std::vector<PlanCopyMark> copies;
  StepCost cost;
  /// The predicted time of each kind of kernel per step (x repeat), by
  /// stream resource: "matmul", "fused_elementwise", ... on the device and
  /// "adamw@host" for host kernels; what bench/fit_efficiency.py divides
  /// by a trace's measured time of the same kind.
  struct KindCost {
    uint64_t count = 0;
    double seconds = 0;
    double bytes = 0, flops = 0;
  };
  std::map<std::string, KindCost> perKind;
  /// Trained weights whose master copy and optimizer state live on the
  /// device / in host memory, and those bytes (master plus state).
  uint32_t optimizerDeviceWeights = 0, optimizerHostWeights = 0;
  uint64_t optimizerDeviceBytes = 0, optimizerHostBytes = 0;
};

/// Reads the plan function of `module` (after colossal-assign-offsets) into
/// a report: loads the device profile (--device-profile, else
/// share/colossal/devices/h200.json beside the executable's bin/), builds the
/// timeline and the step estimate. On failure `err` says why (an unreadable
/// or malformed profile names the file and field).
FailureOr<PlanReport> buildPlanReport(ModuleOp module,
                                      const PlanReportOptions &options,
                                      llvm::StringRef modelPath,
                                      std::string &err);

/// Fails when the planned device peak exceeds the budget, saying by how much
/// and what is live at the peak.
LogicalResult checkPlanBudget(const PlanReport &report, std::string &err);

/// The summary lines (two-space indented, as the rest of compile's summary).
void printPlanReportSummary(llvm::raw_ostream &os, const PlanReport &report);

/// The JSON report and the HTML page.
void writePlanReportJson(llvm::raw_ostream &os, const PlanReport &report);
void writePlanReportHtml(llvm::raw_ostream &os, const PlanReport &report);

/// Writes --report-json and --report when given (through a temporary name,
/// so a failed write leaves no half file).
LogicalResult writePlanReports(const PlanReport &report,
                               const PlanReportOptions &options,
                               std::string &err);

} // namespace mlir::colossal

#endif // COLOSSAL_TARGET_PLANREPORT_H
