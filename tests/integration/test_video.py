"""Streaming decode (frame choice by time stamps, bounded chunks) and the face tracker on real and made faces."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import FACES, GRID, params

BITS = 8  # a frame's index, written as 8 black/white stripes: survives H.264 compression exactly


def write_video(path: Path, frames: list[np.ndarray], rate: Fraction) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for img in frames:
            rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def numbered(n: int) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        img = np.zeros((32, 16 * BITS), np.uint8)
        for b in range(BITS):
            img[:, 16 * b : 16 * (b + 1)] = 255 if (i >> b) & 1 else 0
        frames.append(img)
    return frames


def read_number(gray: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if gray[:, 16 * b + 4 : 16 * b + 12].mean() > 128)


@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60)], ids=["25", "29.97", "30", "60"])
def test_frames_are_chosen_by_their_time_stamps(tmp_path, rate):
    from misr.data.media import VideoStream

    seconds = 3
    n_source = int(seconds * rate)
    path = tmp_path / "numbered.mp4"
    write_video(path, numbered(n_source), rate)
    with VideoStream(path, 25, chunk=7) as video:
        chunks = list(video.chunks())
        got = [read_number(g) for chunk in chunks for g in chunk]
        assert all(len(c) <= 7 for c in chunks) and all(c.flags["C_CONTIGUOUS"] for c in chunks)
        assert video.fps == pytest.approx(25.0 if rate >= 25 else float(rate))
        assert video.duration == pytest.approx(n_source / float(rate), abs=1e-3)
        assert video.n_frames == len(got)
    # output frame k is the source frame on screen at time k / 25
    expected = [int(Fraction(k, 25) * rate + Fraction(1, 10**6)) for k in range(seconds * 25)]
    assert got == expected


def test_a_rate_above_the_source_keeps_every_frame_and_invents_none(tmp_path):
    from misr.data.media import VideoStream

    path = tmp_path / "numbered.mp4"
    write_video(path, numbered(50), Fraction(25))
    with VideoStream(path, 60) as video:
        got = [read_number(g) for chunk in video.chunks() for g in chunk]
    assert got == list(range(50)) and video.fps == pytest.approx(25.0)


# ------------------------------------------------------------------------------------------ the tracker


def grid_frames(name: str = "swwp2s") -> list[np.ndarray]:
    from misr.data.media import read_video

    return read_video(GRID / f"{name}.mpg", 25).frames


def every_frame_reference(frames: list[np.ndarray]) -> np.ndarray:
    from misr.shipped import dlib_models

    detector, _ = dlib_models()
    return np.array([len(detector(np.ascontiguousarray(g), 1)) > 0 for g in frames])


def demo_face_frames(n: int) -> list[np.ndarray]:
    from misr.data.democorpus import build_rig

    face = build_rig(224).image.mean(axis=2).astype(np.uint8)
    return [face.copy() for _ in range(n)]


def slide_out(frames: list[np.ndarray], start: int, end: int) -> list[np.ndarray]:
    """The picture slides out to the left between frames `start` and `end`; a textured background follows it."""
    h, w = frames[0].shape
    rng = np.random.default_rng(0)
    background = np.clip(120 + 20 * rng.standard_normal((h, w)), 0, 255).astype(np.uint8)
    out = []
    for i, f in enumerate(frames):
        shift = int(np.clip((i - start) / (end - start), 0, 1) * w)
        img = background.copy()
        if shift < w:
            img[:, : w - shift] = f[:, shift:]
        out.append(img)
    return out


@pytest.mark.parametrize("source", ["demo", "grid"])
def test_a_face_that_leaves_the_frame_is_not_reported_after_it_has_gone(source):
    from misr.features.visual import track_landmarks

    if source == "grid" and not GRID.exists():
        pytest.skip("../shared/data/grid is not here")
    frames = demo_face_frames(60) if source == "demo" else grid_frames()
    moving = slide_out(frames, 20, 45)
    _, found = track_landmarks(moving, 5)
    reference = every_frame_reference(moving)
    assert found[:20].all()  # all there before it moves
    assert not found[46:].any()  # and nothing once the picture holds no face
    gone = np.nonzero(~reference)[0]
    gone_for_good = gone[gone > 20]
    # at most one check interval after dlib stops seeing it, never more
    assert found[gone_for_good[0] + 5 :].sum() == 0


def test_a_blank_video_has_no_face_and_is_a_clear_no_face_error(tmp_path):
    from misr.data.corpus import Clip
    from misr.data.media import ClipError
    from misr.features.visual import LandmarkExtractor, track_landmarks

    blank = [np.full((240, 320), 128, np.uint8) for _ in range(30)]
    noise = [np.random.default_rng(i).integers(0, 255, (240, 320), dtype=np.uint8) for i in range(30)]
    for frames in (blank, noise):
        _, found = track_landmarks(frames, 5)
        assert not found.any()
    path = tmp_path / "blank.mp4"
    write_video(path, blank, Fraction(25))
    with pytest.raises(ClipError) as err:
        LandmarkExtractor(params().features).extract(Clip("v$_$blank", "v", "blank", path, "", "train", 0.0))
    assert err.value.kind == "NoFace" and "30 frames" in err.value.message


@pytest.mark.skipif(not GRID.exists(), reason="../shared/data/grid is not here")
def test_a_small_face_in_a_wide_frame_is_found_by_the_full_resolution_retry():
    """A ~55 px face in 1280x720: the reduced-scale detector misses it; the upsampled retry does not."""
    import cv2

    from misr.features.visual import track_landmarks

    frames = []
    for g in grid_frames()[:40]:
        canvas = np.full((720, 1280), 110, np.uint8)
        small = cv2.resize(g, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
        canvas[300 : 300 + small.shape[0], 820 : 820 + small.shape[1]] = small
        frames.append(canvas)
    landmarks, found = track_landmarks(frames, 5)
    assert found.mean() >= 0.99
    assert (landmarks[found, :, 0].mean(axis=1) > 820).all()  # on the face, not elsewhere


@pytest.mark.skipif(not GRID.exists(), reason="../shared/data/grid is not here")
def test_with_two_faces_the_larger_central_one_is_followed_throughout():
    import cv2

    from misr.features.visual import track_landmarks

    frames = []
    for g in grid_frames():
        h, w = g.shape
        img = np.full((h, w + w // 2), 100, np.uint8)
        img[:, :w] = g
        small = cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        img[h // 4 : h // 4 + small.shape[0], w : w + small.shape[1]] = small
        frames.append(img)
    landmarks, found = track_landmarks(frames, 5)
    assert found.all()
    assert (landmarks[:, :, 0].max(axis=1) < 360).all()  # every frame on the large face (x < 360)


@pytest.mark.skipif(not GRID.exists(), reason="../shared/data/grid is not here")
def test_a_cut_to_a_faceless_scene_ends_the_track_at_once():
    frames = grid_frames()
    h, w = frames[0].shape
    background = np.clip(120 + 20 * np.random.default_rng(1).standard_normal((h, w)), 0, 255).astype(np.uint8)
    cut = frames[:38] + [background] * 37
    from misr.features.visual import track_landmarks

    _, found = track_landmarks(cut, 5)
    assert found[:38].all() and not found[38:].any()


@pytest.mark.skipif(not GRID.exists(), reason="../shared/data/grid is not here")
def test_grid_frames_are_whole_rows_for_dlib():
    """PyAV pads rows to a stride; dlib misreads a strided array (it found no face on full frames)."""
    frames = grid_frames()
    assert all(f.flags["C_CONTIGUOUS"] for f in frames)
    assert every_frame_reference(frames[::15]).all()


def test_a_stop_request_ends_decoding_within_a_chunk_not_at_the_end_of_the_recording(tmp_path):
    """Ctrl-C in the middle of a long recording: the video and audio readers and the audio features check
    the stop flag every chunk or block, so a 10-minute clip does not run to its end first."""
    from misr.data.media import VideoStream, read_audio
    from misr.features.audio import LibrosaExtractor
    from misr.util.stop import Stopped, request_stop, reset
    from tests.helpers import make_video, params

    video = tmp_path / "long.mp4"
    make_video(video, seconds=6.0)
    request_stop()
    try:
        with VideoStream(video, 25.0, chunk=64) as stream, pytest.raises(Stopped, match="extraction stopped"):
            next(stream.chunks())
        assert stream.n_frames == 64  # one chunk decoded, not the 150 frames of the clip
        with pytest.raises(Stopped):
            read_audio(video, 16000)
        with pytest.raises(Stopped):
            LibrosaExtractor(params().features).features(np.zeros(16000, np.float32))
    finally:
        reset()
    assert len(next(VideoStream(video, 25.0, chunk=64).chunks())) == 64  # once cleared, decoding goes on


@pytest.mark.skipif(not FACES.exists(), reason="../shared/data/faces is not here")
def test_head_pose_is_never_flipped_on_real_recordings():
    """Film light, glasses and turned heads: 17% of this clip's face frames used to read roll ~180 degrees."""
    from misr.data.corpus import Clip
    from misr.features.visual import LandmarkExtractor, feature_names

    path = FACES / "glasses_man_coloured_light_scene_cuts_noaudio.mp4"
    frames = LandmarkExtractor(params().features).extract(Clip("v$_$c", "v", "c", path, "", "test", 0.0))["frames"]
    face = frames[:, 0] > 0
    roll = frames[face, feature_names().index("pose_roll")]
    assert face.sum() > 100 and np.abs(roll).max() < 90


