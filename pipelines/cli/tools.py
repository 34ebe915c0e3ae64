"""`misr params`, `inspect`, `import-mmsa`, `export-mmsa`, `predict`: the commands outside the DVC pipeline."""

from __future__ import annotations

from pathlib import Path

import typer

from misr.config.params import params_to_yaml
from misr.errors import MisrError
from pipelines.cli.common import ParamsOption, SetOption, app, err, load, out, table


@app.command("params", rich_help_panel="Tools")
def params_command(params: Path = ParamsOption, set_: list[str] | None = SetOption) -> None:
    """Validate params.yaml and print the resolved parameters (defaults filled in) as YAML."""
    out.print(params_to_yaml(load(params, set_)), end="", markup=False, highlight=False)


@app.command("inspect", rich_help_panel="Tools")
def inspect_command(
    store: Path | None = typer.Argument(None, help="a feature store \\[default: the active data set's features_dir]"),
    split: str | None = typer.Option(None, help="also load this split into padded tensors and show their shapes"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Summarise a feature store: clips per split, modalities (and clips kept without each), dimensions, extractors, quarantine."""
    from misr.store.store import FeatureStore

    cfg = load(params, set_)
    fs = FeatureStore(store or cfg.data.active.features_dir)
    info = fs.describe()
    splits = ", ".join(f"{k}={v}" for k, v in sorted(info["splits"].items()))
    out.print(f"[bold]{info['root']}[/]  usable clips per split: {splits or 'none'}")
    rows = []
    for m, d in info["modalities"].items():
        names = d["features"]
        shown = ", ".join(names[:2]) + (" ..." if len(names) > 2 else "")
        absent = str(info["absent"].get(m, 0))
        rows.append([m, str(d["files"]), str(d["clips"]), absent, str(d["dim"]), d["extractor"], d["config_hash"][:8], shown])
    columns = ("modality", "files", "clips", "of them absent", "dim", "extractor", "config", "first features")
    out.print(table(None, columns, rows, right=False))
    rows = f" ({info['quarantine_rows']} rows: one per failed stage)" if info["quarantine_rows"] != info["quarantined"] else ""
    out.print(f"quarantined clips: {info['quarantined']}{rows}   temporary files: {info['temporary_files']}")
    if info["identity_changes"]:
        out.print(f"clips whose face track may change person (visual identity_changes): {info['identity_changes']}")
    if info["warnings"]:
        out.print(f"clips with warnings (e.g. decoded only in part; see clips.parquet): {info['warnings']}")
    if split:
        data = fs.load_split(split)
        out.print(f"split {split}: {len(data)} clips, labels {tuple(data.labels.shape)}")
        if data.text is not None:
            out.print(f"  text ids {tuple(data.text.input_ids.shape)} mask {tuple(data.text.attention_mask.shape)}")
        for m in ("audio", "visual"):
            seq = getattr(data, m)
            if seq is not None:
                out.print(f"  {m} {tuple(seq.values.shape)} lengths {int(seq.lengths.min())}..{int(seq.lengths.max())}")


@app.command("import-mmsa", rich_help_panel="Tools")
def import_mmsa_command(
    file: Path = typer.Argument(..., help="an MMSA feature file (aligned_50.pkl, unaligned_50.pkl, unaligned_39.pkl)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="the new feature store"),
    tokenizer: str = typer.Option("bert-base-uncased", help="the tokenizer that made text_bert (bert-base-chinese for SIMS)"),
    vocab_size: int = typer.Option(30522, help="its vocabulary size (21128 for bert-base-chinese)"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Import an MMSA feature file into a feature store, keeping splits, ids, lengths and labels.

    The pickle is read with a restricted unpickler: anything but numpy arrays and plain containers is refused.
    Every value is checked against the active data set's convention (labels), the vocabulary (token ids)
    and the file's own shapes before anything is written; each problem is named with split, index and clip.
    """
    from misr.data.mmsa import import_file
    from misr.msa.convention import convention

    cfg = load(params, set_)
    conv = convention(cfg.data.active.convention)
    report = import_file(
        file, out_dir, tokenizer=tokenizer, vocab_size=vocab_size, convention=conv, max_elements=cfg.data.import_max_elements
    )
    out.print(f"imported {', '.join(f'{k} {v}' for k, v in report['clips'].items())} clips into {out_dir} ({conv.name} labels)")
    for modality, kinds in report["non_finite"].items():
        counted = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
        out.print(f"replaced non-finite {modality} values by 0, as MMSA's loader does: {counted}")
    if report["empty_sequences"]:
        out.print(f"{report['empty_sequences']} empty sequence(s) kept as one zero frame")


@app.command("export-mmsa", rich_help_panel="Tools")
def export_mmsa_command(
    store: Path = typer.Argument(..., help="a feature store"),
    out_file: Path = typer.Option(..., "--out", "-o", help="the .pkl to write"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Export a feature store as an MMSA feature file, so MMSA's model zoo can train on these features."""
    from misr.data.mmsa import export_file

    load(params, set_)
    counts = export_file(store, out_file)
    out.print(f"wrote {out_file}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app.command("predict", rich_help_panel="Tools")
def predict_command(
    video: Path = typer.Argument(..., help="a video file, or a folder of them"),
    text: str | None = typer.Option(None, "--text", "-t", help="the transcript (without it, text counts as missing)"),
    model: str = typer.Option("", "--model", "-m", help="a stage (prod), a version (v0.0.2) or a model folder \\[default: register.stage]"),
    repo: Path = typer.Option(Path("."), "--repo", help="the repository holding the model registry"),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Predict the sentiment of a video: a score in the model's label range, its class and 2-class labels."""
    from misr.predict import load_models, predict_video, videos_in

    cfg = load(params, set_)
    targets = videos_in(video)
    reg = cfg.registration
    models, described = load_models(model or reg.stage, repo, reg.artifact, reg.stage)
    conv = models[0][1]["settings"].convention
    out.print(f"model: {described}, {len(models)} seed(s)")
    rows, failed = [], 0
    for path in targets:
        shown = str(path.relative_to(video)) if video.is_dir() else path.name  # nested folders: a/0.mp4, b/0.mp4
        try:
            p = predict_video(models, path, text)
        except MisrError as exc:
            failed += 1
            err.print(f"[red]error:[/] {exc}", highlight=False)
            continue
        if p.missing:
            gaps = "; ".join(f"{modality} missing ({why})" for modality, why in p.missing.items())
            caveat = (
                f" This model never trained without {' or '.join(p.missing)} (train.modality_dropout 0): take the score as "
                "less sure, or use a model trained with train.modality_dropout > 0."
                if p.unpractised
                else ""
            )
            err.print(f"[yellow]note:[/] {shown}: {gaps}; predicted from {' and '.join(p.used)}.{caveat}", highlight=False)
        rows.append([shown, f"{p.score:+.3f} ± {p.spread:.3f}", f"{p.klass:+d} {p.class_name}", p.label2, ", ".join(p.missing) or "-"])
    if rows:
        out.print(table(None, ("video", "score", f"{len(conv.classes)}-class", "2-class", "missing"), rows, right=False))
    if failed:
        raise typer.Exit(2)
