//===- Attention.cu - Flash-style attention forward and backward ----------===//
//
// attention and attention_grad (OpTable.h) on the GPU, without an [S, T]
// tensor in global memory: keys and values stream through shared memory in
// tiles of kKeys, and each query row keeps an online softmax (running max m,
// running sum l, output accumulator) in registers, as FlashAttention does.
// The forward writes lse = m + log l per row; the backward recomputes every
// probability from it, p = exp(s - lse), so it stores nothing either.
//
// Layout of the work (SIMT, fp32 accumulation, any float storage type):
//  - forward and dq: one block per (batch, query head, kRows query rows);
//    each warp owns kRowsPerWarp rows. For a tile of 32 keys, lane j scores
//    key j against the warp's row (the dot over D reads q broadcast from
//    shared memory and k with a padded stride, conflict-free), the warp
//    reduces max and sum with shuffles, then every lane accumulates its
//    D / 32 output dims over the 32 keys, each p_j broadcast by a shuffle.
//  - dk and dv: one block per (batch, kv head, kKeys keys), looping over the
//    query heads of the group and every query row that can see the tile;
//    8 rows at a time, each warp computes p and ds for one row and all 32
//    keys into shared memory, then each thread adds into the dk and dv
//    elements it owns (registers), so nothing is shared and nothing atomic:
//    results are deterministic. GQA's sum over the group is this loop.
// Causal tiles are skipped: the forward and dq stop at the block's last
// visible key, dk/dv start at the first row that sees the tile.
//
// bf16/f16 calls with D 64, 80, 96 or 128 go to the tensor-core kernels of
// AttentionTC.cu instead (run() below); this kernel is their fallback and
// COLOSSAL_ATTENTION_KERNEL=simple forces it. Not yet: head dims above
// 128; f64.
// The launchers return cudaErrorNotSupported for those, and the backend
// turns that into a message naming the op.
//
//===----------------------------------------------------------------------===//
#include "AttentionTC.h"
#include "CudaCommon.cuh"
#include "CudaKernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cmath>

