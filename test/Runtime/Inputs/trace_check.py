#!/usr/bin/env python3
"""Checks the structure of a `colossal-run --trace` file against its plan
(trace.test): no times are hard-coded, only what must hold for any run.

  trace_check.py TRACE PLAN --steps K [K ...] [--sequential]

- strict JSON with a traceEvents list; a process_name and one thread_name
  per plan stream ("stream S (compute|copy|host)"), tid = S;
- one complete ("X") slice per instruction of the plan per traced step
  (the plan's instruction count is read from its section table, not from
  colossal-run), each named "<op>" or "<op> at <location>", with cat = op,
  args instr/step/program/location, ts and dur >= 0, bytes on identities;
- the steps traced are exactly the ones given;
- --sequential (a synchronous backend, the CPU): on each track the slices of
  a step are in instruction order and do not overlap.
Prints one summary line; exits 1 with the first violation.
"""
import argparse
import json
import struct
import sys


def instr_count(plan_path):
    buf = open(plan_path, "rb").read()
    num, entry_bytes = struct.unpack_from("<II", buf, 24)
    for k in range(num):
        sid, rec, off, size = struct.unpack_from("<IIQQ", buf, 64 + k * entry_bytes)
        if sid == 6:  # SectionId::kInstrs
            return size // rec
    return 0


def fail(msg):
    print("trace_check: FAIL: " + msg)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("plan")
    ap.add_argument("--steps", type=int, nargs="+", required=True)
    ap.add_argument("--sequential", action="store_true")
    a = ap.parse_args()
    n = instr_count(a.plan)
    if n == 0:
        fail("no instructions in " + a.plan)
    doc = json.load(open(a.trace), parse_constant=lambda c: fail("non-JSON constant " + c))
    events = doc.get("traceEvents")
    if not isinstance(events, list):
        fail("no traceEvents list")
    meta = [e for e in events if e.get("ph") == "M"]
    slices = [e for e in events if e.get("ph") == "X"]
    if len(meta) + len(slices) != len(events):
        fail("events other than M and X")
    if not any(e["name"] == "process_name" for e in meta):
        fail("no process_name")
    tracks = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    for tid, name in tracks.items():
        kind = name.split("(")[-1].rstrip(")")
        if name != "stream %d (%s)" % (tid, kind) or kind not in ("compute", "copy", "host"):
            fail("track %d is named %r" % (tid, name))
    by_step = {}
    for e in slices:
        args = e["args"]
        op = e["cat"]
        want = op if not args["location"] else op + " at " + args["location"]
        if e["name"] != want:
            fail("slice %r, expected %r" % (e["name"], want))
        if e["tid"] not in tracks:
            fail("slice on unnamed track %r" % e["tid"])
        if not (e["ts"] >= 0 and e["dur"] >= 0):
            fail("negative time in %r" % e)
        if not (0 <= args["instr"] < n) or not args["program"]:
            fail("bad instr/program in %r" % e)
        if op == "identity" and not isinstance(args.get("bytes"), int):
            fail("a copy without bytes: %r" % e)
        by_step.setdefault(args["step"], []).append(e)
    if sorted(by_step) != sorted(a.steps):
        fail("steps traced %s, expected %s" % (sorted(by_step), sorted(a.steps)))
    for step, evs in by_step.items():
        instrs = sorted(e["args"]["instr"] for e in evs)
        if instrs != list(range(n)):
            fail("step %d: %d slices for %d instructions (or repeats)" % (step, len(instrs), n))
        if a.sequential:
            for tid in tracks:
                track = [e for e in evs if e["tid"] == tid]
                order = sorted(track, key=lambda e: e["ts"])
                if [e["args"]["instr"] for e in order] != sorted(e["args"]["instr"] for e in track):
                    fail("step %d track %d: slices not in instruction order" % (step, tid))
                for x, y in zip(order, order[1:]):
                    if x["ts"] + x["dur"] > y["ts"] + 1e-3:
                        fail("step %d: instr %d overlaps %d" % (step, x["args"]["instr"], y["args"]["instr"]))
    print("trace_check: ok: %d tracks (%s), %d slices, %d instructions x steps %s"
          % (len(tracks), ", ".join(tracks[t] for t in sorted(tracks)), len(slices), n,
             sorted(by_step)))


if __name__ == "__main__":
    main()
