"""The statistics of a comparison: paired differences with bootstrap intervals, mean and spread over seeds.

A paired difference is computed per test clip (model minus reference, each averaged over its training seeds),
so the clip-to-clip noise the two models share cancels. Its 95% interval is a percentile bootstrap over test
clips; with several stores (data sets, or seeds of data) it is hierarchical: stores are resampled first, then
clips within each store, and the statistic is the mean over the picked stores. With one store the outer level
is dropped, and the interval is the plain clip bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# a statistic of one store's clips: arrays [clips] -> value, vectorised over resamples: arrays [R, clips] -> [R]
Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def hierarchical_bootstrap(
    per_store: Sequence[Sequence[np.ndarray]], statistic: Statistic, rng: np.random.Generator, n: int = 2000, level: float = 0.95
) -> Interval:
    """The mean over stores of `statistic(*arrays)` and its bootstrap interval.

    `per_store[i]` are store i's per-clip arrays (all of one length); `statistic` maps them, row by row, to one
    value. Inner level: `n` resamples of each store's clips. Outer level (several stores): each replicate picks
    stores with replacement and, for each pick, one of that store's inner replicates at random (so a store
    picked twice gets two different clip resamples).
    """
    if not per_store:
        raise ValueError("no store to bootstrap over")
    if any(len(arrays[0]) == 0 for arrays in per_store):
        raise ValueError("a store has no clip to bootstrap over")
    point = float(np.mean([float(statistic(*(a[None] for a in arrays))[0]) for arrays in per_store]))
    inner = []
    for arrays in per_store:
        size = len(arrays[0])
        idx = rng.integers(0, size, (n, size))
        inner.append(np.asarray(statistic(*(a[idx] for a in arrays)), dtype=np.float64))
    inner_matrix = np.stack(inner)  # [stores, n]
    if len(per_store) == 1:
        replicates = inner_matrix[0]
    else:
        k = len(per_store)
        picked = rng.integers(0, k, (n, k))
        which = rng.integers(0, n, (n, k))
        replicates = inner_matrix[picked, which].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return Interval(point, float(np.percentile(replicates, tail)), float(np.percentile(replicates, 100 - tail)))


def mean_difference(d: np.ndarray) -> np.ndarray:
    """Per-clip differences (e.g. absolute errors, model minus reference) -> their mean."""
    return d.mean(axis=-1)


def ratio_difference(model_hits: np.ndarray, reference_hits: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """An accuracy over the counted clips (e.g. non-neutral labels), model minus reference."""
    total = np.maximum(counted.sum(axis=-1), 1)
    return (model_hits * counted).sum(axis=-1) / total - (reference_hits * counted).sum(axis=-1) / total


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean and standard deviation (population, as MMSA reports seeds) of one metric over runs."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
