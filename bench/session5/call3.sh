#!/bin/bash
# Session 5, call 3: the attention kernels with two 16-row tiles a warp up
# to D 64 (forward: 128 query rows a block; dk/dv: 128 keys a block, 32
# query rows a step) and contraction allowed in AttentionTC.cu. Then
# attention-check (every case on the fused, chunked and deterministic
# backward, and the timings), OPT-1.3b and 6.7b unconstrained, traces of
# OPT-1.3b unconstrained and 2.7b under 24 GiB (bench/fit_efficiency.py),
# and PyTorch's OPT-6.7b as the same-run anchor. Carry .gpu-carry
# (bundle.tar.xz: .gpu-check and .bench-opt, the plans of call 1).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/tr
SECONDS=0
B=.bench-opt
timeout 200 .gpu-check/bin/attention-check > "$OUT/attention3.log" 2>&1
rc=$?
echo "attention-check rc $rc at ${SECONDS}s"
grep -E "FAIL|attention_check:|timing|fused|unfused" "$OUT/attention3.log" | head -40
[ $rc -ne 0 ] && exit 1
python3 bench/opt_bench.py run $B "$OUT/call3-colossal.jsonl" --only colossal \
  --sizes 1.3b,6.7b --budgets free --steps 3 --warmup 1 --timeout 80 2>&1 | grep opt-bench
echo "free rows at ${SECONDS}s"
for p in 1.3b-free 2.7b-24GiB; do
  timeout 80 $B/bin/colossal-run $B/plans/opt-$p.cplan --device cuda --init random \
    --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-$p.json --trace-step 2 2>&1 | tail -1
  echo "trace $p at ${SECONDS}s"
done
(cd /tmp/tr && gzip -f ./*.json && tar -cf "$OUT/traces3.tar" ./*.json.gz)
python3 bench/opt_bench.py run $B "$OUT/call3-pytorch.jsonl" --only pytorch \
  --sizes 6.7b --budgets free --steps 3 --warmup 1 --timeout 120 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
