import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from misr.errors import StoreError
from misr.store import ExtractorInfo, clip_key
from misr.store import write as store_write
from misr.store.store import FeatureStore

AUDIO = ExtractorInfo("test-audio", "1.2", {"sr": 16000}, ["f0", "rms", "mfcc_1"])
VISUAL = ExtractorInfo("test-visual", "0.1", {"every": 5}, ["AU12_r", "AU04_r"])
TEXT = ExtractorInfo("test-text", "1", {"tokenizer": "toy", "vocab_size": 50}, [])


def make_clips(n, split="train", prefix="v"):
    return [
        {
            "clip_key": clip_key(f"{prefix}{i // 3}", str(i % 3)),
            "video_id": f"{prefix}{i // 3}",
            "clip_id": str(i % 3),
            "split": split,
            "text": f"words {i}",
            "label": float(i) / 2 - 1,
            "label_A": float(i) / 4,
        }
        for i in range(n)
    ]


def seq_records(clips, dim, rng, lengths=None, src="abc"):
    out = []
    for j, c in enumerate(clips):
        t = lengths[j] if lengths is not None else int(rng.integers(1, 9))
        out.append(
            {
                "clip_key": c["clip_key"],
                "source_sha256": src,
                "frames": rng.standard_normal((t, dim)).astype(np.float32),
                "frame_rate": 25.0,
            }
        )
    return out


def text_records(clips, rng, hidden_dim=None):
    out = []
    for c in clips:
        n = int(rng.integers(3, 7))
        rec = {"clip_key": c["clip_key"], "source_sha256": "t", "input_ids": rng.integers(1, 50, n), "attention_mask": np.ones(n)}
        if hidden_dim:
            rec["hidden"] = rng.standard_normal((n, hidden_dim)).astype(np.float32)
        out.append(rec)
    return out


@pytest.fixture
def filled(tmp_path):
    rng = np.random.default_rng(0)
    fs = FeatureStore(tmp_path / "store")
    clips = make_clips(7) + make_clips(4, "valid", prefix="w")
    fs.write_clips(clips)
    audio = seq_records(clips, 3, rng)
    visual = seq_records(clips, 2, rng)
    text = text_records(clips, rng, hidden_dim=4)
    # two parts per modality, written in a different order than clips.parquet
    for modality, recs, info in (("audio", audio, AUDIO), ("visual", visual, VISUAL), ("text", text, TEXT)):
        fs.write_modality(modality, recs[5:], info, name="b")
        fs.write_modality(modality, recs[:5], info, name="a")
    return fs, clips, {"audio": audio, "visual": visual, "text": text}


def test_round_trip_values_dtypes_lengths_and_order(filled):
    fs, clips, recs = filled
    data = fs.load_split("train")
    train = [c for c in clips if c["split"] == "train"]
    assert data.clip_keys == [c["clip_key"] for c in train]
    assert data.labels.dtype == torch.float32
    assert torch.allclose(data.labels, torch.tensor([c["label"] for c in train]))
    assert torch.allclose(data.unimodal_labels["audio"], torch.tensor([c["label_A"] for c in train]))
    assert torch.isnan(data.unimodal_labels["text"]).all()  # never given
    for modality in ("audio", "visual"):
        seq = getattr(data, modality)
        assert seq.values.dtype == torch.float32 and seq.lengths.dtype == torch.int64
        for i, rec in enumerate(recs[modality][:7]):
            t = rec["frames"].shape[0]
            assert seq.lengths[i] == t
            assert np.array_equal(seq.values[i, :t].numpy(), rec["frames"])
            assert (seq.values[i, t:] == 0).all()
    assert data.audio.feature_names == ["f0", "rms", "mfcc_1"]
    for i, rec in enumerate(recs["text"][:7]):
        n = len(rec["input_ids"])
        assert data.text.input_ids.dtype == torch.int64
        assert data.text.input_ids[i, :n].tolist() == list(rec["input_ids"])
        assert data.text.attention_mask[i].tolist() == [1] * n + [0] * (data.text.input_ids.shape[1] - n)
        assert np.array_equal(data.text.hidden.values[i, :n].numpy(), rec["hidden"])
    assert data.text.vocab_size == 50 and data.text.tokenizer == "toy"


