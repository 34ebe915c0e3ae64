"""A contender of `misr compare`: the small base class every model kind implements.

A contender trains one seed on a store's train split, choosing its checkpoint on valid only, and predicts any
split it is handed. It never loads test itself: the comparison reads test once, after every seed is trained,
and hands the same split to every contender.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from misr.compare.runs import SeedRun
from misr.store import SplitData
from misr.util.hashing import stable_hash


class Contender:
    """One model kind of a comparison (its `label` names it in the report)."""

    kind: ClassVar[str]

    def __init__(self, label: str):
        self.label = label

    def settings(self) -> dict[str, Any]:
        """Everything, beside the store, the seed and the code, that decides a trained seed (the reuse key)."""
        raise NotImplementedError

    def check(self, store_dir: Path) -> None:
        """Fail fast, before anything trains, with a clear error when this contender cannot run on the store."""

    def fit(self, store_dir: Path, run: SeedRun, threads: int) -> dict[str, Any]:
        """Train one seed (checkpoint chosen on valid) into `run.folder`, by way of `run.training` or a temporary
        folder: the seed folder appears whole or not at all. Returns what the seed chose on its way (its epoch,
        the environments it was made invariant across), for the report."""
        raise NotImplementedError

    def predict(self, store_dir: Path, run: SeedRun, data: SplitData) -> np.ndarray:
        """The trained seed's prediction for each clip of `data` (left unchanged)."""
        raise NotImplementedError

    def key(self) -> str:
        return stable_hash({"kind": self.kind, "settings": self.settings()})


def own_visual(data: SplitData) -> SplitData:
    """`data` with a copy of its visual features: a model's view of them is applied in place."""
    if data.visual is None:
        return data
    values = data.visual.values
    copied = values.clone() if isinstance(values, torch.Tensor) else np.array(values, copy=True)
    return dataclasses.replace(data, visual=dataclasses.replace(data.visual, values=copied))
