"""The one small base class every feature extractor implements.

An extractor turns one clip into one record for the store (see `StoreFolder.write_modality`). Its
`info` (name, version, configuration, feature names) goes into the Parquet metadata, and its config
hash, with the clip's source hash, decides whether a clip has to be extracted again.

A clip that simply lacks the modality (no audio track, no face in any frame, an empty transcript)
is not bad input: `absent_record` stands in for it, marked absent with the reason, so the clip stays
usable from its other modalities (training gives an absent one fusion weight 0).
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np

from misr.config.features import FeaturesConfig
from misr.data.corpus import Clip
from misr.store import ExtractorInfo

# ClipError kinds that mean "this clip has no such modality", not "this file is broken"
MISSING_MODALITY = frozenset({"NoAudioTrack", "EmptyAudio", "NoVideoTrack", "NoFace", "EmptyTranscript"})


class Extractor:
    name: ClassVar[str]
    modality: ClassVar[str]  # text | audio | visual
    version: ClassVar[str]

    def __init__(self, features: FeaturesConfig):
        self.settings = features  # the whole features section of params.yaml

    def config(self) -> dict[str, Any]:
        """The settings that change the output (part of the cache key)."""
        raise NotImplementedError

    def feature_names(self) -> list[str]:
        return []

    @property
    def info(self) -> ExtractorInfo:
        return ExtractorInfo(self.name, self.version, self.config(), self.feature_names())

    def source_hash(self, clip: Clip, file_sha256: str) -> str:
        """What the output depends on in the input: the video file, by default."""
        return file_sha256

    def extract(self, clip: Clip) -> dict[str, Any]:
        """One record for the store; raises `misr.data.media.ClipError` when this clip cannot be done."""
        raise NotImplementedError

    def absent_record(self, clip: Clip, reason: str) -> dict[str, Any]:
        """The record of a clip without this modality: one zero frame, marked absent with the reason."""
        width = len(self.feature_names())
        return {"clip_key": clip.key, "frames": np.zeros((1, width), np.float32), "frame_rate": 0.0, "face_ratio": 0.0, "absent": reason}


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
