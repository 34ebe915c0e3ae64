import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score

from misr.msa.metrics import MOSI_KEYS, SIMS_KEYS, clip_absolute_errors, msa_metrics, sims_bin, two_class_hits, weighted_f1


def test_keys():
    assert tuple(msa_metrics([0.1, -1], [1, -1], "mosi")) == MOSI_KEYS
    assert tuple(msa_metrics([0.1, -1], [1, -1], "sims")) == SIMS_KEYS


def test_binary_ties_at_zero():
    # a prediction of exactly 0 is positive for Has0 (>= 0) and negative for Non0 (> 0)
    preds = [0.0, 0.0, 1.0, -1.0]
    labels = [-1.0, 0.0, 2.0, 1.0]
    m = msa_metrics(preds, labels)
    assert m["Has0_acc_2"] == pytest.approx(2 / 4)  # 0 vs -1 wrong, 0 vs 0 right, right, wrong
    # Non0 drops label 0: (0 -> neg, -1 neg) right; (1, 2) right; (-1, 1) wrong
    assert m["Non0_acc_2"] == pytest.approx(2 / 3)


def test_round_half_to_even_and_clipping():
    # np.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0
    preds = [0.5, 1.5, 2.5, -0.5, 5.0]
    labels = [0.0, 2.0, 2.0, 0.0, 3.0]
    m = msa_metrics(preds, labels)
    assert m["Mult_acc_7"] == 1.0
    # clipped to [-2, 2]: 5 -> 2 and 3 -> 2 agree as well
    assert m["Mult_acc_5"] == 1.0
    # MAE on the unclipped values: |0.5| + |0.5| + |0.5| + |0.5| + |2| over 5
    assert m["MAE"] == pytest.approx(4.0 / 5)


def test_mult_acc_exact_cases():
    m = msa_metrics([2.6, -3.7, 1.4], [3.0, -2.6, 2.0])
    assert m["Mult_acc_7"] == pytest.approx(2 / 3)  # 3==3, -3==-3, 1!=2
    assert m["Mult_acc_5"] == pytest.approx(2 / 3)  # 2==2, -2==-2, 1!=2


def test_mae_corr_unclipped():
    rng = np.random.default_rng(0)
    y = rng.uniform(-3, 3, 50)
    p = y * 2 + rng.normal(0, 0.3, 50)
    m = msa_metrics(p, y)
    assert m["MAE"] == pytest.approx(np.mean(np.abs(p - y)))
    assert m["Corr"] == pytest.approx(np.corrcoef(p, y)[0, 1])


def test_f1_is_support_weighted_like_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(20):
        t = rng.integers(0, 2, 30).astype(bool)
        p = rng.integers(0, 2, 30).astype(bool)
        assert weighted_f1(t, p) == pytest.approx(f1_score(t, p, average="weighted"))
    # a class never predicted contributes 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = f1_score([1, 1, 0], [1, 1, 1], average="weighted")
    assert weighted_f1(np.array([1, 1, 0]), np.array([1, 1, 1])) == pytest.approx(expected)


def test_sims_bin_edges():
    v = np.array([-1.0, -0.7, -0.69, -0.1, -0.09, 0.0, 0.1, 0.11, 0.7, 0.71, 1.0])
    assert sims_bin(v, 2).tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert sims_bin(v, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert sims_bin(v, 5).tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]


def test_sims_metrics_clip_first():
    m = msa_metrics([1.8, -0.05, 0.0], [1.0, 0.05, -0.3], "sims")
    # clipped: 1.8 -> 1.0; MAE on clipped values: 0 + 0.1 + 0.3
    assert m["MAE"] == pytest.approx(0.4 / 3)
    assert m["Mult_acc_2"] == pytest.approx(2 / 3)  # -0.05 in [-1, 0] but 0.05 in (0, 1]
    assert m["Mult_acc_3"] == pytest.approx(2 / 3)  # -0.05 and 0.05 both middle; 0.0 middle vs -0.3 low
    assert m["Mult_acc_5"] == pytest.approx(2 / 3)


def test_undefined_cases_are_defined_values():
    with pytest.warns(UserWarning, match="Corr set to 0.0"):
        m = msa_metrics([0.5, 0.5, 0.5], [1.0, -1.0, 2.0])
    assert m["Corr"] == 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = msa_metrics([0.5, -0.2], [0.0, 0.0])
    messages = " | ".join(str(w.message) for w in caught)
    assert "no clip has a non-zero label" in messages and "Corr set to 0.0" in messages
    assert m["Non0_acc_2"] == 0.0 and m["Non0_F1_score"] == 0.0
    assert all(np.isfinite(v) for v in m.values())


def test_bad_input():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        msa_metrics([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        msa_metrics([np.nan], [1.0])
    with pytest.raises(ValueError, match="dataset must be"):
        msa_metrics([1.0], [1.0], "iemocap")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sims_bins_on_the_edges_in_the_inputs_own_precision(dtype):
    """MMSA compares each array with the edges in the array's precision: float32 0.1 is in (-0.1, 0.1]."""
    edges = np.array([-0.7, -0.1, 0.1, 0.7], dtype=dtype)
    # by hand: bins [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]
    assert sims_bin(edges, 5).tolist() == [0, 1, 2, 3]
    assert sims_bin(edges, 3).tolist() == [0, 0, 1, 2]
    assert sims_bin(np.array([0.0, np.nextafter(dtype(0), dtype(1))], dtype=dtype), 2).tolist() == [0, 1]
    # a prediction on an edge and a label on the same edge agree, whatever the precision
    labels = np.array([-0.7, -0.1, 0.1, 0.7, 0.1], dtype=dtype)
    preds = np.array([-0.7, -0.1, 0.1, 0.7, 0.09], dtype=dtype)
    m = msa_metrics(preds, labels, "sims")
    assert m["Mult_acc_5"] == m["Mult_acc_3"] == 1.0
    assert m["Mult_acc_2"] == 1.0


def test_sims_metrics_agree_between_float32_and_float64_inputs():
    rng = np.random.default_rng(0)
    labels = np.round(rng.uniform(-1, 1, 400), 1)  # SIMS labels sit on a 0.1 grid: many on the edges
    preds = np.round(rng.uniform(-1, 1, 400), 1)
    m64 = msa_metrics(preds, labels, "sims")
    m32 = msa_metrics(preds.astype(np.float32), labels.astype(np.float32), "sims")
    for key in ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score"):
        assert m32[key] == m64[key], key


@pytest.mark.parametrize("dataset,dtype", [("mosi", np.float64), ("sims", np.float64), ("sims", np.float32)])
def test_per_clip_errors_and_hits_average_to_the_metrics(dataset, dtype):
    """The comparison pairs models clip by clip: its per-clip terms must average to the metric the tables show
    (the report once kept its own copy of the SIMS rules)."""
    rng = np.random.default_rng(3)
    limit = 1.0 if dataset == "sims" else 3.0
    y = np.round(rng.uniform(-1.2 * limit, 1.2 * limit, 400), 1).astype(dtype)  # beyond the range, and on bin edges
    p = np.concatenate([y[:50], rng.normal(0, limit, 350)]).astype(dtype)
    p[50:60] = 0.0
    metrics = msa_metrics(p, y, dataset)
    assert clip_absolute_errors(p, y, dataset).mean() == pytest.approx(metrics["MAE"], rel=1e-12)
    name, hits, counted = two_class_hits(p, y, dataset)
    assert hits[counted].mean() == pytest.approx(metrics[name], rel=1e-12)
    assert name == ("Mult_acc_2" if dataset == "sims" else "Non0_acc_2")
