"""Stage train: every seed of `train.seeds`, checkpointed and resumable (see `misr.training.loop`).

dvc.yaml runs its flow's module (`python -m pipelines.train STORE MODEL_DIR --dataset NAME`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from misr.config.features import FeaturesConfig
from misr.config.model import ModelConfig
from misr.config.train import TrainConfig
from misr.msa.convention import Convention
from misr.training.checkpoints import RunSettings
from misr.training.loop import Progress, SeedRunner, train
from misr.training.setup import resolve_input_spec

SUMMARY_COLUMNS = ("seed", "best valid MAE", "epoch", "train-mean valid MAE", "epochs", "seconds")


def run(
    model: ModelConfig,
    train_cfg: TrainConfig,
    features: FeaturesConfig,
    convention: Convention,
    store_dir: str | Path,
    out_dir: str | Path,
    progress: Progress | None = None,
    run_seed: SeedRunner | None = None,
) -> dict[str, Any]:
    """Train `model.name` on the store into `out_dir`; returns the summary (also summary.json).

    `features` is not used to train: it travels in the checkpoints, so that `misr predict` extracts
    a new video as the training data was extracted. `run_seed` lets an orchestrator run each seed
    (e.g. a Prefect task with retries); by default the seeds run one after the other here.
    """
    settings = RunSettings(model=model, train=train_cfg, features=features, convention=convention)
    return train(settings, store_dir, out_dir, progress=progress, run_seed=run_seed)


def check_inputs(model: ModelConfig, store_dir: str | Path) -> None:
    """Fail fast, before any process group or flow starts: the store exists and fits the model."""
    resolve_input_spec(model, store_dir)


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The summary as table rows under SUMMARY_COLUMNS (for the CLI and the flow's artifact)."""
    return [
        [
            seed,
            f"{r['best_valid_mae']:.4f}",
            str(r["best_epoch"]),
            f"{r['train_mean_valid_mae']:.4f}",
            str(r["epochs_run"]),
            f"{r['seconds']:.1f}",
        ]
        for seed, r in summary["seeds"].items()
    ]


class ProgressLines:
    """Progress as one plain line per epoch on stderr (for logs and `dvc repro`, where a bar would not render)."""

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "seed":
            self.epochs = info["epochs"]
            resumed = f", resuming after epoch {info['start_epoch']}" if info["resumed"] else ""
            print(f"seed {info['seed']}: {info['epochs']} epochs of {info['steps']} steps{resumed}", file=sys.stderr, flush=True)
        elif event == "epoch":
            best = f" (best {info['best_mae']:.4f})" if math.isfinite(info["best_mae"]) else ""  # none yet in the warm-up
            line = f"  seed {info['seed']} epoch {info['epoch'] + 1}/{self.epochs}: valid MAE {info['valid_mae']:.4f}{best}"
            print(line, file=sys.stderr, flush=True)
