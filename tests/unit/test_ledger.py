"""The test-read ledger: every read of a test split on the record, found again by the split's content."""

import shutil
import subprocess

from misr.store import ledger
from misr.store.store import FeatureStore
from tests.unit.test_store import make_clips


def a_store(path, labels_shift=0.0):
    fs = FeatureStore(path)
    clips = make_clips(4, "train") + make_clips(3, "test", prefix="t")
    fs.write_clips([{**c, "label": c["label"] + labels_shift} for c in clips])
    return path


def test_reads_are_counted_by_the_test_splits_content_wherever_the_store_lies(tmp_path):
    store = a_store(tmp_path / "a")
    assert ledger.reads_before(store) == 0
    assert ledger.record_read(store, "misr evaluate a") == 0
    assert ledger.record_read(store, "misr compare a") == 1
    assert ledger.reads_before(store) == 2
    [first, second] = ledger.entries(store)
    assert first["command"] == "misr evaluate a" and first["split"] == "test" and first["store"] == "a" and first["time"]
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert ledger.reads_before(copy) == 2  # the same clips and labels: the same test split
    other = a_store(tmp_path / "b", labels_shift=0.5)
    assert ledger.reads_before(other) == 0
    (ledger.ledger_path(store)).open("a").write('{"cut by a cra')  # a line cut by a crash costs only itself
    assert ledger.reads_before(store) == 2


def test_inside_a_repository_the_ledger_is_at_its_root_and_names_the_commit(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    store = a_store(repo / "data" / "features" / "s")
    ledger.record_read(store, "misr evaluate")
    assert ledger.ledger_path(store) == repo / "test-reads.jsonl"
    [entry] = ledger.entries(store)
    assert entry["store"] == "data/features/s" and len(entry["commit"]) == 40
