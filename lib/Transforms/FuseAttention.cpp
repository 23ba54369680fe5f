//===- FuseAttention.cpp - softmax(q k^T * scale + mask) v -> attention ---===//
//
// Finds scaled dot-product attention in a forward graph, as the ONNX
// exporters write it for OPT, GPT-2, LLaMA and their relatives, and replaces
// it with one `colossal.attention`, whose kernels never materialise the
// [S, T] scores or probabilities (and whose backward, attention_grad,
// recomputes them). Anything the matcher does not recognise keeps its
// unfused ops, which compute the same function.
//
// The match, walking up from each softmax over the last axis of a rank-4
// tensor whose only use is the lhs of a matmul (P @ v):
//
//   scores = matmul(q, kT)          q [B, H, S, D], no transpose_a; kT is
//                                   transpose(k, swap last two) or any
//                                   [B, H, D, T] value; or matmul(q, k)
//                                   with transpose_b
//   scores = mul/div(scores, c)*    c a one-element constant: scale *= c
//   scores = add(scores, bias)*     bias broadcastable to scores, of q's
//                                   dtype, not computed from a trainable
//                                   weight (attention_grad gives it no
//                                   gradient); several adds sum their biases
//   softmax(scores, axis 3) @ v     v [B, H, T, D]
//
// every intermediate having that one use. k and v that are GQA's repeat_kv
// of [B, Hkv, T, D] tensors (reshape to [B, Hkv, 1, T, D], expand to
// [B, Hkv, H/Hkv, T, D], reshape to [B, H, T, D]) are used unexpanded.
//
// A constant bias that masks (<= -1e30: exp underflows to exactly 0 in
// double) every key j > i + T - S of every row i, and leaves every row some
// unmasked key, becomes `causal = 1`; when it is 0 everywhere else it is
// dropped, so the common causal-only mask costs nothing.
//
// Not fused (left unfused, still correct): attention whose probabilities
// have another use (returned attention weights, or dropout between softmax
// and the matmul: exports are eval-mode, so dropout is absent or p = 0 and
// folded), masks applied with `where` instead of an add, a scale applied
// after the mask or to the bias, batch or head dims that broadcast between
// q, k and v, head dims that differ between q/k and v, and biases from
// trainable weights (relative position biases).
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <cmath>

#define DEBUG_TYPE "colossal-fuse-attention"

namespace mlir::colossal {
#define GEN_PASS_DEF_FUSEATTENTIONPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

//===----------------------------------------------------------------------===//
// Mask analysis: plain values, no IR
//===----------------------------------------------------------------------===//

/// A bias value at or below this masks its key exactly: exp(x - max) is 0
/// in double for any finite score, as exp(-inf) is.
constexpr double kMaskedAtOrBelow = -1e30;

struct MaskShape {
  bool causal = false;        ///< every j > i + T - S is masked, no row empty
  bool zeroElsewhere = false; ///< and every other entry is exactly 0
};

/// Classifies a bias of `dims` (rank <= 4, right-aligned against
/// [B, H, S, T]; its last two dims must be S and T for a causal answer),
/// with `values` row-major.
MaskShape classifyMask(ArrayRef<double> values, ArrayRef<int64_t> dims,
                       int64_t rows, int64_t cols) {
  MaskShape shape;
  if (dims.size() < 2 || dims[dims.size() - 2] != rows || dims.back() != cols ||
      rows == 0 || cols == 0)
    return shape;
  int64_t matrices = static_cast<int64_t>(values.size()) / (rows * cols);
  bool zero = true;
  for (int64_t m = 0; m < matrices; ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      bool anyOpen = false;
      for (int64_t j = 0; j < cols; ++j) {
        double x = values[(m * rows + i) * cols + j];
        if (j > i + cols - rows) {
          if (!(x <= kMaskedAtOrBelow))
            return shape;
          continue;
        }
        anyOpen |= x > kMaskedAtOrBelow;
        zero &= x == 0.0;
      }
      // A row the mask closes entirely gives a uniform row unfused but 0
      // fused: keep such masks as biases, where both agree.
      if (!anyOpen)
        return shape;
    }
  }
  shape.causal = true;
  shape.zeroElsewhere = zero;
  return shape;
}

