"""`misr compare`: several models trained on the same store(s), chosen on valid, tested once, compared honestly."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, err, load, out, table


@app.command("compare", rich_help_panel="Tools")
def compare_command(
    stores: list[Path] | None = typer.Argument(
        None,
        help="feature store(s); several (data sets, or seeds of data) make the intervals hierarchical [default: the active data set's]",
    ),
    models: list[str] | None = typer.Option(
        None,
        "--models",
        "-M",
        help="a model.name (misr, late_fusion, misr_no_inv, ...) or mmsa:TFN, mmsa:LMF, ... (repeatable) [default: compare.models]",
    ),
    reference: str | None = typer.Option(
        None, "--reference", "-r", help="the model the others are compared with [default: compare.reference]"
    ),
    seeds: list[int] | None = typer.Option(None, "--seeds", help="training seeds (repeatable) [default: compare.seeds, else train.seeds]"),
    out_dir: Path = typer.Option(Path("compare"), "--out", "-o", help="where comparison.json, .md, .png and predictions.parquet go"),
    cache: Path = typer.Option(Path(".compare-runs"), "--cache", help="trained seeds, reused while settings, store and code are unchanged"),
    workers: int = typer.Option(
        0, "--workers", "-w", help="trainings side by side, one CPU thread each [default: one per core; 1 on a GPU]"
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
    from misr.config import CompareConfig, validate_section
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

    def say(line: str) -> None:
        err.print(line, markup=False, highlight=False)

    report = stage.run(chosen, cfg.model, cfg.train, cfg.features, conv, targets, out_dir, cache, workers, say)
    print_report(report)
    out.print(f"comparison.json, comparison.md, comparison.png and predictions.parquet in {out_dir}")


def print_report(r: dict) -> None:
    keys = r["headline"]
    for split in ("valid", "test"):
        rows = [[m, *(f"{r[split][m][k]['mean']:.4f} ± {r[split][m][k]['std']:.4f}" for k in keys)] for m in r["models"]]
        out.print(table(f"{split}: mean ± std over runs", ("model", *keys), rows))
    if r["differences"]:
        acc = next(k for k in next(iter(r["differences"].values())) if k != "MAE")
        rows = []
        for m, d in r["differences"].items():
            cells = [f"{d[k]['estimate']:+.4f} [{d[k]['low']:+.4f}, {d[k]['high']:+.4f}]" for k in ("MAE", acc)]
            rows.append([m, *cells, f"{r['wins'][m]['wins']} of {r['wins'][m]['of']}"])
        out.print(table(f"test: minus {r['reference']}, 95% interval", ("model", "MAE", acc, "wins"), rows))
    s = r["subsets"]
    if s:
        rows = [
            [m, name, str(sum(s[name]["n"])), f"{s[name]['MAE'][m]['mean']:.4f}", interval_text(s[name].get(m))]
            for name in ("agree", "conflict")
            for m in r["models"]
            if m in s[name]["MAE"]
        ]
        out.print(table(f"test by subset ({s['rule']})", ("model", "subset", "clips", "MAE", f"minus {r['reference']}"), rows))
    sec = r["seconds"]
    out.print(f"total time {sec['total']:.0f} s ({sec['trained']} seed(s) trained, {sec['reused']} reused)")


def interval_text(d: dict | None) -> str:
    return "(reference)" if d is None else f"{d['MAE']['estimate']:+.4f} [{d['MAE']['low']:+.4f}, {d['MAE']['high']:+.4f}]"
