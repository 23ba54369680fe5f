#!/bin/bash
# Session 5, call 4: the harness. attention-check first (the kernels as
# they ship: one 16-row tile a warp, contraction allowed, the fused dq for
# D <= 64; and the A/B of 32 query rows a step at D 64), then every colossal
# row from plans compiled here with devices/h200-fitted.json as refitted
# from calls 2-3, then PyTorch's OPT-1.3b and 6.7b unconstrained as the
# same-run anchor. docs/results.md is generated from its rows. Carry
# .gpu-carry (bundle.tar.xz from bench/gpu_all.sh prepare).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SECONDS=0
B=.bench-opt
timeout 120 .gpu-check/bin/attention-check > "$OUT/attention4.log" 2>&1
rc=$?
echo "attention-check rc $rc at ${SECONDS}s"
grep -E "FAIL|attention_check:|timing|fused|unfused" "$OUT/attention4.log" | head -30
[ $rc -ne 0 ] && exit 1
python3 bench/opt_bench.py run $B "$OUT/call4-colossal.jsonl" --only colossal \
  --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
echo "colossal rows at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call4-pytorch.jsonl" --only pytorch \
  --sizes 1.3b,6.7b --budgets free --steps 3 --warmup 1 --timeout 90 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
