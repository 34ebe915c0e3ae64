"""Stage demo_corpus: the bundled demo corpus, real mp4 clips in the MMSA-FET layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from misr.config import DemoCorpusConfig
from misr.data.democorpus import generate


def run(
    demo_corpus: DemoCorpusConfig,
    out_dir: str | Path,
    n_clips: int | None = None,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the corpus to `out_dir`; returns clips, videos and clips per split."""
    return generate(demo_corpus, out_dir, n_clips=n_clips, seed=seed, progress=progress)
