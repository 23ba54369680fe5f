//===- FusedJit.cpp - fused_elementwise programs compiled to CUDA ---------===//
//
// The code generator and the NVRTC loader of FusedJit.h. The generated
// kernel mirrors fastRecord (FusedElementwise.cu) record by record; the
// comments there say why each op computes what it does.
//
//===----------------------------------------------------------------------===//

#include "FusedJit.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <sstream>
#include <vector>

namespace colossal::runtime::cuda {

namespace {

// ---- Code generation -----------------------------------------------------

/// Helpers every kernel starts with: bf16 and f16 conversions written out
/// (NVRTC compiles without the toolkit's headers), as CudaCommon.cuh's.
constexpr const char *kPrelude = R"(typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned char u8;
__device__ __forceinline__ float bf2f(u16 b) { return __uint_as_float(((u32)b) << 16); }
__device__ __forceinline__ u16 f2bf(float v) {
  u32 bits = __float_as_uint(v);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (u16)((bits >> 16) | 0x0040u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (u16)(bits >> 16);
}
#ifdef __CUDACC_RTC__
__device__ __forceinline__ float h2f(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#else /* a host compiler (the JIT test runs the code on the CPU): _Float16 */
__device__ __forceinline__ float h2f(u16 h) { _Float16 v; __builtin_memcpy(&v, &h, 2); return (float)v; }
__device__ __forceinline__ u16 f2h(float f) { _Float16 v = (_Float16)f; u16 h; __builtin_memcpy(&h, &v, 2); return h; }
#endif
/* f2bf of a value already exact in bf16 (its low 16 bits zero): the
   truncation, with a NaN quieted as f2bf quiets it. */
__device__ __forceinline__ u16 f2bfx(float v) {
  u32 bits = __float_as_uint(v);
  return (u16)((bits >> 16) | ((bits & 0x7fffffffu) > 0x7f800000u ? 0x0040u : 0u));
}
__device__ __forceinline__ float rbf(float v) { return bf2f(f2bf(v)); }
__device__ __forceinline__ float rh(float v) { return h2f(f2h(v)); }
__device__ __forceinline__ float rb(float v) { return v != 0.0f ? 1.0f : 0.0f; }
__device__ __forceinline__ float fmaxnan(float a, float b) { return (a != a || a > b) ? a : b; }
__device__ __forceinline__ float fminnan(float a, float b) { return (a != a || a < b) ? a : b; }
__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
)";

/// A float literal that reads back as exactly `v` (hex float).
std::string floatLiteral(float v) {
  if (v != v)
    return "__int_as_float(0x7fc00000)";
  if (v == __builtin_inff())
    return "__int_as_float(0x7f800000)";
  if (v == -__builtin_inff())
    return "__int_as_float(0xff800000)";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%af", static_cast<double>(v));
  return buf;
}

/// The expression that rounds `e` (a float) to `t`.
std::string roundTo(DType t, const std::string &e) {
  switch (t) {
  case DType::kBF16:
    return "rbf(" + e + ")";
  case DType::kF16:
    return "rh(" + e + ")";
  case DType::kBool:
    return "rb(" + e + ")";
  default:
    return e;
  }
}

std::string loadExpr(DType t, int k, const std::string &at) {
  std::string p = "in" + std::to_string(k);
  switch (t) {
  case DType::kF32:
    return "((const float *)" + p + ")[" + at + "]";
  case DType::kBF16:
    return "bf2f(((const u16 *)" + p + ")[" + at + "])";
  case DType::kF16:
    return "h2f(((const u16 *)" + p + ")[" + at + "])";
  default: // bool
    return "(((const u8 *)" + p + ")[" + at + "] != 0 ? 1.0f : 0.0f)";
  }
}

std::string storeStmt(DType t, const std::string &v, bool exact) {
  switch (t) {
  case DType::kF32:
    return "((float *)out)[i] = " + v + ";";
  case DType::kBF16:
    return "((u16 *)out)[i] = " + std::string(exact ? "f2bfx(" : "f2bf(") +
           v + ");";
  case DType::kF16:
    return "((u16 *)out)[i] = f2h(" + v + ");";
  default:
    return "((u8 *)out)[i] = " + v + " != 0.0f ? 1 : 0;";
  }
}

/// Which 16-bit float types a value is exactly representable in, as bits
/// (kExactBf16, kExactF16): a value loaded from bf16 is exact in bf16, a
/// record rounded to bf16 is, and so is a sign flip, an absolute value, a
/// ReLU, a max or min or a select of exact values, or a 0/1. The generated
/// code skips a rounding to a type its operand is already exact in (the
/// rounding would return it unchanged) and stores such a value by
/// truncation (f2bfx): on OPT-1.3b's bias + ReLU that is one rounding of
/// three and the store's carry arithmetic.
constexpr uint8_t kExactBf16 = 1, kExactF16 = 2;

uint8_t exactBitFor(DType t) {
  return t == DType::kBF16 ? kExactBf16 : t == DType::kF16 ? kExactF16 : 0;
}

/// True for the ops whose result is one of their operands, up to the sign:
/// exact wherever every operand is.
bool preservesValues(OpKind op) {
  switch (op) {
  case OpKind::Identity:
  case OpKind::Cast:
  case OpKind::Neg:
  case OpKind::Abs:
  case OpKind::Relu:
  case OpKind::Max:
  case OpKind::Min:
    return true;
  default:
    return false;
  }
}

/// True for the ops whose result is 0 or 1.
bool isZeroOne(OpKind op) {
  switch (op) {
  case OpKind::Not:
  case OpKind::And:
  case OpKind::Or:
  case OpKind::Xor:
  case OpKind::Equal:
  case OpKind::Less:
  case OpKind::LessEqual:
  case OpKind::Greater:
  case OpKind::GreaterEqual:
    return true;
  default:
    return false;
  }
}

/// The exactness bits of every value: inputs 0 .. numInputs - 1, then the
/// records.
std::vector<uint8_t> valueExactness(const FusedKernelProgram &p) {
  const uint8_t both = kExactBf16 | kExactF16;
  std::vector<uint8_t> exact(p.numInputs + p.numRecords, 0);
  for (int k = 0; k < p.numInputs; ++k)
    exact[k] = p.inTypes[k] == DType::kBool ? both : exactBitFor(p.inTypes[k]);
  for (int r = 0; r < p.numRecords; ++r) {
    const FusedKernelRecord &rec = p.records[r];
    uint8_t operands = both;
    for (int o = 0; o < rec.numOperands; ++o)
      operands &= exact[rec.operands[o]];
    uint8_t e = 0;
    if (rec.dtype == DType::kBool || isZeroOne(rec.op))
      e = both;
    else if (rec.op == OpKind::Where) // a select of its second and third
      e = (rec.numOperands == 3 ? exact[rec.operands[1]] & exact[rec.operands[2]]
                                : 0);
    else if (preservesValues(rec.op) && rec.numOperands > 0)
      e = operands;
    // A record of a 16-bit type is rounded to it (or needed no rounding),
    // except a select and an identity, which return an operand as it is.
    if (rec.op != OpKind::Where && rec.op != OpKind::Identity)
      e |= exactBitFor(rec.dtype);
    exact[p.numInputs + r] = e;
  }
  return exact;
}

/// The value of record `rec` on its operands' registers, as fastRecord.
/// `operandsExact`: every operand is already exact in rec.dtype (the
/// result of a value-preserving op then needs no rounding).
std::string recordExpr(const FusedKernelRecord &rec, const std::string &x,
                       const std::string &y, const std::string &z,
                       bool operandsExact = false) {
  switch (rec.op) {
  case OpKind::Fill: {
    // fastRecord's constant: the double rounded to the record's dtype
    // through float (f32: one rounding; bf16/f16: round-to-odd to float,
    // then to the dtype, as fromDouble does).
    double c = rec.constant;
    if (rec.dtype == DType::kBool)
      return c != 0.0 ? "1.0f" : "0.0f";
    float f = static_cast<float>(c);
    if (rec.dtype != DType::kF32 && static_cast<double>(f) != c &&
        c == c) {
      // Round to odd: keep the truncation toward zero and set the last
      // bit when inexact (Tensor.cpp's roundToOddFloat).
      float toward = static_cast<float>(c);
      if ((c > 0 && static_cast<double>(toward) > c) ||
          (c < 0 && static_cast<double>(toward) < c))
        toward = std::nextafter(toward, 0.0f);
      uint32_t bits;
      std::memcpy(&bits, &toward, sizeof(bits));
      bits |= 1u;
      std::memcpy(&f, &bits, sizeof(f));
    }
    return roundTo(rec.dtype, floatLiteral(f));
  }
  case OpKind::Identity:
    return x;
  case OpKind::Cast:
    return operandsExact ? x : roundTo(rec.dtype, x);
  case OpKind::Where:
    return "(" + x + " != 0.0f ? " + y + " : " + z + ")";
  case OpKind::Not:
    return "(" + x + " == 0.0f ? 1.0f : 0.0f)";
  case OpKind::And:
    return "((" + x + " != 0.0f && " + y + " != 0.0f) ? 1.0f : 0.0f)";
  case OpKind::Or:
    return "((" + x + " != 0.0f || " + y + " != 0.0f) ? 1.0f : 0.0f)";
  case OpKind::Xor:
    return "(((" + x + " != 0.0f) != (" + y + " != 0.0f)) ? 1.0f : 0.0f)";
  case OpKind::Equal:
    return "(" + x + " == " + y + " ? 1.0f : 0.0f)";
  case OpKind::Less:
    return "(" + x + " < " + y + " ? 1.0f : 0.0f)";
  case OpKind::LessEqual:
    return "(" + x + " <= " + y + " ? 1.0f : 0.0f)";
  case OpKind::Greater:
    return "(" + x + " > " + y + " ? 1.0f : 0.0f)";
  case OpKind::GreaterEqual:
    return "(" + x + " >= " + y + " ? 1.0f : 0.0f)";
  default:
    break;
  }
  std::string v;
  switch (rec.op) {
  case OpKind::Neg:
    v = "(-" + x + ")";
    break;
  case OpKind::Abs:
    v = "fabsf(" + x + ")";
    break;
  case OpKind::Exp:
    v = "expf(" + x + ")";
    break;
  case OpKind::Log:
    v = "logf(" + x + ")";
    break;
  case OpKind::Sqrt:
    v = "sqrtf(" + x + ")";
    break;
  case OpKind::Rsqrt:
    v = "(1.0f / sqrtf(" + x + "))";
    break;
  case OpKind::Reciprocal:
    v = "(1.0f / " + x + ")";
    break;
  case OpKind::Tanh:
    v = "tanhf(" + x + ")";
    break;
  case OpKind::Sigmoid:
    v = "(1.0f / (1.0f + expf(-" + x + ")))";
    break;
  case OpKind::Relu:
    v = "(" + x + " < 0.0f ? 0.0f : " + x + ")";
    break;
  case OpKind::Erf:
    v = "erff(" + x + ")";
    break;
  case OpKind::Sin:
    v = "sinf(" + x + ")";
    break;
  case OpKind::Cos:
    v = "cosf(" + x + ")";
    break;
  case OpKind::Gelu:
    v = (rec.flag == 1 ? "gelu_tanh(" : "gelu_erf(") + x + ")";
    break;
  case OpKind::Add:
    v = "(" + x + " + " + y + ")";
    break;
  case OpKind::Sub:
    v = "(" + x + " - " + y + ")";
    break;
  case OpKind::Mul:
    v = "(" + x + " * " + y + ")";
    break;
  case OpKind::Div:
    v = "(" + x + " / " + y + ")";
    break;
  case OpKind::Pow:
    v = "powf(" + x + ", " + y + ")";
    break;
  case OpKind::Max:
    v = "fmaxnan(" + x + ", " + y + ")";
    break;
  case OpKind::Min:
    v = "fminnan(" + x + ", " + y + ")";
    break;
  default:
    v = x; // not reached: classifyFastPath admits only the ops above
    break;
  }
  if (operandsExact && preservesValues(rec.op))
    return v;
  return roundTo(rec.dtype, v);
}

/// Whether every operand of record `r` is exact in its dtype (a bf16 or
/// f16 record only).
bool operandsExactFor(const FusedKernelProgram &p, int r,
                      const std::vector<uint8_t> &exact) {
  const FusedKernelRecord &rec = p.records[r];
  const uint8_t bit = exactBitFor(rec.dtype);
  if (bit == 0 || rec.numOperands == 0)
    return false;
  for (int o = 0; o < rec.numOperands; ++o)
    if (!(exact[rec.operands[o]] & bit))
      return false;
  return true;
}

int dtypeBytes(DType t) {
  return t == DType::kF32 ? 4 : t == DType::kBool ? 1 : 2;
}

/// Input k's element offset (i / div) % mod at index expression `i`, the
/// constants written in as `index` literals (divisions by constants).
std::string affineAt(const FusedKernelProgram &p, int k, const char *index,
                     const std::string &i) {
  const int64_t div = p.inDiv[k], mod = p.inMod[k];
  std::string j = div == 1 ? i
                           : "(" + i + " / (" + std::string(index) + ")" +
                                 std::to_string(div) + ")";
  return mod == 1 ? "0"
         : mod == 0
             ? j
             : "(" + j + " % (" + std::string(index) + ")" +
                   std::to_string(mod) + ")";
}

/// The strided walk of input k at index expression `i` into `off` (`f`
/// is scratch): the row-major coordinates of i over outDims, each times
/// the input's stride.
void emitWalk(std::ostream &os, const FusedKernelProgram &p, int k,
              const char *index, const std::string &i, const std::string &off,
              const std::string &f) {
  os << "    " << index << " " << off << " = 0, " << f << " = " << i << ";\n";
  for (int d = p.outDims.rank - 1; d >= 0; --d) {
    int64_t size = p.outDims.d[d], stride = p.inStrides[k].d[d];
    if (size == 1)
      continue;
    os << "    " << off << " += (" << f << " % " << size << ") * " << stride
       << "; " << f << " /= " << size << ";\n";
  }
}

/// The scalar kernel: one element a thread.
void emitScalarKernel(std::ostream &os, const FusedKernelProgram &p,
                      const char *index, bool small) {
  os << "extern \"C\" __global__ void colossal_fused(";
  for (int k = 0; k < p.numInputs; ++k)
    os << "const void *in" << k << ", ";
  os << "void *out) {\n";
  os << "  const " << index << " n = " << p.count << (small ? "u" : "ll")
     << ";\n";
  os << "  for (" << index << " i = (" << index
     << ")blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (" << index
     << ")blockDim.x * gridDim.x) {\n";
  // Inputs: registers r0 .. r(numInputs - 1).
  for (int k = 0; k < p.numInputs; ++k) {
    std::string at;
    if (p.inAffine[k]) {
      at = affineAt(p, k, index, "i");
    } else {
      emitWalk(os, p, k, index, "i", "off" + std::to_string(k),
               "f" + std::to_string(k));
      at = "off" + std::to_string(k);
    }
    os << "    float r" << k << " = " << loadExpr(p.inTypes[k], k, at)
       << ";\n";
  }
  const std::vector<uint8_t> exact = valueExactness(p);
  for (int r = 0; r < p.numRecords; ++r) {
    const FusedKernelRecord &rec = p.records[r];
    auto reg = [&](int o) { return "r" + std::to_string(rec.operands[o]); };
    std::string x = rec.numOperands > 0 ? reg(0) : "0.0f";
    std::string y = rec.numOperands > 1 ? reg(1) : "0.0f";
    std::string z = rec.numOperands > 2 ? reg(2) : "0.0f";
    os << "    float r" << p.numInputs + r << " = "
       << recordExpr(rec, x, y, z, operandsExactFor(p, r, exact)) << ";\n";
  }
  const FusedKernelRecord &result = p.records[p.numRecords - 1];
  const int last = p.numInputs + p.numRecords - 1;
  os << "    "
     << storeStmt(result.dtype, "r" + std::to_string(last),
                  (exact[last] & exactBitFor(result.dtype)) != 0)
     << "\n  }\n}\n";
}

/// How V consecutive elements of one type are moved: in `count` accesses
/// of `bytes` (4, 8 or 16) bytes, `elems` elements each, as `type`.
struct Chunks {
  int bytes, count, elems;
  const char *type;
};

Chunks chunksFor(DType t, int width) {
  const int total = width * dtypeBytes(t);
  const int bytes = total < 16 ? total : 16;
  return {bytes, total / bytes, bytes / dtypeBytes(t),
          bytes == 16 ? "uint4" : bytes == 8 ? "uint2" : "u32"};
}

/// The 32-bit word `w` of the chunks named `var`_0, `var`_1, ...
std::string chunkWord(const std::string &var, const Chunks &c, int w) {
  const int words = c.bytes / 4;
  std::string name = var + "_" + std::to_string(w / words);
  if (words == 1)
    return name;
  return name + "." + "xyzw"[w % words];
}

const char *elemPointee(DType t) {
  return t == DType::kF32 ? "float" : t == DType::kBool ? "u8" : "u16";
}

/// The vector kernel: V elements a thread (fusedVectorPlan says how each
/// input is read). The per-element float code is the scalar kernel's,
/// once per lane, so every element gets the same operations and
/// roundings; only the addressing differs.
void emitVectorKernel(std::ostream &os, const FusedKernelProgram &p,
                      const FusedVectorPlan &plan, const char *index,
                      bool small) {
  const int v = plan.width;
  const std::string lit = small ? "u" : "ll";
  auto lane = [&](int l) {
    return l == 0 ? std::string("i0")
                  : "(i0 + " + std::to_string(l) + lit + ")";
  };
  // Values the same in every lane (uniform inputs, records of uniform
  // operands, fills) live in one register r<v>; the others in r<v>_<lane>.
  std::vector<bool> uniform(p.numInputs + p.numRecords, false);
  auto reg = [&](int value, int l) {
    return uniform[value] ? "r" + std::to_string(value)
                          : "r" + std::to_string(value) + "_" +
                                std::to_string(l);
  };
  os << "extern \"C\" __global__ void colossal_fused_vec(";
  for (int k = 0; k < p.numInputs; ++k)
    os << "const void *in" << k << ", ";
  os << "void *out) {\n";
  os << "  const " << index << " packs = " << p.count / v << lit << ";\n";
  os << "  for (" << index << " q = (" << index
     << ")blockIdx.x * blockDim.x + threadIdx.x; q < packs; q += (" << index
     << ")blockDim.x * gridDim.x) {\n";
  os << "    const " << index << " i0 = q * " << v << lit << ";\n";
  for (int k = 0; k < p.numInputs; ++k) {
    const DType t = p.inTypes[k];
    const std::string ks = std::to_string(k);
    switch (plan.mode[k]) {
    case FusedVectorPlan::kUniform:
      uniform[k] = true;
      if (p.inAffine[k]) {
        os << "    float r" << k << " = "
           << loadExpr(t, k, affineAt(p, k, index, "i0")) << ";\n";
      } else {
        emitWalk(os, p, k, index, "i0", "off" + ks, "f" + ks);
        os << "    float r" << k << " = " << loadExpr(t, k, "off" + ks)
           << ";\n";
      }
      break;
    case FusedVectorPlan::kStep: {
      // Only the innermost coordinate moves across the lanes.
      emitWalk(os, p, k, index, "i0", "off" + ks, "f" + ks);
      int64_t stride = 0;
      for (int d = p.outDims.rank - 1; d >= 0; --d)
        if (p.outDims.d[d] != 1) {
          stride = p.inStrides[k].d[d];
          break;
        }
      for (int l = 0; l < v; ++l)
        os << "    float " << reg(k, l) << " = "
           << loadExpr(t, k,
                       l == 0 ? "off" + ks
                              : "(off" + ks + " + " +
                                    std::to_string(l * stride) + ")")
           << ";\n";
      break;
    }
    case FusedVectorPlan::kLanes:
      for (int l = 0; l < v; ++l) {
        std::string at;
        if (p.inAffine[k]) {
          at = affineAt(p, k, index, lane(l));
        } else {
          std::string sfx = ks + "_" + std::to_string(l);
          emitWalk(os, p, k, index, lane(l), "off" + sfx, "f" + sfx);
          at = "off" + sfx;
        }
        os << "    float " << reg(k, l) << " = " << loadExpr(t, k, at)
           << ";\n";
      }
      break;
    case FusedVectorPlan::kVector: {
      // V elements at consecutive addresses from at = i0 (or i0 % mod, a
      // multiple of V), in aligned 4-, 8- or 16-byte accesses.
      const Chunks c = chunksFor(t, v);
      const std::string at = affineAt(p, k, index, "i0");
      for (int n = 0; n < c.count; ++n) {
        os << "    const " << c.type << " w" << k << "_" << n << " = *(const "
           << c.type << " *)((const " << elemPointee(t) << " *)in" << k
           << " + " << at;
        if (n > 0)
          os << " + " << n * c.elems;
        os << ");\n";
      }
      const int bytes = dtypeBytes(t);
      for (int l = 0; l < v; ++l) {
        const std::string w = chunkWord("w" + ks, c, l * bytes / 4);
        const int shift = 8 * (l * bytes % 4);
        const std::string bits =
            shift == 0 ? w : "(" + w + " >> " + std::to_string(shift) + ")";
        std::string value;
        switch (t) {
        case DType::kF32:
          value = "__uint_as_float(" + w + ")";
          break;
        case DType::kBF16:
          value = "bf2f((u16)" + bits + ")";
          break;
        case DType::kF16:
          value = "h2f((u16)" + bits + ")";
          break;
        default: // bool
          value = "((" + bits + " & 0xffu) != 0u ? 1.0f : 0.0f)";
          break;
        }
        os << "    float " << reg(k, l) << " = " << value << ";\n";
      }
      break;
    }
    }
  }
  const std::vector<uint8_t> exact = valueExactness(p);
  for (int r = 0; r < p.numRecords; ++r) {
    const FusedKernelRecord &rec = p.records[r];
    const int self = p.numInputs + r;
    bool same = true;
    for (int o = 0; o < rec.numOperands; ++o)
      same = same && uniform[rec.operands[o]];
    uniform[self] = same;
    for (int l = 0; l < (same ? 1 : v); ++l) {
      auto operand = [&](int o) {
        return rec.numOperands > o ? reg(rec.operands[o], l)
                                   : std::string("0.0f");
      };
      os << "    float " << reg(self, l) << " = "
         << recordExpr(rec, operand(0), operand(1), operand(2),
                       operandsExactFor(p, r, exact))
         << ";\n";
    }
  }
  // The store: each lane's bits into its place in the words, then aligned
  // 4-, 8- or 16-byte stores.
  const FusedKernelRecord &result = p.records[p.numRecords - 1];
  const int value = p.numInputs + p.numRecords - 1;
  const DType t = result.dtype;
  const Chunks c = chunksFor(t, v);
  const int bytes = dtypeBytes(t);
  for (int n = 0; n < c.count; ++n)
    os << "    " << c.type << " o_" << n << ";\n";
  for (int w = 0; w < c.count * c.bytes / 4; ++w) {
    os << "    " << chunkWord("o", c, w) << " = ";
    for (int l = w * 4 / bytes; l < (w + 1) * 4 / bytes && l < v; ++l) {
      const std::string r = reg(value, l);
      std::string bits;
      switch (t) {
      case DType::kF32:
        bits = "__float_as_uint(" + r + ")";
        break;
      case DType::kBF16:
        bits = std::string((exact[value] & kExactBf16) ? "(u32)f2bfx("
                                                       : "(u32)f2bf(") +
               r + ")";
        break;
      case DType::kF16:
        bits = "(u32)f2h(" + r + ")";
        break;
      default: // bool
        bits = "(" + r + " != 0.0f ? 1u : 0u)";
        break;
      }
      const int shift = 8 * (l * bytes % 4);
      if (l != w * 4 / bytes)
        os << " | ";
      os << (shift == 0 ? bits
                        : "(" + bits + " << " + std::to_string(shift) + ")");
    }
    os << ";\n";
  }
  for (int n = 0; n < c.count; ++n) {
    os << "    *(" << c.type << " *)((" << elemPointee(t) << " *)out + i0";
    if (n > 0)
      os << " + " << n * c.elems;
    os << ") = o_" << n << ";\n";
  }
  os << "  }\n}\n";
}

} // namespace

FusedVectorPlan fusedVectorPlan(const FusedKernelProgram &p) {
  FusedVectorPlan plan;
  if (!p.fast || p.count <= 0 || p.numRecords <= 0)
    return plan;
  // V from the narrowest full-size operand (the result, and inputs laid
  // out as it is): 16 bytes of a 2-byte (or 8 of a bool) operand, 4 f32
  // when every full-size operand is an f32.
  const DType outType = p.records[p.numRecords - 1].dtype;
  int narrowest = dtypeBytes(outType);
  for (int k = 0; k < p.numInputs; ++k)
    if (p.inAffine[k] && p.inDiv[k] == 1 && p.inMod[k] == 0)
      narrowest = std::min(narrowest, dtypeBytes(p.inTypes[k]));
  const int v = narrowest == 4 ? 4 : 8;
  // A tail keeps the program on the scalar kernel: the vector kernel's
  // packs cover every element.
  if (p.count % v != 0)
    return plan;
  plan.width = v;
  plan.outAlignBytes = std::min(16, v * dtypeBytes(outType));
  // The innermost dim that is not 1: across a pack (i0 a multiple of V)
  // only its coordinate moves when its size is a multiple of V.
  int64_t inner = 1;
  for (int d = p.outDims.rank - 1; d >= 0; --d)
    if (p.outDims.d[d] != 1) {
      inner = p.outDims.d[d];
      break;
    }
  for (int k = 0; k < p.numInputs; ++k) {
    const int64_t div = p.inDiv[k], mod = p.inMod[k];
    FusedVectorPlan::Mode mode = FusedVectorPlan::kLanes;
    if (p.inAffine[k]) {
      // (i / div) % mod is one offset over [i0, i0 + V) when div is a
      // multiple of V, and V consecutive ones from a multiple of V when
      // div is 1 and mod a multiple of V (or 0).
      if (mod == 1 || div % v == 0)
        mode = FusedVectorPlan::kUniform;
      else if (div == 1 && mod % v == 0)
        mode = FusedVectorPlan::kVector;
    } else if (inner % v == 0) {
      int64_t stride = 0;
      for (int d = p.outDims.rank - 1; d >= 0; --d)
        if (p.outDims.d[d] != 1) {
          stride = p.inStrides[k].d[d];
          break;
        }
      mode = stride == 0 ? FusedVectorPlan::kUniform : FusedVectorPlan::kStep;
    }
    plan.mode[k] = mode;
    plan.inAlignBytes[k] =
        mode == FusedVectorPlan::kVector
            ? std::min(16, v * dtypeBytes(p.inTypes[k]))
            : 0;
  }
  return plan;
}

std::string fusedKernelSource(const FusedKernelProgram &p) {
  const bool small = p.count < (int64_t{1} << 31);
  const char *index = small ? "u32" : "long long";
  std::ostringstream os;
  os << kPrelude;
  emitScalarKernel(os, p, index, small);
  FusedVectorPlan plan = fusedVectorPlan(p);
  if (plan.width > 0)
    emitVectorKernel(os, p, plan, index, small);
  return os.str();
}

// ---- NVRTC -----------------------------------------------------------------

struct Nvrtc::Api {
  using Program = void *;
  int (*create)(Program *, const char *, const char *, int,
                const char *const *, const char *const *) = nullptr;
  int (*compile)(Program, int, const char *const *) = nullptr;
  int (*ptxSize)(Program, size_t *) = nullptr;
  int (*ptx)(Program, char *) = nullptr;
  int (*logSize)(Program, size_t *) = nullptr;
  int (*log)(Program, char *) = nullptr;
  int (*destroy)(Program *) = nullptr;
  const char *(*errorString)(int) = nullptr;
};

Nvrtc::Nvrtc(std::unique_ptr<Api> api) : api_(std::move(api)) {}

const Nvrtc *Nvrtc::get(std::string &why) {
  static std::string reason;
  static const Nvrtc *instance = [] () -> const Nvrtc * {
    std::vector<std::string> names;
    if (const char *env = std::getenv("COLOSSAL_NVRTC"); env && *env)
      names.push_back(env);
    names.push_back("libnvrtc.so.13");
    names.push_back("libnvrtc.so");
    // The toolkit's own copy, where the loader's path does not reach it
    // (the GPU machines here: /usr/local/cuda is installed, not
    // registered with ldconfig).
    names.push_back("/usr/local/cuda/lib64/libnvrtc.so.13");
    names.push_back("/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13");
    void *lib = nullptr;
    std::string firstError;
    for (const std::string &name : names) {
      if ((lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)))
        break;
      const char *e = dlerror(); // read once: it clears the error
      if (firstError.empty() && e)
        firstError = e;
    }
    if (!lib) {
      reason = "cannot load NVRTC (libnvrtc.so.13; set COLOSSAL_NVRTC to "
               "its path): " +
               (firstError.empty() ? std::string("not found") : firstError);
      return nullptr;
    }
    auto api = std::make_unique<Api>();
    bool ok = true;
    auto sym = [&](auto &fn, const char *name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      if (!fn) {
        ok = false;
        reason = std::string("NVRTC has no ") + name;
      }
    };
    sym(api->create, "nvrtcCreateProgram");
    sym(api->compile, "nvrtcCompileProgram");
    sym(api->ptxSize, "nvrtcGetPTXSize");
    sym(api->ptx, "nvrtcGetPTX");
    sym(api->logSize, "nvrtcGetProgramLogSize");
    sym(api->log, "nvrtcGetProgramLog");
    sym(api->destroy, "nvrtcDestroyProgram");
    sym(api->errorString, "nvrtcGetErrorString");
    if (!ok)
      return nullptr;
    return new Nvrtc(std::move(api));
  }();
  why = reason;
  return instance;
}

Status Nvrtc::compileToPtx(const std::string &source, const std::string &arch,
                           std::string &ptx) const {
  Api::Program prog = nullptr;
  int rc = api_->create(&prog, source.c_str(), "colossal_fused.cu", 0, nullptr,
                        nullptr);
  if (rc != 0)
    return COLOSSAL_ERROR(kInternal, std::string("nvrtcCreateProgram: ") +
                                         api_->errorString(rc));
  std::string archFlag = "--gpu-architecture=" + arch;
  const char *options[] = {archFlag.c_str(), "--fmad=false",
                           "--prec-div=true", "--prec-sqrt=true",
                           "--ftz=false"};
  rc = api_->compile(prog, 5, options);
  std::string log;
  size_t logSize = 0;
  if (api_->logSize(prog, &logSize) == 0 && logSize > 1) {
    log.resize(logSize);
    api_->log(prog, log.data());
    log.resize(logSize - 1);
  }
  if (rc != 0) {
    api_->destroy(&prog);
    return COLOSSAL_ERROR(kInternal, std::string("NVRTC: ") +
                                         api_->errorString(rc) + ":\n" + log +
                                         "\nsource:\n" + source);
  }
  size_t size = 0;
  api_->ptxSize(prog, &size);
  ptx.assign(size, '\0');
  api_->ptx(prog, ptx.data());
  api_->destroy(&prog);
  return Status::ok();
}

// ---- The cache -------------------------------------------------------------

/// One compiled source: its scalar kernel and, when the program has a
/// vector plan, its vector kernel with that plan (the same for every
/// program of this source: the source spells the plan out).
struct FusedJit::Kernel {
  cudaLibrary_t library = nullptr;
  cudaKernel_t scalar = nullptr;
  cudaKernel_t vector = nullptr;
  FusedVectorPlan plan;
  int smCount = 0;
};

FusedJit::FusedJit() {
  nvrtc_ = Nvrtc::get(why_);
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                             device) == cudaSuccess &&
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                             device) == cudaSuccess)
    arch_ = "compute_" + std::to_string(major * 10 + minor);
  else
    arch_ = "compute_90";
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&smCount_, cudaDevAttrMultiProcessorCount,
                             device) != cudaSuccess)
    smCount_ = 0;
}

