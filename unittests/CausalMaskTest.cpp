//===- CausalMaskTest.cpp - Causal mask recognition, without IR -----------===//

#include "colossal/Analysis/CausalMask.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

constexpr double kF32Min = -3.4028234663852886e38;  // finfo(float32).min
constexpr double kBF16Min = -3.3895313892515355e38; // finfo(bfloat16).min
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kLimit = int64_t(1) << 24;

/// An S x T grid, row-major, with f(i, j) at (i, j).
template <typename F>
std::vector<double> grid(int64_t rows, int64_t cols, F f) {
  std::vector<double> v;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      v.push_back(f(i, j));
  return v;
}

std::vector<double> causalGrid(int64_t n, double fill) {
  return grid(n, n, [&](int64_t i, int64_t j) { return j > i ? fill : 0.0; });
}

/// An expression under construction: each call appends a node and returns
/// its index.
struct Expr {
  std::vector<MaskExprNode> nodes;

  unsigned leaf(rt::HostTensor t, std::vector<int64_t> fullDims) {
    MaskExprNode n;
    n.type = rt::TensorType{t.type.dtype, std::move(fullDims)};
    n.constant = std::move(t);
    nodes.push_back(std::move(n));
    return nodes.size() - 1;
  }
  /// A constant of `dims` whose element at a row-major index is f(index).
  template <typename F>
  unsigned constant(rt::DType dtype, std::vector<int64_t> dims, F f) {
    rt::HostTensor t(rt::TensorType{dtype, dims});
    for (int64_t i = 0; i < t.type.numElements(); ++i)
      rt::storeFromDouble(t.ref(), i, f(i));
    return leaf(std::move(t), dims);
  }
  /// A splat constant of `dims`, stored collapsed as the pass stores it.
  unsigned splat(rt::DType dtype, std::vector<int64_t> dims, double value) {
    rt::HostTensor t(
        rt::TensorType{dtype, std::vector<int64_t>(dims.size(), 1)});
    rt::storeFromDouble(t.ref(), 0, value);
    return leaf(std::move(t), dims);
  }
  unsigned op(rt::Attrs attrs, std::vector<unsigned> operands) {
    MaskExprNode n;
    std::vector<rt::TensorType> ins, outs;
    for (unsigned o : operands)
      ins.push_back(nodes[o].type);
    EXPECT_TRUE(rt::inferOutputTypes(attrs, ins, outs).isOk());
    n.type = outs.at(0);
    n.attrs = std::move(attrs);
    n.operands = std::move(operands);
    nodes.push_back(std::move(n));
    return nodes.size() - 1;
  }
  unsigned op(rt::OpKind kind, std::vector<unsigned> operands) {
    return op(rt::Attrs(kind), std::move(operands));
  }
  MaskShape classify(int64_t rows, int64_t cols, int64_t limit = kLimit) {
    return classifyMaskExpr(nodes, rows, cols, limit);
  }
};

/// HF's causal mask as the dynamo exporter leaves it after --shape:
/// where(and(and(true, cols <= rows), true[B,1,1,S]), 0, fill) with the
/// index tensors [1,1,1,S] (keys) and [1,1,S,1] (queries) offset by
/// `rowShift`, of `dtype`. Returns the `where` node.
unsigned hfCausal(Expr &e, int64_t batch, int64_t seq, double fill,
                  rt::DType dtype = rt::DType::kF32, int64_t rowShift = 0) {
  unsigned keys = e.constant(rt::DType::kI64, {1, 1, 1, seq},
                             [](int64_t i) { return double(i); });
  unsigned queries =
      e.constant(rt::DType::kI64, {1, 1, seq, 1},
                 [&](int64_t i) { return double(i + rowShift); });
  unsigned le = e.op(rt::OpKind::LessEqual, {keys, queries});
  unsigned t = e.splat(rt::DType::kBool, {}, 1);
  unsigned a = e.op(rt::OpKind::And, {t, le});
  unsigned pad = e.splat(rt::DType::kBool, {batch, 1, 1, seq}, 1);
  unsigned cond = e.op(rt::OpKind::And, {a, pad});
  unsigned zero = e.splat(dtype, {}, 0.0);
  unsigned masked = e.splat(dtype, {}, fill);
  return e.op(rt::OpKind::Where, {cond, zero, masked});
}

} // namespace

