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
// --fmad=false), copied here because that file keeps them private.
// TODO(#5): share them through a header with Elementwise.cu.
//
// Known weakness: the register file is indexed dynamically, so it lives in
// local memory (L1-cached); a program specialised at compile time would
// keep it in registers.
//
//===----------------------------------------------------------------------===//

#include "FusedElementwise.h"

#include "CudaCommon.cuh"

#include <string>

namespace colossal::runtime::cuda {

namespace {

// ---- Per-element functions (as Elementwise.cu) ---------------------------

__device__ double fusedUnaryFloat(OpKind kind, bool tanhGelu, double x) {
  switch (kind) {
  case OpKind::Neg:
    return -x;
  case OpKind::Abs:
    return fabs(x);
  case OpKind::Exp:
    return exp(x);
  case OpKind::Log:
    return log(x);
  case OpKind::Sqrt:
    return sqrt(x);
  case OpKind::Rsqrt:
    return 1.0 / sqrt(x);
  case OpKind::Reciprocal:
    return 1.0 / x;
  case OpKind::Tanh:
    return tanh(x);
  case OpKind::Sigmoid:
    return 1.0 / (1.0 + exp(-x));
  case OpKind::Relu:
    return x < 0.0 ? 0.0 : x;
  case OpKind::Erf:
    return erf(x);
  case OpKind::Sin:
    return sin(x);
  case OpKind::Cos:
    return cos(x);
  case OpKind::Gelu:
    if (tanhGelu) {
      const double kPi = 3.14159265358979323846;
      const double kSqrt2OverPi = sqrt(2.0 / kPi);
      return 0.5 * x * (1.0 + tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
    }
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  default:
    return x;
  }
}

__device__ int64_t fusedWrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) -
                              static_cast<uint64_t>(b));
}

__device__ int64_t fusedUnaryInt(OpKind kind, int64_t x) {
  switch (kind) {
  case OpKind::Neg:
    return fusedWrapSub(0, x);
  case OpKind::Abs:
    return x < 0 ? fusedWrapSub(0, x) : x;
  case OpKind::Relu:
    return x < 0 ? 0 : x;
  case OpKind::Not:
    return x == 0 ? 1 : 0;
  default:
    return x;
  }
}

__device__ bool fusedIsComparison(OpKind kind) {
  return kind == OpKind::Equal || kind == OpKind::Less ||
         kind == OpKind::LessEqual || kind == OpKind::Greater ||
         kind == OpKind::GreaterEqual;
}

template <typename T> __device__ bool fusedCompare(OpKind kind, T a, T b) {
  switch (kind) {
  case OpKind::Equal:
    return a == b;
  case OpKind::Less:
    return a < b;
  case OpKind::LessEqual:
    return a <= b;
  case OpKind::Greater:
    return a > b;
  default:
    return a >= b;
  }
}

__device__ double fusedBinaryFloat(OpKind kind, double a, double b) {
  switch (kind) {
  case OpKind::Add:
    return a + b;
  case OpKind::Sub:
    return a - b;
  case OpKind::Mul:
    return a * b;
  case OpKind::Div:
    return a / b;
  case OpKind::Pow:
    return pow(a, b);
  case OpKind::Max:
    return (isnan(a) || a > b) ? a : b;
  case OpKind::Min:
    return (isnan(a) || a < b) ? a : b;
  default:
    return 0.0;
  }
}

__device__ int64_t fusedBinaryInt(OpKind kind, int64_t a, int64_t b,
                                  int32_t &error) {
  uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
  switch (kind) {
  case OpKind::Add:
    return static_cast<int64_t>(ua + ub);
  case OpKind::Sub:
    return static_cast<int64_t>(ua - ub);
  case OpKind::Mul:
    return static_cast<int64_t>(ua * ub);
  case OpKind::Div:
    if (b == 0) {
      error = kErrDivByZero;
      return 0;
    }
    if (b == -1)
      return fusedWrapSub(0, a);
    return a / b;
  case OpKind::Pow: {
    if (b < 0) {
      if (a == 0)
        error = kErrPowZeroNegative;
      if (a == 1)
        return 1;
      if (a == -1)
        return (b & 1) ? -1 : 1;
      return 0;
    }
    uint64_t result = 1, factor = ua;
    for (uint64_t e = ub; e; e >>= 1) {
      if (e & 1)
        result *= factor;
      factor *= factor;
    }
    return static_cast<int64_t>(result);
  }
  case OpKind::Max:
    return a > b ? a : b;
  case OpKind::Min:
    return a < b ? a : b;
  case OpKind::And:
    return (a != 0) && (b != 0);
  case OpKind::Or:
    return (a != 0) || (b != 0);
  case OpKind::Xor:
    return (a != 0) != (b != 0);
  default:
    return 0;
  }
}

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
                                    fusedUnaryFloat(rec.op, rec.flag == 1,
                                                    regs[a].f))
                       : fromInt(rec.dtype, fusedUnaryInt(rec.op, regs[a].i));
        } else {
          const int b = rec.operands[1];
          if (isFloatType(types[a])) {
            double x = regs[a].f, y = asDouble(types[b], regs[b]);
            result = fusedIsComparison(rec.op)
                         ? fromInt(rec.dtype, fusedCompare(rec.op, x, y))
                         : fromDouble(rec.dtype,
                                      fusedBinaryFloat(rec.op, x, y));
          } else {
            int64_t x = regs[a].i, y = asInt(types[b], regs[b]);
            int32_t error = kErrNone;
            int64_t v = fusedIsComparison(rec.op)
                            ? fusedCompare(rec.op, x, y)
                            : fusedBinaryInt(rec.op, x, y, error);
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
  out = p;
  return Status::ok();
}

cudaError_t launchFusedElementwise(cudaStream_t stream, ErrorSink sink,
                                   const FusedKernelProgram &program,
                                   const void *const *inputs, void *out) {
  if (program.count == 0)
    return cudaSuccess;
  FusedInputs ptrs;
  for (int k = 0; k < program.numInputs; ++k)
    ptrs.ptrs[k] = inputs[k];
  fusedElementwiseKernel<<<blocksFor(program.count), kThreads, 0, stream>>>(
      sink, program, ptrs, out);
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
                          const TensorRef &out) const {
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
      launchFusedElementwise(stream, sink, *program, ptrs, out.data);
  if (err != cudaSuccess)
    return COLOSSAL_ERROR(kInternal, std::string("fused_elementwise launch: ") +
                                         cudaGetErrorString(err));
  return Status::ok();
}

} // namespace colossal::runtime::cuda
