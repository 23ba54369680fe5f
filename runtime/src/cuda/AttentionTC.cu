//===- AttentionTC.cu - Tensor-core flash attention, bf16 and f16 ---------===//
//
// attention and attention_grad (OpTable.h) for bf16/f16 and head dims 64
// and 128, FlashAttention-2 style, on the tensor cores through
// mma.sync.m16n8k16 (f32 accumulation), fragments loaded with ldmatrix from
// shared tiles that cp.async fills, two stages deep. Attention.cu keeps the
// SIMT kernel for every other call and picks this one (AttentionTC.h).
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"; g = lane / 4, t = lane % 4):
//  A 16x16 row-major, 4 regs of 2 halves: a0 (g, 2t..2t+1), a1 (g+8, 2t..),
//    a2 (g, 2t+8..), a3 (g+8, 2t+8..);
//  B 16x8, 2 regs: b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
//  C 16x8 f32: c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1).
// ldmatrix.x4 gives lane l, from matrix i (rows addressed by lanes 8i..8i+7),
// row l / 4 and columns 2 (l % 4)..+1 in register i; with .trans, column
// l / 4 and rows 2 (l % 4)..+1. So, for a tile stored row-major:
//  - an A operand (16 rows from r, 16 columns from c): lane l addresses row
//    r + l % 16, column c + 8 (l / 16)  ("aAddr");
//  - a B operand whose n runs along the tile's rows (K in Q K^T): two n8
//    blocks from r, k from c: row r + l % 8 + 8 (l / 16), column
//    c + 8 ((l / 8) % 2); regs 0, 1 are b0, b1 of the first block, 2, 3 of
//    the second ("bAddr");
//  - a B operand whose k runs along the tile's rows (V in P V): .trans at
//    aAddr's addresses, k from r, two n8 blocks from c; regs 0, 1 the first
//    block's b0, b1, regs 2, 3 the second's.
// Two neighbouring n8 accumulator blocks of one warp are, packed to 16-bit
// pairs, exactly the A fragment of the next product (P in P V), so the
// probabilities never leave registers.
//
// Work:
//  - forward: a block of 4 warps per (batch * head, 64 query rows); each
//    warp owns 16 rows, keeps its Q fragments in registers and, per tile of
//    64 keys, computes S = Q K^T, the online softmax in registers (row max
//    and sum reduced over the 4 lanes of a row) and O += P V. The next K/V
//    tile loads (cp.async) while this one is multiplied. Causal tiles past
//    the block's last visible key are skipped; only tiles that cross the
//    diagonal, the key tail, or a bias take the per-element path.
//  - backward: delta = rowsum(dout * out) per row into the backend's
//    scratch; then dk, dv: a block per (batch * kv head, 64 keys), each warp
//    16 keys, looping over the group's query heads and the query tiles that
//    see the keys (S^T = K Q^T, dP^T = V dO^T, dV += P^T dO,
//    dK += dS^T Q, all in registers). dq, by default (fused): in the same
//    loop, the warps write dS^T to a shared tile and the block adds
//    dS K for its keys into f32 sums in scratch with atomics (five products
//    a step, S and dP computed once), chunked over (batch, kv head) pairs
//    to bound the scratch, then rounded to dq by one more kernel. With
//    COLOSSAL_ATTENTION_KERNEL=deterministic, dq is a second pass instead:
//    a block per (batch * head, 64 rows) looping over key tiles
//    (dQ += dS K, recomputing S and dP: seven products), and every output
//    element is summed by one thread in a fixed order, so the bits repeat
//    run to run. dk and dv are deterministic either way, GQA's sum over the
//    group included. By default D 64, 80 and 128 take the fused path, D 96
//    the two-pass (measured; attentionChoice, defaultBlock).
// Blocks (COLOSSAL_ATTENTION_BLOCK, blockChoice): "64" is the above, the
// grid's x over the row or key tiles, so each head's heaviest causal tiles
// run first (reversed x for the forward). "64s", the backward's default at
// D 64, 80 and 128 (session 7 on the H200, D 64: 0.69 ms against 0.88),
// is the same blocks as template instances with kV2: the grid's x over
// (batch * head) and y over the tiles, heaviest first over the whole
// launch; the dk/dv kernel's lse and delta come by cp.async with Q and dO
// (not through registers, which made a warp wait every step); exp2 is
// ex2.approx.ftz; indices are re-read from %ctaid where used, so the
// kernels stay within their register bound without spilling. "128" (8
// warps, 128 rows or keys a block) and "128t" (4 warps of two 16-row or
// 16-key tiles) are kept as A/Bs: both measured slower. The forward's
// default stays "64" (64s no faster).
//
//===----------------------------------------------------------------------===//
#include "AttentionTC.h"

#include "CudaCommon.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <type_traits>

namespace colossal::runtime::cuda {

namespace {

constexpr int kThreads = 128; // 4 warps, 16 rows (or keys) each
constexpr int kTileRows = 64; // query rows of a forward/dq block, keys of dk/dv
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/// Everything a kernel needs; 16-bit element types travel as raw bits.
struct TcArgs {
  const uint16_t *q, *k, *v, *bias, *out, *dout;
  const float *lse;
  uint16_t *o, *dq, *dk, *dv;
  float *lseOut, *delta;
  float *dqAccum;  // fused backward: f32 dq sums of bkv rows [bkvBase, ..)
  int64_t bkvBase; // the first (batch, kv head) of this launch
  int64_t heads, kvHeads, rows, cols;
  int64_t biasStride[4]; // elements, over [B, Hq, S, T]; 0 broadcasts
  float scale;
  bool causal;
};

//===----------------------------------------------------------------------===//
// PTX wrappers
//===----------------------------------------------------------------------===//

__device__ inline uint32_t smemAddr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// 16 bytes global -> shared, asynchronously; zeros when !in (src-size 0
/// reads nothing from src).
__device__ inline void cpAsync16(void *dst, const void *src, bool in) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                   smemAddr(dst)),
               "l"(src), "r"(in ? 16 : 0)
               : "memory");
}
/// 4 bytes global -> shared, asynchronously; zeros when !in.
__device__ inline void cpAsync4(void *dst, const void *src, bool in) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(
                   smemAddr(dst)),
               "l"(src), "r"(in ? 4 : 0)
               : "memory");
}
__device__ inline void cpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ inline void cpAsyncWaitAll() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

__device__ inline void ldmatrix4(uint32_t (&r)[4], const uint16_t *p) {
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(smemAddr(p))
      : "memory");
}
__device__ inline void ldmatrix4Trans(uint32_t (&r)[4], const uint16_t *p) {
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, "
      "[%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(smemAddr(p))
      : "memory");
}

/// c += a * b, one m16n8k16 product with f32 accumulators.
template <bool kBf16>
__device__ inline void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                           uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kBf16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/// Two floats -> one register of two 16-bit values, lo in the low half,
/// rounded to nearest even.
template <bool kBf16> __device__ inline uint32_t pack(float lo, float hi) {
  uint32_t bits;
  if constexpr (kBf16) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&bits, &v, sizeof bits);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&bits, &v, sizeof bits);
  }
  return bits;
}

template <bool kBf16> __device__ inline float toFloat(uint16_t bits) {
  if constexpr (kBf16)
    return bf16ToFloat(bits);
  else
    return __half2float(__ushort_as_half(bits));
}

/// 2^x by the special-function unit alone (ex2.approx.ftz: results under
/// 2^-126 flush to 0, relative error ~2^-22): exp2f's denormal handling
/// costs instructions and registers, and a probability that small is 0
/// beside the row's maximum (which is 1) in any sum of them.
__device__ inline float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
/// exp2f, or fastExp2 for the kV2 kernels.
template <bool kFast> __device__ inline float exp2T(float x) {
  if constexpr (kFast)
    return fastExp2(x);
  else
    return exp2f(x);
}

/// blockIdx.x / .y read afresh (asm volatile: not merged with an earlier
/// read), so that values derived from them need not stay live in
/// registers across a kernel's main loop.
__device__ inline unsigned ctaidX() {
  unsigned v;
  asm volatile("mov.u32 %0, %%ctaid.x;\n" : "=r"(v));
  return v;
}
__device__ inline unsigned ctaidY() {
  unsigned v;
  asm volatile("mov.u32 %0, %%ctaid.y;\n" : "=r"(v));
  return v;
}

__device__ inline float quadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quadSum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

//===----------------------------------------------------------------------===//
// Shared tiles
//===----------------------------------------------------------------------===//

/// Row stride of a shared tile of D columns: 16 bytes of padding, so the 8
/// row addresses of one ldmatrix matrix fall in 8 different 16-byte bank
/// groups ((D + 8) * 2 bytes = 16 mod 128 for D a multiple of 64).
template <int D> __host__ __device__ constexpr int tileStride() { return D + 8; }

