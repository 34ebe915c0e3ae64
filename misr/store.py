"""The Parquet feature store: one folder per data set, one Parquet dataset per modality.

    <store>/clips.parquet          one row per clip: ids, split, transcript, labels, source hash
    <store>/text/part-*.parquet    clip_key, input_ids, attention_mask[, hidden]
    <store>/audio/part-*.parquet   clip_key, frames, n_frames, frame_rate
    <store>/visual/part-*.parquet  clip_key, frames, n_frames, frame_rate, face_ratio
    <store>/errors.parquet         the quarantine: clip_key, stage, error, message

Every modality row also carries the clip's `source_sha256` and the extractor's `config_hash`, so an
extractor can skip clips it has already done. Variable-length sequences are
list<fixed_size_list<float32, D>>; each file's schema metadata names the extractor, its version, its
config (and hash) and the feature names.

Writes are atomic: a file is written under a hidden temporary name and then renamed into place, so
a reader (or a crash) never sees half a file. Part files are numbered; when a clip appears in several
parts (re-extraction), the highest-numbered part wins.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from misr.errors import StoreError
from misr.hashing import stable_hash

FORMAT_VERSION = "1"
MODALITIES = ("text", "audio", "visual")
SEQUENCE_MODALITIES = ("audio", "visual")
UNIMODAL_LABELS = {"text": "label_T", "audio": "label_A", "visual": "label_V"}
KEY_SEPARATOR = "$_$"  # MMSA's clip id format: "<video_id>$_$<clip_id>"
_PART_RE = re.compile(r"^part-(\d{6})(?:-[A-Za-z0-9_.-]+)?\.parquet$")
_STALE_TMP_SECONDS = 3600

CLIPS_SCHEMA = pa.schema(
    [
        ("clip_key", pa.string()),
        ("video_id", pa.string()),
        ("clip_id", pa.string()),
        ("split", pa.string()),
        ("text", pa.string()),
        ("label", pa.float32()),
        ("label_T", pa.float32()),
        ("label_A", pa.float32()),
        ("label_V", pa.float32()),
        ("annotation", pa.string()),
        ("source_sha256", pa.string()),
        ("duration", pa.float32()),
    ]
)
ERRORS_SCHEMA = pa.schema(
    [("clip_key", pa.string()), ("stage", pa.string()), ("error", pa.string()), ("message", pa.string())]
)


def clip_key(video_id: str, clip_id: str) -> str:
    return f"{video_id}{KEY_SEPARATOR}{clip_id}"


@dataclass(frozen=True)
class ExtractorInfo:
    """What produced a modality file: recorded in its schema metadata and used as the cache key."""

    name: str
    version: str
    config: Mapping[str, Any]
    feature_names: Sequence[str]

    @property
    def config_hash(self) -> str:
        # The version is part of the hash: a new extractor version invalidates cached features.
        return stable_hash({"name": self.name, "version": self.version, "config": dict(self.config)})


@dataclass
class Sequences:
    """A padded batch of variable-length sequences: values [N, T, D] float32, lengths [N] int64."""

    values: Any
    lengths: Any
    feature_names: list[str]


@dataclass
class TextTokens:
    """Token ids and mask [N, L] int64 (0 = padding); hidden [N, L, H] float32 when stored."""

    input_ids: Any
    attention_mask: Any
    lengths: Any
    hidden: Sequences | None = None
    tokenizer: str = ""
    vocab_size: int | None = None


@dataclass
class SplitData:
    """One split of a data set, ready for training: every tensor is in the order of `clip_keys`."""

    split: str
    clip_keys: list[str]
    labels: Any  # [N] float32
    unimodal_labels: dict[str, Any]  # "text"/"audio"/"visual" -> [N] float32, NaN where unknown
    text: TextTokens | None = None
    audio: Sequences | None = None
    visual: Sequences | None = None
    quarantined: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clip_keys)


@dataclass
class _Part:
    path: Path
    seq: int
    table: pa.Table


class FeatureStore:
    """A feature store folder. Creating the object touches nothing; writing creates folders as needed."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ------------------------------------------------------------------------------- paths

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
        parts = []
        for path in folder.iterdir():
            match = _PART_RE.match(path.name)
            if match:
                parts.append((int(match.group(1)), path))
        return sorted(parts)

    def exists(self) -> bool:
        return self.clips_path.exists()

    # ------------------------------------------------------------------------------- writing

    def write_clips(self, records: Iterable[Mapping[str, Any]], replace: bool = False) -> Path:
        """Insert or replace clip rows (by clip_key) in clips.parquet; `replace` drops every other row."""
        new = _table_from_records(records, CLIPS_SCHEMA, required=("clip_key", "split", "label"))
        for split in set(new.column("split").to_pylist()):
            if split not in ("train", "valid", "test"):
                raise StoreError(f"clip split must be train, valid or test (got {split!r})")
        table = new if replace else _upsert(self._read_optional(self.clips_path, CLIPS_SCHEMA), new, ("clip_key",))
        return self._write_fixed(table, self.clips_path)

    def write_errors(self, records: Iterable[Mapping[str, Any]], replace: bool = False) -> Path:
        """Add quarantine rows (a clip's later error at the same stage replaces its earlier one);
        `replace` makes these rows the whole quarantine."""
        new = _table_from_records(records, ERRORS_SCHEMA, required=("clip_key", "stage", "error"))
        table = new if replace else _upsert(self._read_optional(self.errors_path, ERRORS_SCHEMA), new, ("clip_key", "stage"))
        return self._write_fixed(table, self.errors_path)

    def clear_errors(self, clip_keys: Iterable[str], stage: str | None = None) -> None:
        """Drop quarantine rows of clips that have since been processed successfully."""
        keys = set(clip_keys)
        current = self._read_optional(self.errors_path, ERRORS_SCHEMA)
        if current is None or not keys:
            return
        rows = current.to_pylist()
        kept = [r for r in rows if not (r["clip_key"] in keys and (stage is None or r["stage"] == stage))]
        if len(kept) != len(rows):
            self._write_fixed(pa.Table.from_pylist(kept, schema=ERRORS_SCHEMA), self.errors_path)

    def write_modality(
        self,
        modality: str,
        records: Sequence[Mapping[str, Any]],
        info: ExtractorInfo,
        name: str | None = None,
    ) -> Path:
        """Write one part file of a modality for a set of clips, atomically; returns its path.

        Each record holds `clip_key`, `source_sha256` and, for audio/visual, `frames` (array
        [T, D]) with optional `frame_rate` and `face_ratio`; for text, `input_ids`,
        `attention_mask` and optionally `hidden` ([L, H]).
        """
        if not records:
            raise StoreError(f"no {modality} records to write")
        if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise StoreError(f"part name {name!r} may hold only letters, digits, '.', '_' and '-'")
        if modality == "text":
            table = _text_table(records, info)
        elif modality in SEQUENCE_MODALITIES:
            table = _sequence_table(modality, records, info)
        else:
            self.modality_dir(modality)  # raises the unknown-modality error
            raise AssertionError
        folder = self.modality_dir(modality)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = self._write_tmp(table, folder)
        # Claim the next free number without ever replacing an existing part: os.link fails when
        # the name exists, so concurrent writers each get their own number.
        existing = self.part_files(modality)
        seq = existing[-1][0] + 1 if existing else 1
        suffix = f"-{name}" if name else ""
        try:
            while True:
                final = folder / f"part-{seq:06d}{suffix}.parquet"
                try:
                    os.link(tmp, final)
                    break
                except FileExistsError:
                    seq += 1
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)
        return final

    def prune(self, modality: str) -> list[Path]:
        """Delete part files none of whose rows are still live (every clip re-written in a later part)."""
        parts = self.part_files(modality)
        latest: dict[str, int] = {}
        keys_of: dict[int, list[str]] = {}
        for seq, path in parts:
            keys = _read_parquet(path, columns=["clip_key"]).column("clip_key").to_pylist()
            keys_of[seq] = keys
            for key in keys:
                latest[key] = seq
        removed = []
        for seq, path in parts:
            if not any(latest[k] == seq for k in keys_of[seq]):
                path.unlink()
                removed.append(path)
        return removed

    def remove_stale_tmp(self, older_than: float = _STALE_TMP_SECONDS) -> list[Path]:
        """Remove temporary files left by a killed writer (never visible to readers anyway)."""
        removed = []
        now = time.time()
        for folder in [self.root, *(self.root / m for m in MODALITIES)]:
            if folder.is_dir():
                for path in folder.glob(".tmp-*"):
                    if now - path.stat().st_mtime > older_than:
                        path.unlink(missing_ok=True)
                        removed.append(path)
        return removed

    def write_json(self, name: str, payload: Any) -> Path:
        """A small JSON document beside the data (e.g. the synth oracle), written atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / name
        tmp = self.root / f".tmp-{uuid.uuid4().hex}-{name}"
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target

    def _write_tmp(self, table: pa.Table, folder: Path) -> Path:
        tmp = folder / f".tmp-{uuid.uuid4().hex}.parquet"
        try:
            pq.write_table(table, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write to {folder}: {exc.strerror or exc}", hint="check the folder's permissions and free space") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _write_fixed(self, table: pa.Table, target: Path) -> Path:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {target.parent}: {exc.strerror or exc}") from None
        tmp = self._write_tmp(table, target.parent)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        return target

    def _read_optional(self, path: Path, schema: pa.Schema) -> pa.Table | None:
        if not path.exists():
            return None
        return _read_parquet(path).select(schema.names).cast(schema)

    # ------------------------------------------------------------------------------- reading

    def clips(self) -> pa.Table:
        if not self.root.exists():
            raise StoreError(f"no feature store at {self.root}", hint="create one with `misr synth` or `misr extract`")
        if not self.clips_path.exists():
            raise StoreError(
                f"{self.root} is not a feature store: it has no clips.parquet",
                hint="create one with `misr synth` or `misr extract`",
            )
        table = _read_parquet(self.clips_path)
        missing = [n for n in ("clip_key", "split", "label") if n not in table.column_names]
        if missing:
            raise StoreError(f"{self.clips_path} lacks the column(s) {', '.join(missing)}")
        return table

    def errors(self) -> pa.Table:
        table = self._read_optional(self.errors_path, ERRORS_SCHEMA)
        return table if table is not None else ERRORS_SCHEMA.empty_table()

    def present(self, modality: str) -> dict[str, tuple[str, str]]:
        """clip_key -> (source_sha256, config_hash) of each clip this modality holds (latest part wins)."""
        out: dict[str, tuple[str, str]] = {}
        for _, path in self.part_files(modality):
            table = _read_parquet(path, columns=["clip_key", "source_sha256", "config_hash"])
            for key, src, cfg in zip(*(table.column(c).to_pylist() for c in table.column_names)):
                out[key] = (src, cfg)
        return out

    def metadata(self, modality: str) -> list[dict[str, Any]]:
        """The schema metadata of each part file of a modality, with its path."""
        out = []
        for _, path in self.part_files(modality):
            try:
                schema = pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise _corrupt(path, exc) from None
            out.append({"path": str(path), **_decode_metadata(schema.metadata)})
        return out

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for split in self.clips().column("split").to_pylist():
            counts[split] = counts.get(split, 0) + 1
        return counts

    def load_split(
        self,
        split: str,
        modalities: Sequence[str] = MODALITIES,
        max_frames: Mapping[str, int] | None = None,
        as_torch: bool = True,
    ) -> SplitData:
        """Read one split into padded arrays (torch tensors unless as_torch=False).

        Clips in the quarantine are left out. Every other clip of the split must be present in each
        requested modality; otherwise the error names the clips and the files concerned.
        `max_frames` truncates long sequences per modality (e.g. {"audio": 400}).
        """
        for m in modalities:
            self.modality_dir(m)
        clips = self.clips()
        splits = clips.column("split").to_pylist()
        rows = [i for i, s in enumerate(splits) if s == split]
        if not rows:
            present = sorted(set(splits))
            raise StoreError(
                f"split {split!r} has no clips in {self.clips_path} (splits present: {', '.join(present) or 'none'})"
            )
        quarantined = set(self.errors().column("clip_key").to_pylist())
        keys_all = clips.column("clip_key").to_pylist()
        rows = [i for i in rows if keys_all[i] not in quarantined]
        skipped = [keys_all[i] for i, s in enumerate(splits) if s == split and keys_all[i] in quarantined]
        if not rows:
            raise StoreError(f"every clip of split {split!r} is in the quarantine ({self.errors_path})")
        keys = [keys_all[i] for i in rows]
        if len(set(keys)) != len(keys):
            raise StoreError(f"{self.clips_path} lists some clip_key more than once")

        take = pa.array(rows, pa.int64())
        labels = _float_column(clips, "label", take)
        unimodal = {m: _float_column(clips, col, take) for m, col in UNIMODAL_LABELS.items()}

        located = {m: self._locate(m, keys) for m in modalities}
        self._check_coverage(split, keys, located)

        data = SplitData(split=split, clip_keys=keys, labels=labels, unimodal_labels=unimodal, quarantined=skipped)
        limits = dict(max_frames or {})
        for m in modalities:
            parts, where = located[m]
            if m == "text":
                data.text = _gather_text(parts, where, keys, limits.get("text"))
            else:
                setattr(data, m, _gather_sequences(m, parts, where, keys, "frames", limits.get(m)))
        return _to_torch(data) if as_torch else data

    def _locate(self, modality: str, keys: Sequence[str]) -> tuple[list[_Part], dict[str, tuple[int, int]]]:
        """Read a modality's parts; map each wanted clip to (part index, row) of its latest version."""
        files = self.part_files(modality)
        if not files:
            raise StoreError(
                f"the store {self.root} has no {modality} features (no part files in {self.modality_dir(modality)})",
                hint="run the extraction for that modality (`misr extract`) or `misr synth`",
            )
        columns = ["clip_key", "input_ids", "attention_mask", "hidden"] if modality == "text" else ["clip_key", "frames"]
        wanted = set(keys)
        parts: list[_Part] = []
        where: dict[str, tuple[int, int]] = {}
        for seq, path in files:
            schema = _read_schema(path)
            cols = [c for c in columns if c in schema.names]
            if "clip_key" not in cols or len(cols) < 2:
                raise StoreError(f"{path} is not a {modality} feature file (columns: {', '.join(schema.names)})")
            table = _read_parquet(path, columns=cols)
            index = len(parts)
            parts.append(_Part(path, seq, table))
            for row, key in enumerate(table.column("clip_key").to_pylist()):
                if key in wanted:
                    where[key] = (index, row)
        used = sorted({i for i, _ in where.values()})
        parts_used = [parts[i] for i in used]
        remap = {old: new for new, old in enumerate(used)}
        return parts_used, {k: (remap[i], r) for k, (i, r) in where.items()}

    def _check_coverage(
        self, split: str, keys: Sequence[str], located: Mapping[str, tuple[list[_Part], dict[str, tuple[int, int]]]]
    ) -> None:
        problems = []
        for modality, (_, where) in located.items():
            missing = [k for k in keys if k not in where]
            if not missing:
                continue
            elsewhere = []
            for other, (other_parts, other_where) in located.items():
                if other != modality:
                    files = sorted({other_parts[other_where[k][0]].path.name for k in missing if k in other_where})
                    if files:
                        elsewhere.append(f"{other} ({', '.join(files)})")
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            where_else = f"; present in {'; '.join(elsewhere)}" if elsewhere else ""
            problems.append(
                f"{len(missing)} clip(s) of split {split!r} are missing from {modality} "
                f"({self.modality_dir(modality)}): {shown}{where_else}"
            )
        if problems:
            raise StoreError(
                "the store is inconsistent:\n  " + "\n  ".join(problems),
                hint="re-run extraction for the missing clips, or quarantine them",
            )

    # ------------------------------------------------------------------------------- summary

    def describe(self) -> dict[str, Any]:
        """A summary for people: clips per split, and per modality files, clips, dimension, extractor."""
        summary: dict[str, Any] = {"root": str(self.root), "splits": self.splits(), "modalities": {}}
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
        summary["quarantined"] = self.errors().num_rows
        tmp = [p for folder in [self.root, *(self.root / m for m in MODALITIES)] if folder.is_dir() for p in folder.glob(".tmp-*")]
        summary["temporary_files"] = len(tmp)
        return summary


