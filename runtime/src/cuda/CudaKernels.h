//===- CudaKernels.h - Launchers of the CUDA kernels, one per op family ---===//
//
// Internal to the CUDA backend. CudaBackend.cpp (host C++) decodes an
// instruction into these plain arguments and calls the launcher; the .cu
// files define them. Every launcher enqueues its kernels on `stream` and
// returns the launch status (cudaGetLastError()), never synchronising.
//
// Numerics follow the CPU reference (Kernels.cpp): elements are loaded as
// double (floats) or int64 (integers and bools), computed in that type and
// stored once in the output dtype with the same conversions as
// storeFromDouble/storeFromInt64. Reductions, softmax, layer_norm and the
// loss accumulate in double. Exceptions, each argued where it is: binary
// add/sub/mul/div/max/min of f32/bf16/f16 in f32 (bit-identical), softmax
// and the loss gradient in f32, matmul (cuBLASLt). The .cu files are
// compiled with --fmad=false, so a multiply followed by an add rounds as on
// the CPU.
//
// Data-dependent failures (an index out of range, a label outside [0, C),
// an integer division by zero, a negative optimizer step) are recorded in a
// DeviceError by the first kernel that finds one (ErrorSink) and read back
// by the backend's synchronize(). A kernel that finds one writes something
// harmless (zeros) instead of reading out of bounds.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CUDA_CUDAKERNELS_H
#define COLOSSAL_RUNTIME_CUDA_CUDAKERNELS_H

#include "colossal/runtime/DType.h"
#include "colossal/runtime/OpTable.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace colossal::runtime::cuda {

inline constexpr int kMaxDims = 8;

/// A shape or strides passed to a kernel by value.
struct Dims {
  int rank = 0;
  int64_t d[kMaxDims] = {};
};

/// The number of elements of a tensor of these dims (1 for rank 0).
inline int64_t elementCount(const Dims &dims) {
  int64_t n = 1;
  for (int d = 0; d < dims.rank; ++d)
    n *= dims.d[d];
  return n;
}

/// Row-major element strides of a dense tensor of these dims.
inline Dims rowMajorStrides(const Dims &dims) {
  Dims strides;
  strides.rank = dims.rank;
  int64_t stride = 1;
  for (int d = dims.rank - 1; d >= 0; --d) {
    strides.d[d] = stride;
    stride *= dims.d[d];
  }
  return strides;
}

enum ErrorCode : int32_t {
  kErrNone = 0,
  /// a: the index, b: the dim size (range [-b, b)), c: the dim or -1.
  kErrIndexRange = 1,
  /// a: the label, b: the classes, c: ignore_index.
  kErrLabelRange = 2,
  kErrDivByZero = 3,
  kErrPowZeroNegative = 4,
  /// a: the step.
  kErrNegativeStep = 5,
};

/// In device memory; `claimed` goes 0 -> 1 once, by the first reporter.
struct DeviceError {
  uint32_t claimed;
  int32_t code;
  uint64_t instr;
  int64_t a, b, c;
};

/// The arithmetic of the kernels that have an f32 and an f64 variant (docs/
/// cuda.md, "f32 reductions and fused elementwise"): kF32 is the default
/// since session 3's H200 run, kF64 the reference, selected by
/// COLOSSAL_CUDA_REDUCE=f64 (reduce_*) and COLOSSAL_CUDA_FUSED=f64
/// (fused_elementwise), read once when the backend starts.
enum class Precision : uint8_t { kF64, kF32 };

/// Where a kernel reports a failure, and which instruction it runs.
struct ErrorSink {
  DeviceError *error;
  uint64_t instr;
};

/// Element size of a dtype (1, 2, 4 or 8).
inline int elementBytes(DType dtype) {
  return static_cast<int>(dtypeSizeBytes(dtype));
}

// ---- Elementwise.cu ------------------------------------------------------

/// Unary float ops (in f64) and neg/abs/relu/not on integers and bools;
/// in and out have one shape (n elements).
cudaError_t launchUnary(cudaStream_t stream, OpKind kind, bool tanhGelu,
                        DType inType, DType outType, int64_t n, const void *in,
                        void *out);
cudaError_t launchCast(cudaStream_t stream, DType inType, DType outType,
                       int64_t n, const void *in, void *out);
/// Arithmetic, logic and comparisons with broadcasting: `aStrides` and
/// `bStrides` are element strides over `outDims` (0 where broadcast).
cudaError_t launchBinary(cudaStream_t stream, ErrorSink sink, OpKind kind,
                         DType inType, DType outType, const Dims &outDims,
                         const Dims &aStrides, const Dims &bStrides,
                         const void *a, const void *b, void *out);
cudaError_t launchWhere(cudaStream_t stream, DType condType, int elemBytes,
                        const Dims &outDims, const Dims &condStrides,
                        const Dims &xStrides, const Dims &yStrides,
                        const void *cond, const void *x, const void *y,
                        void *out);
/// out[i] = in[base + sum_d index_d * inStrides[d]] over `outDims`
/// (expand, transpose, slice).
cudaError_t launchStridedCopy(cudaStream_t stream, int elemBytes,
                              const Dims &outDims, const Dims &inStrides,
                              int64_t base, const void *in, void *out);
