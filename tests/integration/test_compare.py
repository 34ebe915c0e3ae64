"""`misr compare` on tiny stores: the report equals what its saved predictions give, test is read once,
trained seeds are reused only while nothing changed, and MMSA's models run (or fail clearly) through the extra."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from misr.compare.comparison import compare
from misr.compare.contenders import contender
from misr.compare.report import summarise, write
from misr.errors import MisrError
from misr.msa.convention import MOSI
from misr.msa.metrics import msa_metrics
from misr.store.store import FeatureStore
from tests.helpers import REPO, TINY_TRAINING, params

HAS_MMSA = importlib.util.find_spec("MMSA") is not None
TINY = [*TINY_TRAINING, "train.epochs=2", "data.synth.scenario=shift", "data.synth.n_clips={train: 48, valid: 16, test: 24}"]


def tiny_store(tmp_path, name="store", seed=1111):
    from misr.data.synth import generate

    p = params(*TINY, f"data.synth.seed={seed}")
    generate(p.data.synth, tmp_path / name)
    return tmp_path / name


def contenders(*names, overrides=()):
    p = params(*TINY, *overrides)
    return [contender(n, p.model, p.train, p.features, MOSI) for n in names]


@pytest.fixture
def count_test_reads(monkeypatch):
    """Every load of a test split, by store."""
    reads = []
    original = FeatureStore.load_split

    def counted(self, split, *args, **kwargs):
        if split == "test":
            reads.append(str(self.root))
        return original(self, split, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "load_split", counted)
    return reads


def test_report_is_what_the_saved_predictions_give_and_test_is_read_once(tmp_path, count_test_reads):
    stores = [tiny_store(tmp_path, "a", 1111), tiny_store(tmp_path, "b", 1112)]
    names = ["misr", "late_fusion", *(["mmsa:LF_DNN"] if HAS_MMSA else [])]
    c = compare(stores, contenders(*names), [1, 2], tmp_path / "cache", reference="late_fusion")
    assert sorted(count_test_reads) == sorted(str(s) for s in stores)  # once per store, for every model and seed
    report = summarise(c, MOSI, "late_fusion", params(*TINY).compare.tuning)
    paths = write(report, c, tmp_path / "out")
    saved = json.loads(paths["json"].read_text())
    preds = pq.read_table(paths["predictions"]).to_pylist()

    def rows(store, model, split, seed):
        picked = [r for r in preds if r["store"] == str(store) and r["model"] == model and r["split"] == split and r["seed"] == seed]
        return np.array([r["prediction"] for r in picked]), np.array([r["label"] for r in picked])

    for split in ("valid", "test"):
        for model in names:
            maes = [msa_metrics(*rows(s, model, split, seed))["MAE"] for s in stores for seed in (1, 2)]
            assert saved[split][model]["MAE"]["mean"] == pytest.approx(np.mean(maes))
            assert saved[split][model]["MAE"]["std"] == pytest.approx(np.std(maes, ddof=1))
    # the paired difference: per clip, each model's error averaged over seeds; then the mean over stores
    per_store = []
    for s in stores:
        err = {m: np.mean([np.abs(np.subtract(*rows(s, m, "test", seed))) for seed in (1, 2)], axis=0) for m in ("misr", "late_fusion")}
        per_store.append((err["misr"] - err["late_fusion"]).mean())
    d = saved["differences"]["misr"]["MAE"]
    assert d["estimate"] == pytest.approx(np.mean(per_store))
    # two stores: the t-interval of the stores' differences (1 degree of freedom), each carrying its seeds and clips
    half = 12.706 * np.std(per_store, ddof=1) / np.sqrt(2)
    assert (d["low"], d["high"]) == pytest.approx((np.mean(per_store) - half, np.mean(per_store) + half), rel=1e-3)
    assert saved["interval"]["over"] == "stores, seeds and clips" and d["reading"].startswith(("resolved", "not resolved"))
    # the store's label_T/A/V decide the subsets, the same clips for every model
    test_rows = [r for r in preds if r["split"] == "test" and r["model"] == "misr" and r["seed"] == 1]
    assert sum(r["conflict"] for r in test_rows) == sum(saved["subsets"]["conflict"]["n"])
    assert saved["subsets"]["conflict"]["n"][0] + saved["subsets"]["agree"]["n"][0] == 24
    assert "Test: each model minus late_fusion" in paths["markdown"].read_text()
    # how each model came about: its tuning as params.yaml's compare.tuning states it, and what each run chose
    assert saved["contenders"]["misr"]["tuning"].startswith("its invariance settings")
    misr_runs = saved["contenders"]["misr"]["runs"]
    assert sorted((Path(r["store"]).name, r["seed"]) for r in misr_runs) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert all(isinstance(r["best_epoch"], int) and r["selected_on"] for r in misr_runs)
    # the groups each MISR run was made invariant across (none where these tiny stores allow none), never late fusion's
    assert {r["environments"] for r in misr_runs} <= {None, "text disagrees", "audio disagrees", "visual disagrees"}
    assert all(r["environments"] is None for r in saved["contenders"]["late_fusion"]["runs"])
    assert "How each model came about" in paths["markdown"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_trained_seeds_are_reused_until_a_setting_changes(tmp_path):
    store = tiny_store(tmp_path)
    first = compare([store], contenders("misr", "late_fusion"), [1], tmp_path / "cache", workers=2, threads=1)
    assert (first.trained, first.reused) == (2, 0)
    again = compare([store], contenders("misr", "late_fusion"), [1], tmp_path / "cache")
    assert (again.trained, again.reused) == (0, 2)
    for split in ("valid", "test"):
        for m in ("misr", "late_fusion"):
            np.testing.assert_allclose(again.stores[0].preds[split][m][1], first.stores[0].preds[split][m][1], rtol=1e-6)
    changed = compare([store], contenders("misr", "late_fusion", overrides=["train.lr=0.001"]), [1], tmp_path / "cache")
    assert (changed.trained, changed.reused) == (2, 0)
    # one layout: runs/<label>/<key>/seed-<s>/ holds the seed whole (a MISR seed once lay in seed-1/seed-1/)
    files = sorted(str(p.relative_to(tmp_path / "cache")) for p in (tmp_path / "cache").rglob("*") if p.is_file())
    seeds = [f for f in files if f.endswith("/best.pt")]
    assert len(seeds) == 4 and all(f.startswith(("runs/misr/", "runs/late_fusion/")) and f.count("seed-") == 1 for f in seeds)
    assert all(f.replace("best.pt", "done.json") in files for f in seeds)
    assert not [f for f in files if "training" in f]


def test_a_copy_of_a_store_reuses_its_seeds_and_a_changed_byte_does_not(tmp_path):
    """The cache's key once held the store's file times: a copy, or a checkout from DVC's cache, trained again."""
    import shutil

    store = tiny_store(tmp_path)
    first = compare([store], contenders("late_fusion"), [1], tmp_path / "cache")
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert compare([copy], contenders("late_fusion"), [1], tmp_path / "cache").reused == 1
    part = next((copy / "audio").glob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one feature file
    part.write_bytes(bytes(data))
    assert FeatureStore(copy).fingerprint() != FeatureStore(store).fingerprint()
    assert first.trained == 1


def test_every_test_read_is_on_the_ledger_and_the_report_says_how_many_came_before(tmp_path):
    store, fresh = tiny_store(tmp_path, "a"), tiny_store(tmp_path, "b", 1112)
    first = compare([store], contenders("late_fusion"), [1], tmp_path / "cache")
    again = compare([store, fresh], contenders("late_fusion"), [1], tmp_path / "cache")
    assert [s.test_reads_before for s in first.stores] == [0]
    assert [s.test_reads_before for s in again.stores] == [1, 0]
    report = summarise(again, MOSI, "late_fusion")
    assert report["test_reads_before"] == {str(store): 1, str(fresh): 0}
    paths = write(report, again, tmp_path / "out")
    assert f"Test reads before this comparison: {store} 1 time(s)" in paths["markdown"].read_text()


def test_a_store_without_test_is_refused_before_training(tmp_path):
    store = tiny_store(tmp_path)
    fs = FeatureStore(store)
    clips = fs.clips().to_pylist()
    fs.write_clips([{**r, "split": "valid" if r["split"] == "test" else r["split"]} for r in clips], replace=True)
    with pytest.raises(MisrError, match="has no test split"):
        compare([store], contenders("misr"), [1], tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_mmsa_models_that_cannot_run_here_say_why():
    with pytest.raises(MisrError, match="768-d BERT"):
        contenders("mmsa:MISA")
    with pytest.raises(MisrError, match="word-aligned"):
        contenders("mmsa:MFN")
    with pytest.raises(MisrError, match="no model 'XYZ'"):
        contenders("mmsa:XYZ")


def test_an_absent_mmsa_extra_is_one_clear_line(tmp_path, monkeypatch):
    store = tiny_store(tmp_path)
    monkeypatch.setitem(sys.modules, "MMSA", None)  # what `import MMSA` meets without the extra
    (tfn,) = contenders("mmsa:TFN")
    with pytest.raises(MisrError, match=r"mmsa extra") as info:
        tfn.check(store)
    assert "pip install" in info.value.hint
    # through the command: exit code 2 and the message, no traceback, before anything trains
    code = "import sys; sys.modules['MMSA'] = None; sys.argv = ['misr'] + sys.argv[1:]; from pipelines.cli.main import main; main()"
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "compare",
            str(store),
            "-M",
            "late_fusion",
            "-M",
            "mmsa:TFN",
            "--cache",
            str(tmp_path / "c"),
            "-o",
            str(tmp_path / "o"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2, res.stderr
    assert "mmsa extra" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.skipif(not HAS_MMSA, reason="the mmsa extra is not installed")
def test_mmsa_tfn_trains_through_mmsa_and_never_sees_test(tmp_path, count_test_reads, monkeypatch):
    import MMSA.data_loader

    store = tiny_store(tmp_path)
    seen = []
    original = MMSA.data_loader.MMDataset.__init__

    def spy(self, args, mode="train"):
        original(self, args, mode)
        seen.append((mode, len(self.labels["M"])))

    monkeypatch.setattr(MMSA.data_loader.MMDataset, "__init__", spy)
    c = compare([store], contenders("mmsa:TFN", "late_fusion"), [1], tmp_path / "cache", reference="late_fusion")
    assert count_test_reads == [str(store)]
    # training saw train (48) and valid (16; its 'test' entry is valid again); the 24 test clips only in prediction
    assert ("train", 48) in seen and ("valid", 16) in seen and ("test", 16) in seen
    assert seen[-1] == ("test", 24)
    pred = c.stores[0].preds["test"]["mmsa:TFN"][1]
    assert pred.shape == (24,) and np.isfinite(pred).all()


@pytest.mark.skipif(not HAS_MMSA, reason="the mmsa extra is not installed")
def test_mmsa_sees_every_split_padded_to_the_stores_one_length(tmp_path):
    """Each split was padded to its own longest clip: MMSA's models (text LSTMs over trailing padding,
    normalisation averaged over it) saw train and test on different scales. MMSA's files pad every split alike."""
    from misr.data.synth import generate

    p = params(*TINY, "data.synth.audio_frames=[4, 80]", "data.synth.n_clips={train: 48, valid: 16, test: 3}")
    generate(p.data.synth, tmp_path / "store")
    fs = FeatureStore(tmp_path / "store")
    (tfn,) = contenders("mmsa:TFN")
    rows = {r["clip_key"]: r for r in fs.clips().to_pylist()}
    data = {s: fs.load_split(s, as_torch=False) for s in ("train", "valid", "test")}
    entries = {s: tfn.entry(fs, d, rows) for s, d in data.items()}
    own = {s: d.audio.values.shape[1] for s, d in data.items()}
    assert len(set(own.values())) > 1  # the splits' own longest clips differ on this store
    for key in ("audio", "vision", "text_bert", "text"):
        axis = 2 if key == "text_bert" else 1
        assert len({e[key].shape[axis] for e in entries.values()}) == 1, key
    assert entries["test"]["audio"].shape[1] == max(own.values()) > own["test"]
    for s, d in data.items():  # what was there is unchanged, and the padding is zeros
        t = d.audio.values.shape[1]
        assert np.array_equal(entries[s]["audio"][:, :t], d.audio.values) and not entries[s]["audio"][:, t:].any()
        assert np.array_equal(entries[s]["audio_lengths"], d.audio.lengths)


def test_the_command_prints_and_writes_the_report(tmp_path):
    store = tiny_store(tmp_path)
    args = [
        "compare",
        str(store),
        "-M",
        "misr",
        "-M",
        "late_fusion",
        "--seeds",
        "1",
        "-o",
        str(tmp_path / "out"),
        "--cache",
        str(tmp_path / "c"),
    ]
    sets = [x for o in TINY for x in ("-S", o)]
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", *args, *sets, "-w", "1"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "reading test" in res.stderr and "minus late_fusion" in res.stdout
    report = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert report["models"] == ["misr", "late_fusion"] and report["seeds"] == [1]
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", *args, "-r", "nope"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "reference 'nope' is not one of models" in res.stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MMSA, reason="the mmsa extra is not installed")
def test_an_extracted_store_gives_mmsa_the_frozen_minilm_states_of_its_tokens(tmp_path):
    """`misr extract`'s default store holds MiniLM token ids only: MMSA's models read MiniLM's frozen states."""
    from transformers import AutoModel

    from misr.data.democorpus import generate as demo_corpus
    from misr.shipped import minilm_dir
    from tests.helpers import extract_here

    p = params("data.dataset=demo", "extract.shard_size=4", "data.demo_corpus.duration=[1.0, 1.4]")
    demo_corpus(p.data.demo_corpus, tmp_path / "raw", n_clips=13)
    extract_here(p, tmp_path / "raw", tmp_path / "store")
    fs = FeatureStore(tmp_path / "store")
    (tfn,) = contenders("mmsa:TFN")
    split = next(iter(fs.splits()))
    data = fs.load_split(split, as_torch=False)
    entry = tfn.entry(fs, data, {r["clip_key"]: r for r in fs.clips().to_pylist()})
    ids, mask = data.text.input_ids, data.text.attention_mask
    assert entry["text"].shape[0] == ids.shape[0] and entry["text"].shape[1] >= ids.shape[1] and entry["text"].shape[2] == 384
    assert (entry["text"][:, : ids.shape[1]][mask == 0] == 0).all() and (entry["text"][:, ids.shape[1] :] == 0).all()
    model = AutoModel.from_pretrained(str(minilm_dir()), local_files_only=True).eval()
    n = int(mask[0].sum())
    with torch.no_grad():
        alone = model(input_ids=torch.as_tensor(ids[:1, :n], dtype=torch.long)).last_hidden_state[0].numpy()
    np.testing.assert_allclose(entry["text"][0, :n], alone, atol=1e-4)


def test_an_output_that_cannot_be_written_is_refused_before_any_training(tmp_path):
    """`-o` naming a file was a traceback, and only after every model was trained; `-w -3` was accepted;
    `--models misr late_fusion` read late_fusion as a store without saying how to give two models."""
    from tests.helpers import assert_clean_error, misr

    store = tiny_store(tmp_path)
    (tmp_path / "a-file").write_text("x")
    sets = [x for o in TINY for x in ("-S", o)]
    base = ["compare", store, "-M", "misr", "--seeds", "1", "--cache", tmp_path / "c", *sets]
    res = misr(*base, "-o", tmp_path / "a-file")
    assert_clean_error(res, "cannot write to", "a-file")
    assert "training" not in res.stderr and not (tmp_path / "c").exists()
    assert_clean_error(misr(*base, "-o", tmp_path / "out", "-w", "-3"), "workers must be 0")
    res = misr("compare", store, "--models", "misr", "late_fusion", "-o", tmp_path / "out", "--cache", tmp_path / "c", *sets)
    assert_clean_error(res, "no feature store at late_fusion", "repeat the option for each model: -M misr -M late_fusion")


@pytest.mark.skipif(not HAS_MMSA, reason="the mmsa extra is not installed")
def test_mmsa_models_can_choose_their_checkpoint_by_this_packages_rule(tmp_path, monkeypatch):
    """MMSA's models chose on their valid loss from the first epoch, with no epoch limit, while this package's chose
    on the worst validation group from the warm-up's end: no comparison could give every contender one rule."""
    from misr.compare.mmsa import RuleWatch
    from misr.data.synth import generate

    sizes = "data.synth.n_clips={train: 60, valid: 40, valid_ood: 10, test: 20}"  # the shortcut: a flipped group in valid
    p = params(*TINY_TRAINING, sizes, "train.select_on=worst_group_mae", "model.invariance.warmup_epochs=2", "train.epochs=4")
    generate(p.data.synth, tmp_path / "store")
    scored = []
    original = RuleWatch.score
    monkeypatch.setattr(RuleWatch, "score", lambda self, preds: scored.append(self.epoch) or original(self, preds))
    tfn = contender("mmsa:TFN", p.model, p.train, p.features, MOSI, mmsa_selection="ours")
    c = compare([tmp_path / "store"], [tfn], [1], tmp_path / "cache")
    chose = c.stores[0].chose["mmsa:TFN"][1]
    assert scored == [0, 1, 2, 3]  # train.epochs, not MMSA's patience, ends it
    assert chose["selected_on"] == "worst_group_mae" and chose["best_epoch"] in (2, 3)  # from the warm-up's end
    assert chose["valid_groups"] == "text, audio, visual disagree"  # model.groups.partition all, as this package's models
    # the rule is part of the reuse key: MMSA's own rule trains again
    own = contender("mmsa:TFN", p.model, p.train, p.features, MOSI)
    assert own.key() != tfn.key()
    assert compare([tmp_path / "store"], [own], [1], tmp_path / "cache").stores[0].chose["mmsa:TFN"][1]["selected_on"].startswith("MMSA")


def test_seeds_trained_on_a_dask_cluster_are_the_seeds_trained_here(tmp_path):
    """A lab runs a comparison's seed jobs on its machines (misr compare --dask ADDRESS); here a local cluster of
    two worker processes: the same predictions as training in this process, and the cache is shared."""
    store = tiny_store(tmp_path)
    here = compare([store], contenders("late_fusion"), [1, 2], tmp_path / "here")
    lines = []
    there = compare([store], contenders("late_fusion"), [1, 2], tmp_path / "there", workers=2, threads=1, say=lines.append, dask="local")
    assert there.trained == 2 and "Dask" not in lines[0]  # a local cluster is counted in processes
    for split in ("valid", "test"):
        for seed in (1, 2):
            np.testing.assert_allclose(
                there.stores[0].preds[split]["late_fusion"][seed], here.stores[0].preds[split]["late_fusion"][seed], rtol=1e-6
            )
    assert compare([store], contenders("late_fusion"), [1, 2], tmp_path / "there").reused == 2
    with pytest.raises(MisrError, match="no Dask scheduler answers at tcp://127.0.0.1:9"):
        compare([store], contenders("late_fusion"), [3], tmp_path / "x", dask="tcp://127.0.0.1:9")
