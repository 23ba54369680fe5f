//===- CudaBackend.cpp - Arenas in GPU memory, kernels on the plan streams ===//
//
// The CUDA backend of the Executor (Backend.h). One cudaMalloc per device
// arena (pinned, mapped host memory for a host arena), one stream, one
// cuBLASLt handle. run() decodes an instruction into the launchers of
// CudaKernels.h, or a cuBLASLt matmul, and returns without waiting; every
// CUDA and cuBLASLt call is checked, and a failed call is a Status naming
// the call (the executor adds the instruction). Kernels record
// data-dependent failures in a DeviceError that synchronize() reads back,
// so a bad gather index costs no synchronisation until the program ends.
// With COLOSSAL_CUDA_SYNC=1 in the environment every instruction is
// followed by a synchronize(), so an asynchronous fault (an illegal
// address) is reported against the instruction that caused it.
//
// Registered as the kCuda backend by a static initializer: the objects of
// this library are linked whole into the binaries that want it
// (colossal_runtime_cuda is an OBJECT library).
//
//===----------------------------------------------------------------------===//

#include "../Backend.h"
#include "../Strides.h"
#include "AttentionCudnn.h"
#include "AttentionTC.h"
#include "CudaKernels.h"
#include "FusedElementwise.h"
#include "FusedJit.h"

#include "colossal/runtime/Kernels.h"
#include "colossal/runtime/OpTable.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace colossal::runtime {

namespace {

using cuda::Dims;
using cuda::ErrorSink;

Status cudaFailure(cudaError_t err, const char *call, const char *file,
                   int line) {
  StatusCode code = err == cudaErrorMemoryAllocation ? StatusCode::kUnsupported
                                                     : StatusCode::kInternal;
  return Status(code,
                std::string("CUDA call ") + call + " failed: " +
                    cudaGetErrorName(err) + ": " + cudaGetErrorString(err),
                file, line);
}

Status cublasFailure(cublasStatus_t st, const char *call, const char *file,
                     int line) {
  return Status(StatusCode::kInternal,
                std::string("cuBLASLt call ") + call +
                    " failed: " + cublasLtGetStatusName(st) + ": " +
                    cublasLtGetStatusString(st),
                file, line);
}

#define COLOSSAL_CUDA_RETURN_IF_ERROR(expr)                                    \
  do {                                                                         \
    cudaError_t colossalCudaErr_ = (expr);                                     \
    if (colossalCudaErr_ != cudaSuccess)                                       \
      return cudaFailure(colossalCudaErr_, #expr, __FILE__, __LINE__);         \
  } while (0)

#define COLOSSAL_CUBLAS_RETURN_IF_ERROR(expr)                                  \
  do {                                                                         \
    cublasStatus_t colossalCublasSt_ = (expr);                                 \
    if (colossalCublasSt_ != CUBLAS_STATUS_SUCCESS)                            \
      return cublasFailure(colossalCublasSt_, #expr, __FILE__, __LINE__);      \
  } while (0)

using IntVec = std::vector<int64_t>;

Dims toDims(const IntVec &values) {
  Dims dims;
  dims.rank = static_cast<int>(std::min<size_t>(values.size(), cuda::kMaxDims));
  for (int d = 0; d < dims.rank; ++d)
    dims.d[d] = values[d];
  return dims;
}

/// The bytes of `value` stored in `dtype` (storeFromDouble), little-endian
/// in the low bytes.
uint64_t valueBits(DType dtype, double value) {
  uint8_t bytes[8] = {};
  storeFromDouble(TensorRef{TensorType{dtype, {}}, bytes}, 0, value);
  uint64_t bits = 0;
  std::memcpy(&bits, bytes, sizeof(bits));
  return bits;
}

/// The reduce_* launch arguments of an input of `dims` reduced over `axes`
/// (contiguous strides).
void reduceDims(const IntVec &dims, const IntVec &axes, IntVec &keptDims,
                IntVec &keptStrides, IntVec &redDims, IntVec &redStrides) {
  IntVec strides = contiguousStrides(dims);
  std::vector<bool> reduced(dims.size(), false);
  for (int64_t axis : axes)
    reduced[static_cast<size_t>(axis)] = true;
  for (size_t d = 0; d < dims.size(); ++d) {
    (reduced[d] ? redDims : keptDims).push_back(dims[d]);
    (reduced[d] ? redStrides : keptStrides).push_back(strides[d]);
  }
}

/// COLOSSAL_CUDA_REDUCE (and COLOSSAL_CUDA_FUSED's interpreters): unset,
/// empty or "f32" select the f32 kernels (the default since session 3's
/// H200 run), "f64" the f64 reference kernels.
Status precisionFromEnv(const char *variable, cuda::Precision &out) {
  const char *value = std::getenv(variable);
  out = cuda::Precision::kF32;
  if (!value || !*value || std::strcmp(value, "f32") == 0)
    return Status::ok();
  if (std::strcmp(value, "f64") == 0) {
    out = cuda::Precision::kF64;
    return Status::ok();
  }
  return Status(StatusCode::kInvalidArgument,
                std::string(variable) +
                    " must be f32 or f64 (or unset), got '" + value + "'");
}

/// memset(p, 0, bytes) over the machine's cores: a big plan's pinned host
/// arena is tens of GB (OPT-6.7b under 24 GiB: 84 GB), which one thread
/// zeroes at about 10 GB/s.
void zeroHostInParallel(void *p, size_t bytes) {
  constexpr size_t kChunk = size_t(1) << 30;
  size_t threads = std::min<size_t>(
      std::max(1u, std::thread::hardware_concurrency()),
      (bytes + kChunk - 1) / kChunk);
  if (threads <= 1) {
    std::memset(p, 0, bytes);
    return;
  }
  std::vector<std::thread> pool;
  size_t per = (bytes + threads - 1) / threads;
  for (size_t t = 0; t < threads; ++t) {
    size_t begin = t * per, end = std::min(bytes, begin + per);
    if (begin < end)
      pool.emplace_back([=] {
        std::memset(static_cast<char *>(p) + begin, 0, end - begin);
      });
  }
  for (std::thread &th : pool)
    th.join();
}

/// A variable that takes one of two values: `first` sets `isFirst`, `second`
/// clears it, unset or empty leaves it; anything else is an error naming the
/// variable and both values (the message's order: first or second).
Status eitherFromEnv(const char *variable, const char *first,
                     const char *second, bool &isFirst) {
  const char *value = std::getenv(variable);
  if (!value || !*value)
    return Status::ok();
  if (std::strcmp(value, first) != 0 && std::strcmp(value, second) != 0)
    return Status(StatusCode::kInvalidArgument,
                  std::string(variable) + " must be " + first + " or " +
                      second + ", got '" + value + "'");
  isFirst = std::strcmp(value, first) == 0;
  return Status::ok();
}

/// A zeroed, pinned and mapped host arena of `bytes`: cudaHostAlloc's, or
/// (`huge`) anonymous memory with transparent huge pages asked for
/// (madvise), faulted in by the zeroing threads and then pinned by
/// cudaHostRegister. Either way its pointer is valid in kernels too.
cudaError_t allocateHostArena(size_t bytes, bool huge, void **out) {
  *out = nullptr;
  if (!huge) {
    cudaError_t err = cudaHostAlloc(out, bytes, cudaHostAllocMapped |
                                                    cudaHostAllocPortable);
    if (err == cudaSuccess)
      zeroHostInParallel(*out, bytes);
    return err;
  }
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return cudaErrorMemoryAllocation;
  madvise(p, bytes, MADV_HUGEPAGE); // advice: refused, the pages stay 4 KiB
  zeroHostInParallel(p, bytes);
  cudaError_t err = cudaHostRegister(
      p, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable);
  if (err != cudaSuccess) {
    munmap(p, bytes);
    return err;
  }
  *out = p;
  return cudaSuccess;
}

void freeHostHugePages(void *p, size_t bytes) {
  cudaHostUnregister(p);
  munmap(p, bytes);
}

/// Scratch memory an instruction needs besides its operands.
size_t scratchBytes(const Attrs &attrs, const std::vector<TensorType> &in,
                    cuda::Precision reducePrecision) {
  switch (attrs.kind()) {
  case OpKind::AdamWNorm: // a double per block of the sum of squares
    return cuda::adamWNormScratchBytes();
  case OpKind::SoftmaxCrossEntropy:
    return attrs.i("reduction") != 0
               ? static_cast<size_t>(in[1].numElements()) * sizeof(double)
               : 0;
  case OpKind::SoftmaxCrossEntropyGrad:
    return sizeof(int64_t);
  case OpKind::LayerNormGrad: {
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    return cuda::layerNormGradScratchBytes(
        product(in[0].dims, 0, axis),
        product(in[0].dims, axis, in[0].dims.size()));
  }
  case OpKind::GatherGrad: {
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    const IntVec &shape = attrs.list("shape");
    return cuda::gatherGradScratchBytes(in[1].numElements(),
                                        axis < shape.size() ? shape[axis] : 0);
  }
  case OpKind::AttentionGrad: // delta per query row (AttentionTC.h)
    return cuda::attentionTensorCoreScratchBytes(
        in[0].dtype, in[0].dims[0], in[0].dims[1], in[0].dims[2],
        in[0].dims[3]);
  case OpKind::ReduceSum:
  case OpKind::ReduceMean:
  case OpKind::ReduceMax:
  case OpKind::ReduceMin:
  case OpKind::ReduceSumSquare: {
    IntVec keptDims, keptStrides, redDims, redStrides;
    reduceDims(in[0].dims, attrs.list("axes"), keptDims, keptStrides, redDims,
               redStrides);
    return cuda::reduceScratchBytes(reducePrecision, in[0].dtype,
                                    product(keptDims, 0, keptDims.size()),
                                    toDims(keptDims), toDims(keptStrides),
                                    toDims(redDims), toDims(redStrides));
  }
  default:
    return 0;
  }
}

/// True when a kernel can neither write nor report anything (the CPU
/// kernels' rule, Kernels.cpp): every output is empty, and so is every input
/// whose values the op checks. Such instructions are skipped: an empty
/// tensor does not bound its other dims ([0, 2^40]), and the launch sizes
/// and scratch would be partial products of them.
bool hasNoEffect(OpKind kind, const std::vector<TensorType> &inputs,
                 const std::vector<TensorType> &outputs) {
  for (const TensorType &out : outputs)
    if (out.numElements() != 0)
      return false;
  switch (kind) {
  case OpKind::Gather:
  case OpKind::GatherND:
  case OpKind::GatherElements:
  case OpKind::GatherGrad:
  case OpKind::GatherElementsGrad:
  case OpKind::SoftmaxCrossEntropy:
  case OpKind::SoftmaxCrossEntropyGrad:
    return inputs[1].numElements() == 0; // the indices or labels
  case OpKind::AdamW:
  case OpKind::AdamWNorm:
  case OpKind::Sgd:
    return false; // the step is checked whatever the parameters hold
  default:
    return true;
  }
}

/// Largest power of two (<= 256) dividing the address and every stride.
uint32_t alignmentOf(const void *ptr, int64_t strideBytes) {
  uint64_t bits = reinterpret_cast<uintptr_t>(ptr) |
                  static_cast<uint64_t>(strideBytes) | 256u;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

/// Frees cuBLASLt descriptors on every path out of a matmul.
struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescriptors() { reset(); }
  void reset() {
    if (pref)
      cublasLtMatmulPreferenceDestroy(pref);
    if (c)
      cublasLtMatrixLayoutDestroy(c);
    if (b)
      cublasLtMatrixLayoutDestroy(b);
    if (a)
      cublasLtMatrixLayoutDestroy(a);
    if (op)
      cublasLtMatmulDescDestroy(op);
    op = nullptr;
    a = b = c = nullptr;
    pref = nullptr;
  }
};

constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;

/// The kind of plan stream `s` (format 1.2; older plans: all compute).
StreamKind planStreamKind(const Plan &plan, uint32_t s) {
  return s < plan.streamKinds.size() ? plan.streamKinds[s]
                                     : StreamKind::kCompute;
}

/// Fills `d` for gemm(): the operation, the three layouts (batched when
/// batch > 1) and the heuristic preferences.
Status describeGemm(LtDescriptors &d, cudaDataType_t type,
                    cublasComputeType_t compute, cudaDataType_t scaleType,
                    int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                    int64_t batch, int64_t strideA, int64_t strideB,
                    int64_t strideC, uint32_t alignA, uint32_t alignB,
                    uint32_t alignC) {
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescCreate(&d.op, compute, scaleType));
  cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N; // our b
  cublasOperation_t opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N; // our a
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      d.op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)));
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      d.op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)));
  // Stored shapes, column-major: b is [k, n] row-major = n x k (ld n), or
  // [n, k] = k x n (ld k) when transposed; a likewise; C is n x m (ld n).
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(
      &d.a, type, tb ? k : n, tb ? n : k, tb ? k : n));
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(
      &d.b, type, ta ? m : k, ta ? k : m, ta ? m : k));
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&d.c, type, n, m, n));
  if (batch > 1) {
    int32_t count = static_cast<int32_t>(batch);
    struct {
      cublasLtMatrixLayout_t layout;
      int64_t stride;
    } layouts[] = {{d.a, strideB}, {d.b, strideA}, {d.c, strideC}};
    for (const auto &l : layouts) {
      COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
          l.layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
          l.layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &l.stride,
          sizeof(l.stride)));
    }
  }
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&d.pref));
  uint64_t workspace = kLtWorkspaceBytes;
  COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
      sizeof(workspace)));
  // cuBLASLt's A is our b, its B our a.
  struct {
    cublasLtMatmulPreferenceAttributes_t attr;
    uint32_t bytes;
  } aligns[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignB},
                {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignA},
                {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignC},
                {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignC}};
  for (const auto &al : aligns)
    COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
        d.pref, al.attr, &al.bytes, sizeof(al.bytes)));
  return Status::ok();
}

