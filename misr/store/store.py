"""`FeatureStore`: the store folder (`misr.store.folder`) with its splits read into padded arrays (`misr.store.read`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import misr.store.read as read
from misr.store.folder import StoreFolder
from misr.store.schema import MODALITIES, SplitData


class FeatureStore(StoreFolder):
    """A feature store folder: everything `StoreFolder` does, and reading a split for training or scoring."""

    def load_split(
        self, split: str, modalities: Sequence[str] = MODALITIES, max_frames: Mapping[str, int] | None = None, as_torch: bool = True
    ) -> SplitData:
        """One split as padded tensors (see `misr.store.read.load_split`)."""
        return read.load_split(self, split, modalities, max_frames, as_torch)
