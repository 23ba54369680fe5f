#!/usr/bin/env bash
#===- demo.sh - Set up, build, and run the main job on the bundled model ---===#
#
# Usage: bash scripts/demo.sh
#   BUILD_DIR, JOBS  as for scripts/build.sh
#   DEMO_DIR         where the plan, weights, inputs and outputs go
#                    (default: $BUILD_DIR/demo)
#
# The main job today is a forward pass: compile the bundled tiny OPT model
# (test/data/models/opt-tiny.dynamo.onnx, a Hugging Face OPTForCausalLM
# exported with its loss) into a plan, run the plan on the CPU with the inputs
# recorded in its .json, and print our loss next to PyTorch's. Training (the
# backward pass and the optimizer step) comes later, and this demo with it.
#
#===----------------------------------------------------------------------===#
set -euo pipefail

log() { echo "[demo] $*"; }
die() { echo "[demo] error: $*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BUILD_DIR=${BUILD_DIR:-build}
DEMO_DIR=${DEMO_DIR:-$BUILD_DIR/demo}
PY=/usr/bin/python3
MODEL=test/data/models/opt-tiny.dynamo.onnx
REF=${MODEL%.onnx}.json

bash scripts/setup.sh
bash scripts/build.sh

OPT=$BUILD_DIR/bin/colossal-opt
RUN=$BUILD_DIR/bin/colossal-run
PLAN=$DEMO_DIR/opt-tiny.cplan
mkdir -p "$DEMO_DIR"
rm -f "$PLAN" "${PLAN%.cplan}.weights.safetensors" "$DEMO_DIR/outputs.safetensors"

log "model: $MODEL (OPT, 2 layers, hidden 64, 4 heads, vocab 512; batch 2 x seq 16)"
log "compile: $OPT compile $MODEL -o $PLAN --forward-only"
"$OPT" compile "$MODEL" -o "$PLAN" --forward-only || die "compile failed"
[[ -f "$PLAN" && -f "${PLAN%.cplan}.weights.safetensors" ]] \
  || die "compile did not write $PLAN and ${PLAN%.cplan}.weights.safetensors"
log "wrote $PLAN ($(stat -c %s "$PLAN") bytes) and ${PLAN%.cplan}.weights.safetensors" \
    "($(stat -c %s "${PLAN%.cplan}.weights.safetensors") bytes)"

log "inputs: cases[0] of $REF -> $DEMO_DIR/inputs.safetensors"
"$PY" test/Inputs/colossal_testutil.py inputs-from-json "$REF" "$DEMO_DIR/inputs.safetensors" \
  | sed 's/^/[demo]   /'

log "run: $RUN $PLAN --inputs $DEMO_DIR/inputs.safetensors --outputs $DEMO_DIR/outputs.safetensors"
"$RUN" "$PLAN" --inputs "$DEMO_DIR/inputs.safetensors" --outputs "$DEMO_DIR/outputs.safetensors" \
  || die "colossal-run failed"
"$PY" test/Inputs/colossal_testutil.py show "$DEMO_DIR/outputs.safetensors" | sed 's/^/[demo]   /'

# Our loss next to PyTorch's (recorded when the model was exported).
"$PY" - "$DEMO_DIR/outputs.safetensors" "$REF" <<'PYEOF'
import json, sys
sys.path.insert(0, "test/Inputs")
from colossal_testutil import read_safetensors
ours = float(read_safetensors(sys.argv[1])["loss"].reshape(()))
torch = float(json.load(open(sys.argv[2]))["cases"][0]["torch_loss"])
rel = abs(ours - torch) / abs(torch)
verdict = "ok" if rel <= 1e-5 else "MISMATCH (tolerance 1e-5)"
print(f"[demo] loss: colossal {ours:.7f}  PyTorch {torch:.7f}  relative error {rel:.2e}  {verdict}")
sys.exit(0 if rel <= 1e-5 else 1)
PYEOF

# --- training: 30 AdamW steps of the bundled OPT oracle ----------------------
TRAIN_MODEL=test/data/oracles/opt-train.torchscript.onnx
TRAIN_PLAN=$DEMO_DIR/opt-train.cplan
log ""
log "training: $TRAIN_MODEL (the same tiny OPT, every parameter a named initializer)"
log "compile: $OPT compile $TRAIN_MODEL -o $TRAIN_PLAN --lr 1e-3 --weight-decay 0.01 --padding-idx model.model.decoder.embed_tokens.weight=1"
"$OPT" compile "$TRAIN_MODEL" -o "$TRAIN_PLAN" --lr 1e-3 --weight-decay 0.01 \
  --padding-idx model.model.decoder.embed_tokens.weight=1 || die "compile (training) failed"
"$PY" -c "
import sys; sys.path.insert(0, 'test/Inputs'); import colossal_testutil as u
r = u.read_safetensors('test/data/oracles/opt-train.oracle.safetensors')
u.write_safetensors('$DEMO_DIR/batches.safetensors', {'input_ids': r['input_ids'], 'labels': r['labels']})"
log "train: $RUN $TRAIN_PLAN --batches $DEMO_DIR/batches.safetensors --steps 30 --metrics $DEMO_DIR/metrics.jsonl"
"$RUN" "$TRAIN_PLAN" --batches "$DEMO_DIR/batches.safetensors" --steps 30 \
  --metrics "$DEMO_DIR/metrics.jsonl" --export-weights "$DEMO_DIR/trained.safetensors" \
  || die "training failed"
"$PY" - "$DEMO_DIR/metrics.jsonl" test/data/oracles/opt-train.oracle.json <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
torch = json.load(open(sys.argv[2]))["losses"]
worst = max(abs(r["loss"] - torch[r["step"]]) / torch[r["step"]] for r in rows)
print(f"[demo] loss fell from {rows[0]['loss']:.4f} to {rows[-1]['loss']:.4f} in {len(rows)} steps;"
      f" PyTorch's curve: {torch[0]:.4f} -> {torch[len(rows) - 1]:.4f}; worst relative difference {worst:.1e}")
sys.exit(0 if rows[-1]["loss"] < rows[0]["loss"] and worst <= 1e-4 else 1)
PYEOF
