"""The one small base class every feature extractor implements.

An extractor turns one clip into one record for the store (see `FeatureStore.write_modality`). Its
`info` (name, version, configuration, feature names) goes into the Parquet metadata, and its config
hash, with the clip's source hash, decides whether a clip has to be extracted again.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from misr.config import FeaturesConfig
from misr.data.corpus import Clip
from misr.store import ExtractorInfo


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


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
