//===- PlanDialect.h - The cplan plan dialect -------------------*- C++ -*-===//
#ifndef COLOSSAL_DIALECT_PLAN_PLANDIALECT_H
#define COLOSSAL_DIALECT_PLAN_PLANDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "colossal/Dialect/Plan/PlanDialect.h.inc"
#include "colossal/Dialect/Plan/PlanEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "colossal/Dialect/Plan/PlanAttrs.h.inc"
#define GET_TYPEDEF_CLASSES
#include "colossal/Dialect/Plan/PlanTypes.h.inc"
#define GET_OP_CLASSES
#include "colossal/Dialect/Plan/PlanOps.h.inc"

#endif // COLOSSAL_DIALECT_PLAN_PLANDIALECT_H
