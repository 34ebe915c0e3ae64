#!/usr/bin/env bash
# The test suite: set-up included, runnable on a fresh machine. Extra arguments go to pytest.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MISR_ROOT"
python -m pytest -q "$@"
