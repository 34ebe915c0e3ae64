"""Reading video files in-process with PyAV (FFmpeg's libraries): frames, the audio track, duration.

Every failure is a `ClipError` with a short error kind (used in the quarantine) and a message that
says what is wrong with the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ClipError(Exception):
    """One clip cannot be processed; `stage` and `kind` go to the quarantine with the message."""

    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(message)
        self.stage, self.kind, self.message = stage, kind, message


@dataclass
class Video:
    frames: list[np.ndarray]  # grayscale uint8 [H, W], one per analysed frame
    fps: float  # frames per second of `frames` (after any subsampling)
    duration: float


def _open(path: Path, stage: str):
    import av

    if not path.exists():
        raise ClipError(stage, "MissingFile", f"{path} does not exist")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise ClipError(stage, "NotARegularFile", f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise ClipError(stage, "EmptyFile", f"{path} is empty (0 bytes)")
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise ClipError(stage, "CorruptVideo", f"{path} cannot be opened as a media file ({exc})") from None


def read_video(path: Path, target_fps: float | None = None, stage: str = "visual") -> Video:
    """Grayscale frames, keeping about `target_fps` frames per second (all frames when None or higher)."""
    import av

    container = _open(path, stage)
    try:
        if not container.streams.video:
            raise ClipError(stage, "NoVideoTrack", f"{path} has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25.0)
        step = max(1, int(round(rate / target_fps))) if target_fps else 1
        frames = []
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % step == 0:
                    frames.append(frame.to_ndarray(format="gray"))
        except av.FFmpegError as exc:
            if not frames:
                raise ClipError(stage, "CorruptVideo", f"{path}: no frame could be decoded ({exc})") from None
            # a damaged tail: keep what decoded, as FFmpeg players do
        if not frames:
            raise ClipError(stage, "NoFrames", f"{path} holds no video frames")
        duration = len(frames) * step / rate
        return Video(frames, rate / step, duration)
    finally:
        container.close()


def read_audio(path: Path, sample_rate: int, stage: str = "audio") -> np.ndarray:
    """The first audio track, mixed to mono float32 at `sample_rate`."""
    import av

    container = _open(path, stage)
    try:
        if not container.streams.audio:
            raise ClipError(stage, "NoAudioTrack", f"{path} has no audio track")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            if not chunks:
                raise ClipError(stage, "CorruptAudio", f"{path}: the audio track cannot be decoded ({exc})") from None
        if not chunks:
            raise ClipError(stage, "EmptyAudio", f"{path}: the audio track holds no samples")
        samples = np.concatenate(chunks).astype(np.float32, copy=False)
        if samples.size < sample_rate // 20:
            raise ClipError(stage, "EmptyAudio", f"{path}: the audio track is shorter than 50 ms")
        return samples
    finally:
        container.close()


def probe_duration(path: Path) -> float | None:
    """The container's duration in seconds, from its header (no decoding); None when unknown."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = (container.streams.video or container.streams.audio or [None])[0]
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError):
        return None
    return None
