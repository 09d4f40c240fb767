#!/usr/bin/env bash
# Creates (or reuses) the Python environment and installs nerfkit into it. Sourced by demo.sh and test.sh.
#
# - Inside an activated virtual environment ($VIRTUAL_ENV), that environment is used; otherwise ./.venv.
# - An existing torch is kept. Only when none is importable is torch==2.13.0 installed (the CPU build on
#   machines that provide it locally), before the package, so pip never resolves torch on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY=.venv/bin/python
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
# The test command asks for the test extras (pytest, and Triton to check the kernels on the CPU interpreter).
"$PY" -m pip install --quiet -e ".${NERFKIT_EXTRAS:+[$NERFKIT_EXTRAS]}"
export NERFKIT_PY="$PY"