/// One cuBLASLt GEMM of a matmul, planned once: descriptors, layouts, the
/// algorithm the heuristic chose and the operand addresses. A matmul is one
/// such call, or a zero fill (k = 0), or several (a general broadcast).
struct GemmCall {
  std::unique_ptr<LtDescriptors> desc; ///< null: zero-fill c instead
  cublasLtMatmulAlgo_t algo = {};
  bool wideScale = false; ///< f64 alpha/beta
  const void *a = nullptr, *b = nullptr;
  void *c = nullptr;
  size_t zeroBytes = 0;
};

bool isEventRecord(OpKind kind) { return kind == OpKind::EventRecord; }
bool isEventWait(OpKind kind) { return kind == OpKind::EventWait; }

/// A host-stream instruction, ready before the plan runs: the CPU kernel's
/// operands (addresses in pinned host arenas) and where its failure goes.
/// cudaLaunchHostFunc runs it on a CUDA-owned thread, ordered with the GPU
/// streams by the plan's events; it makes no CUDA call.
struct HostJob {
  const Attrs *attrs = nullptr;
  std::vector<TensorRef> ins, outs;
  uint64_t instr = 0;
  class CudaBackend *backend = nullptr;
};

class CudaBackend final : public Backend {
public:
  ~CudaBackend() override {
    synchronizeStreams();
    releaseArenas();
    releasePlanResources();
    if (scratch_)
      cudaFree(scratch_);
    if (ltWorkspace_)
      cudaFree(ltWorkspace_);
    if (error_)
      cudaFree(error_);
    if (sleepEvent_)
      cudaEventDestroy(sleepEvent_);
    if (lt_)
      cublasLtDestroy(lt_);
    if (stream_)
      cudaStreamDestroy(stream_);
  }

