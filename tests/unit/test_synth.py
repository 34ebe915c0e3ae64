import json

import numpy as np
import pytest

from misr.data.synth import draw_split, generate, label_prior, posterior_median
from misr.errors import MisrError
from misr.store.store import FeatureStore


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, small_synth):
    generate(small_synth, tmp_path / "a")
    generate(small_synth, tmp_path / "b")
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert set(a) == {
        "clips.parquet",
        "oracle.json",
        "text/part-000001-synth.parquet",
        "audio/part-000001-synth.parquet",
        "visual/part-000001-synth.parquet",
    }
    assert a == b
    generate(small_synth.model_copy(update={"seed": 7}), tmp_path / "c")
    c = files_of(tmp_path / "c")
    assert c["audio/part-000001-synth.parquet"] != a["audio/part-000001-synth.parquet"]


def test_store_loads_with_requested_dimensions(tmp_path, small_synth):
    cfg = small_synth.model_copy(update={"audio_dim": 74, "visual_dim": 35})
    generate(cfg, tmp_path / "s")
    fs = FeatureStore(tmp_path / "s")
    assert fs.splits() == {"train": 60, "valid": 20, "test": 20}
    data = fs.load_split("valid")
    assert data.audio.values.shape[2] == 74 and data.visual.values.shape[2] == 35
    assert 4 <= int(data.audio.lengths.min()) and int(data.audio.lengths.max()) <= 12
    assert 5 <= int(data.visual.lengths.min()) and int(data.visual.lengths.max()) <= 9
    assert data.text.vocab_size is not None and int(data.text.input_ids.max()) < data.text.vocab_size
    assert data.text.input_ids[:, 0].unique().tolist() == [1]  # [CLS]


def shape_override(cfg, split, **kw):
    splits = dict(cfg.splits)
    splits[split] = splits[split].model_copy(update=kw)
    return cfg.model_copy(update={"splits": splits})


def test_imbalance_and_shift_show_up_in_labels(small_synth):
    cfg = shape_override(small_synth, "train", positive_ratio=0.85)
    cfg = shape_override(cfg, "test", positive_ratio=0.2)
    rng = np.random.default_rng(0)
    train = draw_split(cfg, "train", 4000, rng).labels
    test = draw_split(cfg, "test", 4000, rng).labels
    nonzero_train = train[train != 0]
    nonzero_test = test[test != 0]
    assert np.mean(nonzero_train > 0) == pytest.approx(0.85, abs=0.03)
    assert np.mean(nonzero_test > 0) == pytest.approx(0.2, abs=0.03)
    skewed = draw_split(shape_override(cfg, "train", magnitude_skew=4.0), "train", 4000, rng).labels
    assert np.mean(np.abs(skewed)) < np.mean(np.abs(train)) - 0.4


def test_conflicts_show_up_as_opposite_modality_labels(small_synth):
    def opposite_share(rate):
        cfg = shape_override(small_synth, "train", conflict_rate=rate)
        s = draw_split(cfg, "train", 4000, np.random.default_rng(1))
        strong = np.abs(s.labels) >= 1.5  # far enough from 0 that noise alone rarely flips the sign
        flipped = (np.sign(s.expressed[strong]) == -np.sign(s.labels[strong, None])).any(axis=1)
        return flipped.mean(), (s.conflict >= 0).mean()

    low, low_rate = opposite_share(0.0)
    high, high_rate = opposite_share(0.4)
    assert low_rate == 0.0 and high_rate == pytest.approx(0.4, abs=0.03)
    assert low < 0.1 and high > low + 0.3


def test_written_labels_reflect_conflicts_and_splits(tmp_path, small_synth):
    cfg = shape_override(small_synth, "test", conflict_rate=1.0)
    generate(cfg, tmp_path / "s")
    clips = FeatureStore(tmp_path / "s").clips().to_pylist()
    test = [c for c in clips if c["split"] == "test" and abs(c["label"]) >= 2]
    opposite = [c for c in test if any(np.sign(c[k]) == -np.sign(c["label"]) for k in ("label_T", "label_A", "label_V"))]
    assert len(opposite) >= 0.8 * len(test)
    oracle = json.loads((tmp_path / "s" / "oracle.json").read_text())
    assert oracle["label_stats"]["test"]["conflict"] == 1.0