/// Starts copying rows [r0, r0 + R) of a [rowCount, D] matrix into a shared
/// tile; rows past rowCount read as zeros.
template <int R, int D, int kNT = kThreads>
__device__ inline void loadTile(uint16_t *tile, const uint16_t *src,
                                int64_t r0, int64_t rowCount) {
  constexpr int kChunks = D / 8, kLd = tileStride<D>();
  for (int c = threadIdx.x; c < R * kChunks; c += kNT) {
    int r = c / kChunks, col = (c % kChunks) * 8;
    int64_t row = r0 + r;
    bool in = row < rowCount;
    cpAsync16(tile + r * kLd + col, src + (in ? row : 0) * D + col, in);
  }
}

/// ldmatrix address of an A operand (or a .trans B operand whose k runs
/// along the tile's rows) at tile row r, column c.
template <int D>
__device__ inline const uint16_t *aAddr(const uint16_t *tile, int r, int c,
                                        int lane) {
  return tile + (r + (lane & 15)) * tileStride<D>() + c + 8 * (lane >> 4);
}
/// ldmatrix address of two n8 B blocks whose n runs along the tile's rows
/// (row stride kLd elements). With .trans at these addresses, the same
/// lanes load an A operand (16 x 16 from row-major column c, k from row r)
/// out of a tile that holds A transposed.
template <int kLd>
__device__ inline const uint16_t *bAddrLd(const uint16_t *tile, int r, int c,
                                          int lane) {
  return tile + (r + (lane & 7) + 8 * (lane >> 4)) * kLd + c +
         8 * ((lane >> 3) & 1);
}
template <int D>
__device__ inline const uint16_t *bAddr(const uint16_t *tile, int r, int c,
                                        int lane) {
  return bAddrLd<tileStride<D>()>(tile, r, c, lane);
}

/// acc[N/8][4] (16 rows x N) += A (16 x D, fragments in registers) times
/// the tile's rows [0, N) transposed (B with n along the tile's rows).
template <bool kBf16, int D, int N>
__device__ inline void mulAbt(float (&acc)[N / 8][4],
                              const uint32_t (&a)[D / 16][4],
                              const uint16_t *tile, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int nn = 0; nn < N / 16; ++nn) {
      uint32_t b[4];
      ldmatrix4(b, bAddr<D>(tile, 16 * nn, 16 * kk, lane));
      mma<kBf16>(acc[2 * nn], a[kk], b[0], b[1]);
      mma<kBf16>(acc[2 * nn + 1], a[kk], b[2], b[3]);
    }
}

/// acc[D/8][4] (16 rows x D) += P (16 x K, given as accumulators p[K/8][4])
/// times the tile's rows [0, K) (B with k along the tile's rows).
template <bool kBf16, int D, int K>
__device__ inline void mulPb(float (&acc)[D / 8][4], const float (&p)[K / 8][4],
                             const uint16_t *tile, int lane) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4] = {pack<kBf16>(p[2 * kk][0], p[2 * kk][1]),
                     pack<kBf16>(p[2 * kk][2], p[2 * kk][3]),
                     pack<kBf16>(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                     pack<kBf16>(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int nn = 0; nn < D / 16; ++nn) {
      uint32_t b[4];
      ldmatrix4Trans(b, aAddr<D>(tile, 16 * kk, 16 * nn, lane));
      mma<kBf16>(acc[2 * nn], a, b[0], b[1]);
      mma<kBf16>(acc[2 * nn + 1], a, b[2], b[3]);
    }
  }
}

/// A fragments of the warp's 16 rows from `row` of a shared tile.
template <int D>
__device__ inline void loadA(uint32_t (&a)[D / 16][4], const uint16_t *tile,
                             int row, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldmatrix4(a[kk], aAddr<D>(tile, row, 16 * kk, lane));
}

/// The score of row i against key j in log2 units, from the product
/// `dot`: (scale * dot + bias) * log2 e, or -inf where closed (past the
/// keys, past the rows, or above the causal diagonal).
template <bool kBf16>
__device__ inline float maskedScore(const TcArgs &a, int64_t b, int64_t h,
                                    int64_t i, int64_t j, float dot) {
  if (i >= a.rows || j >= a.cols || (a.causal && j > i + a.cols - a.rows))
    return -INFINITY;
  float s = a.scale * dot;
  if (a.bias)
    s += toFloat<kBf16>(a.bias[b * a.biasStride[0] + h * a.biasStride[1] +
                               i * a.biasStride[2] + j * a.biasStride[3]]);
  return s * kLog2e;
}

//===----------------------------------------------------------------------===//
// Forward
//===----------------------------------------------------------------------===//

/// kMT row tiles of 16 per warp: 4 warps x 16 kMT query rows per block.
/// Each B fragment (K in S = Q K^T, V in O += P V) loaded from shared
/// memory serves the kMT tiles, so two tiles halve the ldmatrix traffic per
/// product; registers allow it up to D 64. forwardT launches kMT 1 only:
/// 2 measured slower (session 5), and the parameter stays so that the
/// measurement can be repeated on another GPU by changing forwardT's
/// constant (as backwardRows' for tcGradKV).
///
/// kWarps 8 (kV2): 8 warps, 128 query rows a block, so that every K/V tile
/// brought into shared memory serves twice the rows; the grid runs
/// (batch * head) along x and the row tiles along y, heaviest first, so
/// that the whole launch (not each head) starts with its longest blocks.
template <bool kBf16, int D, int kMT, int kMinBlocks = 0, int kWarps = 4,
          bool kV2 = false>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    tcForward(TcArgs a) {
  constexpr int kNT = kWarps * 32;
  constexpr int kBr = 16 * kWarps * kMT, kBc = 64, kLd = tileStride<D>();
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t *qs = smem, *ks = qs + kBr * kLd, *vs = ks + 2 * kBc * kLd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t bh = kV2 ? blockIdx.x : blockIdx.y;
  const int64_t b = bh / a.heads, h = bh % a.heads;
  const int64_t kvh = h / (a.heads / a.kvHeads);
  const int64_t row0Block =
      (kV2 ? int64_t(gridDim.y - 1 - blockIdx.y)
           : int64_t(gridDim.x - 1 - blockIdx.x)) *
      kBr;
  const int64_t row0 = row0Block;
  const int warpRow = 16 * kMT * warp; // the warp's first row in the block
  const int64_t off = a.cols - a.rows; // causal: key j open to row i iff j <= i + off
  const uint16_t *kBase = a.k + (b * a.kvHeads + kvh) * a.cols * D;
  const uint16_t *vBase = a.v + (b * a.kvHeads + kvh) * a.cols * D;
  int64_t lastRow = min(a.rows, row0 + kBr) - 1;
  int64_t keyEnd = a.causal ? min(a.cols, lastRow + off + 1) : a.cols;
  int nTiles = keyEnd > 0 ? static_cast<int>((keyEnd + kBc - 1) / kBc) : 0;

  loadTile<kBr, D, kNT>(qs, a.q + bh * a.rows * D, row0, a.rows);
  if (nTiles > 0) {
    loadTile<kBc, D, kNT>(ks, kBase, 0, a.cols);
    loadTile<kBc, D, kNT>(vs, vBase, 0, a.cols);
  }
  cpAsyncCommit();
  cpAsyncWaitAll();
  __syncthreads();
  // kV2 at D 64 takes each Q fragment from shared memory where it is
  // used (4 ldmatrix a tile beside K's and V's 32) rather than holding
  // all of them: 16 registers, which keep two 8-warp blocks an SM within
  // 128 registers without spilling.
  constexpr bool kHoldQ = !(kV2 && D <= 64);
  uint32_t qf[kMT][kHoldQ ? D / 16 : 1][4];
  if constexpr (kHoldQ)
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
      loadA<D>(qf[mt], qs, warpRow + 16 * mt, lane);

  float o[kMT][D / 8][4] = {}, m[kMT][2], l[kMT][2] = {};
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
    m[mt][0] = m[mt][1] = -INFINITY;
  for (int tile = 0; tile < nTiles; ++tile) {
    const int stage = tile & 1;
    const int64_t key0 = int64_t(tile) * kBc;
    // kV2: the block's first row from ctaid again (fewer live registers).
    const int64_t row0 =
        kV2 ? int64_t(gridDim.y - 1 - ctaidY()) * kBr : row0Block;
    // The other stage was last read before the previous iteration's
    // closing barrier, so it can be refilled now.
    if (tile + 1 < nTiles) {
      // kV2: K's and V's bases from one offset (fewer live registers).
      const uint16_t *kb = kBase, *vb = vBase;
      if constexpr (kV2) {
        // 32-bit divisions: grid x is (batch * head) < 2^31.
        const unsigned bhNow = ctaidX(), heads = unsigned(a.heads);
        const unsigned kvNow =
            (bhNow / heads) * unsigned(a.kvHeads) +
            (bhNow % heads) / (heads / unsigned(a.kvHeads));
        const int64_t kvOff = int64_t(kvNow) * a.cols * D;
        kb = a.k + kvOff;
        vb = a.v + kvOff;
      }
      loadTile<kBc, D, kNT>(ks + (stage ^ 1) * kBc * kLd, kb, key0 + kBc,
                            a.cols);
      loadTile<kBc, D, kNT>(vs + (stage ^ 1) * kBc * kLd, vb, key0 + kBc,
                            a.cols);
      cpAsyncCommit();
    }
    const uint16_t *kt = ks + stage * kBc * kLd, *vt = vs + stage * kBc * kLd;
    float s[kMT][kBc / 8][4] = {};
    // S = Q K^T: one B fragment of K for every row tile.
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      if constexpr (!kHoldQ)
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
          ldmatrix4(qf[mt][0], aAddr<D>(qs, warpRow + 16 * mt, 16 * kk, lane));
#pragma unroll
      for (int nn = 0; nn < kBc / 16; ++nn) {
        uint32_t bf[4];
        ldmatrix4(bf, bAddr<D>(kt, 16 * nn, 16 * kk, lane));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma<kBf16>(s[mt][2 * nn], qf[mt][kHoldQ ? kk : 0], bf[0], bf[1]);
          mma<kBf16>(s[mt][2 * nn + 1], qf[mt][kHoldQ ? kk : 0], bf[2],
                     bf[3]);
        }
      }
    }
    uint32_t pk[kMT][kBc / 8][2]; // kV2: P, packed
    // Every row of the block sees every key of the tile, unmasked.
    bool plain = !a.bias && key0 + kBc <= a.cols &&
                 (!a.causal || key0 + kBc - 1 <= row0 + off);
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      // kV2 without a bias: the mask as a count of open keys per row
      // (32-bit, two a thread) rather than 64-bit indices per element.
      const bool counted = kV2 && !plain && !a.bias;
      int open[2] = {kBc, kBc};
      if (counted)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int64_t i = row0 + warpRow + 16 * mt + g + 8 * r;
          int64_t n = a.cols - key0;
          if (a.causal)
            n = min(n, i + off - key0 + 1);
          open[r] = i < a.rows ? static_cast<int>(
                                     max(int64_t(0), min(n, int64_t(kBc))))
                               : 0;
        }
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (plain || counted) {
            s[mt][n][e] = plain || 8 * n + 2 * t + (e % 2) < open[e / 2]
                              ? s[mt][n][e] * (a.scale * kLog2e)
                              : -INFINITY;
          } else {
            int64_t i = row0 + warpRow + 16 * mt + g + 8 * (e / 2);
            int64_t j = key0 + 8 * n + 2 * t + (e % 2);
            // kV2: the head from ctaid again (fewer live registers).
            if constexpr (kV2) {
              const unsigned bhNow = ctaidX(), heads = unsigned(a.heads);
              s[mt][n][e] = maskedScore<kBf16>(a, bhNow / heads,
                                               bhNow % heads, i, j,
                                               s[mt][n][e]);
            } else {
              s[mt][n][e] = maskedScore<kBf16>(a, b, h, i, j, s[mt][n][e]);
            }
          }
        }
      // Online softmax: row r of the thread is tile row g + 8 r, held by
      // the 4 lanes of one quad.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = m[mt][r];
