"""The statistics of a comparison: model-vs-model differences with intervals that count what varies.

A claim "A beats B" generalises over the test clips, over each model's training seeds (drawn independently
per model) and, with several stores (data sets, or seeds of data), over stores. An interval that averages
each clip's error over the seeds and resamples clips treats the trained models as fixed: with 3 seeds it came
out about 9 times too narrow. docs/statistics.md gives the reasoning; tests/unit/test_compare_statistics.py
checks the coverage by simulation.

One store: per model a matrix of per-clip values, seeds x clips (absolute errors, or 2-class hits on the
counted clips); the difference is the grand mean of A minus that of B. Its variance is the sum of
  - A's seed term: the sample variance of A's per-seed means over its n_A seeds, / n_A (and B's),
  - the clip term: the variance over clips of the seed-averaged difference, / clips, less the seed-by-clip
    noise that the seed terms already hold (a two-way decomposition, so nothing is counted twice),
with a t quantile at Welch-Satterthwaite's degrees of freedom (few seeds: few degrees of freedom, a wide
interval). Several stores: each store's difference already carries its own seeds and clips, so the interval
is the t-interval of the stores' differences (K - 1 degrees of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
POWER = 0.80  # the power at which "the smallest difference this design can resolve" is stated
MAX_SEEDS = 1000  # the most seeds per model a reading suggests


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    se: float = float("nan")
    df: float = float("nan")
    resolvable: float = float("nan")  # the smallest |difference| found at LEVEL with POWER by this design
    needed: str = ""  # what would resolve the observed difference (more seeds or stores), in words
    counts: str = ""  # what the interval counts: seeds per model, stores, clips

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def reading(self) -> str:
        """A plain sentence: resolved or not, and what the design can resolve."""
        if self.excludes_zero():
            return f"resolved at {LEVEL:.0%}"
        said = f"not resolved at {LEVEL:.0%}"
        if math.isfinite(self.resolvable):
            said += f"; this design resolves about ±{self.resolvable:.3f}"
        return said + (f"; {self.needed}" if self.needed else "")

    def as_dict(self) -> dict[str, float | str]:
        return {
            "estimate": self.estimate, "low": self.low, "high": self.high, "se": self.se, "df": self.df,
            "resolvable": self.resolvable, "needed": self.needed, "counts": self.counts, "reading": self.reading(),
        }  # fmt: skip


@dataclass(frozen=True)
class StoreTerms:
    """One store's difference and the parts of its variance."""

    estimate: float
    seed_a: float  # variance of A's seed-mean, NaN with one seed
    seed_b: float
    clip: float
    n_a: int
    n_b: int
    clips: int