//===----------------------------------------------------------------------===//
// classifyMask: plain grids
//===----------------------------------------------------------------------===//

// 0 on and below the diagonal, -inf or finfo.min above: causal, droppable.
TEST(ClassifyMask, CausalWithInfOrLowest) {
  for (double fill : {-kInf, kF32Min, kBF16Min}) {
    MaskShape s = classifyMask(causalGrid(5, fill), {1, 1, 5, 5}, 5, 5);
    EXPECT_TRUE(s.causal) << fill;
    EXPECT_TRUE(s.zeroElsewhere) << fill;
  }
}

// -1e4 (old GPT-2) and f16's -65504 do not provably underflow exp.
TEST(ClassifyMask, WeakFillIsNotAMask) {
  for (double fill : {-1e4, -65504.0})
    EXPECT_FALSE(classifyMask(causalGrid(4, fill), {4, 4}, 4, 4).causal);
}

// S < T: bottom-right alignment, key j open for row i iff j <= i + T - S.
TEST(ClassifyMask, BottomRightAligned) {
  auto v =
      grid(2, 4, [](int64_t i, int64_t j) { return j > i + 2 ? -kInf : 0.0; });
  MaskShape s = classifyMask(v, {2, 4}, 2, 4);
  EXPECT_TRUE(s.causal);
  EXPECT_TRUE(s.zeroElsewhere);
  // The top-left aligned mask (j > i) masks keys the kernel would open.
  auto topLeft =
      grid(2, 4, [](int64_t i, int64_t j) { return j > i ? -kInf : 0.0; });
  s = classifyMask(topLeft, {2, 4}, 2, 4);
  EXPECT_TRUE(s.causal);
  EXPECT_FALSE(s.zeroElsewhere);
}

// A diagonal shifted up opens a future key: not causal at all. Shifted
// down, the first row is closed entirely: not causal either.
TEST(ClassifyMask, ShiftedDiagonal) {
  auto up =
      grid(4, 4, [](int64_t i, int64_t j) { return j > i + 1 ? -kInf : 0.0; });
  EXPECT_FALSE(classifyMask(up, {4, 4}, 4, 4).causal);
  auto down =
      grid(4, 4, [](int64_t i, int64_t j) { return j >= i ? -kInf : 0.0; });
  EXPECT_FALSE(classifyMask(down, {4, 4}, 4, 4).causal);
}

// A sliding window is causal plus more: causal, but the bias must stay.
TEST(ClassifyMask, SlidingWindowKeepsBias) {
  auto v = grid(6, 6, [](int64_t i, int64_t j) {
    return (j > i || j <= i - 3) ? kF32Min : 0.0;
  });
  MaskShape s = classifyMask(v, {6, 6}, 6, 6);
  EXPECT_TRUE(s.causal);
  EXPECT_FALSE(s.zeroElsewhere);
}

// One wrong element anywhere, in any matrix, defeats the answer.
TEST(ClassifyMask, EveryElementEveryMatrix) {
  std::vector<double> two = causalGrid(4, -kInf);
  std::vector<double> second = causalGrid(4, -kInf);
  second[1 * 4 + 3] = 0.0; // row 1 opens key 3
  two.insert(two.end(), second.begin(), second.end());
  EXPECT_FALSE(classifyMask(two, {2, 1, 4, 4}, 4, 4).causal);
  // A non-zero open entry keeps the bias.
  std::vector<double> small = causalGrid(4, -kInf);
  small[2 * 4 + 1] = 1e-30;
  MaskShape s = classifyMask(small, {4, 4}, 4, 4);
  EXPECT_TRUE(s.causal);
  EXPECT_FALSE(s.zeroElsewhere);
}

// Dims must end in S x T (a [T] or [1, T] bias broadcast over rows is not
// a causal mask even when T = 1).
TEST(ClassifyMask, ShapeMustBeTheGrid) {
  EXPECT_FALSE(classifyMask({0.0, -kInf}, {1, 2}, 2, 2).causal);
  EXPECT_FALSE(classifyMask({0.0, -kInf}, {2}, 2, 2).causal);
  EXPECT_FALSE(classifyMask({}, {0, 0}, 0, 0).causal);
}

//===----------------------------------------------------------------------===//
// collapseUniformDims
//===----------------------------------------------------------------------===//

