#!/bin/bash
# Session 6, call 1: what session 5 built but never ran on a GPU (the
# generated fused kernels' exactness tracking, the loss over bf16 scores,
# the no-rows attention backward), a trace of OPT-1.3b unconstrained to
# compare with session 5's, the host AdamW alone on 16 threads, then the
# harness: every colossal row (plans compiled here with
# devices/h200-fitted.json; the loss change moved them all) and PyTorch's
# OPT-1.3b and 6.7b unconstrained as the same-run anchors. Carry
# .gpu-carry (bundle.tar.xz from bench/gpu_all.sh prepare).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/tr
SECONDS=0
B=.bench-opt
timeout 120 .gpu-check/bin/runtime-CudaKernelsTest \
  --gtest_filter='CudaKernels.FusedJit*:CudaKernels.EveryOp*' > "$OUT/kernels1.log" 2>&1
echo "kernel test rc $? at ${SECONDS}s"; grep -E "cases, |cross_entropy|FAILED|PASSED" "$OUT/kernels1.log" | head -20
timeout 120 .gpu-check/bin/attention-check > "$OUT/attention1.log" 2>&1
echo "attention-check rc $? at ${SECONDS}s"
grep -E "FAIL|attention_check:|no rows" "$OUT/attention1.log" | head -10
COLOSSAL_ADAMW_BENCH_PARAMS=268435456 COLOSSAL_ADAMW_BENCH_REPEATS=2 COLOSSAL_ADAMW_BENCH_THREADS=16 timeout 120 \
  .gpu-check/bin/runtime-AdamWSpeedTest > "$OUT/adamw-speed1.log" 2>&1
echo "adamw speed rc $? at ${SECONDS}s"; grep "adamw" "$OUT/adamw-speed1.log"
timeout 60 $B/bin/colossal-run $B/plans/opt-1.3b-free.cplan --device cuda --init random \
  --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-1.3b-free.json --trace-step 2 2>&1 | tail -1
python3 bench/trace_summary.py /tmp/tr/trace-1.3b-free.json --compare \
  docs/results-data/2026-11-28-session5/traces/call2-trace-1.3b-free.json.gz --locations 3 2>&1 | head -40
(cd /tmp/tr && gzip -f ./*.json && tar -cf "$OUT/traces1.tar" ./*.json.gz)
echo "trace at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call1-colossal.jsonl" --only colossal \
  --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
echo "colossal rows at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call1-pytorch.jsonl" --only pytorch \
  --sizes 1.3b,6.7b --budgets free --steps 3 --warmup 1 --timeout 90 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
