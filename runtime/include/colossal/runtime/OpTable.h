//===- OpTable.h - The one definition of every op's signature -----*- C++ -*-===//
//
// Every computation a plan can run is an OpKind. This table is shared by the
// compiler (the `colossal` graph dialect has one op per kind with the same
// name and attribute names; the importer folds constants with the CPU kernels;
// the verifier checks result types with inferOutputTypes) and the runtime (the
// plan reader re-infers every instruction's output types before it runs
// anything, so a corrupt plan cannot drive a kernel out of bounds).
//
// Semantics (all tensors dense row-major, static shapes; "broadcast" is
// numpy/ONNX multidirectional broadcasting of the inputs' shapes):
//
//  unary float ops    neg abs exp log sqrt rsqrt reciprocal tanh sigmoid relu
//                     erf sin cos gelu(approximate: 0 exact erf, 1 tanh);
//                     1 input, result = input type. neg/abs/relu also take
//                     integer types.
//  not                bool -> bool.
//  identity           a copy; any type.
//  cast               to the dtype in attr `to`.
//  add sub mul div pow max min
//                     2 inputs of one dtype, broadcast; result that dtype.
//                     Integer div truncates toward zero (C semantics).
//  and or xor         bool x bool -> bool, broadcast.
//  equal less less_equal greater greater_equal
//                     2 inputs of one dtype, broadcast; result bool.
//  where              (cond: bool, x, y: same dtype) broadcast of all three.
//  matmul             a [..., M, K], b [..., K, N] (after the optional
//                     transposes of the last two dims given by transpose_a/b),
//                     rank >= 2 each, batch dims broadcast. Float only;
//                     accumulates in f64 on the CPU.
//  reduce_sum reduce_mean reduce_max reduce_min
//                     attrs axes (sorted, unique, in [0, rank)), keepdims (0/1).
//                     Empty axes reduce nothing (a copy).
//  softmax log_softmax  over one axis (attr axis in [0, rank)).
//  layer_norm         (x, scale[, bias]); normalises over dims [axis, rank);
//                     scale and bias have shape x.dims[axis:]; statistics in
//                     f64 on the CPU; attr epsilon.
//  gather             (data, indices: i32/i64); attr axis in [0, rank(data));
//                     result dims data[:axis] ++ indices ++ data[axis+1:];
//                     negative indices count from the end; an out-of-range
//                     index is a run-time error, not a crash.
//  gather_nd          ONNX GatherND with attr batch_dims.
//  cumsum             attrs axis, exclusive (0/1), reverse (0/1).
//  gather_elements    ONNX GatherElements: (data, indices: i32/i64, of one
//                     rank >= 1); attr axis in [0, rank). Result data.dtype
//                     x indices.dims; indices.dims[d] <= data.dims[d] for
//                     every d != axis (onnxruntime's rule; the axis dim is
//                     free). For axis 0 of rank 3, out[i][j][k] =
//                     data[indices[i][j][k]][j][k], likewise on the other
//                     axes. Negative indices count from the end; an
//                     out-of-range index is a run-time error.
//  trilu              ONNX Trilu, with k an attribute: x (rank >= 2, any
//                     dtype); attrs upper (0/1), k (any int64: the diagonal
//                     offset). Keeps element [..., i, j] where j - i >= k
//                     (upper) or j - i <= k (lower) and zeroes the rest.
//                     Its gradient is trilu of the gradient, same attrs.
//  reshape            attr shape (fully static, product preserved).
//  expand             attr shape: broadcast the input to it (ONNX Expand,
//                     with the result shape already resolved).
//  transpose          attr perm, a permutation of [0, rank).
//  slice              attrs starts, steps, sizes (one per dim): result dim d
//                     has sizes[d] elements, element i reads input index
//                     starts[d] + i * steps[d], which must be in range.
//  concat             >= 1 inputs of one dtype and rank; attr axis.
//  pad                attrs pads (rank begins then rank ends, may be negative:
//                     a crop), mode (0 constant, 1 reflect, 2 edge), value.
//  fill               no inputs; attrs to (dtype), shape, value: a splat.
//  softmax_cross_entropy
//                     (scores [N, C, d...] float, labels [N, d...] i32/i64);
//                     attrs ignore_index, reduction (0 none, 1 sum, 2 mean).
//                     mean divides by the number of labels != ignore_index
//                     (0/0 gives NaN, as PyTorch). Result dtype = scores'
//                     (f32 for bf16/f16 scores: the loss of a mixed-
//                     precision step reads the bf16 logits without a cast
//                     and a widened copy); shape [] unless reduction is
//                     none ([N, d...]). softmax_cross_entropy_grad's dloss
//                     is that result, its gradient the scores' dtype.
//
// Training ops: the backward of some forward ops, and optimizer updates.
// All compute in f64 on the CPU and store once in the result dtype.
//
//  gather_grad        (grad float, indices i32/i64); attrs axis, shape (the
//                     gathered data's dims; axis in [0, rank(shape))),
//                     padding_idx (INT64_MIN: none; else in [-shape[axis],
//                     shape[axis]), negative counts from the end). grad must
//                     be shape[:axis] ++ indices ++ shape[axis+1:]. Result
//                     grad.dtype x shape: zeros, plus each grad slice added
//                     into row indices[...] of axis `axis` (repeated indices
//                     sum, in f64; negative indices count from the end; out
//                     of range is a run-time error). Rows whose normalised
//                     index equals the normalised padding_idx get nothing
//                     (nn.Embedding(padding_idx=...)).
//  gather_elements_grad
//                     (grad float, indices i32/i64: one shape); attrs axis,
//                     shape (the gathered data's dims; rank(shape) =
//                     rank(indices), axis in [0, rank), indices.dims[d] <=
//                     shape[d] for d != axis). Result grad.dtype x shape:
//                     zeros, plus each grad element added where
//                     gather_elements read it from (repeated positions sum,
//                     in f64; negative indices count from the end; out of
//                     range is a run-time error).
//  slice_grad         (grad, any dtype); attrs starts, steps, shape (the
//                     sliced input's dims). Result grad.dtype x shape: zeros
//                     with grad written where `slice` with these starts and
//                     steps and sizes = grad.dims reads (same range rules).
//  layer_norm_grad    (x float, scale, dy: scale shape x.dims[axis:], scale
//                     and dy of x's dtype, dy of x's shape); attrs axis,
//                     epsilon as layer_norm. THREE results: dx (x's type),
//                     dscale and dbias (scale's type). Biased variance,
//                     statistics and sums in f64.
//  softmax_cross_entropy_grad
//                     (scores [N, C, d...] float, labels [N, d...] i32/i64,
//                     dloss float: [] for reduction sum/mean, [N, d...] for
//                     none); attrs ignore_index, reduction as the forward.
//                     Result dscores (scores' type) = (softmax(scores) -
//                     onehot(label)) * dloss at that position (/ the count
//                     of non-ignored labels for mean), 0 at ignored
//                     positions. With mean and every label ignored the
//                     forward is NaN but every position is ignored, so the
//                     gradient is 0 everywhere. A label outside [0, C) that
//                     is not ignore_index is a run-time error.
//  adamw              (param f32, grad float, m f32, v f32: one shape; lr f32
//                     [], step i64 [], the 0-based optimizer step); attrs
//                     beta1, beta2 (in [0, 1)), eps, weight_decay (finite,
//                     >= 0). THREE results param', m', v' (f32, param's
//                     shape): torch.optim.AdamW (single tensor, no amsgrad,
//                     no maximize) with t = step + 1:
//                       param *= 1 - lr * wd
//                       m = beta1 * m + (1 - beta1) * g
//                       v = beta2 * v + (1 - beta2) * g * g
//                       param -= lr / (1 - beta1^t) * m
//                                / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//                     A negative step is a run-time error. Results may alias
//                     their inputs exactly: param'<-param, m'<-m, v'<-v.
//                     With a seventh operand divisor (f32 []), the update
//                     uses g = grad / divisor (grad widened to f32, one f32
//                     division, as a `div` of the widened gradient rounds
//                     it): an offloaded update then reads the raw (bf16)
//                     gradient, which crosses PCIe at half the bytes.
//  adamw_norm         (param, grad, m, v, lr, step as adamw; divisor f32 []);
//                     adamw's attrs. FOUR results param', m', v' (as adamw)
//                     and sumsq (f32 []): adamw on g = grad / divisor (grad
//                     widened to f32, one f32 division, as a `div` of the
//                     widened gradient would round it), and sumsq = the sum
//                     of g * g (the gradient norm's share of this weight,
//                     what reduce_sum_square of g gives). The fused training
//                     step's update of a device-resident weight: one pass
//                     over the raw (bf16) gradient instead of a cast and
//                     divide, a reduce_sum_square and an adamw. Aliases as
//                     adamw.
//  sgd                (param f32, grad float, buf f32: one shape; lr f32 [],
//                     step i64 []); attrs momentum (finite, >= 0), dampening
//                     (finite), weight_decay (finite, >= 0), nesterov (0/1;
//                     1 needs momentum > 0 and dampening 0, as PyTorch).
//                     TWO results param', buf': torch.optim.SGD:
//                       g = grad + wd * param
//                       if momentum != 0:
//                         buf = step == 0 ? g : momentum * buf
//                                               + (1 - dampening) * g
//                         g = nesterov ? g + momentum * buf : buf
//                       param -= lr * g
//                     With momentum 0, buf' = buf. A negative step is a
//                     run-time error. Aliases: param'<-param, buf'<-buf.
//
// Fused attention (docs/cuda.md "Fused attention"; colossal-fuse-attention
// substitutes it for softmax(q @ k^T * scale + mask) @ v):
//
//  attention          (q [B, Hq, S, D], k [B, Hkv, T, D], v [B, Hkv, T, D]
//                     [, bias]): q, k, v of one float dtype; Hkv >= 1 and
//                     Hq % Hkv == 0 (grouped-query attention: query head h
//                     reads kv head h / (Hq / Hkv)); bias of q's dtype, rank
//                     <= 4, broadcastable to [B, Hq, S, T] (each of its
//                     trailing dims 1 or the full dim), added to the
//                     scores. Attrs scale (f64, finite), causal (0/1: key j
//                     is masked out of query row i when j > i + T - S, the
//                     bottom-right alignment). TWO results: out (q's type)
//                     = softmax_j(scale * q_i . k_j + bias_ij) @ v, and lse
//                     (f32 [B, Hq, S]) = log sum_j exp(score_ij). A row
//                     whose every score is -inf (or masked) gives out 0 and
//                     lse -inf. Scores, softmax and sums in f64 on the CPU;
//                     no [S, T] tensor is a result.
//  attention_grad     (q, k, v [, bias], out, lse, dout) as attention's
//                     operands and results, dout of out's type; attrs as
//                     attention. THREE results dq, dk, dv (q's, k's, v's
//                     types): the gradient of sum(out * dout); dk and dv sum
//                     over the query heads of their group. The bias gets no
//                     gradient (the compiler fuses only biases that do not
//                     depend on a trainable weight). The CPU kernel
//                     recomputes the softmax in f64 and reads out and lse
//                     only through their types; the CUDA kernel recomputes
//                     it from lse.
//
// Elementwise fusion (docs/planner.md "Elementwise fusion";
// colossal-fuse-elementwise builds it from chains of the elementwise ops
// above):
//
//  fused_elementwise  1 to 8 inputs, 1 result; attrs program (int list),
//                     constants (f64 list), shape (the result's dims). A
//                     straight-line program over registers, evaluated once
//                     per result element: registers 0..N-1 are the inputs,
//                     each broadcast (numpy, one way) to `shape`; every
//                     record of `program` defines the next register:
//                       opcode dtype operand... [immediate]
//                     opcode is the OpKind code of one elementwise op:
//                     neg ... gelu, not, identity, cast (1 operand; gelu
//                     then takes its approximate flag as an immediate),
//                     add sub mul div pow max min and or xor and the five
//                     comparisons (2 operands), where (3), or fill (no
//                     operand; the immediate indexes `constants`: a scalar
//                     splat). Operands name earlier registers. dtype is the
//                     register's DType, which must be what the op's own
//                     rule gives for its operands' dtypes (cast: its `to`).
//                     Each register is rounded to its dtype when computed,
//                     exactly as the unfused op stores it, so the result is
//                     bitwise that of the unfused chain on the CPU. The
//                     result is the last register, of its dtype x shape.
//                     At least one record; `program` is an ordinary list
//                     (<= kMaxAttrListLength ints).
//
// Stream ordering (plan-only: no `colossal` graph op, no kernel; the
// compiler writes them from cplan.event.record / cplan.event.wait):
//
//  event_record       no operands, no results; attr event (in [0,
//                     plan.numEvents)). Marks the point after every earlier
//                     instruction (plan order) of its stream.
//  event_wait         no operands, no results; attr event. Its stream waits
//                     until the latest event_record of that event earlier in
//                     plan order in the same program has completed (a wait
//                     without such a record is an invalid plan).
//
// Numeric OpKind values are stored in plan files: append, never renumber.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_OPTABLE_H
#define COLOSSAL_RUNTIME_OPTABLE_H

