#!/usr/bin/env bash
# The test suite: set-up included, runnable on a fresh machine. Extra arguments go to pytest.
# First the formatter and the linter (ruff, configured in pyproject.toml), then pytest.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MISR_ROOT"
ruff format --check --quiet . || { echo "ruff format: files above need formatting (run: ruff format .)" >&2; exit 1; }
ruff check --quiet .
# One worker per core (MISR_TEST_WORKERS=0 runs in this process); a module's tests stay on one worker,
# so its fixtures (a trained model, a corpus) are built once.
python -m pytest -q -n "${MISR_TEST_WORKERS:-auto}" --dist loadscope "$@"
