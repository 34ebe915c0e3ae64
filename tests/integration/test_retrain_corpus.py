"""The watched corpus is the user's: recorded with `dvc add`, never the target of a checkout or a rewrite."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from misr.errors import MisrError
from misr.registry.retrain import (
    Snapshot,
    check_is_source,
    checkout_outputs,
    pipeline_stages,
    record_corpus,
    registration_stage,
)

PIPELINE = """
stages:
  count:
    cmd: ls data/raw/c/Raw > data/count.txt
    deps: [data/raw/c]
    outs: [data/count.txt]
  decide:
    cmd: mkdir -p data/eval/registration && wc -l < data/count.txt > data/eval/registration/decision.txt
    deps: [data/count.txt]
    outs: [data/eval/registration]
"""


def sh(cwd, *args):
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git + DVC repository: a corpus added with `dvc add`, and two stages downstream of it."""
    repo = tmp_path / "repo"
    (repo / "data" / "raw" / "c" / "Raw").mkdir(parents=True)
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.name", "t")
    sh(repo, "git", "config", "user.email", "t@t")
    sh(repo, sys.executable, "-m", "dvc", "init", "-q")
    (repo / "data" / "raw" / "c" / "Raw" / "a.mp4").write_bytes(b"a")
    (repo / "data" / "raw" / "c" / "label.csv").write_text("video_id,clip_id,text,label,mode\n")
    sh(repo, sys.executable, "-m", "dvc", "add", "-q", "data/raw/c")
    (repo / "dvc.yaml").write_text(PIPELINE)
    sh(repo, sys.executable, "-m", "dvc", "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "pipeline")
    return repo.resolve()


def corpus_of(repo):
    return repo / "data" / "raw" / "c"


def test_a_failed_run_restores_the_outputs_and_keeps_new_clips(repo):
    stages = pipeline_stages(repo)
    target = registration_stage(stages, repo / "data" / "eval", "c")
    assert target == "decide"
    snapshot = Snapshot(repo, corpus_of(repo), stages, target)
    (corpus_of(repo) / "Raw" / "b.mp4").write_bytes(b"b")  # a user's new clip
    assert record_corpus(repo, corpus_of(repo)).endswith(".dir")
    sh(repo, sys.executable, "-m", "dvc", "repro", "-q", target)
    assert (repo / "data" / "count.txt").read_text().split() == ["a.mp4", "b.mp4"]
    sh(repo, "git", "commit", "-qam", "a run that will be undone")

    done = snapshot.restore()
    assert done[0].startswith("reset to") and done[-1] == "dvc checkout", done
    assert (repo / "data" / "count.txt").read_text().split() == ["a.mp4"]  # the output is back
    assert (corpus_of(repo) / "Raw" / "b.mp4").read_bytes() == b"b"  # the clip is still there
    recorded = yaml.safe_load((repo / "data" / "raw" / "c.dvc").read_text())["outs"][0]
    assert recorded["nfiles"] == 2  # the committed version is the old one; the next run records the new


def test_recording_the_corpus_versions_new_clips(repo):
    (corpus_of(repo) / "Raw" / "b.mp4").write_bytes(b"b")
    md5 = record_corpus(repo, corpus_of(repo))
    recorded = yaml.safe_load((repo / "data" / "raw" / "c.dvc").read_text())["outs"][0]
    assert recorded["md5"] == md5 and recorded["nfiles"] == 3
    assert sh(repo, "git", "status", "--porcelain").split() == ["M", "data/raw/c.dvc"]  # for the run's commit


def test_a_corpus_in_git_is_left_to_git(tmp_path):
    repo = tmp_path / "g"
    (repo / "raw" / "Raw").mkdir(parents=True)
    (repo / "raw" / "label.csv").write_text("video_id,clip_id,text,label,mode\n")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.name", "t")
    sh(repo, "git", "config", "user.email", "t@t")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "corpus in git")
    assert record_corpus(repo.resolve(), (repo / "raw").resolve()) == "in git"


def test_no_checkout_reaches_a_corpus_that_a_stage_writes(repo):
    """The guard: a stage whose outputs lie in the corpus is never checked out, and the layout is refused.
    (DVC itself refuses a stage output inside a `dvc add`ed folder, so here the corpus is not DVC's.)"""
    sh(repo, "git", "rm", "-q", "data/raw/c.dvc")
    maker = "  make:\n    cmd: echo made > data/raw/c/Raw/made.mp4\n    outs: [data/raw/c/Raw/made.mp4]\n"
    text = (repo / "dvc.yaml").read_text().replace("stages:\n", "stages:\n" + maker, 1)
    (repo / "dvc.yaml").write_text(text.replace("deps: [data/count.txt]", "deps: [data/count.txt, data/raw/c/Raw/made.mp4]"))
    stages = pipeline_stages(repo)
    with pytest.raises(MisrError, match="stage 'make' of dvc.yaml writes"):
        check_is_source(stages, corpus_of(repo), repo, "c")
    (corpus_of(repo) / "Raw" / "b.mp4").write_bytes(b"b")
    said = checkout_outputs(stages, corpus_of(repo), repo, "decide")
    assert said == "dvc checkout refused: stage 'make' writes into the watched corpus"
    assert (corpus_of(repo) / "Raw" / "b.mp4").exists()


def test_a_missing_register_stage_is_named(repo):
    with pytest.raises(MisrError, match="no stage of dvc.yaml writes .*registration"):
        registration_stage(pipeline_stages(repo), repo / "data" / "eval" / "other", "other")


def test_the_demo_corpus_is_never_written_over_a_folder_with_files(tmp_path):
    from misr.data.democorpus import generate
    from tests.helpers import params

    target = tmp_path / "raw"
    (target / "Raw" / "mine").mkdir(parents=True)
    (target / "label.csv").write_text("video_id,clip_id,text,label,mode\nmine,0,hello,1.0,train\n")
    with pytest.raises(MisrError, match="already holds files"):
        generate(params().data.demo_corpus, target, n_clips=13)
    assert "mine,0" in (target / "label.csv").read_text()


def test_the_shipped_demo_corpus_is_a_source():
    """data/raw/demo is tracked by its .dvc file and written by no stage of dvc.yaml."""
    from tests.helpers import REPO

    if not (REPO / ".git").exists():
        pytest.skip("needs the git checkout")
    stages = pipeline_stages(REPO)
    demo = (REPO / "data" / "raw" / "demo").resolve()
    check_is_source(stages, demo, REPO.resolve(), "demo")
    assert any(s.data_source and s.outs == (demo,) for s in stages)
    assert registration_stage(stages, REPO / "data" / "eval" / "demo", "demo") == "register@demo"
    assert Path(REPO / "data" / "raw" / "demo.dvc").exists()
