#!/usr/bin/env python3
#===- check_op.py - Differential numerics of one ONNX model against onnxruntime -===#
#
# Usage:
#   check_op.py CASE|MODEL.onnx [--shape NAME=DxD ...] [--workdir DIR] [--seed N]
#                               [--opt PATH] [--run PATH]
#   check_op.py --self-test     check the comparison and the input domains
#                               (needs neither onnxruntime nor colossal)
#
# CASE is a make_onnx.py case (written to WORKDIR/model.onnx); anything ending
# in .onnx is taken as a path. Needs onnxruntime: run it with the virtualenv of
# scripts/python-env.sh (<repo>/.venv/bin/python), which also sees Debian's
# onnx and numpy.
#
# Steps:
#   1. generate deterministic inputs for every graph input (not for the
#      initializers: colossal writes those to its weights file itself), with
#      values each consuming node accepts (see "Input domains" below);
#   2. run the model with onnxruntime (CPU, graph optimizations off, so the
#      reference is the op as specified rather than a fused rewrite);
#   3. colossal-opt compile MODEL.onnx --forward-only -o WORKDIR/model.cplan [--shape ...]
#      colossal-run WORKDIR/model.cplan --inputs WORKDIR/inputs.safetensors
#                                       --outputs WORKDIR/outputs.safetensors
#   4. compare every graph output: dtype and shape exactly; integers and bools
#      exactly; floats elementwise |ours - ref| <= atol + rtol * |ref|, with
#      NaN where the reference has NaN and the same infinities.
#
# Tolerances. The CPU backend computes in f64 and rounds once to the output
# type, so it is at least as accurate as onnxruntime's f32 arithmetic; what
# remains is onnxruntime's own f32 rounding (a few ulps, ~1e-6 relative after
# the accumulations of these small models):
#   f32, f64  atol 1e-5, rtol 1e-5
#   f16       atol 2^-10, rtol 2^-10 (one f16 ulp at 1.0: an f16 result rounded
#             from f64 and one rounded from f32 may differ by one rounding;
#             a plain Cast to f16 matches exactly anyway)
#
# Input domains. Each graph input is traced through value-preserving ops
# (Identity, Cast, Reshape, Squeeze, Unsqueeze, Flatten, Transpose, Expand,
# Concat, Dropout, Slice, Split, Tile, Pad, the data of Gather*, the branches of
# Where) to the nodes that consume it, and gets values that every one of
# those nodes accepts:
#   Gather / GatherElements indices   integers in [-d, d), d = data's dim on the axis
#   GatherND indices                  component j in [-d_j, d_j), d_j = data dim batch_dims+j
#   SoftmaxCrossEntropyLoss labels    integers in [0, C); with ignore_index, about a
#                                     third are ignore_index (never all of them)
#   Sqrt, Log input                   floats in [0.05, 4)
#   Pow base                          floats in [0.5, 2); the exponent in [-2, 2)
#   Div divisor, Reciprocal input     floats with |x| in [0.5, 2), either sign
#   comparisons (Equal, Less, ...)    floats from {-1, -0.5, 0, 0.5, 1}, integers in
#                                     [-3, 3], so that ties occur
#   Cast / CastLike from a float      a mix of 3 * N(0, 1), exact zeros (-> false),
#                                     k + 0.5 (truncation toward zero), f16 subnormals
#                                     and values around the f16 maximum (-> 65504 or inf)
#   Cast / CastLike from an integer   a mix of [-1000, 1000], zeros and |x| < 2^40
#                                     (int -> f32 rounds beyond 2^24)
#   other floats                      N(0, 1); other integers in [-1000, 1000];
#                                     bools uniformly random
# An integer input that reaches a shape, axes or pads operand cannot be given
# meaningful values, so it is an error.
#
# Exit status: 0 when every output matches; 1 when an output differs; 2 when a
# tool fails, onnxruntime rejects the model, or an input cannot be generated.
# Every output's error is printed either way.
#
#===----------------------------------------------------------------------===#

