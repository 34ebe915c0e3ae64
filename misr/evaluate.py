"""Evaluation: the standard metrics per seed and over seeds, plots, robustness, and the model card.

EVAL_DIR/
    metrics.json        valid and test: mean and std over seeds of every metric (dvc metrics)
    metrics_per_seed.json   each seed's metrics on valid and test
    robustness.json     test metrics where the modalities agree vs conflict, and with each modality zeroed
    plots/predictions.csv, confusion.csv, error_by_bin.csv     data for `dvc plots show`
    plots/*.png         the same plots and the training curves, for people who do not use DVC
    model_card.md, model_card.json   everything an auditor needs to re-create the model
                        (`misr register` adds the gate's decision, in EVAL_DIR/registration/)

Checkpoints were chosen on the validation split during training; test is only scored here.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr.batches import Batches, zero_modality
from misr.config import Params, params_to_yaml
from misr.errors import MisrError
from misr.metrics import msa_metrics
from misr.store import FeatureStore, SplitData
from misr.train import load_best, metric_set, predict

CLASSES_7 = list(range(-3, 4))
PACKAGES = ("misr", "torch", "numpy", "pyarrow", "prefect", "dvc", "gto", "dvclive", "transformers", "librosa", "av", "dlib-bin")


def evaluate(params: Params, store_dir: str | Path, model_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    store_dir, model_dir, out = Path(store_dir), Path(model_dir), Path(out_dir)
    summary_path = model_dir / "summary.json"
    if not summary_path.exists():
        raise MisrError(f"no trained model in {model_dir} (summary.json missing)", hint="run `misr train` first")
    summary = json.loads(summary_path.read_text())
    seeds = list(summary["seeds"])
    kind = metric_set(params.data.active.convention)
    fs = FeatureStore(store_dir)
    splits = {s: fs.load_split(s) for s in params.evaluate.splits}
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)

    per_seed: dict[str, dict[str, dict[str, float]]] = {s: {} for s in splits}
    preds: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    models = []
    for seed in seeds:
        model, info = load_best(model_dir / f"seed-{seed}")
        models.append(model)
        for split, data in splits.items():
            p = predict(model, Batches(data, torch.device("cpu")), params.train.batch_size)
            preds[split].append(p)
            per_seed[split][seed] = _metrics(p, data.labels.numpy(), kind)

    metrics: dict[str, Any] = {}
    for split in splits:
        keys = next(iter(per_seed[split].values())).keys()
        metrics[split] = {
            "mean": {k: float(np.mean([m[k] for m in per_seed[split].values()])) for k in keys},
            "std": {k: float(np.std([m[k] for m in per_seed[split].values()])) for k in keys},
        }
    metrics["train_mean_baseline"] = {"valid_MAE": summary["train_mean_valid_mae"]}
    # per seed in a file of its own, so that `dvc metrics show` of metrics.json stays one readable row
    _write_json(out / "metrics.json", metrics)
    _write_json(out / "metrics_per_seed.json", per_seed)

    robustness = None
    if params.evaluate.robustness and "test" in splits:
        robustness = robustness_report(models, splits["test"], kind, params.train.batch_size)
        _write_json(out / "robustness.json", robustness)

    focus = "test" if "test" in splits else next(iter(splits))
    mean_pred = np.mean(preds[focus], axis=0)
    write_plot_data(out / "plots", splits[focus], mean_pred, kind)
    write_pngs(out / "plots", splits[focus].labels.numpy(), mean_pred, model_dir, seeds, kind)
    card = model_card(params, store_dir, model_dir, out, summary, metrics, robustness, splits)
    _write_json(out / "model_card.json", card)
    _write_text(out / "model_card.md", card_markdown(card))
    return {"metrics": metrics, "per_seed": per_seed, "robustness": robustness, "card": card}


def _metrics(p: np.ndarray, y: np.ndarray, kind: str) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant prediction has Corr 0 by definition (see misr.metrics)
        return msa_metrics(p, y, kind)


# ------------------------------------------------------------------------------------ robustness


class _Zeroed(Batches):
    def __init__(self, data: SplitData, modalities: tuple[str, ...]):
        super().__init__(data, torch.device("cpu"))
        self.modalities = modalities

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = super().get(idx)
        for m in self.modalities:
            batch = zero_modality(batch, m)
        return batch


def conflict_mask(models: list, data: SplitData, batch_size: int) -> tuple[np.ndarray, str]:
    """Which clips' modalities disagree in sentiment, and how that was decided.

    With per-modality labels (label_T/A/V): a clip conflicts when some modality's label has the sign
    opposite to the clip's label. Without them (the proxy): when the model, given one modality at a
    time (the other two zeroed), predicts sentiments of opposite signs.
    """
    y = data.labels.numpy()
    uni = np.stack([data.unimodal_labels[m].numpy() for m in ("text", "audio", "visual")])
    if np.isfinite(uni).all():
        return (np.sign(uni) * np.sign(y)[None] < 0).any(axis=0), "per-modality labels of opposite sign to the clip label"
    single = []
    for keep in ("text", "audio", "visual"):
        others = tuple(m for m in ("text", "audio", "visual") if m != keep)
        single.append(np.mean([predict(m, _Zeroed(data, others), batch_size) for m in models], axis=0))
    s = np.sign(np.stack(single))
    return (s.max(axis=0) > 0) & (s.min(axis=0) < 0), "proxy: single-modality predictions of the model disagree in sign"


def robustness_report(models: list, data: SplitData, kind: str, batch_size: int) -> dict[str, Any]:
    y = data.labels.numpy()
    base = np.mean([predict(m, Batches(data, torch.device("cpu")), batch_size) for m in models], axis=0)
    conflict, how = conflict_mask(models, data, batch_size)
    report: dict[str, Any] = {"conflict_rule": how, "subsets": {}, "zeroed": {}}
    for name, mask in (("agree", ~conflict), ("conflict", conflict)):
        report["subsets"][name] = {"n": int(mask.sum()), **(_metrics(base[mask], y[mask], kind) if mask.sum() >= 2 else {})}
    report["zeroed"]["none"] = _metrics(base, y, kind)
    for m in ("text", "audio", "visual"):
        p = np.mean([predict(model, _Zeroed(data, (m,)), batch_size) for model in models], axis=0)
        report["zeroed"][m] = _metrics(p, y, kind)
    return report


# ------------------------------------------------------------------------------------ plots


def class_of(values: np.ndarray, kind: str) -> np.ndarray:
    """7 classes -3..3 (MOSI/MOSEI: round after clipping); for SIMS the 5 bins of Mult_acc_5 as -2..2."""
    if kind == "sims":
        from misr.metrics import sims_bin

        return sims_bin(np.clip(values, -1, 1), 5) - 2
    return np.round(np.clip(values, -3, 3)).astype(int)


def write_plot_data(folder: Path, data: SplitData, pred: np.ndarray, kind: str) -> None:
    y = data.labels.numpy()
    rows = [{"clip_key": k, "label": f"{t:.4f}", "prediction": f"{p:.4f}"} for k, t, p in zip(data.clip_keys, y, pred)]
    _write_csv(folder / "predictions.csv", rows)
    t_cls, p_cls = class_of(y, kind), class_of(pred, kind)
    _write_csv(folder / "confusion.csv", [{"actual": int(a), "predicted": int(b)} for a, b in zip(t_cls, p_cls)])
    bins = []
    for c in sorted(set(t_cls.tolist())):
        mask = t_cls == c
        bins.append({"label_bin": int(c), "MAE": f"{np.mean(np.abs(pred[mask] - y[mask])):.4f}", "clips": int(mask.sum())})
    _write_csv(folder / "error_by_bin.csv", bins)


def write_pngs(folder: Path, y: np.ndarray, pred: np.ndarray, model_dir: Path, seeds: list[str], kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = 1.1 if kind == "sims" else 3.3
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, pred, s=10, alpha=0.6)
    ax.plot([-lim, lim], [-lim, lim], color="grey", linestyle="--", linewidth=1)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="true sentiment", ylabel="predicted sentiment", title="test: predicted vs true")
    fig.tight_layout()
    fig.savefig(folder / "scatter.png", dpi=110)
    plt.close(fig)

    t_cls, p_cls = class_of(y, kind), class_of(pred, kind)
    classes = sorted(set(CLASSES_7 if kind != "sims" else range(-2, 3)))
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for a, b in zip(t_cls, p_cls):
        matrix[classes.index(int(a)), classes.index(int(b))] += 1
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(matrix, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="white" if matrix[i, j] > matrix.max() / 2 else "black", fontsize=8)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted class", ylabel="true class", title="test: confusion matrix")  # fmt: skip
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(folder / "confusion.png", dpi=110)
    plt.close(fig)

    bins = sorted(set(t_cls.tolist()))
    maes = [np.mean(np.abs(pred[t_cls == c] - y[t_cls == c])) for c in bins]
    counts = [int((t_cls == c).sum()) for c in bins]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar([str(c) for c in bins], maes, color="tab:orange")
    for bar, n in zip(bars, counts):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={n}", ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="true label bin", ylabel="MAE", title="test: error by label bin")
    fig.tight_layout()
    fig.savefig(folder / "error_by_bin.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for seed in seeds:
        metrics_dir = model_dir / "dvclive" / f"seed-{seed}" / "plots" / "metrics"
        for ax, (path, label) in zip(axes, ((metrics_dir / "train" / "total.tsv", "train loss"), (metrics_dir / "valid" / "MAE.tsv", "valid MAE"))):
            if path.exists():
                rows = list(csv.DictReader(path.open(), delimiter="\t"))
                key = [k for k in rows[0] if k not in ("step", "timestamp")][0] if rows else None
                if key:
                    ax.plot([int(r["step"]) for r in rows], [float(r[key]) for r in rows], label=f"seed {seed}")
                ax.set(xlabel="epoch", ylabel=label, title=label)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "training_curves.png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------ model card


def tree_sha256(path: Path) -> str | None:
    """Content hash of a file or folder (relative paths and bytes), independent of timestamps."""
    if not path.exists():
        return None
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def dvc_lock_hashes(repo: Path, paths: dict[str, Path]) -> dict[str, str | None]:
    """The md5 that dvc.lock records for each path (DVC's own hash), where the pipeline produced it."""
    lock = repo / "dvc.lock"
    found: dict[str, str | None] = {name: None for name in paths}
    if not lock.exists():
        return found
    import yaml

    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    wanted = {name: os.path.normpath(str(p)) for name, p in paths.items()}
    for stage in stages.values():
        for entry in (stage.get("outs") or []) + (stage.get("deps") or []):
            for name, rel in wanted.items():
                if os.path.normpath(entry.get("path", "")) == rel and entry.get("md5"):
                    found[name] = entry["md5"]
    return found


def git_state(repo: Path) -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def model_card(params, store_dir, model_dir, out, summary, metrics, robustness, splits) -> dict[str, Any]:
    repo = Path.cwd()
    fs = FeatureStore(store_dir)
    clips = fs.clips().to_pylist()
    distribution: dict[str, Any] = {}
    for split in ("train", "valid", "test"):
        labels = np.array([c["label"] for c in clips if c["split"] == split], dtype=float)
        if labels.size:
            hist = {str(c): int((np.round(np.clip(labels, -3, 3)) == c).sum()) for c in CLASSES_7}
            distribution[split] = {
                "clips": int(labels.size), "positive": int((labels > 0).sum()), "neutral": int((labels == 0).sum()),
                "negative": int((labels < 0).sum()), "mean": float(labels.mean()), "classes_7": hist,
            }  # fmt: skip
    dataset = params.data.active
    paths = {"raw_data": dataset.raw_dir, "features": Path(store_dir), "model": Path(model_dir)}
    rel = {k: Path(os.path.relpath(v, repo)) if v is not None else None for k, v in paths.items()}
    lock = dvc_lock_hashes(repo, {k: v for k, v in rel.items() if v is not None})
    hashes = {
        name: {"path": str(p) if p is not None else None, "dvc_md5": lock.get(name), "sha256": tree_sha256(Path(p)) if p is not None else None}
        for name, p in paths.items()
    }
    seeds = summary["seeds"]
    return {
        "model": params.model.name,
        "artifact": params.registration.artifact,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": {"name": params.data.dataset, "source": dataset.source, "convention": dataset.convention,
                    "quarantined_clips": fs.errors().num_rows, "label_distribution": distribution},  # fmt: skip
        "metrics": {split: {"mean": m["mean"], "std": m["std"]} for split, m in metrics.items() if split in splits},
        "baseline": metrics["train_mean_baseline"],
        "robustness": robustness,
        "training": {
            "device": summary["device"], "world_size": summary["world_size"],
            "seconds": float(sum(s["seconds"] for s in seeds.values())),
            "seeds": {k: {"best_epoch": v["best_epoch"], "best_valid_mae": v["best_valid_mae"], "epochs_run": v["epochs_run"]} for k, v in seeds.items()},
        },  # fmt: skip
        "params": json.loads(json.dumps(params.model_dump(mode="json", by_alias=True))),
        "environment": {"python": platform.python_version(), "platform": platform.platform(), "packages": package_versions()},
        "git": git_state(repo),
        "hashes": hashes,
        "registration": None,
    }


