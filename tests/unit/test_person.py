"""Action units relative to the person: persons from face descriptors, pooled baselines, the model's view."""

from __future__ import annotations

import numpy as np
import pytest

from misr.features import person
from misr.features.person import QUANTILES, ActionUnitView, ClipFace, baselines, persons, pooled_quantile
from misr.features.visual import AU_TABLE, feature_names

NAMES = feature_names()
COLUMNS, FACE = person.action_unit_columns(NAMES)
N_AU = len(AU_TABLE)


def clip_frames(au: np.ndarray, face: np.ndarray | None = None) -> np.ndarray:
    """Visual frames [T, D] with these AU activations [T, 13] and a face in every frame (unless `face` says)."""
    frames = np.zeros((len(au), len(NAMES)), np.float32)
    frames[:, FACE] = 1.0 if face is None else face
    frames[:, COLUMNS] = au
    return frames


def quantiles_of(frames: np.ndarray) -> np.ndarray:
    from misr.features.visual import au_quantiles

    return au_quantiles(frames)


def test_videos_of_one_face_are_one_person_and_a_video_without_a_descriptor_is_its_own():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=128) * 0.1, rng.normal(size=128) * 0.1 + 0.2
    videos = {
        "v1": [a],
        "v2": [a + rng.normal(size=128) * 0.01],  # the same face in another video
        "v3": [b],
        "v4": [],  # its first clip had no face
    }
    assert np.linalg.norm(a - b) > person.SAME_PERSON
    found = persons(videos)
    assert found["v1"] == found["v2"] == "v1"
    assert found["v3"] == "v3" and found["v4"] == "v4"


def test_pooled_quantiles_match_the_quantile_of_all_frames():
    rng = np.random.default_rng(1)
    clips = [rng.normal(loc, 1.0, size=(n, 2)) for loc, n in ((0.0, 400), (3.0, 100), (-1.0, 250))]
    pooled = np.concatenate(clips)
    sketches = [np.quantile(c, QUANTILES, axis=0) for c in clips]
    for q in (0.1, 0.5):
        got = pooled_quantile(sketches, [len(c) for c in clips], q)
        assert np.allclose(got, np.quantile(pooled, q, axis=0), atol=0.12)


def test_two_people_whose_faces_rest_at_different_levels_read_alike_relative_to_themselves():
    """The same expressions on two faces with other neutral levels (one's brows at the raw ceiling)."""
    rng = np.random.default_rng(2)
    expression = np.clip(rng.normal(0, 1, size=(200, N_AU)), 0, None)  # mostly at rest, now and then active
    offset = rng.uniform(-3, 6, size=N_AU)
    a, b = clip_frames(expression), clip_frames(expression + offset)
    faces = {
        "a$_$0": ClipFace("a", 200, quantiles_of(a), np.zeros(128)),
        "b$_$0": ClipFace("b", 200, quantiles_of(b), np.ones(128)),
    }
    base, person_of = baselines(faces)
    assert person_of == {"a$_$0": "a", "b$_$0": "b"}
    raw = ActionUnitView("raw", COLUMNS, FACE)
    relative = ActionUnitView("relative", COLUMNS, FACE, base)
    values = {}
    for name, view in (("raw", raw), ("relative", relative)):
        batch = np.stack([a, b]).copy()
        view.apply(batch, ["a$_$0", "b$_$0"])
        values[name] = batch[..., COLUMNS]
    assert values["raw"].min() >= 0 and values["raw"].max() <= 5
    eyes = [i for i, (n, *_) in enumerate(AU_TABLE) if n in person.EYE_AUS]
    others = [i for i in range(N_AU) if i not in eyes]
    raw_gap = np.abs(values["raw"][0] - values["raw"][1])[:, others].mean()
    rel_gap = np.abs(values["relative"][0] - values["relative"][1])[:, others].mean()
    assert raw_gap > 1.0 and rel_gap < 0.05 * raw_gap


