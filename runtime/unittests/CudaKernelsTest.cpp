//===- CudaKernelsTest.cpp - Every op on the GPU against the CPU reference ===//
//
// For every OpKind, random inputs of several shapes and dtypes run through
// the CPU kernels (the reference) and through the CUDA backend, whose output
// bytes are poisoned (0xFF: NaN in every float width) before the run, so an
// element a kernel forgets to write shows up. Then the executor on the GPU:
// the hand-built plans of TestPlans.h (forward, training, check-plan) give
// the CPU executor's numbers, and data-dependent kernel errors name the
// instruction.
//
// Tolerances (a case's `rtol`, on |gpu - cpu| / max(|cpu|, floor)):
//   0      bit-exact (NaN == NaN): data movement, integers, bools,
//          comparisons, casts, fills.
//   1e-5   f32 math. Both backends compute elementwise ops, reductions,
//          layer_norm, the loss and the optimizers in f64 and round once
//          (the GPU's f32 binary add/sub/mul/div/max/min are exact, see
//          Elementwise.cu; its layer_norm_grad column sums and softmax
//          differ in order or precision), so the results agree to an ulp
//          or two of f32;
//          transcendentals included (CUDA's and glibc's f64 exp, log, erf,
//          tanh, pow differ in the last bit of a double at most).
//   1e-2   bf16 outputs: one bf16 ulp is 2^-8 = 3.9e-3 relative, and two
//          correctly rounded results of f64 values that differ in their
//          last bits can be one ulp apart.
// `floor` is 1e-6 x max|cpu| (elementwise) except for matmul, whose floor is
// max|cpu| (norm-wise): cuBLASLt accumulates in f32 and the CPU in f64, so
// an output element that cancels to near 0 has a small absolute but a large
// relative error; fp32 GEMM error grows like sqrt(K) x 6e-8 x the terms.
//
// Every test skips itself when no GPU is visible (this binary is built
// with the CUDA backend only). bench/gpu_check.sh runs it on the GPU
// machine; each case prints one line with its measured error.
//
// Scatter-free gradients: gather_grad and gather_elements_grad sum in index
// order on the GPU too (no atomics), so they are deterministic and, like
// every op but matmul, bit-identical to the CPU in the runs recorded in
// docs/cuda.md.
//
//===----------------------------------------------------------------------===//

#include "Backend.h"
#include "cuda/AttentionCudnn.h"
#include "cuda/AttentionTC.h"
#include "cuda/FusedElementwise.h"

#include "colossal/runtime/Executor.h"
#include "colossal/runtime/FusedProgram.h"
#include "colossal/runtime/Kernels.h"

#include "TestPlans.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

using namespace colossal::runtime;

namespace {

using Dims = std::vector<int64_t>;

constexpr DType f32 = DType::kF32;
constexpr DType f16 = DType::kF16;
constexpr DType bf16 = DType::kBF16;
constexpr DType f64 = DType::kF64;
constexpr DType i64 = DType::kI64;
constexpr DType i32 = DType::kI32;
constexpr DType boolean = DType::kBool;
constexpr int64_t kNone = std::numeric_limits<int64_t>::min();

constexpr double kExact = 0.0;
constexpr double kF32Tol = 1e-5;
constexpr double kBF16Tol = 1e-2;

std::mt19937_64 &rng() {
  static std::mt19937_64 generator(20251128);
  return generator;
}

HostTensor uniform(DType dtype, Dims dims, double lo = -2.0, double hi = 2.0) {
  HostTensor t(TensorType{dtype, std::move(dims)});
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < t.type.numElements(); ++i)
    storeFromDouble(t.ref(), i, dist(rng()));
  return t;
}

HostTensor integers(DType dtype, Dims dims, int64_t lo, int64_t hi) {
  HostTensor t(TensorType{dtype, std::move(dims)});
  std::uniform_int_distribution<int64_t> dist(lo, hi - 1);
  for (int64_t i = 0; i < t.type.numElements(); ++i)
    storeFromInt64(t.ref(), i, dist(rng()));
  return t;
}

HostTensor bools(Dims dims) { return integers(boolean, std::move(dims), 0, 2); }

HostTensor scalarF32(double value) {
  HostTensor t(TensorType{f32, {}});
  storeFromDouble(t.ref(), 0, value);
  return t;
}

HostTensor scalarI64(int64_t value) {
  HostTensor t(TensorType{i64, {}});
  storeFromInt64(t.ref(), 0, value);
  return t;
}

struct Case {
  std::string name;
  Attrs attrs;
  std::vector<HostTensor> inputs;
  double rtol = kF32Tol;
  /// Norm-wise comparison (floor = max|cpu|) instead of elementwise.
  bool normwise = false;
  /// Per output: the input whose bytes it shares (in place), or -1.
  std::vector<int> alias;
};

/// Appends cases to a list: add(name, attrs, inputs, rtol[, normwise]).
struct CaseAdder {
  std::vector<Case> &cases;
  void operator()(std::string_view name, Attrs attrs,
                  std::vector<HostTensor> inputs, double rtol,
                  bool normwise = false) const {
    Case c;
    c.name = std::string(name);
    c.attrs = std::move(attrs);
    c.inputs = std::move(inputs);
    c.rtol = rtol;
    c.normwise = normwise;
    cases.push_back(std::move(c));
  }
};

std::string shapeText(const std::vector<HostTensor> &inputs) {
  std::string text;
  for (const HostTensor &t : inputs)
    text += (text.empty() ? "" : ", ") + t.type.toString();
  return text;
}

Attrs op(OpKind kind) { return Attrs(kind); }

Attrs withI(Attrs a, const char *name, int64_t v) {
  a.setI(name, v);
  return a;
}
Attrs withF(Attrs a, const char *name, double v) {
  a.setF(name, v);
  return a;
}
Attrs withList(Attrs a, const char *name, Dims v) {
  a.setList(name, std::move(v));
  return a;
}
Attrs withDType(Attrs a, const char *name, DType v) {
  a.setDType(name, v);
  return a;
}

double tolFor(DType dtype) {
  return dtype == bf16 || dtype == f16 ? kBF16Tol : kF32Tol;
}

//===----------------------------------------------------------------------===//
// The cases: every OpKind at least once
//===----------------------------------------------------------------------===//

/// fused_elementwise with `records` (FusedProgram.h) over a result of dims
/// `shape`.
Attrs fusedOp(const std::vector<FusedRecord> &records,
              std::vector<double> constants, Dims shape) {
  Attrs a(OpKind::FusedElementwise);
  std::vector<int64_t> program;
  for (const FusedRecord &r : records)
    encodeFusedRecord(r, program);
  a.setList("program", program);
  a.setFloatList("constants", std::move(constants));
  a.setList("shape", std::move(shape));
  return a;
}

FusedRecord rec(OpKind op, DType dtype, std::vector<int> operands,
                int64_t immediate = 0) {
  FusedRecord r;
  r.op = op;
  r.dtype = dtype;
  r.numOperands = static_cast<int>(operands.size());
  for (size_t k = 0; k < operands.size(); ++k)
    r.operands[k] = operands[k];
  r.immediate = immediate;
  return r;
}

