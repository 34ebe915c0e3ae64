"""`data.demo_corpus`: the real video files of `misr demo-corpus`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from misr.config.section import SPLITS, Section, Seed
from misr.config.synth import SplitShape


class DemoCorpusConfig(Section):
    """`misr demo-corpus`: real video files (animated face, speech-like audio, transcript) in the MMSA-FET layout."""

    seed: Seed = 1111
    n_clips: int = Field(240, ge=13, le=100000, description="clips in all; split 70/15/15 by video into train/valid/test")
    duration: tuple[float, float] = Field((2.0, 3.0), description="min and max seconds per clip")
    fps: int = Field(25, ge=5, le=60)
    size: int = Field(224, ge=96, le=1024, description="width and height of the video in pixels")
    sample_rate: int = Field(16000, ge=8000, le=48000)
    text_words: tuple[int, int] = Field((6, 16), description="min and max words per transcript")
    modality_noise: dict[Literal["text", "audio", "visual"], float] = Field(
        default_factory=lambda: {"text": 0.6, "audio": 0.6, "visual": 0.6}
    )
    neutral_ratio: float = Field(0.05, ge=0.0, le=1.0)
    label_step: float = Field(0.2, ge=0.0, le=1.0)
    splits: dict[Literal["train", "valid", "test"], SplitShape] = Field(default_factory=lambda: {s: SplitShape() for s in SPLITS})

    @model_validator(mode="after")
    def _check(self) -> DemoCorpusConfig:
        if not 0.5 <= self.duration[0] <= self.duration[1] <= 60:
            raise ValueError(f"duration must be [min, max] seconds with 0.5 <= min <= max <= 60 (got {list(self.duration)})")
        if not 1 <= self.text_words[0] <= self.text_words[1]:
            raise ValueError("text_words must be [min, max] with 1 <= min <= max")
        if self.label_step > 0 and abs(3.0 / self.label_step - round(3.0 / self.label_step)) > 1e-6:
            raise ValueError(f"label_step must divide 3 evenly, or be 0 (got {self.label_step})")
        return self
