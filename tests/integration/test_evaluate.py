import csv
import json

import numpy as np
import pytest

from misr.evaluation.card import tree_sha256
from misr.msa.metrics import msa_metrics
from tests.helpers import TINY_TRAINING, evaluate, params, train

TINY = [
    *TINY_TRAINING,
    "data.dataset=synth",
    "data.datasets.synth.chose_settings=false",  # a fresh synthetic set: its test is a test
    "data.synth.scenario=shift",
    "data.synth.n_clips={train: 96, valid: 32, test: 40}",
    "train.epochs=3",
    "train.seeds=[3, 4]",
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from misr.data.synth import generate

    root = tmp_path_factory.mktemp("eval")
    p = params(*TINY)
    generate(p.data.synth, root / "store")
    train(p, root / "store", root / "model")
    result = evaluate(p, root / "store", root / "model", root / "eval")
    return root, result


@pytest.mark.slow
def test_metrics_per_seed_and_over_seeds(evaluated):
    root, result = evaluated
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    seeds = json.loads((root / "eval" / "metrics_per_seed.json").read_text())
    for split in ("valid", "test"):
        per_seed = seeds[split]
        assert set(per_seed) == {"3", "4"}
        maes = [per_seed[s]["MAE"] for s in per_seed]
        assert metrics[split]["mean"]["MAE"] == pytest.approx(np.mean(maes))
        assert metrics[split]["std"]["MAE"] == pytest.approx(np.std(maes, ddof=1))  # the sample SD over seeds
    # the best checkpoint's validation MAE is the one training reported
    summary = json.loads((root / "model" / "summary.json").read_text())
    assert seeds["valid"]["3"]["MAE"] == summary["seeds"]["3"]["best_valid_mae"]  # exactly: both are fp32 predictions


@pytest.mark.slow
def test_plot_data_agrees_with_metrics(evaluated):
    root, _ = evaluated
    rows = list(csv.DictReader((root / "eval" / "plots" / "predictions.csv").open()))
    assert len(rows) == 40
    y = np.array([float(r["label"]) for r in rows])
    p = np.array([float(r["prediction"]) for r in rows])
    confusion = list(csv.DictReader((root / "eval" / "plots" / "confusion.csv").open()))
    assert [int(r["actual"]) for r in confusion] == np.round(np.clip(y, -3, 3)).astype(int).tolist()
    bins = list(csv.DictReader((root / "eval" / "plots" / "error_by_bin.csv").open()))
    assert sum(int(b["clips"]) for b in bins) == 40
    worst = max(bins, key=lambda b: float(b["MAE"]))
    mask = np.round(np.clip(y, -3, 3)) == int(worst["label_bin"])
    assert float(worst["MAE"]) == pytest.approx(np.mean(np.abs(p[mask] - y[mask])), abs=1e-3)
    for png in ("scatter", "confusion", "error_by_bin", "training_curves"):
        data = (root / "eval" / "plots" / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.slow
def test_robustness_report(evaluated):
    root, result = evaluated
    rob = json.loads((root / "eval" / "robustness.json").read_text())
    assert rob["subsets"]["agree"]["n"] + rob["subsets"]["conflict"]["n"] == 40
    assert rob["conflict_rule"].startswith("per-modality labels")
    assert set(rob["zeroed"]) == {"none", "text", "audio", "visual"}
    assert rob["zeroed"]["none"]["MAE"] == pytest.approx(msa_metrics(*_pred_label(root), "mosi")["MAE"], abs=1e-3)


def _pred_label(root):
    rows = list(csv.DictReader((root / "eval" / "plots" / "predictions.csv").open()))
    return np.array([float(r["prediction"]) for r in rows]), np.array([float(r["label"]) for r in rows])


@pytest.mark.slow
def test_model_card_names_every_hash(evaluated):
    root, _ = evaluated
    card = json.loads((root / "eval" / "model_card.json").read_text())
    assert card["hashes"]["features"]["sha256"] == tree_sha256(root / "store")
    assert card["hashes"]["model"]["sha256"] == tree_sha256(root / "model")
    assert card["dataset"]["label_distribution"]["test"]["clips"] == 40
    assert card["environment"]["packages"]["torch"].startswith("2.")
    assert set(card["training"]["seeds"]) == {"3", "4"}
    md = (root / "eval" / "model_card.md").read_text()
    for h in ("features", "model"):
        assert card["hashes"][h]["sha256"] in md
    assert "Not decided yet" in md and "model.name" not in md and "name: misr" in md


def test_tree_hash_tracks_content_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    h = tree_sha256(tmp_path / "a")
    (tmp_path / "a" / ".tmp-junk").write_bytes(b"zzz")
    assert tree_sha256(tmp_path / "a") == h
    (tmp_path / "a" / "x.bin").write_bytes(b"2")
    assert tree_sha256(tmp_path / "a") != h
    assert tree_sha256(tmp_path / "missing") is None


@pytest.mark.slow
def test_a_model_of_another_store_or_another_tool_is_one_clear_error(evaluated, tmp_path):
    """Once an IndexError or 'mat1 and mat2 shapes cannot be multiplied' (a model trained on another store),
    and KeyError: 'params' (a checkpoint another tool wrote)."""
    import shutil

    import torch

    from misr.data.synth import generate
    from misr.errors import MisrError

    root, _ = evaluated
    p = params(*TINY, "data.synth.audio_dim=7")
    generate(p.data.synth, tmp_path / "other")
    with pytest.raises(MisrError, match=r"does not fit the model .*audio frames of 7 features where the model takes 5"):
        evaluate(params(*TINY), tmp_path / "other", root / "model", tmp_path / "eval")
    foreign = tmp_path / "foreign"
    shutil.copytree(root / "model", foreign)
    best = next(foreign.glob("seed-*/best.pt"))
    torch.save({"model": torch.load(best, weights_only=True)["model"]}, best)
    with pytest.raises(MisrError, match="holds model weights but no params or spec: not a best.pt written by `misr train`"):
        evaluate(params(*TINY), root / "store", foreign, tmp_path / "eval2")


@pytest.mark.slow
def test_a_data_set_settings_were_chosen_on_is_scored_on_valid_only_and_test_reads_are_on_the_ledger(evaluated, tmp_path):
    from misr.store import ledger

    root, _ = evaluated
    assert ledger.reads_before(root / "store") == 1  # the fixture's evaluation read test once
    card = json.loads((root / "eval" / "model_card.json").read_text())
    assert card["dataset"]["test_reads_before"] == 0 and "test" in card["metrics"]
    chosen = params(*TINY, "data.datasets.synth.chose_settings=true")
    evaluate(chosen, root / "store", root / "model", tmp_path / "eval")
    assert ledger.reads_before(root / "store") == 1  # not read again
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "test" not in metrics and "valid" in metrics
    assert json.loads((tmp_path / "eval" / "robustness.json").read_text())["test"] == "not scored"  # a DVC out all the same
    text = (tmp_path / "eval" / "model_card.md").read_text()
    assert "Test not scored: settings were chosen on this data set" in text
    evaluate(params(*TINY), root / "store", root / "model", tmp_path / "eval2")
    card = json.loads((tmp_path / "eval2" / "model_card.json").read_text())
    assert card["dataset"]["test_reads_before"] == 1
    assert "Test split read 1 time(s) before this evaluation" in (tmp_path / "eval2" / "model_card.md").read_text()
