"""Where everything of a feature store lives, and reading its two whole-store tables.

    <store>/clips.parquet          one row per clip: ids, split, transcript, labels, source hash
    <store>/text/part-*.parquet    clip_key, input_ids, attention_mask[, hidden]
    <store>/audio/part-*.parquet   clip_key, frames, n_frames, frame_rate
    <store>/visual/part-*.parquet  clip_key, frames, n_frames, frame_rate, face_ratio
    <store>/errors.parquet         the quarantine: clip_key, stage, error, message
    <store>/*.json                 small documents beside the data (e.g. the synth oracle)

`StoreLayout` is the only place these names are spelled; the readers (`read`, `stream`) take one, and
`FeatureStore` adds the operations that write. Part files are numbered; when a clip appears in several
parts (re-extraction), the highest-numbered part wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from misr.errors import StoreError
from misr.store.format import check_clips, check_part, read_parquet, read_schema
from misr.store.schema import ERRORS_SCHEMA, MODALITIES, PART_RE
from misr.util import atomic
from misr.util.hashing import tree_sha256

NO_STORE_HINT = "create one with `misr synth` or `misr extract`"
_FINGERPRINTS: dict[tuple, str] = {}  # a store's state (files, sizes, times) -> its content hash, within this process


class StoreLayout:
    """A feature store folder: its paths, its part files, and its clips and quarantine tables (read, checked)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def clips_path(self) -> Path:
        return self.root / "clips.parquet"

    @property
    def errors_path(self) -> Path:
        return self.root / "errors.parquet"

    def modality_dir(self, modality: str) -> Path:
        if modality not in MODALITIES:
            raise StoreError(f"unknown modality {modality!r}; the store holds {', '.join(MODALITIES)}")
        return self.root / modality

    def part_files(self, modality: str) -> list[tuple[int, Path]]:
        """The visible part files of a modality, oldest first (temporary files are never listed)."""
        folder = self.modality_dir(modality)
        if not folder.is_dir():
            return []
        found = ((PART_RE.match(p.name), p) for p in folder.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m)

    def checked_part_files(self, modality: str) -> list[tuple[int, Path, dict[str, Any]]]:
        """The part files of a modality with their metadata, once each is known to be readable by this version."""
        return [(seq, path, check_part(path, read_schema(path), modality)) for seq, path in self.part_files(modality)]

    def temporary_files(self) -> list[Path]:
        folders = [self.root, *(self.root / m for m in MODALITIES)]
        return [p for folder in folders if folder.is_dir() for p in folder.iterdir() if atomic.is_temporary(p)]

    def exists(self) -> bool:
        return self.clips_path.exists()

    def fingerprint(self) -> str:
        """The store's identity: a hash of its files' names and bytes (not their times), so a copy, a checkout
        from DVC's cache or a byte-identical re-extraction is the same store. The one fingerprint of a store: a
        resumable checkpoint and a comparison's cached seeds are valid only for the store they were trained on.
        It reads every byte, once per process and state of the files."""
        if not self.exists():
            raise StoreError(f"no feature store at {self.root}", hint=NO_STORE_HINT)
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and not atomic.is_temporary(p))
        state = (str(self.root.resolve()), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
        if state not in _FINGERPRINTS:
            _FINGERPRINTS[state] = tree_sha256(self.root) or ""
        return _FINGERPRINTS[state]

    def clips(self) -> pa.Table:
        if not self.root.exists():
            raise StoreError(f"no feature store at {self.root}", hint=NO_STORE_HINT)
        if not self.clips_path.exists():
            raise StoreError(f"{self.root} is not a feature store: it has no clips.parquet", hint=NO_STORE_HINT)
        table = read_parquet(self.clips_path)
        check_clips(self.clips_path, table)
        return table

    def errors(self) -> pa.Table:
        table = self.read_optional(self.errors_path, ERRORS_SCHEMA)
        return table if table is not None else ERRORS_SCHEMA.empty_table()

    def read_optional(self, path: Path, schema: pa.Schema) -> pa.Table | None:
        """A whole-store table in `schema`, or None when the file does not exist yet."""
        if not path.exists():
            return None
        table = read_parquet(path)
        for field in schema:  # a column added since the file was written reads as nulls
            if field.name not in table.column_names:
                table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
        return table.select(schema.names).cast(schema)