namespace colossal::runtime::cuda {

namespace {

constexpr int kKeys = 32;       // keys per tile (one per lane)
constexpr int kWarps = 4;       // forward/dq block: 4 warps
constexpr int kRowsPerWarp = 4; // rows each warp owns
constexpr int kRows = kWarps * kRowsPerWarp;
constexpr int kGradWarps = 8; // dk/dv block: 8 warps, 8 rows at a time
constexpr int kMaxDepth = 128;

template <typename T> __device__ inline float ld(const T *p, int64_t i);
template <> __device__ inline float ld(const float *p, int64_t i) {
  return p[i];
}
template <> __device__ inline float ld(const uint16_t *p, int64_t i) {
  return bf16ToFloat(p[i]);
}
template <> __device__ inline float ld(const __half *p, int64_t i) {
  return __half2float(p[i]);
}
template <typename T> __device__ inline void st(T *p, int64_t i, float v);
template <> __device__ inline void st(float *p, int64_t i, float v) {
  p[i] = v;
}
template <> __device__ inline void st(uint16_t *p, int64_t i, float v) {
  p[i] = floatToBf16(v);
}
template <> __device__ inline void st(__half *p, int64_t i, float v) {
  p[i] = __float2half_rn(v);
}

__device__ inline float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// Everything a kernel needs; pointers typed by the launcher's T.
template <typename T> struct Args {
  const T *q, *k, *v, *bias, *out, *dout;
  const float *lse;
  T *o, *dq, *dk, *dv;
  float *lseOut;
  int64_t batch, heads, kvHeads, rows, cols;
  int depth;
  float scale;
  bool causal;
  int64_t biasStride[4]; // elements, over [B, Hq, S, T]; 0 broadcasts
};

/// The score of row i against key j (scale * q.k + bias), or -inf when the
/// causal mask closes it. `qRow` in shared memory, `kRow` too.
template <typename T>
__device__ inline float score(const Args<T> &a, const float *qRow,
                              const float *kRow, int64_t b, int64_t h,
                              int64_t i, int64_t j) {
  if (j >= a.cols || (a.causal && j > i + a.cols - a.rows))
    return -INFINITY;
  float dot = 0.f;
  for (int d = 0; d < a.depth; ++d)
    dot = __fmaf_rn(qRow[d], kRow[d], dot);
  float s = a.scale * dot;
  if (a.bias)
    s += ld(a.bias, b * a.biasStride[0] + h * a.biasStride[1] +
                        i * a.biasStride[2] + j * a.biasStride[3]);
  return s;
}

/// Loads keys [key0, key0 + kKeys) of k and v (zeros past the end) into
/// shared tiles of row stride ld = depth + 1.
template <typename T>
__device__ inline void loadKvTile(const Args<T> &a, const T *kBase,
                                  const T *vBase, int64_t key0, float *ks,
                                  float *vs, bool wantV = true) {
  int ldS = a.depth + 1;
  for (int e = threadIdx.x; e < kKeys * a.depth; e += blockDim.x) {
    int r = e / a.depth, d = e % a.depth;
    int64_t j = key0 + r;
    bool in = j < a.cols;
    ks[r * ldS + d] = in ? ld(kBase, j * a.depth + d) : 0.f;
    if (wantV)
      vs[r * ldS + d] = in ? ld(vBase, j * a.depth + d) : 0.f;
  }
}

//===----------------------------------------------------------------------===//
// Forward
//===----------------------------------------------------------------------===//

template <typename T, int DPL> __global__ void attentionForward(Args<T> a) {
  extern __shared__ float smem[];
  const int ldS = a.depth + 1;
  float *ks = smem, *vs = ks + kKeys * ldS, *qs = vs + kKeys * ldS;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const int64_t kvh = h / (a.heads / a.kvHeads);
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const T *q = a.q + bh * a.rows * a.depth;
  const T *kBase = a.k + (b * a.kvHeads + kvh) * a.cols * a.depth;
  const T *vBase = a.v + (b * a.kvHeads + kvh) * a.cols * a.depth;
  for (int e = threadIdx.x; e < kRows * a.depth; e += blockDim.x) {
    int64_t i = row0 + e / a.depth;
    qs[e] = i < a.rows ? ld(q, i * a.depth + e % a.depth) : 0.f;
  }
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DPL];
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
    for (int u = 0; u < DPL; ++u)
      acc[r][u] = 0.f;
  }
  int64_t lastRow = min(a.rows, row0 + kRows) - 1;
  int64_t keyEnd =
      a.causal ? min(a.cols, lastRow + a.cols - a.rows + 1) : a.cols;
  for (int64_t key0 = 0; key0 < keyEnd; key0 += kKeys) {
    __syncthreads();
    loadKvTile(a, kBase, vBase, key0, ks, vs);
    __syncthreads();
    for (int r = 0; r < kRowsPerWarp; ++r) {
      int local = warp * kRowsPerWarp + r;
      int64_t i = row0 + local;
      if (i >= a.rows) // uniform over the warp
        break;
      float s =
          score(a, qs + local * a.depth, ks + lane * ldS, b, h, i, key0 + lane);
      float mNew = fmaxf(m[r], warpMax(s));
      if (mNew == -INFINITY) // every key so far closed: nothing to add
        continue;
      float p = s == -INFINITY ? 0.f : expf(s - mNew);
      float corr = m[r] == -INFINITY ? 0.f : expf(m[r] - mNew);
      l[r] = l[r] * corr + warpSum(p);
      for (int u = 0; u < DPL; ++u)
        acc[r][u] *= corr;
      for (int jj = 0; jj < kKeys; ++jj) {
        float pj = __shfl_sync(0xffffffffu, p, jj);
        if (pj == 0.f)
          continue;
        for (int u = 0; u < DPL; ++u) {
          int d = lane + 32 * u;
          if (d < a.depth)
            acc[r][u] = __fmaf_rn(pj, vs[jj * ldS + d], acc[r][u]);
        }
      }
      m[r] = mNew;
    }
  }
  for (int r = 0; r < kRowsPerWarp; ++r) {
    int64_t i = row0 + warp * kRowsPerWarp + r;
    if (i >= a.rows)
      break;
    int64_t row = bh * a.rows + i;
    float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    for (int u = 0; u < DPL; ++u) {
      int d = lane + 32 * u;
      if (d < a.depth)
        st(a.o, row * a.depth + d, acc[r][u] * inv);
    }
    if (lane == 0)
      a.lseOut[row] = l[r] > 0.f ? m[r] + logf(l[r]) : -INFINITY;
  }
}

//===----------------------------------------------------------------------===//
// Backward: dq
//===----------------------------------------------------------------------===//

