#!/usr/bin/env bash
# The main job on the bundled demo data: set-up included, runnable on a fresh machine.
# The demo corpus (data/raw/demo, versioned by data/raw/demo.dvc) is written once when it is missing;
# from then on it is your data: add clips there and run this again. `misr retrain` records the corpus's
# version, runs the pipeline (dvc repro: extraction, training, evaluation, gate), commits the .dvc file,
# dvc.lock and the reports, registers the model with GTO when the gate passes (prod), and pushes data to
# the local DVC remote. Run again: it does nothing until the corpus changes.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MISR_ROOT"
git config user.name > /dev/null || git config user.name "misr demo"
git config user.email > /dev/null || git config user.email "misr-demo@localhost"
misr params > /dev/null
# the same bytes as data/raw/demo.dvc records (the generator is deterministic); never over an existing corpus
[ -e data/raw/demo ] || misr demo-corpus
misr retrain
dvc metrics show
gto show
