"""The whole of params.yaml, validated at once: what the CLI, retraining and the benchmarks read.

A stage reads only its sections (`misr.config.section.StageParams`), so this module is in no stage's deps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from misr.config.compare import CompareConfig
from misr.config.data import DataConfig
from misr.config.evaluate import EvaluateConfig
from misr.config.extract import ExtractConfig
from misr.config.features import FeaturesConfig
from misr.config.model import ModelConfig
from misr.config.register import RegisterConfig
from misr.config.retrain import RetrainConfig
from misr.config.section import Section, format_error, read_params
from misr.config.train import TrainConfig
from misr.errors import ConfigError


class Params(Section):
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    # `register` would shadow BaseModel.register (from ABC), hence the alias.
    registration: RegisterConfig = Field(default_factory=RegisterConfig, alias="register")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)

    @model_validator(mode="after")
    def _retrain_dataset(self) -> Params:
        if self.retrain.dataset not in self.data.datasets:
            raise ValueError(f"retrain.dataset {self.retrain.dataset!r} is not one of data.datasets: {', '.join(self.data.datasets)}")
        return self

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def load_params(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Params:
    """Read, override (`key.path=value`, values parsed as YAML) and validate the whole of params.yaml."""
    return validate_params(read_params(path, overrides), source=str(path if path is not None else "params.yaml"))


def validate_params(raw: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [format_error(err, Params) for err in exc.errors()]
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  - {line}" for line in lines)) from None


def params_to_yaml(params: Params) -> str:
    return yaml.safe_dump(params.model_dump(mode="json", by_alias=True), sort_keys=False)
