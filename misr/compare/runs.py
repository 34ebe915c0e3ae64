"""The run cache: trained seeds kept between comparisons, and the one place that knows its layout.

    <cache>/runs/<label>/<key>/seed-<s>/             one trained seed, whole: the contender's files and done.json
    <cache>/runs/<label>/<key>/training-seed-<s>/    a seed being trained (a killed run resumes there); moved
                                                     into seed-<s>/ when whole, so no seed folder is half written
    <cache>/stores/<name>/                           stores a benchmark generates for itself

<key> hashes the contender's settings, the store's content (`StoreLayout.fingerprint`) and this package's
code: a seed is reused only while all three are the same. In a seed's folder this package's models keep what
the train stage keeps for a seed (best.pt, last.pt, dvclive/; `ModelDir(<cache>/runs/<label>/<key>)` reads them),
MMSA's models model.pth and args.json. done.json (written last, atomically) holds the seed's valid predictions.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misr.util.atomic import write_json
from misr.util.hashing import stable_hash
from misr.util.lock import lock_beside


@dataclass(frozen=True)
class SeedRun:
    """One seed of one contender on one store: where it trains, where it lies when whole."""

    run: Path  # <cache>/runs/<label>/<key>: the contender's seeds on that store, with that code
    seed: int

    @property
    def folder(self) -> Path:
        return self.run / f"seed-{self.seed}"

    @property
    def training(self) -> Path:
        """Where the seed is trained (a scratch folder the contender may lay out as it likes)."""
        return self.run / f"training-seed-{self.seed}"

    @property
    def done_path(self) -> Path:
        return self.folder / "done.json"

    def done(self) -> dict[str, Any] | None:
        """What done.json holds, or None while the seed is not trained whole."""
        return json.loads(self.done_path.read_text()) if self.done_path.exists() else None

    def finish(self, result: dict[str, Any]) -> None:
        """Mark the seed whole: done.json, written last and atomically (a killed run leaves no seed that reads as done)."""
        write_json(self.done_path, result)

    def clear_training(self) -> None:
        """Remove what training left: its folder, and the lock the train stage keeps beside it."""
        shutil.rmtree(self.training, ignore_errors=True)
        lock_beside(self.training, "train").unlink(missing_ok=True)

    def place(self, trained: Path) -> None:
        """Move a trained seed's folder into place as seed-<s>/ (a left-over of a run killed before done.json goes)."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        os.replace(trained, self.folder)


class RunCache:
    """A cache folder of trained seeds (`misr compare --cache`, the quality benchmark's `--cache`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(settings: str, store_fingerprint: str, code: str) -> str:
        return stable_hash({"contender": settings, "store": store_fingerprint, "code": code})[:12]

    def seed_run(self, label: str, key: str, seed: int) -> SeedRun:
        return SeedRun(self.root / "runs" / slug(label) / key, seed)

    def store(self, name: str) -> Path:
        """A store a benchmark generates into the cache (generated once, then read)."""
        return self.root / "stores" / slug(name)


def slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
