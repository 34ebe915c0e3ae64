"""`misr synth`: the synth stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from misr.errors import MisrError
from pipelines.cli.common import ParamsOption, SetOption, app, dataset_with, load, out, progress_bar, table

LIKE = {"mosi": (5, 20), "mosei": (74, 35)}


@app.command("synth", rich_help_panel="Pipeline stages (dvc.yaml)")
def synth_command(
    out_dir: Path | None = typer.Option(
        None, "--out", "-o", help="the store to create \\[default: features_dir of the synth data set in params]"
    ),
    seed: int | None = typer.Option(None, help="random seed \\[default: data.synth.seed]"),
    n_train: int | None = typer.Option(None, "--n-train", help="clips in the train split"),
    n_valid: int | None = typer.Option(None, "--n-valid", help="clips in the valid split"),
    n_test: int | None = typer.Option(None, "--n-test", help="clips in the test split"),
    n_valid_ood: int | None = typer.Option(None, "--n-valid-ood", help="clips in the valid_ood split (shortcut scenario)"),
    like: str | None = typer.Option(
        None, help="feature dimensions of a standard set: mosi (audio 5, visual 20) or mosei (audio 74, visual 35)"
    ),
    audio_dim: int | None = typer.Option(None, "--audio-dim", help="audio features per frame"),
    visual_dim: int | None = typer.Option(None, "--visual-dim", help="visual features per frame"),
    positive_ratio: float | None = typer.Option(
        None, "--positive-ratio", help="label imbalance of train and valid: share of non-neutral clips that are positive"
    ),
    test_positive_ratio: float | None = typer.Option(None, "--test-positive-ratio", help="the same for the test split"),
    conflict_rate: float | None = typer.Option(
        None, "--conflict-rate", help="train and valid: share of clips where one modality expresses the opposite sentiment"
    ),
    test_conflict_rate: float | None = typer.Option(None, "--test-conflict-rate", help="the same for the test split"),
    force: bool = typer.Option(False, "--force", help="replace an existing store at --out"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Write a synthetic MSA data set (features, labels, splits) straight into a feature store.

    Every option defaults to `data.synth` in params.yaml. The default scenario, shortcut, holds a subgroup
    where one modality's sign cue flips, rare in train and valid, common in valid_ood and test (valid_ood is
    drawn like test, for choosing settings). With -S data.synth.scenario=shift the test split is instead
    shifted from train by the options below (other imbalance and conflict rate). Also writes oracle.json: the metrics of the
    Bayes-optimal predictor from each modality's expressed sentiment (the ceiling), per metric under the split's own
    and under training's distribution, and of the training mean (the floor).
    """
    from misr.stages import synth

    overrides = list(set_ or [])
    if like is not None:
        if like not in LIKE:
            raise MisrError(f"--like must be mosi or mosei (got {like!r})")
        overrides += [f"data.synth.audio_dim={LIKE[like][0]}", f"data.synth.visual_dim={LIKE[like][1]}"]
    simple: dict[str, Any] = {"seed": seed, "audio_dim": audio_dim, "visual_dim": visual_dim}
    simple.update({f"n_clips.{s}": n for s, n in (("train", n_train), ("valid", n_valid), ("test", n_test), ("valid_ood", n_valid_ood))})
    for split in ("train", "valid"):
        simple[f"splits.{split}.positive_ratio"] = positive_ratio
        simple[f"splits.{split}.conflict_rate"] = conflict_rate
    simple["splits.test.positive_ratio"] = test_positive_ratio
    simple["splits.test.conflict_rate"] = test_conflict_rate
    overrides += [f"data.synth.{k}={v}" for k, v in simple.items() if v is not None]
    cfg = load(params, overrides)
    shift_only = {
        "--test-positive-ratio": test_positive_ratio,
        "--conflict-rate": conflict_rate,
        "--test-conflict-rate": test_conflict_rate,
    }
    given = [flag for flag, value in shift_only.items() if value is not None]
    if given and cfg.data.synth.scenario == "shortcut":
        raise MisrError(
            f"{', '.join(given)}: options of the shift scenario; the shortcut scenario draws every split with the training shape",
            hint="add -S data.synth.scenario=shift",
        )
    target = out_dir or dataset_with(cfg, "synth", "features_dir").features_dir

    with progress_bar(transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(split: str, done: int, total: int) -> None:
            if split not in tasks:
                tasks[split] = bar.add_task(f"synth {split}", total=total)
            bar.update(tasks[split], completed=done)

        oracle = synth.run(cfg.data.synth, target, force=force, progress=progress)

    out.print(table(f"synthetic store {target}", synth.LABEL_COLUMNS, synth.label_rows(oracle)))
    out.print(table("ceiling (oracle) vs floor (train mean)", synth.BOUND_COLUMNS, synth.bound_rows(oracle)))
    title = "ceilings per metric: test-aware Bayes vs ERM (Bayes under training's distribution)"
    out.print(table(title, synth.CEILING_COLUMNS, synth.ceiling_rows(oracle)))
