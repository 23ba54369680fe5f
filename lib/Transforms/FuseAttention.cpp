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
// A bias is classified from its defining expression (CausalMask.h): when
// every value it depends on is computed by op-table ops from constants (no
// function argument, weight or state: HF's mask from arange-like index
// constants, less_equal/and/where with 0 and finfo.min, at any seq length
// that --shape fixed), it is evaluated exactly on the S x T grid, with
// batch and head broadcasts proved uniform. A bias that masks (<= -1e30:
// exp underflows to exactly 0 in double) every key j > i + T - S of every
// row i, and leaves every row some unmasked key, becomes `causal = 1`;
// when it is 0 everywhere else it is dropped (its expression dies with its
// last use), so the common causal-only mask costs nothing. Sliding windows,
// shifted diagonals and padding terms keep their bias (a shifted diagonal
// that opens a future key, or a bias of data, is not causal at all).
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

#include "colossal/Analysis/CausalMask.h"
#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <cmath>
#include <cstring>
#include <tuple>

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

//===----------------------------------------------------------------------===//
// Mask recognition: the bias's defining expression, for CausalMask
//===----------------------------------------------------------------------===//

/// The most ops a bias expression may have (HF's masks have 4 to 10).
constexpr size_t kMaxMaskOps = 64;
/// The most elements any tensor of its evaluation may have (an S x T grid
/// of seq 4096); bigger masks keep their bias.
constexpr int64_t kMaxMaskElements = int64_t(1) << 24;

/// A constant's value, with every dim of a splat collapsed to 1.
std::optional<rt::HostTensor> constantTensor(graph::ConstantOp c) {
  auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
  std::optional<rt::TensorType> type = toTensorType(c.getResult().getType());
  if (!dense || !type)
    return std::nullopt;
  const bool isBool = type->dtype == rt::DType::kBool;
  if (dense.isSplat())
    type->dims.assign(type->rank(), 1);
  if (type->numElements() > kMaxMaskElements)
    return std::nullopt;
  rt::HostTensor t(*type);
  if (isBool) {
    int64_t i = 0;
    for (bool bit : dense.getValues<bool>()) {
      if (i == type->numElements())
        break;
      t.bytes[i++] = bit ? 1 : 0;
    }
    return t;
  }
  ArrayRef<char> raw = dense.getRawData();
  // A splat stores its one element; anything else stores them all.
  if (dense.isSplat() ? raw.size() < t.bytes.size()
                      : raw.size() != t.bytes.size())
    return std::nullopt;
  std::memcpy(t.bytes.data(), raw.data(), t.bytes.size());
  return t;
}

/// Appends the expression computing `v` to `nodes` (operands first) and
/// returns its node; std::nullopt when any value it depends on is not
/// computed by op-table ops from constants: a function argument (an input,
/// a padding mask), a weight or a state is data, and so is anything the
/// expression cannot name. So a bias that depends on data is never a mask.
std::optional<unsigned> appendMaskExpr(Value v,
                                       SmallVectorImpl<MaskExprNode> &nodes,
                                       llvm::DenseMap<Value, unsigned> &index) {
  if (auto it = index.find(v); it != index.end())
    return it->second;
  Operation *op = v.getDefiningOp();
  std::optional<rt::TensorType> type = toTensorType(v.getType());
  if (!op || !type || op->getNumResults() != 1 || op->getNumRegions() != 0 ||
      nodes.size() >= kMaxMaskOps)
    return std::nullopt;
  MaskExprNode node;
  node.type = *type;
  if (auto c = dyn_cast<graph::ConstantOp>(op)) {
    node.constant = constantTensor(c);
    if (!node.constant)
      return std::nullopt;
  } else {
    if (op->getName().getDialectNamespace() != "colossal")
      return std::nullopt;
    const rt::OpInfo *info = rt::lookupOp(nameOf(op));
    if (!info || info->numOutputs != 1)
      return std::nullopt;
    FailureOr<rt::Attrs> attrs =
        attrsFromMlir(op->getLoc(), info->kind, op->getAttrDictionary(),
                      SmallVector<Type>(op->getResultTypes()));
    if (failed(attrs))
      return std::nullopt;
    node.attrs = std::move(*attrs);
    for (Value operand : op->getOperands()) {
      std::optional<unsigned> i = appendMaskExpr(operand, nodes, index);
      if (!i)
        return std::nullopt;
      node.operands.push_back(*i);
    }
  }
  nodes.push_back(std::move(node));
  index[v] = nodes.size() - 1;
  return nodes.size() - 1;
}

