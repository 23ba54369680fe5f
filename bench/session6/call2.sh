#!/bin/bash
# Session 6, call 2: the loss kernels by rows (softmax_cross_entropy and its
# gradient, a block a row, one pass for max and sum) and the host updates
# across the step boundary (cplan.carried_streams). The kernel test's
# every-op list (new cases: OPT's and GPT-2's vocabularies), the OPT oracle
# offloaded, cross-step vs joined on cuda for 30 steps (a race would change
# the bits), a trace of OPT-1.3b against call 1's, then the rows the two
# changes move, and the joined plans of 2.7b and 6.7b under 24 GiB beside
# the cross-step ones. Carry .gpu-carry (bundle.tar.xz).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/tr /tmp/xs
SECONDS=0
B=.bench-opt
X=.gpu-check/xs
timeout 120 .gpu-check/bin/runtime-CudaKernelsTest \
  --gtest_filter='CudaKernels.EveryOp*' > "$OUT/kernels2.log" 2>&1
echo "kernel test rc $? at ${SECONDS}s"; grep -E "cross_entropy.*vocab|cases, |FAILED|PASSED" "$OUT/kernels2.log" | head -20
for n in cross joined; do
  timeout 60 .gpu-check/bin/colossal-run $X/$n.cplan --device cuda --batches $X/b.safetensors \
    --steps 30 --metrics /tmp/xs/$n.jsonl --export-weights /tmp/xs/$n.w.safetensors 2>&1 | tail -1
  cut -d, -f1-4 /tmp/xs/$n.jsonl > /tmp/xs/$n.txt
done
if diff /tmp/xs/cross.txt /tmp/xs/joined.txt > /dev/null && cmp -s /tmp/xs/cross.w.safetensors /tmp/xs/joined.w.safetensors; then
  echo "oracle offloaded on cuda: cross-step and joined curves and weights identical"
else
  echo "oracle offloaded on cuda: cross-step and joined DIFFER"; diff /tmp/xs/cross.txt /tmp/xs/joined.txt | head -6
fi
cp /tmp/xs/cross.jsonl "$OUT/oracle-cross.jsonl"
timeout 60 $B/bin/colossal-run $B/plans/opt-1.3b-free.cplan --device cuda --init random \
  --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace2-1.3b-free.json --trace-step 2 2>&1 | tail -1
python3 bench/trace_summary.py /tmp/tr/trace2-1.3b-free.json --compare \
  docs/results-data/2026-11-28-session6/traces/call1-trace-1.3b-free.json.gz --locations 2 2>&1 | head -40
echo "trace at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call2-colossal.jsonl" --only colossal \
  --sizes 125m,1.3b --budgets free --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
python3 bench/opt_bench.py run $B "$OUT/call2-colossal.jsonl" --only colossal \
  --sizes 1.3b,2.7b --budgets 6GiB --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
python3 bench/opt_bench.py run $B "$OUT/call2-colossal.jsonl" --only colossal \
  --sizes 2.7b,6.7b --budgets 24GiB --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
echo "rows at ${SECONDS}s"
for s in 2.7b 6.7b; do
  timeout 150 $B/bin/colossal-run $B/plans/opt-$s-24GiB-joined.cplan --device cuda --init random \
    --data $B/tokens.bin --steps 4 --metrics "$OUT/joined-$s.jsonl" 2>&1 | tail -1
  echo "joined $s at ${SECONDS}s"
done
(cd /tmp/tr && gzip -f ./*.json && tar -cf "$OUT/traces2.tar" ./*.json.gz)