std::vector<Case> allCases() {
  std::vector<Case> cases;
  CaseAdder add{cases};

  // Unary float ops, f32 and bf16; positive inputs where the domain asks.
  const OpKind unaryFloat[] = {
      OpKind::Neg,     OpKind::Abs,   OpKind::Exp,        OpKind::Log,
      OpKind::Sqrt,    OpKind::Rsqrt, OpKind::Reciprocal, OpKind::Tanh,
      OpKind::Sigmoid, OpKind::Relu,  OpKind::Erf,        OpKind::Sin,
      OpKind::Cos,     OpKind::Gelu};
  for (OpKind kind : unaryFloat)
    for (DType dtype : {f32, bf16})
      for (const Dims &dims : {Dims{1000}, Dims{3, 5, 7}}) {
        bool positive = kind == OpKind::Log || kind == OpKind::Sqrt ||
                        kind == OpKind::Rsqrt || kind == OpKind::Reciprocal;
        for (int64_t approx : {0, 1}) {
          if (approx && kind != OpKind::Gelu)
            continue;
          Attrs a = op(kind);
          if (kind == OpKind::Gelu)
            a.setI("approximate", approx);
          add(std::string(opInfo(kind).name) + (approx ? "(tanh)" : ""), a,
              {positive ? uniform(dtype, dims, 0.1, 4.0)
                        : uniform(dtype, dims, -3.0, 3.0)},
              tolFor(dtype));
        }
      }
  for (OpKind kind : {OpKind::Neg, OpKind::Abs, OpKind::Relu})
    for (DType dtype : {i64, i32})
      add(opInfo(kind).name, op(kind), {integers(dtype, {257}, -1000, 1000)},
          kExact);
  add("not", op(OpKind::Not), {bools({5, 7})}, kExact);
  add("exp f64", op(OpKind::Exp), {uniform(f64, {100})}, kF32Tol);
  add("tanh f16", op(OpKind::Tanh), {uniform(f16, {100})}, kBF16Tol);

  // Copies.
  add("identity", op(OpKind::Identity), {uniform(f32, {4, 5})}, kExact);
  add("identity i64", op(OpKind::Identity), {integers(i64, {9}, -5, 5)},
      kExact);
  add("reshape", withList(op(OpKind::Reshape), "shape", {2, 12}),
      {uniform(f32, {4, 6})}, kExact);
  add("reshape bool", withList(op(OpKind::Reshape), "shape", {6}),
      {bools({2, 3})}, kExact);

  // Casts, every direction the plans use (and a few more).
  struct CastCase {
    DType from, to;
    double lo, hi;
  };
  const CastCase casts[] = {
      {f32, bf16, -100, 100}, {bf16, f32, -100, 100},  {f32, i64, -100, 100},
      {i64, f32, -100, 100},  {i32, i64, -1e9, 1e9},   {i64, i32, -1e12, 1e12},
      {boolean, f32, 0, 2},   {f32, boolean, -1, 1},   {f32, f16, -100, 100},
      {f16, f32, -100, 100},  {f64, f32, -100, 100},   {bf16, i32, -300, 300},
      {i64, boolean, -2, 3},  {i64, bf16, -1000, 1000},
      // castFloatKernel: float to float, overflowing f16 as well.
      {bf16, f16, -1e5, 1e5}, {f16, bf16, -6e4, 6e4},  {f32, f16, -1e5, 1e5},
      {f32, f32, -1, 1}};
  for (const CastCase &c : casts) {
    HostTensor in = isFloatDType(c.from)
                        ? uniform(c.from, {513}, c.lo, c.hi)
                        : integers(c.from, {513}, static_cast<int64_t>(c.lo),
                                   static_cast<int64_t>(c.hi));
    add(std::string("cast ") + dtypeName(c.from) + "->" + dtypeName(c.to),
        withDType(op(OpKind::Cast), "to", c.to), {in}, kExact);
  }
  // castFloatPackKernel: packs of 8 and a tail of 3 (1,000,003 elements),
  // and a tail alone (5). CastOfAnUnalignedTensorMatchesTheCpu (below)
  // takes the one-element kernel.
  const CastCase packCasts[] = {
      {f32, bf16, -100, 100}, {bf16, f32, -100, 100}, {f32, f16, -1e5, 1e5},
      {f16, f32, -100, 100},  {bf16, f16, -1e5, 1e5}, {f16, bf16, -6e4, 6e4},
      {f32, f32, -1, 1}};
  for (const CastCase &c : packCasts)
    for (int64_t n : {int64_t{1000003}, int64_t{5}})
      add(std::string("cast ") + dtypeName(c.from) + "->" + dtypeName(c.to) +
              " n=" + std::to_string(n),
          withDType(op(OpKind::Cast), "to", c.to),
          {uniform(c.from, {n}, c.lo, c.hi)}, kExact);

  // Binary float ops with broadcasting: [4, 1, 6] x [5, 1] -> [4, 5, 6].
  const OpKind binaryFloat[] = {OpKind::Add, OpKind::Sub, OpKind::Mul,
                                OpKind::Div, OpKind::Pow, OpKind::Max,
                                OpKind::Min};
  for (OpKind kind : binaryFloat)
    for (DType dtype : {f32, bf16}) {
      bool pow = kind == OpKind::Pow;
      add(std::string(opInfo(kind).name) + " broadcast", op(kind),
          {pow ? uniform(dtype, {4, 1, 6}, 0.5, 2.0)
               : uniform(dtype, {4, 1, 6}),
           pow ? uniform(dtype, {5, 1}, -2.0, 2.0)
               : uniform(dtype, {5, 1}, 0.5, 2.0)},
          tolFor(dtype));
      add(opInfo(kind).name, op(kind),
          {pow ? uniform(dtype, {257}, 0.5, 2.0) : uniform(dtype, {257}),
           uniform(dtype, {257}, 0.5, 2.0)},
          tolFor(dtype));
    }
  add("add scalar", op(OpKind::Add), {uniform(f32, {}), uniform(f32, {3, 4})},
      kF32Tol);
  // The f32 fast paths (Elementwise.cu, binaryF32Kernel): contiguous same
  // shape, a [N] operand against [.., N], a [M, 1] one against [M, N], at
  // real size (16-byte packs) and at odd sizes (packs that do not divide
  // the row, a tail, a scalar), f32/bf16/f16; a broadcast in the middle
  // takes the strided walk with f32 math. The argument in Elementwise.cu
  // makes these bit-identical to the CPU: the printed error should be 0.
  for (OpKind kind : {OpKind::Add, OpKind::Mul})
    for (DType dtype : {f32, bf16}) {
      std::string name = std::string(opInfo(kind).name) + " " +
                         dtypeName(dtype) + " fast ";
      add(name + "[8192, 768] x [768]", op(kind),
          {uniform(dtype, {8192, 768}), uniform(dtype, {768})}, tolFor(dtype));
      add(name + "[8192, 1] x [8192, 768]", op(kind),
          {uniform(dtype, {8192, 1}), uniform(dtype, {8192, 768})},
          tolFor(dtype));
      add(name + "same shape", op(kind),
          {uniform(dtype, {1024, 768}), uniform(dtype, {1024, 768})},
          tolFor(dtype));
    }
  for (OpKind kind : {OpKind::Add, OpKind::Sub, OpKind::Mul, OpKind::Div,
                      OpKind::Max, OpKind::Min})
    for (DType dtype : {f32, bf16, f16}) {
      std::string name = std::string(opInfo(kind).name) + " " +
                         dtypeName(dtype) + " fast ";
      add(name + "odd rows", op(kind),
          {uniform(dtype, {37, 13}), uniform(dtype, {13}, 0.5, 2.0)},
          tolFor(dtype));
      add(name + "tail", op(kind),
          {uniform(dtype, {1001}), uniform(dtype, {1001}, 0.5, 2.0)},
          tolFor(dtype));
      add(name + "scalar", op(kind),
          {uniform(dtype, {}, 0.5, 2.0), uniform(dtype, {3, 341}, 0.5, 2.0)},
          tolFor(dtype));
      add(name + "middle broadcast", op(kind),
          {uniform(dtype, {4, 1, 24}), uniform(dtype, {4, 5, 24}, 0.5, 2.0)},
          tolFor(dtype));
    }
  // Integer arithmetic (wrapping, truncating division).
  for (OpKind kind : {OpKind::Add, OpKind::Sub, OpKind::Mul, OpKind::Div,
                      OpKind::Max, OpKind::Min, OpKind::Pow})
    for (DType dtype : {i64, i32}) {
      HostTensor a = integers(dtype, {6, 7}, -1000, 1000);
      HostTensor b = integers(dtype, {7}, 1, 9);
      if (kind == OpKind::Div) // nonzero divisors of both signs
        for (int64_t i = 0; i < 7; ++i)
          storeFromInt64(b.ref(), i,
                         (i % 2 ? -1 : 1) * loadAsInt64(b.ref(), i));
      if (kind == OpKind::Pow)
        b = integers(dtype, {7}, 0, 5);
      add(std::string(opInfo(kind).name) + " " + dtypeName(dtype), op(kind),
          {a, b}, kExact);
    }
  for (OpKind kind : {OpKind::And, OpKind::Or, OpKind::Xor})
    add(opInfo(kind).name, op(kind), {bools({3, 1}), bools({4})}, kExact);
  // Comparisons: small integers (as floats too), so equality happens.
  for (OpKind kind : {OpKind::Equal, OpKind::Less, OpKind::LessEqual,
                      OpKind::Greater, OpKind::GreaterEqual}) {
    HostTensor a = integers(i64, {5, 6}, -3, 3), b = integers(i64, {6}, -3, 3);
    add(std::string(opInfo(kind).name) + " i64", op(kind), {a, b}, kExact);
    HostTensor af(TensorType{f32, {5, 6}}), bf(TensorType{f32, {6}});
    for (int64_t i = 0; i < 30; ++i)
      storeFromDouble(af.ref(), i, loadAsDouble(a.ref(), i) * 0.5);
    for (int64_t i = 0; i < 6; ++i)
      storeFromDouble(bf.ref(), i, loadAsDouble(b.ref(), i) * 0.5);
    add(std::string(opInfo(kind).name) + " f32", op(kind), {af, bf}, kExact);
  }
  add("where", op(OpKind::Where),
      {bools({4, 1}), uniform(f32, {4, 6}), uniform(f32, {6})}, kExact);
  add("where bf16", op(OpKind::Where),
      {bools({2, 3, 1}), uniform(bf16, {1, 5}), uniform(bf16, {3, 5})}, kExact);
  add("where i64", op(OpKind::Where),
      {bools({7}), integers(i64, {7}, -9, 9), integers(i64, {}, -9, 9)},
      kExact);

  // matmul through cuBLASLt: transposes, batches, broadcast batches.
  struct MatMulCase {
    Dims a, b;
    int64_t ta, tb;
  };
  const MatMulCase matmuls[] = {{{64, 96}, {96, 80}, 0, 0},
                                {{96, 64}, {96, 80}, 1, 0},
                                {{64, 96}, {80, 96}, 0, 1},
                                {{96, 64}, {80, 96}, 1, 1},
                                {{3, 17, 33}, {3, 33, 9}, 0, 0},
                                {{2, 5, 16, 24}, {24, 12}, 0, 0},
                                {{2, 5, 24, 16}, {24, 12}, 1, 0},
                                {{16, 24}, {3, 24, 8}, 0, 0},
                                {{2, 1, 7, 8}, {1, 3, 8, 5}, 0, 0},
                                {{4, 8, 7}, {4, 5, 8}, 1, 1},
                                {{1, 1}, {1, 1}, 0, 0},
                                {{256, 768}, {768, 512}, 0, 0},
                                {{3, 0}, {0, 4}, 0, 0}};
  for (const MatMulCase &m : matmuls)
    for (DType dtype : {f32, bf16}) {
      Attrs a = withI(withI(op(OpKind::MatMul), "transpose_a", m.ta),
                      "transpose_b", m.tb);
      add(std::string("matmul") + (m.ta ? " ta" : "") + (m.tb ? " tb" : ""), a,
          {uniform(dtype, m.a), uniform(dtype, m.b)}, tolFor(dtype), true);
    }
  add("matmul f64",
      withI(withI(op(OpKind::MatMul), "transpose_a", 0), "transpose_b", 1),
      {uniform(f64, {9, 13}), uniform(f64, {11, 13})}, 1e-12, true);

  // Reductions.
  struct ReduceCase {
    Dims dims, axes;
    int64_t keepdims;
  };
  const ReduceCase reductions[] = {
      {{6, 7, 8}, {1}, 0},       {{6, 7, 8}, {0, 2}, 1}, {{6, 7, 8}, {}, 0},
      {{6, 7, 8}, {0, 1, 2}, 0}, {{64, 1000}, {1}, 1},   {{3, 0, 4}, {1}, 0}};
  for (OpKind kind : {OpKind::ReduceSum, OpKind::ReduceMean, OpKind::ReduceMax,
                      OpKind::ReduceMin})
    for (const ReduceCase &r : reductions) {
      Attrs a =
          withI(withList(op(kind), "axes", r.axes), "keepdims", r.keepdims);
      add(opInfo(kind).name, a, {uniform(f32, r.dims)}, kF32Tol);
      add(opInfo(kind).name, a, {uniform(bf16, r.dims)}, kBF16Tol);
      add(opInfo(kind).name, a, {integers(i64, r.dims, -1000, 1000)}, kExact);
    }
  for (const ReduceCase &r : reductions) { // floats only
    Attrs a = withI(withList(op(OpKind::ReduceSumSquare), "axes", r.axes),
                    "keepdims", r.keepdims);
    add("reduce_sum_square", a, {uniform(f32, r.dims)}, kF32Tol);
    add("reduce_sum_square", a, {uniform(bf16, r.dims)}, kBF16Tol);
    add("reduce_sum_square", a, {uniform(f64, r.dims)}, kF32Tol);
  }
  add("reduce_sum i32",
      withI(withList(op(OpKind::ReduceSum), "axes", {0}), "keepdims", 0),
      {integers(i32, {9, 4}, -100, 100)}, kExact);

  // softmax, log_softmax. The GPU computes them in f32: log_softmax's
  // x - max - log(sum) carries an absolute error of a few f32 ulps of
  // log(sum) (~1e-7 x 7 for 1000 terms), which is a relative error above
  // 1e-5 for the outputs nearest 0 (those of the row's largest inputs);
  // hence 1e-4 for its f32 cases (1.93e-5 was measured on the H200).
  for (OpKind kind : {OpKind::Softmax, OpKind::LogSoftmax})
    for (DType dtype : {f32, bf16}) {
      double tol = kind == OpKind::LogSoftmax && dtype == f32 ? 1e-4
                                                              : tolFor(dtype);
      add(opInfo(kind).name, withI(op(kind), "axis", 2),
          {uniform(dtype, {4, 5, 33}, -5, 5)}, tol);
      add(opInfo(kind).name, withI(op(kind), "axis", 1),
          {uniform(dtype, {4, 5, 33}, -5, 5)}, tol);
      add(opInfo(kind).name, withI(op(kind), "axis", 1),
          {uniform(dtype, {8, 1000}, -5, 5)}, tol);
    }

  // layer_norm and its gradient.
  for (DType dtype : {f32, bf16}) {
    Attrs ln = withF(withI(op(OpKind::LayerNorm), "axis", 2), "epsilon", 1e-5);
    add("layer_norm", ln,
        {uniform(dtype, {4, 6, 32}), uniform(dtype, {32}),
         uniform(dtype, {32})},
        tolFor(dtype));
    add("layer_norm no bias", ln,
        {uniform(dtype, {4, 6, 32}), uniform(dtype, {32})}, tolFor(dtype));
    Attrs ln1 = withF(withI(op(OpKind::LayerNorm), "axis", 1), "epsilon", 1e-5);
    add("layer_norm axis 1", ln1,
        {uniform(dtype, {4, 6, 32}), uniform(dtype, {6, 32}),
         uniform(dtype, {6, 32})},
        tolFor(dtype));
    add("layer_norm wide", ln1,
        {uniform(dtype, {8, 768}, -3, 5), uniform(dtype, {768}),
         uniform(dtype, {768})},
        tolFor(dtype));
    Attrs lng =
        withF(withI(op(OpKind::LayerNormGrad), "axis", 2), "epsilon", 1e-5);
    add("layer_norm_grad", lng,
        {uniform(dtype, {4, 6, 32}), uniform(dtype, {32}),
         uniform(dtype, {4, 6, 32})},
        tolFor(dtype));
    Attrs lng1 =
        withF(withI(op(OpKind::LayerNormGrad), "axis", 1), "epsilon", 1e-5);
    add("layer_norm_grad wide", lng1,
        {uniform(dtype, {64, 768}, -3, 5), uniform(dtype, {768}),
         uniform(dtype, {64, 768})},
        tolFor(dtype));
    // The blocked column pass (Reduce.cu: chunks of >= 32 rows, partial
    // sums added in chunk order): dscale and dbias sum in another order
    // than the CPU's f64 row loop, so they may round to the neighbouring
    // f32/bf16 value (within the tolerances). OPT's 8 x 1024 rows, a last
    // chunk of 8 rows, rank 3.
    add("layer_norm_grad 8192 rows", lng1,
        {uniform(dtype, {8192, 768}, -3, 5), uniform(dtype, {768}),
         uniform(dtype, {8192, 768})},
        tolFor(dtype));
    add("layer_norm_grad 1000 rows", lng1,
        {uniform(dtype, {1000, 96}), uniform(dtype, {96}),
         uniform(dtype, {1000, 96})},
        tolFor(dtype));
    add("layer_norm_grad rank 3 blocked", lng,
        {uniform(dtype, {8, 1024, 64}), uniform(dtype, {64}),
         uniform(dtype, {8, 1024, 64})},
        tolFor(dtype));
  }

  // The packed layer_norm kernels (Reduce.cu: bf16/f16 rows of 8k <= 8192
  // elements held in registers as 16-byte packs): a warp per row with 8
  // packs per lane (OPT's 2048), 4 packs with some lanes idle (768, 1000),
  // a block per row (8192: 256 threads; 2056: 96 threads and a partial last
  // round of packs), and the fallbacks (rows not a multiple of 8, over
  // 8192). The bias is drawn from [4, 6) so that no output cancels to near
  // 0: the f32 rounding of (x - mean) / stddev * scale (2^-24 x |terms|) is
  // relative to the terms, and an output that the bias cancels to ~1e-6
  // has a relative error beyond 1e-2 (a host emulation of OPT's shape with
  // a bias in [-2, 2) gives ~15 such elements of 16M, as the warp kernel's
  // f32 math would). That case is compared norm-wise.
  {
    Attrs ln = withF(withI(op(OpKind::LayerNorm), "axis", 1), "epsilon", 1e-5);
    Attrs ln2 = withF(withI(op(OpKind::LayerNorm), "axis", 2), "epsilon", 1e-5);
    auto lnInputs = [](DType dtype, Dims dims) {
      Dims row(dims.end() - 1, dims.end());
      return std::vector<HostTensor>{uniform(dtype, dims), uniform(dtype, row),
                                     uniform(dtype, row, 4, 6)};
    };
    add("layer_norm packed opt", ln2, lnInputs(bf16, {8, 1024, 2048}),
        kBF16Tol);
    add("layer_norm packed opt mixed bias", ln2,
        {uniform(bf16, {8, 1024, 2048}), uniform(bf16, {2048}),
         uniform(bf16, {2048})},
        kBF16Tol, true);
    add("layer_norm packed 1000", ln, lnInputs(bf16, {33, 1000}), kBF16Tol);
    add("layer_norm packed 8192", ln, lnInputs(bf16, {16, 8192}), kBF16Tol);
    add("layer_norm packed 2056", ln, lnInputs(bf16, {16, 2056}), kBF16Tol);
    add("layer_norm packed 768", ln, lnInputs(f16, {64, 768}), kBF16Tol);
    add("layer_norm packed 8192", ln, lnInputs(f16, {16, 8192}), kBF16Tol);
    add("layer_norm packed no bias", ln,
        {uniform(bf16, {64, 768}), uniform(bf16, {768})}, kBF16Tol);
    add("layer_norm row of 1001", ln, lnInputs(bf16, {16, 1001}), kBF16Tol);
    add("layer_norm row of 36", ln, lnInputs(f16, {16, 36}), kBF16Tol);
    add("layer_norm row of 8200", ln, lnInputs(bf16, {4, 8200}), kBF16Tol);
  }
  // layer_norm_grad: the packed rows (as layer_norm's) and the packed
  // column pass (x and dy read 4 or 2 columns per load, 8 rows in flight;
  // chunks of max(32, rows / 128) rows), with their fallbacks. OPT's shape:
  // a warp per row, 128 chunks of 64 rows. 1000 rows: 32 chunks, the last
  // of 8 rows. 300 rows: 10 chunks, the last of 12 (8 in flight, then 4
  // one by one). 1002 columns: scalar rows, 2-column packs; 999: every
  // fallback. f32: the f64 rows, f32 packs in the column pass.
  {
    Attrs lng =
        withF(withI(op(OpKind::LayerNormGrad), "axis", 1), "epsilon", 1e-5);
    Attrs lng2 =
        withF(withI(op(OpKind::LayerNormGrad), "axis", 2), "epsilon", 1e-5);
    auto lngInputs = [](DType dtype, Dims dims) {
      Dims row(dims.end() - 1, dims.end());
      return std::vector<HostTensor>{uniform(dtype, dims), uniform(dtype, row),
                                     uniform(dtype, dims)};
    };
    add("layer_norm_grad packed opt", lng2, lngInputs(bf16, {8, 1024, 2048}),
        kBF16Tol);
    // f16 norm-wise: dx in f32 carries ~1e-7 of absolute error, which f16
    // resolves (steps of 6e-8 near 0) in an element that cancels to below
    // the elementwise floor (1e-6 x max |dx| ~ 1e-5); a host emulation of
    // this shape finds one such element in 768k for most seeds (the warp
    // kernel's f32 math alike). bf16's coarser steps hide it.
    add("layer_norm_grad packed 768", lng, lngInputs(f16, {1000, 768}),
        kBF16Tol, true);
    add("layer_norm_grad packed 8192", lng, lngInputs(bf16, {300, 8192}),
        kBF16Tol);
    add("layer_norm_grad packed 2056", lng, lngInputs(bf16, {300, 2056}),
        kBF16Tol);
    add("layer_norm_grad row of 1002", lng, lngInputs(bf16, {300, 1002}),
        kBF16Tol);
    add("layer_norm_grad row of 999", lng, lngInputs(bf16, {300, 999}),
        kBF16Tol);
    add("layer_norm_grad f32 columns", lng, lngInputs(f32, {2000, 768}),
        kF32Tol);
    add("layer_norm_grad f32 columns of 1002", lng,
        lngInputs(f32, {300, 1002}), kF32Tol);
  }

  // gather, gather_nd, gather_elements(+grad), gather_grad.
  add("gather axis 0", withI(op(OpKind::Gather), "axis", 0),
      {uniform(f32, {10, 6}), integers(i64, {3, 4}, -10, 10)}, kExact);
  add("gather axis 1 i32", withI(op(OpKind::Gather), "axis", 1),
      {uniform(bf16, {3, 10, 6}), integers(i32, {5}, -10, 10)}, kExact);
  add("gather i64 data", withI(op(OpKind::Gather), "axis", 0),
      {integers(i64, {7}, -99, 99), integers(i64, {2, 3}, 0, 7)}, kExact);
  add("gather scalar index", withI(op(OpKind::Gather), "axis", 1),
      {uniform(f32, {4, 5}), scalarI64(-2)}, kExact);
  add("gather_nd", withI(op(OpKind::GatherND), "batch_dims", 0),
      {uniform(f32, {4, 5, 6}), integers(i64, {3, 2}, -4, 4)}, kExact);
  add("gather_nd batch_dims 1", withI(op(OpKind::GatherND), "batch_dims", 1),
      {uniform(f32, {4, 5, 6}), integers(i64, {4, 3, 1}, 0, 5)}, kExact);
  add("gather_elements axis 0", withI(op(OpKind::GatherElements), "axis", 0),
      {uniform(f32, {4, 6}), integers(i64, {7, 5}, -4, 4)}, kExact);
  add("gather_elements axis 2", withI(op(OpKind::GatherElements), "axis", 2),
      {uniform(bf16, {3, 4, 5}), integers(i32, {2, 4, 9}, -5, 5)}, kExact);
  for (DType dtype : {f32, bf16}) {
    add("gather_elements_grad",
        withList(withI(op(OpKind::GatherElementsGrad), "axis", 0), "shape",
                 {4, 6}),
        {uniform(dtype, {9, 6}), integers(i64, {9, 6}, -4, 4)}, tolFor(dtype));
    add("gather_elements_grad partial",
        withList(withI(op(OpKind::GatherElementsGrad), "axis", 1), "shape",
                 {4, 6, 3}),
        {uniform(dtype, {3, 10, 2}), integers(i32, {3, 10, 2}, -6, 6)},
        tolFor(dtype));
    add("gather_grad",
        withI(withList(withI(op(OpKind::GatherGrad), "axis", 0), "shape",
                       {10, 6}),
              "padding_idx", kNone),
        {uniform(dtype, {3, 4, 6}), integers(i64, {3, 4}, -10, 10)},
        tolFor(dtype));
    add("gather_grad padding",
        withI(withList(withI(op(OpKind::GatherGrad), "axis", 1), "shape",
                       {4, 10, 6}),
              "padding_idx", -8),
        {uniform(dtype, {4, 30, 6}), integers(i32, {30}, 0, 10)},
        tolFor(dtype));
    add("gather_grad embedding",
        withI(withList(withI(op(OpKind::GatherGrad), "axis", 0), "shape",
                       {512, 64}),
              "padding_idx", 1),
        {uniform(dtype, {4, 32, 64}), integers(i64, {4, 32}, 0, 512)},
        tolFor(dtype));
    // The sorted path (Index.cu) at real size: 8192 tokens over 100 rows
    // (about 80 repeats of each, negative indices, a padding row), over an
    // OPT-sized vocabulary (few repeats, most rows empty), and with an outer
    // dim. Summed in index order in f64 like the CPU: bit-identical.
    add("gather_grad sorted repeats",
        withI(withList(withI(op(OpKind::GatherGrad), "axis", 0), "shape",
                       {100, 768}),
              "padding_idx", 3),
        {uniform(dtype, {8, 1024, 768}), integers(i64, {8, 1024}, -100, 100)},
        tolFor(dtype));
    add("gather_grad sorted vocabulary",
        withI(withList(withI(op(OpKind::GatherGrad), "axis", 0), "shape",
                       {50272, 64}),
              "padding_idx", 1),
        {uniform(dtype, {8, 1024, 64}), integers(i64, {8, 1024}, 0, 50272)},
        tolFor(dtype));
    add("gather_grad sorted outer",
        withI(withList(withI(op(OpKind::GatherGrad), "axis", 1), "shape",
                       {3, 40, 5}),
              "padding_idx", kNone),
        {uniform(dtype, {3, 2000, 5}), integers(i32, {2000}, -40, 40)},
        tolFor(dtype));
  }

  // cumsum.
  for (int64_t exclusive : {0, 1})
    for (int64_t reverse : {0, 1}) {
      Attrs a = withI(
          withI(withI(op(OpKind::CumSum), "axis", 1), "exclusive", exclusive),
          "reverse", reverse);
      add("cumsum", a, {uniform(f32, {5, 17, 3})}, kF32Tol);
      add("cumsum", a, {uniform(bf16, {5, 17})}, kBF16Tol);
      add("cumsum", a, {integers(i64, {5, 17}, -9, 9)}, kExact);
    }

  // trilu.
  for (int64_t upper : {0, 1})
    for (int64_t k : {int64_t{0}, int64_t{-1}, int64_t{3}, int64_t{1000},
                      int64_t{-1000}, kNone}) {
      Attrs a = withI(withI(op(OpKind::Trilu), "upper", upper), "k", k);
      add("trilu", a, {uniform(f32, {2, 5, 7})}, kExact);
    }
  add("trilu i64", withI(withI(op(OpKind::Trilu), "upper", 1), "k", 1),
      {integers(i64, {6, 4}, -9, 9)}, kExact);
  add("trilu bool", withI(withI(op(OpKind::Trilu), "upper", 0), "k", 0),
      {bools({3, 4, 4})}, kExact);

  // Fused attention (GQA, causal, a bias): fp32 accumulation against f64,
  // so norm-wise. bench/attention_check.cpp runs many more shapes.
  {
    Attrs fwd = withI(withF(op(OpKind::Attention), "scale", 0.125), "causal", 1);
    std::vector<HostTensor> in = {uniform(f32, {2, 4, 9, 64}),
                                  uniform(f32, {2, 2, 9, 64}),
                                  uniform(f32, {2, 2, 9, 64}),
                                  uniform(f32, {2, 1, 1, 9})};
    add("attention", fwd, in, 1e-4, /*normwise=*/true);
    std::vector<HostTensor> res;
    if (evaluateOp(fwd, in, res).isOk()) {
      in.insert(in.end(), {res[0], res[1], uniform(f32, {2, 4, 9, 64})});
      Attrs bwd = withI(withF(op(OpKind::AttentionGrad), "scale", 0.125),
                        "causal", 1);
      add("attention_grad", bwd, in, 1e-4, /*normwise=*/true);
    }
  }

  // Layout changes.
  add("expand", withList(op(OpKind::Expand), "shape", {2, 3, 5}),
      {uniform(f32, {3, 1})}, kExact);
  add("expand scalar", withList(op(OpKind::Expand), "shape", {4}),
      {integers(i64, {}, -9, 9)}, kExact);
  add("transpose", withList(op(OpKind::Transpose), "perm", {0, 2, 1, 3}),
      {uniform(f32, {2, 3, 4, 5})}, kExact);
  add("transpose reverse",
      withList(op(OpKind::Transpose), "perm", {3, 2, 1, 0}),
      {uniform(bf16, {2, 3, 4, 5})}, kExact);
  // Widened copies (launchStridedCopy): the attention head transposes of
  // OPT in 16-byte packs, an 8-byte run (4 bf16 of a row of 12), a 4-byte
  // one (f32 rows of 3, odd), size-1 dims, a merged run, and a middle slice
  // whose base offset is not a multiple of the pack.
  add("transpose heads", withList(op(OpKind::Transpose), "perm", {0, 2, 1, 3}),
      {uniform(bf16, {8, 1024, 12, 64})}, kExact);
  add("transpose heads back",
      withList(op(OpKind::Transpose), "perm", {0, 2, 1, 3}),
      {uniform(bf16, {2, 12, 300, 64})}, kExact);
  add("transpose rows of 12 bf16",
      withList(op(OpKind::Transpose), "perm", {1, 0, 2}),
      {uniform(bf16, {5, 7, 12})}, kExact);
  add("transpose rows of 3 f32",
      withList(op(OpKind::Transpose), "perm", {1, 0, 2}),
      {uniform(f32, {5, 7, 3})}, kExact);
  add("transpose size-1 dims",
      withList(op(OpKind::Transpose), "perm", {2, 0, 3, 1}),
      {uniform(f16, {1, 6, 1, 8})}, kExact);
  add("transpose merged run",
      withList(op(OpKind::Transpose), "perm", {1, 0, 2, 3}),
      {integers(i64, {3, 4, 5, 2}, -9, 9)}, kExact);
  // The walk templated on rank and width (stridedCopyRankKernel): OPT-1.3b's
  // head split and merge at full size (rank 4, 16-byte packs), ranks 5 and
  // 6 with nothing to merge or widen, 1-byte elements alone and widened to
  // packs, and rank 7 (above the templated ranks: the generic 32-bit walk).
  add("transpose heads 1.3b",
      withList(op(OpKind::Transpose), "perm", {0, 2, 1, 3}),
      {uniform(bf16, {8, 1024, 32, 64})}, kExact);
  add("transpose heads 1.3b back",
      withList(op(OpKind::Transpose), "perm", {0, 2, 1, 3}),
      {uniform(bf16, {8, 32, 1024, 64})}, kExact);
  add("transpose rank 5",
      withList(op(OpKind::Transpose), "perm", {4, 2, 0, 3, 1}),
      {uniform(f32, {3, 4, 5, 6, 7})}, kExact);
  add("transpose rank 6",
      withList(op(OpKind::Transpose), "perm", {5, 4, 3, 2, 1, 0}),
      {uniform(f16, {2, 3, 4, 3, 2, 5})}, kExact);
  add("transpose rank 7",
      withList(op(OpKind::Transpose), "perm", {6, 5, 4, 3, 2, 1, 0}),
      {integers(i32, {2, 3, 2, 3, 2, 3, 2}, -9, 9)}, kExact);
  add("transpose bool", withList(op(OpKind::Transpose), "perm", {2, 0, 1}),
      {bools({5, 7, 9})}, kExact);
  add("transpose bool rows of 32",
      withList(op(OpKind::Transpose), "perm", {1, 0, 2}),
      {bools({4, 6, 32})}, kExact);
  add("slice unaligned base",
      withList(withList(withList(op(OpKind::Slice), "starts", {1, 3}), "steps",
                        {1, 1}),
               "sizes", {4, 16}),
      {uniform(bf16, {6, 40})}, kExact);
  add("slice",
      withList(withList(withList(op(OpKind::Slice), "starts", {1, 2}), "steps",
                        {2, 3}),
               "sizes", {4, 3}),
      {uniform(f32, {10, 12})}, kExact);
  add("slice negative steps",
      withList(withList(withList(op(OpKind::Slice), "starts", {9, 11}), "steps",
                        {-1, -2}),
               "sizes", {5, 4}),
      {integers(i64, {10, 12}, -9, 9)}, kExact);
  add("slice empty",
      withList(withList(withList(op(OpKind::Slice), "starts", {0, 0}), "steps",
                        {1, 1}),
               "sizes", {0, 3}),
      {uniform(f32, {10, 12})}, kExact);
  add("slice_grad",
      withList(withList(withList(op(OpKind::SliceGrad), "starts", {1, 2}),
                        "steps", {2, 3}),
               "shape", {10, 12}),
      {uniform(f32, {4, 3})}, kExact);
  add("slice_grad negative steps",
      withList(withList(withList(op(OpKind::SliceGrad), "starts", {9, 11}),
                        "steps", {-1, -2}),
               "shape", {10, 12}),
      {uniform(bf16, {5, 4})}, kExact);
  for (int64_t axis : {0, 1, 2})
    add("concat", withI(op(OpKind::Concat), "axis", axis),
        {uniform(f32,
                 {axis == 0 ? 2 : 3, axis == 1 ? 1 : 3, axis == 2 ? 4 : 2}),
         uniform(f32,
                 {axis == 0 ? 5 : 3, axis == 1 ? 4 : 3, axis == 2 ? 1 : 2}),
         uniform(f32,
                 {axis == 0 ? 1 : 3, axis == 1 ? 2 : 3, axis == 2 ? 3 : 2})},
        kExact);
  add("concat i64 one", withI(op(OpKind::Concat), "axis", 0),
      {integers(i64, {5}, -9, 9)}, kExact);
  struct PadCase {
    Dims pads;
    int64_t mode;
  };
  const PadCase pads[] = {{{1, 2, 0, 1}, 0},
                          {{2, 1, 1, 3}, 1},
                          {{2, 0, 3, 4}, 2},
                          {{-1, 0, 0, -1}, 0}};
  for (const PadCase &p : pads) {
    Attrs a =
        withF(withI(withList(op(OpKind::Pad), "pads", p.pads), "mode", p.mode),
              "value", 1.5);
    add("pad", a, {uniform(f32, {3, 4})}, kExact);
    add("pad", a, {uniform(bf16, {3, 4})}, kExact);
    add("pad", a, {integers(i64, {3, 4}, -9, 9)}, kExact);
  }
  struct FillCase {
    DType to;
    Dims shape;
    double value;
  };
  const FillCase fills[] = {{f32, {3, 4}, 2.5},   {i64, {7}, 7},
                            {boolean, {2, 2}, 1}, {bf16, {5}, 0.1},
                            {f32, {}, -3.25},     {i32, {3}, -2}};
  for (const FillCase &f : fills)
    add("fill",
        withF(
            withList(withDType(op(OpKind::Fill), "to", f.to), "shape", f.shape),
            "value", f.value),
        {}, kExact);

  // The loss and its gradient; -100 is ignored.
  auto labels = [](DType dtype, Dims dims, int64_t classes) {
    HostTensor t = integers(dtype, std::move(dims), 0, classes);
    for (int64_t i = 0; i < t.type.numElements(); i += 3)
      storeFromInt64(t.ref(), i, -100);
    return t;
  };
  for (DType dtype : {f32, bf16})
    for (int64_t reduction : {0, 1, 2}) {
      Attrs ce =
          withI(withI(op(OpKind::SoftmaxCrossEntropy), "ignore_index", -100),
                "reduction", reduction);
      add("softmax_cross_entropy", ce,
          {uniform(dtype, {8, 10}, -4, 4), labels(i64, {8}, 10)},
          tolFor(dtype));
      add("softmax_cross_entropy rank 3", ce,
          {uniform(dtype, {4, 50, 5}, -4, 4), labels(i32, {4, 5}, 50)},
          tolFor(dtype));
      add("softmax_cross_entropy wide", ce,
          {uniform(dtype, {64, 512}, -4, 4), labels(i64, {64}, 512)},
          tolFor(dtype));
      // A language model's vocabulary: OPT's 50272 (whole 16-byte packs:
      // the CUDA row kernels' packed path) and GPT-2's 50257 (not).
      for (int64_t vocab : {50272, 50257})
        add("softmax_cross_entropy vocab " + std::to_string(vocab), ce,
            {uniform(dtype, {5, vocab}, -8, 8), labels(i64, {5}, vocab)},
            tolFor(dtype));
      Attrs grad = withI(
          withI(op(OpKind::SoftmaxCrossEntropyGrad), "ignore_index", -100),
          "reduction", reduction);
      Dims lossDims = reduction == 0 ? Dims{8} : Dims{};
      add("softmax_cross_entropy_grad", grad,
          {uniform(dtype, {8, 10}, -4, 4), labels(i64, {8}, 10),
           uniform(dtype, lossDims, 0.5, 2)},
          tolFor(dtype));
      Dims lossDims3 = reduction == 0 ? Dims{4, 5} : Dims{};
      add("softmax_cross_entropy_grad rank 3", grad,
          {uniform(dtype, {4, 50, 5}, -4, 4), labels(i32, {4, 5}, 50),
           uniform(dtype, lossDims3, 0.5, 2)},
          tolFor(dtype));
      // Written over its scores, as colossal-lower-to-plan plans it when
      // the scores die there; an ignored label among them.
      add("softmax_cross_entropy_grad in place", grad,
          {uniform(dtype, {16, 300}, -4, 4), labels(i64, {16}, 300),
           uniform(dtype, lossDims == Dims{} ? Dims{} : Dims{16}, 0.5, 2)},
          tolFor(dtype));
      cases.back().alias = {0};
      storeFromInt64(cases.back().inputs[1].ref(), 3, -100);
      for (int64_t vocab : {50272, 50257}) {
        add("softmax_cross_entropy_grad vocab " + std::to_string(vocab), grad,
            {uniform(dtype, {5, vocab}, -8, 8), labels(i64, {5}, vocab),
             uniform(f32, lossDims == Dims{} ? Dims{} : Dims{5}, 0.5, 2)},
            tolFor(dtype));
        cases.back().alias = {0};
      }
      // As a mixed-precision step runs it: bf16 scores, the f32 loss's f32
      // dloss, the bf16 gradient written over the scores (OPT's logits).
      if (dtype == bf16) {
        add("softmax_cross_entropy_grad bf16 scores f32 dloss", grad,
            {uniform(bf16, {16, 300}, -4, 4), labels(i64, {16}, 300),
             uniform(f32, lossDims == Dims{} ? Dims{} : Dims{16}, 0.5, 2)},
            tolFor(bf16));
        cases.back().alias = {0};
      }
    }
  {
    HostTensor ignored(TensorType{i64, {3}});
    for (int64_t i = 0; i < 3; ++i)
      storeFromInt64(ignored.ref(), i, -100);
    add("softmax_cross_entropy all ignored (NaN)",
        withI(withI(op(OpKind::SoftmaxCrossEntropy), "ignore_index", -100),
              "reduction", 2),
        {uniform(f32, {3, 4}), ignored}, kExact);
  }

  // Empty tensors whose other dims are huge: nothing to launch (the
  // executor's rule, as on the CPU), and a reduced loss over no positions.
  {
    const int64_t huge = int64_t(1) << 40;
    auto empty = [](DType dtype, Dims dims) {
      return HostTensor(TensorType{dtype, std::move(dims)});
    };
    add("pad empty huge",
        withF(withI(withList(op(OpKind::Pad), "pads", {0, 0, 0, huge}), "mode",
                    0),
              "value", 0.0),
        {empty(f32, {0, 3})}, kExact);
    add("softmax empty huge", withI(op(OpKind::Softmax), "axis", 1),
        {empty(f32, {huge, 0})}, kExact);
    add("concat empty huge", withI(op(OpKind::Concat), "axis", 1),
        {empty(f32, {huge, 0, 0}), empty(f32, {huge, 0, 0})}, kExact);
    add("matmul empty huge",
        withI(withI(op(OpKind::MatMul), "transpose_a", 0), "transpose_b", 0),
        {empty(f32, {0, 0}), empty(f32, {0, huge})}, kExact);
    add("layer_norm_grad empty huge",
        withF(withI(op(OpKind::LayerNormGrad), "axis", 1), "epsilon", 1e-5),
        {empty(f32, {huge, 0}), empty(f32, {0}), empty(f32, {huge, 0})},
        kExact);
    for (int64_t reduction : {1, 2})
      add("softmax_cross_entropy empty huge",
          withI(withI(op(OpKind::SoftmaxCrossEntropy), "ignore_index", -100),
                "reduction", reduction),
          {empty(f32, {huge, 2, 0}), empty(i64, {huge, 0})}, kExact);
  }

  // Optimizers, out of place and in place (as the plans run them).
  for (int64_t step : {0, 5})
    for (DType gradType : {f32, bf16})
      for (bool inPlace : {false, true}) {
        Attrs a = withF(
            withF(withF(withF(op(OpKind::AdamW), "beta1", 0.9), "beta2", 0.999),
                  "eps", 1e-8),
            "weight_decay", 0.01);
        add(std::string("adamw") + (inPlace ? " in place" : ""), a,
            {uniform(f32, {1000}), uniform(gradType, {1000}, -0.1, 0.1),
             uniform(f32, {1000}, -0.01, 0.01), uniform(f32, {1000}, 0, 1e-3),
             scalarF32(1e-3), scalarI64(step)},
            kF32Tol);
        if (inPlace)
          cases.back().alias = {0, 2, 3};
        // With the divisor operand (an offloaded update's raw gradient).
        add(std::string("adamw divisor") + (inPlace ? " in place" : ""), a,
            {uniform(f32, {1000}), uniform(gradType, {1000}, -30, 30),
             uniform(f32, {1000}, -0.01, 0.01), uniform(f32, {1000}, 0, 1e-3),
             scalarF32(1e-3), scalarI64(step), scalarF32(300.0)},
            kF32Tol);
        if (inPlace)
          cases.back().alias = {0, 2, 3};
      }
  // adamw_norm: adamw on grad / divisor and the sum of its squares; one
  // block, and more elements than the 2048 blocks' first pass covers (the
  // block partials summed in order), out of place and in place.
  for (int64_t count : {int64_t{1000}, (int64_t{1} << 20) + 3})
    for (DType gradType : {f32, bf16})
      for (bool inPlace : {false, true}) {
        Attrs a = withF(withF(withF(withF(op(OpKind::AdamWNorm), "beta1", 0.9),
                                    "beta2", 0.999),
                              "eps", 1e-8),
                        "weight_decay", 0.01);
        add(std::string("adamw_norm") + (inPlace ? " in place" : ""), a,
            {uniform(f32, {count}), uniform(gradType, {count}, -30, 30),
             uniform(f32, {count}, -0.01, 0.01),
             uniform(f32, {count}, 0, 1e-3), scalarF32(1e-3), scalarI64(2),
             scalarF32(300.0)},
            kF32Tol);
        if (inPlace)
          cases.back().alias = {0, 2, 3, -1};
      }
  for (int64_t step : {0, 3})
    for (int64_t nesterov : {0, 1})
      for (double momentum : {0.0, 0.9}) {
        if (nesterov && momentum == 0.0)
          continue;
        Attrs a =
            withI(withF(withF(withF(op(OpKind::Sgd), "momentum", momentum),
                              "dampening", 0.0),
                        "weight_decay", 0.01),
                  "nesterov", nesterov);
        add("sgd", a,
            {uniform(f32, {777}), uniform(bf16, {777}, -0.1, 0.1),
             uniform(f32, {777}, -0.1, 0.1), scalarF32(0.05), scalarI64(step)},
            kF32Tol);
        cases.back().alias = {0, 2};
      }

  // fused_elementwise: the register program against the CPU's, including
  // bf16 rounding of every intermediate and broadcast inputs.
  // bf16 MLP tail: r2 = cast(x f32 -> bf16), r3 = r2 + b, r4 = gelu_tanh,
  // r5 = fill 0.5, r6 = r4 * r5, r7 = cast f32.
  add("fused_elementwise bf16 chain",
      fusedOp({rec(OpKind::Cast, bf16, {0}), rec(OpKind::Add, bf16, {2, 1}),
               rec(OpKind::Gelu, bf16, {3}, 1), rec(OpKind::Fill, bf16, {}, 0),
               rec(OpKind::Mul, bf16, {4, 5}), rec(OpKind::Cast, f32, {6})},
              {0.5}, {64, 1000}),
      {uniform(f32, {64, 1000}), uniform(bf16, {1000})}, kBF16Tol);
  // f32 mask: where(x > y, exp(x) - y, 0) with x [4, 1, 33], y [7, 1].
  add("fused_elementwise f32 where broadcast",
      fusedOp({rec(OpKind::Greater, boolean, {0, 1}),
               rec(OpKind::Exp, f32, {0}), rec(OpKind::Sub, f32, {3, 1}),
               rec(OpKind::Fill, f32, {}, 0),
               rec(OpKind::Where, f32, {2, 4, 5})},
              {0.0}, {4, 7, 33}),
      {uniform(f32, {4, 1, 33}), uniform(f32, {7, 1})}, kF32Tol);
  // Integers wrap in i32, then a comparison and a cast to f64.
  add("fused_elementwise i32 to f64",
      fusedOp({rec(OpKind::Mul, i32, {0, 1}), rec(OpKind::Add, i32, {2, 0}),
               rec(OpKind::Less, boolean, {3, 1}),
               rec(OpKind::Cast, f64, {4}), rec(OpKind::Cast, f64, {3}),
               rec(OpKind::Add, f64, {5, 6})},
              {}, {3000}),
      {integers(i32, {3000}, -2000000000, 2000000000),
       integers(i32, {3000}, -70000, 70000)},
      kExact);
  return cases;
}

