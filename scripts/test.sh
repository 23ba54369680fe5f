#!/usr/bin/env bash
#===- test.sh - Set up, build and run every test ---------------------------===#
#
# Usage: bash scripts/test.sh
#   BUILD_DIR, JOBS       as for scripts/build.sh
#   CTEST_PARALLEL_LEVEL  tests run at once (default: JOBS, else the core count)
#
# Runs scripts/setup.sh and scripts/build.sh, then
#   ctest --test-dir $BUILD_DIR --output-on-failure
# which runs every lit test (one ctest entry per test/**/*.{mlir,test} file,
# e2e included) and every GoogleTest unit test, and prints a final summary
# line. Exits non-zero if anything fails.
#
#===----------------------------------------------------------------------===#
set -euo pipefail

log() { echo "[test] $*"; }
die() { echo "[test] error: $*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BUILD_DIR=${BUILD_DIR:-build}
start=$SECONDS

bash scripts/setup.sh
bash scripts/build.sh

# What ctest will run: the lit suite and the unit tests must both be there.
listing=$(ctest --test-dir "$BUILD_DIR" -N) || die "ctest -N failed in $BUILD_DIR"
total=$(grep -cE '^ *Test +#[0-9]+: ' <<<"$listing" || true)
nlit=$(grep -cE '^ *Test +#[0-9]+: lit/' <<<"$listing" || true)
nunit=$((total - nlit))
log "ctest lists $total tests: $nlit lit, $nunit unit"
[[ $nlit -gt 0 ]] || die "ctest lists no lit tests (lit/...): is COLOSSAL_BUILD_TESTS on?"
[[ $nunit -gt 0 ]] || die "ctest lists no unit tests: is COLOSSAL_BUILD_TESTS on, and GoogleTest (libgtest-dev) found?"

export CTEST_PARALLEL_LEVEL=${CTEST_PARALLEL_LEVEL:-${JOBS:-$(nproc)}}
log "running: ctest --test-dir $BUILD_DIR --output-on-failure ($CTEST_PARALLEL_LEVEL at a time)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
ctest --test-dir "$BUILD_DIR" --output-on-failure 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e

# ctest's own summary: "97% tests passed, 3 tests failed out of 100".
line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$out" | tail -1 || true)
failed=$(sed -nE 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/p' <<<"$line")
outof=$(sed -nE 's/.* failed out of ([0-9]+).*/\1/p' <<<"$line")
secs=$((SECONDS - start))
if [[ $rc -eq 0 && -n "$line" ]]; then
  log "SUMMARY: PASS: all $outof tests passed ($nlit lit, $nunit unit) in ${secs} s"
elif [[ -n "$line" ]]; then
  names=$(sed -n '/The following tests FAILED:/,$p' "$out" | sed -nE 's/^[[:space:]]*[0-9]+ - ([^ ]+).*/\1/p' | tr '\n' ' ')
  log "SUMMARY: FAIL: $failed of $outof tests failed ($nlit lit, $nunit unit) in ${secs} s: ${names% }"
else
  log "SUMMARY: FAIL: ctest exited $rc without a summary (see above) after ${secs} s"
fi
exit $(( rc == 0 ? 0 : 1 ))