/// rowDot_i = dout_i . out_i (= sum_j p_ij dp_ij), reduced over the warp.
template <typename T>
__device__ inline float rowDot(const Args<T> &a, int64_t row, int lane) {
  float sum = 0.f;
  for (int d = lane; d < a.depth; d += 32)
    sum = __fmaf_rn(ld(a.dout, row * a.depth + d), ld(a.out, row * a.depth + d),
                    sum);
  return warpSum(sum);
}

template <typename T, int DPL> __global__ void attentionGradQ(Args<T> a) {
  extern __shared__ float smem[];
  const int ldS = a.depth + 1;
  float *ks = smem, *vs = ks + kKeys * ldS, *qs = vs + kKeys * ldS;
  float *dos = qs + kRows * a.depth;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const int64_t kvh = h / (a.heads / a.kvHeads);
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const T *kBase = a.k + (b * a.kvHeads + kvh) * a.cols * a.depth;
  const T *vBase = a.v + (b * a.kvHeads + kvh) * a.cols * a.depth;
  for (int e = threadIdx.x; e < kRows * a.depth; e += blockDim.x) {
    int64_t i = row0 + e / a.depth;
    int64_t at = (bh * a.rows + i) * a.depth + e % a.depth;
    qs[e] = i < a.rows ? ld(a.q, at) : 0.f;
    dos[e] = i < a.rows ? ld(a.dout, at) : 0.f;
  }
  float dq[kRowsPerWarp][DPL], lse[kRowsPerWarp], dot[kRowsPerWarp];
  for (int r = 0; r < kRowsPerWarp; ++r) {
    int64_t i = row0 + warp * kRowsPerWarp + r;
    for (int u = 0; u < DPL; ++u)
      dq[r][u] = 0.f;
    lse[r] = i < a.rows ? a.lse[bh * a.rows + i] : -INFINITY;
    dot[r] = i < a.rows ? rowDot(a, bh * a.rows + i, lane) : 0.f;
  }
  int64_t lastRow = min(a.rows, row0 + kRows) - 1;
  int64_t keyEnd =
      a.causal ? min(a.cols, lastRow + a.cols - a.rows + 1) : a.cols;
  for (int64_t key0 = 0; key0 < keyEnd; key0 += kKeys) {
    __syncthreads();
    loadKvTile(a, kBase, vBase, key0, ks, vs);
    __syncthreads();
    for (int r = 0; r < kRowsPerWarp; ++r) {
      int local = warp * kRowsPerWarp + r;
      int64_t i = row0 + local;
      if (i >= a.rows)
        break;
      if (lse[r] == -INFINITY) // a closed row: no probability, no gradient
        continue;
      float s =
          score(a, qs + local * a.depth, ks + lane * ldS, b, h, i, key0 + lane);
      float p = s == -INFINITY ? 0.f : expf(s - lse[r]);
      float dp = 0.f;
      for (int d = 0; d < a.depth; ++d)
        dp = __fmaf_rn(dos[local * a.depth + d], vs[lane * ldS + d], dp);
      float ds = p * (dp - dot[r]);
      for (int jj = 0; jj < kKeys; ++jj) {
        float dsj = __shfl_sync(0xffffffffu, ds, jj);
        if (dsj == 0.f)
          continue;
        for (int u = 0; u < DPL; ++u) {
          int d = lane + 32 * u;
          if (d < a.depth)
            dq[r][u] = __fmaf_rn(dsj, ks[jj * ldS + d], dq[r][u]);
        }
      }
    }
  }
  for (int r = 0; r < kRowsPerWarp; ++r) {
    int64_t i = row0 + warp * kRowsPerWarp + r;
    if (i >= a.rows)
      break;
    for (int u = 0; u < DPL; ++u) {
      int d = lane + 32 * u;
      if (d < a.depth)
        st(a.dq, (bh * a.rows + i) * a.depth + d, a.scale * dq[r][u]);
    }
  }
}

//===----------------------------------------------------------------------===//
// Backward: dk, dv
//===----------------------------------------------------------------------===//

