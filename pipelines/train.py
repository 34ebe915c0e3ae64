"""The training flow: one Prefect task per seed over `misr.train`, and a summary artifact.

`misr train` runs this flow; a DVC stage calls `misr train`. Under torchrun (several processes)
the CLI calls `misr.train.train` directly: every rank must run the same steps, which a flow per
rank would only complicate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from misr.config import Params
from misr.train import Progress, Run, SeedResult, prepare, summarize, train_seed


@task(name="train-seed", task_run_name="train seed {seed}", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def train_seed_task(run: Run, seed: int, progress: Progress | None = None) -> SeedResult:
    # A retry resumes from the seed's last checkpoint rather than starting over.
    return train_seed(run, seed, progress)


@flow(name="misr-train", log_prints=True)
def train_flow(params: Params, store_dir: Path, out_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    run = prepare(params, store_dir, out_dir)
    results = [train_seed_task(run, seed, progress) for seed in params.train.seeds]
    summary = summarize(run, results)
    rows = "\n".join(
        f"| {r.seed} | {r.best_valid_mae:.4f} | {r.best_epoch} | {r.train_mean_valid_mae:.4f} | {r.epochs_run} | {r.seconds:.1f} |"
        for r in results
    )
    create_markdown_artifact(
        key="misr-train-summary",
        markdown=(
            f"# Training of {params.model.name} on {store_dir}\n\n"
            "| seed | best valid MAE | epoch | train-mean valid MAE | epochs | seconds |\n|---|---|---|---|---|---|\n"
            f"{rows}\n\nDevice: {run.device}; checkpoints in `{out_dir}`."
        ),
        description="validation MAE per seed",
    )
    return summary
