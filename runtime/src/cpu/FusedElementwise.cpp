//===- FusedElementwise.cpp - CPU kernel of fused_elementwise -------------===//
//
// The reference for a fused chain is the unfused chain, bit for bit. So each
// register is a one-element tensor of its own dtype: an op reads its
// operands with loadAsDouble/loadAsInt64 and writes its register with
// storeFromDouble/storeFromInt64, exactly what the unfused kernel does with
// whole tensors (runUnary, runBinary, runCast, runWhere, runFill in
// Kernels.cpp), and through the same per-element functions
// (ElementwiseOps.h). Nothing is ever kept at a higher precision than the
// dtype the unfused op would have stored.
//
// Cost: per element, one switch per record and a dtype switch per access;
// no temporary tensors. Fill registers are constant and computed once.
//
//===----------------------------------------------------------------------===//
#include "FusedElementwise.h"

#include "ElementwiseOps.h"

#include "colossal/runtime/FusedProgram.h"

#include <array>
#include <cstring>

namespace colossal::runtime {

namespace {

/// Raw bytes of one register (any dtype fits in 8).
using Slot = std::array<uint8_t, 8>;

/// Evaluates `record` into register `self`. Returns false on an integer
/// division by zero (or zero to a negative power).
bool evaluate(const FusedRecord &record, const std::vector<TensorRef> &regs,
              size_t self) {
  const TensorRef &dst = regs[self];
  auto reg = [&](int k) -> const TensorRef & {
    return regs[record.operands[k]];
  };
  switch (record.op) {
  case OpKind::Fill: // computed once before the loop
    return true;
  case OpKind::Identity:
    std::memcpy(dst.data, reg(0).data, dtypeSizeBytes(record.dtype));
    return true;
  case OpKind::Cast: // as runCast: floats via double, integers via int64
    if (isFloatDType(reg(0).type.dtype))
      storeFromDouble(dst, 0, loadAsDouble(reg(0), 0));
    else
      storeFromInt64(dst, 0, loadAsInt64(reg(0), 0));
    return true;
  case OpKind::Where: {
    const TensorRef &pick = loadAsInt64(reg(0), 0) ? reg(1) : reg(2);
    std::memcpy(dst.data, pick.data, dtypeSizeBytes(record.dtype));
    return true;
  }
  default:
    break;
  }
  const TensorRef &a = reg(0);
  if (record.numOperands == 1) { // as runUnary
    if (isFloatDType(a.type.dtype))
      storeFromDouble(dst, 0,
                      unaryFloat(record.op,
                                 record.op == OpKind::Gelu &&
                                     record.immediate == 1,
                                 loadAsDouble(a, 0)));
    else
      storeFromInt64(dst, 0, unaryInt(record.op, loadAsInt64(a, 0)));
    return true;
  }
  const TensorRef &b = reg(1); // as runBinary
  if (isFloatDType(a.type.dtype)) {
    double x = loadAsDouble(a, 0), y = loadAsDouble(b, 0);
    if (isComparison(record.op))
      storeFromInt64(dst, 0, compare(record.op, x, y));
    else
      storeFromDouble(dst, 0, binaryFloat(record.op, x, y));
    return true;
  }
  int64_t x = loadAsInt64(a, 0), y = loadAsInt64(b, 0);
  bool divByZero = false;
  int64_t result = isComparison(record.op)
                       ? compare(record.op, x, y)
                       : binaryInt(record.op, x, y, divByZero);
  storeFromInt64(dst, 0, result);
  return !divByZero;
}

} // namespace

Status runFusedElementwiseCpu(const Attrs &attrs,
                              const std::vector<TensorRef> &inputs,
                              const TensorRef &out) {
  std::vector<FusedRecord> records;
  COLOSSAL_RETURN_IF_ERROR(decodeFusedProgram(attrs, inputs.size(), records));
  const size_t numInputs = inputs.size();
  const size_t numRegs = numInputs + records.size();
  std::vector<Slot> slots(numRegs);
  std::vector<TensorRef> regs(numRegs);
  for (size_t k = 0; k < numInputs; ++k)
    regs[k] = TensorRef{TensorType{inputs[k].type.dtype, {}}, slots[k].data()};
  const std::vector<double> &constants = attrs.floatList("constants");
  for (size_t r = 0; r < records.size(); ++r) {
    TensorRef &reg = regs[numInputs + r];
    reg = TensorRef{TensorType{records[r].dtype, {}},
                    slots[numInputs + r].data()};
    if (records[r].op == OpKind::Fill) // as runFill
      storeFromDouble(reg, 0, constants[records[r].immediate]);
  }

  // Broadcast strides of each input over the output's dims (0 where the
  // input has size 1 or lacks the dim), walked incrementally.
  const std::vector<int64_t> &dims = out.type.dims;
  const size_t rank = dims.size();
  std::vector<std::vector<int64_t>> strides(numInputs,
                                            std::vector<int64_t>(rank, 0));
  for (size_t k = 0; k < numInputs; ++k) {
    const std::vector<int64_t> &in = inputs[k].type.dims;
    int64_t stride = 1;
    for (size_t d = in.size(); d-- > 0;) {
      if (in[d] != 1)
        strides[k][rank - in.size() + d] = stride;
      stride *= in[d];
    }
  }
  std::vector<size_t> inBytes(numInputs);
  for (size_t k = 0; k < numInputs; ++k)
    inBytes[k] = dtypeSizeBytes(inputs[k].type.dtype);
  const size_t outBytes = dtypeSizeBytes(out.type.dtype);
  const uint8_t *result = slots[numRegs - 1].data();

  std::vector<int64_t> index(rank, 0), offsets(numInputs, 0);
  const int64_t count = out.type.numElements();
  for (int64_t i = 0; i < count; ++i) {
    for (size_t k = 0; k < numInputs; ++k)
      std::memcpy(slots[k].data(),
                  static_cast<const uint8_t *>(inputs[k].data) +
                      offsets[k] * inBytes[k],
                  inBytes[k]);
    for (size_t r = 0; r < records.size(); ++r)
      if (!evaluate(records[r], regs, numInputs + r))
        return COLOSSAL_ERROR(
            kInvalidArgument,
            "fused_elementwise: record " + std::to_string(r) + " (" +
                std::string(opInfo(records[r].op).name) + "): " +
                (records[r].op == OpKind::Pow
                     ? "integer zero to a negative power"
                     : "integer division by zero"));
    std::memcpy(static_cast<uint8_t *>(out.data) + i * outBytes, result,
                outBytes);
    for (size_t d = rank; d-- > 0;) {
      for (size_t k = 0; k < numInputs; ++k)
        offsets[k] += strides[k][d];
      if (++index[d] < dims[d])
        break;
      for (size_t k = 0; k < numInputs; ++k)
        offsets[k] -= strides[k][d] * dims[d];
      index[d] = 0;
    }
  }
  return Status::ok();
}

} // namespace colossal::runtime
