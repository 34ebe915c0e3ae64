#!/usr/bin/env bash
# The main job on the bundled demo data: set-up included, runnable on a fresh machine.
# Today: the synthetic feature store (`misr synth`), read back into training tensors.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MISR_ROOT"
misr params > /dev/null
misr synth --force
misr inspect --split train
