//===- LowerToPlan.cpp - Graph functions -> plans of buffers and kernels --===//

#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"

#define DEBUG_TYPE "colossal-lower-to-plan"

namespace mlir::colossal {
#define GEN_PASS_DEF_LOWERTOPLANPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

constexpr int64_t kBufferAlignBytes = 64;
/// Splat constants at least this large become `fill` kernels.
constexpr int64_t kMinFillBytes = 256;

struct LowerToPlanPass
    : public mlir::colossal::impl::LowerToPlanPassBase<LowerToPlanPass> {
  using LowerToPlanPassBase::LowerToPlanPassBase;

  void runOnOperation() override {
    SmallVector<func::FuncOp> graphs;
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (isGraphFunction(func))
        graphs.push_back(func);
    for (func::FuncOp func : graphs)
      if (failed(lower(func)))
        return signalPassFailure();
  }

  /// A graph function has tensor arguments/results or colossal ops; a plan
  /// function has neither, so running the pass twice is harmless.
  static bool isGraphFunction(func::FuncOp func) {
    if (func.isExternal())
      return false;
    if (func.getNumArguments() || func.getNumResults())
      return true;
    bool hasGraphOps = false;
    func.walk([&](Operation *op) {
      if (isa<graph::ColossalDialect>(op->getDialect()))
        hasGraphOps = true;
    });
    return hasGraphOps;
  }

  LogicalResult lower(func::FuncOp func);
};

} // namespace

LogicalResult LowerToPlanPass::lower(func::FuncOp func) {
  MLIRContext *ctx = &getContext();
  OpBuilder b(func);
  auto plan = func::FuncOp::create(b, func.getLoc(), func.getName(),
                                   b.getFunctionType({}, {}));
  plan->setAttr("cplan.num_streams", b.getI64IntegerAttr(1));
  plan->setAttr("cplan.num_events", b.getI64IntegerAttr(0));
  Block *body = plan.addEntryBlock();
  b.setInsertionPointToEnd(body);

  int64_t numConstants = 0;
  // The view that holds each graph value.
  llvm::DenseMap<Value, Value> viewOf;
  auto newView = [&](Location loc, Type tensorType) -> FailureOr<Value> {
    auto tt = toTensorType(tensorType);
    if (!tt)
      return emitError(loc) << "cannot plan a value of type " << tensorType
                            << ": it needs a static shape and a runtime dtype";
    auto shaped = cast<RankedTensorType>(tensorType);
    auto alloc = plan::BufferAllocOp::create(
        b, loc, plan::BufferType::get(ctx),
        plan::MemorySpaceAttr::get(ctx, plan::MemorySpace::device),
        b.getI64IntegerAttr(static_cast<int64_t>(tt->sizeBytes())),
        b.getI64IntegerAttr(kBufferAlignBytes), DenseI64ArrayAttr(),
        IntegerAttr());
    auto memref = MemRefType::get(shaped.getShape(), shaped.getElementType());
    return plan::ViewOp::create(b, loc, memref, alloc.getResult(),
                                b.getI64IntegerAttr(0))
        .getResult();
  };
  auto bind = [&](Location loc, plan::BindingRole role, StringRef name,
                  Value view, ElementsAttr value = {}) {
    plan::BindOp::create(b, loc, plan::BindingRoleAttr::get(ctx, role),
                         b.getStringAttr(name), view, value);
  };

  for (BlockArgument arg : func.getArguments()) {
    auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                  "colossal.name");
    if (!name)
      return func.emitOpError() << "argument #" << arg.getArgNumber()
                                << " has no colossal.name";
    auto view = newView(NameLoc::get(name), arg.getType());
    if (failed(view))
      return failure();
    bind(NameLoc::get(name), plan::BindingRole::input, name.getValue(), *view);
    viewOf[arg] = *view;
  }

  for (Operation &op : func.getBody().front()) {
    Location loc = op.getLoc();
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
        auto name = func.getResultAttrOfType<StringAttr>(i, "colossal.name");
        if (!name)
          return func.emitOpError() << "result #" << i
                                    << " has no colossal.name";
        bind(NameLoc::get(name), plan::BindingRole::output, name.getValue(),
             viewOf.lookup(v));
      }
      continue;
    }
    if (auto w = dyn_cast<graph::WeightOp>(op)) {
      auto view = newView(loc, w.getType());
      if (failed(view))
        return failure();
      bind(loc, plan::BindingRole::weight, w.getName(), *view);
      viewOf[w.getResult()] = *view;
      continue;
    }
    if (auto c = dyn_cast<graph::ConstantOp>(op)) {
      auto view = newView(loc, c.getType());
      if (failed(view))
        return failure();
      auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
      auto tt = *toTensorType(c.getType());
      int64_t bytes = static_cast<int64_t>(tt.sizeBytes());
      if (dense && dense.isSplat() && bytes >= kMinFillBytes &&
          tt.dtype != rt::DType::kBool) {
        double value = isa<FloatType>(dense.getElementType())
                           ? dense.getSplatValue<APFloat>().convertToDouble()
                           : static_cast<double>(
                                 dense.getSplatValue<APInt>().getSExtValue());
        plan::KernelOp::create(
            b, loc, b.getStringAttr("fill"), ValueRange{}, ValueRange{*view},
            b.getDictionaryAttr(
                {b.getNamedAttr("value", b.getF64FloatAttr(value))}),
            b.getI64IntegerAttr(0));
      } else {
        if (bytes > maxConstantBytes)
          return emitError(loc) << "constant of " << bytes
                                << " bytes exceeds max-constant-bytes ("
                                << static_cast<int64_t>(maxConstantBytes) << ")";
        // Unique per plan: the node name plus a counter.
        std::string name = "const" + std::to_string(numConstants++);
        if (auto nl = dyn_cast<NameLoc>(loc))
          name = nl.getName().str() + "#" + name;
        bind(loc, plan::BindingRole::constant, name, *view, c.getValue());
      }
      viewOf[c.getResult()] = *view;
      continue;
    }
    if (!isa<graph::ColossalDialect>(op.getDialect()))
      return op.emitOpError() << "cannot be lowered to a plan";
    if (op.getNumResults() != 1)
      return op.emitOpError() << "must have one result to be planned";
    SmallVector<Value> ins;
    for (Value v : op.getOperands()) {
      Value view = viewOf.lookup(v);
      if (!view)
        return op.emitOpError() << "uses a value with no planned buffer";
      ins.push_back(view);
    }
    if (isa<graph::ReshapeOp>(op)) {
      // Same bytes, another shape: a second view of the input's buffer.
      auto src = ins.front().getDefiningOp<plan::ViewOp>();
      auto shaped = cast<RankedTensorType>(op.getResult(0).getType());
      auto memref =
          MemRefType::get(shaped.getShape(), shaped.getElementType());
      viewOf[op.getResult(0)] =
          plan::ViewOp::create(b, loc, memref, src.getBuffer(),
                               src.getByteOffsetAttr())
              .getResult();
      continue;
    }
    auto out = newView(loc, op.getResult(0).getType());
    if (failed(out))
      return failure();
    SmallVector<NamedAttribute> params;
    for (NamedAttribute attr : op.getAttrs())
      params.push_back(attr);
    plan::KernelOp::create(b, loc,
                           b.getStringAttr(op.getName().stripDialect()), ins,
                           ValueRange{*out}, b.getDictionaryAttr(params),
                           b.getI64IntegerAttr(0));
    viewOf[op.getResult(0)] = *out;
  }
  func::ReturnOp::create(b, func.getLoc());
  func.erase();
  return success();
}
