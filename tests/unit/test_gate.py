"""The promotion gate's decision, a pure function of the metrics, the production model's and the settings."""

from misr.config.params import load_params
from misr.registry.gate import gate
from tests.helpers import REPO

PARAMS = load_params(
    REPO / "params.yaml", ["register.min_margin=0.01", "register.tolerance=0.02", "register.guard_metrics=[Non0_acc_2, Corr]"]
).registration
PROD = {"MAE": 0.80, "Non0_acc_2": 0.75, "Corr": 0.60}


def test_first_model_must_beat_the_training_mean():
    ok, reasons = gate({"MAE": 0.90}, None, baseline_mae=1.00, cfg=PARAMS)
    assert ok and "first model" in reasons[0]
    ok, _ = gate({"MAE": 0.995}, None, baseline_mae=1.00, cfg=PARAMS)  # better, but by less than the margin
    assert not ok
    ok, _ = gate({"MAE": 1.10}, None, baseline_mae=1.00, cfg=PARAMS)
    assert not ok


def test_gate_against_prod_both_ways():
    ok, reasons = gate({"MAE": 0.78, "Non0_acc_2": 0.74, "Corr": 0.59}, PROD, 1.0, PARAMS)
    assert ok, reasons  # 0.02 better on MAE; guards 0.01 worse, inside the 0.02 tolerance
    ok, reasons = gate({"MAE": 0.795, "Non0_acc_2": 0.80, "Corr": 0.70}, PROD, 1.0, PARAMS)
    assert not ok and "not better by +0.0050" in reasons[0]
    ok, reasons = gate({"MAE": 0.70, "Non0_acc_2": 0.70, "Corr": 0.65}, PROD, 1.0, PARAMS)
    assert not ok and any("Non0_acc_2" in r and "beyond" in r for r in reasons)


def test_gate_metric_direction_for_higher_is_better():
    params = load_params(
        REPO / "params.yaml", ["register.metric=Corr", "register.min_margin=0.05", "register.guard_metrics=[MAE]"]
    ).registration
    assert gate({"Corr": 0.70, "MAE": 0.80}, PROD, 1.0, params)[0]
    assert not gate({"Corr": 0.62, "MAE": 0.80}, PROD, 1.0, params)[0]
    assert not gate({"Corr": 0.70, "MAE": 0.90}, PROD, 1.0, params)[0]  # MAE 0.1 worse: beyond tolerance


def test_a_sims_data_set_gates_on_its_own_metrics():
    """The gate's metric list was MOSI-only: on SIMS data its guard Non0_acc_2 was 'not reported, not checked',
    so a model worse on SIMS's 2-class accuracy passed."""
    import pytest

    from misr.errors import MisrError
    from misr.msa.convention import SIMS

    cfg = load_params(REPO / "params.yaml", ["register.min_margin=0.01", "register.tolerance=0.02"]).registration
    prod = {"MAE": 0.40, "Mult_acc_2": 0.80, "Corr": 0.60}
    ok, reasons = gate({"MAE": 0.35, "Mult_acc_2": 0.70, "Corr": 0.61}, prod, 1.0, cfg, SIMS)
    assert not ok and any(r.startswith("Mult_acc_2: 0.7000 vs 0.8000 (beyond the tolerance") for r in reasons), reasons
    ok, reasons = gate({"MAE": 0.35, "Mult_acc_2": 0.79, "Corr": 0.61}, prod, 1.0, cfg, SIMS)
    assert ok, reasons
    mosi_guard = load_params(REPO / "params.yaml", ["register.guard_metrics=[Non0_acc_2]"]).registration
    with pytest.raises(MisrError, match="Non0_acc_2 is not a metric of sims data"):
        gate({"MAE": 0.35}, prod, 1.0, mosi_guard, SIMS)
