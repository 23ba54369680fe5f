#!/usr/bin/env bash
#===- attention_check.sh - Fused attention kernels on the GPU --------------===#
#
# Usage (on this machine, then on the GPU machine):
#   cmake -S . -B build-cuda -G Ninja -DCOLOSSAL_ENABLE_CUDA=ON
#   ninja -C build-cuda attention-check
#   bash bench/attention_check.sh [BIN_DIR]      # on the GPU machine
# BIN_DIR defaults to build-cuda/bin. Runs attention-check (bench/
# attention_check.cpp: every case against the CPU reference, then the
# OPT-1.3b-shaped timing, fused vs unfused) and exits with its status.
# docs/cuda.md ("Fused attention") records its output.
#
#===----------------------------------------------------------------------===#
set -euo pipefail
bin=${1:-build-cuda/bin}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
"$bin/attention-check"
