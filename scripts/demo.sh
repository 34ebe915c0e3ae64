#!/usr/bin/env bash
# The main job on the bundled demo data: set-up included, runnable on a fresh machine.
# `misr retrain` runs the whole pipeline (dvc repro: demo corpus, extraction, training, evaluation, gate),
# commits dvc.lock and the reports, registers the model with GTO when the gate passes (prod), and
# pushes data to the local DVC remote. Run again: it does nothing until the corpus changes.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MISR_ROOT"
git config user.name > /dev/null || git config user.name "misr demo"
git config user.email > /dev/null || git config user.email "misr-demo@localhost"
misr params > /dev/null
misr retrain
dvc metrics show
gto show