@pytest.mark.skipif(not GRID.exists(), reason="../shared/data/grid is not here")
def test_a_person_who_enters_nearer_the_centre_does_not_take_over_the_speakers_track():
    """A second person slides in, larger-looking and more central; the speaker's face is hidden for a moment.
    Re-acquiring the largest, most central face would switch to the newcomer; the tracker waits for its person."""
    from misr.features.visual import FaceTracker

    speaker, newcomer = grid_frames("lbax4n"), grid_frames("lbbc2a")
    h, w = speaker[0].shape
    frames = []
    for i, (a, b) in enumerate(zip(speaker, newcomer, strict=True)):
        img = np.full((h, 2 * w), 100, np.uint8)
        img[:, :w] = a
        if 40 <= i < 48:  # a hand over the speaker's face
            img[int(0.1 * h) : int(0.95 * h), int(0.2 * w) : int(0.8 * w)] = 40
        if i >= 25:
            img[:, int(0.8 * w) : int(1.8 * w)] = b
        frames.append(img)
    tracker = FaceTracker(5)
    landmarks, found = tracker.track(frames)
    assert found[:40].all() and found[50:].all()  # the speaker, before and after the hand
    assert (landmarks[found, :, 0].mean(axis=1) < w).all()  # never the newcomer
    assert tracker.identity_changes == 0


