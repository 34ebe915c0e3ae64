"""`misr demo-corpus`: write the bundled demo corpus once; it is then a DVC-tracked source, like any corpus."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import TextColumn

from pipelines.cli.common import ParamsOption, SetOption, app, dataset_with, load, out, progress_bar


@app.command("demo-corpus", rich_help_panel="Data")
def demo_corpus_command(
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="the corpus folder \\[default: raw_dir of the 'demo' data set]"),
    n: int | None = typer.Option(None, "--n", help="number of clips \\[default: data.demo_corpus.n_clips]"),
    seed: int | None = typer.Option(None, "--seed", help="random seed \\[default: data.demo_corpus.seed]"),
    force: bool = typer.Option(False, "--force", help="write over a folder that already holds files (drops clips added to it)"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Generate the demo corpus: real mp4 clips (an animated face, speech-like audio) with transcripts and labels.

    The MMSA-FET layout: OUT/Raw/<video_id>/<clip_id>.mp4 and OUT/label.csv. Deterministic for a seed
    (the same bytes, so the same DVC version as data/raw/demo.dvc). A folder that already holds files is
    refused: it is where new clips land. Not a pipeline stage: the corpus is a source that
    `misr retrain` versions with DVC.
    """
    from misr.data.democorpus import generate

    cfg = load(params, set_)
    target = out_dir or dataset_with(cfg, "raw", "raw_dir").raw_dir
    with progress_bar(TextColumn("demo corpus"), transient=True) as bar:
        task = bar.add_task("clips", total=n or cfg.data.demo_corpus.n_clips)
        summary = generate(
            cfg.data.demo_corpus,
            target,
            n_clips=n,
            seed=seed,
            overwrite=force,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    out.print(f"{summary['clips']} clips in {summary['videos']} videos under {target}: {splits}")