def test_metadata_names_extractor_version_config_and_features(filled):
    fs, _, _ = filled
    metas = fs.metadata("visual")
    assert len(metas) == 2
    m = metas[0]
    assert (m["extractor"], m["extractor_version"], m["dim"]) == ("test-visual", "0.1", 2)
    assert m["config_hash"] == VISUAL.config_hash and m["config"] == {"every": 5}
    assert m["feature_names"] == ["AU12_r", "AU04_r"]
    schema = pq.read_schema(metas[0]["path"])
    frames = schema.field("frames").type
    assert pa.types.is_list(frames) and pa.types.is_fixed_size_list(frames.value_type)
    assert frames.value_type.list_size == 2 and frames.value_type.value_type == pa.float32()


def test_config_hash_changes_with_config_and_version():
    assert AUDIO.config_hash != ExtractorInfo("test-audio", "1.2", {"sr": 22050}, []).config_hash
    assert AUDIO.config_hash != ExtractorInfo("test-audio", "1.3", {"sr": 16000}, []).config_hash
    assert AUDIO.config_hash == ExtractorInfo("test-audio", "1.2", {"sr": 16000}, ["other names"]).config_hash


def test_present_lists_source_and_config_hash_and_latest_part_wins(filled):
    fs, clips, _ = filled
    present = fs.present("audio")
    assert set(present) == {c["clip_key"] for c in clips}
    assert present[clips[0]["clip_key"]] == ("abc", AUDIO.config_hash)
    newer = ExtractorInfo("test-audio", "1.3", {"sr": 16000}, ["f0", "rms", "mfcc_1"])
    frames = np.full((2, 3), 7.0, np.float32)
    fs.write_modality("audio", [{"clip_key": clips[0]["clip_key"], "source_sha256": "new", "frames": frames}], newer)
    assert fs.present("audio")[clips[0]["clip_key"]] == ("new", newer.config_hash)
    data = fs.load_split("train", modalities=["audio"])
    assert data.audio.lengths[0] == 2 and (data.audio.values[0, :2] == 7).all()


def test_prune_removes_only_fully_superseded_parts(filled):
    fs, clips, recs = filled
    rng = np.random.default_rng(1)
    # rewrite every clip of part "b" (clips 5..10): that part becomes dead
    fs.write_modality("audio", seq_records(clips[5:], 3, rng), AUDIO, name="c")
    removed = fs.prune("audio")
    assert [p.name for p in removed] == ["part-000001-b.parquet"]
    assert len(fs.load_split("valid", modalities=["audio"])) == 4


def test_max_frames_truncates(filled):
    fs, _, recs = filled
    data = fs.load_split("train", max_frames={"audio": 2})
    assert data.audio.values.shape[1] <= 2
    assert int(data.audio.lengths.max()) <= 2
    assert np.array_equal(data.audio.values[0, :2].numpy(), recs["audio"][0]["frames"][:2])


def test_quarantined_clips_are_left_out(filled):
    fs, clips, _ = filled
    bad = clips[1]["clip_key"]
    fs.write_errors([{"clip_key": bad, "stage": "visual", "error": "NoFace", "message": "no face in any frame"}])
    data = fs.load_split("train")
    assert bad not in data.clip_keys and data.quarantined == [bad] and len(data) == 6
    fs.clear_errors([bad])
    assert len(fs.load_split("train")) == 7


def test_errors_table_upserts_by_clip_and_stage(tmp_path):
    fs = FeatureStore(tmp_path)
    fs.write_errors([{"clip_key": "a", "stage": "audio", "error": "E1", "message": "m"}])
    fs.write_errors(
        [{"clip_key": "a", "stage": "audio", "error": "E2", "message": "m"}, {"clip_key": "a", "stage": "visual", "error": "E3"}]
    )
    rows = sorted((r["stage"], r["error"]) for r in fs.errors().to_pylist())
    assert rows == [("audio", "E2"), ("visual", "E3")]


# ------------------------------------------------------------------------------------- errors


def test_missing_modality_is_named(tmp_path):
    fs = FeatureStore(tmp_path)
    clips = make_clips(3)
    fs.write_clips(clips)
    fs.write_modality("audio", seq_records(clips, 3, np.random.default_rng(0)), AUDIO)
    with pytest.raises(StoreError, match=r"has no visual features \(no part files in .*visual\)"):
        fs.load_split("train", modalities=["audio", "visual"])


def test_clip_missing_from_one_modality_names_clips_and_files(tmp_path):
    fs = FeatureStore(tmp_path)
    rng = np.random.default_rng(0)
    clips = make_clips(4)
    fs.write_clips(clips)
    fs.write_modality("audio", seq_records(clips[:3], 3, rng), AUDIO, name="shard0")
    fs.write_modality("visual", seq_records(clips, 2, rng), VISUAL, name="shard0")
    with pytest.raises(StoreError) as info:
        fs.load_split("train", modalities=["audio", "visual"])
    msg = str(info.value)
    assert "1 clip(s) of split 'train' are missing from audio" in msg
    assert clips[3]["clip_key"] in msg and "present in visual (part-000001-shard0.parquet)" in msg


