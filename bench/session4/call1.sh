#!/bin/bash
# Session 4, call 1: kernel test + oracle curves + attention-check with the opt-in
# kernels (JIT fused, wide attention), then colossal rows 125m/350m/1.3b (all budgets) and a 1.3b trace.
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz   # .gpu-check and .bench-opt from bench/gpu_all.sh prepare
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT /tmp/tr
rtc=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so\.13 /{print $NF; exit}')
[ -z "$rtc" ] && rtc=$(find /usr/local/cuda*/ /usr/lib /opt "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)" -name 'libnvrtc.so.13*' 2>/dev/null | grep -v builtins | head -1)
[ -n "$rtc" ] && export COLOSSAL_NVRTC=$rtc
echo "nvrtc: $rtc"
export COLOSSAL_CUDA_FUSED=jit COLOSSAL_ATTENTION_KERNEL=wide
SECONDS=0
( timeout 230 bash bench/gpu_check.sh run .gpu-check ) > $OUT/check.log 2>&1; echo "check rc $? at ${SECONDS}s"
grep -E "FAIL|cases, |exit|ALL PASS|Jit" $OUT/check.log | head -30; grep -A22 "== training" $OUT/check.log | cut -c1-120
timeout 60 .gpu-check/bin/attention-check > $OUT/attention.log 2>&1; echo "attention rc $? at ${SECONDS}s"; tail -25 $OUT/attention.log
B=.bench-opt
timeout 200 python3 bench/opt_bench.py run $B $OUT/bench-c1.jsonl --only colossal --sizes 125m,350m,1.3b --steps 3 --warmup 1 --timeout 45 2>&1 | grep opt-bench
echo "bench at ${SECONDS}s"
timeout 45 $B/bin/colossal-run $B/plans/opt-1.3b-free.cplan --device cuda --init random --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-1.3b.json --trace-step 2 2>&1 | tail -4
(cd /tmp/tr && gzip -f *.json && tar -cf $OUT/traces.tar *.json.gz)
echo "done at ${SECONDS}s"
