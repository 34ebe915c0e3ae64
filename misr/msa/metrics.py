"""The MSA community's standard metrics, as defined by MMSA's `metricsTop` (thuiar/MMSA).

MOSI / MOSEI style (labels in [-3, 3]):
    Has0_acc_2, Has0_F1_score   binary with 0 counted as positive (label >= 0)
    Non0_acc_2, Non0_F1_score   clips labelled exactly 0 removed, positive when > 0
    Mult_acc_5                  preds and labels clipped to [-2, 2], then rounded
    Mult_acc_7                  preds and labels clipped to [-3, 3], then rounded
    MAE, Corr                   on the unclipped values (Corr: Pearson)
SIMS style (labels in [-1, 1]; preds and labels first clipped to [-1, 1]):
    Mult_acc_2                  bins [-1, 0], (0, 1]
    Mult_acc_3                  bins [-1, -0.1], (-0.1, 0.1], (0.1, 1]
    Mult_acc_5                  bins [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]
    F1_score                    support-weighted F1 on the 2 bins
    MAE, Corr                   on the clipped values

Rounding is numpy's (half to even), as in MMSA. F1 is the support-weighted F1 (sklearn's
average="weighted"; a class never predicted contributes F1 0).

Undefined cases get a defined value, with a warning, instead of NaN:
    Corr = 0.0 when either the predictions or the labels are constant (Pearson is undefined);
    Non0_acc_2 = Non0_F1_score = 0.0 when no clip has a non-zero label.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

MOSI_KEYS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")
SIMS_KEYS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")
SIMS_BINS = {
    2: (0.0,),
    3: (-0.1, 0.1),
    5: (-0.7, -0.1, 0.1, 0.7),
}


def msa_metrics(preds: Any, labels: Any, dataset: Literal["mosi", "mosei", "sims"] = "mosi") -> dict[str, float]:
    """The standard metrics for one set of predictions; `dataset` picks the MOSI/MOSEI or SIMS set."""
    p, y = _native(preds), _native(labels)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} predictions for {y.size} labels")
    if p.size == 0:
        raise ValueError("no predictions to score")
    if not (np.isfinite(p).all() and np.isfinite(y).all()):
        raise ValueError("predictions and labels must be finite numbers")
    if dataset in ("mosi", "mosei"):
        return _mosi(p.astype(np.float64), y.astype(np.float64))
    if dataset == "sims":
        return _sims(p, y)
    raise ValueError(f"dataset must be mosi, mosei or sims (got {dataset!r})")


def _native(x: Any) -> np.ndarray:
    """A flat array in the input's own floating precision (other numbers become float64)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x).reshape(-1)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)


def _mosi(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    out["Has0_acc_2"] = _accuracy(p >= 0, y >= 0)
    out["Has0_F1_score"] = weighted_f1(y >= 0, p >= 0)
    nonzero = y != 0
    if nonzero.any():
        out["Non0_acc_2"] = _accuracy(p[nonzero] > 0, y[nonzero] > 0)
        out["Non0_F1_score"] = weighted_f1(y[nonzero] > 0, p[nonzero] > 0)
    else:
        warnings.warn("no clip has a non-zero label: Non0_acc_2 and Non0_F1_score set to 0.0", stacklevel=3)
        out["Non0_acc_2"] = out["Non0_F1_score"] = 0.0
    out["Mult_acc_5"] = _accuracy(np.round(np.clip(p, -2, 2)), np.round(np.clip(y, -2, 2)))
    out["Mult_acc_7"] = _accuracy(np.round(np.clip(p, -3, 3)), np.round(np.clip(y, -3, 3)))
    out["MAE"] = float(np.mean(np.abs(p - y)))
    out["Corr"] = pearson(p, y)
    return out


def _sims(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    # Binned in the inputs' own precision, as MMSA's comparisons with Python floats are: a float32
    # label of 0.1 lies in (-0.1, 0.1] whether the arrays are float32 or float64.
    p, y = np.clip(p, -1, 1), np.clip(y, -1, 1)
    out: dict[str, float] = {}
    for k in (2, 3, 5):
        out[f"Mult_acc_{k}"] = _accuracy(sims_bin(p, k), sims_bin(y, k))
    out["F1_score"] = weighted_f1(sims_bin(y, 2), sims_bin(p, 2))
    p64, y64 = p.astype(np.float64), y.astype(np.float64)
    out["MAE"] = float(np.mean(np.abs(p64 - y64)))
    out["Corr"] = pearson(p64, y64)
    return out


def clip_absolute_errors(preds: Any, labels: Any, dataset: Literal["mosi", "mosei", "sims"] = "mosi") -> np.ndarray:
    """Each clip's absolute error as `msa_metrics`' MAE counts it (their mean is that MAE): SIMS clips both
    to [-1, 1] first. What a paired comparison of two models' MAE pairs, clip by clip."""
    p, y = _native(preds).astype(np.float64), _native(labels).astype(np.float64)
    if dataset == "sims":
        p, y = np.clip(p, -1, 1), np.clip(y, -1, 1)
    return np.abs(p - y)


def two_class_hits(preds: Any, labels: Any, dataset: Literal["mosi", "mosei", "sims"] = "mosi") -> tuple[str, np.ndarray, np.ndarray]:
    """The data set's 2-class accuracy clip by clip: its name, each clip's hit, and the clips it counts (the
    mean of the hits over those clips is `msa_metrics`' value): Non0_acc_2 for MOSI and MOSEI, Mult_acc_2 for SIMS."""
    p, y = _native(preds), _native(labels)
    if dataset == "sims":
        p, y = np.clip(p, -1, 1), np.clip(y, -1, 1)
        return "Mult_acc_2", sims_bin(p, 2) == sims_bin(y, 2), np.ones(y.shape, dtype=bool)
    return "Non0_acc_2", (p > 0) == (y > 0), y != 0


def sims_bin(values: np.ndarray, n_classes: int) -> np.ndarray:
    """Class index of each value; bins are closed on the right, (a, b], the first one also on the left.

    The edges take the values' precision, so that a float32 0.1 sits on the edge 0.1, not above it.
    """
    values = np.asarray(values)
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    return np.searchsorted(np.asarray(SIMS_BINS[n_classes], dtype=dtype), values.astype(dtype), side="left")


def _accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(pred == true))


def weighted_f1(true: np.ndarray, pred: np.ndarray) -> float:
    """Support-weighted F1 over the classes present in `true` (sklearn's average='weighted')."""
    true = np.asarray(true)
    pred = np.asarray(pred)
    classes = np.unique(np.concatenate([true, pred]))
    total = 0.0
    for c in classes:
        support = np.sum(true == c)
        if support == 0:
            continue
        tp = np.sum((pred == c) & (true == c))
        denom = np.sum(pred == c) + support
        total += support * (2.0 * tp / denom if denom else 0.0)
    return float(total / true.size)


def pearson(p: np.ndarray, y: np.ndarray) -> float:
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(y) == 0:
        warnings.warn("Pearson correlation is undefined for constant values: Corr set to 0.0", stacklevel=3)
        return 0.0
    return float(np.corrcoef(p, y)[0, 1])
