#!/usr/bin/env python3
#===- make_onnx.py - Small ONNX models for the importer tests -------------===#
#
# Usage:
#   make_onnx.py CASE OUT.onnx      write one model (exit 2 if the case is unknown
#                                   or this onnx cannot write it)
#   make_onnx.py --list             the cases this onnx can write, one per line
#   make_onnx.py --describe         every case: opset, checker expectation, what it covers
#   make_onnx.py --self-test DIR    write every case into DIR and check each one
#
# One model per op family the importer handles, plus inputs it must reject
# with a diagnostic. Written with onnx.helper from Debian's python3-onnx 1.12
# (/usr/bin/python3): IR version 8, opsets 13-17 (the newest 1.12 knows), so
# cases that need a newer opset (Gelu at 20, ReduceMean with input axes at 18)
# are listed by --describe as skipped and refused; they become available when
# a newer onnx is installed. The output is deterministic: fixed data, fixed
# seeds, node names `<op>_<i>` so that diagnostics can be matched.
#
# --self-test checks that every model passes onnx.checker (full_check=True,
# i.e. with strict shape inference, so the declared output shapes are right)
# unless the case says it must not, and that the malformed files fail to
# parse as they should.
#
#===----------------------------------------------------------------------===#

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8
MAX_OPSET = onnx.defs.onnx_opset_version()

_ELEM = {
    "f32": TensorProto.FLOAT,
    "f16": TensorProto.FLOAT16,
    "f64": TensorProto.DOUBLE,
    "i64": TensorProto.INT64,
    "i32": TensorProto.INT32,
    "bool": TensorProto.BOOL,
}


class Case:
    def __init__(self, name, fn, opset, doc, checker, kind):
        self.name, self.fn, self.opset, self.doc = name, fn, opset, doc
        self.checker = checker  # "pass", "fail" or "n/a" (not a model)
        self.kind = kind        # "model", "error-model" (valid proto, importer must reject), "bytes"

    @property
    def skip_reason(self):
        if self.opset and self.opset > MAX_OPSET:
            return f"needs opset {self.opset}; this onnx {onnx.__version__} writes at most {MAX_OPSET}"
        return None


CASES = {}


def case(name, opset, doc, checker="pass", kind="model"):
    def register(fn):
        assert name not in CASES, name
        CASES[name] = Case(name, fn, opset, doc, checker, kind)
        return fn
    return register


# --- helpers ----------------------------------------------------------------

def vi(name, elem, shape):
    """A tensor ValueInfo; shape entries are ints or strings (symbolic dims);
    shape=None leaves the shape out entirely."""
    return helper.make_tensor_value_info(name, _ELEM[elem], shape)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def i64(*values):
    return np.array(values, dtype=np.int64)