//===----------------------------------------------------------------------===//
// Running one case on both backends
//===----------------------------------------------------------------------===//

struct Comparison {
  double worst = 0.0; ///< the largest |gpu - cpu| / max(|cpu|, floor)
  int64_t mismatches = 0;
  std::string firstMismatch;
};

void compareOutput(const HostTensor &cpu, const HostTensor &gpu, double rtol,
                   bool normwise, Comparison &cmp) {
  int64_t n = cpu.type.numElements();
  if (!isFloatDType(cpu.type.dtype) || rtol == kExact) {
    for (int64_t i = 0; i < n; ++i) {
      bool same;
      if (isFloatDType(cpu.type.dtype)) {
        double c = loadAsDouble(cpu.ref(), i), g = loadAsDouble(gpu.ref(), i);
        same =
            (std::isnan(c) && std::isnan(g)) ||
            std::memcmp(cpu.bytes.data() + i * dtypeSizeBytes(cpu.type.dtype),
                        gpu.bytes.data() + i * dtypeSizeBytes(gpu.type.dtype),
                        dtypeSizeBytes(cpu.type.dtype)) == 0;
      } else {
        same = loadAsInt64(cpu.ref(), i) == loadAsInt64(gpu.ref(), i);
      }
      if (!same && cmp.mismatches++ == 0)
        cmp.firstMismatch = "element " + std::to_string(i) + ": cpu " +
                            std::to_string(loadAsDouble(cpu.ref(), i)) +
                            ", gpu " +
                            std::to_string(loadAsDouble(gpu.ref(), i));
    }
    if (cmp.mismatches)
      cmp.worst = std::numeric_limits<double>::infinity();
    return;
  }
  double maxAbs = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double c = loadAsDouble(cpu.ref(), i);
    if (std::isfinite(c))
      maxAbs = std::max(maxAbs, std::fabs(c));
  }
  double floor = normwise ? maxAbs : 1e-6 * maxAbs;
  for (int64_t i = 0; i < n; ++i) {
    double c = loadAsDouble(cpu.ref(), i), g = loadAsDouble(gpu.ref(), i);
    double err;
    if (std::isnan(c) || std::isnan(g) || std::isinf(c) || std::isinf(g))
      err = (std::isnan(c) && std::isnan(g)) || c == g
                ? 0.0
                : std::numeric_limits<double>::infinity();
    else
      err = std::fabs(g - c) /
            std::max({std::fabs(c), floor, std::numeric_limits<double>::min()});
    if (err > rtol && cmp.mismatches++ == 0)
      cmp.firstMismatch = "element " + std::to_string(i) + ": cpu " +
                          std::to_string(c) + ", gpu " + std::to_string(g);
    cmp.worst = std::max(cmp.worst, err);
  }
}

