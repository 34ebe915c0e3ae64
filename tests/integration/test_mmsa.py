"""MMSA feature files: import, export, the round trip, and refusing a pickle that would run code."""

import importlib.util
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from misr.data.mmsa import export_file, import_file, load
from misr.errors import MisrError
from misr.store.store import FeatureStore
from tests.helpers import REPO


def mosi_like(n=6, seed=0, sims=False):
    """A small file in exactly MMSA's layout, with MOSI's shapes (unaligned_50: audio 375x5, vision 500x20)."""
    rng = np.random.default_rng(seed)
    data = {}
    for k, split in enumerate(("train", "valid", "test")):
        ids = [f"vid{k}{i // 2}$_${i % 2}" for i in range(n)]
        tb = np.zeros((n, 3, 50), dtype=np.float32)
        for i in range(n):
            m = 5 + i
            tb[i, 0, :m] = rng.integers(100, 30000, m)
            tb[i, 1, :m] = 1
        audio = rng.standard_normal((n, 375, 5)).astype(np.float32)
        audio[0, 3, 2] = -np.inf  # MOSEI has these
        entry = {
            "id": ids,
            "raw_text": [f"clip {i}" for i in range(n)],
            "text_bert": tb,
            "text": rng.standard_normal((n, 50, 768)).astype(np.float32),
            "audio": audio,
            "vision": rng.standard_normal((n, 500, 20)).astype(np.float32),
            "audio_lengths": rng.integers(10, 375, n),
            "vision_lengths": rng.integers(10, 500, n),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "annotations": ["Positive"] * n,
        }
        if sims:
            for c in "TAV":
                entry[f"regression_labels_{c}"] = rng.uniform(-1, 1, n).astype(np.float32)
        data[split] = entry
    return data


def write(path, data):
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return path


def test_import_keeps_splits_ids_lengths_and_labels(tmp_path):
    data = mosi_like()
    report = import_file(write(tmp_path / "unaligned_50.pkl", data), tmp_path / "store")
    assert report["clips"] == {"train": 6, "valid": 6, "test": 6}
    assert report["non_finite"] == {"audio": {"nan": 0, "+inf": 0, "-inf": 3}}  # one per split
    fs = FeatureStore(tmp_path / "store")
    for split in ("train", "valid", "test"):
        d = fs.load_split(split, as_torch=False)
        src = data[split]
        order = [src["id"].index(k) for k in d.clip_keys]
        assert sorted(d.clip_keys) == sorted(src["id"])
        assert np.array_equal(d.audio.lengths, src["audio_lengths"][order])
        assert np.array_equal(d.visual.lengths, src["vision_lengths"][order])
        assert np.allclose(d.labels, src["regression_labels"][order])
        j = order[1]
        n = int(src["vision_lengths"][j])
        assert np.array_equal(d.visual.values[1, :n], src["vision"][j, :n])
        assert d.text.input_ids[1, : 5 + j].tolist() == src["text_bert"][j, 0, : 5 + j].astype(int).tolist()
        assert d.text.hidden.values.shape[2] == 768
    train = fs.load_split("train", as_torch=False)
    k = train.clip_keys.index("vid00$_$0")
    assert train.audio.values[k, 3, 2] == 0.0  # -inf replaced as MMSA does


def test_export_then_import_gives_back_the_same_store(tmp_path):
    import_file(write(tmp_path / "a.pkl", mosi_like(sims=True)), tmp_path / "s1")
    export_file(tmp_path / "s1", tmp_path / "b.pkl")
    exported = load(tmp_path / "b.pkl")
    assert exported["train"]["text_bert"].shape[1] == 3 and "regression_labels_T" in exported["train"]
    import_file(tmp_path / "b.pkl", tmp_path / "s2")
    a, b = FeatureStore(tmp_path / "s1"), FeatureStore(tmp_path / "s2")
    for split in ("train", "valid", "test"):
        x, y = a.load_split(split, as_torch=False), b.load_split(split, as_torch=False)
        assert x.clip_keys == y.clip_keys
        for m in ("audio", "visual"):
            assert np.array_equal(getattr(x, m).values, getattr(y, m).values)
            assert np.array_equal(getattr(x, m).lengths, getattr(y, m).lengths)
        assert np.array_equal(x.text.input_ids, y.text.input_ids) and np.array_equal(x.text.hidden.values, y.text.hidden.values)
        assert np.array_equal(x.labels, y.labels)
        for m in ("text", "audio", "visual"):
            assert np.array_equal(x.unimodal_labels[m], y.unimodal_labels[m])


class Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    target = tmp_path / "pwned"
    data = mosi_like()
    data["train"]["annotations"] = [Exploit(target)]
    path = write(tmp_path / "evil.pkl", data)
    with pytest.raises(MisrError, match=r"refused to load .*evil.pkl: it asks for (posix|os)\.system"):
        load(path)
    assert not target.exists()
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "import-mmsa", str(path), "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 2 and "refused to load" in res.stderr and "Traceback" not in res.stderr
    assert not target.exists() and not (tmp_path / "s").exists()


def test_not_an_mmsa_file(tmp_path):
    with pytest.raises(MisrError, match="not an MMSA feature file"):
        load(write(tmp_path / "x.pkl", [1, 2, 3]))
    (tmp_path / "y.pkl").write_bytes(b"not a pickle")
    with pytest.raises(MisrError, match="not a readable pickle"):
        load(tmp_path / "y.pkl")


@pytest.mark.slow
def test_an_imported_store_trains(tmp_path):
    from misr.training.setup import resolve_input_spec
    from tests.helpers import TINY_TRAINING, params, train

    import_file(write(tmp_path / "a.pkl", mosi_like(n=8)), tmp_path / "store")
    p = params(*TINY_TRAINING, "train.epochs=1", "train.seeds=[1]", "data.dataset=mosi")
    spec = resolve_input_spec(p.model, tmp_path / "store")
    assert (spec.text_kind, spec.text_hidden_dim, spec.audio_dim, spec.visual_dim) == ("hidden", 768, 5, 20)
    summary = train(p, tmp_path / "store", tmp_path / "model")
    assert summary["seeds"]["1"]["epochs_run"] == 1


def test_import_counts_every_non_finite_value_per_modality_and_kind(tmp_path):
    data = mosi_like()
    data["valid"]["vision"][2, 7, 1] = np.nan
    data["test"]["vision"][0, 0, :3] = np.inf
    data["test"]["text"][1, 4, 9] = -np.inf
    report = import_file(write(tmp_path / "a.pkl", data), tmp_path / "store")
    assert report["non_finite"] == {
        "audio": {"nan": 0, "+inf": 0, "-inf": 3},
        "vision": {"nan": 1, "+inf": 3, "-inf": 0},
        "text": {"nan": 0, "+inf": 0, "-inf": 1},
    }
    d = FeatureStore(tmp_path / "store").load_split("test", as_torch=False)
    assert np.isfinite(d.visual.values).all() and np.isfinite(d.text.hidden.values).all()


def test_import_refuses_values_the_store_cannot_take_and_names_each(tmp_path):
    data = mosi_like()
    data["train"]["regression_labels"][1] = np.nan
    data["train"]["regression_labels"][2] = 99.0
    data["valid"]["text_bert"][3, 0, 0] = 1e8
    data["valid"]["text_bert"][4, 0, 1] = -5
    data["test"]["audio_lengths"][0] = 9999
    data["test"]["id"][5] = data["train"]["id"][0]  # the same clip in two splits
    with pytest.raises(MisrError) as info:
        import_file(write(tmp_path / "a.pkl", data), tmp_path / "store")
    text = str(info.value)
    assert "holds 6 value(s) the store cannot take" in text
    assert "train[1] 'vid00$_$1': regression_labels nan is not a finite number in [-3, 3]" in text
    assert "train[2] 'vid01$_$0': regression_labels 99 is not a finite number in [-3, 3]" in text
    assert "valid[3] 'vid11$_$1': text_bert token id 1e+08 is outside the vocabulary [0, 30522)" in text
    assert "valid[4] 'vid12$_$0': text_bert token id -5 is outside the vocabulary [0, 30522)" in text
    assert "test[0] 'vid20$_$0': audio_lengths 9999 is not a whole number of frames in [0, 375]" in text
    assert "clip key 'vid00$_$0' appears 2 times (in train, test)" in text
    assert not (tmp_path / "store").exists()


def test_import_checks_labels_against_the_convention_and_array_lengths(tmp_path):
    from misr.msa.convention import SIMS

    with pytest.raises(MisrError, match=r"regression_labels -?\d\.\d+ is not a finite number in \[-1, 1\]"):
        import_file(write(tmp_path / "a.pkl", mosi_like()), tmp_path / "s1", convention=SIMS)  # MOSI labels reach 3
    short = mosi_like()
    short["train"]["regression_labels"] = short["train"]["regression_labels"][:4]
    with pytest.raises(MisrError, match=r"train: regression_labels has 4 entries for 6 ids"):
        import_file(write(tmp_path / "b.pkl", short), tmp_path / "s2")