import argparse
import os
import shutil
import subprocess
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from colossal_testutil import read_safetensors, write_safetensors  # noqa: E402

# (atol, rtol) per float dtype; see the banner.
TOLERANCES = {
    np.dtype("float64"): (1e-5, 1e-5),
    np.dtype("float32"): (1e-5, 1e-5),
    np.dtype("float16"): (2.0 ** -10, 2.0 ** -10),
}

# Ops whose outputs hold some of these inputs' values unchanged (None: every input).
PASS_THROUGH = {
    "Identity": (0,), "Cast": (0,), "Reshape": (0,), "Squeeze": (0,), "Unsqueeze": (0,),
    "Flatten": (0,), "Transpose": (0,), "Expand": (0,), "Dropout": (0,), "Concat": None,
    "Slice": (0,), "Split": (0,), "Tile": (0,), "Gather": (0,), "GatherElements": (0,),
    "GatherND": (0,), "Where": (1, 2), "Pad": (0,),
}
COMPARISONS = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
# (op, input index) operands that are shapes, axes, pads, counts: an integer
# graph input there cannot be given meaningful random values.
SHAPE_OPERANDS = {
    ("Reshape", 1), ("Expand", 1), ("Tile", 1), ("ConstantOfShape", 0), ("Pad", 1),
    ("Split", 1), ("Squeeze", 1), ("Unsqueeze", 1), ("ReduceSum", 1), ("ReduceMean", 1),
    ("ReduceMax", 1), ("ReduceMin", 1), ("ReduceSumSquare", 1), ("ReduceProd", 1), ("TopK", 1), ("OneHot", 1),
    ("CumSum", 1), ("Range", 0), ("Range", 1), ("Range", 2), ("Slice", 1), ("Slice", 2),
    ("Slice", 3), ("Slice", 4), ("SplitToSequence", 1), ("SequenceAt", 1), ("Resize", 3),
}


class Broken(Exception):
    """A tool failed, or the model or its inputs cannot be prepared (exit 2)."""


def log(msg=""):
    print(msg, flush=True)


def find_tool(explicit, name):
    if explicit:
        return explicit
    found = shutil.which(name)
    if found:
        return found
    return os.path.join(os.environ.get("BUILD_DIR", os.path.join(REPO_ROOT, "build")), "bin", name)


def run_tool(argv, what, timeout):
    log(f"  {what}: {' '.join(argv)}")
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError:
        raise Broken(f"{what}: {argv[0]} not found (build first, or pass --opt/--run)")
    except subprocess.TimeoutExpired:
        raise Broken(f"{what}: timed out after {timeout} s")
    text = p.stdout.decode("utf-8", "replace").rstrip()
    if text:
        log("\n".join("    | " + line for line in text.splitlines()))
    log(f"  {what}: exit {p.returncode} in {time.monotonic() - t0:.2f} s")
    if p.returncode != 0:
        raise Broken(f"{what} failed with exit status {p.returncode}")


def parse_shapes(specs):
    """['x=2x16', ...] -> {'x': [2, 16]}; 'x=' is a scalar."""
    shapes = {}
    for spec in specs:
        name, eq, dims = spec.partition("=")
        if not eq or not name:
            raise Broken(f"--shape {spec!r}: expected NAME=DxD...")
        try:
            shapes[name] = [int(d) for d in dims.split("x")] if dims else []
        except ValueError:
            raise Broken(f"--shape {spec!r}: dims must be integers separated by 'x'")
    return shapes


# --- the model --------------------------------------------------------------

