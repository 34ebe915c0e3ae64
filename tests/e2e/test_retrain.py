"""Retraining on a copy of the repository as it ships (its dvc.yaml, params.yaml, .dvc files), at small settings.

The watched corpus is where a user adds clips; no retraining, failed retraining or Ctrl-C may lose one.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from misr.config.params import load_params, params_to_yaml
from misr.errors import MisrError
from misr.registry.retrain import data_state, history
from tests.helpers import REPO
from tests.helpers.processes import processes_marked, stopped_within, wait_for

SMALL = [
    "train.epochs=30",
    "train.patience=30",
    "train.seeds=[1]",
    "train.batch_size=4",
    "model.d_model=16",
    "model.n_heads=2",
    "model.n_layers=1",
    "extract.max_workers=1",
    "features.text.store_hidden=true",  # MiniLM once per clip at extraction, not on every batch of training
]


def sh(cwd, *args, check=True):
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if check:
        assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout.strip()


def dvc(cwd, *args):
    return sh(cwd, sys.executable, "-m", "dvc", *args)


@pytest.fixture(scope="module")
def source_clips(tmp_path_factory):
    """42 short demo clips to take the corpus and the users' new clips from."""
    from misr.data.democorpus import generate

    params = load_params(REPO / "params.yaml", ["data.demo_corpus.duration=[1.0, 1.3]"])
    root = tmp_path_factory.mktemp("clips") / "raw"
    generate(params.data.demo_corpus, root, n_clips=42)
    return root


