#!/bin/bash
# Session 7, call 5: updates streamed through the device on OPT-2.7b under
# 6 GiB after the fetch-order fix: the harness plan (--stream-updates auto:
# 22 of 179 host updates streamed, predicted 0.957 s) against the same
# compile with --stream-updates off (predicted 1.048 s), alternating, two
# runs each. Carry .gpu-carry (bundle5.tar.xz).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle5.tar.xz
B=.bench-opt
SECONDS=0
steps() { python3 -c "import json,sys;print([round(json.loads(l)['step_s'],4) for l in open(sys.argv[1])])" "$1" 2>/dev/null; }
for rep in 1 2; do
  for p in opt-2.7b-6GiB opt-2.7b-6GiB-off; do
    timeout 45 $B/bin/colossal-run $B/plans/$p.cplan --device cuda --init random \
      --data $B/tokens.bin --steps 5 --metrics /tmp/m-$p-$rep.jsonl > /dev/null 2>&1
    echo "$p run $rep: $(steps /tmp/m-$p-$rep.jsonl) at ${SECONDS}s"
  done
done
