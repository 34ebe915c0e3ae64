"""`misr`: the app with every command, and the entry point that turns user errors into one line."""

from __future__ import annotations

import sys

from misr.errors import MisrError
from pipelines.cli import demo_corpus, evaluate, extract, register, retrain, synth, tools, train  # noqa: F401  (they add the commands)
from pipelines.cli.common import app, err


def main() -> None:
    """Entry point: user errors become one clear line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except MisrError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        what = f" {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/]{what}: {exc.strerror or exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