def test_features_carry_each_modalitys_sentiment(tmp_path, small_synth):
    """A linear probe on mean-pooled frames recovers the modality's expressed sentiment."""
    cfg = small_synth.model_copy(update={"n_clips": {"train": 400, "valid": 20, "test": 20}})
    generate(cfg, tmp_path / "s")
    data = FeatureStore(tmp_path / "s").load_split("train", as_torch=False)
    for modality, col in (("audio", "audio"), ("visual", "visual")):
        seq = getattr(data, modality)
        pooled = seq.values.sum(1) / seq.lengths[:, None]
        x = np.hstack([pooled, pooled**2, np.ones((len(pooled), 1))])
        y = data.unimodal_labels[col]
        coef, *_ = np.linalg.lstsq(x[:300], y[:300], rcond=None)
        r = np.corrcoef(x[300:] @ coef, y[300:])[0, 1]
        assert r > 0.6, (modality, r)


def test_text_words_follow_text_sentiment(tmp_path, small_synth):
    from misr.data.lexicon import GRADED

    generate(small_synth.model_copy(update={"n_clips": {"train": 300, "valid": 20, "test": 20}}), tmp_path / "s")
    clips = FeatureStore(tmp_path / "s").clips().to_pylist()
    scores, labels = [], []
    for c in clips:
        words = c["text"].split()
        grades = [(-1 if i > 0 and words[i - 1] == "not" else 1) * GRADED[w] for i, w in enumerate(words) if w in GRADED]
        if grades:
            scores.append(np.mean(grades))
            labels.append(c["label_T"])
    assert np.corrcoef(scores, labels)[0, 1] > 0.8


def test_label_prior_matches_the_sampler(small_synth):
    cfg = shape_override(small_synth, "train", positive_ratio=0.7, magnitude_skew=2.0)
    support, prob = label_prior(cfg, "train")
    assert prob.sum() == pytest.approx(1.0)
    labels = draw_split(cfg, "train", 40000, np.random.default_rng(2)).labels
    values, counts = np.unique(np.round(labels, 6), return_counts=True)
    empirical = dict(zip(values, counts / counts.sum(), strict=True))
    for s, p in zip(np.round(support, 6), prob, strict=True):
        assert empirical.get(s, 0.0) == pytest.approx(p, abs=0.006)


def test_oracle_beats_naive_fusion_and_train_mean(small_synth):
    cfg = shape_override(small_synth, "test", conflict_rate=0.3)
    s = draw_split(cfg, "test", 5000, np.random.default_rng(3))
    bayes = posterior_median(cfg, "test", s.expressed)
    naive = np.clip(s.expressed.mean(axis=1), -3, 3)
    mae_bayes = np.mean(np.abs(bayes - s.labels))
    assert mae_bayes < np.mean(np.abs(naive - s.labels)) - 0.02
    assert mae_bayes < np.mean(np.abs(np.median(s.labels) - s.labels)) - 0.5


