//===- AttentionKernelTest.cpp - attention and attention_grad on the CPU --===//
//
// The CPU reference of the fused attention ops, checked two ways:
//  - attention against the unfused chain the compiler replaces (matmul with
//    transpose_b, mul by the scale, add of the mask, softmax, matmul; GQA's
//    repeat_kv as reshape/expand/reshape), each op run by its own CPU
//    kernel, and lse against log-sum-exp of those scores;
//  - attention_grad against central finite differences of
//    L = sum(attention(q, k, v).out * R) in f64, for q, k and v.
// Cases cover GQA, causal (S = T and the bottom-right S < T), an additive
// bias broadcast along batch, heads and rows, and a fully masked row.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Kernels.h"
#include "colossal/runtime/OpTable.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace rt = ::colossal::runtime;
using rt::DType;
using rt::HostTensor;
using rt::OpKind;
using Dims = std::vector<int64_t>;

namespace {

HostTensor tensor(const Dims &dims, const std::vector<double> &values,
                  DType dtype = DType::kF64) {
  HostTensor t(rt::TensorType{dtype, dims});
  for (size_t i = 0; i < values.size(); ++i)
    rt::storeFromDouble(t.ref(), static_cast<int64_t>(i), values[i]);
  return t;
}

std::vector<double> values(const HostTensor &t) {
  std::vector<double> out(static_cast<size_t>(t.type.numElements()));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = rt::loadAsDouble(t.ref(), static_cast<int64_t>(i));
  return out;
}

std::vector<double> randomValues(size_t count, std::mt19937 &gen,
                                 double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> out(count);
  for (double &x : out)
    x = dist(gen);
  return out;
}

int64_t count(const Dims &dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    n *= d;
  return n;
}

/// Runs one op by its CPU kernel; fails the test on an error.
std::vector<HostTensor> run(const rt::Attrs &attrs,
                            const std::vector<HostTensor> &inputs) {
  std::vector<HostTensor> outputs;
  rt::Status st = rt::evaluateOp(attrs, inputs, outputs);
  EXPECT_TRUE(st.isOk()) << st.message();
  return outputs;
}

HostTensor run1(const rt::Attrs &attrs, const std::vector<HostTensor> &inputs) {
  std::vector<HostTensor> out = run(attrs, inputs);
  return out.empty() ? HostTensor() : out[0];
}

rt::Attrs shapeAttrs(OpKind kind, const Dims &shape) {
  rt::Attrs attrs(kind);
  attrs.setList("shape", shape);
  return attrs;
}

struct Case {
  std::string name;
  int64_t batch, heads, kvHeads, rows, cols, depth;
  bool causal;
  Dims biasDims; ///< empty: no bias
  double scale;
};

const Case kCases[] = {
    {"plain", 2, 2, 2, 3, 3, 4, false, {}, 0.5},
    {"gqa", 1, 4, 2, 3, 5, 4, false, {}, 0.35},
    {"mqa causal", 2, 3, 1, 4, 4, 2, true, {}, 1.0},
    {"causal S < T", 1, 2, 2, 2, 5, 3, true, {}, 0.7},
    {"bias per batch and key", 2, 2, 1, 3, 4, 4, false, {2, 1, 1, 4}, 0.5},
    {"bias rows x keys, causal", 1, 2, 2, 4, 4, 3, true, {4, 4}, 0.9},
};

/// The unfused chain on the CPU kernels: softmax(q k^T * scale + mask) v,
/// with k and v repeated to the query heads as repeat_kv does.
struct Unfused {
  HostTensor out, scores; // out [B, Hq, S, D]; scores [B, Hq, S, T] pre-softmax
};

Unfused unfused(const Case &c, const HostTensor &q, const HostTensor &k,
                const HostTensor &v, const HostTensor *bias) {
  int64_t group = c.heads / c.kvHeads;
  auto repeat = [&](const HostTensor &x) {
    HostTensor r = run1(
        shapeAttrs(OpKind::Reshape, {c.batch, c.kvHeads, 1, c.cols, c.depth}),
        {x});
    r = run1(shapeAttrs(OpKind::Expand,
                        {c.batch, c.kvHeads, group, c.cols, c.depth}),
             {r});
    return run1(
        shapeAttrs(OpKind::Reshape, {c.batch, c.heads, c.cols, c.depth}), {r});
  };
  HostTensor kr = repeat(k), vr = repeat(v);
  rt::Attrs mm(OpKind::MatMul);
  mm.setI("transpose_b", 1);
  HostTensor s = run1(mm, {q, kr});
  s = run1(rt::Attrs(OpKind::Mul), {s, tensor({}, {c.scale})});
  if (bias)
    s = run1(rt::Attrs(OpKind::Add), {s, *bias});
  if (c.causal) {
    std::vector<double> mask(static_cast<size_t>(c.rows * c.cols), 0.0);
    for (int64_t i = 0; i < c.rows; ++i)
      for (int64_t j = 0; j < c.cols; ++j)
        if (j > i + c.cols - c.rows)
          mask[i * c.cols + j] = -INFINITY;
    s = run1(rt::Attrs(OpKind::Add), {s, tensor({c.rows, c.cols}, mask)});
  }
  rt::Attrs softmax(OpKind::Softmax);
  softmax.setI("axis", 3);
  HostTensor p = run1(softmax, {s});
  return {run1(rt::Attrs(OpKind::MatMul), {p, vr}), s};
}

rt::Attrs attentionAttrs(OpKind kind, const Case &c) {
  rt::Attrs attrs(kind);
  attrs.setF("scale", c.scale);
  attrs.setI("causal", c.causal);
  return attrs;
}

struct Inputs {
  HostTensor q, k, v, bias;
  bool hasBias;
  std::vector<HostTensor> list() const {
    std::vector<HostTensor> in{q, k, v};
    if (hasBias)
      in.push_back(bias);
    return in;
  }
};

Inputs makeInputs(const Case &c, std::mt19937 &gen) {
  Dims qd{c.batch, c.heads, c.rows, c.depth},
      kd{c.batch, c.kvHeads, c.cols, c.depth};
  Inputs in;
  in.q = tensor(qd, randomValues(count(qd), gen));
  in.k = tensor(kd, randomValues(count(kd), gen));
  in.v = tensor(kd, randomValues(count(kd), gen));
  in.hasBias = !c.biasDims.empty();
  if (in.hasBias)
    in.bias = tensor(c.biasDims, randomValues(count(c.biasDims), gen, -2, 2));
  return in;
}

TEST(AttentionKernel, ForwardMatchesTheUnfusedChain) {
  std::mt19937 gen(7);
  for (const Case &c : kCases) {
    SCOPED_TRACE(c.name);
    Inputs in = makeInputs(c, gen);
    std::vector<HostTensor> fused =
        run(attentionAttrs(OpKind::Attention, c), in.list());
    ASSERT_EQ(fused.size(), 2u);
    Unfused ref = unfused(c, in.q, in.k, in.v, in.hasBias ? &in.bias : nullptr);
    std::vector<double> got = values(fused[0]), want = values(ref.out);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-12) << "out[" << i << "]";
    // lse = log sum_j exp(score_j), stored in f32.
    EXPECT_EQ(fused[1].type.dtype, DType::kF32);
    std::vector<double> lse = values(fused[1]), scores = values(ref.scores);
    for (int64_t row = 0; row < count({c.batch, c.heads, c.rows}); ++row) {
      double sum = 0.0;
      for (int64_t j = 0; j < c.cols; ++j)
        sum += std::exp(scores[row * c.cols + j]);
      EXPECT_NEAR(lse[row], std::log(sum), 1e-6 * std::fabs(std::log(sum)))
          << "lse[" << row << "]";
    }
  }
}

