"""`misr`: the app with every command, and the entry point that turns user errors into one line."""

from __future__ import annotations

from misr.util.command import run_command
from pipelines.cli import compare, demo_corpus, evaluate, extract, register, retrain, synth, tools, train  # noqa: F401  (they add the commands)
from pipelines.cli.common import app, err


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False)


def main() -> None:
    """Entry point: user errors become one clear line on stderr and exit code 2, never a traceback;
    Ctrl-C and SIGTERM stop the command within one unit of work (see `misr.util.command`)."""
    run_command(app, say=_say)


if __name__ == "__main__":
    main()
