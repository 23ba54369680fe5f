#!/usr/bin/env python3
#===- count_params.py - The parameter count `colossal-opt compile` must print -===#
#
# Usage: count_params.py MODEL.onnx [MODEL.onnx ...]
#
# Prints, for each graph, the `parameters:` line of the compile summary as the
# tests in test/e2e/noweights expect it, computed independently with Python's
# onnx (graphs are read with load_external_data=False: only names, dtypes and
# dims are needed, so the weight-free graphs work).
#
# Definition. The parameters of a graph are its floating-point initializers
# (FLOAT, FLOAT16, BFLOAT16, DOUBLE) of at least 2 elements, except those the
# exporter marks as not trainable. Single floats (`lifted_tensor_0`, the
# mask fill; folded scalars such as `val_48`) are constants that the compiler
# folds into the plan. A dynamo export puts metadata
# `pkg.torch.export.graph_signature.InputSpec.kind` = PARAMETER | BUFFER |
# CONSTANT_TENSOR on each initializer's ValueInfo; BUFFER and CONSTANT_TENSOR
# are not parameters (e.g. LLaMA's `rotary_emb.inv_freq`). That field
# (ValueInfoProto field 4, metadata_props, IR 10) is newer than onnx 1.12, so
# it is read from the protobuf's unknown fields here. Integer initializers
# (shape constants) and Constant nodes are not parameters. On every
# PyTorch-faithful export (the oracles, the dynamo optimize=False graphs)
# this is PyTorch's own count; constant-folded exports hold what they hold.
#
#   parameters: <N> (<human>) in <K> tensors, <bytes> bytes
#   N = elements, K = tensors, bytes = N weighted by element size;
#   human = N / 1e9 with two decimals and suffix B, or N / 1e6 or N / 1e3
#   with one decimal and suffix M or K (the largest unit with N >= 1 of it),
#   or N itself below 1000: 6.66B, 125.2M, 141.2K, 512.
#
#===----------------------------------------------------------------------===#

import sys

import numpy as np
import onnx
from google.protobuf.internal import decoder

KIND_KEY = "pkg.torch.export.graph_signature.InputSpec.kind"
FLOAT_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8,
}


def value_info_metadata(vi):
    """metadata_props (field 4) of a ValueInfoProto, which onnx 1.12 does not know."""
    raw, i, out = vi.SerializeToString(), 0, {}
    while i < len(raw):
        tag, i = decoder._DecodeVarint(raw, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = decoder._DecodeVarint(raw, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = decoder._DecodeVarint(raw, i)
            if field == 4:
                e = onnx.StringStringEntryProto()
                e.ParseFromString(raw[i:i + n])
                out[e.key] = e.value
            i += n
        else:
            raise ValueError(f"ValueInfo '{vi.name}': unexpected wire type {wire}")
    return out


def human(n):
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def count(path):
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    infos = {vi.name: vi for vi in list(g.input) + list(g.value_info)}
    n = k = nbytes = 0
    skipped = []
    for t in g.initializer:
        if t.data_type not in FLOAT_BYTES:
            continue
        kind = value_info_metadata(infos[t.name]).get(KIND_KEY) if t.name in infos else None
        elems = int(np.prod(t.dims, dtype=np.int64))
        if kind in ("BUFFER", "CONSTANT_TENSOR"):
            skipped.append(f"{t.name} ({kind})")
            continue
        if elems < 2:
            skipped.append(f"{t.name} ({elems} element{'' if elems == 1 else 's'}: a constant)")
            continue
        n, k, nbytes = n + elems, k + 1, nbytes + elems * FLOAT_BYTES[t.data_type]
    return n, k, nbytes, skipped


def main(paths):
    for p in paths:
        n, k, nbytes, skipped = count(p)
        print(f"{p}: parameters: {n} ({human(n)}) in {k} tensors, {nbytes} bytes"
              + (f"  [not parameters: {', '.join(skipped)}]" if skipped else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
