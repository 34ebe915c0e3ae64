"""`extract`: how extraction runs (shards, workers, Dask), which no stage declares."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from misr.config.section import Section


class ExtractConfig(Section):
    """How extraction runs, not what it produces: no DVC stage declares these, so changing them re-runs nothing."""

    shard_size: int = Field(
        16, ge=1, le=10000, description="at most this many clips per extraction task (fewer when that keeps every worker busy)"
    )
    runner: Literal["threads", "dask"] = "threads"
    max_workers: int = Field(2, ge=1, le=1024)
    dask_address: str | None = Field(None, description="an existing Dask scheduler; null starts a local cluster")
    strict: bool = Field(False, description="exit non-zero when any clip is quarantined or kept with a modality absent")
