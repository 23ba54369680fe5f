//===- PlanCost.h - The cost model's view of plan instructions --*- C++ -*-===//
//
// What the passes that place copies by lead time share: the rates (the
// `device-profile` file, else built-in H200 figures) and one instruction's
// predicted time. Defined with colossal-offload-across-gaps, which placed
// the first such copies; colossal-lower-to-plan times its weight fetches
// with the same figures.
//
//===----------------------------------------------------------------------===//

#ifndef COLOSSAL_TRANSFORMS_PLANCOST_H
#define COLOSSAL_TRANSFORMS_PLANCOST_H

#include "colossal/Analysis/CostModel.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Operation.h"
#include "mlir/Support/LogicalResult.h"

namespace mlir::colossal {

/// The rates lead times are computed from: the profile at `path`, else
/// (empty path) devices/h200.json's figures built in. An unreadable or
/// malformed file is an error on `at` naming the option's value.
FailureOr<DeviceProfile> loadLeadProfile(Operation *at, llvm::StringRef path);

/// The cost model's time for one plan instruction (0 for events and
/// anything it cannot read: a shorter lead, never a wrong plan).
double predictedSeconds(Operation *op, const DeviceProfile &profile);

/// The stream a plan instruction runs on (kernels, copies, event ops); 0
/// for anything else.
int64_t instructionStream(Operation *op);

/// The plan's `cplan.carried_streams` (the streams whose work runs on into
/// the next program and step: colossal-lower-to-plan's host stream when the
/// updates cross the step boundary) as the bit mask streamLiveSpans and
/// scheduleStreams take; 0 when the plan joins every stream.
inline uint32_t carriedStreamsOf(Operation *plan) {
  uint32_t mask = 0;
  if (auto list = plan->getAttrOfType<ArrayAttr>("cplan.carried_streams"))
    for (Attribute a : list)
      if (auto i = dyn_cast<IntegerAttr>(a))
        if (i.getInt() >= 0 && i.getInt() < 32)
          mask |= 1u << i.getInt();
  return mask;
}

} // namespace mlir::colossal

#endif // COLOSSAL_TRANSFORMS_PLANCOST_H
