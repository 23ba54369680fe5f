#!/bin/bash
# Session 5, call 2: the packed AdamW kernels (adamWF32Kernel<.., kPacked>:
# 4 elements a thread in 16-byte accesses) and the attention dispatch (fused
# backward for D <= 64, two-pass above). The kernel test's every-op list
# (the adamw and adamw_norm cases), OPT-1.3b and 6.7b unconstrained and a
# trace of 1.3b, PyTorch's SDPA timed on attention-check's shapes
# (bench/sdpa_time.py), Nsight Compute on our D 64 attention kernels, the
# PyTorch 1.3b anchor, then OPT-6.7b under 24 GiB (its start-up is a
# minute). Carry .gpu-carry (bundle.tar.xz: .gpu-check and .bench-opt, the
# plans of call 1).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/tr
SECONDS=0
B=.bench-opt
timeout 90 .gpu-check/bin/runtime-CudaKernelsTest --gtest_filter=CudaKernels.EveryOpMatchesTheCpuReference > "$OUT/kernels2.log" 2>&1
echo "kernel test rc $? at ${SECONDS}s"; grep -E "cases, |adamw|FAILED" "$OUT/kernels2.log" | head -20
python3 bench/opt_bench.py run $B "$OUT/call2-colossal.jsonl" --only colossal \
  --sizes 1.3b,6.7b --budgets free --steps 3 --warmup 1 --timeout 80 2>&1 | grep opt-bench
echo "free rows at ${SECONDS}s"
timeout 60 $B/bin/colossal-run $B/plans/opt-1.3b-free.cplan --device cuda --init random \
  --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-1.3b-free.json --trace-step 2 2>&1 | tail -1
(cd /tmp/tr && gzip -f ./*.json && tar -cf "$OUT/traces2.tar" ./*.json.gz)
echo "trace at ${SECONDS}s"
timeout 90 python3 bench/sdpa_time.py 2>&1 | tee "$OUT/sdpa.log" | grep sdpa
echo "sdpa at ${SECONDS}s"
timeout 150 ncu --clock-control none --kernel-name regex:"tcForwardILb1ELi64E|tcGradKVILb1ELi64ELi64ELb1E" \
  --launch-count 2 --section SpeedOfLight --section Occupancy --section WarpStateStats \
  --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
  .gpu-check/bin/attention-check --timing-only > "$OUT/ncu-attention.txt" 2>&1
echo "ncu rc $? at ${SECONDS}s"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Stall" "$OUT/ncu-attention.txt" | head -30
python3 bench/opt_bench.py run $B "$OUT/call2-pytorch.jsonl" --only pytorch \
  --sizes 1.3b --budgets free --steps 3 --warmup 1 --timeout 90 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call2-colossal.jsonl" --only colossal \
  --sizes 6.7b --budgets 24GiB --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
echo "6.7b 24GiB at ${SECONDS}s"
