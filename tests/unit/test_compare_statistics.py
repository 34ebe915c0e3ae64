"""The comparison's intervals: the bootstrap's point, its coverage, the hierarchical level, the ratio statistic."""

import numpy as np
import pytest

from misr.compare.statistics import hierarchical_bootstrap, mean_difference, ratio_difference, spread


def test_one_store_is_the_clip_bootstrap_of_the_mean():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, 400)
    iv = hierarchical_bootstrap([[d]], mean_difference, np.random.default_rng(1), n=4000)
    assert iv.estimate == pytest.approx(d.mean())
    se = d.std() / np.sqrt(d.size)  # the normal interval the percentile one should be close to
    assert iv.low == pytest.approx(d.mean() - 1.96 * se, abs=0.2 * se)
    assert iv.high == pytest.approx(d.mean() + 1.96 * se, abs=0.2 * se)
    assert iv.excludes_zero()


def test_coverage_near_95_percent():
    covered = 0
    for trial in range(200):
        rng = np.random.default_rng(trial)
        d = rng.normal(0.1, 1.0, 100)
        iv = hierarchical_bootstrap([[d]], mean_difference, rng, n=500)
        covered += iv.low <= 0.1 <= iv.high
    assert 0.89 <= covered / 200 <= 0.99


def test_stores_that_disagree_widen_the_interval():
    """Two stores with opposite effects: the clip-level noise is tiny, the store-level spread is not; the
    hierarchical interval must cover both stores' effects, not just the pooled mean's clip noise."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 0.05, 500), rng.normal(-0.3, 0.05, 500)
    two = hierarchical_bootstrap([[a], [b]], mean_difference, np.random.default_rng(1), n=2000)
    pooled = hierarchical_bootstrap([[np.concatenate([a, b])]], mean_difference, np.random.default_rng(1), n=2000)
    assert two.estimate == pytest.approx((a.mean() + b.mean()) / 2)
    assert two.high - two.low > 10 * (pooled.high - pooled.low)
    assert two.low < -0.2 and two.high > 0.4


def test_ratio_difference_is_the_accuracy_difference_on_counted_clips():
    model = np.array([1, 1, 0, 1, 0, 1], dtype=float)
    ref = np.array([0, 1, 0, 0, 1, 1], dtype=float)
    counted = np.array([1, 1, 1, 0, 1, 1], dtype=float)  # clip 3 (label 0) does not count
    assert float(ratio_difference(model[None], ref[None], counted[None])[0]) == pytest.approx(3 / 5 - 3 / 5)
    counted[4] = 0
    assert float(ratio_difference(model[None], ref[None], counted[None])[0]) == pytest.approx(3 / 4 - 2 / 4)


def test_spread_and_errors():
    assert spread([1.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 2}
    with pytest.raises(ValueError, match="no store"):
        hierarchical_bootstrap([], mean_difference, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no clip"):
        hierarchical_bootstrap([[np.array([])]], mean_difference, np.random.default_rng(0))
