"""The Parquet feature store: one folder per data set, one Parquet dataset per modality.

`schema` says what the tables hold, `write` and `read` build and read them, and `FeatureStore` is
the folder with its operations.
"""

from misr.store.schema import (
    KEY_SEPARATOR,
    MODALITIES,
    SEQUENCE_MODALITIES,
    SPLITS,
    UNIMODAL_LABELS,
    ExtractorInfo,
    Sequences,
    SplitData,
    TextTokens,
    clip_key,
)
from misr.store.store import FeatureStore

__all__ = [
    "KEY_SEPARATOR",
    "MODALITIES",
    "SEQUENCE_MODALITIES",
    "SPLITS",
    "UNIMODAL_LABELS",
    "ExtractorInfo",
    "FeatureStore",
    "Sequences",
    "SplitData",
    "TextTokens",
    "clip_key",
]
