#!/bin/bash
# Session 6, call 4: how the CPU waits for the GPU when the host updates
# run across the step boundary. Call 3 had OPT-6.7b under 24 GiB at 2.169 s
# a step in the harness and 2.008 with COLOSSAL_CUDA_SCHEDULE=yield; before
# making yield colossal-run's default for carried plans (a build of that
# ran here), the two other carried rows, alternating CUDA's default (auto)
# and yield. The call ran past its 170 s limit after five of the seven
# runs (each start-up took ~20 s); yield was not made the default. Carry .gpu-carry (bundle4.tar.xz: colossal-run, two
# plans of call 3, the token file).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle4.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SECONDS=0
B=.bench-opt
for rep in 1 2; do
  for mode in auto yield; do
    for s in 1.3b 2.7b; do
      [ "$s" = 2.7b ] && [ "$rep" = 2 ] && continue
      COLOSSAL_CUDA_SCHEDULE=$mode timeout 60 $B/bin/colossal-run $B/plans/opt-$s-6GiB.cplan --device cuda \
        --init random --data $B/tokens.bin --steps 4 --metrics "$OUT/sched-$s-$mode-$rep.jsonl" > /dev/null 2>&1
      echo "$s $mode $rep: $(python3 -c "import json,sys;print([round(json.loads(l)['step_s'],4) for l in open(sys.argv[1])])" "$OUT/sched-$s-$mode-$rep.jsonl") at ${SECONDS}s"
    done
  done
done
