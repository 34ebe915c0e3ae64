"""Reading video files in-process with PyAV (FFmpeg's libraries): frames, the audio track, their timeline.

One timeline per clip: it starts at the earliest declared start of the clip's video and audio streams,
and every decoded frame and sample is placed on it by its presentation time stamp (which already
applies the container's edit lists). So audio and visual features of the same instant share a frame
index even when one stream starts late, as in phone and screen recordings and in clips cut from longer
videos; a stretch where a stream has no data is marked missing, never closed up by shifting the rest.

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
    frames: list[np.ndarray]  # grayscale uint8 [H, W], one per analysed frame from the stream's first
    fps: float  # frames per second of `frames` (after any sampling)
    duration: float  # where the video ends on the clip's timeline, in seconds
    leading: int = 0  # analysed frame times on the timeline before the video's first frame (no picture)


@dataclass
class Audio:
    samples: np.ndarray  # mono float32; sample 0 is the timeline's origin; zeros where the track has no data
    sample_rate: int
    missing: list[tuple[int, int]]  # [start, end) sample ranges with no data (before the track starts, gaps)


@dataclass(frozen=True)
class StreamSpan:
    """Where a stream's header places it on the clip's timeline, in seconds (duration None when unknown)."""

    start: float
    duration: float | None


def _seconds(value, time_base) -> float | None:
    return float(value * time_base) if value is not None and time_base else None


def timeline_origin(container) -> float:
    """Where the clip's timeline starts: the earliest declared start of its (first) video and audio streams."""
    streams = tuple(container.streams.video[:1]) + tuple(container.streams.audio[:1])
    starts = [t for t in (_seconds(s.start_time, s.time_base) for s in streams) if t is not None]
    return min(starts) if starts else 0.0


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

    Memory holds one chunk, never the whole clip. Frames are placed by their presentation time stamps on
    the clip's timeline (`timeline_origin`): output frame k is the frame on screen at time k / fps, so
    29.97 or 60 fps sources give exactly `target_fps` frames a second. A target at or above the source's
    rate keeps every frame (none is invented) and `fps` is the source's. Output times before the video's
    first frame (a video that starts after its audio) have no picture: they are counted in `leading`, not
    yielded, so the first chunk's first frame is output frame `leading`. When every frame is kept, time
    stamps are read with half a frame of tolerance, so jitter (millisecond time bases) neither drops
    nor repeats a frame.
    `duration` (where the video ends on the timeline), `n_frames` and `leading` are known once the chunks
    have been read; a damaged tail ends the stream early with what decoded, as FFmpeg players do
    (`partial` says so).
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
        self.origin = timeline_origin(self._container)
        self.n_frames, self.leading, self.duration, self.partial = 0, 0, 0.0, False

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
        start = _seconds(self._stream.start_time, self._stream.time_base) or 0.0
        # every frame kept: each counts as shown from half a frame before its time stamp (jitter-proof);
        # sampled: output frame k is exactly the frame on screen at k / fps
        due = 1e-6 if self.sampled else 0.5 * step
        held = None  # the decoded frame on screen until the current one
        next_k = 0  # the next output frame, due at time next_k / fps on the timeline
        try:
            for i, frame in enumerate(self._container.decode(self._stream)):
                t = (float(frame.time) if frame.time is not None else start + i * step) - self.origin
                self.duration = max(self.duration, t + step)
                shown = t - due
                if held is None:
                    while next_k / self.fps < shown:  # before the video's first frame: no picture
                        self.leading, next_k = self.leading + 1, next_k + 1
                elif next_k / self.fps < shown:
                    # a gap in the time stamps: the frame still on screen fills the output times before this one
                    image = luma(held)
                    while next_k / self.fps < shown:
                        self.n_frames, next_k = self.n_frames + 1, next_k + 1
                        yield image
                if next_k / self.fps < shown + step:  # an output time falls while this frame is shown
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
        return Video(frames, stream.fps, stream.duration, stream.leading)


# A jump in the audio's time stamps longer than this is a gap in the track (no data), filled with marked silence.
AUDIO_GAP_SECONDS = 0.01


def read_audio(path: Path, sample_rate: int, stage: str = "audio") -> Audio:
    """The first audio track, mixed to mono float32 at `sample_rate`, placed on the clip's timeline."""
    import av

    container = _open(path, stage)
    try:
        if not container.streams.audio:
            raise ClipError(stage, "NoAudioTrack", f"{path} has no audio track")
        stream = container.streams.audio[0]
        origin = timeline_origin(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        missing: list[tuple[int, int]] = []
        placed = 0  # output samples so far, silence included
        heard = 0  # of them, decoded from the track
        end: float | None = None  # where the last decoded frame ends on the timeline, in seconds
        early = 0  # samples decoded before the timeline's origin (dropped)
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % 256 == 0:  # about 5 s of audio: a stop request is seen within a fraction of a second
                    check_stop("extraction")
                t = float(frame.time) - origin if frame.time is not None else end or 0.0
                if end is None and t < 0:
                    early = int(round(-t * sample_rate))
                if end is None or t - end > AUDIO_GAP_SECONDS:  # the track starts late, or has a hole
                    silence = int(round(t * sample_rate)) - placed
                    if silence > 0:
                        chunks.append(np.zeros(silence, np.float32))
                        missing.append((placed, placed + silence))
                        placed += silence
                end = t + frame.samples / float(frame.sample_rate or sample_rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    placed, heard = placed + chunks[-1].size, heard + chunks[-1].size
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
                heard += chunks[-1].size
        except av.FFmpegError as exc:
            if not heard:
                raise ClipError(stage, "CorruptAudio", f"{path}: the audio track cannot be decoded ({exc})") from None
        if not heard:
            raise ClipError(stage, "EmptyAudio", f"{path}: the audio track holds no samples")
        if heard < sample_rate // 20:
            raise ClipError(stage, "EmptyAudio", f"{path}: the audio track is shorter than 50 ms")
        samples = np.concatenate(chunks).astype(np.float32, copy=False)[early:]
        return Audio(samples, sample_rate, _merged([(max(0, a - early), b - early) for a, b in missing if b > early]))
    finally:
        container.close()


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def probe_streams(path: Path) -> tuple[float | None, dict[str, StreamSpan]]:
    """The container's duration (seconds, None when unknown) and where its header places the video
    ("visual") and audio ("audio") streams on the clip's timeline; no decoding."""
    import av

    try:
        with av.open(str(path)) as container:
            origin = timeline_origin(container)
            whole = container.duration / 1_000_000 if container.duration else None
            first = container.start_time / 1_000_000 if container.start_time is not None else origin
            spans = {}
            for modality, streams in (("visual", container.streams.video), ("audio", container.streams.audio)):
                if not streams:
                    continue
                s = streams[0]
                start = _seconds(s.start_time, s.time_base)
                start = origin if start is None else start
                duration = _seconds(s.duration, s.time_base)
                if duration is None and whole is not None:
                    duration = whole - (start - first)
                spans[modality] = StreamSpan(start - origin, duration)
            return whole, spans
    except (av.FFmpegError, OSError):
        return None, {}
