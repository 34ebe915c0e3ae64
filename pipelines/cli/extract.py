"""`misr extract`: the extract stage, run as a Prefect flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, dataset_with, load, out, progress_bar


@app.command("extract", rich_help_panel="Pipeline stages (dvc.yaml)")
def extract_command(
    raw_dir: Path | None = typer.Argument(None, help="the raw corpus (Raw/ and label.csv) \\[default: the active data set's raw_dir]"),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="the feature store \\[default: the active data set's features_dir]"),
    strict: bool | None = typer.Option(
        None, "--strict/--no-strict", help="exit 1 when any clip is quarantined or kept with a modality absent \\[default: extract.strict]"
    ),
    runner: str | None = typer.Option(None, help="threads or dask \\[default: extract.runner]"),
    dask_address: str | None = typer.Option(None, help="an existing Dask scheduler, e.g. tcp://host:8786"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Extract text tokens, audio frame features and facial landmarks / action units into the feature store.

    One Prefect task per shard of clips; clips whose file and extractor settings are unchanged are
    skipped. Clips that cannot be processed go to the quarantine (errors.parquet) with the reason.
    """
    from misr.data.corpus import check_root
    from misr.msa.convention import convention
    from misr.stages.extract import strict_failure, summary_line, summary_rows
    from misr.util.atomic import check_writable
    from pipelines.extract import extract_flow
    from pipelines.prefect_api import prefect_api

    overrides = list(set_ or [])
    if runner:
        overrides.append(f"extract.runner={runner}")
    if dask_address:
        overrides += ["extract.runner=dask", f"extract.dask_address={dask_address}"]
    cfg = load(params, overrides)
    raw = raw_dir or dataset_with(cfg, "raw", "raw_dir").raw_dir
    store = out_dir or cfg.data.active.features_dir
    check_root(raw)  # fail fast with one line, before the flow starts
    check_writable(store)
    with progress_bar() as bar:
        state: dict[str, Any] = {}

        def progress(event: str, info: dict[str, Any]) -> None:
            if event == "plan":
                state["task"] = bar.add_task(f"extracting {info['todo']} of {info['clips']} clips", total=max(1, info["todo"]))
            elif event == "shard":
                bar.advance(state["task"], info["clips"])

        with prefect_api():
            summary = extract_flow(cfg.features, cfg.extract, convention(cfg.data.active.convention), raw, store, progress)
    out.print(summary_line(summary, store))
    for what, count in summary_rows(summary)[4:]:
        if count:
            out.print(f"  {what}: {count}", highlight=False)
    if (strict if strict is not None else cfg.extract.strict) and strict_failure(summary):
        raise typer.Exit(1)
