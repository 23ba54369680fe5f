#!/usr/bin/env bash
#===- make_corpus.sh - Regenerate the fuzzers' seed corpora ---------------===#
#
# Usage: fuzz/make_corpus.sh [COLOSSAL_OPT]   (default: build/bin/colossal-opt)
#
# Writes the committed seeds: fuzz/corpus/onnx (tiny models from
# test/Inputs/make_onnx.py, a few hundred bytes each), fuzz/corpus/plan
# (those models compiled with `colossal-opt compile --forward-only`,
# plus a training plan of a two-layer model with a loss) and
# fuzz/corpus/safetensors (the compiled weights plus hand-written files that
# cover every dtype, metadata, escapes and empty tensors). Seeds stay small:
# libFuzzer mutates small inputs faster, and -max_len follows the largest.
#
#===----------------------------------------------------------------------===#
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
opt="${1:-$root/build/bin/colossal-opt}"
py=/usr/bin/python3 # Debian's python3 has onnx 1.12 and numpy
corpus="$root/fuzz/corpus"
if [[ ! -x "$opt" ]]; then
  echo "make_corpus.sh: $opt not found; build first (ninja -C build)" >&2
  exit 1
fi

# One model per op family (the plan seeds are compiled from the first list),
# and models the importer must reject.
plan_cases="add-broadcast matmul-2d matmul-batched gemm layer-norm gather
  gathernd softmax concat sce-mean cumsum slice-steps pad-reflect where
  transpose reduce-sum cast split-input expand"
onnx_cases="$plan_cases max relu layer-norm-axis reshape flatten squeeze
  unsqueeze split-to-sequence shape-chain range constant castlike identity
  dropout less-or-equal error-unsupported-ops error-bad-perm
  error-missing-dim"

rm -rf "$corpus/onnx" "$corpus/plan" "$corpus/safetensors"
mkdir -p "$corpus/onnx" "$corpus/plan" "$corpus/safetensors"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for c in $onnx_cases; do
  "$py" "$root/test/Inputs/make_onnx.py" "$c" "$corpus/onnx/$c.onnx"
done
# A two-layer model with a loss, for a training plan (micro_step and
# apply_step programs, optimizer states) next to the forward plans.
"$py" - "$corpus/onnx/tiny-mlp-loss.onnx" <<'EOF'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

w = numpy_helper.from_array(
    np.arange(12, dtype=np.float32).reshape(4, 3) / 10 - 0.5, "w")
b = numpy_helper.from_array(np.array([0.1, -0.2, 0.3], np.float32), "b")
nodes = [
    helper.make_node("MatMul", ["x", "w"], ["h"], name="MatMul_0"),
    helper.make_node("Add", ["h", "b"], ["logits"], name="Add_1"),
    helper.make_node("SoftmaxCrossEntropyLoss", ["logits", "labels"],
                     ["loss"], name="SoftmaxCrossEntropyLoss_2",
                     reduction="mean"),
]
graph = helper.make_graph(
    nodes, "tiny_mlp_loss",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
     helper.make_tensor_value_info("labels", TensorProto.INT64, [2])],
    [helper.make_tensor_value_info("loss", TensorProto.FLOAT, []),
     helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 3])],
    [w, b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          ir_version=8)
onnx.checker.check_model(model, full_check=True)
onnx.save(model, sys.argv[1])
EOF
"$opt" compile "$corpus/onnx/tiny-mlp-loss.onnx" --separate-optimizer-step \
  --quiet -o "$work/tiny-mlp-train.cplan"
cp "$work/tiny-mlp-train.cplan" "$corpus/plan/"
cp "$work/tiny-mlp-train.weights.safetensors" \
  "$corpus/safetensors/tiny-mlp-train-weights.safetensors"

for c in $plan_cases; do
  "$opt" compile "$corpus/onnx/$c.onnx" --forward-only --quiet \
    -o "$work/$c.cplan"
  cp "$work/$c.cplan" "$corpus/plan/$c.cplan"
  if [[ -f "$work/$c.weights.safetensors" ]]; then
    cp "$work/$c.weights.safetensors" "$corpus/safetensors/$c-weights.safetensors"
  fi
done

"$py" - "$corpus/safetensors" <<'EOF'
import json, struct, sys

out = sys.argv[1]

def write(name, tensors, metadata=None, header_text=None):
    """tensors: list of (name, dtype, shape, bytes), packed in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for tname, dtype, shape, raw in tensors:
        header[tname] = {"dtype": dtype, "shape": shape,
                         "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header_text if header_text is not None else json.dumps(header)
    text = text.encode()
    with open(f"{out}/{name}.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)

write("empty", [])
write("metadata-only", [], {"format": "pt", "note": "tab\tquote\" \\u00e9 \u00e9"})
write("all-dtypes", [
    ("f32", "F32", [2], struct.pack("<2f", 1.5, -2.0)),
    ("f16", "F16", [2], struct.pack("<2H", 0x3c00, 0xc000)),
    ("bf16", "BF16", [2], struct.pack("<2H", 0x3f80, 0xc000)),
    ("f64", "F64", [1], struct.pack("<d", 3.25)),
    ("i64", "I64", [2], struct.pack("<2q", -1, 1 << 40)),
    ("i32", "I32", [1], struct.pack("<i", -7)),
    ("i8", "I8", [2], struct.pack("<2b", -1, 1)),
    ("u8", "U8", [2], bytes([0, 255])),
    ("bool", "BOOL", [3], bytes([0, 1, 1])),
])
write("scalar-and-empty", [
    ("scalar", "F32", [], struct.pack("<f", 0.5)),
    ("empty", "F32", [0, 4], b""),
    ("rank8", "U8", [1, 1, 1, 1, 1, 1, 1, 2], bytes([1, 2])),
])
write("escaped-names", [
    ("a\"b\\c\n\u00e9\U0001f600", "I32", [1], struct.pack("<i", 1)),
], {"k": "v"})
# Whitespace and \u escapes as other writers produce them.
text = ('{ "x" : { "dtype" : "F32", "shape" : [ 1 ], '
        '"data_offsets" : [ 0, 4 ] }, "__metadata__": {"\\u0041": "\\ud83d\\ude00"} }  ')
write("whitespace", [("x", "F32", [1], struct.pack("<f", 1.0))], header_text=text)
EOF

echo "make_corpus.sh: $(ls "$corpus/onnx" | wc -l) onnx, $(ls "$corpus/plan" | wc -l) plan, $(ls "$corpus/safetensors" | wc -l) safetensors seeds"
