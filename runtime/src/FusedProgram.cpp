//===- FusedProgram.cpp - Decode and check fused_elementwise programs -----===//
//
// The plan reader feeds these functions untrusted attributes: after
// inferFusedElementwise accepts a program, every operand names an earlier
// register, every fill names a constant that exists, and every register's
// dtype is what its op would give, so a kernel can index its register file
// and convert values without further checks.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/FusedProgram.h"

#include <cstdint>
#include <string>

namespace colossal::runtime {

namespace {

Status fail(const std::string &message) {
  return COLOSSAL_ERROR(kInvalidArgument, "fused_elementwise: " + message);
}

std::string recordName(size_t index, OpKind op) {
  const OpInfo *info = lookupOp(static_cast<uint32_t>(op));
  return "record " + std::to_string(index) + " (" +
         (info ? std::string(info->name) : "?") + ")";
}

} // namespace

bool fusedOpShape(OpKind op, int &arity, bool &hasImmediate) {
  hasImmediate = op == OpKind::Gelu; // its approximate flag
  if (isFloatUnaryOp(op)) {
    arity = 1;
    return true;
  }
  switch (op) {
  case OpKind::Not:
  case OpKind::Identity:
  case OpKind::Cast:
    arity = 1;
    return true;
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
    arity = 2;
    return true;
  case OpKind::Where:
    arity = 3;
    return true;
  case OpKind::Fill:
    arity = 0;
    hasImmediate = true;
    return true;
  default:
    arity = 0;
    return false;
  }
}

Status decodeFusedProgram(const Attrs &attrs, size_t numInputs,
                          std::vector<FusedRecord> &records) {
  records.clear();
  if (numInputs < 1 || numInputs > static_cast<size_t>(kMaxFusedInputs))
    return fail("expects 1 to " + std::to_string(kMaxFusedInputs) +
                " inputs, got " + std::to_string(numInputs));
  const std::vector<int64_t> &program = attrs.list("program");
  const std::vector<double> &constants = attrs.floatList("constants");
  size_t pos = 0;
  while (pos < program.size()) {
    size_t index = records.size();
    std::string where = "record " + std::to_string(index);
    if (program.size() - pos < 2)
      return fail(where + " is cut short: " +
                  std::to_string(program.size() - pos) +
                  " int left, expected opcode and dtype");
    int64_t rawOp = program[pos], rawDType = program[pos + 1];
    FusedRecord record;
    int arity = 0;
    bool hasImmediate = false;
    const OpInfo *info = rawOp >= 0 && rawOp <= UINT32_MAX
                             ? lookupOp(static_cast<uint32_t>(rawOp))
                             : nullptr;
    if (!info || !fusedOpShape(info->kind, arity, hasImmediate))
      return fail(where + " has opcode " + std::to_string(rawOp) +
                  ", not an elementwise op kind");
    record.op = info->kind;
    where = recordName(index, record.op);
    if (rawDType < 0 || rawDType > UINT32_MAX ||
        !isValidDType(static_cast<uint32_t>(rawDType)))
      return fail(where + " has invalid dtype value " +
                  std::to_string(rawDType));
    record.dtype = static_cast<DType>(rawDType);
    size_t need = 2 + arity + (hasImmediate ? 1 : 0);
    if (program.size() - pos < need)
      return fail(where + " is cut short: needs " + std::to_string(need) +
                  " ints, " + std::to_string(program.size() - pos) + " left");
    size_t self = numInputs + index;
    record.numOperands = arity;
    for (int k = 0; k < arity; ++k) {
      int64_t reg = program[pos + 2 + k];
      if (reg < 0 || static_cast<uint64_t>(reg) >= self)
        return fail(where + " operand " + std::to_string(k) + " names register " +
                    std::to_string(reg) + ", expected one defined before it in [0, " +
                    std::to_string(self) + ")");
      record.operands[k] = static_cast<int>(reg);
    }
    if (hasImmediate) {
      int64_t imm = program[pos + 2 + arity];
      if (record.op == OpKind::Fill &&
          (imm < 0 || static_cast<uint64_t>(imm) >= constants.size()))
        return fail(where + " names constant " + std::to_string(imm) +
                    ", out of range [0, " + std::to_string(constants.size()) +
                    ")");
      if (record.op == OpKind::Gelu && imm != 0 && imm != 1)
        return fail(where + " approximate must be 0 or 1, got " +
                    std::to_string(imm));
      record.immediate = imm;
    }
    records.push_back(record);
    pos += need;
  }
  if (records.empty())
    return fail("program has no records");
  return Status::ok();
}

void encodeFusedRecord(const FusedRecord &record,
                       std::vector<int64_t> &program) {
  int arity = 0;
  bool hasImmediate = false;
  fusedOpShape(record.op, arity, hasImmediate);
  program.push_back(static_cast<int64_t>(record.op));
  program.push_back(static_cast<int64_t>(record.dtype));
  for (int k = 0; k < arity; ++k)
    program.push_back(record.operands[k]);
  if (hasImmediate)
    program.push_back(record.immediate);
}

Status inferFusedElementwise(const Attrs &attrs,
                             const std::vector<TensorType> &inputs,
                             TensorType &result) {
  std::vector<FusedRecord> records;
  COLOSSAL_RETURN_IF_ERROR(decodeFusedProgram(attrs, inputs.size(), records));
  const std::vector<int64_t> &shape = attrs.list("shape");
  // Unidirectional broadcast: the result shape is given, every input must
  // expand to it (the kernels read inputs through broadcast strides).
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::vector<int64_t> &dims = inputs[k].dims;
    bool ok = dims.size() <= shape.size();
    for (size_t d = 0; ok && d < dims.size(); ++d) {
      int64_t from = dims[dims.size() - 1 - d];
      ok = from == 1 || from == shape[shape.size() - 1 - d];
    }
    if (!ok)
      return fail("input " + std::to_string(k) + " " + inputs[k].toString() +
                  " does not broadcast to shape " +
                  TensorType{inputs[k].dtype, shape}.toString());
  }
  // Each record's dtype must be what its own op gives: run the op's rule on
  // scalars of the operand dtypes (the same rule the unfused op passed).
  std::vector<DType> regs;
  for (const TensorType &in : inputs)
    regs.push_back(in.dtype);
  const std::vector<double> &constants = attrs.floatList("constants");
  std::vector<TensorType> scalars, outs;
  for (size_t index = 0; index < records.size(); ++index) {
    const FusedRecord &record = records[index];
    Attrs opAttrs(record.op);
    if (record.op == OpKind::Gelu)
      opAttrs.setI("approximate", record.immediate);
    if (record.op == OpKind::Cast || record.op == OpKind::Fill)
      opAttrs.setDType("to", record.dtype);
    if (record.op == OpKind::Fill)
      opAttrs.setF("value", constants[record.immediate]);
    scalars.clear();
    for (int k = 0; k < record.numOperands; ++k)
      scalars.push_back(TensorType{regs[record.operands[k]], {}});
    Status status = inferOutputTypes(opAttrs, scalars, outs);
    if (!status.isOk())
      return fail(recordName(index, record.op) + ": " + status.message());
    if (outs.size() != 1 || outs[0].dtype != record.dtype)
      return fail(recordName(index, record.op) + " has dtype " +
                  dtypeName(record.dtype) + ", but the op gives " +
                  (outs.empty() ? "nothing" : dtypeName(outs[0].dtype)));
    regs.push_back(record.dtype);
  }
  result = TensorType{regs.back(), shape};
  return Status::ok();
}

} // namespace colossal::runtime
