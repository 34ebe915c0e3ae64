"""EVAL_DIR, the evaluate and register stages' folder: the one place that knows its layout.

    EVAL_DIR/metrics.json             valid and test: mean and std over seeds of every metric (`dvc metrics`)
    EVAL_DIR/metrics_per_seed.json    each seed's metrics on valid and test
    EVAL_DIR/robustness.json          test metrics where the modalities agree vs conflict, and with each one zeroed
    EVAL_DIR/plots/                   data for `dvc plots show` (csv) and the same plots as png
    EVAL_DIR/model_card.md, .json     everything an auditor needs to re-create the model
    EVAL_DIR/registration/            the register stage's: decision.json and the card completed with the decision
    EVAL_DIR/registered/              `misr register`'s, when the gate passes: the card naming the registered commit

The evaluate stage writes the top level, the register stage only registration/ (so that neither
rewrites the other's outputs), and `misr register` only registered/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misr.evaluation.card_text import card_markdown
from misr.util.atomic import write_json, write_text


@dataclass(frozen=True)
class EvalDir:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def metrics_per_seed(self) -> Path:
        return self.root / "metrics_per_seed.json"

    @property
    def robustness(self) -> Path:
        return self.root / "robustness.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def registration(self) -> Path:
        return self.root / "registration"

    @property
    def decision(self) -> Path:
        return self.registration / "decision.json"

    @property
    def registered(self) -> Path:
        return self.root / "registered"

    def card(self, folder: Path | None = None) -> Path:
        """The model card (JSON) in `folder`: the root (the evaluate stage's), registration/ or registered/."""
        return (folder or self.root) / "model_card.json"

    def read_card(self, folder: Path | None = None) -> dict[str, Any] | None:
        path = self.card(folder)
        return json.loads(path.read_text()) if path.exists() else None

    def write_card(self, card: dict[str, Any], folder: Path | None = None) -> None:
        """The card as JSON and as Markdown, side by side."""
        write_json(self.card(folder), card)
        write_text(self.card(folder).with_suffix(".md"), card_markdown(card))

    def read_metrics(self) -> dict[str, Any] | None:
        return json.loads(self.metrics.read_text()) if self.metrics.exists() else None
