"""What `misr compare` can train: a name -> contender registry over one small base class (misr.compare.base).

misr, late_fusion, misr_no_inv, ...   this package's models (`model.name`), trained as `misr train` does
mmsa:TFN, mmsa:LMF, ...               MMSA's models through MMSA's own training code (misr.compare.mmsa)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr.compare.base import Contender, own_visual
from misr.config.features import FeaturesConfig
from misr.config.model import VARIANTS, ModelConfig
from misr.config.section import validate_section
from misr.config.train import TrainConfig
from misr.errors import MisrError
from misr.msa.convention import Convention
from misr.store import SplitData
from misr.store.store import FeatureStore


class MisrModel(Contender):
    """One of this package's models, trained by the train stage's code on a single seed."""

    kind = "misr"

    def __init__(self, label: str, model: ModelConfig, train: TrainConfig, features: FeaturesConfig, convention: Convention):
        super().__init__(label)
        self.model, self.train, self.features, self.convention = model, train, features, convention

    def settings(self) -> dict[str, Any]:
        train = self.train.model_dump(mode="json")
        for k in ("seeds", "device"):  # one seed a run; the device changes the speed, not the settings
            train.pop(k)
        return {"model": self.model.model_dump(mode="json"), "train": train, "convention": self.convention.name}

    def check(self, store_dir: Path) -> None:
        from misr.training.setup import resolve_input_spec

        resolve_input_spec(self.model, store_dir, self.train.action_units)

    def fit(self, store_dir: Path, seed: int, folder: Path, threads: int) -> None:
        from misr.training.checkpoints import RunSettings
        from misr.training.loop import train

        one = self.train.model_copy(update={"seeds": [seed], "threads": threads or self.train.threads})
        train(RunSettings(self.model, one, self.features, self.convention), store_dir, folder)

    def predict(self, store_dir: Path, folder: Path, seed: int, data: SplitData) -> np.ndarray:
        from misr.features.person import view_for
        from misr.training.batches import Batches
        from misr.training.inference import predict
        from misr.training.model_dir import ModelDir

        model, info = ModelDir(folder).load_best(seed)
        view = view_for(FeatureStore(store_dir), info["spec"].action_units)
        return predict(model, Batches(view.apply_split(own_visual(data)), torch.device("cpu")), self.train.batch_size)

    def loaded(self, folder: Path, seed: int) -> torch.nn.Module:
        from misr.training.model_dir import ModelDir

        return ModelDir(folder).load_best(seed)[0]


def contender(
    name: str, model: ModelConfig, train: TrainConfig, features: FeaturesConfig, convention: Convention, label: str | None = None
) -> Contender:
    """The contender a `--models` name stands for: a `model.name` of this package, or `mmsa:NAME`."""
    if name.lower().startswith("mmsa:"):
        from misr.compare.mmsa import MmsaModel

        return MmsaModel(name.split(":", 1)[1], convention, train.action_units, label=label)
    if name not in VARIANTS:
        raise MisrError(
            f"unknown model {name!r} for misr compare",
            hint=f"one of {', '.join(VARIANTS)}, or mmsa:NAME for MMSA's models (pip install '.[mmsa]')",
        )
    chosen = validate_section(ModelConfig, {**model.model_dump(mode="json"), "name": name}, f"model {name!r} (params.yaml's model section)")
    return MisrModel(label or name, chosen, train, features, convention)
