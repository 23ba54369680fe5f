#!/usr/bin/env python3
#===- reseal_plan.py - Recompute a .cplan file's size and checksums -------===#
#
# Usage: reseal_plan.py IN.cplan [OUT.cplan]   (default: rewrite IN in place)
#
# colossal-fuzz-plan-reader reseals every input before its second read (the
# header's file size at byte 16, the FNV-1a 64 checksum of bytes [64, end)
# at byte 32, then the header checksum of bytes [0, 56) at byte 56), so a
# saved crash input may carry stale checksums. Resealed the same way, it
# reproduces outside the fuzzer too: `colossal-run OUT.cplan ...`.
#
#===----------------------------------------------------------------------===#
import struct
import sys


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def reseal(data):
    data = bytearray(data)
    if len(data) < 64:
        raise SystemExit("reseal_plan.py: shorter than the 64-byte header")
    struct.pack_into("<Q", data, 16, len(data))
    struct.pack_into("<Q", data, 32, fnv1a64(data[64:]))
    struct.pack_into("<Q", data, 56, fnv1a64(data[:56]))
    return bytes(data)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__ or "usage: reseal_plan.py IN [OUT]")
    with open(sys.argv[1], "rb") as f:
        out = reseal(f.read())
    with open(sys.argv[-1], "wb") as f:
        f.write(out)