def card_markdown(card: dict[str, Any]) -> str:
    keys = ["Has0_acc_2", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"]
    lines = [f"# Model card: {card['artifact']} ({card['model']})", "", f"Created {card['created']}.", ""]
    ds = card["dataset"]
    lines += ["## Data", "", f"Data set `{ds['name']}` ({ds['source']}, {ds['convention']} labels); {ds['quarantined_clips']} clip(s) quarantined.", ""]
    lines += ["| split | clips | positive | neutral | negative | mean label |", "|---|---|---|---|---|---|"]
    for split, d in ds["label_distribution"].items():
        lines.append(f"| {split} | {d['clips']} | {d['positive']} | {d['neutral']} | {d['negative']} | {d['mean']:.3f} |")
    lines += ["", "## Metrics (mean +- std over seeds)", ""]
    first = next(iter(card["metrics"].values()))["mean"]
    keys = [k for k in keys if k in first] or list(first)
    lines += ["| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for split, m in card["metrics"].items():
        lines.append(f"| {split} | " + " | ".join(f"{m['mean'][k]:.3f} +- {m['std'][k]:.3f}" for k in keys) + " |")
    lines += ["", f"Validation MAE of predicting the training mean: {card['baseline']['valid_MAE']:.3f}.", ""]
    rob = card.get("robustness")
    if rob:
        lines += ["## Robustness (test)", "", f"Conflict rule: {rob['conflict_rule']}.", "", "| subset | clips | MAE | Non0_acc_2 |", "|---|---|---|---|"]
        for name, m in rob["subsets"].items():
            lines.append(f"| {name} | {m['n']} | {m.get('MAE', float('nan')):.3f} | {m.get('Non0_acc_2', float('nan')):.3f} |")
        lines += ["", "| modality zeroed | MAE | Non0_acc_2 |", "|---|---|---|"]
        for name, m in rob["zeroed"].items():
            lines.append(f"| {name} | {m.get('MAE', float('nan')):.3f} | {m.get('Non0_acc_2', float('nan')):.3f} |")
        lines.append("")
    tr = card["training"]
    lines += ["## Training", "", f"Device {tr['device']} ({tr['world_size']} process(es)), {tr['seconds']:.0f} s in all.", ""]
    for seed, s in tr["seeds"].items():
        lines.append(f"- seed {seed}: best validation MAE {s['best_valid_mae']:.4f} at epoch {s['best_epoch']} of {s['epochs_run']}")
    lines += ["", "## Provenance", "", f"Git commit `{card['git']['commit']}`" + (" (with uncommitted changes)" if card["git"]["dirty"] else "") + ".", ""]
    lines += ["| what | path | DVC md5 (dvc.lock) | sha256 of the content |", "|---|---|---|---|"]
    for name, h in card["hashes"].items():
        lines.append(f"| {name} | {h['path']} | {h['dvc_md5'] or 'not in dvc.lock'} | {h['sha256'] or 'absent'} |")
    env = card["environment"]
    lines += ["", f"Python {env['python']} on {env['platform']}; " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v) + ".", ""]
    reg = card.get("registration")
    lines += ["## Registration", ""]
    if reg:
        lines += [f"Gate decision: **{'promote' if reg['promote'] else 'do not promote'}** to `{reg['stage']}`"
                  + (f" (now holding {reg['prod_version']})" if reg.get("prod_version") else " (empty until now)") + ".", ""]  # fmt: skip
        lines += [f"- {r}" for r in reg["reasons"]] + [""]
        lines += ["A promoted model is the commit that the GTO tags of this decision point to (`gto show`).", ""]
    else:
        lines += ["Not decided yet: `misr register` applies the promotion gate.", ""]
    lines += ["## Parameters", "", "```yaml", _params_yaml(card["params"]).rstrip(), "```", ""]
    return "\n".join(lines)


def _params_yaml(params: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(params, sort_keys=False)


def _write_json(path: Path, payload: Any) -> None:
    _write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