def f32(shape, seed=0):
    """Deterministic small float32 data."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class Graph:
    """Collects nodes with generated names (`<op>_<i>`)."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], {}

    def node(self, op, inputs, outputs, **attrs):
        i = self.count.get(op, 0)
        self.count[op] = i + 1
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"{op.lower()}_{i}", **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def const(self, name, array):
        self.inits.append(init(name, array))
        return name

    def model(self, name, inputs, outputs, opset):
        g = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(g, producer_name="colossal make_onnx.py",
                              opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = IR_VERSION
        return m


def unary(op, opset=13, shape=(2, 3)):
    g = Graph()
    g.node(op, ["x"], ["y"])
    return g.model(op.lower(), [vi("x", "f32", list(shape))], [vi("y", "f32", list(shape))], opset)


def binary(op, a_shape, b_shape, out_shape, elem="f32", out_elem=None, opset=14):
    g = Graph()
    g.node(op, ["a", "b"], ["y"])
    return g.model(op.lower(), [vi("a", elem, a_shape), vi("b", elem, b_shape)],
                   [vi("y", out_elem or elem, out_shape)], opset)


# --- elementwise arithmetic (numpy broadcasting) -----------------------------

@case("add-broadcast", 14, "Add: [2,3,4] + [3,1] -> [2,3,4]")
def _():
    return binary("Add", [2, 3, 4], [3, 1], [2, 3, 4])


@case("sub-broadcast", 14, "Sub: [4] - [2,3,4] -> [2,3,4] (lower rank on the left)")
def _():
    return binary("Sub", [4], [2, 3, 4], [2, 3, 4])


@case("mul-broadcast", 14, "Mul: [2,1,4] * [1,3,1] -> [2,3,4] (both sides broadcast)")
def _():
    return binary("Mul", [2, 1, 4], [1, 3, 1], [2, 3, 4])


@case("div-broadcast", 14, "Div: [2,3,4] / scalar [] -> [2,3,4]")
def _():
    return binary("Div", [2, 3, 4], [], [2, 3, 4])


@case("pow-broadcast", 15, "Pow: [2,3] ^ initializer scalar 2.0, and [2,3] ^ [3] -> [2,3]")
def _():
    g = Graph()
    two = g.const("two", np.array(2.0, dtype=np.float32))
    g.node("Pow", ["x", two], ["y"])
    g.node("Pow", ["x", "e"], ["z"])
    return g.model("pow", [vi("x", "f32", [2, 3]), vi("e", "f32", [3])],
                   [vi("y", "f32", [2, 3]), vi("z", "f32", [2, 3])], 15)


@case("pow-mixed-types", 15, "Pow: int64 base ^ float exponent (result int64, truncated), float base ^ int64 exponent")
def _():
    g = Graph()
    # The integer base is a constant (a negative base to a fractional power
    # is NaN, whose conversion to int64 is implementation-defined).
    base = g.const("base", np.array([4, 9, 2, 0], dtype=np.int64))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    three = g.const("three", np.array(3, dtype=np.int64))
    g.node("Pow", [base, half], ["y"])
    g.node("Pow", ["x", three], ["z"])
    return g.model("pow_mixed", [vi("x", "f32", [2, 3])],
                   [vi("y", "i64", [4]), vi("z", "f32", [2, 3])], 15)


@case("max", 13, "Max: variadic, [2,3] max [3] max scalar -> [2,3]")
def _():
    g = Graph()
    g.node("Max", ["a", "b", "c"], ["y"])
    return g.model("max", [vi("a", "f32", [2, 3]), vi("b", "f32", [3]), vi("c", "f32", [])],
                   [vi("y", "f32", [2, 3])], 13)


@case("add-int64", 14, "Add on int64 (index arithmetic): [2,16] + [16] -> [2,16]")
def _():
    return binary("Add", [2, 16], [16], [2, 16], elem="i64")


# --- matrix products ---------------------------------------------------------

@case("matmul-2d", 13, "MatMul: [3,4] x [4,5] -> [3,5]")
def _():
    return binary("MatMul", [3, 4], [4, 5], [3, 5], opset=13)


@case("matmul-batched", 13, "MatMul: [2,3,4] x [2,4,5] -> [2,3,5], and [2,1,3,4] x [3,4,5] -> [2,3,3,5] (batch broadcast)")
def _():
    g = Graph()
    g.node("MatMul", ["a", "b"], ["y"])
    g.node("MatMul", ["c", "d"], ["z"])
    return g.model("matmul_batched",
                   [vi("a", "f32", [2, 3, 4]), vi("b", "f32", [2, 4, 5]),
                    vi("c", "f32", [2, 1, 3, 4]), vi("d", "f32", [3, 4, 5])],
                   [vi("y", "f32", [2, 3, 5]), vi("z", "f32", [2, 3, 3, 5])], 13)


@case("matmul-weight-3d", 13, "MatMul: activation [2,16,8] x initializer weight [8,6] -> [2,16,6] (the exporters' linear layer)")
def _():
    g = Graph()
    w = g.const("w", f32([8, 6], seed=1))
    g.node("MatMul", ["x", w], ["y"])
    return g.model("matmul_weight", [vi("x", "f32", [2, 16, 8])], [vi("y", "f32", [2, 16, 6])], 13)


@case("matmul-1d", 13, "MatMul with 1-D operands: [4] x [4,5] -> [5], [2,3,4] x [4] -> [2,3], [4] x [4] -> []")
def _():
    g = Graph()
    g.node("MatMul", ["v", "m"], ["y"])
    g.node("MatMul", ["t", "v"], ["z"])
    g.node("MatMul", ["v", "v"], ["s"])
    return g.model("matmul_1d",
                   [vi("v", "f32", [4]), vi("m", "f32", [4, 5]), vi("t", "f32", [2, 3, 4])],
                   [vi("y", "f32", [5]), vi("z", "f32", [2, 3]), vi("s", "f32", [])], 13)


@case("gemm", 13, "Gemm: transA=1 transB=1 alpha=0.5 beta=2.0, A [4,3], B [5,4], bias C [5] -> [3,5]")
def _():
    g = Graph()
    c = g.const("c", f32([5], seed=2))
    g.node("Gemm", ["a", "b", c], ["y"], transA=1, transB=1, alpha=0.5, beta=2.0)
    return g.model("gemm", [vi("a", "f32", [4, 3]), vi("b", "f32", [5, 4])],
                   [vi("y", "f32", [3, 5])], 13)


@case("gemm-no-bias", 13, "Gemm: defaults, no C: [3,4] x [4,5] -> [3,5]; and C [3,1] broadcast with transB=1")
def _():
    g = Graph()
    g.node("Gemm", ["a", "b"], ["y"])
    g.node("Gemm", ["a", "bt", "c"], ["z"], transB=1)
    return g.model("gemm_no_bias",
                   [vi("a", "f32", [3, 4]), vi("b", "f32", [4, 5]), vi("bt", "f32", [5, 4]),
                    vi("c", "f32", [3, 1])],
                   [vi("y", "f32", [3, 5]), vi("z", "f32", [3, 5])], 13)


# --- unary math and activations ----------------------------------------------

for _op in ("Relu", "Tanh", "Sigmoid", "Sqrt", "Reciprocal", "Neg", "Erf", "Sin", "Cos"):
    case(_op.lower(), 13, f"{_op}: [2,3] -> [2,3]")(lambda op=_op: unary(op))


@case("gelu", 20, "Gelu (approximate=none and tanh): [2,3] -> [2,3]")
def _():
    g = Graph()
    g.node("Gelu", ["x"], ["y"])
    g.node("Gelu", ["x"], ["z"], approximate="tanh")
    return g.model("gelu", [vi("x", "f32", [2, 3])], [vi("y", "f32", [2, 3]), vi("z", "f32", [2, 3])], 20)


@case("softmax", 13, "Softmax: axis=-1 on [2,3,4], and the default axis (-1 since opset 13) on [2,5]")
def _():
    g = Graph()
    g.node("Softmax", ["x"], ["y"], axis=-1)
    g.node("Softmax", ["w"], ["z"])
    return g.model("softmax", [vi("x", "f32", [2, 3, 4]), vi("w", "f32", [2, 5])],
                   [vi("y", "f32", [2, 3, 4]), vi("z", "f32", [2, 5])], 13)


@case("log-softmax", 13, "LogSoftmax: axis=1 on [2,3,4] -> [2,3,4]")
def _():
    g = Graph()
    g.node("LogSoftmax", ["x"], ["y"], axis=1)
    return g.model("log_softmax", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [2, 3, 4])], 13)


