#!/usr/bin/env python3
"""Fits the cost model's kernel efficiencies to measured traces.

The cost model (lib/Analysis/CostModel.cpp) times a device kernel at its
roofline, max(bytes / HBM, flops / GEMM rate), divided by the profile's
`kernel_efficiency` for its kind. This script measures those efficiencies:

  bench/fit_efficiency.py --base devices/h200-calibrated.json \\
      --pair REPORT.json TRACE.json.gz [--pair ...] \\
      [--exclude attention,attention_grad] [--set attention=0.55] \\
      [--check REPORT.json TRACE.json.gz ...] -o devices/h200-fitted.json

REPORT.json is `colossal-opt compile ... --report-json` of the plan that ran,
compiled with --device-profile BASE (which must hold no kernel_efficiency:
the report's per_kind times are then rooflines); TRACE is `colossal-run
PLAN --trace FILE --trace-step K` of that plan on the GPU. For each kind of
kernel on the compute stream (trace tid 0), efficiency = predicted roofline
seconds / measured seconds, summed over every pair, capped at 1 (a kernel
faster than its roofline means the model's bytes or rate are off, not a
better kernel). --set gives a kind's efficiency from another measurement
(e.g. bench/attention_check.cpp's TFLOP/s over the profile's rate), named in
the notes. --check prints, for other (report, trace) pairs, the predicted
time per kind with the fitted efficiencies against the measured: the fit's
validation on plans it did not see.

Writes BASE with `kernel_efficiency` and a note naming the traces.
"""

import argparse
import gzip
import json
import sys
import time


def read_json(path, what):
    """The JSON in `path`, or exit 2 naming the file and what is wrong."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt") as f:
            return json.load(f)
    except (OSError, ValueError, EOFError) as e:
        sys.exit(f"fit_efficiency: {what} {path}: {e}")


def load_trace(path):
    t = read_json(path, "trace")
    events = t.get("traceEvents") if isinstance(t, dict) else t
    if not isinstance(events, list):
        sys.exit(f"fit_efficiency: trace {path}: no traceEvents list (colossal-run --trace writes one)")
    measured = {}
    for e in events:
        if e.get("ph") != "X" or e.get("tid") not in (0, "0"):
            continue
        kind = e.get("cat") or e["name"].split(" ")[0]
        measured[kind] = measured.get(kind, 0.0) + e["dur"] * 1e-6
    if not measured:
        sys.exit(f"fit_efficiency: {path}: no compute-stream (tid 0) events")
    return measured


def load_report(path):
    r = read_json(path, "report")
    if not isinstance(r, dict) or "per_kind" not in r:
        sys.exit(f"fit_efficiency: {path}: no per_kind (compile with a colossal-opt "
                 "that writes it)")
    return {k: v["predicted_s"] for k, v in r["per_kind"].items() if not k.endswith("@host")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--pair", nargs=2, action="append", required=True,
                    metavar=("REPORT", "TRACE"))
    ap.add_argument("--check", nargs=2, action="append", default=[],
                    metavar=("REPORT", "TRACE"))
    ap.add_argument("--exclude", default="")
    ap.add_argument("--set", action="append", default=[], metavar="KIND=EFF")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()

    profile = read_json(args.base, "base profile")
    if profile.get("kernel_efficiency"):
        sys.exit("fit_efficiency: the base profile already has kernel_efficiency: "
                 "fit against rooflines (a profile without it)")
    exclude = {k for k in args.exclude.split(",") if k}
    predicted, measured = {}, {}
    for report, trace in args.pair:
        p, m = load_report(report), load_trace(trace)
        for kind, s in p.items():
            if kind in m and kind not in exclude:
                predicted[kind] = predicted.get(kind, 0.0) + s
                measured[kind] = measured.get(kind, 0.0) + m[kind]
    eff = {}
    print(f"{'kind':28s} {'roofline ms':>12s} {'measured ms':>12s} {'efficiency':>10s}")
    for kind in sorted(predicted, key=lambda k: -measured[k]):
        e = min(1.0, predicted[kind] / measured[kind]) if measured[kind] > 0 else 1.0
        eff[kind] = round(e, 4)
        print(f"{kind:28s} {predicted[kind] * 1e3:12.2f} {measured[kind] * 1e3:12.2f} {e:10.3f}")
    for item in args.set:
        kind, _, value = item.partition("=")
        eff[kind] = float(value)
        print(f"{kind:28s} set to {float(value):.3f}")

    for report, trace in args.check:
        p, m = load_report(report), load_trace(trace)
        tot_p = tot_m = 0.0
        print(f"check {report}:")
        for kind in sorted(p, key=lambda k: -m.get(k, 0.0)):
            if kind not in m or kind in exclude:
                continue
            pred = p[kind] / eff.get(kind, 1.0)
            tot_p += pred
            tot_m += m[kind]
            print(f"  {kind:26s} predicted {pred * 1e3:9.2f} ms  measured {m[kind] * 1e3:9.2f} ms"
                  f"  ({pred / m[kind]:.2f})")
        print(f"  all kinds above: predicted {tot_p * 1e3:.1f} ms, measured {tot_m * 1e3:.1f} ms"
              f" ({tot_p / tot_m:.2f})")

    profile["kernel_efficiency"] = dict(sorted(eff.items()))
    traces = ", ".join(t for _, t in args.pair)
    profile.setdefault("notes", []).append(
        f"kernel_efficiency: bench/fit_efficiency.py on {time.strftime('%Y-%m-%d')}, roofline time "
        f"over measured time per kind, from {traces}" +
        (f"; excluded: {', '.join(sorted(exclude))}" if exclude else ""))
    profile["notes"] += args.note
    with open(args.out, "w") as f:
        json.dump(profile, f, indent=2)
        f.write("\n")
    print(f"fit_efficiency: wrote {args.out}")


if __name__ == "__main__":
    main()