//===----------------------------------------------------------------------===//
// Matching
//===----------------------------------------------------------------------===//

ArrayRef<int64_t> dimsOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

Type elemOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}

StringRef nameOf(Operation *op) { return op->getName().stripDialect(); }

bool isColossal(Operation *op, StringRef name) {
  return op && op->getName().getDialectNamespace() == "colossal" &&
         nameOf(op) == name;
}

int64_t intAttr(Operation *op, StringRef name) {
  auto attr = op->getAttrOfType<IntegerAttr>(name);
  return attr ? attr.getInt() : 0;
}

/// The value of a one-element float constant, if `v` is one.
std::optional<double> scalarConstant(Value v) {
  auto c = v.getDefiningOp<graph::ConstantOp>();
  if (!c)
    return std::nullopt;
  auto dense = dyn_cast<DenseFPElementsAttr>(c.getValue());
  if (!dense || dense.getNumElements() != 1)
    return std::nullopt;
  return (*dense.getValues<APFloat>().begin()).convertToDouble();
}

/// True when `v` is computed from a weight marked trainable.
bool dependsOnTrainable(Value v) {
  SmallVector<Value> work{v};
  llvm::SmallPtrSet<Operation *, 16> seen;
  while (!work.empty()) {
    Operation *op = work.pop_back_val().getDefiningOp();
    if (!op || !seen.insert(op).second)
      continue;
    if (auto w = dyn_cast<graph::WeightOp>(op)) {
      if (w.getTrainable())
        return true;
      continue;
    }
    llvm::append_range(work, op->getOperands());
  }
  return false;
}

/// softmax(scores) @ v, taken apart.
struct AttentionMatch {
  Operation *softmax = nullptr, *pv = nullptr;
  /// The scores ops from the softmax's input up to the q @ kT matmul.
  SmallVector<Operation *> chain;
  Value q, v;
  Value k;  ///< [B, H, T, D] when known, else null
  Value kT; ///< [B, H, D, T], when k is null
  SmallVector<Value> biases;
  double scale = 1.0;
};

/// Parses the scores chain from `x` (the softmax input) up to the matmul.
/// `afterScale`: a scale was already seen (nearer the softmax), so no add
/// may come before it.
bool parseScores(Value x, bool afterScale, AttentionMatch &m) {
  Operation *op = x.getDefiningOp();
  if (!op || !x.hasOneUse() || op->getNumResults() != 1)
    return false;
  Type scoresType = x.getType();
  if (isColossal(op, "matmul")) {
    if (intAttr(op, "transpose_a"))
      return false;
    m.chain.push_back(op);
    m.q = op->getOperand(0);
    if (intAttr(op, "transpose_b"))
      m.k = op->getOperand(1);
    else
      m.kT = op->getOperand(1);
    return true;
  }
  if (isColossal(op, "mul") || isColossal(op, "div")) {
    for (unsigned side = 0; side < 2; ++side) {
      // div only by a constant divisor.
      if (isColossal(op, "div") && side == 0)
        continue;
      std::optional<double> c = scalarConstant(op->getOperand(side));
      Value rest = op->getOperand(1 - side);
      if (!c || rest.getType() != scoresType || !std::isfinite(*c))
        continue;
      AttentionMatch tryMatch = m;
      tryMatch.chain.push_back(op);
      tryMatch.scale *= isColossal(op, "div") ? 1.0 / *c : *c;
      if (parseScores(rest, /*afterScale=*/true, tryMatch)) {
        m = std::move(tryMatch);
        return true;
      }
    }
    return false;
  }
  if (isColossal(op, "add") && !afterScale) {
    for (unsigned side = 0; side < 2; ++side) {
      Value rest = op->getOperand(side), bias = op->getOperand(1 - side);
      if (rest.getType() != scoresType || elemOf(bias) != elemOf(rest) ||
          dimsOf(bias).size() > 4)
        continue;
      AttentionMatch tryMatch = m;
      tryMatch.chain.push_back(op);
      tryMatch.biases.push_back(bias);
      if (parseScores(rest, /*afterScale=*/false, tryMatch)) {
        m = std::move(tryMatch);
        return true;
      }
    }
  }
  return false;
}

