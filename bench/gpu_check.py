#!/usr/bin/env python3
#===- gpu_check.py - The CUDA backend against the CPU and PyTorch ---------===#
#
# The two halves of bench/gpu_check.sh (which says how to run them):
#
#   gpu_check.py prepare DIR    here, where colossal-opt runs: compiles every
#       plan the GPU machine needs into DIR (colossal-opt links libLLVM and
#       does not run there) and writes their inputs:
#         - each training oracle in test/data/oracles (opt, gpt2, llama x
#           dynamo, torchscript) with the oracle's AdamW hyper-parameters, as
#           check_training.py compiles it, in fp32 and in bf16
#           (--precision bf16); its batches;
#         - each forward fixture in test/data/models (--forward-only, --shape
#           from the case when the export is dynamic), as check_fixture.py
#           compiles it; its case-0 inputs.
#         - for each dynamo oracle in fp32, two budgeted plans (--budget at
#           50% and 25% of its unconstrained device peak, from --report-json,
#           as test/e2e/budgets), trained like the others;
#       Weights files are not kept: each holds exactly ONNX initializers of
#       its model (checked), so the GPU machine rebuilds it from the .onnx
#       (which travels with the repository) and checks its digest; every
#       run names it with --weights. DIR/manifest.json lists the runs.
#
#   gpu_check.py run DIR BIN    on the GPU machine (numpy only):
#       training: every oracle plan trains 30 steps with --device cpu and
#           --device cuda (BIN/colossal-run); the curves must agree within
#           1e-3 relative at every step (fp32) or 2e-2 (bf16), and are also
#           printed against PyTorch's losses; one plan runs again with
#           --check-plan, again with COLOSSAL_CUDA_SYNC=1 (same losses
#           both times), and with a token id past the vocabulary (one error
#           line naming the gather, exit 1);
#       budgets: each budgeted plan on cuda under --check-plan (touched
#           bytes equal the planned arena: measured peak = planned peak) with
#           COLOSSAL_CUDA_REPORT_MALLOC=1 (the backend's cudaMalloc bytes:
#           arena + fixed scratch and workspace);
#       forward: every fixture runs on cuda and on cpu; the loss must be
#           within 1e-5 relative of PyTorch's (and of the CPU's), the logits'
#           sum, max |x| and first 8 values within 1e-4 (check_fixture.py's
#           tolerances), and the GPU logits within 1e-4 x max|logits| of the
#           CPU's everywhere.
#       Every measured number is printed; the exit status is 1 if a check
#       failed, 2 if a tool failed.
#
#===----------------------------------------------------------------------===#
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test", "Inputs"))
import colossal_testutil as util  # noqa: E402

ARCHS = ["opt", "gpt2", "llama"]
EXPORTERS = ["dynamo", "torchscript"]
STEPS = 30
FP32_TOL, BF16_TOL = 1e-3, 2e-2
BUDGETS = [0.5, 0.25]  # fractions of the unconstrained device peak
LOSS_RTOL, LOGITS_TOL = 1e-5, 1e-4
# GPU_CHECK_DRY_RUN=1 runs the "cuda" half on the CPU too: a rehearsal of
# the whole script on a machine without a GPU (every comparison is then
# exact).
GPU = "cpu" if os.environ.get("GPU_CHECK_DRY_RUN") else "cuda"


def log(msg=""):
    print(msg, flush=True)


def sh(cmd, what, env=None):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env, timeout=180)
    except subprocess.TimeoutExpired:
        log("  %s TIMED OUT after 180 s: %s" % (what, " ".join(cmd)))
        return 124, "", 180.0
    dt = time.monotonic() - t0
    if p.returncode != 0:
        log("  %s FAILED (exit %d, %.2f s): %s" % (what, p.returncode, dt, " ".join(cmd)))
        for line in p.stdout.splitlines()[-15:]:
            log("    | " + line)
    return p.returncode, p.stdout, dt


#===----------------------------------------------------------------------===#
# prepare (here)
#===----------------------------------------------------------------------===#

