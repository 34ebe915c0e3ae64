"""The `misr` command line. Each command validates params.yaml first, then calls the library."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

# Offline and private by default, also when a DVC stage runs us from a shell without scripts/env.sh
# (set before Prefect, DVC or transformers are imported; an explicit setting in the environment wins).
for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(_name, _value)

import typer
from rich.console import Console
from rich.table import Table

from misr.config import Params, load_params, params_to_yaml
from misr.errors import MisrError

app = typer.Typer(
    name="misr",
    help="Multimodal sentiment analysis with MISR: raw videos -> features -> trained, evaluated, registered model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)

ParamsOption = typer.Option(
    Path("params.yaml"), "--params", "-p", help="the parameters file", show_default=True, dir_okay=False
)
SetOption = typer.Option(
    None, "--set", "-S", help="override a parameter for this run: section.key=value (repeatable)", metavar="KEY=VALUE"
)


def _load(params: Path, overrides: Optional[list[str]]) -> Params:
    return load_params(params, overrides or [])


@app.command("params")
def params_command(params: Path = ParamsOption, set_: Optional[list[str]] = SetOption) -> None:
    """Validate params.yaml and print the resolved parameters (defaults filled in) as YAML."""
    resolved = _load(params, set_)
    out.print(params_to_yaml(resolved), end="", markup=False, highlight=False)


@app.command("synth")
def synth_command(
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="the store to create [default: features_dir of the synth data set in params]"
    ),
    seed: Optional[int] = typer.Option(None, help="random seed [default: data.synth.seed]"),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="clips in the train split"),
    n_valid: Optional[int] = typer.Option(None, "--n-valid", help="clips in the valid split"),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="clips in the test split"),
    like: Optional[str] = typer.Option(
        None, help="feature dimensions of a standard set: mosi (audio 5, visual 20) or mosei (audio 74, visual 35)"
    ),
    audio_dim: Optional[int] = typer.Option(None, "--audio-dim", help="audio features per frame"),
    visual_dim: Optional[int] = typer.Option(None, "--visual-dim", help="visual features per frame"),
    positive_ratio: Optional[float] = typer.Option(
        None, "--positive-ratio", help="label imbalance of train and valid: share of non-neutral clips that are positive"
    ),
    test_positive_ratio: Optional[float] = typer.Option(None, "--test-positive-ratio", help="the same for the test split"),
    conflict_rate: Optional[float] = typer.Option(
        None, "--conflict-rate", help="train and valid: share of clips where one modality expresses the opposite sentiment"
    ),
    test_conflict_rate: Optional[float] = typer.Option(None, "--test-conflict-rate", help="the same for the test split"),
    force: bool = typer.Option(False, "--force", help="replace an existing store at --out"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Write a synthetic MSA data set (features, labels, splits) straight into a feature store.

    Every option defaults to `data.synth` in params.yaml. The test split can be shifted from train
    (other imbalance and conflict rate). Also writes oracle.json: the metrics of the Bayes-optimal
    predictor from each modality's expressed sentiment (the ceiling) and of the training mean (the floor).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from misr.synth import generate

    overrides = list(set_ or [])
    dims = {"mosi": (5, 20), "mosei": (74, 35)}
    if like is not None:
        if like not in dims:
            raise MisrError(f"--like must be mosi or mosei (got {like!r})")
        overrides += [f"data.synth.audio_dim={dims[like][0]}", f"data.synth.visual_dim={dims[like][1]}"]
    simple = {"seed": seed, "audio_dim": audio_dim, "visual_dim": visual_dim}
    simple.update({f"n_clips.{s}": n for s, n in (("train", n_train), ("valid", n_valid), ("test", n_test))})
    for split in ("train", "valid"):
        simple[f"splits.{split}.positive_ratio"] = positive_ratio
        simple[f"splits.{split}.conflict_rate"] = conflict_rate
    simple["splits.test.positive_ratio"] = test_positive_ratio
    simple["splits.test.conflict_rate"] = test_conflict_rate
    overrides += [f"data.synth.{k}={v}" for k, v in simple.items() if v is not None]
    cfg = _load(params, overrides)
    target = out_dir or _synth_store(cfg)

    with Progress(
                TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(split: str, done: int, total: int) -> None:
            if split not in tasks:
                tasks[split] = bar.add_task(f"synth {split}", total=total)
            bar.update(tasks[split], completed=done)

        oracle = generate(cfg.data.synth, target, force=force, progress=progress)

    table = Table(title=f"synthetic store {target}", show_lines=False)
    table.add_column("split")
    for col in ("clips", "positive", "neutral", "conflict"):
        table.add_column(col, justify="right")
    for split, st in oracle["label_stats"].items():
        table.add_row(split, str(st["n"]), f"{st['positive']:.2f}", f"{st['neutral']:.2f}", f"{st['conflict']:.2f}")
    out.print(table)
    _print_metrics("ceiling (oracle) vs floor (train mean)", oracle)


def _synth_store(cfg: Params) -> Path:
    if cfg.data.active.source == "synth":
        return cfg.data.active.features_dir
    for ds in cfg.data.datasets.values():
        if ds.source == "synth":
            return ds.features_dir
    raise MisrError("no data set with source 'synth' in params.yaml", hint="pass --out PATH")


def _print_metrics(title: str, oracle: dict[str, Any]) -> None:
    keys = ("Non0_acc_2", "Mult_acc_7", "MAE", "Corr")
    table = Table(title=title)
    table.add_column("predictor")
    table.add_column("split")
    for k in keys:
        table.add_column(k, justify="right")
    for name, block in (("oracle", oracle["oracle"]), ("train mean", oracle["train_mean_baseline"])):
        for split, m in block.items():
            table.add_row(name, split, *(f"{m[k]:.3f}" for k in keys))
    out.print(table)


@app.command("inspect")
def inspect_command(
    store: Optional[Path] = typer.Argument(None, help="a feature store [default: the active data set's features_dir]"),
    split: Optional[str] = typer.Option(None, help="also load this split into padded tensors and show their shapes"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Summarise a feature store: clips per split, modalities, dimensions, extractors, quarantine."""
    from misr.store import FeatureStore

    cfg = _load(params, set_)
    fs = FeatureStore(store or cfg.data.active.features_dir)
    info = fs.describe()
    out.print(f"[bold]{info['root']}[/]  splits: " + ", ".join(f"{k}={v}" for k, v in sorted(info["splits"].items())))
    table = Table()
    for col in ("modality", "files", "clips", "dim", "extractor", "config", "first features"):
        table.add_column(col)
    for m, d in info["modalities"].items():
        names = d["features"]
        shown = ", ".join(names[:2]) + (" ..." if len(names) > 2 else "")
        table.add_row(m, str(d["files"]), str(d["clips"]), str(d["dim"]), d["extractor"], d["config_hash"][:8], shown)
    out.print(table)
    out.print(f"quarantined clips: {info['quarantined']}   temporary files: {info['temporary_files']}")
    if split:
        data = fs.load_split(split)
        out.print(f"split {split}: {len(data)} clips, labels {tuple(data.labels.shape)}")
        if data.text is not None:
            out.print(f"  text ids {tuple(data.text.input_ids.shape)} mask {tuple(data.text.attention_mask.shape)}")
        for m in ("audio", "visual"):
            seq = getattr(data, m)
            if seq is not None:
                out.print(f"  {m} {tuple(seq.values.shape)} lengths {int(seq.lengths.min())}..{int(seq.lengths.max())}")


