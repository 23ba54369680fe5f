#!/usr/bin/env python3
"""Writes a --trace-shaped file whose compute-stream kernels take what a
plan report predicts for them, times a factor per kind, for testing
bench/fit_efficiency.py without a GPU.

  trace_from_report.py REPORT.json OUT.json KIND=FACTOR ... [--default F]

Each kind of the report's per_kind (device kernels only) becomes one event
on tid 0 lasting predicted_s x FACTOR (the default factor for kinds not
named), split in two events so that the fit has to sum them.
--host-factor F: the trace also names tid 3 the host stream and puts the
report's host AdamW (adamw@host) there at predicted_s x F.
"""
import json
import sys


def main():
    args = sys.argv[1:]
    default, host_factor = 1.0, None
    if "--host-factor" in args:
        at = args.index("--host-factor")
        host_factor = float(args[at + 1])
        del args[at:at + 2]
    if "--default" in args:
        at = args.index("--default")
        default = float(args[at + 1])
        del args[at:at + 2]
    report, out, factors = args[0], args[1], dict(a.split("=") for a in args[2:])
    with open(report) as f:
        per_kind = json.load(f)["per_kind"]
    events, ts = [], 0.0
    for kind, k in sorted(per_kind.items()):
        if kind.endswith("@host"):
            continue
        dur = k["predicted_s"] * float(factors.get(kind, default)) * 1e6
        for half in (0.25, 0.75):
            events.append({"ph": "X", "pid": 0, "tid": 0, "cat": kind,
                           "name": f"{kind} at x", "ts": ts, "dur": dur * half})
            ts += dur * half
        # An event of the same kind on another stream must not count.
        events.append({"ph": "X", "pid": 0, "tid": 2, "cat": kind,
                       "name": f"{kind} at y", "ts": 0, "dur": 1e9})
    if host_factor is not None:
        events.append({"ph": "M", "name": "thread_name", "pid": 0, "tid": 3,
                       "args": {"name": "stream 3 (host)"}})
        dur = per_kind["adamw@host"]["predicted_s"] * host_factor * 1e6
        events.append({"ph": "X", "pid": 0, "tid": 3, "cat": "adamw",
                       "name": "adamw at z", "ts": 0, "dur": dur})
    with open(out, "w") as f:
        json.dump({"traceEvents": events}, f)


if __name__ == "__main__":
    main()