/// out[base + sum_d index_d * outStrides[d]] = in[i] over `inDims`
/// (slice_grad, after the output was zeroed).
cudaError_t launchStridedScatter(cudaStream_t stream, int elemBytes,
                                 const Dims &inDims, const Dims &outStrides,
                                 int64_t base, const void *in, void *out);
/// Rows of `rowElems` elements: input i fills columns [offset, offset +
/// chunk) of each of `outer` output rows.
cudaError_t launchConcatPart(cudaStream_t stream, int elemBytes, int64_t outer,
                             int64_t chunk, int64_t rowElems, int64_t offset,
                             const void *in, void *out);
/// Splat of `valueBits` (the element's bytes, little-endian).
cudaError_t launchFill(cudaStream_t stream, int elemBytes, int64_t n,
                       uint64_t valueBits, void *out);
cudaError_t launchTrilu(cudaStream_t stream, int elemBytes, int64_t n,
                        int64_t rows, int64_t cols, int64_t k, bool upper,
                        const void *in, void *out);
/// mode 0 constant (valueBits), 1 reflect, 2 edge; `pads` holds the rank
/// leading pads.
cudaError_t launchPad(cudaStream_t stream, int elemBytes, const Dims &inDims,
                      const Dims &outDims, const Dims &pads, int mode,
                      uint64_t valueBits, const void *in, void *out);
/// torch.optim.AdamW on f32 param/m/v, grad of any float dtype; lr (f32 [])
/// and step (i64 []) are read on the device. An f32 or bf16 gradient runs
/// in f32, in PyTorch's operation order, as the CPU's default AdamW; `exact`
/// (COLOSSAL_CPU_ADAMW=exact) or another gradient dtype runs in f64.
cudaError_t launchAdamW(cudaStream_t stream, ErrorSink sink, int64_t n,
                        double beta1, double beta2, double eps,
                        double weightDecay, const float *param, DType gradType,
                        const void *grad, const float *m, const float *v,
                        const float *lr, const int64_t *step, float *paramOut,
                        float *mOut, float *vOut, bool exact,
                        const float *divisor = nullptr);
/// adamw_norm (OpTable.h): adamw on grad / divisor, and the sum of the
/// scaled gradient's squares into *sumOfSquares (f32 []). `scratch` holds
/// adamWNormScratchBytes(): one double per block, summed in block order.
constexpr int kAdamWNormBlocks = 2048;
size_t adamWNormScratchBytes();
cudaError_t launchAdamWNorm(cudaStream_t stream, ErrorSink sink, int64_t n,
                            double beta1, double beta2, double eps,
                            double weightDecay, const float *param,
                            DType gradType, const void *grad, const float *m,
                            const float *v, const float *lr,
                            const int64_t *step, const float *divisor,
                            float *paramOut, float *mOut, float *vOut,
                            float *sumOfSquares, double *scratch, bool exact);
cudaError_t launchSgd(cudaStream_t stream, ErrorSink sink, int64_t n,
                      double momentum, double dampening, double weightDecay,
                      bool nesterov, const float *param, DType gradType,
                      const void *grad, const float *buf, const float *lr,
                      const int64_t *step, float *paramOut, float *bufOut);

// ---- Reduce.cu -----------------------------------------------------------

/// reduce_sum/mean/max/min: each output element reduces `reduced` input
/// elements. `keptDims`/`keptStrides` map an output index to its first input
/// element; `redDims`/`redStrides` walk the reduced ones. kF64 (the
/// validated default): with few outputs of many elements the work is split
/// over reduceParts() blocks per output, whose partial results go to
/// `scratch` (outCount x parts doubles; null: one warp per output). kF32
/// (the default, docs/cuda.md): f32/bf16/f16 inputs whose reduced axes are
/// adjacent accumulate in f32 by the row or column path, partials as floats
/// in `scratch`; other inputs take the kF64 path. `scratch` must hold
/// reduceScratchBytes() bytes.
cudaError_t launchReduce(cudaStream_t stream, OpKind kind, DType dtype,
                         int64_t outCount, const Dims &keptDims,
                         const Dims &keptStrides, const Dims &redDims,
                         const Dims &redStrides, const void *in, void *out,
                         void *scratch, Precision precision);
/// Blocks per output element the kF64 path uses (1: a warp per output).
int64_t reduceParts(DType dtype, int64_t outCount, int64_t reduced);
/// Scratch bytes launchReduce needs with these arguments (0: none).
size_t reduceScratchBytes(Precision precision, DType dtype, int64_t outCount,
                          const Dims &keptDims, const Dims &keptStrides,
                          const Dims &redDims, const Dims &redStrides);
/// softmax / log_softmax over the middle dim of [outer, length, inner].
cudaError_t launchSoftmax(cudaStream_t stream, bool logSoftmax, DType dtype,
                          int64_t outer, int64_t length, int64_t inner,
                          const void *in, void *out);
