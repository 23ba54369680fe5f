#!/bin/bash
# Session 5, call 1. The fused attention backward (dq by atomics in the
# dk/dv loop; AttentionTC.cu) checked by attention-check, then A/B'd on the
# OPT-1.3b step against the two-pass backward (COLOSSAL_ATTENTION_KERNEL=
# deterministic); traces of OPT-1.3b unconstrained and OPT-6.7b under
# 24 GiB (bench/fit_efficiency.py; first rows with the one-GEMM weight
# gradients, adamw_norm and raw bf16 gradients to the host); every colossal
# budgeted row of 1.3b, 2.7b and 6.7b. Plans compiled here with devices/h200-fitted.json
# (bench/gpu_all.sh prepare); carry .gpu-carry (bundle.tar.xz: .gpu-check
# and .bench-opt).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/tr
SECONDS=0
timeout 200 .gpu-check/bin/attention-check > "$OUT/attention.log" 2>&1
rc=$?
echo "attention-check rc $rc at ${SECONDS}s"
grep -E "FAIL|attention_check:|timing|fused|unfused" "$OUT/attention.log" | head -40
B=.bench-opt
if [ $rc -ne 0 ]; then export COLOSSAL_ATTENTION_KERNEL=deterministic; echo "fused backward failed: rows run deterministic"; fi
for k in deterministic auto; do
  COLOSSAL_ATTENTION_KERNEL=${COLOSSAL_ATTENTION_KERNEL:-$k} timeout 60 $B/bin/colossal-run $B/plans/opt-1.3b-free.cplan \
    --device cuda --init random --data $B/tokens.bin --steps 5 --metrics "$OUT/ab-1.3b.jsonl" 2>&1 | tail -1
  echo "1.3b $k at ${SECONDS}s"
done
for p in 1.3b-free 6.7b-24GiB; do
  timeout 90 $B/bin/colossal-run $B/plans/opt-$p.cplan --device cuda --init random \
    --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-$p.json --trace-step 2 2>&1 | tail -2
  echo "trace $p at ${SECONDS}s"
done
(cd /tmp/tr && gzip -f ./*.json && tar -cf "$OUT/traces1.tar" ./*.json.gz)
python3 bench/opt_bench.py run $B "$OUT/call1-colossal.jsonl" --only colossal \
  --sizes 1.3b,2.7b,6.7b --budgets 24GiB,6GiB --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
echo "colossal rows at ${SECONDS}s"