/// The expression of the sum of `biases`, if each is one.
std::optional<SmallVector<MaskExprNode>> buildMaskExpr(ArrayRef<Value> biases) {
  SmallVector<MaskExprNode> nodes;
  llvm::DenseMap<Value, unsigned> index;
  std::optional<unsigned> sum;
  for (Value bias : biases) {
    std::optional<unsigned> next = appendMaskExpr(bias, nodes, index);
    if (!next)
      return std::nullopt;
    if (!sum) {
      sum = next;
      continue;
    }
    // As rewrite() sums them: add(sum, next).
    MaskExprNode add;
    add.attrs = rt::Attrs(rt::OpKind::Add);
    add.operands = {*sum, *next};
    std::vector<rt::TensorType> outs;
    if (!rt::inferOutputTypes(add.attrs, {nodes[*sum].type, nodes[*next].type},
                              outs)
             .isOk())
      return std::nullopt;
    add.type = outs.front();
    nodes.push_back(std::move(add));
    sum = nodes.size() - 1;
  }
  if (!sum || *sum + 1 != nodes.size())
    return std::nullopt;
  return nodes;
}

/// Classifies the bias of `m` (the sum of its biases) against its S x T
/// scores. Reads the IR only; `memo` keys a single bias with its S and T,
/// as every layer shares one mask.
using MaskMemo = llvm::DenseMap<std::tuple<Value, int64_t, int64_t>, MaskShape>;
MaskShape classifyBias(const AttentionMatch &m, MaskMemo &memo) {
  if (m.biases.empty())
    return {};
  ArrayRef<int64_t> qd = dimsOf(m.q);
  ArrayRef<int64_t> kd = m.k ? dimsOf(m.k) : dimsOf(m.kT);
  if (qd.size() != 4 || kd.size() != 4)
    return {};
  int64_t rows = qd[2], cols = m.k ? kd[2] : kd[3];
  std::tuple<Value, int64_t, int64_t> key{
      m.biases.size() == 1 ? m.biases.front() : Value(), rows, cols};
  if (std::get<0>(key))
    if (auto it = memo.find(key); it != memo.end())
      return it->second;
  MaskShape shape;
  if (auto nodes = buildMaskExpr(m.biases))
    shape = classifyMaskExpr(*nodes, rows, cols, kMaxMaskElements);
  if (std::get<0>(key))
    memo[key] = shape;
  return shape;
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

LogicalResult rewrite(const AttentionMatch &m, MaskShape mask, bool &fused) {
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
  // A bias proved to be the causal mask goes; one that only contains it
  // (a padding or window mask summed in) stays, and the kernel may still
  // skip the keys it closes.
  bool causal = bias && mask.causal;
  if (causal && mask.zeroElsewhere) {
    Operation *sumOp = m.biases.size() > 1 ? bias.getDefiningOp() : nullptr;
    bias = Value();
    if (sumOp)
      eraseWithDeadProducers(sumOp);
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
      // Classify every attention's bias before rewriting any, so that the
      // masks' memo (one mask serves every layer) sees only live values.
      // The rewrites then match again in order, as a rewrite replaces values
      // a later match may read (a layer's output is the next one's input).
      MaskMemo memo;
      SmallVector<std::pair<SmallVector<Value>, MaskShape>> masks;
      for (Operation *softmax : softmaxes) {
        std::optional<AttentionMatch> m = matchAt(softmax);
        if (m)
          masks.emplace_back(m->biases, classifyBias(*m, memo));
        else
          masks.emplace_back();
      }
      for (auto [softmax, classified] : llvm::zip_equal(softmaxes, masks)) {
        std::optional<AttentionMatch> m = matchAt(softmax);
        if (!m)
          continue;
        // Biases replaced by an earlier rewrite were classified as other
        // values: claim nothing for them.
        MaskShape mask =
            m->biases == classified.first ? classified.second : MaskShape();
        bool fused = false;
        if (failed(rewrite(*m, mask, fused)))
          return signalPassFailure();
      }
    }
  }
};

} // namespace
