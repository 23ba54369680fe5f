#!/usr/bin/env bash
#===- python-env.sh - The virtualenv with onnxruntime for the op tests ----===#
#
# Usage: bash scripts/python-env.sh
#
# Idempotent. Creates <repo>/.venv from Debian's /usr/bin/python3 with
# --system-site-packages (so it sees python3-onnx 1.12 and python3-numpy 1.24
# from apt) and pip-installs onnxruntime into it when `import onnxruntime`
# fails there. onnxruntime is the reference of the differential op tests
# (test/e2e/ops, test/Inputs/check_op.py); lit enables the `onnxruntime`
# feature when <repo>/.venv/bin/python can import it. Needs network access
# to PyPI only when onnxruntime is missing.
#
# Environment: PYTHON (default /usr/bin/python3) - the interpreter to base the
# venv on; VENV (default <repo>/.venv) - where to create it.
#
#===----------------------------------------------------------------------===#
set -euo pipefail

log() { echo "[python-env] $*"; }
die() { echo "[python-env] error: $*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}"
VENV="${VENV:-$ROOT/.venv}"

[[ -x "$PYTHON" ]] || die "$PYTHON not found (scripts/setup.sh installs Debian's python3)"
"$PYTHON" -c 'import numpy, onnx' 2>/dev/null \
  || die "$PYTHON cannot import numpy and onnx (run scripts/setup.sh: python3-numpy python3-onnx)"

if [[ -x "$VENV/bin/python" ]]; then
  log "virtualenv exists: $VENV"
else
  log "creating virtualenv $VENV (from $PYTHON, --system-site-packages)"
  "$PYTHON" -m venv --system-site-packages "$VENV" \
    || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi

if "$VENV/bin/python" -c 'import onnxruntime' 2>/dev/null; then
  log "onnxruntime is installed"
else
  log "installing onnxruntime into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check onnxruntime \
    || die "pip install onnxruntime failed (needs network access to PyPI)"
  "$VENV/bin/python" -c 'import onnxruntime' \
    || die "onnxruntime was installed but does not import"
fi

log "$("$VENV/bin/python" -c 'import numpy, onnx, onnxruntime as ort; print(f"numpy {numpy.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")')"
