"""Stage synth: a synthetic MSA data set written straight into a feature store, with its oracle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from misr.config import SynthConfig
from misr.data.synth import generate


def run(
    synth: SynthConfig, out_dir: str | Path, force: bool = False, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Write the store to `out_dir`; returns the oracle (label statistics, ceiling and floor metrics)."""
    return generate(synth, out_dir, force=force, progress=progress)
