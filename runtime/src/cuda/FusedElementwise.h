//===- FusedElementwise.h - fused_elementwise on the GPU ----------*- C++ -*-===//
//
// Internal to the CUDA backend. A fused_elementwise instruction is decoded
// once, in preparePlan, into a FusedKernelProgram: a plain struct that goes
// to the kernel as its parameter (constant parameter memory, no copy of our
// own per step). Three kernels run it (launchFusedElementwise below): the
// f64 reference interpreter, the f32 interpreter and the packed f32 kernel,
// and with COLOSSAL_CUDA_FUSED=jit a kernel generated for the program
// (FusedJit.h).
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CUDA_FUSEDELEMENTWISE_H
#define COLOSSAL_RUNTIME_CUDA_FUSEDELEMENTWISE_H

#include "CudaKernels.h"

#include "colossal/runtime/FusedProgram.h"
#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <memory>
#include <vector>

namespace colossal::runtime::cuda {

inline constexpr int kMaxFusedRecords =
    static_cast<int>(Attrs::kMaxAttrListLength) / 3;

/// One record, as FusedRecord but small and with its constant resolved.
struct FusedKernelRecord {
  OpKind op;
  DType dtype;
  int8_t numOperands;
  int8_t operands[3];
  int8_t flag;     ///< gelu: 1 for the tanh form
  /// The f32 kernel's register slots (assignFusedSlots): the result's slot
  /// and the operands', and the operands' dtypes.
  int8_t slot;
  int8_t slotOperands[3];
  DType operandTypes[3];
  double constant; ///< fill: the value (rounded to dtype in the kernel)
};

/// Everything the kernel needs, by value (about 1.3 KiB, under the 4 KiB
/// kernel parameter limit).
struct FusedKernelProgram {
  int numInputs = 0;
  int numRecords = 0;
  int64_t count = 0; ///< result elements
  DType inTypes[kMaxFusedInputs] = {};
  Dims outDims;
  Dims inStrides[kMaxFusedInputs]; ///< broadcast strides over outDims
  DType outType = DType::kF32;
  FusedKernelRecord records[kMaxFusedRecords] = {};
  /// Register slots the f32 kernel needs: the inputs hold slots
  /// [0, numInputs), and a record's result reuses a slot whose value is
  /// dead by then (assignFusedSlots).
  int numSlots = 0;
  /// The packed f32 kernel (classifyFastPath): every value is an f32,
  /// bf16 or f16 float or a bool, every record an op it runs, and there
  /// are few enough slots for its shared-memory register file. Input k is
  /// then read at (i / inDiv[k]) % inMod[k] (inMod 0: no modulus, 1: a
  /// scalar) where its strides allow that (inAffine[k]); else through
  /// inStrides.
  bool fast = false;
  /// The program compiled to kernels of its own (a FusedJit::Kernel: the
  /// scalar and vector forms, owned by the backend's FusedJit), or null:
  /// COLOSSAL_CUDA_FUSED=jit.
  const void *jit = nullptr;
  bool inAffine[kMaxFusedInputs] = {};
  int64_t inDiv[kMaxFusedInputs] = {};
  int64_t inMod[kMaxFusedInputs] = {};
};

/// Fills the fast-path fields of a program whose records and slots are set.
void classifyFastPath(FusedKernelProgram &program);

/// Gives every value of `program` (inputs, then records) a register slot,
/// reusing a slot once its value's last reader has read it, lowest free
/// slot first; fills the records' slot fields and numSlots. Linear-scan on
/// a straight-line program, so the slot count is the most values live at
/// once (inputs count as live from the start).
void assignFusedSlots(FusedKernelProgram &program);

/// The input pointers, by value.
struct FusedInputs {
  const void *ptrs[kMaxFusedInputs] = {};
};

/// Decodes `attrs` for inputs of `inTypes` and a result of `outType` (the
/// types inferOutputTypes accepted). Fails on a rank above kMaxDims.
Status buildFusedProgram(const Attrs &attrs,
                         const std::vector<TensorType> &inTypes,
                         const TensorType &outType, FusedKernelProgram &out);

/// Enqueues the kernel on `stream`; `inputs` has program.numInputs device
/// pointers. An integer division by zero is reported through `sink`.
/// kF64 (COLOSSAL_CUDA_FUSED=f64): the reference interpreter above. kF32
/// (the default): a program the packed kernel takes (`fast`) runs there,
/// or as its generated kernel when `jit` is set; any other on the f32
/// interpreter: f32/bf16/f16 registers computed in f32 (f64 registers in
/// f64, integers in int64), each rounded to its dtype as in the kF64
/// kernel, the register file in registers (instantiated for 4, 8, 16 and
/// 32 slots, a slot read and written by an unrolled select).
cudaError_t launchFusedElementwise(cudaStream_t stream, ErrorSink sink,
                                   const FusedKernelProgram &program,
                                   const void *const *inputs, void *out,
                                   Precision precision = Precision::kF64);

/// The decoded programs of one plan, by instruction index (preparePlan
/// fills it; an instruction run without it is decoded on the spot).
class FusedJit;

class FusedPrograms {
public:
  void reset(size_t numInstrs) { programs_.assign(numInstrs, nullptr); }
  /// Compile each prepared program that the packed kernel takes into a
  /// kernel of its own (COLOSSAL_CUDA_FUSED=jit); null: interpret.
  void setJit(FusedJit *jit) { jit_ = jit; }
  Status prepare(size_t instr, const Attrs &attrs,
                 const std::vector<TensorType> &inTypes,
                 const TensorType &outType);
  /// Launches instruction `sink.instr`'s program on `ins` -> `out`.
  Status run(cudaStream_t stream, ErrorSink sink, const Attrs &attrs,
             const std::vector<TensorRef> &ins, const TensorRef &out,
             Precision precision = Precision::kF64) const;

private:
  std::vector<std::shared_ptr<const FusedKernelProgram>> programs_;
  FusedJit *jit_ = nullptr;
};

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_FUSEDELEMENTWISE_H
