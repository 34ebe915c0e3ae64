"""`misr`: the app with every command, and the entry point that turns user errors into one line."""

from __future__ import annotations

import os
import signal
import sys
import time

from misr.errors import MisrError
from misr.util.stop import request_stop, stop_requested
from pipelines.cli import demo_corpus, evaluate, extract, register, retrain, synth, tools, train  # noqa: F401  (they add the commands)
from pipelines.cli.common import app, err

FORCE_AFTER = 5.0  # seconds after the first Ctrl-C from which another one ends the command at once
_first_stop: float | None = None


def _stop(signum: int, frame: object) -> None:
    # threads doing work check the flag between units of work; the main thread gets the interrupt
    global _first_stop
    if _first_stop is not None:
        # the stop is under way: a quick second press changes nothing (it used to cut the clean-up short);
        # one after FORCE_AFTER seconds means the user will not wait: end now
        if time.monotonic() - _first_stop > FORCE_AFTER:
            err.print("stopped at once: work in progress is left as it was", highlight=False)
            os._exit(130)
        return
    _first_stop = time.monotonic()
    request_stop()
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: user errors become one clear line on stderr and exit code 2, never a traceback.

    Ctrl-C and SIGTERM (e.g. from `timeout`) stop the command within one unit of work (a clip, a
    batch), keep what is finished, and end every process it started.
    """
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        app()
    except SystemExit:
        if stop_requested():  # typer turns the interrupt into a silent exit 130
            _say_stopped()
        raise
    except MisrError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        what = f" {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/]{what}: {exc.strerror or exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        _say_stopped()
        sys.exit(130)
    finally:
        if stop_requested():  # Python resets its signal handlers while it shuts down: a late Ctrl-C would kill it (-2)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _say_stopped() -> None:
    err.print("stopped: finished work is kept; run the command again to go on from there", highlight=False)


if __name__ == "__main__":
    main()