@case("layer-norm", 17, "LayerNormalization: axis=-1 epsilon=1e-5, X [2,3,8], scale and bias [8] initializers")
def _():
    g = Graph()
    s = g.const("scale", 1.0 + 0.1 * f32([8], seed=3))
    b = g.const("bias", 0.1 * f32([8], seed=4))
    g.node("LayerNormalization", ["x", s, b], ["y"], axis=-1, epsilon=1e-5)
    return g.model("layer_norm", [vi("x", "f32", [2, 3, 8])], [vi("y", "f32", [2, 3, 8])], 17)


@case("layer-norm-axis", 17, "LayerNormalization: axis=1 (normalise over [3,4]) on [2,3,4], no bias, default epsilon")
def _():
    g = Graph()
    s = g.const("scale", np.ones([3, 4], dtype=np.float32))
    g.node("LayerNormalization", ["x", s], ["y"], axis=1)
    return g.model("layer_norm_axis", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [2, 3, 4])], 17)


# --- reductions --------------------------------------------------------------

@case("reduce-mean", 13, "ReduceMean, axes attribute (opset 13): axes=[-1] keepdims=1 on [2,3,4] -> [2,3,1]")
def _():
    g = Graph()
    g.node("ReduceMean", ["x"], ["y"], axes=[-1], keepdims=1)
    return g.model("reduce_mean", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [2, 3, 1])], 13)


@case("reduce-mean-keepdims0", 13, "ReduceMean, axes attribute: axes=[0,2] keepdims=0 on [2,3,4] -> [3]")
def _():
    g = Graph()
    g.node("ReduceMean", ["x"], ["y"], axes=[0, 2], keepdims=0)
    return g.model("reduce_mean_keepdims0", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [3])], 13)


@case("reduce-mean-axes-input", 18, "ReduceMean, axes as an input (opset 18, as dynamo exports write it): axes=[-1] -> [2,3,1]")
def _():
    g = Graph()
    axes = g.const("axes", i64(-1))
    g.node("ReduceMean", ["x", axes], ["y"], keepdims=1)
    return g.model("reduce_mean_axes_input", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [2, 3, 1])], 18)


@case("reduce-sum", 13, "ReduceSum, axes as an input (since opset 13): axes=[1] keepdims=1 on [2,3,4] -> [2,1,4]")
def _():
    g = Graph()
    axes = g.const("axes", i64(1))
    g.node("ReduceSum", ["x", axes], ["y"], keepdims=1)
    return g.model("reduce_sum", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [2, 1, 4])], 13)


@case("reduce-sum-square", 13, "ReduceSumSquare, axes attribute (opset 13): axes=[0,2] keepdims=0 on [2,3,4] -> [3]")
def _():
    g = Graph()
    g.node("ReduceSumSquare", ["x"], ["y"], axes=[0, 2], keepdims=0)
    return g.model("reduce_sum_square", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [3])], 13)


@case("reduce-sum-all", 13, "ReduceSum, no axes input (reduce everything), keepdims=0 on [2,3,4] -> []")
def _():
    g = Graph()
    g.node("ReduceSum", ["x"], ["y"], keepdims=0)
    return g.model("reduce_sum_all", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [])], 13)


@case("reduce-sum-attr", 12, "ReduceSum, axes attribute (opset 12 and older; opset 13 moved it to an input): axes=[0] keepdims=0 on [2,3] -> [3]")
def _():
    g = Graph()
    g.node("ReduceSum", ["x"], ["y"], axes=[0], keepdims=0)
    return g.model("reduce_sum_attr", [vi("x", "f32", [2, 3])], [vi("y", "f32", [3])], 12)


# --- indexing ----------------------------------------------------------------

@case("gather", 13, "Gather axis=0: embedding table initializer [10,4], indices int64 [2,3] -> [2,3,4]")
def _():
    g = Graph()
    table = g.const("table", f32([10, 4], seed=5))
    g.node("Gather", [table, "ids"], ["y"], axis=0)
    return g.model("gather", [vi("ids", "i64", [2, 3])], [vi("y", "f32", [2, 3, 4])], 13)


@case("gather-axis1", 13, "Gather axis=1 with a scalar index (rank drops) and a negative index: [2,5,3] -> [2,3], [2,2,3]")
def _():
    g = Graph()
    k = g.const("k", np.array(-1, dtype=np.int64))
    idx = g.const("idx", i64(0, -2))
    g.node("Gather", ["x", k], ["y"], axis=1)
    g.node("Gather", ["x", idx], ["z"], axis=1)
    return g.model("gather_axis1", [vi("x", "f32", [2, 5, 3])],
                   [vi("y", "f32", [2, 3]), vi("z", "f32", [2, 2, 3])], 13)


@case("gather-elements", 13, "GatherElements axis=1: data [3,4], indices [3,2] -> [3,2] (BERT's token-type lookup)")
def _():
    g = Graph()
    g.node("GatherElements", ["x", "idx"], ["y"], axis=1)
    return g.model("gather_elements", [vi("x", "f32", [3, 4]), vi("idx", "i64", [3, 2])],
                   [vi("y", "f32", [3, 2])], 13)


@case("trilu", 14, "Trilu upper (default) with k=1 and lower with k=-1 on [2,4,5]")
def _():
    g = Graph()
    k1 = g.const("k1", np.array(1, dtype=np.int64))
    km1 = g.const("km1", np.array(-1, dtype=np.int64))
    g.node("Trilu", ["x", k1], ["u"])
    g.node("Trilu", ["x", km1], ["l"], upper=0)
    return g.model("trilu", [vi("x", "f32", [2, 4, 5])],
                   [vi("u", "f32", [2, 4, 5]), vi("l", "f32", [2, 4, 5])], 14)


