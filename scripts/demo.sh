#!/usr/bin/env bash
# The main job: set up, then train NeRF (the default method) on the built-in scene, evaluate on its test split, render an orbit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
RUN="${1:-runs/builtin}"
"$NERFKIT_PY" -m nerfkit train --output "$RUN"
"$NERFKIT_PY" -m nerfkit eval --run "$RUN"
"$NERFKIT_PY" -m nerfkit render --run "$RUN"
