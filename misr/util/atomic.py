"""Atomic file writes: the one way the project writes a file that a reader, or a crash, may catch half-done.

A file is written under a unique hidden name beside its target (`.tmp-<random>-<name>`), flushed to
disk, and renamed onto the target. Readers see the old file or the new one, never a part of either;
two writers of the same target never share a temporary file; a killed writer leaves only a hidden
temporary file, which readers ignore (and `FeatureStore.remove_stale_tmp` deletes).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from misr.errors import MisrError

TMP_PREFIX = ".tmp-"


def temp_path(folder: Path, name: str) -> Path:
    """A fresh hidden name in `folder` that no other writer will pick."""
    return Path(folder) / f"{TMP_PREFIX}{uuid.uuid4().hex}-{name}"


def is_temporary(path: Path) -> bool:
    return path.name.startswith(TMP_PREFIX)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target`, on failure it is removed."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MisrError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    tmp = temp_path(target.parent, target.name)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        remove_quietly(tmp)
        raise MisrError(f"cannot write {target}: {exc.strerror or exc}", hint="check the folder's permissions and free space") from None
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(target.parent)


def check_writable(folder: str | Path) -> Path:
    """Create `folder` if needed and prove a file can be written in it, before any long work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder, "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MisrError(
            f"cannot write to {folder}: {exc.strerror or exc}", hint="choose another output folder, or fix its permissions"
        ) from None
    return folder


def check_creatable(folder: str | Path) -> Path:
    """Prove `folder` can be created (or written, when it exists) without creating it: its nearest existing
    ancestor is a folder a file can be written in. For outputs checked long before they are written."""
    folder = Path(folder)
    if folder.exists():
        return check_writable(folder)
    ancestor = next((p for p in folder.absolute().parents if p.exists()), Path("/"))
    if not ancestor.is_dir():
        raise MisrError(f"cannot write to {folder}: {ancestor} is a file, not a folder", hint="choose another output folder")
    try:
        probe = temp_path(ancestor, "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MisrError(
            f"cannot write to {folder}: {exc.strerror or exc}", hint="choose another output folder, or fix its permissions"
        ) from None
    return folder


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, payload: Any, sort_keys: bool = False) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def write_torch(path: str | Path, payload: Any) -> Path:
    import torch

    # A full disk reaches torch's writer as a short write, which it reports as "RuntimeError: [enforce
    # fail at inline_container.cc]": made an OSError here, so atomic_path names the file and the cause.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        try:
            torch.save(payload, fh)
        except RuntimeError as exc:
            if "inline_container" not in str(exc) and "PytorchStreamWriter" not in str(exc):
                raise
            free = shutil.disk_usage(tmp.parent).free / 2**20
            raise OSError(
                errno.ENOSPC, f"the write was cut short, {free:.0f} MiB free on that disk (full, or over a file-size limit)"
            ) from None
    return Path(path)


def write_pickle(path: str | Path, payload: Any) -> Path:
    import pickle

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(payload, fh, protocol=4)
    return Path(path)


def remove_quietly(path: Path) -> None:
    """Remove a temporary file if it is there; a cleanup never hides the error that made it necessary."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some file systems refuse to open or sync a folder)."""
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
