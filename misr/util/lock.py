"""One process at a time: a lock file that a second process finds taken, at once, instead of waiting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from misr.errors import MisrError


class Busy(MisrError):
    """Another process holds the lock."""


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