@case("gathernd", 13, "GatherND batch_dims=0: data [2,3,4], indices [5,2] -> [5,4] (as the dynamo loss gathers rows)")
def _():
    g = Graph()
    g.node("GatherND", ["x", "idx"], ["y"], batch_dims=0)
    return g.model("gathernd", [vi("x", "f32", [2, 3, 4]), vi("idx", "i64", [5, 2])],
                   [vi("y", "f32", [5, 4])], 13)


@case("gathernd-batch-dims", 13, "GatherND batch_dims=1: data [2,3,4], indices [2,1] -> [2,4]")
def _():
    g = Graph()
    g.node("GatherND", ["x", "idx"], ["y"], batch_dims=1)
    return g.model("gathernd_batch_dims", [vi("x", "f32", [2, 3, 4]), vi("idx", "i64", [2, 1])],
                   [vi("y", "f32", [2, 4])], 13)


@case("cumsum", 14, "CumSum on int64 [2,5] along axis 1 (the position-id computation), and exclusive=1 reverse=1 on f32")
def _():
    g = Graph()
    axis = g.const("axis", np.array(1, dtype=np.int64))
    g.node("CumSum", ["x", axis], ["y"])
    g.node("CumSum", ["f", axis], ["z"], exclusive=1, reverse=1)
    return g.model("cumsum", [vi("x", "i64", [2, 5]), vi("f", "f32", [2, 5])],
                   [vi("y", "i64", [2, 5]), vi("z", "f32", [2, 5])], 14)


# --- shape manipulation ------------------------------------------------------

@case("reshape", 14, "Reshape with 0 (copy the dim) and -1 (infer): [2,3,4] by [0,-1,2] -> [2,6,2]")
def _():
    g = Graph()
    shape = g.const("shape", i64(0, -1, 2))
    g.node("Reshape", ["x", shape], ["y"])
    return g.model("reshape", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [2, 6, 2])], 14)


@case("reshape-allowzero", 14, "Reshape allowzero=1 on an empty tensor: [0,4] by [4,0] -> [4,0]")
def _():
    g = Graph()
    shape = g.const("shape", i64(4, 0))
    g.node("Reshape", ["x", shape], ["y"], allowzero=1)
    return g.model("reshape_allowzero", [vi("x", "f32", [0, 4])], [vi("y", "f32", [4, 0])], 14)


@case("transpose", 13, "Transpose perm=[2,0,1] on [2,3,4] -> [4,2,3], and no perm (reverse) -> [4,3,2]")
def _():
    g = Graph()
    g.node("Transpose", ["x"], ["y"], perm=[2, 0, 1])
    g.node("Transpose", ["x"], ["z"])
    return g.model("transpose", [vi("x", "f32", [2, 3, 4])],
                   [vi("y", "f32", [4, 2, 3]), vi("z", "f32", [4, 3, 2])], 13)


def _slice(name, shape, starts, ends, axes, steps, out_shape):
    g = Graph()
    ins = ["x", g.const("starts", i64(*starts)), g.const("ends", i64(*ends))]
    if axes is not None:
        ins.append(g.const("axes", i64(*axes)))
    if steps is not None:
        ins.append(g.const("steps", i64(*steps)))
    g.node("Slice", ins, ["y"])
    return g.model(name, [vi("x", "f32", shape)], [vi("y", "f32", out_shape)], 13)


@case("slice-negative", 13, "Slice with negative starts/ends/axes: [4,10] starts=[-3] ends=[-1] axes=[-1] -> [4,2]")
def _():
    return _slice("slice_negative", [4, 10], [-3], [-1], [-1], None, [4, 2])


@case("slice-clamped", 13, "Slice with out-of-range bounds (clamped): [4,10] starts=[-100,2] ends=[INT64_MAX,1000] axes=[0,1] -> [4,8]")
def _():
    return _slice("slice_clamped", [4, 10], [-100, 2], [np.iinfo(np.int64).max, 1000], [0, 1], None, [4, 8])


@case("slice-steps", 13, "Slice with steps: [4,10] starts=[0,1] ends=[4,10] axes=[0,1] steps=[2,3] -> [2,3]")
def _():
    return _slice("slice_steps", [4, 10], [0, 1], [4, 10], [0, 1], [2, 3], [2, 3])


@case("slice-reverse", 13, "Slice with a negative step (reverse): [10] starts=[-1] ends=[INT64_MIN] steps=[-1] -> [10]")
def _():
    return _slice("slice_reverse", [10], [-1], [np.iinfo(np.int64).min], [0], [-1], [10])


@case("slice-default-axes", 13, "Slice without axes and steps inputs: [5,6] starts=[1,0] ends=[3,6] -> [2,6]")
def _():
    return _slice("slice_default_axes", [5, 6], [1, 0], [3, 6], None, None, [2, 6])


@case("concat", 13, "Concat axis=1 of [2,1,4], [2,3,4], [2,2,4] -> [2,6,4], and axis=-1 of two [2,3] -> [2,6]")
def _():
    g = Graph()
    g.node("Concat", ["a", "b", "c"], ["y"], axis=1)
    g.node("Concat", ["d", "d"], ["z"], axis=-1)
    return g.model("concat",
                   [vi("a", "f32", [2, 1, 4]), vi("b", "f32", [2, 3, 4]), vi("c", "f32", [2, 2, 4]),
                    vi("d", "f32", [2, 3])],
                   [vi("y", "f32", [2, 6, 4]), vi("z", "f32", [2, 6])], 13)