class CudaKernels : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    // The fused programs interpreted (the packed kernel): the generated
    // kernels, the default, have their own test below.
    if (!backend_) {
      setenv("COLOSSAL_CUDA_FUSED", "f32", 1);
      status_ = new Status(createBackend(Device::kCuda, backend_));
      unsetenv("COLOSSAL_CUDA_FUSED");
    }
  }
  void SetUp() override {
    if (!backend_)
      GTEST_SKIP() << "no CUDA backend here: "
                   << (status_ ? status_->message() : std::string("?"));
  }

  /// Runs `c` on the GPU; the outputs come back in `gpu`.
  static Status runOnGpu(const Case &c, const std::vector<TensorType> &outTypes,
                         uint64_t index, std::vector<HostTensor> &gpu) {
    // One arena; tensors at 64-byte (not 256-byte) aligned offsets, as
    // plans place them, so cuBLASLt's alignment handling is exercised.
    std::vector<uint64_t> inOffsets, outOffsets;
    uint64_t size = 64; // nothing at offset 0: a non-trivial base
    auto place = [&](uint64_t bytes) {
      uint64_t at = size;
      size += (bytes + 63) / 64 * 64 + 64;
      return at;
    };
    for (const HostTensor &in : c.inputs)
      inOffsets.push_back(place(in.bytes.size()));
    for (size_t k = 0; k < outTypes.size(); ++k) {
      bool aliased = k < c.alias.size() && c.alias[k] >= 0;
      outOffsets.push_back(aliased ? inOffsets[c.alias[k]]
                                   : place(outTypes[k].sizeBytes()));
    }
    PlanArena arena;
    arena.sizeBytes = size;
    arena.alignBytes = 256;
    COLOSSAL_RETURN_IF_ERROR(backend_->allocateArenas({arena}));
    uint8_t *base = backend_->arenaBase(0);
    COLOSSAL_RETURN_IF_ERROR(backend_->fill(base, 0xff, size));
    std::vector<TensorRef> ins, outs;
    for (size_t k = 0; k < c.inputs.size(); ++k) {
      COLOSSAL_RETURN_IF_ERROR(backend_->upload(base + inOffsets[k],
                                                c.inputs[k].bytes.data(),
                                                c.inputs[k].bytes.size()));
      ins.push_back(TensorRef{c.inputs[k].type, base + inOffsets[k]});
    }
    for (size_t k = 0; k < outTypes.size(); ++k)
      outs.push_back(TensorRef{outTypes[k], base + outOffsets[k]});
    PlanInstr instr;
    instr.attrs = c.attrs;
    COLOSSAL_RETURN_IF_ERROR(backend_->run(index, instr, ins, outs));
    uint64_t failed = 0;
    COLOSSAL_RETURN_IF_ERROR(backend_->synchronize(&failed));
    gpu.clear();
    for (size_t k = 0; k < outTypes.size(); ++k) {
      gpu.emplace_back(outTypes[k]);
      COLOSSAL_RETURN_IF_ERROR(backend_->download(
          gpu.back().bytes.data(), outs[k].data, gpu.back().bytes.size()));
    }
    return Status::ok();
  }

  /// Runs every case on the CPU and on `backend_`, prints one line each
  /// and adds a failure for each case beyond its tolerance; returns the
  /// count of failed cases and adds the ops run to `covered`.
  static int checkCases(const std::vector<Case> &cases,
                        std::set<OpKind> &covered);

  static std::unique_ptr<Backend> backend_;
  static Status *status_;
};

std::unique_ptr<Backend> CudaKernels::backend_;
Status *CudaKernels::status_ = nullptr;

/// Runs every case on the CPU and on `backend_`, prints one line each and
/// adds a failure for each case beyond its tolerance; returns the count of
/// failed cases and, in `covered`, the ops run.
TEST_F(CudaKernels, EveryOpMatchesTheCpuReference) {
  std::vector<Case> cases = allCases();
  std::set<OpKind> covered;
  int failures = checkCases(cases, covered);
  std::printf("%zu cases, %d failed\n", cases.size(), failures);
  // They move no data: ExecutorOrdersStreamsByEvents runs them in a plan.
  covered.insert(OpKind::EventRecord);
  covered.insert(OpKind::EventWait);
  for (const OpInfo &info : allOps())
    EXPECT_TRUE(covered.count(info.kind))
        << "no case runs " << info.name << " on the GPU";
}

int CudaKernels::checkCases(const std::vector<Case> &cases,
                            std::set<OpKind> &covered) {
  int failures = 0;
  std::printf("%-44s %-44s %10s %8s\n", "case", "inputs", "max err", "tol");
  for (size_t n = 0; n < cases.size(); ++n) {
    const Case &c = cases[n];
    covered.insert(c.attrs.kind());
    std::vector<TensorType> inTypes, outTypes;
    for (const HostTensor &t : c.inputs)
      inTypes.push_back(t.type);
    Status st = inferOutputTypes(c.attrs, inTypes, outTypes);
    if (!st.isOk()) {
      ADD_FAILURE() << c.name << " (" << shapeText(c.inputs)
                    << "): " << st.toString();
      return failures + 1;
    }
    std::vector<HostTensor> cpu;
    std::vector<TensorRef> cpuIns, cpuOuts;
    for (const HostTensor &t : c.inputs)
      cpuIns.push_back(t.ref());
    for (const TensorType &t : outTypes)
      cpu.emplace_back(t);
    for (HostTensor &t : cpu)
      cpuOuts.push_back(t.ref());
    st = runCpuKernel(c.attrs, cpuIns, cpuOuts);
    if (!st.isOk()) {
      ADD_FAILURE() << c.name << " on the CPU: " << st.toString();
      return failures + 1;
    }

    std::vector<HostTensor> gpu;
    st = runOnGpu(c, outTypes, n, gpu);
    if (!st.isOk()) {
      ADD_FAILURE() << c.name << " (" << shapeText(c.inputs)
                    << ") on the GPU: " << st.toString();
      return failures + 1;
    }
    Comparison cmp;
    for (size_t k = 0; k < cpu.size(); ++k)
      compareOutput(cpu[k], gpu[k], c.rtol, c.normwise, cmp);
    bool ok = cmp.mismatches == 0;
    std::printf("%-44s %-44s %10.2e %8.0e %s\n", c.name.c_str(),
                shapeText(c.inputs).substr(0, 44).c_str(), cmp.worst, c.rtol,
                ok ? "ok" : "FAIL");
    if (!ok) {
      ++failures;
      ADD_FAILURE() << c.name << " (" << shapeText(c.inputs)
                    << "): " << cmp.mismatches << " elements off, first "
                    << cmp.firstMismatch << ", worst " << cmp.worst << " (tol "
                    << c.rtol << ")";
    }
  }
  return failures;
}

/// A data-dependent failure, recorded by a kernel and reported by
/// synchronize() with its message and instruction; the next run is clean.
void expectDeviceError(Backend &backend, const Attrs &attrs,
                       std::vector<HostTensor> inputs,
                       const std::string &part) {
  std::vector<TensorType> inTypes, outTypes;
  for (const HostTensor &t : inputs)
    inTypes.push_back(t.type);
  ASSERT_TRUE(inferOutputTypes(attrs, inTypes, outTypes).isOk());
  PlanArena arena;
  arena.sizeBytes = 1 << 16;
  ASSERT_TRUE(backend.allocateArenas({arena}).isOk());
  uint8_t *at = backend.arenaBase(0);
  std::vector<TensorRef> ins, outs;
  for (const HostTensor &t : inputs) {
    ASSERT_TRUE(backend.upload(at, t.bytes.data(), t.bytes.size()).isOk());
    ins.push_back(TensorRef{t.type, at});
    at += (t.bytes.size() + 255) / 256 * 256 + 256;
  }
  for (const TensorType &t : outTypes) {
    outs.push_back(TensorRef{t, at});
    at += (t.sizeBytes() + 255) / 256 * 256 + 256;
  }
  PlanInstr instr;
  instr.attrs = attrs;
  ASSERT_TRUE(backend.run(41, instr, ins, outs).isOk());
  uint64_t failed = 0;
  Status st = backend.synchronize(&failed);
  EXPECT_FALSE(st.isOk());
  EXPECT_EQ(failed, 41u);
  EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
  EXPECT_TRUE(backend.synchronize(&failed).isOk()) << "the error was cleared";
}

TEST_F(CudaKernels, DataDependentErrorsNameTheOpAndValue) {
  HostTensor index(TensorType{i64, {2}});
  storeFromInt64(index.ref(), 0, 1);
  storeFromInt64(index.ref(), 1, 7);
  expectDeviceError(*backend_, withI(op(OpKind::Gather), "axis", 0),
                    {uniform(f32, {5, 3}), index},
                    "gather: index 7 out of range [-5, 5)");
  HostTensor label(TensorType{i64, {2}});
  storeFromInt64(label.ref(), 0, 12);
  storeFromInt64(label.ref(), 1, -100);
  expectDeviceError(
      *backend_,
      withI(withI(op(OpKind::SoftmaxCrossEntropy), "ignore_index", -100),
            "reduction", 2),
      {uniform(f32, {2, 10}), label},
      "softmax_cross_entropy: label 12 out of range [0, 10) and not "
      "ignore_index -100");
  HostTensor zero(TensorType{i64, {1}});
  expectDeviceError(*backend_, op(OpKind::Div),
                    {integers(i64, {3}, 1, 9), zero},
                    "div: integer division by zero");
  expectDeviceError(
      *backend_,
      withF(withF(withF(withF(op(OpKind::AdamW), "beta1", 0.9), "beta2", 0.999),
                  "eps", 1e-8),
            "weight_decay", 0.0),
      {uniform(f32, {4}), uniform(f32, {4}), uniform(f32, {4}),
       uniform(f32, {4}, 0, 1), scalarF32(1e-3), scalarI64(-1)},
      "adamw: step -1 must be >= 0");
}

//===----------------------------------------------------------------------===//
// The executor on the GPU
//===----------------------------------------------------------------------===//

using namespace colossal::runtime::testing;

HostTensor f32Tensor(Dims dims, const std::vector<float> &v) {
  HostTensor t(TensorType{f32, std::move(dims)});
  t.bytes = f32Bytes(v);
  return t;
}