def test_refuses_to_overwrite_without_force(tmp_path, small_synth):
    generate(small_synth, tmp_path / "s")
    with pytest.raises(MisrError, match="already holds a feature store"):
        generate(small_synth, tmp_path / "s")
    generate(small_synth.model_copy(update={"seed": 9}), tmp_path / "s", force=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(MisrError, match="is not empty and is not a feature store"):
        generate(small_synth, tmp_path / "other", force=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- the shortcut scenario

SHORTCUT = ["data.synth.scenario=shortcut", "data.synth.n_clips={train: 60, valid: 20, valid_ood: 30, test: 40}"]


def shortcut_cfg(*extra):
    from tests.helpers import params

    return params(*SHORTCUT, *extra).data.synth


def agreement(sample, modality):
    nonzero = sample.labels != 0
    return float((np.sign(sample.expressed[nonzero, modality]) == np.sign(sample.labels[nonzero])).mean())


def test_the_shortcut_cue_flips_in_a_subgroup_that_grows_from_train_to_test_and_nothing_else_shifts():
    from misr.data.synth import draw_shortcut_split

    cfg = shortcut_cfg()
    rng = np.random.default_rng(0)
    train, test = (draw_shortcut_split(cfg, s, 40000, rng) for s in ("train", "test"))
    assert agreement(train, 2) == pytest.approx(0.9, abs=0.01)  # visual: right in 90% of training clips
    assert agreement(test, 2) == pytest.approx(0.4, abs=0.01)  # ... and wrong in 60% of test clips
    for m in (0, 1):  # text and audio agree as often in both
        assert agreement(train, m) == pytest.approx(agreement(test, m), abs=0.01)
    assert np.mean(train.labels) == pytest.approx(np.mean(test.labels), abs=0.03)  # one label prior
    assert (train.conflict[train.conflict >= 0] == 2).all()


def test_the_erm_ceiling_falls_short_of_the_test_aware_one_only_where_the_subgroup_grew():
    from misr.data.synth import ceilings, draw_shortcut_split, posterior_median

    cfg = shortcut_cfg()
    rng = np.random.default_rng(1)
    valid, test = draw_shortcut_split(cfg, "valid", 20000, rng), draw_shortcut_split(cfg, "test", 20000, rng)
    on_valid, on_test = ceilings(cfg, "valid", valid), ceilings(cfg, "test", test)
    assert on_valid["MAE"]["bayes"] == on_valid["MAE"]["erm"]  # valid is drawn like train
    assert on_test["MAE"]["erm"] > on_test["MAE"]["bayes"] + 0.02
    assert on_test["Non0_acc_2"]["erm"] < on_test["Non0_acc_2"]["bayes"] - 0.03
    # the ceiling is a minimum: a predictor that ignores the cue (the test-aware one knows it flips) is no better
    text_audio = np.clip(test.expressed[:, :2].mean(axis=1), -3, 3)
    assert np.mean(np.abs(text_audio - test.labels)) > on_test["MAE"]["bayes"]
    assert on_test["MAE"]["bayes"] == pytest.approx(np.mean(np.abs(posterior_median(cfg, "test", test.expressed) - test.labels)))


def test_a_shortcut_store_holds_valid_ood_drawn_like_test_and_ceilings_per_metric(tmp_path):
    cfg = shortcut_cfg()
    oracle = generate(cfg, tmp_path / "s")
    assert FeatureStore(tmp_path / "s").splits() == {"train": 60, "valid": 20, "valid_ood": 30, "test": 40}
    assert FeatureStore(tmp_path / "s").load_split("valid_ood").labels.shape == (30,)
    assert set(oracle["ceilings"]) == {"valid", "valid_ood", "test"}
    assert oracle["ceilings"]["test"]["MAE"]["predictor"].startswith("posterior median")
    assert oracle["scenario"] == "shortcut" and json.loads((tmp_path / "s" / "oracle.json").read_text())["ceilings"]


def test_scenario_shortcut_without_a_valid_ood_split_is_a_clear_error():
    from misr.errors import ConfigError
    from tests.helpers import params

    with pytest.raises(ConfigError, match="n_clips.valid_ood must be given"):
        params("data.synth.scenario=shortcut", "data.synth.n_clips={train: 60, valid: 20, test: 20}")
    with pytest.raises(ConfigError, match="data.synth.shortcut: flipped.valid must be given"):
        params(*SHORTCUT, "data.synth.shortcut.flipped={train: 0.1}")


def test_the_reversed_cue_store_differs_from_the_original_only_in_the_cue_modality(tmp_path):
    cfg = shortcut_cfg()
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b", cue="reversed")
    a, b = FeatureStore(tmp_path / "a"), FeatureStore(tmp_path / "b")
    for split in ("train", "test"):
        x, y = a.load_split(split), b.load_split(split)
        assert np.array_equal(x.labels.numpy(), y.labels.numpy())
        assert np.array_equal(x.text.input_ids.numpy(), y.text.input_ids.numpy())
        assert np.array_equal(x.audio.values.numpy(), y.audio.values.numpy())
        assert not np.allclose(x.visual.values.numpy(), y.visual.values.numpy())
        assert np.array_equal(x.unimodal_labels["visual"].numpy(), -y.unimodal_labels["visual"].numpy())


def test_a_muted_cue_leaves_the_modality_without_sentiment(tmp_path):
    cfg = shortcut_cfg()
    generate(cfg, tmp_path / "m", cue="muted")
    data = FeatureStore(tmp_path / "m").load_split("train")
    assert np.all(data.unimodal_labels["visual"].numpy() == 0) and np.any(data.unimodal_labels["text"].numpy() != 0)


def test_changing_the_cue_needs_the_shortcut_scenario(tmp_path, small_synth):
    with pytest.raises(MisrError, match="cue=reversed needs data.synth.scenario shortcut"):
        generate(small_synth, tmp_path / "s", cue="reversed")
    with pytest.raises(MisrError, match="cue must be kept, reversed or muted"):
        generate(shortcut_cfg(), tmp_path / "t", cue="flipped")
