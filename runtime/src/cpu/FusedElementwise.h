//===- FusedElementwise.h - CPU kernel of fused_elementwise -------*- C++ -*-===//
//
// Private to the CPU backend; runCpuKernel dispatches here after its count
// and no-effect checks.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CPU_FUSEDELEMENTWISE_H
#define COLOSSAL_RUNTIME_CPU_FUSEDELEMENTWISE_H

#include "colossal/runtime/OpTable.h"
#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <vector>

namespace colossal::runtime {

/// Runs the register program of `attrs` (OpTable.h, FusedProgram.h) once per
/// element of `out`. Types as inferOutputTypes gives them; `out` may alias
/// an input of its own type exactly (every input element is read before
/// the same element is written). An integer division by zero anywhere in
/// the program is an error naming the record.
Status runFusedElementwiseCpu(const Attrs &attrs,
                              const std::vector<TensorRef> &inputs,
                              const TensorRef &out);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_CPU_FUSEDELEMENTWISE_H
