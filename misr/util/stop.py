"""Stopping on request (Ctrl-C, SIGTERM): long loops check a flag between units of work.

A KeyboardInterrupt reaches only the main thread; work running in other threads (extraction shards
on a thread pool) would run to its end. So the application sets the flag when a signal arrives, and
each loop checks it between clips or batches: every thread stops within one unit of work, keeping
what it finished (written shards, the last epoch's checkpoint).
"""

from __future__ import annotations

import threading

_requested = threading.Event()


class Stopped(KeyboardInterrupt):
    """The work was stopped on request (a KeyboardInterrupt, so nothing mistakes it for a failure to retry)."""


def request_stop() -> None:
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def check_stop(what: str = "work") -> None:
    """Raise Stopped when a stop was requested (call between units of work)."""
    if _requested.is_set():
        raise Stopped(f"{what} stopped on request")


def reset() -> None:
    """Clear a request (for a process that runs again after a stop, e.g. tests)."""
    _requested.clear()
