//===- Autodiff.cpp - Reverse-mode differentiation into micro_step --------===//
//
// Turns the imported forward function into `micro_step`: the forward, the
// number of scored labels, the backward from the loss, and the accumulation
// of count x gradient into one `grad.<param>` state per trainable weight.
// The gradient rules are one function per op family below; docs/autodiff.md
// lists them as a table.
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/runtime/PlanFormat.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"

#include <cmath>

#define DEBUG_TYPE "colossal-autodiff"

namespace mlir::colossal {
#define GEN_PASS_DEF_AUTODIFFPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;
using K = rt::OpKind;

namespace {

bool isFloatTensor(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && isa<FloatType>(t.getElementType());
}

ArrayRef<int64_t> dimsOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

Type elemOf(Value v) { return cast<RankedTensorType>(v.getType()).getElementType(); }

/// Ops whose results never carry gradient (comparisons, logic, index math,
/// sources).
bool isNonDifferentiable(StringRef name) {
  return llvm::StringSwitch<bool>(name)
      .Cases({"equal", "less", "less_equal", "greater", "greater_equal"}, true)
      .Cases({"and", "or", "xor", "not", "fill"}, true)
      .Default(false);
}

/// Builds the backward of one function.
class Differentiator {
public:
  Differentiator(OpBuilder &b, const DenseSet<Value> &active)
      : gb(b), active(active) {}

  /// Adds `g` to the gradient of `v` (if `v` needs one).
  LogicalResult accumulate(Location loc, Value v, Value g) {
    if (!active.contains(v) || !g)
      return success();
    if (elemOf(g) != elemOf(v)) {
      auto c = gb.cast(loc, g, elemOf(v));
      if (failed(c))
        return failure();
      g = *c;
    }
    auto it = grads.find(v);
    if (it == grads.end()) {
      grads[v] = g;
      return success();
    }
    auto sum = gb.create1(loc, K::Add, {it->second, g});
    if (failed(sum))
      return failure();
    it->second = *sum;
    return success();
  }

  /// Applies the op's gradient rule, given the gradients of its results.
  LogicalResult backward(Operation *op);

  llvm::MapVector<Value, Value> grads;

private:
  FailureOr<Value> unary(Location loc, K kind, Value x) {
    return gb.create1(loc, kind, {x});
  }
  FailureOr<Value> binary(Location loc, K kind, Value a, Value b) {
    return gb.create1(loc, kind, {a, b});
  }
  Value scalarLike(Location loc, Value like, double value) {
    return gb.scalar(loc, elemOf(like), value);
  }
  /// dy * f, unbroadcast to x's shape.
  LogicalResult accumulateProduct(Location loc, Value x, Value dy, Value f) {
    auto p = binary(loc, K::Mul, dy, f);
    if (failed(p))
      return failure();
    auto u = gb.unbroadcast(loc, *p, dimsOf(x));
    if (failed(u))
      return failure();
    return accumulate(loc, x, *u);
  }
  LogicalResult matmulBackward(Operation *op, Value dy);
  LogicalResult reduceBackward(Operation *op, Value dy, StringRef name);