def store_terms(a: np.ndarray, b: np.ndarray) -> StoreTerms:
    """`a` [seeds_A, clips] and `b` [seeds_B, clips]: per seed, per clip values on the same clips."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    clips = a.shape[1]
    if clips == 0 or b.shape[1] != clips:
        raise ValueError("both models need values on the same, non-empty set of clips")
    seed_a = a.mean(axis=1).var(ddof=1) / len(a) if len(a) > 1 else float("nan")
    seed_b = b.mean(axis=1).var(ddof=1) / len(b) if len(b) > 1 else float("nan")
    d = a.mean(axis=0) - b.mean(axis=0)
    shared = _interaction(a) / len(a) + _interaction(b) / len(b)  # seed-by-clip noise, already in the seed terms
    clip = max(float(d.var(ddof=1)) - shared, 0.0) / clips if clips > 1 else 0.0
    return StoreTerms(float(a.mean() - b.mean()), float(seed_a), float(seed_b), clip, len(a), len(b), clips)


def _interaction(x: np.ndarray) -> float:
    n, clips = x.shape
    if n < 2 or clips < 2:
        return 0.0
    r = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float((r**2).sum() / ((n - 1) * (clips - 1)))


def difference_interval(per_store: Sequence[tuple[np.ndarray, np.ndarray]], level: float = LEVEL) -> Interval:
    """Model A minus model B, averaged over stores, with an interval over stores, seeds and clips.

    `per_store[i]` = (A's values [seeds_A, clips_i], B's [seeds_B, clips_i]). With one seed per model the seed
    variance cannot be estimated: the interval then counts clips only, and says so.
    """
    if not per_store:
        raise ValueError("no store to compare on")
    terms = [store_terms(a, b) for a, b in per_store]
    clips = sum(t.clips for t in terms)
    seeds = f"{terms[0].n_a} and {terms[0].n_b} seeds"
    if len(terms) > 1:
        diffs = np.array([t.estimate for t in terms])
        k = len(diffs)
        se, df = float(diffs.std(ddof=1) / math.sqrt(k)), float(k - 1)
        estimate = float(diffs.mean())
        counts = f"{k} stores (each with its {seeds} and its clips), {clips} clips"
        crit = float(stats.t.ppf(0.5 + level / 2, df))
        more = math.ceil(k * (crit * se / abs(estimate)) ** 2) if estimate and se > 0 else None
        needed = f"about {more} stores would resolve {estimate:+.3f}" if more and more > k else ""
    else:
        t = terms[0]
        estimate = t.estimate
        with_seeds = math.isfinite(t.seed_a) and math.isfinite(t.seed_b)
        parts = [(t.seed_a, t.n_a - 1), (t.seed_b, t.n_b - 1)] if with_seeds else []
        parts.append((t.clip, t.clips - 1))
        variance = sum(v for v, _ in parts)
        se = math.sqrt(variance)
        df = variance**2 / sum(v**2 / d for v, d in parts if v > 0 and d > 0) if variance > 0 else float("inf")
        counts = f"{seeds} ({'seeds and clips' if with_seeds else 'one seed: clips only, seeds NOT counted'}), {t.clips} clips"
        needed = _seeds_needed(t, estimate, level) if with_seeds else "train more seeds to count the seeds' spread"
    crit = float(stats.t.ppf(0.5 + level / 2, df))
    resolvable = (crit + float(stats.t.ppf(POWER, df))) * se
    if abs(estimate) > crit * se:  # resolved: nothing more is needed
        needed = ""
    return Interval(estimate, estimate - crit * se, estimate + crit * se, se, df, resolvable, needed, counts)


def _seeds_needed(t: StoreTerms, estimate: float, level: float) -> str:
    """How many seeds per model would resolve `estimate`: the seed terms shrink with seeds and the degrees of
    freedom grow, the clip term stays (the same Welch interval as `difference_interval`, with n seeds each)."""
    if not estimate:
        return ""

    def crit(df: float) -> float:
        return float(stats.t.ppf(0.5 + level / 2, df))

    if crit(t.clips - 1) * math.sqrt(t.clip) >= abs(estimate):
        return "more test clips would be needed, not more seeds"
    per_a, per_b = t.seed_a * t.n_a, t.seed_b * t.n_b  # what the seeds' spread contributes, times the seeds
    for n in range(max(t.n_a, t.n_b) + 1, MAX_SEEDS + 1):
        parts = [(per_a / n, n - 1), (per_b / n, n - 1), (t.clip, t.clips - 1)]
        variance = sum(v for v, _ in parts)
        df = variance**2 / sum(v**2 / d for v, d in parts if v > 0 and d > 0)
        if crit(df) * math.sqrt(variance) < abs(estimate):
            return f"about {n} seeds per model would resolve {estimate:+.3f}"
    return f"more than {MAX_SEEDS} seeds per model would be needed to resolve {estimate:+.3f}"


def ratio_of_means(gains: Sequence[float], headroom: Sequence[float], level: float = LEVEL) -> Interval:
    """mean(gains) / mean(headroom) over stores (the share of a headroom closed), with a delta-method
    t-interval over the stores; every store counts, one whose headroom is 0 or negative too (a mean of
    per-store ratios would divide by it, or drop it)."""
    g, h = np.asarray(gains, np.float64), np.asarray(headroom, np.float64)
    k = len(g)
    if k < 2 or len(h) != k:
        raise ValueError("a ratio of means needs the same two values from at least 2 stores")
    ratio = float(g.mean() / h.mean()) if h.mean() else float("nan")
    cov = np.cov(g, h, ddof=1) / k
    variance = (cov[0, 0] + ratio**2 * cov[1, 1] - 2 * ratio * cov[0, 1]) / h.mean() ** 2
    se = math.sqrt(max(float(variance), 0.0))
    crit = float(stats.t.ppf(0.5 + level / 2, k - 1))
    return Interval(ratio, ratio - crit * se, ratio + crit * se, se, float(k - 1), counts=f"{k} stores")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (n - 1: the population SD is 18% low at 3 seeds) of one metric over runs."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}
