"""One module per DVC stage, each with two entry points.

`run(<the config sections it reads>, <paths>, ...)` does the stage and returns a summary: the `misr`
CLI and the Prefect flows call it. `main()` is what dvc.yaml runs (`python -m misr.stages.<stage>
...`; extract and train run their flow's module, `python -m pipelines.<stage> ...`): it reads
params.yaml, calls `run` and prints a plain summary. A stage's deps in dvc.yaml are that module's
import closure, its params the sections `run` takes (tests/unit/test_layout.py checks both), so a
change to the human CLI re-runs no stage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from misr.config.dataset import DatasetConfig, dataset_entry
from misr.config.section import StageParams

# Offline and private however a stage is started (`dvc repro` from a bare shell too): no model hub, no
# analytics. An explicit setting in the environment wins. (Flows: the `pipelines` package sets its own.)
for _name, _value in {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
    os.environ.setdefault(_name, _value)


def parser(description: str, *paths: tuple[str, str]) -> argparse.ArgumentParser:
    """The command line of a stage: its paths (name, help), the data set it works on, the params file."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # run as `python -m <module>`: say so in the usage line
    p = argparse.ArgumentParser(prog=f"python -m {spec.name}" if spec else None, description=description)
    for name, help_ in paths:
        p.add_argument(name, type=Path, help=help_)
    p.add_argument("--dataset", help="the entry of data.datasets whose settings apply [default: data.dataset]")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="the parameters file [default: params.yaml]")
    return p


def load(args: argparse.Namespace) -> tuple[StageParams, str, DatasetConfig]:
    """params.yaml (each section validated as the stage asks for it), the data set's name and its entry."""
    params = StageParams(args.params)
    name, dataset = dataset_entry(params, args.dataset)
    return params, name, dataset


def say(message: str) -> None:
    """A progress line on stderr (DVC shows it as the stage runs)."""
    print(message, file=sys.stderr, flush=True)


def text_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    lines = [columns, *rows]
    return "\n".join("  ".join(str(cell).rjust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)
