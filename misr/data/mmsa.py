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

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from misr.errors import MisrError
from misr.msa.convention import MOSI, Convention
from misr.util.atomic import write_pickle
from misr.util.hashing import file_sha256
from misr.store import KEY_SEPARATOR, ExtractorInfo
from misr.store.store import FeatureStore

VERSION = "1"
PADDING_DOC = "mmsa_padding.json"  # an imported store: the file's padded sequence lengths, which MMSA's models saw
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


# The most values that the nested lists and tuples of an MMSA file may hold once shared references are
# counted every time they appear (numpy arrays count once: their bytes are in the file). params.yaml:
# data.import_max_elements. A 1 MB pickle of lists that share their items ("billion laughs") would
# otherwise expand to billions of values when converted to arrays.
MAX_ELEMENTS = 200_000_000


def load(path: str | Path, max_elements: int = MAX_ELEMENTS) -> dict[str, Any]:
    """The file's dict, after its declared sizes and its expanded size were checked against what it holds."""
    path = Path(path)
    if not path.exists():
        raise MisrError(f"no MMSA feature file at {path}")
    if not path.is_file():
        raise MisrError(f"{path} is not a regular file", hint="an MMSA feature file is a .pkl file")
    try:
        with open(path, "rb") as fh:
            _check_declared_sizes(path, fh)
            fh.seek(0)
            data = RestrictedUnpickler(_Bounded(fh)).load()
    except Refused as exc:
        raise MisrError(
            f"refused to load {path}: it asks for {exc}, and an MMSA feature file may hold only numpy arrays, "
            "numpy scalars and plain containers",
            hint="a pickle that imports other objects can run code; obtain the file from a source you trust",
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise MisrError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise MisrError(f"{path} is not an MMSA feature file: expected a dict with train/valid/test")
    total = expanded_size(data, max_elements)
    if total > max_elements:
        raise MisrError(
            f"refused to load {path}: its lists expand to more than {max_elements:,} values (shared references counted "
            "each time they appear), far more than its bytes hold",
            hint="a hostile or broken file; for a genuine file of nested lists raise data.import_max_elements",
        )
    return data


class _Bounded:
    """A file as the unpickler reads it, never asked for more than the file still holds: a pickle that
    declares a 1 TiB string reads as truncated instead of allocating 1 TiB."""

    def __init__(self, fh):
        self.fh = fh
        self.size = os.fstat(fh.fileno()).st_size

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.size - self.fh.tell())
        return self.fh.read(left if n is None or n < 0 else min(n, left))

    def readinto(self, buffer) -> int:
        return self.fh.readinto(buffer)

    def readline(self) -> bytes:
        return self.fh.readline()


def _check_declared_sizes(path: Path, fh) -> None:
    """Every length the pickle declares (strings, bytes, frames) fits in what is left of the file."""
    import pickletools

    try:
        for _ in pickletools.genops(_Bounded(fh)):
            pass
    except ValueError as exc:  # "expected N bytes in a bytes8, but only M remain", a bad opcode
        raise MisrError(f"{path} is not a readable pickle: {exc}", hint="the file is cut short, damaged or hostile") from None


