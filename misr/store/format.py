"""Reading a store file: its pages verified against their checksums, and what this version of misr can
read (each file's format version, metadata and column types).

A file written by a newer misr, by another tool, or damaged by hand would otherwise reach the readers
as an AttributeError or KeyError deep in the padding code; here it is a StoreError that names the file,
the version that wrote it and what to do. Part files carry `misr.format_version` in their schema
metadata since store format 1; clips.parquet carries it since this check exists (a clips table without
one is read as format 1, the only format before it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from misr.errors import StoreError
from misr.store.schema import FORMAT_VERSION, READABLE_FORMATS, SEQUENCE_MODALITIES, STORE_SPLITS, decode_metadata

REQUIRED_METADATA = ("format_version", "modality", "extractor", "extractor_version", "config_hash", "dim", "feature_names")
REEXTRACT = "re-create the store with this version of misr (`misr extract`, `misr synth` or `misr import-mmsa` into a new folder)"


def corrupt(path: Path, exc: Exception) -> StoreError:
    return StoreError(
        f"{path} is not a readable Parquet file ({exc})",
        hint="delete it and re-run the stage that wrote it",
    )


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=list(columns) if columns else None, page_checksum_verification=True)
    except FileNotFoundError:
        raise StoreError(f"{path} disappeared while reading; is another process rewriting the store?") from None
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise corrupt(path, exc) from None


def read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise corrupt(path, exc) from None


def check_version(path: Path, written: str | None) -> None:
    """Refuse a file of another store format, saying which one wrote it."""
    if written is None or written in READABLE_FORMATS:
        return
    newer = written.isdigit() and int(written) > int(FORMAT_VERSION)
    raise StoreError(
        f"{path} was written in store format {written}; this version of misr reads formats {', '.join(READABLE_FORMATS)}",
        hint="upgrade misr to read it" if newer else REEXTRACT,
    )


def check_part(path: Path, schema: pa.Schema, modality: str) -> dict[str, Any]:
    """The decoded metadata of a modality part file, once its version, metadata and columns are as expected."""
    try:
        meta = decode_metadata(schema.metadata)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} has unreadable misr metadata ({exc})", hint=REEXTRACT) from None
    if "format_version" not in meta:
        raise StoreError(
            f"{path} carries no misr metadata (format version, extractor, feature dimension): misr's store writer did not write it",
            hint=REEXTRACT,
        )
    check_version(path, meta["format_version"])
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise StoreError(f"{path} lacks the metadata {', '.join(missing)} that store format {FORMAT_VERSION} requires", hint=REEXTRACT)
    if meta["modality"] != modality:
        raise StoreError(f"{path} holds {meta['modality']} features but lies in the {modality} folder", hint=REEXTRACT)
    if modality in SEQUENCE_MODALITIES:
        _check_column(path, schema, "frames", _frames_type(meta["dim"]))
    else:
        _check_column(path, schema, "input_ids", pa.list_(pa.int32()))
        _check_column(path, schema, "attention_mask", pa.list_(pa.int8()))
        if "hidden" in schema.names:
            _check_column(path, schema, "hidden", _frames_type(meta["dim"]))
    _check_column(path, schema, "clip_key", pa.string())
    return meta


def check_clips(path: Path, table: pa.Table) -> None:
    """clips.parquet: its version, and the columns every reader relies on (ids, splits, labels)."""
    meta = decode_metadata(table.schema.metadata)
    check_version(path, meta.get("format_version"))
    missing = [n for n in ("clip_key", "split", "label") if n not in table.column_names]
    if missing:
        raise StoreError(f"{path} lacks the column(s) {', '.join(missing)}", hint=REEXTRACT)
    keys = table.column("clip_key").to_pylist()
    if None in keys:
        raise StoreError(f"{path} has {keys.count(None)} row(s) without a clip_key", hint=REEXTRACT)
    splits = table.column("split").to_pylist()
    bad_split = [k for k, s in zip(keys, splits, strict=True) if s not in STORE_SPLITS]
    if bad_split:
        raise StoreError(
            f"{path}: {_some(bad_split)} have no split or one that is not {', '.join(STORE_SPLITS)}",
            hint="re-run the stage that wrote the store",
        )
    _check_unique(path, keys, splits)
    try:
        labels = table.column("label").cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise StoreError(f"{path}: the label column is not numeric ({exc})", hint=REEXTRACT) from None
    bad_label = [k for k, ok in zip(keys, np.isfinite(labels), strict=True) if not ok]
    if bad_label:
        raise StoreError(f"{path}: {_some(bad_label)} have no label (null, NaN or infinite)", hint="re-run the stage that wrote the store")


def _check_unique(path: Path, keys: Sequence[str], splits: Sequence[str]) -> None:
    """Each clip once: a clip in two rows (a hand-edited table) could put a test clip into training."""
    seen: dict[str, list[str]] = {}
    for key, split in zip(keys, splits, strict=True):
        seen.setdefault(key, []).append(split)
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    if twice:
        listed = [f"{k} ({', '.join(v)})" for k, v in twice.items()]
        raise StoreError(
            f"{path}: {_some(listed)} appear in more than one row; a clip in two splits would leak between them",
            hint="keep one row per clip_key (the split it belongs to), or re-run the stage that wrote the store",
        )


def _frames_type(dim: int) -> pa.DataType:
    return pa.list_(pa.list_(pa.float32(), dim))


def _check_column(path: Path, schema: pa.Schema, name: str, expected: pa.DataType) -> None:
    if name not in schema.names:
        raise StoreError(f"{path} has no column {name!r} (columns: {', '.join(schema.names)})", hint=REEXTRACT)
    got = schema.field(name).type
    if _shape(got) != _shape(expected):
        raise StoreError(f"{path}: column {name!r} is {got}; store format {FORMAT_VERSION} holds {expected} there", hint=REEXTRACT)


def _shape(t: pa.DataType) -> tuple[Any, ...]:
    """A type's structure without its field names (Parquet writers name list items differently)."""
    if pa.types.is_fixed_size_list(t):
        return ("fixed_size_list", t.list_size, _shape(t.value_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return ("list", _shape(t.value_type))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return ("string",)
    return (str(t),)


def _some(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return f"{len(keys)} clip(s) ({shown})"
