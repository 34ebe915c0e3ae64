"""`compare`: the models `misr compare` trains, its reference, its seeds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from misr.config.model import VARIANTS
from misr.config.section import Section, Seed

# How this repository's settings came about (benchmarks/quality/README.md): the report says so beside its numbers.
TUNING = {
    "misr": "its invariance settings: 11 settings of benchmarks/quality.py's search on the synthetic store (data seed 1111, "
    "valid_ood), then 5 candidates and, with every modality's split, 8 more (the penalty's weight and warm-up) on selection "
    "data seeds 1111 and 1112, the weight and warm-up last by the sum of their worst validation group and the demo's "
    "(4 settings on its valid); test never read",
    "late_fusion": "none: the shared architecture and training settings, as MISR's",
    "late_fusion_groups": "none beyond late fusion's; groups from model.groups",
    "misr_no_inv": "none beyond MISR's (a candidate of both selections)",
    "misr_no_dist": "none beyond MISR's",
    "misr_z_env": "none beyond MISR's (one of the 11 search settings)",
    "mmsa": "none here: MMSA 2.2.1's own settings for MOSI-style regression (its config_regression.json)",
}


class CompareConfig(Section):
    """`misr compare`: which models, against which reference, on which seeds (its options override these)."""

    models: list[str] = Field(
        default_factory=lambda: ["misr", "late_fusion"],
        min_length=1,
        description="model.name values of this package, or mmsa:NAME for MMSA's models (the mmsa extra)",
    )
    reference: str = Field("late_fusion", description="the model every other one is compared with (one of models)")
    seeds: list[Seed] | None = Field(None, min_length=1, description="training seeds; null: train.seeds")
    mmsa_selection: Literal["mmsa", "ours"] = Field(
        "mmsa",
        description="how MMSA's models choose their checkpoint: mmsa, MMSA's own rule (the valid loss from the first "
        "epoch, patience 8, no epoch limit); ours, this package's (train.select_on from model.invariance.warmup_epochs, "
        "train.patience, at most train.epochs; validation groups need the store's label_T/A/V)",
    )
    tuning: dict[str, str] = Field(
        default_factory=lambda: dict(TUNING),
        description="for each model, how much its settings were tuned and on which data: the report states it beside "
        "the results (a model not listed: 'not stated'). Update it when you tune a model on your data",
    )

    @field_validator("models")
    @classmethod
    def _known(cls, models: list[str]) -> list[str]:
        for m in models:
            if not (m in VARIANTS or (m.lower().startswith("mmsa:") and len(m) > 5)):
                raise ValueError(f"{m!r} is neither a model.name ({', '.join(VARIANTS)}) nor mmsa:NAME")
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:
            raise ValueError(f"models listed twice: {', '.join(repeated)}")
        return models

    @model_validator(mode="after")
    def _reference_is_a_model(self) -> CompareConfig:
        if self.reference not in self.models:
            raise ValueError(f"reference {self.reference!r} is not one of models: {', '.join(self.models)}")
        return self
