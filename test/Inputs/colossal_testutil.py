#===- colossal_testutil.py - safetensors reader/writer for the tests ------===#
#
# numpy only (Debian's /usr/bin/python3 has numpy and onnx, not torch and not
# the safetensors package), so the e2e tests can write inputs for colossal-run
# and read its outputs.
#
# The safetensors layout (https://huggingface.co/docs/safetensors):
#   u64 little-endian N | N bytes of JSON header | raw tensor bytes
# The header maps each tensor name to {"dtype", "shape", "data_offsets":
# [begin, end)} (offsets relative to the first byte after the header) and may
# hold "__metadata__": {str: str}. Data is little-endian and C-ordered. We pad
# the header with spaces to a multiple of 8 bytes, as the reference writer does.
#
# numpy has no bfloat16. BF16 tensors are read as float32 (exact: bf16 is the
# top half of an f32) or, with raw_bf16=True, as their uint16 bit patterns. To
# write BF16, pass dtypes={name: "BF16"} with either a float array (rounded to
# nearest even) or a uint16 array of bit patterns.
#
# As a command:
#   colossal_testutil.py inputs-from-json FIXTURE.json OUT.safetensors [--case N]
#   colossal_testutil.py show FILE.safetensors
#   colossal_testutil.py self-test [FILE.safetensors ...]   (round trips; rewrites
#                                   the given files and compares them byte for byte)
#
#===----------------------------------------------------------------------===#

import json
import struct
import sys

import numpy as np

# safetensors dtype name -> numpy dtype (little-endian). BF16 is special-cased.
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

# numpy dtype -> safetensors dtype name, for writing without an explicit dtype.
_NAMES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64",
    np.dtype("uint32"): "U32",
    np.dtype("uint16"): "U16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}

SUPPORTED_DTYPES = tuple(_DTYPES)


class SafetensorsError(Exception):
    pass


def bf16_bits_to_f32(bits):
    """uint16 bf16 bit patterns -> float32 array (exact)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(values):
    """float array -> uint16 bf16 bit patterns, rounding to nearest even.

    NaNs stay NaNs (quiet); infinities and overflow to infinity behave as in
    PyTorch's float -> bfloat16 conversion.
    """
    f = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    u = f.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def read_safetensors_header(path):
    """Returns (header dict, data offset) of a safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SafetensorsError(f"{path}: too short for a safetensors file "
                                   f"({len(head)} bytes)")
        (n,) = struct.unpack("<Q", head)
        raw = f.read(n)
    if len(raw) != n:
        raise SafetensorsError(f"{path}: header says {n} bytes, file has {len(raw)}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: bad JSON header: {e}")
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    return header, 8 + n


def read_safetensors(path, raw_bf16=False, with_dtypes=False):
    """Reads every tensor of a safetensors file.

    Returns {name: ndarray} in file order (or, with with_dtypes=True, a pair
    (tensors, {name: safetensors dtype name})). BF16 tensors come back as
    float32, or as uint16 bit patterns with raw_bf16=True.
    """
    header, start = read_safetensors_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    tensors, dtypes = {}, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        if dtype not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor '{name}' has unsupported dtype "
                                   f"{dtype!r} (supported: {', '.join(SUPPORTED_DTYPES)})")
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        npdt = _DTYPES[dtype]
        want = int(np.prod(shape, dtype=np.int64)) * npdt.itemsize
        if begin < 0 or end < begin or end > len(data) or end - begin != want:
            raise SafetensorsError(
                f"{path}: tensor '{name}' ({dtype} {shape}) has data_offsets "
                f"[{begin}, {end}), expected {want} bytes within {len(data)}")
        arr = np.frombuffer(data, dtype=npdt, count=want // npdt.itemsize,
                            offset=begin).reshape(shape).copy()
        if dtype == "BF16" and not raw_bf16:
            arr = bf16_bits_to_f32(arr)
        tensors[name] = arr
        dtypes[name] = dtype
    return (tensors, dtypes) if with_dtypes else tensors


