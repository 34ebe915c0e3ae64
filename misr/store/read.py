"""Reading the store: a split's clips from every modality's latest parts, padded into arrays or tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from misr.errors import StoreError
from misr.store.format import check_part, read_parquet, read_schema
from misr.store.layout import StoreLayout
from misr.store.schema import MODALITIES, UNIMODAL_LABELS, Sequences, SplitData, TextTokens, decode_metadata

Located = tuple[list["_Part"], dict[str, tuple[int, int]]]
# the columns a reader takes from each modality's parts (and `absent`, which format 1 parts lack)
COLUMNS = {"text": ["clip_key", "input_ids", "attention_mask", "hidden"], "audio": ["clip_key", "frames"], "visual": ["clip_key", "frames"]}


def load_split(
    store: StoreLayout,
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
        store.modality_dir(m)
    clips, rows, keys, skipped = split_rows(store, split)
    labels, unimodal = label_columns(clips, rows)

    located = {m: locate(store, m, keys) for m in modalities}
    check_coverage(store, split, keys, located)

    data = SplitData(split=split, clip_keys=keys, labels=labels, unimodal_labels=unimodal, quarantined=skipped)
    fill(data, located, dict(max_frames or {}))
    return to_torch(data) if as_torch else data


def fill(data: SplitData, located: Mapping[str, Located], limits: Mapping[str, int]) -> SplitData:
    """Pad every located modality of `data.clip_keys` into `data` (numpy arrays)."""
    for m, (parts, where) in located.items():
        data.absent[m] = _gather_absent(parts, where, data.clip_keys)
        if m == "text":
            data.text = _gather_text(parts, where, data.clip_keys, limits.get("text"))
        else:
            setattr(data, m, _gather_sequences(m, parts, where, data.clip_keys, "frames", limits.get(m)))
    return data


def split_rows(store: StoreLayout, split: str) -> tuple[pa.Table, list[int], list[str], list[str]]:
    """The clips table, and the rows and keys of `split` not in the quarantine, and the quarantined keys."""
    clips = store.clips()
    splits = clips.column("split").to_pylist()
    rows = [i for i, s in enumerate(splits) if s == split]
    if not rows:
        present = sorted(set(splits))
        raise StoreError(f"split {split!r} has no clips in {store.clips_path} (splits present: {', '.join(present) or 'none'})")
    quarantined = set(store.errors().column("clip_key").to_pylist())
    keys_all = clips.column("clip_key").to_pylist()
    rows = [i for i in rows if keys_all[i] not in quarantined]
    skipped = [keys_all[i] for i, s in enumerate(splits) if s == split and keys_all[i] in quarantined]
    if not rows:
        raise StoreError(f"every clip of split {split!r} is in the quarantine ({store.errors_path})")
    keys = [keys_all[i] for i in rows]
    if len(set(keys)) != len(keys):
        raise StoreError(f"{store.clips_path} lists some clip_key more than once")
    return clips, rows, keys, skipped


def label_columns(clips: pa.Table, rows: Sequence[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    take = pa.array(rows, pa.int64())
    return _float_column(clips, "label", take), {m: _float_column(clips, col, take) for m, col in UNIMODAL_LABELS.items()}


def locate(store: StoreLayout, modality: str, keys: Sequence[str]) -> Located:
    """Read a modality's parts; map each wanted clip to (part index, row) of its latest version."""
    files = store.part_files(modality)
    if not files:
        raise StoreError(
            f"the store {store.root} has no {modality} features (no part files in {store.modality_dir(modality)})",
            hint="run the extraction for that modality (`misr extract`) or `misr synth`",
        )
    columns = [*COLUMNS[modality], "absent"]
    wanted = set(keys)
    parts: list[_Part] = []
    where: dict[str, tuple[int, int]] = {}
    for seq, path in files:
        schema = read_schema(path)
        check_part(path, schema, modality)
        cols = [c for c in columns if c in schema.names]
        if "clip_key" not in cols or len([c for c in cols if c != "absent"]) < 2:
            raise StoreError(f"{path} is not a {modality} feature file (columns: {', '.join(schema.names)})")
        table = read_parquet(path, columns=cols)
        index = len(parts)
        parts.append(_Part(path, seq, table))
        for row, key in enumerate(table.column("clip_key").to_pylist()):
            if key in wanted:
                where[key] = (index, row)
    used = sorted({i for i, _ in where.values()})
    parts_used = [parts[i] for i in used]
    remap = {old: new for new, old in enumerate(used)}
    return parts_used, {k: (remap[i], r) for k, (i, r) in where.items()}


