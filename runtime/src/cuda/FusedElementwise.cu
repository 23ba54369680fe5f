//===- FusedElementwise.cu - The fused_elementwise kernel -----------------===//
//
// One thread per result element (grid-stride). Each thread loads its input
// elements through broadcast strides, runs the program's records in order
// on a register file (float registers in double, integer and bool
// registers in int64, every one rounded to its dtype as it is defined) and
// stores the last register. The program is the kernel's parameter: it
// lives in constant parameter memory and every thread of a launch reads
// the same record at the same time, so its switch costs a branch, not
// divergence.
//
// Numerics: the per-element functions are those of Elementwise.cu (f64,
// --fmad=false), from ElementwiseDevice.cuh, which both files include.
//
// Known weakness: the register file is indexed dynamically, so it lives in
// local memory (L1-cached); a program specialised at compile time would
// keep it in registers.
//
//===----------------------------------------------------------------------===//

#include "FusedElementwise.h"
#include "FusedJit.h"

#include "CudaCommon.cuh"
#include "ElementwiseDevice.cuh"

#include <string>

namespace colossal::runtime::cuda {

namespace {

// ---- Registers -----------------------------------------------------------
//
// A register holds what an element of its dtype would hold once stored and
// loaded again: float dtypes as the double value of the stored element,
// integer and bool dtypes as the int64 value. The set* functions are
// storeF/storeI followed by loadF/loadI, without the memory.

union Reg {
  double f;
  int64_t i;
};

/// storeFromDouble then load: floats round (f16/bf16 through round-to-odd,
/// as the CPU), integers truncate and saturate, bool is v != 0.
__device__ Reg fromDouble(DType t, double v) {
  Reg r;
  switch (t) {
  case DType::kF32:
    r.f = static_cast<float>(v);
    return r;
  case DType::kF16:
    r.f = __half2float(__float2half_rn(roundToOddFloat(v)));
    return r;
  case DType::kBF16:
    r.f = bf16ToFloat(floatToBf16(roundToOddFloat(v)));
    return r;
  case DType::kF64:
    r.f = v;
    return r;
  case DType::kI64:
    r.i = truncSaturate(v, INT64_MIN, INT64_MAX);
    return r;
  case DType::kI32:
    r.i = truncSaturate(v, INT32_MIN, INT32_MAX);
    return r;
  case DType::kI8:
    r.i = truncSaturate(v, INT8_MIN, INT8_MAX);
    return r;
  case DType::kU8:
    r.i = truncSaturate(v, 0, UINT8_MAX);
    return r;
  case DType::kBool:
    r.i = v != 0.0 ? 1 : 0;
    return r;
  }
  r.i = 0;
  return r;
}

/// storeFromInt64 then load: narrower integers wrap, floats round.
__device__ Reg fromInt(DType t, int64_t v) {
  Reg r;
  switch (t) {
  case DType::kI64:
    r.i = v;
    return r;
  case DType::kI32:
    r.i = static_cast<int32_t>(static_cast<uint32_t>(v));
    return r;
  case DType::kI8:
    r.i = static_cast<int8_t>(static_cast<uint8_t>(v));
    return r;
  case DType::kU8:
    r.i = static_cast<uint8_t>(v);
    return r;
  case DType::kBool:
    r.i = v != 0 ? 1 : 0;
    return r;
  case DType::kF32:
    r.f = static_cast<float>(v);
    return r;
  case DType::kF64:
    r.f = static_cast<double>(v);
    return r;
  default: // f16, bf16: through double, as storeFromInt64
    return fromDouble(t, static_cast<double>(v));
  }
}

__device__ double asDouble(DType t, Reg r) {
  return isFloatType(t) ? r.f : static_cast<double>(r.i);
}

__device__ int64_t asInt(DType t, Reg r) {
  return isFloatType(t) ? truncSaturate(r.f, INT64_MIN, INT64_MAX) : r.i;
}

__global__ void fusedElementwiseKernel(ErrorSink sink, FusedKernelProgram p,
                                       FusedInputs inputs, void *out) {
  Reg regs[kMaxFusedInputs + kMaxFusedRecords];
  DType types[kMaxFusedInputs + kMaxFusedRecords];
  for (int k = 0; k < p.numInputs; ++k)
    types[k] = p.inTypes[k];
  for (int r = 0; r < p.numRecords; ++r)
    types[p.numInputs + r] = p.records[r].dtype;
  const int last = p.numInputs + p.numRecords - 1;
  COLOSSAL_GRID_STRIDE(i, p.count) {
    for (int k = 0; k < p.numInputs; ++k) {
      int64_t at = stridedOffset(i, p.outDims, p.inStrides[k]);
      if (isFloatType(types[k]))
        regs[k].f = loadF(inputs.ptrs[k], types[k], at);
      else
        regs[k].i = loadI(inputs.ptrs[k], types[k], at);
    }
    for (int r = 0; r < p.numRecords; ++r) {
      const FusedKernelRecord &rec = p.records[r];
      const int self = p.numInputs + r;
      const int a = rec.operands[0];
      Reg result;
      switch (rec.op) {
      case OpKind::Fill:
        result = fromDouble(rec.dtype, rec.constant);
        break;
      case OpKind::Identity:
        result = regs[a];
        break;
      case OpKind::Cast:
        result = isFloatType(types[a]) ? fromDouble(rec.dtype, regs[a].f)
                                       : fromInt(rec.dtype, regs[a].i);
        break;
      case OpKind::Where:
        result = asInt(types[a], regs[a]) != 0 ? regs[rec.operands[1]]
                                                : regs[rec.operands[2]];
        break;
      default:
        if (rec.numOperands == 1) {
          result = isFloatType(types[a])
                       ? fromDouble(rec.dtype,
                                    unaryFloat(rec.op, rec.flag == 1,
                                                    regs[a].f))
                       : fromInt(rec.dtype, unaryInt(rec.op, regs[a].i));
        } else {
          const int b = rec.operands[1];
          if (isFloatType(types[a])) {
            double x = regs[a].f, y = asDouble(types[b], regs[b]);
            result = isComparison(rec.op)
                         ? fromInt(rec.dtype, compare(rec.op, x, y))
                         : fromDouble(rec.dtype,
                                      binaryFloat(rec.op, x, y));
          } else {
            int64_t x = regs[a].i, y = asInt(types[b], regs[b]);
            int32_t error = kErrNone;
            int64_t v = isComparison(rec.op)
                            ? compare(rec.op, x, y)
                            : binaryInt(rec.op, x, y, error);
            if (error != kErrNone)
              reportError(sink, error, r, 0, 0);
            result = fromInt(rec.dtype, v);
          }
        }
        break;
      }
      regs[self] = result;
    }
    if (isFloatType(types[last]))
      storeF(out, types[last], i, regs[last].f);
    else
      storeI(out, types[last], i, regs[last].i);
  }
}

// ---- The f32 interpreter (the default; COLOSSAL_CUDA_FUSED=f64: above) --
//
// f32/bf16/f16 registers hold a float (the value of the stored element,
// exact in f32), f64 registers a double, integer and bool registers an
// int64. An op on narrow float operands computes in f32 (CUDA's
// correctly rounded + - * / sqrt, and its f32 exp, log, tanh, erf, pow,
// sin, cos of <= 2 ulps) and rounds to the record's dtype from the float;
// an op with an f64 operand computes in f64 as the kF64 kernel. Rounding
// a float to bf16/f16 once is the correct rounding of the f32 result, not
// of the exact value: the two differ only when the exact value lies within
// the f32 result's error of a bf16/f16 rounding midpoint (for a correctly
// rounded op about 2^-24 / 2^-9 = 1 in 2^15 elements, less where the f32
// result is exact, as for a product of two bf16), and then by one bf16/f16
// ulp (2^-8 relative, under the 1e-2 bf16 tolerance).

union Reg32 {
  float s;   ///< f32, bf16, f16
  double f;  ///< f64
  int64_t i; ///< integers, bool
};

__device__ bool isNarrowFloat(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

/// A float rounded to `t` and held as a register of `t`.
__device__ Reg32 fromFloat32(DType t, float v) {
  Reg32 r;
  switch (t) {
  case DType::kF32:
    r.s = v;
    return r;
  case DType::kBF16:
    r.s = bf16ToFloat(floatToBf16(v));
    return r;
  case DType::kF16:
    r.s = __half2float(__float2half_rn(v));
    return r;
  case DType::kF64:
    r.f = static_cast<double>(v);
    return r;
  default: // integers: truncate and saturate the (exact) double value
    r.i = fromDouble(t, static_cast<double>(v)).i;
    return r;
  }
}

/// A kF64-kernel register of dtype `t` as an f32-kernel register: narrow
/// floats kept as float (exact, the value is already rounded to `t`).
__device__ Reg32 toReg32(DType t, Reg wide) {
  Reg32 r;
  if (isNarrowFloat(t))
    r.s = static_cast<float>(wide.f);
  else if (t == DType::kF64)
    r.f = wide.f;
  else
    r.i = wide.i;
  return r;
}

/// The kF64 kernel's fromDouble and fromInt, as Reg32.
__device__ Reg32 fromDouble32(DType t, double v) {
  return toReg32(t, fromDouble(t, v));
}

__device__ Reg32 fromInt32(DType t, int64_t v) {
  return toReg32(t, fromInt(t, v));
}

__device__ double asDouble32(DType t, Reg32 r) {
  return isNarrowFloat(t)   ? static_cast<double>(r.s)
         : t == DType::kF64 ? r.f
                            : static_cast<double>(r.i);
}

__device__ float asFloat32(DType t, Reg32 r) {
  return isNarrowFloat(t) ? r.s : static_cast<float>(r.i); // t is no f64
}

__device__ int64_t asInt32(DType t, Reg32 r) {
  return isNarrowFloat(t)   ? truncSaturate(r.s, INT64_MIN, INT64_MAX)
         : t == DType::kF64 ? truncSaturate(r.f, INT64_MIN, INT64_MAX)
                            : r.i;
}

/// regs[slot] by an unrolled select: every index static, so the file stays
/// in registers (kSlots selects per read; cheap next to local memory).
template <int kSlots>
__device__ Reg32 readSlot(const Reg32 (&regs)[kSlots], int slot) {
  Reg32 v = regs[0];
#pragma unroll
  for (int k = 1; k < kSlots; ++k)
    if (slot == k)
      v = regs[k];
  return v;
}

template <int kSlots>
__device__ void writeSlot(Reg32 (&regs)[kSlots], int slot, Reg32 v) {
#pragma unroll
  for (int k = 0; k < kSlots; ++k)
    if (slot == k)
      regs[k] = v;
}

/// One record on its operands' registers.
__device__ Reg32 runRecord32(ErrorSink sink, int r,
                             const FusedKernelRecord &rec, Reg32 x, Reg32 y,
                             Reg32 z) {
  const DType ta = rec.operandTypes[0], tb = rec.operandTypes[1];
  switch (rec.op) {
  case OpKind::Fill:
    return fromDouble32(rec.dtype, rec.constant);
  case OpKind::Identity:
    return x;
  case OpKind::Cast:
    if (isNarrowFloat(ta))
      return fromFloat32(rec.dtype, x.s);
    return ta == DType::kF64 ? fromDouble32(rec.dtype, x.f)
                             : fromInt32(rec.dtype, x.i);
  case OpKind::Where:
    return asInt32(ta, x) != 0 ? y : z;
  default:
    break;
  }
  if (rec.numOperands == 1) {
    if (isNarrowFloat(ta))
      return fromFloat32(rec.dtype,
                         unaryFloat(rec.op, rec.flag == 1, x.s));
    if (ta == DType::kF64)
      return fromDouble32(rec.dtype,
                          unaryFloat(rec.op, rec.flag == 1, x.f));
    return fromInt32(rec.dtype, unaryInt(rec.op, x.i));
  }
  if (isNarrowFloat(ta) && tb != DType::kF64) {
    float a = x.s, b = asFloat32(tb, y);
    return isComparison(rec.op)
               ? fromInt32(rec.dtype, compare(rec.op, a, b))
               : fromFloat32(rec.dtype, binaryFloat(rec.op, a, b));
  }
  if (isFloatType(ta)) { // an f64 operand: as the kF64 kernel
    double a = asDouble32(ta, x), b = asDouble32(tb, y);
    return isComparison(rec.op)
               ? fromInt32(rec.dtype, compare(rec.op, a, b))
               : fromDouble32(rec.dtype, binaryFloat(rec.op, a, b));
  }
  int64_t a = x.i, b = asInt32(tb, y);
  int32_t error = kErrNone;
  int64_t v = isComparison(rec.op) ? compare(rec.op, a, b)
                                        : binaryInt(rec.op, a, b, error);
  if (error != kErrNone)
    reportError(sink, error, r, 0, 0);
  return fromInt32(rec.dtype, v);
}

template <int kSlots>
__global__ void fusedElementwiseF32Kernel(ErrorSink sink, FusedKernelProgram p,
                                          FusedInputs inputs, void *out) {
  Reg32 regs[kSlots];
  const FusedKernelRecord &result = p.records[p.numRecords - 1];
  COLOSSAL_GRID_STRIDE(i, p.count) {
#pragma unroll
    for (int k = 0; k < kMaxFusedInputs && k < kSlots; ++k) {
      if (k >= p.numInputs)
        break;
      const DType t = p.inTypes[k];
      int64_t at = stridedOffset(i, p.outDims, p.inStrides[k]);
      if (isNarrowFloat(t))
        regs[k].s = static_cast<float>(loadF(inputs.ptrs[k], t, at));
      else if (t == DType::kF64)
        regs[k].f = loadF(inputs.ptrs[k], t, at);
      else
        regs[k].i = loadI(inputs.ptrs[k], t, at);
    }
    for (int r = 0; r < p.numRecords; ++r) {
      const FusedKernelRecord &rec = p.records[r];
      Reg32 x = readSlot(regs, rec.slotOperands[0]);
      Reg32 y = readSlot(regs, rec.slotOperands[1]);
      Reg32 z = readSlot(regs, rec.slotOperands[2]);
      writeSlot(regs, rec.slot, runRecord32(sink, r, rec, x, y, z));
    }
    Reg32 v = readSlot(regs, result.slot);
    if (isNarrowFloat(result.dtype))
      storeF(out, result.dtype, i, v.s);
    else if (result.dtype == DType::kF64)
      storeF(out, result.dtype, i, v.f);
    else
      storeI(out, result.dtype, i, v.i);
  }
}

// ---- The packed f32 kernel ------------------------------------------------
//
// The f32 interpreter above, for the programs of mixed-precision training:
// every value an f32, bf16 or f16 float or a bool (a float 0 or 1), so a
// register is a float. Each thread runs the program once for kPack
// consecutive elements, so the record switch is paid once per pack; the
// register file lives in shared memory as [slot][lane][thread] (a warp's
// reads of one slot and lane fall in 32 banks), and inputs are addressed
// as (i / div) % mod with 32-bit arithmetic when the result has fewer than
// 2^31 elements, loading a pack of a same-layout or row-broadcast input
// with one 8- or 16-byte access. Every record computes what runRecord32
// computes for the same values (the same float functions, rounded to the
// record's dtype the same way), so results are the f32 interpreter's bits.

constexpr int kPack = 4;
constexpr int kFastThreads = 256;
/// The most slots the shared register file holds (48 KiB at 256 threads).
constexpr int kMaxFastSlots = 12;

__device__ inline float roundFloatTo(DType t, float v) {
  switch (t) {
  case DType::kBF16:
    return bf16ToFloat(floatToBf16(v));
  case DType::kF16:
    return __half2float(__float2half_rn(v));
  case DType::kBool:
    return v != 0.0f ? 1.0f : 0.0f;
  default:
    return v;
  }
}

/// One record on floats: what runRecord32 gives for the same values.
__device__ inline float fastRecord(const FusedKernelRecord &rec, float x,
                                   float y, float z) {
  switch (rec.op) {
  case OpKind::Fill: // the constant as runRecord32 rounds it
    return rec.dtype == DType::kBool ? (rec.constant != 0.0 ? 1.0f : 0.0f)
                                     : fromDouble32(rec.dtype, rec.constant).s;
  case OpKind::Identity:
    return x;
  case OpKind::Cast:
    return roundFloatTo(rec.dtype, x);
  case OpKind::Where: // the condition is a bool (fastRecordSupported)
    return x != 0.0f ? y : z;
  case OpKind::Not:
    return x == 0.0f ? 1.0f : 0.0f;
  case OpKind::And:
    return (x != 0.0f && y != 0.0f) ? 1.0f : 0.0f;
  case OpKind::Or:
    return (x != 0.0f || y != 0.0f) ? 1.0f : 0.0f;
  case OpKind::Xor:
    return ((x != 0.0f) != (y != 0.0f)) ? 1.0f : 0.0f;
  default:
    break;
  }
  if (rec.numOperands == 1)
    return roundFloatTo(rec.dtype, unaryFloat(rec.op, rec.flag == 1, x));
  if (isComparison(rec.op))
    return compare(rec.op, x, y) ? 1.0f : 0.0f;
  return roundFloatTo(rec.dtype, binaryFloat(rec.op, x, y));
}

template <typename Index>
__device__ inline Index affineOffset(Index i, Index div, Index mod) {
  Index j = div == 1 ? i : i / div;
  return mod == 0 ? j : (mod == 1 ? Index(0) : j % mod);
}

__device__ inline float loadFast(const void *p, DType t, int64_t at) {
  switch (t) {
  case DType::kF32:
    return static_cast<const float *>(p)[at];
  case DType::kBF16:
    return bf16ToFloat(static_cast<const uint16_t *>(p)[at]);
  case DType::kF16:
    return __half2float(
        __ushort_as_half(static_cast<const uint16_t *>(p)[at]));
  default: // bool
    return static_cast<const uint8_t *>(p)[at] != 0 ? 1.0f : 0.0f;
  }
}

/// kPack values of input k at offsets at..at+kPack-1 in one access: f32
/// 16 bytes, bf16/f16 8 bytes, bool 4 bytes.
__device__ inline void loadFastPack(const void *p, DType t, int64_t at,
                                    float (&x)[kPack]) {
  switch (t) {
  case DType::kF32: {
    float4 v = *reinterpret_cast<const float4 *>(
        static_cast<const float *>(p) + at);
    x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    return;
  }
  case DType::kBF16:
  case DType::kF16: {
    uint2 v = *reinterpret_cast<const uint2 *>(
        static_cast<const uint16_t *>(p) + at);
    uint16_t h[4] = {static_cast<uint16_t>(v.x), static_cast<uint16_t>(v.x >> 16),
                     static_cast<uint16_t>(v.y), static_cast<uint16_t>(v.y >> 16)};
    for (int k = 0; k < kPack; ++k)
      x[k] = t == DType::kBF16 ? bf16ToFloat(h[k])
                               : __half2float(__ushort_as_half(h[k]));
    return;
  }
  default: {
    uint32_t v = *reinterpret_cast<const uint32_t *>(
        static_cast<const uint8_t *>(p) + at);
    for (int k = 0; k < kPack; ++k)
      x[k] = ((v >> (8 * k)) & 0xffu) != 0 ? 1.0f : 0.0f;
    return;
  }
  }
}

__device__ inline void storeFastPack(void *p, DType t, int64_t at,
                                     const float (&x)[kPack]) {
  switch (t) {
  case DType::kF32:
    *reinterpret_cast<float4 *>(static_cast<float *>(p) + at) =
        make_float4(x[0], x[1], x[2], x[3]);
    return;
  case DType::kBF16:
  case DType::kF16: {
    uint16_t h[4];
    for (int k = 0; k < kPack; ++k)
      h[k] = t == DType::kBF16 ? floatToBf16(x[k])
                               : __half_as_ushort(__float2half_rn(x[k]));
    *reinterpret_cast<uint2 *>(static_cast<uint16_t *>(p) + at) =
        make_uint2(h[0] | (uint32_t(h[1]) << 16), h[2] | (uint32_t(h[3]) << 16));
    return;
  }
  default: {
    uint32_t v = 0;
    for (int k = 0; k < kPack; ++k)
      v |= uint32_t(x[k] != 0.0f ? 1 : 0) << (8 * k);
    *reinterpret_cast<uint32_t *>(static_cast<uint8_t *>(p) + at) = v;
    return;
  }
  }
}

__device__ inline void storeFast(void *p, DType t, int64_t at, float v) {
  switch (t) {
  case DType::kF32:
    static_cast<float *>(p)[at] = v;
    return;
  case DType::kBF16:
    static_cast<uint16_t *>(p)[at] = floatToBf16(v);
    return;
  case DType::kF16:
    static_cast<uint16_t *>(p)[at] = __half_as_ushort(__float2half_rn(v));
    return;
  default:
    static_cast<uint8_t *>(p)[at] = v != 0.0f ? 1 : 0;
    return;
  }
}

/// What a pack of input k needs: 0 per-element offsets, 1 one packed
/// access (contiguous run, aligned), 2 one value for the whole pack.
struct FastPackModes {
  int8_t mode[kMaxFusedInputs] = {};
  bool outPacked = false;
};

/// Runs the program on elements [i0, i0 + n) (n = kPack for a packed
/// pack, or 1), registers in `file` ([slot][lane][thread]).
template <typename Index, int n>
__device__ inline void runFastPack(const FusedKernelProgram &p,
                                   const FusedInputs &inputs,
                                   const FastPackModes &modes, float *file,
                                   Index i0, void *out) {
  const int tid = threadIdx.x;
  auto reg = [&](int slot, int lane) -> float & {
    return file[(slot * kPack + lane) * kFastThreads + tid];
  };
  for (int k = 0; k < p.numInputs; ++k) {
    const DType t = p.inTypes[k];
    if (!p.inAffine[k]) {
      for (int lane = 0; lane < n; ++lane)
        reg(k, lane) = loadFast(inputs.ptrs[k], t,
                                stridedOffset(int64_t(i0) + lane, p.outDims,
                                              p.inStrides[k]));
      continue;
    }
    Index div = static_cast<Index>(p.inDiv[k]),
          mod = static_cast<Index>(p.inMod[k]);
    Index at = affineOffset(i0, div, mod);
    if (n == kPack && modes.mode[k] == 1) {
      float x[kPack];
      loadFastPack(inputs.ptrs[k], t, at, x);
      for (int lane = 0; lane < kPack; ++lane)
        reg(k, lane) = x[lane];
    } else if (n == kPack && modes.mode[k] == 2) {
      float v = loadFast(inputs.ptrs[k], t, at);
      for (int lane = 0; lane < kPack; ++lane)
        reg(k, lane) = v;
    } else {
      for (int lane = 0; lane < n; ++lane)
        reg(k, lane) = loadFast(inputs.ptrs[k], t,
                                affineOffset(Index(i0 + lane), div, mod));
    }
  }
  for (int r = 0; r < p.numRecords; ++r) {
    const FusedKernelRecord &rec = p.records[r];
    float x[n], y[n], z[n];
#pragma unroll
    for (int lane = 0; lane < n; ++lane) {
      x[lane] = reg(rec.slotOperands[0], lane);
      y[lane] = reg(rec.slotOperands[1], lane);
      z[lane] = reg(rec.slotOperands[2], lane);
    }
#pragma unroll
    for (int lane = 0; lane < n; ++lane)
      reg(rec.slot, lane) = fastRecord(rec, x[lane], y[lane], z[lane]);
  }
  const FusedKernelRecord &result = p.records[p.numRecords - 1];
  if (n == kPack && modes.outPacked) {
    float v[kPack];
    for (int lane = 0; lane < kPack; ++lane)
      v[lane] = reg(result.slot, lane);
    storeFastPack(out, result.dtype, i0, v);
  } else {
    for (int lane = 0; lane < n; ++lane)
      storeFast(out, result.dtype, int64_t(i0) + lane,
                reg(result.slot, lane));
  }
}

template <typename Index>
__global__ void __launch_bounds__(kFastThreads)
    fusedElementwiseFastKernel(FusedKernelProgram p, FusedInputs inputs,
                               FastPackModes modes, void *out) {
  extern __shared__ float file[];
  const Index count = static_cast<Index>(p.count);
  const Index packs = count / kPack;
  const Index stride = Index(blockDim.x) * gridDim.x;
  for (Index q = Index(blockIdx.x) * blockDim.x + threadIdx.x; q < packs;
       q += stride)
    runFastPack<Index, kPack>(p, inputs, modes, file, q * kPack, out);
  for (Index i = packs * kPack + Index(blockIdx.x) * blockDim.x + threadIdx.x;
       i < count; i += stride)
    runFastPack<Index, 1>(p, inputs, modes, file, i, out);
}

/// Element strides of `in` read as if broadcast to `out`.
Dims broadcastDims(const std::vector<int64_t> &in,
                   const std::vector<int64_t> &out) {
  Dims strides;
  strides.rank = static_cast<int>(out.size());
  int64_t stride = 1;
  size_t lead = out.size() - in.size();
  for (size_t d = in.size(); d-- > 0;) {
    strides.d[lead + d] = in[d] == 1 ? 0 : stride;
    stride *= in[d];
  }
  return strides;
}

Status fusedError(const std::string &message) {
  return COLOSSAL_ERROR(kInvalidArgument, "fused_elementwise: " + message);
}

} // namespace

Status buildFusedProgram(const Attrs &attrs,
                         const std::vector<TensorType> &inTypes,
                         const TensorType &outType, FusedKernelProgram &out) {
  std::vector<FusedRecord> records;
  COLOSSAL_RETURN_IF_ERROR(decodeFusedProgram(attrs, inTypes.size(), records));
  if (records.size() > static_cast<size_t>(kMaxFusedRecords))
    return fusedError("program has " + std::to_string(records.size()) +
                      " records, the CUDA kernel takes " +
                      std::to_string(kMaxFusedRecords));
  if (outType.dims.size() > static_cast<size_t>(kMaxDims))
    return fusedError("rank " + std::to_string(outType.dims.size()) +
                      " is above the CUDA kernels' " +
                      std::to_string(kMaxDims));
  FusedKernelProgram p;
  p.numInputs = static_cast<int>(inTypes.size());
  p.numRecords = static_cast<int>(records.size());
  p.count = outType.numElements();
  p.outType = outType.dtype;
  p.outDims.rank = static_cast<int>(outType.dims.size());
  for (size_t d = 0; d < outType.dims.size(); ++d)
    p.outDims.d[d] = outType.dims[d];
  for (size_t k = 0; k < inTypes.size(); ++k) {
    p.inTypes[k] = inTypes[k].dtype;
    p.inStrides[k] = broadcastDims(inTypes[k].dims, outType.dims);
  }
  const std::vector<double> &constants = attrs.floatList("constants");
  for (size_t r = 0; r < records.size(); ++r) {
    FusedKernelRecord &rec = p.records[r];
    rec.op = records[r].op;
    rec.dtype = records[r].dtype;
    rec.numOperands = static_cast<int8_t>(records[r].numOperands);
    for (int k = 0; k < 3; ++k)
      rec.operands[k] = static_cast<int8_t>(records[r].operands[k]);
    rec.flag = records[r].op == OpKind::Gelu
                   ? static_cast<int8_t>(records[r].immediate)
                   : 0;
    rec.constant =
        records[r].op == OpKind::Fill ? constants[records[r].immediate] : 0.0;
  }
  assignFusedSlots(p);
  classifyFastPath(p);
  out = p;
  return Status::ok();
}

namespace {

bool fastValueType(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16 ||
         t == DType::kBool;
}

bool narrowFloat(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

/// Whether the packed kernel runs `rec` as runRecord32 would.
bool fastRecordSupported(const FusedKernelRecord &rec) {
  const DType ta = rec.operandTypes[0], tb = rec.operandTypes[1];
  if (!fastValueType(rec.dtype))
    return false;
  for (int k = 0; k < rec.numOperands; ++k)
    if (!fastValueType(rec.operandTypes[k]))
      return false;
  switch (rec.op) {
  case OpKind::Fill:
  case OpKind::Identity:
  case OpKind::Cast:
    return true;
  case OpKind::Where:
    return ta == DType::kBool && rec.operandTypes[1] == rec.dtype &&
           rec.operandTypes[2] == rec.dtype;
  case OpKind::Not:
    return ta == DType::kBool && rec.dtype == DType::kBool;
  case OpKind::And:
  case OpKind::Or:
  case OpKind::Xor:
    return ta == DType::kBool && tb == DType::kBool &&
           rec.dtype == DType::kBool;
  default:
    break;
  }
  if (rec.numOperands == 1) // unaryFloat's ops on a float
    return isFloatUnaryOp(rec.op) && narrowFloat(ta) && narrowFloat(rec.dtype);
  if (rec.numOperands != 2)
    return false;
  bool comparison = rec.op == OpKind::Equal || rec.op == OpKind::Less ||
                    rec.op == OpKind::LessEqual || rec.op == OpKind::Greater ||
                    rec.op == OpKind::GreaterEqual;
  if (comparison) // floats, or two bools
    return rec.dtype == DType::kBool &&
           (narrowFloat(ta) || (ta == DType::kBool && tb == DType::kBool));
  bool arithmetic = rec.op == OpKind::Add || rec.op == OpKind::Sub ||
                    rec.op == OpKind::Mul || rec.op == OpKind::Div ||
                    rec.op == OpKind::Pow || rec.op == OpKind::Max ||
                    rec.op == OpKind::Min;
  return arithmetic && narrowFloat(ta) && narrowFloat(tb) &&
         narrowFloat(rec.dtype);
}

} // namespace

void classifyFastPath(FusedKernelProgram &p) {
  p.fast = p.numRecords > 0 && p.numSlots <= kMaxFastSlots;
  for (int k = 0; p.fast && k < p.numInputs; ++k)
    p.fast = fastValueType(p.inTypes[k]);
  for (int r = 0; p.fast && r < p.numRecords; ++r)
    p.fast = fastRecordSupported(p.records[r]);
  // Input k as (i / div) % mod: the dims it does not broadcast over must
  // be one run [lo, hi) of the result's dims (size-1 dims aside) that it
  // walks contiguously.
  const Dims &dims = p.outDims;
  for (int k = 0; k < p.numInputs; ++k) {
    const Dims &st = p.inStrides[k];
    // From the innermost dim: broadcast dims (div), then the walked run
    // (stride 1, then each the product below it), then broadcast dims only.
    enum { kBelow, kInRun, kAbove } state = kBelow;
    bool affine = true;
    int64_t div = 1, run = 1;
    for (int d = dims.rank - 1; d >= 0 && affine; --d) {
      if (dims.d[d] == 1)
        continue;
      if (st.d[d] == 0) {
        if (state == kBelow)
          div *= dims.d[d];
        else
          state = kAbove;
      } else if (state != kAbove && st.d[d] == run) {
        state = kInRun;
        run *= dims.d[d];
      } else {
        affine = false;
      }
    }
    p.inAffine[k] = affine;
    p.inDiv[k] = state == kBelow ? 1 : div;
    p.inMod[k] = state == kBelow ? 1 : (state == kInRun ? 0 : run);
  }
}

void assignFusedSlots(FusedKernelProgram &p) {
  const int values = p.numInputs + p.numRecords;
  int lastUse[kMaxFusedInputs + kMaxFusedRecords];
  int slotOf[kMaxFusedInputs + kMaxFusedRecords];
  DType typeOf[kMaxFusedInputs + kMaxFusedRecords];
  for (int v = 0; v < values; ++v)
    lastUse[v] = -1;
  for (int r = 0; r < p.numRecords; ++r)
    for (int k = 0; k < p.records[r].numOperands; ++k)
      lastUse[p.records[r].operands[k]] = r;
  lastUse[values - 1] = p.numRecords; // the result is read by the store
  bool busy[kMaxFusedInputs + kMaxFusedRecords] = {};
  int numSlots = p.numInputs;
  for (int k = 0; k < p.numInputs; ++k) {
    slotOf[k] = k, busy[k] = true;
    typeOf[k] = p.inTypes[k];
  }
  for (int r = 0; r < p.numRecords; ++r) {
    FusedKernelRecord &rec = p.records[r];
    for (int k = 0; k < 3; ++k) {
      bool used = k < rec.numOperands;
      rec.slotOperands[k] =
          used ? static_cast<int8_t>(slotOf[rec.operands[k]]) : 0;
      rec.operandTypes[k] = used ? typeOf[rec.operands[k]] : DType::kF32;
    }
    // Operands are read before the result is written: a slot whose value
    // dies here can hold the result.
    for (int k = 0; k < rec.numOperands; ++k)
      if (lastUse[rec.operands[k]] <= r)
        busy[slotOf[rec.operands[k]]] = false;
    int slot = 0;
    while (busy[slot])
      ++slot;
    busy[slot] = true;
    numSlots = numSlots > slot + 1 ? numSlots : slot + 1;
    const int self = p.numInputs + r;
    slotOf[self] = slot, typeOf[self] = rec.dtype;
    rec.slot = static_cast<int8_t>(slot);
    if (lastUse[self] < 0) // never read: free at once
      busy[slot] = false;
  }
  p.numSlots = numSlots;
}

cudaError_t launchFusedElementwise(cudaStream_t stream, ErrorSink sink,
                                   const FusedKernelProgram &program,
                                   const void *const *inputs, void *out,
                                   Precision precision) {
  if (program.count == 0)
    return cudaSuccess;
  FusedInputs ptrs;
  for (int k = 0; k < program.numInputs; ++k)
    ptrs.ptrs[k] = inputs[k];
  unsigned blocks = blocksFor(program.count);
  if (precision == Precision::kF32 && program.jit)
    return FusedJit::launch(stream, program, ptrs.ptrs, out);
  if (precision == Precision::kF32 && program.fast) {
    // Pack modes: a packed access needs kPack consecutive elements of the
    // input at consecutive addresses (div 1, the run a multiple of kPack)
    // or one value for all (div a multiple of kPack, or a scalar), and
    // aligned addresses.
    FastPackModes modes;
    auto aligned = [](const void *ptr, DType t) {
      int64_t bytes = kPack * (t == DType::kF32 ? 4 : t == DType::kBool ? 1 : 2);
      return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
    };
    for (int k = 0; k < program.numInputs; ++k) {
      if (!program.inAffine[k])
        continue;
      int64_t div = program.inDiv[k], mod = program.inMod[k];
      if (mod == 1 || (div % kPack == 0))
        modes.mode[k] = 2;
      else if (div == 1 && mod % kPack == 0 && aligned(inputs[k], program.inTypes[k]))
        modes.mode[k] = 1;
    }
    modes.outPacked = aligned(out, program.records[program.numRecords - 1].dtype);
    size_t shared = static_cast<size_t>(program.numSlots) * kPack *
                    kFastThreads * sizeof(float);
    unsigned fastBlocks = blocksFor((program.count + kPack - 1) / kPack,
                                    kFastThreads);
    if (program.count < (int64_t{1} << 31))
      fusedElementwiseFastKernel<uint32_t>
          <<<fastBlocks, kFastThreads, shared, stream>>>(program, ptrs, modes,
                                                         out);
    else
      fusedElementwiseFastKernel<int64_t>
          <<<fastBlocks, kFastThreads, shared, stream>>>(program, ptrs, modes,
                                                         out);
    return cudaGetLastError();
  }
  if (precision == Precision::kF32 && program.numRecords > 0) {
    if (program.numSlots <= 4)
      fusedElementwiseF32Kernel<4>
          <<<blocks, kThreads, 0, stream>>>(sink, program, ptrs, out);
    else if (program.numSlots <= 8)
      fusedElementwiseF32Kernel<8>
          <<<blocks, kThreads, 0, stream>>>(sink, program, ptrs, out);
    else if (program.numSlots <= 16)
      fusedElementwiseF32Kernel<16>
          <<<blocks, kThreads, 0, stream>>>(sink, program, ptrs, out);
    else
      fusedElementwiseF32Kernel<32>
          <<<blocks, kThreads, 0, stream>>>(sink, program, ptrs, out);
    return cudaGetLastError();
  }
  fusedElementwiseKernel<<<blocks, kThreads, 0, stream>>>(sink, program, ptrs,
                                                          out);
  return cudaGetLastError();
}

Status FusedPrograms::prepare(size_t instr, const Attrs &attrs,
                              const std::vector<TensorType> &inTypes,
                              const TensorType &outType) {
  if (instr >= programs_.size())
    programs_.resize(instr + 1);
  auto program = std::make_shared<FusedKernelProgram>();
  COLOSSAL_RETURN_IF_ERROR(buildFusedProgram(attrs, inTypes, outType, *program));
  if (jit_)
    COLOSSAL_RETURN_IF_ERROR(jit_->prepare(*program));
  programs_[instr] = std::move(program);
  return Status::ok();
}

Status FusedPrograms::run(cudaStream_t stream, ErrorSink sink,
                          const Attrs &attrs, const std::vector<TensorRef> &ins,
                          const TensorRef &out, Precision precision) const {
  std::shared_ptr<const FusedKernelProgram> program =
      sink.instr < programs_.size() ? programs_[sink.instr] : nullptr;
  if (!program) { // not prepared (kernel tests): decode now
    std::vector<TensorType> inTypes;
    for (const TensorRef &in : ins)
      inTypes.push_back(in.type);
    auto built = std::make_shared<FusedKernelProgram>();
    COLOSSAL_RETURN_IF_ERROR(buildFusedProgram(attrs, inTypes, out.type, *built));
    if (jit_) // compiled on the spot (cached by source)
      COLOSSAL_RETURN_IF_ERROR(jit_->prepare(*built));
    program = std::move(built);
  }
  const void *ptrs[kMaxFusedInputs] = {};
  for (size_t k = 0; k < ins.size() && k < ptrs + kMaxFusedInputs - ptrs; ++k)
    ptrs[k] = ins[k].data;
  cudaError_t err =
      launchFusedElementwise(stream, sink, *program, ptrs, out.data, precision);
  if (err != cudaSuccess)
    return COLOSSAL_ERROR(kInternal, std::string("fused_elementwise launch: ") +
                                         cudaGetErrorString(err));
  return Status::ok();
}

} // namespace colossal::runtime::cuda
