//===- AttentionTC.h - Tensor-core attention: when it applies -------------===//
//
// The choice between the two attention kernels (Attention.cu, SIMT, any
// float type; AttentionTC.cu, bf16/f16 on the tensor cores), and the scratch
// the tensor-core backward needs, which the backend reserves with the rest
// of its planned scratch (CudaBackend.cpp, scratchBytes).
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CUDA_ATTENTIONTC_H
#define COLOSSAL_RUNTIME_CUDA_ATTENTIONTC_H

#include "CudaKernels.h"

#include <cstddef>

namespace colossal::runtime::cuda {

/// True when the tensor-core kernels take this dtype and head dim: bf16 or
/// f16, D 64, 80, 96 or 128. The call-time checks (pointer alignment, the device,
/// COLOSSAL_ATTENTION_KERNEL=simple, enough scratch) come on top.
bool attentionTensorCoreShape(DType dtype, int64_t depth);

/// Bytes of scratch attention_grad needs on the tensor-core path: one f32
/// per query row (delta = rowsum(dout * out)), then the fused backward's
/// f32 dq sums, at most 32 MiB of them (more only when one batch's heads
/// need more; COLOSSAL_ATTENTION_DQ_SCRATCH overrides); 0 where the path
/// never applies. q is [batch, heads, rows, depth].
size_t attentionTensorCoreScratchBytes(DType dtype, int64_t batch,
                                       int64_t heads, int64_t rows,
                                       int64_t depth);

/// The blocks the tensor-core kernels take for head dim `depth` and
/// `length` query rows (forward) or keys (backward), as
/// COLOSSAL_ATTENTION_BLOCK and the defaults pick them: "64" (4 warps, 64
/// rows or keys a block), "64s" (the same, scheduled heaviest first over
/// the whole grid) or "128" (8 warps, 128 a block). Read at every call; an
/// unknown value is reported once and the default used.
const char *attentionBlock(int64_t depth, int64_t length, bool backward);

/// True when COLOSSAL_ATTENTION_KERNEL=cudnn asks for cuDNN's fused
/// attention (AttentionCudnn.h; the backend tries it first and runs our
/// kernels, as under auto, where cuDNN cannot take the call). Read at every
/// call, validated with the variable's other values.
bool attentionCudnnRequested();

/// True when this call runs on the tensor cores (every check above).
bool attentionUsesTensorCores(const AttentionCall &call, bool backward);

/// The tensor-core forward or backward; only for calls that
/// attentionUsesTensorCores accepts.
cudaError_t launchAttentionTensorCore(cudaStream_t stream,
                                      const AttentionCall &call,
                                      bool backward);

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_ATTENTIONTC_H