  Status init() {
    // How the CPU waits for the GPU (COLOSSAL_CUDA_SCHEDULE): CUDA's default
    // spins while it has a core to itself, which a plan's host updates on
    // every core do not leave it. "yield" spins but yields, "block" sleeps
    // until woken, "spin" never yields; unset or "auto" keeps the default.
    if (const char *schedule = std::getenv("COLOSSAL_CUDA_SCHEDULE");
        schedule && *schedule && std::strcmp(schedule, "auto") != 0) {
      unsigned flags = std::strcmp(schedule, "spin") == 0
                           ? cudaDeviceScheduleSpin
                       : std::strcmp(schedule, "yield") == 0
                           ? cudaDeviceScheduleYield
                       : std::strcmp(schedule, "block") == 0
                           ? cudaDeviceScheduleBlockingSync
                           : ~0u;
      if (flags == ~0u)
        return Status(StatusCode::kInvalidArgument,
                      std::string("COLOSSAL_CUDA_SCHEDULE must be auto, "
                                  "spin, yield or block, got '") +
                          schedule + "'");
      COLOSSAL_CUDA_RETURN_IF_ERROR(cudaSetDeviceFlags(flags));
    }
    // How the CPU waits at a step's end (COLOSSAL_CUDA_STEP_WAIT): "spin"
    // (the default) waits as COLOSSAL_CUDA_SCHEDULE says; "sleep" blocks on
    // an event until the GPU wakes it, leaving the core to the host updates
    // (measured slower: docs/cuda.md, "Session 7").
    COLOSSAL_RETURN_IF_ERROR(
        eitherFromEnv("COLOSSAL_CUDA_STEP_WAIT", "sleep", "spin", sleepAtStepEnd_));
    // Host arenas' pages (COLOSSAL_HOST_PAGES): "huge" (the default) maps
    // them with transparent huge pages asked for and pins them with
    // cudaHostRegister (fewer TLB misses for the host updates' streams where
    // the kernel grants huge pages: measured faster, docs/cuda.md); "pinned"
    // is cudaHostAlloc's.
    bool pinnedPages = !hugePages_;
    COLOSSAL_RETURN_IF_ERROR(
        eitherFromEnv("COLOSSAL_HOST_PAGES", "pinned", "huge", pinnedPages));
    hugePages_ = !pinnedPages;
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaSetDevice(0));
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(
        &sleepEvent_, cudaEventBlockingSync | cudaEventDisableTiming));
    COLOSSAL_CUDA_RETURN_IF_ERROR(
        cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cur_ = stream_;
    COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&lt_));
    COLOSSAL_CUDA_RETURN_IF_ERROR(
        cudaMalloc(reinterpret_cast<void **>(&error_), sizeof(*error_)));
    mallocBytes_ += sizeof(*error_);
    COLOSSAL_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(error_, 0, sizeof(*error_), stream_));
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaMalloc(&ltWorkspace_, kLtWorkspaceBytes));
    mallocBytes_ += kLtWorkspaceBytes;
    const char *sync = std::getenv("COLOSSAL_CUDA_SYNC");
    syncEach_ = sync && *sync && std::strcmp(sync, "0") != 0;
    const char *report = std::getenv("COLOSSAL_CUDA_REPORT_MALLOC");
    reportMalloc_ = report && *report && std::strcmp(report, "0") != 0;
    COLOSSAL_RETURN_IF_ERROR(
        precisionFromEnv("COLOSSAL_CUDA_REDUCE", reducePrecision_));
    // COLOSSAL_CUDA_FUSED: unset, empty or "jit" (the default since session
    // 4's H200 run) compile each fused program the packed kernel takes into
    // a kernel of its own with NVRTC when the plan is prepared (FusedJit.h);
    // "f32" interprets them (the packed kernel), "f64" interprets in f64.
    // Without NVRTC the default falls back to the f32 interpreter, saying
    // so once.
    const char *fused = std::getenv("COLOSSAL_CUDA_FUSED");
    if (!fused || !*fused || std::strcmp(fused, "jit") == 0) {
      fusedPrecision_ = cuda::Precision::kF32;
      jit_ = std::make_unique<cuda::FusedJit>();
      if (jit_->available())
        fused_.setJit(jit_.get());
      else
        std::fprintf(stderr,
                     "colossal-run: cuda: %s; interpreting fused programs "
                     "(COLOSSAL_NVRTC names libnvrtc.so.13 where the loader "
                     "does not find it)\n",
                     jit_->unavailableReason().c_str());
    } else {
      Status st = precisionFromEnv("COLOSSAL_CUDA_FUSED", fusedPrecision_);
      if (!st.isOk()) // the message names the third value this one takes
        return Status(st.code(), "COLOSSAL_CUDA_FUSED must be jit, f32 or f64 "
                                 "(or unset), got '" +
                                     std::string(fused) + "'");
    }
    // The device AdamW follows the CPU's choice (cpu/Kernels.cpp).
    const char *adamw = std::getenv("COLOSSAL_CPU_ADAMW");
    if (adamw && *adamw && std::strcmp(adamw, "fast") != 0 &&
        std::strcmp(adamw, "exact") != 0)
      return Status(StatusCode::kInvalidArgument,
                    std::string("COLOSSAL_CPU_ADAMW must be 'exact' or "
                                "'fast', got '") +
                        adamw + "'");
    exactAdamW_ = adamw && std::strcmp(adamw, "exact") == 0;
    return Status::ok();
  }

  Device device() const override { return Device::kCuda; }

  Status allocateArenas(const std::vector<PlanArena> &arenas) override {
    releaseArenas();
    for (size_t a = 0; a < arenas.size(); ++a) {
      const PlanArena &arena = arenas[a];
      // cudaMalloc aligns to 256 bytes; a larger alignment is done by hand.
      uint64_t align = std::max<uint64_t>(arena.alignBytes, 256);
      uint64_t extra = align > 256 ? align : 0;
      if (arena.sizeBytes > UINT64_MAX - extra - 256) {
        releaseArenas();
        return Status(StatusCode::kUnsupported,
                      "arena " + std::to_string(a) + " of " +
                          std::to_string(arena.sizeBytes) +
                          " bytes is too large");
      }
      size_t bytes =
          static_cast<size_t>(std::max<uint64_t>(arena.sizeBytes, 1) + extra);
      void *raw = nullptr;
      bool host = arena.space == MemorySpace::kHost;
      // A host arena is pinned and mapped: with unified addressing its
      // pointer is valid in kernels too (slow, but correct), copies from
      // and to it are asynchronous DMA, and host-stream kernels read it.
      cudaError_t err = host ? allocateHostArena(bytes, hugePages_, &raw)
                             : cudaMalloc(&raw, bytes);
      if (err == cudaSuccess && !host)
        err = cudaMemsetAsync(raw, 0, bytes, stream_);
      if (err == cudaSuccess)
        err = cudaStreamSynchronize(stream_);
      if (err != cudaSuccess) {
        if (raw)
          freeArena(arena.space, raw, bytes);
        cudaGetLastError(); // clear a non-sticky error
        releaseArenas();
        return Status(err == cudaErrorMemoryAllocation
                          ? StatusCode::kUnsupported
                          : StatusCode::kInternal,
                      "cannot allocate arena " + std::to_string(a) + " (" +
                          memorySpaceName(arena.space) + ", " +
                          std::to_string(arena.sizeBytes) +
                          " bytes) on the GPU: " + cudaGetErrorName(err) +
                          ": " + cudaGetErrorString(err));
      }
      if (!host)
        arenaMallocBytes_ += bytes;
      uintptr_t addr = reinterpret_cast<uintptr_t>(raw);
      uintptr_t aligned =
          (addr + (align - 1)) & ~static_cast<uintptr_t>(align - 1);
      arenas_.push_back({arena.space, raw, bytes});
      bases_.push_back(reinterpret_cast<uint8_t *>(aligned));
    }
    return Status::ok();
  }

  void releaseArenas() override {
    synchronizeStreams();
    // Cached GEMMs and host jobs hold arena addresses.
    gemms_.clear();
    hostJobs_.clear();
    for (const Allocation &alloc : arenas_)
      freeArena(alloc.space, alloc.ptr, alloc.bytes);
    arenas_.clear();
    bases_.clear();
    arenaMallocBytes_ = 0;
  }

  uint8_t *arenaBase(size_t index) const override { return bases_[index]; }

  /// Everything a plan needs, made once: scratch, one CUDA stream per plan
  /// stream (stream 0 is the backend's own), one event per plan event, the
  /// host-stream jobs, every matmul's cuBLASLt descriptors and algorithm,
  /// and (when tracing) two timing events per instruction. run() then only
  /// enqueues.
  Status preparePlan(const Plan &plan) override {
    releasePlanResources();
    carried_ = plan.carriedStreams;
    size_t need = 0;
    std::vector<TensorType> types, outTypes;
    kinds_.assign(plan.instrs.size(), OpKind::Identity);
    for (size_t i = 0; i < plan.instrs.size(); ++i) {
      const PlanInstr &instr = plan.instrs[i];
      kinds_[i] = instr.attrs.kind();
      types.clear();
      outTypes.clear();
      for (uint32_t t : instr.inputs)
        types.push_back(plan.tensors[t].type);
      for (uint32_t t : instr.outputs)
        outTypes.push_back(plan.tensors[t].type);
      if (!hasNoEffect(instr.attrs.kind(), types, outTypes)) {
        need =
            std::max(need, scratchBytes(instr.attrs, types, reducePrecision_));
        need = std::max(need, cudnnAttentionWorkspace(instr.attrs, types));
      }
    }
    COLOSSAL_RETURN_IF_ERROR(ensureScratch(need));
    planPrepared_ = true;

    streamKinds_.assign(plan.numStreams, StreamKind::kCompute);
    for (uint32_t s = 0; s < plan.numStreams; ++s)
      streamKinds_[s] = planStreamKind(plan, s);
    streams_.assign(plan.numStreams, nullptr);
    for (uint32_t s = 0; s < plan.numStreams; ++s) {
      if (s == 0) {
        streams_[0] = stream_;
        continue;
      }
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaStreamCreateWithFlags(&streams_[s], cudaStreamNonBlocking));
    }
    joinEvents_.assign(plan.numStreams, nullptr);
    for (cudaEvent_t &e : joinEvents_)
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    events_.assign(plan.numEvents, nullptr);
    for (cudaEvent_t &e : events_)
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaEventCreateWithFlags(&e, cudaEventDisableTiming));

    // Operand addresses are fixed once the arenas exist, so host jobs and
    // GEMMs are planned against the real pointers (and alignments).
    auto ref = [&](uint32_t t) {
      const PlanTensor &tensor = plan.tensors[t];
      const PlanBuffer &buffer = plan.buffers[tensor.buffer];
      return TensorRef{tensor.type, bases_[buffer.arena] +
                                        buffer.offsetBytes + tensor.byteOffset};
    };
    hostJobs_.clear();
    hostJobs_.resize(plan.instrs.size());
    gemms_.clear();
    gemms_.resize(plan.instrs.size());
    fused_.reset(plan.instrs.size());
    std::vector<TensorRef> ins, outs;
    for (size_t i = 0; i < plan.instrs.size(); ++i) {
      const PlanInstr &instr = plan.instrs[i];
      if (instr.stream < streamKinds_.size() &&
          streamKinds_[instr.stream] == StreamKind::kHost &&
          !isEventRecord(kinds_[i]) && !isEventWait(kinds_[i])) {
        auto job = std::make_unique<HostJob>();
        job->attrs = &instr.attrs;
        job->instr = i;
        job->backend = this;
        for (uint32_t t : instr.inputs)
          job->ins.push_back(ref(t));
        for (uint32_t t : instr.outputs)
          job->outs.push_back(ref(t));
        hostJobs_[i] = std::move(job);
        continue;
      }
      if (kinds_[i] == OpKind::FusedElementwise) { // decoded once per plan
        types.clear();
        for (uint32_t t : instr.inputs)
          types.push_back(plan.tensors[t].type);
        COLOSSAL_RETURN_IF_ERROR(fused_.prepare(
            i, instr.attrs, types, plan.tensors[instr.outputs[0]].type));
        continue;
      }
      if (kinds_[i] != OpKind::MatMul)
        continue;
      ins.clear();
      outs.clear();
      for (uint32_t t : instr.inputs)
        ins.push_back(ref(t));
      for (uint32_t t : instr.outputs)
        outs.push_back(ref(t));
      auto calls = std::make_unique<std::vector<GemmCall>>();
      Status st = planMatmul(instr.attrs, ins[0], ins[1], outs[0], *calls);
      if (!st.isOk())
        return Status(st.code(), "instruction " + std::to_string(i) +
                                     " (matmul" +
                                     (instr.location.empty()
                                          ? std::string()
                                          : " at " + instr.location) +
                                     "): " + st.message());
      gemms_[i] = std::move(calls);
    }

    if (jit_ && jit_->available())
      std::fprintf(stderr,
                   "colossal-run: cuda: fused programs compiled to %zu "
                   "kernels (NVRTC, %.2f s)\n",
                   jit_->kernels(), jit_->compileSeconds());
    if (tracing_) {
      timing_.assign(2 * plan.instrs.size() + 1, nullptr);
      for (cudaEvent_t &e : timing_)
        COLOSSAL_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
      traced_.clear();
      traced_.reserve(plan.instrs.size());
    }
    if (reportMalloc_)
      std::fprintf(stderr,
                   "colossal-run: cuda: cudaMalloc %llu bytes: arenas %llu, "
                   "scratch %llu, cuBLASLt workspace %llu, error record "
                   "%llu\n",
                   static_cast<unsigned long long>(totalMallocBytes()),
                   static_cast<unsigned long long>(arenaMallocBytes_),
                   static_cast<unsigned long long>(scratchBytes_),
                   static_cast<unsigned long long>(kLtWorkspaceBytes),
                   static_cast<unsigned long long>(sizeof(*error_)));
    return Status::ok();
  }

  Status upload(void *dst, const void *src, size_t bytes) override {
    return copySynchronously(dst, src, bytes);
  }

  Status download(void *dst, const void *src, size_t bytes) override {
    return copySynchronously(dst, src, bytes);
  }

  /// Both directions of upload/download: after everything enqueued on
  /// every stream, and complete on return (the caller may free or reuse
  /// its host buffer at once).
  Status copySynchronously(void *dst, const void *src, size_t bytes) {
    if (bytes == 0)
      return Status::ok();
    // The carried host stream only touches host arenas: a copy of anything
    // else (a batch in, a loss out) does not wait for its updates.
    COLOSSAL_RETURN_IF_ERROR(
        joinIntoDefault(inHostArena(dst) || inHostArena(src)));
    COLOSSAL_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::ok();
  }

  /// The executor's fill (zeroing states, check-plan poison) is ordered
  /// after everything enqueued on every stream, and everything enqueued
  /// later after it: a poisoned buffer dies after its last reader, whatever
  /// stream that ran on.
  Status fill(void *dst, uint8_t value, size_t bytes) override {
    if (bytes == 0)
      return Status::ok();
    COLOSSAL_RETURN_IF_ERROR(joinIntoDefault());
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dst, value, bytes, stream_));
    return forkFromDefault();
  }

  Status run(uint64_t index, const PlanInstr &instr,
             const std::vector<TensorRef> &inputs,
             const std::vector<TensorRef> &outputs) override {
    const OpKind kind = instr.attrs.kind();
    bool prepared = index < kinds_.size() && kinds_[index] == kind;
    if (!prepared) { // a backend driven without preparePlan (kernel tests)
      if (index >= kinds_.size())
        kinds_.resize(index + 1, OpKind::Identity);
      kinds_[index] = kind;
    }
    cur_ = instr.stream < streams_.size() ? streams_[instr.stream] : stream_;
    if (isEventRecord(kind) || isEventWait(kind)) {
      int64_t e = instr.attrs.i("event");
      if (e < 0 || static_cast<uint64_t>(e) >= events_.size())
        return Status(StatusCode::kInvalidArgument,
                      "event " + std::to_string(e) + " out of range [0, " +
                          std::to_string(events_.size()) + ")");
      if (isEventRecord(kind))
        COLOSSAL_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[e], cur_));
      else
        COLOSSAL_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(cur_, events_[e], 0));
      return Status::ok();
    }
    // Skipping an instruction with no effect needs only the types; checked
    // without building vectors (nothing is allocated while a step runs).
    bool noEffect = true;
    for (const TensorRef &out : outputs)
      noEffect &= out.type.numElements() == 0;
    if (noEffect) {
      std::vector<TensorType> types, outTypes;
      for (const TensorRef &in : inputs)
        types.push_back(in.type);
      for (const TensorRef &out : outputs)
        outTypes.push_back(out.type);
      if (hasNoEffect(kind, types, outTypes))
        return Status::ok();
    }
    bool timed = tracing_ && tracingNow_ && index < plan2Size();
    if (timed)
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaEventRecord(timing_[2 * index + 1], cur_));
    if (prepared && hostJobs_.size() > index && hostJobs_[index]) {
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaLaunchHostFunc(cur_, &CudaBackend::runHostJob,
                             hostJobs_[index].get()));
    } else if (prepared && gemms_.size() > index && gemms_[index]) {
      COLOSSAL_RETURN_IF_ERROR(launchGemms(*gemms_[index]));
    } else {
      if (!prepared) {
        std::vector<TensorType> types;
        for (const TensorRef &in : inputs)
          types.push_back(in.type);
        COLOSSAL_RETURN_IF_ERROR(
            ensureScratch(scratchBytes(instr.attrs, types, reducePrecision_)));
      }
      COLOSSAL_RETURN_IF_ERROR(
          dispatch(instr.attrs, ErrorSink{error_, index}, inputs, outputs));
    }
    if (timed) {
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaEventRecord(timing_[2 * index + 2], cur_));
      traced_.push_back(index);
    }
    if (syncEach_) {
      uint64_t failed = UINT64_MAX;
      return synchronize(&failed);
    }
    return Status::ok();
  }

  Status synchronize(uint64_t *failedInstr) override {
    return waitForStreams(failedInstr, /*withCarried=*/true);
  }

  /// The carried streams run on, but not while a step is traced (its
  /// timing events must all have completed when traceEnd reads them).
  Status synchronizeStep(uint64_t *failedInstr) override {
    return waitForStreams(failedInstr, tracingNow_);
  }

  /// Waits for everything queued on `stream` so far: as the device's
  /// schedule says, or asleep with COLOSSAL_CUDA_STEP_WAIT=sleep.
  cudaError_t waitStream(cudaStream_t stream) {
    if (!sleepAtStepEnd_)
      return cudaStreamSynchronize(stream);
    cudaError_t err = cudaEventRecord(sleepEvent_, stream);
    return err == cudaSuccess ? cudaEventSynchronize(sleepEvent_) : err;
  }

  Status waitForStreams(uint64_t *failedInstr, bool withCarried) {
    if (failedInstr)
      *failedInstr = UINT64_MAX;
    cudaError_t err = cudaSuccess;
    for (size_t s = 0; s < streams_.size() && err == cudaSuccess; ++s)
      if (withCarried || !isCarried(s))
        err = waitStream(streams_[s]);
    if (err == cudaSuccess)
      err = waitStream(stream_);
    if (err != cudaSuccess)
      return Status(StatusCode::kInternal,
                    std::string("a CUDA kernel failed: ") +
                        cudaGetErrorName(err) + ": " + cudaGetErrorString(err) +
                        " (run with COLOSSAL_CUDA_SYNC=1 to name the "
                        "instruction)",
                    __FILE__, __LINE__);
    // A host-stream kernel's failure (runCpuKernel's message).
    if (hostFailed_.load()) {
      Status failure = std::move(hostFailure_);
      uint64_t instr = hostFailedInstr_;
      hostFailure_ = Status::ok();
      hostFailed_.store(false);
      if (failedInstr)
        *failedInstr = instr;
      return failure;
    }
    cuda::DeviceError host;
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        &host, error_, sizeof(host), cudaMemcpyDeviceToHost, stream_));
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    if (!host.claimed)
      return Status::ok();
    COLOSSAL_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(error_, 0, sizeof(*error_), stream_));
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    if (failedInstr)
      *failedInstr = host.instr;
    std::string op = host.instr < kinds_.size()
                         ? std::string(opInfo(kinds_[host.instr]).name)
                         : std::string("kernel");
    std::string message;
    switch (host.code) {
    case cuda::kErrIndexRange:
      message = "index " + std::to_string(host.a) + " out of range [" +
                std::to_string(-host.b) + ", " + std::to_string(host.b) + ")";
      if (host.c >= 0)
        message += " in dim " + std::to_string(host.c);
      break;
    case cuda::kErrLabelRange:
      message = "label " + std::to_string(host.a) + " out of range [0, " +
                std::to_string(host.b) + ") and not ignore_index " +
                std::to_string(host.c);
      break;
    case cuda::kErrDivByZero:
      message = "integer division by zero";
      break;
    case cuda::kErrPowZeroNegative:
      message = "integer zero to a negative power";
      break;
    case cuda::kErrNegativeStep:
      message = "step " + std::to_string(host.a) + " must be >= 0";
      break;
    default:
      message = "unknown device error code " + std::to_string(host.code);
      break;
    }
    return Status(StatusCode::kInvalidArgument, op + ": " + message);
  }

  void enableTracing(bool on) override { tracing_ = on; }

  bool traceBegin() override {
    if (!tracing_ || timing_.empty())
      return false;
    traced_.clear();
    // The origin: recorded on the backend's stream while every stream is
    // idle (the previous program ended with synchronize()).
    if (cudaEventRecord(timing_[0], stream_) != cudaSuccess)
      return false;
    tracingNow_ = true;
    return true;
  }

  Status traceEnd(std::vector<TraceSlice> &slices) override {
    tracingNow_ = false;
    for (uint64_t index : traced_) {
      float startMs = 0, lengthMs = 0;
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaEventElapsedTime(&startMs, timing_[0], timing_[2 * index + 1]));
      COLOSSAL_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(
          &lengthMs, timing_[2 * index + 1], timing_[2 * index + 2]));
      slices.push_back({index, std::max(0.0, 1e3 * double(startMs)),
                        std::max(0.0, 1e3 * double(lengthMs))});
    }
    traced_.clear();
    return Status::ok();
  }