def test_dimension_mismatch_between_files_names_both(tmp_path):
    fs = FeatureStore(tmp_path)
    rng = np.random.default_rng(0)
    clips = make_clips(4)
    fs.write_clips(clips)
    wide = ExtractorInfo("test-audio", "2", {}, ["a", "b", "c", "d"])
    fs.write_modality("audio", seq_records(clips[:2], 3, rng), AUDIO, name="old")
    fs.write_modality("audio", seq_records(clips[2:], 4, rng), wide, name="new")
    with pytest.raises(StoreError, match=r"disagree on the feature dimension \(part-000001-old.parquet: 3, part-000002-new.parquet: 4\)"):
        fs.load_split("train", modalities=["audio"])


def test_corrupt_file_is_named(filled):
    fs, _, _ = filled
    victim = fs.part_files("visual")[0][1]
    victim.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError, match=f"{victim.name} is not a readable Parquet file"):
        fs.load_split("train")
    with pytest.raises(StoreError, match="delete it and re-run"):
        fs.present("visual")


def test_not_a_store_and_empty_split(tmp_path):
    with pytest.raises(StoreError, match="no feature store at"):
        FeatureStore(tmp_path / "nope").load_split("train")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreError, match="has no clips.parquet"):
        FeatureStore(tmp_path / "folder").load_split("train")
    fs = FeatureStore(tmp_path / "s")
    fs.write_clips(make_clips(2))
    with pytest.raises(StoreError, match=r"split 'test' has no clips .* \(splits present: train\)"):
        fs.load_split("test")


def test_bad_writes_are_refused(tmp_path):
    fs = FeatureStore(tmp_path)
    with pytest.raises(StoreError, match="NaN or inf"):
        fs.write_modality("audio", [{"clip_key": "a", "frames": np.array([[np.nan, 1, 2]])}], AUDIO)
    with pytest.raises(StoreError, match="have 2 features, others have 3"):
        fs.write_modality("audio", [{"clip_key": "a", "frames": np.ones((2, 3))}, {"clip_key": "b", "frames": np.ones((2, 2))}], AUDIO)
    with pytest.raises(StoreError, match="names 3 features but writes 2"):
        fs.write_modality("audio", [{"clip_key": "a", "frames": np.ones((2, 2))}], AUDIO)
    with pytest.raises(StoreError, match="unknown modality 'smell'"):
        fs.write_modality("smell", [{"clip_key": "a", "frames": np.ones((2, 2))}], AUDIO)
    with pytest.raises(StoreError, match="split must be one of train, valid, test, valid_ood"):
        fs.write_clips([{"clip_key": "a", "split": "dev", "label": 0.0}])
    assert not any(p.name.endswith(".parquet") for p in tmp_path.rglob("*"))


# ------------------------------------------------------------------------------------- atomicity