def tensor_digest(tensors):
    """sha256 over the names, dtypes, shapes and bytes of `tensors`, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = tensors[name]
        h.update(("%s %s %s\n" % (name, a.dtype.str, list(a.shape))).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def onnx_initializers(model, names):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(model)
    inits = {i.name: i for i in m.graph.initializer}
    return {n: numpy_helper.to_array(inits[n]) for n in names if n in inits}


def weights_from_onnx(out, plan_path, model):
    """The plan's weights file holds exactly ONNX initializers of the model:
    checked here, then the file is dropped (the .onnx files travel with the
    repository; the GPU machine rebuilds the file from them, so the weights
    do not count twice against the 64 MiB a device call carries)."""
    src = plan_path[: -len(".cplan")] + ".weights.safetensors"
    ours = util.read_safetensors(src)
    theirs = onnx_initializers(model, list(ours))
    for name, a in ours.items():
        b = theirs.get(name)
        if b is None or b.dtype != a.dtype or b.shape != a.shape or not (a == b).all():
            raise SystemExit("gpu_check: %s: weight %s is not the ONNX initializer"
                             % (src, name))
    os.remove(src)
    return {"onnx": os.path.relpath(model, REPO), "weight_names": sorted(ours),
            "weights_digest": tensor_digest(ours)}


def prepare(out, opt):
    import check_fixture as cf  # needs python3-onnx (Debian's /usr/bin/python3)
    for sub in ("train", "forward"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    manifest = {"training": [], "forward": []}
    oracles = os.path.join(REPO, "test", "data", "oracles")
    for arch in ARCHS:
        meta = json.load(open(os.path.join(oracles, arch + "-train.oracle.json")))
        ref = util.read_safetensors(os.path.join(oracles, arch + "-train.oracle.safetensors"))
        batches = os.path.join("train", arch + ".batches.safetensors")
        util.write_safetensors(os.path.join(out, batches),
                               {"input_ids": ref["input_ids"], "labels": ref["labels"]})
        hp = meta["hyper_parameters"]
        for exporter in EXPORTERS:
            model = os.path.join(oracles, "%s-train.%s.onnx" % (arch, exporter))
            for precision in ("fp32", "bf16"):
                name = "%s.%s.%s" % (arch, exporter, precision)
                plan = os.path.join("train", name + ".cplan")
                cmd = [opt, "compile", model, "-o", os.path.join(out, plan), "--quiet",
                       "--optimizer", "adamw", "--lr", repr(hp["lr"]),
                       "--betas", "%r,%r" % tuple(hp["betas"]), "--eps", repr(hp["eps"]),
                       "--weight-decay", repr(hp["weight_decay"]), "--precision", precision]
                pad = meta["model_config"].get("pad_token_id")
                if arch == "opt" and pad is not None:
                    table = ("model.model.decoder.embed_tokens.weight" if exporter == "torchscript"
                             else "model.lm_head.weight")
                    cmd += ["--padding-idx", "%s=%d" % (table, pad)]
                report = os.path.join(out, "train", name + ".report.json")
                rc, _, _ = sh(cmd + ["--report-json", report], "compile " + name)
                if rc != 0:
                    return 2
                entry = {"name": name, "plan": plan, "precision": precision,
                         "batches": batches, "torch_losses": meta["losses"][:STEPS]}
                entry.update(weights_from_onnx(out, os.path.join(out, plan), model))
                manifest["training"].append(entry)
                log("  compiled " + name)
                if exporter != "dynamo" or precision != "fp32":
                    continue
                # Budgeted plans (test/e2e/budgets): 50% and 25% of the
                # unconstrained device peak, so that buffers move between the
                # device and pinned host memory while the plan trains.
                peak = json.load(open(report))["device"]["planned_peak_bytes"]
                for frac in BUDGETS:
                    bname = "%s.budget%d" % (name, round(frac * 100))
                    bplan = os.path.join("train", bname + ".cplan")
                    brep = os.path.join(out, "train", bname + ".report.json")
                    bcmd = list(cmd)
                    bcmd[bcmd.index("-o") + 1] = os.path.join(out, bplan)
                    rc, _, _ = sh(bcmd + ["--budget", str(int(peak * frac)), "--report-json",
                                          brep], "compile " + bname)
                    if rc != 0:
                        return 2
                    r = json.load(open(brep))
                    b = dict(entry, name=bname, plan=bplan, budget=int(peak * frac),
                             planned_device_bytes=r["device"]["planned_peak_bytes"],
                             planned_host_bytes=r["host"]["planned_peak_bytes"])
                    b.update(weights_from_onnx(out, os.path.join(out, bplan), model))
                    manifest["training"].append(b)
                    log("  compiled %s (budget %d B of peak %d B: device %d B, host %d B)"
                        % (bname, int(peak * frac), peak, b["planned_device_bytes"],
                           b["planned_host_bytes"]))
    models = os.path.join(REPO, "test", "data", "models")
    for fname in sorted(os.listdir(models)):
        if not fname.endswith(".onnx"):
            continue
        model = os.path.join(models, fname)
        _, _, inputs, ref = cf.load_fixture(model, 0)
        shape_args = []
        ginputs = cf.graph_inputs(model)
        if any(d is None for _, dims in ginputs for d in dims):
            for iname, _ in ginputs:
                shape_args += ["--shape", iname + "=" + "x".join(str(s) for s in inputs[iname].shape)]
        name = fname[: -len(".onnx")]
        plan = os.path.join("forward", name + ".cplan")
        rc, _, _ = sh([opt, "compile", model, "-o", os.path.join(out, plan), "--forward-only",
                       "--quiet"] + shape_args, "compile " + name)
        if rc != 0:
            return 2
        in_path = os.path.join("forward", name + ".inputs.safetensors")
        util.write_safetensors(os.path.join(out, in_path), inputs)
        entry = {"name": name, "plan": plan, "inputs": in_path,
                 "torch_loss": ref["loss"], "logits_shape": ref["logits_shape"],
                 "logits_stats": ref["logits_stats"]}
        entry.update(weights_from_onnx(out, os.path.join(out, plan), model))
        manifest["forward"].append(entry)
        log("  compiled " + name)
    json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    log("prepare: %d training plans, %d forward plans, %.1f MB in %s"
        % (len(manifest["training"]), len(manifest["forward"]), total / 1e6, out))
    return 0


#===----------------------------------------------------------------------===#
# run (on the GPU machine)
#===----------------------------------------------------------------------===#

def read_metrics(path):
    return [json.loads(line) for line in open(path)]


def run_training(d, run_bin, manifest, work):
    failures, broken = [], []
    log("== training: %d steps, --device cpu vs --device cuda (fp32 tol %.0e, bf16 %.0e)"
        % (STEPS, FP32_TOL, BF16_TOL))
    log("%-26s %11s %11s %11s %9s %9s %11s %11s %9s %9s  %s" % (
        "plan", "loss0 cpu", "loss29 cpu", "loss29 cuda", "max rel", "gn rel",
        "max rel pt", "cpu tok/s", "cuda tok/s", "speedup", "verdict"))
    for case in manifest["training"]:
        rows = {}
        for device in ("cpu", "cuda"):
            metrics = os.path.join(work, "%s.%s.jsonl" % (case["name"], device))
            rc, outp, dt = sh([run_bin, os.path.join(d, case["plan"]),
                               "--device", GPU if device == "cuda" else device,
                               "--batches", os.path.join(d, case["batches"]),
                               "--weights", case["weights_path"],
                               "--steps", str(STEPS), "--metrics", metrics],
                              "train %s on %s" % (case["name"], device))
            if rc != 0:
                broken.append("%s on %s" % (case["name"], device))
                break
            rows[device] = read_metrics(metrics)
        if len(rows) != 2:
            continue
        cpu, gpu = rows["cpu"], rows["cuda"]
        tol = FP32_TOL if case["precision"] == "fp32" else BF16_TOL
        rel = [abs(g["loss"] - c["loss"]) / abs(c["loss"]) for c, g in zip(cpu, gpu)]
        gn = [abs(g["grad_norm"] - c["grad_norm"]) / abs(c["grad_norm"])
              for c, g in zip(cpu, gpu) if c.get("grad_norm") and g.get("grad_norm")]
        torch = case["torch_losses"]
        rel_pt = [abs(g["loss"] - t) / abs(t) for g, t in zip(gpu, torch)]
        # Throughput over steps 1.. (step 0 pays for cuBLASLt's first calls).
        def tps(r):
            steady = r[1:] or r
            return sum(x["tokens"] for x in steady) / sum(x["step_s"] for x in steady)
        ok = len(cpu) == len(gpu) == STEPS and max(rel) <= tol
        log("%-26s %11.6f %11.6f %11.6f %9.2e %9.2e %11.2e %11.0f %9.0f %8.1fx  %s" % (
            case["name"], cpu[0]["loss"], cpu[-1]["loss"], gpu[-1]["loss"], max(rel),
            max(gn) if gn else float("nan"), max(rel_pt), tps(cpu), tps(gpu),
            tps(gpu) / tps(cpu), "ok" if ok else "FAIL"))
        if not ok:
            k = max(range(len(rel)), key=lambda i: rel[i])
            failures.append("%s: step %d loss cpu %.7f cuda %.7f (rel %.2e > %.0e)"
                            % (case["name"], k, cpu[k]["loss"], gpu[k]["loss"], rel[k], tol))
    # --check-plan on the GPU: poisoning through cudaMemset, live operands,
    # the measured peak; same losses as the unchecked run.
    case = manifest["training"][0]
    rc, outp, _ = sh([run_bin, os.path.join(d, case["plan"]), "--device", GPU,
                      "--check-plan", "--batches", os.path.join(d, case["batches"]),
                      "--weights", case["weights_path"], "--steps", "4",
                      "--metrics", os.path.join(work, "checkplan.jsonl")],
                     "--check-plan on cuda")
    if rc != 0:
        failures.append("--check-plan on cuda failed for " + case["name"])
    else:
        checked = read_metrics(os.path.join(work, "checkplan.jsonl"))
        plain = read_metrics(os.path.join(work, "%s.cuda.jsonl" % case["name"]))[:4]
        same = [c["loss"] == p["loss"] for c, p in zip(checked, plain)]
        for line in outp.splitlines():
            if line.startswith("check-plan:"):
                log("  " + line)
        log("  --check-plan on cuda, %s, 4 steps: losses %s the unchecked run's"
            % (case["name"], "equal" if all(same) else "DIFFER from"))
        if not all(same):
            failures.append("--check-plan on cuda changed the losses of " + case["name"])
    # COLOSSAL_CUDA_SYNC=1: a synchronisation after every instruction (to
    # name the instruction of an asynchronous fault) changes no number.
    env = dict(os.environ, COLOSSAL_CUDA_SYNC="1")
    rc, _, dt = sh([run_bin, os.path.join(d, case["plan"]), "--device", GPU,
                    "--batches", os.path.join(d, case["batches"]),
                    "--weights", case["weights_path"], "--steps", "4",
                    "--metrics", os.path.join(work, "sync.jsonl")],
                   "COLOSSAL_CUDA_SYNC=1 on cuda", env=env)
    if rc != 0:
        failures.append("COLOSSAL_CUDA_SYNC=1 run failed for " + case["name"])
    else:
        synced = read_metrics(os.path.join(work, "sync.jsonl"))
        plain = read_metrics(os.path.join(work, "%s.cuda.jsonl" % case["name"]))[:4]
        same = all(a["loss"] == b["loss"] for a, b in zip(synced, plain))
        log("  COLOSSAL_CUDA_SYNC=1 on cuda, %s, 4 steps: losses %s the asynchronous run's "
            "(%.1f ms/step synchronised)" % (case["name"], "equal" if same else "DIFFER from",
                                            1e3 * sum(r["step_s"] for r in synced[1:]) / 3))
        if not same:
            failures.append("COLOSSAL_CUDA_SYNC=1 changed the losses of " + case["name"])
    # A token id past the vocabulary: the embedding gather finds it on the
    # GPU and the run fails with one line naming the instruction (exit 1).
    import numpy as np
    batches = util.read_safetensors(os.path.join(d, case["batches"]))
    ids = np.array(batches["input_ids"])
    ids[0, 1, 2] = 100000
    bad = os.path.join(work, "bad.batches.safetensors")
    util.write_safetensors(bad, {"input_ids": ids, "labels": batches["labels"]})
    p = subprocess.run([run_bin, os.path.join(d, case["plan"]), "--device", GPU,
                        "--batches", bad, "--weights", case["weights_path"], "--steps", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    ok = p.returncode == 1 and "gather" in last and "index 100000 out of range" in last
    log("  bad token on cuda: exit %d: %s  %s" % (p.returncode, last, "ok" if ok else "FAIL"))
    if not ok:
        failures.append("a bad token on cuda did not fail cleanly: exit %d, %s"
                        % (p.returncode, last))
    return failures, broken


def run_budget_memory(d, run_bin, manifest, work):
    """Budgeted plans on cuda under --check-plan: the bytes touched equal the
    planned arena (colossal-run exits 1 otherwise), and the backend's
    cudaMalloc bytes are the arena plus its fixed scratch and workspace: the
    arena is the only allocation that grows with the plan."""
    failures = []
    log("== budgeted plans on cuda: measured peak vs planned, cudaMalloc bytes")
    for case in manifest["training"]:
        if "budget" not in case:
            continue
        env = dict(os.environ, COLOSSAL_CUDA_REPORT_MALLOC="1")
        rc, outp, _ = sh([run_bin, os.path.join(d, case["plan"]), "--device", GPU,
                          "--check-plan", "--batches", os.path.join(d, case["batches"]),
                          "--weights", case["weights_path"], "--steps", "3"],
                         "--check-plan " + case["name"], env=env)
        lines = [l.strip() for l in outp.splitlines()
                 if l.startswith("check-plan:") or "cudaMalloc" in l]
        for line in lines:
            log("  %s: %s" % (case["name"], line))
        ok = rc == 0 and any("check-plan: device" in l for l in lines)
        log("  %s: budget %d B, planned device %d B, host %d B: %s" % (
            case["name"], case["budget"], case["planned_device_bytes"],
            case["planned_host_bytes"], "ok" if ok else "FAIL"))
        if not ok:
            failures.append("%s: --check-plan on cuda: exit %d" % (case["name"], rc))
    return failures


def run_forward(d, run_bin, manifest, work):
    failures, broken = [], []
    log("== forward fixtures on cuda vs PyTorch and vs cpu (loss tol %.0e, logits %.0e)"
        % (LOSS_RTOL, LOGITS_TOL))
    log("%-34s %12s %12s %9s %9s %9s %9s  %s" % (
        "fixture", "torch loss", "cuda loss", "rel pt", "rel cpu", "sum err", "logit err",
        "verdict"))
    import numpy as np
    for case in manifest["forward"]:
        outs = {}
        for device in ("cuda", "cpu"):
            path = os.path.join(work, "%s.%s.safetensors" % (case["name"], device))
            rc, _, _ = sh([run_bin, os.path.join(d, case["plan"]),
                           "--device", GPU if device == "cuda" else device,
                           "--inputs", os.path.join(d, case["inputs"]),
                           "--weights", case["weights_path"],
                           "--outputs", path], "run %s on %s" % (case["name"], device))
            if rc != 0:
                broken.append("%s on %s" % (case["name"], device))
                break
            outs[device] = util.read_safetensors(path)
        if len(outs) != 2:
            continue
        gpu, cpu = outs["cuda"], outs["cpu"]
        loss = float(np.asarray(gpu["loss"], np.float64).reshape(()))
        loss_cpu = float(np.asarray(cpu["loss"], np.float64).reshape(()))
        want = case["torch_loss"]
        rel_pt = abs(loss - want) / abs(want)
        rel_cpu = abs(loss - loss_cpu) / abs(loss_cpu)
        logits = np.asarray(gpu["logits"], np.float64)
        logits_cpu = np.asarray(cpu["logits"], np.float64)
        stats = case["logits_stats"]
        flat = logits.reshape(-1)
        errs = []
        sum_err = abs(float(flat.sum()) - float(stats["sum"]))
        errs.append(sum_err <= LOGITS_TOL * max(1.0, abs(float(stats["sum"]))))
        max_err = abs(float(np.abs(flat).max()) - float(stats["abs_max"]))
        errs.append(max_err <= LOGITS_TOL * max(1.0, float(stats["abs_max"])))
        first = np.array([float(x) for x in stats["first8"]])
        errs.append(float(np.abs(flat[:len(first)] - first).max())
                    <= LOGITS_TOL * max(1.0, float(stats["abs_max"])))
        scale = max(1.0, float(np.abs(logits_cpu).max()))
        logit_err = float(np.abs(logits - logits_cpu).max()) / scale
        ok = (list(logits.shape) == case["logits_shape"] and np.isfinite(logits).all()
              and rel_pt <= LOSS_RTOL and rel_cpu <= LOSS_RTOL and all(errs)
              and logit_err <= LOGITS_TOL)
        log("%-34s %12.7f %12.7f %9.2e %9.2e %9.2e %9.2e  %s" % (
            case["name"], want, loss, rel_pt, rel_cpu, sum_err, logit_err,
            "ok" if ok else "FAIL"))
        if not ok:
            failures.append("%s: loss %.7f vs torch %.7f (rel %.2e), vs cpu rel %.2e, "
                            "logits stats %s, logits vs cpu %.2e"
                            % (case["name"], loss, want, rel_pt, rel_cpu, errs, logit_err))
    return failures, broken


def materialise_weights(manifest, work):
    """Writes each run's weights file from its .onnx (see weights_from_onnx)
    and checks it against the digest taken at prepare time."""
    done = {}
    for case in manifest["training"] + manifest["forward"]:
        key = case["weights_digest"]
        if key not in done:
            tensors = onnx_initializers(os.path.join(REPO, case["onnx"]), case["weight_names"])
            if tensor_digest(tensors) != key:
                raise SystemExit("gpu_check: weights of %s from %s differ from the prepared "
                                 "ones" % (case["name"], case["onnx"]))
            path = os.path.join(work, "weights." + key + ".safetensors")
            util.write_safetensors(path, tensors)
            done[key] = path
        case["weights_path"] = done[key]
    log("weights: %d files rebuilt from the ONNX initializers, digests match"
        % len(done))


def run(d, bin_dir):
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    run_bin = os.path.join(bin_dir, "colossal-run")
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "gpu_check_work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    materialise_weights(manifest, work)
    f1, b1 = run_training(d, run_bin, manifest, work)
    f1 += run_budget_memory(d, run_bin, manifest, work)
    f2, b2 = run_forward(d, run_bin, manifest, work)
    for f in f1 + f2:
        log("gpu_check: FAIL: " + f)
    for b in b1 + b2:
        log("gpu_check: BROKEN: " + b)
    log("gpu_check: training %d plans, forward %d fixtures: %s" % (
        len(manifest["training"]), len(manifest["forward"]),
        "PASS" if not (f1 or f2 or b1 or b2) else "FAIL"))
    return 2 if (b1 or b2) else (1 if (f1 or f2) else 0)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "prepare":
        opt = sys.argv[3] if len(sys.argv) > 3 else os.path.join(REPO, "build", "bin", "colossal-opt")
        return prepare(sys.argv[2], opt)
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        return run(sys.argv[2], sys.argv[3])
    print("usage: gpu_check.py prepare DIR [COLOSSAL_OPT] | run DIR BIN", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
