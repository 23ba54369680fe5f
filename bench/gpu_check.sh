#!/bin/bash
#===- gpu_check.sh - The CUDA backend on a GPU: kernels, training, forward -===#
#
# Two halves, run on two machines (docs/cuda.md has the results):
#
#   bench/gpu_check.sh prepare [DIR]
#       here, with the CUDA build done (cmake -S . -B build-cuda -G Ninja
#       -DCOLOSSAL_ENABLE_CUDA=ON && ninja -C build-cuda -j2) and
#       build/bin/colossal-opt: copies the runtime binaries that need no
#       LLVM (colossal-run, runtime-CudaKernelsTest) to DIR/bin and compiles
#       every plan the GPU machine runs into DIR (bench/gpu_check.py
#       prepare). DIR defaults to .gpu-check, which .gitignore ignores, so
#       the device tool carries it with `carry: [".gpu-check"]`.
#
#   bench/gpu_check.sh run [DIR]
#       on the GPU machine, from the repository root; everything it prints
#       also goes to $OUT/gpu_check.log when $OUT is set:
#         1. the GPU (nvidia-smi) and the libraries the binaries load;
#         2. runtime-CudaKernelsTest: every OpKind on random inputs of
#            several shapes and dtypes, CPU kernels vs CUDA backend, outputs
#            poisoned before the GPU run (one line per case), plus the
#            executor on hand-built plans and the device error path;
#         3. bench/gpu_check.py run: every training oracle 30 steps on cpu
#            and cuda (curves compared, fp32 1e-3, bf16 2e-2), --check-plan
#            on cuda, and every forward fixture on cuda against PyTorch's
#            loss and the CPU's logits.
#       Exit status 0 when every check passed.
#
#===----------------------------------------------------------------------===#
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
dir=${2:-$here/.gpu-check}
case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac

prepare() {
  set -e
  local build=${BUILD_CUDA:-$here/build-cuda}
  local opt=${COLOSSAL_OPT:-$here/build/bin/colossal-opt}
  for f in "$build/bin/colossal-run" "$build/bin/runtime-CudaKernelsTest" "$opt"; do
    [ -x "$f" ] || { echo "gpu_check: missing $f (build first)" >&2; exit 2; }
  done
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  cp "$build/bin/colossal-run" "$build/bin/runtime-CudaKernelsTest" "$dir/bin/"
  /usr/bin/python3 "$here/bench/gpu_check.py" prepare "$dir" "$opt"
  du -sh "$dir"
}

run() {
  local log=/dev/null
  [ -n "${OUT:-}" ] && log=$OUT/gpu_check.log
  {
    echo "== gpu_check $(date -u +%FT%TZ) on $(hostname)"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    # cuBLASLt is loaded at run time (cudart is linked in statically): find
    # the toolkit's copy, or the one in the Python CUDA wheels.
    local lt
    lt=$(ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 /{print $NF; exit}')
    if [ -z "$lt" ]; then
      lt=$(find /usr/local/cuda*/ /usr/lib /opt -name 'libcublasLt.so.13*' 2>/dev/null | head -1)
      [ -n "$lt" ] && export LD_LIBRARY_PATH=$(dirname "$lt")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    echo "libcublasLt: ${lt:-not found}"
    # NVRTC (COLOSSAL_CUDA_FUSED=jit) is opened with dlopen: point
    # COLOSSAL_NVRTC at it when the loader does not know it.
    local rtc
    rtc=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so\.13 /{print $NF; exit}')
    if [ -z "$rtc" ]; then
      rtc=$(find /usr/local/cuda*/ /usr/lib /opt "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)" \
        -name 'libnvrtc.so.13*' 2>/dev/null | grep -v builtins | head -1)
      [ -n "$rtc" ] && export COLOSSAL_NVRTC=$rtc
    fi
    echo "libnvrtc: ${rtc:-not found}"
    ldd "$dir/bin/colossal-run" | grep -i "cublas\|not found"
    # Binaries built on another image may not load here: then build the
    # runtime on this machine (no MLIR needed; the kernel test needs
    # GoogleTest, which may be missing, so only colossal-run).
    if ! "$dir/bin/colossal-run" --help > /dev/null 2>&1; then
      echo "the carried colossal-run does not start here; building runtime/"
      cmake -S "$here/runtime" -B /tmp/gpu_check_rt -G Ninja \
        -DCOLOSSAL_ENABLE_CUDA=ON -DCOLOSSAL_BUILD_TESTS=OFF > /dev/null &&
        ninja -C /tmp/gpu_check_rt colossal-run > /dev/null &&
        cp /tmp/gpu_check_rt/bin/colossal-run "$dir/bin/colossal-run"
    fi

    echo "== runtime-CudaKernelsTest"
    local t0=$SECONDS
    timeout 300 "$dir/bin/runtime-CudaKernelsTest" 2>&1
    local kernels=$?
    echo "runtime-CudaKernelsTest: exit $kernels in $((SECONDS - t0)) s"

    t0=$SECONDS
    python3 "$here/bench/gpu_check.py" run "$dir" "$dir/bin"
    local checks=$?
    echo "gpu_check.py: exit $checks in $((SECONDS - t0)) s"
    if [ $kernels -eq 0 ] && [ $checks -eq 0 ]; then
      echo "gpu_check: ALL PASS"
      exit 0
    fi
    echo "gpu_check: FAIL (kernels $kernels, checks $checks)"
    exit 1
  } 2>&1 | tee "$log"
}

case "$cmd" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare [DIR] | run [DIR]" >&2; exit 2 ;;
esac
