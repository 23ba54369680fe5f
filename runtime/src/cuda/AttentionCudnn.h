//===- AttentionCudnn.h - attention through cuDNN 9's fused SDPA ---------===//
//
// An opt-in path (COLOSSAL_ATTENTION_KERNEL=cudnn) that runs attention and
// attention_grad (OpTable.h) through cuDNN 9's fused flash attention
// (fprop and bprop), written against the C backend graph API
// (cudnn_graph.h: cudnnBackendCreateDescriptor / SetAttribute / Finalize,
// operation graphs, engine heuristics, execution plans, variant packs), no
// cudnn-frontend. libcudnn.so.9 is opened with dlopen at first use, so
// colossal-run has no link-time dependency on cuDNN and starts on a machine
// without it (the path then reports itself unavailable and our kernels run).
//
// NOT YET RUN ON A GPU (written in a session without one): the graph
// builder, the support predicate, the workspace layout and the descriptor
// lowering (each descriptor finalized without a device) are unit-tested in
// runtime-CudaKernelsTest; heuristics, plans and execution only ever ran
// on paper. attention-check's "cudnn" rows are the first check.
//
// The graphs are the composite patterns cuDNN's fused-attention engines
// recognise before the unified SDPA operation of cuDNN 9.21 (the ones
// cudnn-frontend emits for cuDNN 9.0-9.20):
//  forward:  S = Q K^T; S *= scale; [causal mask]; M = max_j S;
//            E = exp(S - M); Z = sum_j E; Stats = M + log Z; P = E / Z;
//            O = P V.
//  backward: sum = rowsum(dO * O); S = Q K^T * scale; S -= Stats;
//            [causal mask]; P = exp(S); dV = P^T dO (summed over a GQA
//            group); dS = (dO V^T - sum) * P * scale; dK = dS^T Q (summed
//            over a group); dQ = dS K (f32 accumulator, then cast).
// Causal: keep key j for row i when i + (T - S) >= j (our bottom-right
// convention, runtime/src/cpu/Attention.cpp): GEN_INDEX rows and columns,
// (rows + T) - S >= cols, BINARY_SELECT with -inf. cuDNN's Stats are the
// natural-log log-sum-exp of the scaled, masked scores, f32, [B, H, S, 1]
// with strides [H S, S, 1, 1]: exactly our lse ([B, H, S], f32, natural
// log, scaled scores), so no conversion is needed; cuDNN writes our lse
// buffer and the backward reads it as Stats. The one case where the two
// would differ (a row with no visible key, lse -inf: causal with S > T,
// or T = 0) is not taken (unsupported below).
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CUDA_ATTENTIONCUDNN_H
#define COLOSSAL_RUNTIME_CUDA_ATTENTIONCUDNN_H

#include "CudaKernels.h"
#include "colossal/runtime/Status.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace colossal::runtime::cuda {

/// The shape facts the cuDNN path depends on (no pointers).
struct CudnnSdpaShape {
  DType dtype = DType::kBF16;
  int64_t batch = 0, heads = 0, kvHeads = 0, rows = 0, cols = 0, depth = 0;
  bool causal = false;
  bool hasBias = false;
  bool backward = false;

  static CudnnSdpaShape of(const AttentionCall &call, bool backward);
  bool operator<(const CudnnSdpaShape &o) const;
  std::string toString() const;
};

/// Why cuDNN's fused attention cannot take this shape ("" when it can):
/// bf16/f16 only; no additive bias; head dim a multiple of 8 up to 128;
/// B, H, S, T >= 1; heads a multiple of kv heads; causal only with S <= T
/// (cuDNN's bottom-right mask needs it, and with S > T our convention
/// closes whole rows); every tensor under 2^31 elements. `cudnnVersion`
/// (cudnnGetVersion(), 0: not checked) must be 9.x; below 9.6 a
/// bottom-right causal mask (S < T) also needs S and T multiples of 64
/// (cudnn-frontend's check).
std::string cudnnSdpaUnsupportedReason(const CudnnSdpaShape &shape,
                                       int64_t cudnnVersion);

// ---- The graph, as plain data (built and tested without cuDNN) ----------

enum class SdpaType { kF32, kBF16, kF16, kI32, kBool };

enum class SdpaOpKind { kMatmul, kPointwise, kReduction, kReshape };

enum class SdpaPw {
  kAdd,
  kSub,
  kMul,
  kDiv,
  kExp,
  kLog,
  kIdentity,
  kCmpGe,
  kGenIndex,
  kBinarySelect
};

enum class SdpaReduce { kAdd, kMax };

