#!/bin/bash
# Session 4, call 4: the harness's rows. Every colossal plan (compiled here
# with devices/h200-fitted.json as refitted from calls 2-3), then PyTorch
# for OPT-125m and 1.3b unconstrained as the same-run anchor (session 3's
# call 4 measured every PyTorch row). Run from the repository root on the
# GPU machine with .gpu-carry carried (bundle.tar.xz from gpu_all.sh prepare).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export COLOSSAL_NVRTC=${COLOSSAL_NVRTC:-/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13}
SECONDS=0
B=.bench-opt
python3 bench/opt_bench.py run $B "$OUT/call4-colossal.jsonl" --only colossal \
  --sizes 125m,350m,1.3b,2.7b --steps 3 --warmup 1 --timeout 75 2>&1 | grep opt-bench
echo "small at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call4-colossal.jsonl" --only colossal \
  --sizes 6.7b --steps 3 --warmup 1 --timeout 125 2>&1 | grep opt-bench
echo "6.7b at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call4-pytorch.jsonl" --only pytorch \
  --sizes 1.3b,125m --budgets free --steps 3 --warmup 1 --timeout 90 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