@case("split-attr", 12, "Split with the split attribute (opset 12 and older; opset 13 moved it to an input): [2,6] axis=1 split=[1,2,3]")
def _():
    g = Graph()
    g.node("Split", ["x"], ["a", "b", "c"], axis=1, split=[1, 2, 3])
    return g.model("split_attr", [vi("x", "f32", [2, 6])],
                   [vi("a", "f32", [2, 1]), vi("b", "f32", [2, 2]), vi("c", "f32", [2, 3])], 12)


@case("split-input", 13, "Split with the split input (opset 13+): [2,6,4] axis=1 split=[2,4] -> [2,2,4], [2,4,4]")
def _():
    g = Graph()
    sizes = g.const("split", i64(2, 4))
    g.node("Split", ["x", sizes], ["a", "b"], axis=1)
    return g.model("split_input", [vi("x", "f32", [2, 6, 4])],
                   [vi("a", "f32", [2, 2, 4]), vi("b", "f32", [2, 4, 4])], 13)


@case("split-equal", 13, "Split with no sizes (equal parts): [2,6] axis=-1 into 3 -> three [2,2]")
def _():
    g = Graph()
    g.node("Split", ["x"], ["a", "b", "c"], axis=-1)
    return g.model("split_equal", [vi("x", "f32", [2, 6])],
                   [vi("a", "f32", [2, 2]), vi("b", "f32", [2, 2]), vi("c", "f32", [2, 2])], 13)


@case("split-to-sequence", 13, "SplitToSequence + SequenceAt (GPT-2's qkv split in the dynamo export): [2,4,12] axis=2 split=4 -> element 1 [2,4,4]")
def _():
    g = Graph()
    four = g.const("four", np.array(4, dtype=np.int64))
    one = g.const("one", np.array(1, dtype=np.int64))
    g.node("SplitToSequence", ["x", four], ["seq"], axis=2, keepdims=1)
    g.node("SequenceAt", ["seq", one], ["y"])
    return g.model("split_to_sequence", [vi("x", "f32", [2, 4, 12])], [vi("y", "f32", [2, 4, 4])], 13)


@case("squeeze", 13, "Squeeze with axes input (opset 13+): [2,1,3,1] axes=[1,-1] -> [2,3]")
def _():
    g = Graph()
    axes = g.const("axes", i64(1, -1))
    g.node("Squeeze", ["x", axes], ["y"])
    return g.model("squeeze", [vi("x", "f32", [2, 1, 3, 1])], [vi("y", "f32", [2, 3])], 13)


@case("squeeze-all", 13, "Squeeze without axes (every size-1 dim): [1,3,1] -> [3]")
def _():
    g = Graph()
    g.node("Squeeze", ["x"], ["y"])
    return g.model("squeeze_all", [vi("x", "f32", [1, 3, 1])], [vi("y", "f32", [3])], 13)


@case("unsqueeze", 13, "Unsqueeze with axes input (opset 13+): [2,3] axes=[0,-1] -> [1,2,3,1]; a scalar axes=[0] -> [1]")
def _():
    g = Graph()
    axes = g.const("axes", i64(0, -1))
    zero = g.const("zero", i64(0))
    g.node("Unsqueeze", ["x", axes], ["y"])
    g.node("Unsqueeze", ["s", zero], ["z"])
    return g.model("unsqueeze", [vi("x", "f32", [2, 3]), vi("s", "i64", [])],
                   [vi("y", "f32", [1, 2, 3, 1]), vi("z", "i64", [1])], 13)


@case("flatten", 13, "Flatten axis=2 on [2,3,4,5] -> [6,20], axis=0 -> [1,120], default axis=1 -> [2,60]")
def _():
    g = Graph()
    g.node("Flatten", ["x"], ["y"], axis=2)
    g.node("Flatten", ["x"], ["z"], axis=0)
    g.node("Flatten", ["x"], ["w"])
    return g.model("flatten", [vi("x", "f32", [2, 3, 4, 5])],
                   [vi("y", "f32", [6, 20]), vi("z", "f32", [1, 120]), vi("w", "f32", [2, 60])], 13)


@case("expand", 13, "Expand [3,1] to shape [2,1,4] -> [2,3,4] (bidirectional broadcast)")
def _():
    g = Graph()
    shape = g.const("shape", i64(2, 1, 4))
    g.node("Expand", ["x", shape], ["y"])
    return g.model("expand", [vi("x", "f32", [3, 1])], [vi("y", "f32", [2, 3, 4])], 13)


