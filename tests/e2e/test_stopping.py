"""Ctrl-C, SIGTERM and kill -9 stop extraction, training and retraining within seconds, keep what
finished, and leave no process behind (the temporary Prefect server included)."""

import os
import signal
import subprocess
import sys
import uuid

import pytest

from misr.store.store import FeatureStore
from tests.helpers import REPO
from tests.helpers.processes import processes_marked, stopped_within, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory):
    """One Prefect home for the module: its database is set up once, so each temporary server starts faster."""
    return tmp_path_factory.mktemp("prefect-home")


def start(args, prefect_home):
    """`misr ARGS` in a process group of its own, without a Prefect API: it owns a temporary server."""
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(MISR_TEST_MARK=mark, PREFECT_HOME=str(prefect_home))
    cmd = [sys.executable, "-m", "pipelines.cli", *map(str, args), "--params", str(REPO / "params.yaml")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, mark


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from misr.data.democorpus import generate
    from tests.helpers import params

    root = tmp_path_factory.mktemp("stop") / "raw"
    generate(params("data.demo_corpus.duration=[1.0, 1.2]").data.demo_corpus, root, n_clips=13)
    return root


def test_ctrl_c_stops_extraction_keeps_finished_shards_and_leaves_no_process(corpus, tmp_path, prefect_home):
    store = tmp_path / "store"
    args = ["extract", corpus, "--out", store, "-S", "data.dataset=demo", "-S", "extract.shard_size=2", "-S", "extract.max_workers=2"]
    proc, mark = start(args, prefect_home)
    fs = FeatureStore(store)
    assert wait_for(lambda: len(fs.part_files("visual")) >= 1), proc.stderr.read() if proc.poll() is not None else ""
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C on a terminal: the whole foreground group
    took, err = stopped_within(proc, 20)
    assert proc.returncode == 130 and "stopped: finished work is kept" in err and "Traceback" not in err, err
    assert took < 15
    assert wait_for(lambda: processes_marked(mark) == [], 5), processes_marked(mark)
    # finished shards stay, and the run did not go on to the end (a new run does the rest: see
    # test_extract.py::test_a_killed_run_resumes_without_redoing_finished_shards)
    assert 1 <= len(fs.part_files("visual")) < 7


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    from misr.data.synth import generate
    from tests.helpers import params

    root = tmp_path_factory.mktemp("stop") / "synth"
    generate(params("data.synth.scenario=shift", "data.synth.n_clips={train: 400, valid: 50, test: 10}").data.synth, root)
    return root


def test_sigterm_stops_training_at_a_batch_and_keeps_the_last_epoch(synth_store, tmp_path, prefect_home):
    out = tmp_path / "m"
    proc, mark = start(["train", synth_store, "--out", out, "-S", "train.epochs=40", "-S", "train.seeds=[5]"], prefect_home)
    assert wait_for(lambda: (out / "seed-5" / "last.pt").exists())
    proc.send_signal(signal.SIGTERM)  # as `timeout` sends it
    took, err = stopped_within(proc, 20)
    assert proc.returncode == 130 and "stopped: finished work is kept" in err, err
    assert took < 15 and wait_for(lambda: processes_marked(mark) == [], 5), processes_marked(mark)
    import torch

    epoch = torch.load(out / "seed-5" / "last.pt", weights_only=True)["epoch"]
    assert 0 <= epoch < 39


def test_kill_9_leaves_no_prefect_server_behind(synth_store, tmp_path, prefect_home):
    out = tmp_path / "m"
    proc, mark = start(["train", synth_store, "--out", out, "-S", "train.epochs=40", "-S", "train.seeds=[5]"], prefect_home)
    assert wait_for(lambda: (out / "seed-5" / "last.pt").exists())
    assert any("uvicorn" in cmd for cmd in processes_marked(mark))  # the temporary server is up
    proc.kill()
    proc.wait()
    assert wait_for(lambda: processes_marked(mark) == [], 10), processes_marked(mark)
