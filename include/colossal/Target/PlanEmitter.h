//===- PlanEmitter.h - cplan functions -> the runtime's Plan ----*- C++ -*-===//
#ifndef COLOSSAL_TARGET_PLANEMITTER_H
#define COLOSSAL_TARGET_PLANEMITTER_H

#include "colossal/runtime/PlanFormat.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::colossal {

/// Converts a plan function (after colossal-assign-offsets) into the
/// runtime's in-memory Plan: arenas, buffers, one tensor per view, one
/// instruction per kernel/copy, bindings with constant bytes. The result
/// passes ::colossal::runtime::validatePlan (checked here); any failure is emitted at the
/// offending op.
FailureOr<::colossal::runtime::Plan> buildPlan(func::FuncOp func);

} // namespace mlir::colossal

#endif // COLOSSAL_TARGET_PLANEMITTER_H
