"""What every command shares: the app, the consoles, the --params/-S options, a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from misr.config.dataset import DatasetConfig
from misr.config.params import Params, load_params
from misr.errors import MisrError

app = typer.Typer(
    name="misr",
    help="Multimodal sentiment analysis with MISR: raw videos -> features -> trained, evaluated, registered model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)

ParamsOption = typer.Option(Path("params.yaml"), "--params", "-p", help="the parameters file", show_default=True, dir_okay=False)
SetOption = typer.Option(None, "--set", "-S", help="override a parameter for this run: section.key=value (repeatable)", metavar="KEY=VALUE")


def load(params: Path, overrides: list[str] | None) -> Params:
    return load_params(params, overrides or [])


def dataset_with(cfg: Params, source: str, field: str) -> DatasetConfig:
    """The active data set if it has this source, else the first data set that does (for defaults)."""
    if cfg.data.active.source == source and getattr(cfg.data.active, field):
        return cfg.data.active
    for ds in cfg.data.datasets.values():
        if ds.source == source and getattr(ds, field):
            return ds
    raise MisrError(f"no data set with source {source!r} in params.yaml", hint="pass --out PATH")


def progress_bar(*columns: Any, transient: bool = False) -> Progress:
    """A rich progress bar on stderr, quiet when stderr is not a terminal."""
    return Progress(
        *(columns or (TextColumn("{task.description}"),)),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=transient,
        disable=not err.is_terminal,
    )


def table(title: str | None, columns: tuple[str, ...] | list[str], rows: list[list[str]], right: bool = True) -> Table:
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="right" if right else "left")
    for row in rows:
        t.add_row(*row)
    return t