@app.command("demo-corpus")
def demo_corpus_command(
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="the corpus folder [default: raw_dir of the 'demo' data set]"),
    n: Optional[int] = typer.Option(None, "--n", help="number of clips [default: data.demo_corpus.n_clips]"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed [default: data.demo_corpus.seed]"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Generate the demo corpus: real mp4 clips (an animated face, speech-like audio) with transcripts and labels.

    The MMSA-FET layout: OUT/Raw/<video_id>/<clip_id>.mp4 and OUT/label.csv. Deterministic for a seed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from misr.democorpus import generate

    cfg = _load(params, set_)
    target = out_dir or _raw_dir(cfg)
    with Progress(TextColumn("demo corpus"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as bar:  # fmt: skip
        task = bar.add_task("clips", total=n or cfg.data.demo_corpus.n_clips)
        summary = generate(cfg.data.demo_corpus, target, n_clips=n, seed=seed, progress=lambda done, total: bar.update(task, completed=done))
    out.print(f"{summary['clips']} clips in {summary['videos']} videos under {target}: " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()))


def _raw_dir(cfg: Params) -> Path:
    if cfg.data.active.source == "raw" and cfg.data.active.raw_dir:
        return cfg.data.active.raw_dir
    demo = cfg.data.datasets.get("demo")
    if demo is not None and demo.raw_dir:
        return demo.raw_dir
    raise MisrError("no raw corpus folder in params.yaml", hint="pass --out PATH")


@app.command("extract")
def extract_command(
    raw_dir: Optional[Path] = typer.Argument(None, help="the raw corpus (Raw/ and label.csv) [default: the active data set's raw_dir]"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="the feature store [default: the active data set's features_dir]"),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="exit 1 when any clip is quarantined [default: features.strict]"),
    runner: Optional[str] = typer.Option(None, help="threads or dask [default: features.runner]"),
    dask_address: Optional[str] = typer.Option(None, help="an existing Dask scheduler, e.g. tcp://host:8786"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Extract text tokens, audio frame features and facial landmarks / action units into the feature store.

    One Prefect task per shard of clips; clips whose file and extractor settings are unchanged are
    skipped. Clips that cannot be processed go to the quarantine (errors.parquet) with the reason.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.extract import extract_flow

    overrides = list(set_ or [])
    if runner:
        overrides.append(f"features.runner={runner}")
    if dask_address:
        overrides += ["features.runner=dask", f"features.dask_address={dask_address}"]
    from misr.corpus import check_root

    cfg = _load(params, overrides)
    raw = raw_dir or _raw_dir(cfg)
    store = out_dir or cfg.data.active.features_dir
    check_root(raw)  # fail fast with one line, before the flow starts
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  disable=not err.is_terminal) as bar:  # fmt: skip
        state: dict[str, Any] = {}

        def progress(event: str, info: dict[str, Any]) -> None:
            if event == "plan":
                state["task"] = bar.add_task(f"extracting {info['todo']} of {info['clips']} clips", total=max(1, info["todo"]))
            elif event == "shard":
                bar.advance(state["task"], info["clips"])

        summary = extract_flow(cfg, raw, store, progress)
    out.print(
        f"{summary['extracted']} clip(s) extracted in {summary['shards']} shard(s); {summary['complete']} of {summary['clips']} "
        f"complete in {store}; {summary['quarantined']} quarantined"
    )
    for kind, count in sorted(summary["by_error"].items()):
        out.print(f"  quarantine {kind}: {count}", highlight=False)
    if summary["quarantined"] and (strict if strict is not None else cfg.features.strict):
        raise typer.Exit(1)


@app.command("import-mmsa")
def import_mmsa_command(
    file: Path = typer.Argument(..., help="an MMSA feature file (aligned_50.pkl, unaligned_50.pkl, unaligned_39.pkl)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="the new feature store"),
    tokenizer: str = typer.Option("bert-base-uncased", help="the tokenizer that made text_bert (bert-base-chinese for SIMS)"),
    vocab_size: int = typer.Option(30522, help="its vocabulary size (21128 for bert-base-chinese)"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Import an MMSA feature file into a feature store, keeping splits, ids, lengths and labels.

    The pickle is read with a restricted unpickler: anything but numpy arrays and plain containers is refused.
    """
    from misr.mmsa import import_file

    _load(params, set_)
    report = import_file(file, out_dir, tokenizer=tokenizer, vocab_size=vocab_size)
    out.print(f"imported {', '.join(f'{k} {v}' for k, v in report['clips'].items())} clips into {out_dir}")
    if report["neg_inf_audio_values"]:
        out.print(f"replaced {report['neg_inf_audio_values']} -inf audio values by 0 (as MMSA does for MOSEI)")
    if report["empty_sequences"]:
        out.print(f"{report['empty_sequences']} empty sequence(s) kept as one zero frame")


@app.command("export-mmsa")
def export_mmsa_command(
    store: Path = typer.Argument(..., help="a feature store"),
    out_file: Path = typer.Option(..., "--out", "-o", help="the .pkl to write"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Export a feature store as an MMSA feature file, so MMSA's model zoo can train on these features."""
    from misr.mmsa import export_file

    _load(params, set_)
    counts = export_file(store, out_file)
    out.print(f"wrote {out_file}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app.command("predict")
def predict_command(
    video: Path = typer.Argument(..., help="a video file, or a folder of them"),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="the transcript (without it, text counts as missing)"),
    model: str = typer.Option("", "--model", "-m", help="a stage (prod), a version (v0.0.2) or a model folder [default: register.stage]"),
    repo: Path = typer.Option(Path("."), "--repo", help="the repository holding the model registry"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Predict the sentiment of a video: a score in [-3, 3], its 7-class and 2-class labels."""
    from misr.predict import CLASS_NAMES, load_models, predict_video, videos_in

    cfg = _load(params, set_)
    targets = videos_in(video)
    models, described = load_models(model or cfg.registration.stage, repo, cfg.registration.artifact, cfg.registration.stage)
    out.print(f"model: {described}, {len(models)} seed(s)")
    table = Table()
    for col in ("video", "score", "7-class", "2-class", "missing"):
        table.add_column(col)
    failed = 0
    for path in targets:
        try:
            p = predict_video(models, path, text)
        except MisrError as exc:
            failed += 1
            err.print(f"[red]error:[/] {exc}", highlight=False)
            continue
        for modality, why in p.missing.items():
            err.print(f"[yellow]note:[/] {path.name}: {modality} is missing ({why}); predicting from the other modalities", highlight=False)
        table.add_row(path.name, f"{p.score:+.3f} ± {p.spread:.3f}", f"{p.class7:+d} {CLASS_NAMES.get(p.class7, '')}", p.label2, ", ".join(p.missing) or "-")
    if table.row_count:
        out.print(table)
    if failed:
        raise typer.Exit(2)


@app.command("train")
def train_command(
    store: Optional[Path] = typer.Argument(None, help="the feature store [default: the active data set's features_dir]"),
    out_dir: Path = typer.Option(Path("data/models/misr"), "--out", "-o", help="where checkpoints, summary.json and logs go"),
    no_flow: bool = typer.Option(False, "--no-flow", help="train without Prefect (torchrun ranks always do)"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Train the model of `model.name` (MISR, an ablation or late fusion) for every seed in `train.seeds`.

    Uses CUDA when present (bf16), else the CPU. For several GPUs or machines, launch the same command
    with torchrun (e.g. `torchrun --nproc_per_node=2 -m misr.cli train ...`). A killed run resumes from
    the last finished epoch when started again with the same settings.
    """
    from misr.train import Dist, resolve_input_spec, train

    cfg = _load(params, set_)
    store_dir = store or cfg.data.active.features_dir
    resolve_input_spec(cfg, store_dir)  # fail fast, before any process group or flow starts
    dist = Dist.from_env()
    with _training_progress(enabled=dist.main) as progress:
        if dist.launched or no_flow:
            summary = train(cfg, store_dir, out_dir, progress=progress)
        else:
            from pipelines.train import train_flow

            summary = train_flow(cfg, store_dir, out_dir, progress=progress)
    if not dist.main:
        return
    table = Table(title=f"{cfg.model.name} on {store_dir} ({summary['device']}, {summary['world_size']} process(es))")
    for col in ("seed", "best valid MAE", "epoch", "train-mean MAE", "epochs", "seconds"):
        table.add_column(col, justify="right")
    for seed, r in summary["seeds"].items():
        table.add_row(seed, f"{r['best_valid_mae']:.4f}", str(r["best_epoch"]), f"{r['train_mean_valid_mae']:.4f}", str(r["epochs_run"]), f"{r['seconds']:.1f}")
    out.print(table)
    out.print(f"checkpoints and summary.json in {out_dir}")


@app.command("evaluate")
def evaluate_command(
    store: Optional[Path] = typer.Argument(None, help="the feature store [default: the active data set's features_dir]"),
    model_dir: Path = typer.Option(Path("data/models/misr"), "--model", "-m", help="the folder `misr train` wrote"),
    out_dir: Path = typer.Option(Path("data/eval/misr"), "--out", "-o", help="where metrics, plots and the model card go"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Score every seed's best checkpoint on valid and test: metrics (mean +- std), plots, robustness, model card."""
    from misr.evaluate import evaluate

    cfg = _load(params, set_)
    result = evaluate(cfg, store or cfg.data.active.features_dir, model_dir, out_dir)
    keys = ("Non0_acc_2", "Mult_acc_7", "MAE", "Corr") if cfg.data.active.convention != "sims" else ("Mult_acc_2", "Mult_acc_5", "MAE", "Corr")
    table = Table(title=f"{cfg.model.name}: mean +- std over {len(next(iter(result['per_seed'].values())))} seed(s)")
    table.add_column("split")
    for k in keys:
        table.add_column(k, justify="right")
    for split, m in result["metrics"].items():
        if "mean" in m:
            table.add_row(split, *(f"{m['mean'][k]:.3f} +- {m['std'][k]:.3f}" for k in keys))
    out.print(table)
    out.print(f"metrics.json, robustness.json, plots/ and model_card.md in {out_dir}")


@app.command("register")
def register_command(
    eval_dir: Path = typer.Option(Path("data/eval/misr"), "--eval", "-e", help="the folder `misr evaluate` wrote"),
    repo: Path = typer.Option(Path("."), "--repo", help="the git repository holding dvc.yaml and dvc.lock"),
    commit: bool = typer.Option(False, "--commit", help="commit uncommitted changes first (otherwise refuse)"),
    decide_only: bool = typer.Option(
        False, "--decide-only", help="apply the gate and record the decision, touch no git state (the DVC stage does this)"
    ),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Apply the promotion gate; if it passes, register a new version with GTO and assign it the stage."""
    from misr.registry import register

    cfg = _load(params, set_)
    decision = register(cfg, repo, eval_dir, commit=commit, decide_only=decide_only)
    verdict = "[green]promote[/]" if decision.promote else "[yellow]do not promote[/]"
    out.print(f"gate: {verdict} {cfg.registration.artifact} to '{decision.stage}'")
    for reason in decision.reasons:
        out.print(f"  - {reason}", highlight=False)
    if decision.version:
        out.print(f"registered {cfg.registration.artifact}@{decision.version} and assigned '{decision.stage}' (commit {decision.commit[:10]})")
    elif not decide_only:
        out.print("no tag created")


@app.command("retrain")
def retrain_command(
    repo: Path = typer.Option(Path("."), "--repo", help="the pipeline's git repository"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Retrain once if the watched corpus changed: dvc repro, gate, commit, register, push, audit line."""
    from pipelines.retrain import retrain_flow

    _load(repo / params if not params.is_absolute() else params, set_)  # validate before the flow starts
    entry = retrain_flow(str(repo), str(params), list(set_ or []))
    out.print(f"{entry['outcome']}: " + ", ".join(f"{k} {v}" for k, v in entry.items() if k in ("data_version", "decision", "version", "push", "reason") and v))


@app.command("schedule")
def schedule_command(
    repo: Path = typer.Option(Path("."), "--repo", help="the pipeline's git repository"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Serve the retraining flow as a Prefect deployment on `retrain.cron` (runs until stopped).

    Start a local server first for schedules and the UI (`prefect server start`, then
    `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`).
    """
    from pipelines.retrain import serve

    cfg = _load(repo / params if not params.is_absolute() else params, set_)
    out.print(f"serving misr-retrain on cron '{cfg.retrain.cron}' for {repo.resolve()} (Ctrl-C stops)")
    serve(repo, cfg)


@app.command("history")
def history_command(
    repo: Path = typer.Option(Path("."), "--repo", help="the pipeline's git repository"),
    params: Path = ParamsOption,
    set_: Optional[list[str]] = SetOption,
) -> None:
    """The audit trail of retraining runs: when, data version, code commit, decision, registered version."""
    from misr.retrain import history

    cfg = _load(repo / params if not params.is_absolute() else params, set_)
    rows = history(repo / cfg.retrain.audit_log)
    table = Table(title=f"retraining history ({repo / cfg.retrain.audit_log})")
    for col in ("when", "outcome", "data version", "code commit", "decision", "version", "note"):
        table.add_column(col)
    for r in rows:
        note = r.get("reason") or (r.get("error") or "")[:60] or (", ".join(f"{k} {v}" for k, v in (r.get("changes") or {}).items() if v))
        table.add_row(r["when"], r["outcome"], str(r.get("data_version") or "")[:10], str(r.get("code_commit") or "")[:10],
                      r.get("decision") or "", r.get("version") or "", note)  # fmt: skip
    out.print(table if rows else "no retraining has run yet")


class _training_progress:
    """A rich progress bar over the batches of each seed (quiet when stderr is not a terminal)."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, disable=not (enabled and err.is_terminal),
        )  # fmt: skip
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "seed":
            total = info["epochs"] * info["steps"]
            done = info["start_epoch"] * info["steps"]
            self.task = self.bar.add_task(f"seed {info['seed']}", total=total, completed=done)
        elif event == "step" and self.task is not None:
            self.bar.advance(self.task)
        elif event == "epoch" and self.task is not None:
            self.bar.update(self.task, description=f"seed {info['seed']} epoch {info['epoch']} valid MAE {info['valid_mae']:.3f}")


def main() -> None:
    """Entry point: user errors become one clear line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except MisrError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        what = f" {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/]{what}: {exc.strerror or exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
