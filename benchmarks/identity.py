"""One speaker per clip: does the face tracker stay with the person it started with?

    python benchmarks/identity.py VIDEO_DIR [VIDEO_DIR ...]

For every video under each VIDEO_DIR (searched recursively), runs the visual extractor's face tracker
(`FaceTracker`, at features.visual.frame_rate) and prints
  faces      analysed frames with a face;
  changes    the tracker's own count of possible identity changes (what the store's `identity_changes`
             holds): faces taken elsewhere that its face descriptor did not confirm as the clip's person;
  jumps      face-frame pairs whose landmarks' centre moves more than a face's width (a switch to another
             face, or a cut);
  switched   for the two-face variants of benchmarks/face_variants.py (folders `two_faces` and `enters`,
             whose speaker fills the left 2/3 and 1/2 of the picture): frames on which the tracked face is
             not the speaker's (target 0).
Then the totals and the time. Use it on ../shared/data/grid, ../shared/data/faces and the variants.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.video_dirs import videos_under  # noqa: E402
from misr.config.params import load_params  # noqa: E402
from misr.data.media import ClipError, VideoStream  # noqa: E402
from misr.features.visual import FaceTracker  # noqa: E402

SPEAKER_SHARE = {"two_faces": 2 / 3, "enters": 1 / 2}  # the share of the picture's width the speaker fills


def track(path: Path, frame_rate: float, detect_every: int) -> tuple[list[np.ndarray | None], list[float], int, int]:
    """Each frame's landmark centre (None without a face), face widths, identity changes, picture width."""
    tracker = FaceTracker(detect_every)
    centres: list[np.ndarray | None] = []
    widths: list[float] = []
    with VideoStream(path, frame_rate) as video:
        for chunk in video.chunks():
            landmarks, found = tracker.track(chunk)
            for pts, ok in zip(landmarks, found, strict=True):
                centres.append(pts.mean(axis=0) if ok else None)
                if ok:
                    widths.append(float(pts[:, 0].max() - pts[:, 0].min()))
        width = video.width
    return centres, widths, tracker.identity_changes, width


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", type=Path, nargs="+", metavar="VIDEO_DIR")
    args = ap.parse_args()
    visual = load_params(REPO / "params.yaml").features.visual
    print(f"{'clip':<52} {'frames':>6} {'faces':>6} {'changes':>7} {'jumps':>6} {'switched':>8}")
    totals = {"frames": 0, "faces": 0, "changes": 0, "jumps": 0, "switched": 0}
    start = time.perf_counter()
    for folder, path in videos_under(args.dirs):
        name = f"{folder.name}/{path.relative_to(folder)}"
        try:
            centres, widths, changes, width = track(path, visual.frame_rate, visual.detect_every)
        except ClipError as exc:
            print(f"{name:<52} ({exc.kind})")
            continue
        seen = [c for c in centres if c is not None]
        size = float(np.median(widths)) if widths else 1.0
        jumps = sum(1 for a, b in zip(seen, seen[1:], strict=False) if np.linalg.norm(b - a) > size)
        share = SPEAKER_SHARE.get(path.parent.name)
        switched = sum(1 for c in seen if c[0] > share * width) if share else None
        print(f"{name:<52} {len(centres):>6} {len(seen):>6} {changes:>7} {jumps:>6} {'' if switched is None else switched:>8}")
        for key, value in (("frames", len(centres)), ("faces", len(seen)), ("changes", changes), ("jumps", jumps)):
            totals[key] += value
        totals["switched"] += switched or 0
    print(f"{'total':<52} {totals['frames']:>6} {totals['faces']:>6} {totals['changes']:>7} {totals['jumps']:>6} {totals['switched']:>8}")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