/// Each of the 256 threads owns key (tid / 8) of the tile and dims
/// tid % 8 + 8 u, u < EPT (EPT = ceil(D / 8) <= 16).
template <typename T, int EPT> __global__ void attentionGradKV(Args<T> a) {
  extern __shared__ float smem[];
  const int ldS = a.depth + 1;
  float *ks = smem, *vs = ks + kKeys * ldS;
  float *qs = vs + kKeys * ldS, *dos = qs + kGradWarps * a.depth;
  float *ps = dos + kGradWarps * a.depth, *dss = ps + kGradWarps * kKeys;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int ownKey = threadIdx.x / 8, ownDim = threadIdx.x % 8;
  const int64_t bkv = blockIdx.y, b = bkv / a.kvHeads, kvh = bkv % a.kvHeads;
  const int64_t group = a.heads / a.kvHeads;
  const int64_t key0 = static_cast<int64_t>(blockIdx.x) * kKeys;
  const T *kBase = a.k + bkv * a.cols * a.depth;
  const T *vBase = a.v + bkv * a.cols * a.depth;
  loadKvTile(a, kBase, vBase, key0, ks, vs);
  float dk[EPT], dv[EPT];
  for (int u = 0; u < EPT; ++u)
    dk[u] = dv[u] = 0.f;
  // Rows before this one see none of the tile's keys under the mask.
  int64_t rowBegin =
      a.causal ? max(int64_t(0), key0 - (a.cols - a.rows)) : int64_t(0);
  for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
    int64_t bh = b * a.heads + h;
    for (int64_t chunk = rowBegin; chunk < a.rows; chunk += kGradWarps) {
      __syncthreads(); // the previous chunk's readers are done
      for (int e = threadIdx.x; e < kGradWarps * a.depth; e += blockDim.x) {
        int64_t i = chunk + e / a.depth;
        int64_t at = (bh * a.rows + i) * a.depth + e % a.depth;
        qs[e] = i < a.rows ? ld(a.q, at) : 0.f;
        dos[e] = i < a.rows ? ld(a.dout, at) : 0.f;
      }
      __syncthreads();
      int64_t i = chunk + warp;
      float p = 0.f, ds = 0.f;
      if (i < a.rows) {
        int64_t row = bh * a.rows + i;
        float lse = a.lse[row];
        float dotRow = rowDot(a, row, lane);
        if (lse != -INFINITY) {
          float s = score(a, qs + warp * a.depth, ks + lane * ldS, b, h, i,
                          key0 + lane);
          p = s == -INFINITY ? 0.f : expf(s - lse);
          float dp = 0.f;
          for (int d = 0; d < a.depth; ++d)
            dp = __fmaf_rn(dos[warp * a.depth + d], vs[lane * ldS + d], dp);
          ds = p * (dp - dotRow);
        }
      }
      ps[warp * kKeys + lane] = p;
      dss[warp * kKeys + lane] = ds;
      __syncthreads();
      for (int r = 0; r < kGradWarps; ++r) {
        float pr = ps[r * kKeys + ownKey], dsr = dss[r * kKeys + ownKey];
        for (int u = 0; u < EPT; ++u) {
          int d = ownDim + 8 * u;
          if (d < a.depth) {
            dv[u] = __fmaf_rn(pr, dos[r * a.depth + d], dv[u]);
            dk[u] = __fmaf_rn(dsr, qs[r * a.depth + d], dk[u]);
          }
        }
      }
    }
  }
  int64_t j = key0 + ownKey;
  if (j < a.cols)
    for (int u = 0; u < EPT; ++u) {
      int d = ownDim + 8 * u;
      if (d < a.depth) {
        st(a.dk, (bkv * a.cols + j) * a.depth + d, a.scale * dk[u]);
        st(a.dv, (bkv * a.cols + j) * a.depth + d, dv[u]);
      }
    }
}

template <typename T> Args<T> makeArgs(const AttentionCall &c) {
  Args<T> a{};
  a.q = static_cast<const T *>(c.q);
  a.k = static_cast<const T *>(c.k);
  a.v = static_cast<const T *>(c.v);
  a.bias = static_cast<const T *>(c.bias);
  a.out = static_cast<const T *>(c.out);
  a.dout = static_cast<const T *>(c.dout);
  a.lse = c.lse;
  a.o = static_cast<T *>(c.o);
  a.dq = static_cast<T *>(c.dq);
  a.dk = static_cast<T *>(c.dk);
  a.dv = static_cast<T *>(c.dv);
  a.lseOut = c.lseOut;
  a.batch = c.batch;
  a.heads = c.heads;
  a.kvHeads = c.kvHeads;
  a.rows = c.rows;
  a.cols = c.cols;
  a.depth = static_cast<int>(c.depth);
  a.scale = static_cast<float>(c.scale);
  a.causal = c.causal;
  for (int d = 0; d < 4; ++d)
    a.biasStride[d] = c.biasStride[d];
  return a;
}