def write_safetensors(path, tensors, dtypes=None, metadata=None):
    """Writes {name: array-like} to a safetensors file, in dict order.

    The dtype of each tensor is its numpy dtype, unless dtypes[name] names a
    safetensors dtype: "BF16" (from floats, rounded to nearest even, or from
    uint16 bit patterns) or any other supported name (the array is cast).
    metadata is an optional {str: str} written as "__metadata__".
    """
    dtypes = dtypes or {}
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, value in tensors.items():
        arr = np.asarray(value)
        dtype = dtypes.get(name)
        if dtype is None:
            dtype = _NAMES.get(arr.dtype)
            if dtype is None:
                raise SafetensorsError(f"tensor '{name}': numpy dtype {arr.dtype} has no "
                                       f"safetensors equivalent")
        if dtype not in _DTYPES:
            raise SafetensorsError(f"tensor '{name}': unsupported dtype {dtype!r}")
        if dtype == "BF16" and arr.dtype != np.uint16:
            arr = f32_to_bf16_bits(arr)
        blob = np.ascontiguousarray(arr, dtype=_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": [int(d) for d in arr.shape],
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def _self_test(paths):
    """Round trip: every dtype, and byte-identical rewrites of the given files."""
    import os
    import tempfile
    rng = np.random.default_rng(0)
    sample = {
        "f64": rng.standard_normal((2, 3)),
        "f32": rng.standard_normal((4,)).astype(np.float32),
        "f16": rng.standard_normal((3, 1)).astype(np.float16),
        "i64": np.array([[-100, 2**40], [7, -1]], dtype=np.int64),
        "i32": np.arange(-3, 3, dtype=np.int32),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.float32(6.25),
        "empty": np.zeros((0, 5), dtype=np.float32),
    }
    bf = np.array([1.0, -2.5, 3.140625, 1e-3, np.inf, -0.0], dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        write_safetensors(p, dict(sample, bf=bf), dtypes={"bf": "BF16"},
                          metadata={"format": "pt"})
        back, names = read_safetensors(p, with_dtypes=True)
        assert names["bf"] == "BF16" and names["bool"] == "BOOL", names
        for k, v in sample.items():
            v = np.asarray(v)
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
            assert np.array_equal(back[k], v), k
        # bf16: values exactly representable round-trip, 1e-3 rounds to nearest.
        assert np.array_equal(back["bf"][[0, 1, 2, 4]], bf[[0, 1, 2, 4]])
        assert abs(back["bf"][3] - 1e-3) <= 1e-3 * 2**-8
        assert np.signbit(back["bf"][5])
        raw = read_safetensors(p, raw_bf16=True)["bf"]
        assert raw.dtype == np.uint16 and raw[0] == 0x3F80, raw
        assert f32_to_bf16_bits(np.float32(1.00390625)) == 0x3F80  # tie -> even
        assert f32_to_bf16_bits(np.float32(1.01171875)) == 0x3F82  # tie -> even
        print(f"ok: {len(sample) + 1} tensors, every dtype, round trip")
        for src in paths:
            tensors, names = read_safetensors(src, raw_bf16=True, with_dtypes=True)
            header, _ = read_safetensors_header(src)
            q = os.path.join(d, "copy.safetensors")
            write_safetensors(q, tensors, dtypes=names, metadata=header.get("__metadata__"))
            same = open(src, "rb").read() == open(q, "rb").read()
            again = read_safetensors(q, raw_bf16=True)
            assert all(np.array_equal(again[k], tensors[k]) for k in tensors), src
            print(f"ok: {os.path.basename(src)}: {len(tensors)} tensors round trip"
                  f"{', byte-identical' if same else ' (bytes differ: header layout)'}")


def inputs_from_json(json_path, out_path, case=0):
    """Writes cases[case].inputs of a model fixture's .json as safetensors;
    returns {name: ndarray}."""
    with open(json_path) as f:
        doc = json.load(f)
    spec = doc["cases"][case]["inputs"]
    tensors = {name: np.array(t["data"], dtype=np.dtype(t["dtype"])).reshape(t["shape"])
               for name, t in spec.items()}
    write_safetensors(out_path, tensors)
    return tensors


def describe(name, arr):
    """One line: name, dtype, shape and the value (scalars) or a summary."""
    arr = np.asarray(arr)
    head = f"{name}: {arr.dtype} {list(arr.shape)}"
    if arr.size == 1:
        return f"{head} = {arr.reshape(()).item()!r}"
    if arr.size == 0:
        return head
    if arr.dtype.kind in "fiu":
        a = arr.astype(np.float64)
        return f"{head} min {a.min():.6g} max {a.max():.6g} mean {a.mean():.6g}"
    return head


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="safetensors helpers for the colossal tests")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("self-test", help="round-trip every dtype, and rewrite the given "
                                         "files byte for byte")
    p.add_argument("files", nargs="*")
    p = sub.add_parser("inputs-from-json", help="write a model fixture's cases[N].inputs")
    p.add_argument("json")
    p.add_argument("out")
    p.add_argument("--case", type=int, default=0)
    p = sub.add_parser("show", help="list the tensors of a safetensors file")
    p.add_argument("file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "self-test":
            _self_test(args.files)
        elif args.cmd == "inputs-from-json":
            for name, arr in inputs_from_json(args.json, args.out, args.case).items():
                print(describe(name, arr))
        elif args.cmd == "show":
            for name, arr in read_safetensors(args.file, raw_bf16=False).items():
                print(describe(name, arr))
    except (OSError, KeyError, IndexError, ValueError, SafetensorsError) as e:
        print(f"colossal_testutil: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
