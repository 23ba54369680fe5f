#!/usr/bin/env python3
"""Writes a synthetic bench/opt_bench.py directory and result rows, for
testing `opt_bench.py report` without a GPU.

  opt_bench_fixture.py DIR

DIR/manifest.json: one OPT-125m plan, unconstrained, predicted 40 ms a step,
planned peak 2 GiB, and one OPT-1.3b plan under 24 GiB that did not fit
(an error row). DIR/plans/opt-125m.json: 125M parameters;
DIR/plans/opt-1.3b.json: 1.3B.
DIR/colossal.jsonl: that plan measured at 50 ms a step (163,840 tokens/s),
its arena allocated at exactly the planned peak. DIR/pytorch-a.jsonl and
DIR/pytorch-b.jsonl: PyTorch's unconstrained row measured twice, 100,000
and 200,000 tokens/s (the report shows the faster); PyTorch's OPT-1.3b
under a 24 GiB cap, 9,000 tokens/s plain (a point of the plot) and 7,000
offloaded.
"""
import json
import os
import sys

GIB = 2 ** 30


def main():
    d = sys.argv[1]
    os.makedirs(os.path.join(d, "plans"), exist_ok=True)
    for size, n in (("125m", 125_000_000), ("1.3b", 1_300_000_000)):
        with open(os.path.join(d, "plans", f"opt-{size}.json"), "w") as f:
            json.dump({"num_params": n}, f)
    report = {"predicted_step_s": 0.040, "device": {"planned_peak_bytes": 2 * GIB}}
    manifest = {"commit": "abc1234", "prepared": "2026-01-01 00:00:00 UTC",
                "rows": [{"name": "opt-125m-free", "size": "125m", "budget": "free",
                          "budget_bytes": None, "plan": "plans/opt-125m-free.cplan",
                          "report": report},
                         {"name": "opt-1.3b-24GiB", "size": "1.3b", "budget": "24GiB",
                          "budget_bytes": 24 * GIB,
                          "error": "colossal-opt: error: the plan needs 30 GiB"}]}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    machine = {"gpu": "Test GPU", "cpus": 1, "date": "2026-01-01 00:00:00 UTC", "env": {}}
    col = {"framework": "colossal", "name": "opt-125m-free", "size": "125m", "budget": "free",
           "status": "ok", "median_step_s": 0.050, "tokens_per_s": 8192 / 0.050,
           "malloc_arena_bytes": 2 * GIB, "sampled_peak_bytes": 3 * GIB, "machine": machine}
    with open(os.path.join(d, "colossal.jsonl"), "w") as f:
        f.write(json.dumps(col) + "\n")
    for name, tps in (("pytorch-a", 100_000.0), ("pytorch-b", 200_000.0)):
        row = {"framework": "pytorch", "size": "125m", "mode": "plain", "mem_cap_gib": None,
               "status": "ok", "tokens_per_s": tps, "peak_bytes": 4 * GIB, "machine": machine}
        with open(os.path.join(d, name + ".jsonl"), "w") as f:
            f.write(json.dumps(row) + "\n")
    plain = {"framework": "pytorch", "size": "1.3b", "mode": "plain", "mem_cap_gib": 24.0,
             "status": "ok", "tokens_per_s": 9000.0, "peak_bytes": 23 * GIB, "machine": machine}
    offload = dict(plain, mode="offload", tokens_per_s=7000.0, peak_bytes=20 * GIB)
    with open(os.path.join(d, "pytorch-a.jsonl"), "a") as f:
        f.write(json.dumps(plain) + "\n" + json.dumps(offload) + "\n")


if __name__ == "__main__":
    main()
