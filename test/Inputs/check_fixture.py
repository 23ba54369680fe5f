#!/usr/bin/env python3
#===- check_fixture.py - Compile and run an ONNX fixture, compare with PyTorch -===#
#
# Usage:
#   check_fixture.py MODEL.onnx [--case N] [--opt PATH] [--run PATH] [--workdir DIR]
#
# Two kinds of fixture, told apart by the files beside MODEL.onnx:
#
#   model fixture   test/data/models/<arch>-tiny.<exporter>[.dynamic].onnx + <same>.json
#                   inputs:    json cases[N].inputs.{input_ids,labels} = {shape, dtype, data}
#                   reference: cases[N].torch_loss, cases[N].logits_shape,
#                              cases[N].logits_stats = {sum, abs_max, first8}
#   training oracle test/data/oracles/<arch>-train.<exporter>.onnx + <arch>-train.oracle.{json,safetensors}
#                   inputs:    safetensors input_ids[N], labels[N] (batch N of [4, B, S])
#                   reference: json losses[N] (the loss of step N, before its update; only
#                              N = 0 is a forward pass of the exported weights, so N must be 0),
#                              safetensors logits0 (the logits of batch 0 at step 0)
#
# Steps: write the inputs to WORKDIR/inputs.safetensors; run
#   colossal-opt compile MODEL.onnx -o WORKDIR/model.cplan --forward-only [--shape NAME=DxD ...]
# (a --shape for every graph input when any input dim is symbolic, with the
# shape of the inputs); run
#   colossal-run WORKDIR/model.cplan --inputs WORKDIR/inputs.safetensors --outputs WORKDIR/outputs.safetensors
# and compare its `loss` and `logits` with the reference.
#
# Tolerances (fp32 CPU execution against PyTorch fp32; onnxruntime reaches
# ~5e-7 on the loss and ~3e-7 on the logits of these fixtures):
#   loss          relative: |ours - ref| <= 1e-5 * |ref|                    (loss ~ 6-8, never near 0)
#   logits shape  exact
#   model fixtures only carry statistics of the logits, so:
#     abs_max     |ours - ref| <= 1e-4 * max(1, ref)                        (relative, floor 1e-4)
#     sum         |ours - ref| <= 1e-4 * max(1, |ref|)                      (relative, floor 1e-4: a sum
#                 of thousands of signed values can be near 0, where a pure relative test is meaningless;
#                 the sums here are 30-100 over 16k values, so this is ~1e-7 per element on average)
#     first8      max_i |ours_i - ref_i| <= 1e-4 * max(1, ref abs_max)      (absolute, scaled by the
#                 logits' magnitude: single values can be 0, so relative errors are meaningless)
#   oracles:      max |ours - logits0| <= 1e-4 * max(1, max |logits0|)       (every element)
# Sums and maxima are computed in float64.
#
# Exit status: 0 when every comparison passes; 1 when a comparison fails;
# 2 when a tool fails or a file is missing or malformed. Every measured
# number, its reference and its error are printed either way.
#
#===----------------------------------------------------------------------===#

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from colossal_testutil import read_safetensors, write_safetensors  # noqa: E402

LOSS_RTOL = 1e-5
LOGITS_TOL = 1e-4
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Failure(Exception):
    """A reference comparison failed (exit 1)."""


class Broken(Exception):
    """A tool failed, or an input is missing or malformed (exit 2)."""


def log(msg=""):
    print(msg, flush=True)


def find_tool(explicit, name):
    if explicit:
        return explicit
    found = shutil.which(name)
    if found:
        return found
    return os.path.join(os.environ.get("BUILD_DIR", os.path.join(REPO_ROOT, "build")), "bin", name)


def oracle_stem(model):
    """'.../opt-train.dynamo.onnx' -> '.../opt-train' if the oracle files exist, else None."""
    base = model[:-len(".onnx")] if model.endswith(".onnx") else model
    stem = base.rsplit(".", 1)[0] if "." in os.path.basename(base) else base
    if os.path.exists(stem + ".oracle.json") and os.path.exists(stem + ".oracle.safetensors"):
        return stem
    return None


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise Broken(f"cannot read {path}: {e}")


def graph_inputs(model):
    """[(name, [dim or None])] of the ONNX graph inputs that are not initializers."""
    try:
        import onnx
    except ImportError:
        raise Broken("python onnx is missing: run with /usr/bin/python3 (Debian's python3-onnx)")
    try:
        m = onnx.load(model, load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise Broken(f"cannot parse {model}: {e}")
    inits = {t.name for t in m.graph.initializer}
    out = []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in vi.type.tensor_type.shape.dim]
        out.append((vi.name, dims))
    return out


