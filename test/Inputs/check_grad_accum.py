#!/usr/bin/env python3
"""Gradient accumulation equals the full-batch step.

Compiles a dynamic-shape export twice at the full batch (--shape input_ids=BxS):
once plain, once with --grad-accum N (the plan then runs micro-batches of B/N).
Both train the same steps on the same random batches, in which some labels are
-100 (ignored) so that micro-batches score different numbers of labels: the
loss must be normalised by the whole batch's count, not averaged per
micro-batch. Checks that every step's loss and grad_norm, and the final
weights, agree within --tol (default 1e-5) relative, and the final weights within
1e-3 (see below why not tighter).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import colossal_testutil as util  # noqa: E402


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout)
        print("check_grad_accum: error: %s failed (%d)" % (cmd[0], p.returncode))
        sys.exit(2)
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--accum", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--opt", default="colossal-opt")
    ap.add_argument("--run", default="colossal-run")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)

    rng = np.random.default_rng(7)
    ids = rng.integers(2, a.vocab, size=(4, a.batch, a.seq), dtype=np.int64)
    labels = ids.copy()
    # Ignore a different number of labels in each row.
    for k in range(4):
        for b in range(a.batch):
            labels[k, b, : (b * 3 + k) % a.seq] = -100
    batches = os.path.join(a.workdir, "batches.safetensors")
    util.write_safetensors(batches, {"input_ids": ids, "labels": labels})

    results = {}
    for accum in (1, a.accum):
        plan = os.path.join(a.workdir, "accum%d.cplan" % accum)
        shape = "%dx%d" % (a.batch, a.seq)
        cmd = [a.opt, "compile", a.model, "-o", plan, "--shape", "input_ids=" + shape,
               "--shape", "labels=" + shape, "--lr", "1e-3"]
        if accum > 1:
            cmd += ["--grad-accum", str(accum)]
        run(cmd)
        metrics = os.path.join(a.workdir, "accum%d.jsonl" % accum)
        weights = os.path.join(a.workdir, "accum%d.weights.out.safetensors" % accum)
        run([a.run, plan, "--batches", batches, "--steps", str(a.steps),
             "--metrics", metrics, "--export-weights", weights])
        results[accum] = ([json.loads(l) for l in open(metrics)], util.read_safetensors(weights))

    (full, wf), (acc, wa) = results[1], results[a.accum]
    ok = True
    worst = 0.0
    for k, (r1, r2) in enumerate(zip(full, acc)):
        for key in ("loss", "grad_norm"):
            rel = abs(r1[key] - r2[key]) / max(abs(r1[key]), 1e-30)
            worst = max(worst, rel)
            if rel > a.tol:
                print("  FAIL step %d %s: full batch %.9g, %d micro-batches %.9g (rel %.2e)"
                      % (k, key, r1[key], a.accum, r2[key], rel))
                ok = False
    print("  %d steps: worst rel diff of loss/grad_norm %.2e (tol %.0e)" % (len(full), worst, a.tol))
    wworst = 0.0
    for name, w in wf.items():
        d = float(np.max(np.abs(w.astype(np.float64) - wa[name]))) / max(float(np.max(np.abs(w))), 1e-30)
        wworst = max(wworst, d)
    # The curve is the contract (1e-5). Weights get a looser sanity bound:
    # Adam divides by sqrt(v) + eps, so an element whose gradient is ~0 (a
    # ReLU that never fires, a bias softmax ignores) turns the last-bit
    # differences of summing micro-batches into O(lr) moves.
    print("  final weights: worst rel diff %.2e (tol 1e-3)" % wworst)
    ok &= wworst <= 1e-3
    if len(full) != a.steps or len(acc) != a.steps:
        print("  FAIL: expected %d metric rows" % a.steps)
        ok = False
    print("check_grad_accum: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