@pytest.mark.skipif(not FACES.exists(), reason="../shared/data/faces is not here")
def test_in_a_group_the_tracker_keeps_the_person_it_started_with():
    """Four or five faces: when the first person is briefly lost, a smaller face elsewhere is someone else."""
    from misr.data.corpus import Clip
    from misr.data.media import read_video
    from misr.features.visual import LandmarkExtractor, track_landmarks

    path = FACES / "group_indoor_smiling_multiface.mp4"
    landmarks, found = track_landmarks(read_video(path, 25).frames, 5)
    centres = landmarks[found].mean(axis=1)
    width = np.median(landmarks[found, :, 0].max(axis=1) - landmarks[found, :, 0].min(axis=1))
    assert found.mean() > 0.85
    assert (np.linalg.norm(np.diff(centres, axis=0), axis=1) < width).all()  # no jump to another face
    record = LandmarkExtractor(params().features).extract(Clip("v$_$g", "v", "g", path, "", "test", 0.0))
    assert record["identity_changes"] == 0


# ------------------------------------------------------------------------------------ phone video, hostile time stamps


def turned_copy(src: Path, out: Path, degrees: int, frames: int = 60) -> None:
    """`src`'s first frames stored as a phone stores them: turned by -degrees, with a display matrix saying
    to turn them back by +degrees (counter-clockwise) when shown; degrees 0 is the upright re-encoded copy."""
    import av

    with av.open(str(src)) as inp, av.open(str(out), "w", format="mp4") as dst:
        stream = None
        for i, frame in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            stored = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), -(degrees // 90)))
            if stream is None:
                stream = dst.add_stream("libx264", rate=30)
                stream.height, stream.width = stored.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"preset": "ultrafast", "crf": "12"}
                stream.set_display_rotation(degrees)
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)


def face_coverage(path: Path) -> tuple[float, tuple[int, int], int, np.ndarray]:
    from misr.data.media import VideoStream
    from misr.features.visual import FaceTracker

    found, shape, first = [], None, None
    with VideoStream(path, 25) as video:
        tracker = FaceTracker(5)
        for chunk in video.chunks():
            first = chunk[0] if first is None else first
            found.extend(tracker.track(chunk)[1])
            shape = chunk.shape[1:]
        return float(np.mean(found)), shape, video.rotation, first


@pytest.mark.skipif(not FACES.exists(), reason="../shared/data/faces is not here")
@pytest.mark.parametrize("degrees", [90, 270, 180])
def test_a_phone_clip_stored_sideways_is_analysed_upright(tmp_path, degrees):
    """Frames stored sideways with a display matrix (phone video) were analysed sideways: a face in 51-73%
    of frames against 100% upright. Turned upright before the tracker, coverage is within 2% of the upright
    copy's, and the frames are the upright copy's frames."""
    src = FACES / "speech_frontal_man_3_settings_audio_starts_late.mp4"
    turned_copy(src, tmp_path / "upright.mp4", 0)
    turned_copy(src, tmp_path / "turned.mp4", degrees)
    upright, upright_shape, none, upright_first = face_coverage(tmp_path / "upright.mp4")
    turned, turned_shape, rotation, turned_first = face_coverage(tmp_path / "turned.mp4")
    assert none == 0 and rotation == degrees
    assert turned_shape == upright_shape == (540, 960)
    assert np.abs(turned_first.astype(int) - upright_first).mean() < 3  # the same picture, up to compression
    assert upright > 0.9 and abs(turned - upright) <= 0.02, (upright, turned)


def test_two_frames_ten_minutes_apart_are_refused_not_analysed_as_fifteen_thousand(tmp_path):
    """A 30 KB file whose two frames lie 600 s apart was analysed as 15,001 frames: work must follow the
    content, not the time stamps. Over features.max_gap_seconds it is a ClipError; under it, it is filled."""
    import av

    from misr.data.media import ClipError, VideoStream

    path = tmp_path / "gap.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 32, 32, "yuv420p"
        for pts in (0, 600 * 25):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with VideoStream(path, 25) as video, pytest.raises(ClipError, match=r"a gap in the video of 600\.0 s .* over the 30 s limit") as err:
        list(video.chunks())
    assert err.value.kind == "VideoGap"
    with VideoStream(path, 25, max_gap=700) as video:  # a user who means it raises the limit
        assert sum(len(c) for c in video.chunks()) >= 2