# ----------------------------------------------------------------------------------- building tables


def _metadata(modality: str, info: ExtractorInfo, dim: int, extra: Mapping[str, str] | None = None) -> dict[bytes, bytes]:
    meta = {
        "format_version": FORMAT_VERSION,
        "modality": modality,
        "extractor": info.name,
        "extractor_version": info.version,
        "config_hash": info.config_hash,
        "config": json.dumps(dict(info.config), sort_keys=True, default=str),
        "feature_names": json.dumps(list(info.feature_names)),
        "dim": str(dim),
        **(extra or {}),
    }
    return {f"misr.{k}".encode(): str(v).encode() for k, v in meta.items()}


def _decode_metadata(raw: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        k = key.decode()
        if not k.startswith("misr."):
            continue
        k = k[5:]
        v = value.decode()
        if k in ("feature_names", "config"):
            v = json.loads(v)
        elif k in ("dim", "vocab_size"):
            v = int(v)
        out[k] = v
    return out


def _nested_frames(arrays: Sequence[np.ndarray], dim: int) -> pa.Array:
    """[T_i, D] arrays -> list<fixed_size_list<float32, D>>, built from one flat buffer."""
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.float32)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner)


def _check_frames(modality: str, key: str, frames: Any, dim: int | None) -> np.ndarray:
    arr = np.asarray(frames, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise StoreError(f"{modality} frames of {key} must be a non-empty [frames, features] array (got shape {arr.shape})")
    if dim is not None and arr.shape[1] != dim:
        raise StoreError(f"{modality} frames of {key} have {arr.shape[1]} features, others have {dim}")
    if not np.isfinite(arr).all():
        raise StoreError(f"{modality} frames of {key} contain NaN or inf")
    return arr


def _common_columns(records: Sequence[Mapping[str, Any]], info: ExtractorInfo) -> dict[str, pa.Array]:
    keys = [str(r["clip_key"]) for r in records]
    if len(set(keys)) != len(keys):
        raise StoreError("the same clip_key appears twice in one write")
    return {
        "clip_key": pa.array(keys, pa.string()),
        "source_sha256": pa.array([str(r.get("source_sha256", "")) for r in records], pa.string()),
        "config_hash": pa.array([info.config_hash] * len(records), pa.string()),
    }


def _sequence_table(modality: str, records: Sequence[Mapping[str, Any]], info: ExtractorInfo) -> pa.Table:
    dim = None
    frames = []
    for r in records:
        arr = _check_frames(modality, r["clip_key"], r["frames"], dim)
        dim = arr.shape[1]
        frames.append(arr)
    assert dim is not None
    if info.feature_names and len(info.feature_names) != dim:
        raise StoreError(f"{info.name} names {len(info.feature_names)} features but writes {dim}")
    cols = _common_columns(records, info)
    cols["frames"] = _nested_frames(frames, dim)
    cols["n_frames"] = pa.array([a.shape[0] for a in frames], pa.int32())
    cols["frame_rate"] = pa.array([float(r.get("frame_rate", 0.0)) for r in records], pa.float32())
    if modality == "visual":
        cols["face_ratio"] = pa.array([float(r.get("face_ratio", 1.0)) for r in records], pa.float32())
    table = pa.table(cols)
    return table.replace_schema_metadata(_metadata(modality, info, dim))


def _text_table(records: Sequence[Mapping[str, Any]], info: ExtractorInfo) -> pa.Table:
    ids, masks, hidden = [], [], []
    for r in records:
        i = np.asarray(r["input_ids"], dtype=np.int32).reshape(-1)
        m = np.asarray(r["attention_mask"], dtype=np.int8).reshape(-1)
        if i.shape != m.shape or i.size == 0:
            raise StoreError(f"text of {r['clip_key']}: input_ids and attention_mask must be non-empty and equally long")
        ids.append(i)
        masks.append(m)
        if r.get("hidden") is not None:
            h = _check_frames("text hidden", r["clip_key"], r["hidden"], hidden[0].shape[1] if hidden else None)
            if h.shape[0] != i.size:
                raise StoreError(f"text of {r['clip_key']}: {h.shape[0]} hidden states for {i.size} tokens")
            hidden.append(h)
    if hidden and len(hidden) != len(records):
        raise StoreError("either every text record carries hidden states or none does")
    cols = _common_columns(records, info)
    cols["input_ids"] = pa.array([a.tolist() for a in ids], pa.list_(pa.int32()))
    cols["attention_mask"] = pa.array([a.tolist() for a in masks], pa.list_(pa.int8()))
    extra = {}
    dim = hidden[0].shape[1] if hidden else 0
    if hidden:
        cols["hidden"] = _nested_frames(hidden, dim)
    vocab = info.config.get("vocab_size")
    if vocab is not None:
        extra["vocab_size"] = str(int(vocab))
    extra["tokenizer"] = str(info.config.get("tokenizer", info.name))
    table = pa.table(cols)
    return table.replace_schema_metadata(_metadata("text", info, dim, extra))


def _table_from_records(records: Iterable[Mapping[str, Any]], schema: pa.Schema, required: Sequence[str]) -> pa.Table:
    rows = []
    for r in records:
        unknown = set(r) - set(schema.names)
        if unknown:
            raise StoreError(f"unknown column(s) {', '.join(sorted(unknown))}; allowed: {', '.join(schema.names)}")
        for name in required:
            if r.get(name) is None:
                raise StoreError(f"a row lacks the required column {name!r}: {dict(r)}")
        rows.append({n: r.get(n) for n in schema.names})
    return pa.Table.from_pylist(rows, schema=schema)


def _upsert(current: pa.Table | None, new: pa.Table, key: Sequence[str]) -> pa.Table:
    if current is None or current.num_rows == 0:
        return new
    new_keys = set(zip(*(new.column(k).to_pylist() for k in key)))
    old_keys = list(zip(*(current.column(k).to_pylist() for k in key)))
    keep = pa.array([k not in new_keys for k in old_keys], pa.bool_())
    return pa.concat_tables([current.filter(keep), new])


# ----------------------------------------------------------------------------------- reading helpers


def _corrupt(path: Path, exc: Exception) -> StoreError:
    return StoreError(
        f"{path} is not a readable Parquet file ({exc})",
        hint="delete it and re-run the stage that wrote it",
    )


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=list(columns) if columns else None)
    except FileNotFoundError:
        raise StoreError(f"{path} disappeared while reading; is another process rewriting the store?") from None
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise _corrupt(path, exc) from None


