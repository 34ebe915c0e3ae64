"""Plots of the test predictions: CSV for `dvc plots show`, PNG for people, one function per plot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from misr.msa.convention import Convention
from misr.store import SplitData
from misr.training.model_dir import ModelDir
from misr.util.atomic import atomic_path, write_csv


def write_plot_data(folder: Path, data: SplitData, pred: np.ndarray, convention: Convention) -> None:
    """predictions.csv, confusion.csv and error_by_bin.csv (the data of dvc.yaml's plots)."""
    y = data.labels.numpy()
    rows = [{"clip_key": k, "label": f"{t:.4f}", "prediction": f"{p:.4f}"} for k, t, p in zip(data.clip_keys, y, pred, strict=True)]
    write_csv(folder / "predictions.csv", rows)
    t_cls, p_cls = convention.class_of(y), convention.class_of(pred)
    write_csv(folder / "confusion.csv", [{"actual": int(a), "predicted": int(b)} for a, b in zip(t_cls, p_cls, strict=True)])
    bins = []
    for c in sorted(set(t_cls.tolist())):
        mask = t_cls == c
        bins.append({"label_bin": int(c), "MAE": f"{np.mean(np.abs(pred[mask] - y[mask])):.4f}", "clips": int(mask.sum())})
    write_csv(folder / "error_by_bin.csv", bins)


def write_pngs(folder: Path, y: np.ndarray, pred: np.ndarray, model_dir: ModelDir, seeds: list[str], convention: Convention) -> None:
    plot_scatter(folder / "scatter.png", y, pred, convention)
    plot_confusion(folder / "confusion.png", y, pred, convention)
    plot_error_by_bin(folder / "error_by_bin.png", y, pred, convention)
    plot_training_curves(folder / "training_curves.png", model_dir, seeds)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


def plot_scatter(path: Path, y: np.ndarray, pred: np.ndarray, convention: Convention) -> None:
    plt = _pyplot()
    lim = convention.label_limit * 1.1
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, pred, s=10, alpha=0.6)
    ax.plot([-lim, lim], [-lim, lim], color="grey", linestyle="--", linewidth=1)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="true sentiment", ylabel="predicted sentiment", title="test: predicted vs true")
    _save(fig, path)


def plot_confusion(path: Path, y: np.ndarray, pred: np.ndarray, convention: Convention) -> None:
    plt = _pyplot()
    classes = convention.classes
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for a, b in zip(convention.class_of(y), convention.class_of(pred), strict=True):
        matrix[classes.index(int(a)), classes.index(int(b))] += 1
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(matrix, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    ticks = range(len(classes))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=classes, yticklabels=classes, xlabel="predicted class", ylabel="true class")
    ax.set_title("test: confusion matrix")
    fig.colorbar(im, ax=ax, shrink=0.8)
    _save(fig, path)


def plot_error_by_bin(path: Path, y: np.ndarray, pred: np.ndarray, convention: Convention) -> None:
    plt = _pyplot()
    t_cls = convention.class_of(y)
    bins = sorted(set(t_cls.tolist()))
    maes = [np.mean(np.abs(pred[t_cls == c] - y[t_cls == c])) for c in bins]
    counts = [int((t_cls == c).sum()) for c in bins]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar([str(c) for c in bins], maes, color="tab:orange")
    for bar, n in zip(bars, counts, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={n}", ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="true label bin", ylabel="MAE", title="test: error by label bin")
    _save(fig, path)


def plot_training_curves(path: Path, model_dir: ModelDir, seeds: list[str]) -> None:
    """Training loss and validation MAE per epoch, one line per seed (from the DVCLive logs)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for seed in seeds:
        curves = ((model_dir.curve(seed, "train", "total"), "train loss"), (model_dir.curve(seed, "valid", "MAE"), "valid MAE"))
        for ax, (tsv, label) in zip(axes, curves, strict=True):
            steps, values = _read_curve(tsv)
            if steps:
                ax.plot(steps, values, label=f"seed {seed}")
            ax.set(xlabel="epoch", ylabel=label, title=label)
    for ax in axes:
        ax.legend(fontsize=8)
    _save(fig, path)


def _read_curve(tsv: Path) -> tuple[list[int], list[float]]:
    if not tsv.exists():
        return [], []
    with tsv.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    key = next((k for k in rows[0] if k not in ("step", "timestamp")), None) if rows else None
    if key is None:
        return [], []
    return [int(r["step"]) for r in rows], [float(r[key]) for r in rows]
