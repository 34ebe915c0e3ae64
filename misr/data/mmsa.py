"""MMSA's pickled feature files (aligned_50.pkl, unaligned_50.pkl, unaligned_39.pkl) in and out of the store.

Layout (MMSA, thuiar/MMSA): {"train"|"valid"|"test": {"id", "raw_text", "text", "text_bert", "audio",
"vision", "audio_lengths", "vision_lengths", "regression_labels"[, "regression_labels_T/A/V"],
"annotations", ...}}. `text_bert` is [N, 3, L]: token ids, attention mask, segment ids; `text` holds
per-token encoder features; aligned files carry no lengths (every clip is L long).

Loading uses a restricted unpickler: only numpy arrays, numpy scalars and dtypes, and plain
containers may appear. A pickle that asks for anything else (a function to call, a class to build)
is refused before any of it runs, so a feature file from the internet cannot execute code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from misr.errors import MisrError
from misr.util.atomic import write_pickle
from misr.util.hashing import file_sha256
from misr.store import KEY_SEPARATOR, ExtractorInfo, FeatureStore

VERSION = "1"
SPLITS = ("train", "valid", "test")
# everything a pickled dict of numpy arrays, lists and strings needs (numpy 1.x and 2.x module names)
ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}


class Refused(pickle.UnpicklingError):
    """The pickle asked for an object outside the allowed list."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise Refused(f"{module}.{name}")


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise MisrError(f"no MMSA feature file at {path}")
    try:
        with open(path, "rb") as fh:
            data = RestrictedUnpickler(fh).load()
    except Refused as exc:
        raise MisrError(
            f"refused to load {path}: it asks for {exc}, and an MMSA feature file may hold only numpy arrays, "
            "numpy scalars and plain containers",
            hint="a pickle that imports other objects can run code; obtain the file from a source you trust",
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise MisrError(f"{path} is not a readable pickle ({exc})") from None
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise MisrError(f"{path} is not an MMSA feature file: expected a dict with train/valid/test")
    return data


def _lengths(split: dict[str, Any], key: str, array: np.ndarray) -> np.ndarray:
    if key in split and split[key] is not None:
        return np.asarray(split[key], dtype=np.int64).reshape(-1)
    return np.full(len(array), array.shape[1], dtype=np.int64)  # aligned files: every clip is full length


def import_file(path: str | Path, store_dir: str | Path, tokenizer: str = "bert-base-uncased", vocab_size: int = 30522) -> dict[str, Any]:
    """Write the file's splits into a new feature store; returns what was done (counts, replacements)."""
    path = Path(path)
    data = load(path)
    store = FeatureStore(store_dir)
    if store.exists():
        raise MisrError(f"{store.root} already holds a feature store", hint="import into a new folder")
    sha = file_sha256(path)
    report: dict[str, Any] = {"clips": {}, "neg_inf_audio_values": 0, "empty_sequences": 0}
    clips, text_rows, audio_rows, visual_rows = [], [], [], []
    dims: dict[str, int] = {}
    for split in SPLITS:
        if split not in data:
            continue
        s = data[split]
        missing = [k for k in ("id", "audio", "vision", "regression_labels") if k not in s]
        if missing:
            raise MisrError(f"{path}: split {split!r} lacks {', '.join(missing)}")
        ids = [str(i) for i in s["id"]]
        audio = np.array(s["audio"], dtype=np.float32)
        bad = ~np.isfinite(audio)
        report["neg_inf_audio_values"] += int(np.isneginf(audio).sum())
        audio[bad] = 0.0  # as MMSA's loader does for MOSEI's -inf (and any other non-finite value)
        vision = np.nan_to_num(np.array(s["vision"], dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        a_len, v_len = _lengths(s, "audio_lengths", audio), _lengths(s, "vision_lengths", vision)
        labels = np.asarray(s["regression_labels"], dtype=np.float32).reshape(-1)
        uni = {c: np.asarray(s[f"regression_labels_{c[-1]}"], dtype=np.float32).reshape(-1) for c in ("label_T", "label_A", "label_V") if f"regression_labels_{c[-1]}" in s}
        text_bert = np.asarray(s["text_bert"]) if "text_bert" in s else None
        text_feat = np.asarray(s["text"], dtype=np.float32) if "text" in s and np.ndim(s["text"]) == 3 else None
        raw_text = list(s.get("raw_text", [""] * len(ids)))
        notes = list(s.get("annotations", [None] * len(ids)))
        if text_bert is None:
            raise MisrError(f"{path}: split {split!r} has no text_bert (token ids and mask), which the store needs")
        for i, key in enumerate(ids):
            video_id, _, clip_id = key.partition(KEY_SEPARATOR)
            clips.append({
                "clip_key": key, "video_id": video_id, "clip_id": clip_id or "0", "split": split, "text": str(raw_text[i]),
                "label": float(labels[i]), **{c: float(v[i]) for c, v in uni.items()},
                "annotation": None if notes[i] is None else str(notes[i]), "source_sha256": sha,
            })
            mask = np.asarray(text_bert[i, 1]).astype(np.int64)
            n_tok = max(1, int(mask.sum()))
            row: dict[str, Any] = {"clip_key": key, "source_sha256": sha, "input_ids": np.asarray(text_bert[i, 0])[:n_tok].astype(np.int64),
                                   "attention_mask": np.ones(n_tok, dtype=np.int8)}
            if text_feat is not None:
                row["hidden"] = text_feat[i, :n_tok]
            text_rows.append(row)
            for rows, arr, lens in ((audio_rows, audio, a_len), (visual_rows, vision, v_len)):
                n = int(lens[i])
                if n < 1:
                    report["empty_sequences"] += 1
                    n = 1  # a clip with no frame keeps one zero frame, so every clip stays in every modality
                rows.append({"clip_key": key, "source_sha256": sha, "frames": arr[i, :n] if arr[i, :n].shape[0] else np.zeros((1, arr.shape[2]), np.float32)})
        dims = {"audio": audio.shape[2], "visual": vision.shape[2], "hidden": 0 if text_feat is None else text_feat.shape[2]}
        report["clips"][split] = len(ids)
    config = {"source": path.name, "sha256": sha}
    store.write_modality("text", text_rows, ExtractorInfo("mmsa-import", VERSION, {**config, "tokenizer": tokenizer, "vocab_size": vocab_size}, []), name="mmsa")
    store.write_modality("audio", audio_rows, ExtractorInfo("mmsa-import", VERSION, config, [f"audio_{j}" for j in range(dims["audio"])]), name="mmsa")
    store.write_modality("visual", visual_rows, ExtractorInfo("mmsa-import", VERSION, config, [f"vision_{j}" for j in range(dims["visual"])]), name="mmsa")
    store.write_clips(clips)
    return report


def export_file(store_dir: str | Path, out: str | Path) -> dict[str, int]:
    """Write the store as an MMSA feature file (padded per split to its longest sequence)."""
    store = FeatureStore(store_dir)
    payload: dict[str, Any] = {}
    counts = {}
    for split in SPLITS:
        if split not in store.splits():
            continue
        d = store.load_split(split, as_torch=False)
        n, length = d.text.input_ids.shape
        text_bert = np.zeros((n, 3, length), dtype=np.float32)
        text_bert[:, 0] = d.text.input_ids
        text_bert[:, 1] = d.text.attention_mask
        clip_rows = {r["clip_key"]: r for r in store.clips().to_pylist()}
        entry: dict[str, Any] = {
            "id": np.array(d.clip_keys, dtype=object),
            "raw_text": np.array([clip_rows[k]["text"] for k in d.clip_keys], dtype=object),
            "text_bert": text_bert,
            "audio": d.audio.values.astype(np.float32),
            "vision": d.visual.values.astype(np.float32),
            "audio_lengths": d.audio.lengths.astype(np.int64),
            "vision_lengths": d.visual.lengths.astype(np.int64),
            "regression_labels": d.labels.astype(np.float32),
            "annotations": np.array([clip_rows[k]["annotation"] for k in d.clip_keys], dtype=object),
        }
        if d.text.hidden is not None:
            entry["text"] = d.text.hidden.values.astype(np.float32)
        for m, suffix in (("text", "T"), ("audio", "A"), ("visual", "V")):
            values = d.unimodal_labels[m]
            if np.isfinite(values).all():
                entry[f"regression_labels_{suffix}"] = values.astype(np.float32)
        payload[split] = entry
        counts[split] = n
    write_pickle(Path(out), payload)
    return counts
