"""`evaluate`: which splits the evaluate stage scores, and its robustness probes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from misr.config.section import Section


class EvaluateConfig(Section):
    splits: list[Literal["valid", "test"]] = Field(default_factory=lambda: ["valid", "test"], min_length=1)
    robustness: bool = Field(True, description="agree/conflict subsets and each modality zeroed out")