def _pad(mode, pads, out_shape, value=None):
    g = Graph()
    ins = ["x", g.const("pads", i64(*pads))]
    if value is not None:
        ins.append(g.const("value", np.array(value, dtype=np.float32)))
    g.node("Pad", ins, ["y"], mode=mode)
    return g.model(f"pad_{mode}", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", out_shape)], 13)


@case("pad-constant", 13, "Pad mode=constant value=-1.5, pads [0,1,2, 0,0,-1] (a negative pad crops): [2,3,4] -> [2,4,5]")
def _():
    return _pad("constant", [0, 1, 2, 0, 0, -1], [2, 4, 5], value=-1.5)


@case("pad-reflect", 13, "Pad mode=reflect, pads [0,2,1, 0,1,3]: [2,3,4] -> [2,6,8]")
def _():
    return _pad("reflect", [0, 2, 1, 0, 1, 3], [2, 6, 8])


@case("pad-edge", 13, "Pad mode=edge, pads [1,0,0, 0,0,2]: [2,3,4] -> [3,3,6]")
def _():
    return _pad("edge", [1, 0, 0, 0, 0, 2], [3, 3, 6])


# --- selection, comparison, logic, casts -------------------------------------

@case("where", 16, "Where: bool [2,1,4], X [2,3,4], scalar Y [] -> [2,3,4] (the attention mask fill)")
def _():
    g = Graph()
    fill = g.const("fill", np.array(-3.4028234663852886e38, dtype=np.float32))
    g.node("Where", ["c", "x", fill], ["y"])
    return g.model("where", [vi("c", "bool", [2, 1, 4]), vi("x", "f32", [2, 3, 4])],
                   [vi("y", "f32", [2, 3, 4])], 16)


for _op, _opset in (("Equal", 13), ("Less", 13), ("LessOrEqual", 16), ("Greater", 13)):
    _name = {"LessOrEqual": "less-or-equal"}.get(_op, _op.lower())
    case(_name, _opset, f"{_op}: f32 [2,3] vs [3] -> bool [2,3], and int64 [4] vs scalar -> bool [4]")(
        lambda op=_op, opset=_opset: _compare(op, opset))


def _compare(op, opset):
    g = Graph()
    g.node(op, ["a", "b"], ["y"])
    g.node(op, ["i", "j"], ["z"])
    return g.model(op.lower(), [vi("a", "f32", [2, 3]), vi("b", "f32", [3]),
                                vi("i", "i64", [4]), vi("j", "i64", [])],
                   [vi("y", "bool", [2, 3]), vi("z", "bool", [4])], opset)


@case("and", 13, "And: bool [2,3] and [3] -> [2,3]")
def _():
    return binary("And", [2, 3], [3], [2, 3], elem="bool", opset=13)


@case("or", 13, "Or: bool [2,1] or [1,3] -> [2,3]")
def _():
    return binary("Or", [2, 1], [1, 3], [2, 3], elem="bool", opset=13)


@case("not", 13, "Not: bool [2,3] -> [2,3]")
def _():
    g = Graph()
    g.node("Not", ["x"], ["y"])
    return g.model("not", [vi("x", "bool", [2, 3])], [vi("y", "bool", [2, 3])], 13)


@case("cast", 13, "Cast: f32 -> i64 (truncates), i64 -> f32, bool -> f32, f32 -> bool, f32 -> f16")
def _():
    g = Graph()
    g.node("Cast", ["x"], ["a"], to=TensorProto.INT64)
    g.node("Cast", ["i"], ["b"], to=TensorProto.FLOAT)
    g.node("Cast", ["c"], ["d"], to=TensorProto.FLOAT)
    g.node("Cast", ["x"], ["e"], to=TensorProto.BOOL)
    g.node("Cast", ["x"], ["f"], to=TensorProto.FLOAT16)
    return g.model("cast", [vi("x", "f32", [2, 3]), vi("i", "i64", [2, 3]), vi("c", "bool", [2, 3])],
                   [vi("a", "i64", [2, 3]), vi("b", "f32", [2, 3]), vi("d", "f32", [2, 3]),
                    vi("e", "bool", [2, 3]), vi("f", "f16", [2, 3])], 13)


@case("castlike", 15, "CastLike: i64 [2,3] like f32 [] -> f32 [2,3]; bool like i64 -> i64")
def _():
    g = Graph()
    g.node("CastLike", ["i", "f"], ["y"])
    g.node("CastLike", ["c", "i"], ["z"])
    return g.model("castlike", [vi("i", "i64", [2, 3]), vi("f", "f32", []), vi("c", "bool", [2, 3])],
                   [vi("y", "f32", [2, 3]), vi("z", "i64", [2, 3])], 15)


# --- shape arithmetic that must fold to constants ----------------------------

def _shape_chain(name, x_shape):
    # seq = Shape(x)[1]; mask = ConstantOfShape([seq, seq], 1.0); y = x[0] @ mask
    # with start/end (opset 15): Shape(x, start=1, end=2) -> [seq]
    g = Graph()
    one = g.const("one", np.array(1, dtype=np.int64))
    zero_axes = g.const("axes0", i64(0))
    g.node("Shape", ["x"], ["shape"])
    g.node("Gather", ["shape", one], ["seq"], axis=0)
    g.node("Unsqueeze", ["seq", zero_axes], ["seq1"])
    g.node("Shape", ["x"], ["seq1b"], start=1, end=2)
    g.node("Concat", ["seq1", "seq1b"], ["mask_shape"], axis=0)
    g.node("ConstantOfShape", ["mask_shape"], ["mask"],
           value=numpy_helper.from_array(np.array([1.0], dtype=np.float32)))
    g.node("MatMul", ["x", "mask"], ["y"])
    return g.model(name, [vi("x", "f32", x_shape)], [vi("y", "f32", x_shape)], 15)


@case("shape-chain", 15, "Shape -> Gather -> Unsqueeze -> Concat -> ConstantOfShape on a static [2,16] input: must fold to constants (y = x @ ones[16,16])")
def _():
    return _shape_chain("shape_chain", [2, 16])


@case("shape-chain-dynamic", 15, "the shape-chain with symbolic dims x ['batch','seq']: folds once --shape x=BxS is given; without it, the missing-dim error")
def _():
    return _shape_chain("shape_chain_dynamic", ["batch", "seq"])


@case("range", 13, "Range from constants: int64 (0, 16, 1) -> [16] (positions), f32 (1.0, 0.0, -0.25) -> [4]; must fold")
def _():
    g = Graph()
    ints = [g.const(n, np.array(v, dtype=np.int64)) for n, v in (("i0", 0), ("i1", 16), ("i2", 1))]
    flts = [g.const(n, np.array(v, dtype=np.float32)) for n, v in (("f0", 1.0), ("f1", 0.0), ("f2", -0.25))]
    g.node("Range", ints, ["y"])
    g.node("Range", flts, ["z"])
    return g.model("range", [], [vi("y", "i64", [16]), vi("z", "f32", [4])], 13)


@case("range-dynamic", 13, "Range with a limit from Shape: positions of x [2,'seq'] -> ['seq']; folds once seq is known")
def _():
    g = Graph()
    zero = g.const("zero", np.array(0, dtype=np.int64))
    one = g.const("one", np.array(1, dtype=np.int64))
    g.node("Shape", ["x"], ["shape"])
    g.node("Gather", ["shape", one], ["seq"], axis=0)
    g.node("Range", [zero, "seq", one], ["y"])
    return g.model("range_dynamic", [vi("x", "i64", [2, "seq"])], [vi("y", "i64", ["seq"])], 13)


@case("identity", 13, "Identity: [2,3] -> [2,3], also of an initializer (how folded exports alias weights)")
def _():
    g = Graph()
    w = g.const("w", f32([2, 3], seed=6))
    g.node("Identity", ["x"], ["y"])
    g.node("Identity", [w], ["w_alias"])
    g.node("Add", ["y", "w_alias"], ["z"])
    return g.model("identity", [vi("x", "f32", [2, 3])], [vi("z", "f32", [2, 3])], 13)


@case("constant", 13, "Constant in each form: value (tensor [2,3]), value_float, value_floats, value_int, value_ints; summed into outputs")
def _():
    g = Graph()
    g.node("Constant", [], ["t"], value=numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3)))
    g.node("Constant", [], ["f"], value_float=0.5)
    g.node("Constant", [], ["fs"], value_floats=[1.0, 2.0, 3.0])
    g.node("Constant", [], ["i"], value_int=7)
    g.node("Constant", [], ["is"], value_ints=[1, 2])
    g.node("Add", ["t", "f"], ["a"])
    g.node("Add", ["a", "fs"], ["y"])
    g.node("Add", ["i", "is"], ["z"])
    return g.model("constant", [], [vi("y", "f32", [2, 3]), vi("z", "i64", [2])], 13)


