//===- Attention.h - CPU reference kernels of fused attention ---*- C++ -*-===//
//
// attention and attention_grad (OpTable.h): the reference the CUDA kernels
// are checked against. Private to the CPU backend; runCpuKernel dispatches
// here after its count and no-effect checks.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CPU_ATTENTION_H
#define COLOSSAL_RUNTIME_CPU_ATTENTION_H

#include "colossal/runtime/OpTable.h"
#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <vector>

namespace colossal::runtime {

/// attention (q, k, v [, bias]) -> (out, lse). Types as inferOutputTypes
/// gives them; outputs must not overlap inputs.
Status runAttentionCpu(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                       const std::vector<TensorRef> &outputs);

/// attention_grad (q, k, v [, bias], out, lse, dout) -> (dq, dk, dv).
Status runAttentionGradCpu(const Attrs &attrs,
                           const std::vector<TensorRef> &inputs,
                           const std::vector<TensorRef> &outputs);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_CPU_ATTENTION_H
