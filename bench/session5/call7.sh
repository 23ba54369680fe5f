#!/bin/bash
# Session 5, call 7: the D <= 64 attention kernels built for four blocks an
# SM as the default (call 6's A/B). attention-check (cases and timings;
# tc-occ3 is the unbounded build), then OPT-1.3b unconstrained alternating
# the default and COLOSSAL_ATTENTION_OCCUPANCY=3, twice each (call 4's
# plan). Carry .gpu-carry (bundle.tar.xz: call 4's plans, this build).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SECONDS=0
B=.bench-opt
timeout 90 .gpu-check/bin/attention-check > "$OUT/attention7.log" 2>&1
rc=$?
echo "attention-check rc $rc at ${SECONDS}s"; grep -E "FAIL|attention_check:|timing|fused" "$OUT/attention7.log" | head -20
[ $rc -ne 0 ] && exit 1
for occ in 4 3 4 3; do
  COLOSSAL_ATTENTION_OCCUPANCY=$occ python3 bench/opt_bench.py run $B "$OUT/call7-colossal.jsonl" --only colossal \
    --sizes 1.3b --budgets free --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
done
echo "done at ${SECONDS}s"
