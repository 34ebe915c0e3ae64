"""Reading video files in-process with PyAV (FFmpeg's libraries): frames, the audio track, duration.

Every failure is a `ClipError` with a short error kind (used in the quarantine) and a message that
says what is wrong with the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from misr.util.stop import check_stop


class ClipError(Exception):
    """One clip cannot be processed; `stage` and `kind` go to the quarantine with the message."""

    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(message)
        self.stage, self.kind, self.message = stage, kind, message


@dataclass
class Video:
    frames: list[np.ndarray]  # grayscale uint8 [H, W], one per analysed frame
    fps: float  # frames per second of `frames` (after any sampling)
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


# 8-bit Y'CbCr layouts whose first plane is the picture's luma: read directly, 5x faster than a swscale conversion
_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"}
# limited ("TV") range luma 16..235 stretched to 0..255, as swscale's conversion to gray does
_TV_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)


def luma(frame) -> np.ndarray:
    """A decoded frame as a C-contiguous grayscale uint8 image [H, W] (dlib misreads strided rows)."""
    name = frame.format.name
    if name not in _LUMA_FORMATS:
        return np.ascontiguousarray(frame.to_ndarray(format="gray"))
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
    full_range = name.startswith("yuvj") or int(frame.color_range or 0) == 2  # AVCOL_RANGE_JPEG
    return np.ascontiguousarray(rows) if full_range else _TV_TO_FULL[rows]


class VideoStream:
    """The grayscale frames of a video, decoded lazily and handed out in chunks of at most `chunk` frames.

    Memory holds one chunk, never the whole clip. Frames are chosen by their presentation time stamps:
    with `target_fps` below the source's rate, output frame k is the frame on screen at time k / target_fps
    (counted from the first frame), so 29.97 or 60 fps sources give exactly `target_fps` frames a second.
    A target at or above the source's rate keeps every frame (none is invented) and `fps` is the source's.
    `duration` and `n_frames` are known once the chunks have been read; a damaged tail ends the stream
    early with what decoded, as FFmpeg players do (`partial` says so).
    """

    def __init__(self, path: Path, target_fps: float | None = None, stage: str = "visual", chunk: int = 64):
        self.path, self.stage, self.chunk = path, stage, max(1, int(chunk))
        self._container = _open(path, stage)
        if not self._container.streams.video:
            self._container.close()
            raise ClipError(stage, "NoVideoTrack", f"{path} has no video track")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.source_fps = float(self._stream.average_rate or self._stream.guessed_rate or 25.0)
        self.sampled = bool(target_fps) and target_fps < self.source_fps * (1 - 1e-6)
        self.fps = float(target_fps) if self.sampled else self.source_fps
        self.width, self.height = self._stream.codec_context.width, self._stream.codec_context.height
        self.n_frames, self.duration, self.partial = 0, 0.0, False

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def chunks(self) -> Iterator[np.ndarray]:
        """Arrays [n, H, W] uint8 (C-contiguous: dlib misreads strided rows), n <= chunk."""
        buffer: list[np.ndarray] = []
        for gray in self._frames():
            buffer.append(gray)
            if len(buffer) == self.chunk:
                check_stop("extraction")  # a stop request ends a long recording within a chunk, not at its end
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)
        if self.n_frames == 0:
            raise ClipError(self.stage, "NoFrames", f"{self.path} holds no video frames")

    def _frames(self) -> Iterator[np.ndarray]:
        import av

        step = 1.0 / self.source_fps
        first: float | None = None
        held = None  # the decoded frame on screen until the current one
        next_k = 0  # the next output frame, due at time next_k / fps
        try:
            for i, frame in enumerate(self._container.decode(self._stream)):
                t = float(frame.time) if frame.time is not None else i * step
                first = t if first is None else first
                start = t - first
                self.duration = max(self.duration, start + step)
                if not self.sampled:
                    self.n_frames += 1
                    yield luma(frame)
                    continue
                if held is not None and next_k / self.fps < start - 1e-6:
                    # a gap in the time stamps: the frame still on screen fills the output times before this one
                    image = luma(held)
                    while next_k / self.fps < start - 1e-6:
                        self.n_frames, next_k = self.n_frames + 1, next_k + 1
                        yield image
                if next_k / self.fps < start + step - 1e-6:  # an output time falls while this frame is shown
                    self.n_frames, next_k = self.n_frames + 1, next_k + 1
                    yield luma(frame)
                held = frame
        except av.FFmpegError as exc:
            if self.n_frames == 0:
                raise ClipError(self.stage, "CorruptVideo", f"{self.path}: no frame could be decoded ({exc})") from None
            self.partial = True


def read_video(path: Path, target_fps: float | None = None, stage: str = "visual") -> Video:
    """Every analysed frame of a short clip in memory (tests and tools; extraction streams with `VideoStream`)."""
    with VideoStream(path, target_fps, stage) as stream:
        frames = [f for chunk in stream.chunks() for f in chunk]
        return Video(frames, stream.fps, stream.duration)


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
            for i, frame in enumerate(container.decode(container.streams.audio[0])):
                if i % 256 == 0:  # about 5 s of audio: a stop request is seen within a fraction of a second
                    check_stop("extraction")
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