def load_model(path, shapes):
    """Loads the model and fixes every graph input's shape (from --shape where
    given, else the static dims). Returns (model, [(name, np dtype, shape)])."""
    import onnx
    from onnx.mapping import TENSOR_TYPE_TO_NP_TYPE  # onnx 1.12 has no helper.tensor_dtype_to_np_dtype
    try:
        m = onnx.load(path)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise Broken(f"cannot parse {path}: {e}")
    inits = {t.name for t in m.graph.initializer}
    inputs = []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            raise Broken(f"graph input '{vi.name}' has no shape")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if vi.name in shapes:
            given = shapes[vi.name]
            if len(given) != len(dims) or any(d is not None and d != g for d, g in zip(dims, given)):
                raise Broken(f"--shape {vi.name}={'x'.join(map(str, given))} does not fit the "
                             f"declared shape {['?' if d is None else d for d in dims]}")
            dims = given
        elif any(d is None for d in dims):
            raise Broken(f"graph input '{vi.name}' has dynamic dims "
                         f"{['?' if d is None else d for d in dims]}: give --shape {vi.name}=DxD...")
        # Fix the dims in the model so that shape inference can see them.
        for d, v in zip(tt.shape.dim, dims):
            d.Clear()
            d.dim_value = v
        inputs.append((vi.name, np.dtype(TENSOR_TYPE_TO_NP_TYPE[tt.elem_type]), dims))
    unknown = set(shapes) - {n for n, _, _ in inputs}
    if unknown:
        raise Broken(f"--shape names {sorted(unknown)}, which are not graph inputs "
                     f"(inputs: {[n for n, _, _ in inputs]})")
    return m, inputs


def value_shapes(model):
    """{value name: [dim or None]} from ONNX shape inference, initializers and inputs."""
    import onnx
    from onnx import numpy_helper
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as e:
        raise Broken(f"onnx shape inference failed: {e}")
    shapes = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    for t in g.initializer:
        shapes[t.name] = list(numpy_helper.to_array(t).shape)
    return shapes


def attr(node, name, default):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


# --- input domains ----------------------------------------------------------

class Domain:
    """What values one graph input may take; built from its consumers."""

    def __init__(self, name):
        self.name = name
        self.lo, self.hi = None, None   # integer index range [lo, hi) (all components)
        self.components = None          # GatherND: [(lo, hi)] per last-dim component
        self.labels = None              # (C, ignore_index or None)
        self.kinds = set()              # "positive", "pow-base", "pow-exp", "nonzero", "ties", "cast"
        self.why = []

    def index_range(self, lo, hi, why):
        self.lo = lo if self.lo is None else max(self.lo, lo)
        self.hi = hi if self.hi is None else min(self.hi, hi)
        self.why.append(why)


def dim_of(shapes, value, axis, node):
    shape = shapes.get(value)
    if shape is None or axis >= len(shape) or shape[axis] is None:
        raise Broken(f"node '{node.name}' ({node.op_type}): the shape of '{value}' is unknown, "
                     f"so its indices cannot be generated in range")
    return shape[axis]


def constrain(domain, node, idx, shapes):
    """Adds what `node` needs of its input `idx` (which carries the graph input)."""
    op = node.op_type
    where = f"{op} '{node.name}'"
    if op == "Gather" and idx == 1 or op == "GatherElements" and idx == 1:
        data = shapes.get(node.input[0]) or []
        axis = attr(node, "axis", 0)
        axis += len(data) if axis < 0 else 0
        d = dim_of(shapes, node.input[0], axis, node)
        domain.index_range(-d, d, f"{where} indices, axis {axis} of size {d}")
    elif op == "GatherND" and idx == 1:
        b = attr(node, "batch_dims", 0)
        ishape = shapes.get(node.input[1])
        if not ishape or ishape[-1] is None:
            raise Broken(f"node '{node.name}' (GatherND): the indices' last dim is unknown")
        comps = [dim_of(shapes, node.input[0], b + j, node) for j in range(ishape[-1])]
        domain.components = [(-d, d) for d in comps]
        domain.why.append(f"{where} indices, component j in [-d_j, d_j) for dims {comps}")
    elif op in ("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss") and idx == 1:
        c = dim_of(shapes, node.input[0], 1, node)
        ignore = attr(node, "ignore_index", None)
        domain.labels = (c, ignore)
        domain.why.append(f"{where} labels in [0, {c})"
                          + (f" and ignore_index {ignore}" if ignore is not None else ""))
    elif op in ("Sqrt", "Log") and idx == 0:
        domain.kinds.add("positive")
        domain.why.append(f"{where} input > 0")
    elif op == "Pow":
        domain.kinds.add("pow-base" if idx == 0 else "pow-exp")
        domain.why.append(f"{where} {'base in [0.5, 2)' if idx == 0 else 'exponent in [-2, 2)'}")
    elif op == "Div" and idx == 1 or op == "Reciprocal":
        domain.kinds.add("nonzero")
        domain.why.append(f"{where} |x| in [0.5, 2)")
    elif op in COMPARISONS:
        domain.kinds.add("ties")
        domain.why.append(f"{where} operands with ties")
    elif op in ("Cast", "CastLike") and idx == 0:
        domain.kinds.add("cast")
        domain.why.append(f"{where} input: conversion edge values")
    elif (op, idx) in SHAPE_OPERANDS:
        domain.kinds.add("shape-operand")
        domain.why.append(f"{where} operand {idx} (a shape, axes or pads operand)")


