//===- GraphOps.td - Ops of the colossal graph dialect ------*- tablegen -*-===//
#ifndef COLOSSAL_DIALECT_GRAPH_GRAPHOPS_TD
#define COLOSSAL_DIALECT_GRAPH_GRAPHOPS_TD

include "colossal/Dialect/Graph/GraphBase.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Values that come from outside the computation
//===----------------------------------------------------------------------===//

def Colossal_WeightOp : Colossal_Op<"weight", [Pure]> {
  let summary = "A parameter or buffer of the model, read from the weights file";
  let description = [{
    Names one ONNX initializer; its bytes are stored in the safetensors file
    beside the plan under the same name, never in the IR.

    ```mlir
    %w = colossal.weight "model.lm_head.weight" : tensor<512x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, UnitAttr:$trainable,
                   OptionalAttr<StrAttr>:$signature,
                   OptionalAttr<I64Attr>:$padding_idx,
                   OptionalAttr<StrAttr>:$export_name);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Attribute names, for passes that set them.
    static constexpr ::llvm::StringLiteral kTrainable = "trainable";
    static constexpr ::llvm::StringLiteral kPaddingIdx = "padding_idx";
    static constexpr ::llvm::StringLiteral kExportName = "export_name";
  }];
}

def Colossal_StateOp : Colossal_Op<"state"> {
  let summary = "Persistent state that is not a weight, read by name";
  let description = [{
    Optimizer moments, accumulated gradients: zero when a run starts, kept
    across programs and steps, saved in checkpoints. Reads the value the
    state has when the op runs (a later `colossal.assign` to the same name
    does not change what this op returned).

    ```mlir
    %m = colossal.state "adam.m.model.w" : tensor<64x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Colossal_AssignOp : Colossal_Op<"assign"> {
  let summary = "Store a value into a named weight or state";
  let description = [{
    The new value of the persistent tensor `name` (a `colossal.weight` or
    `colossal.state` of the same type, in this or another function), visible
    to the ops that read it after this one, in later programs and steps.

    ```mlir
    colossal.assign "model.w", %new : tensor<64x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, AnyRankedTensor:$value);
  let assemblyFormat = "$name `,` $value attr-dict `:` type($value)";
}

def Colossal_ConstantOp : Colossal_Op<"constant",
    [ConstantLike, Pure, AllTypesMatch<["value", "result"]>]> {
  let summary = "A constant tensor stored in the IR (and in the plan)";
  let description = [{
    Small tensors only (shape arithmetic, masks, scalars); the importer folds
    computations whose inputs are all constant into these.

    ```mlir
    %c = colossal.constant dense<[2, 16]> : tensor<2xi64>
    ```
  }];
  let arguments = (ins ElementsAttr:$value);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "attr-dict $value";
  let hasFolder = 1;
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Computational ops: one per runtime OpKind, same names and attributes.
// Every one prints as `colossal.<name> %a, %b {attrs} : (types) -> types` and
// is verified by the op table's shape function.
//===----------------------------------------------------------------------===//

// Attribute defaults (DefaultValuedAttr) must equal the op table's defaults
// (0, 0.0, empty): lowering and the plan writer read attributes by the
// table's schema and use its defaults for absent ones.
class Colossal_TableOp<string mnemonic, list<Trait> traits = []>
    : Colossal_Op<mnemonic, !listconcat(traits, [Pure])> {
  let hasVerifier = 1;
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::verify() {
      return ::mlir::colossal::verifyWithOpTable(getOperation());
    }
  }];
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
}

class Colossal_UnaryOp<string mnemonic, string doc>
    : Colossal_TableOp<mnemonic> {
  let summary = doc;
  let description = [{
    Elementwise; the result has the input's type.
  }];
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_NegOp : Colossal_UnaryOp<"neg", "Elementwise -x">;
def Colossal_AbsOp : Colossal_UnaryOp<"abs", "Elementwise |x|">;
def Colossal_ExpOp : Colossal_UnaryOp<"exp", "Elementwise e^x">;
def Colossal_LogOp : Colossal_UnaryOp<"log", "Elementwise natural logarithm">;
def Colossal_SqrtOp : Colossal_UnaryOp<"sqrt", "Elementwise square root">;
def Colossal_RsqrtOp : Colossal_UnaryOp<"rsqrt", "Elementwise 1/sqrt(x)">;
def Colossal_ReciprocalOp : Colossal_UnaryOp<"reciprocal", "Elementwise 1/x">;
def Colossal_TanhOp : Colossal_UnaryOp<"tanh", "Elementwise tanh">;
def Colossal_SigmoidOp : Colossal_UnaryOp<"sigmoid", "Elementwise 1/(1+e^-x)">;
def Colossal_ReluOp : Colossal_UnaryOp<"relu", "Elementwise max(x, 0)">;
def Colossal_ErfOp : Colossal_UnaryOp<"erf", "Elementwise error function">;
def Colossal_SinOp : Colossal_UnaryOp<"sin", "Elementwise sine">;
def Colossal_CosOp : Colossal_UnaryOp<"cos", "Elementwise cosine">;
def Colossal_NotOp : Colossal_UnaryOp<"not", "Elementwise logical not of a bool tensor">;
def Colossal_IdentityOp : Colossal_UnaryOp<"identity", "A copy of the input">;

def Colossal_GeluOp : Colossal_TableOp<"gelu"> {
  let summary = "Gaussian error linear unit";
  let description = [{
    `approximate = 0`: x * (1 + erf(x / sqrt(2))) / 2; `approximate = 1`: the
    tanh form.
  }];
  let arguments = (ins AnyRankedTensor:$input,
                   DefaultValuedAttr<I64Attr, "0">:$approximate);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_CastOp : Colossal_TableOp<"cast"> {
  let summary = "Elementwise conversion to the result's element type";
  let description = [{
    Floats round to nearest even, float to integer truncates toward zero,
    anything to bool is `x != 0`.

    ```mlir
    %1 = colossal.cast %0 : (tensor<2x16xi64>) -> tensor<2x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
}

class Colossal_BinaryOp<string mnemonic, string doc>
    : Colossal_TableOp<mnemonic> {
  let summary = doc;
  let description = [{
    Elementwise with numpy broadcasting; both inputs have one element type.
  }];
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_AddOp : Colossal_BinaryOp<"add", "Elementwise a + b">;
def Colossal_SubOp : Colossal_BinaryOp<"sub", "Elementwise a - b">;
def Colossal_MulOp : Colossal_BinaryOp<"mul", "Elementwise a * b">;
def Colossal_DivOp : Colossal_BinaryOp<"div", "Elementwise a / b (integers truncate toward zero)">;
def Colossal_PowOp : Colossal_BinaryOp<"pow", "Elementwise a ^ b">;
def Colossal_MaxOp : Colossal_BinaryOp<"max", "Elementwise maximum">;
def Colossal_MinOp : Colossal_BinaryOp<"min", "Elementwise minimum">;
def Colossal_AndOp : Colossal_BinaryOp<"and", "Elementwise logical and of bools">;
def Colossal_OrOp : Colossal_BinaryOp<"or", "Elementwise logical or of bools">;
def Colossal_XorOp : Colossal_BinaryOp<"xor", "Elementwise logical xor of bools">;
def Colossal_EqualOp : Colossal_BinaryOp<"equal", "Elementwise a == b, a bool result">;
def Colossal_LessOp : Colossal_BinaryOp<"less", "Elementwise a < b, a bool result">;
def Colossal_LessEqualOp : Colossal_BinaryOp<"less_equal", "Elementwise a <= b, a bool result">;
def Colossal_GreaterOp : Colossal_BinaryOp<"greater", "Elementwise a > b, a bool result">;
def Colossal_GreaterEqualOp : Colossal_BinaryOp<"greater_equal", "Elementwise a >= b, a bool result">;

def Colossal_WhereOp : Colossal_TableOp<"where"> {
  let summary = "Elementwise select: cond ? x : y, with broadcasting";
  let arguments = (ins AnyRankedTensor:$cond, AnyRankedTensor:$x,
                   AnyRankedTensor:$y);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_MatMulOp : Colossal_TableOp<"matmul"> {
  let summary = "Batched matrix product with optional transposed operands";
  let description = [{
    `a` is `[..., M, K]` (or `[..., K, M]` with `transpose_a = 1`), `b` is
    `[..., K, N]` (or `[..., N, K]` with `transpose_b = 1`); batch dims
    broadcast. A Gemm with `transB = 1` becomes a `matmul` with
    `transpose_b = 1`, so a weight stored `[out, in]` is never copied.

    ```mlir
    %y = colossal.matmul %x, %w {transpose_b = 1 : i64}
        : (tensor<32x64xf32>, tensor<256x64xf32>) -> tensor<32x256xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs,
                   DefaultValuedAttr<I64Attr, "0">:$transpose_a,
                   DefaultValuedAttr<I64Attr, "0">:$transpose_b);
  let results = (outs AnyRankedTensor:$result);
}

class Colossal_ReduceOp<string mnemonic, string doc>
    : Colossal_TableOp<mnemonic> {
  let summary = doc;
  let description = [{
    Reduces over `axes` (sorted, unique, non-negative); `keepdims = 1` keeps
    them as size-1 dims. Accumulates in f64 on the CPU.
  }];
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$axes,
                   I64Attr:$keepdims);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_ReduceSumOp : Colossal_ReduceOp<"reduce_sum", "Sum over axes">;
def Colossal_ReduceMeanOp : Colossal_ReduceOp<"reduce_mean", "Mean over axes">;
def Colossal_ReduceMaxOp : Colossal_ReduceOp<"reduce_max", "Maximum over axes">;
def Colossal_ReduceMinOp : Colossal_ReduceOp<"reduce_min", "Minimum over axes">;
def Colossal_ReduceSumSquareOp
    : Colossal_ReduceOp<"reduce_sum_square", "Sum of squares over axes">;

def Colossal_SoftmaxOp : Colossal_TableOp<"softmax"> {
  let summary = "Softmax over one axis";
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_LogSoftmaxOp : Colossal_TableOp<"log_softmax"> {
  let summary = "Log-softmax over one axis";
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_LayerNormOp : Colossal_TableOp<"layer_norm"> {
  let summary = "Layer normalisation over the trailing dims from `axis`";
  let description = [{
    `(x - mean) / sqrt(var + epsilon) * scale + bias` with the biased
    variance over dims `[axis, rank)`; `scale` and `bias` have the shape of
    those dims. Statistics in f64 on the CPU.
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$scale,
                   Optional<AnyRankedTensor>:$bias, I64Attr:$axis,
                   F64Attr:$epsilon);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_GatherOp : Colossal_TableOp<"gather"> {
  let summary = "Gather slices of `data` along `axis` (ONNX Gather)";
  let description = [{
    Result dims are `data[:axis] ++ indices ++ data[axis+1:]`; negative
    indices count from the end. An embedding lookup is a gather on axis 0.
  }];
  let arguments = (ins AnyRankedTensor:$data, AnyRankedTensor:$indices,
                   I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_GatherNDOp : Colossal_TableOp<"gather_nd"> {
  let summary = "ONNX GatherND";
  let arguments = (ins AnyRankedTensor:$data, AnyRankedTensor:$indices,
                   DefaultValuedAttr<I64Attr, "0">:$batch_dims);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_CumSumOp : Colossal_TableOp<"cumsum"> {
  let summary = "Cumulative sum along an axis (ONNX CumSum)";
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$axis,
                   DefaultValuedAttr<I64Attr, "0">:$exclusive,
                   DefaultValuedAttr<I64Attr, "0">:$reverse);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_GatherElementsOp : Colossal_TableOp<"gather_elements"> {
  let summary = "ONNX GatherElements: index data along one axis elementwise";
  let description = [{
    The result has the indices' shape; element `p` reads data at `p` with
    its `axis` coordinate replaced by `indices[p]` (negative from the end).
  }];
  let arguments = (ins AnyRankedTensor:$data, AnyRankedTensor:$indices,
                   I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_GatherElementsGradOp : Colossal_TableOp<"gather_elements_grad"> {
  let summary = "The gradient of gather_elements: a scatter-add into zeros";
  let arguments = (ins AnyRankedTensor:$grad, AnyRankedTensor:$indices,
                   I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_TriluOp : Colossal_TableOp<"trilu"> {
  let summary = "Keep the upper or lower triangle of the last two dims";
  let description = [{
    ONNX Trilu: `upper = 1` keeps elements with column - row >= k, `upper = 0`
    those with column - row <= k; the rest become 0.
  }];
  let arguments = (ins AnyRankedTensor:$input,
                   DefaultValuedAttr<I64Attr, "0">:$upper,
                   DefaultValuedAttr<I64Attr, "0">:$k);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_AttentionOp : Colossal_TableOp<"attention"> {
  let summary = "Fused softmax(q @ k^T * scale + bias) @ v, with its lse";
  let description = [{
    q `[B, Hq, S, D]`, k and v `[B, Hkv, T, D]` with `Hq % Hkv == 0`
    (grouped-query attention: query head h reads kv head h / (Hq / Hkv)),
    an optional additive `bias` broadcastable to `[B, Hq, S, T]`, and
    `causal = 1` to mask key j out of row i when j > i + T - S. Results:
    the attention output (q's type) and the f32 log-sum-exp of every score
    row `[B, Hq, S]`, which the backward recomputes the softmax from.
    `colossal-fuse-attention` builds it; no `[S, T]` tensor exists.

    ```mlir
    %o, %lse = colossal.attention %q, %k, %v {causal = 1 : i64, scale = 0.125 : f64}
        : (tensor<2x4x16x8xf32>, tensor<2x2x16x8xf32>, tensor<2x2x16x8xf32>)
        -> (tensor<2x4x16x8xf32>, tensor<2x4x16xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k,
                   AnyRankedTensor:$v, Optional<AnyRankedTensor>:$bias,
                   DefaultValuedAttr<F64Attr, "0.0">:$scale,
                   DefaultValuedAttr<I64Attr, "0">:$causal);
  let results = (outs AnyRankedTensor:$out, AnyRankedTensor:$lse);
}

def Colossal_AttentionGradOp : Colossal_TableOp<"attention_grad"> {
  let summary = "The gradient of attention: dq, dk and dv";
  let description = [{
    Operands: attention's (q, k, v and the optional bias), its two results
    (out, lse) and the gradient of out; attributes as attention. dk and dv
    sum over the query heads that share a kv head. The bias gets no
    gradient.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k,
                   AnyRankedTensor:$v, Optional<AnyRankedTensor>:$bias,
                   AnyRankedTensor:$out, AnyRankedTensor:$lse,
                   AnyRankedTensor:$grad,
                   DefaultValuedAttr<F64Attr, "0.0">:$scale,
                   DefaultValuedAttr<I64Attr, "0">:$causal);
  let results = (outs AnyRankedTensor:$dq, AnyRankedTensor:$dk,
                 AnyRankedTensor:$dv);
}

def Colossal_FusedElementwiseOp : Colossal_TableOp<"fused_elementwise"> {
  let summary = "A chain of elementwise ops run as one kernel";
  let description = [{
    A straight-line program over registers, evaluated per element of the
    result (OpTable.h has the full rule). Registers 0..N-1 are the inputs,
    broadcast to the result's shape; each record of `program`, `opcode
    dtype operand... [immediate]`, defines the next register with one
    elementwise op (opcode = its OpKind code, dtype = the runtime DType
    the unfused op's result had); `fill` records (opcode 66) take a scalar
    from `constants`. Every register is rounded to its dtype, so the result
    is bitwise the unfused chain's on the CPU. The result is the last
    register. `colossal-fuse-elementwise` builds it.

    ```mlir
    // relu(x + b) for bf16 x [8, 64] and b [64]: r2 = add(r0, r1),
    // r3 = relu(r2); bf16 is DType 3.
    %y = colossal.fused_elementwise %x, %b
        {program = array<i64: 20, 3, 0, 1, 10, 3, 2>,
         constants = array<f64>}
        : (tensor<8x64xbf16>, tensor<64xbf16>) -> tensor<8x64xbf16>
    ```
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs,
                   DenseI64ArrayAttr:$program,
                   DefaultValuedAttr<DenseF64ArrayAttr, "{}">:$constants);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_ReshapeOp : Colossal_TableOp<"reshape"> {
  let summary = "Same elements, the result's static shape";
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_ExpandOp : Colossal_TableOp<"expand"> {
  let summary = "Broadcast the input to the result's static shape";
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_TransposeOp : Colossal_TableOp<"transpose"> {
  let summary = "Permute dims: result dim i is input dim perm[i]";
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_SliceOp : Colossal_TableOp<"slice"> {
  let summary = "Strided slice with resolved, in-range starts";
  let description = [{
    Result dim `d` has the result type's size; element `i` along it reads
    input index `starts[d] + i * steps[d]` (steps may be negative, never 0).
  }];
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$starts,
                   DenseI64ArrayAttr:$steps);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_ConcatOp : Colossal_TableOp<"concat"> {
  let summary = "Concatenate along an axis";
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_PadOp : Colossal_TableOp<"pad"> {
  let summary = "Pad (or crop, with negative pads) every dim";
  let description = [{
    `pads` holds the rank begin pads, then the rank end pads. `mode`: 0
    constant (`value`), 1 reflect, 2 edge.
  }];
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$pads,
                   DefaultValuedAttr<I64Attr, "0">:$mode,
                   DefaultValuedAttr<F64Attr, "0.0">:$value);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_FillOp : Colossal_TableOp<"fill"> {
  let summary = "A tensor of the result type with every element = value";
  let description = [{
    How a large splat constant (an all-zero bias, a mask fill) reaches the
    plan without storing its bytes.
  }];
  let arguments = (ins F64Attr:$value);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_SoftmaxCrossEntropyOp : Colossal_TableOp<"softmax_cross_entropy"> {
  let summary = "Cross-entropy of softmax(scores) against integer labels";
  let description = [{
    `scores` is `[N, C, d...]`, `labels` `[N, d...]`. Labels equal to
    `ignore_index` contribute nothing. `reduction`: 0 none, 1 sum, 2 mean
    over the labels that are not ignored (PyTorch's and HF's loss).
  }];
  let arguments = (ins AnyRankedTensor:$scores, AnyRankedTensor:$labels,
                   I64Attr:$ignore_index, I64Attr:$reduction);
  let results = (outs AnyRankedTensor:$result);
}

//===----------------------------------------------------------------------===//
// Training: gradient kernels and optimizer updates
//===----------------------------------------------------------------------===//

def Colossal_GatherGradOp : Colossal_TableOp<"gather_grad"> {
  let summary = "The gradient of gather: a scatter-add into zeros";
  let description = [{
    The result has the gathered data's dims (`shape`, from the result type);
    every gathered row adds its gradient slice; rows whose index equals
    `padding_idx` receive nothing (PyTorch's `nn.Embedding(padding_idx=)`).
  }];
  let arguments = (ins AnyRankedTensor:$grad, AnyRankedTensor:$indices,
                   I64Attr:$axis, I64Attr:$padding_idx);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_SliceGradOp : Colossal_TableOp<"slice_grad"> {
  let summary = "The gradient of slice: zeros with the slice written back";
  let arguments = (ins AnyRankedTensor:$grad, DenseI64ArrayAttr:$starts,
                   DenseI64ArrayAttr:$steps);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_LayerNormGradOp : Colossal_TableOp<"layer_norm_grad"> {
  let summary = "The gradient of layer_norm: dx, dscale and dbias";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$scale,
                   AnyRankedTensor:$grad, I64Attr:$axis, F64Attr:$epsilon);
  let results = (outs AnyRankedTensor:$dx, AnyRankedTensor:$dscale,
                 AnyRankedTensor:$dbias);
}

def Colossal_SoftmaxCrossEntropyGradOp
    : Colossal_TableOp<"softmax_cross_entropy_grad"> {
  let summary = "The gradient of softmax_cross_entropy with respect to scores";
  let arguments = (ins AnyRankedTensor:$scores, AnyRankedTensor:$labels,
                   AnyRankedTensor:$grad, I64Attr:$ignore_index,
                   I64Attr:$reduction);
  let results = (outs AnyRankedTensor:$result);
}

def Colossal_AdamWOp : Colossal_TableOp<"adamw"> {
  let summary = "One AdamW update of a parameter and its moments";
  let description = [{
    PyTorch's `torch.optim.AdamW`: decoupled weight decay, bias correction
    with t = step + 1. Returns the new parameter and moments; lowering
    writes them in place over the old ones. With `divisor`, the update uses
    grad / divisor (an offloaded update reading the raw gradient).
  }];
  let arguments = (ins AnyRankedTensor:$param, AnyRankedTensor:$grad,
                   AnyRankedTensor:$m, AnyRankedTensor:$v, AnyRankedTensor:$lr,
                   AnyRankedTensor:$step, Optional<AnyRankedTensor>:$divisor,
                   F64Attr:$beta1, F64Attr:$beta2, F64Attr:$eps,
                   F64Attr:$weight_decay);
  let results = (outs AnyRankedTensor:$new_param, AnyRankedTensor:$new_m,
                 AnyRankedTensor:$new_v);
}

def Colossal_AdamWNormOp : Colossal_TableOp<"adamw_norm"> {
  let summary = "AdamW on grad / divisor, with the scaled gradient's sum of squares";
  let description = [{
    adamw's update on g = grad / divisor (grad widened to f32, one f32
    division), and the sum of g * g (f32 []): the fused training step's
    update of a device-resident weight, its gradient's share of the global
    norm, in one pass over the raw gradient.
  }];
  let arguments = (ins AnyRankedTensor:$param, AnyRankedTensor:$grad,
                   AnyRankedTensor:$m, AnyRankedTensor:$v, AnyRankedTensor:$lr,
                   AnyRankedTensor:$step, AnyRankedTensor:$divisor,
                   F64Attr:$beta1, F64Attr:$beta2, F64Attr:$eps,
                   F64Attr:$weight_decay);
  let results = (outs AnyRankedTensor:$new_param, AnyRankedTensor:$new_m,
                 AnyRankedTensor:$new_v, AnyRankedTensor:$sum_of_squares);
}

def Colossal_SgdOp : Colossal_TableOp<"sgd"> {
  let summary = "One SGD (with momentum) update of a parameter";
  let description = [{
    PyTorch's `torch.optim.SGD`: weight decay added to the gradient, the
    momentum buffer starts as the first gradient, optional Nesterov.
  }];
  let arguments = (ins AnyRankedTensor:$param, AnyRankedTensor:$grad,
                   AnyRankedTensor:$buf, AnyRankedTensor:$lr,
                   AnyRankedTensor:$step, F64Attr:$momentum,
                   DefaultValuedAttr<F64Attr, "0.0">:$dampening,
                   DefaultValuedAttr<F64Attr, "0.0">:$weight_decay,
                   DefaultValuedAttr<I64Attr, "0">:$nesterov);
  let results = (outs AnyRankedTensor:$new_param, AnyRankedTensor:$new_buf);
}

#endif // COLOSSAL_DIALECT_GRAPH_GRAPHOPS_TD
