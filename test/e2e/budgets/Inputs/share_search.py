"""The device-resident share search of --policy auto against the room-only share.

Compiles MODEL all-offloaded (--policy cpu) and unconstrained (--policy
cuda) without a budget; BUDGET is either `frac=F`, F of the way from the
former's device peak to the latter's, or a size (`3.6GiB`, `2200000`: then
the all-offloaded plan may have to recompute or park activations too). Then compiles all-offloaded and --policy auto under that budget: the
room the all-offloaded plan leaves is budget less 1% less its peak. The room-only share (what --policy auto kept before the search) is
the search's first size, which its progress line names "(the room the
all-offloaded plan leaves)". Prints:
  - the policy, and how many sizes were tried (at most 8);
  - whether the kept share is larger than the room (so the room alone could
    not have paid for it);
  - whether it is predicted faster than the room-only share and than
    offloading everything;
  - whether the plan fits the budget.
With --train BATCHES: trains the unconstrained and the auto plans 30 steps
with --check-plan and prints whether the metrics (loss, grad_norm, lr) and
exported weights are bitwise equal.

Usage: share_search.py MODEL WORKDIR BUDGET [--train ORACLE] [-- COMPILE FLAGS]
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "Inputs"))
import colossal_testutil as u  # noqa: E402

args = sys.argv[1:]
extra = []
if "--" in args:
    extra = args[args.index("--") + 1:]
    args = args[:args.index("--")]
model, work, budget_arg = args[0], args[1], args[2]
oracle = args[args.index("--train") + 1] if "--train" in args else None
os.makedirs(work, exist_ok=True)


def compile_(name, *flags):
    plan, rep = os.path.join(work, name + ".cplan"), os.path.join(work, name + ".json")
    p = subprocess.run(["colossal-opt", "compile", model, "-o", plan, "--report-json", rep,
                        *extra, *flags], capture_output=True, text=True)
    if p.returncode != 0:
        print(name, "compile failed:", p.stderr[-2000:])
        sys.exit(1)
    return plan, json.load(open(rep)), p.stderr


_, free_cpu, _ = compile_("free-cpu", "--policy", "cpu")
cuda_plan, cuda, _ = compile_("cuda", "--policy", "cuda")
lo, hi = free_cpu["device"]["planned_peak_bytes"], cuda["device"]["planned_peak_bytes"]
if budget_arg.startswith("frac="):
    budget = lo + int((hi - lo) * float(budget_arg[5:]))
else:
    units = {"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10}
    unit = next((k for k in units if budget_arg.endswith(k)), None)
    budget = int(float(budget_arg[:-3]) * units[unit]) if unit else int(budget_arg)
# The all-offloaded plan under the same budget (it parks and recomputes
# activations too): the room is what it leaves below budget less 1%.
_, cpu, _ = compile_("cpu", "--policy", "cpu", "--budget", str(budget))
room = budget - budget // 100 - cpu["device"]["planned_peak_bytes"]
auto_plan, auto, log = compile_("auto", "--budget", str(budget))

m = re.search(r"share 1: .*\(the room the all-offloaded plan leaves\): predicted step ([0-9.]+) ms", log)
room_step_s = float(m.group(1)) / 1e3 if m else None
tried = re.search(r"([0-9]+) sizes? tried", auto["policy"])
s = auto["optimizer_state"]
print("policy:", auto["policy"].split(":")[0])
print("budget:", budget, "bytes; the all-offloaded plan leaves", room)
print("sizes tried at most 8:", tried is not None and 1 <= int(tried.group(1)) <= 8)
print("room-only share compiled first:", room_step_s is not None)
print("share larger than the room:", s["device_bytes"] > max(room, 0), "(%d weights on the device, %d offloaded)"
      % (s["device_weights"], s["host_weights"]))
print("faster than the room-only share:", room_step_s is not None and auto["predicted_step_s"] < room_step_s)
print("faster than all-offloaded:", auto["predicted_step_s"] < cpu["predicted_step_s"])
print("fits:", auto["device"]["planned_peak_bytes"] <= budget)

if oracle:
    r = u.read_safetensors(oracle)
    batches = os.path.join(work, "b.safetensors")
    u.write_safetensors(batches, {"input_ids": r["input_ids"], "labels": r["labels"]})

    def train(name, plan):
        metrics = os.path.join(work, name + ".jsonl")
        weights = os.path.join(work, name + ".w.safetensors")
        p = subprocess.run(["colossal-run", plan, "--batches", batches, "--steps", "30",
                            "--metrics", metrics, "--export-weights", weights, "--check-plan"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(name, "run failed:", p.stderr[-2000:])
            sys.exit(1)
        rows = [json.loads(line) for line in open(metrics)]
        return [(x["step"], x["loss"], x["grad_norm"], x["lr"]) for x in rows], open(weights, "rb").read()

    c1, w1 = train("cuda", cuda_plan)
    c2, w2 = train("auto", auto_plan)
    print("check-plan clean; 30 steps; curve identical:", c1 == c2 and len(c1) == 30,
          "weights identical:", w1 == w2)