def learnable_file(sizes=(64, 24, 32), lengths=(20, 30, 25), seed=5):
    """A small file in MMSA's own form: every split padded to one length per modality, longer than any clip's
    (as MMSA's 50-token files are), zeros past each clip's length (as GloVe-style text and MMSA's audio and
    vision are), labels a function of the features."""
    rng = np.random.default_rng(seed)
    text_len, audio_len, vision_len = lengths
    data = {}
    for k, (split, n) in enumerate(zip(("train", "valid", "test"), sizes, strict=True)):
        n_tok, n_audio, n_vision = (rng.integers(3, top - 5, n) for top in lengths)  # every clip shorter than the file's length
        tb = np.zeros((n, 3, text_len), np.float32)
        text = np.zeros((n, text_len, 16), np.float32)
        audio = np.zeros((n, audio_len, 5), np.float32)
        vision = np.zeros((n, vision_len, 7), np.float32)
        for i in range(n):
            tb[i, 0, : n_tok[i]] = rng.integers(100, 2000, n_tok[i])
            tb[i, 1, : n_tok[i]] = 1
            text[i, : n_tok[i]] = rng.standard_normal((n_tok[i], 16))
            audio[i, : n_audio[i]] = rng.standard_normal((n_audio[i], 5))
            vision[i, : n_vision[i]] = rng.standard_normal((n_vision[i], 7))
        signal = text[:, :, 0].sum(1) / np.sqrt(n_tok) + audio[:, :, 1].sum(1) / np.sqrt(n_audio)
        data[split] = {
            "id": np.array([f"v{k}{i:03d}$_$0" for i in range(n)], dtype=object),
            "raw_text": np.array(["a clip"] * n, dtype=object),
            "text_bert": tb,
            "text": text,
            "audio": audio,
            "vision": vision,
            "audio_lengths": n_audio,
            "vision_lengths": n_vision,
            "regression_labels": np.clip(np.round(1.5 * np.tanh(signal), 1), -3, 3).astype(np.float32),
            "annotations": np.array(["Neutral"] * n, dtype=object),
        }
    return data


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("MMSA") is None, reason="the mmsa extra is not installed")
def test_mmsa_through_misr_compare_is_mmsa_run_on_the_same_file(tmp_path):
    """`misr compare -M mmsa:TFN` on a store imported from an MMSA file once gave TFN a test MAE 0.13 from MMSA's
    own `MMSA_run` on that file: each split reached MMSA padded to the store's longest clip, not to the file's
    length. Now the store remembers the file's lengths; both ways train the same model, clip for clip."""
    import torch
    from MMSA.config import get_config_regression
    from MMSA.data_loader import MMDataLoader
    from MMSA.models import AMIO
    from MMSA.trains import ATIO
    from MMSA.utils import setup_seed

    from misr.compare.comparison import compare
    from misr.compare.contenders import contender
    from misr.msa.convention import MOSI
    from tests.helpers import params

    path = write(tmp_path / "file.pkl", learnable_file())
    # MMSA's way, as MMSA_run runs one seed (its _run, with the test predictions kept)
    args = get_config_regression("tfn", "mosi", "")
    args.update(model_save_path=tmp_path / "tfn.pth", device=torch.device("cpu"), train_mode="regression")
    args.update(custom_feature=str(path), feature_T="", feature_A="", feature_V="", cur_seed=1)
    setup_seed(1111)
    loaders = MMDataLoader(args, 0)
    model = AMIO(args).to(args["device"])
    trainer = ATIO().getTrain(args)
    trainer.do_train(model, loaders)
    model.load_state_dict(torch.load(args["model_save_path"], weights_only=True))
    theirs = trainer.do_test(model, loaders["test"], mode="TEST", return_sample_results=True)
    by_id = dict(zip(theirs["Ids"], np.asarray(theirs["SResults"], dtype=np.float64).reshape(-1), strict=True))
    # ours: the file imported, then misr compare with MMSA's TFN
    import_file(path, tmp_path / "store")
    p = params("train.threads=1")
    c = compare([tmp_path / "store"], [contender("mmsa:TFN", p.model, p.train, p.features, MOSI)], [1111], tmp_path / "cache")
    s = c.stores[0]
    ours = s.preds["test"]["mmsa:TFN"][1111]
    assert sorted(s.clip_keys["test"]) == sorted(by_id)
    np.testing.assert_allclose(ours, [by_id[k] for k in s.clip_keys["test"]], rtol=0, atol=1e-4)
    assert MOSI.metrics(ours, s.labels["test"])["MAE"] == pytest.approx(theirs["MAE"], abs=1e-4)