FusedJit::~FusedJit() {
  for (auto &[source, k] : kernels_)
    if (k->library)
      cudaLibraryUnload(k->library);
}

Status FusedJit::prepare(FusedKernelProgram &program) {
  program.jit = nullptr;
  if (!nvrtc_ || !program.fast)
    return Status::ok();
  std::string source = fusedKernelSource(program);
  auto it = kernels_.find(source);
  if (it == kernels_.end()) {
    auto start = std::chrono::steady_clock::now();
    std::string ptx;
    COLOSSAL_RETURN_IF_ERROR(nvrtc_->compileToPtx(source, arch_, ptx));
    auto k = std::make_unique<Kernel>();
    cudaError_t err = cudaLibraryLoadData(&k->library, ptx.c_str(), nullptr,
                                          nullptr, 0, nullptr, nullptr, 0);
    if (err == cudaSuccess)
      err = cudaLibraryGetKernel(&k->scalar, k->library, "colossal_fused");
    k->plan = fusedVectorPlan(program);
    k->smCount = smCount_;
    if (err == cudaSuccess && k->plan.width > 0)
      err = cudaLibraryGetKernel(&k->vector, k->library, "colossal_fused_vec");
    if (err != cudaSuccess)
      return COLOSSAL_ERROR(kInternal,
                            std::string("loading a compiled fused kernel: ") +
                                cudaGetErrorString(err));
    compileSeconds_ += std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - start)
                           .count();
    it = kernels_.emplace(std::move(source), std::move(k)).first;
  }
  program.jit = it->second.get();
  return Status::ok();
}