#pragma unroll
        for (int n = 0; n < kBc / 8; ++n)
          mx = fmaxf(mx, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
        mx = quadMax(mx);
        // All closed so far: every p is 0 and nothing has accumulated.
        float base = mx == -INFINITY ? 0.f : mx;
        float corr = exp2T<kV2>(m[mt][r] - base), sum = 0.f;
#pragma unroll
        for (int n = 0; n < kBc / 8; ++n) {
#pragma unroll
          for (int e = 2 * r; e < 2 * r + 2; ++e) {
            s[mt][n][e] = exp2T<kV2>(s[mt][n][e] - base);
            sum += s[mt][n][e];
          }
          // kV2: P rounded (as the product takes it) as soon as it is
          // summed, so the f32 scores die here: 16 registers, not 32.
          if constexpr (kV2)
            pk[mt][n][r] = pack<kBf16>(s[mt][n][2 * r], s[mt][n][2 * r + 1]);
        }
        l[mt][r] = l[mt][r] * corr + sum; // this lane's part; summed last
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          o[mt][n][2 * r] *= corr;
          o[mt][n][2 * r + 1] *= corr;
        }
        m[mt][r] = mx;
      }
    }
    // O += P V: P's accumulators are the A fragments; one B fragment of V
    // for every row tile.
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t pf[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        if constexpr (kV2) {
          pf[mt][0] = pk[mt][2 * kk][0];
          pf[mt][1] = pk[mt][2 * kk][1];
          pf[mt][2] = pk[mt][2 * kk + 1][0];
          pf[mt][3] = pk[mt][2 * kk + 1][1];
          continue;
        }
        pf[mt][0] = pack<kBf16>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pf[mt][1] = pack<kBf16>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pf[mt][2] = pack<kBf16>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pf[mt][3] = pack<kBf16>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int nn = 0; nn < D / 16; ++nn) {
        uint32_t bf[4];
        ldmatrix4Trans(bf, aAddr<D>(vt, 16 * kk, 16 * nn, lane));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma<kBf16>(o[mt][2 * nn], pf[mt], bf[0], bf[1]);
          mma<kBf16>(o[mt][2 * nn + 1], pf[mt], bf[2], bf[3]);
        }
      }
    }
    cpAsyncWaitAll();
    __syncthreads(); // the next tile has landed; this one is free
  }

#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float sum = quadSum(l[mt][r]);
      // kV2: the block's rows from ctaid again (fewer live registers).
      const int64_t bhOut = kV2 ? int64_t(ctaidX()) : bh;
      const int64_t row0Out =
          kV2 ? int64_t(gridDim.y - 1 - ctaidY()) * kBr : row0;
      int64_t i = row0Out + warpRow + 16 * mt + g + 8 * r;
      if (i >= a.rows)
        continue;
      int64_t row = bhOut * a.rows + i;
      float inv = sum > 0.f ? 1.f / sum : 0.f;
      uint32_t *dst = reinterpret_cast<uint32_t *>(a.o + row * D);
#pragma unroll
      for (int n = 0; n < D / 8; ++n)
        dst[4 * n + t] =
            pack<kBf16>(o[mt][n][2 * r] * inv, o[mt][n][2 * r + 1] * inv);
      if (t == 0)
        a.lseOut[row] =
            sum > 0.f ? (m[mt][r] + log2f(sum)) * kLn2 : -INFINITY;
    }
}

//===----------------------------------------------------------------------===//
// Backward: delta = rowsum(dout * out)
//===----------------------------------------------------------------------===//

/// One warp per row; 8 rows per block of 256 threads.
template <bool kBf16, int D>
__global__ void __launch_bounds__(256) tcDelta(TcArgs a, int64_t rowCount) {
  int64_t row = int64_t(blockIdx.x) * 8 + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rowCount)
    return;
  float sum = 0.f;
  for (int d = lane; d < D; d += 32)
    sum += toFloat<kBf16>(a.dout[row * D + d]) *
           toFloat<kBf16>(a.out[row * D + d]);
  for (int o = 16; o > 0; o >>= 1)
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0)
    a.delta[row] = sum;
}

//===----------------------------------------------------------------------===//
// Backward: dk, dv
//===----------------------------------------------------------------------===//

/// Row stride of the fused backward's shared dS^T tile (kBk keys x kBq
/// rows): conflict-free 32-bit stores from the accumulators and ldmatrix
/// rows for kBq 64 and 32.
template <int kBq> __host__ __device__ constexpr int dsStride() {
  return kBq + 8;
}