std::vector<float> floats(const HostTensor &t) {
  std::vector<float> out(t.bytes.size() / sizeof(float));
  if (!out.empty())
    std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

TEST_F(CudaKernels, ExecutorRunsAForwardPlan) {
  Plan plan = makeTestPlan();
  Executor exec;
  ASSERT_TRUE(exec.setDevice(Device::kCuda).isOk());
  EXPECT_EQ(exec.device(), Device::kCuda);
  Status st = exec.prepare(plan);
  ASSERT_TRUE(st.isOk()) << st.toString();
  SafetensorsFile weights, in, out;
  weights.tensors.emplace_back("w", f32Tensor({2, 3}, testWeightValues()));
  ASSERT_TRUE(exec.loadWeights(weights).isOk());
  in.tensors.emplace_back("a", f32Tensor({2, 2}, {1, 2, 3, 4}));
  in.tensors.emplace_back("b", f32Tensor({2, 2}, {10, 20, 30, 40}));
  st = exec.run(in, out);
  ASSERT_TRUE(st.isOk()) << st.toString();
  ASSERT_EQ(out.tensors.size(), 2u);
  // y = (a + b) @ w and loss = 66, worked out in TestPlans.h.
  EXPECT_EQ(floats(out.tensors[0].second),
            (std::vector<float>{11, 22, 0, 33, 44, 22}));
  EXPECT_EQ(floats(out.tensors[1].second), (std::vector<float>{66}));
}

/// CheckPlanTest's legal sharing on the GPU: 64 bytes for six [2, 2] f32
/// tensors, bytes reused as soon as a buffer dies; check-plan poisons the
/// dead ones with cudaMemset and measures the peak.
///   offset  0: c constant 10 [0, 3] | 16: a input [0, 1], u = t + t [2, 3]
///   offset 32: s = a + a [0, 1], out = u * c [3, 3] | 48: t = s * a [1, 2]
TEST_F(CudaKernels, ExecutorChecksAPlanOnTheGpu) {
  Plan plan;
  plan.arenas.push_back(PlanArena{MemorySpace::kDevice, 64, 64});
  TensorType type{f32, {2, 2}};
  auto tensor = [&](const char *name, uint64_t offset, uint32_t start,
                    uint32_t end) {
    plan.buffers.push_back(
        PlanBuffer{name, 0, offset, type.sizeBytes(), 16, start, end});
    plan.tensors.push_back(PlanTensor{
        name, static_cast<uint32_t>(plan.buffers.size() - 1), 0, type});
    return static_cast<uint32_t>(plan.tensors.size() - 1);
  };
  auto instr = [&](OpKind kind, std::vector<uint32_t> in, uint32_t out) {
    PlanInstr i;
    i.attrs = Attrs(kind);
    i.inputs = std::move(in);
    i.outputs = {out};
    plan.instrs.push_back(std::move(i));
  };
  uint32_t c = tensor("c", 0, 0, 3), a = tensor("a", 16, 0, 1);
  uint32_t s = tensor("s", 32, 0, 1), t = tensor("t", 48, 1, 2);
  uint32_t u = tensor("u", 16, 2, 3), out = tensor("out", 32, 3, 3);
  instr(OpKind::Add, {a, a}, s);
  instr(OpKind::Mul, {s, a}, t);
  instr(OpKind::Add, {t, t}, u);
  instr(OpKind::Mul, {u, c}, out);
  plan.bindings.push_back(
      PlanBinding{BindingRole::kConstant, "c", c, f32Bytes({10, 10, 10, 10})});
  plan.bindings.push_back(PlanBinding{BindingRole::kInput, "a", a, {}});
  plan.bindings.push_back(PlanBinding{BindingRole::kOutput, "out", out, {}});

  Executor exec;
  ASSERT_TRUE(exec.setDevice(Device::kCuda).isOk());
  exec.setCheckPlan(true);
  Status st = exec.prepare(plan);
  ASSERT_TRUE(st.isOk()) << st.toString();
  SafetensorsFile in, result;
  in.tensors.emplace_back("a", f32Tensor({2, 2}, {1, 2, 3, 4}));
  st = exec.run(in, result);
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(floats(result.tensors[0].second),
            (std::vector<float>{40, 160, 360, 640}));
  std::vector<ArenaCheck> checks = exec.planCheck();
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].touchedBytes, 64u);
  EXPECT_EQ(checks[0].livePeakBytes, 64u);
  EXPECT_TRUE(exec.verifyPlanPeak().isOk());
  // Dead buffers hold the poison: the output once copied out, the input's
  // bytes since u (which reused them) died; the constant is kept.
  auto allPoison = [](const HostTensor &h) {
    for (uint8_t byte : h.bytes)
      if (byte != 0xff)
        return false;
    return !h.bytes.empty();
  };
  HostTensor h;
  ASSERT_TRUE(exec.readBinding(BindingRole::kOutput, "out", h).isOk());
  EXPECT_TRUE(allPoison(h));
  ASSERT_TRUE(exec.readBinding(BindingRole::kInput, "a", h).isOk());
  EXPECT_TRUE(allPoison(h));
  ASSERT_TRUE(exec.readBinding(BindingRole::kConstant, "c", h).isOk());
  EXPECT_EQ(floats(h), (std::vector<float>{10, 10, 10, 10}));
  SafetensorsFile again;
  ASSERT_TRUE(exec.run(in, again).isOk());
  EXPECT_EQ(floats(again.tensors[0].second),
            (std::vector<float>{40, 160, 360, 640}));
}

TEST_F(CudaKernels, ExecutorTrainsLikeTheCpu) {
  Plan plan = makeTrainingPlan();
  Executor cpu, gpu;
  ASSERT_TRUE(gpu.setDevice(Device::kCuda).isOk());
  for (Executor *exec : {&cpu, &gpu}) {
    ASSERT_TRUE(exec->prepare(plan).isOk());
    ASSERT_TRUE(exec->initWeights(7).isOk());
  }
  SafetensorsFile batch;
  batch.tensors.emplace_back("x", f32Tensor({8, 1}, {1, 2, 3, 4, 5, 6, 7, 8}));
  batch.tensors.emplace_back("t",
                             f32Tensor({8, 1}, {3, 5, 7, 9, 11, 13, 15, 17}));
  for (uint64_t step = 0; step < 5; ++step) {
    TrainStepStats a, b;
    ASSERT_TRUE(cpu.trainStep(step, batch, a).isOk());
    Status st = gpu.trainStep(step, batch, b);
    ASSERT_TRUE(st.isOk()) << st.toString();
    EXPECT_NEAR(a.loss, b.loss, 1e-6 * a.loss) << "step " << step;
    EXPECT_EQ(a.microSteps, 2);
    EXPECT_EQ(b.microSteps, 2);
    ASSERT_TRUE(a.gradNorm && b.gradNorm);
    EXPECT_NEAR(*a.gradNorm, *b.gradNorm, 1e-6 * *a.gradNorm);
  }
  HostTensor wc, wg;
  ASSERT_TRUE(cpu.readBinding(BindingRole::kWeight, "w", wc).isOk());
  ASSERT_TRUE(gpu.readBinding(BindingRole::kWeight, "w", wg).isOk());
  ASSERT_EQ(wc.bytes.size(), wg.bytes.size());
  for (size_t i = 0; i < floats(wc).size(); ++i)
    EXPECT_NEAR(floats(wc)[i], floats(wg)[i], 1e-5 * std::fabs(floats(wc)[i]));
}

/// event_record / event_wait (no data of their own, so no kernel case in
/// EveryOpMatchesTheCpuReference): s = a + b runs on stream 1, records event
/// 0; stream 0 waits for it, then y = s * a. Both streams are compute
/// streams (an in-memory plan without stream kinds). Without the wait,
/// stream 0 could read s before stream 1 wrote it (it starts as zeros, the
/// arena's initial bytes); a second run reads the first run's s, so two runs
/// with different inputs are checked.
TEST_F(CudaKernels, ExecutorOrdersStreamsByEvents) {
  PlanBuilder pb;
  const int64_t n = 1 << 20; // enough work that stream 1 is still busy
  uint32_t a = pb.tensor("a", f32, {n}), b = pb.tensor("b", f32, {n});
  uint32_t s = pb.tensor("s", f32, {n}), y = pb.tensor("y", f32, {n});
  pb.instr(Attrs(OpKind::Add), {a, b}, {s});
  pb.instr(withI(op(OpKind::EventRecord), "event", 0), {}, {});
  pb.instr(withI(op(OpKind::EventWait), "event", 0), {}, {});
  pb.instr(Attrs(OpKind::Mul), {s, a}, {y});
  pb.bind(BindingRole::kInput, "a", a);
  pb.bind(BindingRole::kInput, "b", b);
  pb.bind(BindingRole::kOutput, "y", y);
  Plan plan = pb.finish();
  plan.numStreams = 2;
  plan.numEvents = 1;
  plan.instrs[0].stream = 1;
  plan.instrs[1].stream = 1;
  ASSERT_TRUE(validatePlan(plan).isOk()) << validatePlan(plan).toString();

  Executor cpu, gpu;
  ASSERT_TRUE(gpu.setDevice(Device::kCuda).isOk());
  for (Executor *exec : {&cpu, &gpu}) {
    Status st = exec->prepare(plan);
    ASSERT_TRUE(st.isOk()) << st.toString();
  }
  for (int run = 0; run < 2; ++run) {
    SafetensorsFile in, outCpu, outGpu;
    in.tensors.emplace_back("a", uniform(f32, {n}, 0.5, 2.0));
    in.tensors.emplace_back("b", uniform(f32, {n}, 0.5, 2.0));
    ASSERT_TRUE(cpu.run(in, outCpu).isOk());
    Status st = gpu.run(in, outGpu);
    ASSERT_TRUE(st.isOk()) << st.toString();
    ASSERT_EQ(outGpu.tensors.size(), 1u);
    EXPECT_EQ(outCpu.tensors[0].second.bytes, outGpu.tensors[0].second.bytes)
        << "run " << run;
  }
}

//===----------------------------------------------------------------------===//
// The opt-in f32 kernels (COLOSSAL_CUDA_REDUCE=f32, COLOSSAL_CUDA_FUSED=f32)
//===----------------------------------------------------------------------===//
//
// Tolerances of the f32 paths (docs/cuda.md, "Opt-in f32 reductions and
// fused elementwise"):
//   - sums of nonnegative terms (a gradient norm's squares, the column sums
//     below): elementwise 1e-5 for f32 outputs; the blocked pairwise order
//     bounds the error by ~50 x 2^-24 = 3e-6 at these sizes. bf16 outputs
//     1e-2 (one bf16 ulp where f32 and f64 round to different sides).
//   - sums of mixed signs: the f32 error is relative to sum |x|, not to
//     |sum|, so a column that cancels to near 0 has a large relative error
//     (as PyTorch's f32 sums): compared norm-wise (error / max |cpu|).
//   - max/min: exact (a comparison does not round).
//   - fused, arithmetic without cancellation: elementwise 1e-5 (each op
//     rounds once in f32: n ops, n x 2^-24). With f32 transcendentals (<= 2
//     ulps, magnified by 1 + tanh(z) near -1): norm-wise 1e-5.

/// `dims` of `dtype` from a fast generator (the big cases have up to 412M
/// elements): uniform in [lo, hi), or its squares.
HostTensor bigUniform(DType dtype, Dims dims, double lo, double hi,
                      bool square = false) {
  HostTensor t(TensorType{dtype, std::move(dims)});
  uint64_t state = rng()();
  for (int64_t i = 0; i < t.type.numElements(); ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    double u = static_cast<double>(state >> 11) * 0x1.0p-53;
    double v = lo + (hi - lo) * u;
    storeFromDouble(t.ref(), i, square ? v * v : v);
  }
  return t;
}

