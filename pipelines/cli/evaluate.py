"""`misr evaluate`: the evaluate stage."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, load, out, table


@app.command("evaluate", rich_help_panel="Pipeline stages (dvc.yaml)")
def evaluate_command(
    store: Path | None = typer.Argument(None, help="the feature store \\[default: the active data set's features_dir]"),
    model_dir: Path | None = typer.Option(
        None, "--model", "-m", help="the folder `misr train` wrote \\[default: the active data set's models_dir]"
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", "-o", help="where metrics, plots and the model card go \\[default: the active data set's eval_dir]"
    ),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Score every seed's best checkpoint on valid and test: metrics (mean +- std), plots, robustness, model card."""
    from misr.stages import evaluate

    cfg = load(params, set_)
    ds = cfg.data.active
    target = out_dir or ds.eval_dir
    ev = evaluate.run(cfg.evaluate, cfg.data.dataset, ds, store or ds.features_dir, model_dir or ds.models_dir, target)
    title = f"{ev.settings.model.name}: mean +- std over {len(ev.seeds)} seed(s)"
    out.print(table(title, ("split", *ev.settings.convention.headline), evaluate.headline_rows(ev)))
    if evaluate.group_line(ev):
        out.print(evaluate.group_line(ev))
    out.print(f"metrics.json, robustness.json, plots/ and model_card.md in {target}")