/// The fused backward's dQ share of one step: dQ[r0 + 0..kBq) += dS K over
/// the block's kTileRows keys, from the dS^T tile and the K tile in shared
/// memory (kBk keys), summed into a.dqAccum (f32, unscaled) with atomics.
/// The kBq / 16 row tiles are split over the kWarps warps; where fewer than
/// kWarps, each row tile's 16-column chunks are dealt out over
/// kWarps / (kBq / 16) warps.
template <bool kBf16, int D, int kBq, int kBk, int kWarps = 4>
__device__ inline void accumulateDq(const TcArgs &a, const uint16_t *dsT,
                                    const uint16_t *ks, int64_t bhLocal,
                                    int64_t r0, int warp, int lane) {
  constexpr int kRowTiles = kBq / 16, kSplit = kWarps / kRowTiles;
  static_assert(kSplit >= 1, "a warp or more for each row tile");
  constexpr int kChunks = D / 16, kMine = (kChunks + kSplit - 1) / kSplit;
  const int m0 = 16 * (warp % kRowTiles), first = warp / kRowTiles;
  const int g = lane / 4, t = lane % 4;
  float acc[2 * kMine][4] = {};
#pragma unroll
  for (int kk = 0; kk < kBk / 16; ++kk) {
    uint32_t af[4];
    ldmatrix4Trans(af, bAddrLd<dsStride<kBq>()>(dsT, 16 * kk, m0, lane));
#pragma unroll
    for (int c = 0; c < kMine; ++c) {
      const int chunk = first + kSplit * c;
      if (chunk >= kChunks)
        break;
      uint32_t b[4];
      ldmatrix4Trans(b, aAddr<D>(ks, 16 * kk, 16 * chunk, lane));
      mma<kBf16>(acc[2 * c], af, b[0], b[1]);
      mma<kBf16>(acc[2 * c + 1], af, b[2], b[3]);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t i = r0 + m0 + g + 8 * r;
    if (i >= a.rows)
      continue;
    float *row = a.dqAccum + (bhLocal * a.rows + i) * D;
#pragma unroll
    for (int c = 0; c < kMine; ++c) {
      const int chunk = first + kSplit * c;
      if (chunk >= kChunks)
        break;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float *dst = row + 16 * chunk + 8 * half + 2 * t;
        atomicAdd(reinterpret_cast<float2 *>(dst),
                  make_float2(acc[2 * c + half][2 * r],
                              acc[2 * c + half][2 * r + 1]));
      }
    }
  }
}

/// A block per (batch * kv head, 64 kMT keys), each warp 16 kMT keys (kMT
/// key tiles, which share every B fragment of Q and dO loaded from shared
/// memory), kBq query rows per step. Registers bound both: dk and dv take
/// kMT D / 2 floats a thread each, the step's S^T and dP^T kMT kBq / 4
/// (backwardRows launches kMT 1: 2 measured slower in session 5; the
/// parameter stays for repeating that). kFuseDq: dq too, summed over the
/// key blocks with atomics into a.dqAccum (accumulateDq); else dq is
/// tcGradQ's.
///
/// kV2: the grid runs (batch * kv head) along x and the key blocks along y
/// (the heaviest, lowest keys, first over the whole launch), and each
/// step's lse and delta come with cp.async like its Q and dO tiles rather
/// than through registers (a load the issuing warp waited on every step).
/// kWarps 8 (with kV2): 128 keys a block, so that each step's Q and dO
/// tiles serve twice the keys and dq takes half the atomics (one f32 sum
/// per 128 keys rather than per 64).
template <bool kBf16, int D, int kBq, int kMT, bool kFuseDq,
          int kMinBlocks = 0, int kWarps = 4, bool kV2 = false>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    tcGradKV(TcArgs a) {
  constexpr int kNT = kWarps * 32;
  constexpr int kBk = 16 * kWarps * kMT, kLd = tileStride<D>();
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t *ks = smem, *vs = ks + kBk * kLd;
  uint16_t *qs = vs + kBk * kLd, *dos = qs + 2 * kBq * kLd; // 2 stages each
  uint16_t *dsT = dos + 2 * kBq * kLd; // kFuseDq: kBk x dsStride<kBq>()
  float *lses = reinterpret_cast<float *>(
      dsT + (kFuseDq ? kBk * dsStride<kBq>() : 0));
  float *deltas = lses + 2 * kBq;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int warpKey = 16 * kMT * warp; // the warp's first key in the block
  const int64_t bkv = a.bkvBase + (kV2 ? blockIdx.x : blockIdx.y);
  const int64_t b = bkv / a.kvHeads, kvh = bkv % a.kvHeads;
  const int64_t group = a.heads / a.kvHeads;
  const int64_t key0 = int64_t(kV2 ? blockIdx.y : blockIdx.x) * kBk;
  // kV2: in the loop, the block's (batch, kv head) and keys come from
  // ctaid again where used (32-bit: grid x < 2^16), so that they need not
  // stay live in registers.
  auto bkvNow = [&]() -> int64_t {
    return kV2 ? a.bkvBase + int64_t(ctaidX()) : bkv;
  };
  auto bNow = [&]() -> int64_t {
    return kV2 ? int64_t(unsigned(bkvNow()) / unsigned(a.kvHeads)) : b;
  };
  auto kvhNow = [&]() -> int64_t {
    return kV2 ? int64_t(unsigned(bkvNow()) % unsigned(a.kvHeads)) : kvh;
  };
  auto key0Now = [&]() -> int64_t {
    return kV2 ? int64_t(ctaidY()) * kBk : key0;
  };
  const int64_t off = a.cols - a.rows;
  // Rows before rowBegin see none of the block's keys under the mask.
  int64_t rowBegin = a.causal ? max(int64_t(0), key0 - off) : int64_t(0);
  // kV2: step counts in 32 bits (fewer registers, cheaper divisions).
  using StepInt = std::conditional_t<kV2, int, int64_t>;
  StepInt firstTile = static_cast<StepInt>(rowBegin / kBq);
  StepInt tilesPerHead = static_cast<StepInt>(
      rowBegin < a.rows ? (a.rows + kBq - 1) / kBq - firstTile : 0);
  StepInt steps = tilesPerHead * static_cast<StepInt>(group);

  // Step s: query head kvh * group + s / tilesPerHead, its query tile
  // firstTile + s % tilesPerHead. Starts the copies of step s into stage.
  auto loadStep = [&](StepInt s, int stage) {
    int64_t h = kvhNow() * group + s / tilesPerHead;
    int64_t r0 = (firstTile + s % tilesPerHead) * kBq;
    int64_t bh = bNow() * a.heads + h;
    loadTile<kBq, D, kNT>(qs + stage * kBq * kLd, a.q + bh * a.rows * D, r0,
                          a.rows);
    loadTile<kBq, D, kNT>(dos + stage * kBq * kLd, a.dout + bh * a.rows * D,
                          r0, a.rows);
    if constexpr (kV2) {
      // Raw lse (scaled to log2 units where read); rows past the end read
      // as 0, and take the masked path, whose -inf scores give them p 0.
      for (int r = threadIdx.x; r < 2 * kBq; r += kNT) {
        const int rr = r % kBq;
        const int64_t i = r0 + rr;
        const bool in = i < a.rows;
        const float *src = (r < kBq ? a.lse : a.delta) + bh * a.rows +
                           (in ? i : 0);
        cpAsync4((r < kBq ? lses : deltas) + stage * kBq + rr, src, in);
      }
    } else {
      for (int r = threadIdx.x; r < kBq; r += kNT) {
        int64_t i = r0 + r;
        // A row past the end, or closed (lse -inf), gets no probability.
        lses[stage * kBq + r] =
            i < a.rows ? a.lse[bh * a.rows + i] * kLog2e : -INFINITY;
        deltas[stage * kBq + r] = i < a.rows ? a.delta[bh * a.rows + i] : 0.f;
      }
    }
  };

  loadTile<kBk, D, kNT>(ks, a.k + bkv * a.cols * D, key0, a.cols);
  loadTile<kBk, D, kNT>(vs, a.v + bkv * a.cols * D, key0, a.cols);
  if (steps > 0)
    loadStep(0, 0);
  cpAsyncCommit();
  cpAsyncWaitAll();
  __syncthreads();

  float dk[kMT][D / 8][4] = {}, dv[kMT][D / 8][4] = {};
  for (StepInt s = 0; s < steps; ++s) {
    const int stage = static_cast<int>(s & 1);
    if (s + 1 < steps) {
      loadStep(s + 1, stage ^ 1);
      cpAsyncCommit();
    }
    const int64_t h = kvhNow() * group + s / tilesPerHead;
    const int64_t r0 = (firstTile + s % tilesPerHead) * kBq;
    const uint16_t *qt = qs + stage * kBq * kLd, *dot = dos + stage * kBq * kLd;
    const float *lt = lses + stage * kBq, *dt = deltas + stage * kBq;
    // Transposed scores and dP: the warp's keys x kBq rows. S^T = K Q^T,
    // dP^T = V dO^T; each B fragment (Q, dO) serves the kMT key tiles.
    float st[kMT][kBq / 8][4] = {}, dpt[kMT][kBq / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t kf[kMT][4], vf[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        ldmatrix4(kf[mt], aAddr<D>(ks, warpKey + 16 * mt, 16 * kk, lane));
        ldmatrix4(vf[mt], aAddr<D>(vs, warpKey + 16 * mt, 16 * kk, lane));
      }
#pragma unroll
      for (int nn = 0; nn < kBq / 16; ++nn) {
        uint32_t qb[4], ob[4];
        ldmatrix4(qb, bAddr<D>(qt, 16 * nn, 16 * kk, lane));
        ldmatrix4(ob, bAddr<D>(dot, 16 * nn, 16 * kk, lane));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma<kBf16>(st[mt][2 * nn], kf[mt], qb[0], qb[1]);
          mma<kBf16>(st[mt][2 * nn + 1], kf[mt], qb[2], qb[3]);
          mma<kBf16>(dpt[mt][2 * nn], vf[mt], ob[0], ob[1]);
          mma<kBf16>(dpt[mt][2 * nn + 1], vf[mt], ob[2], ob[3]);
        }
      }
    }
    bool plain = !a.bias && key0Now() + kBk <= a.cols &&
                 r0 + kBq <= a.rows &&
                 (!a.causal || key0Now() + kBk - 1 <= r0 + off);
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          int ri = 8 * n + 2 * t + (e % 2); // the row within the tile
          float x;
          if (plain) {
            x = st[mt][n][e] * (a.scale * kLog2e);
          } else {
            int64_t j = key0Now() + warpKey + 16 * mt + g + 8 * (e / 2);
            x = maskedScore<kBf16>(a, bNow(), h, r0 + ri, j, st[mt][n][e]);
          }
          const float lse = lt[ri];
          float p = lse == -INFINITY ? 0.f
                                     : exp2T<kV2>(kV2 ? x - lse * kLog2e
                                                      : x - lse);
          st[mt][n][e] = p;
          dpt[mt][n][e] = p * (dpt[mt][n][e] - dt[ri]); // dS^T
        }
    if constexpr (kFuseDq) {
      // The warp's keys of dS^T, rounded as the dK product rounds them.
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
          for (int r = 0; r < 2; ++r)
            *reinterpret_cast<uint32_t *>(
                dsT + (warpKey + 16 * mt + g + 8 * r) * dsStride<kBq>() +
                8 * n + 2 * t) =
                pack<kBf16>(dpt[mt][n][2 * r], dpt[mt][n][2 * r + 1]);
    }
    // dV += P^T dO, dK += dS^T Q: the accumulators are the A fragments;
    // each B fragment (dO, Q; k along the tile's rows) serves the kMT key
    // tiles.
