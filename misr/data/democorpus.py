"""`misr demo-corpus`: a small corpus of real video files in the MMSA-FET layout, made from a seed.

Each clip gets labels from the same generating process as `misr synth` (a sentiment per clip, each
modality's own expressed sentiment, conflicts, per-split imbalance), then:
  video  the face of the scikit-image astronaut photograph, animated frame by frame: mouth corners
         up or down, brows, eye opening and head motion follow the visual sentiment; the mouth opens
         with the syllables of the audio; the eyes blink now and then. Warped from the face's own
         dlib landmarks, so a face detector finds the face in every frame.
  audio  speech-like: glottal pulses at a pitch contour through vowel formant filters, in syllables;
         pitch level, pitch range, loudness and syllable rate follow the audio sentiment.
  text   words from the graded sentiment lexicon around the text sentiment.
Written in-process with PyAV: H.264 video, AAC audio, in .mp4, each file atomically.

The warp is linear in three controls (expression, mouth opening, blink), so three dense displacement
fields are computed once from the landmarks and every frame is one remap plus a head-motion affine.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from misr.data import lexicon
from misr.config.democorpus import DemoCorpusConfig
from misr.config.section import SPLITS
from misr.errors import MisrError
from misr.util.atomic import atomic_path, write_text
from misr.data.synth import draw_split

CLIPS_PER_VIDEO = 6
# vowel formants (F1, F2, F3) in Hz, adult speaker averages
VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))


@dataclass
class FaceRig:
    """The face image and the three displacement fields of its expressions ([H, W, 2] each)."""

    image: np.ndarray  # RGB uint8 [S, S, 3]
    expression: np.ndarray  # per unit of sentiment (+1 = smile, brows up, eyes open)
    mouth: np.ndarray  # mouth fully open
    blink: np.ndarray  # eyes closed
    grid: np.ndarray  # the pixel coordinates [H, W, 2]
    iod: float  # inter-ocular distance in pixels


def build_rig(size: int) -> FaceRig:
    import cv2
    from scipy.interpolate import griddata
    from skimage import data

    from misr.shipped import dlib_models

    photo = data.astronaut()
    detector, predictor = dlib_models()
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    faces = detector(gray, 1)
    if not faces:
        raise MisrError("no face found in the astronaut photograph (scikit-image data)")
    f = max(faces, key=lambda r: r.area())
    # a square crop with room around the face (forehead, chin, a little shoulder)
    cx, cy, side = (f.left() + f.right()) / 2, (f.top() + f.bottom()) / 2 + 0.05 * f.height(), 2.1 * f.width()
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(photo.shape[1], x0 + side)), int(min(photo.shape[0], y0 + side))
    crop = cv2.resize(photo[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    faces = detector(g, 1)
    if not faces:
        raise MisrError("no face found in the cropped astronaut face")
    pts = np.array([(p.x, p.y) for p in predictor(g, max(faces, key=lambda r: r.area())).parts()], dtype=np.float64)
    iod = float(np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0)))

    def displacement(moves: dict[int, tuple[float, float]]) -> np.ndarray:
        # sparse moves at landmarks (in IOD units), zero on the frame border, interpolated linearly
        border = [(x, y) for x in (0, size / 2, size - 1) for y in (0, size / 2, size - 1) if (x, y) != (size / 2, size / 2)]
        anchors = np.vstack([pts, np.array(border)])
        values = np.zeros_like(anchors)
        for i, (dx, dy) in moves.items():
            values[i] = (dx * iod, dy * iod)
        yy, xx = np.mgrid[0:size, 0:size]
        out = np.zeros((size, size, 2), dtype=np.float32)
        for axis in range(2):
            out[..., axis] = np.nan_to_num(griddata(anchors, values[:, axis], (xx, yy), method="linear"))
        return out

    # +1 unit: corners up and out, lips follow; inner brows up; eyes a little wider
    expression = {48: (-0.05, -0.14), 54: (0.05, -0.14), 49: (-0.02, -0.06), 53: (0.02, -0.06), 59: (-0.02, -0.06), 55: (0.02, -0.06),
                  60: (-0.04, -0.10), 64: (0.04, -0.10),
                  21: (0, -0.06), 22: (0, -0.06), 20: (0, -0.04), 23: (0, -0.04), 19: (0, -0.02), 24: (0, -0.02),
                  37: (0, -0.015), 38: (0, -0.015), 43: (0, -0.015), 44: (0, -0.015)}
    mouth = {i: (0, 0.16) for i in (56, 57, 58, 65, 66, 67)} | {i: (0, 0.1) for i in (5, 6, 7, 8, 9, 10, 11)} | {i: (0, -0.03) for i in (50, 51, 52, 61, 62, 63)}
    blink = {37: (0, 0.09), 38: (0, 0.09), 43: (0, 0.09), 44: (0, 0.09)}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return FaceRig(crop, displacement(expression), displacement(mouth), displacement(blink), np.stack([xx, yy], axis=-1), iod)


def render_frames(rig: FaceRig, sentiment: float, mouth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[T, S, S, 3] uint8: the face holding its expression, talking and moving."""
    import cv2

    n = mouth.size
    size = rig.image.shape[0]
    intensity = sentiment / 3.0
    blink = np.zeros(n)
    t = int(rng.integers(5, 40))
    while t < n:
        blink[t : t + 3] = (0.6, 1.0, 0.6)[: max(0, min(3, n - t))]
        t += int(rng.integers(50, 110))
    # head motion: a slow sway and nod whose amplitude grows with the strength of the sentiment
    amp = 0.6 + 1.2 * abs(intensity)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    centre = (size / 2, size / 2)
    for i in range(n):
        expr = float(intensity * (0.85 + 0.15 * np.sin(2 * np.pi * i / 40 + phase[0])))
        field = expr * rig.expression + float(mouth[i]) * rig.mouth + float(blink[i]) * rig.blink
        coords = (rig.grid - field).astype(np.float32)  # backward map: where each output pixel comes from
        warped = cv2.remap(rig.image, coords, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        angle = amp * np.sin(2 * np.pi * i / 60 + phase[0])
        shift = (amp * 1.5 * np.sin(2 * np.pi * i / 75 + phase[1]), amp * np.sin(2 * np.pi * i / 45 + phase[1]))
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        m[:, 2] += shift
        frames[i] = cv2.warpAffine(warped, m, (size, size), borderMode=cv2.BORDER_REPLICATE)
    return frames


def synthesize_speech(sentiment: float, duration: float, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A speech-like signal and its syllable envelope (0..1 at each sample) for the mouth."""
    from scipy.signal import lfilter

    a = sentiment / 3.0
    f0_level = 150.0 * 2 ** (0.5 * a)  # about 106 to 212 Hz
    range_st = 3.0 + 3.0 * a  # pitch excursion in semitones, 0 to 6
    loudness = 0.25 * 10 ** (6.0 * a / 20)  # +-6 dB
    rate = 4.0 + 1.2 * a  # syllables per second
    n = int(round(duration * sr))
    signal = np.zeros(n)
    envelope = np.zeros(n)
    t = rng.uniform(0.05, 0.2)
    while t < duration - 0.15:
        syl = max(0.1, rng.normal(1.0 / rate, 0.15 / rate))
        voiced = 0.65 * syl
        start, stop = int(t * sr), min(n, int((t + voiced) * sr))
        m = stop - start
        if m > 32:
            tt = np.arange(m) / sr
            accent = rng.uniform(-1, 1) * range_st
            semis = accent * np.sin(np.pi * tt / voiced) - 1.5 * (t / duration)  # a rise or fall, and declination
            f0 = f0_level * 2 ** (semis / 12)
            phase = np.cumsum(f0 / sr)
            pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
            source = lfilter([1.0], [1.0, -0.95], pulses) - lfilter([1.0], [1.0, -0.7], pulses)
            f1, f2, f3 = VOWELS[int(rng.integers(len(VOWELS)))]
            voice = source
            for freq, bw in ((f1, 90), (f2, 110), (f3, 160)):
                r = np.exp(-np.pi * bw / sr)
                voice = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / sr), r * r], voice)
            env = np.sin(np.pi * np.arange(m) / m) ** 0.6
            voice = voice / (np.abs(voice).max() + 1e-9)
            signal[start:stop] += loudness * env * voice
            envelope[start:stop] = np.maximum(envelope[start:stop], env)
            burst = int(0.02 * sr)
            if start > burst:  # a consonant: a short noise burst before the vowel
                signal[start - burst : start] += 0.3 * loudness * rng.standard_normal(burst) * np.hanning(burst)
        t += syl + (rng.uniform(0.15, 0.35) if rng.random() < 0.15 else 0.0)
    signal += 0.002 * rng.standard_normal(n)
    return np.clip(signal, -1, 1).astype(np.float32), envelope


def write_mp4(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None, sr: int = 16000) -> None:
    """H.264 video and, unless `audio` is None, an AAC mono track; written under a temporary name, then renamed."""
    import av

    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "20"}
        video.codec_context.thread_count = 1  # one core, and byte-identical output for a seed
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=sr)
            sound.layout = "mono"
        for img in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        chunk = 1024
        for start in range(0, 0 if sound is None else audio.size, chunk):
            piece = audio[start : start + chunk]
            frame = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
            frame.sample_rate = sr
            frame.pts = start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None) if sound is not None else ():
            out.mux(packet)


def generate(cfg: DemoCorpusConfig, out_dir: str | Path, n_clips: int | None = None, seed: int | None = None,
             progress: Callable[[int, int], None] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write Raw/<video_id>/<clip_id>.mp4 and label.csv under `out_dir`; returns a summary.

    A folder that already holds files is refused unless `overwrite`: it may be a corpus a user added
    clips to, and a new label.csv would drop their rows.
    """
    out = Path(out_dir)
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise MisrError(
            f"{out} already holds files (a corpus with your clips?); the demo corpus is not written over it",
            hint="choose an empty folder with --out, or pass --force to overwrite it",
        )
    n = int(n_clips or cfg.n_clips)
    seed = cfg.seed if seed is None else seed
    n_videos = -(-n // CLIPS_PER_VIDEO)
    if n_videos < 3:  # before anything is written: a failed run must leave nothing that refuses the retry
        raise MisrError(f"{n} clips make {n_videos} video(s); a train/valid/test split needs at least {2 * CLIPS_PER_VIDEO + 1} clips")
    try:
        (out / "Raw").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MisrError(f"cannot create {out / 'Raw'}: {exc.strerror or exc}") from None
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    order = rng.permutation(n_videos)
    # 70/15/15 by video (as MOSI splits by speaker video), at least one video in each split
    first = min(max(1, int(round(0.7 * n_videos))), n_videos - 2)
    second = min(max(first + 1, int(round(0.85 * n_videos))), n_videos - 1)
    split_of_video = {int(v): ("train" if i < first else "valid" if i < second else "test") for i, v in enumerate(order)}
    clips = [(f"demo{v:03d}", str(c)) for v in range(n_videos) for c in range(CLIPS_PER_VIDEO)][:n]
    by_split = {s: [i for i, (vid, _) in enumerate(clips) if split_of_video[int(vid[4:])] == s] for s in SPLITS}
    labels = np.zeros(n)
    expressed = np.zeros((n, 3))
    for k, split in enumerate(SPLITS):
        idx = by_split[split]
        if idx:
            sample = draw_split(cfg, split, len(idx), np.random.default_rng(np.random.SeedSequence([seed, k])))
            labels[idx], expressed[idx] = sample.labels, sample.expressed

    rig = build_rig(cfg.size)
    rows = []
    for i, (vid, cid) in enumerate(clips):
        clip_rng = np.random.default_rng(np.random.SeedSequence([seed, 97, i]))
        text_s, audio_s, visual_s = np.clip(expressed[i], -3, 3)
        duration = float(clip_rng.uniform(*cfg.duration))
        n_frames = int(round(duration * cfg.fps))
        audio, env = synthesize_speech(float(audio_s), n_frames / cfg.fps, cfg.sample_rate, clip_rng)
        hop = cfg.sample_rate / cfg.fps
        mouth = np.array([env[int(j * hop) : int((j + 1) * hop)].mean() if int(j * hop) < env.size else 0.0 for j in range(n_frames)])
        frames = render_frames(rig, float(visual_s), mouth, clip_rng)
        (out / "Raw" / vid).mkdir(exist_ok=True)
        write_mp4(out / "Raw" / vid / f"{cid}.mp4", frames, cfg.fps, audio, cfg.sample_rate)
        words = lexicon.transcript(float(text_s), int(clip_rng.integers(cfg.text_words[0], cfg.text_words[1] + 1)), clip_rng)
        step = cfg.label_step

        def rnd(x: float) -> float:
            return float(np.round(x / step) * step) if step > 0 else float(x)

        rows.append({
            "video_id": vid, "clip_id": cid, "text": " ".join(words), "label": f"{labels[i]:.1f}",
            "label_T": f"{rnd(text_s):.1f}", "label_A": f"{rnd(audio_s):.1f}", "label_V": f"{rnd(visual_s):.1f}",
            "annotation": "Positive" if labels[i] > 0 else "Negative" if labels[i] < 0 else "Neutral",
            "mode": split_of_video[int(vid[4:])],
        })
        if progress:
            progress(i + 1, n)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "label.csv", buf.getvalue())
    return {"clips": n, "videos": n_videos, "splits": {s: len(v) for s, v in by_split.items()}, "root": str(out)}