TEST(AttentionKernel, GradientMatchesFiniteDifferences) {
  std::mt19937 gen(11);
  for (const Case &c : kCases) {
    SCOPED_TRACE(c.name);
    Inputs in = makeInputs(c, gen);
    std::vector<HostTensor> fwd =
        run(attentionAttrs(OpKind::Attention, c), in.list());
    ASSERT_EQ(fwd.size(), 2u);
    Dims od = fwd[0].type.dims;
    std::vector<double> weights = randomValues(count(od), gen);
    HostTensor dout = tensor(od, weights);
    std::vector<HostTensor> gradIn = in.list();
    gradIn.push_back(fwd[0]);
    gradIn.push_back(fwd[1]);
    gradIn.push_back(dout);
    std::vector<HostTensor> grads =
        run(attentionAttrs(OpKind::AttentionGrad, c), gradIn);
    ASSERT_EQ(grads.size(), 3u);

    auto loss = [&](const Inputs &x) {
      std::vector<HostTensor> out =
          run(attentionAttrs(OpKind::Attention, c), x.list());
      std::vector<double> o = values(out[0]);
      double sum = 0.0;
      for (size_t i = 0; i < o.size(); ++i)
        sum += o[i] * weights[i];
      return sum;
    };
    const double h = 1e-6;
    HostTensor Inputs::*members[] = {&Inputs::q, &Inputs::k, &Inputs::v};
    const char *names[] = {"dq", "dk", "dv"};
    for (int w = 0; w < 3; ++w) {
      std::vector<double> analytic = values(grads[w]);
      std::vector<double> base = values(in.*members[w]);
      ASSERT_EQ(analytic.size(), base.size());
      double largest = 0.0;
      for (size_t i = 0; i < base.size(); ++i) {
        Inputs plus = in, minus = in;
        std::vector<double> up = base, down = base;
        up[i] += h;
        down[i] -= h;
        plus.*members[w] = tensor((in.*members[w]).type.dims, up);
        minus.*members[w] = tensor((in.*members[w]).type.dims, down);
        double fd = (loss(plus) - loss(minus)) / (2 * h);
        largest = std::max(largest, std::fabs(fd));
        EXPECT_NEAR(analytic[i], fd, 1e-7 + 1e-6 * std::fabs(fd))
            << names[w] << "[" << i << "]";
      }
      EXPECT_GT(largest, 1e-3) << names[w] << " is vacuous";
    }
  }
}