private:
  struct Allocation {
    MemorySpace space;
    void *ptr;
    size_t bytes;
  };

  /// Whether `p` points into one of the plan's host arenas (where the
  /// carried host stream's updates read and write).
  bool inHostArena(const void *p) const {
    auto at = reinterpret_cast<uintptr_t>(p);
    for (const Allocation &a : arenas_) {
      auto base = reinterpret_cast<uintptr_t>(a.ptr);
      if (a.space == MemorySpace::kHost && at >= base && at < base + a.bytes)
        return true;
    }
    return false;
  }

  bool isCarried(size_t stream) const {
    return stream < 64 && (carried_ >> stream & 1u);
  }

  void freeArena(MemorySpace space, void *ptr, size_t bytes) {
    if (space != MemorySpace::kHost)
      cudaFree(ptr);
    else if (hugePages_)
      freeHostHugePages(ptr, bytes);
    else
      cudaFreeHost(ptr);
  }

  /// Instructions with timing events (2 per instruction after the origin).
  uint64_t plan2Size() const { return (timing_.size() - 1) / 2; }

  uint64_t totalMallocBytes() const {
    return arenaMallocBytes_ + scratchBytes_ + mallocBytes_;
  }

  /// A host-stream instruction, on a CUDA-owned thread: the CPU kernel
  /// (multi-threaded where it has work for every core). No CUDA call here.
  static void CUDART_CB runHostJob(void *data) {
    HostJob *job = static_cast<HostJob *>(data);
    Status st = runCpuKernel(*job->attrs, job->ins, job->outs);
    if (!st.isOk()) {
      CudaBackend *self = job->backend;
      bool expected = false;
      if (self->hostFailed_.compare_exchange_strong(expected, true)) {
        self->hostFailure_ = std::move(st);
        self->hostFailedInstr_ = job->instr;
      }
    }
  }

  /// Makes the backend's stream wait for everything enqueued on the plan's
  /// other streams (but the carried ones unless `withCarried`).
  Status joinIntoDefault(bool withCarried = true) {
    for (size_t s = 1; s < streams_.size(); ++s) {
      if (!withCarried && isCarried(s))
        continue;
      COLOSSAL_CUDA_RETURN_IF_ERROR(cudaEventRecord(joinEvents_[s], streams_[s]));
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaStreamWaitEvent(stream_, joinEvents_[s], 0));
    }
    return Status::ok();
  }
  /// Makes the plan's other streams wait for the backend's stream.
  Status forkFromDefault() {
    if (streams_.size() <= 1)
      return Status::ok();
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaEventRecord(joinEvents_[0], stream_));
    for (size_t s = 1; s < streams_.size(); ++s)
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaStreamWaitEvent(streams_[s], joinEvents_[0], 0));
    return Status::ok();
  }

  void synchronizeStreams() {
    for (size_t s = 1; s < streams_.size(); ++s)
      cudaStreamSynchronize(streams_[s]);
    if (stream_)
      cudaStreamSynchronize(stream_);
  }

  /// COLOSSAL_ATTENTION_KERNEL=cudnn: builds the cuDNN plan of an
  /// attention or attention_grad instruction now (AttentionCudnn.h), so
  /// that its workspace is part of the planned scratch and nothing is
  /// built while a step runs; 0 for other instructions and for shapes
  /// cuDNN does not take (reported here, and again where they run).
  size_t cudnnAttentionWorkspace(const Attrs &attrs,
                                 const std::vector<TensorType> &in) {
    OpKind kind = attrs.kind();
    if ((kind != OpKind::Attention && kind != OpKind::AttentionGrad) ||
        !cuda::attentionCudnnRequested() || in.size() < 3 ||
        in[0].dims.size() != 4 || in[1].dims.size() != 4)
      return 0;
    bool grad = kind == OpKind::AttentionGrad;
    cuda::CudnnSdpaShape shape;
    shape.dtype = in[0].dtype;
    shape.batch = in[0].dims[0], shape.heads = in[0].dims[1];
    shape.rows = in[0].dims[2], shape.depth = in[0].dims[3];
    shape.kvHeads = in[1].dims[1], shape.cols = in[1].dims[2];
    shape.causal = attrs.i("causal") != 0;
    shape.hasBias = in.size() == (grad ? 7u : 4u);
    shape.backward = grad;
    if (!cudnn_)
      cudnn_ = std::make_unique<cuda::CudnnAttention>();
    size_t bytes = 0;
    Status st = cudnn_->prepare(shape, &bytes);
    if (!st.isOk()) {
      reportCudnnFallback(shape, st.message());
      return 0;
    }
    return bytes;
  }

  /// One line per distinct (shape, reason) on stderr: the variable asked
  /// for cuDNN and our kernels run instead.
  static void reportCudnnFallback(const cuda::CudnnSdpaShape &shape,
                                  const std::string &why) {
    static std::mutex mutex;
    static std::set<std::string> reported;
    std::string line = shape.toString() + ": " + why;
    std::lock_guard<std::mutex> lock(mutex);
    if (reported.insert(line).second)
      std::fprintf(stderr,
                   "colossal: COLOSSAL_ATTENTION_KERNEL=cudnn: cuDNN cannot "
                   "run %s; running our kernels\n",
                   line.c_str());
  }

  /// Runs the call through cuDNN when COLOSSAL_ATTENTION_KERNEL=cudnn asks
  /// for it and cuDNN takes it; false (reported once) when our kernels
  /// must run it. Outside a prepared plan (kernel tests, attention-check)
  /// the scratch grows to the plan's workspace here; inside one, a
  /// workspace that was not planned is a fallback, not an allocation.
  bool tryCudnnAttention(cuda::AttentionCall &call, bool grad) {
    if (!cuda::attentionCudnnRequested())
      return false;
    if (!cudnn_)
      cudnn_ = std::make_unique<cuda::CudnnAttention>();
    cuda::CudnnSdpaShape shape = cuda::CudnnSdpaShape::of(call, grad);
    size_t bytes = 0;
    Status st = cudnn_->prepare(shape, &bytes);
    if (st.isOk() && bytes > scratchBytes_) {
      if (planPrepared_)
        st = Status(StatusCode::kUnsupported,
                    "its workspace (" + std::to_string(bytes) +
                        " bytes) was not planned (scratch " +
                        std::to_string(scratchBytes_) + " bytes)");
      else
        st = ensureScratch(bytes);
    }
    if (st.isOk()) {
      call.scratch = scratch_, call.scratchBytes = scratchBytes_;
      st = cudnn_->run(cur_, call, grad);
    }
    if (st.isOk())
      return true;
    reportCudnnFallback(shape, st.message());
    return false;
  }

  /// Frees what preparePlan() made (streams but stream 0, events).
  void releasePlanResources() {
    planPrepared_ = false;
    synchronizeStreams();
    for (cudaEvent_t e : timing_)
      if (e)
        cudaEventDestroy(e);
    timing_.clear();
    for (cudaEvent_t e : events_)
      if (e)
        cudaEventDestroy(e);
    events_.clear();
    for (cudaEvent_t e : joinEvents_)
      if (e)
        cudaEventDestroy(e);
    joinEvents_.clear();
    for (size_t s = 1; s < streams_.size(); ++s)
      if (streams_[s])
        cudaStreamDestroy(streams_[s]);
    streams_.clear();
    cur_ = stream_;
    gemms_.clear();
    hostJobs_.clear();
  }

  Status ensureScratch(size_t bytes) {
    if (bytes <= scratchBytes_)
      return Status::ok();
    if (scratch_) {
      synchronizeStreams();
      COLOSSAL_CUDA_RETURN_IF_ERROR(cudaFree(scratch_));
      scratch_ = nullptr;
      scratchBytes_ = 0;
    }
    COLOSSAL_CUDA_RETURN_IF_ERROR(cudaMalloc(&scratch_, bytes));
    scratchBytes_ = bytes;
    return Status::ok();
  }

  /// Zeroes `bytes` at `dst` on the current instruction's stream.
  Status zeroOnStream(void *dst, size_t bytes) {
    if (bytes != 0)
      COLOSSAL_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dst, 0, bytes, cur_));
    return Status::ok();
  }

  Status dispatch(const Attrs &attrs, ErrorSink sink,
                  const std::vector<TensorRef> &ins,
                  const std::vector<TensorRef> &outs);
  Status matmul(const Attrs &attrs, const TensorRef &a, const TensorRef &b,
                const TensorRef &out);
  /// The GEMMs of a matmul, planned (descriptors, heuristic) but not run.
  Status planMatmul(const Attrs &attrs, const TensorRef &a, const TensorRef &b,
                    const TensorRef &out, std::vector<GemmCall> &calls);
  Status planGemm(DType dtype, int64_t m, int64_t n, int64_t k, bool ta,
                  bool tb, const void *a, const void *b, void *c, int64_t batch,
                  int64_t strideA, int64_t strideB, int64_t strideC,
                  GemmCall &call);
  Status launchGemms(const std::vector<GemmCall> &calls);

  cudaStream_t stream_ = nullptr; ///< the backend's own; plan stream 0
  cudaStream_t cur_ = nullptr;    ///< the running instruction's stream
  cublasLtHandle_t lt_ = nullptr;
  cuda::DeviceError *error_ = nullptr;
  void *ltWorkspace_ = nullptr;
  void *scratch_ = nullptr;
  size_t scratchBytes_ = 0;
  /// cudaMalloc bytes besides arenas and scratch (workspace, error record).
  uint64_t mallocBytes_ = 0;
  uint64_t arenaMallocBytes_ = 0;
  bool syncEach_ = false;
  bool reportMalloc_ = false;
  std::vector<Allocation> arenas_;
  uint64_t carried_ = 0; ///< Plan::carriedStreams of the prepared plan
  std::vector<uint8_t *> bases_;
  /// The op of each instruction index seen (for device error messages).
  std::vector<OpKind> kinds_;

  // Per plan (preparePlan).
  std::vector<StreamKind> streamKinds_;
  std::vector<cudaStream_t> streams_;
  std::vector<cudaEvent_t> events_;     ///< the plan's events
  std::vector<cudaEvent_t> joinEvents_; ///< one per stream, fill/copy joins
  cudaEvent_t sleepEvent_ = nullptr;    ///< blocking-sync, for step ends
  bool sleepAtStepEnd_ = false;         ///< COLOSSAL_CUDA_STEP_WAIT
  bool hugePages_ = true;               ///< COLOSSAL_HOST_PAGES=huge
  std::vector<std::unique_ptr<HostJob>> hostJobs_;
  std::vector<std::unique_ptr<std::vector<GemmCall>>> gemms_;
  cuda::FusedPrograms fused_; ///< fused_elementwise programs, per instr
  /// cuDNN's fused attention (COLOSSAL_ATTENTION_KERNEL=cudnn), made at
  /// first use: a handle and a plan per shape.
  std::unique_ptr<cuda::CudnnAttention> cudnn_;
  bool planPrepared_ = false; ///< inside preparePlan's plan: no allocation
  /// f32 (default) or f64 kernels (COLOSSAL_CUDA_REDUCE, COLOSSAL_CUDA_FUSED).
  cuda::Precision reducePrecision_ = cuda::Precision::kF32;
  cuda::Precision fusedPrecision_ = cuda::Precision::kF32;
  bool exactAdamW_ = false; ///< COLOSSAL_CPU_ADAMW=exact: the f64 AdamW
  std::unique_ptr<cuda::FusedJit> jit_; ///< COLOSSAL_CUDA_FUSED unset or jit
  std::atomic<bool> hostFailed_{false};
  Status hostFailure_;
  uint64_t hostFailedInstr_ = 0;

  // Tracing: timing_[0] is the origin, 2i+1 and 2i+2 bracket instruction i.
  bool tracing_ = false, tracingNow_ = false;
  std::vector<cudaEvent_t> timing_;
  std::vector<uint64_t> traced_;
};

