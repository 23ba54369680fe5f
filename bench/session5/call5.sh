#!/bin/bash
# Session 5, call 5 (after the harness of call 4): dk/dv with 32 query rows
# a step at D 64 as the default (call 4's A/B: 0.899 ms against 1.068).
# attention-check, then OPT-125m, 350m and 1.3b unconstrained (call 4's
# plans; D 64) and PyTorch's 125m and 1.3b as the same-run anchor. Carry
# .gpu-carry (bundle.tar.xz: call 4's, with this build's binaries).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SECONDS=0
B=.bench-opt
timeout 120 .gpu-check/bin/attention-check > "$OUT/attention5.log" 2>&1
rc=$?
echo "attention-check rc $rc at ${SECONDS}s"
grep -E "FAIL|attention_check:|timing|fused" "$OUT/attention5.log" | head -16
[ $rc -ne 0 ] && exit 1
python3 bench/opt_bench.py run $B "$OUT/call5-colossal.jsonl" --only colossal \
  --sizes 125m,350m,1.3b --budgets free --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
echo "colossal rows at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call5-pytorch.jsonl" --only pytorch \
  --sizes 125m,1.3b --budgets free --steps 3 --warmup 2 --timeout 90 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
