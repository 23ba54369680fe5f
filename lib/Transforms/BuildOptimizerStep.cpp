//===- BuildOptimizerStep.cpp - apply_step: normalise, clip, update -------===//
//
// Builds `apply_step` next to `micro_step`: the accumulated gradients are
// divided by the batch's scored-label count, their global norm is measured
// (and clipped), the learning rate is computed from the step counter, every
// trainable weight gets one AdamW or SGD update in place, and the gradient
// states are zeroed for the next step.
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/runtime/PlanFormat.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/Support/Regex.h"

#include <cmath>

#define DEBUG_TYPE "colossal-build-optimizer-step"

namespace mlir::colossal {
#define GEN_PASS_DEF_BUILDOPTIMIZERSTEPPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;
using K = rt::OpKind;

namespace {

struct BuildOptimizerStepPass
    : public mlir::colossal::impl::BuildOptimizerStepPassBase<
          BuildOptimizerStepPass> {
  using BuildOptimizerStepPassBase::BuildOptimizerStepPassBase;
  void runOnOperation() override;
  LogicalResult build(func::FuncOp micro);
  LogicalResult buildFused(func::FuncOp micro);
  LogicalResult update(GraphBuilder &gb, Location loc, StringRef name,
                       RankedTensorType type, Value weight, Value grad,
                       Value lr, Value step);
  FailureOr<SmallVector<Value>> adamw(GraphBuilder &gb, Location loc,
                                      rt::OpKind kind, StringRef name,
                                      RankedTensorType type, Value weight,
                                      Value grad, Value lr, Value step,
                                      Value divisor);
  double decayFor(StringRef name);
  FailureOr<Value> learningRate(GraphBuilder &gb, Location loc, Value step);
};

/// sum(g * g) over every axis of a rank-`rank` gradient: one
/// reduce_sum_square, which reads the gradient once (a mul and a
/// reduce_sum wrote and read the squares in full).
rt::Attrs sumOfSquares(int64_t rank) {
  rt::Attrs sum(rt::OpKind::ReduceSumSquare);
  std::vector<int64_t> axes;
  for (int64_t d = 0; d < rank; ++d)
    axes.push_back(d);
  sum.setList("axes", axes);
  sum.setI("keepdims", 0);
  return sum;
}

/// The bf16 gradient a mixed-precision step widened to f32, or `grad`.
Value rawGradient(Value grad) {
  if (Operation *def = grad.getDefiningOp())
    if (def->getName().stripDialect() == "cast" &&
        cast<RankedTensorType>(def->getOperand(0).getType())
            .getElementType()
            .isBF16())
      return def->getOperand(0);
  return grad;
}

} // namespace

/// lr(step) in f32: constant, or Hugging Face's linear warm-up then cosine
/// decay (get_cosine_schedule_with_warmup): s < W: lr s / W; else
/// lr (min + (1 - min) 0.5 (1 + cos(pi min(1, (s - W) / (T - W))))).
FailureOr<Value> BuildOptimizerStepPass::learningRate(GraphBuilder &gb,
                                                      Location loc,
                                                      Value step) {
  Type f32 = gb.builder().getF32Type();
  Value base = gb.scalar(loc, f32, lr);
  if (schedule == "constant")
    return base;
  if (schedule != "cosine")
    return emitError(loc) << "unknown lr schedule '" << schedule
                          << "' (constant, cosine)";
  if (totalSteps <= 0)
    return emitError(loc) << "the cosine schedule needs total-steps > 0";
  auto s = gb.cast(loc, step, f32);
  if (failed(s))
    return failure();
  double w = std::max<int64_t>(warmupSteps, 0);
  // Warm-up factor s / max(1, W).
  auto warm = gb.create1(loc, K::Div, {*s, gb.scalar(loc, f32, std::max(1.0, w))});
  // Cosine factor.
  auto sw = gb.create1(loc, K::Sub, {*s, gb.scalar(loc, f32, w)});
  if (failed(warm) || failed(sw))
    return failure();
  auto prog = gb.create1(loc, K::Div,
                         {*sw, gb.scalar(loc, f32, std::max(1.0, totalSteps - w))});
  if (failed(prog))
    return failure();
  auto progc = gb.create1(loc, K::Min, {*prog, gb.scalar(loc, f32, 1.0)});
  if (failed(progc))
    return failure();
  auto ang = gb.create1(loc, K::Mul, {*progc, gb.scalar(loc, f32, M_PI)});
  if (failed(ang))
    return failure();
  auto c = gb.create1(loc, K::Cos, {*ang});
  if (failed(c))
    return failure();
  auto c1 = gb.create1(loc, K::Add, {*c, gb.scalar(loc, f32, 1.0)});
  if (failed(c1))
    return failure();
  auto half = gb.create1(loc, K::Mul, {*c1, gb.scalar(loc, f32, 0.5 * (1.0 - minLrRatio))});
  if (failed(half))
    return failure();
  auto cosf = gb.create1(loc, K::Add, {*half, gb.scalar(loc, f32, minLrRatio)});
  if (failed(cosf))
    return failure();
  auto inWarmup = gb.create1(loc, K::Less, {*s, gb.scalar(loc, f32, w)});
  if (failed(inWarmup))
    return failure();
  auto factor = gb.create1(loc, K::Where, {*inWarmup, *warm, *cosf});
  if (failed(factor))
    return failure();
  return gb.create1(loc, K::Mul, {base, *factor});
}

LogicalResult BuildOptimizerStepPass::build(func::FuncOp micro) {
  MLIRContext *ctx = &getContext();
  OpBuilder b(ctx);
  b.setInsertionPointAfter(micro);
  Location loc = NameLoc::get(b.getStringAttr("optimizer"));

  // The trainable weights, in the order micro_step first reads them.
  llvm::MapVector<StringRef, RankedTensorType> params;
  micro.walk([&](graph::WeightOp w) {
    if (w.getTrainable())
      params.insert({w.getName(), cast<RankedTensorType>(w.getType())});
  });
  if (params.empty())
    return micro.emitOpError("has no trainable weight to optimise");
  for (auto &[name, type] : params)
    if (!type.getElementType().isF32())
      return micro.emitOpError() << "trainable weight '" << name
                                 << "' is " << type.getElementType()
                                 << "; master weights must be f32";

  Type f32 = b.getF32Type();
  auto scalarF32 = RankedTensorType::get({}, f32);
  auto scalarI64 = RankedTensorType::get({}, b.getI64Type());
  auto func = func::FuncOp::create(
      b, loc, rt::kApplyStepProgram,
      b.getFunctionType({scalarI64, scalarF32}, {scalarF32, scalarF32}));
  func.setArgAttr(0, "colossal.name", b.getStringAttr(rt::kStepInputName));
  func.setArgAttr(1, "colossal.name", b.getStringAttr(rt::kCountTotalInputName));
  func.setResultAttr(0, "colossal.name", b.getStringAttr("grad_norm"));
  func.setResultAttr(1, "colossal.name", b.getStringAttr("lr"));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToEnd(body);
  GraphBuilder gb(b);
  Value step = body->getArgument(0), countTotal = body->getArgument(1);

  std::optional<llvm::Regex> noDecayRe;
  if (!noDecay.empty()) {
    noDecayRe.emplace(noDecay);
    std::string err;
    if (!noDecayRe->isValid(err))
      return emitError(loc) << "no-decay: invalid regex '" << noDecay
                            << "': " << err;
  }

  // The global norm of the normalised gradients (before clipping). Each
  // normalised gradient here is a temporary that dies at once; the update
  // loop below normalises again right before each update (reading the state
  // afresh, so CSE cannot merge the two), so that no full set of normalised
  // gradients is ever alive.
  auto normalised = [&](StringRef name, RankedTensorType type,
                        Location ploc) -> FailureOr<Value> {
    auto ft = RankedTensorType::get(type.getShape(), f32);
    Value acc = graph::StateOp::create(b, ploc, ft, ("grad." + name).str());
    return gb.create1(ploc, K::Div, {acc, countTotal});
  };
  Value sumSq;
  for (auto &[name, type] : params) {
    Location ploc = NameLoc::get(b.getStringAttr(("grad." + name).str()));
    auto g = normalised(name, type, ploc);
    if (failed(g))
      return failure();
    auto s = gb.create1(ploc, sumOfSquares(type.getRank()), {*g});
    if (failed(s))
      return failure();
    if (!sumSq) {
      sumSq = *s;
    } else {
      auto t = gb.create1(ploc, K::Add, {sumSq, *s});
      if (failed(t))
        return failure();
      sumSq = *t;
    }
  }
  auto norm = gb.create1(loc, K::Sqrt, {sumSq});
  if (failed(norm))
    return failure();
  Value clipCoef;
  if (clipGradNorm > 0) {
    // PyTorch's clip_grad_norm_: coef = min(1, max_norm / (norm + 1e-6)).
    auto denom = gb.create1(loc, K::Add, {*norm, gb.scalar(loc, f32, 1e-6)});
    if (failed(denom))
      return failure();
    auto coef = gb.create1(loc, K::Div, {gb.scalar(loc, f32, clipGradNorm), *denom});
    if (failed(coef))
      return failure();
    auto clamped = gb.create1(loc, K::Min, {*coef, gb.scalar(loc, f32, 1.0)});
    if (failed(clamped))
      return failure();
    clipCoef = *clamped;
  }
  auto lrValue = learningRate(gb, loc, step);
  if (failed(lrValue))
    return failure();

  // The updates, written back in place; then zero the gradient states.
  for (auto &[name, type] : params) {
    Location ploc = NameLoc::get(b.getStringAttr(name));
    auto g = normalised(name, type, ploc);
    if (failed(g))
      return failure();
    Value gv = *g;
    if (clipCoef) {
      auto c = gb.create1(ploc, K::Mul, {gv, clipCoef});
      if (failed(c))
        return failure();
      gv = *c;
    }
    auto w = graph::WeightOp::create(b, ploc, type, name, /*trainable=*/true,
                                     StringAttr(), IntegerAttr(), StringAttr());
    if (failed(update(gb, ploc, name, type, w.getResult(), gv, *lrValue, step)))
      return failure();
  }
  for (auto &[name, type] : params) {
    Location ploc = NameLoc::get(b.getStringAttr(("grad." + name).str()));
    rt::Attrs zero(K::Fill);
    zero.setDType("to", rt::DType::kF32);
    zero.setList("shape", std::vector<int64_t>(type.getShape().begin(),
                                               type.getShape().end()));
    zero.setF("value", 0.0);
    auto z = gb.create1(ploc, zero, {});
    if (failed(z))
      return failure();
    graph::AssignOp::create(b, ploc, ("grad." + name).str(), *z);
  }
  func::ReturnOp::create(b, loc, ValueRange{*norm, *lrValue});
  return success();
}

/// The weight decay of weight `name` (0 where --no-decay matches).
double BuildOptimizerStepPass::decayFor(StringRef name) {
  if (!noDecay.empty() && llvm::Regex(noDecay).match(name))
    return 0.0;
  return weightDecay;
}

/// One AdamW update of weight `name` (`kind`: adamw, or adamw_norm), its
/// moments the states adam.m.<name> and adam.v.<name>, the three results
/// assigned back in place; `divisor` (may be null for adamw) divides the
/// gradient inside the update. Returns every result.
FailureOr<SmallVector<Value>> BuildOptimizerStepPass::adamw(
    GraphBuilder &gb, Location ploc, rt::OpKind kind, StringRef name,
    RankedTensorType type, Value weight, Value grad, Value lr, Value step,
    Value divisor) {
  OpBuilder &b = gb.builder();
  Value m = graph::StateOp::create(b, ploc, type, ("adam.m." + name).str());
  Value v = graph::StateOp::create(b, ploc, type, ("adam.v." + name).str());
  rt::Attrs a(kind);
  a.setF("beta1", beta1);
  a.setF("beta2", beta2);
  a.setF("eps", eps);
  a.setF("weight_decay", decayFor(name));
  SmallVector<Value> operands = {weight, grad, m, v, lr, step};
  if (divisor)
    operands.push_back(divisor);
  auto r = gb.create(ploc, a, operands);
  if (failed(r))
    return failure();
  graph::AssignOp::create(b, ploc, name, (*r)[0]);
  graph::AssignOp::create(b, ploc, ("adam.m." + name).str(), (*r)[1]);
  graph::AssignOp::create(b, ploc, ("adam.v." + name).str(), (*r)[2]);
  return SmallVector<Value>(r->begin(), r->end());
}

/// One optimizer update of weight `name`, assigned back in place with its
/// optimizer state.
LogicalResult BuildOptimizerStepPass::update(GraphBuilder &gb, Location ploc,
                                             StringRef name,
                                             RankedTensorType type,
                                             Value weight, Value g, Value lr,
                                             Value step) {
  if (optimizer == "adamw")
    return success(succeeded(
        adamw(gb, ploc, K::AdamW, name, type, weight, g, lr, step, Value())));
  if (optimizer == "sgd") {
    OpBuilder &b = gb.builder();
    std::string bufName = ("sgd.momentum." + name).str();
    Value buf = graph::StateOp::create(b, ploc, type, bufName);
    rt::Attrs a(K::Sgd);
    a.setF("momentum", momentum);
    a.setF("dampening", dampening);
    a.setF("weight_decay", decayFor(name));
    a.setI("nesterov", nesterov ? 1 : 0);
    auto r = gb.create(ploc, a, {weight, g, buf, lr, step});
    if (failed(r))
      return failure();
    graph::AssignOp::create(b, ploc, name, (*r)[0]);
    graph::AssignOp::create(b, ploc, bufName, (*r)[1]);
    return success();
  }
  return emitError(ploc) << "unknown optimizer '" << optimizer
                         << "' (adamw, sgd)";
}

/// The fused step (grad-accum 1, no clipping): every update goes into
/// micro_step itself, right after the weight's gradient is complete and its
/// last read is done, so no gradient outlives its update and no full-model
/// gradient buffer exists. micro_step becomes train_step(inputs..., __step)
/// -> (loss, __count, grad_norm, lr); there is no apply_step.
LogicalResult BuildOptimizerStepPass::buildFused(func::FuncOp micro) {
  if (clipGradNorm > 0)
    return micro.emitOpError("a fused optimizer step cannot clip: clipping "
                             "needs every gradient before any update");
  MLIRContext *ctx = &getContext();
  OpBuilder b(ctx);
  GraphBuilder gb(b);
  Block &body = micro.getBody().front();
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  if (ret.getNumOperands() != 2)
    return micro.emitOpError("expected micro_step to return (loss, __count)");
  Value loss = ret.getOperand(0), count = ret.getOperand(1);

  // The step counter becomes an argument.
  auto scalarI64 = RankedTensorType::get({}, b.getI64Type());
  BlockArgument step = body.addArgument(scalarI64, micro.getLoc());
  SmallVector<Type> argTypes(micro.getArgumentTypes());
  argTypes.push_back(scalarI64);

  // The gradient of each weight, taken from its accumulation into grad.p.
  struct Param {
    StringRef name;
    RankedTensorType type;
    Value weight, grad;
  };
  SmallVector<Param> params;
  for (auto assign : llvm::make_early_inc_range(body.getOps<graph::AssignOp>())) {
    if (!assign.getName().starts_with("grad."))
      continue;
    auto add = assign.getValue().getDefiningOp<graph::AddOp>();
    auto state = add ? add.getLhs().getDefiningOp<graph::StateOp>() : nullptr;
    if (!state || state.getName() != assign.getName())
      return assign.emitOpError("is not a gradient accumulation this pass "
                                "can fuse");
    StringRef name = assign.getName().drop_front(5);
    Value weight;
    for (auto w : body.getOps<graph::WeightOp>())
      if (w.getName() == name && w.getTrainable())
        weight = w.getResult();
    if (!weight)
      return assign.emitOpError() << "has no trainable weight '" << name << "'";
    params.push_back({name, cast<RankedTensorType>(weight.getType()), weight,
                      add.getRhs()});
    assign.erase();
    add.erase();
    if (state->use_empty())
      state.erase();
  }
  if (params.empty())
    return micro.emitOpError("has no trainable weight to optimise");
  for (const Param &p : params)
    if (!p.type.getElementType().isF32())
      return micro.emitOpError() << "trainable weight '" << p.name << "' is "
                                 << p.type.getElementType()
                                 << "; master weights must be f32";

  // The learning rate, right after the count (which dominates the backward).
  Location loc = NameLoc::get(b.getStringAttr("optimizer"));
  if (Operation *def = count.getDefiningOp())
    b.setInsertionPointAfter(def);
  else
    b.setInsertionPointToStart(&body);
  auto lrValue = learningRate(gb, loc, step);
  if (failed(lrValue))
    return failure();
  Operation *afterLr = lrValue->getDefiningOp();

  // Each update goes after the later of the gradient's definition and the
  // weight's last read.
  SmallVector<Value> sumsOfSquares;
  for (const Param &p : params) {
    Operation *at = p.grad.getDefiningOp();
    if (!at || (afterLr && at->isBeforeInBlock(afterLr)))
      at = afterLr;
    for (Operation *user : p.weight.getUsers())
      if (at && user->getBlock() == &body && at->isBeforeInBlock(user))
        at = user;
    b.setInsertionPointAfter(at);
    Location ploc = NameLoc::get(b.getStringAttr(p.name));
    if (optimizer == "adamw" && normIntoUpdate &&
        (normIntoUpdateOnly.empty() ||
         llvm::is_contained(normIntoUpdateOnly, p.name.str()))) {
      // One adamw_norm on the raw gradient: the division by the count and
      // the sum of g * g (its fourth result) in the update's pass. A bf16
      // gradient widened to f32 is read as bf16 (widened exactly inside).
      auto r = adamw(gb, ploc, K::AdamWNorm, p.name, p.type, p.weight,
                     rawGradient(p.grad), *lrValue, step, count);
      if (failed(r))
        return failure();
      sumsOfSquares.push_back((*r)[3]);
      continue;
    }
    auto g = gb.create1(ploc, K::Div, {p.grad, count});
    if (failed(g))
      return failure();
    auto s = gb.create1(ploc, sumOfSquares(p.type.getRank()), {*g});
    if (failed(s))
      return failure();
    sumsOfSquares.push_back(*s);
    // A host update reads the raw gradient and divides it itself: a bf16
    // gradient then crosses PCIe, and is read on the host, at half the
    // bytes (the norm's g stays on the device).
    if (optimizer == "adamw" && rawGradToHost) {
      if (failed(adamw(gb, ploc, K::AdamW, p.name, p.type, p.weight,
                       rawGradient(p.grad), *lrValue, step, count)))
        return failure();
      continue;
    }
    if (failed(update(gb, ploc, p.name, p.type, p.weight, *g, *lrValue, step)))
      return failure();
  }

  // The global norm, from the per-weight sums, at the end.
  b.setInsertionPoint(ret);
  Value total = sumsOfSquares.front();
  for (Value s : ArrayRef<Value>(sumsOfSquares).drop_front()) {
    auto t = gb.create1(loc, K::Add, {total, s});
    if (failed(t))
      return failure();
    total = *t;
  }
  auto norm = gb.create1(loc, K::Sqrt, {total});
  if (failed(norm))
    return failure();
  ret->setOperands({loss, count, *norm, *lrValue});
  SmallVector<DictionaryAttr> argAttrs;
  for (unsigned i = 0; i + 1 < argTypes.size(); ++i)
    argAttrs.push_back(micro.getArgAttrDict(i) ? micro.getArgAttrDict(i)
                                               : b.getDictionaryAttr({}));
  argAttrs.push_back(b.getDictionaryAttr(
      {b.getNamedAttr("colossal.name", b.getStringAttr(rt::kStepInputName))}));
  auto named = [&](StringRef n) {
    return b.getDictionaryAttr(
        {b.getNamedAttr("colossal.name", b.getStringAttr(n))});
  };
  micro.setType(b.getFunctionType(argTypes, {loss.getType(), count.getType(),
                                             norm->getType(),
                                             lrValue->getType()}));
  micro.setAllArgAttrs(argAttrs);
  micro.setAllResultAttrs(ArrayRef<DictionaryAttr>{
      named("loss"), named(rt::kCountOutputName), named("grad_norm"),
      named("lr")});
  micro.setName(rt::kTrainStepProgram);
  return success();
}

void BuildOptimizerStepPass::runOnOperation() {
  ModuleOp module = getOperation();
  func::FuncOp micro;
  for (auto f : module.getOps<func::FuncOp>()) {
    if (f.getName() == rt::kApplyStepProgram) {
      f.emitOpError("already exists");
      return signalPassFailure();
    }
    if (f.getName() == rt::kMicroStepProgram)
      micro = f;
  }
  if (!micro) {
    module.emitError("colossal-build-optimizer-step needs @micro_step (run "
                     "colossal-autodiff first)");
    return signalPassFailure();
  }
  if (!noDecay.empty()) {
    std::string err;
    if (!llvm::Regex(noDecay).isValid(err)) {
      module.emitError() << "no-decay: invalid regex '" << noDecay
                         << "': " << err;
      return signalPassFailure();
    }
  }
  if (failed(fuse ? buildFused(micro) : build(micro)))
    signalPassFailure();
}