std::vector<Case> optInF32Cases() {
  std::vector<Case> cases;
  CaseAdder add{cases};
  auto reduce = [](OpKind kind, Dims axes) {
    return withI(withList(op(kind), "axes", std::move(axes)), "keepdims", 0);
  };
  constexpr bool kNorm = true;

  // The gradient norm: a sum of squares over a whole weight (the OPT
  // embedding, 50272 x 768 = 38.6M elements): one output, 2356 blocks of
  // 16384 elements, then one block over their partials.
  add("f32 reduce_sum squares 38.6M", reduce(OpKind::ReduceSum, {0, 1}),
      {bigUniform(f32, {50272, 768}, -2, 2, true)}, kF32Tol);
  add("f32 reduce_sum squares 38.6M", reduce(OpKind::ReduceSum, {0, 1}),
      {bigUniform(bf16, {50272, 768}, -2, 2, true)}, kBF16Tol);
  // reduce_sum_square, what the optimizer step's gradient norm now runs:
  // the squares formed on load (row path, long rows) of mixed-sign
  // gradients, a column path and a warp path.
  add("f32 reduce_sum_square 38.6M", reduce(OpKind::ReduceSumSquare, {0, 1}),
      {bigUniform(f32, {50272, 768}, -2, 2)}, kF32Tol);
  add("f32 reduce_sum_square 38.6M", reduce(OpKind::ReduceSumSquare, {0, 1}),
      {bigUniform(bf16, {50272, 768}, -2, 2)}, kBF16Tol);
  add("f32 reduce_sum_square columns", reduce(OpKind::ReduceSumSquare, {0}),
      {bigUniform(bf16, {8192, 2048}, -2, 2)}, kBF16Tol);
  add("f32 reduce_sum_square rows", reduce(OpKind::ReduceSumSquare, {1}),
      {uniform(f16, {64, 1000}, -2, 2)}, kBF16Tol);
  // Bias gradients: column sums over 8192 rows (chunks of 64 or 99 rows,
  // then the chunks in order).
  add("f32 reduce_sum columns", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(bf16, {8192, 2048}, 0, 2)}, kBF16Tol);
  add("f32 reduce_sum columns", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(f32, {8192, 2048}, 0, 2)}, kF32Tol);
  add("f32 reduce_sum columns", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(bf16, {8192, 50272}, 0, 2)}, kBF16Tol);
  add("f32 reduce_sum columns mixed", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(bf16, {8192, 50272}, -2, 2)}, kBF16Tol, kNorm);
  add("f32 reduce_sum columns mixed", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(f32, {8192, 2048}, -2, 2)}, kF32Tol, kNorm);
  add("f32 reduce_max columns", reduce(OpKind::ReduceMax, {0}),
      {bigUniform(bf16, {8192, 2048}, -2, 2)}, kExact);
  add("f32 reduce_min columns", reduce(OpKind::ReduceMin, {0, 1}),
      {bigUniform(f32, {8192, 2, 1024}, -2, 2)}, kExact);
  // A middle axis: [outer, length, inner] slabs.
  add("f32 reduce_sum middle", reduce(OpKind::ReduceSum, {1}),
      {bigUniform(f32, {16, 512, 1024}, 0, 2)}, kF32Tol);
  add("f32 reduce_sum middle mixed", reduce(OpKind::ReduceSum, {1, 2}),
      {bigUniform(bf16, {8, 2048, 3, 256}, -2, 2)}, kBF16Tol, kNorm);
  add("f32 reduce_mean middle", reduce(OpKind::ReduceMean, {1}),
      {bigUniform(f16, {8, 4096, 384}, 0, 2)}, kBF16Tol);
  // Rows: a warp per row (2048), a block per row (8192), blocks over a
  // row and a finishing pass (3M).
  add("f32 reduce_sum rows mixed", reduce(OpKind::ReduceSum, {1}),
      {bigUniform(f32, {8192, 2048}, -2, 2)}, kF32Tol, kNorm);
  add("f32 reduce_sum rows", reduce(OpKind::ReduceSum, {1}),
      {bigUniform(f16, {1024, 8192}, 0, 2)}, kBF16Tol);
  add("f32 reduce_mean rows", reduce(OpKind::ReduceMean, {1}),
      {bigUniform(f32, {4, 3000000}, 0, 2)}, kF32Tol);
  add("f32 reduce_max rows", reduce(OpKind::ReduceMax, {1}),
      {bigUniform(f32, {4, 3000000}, -2, 2)}, kExact);
  // The packed column path (Reduce.cu, reduceColumnsPackedKernel): each
  // thread reads 8, 4 or 2 adjacent columns per load (the widest pack whose
  // width divides inner), eight rows in flight. OPT's bias gradients over
  // 8 x 1024 rows: 2048 columns (256 chunks of 32 rows) and 8192 (64 of
  // 128); f32 with 1000 (4-column packs), 1002 (2-column packs) and 999
  // (the scalar kernel) columns; bf16 1004 (4) and 1002 (2); tiny ones (one
  // chunk, rows left over after the fours, a 6-column f16 row in 2-column
  // packs, slabs); max and mean through the same kernels.
  add("f32 reduce_sum packed opt", reduce(OpKind::ReduceSum, {0, 1}),
      {bigUniform(bf16, {8, 1024, 2048}, 0, 2)}, kBF16Tol);
  add("f32 reduce_sum packed opt", reduce(OpKind::ReduceSum, {0, 1}),
      {bigUniform(bf16, {8, 1024, 8192}, 0, 2)}, kBF16Tol);
  add("f32 reduce_sum packed opt mixed", reduce(OpKind::ReduceSum, {0, 1}),
      {bigUniform(bf16, {8, 1024, 2048}, -2, 2)}, kBF16Tol, kNorm);
  add("f32 reduce_sum packed 1000", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(f32, {8192, 1000}, 0, 2)}, kF32Tol);
  add("f32 reduce_sum packed 1002", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(f32, {8192, 1002}, 0, 2)}, kF32Tol);
  add("f32 reduce_sum columns 999", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(f32, {8192, 999}, 0, 2)}, kF32Tol);
  add("f32 reduce_sum packed 1004", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(bf16, {4096, 1004}, 0, 2)}, kBF16Tol);
  add("f32 reduce_sum packed 1002", reduce(OpKind::ReduceSum, {0}),
      {bigUniform(bf16, {4096, 1002}, 0, 2)}, kBF16Tol);
  add("f32 reduce_sum packed tiny", reduce(OpKind::ReduceSum, {0}),
      {uniform(bf16, {3, 8}, 0.5, 2.0)}, kBF16Tol);
  add("f32 reduce_sum packed tiny", reduce(OpKind::ReduceSum, {0}),
      {uniform(f32, {7, 4}, 0.5, 2.0)}, kF32Tol);
  add("f32 reduce_sum packed tiny", reduce(OpKind::ReduceSum, {0}),
      {uniform(f16, {45, 6}, 0.5, 2.0)}, kBF16Tol);
  add("f32 reduce_sum packed slabs", reduce(OpKind::ReduceSum, {1}),
      {uniform(bf16, {5, 77, 16}, 0.5, 2.0)}, kBF16Tol);
  add("f32 reduce_max packed opt", reduce(OpKind::ReduceMax, {0, 1}),
      {bigUniform(bf16, {8, 1024, 2048}, -2, 2)}, kExact);
  add("f32 reduce_mean packed", reduce(OpKind::ReduceMean, {0}),
      {bigUniform(f16, {8192, 1024}, 0, 2)}, kBF16Tol);
  // The small shapes of allCases: non-adjacent axes and integers take the
  // f64 path, the empty reduction gives the identity (mean: NaN).
  struct ReduceCase {
    Dims dims, axes;
    int64_t keepdims;
  };
  const ReduceCase reductions[] = {
      {{6, 7, 8}, {1}, 0},       {{6, 7, 8}, {0, 2}, 1}, {{6, 7, 8}, {}, 0},
      {{6, 7, 8}, {0, 1, 2}, 0}, {{64, 1000}, {1}, 1},   {{3, 0, 4}, {1}, 0},
      {{1, 6, 1, 7}, {0, 3}, 0}};
  for (OpKind kind : {OpKind::ReduceSum, OpKind::ReduceMean, OpKind::ReduceMax,
                      OpKind::ReduceMin})
    for (const ReduceCase &r : reductions) {
      Attrs a =
          withI(withList(op(kind), "axes", r.axes), "keepdims", r.keepdims);
      bool exact = kind == OpKind::ReduceMax || kind == OpKind::ReduceMin;
      // Sums of positive terms: with mixed signs the f32 error bound is
      // relative to sum |x|, not to the result (the cases "mixed" below).
      for (DType dtype : {f32, bf16, f16})
        add("f32 " + std::string(opInfo(kind).name), a,
            {exact ? uniform(dtype, r.dims) : uniform(dtype, r.dims, 0.5, 2.0)},
            exact ? kExact : tolFor(dtype), kNorm);
      add("f32 " + std::string(opInfo(kind).name), a,
          {integers(i64, r.dims, -1000, 1000)}, kExact);
    }

  // fused_elementwise: the cases of allCases (bf16 chain, f32 where with
  // broadcast, i32 wrapping to f64), then real sizes and more registers.
  for (Case &c : allCases())
    if (c.attrs.kind() == OpKind::FusedElementwise) {
      c.name = "f32 " + c.name;
      cases.push_back(std::move(c));
    }
  // The bf16 MLP tail at a real size: r2 = x + b, r3 = gelu (erf), r4 =
  // r3 * r3, r5 = r4 - x.
  add("f32 fused bf16 mlp",
      fusedOp({rec(OpKind::Add, bf16, {0, 1}), rec(OpKind::Gelu, bf16, {2}, 0),
               rec(OpKind::Mul, bf16, {3, 3}), rec(OpKind::Sub, bf16, {4, 0})},
              {}, {8192, 1024}),
      {bigUniform(bf16, {8192, 1024}, -3, 3), uniform(bf16, {1024})}, kBF16Tol);
  // The packed kernel (FusedElementwise.cu, classifyFastPath): bools as
  // floats, every affine
  // input layout (same, row, column, middle, scalar) and a non-affine one,
  // results of odd sizes (a tail after the packs of 4), bool and f16
  // results.
  add("f32 fused packed masks",
      fusedOp({rec(OpKind::Greater, boolean, {0, 3}),   // 4 = x > s
               rec(OpKind::And, boolean, {4, 2}),       // 5 = 4 & c
               rec(OpKind::Cast, f32, {1}),             // 6 = f32(y)
               rec(OpKind::Where, f32, {5, 0, 6}),      // 7
               rec(OpKind::Not, boolean, {5}),          // 8
               rec(OpKind::Cast, f32, {8}),             // 9
               rec(OpKind::Mul, f32, {7, 9}),           // 10
               rec(OpKind::Where, f32, {4, 10, 6}),     // 11
               rec(OpKind::Fill, f32, {}, 0),           // 12
               rec(OpKind::Add, f32, {11, 12})},        // 13
              {0.25}, {999, 37}),
      {uniform(f32, {999, 37}, -2, 2), uniform(bf16, {37}), bools({999, 1}),
       uniform(f32, {}, -0.5, 0.5)},
      kF32Tol);
  add("f32 fused packed bool result",
      fusedOp({rec(OpKind::Less, boolean, {0, 2}),
               rec(OpKind::Or, boolean, {3, 1})},
              {}, {3, 5, 7}),
      {uniform(f32, {3, 5, 7}, -1, 1), bools({3, 1, 7}), uniform(f32, {5, 1}, -1, 1)},
      kExact);
  add("f32 fused packed middle and non-affine",
      fusedOp({rec(OpKind::Mul, f16, {0, 1}), rec(OpKind::Sub, f16, {3, 2}),
               rec(OpKind::Relu, f16, {4})},
              {}, {6, 10, 64}),
      {uniform(f16, {6, 10, 64}, -2, 2), uniform(f16, {1, 10, 1}, -2, 2),
       uniform(f16, {6, 1, 64}, -2, 2)},
      kBF16Tol);
  add("f32 fused packed relu grad",
      fusedOp({rec(OpKind::Fill, bf16, {}, 0), rec(OpKind::Greater, boolean, {0, 2}),
               rec(OpKind::Where, bf16, {3, 1, 2})},
              {0.0}, {2048, 4099}),
      {bigUniform(bf16, {2048, 4099}, -1, 1), bigUniform(bf16, {2048, 4099}, -1, 1)},
      kExact);
  // Eight f32 inputs live to the end (11 slots: the 16-slot kernel),
  // positive, no cancellation: (x0 x1 + x2 x3 + x4 x5) / (x6 + x7 + 5) +
  // x0 ... x7 read again.
  {
    std::vector<FusedRecord> r = {
        rec(OpKind::Mul, f32, {0, 1}),   // 8
        rec(OpKind::Mul, f32, {2, 3}),   // 9
        rec(OpKind::Add, f32, {8, 9}),   // 10
        rec(OpKind::Mul, f32, {4, 5}),   // 11
        rec(OpKind::Add, f32, {10, 11}), // 12
        rec(OpKind::Fill, f32, {}, 0),   // 13
        rec(OpKind::Add, f32, {6, 7}),   // 14
        rec(OpKind::Add, f32, {14, 13}), // 15
        rec(OpKind::Div, f32, {12, 15}), // 16
        rec(OpKind::Add, f32, {16, 0}),  rec(OpKind::Add, f32, {17, 1}),
        rec(OpKind::Add, f32, {18, 2}),  rec(OpKind::Add, f32, {19, 3}),
        rec(OpKind::Add, f32, {20, 4}),  rec(OpKind::Add, f32, {21, 5}),
        rec(OpKind::Add, f32, {22, 6}),  rec(OpKind::Add, f32, {23, 7})};
    std::vector<HostTensor> in;
    for (int k = 0; k < 8; ++k)
      in.push_back(uniform(f32, {k % 2 ? 1 : 300, 257}, 1, 2));
    add("f32 fused f32 8 inputs", fusedOp(r, {5.0}, {300, 257}), std::move(in),
        kF32Tol);
  }
  // f32 transcendentals: sigmoid(x) * tanh(x) + gelu_tanh(x) - log(exp(x)
  // + 1), with an f64 detour: cast(f64) * cast(f64) back to f32.
  add("f32 fused f32 transcendentals",
      fusedOp({rec(OpKind::Sigmoid, f32, {0}), rec(OpKind::Tanh, f32, {0}),
               rec(OpKind::Mul, f32, {1, 2}), rec(OpKind::Gelu, f32, {0}, 1),
               rec(OpKind::Add, f32, {3, 4}), rec(OpKind::Exp, f32, {0}),
               rec(OpKind::Fill, f32, {}, 0), rec(OpKind::Add, f32, {6, 7}),
               rec(OpKind::Log, f32, {8}), rec(OpKind::Sub, f32, {5, 9}),
               rec(OpKind::Cast, f64, {10}), rec(OpKind::Mul, f64, {11, 11}),
               rec(OpKind::Cast, f32, {12})},
              {1.0}, {64, 1000}),
      {uniform(f32, {64, 1000}, -4, 4)}, kF32Tol, kNorm);
  return cases;
}

TEST_F(CudaKernels, F32KernelsMatchTheCpuReference) {
  // The f32 reductions are the default and the fixture's backend
  // interprets fused programs in f32 (COLOSSAL_CUDA_FUSED=f32). These cases are the shapes and error bounds they
  // were written for (docs/cuda.md).
  std::vector<Case> cases = optInF32Cases();
  std::set<OpKind> covered;
  int failures = checkCases(cases, covered);
  std::printf("%zu f32 cases, %d failed\n", cases.size(), failures);
}

TEST_F(CudaKernels, FusedJitMatchesTheCpuReference) {
  // The default (COLOSSAL_CUDA_FUSED unset; cuda/FusedJit.h): every fused
  // case of the f32 list on a backend that compiles each program with
  // NVRTC. The generated code computes what the packed kernel computes, so
  // the same tolerances.
  unsetenv("COLOSSAL_CUDA_FUSED");
  std::unique_ptr<Backend> jitBackend;
  Status st = createBackend(Device::kCuda, jitBackend);
  unsetenv("COLOSSAL_CUDA_FUSED");
  ASSERT_TRUE(st.isOk()) << st.toString();
  std::vector<Case> cases;
  for (Case &c : optInF32Cases())
    if (c.attrs.kind() == OpKind::FusedElementwise)
      cases.push_back(std::move(c));
  ASSERT_FALSE(cases.empty());
  std::swap(backend_, jitBackend);
  std::set<OpKind> covered;
  int failures = checkCases(cases, covered);
  std::swap(backend_, jitBackend);
  std::printf("%zu jit cases, %d failed\n", cases.size(), failures);
}

TEST_F(CudaKernels, F64ReferenceKernelsStillRun) {
  // COLOSSAL_CUDA_REDUCE=f64 / COLOSSAL_CUDA_FUSED=f64 select the f64
  // kernels (read once, when a backend starts): the every-op reductions
  // and fused cases on them.
  setenv("COLOSSAL_CUDA_REDUCE", "f64", 1);
  setenv("COLOSSAL_CUDA_FUSED", "f64", 1);
  std::unique_ptr<Backend> f64Backend;
  Status st = createBackend(Device::kCuda, f64Backend);
  unsetenv("COLOSSAL_CUDA_REDUCE");
  unsetenv("COLOSSAL_CUDA_FUSED");
  ASSERT_TRUE(st.isOk()) << st.toString();
  std::vector<Case> cases;
  for (Case &c : allCases())
    if (c.attrs.kind() == OpKind::ReduceSum ||
        c.attrs.kind() == OpKind::ReduceMean ||
        c.attrs.kind() == OpKind::ReduceSumSquare ||
        c.attrs.kind() == OpKind::FusedElementwise)
      cases.push_back(std::move(c));
  ASSERT_FALSE(cases.empty());
  std::swap(backend_, f64Backend);
  std::set<OpKind> covered;
  int failures = checkCases(cases, covered);
  std::swap(backend_, f64Backend);
  std::printf("%zu f64 cases, %d failed\n", cases.size(), failures);
}

TEST_F(CudaKernels, PrecisionVariablesRejectOtherValues) {
  setenv("COLOSSAL_CUDA_REDUCE", "fp32", 1);
  std::unique_ptr<Backend> other;
  Status st = createBackend(Device::kCuda, other);
  unsetenv("COLOSSAL_CUDA_REDUCE");
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("COLOSSAL_CUDA_REDUCE must be f32 or f64"),
            std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("'fp32'"), std::string::npos) << st.message();
  setenv("COLOSSAL_CUDA_FUSED", "fast", 1);
  st = createBackend(Device::kCuda, other);
  unsetenv("COLOSSAL_CUDA_FUSED");
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("COLOSSAL_CUDA_FUSED must be jit, f32 or f64"),
            std::string::npos)
      << st.message();
}

TEST_F(CudaKernels, WaitAndPageVariablesRejectOtherValues) {
  struct Case {
    const char *variable, *bad, *message;
  } cases[] = {
      {"COLOSSAL_CUDA_SCHEDULE", "sometimes",
       "COLOSSAL_CUDA_SCHEDULE must be auto, spin, yield or block"},
      {"COLOSSAL_CUDA_STEP_WAIT", "nap",
       "COLOSSAL_CUDA_STEP_WAIT must be sleep or spin"},
      {"COLOSSAL_HOST_PAGES", "large",
       "COLOSSAL_HOST_PAGES must be pinned or huge"},
  };
  for (const Case &c : cases) {
    setenv(c.variable, c.bad, 1);
    std::unique_ptr<Backend> other;
    Status st = createBackend(Device::kCuda, other);
    unsetenv(c.variable);
    ASSERT_FALSE(st.isOk()) << c.variable;
    EXPECT_NE(st.message().find(c.message), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(std::string("'") + c.bad + "'"),
              std::string::npos)
        << st.message();
  }
}

TEST_F(CudaKernels, HostArenasOfEitherPageKindHoldTheirBytes) {
  // COLOSSAL_HOST_PAGES=huge (the default) maps host arenas itself and pins
  // them with cudaHostRegister; pinned takes cudaHostAlloc's. Either way an
  // arena starts zeroed, a copy to the device and back keeps its bytes, and
  // release gives it back (a second allocation works).
  for (const char *pages : {"huge", "pinned"}) {
    setenv("COLOSSAL_HOST_PAGES", pages, 1);
    std::unique_ptr<Backend> backend;
    Status st = createBackend(Device::kCuda, backend);
    unsetenv("COLOSSAL_HOST_PAGES");
    ASSERT_TRUE(st.isOk()) << st.message();
    size_t bytes = size_t(8) << 20;
    for (int round = 0; round < 2; ++round) {
      std::vector<PlanArena> arenas(2);
      arenas[0].space = MemorySpace::kHost;
      arenas[0].sizeBytes = bytes;
      arenas[0].alignBytes = 64;
      arenas[1].space = MemorySpace::kDevice;
      arenas[1].sizeBytes = bytes;
      arenas[1].alignBytes = 256;
      ASSERT_TRUE(backend->allocateArenas(arenas).isOk()) << pages;
      uint8_t *host = backend->arenaBase(0);
      for (size_t i = 0; i < bytes; ++i)
        ASSERT_EQ(host[i], 0) << pages << ": byte " << i << " not zeroed";
      for (size_t i = 0; i < bytes; ++i)
        host[i] = static_cast<uint8_t>(i * 7 + round);
      uint8_t *dev = backend->arenaBase(1);
      ASSERT_EQ(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice),
                cudaSuccess);
      ASSERT_EQ(cudaMemset(host, 0, bytes), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost),
                cudaSuccess);
      for (size_t i = 0; i < bytes; ++i)
        ASSERT_EQ(host[i], static_cast<uint8_t>(i * 7 + round))
            << pages << ": byte " << i;
      backend->releaseArenas();
    }
  }
}