# --- loss and dropout --------------------------------------------------------

def _sce(name, reduction, scores_shape, labels_shape, out_shape, ignore_index=None):
    g = Graph()
    attrs = {"reduction": reduction}
    if ignore_index is not None:
        attrs["ignore_index"] = ignore_index
    g.node("SoftmaxCrossEntropyLoss", ["scores", "labels"], ["loss"], **attrs)
    return g.model(name, [vi("scores", "f32", scores_shape), vi("labels", "i64", labels_shape)],
                   [vi("loss", "f32", out_shape)], 13)


@case("sce-mean", 13, "SoftmaxCrossEntropyLoss reduction=mean: scores [6,10], labels [6] -> []")
def _():
    return _sce("sce_mean", "mean", [6, 10], [6], [])


@case("sce-sum", 13, "SoftmaxCrossEntropyLoss reduction=sum: scores [6,10], labels [6] -> []")
def _():
    return _sce("sce_sum", "sum", [6, 10], [6], [])


@case("sce-none", 13, "SoftmaxCrossEntropyLoss reduction=none: scores [6,10], labels [6] -> [6]")
def _():
    return _sce("sce_none", "none", [6, 10], [6], [6])


@case("sce-ignore-index", 13, "SoftmaxCrossEntropyLoss mean with ignore_index=-100 (the HF causal-LM loss): scores [6,10], labels [6] -> []")
def _():
    return _sce("sce_ignore_index", "mean", [6, 10], [6], [], ignore_index=-100)


@case("sce-3d", 13, "SoftmaxCrossEntropyLoss on [N,C,D] scores [2,10,5], labels [2,5], mean, ignore_index=-100 -> []")
def _():
    return _sce("sce_3d", "mean", [2, 10, 5], [2, 5], [], ignore_index=-100)


@case("dropout", 13, "Dropout in inference (an identity): ratio 0.1, training_mode false constant; and with no optional inputs")
def _():
    g = Graph()
    ratio = g.const("ratio", np.array(0.1, dtype=np.float32))
    train = g.const("training_mode", np.array(False))
    g.node("Dropout", ["x", ratio, train], ["y"])
    g.node("Dropout", ["x"], ["z"])
    return g.model("dropout", [vi("x", "f32", [2, 3])], [vi("y", "f32", [2, 3]), vi("z", "f32", [2, 3])], 13)


# --- inputs the importer must reject with a diagnostic -----------------------

@case("error-unsupported-ops", 13, "two unsupported ops, Det and Unique (both valid ONNX): both must be listed in one run",
      kind="error-model")
def _():
    g = Graph()
    g.node("Det", ["m"], ["d"])
    g.node("Unique", ["v"], ["u"], sorted=1)
    g.node("Relu", ["d"], ["y"])
    return g.model("unsupported_ops", [vi("m", "f32", [2, 3, 3]), vi("v", "f32", [6])],
                   [vi("y", "f32", [2]), vi("u", "f32", ["n"])], 13)


@case("error-bad-perm", 13, "Transpose perm=[0,0,1] on [2,3,4] is not a permutation (onnx.checker's shape inference rejects it too)",
      checker="fail", kind="error-model")
def _():
    g = Graph()
    g.node("Transpose", ["x"], ["y"], perm=[0, 0, 1])
    return g.model("bad_perm", [vi("x", "f32", [2, 3, 4])], [vi("y", "f32", [2, 2, 3])], 13)