def expanded_size(obj: Any, limit: int) -> int:
    """How many values `obj` holds with every shared reference counted each time it appears (at most
    a little over `limit`: the count stops there); each distinct object is visited once."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # on the current path: met again, it is a cycle, which no feature file holds
    stack: list[tuple[Any, bool]] = [(obj, False)]
    keep = []  # the objects whose ids are in `sizes` stay alive while it is used
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not done:
            if key in open_:
                return limit + 1
            if children:
                open_.add(key)
                stack.append((node, True))
                stack.extend((c, False) for c in children if id(c) not in sizes)
                continue
        open_.discard(key)
        sizes[key] = min(1 + sum(sizes.get(id(c), limit + 1) for c in children), limit + 1)
        keep.append(node)
    return sizes[id(obj)]


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, (list, tuple)):
        return list(node)
    if isinstance(node, np.ndarray) and node.dtype == object:
        return list(node.reshape(-1))
    return []


UNIMODAL = {"label_T": "regression_labels_T", "label_A": "regression_labels_A", "label_V": "regression_labels_V"}
FEATURES = {"audio": "audio", "vision": "vision", "text": "text"}  # modality in the report -> key in the file
SHOWN_PROBLEMS = 20


@dataclass
class SplitArrays:
    """One split of an MMSA file as arrays, before any value is trusted."""

    name: str
    ids: list[str]
    labels: np.ndarray  # [N]
    unimodal: dict[str, np.ndarray]  # label_T/A/V -> [N]
    text_bert: np.ndarray  # [N, 3, L]: ids, mask, segments
    text: np.ndarray | None  # [N, L, H] per-token encoder features
    audio: np.ndarray  # [N, T, D]
    vision: np.ndarray  # [N, T, D]
    audio_lengths: np.ndarray  # [N]
    vision_lengths: np.ndarray  # [N]
    raw_text: list[Any]
    notes: list[Any]


def import_file(
    path: str | Path,
    store_dir: str | Path,
    tokenizer: str = "bert-base-uncased",
    vocab_size: int = 30522,
    convention: Convention = MOSI,
    max_elements: int = MAX_ELEMENTS,
) -> dict[str, Any]:
    """Write the file's splits into a new feature store; returns what was done (counts, replacements).

    Every value is checked first: labels finite and inside the convention's range, token ids inside
    the vocabulary, every array as long as the ids, lengths inside their arrays, each clip key once.
    Any problem stops the import with the split, index and key of each. Non-finite feature values
    are replaced by 0, as MMSA's loader does, and counted per modality and kind.
    """
    path = Path(path)
    data = load(path, max_elements)
    store = FeatureStore(store_dir)
    with store.lock():  # one writer at a time
        if store.exists():
            raise MisrError(f"{store.root} already holds a feature store", hint="import into a new folder")
        splits = [read_split(path, name, data[name]) for name in SPLITS if name in data]
        problems = [p for s in splits for p in check_split(s, convention, vocab_size)] + duplicate_keys(splits)
        if problems:
            shown = "\n  ".join(problems[:SHOWN_PROBLEMS]) + (f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else "")
            raise MisrError(
                f"{path} holds {len(problems)} value(s) the store cannot take (labels as {convention.name}, vocabulary {vocab_size}):\n  {shown}",
                hint="fix the file; for CH-SIMS import with -S data.dataset=sims (labels in [-1, 1]) and its tokenizer's --vocab-size",
            )
        sha = file_sha256(path)
        report: dict[str, Any] = {"clips": {}, "non_finite": {}, "empty_sequences": 0}
        rows: dict[str, list[dict[str, Any]]] = {"clips": [], "text": [], "audio": [], "visual": []}
        for s in splits:
            for modality, key in FEATURES.items():
                array = getattr(s, key)
                if array is not None:
                    _count_non_finite(report["non_finite"], modality, array)
            _split_rows(s, sha, rows, report)
            report["clips"][s.name] = len(s.ids)
        last = splits[-1]
        config = {"source": path.name, "sha256": sha}
        text_info = ExtractorInfo("mmsa-import", VERSION, {**config, "tokenizer": tokenizer, "vocab_size": vocab_size}, [])
        store.write_modality("text", rows["text"], text_info, name="mmsa")
        for modality, array in (("audio", last.audio), ("visual", last.vision)):
            names = [f"{'vision' if modality == 'visual' else modality}_{j}" for j in range(array.shape[2])]
            store.write_modality(modality, rows[modality], ExtractorInfo("mmsa-import", VERSION, config, names), name="mmsa")
        store.write_clips(rows["clips"])
        padded = {"text": max(s.text_bert.shape[2] for s in splits), "audio": max(s.audio.shape[1] for s in splits)}
        store.write_json(PADDING_DOC, {**padded, "visual": max(s.vision.shape[1] for s in splits), "source": path.name})
        return report


def read_split(path: Path, name: str, s: Any) -> SplitArrays:
    """The arrays of one split, with the shapes the format promises (a clear error where not)."""
    where = f"{path}: split {name!r}"
    if not isinstance(s, dict):
        raise MisrError(f"{where} is not a dict of arrays")
    missing = [k for k in ("id", "audio", "vision", "regression_labels", "text_bert") if k not in s]
    if missing:
        raise MisrError(f"{where} lacks {', '.join(missing)}")
    ids = [str(i) for i in np.asarray(s["id"]).reshape(-1)]

    def array(key: str, ndim: int, dtype: Any) -> np.ndarray:
        try:
            value = np.array(s[key], dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise MisrError(f"{where}: {key} is not a numeric array ({exc})") from None
        if value.ndim != ndim:
            raise MisrError(f"{where}: {key} has {value.ndim} dimension(s), expected {ndim} (shape {value.shape})")
        return value

    audio, vision, text_bert = array("audio", 3, np.float32), array("vision", 3, np.float32), array("text_bert", 3, np.float64)
    text = array("text", 3, np.float32) if "text" in s and np.ndim(s["text"]) == 3 else None

    def lengths(key: str, seq: np.ndarray) -> np.ndarray:
        if s.get(key) is None:  # aligned files carry no lengths: every clip is full length
            return np.full(len(seq), seq.shape[1], dtype=np.float64)
        return array(key, 1, np.float64)

    return SplitArrays(
        name=name, ids=ids, labels=array("regression_labels", 1, np.float64),
        unimodal={col: array(key, 1, np.float64) for col, key in UNIMODAL.items() if key in s},
        text_bert=text_bert, text=text, audio=audio, vision=vision,
        audio_lengths=lengths("audio_lengths", audio), vision_lengths=lengths("vision_lengths", vision),
        raw_text=list(s.get("raw_text", [""] * len(ids))), notes=list(s.get("annotations", [None] * len(ids))),
    )  # fmt: skip


def check_split(s: SplitArrays, convention: Convention, vocab_size: int) -> list[str]:
    """Every value the store would take on trust, checked; one line per problem: split, index, key."""
    n, problems = len(s.ids), []
    sized = {"regression_labels": s.labels, **{UNIMODAL[c]: v for c, v in s.unimodal.items()}, "text_bert": s.text_bert,
             "audio": s.audio, "vision": s.vision, "audio_lengths": s.audio_lengths, "vision_lengths": s.vision_lengths,
             "raw_text": s.raw_text, "annotations": s.notes, **({"text": s.text} if s.text is not None else {})}  # fmt: skip
    wrong = [f"{key} has {len(v)}" for key, v in sized.items() if len(v) != n]
    if wrong:  # nothing else can be checked clip by clip
        return [f"{s.name}: {', '.join(wrong)} entries for {n} ids"]
    limit = convention.label_limit

    def at(i: int) -> str:
        return f"{s.name}[{i}] {s.ids[i]!r}"

    for key, values in (("regression_labels", s.labels), *((UNIMODAL[c], v) for c, v in s.unimodal.items())):
        for i in np.flatnonzero(~np.isfinite(values) | (np.abs(values) > limit)):
            problems.append(f"{at(i)}: {key} {values[i]:g} is not a finite number in [-{limit:g}, {limit:g}]")
    if s.text_bert.shape[1] < 2:
        return problems + [f"{s.name}: text_bert holds {s.text_bert.shape[1]} row(s) per clip, expected ids and mask"]
    ids, mask = s.text_bert[:, 0], s.text_bert[:, 1] > 0
    bad = mask & (~np.isfinite(ids) | (ids < 0) | (ids >= vocab_size) | (ids != np.round(ids)))
    for i in np.flatnonzero(bad.any(axis=1)):
        problems.append(f"{at(i)}: text_bert token id {ids[i][bad[i]][0]:g} is outside the vocabulary [0, {vocab_size})")
    for key, lengths, seq in (("audio_lengths", s.audio_lengths, s.audio), ("vision_lengths", s.vision_lengths, s.vision)):
        for i in np.flatnonzero(~np.isfinite(lengths) | (lengths < 0) | (lengths > seq.shape[1]) | (lengths != np.round(lengths))):
            problems.append(f"{at(i)}: {key} {lengths[i]:g} is not a whole number of frames in [0, {seq.shape[1]}]")
    return problems


def duplicate_keys(splits: list[SplitArrays]) -> list[str]:
    where: dict[str, list[str]] = {}
    for s in splits:
        for key in s.ids:
            where.setdefault(key, []).append(s.name)
    return [f"clip key {key!r} appears {len(names)} times (in {', '.join(names)})" for key, names in where.items() if len(names) > 1]


def _count_non_finite(counts: dict[str, dict[str, int]], modality: str, array: np.ndarray) -> None:
    kinds = {"nan": int(np.isnan(array).sum()), "+inf": int(np.isposinf(array).sum()), "-inf": int(np.isneginf(array).sum())}
    if any(kinds.values()):
        totals = counts.setdefault(modality, {"nan": 0, "+inf": 0, "-inf": 0})
        for kind, n in kinds.items():
            totals[kind] += n
        array[~np.isfinite(array)] = 0.0  # as MMSA's loader does for MOSEI's -inf


def _split_rows(s: SplitArrays, sha: str, rows: dict[str, list[dict[str, Any]]], report: dict[str, Any]) -> None:
    for i, key in enumerate(s.ids):
        video_id, _, clip_id = key.partition(KEY_SEPARATOR)
        rows["clips"].append({
            "clip_key": key, "video_id": video_id, "clip_id": clip_id or "0", "split": s.name, "text": str(s.raw_text[i]),
            "label": float(s.labels[i]), **{c: float(v[i]) for c, v in s.unimodal.items()},
            "annotation": None if s.notes[i] is None else str(s.notes[i]), "source_sha256": sha,
        })  # fmt: skip
        n_tok = max(1, int((s.text_bert[i, 1] > 0).sum()))
        text: dict[str, Any] = {"clip_key": key, "source_sha256": sha, "input_ids": s.text_bert[i, 0, :n_tok].astype(np.int64),
                                "attention_mask": np.ones(n_tok, dtype=np.int8)}  # fmt: skip
        if s.text is not None:
            text["hidden"] = s.text[i, :n_tok]
        rows["text"].append(text)
        for modality, seq, lengths in (("audio", s.audio, s.audio_lengths), ("visual", s.vision, s.vision_lengths)):
            n = int(lengths[i])
            if n < 1:  # a clip with no frame keeps one zero frame, so every clip stays in every modality
                report["empty_sequences"] += 1
            frames = seq[i, :n] if n >= 1 else np.zeros((1, seq.shape[2]), np.float32)
            rows[modality].append({"clip_key": key, "source_sha256": sha, "frames": frames})


def export_file(store_dir: str | Path, out: str | Path) -> dict[str, int]:
    """Write the store as an MMSA feature file: every split padded to one length, as MMSA's own files are."""
    store = FeatureStore(store_dir)
    clip_rows = {r["clip_key"]: r for r in store.clips().to_pylist()}
    lengths = store_lengths(store)
    payload: dict[str, Any] = {}
    for split in SPLITS:
        if split in store.splits():
            payload[split] = pad_entry(split_entry(store.load_split(split, as_torch=False), clip_rows), lengths)
    write_pickle(Path(out), payload)
    return {split: len(entry["id"]) for split, entry in payload.items()}


