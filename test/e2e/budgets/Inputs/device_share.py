"""A device-resident share of the optimizer state under --policy auto.

Compiles MODEL unconstrained (--policy cuda) and all-offloaded (--policy cpu),
then under --policy auto with a --budget halfway between their device peaks:
prints the policy and where the optimizer state lives (from --report-json),
whether the plan fits, and its predicted step against the all-offloaded one.
Trains the unconstrained and the shared plans 30 steps with --check-plan and
prints whether the metrics (loss, grad_norm, lr) and exported weights are
bitwise equal. Usage: device_share.py MODEL ORACLE.safetensors WORKDIR
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "Inputs"))
import colossal_testutil as u  # noqa: E402

model, oracle, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
r = u.read_safetensors(oracle)
batches = os.path.join(work, "b.safetensors")
u.write_safetensors(batches, {"input_ids": r["input_ids"], "labels": r["labels"]})


def compile_(name, *flags):
    plan, rep = os.path.join(work, name + ".cplan"), os.path.join(work, name + ".json")
    subprocess.run(["colossal-opt", "compile", model, "-o", plan, "--report-json", rep,
                    "--quiet", *flags], check=True)
    return plan, json.load(open(rep))


def train(name, plan):
    metrics, weights = os.path.join(work, name + ".jsonl"), os.path.join(work, name + ".w.safetensors")
    p = subprocess.run(["colossal-run", plan, "--batches", batches, "--steps", "30", "--metrics",
                        metrics, "--export-weights", weights, "--check-plan"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print(name, "run failed:", p.stderr[-2000:])
        sys.exit(1)
    rows = [json.loads(line) for line in open(metrics)]
    curve = [(x["step"], x["loss"], x["grad_norm"], x["lr"]) for x in rows]
    return curve, open(weights, "rb").read()


cuda_plan, cuda = compile_("cuda", "--policy", "cuda")
_, cpu = compile_("cpu", "--policy", "cpu")
lo, hi = cpu["device"]["planned_peak_bytes"], cuda["device"]["planned_peak_bytes"]
budget = (lo + hi) // 2
share_plan, share = compile_("share", "--budget", str(budget))
s = share["optimizer_state"]
print("policy:", share["policy"])
print("optimizer state: %d weights on the device, %d offloaded" % (s["device_weights"], s["host_weights"]))
print("fits:", lo < budget < hi and share["device"]["planned_peak_bytes"] <= budget)
print("faster than all-offloaded:", share["predicted_step_s"] < cpu["predicted_step_s"])
c1, w1 = train("cuda", cuda_plan)
c2, w2 = train("share", share_plan)
print("check-plan clean; 30 steps; curve identical:", c1 == c2 and len(c1) == 30,
      "weights identical:", w1 == w2)
