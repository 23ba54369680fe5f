#!/bin/bash
# Session 6, call 3: the harness docs/results.md is generated from. Every
# colossal row from plans compiled here with devices/h200-fitted.json as
# refitted from call 2 (the loss kernels by rows; the host updates across
# the step boundary with the tail chosen by the steady state; host kernels
# in eight tasks a thread), PyTorch's OPT-1.3b and 6.7b unconstrained as the
# same-run anchors, the OPT oracle offloaded on cuda carried vs joined
# (bitwise), and OPT-6.7b under 24 GiB with COLOSSAL_CUDA_SCHEDULE=yield
# beside its harness row. Carry .gpu-carry (bundle.tar.xz).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/xs
SECONDS=0
B=.bench-opt
X=.gpu-check/xs
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
python3 bench/opt_bench.py run $B "$OUT/call3-colossal.jsonl" --only colossal \
  --steps 3 --warmup 1 --timeout 60 2>&1 | grep opt-bench
echo "colossal rows at ${SECONDS}s"
python3 bench/opt_bench.py run $B "$OUT/call3-pytorch.jsonl" --only pytorch \
  --sizes 1.3b,6.7b --budgets free --steps 3 --warmup 1 --timeout 90 2>&1 | grep opt-bench
echo "pytorch at ${SECONDS}s"
COLOSSAL_CUDA_SCHEDULE=yield timeout 150 $B/bin/colossal-run $B/plans/opt-6.7b-24GiB.cplan --device cuda \
  --init random --data $B/tokens.bin --steps 4 --metrics "$OUT/yield-6.7b.jsonl" 2>&1 | tail -1
echo "yield 6.7b at ${SECONDS}s"