def test_eye_closure_is_relative_to_the_persons_usual_opening():
    _, _, neutral, span = AU_TABLE[-1]

    def activation(opening: np.ndarray) -> np.ndarray:  # the extractor's AU45: -(opening / width), as an activation
        return (-opening - neutral) / span * 5.0

    for usual in (0.22, 0.36):  # narrow and wide eyes
        opening = np.full(100, usual)
        opening[40:43] = 0.3 * usual  # a blink
        au = np.zeros((100, N_AU))
        au[:, -1] = activation(opening)
        frames = clip_frames(au)
        base, _ = baselines({"x$_$0": ClipFace("x", 100, quantiles_of(frames))})
        ActionUnitView("relative", COLUMNS, FACE, base).apply(frames[None], ["x$_$0"])
        closure = frames[:, COLUMNS[-1]]
        assert np.allclose(closure[:40], 0.0, atol=1e-4)  # the open eye reads 0 on either face
        assert np.allclose(closure[40:43], 5.0)  # closed by 70 % of the usual opening: full intensity


def test_frames_without_a_face_and_clips_without_a_baseline_stay_zero():
    au = np.full((10, N_AU), 2.0)
    frames = clip_frames(au, face=np.r_[np.ones(5), np.zeros(5)])
    base = {"x$_$0": np.zeros((2, N_AU))}
    batch = np.stack([frames, frames])
    ActionUnitView("relative", COLUMNS, FACE, base).apply(batch, ["x$_$0", "y$_$0"])
    assert (batch[0, 5:, COLUMNS] == 0).all() and (batch[0, :5, COLUMNS[0]] == 2.0).all()
    assert (batch[1][:, COLUMNS] == 0).all()


def test_features_without_landmark_action_units_are_left_as_they_are():
    assert person.action_unit_columns(["a", "b", "face"]) is None
    values = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    ActionUnitView("relative", None).apply(values, ["k"])
    assert values.ravel().tolist() == list(range(12))


@pytest.mark.parametrize("mode", ["raw", "relative"])
def test_describe_says_what_the_model_sees(mode):
    assert mode in ActionUnitView(mode, COLUMNS, FACE).describe()


def landmark_store(root, with_quantiles: bool):
    """A store whose visual parts carry the landmark extractor's features: two videos of one face, one of another."""
    from misr.store import ExtractorInfo, clip_key
    from misr.store.store import FeatureStore

    fs = FeatureStore(root)
    rng = np.random.default_rng(3)
    clips = [{"clip_key": clip_key(v, c), "video_id": v, "clip_id": c, "split": "train", "label": 0.0} for v in "abc" for c in "01"]
    fs.write_clips(clips)
    face = {"a": np.zeros(128), "b": np.full(128, 0.01), "c": np.full(128, 0.2)}
    records = []
    for c in clips:
        frames = clip_frames(rng.normal(3.0 if c["video_id"] == "c" else 0.0, 1.0, size=(30, N_AU)))
        rec = {"clip_key": c["clip_key"], "source_sha256": "s", "frames": frames, "frame_rate": 25.0, "face_ratio": 1.0}
        if with_quantiles:
            rec["au_quantiles"] = quantiles_of(frames)
            rec["face_descriptor"] = face[c["video_id"]] if c["clip_id"] == "0" else None
        records.append(rec)
    fs.write_modality("visual", records, ExtractorInfo("landmarks", "5" if with_quantiles else "4", {}, NAMES))
    return fs


def test_a_store_gives_one_baseline_per_person(tmp_path):
    view = person.view_for(landmark_store(tmp_path / "s", with_quantiles=True), "relative")
    assert view.persons == 2  # videos a and b show one face
    base = {k.split("$_$")[0] + k[-1]: v[0] for k, v in view.baseline.items()}
    assert np.allclose(base["a0"], base["b1"]) and np.allclose(base["a0"], base["a1"])
    assert (base["c0"] - base["a0"]).mean() > 2.0


def test_relative_on_a_store_without_quantiles_names_the_extractor_and_raw_still_works(tmp_path):
    from misr.errors import MisrError

    fs = landmark_store(tmp_path / "s", with_quantiles=False)
    with pytest.raises(MisrError, match=r"action_units=relative needs .* 6 clip\(s\) .* landmarks 4; landmarks 5 writes them"):
        person.view_for(fs, "relative")
    data = person.view_for(fs, "raw").apply_split(fs.load_split("train", modalities=("visual",), as_torch=False))
    au = data.visual.values[..., COLUMNS]
    assert au.min() == 0.0 and au.max() <= 5.0