/// Rows of `inner` elements; bias may be null.
cudaError_t launchLayerNorm(cudaStream_t stream, DType xType, DType scaleType,
                            DType biasType, int64_t outer, int64_t inner,
                            double epsilon, const void *x, const void *scale,
                            const void *bias, void *out);
// ---- Attention.cu --------------------------------------------------------

/// One attention or attention_grad call (OpTable.h): q [B, Hq, S, D], k, v
/// [B, Hkv, T, D], all of `dtype` (f32, bf16 or f16), bias of that dtype or
/// null with element strides over [B, Hq, S, T] (0 broadcasts). The
/// forward writes o and lseOut; the backward reads out, lse, dout and
/// writes dq, dk, dv. cudaErrorNotSupported for D > 128, f64, or more than
/// 65535 (batch, head) pairs.
struct AttentionCall {
  DType dtype;
  int64_t batch, heads, kvHeads, rows, cols, depth;
  double scale;
  bool causal;
  const void *q, *k, *v, *bias;
  int64_t biasStride[4];
  const void *out = nullptr, *dout = nullptr;
  const float *lse = nullptr;
  void *o = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float *lseOut = nullptr;
  /// The backend's scratch, for the tensor-core backward (AttentionTC.h).
  void *scratch = nullptr;
  size_t scratchBytes = 0;
};
cudaError_t launchAttentionForward(cudaStream_t stream,
                                   const AttentionCall &call);
cudaError_t launchAttentionBackward(cudaStream_t stream,
                                    const AttentionCall &call);

/// dx, dscale, dbias; `stats` is scratch of layerNormGradScratchBytes():
/// the rows' mean and rstd, then (many rows) the column pass's per-chunk
/// partial sums, added in chunk order (deterministic).
cudaError_t launchLayerNormGrad(cudaStream_t stream, DType xType,
                                DType scaleType, DType dyType, int64_t outer,
                                int64_t inner, double epsilon, const void *x,
                                const void *scale, const void *dy, void *dx,
                                DType dscaleType, void *dscale, void *dbias,
                                double *stats);
size_t layerNormGradScratchBytes(int64_t outer, int64_t inner);
cudaError_t launchCumSum(cudaStream_t stream, DType dtype, int64_t outer,
                         int64_t length, int64_t inner, bool exclusive,
                         bool reverse, const void *in, void *out);
/// scores [batch, classes, inner]; `losses` is scratch of batch x inner
/// doubles (used when reduction != 0).
cudaError_t launchCrossEntropy(cudaStream_t stream, ErrorSink sink,
                               DType scoreType, DType outType,
                               DType labelType, int64_t batch,
                               int64_t classes, int64_t inner,
                               int64_t ignoreIndex, int64_t reduction,
                               const void *scores, const void *labels,
                               void *out, double *losses);
/// `count` is scratch of one int64.
cudaError_t launchCrossEntropyGrad(
    cudaStream_t stream, ErrorSink sink, DType scoreType, DType labelType,
    DType dlossType, int64_t batch, int64_t classes, int64_t inner,
    int64_t ignoreIndex, int64_t reduction, const void *scores,
    const void *labels, const void *dloss, void *out, int64_t *count);

// ---- Index.cu ------------------------------------------------------------

/// gather over [outer, length, inner] with `count` indices.
cudaError_t launchGather(cudaStream_t stream, ErrorSink sink, int elemBytes,
                         int64_t outer, int64_t length, int64_t inner,
                         DType indexType, int64_t count, const void *indices,
                         const void *data, void *out);
/// ONNX GatherND: `dataDims` of the data, tuples of `depth` indices.
cudaError_t launchGatherND(cudaStream_t stream, ErrorSink sink, int elemBytes,
                           const Dims &dataDims, int batchDims, int depth,
                           int64_t batches, int64_t tuplesPerBatch,
                           DType indexType, const void *indices,
                           const void *data, void *out);
cudaError_t launchGatherElements(cudaStream_t stream, ErrorSink sink,
                                 int elemBytes, const Dims &dataDims, int axis,
                                 const Dims &indexDims, DType indexType,
                                 const void *indices, const void *data,
                                 void *out);
/// Deterministic: each output element sums, in index order, the gradient
/// elements that gather_elements read from it.
cudaError_t launchGatherElementsGrad(cudaStream_t stream, ErrorSink sink,
                                     DType gradType, DType outType,
                                     const Dims &outDims, int axis,
                                     const Dims &indexDims, DType indexType,
                                     const void *indices, const void *grad,
                                     void *out);
/// Deterministic: each output row sums, in index order, the gradient rows
/// whose index selects it (indices sorted first). `normalized` is scratch
/// of gatherGradScratchBytes(count, length) bytes.
cudaError_t launchGatherGrad(cudaStream_t stream, ErrorSink sink,
                             DType gradType, DType outType, int64_t outer,
                             int64_t length, int64_t inner, DType indexType,
                             int64_t count, const void *indices,
                             int64_t paddingIdx, const void *grad, void *out,
                             int64_t *normalized);
/// Scratch launchGatherGrad needs: the normalised indices, sort keys and
/// cub's temporary storage.
size_t gatherGradScratchBytes(int64_t count, int64_t length);

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_CUDAKERNELS_H