#pragma unroll
    for (int kk = 0; kk < kBq / 16; ++kk) {
      uint32_t pa[kMT][4], da[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        pa[mt][0] = pack<kBf16>(st[mt][2 * kk][0], st[mt][2 * kk][1]);
        pa[mt][1] = pack<kBf16>(st[mt][2 * kk][2], st[mt][2 * kk][3]);
        pa[mt][2] = pack<kBf16>(st[mt][2 * kk + 1][0], st[mt][2 * kk + 1][1]);
        pa[mt][3] = pack<kBf16>(st[mt][2 * kk + 1][2], st[mt][2 * kk + 1][3]);
        da[mt][0] = pack<kBf16>(dpt[mt][2 * kk][0], dpt[mt][2 * kk][1]);
        da[mt][1] = pack<kBf16>(dpt[mt][2 * kk][2], dpt[mt][2 * kk][3]);
        da[mt][2] = pack<kBf16>(dpt[mt][2 * kk + 1][0], dpt[mt][2 * kk + 1][1]);
        da[mt][3] = pack<kBf16>(dpt[mt][2 * kk + 1][2], dpt[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int nn = 0; nn < D / 16; ++nn) {
        uint32_t ob[4], qb[4];
        ldmatrix4Trans(ob, aAddr<D>(dot, 16 * kk, 16 * nn, lane));
        ldmatrix4Trans(qb, aAddr<D>(qt, 16 * kk, 16 * nn, lane));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma<kBf16>(dv[mt][2 * nn], pa[mt], ob[0], ob[1]);
          mma<kBf16>(dv[mt][2 * nn + 1], pa[mt], ob[2], ob[3]);
          mma<kBf16>(dk[mt][2 * nn], da[mt], qb[0], qb[1]);
          mma<kBf16>(dk[mt][2 * nn + 1], da[mt], qb[2], qb[3]);
        }
      }
    }
    if constexpr (kFuseDq) {
      __syncthreads(); // every warp's keys of dS^T are in the tile
      const int64_t bhLocal =
          (bkvNow() - a.bkvBase) * group + (h - kvhNow() * group);
      accumulateDq<kBf16, D, kBq, kBk, kWarps>(a, dsT, ks, bhLocal, r0, warp,
                                               lane);
    }
    cpAsyncWaitAll();
    __syncthreads(); // also: the dS^T tile is read before the next step
  }

  // kV2: the block's keys from ctaid again (fewer live registers).
  const int64_t bkvOut = kV2 ? a.bkvBase + ctaidX() : bkv;
  const int64_t key0Out = kV2 ? int64_t(ctaidY()) * kBk : key0;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      int64_t j = key0Out + warpKey + 16 * mt + g + 8 * r;
      if (j >= a.cols)
        continue;
      uint32_t *dkRow =
          reinterpret_cast<uint32_t *>(a.dk + (bkvOut * a.cols + j) * D);
      uint32_t *dvRow =
          reinterpret_cast<uint32_t *>(a.dv + (bkvOut * a.cols + j) * D);
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        dkRow[4 * n + t] = pack<kBf16>(a.scale * dk[mt][n][2 * r],
                                       a.scale * dk[mt][n][2 * r + 1]);
        dvRow[4 * n + t] = pack<kBf16>(dv[mt][n][2 * r], dv[mt][n][2 * r + 1]);
      }
    }
}

//===----------------------------------------------------------------------===//
// Backward: dq
//===----------------------------------------------------------------------===//

/// kBk keys per step: 64 for D 64, 32 for D 128.
template <bool kBf16, int D, int kBk>
__global__ void __launch_bounds__(kThreads) tcGradQ(TcArgs a) {
  constexpr int kBr = kTileRows, kLd = tileStride<D>();
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t *qs = smem, *dos = qs + kBr * kLd;
  uint16_t *ks = dos + kBr * kLd, *vs = ks + 2 * kBk * kLd; // 2 stages each
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const int64_t kvh = h / (a.heads / a.kvHeads);
  const int64_t row0 = int64_t(gridDim.x - 1 - blockIdx.x) * kBr;
  const int64_t off = a.cols - a.rows;
  const uint16_t *kBase = a.k + (b * a.kvHeads + kvh) * a.cols * D;
  const uint16_t *vBase = a.v + (b * a.kvHeads + kvh) * a.cols * D;
  int64_t lastRow = min(a.rows, row0 + kBr) - 1;
  int64_t keyEnd = a.causal ? min(a.cols, lastRow + off + 1) : a.cols;
  int nTiles = keyEnd > 0 ? static_cast<int>((keyEnd + kBk - 1) / kBk) : 0;

  loadTile<kBr, D>(qs, a.q + bh * a.rows * D, row0, a.rows);
  loadTile<kBr, D>(dos, a.dout + bh * a.rows * D, row0, a.rows);
  if (nTiles > 0) {
    loadTile<kBk, D>(ks, kBase, 0, a.cols);
    loadTile<kBk, D>(vs, vBase, 0, a.cols);
  }
  cpAsyncCommit();
  float lse[2], delta[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    int64_t i = row0 + 16 * warp + g + 8 * r;
    lse[r] = i < a.rows ? a.lse[bh * a.rows + i] * kLog2e : -INFINITY;
    delta[r] = i < a.rows ? a.delta[bh * a.rows + i] : 0.f;
  }
  cpAsyncWaitAll();
  __syncthreads();
  uint32_t qf[D / 16][4], dof[D / 16][4];
  loadA<D>(qf, qs, 16 * warp, lane);
  loadA<D>(dof, dos, 16 * warp, lane);

  float dq[D / 8][4] = {};
  for (int tile = 0; tile < nTiles; ++tile) {
    const int stage = tile & 1;
    const int64_t key0 = int64_t(tile) * kBk;
    if (tile + 1 < nTiles) {
      loadTile<kBk, D>(ks + (stage ^ 1) * kBk * kLd, kBase, key0 + kBk, a.cols);
      loadTile<kBk, D>(vs + (stage ^ 1) * kBk * kLd, vBase, key0 + kBk, a.cols);
      cpAsyncCommit();
    }
    const uint16_t *kt = ks + stage * kBk * kLd, *vt = vs + stage * kBk * kLd;
    float s[kBk / 8][4] = {}, dp[kBk / 8][4] = {};
    mulAbt<kBf16, D, kBk>(s, qf, kt, lane);
    mulAbt<kBf16, D, kBk>(dp, dof, vt, lane);
    bool plain = !a.bias && key0 + kBk <= a.cols &&
                 (!a.causal || key0 + kBk - 1 <= row0 + off);
#pragma unroll
    for (int n = 0; n < kBk / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2;
        float x;
        if (plain) {
          x = s[n][e] * (a.scale * kLog2e);
        } else {
          int64_t i = row0 + 16 * warp + g + 8 * r;
          int64_t j = key0 + 8 * n + 2 * t + (e % 2);
          x = maskedScore<kBf16>(a, b, h, i, j, s[n][e]);
        }
        float p = lse[r] == -INFINITY ? 0.f : exp2f(x - lse[r]);
        s[n][e] = p * (dp[n][e] - delta[r]); // dS
      }
    mulPb<kBf16, D, kBk>(dq, s, kt, lane);
    cpAsyncWaitAll();
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    int64_t i = row0 + 16 * warp + g + 8 * r;
    if (i >= a.rows)
      continue;
    uint32_t *dst = reinterpret_cast<uint32_t *>(a.dq + (bh * a.rows + i) * D);
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      dst[4 * n + t] =
          pack<kBf16>(a.scale * dq[n][2 * r], a.scale * dq[n][2 * r + 1]);
  }
}

