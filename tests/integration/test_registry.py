import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from misr.config.params import load_params
from misr.errors import MisrError
from misr.registry.gate import register

REPO = Path(__file__).resolve().parents[2]
PARAMS = load_params(
    REPO / "params.yaml", ["register.min_margin=0.01", "register.tolerance=0.02", "register.guard_metrics=[Non0_acc_2, Corr]"]
).registration


# ------------------------------------------------------------------------------ a real repository


def sh(cwd, *args):
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert res.returncode == 0, res.stderr
    return res.stdout


def write_eval(repo: Path, mae: float, corr: float = 0.6, acc: float = 0.75):
    folder = repo / "eval"
    folder.mkdir(exist_ok=True)
    metrics = {"valid": {"mean": {"MAE": mae, "Non0_acc_2": acc, "Corr": corr}, "std": {}}, "train_mean_baseline": {"valid_MAE": 1.2}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def repo(tmp_path):
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "git", "config", "user.name", "misr test")
    sh(tmp_path, "git", "config", "user.email", "misr@test")
    sh(tmp_path, sys.executable, "-m", "dvc", "init", "-q")
    (tmp_path / "dvc.yaml").write_text("artifacts:\n  misr-sentiment:\n    path: models/m\n    type: model\n")
    write_eval(tmp_path, 0.9)
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-qm", "candidate 1")
    return tmp_path


def gto_show(repo):
    return sh(repo, str(Path(sys.executable).parent / "gto"), "show")


def tags(repo):
    return sorted(sh(repo, "git", "tag").split())


def test_registration_promotes_then_holds_then_promotes_again(repo):
    d1 = register(PARAMS, repo, repo / "eval")
    assert d1.promote and d1.version == "v0.0.1"
    assert tags(repo) == ["misr-sentiment#prod#1", "misr-sentiment@v0.0.1"]
    out = gto_show(repo)
    assert "misr-sentiment" in out and "v0.0.1" in out
    decision = json.loads((repo / "eval" / "registration" / "decision.json").read_text())
    assert decision["promote"] is True and decision["prod_version"] is None
    assert not sh(repo, "git", "status", "--porcelain").strip()  # the decision was committed with it

    write_eval(repo, 0.95)  # worse on MAE
    sh(repo, "git", "commit", "-qam", "candidate 2")
    d2 = register(PARAMS, repo, repo / "eval")
    assert not d2.promote and d2.prod_version == "v0.0.1" and d2.version is None
    assert tags(repo) == ["misr-sentiment#prod#1", "misr-sentiment@v0.0.1"]

    write_eval(repo, 0.85)
    sh(repo, "git", "commit", "-qam", "candidate 3")
    d3 = register(PARAMS, repo, repo / "eval")
    assert d3.promote and d3.version == "v0.0.2"
    out = gto_show(repo)
    assert "v0.0.2" in out
    prod_line = [line for line in out.splitlines() if "misr-sentiment" in line][0]
    assert prod_line.count("v0.0.2") == 2  # latest and #prod


def test_uncommitted_changes_stop_registration_unless_asked_to_commit(repo):
    write_eval(repo, 0.5)
    with pytest.raises(MisrError, match="uncommitted changes") as info:
        register(PARAMS, repo, repo / "eval")
    assert "eval/metrics.json" in str(info.value)
    assert tags(repo) == [] and not (repo / "eval" / "registration").exists()
    d = register(PARAMS, repo, repo / "eval", commit=True)
    assert d.promote and tags(repo) == ["misr-sentiment#prod#1", "misr-sentiment@v0.0.1"]
    assert "candidate for misr-sentiment" in sh(repo, "git", "log", "--format=%s")


def test_decide_only_touches_no_git_state(repo):
    write_eval(repo, 0.5)
    d = register(PARAMS, repo, repo / "eval", decide_only=True)
    assert d.promote and tags(repo) == []
    assert (repo / "eval" / "registration" / "decision.json").exists()


def test_a_model_no_better_than_the_mean_is_not_registered(repo):
    write_eval(repo, 1.3)
    sh(repo, "git", "commit", "-qam", "bad")
    d = register(PARAMS, repo, repo / "eval")
    assert not d.promote and tags(repo) == []


def minimal_card() -> dict:
    return {
        "model": "misr",
        "artifact": None,
        "created": "2026-01-01T00:00:00+00:00",
        "dataset": {"name": "demo", "source": "raw", "convention": "mosi", "quarantined_clips": 0, "label_distribution": {}},
        "metrics": {"valid": {"mean": {"MAE": 0.5}, "std": {"MAE": 0.0}}},
        "baseline": {"valid_MAE": 1.2},
        "robustness": None,
        "training": {"device": "cpu", "world_size": 1, "seconds": 1.0, "seeds": {}},
        "params": {},
        "environment": {"python": "3", "platform": "x", "packages": {}},
        "git": {"commit": "0" * 40, "code_dirty": False},
        "hashes": {},
        "registration": None,
    }


def test_the_registered_card_names_the_commit_that_holds_code_and_reports(repo):
    write_eval(repo, 0.5)
    (repo / "eval" / "model_card.json").write_text(json.dumps(minimal_card()))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "candidate with a card")
    d = register(PARAMS, repo, repo / "eval")
    assert d.promote
    card = json.loads((repo / "eval" / "registered" / "model_card.json").read_text())
    named = card["git"]["registered_commit"]
    # the named commit holds the metrics and the decision; the tagged commit adds only the card
    assert named == sh(repo, "git", "rev-parse", "HEAD~1").strip()
    assert sh(repo, "git", "show", f"{named}:eval/registration/decision.json")
    assert sh(repo, "git", "diff", "--name-only", named, "HEAD").split() == [
        "eval/registered/model_card.json",
        "eval/registered/model_card.md",
    ]
    assert (
        sh(repo, "git", "rev-list", "-n", "1", "misr-sentiment@v0.0.1").strip() == d.commit == sh(repo, "git", "rev-parse", "HEAD").strip()
    )
    md = (repo / "eval" / "registered" / "model_card.md").read_text()
    assert f"committed together as `{named}`" in md and card["artifact"] == "misr-sentiment"
