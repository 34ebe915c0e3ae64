"""The Parquet feature store: one folder per data set, one Parquet dataset per modality.

`schema` says what the tables hold (re-exported here), `write` and `read` build and read them,
`folder.StoreFolder` is the folder with what extraction does to it, and `store.FeatureStore` that folder
with its splits read into arrays. This file imports the schema alone, so that importing a name from it
costs a stage no reader and no writer.
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

__all__ = [
    "KEY_SEPARATOR",
    "MODALITIES",
    "SEQUENCE_MODALITIES",
    "SPLITS",
    "UNIMODAL_LABELS",
    "ExtractorInfo",
    "Sequences",
    "SplitData",
    "TextTokens",
    "clip_key",
]