template <typename Kernel>
cudaError_t launch(Kernel kernel, dim3 grid, int threads, size_t smemBytes,
                   cudaStream_t stream, const void *args) {
  // Above 48 KiB of dynamic shared memory a kernel must opt in.
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smemBytes));
  if (err != cudaSuccess)
    return err;
  void *params[] = {const_cast<void *>(args)};
  return cudaLaunchKernel(reinterpret_cast<const void *>(kernel), grid,
                          dim3(threads), params, smemBytes, stream);
}

template <typename T, int DPL>
cudaError_t forwardT(cudaStream_t stream, const AttentionCall &c) {
  Args<T> a = makeArgs<T>(c);
  size_t ldS = c.depth + 1;
  size_t smem = (2 * kKeys * ldS + kRows * c.depth) * sizeof(float);
  dim3 grid(static_cast<unsigned>((c.rows + kRows - 1) / kRows),
            static_cast<unsigned>(c.batch * c.heads));
  return launch(attentionForward<T, DPL>, grid, kWarps * 32, smem, stream, &a);
}

template <typename T, int DPL>
cudaError_t backwardT(cudaStream_t stream, const AttentionCall &c) {
  Args<T> a = makeArgs<T>(c);
  size_t ldS = c.depth + 1;
  size_t smemQ = (2 * kKeys * ldS + 2 * kRows * c.depth) * sizeof(float);
  dim3 gridQ(static_cast<unsigned>((c.rows + kRows - 1) / kRows),
             static_cast<unsigned>(c.batch * c.heads));
  // S = 0 leaves dq empty but dk and dv to be zeroed; T = 0 the reverse.
  if (gridQ.x > 0) {
    cudaError_t err =
        launch(attentionGradQ<T, DPL>, gridQ, kWarps * 32, smemQ, stream, &a);
    if (err != cudaSuccess)
      return err;
  }
  size_t smemKV =
      (2 * kKeys * ldS + 2 * kGradWarps * c.depth + 2 * kGradWarps * kKeys) *
      sizeof(float);
  dim3 gridKV(static_cast<unsigned>((c.cols + kKeys - 1) / kKeys),
              static_cast<unsigned>(c.batch * c.kvHeads));
  if (gridKV.x == 0)
    return cudaSuccess;
  // EPT = ceil(D / 8) <= 4 DPL.
  return launch(attentionGradKV<T, 4 * DPL>, gridKV, kGradWarps * 32, smemKV,
                stream, &a);
}

template <typename T>
cudaError_t dispatchDepth(cudaStream_t stream, const AttentionCall &c,
                          bool backward) {
  int dpl = static_cast<int>((c.depth + 31) / 32);
  switch (dpl) {
  case 1:
    return backward ? backwardT<T, 1>(stream, c) : forwardT<T, 1>(stream, c);
  case 2:
    return backward ? backwardT<T, 2>(stream, c) : forwardT<T, 2>(stream, c);
  case 3:
    return backward ? backwardT<T, 3>(stream, c) : forwardT<T, 3>(stream, c);
  case 4:
    return backward ? backwardT<T, 4>(stream, c) : forwardT<T, 4>(stream, c);
  default:
    return cudaErrorNotSupported;
  }
}

cudaError_t run(cudaStream_t stream, const AttentionCall &c, bool backward) {
  // bf16/f16 with D 64 or 128 run on the tensor cores (AttentionTC.cu)
  // unless COLOSSAL_ATTENTION_KERNEL=simple; everything else runs here.
  if (attentionUsesTensorCores(c, backward))
    return launchAttentionTensorCore(stream, c, backward);
  if (c.depth < 1 || c.depth > kMaxDepth)
    return cudaErrorNotSupported;
  // Block grids: y counts (batch, head) pairs, at most 65535.
  if (c.batch * c.heads > 65535)
    return cudaErrorNotSupported;
  if (c.batch == 0 || c.heads == 0 || (!backward && c.rows == 0))
    return cudaSuccess;
  switch (c.dtype) {
  case DType::kF32:
    return dispatchDepth<float>(stream, c, backward);
  case DType::kBF16:
    return dispatchDepth<uint16_t>(stream, c, backward);
  case DType::kF16:
    return dispatchDepth<__half>(stream, c, backward);
  default:
    return cudaErrorNotSupported;
  }
}

} // namespace

cudaError_t launchAttentionForward(cudaStream_t stream,
                                   const AttentionCall &call) {
  return run(stream, call, /*backward=*/false);
}

cudaError_t launchAttentionBackward(cudaStream_t stream,
                                    const AttentionCall &call) {
  return run(stream, call, /*backward=*/true);
}

} // namespace colossal::runtime::cuda
