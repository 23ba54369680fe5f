#!/usr/bin/env python3
"""Every model fixture compiles as a training step and its loss falls.

For each test/data/models/*.onnx (tiny OPT, GPT-2, LLaMA, BERT, Qwen2,
Mistral, GPT-NeoX, Phi; both exporters; static and dynamic), compile a
training plan (default AdamW, lr 1e-3) at the fixture's recorded inputs'
shape, train --steps steps on that one batch, and check that every loss is
finite and the last is below the first by at least --min-drop. These are
inference-style exports (constant folding may merge equal initializers, which
training then ties), so this checks that the whole path runs, not PyTorch's
numbers (test/e2e/training/*-train.* does that on the oracles).
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import colossal_testutil as util  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", help="folder of fixtures")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--min-drop", type=float, default=0.5)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    failures = 0
    paths = sorted(glob.glob(os.path.join(a.models, "*.onnx")))
    for path in paths:
        name = os.path.basename(path)[: -len(".onnx")]
        case = json.load(open(path[: -len(".onnx")] + ".json"))["cases"][0]["inputs"]
        arrays = {k: np.array(v["data"] if isinstance(v, dict) else v, dtype=np.int64)
                  for k, v in case.items()}
        batches = os.path.join(a.workdir, name + ".batches.safetensors")
        util.write_safetensors(batches, {k: v[None] for k, v in arrays.items()})
        plan = os.path.join(a.workdir, name + ".cplan")
        cmd = ["colossal-opt", "compile", path, "-o", plan, "--quiet"]
        for k, v in arrays.items():
            cmd += ["--shape", "%s=%s" % (k, "x".join(str(d) for d in v.shape))]
        metrics = os.path.join(a.workdir, name + ".jsonl")
        ok = True
        for step in (cmd, ["colossal-run", plan, "--batches", batches, "--steps",
                           str(a.steps), "--metrics", metrics]):
            p = subprocess.run(step, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                print("FAIL %s: %s exited %d\n%s" % (name, step[0], p.returncode, p.stdout[-2000:]))
                ok = False
                break
        if ok:
            losses = [json.loads(l)["loss"] for l in open(metrics)]
            ok = (len(losses) == a.steps and all(math.isfinite(x) for x in losses)
                  and losses[-1] < losses[0] - a.min_drop)
            print("%s %s: %s" % ("ok  " if ok else "FAIL", name,
                                 " ".join("%.3f" % x for x in losses)))
        failures += not ok
    print("check_trains: %d of %d fixtures train, %d failed" % (len(paths) - failures, len(paths), failures))
    return 1 if failures or not paths else 0


if __name__ == "__main__":
    sys.exit(main())
