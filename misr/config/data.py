"""`data`: the data sets, the synthetic set, the demo corpus and the import limit, as one section (the CLI's)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from misr.config.dataset import DEFAULT_DATASET, DatasetConfig, with_default_folders
from misr.config.democorpus import DemoCorpusConfig
from misr.config.section import Section
from misr.config.synth import SynthConfig


class DataConfig(Section):
    dataset: str = Field(DEFAULT_DATASET, description="the entry of `datasets` the pipeline runs on")
    datasets: dict[str, DatasetConfig]
    synth: SynthConfig = Field(default_factory=SynthConfig)
    demo_corpus: DemoCorpusConfig = Field(default_factory=DemoCorpusConfig)
    import_max_elements: int = Field(
        200_000_000,
        ge=1000,
        description="a limit: `misr import-mmsa` refuses a file whose lists hold more values than this with shared "
        "references expanded (a small hostile pickle can expand to billions); raise it for a genuine file of nested lists",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_paths(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("datasets"), dict):
            raw = {**raw, "datasets": {name: with_default_folders(name, entry) for name, entry in raw["datasets"].items()}}
        return raw

    @model_validator(mode="after")
    def _known_dataset(self) -> DataConfig:
        if self.dataset not in self.datasets:
            raise ValueError(  # noqa: E501
                f"dataset {self.dataset!r} is not one of the configured datasets: {', '.join(self.datasets)}"
            )
        return self

    @property
    def active(self) -> DatasetConfig:
        return self.datasets[self.dataset]
