//===- FuseElementwise.cpp - Chains of elementwise ops -> one kernel ------===//
//
// Groups connected elementwise ops (the unary float ops, not, identity,
// cast, the binary, logic and comparison ops, where) into one
// `colossal.fused_elementwise`, whose kernel reads the group's inputs once
// and writes its one result once: the intermediates never reach memory.
//
// Grouping, per block, in reverse order (each sink first):
//   - a fusible op not yet grouped starts a group as its root (the output);
//   - an operand's producer joins when it is fusible, ungrouped, has one
//     result, and every use of that result is already in the group (a value
//     used outside would have to be a second output: the group is cut
//     there and the producer starts its own group later);
//   - joining stops when the program would pass 8 inputs or the attribute
//     list limit (64 ints), checked before each join.
// Splat constants (`colossal.constant` with a splat value exactly
// representable as a double, `colossal.fill`) that feed a member become
// scalar `fill` registers instead of inputs; the constant op stays if it
// has other uses. A group of one op is left alone (a kernel either way).
//
// The result is bitwise the unfused chain on the CPU: every register keeps
// its unfused dtype (OpTable.h). Not fused: reductions, matmuls, layout ops
// (reshape, transpose, expand, slice), the optimizers (in place), anything
// with several results or of a type the runtime lacks.
//
// Cost: O(ops x group size) per block; groups are small.
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/runtime/FusedProgram.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"

#include <cmath>

#define DEBUG_TYPE "colossal-fuse-elementwise"

namespace mlir::colossal {
#define GEN_PASS_DEF_FUSEELEMENTWISEPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

/// The op-table kind of a `colossal.<name>` op, if it is one.
std::optional<rt::OpKind> tableKind(Operation *op) {
  if (op->getDialect() == nullptr ||
      op->getDialect()->getNamespace() != "colossal")
    return std::nullopt;
  StringRef name = op->getName().stripDialect();
  const rt::OpInfo *info =
      rt::lookupOp(std::string_view(name.data(), name.size()));
  if (!info)
    return std::nullopt;
  return info->kind;
}

bool hasRuntimeType(Value v) { return toTensorType(v.getType()).has_value(); }

/// An op that may be a member of a group: an elementwise table op (not
/// fill: splats join as constants), one result, every type a runtime type.
bool isFusible(Operation *op) {
  std::optional<rt::OpKind> kind = tableKind(op);
  int arity = 0;
  bool hasImmediate = false;
  if (!kind || *kind == rt::OpKind::Fill ||
      !rt::fusedOpShape(*kind, arity, hasImmediate))
    return false;
  if (op->getNumResults() != 1 ||
      op->getNumOperands() != static_cast<unsigned>(arity))
    return false;
  return llvm::all_of(op->getOperands(), hasRuntimeType) &&
         hasRuntimeType(op->getResult(0));
}

/// The value of a splat constant or fill, if it converts to double and back
/// to its dtype exactly (what a `fill` register stores must be what the
/// constant holds).
std::optional<double> splatValue(Value v) {
  Operation *def = v.getDefiningOp();
  if (!def || !hasRuntimeType(v))
    return std::nullopt;
  if (auto fill = dyn_cast<graph::FillOp>(def))
    return fill.getValue().convertToDouble(); // a fill record stores it alike
  auto constant = dyn_cast<graph::ConstantOp>(def);
  if (!constant)
    return std::nullopt;
  auto dense = dyn_cast<DenseElementsAttr>(constant.getValue());
  if (!dense || !dense.isSplat())
    return std::nullopt;
  Type et = dense.getElementType();
  if (isa<FloatType>(et))
    return dense.getSplatValue<APFloat>().convertToDouble(); // exact widening
  if (auto it = dyn_cast<IntegerType>(et)) {
    APInt bits = dense.getSplatValue<APInt>();
    if (it.getWidth() == 1)
      return bits.isZero() ? 0.0 : 1.0;
    int64_t value = it.isUnsigned() ? static_cast<int64_t>(bits.getZExtValue())
                                    : bits.getSExtValue();
    // Integers above 2^53 do not all survive a trip through double.
    if (value > (int64_t(1) << 53) || value < -(int64_t(1) << 53))
      return std::nullopt;
    return static_cast<double>(value);
  }
  return std::nullopt;
}

/// A group being grown, and the program it would compile to.
struct Group {
  Operation *root = nullptr;
  llvm::SetVector<Operation *> members;

