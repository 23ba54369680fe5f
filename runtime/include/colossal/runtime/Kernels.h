//===- Kernels.h - Exact CPU kernels for every OpKind -------------*- C++ -*-===//
//
// The numerical reference: simple loops, f64 accumulation for reductions,
// matmul, normalisation and losses. Used by the CPU executor and by the
// compiler's constant folding, so that folding and running agree exactly.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_KERNELS_H
#define COLOSSAL_RUNTIME_KERNELS_H

#include "colossal/runtime/OpTable.h"
#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <vector>

namespace colossal::runtime {

/// Runs one op on the CPU. `inputs` and `outputs` must have the types that
/// inferOutputTypes() gives for these attrs (the caller checked that once;
/// kernels do not re-check shapes). Outputs must not overlap inputs unless
/// the op is elementwise and the types are equal, or the op is adamw or sgd
/// and the output aliases its matching input exactly (param'<-param,
/// m'<-m, v'<-v, buf'<-buf). Data-dependent failures
/// (a gather index out of range, a label out of [0, C)) return an error
/// naming the op and the offending value.
Status runCpuKernel(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                    const std::vector<TensorRef> &outputs);

/// Convenience for constant folding: infers the output types, allocates the
/// outputs and runs the kernel.
Status evaluateOp(const Attrs &attrs, const std::vector<HostTensor> &inputs,
                  std::vector<HostTensor> &outputs);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_KERNELS_H