//===----------------------------------------------------------------------===//
// Backward: the fused path's dq from its f32 sums
//===----------------------------------------------------------------------===//

/// dq[i] = scale * accum[i] rounded, 4 elements a thread (count % 4 == 0:
/// D is a multiple of 8).
template <bool kBf16>
__global__ void tcDqFromAccum(const float4 *accum, uint2 *dq, float scale,
                              int64_t quads) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < quads;
       i += int64_t(gridDim.x) * blockDim.x) {
    float4 x = accum[i];
    dq[i] = make_uint2(pack<kBf16>(scale * x.x, scale * x.y),
                       pack<kBf16>(scale * x.z, scale * x.w));
  }
}

//===----------------------------------------------------------------------===//
// Launch
//===----------------------------------------------------------------------===//

TcArgs makeArgs(const AttentionCall &c) {
  TcArgs a{};
  a.q = static_cast<const uint16_t *>(c.q);
  a.k = static_cast<const uint16_t *>(c.k);
  a.v = static_cast<const uint16_t *>(c.v);
  a.bias = static_cast<const uint16_t *>(c.bias);
  a.out = static_cast<const uint16_t *>(c.out);
  a.dout = static_cast<const uint16_t *>(c.dout);
  a.lse = c.lse;
  a.o = static_cast<uint16_t *>(c.o);
  a.dq = static_cast<uint16_t *>(c.dq);
  a.dk = static_cast<uint16_t *>(c.dk);
  a.dv = static_cast<uint16_t *>(c.dv);
  a.lseOut = c.lseOut;
  a.delta = static_cast<float *>(c.scratch);
  a.heads = c.heads;
  a.kvHeads = c.kvHeads;
  a.rows = c.rows;
  a.cols = c.cols;
  for (int d = 0; d < 4; ++d)
    a.biasStride[d] = c.biasStride[d];
  a.scale = static_cast<float>(c.scale);
  a.causal = c.causal;
  return a;
}

template <typename Kernel>
cudaError_t launch(Kernel kernel, dim3 grid, int threads, size_t smemBytes,
                   cudaStream_t stream, const TcArgs &args) {
  if (grid.x == 0 || grid.y == 0)
    return cudaSuccess;
  // Above 48 KiB of dynamic shared memory a kernel must opt in.
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smemBytes));
  if (err != cudaSuccess)
    return err;
  void *params[] = {const_cast<TcArgs *>(&args)};
  return cudaLaunchKernel(reinterpret_cast<const void *>(kernel), grid,
                          dim3(threads), params, smemBytes, stream);
}

unsigned tiles(int64_t n, int64_t per) {
  return static_cast<unsigned>((n + per - 1) / per);
}

/// Variable `name`'s value when it is one of the comma-separated
/// `allowed`; nullptr when it is unset, empty or anything else, which is
/// reported once per variable (naming it, what it takes and that the
/// default is used). The attention variables are read at every call, so
/// that attention-check can A/B them in one process.
const char *attentionEnv(const char *name, const char *allowed) {
  const char *env = std::getenv(name);
  if (!env || !*env)
    return nullptr;
  std::string list = std::string(",") + allowed + ",";
  if (list.find("," + std::string(env) + ",") != std::string::npos)
    return env;
  static std::mutex mutex;
  static std::set<std::string> reported;
  std::lock_guard<std::mutex> lock(mutex);
  if (reported.insert(name).second)
    std::fprintf(stderr,
                 "colossal: %s must be one of %s (or unset), got '%s'; "
                 "using the default\n",
                 name, allowed, env);
  return nullptr;
}

/// The D <= 64 forward and fused dk/dv kernels are built for four blocks
/// an SM (__launch_bounds__' min blocks: 128 registers, 24 and 8 bytes a
/// thread spilled) rather than the three their registers otherwise allow
/// (134 and 166): measured on the H200 (session 5, call 6, attention-check
/// at 8 x 32 heads x 1024, D 64) forward 0.299 ms against 0.312, backward
/// 0.891 against 0.907 (call 5). COLOSSAL_ATTENTION_OCCUPANCY=3 takes the
/// kernels without the bound (kMinBlocks 0: no .minnctapersm; a bound of 1
/// is not the same, ptxas then spends up to 196 registers and the backward
/// measured 1.086 ms). Read at every call, an A/B for attention-check.
bool fourBlocksAnSm() {
  const char *env = attentionEnv("COLOSSAL_ATTENTION_OCCUPANCY", "3,4");
  return !(env && std::strcmp(env, "3") == 0);
}

/// COLOSSAL_ATTENTION_BLOCK picks the tensor-core kernels' blocks:
///  - "64": session 5's kernels (4 warps, 64 query rows or keys a block,
///    the grid's row/key tiles along x, each head's heaviest first);
///  - "64s": the same blocks, scheduled over the whole grid heaviest first
///    (kV2; the forward at D 64 only, the others take "64"); the backward
///    also brings each step's lse and delta with cp.async;
///  - "128": 8 warps, 128 query rows (forward) or keys (dk/dv) a block,
///    kV2's schedule and loads; D 64 and 128 only;
///  - "128t": 4 warps of two 16-row tiles, 128 query rows (forward) or
///    keys (dk/dv) a block, kV2's schedule and loads; D 64 only.
/// Unset: the defaults measured on the H200 (defaultBlock). Read at every
/// call (an A/B for attention-check); anything else is reported once and
/// read as unset.
enum class BlockChoice { k64, k64s, k128, k128t };

/// The blocks taken when COLOSSAL_ATTENTION_BLOCK is unset, per direction
/// and head dim, as measured on the H200 (session 7, attention-check at 8
/// x 32 heads x 1024, causal bf16, three runs each; docs/cuda.md has the
/// rows): the forward keeps 64 (64s, 128 and 128t no faster); the fused
/// backward takes 64s at D 64 (0.69 ms against 0.88), 80 (0.89 against
/// 1.32) and 128 (1.44 against the two-pass 1.72; 128 blocks 1.55). D 96
/// was not timed and keeps 64; the two-pass backward (`deterministic`)
/// takes 64s at D 64 only (1.02 against 1.11; checked there only).
BlockChoice defaultBlock(int64_t depth, bool backward, bool fused) {
  if (!backward)
    return BlockChoice::k64;
  if (depth == 64 || (fused && (depth == 80 || depth == 128)))
    return BlockChoice::k64s;
  return BlockChoice::k64;
}

/// `fused`: the backward's dq by atomics (the default's choice depends on
/// it; see defaultBlock).
BlockChoice blockChoice(int64_t depth, int64_t tilesOf128, bool backward,
                        bool fused = true) {
  const char *env =
      attentionEnv("COLOSSAL_ATTENTION_BLOCK", "64,64s,128,128t");
  BlockChoice pick = defaultBlock(depth, backward, fused);
  if (env)
    pick = std::strcmp(env, "64") == 0     ? BlockChoice::k64
           : std::strcmp(env, "64s") == 0  ? BlockChoice::k64s
           : std::strcmp(env, "128t") == 0 ? BlockChoice::k128t
                                           : BlockChoice::k128;

  // kV2's grids take the row or key tiles along y (at most 65535).
  if (tilesOf128 * 2 > 65535 ||
      (pick == BlockChoice::k128 && depth != 64 && depth != 128) ||
      (pick == BlockChoice::k64s && !backward && depth != 64) ||
      (pick == BlockChoice::k128t && depth != 64))
    return BlockChoice::k64;
  return pick;
}

