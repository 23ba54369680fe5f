#!/bin/bash
# Session 4, call 3: the packed layer-norm / column-reduce kernels, the
# vectorised JIT fused kernels, strided copies and casts (jit and D80/96
# attention now the defaults): the kernel test, then traces of OPT-1.3b
# (unconstrained) and OPT-2.7b (24 GiB) for bench/fit_efficiency.py, and
# OPT-125m's for its cross-check. Run from the repository root on the GPU
# machine with .gpu-carry carried (bundle.tar.xz: .gpu-check and .bench-opt
# from bench/gpu_all.sh prepare).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/tr
export COLOSSAL_NVRTC=${COLOSSAL_NVRTC:-/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13}
SECONDS=0
( time timeout 200 .gpu-check/bin/runtime-CudaKernelsTest ) > "$OUT/kernels.log" 2>&1
echo "kernel test rc $? at ${SECONDS}s"
grep -E "cases, |FAILED|PASSED|^\[  FAILED" "$OUT/kernels.log" | head -30
grep -E "  (FAIL|fail)" "$OUT/kernels.log" | head -30
B=.bench-opt
for p in 1.3b-free 125m-free 2.7b-24GiB; do
  timeout 60 $B/bin/colossal-run $B/plans/opt-$p.cplan --device cuda --init random \
    --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-$p.json --trace-step 2 2>&1 | tail -2
  echo "trace $p at ${SECONDS}s"
done
(cd /tmp/tr && gzip -f ./*.json && tar -cf "$OUT/traces3.tar" ./*.json.gz)
