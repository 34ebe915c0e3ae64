"""The clips a face benchmark measures: every video file under each folder named on its command line."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from misr.data.corpus import VIDEO_EXTENSIONS


def videos_under(folders: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """(folder, video file) for every video under each folder, sorted; exits naming a folder that holds none."""
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            sys.exit(f"no video files under {folder}")
        for path in files:
            yield folder, path