#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace colossal::runtime {

// X(Enumerator, "name", code, minInputs, maxInputs (-1: unbounded))
#define COLOSSAL_OP_KINDS(X)                                                   \
  X(Neg, "neg", 1, 1, 1)                                                       \
  X(Abs, "abs", 2, 1, 1)                                                       \
  X(Exp, "exp", 3, 1, 1)                                                       \
  X(Log, "log", 4, 1, 1)                                                       \
  X(Sqrt, "sqrt", 5, 1, 1)                                                     \
  X(Rsqrt, "rsqrt", 6, 1, 1)                                                   \
  X(Reciprocal, "reciprocal", 7, 1, 1)                                         \
  X(Tanh, "tanh", 8, 1, 1)                                                     \
  X(Sigmoid, "sigmoid", 9, 1, 1)                                               \
  X(Relu, "relu", 10, 1, 1)                                                    \
  X(Erf, "erf", 11, 1, 1)                                                      \
  X(Sin, "sin", 12, 1, 1)                                                      \
  X(Cos, "cos", 13, 1, 1)                                                      \
  X(Gelu, "gelu", 14, 1, 1)                                                    \
  X(Not, "not", 15, 1, 1)                                                      \
  X(Identity, "identity", 16, 1, 1)                                            \
  X(Cast, "cast", 17, 1, 1)                                                    \
  X(Add, "add", 20, 2, 2)                                                      \
  X(Sub, "sub", 21, 2, 2)                                                      \
  X(Mul, "mul", 22, 2, 2)                                                      \
  X(Div, "div", 23, 2, 2)                                                      \
  X(Pow, "pow", 24, 2, 2)                                                      \
  X(Max, "max", 25, 2, 2)                                                      \
  X(Min, "min", 26, 2, 2)                                                      \
  X(And, "and", 27, 2, 2)                                                      \
  X(Or, "or", 28, 2, 2)                                                        \
  X(Xor, "xor", 29, 2, 2)                                                      \
  X(Equal, "equal", 30, 2, 2)                                                  \
  X(Less, "less", 31, 2, 2)                                                    \
  X(LessEqual, "less_equal", 32, 2, 2)                                         \
  X(Greater, "greater", 33, 2, 2)                                              \
  X(GreaterEqual, "greater_equal", 34, 2, 2)                                   \
  X(Where, "where", 35, 3, 3)                                                  \
  X(MatMul, "matmul", 40, 2, 2)                                                \
  X(ReduceSum, "reduce_sum", 41, 1, 1)                                         \
  X(ReduceMean, "reduce_mean", 42, 1, 1)                                       \
  X(ReduceMax, "reduce_max", 43, 1, 1)                                         \
  X(ReduceMin, "reduce_min", 44, 1, 1)                                         \
  X(Softmax, "softmax", 45, 1, 1)                                              \
  X(LogSoftmax, "log_softmax", 46, 1, 1)                                       \
  X(LayerNorm, "layer_norm", 47, 2, 3)                                         \
  X(Gather, "gather", 48, 2, 2)                                                \
  X(GatherND, "gather_nd", 49, 2, 2)                                           \
  X(CumSum, "cumsum", 50, 1, 1)                                                \
  X(GatherElements, "gather_elements", 52, 2, 2)                               \
  X(GatherElementsGrad, "gather_elements_grad", 53, 2, 2)                      \
  X(Trilu, "trilu", 54, 1, 1)                                                  \
  X(Attention, "attention", 56, 3, 4)                                          \
  X(AttentionGrad, "attention_grad", 57, 6, 7)                                 \
  X(FusedElementwise, "fused_elementwise", 58, 1, 8)                          \
  X(ReduceSumSquare, "reduce_sum_square", 59, 1, 1)                            \
  X(Reshape, "reshape", 60, 1, 1)                                              \
  X(Expand, "expand", 61, 1, 1)                                                \
  X(Transpose, "transpose", 62, 1, 1)                                          \
  X(Slice, "slice", 63, 1, 1)                                                  \
  X(Concat, "concat", 64, 1, -1)                                               \
  X(Pad, "pad", 65, 1, 1)                                                      \
  X(Fill, "fill", 66, 0, 0)                                                    \
  X(SoftmaxCrossEntropy, "softmax_cross_entropy", 80, 2, 2)                    \
  X(GatherGrad, "gather_grad", 90, 2, 2)                                       \
  X(SliceGrad, "slice_grad", 91, 1, 1)                                         \
  X(LayerNormGrad, "layer_norm_grad", 92, 3, 3)                                \
  X(SoftmaxCrossEntropyGrad, "softmax_cross_entropy_grad", 93, 3, 3)           \
  X(AdamW, "adamw", 94, 6, 7)                                                  \
  X(Sgd, "sgd", 95, 5, 5)                                                      \
  X(AdamWNorm, "adamw_norm", 96, 7, 7)                                         \
  X(EventRecord, "event_record", 100, 0, 0)                                    \
  X(EventWait, "event_wait", 101, 0, 0)