template <bool kBf16, int D>
cudaError_t forwardT(cudaStream_t stream, const AttentionCall &c) {
  if constexpr (D == 64 || D == 128) {
    const BlockChoice pick = blockChoice(D, tiles(c.rows, 128), false);
    constexpr size_t kLd = tileStride<D>();
    if (pick == BlockChoice::k128) {
      // 8 warps of 16 rows; D 64 within 128 registers (two blocks an SM).
      size_t smem = (128 + 4 * 64) * kLd * sizeof(uint16_t);
      dim3 grid(static_cast<unsigned>(c.batch * c.heads), tiles(c.rows, 128));
      return launch(tcForward<kBf16, D, 1, D <= 64 ? 2 : 0, 8, true>, grid,
                    256, smem, stream, makeArgs(c));
    }
    if constexpr (D == 64)
      if (pick == BlockChoice::k128t) {
        // 4 warps of two 16-row tiles (208 registers, two blocks an SM):
        // each K and V fragment read from shared memory serves two tiles.
        size_t smem = (128 + 4 * 64) * kLd * sizeof(uint16_t);
        dim3 grid(static_cast<unsigned>(c.batch * c.heads),
                  tiles(c.rows, 128));
        return launch(tcForward<kBf16, D, 2, 2, 4, true>, grid, kThreads,
                      smem, stream, makeArgs(c));
      }
    if constexpr (D == 64)
      if (pick == BlockChoice::k64s) {
        size_t smem = (64 + 4 * 64) * kLd * sizeof(uint16_t);
        dim3 grid(static_cast<unsigned>(c.batch * c.heads),
                  tiles(c.rows, 64));
        return launch(tcForward<kBf16, D, 1, 4, 4, true>, grid, kThreads,
                      smem, stream, makeArgs(c));
      }
  }
  // One row tile a warp: two (kMT 2, D 64: 252 registers, no spills)
  // measured slower on the H200 (session 5, attention-check at 8 x 32
  // heads x 1024, D 64: 0.450 ms against 0.319), the halved ldmatrix
  // traffic outweighed by fewer, longer blocks of the causal grid.
  constexpr int kMT = 1, kRows = 64 * kMT;
  constexpr size_t kLd = tileStride<D>();
  size_t smem = (kRows + 2 * 64 + 2 * 64) * kLd * sizeof(uint16_t);
  dim3 grid(tiles(c.rows, kRows), static_cast<unsigned>(c.batch * c.heads));
  if constexpr (D <= 64)
    if (fourBlocksAnSm())
      return launch(tcForward<kBf16, D, kMT, 4>, grid, kThreads, smem, stream,
                    makeArgs(c));
  return launch(tcForward<kBf16, D, kMT>, grid, kThreads, smem, stream,
                makeArgs(c));
}

/// Bytes of the delta part of the backward's scratch, rounded up so that
/// the fused path's f32 dq sums after it start 256-byte aligned.
size_t deltaScratchBytes(int64_t batch, int64_t heads, int64_t rows) {
  size_t bytes = static_cast<size_t>(batch * heads * rows) * sizeof(float);
  return (bytes + 255) / 256 * 256;
}

/// Bytes of f32 dq sums one (batch, kv head) needs: its query heads' rows.
size_t dqAccumBytesPerKv(int64_t group, int64_t rows, int64_t depth) {
  return static_cast<size_t>(group * rows * depth) * sizeof(float);
}

template <bool kBf16, int D, int kBq, int kWarps = 4, bool kV2 = false,
          int kMT = 1>
cudaError_t backwardRows(cudaStream_t stream, const AttentionCall &c,
                         bool fuseDq) {
  // dk/dv: one key tile a warp (64 keys a block), kBq query rows a step
  // (32; backwardT); tcGradQ: 64 keys a step up to
  // D 64, 32 above. Two key tiles a warp with 32 rows a step (kMT 2, D 64:
  // 244 registers fused) measured slower on the H200 (session 5, fused
  // backward 1.189 ms against 1.063), as the forward's two row tiles did.
  constexpr int kKeys = 16 * kWarps * kMT, kNT = 32 * kWarps;
  constexpr int kStepQ = D <= 64 ? 64 : 32;
  constexpr size_t kLd = tileStride<D>();
  TcArgs a = makeArgs(c);
  int64_t rowCount = c.batch * c.heads * c.rows;
  // tcDelta takes a second parameter, so it cannot go through launch(),
  // whose parameter array holds the TcArgs alone (cuLaunchKernel would read
  // a second pointer past its end: a segfault in the driver on the H200).
  if (rowCount > 0) {
    tcDelta<kBf16, D><<<tiles(rowCount, 8), 256, 0, stream>>>(a, rowCount);
    cudaError_t launched = cudaGetLastError();
    if (launched != cudaSuccess)
      return launched;
  }
  size_t smemKV = (2 * kKeys + 4 * kBq) * kLd * sizeof(uint16_t) +
                  4 * kBq * sizeof(float);
  // No query rows: dq is empty and dk, dv are zeros, which the two-pass
  // kernels write (the fused path would size its chunks by 0 bytes a pair).
  if (!fuseDq || c.rows == 0) {
    dim3 gridKV(tiles(c.cols, kKeys),
                static_cast<unsigned>(c.batch * c.kvHeads));
    if (kV2)
      gridKV = dim3(static_cast<unsigned>(c.batch * c.kvHeads),
                    tiles(c.cols, kKeys));
    cudaError_t err =
        launch(tcGradKV<kBf16, D, kBq, kMT, false, 0, kWarps, kV2>, gridKV,
               kNT, smemKV, stream, a);
    if (err != cudaSuccess)
      return err;
    size_t smemQ = (2 * kTileRows + 4 * kStepQ) * kLd * sizeof(uint16_t);
    dim3 gridQ(tiles(c.rows, kTileRows),
               static_cast<unsigned>(c.batch * c.heads));
    return launch(tcGradQ<kBf16, D, kStepQ>, gridQ, kThreads, smemQ, stream,
                  a);
  }
  // Fused: (batch, kv head) pairs in chunks whose f32 dq sums fit the
  // scratch after delta (attentionUsesTensorCores checked room for one).
  const int64_t group = c.heads / c.kvHeads, pairs = c.batch * c.kvHeads;
  const size_t deltaBytes = deltaScratchBytes(c.batch, c.heads, c.rows);
  const size_t perKv = dqAccumBytesPerKv(group, c.rows, D);
  const int64_t chunk = std::min<int64_t>(
      pairs, static_cast<int64_t>((c.scratchBytes - deltaBytes) / perKv));
  a.dqAccum = reinterpret_cast<float *>(static_cast<char *>(c.scratch) +
                                        deltaBytes);
  smemKV += kKeys * dsStride<kBq>() * sizeof(uint16_t);
  for (int64_t first = 0; first < pairs; first += chunk) {
    const int64_t n = std::min(chunk, pairs - first);
    cudaError_t err = cudaMemsetAsync(a.dqAccum, 0, n * perKv, stream);
    if (err != cudaSuccess)
      return err;
    a.bkvBase = first;
    dim3 grid(tiles(c.cols, kKeys), static_cast<unsigned>(n));
    if constexpr (kV2) {
      // kWarps 8 at D 64: within 128 registers, two blocks an SM; 4 warps:
      // the four blocks an SM of the kernels above.
      constexpr int kMin = D > 64 || kMT > 1 ? 0 : kWarps == 8 ? 2 : 4;
      grid = dim3(static_cast<unsigned>(n), tiles(c.cols, kKeys));
      err = launch(tcGradKV<kBf16, D, kBq, kMT, true, kMin, kWarps, true>,
                   grid, kNT, smemKV, stream, a);
    } else if constexpr (D <= 64 && kBq == 32)
      err = fourBlocksAnSm()
                ? launch(tcGradKV<kBf16, D, kBq, kMT, true, 4>, grid,
                         kThreads, smemKV, stream, a)
                : launch(tcGradKV<kBf16, D, kBq, kMT, true>, grid, kThreads,
                         smemKV, stream, a);
    else
      err = launch(tcGradKV<kBf16, D, kBq, kMT, true>, grid, kThreads,
                   smemKV, stream, a);
    if (err != cudaSuccess)
      return err;
    const int64_t quads = n * group * c.rows * D / 4;
    uint16_t *dq = a.dq + first * group * c.rows * D;
    tcDqFromAccum<kBf16><<<static_cast<unsigned>(
                               std::min<int64_t>(tiles(quads, 256), 8192)),
                           256, 0, stream>>>(
        reinterpret_cast<const float4 *>(a.dqAccum),
        reinterpret_cast<uint2 *>(dq), a.scale, quads);
    err = cudaGetLastError();
    if (err != cudaSuccess)
      return err;
  }
  return cudaSuccess;
}

/// dk/dv take 32 query rows a step: at D 64 that is 166 registers against
/// 64 rows' 236, three blocks an SM instead of two, and the fused backward
/// measured 0.899 ms against 1.068 on the H200 (session 5, attention-check
/// at 8 x 32 heads x 1024). COLOSSAL_ATTENTION_BWD_ROWS=64 keeps the 64
/// rows a step at D <= 64 (an A/B for attention-check).
template <bool kBf16, int D>
cudaError_t backwardT(cudaStream_t stream, const AttentionCall &c,
                      bool fuseDq) {
  // kV2 counts a block's steps (query tiles x the group's heads) in 32
  // bits: past that, session 5's kernels.
  const bool stepsFit =
      (c.rows / 32 + 1) * (c.heads / c.kvHeads) < (int64_t(1) << 31);
  const BlockChoice pick =
      stepsFit ? blockChoice(D, tiles(c.cols, 128), true, fuseDq)
               : BlockChoice::k64;
  if constexpr (D == 64 || D == 128)
    if (pick == BlockChoice::k128)
      return backwardRows<kBf16, D, 32, 8, true>(stream, c, fuseDq);
  if constexpr (D == 64)
    if (pick == BlockChoice::k128t)
      return backwardRows<kBf16, D, 32, 4, true, 2>(stream, c, fuseDq);
  if (pick == BlockChoice::k64s)
    return backwardRows<kBf16, D, 32, 4, true>(stream, c, fuseDq);
  if constexpr (D <= 64) {
    const char *env = attentionEnv("COLOSSAL_ATTENTION_BWD_ROWS", "32,64");
    if (env && std::strcmp(env, "64") == 0)
      return backwardRows<kBf16, D, 64>(stream, c, fuseDq);
  }
  return backwardRows<kBf16, D, 32>(stream, c, fuseDq);
}