def _read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise _corrupt(path, exc) from None


def _float_column(table: pa.Table, name: str, take: pa.Array) -> np.ndarray:
    if name not in table.column_names:
        return np.full(len(take), np.nan, dtype=np.float32)
    col = table.column(name).take(take).cast(pa.float32())
    return np.array(col.to_numpy(zero_copy_only=False), dtype=np.float32)  # a writable copy for torch


def _list_layout(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """A list column as (offsets into its child, child array), chunks merged."""
    arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if arr.null_count:
        raise ValueError("null lists")
    return np.asarray(arr.offsets, dtype=np.int64), arr.values


def _gather_rows(
    parts: Sequence[_Part], where: Mapping[str, tuple[int, int]], keys: Sequence[str], column: str, width: int, dtype: Any, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pad one list column (values [sum T, width]) of the clips `keys` into [N, T_max, width]."""
    n = len(keys)
    out_rows = np.arange(n)
    part_of = np.fromiter((where[k][0] for k in keys), dtype=np.int64, count=n)
    row_of = np.fromiter((where[k][1] for k in keys), dtype=np.int64, count=n)
    layouts = []
    lengths = np.zeros(n, dtype=np.int64)
    for p, part in enumerate(parts):
        sel = part_of == p
        offsets, child = _list_layout(part.table.column(column))
        flat = child.flatten() if width > 1 or pa.types.is_fixed_size_list(child.type) else child
        values = flat.to_numpy(zero_copy_only=False).reshape(-1, width)
        starts = offsets[row_of[sel]]
        lengths[sel] = offsets[row_of[sel] + 1] - starts
        layouts.append((sel, starts, values))
    if limit is not None:
        lengths = np.minimum(lengths, limit)
    t_max = int(lengths.max()) if n else 0
    out = np.zeros((n, t_max, width), dtype=dtype)
    for sel, starts, values in layouts:
        lens = lengths[sel]
        total = int(lens.sum())
        if total == 0:
            continue
        # One vectorised gather per part: for every kept frame, its output row, position and source row.
        dst_row = np.repeat(out_rows[sel], lens)
        first = np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.arange(total) - first
        src = np.repeat(starts, lens) + pos
        out[dst_row, pos] = values[src]
    return out, lengths


def _gather_sequences(
    modality: str, parts: Sequence[_Part], where: Mapping[str, tuple[int, int]], keys: Sequence[str], column: str, limit: int | None
) -> Sequences:
    metas = [_decode_metadata(p.table.schema.metadata) for p in parts]
    dims = {p.path.name: p.table.schema.field(column).type.value_type.list_size for p in parts}
    if len(set(dims.values())) > 1:
        listing = ", ".join(f"{name}: {d}" for name, d in dims.items())
        raise StoreError(
            f"{modality} feature files disagree on the feature dimension ({listing})",
            hint="the files come from different extractor settings; re-run extraction so every clip uses one",
        )
    names = {tuple(m.get("feature_names", [])) for m in metas}
    if len(names) > 1:
        raise StoreError(f"{modality} feature files name different features: {', '.join(p.path.name for p in parts)}")
    width = next(iter(dims.values()))
    try:
        values, lengths = _gather_rows(parts, where, keys, column, width, np.float32, limit)
    except ValueError as exc:
        raise StoreError(f"{modality} files hold malformed rows ({exc}): {', '.join(p.path.name for p in parts)}") from None
    return Sequences(values=values, lengths=lengths, feature_names=list(next(iter(names))))


def _gather_text(parts: Sequence[_Part], where: Mapping[str, tuple[int, int]], keys: Sequence[str], limit: int | None) -> TextTokens:
    metas = [_decode_metadata(p.table.schema.metadata) for p in parts]
    tokenizers = {m.get("tokenizer") for m in metas}
    if len(tokenizers) > 1:
        raise StoreError(f"text files were tokenised differently ({', '.join(map(str, tokenizers))}): {', '.join(p.path.name for p in parts)}")
    ids, lengths = _gather_rows(parts, where, keys, "input_ids", 1, np.int64, limit)
    mask, _ = _gather_rows(parts, where, keys, "attention_mask", 1, np.int64, limit)
    hidden = None
    with_hidden = ["hidden" in p.table.column_names for p in parts]
    if any(with_hidden):
        if not all(with_hidden):
            raise StoreError("some text files hold hidden states and others do not: " + ", ".join(p.path.name for p, h in zip(parts, with_hidden) if not h))
        hidden = _gather_sequences("text", parts, where, keys, "hidden", limit)
    return TextTokens(
        input_ids=ids[..., 0],
        attention_mask=mask[..., 0],
        lengths=lengths,
        hidden=hidden,
        tokenizer=str(metas[0].get("tokenizer", "")),
        vocab_size=metas[0].get("vocab_size"),
    )


def _to_torch(data: SplitData) -> SplitData:
    import torch

    t = torch.from_numpy
    data.labels = t(data.labels)
    data.unimodal_labels = {m: t(v) for m, v in data.unimodal_labels.items()}
    for seq in (data.audio, data.visual, data.text.hidden if data.text else None):
        if seq is not None:
            seq.values, seq.lengths = t(seq.values), t(seq.lengths)
    if data.text is not None:
        data.text.input_ids = t(data.text.input_ids)
        data.text.attention_mask = t(data.text.attention_mask)
        data.text.lengths = t(data.text.lengths)
    return data


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
