#!/bin/bash
# Session 4, call 5 (the last ~4 minutes of device time): the kernel test's
# every-op list (adamw_norm's cases included), then OPT-125m and 1.3b
# unconstrained compiled after the one-GEMM weight gradients and adamw_norm.
# Carry .gpu-carry (q.tar.xz: bin/colossal-run, bin/runtime-CudaKernelsTest,
# plans/opt-{125m,1.3b}-free.cplan, tokens.bin).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/q.tar.xz -C /tmp
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export COLOSSAL_NVRTC=${COLOSSAL_NVRTC:-/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13}
Q=/tmp/q
timeout 60 $Q/bin/runtime-CudaKernelsTest --gtest_filter=CudaKernels.EveryOpMatchesTheCpuReference > "$OUT/kernels5.log" 2>&1
echo "kernel test rc $?"; grep -E "cases, |adamw_norm" "$OUT/kernels5.log" | head -12
for s in 125m 1.3b; do
  timeout 40 $Q/bin/colossal-run $Q/plans/opt-$s-free.cplan --device cuda --init random \
    --data $Q/tokens.bin --steps 4 --metrics "$OUT/opt-$s.jsonl" 2>&1 | tail -2
done