def load_fixture(model, case):
    jpath = model[:-len(".onnx")] + ".json" if model.endswith(".onnx") else model + ".json"
    if not os.path.exists(jpath):
        raise Broken(f"no reference beside {model}: expected {jpath} (a model fixture) or "
                     f"<stem>.oracle.json + <stem>.oracle.safetensors (a training oracle)")
    doc = load_json(jpath)
    cases = doc.get("cases")
    if not isinstance(cases, list) or not (0 <= case < len(cases)):
        raise Broken(f"{jpath}: no cases[{case}] (it has {len(cases or [])})")
    c = cases[case]
    inputs = {}
    for name, spec in c["inputs"].items():
        arr = np.array(spec["data"], dtype=np.dtype(spec["dtype"]))
        if list(arr.shape) != list(spec["shape"]):
            raise Broken(f"{jpath}: cases[{case}].inputs.{name}: data has shape "
                         f"{list(arr.shape)}, header says {spec['shape']}")
        inputs[name] = arr
    ref = {"loss": float(c["torch_loss"]), "loss_name": "torch_loss",
           "logits_shape": list(c["logits_shape"]), "logits_stats": c["logits_stats"]}
    return "fixture", jpath, inputs, ref


def load_oracle(model, stem, case):
    if case != 0:
        raise Broken("an oracle has a forward reference for step 0 only: use --case 0")
    doc = load_json(stem + ".oracle.json")
    st = read_safetensors(stem + ".oracle.safetensors")
    for k in ("input_ids", "labels", "logits0"):
        if k not in st:
            raise Broken(f"{stem}.oracle.safetensors has no '{k}'")
    inputs = {"input_ids": st["input_ids"][0], "labels": st["labels"][0]}
    ref = {"loss": float(doc["losses"][0]), "loss_name": "losses[0]",
           "logits": st["logits0"], "logits_shape": list(st["logits0"].shape)}
    return "oracle", stem + ".oracle.json", inputs, ref


def run_tool(argv, what, timeout):
    log(f"  {what}: {' '.join(argv)}")
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
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


def fmt(x):
    return f"{x:.9g}"


