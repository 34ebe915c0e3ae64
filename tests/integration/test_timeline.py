"""One timeline per clip: audio and visual features of the same instant share a frame index, whichever
stream starts first, and only a truncated file is called partial."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from misr.data.corpus import Clip
from misr.store.store import FeatureStore
from tests.helpers import FACES, params
from tests.integration.test_extract import truncated_faststart, write_rows

FPS, SR = 25, 16000


def offset_clip(path: Path, seconds: float, video_start: float, audio_start: float, event: float) -> None:
    """A clip whose streams start at their own times (the MP4 muxer writes an edit list), with one event at
    `event` seconds on the shared timeline: the face appears (grey before) and a tone starts (silence before)."""
    import av

    from misr.data.democorpus import build_rig

    face = build_rig(224).image
    grey = np.full_like(face, 128)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width = video.height = 224
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        sound = out.add_stream("aac", rate=SR)
        sound.layout = "mono"
        for i in range(int(round(video_start * FPS)), int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(face if i / FPS >= event else grey, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        first = int(round(audio_start * SR))
        t = np.arange(first, int(seconds * SR)) / SR
        tone = np.where(t >= event, 0.3 * np.sin(2 * np.pi * 200 * t), 0.0).astype(np.float32)
        for s in range(0, tone.size, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, first + s, Fraction(1, SR)
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)


def clip(path: Path) -> Clip:
    return Clip(key=f"v$_${path.stem}", video_id="v", clip_id=path.stem, path=path, split="train", text="a film", label=0.0)


def features(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from misr.features.audio import LibrosaExtractor
    from misr.features.visual import LandmarkExtractor

    p = params()
    audio = LibrosaExtractor(p.features)
    return audio.extract(clip(path))["frames"], LandmarkExtractor(p.features).extract(clip(path))["frames"], audio.feature_names()


@pytest.mark.slow
@pytest.mark.parametrize(
    "seconds, video_start, audio_start, event",
    [(3.0, 0.0, 0.85, 1.5), (6.4, 2.4, 0.0, 3.5)],
    ids=["audio starts 0.85 s late", "video starts 2.4 s late"],
)
def test_audio_and_visual_frames_of_one_instant_share_an_index(tmp_path, seconds, video_start, audio_start, event):
    path = tmp_path / "offset.mp4"
    offset_clip(path, seconds, video_start, audio_start, event)
    audio, visual, names = features(path)
    present, rms = audio[:, names.index("present")], audio[:, names.index("rms_db")]
    tone_on = int(np.argmax((present > 0) & (rms > -30)))
    face_on = int(np.argmax(visual[:, 0] > 0))
    assert abs(tone_on - event * FPS) <= 1 and abs(face_on - event * FPS) <= 1
    assert abs(tone_on - face_on) <= 1  # within one feature frame of each other, not the streams' offset apart
    # the stretch before a stream starts is marked missing, not closed up
    lead = int(audio_start * FPS)
    assert not present[: max(0, lead - 2)].any() and present[lead + 1 : -1].all()  # the last centre may fall past the last sample
    assert not visual[: int(video_start * FPS), 0].any()
    assert abs(len(audio) - len(visual)) <= 2 and abs(len(visual) - seconds * FPS) <= 1


@pytest.mark.slow
def test_only_a_truncated_file_gets_the_partial_decode_warning_and_durations_are_the_timeline(tmp_path):
    from tests.helpers import extract_here

    raw = tmp_path / "raw"
    (raw / "Raw" / "v").mkdir(parents=True)
    offset_clip(raw / "Raw" / "v" / "late_audio.mp4", 3.0, 0.0, 0.85, 1.5)
    offset_clip(raw / "Raw" / "v" / "late_video.mp4", 6.4, 2.4, 0.0, 3.5)
    offset_clip(tmp_path / "whole.mp4", 3.0, 0.0, 0.0, 0.5)  # the face shows before the cut
    truncated_faststart(tmp_path / "whole.mp4", raw / "Raw" / "v" / "cut.mp4", keep=0.5)
    names = ("late_audio", "late_video", "cut")
    write_rows(raw, [{"video_id": "v", "clip_id": c, "text": "a good film", "label": "1", "mode": "train"} for c in names])
    summary = extract_here(params(), raw, tmp_path / "store")
    assert summary["quarantined"] == 0 and summary["partial"] == 1
    rows = {r["clip_id"]: r for r in FeatureStore(tmp_path / "store").clips().to_pylist()}
    assert rows["late_audio"]["warnings"] is None and rows["late_video"]["warnings"] is None
    assert rows["cut"]["warnings"].startswith("partial decode: ") and "its stream declares" in rows["cut"]["warnings"]
    assert rows["late_audio"]["duration"] == pytest.approx(3.0, abs=0.1)
    assert rows["late_video"]["duration"] == pytest.approx(6.4, abs=0.1)  # the timeline, not the 4.0 s of video
    assert rows["cut"]["duration"] < 2.5


@pytest.mark.slow
@pytest.mark.skipif(not FACES.is_dir(), reason="the shared real clips are not beside the repository")
def test_a_real_recording_whose_audio_starts_half_a_second_late_is_placed_on_its_timeline():
    path = FACES / "speech_frontal_man_3_settings_audio_starts_late.mp4"
    audio, visual, names = features(path)
    present = audio[:, names.index("present")]
    first = int(np.argmax(present > 0))
    assert 11 <= first <= 13  # the track starts at 0.48 s (its first AAC frame; speech from 0.50 s): frame 12 of 25 a second
    assert present[first:-1].all() and not present[:first].any()
    assert abs(len(audio) - len(visual)) <= 2  # both end with the clip (13.1 s), on one timeline
