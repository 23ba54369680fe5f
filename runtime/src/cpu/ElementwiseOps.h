//===- ElementwiseOps.h - Per-element functions of the CPU kernels -*- C++ -*-===//
//
// The scalar functions behind the unary, binary and comparison kernels of
// Kernels.cpp, shared with fused_elementwise (FusedElementwise.cpp) so that
// a fused chain and the unfused ops run the same code on every element.
// Private to the CPU backend. Floats in double, integers in int64 with
// two's-complement wrap-around (Kernels.cpp's header says why).
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CPU_ELEMENTWISEOPS_H
#define COLOSSAL_RUNTIME_CPU_ELEMENTWISEOPS_H

#include "colossal/runtime/OpTable.h"

#include <cstdint>

namespace colossal::runtime {

/// neg ... gelu on a float; other kinds return x.
double unaryFloat(OpKind kind, bool tanhGelu, double x);
/// neg, abs, relu, not on an integer or bool; other kinds return x.
int64_t unaryInt(OpKind kind, int64_t x);
/// equal, less, less_equal, greater; any other kind is greater_equal.
bool compare(OpKind kind, double a, double b);
bool compare(OpKind kind, int64_t a, int64_t b);
bool isComparison(OpKind kind);
/// add sub mul div pow max min on floats.
double binaryFloat(OpKind kind, double a, double b);
/// add sub mul div pow max min and or xor on integers; sets `divByZero` on
/// an integer division by zero or zero to a negative power.
int64_t binaryInt(OpKind kind, int64_t a, int64_t b, bool &divByZero);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_CPU_ELEMENTWISEOPS_H