  GraphBuilder gb;
  const DenseSet<Value> &active;
};

} // namespace

LogicalResult Differentiator::matmulBackward(Operation *op, Value dy) {
  Location loc = op->getLoc();
  Value a = op->getOperand(0), b = op->getOperand(1);
  auto ta = op->getAttrOfType<IntegerAttr>("transpose_a");
  auto tb = op->getAttrOfType<IntegerAttr>("transpose_b");
  bool tA = ta && ta.getInt(), tB = tb && tb.getInt();
  auto mm = [&](Value x, Value y, bool tx, bool ty) -> FailureOr<Value> {
    rt::Attrs attrs(K::MatMul);
    attrs.setI("transpose_a", tx);
    attrs.setI("transpose_b", ty);
    return gb.create1(loc, attrs, {x, y});
  };
  // y = op(a) @ op(b). With A = op(a), B = op(b): dA = dy B^T, dB = A^T dy;
  // each case below is that identity written for a and b as stored.
  if (active.contains(a)) {
    FailureOr<Value> da = !tA ? mm(dy, b, false, !tB) : mm(b, dy, tB, true);
    if (failed(da))
      return failure();
    auto u = gb.unbroadcast(loc, *da, dimsOf(a));
    if (failed(u) || failed(accumulate(loc, a, *u)))
      return failure();
  }
  if (active.contains(b)) {
    // A weight shared by every batch entry (b of rank 2 against a and dy of
    // one batch shape, a not transposed: a linear layer's weight) gets its
    // gradient from one GEMM over the flattened batch, [B*M, K]^T x [B*M, N]
    // (or its transpose), not from B products summed after rounding each:
    // the batch joins the contraction, accumulated at the GEMM's precision,
    // as PyTorch's linear backward computes it, with no [B, K, N] temporary.
    ArrayRef<int64_t> aDims = dimsOf(a), dyDims = dimsOf(dy);
    if (dimsOf(b).size() == 2 && !tA && aDims.size() >= 3 &&
        aDims.size() == dyDims.size() &&
        aDims.drop_back(2) == dyDims.drop_back(2)) {
      int64_t rows = 1;
      for (int64_t d : aDims.drop_back(1))
        rows *= d;
      auto a2 = gb.reshape(loc, a, {rows, aDims.back()});
      auto dy2 = gb.reshape(loc, dy, {rows, dyDims.back()});
      if (failed(a2) || failed(dy2))
        return failure();
      FailureOr<Value> db =
          !tB ? mm(*a2, *dy2, true, false) : mm(*dy2, *a2, true, false);
      if (failed(db) || failed(accumulate(loc, b, *db)))
        return failure();
      return success();
    }
    FailureOr<Value> db = !tB ? mm(a, dy, !tA, false) : mm(dy, a, true, tA);
    if (failed(db))
      return failure();
    auto u = gb.unbroadcast(loc, *db, dimsOf(b));
    if (failed(u) || failed(accumulate(loc, b, *u)))
      return failure();
  }
  return success();
}

LogicalResult Differentiator::reduceBackward(Operation *op, Value dy,
                                             StringRef name) {
  Location loc = op->getLoc();
  Value x = op->getOperand(0), y = op->getResult(0);
  auto axes = op->getAttrOfType<DenseI64ArrayAttr>("axes").asArrayRef();
  // The result's shape with the reduced dims kept as 1.
  std::vector<int64_t> kept(dimsOf(x).begin(), dimsOf(x).end());
  int64_t count = 1;
  for (int64_t a : axes) {
    count *= kept[a];
    kept[a] = 1;
  }
  auto dyk = gb.reshape(loc, dy, kept);
  if (failed(dyk))
    return failure();
  auto dyx = gb.expand(loc, *dyk, dimsOf(x));
  if (failed(dyx))
    return failure();
  if (name == "reduce_sum")
    return accumulate(loc, x, *dyx);
  if (name == "reduce_mean") {
    auto d = binary(loc, K::Div, *dyx, scalarLike(loc, x, double(count)));
    if (failed(d))
      return failure();
    return accumulate(loc, x, *d);
  }
  if (name == "reduce_sum_square") { // d sum(x^2) = 2 x dy
    auto twoX = binary(loc, K::Mul, x, scalarLike(loc, x, 2.0));
    if (failed(twoX))
      return failure();
    auto d = binary(loc, K::Mul, *dyx, *twoX);
    if (failed(d))
      return failure();
    return accumulate(loc, x, *d);
  }
  if (name != "reduce_max" && name != "reduce_min")
    return op->emitOpError() << "has no gradient rule (a reduction the "
                                "autodiff does not know)";
  // reduce_max / reduce_min: the gradient is shared evenly by the elements
  // equal to the extreme (PyTorch's amax/amin rule).
  auto yk = gb.reshape(loc, y, kept);
  if (failed(yk))
    return failure();
  auto yx = gb.expand(loc, *yk, dimsOf(x));
  if (failed(yx))
    return failure();
  auto mask = binary(loc, K::Equal, x, *yx);
  if (failed(mask))
    return failure();
  auto maskF = gb.cast(loc, *mask, elemOf(x));
  if (failed(maskF))
    return failure();
  rt::Attrs sum(K::ReduceSum);
  sum.setList("axes", std::vector<int64_t>(axes.begin(), axes.end()));
  sum.setI("keepdims", 1);
  auto ties = gb.create1(loc, sum, {*maskF});
  if (failed(ties))
    return failure();
  auto tiesX = gb.expand(loc, *ties, dimsOf(x));
  if (failed(tiesX))
    return failure();
  auto share = binary(loc, K::Div, *maskF, *tiesX);
  if (failed(share))
    return failure();
  auto d = binary(loc, K::Mul, *dyx, *share);
  if (failed(d))
    return failure();
  return accumulate(loc, x, *d);
}

LogicalResult Differentiator::backward(Operation *op) {
  StringRef name = op->getName().stripDialect();
  Location loc = op->getLoc();
  if (isNonDifferentiable(name) ||
      isa<graph::WeightOp, graph::ConstantOp, graph::StateOp>(op))
    return success();
  bool anyActive = llvm::any_of(op->getOperands(), [&](Value v) {
    return active.contains(v);
  });
  if (!anyActive)
    return success();

  if (name == "layer_norm") {
    Value dy = grads.lookup(op->getResult(0));
    if (!dy)
      return success();
    rt::Attrs attrs(K::LayerNormGrad);
    attrs.setI("axis", op->getAttrOfType<IntegerAttr>("axis").getInt());
    attrs.setF("epsilon",
               op->getAttrOfType<FloatAttr>("epsilon").getValueAsDouble());
    auto r = gb.create(loc, attrs, {op->getOperand(0), op->getOperand(1), dy});
    if (failed(r))
      return failure();
    if (failed(accumulate(loc, op->getOperand(0), (*r)[0])) ||
        failed(accumulate(loc, op->getOperand(1), (*r)[1])))
      return failure();
    if (op->getNumOperands() > 2)
      return accumulate(loc, op->getOperand(2), (*r)[2]);
    return success();
  }

  if (name == "attention") {
    // attention_grad recomputes the probabilities from lse; the bias (a
    // mask) gets no gradient, so colossal-fuse-attention leaves biases of
    // trainable weights unfused and this only trips on hand-written IR.
    Value dy = grads.lookup(op->getResult(0));
    if (!dy)
      return success();
    if (op->getNumOperands() == 4 && active.contains(op->getOperand(3)))
      return op->emitOpError("has a bias that depends on a trainable weight; "
                             "attention_grad gives the bias no gradient");
    rt::Attrs attrs(K::AttentionGrad);
    if (auto scale = op->getAttrOfType<FloatAttr>("scale"))
      attrs.setF("scale", scale.getValueAsDouble());
    if (auto causal = op->getAttrOfType<IntegerAttr>("causal"))
      attrs.setI("causal", causal.getInt());
    SmallVector<Value> operands(op->getOperands());
    operands.append({op->getResult(0), op->getResult(1), dy});
    auto r = gb.create(loc, attrs, operands);
    if (failed(r))
      return failure();
    for (unsigned i = 0; i < 3; ++i)
      if (failed(accumulate(loc, op->getOperand(i), (*r)[i])))
        return failure();
    return success();
  }

  Value dy = grads.lookup(op->getResult(0));
  if (!dy)
    return success();
  Value x = op->getOperand(0);
  Value y = op->getResult(0);

  if (name == "add" || name == "sub") {
    auto gx = gb.unbroadcast(loc, dy, dimsOf(x));
    if (failed(gx) || failed(accumulate(loc, x, *gx)))
      return failure();
    Value b = op->getOperand(1);
    if (!active.contains(b))
      return success();
    Value g = dy;
    if (name == "sub") {
      auto n = unary(loc, K::Neg, dy);
      if (failed(n))
        return failure();
      g = *n;
    }
    auto gb2 = gb.unbroadcast(loc, g, dimsOf(b));
    if (failed(gb2))
      return failure();
    return accumulate(loc, b, *gb2);
  }
  if (name == "mul") {
    Value b = op->getOperand(1);
    if (active.contains(x) && failed(accumulateProduct(loc, x, dy, b)))
      return failure();
    if (active.contains(b) && failed(accumulateProduct(loc, b, dy, x)))
      return failure();
    return success();
  }
  if (name == "div") {
    Value b = op->getOperand(1);
    if (active.contains(x)) {
      auto q = binary(loc, K::Div, dy, b);
      if (failed(q))
        return failure();
      auto u = gb.unbroadcast(loc, *q, dimsOf(x));
      if (failed(u) || failed(accumulate(loc, x, *u)))
        return failure();
    }
    if (active.contains(b)) {
      // d(a/b)/db = -y/b
      auto q = binary(loc, K::Div, y, b);
      if (failed(q))
        return failure();
      auto n = unary(loc, K::Neg, *q);
      if (failed(n) || failed(accumulateProduct(loc, b, dy, *n)))
        return failure();
    }
    return success();
  }
  if (name == "pow") {
    Value c = op->getOperand(1);
    if (active.contains(x)) {
      // c * x^(c-1)
      auto cm1 = binary(loc, K::Sub, c, scalarLike(loc, c, 1.0));
      if (failed(cm1))
        return failure();
      auto p = binary(loc, K::Pow, x, *cm1);
      if (failed(p))
        return failure();
      auto f = binary(loc, K::Mul, *p, c);
      if (failed(f) || failed(accumulateProduct(loc, x, dy, *f)))
        return failure();
    }
    if (active.contains(c)) {
      auto lx = unary(loc, K::Log, x);
      if (failed(lx))
        return failure();
      auto f = binary(loc, K::Mul, y, *lx);
      if (failed(f) || failed(accumulateProduct(loc, c, dy, *f)))
        return failure();
    }
    return success();
  }
  if (name == "max" || name == "min") {
    // PyTorch's maximum/minimum: the selected side gets dy, a tie splits it.
    Value b = op->getOperand(1);
    auto wins = binary(loc, name == "max" ? K::Greater : K::Less, x, b);
    auto loses = binary(loc, name == "max" ? K::Less : K::Greater, x, b);
    auto half = binary(loc, K::Mul, dy, scalarLike(loc, dy, 0.5));
    if (failed(wins) || failed(loses) || failed(half))
      return failure();
    auto zero = scalarLike(loc, dy, 0.0);
    auto tieA = gb.create1(loc, K::Where, {*loses, zero, *half});
    auto tieB = gb.create1(loc, K::Where, {*wins, zero, *half});
    if (failed(tieA) || failed(tieB))
      return failure();
    auto ga = gb.create1(loc, K::Where, {*wins, dy, *tieA});
    auto gbv = gb.create1(loc, K::Where, {*loses, dy, *tieB});
    if (failed(ga) || failed(gbv))
      return failure();
    auto ua = gb.unbroadcast(loc, *ga, dimsOf(x));
    auto ub = gb.unbroadcast(loc, *gbv, dimsOf(b));
    if (failed(ua) || failed(ub) || failed(accumulate(loc, x, *ua)) ||
        failed(accumulate(loc, b, *ub)))
      return failure();
    return success();
  }
  if (name == "where") {
    Value c = op->getOperand(0), a = op->getOperand(1), b = op->getOperand(2);
    auto zero = scalarLike(loc, dy, 0.0);
    if (active.contains(a)) {
      auto g = gb.create1(loc, K::Where, {c, dy, zero});
      if (failed(g))
        return failure();
      auto u = gb.unbroadcast(loc, *g, dimsOf(a));
      if (failed(u) || failed(accumulate(loc, a, *u)))
        return failure();
    }
    if (active.contains(b)) {
      auto g = gb.create1(loc, K::Where, {c, zero, dy});
      if (failed(g))
        return failure();
      auto u = gb.unbroadcast(loc, *g, dimsOf(b));
      if (failed(u) || failed(accumulate(loc, b, *u)))
        return failure();
    }
    return success();
  }
  if (name == "neg") {
    auto g = unary(loc, K::Neg, dy);
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "identity")
    return accumulate(loc, x, dy);
  if (name == "cast") {
    if (!isFloatTensor(x))
      return success();
    return accumulate(loc, x, dy); // accumulate casts to x's type
  }
  if (name == "exp")
    return accumulateProduct(loc, x, dy, y);
  if (name == "log") {
    auto g = binary(loc, K::Div, dy, x);
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "sqrt") {
    // dy / (2 y)
    auto twoY = binary(loc, K::Mul, y, scalarLike(loc, y, 2.0));
    if (failed(twoY))
      return failure();
    auto g = binary(loc, K::Div, dy, *twoY);
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "rsqrt" || name == "reciprocal") {
    // rsqrt: -0.5 y^3; reciprocal: -y^2
    auto y2 = binary(loc, K::Mul, y, y);
    if (failed(y2))
      return failure();
    Value f = *y2;
    double k = -1.0;
    if (name == "rsqrt") {
      auto y3 = binary(loc, K::Mul, *y2, y);
      if (failed(y3))
        return failure();
      f = *y3;
      k = -0.5;
    }
    auto fk = binary(loc, K::Mul, f, scalarLike(loc, y, k));
    return failed(fk) ? failure() : accumulateProduct(loc, x, dy, *fk);
  }
  if (name == "tanh" || name == "sigmoid") {
    // tanh: 1 - y^2; sigmoid: y (1 - y)
    auto one = scalarLike(loc, y, 1.0);
    FailureOr<Value> f;
    if (name == "tanh") {
      auto y2 = binary(loc, K::Mul, y, y);
      if (failed(y2))
        return failure();
      f = binary(loc, K::Sub, one, *y2);
    } else {
      auto om = binary(loc, K::Sub, one, y);
      if (failed(om))
        return failure();
      f = binary(loc, K::Mul, y, *om);
    }
    return failed(f) ? failure() : accumulateProduct(loc, x, dy, *f);
  }
  if (name == "relu") {
    // y > 0 exactly when x > 0 (NaN: false either way), and y is usually
    // kept anyway (the next matmul's weight gradient reads it): masking on
    // y lets x die in the forward instead of being saved for the backward.
    auto mask = binary(loc, K::Greater, y, scalarLike(loc, y, 0.0));
    if (failed(mask))
      return failure();
    auto g = gb.create1(loc, K::Where, {*mask, dy, scalarLike(loc, dy, 0.0)});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "abs") {
    auto pos = binary(loc, K::Greater, x, scalarLike(loc, x, 0.0));
    auto negm = binary(loc, K::Less, x, scalarLike(loc, x, 0.0));
    auto ndy = unary(loc, K::Neg, dy);
    if (failed(pos) || failed(negm) || failed(ndy))
      return failure();
    auto inner = gb.create1(loc, K::Where, {*negm, *ndy, scalarLike(loc, dy, 0.0)});
    if (failed(inner))
      return failure();
    auto g = gb.create1(loc, K::Where, {*pos, dy, *inner});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "erf") {
    // 2/sqrt(pi) exp(-x^2)
    auto x2 = binary(loc, K::Mul, x, x);
    if (failed(x2))
      return failure();
    auto nx2 = unary(loc, K::Neg, *x2);
    if (failed(nx2))
      return failure();
    auto e = unary(loc, K::Exp, *nx2);
    if (failed(e))
      return failure();
    auto f = binary(loc, K::Mul, *e, scalarLike(loc, x, 2.0 / std::sqrt(M_PI)));
    return failed(f) ? failure() : accumulateProduct(loc, x, dy, *f);
  }
  if (name == "sin" || name == "cos") {
    auto f = unary(loc, name == "sin" ? K::Cos : K::Sin, x);
    if (failed(f))
      return failure();
    Value fv = *f;
    if (name == "cos") {
      auto n = unary(loc, K::Neg, fv);
      if (failed(n))
        return failure();
      fv = *n;
    }
    return accumulateProduct(loc, x, dy, fv);
  }
  if (name == "gelu") {
    auto approx = op->getAttrOfType<IntegerAttr>("approximate");
    Value half = scalarLike(loc, x, 0.5), one = scalarLike(loc, x, 1.0);
    FailureOr<Value> f;
    if (!approx || approx.getInt() == 0) {
      // Phi(x) + x phi(x), Phi(x) = (1 + erf(x/sqrt2))/2,
      // phi(x) = exp(-x^2/2)/sqrt(2 pi)
      auto xs = binary(loc, K::Mul, x, scalarLike(loc, x, M_SQRT1_2));
      if (failed(xs))
        return failure();
      auto er = unary(loc, K::Erf, *xs);
      if (failed(er))
        return failure();
      auto ep = binary(loc, K::Add, *er, one);
      if (failed(ep))
        return failure();
      auto cdf = binary(loc, K::Mul, *ep, half);
      auto x2 = binary(loc, K::Mul, x, x);
      if (failed(cdf) || failed(x2))
        return failure();
      auto nx2 = binary(loc, K::Mul, *x2, scalarLike(loc, x, -0.5));
      if (failed(nx2))
        return failure();
      auto e = unary(loc, K::Exp, *nx2);
      if (failed(e))
        return failure();
      auto pdf = binary(loc, K::Mul, *e, scalarLike(loc, x, 1.0 / std::sqrt(2.0 * M_PI)));
      if (failed(pdf))
        return failure();
      auto xpdf = binary(loc, K::Mul, x, *pdf);
      if (failed(xpdf))
        return failure();
      f = binary(loc, K::Add, *cdf, *xpdf);
    } else {
      // u = k (x + 0.044715 x^3), t = tanh(u), k = sqrt(2/pi):
      // d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 0.044715 x^2)
      double k = std::sqrt(2.0 / M_PI);
      auto x2 = binary(loc, K::Mul, x, x);
      if (failed(x2))
        return failure();
      auto x3 = binary(loc, K::Mul, *x2, x);
      if (failed(x3))
        return failure();
      auto c3 = binary(loc, K::Mul, *x3, scalarLike(loc, x, 0.044715));
      if (failed(c3))
        return failure();
      auto inner = binary(loc, K::Add, x, *c3);
      if (failed(inner))
        return failure();
      auto u = binary(loc, K::Mul, *inner, scalarLike(loc, x, k));
      if (failed(u))
        return failure();
      auto t = unary(loc, K::Tanh, *u);
      if (failed(t))
        return failure();
      auto onePlusT = binary(loc, K::Add, one, *t);
      if (failed(onePlusT))
        return failure();
      auto left = binary(loc, K::Mul, *onePlusT, half);
      auto t2 = binary(loc, K::Mul, *t, *t);
      if (failed(left) || failed(t2))
        return failure();
      auto sech2 = binary(loc, K::Sub, one, *t2);
      auto dinner = binary(loc, K::Mul, *x2, scalarLike(loc, x, 3 * 0.044715));
      if (failed(sech2) || failed(dinner))
        return failure();
      auto dinner1 = binary(loc, K::Add, one, *dinner);
      if (failed(dinner1))
        return failure();
      auto du = binary(loc, K::Mul, *dinner1, scalarLike(loc, x, 0.5 * k));
      if (failed(du))
        return failure();
      auto r1 = binary(loc, K::Mul, x, *sech2);
      if (failed(r1))
        return failure();
      auto right = binary(loc, K::Mul, *r1, *du);
      if (failed(right))
        return failure();
      f = binary(loc, K::Add, *left, *right);
    }
    return failed(f) ? failure() : accumulateProduct(loc, x, dy, *f);
  }
  if (name == "matmul")
    return matmulBackward(op, dy);
  if (name == "transpose") {
    auto perm = op->getAttrOfType<DenseI64ArrayAttr>("perm").asArrayRef();
    std::vector<int64_t> inv(perm.size());
    for (size_t i = 0; i < perm.size(); ++i)
      inv[perm[i]] = i;
    rt::Attrs attrs(K::Transpose);
    attrs.setList("perm", inv);
    auto g = gb.create1(loc, attrs, {dy});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "reshape") {
    auto g = gb.reshape(loc, dy, dimsOf(x));
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "expand") {
    auto g = gb.unbroadcast(loc, dy, dimsOf(x));
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "slice") {
    rt::Attrs attrs(K::SliceGrad);
    auto starts = op->getAttrOfType<DenseI64ArrayAttr>("starts").asArrayRef();
    auto steps = op->getAttrOfType<DenseI64ArrayAttr>("steps").asArrayRef();
    attrs.setList("starts", std::vector<int64_t>(starts.begin(), starts.end()));
    attrs.setList("steps", std::vector<int64_t>(steps.begin(), steps.end()));
    attrs.setList("shape", std::vector<int64_t>(dimsOf(x).begin(), dimsOf(x).end()));
    auto g = gb.create1(loc, attrs, {dy});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "concat") {
    int64_t axis = op->getAttrOfType<IntegerAttr>("axis").getInt();
    int64_t offset = 0;
    for (Value in : op->getOperands()) {
      auto d = dimsOf(in);
      if (active.contains(in)) {
        rt::Attrs attrs(K::Slice);
        std::vector<int64_t> starts(d.size(), 0), steps(d.size(), 1);
        starts[axis] = d[axis] ? offset : 0;
        attrs.setList("starts", starts);
        attrs.setList("steps", steps);
        attrs.setList("sizes", std::vector<int64_t>(d.begin(), d.end()));
        auto g = gb.create1(loc, attrs, {dy});
        if (failed(g) || failed(accumulate(loc, in, *g)))
          return failure();
      }
      offset += d[axis];
    }
    return success();
  }
  if (name == "pad") {
    auto mode = op->getAttrOfType<IntegerAttr>("mode");
    if (mode && mode.getInt() != 0)
      return op->emitOpError("the gradient of reflect/edge padding is not "
                             "supported");
    auto pads = op->getAttrOfType<DenseI64ArrayAttr>("pads").asArrayRef();
    std::vector<int64_t> neg;
    for (int64_t p : pads)
      neg.push_back(-p);
    // Padding adds zeros around x: its gradient crops them away (negated
    // pads), and a crop's gradient pads with zeros.
    rt::Attrs attrs(K::Pad);
    attrs.setList("pads", neg);
    auto g = gb.create1(loc, attrs, {dy});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "cumsum") {
    rt::Attrs attrs(K::CumSum);
    attrs.setI("axis", op->getAttrOfType<IntegerAttr>("axis").getInt());
    auto ex = op->getAttrOfType<IntegerAttr>("exclusive");
    auto rev = op->getAttrOfType<IntegerAttr>("reverse");
    attrs.setI("exclusive", ex ? ex.getInt() : 0);
    attrs.setI("reverse", (rev && rev.getInt()) ? 0 : 1);
    auto g = gb.create1(loc, attrs, {dy});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name.starts_with("reduce_"))
    return reduceBackward(op, dy, name);
  if (name == "softmax" || name == "log_softmax") {
    int64_t axis = op->getAttrOfType<IntegerAttr>("axis").getInt();
    rt::Attrs sum(K::ReduceSum);
    sum.setList("axes", {axis});
    sum.setI("keepdims", 1);
    if (name == "softmax") {
      // y (dy - sum(dy y))
      auto dyy = binary(loc, K::Mul, dy, y);
      if (failed(dyy))
        return failure();
      auto s = gb.create1(loc, sum, {*dyy});
      if (failed(s))
        return failure();
      auto d = binary(loc, K::Sub, dy, *s);
      if (failed(d))
        return failure();
      auto g = binary(loc, K::Mul, y, *d);
      return failed(g) ? failure() : accumulate(loc, x, *g);
    }
    // dy - exp(y) sum(dy)
    auto s = gb.create1(loc, sum, {dy});
    auto e = unary(loc, K::Exp, y);
    if (failed(s) || failed(e))
      return failure();
    auto es = binary(loc, K::Mul, *e, *s);
    if (failed(es))
      return failure();
    auto g = binary(loc, K::Sub, dy, *es);
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "gather") {
    int64_t axis = op->getAttrOfType<IntegerAttr>("axis").getInt();
    int64_t padding = std::numeric_limits<int64_t>::min();
    if (auto w = x.getDefiningOp<graph::WeightOp>())
      if (auto p = w.getPaddingIdxAttr(); p && axis == 0)
        padding = p.getInt();
    rt::Attrs attrs(K::GatherGrad);
    attrs.setI("axis", axis);
    attrs.setList("shape", std::vector<int64_t>(dimsOf(x).begin(), dimsOf(x).end()));
    attrs.setI("padding_idx", padding);
    auto g = gb.create1(loc, attrs, {dy, op->getOperand(1)});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "gather_elements") {
    rt::Attrs attrs(K::GatherElementsGrad);
    attrs.setI("axis", op->getAttrOfType<IntegerAttr>("axis").getInt());
    attrs.setList("shape", std::vector<int64_t>(dimsOf(x).begin(), dimsOf(x).end()));
    auto g = gb.create1(loc, attrs, {dy, op->getOperand(1)});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "trilu") {
    // The kept elements pass their gradient through; the zeroed ones none.
    rt::Attrs attrs(K::Trilu);
    auto upper = op->getAttrOfType<IntegerAttr>("upper");
    auto k = op->getAttrOfType<IntegerAttr>("k");
    attrs.setI("upper", upper ? upper.getInt() : 0);
    attrs.setI("k", k ? k.getInt() : 0);
    auto g = gb.create1(loc, attrs, {dy});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  if (name == "softmax_cross_entropy") {
    rt::Attrs attrs(K::SoftmaxCrossEntropyGrad);
    attrs.setI("ignore_index",
               op->getAttrOfType<IntegerAttr>("ignore_index").getInt());
    attrs.setI("reduction", op->getAttrOfType<IntegerAttr>("reduction").getInt());
    auto g = gb.create1(loc, attrs, {x, op->getOperand(1), dy});
    return failed(g) ? failure() : accumulate(loc, x, *g);
  }
  return op->emitOpError() << "has no gradient rule (needed because it "
                              "depends on a trainable weight)";
}

namespace {

struct AutodiffPass
    : public mlir::colossal::impl::AutodiffPassBase<AutodiffPass> {
  using AutodiffPassBase::AutodiffPassBase;
  void runOnOperation() override;
  LogicalResult differentiate(func::FuncOp func);
};

} // namespace

LogicalResult AutodiffPass::differentiate(func::FuncOp func) {
  MLIRContext *ctx = &getContext();
  Block &body = func.getBody().front();
  auto ret = cast<func::ReturnOp>(body.getTerminator());

  // The loss: the result named `loss-name`.
  int lossIndex = -1;
  for (unsigned i = 0; i < func.getNumResults(); ++i)
    if (auto n = func.getResultAttrOfType<StringAttr>(i, "colossal.name"))
      if (n.getValue() == lossName)
        lossIndex = i;
  if (lossIndex < 0)
    return func.emitOpError() << "has no result named '" << lossName
                              << "' to differentiate (set loss-name)";
  Value loss = ret.getOperand(lossIndex);
  auto lossType = cast<RankedTensorType>(loss.getType());
  if (lossType.getRank() != 0 || !isa<FloatType>(lossType.getElementType()))
    return func.emitOpError() << "requires a float scalar loss, got "
                              << lossType;

  // Values that depend on a trainable weight through float ops.
  DenseSet<Value> active;
  for (Operation &op : body) {
    if (auto w = dyn_cast<graph::WeightOp>(op)) {
      if (w.getTrainable())
        active.insert(w.getResult());
      continue;
    }
    if (isNonDifferentiable(op.getName().stripDialect()))
      continue;
    if (llvm::any_of(op.getOperands(),
                     [&](Value v) { return active.contains(v); }))
      for (Value r : op.getResults())
        if (isFloatTensor(r))
          active.insert(r);
  }
  if (!active.contains(loss))
    return func.emitOpError("the loss depends on no trainable weight");

  OpBuilder b(ret);
  GraphBuilder gb(b);
  Location lossLoc = loss.getLoc();

  // The number of scored labels: the count a mean cross-entropy divides by,
  // so that micro-batches can be weighted exactly (gradient accumulation).
  Value count;
  if (auto ce = loss.getDefiningOp<graph::SoftmaxCrossEntropyOp>();
      ce && ce.getReduction() == 2) {
    Value labels = ce.getLabels();
    auto ignore = gb.splat(lossLoc, RankedTensorType::get({}, elemOf(labels)),
                           static_cast<double>(ce.getIgnoreIndexAttr().getInt()));
    auto eq = gb.create1(lossLoc, K::Equal, {labels, ignore});
    if (failed(eq))
      return failure();
    auto scored = gb.create1(lossLoc, K::Not, {*eq});
    if (failed(scored))
      return failure();
    auto f = gb.cast(lossLoc, *scored, b.getF32Type());
    if (failed(f))
      return failure();
    rt::Attrs sum(K::ReduceSum);
    std::vector<int64_t> all;
    for (int64_t d = 0; d < static_cast<int64_t>(dimsOf(labels).size()); ++d)
      all.push_back(d);
    sum.setList("axes", all);
    sum.setI("keepdims", 0);
    auto c = gb.create1(lossLoc, sum, {*f});
    if (failed(c))
      return failure();
    count = *c;
  } else {
    // A loss that is not a mean cross-entropy: micro-batches weigh equally.
    func.emitRemark() << "the loss is not a mean softmax_cross_entropy; "
                         "gradient accumulation weighs micro-batches equally";
    count = gb.scalar(lossLoc, b.getF32Type(), 1.0);
  }

  // Backward, from d loss = count (so that the accumulated gradient is
  // count x gradient; apply_step divides by the total count).
  Differentiator diff(b, active);
  auto seed = gb.cast(lossLoc, count, lossType.getElementType());
  if (failed(seed))
    return failure();
  diff.grads[loss] = *seed;
  SmallVector<Operation *> ops;
  for (Operation &op : body)
    if (&op != ret.getOperation())
      ops.push_back(&op);
  for (Operation *op : llvm::reverse(ops))
    if (failed(diff.backward(op)))
      return failure();

  // Accumulate each trainable weight's gradient into its state, in f32.
  llvm::MapVector<StringRef, Value> weightGrads;
  for (Operation &op : body) {
    auto w = dyn_cast<graph::WeightOp>(op);
    if (!w || !w.getTrainable())
      continue;
    Value g = diff.grads.lookup(w.getResult());
    if (!g) {
      // PyTorch leaves .grad None and the optimizer skips the parameter.
      w.emitRemark() << "weight '" << w.getName()
                     << "' does not reach the loss: it is not trained";
      w->removeAttr(graph::WeightOp::kTrainable);
      continue;
    }
    auto it = weightGrads.find(w.getName());
    if (it == weightGrads.end()) {
      weightGrads[w.getName()] = g;
    } else {
      auto s = gb.create1(w.getLoc(), K::Add, {it->second, g});
      if (failed(s))
        return failure();
      it->second = *s;
    }
  }
  for (auto &[name, g] : weightGrads) {
    Location loc = NameLoc::get(b.getStringAttr(("grad." + name).str()));
    auto gt = cast<RankedTensorType>(g.getType());
    auto f32Type = RankedTensorType::get(gt.getShape(), b.getF32Type());
    auto gf = gb.cast(loc, g, b.getF32Type());
    if (failed(gf))
      return failure();
    std::string stateName = "grad." + name.str();
    Value old = graph::StateOp::create(b, loc, f32Type, stateName);
    auto sum = gb.create1(loc, K::Add, {old, *gf});
    if (failed(sum))
      return failure();
    graph::AssignOp::create(b, loc, stateName, *sum);
  }

  // micro_step returns the loss and the count; the other outputs (logits)
  // are not needed for training and are dropped, with their computation.
  ret->setOperands({loss, count});
  func.setName(::colossal::runtime::kMicroStepProgram);
  func.setType(FunctionType::get(ctx, func.getArgumentTypes(),
                                 {loss.getType(), count.getType()}));
  func.setAllResultAttrs(ArrayRef<DictionaryAttr>{
      b.getDictionaryAttr({b.getNamedAttr("colossal.name",
                                          b.getStringAttr(lossName))}),
      b.getDictionaryAttr(
          {b.getNamedAttr("colossal.name",
                          b.getStringAttr(::colossal::runtime::kCountOutputName))})});
  // Drop what nothing uses any more (dead forward outputs), last first.
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(body)))
    if (&op != ret.getOperation() && !isa<graph::AssignOp>(op) &&
        op.use_empty() && isPure(&op))
      op.erase();
  return success();
}

void AutodiffPass::runOnOperation() {
  SmallVector<func::FuncOp> funcs;
  for (auto f : getOperation().getOps<func::FuncOp>())
    if (f.getName() == "main")
      funcs.push_back(f);
  if (funcs.size() != 1) {
    getOperation().emitError("colossal-autodiff expects one graph function "
                             "@main, got ")
        << funcs.size();
    return signalPassFailure();
  }
  if (failed(differentiate(funcs.front())))
    signalPassFailure();
}
