"""What `misr compare` can train: a name -> contender registry over one small base class (misr.compare.base).

misr, late_fusion, misr_no_inv, ...   this package's models (`model.name`), trained as `misr train` does
mmsa:TFN, mmsa:LMF, ...               MMSA's models through MMSA's own training code (misr.compare.mmsa)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr.compare.base import Contender, own_visual
from misr.compare.runs import SeedRun
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

    def fit(self, store_dir: Path, run: SeedRun, threads: int) -> dict[str, Any]:
        """As the train stage trains one seed (into `run.training`, where a killed run resumes), then its seed
        folder moved into place: `run.run` is a model folder (ModelDir) of the seeds trained so far."""
        from misr.training.checkpoints import RunSettings
        from misr.training.loop import train
        from misr.training.model_dir import ModelDir

        one = self.train.model_copy(update={"seeds": [run.seed], "threads": threads or self.train.threads})
        result = train(RunSettings(self.model, one, self.features, self.convention), store_dir, run.training)["seeds"][str(run.seed)]
        trained = ModelDir(run.training)
        if trained.live(run.seed).exists():  # its curves travel with it
            os.replace(trained.live(run.seed), trained.seed_dir(run.seed) / "dvclive")
        run.place(trained.seed_dir(run.seed))
        run.clear_training()
        return {
            "best_epoch": result["best_epoch"],
            "selected_on": result["selected_on"],
            "environments": (result.get("environments") or {}).get("name"),  # the groups it was made invariant across
            "valid_groups": (result.get("valid_groups") or {}).get("name"),  # the groups its checkpoint was chosen on
        }

    def predict(self, store_dir: Path, run: SeedRun, data: SplitData) -> np.ndarray:
        from misr.features.person import view_for
        from misr.training.batches import Batches
        from misr.training.inference import predict

        model, info = self.model_dir(run).load_best(run.seed)
        view = view_for(FeatureStore(store_dir), info["spec"].action_units)
        return predict(model, Batches(view.apply_split(own_visual(data)), torch.device("cpu")), self.train.batch_size)

    def loaded(self, run: SeedRun) -> torch.nn.Module:
        return self.model_dir(run).load_best(run.seed)[0]

    @staticmethod
    def model_dir(run: SeedRun) -> Any:
        from misr.training.model_dir import ModelDir

        return ModelDir(run.run)


def contender(
    name: str,
    model: ModelConfig,
    train: TrainConfig,
    features: FeaturesConfig,
    convention: Convention,
    label: str | None = None,
    mmsa_selection: str = "mmsa",
) -> Contender:
    """The contender a `--models` name stands for: a `model.name` of this package, or `mmsa:NAME` (whose checkpoint
    MMSA's own rule chooses, or with `mmsa_selection` "ours" this package's: compare.mmsa_selection)."""
    if name.lower().startswith("mmsa:"):
        from misr.compare.mmsa import MmsaModel, PackageRule

        rule = PackageRule.of(model, train) if mmsa_selection == "ours" else None
        return MmsaModel(name.split(":", 1)[1], convention, train.action_units, label=label, rule=rule)
    if name not in VARIANTS:
        raise MisrError(
            f"unknown model {name!r} for misr compare",
            hint=f"one of {', '.join(VARIANTS)}, or mmsa:NAME for MMSA's models (pip install '.[mmsa]')",
        )
    chosen = validate_section(ModelConfig, {**model.model_dump(mode="json"), "name": name}, f"model {name!r} (params.yaml's model section)")
    return MisrModel(label or name, chosen, train, features, convention)
