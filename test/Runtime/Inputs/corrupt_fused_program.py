#!/usr/bin/env python3
"""Rewrites one operand of the first fused_elementwise instruction of a
.cplan to name register 99 (a register no program defines) and re-seals
both checksums, so that only the op table's rule can catch it:

  corrupt_fused_program.py IN OUT

Prints the index of the patched instruction. Offsets are those of
docs/plan-format.md (instructions: kind u32 at 0, attribute ints begin
u32 at 24); the attribute ints of fused_elementwise start with the program
list: count, then the first record's opcode, dtype, operand 0.
"""
import struct
import sys

FUSED_ELEMENTWISE = 58


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
    src, dst = sys.argv[1], sys.argv[2]
    buf = bytearray(open(src, "rb").read())
    sec = sections(buf)
    rec, off, size = sec[6]  # instructions
    _, ints_off, _ = sec[8]  # attribute ints
    for index, r in enumerate(range(off, off + size, rec)):
        if struct.unpack_from("<I", buf, r)[0] != FUSED_ELEMENTWISE:
            continue
        begin = struct.unpack_from("<I", buf, r + 24)[0]
        struct.pack_into("<q", buf, ints_off + 8 * (begin + 3), 99)
        break
    else:
        sys.exit("no fused_elementwise instruction")
    struct.pack_into("<Q", buf, 32, fnv1a64(buf[64:]))
    struct.pack_into("<Q", buf, 56, fnv1a64(buf[:56]))
    open(dst, "wb").write(buf)
    print(f"patched instruction {index}")


if __name__ == "__main__":
    main()
