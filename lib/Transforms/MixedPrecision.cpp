//===- MixedPrecision.cpp - bf16 compute with f32 master weights ----------===//
//
// Rewrites a forward graph function so that it computes in bf16: every f32
// weight is read through a cast (the weight itself stays f32: the master
// copy the optimizer updates), f32 inputs and constants become bf16, and
// every op is rebuilt on the new operand types. The loss is f32 (the
// cross-entropy reads the bf16 scores and widens them exactly in its
// kernels), normalisation statistics are f64 in the kernels anyway, and
// outputs keep their original types.
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"

#define DEBUG_TYPE "colossal-mixed-precision"

namespace mlir::colossal {
#define GEN_PASS_DEF_MIXEDPRECISIONPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

struct MixedPrecisionPass
    : public mlir::colossal::impl::MixedPrecisionPassBase<MixedPrecisionPass> {
  void runOnOperation() override;
  LogicalResult rewrite(func::FuncOp func);
};

bool isF32(Type t) {
  auto rt = dyn_cast<RankedTensorType>(t);
  return rt && rt.getElementType().isF32();
}

} // namespace

LogicalResult MixedPrecisionPass::rewrite(func::FuncOp func) {
  Block &body = func.getBody().front();
  OpBuilder b(func.getContext());
  GraphBuilder gb(b);
  Type bf16 = b.getBF16Type();
  // The bf16 (or unchanged) value standing for each original value.
  llvm::DenseMap<Value, Value> lowered;

  // The original ops, before any cast is added.
  SmallVector<Operation *> ops;
  for (Operation &op : body)
    ops.push_back(&op);

  b.setInsertionPointToStart(&body);
  for (BlockArgument arg : func.getArguments()) {
    if (!isF32(arg.getType())) {
      lowered[arg] = arg;
      continue;
    }
    auto c = gb.cast(arg.getLoc(), arg, bf16);
    if (failed(c))
      return failure();
    lowered[arg] = *c;
  }

  for (Operation *op : ops) {
    Location loc = op->getLoc();
    b.setInsertionPoint(op);
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      SmallVector<Value> results;
      for (Value v : ret.getOperands()) {
        auto c = gb.cast(loc, lowered.lookup(v),
                         cast<RankedTensorType>(v.getType()).getElementType());
        if (failed(c))
          return failure();
        results.push_back(*c);
      }
      ret->setOperands(results);
      continue;
    }
    if (isa<graph::WeightOp, graph::StateOp>(op)) {
      Value r = op->getResult(0);
      if (!isF32(r.getType())) {
        lowered[r] = r;
        continue;
      }
      b.setInsertionPointAfter(op);
      auto c = gb.cast(loc, r, bf16);
      if (failed(c))
        return failure();
      lowered[r] = *c;
      continue;
    }
    if (auto c = dyn_cast<graph::ConstantOp>(op)) {
      if (!isF32(c.getType())) {
        lowered[c.getResult()] = c.getResult();
        continue;
      }
      auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
      if (!dense)
        return c.emitOpError("only dense f32 constants can be lowered to bf16");
      auto type = RankedTensorType::get(c.getType().getShape(), bf16);
      auto converted = dense.mapValues(bf16, [&](const APFloat &v) {
        APFloat x = v;
        bool lost;
        x.convert(APFloat::BFloat(), APFloat::rmNearestTiesToEven, &lost);
        return x.bitcastToAPInt();
      });
      lowered[c.getResult()] =
          graph::ConstantOp::create(b, loc, type, converted).getResult();
      continue;
    }
    if (isa<graph::AssignOp>(op))
      return op->emitOpError("mixed precision runs before autodiff: "
                             "assignments are not expected");

    // A table op, rebuilt on the lowered operands.
    StringRef name = op->getName().stripDialect();
    const rt::OpInfo *info =
        rt::lookupOp(std::string_view(name.data(), name.size()));
    if (!info)
      return op->emitOpError("is not a table op");
    SmallVector<Type> oldResultTypes(op->getResultTypes());
    auto attrs = attrsFromMlir(loc, info->kind, op->getAttrDictionary(),
                               oldResultTypes);
    if (failed(attrs))
      return failure();
    SmallVector<Value> operands;
    for (Value v : op->getOperands())
      operands.push_back(lowered.lookup(v));

    if (info->kind == rt::OpKind::SoftmaxCrossEntropy) {
      // The loss is f32 for bf16 scores (OpTable.h): the kernels widen each
      // score exactly as they read it, so no f32 copy of the logits (OPT:
      // 8192 x 50272, 1.65 GB) and no cast of their gradient back down.
    } else if (info->kind == rt::OpKind::Cast) {
      // Casts to f32 now produce bf16 (masks, index arithmetic made float).
      if (attrs->dtype("to") == rt::DType::kF32)
        attrs->setDType("to", rt::DType::kBF16);
    } else if (info->kind == rt::OpKind::Fill) {
      if (attrs->dtype("to") == rt::DType::kF32)
        attrs->setDType("to", rt::DType::kBF16);
    } else {
      // Operands of one op agree on a float type: f32 ones come down to bf16.
      bool anyBf16 = llvm::any_of(operands, [&](Value v) {
        return cast<RankedTensorType>(v.getType()).getElementType() == bf16;
      });
      if (anyBf16)
        for (Value &v : operands)
          if (isF32(v.getType())) {
            auto c = gb.cast(loc, v, bf16);
            if (failed(c))
              return failure();
            v = *c;
          }
    }
    auto results = gb.create(loc, *attrs, operands);
    if (failed(results))
      return failure();
    for (auto [oldR, newR] : llvm::zip(op->getResults(), *results))
      lowered[oldR] = newR;
  }

  // The original ops are dead now (the return uses the rebuilt values);
  // erase them last to first. Weights, states and arguments stay.
  for (Operation *op : llvm::reverse(ops)) {
    if (isa<func::ReturnOp, graph::WeightOp, graph::StateOp>(op))
      continue;
    if (op->use_empty()) {
      op->erase();
      continue;
    }
    // Kept only where a value stands for itself (an integer constant).
    if (llvm::any_of(op->getResults(),
                     [&](Value r) { return lowered.lookup(r) != r; }))
      return op->emitOpError("is still used after the bf16 rewrite");
  }
  return success();
}

void MixedPrecisionPass::runOnOperation() {
  for (auto func : llvm::make_early_inc_range(
           getOperation().getOps<func::FuncOp>()))
    if (!func.isExternal() && failed(rewrite(func)))
      return signalPassFailure();
}
