#!/bin/bash
# Session 5, call 6: the A/B of the D <= 64 attention kernels built for four
# blocks an SM (COLOSSAL_ATTENTION_OCCUPANCY=4: 128 registers, a few
# spilled). attention-check's cases under it, its timings (tc against
# tc-occ4), then OPT-1.3b unconstrained (call 4's plan) with and without it.
# Carry .gpu-carry (bundle.tar.xz: call 4's plans, this build's binaries).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SECONDS=0
B=.bench-opt
COLOSSAL_ATTENTION_OCCUPANCY=4 timeout 90 .gpu-check/bin/attention-check --no-timing > "$OUT/attention6-occ4.log" 2>&1
rc=$?
echo "attention-check (occupancy 4) rc $rc at ${SECONDS}s"; grep -E "FAIL|attention_check:" "$OUT/attention6-occ4.log" | head
timeout 60 .gpu-check/bin/attention-check --timing-only > "$OUT/attention6-timing.log" 2>&1
grep -E "timing|fused" "$OUT/attention6-timing.log" | head -14
[ $rc -ne 0 ] && exit 1
for occ in 3 4; do
  COLOSSAL_ATTENTION_OCCUPANCY=$occ python3 bench/opt_bench.py run $B "$OUT/call6-colossal.jsonl" --only colossal \
    --sizes 1.3b --budgets free --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
done
echo "done at ${SECONDS}s"
