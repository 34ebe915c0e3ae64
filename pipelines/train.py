"""The training flow: the train stage with one Prefect task per seed, and a summary artifact.

`misr train` runs this flow, and so does the train stage of dvc.yaml (`python -m pipelines.train
STORE MODEL_DIR --dataset NAME`, see `main`). Under torchrun (several processes) the CLI calls the
stage directly: every rank must run the same steps, which a flow per rank would only complicate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from misr.config.features import FeaturesConfig
from misr.config.model import ModelConfig
from misr.config.train import TrainConfig
from misr.msa.convention import Convention, convention
from misr.stages import load, parser, text_table
from misr.stages import train as stage
from misr.training.loop import Progress, Run, SeedResult, train_seed
from misr.util.atomic import check_writable
from misr.util.command import run_command
from pipelines.prefect_api import prefect_api
from pipelines.user_errors import quiet_user_error_tracebacks, retry_unless_user_error

quiet_user_error_tracebacks()


@task(
    name="train-seed",
    task_run_name="train seed {seed}",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_user_error,
)
def train_seed_task(run: Run, seed: int, progress: Progress | None = None) -> SeedResult:
    # A retry resumes from the seed's last checkpoint rather than starting over.
    return train_seed(run, seed, progress)


@flow(name="misr-train", log_prints=True)
def train_flow(
    model: ModelConfig,
    train_cfg: TrainConfig,
    features: FeaturesConfig,
    convention: Convention,
    store_dir: Path,
    out_dir: Path,
    progress: Any = None,
) -> dict[str, Any]:
    summary = stage.run(model, train_cfg, features, convention, store_dir, out_dir, progress=progress, run_seed=train_seed_task)
    header = "| " + " | ".join(stage.SUMMARY_COLUMNS) + " |\n|" + "---|" * len(stage.SUMMARY_COLUMNS)
    rows = "\n".join("| " + " | ".join(row) + " |" for row in stage.summary_rows(summary))
    where = f"Device: {summary['device']}; checkpoints in `{out_dir}`."
    create_markdown_artifact(
        key="misr-train-summary",
        markdown=f"# Training of {model.name} on {store_dir}\n\n{header}\n{rows}\n\n{where}",
        description="validation MAE per seed",
    )
    return summary


def main() -> None:
    args = parser(
        "Train model.name for every seed of train.seeds on STORE into MODEL_DIR (a Prefect flow).",
        ("store", "the feature store"),
        ("model_dir", "where checkpoints, summary.json and logs go"),
    ).parse_args()

    def body() -> None:
        params, _, dataset = load(args)
        model = params.section("model", ModelConfig)
        stage.check_inputs(model, args.store)  # fail fast, before the flow starts
        check_writable(args.model_dir)
        sections = (model, params.section("train", TrainConfig), params.section("features", FeaturesConfig), convention(dataset.convention))
        with prefect_api():
            summary = train_flow(*sections, args.store, args.model_dir, progress=stage.ProgressLines())
        print(f"{model.name} on {args.store} ({summary['device']})")
        print(text_table(stage.SUMMARY_COLUMNS, stage.summary_rows(summary)))

    run_command(body)


if __name__ == "__main__":
    main()