TEST(AttentionKernel, FullyMaskedRowGivesZeroAndNegativeInfinity) {
  // Row 0's only key is masked by the bias (-inf): out 0, lse -inf, and no
  // gradient flows through that row; row 1 is a normal row.
  Case c{"masked", 1, 1, 1, 2, 1, 2, false, {2, 1}, 1.0};
  Inputs in;
  in.q = tensor({1, 1, 2, 2}, {0.5, -0.5, 1.0, 2.0});
  in.k = tensor({1, 1, 1, 2}, {0.25, 0.75});
  in.v = tensor({1, 1, 1, 2}, {3.0, -4.0});
  in.bias = tensor({2, 1}, {-INFINITY, 0.0});
  in.hasBias = true;
  std::vector<HostTensor> fwd =
      run(attentionAttrs(OpKind::Attention, c), in.list());
  ASSERT_EQ(fwd.size(), 2u);
  std::vector<double> out = values(fwd[0]), lse = values(fwd[1]);
  EXPECT_EQ(out[0], 0.0);
  EXPECT_EQ(out[1], 0.0);
  EXPECT_EQ(out[2], 3.0); // one open key: its value row
  EXPECT_EQ(out[3], -4.0);
  EXPECT_TRUE(std::isinf(lse[0]) && lse[0] < 0);
  EXPECT_NEAR(lse[1], 1.0 * 0.25 + 2.0 * 0.75, 1e-6);

  std::vector<HostTensor> gradIn = in.list();
  gradIn.push_back(fwd[0]);
  gradIn.push_back(fwd[1]);
  gradIn.push_back(tensor({1, 1, 2, 2}, {1.0, 1.0, 1.0, 1.0}));
  std::vector<HostTensor> grads =
      run(attentionAttrs(OpKind::AttentionGrad, c), gradIn);
  ASSERT_EQ(grads.size(), 3u);
  std::vector<double> dq = values(grads[0]), dv = values(grads[2]);
  for (double x : dq)
    EXPECT_EQ(x, 0.0);   // one key per row: the softmax is constant
  EXPECT_EQ(dv[0], 1.0); // only row 1 reads v, with probability 1
  EXPECT_EQ(dv[1], 1.0);
}

TEST(AttentionKernel, ShapeRulesNameTheField) {
  auto infer = [](const std::vector<rt::TensorType> &in) {
    std::vector<rt::TensorType> out;
    rt::Attrs attrs(OpKind::Attention);
    return rt::inferOutputTypes(attrs, in, out).message();
  };
  rt::TensorType q{DType::kF32, {1, 4, 3, 8}}, k{DType::kF32, {1, 3, 3, 8}};
  EXPECT_NE(infer({q, k, k}).find("query heads 4 must be a multiple of kv "
                                  "heads 3"),
            std::string::npos);
  rt::TensorType empty{DType::kF32, {1, 4, 3, 0}};
  EXPECT_NE(infer({empty, empty, empty}).find("head dim must be >= 1"),
            std::string::npos);
  rt::TensorType v{DType::kF32, {1, 4, 5, 8}};
  EXPECT_NE(infer({q, q, v}).find("must have one shape"), std::string::npos);
  rt::TensorType bf{DType::kBF16, {1, 4, 3, 8}};
  EXPECT_NE(infer({q, bf, bf}).find("operand dtypes differ"),
            std::string::npos);
}

} // namespace
