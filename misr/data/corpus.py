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
import os
import sys
import unicodedata
from collections import Counter
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


@dataclass
class LabelRow:
    line: int  # where the row starts in label.csv
    values: dict[str, str | None]  # column -> value (None past the row's last field)
    n_fields: int


def problem(key: str, kind: str, message: str) -> dict[str, str]:
    return {"clip_key": printable(key), "stage": "corpus", "error": kind, "message": printable(message)}


def printable(text: str) -> str:
    """Bytes that were not UTF-8 (kept as surrogates) written as \\xNN, so the text can be stored and shown."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def missing_corpus_hint(root: Path) -> str:
    """What to run when a corpus folder is absent: a fresh clone has the DVC file that versions it, not its clips."""
    tracked = root.parent / f"{root.name}.dvc"
    if tracked.exists():
        return f"{tracked} versions it: `dvc pull {tracked}` from your DVC remote, or for the bundled demo `misr demo-corpus`"
    return "point data.datasets.<name>.raw_dir at a folder holding Raw/ and label.csv"


def check_root(raw_dir: str | Path) -> Path:
    """The corpus's label.csv, or a clear error when the folder is not a corpus."""
    root = Path(raw_dir)
    table = root / "label.csv"
    if not root.is_dir():
        raise MisrError(f"no raw corpus at {root}", hint=missing_corpus_hint(root))
    if not table.exists():
        raise MisrError(f"{root} has no label.csv", hint="the MMSA-FET layout: Raw/<video_id>/<clip_id>.mp4 and label.csv")
    if not table.is_file():  # a FIFO would block the read for ever
        raise MisrError(f"{table} is not a regular file", hint="label.csv must be a plain CSV file")
    return table


