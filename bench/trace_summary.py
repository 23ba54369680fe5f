#!/usr/bin/env python3
"""Where a step's time goes, from a `colossal-run --trace` file.

  bench/trace_summary.py TRACE.json[.gz] [--top N] [--locations K]
                         [--compare OTHER.json[.gz]]

Prints, for the compute stream (tid 0), each kind of kernel (the event's
category, else the first word of its name) with its calls, total ms, share
of the stream's kernel time and mean µs a call, heaviest first (--top N
kinds, default 20); then the other streams' busy time (the copy streams
and the host stream, named from the trace's thread names). --locations K:
under each kind, its K heaviest ONNX locations with layer and node numbers
folded ("layers.17.fc1" and "layers.3.fc1" are "layers.N.fc1").
--compare OTHER: a second trace beside the first, per kind, with the
difference in ms (OTHER - TRACE): the before/after of a tuning change.

The numbers are sums of kernel durations, not the step's wall time (a step
whose streams overlap takes less; one with launch gaps takes more).
"""

import argparse
import collections
import gzip
import json
import re
import sys


def read_trace(path):
    """(events, thread names) of a trace, or exit naming the file."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt") as f:
            t = json.load(f)
    except (OSError, ValueError, EOFError) as e:
        sys.exit(f"trace_summary: {path}: {e}")
    events = t.get("traceEvents") if isinstance(t, dict) else t
    if not isinstance(events, list):
        sys.exit(f"trace_summary: {path}: no traceEvents list (colossal-run --trace writes one)")
    names = {e.get("tid"): str(e.get("args", {}).get("name", ""))
             for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
    return [e for e in events if e.get("ph") == "X"], names


def kind_of(e):
    return e.get("cat") or str(e.get("name", "")).split(" ")[0]


def fold(location):
    """Numbers that are a whole component (between dots or underscores)
    become N: layers.17.fc1 -> layers.N.fc1, node_linear_144 ->
    node_linear_N; fc1 stays."""
    return re.sub(r"(^|[._])\d+(?=$|[._])", r"\1N", location)


def summarize(events):
    """Per kind on tid 0: [calls, µs, {folded location: [calls, µs]}]; and
    µs per other tid."""
    kinds = collections.defaultdict(lambda: [0, 0.0, collections.defaultdict(lambda: [0, 0.0])])
    others = collections.defaultdict(float)
    for e in events:
        dur = float(e.get("dur", 0.0))
        if e.get("tid") not in (0, "0"):
            others[e.get("tid")] += dur
            continue
        k = kinds[kind_of(e)]
        k[0] += 1
        k[1] += dur
        loc = k[2][fold(str(e.get("args", {}).get("location", "")))]
        loc[0] += 1
        loc[1] += dur
    return kinds, others


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--locations", type=int, default=0)
    ap.add_argument("--compare")
    args = ap.parse_args()

    events, names = read_trace(args.trace)
    kinds, others = summarize(events)
    total = sum(k[1] for k in kinds.values())
    if total <= 0:
        sys.exit(f"trace_summary: {args.trace}: no kernel on the compute stream (tid 0)")
    other_kinds = None
    if args.compare:
        other_events, _ = read_trace(args.compare)
        other_kinds, _ = summarize(other_events)

    head = f"{'kind':28s} {'calls':>6s} {'ms':>9s} {'share':>7s} {'us/call':>9s}"
    if other_kinds is not None:
        head += f" {'other ms':>9s} {'delta ms':>9s}"
    print(f"compute stream: {total / 1e3:.3f} ms of kernels")
    print(head)
    order = sorted(kinds, key=lambda k: -kinds[k][1])
    if other_kinds is not None:
        order += sorted((k for k in other_kinds if k not in kinds), key=lambda k: -other_kinds[k][1])
    for kind in order[:args.top]:
        calls, us, locs = kinds.get(kind, [0, 0.0, {}])
        line = (f"{kind:28s} {calls:6d} {us / 1e3:9.3f} {100 * us / total:6.1f}% "
                f"{(us / calls if calls else 0.0):9.1f}")
        if other_kinds is not None:
            o = other_kinds.get(kind, [0, 0.0])[1]
            line += f" {o / 1e3:9.3f} {(o - us) / 1e3:+9.3f}"
        print(line)
        for loc, (n, lus) in sorted(locs.items(), key=lambda x: -x[1][1])[:args.locations]:
            print(f"    {loc or '(no location)':60s} {n:5d} {lus / 1e3:9.3f} ms {lus / n:9.1f} us")
    if other_kinds is not None:
        o_total = sum(k[1] for k in other_kinds.values())
        print(f"{'all kinds':28s} {'':6s} {total / 1e3:9.3f} {'':7s} {'':9s} "
              f"{o_total / 1e3:9.3f} {(o_total - total) / 1e3:+9.3f}")
    for tid, us in sorted(others.items(), key=lambda x: str(x[0])):
        print(f"stream {tid} {names.get(tid, '')}: {us / 1e3:.3f} ms busy")


if __name__ == "__main__":
    main()
