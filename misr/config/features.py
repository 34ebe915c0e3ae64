"""`features`: what the features are. Every key here can change a store's contents."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from misr.config.section import Section

# Keys of how extraction runs that older params files and checkpoints kept under `features` (now `extract`).
MOVED_TO_EXTRACT = ("shard_size", "runner", "max_workers", "dask_address", "strict")


class TextFeatures(Section):
    tokenizer: str = Field("minilm", description="minilm (the shipped MiniLM-L6), or a local BERT-family model path")
    max_length: int = Field(50, ge=4, le=512, description="tokens per transcript, [CLS] and [SEP] included")
    store_hidden: bool = Field(False, description="also store the frozen encoder's per-token hidden states")


class AudioFeatures(Section):
    sample_rate: int = Field(16000, ge=4000, le=96000)
    frame_rate: float = Field(25.0, gt=0, le=200, description="feature frames per second")
    features: list[Literal["mfcc", "f0", "voicing", "rms", "centroid", "bandwidth", "rolloff", "flatness", "zcr"]] = Field(
        default_factory=lambda: ["mfcc", "f0", "voicing", "rms", "centroid", "bandwidth", "flatness", "zcr"]
    )
    n_mfcc: int = Field(13, ge=1, le=64)


class VisualFeatures(Section):
    backend: Literal["landmarks", "pyfeat"] = Field("landmarks", description="dlib landmarks + FACS geometry, or py-feat")
    frame_rate: float = Field(25.0, gt=0, le=120, description="frames per second analysed")
    detect_every: int = Field(5, ge=1, le=250, description="run the face detector every N frames, track in between")


class FeaturesConfig(Section):
    """What the features are: every key here can change the store's contents."""

    text: TextFeatures = Field(default_factory=TextFeatures)
    audio: AudioFeatures = Field(default_factory=AudioFeatures)
    visual: VisualFeatures = Field(default_factory=VisualFeatures)
    max_gap_seconds: float = Field(
        30.0,
        gt=0,
        le=86400,
        description="a limit, not a feature: the longest stretch without a video frame or audio sample (a late start, a hole) "
        "that extraction fills; a clip with a longer one is quarantined, so a small file cannot stand for hours",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_to_extract(cls, raw: Any) -> Any:
        moved = sorted(set(raw) & set(MOVED_TO_EXTRACT)) if isinstance(raw, dict) else []
        if moved:
            where = ", ".join(f"extract.{key}" for key in moved)
            raise ValueError(f"{', '.join(moved)} moved to the extract section ({where}): features holds only what the features are")
        return raw
