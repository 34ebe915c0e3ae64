"""A raw corpus in the MMSA-FET layout: `Raw/<video_id>/<clip_id>.<ext>` and `label.csv`.

label.csv columns: video_id, clip_id, text, label, mode (train/valid/test); optional label_T,
label_A, label_V, annotation. Each row is checked on its own: a bad row (a label that is not a number
or out of range, an empty or non-UTF-8 transcript or id, a duplicated clip, an id that would reach
outside the corpus, a missing video file or a link loop) becomes a quarantine record with its reason,
and the other rows go on. What makes every row unreadable (no label.csv, a header that names a column
twice, a file that is not a regular file) is one clear error.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misr.errors import MisrError
from misr.msa.convention import MOSI, Convention
from misr.store import KEY_SEPARATOR, clip_key

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv")
REQUIRED = ("video_id", "clip_id", "text", "label", "mode")


@dataclass
class Clip:
    key: str
    video_id: str
    clip_id: str
    path: Path
    text: str
    split: str
    label: float
    label_T: float | None = None
    label_A: float | None = None
    label_V: float | None = None
    annotation: str | None = None
    first_in_video: bool = False  # the video's first clip (by clip_id): its face stands for the video's person

    def clip_row(self) -> dict[str, Any]:
        return {
            "clip_key": self.key, "video_id": self.video_id, "clip_id": self.clip_id, "split": self.split,
            "text": self.text, "label": self.label, "label_T": self.label_T, "label_A": self.label_A,
            "label_V": self.label_V, "annotation": self.annotation,
        }


def problem(key: str, kind: str, message: str) -> dict[str, str]:
    return {"clip_key": printable(key), "stage": "corpus", "error": kind, "message": printable(message)}


def printable(text: str) -> str:
    """Bytes that were not UTF-8 (kept as surrogates) written as \\xNN, so the text can be stored and shown."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_root(raw_dir: str | Path) -> Path:
    """The corpus's label.csv, or a clear error when the folder is not a corpus."""
    root = Path(raw_dir)
    table = root / "label.csv"
    if not root.is_dir():
        raise MisrError(f"no raw corpus at {root}", hint="point data.datasets.<name>.raw_dir at a folder holding Raw/ and label.csv")
    if not table.exists():
        raise MisrError(f"{root} has no label.csv", hint="the MMSA-FET layout: Raw/<video_id>/<clip_id>.mp4 and label.csv")
    if not table.is_file():  # a FIFO would block the read for ever
        raise MisrError(f"{table} is not a regular file", hint="label.csv must be a plain CSV file")
    return table


def read_label_table(table: Path) -> tuple[list[str], list[tuple[int, dict[str, str | None]]]]:
    """label.csv's header, and its rows as {column: value}, each with the line it starts on (a quoted
    transcript may span lines).

    Undecodable bytes survive as surrogates, so one bad transcript or id does not sink the file. A header
    that names a column twice is refused: which of the two holds the value would be a guess.
    """
    if not table.is_file():
        raise MisrError(f"{table} is not a regular file", hint="label.csv must be a plain CSV file")
    text = table.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    # csv refuses fields over 128 KiB by default; the transcript of a long recording can be longer
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    reader = csv.reader(io.StringIO(text, newline=""))  # newline="": a quoted field may hold \r or \n
    try:
        header = next(reader, [])
        twice = sorted({c for c in header if c and header.count(c) > 1})
        if twice:
            raise MisrError(
                f"{table}: the header names {', '.join(repr(printable(c)) for c in twice)} more than once",
                hint="remove or rename the extra column: which copy holds the value is ambiguous",
            )
        rows, end = [], reader.line_num
        for values in reader:
            start, end = end + 1, reader.line_num
            if values:
                rows.append((start, {c: (values[i] if i < len(values) else None) for i, c in enumerate(header)}))
    except csv.Error as exc:
        raise MisrError(f"{table} line {reader.line_num}: not readable as CSV ({exc})") from None
    return header, rows


