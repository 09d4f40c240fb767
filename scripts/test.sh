#!/usr/bin/env bash
# The test suite: set up, then run pytest (extra arguments go to pytest).
set -euo pipefail
NERFKIT_EXTRAS=test source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
"$NERFKIT_PY" -m pytest -q "$@"
