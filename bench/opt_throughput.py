#!/usr/bin/env python3
#===- opt_throughput.py - Real-size OPT training steps on the CUDA backend -===#
#
# Two halves, as bench/gpu_check.sh (docs/cuda.md has the numbers):
#
#   opt_throughput.py prepare DIR [COLOSSAL_OPT]   here, where colossal-opt runs:
#       compiles OPT-125m and OPT-350m from /work/shared/models
#       (opt-*-noweights.dynamo.dynamic.onnx) at --shape input_ids=8x1024
#       --shape labels=8x1024 --precision bf16, once unconstrained and once
#       with --policy cpu (optimizer states and master weights in pinned host
#       memory), into DIR with colossal-run (BIN from $BUILD_CUDA/bin) and a
#       manifest. A plan larger than MAX_PLAN_MB is dropped and reported.
#   opt_throughput.py run DIR                       on the GPU machine:
#       writes a random uint16 token stream, trains every plan STEPS steps
#       with `colossal-run --device cuda --init random --data ... --metrics`,
#       and prints tokens/s over steps 1.. (step 0 pays for the first cuBLASLt
#       calls and page faults), the step time and the final loss.
#
#===----------------------------------------------------------------------===#
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODELS = os.environ.get("OPT_MODELS", "/work/shared/models")
SIZES = ["125m", "350m"]
SHAPE = ["--shape", "input_ids=8x1024", "--shape", "labels=8x1024"]
STEPS = int(os.environ.get("OPT_STEPS", "6"))
MAX_PLAN_MB = 20


def log(msg=""):
    print(msg, flush=True)


def prepare(out, opt):
    os.makedirs(out, exist_ok=True)
    build = os.environ.get("BUILD_CUDA", os.path.join(REPO, "build-c"))
    os.makedirs(os.path.join(out, "bin"), exist_ok=True)
    shutil.copy(os.path.join(build, "bin", "colossal-run"), os.path.join(out, "bin"))
    manifest = []
    for size in SIZES:
        model = os.path.join(MODELS, "opt-%s-noweights.dynamo.dynamic.onnx" % size)
        for policy in ("none", "cpu"):
            name = "opt-%s.bf16%s" % (size, "" if policy == "none" else ".policy-cpu")
            plan = os.path.join(out, name + ".cplan")
            cmd = [opt, "compile", model, "-o", plan, "--quiet", "--precision", "bf16"] + SHAPE
            if policy != "none":
                cmd += ["--policy", policy]
            t0 = time.monotonic()
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            dt = time.monotonic() - t0
            if p.returncode != 0:
                log("  %s: compile FAILED (%d): %s" % (name, p.returncode, p.stdout.strip()[-300:]))
                continue
            for f in os.listdir(out):  # no weights travel: --init random
                if f.startswith(name) and f.endswith(".safetensors"):
                    os.remove(os.path.join(out, f))
            mb = os.path.getsize(plan) / 1e6
            if mb > MAX_PLAN_MB:
                log("  %s: %.1f MB plan, over %d MB: dropped" % (name, mb, MAX_PLAN_MB))
                os.remove(plan)
                continue
            log("  %s: compiled in %.1f s, %.2f MB" % (name, dt, mb))
            manifest.append({"name": name, "plan": os.path.basename(plan), "policy": policy,
                             "command": " ".join(os.path.basename(c) if c == opt else c
                                                 for c in cmd[1:])})
    json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
    return 0


def run(d):
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    run_bin = os.path.join(d, "bin", "colossal-run")
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "opt_throughput")
    os.makedirs(work, exist_ok=True)
    tokens = os.path.join(work, "tokens.bin")
    rng = random.Random(0)
    n = 8 * 1025 * (STEPS + 2)
    with open(tokens, "wb") as f:  # OPT's vocabulary is 50272
        f.write(struct.pack("<%dH" % n, *[rng.randrange(50000) for _ in range(n)]))
    log("== OPT training throughput on cuda: bf16, batch 8 x seq 1024, %d steps, --init random"
        % STEPS)
    log("%-28s %10s %10s %10s %10s  %s" % ("plan", "tok/s", "ms/step", "loss 0", "loss last",
                                          "verdict"))
    rows, failed = [], []
    for case in manifest:
        metrics = os.path.join(work, case["name"] + ".jsonl")
        cmd = [run_bin, os.path.join(d, case["plan"]), "--device", "cuda", "--init", "random",
               "--data", tokens, "--steps", str(STEPS), "--seed", "1", "--metrics", metrics]
        if os.environ.get("OPT_TRACE") and case["policy"] == "cpu":
            cmd += ["--trace", os.path.join(os.environ.get("OUT", work),
                                            case["name"] + ".trace.json"), "--trace-step", "2"]
        env = dict(os.environ, COLOSSAL_CUDA_REPORT_MALLOC="1")
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=env, timeout=240)
        if p.returncode != 0:
            log("%-28s FAILED (exit %d): %s" % (case["name"], p.returncode,
                                                p.stdout.strip().splitlines()[-1:]))
            failed.append(case["name"])
            continue
        for line in p.stdout.splitlines():
            if "cudaMalloc" in line:
                log("  " + line)
        m = [json.loads(x) for x in open(metrics)]
        steady = m[1:] or m
        tps = sum(r["tokens"] for r in steady) / sum(r["step_s"] for r in steady)
        ms = 1e3 * sum(r["step_s"] for r in steady) / len(steady)
        ok = all(r["loss"] == r["loss"] for r in m)  # no NaN
        log("%-28s %10.0f %10.1f %10.4f %10.4f  %s" % (case["name"], tps, ms, m[0]["loss"],
                                                     m[-1]["loss"], "ok" if ok else "NaN"))
        rows.append({"name": case["name"], "tokens_per_s": tps, "ms_per_step": ms,
                     "losses": [r["loss"] for r in m], "command": case["command"]})
        if not ok:
            failed.append(case["name"])
    if os.environ.get("OUT"):
        json.dump(rows, open(os.path.join(os.environ["OUT"], "opt_throughput.json"), "w"),
                  indent=1)
    return 1 if failed else 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "prepare":
        opt = sys.argv[3] if len(sys.argv) > 3 else os.path.join(REPO, "build", "bin",
                                                                 "colossal-opt")
        return prepare(sys.argv[2], opt)
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        return run(sys.argv[2])
    print("usage: opt_throughput.py prepare DIR [COLOSSAL_OPT] | run DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
