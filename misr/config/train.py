"""`train`: seeds, optimisation, selection of the checkpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from misr.config.section import Section, Seed


class TrainConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seeds: list[Seed] = Field(default_factory=lambda: [1111, 1112, 1113], min_length=1)
    epochs: int = Field(30, ge=1, le=10000)
    batch_size: int = Field(32, ge=1, le=65536)
    lr: float = Field(3e-3, gt=0, le=1)
    text_lr: float = Field(5e-6, ge=0, le=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="the learning rate's warm-up: this share of the planned steps, at most 5 epochs"
    )
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    patience: int = Field(8, ge=1, description="epochs without a better validation MAE before stopping")
    modality_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="remove each modality of a training clip with this probability (never all three); "
        "> 0 lets `misr predict` answer when a modality is missing",
    )
    deterministic: bool = True
    threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="torch's CPU threads in the training process; 0: torch's default (every core). Trainings run side "
        "by side should take one each (sums of floats, hence results, depend on it)",
    )
    select_on: Literal["mae", "group_mean_mae", "worst_group_mae"] = Field(
        "mae",
        description="what chooses the checkpoint and stops early: the validation MAE, or the mean or the worst of the "
        "validation groups' MAEs (the groups of model.environments' rule, from label_T/A/V or the model's unimodal "
        "predictions): a choice that does not reward a shortcut, without out-of-distribution data",
    )
    group_min_count: int = Field(
        4,
        ge=0,
        le=64,
        description="under model.environments groups: every training batch holds at least this many clips of each "
        "group of each partition (a smaller group's clips come again within the epoch), so no batch's penalty "
        "lacks a group; 0: each group's share only (batches without a group are counted in summary.json)",
    )
    action_units: Literal["raw", "relative"] = Field(
        "relative",
        description="how a model sees the landmark extractor's action units: raw (clipped to [0, 5] against a generic "
        "neutral face) or relative to each person's own neutral level (misr.features.person)",
    )
    stream: Literal["auto", "memory", "store"] = Field(
        "auto",
        description="memory: load the train and valid splits padded into memory; store: read batches from the store's "
        "row groups as training goes (block-shuffled order); auto: store when the splits' feature files exceed 2 GiB",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"every seed must differ; {', '.join(map(str, repeated))} appear(s) more than once")
        return seeds
