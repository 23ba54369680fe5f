#!/bin/bash
#===- hf_export_check.sh - colossal <-> transformers round trip ----------===#
#
# Two halves, run on two machines (docs/python.md has the results):
#
#   bench/hf_export_check.sh prepare DIR
#       here (colossal built in build/, no torch needed): for each oracle in
#       test/data/oracles (opt, gpt2, llama x torchscript, dynamo) compile the
#       training step, train 10 steps and export the weights (W10), resume
#       for step 10 to get colossal's loss of W10 on batch 10 % 4; writes
#       DIR/{<arch>.<exporter>/W10.safetensors, metrics.jsonl}, the batches,
#       the oracle jsons and DIR/manifest.json for verify_hf_export.py.
#
#   bench/hf_export_check.sh train-exports EXPORTS DIR
#       here: for each colossal.export --train export EXPORTS/*.onnx (with
#       its .json), compile it with no flags (the colossal.export metadata
#       decides what is trained, the export names and padding rows), train 3
#       steps on its case-0 batch and check that step 0's loss is PyTorch's
#       (1e-5 relative), export the weights (W3) and resume for step 3's loss;
#       adds the cases to DIR/manifest.json (verified through --onnx).
#
#   bench/hf_export_check.sh device DIR OUT
#       where torch, transformers, onnx, onnxscript and onnxruntime are
#       installed (the GPU machine): verify_hf_export.py on the manifest;
#       python -m colossal.export --train for opt and llama (both exporters),
#       a saved tiny Qwen2 folder (--model DIR) and a GPT-2 config.json
#       (--model config.json); python -m colossal.tokenize with a cached
#       tokenizer if there is one, else a BPE tokenizer trained and saved on
#       the spot, and --tokenizer bytes. Results and exports go to OUT
#       (exports.tar.gz, verify.json, logs).
#
#===----------------------------------------------------------------------===#
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
dir=${2:-}
usage="usage: $0 prepare DIR | train-exports EXPORTS DIR | device DIR OUT"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "$usage" >&2; exit 2; }

prepare() {
  set -e
  local bin=$here/build/bin py=${PYTHON:-python3}
  "$py" -c "import numpy" 2>/dev/null || py=/usr/bin/python3  # colossal_testutil needs numpy
  mkdir -p "$dir"
  local manifest="["
  for arch in opt gpt2 llama; do
    "$py" - "$here" "$arch" "$dir" <<'EOF'
import sys
here, arch, out = sys.argv[1:]
sys.path.insert(0, here + "/test/Inputs")
import colossal_testutil as u
r = u.read_safetensors(f"{here}/test/data/oracles/{arch}-train.oracle.safetensors")
u.write_safetensors(f"{out}/{arch}.batches.safetensors",
                    {"input_ids": r["input_ids"], "labels": r["labels"]})
EOF
    cp "$here/test/data/oracles/$arch-train.oracle.json" "$dir/"
    for ex in torchscript dynamo; do
      local w=$dir/$arch.$ex work
      work=$(mktemp -d)
      mkdir -p "$w"
      # OPT's embedding has padding_idx 1; a dynamo export names a tied
      # embedding after the LM head, so its export name is set by hand (the
      # oracles carry no colossal.export metadata).
      local flags=()
      case $arch.$ex in
        opt.torchscript) flags+=(--padding-idx model.model.decoder.embed_tokens.weight=1) ;;
        opt.dynamo) flags+=(--padding-idx model.lm_head.weight=1
                            --export-name model.lm_head.weight=model.decoder.embed_tokens.weight) ;;
        gpt2.dynamo) flags+=(--export-name model.lm_head.weight=transformer.wte.weight) ;;
      esac
      "$bin/colossal-opt" compile "$here/test/data/oracles/$arch-train.$ex.onnx" \
        -o "$work/model.cplan" "${flags[@]}" --quiet
      "$bin/colossal-run" "$work/model.cplan" --batches "$dir/$arch.batches.safetensors" \
        --steps 10 --save "$work/ck10" --export-weights "$w/W10.safetensors" > /dev/null 2>&1
      "$bin/colossal-run" "$work/model.cplan" --batches "$dir/$arch.batches.safetensors" \
        --resume "$work/ck10" --steps 11 --metrics "$w/metrics.jsonl" > /dev/null 2>&1
      rm -rf "$work"
      echo "prepare: $arch.$ex: $(cat "$w/metrics.jsonl")"
      manifest+="{\"name\": \"$arch.$ex\", \"weights\": \"$arch.$ex/W10.safetensors\","
      manifest+=" \"oracle\": \"$arch-train.oracle.json\", \"batches\": \"$arch.batches.safetensors\","
      manifest+=" \"metrics\": \"$arch.$ex/metrics.jsonl\", \"step\": 10},"
    done
  done
  echo "${manifest%,}]" > "$dir/manifest.json"
  echo "prepare: wrote $dir/manifest.json"
}

