"""The feature store folder with what extraction does to it: write, prune, settle, summarise.

Where everything lives is `misr.store.layout`; what the tables hold, `misr.store.schema`; how they are
built, `write`. Reading a split into arrays is `misr.store.read` (and `FeatureStore`, this folder with
that reader): extraction imports no reader, so a change to reading re-runs no extraction. Writes are
atomic (`misr.util.atomic`): a reader, or a crash, never sees half a file.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pyarrow as pa

import misr.store.write as write
from misr.errors import StoreError
from misr.store.format import read_parquet, read_schema
from misr.store.layout import StoreLayout
from misr.store.schema import CLIPS_SCHEMA, ERRORS_SCHEMA, MODALITIES, PART_RE, STORE_SPLITS, ExtractorInfo
from misr.util import atomic
from misr.util.lock import exclusive, lock_beside

STALE_TMP_SECONDS = 3600


class StoreFolder(StoreLayout):
    """A feature store folder. Creating the object touches nothing; writing creates folders as needed."""

    def lock(self) -> AbstractContextManager[None]:
        """Hold the store for one writer (extract, synth, import); a second one is refused at once, naming the first.

        The lock file lies beside the folder, not in it: the folder is a DVC output and holds only data.
        """
        return exclusive(
            lock_beside(self.root, "write"),
            f"another writer of {self.root} (misr extract, synth or import-mmsa)",
            hint="wait for it to finish, or write into another folder",
        )

    # ------------------------------------------------------------------------------- writing

    def write_clips(self, records: Iterable[Mapping[str, Any]], replace: bool = False) -> Path:
        """Insert or replace clip rows (by clip_key) in clips.parquet; `replace` drops every other row."""
        new = write.table_from_records(records, CLIPS_SCHEMA, required=("clip_key", "split", "label"))
        for split in set(new.column("split").to_pylist()):
            if split not in STORE_SPLITS:
                raise StoreError(f"clip split must be one of {', '.join(STORE_SPLITS)} (got {split!r})")
        table = new if replace else write.upsert(self.read_optional(self.clips_path, CLIPS_SCHEMA), new, ("clip_key",))
        return write.write_table(self.clips_path, table)

    def write_errors(self, records: Iterable[Mapping[str, Any]], replace: bool = False) -> Path:
        """Add quarantine rows (a clip's later error at the same stage replaces its earlier one);
        `replace` makes these rows the whole quarantine."""
        new = write.table_from_records(records, ERRORS_SCHEMA, required=("clip_key", "stage", "error"))
        current = self.read_optional(self.errors_path, ERRORS_SCHEMA)
        table = new if replace else write.upsert(current, new, ("clip_key", "stage"))
        return write.write_table(self.errors_path, table)

    def clear_errors(self, clip_keys: Iterable[str], stage: str | None = None) -> None:
        """Drop quarantine rows of clips that have since been processed successfully."""
        keys = set(clip_keys)
        current = self.read_optional(self.errors_path, ERRORS_SCHEMA)
        if current is None or not keys:
            return
        rows = current.to_pylist()
        kept = [r for r in rows if not (r["clip_key"] in keys and (stage is None or r["stage"] == stage))]
        if len(kept) != len(rows):
            write.write_table(self.errors_path, pa.Table.from_pylist(kept, schema=ERRORS_SCHEMA))

    def write_modality(self, modality: str, records: Sequence[Mapping[str, Any]], info: ExtractorInfo, name: str | None = None) -> Path:
        """Write one part file of a modality for a set of clips, atomically; returns its path.

        Each record holds `clip_key`, `source_sha256` and, for audio/visual, `frames` (array
        [T, D]) with optional `frame_rate` and `face_ratio`; for text, `input_ids`,
        `attention_mask` and optionally `hidden` ([L, H]).
        """
        folder = self.modality_dir(modality)
        if not records:
            raise StoreError(f"no {modality} records to write")
        if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise StoreError(f"part name {name!r} may hold only letters, digits, '.', '_' and '-'")
        return write.write_part(folder, write.modality_table(modality, records, info), name)

    def prune(self, modality: str) -> list[Path]:
        """Delete part files none of whose rows are still live (every clip re-written in a later part)."""
        parts = self.part_files(modality)
        keys_of = {seq: read_parquet(path, columns=["clip_key"]).column("clip_key").to_pylist() for seq, path in parts}
        latest = {key: seq for seq, _ in parts for key in keys_of[seq]}
        removed = []
        for seq, path in parts:
            if not any(latest[k] == seq for k in keys_of[seq]):
                path.unlink()
                removed.append(path)
        return removed

    def settle(self, modality: str) -> None:
        """Give the modality's parts a layout that depends on their contents alone, so the same features are
        the same files (DVC hashes names and bytes): superseded rows dropped, so every clip lies in one part,
        then the parts numbered 1..n in the order of their names (shard hashes) and first clips, not in the
        order concurrent writers finished. Each step leaves a valid store: a crash loses nothing.
        """
        self.prune(modality)
        parts = self.part_files(modality)
        keys_of = {seq: read_parquet(path, columns=["clip_key"]).column("clip_key").to_pylist() for seq, path in parts}
        latest = {key: seq for seq, _ in parts for key in keys_of[seq]}
        for seq, path in parts:
            live = [i for i, k in enumerate(keys_of[seq]) if latest[k] == seq]
            if len(live) < len(keys_of[seq]):  # the rows another part re-wrote later: dropped, in place
                write.rewrite_part(path, read_parquet(path).take(live))
                keys_of[seq] = [keys_of[seq][i] for i in live]
        wanted = sorted(parts, key=lambda sp: (PART_RE.match(sp[1].name).group(2) or "", keys_of[sp[0]][:1]))
        if [seq for seq, _ in wanted] == list(range(1, len(wanted) + 1)):
            return
        # disjoint parts may carry any numbers: first out of the way (above every number in use), then 1..n
        top = max(seq for seq, _ in parts) + 1
        moved = [write.renumber_part(path, top + i) for i, (_, path) in enumerate(wanted)]
        for i, path in enumerate(moved):
            write.renumber_part(path, i + 1)

    def clear(self) -> None:
        """Delete everything this store holds (tables, feature folders, JSON documents); the folder stays."""
        for path in (self.clips_path, self.errors_path, *self.root.glob("*.json")):
            path.unlink(missing_ok=True)
        for modality in MODALITIES:
            shutil.rmtree(self.root / modality, ignore_errors=True)

    def remove_stale_tmp(self, older_than: float = STALE_TMP_SECONDS) -> list[Path]:
        """Remove temporary files left by a killed writer (never visible to readers anyway)."""
        now = time.time()
        stale = [p for p in self.temporary_files() if now - p.stat().st_mtime > older_than]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def write_json(self, name: str, payload: Any) -> Path:
        """A small JSON document beside the data (e.g. the synth oracle), written atomically."""
        return atomic.write_json(self.root / name, payload, sort_keys=True)

    # ------------------------------------------------------------------------------- reading

    def latest_values(self, modality: str, columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """clip_key -> {column: value} from each clip's latest row in this modality's parts.

        A column an older part lacks (written by an earlier store format) reads as None there.
        """
        out: dict[str, dict[str, Any]] = {}
        for _, path, _ in self.checked_part_files(modality):
            names = read_schema(path).names
            table = read_parquet(path, columns=["clip_key", *(c for c in columns if c in names)])
            values = {c: table.column(c).to_pylist() if c in names else [None] * table.num_rows for c in columns}
            for row, key in enumerate(table.column("clip_key").to_pylist()):
                out[key] = {c: values[c][row] for c in columns}
        return out

    def present(self, modality: str) -> dict[str, tuple[str, str]]:
        """clip_key -> (source_sha256, config_hash) of each clip this modality holds (latest part wins)."""
        rows = self.latest_values(modality, ["source_sha256", "config_hash"])
        return {k: (r["source_sha256"], r["config_hash"]) for k, r in rows.items()}

    def absent(self, modality: str) -> dict[str, str]:
        """clip_key -> why the clip has no such modality, for the clips whose latest row says so (format 1: none)."""
        return {k: r["absent"] for k, r in self.latest_values(modality, ["absent"]).items() if r["absent"]}

    def identity_changes(self) -> dict[str, int]:
        """clip_key -> possible changes of person in its visual track (the face tracker's count), where not 0."""
        rows = self.latest_values("visual", ["identity_changes"])
        return {k: int(r["identity_changes"]) for k, r in rows.items() if r["identity_changes"]}

    def decoded_seconds(self, modality: str) -> dict[str, float]:
        """clip_key -> seconds of media this sequence modality holds (n_frames / frame_rate; latest part wins)."""
        rows = self.latest_values(modality, ["n_frames", "frame_rate"])
        return {k: r["n_frames"] / r["frame_rate"] for k, r in rows.items() if r["frame_rate"]}

    def metadata(self, modality: str) -> list[dict[str, Any]]:
        """The schema metadata of each part file of a modality, with its path."""
        return [{"path": str(path), **meta} for _, path, meta in self.checked_part_files(modality)]

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for split in self.clips().column("split").to_pylist():
            counts[split] = counts.get(split, 0) + 1
        return counts

    # ------------------------------------------------------------------------------- summary

    def describe(self) -> dict[str, Any]:
        """A summary for people: usable clips per split, quarantined clips, and per modality files, clips,
        dimension, extractor. A clip with several quarantine rows (one per failed stage) counts once."""
        quarantined = set(self.errors().column("clip_key").to_pylist())
        clips = self.clips()
        usable: dict[str, int] = {}
        for key, split in zip(clips.column("clip_key").to_pylist(), clips.column("split").to_pylist(), strict=True):
            if key not in quarantined:
                usable[split] = usable.get(split, 0) + 1
        summary: dict[str, Any] = {"root": str(self.root), "splits": usable, "modalities": {}, "absent": {}}
        for m in MODALITIES:
            metas = self.metadata(m)
            if not metas:
                continue
            last = metas[-1]
            summary["modalities"][m] = {
                "files": len(metas),
                "clips": len(self.present(m)),
                "dim": last.get("dim"),
                "extractor": f"{last.get('extractor')} {last.get('extractor_version')}",
                "config_hash": last.get("config_hash"),
                "features": last.get("feature_names", [])[:8],
            }
            summary["absent"][m] = len(set(self.absent(m)) - quarantined)
        summary["quarantined"] = len(quarantined)
        summary["identity_changes"] = len(set(self.identity_changes()) - quarantined)
        warned = clips.column("warnings").to_pylist() if "warnings" in clips.column_names else []
        summary["warnings"] = sum(1 for w in warned if w)
        summary["quarantine_rows"] = self.errors().num_rows
        summary["temporary_files"] = len(self.temporary_files())
        return summary
