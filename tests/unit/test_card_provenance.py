"""The card's provenance: 'uncommitted changes to the code' speaks of the code the model and card come from."""

import subprocess

import yaml

from misr.evaluation.card import CODE_PATHS, code_paths
from misr.util.proc import git_state


def lock(stages: dict[str, list[str]]) -> str:
    return yaml.safe_dump(
        {"schema": "2.0", "stages": {s: {"deps": [{"path": p, "md5": "0" * 32} for p in deps]} for s, deps in stages.items()}}
    )


def test_the_code_of_a_card_is_its_stages_code(tmp_path):
    """Every file under misr/ once counted: an edit to the comparison code marked the demo's card as made from
    uncommitted code while none of its stages' code had changed."""
    assert code_paths(tmp_path, "demo") == CODE_PATHS  # no pipeline run yet: all of the code
    (tmp_path / "dvc.lock").write_text(lock({"train@demo": ["data/features/demo", "misr/model"], "evaluate@demo": ["misr/evaluation"]}))
    paths = code_paths(tmp_path, "demo")
    assert set(paths) == {"misr/model", "misr/evaluation", "dvc.yaml", "params.yaml", "pyproject.toml"}
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    for folder in ("misr/model", "misr/evaluation", "misr/compare"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "x.py").write_text("a = 1\n")
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    (tmp_path / "misr" / "compare" / "x.py").write_text("a = 2\n")
    assert git_state(tmp_path, paths)["code_dirty"] is False
    assert git_state(tmp_path, CODE_PATHS)["code_dirty"] is True
    (tmp_path / "misr" / "model" / "x.py").write_text("a = 2\n")
    assert git_state(tmp_path, paths)["code_dirty"] is True