TEST(CollapseUniformDims, KeepsOnlyVaryingDims) {
  // [2, 3, 4], value = j (the middle index): constant along dims 0 and 2.
  rt::HostTensor t(rt::TensorType{rt::DType::kI64, {2, 3, 4}});
  for (int64_t i = 0; i < 24; ++i)
    t.as<int64_t>()[i] = (i / 4) % 3;
  rt::HostTensor c = collapseUniformDims(t);
  EXPECT_EQ(c.type.dims, (std::vector<int64_t>{1, 3, 1}));
  EXPECT_EQ(c.as<int64_t>()[0], 0);
  EXPECT_EQ(c.as<int64_t>()[2], 2);
  // One differing element keeps its dims.
  t.as<int64_t>()[23] = 7;
  EXPECT_EQ(collapseUniformDims(t).type.dims, (std::vector<int64_t>{2, 3, 4}));
}

//===----------------------------------------------------------------------===//
// Expressions: HF's masks as the exporters leave them
//===----------------------------------------------------------------------===//

// OPT dynamo at --shape 8x1024 (scaled down to 8x64): one collapsed 64 x 64
// grid, batch proved uniform, causal and droppable.
TEST(ClassifyMaskExpr, HfCausalDynamo) {
  Expr e;
  hfCausal(e, 8, 64, kF32Min);
  std::optional<rt::HostTensor> v = evaluateMaskExpr(e.nodes, kLimit);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type.dims, (std::vector<int64_t>{1, 1, 64, 64}));
  MaskShape s = e.classify(64, 64);
  EXPECT_TRUE(s.causal);
  EXPECT_TRUE(s.zeroElsewhere);
}

// The same in bf16 with bf16's lowest and with -inf.
TEST(ClassifyMaskExpr, Bf16AndInf) {
  for (double fill : {kBF16Min, -kInf}) {
    Expr e;
    hfCausal(e, 2, 16, fill, rt::DType::kBF16);
    MaskShape s = e.classify(16, 16);
    EXPECT_TRUE(s.causal) << fill;
    EXPECT_TRUE(s.zeroElsewhere) << fill;
  }
}

// The query index shifted by one (a mask for a cache offset) opens a
// future key: not causal. Shifted by -1, row 0 is closed: not causal.
TEST(ClassifyMaskExpr, OffsetDiagonal) {
  for (int64_t shift : {1, -1}) {
    Expr e;
    hfCausal(e, 2, 16, kF32Min, rt::DType::kF32, shift);
    EXPECT_FALSE(e.classify(16, 16).causal) << shift;
  }
}

// Mistral's sliding window: and(causal, keys > queries - W). Causal, but
// the window must stay a bias.
TEST(ClassifyMaskExpr, SlidingWindow) {
  Expr e;
  const int64_t seq = 16, window = 4;
  unsigned keys = e.constant(rt::DType::kI64, {1, 1, 1, seq},
                             [](int64_t i) { return double(i); });
  unsigned queries = e.constant(rt::DType::kI64, {1, 1, seq, 1},
                                [](int64_t i) { return double(i); });
  unsigned le = e.op(rt::OpKind::LessEqual, {keys, queries});
  unsigned w = e.splat(rt::DType::kI64, {}, window);
  unsigned lo = e.op(rt::OpKind::Sub, {queries, w});
  unsigned inWindow = e.op(rt::OpKind::Greater, {keys, lo});
  unsigned cond = e.op(rt::OpKind::And, {le, inWindow});
  unsigned zero = e.splat(rt::DType::kF32, {}, 0.0);
  unsigned masked = e.splat(rt::DType::kF32, {}, kF32Min);
  e.op(rt::OpKind::Where, {cond, zero, masked});
  MaskShape s = e.classify(seq, seq);
  EXPECT_TRUE(s.causal);
  EXPECT_FALSE(s.zeroElsewhere);
}

// Causal plus a padding mask of zeros: still droppable. With one padded
// key in one batch row: causal, but the bias stays.
TEST(ClassifyMaskExpr, PlusPaddingMask) {
  for (bool padOne : {false, true}) {
    Expr e;
    unsigned causal = hfCausal(e, 2, 8, kF32Min);
    unsigned pad = e.constant(rt::DType::kF32, {2, 1, 1, 8}, [&](int64_t i) {
      return padOne && i == 8 + 5 ? kF32Min : 0.0;
    });
    e.op(rt::OpKind::Add, {causal, pad});
    MaskShape s = e.classify(8, 8);
    EXPECT_TRUE(s.causal) << padOne;
    EXPECT_EQ(s.zeroElsewhere, !padOne);
  }
}