def rows_of(raw):
    with (raw / "label.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write_corpus(target, source, rows):
    """The rows' clips copied from `source` into `target` (MMSA-FET layout), and their label.csv."""
    for r in rows:
        (target / "Raw" / r["video_id"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "Raw" / r["source_video"] / f"{r['source_clip']}.mp4", target / "Raw" / r["video_id"] / f"{r['clip_id']}.mp4")
    fields = [f for f in rows[0] if not f.startswith("source_")]
    with (target / "label.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def with_source(rows):
    return [{**r, "source_video": r["video_id"], "source_clip": r["clip_id"]} for r in rows]


def add_new_clips(repo, source, video_id, source_rows):
    """What a user does: two mp4 files under Raw/<video_id>/ and their rows appended to label.csv."""
    raw = repo / "data" / "raw" / "demo"
    (raw / "Raw" / video_id).mkdir(parents=True)
    lines = []
    for i, r in enumerate(source_rows):
        shutil.copy(source / "Raw" / r["video_id"] / f"{r['clip_id']}.mp4", raw / "Raw" / video_id / f"{i}.mp4")
        lines.append(
            ",".join([video_id, str(i), r["text"], r["label"], r["label_T"], r["label_A"], r["label_V"], r["annotation"], "train"])
        )
    with (raw / "label.csv").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return [f"{video_id}$_${i}" for i in range(len(source_rows))]


def set_params(repo, *overrides):
    params = load_params(repo / "params.yaml", list(overrides))
    (repo / "params.yaml").write_text(params_to_yaml(params))


def shipped_copy(target: Path) -> Path:
    """The repository's files as they stand (tracked and new, not ignored), in a fresh git repository."""
    listed = (
        subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / rel)
    sh(target, "git", "init", "-q")
    sh(target, "git", "config", "user.name", "misr test")
    sh(target, "git", "config", "user.email", "misr@test")
    return target


@pytest.fixture
def shipped_repo(tmp_path, source_clips, prefect_harness):
    """The shipped layout with small settings and a 36-clip demo corpus where `misr demo-corpus` puts it."""
    from prefect.settings import PREFECT_API_URL

    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the pipeline's subprocesses use the test server
    repo = shipped_copy(tmp_path / "repo")
    set_params(repo, *SMALL)
    rows = rows_of(source_clips)
    by_split = {s: [r for r in rows if r["mode"] == s] for s in ("train", "valid", "test")}
    first = by_split["train"][:24] + by_split["valid"][:6] + by_split["test"][:6]
    write_corpus(repo / "data" / "raw" / "demo", source_clips, with_source(first))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "the shipped pipeline at small settings")
    assert sh(repo, "git", "status", "--porcelain") == ""  # the corpus is DVC's (data/raw/.gitignore), not git's
    yield repo, [r for r in rows if r not in first]
    os.environ.pop("PREFECT_API_URL", None)


def retrain(repo):
    from pipelines.retrain import retrain_flow

    return retrain_flow(str(repo))


def state(repo):
    return sh(repo, "git", "rev-parse", "HEAD"), set(sh(repo, "git", "tag").split()), sh(repo, "git", "status", "--porcelain")


def corpus_on_disk(repo):
    raw = repo / "data" / "raw" / "demo"
    return {str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file()}


def store_keys(repo):
    return set(pq.read_table(repo / "data" / "features" / "demo" / "clips.parquet", columns=["clip_key"]).column("clip_key").to_pylist())


@pytest.mark.slow
def test_new_clips_survive_retraining_a_failure_and_ctrl_c(shipped_repo, source_clips, tmp_path):
    repo, spare = shipped_repo
    audit = repo / ".misr" / "audit.jsonl"

    # 1. first run: the corpus's version is recorded (its .dvc file committed), the pipeline runs, the gate promotes
    first = retrain(repo)
    assert first["outcome"] == "retrained" and first["changes"]["new_clips"] == 36, first
    assert first["decision"] == "promote", first.get("reasons")
    head, tags, dirty = state(repo)
    assert not dirty and tags == {"misr-sentiment@v0.0.1", "misr-sentiment#prod#1"} and first["version"] == "v0.0.1"
    card = json.loads((repo / "data" / "eval" / "demo" / "registered" / "model_card.json").read_text())
    assert card["git"]["registered_commit"] == first["commit"] and card["git"]["code_dirty"] is False
    recorded = yaml.safe_load(sh(repo, "git", "show", f"{first['commit']}:data/raw/demo.dvc"))
    assert recorded["outs"][0]["nfiles"] == 37 and recorded["outs"][0]["md5"] == first["corpus_version"]
    assert first["push"] == "pushed" and any((repo / ".dvc-storage").rglob("*"))
    assert retrain(repo)["outcome"] == "unchanged" and state(repo) == (head, tags, "")

    # 2. two new clips in a new video, as a user adds them: on disk, in the store, counted in the audit line
    new = add_new_clips(repo, source_clips, "new001", spare[:2])
    on_disk = corpus_on_disk(repo)
    second = retrain(repo)
    assert second["outcome"] == "retrained" and second["changes"]["new_clips"] == 2 and second["summary"] == "2 new clips"
    assert corpus_on_disk(repo) == on_disk and set(new) <= store_keys(repo)
    assert history(audit)[-1]["summary"] == "2 new clips"
    assert "new001" in {r["video_id"] for r in rows_of(repo / "data" / "raw" / "demo")}

    # 3. a failure after dvc repro (the DVC remote is gone): code, lock and outputs go back, the new clips stay
    dvc(repo, "remote", "modify", "local", "url", "/dev/null/no-remote")
    sh(repo, "git", "commit", "-qam", "a remote that cannot be written")
    new += add_new_clips(repo, source_clips, "new002", spare[2:4])
    on_disk, before = corpus_on_disk(repo), state(repo)
    with pytest.raises(MisrError, match="dvc push failed"):
        retrain(repo)
    assert corpus_on_disk(repo) == on_disk and state(repo) == before
    failed = history(audit)[-1]
    assert failed["outcome"] == "failed" and failed["summary"] == "2 new clips"
    assert any(step.startswith("dvc checkout") and "gone" not in step for step in failed["restored"]), failed["restored"]

    # 4. Ctrl-C while dvc repro extracts: stopped, put back, the new clips stay (two more clips, so that
    # extraction runs instead of DVC's run cache restoring the outputs of the failed run)
    new += add_new_clips(repo, source_clips, "new003", spare[4:6])
    on_disk = corpus_on_disk(repo)
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "retrain", "--repo", str(repo)],
        env={**os.environ, "MISR_TEST_MARK": mark}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert wait_for(lambda: any("pipelines.extract" in cmd for cmd in processes_marked(mark)), 120)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = stopped_within(proc, 60)
    assert proc.returncode == 130 and "stopped" in err, err
    assert wait_for(lambda: processes_marked(mark) == [], 10), processes_marked(mark)
    assert corpus_on_disk(repo) == on_disk and state(repo) == before
    assert history(audit)[-1]["outcome"] == "failed"

    # 5. the remote back: the clips that waited are retrained on; none was lost on the way
    dvc(repo, "remote", "modify", "local", "url", "../.dvc-storage")
    sh(repo, "git", "commit", "-qam", "the remote back")
    last = retrain(repo)
    assert last["outcome"] == "retrained" and last["summary"] == "4 new clips"
    assert corpus_on_disk(repo) == on_disk and set(new) <= store_keys(repo)
    assert len(rows_of(repo / "data" / "raw" / "demo")) == 42 and len(data_state(repo / "data" / "raw" / "demo")["clips"]) == 42

    # the registered model predicts: `misr predict --model prod` reads it from DVC's cache at its commit
    import math

    from misr.predict import load_models, predict_video

    models, described = load_models("prod", repo, "misr-sentiment", "prod")
    assert "commit" in described and len(models) == 1
    video = repo / "data" / "raw" / "demo" / "Raw" / "new001" / "0.mp4"
    assert math.isfinite(predict_video(models, video, "a good and pleasant film").score)

    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "history", "--repo", str(repo)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "2 new clips" in res.stdout and max(len(line) for line in res.stdout.splitlines()) <= 80
    assert first["when"][:16].replace("T", " ") in res.stdout  # the date and time whole, not cut to "2026-12-…"


@pytest.mark.slow
def test_a_corpus_that_a_stage_writes_cannot_be_watched(tmp_path):
    """The old layout: data/raw/demo as the output of a demo_corpus stage. Refused before anything runs."""
    from misr.registry.retrain import check_is_source, pipeline_stages

    repo = shipped_copy(tmp_path / "repo")
    (repo / "data" / "raw" / "demo.dvc").unlink()
    (repo / "data" / "raw" / ".gitignore").unlink()
    text = (repo / "dvc.yaml").read_text()
    stage = "  demo_corpus:\n    cmd: misr demo-corpus --out data/raw/demo\n    outs:\n      - data/raw/demo\n"
    (repo / "dvc.yaml").write_text(text.replace("stages:\n", "stages:\n" + stage, 1))
    params = load_params(repo / "params.yaml")
    with pytest.raises(MisrError, match="stage 'demo_corpus' of dvc.yaml writes") as err:
        check_is_source(pipeline_stages(repo), (repo / "data" / "raw" / "demo").resolve(), repo.resolve(), params.retrain.dataset)
    assert "dvc add data/raw/demo" in str(err.value)


@pytest.mark.slow
def test_a_second_run_while_one_holds_the_lock_does_not_run_dvc(shipped_repo):
    repo, _ = shipped_repo
    lock = repo / ".misr" / "retrain.lock"
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
        before, on_disk = state(repo), corpus_on_disk(repo)
        entry = retrain(repo)
        assert entry["outcome"] == "skipped" and "another retraining holds" in entry["reason"]
        assert state(repo) == before and corpus_on_disk(repo) == on_disk and not (repo / "data" / "features" / "demo").exists()
    finally:
        holder.kill()


@pytest.mark.slow
def test_a_dirty_repository_is_refused_and_an_unversioned_corpus_named(shipped_repo):
    repo, _ = shipped_repo
    (repo / "notes.txt").write_text("work in progress")
    with pytest.raises(MisrError, match="uncommitted changes"):
        retrain(repo)
    assert (repo / "notes.txt").exists() and history(repo / ".misr" / "audit.jsonl")[-1]["outcome"] == "refused"
    (repo / "notes.txt").unlink()
    (repo / "data" / "raw" / ".gitignore").unlink()  # the corpus no longer ignored by git: it shows as new files
    with pytest.raises(MisrError, match=r"not versioned yet: `dvc add data/raw/demo`"):
        retrain(repo)


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server start`, as the README has users run it: its scheduler service makes the runs
    (the test harness's server runs no services). The scheduler looks every 2 s instead of every 60 s."""
    import socket
    import urllib.request

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"

    def healthy():
        try:
            return urllib.request.urlopen(url + "/health", timeout=1).status == 200
        except OSError:
            return server.poll() is not None  # gone: stop waiting

    try:
        assert wait_for(healthy, 120) and server.poll() is None, "prefect server did not start"
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        stopped_within(server, 60)


@pytest.mark.slow
def test_the_schedule_fires_runs(shipped_repo, prefect_server):
    """`misr schedule --every 5` against a Prefect server: runs come on their own and write audit lines.

    Each tick starts a process that imports Prefect, DVC and misr. With ticks every 2 s and a 120 s window,
    a CI run on 2 cores shared with the suite's other worker once saw no finished run in time."""
    repo, _ = shipped_repo
    audit = repo / ".misr" / "audit.jsonl"
    last = repo / ".misr" / "last_data.json"
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_text(json.dumps(data_state(repo / "data" / "raw" / "demo")))  # nothing new: each run is quick
    on_disk = corpus_on_disk(repo)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "schedule", "--repo", str(repo), "--every", "5"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        fired = wait_for(lambda: "unchanged" in {r["outcome"] for r in history(audit)}, 300)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:  # Prefect's runner may wait for a run in flight; a second Ctrl-C later ends it at once
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            output, _ = proc.communicate(timeout=30)
    assert fired, output[-3000:]
    assert proc.returncode in (0, 130), output[-3000:]  # Prefect's serve takes the Ctrl-C itself and ends normally
    # ticks that came while a run held the lock recorded "skipped" and stopped; nothing else happened
    assert {r["outcome"] for r in history(audit)} <= {"unchanged", "skipped"}, history(audit)
    assert state(repo)[2] == "" and corpus_on_disk(repo) == on_disk


@pytest.mark.slow
def test_the_deployment_has_the_cron_schedule_from_params(shipped_repo):
    import asyncio

    from prefect.client.orchestration import get_client

    from pipelines.retrain import deployment

    repo, _ = shipped_repo
    params = load_params(repo / "params.yaml", ["retrain.cron=15 4 * * 1"])
    deployment_id = deployment(repo, params).apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    found = asyncio.run(read())
    assert found.name == "misr-retrain"
    assert [s.schedule.cron for s in found.schedules] == ["15 4 * * 1"]
    assert found.parameters == {"repo": str(repo.resolve())}


def test_a_folder_that_is_not_a_repository_is_refused_and_nothing_is_written_into_it(tmp_path, prefect_harness):
    """It once got an audit line, and so a `.misr/` folder left in a folder that was never the pipeline's."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    with pytest.raises(MisrError, match="is not the top folder of a git repository"):
        retrain(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_cron_is_validated():
    with pytest.raises(MisrError, match="cron must have 5 fields"):
        load_params(REPO / "params.yaml", ["retrain.cron=every day"])
    with pytest.raises(MisrError, match="retrain.dataset 'nope' is not one of data.datasets"):
        load_params(REPO / "params.yaml", ["retrain.dataset=nope"])