@case("error-missing-dim", 13, "an input x ['batch', 4] with a symbolic dim: compiling without --shape must fail naming x and 'batch'",
      kind="error-model")
def _():
    g = Graph()
    g.node("Relu", ["x"], ["y"])
    return g.model("missing_dim", [vi("x", "f32", ["batch", 4])], [vi("y", "f32", ["batch", 4])], 13)


@case("error-missing-shape", 13, "an input x with no shape at all (rank unknown): must fail naming x "
      "(onnx.checker 1.12 rejects it too: graph inputs and outputs need a shape field)",
      checker="fail", kind="error-model")
def _():
    g = Graph()
    g.node("Relu", ["x"], ["y"])
    return g.model("missing_shape", [vi("x", "f32", None)], [vi("y", "f32", None)], 13)


@case("error-truncated", 13, "the first half of a valid model (a MatMul with a [64,64] weight): a protobuf parse error",
      checker="n/a", kind="bytes")
def _():
    g = Graph()
    w = g.const("w", f32([64, 64], seed=7))
    g.node("MatMul", ["x", w], ["y"])
    data = g.model("truncated", [vi("x", "f32", [2, 64])], [vi("y", "f32", [2, 64])], 13).SerializeToString()
    return data[:len(data) // 2]


@case("error-empty", None, "an empty file (0 bytes; protobuf parses it as an empty ModelProto with no graph)",
      checker="n/a", kind="bytes")
def _():
    return b""


@case("error-random-bytes", None, "4096 random bytes (fixed seed): not a model",
      checker="n/a", kind="bytes")
def _():
    return np.random.default_rng(1234).bytes(4096)


# --- driver ------------------------------------------------------------------

def build(name):
    c = CASES[name]
    if c.skip_reason:
        print(f"make_onnx.py: error: case '{name}' {c.skip_reason}", file=sys.stderr)
        sys.exit(2)
    out = c.fn()
    return out if isinstance(out, bytes) else out.SerializeToString()


def write(name, path):
    data = build(name)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def self_test(outdir):
    """Writes every case, reloads it and checks what the case promises."""
    os.makedirs(outdir, exist_ok=True)
    failures, written, skipped = [], 0, []
    for name, c in CASES.items():
        if c.skip_reason:
            skipped.append(name)
            print(f"skip {name}: {c.skip_reason}")
            continue
        path = os.path.join(outdir, name + ".onnx")
        write(name, path)
        again = build(name)
        if again != open(path, "rb").read():
            failures.append(f"{name}: output is not deterministic")
        written += 1
        try:
            if c.kind == "bytes":
                data = open(path, "rb").read()
                m = onnx.ModelProto()
                try:
                    m.ParseFromString(data)
                    parsed = True
                except Exception:
                    parsed = False
                # Whatever protobuf makes of it, it must not be a usable model.
                usable = parsed and m.HasField("graph") and len(m.graph.node) > 0
                if usable:
                    failures.append(f"{name}: parses as a model with {len(m.graph.node)} nodes")
                print(f"ok   {name}: {len(data)} bytes, {'parses but has no usable graph' if parsed else 'does not parse'}")
                continue
            m = onnx.load(path)
            assert m.ir_version == IR_VERSION, m.ir_version
            opset = {o.domain: o.version for o in m.opset_import}[""]
            assert opset == c.opset, (opset, c.opset)
            assert all(n.name for n in m.graph.node), "every node needs a name"
            try:
                onnx.checker.check_model(m, full_check=True)
                verdict = "pass"
            except Exception as e:  # ValidationError, InferenceError
                verdict = "fail"
                why = str(e).strip().splitlines()[0]
            if verdict != c.checker:
                failures.append(f"{name}: onnx.checker should {c.checker}, but it did {verdict}"
                                + (f": {why}" if verdict == "fail" else ""))
            ops = sorted({n.op_type for n in m.graph.node})
            print(f"ok   {name}: opset {opset}, {len(m.graph.node)} nodes {ops}, checker {verdict}")
        except Exception as e:
            failures.append(f"{name}: {type(e).__name__}: {e}")
    for f in failures:
        print(f"FAIL {f}")
    print(f"{written} cases written to {outdir}, {len(skipped)} skipped (opset > {MAX_OPSET}), "
          f"{len(failures)} failures")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description="Write small ONNX models for the importer tests.")
    ap.add_argument("case", nargs="?", help="case name (see --list)")
    ap.add_argument("out", nargs="?", help="output .onnx path")
    ap.add_argument("--list", action="store_true", help="print the cases this onnx can write")
    ap.add_argument("--describe", action="store_true", help="print every case with what it covers")
    ap.add_argument("--self-test", metavar="DIR", help="write and check every case in DIR")
    args = ap.parse_args()
    if args.list:
        for name, c in CASES.items():
            if not c.skip_reason:
                print(name)
        return 0
    if args.describe:
        for name, c in CASES.items():
            opset = f"opset {c.opset}" if c.opset else "no opset"
            status = f"SKIPPED: {c.skip_reason}" if c.skip_reason else f"checker {c.checker}"
            print(f"{name:<24} {c.kind:<11} {opset:<9} {status:<14} {c.doc}")
        return 0
    if args.self_test:
        return self_test(args.self_test)
    if not args.case or not args.out:
        ap.error("give CASE OUT.onnx, or --list, --describe or --self-test DIR")
    if args.case not in CASES:
        print(f"make_onnx.py: error: unknown case '{args.case}' (see --list)", file=sys.stderr)
        return 2
    write(args.case, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
