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

// ---- The f32 interpreter (opt-in: COLOSSAL_CUDA_FUSED=f32) ---------------
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
  out = p;
  return Status::ok();
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