  /// The members in block order (producers before consumers).
  SmallVector<Operation *> ordered() const {
    SmallVector<Operation *> ops(members.begin(), members.end());
    llvm::sort(ops, [](Operation *a, Operation *b) {
      return a->isBeforeInBlock(b);
    });
    return ops;
  }
};

/// What a group compiles to: its inputs, program and constants.
struct Compiled {
  SmallVector<Value> inputs;
  std::vector<int64_t> program;
  std::vector<double> constants;
};

/// Compiles `group` (members in block order, the root last). Inputs are
/// numbered by first use; each distinct splat becomes one fill record.
Compiled compile(const Group &group) {
  Compiled c;
  SmallVector<Operation *> ops = group.ordered();
  llvm::MapVector<Value, int> inputRegs;
  // Inputs first: their registers come before every record's.
  for (Operation *op : ops)
    for (Value v : op->getOperands())
      if (!group.members.contains(v.getDefiningOp()) && !splatValue(v) &&
          !inputRegs.count(v))
        inputRegs.insert({v, static_cast<int>(inputRegs.size())});
  for (auto &[v, reg] : inputRegs)
    c.inputs.push_back(v);
  int next = static_cast<int>(inputRegs.size());
  llvm::DenseMap<Value, int> regOf(inputRegs.begin(), inputRegs.end());
  auto regFor = [&](Value v) -> int {
    auto it = regOf.find(v);
    if (it != regOf.end())
      return it->second;
    // A splat: one fill record of the constant's dtype (the register
    // broadcasts like any other, so its shape does not matter).
    rt::FusedRecord fill;
    fill.op = rt::OpKind::Fill;
    fill.dtype = *toDType(cast<RankedTensorType>(v.getType()).getElementType());
    fill.immediate = static_cast<int64_t>(c.constants.size());
    c.constants.push_back(*splatValue(v));
    rt::encodeFusedRecord(fill, c.program);
    regOf[v] = next;
    return next++;
  };
  for (Operation *op : ops) {
    rt::FusedRecord record;
    record.op = *tableKind(op);
    record.dtype = *toDType(
        cast<RankedTensorType>(op->getResult(0).getType()).getElementType());
    record.numOperands = static_cast<int>(op->getNumOperands());
    for (auto [k, v] : llvm::enumerate(op->getOperands()))
      record.operands[k] = regFor(v);
    if (record.op == rt::OpKind::Gelu) {
      auto approximate = op->getAttrOfType<IntegerAttr>("approximate");
      record.immediate = approximate ? approximate.getInt() : 0;
    }
    rt::encodeFusedRecord(record, c.program);
    regOf[op->getResult(0)] = next++;
  }
  return c;
}

/// Whether `group` with `candidate` added still fits the op's limits.
bool fitsWith(const Group &group, Operation *candidate) {
  Group trial = group;
  trial.members.insert(candidate);
  Compiled c = compile(trial);
  return c.inputs.size() <= static_cast<size_t>(rt::kMaxFusedInputs) &&
         c.program.size() <= rt::Attrs::kMaxAttrListLength &&
         c.constants.size() <= rt::Attrs::kMaxAttrListLength;
}

/// Grows a group from `root` (see the file header).
Group grow(Operation *root, const llvm::DenseSet<Operation *> &grouped) {
  Group group;
  group.root = root;
  group.members.insert(root);
  bool changed = true;
  while (changed) {
    changed = false;
    // Scan members in insertion order: deterministic.
    for (size_t m = 0; m < group.members.size(); ++m) {
      Operation *member = group.members[m];
      for (Value v : member->getOperands()) {
        Operation *producer = v.getDefiningOp();
        if (!producer || group.members.contains(producer) ||
            grouped.contains(producer) ||
            producer->getBlock() != root->getBlock() || !isFusible(producer))
          continue;
        bool usesInside = llvm::all_of(v.getUsers(), [&](Operation *user) {
          return group.members.contains(user);
        });
        if (!usesInside || !fitsWith(group, producer))
          continue;
        group.members.insert(producer);
        changed = true;
      }
    }
  }
  return group;
}

/// Replaces the group with one fused_elementwise at the root.
LogicalResult rewrite(const Group &group) {
  Compiled c = compile(group);
  Operation *root = group.root;
  OpBuilder b(root);
  rt::Attrs attrs(rt::OpKind::FusedElementwise);
  attrs.setList("program", c.program);
  attrs.setFloatList("constants", c.constants);
  auto resultType = toTensorType(root->getResult(0).getType());
  attrs.setList("shape", resultType->dims);
  GraphBuilder gb(b);
  FailureOr<Value> fused = gb.create1(root->getLoc(), attrs, c.inputs);
  if (failed(fused))
    return root->emitOpError("could not be fused with its producers");
  if (fused->getType() != root->getResult(0).getType())
    return root->emitOpError("fused result type ")
           << fused->getType() << " differs from " << root->getResult(0).getType();
  root->getResult(0).replaceAllUsesWith(*fused);
  // Erase consumers before producers; then splat constants left unused.
  SmallVector<Operation *> ops = group.ordered();
  llvm::SetVector<Operation *> splats;
  for (Operation *op : ops)
    for (Value v : op->getOperands())
      if (splatValue(v))
        splats.insert(v.getDefiningOp());
  for (Operation *op : llvm::reverse(ops))
    op->erase();
  for (Operation *op : splats)
    if (op->use_empty())
      op->erase();
  return success();
}

struct FuseElementwisePass
    : public mlir::colossal::impl::FuseElementwisePassBase<
          FuseElementwisePass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      SmallVector<Block *> blocks;
      func.walk([&](Block *block) { blocks.push_back(block); });
      for (Block *block : blocks)
        if (failed(fuseBlock(*block)))
          return signalPassFailure();
    }
  }

  LogicalResult fuseBlock(Block &block) {
    // Pick every group first (sinks first), rewrite afterwards: a rewrite
    // erases ops the scan would visit.
    llvm::DenseSet<Operation *> grouped;
    SmallVector<Group> groups;
    for (Operation &op : llvm::reverse(block)) {
      if (grouped.contains(&op) || !isFusible(&op))
        continue;
      Group group = grow(&op, grouped);
      for (Operation *member : group.members)
        grouped.insert(member);
      if (group.members.size() >= 2)
        groups.push_back(std::move(group));
    }
    for (const Group &group : groups)
      if (failed(rewrite(group)))
        return failure();
    return success();
  }
};

} // namespace
