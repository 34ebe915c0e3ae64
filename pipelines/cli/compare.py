"""`misr compare`: several models trained on the same store(s), chosen on valid, tested once, compared honestly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, err, load, out, table


@app.command("compare", rich_help_panel="Tools")
def compare_command(
    stores: list[Path] | None = typer.Argument(
        None,
        help="feature store(s); several (data sets, or seeds of data) make the intervals hierarchical \\[default: the active data set's]",
    ),
    models: list[str] | None = typer.Option(
        None,
        "--models",
        "-M",
        help="a model.name (misr, late_fusion, misr_no_inv, ...) or mmsa:TFN, mmsa:LMF, ... (repeatable) \\[default: compare.models]",
    ),
    reference: str | None = typer.Option(
        None, "--reference", "-r", help="the model the others are compared with \\[default: compare.reference]"
    ),
    seeds: list[int] | None = typer.Option(
        None, "--seeds", help="training seeds (repeatable) \\[default: compare.seeds, else train.seeds]"
    ),
    out_dir: Path = typer.Option(Path("compare"), "--out", "-o", help="where comparison.json, .md, .png and predictions.parquet go"),
    cache: Path = typer.Option(Path(".compare-runs"), "--cache", help="trained seeds, reused while settings, store and code are unchanged"),
    workers: int = typer.Option(
        0,
        "--workers",
        "-w",
        show_default=False,
        help="trainings side by side, one CPU thread each \\[default: one per core; 1 on a GPU]",
    ),
    dask: str | None = typer.Option(
        None,
        "--dask",
        help="train the seeds on a Dask cluster: a scheduler's address (tcp://host:8786), or local (a cluster of "
        "--workers processes here); every worker must reach the stores and --cache at the same paths",
    ),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Train each model for each seed on the same store(s), choose checkpoints on valid, then read test once.

    Prints and writes validation first, then test (mean +- std over seeds of the data set's metrics); the
    paired difference of each model against the reference with a bootstrap 95% interval over test clips
    (hierarchical with several stores), on all clips and on the agree/conflict subsets; wins per seed;
    the total time. Settings of this package's models come from params.yaml (model, train); MMSA's models
    use MMSA's own defaults.
    """
    from misr.config.compare import CompareConfig
    from misr.config.section import validate_section
    from misr.errors import MisrError
    from misr.msa.convention import convention
    from misr.stages import compare as stage

    cfg = load(params, set_)
    chosen = cfg.compare
    if models or reference or seeds:
        names = list(models or chosen.models)
        ref = reference or (chosen.reference if chosen.reference in names else names[0])
        update = {"models": names, "reference": ref, "seeds": list(seeds) if seeds else chosen.seeds}
        chosen = validate_section(CompareConfig, {**chosen.model_dump(), **update}, "--models/--reference/--seeds")
    conv = convention(cfg.data.active.convention)
    targets = list(stores or [cfg.data.active.features_dir])
    for target in targets:  # `--models a b` reads b as a store: say how to give several models
        if not target.exists() and len(target.parts) == 1 and models:
            raise MisrError(
                f"no feature store at {target}",
                hint=f"if {str(target)!r} is a model, repeat the option for each model: -M {models[-1]} -M {target}",
            )

    def say(line: str) -> None:
        err.print(line, markup=False, highlight=False)

    report = stage.run(chosen, cfg.model, cfg.train, cfg.features, conv, targets, out_dir, cache, workers, say, dask)

    def show(title: str, columns: Sequence[str], rows: list[list[str]]) -> None:
        out.print(table(title, columns, rows) if rows else title)

    stage.print_report(report, show)
    out.print(f"comparison.json, comparison.md, comparison.png and predictions.parquet in {out_dir}")