enum class OpKind : uint32_t {
#define COLOSSAL_OP_ENUM(E, N, C, MIN, MAX) E = C,
  COLOSSAL_OP_KINDS(COLOSSAL_OP_ENUM)
#undef COLOSSAL_OP_ENUM
};

/// How an attribute is stored. In a plan instruction, attributes are laid out
/// in the table's order: kI64 and kDType take one int64, kI64List takes a
/// count followed by that many int64s, kF64 takes one double (in the
/// instruction's separate f64 pool), kF64List takes a count in the int pool
/// and that many doubles in the f64 pool.
enum class AttrType : uint8_t { kI64, kI64List, kF64, kDType, kF64List };

struct AttrSpec {
  std::string_view name;
  AttrType type;
};

struct OpInfo {
  OpKind kind;
  std::string_view name;
  int minInputs;
  int maxInputs; ///< -1: unbounded
  std::vector<AttrSpec> attrs;
  /// How many results inferOutputTypes gives and the kernel writes (1 for
  /// all but layer_norm_grad, adamw, attention_grad: 3, sgd, attention: 2).
  int numOutputs = 1;
};

/// All kinds, in enum order.
const std::vector<OpInfo> &allOps();
/// The unary ops with a float formula (ElementwiseOps.h's unary set): neg,
/// abs, exp, log, sqrt, rsqrt, reciprocal, tanh, sigmoid, relu, erf, sin,
/// cos, gelu.
bool isFloatUnaryOp(OpKind kind);
/// nullptr for a raw value that is not an OpKind (untrusted plan input).
const OpInfo *lookupOp(uint32_t rawKind);
const OpInfo *lookupOp(std::string_view name);
inline const OpInfo &opInfo(OpKind kind) {
  return *lookupOp(static_cast<uint32_t>(kind));
}

