"""How a command ends: a user's mistake is one `error:` line (exit 2), Ctrl-C stops cleanly (exit 130).

Every entry point runs its work through `run_command`: the `misr` CLI and each DVC stage's module
(`python -m misr.stages.evaluate ...`). Ctrl-C and SIGTERM (e.g. from `timeout`, or `dvc repro`
being stopped) set the stop flag, so threads doing work stop within one unit of work (a clip, a
batch) and keep what is finished; a second Ctrl-C more than FORCE_AFTER seconds later ends the
process at once.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from misr.errors import MisrError
from misr.util.stop import request_stop, stop_requested

FORCE_AFTER = 5.0  # seconds after the first Ctrl-C from which another one ends the command at once
STOPPED = "stopped: finished work is kept; run the command again to go on from there"


def plain(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Stopper:
    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.first: float | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.first is not None:
            # the stop is under way: a quick second press changes nothing (it would cut the clean-up short);
            # one after FORCE_AFTER seconds means the user will not wait: end now
            if time.monotonic() - self.first > FORCE_AFTER:
                self.say("stopped at once: work in progress is left as it was")
                os._exit(130)
            return
        self.first = time.monotonic()
        request_stop()
        raise KeyboardInterrupt


def run_command(body: Callable[[], Any], say: Callable[[str], None] = plain) -> None:
    """Run `body` as a whole command; `say` prints a line to the user (stderr)."""
    stopper = _Stopper(say)
    signal.signal(signal.SIGINT, stopper)
    signal.signal(signal.SIGTERM, stopper)
    try:
        body()
    except SystemExit:
        if stop_requested():  # a CLI framework may turn the interrupt into a silent exit 130
            say(STOPPED)
        raise
    except MisrError as exc:
        say(f"error: {exc}")
        sys.exit(2)
    except OSError as exc:
        if exc.errno is None:  # not a system call's refusal: a bug, shown as one
            raise
        # a path too long, a read-only or full disk, a file where a folder should be: the path and the reason
        what = f" {exc.filename}" if exc.filename else ""
        hint = (
            "\n  hint: use a shorter path (the system's limit is 255 bytes a name, 4096 a path)" if exc.errno == errno.ENAMETOOLONG else ""
        )
        say(f"error:{what}: {exc.strerror or exc}{hint}")
        sys.exit(2)
    except KeyboardInterrupt:
        say(STOPPED)
        sys.exit(130)
    finally:
        if stop_requested():  # Python resets its signal handlers while it shuts down: a late Ctrl-C would kill it (-2)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