def check_coverage(store: StoreLayout, split: str, keys: Sequence[str], located: Mapping[str, Located]) -> None:
    """Every clip of the split in every modality, or an error naming the missing clips and where they are."""
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
            f"{len(missing)} clip(s) of split {split!r} are missing from {modality} ({store.modality_dir(modality)}): {shown}{where_else}"
        )
    if problems:
        raise StoreError(
            "the store is inconsistent:\n  " + "\n  ".join(problems),
            hint="re-run extraction for the missing clips, or quarantine them",
        )


@dataclass
class _Part:
    path: Path
    seq: int
    table: pa.Table


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
    parts: Sequence[_Part],
    where: Mapping[str, tuple[int, int]],
    keys: Sequence[str],
    column: str,
    width: int,
    dtype: Any,
    limit: int | None,
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
    metas = [decode_metadata(p.table.schema.metadata) for p in parts]
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
    _check_finite(modality, values, keys, parts, where)
    return Sequences(values=values, lengths=lengths, feature_names=list(next(iter(names))))


def _check_finite(
    modality: str, values: np.ndarray, keys: Sequence[str], parts: Sequence[_Part], where: Mapping[str, tuple[int, int]]
) -> None:
    """NaN or inf features (the writer refuses them, so the file was changed since) name their clips, not 'risk is nan'."""
    bad = []
    for start in range(0, len(keys), 256):  # in blocks: a boolean copy of a whole large split would double its memory
        block = values[start : start + 256]
        finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        bad += [keys[start + i] for i in np.flatnonzero(~finite)]
    if bad:
        files = sorted({parts[where[k][0]].path.name for k in bad})
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise StoreError(
            f"{len(bad)} clip(s) have NaN or infinite {modality} features ({shown}) in {', '.join(files)}",
            hint="the files were changed after misr wrote them; re-extract those clips (delete the files and run `misr extract`)",
        )


def _gather_text(parts: Sequence[_Part], where: Mapping[str, tuple[int, int]], keys: Sequence[str], limit: int | None) -> TextTokens:
    metas = [decode_metadata(p.table.schema.metadata) for p in parts]
    tokenizers = {m.get("tokenizer") for m in metas}
    if len(tokenizers) > 1:
        raise StoreError(
            f"text files were tokenised differently ({', '.join(map(str, tokenizers))}): {', '.join(p.path.name for p in parts)}"
        )
    ids, lengths = _gather_rows(parts, where, keys, "input_ids", 1, np.int64, limit)
    mask, _ = _gather_rows(parts, where, keys, "attention_mask", 1, np.int64, limit)
    hidden = None
    with_hidden = ["hidden" in p.table.column_names for p in parts]
    if any(with_hidden):
        if not all(with_hidden):
            raise StoreError(
                "some text files hold hidden states and others do not: "
                + ", ".join(p.path.name for p, h in zip(parts, with_hidden, strict=True) if not h)
            )
        hidden = _gather_sequences("text", parts, where, keys, "hidden", limit)
    return TextTokens(
        input_ids=ids[..., 0],
        attention_mask=mask[..., 0],
        lengths=lengths,
        hidden=hidden,
        tokenizer=str(metas[0].get("tokenizer", "")),
        vocab_size=metas[0].get("vocab_size"),
    )


def _gather_absent(parts: Sequence[_Part], where: Mapping[str, tuple[int, int]], keys: Sequence[str]) -> np.ndarray:
    """[N] bool: the clips whose row says the modality is absent (none in a format 1 part)."""
    flags = [
        np.asarray(pc.is_valid(p.table.column("absent")).to_numpy(zero_copy_only=False), dtype=bool)
        if "absent" in p.table.column_names
        else np.zeros(p.table.num_rows, dtype=bool)
        for p in parts
    ]
    return np.fromiter((flags[where[k][0]][where[k][1]] for k in keys), dtype=bool, count=len(keys))


def to_numpy(data: SplitData) -> SplitData:
    """A torch `SplitData` as numpy arrays (sharing memory), in a new object: the input, which callers may share,
    is left as it is. Arrays already numpy pass through."""
    import dataclasses

    def arr(x: Any) -> Any:
        return x.numpy() if hasattr(x, "numpy") else x

    def seq(s: Any) -> Any:
        return None if s is None else dataclasses.replace(s, values=arr(s.values), lengths=arr(s.lengths))

    text = data.text
    if text is not None:
        text = dataclasses.replace(
            text,
            input_ids=arr(text.input_ids),
            attention_mask=arr(text.attention_mask),
            lengths=arr(text.lengths),
            hidden=seq(text.hidden),
        )
    return dataclasses.replace(
        data,
        labels=arr(data.labels),
        unimodal_labels={m: arr(v) for m, v in data.unimodal_labels.items()},
        absent={m: arr(v) for m, v in data.absent.items()},
        text=text,
        audio=seq(data.audio),
        visual=seq(data.visual),
    )


def to_torch(data: SplitData) -> SplitData:
    import torch

    t = torch.from_numpy
    data.absent = {m: t(v) for m, v in data.absent.items()}
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