/// One attribute value; which member is meaningful follows its AttrSpec.
struct AttrValue {
  int64_t i = 0;             ///< kI64, kDType (the raw DType value)
  double f = 0.0;            ///< kF64
  std::vector<int64_t> list; ///< kI64List
  std::vector<double> flist; ///< kF64List
};

/// The decoded attributes of one op, in the order of its OpInfo::attrs.
class Attrs {
public:
  Attrs() = default;
  explicit Attrs(OpKind kind);

  OpKind kind() const { return kind_; }
  /// Accessors by attribute name; the name must be in the op's spec (an
  /// unknown name is a programming error and asserts).
  int64_t i(std::string_view name) const;
  double f(std::string_view name) const;
  DType dtype(std::string_view name) const;
  const std::vector<int64_t> &list(std::string_view name) const;
  const std::vector<double> &floatList(std::string_view name) const;
  void setI(std::string_view name, int64_t value);
  void setF(std::string_view name, double value);
  void setDType(std::string_view name, DType value);
  void setList(std::string_view name, std::vector<int64_t> value);
  void setFloatList(std::string_view name, std::vector<double> value);

  /// Appends the plan encoding (see AttrType) to the two pools.
  void encode(std::vector<int64_t> &ints, std::vector<double> &floats) const;
  /// Decodes exactly `numInts` + `numFloats` pooled values; anything else
  /// (a count past the end, values left over, a bad dtype, a list longer than
  /// kMaxAttrListLength) is an error naming the op and attribute.
  static Status decode(OpKind kind, const int64_t *ints, size_t numInts,
                       const double *floats, size_t numFloats, Attrs &out);

  static constexpr size_t kMaxAttrListLength = 64;

private:
  size_t indexOf(std::string_view name) const;
  OpKind kind_ = OpKind::Identity;
  std::vector<AttrValue> values_;
};

/// Checks the inputs' count, dtypes and shapes and the attributes against
/// the op's rules and computes the result types. On error the message names
/// the op and what is wrong ("matmul: contraction dims differ, 64 vs 32").
/// This is the only shape function: the importer, the dialect verifiers and
/// the plan reader all call it.
Status inferOutputTypes(const Attrs &attrs,
                        const std::vector<TensorType> &inputs,
                        std::vector<TensorType> &outputs);

/// Numpy broadcast of two shapes, or an error naming both.
Status broadcastShapes(const std::vector<int64_t> &a,
                       const std::vector<int64_t> &b,
                       std::vector<int64_t> &out);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_OPTABLE_H
