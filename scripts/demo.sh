#!/usr/bin/env bash
# The main job on the bundled demo data: set-up included, runnable on a fresh machine.
# Today: the DVC pipeline on the synthetic data set (synth -> train -> evaluate -> register decision).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MISR_ROOT"
misr params > /dev/null
dvc repro
dvc metrics show