std::optional<AttentionMatch> matchAt(Operation *softmax) {
  Value probs = softmax->getResult(0);
  auto type = cast<RankedTensorType>(probs.getType());
  if (type.getRank() != 4 || intAttr(softmax, "axis") != 3 ||
      !isa<FloatType>(type.getElementType()) || !probs.hasOneUse())
    return std::nullopt;
  Operation *pv = *probs.getUsers().begin();
  if (!isColossal(pv, "matmul") || pv->getOperand(0) != probs ||
      intAttr(pv, "transpose_a") || intAttr(pv, "transpose_b"))
    return std::nullopt;
  AttentionMatch m;
  m.softmax = softmax;
  m.pv = pv;
  m.v = pv->getOperand(1);
  if (!parseScores(softmax->getOperand(0), /*afterScale=*/false, m))
    return std::nullopt;
  for (Value bias : m.biases)
    if (dependsOnTrainable(bias))
      return std::nullopt;
  return m;
}

//===----------------------------------------------------------------------===//
// Rewriting
//===----------------------------------------------------------------------===//

/// If `x` [B, H, T, D] is GQA's repeat_kv of some [B, Hkv, T, D], that.
Value unrepeatKv(Value x) {
  Operation *flatten = x.getDefiningOp();
  if (!isColossal(flatten, "reshape"))
    return {};
  Operation *expand = flatten->getOperand(0).getDefiningOp();
  if (!isColossal(expand, "expand"))
    return {};
  Operation *unsqueeze = expand->getOperand(0).getDefiningOp();
  if (!isColossal(unsqueeze, "reshape"))
    return {};
  Value kv = unsqueeze->getOperand(0);
  ArrayRef<int64_t> full = dimsOf(x), grouped = dimsOf(expand->getResult(0)),
                    one = dimsOf(unsqueeze->getResult(0)), src = dimsOf(kv);
  // src [B, Hkv, T, D] -> one [B, Hkv, 1, T, D] -> grouped [B, Hkv, r, T, D]
  // -> full [B, Hkv * r, T, D].
  if (src.size() != 4 || one.size() != 5 || grouped.size() != 5 ||
      full.size() != 4)
    return {};
  bool ok =
      one[0] == src[0] && one[1] == src[1] && one[2] == 1 && one[3] == src[2] &&
      one[4] == src[3] && grouped[0] == src[0] && grouped[1] == src[1] &&
      grouped[3] == src[2] && grouped[4] == src[3] && full[0] == src[0] &&
      full[1] == src[1] * grouped[2] && full[2] == src[2] && full[3] == src[3];
  return ok ? kv : Value();
}

/// k [B, H, T, D] for kT [B, H, D, T]: the transpose's source when kT is a
/// transpose whose composition with the swap is the identity, else a new
/// transpose (of the source, so the old one can die).
FailureOr<Value> untranspose(GraphBuilder &gb, Location loc, Value kT) {
  Value src = kT;
  SmallVector<int64_t> perm = {0, 1, 3, 2};
  if (Operation *t = kT.getDefiningOp(); isColossal(t, "transpose")) {
    auto p = t->getAttrOfType<DenseI64ArrayAttr>("perm").asArrayRef();
    if (p.size() == 4) {
      // k[d] = kT[swap[d]] = src[p[swap[d]]].
      src = t->getOperand(0);
      perm = {p[0], p[1], p[3], p[2]};
    }
  }
  if (perm == SmallVector<int64_t>{0, 1, 2, 3})
    return src;
  rt::Attrs attrs(rt::OpKind::Transpose);
  attrs.setList("perm", std::vector<int64_t>(perm.begin(), perm.end()));
  return gb.create1(loc, attrs, {src});
}

/// Reads a constant bias as doubles, if it is one.
std::optional<SmallVector<double>> constantValues(Value bias) {
  auto c = bias.getDefiningOp<graph::ConstantOp>();
  if (!c)
    return std::nullopt;
  auto dense = dyn_cast<DenseFPElementsAttr>(c.getValue());
  if (!dense)
    return std::nullopt;
  SmallVector<double> values;
  values.reserve(dense.getNumElements());
  for (APFloat x : dense.getValues<APFloat>())
    values.push_back(x.convertToDouble());
  return values;
}

