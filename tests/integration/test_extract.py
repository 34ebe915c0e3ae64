"""Extraction from real video files: the demo corpus, GRID clips, bad input, the cache, resume, Dask."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from misr.data.corpus import read_corpus
from misr.features.person import view_for
from misr.msa.convention import MOSI, SIMS
from misr.stages.extract import plan, summary_rows
from misr.store.store import FeatureStore
from tests.helpers import extract_flow, make_video
from tests.helpers import params as base_params

REPO = Path(__file__).resolve().parents[2]
GRID = REPO.parent / "shared" / "data" / "grid"
FIELDS = ["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"]


def params(*extra):
    return base_params("data.dataset=demo", "extract.shard_size=4", "data.demo_corpus.duration=[1.0, 1.4]", *extra)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small demo corpus, generated once (13 clips, 1 to 1.4 s each)."""
    from misr.data.democorpus import generate

    root = tmp_path_factory.mktemp("demo") / "raw"
    generate(params().data.demo_corpus, root, n_clips=13)
    return root


def copy_corpus(corpus, dest):
    shutil.copytree(corpus, dest)
    return dest


def rows_of(raw):
    return list(csv.DictReader((raw / "label.csv").open(encoding="utf-8")))


def write_rows(raw, rows, raw_bytes=None):
    with (raw / "label.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    if raw_bytes:
        with (raw / "label.csv").open("ab") as fh:
            fh.write(raw_bytes)


def api_url():
    """The session's test server: a `misr extract` subprocess uses it instead of starting its own."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def run_flow(p, raw, store):
    return extract_flow(p, raw, store)


# ---------------------------------------------------------------------------------- the demo corpus


@pytest.mark.slow
def test_demo_corpus_is_deterministic_and_in_the_mmsa_layout(corpus, tmp_path):
    from misr.data.democorpus import generate

    rows = rows_of(corpus)
    assert len(rows) == 13 and set(rows[0]) == set(FIELDS)
    assert {r["mode"] for r in rows} == {"train", "valid", "test"}
    for r in rows:
        assert (corpus / "Raw" / r["video_id"] / f"{r['clip_id']}.mp4").stat().st_size > 10_000
    again = tmp_path / "again"
    generate(params().data.demo_corpus, again, n_clips=13)
    assert (again / "label.csv").read_bytes() == (corpus / "label.csv").read_bytes()
    first = rows[0]
    rel = Path("Raw") / first["video_id"] / f"{first['clip_id']}.mp4"
    assert (again / rel).read_bytes() == (corpus / rel).read_bytes()


@pytest.mark.slow
def test_demo_corpus_streams_are_h264_and_aac(corpus):
    import av

    first = rows_of(corpus)[0]
    with av.open(str(corpus / "Raw" / first["video_id"] / f"{first['clip_id']}.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"


@pytest.mark.slow
def test_face_and_voice_follow_the_sentiment():
    """The animation and the synthetic voice move the extracted features in the labelled direction."""
    from misr.data.democorpus import build_rig, render_frames, synthesize_speech
    from misr.features.audio import LibrosaExtractor
    from misr.features.visual import AU_TABLE, action_units, normalise, track_landmarks

    rig = build_rig(224)
    au12 = [name for name, *_ in AU_TABLE].index("AU12_r")
    extractor = LibrosaExtractor(params().features)
    f0_col = extractor.feature_names().index("f0_hz")
    au, f0 = {}, {}
    for s in (-3.0, 0.0, 3.0):
        frames = render_frames(rig, s, np.zeros(20), np.random.default_rng(0))
        gray = [f.mean(axis=2).astype(np.uint8) for f in frames]
        lm, found = track_landmarks(gray, 5)
        assert found.all()
        au[s] = action_units(normalise(lm))[:, au12].mean()
        audio, _ = synthesize_speech(s, 1.5, 16000, np.random.default_rng(0))
        feats = extractor.features(audio)
        f0[s] = feats[feats[:, f0_col] > 0, f0_col].mean()
    assert au[-3.0] < au[0.0] < au[3.0]
    assert f0[-3.0] < f0[0.0] < f0[3.0]


@pytest.mark.slow
def test_demo_corpus_extracts_into_a_loadable_store(corpus, tmp_path, prefect_harness):
    store = tmp_path / "store"
    summary = run_flow(params(), corpus, store)
    assert summary["complete"] == 13 and summary["quarantined"] == 0
    fs = FeatureStore(store)
    data = fs.load_split("train")
    assert data.text.tokenizer == "minilm" and data.text.vocab_size == 30522
    assert data.visual.feature_names[0] == "face" and "AU12_r" in data.visual.feature_names and "AU45_r" in data.visual.feature_names
    face = data.visual.values[..., 0].sum() / data.visual.lengths.sum()
    assert face >= 0.99
    assert "f0_hz" in data.audio.feature_names and "rms_db" in data.audio.feature_names
    meta = fs.metadata("visual")[0]
    assert meta["extractor"] == "landmarks" and meta["dim"] == 153
    # what the person baselines are built from: every clip's AU quantiles, one face descriptor per video
    faces = fs.latest_values("visual", ["au_quantiles", "face_descriptor"])
    clips = fs.clips().to_pylist()
    first = {c["video_id"]: min(d["clip_id"] for d in clips if d["video_id"] == c["video_id"]) for c in clips}
    assert all(len(faces[c["clip_key"]]["au_quantiles"]) == 19 * 13 for c in clips)
    described = {c["clip_key"] for c in clips if faces[c["clip_key"]]["face_descriptor"] is not None}
    assert described == {c["clip_key"] for c in clips if c["clip_id"] == first[c["video_id"]]} and len(described) >= 2
    view = view_for(fs, "relative")
    assert view.persons == 1 and set(view.baseline) == {c["clip_key"] for c in clips}  # the demo's videos show one face
    # the cache: nothing to do on a second run; one new clip is the only work on a third
    assert run_flow(params(), corpus, store)["extracted"] == 0
    raw = copy_corpus(corpus, tmp_path / "raw2")
    rows = rows_of(raw)
    src = raw / "Raw" / rows[0]["video_id"] / f"{rows[0]['clip_id']}.mp4"
    shutil.copy(src, raw / "Raw" / rows[0]["video_id"] / "new.mp4")
    rows.append({**rows[0], "clip_id": "new"})
    write_rows(raw, rows)
    again = run_flow(params(), raw, store)
    assert again["extracted"] == 1 and again["complete"] == 14
    # a changed transcript re-tokenises that clip's text only
    rows[1]["text"] = "a completely different transcript"
    write_rows(raw, rows)
    p = plan(params().features, MOSI, raw, store)
    assert p.todo == {f"{rows[1]['video_id']}$_${rows[1]['clip_id']}": ["text"]}


@pytest.mark.slow
def test_two_extractions_of_one_corpus_are_the_same_bytes(corpus, tmp_path, prefect_harness):
    """Part files were numbered in the order concurrent shards finished: three extractions of one corpus gave
    three DVC hashes, and everything downstream re-ran. Two runs with two workers, file for file, byte for byte."""
    stores = [tmp_path / "a", tmp_path / "b"]
    for store in stores:
        run_flow(params("extract.max_workers=2"), corpus, store)
    files = [{str(f.relative_to(s)): f.read_bytes() for f in sorted(s.rglob("*")) if f.is_file()} for s in stores]
    assert sorted(files[0]) == sorted(files[1]) and len(files[0]) > 5
    assert [name for name in files[0] if files[0][name] != files[1][name]] == []
    # numbered 1..n by content; a re-extracted clip leaves every clip in one part
    fs = FeatureStore(stores[0])
    for m in ("text", "audio", "visual"):
        parts = fs.part_files(m)
        assert [seq for seq, _ in parts] == list(range(1, len(parts) + 1))


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.slow
def test_every_bad_input_is_quarantined_missing_modalities_are_kept_absent_and_good_clips_still_extracted(
    corpus, tmp_path, prefect_harness
):
    raw = copy_corpus(corpus, tmp_path / "raw")
    rows = rows_of(raw)
    good = rows[:4]
    template = dict(rows[0])
    vid = template["video_id"]
    videos = raw / "Raw" / vid
    bad = []

    def add(clip_id, **changes):
        bad.append({**template, "clip_id": clip_id, **changes})

    (videos / "corrupt.mp4").write_bytes(os.urandom(5000))
    add("corrupt")
    (videos / "empty.mp4").write_bytes(b"")
    add("empty")
    make_video(videos / "silent.mp4", with_audio=False)
    add("silent")
    make_video(videos / "faceless.mp4", with_face=False)
    add("faceless")
    add("missing")
    make_video(videos / "emptytext.mp4")
    add("emptytext", text="   ")
    make_video(videos / "nothing.mp4", with_audio=False, with_face=False)
    add("nothing", text="")
    from tests.integration.test_audio_tracks import tone, write_audio

    write_audio(videos / "audioonly.mkv", [tone(1.0, 150)])  # kept with the visual modality absent, as a silent clip is
    add("audioonly")
    add("notanumber", label="very positive")
    add("outofrange", label="4.5")
    add("badsplit", mode="dev")
    add("../escape")
    add("/etc/passwd")
    outside = tmp_path / "outside.mp4"
    shutil.copy(videos / f"{template['clip_id']}.mp4", outside)
    os.symlink(outside, videos / "linkout.mp4")
    add("linkout")
    dup = {**rows[5]}
    write_rows(raw, good + bad + [rows[5], dup])
    # a non-UTF-8 transcript, appended as raw bytes
    with (raw / "label.csv").open("ab") as fh:
        fh.write(f"{vid},latin1,caf\xe9 tr\xe8s bien,1.0,,,,,train\n".encode("latin-1"))
    make_video(videos / "latin1.mp4")

    summary = run_flow(params(), raw, tmp_path / "store")
    errors: dict[str, set[tuple[str, str]]] = {}
    for r in FeatureStore(tmp_path / "store").errors().to_pylist():
        errors.setdefault(r["clip_key"].split("$_$")[1], set()).add((r["stage"], r["error"]))
    # every row of the quarantine, exactly: a broken file fails both extractors that read it
    expected = {
        "corrupt": {("visual", "CorruptVideo"), ("audio", "CorruptVideo")},
        "empty": {("visual", "EmptyFile"), ("audio", "EmptyFile")},
        "nothing": {("extract", "NoModality")},  # no transcript, no audio track, no face: nothing to learn from
        "missing": {("corpus", "MissingFile")},
        "notanumber": {("corpus", "BadLabel")},
        "outofrange": {("corpus", "LabelOutOfRange")},
        "badsplit": {("corpus", "BadSplit")},
        "../escape": {("corpus", "UnsafePath")},
        "/etc/passwd": {("corpus", "UnsafePath")},
        "linkout": {("corpus", "UnsafePath")},
        rows[5]["clip_id"]: {("corpus", "DuplicateClip")},
        "latin1": {("corpus", "BadTranscript")},
    }
    assert errors == expected, summary
    fs = FeatureStore(tmp_path / "store")
    messages = fs.errors().to_pylist()
    assert all(m["message"] for m in messages)
    # a clip without an audio track, without a face or with an empty transcript is kept, that modality marked absent
    absent = {m: {k.split("$_$")[1]: why for k, why in fs.absent(m).items()} for m in ("text", "audio", "visual")}
    assert set(absent["audio"]) == {"silent", "nothing"} and absent["audio"]["silent"].startswith("NoAudioTrack: ")
    assert set(absent["visual"]) == {"faceless", "nothing", "audioonly"} and absent["visual"]["faceless"].startswith("NoFace: ")
    assert absent["visual"]["audioonly"].startswith("NoVideoTrack: ")
    assert set(absent["text"]) == {"emptytext", "nothing"} and absent["text"]["emptytext"].startswith("EmptyTranscript: ")
    assert summary["absent"] == {"text": 1, "audio": 1, "visual": 2} and summary["complete"] == 8
    assert ("kept without audio (marked absent)", 1) in summary_rows(summary)
    splits = {s: fs.load_split(s) for s in {r["mode"] for r in good}}
    assert sum(len(d) for d in splits.values()) == 8  # every good clip, and the four with a modality absent
    flags = {k.split("$_$")[1]: {m: bool(d.absent[m][i]) for m in d.absent} for d in splits.values() for i, k in enumerate(d.clip_keys)}
    assert flags["silent"] == {"text": False, "audio": True, "visual": False}
    assert flags["emptytext"] == {"text": True, "audio": False, "visual": False}
    assert flags["audioonly"] == {"text": False, "audio": False, "visual": True}
    assert fs.describe()["absent"] == {"text": 1, "audio": 1, "visual": 2}


@pytest.mark.slow
def test_strict_mode_exits_non_zero_and_missing_label_csv_is_one_clear_line(corpus, tmp_path, prefect_harness):
    raw = copy_corpus(corpus, tmp_path / "raw")
    rows = rows_of(raw)
    write_rows(raw, rows[:2] + [{**rows[0], "clip_id": "ghost"}])
    env = {**os.environ, "PREFECT_API_URL": api_url(), "NO_COLOR": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "extract",
        str(raw),
        "--out",
        str(tmp_path / "s"),
        "--params",
        str(REPO / "params.yaml"),
        "-S",
        "data.dataset=demo",
    ]
    res = subprocess.run(cmd + ["--strict"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1, res.stderr
    assert "quarantine corpus:MissingFile: 1" in res.stdout
    res = subprocess.run(cmd[:4] + [str(tmp_path / "nothing")] + cmd[5:], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "no raw corpus at" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_finished_shards(corpus, tmp_path, prefect_harness):
    store = tmp_path / "store"
    env = {**os.environ, "PREFECT_API_URL": api_url()}
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "extract",
        str(corpus),
        "--out",
        str(store),
        "--params",
        str(REPO / "params.yaml"),
        "-S",
        "data.dataset=demo",
        "-S",
        "extract.shard_size=2",
        "-S",
        "extract.max_workers=1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    fs = FeatureStore(store)
    while time.time() < deadline and len(fs.part_files("visual")) < 2:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name for _, p in fs.part_files("visual")}
    assert 2 <= len(finished) < 7
    for _, path in fs.part_files("visual"):  # what is visible is whole
        import pyarrow.parquet as pq

        assert pq.read_table(path).num_rows >= 1
    p = plan(params().features, MOSI, corpus, store)
    done_before = 13 - len(p.todo)
    assert done_before >= 4
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{13 - done_before} clip(s) extracted" in res.stdout
    assert finished <= {p.name for _, p in fs.part_files("visual")}  # the finished shards were kept, not redone
    assert len(plan(params().features, MOSI, corpus, store).todo) == 0


@pytest.mark.slow
def test_dask_runner_on_a_local_cluster(corpus, tmp_path, prefect_harness):
    p = params("extract.runner=dask", "extract.max_workers=2")
    summary = run_flow(p, corpus, tmp_path / "store")
    assert summary["complete"] == 13 and summary["shards"] == 4


def test_the_dask_runner_without_its_extra_is_a_clear_error(monkeypatch):
    from misr.errors import MisrError
    from pipelines.extract import task_runner

    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # as if `pip install misr` had left the extra out
    with pytest.raises(MisrError, match=r"needs prefect-dask, which is not installed") as err:
        task_runner(params("extract.runner=dask").extract)
    assert "pip install 'misr[dask]'" in str(err.value)


# ---------------------------------------------------------------------------------- GRID


@pytest.mark.slow
@pytest.mark.skipif(not GRID.exists(), reason="../shared/data/grid is not here")
def test_grid_clips(tmp_path):
    from misr.data.corpus import Clip
    from misr.features.audio import LibrosaExtractor
    from misr.features.person import persons
    from misr.features.visual import LandmarkExtractor

    p = params()
    visual, audio = LandmarkExtractor(p.features), LibrosaExtractor(p.features)
    descriptors = {}
    for path in sorted(GRID.glob("*.mpg")):
        clip = Clip("grid$_$" + path.stem, "grid", path.stem, path, "bin blue", "test", 0.0, first_in_video=True)
        v = visual.extract(clip)
        assert v["frames"].shape[0] == 75 and v["face_ratio"] == 1.0
        descriptors[path.stem] = [v["face_descriptor"]]
        a = audio.extract(clip)
        assert abs(a["frames"].shape[0] / a["frame_rate"] - 3.0) <= 0.08  # frames span the clip's 3 s
        if path.stem == "swwp2s":
            rms = a["frames"][:, audio.feature_names().index("rms_db")]
            times = np.arange(len(rms)) / a["frame_rate"]
            spans = [line.split() for line in (GRID / "swwp2s.align").read_text().split("\n") if line.strip()]
            inside, outside = [], []
            for start, end, word in spans:
                mask = (times >= int(start) / 25000) & (times < int(end) / 25000)
                (outside if word == "sil" else inside).append(rms[mask])
            assert np.mean(np.concatenate(inside)) > np.mean(np.concatenate(outside)) + 10  # dB
    assert len(set(persons(descriptors).values())) == 6  # six speakers, six persons


def test_corpus_reader_unit_cases(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Raw" / "v1").mkdir(parents=True)
    (raw / "Raw" / "v1" / "a.mkv").write_bytes(b"x")
    (raw / "Raw" / "v1" / "b.avi").write_bytes(b"x")
    write_rows(
        raw,
        [
            {"video_id": "v1", "clip_id": "a", "text": "good", "label": "0.5", "mode": "train"},
            {"video_id": "v1", "clip_id": "b", "text": "bad", "label": "-3", "label_A": "nan", "mode": "test"},
        ],
    )
    clips, problems = read_corpus(raw)
    assert [c.path.suffix for c in clips] == [".mkv"]  # found by id, whatever the container
    assert problems[0]["error"] == "LabelOutOfRange" and "label_A nan" in problems[0]["message"]
    clips, problems = read_corpus(raw, SIMS)
    assert [c.clip_id for c in clips] == ["a"]  # 0.5 is inside SIMS's [-1, 1]
    assert [p["message"] for p in problems] == ["label.csv line 3: label -3 is outside [-1, 1]"]


def test_registry_names_every_backend_and_pyfeat_absence_is_a_clear_error():
    from misr.errors import MisrError
    from misr.features.registry import REGISTRY, extractor_class, extractors_for

    assert set(REGISTRY) == {"bert_tokenizer", "librosa", "landmarks", "pyfeat"}
    assert {m: type(e).__name__ for m, e in extractors_for(params().features).items()} == {
        "text": "BertTokenizerExtractor",
        "audio": "LibrosaExtractor",
        "visual": "LandmarkExtractor",
    }
    with pytest.raises(MisrError, match="unknown feature extractor 'openface'"):
        extractor_class("openface")
    try:
        import feat  # noqa: F401
    except ImportError:
        with pytest.raises(MisrError, match="py-feat is not installed"):
            extractors_for(params("features.visual.backend=pyfeat").features)


def test_extensions_match_whatever_their_case_and_only_regular_files_are_read(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Raw" / "v1").mkdir(parents=True)
    (raw / "Raw" / "v1" / "upper.MP4").write_bytes(b"x")
    (raw / "Raw" / "v1" / "mixed.Mov").write_bytes(b"x")
    os.mkfifo(raw / "Raw" / "v1" / "pipe.mp4")  # opening it for reading would block for ever
    (raw / "Raw" / "v1" / "folder.mp4").mkdir()
    rows = [{"video_id": "v1", "clip_id": c, "text": "good", "label": "0.5", "mode": "train"} for c in ("upper", "mixed", "pipe", "folder")]
    write_rows(raw, rows)
    clips, problems = read_corpus(raw)
    assert sorted(c.path.name for c in clips) == ["mixed.Mov", "upper.MP4"]
    assert sorted((p["clip_key"], p["error"]) for p in problems) == [("v1$_$folder", "NotARegularFile"), ("v1$_$pipe", "NotARegularFile")]
    from misr.data.media import ClipError, read_video
    from misr.errors import MisrError
    from misr.predict import videos_in

    with pytest.raises(ClipError, match="not a regular file"):
        read_video(raw / "Raw" / "v1" / "pipe.mp4")
    with pytest.raises(MisrError, match="not a regular file"):
        videos_in(raw / "Raw" / "v1" / "pipe.mp4")
    assert [p.name for p in videos_in(raw / "Raw" / "v1")] == ["mixed.Mov", "upper.MP4"]


def test_ids_holding_the_key_separator_are_set_aside_with_their_own_reason(tmp_path):
    raw = tmp_path / "raw"
    for vid, cid in (("a", "b$_$c"), ("a$_$b", "c"), ("a", "d")):
        (raw / "Raw" / vid).mkdir(parents=True, exist_ok=True)
        (raw / "Raw" / vid / f"{cid}.mp4").write_bytes(b"x")
    rows = [
        {"video_id": v, "clip_id": c, "text": "good", "label": "1", "mode": "train"}
        for v, c in (("a", "b$_$c"), ("a$_$b", "c"), ("a", "d"))
    ]
    write_rows(raw, rows)
    clips, problems = read_corpus(raw)
    assert [c.key for c in clips] == ["a$_$d"]
    assert [p["error"] for p in problems] == ["SeparatorInId", "SeparatorInId"]  # not two DuplicateClip
    assert "'b$_$c' contains '$_$'" in problems[0]["message"] and "'a$_$b'" in problems[1]["message"]


def truncated_faststart(src, dest, keep=0.4):
    """The clip remuxed with its index at the start (movflags=faststart), then cut short: the header
    still declares the whole duration, and decoding just ends early, without an error."""
    import av

    whole = dest.with_name("whole-" + dest.name)
    with av.open(str(src)) as inp, av.open(str(whole), "w", format="mp4", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = whole.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])
    whole.unlink()


@pytest.mark.slow
def test_a_partial_decode_is_a_warning_and_the_stored_duration_is_the_decoded_one(tmp_path):
    from tests.helpers import extract_here

    raw = tmp_path / "raw"
    (raw / "Raw" / "v").mkdir(parents=True)
    make_video(tmp_path / "full.mp4", seconds=3.0)
    truncated_faststart(tmp_path / "full.mp4", raw / "Raw" / "v" / "cut.mp4")
    make_video(raw / "Raw" / "v" / "whole.mp4", seconds=3.0)
    rows = [{"video_id": "v", "clip_id": c, "text": "a good film", "label": "1", "mode": "train"} for c in ("cut", "whole")]
    write_rows(raw, rows)
    summary = extract_here(params(), raw, tmp_path / "store")
    assert summary["partial"] == 1 and summary["quarantined"] == 0
    clips = {r["clip_key"]: r for r in FeatureStore(tmp_path / "store").clips().to_pylist()}
    cut, whole = clips["v$_$cut"], clips["v$_$whole"]
    assert cut["warnings"].startswith("partial decode: ") and "of the 3.00 s its stream declares" in cut["warnings"]
    assert cut["duration"] < 1.5  # the decoded seconds, not the header's 3.0
    assert whole["warnings"] is None and whole["duration"] == pytest.approx(3.0, abs=0.1)


def test_long_audio_in_blocks_gives_the_frames_of_one_pass(monkeypatch):
    """Blocks bound memory on long recordings; every frame must still see exactly its own samples."""
    import misr.features.audio as audio
    from misr.data.democorpus import synthesize_speech

    extractor = audio.LibrosaExtractor(params().features)
    parts = [synthesize_speech(s, 2.0, 16000, np.random.default_rng(i))[0] for i, s in enumerate((-2.0, 0.5, 2.5, -1.0))]
    signal = np.concatenate([*parts, np.zeros(8000, np.float32)]).astype(np.float32)  # a pause at the end: f0 0 there
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 1000.0)
    whole = extractor.features(signal)
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 0.7)  # 12 blocks, edges everywhere
    blocked = extractor.features(signal)
    assert blocked.shape == whole.shape == (1 + signal.size // extractor.hop, len(extractor.feature_names()))
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-4)
    assert (whole[:, extractor.feature_names().index("f0_hz")] > 0).mean() > 0.3  # voiced speech was seen


def test_a_store_follows_its_corpus_and_another_corpus_is_refused(corpus, tmp_path):
    from misr.errors import MisrError
    from misr.stages.extract import run

    store = tmp_path / "store"
    features, execution = params().features, params().extract
    first = run(features, execution, MOSI, corpus, store)
    assert first["complete"] == 13 and first["dropped"] == 0
    held = FeatureStore(store).clips().column("clip_key").to_pylist()

    # another corpus (the same videos under other ids) into the same store: refused before anything is written
    other = copy_corpus(corpus, tmp_path / "other")
    rows = rows_of(other)
    for vid in {r["video_id"] for r in rows}:
        (other / "Raw" / vid).rename(other / "Raw" / f"other_{vid}")
    write_rows(other, [{**r, "video_id": f"other_{r['video_id']}"} for r in rows])
    with pytest.raises(MisrError, match=r"holds the features of another corpus: none of its 13 clips is in .*other/label.csv"):
        run(features, execution, MOSI, other, store)
    assert FeatureStore(store).clips().column("clip_key").to_pylist() == held

    # clips removed from the store's own corpus leave clips.parquet, and the summary says how many
    mine = copy_corpus(corpus, tmp_path / "mine")
    write_rows(mine, rows_of(mine)[2:])
    again = run(features, execution, MOSI, mine, store)
    assert again["dropped"] == 2 and again["extracted"] == 0
    assert ("left the corpus (removed from clips.parquet)", 2) in summary_rows(again)
    assert FeatureStore(store).clips().num_rows == 11


def test_a_second_extraction_into_a_store_being_written_is_refused(corpus, tmp_path):
    from misr.stages.extract import run
    from misr.util.lock import Busy

    store = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time\nfrom misr.store.store import FeatureStore\nwith FeatureStore({str(store)!r}).lock():\n"
         "    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=r"another writer of .*store \(misr extract, synth or import-mmsa\) holds"):
            run(params().features, params().extract, MOSI, corpus, store)
        assert not FeatureStore(store).exists()  # refused before any work
    finally:
        holder.kill()
        holder.wait()


def test_a_small_corpus_is_cut_into_a_shard_per_worker(corpus, tmp_path):
    """13 clips and shards of up to 16 used to be one shard: one core busy, the other idle."""

    def sizes(**kw):
        return [len(s) for s in plan(params().features, MOSI, corpus, tmp_path / "store", **kw).shards]

    assert sizes(shard_size=16, workers=2) == [7, 6]
    assert sizes(shard_size=16, workers=1) == [13]
    assert sizes(shard_size=4, workers=2) == [4, 4, 4, 1]
    assert len(sizes(shard_size=16, workers=32)) == 13


@pytest.mark.slow
def test_a_corpus_with_clips_missing_a_modality_trains_and_the_fusion_ignores_what_is_absent(corpus, tmp_path):
    import torch

    from misr.model.misr import MISR
    from misr.training.batches import Batches
    from misr.training.setup import resolve_input_spec
    from tests.helpers import TINY_TRAINING, extract_here, train

    raw = copy_corpus(corpus, tmp_path / "raw")
    rows = rows_of(raw)
    silent, faceless, untold = rows[:3]
    make_video(raw / "Raw" / silent["video_id"] / f"{silent['clip_id']}.mp4", with_audio=False, seconds=1.2)
    make_video(raw / "Raw" / faceless["video_id"] / f"{faceless['clip_id']}.mp4", with_face=False, seconds=1.2)
    untold["text"] = ""
    write_rows(raw, rows)
    p = params(*TINY_TRAINING, "train.seeds=[7]", "train.epochs=2")
    store = tmp_path / "store"
    summary = extract_here(p, raw, store)
    assert summary["quarantined"] == 0 and summary["absent"] == {"text": 1, "audio": 1, "visual": 1}

    result = train(p, store, tmp_path / "model")
    assert np.isfinite(result["seeds"]["7"]["best_valid_mae"])

    model = MISR(p.model, resolve_input_spec(p.model, store)).eval()
    for row, lacks in ((silent, "audio"), (faceless, "visual"), (untold, "text")):
        data = FeatureStore(store).load_split(row["mode"])
        batch = Batches(data, torch.device("cpu")).get(torch.arange(len(data)))
        i = data.clip_keys.index(f"{row['video_id']}$_${row['clip_id']}")
        assert [bool(batch.get(f"{m}_present", torch.ones(len(data), dtype=torch.bool))[i]) for m in ("text", "audio", "visual")] == [
            m != lacks for m in ("text", "audio", "visual")
        ]
        with torch.no_grad():
            weights = model(batch)["fusion_weights"][:, i]  # [modality, latent]: text, audio, visual
        assert [float(w.abs().max()) == 0.0 for w in weights] == [m == lacks for m in ("text", "audio", "visual")]
