"""Content hashes that decide whether work can be skipped (extraction cache, DVC-style provenance)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from misr.util.atomic import is_temporary


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able value that does not depend on dict order or Python's hash seed."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: str | Path) -> str | None:
    """Content hash of a file or folder (relative paths and bytes; temporary files left out), independent of
    timestamps: a copy, a checkout from DVC's cache or a byte-identical re-extraction hash alike. None: absent."""
    path = Path(path)
    if not path.exists():
        return None
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not is_temporary(p))
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