template <bool kBf16>
cudaError_t dispatchDepth(cudaStream_t stream, const AttentionCall &c,
                          bool backward, bool fuseDq) {
  switch (c.depth) {
  case 64:
    return backward ? backwardT<kBf16, 64>(stream, c, fuseDq)
                    : forwardT<kBf16, 64>(stream, c);
  case 80:
    return backward ? backwardT<kBf16, 80>(stream, c, fuseDq)
                    : forwardT<kBf16, 80>(stream, c);
  case 96:
    return backward ? backwardT<kBf16, 96>(stream, c, fuseDq)
                    : forwardT<kBf16, 96>(stream, c);
  default:
    return backward ? backwardT<kBf16, 128>(stream, c, fuseDq)
                    : forwardT<kBf16, 128>(stream, c);
  }
}

bool aligned16(const void *p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

/// Compute capability 8.0 or newer (mma.sync on bf16, ldmatrix, cp.async);
/// asked once per process, of the current device.
bool deviceHasTensorCores() {
  static const bool has = [] {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                               device) != cudaSuccess)
      return false;
    return major >= 8;
  }();
  return has;
}

/// COLOSSAL_ATTENTION_KERNEL picks among the kernels:
///  - "simple": Attention.cu's SIMT kernel;
///  - "fused": the tensor-core kernels with the fused backward (dq summed
///    over key blocks with f32 atomics: the order, so the last bits, may
///    differ run to run, as in FlashAttention-2's default and PyTorch's
///    SDPA backward);
///  - "deterministic": the tensor-core kernels with the two-pass backward
///    (dq by tcGradQ: every output summed by one thread in a fixed order,
///    so the bits repeat run to run);
///  - unset, empty, "auto" or "wide": the tensor-core kernels, the fused
///    backward for head dims up to 64 and the two-pass one above, as
///    measured on the H200 (session 5, attention-check at 8 x 32 heads x
///    1024: D 64 fused 1.06 ms against 1.20; D 80 1.35 against 1.33;
///    D 128 1.79 against 1.73).
/// The tensor-core kernels take bf16/f16 head dims 64, 80, 96 and 128 (80
/// and 96 were opt-in as "wide" until session 4's H200 run of
/// attention-check passed them; "wide" is kept as a synonym of auto). Read
/// at every call, so that a test can A/B the kernels in one process;
/// anything else is reported once and read as auto.
/// "cudnn" (AttentionCudnn.h) asks for cuDNN's fused attention; where
/// cuDNN cannot take a call, our kernels run as under auto.
enum class AttentionChoice {
  kAuto,
  kSimple,
  kFused,
  kDeterministic,
  kCudnn
};

AttentionChoice attentionChoice() {
  const char *env = attentionEnv("COLOSSAL_ATTENTION_KERNEL",
                                 "simple,fused,deterministic,auto,wide,cudnn");
  if (!env)
    return AttentionChoice::kAuto;
  if (std::strcmp(env, "cudnn") == 0)
    return AttentionChoice::kCudnn;
  if (std::strcmp(env, "simple") == 0)
    return AttentionChoice::kSimple;
  if (std::strcmp(env, "fused") == 0)
    return AttentionChoice::kFused;
  if (std::strcmp(env, "deterministic") == 0)
    return AttentionChoice::kDeterministic;
  return AttentionChoice::kAuto; // auto, wide
}

/// Whether this call's backward takes the fused path (dq by atomics).
bool fusedBackward(const AttentionCall &c) {
  switch (attentionChoice()) {
  case AttentionChoice::kFused:
    return true;
  case AttentionChoice::kAuto:
  case AttentionChoice::kCudnn: // our kernels where cuDNN did not take it
    // The kV2 blocks' fused backward measured faster than the two-pass one
    // at D 80 and 128 too (session 7); session 5's 64 blocks' only up to
    // D 64.
    return c.depth <= 64 || blockChoice(c.depth, tiles(c.cols, 128), true,
                                        true) != BlockChoice::k64;
  default:
    return false;
  }
}

bool simpleForced() { return attentionChoice() == AttentionChoice::kSimple; }

/// The most bytes of f32 dq sums the fused backward asks for: its launches
/// take (batch, kv head) pairs in chunks that fit. 32 MiB holds OPT-1.3b's
/// 8 x 1024 tokens in 2 chunks, 6.7b's (D 128) in 4; a launch of a chunk
/// still has hundreds of blocks. COLOSSAL_ATTENTION_DQ_SCRATCH (bytes)
/// overrides it, so that attention-check can make several chunks of a
/// small case.
size_t dqAccumCapBytes() {
  if (const char *env = std::getenv("COLOSSAL_ATTENTION_DQ_SCRATCH");
      env && *env) {
    char *end = nullptr;
    unsigned long long v = std::strtoull(env, &end, 10);
    if (end != env && *end == '\0' && v > 0)
      return static_cast<size_t>(v);
    static std::once_flag once;
    std::call_once(once, [env] {
      std::fprintf(stderr,
                   "colossal: COLOSSAL_ATTENTION_DQ_SCRATCH must be a "
                   "positive number of bytes (or unset), got '%s'; using "
                   "32 MiB\n",
                   env);
    });
  }
  return size_t(32) << 20;
}

} // namespace

bool attentionCudnnRequested() {
  return attentionChoice() == AttentionChoice::kCudnn;
}

bool attentionTensorCoreShape(DType dtype, int64_t depth) {
  if (dtype != DType::kBF16 && dtype != DType::kF16)
    return false;
  return depth == 64 || depth == 80 || depth == 96 || depth == 128;
}

size_t attentionTensorCoreScratchBytes(DType dtype, int64_t batch,
                                       int64_t heads, int64_t rows,
                                       int64_t depth) {
  if (!attentionTensorCoreShape(dtype, depth))
    return 0;
  // Room for at least one (batch, kv head) pair whatever the group: all
  // the heads' rows (MQA's group).
  size_t all = dqAccumBytesPerKv(batch * heads, rows, depth);
  size_t oneBatch = dqAccumBytesPerKv(heads, rows, depth);
  return deltaScratchBytes(batch, heads, rows) +
         std::min(all, std::max(dqAccumCapBytes(), oneBatch));
}

const char *attentionBlock(int64_t depth, int64_t length, bool backward) {
  switch (blockChoice(depth, tiles(length, 128), backward)) {
  case BlockChoice::k64s:
    return "64s";
  case BlockChoice::k128:
    return "128";
  case BlockChoice::k128t:
    return "128t";
  default:
    return "64";
  }
}

bool attentionUsesTensorCores(const AttentionCall &c, bool backward) {
  if (!attentionTensorCoreShape(c.dtype, c.depth) || simpleForced() ||
      !deviceHasTensorCores())
    return false;
  // Grid y counts (batch, head) pairs.
  if (c.batch * c.heads > 65535 || c.batch * c.kvHeads > 65535)
    return false;
  // cp.async moves 16 bytes: every row of q, k, v (and out, dout) starts on
  // a 16-byte boundary when the base does, D being a multiple of 8.
  if (!aligned16(c.q) || !aligned16(c.k) || !aligned16(c.v))
    return false;
  if (!backward)
    return aligned16(c.o);
  // The two-pass backward needs delta's room; the fused one also room for
  // one (batch, kv head) pair's dq sums.
  size_t need = deltaScratchBytes(c.batch, c.heads, c.rows);
  if (fusedBackward(c))
    need += dqAccumBytesPerKv(c.heads / c.kvHeads, c.rows, c.depth);
  return aligned16(c.out) && aligned16(c.dout) && aligned16(c.dq) &&
         aligned16(c.dk) && aligned16(c.dv) && c.scratch &&
         c.scratchBytes >= need;
}

cudaError_t launchAttentionTensorCore(cudaStream_t stream,
                                      const AttentionCall &c, bool backward) {
  if (c.batch == 0 || c.heads == 0 || (!backward && c.rows == 0))
    return cudaSuccess;
  const bool fuseDq = fusedBackward(c);
  return c.dtype == DType::kBF16
             ? dispatchDepth<true>(stream, c, backward, fuseDq)
             : dispatchDepth<false>(stream, c, backward, fuseDq);
}

} // namespace colossal::runtime::cuda