TEST_F(CudaKernels, CastOfAnUnalignedTensorMatchesTheCpu) {
  // launchCast's packs need both pointers 16-byte aligned; a tensor at an
  // odd element offset (a slice's view) takes the one-element kernel. f32
  // elements [3, 1003) of an input to bf16 at an output offset of one
  // element, then the same from aligned pointers: both bit for bit.
  HostTensor in = uniform(f32, {1003}, -100, 100);
  HostTensor slice(TensorType{f32, {1000}});
  std::memcpy(slice.bytes.data(), in.bytes.data() + 3 * 4, 1000 * 4);
  std::vector<HostTensor> cpu;
  ASSERT_TRUE(
      evaluateOp(withDType(op(OpKind::Cast), "to", bf16), {slice}, cpu).isOk());
  PlanArena arena;
  arena.sizeBytes = 16384;
  arena.alignBytes = 256;
  ASSERT_TRUE(backend_->allocateArenas({arena}).isOk());
  uint8_t *base = backend_->arenaBase(0);
  ASSERT_TRUE(backend_->upload(base, in.bytes.data(), in.bytes.size()).isOk());
  for (bool aligned : {false, true}) {
    const uint8_t *src = aligned ? base + 8192 : base + 3 * 4;
    uint8_t *dst = aligned ? base + 12288 : base + 8192 + 2;
    if (aligned) { // the slice again, now at an aligned address
      ASSERT_TRUE(
          backend_->upload(base + 8192, slice.bytes.data(), 1000 * 4).isOk());
    }
    ASSERT_EQ(cuda::launchCast(nullptr, f32, bf16, 1000, src, dst),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    HostTensor gpu(TensorType{bf16, {1000}});
    ASSERT_TRUE(backend_->download(gpu.bytes.data(), dst, 1000 * 2).isOk());
    EXPECT_EQ(std::memcmp(gpu.bytes.data(), cpu[0].bytes.data(), 1000 * 2), 0)
        << (aligned ? "aligned" : "unaligned");
  }
}

/// The attention variables (no GPU needed: read before the device is
/// asked): an unknown value is reported once, naming the variable and what
/// it takes, and the default is used.
TEST(AttentionVariables, OtherValuesAreReportedOnceAndReadAsTheDefault) {
  cuda::AttentionCall call{};
  call.dtype = DType::kBF16;
  call.batch = 2, call.heads = 4, call.kvHeads = 4;
  call.rows = call.cols = 128, call.depth = 64;
  setenv("COLOSSAL_ATTENTION_KERNEL", "fastest", 1);
  ::testing::internal::CaptureStderr();
  cuda::attentionUsesTensorCores(call, false);
  cuda::attentionUsesTensorCores(call, true);
  std::string err = ::testing::internal::GetCapturedStderr();
  unsetenv("COLOSSAL_ATTENTION_KERNEL");
  const std::string want =
      "COLOSSAL_ATTENTION_KERNEL must be one of "
      "simple,fused,deterministic,auto,wide,cudnn (or unset), got 'fastest'";
  ASSERT_NE(err.find(want), std::string::npos) << err;
  EXPECT_EQ(err.find(want, err.find(want) + 1), std::string::npos) << err;

  // The dq sums' scratch: 2 x 4 x 128 x 64 f32 (256 KiB, under the 32 MiB
  // default) plus delta, 2 x 4 x 128 f32 (4 KiB, 256-aligned); with the cap
  // at one batch's heads (128 KiB), half of it.
  const size_t delta = 2 * 4 * 128 * 4, sums = 2 * 4 * 128 * 64 * 4;
  EXPECT_EQ(cuda::attentionTensorCoreScratchBytes(DType::kBF16, 2, 4, 128, 64),
            delta + sums);
  setenv("COLOSSAL_ATTENTION_DQ_SCRATCH", "1", 1);
  EXPECT_EQ(cuda::attentionTensorCoreScratchBytes(DType::kBF16, 2, 4, 128, 64),
            delta + sums / 2);
  setenv("COLOSSAL_ATTENTION_DQ_SCRATCH", "lots", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuda::attentionTensorCoreScratchBytes(DType::kBF16, 2, 4, 128, 64),
            delta + sums);
  err = ::testing::internal::GetCapturedStderr();
  unsetenv("COLOSSAL_ATTENTION_DQ_SCRATCH");
  EXPECT_NE(err.find("COLOSSAL_ATTENTION_DQ_SCRATCH must be a positive "
                     "number of bytes (or unset), got 'lots'"),
            std::string::npos)
      << err;
  // f32 never takes the tensor-core path: no scratch.
  EXPECT_EQ(cuda::attentionTensorCoreScratchBytes(DType::kF32, 2, 4, 128, 64),
            0u);

  // The blocks (COLOSSAL_ATTENTION_BLOCK): the defaults (forward 64;
  // the fused backward 64s at D 64, 80 and 128, 64 at D 96), each value
  // where it
  // applies (128 at D 64 and 128 only, 128t at D 64 only, 64s forward at
  // D 64 only), an
  // unknown value reported once and read as unset.
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, false), "64");
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, true), "64s");
  EXPECT_STREQ(cuda::attentionBlock(128, 1024, true), "64s");
  EXPECT_STREQ(cuda::attentionBlock(80, 1024, true), "64s");
  EXPECT_STREQ(cuda::attentionBlock(96, 1024, true), "64");
  setenv("COLOSSAL_ATTENTION_BLOCK", "128", 1);
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, false), "128");
  EXPECT_STREQ(cuda::attentionBlock(128, 1024, true), "128");
  EXPECT_STREQ(cuda::attentionBlock(80, 1024, true), "64");
  setenv("COLOSSAL_ATTENTION_BLOCK", "64s", 1);
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, false), "64s");
  EXPECT_STREQ(cuda::attentionBlock(128, 1024, false), "64");
  EXPECT_STREQ(cuda::attentionBlock(80, 1024, true), "64s");
  setenv("COLOSSAL_ATTENTION_BLOCK", "128t", 1);
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, false), "128t");
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, true), "128t");
  EXPECT_STREQ(cuda::attentionBlock(128, 1024, false), "64");
  EXPECT_STREQ(cuda::attentionBlock(128, 1024, true), "64");
  setenv("COLOSSAL_ATTENTION_BLOCK", "64", 1);
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, true), "64");
  setenv("COLOSSAL_ATTENTION_BLOCK", "256", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, true), "64s");
  EXPECT_STREQ(cuda::attentionBlock(64, 1024, false), "64");
  err = ::testing::internal::GetCapturedStderr();
  unsetenv("COLOSSAL_ATTENTION_BLOCK");
  const std::string wantBlock = "COLOSSAL_ATTENTION_BLOCK must be one of "
                                "64,64s,128,128t (or unset), got '256'";
  ASSERT_NE(err.find(wantBlock), std::string::npos) << err;
  EXPECT_EQ(err.find(wantBlock, err.find(wantBlock) + 1), std::string::npos)
      << err;
}

/// Slots by hand (no GPU needed): a value's slot is free again once its
/// last reader ran, and the lowest free slot is taken.
TEST(FusedSlots, ReuseSlotsOfDeadValues) {
  // Inputs x (v0, slot 0), b (v1, slot 1). v2 = cast(v0): v0 dies -> slot
  // 0. v3 = v2 + v1: both die -> 0. v4 = gelu(v3) -> 0. v5 = fill -> 1
  // (0 holds v4). v6 = v4 * v5 -> 0. v7 = cast(v6) -> 0. Two slots.
  cuda::FusedKernelProgram p;
  ASSERT_TRUE(
      cuda::buildFusedProgram(
          fusedOp({rec(OpKind::Cast, bf16, {0}), rec(OpKind::Add, bf16, {2, 1}),
                   rec(OpKind::Gelu, bf16, {3}, 1),
                   rec(OpKind::Fill, bf16, {}, 0),
                   rec(OpKind::Mul, bf16, {4, 5}), rec(OpKind::Cast, f32, {6})},
                  {0.5}, {64, 1000}),
          {TensorType{f32, {64, 1000}}, TensorType{bf16, {1000}}},
          TensorType{f32, {64, 1000}}, p)
          .isOk());
  EXPECT_EQ(p.numSlots, 2);
  const int slots[] = {0, 0, 0, 1, 0, 0};
  for (int r = 0; r < 6; ++r)
    EXPECT_EQ(p.records[r].slot, slots[r]) << "record " << r;
  EXPECT_EQ(p.records[1].slotOperands[0], 0);
  EXPECT_EQ(p.records[1].slotOperands[1], 1);
  EXPECT_EQ(p.records[1].operandTypes[0], bf16);
  EXPECT_EQ(p.records[1].operandTypes[1], bf16);
  EXPECT_EQ(p.records[4].slotOperands[1], 1);
}

TEST(FusedSlots, LiveInputsKeepTheirSlots) {
  // x0 (slot 0) is read by both records, x1 (slot 1) by the first only:
  // v2 = x0 * x1 takes x1's slot 1; v3 = v2 + x0 frees 0 and 1 -> 0, and
  // nothing reads v3, so 0 is free again at once: v4 = fill (the result)
  // takes 0.
  cuda::FusedKernelProgram p;
  ASSERT_TRUE(
      cuda::buildFusedProgram(
          fusedOp({rec(OpKind::Mul, f32, {0, 1}), rec(OpKind::Add, f32, {2, 0}),
                   rec(OpKind::Fill, f32, {}, 0)},
                  {1.0}, {7}),
          {TensorType{f32, {7}}, TensorType{f32, {7}}}, TensorType{f32, {7}}, p)
          .isOk());
  EXPECT_EQ(p.records[0].slot, 1);
  EXPECT_EQ(p.records[1].slot, 0);
  EXPECT_EQ(p.records[2].slot, 0);
  EXPECT_EQ(p.numSlots, 2);
}

TEST_F(CudaKernels, FusedElementwiseReportsDivisionByZero) {
  HostTensor x = integers(i64, {300}, 1, 9);
  HostTensor zero(TensorType{i64, {}}); // r1 = 0: x / (0 * x) at record 1
  expectDeviceError(
      *backend_,
      fusedOp({rec(OpKind::Mul, i64, {1, 0}), rec(OpKind::Div, i64, {0, 2})},
              {}, {300}),
      {x, zero}, "division by zero");
}

TEST_F(CudaKernels, ExecutorNamesTheInstructionOfAKernelError) {
  TrainingPlanOptions o;
  o.tokens = true;
  Plan plan = makeTrainingPlan(o);
  Executor exec;
  ASSERT_TRUE(exec.setDevice(Device::kCuda).isOk());
  ASSERT_TRUE(exec.prepare(plan).isOk());
  ASSERT_TRUE(exec.initWeights(0).isOk());
  SafetensorsFile batch;
  HostTensor ids(TensorType{i64, {4, 1}}), labels(TensorType{i64, {4, 1}});
  for (int64_t i = 0; i < 4; ++i) {
    storeFromInt64(ids.ref(), i, i == 2 ? 99 : i);
    storeFromInt64(labels.ref(), i, i);
  }
  batch.tensors.emplace_back("input_ids", ids);
  batch.tensors.emplace_back("labels", labels);
  TrainStepStats stats;
  Status st = exec.trainStep(0, batch, stats);
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("(gather"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("index 99 out of range [-16, 16)"),
            std::string::npos)
      << st.message();
}


//===----------------------------------------------------------------------===//
// cuDNN's fused attention (AttentionCudnn.h): everything that runs without
// a GPU. The graphs are checked three ways: their structure, their math
// (a host interpreter of the graph's ops, in f64, against the CPU
// reference kernels: out, lse = Stats, dq, dk, dv), and cuDNN's own
// validation of every tensor and op descriptor (finalized without a
// device). Heuristics, plans and execution need a GPU: attention-check.
//===----------------------------------------------------------------------===//

cuda::CudnnSdpaShape sdpaShape(int64_t b, int64_t h, int64_t hkv, int64_t s,
                               int64_t t, int64_t d, bool causal,
                               bool backward) {
  cuda::CudnnSdpaShape shape;
  shape.dtype = DType::kBF16;
  shape.batch = b, shape.heads = h, shape.kvHeads = hkv;
  shape.rows = s, shape.cols = t, shape.depth = d;
  shape.causal = causal;
  shape.backward = backward;
  return shape;
}

TEST(CudnnAttention, SupportPredicate) {
  auto reason = [](cuda::CudnnSdpaShape s, int64_t version = 91900) {
    return cuda::cudnnSdpaUnsupportedReason(s, version);
  };
  // OPT's shapes: bf16 and f16, D 64 and 128, causal S = T, GQA, S < T.
  EXPECT_EQ(reason(sdpaShape(8, 32, 32, 1024, 1024, 64, true, false)), "");
  EXPECT_EQ(reason(sdpaShape(8, 32, 32, 1024, 1024, 64, true, true)), "");
  EXPECT_EQ(reason(sdpaShape(2, 8, 2, 100, 300, 128, true, true)), "");
  EXPECT_EQ(reason(sdpaShape(1, 4, 1, 7, 9, 8, false, false)), "");
  cuda::CudnnSdpaShape f16 = sdpaShape(2, 4, 4, 64, 64, 64, false, true);
  f16.dtype = DType::kF16;
  EXPECT_EQ(reason(f16), "");
  // Not taken: f32, a bias, D not a multiple of 8 or above 128, causal
  // with S > T, empty dims, an old cuDNN.
  cuda::CudnnSdpaShape f32 = f16;
  f32.dtype = DType::kF32;
  EXPECT_NE(reason(f32).find("bf16 and f16"), std::string::npos);
  cuda::CudnnSdpaShape bias = sdpaShape(2, 4, 4, 64, 64, 64, false, false);
  bias.hasBias = true;
  EXPECT_NE(reason(bias).find("bias"), std::string::npos);
  EXPECT_NE(reason(sdpaShape(2, 4, 4, 64, 64, 80 + 4, false, false))
                .find("head dim 84"),
            std::string::npos);
  EXPECT_NE(reason(sdpaShape(2, 4, 4, 64, 64, 256, false, false))
                .find("head dim 256"),
            std::string::npos);
  EXPECT_NE(reason(sdpaShape(2, 4, 4, 65, 64, 64, true, false))
                .find("S 65 > T 64"),
            std::string::npos);
  EXPECT_EQ(reason(sdpaShape(2, 4, 4, 65, 64, 64, false, false)), "");
  EXPECT_NE(reason(sdpaShape(2, 4, 4, 0, 64, 64, false, false))
                .find("empty"),
            std::string::npos);
  EXPECT_NE(reason(sdpaShape(2, 4, 4, 64, 64, 64, false, false), 8907)
                .find("cuDNN 9"),
            std::string::npos);
  // Bottom-right causal before 9.6: S and T multiples of 64 only.
  EXPECT_NE(reason(sdpaShape(2, 4, 4, 100, 300, 64, true, false), 90500)
                .find("9.6"),
            std::string::npos);
  EXPECT_EQ(reason(sdpaShape(2, 4, 4, 128, 320, 64, true, false), 90500), "");
  EXPECT_EQ(reason(sdpaShape(2, 4, 4, 100, 300, 64, true, false), 90600), "");
  // Version 0: not checked.
  EXPECT_EQ(reason(sdpaShape(2, 4, 4, 100, 300, 64, true, false), 0), "");
}

/// Every op reads tensors that exist and are either bound (non-virtual) or
/// written by an earlier op; every virtual tensor is written exactly once.
void expectWellFormed(const cuda::SdpaGraph &g) {
  std::set<int64_t> written;
  for (const cuda::SdpaOp &op : g.ops) {
    for (int64_t in : op.in) {
      const cuda::SdpaTensor *t = g.find(in);
      ASSERT_NE(t, nullptr) << op.name;
      if (t->isVirtual) {
        EXPECT_TRUE(written.count(in)) << op.name << " reads " << t->name
                                       << " before it is written";
      }
    }
    ASSERT_NE(g.find(op.out), nullptr) << op.name;
    EXPECT_TRUE(written.insert(op.out).second) << op.name;
  }
  for (const cuda::SdpaTensor &t : g.tensors)
    if (t.isVirtual) {
      EXPECT_TRUE(written.count(t.uid)) << t.name << " is never written";
    }
  std::set<int64_t> uids;
  for (const cuda::SdpaTensor &t : g.tensors)
    EXPECT_TRUE(uids.insert(t.uid).second) << t.name;
}

std::vector<std::string> opNames(const cuda::SdpaGraph &g) {
  std::vector<std::string> names;
  for (const cuda::SdpaOp &op : g.ops)
    names.push_back(op.name);
  return names;
}

