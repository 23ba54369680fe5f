#!/usr/bin/env python3
"""Patches one field of a compiled .cplan and re-seals it (both checksums),
so that the plan still reads and validates, but lies about its memory:

  patch_plan.py IN OUT --end-early NAME   buffer NAME's liveEnd minus 1
  patch_plan.py IN OUT --grow-arena N     arena 0's sizeBytes plus N
  patch_plan.py IN OUT --instr-stream KIND:K:S
                                          the K-th instruction of op kind
                                          KIND (a number) moves to stream S
  patch_plan.py IN OUT --instr-kind KIND:K:NEW
                                          the K-th instruction of op kind
                                          KIND becomes op kind NEW
  patch_plan.py IN OUT --stream-kind S:K  stream S's StreamRecord kind is K
  patch_plan.py IN OUT --move-wait S:NEW  the first event_wait on stream 0
                                          for an event recorded on stream S
                                          moves to stream NEW
  patch_plan.py IN OUT --move-sole-wait S:NEW
                                          as --move-wait, for the first such
                                          wait that no other stream-0 wait
                                          for stream S joins before the next
                                          instruction (one that orders a read)
  patch_plan.py IN OUT --move-wait-on T:S:NEW
                                          the same for the first event_wait
                                          on stream T (3: the host stream's
                                          wait for a gradient copy of S=2)
  patch_plan.py IN OUT --move-early-wait T:S:NEW
                                          the first event_wait on stream T
                                          for an event stream S records
                                          anywhere, later in plan order too
                                          (1:3: a fetch's wait for its
                                          weight's update of the previous
                                          step, with a carried host stream)

check-plan.test uses it to show that `colossal-run --check-plan` catches
what an unchecked run does not. Offsets are those of docs/plan-format.md.
"""
import argparse
import struct
import sys


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def sections(buf):
    num, entry_bytes = struct.unpack_from("<II", buf, 24)
    out = {}
    for k in range(num):
        sid, rec, off, size = struct.unpack_from("<IIQQ", buf, 64 + k * entry_bytes)
        out[sid] = (rec, off, size)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--end-early", metavar="NAME")
    ap.add_argument("--grow-arena", type=int, metavar="N")
    ap.add_argument("--instr-stream", metavar="KIND:K:S")
    ap.add_argument("--instr-kind", metavar="KIND:K:NEW")
    ap.add_argument("--stream-kind", metavar="S:K")
    ap.add_argument("--move-wait", metavar="S:NEW")
    ap.add_argument("--move-wait-on", metavar="T:S:NEW")
    ap.add_argument("--move-sole-wait", metavar="S:NEW")
    ap.add_argument("--move-early-wait", metavar="T:S:NEW")
    a = ap.parse_args()
    buf = bytearray(open(a.input, "rb").read())
    sec = sections(buf)
    _, str_off, _ = sec[2]
    if a.end_early is not None:
        rec, off, size = sec[4]  # buffers: name StringRef at 0, liveEnd u32 at 40
        for r in range(off, off + size, rec):
            s, n = struct.unpack_from("<II", buf, r)
            if bytes(buf[str_off + s:str_off + s + n]).decode() == a.end_early:
                live_start = struct.unpack_from("<I", buf, r + 12)[0]
                live_end = struct.unpack_from("<I", buf, r + 40)[0]
                if live_end <= live_start:
                    sys.exit(f"buffer '{a.end_early}' is live [{live_start}, {live_end}]: cannot end earlier")
                struct.pack_into("<I", buf, r + 40, live_end - 1)
                break
        else:
            sys.exit(f"no buffer '{a.end_early}'")
    if a.grow_arena is not None:
        rec, off, size = sec[3]  # arenas: sizeBytes u64 at 8
        struct.pack_into("<Q", buf, off + 8, struct.unpack_from("<Q", buf, off + 8)[0] + a.grow_arena)
    for spec, field in ((a.instr_stream, 4), (a.instr_kind, 0)):
        if spec is None:
            continue
        kind, k, value = (int(x) for x in spec.split(":"))
        rec, off, size = sec[6]  # instructions: kind u32 at 0, stream u32 at 4
        seen = 0
        for r in range(off, off + size, rec):
            if struct.unpack_from("<I", buf, r)[0] == kind:
                if seen == k:
                    struct.pack_into("<I", buf, r + field, value)
                    break
                seen += 1
        else:
            sys.exit(f"no instruction #{k} of kind {kind}")
    if a.move_wait is not None or a.move_wait_on is not None:
        if a.move_wait is not None:
            waiter = 0
            src, new = (int(x) for x in a.move_wait.split(":"))
        else:
            waiter, src, new = (int(x) for x in a.move_wait_on.split(":"))
        rec, off, size = sec[6]
        _, ints_off, _ = sec[8]  # attr-ints: an event op's one int is its event
        recorded = {}
        for r in range(off, off + size, rec):
            kind, stream = struct.unpack_from("<II", buf, r)
            if kind not in (100, 101):
                continue
            event = struct.unpack_from("<q", buf, ints_off + 8 * struct.unpack_from("<I", buf, r + 24)[0])[0]
            if kind == 100:
                recorded[event] = stream
            elif stream == waiter and recorded.get(event) == src:
                struct.pack_into("<I", buf, r + 4, new)
                break
        else:
            sys.exit(f"no stream-{waiter} wait for an event of stream {src}")
    if a.move_early_wait is not None:
        waiter, src, new = (int(x) for x in a.move_early_wait.split(":"))
        rec, off, size = sec[6]
        _, ints_off, _ = sec[8]
        def event_of(r):
            return struct.unpack_from("<q", buf, ints_off + 8 * struct.unpack_from("<I", buf, r + 24)[0])[0]
        recorders = {}
        for r in range(off, off + size, rec):
            kind, stream = struct.unpack_from("<II", buf, r)
            if kind == 100:
                recorders.setdefault(event_of(r), set()).add(stream)
        for r in range(off, off + size, rec):
            kind, stream = struct.unpack_from("<II", buf, r)
            if kind == 101 and stream == waiter and src in recorders.get(event_of(r), ()):
                struct.pack_into("<I", buf, r + 4, new)
                break
        else:
            sys.exit(f"no stream-{waiter} wait for an event stream {src} records")
    if a.move_sole_wait is not None:
        src, new = (int(x) for x in a.move_sole_wait.split(":"))
        rec, off, size = sec[6]
        _, ints_off, _ = sec[8]
        recorded = {}
        run = []  # the current run of stream-0 waits for stream-src events
        for r in range(off, off + size, rec):
            kind, stream = struct.unpack_from("<II", buf, r)
            if kind in (100, 101):
                event = struct.unpack_from("<q", buf, ints_off + 8 * struct.unpack_from("<I", buf, r + 24)[0])[0]
                if kind == 100:
                    recorded[event] = stream
                elif stream == 0 and recorded.get(event) == src:
                    run.append(r)
                continue
            if stream != 0:
                continue
            if len(run) == 1:
                struct.pack_into("<I", buf, run[0] + 4, new)
                break
            run = []
        else:
            sys.exit(f"no sole stream-0 wait for an event of stream {src}")
    if a.stream_kind is not None:
        stream, kind = (int(x) for x in a.stream_kind.split(":"))
        rec, off, size = sec[13]  # streams: kind u8 at 0
        if stream * rec >= size:
            sys.exit(f"no stream {stream}")
        buf[off + stream * rec] = kind
    struct.pack_into("<Q", buf, 32, fnv1a64(buf[64:]))
    struct.pack_into("<Q", buf, 56, fnv1a64(buf[:56]))
    open(a.output, "wb").write(buf)


if __name__ == "__main__":
    main()
