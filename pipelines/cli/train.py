"""`misr train`: the train stage, run as a Prefect flow (or directly, under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, load, out, progress_bar, table


@app.command("train", rich_help_panel="Pipeline stages (dvc.yaml)")
def train_command(
    store: Path | None = typer.Argument(None, help="the feature store \\[default: the active data set's features_dir]"),
    out_dir: Path | None = typer.Option(
        None, "--out", "-o", help="where checkpoints, summary.json and logs go \\[default: the active data set's models_dir]"
    ),
    no_flow: bool = typer.Option(False, "--no-flow", help="train without Prefect (torchrun ranks always do)"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Train the model of `model.name` (MISR, an ablation or late fusion) for every seed in `train.seeds`.

    Uses CUDA when present (bf16), else the CPU. For several GPUs or machines, launch the same command
    with torchrun (e.g. `torchrun --nproc_per_node=2 -m pipelines.cli train ...`). A killed run resumes
    from the last finished epoch when started again with the same settings.
    """
    from misr.msa.convention import convention
    from misr.stages import train as stage
    from misr.training.setup import Dist
    from misr.util.atomic import check_writable

    cfg = load(params, set_)
    store_dir = store or cfg.data.active.features_dir
    model_dir = out_dir or cfg.data.active.models_dir
    sections = (cfg.model, cfg.train, cfg.features, convention(cfg.data.active.convention))
    stage.check_inputs(cfg.model, store_dir)  # fail fast, before any process group or flow starts
    check_writable(model_dir)
    dist = Dist.from_env()
    with TrainingProgress(enabled=dist.main) as progress:
        if dist.launched or no_flow:
            summary = stage.run(*sections, store_dir, model_dir, progress=progress)
        else:
            from pipelines.prefect_api import prefect_api
            from pipelines.train import train_flow

            with prefect_api():
                summary = train_flow(*sections, store_dir, model_dir, progress=progress)
    if not dist.main:
        return
    title = f"{cfg.model.name} on {store_dir} ({summary['device']}, {summary['world_size']} process(es))"
    out.print(table(title, stage.SUMMARY_COLUMNS, stage.summary_rows(summary)))
    out.print(f"checkpoints and summary.json in {model_dir}")


class TrainingProgress:
    """A progress bar over the batches of each seed (quiet when stderr is not a terminal)."""

    def __init__(self, enabled: bool):
        self.bar = progress_bar()
        self.bar.disable = self.bar.disable or not enabled
        self.task = None

    def __enter__(self) -> TrainingProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "seed":
            total = info["epochs"] * info["steps"]
            self.task = self.bar.add_task(f"seed {info['seed']}", total=total, completed=info["start_epoch"] * info["steps"])
        elif event == "step" and self.task is not None:
            self.bar.advance(self.task)
        elif event == "epoch" and self.task is not None:
            self.bar.update(self.task, description=f"seed {info['seed']} epoch {info['epoch']} valid MAE {info['valid_mae']:.3f}")
