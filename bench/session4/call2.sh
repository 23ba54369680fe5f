#!/bin/bash
# Session 4, call 2: colossal rows of OPT-2.7b and 6.7b (every budget) with the
# JIT fused kernels and wide attention, and traces of the 24 GiB plans.
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz   # .gpu-check and .bench-opt from bench/gpu_all.sh prepare
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT /tmp/tr
export COLOSSAL_NVRTC=/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13
export COLOSSAL_CUDA_FUSED=jit COLOSSAL_ATTENTION_KERNEL=wide
SECONDS=0
B=.bench-opt
python3 bench/opt_bench.py run $B $OUT/bench-c2.jsonl --only colossal --sizes 2.7b --steps 3 --warmup 1 --timeout 75 2>&1 | grep opt-bench
echo "2.7b at ${SECONDS}s"
python3 bench/opt_bench.py run $B $OUT/bench-c2.jsonl --only colossal --sizes 6.7b --steps 3 --warmup 1 --timeout 125 2>&1 | grep opt-bench
echo "6.7b at ${SECONDS}s"
for p in 6.7b-24GiB 2.7b-24GiB; do
  timeout 55 $B/bin/colossal-run $B/plans/opt-$p.cplan --device cuda --init random --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-$p.json --trace-step 2 2>&1 | tail -2
  echo "trace $p at ${SECONDS}s"
done
(cd /tmp/tr && gzip -f *.json && tar -cf $OUT/traces2.tar *.json.gz)
grep -h '"status"' $OUT/bench-c2.jsonl | cut -c1-400
