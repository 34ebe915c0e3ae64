"""A user's first steps: `git clone`, the documented command that writes the corpus, then `dvc repro`.

The corpus is the user's data (a DVC source), so a clone has data/raw/demo.dvc and not the clips; DVC alone
says only "missing data 'source'". The project says what to run where it can, and after that one command
`dvc repro` runs.
"""

import hashlib
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, misr

pytestmark = pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the git checkout")


def dvc(clone, *args):
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=clone, capture_output=True, text=True, timeout=300)


@pytest.fixture
def clone(tmp_path):
    subprocess.run(["git", "clone", "-q", str(REPO), str(tmp_path / "clone")], check=True, timeout=300)
    return tmp_path / "clone"


@pytest.mark.slow
def test_a_fresh_clone_says_what_to_run_and_then_runs_the_pipeline(clone, tmp_path):
    res = dvc(clone, "repro", "--dry")
    assert res.returncode != 0 and "data/raw/demo" in res.stdout + res.stderr
    # scripts/env.sh, the first thing a user sources, names the command (an environment stand-in: no install)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "activate").write_text("")
    (venv / ".misr-installed").write_text(hashlib.sha256((clone / "pyproject.toml").read_bytes()).hexdigest()[:16] + "\n")
    env = {**os.environ, "MISR_VENV": str(venv), "PYTHON": sys.executable}
    sourced = subprocess.run(["bash", "-c", ". scripts/env.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    assert sourced.returncode == 0, sourced.stderr
    assert "misr demo-corpus" in sourced.stderr and "dvc repro" in sourced.stderr
    # so does the extract stage when it is run on the missing corpus
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.extract", "data/raw/demo", "data/features/demo", "--dataset", "demo"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "dvc pull data/raw/demo.dvc" in res.stderr and "misr demo-corpus" in res.stderr, res.stderr
    assert misr("demo-corpus", "--n", "13", cwd=clone).returncode == 0
    # the stage that needed the corpus runs (what follows it needs nothing a clone lacks: tests/e2e/test_retrain.py)
    res = dvc(clone, "repro", "extract")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (clone / "data" / "features" / "demo" / "clips.parquet").exists()
    again = subprocess.run(["bash", "-c", ". scripts/env.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    assert "demo-corpus" not in again.stderr