/// Fixed unique ids of the tensors a variant pack binds (virtual tensors
/// take ids from kFirstVirtual up).
enum SdpaUid : int64_t {
  kUidQ = 1,
  kUidK = 2,
  kUidV = 3,
  kUidO = 4,
  kUidStats = 5,
  kUidDO = 6,
  kUidDQ = 7,
  kUidDK = 8,
  kUidDV = 9,
  kUidScale = 10,      ///< by value, f32: the op's scale
  kUidNegInf = 11,     ///< by value, f32: -inf, the causal mask's fill
  kUidOne = 12,        ///< by value, f32: 1 (the backward's dropout scale)
  kUidSeqKv = 13,      ///< by value, i32: T (bottom-right causal shift)
  kUidSeqQ = 14,       ///< by value, i32: S
  kUidSoftmaxSum = 15, ///< f32 [B, H, S, 1] in the workspace (backward)
  kUidDQAccum = 16,    ///< f32 [B, H, S, D] in the workspace (backward)
  kFirstVirtual = 100,
};

struct SdpaTensor {
  int64_t uid = 0;
  SdpaType type = SdpaType::kF32;
  std::array<int64_t, 4> dims{}, strides{};
  bool isVirtual = false, byValue = false;
  std::string name;
};

struct SdpaOp {
  SdpaOpKind kind = SdpaOpKind::kPointwise;
  SdpaPw pw = SdpaPw::kIdentity;        ///< pointwise
  SdpaReduce reduce = SdpaReduce::kAdd; ///< reduction
  SdpaType compute = SdpaType::kF32;    ///< math precision
  int64_t axis = -1;                    ///< GEN_INDEX's axis
  /// Matmul: a, b -> y. Pointwise: x [, b [, t]] -> y. Reduction, reshape:
  /// x -> y. Uids.
  std::vector<int64_t> in;
  int64_t out = 0;
  std::string name;
};

struct SdpaGraph {
  std::vector<SdpaTensor> tensors;
  std::vector<SdpaOp> ops;
  const SdpaTensor *find(int64_t uid) const;
  /// Bytes of workspace the graph's non-virtual intermediates take beside
  /// the plan's own (the backward's softmax sum and f32 dQ accumulator),
  /// and where each goes: offsets from the workspace base, after the
  /// plan's bytes (planBytes rounded up to 256).
  struct Layout {
    size_t planBytes = 0, softmaxSumOffset = 0, dqAccumOffset = 0,
           totalBytes = 0;
  };
  Layout layout(size_t planBytes) const;
};

/// The forward or backward graph of one shape (one the predicate above
/// accepts). Tensors in the op's layouts: q, o, dout, dq [B, H, S, D], k,
/// v, dk, dv [B, Hkv, T, D], lse [B, H, S], all contiguous.
SdpaGraph buildSdpaGraph(const CudnnSdpaShape &shape);

// ---- cuDNN ---------------------------------------------------------------

/// cuDNN's version as loaded (cudnnGetVersion(), e.g. 91900), or 0 with
/// `why` set when it cannot be loaded. Tried in order: the path in
/// COLOSSAL_CUDNN_LIBRARY, "libcudnn.so.9" through the loader's search
/// (LD_LIBRARY_PATH first), the library CMake found at configure time.
/// Why not: no library, a build without cuDNN's headers, a symbol missing,
/// a version other than 9. Loads once.
int64_t cudnnLoadedVersion(std::string *why = nullptr);

/// Lowers every tensor and operation of `graph` to backend descriptors
/// and finalizes each, without a handle or a device (no operation graph,
/// no heuristics): a check of the attribute names, types and values that
/// runs on a machine without a GPU. Unsupported when cuDNN cannot load.
/// withOperationGraph: also finalize an operation graph of them without a
/// handle (cuDNN 9.8 and later allow it).
Status cudnnSdpaLowerWithoutDevice(const SdpaGraph &graph,
                                   bool withOperationGraph = false);

/// Times the cuDNN path ran a call (forward + backward): attention-check
/// reads it around a call to know that cuDNN, not a fallback, ran it.
uint64_t cudnnAttentionCallsRun();

/// Plans per shape (execution plan, workspace) and runs them; one per
/// backend. Plans are built on first sight of a shape: in preparePlan for
/// a planned step (so the workspace is part of the planned scratch and
/// nothing is built or allocated while a step runs), else at the call.
class CudnnAttention {
public:
  CudnnAttention();
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention &) = delete;
  CudnnAttention &operator=(const CudnnAttention &) = delete;

  /// Builds (or finds) the plan for this shape; *workspaceBytes: the
  /// scratch it needs. Not ok (with the reason) when cuDNN cannot take it;
  /// the failure is cached too, so a shape is tried once.
  Status prepare(const CudnnSdpaShape &shape, size_t *workspaceBytes);

  /// Runs the call with the backend's scratch as workspace (prepare first
  /// if the shape is new). Not ok, with the reason, when cuDNN did not run
  /// it (then nothing was enqueued and the caller runs our kernels).
  Status run(cudaStream_t stream, const AttentionCall &call, bool backward);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_ATTENTIONCUDNN_H
