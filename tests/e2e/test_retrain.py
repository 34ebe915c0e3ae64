"""Scheduled retraining in a temporary git + DVC repository running a small real pipeline."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from misr.config import load_params, params_to_yaml
from misr.errors import MisrError

REPO = Path(__file__).resolve().parents[2]
DVC_YAML = """
stages:
  extract:
    cmd: misr extract data/raw/toy --out data/features/toy
    deps: [data/raw/toy]
    params: [features]
    outs: [data/features/toy]
  train:
    cmd: misr train data/features/toy --out data/models/toy --no-flow
    deps: [data/features/toy]
    params: [model, train]
    outs: [data/models/toy]
  evaluate:
    cmd: misr evaluate data/features/toy --model data/models/toy --out data/eval/toy
    deps: [data/features/toy, data/models/toy]
    params: [evaluate]
    outs:
      - data/eval/toy/plots: {cache: false}
      - data/eval/toy/model_card.md: {cache: false}
      - data/eval/toy/model_card.json: {cache: false}
      - data/eval/toy/robustness.json: {cache: false}
      - data/eval/toy/metrics_per_seed.json: {cache: false}
    metrics:
      - data/eval/toy/metrics.json: {cache: false}
  register:
    cmd: misr register --eval data/eval/toy --decide-only
    deps: [data/eval/toy/metrics.json, data/eval/toy/model_card.json]
    params: [register]
    outs:
      - data/eval/toy/registration: {cache: false}
artifacts:
  misr-sentiment:
    path: data/models/toy
    type: model
"""


def sh(cwd, *args, check=True):
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if check:
        assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout.strip()


@pytest.fixture(scope="module")
def demo_raw(tmp_path_factory):
    from misr.data.democorpus import generate

    params = load_params(REPO / "params.yaml", ["data.demo_corpus.duration=[1.0, 1.3]"])
    root = tmp_path_factory.mktemp("raw") / "raw"
    generate(params.data.demo_corpus, root, n_clips=42)
    return root


def add_clips(repo, source, n_rows):
    """Copy the first n rows of the full corpus into the repository's corpus (files and label.csv)."""
    header, *rows = (source / "label.csv").read_text().splitlines()
    by_split = {}
    for line in rows:  # splits interleaved, so that every prefix has valid and test clips
        by_split.setdefault(line.rsplit(",", 1)[1], []).append(line)
    ordered = [r for group in zip(*[iter_pad(v) for v in by_split.values()], strict=True) for r in group if r]
    lines = [header, *ordered]
    target = repo / "data" / "raw" / "toy"
    for line in lines[1 : n_rows + 1]:
        vid, cid = line.split(",")[:2]
        (target / "Raw" / vid).mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "Raw" / vid / f"{cid}.mp4", target / "Raw" / vid / f"{cid}.mp4")
    (target / "label.csv").write_text("\n".join(lines[: n_rows + 1]) + "\n")


def iter_pad(values, length=64):
    return list(values) + [None] * (length - len(values))


def set_params(repo, *overrides):
    params = load_params(repo / "params.yaml", list(overrides))
    (repo / "params.yaml").write_text(params_to_yaml(params))


@pytest.fixture
def toy_repo(tmp_path, demo_raw, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the pipeline's subprocesses use the test server
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.name", "misr test")
    sh(repo, "git", "config", "user.email", "misr@test")
    sh(repo, sys.executable, "-m", "dvc", "init", "-q")
    sh(repo, sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["data"]["datasets"]["toy"] = {"source": "raw", "raw_dir": "data/raw/toy", "features_dir": "data/features/toy"}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    set_params(
        repo,
        "data.dataset=toy",
        "retrain.dataset=toy",
        "train.epochs=30",
        "train.patience=30",
        "train.seeds=[1]",
        "train.batch_size=4",
        "model.d_model=16",
        "model.n_heads=2",
        "model.n_layers=1",
        "features.max_workers=1",
        "features.text.store_hidden=true",  # MiniLM once per clip at extraction, not on every batch of training
    )
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / ".gitignore").write_text("/data/features/\n/data/models/\n/.misr/\n")
    add_clips(repo, demo_raw, 36)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "toy pipeline")
    yield repo
    os.environ.pop("PREFECT_API_URL", None)


def retrain(repo):
    from pipelines.retrain import retrain_flow

    return retrain_flow(str(repo))


def state(repo):
    return sh(repo, "git", "rev-parse", "HEAD"), set(sh(repo, "git", "tag").split()), sh(repo, "git", "status", "--porcelain")