TEST(CudnnAttention, ForwardGraphIsTheFlashPattern) {
  cuda::SdpaGraph g =
      cuda::buildSdpaGraph(sdpaShape(2, 4, 2, 3, 5, 64, true, false));
  expectWellFormed(g);
  EXPECT_EQ(opNames(g),
            (std::vector<std::string>{
                "bmm1", "attn_scale", "gen_row_index", "row+skv",
                "row+skv-sq", "gen_col_index", "row>=col", "causal_select",
                "max", "sub_M", "exp", "sum", "log", "stats", "div",
                "bmm2"}));
  // K read through transposed strides; Stats in our lse's layout (f32,
  // [B, H, S] contiguous): cuDNN writes the lse buffer directly.
  const cuda::SdpaTensor *k = g.find(cuda::kUidK);
  EXPECT_EQ(k->dims, (std::array<int64_t, 4>{2, 2, 64, 5}));
  EXPECT_EQ(k->strides, (std::array<int64_t, 4>{2 * 5 * 64, 5 * 64, 1, 64}));
  const cuda::SdpaTensor *stats = g.find(cuda::kUidStats);
  EXPECT_EQ(stats->type, cuda::SdpaType::kF32);
  EXPECT_EQ(stats->dims, (std::array<int64_t, 4>{2, 4, 3, 1}));
  EXPECT_EQ(stats->strides, (std::array<int64_t, 4>{12, 3, 1, 1}));
  // S = T: the top-left mask (no shift); no mask without causal.
  cuda::SdpaGraph square =
      cuda::buildSdpaGraph(sdpaShape(2, 4, 4, 5, 5, 64, true, false));
  expectWellFormed(square);
  EXPECT_EQ(square.find(cuda::kUidSeqKv), nullptr);
  EXPECT_NE(square.find(cuda::kUidNegInf), nullptr);
  cuda::SdpaGraph plain =
      cuda::buildSdpaGraph(sdpaShape(2, 4, 4, 5, 5, 64, false, false));
  expectWellFormed(plain);
  EXPECT_EQ(plain.ops.size(), 10u);
  EXPECT_EQ(plain.find(cuda::kUidNegInf), nullptr);
  // No workspace of its own beside the plan's.
  EXPECT_EQ(plain.layout(1000).totalBytes, 1000u);
}

TEST(CudnnAttention, BackwardGraphAndWorkspace) {
  cuda::SdpaGraph mha =
      cuda::buildSdpaGraph(sdpaShape(2, 4, 4, 8, 8, 64, true, true));
  expectWellFormed(mha);
  for (const std::string &n : opNames(mha))
    EXPECT_TRUE(n != "red_dV_head" && n != "red_dK_head") << n;
  cuda::SdpaGraph gqa =
      cuda::buildSdpaGraph(sdpaShape(2, 8, 2, 8, 16, 64, true, true));
  expectWellFormed(gqa);
  std::vector<std::string> names = opNames(gqa);
  EXPECT_NE(std::find(names.begin(), names.end(), "red_dV_head"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "red_dK_head"), names.end());
  EXPECT_EQ(gqa.find(cuda::kUidDV)->dims,
            (std::array<int64_t, 4>{2, 2, 16, 64}));
  const cuda::SdpaTensor *acc = gqa.find(cuda::kUidDQAccum);
  ASSERT_NE(acc, nullptr);
  EXPECT_FALSE(acc->isVirtual);
  EXPECT_EQ(acc->type, cuda::SdpaType::kF32);
  // Workspace: the plan's bytes, then the softmax sum (2 x 8 x 8 f32 =
  // 512 bytes) and the f32 dQ accumulator (2 x 8 x 8 x 64 x 4 = 32 KiB),
  // each at a 256-byte boundary.
  cuda::SdpaGraph::Layout l = gqa.layout(1000);
  EXPECT_EQ(l.planBytes, 1000u);
  EXPECT_EQ(l.softmaxSumOffset, 1024u);
  EXPECT_EQ(l.dqAccumOffset, 1024u + 512u);
  EXPECT_EQ(l.totalBytes, 1024u + 512u + 32768u);
  // OPT-1.3b's backward: 64 MiB of dQ accumulator + 1 MiB of sums.
  cuda::SdpaGraph opt =
      cuda::buildSdpaGraph(sdpaShape(8, 32, 32, 1024, 1024, 64, true, true));
  EXPECT_EQ(opt.layout(0).totalBytes, (size_t(65) << 20));
}

/// The graph evaluated on the host in f64, by its ops' cuDNN semantics:
/// each tensor is memory addressed through its strides (so a reshape
/// rereads its input's memory with new dims and strides: K^T's buffer is
/// K's), operands broadcast over size-1 dims and over GQA's heads (head h
/// of H reads head h / (H / Hk)), reductions sum or max over size-1 dims
/// and over head groups.
struct SdpaInterpreter {
  const cuda::SdpaGraph &g;
  std::map<int64_t, std::vector<double>> mem;

  static int64_t span(const cuda::SdpaTensor &t) {
    int64_t n = 1;
    for (int d = 0; d < 4; ++d)
      n += (t.dims[d] - 1) * t.strides[d];
    return n;
  }
  double &at(int64_t uid, const std::array<int64_t, 4> &i) {
    const cuda::SdpaTensor &t = *g.find(uid);
    std::vector<double> &m = mem[uid];
    if (m.empty())
      m.assign(static_cast<size_t>(span(t)), 0.0);
    int64_t off = 0;
    for (int d = 0; d < 4; ++d)
      off += i[d] * t.strides[d];
    return m[static_cast<size_t>(off)];
  }
  /// Index of operand `uid` for output index `i` (broadcast, GQA).
  std::array<int64_t, 4> bcast(int64_t uid, const std::array<int64_t, 4> &i,
                               const std::array<int64_t, 4> &outDims) {
    const cuda::SdpaTensor &t = *g.find(uid);
    std::array<int64_t, 4> j{};
    for (int d = 0; d < 4; ++d) {
      // A matmul's last two dims are not broadcast (the caller sets them).
      int64_t ratio = outDims[d] / t.dims[d];
      j[d] = t.dims[d] == 1 ? 0 : ratio ? i[d] / ratio : i[d];
    }
    return j;
  }
  template <typename F> static void forEach(std::array<int64_t, 4> dims, F f) {
    std::array<int64_t, 4> i{};
    for (i[0] = 0; i[0] < dims[0]; ++i[0])
      for (i[1] = 0; i[1] < dims[1]; ++i[1])
        for (i[2] = 0; i[2] < dims[2]; ++i[2])
          for (i[3] = 0; i[3] < dims[3]; ++i[3])
            f(i);
  }

  void run() {
    for (const cuda::SdpaOp &op : g.ops) {
      const cuda::SdpaTensor &y = *g.find(op.out);
      switch (op.kind) {
      case cuda::SdpaOpKind::kMatmul: {
        const cuda::SdpaTensor &a = *g.find(op.in[0]);
        forEach(y.dims, [&](const std::array<int64_t, 4> &i) {
          double sum = 0;
          for (int64_t k = 0; k < a.dims[3]; ++k) {
            std::array<int64_t, 4> ia = bcast(op.in[0], i, y.dims);
            std::array<int64_t, 4> ib = bcast(op.in[1], i, y.dims);
            ia[2] = i[2], ia[3] = k;
            ib[2] = k, ib[3] = i[3];
            sum += at(op.in[0], ia) * at(op.in[1], ib);
          }
          at(op.out, i) = sum;
        });
        break;
      }
      case cuda::SdpaOpKind::kPointwise:
        forEach(y.dims, [&](const std::array<int64_t, 4> &i) {
          auto in = [&](size_t k) {
            return at(op.in[k], bcast(op.in[k], i, y.dims));
          };
          double v = 0;
          switch (op.pw) {
          case cuda::SdpaPw::kAdd: v = in(0) + in(1); break;
          case cuda::SdpaPw::kSub: v = in(0) - in(1); break;
          case cuda::SdpaPw::kMul: v = in(0) * in(1); break;
          case cuda::SdpaPw::kDiv: v = in(0) / in(1); break;
          case cuda::SdpaPw::kExp: v = std::exp(in(0)); break;
          case cuda::SdpaPw::kLog: v = std::log(in(0)); break;
          case cuda::SdpaPw::kIdentity: v = in(0); break;
          case cuda::SdpaPw::kCmpGe: v = in(0) >= in(1) ? 1 : 0; break;
          case cuda::SdpaPw::kGenIndex:
            v = static_cast<double>(i[op.axis]);
            break;
          case cuda::SdpaPw::kBinarySelect:
            v = in(2) != 0 ? in(0) : in(1);
            break;
          }
          at(op.out, i) = v;
        });
        break;
      case cuda::SdpaOpKind::kReduction: {
        const cuda::SdpaTensor &x = *g.find(op.in[0]);
        bool isMax = op.reduce == cuda::SdpaReduce::kMax;
        forEach(y.dims, [&](const std::array<int64_t, 4> &i) {
          at(op.out, i) = isMax ? -INFINITY : 0.0;
        });
        forEach(x.dims, [&](const std::array<int64_t, 4> &i) {
          std::array<int64_t, 4> o{};
          for (int d = 0; d < 4; ++d)
            o[d] = y.dims[d] == 1 ? 0 : i[d] / (x.dims[d] / y.dims[d]);
          double &dst = at(op.out, o);
          double v = at(op.in[0], i);
          dst = isMax ? std::max(dst, v) : dst + v;
        });
        break;
      }
      case cuda::SdpaOpKind::kReshape: {
        const cuda::SdpaTensor &x = *g.find(op.in[0]);
        at(op.out, {0, 0, 0, 0}); // allocate
        std::vector<double> m(static_cast<size_t>(
            std::max(span(x), span(y))));
        forEach(x.dims, [&](const std::array<int64_t, 4> &i) {
          int64_t off = 0;
          for (int d = 0; d < 4; ++d)
            off += i[d] * x.strides[d];
          m[static_cast<size_t>(off)] = at(op.in[0], i);
        });
        m.resize(static_cast<size_t>(span(y)));
        mem[op.out] = m;
        break;
      }
      }
    }
  }
  /// Binds a contiguous host tensor's values as `uid`'s memory.
  void bind(int64_t uid, const HostTensor &t) {
    std::vector<double> &m = mem[uid];
    m.resize(static_cast<size_t>(t.type.numElements()));
    for (int64_t e = 0; e < t.type.numElements(); ++e)
      m[static_cast<size_t>(e)] = loadAsDouble(t.ref(), e);
  }
  void bindScalar(int64_t uid, double v) {
    if (g.find(uid))
      mem[uid] = {v};
  }
  /// Worst |got - want| / max(max |want|, 1e-3) of output `uid`.
  double error(int64_t uid, const HostTensor &want) {
    const std::vector<double> &m = mem[uid];
    double worst = 0, scale = 0;
    for (int64_t e = 0; e < want.type.numElements(); ++e) {
      double w = loadAsDouble(want.ref(), e);
      scale = std::max(scale, std::fabs(w));
      worst = std::max(worst, std::fabs(m[static_cast<size_t>(e)] - w));
    }
    return worst / std::max(scale, 1e-3);
  }
};

HostTensor randomF32(const Dims &dims, std::mt19937 &gen) {
  HostTensor t(TensorType{DType::kF32, dims});
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (int64_t i = 0; i < t.type.numElements(); ++i)
    storeFromDouble(t.ref(), i, dist(gen));
  return t;
}

TEST(CudnnAttention, GraphMathMatchesTheReferenceOnTheHost) {
  struct Shape {
    int64_t b, h, hkv, s, t, d;
    bool causal;
  };
  std::mt19937 gen(7);
  for (const Shape &c : {Shape{2, 4, 4, 6, 6, 8, true},
                         Shape{1, 4, 2, 5, 9, 16, true},
                         Shape{2, 3, 1, 7, 4, 8, false},
                         Shape{1, 2, 2, 9, 9, 8, false}}) {
    SCOPED_TRACE(std::to_string(c.h) + "/" + std::to_string(c.hkv) + " S" +
                 std::to_string(c.s) + " T" + std::to_string(c.t) +
                 (c.causal ? " causal" : ""));
    Dims qd{c.b, c.h, c.s, c.d}, kd{c.b, c.hkv, c.t, c.d};
    std::vector<HostTensor> in = {randomF32(qd, gen), randomF32(kd, gen),
                                  randomF32(kd, gen)};
    double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    Attrs fwd(OpKind::Attention), bwd(OpKind::AttentionGrad);
    for (Attrs *a : {&fwd, &bwd}) {
      a->setF("scale", scale);
      a->setI("causal", c.causal);
    }
    std::vector<HostTensor> out, grads;
    ASSERT_TRUE(evaluateOp(fwd, in, out).isOk());
    std::vector<HostTensor> gin = in;
    gin.push_back(out[0]);
    gin.push_back(out[1]);
    gin.push_back(randomF32(qd, gen));
    ASSERT_TRUE(evaluateOp(bwd, gin, grads).isOk());

    for (bool backward : {false, true}) {
      cuda::SdpaGraph g = cuda::buildSdpaGraph(
          sdpaShape(c.b, c.h, c.hkv, c.s, c.t, c.d, c.causal, backward));
      SdpaInterpreter it{g, {}};
      it.bind(cuda::kUidQ, in[0]);
      it.bind(cuda::kUidK, in[1]); // K^T's strides read K's buffer
      it.bind(cuda::kUidV, in[2]);
      it.bindScalar(cuda::kUidScale, static_cast<float>(scale));
      it.bindScalar(cuda::kUidNegInf, -INFINITY);
      it.bindScalar(cuda::kUidOne, 1.0);
      it.bindScalar(cuda::kUidSeqKv, static_cast<double>(c.t));
      it.bindScalar(cuda::kUidSeqQ, static_cast<double>(c.s));
      if (!backward) {
        it.run();
        EXPECT_LT(it.error(cuda::kUidO, out[0]), 1e-6);
        // Stats are our lse, unconverted.
        EXPECT_LT(it.error(cuda::kUidStats, out[1]), 1e-6);
        continue;
      }
      it.bind(cuda::kUidO, out[0]);
      it.bind(cuda::kUidStats, out[1]);
      it.bind(cuda::kUidDO, gin.back());
      it.run();
      EXPECT_LT(it.error(cuda::kUidDQ, grads[0]), 1e-5);
      EXPECT_LT(it.error(cuda::kUidDK, grads[1]), 1e-5);
      EXPECT_LT(it.error(cuda::kUidDV, grads[2]), 1e-5);
    }
  }
}

TEST(CudnnAttention, KernelVariableTakesCudnn) {
  setenv("COLOSSAL_ATTENTION_KERNEL", "cudnn", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(cuda::attentionCudnnRequested());
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("COLOSSAL_ATTENTION_KERNEL must be"), std::string::npos)
      << err;
  setenv("COLOSSAL_ATTENTION_KERNEL", "auto", 1);
  EXPECT_FALSE(cuda::attentionCudnnRequested());
  unsetenv("COLOSSAL_ATTENTION_KERNEL");
  EXPECT_FALSE(cuda::attentionCudnnRequested());
}

TEST(CudnnAttention, DescriptorsFinalizeWithoutADevice) {
  std::string why;
  int64_t version = cuda::cudnnLoadedVersion(&why);
  if (version == 0)
    GTEST_SKIP() << "cuDNN not loadable here: " << why;
  std::printf("cuDNN %lld loaded\n", static_cast<long long>(version));
  for (bool backward : {false, true})
    for (bool causal : {false, true})
      for (int64_t hkv : {int64_t(32), int64_t(8)})
        for (int64_t t : {int64_t(1024), int64_t(1536)}) {
          cuda::CudnnSdpaShape s =
              sdpaShape(8, 32, hkv, 1024, t, 64, causal, backward);
          Status st =
              cuda::cudnnSdpaLowerWithoutDevice(cuda::buildSdpaGraph(s));
          EXPECT_TRUE(st.isOk()) << s.toString() << ": " << st.message();
          st = cuda::cudnnSdpaLowerWithoutDevice(cuda::buildSdpaGraph(s),
                                                 true);
          // cuDNN 9.8 and later take an operation graph without a handle
          // (9.19 here finalizes all of these).
          if (version >= 90800) {
            EXPECT_TRUE(st.isOk())
                << s.toString() << ": operation graph: " << st.message();
          }
        }
  // f16, D 128, MQA, S < T off multiples of 64, both directions.
  for (bool backward : {false, true}) {
    cuda::CudnnSdpaShape s = sdpaShape(2, 8, 1, 100, 300, 128, true, backward);
    s.dtype = DType::kF16;
    Status st =
        cuda::cudnnSdpaLowerWithoutDevice(cuda::buildSdpaGraph(s), true);
    EXPECT_TRUE(st.isOk()) << s.toString() << ": " << st.message();
  }
  // A backend without a GPU never gets here; the cache reports a shape
  // cuDNN does not take without touching the device.
  cuda::CudnnAttention cudnn;
  size_t bytes = 0;
  cuda::CudnnSdpaShape f32 = sdpaShape(1, 1, 1, 8, 8, 64, false, false);
  f32.dtype = DType::kF32;
  Status st = cudnn.prepare(f32, &bytes);
  EXPECT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("bf16 and f16"), std::string::npos);
}

} // namespace