cudaError_t FusedJit::launch(cudaStream_t stream,
                             const FusedKernelProgram &program,
                             const void *const *inputs, void *out) {
  const Kernel &k = *static_cast<const Kernel *>(program.jit);
  void *args[kMaxFusedInputs + 1];
  const void *ins[kMaxFusedInputs];
  auto aligned = [](const void *p, int bytes) {
    return bytes == 0 || reinterpret_cast<uintptr_t>(p) % bytes == 0;
  };
  bool vector = k.vector && aligned(out, k.plan.outAlignBytes);
  for (int i = 0; i < program.numInputs; ++i) {
    ins[i] = inputs[i];
    args[i] = &ins[i];
    vector = vector && aligned(inputs[i], k.plan.inAlignBytes[i]);
  }
  args[program.numInputs] = &out;
  constexpr int kBlock = 256;
  if (vector) {
    // Grid-stride over packs of V: enough blocks to fill the device
    // (32 per SM: several times what an SM holds at once), so that a big
    // tensor is walked by resident threads rather than by waves of
    // short-lived blocks.
    int64_t packs = program.count / k.plan.width;
    int64_t blocks = (packs + kBlock - 1) / kBlock;
    int64_t cap = k.smCount > 0 ? int64_t{32} * k.smCount : int64_t{1} << 20;
    if (blocks > cap)
      blocks = cap;
    return cudaLaunchKernel(reinterpret_cast<const void *>(k.vector),
                            dim3(static_cast<unsigned>(blocks)), dim3(kBlock),
                            args, 0, stream);
  }
  int64_t blocks = (program.count + kBlock - 1) / kBlock;
  if (blocks > (int64_t{1} << 20))
    blocks = int64_t{1} << 20;
  return cudaLaunchKernel(reinterpret_cast<const void *>(k.scalar),
                          dim3(static_cast<unsigned>(blocks)), dim3(kBlock),
                          args, 0, stream);
}

} // namespace colossal::runtime::cuda
