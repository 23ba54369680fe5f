#!/bin/bash
# Session 7, call 1: what holds the host update back in an offloaded step.
# 1. host-update-bench: the runtime's host AdamW (bf16 gradient, divisor)
#    on malloc'd, cudaHostAlloc'd and huge-page registered memory, 16/15/12/8
#    threads, alone and beside PCIe copies both ways.
# 2. OPT-6.7b under 24 GiB (plans compiled with devices/h200-fitted.json and
#    the share order of session 6's last commits): the step-end wait asleep
#    (the new default), spinning (COLOSSAL_CUDA_STEP_WAIT=spin: session 6's
#    behaviour), and asleep on huge-page host arenas (COLOSSAL_HOST_PAGES).
# 3. OPT-2.7b under 24 GiB and 6 GiB, asleep and spinning; OPT-125m
#    unconstrained asleep and spinning (the wake-up's cost on a short step).
# 4. Time left: a trace of OPT-6.7b under 24 GiB (step 2 of 3).
# Carry .gpu-carry (bundle.tar.xz).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SECONDS=0
B=.bench-opt
timeout 90 .gpu-check/bin/host-update-bench --repeats 3 2>&1 | tee "$OUT/host-update.log"
echo "host-update-bench done at ${SECONDS}s"
steps() { python3 -c "import json,sys;print([round(json.loads(l)['step_s'],4) for l in open(sys.argv[1])])" "$1" 2>/dev/null; }
one() { # name plan steps timeout env...
  local name=$1 plan=$2 n=$3 t=$4; shift 4
  env "$@" timeout $t $B/bin/colossal-run $B/plans/$plan.cplan --device cuda \
    --init random --data $B/tokens.bin --steps $n --metrics "/tmp/m-$name.jsonl" > /tmp/log-$name.txt 2>&1
  echo "$name rc=$? $(steps /tmp/m-$name.jsonl) at ${SECONDS}s"; tail -2 /tmp/log-$name.txt
  cat "/tmp/m-$name.jsonl" >> "$OUT/runs.jsonl" 2>/dev/null; echo "{\"run\": \"$name\"}" >> "$OUT/runs.jsonl"
}
one 6.7b-24-sleep opt-6.7b-24GiB 5 150
one 6.7b-24-spin opt-6.7b-24GiB 5 150 COLOSSAL_CUDA_STEP_WAIT=spin
one 6.7b-24-huge opt-6.7b-24GiB 5 150 COLOSSAL_HOST_PAGES=huge
one 2.7b-24-sleep opt-2.7b-24GiB 5 60
one 2.7b-6-sleep opt-2.7b-6GiB 5 60
one 2.7b-6-spin opt-2.7b-6GiB 5 60 COLOSSAL_CUDA_STEP_WAIT=spin
one 125m-free-sleep opt-125m-free 20 40
one 125m-free-spin opt-125m-free 20 40 COLOSSAL_CUDA_STEP_WAIT=spin
if [ $SECONDS -lt 420 ]; then
  mkdir -p /tmp/tr
  timeout 140 $B/bin/colossal-run $B/plans/opt-6.7b-24GiB.cplan --device cuda --init random \
    --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-6.7b-24.json --trace-step 2 2>&1 | tail -1
  python3 bench/trace_summary.py /tmp/tr/trace-6.7b-24.json 2>&1 | head -60 > "$OUT/trace-6.7b-24.summary.txt"
  (cd /tmp/tr && gzip -f trace-6.7b-24.json && cp trace-6.7b-24.json.gz "$OUT/")
  echo "trace at ${SECONDS}s"
fi
