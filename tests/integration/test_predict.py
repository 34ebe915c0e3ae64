"""`misr predict` on a demo clip and a GRID clip, and with a modality missing."""

import os
import subprocess
import sys

import numpy as np
import pytest

from misr.config.params import load_params
from misr.errors import MisrError
from misr.msa.convention import MOSI
from misr.predict import load_models, predict_video
from tests.helpers import FACES, GRID, REPO, TINY_TRAINING, extract_here, make_video, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A demo corpus, extracted without Prefect, and two tiny models: without and with modality dropout."""
    from misr.data.democorpus import generate

    root = tmp_path_factory.mktemp("predict")
    base = [*TINY_TRAINING, "data.dataset=demo", "data.demo_corpus.duration=[1.0, 1.3]", "train.epochs=2", "train.seeds=[1, 2]"]
    params = load_params(REPO / "params.yaml", base)
    generate(params.data.demo_corpus, root / "raw", n_clips=13)
    extract_here(params, root / "raw", root / "store")
    train(params, root / "store", root / "plain")
    train(load_params(REPO / "params.yaml", [*base, "train.modality_dropout=0.5"]), root / "store", root / "dropout")
    first = (root / "raw" / "label.csv").read_text().splitlines()[1].split(",")
    return root, root / "raw" / "Raw" / first[0] / f"{first[1]}.mp4", first[2]


def models(root, name):
    return load_models(str(root / name), REPO, "misr-sentiment", "prod")[0]


@pytest.mark.slow
def test_predicts_a_demo_clip_with_every_seed(trained):
    root, video, text = trained
    ms = models(root, "plain")
    assert len(ms) == 2
    p = predict_video(ms, video, text)
    assert np.isfinite(p.score) and -3 <= p.klass <= 3 and p.klass == int(np.round(np.clip(p.score, -3, 3)))
    assert p.class_name == MOSI.class_names[p.klass]
    assert p.label2 == ("positive" if p.score >= 0 else "negative") and p.missing == {}
    # the score and spread are the mean and std of the seeds' own scores (two seeds never agree exactly)
    each = [predict_video([m], video, text).score for m in ms]
    assert p.score == pytest.approx(np.mean(each), abs=1e-6)
    assert p.spread == pytest.approx(np.std(each), abs=1e-6) and p.spread > 0


@pytest.mark.slow
@pytest.mark.skipif(not GRID.exists(), reason="../shared/data/grid is not here")
def test_predicts_a_grid_clip(trained):
    root, _, _ = trained
    p = predict_video(models(root, "plain"), GRID / "swwp2s.mpg", "set white with p two soon")
    assert np.isfinite(p.score) and p.missing == {}


@pytest.mark.slow
def test_missing_text_is_said_and_the_rest_predicts(trained):
    root, video, _ = trained
    p = predict_video(models(root, "plain"), video, None)
    assert set(p.missing) == {"text"} and p.used == ["audio", "visual"] and np.isfinite(p.score) and p.unpractised
    p = predict_video(models(root, "dropout"), video, None)
    assert set(p.missing) == {"text"} and np.isfinite(p.score) and not p.unpractised


@pytest.mark.slow
def test_no_face_or_no_audio_predicts_from_the_rest(trained, tmp_path):
    root, _, text = trained
    make_video(tmp_path / "faceless.mp4", with_face=False)
    make_video(tmp_path / "silent.mp4", with_audio=False)
    p = predict_video(models(root, "dropout"), tmp_path / "faceless.mp4", text)
    assert set(p.missing) == {"visual"} and "no face" in p.missing["visual"]
    p = predict_video(models(root, "dropout"), tmp_path / "silent.mp4", text)
    assert set(p.missing) == {"audio"} and "no audio track" in p.missing["audio"]
    p = predict_video(models(root, "plain"), tmp_path / "faceless.mp4", text)
    assert set(p.missing) == {"visual"} and np.isfinite(p.score) and p.unpractised
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(MisrError, match="cannot be opened as a media file"):
        predict_video(models(root, "dropout"), tmp_path / "broken.mp4", text)


@pytest.mark.slow
def test_the_command_on_a_folder(trained, tmp_path):
    root, video, text = trained
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "predict",
            str(video.parent),
            "--text",
            text,
            "--model",
            str(root / "plain"),
            "--params",
            str(REPO / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(".mp4") == len(list(video.parent.glob("*.mp4"))) and "2 seed(s)" in res.stdout
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "predict",
            str(video),
            "--model",
            "prod",
            "--repo",
            str(tmp_path),
            "--params",
            str(REPO / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr and "error:" in res.stderr


@pytest.mark.slow
def test_clips_in_nested_folders_are_listed_by_their_path_in_the_folder(trained, tmp_path):
    import shutil

    root, video, text = trained
    for sub in ("a", "b"):
        (tmp_path / "clips" / sub).mkdir(parents=True)
        shutil.copy(video, tmp_path / "clips" / sub / "0.mp4")
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "predict", str(tmp_path / "clips"), "--text", text,
         "--model", str(root / "plain"), "--params", str(REPO / "params.yaml")],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "a/0.mp4" in res.stdout and "b/0.mp4" in res.stdout


@pytest.mark.slow
@pytest.mark.skipif(not FACES.exists(), reason="../shared/data/faces is not here")
def test_a_real_recording_without_an_audio_track_is_scored(trained):
    """It used to stop with "audio missing" and a hint to give --text, which had been given."""
    root, _, _ = trained
    video = FACES / "glasses_man_coloured_light_scene_cuts_noaudio.mp4"
    command = [sys.executable, "-m", "pipelines.cli", "predict", str(video), "--text", "so this is it", "--model", str(root / "plain")]
    res = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "glasses_man" in res.stdout and "audio" in res.stdout  # the table's row, with audio in its missing column
    note = " ".join(res.stderr.split())
    assert "audio missing (" in note and "predicted from text and visual" in note and "never trained without audio" in note