@pytest.mark.slow
def test_retraining_end_to_end(toy_repo, demo_raw, tmp_path):
    repo = toy_repo
    # 1. first run: everything is new; the pipeline runs, its outputs are committed, the gate decides
    first = retrain(repo)
    assert first["outcome"] == "retrained" and first["changes"]["new_clips"] == 36
    head, tags, dirty = state(repo)
    assert first["decision"] == "promote", first.get("reasons")
    # the tagged commit adds the registered model card, which names the retraining commit before it
    assert not dirty and sh(repo, "git", "rev-parse", "HEAD~1") == first["commit"]
    card = json.loads((repo / "data" / "eval" / "toy" / "registered" / "model_card.json").read_text())
    assert card["git"]["registered_commit"] == first["commit"] and card["git"]["code_dirty"] is False
    assert tags == {"misr-sentiment@v0.0.1", "misr-sentiment#prod#1"} and first["version"] == "v0.0.1"
    assert first["push"] == "pushed" and any((tmp_path / "remote").rglob("*"))
    gto = sh(repo, str(Path(sys.executable).parent / "gto"), "show")
    assert "v0.0.1" in gto

    # the registered model predicts: `misr predict --model prod` reads it from DVC's cache at its commit
    import math

    from misr.predict import load_models, predict_video

    for ref in ("prod", "v0.0.1"):
        models, described = load_models(ref, repo, "misr-sentiment", "prod")
        assert f"commit {head[:10]}" in described and len(models) == 1
    video = sorted((repo / "data" / "raw" / "toy" / "Raw").rglob("*.mp4"))[0]
    assert math.isfinite(predict_video(models, video, "a good and pleasant film").score)

    # 2. no new data: nothing changes
    second = retrain(repo)
    assert second["outcome"] == "unchanged"
    assert state(repo) == (head, tags, "")

    # 3. new clips, but a gate no model can pass: retrained and committed, not registered
    set_params(repo, "register.min_margin=100")
    add_clips(repo, demo_raw, 39)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "more clips, strict gate")
    third = retrain(repo)
    assert third["outcome"] == "retrained" and third["changes"]["new_clips"] == 3
    assert third["decision"] == "keep" and third["version"] is None
    assert state(repo)[1] == tags

    # 4. a failure in the train step (a text encoder folder that exists on no machine): no commit, no tag, as it was
    set_params(repo, "register.min_margin=0.005", "model.text.encoder=/nonexistent/bert-model")
    add_clips(repo, demo_raw, 42)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "more clips, broken training")
    before = state(repo)
    with pytest.raises(MisrError, match="dvc repro failed"):
        retrain(repo)
    assert state(repo) == before
    from misr.registry.retrain import history

    log = history(repo / ".misr" / "audit.jsonl")
    assert [e["outcome"] for e in log] == ["retrained", "unchanged", "retrained", "failed"]
    assert "reset" in " ".join(log[-1]["restored"]) or "dvc checkout" in log[-1]["restored"][-1]
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "history", "--repo", str(repo)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0 and "failed" in res.stdout and "unchanged" in res.stdout


@pytest.mark.slow
def test_a_second_run_while_one_holds_the_lock_does_not_run_dvc(toy_repo):
    lock = toy_repo / ".misr" / "retrain.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from filelock import FileLock; import time; lock = FileLock({str(lock)!r}); lock.acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = state(toy_repo)
        entry = retrain(toy_repo)
        assert entry["outcome"] == "skipped" and "another retraining holds" in entry["reason"]
        assert state(toy_repo) == before and not (toy_repo / "data" / "features").exists()
    finally:
        holder.kill()


@pytest.mark.slow
def test_a_dirty_repository_is_refused(toy_repo):
    (toy_repo / "notes.txt").write_text("work in progress")
    with pytest.raises(MisrError, match="uncommitted changes"):
        retrain(toy_repo)
    assert (toy_repo / "notes.txt").exists()


@pytest.mark.slow
def test_the_deployment_has_the_cron_schedule_from_params(toy_repo):
    import asyncio

    from prefect.client.orchestration import get_client

    from pipelines.retrain import deployment

    params = load_params(toy_repo / "params.yaml", ["retrain.cron=15 4 * * 1"])
    deployment_id = deployment(toy_repo, params).apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    found = asyncio.run(read())
    assert found.name == "misr-retrain"
    assert [s.schedule.cron for s in found.schedules] == ["15 4 * * 1"]
    assert found.parameters == {"repo": str(toy_repo.resolve())}


def test_cron_is_validated(tmp_path):
    with pytest.raises(MisrError, match="cron must have 5 fields"):
        load_params(REPO / "params.yaml", ["retrain.cron=every day"])
    with pytest.raises(MisrError, match="retrain.dataset 'nope' is not one of data.datasets"):
        load_params(REPO / "params.yaml", ["retrain.dataset=nope"])


@pytest.mark.slow
def test_ctrl_c_stops_retraining_and_puts_the_repository_back(toy_repo):
    import signal
    import uuid

    from misr.registry.retrain import history
    from tests.helpers.processes import processes_marked, stopped_within, wait_for

    before = state(toy_repo)
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "retrain", "--repo", str(toy_repo)],
        env={**os.environ, "MISR_TEST_MARK": mark}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    # stop it once dvc repro is extracting (a `misr extract` runs under it)
    assert wait_for(lambda: any("misr extract" in cmd for cmd in processes_marked(mark)), 120)
    os.killpg(proc.pid, signal.SIGINT)
    took, err = stopped_within(proc, 60)
    assert proc.returncode == 130 and "stopped" in err, err
    assert wait_for(lambda: processes_marked(mark) == [], 10), processes_marked(mark)  # dvc and its misr children too
    assert state(toy_repo) == before
    last = history(toy_repo / ".misr" / "audit.jsonl")[-1]
    assert last["outcome"] == "failed" and any("dvc checkout" in step for step in last["restored"])
