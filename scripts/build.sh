#!/usr/bin/env bash
#===- build.sh - Configure and build colossal-opt --------------------------===#
#
# Usage: bash scripts/build.sh
#   BUILD_DIR  build directory (default: build, relative to the repository root)
#   JOBS       parallel build jobs (default: ninja's choice, about the core count)
#
# Configures with a plain `cmake -S . -B $BUILD_DIR -G Ninja` the first time
# (later runs let ninja re-run cmake when a CMakeLists.txt changes), then
# builds everything: build/bin/colossal-opt, build/bin/colossal-run, the unit
# tests. Run scripts/setup.sh first on a fresh machine.
#
#===----------------------------------------------------------------------===#
set -euo pipefail

log() { echo "[build] $*"; }
die() { echo "[build] error: $*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-}
if [[ -n "$JOBS" && ! "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
  die "JOBS must be a positive integer, got '$JOBS'"
fi
command -v cmake >/dev/null || die "cmake not found: run bash scripts/setup.sh"
command -v ninja >/dev/null || die "ninja not found: run bash scripts/setup.sh"

start=$SECONDS
if [[ -f "$BUILD_DIR/build.ninja" ]]; then
  log "using the configured $BUILD_DIR"
else
  if [[ -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    die "$BUILD_DIR has a CMakeCache.txt but no build.ninja (another generator, or a failed configure?): remove $BUILD_DIR and retry"
  fi
  log "configuring: cmake -S . -B $BUILD_DIR -G Ninja"
  cmake -S . -B "$BUILD_DIR" -G Ninja || die "cmake configure failed"
fi

log "building: ninja -C $BUILD_DIR${JOBS:+ -j $JOBS}"
ninja -C "$BUILD_DIR" ${JOBS:+-j "$JOBS"} || die "build failed"

for tool in colossal-opt colossal-run; do
  [[ -x "$BUILD_DIR/bin/$tool" ]] || die "$BUILD_DIR/bin/$tool was not built"
done
log "built $BUILD_DIR/bin/colossal-opt and $BUILD_DIR/bin/colossal-run in $((SECONDS - start)) s"
