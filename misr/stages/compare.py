"""Stage compare: several models trained on the same store(s), chosen on valid, tested once (misr.compare).

compare/dvc.yaml runs `python -m misr.stages.compare STORE OUT_DIR --dataset NAME` (the models of
compare.models); `misr compare` calls `run` with its options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from misr.compare.comparison import compare, default_workers
from misr.compare.contenders import contender
from misr.compare.report import runs_text, summarise, test_reads_line, write
from misr.config.compare import CompareConfig
from misr.config.features import FeaturesConfig
from misr.config.model import ModelConfig
from misr.config.train import TrainConfig
from misr.errors import MisrError
from misr.msa.convention import Convention
from misr.stages import load, parser, say, text_table
from misr.util.atomic import check_creatable
from misr.util.command import run_command

DEFAULT_CACHE = Path(".compare-runs")


def run(
    cfg: CompareConfig,
    model: ModelConfig,
    train: TrainConfig,
    features: FeaturesConfig,
    convention: Convention,
    stores: Sequence[str | Path],
    out_dir: str | Path,
    cache: str | Path = DEFAULT_CACHE,
    workers: int = 0,
    progress: Callable[[str], None] = say,
    dask: str | None = None,
) -> dict[str, Any]:
    """Compare `cfg.models` on the stores; write the report into `out_dir` and return it.

    Each CPU training takes one thread and `workers` of them run side by side (default: one per core; one on
    a GPU), so the results do not depend on how many run at once; with `dask` (a scheduler's address, or
    "local") the trainings run on a Dask cluster (`misr.compare.comparison.run_jobs`).
    """
    if workers < 0:
        raise MisrError(f"workers must be 0 (one per core) or more, not {workers}")
    check_creatable(out_dir)  # before hours of training, not after (and nothing created on a refusal)
    check_creatable(cache)
    contenders = [contender(name, model, train, features, convention, mmsa_selection=cfg.mmsa_selection) for name in cfg.models]
    seeds = list(cfg.seeds or train.seeds)
    comparison = compare(
        [Path(s) for s in stores], contenders, seeds, Path(cache), workers or default_workers(), 1, cfg.reference, progress, dask
    )
    report = summarise(comparison, convention, cfg.reference, cfg.tuning)
    write(report, comparison, Path(out_dir))
    return report


def rows(report: dict[str, Any], split: str) -> list[list[str]]:
    keys = report["headline"]
    return [[m, *(f"{report[split][m][k]['mean']:.4f} +- {report[split][m][k]['std']:.4f}" for k in keys)] for m in report["models"]]


def difference_rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for m, d in report["differences"].items():
        cells = [f"{v['estimate']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]" for v in d.values()]
        out.append([m, *cells, f"{report['wins'][m]['wins']} of {report['wins'][m]['of']}", d["MAE"]["reading"]])
    return out


def subset_rows(report: dict[str, Any]) -> list[list[str]]:
    """Test MAE where the modalities agree and where they conflict, and each model minus the reference there."""
    s, out = report["subsets"], []
    for name in ("agree", "conflict") if s else ():
        for m in report["models"]:
            if m not in s[name]["MAE"]:
                continue
            d = s[name].get(m)
            diff = "(reference)" if d is None else f"{d['MAE']['estimate']:+.4f} [{d['MAE']['low']:+.4f}, {d['MAE']['high']:+.4f}]"
            out.append([m, name, str(sum(s[name]["n"])), f"{s[name]['MAE'][m]['mean']:.4f}", diff])
    return out


def print_report(report: dict[str, Any], show: Callable[[str, Sequence[str], list[list[str]]], None]) -> None:
    """The report as tables (title, columns, rows), validation first: `show` draws each one."""
    show(test_reads_line(report), (), [])
    for split in ("valid", "test"):
        show(f"{split}: mean +- std over runs (seeds x stores)", ("model", *report["headline"]), rows(report, split))
    if report["differences"]:
        metrics = list(next(iter(report["differences"].values())))
        over = report["interval"]["over"]
        title = f"test: each model minus {report['reference']}, 95% interval over {over}"
        show(title, ("model", *metrics, "wins", "reading (MAE)"), difference_rows(report))
        show(f"counted: {next(iter(report['differences'].values()))['MAE']['counts']}", (), [])
    if report["subsets"]:
        columns = ("model", "subset", "clips", "MAE", f"minus {report['reference']}")
        show(f"test by subset ({report['subsets']['rule']})", columns, subset_rows(report))
    show("how each model came about (its tuning; each run's chosen epoch and environments)", (), [])
    for label, info in report.get("contenders", {}).items():
        show(
            f"  {label}: tuning: {info['tuning']}\n  {' ' * len(label)}  runs: {runs_text(info['runs'], len(report['stores']) > 1)}", (), []
        )
    sec = report["seconds"]
    show(f"total time {sec['total']:.0f} s ({sec['trained']} seed(s) trained, {sec['reused']} reused)", (), [])


def main() -> None:
    args = parser(
        "Compare compare.models on the store: valid first, then test read once; paired differences with intervals.",
        ("store", "the feature store"),
        ("out_dir", "where comparison.json, .md, .png and predictions.parquet go"),
    ).parse_args()

    def body() -> None:
        from misr.msa.convention import convention

        params, _, dataset = load(args)
        conv = convention(dataset.convention)
        report = run(
            params.section("compare", CompareConfig),
            params.section("model", ModelConfig),
            params.section("train", TrainConfig),
            params.section("features", FeaturesConfig),
            conv,
            [args.store],
            args.out_dir,
        )
        print_report(report, lambda title, columns, rows: print(title + ("\n" + text_table(columns, rows) if rows else "")))

    run_command(body)


if __name__ == "__main__":
    main()