def main():
    ap = argparse.ArgumentParser(
        description="Compile and run an ONNX fixture with --forward-only; compare loss and "
                    "logits with the PyTorch reference beside it.")
    ap.add_argument("model", help="the .onnx fixture")
    ap.add_argument("--case", type=int, default=0,
                    help="model fixtures: index into the json's cases (default 0)")
    ap.add_argument("--opt", help="colossal-opt (default: from PATH, else build/bin)")
    ap.add_argument("--run", help="colossal-run (default: from PATH, else build/bin)")
    ap.add_argument("--workdir", help="directory for the plan, inputs and outputs "
                                      "(default: a fresh temporary directory)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per tool run")
    args = ap.parse_args()

    failures = []
    try:
        model = args.model
        if not os.path.exists(model):
            raise Broken(f"{model}: no such file")
        stem = oracle_stem(model)
        kind, refpath, inputs, ref = (load_oracle(model, stem, args.case) if stem
                                      else load_fixture(model, args.case))
        log(f"check_fixture: {os.path.basename(model)} ({kind}, reference {os.path.basename(refpath)}"
            f"{'' if kind == 'oracle' else f', case {args.case}'})")

        # Inputs must be exactly the graph inputs, with matching static dims.
        shape_args = []
        ginputs = graph_inputs(model)
        if sorted(n for n, _ in ginputs) != sorted(inputs):
            raise Broken(f"graph inputs {[n for n, _ in ginputs]} differ from the "
                         f"reference inputs {list(inputs)}")
        dynamic = any(d is None for _, dims in ginputs for d in dims)
        for name, dims in ginputs:
            shape = list(inputs[name].shape)
            if len(dims) != len(shape) or any(d is not None and d != s for d, s in zip(dims, shape)):
                raise Broken(f"input '{name}' has shape {shape}, the graph declares "
                             f"{['?' if d is None else d for d in dims]}")
            if dynamic:
                shape_args += ["--shape", f"{name}=" + "x".join(str(s) for s in shape)]
        for name, arr in inputs.items():
            log(f"  input {name}: {arr.dtype} {list(arr.shape)}")

        workdir = args.workdir
        if workdir is None:
            import tempfile
            workdir = tempfile.mkdtemp(prefix="check_fixture.")
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
        write_safetensors(in_path, inputs)

        opt = find_tool(args.opt, "colossal-opt")
        run = find_tool(args.run, "colossal-run")
        run_tool([opt, "compile", model, "-o", plan, "--forward-only"] + shape_args,
                 "compile", args.timeout)
        for p in (plan, weights):
            if not os.path.exists(p):
                raise Broken(f"compile exited 0 but did not write {p}")
        run_tool([run, plan, "--inputs", in_path, "--outputs", out_path], "run", args.timeout)
        if not os.path.exists(out_path):
            raise Broken(f"run exited 0 but did not write {out_path}")
        outputs = read_safetensors(out_path)
        for k in ("loss", "logits"):
            if k not in outputs:
                raise Broken(f"{out_path} has no '{k}' (it has {list(outputs)})")

        # Loss.
        loss = np.asarray(outputs["loss"], dtype=np.float64)
        if loss.size != 1:
            raise Broken(f"loss has shape {list(loss.shape)}, expected a scalar")
        ours, want = float(loss.reshape(())), ref["loss"]
        rel = abs(ours - want) / abs(want) if want != 0 else abs(ours)
        ok = bool(np.isfinite(ours)) and rel <= LOSS_RTOL
        log(f"  loss         ours {fmt(ours):>14}  {ref['loss_name']} {fmt(want):>14}  "
            f"rel err {rel:.3g} (tol {LOSS_RTOL:g})  {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(f"loss {fmt(ours)} differs from {ref['loss_name']} {fmt(want)}: "
                            f"relative error {rel:.3g} > {LOSS_RTOL:g}")

        # Logits.
        logits = np.asarray(outputs["logits"], dtype=np.float64)
        if list(logits.shape) != ref["logits_shape"]:
            failures.append(f"logits shape {list(logits.shape)}, expected {ref['logits_shape']}")
            log(f"  logits shape {list(logits.shape)}, expected {ref['logits_shape']}  FAIL")
        elif kind == "oracle":
            want_l = np.asarray(ref["logits"], dtype=np.float64)
            scale = max(1.0, float(np.abs(want_l).max()))
            err = float(np.abs(logits - want_l).max()) if logits.size else 0.0
            err = err if np.isfinite(logits).all() else float("inf")
            tol = LOGITS_TOL * scale
            ok = err <= tol
            log(f"  logits       {list(logits.shape)}  max abs err {err:.3g} "
                f"(tol {LOGITS_TOL:g} * max(1, max|logits0| = {scale:.6g}) = {tol:.3g})  "
                f"{'ok' if ok else 'FAIL'}")
            if not ok:
                i = np.unravel_index(int(np.nanargmax(np.abs(logits - want_l))), logits.shape)
                failures.append(f"logits differ from logits0 by up to {err:.3g} > {tol:.3g} "
                                f"(worst at {list(int(x) for x in i)}: ours {fmt(logits[i])}, "
                                f"logits0 {fmt(want_l[i])})")
        else:
            stats = ref["logits_stats"]
            flat = logits.reshape(-1)
            checks = [
                ("sum", float(flat.sum()), float(stats["sum"]),
                 LOGITS_TOL * max(1.0, abs(float(stats["sum"])))),
                ("abs_max", float(np.abs(flat).max()), float(stats["abs_max"]),
                 LOGITS_TOL * max(1.0, abs(float(stats["abs_max"])))),
            ]
            for name, got, exp, tol in checks:
                err = abs(got - exp) if np.isfinite(got) else float("inf")
                ok = err <= tol
                log(f"  logits {name:<7} ours {fmt(got):>14}  torch {fmt(exp):>14}  "
                    f"abs err {err:.3g} (tol {tol:.3g})  {'ok' if ok else 'FAIL'}")
                if not ok:
                    failures.append(f"logits {name} {fmt(got)} differs from torch {fmt(exp)} "
                                    f"by {err:.3g} > {tol:.3g}")
            first = [float(x) for x in stats["first8"]]
            got = flat[:len(first)]
            err = float(np.abs(got - np.array(first)).max()) if np.isfinite(got).all() else float("inf")
            tol = LOGITS_TOL * max(1.0, float(stats["abs_max"]))
            ok = err <= tol
            log(f"  logits first{len(first)} max abs err {err:.3g} (tol {tol:.3g})  "
                f"{'ok' if ok else 'FAIL'}")
            if not ok:
                failures.append(f"first {len(first)} logits differ from torch by up to {err:.3g} "
                                f"> {tol:.3g}: ours {[fmt(x) for x in got]}, torch "
                                f"{[fmt(x) for x in first]}")
    except Broken as e:
        log(f"check_fixture: error: {e}")
        return 2
    if failures:
        for f in failures:
            log(f"check_fixture: FAIL: {f}")
        return 1
    log("check_fixture: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
