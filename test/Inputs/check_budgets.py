#!/usr/bin/env python3
"""A plan compiled under a budget fits it and trains exactly as without one.

For an oracle export: compile without a budget and read the plan's device
peak from --report-json; compile again at each --fraction of that peak
(--policy auto: the optimizer state and master weights go to host memory and
idle device buffers are parked there between uses until the plan fits);
check each report's device peak is within its budget; train every plan 30
steps with colossal-run --check-plan (live ranges, poisoned dead buffers,
measured peak = planned) and check that loss, grad_norm and lr at every step
and the final weights are bitwise identical to the unconstrained run's.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import colossal_testutil as util  # noqa: E402


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout[-3000:])
        print("check_budgets: error: %s exited %d" % (" ".join(cmd[:2]), p.returncode))
        sys.exit(2)
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--fraction", type=float, action="append", default=[])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--expect-remat", action="store_true",
                    help="every budgeted plan must recompute at least one buffer "
                         "(colossal-rematerialize's recompute kernels in --emit-plan)")
    ap.add_argument("--policy", choices=["auto", "cpu"], default="auto",
                    help="the budgeted plans' --policy (the unconstrained one "
                         "keeps everything on the device)")
    ap.add_argument("--expect-host-stream", action="store_true",
                    help="every budgeted plan runs its updates on the host stream "
                         "(adamw kernels on stream 3 in --emit-plan) and the cost "
                         "model's schedule overlaps its streams (makespan < the "
                         "sum of the streams' busy times)")
    a = ap.parse_args()
    fractions = a.fraction or [0.5, 0.25]
    os.makedirs(a.workdir, exist_ok=True)
    stem = a.model[: a.model.index("-train.")] + "-train"
    ref = util.read_safetensors(stem + ".oracle.safetensors")
    meta = json.load(open(stem + ".oracle.json"))
    batches = os.path.join(a.workdir, "batches.safetensors")
    util.write_safetensors(batches, {"input_ids": ref["input_ids"], "labels": ref["labels"]})
    extra = []
    if meta["arch"] == "opt":
        table = ("model.model.decoder.embed_tokens.weight" if ".torchscript." in a.model
                 else "model.lm_head.weight")
        extra = ["--padding-idx", "%s=1" % table]

    def compile_and_train(tag, budget):
        plan = os.path.join(a.workdir, tag + ".cplan")
        report = os.path.join(a.workdir, tag + ".json")
        cmd = ["colossal-opt", "compile", a.model, "-o", plan, "--quiet",
               "--report-json", report] + extra
        if budget:
            cmd += ["--budget", str(budget)]
            if a.policy != "auto":
                cmd += ["--policy", a.policy]
        mlir = os.path.join(a.workdir, tag + ".plan.mlir")
        if a.expect_remat or a.expect_host_stream:
            cmd += ["--emit-plan", mlir]
        run(cmd)
        r = json.load(open(report))
        if a.expect_remat:
            r["recomputed"] = open(mlir).read().count("{colossal.recompute}")
        if a.expect_host_stream:
            text = open(mlir).read()
            r["host_updates"] = sum(1 for l in text.splitlines()
                                    if 'cplan.kernel "adamw"' in l and l.rstrip().endswith("stream(3)"))
            r["device_updates"] = sum(1 for l in text.splitlines()
                                      if 'cplan.kernel "adamw"' in l and l.rstrip().endswith("stream(0)"))
        metrics = os.path.join(a.workdir, tag + ".jsonl")
        weights = os.path.join(a.workdir, tag + ".weights.out.safetensors")
        out = run(["colossal-run", plan, "--batches", batches, "--steps", str(a.steps),
                   "--metrics", metrics, "--export-weights", weights, "--check-plan"])
        checks = [l for l in out.splitlines() if l.startswith("check-plan:")]
        rows = [[row[k] for k in ("step", "loss", "grad_norm", "lr")]
                for row in map(json.loads, open(metrics))]
        return r, checks, rows, open(weights, "rb").read()

    base, checks, rows0, w0 = compile_and_train("unconstrained", None)
    peak = base["device"]["planned_peak_bytes"]
    print("unconstrained: device peak %d B, host %d B" % (peak, base["host"]["planned_peak_bytes"]))
    ok = all(c.endswith(": ok") for c in checks)
    for f in fractions:
        budget = int(peak * f)
        r, checks, rows, w = compile_and_train("budget%g" % f, budget)
        fits = r["device"]["planned_peak_bytes"] <= budget
        clean = all(c.endswith(": ok") for c in checks) and len(checks) == 2
        same = rows == rows0 and w == w0
        print("%3d%% budget %d B: device peak %d B (%s), host %d B, moved %d B up / %d B down;"
              " check-plan %s; curve and weights %s"
              % (round(f * 100), budget, r["device"]["planned_peak_bytes"],
                 "fits" if fits else "OVER", r["host"]["planned_peak_bytes"],
                 r["bytes_moved"]["h2d"], r["bytes_moved"]["d2h"],
                 "clean" if clean else "FAILED", "identical" if same else "DIFFER"))
        ok &= fits and clean and same
        if a.expect_remat:
            print("     recomputed %d buffers; policy %s" % (r["recomputed"], r["policy"]))
            ok &= r["recomputed"] > 0
        if a.expect_host_stream:
            busy = sum(r["stream_busy_s"])
            makespan = r["time_s"]["makespan"]
            print("     %d updates on the host stream, %d on stream 0; %d streams: makespan %.3g s"
                  " < busy %.3g s: %s; bottleneck %s"
                  % (r["host_updates"], r["device_updates"], len(r["stream_busy_s"]), makespan,
                     busy, "overlapped" if makespan < busy else "NOT overlapped",
                     r["bottleneck"]))
            ok &= r["host_updates"] > 0 and r["device_updates"] == 0 and makespan < busy
    print("check_budgets: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