// A mask that differs per batch row (the second row's keys shifted) is
// checked per matrix, not assumed uniform.
TEST(ClassifyMaskExpr, BatchRowsDiffer) {
  Expr e;
  unsigned keys = e.constant(rt::DType::kI64, {2, 1, 1, 4}, [](int64_t i) {
    return double(i % 4) + (i >= 4 ? -1.0 : 0.0);
  });
  unsigned queries = e.constant(rt::DType::kI64, {1, 1, 4, 1},
                                [](int64_t i) { return double(i); });
  unsigned le = e.op(rt::OpKind::LessEqual, {keys, queries});
  unsigned zero = e.splat(rt::DType::kF32, {}, 0.0);
  unsigned masked = e.splat(rt::DType::kF32, {}, -kInf);
  e.op(rt::OpKind::Where, {le, zero, masked});
  std::optional<rt::HostTensor> v = evaluateMaskExpr(e.nodes, kLimit);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type.dims, (std::vector<int64_t>{2, 1, 4, 4}));
  EXPECT_FALSE(e.classify(4, 4).causal);
}

// The torchscript form: a constant [1,1,S,S] bool grid (trilu-like),
// reshaped from a flat constant (the full-size fallback), then expanded
// over the batch.
TEST(ClassifyMaskExpr, ReshapeAndExpand) {
  Expr e;
  const int64_t seq = 8;
  unsigned flat = e.constant(rt::DType::kBool, {seq * seq}, [&](int64_t i) {
    return (i % seq) <= (i / seq) ? 1.0 : 0.0;
  });
  rt::Attrs reshape(rt::OpKind::Reshape);
  reshape.setList("shape", {1, 1, seq, seq});
  unsigned g = e.op(reshape, {flat});
  rt::Attrs expand(rt::OpKind::Expand);
  expand.setList("shape", {4, 1, seq, seq});
  unsigned x = e.op(expand, {g});
  unsigned zero = e.splat(rt::DType::kF32, {}, 0.0);
  unsigned masked = e.splat(rt::DType::kF32, {}, kF32Min);
  e.op(rt::OpKind::Where, {x, zero, masked});
  MaskShape s = e.classify(seq, seq);
  EXPECT_TRUE(s.causal);
  EXPECT_TRUE(s.zeroElsewhere);
  // Transposed, the mask opens the future instead.
  Expr t;
  unsigned flat2 =
      t.constant(rt::DType::kBool, {1, 1, seq, seq},
                 [&](int64_t i) { return (i % seq) <= (i / seq) ? 1.0 : 0.0; });
  rt::Attrs perm(rt::OpKind::Transpose);
  perm.setList("perm", {0, 1, 3, 2});
  unsigned tr = t.op(perm, {flat2});
  unsigned z2 = t.splat(rt::DType::kF32, {}, 0.0);
  unsigned m2 = t.splat(rt::DType::kF32, {}, kF32Min);
  t.op(rt::OpKind::Where, {tr, z2, m2});
  EXPECT_FALSE(t.classify(seq, seq).causal);
}

// Too big to evaluate under the limit, or malformed: not causal (the bias
// stays), never a crash.
TEST(ClassifyMaskExpr, LimitsAndMalformed) {
  Expr e;
  hfCausal(e, 2, 64, kF32Min);
  EXPECT_TRUE(e.classify(64, 64).causal);
  EXPECT_FALSE(e.classify(64, 64, /*limit=*/1000).causal);
  EXPECT_FALSE(e.classify(32, 64).causal); // not the scores' S

  Expr bad;
  unsigned a = bad.splat(rt::DType::kF32, {4, 4}, 0.0);
  bad.op(rt::OpKind::Neg, {a});
  bad.nodes.back().operands = {5}; // a later (missing) node
  EXPECT_FALSE(evaluateMaskExpr(bad.nodes, kLimit));
  EXPECT_FALSE(evaluateMaskExpr({}, kLimit));
}
