#!/usr/bin/env python3
"""Causal attention from a computed mask trains exactly as the unfused graph.

For each model, at a --shape whose mask the importer does not fold (the
[B, 1, S, S] mask is over its fold limit, so it stays an expression of
index constants), compile two training plans with the same hyper-parameters:
  fused     the default: every attention must be `causal = 1` with no bias
            operand (the mask recognised and its computation gone), and so
            must every attention_grad;
  unfused   --fuse-attention off: softmax(q k^T + mask) v as exported, the
            mask computed and added as the model wrote it.
Train both --steps steps on the same random batches on the CPU backend and
check that every step's loss and gradient norm agree within --rtol relative
(both run the exact CPU kernels: attention in f64, softmax and matmul with
f64 accumulation, so they differ only by rounding order).

Exit status: 0 pass, 1 a check failed, 2 a tool failed.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import colossal_testutil as util  # noqa: E402


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print("check_causal_fusion: error: %s exited %d\n%s"
              % (" ".join(cmd), p.returncode, p.stdout[-2000:]))
        sys.exit(2)
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--shape", required=True, help="BxS for input_ids and labels")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    b, s = (int(x) for x in a.shape.split("x"))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, a.vocab, size=(2, b, s), dtype=np.int64)
    batches = os.path.join(a.workdir, "batches.safetensors")
    util.write_safetensors(batches, {"input_ids": ids, "labels": ids.copy()})

    failures = 0
    for path in a.models:
        name = os.path.basename(path)[: -len(".onnx")]
        curves = {}
        ok = True
        for mode in ("on", "off"):
            plan = os.path.join(a.workdir, "%s.%s.cplan" % (name, mode))
            text = plan + ".mlir"
            run(["colossal-opt", "compile", path, "-o", plan, "--quiet",
                 "--shape", "input_ids=" + a.shape, "--shape", "labels=" + a.shape,
                 "--fuse-attention", mode, "--emit-plan", text])
            kernels = [l for l in open(text) if re.search(r'cplan.kernel "attention(_grad)?"', l)]
            if mode == "on":
                # attention: ins(q, k, v), causal = 1; attention_grad:
                # ins(q, k, v, out, lse, dout). A bias would be one more.
                bad = [l.strip()[:160] for l in kernels
                       if "causal = 1" not in l
                       or len(re.search(r"ins\(([^:]*):", l).group(1).split(","))
                       != (3 if '"attention"' in l else 6)]
                print("%s: fused plan: %d attention kernels, %d not causal without bias"
                      % (name, len(kernels), len(bad)))
                for l in bad:
                    print("  " + l)
                ok &= bool(kernels) and not bad
            elif kernels:
                print("%s: unfused plan has %d attention kernels" % (name, len(kernels)))
                ok = False
            metrics = os.path.join(a.workdir, "%s.%s.jsonl" % (name, mode))
            run(["colossal-run", plan, "--batches", batches, "--steps", str(a.steps),
                 "--metrics", metrics])
            curves[mode] = [json.loads(l) for l in open(metrics)]
        worst = 0.0
        for fused, plain in zip(curves["on"], curves["off"]):
            for key in ("loss", "grad_norm"):
                rel = abs(fused[key] - plain[key]) / abs(plain[key])
                worst = max(worst, rel)
        ok &= len(curves["on"]) == len(curves["off"]) == a.steps and worst <= a.rtol
        print("%s %s: losses fused %s unfused %s, worst rel err %.2e (tol %.0e)"
              % ("ok  " if ok else "FAIL", name,
                 " ".join("%.6f" % r["loss"] for r in curves["on"]),
                 " ".join("%.6f" % r["loss"] for r in curves["off"]), worst, a.rtol))
        failures += not ok
    print("check_causal_fusion: %d of %d models match, %d failed"
          % (len(a.models) - failures, len(a.models), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
