# Sourced by scripts/demo.sh and scripts/test.sh: create or reuse the virtual environment and set
# the environment the pipeline expects. Safe to source repeatedly; installs only when needed.
set -euo pipefail
MISR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MISR_VENV="${MISR_VENV:-$MISR_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: misr needs Python >= 3.11; $("$PYTHON" --version 2>&1) found (set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi
if [ ! -x "$MISR_VENV/bin/python" ]; then
    echo "creating the virtual environment $MISR_VENV" >&2
    "$PYTHON" -m venv "$MISR_VENV"
fi
# shellcheck disable=SC1091
. "$MISR_VENV/bin/activate"

# Reinstall when the dependency list changes. torch first, pinned: an open torch requirement would
# pull a multi-GB CUDA build; with 2.13.0 present, the package's range is already satisfied.
stamp="$MISR_VENV/.misr-installed"
want="$(cat "$MISR_ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "installing torch==2.13.0 and misr into $MISR_VENV (first run: several minutes)" >&2
    python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
    python -m pip install --quiet --disable-pip-version-check -e "$MISR_ROOT[dev,dask,mmsa]"
    echo "$want" > "$stamp"
fi

export PREFECT_HOME="${PREFECT_HOME:-$MISR_ROOT/.prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}"
export DVC_NO_ANALYTICS=1
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1

# A fresh clone has data/raw/demo.dvc, not the clips (DVC would say only "missing data 'source'"): say what to run.
if [ -e "$MISR_ROOT/data/raw/demo.dvc" ] && [ ! -e "$MISR_ROOT/data/raw/demo" ]; then
    echo "note: the demo corpus data/raw/demo is not here yet: 'misr demo-corpus' writes it (or 'dvc pull' from your remote); then 'dvc repro'" >&2
fi
