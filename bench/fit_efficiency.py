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
import os
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
    """Seconds per kind on the compute stream (tid 0), and of AdamW on the
    host stream (the thread the trace names "(host)"; None where the trace
    has no host stream)."""
    t = read_json(path, "trace")
    events = t.get("traceEvents") if isinstance(t, dict) else t
    if not isinstance(events, list):
        sys.exit(f"fit_efficiency: trace {path}: no traceEvents list (colossal-run --trace writes one)")
    host_tids = {e.get("tid") for e in events
                 if e.get("ph") == "M" and e.get("name") == "thread_name"
                 and "(host)" in str(e.get("args", {}).get("name", ""))}
    measured, host_adamw = {}, None
    for e in events:
        if e.get("ph") != "X":
            continue
        kind = e.get("cat") or e["name"].split(" ")[0]
        if e.get("tid") in host_tids:
            if kind == "adamw":
                host_adamw = (host_adamw or 0.0) + e["dur"] * 1e-6
            continue
        if e.get("tid") not in (0, "0"):
            continue
        measured[kind] = measured.get(kind, 0.0) + e["dur"] * 1e-6
    if not measured:
        sys.exit(f"fit_efficiency: {path}: no compute-stream (tid 0) events")
    return measured, host_adamw


def report_profile(report, path):
    """The device profile a report was compiled with (its recorded path,
    relative to the working directory or the repository), or exit naming
    it."""
    recorded = (report.get("profile") or {}).get("path", "")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (recorded, os.path.join(root, recorded)):
        if recorded and os.path.isfile(candidate):
            return read_json(candidate, "profile of report")
    sys.exit(f"fit_efficiency: {path}: its profile '{recorded}' cannot be read (the host "
             "AdamW's predicted time is at that profile's rate)")


def load_report(path, base=None):
    """Predicted seconds per device kind, and the host AdamW's (None where
    the plan updates nothing on the host). With `base`, the host time is
    restated at the base profile's AdamW rate: a report compiled with
    another profile (a fitted one) predicted it at that profile's rate."""
    r = read_json(path, "report")
    if not isinstance(r, dict) or "per_kind" not in r:
        sys.exit(f"fit_efficiency: {path}: no per_kind (compile with a colossal-opt "
                 "that writes it)")
    per_kind = r["per_kind"]
    host = per_kind.get("adamw@host", {}).get("predicted_s")
    if host and base is not None:
        used = report_profile(r, path)
        for key in ("cpu_adamw_params_per_s", "host_memory_bytes_per_s"):
            if used.get(key) and base.get(key) and used[key] != base[key]:
                host *= used[key] / base[key]
                break
    return {k: v["predicted_s"] for k, v in per_kind.items() if not k.endswith("@host")}, host


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--pair", nargs=2, action="append", required=True,
                    metavar=("REPORT", "TRACE"))
    ap.add_argument("--host-pair", nargs=2, action="append", default=[],
                    metavar=("REPORT", "TRACE"),
                    help="a pair used for the host AdamW rate only (its report may come "
                         "from any readable profile: its host time is restated at the base's rate)")
    ap.add_argument("--check", nargs=2, action="append", default=[],
                    metavar=("REPORT", "TRACE"))
    ap.add_argument("--exclude", default="")
    ap.add_argument("--set", action="append", default=[], metavar="KIND=EFF")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--no-host", action="store_true",
                    help="keep the base profile's CPU AdamW rate")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()

    profile = read_json(args.base, "base profile")
    if profile.get("kernel_efficiency"):
        sys.exit("fit_efficiency: the base profile already has kernel_efficiency: "
                 "fit against rooflines (a profile without it)")
    exclude = {k for k in args.exclude.split(",") if k}
    predicted, measured = {}, {}
    host_predicted = host_measured = 0.0
    for report, trace in args.pair:
        (p, hp), (m, hm) = load_report(report, profile), load_trace(trace)
        if hp and hm:
            host_predicted += hp
            host_measured += hm
        for kind, s in p.items():
            if kind in m and kind not in exclude:
                predicted[kind] = predicted.get(kind, 0.0) + s
                measured[kind] = measured.get(kind, 0.0) + m[kind]
    for report, trace in args.host_pair:
        (_, hp), (_, hm) = load_report(report, profile), load_trace(trace)
        if not (hp and hm):
            sys.exit(f"fit_efficiency: --host-pair {report} {trace}: no host AdamW in "
                     f"{'the report' if not hp else 'the trace'}")
        host_predicted += hp
        host_measured += hm
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

    # The host AdamW's rate as it runs in a step, beside the copies and the
    # GPU (sharing the host's memory bandwidth with the PCIe transfers),
    # not alone as --calibrate times it: the profile's rate scaled by
    # predicted over measured, uncapped.
    host_note = None
    if host_measured > 0 and not args.no_host:
        scale = host_predicted / host_measured
        base_rate = profile["cpu_adamw_params_per_s"]
        profile["cpu_adamw_params_per_s"] = round(base_rate * scale, -6)
        if "cpu_bytes_per_s" in profile:
            profile["cpu_bytes_per_s"] = round(profile["cpu_bytes_per_s"] * scale, -6)
        # With the host's memory shared with the copies (the model times
        # host kernels by it), that bandwidth is what the trace measures.
        if profile.get("host_memory_bytes_per_s"):
            profile["host_memory_bytes_per_s"] = round(
                profile["host_memory_bytes_per_s"] * scale, -6)
        host_note = (f"cpu_adamw_params_per_s: fitted from the host stream's AdamW, "
                     f"{host_measured * 1e3:.1f} ms measured against {host_predicted * 1e3:.1f} ms "
                     f"predicted at {base_rate / 1e9:.2f} G params/s: "
                     f"{profile['cpu_adamw_params_per_s'] / 1e9:.2f} G params/s in a step")
        print(f"host adamw: predicted {host_predicted * 1e3:.2f} ms at {base_rate / 1e9:.2f} G params/s, "
              f"measured {host_measured * 1e3:.2f} ms: {profile['cpu_adamw_params_per_s'] / 1e9:.2f} G params/s")

    for report, trace in args.check:
        (p, _), (m, _) = load_report(report), load_trace(trace)
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
    traces = ", ".join(t for _, t in args.pair + args.host_pair)
    profile.setdefault("notes", []).append(
        f"kernel_efficiency: bench/fit_efficiency.py on {time.strftime('%Y-%m-%d')}, roofline time "
        f"over measured time per kind, from {traces}" +
        (f"; excluded: {', '.join(sorted(exclude))}" if exclude else ""))
    if host_note:
        profile["notes"].append(host_note)
    profile["notes"] += args.note
    with open(args.out, "w") as f:
        json.dump(profile, f, indent=2)
        f.write("\n")
    print(f"fit_efficiency: wrote {args.out}")


if __name__ == "__main__":
    main()
