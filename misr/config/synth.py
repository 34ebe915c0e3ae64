"""`data.synth`: the feature-level synthetic data set of `misr synth`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from misr.config.section import SPLITS, Section, Seed


class SplitShape(Section):
    """How one split's labels are distributed and how often the modalities disagree."""

    positive_ratio: float = Field(0.5, ge=0.0, le=1.0, description="share of non-neutral clips that are positive")
    magnitude_skew: float = Field(1.0, ge=0.1, le=10.0, description="1 = |label| uniform on (0, 3]; >1 concentrates labels near 0")
    conflict_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of clips where one modality expresses the opposite sentiment")


class ShortcutConfig(Section):
    """`data.synth.scenario: shortcut`: one modality carries the label's sign, except in a latent subgroup."""

    modality: Literal["text", "audio", "visual"] = "visual"
    strength: float = Field(1.5, gt=0.0, le=3.0, description="the modality expresses strength x sign(label) (0 for neutral clips)")
    noise: float = Field(0.4, ge=0.0, le=10.0, description="std around that: below the other modalities' noise, so it tempts ERM")
    flipped: dict[Literal["train", "valid", "valid_ood", "test"], float] = Field(
        default_factory=lambda: {"train": 0.1, "valid": 0.1, "valid_ood": 0.6, "test": 0.6},
        description="per split, the share of clips (the latent subgroup) where the modality expresses the opposite sign",
    )

    @model_validator(mode="after")
    def _check(self) -> ShortcutConfig:
        for split in ("train", "valid", "valid_ood", "test"):
            if not 0.0 <= self.flipped.get(split, -1.0) <= 1.0:
                raise ValueError(f"flipped.{split} must be given and in [0, 1]")
        return self


class SynthConfig(Section):
    """`misr synth`: a feature-level synthetic MSA data set."""

    seed: Seed = 1111
    n_clips: dict[Literal["train", "valid", "valid_ood", "test"], int] = Field(
        default_factory=lambda: {"train": 600, "valid": 150, "valid_ood": 300, "test": 1000},
        description="clips per split; valid_ood (optional) is drawn like test and is meant for choosing settings",
    )
    scenario: Literal["shift", "shortcut"] = Field(
        "shortcut",
        description="shift: the splits differ in label prior and conflict rate (`splits`); "
        "shortcut: one modality's sign cue flips in a subgroup that grows from train to test (`shortcut`)",
    )
    shortcut: ShortcutConfig = Field(default_factory=ShortcutConfig)
    audio_dim: int = Field(5, ge=1, le=4096, description="MOSI-like 5, MOSEI-like 74")
    visual_dim: int = Field(20, ge=1, le=4096, description="MOSI-like 20, MOSEI-like 35")
    audio_frames: tuple[int, int] = Field((20, 60), description="min and max frames per clip")
    visual_frames: tuple[int, int] = Field((20, 60), description="min and max frames per clip")
    text_words: tuple[int, int] = Field((6, 20), description="min and max words per transcript")
    modality_noise: dict[Literal["text", "audio", "visual"], float] = Field(
        default_factory=lambda: {"text": 0.6, "audio": 0.9, "visual": 0.75},
        description="std of each modality's expressed sentiment around the clip's sentiment",
    )
    feature_noise: float = Field(0.3, ge=0.0, le=10.0, description="std of the noise added to every feature value")
    neutral_ratio: float = Field(0.05, ge=0.0, le=1.0, description="share of clips labelled exactly 0")
    label_step: float = Field(0.2, ge=0.0, le=1.0, description="labels rounded to this step (0: continuous)")
    splits: dict[Literal["train", "valid", "test"], SplitShape] = Field(default_factory=lambda: {s: SplitShape() for s in SPLITS})

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        for name in ("audio_frames", "visual_frames", "text_words"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} must be [min, max] with 1 <= min <= max (got [{lo}, {hi}])")
        for split in SPLITS:
            if self.n_clips.get(split, 0) < 1:
                raise ValueError(f"n_clips.{split} must be given and >= 1")
        if self.scenario == "shortcut" and self.n_clips.get("valid_ood", 0) < 1:
            raise ValueError("n_clips.valid_ood must be given and >= 1 with scenario shortcut (settings are chosen on it)")
        if self.n_clips.get("valid_ood", 1) < 1:
            raise ValueError("n_clips.valid_ood must be >= 1 when given")
        if self.label_step > 0 and abs(3.0 / self.label_step - round(3.0 / self.label_step)) > 1e-6:
            raise ValueError(f"label_step must divide 3 evenly, e.g. 0.1, 0.2, 0.5, 1, or be 0 (got {self.label_step})")
        for m in ("text", "audio", "visual"):
            if not 0 <= self.modality_noise.get(m, -1) <= 10:
                raise ValueError(f"modality_noise.{m} must be given and in [0, 10]")
        return self
