"""Harder versions of real talking-face clips, for `benchmarks/face_coverage.py`.

    python benchmarks/face_variants.py [SOURCE_DIR] [OUT_DIR] [--limit N]

SOURCE_DIR defaults to ../shared/data/grid (360x288, 25 fps, one frontal speaker); OUT_DIR to
/tmp/face_variants. Each source clip becomes, in OUT_DIR/<variant>/<clip>.mp4 (H.264):

  small720   the frame at 0.45 scale, off centre on a 1280x720 canvas (a ~55 px face, as in a wide shot)
  roll20     turned 20 degrees in the image plane
  occluded   a dark block over the mouth and chin for the middle second (a hand, a microphone)
  lowq       half resolution, blurred and heavily compressed (a re-uploaded web video)
  ntsc       re-timed to 29.97 fps (the frame on screen at each new time stamp)
  fps60      re-timed to 60 fps
  two_faces  the speaker beside a smaller copy (the tracker must keep the larger, central one)
  leaves     the picture slides out to the left from 1 s on; no face after ~2 s
  cut        the speaker for 1.5 s, then a textured background with no face
  enters     the speaker on the left; from 1 s another person (the next source clip) slides in on the
             right, nearer the centre, and from 1.6 to 1.9 s the speaker's face is hidden: a tracker that
             re-acquires the largest, most central face switches to the newcomer

These are made from real recordings, but they are not new recordings: they test scale, roll, occlusion,
compression and frame rate, not new faces, profiles or lighting.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def read_rgb(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        return [f.to_ndarray(format="rgb24") for f in c.decode(stream)], Fraction(rate)


def write(path: Path, frames: list[np.ndarray], rate: Fraction, crf: int = 18) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(crf)}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def even(img: np.ndarray) -> np.ndarray:
    return img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]


def retime(frames: list[np.ndarray], rate: Fraction, new_rate: Fraction) -> list[np.ndarray]:
    seconds = len(frames) / rate
    return [frames[min(len(frames) - 1, int(Fraction(k) / new_rate * rate))] for k in range(int(seconds * new_rate))]


def background(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 1, (shape[0] // 8 + 1, shape[1] // 8 + 1, 3))
    tex = cv2.resize(noise, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(110 + 25 * tex, 0, 255).astype(np.uint8)


# where `enters` puts the newcomer: its left edge, in widths of the source picture, once it has slid in
ENTERS_AT = 0.8


def variants(
    frames: list[np.ndarray], rate: Fraction, other: list[np.ndarray] | None = None
) -> dict[str, tuple[list[np.ndarray], Fraction, int]]:
    h, w = frames[0].shape[:2]
    n = len(frames)
    out: dict[str, tuple[list[np.ndarray], Fraction, int]] = {}

    canvas = background((720, 1280))
    small = []
    for f in frames:
        img = canvas.copy()
        s = cv2.resize(f, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
        img[300 : 300 + s.shape[0], 820 : 820 + s.shape[1]] = s
        small.append(img)
    out["small720"] = (small, rate, 18)

    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)
    out["roll20"] = ([cv2.warpAffine(f, turn, (w, h), borderMode=cv2.BORDER_REFLECT) for f in frames], rate, 18)

    hidden = []
    for i, f in enumerate(frames):
        img = f.copy()
        if n // 3 <= i < 2 * n // 3:
            img[int(0.62 * h) : int(0.95 * h), int(0.30 * w) : int(0.72 * w)] = (40, 35, 30)
        hidden.append(img)
    out["occluded"] = (hidden, rate, 18)

    low = []
    for f in frames:
        s = cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        low.append(even(cv2.GaussianBlur(s, (3, 3), 0.8)))
    out["lowq"] = (low, rate, 36)

    out["ntsc"] = (retime(frames, rate, Fraction(30000, 1001)), Fraction(30000, 1001), 18)
    out["fps60"] = (retime(frames, rate, Fraction(60)), Fraction(60), 18)

    pair = []
    side = background((h, w + w // 2), seed=1)
    for f in frames:
        img = side.copy()
        img[:, :w] = f
        s = cv2.resize(f, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        img[h // 4 : h // 4 + s.shape[0], w : w + s.shape[1]] = s
        pair.append(even(img))
    out["two_faces"] = (pair, rate, 18)

    slide = []
    bg = background((h, w), seed=2)
    for i, f in enumerate(frames):
        t = i / float(rate)
        shift = int(min(1.0, max(0.0, t - 1.0)) * w)
        img = bg.copy()
        if shift < w:
            img[:, : w - shift] = f[:, shift:]
        slide.append(img)
    out["leaves"] = (slide, rate, 18)

    cut = [f if i / float(rate) < 1.5 else bg for i, f in enumerate(frames)]
    out["cut"] = (cut, rate, 18)

    if other is not None:
        out["enters"] = (enters(frames, other, rate), rate, 18)
    return out


def enters(frames: list[np.ndarray], other: list[np.ndarray], rate: Fraction) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    stage = background((h, 2 * w), seed=3)
    out = []
    for i, f in enumerate(frames):
        t = i / float(rate)
        img = stage.copy()
        speaker = f.copy()
        if 1.6 <= t < 1.9:
            speaker[int(0.1 * h) : int(0.95 * h), int(0.2 * w) : int(0.8 * w)] = (40, 35, 30)
        img[:, :w] = speaker
        if t >= 1.0:
            left = int(round(2 * w - min(1.0, (t - 1.0) / 0.4) * (2 - ENTERS_AT) * w))  # from the right edge to ENTERS_AT
            newcomer = other[min(i, len(other) - 1)][:, : 2 * w - left]
            img[:, left : left + newcomer.shape[1]] = newcomer
        out.append(even(img))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, nargs="?", default=REPO.parent / "shared" / "data" / "grid")
    ap.add_argument("out", type=Path, nargs="?", default=Path("/tmp/face_variants"))
    ap.add_argument("--limit", type=int, default=0, help="use only the first N source clips")
    args = ap.parse_args()
    files = sorted(p for p in args.source.iterdir() if p.suffix.lower() in {".mp4", ".mpg", ".avi", ".mov", ".mkv"})
    if args.limit:
        files = files[: args.limit]
    if not files:
        raise SystemExit(f"no video files in {args.source}")
    for k, path in enumerate(files):
        frames, rate = read_rgb(path)
        other = read_rgb(files[(k + 1) % len(files)])[0] if len(files) > 1 else None
        made = variants(frames, rate, other)
        for name, (clip, clip_rate, crf) in made.items():
            write(args.out / name / f"{path.stem}.mp4", clip, clip_rate, crf)
        print(f"{path.name}: {len(frames)} frames -> {len(made)} variants")
    print(f"written under {args.out}")


if __name__ == "__main__":
    main()