/// Erases `op` and then every producer that it leaves without uses, except
/// sources (weights, states) and block arguments.
void eraseWithDeadProducers(Operation *op) {
  SmallVector<Operation *> work{op};
  while (!work.empty()) {
    Operation *dead = work.pop_back_val();
    if (!dead->use_empty() || isa<graph::WeightOp, graph::StateOp>(dead))
      continue;
    llvm::SetVector<Operation *> producers;
    for (Value v : dead->getOperands())
      if (Operation *p = v.getDefiningOp())
        producers.insert(p);
    dead->erase();
    for (Operation *p : producers)
      work.push_back(p);
  }
}

LogicalResult rewrite(const AttentionMatch &m, bool &fused) {
  fused = false;
  OpBuilder b(m.pv);
  GraphBuilder gb(b);
  Location loc = m.softmax->getLoc();
  Value q = m.q, v = m.v;
  ArrayRef<int64_t> qd = dimsOf(q), vd = dimsOf(v);
  if (qd.size() != 4 || vd.size() != 4 || elemOf(q) != elemOf(v) ||
      elemOf(q) != elemOf(m.softmax->getResult(0)))
    return success();
  // Shapes first, so that nothing is built for a pattern that then fails.
  ArrayRef<int64_t> kd = m.k ? dimsOf(m.k) : dimsOf(m.kT);
  if (kd.size() != 4)
    return success();
  int64_t keys = m.k ? kd[2] : kd[3], depth = m.k ? kd[3] : kd[2];
  if (kd[0] != qd[0] || kd[1] != qd[1] || vd[0] != qd[0] || vd[1] != qd[1] ||
      depth != qd[3] || vd[2] != keys || vd[3] != qd[3] || qd[3] < 1)
    return success();

  Value k = m.k;
  if (!k) {
    auto u = untranspose(gb, loc, m.kT);
    if (failed(u))
      return failure();
    k = *u;
  }
  // GQA: both k and v must come unexpanded, by the same group size.
  Value kSmall = unrepeatKv(k), vSmall = unrepeatKv(v);
  if (kSmall && vSmall && dimsOf(kSmall) == dimsOf(vSmall)) {
    k = kSmall;
    v = vSmall;
  }

  Value bias;
  for (Value next : m.biases) {
    if (!bias) {
      bias = next;
      continue;
    }
    auto sum = gb.create1(loc, rt::OpKind::Add, {bias, next});
    if (failed(sum))
      return failure();
    bias = *sum;
  }
  bool causal = false;
  if (bias) {
    if (auto values = constantValues(bias)) {
      MaskShape shape = classifyMask(*values, dimsOf(bias), qd[2], keys);
      causal = shape.causal;
      if (shape.zeroElsewhere)
        bias = Value();
    }
  }

  rt::Attrs attrs(rt::OpKind::Attention);
  attrs.setF("scale", m.scale);
  attrs.setI("causal", causal);
  SmallVector<Value> operands = {q, k, v};
  if (bias)
    operands.push_back(bias);
  auto results = gb.create(loc, attrs, operands);
  if (failed(results))
    return failure();
  m.pv->getResult(0).replaceAllUsesWith((*results)[0]);
  eraseWithDeadProducers(m.pv);
  fused = true;
  return success();
}

struct FuseAttentionPass
    : public mlir::colossal::impl::FuseAttentionPassBase<FuseAttentionPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      // Collect first: the rewrite erases ops.
      SmallVector<Operation *> softmaxes;
      func.walk([&](Operation *op) {
        if (isColossal(op, "softmax"))
          softmaxes.push_back(op);
      });
      for (Operation *softmax : softmaxes) {
        std::optional<AttentionMatch> m = matchAt(softmax);
        bool fused = false;
        if (m && failed(rewrite(*m, fused)))
          return signalPassFailure();
      }
    }
  }
};

} // namespace
