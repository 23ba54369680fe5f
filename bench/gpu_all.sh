#!/bin/bash
#===- gpu_all.sh - Every GPU check and measurement in one device call -----===#
#
# The device budget favours few, full calls, so this bundles what the CUDA
# issues ask to be run on the H200:
#
#   bench/gpu_all.sh prepare      here (the CUDA build in build-cuda and the
#                                 compiler in build/ done): fills .gpu-check
#                                 (bench/gpu_check.sh prepare, plus the
#                                 attention-check binary) and .bench-opt
#                                 (bench/opt_bench.py prepare for SIZES and
#                                 BUDGETS, plus one budgeted OPT-350m plan
#                                 whose step is traced). Both folders are
#                                 ignored by git: carry them.
#   bench/gpu_all.sh run          there, from the repository root:
#                                 1. bench/gpu_check.sh run (kernel test,
#                                    oracle curves cpu vs cuda, budgeted
#                                    plans, planned = measured peak);
#                                 2. attention-check (fused attention vs the
#                                    CPU reference, timings);
#                                 3. a --trace of step 2 of the budgeted
#                                    OPT-350m plan ($OUT/trace-opt-350m.json);
#                                 4. bench/opt_bench.py run (colossal-run
#                                    beside PyTorch) into $OUT/bench.jsonl.
#                                 Logs go to $OUT/*.log.
#
# Environment: SIZES (default 125m,350m,1.3b), BUDGETS (free,24GiB),
# TRACE_BUDGET (6GiB), STEPS (4), BENCH_TIMEOUT (150 s a run), PARTS (run only these of
# check,attention,trace,bench; default all), COMPILE_FLAGS (prepare: more
# colossal-opt flags), BENCH_ONLY (run: colossal or pytorch rows only).
# The run's variables (COLOSSAL_CUDA_FUSED=f32, COLOSSAL_ATTENTION_KERNEL=
# simple, ...) reach every colossal-run and are recorded in each bench row.
#
#===----------------------------------------------------------------------===#
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
SIZES=${SIZES:-125m,350m,1.3b}
BUDGETS=${BUDGETS:-free,24GiB}
TRACE_BUDGET=${TRACE_BUDGET:-6GiB}
STEPS=${STEPS:-4}
PARTS=${PARTS:-check,attention,trace,bench}
models=$(cd "$here/.." && pwd)/shared/models

prepare() {
  set -e
  bash "$here/bench/gpu_check.sh" prepare "$here/.gpu-check"
  cp "$here/build-cuda/bin/attention-check" "$here/.gpu-check/bin/"
  cp "$here/build-cuda/bin/host-update-bench" "$here/.gpu-check/bin/"
  rm -rf "$here/.bench-opt"
  # COMPILE_FLAGS: more colossal-opt flags for every plan, e.g.
  # "--device-profile devices/h200-fitted.json" (predictions with the
  # fitted kernel efficiencies, docs/planner.md).
  # shellcheck disable=SC2086
  /usr/bin/python3 "$here/bench/opt_bench.py" prepare "$here/.bench-opt" \
    --sizes "$SIZES" --budgets "$BUDGETS" \
    --colossal-run "$here/build-cuda/bin/colossal-run" -- ${COMPILE_FLAGS:-}
  "$here/build/bin/colossal-opt" compile \
    "$models/opt-350m-noweights.dynamo.dynamic.onnx" \
    --shape input_ids=8x1024 --shape labels=8x1024 --precision bf16 \
    --budget "$TRACE_BUDGET" -o "$here/.bench-opt/plans/opt-350m-trace.cplan" \
    --report-json "$here/.bench-opt/plans/opt-350m-trace.report.json"
  du -sh "$here/.gpu-check" "$here/.bench-opt"
}

part() { [[ ",$PARTS," == *",$1,"* ]]; }

run() {
  local out=${OUT:-/tmp/gpu-all}
  mkdir -p "$out"
  local status=0
  if part check; then
    bash "$here/bench/gpu_check.sh" run "$here/.gpu-check" || status=1
  fi
  if part attention; then
    timeout 120 "$here/.gpu-check/bin/attention-check" 2>&1 | tee "$out/attention.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  fi
  if part trace; then
    local b=$here/.bench-opt
    echo "== trace: opt-350m at $TRACE_BUDGET" | tee "$out/trace.log"
    timeout 180 "$b/bin/colossal-run" "$b/plans/opt-350m-trace.cplan" --device cuda \
      --init random --data "$b/tokens.bin" --steps 3 --trace "$out/trace-opt-350m.json" \
      --trace-step 2 2>&1 | tee -a "$out/trace.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  fi
  if part bench; then
    python3 "$here/bench/opt_bench.py" run "$here/.bench-opt" "$out/bench.jsonl" \
      ${BENCH_ONLY:+--only "$BENCH_ONLY"} \
      --steps "$STEPS" --warmup 1 --timeout "${BENCH_TIMEOUT:-150}" 2>&1 | tee "$out/bench.log"
  fi
  echo "gpu_all: exit $status"
  exit $status
}

case "$cmd" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare | run" >&2; exit 2 ;;
esac
