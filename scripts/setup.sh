#!/usr/bin/env bash
#===- setup.sh - Prepare a Debian 12 machine to build and test colossal-opt ===#
#
# Usage: bash scripts/setup.sh      (as root, or as a user with sudo)
#
# Idempotent. Installs the toolchain of docs/TOOLCHAIN.md from apt: LLVM/MLIR
# 22 (from the bookworm-security suite, which this script adds to the apt
# sources if it is missing), libonnx + protobuf, Python's onnx and numpy for
# the test utilities, GoogleTest, clang-22 for the fuzzers, ccache and mold.
# When every package is already installed it changes nothing and needs no
# root. CUDA is not apt-installable on Debian 12 main: this only reports
# whether /usr/local/cuda exists (the CUDA backend needs it; the CPU backend
# and every test do not).
#
#===----------------------------------------------------------------------===#
set -euo pipefail

log() { echo "[setup] $*"; }
die() { echo "[setup] error: $*" >&2; exit 1; }

PACKAGES=(
  build-essential cmake ninja-build
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  libonnx-dev libprotobuf-dev protobuf-compiler python3-onnx python3-numpy python3-venv
  ccache mold libgtest-dev clang-22 libclang-rt-22-dev
)

# --- the OS -----------------------------------------------------------------
if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  if [[ "${ID:-}" != debian || "${VERSION_CODENAME:-}" != bookworm ]]; then
    log "warning: this recipe is for Debian 12 (bookworm); found ${PRETTY_NAME:-unknown}"
  fi
fi
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script needs Debian 12 (apt/dpkg)"

# --- which packages are missing ---------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" != "ii "* ]]; then
    missing+=("$p")
  fi
done

has_security_suite() {
  # Uncommented one-line (.list) or deb822 (.sources) entries naming the suite.
  grep -qhsE '^[^#]*bookworm-security' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources
}

if [[ ${#missing[@]} -eq 0 ]]; then
  log "all ${#PACKAGES[@]} packages are installed; skipping apt"
else
  log "missing ${#missing[@]} of ${#PACKAGES[@]} packages: ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
    log "not root: using sudo"
  else
    die "installing packages needs root, and sudo is not available; as root run: bash scripts/setup.sh"
  fi

  # LLVM/MLIR 22 are only in bookworm-security (docs/TOOLCHAIN.md section 1).
  if has_security_suite; then
    log "apt sources include bookworm-security"
  else
    src=/etc/apt/sources.list.d/debian-security.sources
    log "adding bookworm-security to the apt sources ($src)"
    {
      echo "Types: deb"
      echo "URIs: http://deb.debian.org/debian-security"
      echo "Suites: bookworm-security"
      echo "Components: main"
      if [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
        echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
      fi
    } | "${SUDO[@]}" tee "$src" >/dev/null
    has_security_suite || die "could not add bookworm-security to the apt sources"
  fi

  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update \
    || die "apt-get update failed"
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y \
    --no-install-recommends "${missing[@]}" \
    || die "apt-get install failed (is bookworm-security reachable? llvm-22/mlir-22 come from there)"

  still=()
  for p in "${missing[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" == "ii "* ]] || still+=("$p")
  done
  [[ ${#still[@]} -eq 0 ]] || die "still not installed after apt-get: ${still[*]}"
  log "installed ${#missing[@]} packages"
fi

# --- what the build and the tests rely on -----------------------------------
need() { [[ -e "$1" ]] || die "$1 is missing ($2)"; }
need /usr/lib/llvm-22/lib/cmake/mlir/MLIRConfig.cmake "libmlir-22-dev"
need /usr/lib/llvm-22/bin/mlir-tblgen "mlir-22-tools"
for t in FileCheck not lit; do need "/usr/lib/llvm-22/bin/$t" "llvm-22-tools"; done
compgen -G "/usr/lib/*/cmake/ONNX/ONNXConfig.cmake" >/dev/null || die "ONNX CMake package not found under /usr/lib/*/cmake/ONNX (libonnx-dev)"
/usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null \
  || die "/usr/bin/python3 cannot import onnx and numpy (python3-onnx, python3-numpy)"
log "toolchain: $(cmake --version | head -1), ninja $(ninja --version), LLVM $(/usr/lib/llvm-22/bin/llvm-config --version)," \
    "python onnx $(/usr/bin/python3 -c 'import onnx; print(onnx.__version__)')"

# --- CUDA (not from apt: the image provides it, or it is absent) -------------
if [[ -e /usr/local/cuda ]]; then
  ver="unknown version"
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then
    ver="nvcc $(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \(.*\)$/\1/p' | head -1)"
  fi
  log "CUDA: /usr/local/cuda -> $(readlink -f /usr/local/cuda) ($ver)"
else
  log "CUDA: /usr/local/cuda not found (not apt-installable here); the CPU backend and the tests do not need it"
fi
# --- the Python virtualenv with onnxruntime (op tests' reference) -----------
bash "$(dirname "${BASH_SOURCE[0]}")/python-env.sh"
log "done"