def read_label_table(table: Path) -> tuple[list[str], list[LabelRow]]:
    """label.csv's header, and its rows, each with the line it starts on (a quoted transcript may span
    lines) and how many fields it has.

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
                rows.append(LabelRow(start, {c: (values[i] if i < len(values) else None) for i, c in enumerate(header)}, len(values)))
    except csv.Error as exc:
        raise MisrError(f"{table} line {reader.line_num}: not readable as CSV ({exc})") from None
    return header, rows


def read_corpus(raw_dir: str | Path, convention: Convention = MOSI) -> tuple[list[Clip], list[dict[str, str]]]:
    """The valid clips of a corpus and a quarantine record for every row that is not."""
    root = Path(raw_dir)
    table = check_root(root)
    header, rows = read_label_table(table)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise MisrError(f"{table} lacks the column(s) {', '.join(missing)} (has: {', '.join(map(printable, header))})")
    if not rows:
        raise MisrError(f"{table} has a header but no clip rows", hint="add one row per clip: video_id, clip_id, text, label, mode")
    try:
        videos = (root / "Raw").resolve()
    except (OSError, RuntimeError) as exc:  # a link loop (RuntimeError before Python 3.13)
        raise MisrError(f"cannot resolve {root / 'Raw'}: {exc}") from None
    finder = VideoFinder(videos)
    located = [finder.locate(row.values.get("video_id") or "", row.values.get("clip_id") or "") for row in rows]
    counts = Counter(clip_key(v, c) for v, c, _ in located if KEY_SEPARATOR not in v + c)  # those are set aside on their own
    clips, problems = [], []
    for row, (video_id, clip_id, path) in zip(rows, located, strict=True):
        key = clip_key(video_id, clip_id)
        try:
            clips.append(_clip(row, len(header), video_id, clip_id, path, videos, counts.get(key, 0), convention.label_limit))
        except _RowProblem as bad:
            problems.append(problem(key, bad.kind, f"label.csv line {row.line}: {bad}"))
    first = {}
    for clip in clips:
        if clip.video_id not in first or clip.clip_id < first[clip.video_id].clip_id:
            first[clip.video_id] = clip
    for clip in first.values():
        clip.first_in_video = True
    return clips, problems


class _RowProblem(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _clip(row: LabelRow, width: int, video_id: str, clip_id: str, path: Path | None, videos: Path, copies: int, limit: float) -> Clip:
    """One row as a clip, or the _RowProblem that sets it aside (checked in the order a user would fix them)."""
    key = clip_key(video_id, clip_id)
    if row.n_fields != width:  # an unquoted comma in a transcript: every field after it would be shifted or cut
        raise _RowProblem(
            "FieldCount", f"{row.n_fields} fields where the header has {width} (an unquoted comma in the transcript? quote the field)"
        )
    not_utf8 = next((i for i in (video_id, clip_id) if _has_undecodable(i)), None)
    if not_utf8 is not None:
        raise _RowProblem("BadId", f"id '{not_utf8}' is not valid UTF-8 (an old zip or another encoding?): rename it")
    with_separator = next((i for i in (video_id, clip_id) if KEY_SEPARATOR in i), None)
    if with_separator is not None:
        message = f"id {with_separator!r} contains {KEY_SEPARATOR!r}, the separator of MMSA's clip keys"
        raise _RowProblem("SeparatorInId", f"{message} (<video_id>{KEY_SEPARATOR}<clip_id>): rename it")
    if copies > 1:
        raise _RowProblem("DuplicateClip", f"clip {key!r} appears {copies} times; every copy is set aside")
    bad_id = next((i for i in (video_id, clip_id) if not _safe_id(i)), None)
    if bad_id is not None:
        raise _RowProblem("UnsafePath", f"id {bad_id!r} is empty or would reach outside the corpus")
    values = row.values
    text = values.get("text") or ""
    if _has_undecodable(text):
        raise _RowProblem("BadTranscript", "the transcript is not valid UTF-8")
    split = (values.get("mode") or "").strip()
    if split not in ("train", "valid", "test"):
        raise _RowProblem("BadSplit", f"mode {split!r} is not train, valid or test")
    labels = {col: _label(values, col, limit) for col in ("label", "label_T", "label_A", "label_V")}
    if path is None:
        raise _RowProblem("MissingFile", f"no video Raw/{video_id}/{clip_id}.* ({', '.join(VIDEO_EXTENSIONS)})")
    shown = f"Raw/{path.parent.name}/{path.name}"
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a dangling link or a link loop (RuntimeError before Python 3.13)
        raise _RowProblem("BrokenLink", f"{shown} cannot be opened: {exc}") from None
    if not _inside(resolved, videos):
        raise _RowProblem("UnsafePath", f"{shown} resolves outside the corpus ({resolved})")
    if not path.is_file():  # a FIFO or a device would block or never end when read
        raise _RowProblem("NotARegularFile", f"{shown} is not a regular file")
    return Clip(key, video_id, clip_id, path, text.strip(), split, annotation=(values.get("annotation") or None), **labels)


def _label(values: dict[str, str | None], col: str, limit: float) -> float | None:
    value = (values.get(col) or "").strip()
    if col != "label" and value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise _RowProblem("BadLabel", f"{col} {value!r} is not a number") from None
    if not math.isfinite(number) or abs(number) > limit:
        raise _RowProblem("LabelOutOfRange", f"{col} {value} is outside [-{limit:g}, {limit:g}]")
    return number


class VideoFinder:
    """Finds a row's folder and file under Raw/, and the ids the clip is known by.

    An id is matched as written, then without the spaces around it (`v, 0` in a hand-written CSV), and
    names are compared in Unicode NFC: a folder named on macOS (NFD) matches the same id typed in a
    spreadsheet (NFC). The ids keep label.csv's spelling of the form that matched; with no match, the
    trimmed one. Folder listings are read once each.
    """

    def __init__(self, videos: Path):
        self.videos = videos
        self._listings: dict[Path, dict[str, list[str]] | None] = {}

    def _names(self, folder: Path) -> dict[str, list[str]] | None:
        if folder not in self._listings:
            try:
                names: dict[str, list[str]] = {}
                for entry in os.listdir(folder):
                    names.setdefault(unicodedata.normalize("NFC", entry), []).append(entry)
                self._listings[folder] = names
            except (OSError, ValueError):
                self._listings[folder] = None
        return self._listings[folder]

    def _folder(self, video_id: str) -> Path | None:
        on_disk = (self._names(self.videos) or {}).get(unicodedata.normalize("NFC", video_id), [])
        if not on_disk:
            return None
        return self.videos / (video_id if video_id in on_disk else on_disk[0])

    def locate(self, video_id: str, clip_id: str) -> tuple[str, str, Path | None]:
        """(video_id, clip_id, the clip's file or None)."""
        for vid in dict.fromkeys((video_id, video_id.strip())):
            folder = self._folder(vid) if _safe_id(vid) else None
            if folder is None:
                continue
            for cid in dict.fromkeys((clip_id, clip_id.strip())):
                path = self.video_in(folder, cid) if _safe_id(cid) else None
                if path is not None:
                    return vid, cid, path
        return video_id.strip(), clip_id.strip(), None

    def video_in(self, folder: Path, clip_id: str) -> Path | None:
        """The clip's file, whatever its container and the case of its extension (.mp4, .MP4, .Mov ...).

        With several, the first in the order of VIDEO_EXTENSIONS. Any kind of file is returned (a link,
        a FIFO): the caller decides what it may open.
        """
        names = self._names(folder) or {}
        want = unicodedata.normalize("NFC", clip_id)
        matches = [
            folder / name
            for nfc, entries in names.items()
            if nfc[: len(want)] == want and nfc[len(want) :].lower() in VIDEO_EXTENSIONS
            for name in entries
        ]
        return min(matches, key=lambda p: (VIDEO_EXTENSIONS.index(p.suffix.lower()), p.name != clip_id + p.suffix, p.name), default=None)


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _safe_id(value: str) -> bool:
    return bool(value) and value not in (".", "..") and "/" not in value and "\\" not in value and "\x00" not in value


def _inside(resolved: Path, root: Path) -> bool:
    return resolved == root or root in resolved.parents


def _has_undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)