def read_corpus(raw_dir: str | Path, convention: Convention = MOSI) -> tuple[list[Clip], list[dict[str, str]]]:
    """The valid clips of a corpus and a quarantine record for every row that is not."""
    root = Path(raw_dir)
    table = check_root(root)
    header, numbered = read_label_table(table)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise MisrError(f"{table} lacks the column(s) {', '.join(missing)} (has: {', '.join(map(printable, header))})")
    rows = [row for _, row in numbered]
    try:
        videos = (root / "Raw").resolve()
    except (OSError, RuntimeError) as exc:  # a link loop (RuntimeError before Python 3.13)
        raise MisrError(f"cannot resolve {root / 'Raw'}: {exc}") from None
    limit = convention.label_limit

    counts: dict[str, int] = {}
    for row in rows:
        ids = ((row.get("video_id") or "").strip(), (row.get("clip_id") or "").strip())
        if not any(KEY_SEPARATOR in i for i in ids):  # those rows are set aside on their own
            counts[clip_key(*ids)] = counts.get(clip_key(*ids), 0) + 1

    clips, problems = [], []
    for line, row in numbered:
        video_id, clip_id = (row.get("video_id") or "").strip(), (row.get("clip_id") or "").strip()
        key = clip_key(video_id, clip_id)
        where = f"label.csv line {line}"
        not_utf8 = next((i for i in (video_id, clip_id) if _has_undecodable(i)), None)
        if not_utf8 is not None:
            message = f"{where}: id '{not_utf8}' is not valid UTF-8 (an old zip or another encoding?): rename it"
            problems.append(problem(key, "BadId", message))
            continue
        with_separator = next((i for i in (video_id, clip_id) if KEY_SEPARATOR in i), None)
        if with_separator is not None:
            message = f"{where}: id {with_separator!r} contains {KEY_SEPARATOR!r}, the separator of MMSA's clip keys"
            problems.append(problem(key, "SeparatorInId", f"{message} (<video_id>{KEY_SEPARATOR}<clip_id>): rename it"))
            continue
        if counts[key] > 1:
            problems.append(problem(key, "DuplicateClip", f"{where}: clip {key!r} appears {counts[key]} times; every copy is set aside"))
            continue
        bad_id = next((i for i in (video_id, clip_id) if not _safe_id(i)), None)
        if bad_id is not None:
            problems.append(problem(key, "UnsafePath", f"{where}: id {bad_id!r} is empty or would reach outside the corpus"))
            continue
        text = row.get("text") or ""
        if _has_undecodable(text):
            problems.append(problem(key, "BadTranscript", f"{where}: the transcript is not valid UTF-8"))
            continue
        split = (row.get("mode") or "").strip()
        if split not in ("train", "valid", "test"):
            problems.append(problem(key, "BadSplit", f"{where}: mode {split!r} is not train, valid or test"))
            continue
        labels, label_error = {}, None
        for col in ("label", "label_T", "label_A", "label_V"):
            value = (row.get(col) or "").strip()
            if col != "label" and value == "":
                labels[col] = None
                continue
            try:
                number = float(value)
            except ValueError:
                label_error = ("BadLabel", f"{where}: {col} {value!r} is not a number")
                break
            if not math.isfinite(number) or abs(number) > limit:
                label_error = ("LabelOutOfRange", f"{where}: {col} {value} is outside [-{limit:g}, {limit:g}]")
                break
            labels[col] = number
        if label_error:
            problems.append(problem(key, *label_error))
            continue
        path = find_video(videos, video_id, clip_id)
        if path is None:
            problems.append(problem(key, "MissingFile", f"{where}: no video Raw/{video_id}/{clip_id}.* ({', '.join(VIDEO_EXTENSIONS)})"))
            continue
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a dangling link or a link loop (RuntimeError before Python 3.13)
            problems.append(problem(key, "BrokenLink", f"{where}: Raw/{video_id}/{path.name} cannot be opened: {exc}"))
            continue
        if not _inside(resolved, videos):
            problems.append(problem(key, "UnsafePath", f"{where}: Raw/{video_id}/{path.name} resolves outside the corpus ({resolved})"))
            continue
        if not path.is_file():  # a FIFO or a device would block or never end when read
            problems.append(problem(key, "NotARegularFile", f"{where}: Raw/{video_id}/{path.name} is not a regular file"))
            continue
        clips.append(Clip(key, video_id, clip_id, path, text.strip(), split, annotation=(row.get("annotation") or None), **labels))
    first = {}
    for clip in clips:
        if clip.video_id not in first or clip.clip_id < first[clip.video_id].clip_id:
            first[clip.video_id] = clip
    for clip in first.values():
        clip.first_in_video = True
    return clips, problems


def find_video(videos: Path, video_id: str, clip_id: str) -> Path | None:
    """The clip's file, whatever its container and the case of its extension (.mp4, .MP4, .Mov ...).

    With several, the first in the order of VIDEO_EXTENSIONS. Any kind of file is returned (a link,
    a FIFO): the caller decides what it may open.
    """
    folder = videos / video_id
    try:
        matches = [p for p in folder.iterdir() if p.name[: len(clip_id)] == clip_id and p.name[len(clip_id) :].lower() in VIDEO_EXTENSIONS]
    except OSError:
        return None
    return min(matches, key=lambda p: (VIDEO_EXTENSIONS.index(p.suffix.lower()), p.name), default=None)


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _safe_id(value: str) -> bool:
    return bool(value) and value not in (".", "..") and "/" not in value and "\\" not in value and "\x00" not in value


def _inside(resolved: Path, root: Path) -> bool:
    return resolved == root or root in resolved.parents


def _has_undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)