def infer_domains(model, inputs, shapes):
    consumers = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name:
                consumers.setdefault(name, []).append((node, i))
    domains = {}
    for name, _, _ in inputs:
        dom = Domain(name)
        seen, todo = set(), [name]
        while todo:
            value = todo.pop()
            if value in seen:
                continue
            seen.add(value)
            for node, i in consumers.get(value, []):
                constrain(dom, node, i, shapes)
                through = PASS_THROUGH.get(node.op_type, ())
                if node.op_type in PASS_THROUGH and (through is None or i in through):
                    todo.extend(o for o in node.output if o)
        domains[name] = dom
    return domains


def generate(name, dtype, shape, dom, seed):
    """Deterministic values for one input: seeded by the input's name."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    shape = tuple(shape)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        if "shape-operand" in dom.kinds:
            raise Broken(f"integer input '{name}' reaches {'; '.join(dom.why)}: give it as an "
                         f"initializer; random values would not be meaningful")
        if dom.components is not None:
            if not shape or shape[-1] != len(dom.components):
                raise Broken(f"input '{name}': GatherND indices shape {list(shape)} does not "
                             f"end in {len(dom.components)}")
            cols = [rng.integers(lo, hi, size=shape[:-1]) for lo, hi in dom.components]
            return np.stack(cols, axis=-1).astype(dtype)
        if dom.labels is not None:
            c, ignore = dom.labels
            labels = rng.integers(0, c, size=shape)
            if ignore is not None and labels.size > 1:
                flat = labels.reshape(-1)
                drop = rng.random(flat.size) < 1 / 3
                drop[0] = False  # at least one label counts: a mean over none is 0/0
                flat[drop] = ignore
            return labels.astype(dtype)
        if dom.lo is not None:
            if dom.lo >= dom.hi:
                raise Broken(f"input '{name}': its consumers allow no index "
                             f"({'; '.join(dom.why)})")
            return rng.integers(dom.lo, dom.hi, size=shape).astype(dtype)
        if "ties" in dom.kinds:
            return rng.integers(-3, 4, size=shape).astype(dtype)
        x = rng.integers(-1000, 1001, size=shape)
        if "cast" in dom.kinds:
            # Zeros (-> false) and magnitudes beyond 2^24 (int -> f32 rounds).
            pick = rng.random(shape)
            x[pick < 0.2] = 0
            big = pick > 0.7
            x[big] = rng.integers(-2 ** 40, 2 ** 40, size=int(big.sum()))
        return x.astype(dtype)
    if dtype.kind != "f":
        raise Broken(f"input '{name}': cannot generate values of dtype {dtype}")
    kinds = dom.kinds - {"shape-operand"}
    if "positive" in kinds:
        x = rng.uniform(0.05, 4.0, size=shape)
    elif "pow-base" in kinds:
        x = rng.uniform(0.5, 2.0, size=shape)
    elif "nonzero" in kinds:
        x = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    elif "pow-exp" in kinds:
        x = rng.uniform(-2.0, 2.0, size=shape)
    elif "ties" in kinds:
        x = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=shape)
    elif "cast" in kinds:
        # Each element from one class: 3 * N(0, 1); 0 (-> false); k + 0.5
        # (truncation, not rounding); an f16 subnormal; a value near or past
        # the f16 maximum 65504 (rounds to it, or overflows to inf).
        pick = rng.random(shape)
        x = 3.0 * rng.standard_normal(shape)
        x[pick < 0.2] = 0.0
        half = (pick >= 0.2) & (pick < 0.35)
        x[half] = rng.integers(-5, 5, size=int(half.sum())) + 0.5
        tiny = (pick >= 0.35) & (pick < 0.45)
        x[tiny] = rng.uniform(-6e-5, 6e-5, size=int(tiny.sum()))
        big = pick >= 0.9
        x[big] = rng.uniform(6.5e4, 6.6e4, size=int(big.sum())) * rng.choice([-1.0, 1.0], size=int(big.sum()))
    else:
        x = rng.standard_normal(shape)
    return np.asarray(x).astype(dtype)


def describe_input(name, arr, dom):
    head = f"  input {name}: {arr.dtype} {list(arr.shape)}"
    if arr.size and arr.dtype != np.bool_:
        head += f" in [{arr.min():.4g}, {arr.max():.4g}]"
    elif arr.size:
        head += f" ({int(arr.sum())} of {arr.size} true)"
    if dom.why:
        head += "  (" + "; ".join(dict.fromkeys(dom.why)) + ")"
    return head


# --- onnxruntime ------------------------------------------------------------

def run_onnxruntime(model, feeds):
    try:
        import onnxruntime as ort
    except ImportError:
        raise Broken("onnxruntime is missing: run with <repo>/.venv/bin/python "
                     "(bash scripts/python-env.sh creates it)")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, feeds)
    except Exception as e:
        raise Broken(f"onnxruntime {ort.__version__} rejects the model: {type(e).__name__}: {e}")
    return dict(zip(names, (np.asarray(v) for v in values)))


# --- comparison -------------------------------------------------------------

def fmt(x):
    return f"{x:.9g}" if isinstance(x, float) else repr(x)


def compare(name, ours, ref):
    """Prints one line for the output; returns a failure message or None."""
    head = f"  output {name}: {ref.dtype} {list(ref.shape)}"
    if ours is None:
        log(f"{head}  missing from colossal's outputs  FAIL")
        return f"output '{name}' is missing from colossal's outputs"
    if ours.dtype != ref.dtype:
        log(f"{head}  colossal wrote {ours.dtype}  FAIL")
        return f"output '{name}': dtype {ours.dtype}, onnxruntime {ref.dtype}"
    if ours.shape != ref.shape:
        log(f"{head}  colossal wrote shape {list(ours.shape)}  FAIL")
        return f"output '{name}': shape {list(ours.shape)}, onnxruntime {list(ref.shape)}"
    if ref.size == 0:
        log(f"{head}  empty, shapes match  ok")
        return None
    if ref.dtype.kind != "f":
        bad = np.argwhere(ours != ref)
        log(f"{head}  exact: {len(bad)} of {ref.size} differ  {'ok' if not len(bad) else 'FAIL'}")
        if len(bad):
            i = tuple(int(x) for x in bad[0])
            return (f"output '{name}': {len(bad)} of {ref.size} elements differ; first at "
                    f"{list(i)}: colossal {ours[i].item()!r}, onnxruntime {ref[i].item()!r}")
        return None
    atol, rtol = TOLERANCES[ref.dtype]
    o, r = ours.astype(np.float64), ref.astype(np.float64)
    np.seterr(invalid="ignore")  # inf - inf below is masked out
    nan_bad = np.isnan(o) != np.isnan(r)
    inf_bad = (np.isinf(o) | np.isinf(r)) & (o != r) & ~np.isnan(r)
    both = np.isfinite(o) & np.isfinite(r)
    err = np.where(both, np.abs(o - r), 0.0)
    tol = atol + rtol * np.abs(np.where(both, r, 0.0))
    bad = nan_bad | inf_bad | (err > tol)
    # The worst element: a NaN/inf mismatch, else the largest error relative to its tolerance.
    score = np.where(nan_bad | inf_bad, np.inf, err / tol)
    w = np.unravel_index(int(np.argmax(score)), ref.shape)
    nbad = int(bad.sum())
    log(f"{head}  max abs err {err.max():.3g}, worst at {[int(x) for x in w]}: colossal "
        f"{fmt(float(o[w]))}, onnxruntime {fmt(float(r[w]))} (tol {atol:g} + {rtol:g}*|ref| = "
        f"{float(tol[w]):.3g})  {'ok' if not nbad else f'FAIL ({nbad} of {ref.size} elements)'}")
    if nbad:
        return (f"output '{name}': {nbad} of {ref.size} elements differ by more than "
                f"{atol:g} + {rtol:g}*|ref|; worst at {[int(x) for x in w]}: colossal "
                f"{fmt(float(o[w]))}, onnxruntime {fmt(float(r[w]))}")
    return None


# --- driver -----------------------------------------------------------------

def prepare_model(target, workdir):
    """The .onnx path for TARGET: itself, or the make_onnx.py case written into WORKDIR."""
    if target.endswith(".onnx"):
        if not os.path.exists(target):
            raise Broken(f"{target}: no such file")
        return target
    import make_onnx
    if target not in make_onnx.CASES:
        raise Broken(f"'{target}' is neither a .onnx file nor a make_onnx.py case (see make_onnx.py --list)")
    c = make_onnx.CASES[target]
    if c.kind != "model":
        raise Broken(f"case '{target}' is a {c.kind}, not a model to run")
    if c.skip_reason:
        raise Broken(f"case '{target}' {c.skip_reason}")
    path = os.path.join(workdir, "model.onnx")
    make_onnx.write(target, path)
    return path


def self_test():
    """Checks compare() and the input domains without onnxruntime or colossal:
    the checker must catch what it promises to catch."""
    import contextlib
    import io
    import tempfile
    from onnx import TensorProto, helper
    problems = []

    def quiet_compare(name, ours, ref):
        # compare() prints a line per output; the expected failures would read as real ones.
        with contextlib.redirect_stdout(io.StringIO()):
            return compare(name, ours, ref)

    def expect(what, got_failure, want_failure):
        if bool(got_failure) != want_failure:
            problems.append(f"compare: {what}: expected {'a failure' if want_failure else 'a pass'}, "
                            f"got {got_failure or 'a pass'}")

    f32 = np.array([0.1, -2.0, 3.0], dtype=np.float32)
    nudge = lambda i, d: np.where(np.arange(3) == i, f32 + d, f32).astype(np.float32)  # noqa: E731
    expect("identical", quiet_compare("t", f32.copy(), f32), False)
    expect("0.5e-5 off at 0.1", quiet_compare("t", nudge(0, 5e-6), f32), False)
    expect("2e-5 off at 0.1", quiet_compare("t", nudge(0, 2e-5), f32), True)
    expect("4e-5 off at 3.0 (tol 4e-5)", quiet_compare("t", nudge(2, 3.9e-5), f32), False)
    expect("1e-4 off at 3.0", quiet_compare("t", nudge(2, 1e-4), f32), True)
    nan = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    expect("same NaN and infinities", quiet_compare("t", nan.copy(), nan), False)
    expect("NaN for a number", quiet_compare("t", np.array([np.nan, 1, 2], np.float32), f32), True)
    expect("a number for NaN", quiet_compare("t", np.array([0, np.inf, -np.inf], np.float32), nan), True)
    expect("-inf for inf", quiet_compare("t", np.array([np.nan, -np.inf, -np.inf], np.float32), nan), True)
    expect("a large number for inf", quiet_compare("t", np.array([np.nan, 3e38, -np.inf], np.float32), nan), True)
    expect("dtype f64 for f32", quiet_compare("t", f32.astype(np.float64), f32), True)
    expect("shape [1, 3] for [3]", quiet_compare("t", f32.reshape(1, 3), f32), True)
    expect("missing", quiet_compare("t", None, f32), True)
    i64 = np.array([1, -5, 7], dtype=np.int64)
    expect("integers equal", quiet_compare("t", i64.copy(), i64), False)
    expect("integer off by one", quiet_compare("t", i64 + np.array([0, 0, 1]), i64), True)
    b = np.array([True, False])
    expect("bools equal", quiet_compare("t", b.copy(), b), False)
    expect("bool flipped", quiet_compare("t", ~b, b), True)
    h = np.array([1.0, 2.0], dtype=np.float16)
    expect("f16 one ulp at 1.0", quiet_compare("t", np.array([1.0 + 2 ** -10, 2.0], np.float16), h), False)
    expect("f16 four ulps at 2.0", quiet_compare("t", np.array([1.0, 2.0 + 2 ** -7], np.float16), h), True)
    expect("empty", quiet_compare("t", np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)), False)

    def feeds(path, shapes=None, seed=0):
        model, inputs = load_model(path, shapes or {})
        domains = infer_domains(model, inputs, value_shapes(model))
        return {n: generate(n, dt, sh, domains[n], seed) for n, dt, sh in inputs}

    import make_onnx
    with tempfile.TemporaryDirectory() as d:
        def case(name, shapes=None, seed=0):
            path = os.path.join(d, name + ".onnx")
            make_onnx.write(name, path)
            return feeds(path, shapes, seed)

        def check(what, ok):
            if not ok:
                problems.append(f"domain: {what}")

        for seed in range(20):
            ids = case("gather", seed=seed)["ids"]
            check(f"gather ids {ids.ravel().tolist()} in [-10, 10)", ids.min() >= -10 and ids.max() < 10)
            idx = case("gathernd", seed=seed)["idx"]
            check(f"gathernd idx {idx.tolist()} in [-2, 2) x [-3, 3)",
                  (idx[:, 0] >= -2).all() and (idx[:, 0] < 2).all() and (idx[:, 1] >= -3).all()
                  and (idx[:, 1] < 3).all())
            idx = case("gathernd-batch-dims", seed=seed)["idx"]
            check(f"gathernd batch_dims=1 idx {idx.ravel().tolist()} in [-3, 3)",
                  (idx >= -3).all() and (idx < 3).all())
            labels = case("sce-ignore-index", seed=seed)["labels"]
            valid = (labels >= 0) & (labels < 10)
            check(f"sce labels {labels.tolist()} in [0, 10) or -100, not all -100",
                  (valid | (labels == -100)).all() and valid.any())
            check("sqrt input > 0", (case("sqrt", seed=seed)["x"] > 0).all())
            check("reciprocal |x| >= 0.5", (np.abs(case("reciprocal", seed=seed)["x"]) >= 0.5).all())
            check("div divisor |x| >= 0.5", (np.abs(case("div-broadcast", seed=seed)["b"]) >= 0.5).all())
            check("pow base > 0", (case("pow-broadcast", seed=seed)["x"] > 0).all())
        # Over the seeds, negative indices and ignored labels do occur.
        ids = np.concatenate([case("gather", seed=s)["ids"].ravel() for s in range(5)])
        check("gather ids include negatives", (ids < 0).any())
        labels = np.concatenate([case("sce-3d", seed=s)["labels"].ravel() for s in range(5)])
        check("sce-3d labels include ignore_index", (labels == -100).any())
        a, b2 = case("add-broadcast"), case("add-broadcast")
        check("inputs are deterministic", all(np.array_equal(a[k], b2[k]) for k in a))
        check("--seed changes the inputs", not np.array_equal(a["a"], case("add-broadcast", seed=1)["a"]))
        check("--shape fixes a symbolic dim", case("range-dynamic", {"x": [2, 7]})["x"].shape == (2, 7))
        # An integer input that feeds a shape operand is refused.
        g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape_0")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
        path = os.path.join(d, "reshape-input.onnx")
        with open(path, "wb") as f:
            f.write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString())
        try:
            feeds(path)
            problems.append("domain: an integer graph input feeding Reshape's shape was accepted")
        except Broken as e:
            log(f"  refused as expected: {e}")
    for p in problems:
        log(f"check_op: self-test FAIL: {p}")
    log(f"check_op: self-test {'FAIL' if problems else 'PASS'} ({len(problems)} problems)")
    return 1 if problems else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser(
        description="Run an ONNX model with onnxruntime and with colossal (--forward-only, "
                    "CPU backend) on the same generated inputs; compare every output.")
    ap.add_argument("target", help="a make_onnx.py case, or a .onnx path")
    ap.add_argument("--shape", action="append", default=[], metavar="NAME=DxD",
                    help="fix a dynamic graph input's shape (passed to compile too); repeat per input")
    ap.add_argument("--seed", type=int, default=0, help="input generation seed (default 0)")
    ap.add_argument("--opt", help="colossal-opt (default: from PATH, else build/bin)")
    ap.add_argument("--run", help="colossal-run (default: from PATH, else build/bin)")
    ap.add_argument("--workdir", help="directory for the model, plan, inputs and outputs "
                                      "(default: a fresh temporary directory)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per tool run")
    args = ap.parse_args()

    failures = []
    try:
        workdir = args.workdir
        if workdir is None:
            import tempfile
            workdir = tempfile.mkdtemp(prefix="check_op.")
        elif os.path.exists(workdir) and not os.path.isdir(workdir):
            os.remove(workdir)
        os.makedirs(workdir, exist_ok=True)
        plan = os.path.join(workdir, "model.cplan")
        weights = os.path.join(workdir, "model.weights.safetensors")
        in_path = os.path.join(workdir, "inputs.safetensors")
        out_path = os.path.join(workdir, "outputs.safetensors")
        for p in (plan, weights, out_path):
            if os.path.exists(p):
                os.remove(p)

        path = prepare_model(args.target, workdir)
        shapes = parse_shapes(args.shape)
        model, inputs = load_model(path, shapes)
        log(f"check_op: {args.target} ({len(model.graph.node)} nodes "
            f"{sorted({n.op_type for n in model.graph.node})}, seed {args.seed})")

        domains = infer_domains(model, inputs, value_shapes(model))
        feeds = {}
        for name, dtype, shape in inputs:
            feeds[name] = generate(name, dtype, shape, domains[name], args.seed)
            log(describe_input(name, feeds[name], domains[name]))
        write_safetensors(in_path, feeds)

        ref = run_onnxruntime(model, feeds)
        log(f"  onnxruntime: {len(ref)} output(s)")

        opt = find_tool(args.opt, "colossal-opt")
        run = find_tool(args.run, "colossal-run")
        shape_args = [a for spec in args.shape for a in ("--shape", spec)]
        run_tool([opt, "compile", path, "-o", plan, "--forward-only"] + shape_args,
                 "compile", args.timeout)
        if not os.path.exists(plan):
            raise Broken(f"compile exited 0 but did not write {plan}")
        run_tool([run, plan, "--inputs", in_path, "--outputs", out_path], "run", args.timeout)
        if not os.path.exists(out_path):
            raise Broken(f"run exited 0 but did not write {out_path}")
        ours = read_safetensors(out_path)

        for o in model.graph.output:
            msg = compare(o.name, ours.get(o.name), ref[o.name])
            if msg:
                failures.append(msg)
        extra = sorted(set(ours) - set(ref))
        if extra:
            failures.append(f"colossal wrote outputs the graph does not have: {extra}")
    except Broken as e:
        log(f"check_op: error: {e}")
        return 2
    if failures:
        for f in failures:
            log(f"check_op: FAIL: {f}")
        return 1
    log("check_op: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
