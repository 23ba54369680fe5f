#!/bin/bash
# Session 7, call 3: the harness docs/results.md is generated from. Every
# colossal row from plans compiled here with devices/h200-fitted.json and
# --stream-updates auto (updates streamed through the device where the cost
# model predicts it faster), with the merged attention backward (64s
# blocks), huge-page host arenas and the lead-shortening fix; PyTorch's
# OPT-1.3b and 6.7b unconstrained as the same-run anchors; then OPT-6.7b
# under 24 GiB compiled with --stream-updates off beside its harness row,
# and the kernel test's attention cases. Carry .gpu-carry (bundle3.tar.xz).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle3.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SECONDS=0
B=.bench-opt
python3 bench/opt_bench.py run $B "$OUT/call3-colossal.jsonl" --only colossal \
  --steps 3 --warmup 1 --timeout 70 2>&1 | grep opt-bench
echo "colossal rows at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call3-pytorch.jsonl" --only pytorch \
  --sizes 1.3b,6.7b --budgets free --steps 3 --warmup 1 --timeout 90 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
steps() { python3 -c "import json,sys;print([round(json.loads(l)['step_s'],4) for l in open(sys.argv[1])])" "$1" 2>/dev/null; }
if [ $SECONDS -lt 480 ]; then
  timeout 70 $B/bin/colossal-run $B/plans/opt-6.7b-24GiB-off.cplan --device cuda --init random \
    --data $B/tokens.bin --steps 4 --metrics "$OUT/off-6.7b.jsonl" > /tmp/off.txt 2>&1
  echo "6.7b-24 stream-updates off: $(steps $OUT/off-6.7b.jsonl) at ${SECONDS}s"
fi
