"""The audio a clip is heard by: the track that holds sound, and a timeline bounded by what the file holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SR = 16000


def write_audio(path: Path, tracks: list[np.ndarray], starts: list[list[int]] | None = None) -> None:
    """An mkv of audio tracks only (PCM); track i's pieces of 1024 samples start at `starts[i]` (samples)."""
    import av

    with av.open(str(path), "w", format="matroska") as out:
        streams = []
        for _ in tracks:
            stream = out.add_stream("pcm_s16le", rate=SR)
            stream.layout = "mono"
            streams.append(stream)
        for i, (stream, samples) in enumerate(zip(streams, tracks, strict=True)):
            pieces = [samples[j : j + 1024] for j in range(0, samples.size, 1024)]
            at = starts[i] if starts else [j * 1024 for j in range(len(pieces))]
            for piece, pts in zip(pieces, at, strict=True):
                frame = av.AudioFrame.from_ndarray((piece[None, :] * 32767).astype(np.int16), format="s16", layout="mono")
                frame.sample_rate, frame.pts = SR, pts
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)


def tone(seconds: float, hz: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def test_the_first_track_that_holds_sound_is_the_one_heard(tmp_path):
    """An mkv with three audio tracks used the first even when it was silent."""
    from misr.data.media import read_audio

    path = tmp_path / "three.mkv"
    write_audio(path, [np.zeros(SR, np.float32), tone(1.0, 220), tone(1.0, 440)])
    audio = read_audio(path, SR)
    assert audio.track == 1
    spectrum = np.abs(np.fft.rfft(audio.samples[:SR]))
    assert abs(np.argmax(spectrum) * SR / SR - 220) <= 2  # 1 Hz bins over one second
    silent = tmp_path / "silent.mkv"
    write_audio(silent, [np.zeros(SR, np.float32), np.zeros(SR, np.float32)])
    assert read_audio(silent, SR).track == 0  # all silent: the first, as before


def test_an_audio_gap_over_the_limit_is_refused_not_filled_with_hours_of_silence(tmp_path):
    from misr.data.media import ClipError, read_audio

    path = tmp_path / "gap.mkv"
    samples = tone(2048 / SR, 220)
    write_audio(path, [samples], [[0, 600 * SR]])
    with pytest.raises(ClipError, match=r"a gap in the audio of 599\.9 s") as err:
        read_audio(path, SR)
    assert err.value.kind == "AudioGap"
    audio = read_audio(path, SR, max_gap=601)
    assert audio.samples.size == 600 * SR + 1024 and audio.missing == [(1024, 600 * SR)]
