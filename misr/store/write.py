"""Writing the store: Arrow tables built from extractor records, and part files claimed atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from misr.errors import StoreError
from misr.store.schema import FORMAT_VERSION, PART_RE, SEQUENCE_MODALITIES, ExtractorInfo, encode_metadata
from misr.util.atomic import atomic_path, fsync_dir, fsync_file, remove_quietly, temp_path


def modality_table(modality: str, records: Sequence[Mapping[str, Any]], info: ExtractorInfo) -> pa.Table:
    """One part file's table: text tokens, or audio/visual frame sequences."""
    if modality == "text":
        return _text_table(records, info)
    if modality in SEQUENCE_MODALITIES:
        return _sequence_table(modality, records, info)
    raise StoreError(f"unknown modality {modality!r}")


# Every page is written with a CRC and read with verification (misr.store.read): flipped bytes on disk
# are an error naming the file, never silently changed features.
# Clips per Parquet row group of a part: the unit a streamed split reads (misr/store/stream.py). At
# MOSEI's ~500 frames of 74 + 153 features, 128 clips are ~58 MB, read in well under a training step.
ROW_GROUP_CLIPS = 128


def write_part(folder: Path, table: pa.Table, name: str | None) -> Path:
    """Write `table` as the next numbered part file of `folder`, never replacing an existing part.

    os.link fails when the name exists, so concurrent writers each claim their own number.
    """
    tmp = temp_path(folder, "part.parquet")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_CLIPS, write_page_checksum=True)
        fsync_file(tmp)
        existing = sorted(int(m.group(1)) for m in map(PART_RE.match, (p.name for p in folder.iterdir())) if m)
        seq = existing[-1] + 1 if existing else 1
        suffix = f"-{name}" if name else ""
        while True:
            final = folder / f"part-{seq:06d}{suffix}.parquet"
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                seq += 1
    except OSError as exc:
        raise StoreError(f"cannot write to {folder}: {exc.strerror or exc}", hint="check the folder's permissions and free space") from None
    finally:
        remove_quietly(tmp)
    fsync_dir(folder)
    return final


def rewrite_part(path: Path, table: pa.Table) -> None:
    """Replace a part file's rows (its schema and metadata kept), atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_CLIPS, write_page_checksum=True)


def renumber_part(path: Path, seq: int) -> Path:
    """The part under number `seq`, its name kept; the number must be free."""
    match = PART_RE.match(path.name)
    assert match is not None, path
    suffix = f"-{match.group(2)}" if match.group(2) else ""
    target = path.with_name(f"part-{seq:06d}{suffix}.parquet")
    if target != path:
        try:
            os.link(path, target)  # never over another part
            path.unlink()
        except OSError as exc:
            raise StoreError(f"cannot renumber {path}: {exc.strerror or exc}") from None
    return target


def write_table(target: Path, table: pa.Table, metadata: Mapping[str, str] | None = None) -> Path:
    """Replace a whole-store table (clips.parquet, errors.parquet) atomically, tagged with the store format."""
    tags = {"format_version": FORMAT_VERSION, **(metadata or {})}
    table = table.replace_schema_metadata({f"misr.{k}".encode(): str(v).encode() for k, v in tags.items()})
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)
    return target


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
        "absent": pa.array([str(r["absent"]) if r.get("absent") else None for r in records], pa.string()),
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
        cols["identity_changes"] = pa.array([int(r.get("identity_changes", 0)) for r in records], pa.int32())
        cols["rotation"] = pa.array([int(r.get("rotation", 0)) for r in records], pa.int16())  # degrees the frames were turned
        # what a per-person neutral baseline is built from (the landmark extractor; null from others)
        cols["au_quantiles"] = _optional_vectors(records, "au_quantiles")
        cols["face_descriptor"] = _optional_vectors(records, "face_descriptor")
    table = pa.table(cols)
    return table.replace_schema_metadata(encode_metadata(modality, info, dim))


def _optional_vectors(records: Sequence[Mapping[str, Any]], name: str) -> pa.Array:
    """A list<float32> column, flattened per clip; null where a record has none."""
    values = [None if r.get(name) is None else np.asarray(r[name], dtype=np.float32).reshape(-1) for r in records]
    for r, v in zip(records, values, strict=True):
        if v is not None and not np.isfinite(v).all():
            raise StoreError(f"{name} of {r['clip_key']} contains NaN or inf")
    return pa.array([None if v is None else v.tolist() for v in values], pa.list_(pa.float32()))


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
    return table.replace_schema_metadata(encode_metadata("text", info, dim, extra))


def table_from_records(records: Iterable[Mapping[str, Any]], schema: pa.Schema, required: Sequence[str]) -> pa.Table:
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


def upsert(current: pa.Table | None, new: pa.Table, key: Sequence[str]) -> pa.Table:
    if current is None or current.num_rows == 0:
        return new
    new_keys = set(zip(*(new.column(k).to_pylist() for k in key), strict=True))
    old_keys = list(zip(*(current.column(k).to_pylist() for k in key), strict=True))
    keep = pa.array([k not in new_keys for k in old_keys], pa.bool_())
    return pa.concat_tables([current.filter(keep), new])
