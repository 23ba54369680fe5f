#!/usr/bin/env bash
#===- fuzz.sh - Build the libFuzzer targets and run each for a set time ----===#
#
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#   FUZZ_TARGETS   targets to run, a subset of: plan-reader safetensors
#                  onnx-import (default: all three, in that order)
#   FUZZ_BUILD_DIR build dir (default: build-fuzz)
#   FUZZ_ARGS      extra libFuzzer flags, e.g. "-seed=1 -max_len=8192"
#   JOBS           ninja parallelism (default 2)
#
# Configures FUZZ_BUILD_DIR with clang-22 and -DCOLOSSAL_ENABLE_FUZZERS=ON
# (RelWithDebInfo at -O1, assertions on; the CUDA backend off: no target
# runs it, and nvcc need not work with clang), builds the colossal-fuzz-*
# targets and runs each one after the other, one process each, with
#   -max_total_time=SECONDS -rss_limit_mb=4096 -timeout=10
# and the target's dictionary. Each target's corpus grows in
# FUZZ_BUILD_DIR/corpus/<target> (seeded from fuzz/corpus/, which is only
# read); crashes, timeouts, OOMs and leaks are saved under
# FUZZ_BUILD_DIR/crashes/<target>/ and the libFuzzer log is
# FUZZ_BUILD_DIR/logs/<target>.log. A target stops at its first finding;
# the UBSan reports of known open bugs in fuzz/known-open.supp are skipped.
# Prints one summary line per target and exits 1 if any target found
# something. docs/fuzzing.md explains how to reproduce and minimise.
#
#===----------------------------------------------------------------------===#
set -euo pipefail

log() { echo "[fuzz] $*"; }
die() { echo "[fuzz] error: $*" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
seconds=${1:-60}
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] ||
  die "SECONDS_PER_TARGET must be a positive integer, got '$seconds'"
build=${FUZZ_BUILD_DIR:-build-fuzz}
targets=${FUZZ_TARGETS:-plan-reader safetensors onnx-import}
jobs=${JOBS:-2}

for tool in clang-22 clang++-22; do
  command -v "$tool" >/dev/null ||
    die "$tool not found: apt-get install clang-22 libclang-rt-22-dev"
done
[[ -d /usr/lib/llvm-22/lib/clang/22/lib/linux ]] &&
  ls /usr/lib/llvm-22/lib/clang/22/lib/linux/libclang_rt.fuzzer-x86_64.a \
    >/dev/null 2>&1 ||
  die "libFuzzer runtime missing: apt-get install libclang-rt-22-dev"

# Configure once; later runs only rebuild.
if [[ ! -f "$build/build.ninja" ]]; then
  log "configuring $build with clang-22"
  cmake -S . -B "$build" -G Ninja \
    -DCOLOSSAL_ENABLE_FUZZERS=ON -DCOLOSSAL_ENABLE_CUDA=OFF \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g" \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" >/dev/null
fi
log "building the fuzz targets (ninja -j$jobs)"
ninja -C "$build" -j"$jobs" colossal-fuzzers

# target -> seed corpus and dictionary (fuzz/<name>)
seeds_of() {
  case $1 in
  plan-reader) echo "plan plan.dict" ;;
  safetensors) echo "safetensors safetensors.dict" ;;
  onnx-import) echo "onnx onnx.dict" ;;
  *) die "unknown target '$1' (plan-reader, safetensors, onnx-import)" ;;
  esac
}

# Known open compiler-side findings are suppressed so that a run can get
# past them (fuzz/known-open.supp lists each with its reproducer).
supp="$root/fuzz/known-open.supp"
n=0
[[ -f "$supp" ]] && n=$(grep -cvE '^[[:space:]]*(#|$)' "$supp" || true)
if [[ $n -gt 0 ]]; then
  log "suppressing $n known open UBSan report(s): $supp"
  export UBSAN_OPTIONS="suppressions=$supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
fi

summary=()
found=0
for t in $targets; do
  read -r seeds dict < <(seeds_of "$t")
  bin="$build/bin/colossal-fuzz-$t"
  corpus="$build/corpus/$t"
  crashes="$build/crashes/$t"
  logf="$build/logs/$t.log"
  mkdir -p "$corpus" "$crashes" "$build/logs"
  before=$(find "$crashes" -type f | sort)
  log "running $t for $seconds s (log: $logf)"
  set +e
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  "$bin" "$corpus" "fuzz/corpus/$seeds" \
    -dict="fuzz/$dict" \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 \
    -artifact_prefix="$crashes/" -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$logf" 2>&1
  rc=$?
  set -e
  fresh=$(comm -13 <(echo "$before") <(find "$crashes" -type f | sort) |
    sed '/^$/d')
  new=$(sed '/^$/d' <<<"$fresh" | wc -l)

  # "#123 INITED cov: 3409 ft: ..." then "Done 4567 runs in 60 second(s)".
  cov0=$(sed -nE 's/^#[0-9]+[[:space:]]+INITED.* cov: ([0-9]+).*/\1/p' "$logf" | tail -1)
  cov1=$(grep -E '^#[0-9]+[[:space:]].* cov: [0-9]+' "$logf" | tail -1 |
    sed -nE 's/.* cov: ([0-9]+).*/\1/p')
  corp=$(grep -E '^#[0-9]+[[:space:]].* corp: [0-9]+' "$logf" | tail -1 |
    sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p')
  runs=$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+)/\1/p' "$logf" | tail -1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: +([0-9]+)/\1/p' "$logf" | tail -1)
  line=$(printf '%-12s %5ss  executions %s (%s/s)  coverage %s -> %s (+%s)  corpus %s  crashes %s' \
    "$t" "$seconds" "${runs:-?}" "${rate:-?}" "${cov0:-?}" "${cov1:-?}" \
    "$(( ${cov1:-0} - ${cov0:-0} ))" "${corp:-?}" "$new")
  if [[ $new -gt 0 || $rc -ne 0 ]]; then
    found=1
    reason=$(grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY|ERROR: libFuzzer|fuzzer: ' "$logf" || true)
    line+="  <- ${reason:-exit $rc}"
    for f in $fresh; do
      line+=$'\n'"             $f"
    done
  fi
  summary+=("$line")
done

echo
log "summary (executions, new coverage edges, corpus size, new findings):"
for l in "${summary[@]}"; do echo "  $l"; done
if [[ $found -ne 0 ]]; then
  log "findings saved under $build/crashes/; reproduce with"
  log "  $build/bin/colossal-fuzz-<target> <file>   (docs/fuzzing.md)"
  exit 1
fi
