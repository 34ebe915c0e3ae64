"""`data.datasets.<name>`: one corpus the pipeline runs on, and `data.dataset`, the one it runs on by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from misr.config.section import Section, StageParams, validate_section
from misr.errors import ConfigError

DATASET_FOLDERS = {"features_dir": "features", "models_dir": "models", "eval_dir": "eval"}
DEFAULT_DATASET = "demo"


class DatasetConfig(Section):
    """One corpus the pipeline can run on. A user's own corpus is one more entry of this kind."""

    source: Literal["raw", "synth", "mmsa"] = Field(
        "raw", description="raw: MMSA-FET layout of videos; synth: `misr synth`; mmsa: imported MMSA feature file"
    )
    raw_dir: Path | None = Field(None, description="folder holding Raw/<video_id>/<clip_id>.* and label.csv")
    # The one place paths live: the CLI, dvc.yaml (checked by a test), retraining and the registry read
    # them here. Left out, each defaults to data/<features|models|eval>/<name of the data set>.
    features_dir: Path = Field(description="the feature store of this data set")
    models_dir: Path = Field(description="where `misr train` writes its checkpoints")
    eval_dir: Path = Field(description="where `misr evaluate` writes metrics, plots and the model card")
    convention: Literal["mosi", "sims"] = Field(
        "mosi", description="label range and metric set: mosi/mosei labels in [-3, 3], sims in [-1, 1]"
    )
    chose_settings: bool = Field(
        False,
        description="settings were chosen on this data set: its test split is no test any more, and routine "
        "evaluation (the evaluate stage, `misr evaluate`) scores valid only",
    )

    @model_validator(mode="after")
    def _raw_needs_dir(self) -> DatasetConfig:
        if self.source == "raw" and self.raw_dir is None:
            raise ValueError("raw_dir is required when source is 'raw'")
        return self


def with_default_folders(name: str, entry: Any) -> Any:
    """The entry with each folder it leaves out set to data/<features|models|eval>/<name>."""
    if isinstance(entry, dict):
        entry = dict(entry)
        for key, folder in DATASET_FOLDERS.items():
            entry.setdefault(key, f"data/{folder}/{name}")
    return entry


def dataset_entry(params: StageParams, name: str | None = None) -> tuple[str, DatasetConfig]:
    """The data set `name` (default: data.dataset) and its validated entry, read from params.yaml alone."""
    data = params.raw.get("data") or {}
    datasets = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(datasets, dict):
        raise ConfigError(f"{params.source} is invalid:\n  - data.datasets: required key is missing")
    name = name or data.get("dataset") or DEFAULT_DATASET
    if name not in datasets:
        known = ", ".join(datasets)
        raise ConfigError(f"{params.source} is invalid:\n  - data.dataset: {name!r} is not one of the configured datasets: {known}")
    entry = with_default_folders(name, datasets[name])
    return name, validate_section(DatasetConfig, entry, params.source, f"data.datasets.{name}")
