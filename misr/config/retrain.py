"""`retrain`: the scheduled retraining."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from misr.config.section import Section


class RetrainConfig(Section):
    """The scheduled retraining (`misr retrain`, `misr schedule`)."""

    dataset: str = Field("demo", description="the data set whose raw corpus is watched and whose model is registered")
    cron: str = Field("0 3 * * *", description="when `misr schedule` runs the retraining (cron, server time)")
    push: bool = Field(True, description="`dvc push` after a successful retraining (to the default DVC remote)")
    audit_log: Path = Field(Path(".misr/audit.jsonl"), description="every retraining run, changed or not (kept out of git)")
    lock_file: Path = Field(Path(".misr/retrain.lock"), description="one retraining at a time: never two DVC processes")

    @model_validator(mode="after")
    def _cron(self) -> RetrainConfig:
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday), got {self.cron!r}")
        return self
