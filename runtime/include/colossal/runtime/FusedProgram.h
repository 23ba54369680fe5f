//===- FusedProgram.h - The register program of fused_elementwise -*- C++ -*-===//
//
// fused_elementwise (OpTable.h) carries a straight-line program over
// registers in its `program` attribute. This header decodes it into records,
// once, for the shape rule (inferOutputTypes), the CPU kernel and the CUDA
// backend, and encodes records for the compiler and the tests, so that the
// layout is written down in one place:
//
//   program = record*, record = opcode dtype operand^arity [immediate]
//
// arity is 1 for the unary ops, not, identity, cast and gelu, 2 for the
// binary, logic and comparison ops, 3 for where and 0 for fill. gelu's
// immediate is its approximate flag (0/1); fill's is an index into the
// `constants` list. Registers 0..numInputs-1 are the inputs; record k
// defines register numInputs + k; the result is the last register.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_FUSEDPROGRAM_H
#define COLOSSAL_RUNTIME_FUSEDPROGRAM_H

#include "colossal/runtime/OpTable.h"
#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <cstdint>
#include <vector>

namespace colossal::runtime {

/// Registers a program may name: at most 8 inputs plus one register per
/// 3 program ints (the shortest record).
inline constexpr int kMaxFusedInputs = 8;
inline constexpr int kMaxFusedRegisters =
    kMaxFusedInputs + static_cast<int>(Attrs::kMaxAttrListLength) / 3;

/// One decoded record: register = op(operands...) rounded to dtype.
struct FusedRecord {
  OpKind op = OpKind::Identity;
  DType dtype = DType::kF32;
  int numOperands = 0;
  int operands[3] = {0, 0, 0}; ///< registers, each < this record's own
  int64_t immediate = 0;       ///< gelu: approximate; fill: constant index
};

/// Whether `op` may appear in a program, and its arity (operands) and
/// whether it takes an immediate. False for every other kind.
bool fusedOpShape(OpKind op, int &arity, bool &hasImmediate);

/// Decodes `attrs.list("program")` for `numInputs` inputs and checks its
/// structure: known opcodes, valid dtypes, operands naming earlier
/// registers, immediates in range, at least one record, no ints left over.
/// The message names the record ("fused_elementwise: record 2 (add): ...").
/// Dtype rules are inferOutputTypes' business.
Status decodeFusedProgram(const Attrs &attrs, size_t numInputs,
                          std::vector<FusedRecord> &records);

/// Appends the record's encoding to `program` (the compiler's writer).
void encodeFusedRecord(const FusedRecord &record,
                       std::vector<int64_t> &program);

/// The whole rule: decodes, checks each record's dtype against its op's
/// own rule (inferOutputTypes on scalars of the operands' dtypes), checks
/// that every input broadcasts to `shape`, and gives the result type.
Status inferFusedElementwise(const Attrs &attrs,
                             const std::vector<TensorType> &inputs,
                             TensorType &result);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_FUSEDPROGRAM_H
