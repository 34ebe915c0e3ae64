"""`misr`: the app with every command, and the entry point that turns user errors into one line."""

from __future__ import annotations

import signal
import sys

from misr.errors import MisrError
from misr.util.stop import request_stop, stop_requested
from pipelines.cli import demo_corpus, evaluate, extract, register, retrain, synth, tools, train  # noqa: F401  (they add the commands)
from pipelines.cli.common import app, err


def _stop(signum: int, frame: object) -> None:
    # threads doing work check the flag between units of work; the main thread gets the interrupt.
    # One stop is enough: later presses (or a SIGTERM after a Ctrl-C) are ignored, so they can neither cut
    # the clean-up short nor kill the process while Python shuts down (it resets its own handlers then).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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


def _say_stopped() -> None:
    err.print("stopped: finished work is kept; run the command again to go on from there", highlight=False)


if __name__ == "__main__":
    main()
