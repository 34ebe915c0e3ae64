"""Retraining when new data lands: detect changes, rerun the pipeline, gate, commit, register, push.

Prefect-free steps; `pipelines/retrain.py` runs them as a flow (and `misr schedule` serves it on a
cron). The rules:
  - one run at a time (a lock file): a second run started meanwhile records that and stops, so two
    DVC processes never work on the repository at once;
  - the repository must be clean at the start; a failure at any step puts it back exactly as it was
    (`git reset --hard` to the starting commit, the run's tags deleted, `dvc checkout` of the outputs);
  - every run, changed or not, appends one line to the audit log (`misr history` prints it).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from pathlib import Path
from typing import Any

from misr.config import Params
from misr.data.corpus import find_video
from misr.errors import MisrError
from misr.store import clip_key
from misr.util import proc
from misr.util.hashing import file_sha256, stable_hash


def data_state(params: Params, repo: Path) -> dict[str, Any]:
    """What the watched corpus holds now: per clip its label and file hash (the data version is its hash)."""
    ds = params.data.datasets[params.retrain.dataset]
    if ds.raw_dir is None:
        raise MisrError(f"retrain.dataset {params.retrain.dataset!r} has no raw_dir to watch")
    raw = repo / ds.raw_dir
    table = raw / "label.csv"
    if not table.exists():
        return {"version": None, "clips": {}}
    clips: dict[str, list[Any]] = {}
    for row in csv.DictReader(io.StringIO(table.read_text(encoding="utf-8", errors="replace"))):
        video_id, clip_id = row.get("video_id") or "", row.get("clip_id") or ""
        found = find_video(raw / "Raw", video_id, clip_id) if video_id and clip_id else None
        digest = file_sha256(found) if found is not None and found.is_file() else None  # never a FIFO: it blocks
        clips[clip_key(video_id, clip_id)] = [row.get("label"), row.get("mode"), row.get("text"), digest]
    return {"version": stable_hash(clips), "clips": clips}


def changes(before: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, int]:
    old = (before or {}).get("clips", {})
    new = now["clips"]
    return {
        "new_clips": sum(1 for k in new if k not in old),
        "removed_clips": sum(1 for k in old if k not in new),
        "changed_labels": sum(1 for k in new if k in old and new[k][:3] != old[k][:3]),
        "changed_files": sum(1 for k in new if k in old and new[k][3] != old[k][3]),
    }


def history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_history(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Snapshot:
    """The repository as the run found it, to put back after a failure."""

    def __init__(self, repo: Path):
        self.repo = repo
        dirty = proc.uncommitted(repo)
        if dirty:
            raise MisrError("the repository has uncommitted changes; retraining needs a clean checkout:\n    " + "\n    ".join(dirty[:10]))
        self.head = proc.head(repo)
        self.tags = proc.tags(repo)

    def restore(self) -> list[str]:
        """Back to the starting commit and outputs; delete tags this run made. Returns what it did."""
        done = []
        for tag in sorted(proc.tags(self.repo) - self.tags):
            proc.git(self.repo, "tag", "-d", tag)
            done.append(f"deleted tag {tag}")
        if proc.head(self.repo) != self.head or proc.uncommitted(self.repo):
            proc.git(self.repo, "reset", "-q", "--hard", self.head)
            done.append(f"reset to {self.head[:10]}")
        res = proc.run(self.repo, "dvc", "checkout", "--force", check=False)
        done.append("dvc checkout" + ("" if res.returncode == 0 else f" failed: {res.stderr.strip()[-200:]}"))
        return done


def eval_dir(repo: Path, params: Params) -> Path:
    return repo / params.data.datasets[params.retrain.dataset].eval_dir


def metrics_of(repo: Path, params: Params) -> dict[str, Any] | None:
    path = eval_dir(repo, params) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def decision_of(repo: Path, params: Params) -> dict[str, Any]:
    path = eval_dir(repo, params) / "registration" / "decision.json"
    if not path.exists():
        raise MisrError(f"the pipeline wrote no gate decision at {path.relative_to(repo)}")
    return json.loads(path.read_text())