def split_entry(d: Any, clip_rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One split (a numpy `SplitData`) as MMSA's dict of arrays; `clip_rows` (clips.parquet's rows by clip key)
    give the transcripts and annotations."""
    n, length = d.text.input_ids.shape
    text_bert = np.zeros((n, 3, length), dtype=np.float32)
    text_bert[:, 0] = d.text.input_ids
    text_bert[:, 1] = d.text.attention_mask
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
    return entry


def store_lengths(store: FeatureStore) -> dict[str, int]:
    """The length every split's audio, visual and token sequences are padded to for MMSA: the store's longest
    (from the parts' lengths: no split's features or labels are read), or the padded length of the MMSA file the
    store was imported from where that is longer. MMSA's own files pad every split to one length; MMSA's models
    run their text LSTMs over trailing padding and average over it, so a split padded otherwise reaches them on
    another scale than the file that trained them (and than `MMSA_run` on that file)."""
    keys = set(store.clips().column("clip_key").to_pylist())
    lengths = {}
    for modality, column in (("audio", "n_frames"), ("visual", "n_frames"), ("text", "input_ids")):
        rows = store.latest_values(modality, [column])
        values = [r[column] if column == "n_frames" else len(r[column] or ()) for k, r in rows.items() if k in keys]
        lengths[modality] = max(values, default=1)
    padded = store.root / PADDING_DOC
    if padded.exists():
        recorded = json.loads(padded.read_text())
        lengths = {m: max(n, int(recorded.get(m, 0))) for m, n in lengths.items()}
    return lengths


def pad_entry(entry: dict[str, Any], lengths: dict[str, int]) -> dict[str, Any]:
    """An MMSA split with its sequences zero-padded to `lengths` (the store's, the same for every split)."""
    out = dict(entry)
    for key, modality, axis in (("audio", "audio", 1), ("vision", "visual", 1), ("text_bert", "text", 2), ("text", "text", 1)):
        if key not in out:
            continue
        array = out[key]
        missing = lengths[modality] - array.shape[axis]
        if missing > 0:
            widths = [(0, 0)] * array.ndim
            widths[axis] = (0, missing)
            out[key] = np.pad(array, widths)
    return out