#define COLOSSAL_LAUNCH(expr)                                                  \
  do {                                                                         \
    cudaError_t colossalLaunchErr_ = (expr);                                   \
    if (colossalLaunchErr_ != cudaSuccess)                                     \
      return cudaFailure(colossalLaunchErr_, #expr, __FILE__, __LINE__);       \
  } while (0)

Status CudaBackend::dispatch(const Attrs &attrs, ErrorSink sink,
                             const std::vector<TensorRef> &ins,
                             const std::vector<TensorRef> &outs) {
  const OpKind kind = attrs.kind();
  const TensorRef &out = outs[0];
  const IntVec &outDims = out.type.dims;
  const int64_t outCount = out.type.numElements();
  if (isFloatUnaryOp(kind) || kind == OpKind::Not) {
    bool tanhGelu = kind == OpKind::Gelu && attrs.i("approximate") == 1;
    COLOSSAL_LAUNCH(cuda::launchUnary(cur_, kind, tanhGelu,
                                      ins[0].type.dtype, out.type.dtype,
                                      outCount, ins[0].data, out.data));
    return Status::ok();
  }
  switch (kind) {
  case OpKind::EventRecord:
  case OpKind::EventWait:
    return Status::ok(); // run() handles them before dispatching
  case OpKind::Identity:
  case OpKind::Reshape:
    // A reshape may alias its input exactly: nothing to move then.
    if (ins[0].data != out.data && out.type.sizeBytes() != 0)
      COLOSSAL_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(out.data, ins[0].data, out.type.sizeBytes(),
                          cudaMemcpyDefault, cur_));
    return Status::ok();
  case OpKind::Cast:
    COLOSSAL_LAUNCH(cuda::launchCast(cur_, ins[0].type.dtype, out.type.dtype,
                                     outCount, ins[0].data, out.data));
    return Status::ok();
  case OpKind::Add:
  case OpKind::Sub:
  case OpKind::Mul:
  case OpKind::Div:
  case OpKind::Pow:
  case OpKind::Max:
  case OpKind::Min:
  case OpKind::And:
  case OpKind::Or:
  case OpKind::Xor:
  case OpKind::Equal:
  case OpKind::Less:
  case OpKind::LessEqual:
  case OpKind::Greater:
  case OpKind::GreaterEqual:
    COLOSSAL_LAUNCH(cuda::launchBinary(
        cur_, sink, kind, ins[0].type.dtype, out.type.dtype, toDims(outDims),
        toDims(broadcastStrides(ins[0].type.dims, outDims)),
        toDims(broadcastStrides(ins[1].type.dims, outDims)), ins[0].data,
        ins[1].data, out.data));
    return Status::ok();
  case OpKind::Where:
    COLOSSAL_LAUNCH(cuda::launchWhere(
        cur_, ins[0].type.dtype, cuda::elementBytes(out.type.dtype),
        toDims(outDims), toDims(broadcastStrides(ins[0].type.dims, outDims)),
        toDims(broadcastStrides(ins[1].type.dims, outDims)),
        toDims(broadcastStrides(ins[2].type.dims, outDims)), ins[0].data,
        ins[1].data, ins[2].data, out.data));
    return Status::ok();
  case OpKind::MatMul:
    return matmul(attrs, ins[0], ins[1], out);
  case OpKind::ReduceSum:
  case OpKind::ReduceMean:
  case OpKind::ReduceMax:
  case OpKind::ReduceMin:
  case OpKind::ReduceSumSquare: {
    IntVec keptDims, keptStrides, redDims, redStrides;
    reduceDims(ins[0].type.dims, attrs.list("axes"), keptDims, keptStrides,
               redDims, redStrides);
    COLOSSAL_LAUNCH(cuda::launchReduce(
        cur_, kind, ins[0].type.dtype, outCount, toDims(keptDims),
        toDims(keptStrides), toDims(redDims), toDims(redStrides), ins[0].data,
        out.data, scratch_, reducePrecision_));
    return Status::ok();
  }
  case OpKind::Softmax:
  case OpKind::LogSoftmax: {
    const IntVec &dims = ins[0].type.dims;
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    COLOSSAL_LAUNCH(cuda::launchSoftmax(
        cur_, kind == OpKind::LogSoftmax, ins[0].type.dtype,
        product(dims, 0, axis), dims[axis],
        product(dims, axis + 1, dims.size()), ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::LayerNorm: {
    const IntVec &dims = ins[0].type.dims;
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    bool hasBias = ins.size() > 2;
    COLOSSAL_LAUNCH(cuda::launchLayerNorm(
        cur_, ins[0].type.dtype, ins[1].type.dtype,
        hasBias ? ins[2].type.dtype : ins[1].type.dtype, product(dims, 0, axis),
        product(dims, axis, dims.size()), attrs.f("epsilon"), ins[0].data,
        ins[1].data, hasBias ? ins[2].data : nullptr, out.data));
    return Status::ok();
  }
  case OpKind::Gather: {
    const IntVec &dims = ins[0].type.dims;
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    COLOSSAL_LAUNCH(cuda::launchGather(
        cur_, sink, cuda::elementBytes(out.type.dtype),
        product(dims, 0, axis), dims[axis],
        product(dims, axis + 1, dims.size()), ins[1].type.dtype,
        ins[1].type.numElements(), ins[1].data, ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::GatherND: {
    const IntVec &dd = ins[0].type.dims, &di = ins[1].type.dims;
    size_t batchDims = static_cast<size_t>(attrs.i("batch_dims"));
    int depth = static_cast<int>(di.back());
    COLOSSAL_LAUNCH(cuda::launchGatherND(
        cur_, sink, cuda::elementBytes(out.type.dtype), toDims(dd),
        static_cast<int>(batchDims), depth, product(dd, 0, batchDims),
        product(di, batchDims, di.size() - 1), ins[1].type.dtype, ins[1].data,
        ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::CumSum: {
    const IntVec &dims = ins[0].type.dims;
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    COLOSSAL_LAUNCH(cuda::launchCumSum(
        cur_, ins[0].type.dtype, product(dims, 0, axis), dims[axis],
        product(dims, axis + 1, dims.size()), attrs.i("exclusive") != 0,
        attrs.i("reverse") != 0, ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::GatherElements:
    COLOSSAL_LAUNCH(cuda::launchGatherElements(
        cur_, sink, cuda::elementBytes(out.type.dtype),
        toDims(ins[0].type.dims), static_cast<int>(attrs.i("axis")),
        toDims(ins[1].type.dims), ins[1].type.dtype, ins[1].data, ins[0].data,
        out.data));
    return Status::ok();
  case OpKind::GatherElementsGrad:
    COLOSSAL_LAUNCH(cuda::launchGatherElementsGrad(
        cur_, sink, ins[0].type.dtype, out.type.dtype, toDims(outDims),
        static_cast<int>(attrs.i("axis")), toDims(ins[1].type.dims),
        ins[1].type.dtype, ins[1].data, ins[0].data, out.data));
    return Status::ok();
  case OpKind::Trilu: {
    const IntVec &dims = ins[0].type.dims;
    int64_t rows = dims[dims.size() - 2], cols = dims[dims.size() - 1];
    // Clamping k to [-rows, cols] changes no row's kept run and keeps
    // col - row - k from overflowing (as the CPU kernel).
    int64_t k = std::clamp<int64_t>(attrs.i("k"), -rows, cols);
    COLOSSAL_LAUNCH(cuda::launchTrilu(
        cur_, cuda::elementBytes(out.type.dtype), outCount, rows, cols, k,
        attrs.i("upper") != 0, ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::Expand:
    COLOSSAL_LAUNCH(cuda::launchStridedCopy(
        cur_, cuda::elementBytes(out.type.dtype), toDims(outDims),
        toDims(broadcastStrides(ins[0].type.dims, outDims)), 0, ins[0].data,
        out.data));
    return Status::ok();
  case OpKind::Transpose: {
    const IntVec &perm = attrs.list("perm");
    IntVec inStrides = contiguousStrides(ins[0].type.dims);
    IntVec strides(perm.size());
    for (size_t d = 0; d < perm.size(); ++d)
      strides[d] = inStrides[static_cast<size_t>(perm[d])];
    COLOSSAL_LAUNCH(cuda::launchStridedCopy(
        cur_, cuda::elementBytes(out.type.dtype), toDims(outDims),
        toDims(strides), 0, ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::Slice: {
    if (outCount == 0)
      return Status::ok(); // starts need not be in range then
    const IntVec &starts = attrs.list("starts"), &steps = attrs.list("steps");
    IntVec inStrides = contiguousStrides(ins[0].type.dims);
    IntVec strides(starts.size());
    int64_t base = 0;
    for (size_t d = 0; d < starts.size(); ++d) {
      base += starts[d] * inStrides[d];
      // A step is only taken when the dim has more than one element.
      strides[d] = outDims[d] > 1 ? steps[d] * inStrides[d] : 0;
    }
    COLOSSAL_LAUNCH(cuda::launchStridedCopy(
        cur_, cuda::elementBytes(out.type.dtype), toDims(outDims),
        toDims(strides), base, ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::Concat: {
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    int64_t outer = product(outDims, 0, axis);
    int64_t rowElems = product(outDims, axis, outDims.size());
    int64_t offset = 0;
    for (const TensorRef &in : ins) {
      int64_t chunk = product(in.type.dims, axis, in.type.dims.size());
      COLOSSAL_LAUNCH(cuda::launchConcatPart(
          cur_, cuda::elementBytes(out.type.dtype), outer, chunk, rowElems,
          offset, in.data, out.data));
      offset += chunk;
    }
    return Status::ok();
  }
  case OpKind::Pad: {
    const IntVec &pads = attrs.list("pads");
    IntVec begins(pads.begin(), pads.begin() + ins[0].type.dims.size());
    COLOSSAL_LAUNCH(cuda::launchPad(
        cur_, cuda::elementBytes(out.type.dtype), toDims(ins[0].type.dims),
        toDims(outDims), toDims(begins), static_cast<int>(attrs.i("mode")),
        valueBits(out.type.dtype, attrs.f("value")), ins[0].data, out.data));
    return Status::ok();
  }
  case OpKind::Fill:
    COLOSSAL_LAUNCH(cuda::launchFill(
        cur_, cuda::elementBytes(out.type.dtype), outCount,
        valueBits(out.type.dtype, attrs.f("value")), out.data));
    return Status::ok();
  case OpKind::SoftmaxCrossEntropy: {
    const IntVec &dims = ins[0].type.dims;
    COLOSSAL_LAUNCH(cuda::launchCrossEntropy(
        cur_, sink, ins[0].type.dtype, out.type.dtype, ins[1].type.dtype,
        dims[0], dims[1],
        product(dims, 2, dims.size()), attrs.i("ignore_index"),
        attrs.i("reduction"), ins[0].data, ins[1].data, out.data,
        static_cast<double *>(scratch_)));
    return Status::ok();
  }
  case OpKind::GatherGrad: {
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    int64_t length = outDims[axis];
    // Inference bounded padding_idx to [-length, length) unless it is the
    // INT64_MIN "none", which no normalised index (>= 0) equals.
    int64_t paddingIdx = attrs.i("padding_idx");
    if (paddingIdx != INT64_MIN && paddingIdx < 0)
      paddingIdx += length;
    COLOSSAL_LAUNCH(cuda::launchGatherGrad(
        cur_, sink, ins[0].type.dtype, out.type.dtype,
        product(outDims, 0, axis), length,
        product(outDims, axis + 1, outDims.size()), ins[1].type.dtype,
        ins[1].type.numElements(), ins[1].data, paddingIdx, ins[0].data,
        out.data, static_cast<int64_t *>(scratch_)));
    return Status::ok();
  }
  case OpKind::SliceGrad: {
    const TensorRef &grad = ins[0];
    // All-zero bytes are 0 (or false) in every dtype.
    COLOSSAL_RETURN_IF_ERROR(zeroOnStream(out.data, out.type.sizeBytes()));
    if (grad.type.numElements() == 0)
      return Status::ok(); // starts need not be in range then
    const IntVec &starts = attrs.list("starts"), &steps = attrs.list("steps");
    IntVec outStrides = contiguousStrides(outDims);
    IntVec strides(starts.size());
    int64_t base = 0;
    for (size_t d = 0; d < starts.size(); ++d) {
      base += starts[d] * outStrides[d];
      strides[d] = grad.type.dims[d] > 1 ? steps[d] * outStrides[d] : 0;
    }
    COLOSSAL_LAUNCH(cuda::launchStridedScatter(
        cur_, cuda::elementBytes(out.type.dtype), toDims(grad.type.dims),
        toDims(strides), base, grad.data, out.data));
    return Status::ok();
  }
  case OpKind::FusedElementwise:
    return fused_.run(cur_, sink, attrs, ins, out, fusedPrecision_);
  case OpKind::Attention:
  case OpKind::AttentionGrad: {
    // Flash-style kernels (Attention.cu); the operand order is OpTable.h's.
    bool grad = kind == OpKind::AttentionGrad;
    bool hasBias = ins.size() == (grad ? 7u : 4u);
    const IntVec &q = ins[0].type.dims, &k = ins[1].type.dims;
    cuda::AttentionCall call{};
    call.dtype = ins[0].type.dtype;
    call.batch = q[0], call.heads = q[1], call.rows = q[2], call.depth = q[3];
    call.kvHeads = k[1], call.cols = k[2];
    if (call.depth > 128 || call.dtype == DType::kF64)
      return Status(StatusCode::kUnsupported,
                    std::string(opInfo(kind).name) +
                        ": the CUDA kernel takes head dims <= 128 in "
                        "f32/bf16/f16, got " +
                        ins[0].type.toString());
    call.scale = attrs.f("scale");
    call.causal = attrs.i("causal") != 0;
    call.q = ins[0].data, call.k = ins[1].data, call.v = ins[2].data;
    call.bias = hasBias ? ins[3].data : nullptr;
    if (hasBias) {
      // Right-aligned broadcast over [B, Hq, S, T]; size-1 dims read 0.
      const IntVec &bd = ins[3].type.dims;
      int64_t stride = 1;
      for (size_t d = bd.size(); d-- > 0;) {
        call.biasStride[4 - bd.size() + d] = bd[d] == 1 ? 0 : stride;
        stride *= bd[d];
      }
    }
    if (!grad) {
      call.o = outs[0].data;
      call.lseOut = static_cast<float *>(outs[1].data);
      if (tryCudnnAttention(call, grad))
        return Status::ok();
      COLOSSAL_LAUNCH(cuda::launchAttentionForward(cur_, call));
      return Status::ok();
    }
    size_t rest = hasBias ? 4 : 3;
    call.out = ins[rest].data;
    call.lse = static_cast<const float *>(ins[rest + 1].data);
    call.dout = ins[rest + 2].data;
    call.dq = outs[0].data, call.dk = outs[1].data, call.dv = outs[2].data;
    if (tryCudnnAttention(call, grad))
      return Status::ok();
    call.scratch = scratch_, call.scratchBytes = scratchBytes_;
    COLOSSAL_LAUNCH(cuda::launchAttentionBackward(cur_, call));
    return Status::ok();
  }
  case OpKind::LayerNormGrad: {
    const IntVec &dims = ins[0].type.dims;
    size_t axis = static_cast<size_t>(attrs.i("axis"));
    COLOSSAL_LAUNCH(cuda::launchLayerNormGrad(
        cur_, ins[0].type.dtype, ins[1].type.dtype, ins[2].type.dtype,
        product(dims, 0, axis), product(dims, axis, dims.size()),
        attrs.f("epsilon"), ins[0].data, ins[1].data, ins[2].data, out.data,
        outs[1].type.dtype, outs[1].data, outs[2].data,
        static_cast<double *>(scratch_)));
    return Status::ok();
  }
  case OpKind::SoftmaxCrossEntropyGrad: {
    const IntVec &dims = ins[0].type.dims;
    COLOSSAL_LAUNCH(cuda::launchCrossEntropyGrad(
        cur_, sink, ins[0].type.dtype, ins[1].type.dtype, ins[2].type.dtype,
        dims[0], dims[1], product(dims, 2, dims.size()),
        attrs.i("ignore_index"), attrs.i("reduction"), ins[0].data, ins[1].data,
        ins[2].data, out.data, static_cast<int64_t *>(scratch_)));
    return Status::ok();
  }
  case OpKind::AdamW:
    COLOSSAL_LAUNCH(cuda::launchAdamW(
        cur_, sink, ins[0].type.numElements(), attrs.f("beta1"),
        attrs.f("beta2"), attrs.f("eps"), attrs.f("weight_decay"),
        static_cast<const float *>(ins[0].data), ins[1].type.dtype, ins[1].data,
        static_cast<const float *>(ins[2].data),
        static_cast<const float *>(ins[3].data),
        static_cast<const float *>(ins[4].data),
        static_cast<const int64_t *>(ins[5].data),
        static_cast<float *>(outs[0].data), static_cast<float *>(outs[1].data),
        static_cast<float *>(outs[2].data), exactAdamW_,
        ins.size() > 6 ? static_cast<const float *>(ins[6].data) : nullptr));
    return Status::ok();
  case OpKind::AdamWNorm:
    COLOSSAL_LAUNCH(cuda::launchAdamWNorm(
        cur_, sink, ins[0].type.numElements(), attrs.f("beta1"),
        attrs.f("beta2"), attrs.f("eps"), attrs.f("weight_decay"),
        static_cast<const float *>(ins[0].data), ins[1].type.dtype, ins[1].data,
        static_cast<const float *>(ins[2].data),
        static_cast<const float *>(ins[3].data),
        static_cast<const float *>(ins[4].data),
        static_cast<const int64_t *>(ins[5].data),
        static_cast<const float *>(ins[6].data),
        static_cast<float *>(outs[0].data), static_cast<float *>(outs[1].data),
        static_cast<float *>(outs[2].data), static_cast<float *>(outs[3].data),
        static_cast<double *>(scratch_), exactAdamW_));
    return Status::ok();
  case OpKind::Sgd:
    COLOSSAL_LAUNCH(cuda::launchSgd(
        cur_, sink, ins[0].type.numElements(), attrs.f("momentum"),
        attrs.f("dampening"), attrs.f("weight_decay"), attrs.i("nesterov") != 0,
        static_cast<const float *>(ins[0].data), ins[1].type.dtype, ins[1].data,
        static_cast<const float *>(ins[2].data),
        static_cast<const float *>(ins[3].data),
        static_cast<const int64_t *>(ins[4].data),
        static_cast<float *>(outs[0].data),
        static_cast<float *>(outs[1].data)));
    return Status::ok();
  }
  return Status(StatusCode::kUnsupported,
                std::string(opInfo(kind).name) + ": no CUDA kernel");
}

//===----------------------------------------------------------------------===//
// matmul through cuBLASLt
//===----------------------------------------------------------------------===//

Status CudaBackend::matmul(const Attrs &attrs, const TensorRef &a,
                           const TensorRef &b, const TensorRef &out) {
  // Uncached: a backend run without preparePlan() (the kernel tests).
  std::vector<GemmCall> calls;
  COLOSSAL_RETURN_IF_ERROR(planMatmul(attrs, a, b, out, calls));
  return launchGemms(calls);
}

Status CudaBackend::launchGemms(const std::vector<GemmCall> &calls) {
  static const float alphaF = 1.0f, betaF = 0.0f;
  static const double alphaD = 1.0, betaD = 0.0;
  for (const GemmCall &call : calls) {
    if (!call.desc) {
      COLOSSAL_RETURN_IF_ERROR(zeroOnStream(call.c, call.zeroBytes));
      continue;
    }
    const LtDescriptors &d = *call.desc;
    COLOSSAL_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(
        lt_, d.op,
        call.wideScale ? static_cast<const void *>(&alphaD) : &alphaF, call.b,
        d.a, call.a, d.b,
        call.wideScale ? static_cast<const void *>(&betaD) : &betaF, call.c,
        d.c, call.c, d.c, &call.algo, ltWorkspace_, kLtWorkspaceBytes, cur_));
  }
  return Status::ok();
}

Status CudaBackend::planMatmul(const Attrs &attrs, const TensorRef &a,
                               const TensorRef &b, const TensorRef &out,
                               std::vector<GemmCall> &calls) {
  calls.clear();
  bool ta = attrs.i("transpose_a") != 0, tb = attrs.i("transpose_b") != 0;
  const IntVec &da = a.type.dims, &db = b.type.dims, &dOut = out.type.dims;
  size_t ra = da.size(), rOut = dOut.size();
  int64_t m = dOut[rOut - 2], n = dOut[rOut - 1];
  int64_t k = ta ? da[ra - 2] : da[ra - 1];
  if (out.type.numElements() == 0)
    return Status::ok();
  if (k == 0) { // an empty sum: zeros (all-zero bytes in every float dtype)
    GemmCall zero;
    zero.c = out.data;
    zero.zeroBytes = out.type.sizeBytes();
    calls.push_back(std::move(zero));
    return Status::ok();
  }

  // Batch strides in whole matrices; broadcast batch dims get stride 0.
  IntVec batch(dOut.begin(), dOut.end() - 2);
  IntVec stridesA = broadcastStrides(IntVec(da.begin(), da.end() - 2), batch);
  IntVec stridesB = broadcastStrides(IntVec(db.begin(), db.end() - 2), batch);
  IntVec contiguous = contiguousStrides(batch);
  int64_t batchCount = product(batch);
  // A strided batch fits when an operand is either shared by every output
  // matrix (all strides 0) or has one matrix per output matrix, in order.
  auto uniform = [&](const IntVec &strides, bool &shared) {
    bool zero = true, full = true;
    for (size_t d = 0; d < batch.size(); ++d) {
      if (batch[d] == 1)
        continue;
      zero &= strides[d] == 0;
      full &= strides[d] == contiguous[d];
    }
    shared = zero;
    return zero || full;
  };
  bool sharedA = false, sharedB = false;
  DType dtype = out.type.dtype;
  if (batchCount <= INT32_MAX && uniform(stridesA, sharedA) &&
      uniform(stridesB, sharedB)) {
    GemmCall call;
    Status st;
    // b shared and a not transposed: the batch folds into M, one GEMM.
    if (sharedB && !sharedA && !ta)
      st = planGemm(dtype, m * batchCount, n, k, ta, tb, a.data, b.data,
                    out.data, 1, 0, 0, 0, call);
    else
      st = planGemm(dtype, m, n, k, ta, tb, a.data, b.data, out.data,
                    batchCount, sharedA ? 0 : m * k, sharedB ? 0 : k * n,
                    m * n, call);
    if (st.isOk()) {
      calls.push_back(std::move(call));
      return Status::ok();
    }
    // Should cuBLASLt refuse a strided batch (a zero stride, say), the loop
    // below computes the same matrices one at a time.
    if (st.code() != StatusCode::kUnsupported || batchCount == 1 ||
        (sharedB && !sharedA && !ta))
      return st;
  }
  // General broadcast (e.g. [2, 1] x [1, 3] batches): one GEMM per matrix.
  size_t bytes = dtypeSizeBytes(dtype);
  for (int64_t i = 0; i < batchCount; ++i) {
    int64_t offA = 0, offB = 0, rest = i;
    for (size_t d = batch.size(); d-- > 0;) {
      int64_t coord = rest % batch[d];
      rest /= batch[d];
      offA += coord * stridesA[d];
      offB += coord * stridesB[d];
    }
    GemmCall call;
    COLOSSAL_RETURN_IF_ERROR(planGemm(
        dtype, m, n, k, ta, tb,
        static_cast<const uint8_t *>(a.data) + offA * m * k * bytes,
        static_cast<const uint8_t *>(b.data) + offB * k * n * bytes,
        static_cast<uint8_t *>(out.data) + i * m * n * bytes, 1, 0, 0, 0,
        call));
    calls.push_back(std::move(call));
  }
  return Status::ok();
}

/// Row-major C[m, n] = op(A)[m, k] x op(B)[k, n], as the column-major
/// C^T[n, m] = op(B)^T x op(A)^T: cuBLASLt's "A" is our b and its "B" our a,
/// each with its stored (row-major) shape read as column-major. Plans the
/// call: descriptors, layouts and the heuristic's algorithm, kept in `call`.
Status CudaBackend::planGemm(DType dtype, int64_t m, int64_t n, int64_t k,
                             bool ta, bool tb, const void *a, const void *b,
                             void *c, int64_t batch, int64_t strideA,
                             int64_t strideB, int64_t strideC,
                             GemmCall &call) {
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t scaleType = CUDA_R_32F;
  switch (dtype) {
  case DType::kF32:
    // Pedantic fp32: no TF32 and no reduced-precision reductions, so the
    // result matches an fp32 dot product (and the CPU within ~1e-6).
    type = CUDA_R_32F;
    compute = CUBLAS_COMPUTE_32F_PEDANTIC;
    break;
  case DType::kBF16:
    // bf16 operands on the tensor cores, fp32 accumulation.
    type = CUDA_R_16BF;
    compute = CUBLAS_COMPUTE_32F;
    break;
  case DType::kF16:
    type = CUDA_R_16F;
    compute = CUBLAS_COMPUTE_32F;
    break;
  case DType::kF64:
    type = CUDA_R_64F;
    compute = CUBLAS_COMPUTE_64F;
    scaleType = CUDA_R_64F;
    break;
  default:
    return Status(StatusCode::kUnsupported,
                  std::string("matmul: no cuBLASLt path for ") +
                      dtypeName(dtype));
  }
  int64_t bytes = static_cast<int64_t>(dtypeSizeBytes(dtype));
  // Tensors sit at plan offsets, not always 256-byte aligned: the heuristic
  // is told the real alignment so it never picks a kernel that needs more.
  uint32_t alignB = alignmentOf(b, batch > 1 ? strideB * bytes : 0);
  uint32_t alignA = alignmentOf(a, batch > 1 ? strideA * bytes : 0);
  uint32_t alignC = alignmentOf(c, batch > 1 ? strideC * bytes : 0);

  auto d = std::make_unique<LtDescriptors>();
  cublasLtMatmulHeuristicResult_t result = {};
  int found = 0;
  // Pedantic fp32 first; should cuBLASLt offer no kernel for it, plain
  // CUBLAS_COMPUTE_32F, which is fp32 too (TF32 is only ever used under
  // CUBLAS_COMPUTE_32F_FAST_TF32, which we never ask for).
  for (int attempt = 0; attempt < 2 && found == 0; ++attempt) {
    if (attempt == 1) {
      if (compute != CUBLAS_COMPUTE_32F_PEDANTIC)
        break;
      compute = CUBLAS_COMPUTE_32F;
    }
    d->reset();
    found = 0;
    Status described =
        describeGemm(*d, type, compute, scaleType, m, n, k, ta, tb, batch,
                     strideA, strideB, strideC, alignA, alignB, alignC);
    if (!described.isOk()) {
      if (compute == CUBLAS_COMPUTE_32F_PEDANTIC)
        continue; // try plain CUBLAS_COMPUTE_32F
      return described;
    }
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
        lt_, d->op, d->a, d->b, d->c, d->c, d->pref, 1, &result, &found);
    // NOT_SUPPORTED is how it says "no algorithm" (found stays 0).
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED)
      return cublasFailure(st, "cublasLtMatmulAlgoGetHeuristic", __FILE__,
                           __LINE__);
    if (st != CUBLAS_STATUS_SUCCESS)
      found = 0;
  }
  if (found == 0)
    return Status(StatusCode::kUnsupported,
                  std::string("matmul: cuBLASLt has no algorithm for ") +
                      dtypeName(dtype) + " m=" + std::to_string(m) +
                      " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                      " batch=" + std::to_string(batch) + " (alignment " +
                      std::to_string(std::min({alignA, alignB, alignC})) +
                      " bytes)");
  call.desc = std::move(d);
  call.algo = result.algo;
  call.wideScale = scaleType == CUDA_R_64F;
  call.a = a;
  call.b = b;
  call.c = c;
  return Status::ok();
}

Status createCudaBackend(std::unique_ptr<Backend> &out) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return Status(
        StatusCode::kUnsupported,
        std::string("no CUDA device is visible (cudaGetDeviceCount: ") +
            cudaGetErrorString(err) + ")");
  }
  if (count == 0)
    return Status(StatusCode::kUnsupported,
                  "no CUDA device is visible (cudaGetDeviceCount found 0)");
  cudaDeviceProp prop;
  COLOSSAL_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
  if (prop.major < 9)
    return Status(StatusCode::kUnsupported,
                  std::string("GPU 0 (") + prop.name +
                      ") has compute capability " + std::to_string(prop.major) +
                      "." + std::to_string(prop.minor) +
                      "; this build's kernels are for sm_90 and newer");
  auto backend = std::make_unique<CudaBackend>();
  COLOSSAL_RETURN_IF_ERROR(backend->init());
  out = std::move(backend);
  return Status::ok();
}

[[maybe_unused]] const bool kRegistered =
    (registerBackendFactory(Device::kCuda, &createCudaBackend), true);

} // namespace

} // namespace colossal::runtime