train_exports() {
  set -e
  local exports=$dir bin=${BIN:-$here/build/bin} py=${PYTHON:-python3}
  local out=${3:?usage: $0 train-exports EXPORTS DIR}
  "$py" -c "import numpy" 2>/dev/null || py=/usr/bin/python3
  mkdir -p "$out"
  local manifest="[" failed=0
  for onnx in "$exports"/*.onnx; do
    local stem work w
    stem=$(basename "$onnx" .onnx)
    w=$out/$stem; work=$(mktemp -d)
    mkdir -p "$w"
    cp "$onnx" "$w/"
    # Case 0 of the export's .json as a one-entry batches file, [1, batch, seq].
    "$py" - "$here" "${onnx%.onnx}.json" "$w/batches.safetensors" <<'EOF'
import json, sys
import numpy as np
here, js, out = sys.argv[1:]
sys.path.insert(0, here + "/test/Inputs")
import colossal_testutil as u
inputs = json.load(open(js))["cases"][0]["inputs"]
u.write_safetensors(out, {k: np.array(v["data"], dtype=np.int64)[None] for k, v in inputs.items()})
EOF
    "$bin/colossal-opt" compile "$onnx" -o "$work/model.cplan" > "$w/compile.log" 2>&1
    "$bin/colossal-run" "$work/model.cplan" --batches "$w/batches.safetensors" --steps 3 \
      --metrics "$w/metrics0-2.jsonl" --save "$work/ck3" --export-weights "$w/W3.safetensors" \
      > /dev/null 2>&1
    "$bin/colossal-run" "$work/model.cplan" --batches "$w/batches.safetensors" \
      --resume "$work/ck3" --steps 4 --metrics "$w/metrics.jsonl" > /dev/null 2>&1
    rm -rf "$work"
    "$py" - "${onnx%.onnx}.json" "$w/metrics0-2.jsonl" "$w/compile.log" "$stem" <<'EOF' || failed=1
import json, sys
js, metrics, log, stem = sys.argv[1:]
torch_loss = json.load(open(js))["cases"][0]["torch_loss"]
ours = json.loads(open(metrics).readline())["loss"]
trained = [l.strip() for l in open(log) if l.strip().startswith("trained:")][0]
rel = abs(ours - torch_loss) / abs(torch_loss)
print(f"train-exports: {stem}: {trained}; step 0 loss {ours:.9g}, PyTorch {torch_loss:.9g}, "
      f"rel err {rel:.1e} {'ok' if rel <= 1e-5 else 'FAIL'}")
sys.exit(0 if rel <= 1e-5 else 1)
EOF
    manifest+="{\"name\": \"$stem\", \"weights\": \"$stem/W3.safetensors\","
    manifest+=" \"onnx\": \"$stem/$stem.onnx\", \"batches\": \"$stem/batches.safetensors\","
    manifest+=" \"metrics\": \"$stem/metrics.jsonl\", \"step\": 3},"
  done
  echo "${manifest%,}]" > "$out/manifest.json"
  echo "train-exports: wrote $out/manifest.json"
  return $failed
}

device() {
  # OUT gets few files (the device tool brings back 8 at most): the work
  # folder goes back as one tarball.
  local out=${3:?usage: $0 device DIR OUT} work
  work=$(mktemp -d)
  local ex=$work/exports tk=$work/tokenize
  mkdir -p "$out" "$ex" "$tk"
  export PYTHONPATH=$here/python PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  echo "== machine"
  python3 -c "import sys, torch, transformers, onnx, onnxscript, onnxruntime; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'onnx', onnx.__version__, 'onnxscript', onnxscript.__version__, 'onnxruntime', onnxruntime.__version__)"
  echo "== hugging face cache (${HF_HOME:-~/.cache/huggingface})"
  ls "${HF_HOME:-$HOME/.cache/huggingface}" "${HF_HOME:-$HOME/.cache/huggingface}/hub" 2>&1 | head -20

  echo "== verify_hf_export.py on the oracles' W10"
  python3 "$here/bench/verify_hf_export.py" --manifest "$dir/manifest.json" \
    --json "$out/verify.json" 2>&1 | tee "$out/verify.log"
  local rc_verify=${PIPESTATUS[0]}

  echo "== colossal.export --train"
  # A saved tiny Qwen2 (for --model FOLDER) and a GPT-2 config (--model config.json).
  python3 - "$work/src" <<'EOF'
import json, os, sys, torch, transformers
from colossal import export as E
out = sys.argv[1]
_, cfg_cls, _, kw, _ = E.ARCHS["qwen2"]
torch.manual_seed(0)
m = transformers.Qwen2ForCausalLM(getattr(transformers, cfg_cls)(**kw))
m.save_pretrained(f"{out}/tiny-qwen2")
os.makedirs(f"{out}/tiny-gpt2", exist_ok=True)
cfg = transformers.GPT2Config(**E.ARCHS["gpt2"][3]).to_dict()
json.dump(cfg, open(f"{out}/tiny-gpt2/config.json", "w"), indent=1)
print("saved", sorted(os.listdir(f"{out}/tiny-qwen2")), "and tiny-gpt2/config.json")
EOF
  local pids=()
  for a in opt llama; do
    for e in torchscript dynamo; do
      python3 -m colossal.export --train --arch $a --exporter $e --batch 4 --seq 32 --out "$ex" \
        > "$ex/$a.$e.log" 2>&1 & pids+=($!)
    done
  done
  python3 -m colossal.export --train --model "$work/src/tiny-qwen2" --exporter dynamo --out "$ex" \
    > "$ex/qwen2.model.log" 2>&1 & pids+=($!)
  python3 -m colossal.export --train --model "$work/src/tiny-gpt2/config.json" --exporter torchscript \
    --out "$ex" > "$ex/gpt2.config.log" 2>&1 & pids+=($!)
  local rc_export=0
  for p in "${pids[@]}"; do wait "$p" || rc_export=1; done
  for f in "$ex"/*.log; do echo "-- $(basename "$f")"; grep -v "^\s*$" "$f" | tail -6; done

  echo "== colossal.tokenize"
  local texts=("$here/README.md" "$here"/docs/*.md)
  python3 -m colossal.tokenize --tokenizer bytes -o "$tk/docs.bytes.bin" "${texts[@]}"
  local tok=""
  for d in "${HF_HOME:-$HOME/.cache/huggingface}"/hub/models--*/snapshots/*/; do
    if [ -e "$d/tokenizer.json" ] || [ -e "$d/tokenizer_config.json" ]; then tok=$d; break; fi
  done
  if [ -z "$tok" ]; then
    echo "no tokenizer in the cache: training a byte-level BPE (vocab 1000) and saving it"
    tok=$work/src/bpe
    python3 - "$tok" "${texts[@]}" <<'EOF'
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
out, files = sys.argv[1], sys.argv[2:]
t = Tokenizer(models.BPE())
t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
t.decoder = decoders.ByteLevel()
t.train(files, trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"],
                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>").save_pretrained(out)
EOF
  fi
  python3 -m colossal.tokenize --tokenizer "$tok" -o "$tk/docs.hf.bin" "${texts[@]}"
  local rc_tok=$?
  # The stream decodes back to the documents, EOS between them.
  python3 - "$tok" "$tk/docs.hf.bin" "${texts[@]}" <<'EOF'
import array, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], local_files_only=True)
ids = array.array("H" if len(tok) <= 65536 else "I", open(sys.argv[2], "rb").read()).tolist()
docs, cur = [], []
for i in ids:
    if i == tok.eos_token_id:
        docs.append(cur); cur = []
    else:
        cur.append(i)
texts = [open(f, encoding="utf-8").read() for f in sys.argv[3:]]
same = [tok.decode(d, clean_up_tokenization_spaces=False) == t for d, t in zip(docs, texts)]
print(f"decode check: {len(docs)} documents, {sum(same)} decode to their file exactly; "
      f"vocab {len(tok)}, eos {tok.eos_token_id}, {len(ids)} tokens")
EOF
  echo "== files back"
  tar czf "$out/exports.tar.gz" -C "$work" exports tokenize src
  ls -la "$out"
  rm -rf "$work"
  echo "device: verify rc $rc_verify, export rc $rc_export, tokenize rc $rc_tok"
  [ "$rc_verify" = 0 ] && [ "$rc_export" = 0 ] && [ "$rc_tok" = 0 ]
}

case $cmd in
  prepare) prepare ;;
  train-exports) train_exports "$@" ;;
  device) device "$@" ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
