"""One process at a time: a lock file that a second process finds taken, at once, instead of waiting."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from misr.errors import MisrError


class Busy(MisrError):
    """Another process holds the lock."""


NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems


def lock_beside(folder: str | Path, purpose: str) -> Path:
    """The lock file of `folder`, beside it: `.<name>.<purpose>.lock`.

    Taken on the resolved path, so a folder reached through a link or by another spelling (`a/../b`)
    has one lock, not one per spelling. A name too long for the file system to take the suffix is
    shortened and given a hash of the whole, so every legal folder name has a lock.
    """
    real = Path(os.path.realpath(folder))
    name = f".{real.name}.{purpose}.lock"
    if len(os.fsencode(name)) > NAME_MAX:
        digest = hashlib.sha256(os.fsencode(real.name)).hexdigest()[:16]
        name = f".{os.fsdecode(os.fsencode(real.name)[:150])}-{digest}.{purpose}.lock"
    return real.parent / name


@contextmanager
def exclusive(lock_path: Path, what: str, hint: str | None = None) -> Iterator[None]:
    """Hold `lock_path`, or raise Busy naming `what` holds it (never wait behind another run).

    The operating system releases the lock when its holder dies, even by kill -9: no stale lock.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path))
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise Busy(f"{what} holds {lock_path}", hint=hint) from None
    except OSError as exc:
        raise MisrError(f"cannot take the lock {lock_path}: {exc.strerror or exc}", hint="check the folder's permissions") from None
    try:
        yield
    finally:
        lock.release()
