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
    track: int = 0  # which of the file's audio tracks


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


# The longest stretch of a clip's timeline without a new video frame or audio sample (a stream that starts
# late, a hole) that reading fills in. A longer one is refused: a few KB whose two frames lie ten hours apart
# must not become a million analysed frames or hours of silence. params.yaml: features.max_gap_seconds.
MAX_GAP_SECONDS = 30.0


def _gap_error(stage: str, kind: str, path: Path, what: str, seconds: float, limit: float) -> ClipError:
    return ClipError(
        stage, kind, f"{path}: {what} {seconds:.1f} s with no data, over the {limit:g} s limit (features.max_gap_seconds; raise it for such recordings)"
    )


def display_turns(frame) -> int:
    """Quarter turns counter-clockwise that show the frame as meant: phones store frames sideways and say so in
    a display matrix (PyAV's `frame.rotation`, counter-clockwise degrees), rounded to the nearest right angle."""
    try:
        degrees = float(frame.rotation or 0)
    except (AttributeError, ValueError, TypeError):
        return 0
    return int(round(degrees / 90.0)) % 4


def luma(frame, turns: int = 0) -> np.ndarray:
    """A decoded frame as a C-contiguous grayscale uint8 image [H, W] (dlib misreads strided rows), turned
    `turns` quarter turns counter-clockwise (`display_turns`)."""
    name = frame.format.name
    if name not in _LUMA_FORMATS:
        gray = frame.to_ndarray(format="gray")
    else:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        full_range = name.startswith("yuvj") or int(frame.color_range or 0) == 2  # AVCOL_RANGE_JPEG
        gray = rows if full_range else _TV_TO_FULL[rows]
    return np.ascontiguousarray(np.rot90(gray, turns) if turns else gray)


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
    Frames are turned upright as the file's display matrix says (phone video is stored sideways), before
    anything looks at them; `rotation` says by how much. A stretch without frames longer than `max_gap`
    seconds (at the start or between two frames) is a ClipError: work is bounded by what the file holds.
    `duration` (where the video ends on the timeline), `n_frames` and `leading` are known once the chunks
    have been read; a damaged tail ends the stream early with what decoded, as FFmpeg players do
    (`partial` says so).
    """

    def __init__(
        self, path: Path, target_fps: float | None = None, stage: str = "visual", chunk: int = 64, max_gap: float = MAX_GAP_SECONDS
    ):
        self.path, self.stage, self.chunk, self.max_gap = path, stage, max(1, int(chunk)), float(max_gap)
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
        self.rotation = 0  # degrees counter-clockwise applied to every frame (the display matrix's), known after the first

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
        turns = 0
        last = 0.0  # the previous frame's time on the timeline (the timeline's origin before the first)
        next_k = 0  # the next output frame, due at time next_k / fps on the timeline
        try:
            for i, frame in enumerate(self._container.decode(self._stream)):
                t = (float(frame.time) if frame.time is not None else start + i * step) - self.origin
                if t - last > self.max_gap:  # time stamps, not the declared frame rate (a file can declare 0.003 fps)
                    what = "the video starts after" if held is None else "a gap in the video of"
                    raise _gap_error(self.stage, "VideoGap", self.path, what, t - last, self.max_gap)
                last = max(last, t)
                self.duration = max(self.duration, t + step)
                shown = t - due
                if held is None:
                    turns = display_turns(frame)
                    self.rotation = 90 * turns
                    while next_k / self.fps < shown:  # before the video's first frame: no picture
                        self.leading, next_k = self.leading + 1, next_k + 1
                elif next_k / self.fps < shown:
                    # a gap in the time stamps: the frame still on screen fills the output times before this one
                    image = luma(held, turns)
                    while next_k / self.fps < shown:
                        self.n_frames, next_k = self.n_frames + 1, next_k + 1
                        yield image
                if next_k / self.fps < shown + step:  # an output time falls while this frame is shown
                    self.n_frames, next_k = self.n_frames + 1, next_k + 1
                    yield luma(frame, turns)
                held = frame
        except av.FFmpegError as exc:
            if self.n_frames == 0:
                raise ClipError(self.stage, "CorruptVideo", f"{self.path}: no frame could be decoded ({exc})") from None
            self.partial = True


def read_video(path: Path, target_fps: float | None = None, stage: str = "visual", max_gap: float = MAX_GAP_SECONDS) -> Video:
    """Every analysed frame of a short clip in memory (tests and tools; extraction streams with `VideoStream`)."""
    with VideoStream(path, target_fps, stage, max_gap=max_gap) as stream:
        frames = [f for chunk in stream.chunks() for f in chunk]
        return Video(frames, stream.fps, stream.duration, stream.leading)


# A jump in the audio's time stamps longer than this is a gap in the track (no data), filled with marked silence.
AUDIO_GAP_SECONDS = 0.01


def read_audio(path: Path, sample_rate: int, stage: str = "audio", max_gap: float = MAX_GAP_SECONDS) -> Audio:
    """The clip's audio, mixed to mono float32 at `sample_rate`, placed on the clip's timeline.

    With several audio tracks (an mkv with commentary, a muted track first), the first that is not
    silent; when all are silent or unreadable, the first's result or error. A stretch without samples
    longer than `max_gap` seconds is a ClipError, as in the video.
    """
    container = _open(path, stage)
    try:
        tracks = len(container.streams.audio)
    finally:
        container.close()
    if not tracks:
        raise ClipError(stage, "NoAudioTrack", f"{path} has no audio track")
    first: Audio | ClipError | None = None
    for index in range(tracks):
        try:
            audio = _read_track(path, index, sample_rate, stage, max_gap)
        except ClipError as exc:
            first = exc if first is None else first
            continue
        if tracks == 1 or np.abs(audio.samples).max(initial=0.0) > SILENT_PEAK:
            return audio
        first = audio if first is None else first
    if isinstance(first, ClipError):
        raise first
    assert first is not None
    return first


# A track whose every sample stays under this (about -80 dBFS) holds no sound: another track is preferred.
SILENT_PEAK = 1e-4


def _read_track(path: Path, index: int, sample_rate: int, stage: str, max_gap: float) -> Audio:
    import av

    container = _open(path, stage)
    try:
        stream = container.streams.audio[index]
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
                if t - (end or 0.0) > max_gap:
                    what = "the audio starts after" if end is None else "a gap in the audio of"
                    raise _gap_error(stage, "AudioGap", path, what, t - (end or 0.0), max_gap)
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
        return Audio(samples, sample_rate, _merged([(max(0, a - early), b - early) for a, b in missing if b > early]), index)
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
