#!/bin/bash
# Session 7, call 2: updates streamed through the device (--stream-updates).
# 1. The OPT oracle offloaded on cuda: 12 of 36 updates streamed (the rest
#    on the carried host stream) against the unstreamed offloaded plan and
#    the all-device plan, 30 steps each: curves and weights compared.
# 2. OPT-6.7b under 24 GiB: none streamed (call 1's plan), 20 streamed, and
#    the count --stream-updates auto chose (41), five steps each, on huge
#    pages (the default since call 1).
# 3. OPT-2.7b and OPT-1.3b under 6 GiB: none against auto (under 24 GiB auto
#    streams none of OPT-2.7b's updates: predicted slower).
# 4. A trace of OPT-6.7b under 24 GiB with auto's plan (step 2 of 3).
# Carry .gpu-carry (bundle2.tar.xz).
set -u
cd "$(dirname "$0")/../.."
tar -xJf .gpu-carry/bundle2.tar.xz
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/xs
SECONDS=0
B=.bench-opt
X=$B/xs
for n in cuda cpu some; do
  timeout 60 $B/bin/colossal-run $X/$n.cplan --device cuda --batches $X/b.safetensors \
    --steps 30 --metrics /tmp/xs/$n.jsonl --export-weights /tmp/xs/$n.w.safetensors 2>&1 | tail -1
  cut -d, -f1-4 /tmp/xs/$n.jsonl > /tmp/xs/$n.txt
done
for a in cuda cpu; do
  if diff /tmp/xs/$a.txt /tmp/xs/some.txt > /dev/null && cmp -s /tmp/xs/$a.w.safetensors /tmp/xs/some.w.safetensors; then
    echo "oracle on cuda: streamed and $a curves and weights identical"
  else
    echo "oracle on cuda: streamed and $a DIFFER"; diff /tmp/xs/$a.txt /tmp/xs/some.txt | head -6
  fi
done
cp /tmp/xs/some.jsonl "$OUT/oracle-streamed.jsonl"
steps() { python3 -c "import json,sys;print([round(json.loads(l)['step_s'],4) for l in open(sys.argv[1])])" "$1" 2>/dev/null; }
one() { # name plan steps timeout env...
  local name=$1 plan=$2 n=$3 t=$4; shift 4
  env "$@" timeout $t $B/bin/colossal-run $B/plans/$plan.cplan --device cuda \
    --init random --data $B/tokens.bin --steps $n --metrics "/tmp/m-$name.jsonl" > /tmp/log-$name.txt 2>&1
  echo "$name rc=$? $(steps /tmp/m-$name.jsonl) at ${SECONDS}s"; tail -2 /tmp/log-$name.txt | head -1
  cat "/tmp/m-$name.jsonl" >> "$OUT/runs.jsonl" 2>/dev/null; echo "{\"run\": \"$name\"}" >> "$OUT/runs.jsonl"
}
one 6.7b-24-st opt-6.7b-24GiB-st 5 120
one 6.7b-24-none opt-6.7b-24GiB 5 120
one 6.7b-24-st20 opt-6.7b-24GiB-st20 5 120
one 2.7b-6-st opt-2.7b-6GiB-st 5 60
one 2.7b-6-none opt-2.7b-6GiB 5 60
one 1.3b-6-st opt-1.3b-6GiB-st 5 60
one 1.3b-6-none opt-1.3b-6GiB 5 60
if [ $SECONDS -lt 430 ]; then
  mkdir -p /tmp/tr
  timeout 120 $B/bin/colossal-run $B/plans/opt-6.7b-24GiB-st.cplan --device cuda --init random \
    --data $B/tokens.bin --steps 3 --trace /tmp/tr/trace-6.7b-24-st.json --trace-step 2 2>&1 | tail -1
  python3 bench/trace_summary.py /tmp/tr/trace-6.7b-24-st.json 2>&1 | head -40 > "$OUT/trace-6.7b-24-st.summary.txt"
  (cd /tmp/tr && gzip -f trace-6.7b-24-st.json && cp trace-6.7b-24-st.json.gz "$OUT/")
  echo "trace at ${SECONDS}s"
fi
