#!/bin/bash
# Session 7, call 4: does the merged attention backward (64s blocks) show
# in OPT-1.3b's step? A trace of step 2 of 3 against session 6's call-2
# trace, and the step with COLOSSAL_ATTENTION_BLOCK=64 (the old kernels)
# beside the default, alternating. Carry .gpu-carry (bundle4.tar.xz).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle4.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/tr
B=.bench-opt
SECONDS=0
timeout 60 $B/bin/colossal-run $B/plans/opt-1.3b-free.cplan --device cuda --init random \
  --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-1.3b.json --trace-step 2 2>&1 | tail -1
python3 bench/trace_summary.py /tmp/tr/trace-1.3b.json --compare \
  docs/results-data/2026-11-28-session6/traces/call2-trace-1.3b-free.json.gz 2>&1 | head -30
steps() { python3 -c "import json,sys;print([round(json.loads(l)['step_s'],4) for l in open(sys.argv[1])])" "$1" 2>/dev/null; }
for rep in 1 2; do
  for blk in default 64; do
    if [ $blk = default ]; then e=""; else e="COLOSSAL_ATTENTION_BLOCK=64"; fi
    env $e timeout 40 $B/bin/colossal-run $B/plans/opt-1.3b-free.cplan --device cuda --init random \
      --data $B/tokens.bin --steps 8 --metrics /tmp/m-$blk-$rep.jsonl > /dev/null 2>&1
    echo "1.3b free, block $blk, run $rep: $(steps /tmp/m-$blk-$rep.jsonl) at ${SECONDS}s"
  done
done