def test_write_interrupted_midway_leaves_nothing_visible(tmp_path, monkeypatch):
    fs = FeatureStore(tmp_path)
    clips = make_clips(3)
    real = pq.write_table

    def dies_halfway(table, where, **kw):
        real(table, where, **kw)
        with open(where, "r+b") as fh:  # a torn file, as a crash mid-write would leave
            fh.truncate(os.path.getsize(where) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", dies_halfway)  # every writer of the store goes through it
    with pytest.raises(KeyboardInterrupt):
        fs.write_modality("audio", seq_records(clips, 3, np.random.default_rng(0)), AUDIO)
    with pytest.raises(KeyboardInterrupt):
        fs.write_clips(clips)
    assert fs.part_files("audio") == []
    assert not fs.clips_path.exists()
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_killed_writer_never_leaves_a_partial_visible_file(tmp_path):
    """kill -9 a process that keeps writing large parts: every visible file must be complete."""
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from misr.store import ExtractorInfo
        from misr.store.store import FeatureStore
        fs = FeatureStore({str(tmp_path)!r})
        info = ExtractorInfo("big", "1", {{}}, [])
        rng = np.random.default_rng(0)
        recs = [{{"clip_key": f"c{{i}}", "frames": rng.standard_normal((400, 64)).astype("float32")}} for i in range(200)]
        print("ready", flush=True)
        while True:
            fs.write_modality("audio", recs, info)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.time() + 30
    fs = FeatureStore(tmp_path)
    while len(fs.part_files("audio")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.13)  # land somewhere inside a write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts = fs.part_files("audio")
    assert len(parts) >= 2
    for _, path in parts:
        assert pq.read_table(path).num_rows == 200
    # a leftover temporary file may exist, but is never listed or read
    assert all(not p.name.startswith(".tmp-") for _, p in parts)
    assert len(fs.present("audio")) == 200


def test_concurrent_writers_get_distinct_parts(tmp_path):
    fs = FeatureStore(tmp_path)
    rng = np.random.default_rng(0)
    clips = make_clips(40)
    batches = [seq_records(clips[i::8], 3, rng) for i in range(8)]
    threads = [threading.Thread(target=fs.write_modality, args=("audio", b, AUDIO)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fs.part_files("audio")) == 8
    assert len(fs.present("audio")) == 40


def test_stale_temporary_files_are_cleaned(tmp_path):
    fs = FeatureStore(tmp_path)
    (tmp_path / "audio").mkdir()
    old = tmp_path / "audio" / ".tmp-dead.parquet"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "audio" / ".tmp-live.parquet"
    fresh.write_bytes(b"x")
    assert fs.remove_stale_tmp() == [old]
    assert fresh.exists()


def test_chunked_and_sliced_arrow_columns_are_read_correctly(tmp_path):
    """Files written by other tools may hold several row groups; offsets must still line up."""
    fs = FeatureStore(tmp_path)
    clips = make_clips(30)
    fs.write_clips(clips)
    rng = np.random.default_rng(3)
    recs = seq_records(clips, 3, rng)
    table = store_write.modality_table("audio", recs, AUDIO)
    (tmp_path / "audio").mkdir()
    pq.write_table(table, tmp_path / "audio" / "part-000001.parquet", row_group_size=7)
    data = fs.load_split("train", modalities=["audio"])
    for i, rec in enumerate(recs):
        assert np.array_equal(data.audio.values[i, : len(rec["frames"])].numpy(), rec["frames"])


def test_describe_counts_quarantined_clips_not_rows_and_leaves_them_out_of_the_splits(filled):
    fs, clips, _ = filled
    before = fs.describe()["splits"]
    bad = clips[1]["clip_key"]  # a train clip that failed two stages, and a corpus row never in clips.parquet
    fs.write_errors([
        {"clip_key": bad, "stage": "visual", "error": "CorruptVideo", "message": "m"},
        {"clip_key": bad, "stage": "audio", "error": "CorruptVideo", "message": "m"},
        {"clip_key": "v9$_$0", "stage": "corpus", "error": "BadLabel", "message": "m"},
    ])  # fmt: skip
    info = fs.describe()
    assert info["quarantined"] == 2 and info["quarantine_rows"] == 3
    assert info["splits"] == {**before, "train": before["train"] - 1}


def test_settled_parts_depend_on_their_contents_not_on_the_order_they_were_written(tmp_path):
    """Concurrent shards finished in any order and numbered their parts so: the same features, other files."""
    rng = np.random.default_rng(0)
    clips = make_clips(6)
    first, second, again = seq_records(clips[:3], 3, rng), seq_records(clips[3:], 3, rng), seq_records(clips[1:2], 3, rng)
    folders = {}
    for order in ("ab", "ba"):
        fs = FeatureStore(tmp_path / order)
        writes = {"a": (first, "shard-a"), "b": (second, "shard-b")}
        for name in order:
            fs.write_modality("audio", writes[name][0], AUDIO, name=writes[name][1])
        fs.write_modality("audio", again, AUDIO, name="shard-c")  # clip 1 re-extracted: it wins over its first copy
        fs.settle("audio")
        folders[order] = {p.name: p.read_bytes() for _, p in fs.part_files("audio")}
    assert folders["ab"] == folders["ba"]
    assert sorted(folders["ab"]) == ["part-000001-shard-a.parquet", "part-000002-shard-b.parquet", "part-000003-shard-c.parquet"]
    fs = FeatureStore(tmp_path / "ab")
    keys = [pq.read_table(p, columns=["clip_key"]).column("clip_key").to_pylist() for _, p in fs.part_files("audio")]
    assert keys == [[clips[0]["clip_key"], clips[2]["clip_key"]], [c["clip_key"] for c in clips[3:]], [clips[1]["clip_key"]]]
    assert set(fs.present("audio")) == {c["clip_key"] for c in clips}
