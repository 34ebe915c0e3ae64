"""MODEL_DIR, the train stage's folder: the one place that knows its layout.

    MODEL_DIR/summary.json                 per seed: best validation MAE, its epoch, the training-mean baseline
    MODEL_DIR/seed-<s>/best.pt             the seed's best checkpoint (on validation MAE): weights and settings
    MODEL_DIR/seed-<s>/last.pt             the last finished epoch, with the optimiser: what a killed run resumes from
    MODEL_DIR/dvclive/seed-<s>/            DVCLive's metrics, plots and report of the seed
    MODEL_DIR/dvclive/seed-<s>/plots/metrics/{train,valid}/<name>.tsv   its curves

The root may be relative to a repository (`data/models/demo`): `misr predict` reads the same names
from DVC's cache at a registered commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from misr.errors import MisrError
from misr.training.checkpoints import load_checkpoint


@dataclass(frozen=True)
class ModelDir:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def seed_dir(self, seed: int | str) -> Path:
        return self.root / f"seed-{seed}"

    def best(self, seed: int | str) -> Path:
        return self.seed_dir(seed) / "best.pt"

    def last(self, seed: int | str) -> Path:
        return self.seed_dir(seed) / "last.pt"

    def live(self, seed: int | str) -> Path:
        """DVCLive's folder for the seed."""
        return self.root / "dvclive" / f"seed-{seed}"

    def curve(self, seed: int | str, split: str, name: str) -> Path:
        """A metric's curve over the epochs (step, value), as DVCLive writes it."""
        return self.live(seed) / "plots" / "metrics" / split / f"{name}.tsv"

    def summary(self) -> dict[str, Any]:
        if not self.summary_path.exists():
            raise MisrError(f"no trained model in {self.root} (summary.json missing)", hint="run `misr train` first")
        return json.loads(self.summary_path.read_text())

    def seeds(self) -> list[str]:
        """The seeds the summary lists, in training order."""
        return list(self.summary()["seeds"])

    def load_best(self, seed: int | str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
        """The best checkpoint of one seed, rebuilt into its model (in eval mode) and its info."""
        path = self.best(seed)
        if not path.exists():
            raise MisrError(f"no checkpoint at {path}", hint="train first (`misr train`)")
        return load_checkpoint(path, device, name=str(path))

    def load_ensemble(self, device: str | torch.device = "cpu") -> list[tuple[nn.Module, dict[str, Any]]]:
        """Every seed's best model, in the summary's order: the ensemble that evaluation and prediction average."""
        return [self.load_best(seed, device) for seed in self.seeds()]
